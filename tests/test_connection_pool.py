"""The keep-alive pool against a real local upstream behind the fault proxy."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from parameters_secrets_extension.aws.connection_pool import (
    MAX_ORIGINS,
    MAX_RESPONSE_BYTES,
    ConnectionPool,
    Pools,
    TlsSettings,
)
from parameters_secrets_extension.errors import (
    ResponseTooLarge,
    TlsVerificationError,
    UpstreamConnectionError,
    UpstreamTimeout,
)
from parameters_secrets_extension.response_reader import MAX_HEAD_BYTES
from tests.conftest import free_port
from tests.echo_upstream import serving_echo
from tests.fault_proxy import FaultProxy
from tests.raw_server import RawServer
from tests.stub_upstream import StubUpstream, response
from tests.tls_certs import make_pki

HEADERS = {"Content-Type": "text/plain"}


@pytest.fixture(scope="module")
def echo() -> Iterator[tuple[str, int]]:
    with serving_echo() as address:
        yield address


@pytest.fixture
def proxy(echo: tuple[str, int]) -> Iterator[FaultProxy]:
    with FaultProxy(*echo) as running:
        yield running


def _pool(origin: str, max_connections: int = 3, ca_bundle: str | None = None) -> ConnectionPool:
    return ConnectionPool(origin, max_connections=max_connections, tls=TlsSettings(ca_bundle))


def _post(pool: ConnectionPool, body: bytes, deadline: float | None = None) -> bytes:
    response = pool.request("POST", "/p", HEADERS, body, deadline=deadline)
    assert response.status == 200
    return response.body


def test_sequential_requests_reuse_one_connection(proxy: FaultProxy) -> None:
    pool = _pool(f"http://127.0.0.1:{proxy.port}", max_connections=2)
    for i in range(200):
        assert _post(pool, b"%d" % i) == b"echo:/p:%d" % i
    assert proxy.connections_accepted == 1
    assert proxy.requests_received == 200
    pool.close()


def test_concurrency_never_exceeds_max_connections(proxy: FaultProxy) -> None:
    proxy.set_fault("delay", delay_ms=20)
    pool = _pool(f"http://127.0.0.1:{proxy.port}", max_connections=3)
    failures: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(5):
                assert _post(pool, b"%d-%d" % (n, i)) == b"echo:/p:%d-%d" % (n, i)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert failures == []
    assert proxy.requests_received == 40
    assert proxy.connections_accepted <= 3
    pool.close()


def test_connection_closed_while_idle_is_replaced(proxy: FaultProxy) -> None:
    pool = _pool(f"http://127.0.0.1:{proxy.port}")
    assert _post(pool, b"a") == b"echo:/p:a"
    assert proxy.close_idle() == 1
    assert _post(pool, b"b") == b"echo:/p:b"
    assert proxy.connections_accepted == 2
    pool.close()


def test_reused_connection_dropped_at_request_is_retried_once(proxy: FaultProxy) -> None:
    pool = _pool(f"http://127.0.0.1:{proxy.port}")
    assert _post(pool, b"a") == b"echo:/p:a"
    # The server closes the reused connection after reading the request: the race between
    # an idle close and our send. The pool retries on a fresh connection, unseen.
    proxy.set_fault("drop", times=1)
    assert _post(pool, b"b") == b"echo:/p:b"
    assert proxy.connections_accepted == 2
    assert proxy.requests_received == 3
    pool.close()


def test_fresh_connection_failure_is_not_hidden(proxy: FaultProxy) -> None:
    pool = _pool(f"http://127.0.0.1:{proxy.port}")
    proxy.set_fault("drop", times=1)
    with pytest.raises(UpstreamConnectionError):
        _post(pool, b"a")
    assert proxy.connections_accepted == 1
    assert _post(pool, b"b") == b"echo:/p:b"


def test_reset_mid_response_is_a_connection_error(proxy: FaultProxy) -> None:
    pool = _pool(f"http://127.0.0.1:{proxy.port}")
    assert _post(pool, b"a") == b"echo:/p:a"
    proxy.set_fault("reset", times=1)
    with pytest.raises(UpstreamConnectionError) as caught:
        _post(pool, b"b" * 64)
    assert "mid-response" in caught.value.message
    assert _post(pool, b"c") == b"echo:/p:c"


def test_connection_close_responses_are_not_pooled() -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    with StubUpstream(answer=closing) as upstream:
        pool = _pool(f"http://127.0.0.1:{upstream.port}")
        for _ in range(3):
            assert _post(pool, b"x") == b"ok"
        pool.close()
        assert upstream.accepted == 3


def test_deadline_bounds_a_slow_response(proxy: FaultProxy) -> None:
    pool = _pool(f"http://127.0.0.1:{proxy.port}")
    proxy.set_fault("delay", delay_ms=5000)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        _post(pool, b"slow", deadline=time.monotonic() + 0.3)
    assert time.monotonic() - started < 3.0


def test_deadline_bounds_the_wait_for_a_free_connection(proxy: FaultProxy) -> None:
    pool = _pool(f"http://127.0.0.1:{proxy.port}", max_connections=1)
    proxy.set_fault("delay", times=1, delay_ms=1000)
    holder = threading.Thread(target=_post, args=(pool, b"hold"))
    holder.start()
    while proxy.requests_received == 0:
        time.sleep(0.01)
    with pytest.raises(UpstreamTimeout) as caught:
        _post(pool, b"waits", deadline=time.monotonic() + 0.2)
    assert "free" in caught.value.message
    holder.join(timeout=10)
    assert proxy.connections_accepted == 1


def test_refused_connection_is_a_connection_error() -> None:
    port = free_port()
    with pytest.raises(UpstreamConnectionError) as caught:
        _post(_pool(f"http://127.0.0.1:{port}"), b"x")
    assert "ConnectionRefusedError" in caught.value.message


def test_tls_with_ca_bundle_and_untrusted_certificate(
    echo: tuple[str, int], tmp_path: Path
) -> None:
    trusted = make_pki(tmp_path, "trusted")
    stranger = make_pki(tmp_path, "stranger")
    with FaultProxy(*echo, ssl_context=trusted.server_context()) as tls_proxy:
        pool = _pool(f"https://127.0.0.1:{tls_proxy.port}", ca_bundle=str(trusted.ca_file))
        assert _post(pool, b"tls") == b"echo:/p:tls"
        assert _post(pool, b"again") == b"echo:/p:again"
        assert tls_proxy.connections_accepted == 1
        pool.close()
    with FaultProxy(*echo, ssl_context=stranger.server_context()) as other:
        pool = _pool(f"https://127.0.0.1:{other.port}", ca_bundle=str(trusted.ca_file))
        with pytest.raises(TlsVerificationError) as caught:
            _post(pool, b"x")
        assert caught.value.status == 502
        assert other.requests_received == 0


def test_unreadable_ca_bundle_is_a_connection_error(tmp_path: Path) -> None:
    missing = tmp_path / "absent.pem"
    with pytest.raises(UpstreamConnectionError) as caught:
        TlsSettings(str(missing)).context()
    assert "AWS_CA_BUNDLE" in caught.value.message


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_at_the_limit_is_read_and_the_connection_kept(chunked: bool) -> None:
    body = b"x" * MAX_RESPONSE_BYTES
    with StubUpstream(answer=response(200, body, chunked=chunked)) as upstream:
        pool = _pool(f"http://127.0.0.1:{upstream.port}")
        assert _post(pool, b"a") == body
        assert _post(pool, b"b") == body
        assert upstream.accepted == 1


@pytest.mark.parametrize(
    ("size", "chunked"),
    [(MAX_RESPONSE_BYTES + 1, False), (MAX_RESPONSE_BYTES + 1, True), (8 * 1024 * 1024, True)],
)
def test_a_body_over_the_limit_is_a_502_and_the_connection_is_dropped(
    size: int, chunked: bool
) -> None:
    with StubUpstream(answer=response(200, b"y" * size, chunked=chunked)) as upstream:
        pool = _pool(f"http://127.0.0.1:{upstream.port}")
        with pytest.raises(ResponseTooLarge) as caught:
            _post(pool, b"a")
        assert caught.value.status == 502
        assert caught.value.error_type == "ResponseTooLargeException"
        # The rest of the body is never read, so that connection cannot carry another request.
        upstream.wait_open(0)
        upstream.answer = response(200, b"small")
        assert _post(pool, b"b") == b"small"
        assert upstream.accepted == 2


def test_userinfo_in_the_origin_is_never_sent() -> None:
    with StubUpstream(answer=response(200, b"ok")) as upstream:
        pool = _pool(f"http://admin:hunter2@127.0.0.1:{upstream.port}")
        assert _post(pool, b"a") == b"ok"
        assert pool.origin == f"http://127.0.0.1:{upstream.port}"
    assert upstream.heads
    assert not any(b"hunter2" in head or b"admin" in head for head in upstream.heads)


def _post_via(pools: Pools, upstream: StubUpstream) -> bytes:
    return _post(pools.get(f"http://127.0.0.1:{upstream.port}"), b"p")


def test_pools_keep_connections_to_the_most_recent_origins_only() -> None:
    ok = response(200, b"ok")
    upstreams = [StubUpstream(answer=ok) for _ in range(MAX_ORIGINS + 2)]
    try:
        pools = Pools(max_connections=2, tls=TlsSettings(None))
        for upstream in upstreams:
            assert _post_via(pools, upstream) == b"ok"
        # Reusing the oldest kept origin makes it the most recent, so the next one is closed.
        assert _post_via(pools, upstreams[2]) == b"ok"
        assert _post_via(pools, upstreams[0]) == b"ok"
        for index, upstream in enumerate(upstreams):
            upstream.wait_open(0 if index in (1, 3) else 1)
        assert [upstream.accepted for upstream in upstreams] == [2] + [1] * (MAX_ORIGINS + 1)
    finally:
        for upstream in upstreams:
            upstream.stop()


def test_a_retired_pool_finishes_its_request_then_closes_the_connection() -> None:
    ok = response(200, b"ok")
    upstreams = [StubUpstream(answer=ok) for _ in range(MAX_ORIGINS + 1)]
    slow = upstreams[0]
    try:
        pools = Pools(max_connections=2, tls=TlsSettings(None))
        slow.hold.set()
        results: list[bytes] = []
        waiting = threading.Thread(target=lambda: results.append(_post_via(pools, slow)))
        waiting.start()
        while not slow.heads:
            time.sleep(0.01)
        for upstream in upstreams[1:]:
            assert _post_via(pools, upstream) == b"ok"
        slow.hold.clear()
        waiting.join(timeout=10)
        assert results == [b"ok"]
        slow.wait_open(0)
        # The origin is welcome again, on a new pool.
        assert _post_via(pools, slow) == b"ok"
        assert slow.accepted == 2
    finally:
        for upstream in upstreams:
            upstream.stop()


# --- The pool's own HTTP/1.1 client (response_reader.py reads every answer) ---


def _answer_then(
    answers: list[bytes], then: str
) -> Callable[[socket.socket, threading.Event], None]:
    """A RawServer script: each request read gets the next of `answers`; after the last,
    "close" the connection at once, or "drop" it when the next request arrives."""

    def serve(conn: socket.socket, stop: threading.Event) -> None:
        for answer in answers:
            conn.recv(65536)
            conn.sendall(answer)
        if then == "drop":
            conn.recv(65536)

    return serve


@pytest.mark.parametrize("then", ["close", "drop"])
def test_a_server_closing_a_kept_alive_connection(then: str) -> None:
    # HTTP/1.1 without `Connection: close`: the pool keeps the connection, and the server then
    # closes it, while it is idle or as the next request arrives. Either way the next request
    # goes out again on a fresh connection, unseen by the caller.
    with RawServer(_answer_then([response(200, b"one")], then)) as server:
        pool = _pool(server.uri.removesuffix("/creds"))
        assert _post(pool, b"a") == b"one"
        if then == "close":
            time.sleep(0.1)  # the FIN is in: the idle check sees it
        assert _post(pool, b"b") == b"one"
        assert server.accepted == 2
        pool.close()


def test_a_chunked_answer_keeps_the_connection() -> None:
    with StubUpstream(answer=response(200, b"c" * 200_000, chunked=True)) as upstream:
        pool = _pool(f"http://127.0.0.1:{upstream.port}")
        for _ in range(3):
            assert _post(pool, b"x") == b"c" * 200_000
        assert upstream.accepted == 1
        pool.close()


def test_a_truncated_body_is_a_connection_error_and_the_connection_is_not_reused() -> None:
    truncated = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf"
    with RawServer(_answer_then([truncated], "close")) as server:
        pool = _pool(server.uri.removesuffix("/creds"))
        with pytest.raises(UpstreamConnectionError) as caught:
            _post(pool, b"a")
        assert "mid-response" in caught.value.message
        with pytest.raises(UpstreamConnectionError):
            _post(pool, b"b")
        assert server.accepted == 2


def test_an_oversize_head_is_a_502_and_the_connection_is_dropped() -> None:
    huge = b"HTTP/1.1 200 OK\r\nX-Padding: " + b"p" * (MAX_HEAD_BYTES + 1) + b"\r\n\r\n"
    with StubUpstream(answer=huge) as upstream:
        pool = _pool(f"http://127.0.0.1:{upstream.port}")
        with pytest.raises(ResponseTooLarge) as caught:
            _post(pool, b"a")
        assert caught.value.status == 502
        upstream.wait_open(0)
        upstream.answer = response(200, b"small")
        assert _post(pool, b"b") == b"small"
        assert upstream.accepted == 2


@pytest.mark.parametrize(
    "answer",
    [b"not http at all\r\n\r\n", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n"],
)
def test_a_malformed_answer_is_a_connection_error_and_the_connection_is_dropped(
    answer: bytes,
) -> None:
    with StubUpstream(answer=answer) as upstream:
        pool = _pool(f"http://127.0.0.1:{upstream.port}")
        with pytest.raises(UpstreamConnectionError) as caught:
            _post(pool, b"a")
        assert not isinstance(caught.value, ResponseTooLarge)
        upstream.wait_open(0)


def test_one_write_per_request_with_its_length_and_host() -> None:
    with StubUpstream(answer=response(200, b"ok")) as upstream:
        pool = _pool(f"http://127.0.0.1:{upstream.port}")
        assert _post(pool, b"0123456789") == b"ok"
        pool.request("POST", "/q", {"Host": "example.com", **HEADERS}, b"", deadline=None)
        pool.close()
    assert upstream.header_values("Host") == [f"127.0.0.1:{upstream.port}", "example.com"]
    assert upstream.header_values("Content-Length") == ["10", "0"]
    assert upstream.heads[0].startswith(b"POST /p HTTP/1.1\r\n")


@pytest.mark.parametrize(
    ("path", "headers"),
    [("/p\r\nX-Injected: 1", HEADERS), ("/p", {"X-Token": "a\r\nX-Injected: 1"})],
)
def test_a_line_break_never_reaches_the_wire(path: str, headers: dict[str, str]) -> None:
    with StubUpstream(answer=response(200, b"ok")) as upstream:
        pool = _pool(f"http://127.0.0.1:{upstream.port}")
        with pytest.raises(ValueError, match="line break"):
            pool.request("POST", path, headers, b"")
    assert upstream.accepted == 0
