"""An authority without its userinfo: the one rule for what of a URL may be sent or logged.

Userinfo (`user:password@` before the host) is never sent to a host, put in a Host header
or an origin, nor logged. Imported only once a URL is there to use (no import of its own).
"""

_SCHEME_MARKS = "+-."


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
