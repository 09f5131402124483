"""A Node.js function's cold start with the layer that carries its own Python, beside Python's.

Usage: python -m bench.bench_sandbox_node [--rounds N] [--warm N] [--starts N] [--python PATH]

One run, one moto (plain HTTP, signatures checked), two sandboxes that follow Lambda's init
order (bench_sandbox.run_sandbox):
  py:*    a Python function: awslambdaric, the small layer run by the runtime's python3
          (--python, default pyenv's newest 3.13, as on the python3.13 runtime)
  node:*  a Node.js function: aws-lambda-ric from npm, no python3 anywhere on PATH, the layer
          built with `build_layer.py --arch x86_64 --with-python` (its own interpreter)
Variants, in each sandbox:
  zero-cost  the handler reads the secret from a server that was already running
  ext        the handler reads it through the extension (no prefetch)
  ext-init   (node) the function reads it at init (top-level await) and on every invoke
Variants take turns within each round; each round runs on all CPUs and pinned to one
(taskset -c 0); medians over rounds in ms from the sandbox's first Popen.

Goals:
  - first answer, ext / zero-cost: Node.js's ratio within 0.05 of Python's, same run
  - interpreter start, Popen to exit of `python3 -I -S -c pass`: the layer's own interpreter
    / the runtime's python3 (--python) <= 1.0 (--starts of each, interleaved)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import bench_sandbox, node_sandbox
from bench.bench_sandbox import SECRET_ID, SECRET_VALUE, Context, Result, zero_cost_server
from bench.node_sandbox import NodeContext

PY_VARIANTS = ("zero-cost", "ext")
NODE_VARIANTS = ("zero-cost", "ext", "ext-init")


def runtime_python() -> Path:
    """The newest pyenv 3.13 (Lambda's python3.13 runtime is CPython 3.13), else this one."""
    found = sorted(
        Path.home().glob(".pyenv/versions/3.13.*/bin/python3.13"),
        key=lambda p: [int(x) for x in p.parts[-3].split(".") if x.isdigit()],
    )
    return found[-1] if found else Path(sys.executable)


def starts(commands: dict[str, list[str]], count: int) -> dict[str, float]:
    """Median seconds from Popen to exit of each command, run in turns `count` times."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(count):
        for name, command in commands.items():
            started = time.perf_counter()
            subprocess.run(command, check=True)
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(samples) for name, samples in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15, help="cold starts per variant and mode")
    parser.add_argument("--warm", type=int, default=5, help="warm invokes after each cold one")
    parser.add_argument("--starts", type=int, default=41, help="interpreter starts of each")
    parser.add_argument("--python", help="the runtime's python3 (default: pyenv's newest 3.13)")
    args = parser.parse_args()
    if shutil.which("taskset") is None:
        raise SystemExit("needs taskset (util-linux)")
    python = Path(args.python) if args.python else runtime_python()
    from bench import harness, with_python  # moto and the layers: only once there is work

    ric = node_sandbox.runtime_client()
    node = node_sandbox.node()
    assert node is not None
    with harness.setup(str(python)) as s:
        layer_zip = with_python.build("x86_64", s.tmp / "with-python.zip")
        bundled_opt = s.tmp / "opt-with-python"
        bundled_executable = with_python.unpack(layer_zip, bundled_opt)
        bundled = with_python.interpreter(bundled_opt)
        sm = s.moto.boto3_client("secretsmanager")  # admin: the role may only read
        sm.create_secret(Name=SECRET_ID, SecretString=SECRET_VALUE)  # type: ignore[attr-defined]
        env = {
            "AWS_REGION": harness.REGION,
            "AWS_DEFAULT_REGION": harness.REGION,
            "AWS_ACCESS_KEY_ID": s.creds.access_key,
            "AWS_SECRET_ACCESS_KEY": s.creds.secret_key,
            "AWS_SESSION_TOKEN": s.creds.session_token,
            "AWS_ENDPOINT_URL": s.moto.endpoint,
        }
        no_python = node_sandbox.path_without_python(s.tmp / "no-python-bin")
        with zero_cost_server(s.python) as zero_port:
            py = Context(
                extension=s.executable,
                python=s.python,
                runtime_python=Path(sys.executable),
                env={**env, "PATH": s.path},
                tmp=s.tmp,
                zero_cost_port=zero_port,
            )
            js = NodeContext(
                extension=bundled_executable,
                node=node,
                runtime_client=ric,
                env={**env, "PATH": no_python},
                tmp=s.tmp,
                zero_cost_port=zero_port,
            )
            print(f"# bench_sandbox_node: {harness.machine()}, `uptime`: {uptime()}")
            print(
                f"# Python sandbox: extension on python {harness.python_version(s.python)} "
                f"({s.python}); Node.js sandbox: node {node_version(node)}, "
                f"the layer's own python {python_version(bundled)}"
            )
            print(f"# {args.rounds} rounds, {args.warm} warm invokes each; medians in ms\n")
            for pin in (False, True):
                run_mode(py, js, args.rounds, args.warm, pin)
        floor = starts(
            {
                "runtime": [str(s.python), "-I", "-S", "-c", "pass"],
                "bundled": [str(bundled), "-I", "-S", "-c", "pass"],
            },
            args.starts,
        )
        ratio = floor["bundled"] / floor["runtime"]
        print(
            f"- interpreter start (Popen to exit of `-I -S -c pass`, {args.starts} each, "
            f"interleaved): the layer's own {floor['bundled'] * 1e3:.1f} ms, the runtime's "
            f"{floor['runtime'] * 1e3:.1f} ms: {ratio:.2f} (goal <= 1.0)"
        )


def python_version(python: Path) -> str:
    """X.Y.Z, asking only sys (the layer's interpreter carries the extension's modules only)."""
    return subprocess.run(
        [str(python), "-I", "-S", "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def uptime() -> str:
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


def node_version(node: Path) -> str:
    return subprocess.run(
        [str(node), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()


def run_mode(py: Context, js: NodeContext, rounds: int, warm: int, pin: bool) -> None:
    names = [f"py:{v}" for v in PY_VARIANTS] + [f"node:{v}" for v in NODE_VARIANTS]
    results: dict[str, list[Result]] = {name: [] for name in names}
    for _ in range(rounds):
        for variant in PY_VARIANTS:
            results[f"py:{variant}"].append(
                bench_sandbox.cold_start(variant, py, warm=warm, pin=pin)
            )
        for variant in NODE_VARIANTS:
            results[f"node:{variant}"].append(
                node_sandbox.cold_start(variant, js, warm=warm, pin=pin)
            )
    mode = "pinned to one CPU (taskset -c 0)" if pin else f"all {os.cpu_count()} CPUs"
    print(f"## {mode}\n")
    print("| sandbox:variant | register | extension's next | init end | first answer | warm p50 |")
    print("|---|---:|---:|---:|---:|---:|")
    first: dict[str, float] = {}
    for name, runs in results.items():
        registers = [r.register for r in runs if r.register is not None]
        nexts = [r.ext_next for r in runs if r.ext_next is not None]
        first[name] = statistics.median(r.first_answer for r in runs) * 1e3
        init = statistics.median(r.init for r in runs) * 1e3
        warm_p50 = statistics.median(t for r in runs for t in r.warm) * 1e3 if warm else 0.0
        register = f"{statistics.median(registers) * 1e3:.1f}" if registers else "-"
        ext_next = f"{statistics.median(nexts) * 1e3:.1f}" if nexts else "-"
        print(
            f"| {name} | {register} | {ext_next} | {init:.1f} | {first[name]:.1f} "
            f"| {warm_p50:.2f} |"
        )
    py_ratio = first["py:ext"] / first["py:zero-cost"]
    node_ratio = first["node:ext"] / first["node:zero-cost"]
    print(
        f"\n- first answer, ext / zero-cost: Node.js {node_ratio:.3f}, Python {py_ratio:.3f}; "
        f"difference {node_ratio - py_ratio:+.3f} (goal within 0.05)"
    )
    # The same ratio over a faster runtime is larger for the same cost: show the cost too.
    node_ms = first["node:ext"] - first["node:zero-cost"]
    py_ms = first["py:ext"] - first["py:zero-cost"]
    print(f"- first answer, ext - zero-cost: Node.js {node_ms:.1f} ms, Python {py_ms:.1f} ms\n")


if __name__ == "__main__":
    main()
