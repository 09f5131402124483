"""A loopback TCP server with scripted misbehaviour: one that hangs, one that trickles."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable


class RawServer:
    """A loopback TCP server that runs `serve(conn, stop)` for each connection, in threads."""

    def __init__(self, serve: Callable[[socket.socket, threading.Event], None]) -> None:
        self._serve = serve
        self.stop = threading.Event()
        self.accepted = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._threads: list[threading.Thread] = []
        self.uri = f"http://127.0.0.1:{self._listener.getsockname()[1]}/creds"
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            thread = threading.Thread(target=self._run, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _run(self, conn: socket.socket) -> None:
        # OSError: the client gave up and closed, which is what the tests provoke.
        with conn, contextlib.suppress(OSError):
            self._serve(conn, self.stop)

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.stop.set()
        self._acceptor.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()


def hang(conn: socket.socket, stop: threading.Event) -> None:
    conn.recv(65536)
    stop.wait(30)


def trickle(conn: socket.socket, stop: threading.Event) -> None:
    """A valid head announcing a body that then comes one byte every 0.2 s (an hour's
    worth, yet under every answer's size limit, so that only a deadline ends it)."""
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n")
    while not stop.wait(0.2):
        conn.sendall(b" ")
