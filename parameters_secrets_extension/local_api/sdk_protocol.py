"""The services' own protocol (AWS JSON 1.1) on the extension's port, for unchanged SDK code:
`POST /` with X-Amz-Target, signed with the function's credentials (sdk_auth.py).

Served (reads only): secretsmanager.GetSecretValue and BatchGetSecretValue; AmazonSSM.
GetParameter, GetParameters and GetParametersByPath. Any other target is a 400
UnknownOperationException naming it. Every read goes through Lookups' public methods, so
the GET routes and this protocol share one cache entry per key, with its TTL, coalescing,
stale-if-error, metrics and log lines.

The cache holds the Go SDK's shape (aws/sdk_shapes.py: dates as RFC 3339 strings, absent
fields null, ResultMetadata); each answer here is turned back into the service's wire
format as it is sent: dates as epoch seconds, no null fields, no ResultMetadata. That is
done on the cached bytes, without parsing them (`_wire`): this is the hit path. Errors are
the service's JSON (`__type`, `message`) with its X-Amzn-Errortype header, so every SDK
raises the exception class it raises for AWS.

GetParametersByPath reads the whole path once (the cache's one entry, as the GET route
does) and pages it as SSM does: MaxResults (1 to 10, default 10) a page, NextToken the
offset of the next page. A page read after the entry is refreshed comes from the new list,
as a page of SSM's own comes from the parameters as they are then.
"""

from __future__ import annotations

import json
import re

from ..errors import (
    ExtensionError,
    InvalidParameter,
    MissingParameter,
    RequestError,
    SignatureRefused,
    UnknownOperation,
)
from ..failure_log import is_client_mistake, printable
from ..logs import log
from ..lookups import Lookups, batch_item, encode
from ..parameter_names import ParameterName, parameter_name
from ..services import SECRETS_MANAGER, SSM, Service
from .replies import Reply
from .request_head import TARGET_HEADER, Request
from .sdk_auth import Verifier, epoch_seconds

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Protocol

    from ..aws.credentials import Credentials

    Handler = Callable[[dict[str, object]], tuple[bytes, str]]

    class Signer(Protocol):
        """What the credentials come from: an AwsClient (its credentials() method)."""

        def credentials(self, deadline: float | None = None) -> Credentials: ...

    class Client(Protocol):
        """A LazyClient: the deadline of a request, and the client it makes on first use."""

        def deadline(self, service: Service) -> float: ...

        def get(self) -> Signer: ...


CONTENT_TYPE = "application/x-amz-json-1.1"
_CONTENT_TYPE_BYTES = CONTENT_TYPE.encode()
# GetParametersByPath's page size: at most, and when MaxResults is absent.
MAX_PATH_PAGE = 10
# Input limits, AWS's own: the longest id, version id, stage or label and path it takes.
MAX_ID_CHARS = 2048
MAX_SELECTOR_CHARS = 256
MAX_TOKEN_CHARS = 32
# Dates of cached answers already turned into epoch seconds; cleared when it reaches this.
MAX_REMEMBERED_DATES = 1024
# In JSON as lookups encodes it (compact, ASCII), a member's `"` is never escaped and every
# `"` inside a string is, so these patterns match members and never text inside a value: a
# null member (with the comma that joins it to the next or the previous one) and a date.
_NULL_MEMBER = re.compile(rb'"[A-Za-z]+":null,|,"[A-Za-z]+":null')
_DATE_MEMBER = re.compile(rb'"(?:CreatedDate|LastModifiedDate)":"([0-9T:.Z-]{24})"')
# An error type passed through from AWS goes into a header only if it looks like one.
_ERROR_TYPE = re.compile(r"[A-Za-z0-9_.:#-]{1,128}")
_UNEXPECTED = "an unexpected error occurred while executing request"
# The C scanner json.loads ends in, and the whitespace JSON allows around a value.
_SCAN = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_JSON_SPACE = " \t\n\r"


class _Dates:
    """RFC 3339 dates with milliseconds (sdk_shapes.iso_date's) as epoch seconds, each
    computed once: a cached answer's date is the same on every hit."""

    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}
        self._members: dict[bytes, bytes] = {}  # `"CreatedDate":"..."` -> its wire form

    def member(self, match: re.Match[bytes]) -> bytes:
        """A _DATE_MEMBER match in the wire format: `"CreatedDate":1704067200.123`."""
        whole = match.group(0)
        wire = self._members.get(whole)
        if wire is None:
            name = whole[: whole.index(b":")]
            wire = name + b":" + json.dumps(self(match.group(1).decode("ascii"))).encode()
            if len(self._members) >= MAX_REMEMBERED_DATES:
                self._members.clear()
            self._members[whole] = wire
        return wire

    def __call__(self, value: object) -> object:
        if not isinstance(value, str):
            return value
        seconds = self._seconds.get(value)
        if seconds is None:
            seconds = _epoch(value)
            if seconds is None:  # not the cache's layout (an emulator's): passed on as is
                return value
            if len(self._seconds) >= MAX_REMEMBERED_DATES:
                self._seconds.clear()
            self._seconds[value] = seconds
        return seconds


def _epoch(text: str) -> float | None:
    """`2024-01-01T00:00:00.123Z` as 1704067200.123; None for any other layout."""
    if len(text) != 24 or text[10] != "T" or text[19] != "." or text[23] != "Z":
        return None
    digits = text[0:4] + text[5:7] + text[8:10] + text[11:13] + text[14:16] + text[17:19]
    millis = text[20:23]
    seconds = epoch_seconds(digits)
    if seconds is None or not millis.isascii() or not millis.isdigit():
        return None
    return float(f"{seconds}.{millis}")  # the double nearest the milliseconds, as AWS sends


def _is_list_of_str(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


class SdkApi:
    """AWS JSON 1.1 request to reply: target, signature, payload, then the lookup."""

    def __init__(self, lookups: Lookups, client: Client) -> None:
        """Requests are verified against the credentials `client` signs its calls with."""
        self._lookups = lookups
        self._client = client

        def credentials(deadline: float | None) -> Credentials:
            return client.get().credentials(deadline)

        self._verifier = Verifier(credentials)
        self._dates = _Dates()
        # The last read's cached bytes and their wire form, by identity: a function that
        # reads one secret, parameter or path again and again converts it once per cache
        # entry (paging through a path, once). One tuple each, replaced whole, so no lock;
        # it holds no value the cache did not.
        self._last_secret: tuple[bytes, bytes] = (b"", b"")
        self._last_parameter: tuple[bytes, bytes] = (b"", b"")
        self._path_memo: tuple[bytes, list[dict[str, object]]] = (b"", [])
        # X-Amz-Target -> its service, handler and route name (`sdk:<operation>`, as log
        # lines and errors name it): the operations served, and no others.
        self._operations: dict[str, tuple[Service, Handler, str]] = {
            target: (service, handler, "sdk:" + target.partition(".")[2])
            for target, service, handler in (
                (SECRETS_MANAGER.target, SECRETS_MANAGER, self._get_secret_value),
                (
                    SECRETS_MANAGER.target_of(SECRETS_MANAGER.batch_operation),
                    SECRETS_MANAGER,
                    self._batch_get_secret_value,
                ),
                (SSM.target, SSM, self._get_parameter),
                (SSM.target_of(SSM.batch_operation), SSM, self._get_parameters),
                (SSM.target_of(SSM.path_operation or ""), SSM, self._get_parameters_by_path),
            )
        }

    def respond(self, request: Request) -> Reply:
        """The reply to one AWS JSON request (is_sdk_request's); never raises."""
        target = request.headers[TARGET_HEADER].decode("latin-1")
        route = "sdk"
        try:
            operation = self._operations.get(target)
            if operation is None:
                served = ", ".join(self._operations)
                raise UnknownOperation(
                    f"{printable(target)[:100]} is not served: this extension answers"
                    f" only reads ({served})"
                )
            service, handler, route = operation
            deadline = self._client.deadline(service)
            try:
                self._verifier.verify(request, service, deadline)
            except SignatureRefused as exc:
                # The reason, never the signature, key or token.
                log.warning("refused an AWS JSON request for %s: %s", route[4:], exc.error_type)
                raise
            payload = _payload(request)
            body, outcome = handler(payload)
            return Reply(200, body, CONTENT_TYPE, route, outcome)
        except ExtensionError as exc:
            if isinstance(exc, RequestError):
                self._lookups.metrics.local_error(exc.error_type)
            return error_reply(exc, route)
        except Exception as exc:  # a bug must cost one request, never the server
            log.error("request failed unexpectedly: %s", type(exc).__name__)
            log.traceback(exc)
            return error_reply(ExtensionError(_UNEXPECTED), route)

    # -- the operations: each payload checked, then read through Lookups ------------------

    def _get_secret_value(self, payload: dict[str, object]) -> tuple[bytes, str]:
        secret_id = _text(payload, "SecretId", MAX_ID_CHARS, required=True)
        version_id = _text(payload, "VersionId", MAX_SELECTOR_CHARS)
        stage = _text(payload, "VersionStage", MAX_SELECTOR_CHARS)
        cached, outcome = self._lookups.secret(secret_id or "", version_id, stage)
        last = self._last_secret
        if last[0] is not cached:
            last = self._last_secret = (cached, self._secret_bytes(cached))
        return last[1], outcome

    def _batch_get_secret_value(self, payload: dict[str, object]) -> tuple[bytes, str]:
        if payload.get("Filters"):
            raise InvalidParameter("Filters are not served: list the secrets in SecretIdList")
        ids = _id_list(payload, "SecretIdList", SECRETS_MANAGER.max_batch_ids)
        values: list[bytes] = []
        errors: list[dict[str, object]] = []
        for ident, answer in zip(ids, self._lookups.secrets(ids), strict=True):
            if isinstance(answer, ExtensionError):
                errors.append(
                    {
                        "SecretId": ident,
                        "ErrorCode": answer.error_type,
                        "ErrorMessage": answer.message,
                    }
                )
            else:
                values.append(self._secret_bytes(answer))
        body = b'{"SecretValues":[%s],"Errors":%s}' % (b",".join(values), encode(errors))
        return body, "batch"

    def _get_parameter(self, payload: dict[str, object]) -> tuple[bytes, str]:
        wanted = parameter_name(_text(payload, "Name", MAX_ID_CHARS, required=True) or "")
        decrypt = _flag(payload, "WithDecryption")
        cached, outcome = self._lookups.parameter(
            wanted.name, wanted.version, wanted.label, decrypt
        )
        last = self._last_parameter
        if last[0] is not cached:
            last = self._last_parameter = (
                cached,
                b'{"Parameter":%s}' % self._parameter_bytes(cached),
            )
        return last[1], outcome

    def _get_parameters(self, payload: dict[str, object]) -> tuple[bytes, str]:
        requested = _id_list(payload, "Names", SSM.max_batch_ids)
        decrypt = _flag(payload, "WithDecryption")
        # `/p:1` and `/p:01` name one cache key: listed once, or it would wait on itself.
        names: dict[tuple[object, ...], ParameterName] = {}
        for text in requested:
            entry = parameter_name(text)
            names.setdefault(entry[1:], entry)
        unique = list(names.values())
        found: list[bytes] = []
        invalid: list[str] = []
        for entry, answer in zip(unique, self._lookups.parameters(unique, decrypt), strict=True):
            if isinstance(answer, ExtensionError):
                if not is_client_mistake(answer):
                    raise answer  # the answer has no place for it, as GetParameters' own
                invalid.append(entry.requested)
            else:
                found.append(self._parameter_bytes(answer))
        body = b'{"Parameters":[%s],"InvalidParameters":%s}' % (b",".join(found), encode(invalid))
        return body, "batch"

    def _get_parameters_by_path(self, payload: dict[str, object]) -> tuple[bytes, str]:
        if payload.get("ParameterFilters"):
            raise InvalidParameter("ParameterFilters are not served: filter the answer instead")
        path = _text(payload, "Path", MAX_ID_CHARS, required=True) or ""
        size = payload.get("MaxResults", MAX_PATH_PAGE)
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_PATH_PAGE:
            raise InvalidParameter(f"MaxResults must be a whole number from 1 to {MAX_PATH_PAGE}")
        start = _offset(_text(payload, "NextToken", MAX_TOKEN_CHARS))
        cached, outcome = self._lookups.parameters_by_path(
            path, _flag(payload, "Recursive"), _flag(payload, "WithDecryption")
        )
        everything = self._path_parameters(cached)
        if start > len(everything):
            raise InvalidParameter(
                "the NextToken is not valid for this path", error_type="InvalidNextToken"
            )
        answer: dict[str, object] = {"Parameters": everything[start : start + size]}
        if start + size < len(everything):
            answer["NextToken"] = str(start + size)
        return encode(answer), outcome

    # -- the Go SDK's shapes the cache holds, in the service's wire format ----------------

    def _wire(self, member: bytes) -> bytes:
        """A JSON object of lookups' encoding, without its null members, its dates as
        epoch seconds."""
        member = _NULL_MEMBER.sub(b"", member)
        return _DATE_MEMBER.sub(self._dates.member, member)

    def _secret_bytes(self, cached: bytes) -> bytes:
        """A cached GetSecretValue answer in the wire format."""
        return self._wire(batch_item(cached, SECRETS_MANAGER))

    def _parameter_bytes(self, cached: bytes) -> bytes:
        """A cached GetParameter answer's Parameter object in the wire format."""
        return self._wire(batch_item(cached, SSM))

    def _parameter(self, data: dict[str, object]) -> dict[str, object]:
        wire = {k: v for k, v in data.items() if v is not None}
        if "LastModifiedDate" in wire:
            wire["LastModifiedDate"] = self._dates(wire["LastModifiedDate"])
        return wire

    def _path_parameters(self, cached: bytes) -> list[dict[str, object]]:
        memo = self._path_memo
        if memo[0] is cached:
            return memo[1]
        found = [self._parameter(item) for item in json.loads(cached)["Parameters"]]
        self._path_memo = (cached, found)
        return found


def error_reply(exc: ExtensionError, route: str = "sdk") -> Reply:
    """The service's error: `{"__type", "message"}` and X-Amzn-Errortype, AWS's status."""
    body = json.dumps({"__type": exc.error_type, "message": exc.message}).encode()
    header = ""
    if _ERROR_TYPE.fullmatch(exc.error_type):
        header = f"X-Amzn-Errortype: {exc.error_type}\r\n"
    return Reply(exc.status, body, CONTENT_TYPE, route, "error", headers=header)


def _payload(request: Request) -> dict[str, object]:
    content_type = request.headers.get("content-type", b"")
    if not content_type.startswith(_CONTENT_TYPE_BYTES):
        raise InvalidParameter(
            f"Content-Type must be {CONTENT_TYPE}", error_type="SerializationException"
        )
    try:
        payload = _json_value(request.body or b"{}")
    except ValueError as exc:
        raise InvalidParameter("the body is not JSON", error_type="SerializationException") from exc
    if not isinstance(payload, dict):
        raise InvalidParameter("the body is not a JSON object", error_type="SerializationException")
    return payload


def _json_value(body: bytes) -> object:
    """json.loads(body), straight through its C scanner for a body that opens an object:
    such a body is UTF-8 (json.detect_encoding's answer for it), and loads' own steps are
    four Python calls, which cost a woken SDK hit more than the scan itself."""
    if not body.startswith(b'{"'):
        return json.loads(body)
    text = body.decode("utf-8", "surrogatepass")  # as loads decodes it
    value, end = _SCAN(text, 0)
    if end != len(text) and text[end:].strip(_JSON_SPACE):
        raise ValueError("extra data after the JSON value")
    return value


def _text(
    payload: dict[str, object], name: str, limit: int, *, required: bool = False
) -> str | None:
    value = payload.get(name)
    if value is None or value == "":
        if required:
            raise MissingParameter(f"{name} is required")
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidParameter(f"{name} must be a string of 1 to {limit} characters")
    return value


def _flag(payload: dict[str, object], name: str) -> bool:
    value = payload.get(name, False)
    if not isinstance(value, bool):
        raise InvalidParameter(f"{name} must be true or false")
    return value


def _id_list(payload: dict[str, object], name: str, limit: int) -> list[str]:
    """1 to `limit` ids, each a string of at most MAX_ID_CHARS; a repeat is listed once."""
    value = payload.get(name)
    if value is None:
        raise MissingParameter(f"{name} is required")
    if not _is_list_of_str(value) or not 1 <= len(value) <= limit:  # type: ignore[arg-type]
        raise InvalidParameter(f"{name} must list 1 to {limit} ids")
    ids: list[str] = list(dict.fromkeys(value))  # type: ignore[call-overload]
    if not all(0 < len(ident) <= MAX_ID_CHARS for ident in ids):
        raise InvalidParameter(f"each id of {name} must have 1 to {MAX_ID_CHARS} characters")
    return ids


def _offset(token: str | None) -> int:
    """The page a NextToken names: the offset into the path's parameters."""
    if token is None:
        return 0
    if not token.isdigit() or not token.isascii():
        raise InvalidParameter(
            "the NextToken is not one this extension gave", error_type="InvalidNextToken"
        )
    return int(token)
