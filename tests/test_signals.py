"""SIGTERM and SIGINT end the real extension process with exit 0 at any moment after exec."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import LambdaCredentials, Moto, free_port
from tests.extension_process import lambda_env
from tests.fake_extensions_api import FakeExtensionsApi

RUNS = 50
MAX_DELAY = 0.300  # seconds: covers the interpreter's start, imports, prefetch and serving
# The goal is 100 ms (bench/bench_process.py reports the typical figure); the bound here is
# generous so that a loaded CI box does not fail the test.
EXIT_BOUND = 2.0


def wait_until_blocked(pid: int, signum: int) -> None:
    """Wait until the launcher has handed over with `signum` blocked (by GNU env, or by boot).

    Before that the shell's trap exits 0 on a signal, except while env itself starts (its
    dynamic loading, well under a millisecond): no program can take a signal before its
    own first instruction, and env is the only blocker there is before the interpreter.
    """
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/status") as status:
            fields = dict(line.split(":", 1) for line in status)
        if int(fields["SigBlk"], 16) >> (signum - 1) & 1:
            return
        time.sleep(0.0002)
    raise AssertionError("the stop signals were never blocked")


def test_a_stop_signal_at_any_moment_ends_the_process_with_0(
    extension_executable: Path, tmp_path: Path, moto: Moto, lambda_credentials: LambdaCredentials
) -> None:
    # A real interpreter, as Lambda's /var/lang/bin/python3 is: a pyenv shim on PATH would be
    # a bash script that a signal kills before Python even starts.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(Path(sys.executable).resolve())
    rng = random.Random(20261122)
    delays = [rng.uniform(0, MAX_DELAY) for _ in range(RUNS)]
    failures = []
    with FakeExtensionsApi() as fake:
        for run, delay in enumerate(delays):
            signum = (signal.SIGTERM, signal.SIGINT)[run % 2]
            env = lambda_env(
                moto,
                lambda_credentials,
                free_port(),
                fake.address,
                PATH=str(bin_dir),
                PARAMETERS_SECRETS_EXTENSION_PREFETCH=f"secretsmanager:{moto.secret_name}",
            )
            log = tmp_path / f"run-{run}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [str(extension_executable)], env=env, stdout=out, stderr=subprocess.STDOUT
                )
                try:
                    wait_until_blocked(proc.pid, signum)
                    time.sleep(delay)
                    proc.send_signal(signum)
                    sent = time.monotonic()
                    code = proc.wait(timeout=EXIT_BOUND + 5)
                    took = time.monotonic() - sent
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait(10)
            if code != 0 or took > EXIT_BOUND or "Traceback" in log.read_text(errors="replace"):
                failures.append((round(delay * 1000, 1), signum, code, round(took, 3)))
    assert failures == [], failures
