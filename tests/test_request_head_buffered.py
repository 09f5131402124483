"""The one-pass reader of a buffered head agrees with the line-by-line reader.

The server reads through an io.BufferedReader; a head already whole in its buffer is parsed
in one pass (request_head._buffered_head), anything else line by line. Here the same bytes
go through both: an io.BytesIO (line by line only), a BufferedReader that holds them whole
(the one pass), and BufferedReaders fed in pieces down to single bytes (a head split across
reads, then the line reader). Each must give the same request, or the same error, and leave
the same bytes for the next request.
"""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parameters_secrets_extension.errors import RequestError
from parameters_secrets_extension.local_api import request_head as rh


class Pieces(io.RawIOBase):
    """A raw stream that hands out at most `size` bytes a read, as a socket may."""

    def __init__(self, data: bytes, size: int) -> None:
        self._data = memoryview(data)
        self._size = size
        self.reads = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        self.reads += 1
        count = min(len(buffer), self._size, len(self._data))
        buffer[:count] = self._data[:count]
        self._data = self._data[count:]
        return count


class CountingReader(io.BufferedReader):
    """A BufferedReader that counts readline calls: the line reader's, never the one pass's."""

    lines = 0

    def readline(self, size: int | None = -1, /) -> bytes:
        self.lines += 1
        return super().readline(size)


def whole(data: bytes) -> io.BufferedReader:
    """A reader whose buffer takes all of `data` at the first read."""
    return io.BufferedReader(Pieces(data, len(data) + 1), buffer_size=len(data) + 1)


def in_pieces(data: bytes, size: int) -> io.BufferedReader:
    return io.BufferedReader(Pieces(data, size))


Outcome = tuple[object, ...] | None


def outcome(reader: rh.LineReader) -> Outcome:
    """What read_request makes of the stream: the request and the bytes left after it, or
    the error."""
    try:
        request = rh.read_request(reader)
    except RequestError as exc:
        return ("error", exc.status, exc.error_type, exc.message)
    if request is None:
        return None
    rest = reader.read(1 << 20)
    return (
        request.method,
        request.target,
        request.headers,
        request.keep_alive,
        request.http10,
        request.body,
        rest,
    )


def all_agree(data: bytes) -> Outcome:
    expected = outcome(io.BytesIO(data))
    for reader in (whole(data), in_pieces(data, 1), in_pieces(data, 7), in_pieces(data, 100)):
        assert outcome(reader) == expected
    return expected


SDK_HEAD = (
    b"POST / HTTP/1.1\r\n"
    b"Host: localhost:2773\r\n"
    b"X-Amz-Target: secretsmanager.GetSecretValue\r\n"
    b"Content-Type: application/x-amz-json-1.1\r\n"
    b"X-Amz-Security-Token: " + b"T" * 1000 + b"\r\n"
    b"Content-Length: 15\r\n\r\n"
)
SDK_BODY = b'{"SecretId":"a"}'[:15]


def test_a_whole_head_in_the_buffer_is_read_without_readline() -> None:
    data = SDK_HEAD + SDK_BODY
    reader = CountingReader(Pieces(data, len(data)), buffer_size=8192)
    request = rh.read_request(reader)
    assert request is not None
    assert reader.lines == 0
    assert request.headers["x-amz-security-token"] == b"T" * 1000
    assert request.body == SDK_BODY


def test_a_head_split_across_reads_is_read_line_by_line_alike() -> None:
    data = SDK_HEAD + SDK_BODY + b"GET /ping HTTP/1.1\r\n\r\n"
    for size in (1, 2, 3, 50, len(SDK_HEAD) - 1, len(SDK_HEAD), len(SDK_HEAD) + 3):
        reader = CountingReader(Pieces(data, size), buffer_size=8192)
        first = rh.read_request(reader)
        second = rh.read_request(reader)
        assert first is not None
        assert second is not None
        assert (first.method, first.body, second.target) == ("POST", SDK_BODY, "/ping")
        assert first.headers["x-amz-security-token"] == b"T" * 1000
        assert len(first.headers) == 5
        assert rh.read_request(reader) is None
    assert all_agree(data) is not None


def test_a_head_that_arrives_byte_by_byte_is_read() -> None:
    raw = Pieces(SDK_HEAD + SDK_BODY, 1)
    request = rh.read_request(io.BufferedReader(raw))
    assert request is not None
    assert request.body == SDK_BODY
    assert raw.reads >= len(SDK_HEAD)  # one byte at a time, as sent


def test_pipelined_requests_in_one_buffer_are_read_in_turn() -> None:
    data = SDK_HEAD + SDK_BODY + b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n" + SDK_HEAD + SDK_BODY
    reader = whole(data)
    requests = [rh.read_request(reader) for _ in range(3)]
    assert [(r.method, r.target, r.body) for r in requests if r is not None] == [
        ("POST", "/", SDK_BODY),
        ("GET", "/ping", b""),
        ("POST", "/", SDK_BODY),
    ]
    assert rh.read_request(reader) is None


def test_a_known_name_without_its_colon_is_still_malformed() -> None:
    assert rh.read_request(whole(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")) is not None
    with pytest.raises(RequestError) as caught:
        rh.read_request(whole(b"GET / HTTP/1.1\r\nHost\r\n\r\n"))
    assert (caught.value.status, caught.value.message) == (400, "malformed header field")


def test_the_table_of_known_names_is_bounded() -> None:
    for start in range(0, 3 * rh.MAX_KNOWN_NAMES, rh.MAX_HEADERS):
        fields = b"".join(b"X-%d: v\r\n" % i for i in range(start, start + rh.MAX_HEADERS))
        assert rh.read_request(whole(b"GET / HTTP/1.1\r\n" + fields + b"\r\n")) is not None
        assert len(rh._NAMES) <= rh.MAX_KNOWN_NAMES
    long_name = b"X-" + b"n" * rh.MAX_KNOWN_NAME
    request = rh.read_request(whole(b"GET / HTTP/1.1\r\n" + long_name + b": v\r\n\r\n"))
    assert request is not None
    assert long_name.decode().lower() in request.headers
    assert long_name not in rh._NAMES


# -- the limits, hit with the whole head in the buffer ------------------------------------


def error_of(data: bytes) -> tuple[int, str]:
    with pytest.raises(RequestError) as caught:
        rh.read_request(whole(data))
    exc = caught.value
    assert all_agree(data) == ("error", exc.status, exc.error_type, exc.message)
    return exc.status, exc.error_type


def test_too_many_fields_in_the_buffer_is_431() -> None:
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(rh.MAX_HEADERS + 1))
    assert error_of(b"GET / HTTP/1.1\r\n" + fields + b"\r\n") == (
        431,
        "RequestHeaderFieldsTooLargeException",
    )
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(rh.MAX_HEADERS))
    request = rh.read_request(whole(b"GET / HTTP/1.1\r\n" + fields + b"\r\n"))
    assert request is not None
    assert len(request.headers) == rh.MAX_HEADERS


def test_a_request_line_over_the_limit_in_the_buffer_is_414() -> None:
    # The line end counts: a line of exactly the limit is read, one byte more is a 414.
    target = b"/" + b"a" * (rh.MAX_REQUEST_LINE - len(b"GET / HTTP/1.1\r\n"))
    at = b"GET " + target + b" HTTP/1.1\r\n"
    assert len(at) == rh.MAX_REQUEST_LINE
    request = rh.read_request(whole(at + b"\r\n"))
    assert request is not None
    assert len(request.target) == len(target)
    over = b"GET " + target + b"a HTTP/1.1\r\n\r\n"
    assert error_of(over) == (414, "UriTooLongException")


def test_a_header_section_over_the_byte_limit_in_the_buffer_is_431() -> None:
    # The fields and the empty line that ends them count: exactly the limit is read.
    line = b"GET / HTTP/1.1\r\n"
    filler = rh.MAX_HEADER_BYTES - len(b"X-Big: \r\n") - len(b"\r\n")
    at = line + b"X-Big: " + b"v" * filler + b"\r\n\r\n"
    assert all_agree(at) is not None
    over = line + b"X-Big: " + b"v" * (filler + 1) + b"\r\n\r\n"
    assert error_of(over) == (431, "RequestHeaderFieldsTooLargeException")


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",  # obs-fold
        b"GET / HTTP/1.1\r\nA: b\n\r\n",  # one LF line end
        b"GET / HTTP/1.1\nA: b\n\n",  # LF throughout
        b"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n",  # bare CR
        b"GET / HTTP/1.1\r\nA: b\r\r\n\r\n",  # CR before the line end
        b"GET / HTTP/1.1\r\nA: b\x00\r\n\r\n",  # NUL
        b"GET / HTTP/1.1\r\n: b\r\n\r\n",  # empty name
        b"GET / HTTP/1.1\r\nA b: c\r\n\r\n",  # space in a name
        b"GET / HTTP/1.1\r\n\xff: c\r\n\r\n",  # a byte above ASCII in a name
        b"\r\nGET /ping HTTP/1.1\r\n\r\n",  # the tolerated empty line before a request
        b"\r\n\r\nGET /ping HTTP/1.1\r\n\r\n",  # two of them
        b"GET /caf\xc3\xa9 HTTP/1.1\r\nA: \xe9\r\n\r\n",  # UTF-8 target, high byte value
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nA: 1\r\na: 2\r\n\r\n",
        b"POST / HTTP/1.1\r\nX-Amz-Target: t\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nX-Amz-Target: t\r\nContent-Length: 9\r\n\r\nabc",  # body cut off
        b"POST / HTTP/1.1\r\nX-Amz-Target: t\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n",  # the head cut off
        b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nA: b\n\n",  # a good head, then an LF one
    ],
)
def test_edge_heads_read_alike(data: bytes) -> None:
    all_agree(data)


# -- any head built from the bytes that matter ---------------------------------------------

PIECE = st.sampled_from(
    [b" ", b"\t", b"\r", b"\n", b"\r\n", b"\0", b":", b"\xe9", b"a", b"3", b"Host", b"x-amz-target"]
)
VALUE = st.lists(PIECE, max_size=6).map(b"".join)
REQUEST_LINE = st.sampled_from(
    [
        b"GET /ping HTTP/1.1",
        b"GET /ping HTTP/1.0",
        b"POST / HTTP/1.1",
        b"GET  HTTP/1.1",
        b"GET /a b HTTP/1.1",
        b"",
        b"GET /\xc3\xa9 HTTP/1.1",
    ]
)
FIELD = st.one_of(
    st.tuples(
        st.sampled_from([b"Host", b"X-Amz-Target", b"Content-Length", b"A", b" A"]), VALUE
    ).map(lambda pair: pair[0] + b":" + pair[1]),
    VALUE,
)
ENDING = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n"])


@st.composite
def heads(draw: st.DrawFn) -> bytes:
    lines = [draw(REQUEST_LINE), *draw(st.lists(FIELD, max_size=5)), b""]
    data = b"".join(line + draw(ENDING) for line in lines)
    return data + draw(st.sampled_from([b"", b"3\r\n\r\nabc", b"GET /ping HTTP/1.1\r\n\r\n"]))


@settings(max_examples=3000, deadline=None)
@given(heads())
def test_any_head_reads_alike_whole_in_pieces_and_line_by_line(data: bytes) -> None:
    all_agree(data)
