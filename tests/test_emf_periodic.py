"""The EMF lines written while the sandbox runs: every PARAMETERS_SECRETS_EXTENSION_
METRICS_INTERVAL_SECONDS, what was counted since the line before, none for an idle period,
one more at SHUTDOWN; nothing when metrics are off. The real process under the fake
Extensions API, read from its stdout; and the writer itself, with its own clockless flushes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from parameters_secrets_extension.emf_writer import EmfWriter, delta
from parameters_secrets_extension.logs import MAX_LINE_BYTES
from parameters_secrets_extension.metrics import COUNTER_NAMES
from tests.conftest import LambdaCredentials, Moto, free_port, wait_until
from tests.extension_process import ExtensionProcess, lambda_env
from tests.fake_extensions_api import FakeExtensionsApi
from tests.hardening_support import secret_path

INTERVAL = "PARAMETERS_SECRETS_EXTENSION_METRICS_INTERVAL_SECONDS"
# An idle wait of this many intervals (1 s each) would have held two lines, were idle
# periods written.
IDLE_SECONDS = 2.5


def emf_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith('{"_aws"')]


def total(lines: list[dict[str, Any]], name: str) -> int:
    return sum(int(line[name]) for line in lines)


def test_counters_arrive_every_interval_as_deltas_and_once_more_at_shutdown(
    extension_executable: Path, tmp_path: Path, moto: Moto, lambda_credentials: LambdaCredentials
) -> None:
    with FakeExtensionsApi() as fake:
        env = lambda_env(
            moto,
            lambda_credentials,
            free_port(),
            fake.address,
            PARAMETERS_SECRETS_EXTENSION_METRICS="emf",
            AWS_LAMBDA_FUNCTION_NAME="emf-periodic",
            **{INTERVAL: "0"},  # clamped to the minimum, 1 s, with a warning
        )
        with ExtensionProcess(extension_executable, env, tmp_path / "extension.log") as ext:
            assert fake.first_next.wait(20), ext.output()
            path = secret_path(moto.secret_name)
            assert [ext.get(path)[0] for _ in range(2)] == [200, 200]

            # Without any SHUTDOWN: the first period's counts arrive on their own.
            def counted(misses: int, hits: int) -> bool:
                lines = emf_lines(ext.output())
                return (total(lines, "Misses"), total(lines, "Hits")) == (misses, hits)

            wait_until(lambda: counted(1, 1), 10, "the first reads in periodic EMF lines")
            first = emf_lines(ext.output())
            assert total(first, "UpstreamCalls") == 1
            # An idle period writes nothing, so every line so far counted something.
            time.sleep(IDLE_SECONDS)
            assert emf_lines(ext.output()) == first
            assert all(any(line[name] for name in COUNTER_NAMES) for line in first)

            # A later period holds only what was counted in it.
            assert ext.get(path)[0] == 200
            assert ext.get(path, token="wrong")[0] == 401
            wait_until(lambda: counted(1, 2), 10, "the third read in a periodic EMF line")
            later = emf_lines(ext.output())[len(first) :]
            assert total(later, "Hits") == 1 and total(later, "Misses") == 0
            assert total(later, "UpstreamCalls") == 0 and total(later, "LocalErrors") == 1
            assert [line["LocalErrorsByType"] for line in later if line["LocalErrors"]] == [
                {"UnauthorizedException": 1}
            ]
            assert all(line["FunctionName"] == "emf-periodic" for line in later)

            before_shutdown = len(emf_lines(ext.output()))
            fake.shutdown_extension()
            assert ext.proc.wait(timeout=5) == 0
            output = ext.output()
    lines = emf_lines(output)
    assert len(lines) == before_shutdown + 1  # the SHUTDOWN line, even with nothing new
    assert all(lines[-1][name] == 0 for name in COUNTER_NAMES)
    assert f"WARN {INTERVAL}=0 is below the minimum 1; using 1" in output
    assert lambda_credentials.session_token not in output


def test_under_snapstart_counting_starts_at_the_first_invoke(
    extension_executable: Path, tmp_path: Path, moto: Moto
) -> None:
    """What init counts is in the snapshot: reported from there, every restored sandbox
    would report it again. So the lines count from the first invoke."""
    admin = LambdaCredentials(moto.access_key, moto.secret_key, "")  # SnapStart's own token
    with FakeExtensionsApi() as fake:
        env = lambda_env(
            moto,
            admin,
            free_port(),
            fake.address,
            AWS_LAMBDA_INITIALIZATION_TYPE="snap-start",
            AWS_CONTAINER_AUTHORIZATION_TOKEN="snapstart-emf-token",
            PARAMETERS_SECRETS_EXTENSION_METRICS="emf",
            **{INTERVAL: "1"},
        )
        with ExtensionProcess(extension_executable, env, tmp_path / "extension.log") as ext:
            assert fake.first_next.wait(20), ext.output()
            path = secret_path(moto.secret_name)
            assert [ext.get(path)[0] for _ in range(3)] == [200, 200, 200]  # in init
            time.sleep(IDLE_SECONDS)
            assert emf_lines(ext.output()) == []  # nothing written before the first invoke
            fake.send({"eventType": "INVOKE", "requestId": "r1", "deadlineMs": 0})
            wait_until(lambda: len(fake.calls.next_calls) >= 2, 10, "the next after INVOKE")
            assert ext.get(path, token="wrong")[0] == 401
            wait_until(lambda: emf_lines(ext.output()) != [], 10, "a line after the invoke")
            fake.shutdown_extension()
            assert ext.proc.wait(timeout=5) == 0
            lines = emf_lines(ext.output())
    # Only the invoke's one local error: none of init's three upstream reads.
    assert [total(lines, name) for name in ("LocalErrors", "UpstreamCalls", "Misses")] == [1, 0, 0]


def test_no_line_at_any_interval_when_metrics_are_off(
    extension_executable: Path, tmp_path: Path, moto: Moto, lambda_credentials: LambdaCredentials
) -> None:
    with FakeExtensionsApi() as fake:
        env = lambda_env(moto, lambda_credentials, free_port(), fake.address, **{INTERVAL: "1"})
        with ExtensionProcess(extension_executable, env, tmp_path / "extension.log") as ext:
            assert fake.first_next.wait(20), ext.output()
            assert ext.get(secret_path(moto.secret_name))[0] == 200
            time.sleep(IDLE_SECONDS)
            fake.shutdown_extension()
            assert ext.proc.wait(timeout=5) == 0
            output = ext.output()
    assert '"_aws"' not in output and "WARN" not in output, output


class Counters:
    """A stand-in for Lookups.counters: totals that the test moves by hand."""

    def __init__(self) -> None:
        self.now: dict[str, Any] = dict.fromkeys(COUNTER_NAMES, 0)
        self.now.update(UpstreamErrorsByType={}, LocalErrorsByType={})

    def __call__(self) -> dict[str, object]:
        snapshot: dict[str, object] = json.loads(json.dumps(self.now))
        return snapshot  # a copy, as the real one is


def test_the_writer_sends_deltas_skips_idle_periods_and_always_the_final_line() -> None:
    counters, written = Counters(), list[str]()
    writer = EmfWriter(counters, "fn", 3600, written.append)
    writer.flush(final=False)
    assert written == []  # nothing counted yet
    counters.now.update(Hits=5, Misses=2, UpstreamCalls=2, UpstreamErrors=1)
    counters.now["UpstreamErrorsByType"] = {"ThrottlingException": 1}
    writer.flush(final=False)
    counters.now["Hits"] = 7
    writer.flush(final=False)
    writer.flush(final=False)  # idle
    writer.flush(final=True)
    lines = [json.loads(line) for line in written]
    assert [(line["Hits"], line["Misses"], line["UpstreamCalls"]) for line in lines] == [
        (5, 2, 2),
        (2, 0, 0),
        (0, 0, 0),
    ]
    assert [line["UpstreamErrorsByType"] for line in lines] == [{"ThrottlingException": 1}, {}, {}]


def test_a_period_with_many_error_types_keeps_its_counts_in_one_whole_line() -> None:
    counters, written = Counters(), list[str]()
    writer = EmfWriter(counters, "fn", 3600, written.append)
    types = {f"Error{i:02d}{'x' * 90}Exception": 1 for i in range(64)}
    counters.now.update(UpstreamCalls=64, UpstreamErrors=64, UpstreamErrorsByType=types)
    writer.flush(final=False)
    [line] = written
    assert len(line) < MAX_LINE_BYTES
    document = json.loads(line)
    assert (document["UpstreamErrors"], document["UpstreamErrorsByType"]) == (64, {})


def test_delta_leaves_out_the_types_that_did_not_grow() -> None:
    before = {"Hits": 1, "LocalErrorsByType": {"A": 1, "B": 2}, "UpstreamErrorsByType": {}}
    now = {"Hits": 4, "LocalErrorsByType": {"A": 1, "B": 3, "C": 1}, "UpstreamErrorsByType": {}}
    result = delta(now, before)
    assert result["Hits"] == 3 and result["Misses"] == 0
    assert result["LocalErrorsByType"] == {"B": 1, "C": 1}


def test_stop_ends_the_thread_and_writes_the_last_line() -> None:
    counters, written = Counters(), list[str]()
    writer = EmfWriter(counters, "fn", 0.05, written.append)
    writer.start()
    counters.now["Hits"] = 1
    wait_until(lambda: len(written) == 1, 5, "a periodic line")
    writer.stop()
    assert len(written) == 2
    time.sleep(0.2)
    assert len(written) == 2  # the thread is gone: no more lines
    thread = writer._thread
    assert thread is not None and not thread.is_alive()


@pytest.mark.parametrize("final", [True, False])
def test_stop_without_final_writes_nothing_more(final: bool) -> None:
    counters, written = Counters(), list[str]()
    writer = EmfWriter(counters, "fn", 3600, written.append)
    writer.start()
    writer.stop(final=final)
    assert len(written) == (1 if final else 0)
