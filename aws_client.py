"""Signed AWS JSON 1.1 calls to Secrets Manager (GetSecretValue, BatchGetSecretValue) and SSM
(GetParameter, GetParameters, GetParametersByPath)."""

from __future__ import annotations

import html
import json
import random
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from urllib.parse import urlsplit

import endpoints
import sdk_shapes
import sigv4
from config import AwsConfig
from connection_pool import Pools, Response, TlsSettings
from credentials import CredentialProvider, utc_now
from errors import (
    ExtensionError,
    InvalidResponse,
    PathTooLarge,
    ResponseTooLarge,
    TlsVerificationError,
    UpstreamError,
    UpstreamTimeout,
    is_transient,
)
from logs import log
from services import SECRETS_MANAGER, SSM, Service
from version import NAME, VERSION

USER_AGENT = f"{NAME}/{VERSION} python/{sys.version_info[0]}.{sys.version_info[1]}"
MAX_ATTEMPTS = 3
BACKOFF_BASE_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 2.0
# With no *_TIMEOUT_MILLIS set, a request still ends: each socket operation is bounded, but an
# upstream that trickles bytes, or a full pool, would otherwise hold a caller indefinitely.
UNSET_TIMEOUT_CAP_SECONDS = 30.0
MAX_MESSAGE_CHARS = 1000
_CONTENT_TYPE = "application/x-amz-json-1.1"
_XML_CODE = re.compile(r"<Code>(.*?)</Code>", re.DOTALL)
_XML_MESSAGE = re.compile(r"<Message>(.*?)</Message>", re.DOTALL)
_SIGNATURE = re.compile(r"Signature=([0-9a-f]+)")
# BatchGetSecretValue answers every listed id at once; a NextToken past this is not followed.
_MAX_BATCH_PAGES = 20
_PATH_PAGE_SIZE = 10  # the most GetParametersByPath returns per page
_PARTIAL_ARN_SUFFIX = 7  # "-" and the six random characters AWS appends to a secret's ARN

TYPE_CHECKING = False  # mypy takes it as True
if TYPE_CHECKING:
    # A requested parameter: as written (and sent), its name, and its version or label.
    NameEntry = tuple[str, str, int | None, str | None]
    # Shaped answers by requested id, and the ids AWS answered with an error.
    BatchResult = tuple[dict[str, dict[str, object]], dict[str, ExtensionError]]


class AwsClient:
    """GetSecretValue and GetParameter with pooled connections, retries and a deadline."""

    def __init__(
        self,
        aws: AwsConfig,
        *,
        max_connections: int,
        secrets_manager_timeout_ms: int,
        ssm_timeout_ms: int,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = utc_now,
        rng: random.Random | None = None,
    ) -> None:
        self._aws = aws
        self._timeouts_ms = {SECRETS_MANAGER: secrets_manager_timeout_ms, SSM: ssm_timeout_ms}
        self._sleep = sleep
        self._now = now
        # Jitter only spreads retries out in time; it needs no cryptographic strength.
        self._rng = rng if rng is not None else random.Random()  # noqa: S311
        self._credentials = CredentialProvider(aws, now=now)
        self._pools = Pools(max_connections=max_connections, tls=TlsSettings(aws.ca_bundle))

    def get_secret_value(
        self, secret_id: str, *, version_id: str | None = None, version_stage: str | None = None
    ) -> dict[str, object]:
        """The secret in the Go SDK's GetSecretValueOutput shape."""
        payload: dict[str, object] = {"SecretId": secret_id}
        if version_id:
            payload["VersionId"] = version_id
        if version_stage:
            payload["VersionStage"] = version_stage
        data = self._call(SECRETS_MANAGER, payload, secret_id)
        return sdk_shapes.secret_value(data)

    def get_parameter(
        self,
        name: str,
        *,
        version: int | None = None,
        label: str | None = None,
        with_decryption: bool = False,
    ) -> dict[str, object]:
        """The parameter in the Go SDK's GetParameterOutput shape; a version wins over a label."""
        selector = f":{version}" if version is not None else (f":{label}" if label else None)
        payload: dict[str, object] = {
            "Name": name + (selector or ""),
            "WithDecryption": with_decryption,
        }
        data = self._call(SSM, payload, name)
        return sdk_shapes.parameter(data, selector)

    def batch_get_secret_value(self, secret_ids: Sequence[str]) -> BatchResult:
        """BatchGetSecretValue for the ids, one call per endpoint (one unless ARNs name
        other regions): each found id's GetSecretValueOutput, and each failed id's error.

        The whole call failing raises; an id AWS answers with an error is in the second map.
        """
        found: dict[str, dict[str, object]] = {}
        failed: dict[str, ExtensionError] = {}
        for group in self._groups(SECRETS_MANAGER, secret_ids, secret_ids, failed):
            entries: list[object] = []
            errors: list[object] = []
            payload: dict[str, object] = {"SecretIdList": group}
            for _ in range(_MAX_BATCH_PAGES):
                data = self._call(SECRETS_MANAGER, payload, group[0], "BatchGetSecretValue")
                entries += _list(data, "SecretValues")
                errors += _list(data, "Errors")
                token = data.get("NextToken")
                if not token:
                    break
                payload = {"SecretIdList": group, "NextToken": token}
            _match_secrets(group, entries, errors, found, failed)
            for secret_id in group:
                if secret_id not in found and secret_id not in failed:  # AWS left it out
                    try:
                        found[secret_id] = self.get_secret_value(secret_id)
                    except ExtensionError as exc:
                        failed[secret_id] = exc
        return found, failed

    def get_parameters(self, names: Sequence[NameEntry], with_decryption: bool) -> BatchResult:
        """GetParameters for the names, one call per endpoint: each found name's
        GetParameterOutput (keyed by the name as requested), and each invalid name's error."""
        found: dict[str, dict[str, object]] = {}
        failed: dict[str, ExtensionError] = {}
        by_requested = {entry[0]: entry for entry in names}
        requested = [entry[0] for entry in names]
        bases = [entry[1] for entry in names]
        for group in self._groups(SSM, requested, bases, failed):
            payload = {"Names": group, "WithDecryption": with_decryption}
            data = self._call(SSM, payload, by_requested[group[0]][1], "GetParameters")
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
            for entry in entries:
                if entry[0] not in found:  # AWS left it out: ask for it alone
                    try:
                        found[entry[0]] = self.get_parameter(
                            entry[1],
                            version=entry[2],
                            label=entry[3],
                            with_decryption=with_decryption,
                        )
                    except ExtensionError as exc:
                        failed[entry[0]] = exc
        return found, failed

    def get_parameters_by_path(
        self, path: str, *, recursive: bool, with_decryption: bool, limit: int
    ) -> list[dict[str, object]]:
        """Every parameter under `path` (each shaped as GetParameterOutput's Parameter),
        following NextToken; PathTooLarge once there are more than `limit`."""
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
            data = self._call(SSM, payload, path, "GetParametersByPath")
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
        self,
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
                endpoint = endpoints.resolve(self._aws, service, resource)
            except ExtensionError as exc:
                if exc.status >= 500:  # no region or a bad override: nothing can succeed
                    raise
                failed[ident] = exc
                continue
            groups.setdefault((endpoint.origin, endpoint.path, endpoint.region), []).append(ident)
        return list(groups.values())

    def close(self) -> None:
        """Close every idle upstream connection."""
        self._pools.close()

    def _call(
        self,
        service: Service,
        payload: dict[str, object],
        resource_id: str,
        operation: str | None = None,
    ) -> dict[str, object]:
        target = service.target if operation is None else service.target_of(operation)
        endpoint = endpoints.resolve(self._aws, service, resource_id)
        body = json.dumps(payload, separators=(",", ":")).encode()
        timeout_ms = self._timeouts_ms[service]
        seconds = timeout_ms / 1000 if timeout_ms else UNSET_TIMEOUT_CAP_SECONDS
        deadline = time.monotonic() + seconds
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._attempt(endpoint, target, body, deadline)
            except ExtensionError as exc:
                exc.attempts = attempt
                if attempt >= MAX_ATTEMPTS or not _retryable(exc):
                    raise
                delay = self._rng.uniform(
                    0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
                )
                if time.monotonic() + delay >= deadline:
                    if isinstance(exc, UpstreamTimeout):
                        raise
                    timeout = UpstreamTimeout(
                        f"{target}: the deadline leaves no time to retry after {exc.error_type}"
                    )
                    timeout.attempts = attempt
                    raise timeout from exc
                log.debug(
                    "%s attempt %d failed (%s %s), retrying in %.3f s",
                    target,
                    attempt,
                    exc.status,
                    exc.error_type,
                    delay,
                )
                self._sleep(delay)

    def _attempt(
        self, endpoint: endpoints.Endpoint, target: str, body: bytes, deadline: float
    ) -> dict[str, object]:
        creds = self._credentials.get(deadline)
        headers = {
            "Host": urlsplit(endpoint.origin).netloc,
            "Content-Type": _CONTENT_TYPE,
            "X-Amz-Target": target,
        }
        signed = sigv4.sign(
            "POST",
            endpoint.url,
            headers,
            body,
            access_key=creds.access_key,
            secret_key=creds.secret_key,
            session_token=creds.session_token,
            region=endpoint.region,
            service=endpoint.signing_name,
            now=self._now(),
        )
        # Added after signing: proxies may rewrite it, and AWS does not need it signed.
        signed["User-Agent"] = USER_AGENT
        response = self._pools.get(endpoint.origin).request(
            "POST", endpoint.path, signed, body, deadline=deadline
        )
        if response.status == 200:
            return _json_object(response)
        secrets = [creds.access_key, creds.secret_key, creds.session_token]
        secrets += _SIGNATURE.findall(signed.get("Authorization", ""))
        raise upstream_error(response, secrets)


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
    """Give each requested id its entry (by name, ARN or partial ARN) or its error."""
    wanted = set(group)
    for raw in errors:
        if isinstance(raw, Mapping) and raw.get("SecretId") in wanted:
            # AWS names the field ErrorMessage; some emulators send Message.
            message = raw.get("ErrorMessage") or raw.get("Message") or "the secret was not read"
            failed[str(raw["SecretId"])] = UpstreamError(
                clean_message(str(message)),
                status=400,
                error_type=str(raw.get("ErrorCode") or "UnknownError"),
            )
    for raw in entries:
        if not isinstance(raw, Mapping):
            continue
        name, arn = str(raw.get("Name")), str(raw.get("ARN"))
        for ident in group:
            if ident in found or ident in failed:
                continue
            partial = len(arn) == len(ident) + _PARTIAL_ARN_SUFFIX and arn.startswith(ident + "-")
            if ident in (name, arn) or partial:
                found[ident] = sdk_shapes.secret_value(raw)


def _match_parameters(
    entries: list[NameEntry], params: list[object]
) -> list[tuple[NameEntry, Mapping[str, object]]]:
    """Pair requested names with the parameters GetParameters returned, in no set order.

    A version request takes the parameter of that version; a plain name the newest one
    left; a label the one whose Selector names it, or failing an echoed Selector (some
    emulators send none) whatever is left under that name.
    """
    left = [raw for raw in params if isinstance(raw, Mapping)]
    pairs: list[tuple[NameEntry, Mapping[str, object]]] = []

    def fits(entry: NameEntry, raw: Mapping[str, object]) -> bool:
        if entry[1] not in (raw.get("Name"), raw.get("ARN")):
            return False
        if entry[2] is not None:
            return _int(raw.get("Version")) == entry[2]
        if entry[3] is not None:
            return raw.get("Selector") in (f":{entry[3]}", None, "")
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
    return pairs


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def _retryable(exc: ExtensionError) -> bool:
    # An untrusted certificate or an oversized body would come back the same way.
    return is_transient(exc) and not isinstance(exc, (TlsVerificationError, ResponseTooLarge))


def _json_object(response: Response) -> dict[str, object]:
    try:
        data = json.loads(response.body)
    except ValueError as exc:
        raise InvalidResponse("AWS sent a response that is not JSON") from exc
    if not isinstance(data, dict):
        raise InvalidResponse("AWS sent a JSON response that is not an object")
    return data


def upstream_error(response: Response, redact: Iterable[str | None] = ()) -> UpstreamError:
    """The AWS error in `response`, with AWS's status, type and a cleaned message."""
    error_type, message = _parse_error(response)
    if not error_type:
        error_type = "InternalFailure" if response.status >= 500 else "UnknownError"
    if not message:
        message = f"AWS answered HTTP {response.status}"
    return UpstreamError(
        clean_message(message, redact), status=response.status, error_type=error_type
    )


def _parse_error(response: Response) -> tuple[str, str]:
    """(type, message) from a JSON body, moto's XML body, or the x-amzn-ErrorType header."""
    error_type, message = "", ""
    text = response.body.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error_type = str(data.get("__type") or data.get("code") or "")
        message = str(data.get("message") or data.get("Message") or "")
    else:
        code = _XML_CODE.search(text)
        found = _XML_MESSAGE.search(text)
        error_type = html.unescape(code.group(1)) if code else ""
        message = html.unescape(found.group(1)) if found else ""
    if not error_type:
        error_type = response.headers.get("x-amzn-errortype", "").split(":", 1)[0]
    # "com.amazonaws.secretsmanager#ResourceNotFoundException" -> the part after '#'.
    return error_type.rsplit("#", 1)[-1].strip(), message.strip()


def clean_message(message: str, redact: Iterable[str | None] = ()) -> str:
    """AWS's message without credentials, signatures or the echoed canonical request."""
    # AWS's SignatureDoesNotMatch text quotes the canonical request, security token included.
    message = message.split("\n\nThe Canonical String", 1)[0]
    for value in redact:
        if value:
            message = message.replace(value, "<redacted>")
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + "..."
    return message
