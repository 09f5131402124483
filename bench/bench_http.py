"""Cache hits over HTTP against the floor server in the same run: wrk load, one keep-alive client.

Usage: python bench/bench_http.py [--duration S] [--rounds R] [--requests N] [--awake]

Figure 1: wrk, 2 threads, 8 connections, --latency, R rounds of S seconds on each target,
the targets taking turns (the first in each round alternates) so that drift on this shared
machine falls on both; the median round is reported. Figure 2: one keep-alive connection on a
raw socket, R rounds of N requests on each target, taking turns; p50 over all requests.
The floor (bench/floor_server.py) answers the extension's own response body, byte for byte.
Needs wrk (Debian package `wrk`: apt-get install -y wrk).
--awake keeps the vCPUs from idling meanwhile (harness.keep_awake says why).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import time

import harness

WRK_INSTALL = "apt-get install -y wrk"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/sec, p50 and p99 in ms, and the error count from wrk --latency output."""

    def latency(pct: str) -> float:
        found = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        if found is None:
            raise RuntimeError(f"no {pct}% latency in wrk output:\n{output}")
        return float(found.group(1)) * _UNITS[found.group(2)]

    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if rps is None:
        raise RuntimeError(f"no Requests/sec in wrk output:\n{output}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return {
        "rps": float(rps.group(1)),
        "p50": latency("50"),
        "p99": latency("99"),
        "errors": errors,
    }


def wrk(wrk_path: str, url: str, token: str, seconds: int) -> dict[str, float]:
    command = [wrk_path, "-t2", "-c8", f"-d{seconds}s", "--latency"]
    command += ["-H", f"{harness.TOKEN_HEADER}: {token}", url]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return parse_wrk(done.stdout)


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
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=3000, help="per keep-alive round")
    parser.add_argument("--awake", action="store_true", help="keep the vCPUs from idling")
    args = parser.parse_args()
    wrk_path = harness.need("wrk", WRK_INSTALL)

    with harness.keep_awake(args.awake) as mode, harness.setup() as s, harness.extension(s) as ext:
        path = harness.SECRET_PATH + s.moto.secret_name
        warm = harness.KeepAlive(ext.port, path, ext.token)
        status, body = warm.get()  # the miss that fills the cache
        warm.close()
        if status != 200:
            raise SystemExit(f"the extension answered {status}: {body!r}")
        with harness.floor_server(s.python, body) as floor_port:
            targets = {"extension": (ext.port, ext.token), "floor": (floor_port, "unused")}
            urls = {name: f"http://127.0.0.1:{port}{path}" for name, (port, _) in targets.items()}
            for name, (_, token) in targets.items():  # warm-up, not recorded
                wrk(wrk_path, urls[name], token, 2)
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
            order = list(targets)
            for _ in range(args.rounds):
                for name in order:
                    runs[name].append(wrk(wrk_path, urls[name], targets[name][1], args.duration))
                order.reverse()

            samples: dict[str, list[float]] = {name: [] for name in targets}
            clients = {
                name: harness.KeepAlive(port, path, token)
                for name, (port, token) in targets.items()
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

    def mid(name: str, field: str) -> float:
        return harness.median([run[field] for run in runs[name]])

    header = ["figure", "extension", "floor", "ratio ext/floor", "goal", "met?"]
    rows = []
    for field, label, unit, goal, better_high in (
        ("rps", "hit throughput, wrk -c8", "req/s", 0.9, True),
        ("p50", "hit p50, wrk -c8", "ms", 1 / 0.9, False),
        ("p99", "hit p99, wrk -c8", "ms", 1 / 0.9, False),
    ):
        e, f = mid("extension", field), mid("floor", field)
        ratio = e / f
        met = ratio >= goal if better_high else ratio <= goal
        sign = ">=" if better_high else "<="
        fmt = "{:.0f} " if field == "rps" else "{:.3f} "
        rows.append(
            [
                label,
                fmt.format(e) + unit,
                fmt.format(f) + unit,
                f"{ratio:.2f}",
                f"{sign} {goal:.2f}",
                "yes" if met else "NO",
            ]
        )
    limits: tuple[tuple[int, float | None], ...] = ((50, 1.2), (99, None))
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
    wrk_errors = sum(run["errors"] for name in runs for run in runs[name])
    title = (
        f"bench_http: python {harness.python_version(s.python)}, {harness.machine()}, {mode}, "
        f"body {len(body)} B, wrk {args.rounds} x {args.duration} s per target (median round), "
        f"keep-alive {(args.rounds + 2) * args.requests} requests per target; "
        f"wrk errors/non-2xx {wrk_errors:.0f}, extension ERROR lines {errors}"
    )
    print(harness.table(title, header, rows))
    for name, name_runs in runs.items():
        rps = ", ".join(f"{run['rps']:.0f}" for run in name_runs)
        print(f"\n{name} req/s per round: {rps}", end="")
    print()


if __name__ == "__main__":
    main()
