"""A controllable keep-alive HTTP proxy on 127.0.0.1 in front of one upstream, for fault tests.

Clients keep their connections; each request goes upstream on a fresh connection (moto
always answers `Connection: close`), its bytes unchanged so SigV4 still verifies. Faults:

- "down": close each new client connection at accept.
- "status_500" / "throttle" / "validation": answer a canned 500 InternalFailure / 400
  ThrottlingException / 400 ValidationException, after `hold_ms`.
- "delay": wait `delay_ms` before forwarding.
- "trickle": forward, then send the answer one byte every `delay_ms`.
- "reset": send part of the response, then reset the connection (SO_LINGER 0).
- "drop": read the request, then close the connection without an answer.

Each fault applies `times` times (None: until cleared). `close_idle()` closes the client
connections waiting for their next request, as a Lambda freeze and thaw does.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
import threading
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO

FAULTS = ("down", "status_500", "throttle", "validation", "delay", "trickle", "reset", "drop")
_ACCEPT_FAULTS = ("down",)
_CANNED = {
    "status_500": (500, "Internal Server Error", "InternalFailure", "injected 500"),
    "throttle": (400, "Bad Request", "ThrottlingException", "Rate exceeded"),
    "validation": (400, "Bad Request", "ValidationException", "injected refusal"),
}
_MAX_HEADER_LINES = 200
_SOCKET_TIMEOUT = 30.0
_KEPT_HEADS = 1000


@dataclass
class _Fault:
    kind: str
    remaining: int | None
    delay_ms: int
    hold_ms: int = 0


@dataclass
class _Message:
    """One HTTP message: the raw head lines (without CRLF) and the body."""

    head: list[bytes]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        wanted = name.lower()
        for line in self.head[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == wanted:
                return value.strip()
        return None


class FaultProxy:
    """Listen on 127.0.0.1:0 (`.port`), forward to the upstream, inject faults on demand."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._ssl_context = ssl_context
        self._lock = threading.Lock()
        self._fault: _Fault | None = None
        self._idle: set[socket.socket] = set()
        self._clients: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self.connections_accepted = 0
        self.requests_received = 0
        self.requests_forwarded = 0
        # Request line and headers of the latest requests, oldest first; bounded for load tests.
        self.request_heads: deque[list[bytes]] = deque(maxlen=_KEPT_HEADS)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, name="fault-proxy", daemon=True)
        self._acceptor.start()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def header_values(self, name: str) -> list[str]:
        """The value of header `name` in each request received so far (None-free)."""
        with self._lock:
            heads = list(self.request_heads)
        values = (_Message(head, b"").header(name.encode()) for head in heads)
        return [value.decode() for value in values if value is not None]

    def set_fault(
        self, kind: str | None, *, times: int | None = None, delay_ms: int = 0, hold_ms: int = 0
    ) -> None:
        """Inject `kind` (one of FAULTS) for the next `times` occasions; None clears it.

        `hold_ms` holds a canned answer back that long, as a slow refusal."""
        if kind is not None and kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}")
        with self._lock:
            self._fault = None if kind is None else _Fault(kind, times, delay_ms, hold_ms)

    def close_idle(self) -> int:
        """Close every client connection that waits for its next request; return how many."""
        with self._lock:
            idle, self._idle = list(self._idle), set()
        for sock in idle:
            _shutdown(sock)
        return len(idle)

    def stop(self) -> None:
        """Stop accepting, close every connection and wait for the threads to end."""
        self._stopping.set()
        self._acceptor.join(timeout=5)
        self._listener.close()
        with self._lock:
            clients = list(self._clients)
            threads = list(self._threads)
        for sock in clients:
            _shutdown(sock)
        for thread in threads:
            thread.join(timeout=5)

    def _take_fault(self, kinds: tuple[str, ...]) -> _Fault | None:
        with self._lock:
            fault = self._fault
            if fault is None or fault.kind not in kinds:
                return None
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._fault = None
            return fault

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections_accepted += 1
            if self._take_fault(_ACCEPT_FAULTS):
                sock.close()
                continue
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            with self._lock:
                self._threads = [alive for alive in self._threads if alive.is_alive()]
                self._threads.append(thread)
            thread.start()

    def _serve(self, raw: socket.socket) -> None:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw.settimeout(_SOCKET_TIMEOUT)
        try:
            sock = raw
            if self._ssl_context is not None:
                sock = self._ssl_context.wrap_socket(raw, server_side=True)
            with self._lock:
                self._clients.add(sock)
            try:
                self._serve_requests(sock)
            finally:
                with self._lock:
                    self._clients.discard(sock)
                    self._idle.discard(sock)
                sock.close()
        except (OSError, ValueError):
            # Handshake failures, resets and closes from close_idle()/stop() end the connection.
            raw.close()

    def _serve_requests(self, sock: socket.socket) -> None:
        with sock.makefile("rb") as reader:
            self._serve_reader(sock, reader)

    def _serve_reader(self, sock: socket.socket, reader: BinaryIO) -> None:
        self._set_idle(sock, True)
        while not self._stopping.is_set():
            request = _read_message(reader, is_request=True)
            self._set_idle(sock, False)
            if request is None:
                return
            with self._lock:
                self.requests_received += 1
                self.request_heads.append(request.head)
            if not self._answer(sock, request):
                return

    def _answer(self, sock: socket.socket, request: _Message) -> bool:
        """Answer one request; False when the connection must end."""
        fault = self._take_fault(
            ("status_500", "throttle", "validation", "delay", "trickle", "reset", "drop")
        )
        kind = fault.kind if fault else None
        if kind == "drop":
            return False
        if kind in _CANNED:
            if fault is not None and self._stopping.wait(fault.hold_ms / 1000):
                return False
            self._set_idle(sock, True)
            sock.sendall(_canned(kind))
            return True
        if fault is not None and kind == "delay" and self._stopping.wait(fault.delay_ms / 1000):
            return False
        response = self._forward(request)
        if kind == "reset":
            _send_then_reset(sock, response, self._stopping)
            return False
        if fault is not None and kind == "trickle":
            for at in range(len(response)):
                if self._stopping.wait(fault.delay_ms / 1000):
                    return False
                sock.sendall(response[at : at + 1])
            return False
        keep_alive = request.header(b"connection") != b"close"
        # Idle from the moment the client can have its answer, so close_idle() sees it.
        self._set_idle(sock, keep_alive)
        sock.sendall(response)
        return keep_alive

    def _set_idle(self, sock: socket.socket, idle: bool) -> None:
        with self._lock:
            if idle:
                self._idle.add(sock)
            else:
                self._idle.discard(sock)

    def _forward(self, request: _Message) -> bytes:
        """Send the request upstream on a new connection; the response, made keep-alive."""
        with socket.create_connection(self._upstream, timeout=_SOCKET_TIMEOUT) as upstream:
            upstream.sendall(b"\r\n".join(request.head) + b"\r\n\r\n" + request.body)
            with upstream.makefile("rb") as reader:
                response = _read_message(reader, is_request=False)
        if response is None:
            raise ConnectionError("upstream closed without answering")
        with self._lock:
            self.requests_forwarded += 1
        # HTTP/1.1 towards the client whatever the upstream spoke, so the client keeps it.
        status_line = b"HTTP/1.1 " + response.head[0].partition(b" ")[2]
        head = [status_line] + [
            line
            for line in response.head[1:]
            if line.partition(b":")[0].strip().lower() not in (b"connection", b"content-length")
        ]
        head.append(b"Content-Length: %d" % len(response.body))
        return b"\r\n".join(head) + b"\r\n\r\n" + response.body


def _read_message(reader: BinaryIO, *, is_request: bool) -> _Message | None:
    """Read one message; a body by Content-Length, or (responses) to EOF. None at clean EOF."""
    first = reader.readline()
    if not first:
        return None
    head = [first.rstrip(b"\r\n")]
    for _ in range(_MAX_HEADER_LINES):
        line = reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        head.append(line.rstrip(b"\r\n"))
    message = _Message(head, b"")
    length = message.header(b"content-length")
    if length is not None:
        message.body = reader.read(int(length))
    elif not is_request:
        message.body = reader.read()
    return message


def _canned(kind: str) -> bytes:
    status, reason, error_type, text = _CANNED[kind]
    body = json.dumps({"__type": error_type, "message": text}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/x-amz-json-1.1\r\n"
        f"X-Amzn-ErrorType: {error_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _send_then_reset(sock: socket.socket, response: bytes, stopping: threading.Event) -> None:
    """Send the head and half the body, let the client read it, then reset the connection."""
    head, _, body = response.partition(b"\r\n\r\n")
    sock.sendall(head + b"\r\n\r\n" + body[: len(body) // 2])
    stopping.wait(0.05)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _shutdown(sock: socket.socket) -> None:
    # socket.socket.shutdown, not SSLSocket.shutdown: the latter drops the TLS state that the
    # connection's own thread may be using at this moment.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
