"""Keep-alive HTTP(S) connections to AWS endpoints, bounded, reused, deadline-aware.

Each request goes out in one write; its response is read by response_reader.py, the
extension's one HTTP reader, which tells whether the connection may carry the next request.
TLS is tls.py's, over _ssl, imported with the trust store (trust_store.py) when the first
https origin needs it.
"""

from __future__ import annotations

import select
import socket
import threading
import time

from .. import urls
from ..errors import (
    ResponseTooLarge,
    StaleConnection,
    TlsVerificationError,
    UpstreamConnectionError,
    UpstreamTimeout,
)
from ..logs import log
from ..response_reader import CutShort, OverLimit, Response, ResponseError, read_response
from . import trust_store

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    import _ssl

    from .tls import TlsSocket

    # A pooled connection: plain, or TLS over one.
    Connection = socket.socket | TlsSocket

# Bounds every socket operation even when the request itself has no deadline.
DEFAULT_SOCKET_TIMEOUT = 10.0
# A secret is at most 64 KiB and a parameter 8 KiB; anything near this is not AWS's answer.
MAX_RESPONSE_BYTES = 1 << 20
# Origins with pooled connections; ARN regions can name many, so the oldest are closed.
MAX_ORIGINS = 8
_DEFAULT_PORTS = {"http": 80, "https": 443}
# A request line or header that holds one of these would end early and let the rest be
# read as another header or request.
_LINE_BREAKS = ("\r", "\n", "\0")


def host_bytes(host: str) -> bytes:
    """`host` as getaddrinfo and the TLS handshake take it: given a str, each encodes it with
    the idna codec, whose first use imports unicodedata and stringprep (about 1.5 ms of CPU
    on the first call's path); an ASCII name is the same bytes either way."""
    return host.encode("ascii") if host.isascii() else host.encode("idna")


class TlsSettings:
    """One lazily built SSL context, shared by pools: the CA certificates looked up lazily in
    the system's hashed directory where it has one (trust_store.py), AWS_CA_BUNDLE's loaded;
    after a chain that fails against that directory, the system's whole store for good."""

    def __init__(self, ca_bundle: str | None) -> None:
        self._ca_bundle = ca_bundle
        self._context: _ssl._SSLContext | None = None
        self._lazy: _ssl._SSLContext | None = None  # the directory's context, once made
        self._directory: str | None = None
        self._lock = threading.Lock()

    def context(self) -> _ssl._SSLContext:
        """The SSL context, built on first use: even without the whole trust store, _ssl's
        imports take 3 ms that only an https origin needs."""
        with self._lock:
            if self._context is None:
                self._directory = trust_store.hashed_directory()
                self._context = trust_store.client_context(self._ca_bundle, self._directory)
                if self._directory is not None:
                    self._lazy = self._context
            return self._context

    def wrap(self, sock: socket.socket, host: bytes, origin: str) -> TlsSocket:
        """`sock` over TLS to `host`, its certificate verified; the handshake is bounded by
        the socket's timeout. LazyStoreMiss when the directory's store failed the chain:
        the whole store is in place then, for a new connection to try."""
        context = self.context()
        from . import tls  # noqa: PLC0415 -- loaded by context() just now

        try:
            return tls.connect(context, sock, host)
        except tls.SSLCertVerificationError as exc:
            if context is self._lazy:
                self._use_whole_store(origin, exc.verify_message)
                raise LazyStoreMiss(origin) from exc
            raise TlsVerificationError(
                f"TLS certificate of {origin} not trusted: {exc.verify_message}"
            ) from exc

    def _use_whole_store(self, origin: str, reason: str) -> None:
        with self._lock:
            if self._context is self._lazy:  # the first connection to fail switches
                log.info(
                    "TLS certificate of %s not verified with the CA directory %s (%s): "
                    "loading the whole trust store, and trying once more",
                    origin,
                    self._directory,
                    reason,
                )
                self._context = trust_store.client_context(self._ca_bundle, None)


class LazyStoreMiss(Exception):
    """A handshake failed against the hashed directory's store: a new connection may try
    the whole store (TlsSettings has it in place by then)."""


class _Deadline:
    """Remaining time of one request; `None` means only the per-operation bound applies."""

    def __init__(self, at: float | None) -> None:
        self.at = at

    def remaining(self) -> float | None:
        """Seconds left, or None without a deadline; raise UpstreamTimeout once it passed."""
        if self.at is None:
            return None
        left = self.at - time.monotonic()
        if left <= 0:
            raise UpstreamTimeout("the request deadline passed")
        return left

    def timeout(self) -> float:
        """The timeout for the next socket operation."""
        left = self.remaining()
        return DEFAULT_SOCKET_TIMEOUT if left is None else min(left, DEFAULT_SOCKET_TIMEOUT)


class ConnectionPool:
    """At most `max_connections` keep-alive connections to one origin (scheme://host[:port])."""

    def __init__(self, origin: str, *, max_connections: int, tls: TlsSettings) -> None:
        parts = urls.split(origin)
        # Userinfo is never sent, nor put in the messages that name the origin.
        self.origin = urls.origin(parts.scheme, parts.netloc)
        self._https = parts.scheme == "https"
        self._address = (
            host_bytes(parts.hostname or ""),
            parts.port or _DEFAULT_PORTS[parts.scheme],
        )
        self._host_header = urls.host_port(parts.netloc)
        self._tls = tls
        self._slots = threading.BoundedSemaphore(max_connections)
        self._idle: list[Connection] = []  # LIFO: the warmest one first
        self._lock = threading.Lock()
        self._closed = False

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        *,
        deadline: float | None = None,
        max_body: int = MAX_RESPONSE_BYTES,
    ) -> Response:
        """Send one request and read the whole response; `deadline` is a time.monotonic value.

        An answer with a body over `max_body` bytes is refused (ResponseTooLarge, 502).
        """
        message = self._message(method, path, headers, body)
        limit = _Deadline(deadline)
        if not self._slots.acquire(timeout=limit.remaining()):
            raise UpstreamTimeout("no upstream connection became free before the deadline")
        try:
            sock = self._take_idle()
            if sock is not None:
                try:
                    return self._exchange(sock, message, limit, max_body, reused=True)
                except StaleConnection as stale:
                    # The server closed it while idle: once, on a fresh one, unseen by the caller.
                    log.debug("pooled connection to %s was closed (%s)", self.origin, stale)
            sock = self._connect(limit)
            return self._exchange(sock, message, limit, max_body, reused=False)
        finally:
            self._slots.release()

    def close(self, *, retire: bool = False) -> None:
        """Close the idle connections; later requests still work and open new ones.

        With `retire`, a connection in use is also closed once its request is done.
        """
        with self._lock:
            idle, self._idle = self._idle, []
            self._closed = self._closed or retire
        for sock in idle:
            sock.close()

    def _message(self, method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
        """The request's bytes, head and body, for one write: a Host header unless given,
        the body's Content-Length, and no content coding asked for."""
        lines = [f"{method} {path} HTTP/1.1"]
        if not any(name.lower() == "host" for name in headers):
            lines.append(f"Host: {self._host_header}")
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines += [f"Content-Length: {len(body)}", "Accept-Encoding: identity", "", ""]
        head = "\r\n".join(lines)
        if any(mark in line for line in lines for mark in _LINE_BREAKS):
            raise ValueError("a request line or header holds a line break or NUL")
        return head.encode("latin-1") + body

    def _take_idle(self) -> Connection | None:
        while True:
            with self._lock:
                if not self._idle:
                    return None
                sock = self._idle.pop()
            if _still_open(sock):
                return sock
            sock.close()

    def _connect(self, limit: _Deadline) -> Connection:
        sock = self._open(limit)
        if not self._https:
            return sock
        try:
            return self._handshake(sock, limit)
        except LazyStoreMiss:
            # The hashed directory lacked this chain's CA; the whole store is in place now.
            return self._handshake(self._open(limit), limit)

    def _open(self, limit: _Deadline) -> socket.socket:
        try:
            # getaddrinfo takes the host as bytes too (see host_bytes); typeshed says str.
            sock = socket.create_connection(self._address, limit.timeout())  # type: ignore[arg-type]
        except TimeoutError as exc:
            raise UpstreamTimeout(f"connecting to {self.origin} timed out") from exc
        except OSError as exc:
            raise UpstreamConnectionError(
                f"cannot connect to {self.origin}: {_describe(exc)}"
            ) from exc
        # Requests are small; Nagle plus delayed ACK would add ~40 ms to each one.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _handshake(self, sock: socket.socket, limit: _Deadline) -> TlsSocket:
        try:
            sock.settimeout(limit.timeout())
            return self._tls.wrap(sock, self._address[0], self.origin)
        except TimeoutError as exc:
            sock.close()
            raise UpstreamTimeout(f"connecting to {self.origin} timed out") from exc
        except OSError as exc:
            sock.close()
            raise UpstreamConnectionError(
                f"cannot connect to {self.origin}: {_describe(exc)}"
            ) from exc
        except BaseException:
            sock.close()
            raise

    def _exchange(
        self,
        sock: Connection,
        message: bytes,
        limit: _Deadline,
        max_body: int,
        *,
        reused: bool,
    ) -> Response:
        try:
            sock.settimeout(limit.timeout())
            sock.sendall(message)
            response = read_response(
                sock, limit.at, max_body, self.origin, longest_wait=DEFAULT_SOCKET_TIMEOUT
            )
        except TimeoutError as exc:
            sock.close()
            raise UpstreamTimeout(f"request to {self.origin} timed out") from exc
        except OverLimit as exc:
            # The rest is never read, so the connection cannot carry another request.
            sock.close()
            raise ResponseTooLarge(str(exc)) from exc
        except (OSError, CutShort) as exc:
            sock.close()
            if isinstance(exc, CutShort) and exc.started:
                raise UpstreamConnectionError(
                    f"connection to {self.origin} failed mid-response: {exc}"
                ) from exc
            if reused:
                # No byte of an answer came: the server had closed it while it sat idle.
                raise StaleConnection(_describe(exc)) from exc
            raise UpstreamConnectionError(
                f"connection to {self.origin} failed: {_describe(exc)}"
            ) from exc
        except ResponseError as exc:  # Malformed
            sock.close()
            raise UpstreamConnectionError(str(exc)) from exc
        except BaseException:
            sock.close()
            raise
        self._release(sock, keep=response.keep_alive)
        return response

    def _release(self, sock: Connection, *, keep: bool) -> None:
        with self._lock:
            if keep and not self._closed:
                self._idle.append(sock)
                return
        sock.close()


class Pools:
    """One ConnectionPool per origin, for at most `max_origins` origins, least recent closed."""

    def __init__(
        self, *, max_connections: int, tls: TlsSettings, max_origins: int = MAX_ORIGINS
    ) -> None:
        self._max_connections = max_connections
        self._max_origins = max_origins
        self._tls = tls
        self._pools: dict[str, ConnectionPool] = {}  # insertion order: least recent first
        self._lock = threading.Lock()

    def get(self, origin: str) -> ConnectionPool:
        """The pool for `origin`, made the most recent; may retire the least recent one."""
        retired = None
        with self._lock:
            pool = self._pools.pop(origin, None)
            if pool is None:
                pool = ConnectionPool(origin, max_connections=self._max_connections, tls=self._tls)
                if len(self._pools) >= self._max_origins:
                    retired = self._pools.pop(next(iter(self._pools)))
            self._pools[origin] = pool
        if retired is not None:
            # A request still running on it finishes normally; its connection is closed after.
            retired.close(retire=True)
        return pool

    def close(self) -> None:
        """Close every idle connection; the pools stay usable."""
        with self._lock:
            pools = list(self._pools.values())
        for pool in pools:
            pool.close()


def _still_open(sock: Connection) -> bool:
    """False when an idle connection is readable: the server closed it or sent junk."""
    try:
        if hasattr(select, "poll"):  # no FD_SETSIZE limit, unlike select()
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return not poller.poll(0)
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _describe(exc: BaseException) -> str:
    """A short, value-free description of a network error."""
    text = getattr(exc, "strerror", None) or str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
