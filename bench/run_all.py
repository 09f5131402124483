"""Run every bench script in turn, each in its own process, and print their tables.

Usage: python bench/run_all.py   (from the repository root; takes about six minutes)
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SCRIPTS = ("bench_cache.py", "bench_http.py", "bench_upstream.py", "bench_process.py")


def main() -> int:
    failed = []
    for script in SCRIPTS:
        print(f"$ python bench/{script}", flush=True)
        started = time.monotonic()
        done = subprocess.run([sys.executable, str(BENCH / script)], check=False)
        print(f"({script}: {time.monotonic() - started:.0f} s, exit {done.returncode})\n")
        if done.returncode != 0:
            failed.append(script)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
