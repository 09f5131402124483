"""A seeded generator of malformed local API requests, in pipelined batches, for the fuzz test.

Every request is built so that the server must refuse it (status >= 400) or close the
connection; none may ever reach a lookup or answer 2xx. A batch is some keep-alive
requests, each of which the server answers and keeps the connection for, then one
terminal request after which the server answers and closes, or closes silently. Batch
`index` of seed `seed` is always the same bytes, whichever thread builds it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

TOKEN_HEADER = b"X-Aws-Parameters-Secrets-Token"
ROUTES = (b"/secretsmanager/get", b"/systemsmanager/parameters/get")
_LOCAL_ROUTES = {b"/secretsmanager/get", b"/systemsmanager/parameters/get/", b"/ping"}
_LOCAL_ROUTES |= set(ROUTES)
# Paths that are no route, whatever is appended to them.
_NOT_ROUTES = (
    b"/nope",
    b"/secretsmanager/get/",
    b"/ping/",
    b"/PING",
    b"//ping",
    b"/%70ing",
    b"/secretsmanager%2Fget",
    b"/systemsmanager/parameters/get//",
    b"/systemsmanager/parameters/GET",
    b"/secretsmanager/get;",
    b"/..%2f..%2fetc%2fpasswd",
)
_METHODS: tuple[bytes, ...] = (b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"TRACE")
_METHODS += (b"CONNECT", b"get", b"PROPFIND", b"BREW", b"M-SEARCH", b"GET2", b"G.E.T", b"X" * 40)
_TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_FORWARDING = (b"x-forwarded-for", b"forwarded", b"x-forwarded-host")
# Header names a random header must not take: each changes framing, routing or auth.
_RESERVED = {b"connection", b"content-length", b"transfer-encoding", *_FORWARDING}
_RESERVED.add(TOKEN_HEADER.lower())
_BAD_BOOLEANS = (b"maybe", b"2", b"yes", b"TRUEx", b"%00", b"%20", b"%ff", b"tru%C3%A9", b"-1")
_BAD_UTF8 = (b"%ff", b"%c3%28", b"%e2%82", b"%ed%a0%80", b"%f8%88%80%80%80", b"%80")
_BAD_VERSIONS = (
    b"HTTP/2.0",
    b"HTTP/1.10",
    b"HTTP/0.9",
    b"HTTP/1",
    b"http/1.1",
    b"HTTP/1.1x",
    b"HTTP/ 1.1",
    b"HTTP/1.a",
    b"\x00HTTP/1.1",
    b"HTTP/1.\xff",
    b"HTTP\\1.1",
    b"",
)
# High bytes included: the server must cope with bytes that are not UTF-8 anywhere.
_JUNK = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100))
# Header value bytes: NUL and CR are left out, because either makes the whole request a 400.
_VALUE_BYTES = bytes(range(0x01, 0x0A)) + bytes(range(0x0B, 0x0D)) + bytes(range(0x0E, 0x100))
_ONE_MB = 1_000_000


@dataclass(frozen=True)
class Batch:
    """Pipelined requests and what the server must do with them."""

    data: bytes
    requests: int  # requests in `data`, the terminal one included
    keep_alive: int  # requests the server must answer before the terminal one
    terminal: str  # the terminal request's kind, for failure messages
    terminal_answer: str  # "yes", "no" or "maybe": whether the terminal request is answered
    bodyless_last: bool  # the terminal request is HEAD, so its answer has no body


def _junk(rng: random.Random, low: int, high: int, alphabet: bytes = _JUNK) -> bytes:
    return bytes(rng.choice(alphabet) for _ in range(rng.randint(low, high)))


def _token_name(rng: random.Random) -> bytes:
    while True:
        name = _junk(rng, 1, 16, _TOKEN_CHARS)
        if name.lower() not in _RESERVED:
            return name


def _random_headers(rng: random.Random) -> list[bytes]:
    """Zero to six harmless fields whose values may hold control bytes and non-UTF-8 bytes."""
    return [
        _token_name(rng) + b":" + b" " * rng.randint(0, 2) + _junk(rng, 0, 60, _VALUE_BYTES)
        for _ in range(rng.randint(0, 6))
    ]


def _head(
    rng: random.Random, method: bytes, target: bytes, headers: list[bytes], *, version: bytes = b""
) -> bytes:
    """A well-framed keep-alive request head (HTTP/1.1, or 1.0 asking for keep-alive)."""
    eol = rng.choice((b"\r\n", b"\r\n", b"\n"))
    if not version:
        version = rng.choice((b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"))
    fields = [b"Host: localhost", *headers, *_random_headers(rng)]
    if version == b"HTTP/1.0":
        fields.append(b"Connection: keep-alive")
    rng.shuffle(fields)
    lead = eol if rng.random() < 0.05 else b""  # RFC 9112 tolerates one empty line first
    return lead + eol.join([method + b" " + target + b" " + version, *fields]) + eol + eol


def _wrong_token(rng: random.Random, token: bytes) -> list[bytes]:
    choice = rng.randrange(5)
    if choice == 0:
        return []
    if choice == 1:
        return [TOKEN_HEADER + b": "]
    if choice == 2:
        return [TOKEN_HEADER + b": " + token + b"x"]
    if choice == 3:
        i = rng.randrange(len(token))
        flipped = bytes([token[i] ^ 0x01])
        if flipped in (b"\r", b"\n", b" ", b"\t"):
            flipped = b"#"
        return [TOKEN_HEADER + b": " + token[:i] + flipped + token[i + 1 :]]
    value = _junk(rng, 1, 80, _VALUE_BYTES).strip(b" \t")
    return [TOKEN_HEADER + b": " + (value or b"\x01")]


def _query_junk(rng: random.Random) -> bytes:
    parts = [_junk(rng, 0, 20) for _ in range(rng.randint(0, 4))]
    return b"&".join(parts)


def keep_alive_request(rng: random.Random, token: bytes) -> bytes:
    """A request the server answers with 4xx on a connection it keeps open."""
    kind = rng.randrange(7)
    good_token = [TOKEN_HEADER + b": " + token]
    if kind == 0:  # unknown path, with or without the token: 404
        target = rng.choice(_NOT_ROUTES) + _junk(rng, 0, 60)
        assert target.partition(b"?")[0] not in _LOCAL_ROUTES
        return _head(rng, b"GET", target, good_token if rng.random() < 0.5 else [])
    if kind == 1:  # any method but GET: 405
        target = rng.choice((b"/ping", *ROUTES, b"/nope")) + rng.choice((b"", b"?secretId=x"))
        method = rng.choice(_METHODS) if rng.random() < 0.7 else _token_name(rng)
        if method in (b"GET", b"HEAD"):  # HEAD's answer has no body: terminal requests only
            method = b"GETX"
        return _head(rng, method, target, good_token if rng.random() < 0.5 else [])
    if kind == 2:  # missing or wrong token: 401
        target = rng.choice(ROUTES) + b"?" + _query_junk(rng)
        return _head(rng, b"GET", target, _wrong_token(rng, token))
    if kind == 3:  # a refreshNow that is neither true nor false, first so it wins: 400
        query = b"refreshNow=" + rng.choice(_BAD_BOOLEANS) + b"&" + _query_junk(rng)
        return _head(rng, b"GET", rng.choice(ROUTES) + b"?" + query, good_token)
    if kind == 4:  # percent-encoding that decodes to bytes that are not UTF-8: 400
        name = rng.choice((b"secretId=", b"name=", b"versionId=", b"x="))
        query = _query_junk(rng) + b"&" + name + _junk(rng, 0, 8) + rng.choice(_BAD_UTF8)
        return _head(rng, b"GET", rng.choice(ROUTES) + b"?" + query, good_token)
    if kind == 5:  # the SSRF guard, even on a valid request: 400
        forwarded = [rng.choice(_FORWARDING) + b": " + _junk(rng, 0, 30, _VALUE_BYTES)]
        target = rng.choice(
            (b"/secretsmanager/get?secretId=x", b"/systemsmanager/parameters/get?name=x")
        )
        return _head(rng, b"GET", target, good_token + forwarded)
    # a missing or empty required parameter, or a bad version: 400
    target = rng.choice(
        (
            b"/secretsmanager/get",
            b"/secretsmanager/get?secretId=",
            b"/secretsmanager/get?secretid=x&SecretId=y",
            b"/systemsmanager/parameters/get?name=",
            b"/systemsmanager/parameters/get?name=x&version=abc",
            b"/systemsmanager/parameters/get?name=x&version=0",
            b"/systemsmanager/parameters/get?name=x&version=99999999999999999999",
            b"/systemsmanager/parameters/get?name=x&withDecryption=perhaps",
        )
    )
    return _head(rng, b"GET", target, good_token)


def _bad_request_line(rng: random.Random) -> bytes:
    choice = rng.randrange(8)
    if choice == 0:
        line = b"GET /ping " + rng.choice(_BAD_VERSIONS)
    elif choice == 1:
        line = rng.choice((b"GET /ping", b"GET  /ping HTTP/1.1", b"GET /ping HTTP/1.1 x"))
    elif choice == 2:
        line = rng.choice((b"GET\t/ping\tHTTP/1.1", b" GET /ping HTTP/1.1", b"GET  HTTP/1.1"))
    elif choice == 3:
        method = rng.choice((b"G(ET", b"GET\x00", b"\xffGET", b"GE\x7fT", b"G{}", b"\xc3\xa9"))
        line = method + b" /ping HTTP/1.1"
    elif choice == 4:
        bad = bytes([rng.choice(b"\x00\x01\x07\x09\x0b\x0c\x1b\x7f")])
        line = b"GET /ping" + bad + _junk(rng, 0, 10) + b" HTTP/1.1"
    elif choice == 5:  # garbage that starts with a byte no method can start with
        line = bytes([rng.choice(b'\x00\x01()<>@,;:\\"/[]?={}\x7f\x80\xff')]) + _junk(
            rng, 0, 2000, _VALUE_BYTES
        )
    elif choice == 6:
        line = b"\r\n"  # a second empty line is no longer tolerated
    else:
        line = b"PRI * HTTP/2.0"
    return line + b"\r\n\r\n"


def _bad_header(rng: random.Random) -> bytes:
    field = rng.choice(
        (
            b"NoColonHere",
            b"Bad Name: x",
            b": empty-name",
            b"Na\x00me: x",
            b"N\xe9me: x",
            b" folded: continuation",
            b"Name : x",
            b"\tTab: x",
            b"Name\x7f: x",
            b"(comment): x",
            b"Name: x\x00y",
            b"Name: x\ry",
            b"Name: x\r",
        )
    )
    lines = [b"GET /ping HTTP/1.1", b"Host: localhost"]
    lines.insert(rng.randint(1, 2), field)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def terminal_request(rng: random.Random, token: bytes) -> tuple[bytes, str, str, bool]:
    """The last request of a batch: (bytes, kind, answered "yes"/"no"/"maybe", is HEAD)."""
    roll = rng.random()
    if roll < 0.30:
        return _bad_request_line(rng), "bad request line", "yes", False
    if roll < 0.45:
        return _bad_header(rng), "bad header", "yes", False
    if roll < 0.60:  # cut short, so the server sees EOF before the request ends
        whole = keep_alive_request(rng, token)
        return whole[: rng.randrange(len(whole) - 1)], "missing CRLF", "no", False
    if roll < 0.70:  # a body or Connection: close ends the connection after the answer
        extra = rng.choice(
            (
                b"Content-Length: 5\r\n\r\nhello",
                b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                b"Content-Length: -1\r\n\r\n",
                b"Content-Length: x\r\n\r\n",
                b"Connection: close\r\n\r\n",
            )
        )
        return b"GET /nope HTTP/1.1\r\nHost: localhost\r\n" + extra, "closing", "yes", False
    if roll < 0.78:
        return b"HTTP/1.0 200 OK\r\n\r\n", "a response as a request", "yes", False
    if roll < 0.86:
        return b"HEAD /ping HTTP/1.1\r\nHost: localhost\r\n\r\n", "HEAD", "yes", True
    if roll < 0.93:
        fields = b"".join(b"H%d: v\r\n" % i for i in range(rng.randint(101, 300)))
        return b"GET /ping HTTP/1.1\r\n" + fields + b"\r\n", "too many headers", "yes", False
    if roll < 0.97:
        target = b"/secretsmanager/get?secretId=" + b"a" * rng.randint(16 * 1024, 64 * 1024)
        return b"GET " + target + b" HTTP/1.1\r\n\r\n", "long request line", "yes", False
    size = rng.randint(65 * 1024, 128 * 1024)
    huge = b"X-Big: " + b"b" * size + b"\r\n"
    return b"GET /ping HTTP/1.1\r\n" + huge + b"\r\n", "huge header", "maybe", False


def one_mb_query(token: bytes) -> bytes:
    """A request line carrying a 1 MB query: the server refuses it after 16 KB (414)."""
    target = b"/secretsmanager/get?secretId=" + b"%41" * (_ONE_MB // 3)
    return b"GET " + target + b" HTTP/1.1\r\n" + TOKEN_HEADER + b": " + token + b"\r\n\r\n"


def batch(seed: int, index: int, token: bytes, *, max_keep_alive: int = 60) -> Batch:
    """Batch `index`: up to `max_keep_alive` keep-alive requests, then one terminal request."""
    rng = random.Random(f"{seed}:{index}")
    count = rng.randint(0, max_keep_alive)
    parts = [keep_alive_request(rng, token) for _ in range(count)]
    if index % 500 == 0:  # a 1 MB query now and then: costly, so not too often
        last, kind, answer, bodyless = one_mb_query(token), "1 MB query", "maybe", False
    else:
        last, kind, answer, bodyless = terminal_request(rng, token)
    parts.append(last)
    return Batch(b"".join(parts), count + 1, count, kind, answer, bodyless)
