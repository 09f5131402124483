"""Reading one request off a local connection and validating its route and query.

Limits, far above what any client sends and far below memory trouble:
- the request line: at most MAX_REQUEST_LINE bytes, else 414;
- the header section: at most MAX_HEADER_BYTES in all and MAX_HEADERS fields, else 431.
A malformed request line or header is a 400 BadRequestException, and so is a bare CR or a
NUL anywhere in the head: such a byte is never part of a header value, since another
parser could take it for a line end. Any framing error ends the connection, because the
rest of the stream can no longer be trusted.
"""

from __future__ import annotations

import re
import urllib.parse
from collections import namedtuple

from ..errors import (
    BadRequest,
    HeaderFieldsTooLarge,
    InvalidParameter,
    MissingParameter,
    NotFound,
    UriTooLong,
)
from ..parameter_names import ParameterName, parameter_name, version_number
from ..services import SECRETS_MANAGER, SERVICES, SSM

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from typing import Final, Protocol

    class LineReader(Protocol):
        """The part of a buffered socket file that reading a request needs."""

        def readline(self, size: int, /) -> bytes: ...


MAX_REQUEST_LINE = 16 * 1024
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 100

TOKEN_HEADER = "x-aws-parameters-secrets-token"  # noqa: S105 (a header name)
# A request that passed through a proxy: refused, as the AWS extension refuses it, so that
# a server-side request forgery elsewhere in the function cannot reach the secrets.
FORWARDED_HEADERS = ("x-forwarded-for", "forwarded", "x-forwarded-host")
PING = "ping"
METRICS = "metrics"  # the extension's own counters; like a service, it needs the token
# Path -> route name: one of a service's route names, PING or METRICS.
ROUTES = {path: route for service in SERVICES for path, route in service.routes.items()}
ROUTES["/ping"] = PING
ROUTES["/metrics"] = METRICS
_KNOWN_PATHS = [path for path in ROUTES if not path.endswith("/") and path != "/ping"]
# Ids one batch request may list, as BatchGetSecretValue and GetParameters allow.
MAX_SECRET_IDS = SECRETS_MANAGER.max_batch_ids
MAX_PARAMETER_NAMES = SSM.max_batch_ids
_NOT_FOUND = f"unknown path: use {', '.join(_KNOWN_PATHS)} or /ping"

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# A whole request line, line end included, in one match: a token (the method), the target
# and the version, one space apart, then CRLF or LF. The target has no control byte or space
# (bytes above 0x7e are percent-encoded later), so there is no CR or NUL before the line end.
_REQUEST_LINE = re.compile(rb"(%s) ([^\x00-\x20\x7f]+) (HTTP/1\.[0-9])\r?\n" % _TOKEN)
# A header field's name and colon; the value is not scanned by a pattern, since it holds the
# long session token and _content's two byte searches are faster over it.
_FIELD_NAME = re.compile(rb"(%s):" % _TOKEN)
# A refused request line of this shape has a bad target: empty, or a control byte in it.
_LINE_SHAPE = re.compile(rb"%s [^ ]* HTTP/1\.[0-9]" % _TOKEN)
_PRINTABLE_ASCII = "".join(chr(c) for c in range(0x21, 0x7F))


class Request:
    """One request's head; header names are lower case, repeated fields joined by ", "."""

    __slots__ = ("headers", "http10", "keep_alive", "method", "target")

    def __init__(
        self, method: str, target: str, headers: dict[str, bytes], keep_alive: bool, http10: bool
    ) -> None:
        self.method: Final = method
        self.target: Final = target
        self.headers: Final = headers
        self.keep_alive: Final = keep_alive
        self.http10: Final = http10


class SecretQuery(namedtuple("SecretQuery", "secret_id version_id version_stage refresh")):
    """The validated query of GET /secretsmanager/get."""

    __slots__ = ()
    secret_id: str
    version_id: str | None
    version_stage: str | None
    refresh: bool


class ParameterQuery(namedtuple("ParameterQuery", "name version label with_decryption refresh")):
    """The validated query of GET /systemsmanager/parameters/get."""

    __slots__ = ()
    name: str
    version: int | None
    label: str | None
    with_decryption: bool
    refresh: bool


class SecretBatchQuery(namedtuple("SecretBatchQuery", "secret_ids refresh")):
    """The validated query of GET /secretsmanager/batch."""

    __slots__ = ()
    secret_ids: tuple[str, ...]
    refresh: bool


class ParameterBatchQuery(namedtuple("ParameterBatchQuery", "names with_decryption refresh")):
    """The validated query of GET /systemsmanager/parameters/batch."""

    __slots__ = ()
    names: tuple[ParameterName, ...]
    with_decryption: bool
    refresh: bool


class PathQuery(namedtuple("PathQuery", "path recursive with_decryption refresh")):
    """The validated query of GET /systemsmanager/parameters/get-by-path."""

    __slots__ = ()
    path: str
    recursive: bool
    with_decryption: bool
    refresh: bool


def is_forwarded(headers: dict[str, bytes]) -> bool:
    """True when the request carries any header a proxy adds when forwarding."""
    return any(name in headers for name in FORWARDED_HEADERS)


def _content(line: bytes) -> bytes:
    """A head line without its line end (CRLF, or LF alone); a bare CR or NUL is a 400."""
    content = line[:-2] if line.endswith(b"\r\n") else line[:-1]
    if b"\r" in content or b"\0" in content:
        raise BadRequest("bare CR or NUL in the request head")
    return content


def read_request(rfile: LineReader) -> Request | None:
    """The next request's head, or None when the client closed the connection first."""
    line = rfile.readline(MAX_REQUEST_LINE + 1)
    if line in (b"\r\n", b"\n"):  # RFC 9112 2.2: tolerate an empty line before a request
        line = rfile.readline(MAX_REQUEST_LINE + 1)
    if len(line) > MAX_REQUEST_LINE:
        raise UriTooLong(f"request line longer than {MAX_REQUEST_LINE} bytes")
    if not line.endswith(b"\n"):
        return None
    method, target, version = _request_line(line)
    headers = _headers(rfile)
    if headers is None:
        return None
    http10 = version == b"HTTP/1.0"
    return Request(method, target, headers, _keep_alive(headers, http10), http10)


def _request_line(line: bytes) -> tuple[str, str, bytes]:
    match = _REQUEST_LINE.fullmatch(line)
    if match is None:
        raise _request_line_error(line)
    method, target, version = match.groups()
    if target.isascii():
        text = target.decode("ascii")
    else:  # curl sends UTF-8 unescaped; escaping it lets the query decode as UTF-8
        text = urllib.parse.quote(target, safe=_PRINTABLE_ASCII)
    return method.decode("ascii"), text, version


def _request_line_error(line: bytes) -> BadRequest:
    """What is wrong with a request line that _REQUEST_LINE refuses."""
    if _LINE_SHAPE.fullmatch(_content(line)):  # _content raises for a bare CR or NUL
        return BadRequest("malformed request target")
    return BadRequest("malformed request line")


def _headers(rfile: LineReader) -> dict[str, bytes] | None:
    headers: dict[str, bytes] = {}
    budget = MAX_HEADER_BYTES
    for _ in range(MAX_HEADERS + 1):
        line = rfile.readline(budget + 1)
        if len(line) > budget:
            break
        if not line.endswith(b"\n"):
            return None
        if line in (b"\r\n", b"\n"):
            return headers
        budget -= len(line)
        content = _content(line)
        match = _FIELD_NAME.match(content)
        if match is None:
            raise BadRequest("malformed header field")
        key = match.group(1).decode("ascii").lower()
        value = content[match.end() :].strip(b" \t")
        headers[key] = headers[key] + b", " + value if key in headers else value
    raise HeaderFieldsTooLarge(
        f"header section over {MAX_HEADER_BYTES} bytes or {MAX_HEADERS} fields"
    )


def _keep_alive(headers: dict[str, bytes], http10: bool) -> bool:
    # A request body is never read, so a request that has one ends the connection.
    if "transfer-encoding" in headers or headers.get("content-length", b"0") != b"0":
        return False
    connection = headers.get("connection")
    if connection is None:  # the usual case, without building the set
        return not http10
    options = {part.strip().lower() for part in connection.split(b",")}
    return b"keep-alive" in options if http10 else b"close" not in options


def route(path: str) -> str:
    """The route name of a path (a service's name, PING or METRICS); 404 for any other."""
    name = ROUTES.get(path)
    if name is None:
        raise NotFound(_NOT_FOUND)
    return name


def _pairs(query: str) -> list[tuple[str, str]]:
    try:
        return urllib.parse.parse_qsl(
            query, keep_blank_values=True, encoding="utf-8", errors="strict"
        )
    except ValueError as exc:
        raise InvalidParameter("the query string is not valid UTF-8 once percent-decoded") from exc


def _first(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """The first non-empty value of each name: an empty value counts as absent."""
    values: dict[str, str] = {}
    for name, value in pairs:
        if value:
            values.setdefault(name, value)
    return values


def _bool(values: dict[str, str], name: str) -> bool:
    """true or false, any case; absent means false."""
    raw = values.get(name)
    if raw is None:
        return False
    lowered = raw.lower()
    if lowered not in ("true", "false"):
        raise InvalidParameter(f"{name} must be true or false")
    return lowered == "true"


def _refresh(values: dict[str, str]) -> bool:
    """refreshNow: true/false or 1/0, any case, as aws-secretsmanager-agent reads it."""
    raw = values.get("refreshNow")
    if raw is None:
        return False
    lowered = raw.lower()
    if lowered not in ("true", "false", "1", "0"):
        raise InvalidParameter("refreshNow must be true, false, 1 or 0")
    return lowered in ("true", "1")


def _required(values: dict[str, str], name: str) -> str:
    value = values.get(name)
    if value is None:
        raise MissingParameter(f"the query parameter {name} is required")
    return value


def _id_list(pairs: list[tuple[str, str]], name: str, limit: int) -> list[str]:
    """The comma-separated ids of query parameter `name`: 1 to `limit`, none empty, no repeat."""
    raw = next((value for key, value in pairs if key == name), None)
    if raw is None:
        raise MissingParameter(f"the query parameter {name} is required")
    rule = f"{name} must list 1 to {limit} ids separated by commas"
    items = raw.split(",")
    if len(items) > limit:
        raise InvalidParameter(f"{rule}; it lists {len(items)}")
    if not all(items):
        raise InvalidParameter(f"{rule}; it has an empty one")
    if len(set(items)) != len(items):
        raise InvalidParameter(f"{rule}; it lists one more than once")
    return items


def secret_batch_query(query: str) -> SecretBatchQuery:
    """Validate the query of the Secrets Manager batch endpoint."""
    pairs = _pairs(query)
    ids = tuple(_id_list(pairs, "secretIds", MAX_SECRET_IDS))
    return SecretBatchQuery(ids, _refresh(_first(pairs)))


def parameter_batch_query(query: str) -> ParameterBatchQuery:
    """Validate the query of the Parameter Store batch endpoint."""
    pairs = _pairs(query)
    names = tuple(parameter_name(item) for item in _id_list(pairs, "names", MAX_PARAMETER_NAMES))
    # name:3 and name:03 are one key, so one parameter listed twice.
    if len({entry[1:] for entry in names}) != len(names):
        raise InvalidParameter(
            f"names must list 1 to {MAX_PARAMETER_NAMES} ids separated by commas;"
            " it lists one more than once"
        )
    values = _first(pairs)
    return ParameterBatchQuery(names, _bool(values, "withDecryption"), _refresh(values))


def path_query(query: str) -> PathQuery:
    """Validate the query of the Parameter Store path endpoint."""
    values = _first(_pairs(query))
    return PathQuery(
        path=_required(values, "path"),
        recursive=_bool(values, "recursive"),
        with_decryption=_bool(values, "withDecryption"),
        refresh=_refresh(values),
    )


def secret_query(query: str) -> SecretQuery:
    """Validate the query of the Secrets Manager endpoint."""
    values = _first(_pairs(query))
    return SecretQuery(
        secret_id=_required(values, "secretId"),
        version_id=values.get("versionId"),
        version_stage=values.get("versionStage"),
        refresh=_refresh(values),
    )


def parameter_query(query: str) -> ParameterQuery:
    """Validate the query of the Parameter Store endpoint; of version and label, first wins."""
    pairs = _pairs(query)
    values = _first(pairs)
    name = _required(values, "name")
    selector = next(((k, v) for k, v in pairs if v and k in ("version", "label")), None)
    version = label = None
    if selector is not None and selector[0] == "version":
        version = version_number(selector[1])
    elif selector is not None:
        label = selector[1]
    return ParameterQuery(
        name=name,
        version=version,
        label=label,
        with_decryption=_bool(values, "withDecryption"),
        refresh=_refresh(values),
    )
