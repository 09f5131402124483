"""Cache hits over HTTP against the floor server in the same run: wrk load, one keep-alive client.

Usage: python -m bench.bench_http [--duration S] [--rounds R] [--requests N] [--awake]
                                  [--python PATH]

Figure 1: wrk with 8 connections and --latency, on 1 thread and on 2 threads, R rounds of S
seconds on each target, the targets taking turns (the first in each round alternates) so that
drift on this shared machine falls on both; the median round is reported, and the median of
the per-round ratios (each extension run against the floor run next to it). CPU per request is
the server process's CPU time (user + system, from /proc) over the wrk run divided by the
requests wrk completed, in the same run. Figure 2: one keep-alive connection on a raw socket,
R rounds of N requests on each target, taking turns; p50 over all requests.
The floor (bench/floor_server.py) answers the extension's own response body, byte for byte.
The extension runs at PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL=warn.
Needs wrk (Debian package `wrk`: apt-get install -y wrk).
--awake keeps the vCPUs from idling meanwhile (harness.keep_awake says why).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import time
from pathlib import Path

from bench import harness

WRK_INSTALL = "apt-get install -y wrk"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
THREADS = (1, 2)  # wrk -t1 -c8 and -t2 -c8
_TICK = os.sysconf("SC_CLK_TCK")


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/sec, requests, p50 and p99 in ms, and the error count from wrk --latency."""

    def latency(pct: str) -> float:
        found = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        if found is None:
            raise RuntimeError(f"no {pct}% latency in wrk output:\n{output}")
        return float(found.group(1)) * _UNITS[found.group(2)]

    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    done = re.search(r"^\s*(\d+) requests in", output, re.MULTILINE)
    if rps is None or done is None:
        raise RuntimeError(f"no Requests/sec in wrk output:\n{output}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return {
        "rps": float(rps.group(1)),
        "requests": float(done.group(1)),
        "p50": latency("50"),
        "p99": latency("99"),
        "errors": errors,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads, from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def child_pid(script: str) -> int:
    """The pid of this process's child whose command line names `script`."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == me and script.encode() in cmdline:
            return int(entry.name)
    raise RuntimeError(f"no child process running {script}")


def wrk(
    wrk_path: str, url: str, token: str, seconds: int, *, threads: int, pid: int
) -> dict[str, float]:
    """One wrk run; adds the server's CPU microseconds per request as `cpu_us`."""
    command = [wrk_path, f"-t{threads}", "-c8", f"-d{seconds}s", "--latency"]
    command += ["-H", f"{harness.TOKEN_HEADER}: {token}", url]
    before = cpu_seconds(pid)
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    used = cpu_seconds(pid) - before
    run = parse_wrk(done.stdout)
    run["cpu_us"] = used / run["requests"] * 1e6
    return run


def keep_alive_samples(client: harness.KeepAlive, count: int) -> list[float]:
    """Milliseconds per request, `count` requests on one connection."""
    samples = []
    clock = time.perf_counter_ns
    for _ in range(count):
        start = clock()
        status, _ = client.get()
        samples.append((clock() - start) / 1e6)
        if status != 200:
            raise RuntimeError(f"status {status}")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=3000, help="per keep-alive round")
    parser.add_argument("--awake", action="store_true", help="keep the vCPUs from idling")
    parser.add_argument("--python", help="interpreter to build and run the layer and floor with")
    args = parser.parse_args()
    wrk_path = harness.need("wrk", WRK_INSTALL)
    env = {"PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL": "warn"}
    loads = [os.getloadavg()[0]]

    with (
        harness.keep_awake(args.awake) as mode,
        harness.setup(args.python) as s,
        harness.extension(s, env=env) as ext,
    ):
        path = harness.SECRET_PATH + s.moto.secret_name
        warm = harness.KeepAlive(ext.port, path, ext.token)
        status, body = warm.get()  # the miss that fills the cache
        warm.close()
        if status != 200:
            raise SystemExit(f"the extension answered {status}: {body!r}")
        with harness.floor_server(s.python, body) as floor_port:
            targets = {
                "extension": (ext.port, ext.token, ext.pid),
                "floor": (floor_port, "unused", child_pid("floor_server.py")),
            }
            urls = {name: f"http://127.0.0.1:{t[0]}{path}" for name, t in targets.items()}
            for name, (_, token, pid) in targets.items():  # warm-up, not recorded
                wrk(wrk_path, urls[name], token, 1, threads=2, pid=pid)
            runs: dict[tuple[str, int], list[dict[str, float]]] = {
                (name, t): [] for name in targets for t in THREADS
            }
            order = list(targets)
            for _ in range(args.rounds):
                for threads in THREADS:
                    for name in order:
                        _, token, pid = targets[name]
                        run = wrk(
                            wrk_path, urls[name], token, args.duration, threads=threads, pid=pid
                        )
                        runs[name, threads].append(run)
                    order.reverse()
                loads.append(os.getloadavg()[0])

            samples: dict[str, list[float]] = {name: [] for name in targets}
            clients = {
                name: harness.KeepAlive(port, path, token)
                for name, (port, token, _) in targets.items()
            }
            for client in clients.values():
                keep_alive_samples(client, 200)  # warm-up
            for _ in range(args.rounds + 2):
                for name in order:
                    samples[name] += keep_alive_samples(clients[name], args.requests)
                order.reverse()
            for client in clients.values():
                client.close()
            errors = ext.ext.output().count("ERROR")

    def mid(name: str, threads: int, field: str) -> float:
        return harness.median([run[field] for run in runs[name, threads]])

    header = ["figure", "extension", "floor", "ratio ext/floor (median of rounds)", "goal", "met?"]
    rows = []
    for threads in THREADS:
        for field, label, unit, goal, better_high in (
            # Guards against the one-write floor (bench/floor_server.py): not slower, no more CPU.
            ("rps", "hit throughput", "req/s", 1.0, True),
            ("cpu_us", "CPU per hit", "us", 1.0, False),
            ("p50", "hit p50", "ms", None, False),
            ("p99", "hit p99", "ms", 1.0, False),
        ):
            e, f = mid("extension", threads, field), mid("floor", threads, field)
            pairs = zip(runs["extension", threads], runs["floor", threads], strict=True)
            ratio = harness.median(
                [ext_run[field] / floor_run[field] for ext_run, floor_run in pairs]
            )
            sign = ">=" if better_high else "<="
            fmt = "{:.3f} " if unit == "ms" else "{:.0f} "
            met = "-"
            if goal is not None:
                met = "yes" if (ratio >= goal if better_high else ratio <= goal) else "NO"
            rows.append(
                [
                    f"{label}, wrk -t{threads} -c8",
                    fmt.format(e) + unit,
                    fmt.format(f) + unit,
                    f"{ratio:.2f}",
                    f"{sign} {goal:.2f}" if goal is not None else "-",
                    met,
                ]
            )
    limits: tuple[tuple[int, float | None], ...] = ((50, 1.0), (99, None))
    for pct, limit in limits:
        e = harness.percentile(samples["extension"], pct)
        f = harness.percentile(samples["floor"], pct)
        rows.append(
            [
                f"hit p{pct}, one keep-alive connection",
                f"{e * 1000:.0f} us",
                f"{f * 1000:.0f} us",
                f"{e / f:.2f}",
                f"<= {limit}" if limit else "-",
                ("yes" if e / f <= limit else "NO") if limit else "-",
            ]
        )
    wrk_errors = sum(run["errors"] for key in runs for run in runs[key])
    title = (
        f"bench_http: python {harness.python_version(s.python)}, {harness.machine()}, {mode}, "
        f"load average {min(loads):.2f}-{max(loads):.2f} during the runs, body {len(body)} B, "
        f"wrk {args.rounds} x {args.duration} s per target and thread count (median round), "
        f"keep-alive {(args.rounds + 2) * args.requests} requests per target; "
        f"wrk errors/non-2xx {wrk_errors:.0f}, extension ERROR lines {errors}"
    )
    print(harness.table(title, header, rows))
    for (name, threads), name_runs in runs.items():
        rounds = ", ".join(
            f"{run['rps']:.0f} ({run['cpu_us']:.0f} us, {run['p99']:.2f} ms)" for run in name_runs
        )
        print(f"\n{name} -t{threads} req/s (CPU per request, p99) per round: {rounds}", end="")
    print()


if __name__ == "__main__":
    main()
