"""Percent-encoding (RFC 3986) without urllib.parse, for the local API: decoding a request's
query, escaping what a request target may not carry raw.

Importing urllib.parse costs 2.5-3 ms of CPU on Python 3.11-3.13 (it imports ipaddress),
all of it on the way to the first answer. Each function here gives exactly what the
urllib.parse function it names gives (tests/test_percent.py compares them over generated
input); text outside the shape a request can bring goes to urllib.parse itself.

sigv4 keeps its own uri_encode and percent_decoded, the same rules: it imports nothing but
the standard library (tests/test_sigv4.py), and the local API does not import the signer,
which a GET hit never uses. test_percent holds both copies to urllib.parse.
"""

_HEX_DIGITS = frozenset(b"0123456789ABCDEFabcdef")
# RFC 3986's unreserved characters, never encoded: urllib.parse's always-safe set, and the
# characters AWS's UriEncode leaves as they are.
_UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"


def unquote_to_bytes(data: bytes) -> bytes:
    """urllib.parse.unquote_to_bytes: each `%` and two hex digits as the byte they name;
    any other `%` kept as it is."""
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


def unquote(text: str) -> str:
    """urllib.parse.unquote(text, errors="strict"): the escapes decoded as UTF-8, a
    UnicodeDecodeError when they are not UTF-8."""
    if "%" not in text:
        return text
    if not text.isascii():
        # urllib decodes each ASCII run of such text on its own. A request never brings it
        # (request_head escapes every byte above 0x7e of the target), so its rule stays there.
        import urllib.parse  # noqa: PLC0415

        return urllib.parse.unquote(text, encoding="utf-8", errors="strict")
    return unquote_to_bytes(text.encode("ascii")).decode("utf-8")


def quote(data: bytes, safe: bytes = b"") -> str:
    """urllib.parse.quote_from_bytes, which is AWS's UriEncode: every byte but the
    unreserved ones and those of `safe` as `%XX`, upper-case hex."""
    kept = _UNRESERVED + safe
    if not data.translate(None, kept):  # nothing to encode: the usual case
        return data.decode("ascii")
    return "".join(chr(byte) if byte in kept else f"%{byte:02X}" for byte in data)
