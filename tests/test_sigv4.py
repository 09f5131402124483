"""sigv4 against botocore's SigV4Auth (the oracle), the AWS SigV4 test suite, and by hand."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sigv4
from tests.conftest import ROOT, fresh_python

UTC = datetime.timezone.utc
# AWS's SigV4 test suite, vendored with its LICENSE and NOTICE (Apache-2.0).
SUITE = ROOT / "tests" / "aws4_testsuite"
SUITE_TIME = datetime.datetime(2015, 8, 30, 12, 36, 0, tzinfo=UTC)
SUITE_KEYS: dict[str, Any] = {
    "access_key": "AKIDEXAMPLE",
    "secret_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    "region": "us-east-1",
    "service": "service",
    "now": SUITE_TIME,
}

# The suite's session token appears only in the signed request (.sreq). How each vector
# that has one is expressed through sign(), which always signs the token it is given:
# - signed: the token is part of the canonical request, so it goes in `session_token`.
# - after: the token is added after signing (some services want that); sign() cannot send
#   an unsigned token by design, so the vector is signed without one, which is exactly the
#   request the suite signs before it adds the header.
TOKEN_SIGNED = frozenset({"get-vanilla-with-session-token", "post-sts-header-before"})
TOKEN_AFTER = frozenset({"post-sts-header-after"})


# ---------------------------------------------------------------- AWS SigV4 test suite


def _vector_dirs() -> list[Any]:
    dirs = sorted(p.parent for p in SUITE.rglob("*.req") if p.stem == p.parent.name)
    return [pytest.param(d, id=str(d.relative_to(SUITE))) for d in dirs]


def test_the_whole_suite_is_here() -> None:
    # The vectors are part of the repository: none may go missing without a failure.
    assert len(_vector_dirs()) == 34
    assert (SUITE / "LICENSE").is_file()
    assert (SUITE / "NOTICE").is_file()


def _parse_request(raw: str) -> tuple[str, str, list[tuple[str, str]], bytes]:
    """Method, request target, header lines (continuations kept) and body of a raw request."""
    head, _, body = raw.partition("\n\n")
    request_line, *lines = head.split("\n")
    method, _, rest = request_line.partition(" ")
    target = rest.rsplit(" ", 1)[0]  # the target may hold spaces; drop " HTTP/1.1"
    fields: list[tuple[str, str]] = []
    for line in lines:
        if not line:
            continue
        if line[0] in " \t":  # obs-fold: a continuation of the previous value
            name, value = fields.pop()
            fields.append((name, f"{value}\n{line}"))
        else:
            name, _, value = line.partition(":")
            fields.append((name, value))
    return method, target, fields, body.encode()


def _fold(fields: list[tuple[str, str]]) -> dict[str, str]:
    """Repeated fields become one comma-joined field (RFC 9110 5.3), as a dict must hold them.

    Each repeated value is trimmed before joining, as SigV4 trims each value on its own.
    """
    values: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for name, value in fields:
        names.setdefault(name.lower(), name)
        values.setdefault(name.lower(), []).append(value)
    return {
        names[key]: vals[0] if len(vals) == 1 else ",".join(sigv4.trim(v) for v in vals)
        for key, vals in values.items()
    }


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


@pytest.mark.parametrize("vector", _vector_dirs())
def test_aws_suite_vector(vector: Path) -> None:
    name = vector.name
    method, target, fields, body = _parse_request(_read(vector / f"{name}.req"))
    headers = _fold(fields)
    _, _, signed_fields, _ = _parse_request(_read(vector / f"{name}.sreq"))
    suite_token = dict(signed_fields).get("X-Amz-Security-Token")

    assert (suite_token is not None) == (name in TOKEN_SIGNED | TOKEN_AFTER), (
        f"{name}: decide how its session token is expressed, then list it above"
    )
    token = suite_token if name in TOKEN_SIGNED else None
    headers.pop("X-Amz-Security-Token", None)  # given through `session_token` instead

    url = f"https://{headers['Host']}{target}"
    out = sign(method, url, headers, body, session_token=token, **SUITE_KEYS)

    unsigned = {k: v for k, v in out.items() if k != "Authorization"}
    creq = canonical_request(method, url, unsigned, body)
    scope = sigv4.credential_scope("20150830", "us-east-1", "service")
    assert creq == _read(vector / f"{name}.creq")
    assert sigv4.string_to_sign("20150830T123600Z", scope, creq) == _read(vector / f"{name}.sts")
    assert out["Authorization"] == _read(vector / f"{name}.authz")
    if name in TOKEN_AFTER:
        assert "x-amz-security-token" not in out["Authorization"]


def canonical_request(method: str, url: str, headers: dict[str, str], body: bytes) -> str:
    """Task 1 as sign() computes it, for headers that already carry the date (and token)."""
    return sigv4._canonical(method, url, headers, body)[0]


def sign(method: str, url: str, headers: dict[str, str], body: bytes, **kw: Any) -> dict[str, str]:
    """sigv4.sign with loosely typed keyword arguments, for the tables in this file."""
    return sigv4.sign(method, url, headers, body, **kw)


# ---------------------------------------------------------------- botocore as the oracle


class RecordingSigV4Auth(SigV4Auth):
    """botocore's own signer, keeping the canonical request and string to sign it built."""

    creq = ""
    sts = ""

    def canonical_request(self, request: AWSRequest) -> str:
        self.creq = super().canonical_request(request)
        return self.creq

    def string_to_sign(self, request: AWSRequest, canonical_request: str) -> str:
        self.sts = super().string_to_sign(request, canonical_request)
        return self.sts


def botocore_sign(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    *,
    access_key: str,
    secret_key: str,
    session_token: str | None,
    region: str,
    service: str,
    now: datetime.datetime,
) -> tuple[list[tuple[str, str]], str, str]:
    """Headers after SigV4Auth.add_auth, its canonical request and string to sign."""
    request = AWSRequest(method=method, url=url, headers=headers, data=body)
    signer = RecordingSigV4Auth(Credentials(access_key, secret_key, session_token), service, region)
    frozen = now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo else now
    # Freeze botocore's clock for this call only; add_auth itself runs unchanged.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(botocore.auth, "get_current_datetime", lambda *_a, **_k: frozen)
        signer.add_auth(request)
    return list(request.headers.items()), signer.creq, signer.sts


# Every strategy below is built only from small choices: sampled_from over at most 100 items,
# integers within -99..99, booleans and lists. Hypothesis mixes "constants" mined from every
# loaded module into its text, bytes and wider integer draws, so with st.text, st.binary or
# st.datetimes the examples (derandomize=True or not) change with whatever else pytest
# imported. Small choices are the ones it never substitutes, so the 300 examples are the
# same alone, in file order and in the full suite (test_examples_do_not_depend_on_imports).
def _chars(alphabet: str) -> st.SearchStrategy[str]:
    assert len(alphabet) <= 100, "a larger alphabet would admit mined integer constants"
    return st.sampled_from(alphabet)


def _text(alphabet: str, *, min_size: int = 0, max_size: int) -> st.SearchStrategy[str]:
    return st.lists(_chars(alphabet), min_size=min_size, max_size=max_size).map("".join)


def _number(digits: int) -> st.SearchStrategy[int]:
    """0 to 10**(2*digits) - 1, drawn as base-100 digits."""
    parts = st.tuples(*[st.integers(0, 99)] * digits)
    return parts.map(lambda ds: sum(d * 100**i for i, d in enumerate(ds)))


_SPACES = " \t\n\r\x0b\x0c\x1c\x85\xa0\u2003\u3000"
_TCHARS = "abcxyzABCXYZ0189-_.!#$%&'*+^`|~"
_PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
_NON_ASCII = "\xe9\xfc\xdf\u0130\u1234\u4e2d\U0001f600\ufeff\u200b"
# What a header value, key or token may hold: any text, controls included.
_ANY = "abcxyzABCXYZ0189" + _PUNCT + _SPACES + "\x00\x7f" + _NON_ASCII
# What a client puts in a path segment: no control characters, no white space, and none of
# the delimiters ? # / (the wire form of a URL never holds them raw).
_SEGMENT_CHARS = (
    "abcxyzABCXYZ0189" + _PUNCT.replace("?", "").replace("#", "").replace("/", "") + (_NON_ASCII)
)
_SPECIAL_HEADERS = [
    "Host",
    "host",
    "Content-Type",
    "X-Amz-Target",
    "User-Agent",
    "Expect",
    "X-Amzn-Trace-Id",
    "Connection",
    "Transfer-Encoding",
    "Authorization",
    "X-Amz-Date",
    "x-amz-date",
    "X-Amz-Security-Token",
    "x-amz-security-token",
    "X-Amz-Content-SHA256",
    "x-amz-content-sha256",
    " X-Padded ",  # botocore strips names in SignedHeaders only; never legal on the wire
    "My-Header",
    "my-header",
    "MY-HEADER",
]
_SEGMENTS = [".", "..", "", "a", "%20", "%2F", "%41", "%e1%88%b4", "~x", "$delete", "ሴ"]

# No Date header: botocore rewrites one to the signing time, a path our client never needs.
header_names = st.sampled_from(_SPECIAL_HEADERS) | _text(_TCHARS, min_size=1, max_size=8).filter(
    lambda name: name.lower() != "date"
)
header_values = _text(_SPACES + _ANY, max_size=24)
segments = st.sampled_from(_SEGMENTS) | _text(_SEGMENT_CHARS, max_size=6)
paths = st.lists(segments, max_size=6).map(lambda s: "/" + "/".join(s)) | st.just("")


def _encoded(text: str) -> str:
    # Queries on the wire are percent-encoded; botocore signs them as they are.
    return quote(text.encode(), safe="-_.~")


query_pairs = st.tuples(
    _text(_ANY, max_size=6).map(_encoded), _text(_ANY, max_size=6).map(_encoded), st.booleans()
).map(lambda kv: f"{kv[0]}={kv[1]}" if kv[2] or kv[1] else kv[0])
queries = st.lists(query_pairs, max_size=5).map(
    lambda pairs: "?" + "&".join(pairs) if pairs else ""
)


@st.composite
def urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["https", "http"]))
    userinfo = draw(st.sampled_from(["", "user@", "user:pw@"]))
    host = draw(
        st.sampled_from(
            [
                "secretsmanager.us-east-1.amazonaws.com",
                "SSM.EU-West-1.AmazonAWS.com",
                "ssm.cn-north-1.amazonaws.com.cn",
                "127.0.0.1",
                "[::1]",
                "localhost",
            ]
        )
    )
    port = draw(
        st.none() | st.sampled_from([0, 80, 443, 2773, 65535]) | _number(2).map(lambda n: n % 65536)
    )
    netloc = f"{userinfo}{host}" if port is None else f"{userinfo}{host}:{port}"
    return f"{scheme}://{netloc}{draw(paths)}{draw(queries)}"


@st.composite
def moments(draw: st.DrawFn) -> datetime.datetime:
    """A time from 2000 to 2099, naive or in one of three zones."""
    naive = datetime.datetime(
        2000 + draw(st.integers(0, 99)),
        draw(st.integers(1, 12)),
        draw(st.integers(1, 28)),
        draw(st.integers(0, 23)),
        draw(st.integers(0, 59)),
        draw(st.integers(0, 59)),
        draw(_number(3)) % 1_000_000,
    )
    zone = draw(
        st.sampled_from(
            [
                None,
                UTC,
                datetime.timezone(datetime.timedelta(hours=5, minutes=30)),
                datetime.timezone(datetime.timedelta(hours=-8)),
            ]
        )
    )
    return naive.replace(tzinfo=zone)


labels = _text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=15)
octets = st.tuples(st.integers(0, 15), st.integers(0, 15)).map(lambda hl: hl[0] * 16 + hl[1])
requests = st.fixed_dictionaries(
    {
        "method": st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "get", "Post"]),
        "url": urls(),
        "headers": st.lists(st.tuples(header_names, header_values), max_size=8).map(dict),
        "body": st.lists(octets, max_size=64).map(bytes),
        "access_key": _text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=20),
        "secret_key": _text(_ANY, min_size=1, max_size=40),
        "session_token": st.none() | st.just("") | _text(_ANY, max_size=30),
        "region": labels,
        "service": labels.filter(lambda s: s != "s3"),
        "now": moments(),
    }
)


# Set to a file path, every example is appended to it as one repr line (see below).
EXAMPLES_LOG = "SIGV4_EXAMPLES_LOG"


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,  # no replay of examples saved by an earlier run: the same 300 every time
    suppress_health_check=[HealthCheck.too_slow],
)
@given(requests)
def test_matches_botocore(req: dict[str, Any]) -> None:
    if log := os.environ.get(EXAMPLES_LOG):
        with open(log, "a", encoding="utf-8") as out:
            out.write(repr(req) + "\n")
    given_headers = dict(req["headers"])
    ours = sigv4.sign(**req)
    theirs, boto_creq, boto_sts = botocore_sign(**req)

    assert req["headers"] == given_headers  # the caller's dict is left alone
    assert list(ours.items()) == theirs  # same names, values, order and Authorization
    unsigned = {k: v for k, v in ours.items() if k != "Authorization"}
    creq = canonical_request(req["method"], req["url"], unsigned, req["body"])
    assert creq == boto_creq
    stamp = sigv4.amz_date(req["now"])
    scope = sigv4.credential_scope(stamp[:8], req["region"], req["service"])
    assert sigv4.string_to_sign(stamp, scope, creq) == boto_sts


def _examples(tmp_path: Path, *also_collected: str) -> list[str]:
    """The examples test_matches_botocore draws when pytest also imports these test files."""
    log = tmp_path / f"examples-{len(also_collected)}.txt"
    env = {**os.environ, EXAMPLES_LOG: str(log)}
    test = "tests/test_sigv4.py::test_matches_botocore"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test, *also_collected]
        + (["-k", "test_matches_botocore"] if also_collected else []),
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    return log.read_text(encoding="utf-8").splitlines()


def test_examples_do_not_depend_on_imports(tmp_path: Path) -> None:
    # Collecting these files loads modules full of string constants, which is what changed
    # the examples of a strategy built on st.text (and broke this test on a fresh venv).
    alone = _examples(tmp_path)
    with_others = _examples(
        tmp_path,
        "tests/test_cache.py",
        "tests/test_lookups.py",
        "tests/test_credentials.py",
        "tests/test_build_layer.py",
    )
    assert len(alone) >= 300
    assert alone == with_others


# ---------------------------------------------------------------- direct unit tests

KEYS: dict[str, Any] = dict(SUITE_KEYS, session_token=None)


def _signed_names(out: dict[str, str]) -> list[str]:
    return out["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")


@pytest.mark.parametrize(
    ("url", "host"),
    [
        (
            "https://Secretsmanager.US-East-1.amazonaws.com/",
            "secretsmanager.us-east-1.amazonaws.com",
        ),
        ("https://ssm.us-east-1.amazonaws.com:443/", "ssm.us-east-1.amazonaws.com"),
        ("http://127.0.0.1:80/", "127.0.0.1"),
        ("http://127.0.0.1:4566/", "127.0.0.1:4566"),
        ("https://127.0.0.1:80/", "127.0.0.1:80"),
        ("http://user:pw@[::1]:5000/", "[::1]:5000"),
    ],
)
def test_host_comes_from_url(url: str, host: str) -> None:
    out = sign("POST", url, {}, b"", **KEYS)
    creq = canonical_request("POST", url, out, b"")
    assert f"\nhost:{host}\n" in creq
    assert "Host" not in out  # http.client sends the same value for the same URL


def test_explicit_host_header_wins_whatever_its_case() -> None:
    out = sign(
        "POST", "https://127.0.0.1:8443/", {"hOsT": "ssm.us-east-1.amazonaws.com"}, b"", **KEYS
    )
    creq = canonical_request("POST", "https://127.0.0.1:8443/", out, b"")
    assert "\nhost:ssm.us-east-1.amazonaws.com\n" in creq
    assert "127.0.0.1" not in creq


def test_session_token_is_added_and_signed() -> None:
    out = sign(
        "POST", "https://ssm.us-east-1.amazonaws.com/", {}, b"{}", **dict(KEYS, session_token="tok")
    )
    assert out["X-Amz-Security-Token"] == "tok"
    assert _signed_names(out) == ["host", "x-amz-date", "x-amz-security-token"]


@pytest.mark.parametrize("token", [None, ""])
def test_no_session_token_header_without_a_token(token: str | None) -> None:
    out = sign(
        "POST", "https://ssm.us-east-1.amazonaws.com/", {}, b"{}", **dict(KEYS, session_token=token)
    )
    assert list(out) == ["X-Amz-Date", "Authorization"]
    assert out["X-Amz-Date"] == "20150830T123600Z"


def test_stale_auth_headers_are_replaced_and_input_is_not_mutated() -> None:
    given = {
        "content-type": "application/x-amz-json-1.1",
        "x-amz-date": "19990101T000000Z",
        "x-amz-security-token": "old",
        "authorization": "old",
    }
    before = dict(given)
    out = sign(
        "POST",
        "https://ssm.us-east-1.amazonaws.com/",
        given,
        b"{}",
        **dict(KEYS, session_token="new"),
    )
    assert given == before
    assert out is not given
    assert out == {
        "content-type": "application/x-amz-json-1.1",
        "X-Amz-Date": "20150830T123600Z",
        "X-Amz-Security-Token": "new",
        "Authorization": out["Authorization"],
    }
    assert "old" not in out.values()


def test_header_values_are_trimmed_only_for_signing() -> None:
    value = "  a   b \t c\n   d  "
    out = sign("GET", "https://ssm.us-east-1.amazonaws.com/", {"X-Test": value}, b"", **KEYS)
    assert out["X-Test"] == value  # sent as given
    creq = canonical_request("GET", "https://ssm.us-east-1.amazonaws.com/", out, b"")
    assert "\nx-test:a b c d\n" in creq
    assert sigv4.trim(" value1\n  value2\n     value3 ") == "value1 value2 value3"
    assert sigv4.trim("\t") == ""


def test_unsigned_headers_are_left_out_of_the_signature() -> None:
    headers = {
        "User-Agent": "x",
        "Expect": "100-continue",
        "X-Amzn-Trace-Id": "t",
        "X-Amz-Target": "a",
    }
    out = sign("POST", "https://ssm.us-east-1.amazonaws.com/", headers, b"", **KEYS)
    assert _signed_names(out) == ["host", "x-amz-date", "x-amz-target"]
    assert out["User-Agent"] == "x"


def test_a_date_header_is_signed_as_given_next_to_x_amz_date() -> None:
    given = {"Date": "Mon, 01 Jan 2001 00:00:00 GMT"}
    out = sign("GET", "https://ssm.us-east-1.amazonaws.com/", given, b"", **KEYS)
    assert out["Date"] == given["Date"]
    assert out["X-Amz-Date"] == "20150830T123600Z"
    assert _signed_names(out) == ["date", "host", "x-amz-date"]


def test_aware_and_naive_utc_times_sign_alike() -> None:
    tz = datetime.timezone(datetime.timedelta(hours=-7))
    aware = sign(
        "GET",
        "https://ssm.us-east-1.amazonaws.com/",
        {},
        b"",
        **dict(KEYS, now=SUITE_TIME.astimezone(tz)),
    )
    naive = sign(
        "GET",
        "https://ssm.us-east-1.amazonaws.com/",
        {},
        b"",
        **dict(KEYS, now=SUITE_TIME.replace(tzinfo=None)),
    )
    assert aware == naive
    assert aware["X-Amz-Date"] == "20150830T123600Z"


def test_signing_key_matches_the_aws_documentation_example() -> None:
    # "Examples of how to derive a signing key for Signature Version 4", AWS General Reference.
    key = sigv4.signing_key(
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam"
    )
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


def test_query_is_canonicalized_whether_encoded_or_not() -> None:
    # botocore signs a URL's query as it is; AWS decodes and re-encodes it, and so do we, so a
    # raw or oddly encoded query still signs as the server computes it.
    assert sigv4.canonical_query_string("b=%e1%88%b4&a=x y&c") == "a=x%20y&b=%E1%88%B4&c="
    assert sigv4.canonical_query_string("k=%41%7e%2f&k=%FF") == "k=%FF&k=A~%2F"
    assert sigv4.canonical_query_string("") == ""


def test_path_is_normalized_then_encoded_again() -> None:
    assert sigv4.canonical_uri("") == "/"
    assert sigv4.canonical_uri("//a/./b/../c//") == "/a/c/"
    assert sigv4.canonical_uri("/a%20b/ሴ") == "/a%2520b/%E1%88%B4"


def test_importing_sigv4_loads_only_the_standard_library() -> None:
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); before = set(sys.modules); import sigv4; "
        "extra = {m.split('.')[0] for m in set(sys.modules) - before}; "
        "print(sorted(extra - set(sys.stdlib_module_names) - {'sigv4'}))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


# Keys around HMAC's 64-byte block (shorter ones are padded, longer ones hashed first).
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.binary(max_size=200), message=st.text(max_size=300), body=st.binary(max_size=300))
def test_sha256_and_hmac_are_hashlibs_and_hmacs(key: bytes, message: str, body: bytes) -> None:
    # sigv4 hashes with the interpreter's built-in SHA-256 and its own RFC 2104 HMAC.
    assert sigv4.body_hash(body) == hashlib.sha256(body).hexdigest()
    expected = hmac.new(key, message.encode(), hashlib.sha256).hexdigest()
    assert sigv4.signature(key, message) == expected
    assert sigv4.signature(key, message) == expected  # the cached keyed states are unchanged
    creq_hash = hashlib.sha256(message.encode()).hexdigest()
    assert sigv4.string_to_sign("T", "S", message) == f"AWS4-HMAC-SHA256\nT\nS\n{creq_hash}"


@given(secret=st.text(max_size=80), parts=st.lists(st.text(max_size=20), min_size=3, max_size=3))
def test_signing_key_is_hmacs_chain(secret: str, parts: list[str]) -> None:
    key = f"AWS4{secret}".encode()
    for step in (*parts, "aws4_request"):
        key = hmac.new(key, step.encode(), hashlib.sha256).digest()
    assert sigv4.signing_key(secret, *parts) == key


def test_signing_imports_neither_hashlib_nor_hmac() -> None:
    # OpenSSL's digests behind hashlib and hmac cost 2-3 ms of CPU to import on the first
    # miss's path; the built-in SHA-256 about 0.2.
    output = fresh_python(
        "import datetime, sigv4; "
        "sigv4.sign('POST', 'https://h/', {}, b'{}', access_key='A', secret_key='S', "
        "session_token=None, region='r', service='s', now=datetime.datetime(2020, 1, 1)); "
        "print(sorted({'hashlib', 'hmac', '_hashlib'} & set(sys.modules)))"
    )
    assert output.strip() == "[]"
