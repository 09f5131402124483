"""The many-id calls of AwsClient: BatchGetSecretValue, GetParameters and GetParametersByPath,
and the pairing of what they answer with the ids asked for."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

from ..errors import (
    ExtensionError,
    InvalidResponse,
    PathTooLarge,
    ResponseTooLarge,
    UpstreamError,
)
from ..services import SECRETS_MANAGER, SSM, Service
from . import sdk_shapes

TYPE_CHECKING = False  # mypy takes it as True
if TYPE_CHECKING:
    from .client import AwsClient

# BatchGetSecretValue answers every listed id at once; a NextToken past this is not followed.
_MAX_BATCH_PAGES = 20
# One BatchGetSecretValue answer holds up to 20 secrets of up to 64 KiB each, base64 (binary)
# or JSON-escaped: past the 1 MiB that any single answer may have, so it gets 4 MiB.
BATCH_SECRETS_MAX_BODY = 4 << 20
_PATH_PAGE_SIZE = 10  # the most GetParametersByPath returns per page
_PARTIAL_ARN_SUFFIX = 7  # "-" and the six random characters AWS appends to a secret's ARN

if TYPE_CHECKING:
    # A requested parameter: as written (and sent), its name, and its version or label.
    NameEntry = tuple[str, str, int | None, str | None]
    # Shaped answers by requested id, and the ids AWS answered with an error.
    BatchResult = tuple[dict[str, dict[str, object]], dict[str, ExtensionError]]


def batch_get_secret_value(
    client: AwsClient, secret_ids: Sequence[str], deadline: float
) -> BatchResult:
    """BatchGetSecretValue for the ids, one call per endpoint (one unless ARNs name
    other regions, and then all at once), all within `deadline`: each found id's
    GetSecretValueOutput, and each failed id's error.

    The whole call failing raises; an id AWS answers with an error is in the second map.
    """
    found: dict[str, dict[str, object]] = {}
    failed: dict[str, ExtensionError] = {}
    groups = _groups(client, SECRETS_MANAGER, secret_ids, secret_ids, failed)
    _each(groups, lambda group: _secret_group(client, group, deadline, found, failed))
    return found, failed


def _secret_group(
    client: AwsClient,
    group: list[str],
    deadline: float,
    found: dict[str, dict[str, object]],
    failed: dict[str, ExtensionError],
) -> None:
    """One endpoint's ids; an answer too large for one call is asked for again in halves
    (each secret alone fits a single read's limit)."""
    entries: list[object] = []
    errors: list[object] = []
    payload: dict[str, object] = {"SecretIdList": group}
    try:
        for _ in range(_MAX_BATCH_PAGES):
            data = client.call(
                SECRETS_MANAGER,
                payload,
                group[0],
                "BatchGetSecretValue",
                max_body=BATCH_SECRETS_MAX_BODY,
                deadline=deadline,
            )
            entries += _list(data, "SecretValues")
            errors += _list(data, "Errors")
            token = data.get("NextToken")
            if not token:
                break
            payload = {"SecretIdList": group, "NextToken": token}
    except ResponseTooLarge:
        if len(group) == 1:
            raise
        half = len(group) // 2
        for part in (group[:half], group[half:]):
            _secret_group(client, part, deadline, found, failed)
        return
    _match_secrets(group, entries, errors, found, failed)

    def alone(one: list[str]) -> None:
        try:
            found[one[0]] = client.get_secret_value(one[0], deadline=deadline)
        except ExtensionError as exc:
            failed[one[0]] = exc

    # AWS left these out, or answered them ambiguously: each asked for alone, all at once.
    _each([[i] for i in group if i not in found and i not in failed], alone)


def get_parameters(
    client: AwsClient, names: Sequence[NameEntry], with_decryption: bool, deadline: float
) -> BatchResult:
    """GetParameters for the names, one call per endpoint (all at once), within `deadline`:
    each found name's GetParameterOutput (keyed by the name as requested), and each
    invalid name's error."""
    found: dict[str, dict[str, object]] = {}
    failed: dict[str, ExtensionError] = {}
    by_requested = {entry[0]: entry for entry in names}
    requested = [entry[0] for entry in names]
    bases = [entry[1] for entry in names]

    def one_group(group: list[str]) -> None:
        payload = {"Names": group, "WithDecryption": with_decryption}
        data = client.call(
            SSM, payload, by_requested[group[0]][1], "GetParameters", deadline=deadline
        )
        for name in _list(data, "InvalidParameters"):
            if isinstance(name, str) and name in by_requested:
                failed[name] = UpstreamError(
                    "the parameter or its version or label does not exist",
                    status=400,
                    error_type="ParameterNotFound",
                )
        entries = [by_requested[name] for name in group if name not in failed]
        for entry, raw in _match_parameters(entries, _list(data, "Parameters")):
            found[entry[0]] = sdk_shapes.parameter({"Parameter": raw}, _selector(entry))
        # AWS left these out, or which is which cannot be told: each asked for alone, at once.
        _each([[entry[0]] for entry in entries if entry[0] not in found], alone)

    def alone(one: list[str]) -> None:
        entry = by_requested[one[0]]
        try:
            found[entry[0]] = client.get_parameter(
                entry[1],
                version=entry[2],
                label=entry[3],
                with_decryption=with_decryption,
                deadline=deadline,
            )
        except ExtensionError as exc:
            failed[entry[0]] = exc

    _each(_groups(client, SSM, requested, bases, failed), one_group)
    return found, failed


def get_parameters_by_path(
    client: AwsClient,
    path: str,
    recursive: bool,
    with_decryption: bool,
    limit: int,
    *,
    deadline: float,
) -> list[dict[str, object]]:
    """Every parameter under `path` (each shaped as GetParameterOutput's Parameter),
    following NextToken, every page within the one `deadline`; PathTooLarge once there
    are more than `limit`."""
    payload: dict[str, object] = {
        "Path": path,
        "Recursive": recursive,
        "WithDecryption": with_decryption,
        "MaxResults": _PATH_PAGE_SIZE,
    }
    found: list[dict[str, object]] = []
    # AWS may answer a page with fewer items than asked (even none), so pages are
    # bounded separately from items.
    for _ in range(limit // _PATH_PAGE_SIZE + _MAX_BATCH_PAGES):
        data = client.call(SSM, payload, path, "GetParametersByPath", deadline=deadline)
        for raw in _list(data, "Parameters"):
            if isinstance(raw, Mapping):
                shaped = sdk_shapes.parameter({"Parameter": raw}, None)["Parameter"]
                found.append(shaped)  # type: ignore[arg-type]
        if len(found) > limit:
            raise PathTooLarge(
                f"more than {limit} parameters under the path: the limit is"
                f" PARAMETERS_SECRETS_EXTENSION_MAX_PATH_PARAMETERS={limit}"
            )
        token = data.get("NextToken")
        if not token:
            return found
        payload = {**payload, "NextToken": token}
    raise PathTooLarge(f"GetParametersByPath did not finish within its page limit for {path}")


def _groups(
    client: AwsClient,
    service: Service,
    ids: Sequence[str],
    resources: Sequence[str],
    failed: dict[str, ExtensionError],
) -> list[list[str]]:
    """`ids` grouped by the endpoint their `resources` resolve to; an id whose ARN is
    refused is failed instead."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for ident, resource in zip(ids, resources, strict=True):
        try:
            endpoint = client.endpoint(service, resource)
        except ExtensionError as exc:
            if exc.status >= 500:  # no region or a bad override: nothing can succeed
                raise
            failed[ident] = exc
            continue
        groups.setdefault((endpoint.origin, endpoint.path, endpoint.region), []).append(ident)
    return list(groups.values())


def _each(groups: list[list[str]], work: Callable[[list[str]], None]) -> None:
    """work(group) for every group, each on its own thread when there are several (one
    per region, or one per id read alone), so that they share the request's deadline
    rather than queue for it; the first group's error (in the order given) is raised once
    all have ended."""
    if len(groups) <= 1:
        for group in groups:
            work(group)
        return
    raised: list[BaseException | None] = [None] * len(groups)

    def run(index: int) -> None:
        try:
            work(groups[index])
        except BaseException as exc:  # handed to the request's thread below
            raised[index] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(groups))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for exc in raised:
        if exc is not None:
            raise exc


def _list(data: Mapping[str, object], name: str) -> list[object]:
    value = data.get(name)
    return value if isinstance(value, list) else []


def _selector(entry: NameEntry) -> str | None:
    return f":{entry[2]}" if entry[2] is not None else (f":{entry[3]}" if entry[3] else None)


def _match_secrets(
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
                _clean(str(message)),
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


def _match_parameters(
    entries: list[NameEntry], params: list[object]
) -> list[tuple[NameEntry, Mapping[str, object]]]:
    """Pair requested names with the parameters GetParameters returned, in no set order.

    A version request takes the parameter of that version; a plain name the newest one
    left; a label the one whose Selector names it. Without an echoed Selector (some
    emulators send none) a label takes what is left under its name only when it is the
    only label asked of that name and one parameter is left: two labels are never paired
    by guesswork, and an unpaired one is read alone.
    """
    left = [raw for raw in params if isinstance(raw, Mapping)]
    pairs: list[tuple[NameEntry, Mapping[str, object]]] = []

    def fits(entry: NameEntry, raw: Mapping[str, object]) -> bool:
        if entry[1] not in (raw.get("Name"), raw.get("ARN")):
            return False
        if entry[2] is not None:
            return _int(raw.get("Version")) == entry[2]
        if entry[3] is not None:
            return raw.get("Selector") == f":{entry[3]}"
        return not raw.get("Selector")

    def take(entry: NameEntry) -> None:
        chosen = [raw for raw in left if fits(entry, raw)]
        if chosen:
            best = max(chosen, key=lambda raw: _int(raw.get("Version")))
            left.remove(best)
            pairs.append((entry, best))

    # Versions first, then plain names, then labels: the most exact claims go first.
    for rank in (2, 0, 3):
        for entry in entries:
            plain = entry[2] is None and entry[3] is None
            if (rank == 0 and plain) or (rank and entry[rank] is not None):
                take(entry)
    paired = {id(entry) for entry, _ in pairs}
    for entry in entries:
        if entry[3] is None or id(entry) in paired:
            continue
        labels = [e for e in entries if e[1] == entry[1] and e[3] is not None]
        rest = [raw for raw in left if entry[1] in (raw.get("Name"), raw.get("ARN"))]
        if len(labels) == 1 and len(rest) == 1 and not rest[0].get("Selector"):
            left.remove(rest[0])
            pairs.append((entry, rest[0]))
    return pairs


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def _clean(message: str) -> str:
    # Imported here: aws_client imports this module.
    from .client import clean_message  # noqa: PLC0415

    return clean_message(message)
