"""The wiring, once boot has listened and registered: config, cache, server, prefetch, `next`.

`python extension.py` (or the layer's executable) starts the whole thing through boot, which
hands `run` what it needs from before registering (at_stop, fail): like awslambdaric's
bootstrap.run, this module never imports boot back.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

from cache import Cache
from parameters_secrets_extension import config
from parameters_secrets_extension.aws.lazy_client import LazyClient
from parameters_secrets_extension.errors import ConfigError
from parameters_secrets_extension.lambda_api.lifecycle import ExtensionsApi
from parameters_secrets_extension.local_api.server import start
from parameters_secrets_extension.logs import DEBUG, log, setup
from parameters_secrets_extension.lookups import Lookups
from parameters_secrets_extension.services import UNSET_TIMEOUT_SECONDS
from parameters_secrets_extension.version import NAME, VERSION

# Measured (BENCHMARKS.md, round 5): pinned to one CPU, the first answer came sooner in
# every run, by 4-53 ms when it is a miss and 15-34 ms when the function does not call the
# extension yet; on all CPUs the runs went both ways (from 62 ms sooner to 21 ms later).
WARM_UP_NICENESS = 10

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    import _socket
    from collections.abc import Callable

    # boot.at_stop and boot.fail, passed in.
    AtStop = Callable[[Callable[[str], None]], None]
    Fail = Callable[[ExtensionsApi | None, str, str, str], int]


def run(
    api: ExtensionsApi | None,
    name: str,
    sockets: list[_socket.socket],
    *,
    at_stop: AtStop,
    fail: Fail,
) -> int:
    """Serve on boot's listening `sockets` until SHUTDOWN (or, standalone, a stop signal).

    `at_stop(hook)` calls the hook on a stop signal; `fail(api, name, error_type, message)`
    logs a fatal failure, reports it to Lambda and returns the exit code.
    """
    try:
        settings = config.load(os.environ)
    except ConfigError as exc:
        setup("info", json_format=False)
        return fail(api, name, "Extension.InvalidConfiguration", str(exc))
    setup(settings.log_level, json_format=settings.log_json)
    for warning in settings.warnings:
        log.warning("%s", warning)
    at_stop(lambda reason: log.info("stopping on %s", reason))
    try:
        return _serve(settings, api, sockets)
    except Exception as exc:  # a bug: tell Lambda rather than vanish without a word
        log.traceback(exc)
        return fail(api, name, "Extension.Crash", f"unexpected {type(exc).__name__}")


def _serve(
    settings: config.Config, api: ExtensionsApi | None, sockets: list[_socket.socket]
) -> int:
    if log.level <= DEBUG:  # describe() is work a disabled debug line must not cost
        log.debug("configuration: %s", settings.describe())
    client = LazyClient(settings)
    lookups = Lookups(
        client,
        Cache(
            settings.effective_cache_size,
            max_bytes=settings.cache_max_mb << 20,
            stale_if_error=settings.stale_if_error_seconds,
            refresh_ahead=settings.refresh_ahead_percent / 100,
            refresh_deadline=_refresh_deadline(settings),
        ),
        secrets_manager_ttl=settings.secrets_manager_ttl,
        ssm_ttl=settings.ssm_ttl,
        cache_until_invoked=settings.snapstart,
        max_path_parameters=settings.max_path_parameters,
        negative_ttl=settings.negative_ttl_seconds,
    )
    # Before serving (boot's sockets listen already): once a request can be answered, the
    # line is out, whatever signal follows.
    log.info("%s %s listening on %s", NAME, VERSION, settings.summary())
    servers = start(
        lookups,
        sockets=sockets,
        token=settings.auth_token,
        max_connections=settings.max_client_connections,
        idle_timeout=settings.idle_timeout_seconds,
        # Replies that clients do not read may pin as many bytes again as the cache holds.
        max_held_bytes=settings.cache_max_mb << 20,
        client=client,
    )
    emf = None
    on_invoke = None
    if settings.metrics == "emf":
        # Imported here: only a start with EMF metrics on needs it.
        from parameters_secrets_extension.emf_writer import EmfWriter  # noqa: PLC0415

        emf = EmfWriter(lookups.counters, settings.function_name, settings.metrics_interval_seconds)
        if settings.snapstart and api is not None:
            # Counted from the first invoke: what init counted before the snapshot would
            # otherwise be reported again by every sandbox restored from it.
            on_invoke = emf.start_from_now
        else:
            emf.start()
    code = 1
    try:
        # The warm-up, started once `next` has left, while we wait on it (the GIL
        # released) and Lambda starts the runtime: started before, it holds the GIL each time
        # the main thread gives it up in a system call, and `next` (the end of Lambda's init)
        # leaves up to a switch interval (5 ms) later per call.
        warm = threading.Thread(target=_warm_up, args=(client,), name="warm-up", daemon=True)
        # Under SnapStart nothing may be fetched before the first invoke: the snapshot
        # would carry the values and their TTLs into every restored sandbox.
        if settings.prefetch and not settings.snapstart:
            _prefetch_before_next(lookups, settings.prefetch, settings.prefetch_timeout_ms)
        if api is None:
            warm.start()
            while True:  # standalone: boot's signal waiter ends the process
                threading.Event().wait()
        code = _wait_for_shutdown(api, lookups, warm.start, on_invoke)
        return code
    finally:
        if emf is not None:  # the last line at SHUTDOWN
            emf.stop(final=code == 0)
        servers.shutdown()
        client.close()


def _warm_up(client: LazyClient) -> None:
    """client.warm() at niceness WARM_UP_NICENESS: its work (the AWS client's imports, and
    with https the trust store) only spares a later miss, and where it shares one CPU with
    the runtime's init, as in functions under 1769 MB, that init must not wait for it. A
    request never waits for it either: the warm-up stops at the first one that wants the
    client (LazyClient.warm), which then does the rest at its own priority.

    Linux sets niceness per thread, and this one starts no other: nothing else runs niced.
    """
    with contextlib.suppress(OSError):  # refused (a seccomp filter): at the usual priority
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WARM_UP_NICENESS)
    client.warm()


def _refresh_deadline(settings: config.Config) -> float:
    """How long an entry may be served past expiry while its refresh-ahead runs: as long as
    the slower service's upstream call may take, retries included."""
    timeouts = (settings.secrets_manager_timeout_ms, settings.ssm_timeout_ms)
    return max(ms / 1000 if ms else UNSET_TIMEOUT_SECONDS for ms in timeouts)


def _prefetch_before_next(
    lookups: Lookups, entries: tuple[tuple[str, ...], ...], budget_ms: int
) -> None:
    """Run the prefetch for at most `budget_ms` before `next`: Lambda's init phase is limited
    (10 s by default).

    On every kind of init: started after `next` instead, on an on-demand init, it measured
    no sooner first answer (the first request waits on the prefetch's call either way) and a
    later one on a single CPU, where its work shares the CPU with the runtime's init; and a
    provisioned-concurrency sandbox is frozen after `next`, so its first invoke, maybe hours
    later, must find the values cached.
    """
    prefetch = threading.Thread(
        target=lookups.prefetch, args=(entries,), name="prefetch", daemon=True
    )
    prefetch.start()
    prefetch.join(budget_ms / 1000)
    if prefetch.is_alive():
        # The fetches go on in the background; a request for an item still in flight
        # waits for that fetch instead of starting another.
        log.warning("prefetch not finished after %d ms; going on without waiting", budget_ms)


def _wait_for_shutdown(
    api: ExtensionsApi,
    lookups: Lookups,
    on_first_sent: Callable[[], None],
    on_first_invoke: Callable[[], None] | None = None,
) -> int:
    on_sent: Callable[[], None] | None = on_first_sent
    while True:
        try:
            event = api.next_event(on_sent)
            on_sent = None
        except (OSError, RuntimeError) as exc:
            log.error("lost the Extensions API: %s", exc)
            return 1
        if event.get("eventType") == "SHUTDOWN":
            log.info("shutting down: %s", event.get("shutdownReason", "unknown"))
            return 0
        lookups.start_caching()
        if on_first_invoke is not None:
            on_first_invoke()
            on_first_invoke = None


if __name__ == "__main__":  # the program's entry point, not an import: boot then this run
    from parameters_secrets_extension.lambda_api import boot

    sys.exit(boot.main(run))
