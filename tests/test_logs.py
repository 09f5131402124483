"""logs: SPEC 7's plain and JSON formats and every level, on the stream given."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest

import logs


@pytest.fixture(autouse=True)
def restore_logger() -> Iterator[None]:
    handlers, level, propagate = list(logs.log.handlers), logs.log.level, logs.log.propagate
    yield
    logs.log.handlers[:] = handlers
    logs.log.setLevel(level)
    logs.log.propagate = propagate


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
