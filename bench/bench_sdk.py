"""Unchanged SDK code against the extension's AWS JSON protocol, in one run: boto3 to the
extension against boto3 to moto, and the extension's CPU per SDK hit against per GET hit.

Usage: python -m bench.bench_sdk [--rounds R] [--calls N] [--hits H]

Figure 1: a warm `get_secret_value` through one boto3 client pointed at the extension
(`endpoint_url=`, the function's credentials) against the same call through a boto3 client
pointed at moto directly (what the function would do without the extension), R rounds of N
calls each, the two taking turns; the median call of each, and their ratio (goal: the
extension >= 5x faster). Moto stands in for AWS on loopback, so the floor is far faster than
a real Secrets Manager call: the ratio is a lower bound.
Figure 2: the extension process's CPU time (user + system, from /proc) per cache hit, over
H hits on one keep-alive connection each, taking turns R times: an SDK hit is the very
request boto3 sent for figure 1, sent again (a replay within the 5 minutes: its signature is
checked in full each time), a GET hit the same secret through GET /secretsmanager/get. Goal:
CPU per SDK hit <= 2x CPU per GET hit. The extension runs at log level warn.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import harness
from tests.conftest import REGION

_TICK = os.sysconf("SC_CLK_TCK")
TARGET = "secretsmanager.GetSecretValue"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads, from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def load() -> float:
    return os.getloadavg()[0]


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
    args = parser.parse_args()
    import boto3
    from botocore.config import Config

    loads = [load()]
    with harness.setup() as s:
        env = {"PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL": "warn"}
        with harness.extension(s, "sdk", env) as running:
            creds = s.creds
            config = Config(retries={"max_attempts": 1, "mode": "standard"})
            keys: Any = {
                "region_name": REGION,
                "aws_access_key_id": creds.access_key,
                "aws_secret_access_key": creds.secret_key,
                "aws_session_token": creds.session_token,
                "config": config,
            }
            to_ext: Any = boto3.client(
                "secretsmanager", endpoint_url=f"http://localhost:{running.port}", **keys
            )
            to_moto: Any = boto3.client("secretsmanager", endpoint_url=s.moto.endpoint, **keys)
            secret = s.moto.secret_name
            calls: dict[str, Callable[[], Any]] = {
                "extension": lambda: to_ext.get_secret_value(SecretId=secret),
                "moto": lambda: to_moto.get_secret_value(SecretId=secret),
            }
            same = {name: call()["SecretString"] for name, call in calls.items()}
            if same["extension"] != same["moto"]:
                raise SystemExit("the extension and moto answered different values")
            samples: dict[str, list[float]] = {name: [] for name in calls}
            order = list(calls)
            for name in order:
                timed_calls(calls[name], 20)  # warm-up: connections, the cache
            for _ in range(args.rounds):
                for name in order:
                    samples[name] += timed_calls(calls[name], args.calls)
                order.reverse()
                loads.append(load())

            get = harness.KeepAlive(
                running.port, f"/secretsmanager/get?secretId={secret}", running.token
            )
            post = SignedPost(running.port, boto3_request(to_ext, calls["extension"]))
            cpu: dict[str, list[float]] = {"sdk": [], "get": []}
            clients = {"sdk": post, "get": get}
            for client in clients.values():
                cpu_per_hit(running.pid, client, 200)  # warm-up
            turn = ["sdk", "get"]
            for _ in range(args.rounds):
                for name in turn:
                    cpu[name].append(cpu_per_hit(running.pid, clients[name], args.hits))
                turn.reverse()
                loads.append(load())
            get.close()
            post.close()
            errors = running.ext.output().count("ERROR")

    ext_ms = harness.median(samples["extension"]) * 1000
    moto_ms = harness.median(samples["moto"]) * 1000
    sdk_us = harness.median(cpu["sdk"]) * 1e6
    get_us = harness.median(cpu["get"]) * 1e6
    speedup = moto_ms / ext_ms
    cpu_ratio = sdk_us / get_us
    rows = [
        [
            "boto3 get_secret_value, warm: moto directly / the extension (median call)",
            f"{ext_ms:.2f} ms",
            f"{moto_ms:.2f} ms",
            f"{speedup:.1f}x faster",
            ">= 5x",
            "yes" if speedup >= 5 else "NO",
        ],
        [
            "extension CPU per hit: SDK (signature checked) / GET (median round)",
            f"{sdk_us:.0f} us",
            f"{get_us:.0f} us",
            f"{cpu_ratio:.2f}",
            "<= 2",
            "yes" if cpu_ratio <= 2 else "NO",
        ],
    ]
    title = (
        f"bench_sdk: python {harness.python_version(s.python)}, {harness.machine()}, "
        f"load average {min(loads):.2f}-{max(loads):.2f} during the runs, "
        f"{args.rounds} rounds of {args.calls} boto3 calls and of {args.hits} hits per "
        f"target; extension ERROR lines {errors}"
    )
    header = ["figure", "extension / SDK", "floor", "ratio", "goal", "met?"]
    print(harness.table(title, header, rows))
    print(
        "CPU per hit by round (us): "
        + ", ".join(
            f"sdk {a * 1e6:.0f} get {b * 1e6:.0f}"
            for a, b in zip(cpu["sdk"], cpu["get"], strict=True)
        )
    )


if __name__ == "__main__":
    main()
