"""Run every bench script in turn, each in its own process, and print their tables.

Usage: python -m bench.run_all   (from the repository root; takes about seven minutes)

The latency-bound scripts run twice: as the machine is, and with --awake (vCPUs kept from
idling), because on this VM a wake from idle costs about as much as a cache hit.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RUNS = (
    ("bench_cache.py",),
    ("bench_http.py",),
    ("bench_http.py", "--awake"),
    ("bench_upstream.py",),
    ("bench_upstream.py", "--awake"),
    ("bench_batch.py",),
    ("bench_process.py",),
    ("bench_process.py", "--awake"),
    ("bench_register.py",),
)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.parse_args()
    failed = []
    for script, *args in RUNS:
        module = f"bench.{script.removesuffix('.py')}"
        command = " ".join(["python -m", module, *args])
        print(f"$ {command}", flush=True)
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", module, *args], cwd=BENCH.parent, check=False)
        print(f"({command}: {time.monotonic() - started:.0f} s, exit {done.returncode})\n")
        if done.returncode != 0:
            failed.append(command)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
