"""cache.Cache's two caller hooks: `renew` (keep the held value for another TTL without a
fetch) and `remember` (keep an error for a while as a negative entry)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from types import TracebackType

import pytest

from cache import ENTRY_OVERHEAD, Cache
from parameters_secrets_extension.errors import UpstreamError
from tests.conftest import wait_until
from tests.test_cache import (
    KEY,
    VALUE,
    FakeClock,
    Upstream,
    const,
    failing,
    run_threads,
)

NOT_FOUND = UpstreamError("no such secret", status=400, error_type="ResourceNotFoundException")
OUTAGE = UpstreamError("internal", status=500, error_type="InternalServiceError")


def remember_for(seconds: float) -> object:
    return lambda exc: seconds


class Renewals:
    """A renew hook answering `answer`, recording each held value it was offered."""

    def __init__(self, answer: bool, *, gate: threading.Event | None = None) -> None:
        self.answer = answer
        self.offered: list[bytes] = []
        self._gate = gate
        self._lock = threading.Lock()

    def __call__(self, held: bytes) -> bool:
        with self._lock:
            self.offered.append(held)
        if self._gate is not None:
            assert self._gate.wait(20)
        return self.answer


def test_a_renewed_entry_keeps_its_bytes_for_a_new_ttl_without_a_fetch() -> None:
    clock = FakeClock()
    cache = Cache(10, clock=clock)
    cache.get_or_fetch(KEY, 10, const(VALUE))
    clock.now = 1010.0
    renew, upstream = Renewals(True), Upstream(b"other")
    assert cache.get_or_fetch(KEY, 10, upstream, renew=renew) == (VALUE, "miss")
    assert (renew.offered, upstream.calls) == ([VALUE], 0)
    clock.now = 1019.9  # the new TTL counts from the renewal
    assert cache.get_or_fetch(KEY, 10, upstream, renew=renew) == (VALUE, "hit")


def test_a_refused_renewal_fetches_and_no_key_held_is_never_offered() -> None:
    clock = FakeClock()
    cache = Cache(10, clock=clock)
    renew = Renewals(False)
    assert cache.get_or_fetch(KEY, 10, const(b"v1"), renew=renew) == (b"v1", "miss")
    assert renew.offered == []  # nothing held: nothing to renew
    clock.now = 1010.0
    assert cache.get_or_fetch(KEY, 10, const(b"v2"), renew=renew) == (b"v2", "miss")
    assert renew.offered == [b"v1"]


def test_concurrent_misses_share_one_renewal() -> None:
    clock = FakeClock()
    cache = Cache(10, clock=clock)
    cache.get_or_fetch(KEY, 10, const(VALUE))
    clock.now = 1010.0
    gate = threading.Event()
    renew, upstream = Renewals(True, gate=gate), Upstream(b"other")
    results: list[tuple[bytes, str]] = []
    started = threading.Barrier(16)

    def caller(_: int) -> None:
        started.wait(20)
        results.append(cache.get_or_fetch(KEY, 10, upstream, renew=renew))

    opener = threading.Timer(0.3, gate.set)
    opener.start()
    run_threads(16, caller)
    opener.join()
    assert (len(renew.offered), upstream.calls) == (1, 0)
    assert results == [(VALUE, "miss")] * 16


def test_a_refresh_ahead_renews_too() -> None:
    clock = FakeClock()
    cache = Cache(10, clock=clock, refresh_ahead=0.5, refresh_deadline=0)
    cache.get_or_fetch(KEY, 10, const(VALUE))
    clock.now = 1006.0  # in the last half of its life
    renew, upstream = Renewals(True), Upstream(b"other")
    assert cache.get_or_fetch(KEY, 10, upstream, renew=renew) == (VALUE, "hit")
    wait_until(lambda: renew.offered == [VALUE], 10, "the refresh-ahead's renewal")
    # Past the first expiry (1010), before the renewed entry's own refresh-ahead (1011). With
    # refresh_deadline 0 an expired entry is a hit only if the renewal stored it again (a
    # read before it landed joins the flight, a miss).
    clock.now = 1010.5
    wait_until(lambda: cache.get_or_fetch(KEY, 10, upstream) == (VALUE, "hit"), 10, "renewed")
    assert upstream.calls == 0


def test_refresh_never_renews() -> None:
    cache = Cache(10)
    cache.get_or_fetch(KEY, 10, const(b"v1"))
    renew = Renewals(True)
    assert cache.get_or_fetch(KEY, 10, const(b"v2"), refresh=True, renew=renew) == (
        b"v2",
        "refresh",
    )
    assert renew.offered == []


def test_a_remembered_error_is_raised_again_as_the_same_object_until_it_ends() -> None:
    clock = FakeClock()
    cache = Cache(10, clock=clock)
    upstream = Upstream(NOT_FOUND, b"created")
    with pytest.raises(UpstreamError) as first:
        cache.get_or_fetch(KEY, 10, upstream, remember=remember_for(5))  # type: ignore[arg-type]
    for _ in range(3):
        with pytest.raises(UpstreamError) as again:
            cache.get_or_fetch(KEY, 10, upstream, remember=remember_for(5))  # type: ignore[arg-type]
        assert again.value is first.value
    assert (upstream.calls, cache.info().negative_hits) == (1, 3)
    # Its traceback does not grow with each raise.
    assert again.value.__traceback__ is not None
    depth = len(list(_frames(again.value.__traceback__)))
    assert depth < 10
    clock.now = 1005.0  # the 5 s are over
    assert cache.get_or_fetch(KEY, 10, upstream) == (b"created", "miss")


def _frames(tb: TracebackType | None) -> Iterator[TracebackType]:
    while tb is not None:
        yield tb
        tb = tb.tb_next


def test_an_error_given_no_lifetime_is_not_remembered() -> None:
    cache = Cache(10)
    upstream = Upstream(OUTAGE, VALUE)
    with pytest.raises(UpstreamError):
        cache.get_or_fetch(KEY, 10, upstream, remember=remember_for(0))  # type: ignore[arg-type]
    assert cache.get_or_fetch(KEY, 10, upstream) == (VALUE, "miss")


def test_refresh_bypasses_a_remembered_error_and_replaces_it() -> None:
    cache = Cache(10)
    with pytest.raises(UpstreamError):
        cache.get_or_fetch(KEY, 10, failing(NOT_FOUND), remember=remember_for(5))  # type: ignore[arg-type]
    assert cache.get_or_fetch(KEY, 10, const(VALUE), refresh=True) == (VALUE, "refresh")
    assert cache.get_or_fetch(KEY, 10, failing(NOT_FOUND)) == (VALUE, "hit")


def test_a_refusal_of_a_call_for_many_keys_is_not_remembered() -> None:
    cache = Cache(10)
    refusal = UpstreamError("batch refused", status=400, error_type="AccessDeniedException")
    refusal.of_many_keys = True
    asked: list[BaseException] = []

    def remember(exc: BaseException) -> float:
        asked.append(exc)
        return 5

    with pytest.raises(UpstreamError):
        cache.get_or_fetch(KEY, 10, failing(refusal), remember=remember)
    assert asked == []
    assert cache.get_or_fetch(KEY, 10, const(VALUE)) == (VALUE, "miss")


def test_a_failed_refresh_ahead_is_not_remembered() -> None:
    clock = FakeClock()
    cache = Cache(10, clock=clock, refresh_ahead=0.5)
    cache.get_or_fetch(KEY, 10, const(VALUE))
    clock.now = 1006.0
    done = threading.Event()

    def fetch() -> bytes:
        done.set()
        raise NOT_FOUND

    assert cache.get_or_fetch(KEY, 10, fetch, remember=remember_for(60)) == (VALUE, "hit")  # type: ignore[arg-type]
    assert done.wait(10)
    wait_until(lambda: cache.info().fetches == 2, 10, "the refresh-ahead to land")
    assert cache.get_or_fetch(KEY, 10, const(b"x")) == (VALUE, "hit")


def test_a_negative_entry_counts_against_the_byte_bound_and_is_never_served_stale() -> None:
    clock = FakeClock()
    cache = Cache(10, clock=clock, stale_if_error=600)
    with pytest.raises(UpstreamError):
        cache.get_or_fetch(KEY, 10, failing(NOT_FOUND), remember=remember_for(5))  # type: ignore[arg-type]
    info = cache.info()
    assert (info.size, info.bytes) == (1, ENTRY_OVERHEAD + len(str(NOT_FOUND)))
    clock.now = 1006.0  # expired; an outage now must not serve its empty value
    with pytest.raises(UpstreamError) as caught:
        cache.get_or_fetch(KEY, 10, failing(OUTAGE))
    assert caught.value is OUTAGE
    assert cache.info().stale == 0
