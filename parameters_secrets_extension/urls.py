"""An authority without its userinfo: the one rule for what of a URL may be sent or logged.

Userinfo (`user:password@` before the host) is never sent to a host, put in a Host header
or an origin, nor logged. Imported only once a URL is there to use (no import of its own).
"""


def host_port(netloc: str) -> str:
    """`netloc` (a URL's authority) without its userinfo: `host[:port]`."""
    return netloc.rpartition("@")[2]


def origin(scheme: str, netloc: str) -> str:
    """`scheme://host[:port]`, userinfo left out."""
    return f"{scheme}://{host_port(netloc)}"
