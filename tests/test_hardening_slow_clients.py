"""Hardening: idle and slow clients cannot exhaust the real extension process's connections."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import SECRET_STRING_V2, Moto, wait_until
from tests.extension_process import ExtensionProcess
from tests.hardening_support import (
    parse_responses,
    read_to_eof,
    secret_path,
)

MAX_CLIENTS = 8
IDLE_TIMEOUT_SECONDS = 1
# Generous bounds, only so that a broken server fails the test instead of hanging it.
CLOSE_WITHIN_SECONDS = 10.0
RECOVER_WITHIN_SECONDS = 8.0
# Faster than the idle timeout, so a timeout that restarts with every byte never fires.
TRICKLE_GAP_SECONDS = 0.5
SLOW_HEAD = b"GET /ping HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"s" * 4096


@pytest.fixture
def extension(start_extension: Callable[..., ExtensionProcess]) -> Iterator[ExtensionProcess]:
    ext = start_extension(
        PARAMETERS_SECRETS_EXTENSION_MAX_CLIENT_CONNECTIONS=str(MAX_CLIENTS),
        PARAMETERS_SECRETS_EXTENSION_IDLE_TIMEOUT_SECONDS=str(IDLE_TIMEOUT_SECONDS),
    )
    yield ext
    assert "Traceback" not in ext.output()


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=CLOSE_WITHIN_SECONDS)


def _ping_status(port: int) -> int | None:
    """/ping's status on a new connection; None when the connection is refused or reset."""
    try:
        with _connect(port) as sock:
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            statuses = parse_responses(read_to_eof(sock)).statuses
    except OSError:
        return None
    return statuses[0] if statuses else None


def _closed_by_server(sock: socket.socket) -> bool:
    """Wait up to CLOSE_WITHIN_SECONDS for the server to end the connection."""
    try:
        return read_to_eof(sock) == b""
    except TimeoutError:
        return False


def test_connections_past_the_cap_get_503_and_idle_ones_are_freed(
    extension: ExtensionProcess, moto: Moto
) -> None:
    idle = [_connect(extension.port) for _ in range(MAX_CLIENTS)]
    try:
        with _connect(extension.port) as extra:  # sends nothing: the answer comes unasked
            parsed = parse_responses(read_to_eof(extra))
        assert parsed.statuses == [503] and parsed.leftover == b""
        for sock in idle:
            assert _closed_by_server(sock), "an idle connection outlived the idle timeout"
    finally:
        for sock in idle:
            sock.close()
    wait_until(lambda: _ping_status(extension.port) == 200, RECOVER_WITHIN_SECONDS, "/ping 200")
    status, body = extension.get_json(secret_path(moto.secret_name))
    assert status == 200 and body["SecretString"] == SECRET_STRING_V2


def test_client_silent_longer_than_the_idle_timeout_mid_request_is_disconnected(
    extension: ExtensionProcess,
) -> None:
    with _connect(extension.port) as sock:
        sock.sendall(SLOW_HEAD[:20])  # part of a request line, then nothing
        assert _closed_by_server(sock)
    assert _ping_status(extension.port) == 200


class Trickler:
    """A slowloris: one connection sending a request head one byte every `gap` seconds."""

    def __init__(self, port: int, gap: float) -> None:
        self.sock = _connect(port)
        self.gap = gap
        self.started = time.monotonic()
        self.closed_after: float | None = None
        self.received = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for byte in SLOW_HEAD:
                readable, _, _ = select.select([self.sock], [], [], 0)
                if readable:
                    chunk = self.sock.recv(65536)
                    self.received += chunk
                    if not chunk:
                        break  # EOF, after an answer (such as 408) or none
                self.sock.sendall(bytes([byte]))
                if self._stop.wait(self.gap):
                    return
            else:
                return  # the whole head went through without the server ending it
        except OSError:
            pass  # a reset or a failed send: the server ended it
        self.closed_after = time.monotonic() - self.started

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self.sock.close()


def test_slowloris_trickling_faster_than_the_idle_timeout_cannot_hold_the_slots(
    extension: ExtensionProcess,
) -> None:
    tricklers = [Trickler(extension.port, TRICKLE_GAP_SECONDS) for _ in range(MAX_CLIENTS)]
    try:
        wait_until(
            lambda: all(t.closed_after is not None for t in tricklers),
            RECOVER_WITHIN_SECONDS,
            "the server to end every slowloris connection",
            interval=0.1,
        )
        # The slot is released just after the close, so /ping may need a moment.
        wait_until(lambda: _ping_status(extension.port) == 200, RECOVER_WITHIN_SECONDS, "/ping")
        # Each had taken a slot (none was turned away with 503) until the server ended it.
        assert not any(t.received.startswith(b"HTTP/1.1 503") for t in tricklers)
    finally:
        for trickler in tricklers:
            trickler.stop()


def test_a_client_that_stops_reading_its_answers_is_given_up_on(
    extension: ExtensionProcess,
) -> None:
    # More answers than the kernel's buffers on both sides hold, so the server's send blocks
    # until the idle timeout ends it; a send without a deadline would wait for the client.
    count = 100_000
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window
        sock.settimeout(CLOSE_WITHIN_SECONDS)
        sock.connect(("127.0.0.1", extension.port))
        with contextlib.suppress(OSError):  # the server may give up before it has them all
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n" * count)
        time.sleep(IDLE_TIMEOUT_SECONDS * 4)  # reading nothing meanwhile
        answered = parse_responses(read_to_eof(sock), bodyless_last=True).statuses
    assert answered, "the server answered nothing"
    assert set(answered) == {200}
    assert len(answered) < count, "the server waited for a client that had stopped reading"
    assert _ping_status(extension.port) == 200
