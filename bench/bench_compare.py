"""Another commit's layer against this tree's, interleaved run by run: exec -> `register` and
exec -> first `next`, each as a ratio to a bare interpreter's start measured in the same run.

Usage: python -m bench.bench_compare [--base REV] [--runs N]

The base commit's files come from `git archive REV` and its own build_layer.py builds its
layer; this tree's layer is built as every bench script builds it. Each run starts the bare
interpreter (`python3 -I -S -c pass`, Popen to exit: the floor), then both extensions in an
order that alternates, as Lambda would (its launcher, fake Extensions API, moto credentials),
timed from Popen to the fake receiving `register` and the first `next`. For a change that
must leave cold start unchanged or better, such as a refactoring.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import harness
from tests.conftest import free_port
from tests.extension_process import ExtensionProcess, lambda_env
from tests.fake_extensions_api import FakeExtensionsApi

WARM_UP = 3


def start(s: harness.Setup, executable: Path, name: str) -> tuple[float, float]:
    """(ms to `register`, ms to the first `next`) of one start of `executable`."""
    fake = FakeExtensionsApi()
    marks: dict[str, float] = {}

    def mark(name: str) -> Callable[[], None]:
        return lambda: marks.__setitem__(name, marks.get(name, time.perf_counter()))

    fake.on_register = mark("register")
    fake.on_first_next = mark("next")
    environ = lambda_env(s.moto, s.creds, free_port(), fake.address)
    environ["PATH"] = s.path
    try:
        started = time.perf_counter()
        with ExtensionProcess(executable, environ, s.tmp / f"{name}.log") as ext:
            if not fake.first_next.wait(30):
                raise RuntimeError(f"no first next from {name}:\n{ext.output()[-2000:]}")
            fake.shutdown_extension()
            harness.wait_exit(ext.proc, 10)
    finally:
        fake.stop()
    return (marks["register"] - started) * 1000, (marks["next"] - started) * 1000


def base_layer(rev: str, python: Path, tmp: Path) -> Path:
    """The executable of `rev`'s layer, built by `rev`'s own build_layer.py."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev], cwd=harness.ROOT, capture_output=True, check=True
    ).stdout
    source = tmp / "base-source"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(source, filter="data")
    output = tmp / "base.zip"
    subprocess.run(
        [str(python), str(source / "build_layer.py"), "--arch", "x86_64", "--output", str(output)],
        cwd=source,
        capture_output=True,
        check=True,
    )
    return harness.unpack_layer(output.read_bytes(), tmp / "base-opt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="the commit to compare with (main)")
    parser.add_argument("--runs", type=int, default=31, help="runs of each (default 31)")
    args = parser.parse_args()
    with harness.setup() as s:
        layers = {"base": base_layer(args.base, s.python, s.tmp), "this": s.executable}
        python3 = s.path.split(":")[0] + "/python3"

        def bare() -> float:
            started = time.perf_counter()
            subprocess.run([python3, "-I", "-S", "-c", "pass"], check=True)
            return (time.perf_counter() - started) * 1000

        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in layers}
        floors: list[float] = []
        for run in range(WARM_UP + args.runs):
            names = sorted(layers) if run % 2 else sorted(layers, reverse=True)
            floor = bare()
            times = {name: start(s, layers[name], name) for name in names}
            if run >= WARM_UP:
                floors.append(floor)
                for name, pair in times.items():
                    samples[name].append(pair)
        floor = statistics.median(floors)
        print(
            f"# bench_compare: {harness.machine()}, python {harness.python_version(s.python)},"
            f" {args.runs} interleaved runs, medians; base {args.base}"
        )
        print(f"bare python3 -I -S -c pass: {floor:.2f} ms\n")
        print("| layer | exec -> register | / bare | exec -> first next | / bare |")
        print("|---|---:|---:|---:|---:|")
        for name in ("base", "this"):
            register = statistics.median(pair[0] for pair in samples[name])
            first_next = statistics.median(pair[1] for pair in samples[name])
            print(
                f"| {name} | {register:.2f} ms | {register / floor:.2f} |"
                f" {first_next:.2f} ms | {first_next / floor:.2f} |"
            )


if __name__ == "__main__":
    main()
