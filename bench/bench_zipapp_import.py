"""What shipping bytecode in the zipapp saves: a whole `python -I -S` process importing extension.

Usage: python -m bench.bench_zipapp_import [--runs N]

For each Python 3.10-3.14 under ~/.pyenv/versions, three zipapps built by build_layer.py are
timed: source only, bytecode for that Python, and bytecode for another Python only (so the
source is compiled after all). Each process runs the launcher's program up to where it would
start boot, then imports extension: through the finder, as the extension does. The variants
take turns within each round so that noise from the shared machine falls on all alike; the
median and the minimum of N rounds are printed.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import build_layer
from bench.harness import importing

PYTHONS = sorted(Path.home().glob(".pyenv/versions/3.1[0-4].*/bin/python3"))


def version_of(python: Path) -> str:
    """ "3.11" for ~/.pyenv/versions/3.11.7/bin/python3."""
    return ".".join(python.parent.parent.name.split(".")[:2])


def time_imports(python: Path, apps: dict[str, Path], runs: int) -> dict[str, list[float]]:
    """Seconds per process that imports extension from each app, the apps taking turns."""
    programs = {label: importing(app, "import extension") for label, app in apps.items()}
    times: dict[str, list[float]] = {label: [] for label in apps}
    for _ in range(runs):
        for label, app in apps.items():
            start = time.perf_counter()
            subprocess.run([str(python), "-I", "-S", "-c", programs[label], str(app)], check=True)
            times[label].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=41)
    runs = parser.parse_args().runs
    if len(PYTHONS) < 2:
        sys.exit("needs at least two Pythons 3.10-3.14 under ~/.pyenv/versions")
    builds = {
        python: build_layer.build_zipapp(build_layer.ROOT, {version_of(python): str(python)})
        for python in PYTHONS
    }
    source_only = build_layer.build_zipapp(build_layer.ROOT, {})
    with tempfile.TemporaryDirectory() as tmp:
        for index, python in enumerate(PYTHONS):
            other = PYTHONS[index - 1]  # any other version will do
            apps = {
                "source only": source_only,
                f"code of {python.parent.parent.name}": builds[python],
                f"code of {other.parent.parent.name}": builds[other],
            }
            paths = {label: Path(tmp, f"{index}-{n}.pyz") for n, label in enumerate(apps)}
            for label, data in apps.items():
                paths[label].write_bytes(data)
            print(f"{python.parent.parent.name}: median (min) of {runs} processes")
            for label, times in time_imports(python, paths, runs).items():
                median, least = statistics.median(times) * 1e3, min(times) * 1e3
                print(f"  {label:<17} {median:6.1f} ms ({least:.1f})")


if __name__ == "__main__":
    main()
