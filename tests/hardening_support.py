"""Shared helpers of the hardening tests: start the real extension, read RSS, talk raw HTTP."""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from tests.conftest import LambdaCredentials, Moto, free_port
from tests.extension_process import TOKEN_HEADER, ExtensionProcess, lambda_env

SECRET_PATH = "/secretsmanager/get?secretId="
PARAM_PATH = "/systemsmanager/parameters/get?name="


def start_standalone(
    executable: Path,
    log_path: Path,
    moto: Moto,
    creds: LambdaCredentials,
    *,
    endpoint: str | None = None,
    **extra: str,
) -> ExtensionProcess:
    """The extension in standalone mode (no Extensions API), listening, pointed at `endpoint`."""
    env = lambda_env(moto, creds, free_port(), None, **extra)
    if endpoint is not None:
        env["AWS_ENDPOINT_URL"] = endpoint
    ext = ExtensionProcess(executable, env, log_path)
    try:
        ext.wait_listening()
    except BaseException:
        ext.__exit__(None, None, None)
        raise
    return ext


@contextlib.contextmanager
def serving_standalone(
    executable: Path, log_path: Path, moto: Moto, creds: LambdaCredentials, **extra: str
) -> Iterator[ExtensionProcess]:
    """start_standalone for a module's tests; once they are done, the process must still be
    running and must have logged no traceback."""
    with start_standalone(executable, log_path, moto, creds, **extra) as process:
        yield process
        assert process.proc.poll() is None, process.output()
        assert "Traceback" not in process.output()


def secret_path(name: str) -> str:
    return SECRET_PATH + quote(name, safe="")


def param_path(name: str) -> str:
    return PARAM_PATH + quote(name, safe="")


def rss_kib(pid: int) -> int:
    """The process's resident set size (VmRSS) in KiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def get_request(path: str, token: str | None, *, extra: str = "") -> bytes:
    """A keep-alive GET as raw bytes, with the token header when one is given."""
    head = f"GET {path} HTTP/1.1\r\nHost: localhost\r\n"
    if token is not None:
        head += f"{TOKEN_HEADER}: {token}\r\n"
    return (head + extra + "\r\n").encode()


@dataclass
class Parsed:
    """The responses found in a byte stream, and whether it ended inside one."""

    statuses: list[int]
    leftover: bytes


class MalformedResponse(AssertionError):
    """The server wrote bytes that are not a well-framed HTTP/1.1 response."""


def parse_responses(data: bytes, *, bodyless_last: bool = False) -> Parsed:
    """Split a stream of Content-Length-framed HTTP/1.1 responses into their statuses.

    With `bodyless_last` (the last request was HEAD) the last response may end after its head.
    """
    statuses: list[int] = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            break
        lines = data[pos:end].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or parts[0] != b"HTTP/1.1" or not parts[1].isdigit():
            raise MalformedResponse(f"bad status line {lines[0][:100]!r}")
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        if length is None:
            raise MalformedResponse(f"no Content-Length after {lines[0]!r}")
        statuses.append(int(parts[1]))
        pos = end + 4 + length
        if pos > len(data) and bodyless_last:
            pos = end + 4
    return Parsed(statuses, data[pos:] if pos <= len(data) else b"<truncated body>")


def read_to_eof(sock: socket.socket, limit: int = 1 << 24) -> bytes:
    """Everything the peer sends until it closes; a reset ends the read like a close."""
    chunks: list[bytes] = []
    received = 0
    with contextlib.suppress(ConnectionResetError, BrokenPipeError):
        while received < limit:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            received += len(chunk)
    return b"".join(chunks)


def half_close(sock: socket.socket) -> None:
    """Tell the server we are done sending, unless it already reset the connection.

    A server that refuses a malformed request closes while our bytes are still unread, which
    resets the connection; shutdown() then fails with ENOTCONN, like send() with EPIPE.
    """
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError as exc:
        if exc.errno != errno.ENOTCONN:
            raise


def exchange(port: int, data: bytes, *, timeout: float = 30.0) -> bytes:
    """Send `data` on a new connection, half-close, and return all the server answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(data)
            half_close(sock)
        return read_to_eof(sock)
