"""Negative caching: a not-found or denied answer replayed for a short time, against the real
process and moto (signature and IAM checks on) behind a proxy that counts what reaches AWS."""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from cache import Cache
from parameters_secrets_extension.errors import UpstreamError
from parameters_secrets_extension.lookups import Lookups
from tests.conftest import BATCH_POLICY, LambdaCredentials, Moto
from tests.extension_process import ExtensionProcess
from tests.fault_proxy import FaultProxy
from tests.hardening_support import param_path, secret_path, start_standalone

NEGATIVE_TTL = 2


@pytest.fixture
def behind_proxy(
    extension_executable: Path, tmp_path: Path, moto: Moto, lambda_credentials: LambdaCredentials
) -> Iterator[tuple[ExtensionProcess, FaultProxy]]:
    with (
        FaultProxy(moto.host, moto.port) as proxy,
        start_standalone(
            extension_executable,
            tmp_path / "extension.log",
            moto,
            lambda_credentials,
            endpoint=f"http://127.0.0.1:{proxy.port}",
            PARAMETERS_SECRETS_EXTENSION_NEGATIVE_TTL_SECONDS=str(NEGATIVE_TTL),
        ) as ext,
    ):
        yield ext, proxy


def metrics(ext: ExtensionProcess) -> dict[str, object]:
    status, _, body = ext.get("/metrics")
    assert status == 200, body
    return json.loads(body)  # type: ignore[no-any-return]


def not_found(response: tuple[int, dict[str, str], bytes]) -> bool:
    return bool(json.loads(response[2]).get("__type") == "ResourceNotFoundException")


def missing(kind: str) -> str:
    return f"issue21/missing-{kind}-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize(
    ("path", "error_type"),
    [
        (secret_path, "ResourceNotFoundException"),
        (lambda name: param_path("/" + name), "ParameterNotFound"),
    ],
    ids=["secret", "parameter"],
)
def test_a_hammered_missing_name_reaches_aws_once_per_negative_ttl(
    behind_proxy: tuple[ExtensionProcess, FaultProxy], path: object, error_type: str
) -> None:
    ext, proxy = behind_proxy
    target = path(missing("hammered"))  # type: ignore[operator]
    before = proxy.requests_received
    first = ext.get(target)
    # (moto answers a missing secret 404, AWS 400: either is passed through as it is)
    assert first[0] in {400, 404} and json.loads(first[2])["__type"] == error_type, first
    reads = 1
    started = time.monotonic()
    while time.monotonic() - started < NEGATIVE_TTL * 1.6:  # into a second negative TTL
        status, _, body = ext.get(target)
        assert (status, body) == (first[0], first[2])  # the very same answer, byte for byte
        reads += 1
    elapsed = time.monotonic() - started
    calls = proxy.requests_received - before
    assert 1 <= calls <= math.ceil(elapsed / NEGATIVE_TTL) + 1, (calls, elapsed, reads)
    assert reads > 10 * calls, (calls, reads)
    counters = metrics(ext)
    assert counters["NegativeHits"] == reads - calls
    assert counters["UpstreamErrorsByType"] == {error_type: calls}


def test_transient_errors_are_never_remembered(
    behind_proxy: tuple[ExtensionProcess, FaultProxy], moto: Moto
) -> None:
    ext, proxy = behind_proxy
    name = missing("transient")
    moto.boto3_client("secretsmanager").create_secret(Name=name, SecretString="transient-VALUE")  # type: ignore[attr-defined]
    for fault, status in (("status_500", 500), ("throttle", 400)):
        proxy.set_fault(fault)
        before = proxy.requests_received
        assert ext.get(secret_path(name))[0] == status
        assert ext.get(secret_path(name))[0] == status
        assert proxy.requests_received - before >= 2  # each read asked AWS again
    proxy.set_fault(None)
    status, _, body = ext.get(secret_path(name))  # at once, not a negative TTL later
    assert (status, json.loads(body)["SecretString"]) == (200, "transient-VALUE")
    assert metrics(ext)["NegativeHits"] == 0


def test_refresh_now_bypasses_a_remembered_not_found(
    behind_proxy: tuple[ExtensionProcess, FaultProxy], moto: Moto
) -> None:
    ext, proxy = behind_proxy
    name = missing("created")
    assert not_found(ext.get(secret_path(name)))
    moto.boto3_client("secretsmanager").create_secret(Name=name, SecretString="created-VALUE")  # type: ignore[attr-defined]
    assert not_found(ext.get(secret_path(name)))  # remembered: AWS not asked
    before = proxy.requests_received
    status, _, body = ext.get(secret_path(name) + "&refreshNow=true")
    assert (status, json.loads(body)["SecretString"]) == (200, "created-VALUE")
    assert proxy.requests_received - before == 1
    assert ext.get(secret_path(name))[0] == 200  # the value replaced the remembered error
    assert proxy.requests_received - before == 1


def test_a_batch_item_not_found_is_remembered_and_replayed(
    behind_proxy: tuple[ExtensionProcess, FaultProxy], moto: Moto
) -> None:
    ext, proxy = behind_proxy
    name = missing("batch")
    route = "/secretsmanager/batch?secretIds=" + ",".join(
        quote(n, safe="") for n in (moto.secret_name, name)
    )
    # The session's Lambda role may not call BatchGetSecretValue: granted for this test.
    iam: Any = moto.boto3_client("iam")
    role = moto.role_arn.rsplit("/", 1)[1]
    iam.put_role_policy(
        RoleName=role, PolicyName="negative", PolicyDocument=json.dumps(BATCH_POLICY)
    )
    try:
        before = proxy.requests_received
        status, _, first = ext.get(route)
        assert status == 200, first
        assert [e["SecretId"] for e in json.loads(first)["Errors"]] == [name]
        assert proxy.header_values("x-amz-target")[-1] == "secretsmanager.BatchGetSecretValue"
        calls = proxy.requests_received - before
        status, _, again = ext.get(route)
        assert (status, again) == (200, first)
        assert proxy.requests_received - before == calls  # a hit and a negative hit
        # The single read of the name gets the remembered error too.
        assert not_found(ext.get(secret_path(name)))
        assert proxy.requests_received - before == calls
        assert metrics(ext)["NegativeHits"] == 2
    finally:
        iam.delete_role_policy(RoleName=role, PolicyName="negative")


# --- Lookups with the real cache: what is and is not remembered ----------------------------


class Missing:
    """An upstream with no secrets at all; counts GetSecretValue calls."""

    def __init__(self) -> None:
        self.calls = 0

    def deadline(self, service: object) -> float:
        return time.monotonic() + 30

    def get(self) -> Missing:
        return self

    def get_secret_value(self, secret_id: str, **selectors: object) -> dict[str, object]:
        self.calls += 1
        raise UpstreamError("gone", status=400, error_type="ResourceNotFoundException")

    def describe_secret(self, secret_id: str, **selectors: object) -> dict[str, list[str]]:
        raise AssertionError("nothing is held to revalidate")

    def get_parameter(self, name: str, **selectors: object) -> dict[str, object]:
        raise AssertionError("no parameter is read here")

    def batch_get_secret_value(self, ids: object, **selectors: object) -> tuple[dict, dict]:  # type: ignore[type-arg]
        raise AssertionError("no batch is read here")

    def get_parameters(self, names: object, *args: object, **kw: object) -> tuple[dict, dict]:  # type: ignore[type-arg]
        raise AssertionError("no batch is read here")

    def get_parameters_by_path(self, path: str, **selectors: object) -> list[dict[str, object]]:
        raise AssertionError("no path is read here")


def test_under_snapstart_no_error_is_remembered_before_the_first_invoke() -> None:
    upstream = Missing()
    lookups = Lookups(
        upstream,  # type: ignore[arg-type]
        Cache(10),
        secrets_manager_ttl=300,
        ssm_ttl=300,
        cache_until_invoked=True,
        negative_ttl=60,
    )
    for _ in range(3):
        with pytest.raises(UpstreamError):
            lookups.secret("nope")
    assert upstream.calls == 3
    lookups.start_caching()
    errors = []
    for _ in range(3):
        with pytest.raises(UpstreamError) as caught:
            lookups.secret("nope")
        errors.append(caught.value)
    assert upstream.calls == 4
    assert errors[1] is errors[0] and errors[2] is errors[0]  # the very same error replayed


def test_the_negative_ttl_never_outlives_the_services_ttl() -> None:
    class Clock:
        now = 1000.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    upstream = Missing()
    lookups = Lookups(
        upstream,  # type: ignore[arg-type]
        Cache(10, clock=clock),
        secrets_manager_ttl=3,
        ssm_ttl=300,
        negative_ttl=60,
    )
    for step in (0.0, 2.9, 0.2):  # remembered until the 3 s TTL passes, not for 60 s
        clock.now += step
        with pytest.raises(UpstreamError):
            lookups.secret("nope")
    assert upstream.calls == 2
