"""An authority without its userinfo: the one rule for what of a URL may be sent or logged.

Userinfo (`user:password@` before the host) is never sent to a host, put in a Host header
or an origin, nor logged. Imported only once a URL is there to use (no import of its own).

And split(): urllib.parse.urlsplit without importing urllib.parse (2.5-3 ms of CPU on Python
3.11-3.13, with the ipaddress it imports) for the URLs every call to AWS splits.
"""

from __future__ import annotations

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from urllib.parse import SplitResult

_SCHEME_MARKS = "+-."
_PLAIN_SCHEMES = ("http://", "https://")
_MAX_PORT = 65535


class PlainUrl:
    """What urlsplit gives for a plain URL: scheme, netloc, path, query, fragment and the
    netloc's hostname (lower-cased, None if empty) and port (None if absent)."""

    __slots__ = ("fragment", "hostname", "netloc", "path", "port", "query", "scheme")

    def __init__(self, scheme: str, netloc: str, rest: str, hostname: str, port: int | None):
        rest, _, self.fragment = rest.partition("#")
        self.path, _, self.query = rest.partition("?")
        self.scheme = scheme
        self.netloc = netloc
        self.hostname = hostname.lower() or None
        self.port = port


def split(url: str) -> PlainUrl | SplitResult:
    """urllib.parse.urlsplit(url), its hostname and port as attributes.

    The URLs the extension calls (AWS's endpoints, the usual override) are plain: `http://` or
    `https://`, printable ASCII, a netloc without userinfo, brackets or `%`, and a port (if
    any) of digits within range. Those are split here; any other URL by urlsplit itself, whose
    rules (IPv6 literals, stripped and removed characters, userinfo, a bad port's ValueError,
    raised when .port is read) then apply, and which this Python's version may change.
    """
    scheme = next((s for s in _PLAIN_SCHEMES if url.startswith(s)), None)
    if scheme is not None and url.isascii() and url.isprintable():
        rest = url[len(scheme) :]
        end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
        netloc = rest[:end]
        hostname, _, port = netloc.partition(":")
        if not any(mark in netloc for mark in "@[]%") and (
            not port or (port.isdigit() and len(port) <= 5 and int(port) <= _MAX_PORT)
        ):
            return PlainUrl(scheme[:-3], netloc, rest[end:], hostname, int(port) if port else None)
    import urllib.parse  # noqa: PLC0415 -- only for a URL that is not plain

    return urllib.parse.urlsplit(url)


def host_port(netloc: str) -> str:
    """`netloc` (a URL's authority) without its userinfo: `host[:port]`."""
    return netloc.rpartition("@")[2]


def origin(scheme: str, netloc: str) -> str:
    """`scheme://host[:port]`, userinfo left out."""
    return f"{scheme}://{host_port(netloc)}"


def without_userinfo(url: str, mark: str = "") -> str:
    """`url` as given, its userinfo replaced by `mark` (left out by default), safe to log.

    Works on text that is not a valid URL too (it is how an invalid setting is named in its
    error): the authority is what follows `scheme://` or `//` (or the start) up to the first
    `/`, `?` or `#`, and its userinfo everything up to its last `@`, as urlsplit reads it.
    """
    head, rest = "", url
    slashes = url.find("//")
    if slashes == 0 or (slashes > 0 and url[slashes - 1] == ":" and _is_scheme(url[: slashes - 1])):
        head, rest = url[: slashes + 2], url[slashes + 2 :]
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    authority = rest[:end]
    if "@" not in authority:
        return url
    return head + mark + host_port(authority) + rest[end:]


def _is_scheme(text: str) -> bool:
    """True for an RFC 3986 scheme: a letter, then letters, digits, `+`, `-` or `.`."""
    return (
        text[:1].isascii()
        and text[:1].isalpha()
        and all(c.isascii() and (c.isalnum() or c in _SCHEME_MARKS) for c in text)
    )
