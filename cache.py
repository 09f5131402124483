"""Thread-safe LRU cache with per-call TTL, single-flight fetches and bounded stale-if-error.

Outcomes of `get_or_fetch`, and how the counters of `info()` move:
- "hit": a fresh entry (fresh while now < expiry; expired from now >= expiry). Counts a hit.
  Also an expired entry while its refresh-ahead is in flight, until that refresh's deadline.
- "miss": no fresh entry; the value comes from a fetch this call ran or joined. Counts a miss;
  concurrent misses for one key share one fetch, so fetches can be fewer than misses.
- "stale": a miss whose fetch failed transiently while the expired entry was within
  `stale_if_error` seconds past its expiry (now <= expiry + stale_if_error; 0: never).
  Counts a miss and a stale serve. The entry stays, expired, so later failures in the window
  serve it too; it is never a hit. The caller's `on_stale` hears of each stale serve.
  After such a failure the key is not fetched again for `stale_retry` seconds, nor waited
  for while a fetch of it is in flight: misses are served stale at once, so an outage costs
  one fetch per key every `stale_retry` seconds rather than one (with its retries) per read.
- "refresh": refresh=True fetched regardless of any entry. Counts a fetch only.
- "bypass": caching is off for this call (max_size 0 or ttl <= 0). Counts a fetch only: no
  lookup happened, so it is neither hit nor miss.
Refresh-ahead (`refresh_ahead`, a fraction of the TTL; 0 turns it off): a hit on an entry in
the last `refresh_ahead` of its life starts one background fetch of its key, on a daemon
thread; the hit itself never waits. It is an ordinary flight, so a miss of the key joins it
rather than fetching again. While it is in flight the entry is served even once expired, but
never past `refresh_deadline` seconds after the refresh began (the upstream call's own
deadline); after that, readers join the flight as misses do. At most `max_refreshes` run at
once: a hit beyond that is served without starting one. A failed refresh leaves the entry as
it was. Counted: each refresh started, and each call that waited on another's fetch
(coalesced).

Bytes: besides `max_size` entries, the values held never pass `max_bytes` in all (each
entry counted as its value's length plus ENTRY_OVERHEAD for the key and bookkeeping); the
least recently used go first. A value larger than `max_bytes` alone is returned to its
callers but never stored, and it replaces (drops) the key's older entry.

Errors are stored only when the caller's `remember(error)` gives them a lifetime (a
negative entry, "negative" outcome): until it ends, a read of the key raises that very error
again without fetching, counted as a negative hit. It replaces the key's value, shares the
bounds (its size is its message's length plus ENTRY_OVERHEAD), is never served stale, never
refreshed ahead and never renewed; refresh=True fetches regardless and replaces it. A
refresh-ahead's failure and an error of a call for many keys (errors.of_another_call) are
never remembered. A failed miss that serves no stale value drops its expired entry, so a
value that AWS has since denied or deleted is never served stale later.

Renewal: a leader (a miss, or a refresh-ahead) given `renew` first offers it the key's held
value; if `renew(value)` says the value is still current, that same value is stored again
with a new TTL and no fetch runs. It runs inside the flight, so concurrent misses still
share one upstream exchange.

Keys are opaque here: the cache never decodes or logs one, so it knows nothing of how its
callers lay them out.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, namedtuple
from collections.abc import Callable, Hashable

from parameters_secrets_extension import errors

INF = float("inf")
# What an entry costs beyond its value's bytes: the key tuple and its strings, the entry
# object and the OrderedDict's node. Generous, so many small entries are not undercounted.
ENTRY_OVERHEAD = 512

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    # Told of a stale serve: the key, seconds since the entry expired, the fetch's error.
    StaleHook = Callable[[Hashable, float, BaseException], None]


class CacheInfo(
    namedtuple(
        "CacheInfo",
        "hits misses stale evictions fetches size max_size refreshes_ahead coalesced"
        " bytes max_bytes negative_hits",
    )
):
    """Counters since creation and the current size."""

    __slots__ = ()
    hits: int
    misses: int
    stale: int
    evictions: int
    fetches: int
    size: int
    max_size: int
    refreshes_ahead: int
    coalesced: int
    bytes: int
    max_bytes: int
    negative_hits: int


class _Entry:
    __slots__ = ("error", "expiry", "failure", "refresh_at", "retry_at", "seq", "size", "value")

    def __init__(
        self,
        value: bytes,
        expiry: float,
        refresh_at: float,
        seq: int,
        failure: BaseException | None = None,
    ) -> None:
        self.value = value
        # A remembered error (a negative entry, whose value is empty): raised on a hit.
        self.failure = failure
        self.size = len(value) + ENTRY_OVERHEAD + (len(str(failure)) if failure else 0)
        # Set once a failed fetch served this entry stale: the failure, and until when
        # misses are served stale without fetching again.
        self.error: BaseException | None = None
        self.retry_at = -INF
        self.expiry = expiry
        self.refresh_at = refresh_at  # from then on a hit starts a refresh-ahead
        self.seq = seq


class _Flight:
    """One fetch in progress; followers wait on `done`, then read `value` or `error`."""

    __slots__ = ("done", "error", "owner", "seq", "serve_until", "value")
    value: bytes

    def __init__(self, seq: int, serve_until: float = -INF) -> None:
        self.seq = seq
        self.owner = threading.get_ident()
        self.done = threading.Event()
        self.error: BaseException | None = None
        # A refresh-ahead's deadline: until then its key's expired entry is still served.
        self.serve_until = serve_until


class Cache:
    """LRU of at most max_size entries and max_bytes; the lock guards bookkeeping only."""

    def __init__(
        self,
        max_size: int,
        *,
        max_bytes: int = 32 << 20,
        stale_if_error: float = 300.0,
        is_transient: Callable[[BaseException], bool] = errors.is_transient,
        clock: Callable[[], float] = time.monotonic,
        refresh_ahead: float = 0.0,
        refresh_deadline: float = 30.0,
        max_refreshes: int = 8,
        stale_retry: float = 1.0,
    ) -> None:
        bounds = (max_size, max_bytes, stale_if_error, refresh_deadline, max_refreshes, stale_retry)
        if min(bounds) < 0:
            raise ValueError(
                "max_size, max_bytes, stale_if_error, refresh_deadline, max_refreshes and"
                " stale_retry must be >= 0"
            )
        if not 0 <= refresh_ahead < 1:
            raise ValueError("refresh_ahead must be a fraction of the TTL, from 0 up to 1")
        self._max_size = max_size
        self._max_bytes = max_bytes
        self._bytes = 0  # the sizes of the entries in _data
        self._ahead = refresh_ahead
        self._ahead_deadline = refresh_deadline
        self._max_refreshes = max_refreshes
        self._refreshing = 0
        self._stale_window = stale_if_error
        self._stale_retry = stale_retry
        self._is_transient = is_transient
        self._clock = clock
        self._lock = threading.Lock()
        self._data: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._flights: dict[Hashable, _Flight] = {}
        # Every fetch takes a sequence number; a result older than the entry it would replace
        # is returned to its callers but not stored.
        self._seq = 0
        self._hits = self._misses = self._stale = self._evictions = self._fetches = 0
        self._refreshes_ahead = self._coalesced = self._negative_hits = 0

    def get_or_fetch(
        self,
        key: Hashable,
        ttl: float,
        fetch: Callable[[], bytes],
        *,
        refresh: bool = False,
        on_stale: StaleHook | None = None,
        deadline: float | None = None,
        renew: Callable[[bytes], bool] | None = None,
        remember: Callable[[BaseException], float] | None = None,
    ) -> tuple[bytes, str]:
        """Return (value, outcome); see the module docstring. A failed fetch's error propagates.

        `renew(held value)` and `remember(error)` are described in the module docstring;
        neither is asked while the lock is held.

        `on_stale(key, seconds expired, error)` is called for each stale serve, outside the
        lock. A fetch may use the cache for other keys; asking for its own key raises
        RuntimeError. Waiting on another caller's fetch ends at `deadline` (a time.monotonic
        value) with UpstreamTimeout; a fetch that failed for its leader's own reasons (an
        error marked errors.of_another_call) is not the follower's: it fetches for itself.
        """
        if ttl <= 0 or self._max_size == 0 or self._max_bytes == 0:
            with self._lock:
                self._fetches += 1
            return fetch(), "bypass"
        if refresh:
            return self._refresh(key, ttl, fetch)
        failed = self._data.get(key)  # unlocked, only to keep the check below off the hits
        if failed is not None and failed.error is not None:
            stale = self._stale_while_failing(key)
            if stale is not None:
                if on_stale is not None:
                    on_stale(key, stale[1], stale[2])
                return stale[0], "stale"
        with self._lock:
            entry = self._data.get(key)
            flight = self._flights.get(key)
            if entry is not None:
                now = self._clock()
                if entry.failure is not None:
                    if now < entry.expiry:
                        self._data.move_to_end(key)
                        self._negative_hits += 1
                        # With a fresh traceback each time: raised again and again, one
                        # error object would otherwise grow a longer one with every raise.
                        raise entry.failure.with_traceback(None)
                elif now < entry.expiry or (flight is not None and now < flight.serve_until):
                    self._data.move_to_end(key)
                    self._hits += 1
                    if now >= entry.refresh_at and flight is None:
                        self._start_ahead(key, ttl, fetch, now, renew)
                    return entry.value, "hit"
            if flight is not None and flight.owner == threading.get_ident():
                raise RuntimeError("a fetch asked the cache for its own key")
            self._misses += 1
            leader = flight is None
            if flight is None:
                self._fetches += 1
                self._seq += 1
                flight = self._flights[key] = _Flight(self._seq)
            else:
                self._coalesced += 1
        if leader:
            return self._lead(key, ttl, fetch, flight, on_stale, renew=renew, remember=remember)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not flight.done.wait(left):
            timeout = errors.UpstreamTimeout("the deadline passed waiting on another request")
            return self._stale_or_raise(key, timeout, on_stale)
        if flight.error is not None:
            if errors.of_another_call(flight.error):
                return self.get_or_fetch(
                    key,
                    ttl,
                    fetch,
                    on_stale=on_stale,
                    deadline=deadline,
                    renew=renew,
                    remember=remember,
                )
            return self._stale_or_raise(key, flight.error, on_stale)
        return flight.value, "miss"

    def _stale_while_failing(self, key: Hashable) -> tuple[bytes, float, BaseException] | None:
        """(value, seconds expired, error) of an entry to serve stale without fetching: one
        whose last fetch failed under `stale_retry` seconds ago, or is being fetched again."""
        with self._lock:
            entry = self._data.get(key)
            if entry is None or entry.error is None:
                return None
            now = self._clock()
            if now < entry.expiry or now > entry.expiry + self._stale_window:
                return None
            if key not in self._flights and now >= entry.retry_at:
                return None
            self._data.move_to_end(key)
            self._misses += 1
            self._stale += 1
            return entry.value, now - entry.expiry, entry.error

    def _lead(
        self,
        key: Hashable,
        ttl: float,
        fetch: Callable[[], bytes],
        flight: _Flight,
        on_stale: StaleHook | None,
        *,
        renew: Callable[[bytes], bool] | None = None,
        remember: Callable[[BaseException], float] | None = None,
    ) -> tuple[bytes, str]:
        try:
            value = self._renew_or_fetch(key, fetch, renew)
        except BaseException as exc:
            # Followers must always be woken, whatever the fetch raised.
            flight.error = exc
            remembered = 0.0
            if remember is not None and not errors.of_another_call(exc):
                remembered = remember(exc)
            self._land(key, flight, ttl, remembered)
            return self._stale_or_raise(key, exc, on_stale)
        flight.value = value
        self._land(key, flight, ttl)
        return value, "miss"

    def _renew_or_fetch(
        self, key: Hashable, fetch: Callable[[], bytes], renew: Callable[[bytes], bool] | None
    ) -> bytes:
        """The held value of `key` again if `renew` finds it still current, else fetch()."""
        if renew is not None:
            with self._lock:
                entry = self._data.get(key)
                held = None if entry is None or entry.failure is not None else entry.value
            if held is not None and renew(held):
                return held
        return fetch()

    def _start_ahead(
        self,
        key: Hashable,
        ttl: float,
        fetch: Callable[[], bytes],
        now: float,
        renew: Callable[[bytes], bool] | None,
    ) -> None:
        """Start a refresh-ahead of `key` unless the cap is reached; the caller holds the lock."""
        if self._refreshing >= self._max_refreshes:
            return
        self._refreshing += 1
        self._refreshes_ahead += 1
        self._fetches += 1
        self._seq += 1
        flight = self._flights[key] = _Flight(self._seq, now + self._ahead_deadline)
        flight.owner = 0  # not the hit's thread, which may well ask for the key again
        thread = threading.Thread(
            target=self._refresh_ahead,
            args=(key, ttl, fetch, flight, renew),
            name="refresh-ahead",
            daemon=True,
        )
        try:
            thread.start()
        except RuntimeError:  # no thread to be had: the hit is served all the same
            del self._flights[key]
            self._refreshing -= 1
            flight.error = RuntimeError("refresh-ahead not started")
            flight.done.set()

    def _refresh_ahead(
        self,
        key: Hashable,
        ttl: float,
        fetch: Callable[[], bytes],
        flight: _Flight,
        renew: Callable[[bytes], bool] | None,
    ) -> None:
        # Runs on its own thread: whatever the fetch raised ends here (its caller logged an
        # upstream failure already), leaving the entry as it was for the misses to judge.
        flight.owner = threading.get_ident()
        try:
            try:
                flight.value = self._renew_or_fetch(key, fetch, renew)
            except BaseException as exc:
                flight.error = exc
            self._land(key, flight, ttl)
        finally:
            with self._lock:
                self._refreshing -= 1

    def _land(self, key: Hashable, flight: _Flight, ttl: float, remembered: float = 0) -> None:
        """End a flight: store its value if it succeeded (its error for `remembered`
        seconds, if that is above 0, if it failed), then wake the followers."""
        try:
            with self._lock:
                if self._flights.get(key) is flight:
                    del self._flights[key]
                if flight.error is None:
                    self._store(key, flight.value, ttl, flight.seq)
                elif remembered > 0:
                    self._store(key, b"", remembered, flight.seq, flight.error)
        finally:
            flight.done.set()  # even if the clock raised: followers must never hang

    def _refresh(self, key: Hashable, ttl: float, fetch: Callable[[], bytes]) -> tuple[bytes, str]:
        # An explicit refreshNow wants AWS's current answer: on failure, no stale value is
        # served and the old entry stays exactly as it was.
        with self._lock:
            self._fetches += 1
            self._seq += 1
            seq = self._seq
        value = fetch()
        with self._lock:
            self._store(key, value, ttl, seq)
        return value, "refresh"

    def _store(
        self,
        key: Hashable,
        value: bytes,
        ttl: float,
        seq: int,
        failure: BaseException | None = None,
    ) -> None:
        """Insert as most recent and evict beyond the caps; the caller holds the lock."""
        old = self._data.get(key)
        if old is not None and old.seq > seq:
            return
        now = self._clock()
        refresh_at = now + ttl - ttl * self._ahead if self._ahead and failure is None else INF
        entry = _Entry(value, now + ttl, refresh_at, seq, failure)
        if old is not None:
            self._drop(key)
        if entry.size > self._max_bytes:
            return  # too large to keep at all; the older value of the key is gone too
        self._data[key] = entry
        self._bytes += entry.size
        while len(self._data) > self._max_size or self._bytes > self._max_bytes:
            self._bytes -= self._data.popitem(last=False)[1].size
            self._evictions += 1

    def _drop(self, key: Hashable) -> None:
        """Remove the entry of `key`; the caller holds the lock."""
        self._bytes -= self._data.pop(key).size

    def _stale_or_raise(
        self, key: Hashable, exc: BaseException, on_stale: StaleHook | None
    ) -> tuple[bytes, str]:
        with self._lock:
            now = self._clock()
            entry = self._data.get(key)
            if entry is None:
                raise exc
            # A negative entry has no value to serve stale.
            window = self._stale_window if self._is_transient(exc) and not entry.failure else 0
            if window == 0 or now > entry.expiry + window:
                # An error of a call for many keys says nothing of this one's entry.
                if now >= entry.expiry and not errors.of_another_call(exc):
                    self._drop(key)
                raise exc
            self._data.move_to_end(key)
            self._stale += 1
            entry.error, entry.retry_at = exc, now + self._stale_retry
            value, age = entry.value, now - entry.expiry
        if on_stale is not None:
            on_stale(key, age, exc)
        return value, "stale"

    def info(self) -> CacheInfo:
        """Counters and size, read under the lock so they are consistent with each other."""
        with self._lock:
            return CacheInfo(
                self._hits,
                self._misses,
                self._stale,
                self._evictions,
                self._fetches,
                len(self._data),
                self._max_size,
                self._refreshes_ahead,
                self._coalesced,
                self._bytes,
                self._max_bytes,
                self._negative_hits,
            )
