"""What shipping .pyc in the zipapp saves: a whole `python -I -S` process importing extension.

Usage: python -m bench.bench_zipapp_import [--runs N]

For each Python 3.10-3.14 under ~/.pyenv/versions, three zipapps built by build_layer.py are
timed: source only, .pyc for that Python, and .pyc for another Python (refused by zipimport
for its magic number, so the source is compiled after all). The variants take turns within
each round so that noise from the shared machine falls on all alike; the median and the
minimum of N rounds are printed.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import build_layer

ROOT = Path(__file__).resolve().parent.parent

PYTHONS = sorted(Path.home().glob(".pyenv/versions/3.1[0-4].*/bin/python3"))
BUILD = (
    f"import sys; sys.path.insert(0, {str(ROOT)!r}); import build_layer; "
    "v = '%d.%d' % sys.version_info[:2]; "
    "sys.stdout.buffer.write(build_layer.build_zipapp(build_layer.ROOT, {v: sys.executable}))"
)


def built_by(python: Path) -> bytes:
    """The zipapp as `python` builds it, so with .pyc for that Python."""
    return subprocess.run([str(python), "-c", BUILD], capture_output=True, check=True).stdout


def without_pyc(zipapp: bytes) -> bytes:
    """The same zipapp with its .pyc entries left out."""
    with zipfile.ZipFile(io.BytesIO(zipapp)) as app:
        entries = [
            (name, app.read(name), 0o644) for name in app.namelist() if not name.endswith(".pyc")
        ]
    launcher = build_layer.launcher(build_layer.main_program(()))
    return build_layer.write_zip(entries, zipfile.ZIP_STORED, launcher.encode())


def time_imports(python: Path, apps: dict[str, Path], runs: int) -> dict[str, list[float]]:
    """Seconds per process that imports extension from each app, the apps taking turns."""
    times: dict[str, list[float]] = {label: [] for label in apps}
    for _ in range(runs):
        for label, app in apps.items():
            # As __main__.py does: the running version's pyc/X.Y/ first, when shipped.
            code = (
                f"import sys; app = {str(app)!r}; "
                'sys.path[:0] = [app + "/pyc/%d.%d" % sys.version_info[:2], app]; '
                "import extension"
            )
            start = time.perf_counter()
            subprocess.run([str(python), "-I", "-S", "-c", code], check=True)
            times[label].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=41)
    runs = parser.parse_args().runs
    if len(PYTHONS) < 2:
        sys.exit("needs at least two Pythons 3.10-3.14 under ~/.pyenv/versions")
    builds = {python: built_by(python) for python in PYTHONS}
    with tempfile.TemporaryDirectory() as tmp:
        for index, python in enumerate(PYTHONS):
            other = PYTHONS[index - 1]  # any other version will do
            apps = {
                "source only": without_pyc(builds[python]),
                f"pyc of {python.parent.parent.name}": builds[python],
                f"pyc of {other.parent.parent.name}": builds[other],
            }
            paths = {label: Path(tmp, f"{index}-{n}.pyz") for n, label in enumerate(apps)}
            for label, data in apps.items():
                paths[label].write_bytes(data)
            print(f"{python.parent.parent.name}: median (min) of {runs} processes")
            for label, times in time_imports(python, paths, runs).items():
                median, least = statistics.median(times) * 1e3, min(times) * 1e3
                print(f"  {label:<16} {median:6.1f} ms ({least:.1f})")


if __name__ == "__main__":
    main()
