"""The local HTTP API's sockets, on socketserver threads: loopback only, keep-alive, one
write each. Which reply a request gets is routes.py's; its bytes are replies.py's.

GET /secretsmanager/get and /systemsmanager/parameters/get answer from the cache or AWS, as
do the batch routes (/secretsmanager/batch, /systemsmanager/parameters/batch),
/systemsmanager/parameters/get-by-path and the path form /secretsmanager/<id>; /ping
answers "healthy", /metrics (token required) the counters as JSON; errors are JSON
`{"__type", "message"}`. `POST /` with X-Amz-Target is the services' own protocol for SDKs
(sdk_protocol.py), its body read by request_head. Also: 503
TooManyConnectionsException past the connection cap, 414 and 431 for oversized requests and
400 BadRequestException for malformed ones (limits in request_head).
"""

from __future__ import annotations

import _socket
import contextlib
import io
import selectors
import socket
import socketserver
import sys
import threading
import time

from ..errors import (
    RequestError,
    TooManyConnections,
)
from ..logs import DEBUG, log
from ..lookups import Lookups
from . import request_head
from .replies import error_reply, render, render_head
from .routes import Api

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from typing import Any

    from .sdk_protocol import Client as SdkClient

# A client that goes away mid-request is routine, not an error worth a line.
CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)
# Closing with unread input makes the kernel send a reset, which can destroy the response
# before the client reads it; so after our last response we drain, within these bounds.
LINGER_SECONDS = 1.0
LINGER_BYTES = 1 << 20
# How far the kernel's receive timeout may outlast a request head's deadline before it is
# set again; within this, a read costs no extra system call.
TIMEOUT_SLACK = 0.05
# Up to this, a body is copied behind its head and sent with send(); a larger one (a cached
# path read can be megabytes) goes out with sendmsg() straight from the cached bytes, so a
# client that reads slowly or not at all holds no copy of it. One system call either way.
COPY_LIMIT = 64 << 10
# Past HeldReplies' bound, a reply is given up on once its client takes nothing for this long.
STALL_SECONDS = 1.0
INF = float("inf")
# The default bound of HeldReplies (the extension passes the cache's byte bound).
MAX_HELD_BYTES = 32 << 20


class Connections:
    """The open client connections, shared by the IPv4 and IPv6 listeners, up to a cap."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()

    def admit(self, sock: socket.socket) -> bool:
        with self._lock:
            if len(self._open) >= self._limit:
                return False
            self._open.add(sock)
            return True

    def release(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)

    def close_all(self) -> None:
        """Shut every connection down, which ends its handler thread's wait for a request."""
        with self._lock:
            socks = list(self._open)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class HeldReplies:
    """The large bodies that replies wait to finish sending to clients that read slowly or
    not at all, up to `limit` bytes in all.

    A body is counted once however many connections send it: a cached answer is shared, not
    copied. Past the limit a reply is given up on (the connection closed) as soon as its
    client takes nothing for STALL_SECONDS, rather than held for the idle timeout, so that
    clients that never read cannot pin much more than `limit` bytes of evicted or uncached
    answers, while one that reads still gets the whole of a reply larger than the limit.
    Bodies up to COPY_LIMIT are not counted: the connection cap bounds them.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._held: dict[int, list[Any]] = {}  # id(body) -> [body, connections sending it]
        self._bytes = 0

    def hold(self, body: bytes) -> bool:
        """Count `body` as held by one more connection; False when that would pass the limit."""
        with self._lock:
            entry = self._held.get(id(body))
            if entry is not None:
                entry[1] += 1
                return True
            if self._bytes + len(body) > self._limit:
                return False
            self._held[id(body)] = [body, 1]
            self._bytes += len(body)
            return True

    def release(self, body: bytes) -> None:
        with self._lock:
            entry = self._held[id(body)]
            entry[1] -= 1
            if entry[1] == 0:
                del self._held[id(body)]
                self._bytes -= len(body)


_BUSY = render(error_reply(TooManyConnections("too many connections")), close=True)


def _set_timeout(sock: socket.socket, option: int, seconds: float) -> None:
    """Set the kernel's SO_RCVTIMEO or SO_SNDTIMEO: a blocking call then fails with EAGAIN.

    Unlike socket.settimeout, this keeps the socket blocking, so each recv or send is one
    system call, with no poll before it. The value is a struct timeval of two native longs
    (64-bit Linux, as on Lambda); never zero, which the kernel takes for no timeout at all.
    """
    micros = max(1, int(seconds * 1_000_000))
    sec, usec = divmod(micros, 1_000_000)
    order = sys.byteorder
    sock.setsockopt(socket.SOL_SOCKET, option, sec.to_bytes(8, order) + usec.to_bytes(8, order))


class DeadlineReader(io.RawIOBase):
    """Socket reads that fail once `deadline` (monotonic) has passed.

    The kernel's receive timeout stays at the idle timeout while a request head comes in one
    piece, the usual case, so a read is one recv; a head that arrives in pieces has the
    timeout cut to what is left before each further read, so trickling cannot stretch it.
    """

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self._sock = sock
        self._timeout = timeout
        self.deadline = float("inf")
        _set_timeout(sock, socket.SO_RCVTIMEO, timeout)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self.deadline - time.monotonic()
        if not remaining <= self._timeout <= remaining + TIMEOUT_SLACK:
            if remaining <= 0:
                raise TimeoutError("request head not received in time")
            _set_timeout(self._sock, socket.SO_RCVTIMEO, remaining)
            self._timeout = remaining
        return self._sock.recv_into(buffer)


class Handler(socketserver.BaseRequestHandler):
    """One keep-alive connection: reads requests and writes each reply in a single send.

    From socketserver this takes the handler's life cycle (setup, handle and finish, run on
    the connection's own thread by LocalServer) and nothing else: not StreamRequestHandler's
    files, and nothing of http.server. Requests are parsed by request_head, with its own
    size limits answered in JSON (414, 431) and a 400 for a bare CR or NUL in the head, where
    http.server answers in HTML and parses headers with the email package; a reply is sent
    with one system call (one buffer, or a head and a large body by sendmsg), where
    BaseHTTPRequestHandler's idiom writes the head and then the body. Importing http.server
    (http.client, email, mimetypes, shutil) would also cost about a quarter of the
    extension's start-up.

    Timeouts are the kernel's (SO_RCVTIMEO, SO_SNDTIMEO) on a blocking socket rather than
    socket.settimeout, which would add a poll to every recv and send and a system call to
    every change of timeout; each request head must still arrive whole within the idle
    timeout (DeadlineReader), and each reply be taken by the client within it.
    """

    # StreamRequestHandler's switch, kept under its name: without it a keep-alive client
    # waits ~40 ms a request for the delayed ACK.
    disable_nagle_algorithm = True
    server: LocalServer
    request: socket.socket

    def setup(self) -> None:
        sock = self.request
        if self.disable_nagle_algorithm:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.idle_timeout = self.server.idle_timeout
        _set_timeout(sock, socket.SO_SNDTIMEO, self.idle_timeout)
        self.answered_and_closing = False
        self.close_connection = True
        # A per-recv timeout alone lets a client that trickles a byte now and then hold its
        # slot forever, so each request head must arrive whole within the idle timeout.
        self.deadline_reader = DeadlineReader(sock, self.idle_timeout)
        self.rfile = io.BufferedReader(self.deadline_reader)

    def finish(self) -> None:
        if self.answered_and_closing:
            _drain(self.request)

    def handle(self) -> None:
        self.handle_one_request()
        while not self.close_connection:
            self.handle_one_request()

    def handle_one_request(self) -> None:
        self.close_connection = True
        self.deadline_reader.deadline = time.monotonic() + self.idle_timeout
        try:
            request = request_head.read_request(self.rfile)
        except RequestError as exc:
            self._write(render(self.server.api.refuse(exc), close=True))
            return
        except OSError:  # idle timeout or reset: nothing to answer
            return
        if request is None:
            return
        timed = log.level <= DEBUG  # the clock only when the line will be written
        started = time.perf_counter() if timed else 0.0
        reply = self.server.api.respond(request)
        self.close_connection = not request.keep_alive
        head = render_head(reply, close=self.close_connection, http10=request.http10)
        self._write(head, b"" if request.method == "HEAD" else reply.body)
        if timed:
            elapsed = (time.perf_counter() - started) * 1000
            log.debug("%s %s %d %.2f ms", reply.route, reply.outcome, reply.status, elapsed)

    def _write(self, head: bytes, body: bytes = b"") -> None:
        sock = self.request
        try:
            started = time.monotonic()
            if len(body) <= COPY_LIMIT:
                data = head + body
                sent = sock.send(data)  # all of it, unless the client has stopped reading
                parts = [memoryview(data)]
            else:
                parts = [memoryview(head), memoryview(body)]
                # Without waiting: a client that does not read must not hold the body on
                # this thread before HeldReplies has counted it.
                try:
                    sent = sock.sendmsg(parts, (), socket.MSG_DONTWAIT)
                except BlockingIOError:
                    sent = 0
            if sent < len(head) + len(body):
                if len(parts) == 1:
                    _send_rest(sock, parts, sent, started + self.idle_timeout)
                else:
                    self._send_held(parts, sent, body, started + self.idle_timeout)
                _set_timeout(sock, socket.SO_SNDTIMEO, self.idle_timeout)
        except OSError:  # the client left or stopped reading; nothing more to say here
            self.close_connection = True
        else:
            self.answered_and_closing = self.close_connection

    def _send_held(self, parts: list[memoryview], sent: int, body: bytes, deadline: float) -> None:
        held = self.server.held
        if not held.hold(body):
            # Past the bound, a client must keep taking bytes to keep its reply.
            _send_rest(self.request, parts, sent, deadline, stall=STALL_SECONDS)
            return
        try:
            _send_rest(self.request, parts, sent, deadline)
        finally:
            held.release(body)


def _send_rest(
    sock: socket.socket,
    parts: list[memoryview],
    sent: int,
    deadline: float,
    *,
    stall: float = INF,
) -> None:
    """Send what is left of `parts` after the first `sent` bytes by `deadline`, however
    slowly the client reads (as long as each `stall` seconds takes some), without joining
    them."""
    while parts:
        while parts and sent >= len(parts[0]):
            sent -= len(parts[0])
            del parts[0]
        if not parts:
            return
        parts[0] = parts[0][sent:]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("reply not taken in time")
        _set_timeout(sock, socket.SO_SNDTIMEO, min(remaining, stall))
        sent = sock.sendmsg(parts)


class LocalServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """A loopback listener for one address family; the accept loop lives in Servers.

    From socketserver this takes TCPServer's accept (get_request) and closing of a finished
    connection (shutdown_request), and ThreadingMixIn's thread per connection. Not its
    serve_forever, which serves one listener: Servers' one thread selects over both.
    """

    # A connection's thread must never hold up the exit or Servers.shutdown: with it,
    # ThreadingMixIn neither keeps the threads nor joins them in server_close.
    daemon_threads = True

    def __init__(
        self,
        sock: socket.socket,
        api: Api,
        connections: Connections,
        idle_timeout: float,
        held: HeldReplies | None = None,
    ) -> None:
        """Serve on `sock`, already bound and listening (boot opens it before the imports)."""
        self.address_family = sock.family
        self.api = api
        self.connections = connections
        self.held = held if held is not None else HeldReplies(MAX_HELD_BYTES)
        self.idle_timeout = idle_timeout
        # Without bind_and_activate the base class makes a socket it never uses: swap it.
        super().__init__(sock.getsockname()[:2], Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.server_address = sock.getsockname()
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.connections.admit(request):
            _refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.connections.release(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connections.release(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Client disconnects are silent, the rest a debug line and its traceback (logs.py
        says why one holds no value), never on stderr."""
        exc = sys.exc_info()[1]
        if not isinstance(exc, CLIENT_GONE):
            log.debug("connection ended by %s", type(exc).__name__)
            if exc is not None:
                log.traceback(exc)


def _refuse(sock: socket.socket) -> None:
    """Answer 503 on the accept thread without ever blocking it, then close."""
    try:
        sock.setblocking(False)
        sock.send(_BUSY)
        sock.shutdown(socket.SHUT_WR)
        # Unread request bytes would turn the close into a reset that can destroy the 503.
        sock.recv(65536)
    except OSError:
        pass
    finally:
        sock.close()


def _drain(sock: socket.socket) -> None:
    """Half-close, then discard what the client still sends until it closes or limits hit."""
    deadline = time.monotonic() + LINGER_SECONDS
    received = 0
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        while received < LINGER_BYTES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sock.settimeout(remaining)
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += len(chunk)


def _accept(server: LocalServer) -> None:
    """Take one connection in the steps of BaseServer's private _handle_request_noblock."""
    try:
        request, client_address = server.get_request()
    except OSError:  # the client gave up between readiness and accept
        return
    if not server.verify_request(request, client_address):
        server.shutdown_request(request)
        return
    try:
        server.process_request(request, client_address)
    except Exception:
        server.handle_error(request, client_address)
        server.shutdown_request(request)


class Servers:
    """The listeners on one port and the one thread that accepts for all of them."""

    def __init__(self, servers: list[LocalServer], connections: Connections) -> None:
        self.port = servers[0].server_port
        self._servers = servers
        self._connections = connections
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, name="local-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            for server in self._servers:
                server.socket.setblocking(False)
                selector.register(server, selectors.EVENT_READ, server)
            selector.register(self._wake_reader, selectors.EVENT_READ, None)
            while True:
                for key, _ in selector.select():
                    if key.data is None:
                        return
                    _accept(key.data)

    def shutdown(self) -> None:
        """Stop accepting, close the listeners and every open connection; returns at once."""
        if self._stopped:
            return
        self._stopped = True
        self._wake_writer.send(b"\0")
        self._thread.join(timeout=5)
        for server in self._servers:
            server.server_close()
        self._connections.close_all()
        self._wake_reader.close()
        self._wake_writer.close()


def start(
    lookups: Lookups,
    *,
    sockets: list[_socket.socket],
    token: str | None,
    max_connections: int = 256,
    idle_timeout: float = 60.0,
    max_held_bytes: int = MAX_HELD_BYTES,
    client: SdkClient | None = None,
) -> Servers:
    """Serve on the listening `sockets` (boot.listen's, taken before registering).

    Replies larger than COPY_LIMIT that clients are slow to take hold at most
    `max_held_bytes` of bodies in all (HeldReplies).
    With no token, every secret and parameter request is refused with 401. With `client`
    (the upstream LazyClient), `POST /` also serves the AWS JSON protocol (sdk_protocol).
    """
    api = Api(lookups, token, client)
    connections = Connections(max_connections)
    held = HeldReplies(max_held_bytes)
    servers = [
        LocalServer(socket.socket(fileno=raw.detach()), api, connections, idle_timeout, held)
        for raw in sockets
    ]
    if len(servers) == 1:
        log.debug("not listening on [::1]: no IPv6 loopback")
    return Servers(servers, connections)
