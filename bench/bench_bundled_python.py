"""The --with-python layer: its zip size per architecture and how fast its interpreter starts.

Usage: python -m bench.bench_bundled_python [--runs N] [--arch x86_64 [--arch arm64]]
                                            [--compare LAYER_ZIP]

Builds each layer with `build_layer.py --arch A --with-python` (from the build cache when
warm), prints its size, then times whole processes on this machine, the two interpreters
taking turns within each round so that the shared machine's noise falls on both alike:
  - `python3 -I -S -c pass`: the bundled x86_64 interpreter against ~/.pyenv's 3.13, the
    runtime-like floor the goal names (≤ 1.0x);
  - the same, importing the extension's modules from the layer's zipapp (code for 3.13):
    what runs between `register` and `next`;
  - the same, then the AWS client's modules (aws.operations: http.client, ssl, hashlib, the
    signer), which the extension imports on a thread once `next` has left, or at the first
    miss.
--compare adds the interpreter and zipapp of another x86_64 --with-python layer zip (such as
one built from another commit) to every row, as "compared". Median and minimum of N rounds
of the wall time, the median CPU time (user + system, from
wait4: what the process costs a function pinned to one vCPU, where the runtime's own init
waits for it), and the ratios of the medians.
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
from bench.harness import importing, unpack_layer

ROOT = Path(__file__).resolve().parent.parent

FLOOR = sorted(Path.home().glob(".pyenv/versions/3.13.*/bin/python3"))
# Run after the launcher's own program has set up the imports from the zipapp.
IMPORT = "import extension"
CLIENT = IMPORT + "; import parameters_secrets_extension.aws.operations"


def build(arch: str, out: Path) -> Path:
    """The --with-python layer for `arch`, built by the real command."""
    output = out / f"layer-{arch}.zip"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "build_layer.py"),
            "--arch",
            arch,
            "--with-python",
            "--output",
            str(output),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return output


def command(python: str, zipapp: str, statement: str | None) -> list[str]:
    """`python -I -S` running `statement` as the launcher does from `zipapp`; None: bare."""
    if statement is None:
        return [python, "-I", "-S", "-c", "pass"]
    return [python, "-I", "-S", "-c", importing(Path(zipapp), statement), zipapp]


def time_runs(
    commands: dict[str, list[str]], runs: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and CPU seconds per process for each command, the commands taking turns within
    a round."""
    times: dict[str, list[float]] = {label: [] for label in commands}
    cpu: dict[str, list[float]] = {label: [] for label in commands}
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    for _ in range(runs):
        for label, command in commands.items():
            started = time.perf_counter()
            proc = subprocess.Popen(command, env=env, cwd="/")
            _, status, usage = os.wait4(proc.pid, 0)
            times[label].append(time.perf_counter() - started)
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                raise subprocess.CalledProcessError(proc.returncode, command)
            cpu[label].append(usage.ru_utime + usage.ru_stime)
    return times, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=41)
    parser.add_argument("--arch", action="append", choices=build_layer.ARCHES)
    parser.add_argument("--compare", type=Path, help="another x86_64 --with-python layer zip")
    args = parser.parse_args()
    if not FLOOR:
        sys.exit("no ~/.pyenv/versions/3.13.*/bin/python3: the floor this benchmark names")
    floor = str(FLOOR[-1])
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for arch in args.arch or ["x86_64"]:
            size = build(arch, out).stat().st_size
            print(f"layer zip {arch}: {size} bytes ({size / 1e6:.2f} MB)")
        executable = unpack_layer((out / "layer-x86_64.zip").read_bytes(), out / "opt")
        bundled = str(out / "opt" / build_layer.BUNDLED_PYTHON)
        zipapps = {"bundled": str(executable), floor: str(executable)}
        pythons = {"bundled": bundled, floor: floor}
        if args.compare:
            other = unpack_layer(args.compare.read_bytes(), out / "compared")
            zipapps["compared"] = str(other)
            pythons["compared"] = str(out / "compared" / build_layer.BUNDLED_PYTHON)
        rows = {
            "-I -S -c pass": None,
            "-I -S import extension": IMPORT,
            "-I -S import extension and the AWS client": CLIENT,
        }
        for title, statement in rows.items():
            commands = {
                label: command(python, zipapps[label], statement)
                for label, python in pythons.items()
            }
            times, cpu = time_runs(commands, args.runs)
            medians = {label: statistics.median(samples) for label, samples in times.items()}
            cpus = {label: statistics.median(samples) for label, samples in cpu.items()}
            print(f"\n{title} ({args.runs} interleaved runs)")
            for label, samples in times.items():
                print(
                    f"  {label}: median {medians[label] * 1000:.1f} ms, "
                    f"min {min(samples) * 1000:.1f} ms, CPU {cpus[label] * 1000:.1f} ms"
                )
            print(
                f"  bundled / floor: {medians['bundled'] / medians[floor]:.2f}x, "
                f"CPU {cpus['bundled'] / cpus[floor]:.2f}x"
            )
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
