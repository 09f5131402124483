"""A tiny keep-alive HTTP/1.1 upstream on loopback that counts connections and keeps heads.

It answers every request with one canned response, so tests can see from outside what the
client did: how many connections it opened, how many it still holds, and what it sent.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType
from typing import BinaryIO

_SOCKET_TIMEOUT = 10.0


def response(status: int, body: bytes, *, chunked: bool = False) -> bytes:
    """A keep-alive response with `body`, framed by Content-Length or in 64 KiB chunks."""
    head = f"HTTP/1.1 {status} Stub\r\nContent-Type: application/x-amz-json-1.1\r\n"
    if not chunked:
        return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    framed = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
    return (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + framed + b"0\r\n\r\n"


ACCESS_DENIED = response(
    400, b'{"__type":"AccessDeniedException","message":"the stub upstream says no"}'
)


class StubUpstream:
    """Listen on `host`:`port` (0 picks one; `.port`), answer each request with `.answer`.

    With `serve=False` it only counts: each connection is closed as soon as it is accepted.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        answer: bytes = ACCESS_DENIED,
        *,
        serve: bool = True,
    ) -> None:
        self.answer = answer
        self._serve_requests = serve
        # While set, requests wait (up to the socket timeout) before they are answered.
        self.hold = threading.Event()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._clients: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self.accepted = 0
        self.heads: list[bytes] = []
        self._listener = socket.create_server((host, port))
        self._listener.settimeout(0.05)
        self.address: str = self._listener.getsockname()[0]
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    def __enter__(self) -> StubUpstream:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def open_connections(self) -> int:
        """Connections accepted that the client has not closed yet."""
        with self._lock:
            return len(self._clients)

    def header_values(self, name: str) -> list[str]:
        """The value of header `name` in each request received so far."""
        wanted = name.lower().encode() + b":"
        with self._lock:
            heads = list(self.heads)
        return [
            line[len(wanted) :].strip().decode("latin-1")
            for head in heads
            for line in head.split(b"\r\n")
            if line.lower().startswith(wanted)
        ]

    def wait_open(self, count: int, timeout: float = 5.0) -> None:
        """Wait until exactly `count` connections are open; fail with the count seen."""
        deadline = time.monotonic() + timeout
        while self.open_connections != count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.open_connections == count, (self.open_connections, count)

    def stop(self) -> None:
        """Stop accepting, close every connection and wait for the threads to end."""
        self._stopping.set()
        self.hold.clear()
        self._acceptor.join(timeout=5)
        self._listener.close()
        with self._lock:
            clients = list(self._clients)
            threads = list(self._threads)
        for sock in clients:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(timeout=5)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._serve_requests:
                with self._lock:
                    self.accepted += 1
                sock.close()
                continue
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            with self._lock:
                self.accepted += 1
                self._clients.add(sock)
                self._threads = [alive for alive in self._threads if alive.is_alive()]
                self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(_SOCKET_TIMEOUT)
        try:
            with sock, sock.makefile("rb") as reader:
                while not self._stopping.is_set():
                    head = _read_head(reader)
                    if head is None:
                        return
                    with self._lock:
                        self.heads.append(head)
                    deadline = time.monotonic() + _SOCKET_TIMEOUT
                    while self.hold.is_set() and time.monotonic() < deadline:
                        time.sleep(0.01)
                    sock.sendall(self.answer)
        except (OSError, ValueError):
            pass  # the client left or sent something that is not HTTP (a TLS hello)
        finally:
            with self._lock:
                self._clients.discard(sock)


def _read_head(reader: BinaryIO) -> bytes | None:
    """One request's line and headers (its body read and dropped), or None at EOF."""
    lines: list[bytes] = []
    while True:
        line = reader.readline(65537)
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            break
        lines.append(line.rstrip(b"\r\n"))
        if len(lines) > 100:
            raise ValueError("too many header lines")
    head = b"\r\n".join(lines)
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            reader.read(int(value))
    return head
