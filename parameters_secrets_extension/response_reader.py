"""Reading one HTTP/1.1 response off a socket: the status line, the header fields, and the
body, framed by Content-Length, by the chunked coding or by the end of the connection; every
limit in bytes, every wait within the caller's deadline.

The one response reader of the extension's three HTTP clients: the Extensions API
(lambda_api/lifecycle.py), the container credentials provider (aws/credentials.py) and the
AWS endpoints (aws/connection_pool.py, which keeps a connection the response leaves
reusable). It replaces http.client, whose import (email's header parser, calendar, locale)
cost more CPU than the rest of the AWS client. lifecycle.py reads `register`'s answer with it
before the function's runtime may start, so this module imports nothing the interpreter has
not already loaded (`time` is built in): not even `__future__`; annotations are quoted.
"""

import time

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from typing import Protocol

    class Socket(Protocol):
        """What the reader uses of a socket: a plain one, or aws/tls.py's TlsSocket."""

        def settimeout(self, value: "float | None", /) -> None: ...

        def recv(self, bufsize: int, /) -> bytes: ...


# The status line and header fields, with any interim (1xx) answers before them, chunk-size
# lines and trailers: AWS's heads are under 1 KB.
MAX_HEAD_BYTES = 64 * 1024
MAX_FIELDS = 100  # header fields of one head (and trailer fields), as http.client allows
_RECV_BYTES = 65536
_HEX_DIGITS = b"0123456789abcdefABCDEF"
_NO_BODY = (204, 304)  # statuses that never have a body, whatever their headers say


class ResponseError(Exception):
    """The answer is not one HTTP/1.1 response within the limits; the connection is spent."""


class Malformed(ResponseError):
    """Not HTTP/1.x, or a head or framing that cannot be read."""


class OverLimit(ResponseError):
    """The head, its fields or the body is over its limit; the rest is left unread."""


class CutShort(ResponseError):
    """The connection ended (closed or reset) before the response did.

    `started` tells whether any byte of it had come: a kept-alive connection that the server
    closed while it sat idle ends before the first one.
    """

    def __init__(self, message: str, *, started: bool) -> None:
        super().__init__(message)
        self.started = started


class Response:
    """A complete response: header names lower-case (repeated fields joined by ", "), and
    whether the connection may carry another request."""

    __slots__ = ("body", "headers", "keep_alive", "status")

    def __init__(self, status: int, headers: "dict[str, str]", body: bytes, keep_alive: bool):
        self.status = status
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive


def read_response(
    sock: "Socket",
    deadline: "float | None",
    max_body: int,
    peer: str,
    *,
    longest_wait: "float | None" = None,
    max_head: int = MAX_HEAD_BYTES,
) -> Response:
    """One response off `sock` (plain or TLS), to a request that was not HEAD.

    Every read waits at most until `deadline` (a time.monotonic value; None: no end) and
    `longest_wait` seconds; past the deadline, TimeoutError. Messages name `peer`. Raises
    OverLimit once the head passes `max_head` bytes (or MAX_FIELDS fields) or the body
    `max_body`, before reading the rest; Malformed, CutShort; an OSError of the socket's own.
    """
    reader = _Reader(sock, deadline, longest_wait, max_head, peer)
    status, http11, headers = _head(reader)
    while 100 <= status < 200:  # an interim answer (100 Continue): the final one follows
        status, http11, headers = _head(reader)
    body, framed = _body(reader, status, headers, max_body)
    # A body that ends with the connection, or bytes after this response, end its use.
    keep_alive = framed and not reader.buffer and _persistent(http11, headers)
    return Response(status, headers, body, keep_alive)


class _Reader:
    """The bytes received and not yet used, and the budget of head bytes left."""

    __slots__ = (
        "buffer",
        "deadline",
        "head_left",
        "longest_wait",
        "max_head",
        "peer",
        "received",
        "sock",
    )

    def __init__(
        self,
        sock: "Socket",
        deadline: "float | None",
        longest_wait: "float | None",
        max_head: int,
        peer: str,
    ) -> None:
        self.sock = sock
        self.deadline = deadline
        self.longest_wait = longest_wait
        self.max_head = max_head
        self.head_left = max_head
        self.peer = peer
        self.buffer = bytearray()
        self.received = 0

    def fill(self) -> bool:
        """One read into the buffer within the deadline; False when the peer closed."""
        wait = self.longest_wait
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.peer} did not answer in time")
            wait = left if wait is None else min(wait, left)
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(_RECV_BYTES)
        except ConnectionError as exc:  # reset or aborted
            raise CutShort(
                f"{self.peer} dropped the connection: {type(exc).__name__}",
                started=self.received > 0,
            ) from exc
        self.received += len(chunk)
        self.buffer += chunk
        return bool(chunk)

    def cut_short(self) -> CutShort:
        return CutShort(
            f"{self.peer} closed the connection before the response ended",
            started=self.received > 0,
        )

    def head_over_limit(self) -> OverLimit:
        # The limit, not the budget left: heads, chunk sizes and trailers share it.
        return OverLimit(f"{self.peer} sent a head over {self.max_head} bytes")

    def line(self) -> bytes:
        """One line of the head, without its CRLF (or bare LF), counted against the budget."""
        end = self.buffer.find(b"\n")
        while end < 0:
            if len(self.buffer) > self.head_left:
                raise self.head_over_limit()
            if not self.fill():
                raise self.cut_short()
            end = self.buffer.find(b"\n")
        if end >= self.head_left:
            raise self.head_over_limit()
        self.head_left -= end + 1
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 1]
        return line[:-1] if line.endswith(b"\r") else line

    def take(self, size: int) -> bytes:
        """Exactly `size` bytes."""
        while len(self.buffer) < size:
            if not self.fill():
                raise self.cut_short()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def rest(self, most: int) -> bytes:
        """Everything until the peer closes, at most `most` bytes."""
        while len(self.buffer) <= most and self.fill():
            pass
        if len(self.buffer) > most:
            raise OverLimit(f"{self.peer} sent a body over {most} bytes")
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


def _head(reader: _Reader) -> "tuple[int, bool, dict[str, str]]":
    """(status, whether HTTP/1.1, header fields) of one head."""
    line = reader.line()
    version, _, rest = line.partition(b" ")
    code = rest[:3]
    if (
        version not in (b"HTTP/1.1", b"HTTP/1.0")
        or len(code) != 3
        or not code.isdigit()
        or rest[3:4] not in (b"", b" ")
    ):
        raise Malformed(f"{reader.peer} answered something that is not HTTP/1.x")
    return int(code), version == b"HTTP/1.1", _fields(reader)


def _fields(reader: _Reader) -> "dict[str, str]":
    """Header (or trailer) fields up to the empty line: names lower-case, values trimmed."""
    fields: dict[str, str] = {}
    name = ""
    count = 0
    line = reader.line()
    while line:
        if line[:1] in (b" ", b"\t") and name:
            # An obsolete line folding continues the previous value (RFC 9112 5.2).
            fields[name] += " " + line.strip(b" \t").decode("latin-1")
        else:
            count += 1
            if count > MAX_FIELDS:
                raise OverLimit(f"{reader.peer} sent over {MAX_FIELDS} header fields")
            raw_name, colon, value = line.partition(b":")
            if not colon or not raw_name or raw_name != raw_name.strip():
                raise Malformed(f"{reader.peer} sent a header line that is not a field")
            name = raw_name.decode("latin-1").lower()
            text = value.strip(b" \t").decode("latin-1")
            fields[name] = f"{fields[name]}, {text}" if name in fields else text
        line = reader.line()
    return fields


def _body(
    reader: _Reader, status: int, headers: "dict[str, str]", max_body: int
) -> "tuple[bytes, bool]":
    """The body, and whether its end was known without the connection's (RFC 9112 6.3)."""
    if status in _NO_BODY:
        return b"", True
    coding = headers.get("transfer-encoding")
    if coding is not None:
        if coding.rpartition(",")[2].strip().lower() != "chunked":
            return reader.rest(max_body), False
        # With a Content-Length beside it, the message may have been meant to be read
        # otherwise along the way: read it chunked, but reuse nothing.
        return _chunked(reader, max_body), "content-length" not in headers
    length = headers.get("content-length")
    if length is None:
        return reader.rest(max_body), False
    if not (length.isascii() and length.isdigit()):
        raise Malformed(f"{reader.peer} sent a Content-Length that is not a number")
    if len(length.lstrip("0")) > 15 or int(length) > max_body:
        raise OverLimit(f"{reader.peer} sent a body over {max_body} bytes")
    return reader.take(int(length)), True


def _chunked(reader: _Reader, max_body: int) -> bytes:
    """A chunked body (its size lines counted as head bytes), trailer fields dropped."""
    chunks: list[bytes] = []
    size_so_far = 0
    while True:
        digits = reader.line().partition(b";")[0].strip(b" \t")  # extensions dropped
        if not digits or len(digits) > 15 or digits.strip(_HEX_DIGITS):
            raise Malformed(f"{reader.peer} sent a malformed chunk size")
        size = int(digits, 16)
        if size == 0:
            break
        size_so_far += size
        if size_so_far > max_body:
            raise OverLimit(f"{reader.peer} sent a body over {max_body} bytes")
        chunks.append(reader.take(size))
        if reader.line():
            raise Malformed(f"{reader.peer} sent a chunk longer than its size")
    _fields(reader)  # the trailer section, bounded as a head is
    return b"".join(chunks)


def _persistent(http11: bool, headers: "dict[str, str]") -> bool:
    """Whether the server keeps the connection open after this response."""
    options = {option.strip() for option in headers.get("connection", "").lower().split(",")}
    return "close" not in options if http11 else "keep-alive" in options
