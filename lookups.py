"""The glue between the local API and AWS: cache keys, per-service TTLs, JSON bytes, prefetch,
and the log lines of upstream failures and of stale serves."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence

import services
from cache import Cache
from errors import THROTTLING_TYPES, ExtensionError, RequestError, error_type_of
from logs import log
from metrics import Metrics
from services import BY_NAME, SECRETS_MANAGER, SSM, Service

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from typing import Protocol

    class Upstream(Protocol):
        """What Lookups needs from aws_client.AwsClient: the two calls, in the Go SDK's shapes."""

        def get_secret_value(
            self,
            secret_id: str,
            *,
            version_id: str | None = None,
            version_stage: str | None = None,
        ) -> Mapping[str, object]: ...

        def get_parameter(
            self,
            name: str,
            *,
            version: int | None = None,
            label: str | None = None,
            with_decryption: bool = False,
        ) -> Mapping[str, object]: ...


# The caller's mistakes, logged at WARN; every other upstream failure is an ERROR.
_CLIENT_MISTAKES = frozenset(
    {
        "ResourceNotFoundException",
        "ParameterNotFound",
        "ParameterVersionNotFound",
        "ValidationException",
        "InvalidParameterException",
        "InvalidRequestException",
        "InvalidKeyId",
    }
)
REPEAT_INTERVAL_SECONDS = 60.0
MAX_TRACKED_FAILURES = 256
# Across all keys: beyond this many lines per interval, failures are only counted.
MAX_LINES_PER_INTERVAL = 100
_MAX_LOGGED_ID = 512
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _printable(ident: str) -> str:
    """An id as one safe log token: control characters escaped, and at most _MAX_LOGGED_ID."""
    text = _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", ident)
    return text if len(text) <= _MAX_LOGGED_ID else text[:_MAX_LOGGED_ID] + "..."


def _is_client_mistake(exc: ExtensionError) -> bool:
    if isinstance(exc, RequestError):
        return True
    if exc.status >= 500 or exc.error_type in THROTTLING_TYPES:
        return False
    return exc.error_type in _CLIENT_MISTAKES or exc.error_type.endswith("NotFoundException")


class FailureLog:
    """Logs upstream failures: the first per (key, error type) at once, repeats in summary.

    A repeat within `interval` seconds of the last line for its key is only counted; the
    next failure after that logs one line with the count. Names and ARNs are logged, never
    a message, value, token or key. Both tables are bounded: `max_keys` keys (least recently
    failed forgotten first) and `max_lines` lines per interval across all keys.
    """

    def __init__(
        self,
        *,
        interval: float = REPEAT_INTERVAL_SECONDS,
        max_keys: int = MAX_TRACKED_FAILURES,
        max_lines: int = MAX_LINES_PER_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = interval
        self._max_keys = max_keys
        self._max_lines = max_lines
        self._clock = clock
        self._lock = threading.Lock()
        # (key, error type) -> [time of its last line, repeats counted since]
        self._seen: OrderedDict[tuple[Hashable, str], list[float]] = OrderedDict()
        self._window_start = clock()
        self._lines = 0
        self._dropped = 0

    def record(
        self, key: tuple[object, ...], exc: ExtensionError, attempts: int | None, seconds: float
    ) -> None:
        """Log (or count) one failed fetch of cache key `key` that took `seconds`.

        `attempts` is logged when known: aws_client sets it on the errors it raises.
        """
        repeats, dropped = self._admit((key, exc.error_type))
        if dropped:
            log.warning(
                "%d upstream failure lines were not logged in the last %.0f s (too many)",
                dropped,
                self._interval,
            )
        if repeats is None:
            return
        name, ident, *selectors = key
        service = BY_NAME[str(name)]
        details = "".join(
            f" {selector}={_printable(str(value))}"
            for selector, value in zip(service.selectors, selectors, strict=True)
            if value not in (None, False)
        )
        write = log.warning if _is_client_mistake(exc) else log.error
        write(
            "upstream %s failed: id=%s%s type=%s status=%d%s duration_ms=%.0f%s",
            service.operation,
            _printable(str(ident)),
            details,
            exc.error_type,
            exc.status,
            "" if attempts is None else f" attempts={attempts}",
            seconds * 1000,
            f" (and {repeats} more like it in the last {self._interval:.0f} s)" if repeats else "",
        )

    def _admit(self, item: tuple[Hashable, str]) -> tuple[int | None, int]:
        """(repeats to report, or None to stay silent; lines dropped in the last window)."""
        with self._lock:
            now = self._clock()
            dropped = 0
            if now - self._window_start >= self._interval:
                dropped, self._dropped = self._dropped, 0
                self._window_start, self._lines = now, 0
            entry = self._seen.get(item)
            if entry is not None:
                self._seen.move_to_end(item)
                if now - entry[0] < self._interval:
                    entry[1] += 1
                    return None, dropped
            if self._lines >= self._max_lines:
                self._dropped += 1
                return None, dropped
            repeats = 0 if entry is None else int(entry[1])
            self._seen[item] = [now, 0]
            self._seen.move_to_end(item)
            while len(self._seen) > self._max_keys:
                self._seen.popitem(last=False)
            self._lines += 1
            return repeats, dropped


def _stale_served(key: Hashable, age: float, exc: BaseException) -> None:
    """One warning per stale serve, naming the key's service and id, never the value."""
    name, ident = key[:2] if isinstance(key, tuple) else (key, "")
    log.warning(
        "serving %s %s stale, expired %.0f s ago: fetch failed: %s",
        name,
        _printable(str(ident)),
        age,
        error_type_of(exc),
    )


def _encode(result: Mapping[str, object]) -> bytes:
    # Compact and ASCII-only, like Go's encoder minus its HTML escaping: the bytes are
    # cached as they are sent, so a hit costs no serialization at all.
    return json.dumps(result, separators=(",", ":")).encode("ascii")


class Lookups:
    """Answers secret and parameter requests as response-ready JSON bytes, through the cache."""

    def __init__(
        self,
        client: Upstream,
        cache: Cache,
        *,
        secrets_manager_ttl: float,
        ssm_ttl: float,
        cache_until_invoked: bool = False,
        failures: FailureLog | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """With `cache_until_invoked` (SnapStart), nothing is cached until start_caching()."""
        self._client = client
        self._cache = cache
        self._ttl = {SECRETS_MANAGER: secrets_manager_ttl, SSM: ssm_ttl}
        # Service name -> what one prefetch entry of it fetches.
        self._prefetchers: dict[str, Callable[[str], object]] = {
            SECRETS_MANAGER.name: self.secret,
            SSM.name: self.parameter,
        }
        self._caching = not cache_until_invoked
        self._failures = failures if failures is not None else FailureLog()
        self.metrics = metrics if metrics is not None else Metrics()

    def start_caching(self) -> None:
        """Begin caching (under SnapStart, called on the first invoke: nothing from the
        snapshot's init may be served after a restore)."""
        self._caching = True

    def counters(self) -> dict[str, object]:
        """The cache's counters and the upstream and local ones, as GET /metrics answers."""
        return self.metrics.counters(self._cache.info())

    def _get(
        self,
        service: Service,
        key: tuple[object, ...],
        call: Callable[[], Mapping[str, object]],
        refresh: bool,
    ) -> tuple[bytes, str]:
        def fetch() -> bytes:
            started = time.monotonic()
            try:
                value = _encode(call())
            except ExtensionError as exc:
                # The cache shares one fetch among concurrent misses: one record per fetch.
                self.metrics.upstream_call(exc.error_type)
                self._failures.record(key, exc, exc.attempts, time.monotonic() - started)
                raise
            except Exception as exc:
                self.metrics.upstream_call(error_type_of(exc))
                raise
            self.metrics.upstream_call(None)
            return value

        ttl = self._ttl[service] if self._caching else 0
        return self._cache.get_or_fetch(key, ttl, fetch, refresh=refresh, on_stale=_stale_served)

    def secret(
        self,
        secret_id: str,
        version_id: str | None = None,
        version_stage: str | None = None,
        *,
        refresh: bool = False,
    ) -> tuple[bytes, str]:
        """GetSecretValue as JSON bytes, and the cache outcome (hit, miss, stale, ...)."""
        key = (SECRETS_MANAGER.name, secret_id, version_id, version_stage)

        def call() -> Mapping[str, object]:
            return self._client.get_secret_value(
                secret_id, version_id=version_id, version_stage=version_stage
            )

        return self._get(SECRETS_MANAGER, key, call, refresh)

    def parameter(
        self,
        name: str,
        version: int | None = None,
        label: str | None = None,
        with_decryption: bool = False,
        *,
        refresh: bool = False,
    ) -> tuple[bytes, str]:
        """GetParameter as JSON bytes, and the cache outcome (hit, miss, stale, ...)."""
        key = (SSM.name, name, version, label, with_decryption)

        def call() -> Mapping[str, object]:
            return self._client.get_parameter(
                name, version=version, label=label, with_decryption=with_decryption
            )

        return self._get(SSM, key, call, refresh)

    def prefetch(self, entries: Sequence[tuple[str, str]]) -> None:
        """Warm the cache for ("secretsmanager", id) / ("ssm", name) entries, all in parallel.

        Each entry warms the key a request without optional query parameters uses (for
        SSM that is withDecryption=false). A failure is logged and skipped. Nothing is
        fetched while caching is deferred or for a service whose TTL is 0.
        """
        if not self._caching:
            log.info("prefetch skipped: caching starts at the first invoke (SnapStart)")
            return
        wanted = [(name, ident) for name, ident in entries if self._ttl[services.named(name)]]
        threads = [
            threading.Thread(target=self._prefetch_one, args=entry, name="prefetch", daemon=True)
            for entry in wanted
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _prefetch_one(self, service: str, ident: str) -> None:
        try:
            self._prefetchers[service](ident)
        except Exception as exc:  # one bad entry must not stop the others or the start
            log.warning("prefetch of %s %s failed: %s", service, ident, error_type_of(exc))
        else:
            log.debug("prefetched %s %s", service, ident)
