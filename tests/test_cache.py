"""cache.Cache: LRU, TTL boundary, bypass, stale-if-error, refreshNow, single-flight, stress."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable

import pytest

from cache import ENTRY_OVERHEAD, Cache
from parameters_secrets_extension.errors import (
    UpstreamConnectionError,
    UpstreamError,
    UpstreamTimeout,
)
from tests.conftest import wait_until

KEY = ("secretsmanager", "db-creds", None, None, None, None, True)
VALUE = b"s3cr3t-CACHED-value"
JOIN_TIMEOUT = 20.0


class FakeClock:
    """A clock the test moves by hand; thread-safe so the stress test can share one."""

    def __init__(self, now: float = 1000.0, step: float = 0.0) -> None:
        self.now = now
        self.step = step
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self.now += self.step
            return self.now


class Upstream:
    """A fetch source that counts its calls and answers from a script of values or errors."""

    def __init__(self, *answers: bytes | BaseException) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer


def const(value: bytes) -> Callable[[], bytes]:
    return lambda: value


def failing(exc: BaseException) -> Callable[[], bytes]:
    def fetch() -> bytes:
        raise exc

    return fetch


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class StaleCalls:
    """An on_stale hook that records its calls: (key, seconds expired, error)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Hashable, float, BaseException]] = []
        self._lock = threading.Lock()

    def __call__(self, key: Hashable, age: float, exc: BaseException) -> None:
        with self._lock:
            self.calls.append((key, age, exc))


TRANSIENT = [
    UpstreamError("internal", status=500, error_type="InternalServiceError"),
    UpstreamError("unavailable", status=503, error_type="ServiceUnavailable"),
    UpstreamError("slow down", status=400, error_type="ThrottlingException"),
    UpstreamTimeout("deadline exceeded"),
    UpstreamConnectionError("connection refused"),
]
PERMANENT = [
    UpstreamError("denied", status=400, error_type="AccessDeniedException"),
    UpstreamError("denied", status=403, error_type="AccessDeniedException"),
    UpstreamError("no such secret", status=400, error_type="ResourceNotFoundException"),
    UpstreamError("no such secret", status=404, error_type="ResourceNotFoundException"),
    ValueError("a bug, not an upstream failure"),
]


def expired_cache(clock: FakeClock, stale_if_error: float = 60.0) -> Cache:
    """A cache holding KEY -> VALUE stored at 1000 with ttl 10, so it expires at 1010."""
    cache = Cache(10, stale_if_error=stale_if_error, clock=clock)
    assert cache.get_or_fetch(KEY, 10, const(VALUE)) == (VALUE, "miss")
    clock.now = 1010.0
    return cache


# --- LRU, expiry, bypass -------------------------------------------------------------------


def test_hit_returns_cached_value_without_fetching(clock: FakeClock) -> None:
    cache = Cache(10, clock=clock)
    upstream = Upstream(b"v1", b"v2")
    assert cache.get_or_fetch(KEY, 10, upstream) == (b"v1", "miss")
    assert cache.get_or_fetch(KEY, 10, upstream) == (b"v1", "hit")
    assert upstream.calls == 1
    assert cache.info()[:9] == (1, 1, 0, 0, 1, 1, 10, 0, 0)


def test_bytes_bound_evicts_the_least_recent_and_never_stores_an_oversized_value(
    clock: FakeClock,
) -> None:
    size = 1000 + ENTRY_OVERHEAD  # what one 1000-byte value counts for
    cache = Cache(100, max_bytes=3 * size, clock=clock)
    for key in ("a", "b", "c"):
        cache.get_or_fetch(key, 10, lambda: b"x" * 1000)
    assert (cache.info().bytes, cache.info().size) == (3 * size, 3)
    cache.get_or_fetch("a", 10, Upstream())  # a hit: "b" is now the least recent
    cache.get_or_fetch("d", 10, lambda: b"y" * 1000)
    info = cache.info()
    assert (info.size, info.bytes, info.evictions, info.max_bytes) == (3, 3 * size, 1, 3 * size)
    assert cache.get_or_fetch("a", 10, Upstream())[1] == "hit"
    # Too large alone: returned, not stored, and the older value of its key is dropped.
    big = b"z" * (3 * size)
    assert cache.get_or_fetch("a", 10, lambda: big, refresh=True) == (big, "refresh")
    info = cache.info()
    assert (info.size, info.bytes) == (2, 2 * size)
    assert cache.get_or_fetch("a", 10, lambda: b"new")[1] == "miss"
    assert cache.info().bytes == 2 * size + 3 + ENTRY_OVERHEAD


def test_hit_refreshes_recency(clock: FakeClock) -> None:
    cache = Cache(2, clock=clock)
    cache.get_or_fetch("a", 10, const(b"A"))
    cache.get_or_fetch("b", 10, const(b"B"))
    assert cache.get_or_fetch("a", 10, const(b"unused")) == (b"A", "hit")
    cache.get_or_fetch("c", 10, const(b"C"))  # evicts b, the least recently used
    assert cache.get_or_fetch("a", 10, const(b"unused")) == (b"A", "hit")
    assert cache.get_or_fetch("c", 10, const(b"unused")) == (b"C", "hit")
    assert cache.get_or_fetch("b", 10, const(b"B2")) == (b"B2", "miss")
    assert cache.info().evictions == 2  # b, then a when b came back


def test_eviction_at_the_cap(clock: FakeClock) -> None:
    cache = Cache(3, clock=clock)
    for key in "abc":
        cache.get_or_fetch(key, 10, const(key.upper().encode()))
    assert cache.info().size == 3
    assert cache.info().evictions == 0
    cache.get_or_fetch("d", 10, const(b"D"))
    assert cache.info().size == 3
    assert cache.info().evictions == 1
    assert cache.get_or_fetch("a", 10, const(b"A2")) == (b"A2", "miss")
    assert cache.get_or_fetch("c", 10, const(b"unused")) == (b"C", "hit")


def test_expiry_is_exactly_at_the_ttl_boundary(clock: FakeClock) -> None:
    cache = Cache(10, clock=clock)
    cache.get_or_fetch(KEY, 10, const(b"v1"))  # stored at 1000: fresh while now < 1010
    clock.now = 1009.999
    assert cache.get_or_fetch(KEY, 10, const(b"v2")) == (b"v1", "hit")
    clock.now = 1010.0  # expiry == now counts as expired
    assert cache.get_or_fetch(KEY, 10, const(b"v2")) == (b"v2", "miss")
    clock.now = 1019.999
    assert cache.get_or_fetch(KEY, 10, const(b"v3")) == (b"v2", "hit")


@pytest.mark.parametrize(("max_size", "ttl"), [(0, 10), (10, 0), (10, -1), (0, 0)])
def test_disabled_caching_bypasses(clock: FakeClock, max_size: int, ttl: float) -> None:
    cache = Cache(max_size, clock=clock)
    upstream = Upstream(b"v1", b"v2", b"v3")
    assert cache.get_or_fetch(KEY, ttl, upstream) == (b"v1", "bypass")
    assert cache.get_or_fetch(KEY, ttl, upstream) == (b"v2", "bypass")
    assert cache.get_or_fetch(KEY, ttl, upstream, refresh=True) == (b"v3", "bypass")
    assert upstream.calls == 3
    assert cache.info()[:9] == (0, 0, 0, 0, 3, 0, max_size, 0, 0)


def test_ttl_zero_for_one_call_leaves_the_stored_entry(clock: FakeClock) -> None:
    cache = Cache(10, clock=clock)
    cache.get_or_fetch(KEY, 10, const(b"v1"))
    assert cache.get_or_fetch(KEY, 0, const(b"v2")) == (b"v2", "bypass")
    assert cache.get_or_fetch(KEY, 10, const(b"v3")) == (b"v1", "hit")


def test_an_error_is_not_cached(clock: FakeClock) -> None:
    cache = Cache(10, clock=clock)
    error = UpstreamError("internal", status=500, error_type="InternalServiceError")
    upstream = Upstream(error, b"v1")
    with pytest.raises(UpstreamError) as raised:
        cache.get_or_fetch(KEY, 10, upstream)
    assert raised.value is error
    assert cache.info().size == 0
    assert cache.get_or_fetch(KEY, 10, upstream) == (b"v1", "miss")
    assert upstream.calls == 2
    assert cache.info()[:9] == (0, 2, 0, 0, 2, 1, 10, 0, 0)


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="max_size"):
        Cache(-1)
    with pytest.raises(ValueError, match="stale_if_error"):
        Cache(1, stale_if_error=-1)


# --- stale-if-error ------------------------------------------------------------------------


@pytest.mark.parametrize("error", TRANSIENT, ids=repr)
def test_stale_served_inside_the_window(clock: FakeClock, error: Exception) -> None:
    cache = expired_cache(clock, stale_if_error=60)
    stale = StaleCalls()
    assert cache.get_or_fetch(KEY, 10, failing(error), on_stale=stale) == (
        VALUE,
        "stale",
    )  # at expiry
    clock.now = 1070.0
    assert cache.get_or_fetch(KEY, 10, failing(error), on_stale=stale) == (VALUE, "stale")
    clock.now = 1070.001
    with pytest.raises(type(error)) as raised:
        cache.get_or_fetch(KEY, 10, failing(error), on_stale=stale)
    assert raised.value is error
    assert stale.calls == [(KEY, 0.0, error), (KEY, 60.0, error)]
    info = cache.info()
    assert (info.stale, info.misses, info.hits, info.fetches) == (2, 4, 0, 4)


@pytest.mark.parametrize("error", PERMANENT, ids=repr)
def test_stale_never_served_on_a_permanent_error(clock: FakeClock, error: Exception) -> None:
    cache = expired_cache(clock)
    stale = StaleCalls()
    with pytest.raises(type(error)) as raised:
        cache.get_or_fetch(KEY, 10, failing(error), on_stale=stale)
    assert raised.value is error
    # The expired entry is dropped: a value AWS now denies is not served stale later either.
    assert cache.info().size == 0
    with pytest.raises(UpstreamTimeout):
        cache.get_or_fetch(KEY, 10, failing(UpstreamTimeout("deadline exceeded")), on_stale=stale)
    assert stale.calls == []
    assert cache.info().stale == 0


def test_stale_if_error_zero_turns_it_off(clock: FakeClock) -> None:
    cache = expired_cache(clock, stale_if_error=0)  # now == expiry: even that is not served
    with pytest.raises(UpstreamTimeout):
        cache.get_or_fetch(KEY, 10, failing(UpstreamTimeout("deadline exceeded")))
    assert cache.info().stale == 0


def test_stale_entry_is_kept_but_never_a_hit(clock: FakeClock) -> None:
    cache = expired_cache(clock)
    timeout = failing(UpstreamTimeout("deadline exceeded"))
    assert cache.get_or_fetch(KEY, 10, timeout) == (VALUE, "stale")
    clock.now = 1020.0
    assert cache.get_or_fetch(KEY, 10, timeout) == (VALUE, "stale")
    assert cache.info().size == 1
    clock.now = 1021.0  # stale_retry (1 s) after the last failure: fetched again
    assert cache.get_or_fetch(KEY, 10, const(b"v2")) == (b"v2", "miss")
    assert cache.get_or_fetch(KEY, 10, timeout) == (b"v2", "hit")
    assert cache.info().hits == 1


def test_after_a_failure_served_stale_readers_do_not_fetch_again_for_stale_retry(
    clock: FakeClock,
) -> None:
    cache = expired_cache(clock)
    upstream = Upstream(UpstreamTimeout("deadline exceeded"))
    heard: list[float] = []
    on_stale = lambda key, age, exc: heard.append(age)  # noqa: E731
    assert cache.get_or_fetch(KEY, 10, upstream, on_stale=on_stale) == (VALUE, "stale")
    for now in (1010.5, 1010.9):
        clock.now = now
        assert cache.get_or_fetch(KEY, 10, upstream, on_stale=on_stale) == (VALUE, "stale")
    assert upstream.calls == 1
    assert heard == pytest.approx([0.0, 0.5, 0.9])
    clock.now = 1011.0
    assert cache.get_or_fetch(KEY, 10, upstream) == (VALUE, "stale")
    assert upstream.calls == 2
    info = cache.info()
    assert (info.misses, info.stale, info.fetches) == (5, 4, 3)  # the first store included


def test_while_a_failing_key_is_fetched_again_readers_get_stale_at_once(
    clock: FakeClock,
) -> None:
    cache = expired_cache(clock)
    assert cache.get_or_fetch(KEY, 10, failing(UpstreamTimeout("x"))) == (VALUE, "stale")
    clock.now = 1011.0
    entered, release = threading.Event(), threading.Event()

    def slow() -> bytes:
        entered.set()
        release.wait(10)
        raise UpstreamTimeout("still down")

    leader = threading.Thread(target=cache.get_or_fetch, args=(KEY, 10, slow))
    leader.start()
    try:
        assert entered.wait(10)
        # Not a follower of the failing flight: served at once, with no fetch of its own.
        assert cache.get_or_fetch(KEY, 10, Upstream()) == (VALUE, "stale")
        assert cache.info().coalesced == 0
    finally:
        release.set()
        leader.join(10)


def test_no_stale_without_a_cached_entry(clock: FakeClock) -> None:
    cache = Cache(10, clock=clock)
    with pytest.raises(UpstreamTimeout):
        cache.get_or_fetch(KEY, 10, failing(UpstreamTimeout("deadline exceeded")))


def test_on_stale_hears_of_every_stale_serve_with_the_key_as_given(clock: FakeClock) -> None:
    cache = expired_cache(clock)
    stale = StaleCalls()
    throttled = UpstreamError("slow down", status=400, error_type="ThrottlingException")
    for now in (1010.0, 1015.0, 1020.0):
        clock.now = now
        assert cache.get_or_fetch(KEY, 10, failing(throttled), on_stale=stale) == (VALUE, "stale")
    assert stale.calls == [(KEY, 0.0, throttled), (KEY, 5.0, throttled), (KEY, 10.0, throttled)]
    # Without a hook a stale serve is as silent as the rest of the cache.
    assert cache.get_or_fetch(KEY, 10, failing(throttled)) == (VALUE, "stale")
    assert len(stale.calls) == 3


def test_custom_is_transient(clock: FakeClock) -> None:
    cache = Cache(10, is_transient=lambda exc: isinstance(exc, KeyError), clock=clock)
    cache.get_or_fetch(KEY, 10, const(VALUE))
    clock.now = 1010.0
    assert cache.get_or_fetch(KEY, 10, failing(KeyError("x"))) == (VALUE, "stale")


# --- refreshNow ----------------------------------------------------------------------------


def test_refresh_fetches_past_a_fresh_entry_and_stores(clock: FakeClock) -> None:
    cache = Cache(10, clock=clock)
    cache.get_or_fetch(KEY, 10, const(b"v1"))
    clock.now = 1005.0
    assert cache.get_or_fetch(KEY, 10, const(b"v2"), refresh=True) == (b"v2", "refresh")
    clock.now = 1014.999  # the refreshed entry expires 10 s after the refresh
    assert cache.get_or_fetch(KEY, 10, const(b"v3")) == (b"v2", "hit")
    assert cache.get_or_fetch("cold", 10, const(b"c1"), refresh=True) == (b"c1", "refresh")
    assert cache.get_or_fetch("cold", 10, const(b"c2")) == (b"c1", "hit")
    assert cache.info()[:9] == (2, 1, 0, 0, 3, 2, 10, 0, 0)


@pytest.mark.parametrize("error", [TRANSIENT[0], PERMANENT[1]], ids=repr)
def test_failed_refresh_leaves_the_old_entry_untouched(clock: FakeClock, error: Exception) -> None:
    cache = Cache(10, clock=clock)
    cache.get_or_fetch(KEY, 10, const(b"v1"))
    clock.now = 1005.0
    with pytest.raises(type(error)) as raised:
        cache.get_or_fetch(KEY, 10, failing(error), refresh=True)
    assert raised.value is error
    clock.now = 1009.999  # same value, same expiry as before
    assert cache.get_or_fetch(KEY, 10, const(b"v2")) == (b"v1", "hit")
    clock.now = 1010.0
    assert cache.get_or_fetch(KEY, 10, const(b"v2")) == (b"v2", "miss")


def test_failed_refresh_of_an_expired_entry_serves_no_stale_value(clock: FakeClock) -> None:
    cache = expired_cache(clock)
    with pytest.raises(UpstreamTimeout):
        cache.get_or_fetch(KEY, 10, failing(UpstreamTimeout("x")), refresh=True)
    # ...but the entry is still there for a plain request's stale-if-error.
    assert cache.get_or_fetch(KEY, 10, failing(UpstreamTimeout("x"))) == (VALUE, "stale")


def test_older_fetch_never_overwrites_a_newer_refresh(clock: FakeClock) -> None:
    cache = Cache(10, clock=clock)

    def slow_miss() -> bytes:
        # A refresh starts and lands while this miss's fetch is still running.
        assert cache.get_or_fetch(KEY, 10, const(b"new"), refresh=True) == (b"new", "refresh")
        return b"old"

    assert cache.get_or_fetch(KEY, 10, slow_miss) == (b"old", "miss")
    assert cache.get_or_fetch(KEY, 10, const(b"unused")) == (b"new", "hit")


# --- concurrency ---------------------------------------------------------------------------


def run_threads(count: int, target: Callable[[int], None]) -> None:
    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a caller is stuck"


def coalesced_fetch(
    cache: Cache, callers: int, answer: bytes | Exception
) -> tuple[Upstream, Callable[[], bytes]]:
    """A fetch that answers only once all callers have joined it (each counted as a miss)."""
    upstream = Upstream(answer)

    def fetch() -> bytes:
        wait_until(
            lambda: cache.info().misses == callers,
            JOIN_TIMEOUT,
            "every caller to join the fetch",
            interval=0.001,
        )
        return upstream()

    return upstream, fetch


def test_64_callers_of_a_cold_key_share_one_fetch() -> None:
    cache = Cache(10)
    upstream, fetch = coalesced_fetch(cache, 64, VALUE)
    barrier = threading.Barrier(64)
    results: list[tuple[bytes, str]] = []

    def caller(_: int) -> None:
        barrier.wait(JOIN_TIMEOUT)
        results.append(cache.get_or_fetch(KEY, 10, fetch))

    run_threads(64, caller)
    assert upstream.calls == 1
    assert results == [(VALUE, "miss")] * 64
    assert cache.info()[:9] == (0, 64, 0, 0, 1, 1, 10, 0, 63)


def test_a_failed_fetch_reaches_every_waiter_and_is_not_cached() -> None:
    cache = Cache(10)
    error = UpstreamError("internal", status=500, error_type="InternalServiceError")
    upstream, fetch = coalesced_fetch(cache, 16, error)
    barrier = threading.Barrier(16)
    raised: list[BaseException] = []

    def caller(_: int) -> None:
        barrier.wait(JOIN_TIMEOUT)
        try:
            cache.get_or_fetch(KEY, 10, fetch)
        except UpstreamError as exc:
            raised.append(exc)

    run_threads(16, caller)
    assert upstream.calls == 1
    assert len(raised) == 16
    assert all(exc is error for exc in raised)
    assert cache.get_or_fetch(KEY, 10, const(b"v2")) == (b"v2", "miss")
    assert cache.info().fetches == 2


def test_waiters_on_a_failed_refresh_of_an_expired_key_all_get_stale(clock: FakeClock) -> None:
    cache = expired_cache(clock)  # 1 miss so far
    stale = StaleCalls()
    upstream, fetch = coalesced_fetch(cache, 1 + 16, UpstreamTimeout("deadline exceeded"))
    barrier = threading.Barrier(16)
    results: list[tuple[bytes, str]] = []

    def caller(_: int) -> None:
        barrier.wait(JOIN_TIMEOUT)
        results.append(cache.get_or_fetch(KEY, 10, fetch, on_stale=stale))

    run_threads(16, caller)
    assert upstream.calls == 1
    assert results == [(VALUE, "stale")] * 16
    assert len(stale.calls) == 16
    assert cache.info().stale == 16


def test_a_fetch_that_uses_the_cache_for_another_key_does_not_deadlock() -> None:
    cache = Cache(10)
    results: list[tuple[bytes, str]] = []

    def outer() -> bytes:
        inner_value, _ = cache.get_or_fetch("inner", 10, const(b"I"))
        return b"O+" + inner_value

    def caller(i: int) -> None:
        results.append(cache.get_or_fetch("outer" if i == 0 else "inner", 10, outer))

    run_threads(1, caller)
    assert results == [(b"O+I", "miss")]
    run_threads(2, caller)
    assert sorted(results[1:]) == [(b"I", "hit"), (b"O+I", "hit")]


def test_a_fetch_that_asks_for_its_own_key_fails_instead_of_hanging() -> None:
    cache = Cache(10)

    def recursive() -> bytes:
        return cache.get_or_fetch(KEY, 10, recursive)[0]

    with pytest.raises(RuntimeError, match="its own key"):
        cache.get_or_fetch(KEY, 10, recursive)
    assert cache.get_or_fetch(KEY, 10, const(VALUE)) == (VALUE, "miss")


# --- stress --------------------------------------------------------------------------------

STRESS_THREADS = 8
STRESS_OPS = 50_000
STRESS_KEYS = 2_000
STRESS_SIZE = 1_000


def test_stress_cap_holds_and_counters_add_up() -> None:
    # Time advances 0.1 ms per clock read, so entries expire, go stale and fall out of the
    # stale window during the run; 5% of fetches fail, half transiently.
    clock = FakeClock(step=0.0001)
    cache = Cache(STRESS_SIZE, stale_if_error=0.5, clock=clock)
    fetch_lock = threading.Lock()
    fetch_calls = [0]
    tallies: list[Counter[str]] = [Counter() for _ in range(STRESS_THREADS)]
    oversize: list[int] = []

    def worker(index: int) -> None:
        rng = random.Random(index)
        tally = tallies[index]
        for op in range(STRESS_OPS):
            # 80% of requests go to 10% of the keys, so hits and evictions both happen.
            hot = rng.random() < 0.8
            key = rng.randrange(STRESS_KEYS // 10) if hot else rng.randrange(STRESS_KEYS)
            roll = rng.random()
            ttl = 0.0 if roll < 0.02 else rng.choice((0.05, 0.2, 1.0))
            kind = "bypass" if ttl == 0 else "refresh" if roll < 0.07 else "get"
            fail = rng.random()
            error: Exception | None = None
            if fail < 0.025:
                error = UpstreamTimeout("deadline exceeded")
            elif fail < 0.05:
                error = UpstreamError("gone", status=404, error_type="ResourceNotFoundException")

            def fetch(key: int = key, error: Exception | None = error) -> bytes:
                with fetch_lock:
                    fetch_calls[0] += 1
                if error is not None:
                    raise error
                return b"value-%d" % key

            tally[f"op-{kind}"] += 1
            try:
                value, outcome = cache.get_or_fetch(key, ttl, fetch, refresh=kind == "refresh")
            except (UpstreamTimeout, UpstreamError):
                tally[f"{kind}-error"] += 1
            else:
                tally[outcome] += 1
                if value != b"value-%d" % key:
                    tally["wrong-value"] += 1
            if op % 256 == 0 and cache.info().size > STRESS_SIZE:
                oversize.append(cache.info().size)

    started = time.monotonic()
    run_threads(STRESS_THREADS, worker)
    elapsed = time.monotonic() - started
    total: Counter[str] = sum(tallies, Counter())
    info = cache.info()
    print(f"stress: {STRESS_THREADS * STRESS_OPS} ops in {elapsed:.1f} s, {info}, {dict(total)}")

    assert oversize == []
    assert info.size <= STRESS_SIZE
    assert total["wrong-value"] == 0
    ops = total["op-get"] + total["op-refresh"] + total["op-bypass"]
    assert ops == STRESS_THREADS * STRESS_OPS
    # Every plain get is a hit or a miss; each miss ends as a value, a stale value or an error.
    assert info.hits == total["hit"]
    assert info.misses == total["miss"] + total["stale"] + total["get-error"]
    assert info.hits + info.misses == total["op-get"]
    assert info.stale == total["stale"]
    assert total["refresh"] + total["refresh-error"] == total["op-refresh"]
    assert total["bypass"] + total["bypass-error"] == total["op-bypass"]
    # Fetches: one per refresh and bypass, at most one per miss (concurrent misses share one).
    assert info.fetches == fetch_calls[0]
    fixed = total["op-refresh"] + total["op-bypass"]
    assert fixed <= info.fetches <= fixed + info.misses
    # Every path was exercised.
    for outcome in ("hit", "miss", "stale", "get-error", "refresh-error", "bypass-error"):
        assert total[outcome] > 0, outcome
    assert info.evictions > 0
