"""Every bench script answers --help with its usage and starts no work."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

SCRIPTS = sorted(
    path.name
    for path in (ROOT / "bench").glob("*.py")
    if 'if __name__ == "__main__":' in path.read_text(encoding="utf-8")
)


def test_there_are_scripts() -> None:
    assert "run_all.py" in SCRIPTS and "floor_server.py" in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_prints_usage_and_exits(script: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{script.removesuffix('.py')}", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,  # a benchmark takes minutes: one that started would time out here
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout.lower()
