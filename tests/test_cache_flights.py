"""cache.Cache flights under a deadline, and flights of a call made for many keys that was
refused as a whole: what the process cannot show directly (which entries stay)."""

from __future__ import annotations

import threading
import time

import pytest

from cache import Cache
from parameters_secrets_extension.errors import UpstreamError, UpstreamTimeout

KEY = ("secretsmanager", "joined", None, None)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _refusal(*, of_many_keys: bool) -> UpstreamError:
    exc = UpstreamError("refused", status=400, error_type="ValidationException")
    exc.of_many_keys = of_many_keys
    return exc


def _lead_failing(cache: Cache, exc: BaseException, release: threading.Event) -> threading.Thread:
    """A leader whose fetch fails with `exc` once `release` is set; started, flight open."""
    entered = threading.Event()

    def fetch() -> bytes:
        entered.set()
        release.wait(10)
        raise exc

    def lead() -> None:
        with pytest.raises(type(exc)):
            cache.get_or_fetch(KEY, 10, fetch)

    thread = threading.Thread(target=lead)
    thread.start()
    assert entered.wait(10)
    return thread


def test_a_follower_waits_on_a_flight_no_longer_than_its_deadline() -> None:
    cache = Cache(10)
    release = threading.Event()
    leader = _lead_failing(cache, _refusal(of_many_keys=False), release)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        cache.get_or_fetch(KEY, 10, lambda: b"own", deadline=time.monotonic() + 0.3)
    assert time.monotonic() - started < 5.0  # the leader is held for 10 s
    release.set()
    leader.join(10)


def test_a_follower_of_a_call_refused_whole_fetches_for_itself() -> None:
    cache = Cache(10)
    release = threading.Event()
    leader = _lead_failing(cache, _refusal(of_many_keys=True), release)
    answers: list[tuple[bytes, str]] = []
    follower = threading.Thread(
        target=lambda: answers.append(cache.get_or_fetch(KEY, 10, lambda: b"own-VALUE"))
    )
    follower.start()
    time.sleep(0.2)  # the follower waits on the leader's flight
    release.set()
    leader.join(10)
    follower.join(10)
    assert answers == [(b"own-VALUE", "miss")]
    assert cache.info().coalesced == 1


def test_a_call_refused_whole_keeps_the_expired_entries_of_its_keys() -> None:
    clock = Clock()
    cache = Cache(10, clock=clock, stale_if_error=0)
    cache.get_or_fetch(KEY, 10, lambda: b"old-VALUE")
    clock.now += 11  # expired
    with pytest.raises(UpstreamError):
        cache.get_or_fetch(KEY, 10, lambda: (_ for _ in ()).throw(_refusal(of_many_keys=True)))
    assert cache.info().size == 1  # no answer about this key: its entry stays
    with pytest.raises(UpstreamError):
        cache.get_or_fetch(KEY, 10, lambda: (_ for _ in ()).throw(_refusal(of_many_keys=False)))
    assert cache.info().size == 0  # its own refusal: the expired entry goes, as before
