"""AWS Signature Version 4, header form, byte for byte what botocore's SigV4Auth produces.

The steps follow the AWS spec: canonical request, string to sign, signing key, signature.
Paths get the rules of every service except S3 (dot segments and empty segments removed,
then URI-encoded again); S3's single-encoding rules are deliberately not implemented.
Nor is botocore's rewriting of a caller's `Date` header: our client never sends one, so a
`Date` header here is signed like any other, next to `X-Amz-Date`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import lru_cache

# SHA-256 from the interpreter's own built-in module, not hashlib: importing it costs about
# 0.2 ms of CPU, against 1.2-1.7 ms for OpenSSL's _hashlib (its digest tables) and another
# 0.6-1.2 for hashlib and hmac, all on the first miss's path. Its digests are SHA-256's,
# whichever library computes them. Private modules: _sha256 up to 3.11, _sha2 from 3.12 (3.14
# still has it); hashlib's public sha256 where a build has neither.
TYPE_CHECKING = False  # mypy takes it as True
if TYPE_CHECKING:
    import datetime
    from hashlib import _Hash
    from hashlib import sha256 as _sha256
else:
    try:
        from _sha2 import sha256 as _sha256
    except ImportError:  # pragma: no cover - 3.10 and 3.11
        try:
            from _sha256 import sha256 as _sha256
        except ImportError:  # pragma: no cover - a build without the built-in module
            from hashlib import sha256 as _sha256


ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = _sha256(b"").hexdigest()
# HMAC (RFC 2104) over SHA-256, written out as hmac.py's pure-Python fallback does it: the key
# padded to the hash's 64-byte block, XORed with 0x36 (inner) and 0x5C (outer) by translate.
_BLOCK = 64
_INNER_PAD = bytes(byte ^ 0x36 for byte in range(256))
_OUTER_PAD = bytes(byte ^ 0x5C for byte in range(256))

# botocore's SIGNED_HEADERS_BLACKLIST: hop-by-hop headers and ones proxies rewrite, which
# would break the signature if they were signed.
UNSIGNED_HEADERS = frozenset(
    {
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-amzn-trace-id",
    }
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
# UriEncode's unreserved characters, never encoded (the SigV4 spec's; urllib's always-safe).
_UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"
_HEX_DIGITS = frozenset(b"0123456789ABCDEFabcdef")
# What a plain URL's authority holds (see _split): a host name or IPv4 address, and a port.
_PLAIN_NETLOC = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.:")


def amz_date(now: datetime.datetime) -> str:
    """The `X-Amz-Date` timestamp; a naive `now` is taken to be UTC, as botocore's clock is."""
    # utctimetuple() converts an aware `now` to UTC and takes a naive one as it is, without
    # the datetime module: on 3.10/3.11 importing it builds the pure-Python module first.
    return time.strftime("%Y%m%dT%H%M%SZ", now.utctimetuple())


def host_header(scheme: str, host: str, port: int | None) -> str:
    """Host header value of a URL's parts: the host lower-cased (the caller's doing) and
    bracketed if IPv6, the port only when not the scheme's default."""
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    return host


# A client signs the same few URLs (one per endpoint) over and over: as urlsplit's own.
@lru_cache(maxsize=32)
def _split(url: str) -> tuple[str, str, str]:
    """`url`'s Host header value (no userinfo), path and query, as urlsplit reads them.

    Not through urllib.parse for a plain URL (`http://` or `https://`, printable ASCII, an
    authority of a host name or IPv4 address and a port of up to 5 digits): urllib.parse
    costs 2.5-3 ms of CPU to import on 3.11-3.13, on the way to the first answer, and every
    URL the extension signs is plain. Any other URL is urlsplit's.
    """
    scheme, slashes, rest = url.partition("://")
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    host, _, port = rest[:end].partition(":")
    if (
        scheme in _DEFAULT_PORTS
        and slashes
        and url.isascii()
        and url.isprintable()
        and _PLAIN_NETLOC.issuperset(rest[:end])
        and (not port or (port.isdigit() and len(port) <= 5 and int(port) <= 0xFFFF))
    ):
        path, _, query = rest[end:].partition("#")[0].partition("?")
        return host_header(scheme, host.lower(), int(port) if port else None), path, query
    from urllib.parse import urlsplit  # noqa: PLC0415 -- only for a URL that is not plain

    parts = urlsplit(url)
    return host_header(parts.scheme, parts.hostname or "", parts.port), parts.path, parts.query


def uri_encode(data: bytes, keep: bytes = b"") -> str:
    """The spec's UriEncode (urllib.parse.quote_from_bytes's rule too): every byte but the
    unreserved ones and those of `keep` as `%XX`, upper-case hex."""
    kept = _UNRESERVED + keep
    if not data.translate(None, kept):  # nothing to encode: the usual case
        return data.decode("ascii")
    return "".join(chr(byte) if byte in kept else f"%{byte:02X}" for byte in data)


def percent_decoded(text: str) -> bytes:
    """`text` as UTF-8, each `%` and two hex digits as the byte they name, any other `%`
    kept (urllib.parse.unquote_to_bytes)."""
    data = text.encode("utf-8")
    if b"%" not in data:
        return data
    first, *rest = data.split(b"%")
    out = bytearray(first)
    for item in rest:
        if len(item) >= 2 and item[0] in _HEX_DIGITS and item[1] in _HEX_DIGITS:
            out.append(int(item[:2], 16))
            out += item[2:]
        else:
            out += b"%" + item
    return bytes(out)


def remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4, plus dropping empty segments (`//`), which AWS requires."""
    if not path:
        return "/"
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    first = "/" if path[0] == "/" else ""
    last = "/" if path[-1] == "/" and segments else ""
    return first + "/".join(segments) + last


def canonical_uri(path: str) -> str:
    """The normalized path URI-encoded again, so a wire path's `%20` signs as `%2520`."""
    if path == "/":  # every AWS JSON request's; encoding is the costliest part of a check
        return path
    return uri_encode(remove_dot_segments(path).encode("utf-8"), keep=b"/")


def _encode(component: str) -> str:
    # Decoding first makes an already-encoded query and a raw one sign alike; bytes keep
    # percent-escapes that are not UTF-8 intact.
    return uri_encode(percent_decoded(component))


def canonical_query_string(query: str) -> str:
    """RFC 3986-encoded `key=value` pairs sorted by key, then value; `k` alone means `k=`."""
    if not query:
        return ""
    pairs = []
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        pairs.append((_encode(key), _encode(value)))
    pairs.sort()
    return "&".join(f"{key}={value}" for key, value in pairs)


def trim(value: str) -> str:
    """Trimall: strip, and collapse each run of whitespace (line breaks included) to one space."""
    return " ".join(value.split())


def headers_to_sign(headers: Mapping[str, str], host: str) -> dict[str, list[str]]:
    """Lower-cased name to values in order; names differing only in case are one header."""
    selected: dict[str, list[str]] = {}
    for name, value in headers.items():
        lname = name.lower()
        if lname not in UNSIGNED_HEADERS:
            selected.setdefault(lname, []).append(value)
    if "host" not in selected:
        selected["host"] = [host]
    return selected


def canonical_headers(selected: Mapping[str, list[str]]) -> str:
    """`name:value\\n` per header, sorted by name; repeated values joined by commas."""
    # A plain loop, and trim inlined for the usual one value: generators and a call per
    # header were most of a signature check's cost (a verifier signs ten headers per hit).
    lines = []
    for name in sorted(selected):
        values = selected[name]
        if len(values) == 1:
            lines.append(f"{name}:{' '.join(values[0].split())}\n")
        else:
            lines.append(f"{name}:{','.join(trim(value) for value in values)}\n")
    return "".join(lines)


def signed_headers(selected: Mapping[str, list[str]]) -> str:
    """The `;`-joined sorted header names, as in the canonical request and `SignedHeaders`."""
    return ";".join(sorted(name.strip() for name in selected))


def payload_hash(headers: Mapping[str, str], body: bytes) -> str:
    """Hex SHA-256 of the body, unless the caller set `X-Amz-Content-SHA256` (botocore uses it)."""
    for name, value in headers.items():
        if name.lower() == "x-amz-content-sha256":
            return value
    return body_hash(body)


def body_hash(body: bytes) -> str:
    """Hex SHA-256 of `body` itself: what a verifier compares with a claimed hash."""
    return _sha256(body).hexdigest() if body else EMPTY_SHA256


def _canonical(method: str, url: str, headers: Mapping[str, str], body: bytes) -> tuple[str, str]:
    """Task 1: the canonical request (for headers already dated) and its signed header names."""
    host, path, query = _split(url)
    selected = headers_to_sign(headers, host)
    signed = signed_headers(selected)
    creq = canonical_request(
        method,
        path,
        query,
        selected=selected,
        signed=signed,
        body_hash=payload_hash(headers, body),
    )
    return creq, signed


def canonical_request(
    method: str,
    path: str,
    query: str,
    *,
    selected: Mapping[str, list[str]],
    signed: str,
    body_hash: str,
) -> str:
    """Task 1's text: method, canonical URI and query, the `selected` headers, their names
    (`signed`) and the payload's hash, one per line. A signer and a verifier both use it."""
    return "\n".join(
        (
            method.upper(),
            canonical_uri(path),
            canonical_query_string(query),
            canonical_headers(selected),
            signed,
            body_hash,
        )
    )


def credential_scope(datestamp: str, region: str, service: str) -> str:
    """`<yyyymmdd>/<region>/<service>/aws4_request`."""
    return f"{datestamp}/{region}/{service}/aws4_request"


def string_to_sign(timestamp: str, scope: str, creq: str) -> str:
    """Task 2: algorithm, timestamp, scope and the hex SHA-256 of the canonical request."""
    digest = _sha256(creq.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{digest}"


def _hmac(key: bytes, msg: str) -> bytes:
    return _mac(_keyed_pads(key), msg.encode("utf-8")).digest()


# The key changes once a day per region and service, so a tiny cache spares four HMACs on
# nearly every request; a few entries cover credential rotation.
@lru_cache(maxsize=8)
def signing_key(secret_key: str, datestamp: str, region: str, service: str) -> bytes:
    """Task 3: the HMAC chain date -> region -> service -> `aws4_request`."""
    k_date = _hmac(f"AWS4{secret_key}".encode(), datestamp)
    return _hmac(_hmac(_hmac(k_date, region), service), "aws4_request")


def signature(key: bytes, sts: str) -> str:
    """Task 4: hex HMAC-SHA256 of the string to sign under the signing key."""
    return _mac(_keyed(key), sts.encode("utf-8")).hexdigest()


def _keyed_pads(key: bytes) -> tuple[_Hash, _Hash]:
    """SHA-256 states that have hashed the key's inner and outer pad: HMAC's key set-up."""
    if len(key) > _BLOCK:
        key = _sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return _sha256(key.translate(_INNER_PAD)), _sha256(key.translate(_OUTER_PAD))


def _mac(pads: tuple[_Hash, _Hash], msg: bytes) -> _Hash:
    """HMAC: H(outer pad + H(inner pad + msg)), from copies of the keyed states."""
    inner, outer = pads[0].copy(), pads[1].copy()
    inner.update(msg)
    outer.update(inner.digest())
    return outer


# Beside each signing key, its keyed states: copying them costs about half of setting the
# key up anew (two SHA-256 blocks), on every signature and every signature check.
_keyed = lru_cache(maxsize=8)(_keyed_pads)


def _dated_headers(
    headers: Mapping[str, str], timestamp: str, session_token: str | None
) -> dict[str, str]:
    """The request's headers as botocore signs them: stale auth headers replaced, date set."""
    drop = {"authorization", "x-amz-date"}
    if session_token:
        drop.add("x-amz-security-token")
    dated = {name: value for name, value in headers.items() if name.lower() not in drop}
    dated["X-Amz-Date"] = timestamp
    if session_token:
        dated["X-Amz-Security-Token"] = session_token
    return dated


def sign(
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
) -> dict[str, str]:
    """A new dict: `headers` plus `X-Amz-Date`, `X-Amz-Security-Token` and `Authorization`.

    `Host` is signed from `url` (lower-cased, default port left out) unless `headers` has
    one; it is not added to the result. `url` is the URL as sent: its query
    may be percent-encoded or plain text, and its path is encoded once more for signing.
    """
    timestamp = amz_date(now)
    dated = _dated_headers(headers, timestamp, session_token)
    creq, signed = _canonical(method, url, dated, body)
    scope = credential_scope(timestamp[:8], region, service)
    key = signing_key(secret_key, timestamp[:8], region, service)
    sig = signature(key, string_to_sign(timestamp, scope, creq))
    dated["Authorization"] = (
        f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={sig}"
    )
    return dated
