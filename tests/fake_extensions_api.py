"""A stdlib fake of the Lambda Extensions API that behaves like Lambda, for the tests."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BASE = "/2020-01-01/extension"
IDENTIFIER = "ext-0123-4567"


@dataclass
class Call:
    """One recorded request: its headers (names lower-cased) and JSON body; `request`, the
    request line, the header lines as sent (names, order) and the body's bytes."""

    headers: dict[str, str]
    body: object
    request: bytes = b""


@dataclass
class Recorder:
    registrations: list[Call] = field(default_factory=list)
    init_errors: list[Call] = field(default_factory=list)
    exit_errors: list[Call] = field(default_factory=list)
    next_calls: list[Call] = field(default_factory=list)


class FakeExtensionsApi:
    """Serve register/next/init-error/exit-error on 127.0.0.1:0; `next` blocks until `send`."""

    def __init__(self) -> None:
        self.calls = Recorder()
        self.events: queue.Queue[dict[str, object]] = queue.Queue()
        self.registered = threading.Event()  # set once a registration has been answered
        self.first_next = threading.Event()
        # Runs in the server thread when a registration has arrived, before it is answered:
        # the extension is then waiting for the answer.
        self.on_register: Callable[[], None] | None = None
        # Runs in the server thread when the first `next` arrives, before it blocks: the
        # moment Lambda would end the init phase.
        self.on_first_next: Callable[[], None] | None = None
        self.first_next_error: BaseException | None = None
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def send(self, event: dict[str, object]) -> None:
        self.events.put(event)

    def shutdown_extension(self, reason: str = "spindown", deadline_ms: int = 2000) -> None:
        self.send({"eventType": "SHUTDOWN", "shutdownReason": reason, "deadlineMs": deadline_ms})

    def stop(self) -> None:
        # Unblock any `next` still waiting so the server threads can finish.
        self.send({"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": 0})
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeExtensionsApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _first_next(self) -> None:
        if self.on_first_next is not None:
            try:
                self.on_first_next()
            except BaseException as exc:  # handed to the test, which re-raises it
                self.first_next_error = exc
        self.first_next.set()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Head and body go out in two writes: without this a reused connection stalls
            # ~40 ms on each reply, which would blur every timing taken against the fake.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the tests read the recorded calls instead."""

            def _call(self) -> Call:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                lines = [self.requestline, *(f"{k}: {v}" for k, v in self.headers.items())]
                request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + raw
                return Call(headers, json.loads(raw) if raw else None, request)

            def _reply(
                self, status: int, body: object, headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                call = self._call()
                if self.path == BASE + "/register":
                    fake.calls.registrations.append(call)
                    if fake.on_register is not None:
                        fake.on_register()
                    body = {"functionName": "fn", "functionVersion": "$LATEST", "handler": "h"}
                    self._reply(200, body, {"Lambda-Extension-Identifier": IDENTIFIER})
                    fake.registered.set()
                elif self.path in (BASE + "/init/error", BASE + "/exit/error"):
                    if call.headers.get("lambda-extension-identifier") != IDENTIFIER:
                        self._reply(403, {"errorType": "Extension.Unknown"})
                        return
                    bucket = "init_errors" if "init" in self.path else "exit_errors"
                    getattr(fake.calls, bucket).append(call)
                    self._reply(202, {"status": "OK"})
                else:
                    self._reply(404, {"errorType": "NotFound"})

            def do_GET(self) -> None:
                call = self._call()
                if self.path != BASE + "/event/next":
                    self._reply(404, {"errorType": "NotFound"})
                    return
                if call.headers.get("lambda-extension-identifier") != IDENTIFIER:
                    self._reply(403, {"errorType": "Extension.Unknown"})
                    return
                fake.calls.next_calls.append(call)
                if len(fake.calls.next_calls) == 1:
                    fake._first_next()
                self._reply(200, fake.events.get())

        return Handler
