"""What replaced urllib.parse on the way to the first answer, against urllib.parse itself.

percent.py (the local API's decoding and encoding), queries' parse_qsl, urls.split,
request_head's target escaping and sigv4's own UriEncode, decoding and URL split must give
what the urllib.parse function they stand for gives, on this Python, for every input: the
same value, or the same kind of error. Inputs are generated from alphabets that hold each
character those rules treat apart (`%`, hex digits, `+`, `&`, `=`, brackets, `@`, `:`,
spaces, tabs and other control characters, non-ASCII, bytes that are not UTF-8).
"""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sigv4
from parameters_secrets_extension import percent, urls
from parameters_secrets_extension.errors import InvalidParameter
from parameters_secrets_extension.local_api import queries, request_head

CHECKS = settings(
    max_examples=1500,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# Escapes whole and broken, a valid UTF-8 sequence (é), one that is not (%FF, a lone %C3),
# the query's own separators, and a character that is not ASCII.
QUERY_PIECES = ["%", "%2", "%41", "%e9", "%C3", "%A9", "%c3%a9", "%FF", "%g1", "%1g", "+", "&"]
QUERY_PIECES += ["=", "a", "B", "0", "f", " ", "é", "\t", "%2B", "%26", "%3D", "~", "/"]
query_text = st.lists(st.sampled_from(QUERY_PIECES), max_size=12).map("".join)
ascii_query_text = st.lists(
    st.sampled_from([piece for piece in QUERY_PIECES if piece.isascii()]), max_size=12
).map("".join)


def _outcome(function: object, *args: object) -> object:
    """The value `function` returns, or the kind of error it raises."""
    try:
        return function(*args)  # type: ignore[operator]
    except UnicodeError as exc:
        return type(exc)
    except ValueError:
        return ValueError


@CHECKS
@given(query_text)
def test_unquote_is_urllibs_strict_unquote(text: str) -> None:
    assert _outcome(percent.unquote, text) == _outcome(
        lambda t: urllib.parse.unquote(t, encoding="utf-8", errors="strict"), text
    )


@CHECKS
@given(ascii_query_text)
def test_unquote_to_bytes_is_urllibs(text: str) -> None:
    data = text.encode("ascii")
    assert percent.unquote_to_bytes(data) == urllib.parse.unquote_to_bytes(data)


@CHECKS
@given(query_text)
def test_query_pairs_are_parse_qsl_strict_with_blank_values(query: str) -> None:
    try:
        expected: object = urllib.parse.parse_qsl(
            query, keep_blank_values=True, encoding="utf-8", errors="strict"
        )
    except ValueError:
        expected = InvalidParameter
    try:
        got: object = queries._pairs(query)
    except InvalidParameter:
        got = InvalidParameter
    assert got == expected


@pytest.mark.parametrize(
    ("query", "pairs"),
    [
        ("a=1&&b&c=&=d", [("a", "1"), ("b", ""), ("c", ""), ("", "d")]),
        ("k=a+b%2Bc&k=%41%zz", [("k", "a b+c"), ("k", "A%zz")]),
        ("x=%c3%a9", [("x", "é")]),
    ],
)
def test_query_pairs_by_hand(query: str, pairs: list[tuple[str, str]]) -> None:
    assert queries._pairs(query) == pairs


@pytest.mark.parametrize("query", ["x=%FF", "x=%C3", "%c3=1"])
def test_query_that_is_not_utf8_is_a_400(query: str) -> None:
    with pytest.raises(InvalidParameter, match="not valid UTF-8"):
        queries._pairs(query)


@CHECKS
@given(st.binary(max_size=40), st.sampled_from([b"", b"/", b"/~", bytes(range(0x21, 0x7F))]))
def test_quote_is_quote_from_bytes(data: bytes, safe: bytes) -> None:
    assert percent.quote(data, safe) == urllib.parse.quote_from_bytes(data, safe)
    assert sigv4.uri_encode(data, safe) == urllib.parse.quote_from_bytes(data, safe)


@CHECKS
@given(st.binary(min_size=1, max_size=40).filter(lambda b: not set(b) & set(range(0x21))))
def test_a_targets_non_ascii_bytes_are_escaped_as_quote_did(target: bytes) -> None:
    target = target.replace(b"\x7f", b"")
    expected = urllib.parse.quote(target, safe="".join(map(chr, range(0x21, 0x7F))))
    assert request_head._target(target) == expected


@CHECKS
@given(query_text)
def test_sigv4_decoding_is_unquote_to_bytes(text: str) -> None:
    assert _outcome(sigv4.percent_decoded, text) == _outcome(urllib.parse.unquote_to_bytes, text)


SCHEMES = ["http://", "https://", "HTTPS://", "http:", "ftp://", "//", "", " http://", "h\tttp://"]
HOSTS = ["Example.COM", "sm.us-east-1.amazonaws.com", "127.0.0.1", "[::1]", "[fe80::1%25en0]"]
HOSTS += ["[::1", "::1]", "u:p@host", "@h", "a b", "hé", "h%41", "", "[v1.x]", "ho\x01st"]
PORTS = ["", ":", ":80", ":443", ":0", ":65535", ":65536", ":080", ":+80", ":8a", ":٣", ":1:2"]
PORTS += [":" + "9" * 30]
TAILS = ["", "/", "/a/b", "/a?b=1", "?q", "#f", "/p?q#f", "/a b", "/\x7f", "/é?x=é", "/a\tb"]


@st.composite
def any_urls(draw: st.DrawFn) -> str:
    pieces = [st.sampled_from(SCHEMES), st.sampled_from(HOSTS), st.sampled_from(PORTS)]
    return "".join(draw(piece) for piece in pieces) + draw(st.sampled_from(TAILS))


def _split_outcome(split: object, url: str) -> object:
    """Every part that urlsplit gives (hostname and port read as attributes), or the error."""
    try:
        parts = split(url)  # type: ignore[operator]
        fields = (parts.scheme, parts.netloc, parts.path, parts.query, parts.fragment)
    except ValueError:
        return ValueError
    try:
        return (*fields, parts.hostname, parts.port)
    except ValueError:  # urlsplit raises for a bad port only when .port is read
        return (*fields, ValueError)


@CHECKS
@given(any_urls())
def test_split_is_urlsplit(url: str) -> None:
    assert _split_outcome(urls.split, url) == _split_outcome(urllib.parse.urlsplit, url)


@CHECKS
@given(any_urls())
def test_sigv4_split_is_urlsplit(url: str) -> None:
    try:
        parts = urllib.parse.urlsplit(url)
        expected: object = (
            sigv4.host_header(parts.scheme, parts.hostname or "", parts.port),
            parts.path,
            parts.query,
        )
    except ValueError:
        expected = ValueError
    assert _outcome(sigv4._split, url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "https://secretsmanager.us-east-1.amazonaws.com/",
        "http://127.0.0.1:4566",
        "http://LocalHost:2773/path?query#fragment",
    ],
)
def test_plain_urls_are_split_without_urllib(url: str) -> None:
    """The URLs of every call to AWS take the plain path (the generated ones above take both)."""
    assert isinstance(urls.split(url), urls.PlainUrl)
    assert _split_outcome(urls.split, url) == _split_outcome(urllib.parse.urlsplit, url)
    parts = urllib.parse.urlsplit(url)
    host = sigv4.host_header(parts.scheme, parts.hostname or "", parts.port)
    assert sigv4._split(url) == (host, parts.path, parts.query)
