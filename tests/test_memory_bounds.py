"""The real process's memory stays bounded by bytes: the cache's byte cap, and replies that
clients do not read holding no copy of the body (RSS read from /proc)."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import LambdaCredentials, Moto
from tests.extension_process import ExtensionProcess
from tests.hardening_support import get_request, rss_kib, secret_path, start_standalone
from tests.path_pages import PathPages
from tests.stub_upstream import StubUpstream, response

# Near the largest answer the client accepts (1 MiB), so each entry is as big as they come.
SECRET_CHARS = 900_000
ANSWER = json.dumps(
    {
        "ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:big-AbCdEf",
        "Name": "big",
        "SecretString": "s" * SECRET_CHARS,
        "VersionId": "v1",
        "VersionStages": ["AWSCURRENT"],
        "CreatedDate": 1700000000.0,
    }
).encode()
MIB = 1024


@pytest.fixture
def big_upstream(
    extension_executable: Path, tmp_path: Path, moto: Moto, lambda_credentials: LambdaCredentials
) -> Iterator[Callable[..., ExtensionProcess]]:
    """Start the extension against a stub that answers every call with a ~900 KB secret."""
    with StubUpstream(answer=response(200, ANSWER)) as upstream, contextlib.ExitStack() as stack:

        def start(**env: str) -> ExtensionProcess:
            ext = start_standalone(
                extension_executable,
                tmp_path / "extension.log",
                moto,
                lambda_credentials,
                endpoint=f"http://127.0.0.1:{upstream.port}",
                **env,
            )
            return stack.enter_context(ext)

        yield start


def _settled_rss(pid: int) -> int:
    """RSS once it stops moving for a moment (threads finishing their replies)."""
    last = rss_kib(pid)
    for _ in range(20):
        time.sleep(0.25)
        now = rss_kib(pid)
        if abs(now - last) < 256:
            return now
        last = now
    return last


def test_the_cache_is_bounded_by_bytes_not_only_by_entries(
    big_upstream: Callable[..., ExtensionProcess],
) -> None:
    ext = big_upstream(PARAMETERS_SECRETS_EXTENSION_CACHE_MAX_MB="8")
    assert ext.get(secret_path("warm-up"))[0] == 200
    before = _settled_rss(ext.proc.pid)
    # 100 distinct ids of ~900 KB each: ~90 MB if only the entry count (1000) bounded them.
    for index in range(100):
        status, _, body = ext.get(secret_path(f"big-{index}"))
        assert (status, len(body) > SECRET_CHARS) == (200, True)
    grown = _settled_rss(ext.proc.pid) - before
    assert grown < 40 * MIB, f"RSS grew {grown} KiB"
    status, counters = ext.get_json("/metrics")
    assert status == 200
    assert counters["CacheMaxBytes"] == 8 << 20
    assert 0 < int(counters["CacheBytes"]) <= 8 << 20
    assert int(counters["CacheSize"]) < 10, counters


# Far past SSM's 8 KiB values, to make answers as large as a high MAX_PATH_PARAMETERS allows
# with fewer upstream pages.
PATH_REPLY_BYTES = 10 * 10 * 90_000  # and a little more


@pytest.fixture
def path_upstream(
    extension_executable: Path, tmp_path: Path, moto: Moto, lambda_credentials: LambdaCredentials
) -> Iterator[Callable[..., ExtensionProcess]]:
    pages = PathPages(pages=10, value_chars=90_000)
    try:
        with contextlib.ExitStack() as stack:

            def start(**env: str) -> ExtensionProcess:
                ext = start_standalone(
                    extension_executable,
                    tmp_path / "extension.log",
                    moto,
                    lambda_credentials,
                    endpoint=f"http://127.0.0.1:{pages.port}",
                    PARAMETERS_SECRETS_EXTENSION_MAX_PATH_PARAMETERS="100",
                    PARAMETERS_SECRETS_EXTENSION_MAX_CLIENT_CONNECTIONS="256",
                    **env,
                )
                return stack.enter_context(ext)

            yield start
    finally:
        pages.stop()


def _path(path: str) -> str:
    return "/systemsmanager/parameters/get-by-path?path=" + quote(path, safe="")


def _not_reading(ext: ExtensionProcess, paths: list[str]) -> list[socket.socket]:
    """One client per path that sends its request and reads only the reply's first bytes,
    each in turn, so no two answers are built at once."""
    clients: list[socket.socket] = []
    try:
        for path in paths:
            sock = socket.socket()
            clients.append(sock)
            # A small receive window, so the kernel takes little and the reply waits on us.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(60)
            sock.connect(("127.0.0.1", ext.port))
            sock.sendall(get_request(_path(path), ext.token))
            with contextlib.suppress(ConnectionError):  # given up on: that is allowed
                sock.recv(16)
    except BaseException:
        for sock in clients:
            sock.close()
        raise
    return clients


def test_clients_that_do_not_read_hold_no_copy_of_a_cached_reply(
    path_upstream: Callable[..., ExtensionProcess],
) -> None:
    ext = path_upstream()
    status, _, body = ext.get(_path("/big"))
    assert (status, len(body) > PATH_REPLY_BYTES) == (200, True)
    before = _settled_rss(ext.proc.pid)
    # 40 copies of the ~9 MB answer would be ~360 MB; the cached body shared is none.
    clients = _not_reading(ext, ["/big"] * 40)
    try:
        grown = _settled_rss(ext.proc.pid) - before
        assert ext.proc.poll() is None
    finally:
        for sock in clients:
            sock.close()
    assert grown < 40 * MIB, f"RSS grew {grown} KiB"


def test_clients_that_do_not_read_pin_a_bounded_number_of_uncached_replies(
    path_upstream: Callable[..., ExtensionProcess],
) -> None:
    # Each ~9 MB answer is past the 8 MiB cache: never cached, each reply its own body.
    ext = path_upstream(PARAMETERS_SECRETS_EXTENSION_CACHE_MAX_MB="8")
    assert ext.get(_path("/warm"))[0] == 200
    before = _settled_rss(ext.proc.pid)
    clients = _not_reading(ext, [f"/big{index}" for index in range(30)])
    try:
        grown = _settled_rss(ext.proc.pid) - before
        status, counters = ext.get_json("/metrics")
        assert (status, counters["CacheSize"]) == (200, 0)
    finally:
        for sock in clients:
            sock.close()
    assert grown < 60 * MIB, f"RSS grew {grown} KiB"
