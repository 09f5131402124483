"""Cost of a cache hit in ns/op, against a dict lookup under a threading.Lock in the same run.

Usage: python -m bench.bench_cache [--loops N] [--repeat R] [--instructions]

Each figure is timed in R rounds of N calls, the figures taking turns within a round so that
noise from the shared machine falls on all of them alike; the best round is reported (the
least disturbed), with the median beside it. Loop overhead is included in every figure.

--instructions also counts instructions per call under valgrind's callgrind (Debian package
`valgrind`): a count that other load on the machine does not disturb. Each figure runs twice,
with N and 2N calls, and the difference divided by N removes start-up from the count.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Hashable

from cache import Cache

# A key shaped like the server's: (service, id, versionId, versionStage, version, label, decrypt).
KEY = ("secretsmanager", "prod/db-credentials", None, None, None, None, True)
TTL = 300.0


Call = Callable[[Hashable, float, Callable[[], bytes]], object]


def figures() -> dict[str, Call]:
    """Each figure as a call with get_or_fetch's arguments, so call overhead is alike."""
    lock = threading.Lock()
    table: dict[Hashable, bytes] = {KEY: b"value"}

    def floor(key: Hashable, ttl: float, fetch: Callable[[], bytes]) -> object:
        with lock:
            return table[key]

    cache = Cache(1000)
    cache.get_or_fetch(KEY, TTL, lambda: b"value")
    return {
        "floor: dict lookup under a threading.Lock": floor,
        "cache hit: get_or_fetch, fresh entry": cache.get_or_fetch,
    }


def _never() -> bytes:
    raise AssertionError("a hit must not fetch")


def time_once(call: Call, loops: int) -> float:
    """ns per call over `loops` calls."""
    repeat = itertools.repeat(None, loops)
    start = time.perf_counter_ns()
    for _ in repeat:
        call(KEY, TTL, _never)
    return (time.perf_counter_ns() - start) / loops


def run_calls(name: str, loops: int) -> None:
    """The body of one callgrind run: `loops` calls of one figure, nothing else timed."""
    call = figures()[name]
    for _ in itertools.repeat(None, loops):
        call(KEY, TTL, _never)


def instructions(name: str, loops: int) -> float:
    """Instructions per call of one figure, counted by callgrind."""
    counts = []
    for n in (loops, 2 * loops):
        command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
        command += [sys.executable, __file__, "--run-one", name, "--loops", str(n)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        found = re.search(r"Collected : (\d+)", done.stderr)
        if found is None:
            raise SystemExit(f"no callgrind total in: {done.stderr[-500:]}")
        counts.append(int(found.group(1)))
    return (counts[1] - counts[0]) / loops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--run-one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        run_calls(args.run_one, args.loops)
        return
    if args.instructions and shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind: apt-get install valgrind")

    calls = figures()
    rounds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.repeat):
        for name, call in calls.items():
            rounds[name].append(time_once(call, args.loops))

    floor = min(next(iter(rounds.values())))
    print(f"python {platform.python_version()}, {args.repeat} rounds x {args.loops} calls")
    print(f"{'figure':<45} {'ns/op best':>10} {'median':>8} {'ratio':>6}")
    for name, times in rounds.items():
        best = min(times)
        median = statistics.median(times)
        print(f"{name:<45} {best:>10.1f} {median:>8.1f} {best / floor:>6.2f}")
    if args.instructions:
        counts = {name: instructions(name, 100_000) for name in calls}
        base = next(iter(counts.values()))
        print(f"\n{'figure':<45} {'instr/op':>10} {'ratio':>6}")
        for name, count in counts.items():
            print(f"{name:<45} {count:>10.0f} {count / base:>6.2f}")


if __name__ == "__main__":
    main()
