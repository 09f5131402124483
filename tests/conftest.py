"""Shared fixtures: a clean environment for every test and one signature-checking moto server."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from tests.extension_process import ExtensionProcess

REGION = "us-east-1"
ACCOUNT = "123456789012"

# What a role needs for the batch and path routes, beside the single reads.
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

# Fixed test data: every value is a made-up marker so a leak is easy to grep for.
SECRET_STRING = '{"username":"svc","password":"s3cr3t-VALUE-1"}'
SECRET_STRING_V2 = '{"username":"svc","password":"s3cr3t-VALUE-2"}'
SECRET_BINARY = bytes(range(256))
PARAM_STRING = "plain-PARAM-value"
PARAM_SECURE = "secure-PARAM-value-42"
PARAM_LIST = "alpha,beta,gamma"

# Every field of the Go SDK's output structs, in the order the AWS extension sends them.
SECRET_FIELDS = [
    "ARN",
    "CreatedDate",
    "Name",
    "SecretBinary",
    "SecretString",
    "VersionId",
    "VersionStages",
    "ResultMetadata",
]
PARAMETER_FIELDS = [
    "ARN",
    "DataType",
    "LastModifiedDate",
    "Name",
    "Selector",
    "SourceResult",
    "Type",
    "Value",
    "Version",
]

_ISOLATED_PREFIXES = ("AWS_", "PARAMETERS_SECRETS_EXTENSION_", "SECRETS_MANAGER_", "SSM_PARAMETER_")


@pytest.fixture(autouse=True)
def clean_environ() -> Iterator[None]:
    """Each test starts without AWS or extension variables and leaves os.environ as it found it."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith(_ISOLATED_PREFIXES):
            del os.environ[name]
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@dataclass(frozen=True)
class Moto:
    """A running moto server and the identities and data created in it."""

    endpoint: str
    host: str
    port: int
    access_key: str
    secret_key: str
    limited_access_key: str
    limited_secret_key: str
    role_arn: str
    secret_name: str
    secret_arn: str
    secret_v1: str
    secret_v2: str
    binary_secret_name: str
    param_string: str
    param_secure: str
    param_list: str

    def boto3_client(self, service: str, *, admin: bool = True, **kwargs: object) -> object:
        """A boto3 client signed with the admin (or limited) user's key."""
        import boto3

        key, secret = (
            (self.access_key, self.secret_key)
            if admin
            else (self.limited_access_key, self.limited_secret_key)
        )
        return boto3.client(  # type: ignore[call-overload]
            service,
            region_name=REGION,
            endpoint_url=self.endpoint,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            **kwargs,
        )


def _set_auth(endpoint: str, body: bytes) -> None:
    request = urllib.request.Request(
        endpoint + "/moto-api/reset-auth",
        data=body,
        headers={"Content-Type": "text/plain"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def _bootstrap(endpoint: str) -> Moto:
    import boto3

    anon = {
        "region_name": REGION,
        "endpoint_url": endpoint,
        "aws_access_key_id": "bootstrap",
        "aws_secret_access_key": "bootstrap",
    }
    iam = boto3.client("iam", **anon)  # type: ignore[call-overload]
    iam.create_user(UserName="extension")
    key = iam.create_access_key(UserName="extension")["AccessKey"]
    iam.put_user_policy(
        UserName="extension",
        PolicyName="all",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["secretsmanager:*", "ssm:*", "kms:*", "sts:*", "iam:*"],
                        "Resource": "*",
                    }
                ],
            }
        ),
    )
    iam.create_user(UserName="limited")
    limited = iam.create_access_key(UserName="limited")["AccessKey"]
    iam.put_user_policy(
        UserName="limited",
        PolicyName="ssm-only",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": ["ssm:GetParameter"], "Resource": "*"}],
            }
        ),
    )
    role = iam.create_role(
        RoleName="extension-role",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/extension"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]
    iam.put_role_policy(
        RoleName="extension-role",
        PolicyName="read",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["secretsmanager:GetSecretValue", "ssm:GetParameter"],
                        "Resource": "*",
                    }
                ],
            }
        ),
    )

    sm = boto3.client("secretsmanager", **anon)  # type: ignore[call-overload]
    created = sm.create_secret(Name="app/db-credentials", SecretString=SECRET_STRING)
    v2 = sm.put_secret_value(SecretId="app/db-credentials", SecretString=SECRET_STRING_V2)
    sm.create_secret(Name="app/binary-blob", SecretBinary=SECRET_BINARY)

    ssm = boto3.client("ssm", **anon)  # type: ignore[call-overload]
    ssm.put_parameter(Name="/app/plain", Value=PARAM_STRING, Type="String")
    ssm.put_parameter(Name="/app/secure", Value=PARAM_SECURE, Type="SecureString")
    ssm.put_parameter(Name="/app/list", Value=PARAM_LIST, Type="StringList")

    return Moto(
        endpoint=endpoint,
        host=endpoint.split("//")[1].split(":", maxsplit=1)[0],
        port=int(endpoint.rsplit(":", 1)[1]),
        access_key=key["AccessKeyId"],
        secret_key=key["SecretAccessKey"],
        limited_access_key=limited["AccessKeyId"],
        limited_secret_key=limited["SecretAccessKey"],
        role_arn=role["Arn"],
        secret_name="app/db-credentials",
        secret_arn=created["ARN"],
        secret_v1=created["VersionId"],
        secret_v2=v2["VersionId"],
        binary_secret_name="app/binary-blob",
        param_string="/app/plain",
        param_secure="/app/secure",
        param_list="/app/list",
    )


@pytest.fixture(scope="session")
def moto() -> Iterator[Moto]:
    """One moto server for the session, with signature checking on after the bootstrap.

    Tests that change data (put_secret_value, labels) create their own names, so the
    fixed data above stays as described.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        _set_auth(endpoint, b"inf")
        data = _bootstrap(endpoint)
        _set_auth(endpoint, b"0")
        yield data
    finally:
        _set_auth(endpoint, b"inf")
        server.stop()


@dataclass(frozen=True)
class LambdaCredentials:
    """Temporary credentials from sts.assume_role, as Lambda hands them to a function."""

    access_key: str
    secret_key: str
    session_token: str


@pytest.fixture(scope="session")
def lambda_credentials(moto: Moto) -> LambdaCredentials:
    sts = moto.boto3_client("sts")
    creds = sts.assume_role(RoleArn=moto.role_arn, RoleSessionName="lambda")["Credentials"]  # type: ignore[attr-defined]
    return LambdaCredentials(creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])


@pytest.fixture(scope="session")
def layer_opt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layer built by build_layer.py and unpacked into a directory laid out like /opt."""
    from bench import harness

    _, executable = harness.build_layer(Path(sys.executable), tmp_path_factory.mktemp("dist"))
    return executable.parent.parent


@pytest.fixture(scope="session")
def extension_executable(layer_opt: Path) -> Path:
    return layer_opt / "extensions" / "parameters-secrets-extension"


def fresh_python(code: str) -> str:
    """The output of `code` run by a fresh `python -I -S` (this interpreter) with the
    repository first on sys.path: what importing a module loads, seen from outside the test
    process, whose own sys.modules already holds everything."""
    prefix = f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n"
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", prefix + code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def free_port() -> int:
    """A loopback port that was free a moment ago (good enough for one test's subprocess)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def start_extension(
    extension_executable: Path, tmp_path: Path, moto: Moto, lambda_credentials: LambdaCredentials
) -> Iterator[Callable[..., ExtensionProcess]]:
    """Start the real extension standalone with extra environment variables; each one started
    is stopped at the end of the test."""
    from tests.hardening_support import start_standalone

    started: list[ExtensionProcess] = []
    with contextlib.ExitStack() as running:

        def start(**env: str) -> ExtensionProcess:
            log = tmp_path / ("extension.log" if not started else f"extension-{len(started)}.log")
            ext = start_standalone(extension_executable, log, moto, lambda_credentials, **env)
            started.append(running.enter_context(ext))
            return ext

        yield start


@pytest.fixture
def extension(start_extension: Callable[..., ExtensionProcess]) -> ExtensionProcess:
    """The real extension, standalone, taking up to 256 clients at once."""
    return start_extension(PARAMETERS_SECRETS_EXTENSION_MAX_CLIENT_CONNECTIONS="256")


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll `predicate()` until true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def boto_error(call: Callable[[], Any]) -> tuple[int, str]:
    """The HTTP status and error code with which a boto3 call against moto fails."""
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as caught:
        call()
    error: Any = caught.value.response
    return error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"]
