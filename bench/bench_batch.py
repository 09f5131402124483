"""Batch reads against single reads: upstream calls and time, on the built layer's process.

Usage: python -m bench.bench_batch [--rounds R] [--delay-ms D] [--awake]

Figure 1: a function that needs 10 secrets at init, as 10 single reads one after another
against one batch read (SECRETS_MANAGER_TTL=0, so each read goes upstream, as at a cold
start). R rounds, the two sides taking turns in each; medians over all, and the upstream
requests of each side counted at the fault proxy in front of moto.
Figure 2: prefetch of 30 items (20 secrets, 10 parameters). The extension's own init
(start to its first `next`) with those 30 in PARAMETERS_SECRETS_EXTENSION_PREFETCH, which
fetches them in batches, against its init with no prefetch plus the same 30 as single reads
from 30 threads at once (what fetching them one by one in parallel costs). R rounds each.
Both figures are taken with the proxy adding nothing and adding D ms (default 10) to each
upstream request, a stand-in for the round trip to a real AWS endpoint.
--awake keeps the vCPUs from idling meanwhile (harness.keep_awake says why).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from typing import Any
from urllib.parse import quote

from bench import harness

SECRETS_AT_INIT = 10
PREFETCH_SECRETS = 20
PREFETCH_PARAMETERS = 10
BATCH_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "secretsmanager:BatchGetSecretValue",
                "ssm:GetParameters",
                "ssm:GetParametersByPath",
            ],
            "Resource": "*",
        }
    ],
}


def create_data(s: harness.Setup) -> tuple[list[str], list[str]]:
    """Secrets and parameters for the runs; the Lambda role may read them in batches."""
    sm: Any = s.moto.boto3_client("secretsmanager")
    ssm: Any = s.moto.boto3_client("ssm")
    iam: Any = s.moto.boto3_client("iam")
    iam.put_role_policy(
        RoleName=s.moto.role_arn.rsplit("/", 1)[1],
        PolicyName="batch",
        PolicyDocument=json.dumps(BATCH_POLICY),
    )
    secrets = [f"bench-batch/secret-{i:02d}" for i in range(max(SECRETS_AT_INIT, 20))]
    for name in secrets:
        sm.create_secret(Name=name, SecretString=json.dumps({"password": "bench-" + name}))
    params = [f"/bench-batch/param-{i:02d}" for i in range(PREFETCH_PARAMETERS)]
    for name in params:
        ssm.put_parameter(Name=name, Value="bench-" + name, Type="String")
    return secrets, params


def ids(names: list[str]) -> str:
    return ",".join(quote(name, safe="") for name in names)


def init_reads(s: harness.Setup, rounds: int, delay_ms: int) -> dict[str, float]:
    """Figure 1: medians (ms) and upstream requests per side."""
    secrets = [f"bench-batch/secret-{i:02d}" for i in range(SECRETS_AT_INIT)]
    singles = [harness.SECRET_PATH + quote(name, safe="") for name in secrets]
    batch = f"/secretsmanager/batch?secretIds={ids(secrets)}"
    times: dict[str, list[float]] = {"single": [], "batch": []}
    calls = {"single": 0, "batch": 0}
    with harness.FaultProxy(s.moto.host, s.moto.port) as proxy:
        if delay_ms:
            proxy.set_fault("delay", delay_ms=delay_ms)
        env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}", "SECRETS_MANAGER_TTL": "0"}
        with harness.extension(s, f"init-{delay_ms}", env) as ext:
            client = harness.KeepAlive(ext.port, batch, ext.token)
            try:
                client.get()  # the AWS client's import and first connection, paid once
                for _ in range(rounds):
                    for side in ("single", "batch"):
                        before = proxy.requests_received
                        start = time.perf_counter()
                        for path in singles if side == "single" else [batch]:
                            status, body = client.get(path)
                            if status != 200:
                                raise RuntimeError(f"{side}: {status} {body[:200]!r}")
                        times[side].append((time.perf_counter() - start) * 1000)
                        calls[side] += proxy.requests_received - before
            finally:
                client.close()
    return {
        "single_ms": harness.median(times["single"]),
        "batch_ms": harness.median(times["batch"]),
        "single_calls": calls["single"] / rounds,
        "batch_calls": calls["batch"] / rounds,
    }


def prefetch(
    s: harness.Setup, secrets: list[str], params: list[str], rounds: int, delay_ms: int
) -> dict[str, float]:
    """Figure 2: init with a batched prefetch of 30 items against init plus 30 single reads."""
    items = [f"secretsmanager:{n}" for n in secrets[:PREFETCH_SECRETS]]
    items += [f"ssm:{n}" for n in params]
    paths = [harness.SECRET_PATH + quote(n, safe="") for n in secrets[:PREFETCH_SECRETS]]
    paths += [harness.PARAM_PATH + quote(n, safe="") for n in params]
    times: dict[str, list[float]] = {"batched": [], "bare": [], "singles": []}
    calls = {"batched": 0, "singles": 0}
    with harness.FaultProxy(s.moto.host, s.moto.port) as proxy:
        if delay_ms:
            proxy.set_fault("delay", delay_ms=delay_ms)
        endpoint = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}"}
        for index in range(rounds):
            before = proxy.requests_received
            env = {**endpoint, "PARAMETERS_SECRETS_EXTENSION_PREFETCH": ",".join(items)}
            with harness.extension(s, f"prefetch-{delay_ms}-{index}", env) as ext:
                times["batched"].append((ext.first_next - ext.started) * 1000)
            calls["batched"] += proxy.requests_received - before
            with harness.extension(s, f"bare-{delay_ms}-{index}", endpoint) as ext:
                times["bare"].append((ext.first_next - ext.started) * 1000)
                before = proxy.requests_received
                clients = [harness.KeepAlive(ext.port, path, ext.token) for path in paths]
                barrier = threading.Barrier(len(clients) + 1)
                failures: list[int] = []

                threads = [
                    threading.Thread(target=_read, args=(c, barrier, failures)) for c in clients
                ]
                for thread in threads:
                    thread.start()
                barrier.wait()
                start = time.perf_counter()
                for thread in threads:
                    thread.join()
                times["singles"].append((time.perf_counter() - start) * 1000)
                for client in clients:
                    client.close()
                if failures:
                    raise RuntimeError(f"single reads failed: {failures}")
                calls["singles"] += proxy.requests_received - before
    return {
        "batched_ms": harness.median(times["batched"]),
        "bare_ms": harness.median(times["bare"]),
        "singles_ms": harness.median(times["singles"]),
        "batched_calls": calls["batched"] / rounds,
        "singles_calls": calls["singles"] / rounds,
    }


def _read(client: harness.KeepAlive, barrier: threading.Barrier, failures: list[int]) -> None:
    barrier.wait()
    status, _ = client.get()
    if status != 200:
        failures.append(status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--delay-ms", type=int, default=10, help="added to each upstream call")
    parser.add_argument("--awake", action="store_true", help="keep the vCPUs from idling")
    args = parser.parse_args()

    with harness.keep_awake(args.awake) as mode, harness.setup() as s:
        secrets, params = create_data(s)
        delays = [0, args.delay_ms] if args.delay_ms else [0]
        init = {d: init_reads(s, args.rounds, d) for d in delays}
        pre = {d: prefetch(s, secrets, params, args.rounds, d) for d in delays}
        python = harness.python_version(s.python)

    rows = []
    for d, t in init.items():
        rows.append(
            [
                f"{d} ms",
                f"{t['single_ms']:.1f} ms, {t['single_calls']:.0f} calls",
                f"{t['batch_ms']:.1f} ms, {t['batch_calls']:.0f} call",
                f"{t['single_ms'] / t['batch_ms']:.1f}x",
            ]
        )
    print(
        harness.table(
            f"10 secrets at init ({args.rounds} rounds, medians; Python {python}; {mode})",
            ["added upstream delay", "10 single reads", "1 batch read", "single / batch"],
            rows,
        )
    )
    print()
    rows = []
    for d, t in pre.items():
        prefetch_ms = t["batched_ms"] - t["bare_ms"]
        rows.append(
            [
                f"{d} ms",
                f"{t['bare_ms']:.1f} ms",
                f"{t['batched_ms']:.1f} ms (+{prefetch_ms:.1f}), {t['batched_calls']:.0f} calls",
                f"{t['singles_ms']:.1f} ms, {t['singles_calls']:.0f} calls",
                f"{t['singles_ms'] / prefetch_ms:.1f}x" if prefetch_ms > 0 else "-",
            ]
        )
    print(
        harness.table(
            f"Prefetch of 30 items ({args.rounds} rounds, medians)",
            [
                "added upstream delay",
                "init, no prefetch",
                "init, batched prefetch",
                "30 parallel single reads",
                "singles / batched prefetch",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
