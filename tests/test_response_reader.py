"""response_reader: one HTTP/1.1 response read off a real socket, fed by a peer thread."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from parameters_secrets_extension.response_reader import (
    MAX_FIELDS,
    MAX_HEAD_BYTES,
    CutShort,
    Malformed,
    OverLimit,
    Response,
    read_response,
)


class Peer:
    """The server end of a loopback TCP connection: sends what a test scripts, in a thread."""

    def __init__(self) -> None:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            self.client = socket.create_connection(listener.getsockname(), timeout=5)
            self.server, _ = listener.accept()
        self._threads: list[threading.Thread] = []

    def send(self, *parts: bytes, end: str = "close", gap: float = 0.0) -> None:
        """Send `parts` (`gap` seconds apart), then "close", "reset" or "stay" open."""

        def run() -> None:
            try:
                for index, part in enumerate(parts):
                    if index and gap:
                        time.sleep(gap)
                    self.server.sendall(part)
                if end == "reset":  # an RST instead of a FIN
                    linger = struct.pack("ii", 1, 0)
                    self.server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                    self.server.close()
                elif end == "close":
                    self.server.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the reader gave up first, as some tests want

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self._threads.append(thread)

    def read(self, max_body: int = 1024, timeout: float = 5.0, **kwargs: int) -> Response:
        return read_response(self.client, time.monotonic() + timeout, max_body, "peer", **kwargs)

    def close(self) -> None:
        self.client.close()
        for thread in self._threads:
            thread.join(timeout=5)
        self.server.close()


@pytest.fixture
def peer() -> Iterator[Peer]:
    running = Peer()
    try:
        yield running
    finally:
        running.close()


def test_a_chunked_body_with_extensions_and_trailers(peer: Peer) -> None:
    peer.send(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n",
        b'5\r\n{"a":\r\n3;ext=1\r\n 1}\r\n',
        b"0\r\nX-Trailer: t\r\n\r\n",
        end="stay",
        gap=0.01,
    )
    response = peer.read()
    assert (response.status, response.body) == (200, b'{"a": 1}')
    assert response.headers == {"transfer-encoding": "chunked", "x-a": "1"}
    assert response.keep_alive


def test_a_sized_body_then_the_next_response_on_the_same_connection(peer: Peer) -> None:
    peer.send(
        b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nmore",
        end="stay",
        gap=0.05,
    )
    first = peer.read()
    assert (first.status, first.headers, first.body) == (202, {"content-length": "2"}, b"ok")
    assert first.keep_alive
    second = peer.read()
    assert (second.status, second.body, second.keep_alive) == (200, b"more", True)


def test_bytes_after_the_response_end_its_connection(peer: Peer) -> None:
    peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", end="stay")
    response = peer.read()
    assert response.body == b"ok"
    assert not response.keep_alive


def test_a_body_without_length_is_read_until_the_peer_closes(peer: Peer) -> None:
    peer.send(b"HTTP/1.1 200 OK\r\nContent-Type: a/b\r\n\r\nall ", b"of it", gap=0.02)
    response = peer.read()
    assert (response.body, response.keep_alive) == (b"all of it", False)


@pytest.mark.parametrize(
    ("head", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\n", True),
        (b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\n", False),
        (b"HTTP/1.0 200 OK\r\n", False),
        (b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n", True),
    ],
)
def test_whether_the_connection_is_kept(peer: Peer, head: bytes, keep_alive: bool) -> None:
    peer.send(head + b"Content-Length: 1\r\n\r\nx", end="stay")
    assert peer.read().keep_alive is keep_alive


def test_chunked_with_a_content_length_is_read_chunked_and_ends_the_connection(
    peer: Peer,
) -> None:
    peer.send(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n",
        end="stay",
    )
    response = peer.read()
    assert (response.body, response.keep_alive) == (b"abc", False)


def test_interim_answers_are_skipped_and_bodiless_statuses_have_no_body(peer: Peer) -> None:
    peer.send(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
        end="stay",
    )
    response = peer.read()
    assert (response.status, response.body, response.keep_alive) == (204, b"", True)


def test_bare_line_feeds_folded_and_repeated_fields(peer: Peer) -> None:
    peer.send(b"HTTP/1.1 200 OK\nX-A: 1\n  2\nX-B: a\nx-b: b\nContent-Length: 2\n\nok", end="stay")
    response = peer.read()
    assert response.headers == {"x-a": "1 2", "x-b": "a, b", "content-length": "2"}
    assert response.body == b"ok"


def test_a_truncated_body_is_cut_short(peer: Peer) -> None:
    peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort")
    with pytest.raises(CutShort) as caught:
        peer.read()
    assert caught.value.started


def test_a_truncated_chunked_body_is_cut_short(peer: Peer) -> None:
    peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc")
    with pytest.raises(CutShort) as caught:
        peer.read()
    assert caught.value.started


def test_a_reset_mid_body_is_cut_short(peer: Peer) -> None:
    peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", b"short", end="reset", gap=0.05)
    with pytest.raises(CutShort) as caught:
        peer.read()
    assert caught.value.started


def test_a_close_before_any_byte_says_nothing_started(peer: Peer) -> None:
    peer.send()
    with pytest.raises(CutShort) as caught:
        peer.read()
    assert not caught.value.started


def test_a_head_over_its_limit_is_refused_before_its_end(peer: Peer) -> None:
    # The head never ends: only the byte count can stop the reader before the deadline.
    peer.send(b"HTTP/1.1 200 OK\r\nX-Big: " + b"x" * MAX_HEAD_BYTES, end="stay")
    started = time.monotonic()
    with pytest.raises(OverLimit):
        peer.read(timeout=3)
    assert time.monotonic() - started < 2


def test_many_short_lines_add_up_to_the_head_limit(peer: Peer) -> None:
    fields = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 100) for i in range(90))
    peer.send(b"HTTP/1.1 200 OK\r\n" + fields + b"Content-Length: 0\r\n\r\n", end="stay")
    # The message names the limit, not what was left of it when the last line came.
    with pytest.raises(OverLimit, match="sent a head over 4096 bytes"):
        peer.read(max_head=4096)


def test_too_many_fields_are_refused(peer: Peer) -> None:
    fields = b"".join(b"X-%d: 1\r\n" % i for i in range(MAX_FIELDS + 1))
    peer.send(b"HTTP/1.1 200 OK\r\n" + fields + b"\r\n", end="stay")
    with pytest.raises(OverLimit):
        peer.read()


def test_a_body_announced_over_the_limit_is_refused_unread(peer: Peer) -> None:
    # No body follows and the connection stays open: reading it would time out instead.
    peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1025\r\n\r\n", end="stay")
    with pytest.raises(OverLimit):
        peer.read(timeout=3)


def test_chunks_over_the_limit_are_refused_at_the_size_line(peer: Peer) -> None:
    peer.send(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n" + b"a" * 1024,
        b"\r\n1\r\n",
        end="stay",
    )
    with pytest.raises(OverLimit):
        peer.read(timeout=3)


def test_a_body_until_close_over_the_limit_is_refused(peer: Peer) -> None:
    peer.send(b"HTTP/1.1 200 OK\r\n\r\n" + b"z" * 2000, end="stay")
    with pytest.raises(OverLimit):
        peer.read(timeout=3)


def test_a_body_at_the_limit_is_read(peer: Peer) -> None:
    peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n" + b"y" * 1024, end="stay")
    assert peer.read().body == b"y" * 1024


@pytest.mark.parametrize(
    "answer",
    [
        b"garbage\r\n\r\n",
        b"HTTP/2 200\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
    ],
)
def test_malformed_answers(peer: Peer, answer: bytes) -> None:
    peer.send(answer, end="stay")
    with pytest.raises(Malformed):
        peer.read(timeout=3)


def test_each_read_waits_only_until_the_deadline(peer: Peer) -> None:
    # A head, then one body byte every 0.1 s: each read gets a byte in time.
    peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", *[b"."] * 100, gap=0.1)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        peer.read(timeout=0.5)
    assert 0.4 <= time.monotonic() - started < 1.5


def test_longest_wait_bounds_each_read_without_a_deadline(peer: Peer) -> None:
    peer.send(b"HTTP/1.1 200 OK\r\n", end="stay")
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        read_response(peer.client, None, 1024, "peer", longest_wait=0.3)
    assert time.monotonic() - started < 1.5
