"""Refresh-ahead: in the cache with a hand-moved clock, then the real process under steady reads.

A hit in the last part of an entry's life starts one background fetch; readers keep the
current value while it runs (even past expiry, never past its deadline); a failure leaves
the entry alone; a miss for the key joins it instead of fetching again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from cache import Cache
from parameters_secrets_extension.aws.operations import AwsClient
from parameters_secrets_extension.errors import UpstreamError
from parameters_secrets_extension.lookups import Lookups
from tests.conftest import LambdaCredentials, Moto, wait_until
from tests.fault_proxy import FaultProxy
from tests.hardening_support import secret_path, start_standalone

KEY = ("secretsmanager", "db-creds", None, None)
OTHER = ("secretsmanager", "other", None, None)
OLD, NEW = b"old-CACHED-value", b"new-CACHED-value"
TTL = 10.0  # with refresh_ahead 0.1 an entry stored at 1000 refreshes from 1009, expires 1010
WAIT = 10.0


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class GatedFetch:
    """A fetch that blocks until released, counting its calls; answers `value` or raises."""

    def __init__(self, value: bytes | BaseException = NEW) -> None:
        self.value = value
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> bytes:
        self.calls += 1
        self.entered.set()
        if not self.release.wait(WAIT):
            raise AssertionError("the gated fetch was never released")
        if isinstance(self.value, BaseException):
            raise self.value
        return self.value


def const(value: bytes) -> Callable[[], bytes]:
    return lambda: value


def must_not_fetch() -> bytes:
    raise AssertionError("this read must not fetch")


def warm(clock: FakeClock, **options: float) -> Cache:
    """A cache holding KEY -> OLD, stored at 1000 with TTL 10 and refresh-ahead at 10 %."""
    settings: dict[str, float] = {"refresh_ahead": 0.1, "refresh_deadline": 5.0}
    settings.update(options)
    cache = Cache(
        10,
        clock=clock,
        refresh_ahead=settings["refresh_ahead"],
        refresh_deadline=settings["refresh_deadline"],
        max_refreshes=int(settings.get("max_refreshes", 8)),
    )
    assert cache.get_or_fetch(KEY, TTL, const(OLD)) == (OLD, "miss")
    return cache


def landed(cache: Cache, value: bytes) -> Callable[[], bool]:
    return lambda: cache.get_or_fetch(KEY, TTL, must_not_fetch) == (value, "hit")


def no_refresh_running() -> bool:
    return not any(thread.name == "refresh-ahead" for thread in threading.enumerate())


def test_a_hit_in_the_window_starts_one_refresh_and_is_served_at_once() -> None:
    clock = FakeClock()
    cache = warm(clock)
    clock.now = 1008.9  # before the window: a plain hit
    assert cache.get_or_fetch(KEY, TTL, must_not_fetch) == (OLD, "hit")
    assert cache.info().refreshes_ahead == 0

    gate = GatedFetch()
    clock.now = 1009.0
    assert cache.get_or_fetch(KEY, TTL, gate) == (OLD, "hit")  # answered while it fetches
    assert gate.entered.wait(WAIT)
    for now in (1009.2, 1009.9):
        clock.now = now
        assert cache.get_or_fetch(KEY, TTL, gate) == (OLD, "hit")
    assert [t.daemon for t in threading.enumerate() if t.name == "refresh-ahead"] == [True]
    gate.release.set()
    wait_until(landed(cache, NEW), WAIT, "the refreshed value")
    assert gate.calls == 1
    info = cache.info()
    assert (info.refreshes_ahead, info.fetches, info.misses) == (1, 2, 1)

    clock.now = 1010.5  # the new entry lives from 1009.9 to 1019.9: fresh, outside the window
    assert cache.get_or_fetch(KEY, TTL, must_not_fetch) == (NEW, "hit")


def test_the_current_value_is_served_past_expiry_while_the_refresh_runs() -> None:
    clock = FakeClock()
    cache = warm(clock)
    gate = GatedFetch()
    clock.now = 1009.5
    assert cache.get_or_fetch(KEY, TTL, gate) == (OLD, "hit")
    assert gate.entered.wait(WAIT)
    clock.now = 1013.0  # expired at 1010; the refresh's deadline is 1009.5 + 5
    assert cache.get_or_fetch(KEY, TTL, must_not_fetch) == (OLD, "hit")
    assert cache.info().misses == 1 and cache.info().coalesced == 0
    gate.release.set()
    wait_until(landed(cache, NEW), WAIT, "the refreshed value")


def test_past_the_refresh_deadline_readers_wait_for_it_like_a_miss() -> None:
    clock = FakeClock()
    cache = warm(clock)
    gate = GatedFetch()
    clock.now = 1009.0
    cache.get_or_fetch(KEY, TTL, gate)
    assert gate.entered.wait(WAIT)
    clock.now = 1014.0  # exactly the deadline: no longer served
    answers: list[tuple[bytes, str]] = []
    reader = threading.Thread(
        target=lambda: answers.append(cache.get_or_fetch(KEY, TTL, must_not_fetch))
    )
    reader.start()
    wait_until(lambda: cache.info().coalesced == 1, WAIT, "the reader to join the refresh")
    assert answers == []  # it waits on the refresh instead of getting the expired value
    gate.release.set()
    reader.join(WAIT)
    assert answers == [(NEW, "miss")]
    assert gate.calls == 1


@pytest.mark.parametrize(
    "error",
    [
        UpstreamError("slow down", status=400, error_type="ThrottlingException"),
        UpstreamError("denied", status=400, error_type="AccessDeniedException"),
    ],
    ids=lambda exc: exc.error_type,
)
def test_a_failed_refresh_leaves_the_entry_as_it_was(error: UpstreamError) -> None:
    clock = FakeClock()
    cache = warm(clock)
    gate = GatedFetch(error)
    clock.now = 1009.0
    cache.get_or_fetch(KEY, TTL, gate)
    gate.release.set()
    wait_until(lambda: cache.info().refreshes_ahead == 1, WAIT, "the refresh to start")
    # Once it has failed, the next hit in the window starts another: the flight is gone.
    retry = GatedFetch(NEW)
    wait_until(
        lambda: cache.get_or_fetch(KEY, TTL, retry) == (OLD, "hit") and retry.entered.is_set(),
        WAIT,
        "the failed refresh to end and another to start",
    )
    assert cache.info().size == 1
    retry.release.set()
    wait_until(landed(cache, NEW), WAIT, "the second refresh to land")


def test_after_a_failed_refresh_stale_if_error_still_applies_at_expiry() -> None:
    clock = FakeClock()
    cache = warm(clock)
    transient = UpstreamError("slow down", status=400, error_type="ThrottlingException")
    gate = GatedFetch(transient)
    clock.now = 1009.0
    cache.get_or_fetch(KEY, TTL, gate)
    gate.release.set()
    wait_until(lambda: cache.info().refreshes_ahead == 1, WAIT, "the refresh to start")
    wait_until(no_refresh_running, WAIT, "the failed refresh to end")
    clock.now = 1011.0
    failing = GatedFetch(transient)
    failing.release.set()
    assert cache.get_or_fetch(KEY, TTL, failing) == (OLD, "stale")
    assert cache.info().stale == 1


def test_a_miss_during_the_refresh_joins_it() -> None:
    clock = FakeClock()
    cache = warm(clock, refresh_deadline=30.0)
    gate = GatedFetch()
    clock.now = 1009.0
    cache.get_or_fetch(KEY, TTL, gate)
    assert gate.entered.wait(WAIT)
    for index in range(10):  # the cap is 10: fill the cache so that KEY is evicted
        cache.get_or_fetch(("filler", index), TTL, const(b"filler"))
    assert cache.info().evictions == 1  # KEY, the least recently used, is gone
    answers: list[tuple[bytes, str]] = []
    reader = threading.Thread(
        target=lambda: answers.append(cache.get_or_fetch(KEY, TTL, must_not_fetch))
    )
    reader.start()
    wait_until(lambda: cache.info().coalesced == 1, WAIT, "the miss to join the refresh")
    gate.release.set()
    reader.join(WAIT)
    assert answers == [(NEW, "miss")]
    assert gate.calls == 1


def test_concurrent_refreshes_are_capped_and_off_means_off() -> None:
    clock = FakeClock()
    cache = Cache(10, clock=clock, refresh_ahead=0.1, max_refreshes=2)
    keys = [("k", index) for index in range(3)]
    for key in keys:
        cache.get_or_fetch(key, TTL, const(OLD))
    clock.now = 1009.5
    gates = [GatedFetch() for _ in keys]
    for key, gate in zip(keys, gates, strict=True):
        assert cache.get_or_fetch(key, TTL, gate) == (OLD, "hit")
    assert gates[0].entered.wait(WAIT) and gates[1].entered.wait(WAIT)
    assert cache.info().refreshes_ahead == 2 and gates[2].calls == 0
    for gate in gates:
        gate.release.set()
    wait_until(no_refresh_running, WAIT, "the refreshes to end")

    off = Cache(10, clock=clock, refresh_ahead=0.0)
    off.get_or_fetch(KEY, TTL, const(OLD))
    clock.now += TTL - 0.01
    assert off.get_or_fetch(KEY, TTL, must_not_fetch) == (OLD, "hit")
    assert off.info().refreshes_ahead == 0


def test_invalid_refresh_ahead_settings_are_refused() -> None:
    for fraction in (-0.1, 1.0):
        with pytest.raises(ValueError, match="refresh_ahead"):
            Cache(1, refresh_ahead=fraction)
    with pytest.raises(ValueError, match="refresh_deadline"):
        Cache(1, refresh_deadline=-1)


class CountingUpstream:
    """The one call Lookups makes here, counted; every answer the same."""

    def __init__(self) -> None:
        self.calls = 0

    def deadline(self, service: object) -> float:
        return time.monotonic() + 30

    def get(self) -> AwsClient:
        # Made already, as an AwsClient is; it answers the calls Lookups makes, with their
        # signatures (Lookups types them as AwsClient's own).
        return cast("AwsClient", self)

    def get_secret_value(
        self,
        secret_id: str,
        *,
        version_id: str | None = None,
        version_stage: str | None = None,
        deadline: float | None = None,
    ) -> dict[str, object]:
        self.calls += 1
        return {"Name": secret_id, "SecretString": "snap-VALUE"}

    def get_parameter(self, name: str, **selectors: object) -> dict[str, object]:
        raise AssertionError("no parameter is read here")

    def batch_get_secret_value(
        self, secret_ids: object, *, deadline: float | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        raise AssertionError("no batch is read here")

    def get_parameters(
        self, names: object, with_decryption: bool, *, deadline: float | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        raise AssertionError("no batch is read here")

    def get_parameters_by_path(
        self,
        path: str,
        *,
        recursive: bool,
        with_decryption: bool,
        limit: int,
        deadline: float | None = None,
    ) -> list[dict[str, object]]:
        raise AssertionError("no path is read here")


def test_under_snapstart_nothing_is_refreshed_before_the_first_invoke() -> None:
    clock = FakeClock()
    upstream = CountingUpstream()
    cache = Cache(10, clock=clock, refresh_ahead=0.1)
    lookups = Lookups(
        upstream, cache, secrets_manager_ttl=TTL, ssm_ttl=TTL, cache_until_invoked=True
    )
    for now in (1000.0, 1009.5, 1009.9):  # what would be the window, were anything cached
        clock.now = now
        assert lookups.secret("snap")[1] == "bypass"
    assert (upstream.calls, cache.info().refreshes_ahead, cache.info().size) == (3, 0, 0)

    lookups.start_caching()
    assert lookups.secret("snap")[1] == "miss"
    clock.now += 9.5
    assert lookups.secret("snap")[1] == "hit"
    wait_until(lambda: upstream.calls == 5, WAIT, "the refresh-ahead after the first invoke")
    assert cache.info().refreshes_ahead == 1


# --- the real process under steady reads --------------------------------------------------

UPSTREAM_DELAY_MS = 300
TTL_SECONDS = 2
READ_EVERY_SECONDS = 0.1
READ_FOR_SECONDS = 10.0
# A hit takes about a millisecond; a reader made to wait takes the 300 ms delay or more.
MAX_LATER_READ_SECONDS = 0.15


def test_a_key_read_steadily_never_makes_a_reader_wait(
    extension_executable: Path,
    tmp_path: Path,
    moto: Moto,
    lambda_credentials: LambdaCredentials,
) -> None:
    name = "refresh-ahead/steady"
    moto.boto3_client("secretsmanager").create_secret(Name=name, SecretString="steady-VALUE")  # type: ignore[attr-defined]
    with FaultProxy(moto.host, moto.port) as proxy:
        proxy.set_fault("delay", delay_ms=UPSTREAM_DELAY_MS)
        with start_standalone(
            extension_executable,
            tmp_path / "extension.log",
            moto,
            lambda_credentials,
            endpoint=f"http://127.0.0.1:{proxy.port}",
            SECRETS_MANAGER_TTL=str(TTL_SECONDS),
        ) as ext:
            durations: list[float] = []
            path = secret_path(name)
            end = time.monotonic() + READ_FOR_SECONDS
            while time.monotonic() < end:
                started = time.monotonic()
                status, body = ext.get_json(path)
                durations.append(time.monotonic() - started)
                assert status == 200 and body["SecretString"] == "steady-VALUE"
                time.sleep(max(0.0, READ_EVERY_SECONDS - (time.monotonic() - started)))
            assert "Traceback" not in ext.output()
        forwarded = proxy.requests_forwarded
    assert durations[0] >= UPSTREAM_DELAY_MS / 1000  # the first read is a miss that waits
    slow = [(index, round(seconds, 3)) for index, seconds in enumerate(durations[1:], 1)]
    slow = [item for item in slow if item[1] >= MAX_LATER_READ_SECONDS]
    assert slow == [], f"reads that waited: {slow}"
    # The value was refreshed in the background about once per TTL, not once per read.
    expected = READ_FOR_SECONDS / TTL_SECONDS
    assert expected - 1 <= forwarded <= expected + 2, forwarded
