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
"""

from __future__ import annotations

import re
import urllib.parse

from ..errors import BadRequest, HeaderFieldsTooLarge, LengthRequired, PayloadTooLarge, UriTooLong

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from typing import Final, Protocol

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

    __slots__ = ("body", "headers", "http10", "keep_alive", "method", "target")

    def __init__(
        self,
        method: str,
        target: str,
        headers: dict[str, bytes],
        keep_alive: bool,
        http10: bool,
        *,
        body: bytes = b"",
    ) -> None:
        self.method: Final = method
        self.target: Final = target
        self.headers: Final = headers
        self.keep_alive: Final = keep_alive
        self.http10: Final = http10
        self.body: Final = body  # read only for the AWS JSON protocol; else empty


def is_sdk_request(method: str, target: str, headers: dict[str, bytes]) -> bool:
    """True for an AWS JSON protocol request: `POST /` naming an operation in X-Amz-Target."""
    return (
        method == SDK_METHOD and TARGET_HEADER in headers and target.partition("?")[0] == SDK_PATH
    )


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
    if is_sdk_request(method, target, headers):
        body = _body(rfile, headers)
        if body is None:
            return None
        keep_alive = _keep_alive(headers, http10, body_read=True)
        return Request(method, target, headers, keep_alive, http10, body=body)
    return Request(method, target, headers, _keep_alive(headers, http10), http10)


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
