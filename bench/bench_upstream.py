"""Hits and misses against direct boto3/botocore calls to the same moto; coalescing; connections.

Usage: python -m bench.bench_upstream [--rounds R] [--calls N] [--awake]

Figure 3: a hit (http.client on one keep-alive connection, body parsed with json.loads, as a
function would) against boto3 get_secret_value with the same credentials to the same moto.
Figure 4: a miss through the extension (SECRETS_MANAGER_TTL=0) against botocore's
get_secret_value. Both: R rounds of N calls per side, sides taking turns; medians over all.
Figure 8: 64 threads, each on its own connection, released together on one cold key while the
fault proxy in front of moto holds the first upstream request 200 ms; upstream requests counted
at the proxy, over 5 keys. Figure 9: 1000 sequential misses (TTL 0) through the proxy, and 1000
from 8 concurrent clients; TCP connections counted at the proxy.
--awake keeps the vCPUs from idling meanwhile (harness.keep_awake says why).
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
import urllib.request
from collections.abc import Callable

from bench import harness

MAX_CONNECTIONS = 3  # the extension's default PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS
COLD_CLIENTS = 64
COALESCE_KEYS = 5
MISSES = 1000


def timed(call: Callable[[], object], count: int) -> list[float]:
    """Milliseconds per call."""
    samples = []
    clock = time.perf_counter_ns
    for _ in range(count):
        start = clock()
        call()
        samples.append((clock() - start) / 1e6)
    return samples


class HttpClient:
    """http.client on one keep-alive connection, with the token, parsing the JSON it gets."""

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {harness.TOKEN_HEADER: token}

    def get(self, path: str) -> object:
        self.conn.request("GET", path, headers=self.headers)
        response = self.conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"status {response.status}: {body[:200]!r}")
        return json.loads(body)


def alternate(sides: dict[str, Callable[[], object]], rounds: int, calls: int) -> dict[str, float]:
    """Median ms per call of each side, over `rounds` turns of `calls` calls."""
    for call in sides.values():
        timed(call, max(5, calls // 10))  # warm-up: connections, caches, code paths
    samples: dict[str, list[float]] = {name: [] for name in sides}
    order = list(sides)
    for _ in range(rounds):
        for name in order:
            samples[name] += timed(sides[name], calls)
        order.reverse()
    return {name: harness.median(values) for name, values in samples.items()}


def hit_and_miss(s: harness.Setup, rounds: int, calls: int) -> dict[str, float]:
    sm = s.boto3_client("secretsmanager")
    name = s.moto.secret_name
    path = harness.SECRET_PATH + name

    def boto3_call() -> object:
        return sm.get_secret_value(SecretId=name)  # type: ignore[attr-defined]

    with harness.extension(s, "hits") as ext:
        client = HttpClient(ext.port, ext.token)
        client.get(path)  # fill the cache
        url = f"http://127.0.0.1:{ext.port}{path}"

        def urllib_hit() -> object:
            request = urllib.request.Request(url, headers={harness.TOKEN_HEADER: ext.token})
            with urllib.request.urlopen(request) as response:
                return json.loads(response.read())

        hits = alternate(
            {"hit": lambda: client.get(path), "hit_urllib": urllib_hit, "boto3": boto3_call},
            rounds,
            calls,
        )
    with harness.extension(s, "misses", {"SECRETS_MANAGER_TTL": "0"}) as ext:
        client = HttpClient(ext.port, ext.token)
        misses = alternate(
            {"miss": lambda: client.get(path), "botocore": boto3_call}, rounds, calls
        )
    return hits | {name + "_miss": value for name, value in misses.items()}


def _ask(client: harness.KeepAlive, barrier: threading.Barrier, statuses: list[int]) -> None:
    barrier.wait()
    statuses.append(client.get()[0])


def coalescing(s: harness.Setup) -> list[int]:
    """Upstream requests for each cold key asked by COLD_CLIENTS clients at once."""
    sm = s.moto.boto3_client("secretsmanager")
    counts = []
    with harness.FaultProxy(s.moto.host, s.moto.port) as proxy:
        endpoint = f"http://127.0.0.1:{proxy.port}"
        with harness.extension(s, "coalesce", {"AWS_ENDPOINT_URL": endpoint}) as ext:
            for key in range(COALESCE_KEYS):
                name = f"bench/coalesce-{key}"
                sm.create_secret(Name=name, SecretString=f"coalesce-VALUE-{key}")  # type: ignore[attr-defined]
                clients = [
                    harness.KeepAlive(ext.port, harness.SECRET_PATH + name, ext.token)
                    for _ in range(COLD_CLIENTS)
                ]
                barrier = threading.Barrier(COLD_CLIENTS)
                statuses: list[int] = []
                threads = [
                    threading.Thread(target=_ask, args=(c, barrier, statuses)) for c in clients
                ]
                before = proxy.requests_received
                proxy.set_fault("delay", times=1, delay_ms=200)
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(60)
                for client in clients:
                    client.close()
                if statuses != [200] * COLD_CLIENTS:
                    raise RuntimeError(f"statuses {sorted(set(statuses))}, {len(statuses)} answers")
                counts.append(proxy.requests_received - before)
    return counts


def connections(s: harness.Setup) -> tuple[int, int, float, float]:
    """TCP connections to the proxy for MISSES misses, sequential and from 8 clients; seconds."""
    path = harness.SECRET_PATH + s.moto.secret_name
    with harness.FaultProxy(s.moto.host, s.moto.port) as proxy:
        endpoint = f"http://127.0.0.1:{proxy.port}"
        env = {"AWS_ENDPOINT_URL": endpoint, "SECRETS_MANAGER_TTL": "0"}
        with harness.extension(s, "connections", env) as ext:
            client = harness.KeepAlive(ext.port, path, ext.token)
            before = proxy.connections_accepted, proxy.requests_received
            start = time.perf_counter()
            for _ in range(MISSES):
                if client.get()[0] != 200:
                    raise RuntimeError("a miss failed")
            sequential_s = time.perf_counter() - start
            client.close()
            sequential = proxy.connections_accepted - before[0]
            if proxy.requests_received - before[1] != MISSES:
                raise RuntimeError("not every request was a miss")

            before = proxy.connections_accepted, proxy.requests_received
            clients = [harness.KeepAlive(ext.port, path, ext.token) for _ in range(8)]

            def run(client: harness.KeepAlive) -> None:
                for _ in range(MISSES // len(clients)):
                    client.get()

            threads = [threading.Thread(target=run, args=(c,)) for c in clients]
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            concurrent_s = time.perf_counter() - start
            for client in clients:
                client.close()
            concurrent = proxy.connections_accepted - before[0]
            if proxy.requests_received - before[1] != MISSES:
                raise RuntimeError("not every concurrent request was a miss")
    return sequential, concurrent, sequential_s, concurrent_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=100, help="per side per round")
    parser.add_argument("--awake", action="store_true", help="keep the vCPUs from idling")
    args = parser.parse_args()

    with harness.keep_awake(args.awake) as mode, harness.setup() as s:
        t = hit_and_miss(s, args.rounds, args.calls)
        coalesced = coalescing(s)
        sequential, concurrent, sequential_s, concurrent_s = connections(s)
        python = harness.python_version(s.python)

    def us(ms: float) -> str:
        return f"{ms * 1000:.0f} us"

    rows = [
        [
            "hit, http.client keep-alive + json.loads",
            us(t["hit"]),
            f"boto3 {us(t['boto3'])}",
            f"{t['boto3'] / t['hit']:.1f}x faster",
            ">= 15x faster",
            "yes" if t["boto3"] / t["hit"] >= 15 else "NO",
        ],
        [
            "hit, urllib.request (new connection each, README client)",
            us(t["hit_urllib"]),
            f"boto3 {us(t['boto3'])}",
            f"{t['boto3'] / t['hit_urllib']:.1f}x faster",
            "-",
            "-",
        ],
        [
            "miss through the extension (TTL 0)",
            us(t["miss_miss"]),
            f"botocore {us(t['botocore_miss'])}",
            f"{t['miss_miss'] / t['botocore_miss']:.2f}",
            "<= 1.0",
            "yes" if t["miss_miss"] <= t["botocore_miss"] else "NO",
        ],
        [
            f"upstream calls per {COLD_CLIENTS} concurrent cold requests ({COALESCE_KEYS} keys)",
            ", ".join(map(str, coalesced)),
            "1",
            f"{max(coalesced)}",
            "exactly 1",
            "yes" if set(coalesced) == {1} else "NO",
        ],
        [
            f"upstream connections, {MISSES} sequential misses ({sequential_s:.1f} s)",
            str(sequential),
            "1",
            f"{sequential}",
            f"<= {MAX_CONNECTIONS}",
            "yes" if sequential <= MAX_CONNECTIONS else "NO",
        ],
        [
            f"upstream connections, {MISSES} misses from 8 clients ({concurrent_s:.1f} s)",
            str(concurrent),
            "1",
            f"{concurrent}",
            f"<= {MAX_CONNECTIONS}",
            "yes" if concurrent <= MAX_CONNECTIONS else "NO",
        ],
    ]
    title = (
        f"bench_upstream: python {python}, {harness.machine()}, {mode}, medians of "
        f"{args.rounds} x {args.calls} calls per side, moto with signature checks"
    )
    header = ["figure", "measured", "floor", "ratio", "goal", "met?"]
    print(harness.table(title, header, rows))


if __name__ == "__main__":
    main()
