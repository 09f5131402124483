"""An outage while entries are served stale, against the real process behind the fault proxy:
the upstream calls and the log lines do not grow with the number of reads."""

from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import LambdaCredentials, Moto, wait_until
from tests.fault_proxy import FaultProxy
from tests.hardening_support import secret_path, start_standalone

READS = 32


def test_an_outage_costs_neither_a_fetch_nor_a_line_per_stale_read(
    extension_executable: Path, tmp_path: Path, moto: Moto, lambda_credentials: LambdaCredentials
) -> None:
    name = "issue19/stale-outage"
    moto.boto3_client("secretsmanager").create_secret(Name=name, SecretString="stale-VALUE")  # type: ignore[attr-defined]
    with (
        FaultProxy(moto.host, moto.port) as proxy,
        start_standalone(
            extension_executable,
            tmp_path / "extension.log",
            moto,
            lambda_credentials,
            endpoint=f"http://127.0.0.1:{proxy.port}",
            SECRETS_MANAGER_TTL="1",
            PARAMETERS_SECRETS_EXTENSION_STALE_IF_ERROR_SECONDS="3600",
        ) as ext,
    ):
        assert ext.get_json(secret_path(name))[0] == 200
        time.sleep(1.3)  # the 1 s TTL runs out
        proxy.set_fault("status_500")
        before = proxy.requests_received
        started = time.monotonic()
        for _ in range(READS):
            status, body = ext.get_json(secret_path(name))
            assert (status, body["SecretString"]) == (200, "stale-VALUE"), body
        elapsed = time.monotonic() - started
        calls = proxy.requests_received - before
        # One failing flight (3 attempts) per second of the outage at most, not 3 per read.
        assert calls <= 3 * (int(elapsed) + 2), (calls, elapsed)
        assert calls < READS
        wait_until(lambda: "stale, expired" in ext.output(), 10, "the stale line")
        lines = [line for line in ext.output().splitlines() if "stale, expired" in line]
        assert len(lines) == 1, lines
        assert f"serving secretsmanager {name} stale" in lines[0]
        assert ext.proc.poll() is None
