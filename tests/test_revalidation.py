"""Revalidating an expired secret with DescribeSecret, against the real process and moto (with
signature and IAM checks on) behind a proxy that records which operations reached AWS."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from cache import Cache
from parameters_secrets_extension.errors import UpstreamError
from parameters_secrets_extension.metrics import Metrics
from parameters_secrets_extension.revalidation import Revalidation
from tests.conftest import LambdaCredentials, Moto
from tests.extension_process import ExtensionProcess
from tests.fault_proxy import FaultProxy
from tests.hardening_support import secret_path, start_standalone

GET = "secretsmanager.GetSecretValue"
DESCRIBE = "secretsmanager.DescribeSecret"
BATCH = "secretsmanager.BatchGetSecretValue"
TTL = 1
DENIED_ROLE = "arn:aws:iam::210987654321:role/no-describe"
EXPIRED = TTL + 0.3  # seconds to sleep for an entry to expire

# The AWS extension's policy plus DescribeSecret (and the batch route's call).
REVALIDATING_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "secretsmanager:GetSecretValue",
                "secretsmanager:DescribeSecret",
                "secretsmanager:BatchGetSecretValue",
            ],
            "Resource": "*",
        }
    ],
}


@pytest.fixture(scope="module")
def describing_credentials(moto: Moto) -> LambdaCredentials:
    """Credentials of a role that may call DescribeSecret (the session's Lambda role may not)."""
    iam = moto.boto3_client("iam")
    name = f"revalidating-{uuid.uuid4().hex[:8]}"
    role = iam.create_role(  # type: ignore[attr-defined]
        RoleName=name,
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": "arn:aws:iam::123456789012:user/extension"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]
    iam.put_role_policy(  # type: ignore[attr-defined]
        RoleName=name, PolicyName="read", PolicyDocument=json.dumps(REVALIDATING_POLICY)
    )
    sts = moto.boto3_client("sts")
    creds = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="lambda")["Credentials"]  # type: ignore[attr-defined]
    return LambdaCredentials(creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])


class Setup:
    def __init__(self, ext: ExtensionProcess, proxy: FaultProxy, moto: Moto) -> None:
        self.ext, self.proxy, self.moto = ext, proxy, moto
        self._seen = 0

    def operations(self) -> list[str]:
        """The operations that reached AWS since the last call."""
        targets = self.proxy.header_values("x-amz-target")
        new, self._seen = targets[self._seen :], len(targets)
        return new

    def read(self, path: str) -> bytes:
        status, _, body = self.ext.get(path)
        assert status == 200, body
        return body

    def metric(self, name: str) -> int:
        status, _, body = self.ext.get("/metrics")
        assert status == 200, body
        return int(json.loads(body)[name])


@pytest.fixture
def setup_for(extension_executable: Path, tmp_path: Path, moto: Moto) -> Iterator[object]:
    started: list[tuple[FaultProxy, ExtensionProcess]] = []

    def start(creds: LambdaCredentials) -> Setup:
        proxy = FaultProxy(moto.host, moto.port)
        ext = start_standalone(
            extension_executable,
            tmp_path / f"extension-{len(started)}.log",
            moto,
            creds,
            endpoint=f"http://127.0.0.1:{proxy.port}",
            SECRETS_MANAGER_TTL=str(TTL),
            # Off, so that an expiry is met by a read, never by a background refresh.
            PARAMETERS_SECRETS_EXTENSION_REFRESH_AHEAD_PERCENT="0",
        )
        started.append((proxy, ext))
        return Setup(ext, proxy, moto)

    yield start
    for proxy, ext in started:
        ext.__exit__(None, None, None)
        proxy.stop()


def new_secret(moto: Moto, value: str) -> str:
    name = f"issue21/revalidate-{uuid.uuid4().hex[:8]}"
    moto.boto3_client("secretsmanager").create_secret(Name=name, SecretString=value)  # type: ignore[attr-defined]
    return name


def test_an_unchanged_secret_is_renewed_without_reading_its_value(
    setup_for: object, moto: Moto, describing_credentials: LambdaCredentials
) -> None:
    s: Setup = setup_for(describing_credentials)  # type: ignore[operator]
    name = new_secret(moto, "renew-VALUE-1")
    first = s.read(secret_path(name))
    assert s.operations() == [GET]
    time.sleep(EXPIRED)
    # The stage read explicitly is revalidated as the default one is.
    explicit = secret_path(name) + "&versionStage=AWSCURRENT"
    assert s.read(explicit) == first  # a miss: a GetSecretValue of its own
    assert s.operations() == [GET]
    time.sleep(EXPIRED)
    assert s.read(secret_path(name)) == first
    assert s.read(explicit) == first
    assert s.operations() == [DESCRIBE, DESCRIBE]  # no GetSecretValue reached AWS
    assert s.read(secret_path(name)) == first  # renewed for a whole TTL: a hit
    assert s.operations() == []
    assert (s.metric("RevalidationsRenewed"), s.metric("RevalidationsRefetched")) == (2, 0)


def test_a_rotated_secret_is_read_again(
    setup_for: object, moto: Moto, describing_credentials: LambdaCredentials
) -> None:
    s: Setup = setup_for(describing_credentials)  # type: ignore[operator]
    name = new_secret(moto, "rotate-VALUE-1")
    assert json.loads(s.read(secret_path(name)))["SecretString"] == "rotate-VALUE-1"
    moto.boto3_client("secretsmanager").put_secret_value(  # type: ignore[attr-defined]
        SecretId=name, SecretString="rotate-VALUE-2"
    )  # AWSCURRENT moves to the new version
    time.sleep(EXPIRED)
    assert json.loads(s.read(secret_path(name)))["SecretString"] == "rotate-VALUE-2"
    assert s.operations() == [GET, DESCRIBE, GET]
    assert (s.metric("RevalidationsRenewed"), s.metric("RevalidationsRefetched")) == (0, 1)


def test_a_batch_filled_entry_renews_to_the_bytes_a_single_read_gets(
    setup_for: object, moto: Moto, describing_credentials: LambdaCredentials
) -> None:
    s: Setup = setup_for(describing_credentials)  # type: ignore[operator]
    name = new_secret(moto, "batch-VALUE-1")
    batch = json.loads(s.read("/secretsmanager/batch?secretIds=" + quote(name, safe="")))
    assert [v["Name"] for v in batch["SecretValues"]] == [name]
    time.sleep(EXPIRED)
    renewed = s.read(secret_path(name))
    assert s.operations() == [BATCH, DESCRIBE]
    assert renewed == s.read(secret_path(name) + "&refreshNow=true")  # GetSecretValue's bytes
    assert s.operations() == [GET]


def test_versions_read_by_id_and_refresh_now_always_read_the_value(
    setup_for: object, moto: Moto, describing_credentials: LambdaCredentials
) -> None:
    s: Setup = setup_for(describing_credentials)  # type: ignore[operator]
    name = new_secret(moto, "byid-VALUE-1")
    version = json.loads(s.read(secret_path(name)))["VersionId"]
    by_id = secret_path(name) + "&versionId=" + quote(version, safe="")
    s.read(by_id)
    time.sleep(EXPIRED)
    s.read(by_id)
    s.read(secret_path(name) + "&refreshNow=true")
    assert s.operations() == [GET, GET, GET, GET]


def test_a_role_that_may_not_describe_falls_back_once_and_logs_once(
    setup_for: object, moto: Moto, lambda_credentials: LambdaCredentials
) -> None:
    # The session's Lambda role has GetSecretValue only, as the AWS extension needs.
    s: Setup = setup_for(lambda_credentials)  # type: ignore[operator]
    name = new_secret(moto, "denied-VALUE-1")
    first = s.read(secret_path(name))
    time.sleep(EXPIRED)
    assert s.read(secret_path(name)) == first  # never an error to the caller
    assert s.operations() == [GET, DESCRIBE, GET]
    time.sleep(EXPIRED)
    assert s.read(secret_path(name)) == first
    assert s.operations() == [GET]  # the denial is remembered
    assert s.metric("RevalidationsDeniedFallback") == 2
    lines = [line for line in s.ext.output().splitlines() if "DescribeSecret is denied" in line]
    assert len(lines) == 1, lines
    assert "WARN" in lines[0] and "VALUE" not in lines[0] and name not in lines[0]


def test_a_denial_is_remembered_per_principal() -> None:
    metrics = Metrics()
    revalidation = Revalidation(metrics)
    held = b'{"Name":"s","VersionId":"v1","SecretString":"x"}'
    calls: list[str] = []

    def describe_as(principal: str | None) -> Callable[[], dict[str, list[str]]]:
        def describe() -> dict[str, list[str]]:
            calls.append(str(principal))
            if principal == DENIED_ROLE:
                raise UpstreamError("no", status=400, error_type="AccessDeniedException")
            return {"v1": ["AWSCURRENT"]}

        return describe

    for _ in range(2):
        for principal in (DENIED_ROLE, None):
            renew = revalidation.renewer(describe_as(principal), None, principal=principal)
            assert renew(held) is (principal is None)
    # The role's denial was asked once and remembered; the function's own role still renews.
    assert calls == [DENIED_ROLE, "None", "None"]
    counters = metrics.counters(Cache(1).info())
    assert (counters["RevalidationsRenewed"], counters["RevalidationsDeniedFallback"]) == (2, 2)
