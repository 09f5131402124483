"""A client for the Lambda Extensions API: register, next, init/error and exit/error; and
the local port's one parse, which boot needs before `register` and config after it.

Plain HTTP/1.1 over a raw socket, one connection per call, its answer read by the
extension's one response reader (response_reader.py). Registration is the first thing the
extension does and Lambda starts the function's runtime only after it, so this module
imports nothing the interpreter has not already loaded but `_socket` and that reader (which
imports nothing itself; http.client alone costs about 20 ms to import), and leaves json
until an event or error needs it, and errors (a module of many classes) until a call fails.
Not even `__future__`: annotations that name what is imported only for type checking are
quoted instead. tests/test_import_order.py checks all of this on the built executable.
"""

import _socket
import time

from ..response_reader import ResponseError, read_response

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from collections.abc import Callable

    from ..errors import ExtensionsApiError

BASE = "/2020-01-01/extension"
TIMEOUT = 5.0  # seconds allowed for every call but `next`, which waits for as long as Lambda does
MAX_RESPONSE = 1 << 20  # bytes; Lambda's answers are a few hundred
# The local API's port: boot listens on it before registering, config reports it. Here rather
# than in boot, whose lazy import of the wiring would make config -> boot a cycle.
PORT_VARIABLE = "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"
DEFAULT_PORT = 2773


def http_port(raw: str) -> "int | None":
    """The port a variable's value names: 1 to 65535 in ASCII digits, blanks around it
    allowed; None for anything else ("+80", "-1", "80.5", "0", "65536")."""
    digits = raw.strip()
    if not digits.isascii() or not digits.isdigit() or len(digits.lstrip("0")) > 5:
        return None  # past 5 digits int() could only say "too large", or refuse the string
    port = int(digits)
    return port if 1 <= port <= 65535 else None


class ExtensionsApi:
    """Calls `AWS_LAMBDA_RUNTIME_API` (host:port) on a fresh loopback connection each time."""

    def __init__(self, runtime_api: str, timeout: float = TIMEOUT) -> None:
        self.runtime_api = runtime_api
        self.timeout = timeout
        self.identifier = ""
        self.initialized = False  # True once the first `next` has been sent

    def register(self, name: str, events: list[str]) -> str:
        """Register as `name` for `events`; return and keep the extension identifier."""
        if not all(event.isalpha() and event.isascii() for event in events):
            raise ValueError(f"not an event name: {events!r}")
        body = ('{"events": [' + ", ".join(f'"{event}"' for event in events) + "]}").encode()
        deadline = time.monotonic() + self.timeout
        sock = self._send("POST", "/register", body, {"Lambda-Extension-Name": name}, deadline)
        return self.registered(sock, deadline)

    def registered(self, sock: _socket.socket, deadline: "float | None" = None) -> str:
        """Finish a registration whose request was sent on `sock` (connected to Lambda, the
        answer unread; closed here): read the answer; return and keep the identifier.

        register() sends the request; so does the main() of the layer's own interpreter,
        before Python starts (boot.py adopts its socket). `deadline` defaults to self.timeout.
        """
        if deadline is None:
            deadline = time.monotonic() + self.timeout
        _, headers, _ = self._answer(sock, "POST", "/register", deadline)
        self.identifier = headers.get("lambda-extension-identifier", "")
        if not self.identifier:
            raise _error("Extensions API register answered without an identifier")
        return self.identifier

    def next_event(self, on_sent: "Callable[[], None] | None" = None) -> dict[str, object]:
        """Block until Lambda sends the next event (INVOKE or SHUTDOWN).

        `on_sent()` is called once the request has left, while the answer is awaited.
        """
        import json  # noqa: PLC0415 -- not before registering: json brings re

        self.initialized = True
        _, _, data = self._call("GET", "/event/next", wait_forever=True, on_sent=on_sent)
        try:
            event = json.loads(data)
        except ValueError as exc:
            raise _error("Extensions API sent an event that is not JSON") from exc
        if not isinstance(event, dict):
            raise _error("Extensions API sent an event that is not a JSON object")
        return event

    def report_error(self, error_type: str, message: str) -> None:
        """Post init/error before the first `next`, exit/error after it."""
        import json  # noqa: PLC0415 -- not before registering: json brings re

        path = "/exit/error" if self.initialized else "/init/error"
        body = {"errorMessage": message, "errorType": error_type, "stackTrace": []}
        headers = {"Lambda-Extension-Function-Error-Type": error_type}
        self._call("POST", path, json.dumps(body).encode(), headers)

    def _call(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        *,
        wait_forever: bool = False,
        on_sent: "Callable[[], None] | None" = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request, within self.timeout unless `wait_forever`."""
        deadline = None if wait_forever else time.monotonic() + self.timeout
        sock = self._send(method, path, body, headers, deadline)
        return self._answer(sock, method, path, deadline, on_sent)

    def _send(
        self,
        method: str,
        path: str,
        body: bytes,
        headers: dict[str, str] | None,
        deadline: "float | None",
    ) -> _socket.socket:
        """A new connection with the request sent on it (its answer for _answer to read)."""
        lines = [f"{method} {BASE}{path} HTTP/1.1", f"Host: {self.runtime_api}"]
        all_headers = {"Lambda-Extension-Identifier": self.identifier} if self.identifier else {}
        all_headers.update(headers or {})
        if method == "POST":
            all_headers["Content-Type"] = "application/json"
            all_headers["Content-Length"] = str(len(body))
        all_headers["Connection"] = "close"
        lines.extend(f"{name}: {_header_value(value)}" for name, value in all_headers.items())
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        sock = _connect(self.runtime_api, timeout)
        try:
            sock.sendall(request)
        except BaseException:
            sock.close()
            raise
        return sock

    def _answer(
        self,
        sock: _socket.socket,
        method: str,
        path: str,
        deadline: "float | None",
        on_sent: "Callable[[], None] | None" = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """Lambda's answer to the request sent on `sock`, which is then closed; an
        ExtensionsApiError unless it is a 2xx."""
        try:
            if on_sent is not None:
                on_sent()
            response = read_response(sock, deadline, MAX_RESPONSE, "Extensions API")
        except ResponseError as exc:
            raise _error(str(exc), path) from exc
        finally:
            sock.close()
        if not 200 <= response.status < 300:
            message = f"Extensions API {method} {path} answered {response.status}"
            raise _error(message, path, response.status)
        return response.status, response.headers, response.body


def _header_value(value: str) -> str:
    # Values come from our own code and the executable's file name; a line break would
    # let one smuggle a header, so refuse control characters outright.
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value) or not value.isascii():
        raise ValueError(f"not a valid header value: {value!r}")
    return value


def _connect(runtime_api: str, timeout: float | None) -> _socket.socket:
    host, _, port = runtime_api.rpartition(":")
    if not host or not host.isascii() or not port.isdigit():
        raise _error(f"AWS_LAMBDA_RUNTIME_API is not host:port: {runtime_api!r}")
    # As bytes: given a str, getaddrinfo encodes the host with the idna codec, whose import
    # (re, enum, unicodedata, ...) costs more than the interpreter's whole start.
    family, kind, proto, _, address = _socket.getaddrinfo(
        host.strip("[]").encode("ascii"), int(port), 0, _socket.SOCK_STREAM
    )[0]
    sock = _socket.socket(family, kind, proto)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def _error(message: str, path: str = "", status: int | None = None) -> "ExtensionsApiError":
    """The ExtensionsApiError to raise; a RuntimeError, as callers expect."""
    from ..errors import ExtensionsApiError  # noqa: PLC0415 -- not before registering

    return ExtensionsApiError(message, path, status)
