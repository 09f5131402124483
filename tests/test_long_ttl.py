"""TTLs past 300 s only with PARAMETERS_SECRETS_EXTENSION_MAX_TTL_SECONDS: the real process
reports the TTLs it uses (and warns about a clamped one), and a value read under the TTL the
configuration gives stays cached for that long, against moto, on a clock the test moves."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cache import Cache
from parameters_secrets_extension import config
from parameters_secrets_extension.aws.operations import AwsClient
from parameters_secrets_extension.lookups import Lookups
from tests.conftest import Moto, wait_until
from tests.extension_process import ExtensionProcess
from tests.hardening_support import param_path, secret_path
from tests.test_local_server import moto_config

MAX_TTL = "PARAMETERS_SECRETS_EXTENSION_MAX_TTL_SECONDS"


def listening_line(ext: ExtensionProcess) -> str:
    wait_until(lambda: "listening on port" in ext.output(), 10, "the listening line")
    return next(line for line in ext.output().splitlines() if "listening on port" in line)


@pytest.mark.parametrize(
    ("env", "ttls", "warnings"),
    [
        # A configuration written for the AWS extension keeps its meaning.
        (
            {"SECRETS_MANAGER_TTL": "900"},
            "TTL secretsmanager 300 s ssm 300 s",
            ["SECRETS_MANAGER_TTL=900 is above the maximum 300; using 300"],
        ),
        (
            {MAX_TTL: "3600", "SECRETS_MANAGER_TTL": "900", "SSM_PARAMETER_STORE_TTL": "3600"},
            "TTL secretsmanager 900 s ssm 3600 s",
            [],
        ),
        (
            {MAX_TTL: "7200", "SSM_PARAMETER_STORE_TTL": "5000"},
            "TTL secretsmanager 300 s ssm 3600 s",
            [
                f"{MAX_TTL}=7200 is above the maximum 3600; using 3600",
                "SSM_PARAMETER_STORE_TTL=5000 is above the maximum 3600; using 3600",
            ],
        ),
    ],
)
def test_the_process_uses_a_long_ttl_only_when_asked(
    start_extension: Callable[..., ExtensionProcess],
    moto: Moto,
    env: dict[str, str],
    ttls: str,
    warnings: list[str],
) -> None:
    ext = start_extension(**env)
    assert ttls in listening_line(ext)
    assert ext.get(secret_path(moto.secret_name))[0] == 200
    assert ext.get(param_path(moto.param_string))[0] == 200
    logged = [line.partition(" WARN ")[2] for line in ext.output().splitlines() if " WARN " in line]
    assert logged == warnings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextlib.contextmanager
def lookups_as_configured(moto: Moto, env: dict[str, str]) -> Iterator[tuple[Lookups, Clock]]:
    """Lookups with the TTLs that config.load gives `env`, on a clock the test moves."""
    settings = config.load({"AWS_SESSION_TOKEN": "t", **env})
    clock = Clock()
    client = AwsClient(
        moto_config(moto), max_connections=2, secrets_manager_timeout_ms=0, ssm_timeout_ms=0
    )
    lookups = Lookups(
        client,
        Cache(10, clock=clock),
        secrets_manager_ttl=settings.secrets_manager_ttl,
        ssm_ttl=settings.ssm_ttl,
    )
    try:
        yield lookups, clock
    finally:
        client.close()


@pytest.mark.parametrize(
    ("env", "calls_after_ten_minutes"),
    [
        ({"SECRETS_MANAGER_TTL": "900"}, 2),  # clamped to 300 s: expired, read again
        ({MAX_TTL: "3600", "SECRETS_MANAGER_TTL": "900"}, 1),  # still cached
    ],
)
def test_a_long_ttl_keeps_the_value_that_long(
    moto: Moto, env: dict[str, str], calls_after_ten_minutes: int
) -> None:
    with lookups_as_configured(moto, env) as (lookups, clock):
        assert lookups.secret(moto.secret_name)[1] == "miss"
        clock.now += 600
        lookups.secret(moto.secret_name)
        counted: Any = lookups.counters()
        assert counted["UpstreamCalls"] == calls_after_ten_minutes
        clock.now += 301  # past 900 s: expired whatever the cap
        lookups.secret(moto.secret_name)
        counted = lookups.counters()
        assert counted["UpstreamCalls"] == calls_after_ten_minutes + 1
