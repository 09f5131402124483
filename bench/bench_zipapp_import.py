"""What shipping bytecode in the zipapp saves: a whole `python -I -S` process importing extension.

Usage: python -m bench.bench_zipapp_import [--runs N] [--base REV]

For each Python 3.10-3.14 under ~/.pyenv/versions, three zipapps built by build_layer.py are
timed: source only, bytecode for that Python, and bytecode for another Python only (so the
source is compiled after all). Each process runs the launcher's program up to where it would
start boot, then imports extension: through the finder, as the extension does. The variants
take turns within each round so that noise from the shared machine falls on all alike; the
median and the minimum of N rounds are printed.

With --base REV, instead: this Python's import of extension from REV's layer (built by its
own build_layer.py, imported as its own launcher's program does) against this tree's, taking
turns with a bare `python -I -S -c pass` (the floor); wall and CPU time (user + system, from
wait4, which the other processes on a shared machine disturb less), medians as ratios to it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import build_layer
from bench import harness
from bench.bench_compare import base_layer
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


def compare(rev: str, runs: int) -> None:
    """REV's layer against this tree's, importing extension, with the bare start as floor."""
    python = Path(sys.executable).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        executables = {"base": base_layer(rev, python, Path(tmp, "base"))}
        _, executables["this"] = harness.build_layer(python, Path(tmp, "this"))
        commands = {"bare": [str(python), "-I", "-S", "-c", "pass"]}
        for label, executable in executables.items():
            program = importing(executable, "import extension")
            commands[label] = [str(python), "-I", "-S", "-c", program, str(executable)]
        wall: dict[str, list[float]] = {label: [] for label in commands}
        cpu: dict[str, list[float]] = {label: [] for label in commands}
        labels = list(commands)
        for run in range(runs):
            turn = run % len(labels)
            for label in labels[turn:] + labels[:turn]:
                started = time.perf_counter()
                proc = subprocess.Popen(commands[label])
                _, status, usage = os.wait4(proc.pid, 0)
                wall[label].append((time.perf_counter() - started) * 1000)
                cpu[label].append((usage.ru_utime + usage.ru_stime) * 1000)
                if status != 0:
                    raise SystemExit(f"{label} failed: {commands[label][:5]}")
    print(f"# import extension, base {rev}: python {harness.python_version(python)}, {runs} runs")
    print(f"# each, taking turns; medians; load {harness.load_averages()}\n")
    print("| start | wall | / bare | CPU | / bare |")
    print("|---|---:|---:|---:|---:|")
    floor_wall, floor_cpu = statistics.median(wall["bare"]), statistics.median(cpu["bare"])
    for label in labels:
        median_wall, median_cpu = statistics.median(wall[label]), statistics.median(cpu[label])
        print(
            f"| {label} | {median_wall:.2f} ms | {median_wall / floor_wall:.2f} |"
            f" {median_cpu:.2f} ms | {median_cpu / floor_cpu:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=41)
    parser.add_argument("--base", metavar="REV", help="compare with REV's layer, this Python")
    args = parser.parse_args()
    runs = args.runs
    if args.base:
        compare(args.base, runs)
        return
    if len(PYTHONS) < 2:
        sys.exit("needs at least two Pythons 3.10-3.14 under ~/.pyenv/versions")
    builds = {
        python: build_layer.build_zipapp(
            build_layer.ROOT, harness.no_launcher, {version_of(python): str(python)}
        )
        for python in PYTHONS
    }
    source_only = build_layer.build_zipapp(build_layer.ROOT, harness.no_launcher, {})
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
