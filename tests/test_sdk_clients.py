"""Unchanged SDK code against the extension's AWS JSON protocol (local_api/sdk_protocol.py).

The real extension runs as the function's environment has it: AWS_ENDPOINT_URL_SECRETS_MANAGER
and AWS_ENDPOINT_URL_SSM name the extension itself (the loop guard must ignore them for its
own calls), AWS_ENDPOINT_URL a fault proxy in front of moto, which counts what reaches "AWS".
The clients are boto3 (through those variables and through endpoint_url=), the AWS CLI,
Powertools for AWS Lambda (Python) and the AWS SDK for JavaScript v3, none changed; what
they get back is compared with what the same client gets from moto directly.
"""

from __future__ import annotations

import calendar
import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sigv4
from parameters_secrets_extension.aws.endpoints import names_own_address
from parameters_secrets_extension.local_api.sdk_auth import epoch_seconds
from tests.conftest import (
    BATCH_POLICY,
    REGION,
    SECRET_BINARY,
    SECRET_STRING,
    SECRET_STRING_V2,
    LambdaCredentials,
    Moto,
    free_port,
)
from tests.extension_process import ExtensionProcess, lambda_env
from tests.fault_proxy import FaultProxy

ROOT = Path(__file__).resolve().parent.parent
NODE_PROJECT = Path(__file__).resolve().parent / "node_sdk"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / (
    "parameters-secrets-extension"
)
TREE = [f"/sdk/tree/p{i:02d}" for i in range(13)] + ["/sdk/tree/deep/x", "/sdk/tree/deep/y"]
LABELLED = "/sdk/labelled"
MODES = ("env", "endpoint_url")
# A value that holds what the wire conversion rewrites (null members, a date member), in
# every escaped form: it must come back byte for byte.
TRICKY = (
    '{"a":null,"CreatedDate":"2024-01-01T00:00:00.000Z","b":"x\\","c":null",'
    ' "LastModifiedDate":"2024-01-01T00:00:00.000Z", "d":null}'
)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def sdk_data(moto: Moto) -> None:
    """This module's own names in the session's moto: a path of 15 parameters (two one
    level down), a parameter with two versions and a label, three secrets."""
    sm: Any = moto.boto3_client("secretsmanager")
    ssm: Any = moto.boto3_client("ssm")
    for index, name in enumerate(TREE):
        kind = "SecureString" if name.endswith("/x") else "String"
        ssm.put_parameter(Name=name, Value=f"tree-PARAM-{index}", Type=kind)
    ssm.put_parameter(Name=LABELLED, Value="labelled-PARAM-1", Type="String")
    ssm.put_parameter(Name=LABELLED, Value="labelled-PARAM-2", Type="String", Overwrite=True)
    ssm.label_parameter_version(Name=LABELLED, ParameterVersion=1, Labels=["stable"])
    for name in ("sdk/shared", "sdk/throttled", "sdk/refused", "sdk/denied-1", "sdk/denied-2"):
        sm.create_secret(Name=name, SecretString=f"{name}-SECRET")
    sm.create_secret(Name="sdk/tricky", SecretString=TRICKY)
    ssm.put_parameter(Name="/sdk/tricky", Value=TRICKY, Type="String")


@pytest.fixture(scope="module")
def upstream(moto: Moto) -> Iterator[FaultProxy]:
    with FaultProxy(moto.host, moto.port) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def ext(  # noqa: PLR0917 (fixtures)
    moto: Moto,
    upstream: FaultProxy,
    lambda_credentials: LambdaCredentials,
    extension_executable: Path,
    tmp_path_factory: pytest.TempPathFactory,
    sdk_data: None,
) -> Iterator[ExtensionProcess]:
    """The extension with the function's variables: both service endpoints name itself."""
    port = free_port()
    env = lambda_env(
        moto,
        lambda_credentials,
        port,
        None,
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{upstream.port}",
        AWS_ENDPOINT_URL_SECRETS_MANAGER=f"http://127.0.0.1:{port}",
        AWS_ENDPOINT_URL_SSM=f"http://localhost:{port}/",
    )
    log = tmp_path_factory.mktemp("sdk") / "extension.log"
    with ExtensionProcess(extension_executable, env, log) as process:
        process.wait_listening()
        yield process


@pytest.fixture
def batch_allowed(moto: Moto) -> Iterator[None]:
    """The Lambda role may call the batch and path operations too, for this test."""
    iam: Any = moto.boto3_client("iam")
    role = moto.role_arn.rsplit("/", 1)[1]
    iam.put_role_policy(RoleName=role, PolicyName="batch", PolicyDocument=json.dumps(BATCH_POLICY))
    try:
        yield
    finally:
        iam.delete_role_policy(RoleName=role, PolicyName="batch")


def _config() -> Any:
    from botocore.config import Config

    # One attempt: a refusal or a throttle is seen as it was answered, not retried.
    return Config(retries={"max_attempts": 1, "mode": "standard"})


def function_clients(
    mode: str, ext: ExtensionProcess, creds: LambdaCredentials, **overrides: str | None
) -> tuple[Any, Any]:
    """(secretsmanager, ssm) boto3 clients as a function makes them: from its environment
    (`env`: the two endpoint variables, Lambda's credential variables) or with endpoint_url=.
    `overrides` replace credential variables (None removes one)."""
    import boto3

    variables: dict[str, str | None] = {
        "AWS_ACCESS_KEY_ID": creds.access_key,
        "AWS_SECRET_ACCESS_KEY": creds.secret_key,
        "AWS_SESSION_TOKEN": creds.session_token,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,  # Lambda sets both; boto3 reads this one
        **overrides,
    }
    for name, value in variables.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if mode == "env":
        os.environ["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = f"http://localhost:{ext.port}"
        os.environ["AWS_ENDPOINT_URL_SSM"] = f"http://127.0.0.1:{ext.port}"
        session = boto3.session.Session()
        return session.client("secretsmanager", config=_config()), session.client(
            "ssm", config=_config()
        )
    url = f"http://localhost:{ext.port}"
    return (
        boto3.client("secretsmanager", endpoint_url=url, config=_config()),
        boto3.client("ssm", endpoint_url=url, config=_config()),
    )


def _strip(answer: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in answer.items() if key != "ResponseMetadata"}


def _unselected(parameter: dict[str, Any], requested: str) -> dict[str, Any]:
    """`parameter` without the Selector that AWS echoes for `name:3` or `name:label` (as
    the extension does) and moto leaves out."""
    selector = requested[requested.find(":") :] if ":" in requested else None
    assert parameter.get("Selector") == selector, (parameter, requested)
    return {key: value for key, value in parameter.items() if key != "Selector"}


def _error(call: Callable[[], object]) -> tuple[int, str, str]:
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as caught:
        call()
    response: Any = caught.value.response
    return (
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Code"],
        response["Error"]["Message"],
    )


# ---------------------------------------------------------------- boto3


@pytest.mark.parametrize("mode", MODES)
def test_boto3_single_reads_answer_as_aws_does(
    mode: str, ext: ExtensionProcess, moto: Moto, lambda_credentials: LambdaCredentials
) -> None:
    sm, ssm = function_clients(mode, ext, lambda_credentials)
    aws_sm: Any = moto.boto3_client("secretsmanager")
    aws_ssm: Any = moto.boto3_client("ssm")
    secret_reads: list[dict[str, str]] = [
        {"SecretId": moto.secret_name},
        {"SecretId": moto.secret_arn},
        {"SecretId": moto.secret_name, "VersionId": moto.secret_v1},
        {"SecretId": moto.secret_name, "VersionStage": "AWSPREVIOUS"},
        {"SecretId": moto.binary_secret_name},
        {"SecretId": "sdk/tricky"},
    ]
    for kwargs in secret_reads:
        got = _strip(sm.get_secret_value(**kwargs))
        assert got == _strip(aws_sm.get_secret_value(**kwargs)), kwargs
        assert isinstance(got["CreatedDate"], datetime.datetime)
    assert sm.get_secret_value(SecretId=moto.binary_secret_name)["SecretBinary"] == SECRET_BINARY
    assert sm.get_secret_value(SecretId=moto.secret_name)["SecretString"] == SECRET_STRING_V2
    first = sm.get_secret_value(SecretId=moto.secret_name, VersionId=moto.secret_v1)
    assert first["SecretString"] == SECRET_STRING
    parameter_reads: list[dict[str, Any]] = [
        {"Name": moto.param_string},
        {"Name": moto.param_secure, "WithDecryption": True},
        {"Name": moto.param_secure},
        {"Name": moto.param_list},
        {"Name": f"{LABELLED}:1"},
        {"Name": f"{LABELLED}:stable"},
        {"Name": LABELLED},
        {"Name": "/sdk/tricky"},
    ]
    for kwargs in parameter_reads:
        got = _unselected(ssm.get_parameter(**kwargs)["Parameter"], kwargs["Name"])
        assert got == aws_ssm.get_parameter(**kwargs)["Parameter"], kwargs
    assert ssm.get_parameter(Name=f"{LABELLED}:stable")["Parameter"]["Value"] == "labelled-PARAM-1"
    assert sm.get_secret_value(SecretId="sdk/tricky")["SecretString"] == TRICKY
    assert ssm.get_parameter(Name="/sdk/tricky")["Parameter"]["Value"] == TRICKY


@pytest.mark.parametrize("mode", MODES)
def test_boto3_batches_list_partial_errors(
    mode: str,
    ext: ExtensionProcess,
    moto: Moto,
    lambda_credentials: LambdaCredentials,
    batch_allowed: None,
) -> None:
    sm, ssm = function_clients(mode, ext, lambda_credentials)
    ids = [moto.secret_name, moto.binary_secret_name, "sdk/nope"]
    got = sm.batch_get_secret_value(SecretIdList=ids)
    aws = moto.boto3_client("secretsmanager").batch_get_secret_value(SecretIdList=ids)  # type: ignore[attr-defined]
    by_name = {item["Name"]: item for item in got["SecretValues"]}
    assert by_name == {item["Name"]: item for item in aws["SecretValues"]}
    assert by_name[moto.binary_secret_name]["SecretBinary"] == SECRET_BINARY
    assert [(e["SecretId"], e["ErrorCode"]) for e in got["Errors"]] == [
        ("sdk/nope", "ResourceNotFoundException")
    ]
    names = [moto.param_string, moto.param_secure, "/sdk/nope", f"{LABELLED}:stable"]
    got = ssm.get_parameters(Names=names, WithDecryption=True)
    aws = moto.boto3_client("ssm").get_parameters(Names=names, WithDecryption=True)  # type: ignore[attr-defined]
    assert got["InvalidParameters"] == ["/sdk/nope"] == aws["InvalidParameters"]
    requested = {name.split(":")[0]: name for name in names}
    found = [_unselected(p, requested[p["Name"]]) for p in got["Parameters"]]
    assert sorted(found, key=lambda p: p["Name"]) == sorted(
        aws["Parameters"], key=lambda p: p["Name"]
    )


@pytest.mark.parametrize("mode", MODES)
def test_boto3_path_reads_page_as_ssm_does(
    mode: str,
    ext: ExtensionProcess,
    moto: Moto,
    lambda_credentials: LambdaCredentials,
    batch_allowed: None,
) -> None:
    _, ssm = function_clients(mode, ext, lambda_credentials)
    aws: Any = moto.boto3_client("ssm")

    def every(client: Any, **kwargs: Any) -> list[list[dict[str, Any]]]:
        pages = client.get_paginator("get_parameters_by_path").paginate(**kwargs)
        return [page["Parameters"] for page in pages]

    pages = every(ssm, Path="/sdk/tree", Recursive=True, WithDecryption=True)
    assert [len(page) for page in pages] == [10, 5]  # MaxResults' default, as SSM's
    found = sorted((p for page in pages for p in page), key=lambda p: p["Name"])
    expected = every(aws, Path="/sdk/tree", Recursive=True, WithDecryption=True)
    assert found == sorted((p for page in expected for p in page), key=lambda p: p["Name"])
    assert sorted(p["Name"] for p in found) == sorted(TREE)
    small = every(ssm, Path="/sdk/tree", PaginationConfig={"PageSize": 4})
    assert [len(page) for page in small] == [4, 4, 4, 1]
    assert sorted(p["Name"] for page in small for p in page) == sorted(TREE[:13])
    status, code, _ = _error(lambda: ssm.get_parameters_by_path(Path="/sdk/tree", NextToken="x"))
    assert (status, code) == (400, "InvalidNextToken")


@pytest.mark.parametrize("mode", MODES)
def test_boto3_raises_the_exception_classes_aws_gives(
    mode: str, ext: ExtensionProcess, moto: Moto, lambda_credentials: LambdaCredentials
) -> None:
    sm, ssm = function_clients(mode, ext, lambda_credentials)
    with pytest.raises(sm.exceptions.ResourceNotFoundException):
        sm.get_secret_value(SecretId="sdk/absent")
    with pytest.raises(sm.exceptions.ResourceNotFoundException):
        sm.get_secret_value(SecretId=moto.secret_name, VersionId="a" * 32)
    with pytest.raises(ssm.exceptions.ParameterNotFound):
        ssm.get_parameter(Name="/sdk/absent")
    with pytest.raises(ssm.exceptions.ParameterVersionNotFound):
        ssm.get_parameter(Name=f"{LABELLED}:9")
    # Only reads are served, and the refusal names what was asked for.
    status, code, message = _error(lambda: sm.create_secret(Name="sdk/new", SecretString="x"))
    assert (status, code) == (400, "UnknownOperationException")
    assert "secretsmanager.CreateSecret" in message
    status, code, message = _error(lambda: ssm.put_parameter(Name="/sdk/new", Value="x"))
    assert (status, code) == (400, "UnknownOperationException")
    assert "AmazonSSM.PutParameter" in message
    assert (
        moto.boto3_client("ssm").describe_parameters(  # type: ignore[attr-defined]
            ParameterFilters=[{"Key": "Name", "Values": ["/sdk/new"]}]
        )["Parameters"]
        == []
    )


def test_boto3_sees_access_denied_as_aws_answers_it(
    ext: ExtensionProcess, moto: Moto, lambda_credentials: LambdaCredentials
) -> None:
    # The Lambda role may call GetSecretValue and GetParameter only (conftest).
    # Names no other test reads: nothing of theirs is cached.
    sm, ssm = function_clients("env", ext, lambda_credentials)
    ids = ["sdk/denied-1", "sdk/denied-2"]
    status, code, _ = _error(lambda: sm.batch_get_secret_value(SecretIdList=ids))
    assert (status, code) == (403, "AccessDenied")  # moto's own, passed through
    status, code, _ = _error(lambda: ssm.get_parameters_by_path(Path="/sdk/tree/deep"))
    assert (status, code) == (403, "AccessDenied")


def test_a_throttled_upstream_reaches_boto3_as_aws_sent_it(
    ext: ExtensionProcess, upstream: FaultProxy, lambda_credentials: LambdaCredentials
) -> None:
    sm, _ = function_clients("endpoint_url", ext, lambda_credentials)
    upstream.set_fault("throttle")
    try:
        status, code, message = _error(lambda: sm.get_secret_value(SecretId="sdk/throttled"))
    finally:
        upstream.set_fault(None)
    assert (status, code, message) == (400, "ThrottlingException", "Rate exceeded")
    assert sm.get_secret_value(SecretId="sdk/throttled")["SecretString"] == "sdk/throttled-SECRET"


def test_a_value_cached_by_one_route_serves_the_other(
    ext: ExtensionProcess, upstream: FaultProxy, lambda_credentials: LambdaCredentials
) -> None:
    sm, ssm = function_clients("env", ext, lambda_credentials)
    before = upstream.requests_received
    status, body = ext.get_json("/secretsmanager/get?secretId=sdk%2Fshared")
    assert (status, body["SecretString"]) == (200, "sdk/shared-SECRET")
    assert upstream.requests_received == before + 1
    assert sm.get_secret_value(SecretId="sdk/shared")["SecretString"] == "sdk/shared-SECRET"
    assert upstream.requests_received == before + 1  # a hit
    name = TREE[3]
    assert ssm.get_parameter(Name=name)["Parameter"]["Value"] == "tree-PARAM-3"
    assert upstream.requests_received == before + 2
    status, body = ext.get_json(f"/systemsmanager/parameters/get?name={name}")
    assert (status, body["Parameter"]["Value"]) == (200, "tree-PARAM-3")
    assert upstream.requests_received == before + 2
    metrics = ext.get_json("/metrics")[1]
    assert metrics["Hits"] >= 2


# ---------------------------------------------------------------- authentication


def _raw(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection: status, lower-cased headers, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        while len(body) < int(headers.get("content-length", "0")):
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return int(lines[0].split()[1]), headers, body


def _signed(
    port: int,
    creds: LambdaCredentials,
    payload: dict[str, object],
    *,
    now: datetime.datetime | None = None,
    target: str = "secretsmanager.GetSecretValue",
) -> bytes:
    """A request signed by the project's own signer (for a date no SDK lets one choose)."""
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": target,
        "Host": f"localhost:{port}",
    }
    signed = sigv4.sign(
        "POST",
        f"http://localhost:{port}/",
        headers,
        body,
        access_key=creds.access_key,
        secret_key=creds.secret_key,
        session_token=creds.session_token,
        region=REGION,
        service="secretsmanager",
        now=now or datetime.datetime.now(datetime.timezone.utc),
    )
    signed["Content-Length"] = str(len(body))
    head = "".join(f"{name}: {value}\r\n" for name, value in signed.items())
    return f"POST / HTTP/1.1\r\n{head}\r\n".encode() + body


def test_requests_not_signed_by_the_function_are_refused_before_aws(
    ext: ExtensionProcess,
    moto: Moto,
    upstream: FaultProxy,
    lambda_credentials: LambdaCredentials,
) -> None:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    creds = lambda_credentials
    url = f"http://localhost:{ext.port}"
    other: Any = boto3.client(
        "secretsmanager",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=moto.access_key,  # a key moto knows, but not the function's
        aws_secret_access_key=moto.secret_key,
        aws_session_token=creds.session_token,
        config=_config(),
    )
    wrong_secret: Any = boto3.client(
        "secretsmanager",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=moto.secret_key,
        aws_session_token=creds.session_token,
        config=_config(),
    )
    no_token: Any = boto3.client(
        "secretsmanager",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key,
        config=_config(),
    )
    unsigned: Any = boto3.client(
        "secretsmanager",
        endpoint_url=url,
        region_name=REGION,
        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}),
    )
    before = upstream.requests_received
    refusals = {
        "other credentials": (other, "UnrecognizedClientException"),
        "another secret key": (wrong_secret, "InvalidSignatureException"),
        "no session token": (no_token, "UnrecognizedClientException"),
        "unsigned": (unsigned, "IncompleteSignatureException"),
    }
    for what, (client, code) in refusals.items():
        got = _error(partial(client.get_secret_value, SecretId="sdk/refused"))
        assert got[:2] == (403, code), what
    # The signer of these tests is right: the same request signed now is answered...
    status, _, body = _raw(ext.port, _signed(ext.port, creds, {"SecretId": moto.secret_name}))
    assert (status, json.loads(body)["SecretString"]) == (200, SECRET_STRING_V2)
    # ...and the one signed six minutes ago, replayed now, is not.
    old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=6)
    replay = _signed(ext.port, creds, {"SecretId": moto.secret_name}, now=old)
    status, headers, body = _raw(ext.port, replay)
    assert (status, headers["x-amzn-errortype"]) == (403, "InvalidSignatureException")
    assert json.loads(body)["__type"] == "InvalidSignatureException"
    assert b"VALUE" not in body
    # A token of the right length but not the function's.
    forged_creds = dataclasses.replace(creds, session_token="x" * len(creds.session_token))
    forged = _signed(ext.port, forged_creds, {"SecretId": moto.secret_name})
    assert _raw(ext.port, forged)[0] == 403
    # None of them reached AWS (the one answered was a hit: the value was cached before).
    assert upstream.requests_received == before
    log = ext.output()
    assert log.count("refused an AWS JSON request for GetSecretValue") >= 6
    signatures = [line.rsplit("Signature=", 1)[1][:64] for line in [replay.decode()] if line]
    assert signatures and all(sig not in log for sig in signatures)
    assert creds.session_token not in log and creds.secret_key not in log


def test_the_body_is_bounded_and_other_methods_keep_their_refusals(
    ext: ExtensionProcess, lambda_credentials: LambdaCredentials, moto: Moto
) -> None:
    port = ext.port
    target = "X-Amz-Target: secretsmanager.GetSecretValue\r\n"
    big = f"POST / HTTP/1.1\r\nHost: x\r\n{target}Content-Length: 200000\r\n\r\n".encode()
    assert _raw(port, big)[0] == 413
    chunked = f"POST / HTTP/1.1\r\nHost: x\r\n{target}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    assert _raw(port, chunked.encode())[0] == 411
    # Without X-Amz-Target, or to another path, POST is refused as it always was.
    assert _raw(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")[0] == 405
    post_get = f"POST /secretsmanager/get HTTP/1.1\r\nHost: x\r\n{target}\r\n".encode()
    assert _raw(port, post_get)[0] == 405
    # A forwarded request is refused on this route too.
    signed = _signed(port, lambda_credentials, {"SecretId": moto.secret_name})
    forwarded = signed.replace(b"\r\n", b"\r\nX-Forwarded-For: 10.0.0.1\r\n", 1)
    assert _raw(port, forwarded)[0] == 400
    # Keep-alive holds across signed requests with bodies: two on one connection.
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        for _ in range(2):
            sock.sendall(signed)
            data = b""
            while b'"}' not in data and b"]}" not in data:
                chunk = sock.recv(65536)
                assert chunk, "the connection closed after a signed request"
                data += chunk
            assert data.startswith(b"HTTP/1.1 200 ")
            assert b"Content-Type: application/x-amz-json-1.1" in data


# ---------------------------------------------------------------- the loop guard


def test_endpoint_variables_naming_the_extension_are_ignored_for_its_own_calls(
    ext: ExtensionProcess, upstream: FaultProxy, lambda_credentials: LambdaCredentials
) -> None:
    sm, _ = function_clients("env", ext, lambda_credentials)
    before = upstream.requests_received
    # A miss: it must go to moto through the proxy, not to the extension itself.
    assert sm.get_secret_value(SecretId="sdk/refused")["SecretString"] == "sdk/refused-SECRET"
    assert upstream.requests_received == before + 1
    log = ext.output()
    for variable in ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL_SSM"):
        lines = [line for line in log.splitlines() if line.count(f"{variable} names")]
        assert len(lines) == 1 and " INFO " in lines[0], lines
    assert "AWS_ENDPOINT_URL names" not in log  # the proxy is not the extension


@pytest.mark.parametrize(
    ("url", "own"),
    [
        ("http://localhost:2773", True),
        ("http://127.0.0.1:2773/", True),
        ("http://127.0.0.9:2773", True),
        ("http://[::1]:2773", True),
        ("http://0.0.0.0:2773", True),
        ("https://LOCALHOST:2773", True),
        ("http://localhost:2774", False),
        ("http://localhost", False),
        ("http://10.0.0.1:2773", False),
        ("https://secretsmanager.us-east-1.amazonaws.com", False),
        ("http://[::1:2773", False),
    ],
)
def test_names_own_address(url: str, own: bool) -> None:
    assert names_own_address(url, 2773) is own


# ---------------------------------------------------------------- AWS CLI


def _aws_cli(
    ext: ExtensionProcess, creds: LambdaCredentials, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", "/tmp"),
        "AWS_ACCESS_KEY_ID": creds.access_key,
        "AWS_SECRET_ACCESS_KEY": creds.secret_key,
        "AWS_SESSION_TOKEN": creds.session_token,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": f"http://localhost:{ext.port}",
        "AWS_ENDPOINT_URL_SSM": f"http://localhost:{ext.port}",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    return subprocess.run(
        [sys.executable, "-m", "awscli", *args, "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_aws_cli_reads_through_the_extension(
    ext: ExtensionProcess, moto: Moto, lambda_credentials: LambdaCredentials, batch_allowed: None
) -> None:
    pytest.importorskip("awscli", reason="awscli is in the dev extra")
    done = _aws_cli(
        ext, lambda_credentials, "secretsmanager", "get-secret-value", "--secret-id", "sdk/shared"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["SecretString"] == "sdk/shared-SECRET"
    args = ("ssm", "get-parameters-by-path", "--path", "/sdk/tree", "--recursive")
    done = _aws_cli(ext, lambda_credentials, *args, "--page-size", "4")
    assert done.returncode == 0, done.stderr
    assert sorted(p["Name"] for p in json.loads(done.stdout)["Parameters"]) == sorted(TREE)
    done = _aws_cli(
        ext, lambda_credentials, "ssm", "get-parameters", "--names", moto.param_string, "/sdk/nope"
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["InvalidParameters"] == ["/sdk/nope"]
    assert [p["Value"] for p in answer["Parameters"]] == ["plain-PARAM-value"]
    done = _aws_cli(
        ext, lambda_credentials, "secretsmanager", "get-secret-value", "--secret-id", "sdk/absent"
    )
    assert done.returncode != 0 and "ResourceNotFoundException" in done.stderr


# ---------------------------------------------------------------- Powertools


def test_powertools_providers_read_through_the_extension(
    ext: ExtensionProcess, moto: Moto, lambda_credentials: LambdaCredentials, batch_allowed: None
) -> None:
    parameters = pytest.importorskip(
        "aws_lambda_powertools.utilities.parameters",
        reason="aws-lambda-powertools is in the dev extra",
    )
    sm, ssm = function_clients("env", ext, lambda_credentials)
    secrets = parameters.SecretsProvider(boto3_client=sm)
    assert secrets.get(moto.secret_name) == SECRET_STRING_V2
    assert secrets.get(moto.binary_secret_name) == SECRET_BINARY
    store = parameters.SSMProvider(boto3_client=ssm)
    assert store.get(moto.param_secure, decrypt=True) == "secure-PARAM-value-42"
    tree = store.get_multiple("/sdk/tree", recursive=True, decrypt=True)
    assert tree == {name[len("/sdk/tree/") :]: f"tree-PARAM-{i}" for i, name in enumerate(TREE)}
    many = store.get_parameters_by_name({moto.param_string: {}, moto.param_list: {}})
    assert many == {moto.param_string: "plain-PARAM-value", moto.param_list: "alpha,beta,gamma"}
    with pytest.raises(parameters.exceptions.GetParameterError):
        store.get("/sdk/absent")


# ---------------------------------------------------------------- JavaScript v3


def node_modules() -> Path:
    """The pinned @aws-sdk clients (tests/node_sdk's lock file), installed once into a cache
    directory keyed by the lock file, as bench/node_sandbox.py installs aws-lambda-ric."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node and npm are needed (CI installs them: .ci/run)")
        pytest.skip("needs node and npm (Debian: apt-get install nodejs npm)")
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((NODE_PROJECT / name).read_bytes())
    digest.update(platform.machine().encode())
    target = CACHE / f"node-sdk-{digest.hexdigest()[:16]}"
    marker = target / "node_modules" / "@aws-sdk" / "client-ssm" / "package.json"
    if not marker.is_file():
        building = target.with_name(f"{target.name}.building-{os.getpid()}")
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(NODE_PROJECT / name, building / name)
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=building,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"npm ci failed:\n{done.stdout[-3000:]}{done.stderr}")
        shutil.rmtree(target, ignore_errors=True)
        with contextlib.suppress(OSError):
            building.rename(target)
    return target / "node_modules"


_JS_CLIENT = r"""
import { SecretsManagerClient, GetSecretValueCommand, BatchGetSecretValueCommand,
         CreateSecretCommand, ResourceNotFoundException } from "@aws-sdk/client-secrets-manager";
import { SSMClient, GetParameterCommand, GetParametersCommand, ParameterNotFound,
         paginateGetParametersByPath } from "@aws-sdk/client-ssm";

// As a function writes it: no endpoint, no credentials in the code.
const sm = new SecretsManagerClient({ maxAttempts: 1 });
const ssm = new SSMClient({ maxAttempts: 1 });
const out = {};
const [secretName, binaryName, secureName] = process.argv.slice(2);
const secret = await sm.send(new GetSecretValueCommand({ SecretId: secretName }));
out.secretString = secret.SecretString;
out.createdDateIsDate = secret.CreatedDate instanceof Date;
const binary = await sm.send(new GetSecretValueCommand({ SecretId: binaryName }));
out.binary = Buffer.from(binary.SecretBinary).toString("hex");
const ids = [secretName, "sdk/nope"];
const batch = await sm.send(new BatchGetSecretValueCommand({ SecretIdList: ids }));
out.batch = [batch.SecretValues.map((v) => v.Name),
             batch.Errors.map((e) => [e.SecretId, e.ErrorCode])];
const param = await ssm.send(new GetParameterCommand({ Name: secureName, WithDecryption: true }));
out.parameter = [param.Parameter.Value, param.Parameter.LastModifiedDate instanceof Date];
const many = await ssm.send(new GetParametersCommand({ Names: [secureName, "/sdk/nope"] }));
out.many = [many.Parameters.map((p) => p.Name), many.InvalidParameters];
out.pages = [];
for await (const page of paginateGetParametersByPath({ client: ssm, pageSize: 6 },
                                                      { Path: "/sdk/tree", Recursive: true })) {
  out.pages.push(page.Parameters.map((p) => p.Name));
}
try { await sm.send(new GetSecretValueCommand({ SecretId: "sdk/absent" })); }
catch (e) {
  out.notFound = [e instanceof ResourceNotFoundException, e.name, e.$metadata.httpStatusCode];
}
try { await ssm.send(new GetParameterCommand({ Name: "/sdk/absent" })); }
catch (e) { out.parameterNotFound = [e instanceof ParameterNotFound, e.name]; }
try { await sm.send(new CreateSecretCommand({ Name: "sdk/js", SecretString: "x" })); }
catch (e) { out.unknown = [e.name, e.$metadata.httpStatusCode]; }
console.log(JSON.stringify(out));
"""


def test_the_javascript_v3_sdk_reads_through_the_extension(
    ext: ExtensionProcess,
    moto: Moto,
    lambda_credentials: LambdaCredentials,
    batch_allowed: None,
    tmp_path: Path,
) -> None:
    modules = node_modules()
    script = tmp_path / "function.mjs"
    script.write_text(_JS_CLIENT)
    (tmp_path / "node_modules").symlink_to(modules)
    creds = lambda_credentials
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": creds.access_key,
        "AWS_SECRET_ACCESS_KEY": creds.secret_key,
        "AWS_SESSION_TOKEN": creds.session_token,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": f"http://localhost:{ext.port}",
        "AWS_ENDPOINT_URL_SSM": f"http://127.0.0.1:{ext.port}",
    }
    done = subprocess.run(
        ["node", str(script), moto.secret_name, moto.binary_secret_name, moto.param_secure],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["secretString"] == SECRET_STRING_V2 and out["createdDateIsDate"] is True
    assert out["binary"] == SECRET_BINARY.hex()
    assert out["batch"] == [[moto.secret_name], [["sdk/nope", "ResourceNotFoundException"]]]
    assert out["parameter"] == ["secure-PARAM-value-42", True]
    assert out["many"] == [[moto.param_secure], ["/sdk/nope"]]
    assert [len(page) for page in out["pages"]] == [6, 6, 3]
    assert sorted(name for page in out["pages"] for name in page) == sorted(TREE)
    # The status moto gives (AWS's is 400), passed through.
    not_found = _error(
        lambda: moto.boto3_client("secretsmanager").get_secret_value(SecretId="sdk/absent")  # type: ignore[attr-defined]
    )
    assert out["notFound"] == [True, "ResourceNotFoundException", not_found[0]]
    assert out["parameterNotFound"] == [True, "ParameterNotFound"]
    assert out["unknown"] == ["UnknownOperationException", 400]


# ---------------------------------------------------------------- SnapStart


@pytest.fixture
def container_credentials(lambda_credentials: LambdaCredentials) -> Iterator[str]:
    """A container credentials provider on loopback handing out the Lambda credentials, as
    Lambda does under SnapStart; yields its URI (token: "container-token")."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    creds = lambda_credentials
    expiration = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    body = json.dumps(
        {
            "AccessKeyId": creds.access_key,
            "SecretAccessKey": creds.secret_key,
            "Token": creds.session_token,
            "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.headers.get("Authorization") == "container-token"
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", str(len(body) if ok else 0))
            self.end_headers()
            if ok:
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,))
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/credentials"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_under_snapstart_requests_are_checked_against_the_container_credentials(  # noqa: PLR0917
    moto: Moto,
    lambda_credentials: LambdaCredentials,
    extension_executable: Path,
    container_credentials: str,
    tmp_path: Path,
    sdk_data: None,
) -> None:
    import boto3

    port = free_port()
    env = lambda_env(moto, lambda_credentials, port, None)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        del env[name]
    env.update(
        AWS_LAMBDA_INITIALIZATION_TYPE="snap-start",
        AWS_CONTAINER_CREDENTIALS_FULL_URI=container_credentials,
        AWS_CONTAINER_AUTHORIZATION_TOKEN="container-token",
    )
    with ExtensionProcess(extension_executable, env, tmp_path / "snapstart.log") as process:
        process.wait_listening()
        creds = lambda_credentials
        url = f"http://localhost:{port}"
        # The function's SDK signs with what the same provider gave it.
        function: Any = boto3.client(
            "secretsmanager",
            endpoint_url=url,
            region_name=REGION,
            aws_access_key_id=creds.access_key,
            aws_secret_access_key=creds.secret_key,
            aws_session_token=creds.session_token,
            config=_config(),
        )
        assert function.get_secret_value(SecretId="sdk/shared")["SecretString"] == (
            "sdk/shared-SECRET"
        )
        stranger: Any = boto3.client(
            "secretsmanager",
            endpoint_url=url,
            region_name=REGION,
            aws_access_key_id=moto.access_key,
            aws_secret_access_key=moto.secret_key,
            aws_session_token="container-token",
            config=_config(),
        )
        got = _error(partial(stranger.get_secret_value, SecretId="sdk/shared"))
        assert got[:2] == (403, "UnrecognizedClientException")


@settings(max_examples=2000, deadline=None)
@given(
    st.datetimes(min_value=datetime.datetime(1, 3, 1), max_value=datetime.datetime(9999, 12, 31))
)
def test_epoch_seconds_is_calendar_timegm(moment: datetime.datetime) -> None:
    fields = moment.timetuple()[:6]
    assert epoch_seconds(
        "".join(f"{n:0{w}d}" for n, w in zip(fields, (4, 2, 2, 2, 2, 2), strict=True))
    ) == calendar.timegm(fields)


@pytest.mark.parametrize(
    "digits",
    ["20241301000000", "20240001000000", "2024010100000", "2024O101000000", "\uff120240101000000"],
)
def test_epoch_seconds_refuses_what_is_not_a_date(digits: str) -> None:
    assert epoch_seconds(digits) is None


def test_an_outage_is_served_stale_to_the_sdk_as_to_the_get_routes(
    moto: Moto,
    lambda_credentials: LambdaCredentials,
    extension_executable: Path,
    tmp_path: Path,
    sdk_data: None,
) -> None:
    import time

    with FaultProxy(moto.host, moto.port) as proxy:
        port = free_port()
        env = lambda_env(
            moto,
            lambda_credentials,
            port,
            None,
            AWS_ENDPOINT_URL=f"http://127.0.0.1:{proxy.port}",
            SECRETS_MANAGER_TTL="1",
        )
        with ExtensionProcess(extension_executable, env, tmp_path / "stale.log") as process:
            process.wait_listening()
            sm, _ = function_clients("endpoint_url", process, lambda_credentials)
            assert sm.get_secret_value(SecretId="sdk/shared")["SecretString"] == (
                "sdk/shared-SECRET"
            )
            proxy.set_fault("status_500")
            try:
                time.sleep(1.3)  # the TTL runs out; AWS now fails every call
                calls = proxy.requests_received
                got = sm.get_secret_value(SecretId="sdk/shared")
                assert got["SecretString"] == "sdk/shared-SECRET"  # stale, not an error
                assert proxy.requests_received > calls  # it did try AWS first
                status, body = process.get_json("/secretsmanager/get?secretId=sdk%2Fshared")
                assert (status, body["SecretString"]) == (200, "sdk/shared-SECRET")
                assert process.get_json("/metrics")[1]["StaleServes"] >= 1
            finally:
                proxy.set_fault(None)
