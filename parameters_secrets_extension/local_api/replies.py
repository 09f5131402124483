"""A reply and its bytes: status line, headers and body rendered as one buffer, so that each
response is one socket write; errors as JSON `{"__type", "message"}`."""

from __future__ import annotations

import json
import time

from ..errors import ExtensionError

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from typing import Final

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"


class Reply:
    """One response and what the debug log says about it."""

    __slots__ = ("body", "content_type", "headers", "outcome", "route", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        content_type: str = JSON,
        route: str = "-",
        outcome: str = "-",
        *,
        headers: str = "",
    ) -> None:
        self.status: Final = status
        self.body: Final = body
        self.content_type: Final = content_type
        self.route: Final = route
        self.outcome: Final = outcome
        self.headers: Final = headers  # further header lines, each ending in CRLF


def error_reply(exc: ExtensionError, route: str = "-") -> Reply:
    body = json.dumps({"__type": exc.error_type, "message": exc.message}).encode()
    return Reply(exc.status, body, JSON, route, "error")


class _Date:
    """The Date header value, formatted at most once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def __call__(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._value = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now))
            self._second = now
        return self._value


_date = _Date()


# Reason phrases (RFC 9110 section 15, RFC 6585) of the statuses a reply can carry: ours,
# and an upstream refusal's, which is relayed with its status. A table rather than
# http.HTTPStatus: importing `http` builds an enum of every status before the first `next`.
# Clients ignore the phrase (RFC 9112 section 4), so any other status says "Error".
_PHRASES: Final = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    409: "Conflict",
    410: "Gone",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Content Too Large",
    414: "URI Too Long",
    415: "Unsupported Media Type",
    416: "Range Not Satisfiable",
    417: "Expectation Failed",
    421: "Misdirected Request",
    422: "Unprocessable Content",
    426: "Upgrade Required",
    428: "Precondition Required",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}


def render(reply: Reply, *, close: bool, http10: bool = False, head: bool = False) -> bytes:
    """Status line, headers and body as one buffer, so each response is one socket write."""
    return render_head(reply, close=close, http10=http10) + (b"" if head else reply.body)


def render_head(reply: Reply, *, close: bool, http10: bool = False) -> bytes:
    """Status line and headers of `reply`, ending in the blank line."""
    if close:
        connection = "Connection: close\r\n"
    else:
        connection = "Connection: keep-alive\r\n" if http10 else ""
    text = (
        f"HTTP/1.1 {reply.status} {_PHRASES.get(reply.status, 'Error')}\r\n"
        f"Content-Type: {reply.content_type}\r\n"
        f"Content-Length: {len(reply.body)}\r\n"
        f"Date: {_date()}\r\n{reply.headers}{connection}\r\n"
    )
    return text.encode("latin-1")
