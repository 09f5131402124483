"""The one-match line parsing agrees with the rules written out one at a time.

read_request checks each request line and header line with one regular expression; here
each line is also judged by the rules stated separately (strip the CRLF or LF, refuse a
bare CR or NUL, split on spaces, check each part), and the two must give the same request
or the same error, for lines built from the bytes that matter.
"""

from __future__ import annotations

import io
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parameters_secrets_extension.errors import RequestError
from parameters_secrets_extension.local_api import request_head as local_requests

TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
VERSION = re.compile(rb"HTTP/1\.[0-9]")
CONTROL = re.compile(rb"[\x00-\x20\x7f]")

# Bytes that sit on the rules' edges, and a few ordinary ones.
EDGE_BYTES = st.sampled_from(
    [b" ", b"\t", b"\r", b"\n", b"\0", b":", b"\x7f", b"\x01", b"\xc3\xa9", b"a", b"/", b"?"]
)
PIECES = st.sampled_from([b"GET", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"/ping", b"x-a", b"v"])
LINE = st.lists(st.one_of(EDGE_BYTES, PIECES), max_size=10).map(b"".join)
ENDING = st.sampled_from([b"\r\n", b"\n"])


def _content(line: bytes) -> bytes:
    content = line[:-2] if line.endswith(b"\r\n") else line[:-1]
    if b"\r" in content or b"\0" in content:
        raise RequestError("bare CR or NUL in the request head", error_type="BadRequestException")
    return content


def rules_request_line(line: bytes) -> tuple[bytes, bytes, bytes] | str:
    try:
        parts = _content(line).split(b" ")
    except RequestError as exc:
        return exc.message
    if len(parts) != 3 or not TOKEN.fullmatch(parts[0]) or not VERSION.fullmatch(parts[2]):
        return "malformed request line"
    if not parts[1] or CONTROL.search(parts[1]):
        return "malformed request target"
    return parts[0], parts[1], parts[2]


def rules_field(line: bytes) -> tuple[str, bytes] | str:
    try:
        name, colon, value = _content(line).partition(b":")
    except RequestError as exc:
        return exc.message
    if not colon or not TOKEN.fullmatch(name):
        return "malformed header field"
    return name.decode("ascii").lower(), value.strip(b" \t")


def parsed_request_line(line: bytes) -> tuple[bytes, bytes, bytes] | str:
    head = line + b"Host: x\r\n\r\n"
    try:
        request = local_requests.read_request(io.BytesIO(head))
    except RequestError as exc:
        return exc.message
    assert request is not None
    version = b"HTTP/1.0" if request.http10 else VERSION.search(line).group()  # type: ignore[union-attr]
    return request.method.encode(), line.split(b" ")[1], version


def parsed_field(line: bytes) -> tuple[str, bytes] | str:
    try:
        request = local_requests.read_request(io.BytesIO(b"GET / HTTP/1.1\r\n" + line + b"\r\n"))
    except RequestError as exc:
        return exc.message
    assert request is not None
    [(name, value)] = request.headers.items()
    return name, value


@settings(max_examples=3000, deadline=None)
@given(LINE, ENDING)
def test_request_line_matches_the_rules(body: bytes, ending: bytes) -> None:
    line = body + ending
    if b"\n" in body or body in (b"", b"\r"):  # not one line, or the tolerated empty line
        return
    assert parsed_request_line(line) == rules_request_line(line)


@settings(max_examples=3000, deadline=None)
@given(LINE, ENDING)
def test_header_field_matches_the_rules(body: bytes, ending: bytes) -> None:
    line = body + ending
    if b"\n" in body or body in (b"", b"\r"):  # not one line, or the end of the head
        return
    assert parsed_field(line) == rules_field(line)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"GET /a HTTP/1.1\r\n", (b"GET", b"/a", b"HTTP/1.1")),
        (b"GET /a HTTP/1.1\r\r\n", "bare CR or NUL in the request head"),
        (b"GET  HTTP/1.1\r\n", "malformed request target"),
        (b"GET /a\tb HTTP/1.1\n", "malformed request target"),
        (b"GET /a HTTP/1.1 \r\n", "malformed request line"),
        (b"G:T /a HTTP/1.1\r\n", "malformed request line"),
    ],
)
def test_request_line_examples(line: bytes, expected: object) -> None:
    assert parsed_request_line(line) == rules_request_line(line) == expected
