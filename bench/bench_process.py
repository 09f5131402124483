"""The process from the built layer: init to the first `next`, SHUTDOWN to exit, RSS, zip size.

Usage: python -m bench.bench_process [--runs N] [--python PATH] [--awake]

Init: time from Popen of the layer's executable (its launcher execs `python3 -I -S`) to the
fake Extensions API receiving the first `next`, without and with prefetch (one secret and one
parameter, fetched from moto in parallel). Floors, measured the same way and interleaved run by
run: bare `python3 -I -S -c pass` (Popen to exit), and a minimal Python extension (-I -S,
http.server and threading imported, register, then `next`: harness.MINIMAL_EXTENSION).
`python3` is a symlink to the interpreter (a pyenv shim would add a bash start), as
/var/lang/bin/python3 is on Lambda.
SHUTDOWN: from the fake sending SHUTDOWN to the reaped exit, with and without an idle
keep-alive client connection open; floor: the minimal extension's exit.
RSS: VmRSS once idle after the first `next`: no CPU used for 0.1 s, so the warm-up thread is
done (harness.idle_rss_kb; floor: the minimal extension, blocked in `next`, read the same way),
and after 1000 distinct 4 KB secrets were fetched through it (floor: idle RSS plus the 1000
response bodies it must hold); that all 1000 are cached is checked at a counting proxy.
Zip: the layer's size; floor: a deflated zip of only the runtime .py sources it carries. What
the bytecode buys is measured too: init of the same executable built without it.
--awake keeps the vCPUs from idling meanwhile (harness.keep_awake says why).
"""

from __future__ import annotations

import argparse
import io
import random
import string
import subprocess
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import harness
from build_layer import runtime_modules
from tests.fake_extensions_api import FakeExtensionsApi

SECRETS = 1000
SECRET_BYTES = 4096


class Sample:
    """Per-variant lists of milliseconds or KiB."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}

    def add(self, name: str, value: float) -> None:
        self.values.setdefault(name, []).append(value)

    def median(self, name: str) -> float:
        return harness.median(self.values[name])


def bare_python(s: harness.Setup) -> float:
    python3 = s.path.split(":")[0] + "/python3"
    started = time.perf_counter()
    proc = subprocess.Popen([python3, "-I", "-S", "-c", "pass"])
    if harness.wait_exit(proc, 10) != 0:
        raise RuntimeError("bare python3 failed")
    return (time.perf_counter() - started) * 1000


def minimal_extension(s: harness.Setup, samples: Sample) -> None:
    """The floor extension: init to first next, RSS while blocked, SHUTDOWN to exit."""
    python3 = s.path.split(":")[0] + "/python3"
    with FakeExtensionsApi() as fake:
        marks: list[float] = []
        fake.on_first_next = lambda: marks.append(time.perf_counter())
        env = {"PATH": s.path, "AWS_LAMBDA_RUNTIME_API": fake.address}
        started = time.perf_counter()
        proc = subprocess.Popen([python3, "-I", "-S", "-c", harness.MINIMAL_EXTENSION], env=env)
        try:
            if not fake.first_next.wait(30):
                raise RuntimeError("the minimal extension never called next")
            samples.add("init_floor", (marks[0] - started) * 1000)
            samples.add("rss_floor", harness.idle_rss_kb(proc.pid))
            sent = time.perf_counter()
            fake.shutdown_extension()
            harness.wait_exit(proc, 10)
            samples.add("shutdown_floor", (time.perf_counter() - sent) * 1000)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def source_only_run(s: harness.Setup, samples: Sample, executable: Path) -> None:
    """Init to first next of the executable built without bytecode (what shipping it saves)."""
    with harness.extension(s, "init-source", executable=executable) as ext:
        samples.add("init_source", (ext.first_next - ext.started) * 1000)
        ext.shutdown()


def extension_run(s: harness.Setup, samples: Sample, prefetch: bool) -> None:
    """One extension start: init to first next, idle RSS, then SHUTDOWN to exit."""
    extra = {}
    if prefetch:
        extra["PARAMETERS_SECRETS_EXTENSION_PREFETCH"] = (
            f"secretsmanager:{s.moto.secret_name},ssm:{s.moto.param_string}"
        )
    tag = "prefetch" if prefetch else "plain"
    with harness.extension(s, f"init-{tag}", extra) as ext:
        samples.add(f"init_{tag}", (ext.first_next - ext.started) * 1000)
        if prefetch:
            samples.add("shutdown_no_client", ext.shutdown() * 1000)
            return
        samples.add("rss_idle", harness.idle_rss_kb(ext.pid))
        client = harness.KeepAlive(ext.port, harness.SECRET_PATH + s.moto.secret_name, ext.token)
        try:
            client.get()
            samples.add("shutdown_client", ext.shutdown() * 1000)
        finally:
            client.close()


def init_and_shutdown(s: harness.Setup, runs: int) -> Sample:
    samples = Sample()
    stripped = harness.source_only(s.tmp / "source-only" / "extensions" / s.executable.name)
    steps: list[Callable[[], None]] = [
        lambda: samples.add("bare", bare_python(s)),
        lambda: minimal_extension(s, samples),
        lambda: extension_run(s, samples, prefetch=False),
        lambda: extension_run(s, samples, prefetch=True),
        lambda: source_only_run(s, samples, stripped),
    ]
    for step in steps:  # warm-up: page cache, moto's code paths
        step()
    samples.values.clear()
    for run in range(runs):
        # Rotate the order so that no variant always follows the same one.
        turn = run % len(steps)
        for step in steps[turn:] + steps[:turn]:
            step()
    return samples


def create_secrets(s: harness.Setup) -> list[str]:
    """SECRETS secrets of SECRET_BYTES printable bytes each, fixed-seed content."""
    rng = random.Random(6)
    alphabet = string.ascii_letters + string.digits
    sm = s.moto.boto3_client("secretsmanager")
    names = [f"bench/rss-{i:04d}" for i in range(SECRETS)]
    values = ["".join(rng.choices(alphabet, k=SECRET_BYTES)) for _ in names]

    def create(item: tuple[str, str]) -> None:
        sm.create_secret(Name=item[0], SecretString=item[1])  # type: ignore[attr-defined]

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(create, zip(names, values, strict=True)))
    return names


def rss_cached(s: harness.Setup, names: list[str]) -> tuple[int, int, int]:
    """(RSS idle, RSS with every name cached, bytes of the cached bodies), RSS in KiB."""
    with harness.FaultProxy(s.moto.host, s.moto.port) as proxy:
        endpoint = f"http://127.0.0.1:{proxy.port}"
        with harness.extension(s, "rss", {"AWS_ENDPOINT_URL": endpoint}) as ext:
            time.sleep(0.5)
            idle = harness.idle_rss_kb(ext.pid)

            def fetch_all(chunk: list[str]) -> int:
                total = 0
                client = harness.KeepAlive(ext.port, "/", ext.token)
                try:
                    for name in chunk:
                        status, body = client.get(harness.SECRET_PATH + name)
                        if status != 200:
                            raise RuntimeError(f"status {status} for {name}")
                        total += len(body)
                finally:
                    client.close()
                return total

            chunks = [names[i::4] for i in range(4)]
            with ThreadPoolExecutor(4) as pool:
                body_bytes = sum(pool.map(fetch_all, chunks))
            fetched = proxy.requests_received
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(fetch_all, chunks))
            if proxy.requests_received != fetched:
                raise RuntimeError("not every secret stayed cached")
            time.sleep(0.5)
            cached = harness.rss_kb(ext.pid)
    return idle, cached, body_bytes


def zip_sizes(s: harness.Setup) -> tuple[int, int]:
    """(layer zip size, size of a deflated zip of only the runtime .py sources it carries)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as floor:
        for name in runtime_modules(harness.ROOT):
            source = (harness.ROOT / name).read_bytes()
            floor.writestr(name, source, zipfile.ZIP_DEFLATED, compresslevel=9)
    return s.layer_zip.stat().st_size, len(buffer.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=31)
    parser.add_argument("--python", help="interpreter to build and run the layer with")
    parser.add_argument("--awake", action="store_true", help="keep the vCPUs from idling")
    args = parser.parse_args()

    with harness.keep_awake(args.awake) as mode, harness.setup(args.python) as s:
        python = harness.python_version(s.python)
        t = init_and_shutdown(s, args.runs)
        names = create_secrets(s)
        idle, cached, body_bytes = rss_cached(s, names)
        layer, sources = zip_sizes(s)

    def ms(name: str) -> str:
        return f"{t.median(name):.1f} ms"

    def mb(kib: float) -> str:
        return f"{kib / 1024:.1f} MiB"

    bare, minimal = t.median("bare"), t.median("init_floor")
    rows = []
    for tag, label in (
        ("plain", "no prefetch"),
        ("prefetch", "prefetch 1 secret + 1 parameter"),
        ("source", "no prefetch, sources only (no bytecode)"),
    ):
        value = t.median(f"init_{tag}")
        rows.append(
            [
                f"init, exec to first next, {label}",
                f"{value:.1f} ms",
                f"bare {bare:.1f} ms; minimal ext {minimal:.1f} ms",
                f"{value / bare:.2f}; {value / minimal:.2f}",
                "<= 35 ms",
                "yes" if value <= 35 else "NO",
            ]
        )
    rss_floor = t.median("rss_floor")
    rss_idle = t.median("rss_idle")
    cached_floor = idle + body_bytes / 1024
    rows += [
        [
            "RSS idle",
            mb(rss_idle),
            f"minimal ext {mb(rss_floor)}",
            f"{rss_idle / rss_floor:.2f}",
            "<= 20 MB (MiB)",
            "yes" if rss_idle <= 20 * 1024 else "NO",
        ],
        [
            f"RSS, {SECRETS} x {SECRET_BYTES // 1024} KB secrets cached",
            mb(cached),
            f"idle {mb(idle)} + bodies {mb(body_bytes / 1024)}",
            f"{cached / cached_floor:.2f}",
            "<= 32 MB (MiB)",
            "yes" if cached <= 32 * 1024 else "NO",
        ],
        [
            "layer zip size",
            f"{layer} B ({layer / 1024:.1f} KiB)",
            f".py only, deflated {sources / 1024:.1f} KiB",
            f"{layer / sources:.2f}",
            "<= 64 KB (KiB)",
            "yes" if layer <= 64 * 1024 else "NO",
        ],
    ]
    shutdown_floor = t.median("shutdown_floor")
    for name, label in (
        ("shutdown_client", "SHUTDOWN to exit, idle client connection open"),
        ("shutdown_no_client", "SHUTDOWN to exit, no client connection"),
    ):
        value = t.median(name)
        rows.append(
            [
                label,
                ms(name),
                f"minimal ext {shutdown_floor:.1f} ms",
                f"{value / shutdown_floor:.2f}",
                "< 100 ms",
                "yes" if value < 100 else "NO",
            ]
        )
    title = (
        f"bench_process: python {python} ({Path(s.python).name}), {harness.machine()}, {mode}, "
        f"medians of {args.runs} interleaved runs per variant"
    )
    header = ["figure", "measured", "floor", "ratio", "goal", "met?"]
    print(harness.table(title, header, rows))
    for name, values in t.values.items():
        spread = f"min {min(values):.1f}, max {max(values):.1f}"
        print(f"\n{name}: median {harness.median(values):.1f}, {spread}", end="")
    print()


if __name__ == "__main__":
    main()
