"""Tools of the host that some tests need (openssl, unshare, strace, node, ...): found, or the
test skipped, and under CI failed, since CI installs every one of them (.ci/run)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def missing(what: str) -> None:
    """Skip, or under CI fail: CI installs every tool these tests need."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (CI installs it: .ci/run)")
    pytest.skip(what)


def require(tool: str, package: str) -> str:
    """The path of `tool`, which Debian's `package` installs."""
    found = shutil.which(tool)
    if found is None:
        missing(f"{tool} not found (Debian: apt-get install {package})")
    return str(found)


def require_namespaces() -> None:
    """unshare can make a user and mount namespace here (not every container allows it)."""
    require("unshare", "util-linux")
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        missing(f"no user and mount namespaces: {done.stderr.strip()}")
