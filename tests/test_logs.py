"""logs: the plain and JSON (AWS_LAMBDA_LOG_FORMAT=JSON) formats and every level."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from parameters_secrets_extension import logs
from tests import log_capture


@pytest.fixture(autouse=True)
def restore_logger() -> Iterator[None]:
    with log_capture.restored():
        yield


def emit_all(level: str, json_format: bool) -> list[str]:
    stream = io.StringIO()
    logs.setup(level, json_format=json_format, stream=stream)
    logs.log.debug("d")
    logs.log.info("i")
    logs.log.warning("w")
    logs.log.error("e")
    return stream.getvalue().splitlines()


def test_plain_format() -> None:
    assert emit_all("debug", False) == [
        "[parameters-secrets-extension] DEBUG d",
        "[parameters-secrets-extension] INFO i",
        "[parameters-secrets-extension] WARN w",
        "[parameters-secrets-extension] ERROR e",
    ]


@pytest.mark.parametrize(
    ("level", "expected"),
    [("debug", 4), ("info", 3), ("warn", 2), ("error", 1), ("none", 0)],
)
def test_each_level_filters(level: str, expected: int) -> None:
    assert len(emit_all(level, False)) == expected


def test_json_format_has_the_four_fields() -> None:
    lines = emit_all("info", True)
    records = [json.loads(line) for line in lines]
    assert [r["level"] for r in records] == ["INFO", "WARN", "ERROR"]
    for record in records:
        assert set(record) == {"timestamp", "level", "logger", "message"}
        assert record["logger"] == "parameters-secrets-extension"
        assert record["timestamp"].endswith("Z") and "T" in record["timestamp"]
    assert [r["message"] for r in records] == ["i", "w", "e"]


def test_json_timestamp_is_utc_with_milliseconds() -> None:
    before = datetime.now(timezone.utc)
    (line,) = emit_all("error", True)
    after = datetime.now(timezone.utc)
    stamp = json.loads(line)["timestamp"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)
    logged = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert before - timedelta(milliseconds=1) <= logged <= after


class Unprintable:
    def __str__(self) -> str:
        raise AssertionError("formatted although the level is off")


def test_args_are_formatted_only_when_the_level_passes() -> None:
    stream = io.StringIO()
    logs.setup("info", json_format=False, stream=stream)
    logs.log.debug("never %s", Unprintable())
    logs.log.info("%s attempt %d in %.3f s", "GetSecretValue", 2, 0.25)
    logs.log.info("100% literal without args")
    assert stream.getvalue().splitlines() == [
        "[parameters-secrets-extension] INFO GetSecretValue attempt 2 in 0.250 s",
        "[parameters-secrets-extension] INFO 100% literal without args",
    ]


def test_a_closed_stream_does_not_raise_and_a_new_setup_writes_again() -> None:
    closed = io.StringIO()
    logs.setup("debug", json_format=False, stream=closed)
    closed.close()
    logs.log.error("nobody reads this")  # a closed stdout must not take the caller down
    fresh = io.StringIO()
    logs.setup("debug", json_format=False, stream=fresh)
    logs.log.error("read")
    assert fresh.getvalue() == "[parameters-secrets-extension] ERROR read\n"


def _fail_with(secret: str) -> None:
    password = secret  # a local the traceback must not show
    raise ValueError(f"bad value {password}")


def test_a_traceback_is_one_debug_line_of_frames_without_values() -> None:
    secret = "tb-SECRET-value"
    try:
        _fail_with(secret)
    except ValueError as exc:
        caught = exc
    with log_capture.captured("debug") as stream:
        logs.log.traceback(caught)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and "DEBUG" in lines[0], lines
    assert "traceback of ValueError:" in lines[0]
    assert "test_logs.py" in lines[0] and "_fail_with: raise ValueError" in lines[0]
    assert secret not in lines[0]  # neither the message nor the locals
    with log_capture.captured("info") as stream:
        logs.log.traceback(caught)
    assert stream.getvalue() == ""
