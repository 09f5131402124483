"""Lookups against an in-process upstream that records its calls, with the real Cache."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator, Sequence
from typing import cast

import pytest

from cache import Cache
from parameters_secrets_extension.aws.operations import AwsClient
from parameters_secrets_extension.errors import (
    ExtensionError,
    MissingCredentials,
    RequestError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamTimeout,
)
from parameters_secrets_extension.failure_log import FailureLog
from parameters_secrets_extension.lookups import Lookups
from tests import log_capture

Batch = tuple[dict[str, dict[str, object]], dict[str, ExtensionError]]
SECRET_VALUE = "lookups-SECRET-value"
PARAM_VALUE = "lookups-PARAM-value"


class RecordingUpstream:
    """Answers every call with fixed data; `barrier` makes calls wait for each other."""

    def __init__(self, *, barrier: threading.Barrier | None = None, fail: str = "") -> None:
        self.calls: list[tuple[object, ...]] = []
        self._lock = threading.Lock()
        self._barrier = barrier
        self.fail = fail
        self.error = UpstreamError("denied", status=400, error_type="AccessDeniedException")

    def _record(self, call: tuple[object, ...], ident: str) -> None:
        with self._lock:
            self.calls.append(call)
        if self._barrier is not None:
            self._barrier.wait()
        if ident == self.fail:
            raise self.error

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
        self._record(("secret", secret_id, version_id, version_stage), secret_id)
        return {"Name": secret_id, "SecretString": SECRET_VALUE, "SecretBinary": None}

    def get_parameter(
        self,
        name: str,
        *,
        version: int | None = None,
        label: str | None = None,
        with_decryption: bool = False,
        deadline: float | None = None,
    ) -> dict[str, object]:
        self._record(("parameter", name, version, label, with_decryption), name)
        return {"Parameter": {"Name": name, "Value": PARAM_VALUE}, "ResultMetadata": {}}

    def batch_get_secret_value(
        self, secret_ids: Sequence[str], *, deadline: float | None = None
    ) -> tuple[dict[str, dict[str, object]], dict[str, ExtensionError]]:
        self._record(("secrets", *secret_ids), "<batch>")
        found = {i: self.answer_secret(i) for i in secret_ids if i != self.fail}
        return found, {i: self.error for i in secret_ids if i == self.fail}

    def get_parameters(
        self,
        names: Sequence[tuple[str, str, int | None, str | None]],
        with_decryption: bool,
        *,
        deadline: float | None = None,
    ) -> tuple[dict[str, dict[str, object]], dict[str, ExtensionError]]:
        self._record(("parameters", *(entry[0] for entry in names), with_decryption), "<batch>")
        found = {entry[0]: self.answer_parameter(entry[1]) for entry in names}
        return {k: v for k, v in found.items() if k != self.fail}, {
            entry[0]: self.error for entry in names if entry[0] == self.fail
        }

    def get_parameters_by_path(
        self,
        path: str,
        *,
        recursive: bool,
        with_decryption: bool,
        limit: int,
        deadline: float | None = None,
    ) -> list[dict[str, object]]:
        self._record(("path", path, recursive, with_decryption), path)
        return [{"Name": path + "x", "Value": PARAM_VALUE}]

    @staticmethod
    def answer_secret(secret_id: str) -> dict[str, object]:
        return {"Name": secret_id, "SecretString": SECRET_VALUE, "SecretBinary": None}

    @staticmethod
    def answer_parameter(name: str) -> dict[str, object]:
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


def test_prefetch_batches_groups_in_parallel_and_warms_the_default_keys() -> None:
    # 25 secrets are 2 BatchGetSecretValue calls (20 + 5), 12 parameters 2 GetParameters
    # calls (10 + 2); each call waits at a barrier for all four: only parallel calls pass.
    upstream = RecordingUpstream(barrier=threading.Barrier(4, timeout=10))
    lookups = make(upstream)
    secrets = [f"s{i}" for i in range(25)]
    params = [f"/p{i}" for i in range(12)]
    entries = [("secretsmanager", i) for i in secrets] + [("ssm", n) for n in params]
    lookups.prefetch(entries)
    sizes = sorted((call[0], len(call)) for call in upstream.calls)
    # a secrets call is ("secrets", *ids); a parameters call ("parameters", *names, flag)
    assert sizes == [("parameters", 4), ("parameters", 12), ("secrets", 6), ("secrets", 21)]
    assert all(lookups.secret(i)[1] == "hit" for i in secrets)
    assert all(lookups.parameter(n)[1] == "hit" for n in params)
    assert len(upstream.calls) == 4


def test_prefetch_failure_is_logged_without_values_and_not_fatal(debug_log: io.StringIO) -> None:
    upstream = RecordingUpstream(fail="bad")
    lookups = make(upstream)
    # One secret is its single read, two a batch call: both ways, the failed item is named.
    lookups.prefetch([("secretsmanager", "bad"), ("ssm", "/good")])
    upstream.fail = "bad2"
    lookups.prefetch([("secretsmanager", "bad2"), ("secretsmanager", "s2")])
    assert lookups.parameter("/good")[1] == "hit"
    assert lookups.secret("s2")[1] == "hit"
    text = debug_log.getvalue()
    assert "WARN prefetch of secretsmanager bad failed: AccessDeniedException" in text
    assert "WARN prefetch of secretsmanager bad2 failed: AccessDeniedException" in text
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


# --- Upstream failures in the log ---


class FailingUpstream:
    """Raises the error it is given for every call; counts the calls."""

    def __init__(self, error: ExtensionError) -> None:
        self.error = error
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
        raise self.error

    def get_parameter(
        self,
        name: str,
        *,
        version: int | None = None,
        label: str | None = None,
        with_decryption: bool = False,
        deadline: float | None = None,
    ) -> dict[str, object]:
        self.calls += 1
        raise self.error

    def batch_get_secret_value(
        self, secret_ids: Sequence[str], *, deadline: float | None = None
    ) -> Batch:
        self.calls += 1
        raise self.error

    def get_parameters(
        self,
        names: Sequence[tuple[str, str, int | None, str | None]],
        with_decryption: bool,
        *,
        deadline: float | None = None,
    ) -> Batch:
        self.calls += 1
        raise self.error

    def get_parameters_by_path(
        self,
        path: str,
        *,
        recursive: bool,
        with_decryption: bool,
        limit: int,
        deadline: float | None = None,
    ) -> list[dict[str, object]]:
        self.calls += 1
        raise self.error


class Ticks:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


def _failing(
    error: ExtensionError, clock: Ticks, **options: int
) -> tuple[Lookups, FailingUpstream]:
    upstream = FailingUpstream(error)
    lookups = Lookups(
        upstream,
        Cache(100),
        secrets_manager_ttl=300,
        ssm_ttl=300,
        failures=FailureLog(clock=clock, **options),
    )
    return lookups, upstream


def _lines(stream: io.StringIO) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if "upstream" in line]


NOT_FOUND = UpstreamError(
    "Secrets Manager can't find the specified secret.",
    status=400,
    error_type="ResourceNotFoundException",
)


@pytest.mark.parametrize(
    ("error", "level"),
    [
        (NOT_FOUND, "WARN"),
        (UpstreamError("no", status=400, error_type="ParameterNotFound"), "WARN"),
        (UpstreamError("bad", status=400, error_type="ValidationException"), "WARN"),
        (RequestError("bad ARN region"), "WARN"),
        (UpstreamError("no", status=400, error_type="AccessDeniedException"), "ERROR"),
        (UpstreamError("slow", status=400, error_type="ThrottlingException"), "ERROR"),
        (UpstreamError("oops", status=500, error_type="InternalServiceError"), "ERROR"),
        (UpstreamTimeout("deadline"), "ERROR"),
        (UpstreamConnectionError("refused"), "ERROR"),
        (MissingCredentials("none"), "ERROR"),
    ],
)
def test_each_upstream_failure_is_logged_at_its_level(
    error: ExtensionError, level: str, debug_log: io.StringIO
) -> None:
    lookups, _ = _failing(error, Ticks())
    with pytest.raises(type(error)):
        lookups.secret("app/db", None, "AWSPREVIOUS")
    [line] = _lines(debug_log)
    assert line.startswith(f"[parameters-secrets-extension] {level} upstream GetSecretValue ")
    assert " id=app/db versionStage=AWSPREVIOUS " in line
    assert f" type={error.error_type} status={error.status} " in line
    assert " duration_ms=" in line
    assert " attempts=" not in line  # unknown here: the error does not carry it
    assert error.message not in line  # AWS's message is for the caller, not the log


def test_attempts_are_logged_when_the_error_carries_them(debug_log: io.StringIO) -> None:
    error = UpstreamError("slow", status=400, error_type="ThrottlingException")
    error.attempts = 3
    lookups, _ = _failing(error, Ticks())
    with pytest.raises(UpstreamError):
        lookups.parameter("/p", None, "blue", True)
    [line] = _lines(debug_log)
    assert "ERROR upstream GetParameter failed: id=/p label=blue withDecryption=True " in line
    assert " attempts=3 " in line


def test_repeats_for_one_key_are_summarised(debug_log: io.StringIO) -> None:
    clock = Ticks()
    lookups, upstream = _failing(NOT_FOUND, clock)
    for _ in range(50):
        with pytest.raises(UpstreamError):
            lookups.secret("missing")
        clock.value += 0.5  # 50 failures over 25 s
    assert upstream.calls == 50  # errors are never cached: each one went upstream
    assert len(_lines(debug_log)) == 1
    clock.value += 60
    with pytest.raises(UpstreamError):
        lookups.secret("missing")
    lines = _lines(debug_log)
    assert len(lines) == 2
    assert lines[1].endswith("(and 49 more like it in the last 60 s)")
    # Another key, or another error for the same key, is news and logged at once.
    with pytest.raises(UpstreamError):
        lookups.secret("other")
    upstream.error = UpstreamTimeout("deadline")
    with pytest.raises(UpstreamTimeout):
        lookups.secret("missing")
    assert len(_lines(debug_log)) == 4


def test_the_repeat_table_is_bounded_least_recent_first(debug_log: io.StringIO) -> None:
    clock = Ticks()
    lookups, _ = _failing(NOT_FOUND, clock, max_keys=3)
    for name in ("a", "b", "c", "d", "b", "c", "d"):
        with pytest.raises(UpstreamError):
            lookups.secret(name)
    # "a" was forgotten when "d" came: it is news again; b, c and d are still repeats.
    assert len(_lines(debug_log)) == 4
    with pytest.raises(UpstreamError):
        lookups.secret("a")
    assert len(_lines(debug_log)) == 5
    assert len(lookups._failures._seen) == 3


def test_many_keys_cannot_flood_the_log(debug_log: io.StringIO) -> None:
    clock = Ticks()
    lookups, _ = _failing(NOT_FOUND, clock, max_lines=5)
    for n in range(40):
        with pytest.raises(UpstreamError):
            lookups.secret(f"missing-{n}")
    assert len(_lines(debug_log)) == 5
    clock.value += 60
    with pytest.raises(UpstreamError):
        lookups.secret("missing-next")
    lines = _lines(debug_log)
    assert len(lines) == 7
    assert "35 upstream failure lines were not logged in the last 60 s" in lines[5]
    assert "id=missing-next " in lines[6]


def test_an_id_cannot_forge_log_lines(debug_log: io.StringIO) -> None:
    lookups, _ = _failing(NOT_FOUND, Ticks())
    with pytest.raises(UpstreamError):
        lookups.secret("x\n[parameters-secrets-extension] ERROR forged" + "y" * 2000)
    text = debug_log.getvalue()
    assert len(text.splitlines()) == 1
    assert 'id="x\\n[parameters-secrets-extension] ERROR forged' in text
    assert len(text) < 1000


def test_a_stale_serve_is_one_warning_naming_service_and_id_never_the_value(
    debug_log: io.StringIO,
) -> None:
    clock = Ticks()
    upstream = RecordingUpstream()
    lookups = Lookups(
        upstream,
        Cache(100, clock=clock),
        secrets_manager_ttl=10,
        ssm_ttl=10,
        failures=FailureLog(clock=clock),
    )
    assert lookups.secret("app/db")[1] == "miss"
    clock.value += 25  # expired 15 s ago, inside the stale window
    upstream.fail = "app/db"  # AWS now throttles: transient, so the old value is served
    upstream.error = UpstreamError("slow", status=400, error_type="ThrottlingException")
    body, outcome = lookups.secret("app/db")
    assert outcome == "stale"
    assert SECRET_VALUE.encode() in body
    stale = [line for line in debug_log.getvalue().splitlines() if "stale" in line]
    assert stale == [
        "[parameters-secrets-extension] WARN serving secretsmanager app/db stale,"
        " expired 15 s ago: fetch failed: ThrottlingException"
    ]


# --- Batches through the cache ---


class SlowBatchUpstream(RecordingUpstream):
    """Each batch call takes `delay` seconds; `batch_error` makes every batch call fail."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.batch_error: ExtensionError | None = None

    def batch_get_secret_value(
        self, secret_ids: Sequence[str], *, deadline: float | None = None
    ) -> tuple[dict[str, dict[str, object]], dict[str, ExtensionError]]:
        found = super().batch_get_secret_value(secret_ids)
        time.sleep(self.delay)
        if self.batch_error is not None:
            raise self.batch_error
        return found


def test_overlapping_batches_in_opposite_orders_share_one_call() -> None:
    upstream = SlowBatchUpstream(delay=0.3)
    lookups = make(upstream)
    answers: dict[str, list[bytes | ExtensionError]] = {}

    def run(name: str, ids: list[str]) -> None:
        answers[name] = lookups.secrets(ids)

    first = threading.Thread(target=run, args=("first", ["a", "b", "c"]))
    first.start()
    time.sleep(0.1)  # the first batch's call is under way: its three flights are open
    second = threading.Thread(target=run, args=("second", ["c", "b", "a"]))
    second.start()
    first.join(timeout=10)
    second.join(timeout=10)
    assert not first.is_alive() and not second.is_alive()
    assert upstream.calls == [("secrets", "a", "b", "c")]
    assert answers["second"] == list(reversed(answers["first"]))
    assert [json.loads(a)["Name"] for a in answers["first"]] == ["a", "b", "c"]  # type: ignore[arg-type]


def test_a_failed_batch_call_serves_stale_values_or_raises() -> None:
    upstream = SlowBatchUpstream()
    clock = Ticks()
    lookups = Lookups(upstream, Cache(100, clock=clock), secrets_manager_ttl=10, ssm_ttl=10)
    fresh = lookups.secrets(["a", "b"])
    clock.value += 11  # both expired, within the stale-if-error window
    upstream.batch_error = UpstreamTimeout("slow")
    assert lookups.secrets(["a", "b"]) == fresh
    with pytest.raises(UpstreamTimeout):
        lookups.secrets(["a", "new"])  # "new" has nothing stale to serve
    assert len(upstream.calls) == 3


def refusing_batches() -> tuple[SlowBatchUpstream, Lookups]:
    """Lookups over an upstream that refuses every batch call, as a role allowed only the
    single reads does."""
    upstream = SlowBatchUpstream()
    upstream.batch_error = UpstreamError("no", status=400, error_type="AccessDeniedException")
    return upstream, make(upstream)


def test_prefetch_falls_back_to_single_reads_when_the_batch_call_is_refused(
    debug_log: io.StringIO,
) -> None:
    upstream, lookups = refusing_batches()
    lookups.prefetch([("secretsmanager", "a"), ("secretsmanager", "b")])
    singles = sorted(call for call in upstream.calls if call[0] == "secret")
    assert singles == [("secret", "a", None, None), ("secret", "b", None, None)]
    assert lookups.secret("a")[1] == lookups.secret("b")[1] == "hit"
    text = debug_log.getvalue()
    assert "BatchGetSecretValue refused (AccessDeniedException); fetching its 2 items" in text
    assert "WARN prefetch" not in text
    # The refusal is the INFO line above, not an upstream-failure line per item.
    assert "upstream BatchGetSecretValue failed" not in text


def test_prefetch_of_one_item_is_its_single_read_even_where_batches_are_refused(
    debug_log: io.StringIO,
) -> None:
    upstream, lookups = refusing_batches()
    lookups.prefetch([("secretsmanager", "a"), ("ssm", "/p:3")])
    assert sorted(upstream.calls, key=str) == [
        ("parameter", "/p", 3, None, False),
        ("secret", "a", None, None),
    ]
    assert lookups.secret("a")[1] == lookups.parameter("/p", 3)[1] == "hit"
    assert "refused" not in debug_log.getvalue()
