"""Keep-alive HTTP(S) connections to AWS endpoints, bounded, reused, deadline-aware."""

from __future__ import annotations

import http.client
import io
import select
import socket
import ssl
import threading
import time
from collections import namedtuple
from urllib.parse import urlsplit

from .. import urls
from ..errors import (
    ResponseTooLarge,
    StaleConnection,
    TlsVerificationError,
    UpstreamConnectionError,
    UpstreamTimeout,
)
from ..logs import log

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Final

# Bounds every socket operation even when the request itself has no deadline.
DEFAULT_SOCKET_TIMEOUT = 10.0
# A secret is at most 64 KiB and a parameter 8 KiB; anything near this is not AWS's answer.
MAX_RESPONSE_BYTES = 1 << 20
# Origins with pooled connections; ARN regions can name many, so the oldest are closed.
MAX_ORIGINS = 8

# What a reused connection raises when the server had closed it while it sat idle.
_STALE_ERRORS = (
    http.client.RemoteDisconnected,
    BrokenPipeError,
    ConnectionResetError,
    ConnectionAbortedError,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
)


class _Request(namedtuple("_Request", "method path headers body max_body")):
    """What one request sends, handed on to a fresh connection if a reused one was stale,
    and the most body bytes its answer may have."""

    __slots__ = ()
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    max_body: int


class Response:
    """A complete upstream response; header names are lower-case."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status: Final = status
        self.headers: Final = headers
        self.body: Final = body


class TlsSettings:
    """One lazily built SSL context (system trust store + AWS_CA_BUNDLE), shared by pools."""

    def __init__(self, ca_bundle: str | None) -> None:
        self._ca_bundle = ca_bundle
        self._context: ssl.SSLContext | None = None
        self._lock = threading.Lock()

    def context(self) -> ssl.SSLContext:
        """The SSL context, built on first use because loading the trust store is slow."""
        with self._lock:
            if self._context is None:
                context = ssl.create_default_context()
                if self._ca_bundle:
                    try:
                        context.load_verify_locations(cafile=self._ca_bundle)
                    except (OSError, ssl.SSLError) as exc:
                        raise UpstreamConnectionError(
                            f"cannot load AWS_CA_BUNDLE {self._ca_bundle!r}: {exc}"
                        ) from exc
                self._context = context
            return self._context


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
        parts = urlsplit(origin)
        # Userinfo is never sent, nor put in the messages that name the origin.
        self.origin = urls.origin(parts.scheme, parts.netloc)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._tls = tls
        self._slots = threading.BoundedSemaphore(max_connections)
        self._idle: list[http.client.HTTPConnection] = []  # LIFO: the warmest one first
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
        req = _Request(method, path, headers, body, max_body)
        limit = _Deadline(deadline)
        if not self._slots.acquire(timeout=limit.remaining()):
            raise UpstreamTimeout("no upstream connection became free before the deadline")
        try:
            conn = self._take_idle()
            if conn is not None:
                try:
                    return self._exchange(conn, req, limit, reused=True)
                except StaleConnection as stale:
                    # The server closed it while idle: once, on a fresh one, unseen by the caller.
                    log.debug("pooled connection to %s was closed (%s)", self.origin, stale)
            conn = self._connect(limit)
            return self._exchange(conn, req, limit, reused=False)
        finally:
            self._slots.release()

    def close(self, *, retire: bool = False) -> None:
        """Close the idle connections; later requests still work and open new ones.

        With `retire`, a connection in use is also closed once its request is done.
        """
        with self._lock:
            idle, self._idle = self._idle, []
            self._closed = self._closed or retire
        for conn in idle:
            conn.close()

    def _take_idle(self) -> http.client.HTTPConnection | None:
        while True:
            with self._lock:
                if not self._idle:
                    return None
                conn = self._idle.pop()
            if _still_open(conn):
                return conn
            conn.close()

    def _connect(self, limit: _Deadline) -> http.client.HTTPConnection:
        timeout = limit.timeout()
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=self._tls.context()
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        try:
            conn.connect()
        except ssl.SSLCertVerificationError as exc:
            conn.close()
            raise TlsVerificationError(
                f"TLS certificate of {self.origin} not trusted: {exc.verify_message}"
            ) from exc
        except TimeoutError as exc:
            conn.close()
            raise UpstreamTimeout(f"connecting to {self.origin} timed out") from exc
        except OSError as exc:
            conn.close()
            raise UpstreamConnectionError(
                f"cannot connect to {self.origin}: {_describe(exc)}"
            ) from exc
        if conn.sock is not None:
            # Requests are small; Nagle plus delayed ACK would add ~40 ms to each one.
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _exchange(
        self,
        conn: http.client.HTTPConnection,
        req: _Request,
        limit: _Deadline,
        *,
        reused: bool,
    ) -> Response:
        sock = conn.sock  # kept: http.client drops conn.sock when the response will close
        try:
            response = self._send(conn, req, limit)
        except _STALE_ERRORS as exc:
            conn.close()
            if reused:
                raise StaleConnection(type(exc).__name__) from exc
            raise UpstreamConnectionError(
                f"connection to {self.origin} failed: {_describe(exc)}"
            ) from exc
        except BaseException:
            conn.close()
            raise
        try:
            data = _read_body(response, sock, limit, req.max_body)
        except TimeoutError as exc:
            response.close()
            conn.close()
            raise UpstreamTimeout(f"reading the response from {self.origin} timed out") from exc
        except (OSError, http.client.HTTPException) as exc:
            response.close()
            conn.close()
            raise UpstreamConnectionError(
                f"connection to {self.origin} failed mid-response: {_describe(exc)}"
            ) from exc
        except BaseException:
            response.close()
            conn.close()
            raise
        if len(data) > req.max_body:
            conn.close()
            raise ResponseTooLarge(f"the response from {self.origin} is over {req.max_body} bytes")
        result = Response(
            status=response.status,
            headers={name.lower(): value for name, value in response.getheaders()},
            body=data,
        )
        self._release(conn, keep=not response.will_close)
        return result

    def _send(
        self,
        conn: http.client.HTTPConnection,
        req: _Request,
        limit: _Deadline,
    ) -> http.client.HTTPResponse:
        try:
            if conn.sock is not None:
                conn.sock.settimeout(limit.timeout())
            conn.request(req.method, req.path, body=req.body, headers=req.headers)
            # The status line and headers are read under the deadline too, one read at a
            # time: a timeout set once would let a peer trickle the head for ever.
            conn.response_class = _deadline_response(limit)  # type: ignore[assignment]
            return conn.getresponse()
        except TimeoutError as exc:
            raise UpstreamTimeout(f"request to {self.origin} timed out") from exc
        except _STALE_ERRORS:
            raise
        except (OSError, http.client.HTTPException) as exc:
            raise UpstreamConnectionError(
                f"connection to {self.origin} failed: {_describe(exc)}"
            ) from exc

    def _release(self, conn: http.client.HTTPConnection, *, keep: bool) -> None:
        with self._lock:
            if keep and not self._closed and conn.sock is not None:
                self._idle.append(conn)
                return
        conn.close()


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


class _DeadlineRaw(io.RawIOBase):
    """A socket's reads, each with only the time left before the deadline."""

    def __init__(self, sock: socket.socket, limit: _Deadline) -> None:
        super().__init__()
        self._sock = sock
        self._raw = sock.makefile("rb", buffering=0)  # holds the socket open, as http.client's
        self._limit = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        self._sock.settimeout(self._limit.timeout())  # UpstreamTimeout once the deadline passed
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()
        super().close()


def _deadline_response(limit: _Deadline) -> Callable[..., http.client.HTTPResponse]:
    """An http.client response class that reads the whole response, head included, through
    _DeadlineRaw."""

    def make(sock: socket.socket, *args: Any, **kwargs: Any) -> http.client.HTTPResponse:
        response = http.client.HTTPResponse(sock, *args, **kwargs)
        response.fp.close()  # nothing was read from it yet
        response.fp = io.BufferedReader(_DeadlineRaw(sock, limit))
        return response

    return make


def _read_body(
    response: http.client.HTTPResponse,
    sock: socket.socket | None,
    limit: _Deadline,
    max_body: int,
) -> bytes:
    """The body, up to one byte past `max_body`, read within the request's deadline.

    Each read gets only the time left, so a peer that trickles a byte at a time cannot stretch
    the request past its deadline; one byte past the limit tells a body at the limit from a
    longer one.
    """
    chunks: list[bytes] = []
    size = 0
    # A response that ends the connection closes the socket as its last byte is read.
    while size <= max_body and not response.isclosed():
        if sock is not None:
            sock.settimeout(limit.timeout())  # raises UpstreamTimeout once the deadline passed
        chunk = response.read1(max_body + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size <= max_body and not response.isclosed():
        # read1 never marks a fully read Content-Length body done; read() reads nothing more
        # here, but ends the response so that the connection can carry the next request.
        response.read()
    return b"".join(chunks)


def _still_open(conn: http.client.HTTPConnection) -> bool:
    """False when an idle connection is readable: the server closed it or sent junk."""
    sock = conn.sock
    if sock is None:
        return False
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
