"""What runs before the heavy imports: stop signals, the local port, registration with Lambda.

Lambda starts the function's runtime only once every extension has registered, so all the
extension does before `register` delays the function's own init. This module therefore
uses nothing but modules that are built in or already loaded by the interpreter: it takes
the stop signals, binds and listens on the port (from then on the kernel's backlog holds
any connection until the server accepts it), registers, and only then imports `extension`
(the wiring) and hands it what it needs from here: at_stop() and fail(). Nothing imports
this module back: the dependencies point one way, as in awslambdaric's __main__ ->
bootstrap.run.
Not `os` (under -S the interpreter has not loaded it; about a quarter of its start) nor
`__future__`: `posix` is built in, and annotations naming what only type checking imports
are quoted. tests/test_import_order.py checks what the built executable imports.
"""

import _socket
import _thread
import gc
import posix
import sys

from ..version import NAME, VERSION
from . import lifecycle
from .lifecycle import DEFAULT_PORT, PORT_VARIABLE, http_port

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    import signal as _signal
    from collections.abc import Callable

    # The wiring's entry point: (api, name, sockets, at_stop=..., fail=...) -> exit code.
    Run = Callable[..., int]
else:
    import _signal  # `signal` itself imports enum, about 2 ms before registering

BACKLOG = 512  # connections the kernel holds for us before the server accepts them
# Set when the small layer's native launcher or the main() of the --with-python layer's own
# interpreter has listened and sent `register` before Python started
# (bundled_python/register_early.c: why, and when it does not): "<register> <127.0.0.1>[
# <::1>]", the sockets' file descriptors. Read and removed here.
EARLY_SOCKETS = "PARAMETERS_SECRETS_EXTENSION_EARLY_SOCKETS"
STOP_SIGNALS = {_signal.SIGTERM, _signal.SIGINT}
USAGE = f"""\
usage: {NAME} [--help | --version]

An AWS Lambda extension that serves Secrets Manager secrets and SSM parameters on
http://localhost:$PARAMETERS_SECRETS_EXTENSION_HTTP_PORT (default {DEFAULT_PORT}) from a cache.
Lambda starts it from the layer's extensions/ directory; without AWS_LAMBDA_RUNTIME_API it
serves until SIGTERM or SIGINT. Settings come from environment variables (see README.md).

options:
  --help     show this message and exit
  --version  show the version, and the Python and OpenSSL it runs with, and exit
"""

_stop_hooks: "list[Callable[[str], None]]" = []


def main(run: "Run | None" = None) -> int:
    """Start the extension as Lambda would; return the process exit code.

    `run` is the wiring's entry point; by default extension.run, imported after registering.
    """
    # Blocked signals stay pending instead of being lost, and every thread started later
    # inherits the mask, so only the waiter below ever takes one: no check-then-wait race.
    _signal.pthread_sigmask(_signal.SIG_BLOCK, STOP_SIGNALS)
    _thread.start_new_thread(_stop_on_signal, ())
    if len(sys.argv) > 1:
        return _command_line(sys.argv[1:])
    # Lambda insists that Lambda-Extension-Name equals the executable's file name.
    name = sys.argv[0].rpartition("/")[2]
    # The default when unset or invalid; config warns about an invalid value after registering.
    port = http_port(getenv(PORT_VARIABLE)) or DEFAULT_PORT
    runtime_api = getenv("AWS_LAMBDA_RUNTIME_API") or None
    api = lifecycle.ExtensionsApi(runtime_api) if runtime_api else None
    # The request already sent, with the listeners, before Python started; else none.
    handed = _handed_over() if api is not None else None
    try:
        sockets = handed[1] if handed is not None else listen(port)
    except OSError as exc:
        message = f"cannot listen on port {port}: {exc.strerror or exc}"
        return _fail_early(api, name, "Extension.PortUnavailable", message)
    if api is not None:
        snapstart = getenv("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start"
        try:
            if handed is not None:
                api.registered(handed[0])  # its answer read and checked as register()'s
            else:
                api.register(name, ["INVOKE", "SHUTDOWN"] if snapstart else ["SHUTDOWN"])
        except (OSError, RuntimeError, ValueError) as exc:
            return _fail_early(api, name, "Extension.Crash", f"cannot register: {exc}")
    # Nothing imported below is garbage, so collecting while importing is wasted work
    # (about 4% of the import's instructions); frozen, the modules' objects are never
    # traversed by a collection again.
    gc.disable()
    if run is None:
        import extension  # noqa: PLC0415 -- the point of this module: only after registering

        run = extension.run
    gc.freeze()
    gc.enable()
    return run(api, name, sockets, at_stop=at_stop, fail=fail)


def getenv(name: str) -> str:
    """The variable's value as os.environ would give it, or "" when unset."""
    value = posix.environ.get(name.encode(), b"")  # bytes, undecoded
    return value.decode("utf-8", "surrogateescape")  # os.fsdecode's codec, built in


def _handed_over() -> "tuple[_socket.socket, list[_socket.socket]] | None":
    """The register socket and the listeners named by EARLY_SOCKETS, adopted; None when
    unset or not sockets of ours. Asked only with AWS_LAMBDA_RUNTIME_API set: the launcher and
    the layer's interpreter set the variable only then (and remove any other value)."""
    raw = posix.environ.pop(EARLY_SOCKETS.encode(), b"")
    if not raw:
        return None
    posix.unsetenv(EARLY_SOCKETS)
    adopted: list[_socket.socket] = []
    try:
        # fileno= alone: the socket's family and type are asked of the kernel, which refuses
        # a descriptor that is not a socket.
        adopted.extend(_socket.socket(fileno=int(fd)) for fd in raw.split())
        ours = len(adopted) in (2, 3)
    except (OSError, ValueError):
        ours = False
    if not ours:
        for sock in adopted:  # a function's own variable: leave its descriptors alone
            sock.detach()
        return None
    return adopted[0], adopted[1:]


def at_stop(hook: "Callable[[str], None]") -> None:
    """Call `hook("SIGTERM")` (or SIGINT) on a stop signal, just before the process exits."""
    _stop_hooks.append(hook)


def _stop_on_signal() -> None:
    signum = _signal.sigwait(STOP_SIGNALS)
    reason = "SIGTERM" if signum == _signal.SIGTERM else "SIGINT"
    for hook in _stop_hooks:
        try:  # noqa: SIM105 -- contextlib costs 5 ms to import before registering
            hook(reason)
        except Exception:  # noqa: S110 -- nothing may keep the process from exiting 0
            pass
    # At once, whatever the main thread is doing: the listeners, connections and upstream
    # calls in flight hold nothing that must outlive the process.
    posix._exit(0)


def _command_line(args: list[str]) -> int:
    if args in (["--help"], ["-h"]):
        sys.stdout.write(USAGE)
        return 0
    if args == ["--version"]:
        sys.stdout.write(f"{NAME} {VERSION}\n{_runtime_versions()}")
        return 0
    sys.stderr.write(f"{NAME}: unexpected arguments {' '.join(args)!r}\n\n{USAGE}")
    return 2


def _runtime_versions() -> str:
    """The interpreter and the OpenSSL this process runs with (the layer's own or the runtime's)."""
    # _ssl is the C module that ssl wraps: its version string without ssl's own imports
    # (enum, re, socket, ...); only on this path, never before registering.
    import _ssl  # noqa: PLC0415

    python = sys.version.split()[0]
    return f"Python {python} ({sys.executable})\n{_ssl.OPENSSL_VERSION}\n"


def listen(port: int) -> list[_socket.socket]:
    """Listening sockets on 127.0.0.1:port and, where IPv6 loopback exists, on [::1]:port.

    An OSError from 127.0.0.1 (such as the port being taken) propagates; ::1 is best effort.
    """
    sockets = [_listener(_socket.AF_INET, "127.0.0.1", port)]
    try:  # noqa: SIM105 -- contextlib costs 5 ms to import before registering
        sockets.append(_listener(_socket.AF_INET6, "::1", sockets[0].getsockname()[1]))
    except OSError:
        pass  # no IPv6 loopback in this sandbox: IPv4 alone serves "localhost"
    return sockets


def _listener(family: int, host: str, port: int) -> _socket.socket:
    sock = _socket.socket(family, _socket.SOCK_STREAM)
    try:
        # As http.server does: a restarted server may bind while old connections linger.
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def _fail_early(
    api: lifecycle.ExtensionsApi | None, name: str, error_type: str, message: str
) -> int:
    """fail() before the configuration is read: log at info, in Lambda's log format."""
    from ..logs import setup  # noqa: PLC0415 -- only on this path, before extension's imports

    log_format = getenv("AWS_LAMBDA_LOG_FORMAT").strip().lower()
    setup("info", json_format=log_format == "json")
    return fail(api, name, error_type, message)


def fail(api: lifecycle.ExtensionsApi | None, name: str, error_type: str, message: str) -> int:
    """Log a fatal failure and report it to Lambda (registering first if need be); return 1."""
    from ..logs import log  # noqa: PLC0415 -- fail() may run before extension's imports

    log.error(message)
    if api is not None:
        try:
            if not api.identifier:
                api.register(name, ["SHUTDOWN"])
            api.report_error(error_type, message)
        except (OSError, RuntimeError, ValueError) as exc:
            log.error("could not report %s to the Extensions API: %s", error_type, exc)
    return 1
