"""Hardening: the real extension process behind a fault-injecting proxy in front of moto.

One proxy and one extension serve the whole module, so it also shows the process surviving
every fault in turn. Secrets have a 1 s TTL (to test stale-if-error); parameters keep 300 s
(the hits that must go on being served while the upstream misbehaves).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import LambdaCredentials, Moto
from tests.extension_process import ExtensionProcess
from tests.fault_proxy import FaultProxy
from tests.hardening_support import param_path, secret_path, start_standalone

TIMEOUT_MILLIS = 1500
DELAY_MILLIS = 4000  # well past TIMEOUT_MILLIS, so every attempt misses the deadline
SECRET_TTL_SECONDS = 1
EXPIRY_WAIT_SECONDS = 1.3
STALE_RETRY_SECONDS = 1.1  # the cache's stale_retry, and a little more


@dataclass(frozen=True)
class Rig:
    """The fault proxy in front of moto and the extension that calls AWS through it."""

    proxy: FaultProxy
    ext: ExtensionProcess
    moto: Moto

    def secret(self, name: str) -> tuple[int, dict[str, object]]:
        return self.ext.get_json(secret_path(name))

    def param(self, name: str) -> tuple[int, dict[str, object]]:
        return self.ext.get_json(param_path(name))

    def create_secret(self, name: str, value: str) -> None:
        self.moto.boto3_client("secretsmanager").create_secret(Name=name, SecretString=value)  # type: ignore[attr-defined]

    def put_secret(self, name: str, value: str) -> None:
        self.moto.boto3_client("secretsmanager").put_secret_value(SecretId=name, SecretString=value)  # type: ignore[attr-defined]

    def create_param(self, name: str, value: str) -> None:
        self.moto.boto3_client("ssm").put_parameter(Name=name, Value=value, Type="String")  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def module_rig(
    extension_executable: Path,
    tmp_path_factory: pytest.TempPathFactory,
    moto: Moto,
    lambda_credentials: LambdaCredentials,
) -> Iterator[Rig]:
    with FaultProxy(moto.host, moto.port) as proxy:
        log_path = tmp_path_factory.mktemp("faults") / "extension.log"
        with start_standalone(
            extension_executable,
            log_path,
            moto,
            lambda_credentials,
            endpoint=f"http://127.0.0.1:{proxy.port}",
            SECRETS_MANAGER_TTL=str(SECRET_TTL_SECONDS),
            SSM_PARAMETER_STORE_TTL="300",
            PARAMETERS_SECRETS_EXTENSION_STALE_IF_ERROR_SECONDS="3600",
            SECRETS_MANAGER_TIMEOUT_MILLIS=str(TIMEOUT_MILLIS),
            SSM_PARAMETER_STORE_TIMEOUT_MILLIS=str(TIMEOUT_MILLIS),
        ) as ext:
            yield Rig(proxy, ext, moto)
            assert "Traceback" not in ext.output()


@pytest.fixture
def rig(module_rig: Rig) -> Iterator[Rig]:
    """The module's rig with no fault set, before and after each test."""
    module_rig.proxy.set_fault(None)
    yield module_rig
    module_rig.proxy.set_fault(None)
    assert module_rig.ext.proc.poll() is None, module_rig.ext.output()


@dataclass(frozen=True)
class Fault:
    """How to break the upstream, and what a miss must answer while it is broken."""

    kind: str
    status: int
    error_type: str


# Network failures are 502, a spent deadline 504, AWS errors keep AWS's own status and type.
FAULTS = [
    Fault("down", 502, "ConnectionException"),
    Fault("status_500", 500, "InternalFailure"),
    Fault("throttle", 400, "ThrottlingException"),
    Fault("delay", 504, "TimeoutException"),
    Fault("reset", 502, "ConnectionException"),
    Fault("drop", 502, "ConnectionException"),
]


def _inject(proxy: FaultProxy, kind: str, *, times: int | None = None) -> None:
    proxy.set_fault(kind, times=times, delay_ms=DELAY_MILLIS)
    if kind == "down":
        # Pooled connections would go on working: a real outage takes them down too.
        proxy.close_idle()


@pytest.mark.parametrize("fault", FAULTS, ids=[fault.kind for fault in FAULTS])
def test_upstream_fault_hits_misses_stale_and_recovery(rig: Rig, fault: Fault) -> None:
    prefix = f"hardening/{fault.kind}"
    hit_param, stale_secret, miss_secret = f"/{prefix}/hit", f"{prefix}/stale", f"{prefix}/miss"
    miss_param = f"/{prefix}/miss"
    rig.create_param(hit_param, "hit-VALUE")
    rig.create_secret(stale_secret, "stale-VALUE-1")
    rig.create_secret(miss_secret, "miss-VALUE")
    rig.create_param(miss_param, "miss-PARAM-VALUE")
    assert rig.param(hit_param)[0] == 200
    status, body = rig.secret(stale_secret)
    assert status == 200 and body["SecretString"] == "stale-VALUE-1"
    rig.put_secret(stale_secret, "stale-VALUE-2")
    time.sleep(EXPIRY_WAIT_SECONDS)  # the secret's 1 s TTL runs out

    _inject(rig.proxy, fault.kind)
    status, body = rig.param(hit_param)
    assert status == 200 and body["Parameter"]["Value"] == "hit-VALUE"  # type: ignore[index]
    status, body = rig.secret(stale_secret)
    assert status == 200 and body["SecretString"] == "stale-VALUE-1", body
    for status, body in (rig.secret(miss_secret), rig.param(miss_param)):
        assert (status, body["__type"]) == (fault.status, fault.error_type), body
        assert "VALUE" not in json.dumps(body)
    assert rig.ext.proc.poll() is None

    rig.proxy.set_fault(None)
    time.sleep(STALE_RETRY_SECONDS)  # a key just served stale is not fetched again before
    status, body = rig.secret(stale_secret)
    assert status == 200 and body["SecretString"] == "stale-VALUE-2"
    status, body = rig.secret(miss_secret)
    assert status == 200 and body["SecretString"] == "miss-VALUE"
    status, body = rig.param(miss_param)
    assert status == 200 and body["Parameter"]["Value"] == "miss-PARAM-VALUE"  # type: ignore[index]
    assert f"serving secretsmanager {stale_secret} stale" in rig.ext.output()


@pytest.mark.parametrize("kind", ["down", "status_500", "throttle", "reset", "drop"])
def test_one_transient_fault_is_retried_unseen(rig: Rig, kind: str) -> None:
    name = f"hardening/once-{kind}"
    rig.create_secret(name, "once-VALUE")
    forwarded = rig.proxy.requests_forwarded
    _inject(rig.proxy, kind, times=1)
    status, body = rig.secret(name)
    assert status == 200 and body["SecretString"] == "once-VALUE"
    assert rig.proxy.requests_forwarded > forwarded


def test_client_errors_are_never_served_stale(rig: Rig) -> None:
    name = "hardening/deleted"
    rig.create_secret(name, "deleted-VALUE")
    assert rig.secret(name)[0] == 200
    rig.moto.boto3_client("secretsmanager").delete_secret(  # type: ignore[attr-defined]
        SecretId=name, ForceDeleteWithoutRecovery=True
    )
    time.sleep(EXPIRY_WAIT_SECONDS)
    for _ in range(2):  # and the expired entry is gone, not kept for a later stale answer
        status, body = rig.secret(name)
        # AWS's own status is passed through: 400 from AWS, 404 from moto.
        assert 400 <= status < 500 and body["__type"] == "ResourceNotFoundException", body
        assert "deleted-VALUE" not in json.dumps(body)
    # The not-found is remembered for at most the 1 s TTL: once that has run out, an outage
    # finds neither the old value nor the remembered error to serve stale.
    time.sleep(EXPIRY_WAIT_SECONDS)
    rig.proxy.set_fault("status_500")
    status, body = rig.secret(name)
    assert (status, body["__type"]) == (500, "InternalFailure"), body


def test_pooled_connection_closed_while_frozen_is_replaced_unseen(rig: Rig) -> None:
    rig.create_secret("hardening/before-freeze", "before-VALUE")
    rig.create_secret("hardening/after-thaw", "after-VALUE")
    assert rig.secret("hardening/before-freeze")[0] == 200
    log_before = rig.ext.output()
    accepted = rig.proxy.connections_accepted
    assert rig.proxy.close_idle() >= 1  # what a freeze long enough for AWS to hang up does
    status, body = rig.secret("hardening/after-thaw")
    assert status == 200 and body["SecretString"] == "after-VALUE"
    assert rig.proxy.connections_accepted > accepted  # a fresh connection replaced it
    new_lines = rig.ext.output()[len(log_before) :]
    assert "ERROR" not in new_lines and "WARN" not in new_lines, new_lines
