"""A verified client TLS connection, made with `_ssl`, the C module that ssl.py wraps.

`import ssl` costs 2-3.5 ms of CPU over `_ssl` (its enums, built by IntEnum._convert_, and
its own imports; 2 ms once the AWS client's other modules are in), on the first https call's
path, while the client needs little of it: a context as `ssl.create_default_context()` makes
it, and a socket wrapped, its handshake done, then read and written. Those few lines are
written out here as ssl.py writes them, version by version; tests/test_tls.py compares this
module's context with create_default_context's on each Python, setting by setting.

`_ssl` is private, but what this module uses of it is the same from 3.10 to 3.14 (ssl.py's
own code calls it so in all of them): `_SSLContext(protocol)` with its verify_mode,
check_hostname, verify_flags, keylog_filename, load_verify_locations and
set_default_verify_paths; `_wrap_socket(sock, server_side, server_hostname)`; the TLS
object's do_handshake, read and write; get_default_verify_paths; the exception classes,
which ssl re-exports unchanged (`ssl.SSLCertVerificationError is _ssl.SSLCertVerificationError`).
"""

from __future__ import annotations

import _ssl
import os
import sys
from _ssl import SSLCertVerificationError, SSLError

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    import socket
    from typing import Protocol

    class _SSLSocket(Protocol):
        """What this module uses of _ssl's TLS object, which typeshed leaves undescribed."""

        def do_handshake(self) -> None: ...

        def read(self, size: int, /) -> bytes: ...

        def write(self, data: memoryview, /) -> int: ...


__all__ = [
    "SSLCertVerificationError",
    "SSLError",
    "TlsSocket",
    "client_context",
    "connect",
    "default_cafile",
    "openssl_capath",
]

# What ssl.create_default_context() adds on 3.13 and later: chains that end at any trusted
# certificate (RFC 5280), and OpenSSL's stricter certificate checks.
_VERIFY_FLAGS_3_13 = _ssl.VERIFY_X509_PARTIAL_CHAIN | _ssl.VERIFY_X509_STRICT


def client_context(*, cafile: str | None = None, capath: str | None = None) -> _ssl._SSLContext:
    """What `ssl.create_default_context(cafile=cafile, capath=capath)` makes: a TLS client
    that requires a certificate, checks the host name, and trusts `cafile` and `capath`, or
    with neither the system's default store. Its cipher list, options and minimum version
    (TLS 1.2) are the ones _ssl gives every PROTOCOL_TLS_CLIENT context."""
    context = _ssl._SSLContext(_ssl.PROTOCOL_TLS_CLIENT)
    context.verify_mode = _ssl.CERT_REQUIRED
    context.check_hostname = True
    if sys.version_info >= (3, 13):
        context.verify_flags |= _VERIFY_FLAGS_3_13
    if cafile or capath:
        context.load_verify_locations(cafile, capath)
    else:
        context.set_default_verify_paths()  # ssl's load_default_certs, outside Windows
    # As ssl does: a key log for debugging (never under -I, as the extension runs).
    keylog = os.environ.get("SSLKEYLOGFILE")
    if keylog and not sys.flags.ignore_environment and hasattr(context, "keylog_filename"):
        context.keylog_filename = keylog
    return context


def default_cafile() -> str | None:
    """The CA bundle file OpenSSL's default store loads, if it exists:
    `ssl.get_default_verify_paths().cafile` (SSL_CERT_FILE, else OpenSSL's own)."""
    variable, cafile, _, _ = _ssl.get_default_verify_paths()
    cafile = os.environ.get(variable, cafile)
    return cafile if os.path.isfile(cafile) else None


def openssl_capath() -> str:
    """OpenSSL's own CA directory: `ssl.get_default_verify_paths().openssl_capath`."""
    return str(_ssl.get_default_verify_paths()[3])


class TlsSocket:
    """A connected socket's TLS session: what the pool and response_reader use of an
    ssl.SSLSocket (sendall, recv, settimeout, fileno, close), each as ssl.py does it. Reads
    and writes wait as long as the socket's timeout, which _ssl reads at each call."""

    __slots__ = ("_sock", "_tls")

    def __init__(self, sock: socket.socket, tls: _SSLSocket) -> None:
        self._sock = sock  # _ssl keeps only a weak reference to it
        self._tls = tls

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    def fileno(self) -> int:
        return self._sock.fileno()

    def sendall(self, data: bytes) -> None:
        with memoryview(data) as view:
            sent = 0
            while sent < len(view):
                sent += self._tls.write(view[sent:])

    def recv(self, size: int) -> bytes:
        """Up to `size` bytes; b"" at the end, a close without TLS's close_notify included,
        as ssl's default suppress_ragged_eofs reads it."""
        try:
            return self._tls.read(size)
        except SSLError as exc:
            if exc.args[0] == _ssl.SSL_ERROR_EOF:
                return b""
            raise

    def close(self) -> None:
        """Close the socket, as ssl does: without TLS's close_notify."""
        self._sock.close()


def connect(context: _ssl._SSLContext, sock: socket.socket, host: bytes) -> TlsSocket:
    """TLS over connected `sock` to `host` (an ASCII name or address, as bytes), the
    handshake done within the socket's timeout: `context.wrap_socket(sock,
    server_hostname=host)`. Raises SSLCertVerificationError for a certificate the context
    does not trust or that names another host, SSLError or OSError for the rest; the caller
    closes `sock`."""
    if not host:  # as ssl refuses it: an empty name would check no name at all
        raise ValueError("check_hostname requires server_hostname")
    # ssl passes the name as str; SNI is sent and the name checked unless it is an address.
    tls: _SSLSocket = context._wrap_socket(  # type: ignore[attr-defined] # not in typeshed
        sock, False, host.decode("ascii")
    )
    tls.do_handshake()
    return TlsSocket(sock, tls)
