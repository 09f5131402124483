"""Which entry of a many-id answer belongs to which id asked for: AWS answers in no set order,
and an id may be a name, a full or a partial ARN, with a version or a label."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import ExtensionError, InvalidResponse, UpstreamError
from . import sdk_shapes
from .transport import clean_message

TYPE_CHECKING = False  # mypy takes it as True
if TYPE_CHECKING:
    from ..parameter_names import ParameterName

_PARTIAL_ARN_SUFFIX = 7  # "-" and the six random characters AWS appends to a secret's ARN


def match_secrets(
    group: Sequence[str],
    entries: list[object],
    errors: list[object],
    found: dict[str, dict[str, object]],
    failed: dict[str, ExtensionError],
) -> None:
    """Give each requested id its entry or its error.

    An id takes the entry whose Name or ARN it equals; only when none does, the entry
    whose ARN it is a partial ARN of (a secret *named* like another's ARN must never be
    taken for it). More than one distinct secret for an id is an error, never a guess.
    """
    wanted = set(group)
    for raw in errors:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("SecretId"), str):
            raise InvalidResponse("AWS sent an Errors item without a SecretId string")
        if raw["SecretId"] in wanted:
            # AWS names the field ErrorMessage; some emulators send Message.
            message = raw.get("ErrorMessage") or raw.get("Message") or "the secret was not read"
            failed[str(raw["SecretId"])] = UpstreamError(
                clean_message(str(message)),
                status=400,
                error_type=str(raw.get("ErrorCode") or "UnknownError"),
            )
    items = [raw for raw in entries if isinstance(raw, Mapping)]
    for ident in group:
        if ident in failed:
            continue
        chosen = [raw for raw in items if ident in (raw.get("Name"), raw.get("ARN"))]
        if not chosen:
            chosen = [raw for raw in items if _is_partial_arn(ident, str(raw.get("ARN")))]
        if len({str(raw.get("ARN")) for raw in chosen}) > 1:
            failed[ident] = InvalidResponse(
                "AWS answered more than one secret for this id; none is taken"
            )
        elif chosen:
            found[ident] = sdk_shapes.secret_value(chosen[0])


def _is_partial_arn(ident: str, arn: str) -> bool:
    return len(arn) == len(ident) + _PARTIAL_ARN_SUFFIX and arn.startswith(ident + "-")


def match_parameters(
    entries: list[ParameterName], params: list[object]
) -> list[tuple[ParameterName, Mapping[str, object]]]:
    """Pair requested names with the parameters GetParameters returned, in no set order.

    A version request takes the parameter of that version; a plain name the newest one
    left; a label the one whose Selector names it. Without an echoed Selector (some
    emulators send none) a label takes what is left under its name only when it is the
    only label asked of that name and one parameter is left: two labels are never paired
    by guesswork, and an unpaired one is read alone.
    """
    left = [raw for raw in params if isinstance(raw, Mapping)]
    pairs: list[tuple[ParameterName, Mapping[str, object]]] = []

    def fits(entry: ParameterName, raw: Mapping[str, object]) -> bool:
        if entry.name not in (raw.get("Name"), raw.get("ARN")):
            return False
        if entry.version is not None:
            return _int(raw.get("Version")) == entry.version
        if entry.label is not None:
            return raw.get("Selector") == f":{entry.label}"
        return not raw.get("Selector")

    def take(entry: ParameterName) -> None:
        chosen = [raw for raw in left if fits(entry, raw)]
        if chosen:
            best = max(chosen, key=lambda raw: _int(raw.get("Version")))
            left.remove(best)
            pairs.append((entry, best))

    # Versions first, then plain names, then labels: the most exact claims go first.
    for entry in [e for e in entries if e.version is not None]:
        take(entry)
    for entry in [e for e in entries if e.version is None and e.label is None]:
        take(entry)
    for entry in [e for e in entries if e.label is not None]:
        take(entry)
    paired = {id(entry) for entry, _ in pairs}
    for entry in entries:
        if entry.label is None or id(entry) in paired:
            continue
        labels = [e for e in entries if e.name == entry.name and e.label is not None]
        rest = [raw for raw in left if entry.name in (raw.get("Name"), raw.get("ARN"))]
        if len(labels) == 1 and len(rest) == 1 and not rest[0].get("Selector"):
            left.remove(rest[0])
            pairs.append((entry, rest[0]))
    return pairs


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1
