"""Hardening: 30 s of cache hits on 64 connections against the real extension process."""

from __future__ import annotations

import http.client
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import SECRET_STRING_V2, Moto
from tests.extension_process import TOKEN_HEADER, ExtensionProcess
from tests.hardening_support import rss_kib, secret_path

CONNECTIONS = 64
LOAD_SECONDS = 30
WARMUP_SECONDS = 3
MAX_RSS_GROWTH_KIB = 2048
# wrk prints these lines only when the count is not zero.
WRK_ERROR_LINES = ("Non-2xx or 3xx responses", "Socket errors")
# Machine-readable totals from wrk's own counters, so a change in its text cannot hide errors.
WRK_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "HARDENING requests=%d connect=%d read=%d write=%d status=%d timeout=%d\\n",
    summary.requests, e.connect, e.read, e.write, e.status, e.timeout))
end
"""
_WRK_TOTALS = re.compile(
    r"HARDENING requests=(\d+) connect=(\d+) read=(\d+) write=(\d+) status=(\d+) timeout=(\d+)"
)


@dataclass(frozen=True)
class LoadResult:
    """Requests completed and every kind of error seen, by name."""

    requests: int
    errors: dict[str, int]
    report: str


def wrk_load(
    url: str, headers: dict[str, str], connections: int, seconds: int, script: Path
) -> LoadResult:
    """Run wrk and read its error counters, both from the Lua summary and from its text."""
    wrk = shutil.which("wrk")
    assert wrk is not None
    argv = [wrk, "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    done = subprocess.run(
        [*argv, "-s", str(script), url],
        check=False,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    report = done.stdout + done.stderr
    match = _WRK_TOTALS.search(done.stdout)
    assert done.returncode == 0 and match is not None, report
    requests, *counts = (int(group) for group in match.groups())
    errors = dict(zip(("connect", "read", "write", "status", "timeout"), counts, strict=True))
    for line in WRK_ERROR_LINES:
        errors[line] = int(line in report)
    return LoadResult(requests, errors, report)


def python_load(
    port: int, path: str, *, headers: dict[str, str], connections: int, seconds: float
) -> LoadResult:
    """A slower stand-in for wrk: one keep-alive http.client connection per thread."""
    lock = threading.Lock()
    totals = {"requests": 0, "status": 0, "socket": 0}
    stop_at = time.monotonic() + seconds

    def run() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        done = failed = errored = 0
        try:
            while time.monotonic() < stop_at:
                try:
                    conn.request("GET", path, headers=headers)
                    response = conn.getresponse()
                    response.read()
                    done += 1
                    failed += response.status != 200
                except (OSError, http.client.HTTPException):
                    errored += 1
                    conn.close()
        finally:
            conn.close()
            with lock:
                totals["requests"] += done
                totals["status"] += failed
                totals["socket"] += errored

    threads = [threading.Thread(target=run, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    alive = sum(thread.is_alive() for thread in threads)
    errors = {"status": totals["status"], "socket": totals["socket"], "hung": alive}
    return LoadResult(totals["requests"], errors, f"python load: {totals}")


def _load(ext: ExtensionProcess, path: str, seconds: int, script: Path) -> LoadResult:
    assert ext.token is not None
    headers = {TOKEN_HEADER: ext.token}
    if shutil.which("wrk") is None:
        return python_load(
            ext.port, path, headers=headers, connections=CONNECTIONS, seconds=seconds
        )
    url = f"http://127.0.0.1:{ext.port}{path}"
    return wrk_load(url, headers, CONNECTIONS, seconds, script)


def test_hits_under_load_have_no_errors_and_no_memory_growth(
    extension: ExtensionProcess, moto: Moto, tmp_path: Path
) -> None:
    path = secret_path(moto.secret_name)
    status, body = extension.get_json(path)  # the miss; every later request is a hit
    assert status == 200 and body["SecretString"] == SECRET_STRING_V2
    script = tmp_path / "totals.lua"
    script.write_text(WRK_SCRIPT)

    warmup = _load(extension, path, WARMUP_SECONDS, script)
    assert warmup.requests > 0, warmup.report
    time.sleep(0.5)  # let the warm-up's connection threads finish
    rss_before = rss_kib(extension.proc.pid)
    result = _load(extension, path, LOAD_SECONDS, script)
    time.sleep(0.5)
    rss_after = rss_kib(extension.proc.pid)
    print(
        f"\nload: {result.requests} hits in {LOAD_SECONDS} s on {CONNECTIONS} connections"
        f" ({result.requests / LOAD_SECONDS:.0f}/s); RSS {rss_before} -> {rss_after} KiB"
    )

    assert result.requests > 0, result.report
    assert all(count == 0 for count in warmup.errors.values()), warmup.report
    assert all(count == 0 for count in result.errors.values()), result.report
    assert rss_after - rss_before <= MAX_RSS_GROWTH_KIB, (rss_before, rss_after)
    assert extension.proc.poll() is None
    assert extension.get("/ping", token=None)[0] == 200
    status, body = extension.get_json(path)
    assert status == 200 and body["SecretString"] == SECRET_STRING_V2
    assert "Traceback" not in extension.output()


def test_python_load_generator_counts_hits_and_errors(extension: ExtensionProcess) -> None:
    """The fallback used where wrk is missing: it must count successes and failures."""
    assert extension.token is not None
    good = python_load(extension.port, "/ping", headers={}, connections=4, seconds=1.0)
    assert good.requests > 0 and good.errors == {"status": 0, "socket": 0, "hung": 0}
    bad = python_load(extension.port, "/nope", headers={}, connections=2, seconds=0.5)
    assert bad.requests > 0 and bad.errors["status"] == bad.requests
