"""Reading one request's head off a local connection: request line and header fields.

Limits, far above what any client sends and far below memory trouble:
- the request line: at most MAX_REQUEST_LINE bytes, else 414;
- the header section: at most MAX_HEADER_BYTES in all and MAX_HEADERS fields, else 431;
- the body, read only for the AWS JSON protocol (`POST /` with X-Amz-Target, see
  sdk_protocol): a Content-Length of at most MAX_BODY_BYTES, else 413 (411 for a chunked
  one), within the same deadline as the head.
A malformed request line or header is a 400 BadRequestException, and so is a bare CR or a
NUL anywhere in the head: such a byte is never part of a header value, since another
parser could take it for a line end. Any framing error ends the connection, because the
rest of the stream can no longer be trusted.

Two readers give the same request. The usual head arrives in one piece, already in the
server's buffer (an io.BufferedReader): `_buffered_head` finds its end there and splits it
once at its field lines' starts, which costs a fraction of a readline and a pattern per line
(an AWS SDK's request has ten header lines, one of them a 1 KB session token). It takes
only a head that is whole, CRLF throughout and within every limit; anything else (a head
still arriving, LF line ends, a bare CR or NUL, obs-fold, a malformed line, a limit
passed) is left unread for `_head_by_lines`, the line-by-line reader, which decides it:
every error comes from one place.
"""

from __future__ import annotations

import io
import re
from _operator import methodcaller  # operator's own, without importing operator

from ..errors import BadRequest, HeaderFieldsTooLarge, LengthRequired, PayloadTooLarge, UriTooLong
from ..percent import quote

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from typing import Final, Protocol, TypeAlias

    # method, target, HTTP version, header fields
    _Head: TypeAlias = tuple[str, str, bytes, dict[str, bytes]]

    class LineReader(Protocol):
        """The part of a buffered socket file that reading a request needs."""

        def readline(self, size: int, /) -> bytes: ...

        def read(self, size: int, /) -> bytes: ...


MAX_REQUEST_LINE = 16 * 1024
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 100
# The largest AWS JSON request served: BatchGetSecretValue's 20 ARNs of up to 2048
# characters, JSON-escaped, are under 100 KiB.
MAX_BODY_BYTES = 128 * 1024
# The AWS JSON protocol's request: its method, path and the header that names its operation.
SDK_METHOD = "POST"
SDK_PATH = "/"
TARGET_HEADER = "x-amz-target"

TOKEN_HEADER = "x-aws-parameters-secrets-token"  # noqa: S105 (a header name)
# The same token under the name Vault clients send, as both newer AWS agents accept it.
VAULT_TOKEN_HEADER = "x-vault-token"  # noqa: S105 (a header name)
# A request that passed through a proxy: refused, as the AWS extension refuses it, so that
# a server-side request forgery elsewhere in the function cannot reach the secrets.
FORWARDED_HEADERS = ("x-forwarded-for", "forwarded", "x-forwarded-host")
_FORWARDED = frozenset(FORWARDED_HEADERS)

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# The line reader's patterns (_REQUEST_LINE, _FIELD_NAME, _LINE_SHAPE) are compiled (and
# cached by re) when it first reads a head, not at import (about 0.1 ms each): the usual
# head, whole in the buffer, is read by _buffered_head with the two compiled below.
# A whole request line, line end included, in one match: a token (the method), the target
# and the version, one space apart, then CRLF or LF. The target has no control byte or space
# (bytes above 0x7e are percent-encoded later), so there is no CR or NUL before the line end.
_REQUEST_LINE = rb"(%s) ([^\x00-\x20\x7f]+) (HTTP/1\.[0-9])\r?\n" % _TOKEN
# The same, without the line end: the request line of a head split at its CRLFs.
_REQUEST_LINE_CONTENT = re.compile(rb"(%s) ([^\x00-\x20\x7f]+) (HTTP/1\.[0-9])" % _TOKEN)
# A header field's name and colon; the value is not scanned by a pattern, since it holds the
# long session token and _content's two byte searches are faster over it.
_FIELD_NAME = rb"(%s):" % _TOKEN
# A refused request line of this shape has a bad target: empty, or a control byte in it.
_LINE_SHAPE = rb"%s [^ ]* HTTP/1\.[0-9]" % _TOKEN
# Where a field line starts in a head with CRLF line ends: the line end before it, the name
# (captured), its colon and the whitespace that opens the value. Split at these, a head
# gives its request line, then each field's name and value.
_FIELD_START = re.compile(rb"\r\n(%s):[ \t]*" % _TOKEN)
# A value's whitespace at its end, stripped; the same object back when there is none.
_STRIP_END = methodcaller("rstrip", b" \t")
# Header names as sent -> checked and lower-cased, for _buffered_head: a client sends the
# same few names on every request. Bounded: cleared when full, names longer than
# MAX_KNOWN_NAME never kept (at most 16 KiB of names).
MAX_KNOWN_NAMES = 256
MAX_KNOWN_NAME = 64
_NAMES: dict[bytes, str] = {}
_PRINTABLE_ASCII = bytes(range(0x21, 0x7F))


class Request:
    """One request's head; header names are lower case, repeated fields joined by ", "."""

    __slots__ = ("body", "headers", "http10", "keep_alive", "method", "sdk", "target")

    def __init__(
        self,
        method: str,
        target: str,
        headers: dict[str, bytes],
        keep_alive: bool,
        http10: bool,
        *,
        body: bytes = b"",
        sdk: bool = False,
    ) -> None:
        self.method: Final = method
        self.target: Final = target
        self.headers: Final = headers
        self.keep_alive: Final = keep_alive
        self.http10: Final = http10
        self.body: Final = body  # read only for the AWS JSON protocol; else empty
        self.sdk: Final = sdk  # an AWS JSON protocol request (is_sdk_request), body read


def is_sdk_request(method: str, target: str, headers: dict[str, bytes]) -> bool:
    """True for an AWS JSON protocol request: `POST /` naming an operation in X-Amz-Target."""
    return (
        method == SDK_METHOD and TARGET_HEADER in headers and target.partition("?")[0] == SDK_PATH
    )


def is_forwarded(headers: dict[str, bytes]) -> bool:
    """True when the request carries any header a proxy adds when forwarding."""
    return not _FORWARDED.isdisjoint(headers)  # one C call, no generator


def _content(line: bytes) -> bytes:
    """A head line without its line end (CRLF, or LF alone); a bare CR or NUL is a 400."""
    content = line[:-2] if line.endswith(b"\r\n") else line[:-1]
    if b"\r" in content or b"\0" in content:
        raise BadRequest("bare CR or NUL in the request head")
    return content


def read_request(rfile: LineReader) -> Request | None:
    """The next request's head, or None when the client closed the connection first."""
    head = _buffered_head(rfile) if isinstance(rfile, io.BufferedReader) else None
    if head is None:
        head = _head_by_lines(rfile)
        if head is None:
            return None
    method, target, version, headers = head
    http10 = version == b"HTTP/1.0"
    if is_sdk_request(method, target, headers):
        body = _body(rfile, headers)
        if body is None:
            return None
        keep_alive = _keep_alive(headers, http10, body_read=True)
        return Request(method, target, headers, keep_alive, http10, body=body, sdk=True)
    return Request(method, target, headers, _keep_alive(headers, http10), http10)


def _buffered_head(rfile: io.BufferedReader) -> _Head | None:
    """The head, read in one pass when it is whole in `rfile`'s buffer, CRLF throughout,
    well formed and within the limits; else None, with nothing read.

    One split at the field lines' starts (_FIELD_START) cuts the head into the request line
    and each field's name and value; the dict is then made by C-level calls, with no Python
    loop over the lines (an SDK's request has ten of them). A woken SDK hit runs with cold
    caches, where each Python step costs several times what it costs warm.
    """
    buffered = rfile.peek(1)  # all that is buffered; one read first if nothing is
    end = buffered.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buffered[:end]
    parts = _FIELD_START.split(head)
    fields = len(parts) >> 1
    # Each field line's start holds one CR and one LF. Any other is a bare one, an LF line
    # end or the end of a line the split did not take (no colon, a bad name, obs-fold):
    # the line reader's case.
    if head.count(b"\r") != fields or head.count(b"\n") != fields or b"\0" in head:
        return None
    request_line = parts[0]
    if (
        fields > MAX_HEADERS
        or len(request_line) + 2 > MAX_REQUEST_LINE
        or end + 4 - len(request_line) - 2 > MAX_HEADER_BYTES  # the fields and the empty line
    ):
        return None
    match = _REQUEST_LINE_CONTENT.fullmatch(request_line)
    if match is None:
        return None
    raw_names = parts[1::2]
    values = list(map(_STRIP_END, parts[2::2]))  # its start stripped by the split
    known = list(map(_NAMES.get, raw_names))
    keys: list[str] = (
        [key or _known_name(name) for key, name in zip(known, raw_names, strict=True)]
        if None in known
        else known  # type: ignore[assignment]  # no None in it
    )
    headers: dict[str, bytes] = dict(zip(keys, values, strict=True))
    if len(headers) != fields:  # a repeated field: its values joined, in order
        headers = {}
        for key, value in zip(keys, values, strict=True):
            headers[key] = headers[key] + b", " + value if key in headers else value
    rfile.read(end + 4)  # from the buffer: no system call
    method, target, version = match.groups()
    return method.decode("ascii"), _target(target), version, headers


def _known_name(name: bytes) -> str:
    """A field name lower-cased, remembered (within the table's bounds) for next time."""
    key = name.decode("ascii").lower()
    if len(name) <= MAX_KNOWN_NAME:
        if len(_NAMES) >= MAX_KNOWN_NAMES:
            _NAMES.clear()
        _NAMES[name] = key
    return key


def _head_by_lines(rfile: LineReader) -> _Head | None:
    """The head, line by line: the reader of every head, and the judge of a bad one."""
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
    return method, target, version, headers


def _body(rfile: LineReader, headers: dict[str, bytes]) -> bytes | None:
    """The body its Content-Length announces, or None when the client closed first."""
    if "transfer-encoding" in headers:
        raise LengthRequired("a request body needs a Content-Length")
    raw = headers.get("content-length", b"0")
    if not raw.isdigit() or len(raw) > 12:  # digits only: no sign, space or second value
        raise BadRequest("malformed Content-Length")
    length = int(raw)
    if length > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body over {MAX_BODY_BYTES} bytes")
    body = rfile.read(length) if length else b""
    return body if len(body) == length else None


def _request_line(line: bytes) -> tuple[str, str, bytes]:
    match = re.fullmatch(_REQUEST_LINE, line)
    if match is None:
        raise _request_line_error(line)
    method, target, version = match.groups()
    return method.decode("ascii"), _target(target), version


def _target(target: bytes) -> str:
    if target.isascii():
        return target.decode("ascii")
    # curl sends UTF-8 unescaped; escaping it lets the query decode as UTF-8
    return quote(target, safe=_PRINTABLE_ASCII)


def _request_line_error(line: bytes) -> BadRequest:
    """What is wrong with a request line that _REQUEST_LINE refuses."""
    if re.fullmatch(_LINE_SHAPE, _content(line)):  # _content raises for a bare CR or NUL
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
        match = re.match(_FIELD_NAME, content)
        if match is None:
            raise BadRequest("malformed header field")
        key = match.group(1).decode("ascii").lower()
        value = content[match.end() :].strip(b" \t")
        headers[key] = headers[key] + b", " + value if key in headers else value
    raise HeaderFieldsTooLarge(
        f"header section over {MAX_HEADER_BYTES} bytes or {MAX_HEADERS} fields"
    )


def _keep_alive(headers: dict[str, bytes], http10: bool, *, body_read: bool = False) -> bool:
    # A request body is read only for the AWS JSON protocol, so any other request that has
    # one ends the connection.
    if not body_read and (
        "transfer-encoding" in headers or headers.get("content-length", b"0") != b"0"
    ):
        return False
    connection = headers.get("connection")
    if connection is None:  # the usual case, without building the set
        return not http10
    options = {part.strip().lower() for part in connection.split(b",")}
    return b"keep-alive" in options if http10 else b"close" not in options
