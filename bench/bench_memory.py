"""Memory soak: the cache filled with the largest entries the settings allow, then 256 clients
that send a request and never read the reply, on the built layer's process.

Usage: python -m bench.bench_memory [--clients N] [--cache-mb M] [--path-parameters P]

The upstream is a stub GetParametersByPath server (tests/path_pages.py) that answers any path
with P parameters (default 500, the default PARAMETERS_SECRETS_EXTENSION_MAX_PATH_PARAMETERS)
of 8 KiB each, SSM's largest value: each path read is one of the largest entries the default
settings allow (about 4.3 MB). The extension runs with its defaults and
PARAMETERS_SECRETS_EXTENSION_CACHE_MAX_MB=M (default 32, the default).

Phases, RSS read from /proc after each:
1. floor: started, after one /ping (what the extension costs with nothing cached);
2. filled: 3 x M MiB worth of distinct path reads, read whole (the cache full, evicting);
3. N clients that do not read: one after another, each sends a path read and takes only the
   first bytes of the reply (a small receive window, so the reply waits on the extension);
   half ask for a path still cached, half for a new one (uncached, evicting);
   RSS taken every 32 clients, the peak reported;
4. released: the clients closed.
Each figure is also given as a ratio to the floor. The documented ceiling
(floor + 2 x M MiB + 48 MiB) is checked: the run exits 1 if the peak passes it.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import time

from bench import harness
from tests.path_pages import PathPages

VALUE_CHARS = 8192  # SSM's largest parameter value (advanced tier)
ALLOWANCE_MIB = 48  # threads, buffers being built, allocator slack


def _path(index: int) -> str:
    return f"/systemsmanager/parameters/get-by-path?path=%2Fsoak%2Fp{index}"


def _request(path: str, token: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{harness.TOKEN_HEADER}: {token}\r\n\r\n"
    ).encode()


def _read_whole(port: int, path: str, token: str) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(_request(path, token)[:-2] + b"Connection: close\r\n\r\n")
        received = 0
        first = b""
        while chunk := sock.recv(1 << 20):
            first = first or chunk[:16]
            received += len(chunk)
    if not first.startswith(b"HTTP/1.1 200 "):
        raise RuntimeError(f"{path}: {first!r}")
    return received


def _not_reading(port: int, path: str, token: str) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(120)
    sock.connect(("127.0.0.1", port))
    sock.sendall(_request(path, token))
    head = sock.recv(16)
    if not head.startswith(b"HTTP/1.1 200 "):
        raise RuntimeError(f"{path}: {head!r}")
    return sock


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=256)
    parser.add_argument("--cache-mb", type=int, default=32)
    parser.add_argument("--path-parameters", type=int, default=500)
    args = parser.parse_args()
    pages = args.path_parameters // 10
    with (
        harness.setup() as s,
        PathPages(pages=pages, value_chars=VALUE_CHARS) as upstream,
        harness.extension(
            s,
            "soak",
            {
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{upstream.port}",
                "PARAMETERS_SECRETS_EXTENSION_CACHE_MAX_MB": str(args.cache_mb),
                "PARAMETERS_SECRETS_EXTENSION_MAX_PATH_PARAMETERS": str(args.path_parameters),
                "PARAMETERS_SECRETS_EXTENSION_MAX_CLIENT_CONNECTIONS": str(args.clients + 8),
            },
        ) as run,
    ):
        with socket.create_connection(("127.0.0.1", run.port)) as sock:
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while sock.recv(65536):
                pass
        time.sleep(0.5)
        floor = harness.rss_kb(run.pid)

        entry = _read_whole(run.port, _path(0), run.token)
        filled_paths = max(2, 3 * (args.cache_mb << 20) // entry)
        for index in range(1, filled_paths):
            _read_whole(run.port, _path(index), run.token)
        time.sleep(0.5)
        filled = harness.rss_kb(run.pid)

        # The entries still cached are the last ones read; new paths start past them all.
        cached = max(1, (args.cache_mb << 20) // entry - 1)
        clients: list[socket.socket] = []
        peak = filled
        started = time.monotonic()
        try:
            for index in range(args.clients):
                if index % 2 == 0:
                    path = _path(filled_paths - 1 - (index // 2) % cached)
                else:
                    path = _path(filled_paths + index)
                clients.append(_not_reading(run.port, path, run.token))
                if (index + 1) % 32 == 0:
                    peak = max(peak, harness.rss_kb(run.pid))
            time.sleep(1.0)
            held = harness.rss_kb(run.pid)
            peak = max(peak, held)
            alive = run.ext.proc.poll() is None
        finally:
            for sock in clients:
                with contextlib.suppress(OSError):
                    sock.close()
        seconds = time.monotonic() - started
        time.sleep(1.0)
        released = harness.rss_kb(run.pid)
        ceiling = floor + (2 * args.cache_mb + ALLOWANCE_MIB) * 1024
        rows = [
            ["floor: started, nothing cached", _mib(floor), "1.00"],
            [f"filled: {filled_paths} path reads of {entry / 1e6:.1f} MB", _mib(filled), ""],
            [f"{args.clients} clients not reading, all held", _mib(held), ""],
            [f"peak while {args.clients} clients were opened", _mib(peak), ""],
            ["released: clients closed", _mib(released), ""],
            [
                f"documented ceiling: floor + 2 x {args.cache_mb} + {ALLOWANCE_MIB} MiB",
                _mib(ceiling),
                "",
            ],
        ]
        for row in rows[1:]:
            row[2] = f"{float(row[1]) * 1024 / floor:.2f}"
        print(
            harness.table(
                f"Memory soak, {harness.machine()}"
                f" ({upstream.requests} upstream pages; clients opened in {seconds:.0f} s;"
                f" extension alive: {alive})",
                ["phase", "RSS MiB", "ratio to floor"],
                rows,
            )
        )
        return 0 if peak <= ceiling and alive else 1


if __name__ == "__main__":
    sys.exit(main())
