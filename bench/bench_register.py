"""Where the time from exec to `register` goes, as shares of a bare interpreter's start.

Usage: python -m bench.bench_register [--runs N] [--python PATH] [--pin]
                                      [--with-python [--base REV]]

Five ways to start, interleaved run by run (the order rotates) and timed from Popen to the
fake Extensions API receiving `register` (the first, the floor the goal names, to its exit).
The first four each add one piece to the one before; each one's median minus the previous
one's is that piece's cost:
  bare        python3 -I -S -c pass, Popen to exit
  +http       python3 -I -S, a `register` on a raw socket (_socket, as lifecycle sends it)
  +modules    the same after the launcher's program has set up its finder (the index of the
              zipapp's modules read) and imported `version` through it
  +ours       python3 -I -S -c <the launcher's program> <zipapp>: boot, lifecycle, the signal
              waiter, listening, register (Python registers: no launcher)
  layer       the layer's executable as built: its native launcher registers before it execs
              python3 (native_launcher/main.c)
`python3` is a symlink to the interpreter, as /var/lang/bin/python3 is on Lambda. --pin runs
every step under `taskset -c 0`, as a 1-vCPU function's sandbox (the fake Extensions API
stays unpinned). --with-python times the layer built `--with-python` instead: its own
interpreter (started with the launcher's flags, `-X utf8`, from `bare` on) and its
executable (an sh launcher; the interpreter's main() registers), whatever --python. With
--base REV, REV's executable built --with-python by REV's build_layer.py takes turns with
the steps: exec -> register, this / REV, in the same runs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench import harness, with_python
from tests.fake_extensions_api import FakeExtensionsApi

RAW_REGISTER = """\
import _socket, posix
host, _, port = posix.environ[b"AWS_LAMBDA_RUNTIME_API"].rpartition(b":")
sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
sock.connect((host.decode(), int(port)))
body = b'{"events": ["SHUTDOWN"]}'
sock.sendall(b"POST /2020-01-01/extension/register HTTP/1.1\\r\\nHost: x\\r\\n"
             b"Lambda-Extension-Name: raw\\r\\nContent-Type: application/json\\r\\n"
             b"Content-Length: 24\\r\\nConnection: close\\r\\n\\r\\n" + body)
sock.recv(4096)
"""
STEPS = ("bare", "+http", "+modules", "+ours", "layer")


class Timer:
    """Popen to the fake's `register` (or to exit); one fake Extensions API for every run."""

    def __init__(self, fake: FakeExtensionsApi, path: str, prefix: list[str]) -> None:
        self.fake = fake
        self.prefix = prefix
        self.env = {"PATH": path, "AWS_LAMBDA_RUNTIME_API": fake.address}
        self.arrived = threading.Event()
        self.at = 0.0
        fake.on_register = self._mark

    def _mark(self) -> None:
        self.at = time.perf_counter()
        self.arrived.set()

    def to_exit(self, command: list[str]) -> float:
        started = time.perf_counter()
        proc = subprocess.Popen([*self.prefix, *command], env=self.env)
        if harness.wait_exit(proc, 10) != 0:
            raise RuntimeError(f"{command[:3]} failed")
        return (time.perf_counter() - started) * 1000

    def to_register(self, command: list[str]) -> float:
        self.arrived.clear()
        self.fake.registered.clear()
        env = {**self.env, "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(harness.free_port())}
        started = time.perf_counter()
        proc = subprocess.Popen(
            [*self.prefix, *command], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            if not self.arrived.wait(10):
                raise RuntimeError(f"no register from {command[:3]}")
            self.fake.registered.wait(10)  # answered: killing it now breaks no reply
            return (self.at - started) * 1000
        finally:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=41, help="runs of each step (default 41)")
    parser.add_argument("--python", help="the interpreter (default: this one)")
    parser.add_argument("--pin", action="store_true", help="run each step under taskset -c 0")
    parser.add_argument(
        "--with-python", action="store_true", help="the layer that carries its own python3"
    )
    parser.add_argument("--base", help="with --with-python: also REV's executable")
    args = parser.parse_args()
    if args.base and not args.with_python:
        parser.error("--base goes with --with-python (bench_compare compares small layers)")
    python = Path(args.python or sys.executable).resolve()
    flags: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-register-") as tmp_name:
        tmp = Path(tmp_name)
        if args.with_python:
            opt = tmp / "opt"
            executable = with_python.unpack(with_python.build("x86_64", tmp / "wp.zip"), opt)
            python = with_python.interpreter(opt)
            flags = ["-X", "utf8"]  # as its launcher starts it
        else:
            _, executable = harness.build_layer(python, tmp)
        version = harness.python_version(python)
        names = [*STEPS, *(["base"] if args.base else [])]
        base = with_python.base(args.base, tmp) if args.base else None
        path = harness.interpreter_path(python, tmp)
        python3 = path.split(":")[0] + "/python3"
        modules_first = harness.importing(
            executable, "from parameters_secrets_extension import version"
        )
        main_program = harness.launcher_program(executable)
        with FakeExtensionsApi() as fake:
            timer = Timer(fake, path, ["taskset", "-c", "0"] if args.pin else [])
            steps: dict[str, Callable[[], float]] = {
                "bare": lambda: timer.to_exit([python3, *flags, "-I", "-S", "-c", "pass"]),
                "+http": lambda: timer.to_register(
                    [python3, *flags, "-I", "-S", "-c", RAW_REGISTER]
                ),
                "+modules": lambda: timer.to_register(
                    [
                        python3,
                        *flags,
                        "-I",
                        "-S",
                        "-c",
                        modules_first + RAW_REGISTER,
                        str(executable),
                    ]
                ),
                "+ours": lambda: timer.to_register(
                    [python3, *flags, "-I", "-S", "-c", main_program, str(executable)]
                ),
                "layer": lambda: timer.to_register([str(executable)]),
                "base": lambda: timer.to_register([str(base)]),
            }
            samples: dict[str, list[float]] = {name: [] for name in names}
            for name in names:  # warm-up: page cache
                steps[name]()
            for run in range(args.runs):
                turn = run % len(names)
                for name in names[turn:] + names[:turn]:
                    samples[name].append(steps[name]())
    kind = "the layer built --with-python, its own" if args.with_python else "the small layer,"
    print(f"# bench_register: {harness.machine()}, {kind} python {version}")
    print(f"# `uptime` at the end: {harness.load_averages()}")
    pinned = ", pinned to one CPU (taskset -c 0)" if args.pin else ""
    print(f"# {args.runs} interleaved runs of each{pinned}; medians\n")
    bare = harness.median(samples["bare"])
    print("| step | Popen to register (bare: to exit) | added | added / bare |")
    print("|---|---:|---:|---:|")
    previous = 0.0
    for name in STEPS[:-1]:
        med = harness.median(samples[name])
        added = med - previous
        print(f"| {name} | {med:.2f} ms | {added:+.2f} ms | {added / bare:+.2f} |")
        previous = med
    layer = harness.median(samples["layer"])
    print(f"| layer | {layer:.2f} ms | | {layer / bare:.2f} of bare |")
    print(f"\nexec -> register / bare: {layer / bare:.2f} (goal <= 1.5)")
    if args.base:
        then = harness.median(samples["base"])
        print(
            f"exec -> register, {args.base}'s executable {then:.2f} ms, this one's "
            f"{layer:.2f} ms: {layer - then:+.2f} ms, "
            f"this / {args.base} {layer / then:.3f}"
        )


if __name__ == "__main__":
    main()
