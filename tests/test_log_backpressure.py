"""Nobody reads the real process's stdout: requests are still answered, lines are dropped and
counted, and a stop signal still ends the process at once."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LambdaCredentials, Moto, free_port
from tests.extension_process import lambda_env

# Each /ping logs one debug line of about 60 bytes: this is several full pipes (64 KiB).
PINGS = 4000
PING = b"GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n"


@pytest.fixture
def unread_stdout(
    extension_executable: Path, moto: Moto, lambda_credentials: LambdaCredentials
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    env = lambda_env(
        moto, lambda_credentials, port, None, PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL="debug"
    )
    proc = subprocess.Popen(
        [str(extension_executable)],
        env=env,
        stdout=subprocess.PIPE,  # never read below
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


def _connect(port: int, timeout: float = 15.0) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _read_some(fd: int) -> bytes:
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return b""


def test_a_full_stdout_blocks_no_request_and_no_stop_signal(
    unread_stdout: tuple[subprocess.Popen[bytes], int],
) -> None:
    proc, port = unread_stdout
    with _connect(port) as sock:
        reader = sock.makefile("rb")
        for index in range(PINGS):
            sock.sendall(PING)
            try:
                status = reader.readline()
            except TimeoutError:
                pytest.fail(f"ping {index} not answered in 5 s: a log line blocked its thread")
            assert status.startswith(b"HTTP/1.1 200 "), (index, status)
            while reader.readline() not in (b"\r\n", b""):
                pass
            assert reader.read(len(b"healthy")) == b"healthy"
        # Read stdout again: the next line is preceded by the count of those dropped.
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        while _read_some(proc.stdout.fileno()):
            pass
        sock.sendall(PING)
        assert reader.readline().startswith(b"HTTP/1.1 200 ")
        seen = b""
        deadline = time.monotonic() + 10
        while b"log lines dropped" not in seen and time.monotonic() < deadline:
            seen += _read_some(proc.stdout.fileno())
            time.sleep(0.01)
        assert re.search(rb"WARN \d+ log lines dropped: stdout was not being read", seen), seen
    assert proc.poll() is None
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(5)
    except subprocess.TimeoutExpired:
        pytest.fail("SIGTERM did not end the process in 5 s with stdout full")
    assert code == 0
    assert time.monotonic() - started < 3
