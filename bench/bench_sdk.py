"""Unchanged SDK code against the extension's AWS JSON protocol, in one run: boto3 to the
extension against boto3 to moto, and the extension's CPU per SDK hit against per GET hit.

Usage: python -m bench.bench_sdk [--rounds R] [--calls N] [--hits H] [--pin] [--base REV]

Figure 1: a warm `get_secret_value` through one boto3 client pointed at the extension
(`endpoint_url=`, the function's credentials) against the same call through a boto3 client
pointed at moto directly (what the function would do without the extension), R rounds of N
calls each, taking turns; the median call of each, and their ratio (goal: the extension >= 5x
faster). Moto stands in for AWS on loopback, so the floor is far faster than a real Secrets
Manager call: the ratio is a lower bound.
Beside figure 1, the extension's CPU time per boto3 call (its process CPU-time clock over
each round's calls): a woken hit runs with cold caches, so this is several times figure 3's.
Figure 2, the bound of figure 1: the same call through a third boto3 client pointed at a
zero-cost server (a subprocess that answers every request with the extension's own reply,
byte for byte: one write, TCP_NODELAY, keep-alive), taking turns with the other two. No server
can answer boto3 faster, so moto / zero-cost is the highest speed-up any server reaches here:
where it is below 5, boto3's own work (building, signing, parsing the call) bounds the goal,
not the extension. Also shown: the extension / zero-cost, what the extension adds to a call, and the
zero-cost server's CPU time per boto3 call beside the extension's (the same clock).
Figure 3: the extension process's CPU time (user + system, all threads: its CPU-time clock,
in nanoseconds) per cache hit, over H hits on one keep-alive connection each, taking turns R
times: an SDK hit is the very request boto3 sent for figure 1, sent again (a replay within
the 5 minutes: its signature is checked in full each time), a GET hit the same secret
through GET /secretsmanager/get. Goal: CPU per SDK hit <= 2x CPU per GET hit. The extension
runs at log level warn.
--pin: boto3 (this process) on CPU 0 and every server (moto, the extension, the zero-cost
server: all their threads) on CPU 1, the same placement for all three, so that where the
scheduler puts a client and its server does not move figures 1 and 2 from run to run.
--base REV: REV's layer (built by REV's own build_layer.py) runs beside this tree's as a
second extension, `extension@base`, with a boto3 client of its own taking its turn in every
round of figure 1 and its SDK and GET hits in every round of figure 3: the same-run A/B of
a change (the ratios this / base). The two trade places every two rounds (round_order), so
use a multiple of 4 rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench import harness
from tests.conftest import REGION

_TICK = os.sysconf("SC_CLK_TCK")
TARGET = "secretsmanager.GetSecretValue"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (ended ones included).

    Read from the process's CPU-time clock, to the nanosecond: the id clock_getcpuclockid(3)
    returns, which Linux makes from the pid as below (CPUCLOCK_SCHED). /proc/PID/stat, the
    fallback, counts in ticks of 10 ms: a GET hit's CPU over a few thousand hits is ten
    ticks or so there, too coarse for a ratio.
    """
    try:
        return time.clock_gettime(((~pid) << 3) | 2)
    except OSError:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def load() -> float:
    return os.getloadavg()[0]


def listener_pid(port: int) -> int:
    """The process listening on loopback TCP `port`, found through /proc (no tool needed)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                    inodes.add(f"socket:[{fields[9]}]")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                        return int(pid)
    raise RuntimeError(f"no process listens on port {port}")


def pin(pid: int, cpu: int) -> None:
    """Every thread of `pid` on `cpu` (threads it starts later inherit it)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(task), {cpu})


class SignedPost(harness.KeepAlive):
    """A keep-alive connection sending one request boto3 signed, again and again."""

    def __init__(self, port: int, request: bytes) -> None:
        super().__init__(port, "/")
        self.request = request


def boto3_request(client: Any, call: Any) -> bytes:
    """The bytes of the request that `call` makes through `client`, as boto3 sent them
    (taken by botocore's before-send event; the call itself goes through)."""
    seen: dict[str, Any] = {}

    def grab(request: Any, **_: object) -> None:
        seen["headers"], seen["body"] = dict(request.headers), request.body

    client.meta.events.register("before-send", grab)
    try:
        call()
    finally:
        client.meta.events.unregister("before-send", grab)
    body: bytes = seen["body"]
    headers = {"Host": client.meta.endpoint_url.split("//")[1]}
    headers.update(
        {k: v.decode() if isinstance(v, bytes) else v for k, v in seen["headers"].items()}
    )
    headers.setdefault("Content-Length", str(len(body)))
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"POST / HTTP/1.1\r\n{head}\r\n".encode() + body


# The zero-cost server: reads each request (its head, then the body its Content-Length
# announces) and answers the reply in argv[1], one write, on a thread per connection.
_ZERO_COST_MAIN = """\
import re, socket, sys, threading
reply = open(sys.argv[1], "rb").read()
length = re.compile(rb"(?i)\\r\\ncontent-length:[ \\t]*([0-9]+)")
listener = socket.create_server(("127.0.0.1", 0))
def serve(conn):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    data = b""
    with conn:
        while True:
            end = data.find(b"\\r\\n\\r\\n")
            while end < 0:
                more = conn.recv(65536)
                if not more:
                    return
                data += more
                end = data.find(b"\\r\\n\\r\\n")
            found = length.search(data, 0, end + 2)
            size = end + 4 + (int(found.group(1)) if found else 0)
            while len(data) < size:
                more = conn.recv(65536)
                if not more:
                    return
                data += more
            data = data[size:]
            conn.sendall(reply)
def accept():
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
threading.Thread(target=accept, daemon=True).start()
print(listener.getsockname()[1], flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def zero_cost_server(python: Path, reply: bytes) -> Iterator[int]:
    """The zero-cost server in a subprocess of its own (as the extension and moto run),
    answering `reply` (a whole HTTP response) to every request; yields its port."""
    with tempfile.NamedTemporaryFile(prefix="sdk-reply-") as reply_file:
        reply_file.write(reply)
        reply_file.flush()
        with harness.port_of(
            [str(python), "-I", "-S", "-c", _ZERO_COST_MAIN, reply_file.name]
        ) as port:
            yield port


def whole_reply(port: int, request: bytes) -> bytes:
    """The extension's whole response (head and body) to `request`, on a new connection."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        found = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
        if not head.startswith(b"HTTP/1.1 200 ") or found is None:
            raise RuntimeError(f"unexpected reply: {head[:200]!r}")
        while len(body) < int(found.group(1)):
            body += sock.recv(65536)
        return head + b"\r\n\r\n" + body


def round_order(names: list[str], extensions: list[str], number: int) -> list[str]:
    """The order of round `number`: `names` forward in even rounds, backward in odd ones,
    so each server's block follows either neighbour in turn; with --base, the two
    extensions also trade places every two rounds. Without that trade, extension@base
    (between the extension and moto) would follow moto's block in every backward round and
    the extension never: a block that follows moto's (or a pause) runs measurably slower,
    which would have flattered this tree in the A/B."""
    order = list(names)
    if len(extensions) == 2 and number // 2 % 2:
        first, second = (order.index(name) for name in extensions)
        order[first], order[second] = order[second], order[first]
    return order[::-1] if number % 2 else order


def timed_calls(call: Any, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def cpu_per_hit(pid: int, client: harness.KeepAlive, hits: int) -> float:
    before = cpu_seconds(pid)
    for _ in range(hits):
        status, body = client.get()
        if status != 200:
            raise RuntimeError(f"status {status}: {body[:200]!r}")
    return (cpu_seconds(pid) - before) / hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--hits", type=int, default=4000)
    parser.add_argument("--pin", action="store_true", help="client on CPU 0, servers on CPU 1")
    parser.add_argument("--base", help="also run REV's layer as extension@base")
    args = parser.parse_args()
    import boto3
    from botocore.config import Config

    loads = [load()]
    with harness.setup() as s, contextlib.ExitStack() as stack:
        env = {"PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL": "warn"}
        running = stack.enter_context(harness.extension(s, "sdk", env))
        extensions = {"extension": running}
        if args.base:
            from bench.bench_compare import base_layer  # only with --base

            executable = base_layer(args.base, s.python, s.tmp)
            extensions["extension@base"] = stack.enter_context(
                harness.extension(s, "sdk-base", env, executable)
            )
        creds = s.creds
        config = Config(retries={"max_attempts": 1, "mode": "standard"})
        keys: Any = {
            "region_name": REGION,
            "aws_access_key_id": creds.access_key,
            "aws_secret_access_key": creds.secret_key,
            "aws_session_token": creds.session_token,
            "config": config,
        }
        clients: dict[str, Any] = {
            name: boto3.client(
                "secretsmanager", endpoint_url=f"http://localhost:{ext.port}", **keys
            )
            for name, ext in extensions.items()
        }
        to_moto: Any = boto3.client("secretsmanager", endpoint_url=s.moto.endpoint, **keys)
        secret = s.moto.secret_name
        for client in clients.values():
            client.get_secret_value(SecretId=secret)  # cached now
        signed = {
            name: boto3_request(client, functools.partial(client.get_secret_value, SecretId=secret))
            for name, client in clients.items()
        }
        reply = whole_reply(running.port, signed["extension"])
        with zero_cost_server(s.python, reply) as zero_port:
            to_zero: Any = boto3.client(
                "secretsmanager", endpoint_url=f"http://localhost:{zero_port}", **keys
            )
            if args.pin:
                os.sched_setaffinity(0, {0})
                moto_port = int(s.moto.endpoint.rsplit(":", 1)[1].split("/")[0])
                ports = [moto_port, zero_port] + [ext.port for ext in extensions.values()]
                for port in ports:
                    pin(listener_pid(port), 1)
            calls: dict[str, Callable[[], Any]] = {
                name: functools.partial(client.get_secret_value, SecretId=secret)
                for name, client in clients.items()
            }
            calls["moto"] = lambda: to_moto.get_secret_value(SecretId=secret)
            calls["zero-cost"] = lambda: to_zero.get_secret_value(SecretId=secret)
            same = {call()["SecretString"] for call in calls.values()}
            if len(same) != 1:
                raise SystemExit("the extensions, moto and the zero-cost server differ")
            samples: dict[str, list[float]] = {name: [] for name in calls}
            for call in calls.values():
                timed_calls(call, 20)  # warm-up: connections, the cache
            # Whose CPU time is taken around each block of calls: the extensions', and the
            # zero-cost server's (what a server that does no work spends on a call).
            pids = {name: ext.pid for name, ext in extensions.items()}
            pids["zero-cost"] = listener_pid(zero_port)
            call_cpu: dict[str, list[float]] = {name: [] for name in pids}
            for number in range(args.rounds):
                for name in round_order(list(calls), list(extensions), number):
                    before = cpu_seconds(pids[name]) if name in pids else 0.0
                    samples[name] += timed_calls(calls[name], args.calls)
                    if name in pids:
                        spent = cpu_seconds(pids[name]) - before
                        call_cpu[name].append(spent / args.calls)
                loads.append(load())

        # Figure 3: per extension, its SDK hits and GET hits taking turns.
        hits: dict[tuple[str, str], harness.KeepAlive] = {}
        for name, ext in extensions.items():
            hits[name, "sdk"] = SignedPost(ext.port, signed[name])
            hits[name, "get"] = harness.KeepAlive(
                ext.port, f"/secretsmanager/get?secretId={secret}", ext.token
            )
        cpu: dict[tuple[str, str], list[float]] = {key: [] for key in hits}
        for (name, _), client in hits.items():
            cpu_per_hit(extensions[name].pid, client, 200)  # warm-up
        turn = list(hits)
        for _ in range(args.rounds):
            for key in turn:
                cpu[key].append(cpu_per_hit(extensions[key[0]].pid, hits[key], args.hits))
            turn.reverse()
            loads.append(load())
        for client in hits.values():
            client.close()
        errors = sum(ext.ext.output().count("ERROR") for ext in extensions.values())

    moto_ms = harness.median(samples["moto"]) * 1000
    zero_ms = harness.median(samples["zero-cost"]) * 1000
    bound = moto_ms / zero_ms
    rows = []
    for name in extensions:
        ext_ms = harness.median(samples[name]) * 1000
        sdk_us = harness.median(cpu[name, "sdk"]) * 1e6
        get_us = harness.median(cpu[name, "get"]) * 1e6
        speedup = moto_ms / ext_ms
        cpu_ratio = sdk_us / get_us
        rows += [
            [
                f"boto3 get_secret_value, warm: moto directly / {name} (median call)",
                f"{ext_ms:.2f} ms",
                f"{moto_ms:.2f} ms",
                f"{speedup:.2f}x faster",
                ">= 5x",
                "yes" if speedup >= 5 else "NO",
            ],
            [
                f"{name} CPU per boto3 call of the above (median round)",
                f"{harness.median(call_cpu[name]) * 1e6:.0f} us",
                "-",
                "-",
                "-",
                "-",
            ],
            [
                f"{name} / a zero-cost server: what it adds to a call",
                f"{ext_ms:.2f} ms",
                f"{zero_ms:.2f} ms",
                f"{ext_ms / zero_ms:.3f}",
                "-",
                "-",
            ],
            [
                f"{name} CPU per hit: SDK (signature checked) / GET (median round)",
                f"{sdk_us:.0f} us",
                f"{get_us:.0f} us",
                f"{cpu_ratio:.2f}",
                "<= 2",
                "yes" if cpu_ratio <= 2 else "NO",
            ],
        ]
    rows[1:1] = [
        [
            "the goal's bound: moto directly / a zero-cost server (boto3's own work)",
            f"{zero_ms:.2f} ms",
            f"{moto_ms:.2f} ms",
            f"{bound:.2f}x faster",
            ">= 5x to be reachable",
            "yes" if bound >= 5 else "NO: boto3 bounds it",
        ],
        [
            "zero-cost server CPU per boto3 call (median round)",
            f"{harness.median(call_cpu['zero-cost']) * 1e6:.0f} us",
            "-",
            "-",
            "-",
            "-",
        ],
    ]
    title = (
        f"bench_sdk: python {harness.python_version(s.python)}, {harness.machine()}, "
        f"load average {min(loads):.2f}-{max(loads):.2f} during the runs, "
        f"{args.rounds} rounds of {args.calls} boto3 calls and of {args.hits} hits per "
        f"target; extension ERROR lines {errors}"
        + ("; pinned: boto3 on CPU 0, the servers on CPU 1" if args.pin else "")
        + (f"; extension@base is {args.base}" if args.base else "")
    )
    header = ["figure", "measured", "floor", "ratio", "goal", "met?"]
    print(harness.table(title, header, rows))
    for name in extensions:
        print(
            f"{name} CPU per hit by round (us): "
            + ", ".join(
                f"sdk {a * 1e6:.0f} get {b * 1e6:.0f}"
                for a, b in zip(cpu[name, "sdk"], cpu[name, "get"], strict=True)
            )
        )


if __name__ == "__main__":
    main()
