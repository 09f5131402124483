"""What the layer takes from the interpreter build: the binary, whose stdlib modules are frozen."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from bundled_python import build, pins


class Bundle(NamedTuple):
    version: str  # CPython's, such as "3.13.15"
    python: bytes  # the stripped executable, stdlib.MODULES frozen into it
    compiler: Path  # the same CPython built for this machine, to compile the zipapp's .pyc


def bundled_files(arch: str, sources: Path | None = None) -> Bundle:
    """The interpreter for `arch`, and the one that compiles the zipapp's bytecode for it."""
    built = build.interpreter(arch, sources)
    host = build.interpreter(build.host_arch(), sources)  # runs here, compiles for both
    python = (built / "bin" / "python3").read_bytes()
    return Bundle(pins.CPYTHON.version, python, host / "bin" / "python3")
