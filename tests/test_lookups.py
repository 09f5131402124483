"""Lookups against an in-process upstream that records its calls, with the real Cache."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator

import pytest

import log_capture
from cache import Cache
from errors import UpstreamError
from lookups import Lookups

SECRET_VALUE = "lookups-SECRET-value"
PARAM_VALUE = "lookups-PARAM-value"


class RecordingUpstream:
    """Answers every call with fixed data; `barrier` makes calls wait for each other."""

    def __init__(self, *, barrier: threading.Barrier | None = None, fail: str = "") -> None:
        self.calls: list[tuple[object, ...]] = []
        self._lock = threading.Lock()
        self._barrier = barrier
        self._fail = fail

    def _record(self, call: tuple[object, ...], ident: str) -> None:
        with self._lock:
            self.calls.append(call)
        if self._barrier is not None:
            self._barrier.wait()
        if ident == self._fail:
            raise UpstreamError("denied", status=400, error_type="AccessDeniedException")

    def get_secret_value(
        self, secret_id: str, *, version_id: str | None = None, version_stage: str | None = None
    ) -> dict[str, object]:
        self._record(("secret", secret_id, version_id, version_stage), secret_id)
        return {"Name": secret_id, "SecretString": SECRET_VALUE, "SecretBinary": None}

    def get_parameter(
        self,
        name: str,
        *,
        version: int | None = None,
        label: str | None = None,
        with_decryption: bool = False,
    ) -> dict[str, object]:
        self._record(("parameter", name, version, label, with_decryption), name)
        return {"Parameter": {"Name": name, "Value": PARAM_VALUE}, "ResultMetadata": {}}


def make(upstream: RecordingUpstream, *, sm_ttl: int = 300, ssm_ttl: int = 300) -> Lookups:
    return Lookups(upstream, Cache(100), secrets_manager_ttl=sm_ttl, ssm_ttl=ssm_ttl)


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    with log_capture.captured("debug") as stream:
        yield stream


def test_secret_is_compact_json_bytes_and_cached() -> None:
    upstream = RecordingUpstream()
    lookups = make(upstream)
    body, outcome = lookups.secret("app/db")
    assert outcome == "miss"
    assert body == b'{"Name":"app/db","SecretString":"lookups-SECRET-value","SecretBinary":null}'
    assert lookups.secret("app/db") == (body, "hit")
    assert upstream.calls == [("secret", "app/db", None, None)]


def test_every_selector_is_part_of_the_key() -> None:
    upstream = RecordingUpstream()
    lookups = make(upstream)
    lookups.secret("s")
    lookups.secret("s", "v1")
    lookups.secret("s", None, "AWSCURRENT")
    lookups.secret("s", "v1", "AWSCURRENT")
    lookups.parameter("p")
    lookups.parameter("p", 1)
    lookups.parameter("p", None, "blue")
    lookups.parameter("p", None, None, True)
    first = list(upstream.calls)
    assert len(first) == 8
    for _ in range(2):
        lookups.secret("s", "v1", "AWSCURRENT")
        lookups.parameter("p", None, None, True)
    assert upstream.calls == first


def test_refresh_fetches_again_and_stores_the_result() -> None:
    upstream = RecordingUpstream()
    lookups = make(upstream)
    lookups.parameter("p")
    assert lookups.parameter("p", refresh=True)[1] == "refresh"
    assert lookups.parameter("p")[1] == "hit"
    assert len(upstream.calls) == 2


def test_ttl_is_per_service() -> None:
    upstream = RecordingUpstream()
    lookups = make(upstream, sm_ttl=0)
    assert lookups.secret("s")[1] == "bypass"
    assert lookups.secret("s")[1] == "bypass"
    assert lookups.parameter("p")[1] == "miss"
    assert lookups.parameter("p")[1] == "hit"
    assert len(upstream.calls) == 3


def test_cache_until_invoked_passes_through_until_start_caching() -> None:
    upstream = RecordingUpstream()
    lookups = Lookups(
        upstream, Cache(100), secrets_manager_ttl=300, ssm_ttl=300, cache_until_invoked=True
    )
    assert lookups.secret("s")[1] == "bypass"
    lookups.prefetch([("secretsmanager", "s"), ("ssm", "p")])
    assert len(upstream.calls) == 1
    lookups.start_caching()
    assert lookups.secret("s")[1] == "miss"
    assert lookups.secret("s")[1] == "hit"


def test_prefetch_runs_entries_in_parallel_and_warms_the_default_keys() -> None:
    # Each fetch waits at a barrier for all three: only parallel fetches can pass it.
    upstream = RecordingUpstream(barrier=threading.Barrier(3, timeout=10))
    lookups = make(upstream)
    lookups.prefetch([("secretsmanager", "s1"), ("ssm", "/p"), ("secretsmanager", "s2")])
    assert len(upstream.calls) == 3
    assert lookups.secret("s1")[1] == "hit"
    assert lookups.secret("s2")[1] == "hit"
    assert lookups.parameter("/p")[1] == "hit"


def test_prefetch_failure_is_logged_without_values_and_not_fatal(debug_log: io.StringIO) -> None:
    upstream = RecordingUpstream(fail="bad")
    lookups = make(upstream)
    lookups.prefetch([("secretsmanager", "bad"), ("ssm", "/good")])
    assert lookups.parameter("/good")[1] == "hit"
    text = debug_log.getvalue()
    assert "WARN prefetch of secretsmanager bad failed: AccessDeniedException" in text
    assert SECRET_VALUE not in text
    assert PARAM_VALUE not in text


def test_prefetch_skips_a_service_whose_ttl_is_zero() -> None:
    upstream = RecordingUpstream()
    lookups = make(upstream, ssm_ttl=0)
    lookups.prefetch([("ssm", "/p"), ("secretsmanager", "s")])
    assert upstream.calls == [("secret", "s", None, None)]


def test_bytes_parse_back_to_the_upstream_dict() -> None:
    lookups = make(RecordingUpstream())
    body, _ = lookups.parameter("/p", 2, None, True)
    assert json.loads(body) == {
        "Parameter": {"Name": "/p", "Value": PARAM_VALUE},
        "ResultMetadata": {},
    }
