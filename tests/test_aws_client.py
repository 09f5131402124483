"""The signed AWS client against the signature-checking moto server, directly and via faults."""

from __future__ import annotations

import base64
import json
import random
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from parameters_secrets_extension import services, version
from parameters_secrets_extension.aws import transport as aws_client
from parameters_secrets_extension.aws.operations import AwsClient
from parameters_secrets_extension.config import AwsConfig
from parameters_secrets_extension.errors import (
    InvalidRegion,
    MissingCredentials,
    MissingRegion,
    RequestError,
    ResponseTooLarge,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamTimeout,
)
from tests import log_capture
from tests.conftest import (
    PARAM_LIST,
    PARAM_SECURE,
    PARAM_STRING,
    PARAMETER_FIELDS,
    SECRET_BINARY,
    SECRET_FIELDS,
    SECRET_STRING,
    SECRET_STRING_V2,
    Moto,
    boto_error,
    fresh_python,
)
from tests.fault_proxy import FaultProxy
from tests.raw_server import RawServer, trickle
from tests.stub_upstream import StubUpstream, response
from tests.tls_certs import make_pki

VERSIONED = "/client-test/versioned"
ROLE_NAME = "aws-client-test-role"


class Sleeps:
    """An injected sleep that records the backoff delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def _aws(moto: Moto, endpoint: str | None = None, **fields: Any) -> AwsConfig:
    settings: dict[str, Any] = {
        "region": "us-east-1",
        "endpoint_url": endpoint or moto.endpoint,
        "access_key_id": moto.access_key,
        "secret_access_key": moto.secret_key,
    }
    settings.update(fields)
    return AwsConfig(**settings)


def _client(
    aws: AwsConfig, sleep: Callable[[float], None] | None = None, **kwargs: Any
) -> AwsClient:
    options: dict[str, Any] = {
        "max_connections": 3,
        "secrets_manager_timeout_ms": 0,
        "ssm_timeout_ms": 0,
        "sleep": sleep if sleep is not None else Sleeps(),
        "rng": random.Random(7),
    }
    options.update(kwargs)
    return AwsClient(aws, **options)


def _iso(value: datetime) -> str:
    """A boto3 datetime as the local API writes dates: ISO-8601 UTC, milliseconds, Z."""
    utc = value.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@pytest.fixture
def client(moto: Moto) -> Iterator[AwsClient]:
    made = _client(_aws(moto))
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def proxy(moto: Moto) -> Iterator[FaultProxy]:
    with FaultProxy(moto.host, moto.port) as running:
        yield running


@pytest.fixture(scope="module")
def versioned(moto: Moto) -> dict[int, Any]:
    """A parameter of our own with three versions and the label `blue` on version 2."""
    ssm: Any = moto.boto3_client("ssm")
    for n in (1, 2, 3):
        ssm.put_parameter(Name=VERSIONED, Value=f"value-{n}", Type="String", Overwrite=n > 1)
    ssm.label_parameter_version(Name=VERSIONED, ParameterVersion=2, Labels=["blue"])
    return {n: ssm.get_parameter(Name=f"{VERSIONED}:{n}")["Parameter"] for n in (1, 2, 3)}


# --- secrets -------------------------------------------------------------------------------


def _expected_secret(moto: Moto, **kwargs: Any) -> dict[str, object]:
    sm: Any = moto.boto3_client("secretsmanager")
    data = sm.get_secret_value(**kwargs)
    binary = data.get("SecretBinary")
    return {
        "ARN": data["ARN"],
        "CreatedDate": _iso(data["CreatedDate"]),
        "Name": data["Name"],
        "SecretBinary": base64.b64encode(binary).decode() if binary is not None else None,
        "SecretString": data.get("SecretString"),
        "VersionId": data["VersionId"],
        "VersionStages": data["VersionStages"],
        "ResultMetadata": {},
    }


def test_secret_by_name_matches_boto3_field_by_field(moto: Moto, client: AwsClient) -> None:
    got = client.get_secret_value(moto.secret_name)
    assert list(got) == SECRET_FIELDS
    assert got == _expected_secret(moto, SecretId=moto.secret_name)
    assert got["SecretString"] == SECRET_STRING_V2
    assert got["SecretBinary"] is None
    assert got["VersionStages"] == ["AWSCURRENT"]
    assert str(got["CreatedDate"]).endswith("Z")


def test_secret_by_arn(moto: Moto, client: AwsClient) -> None:
    got = client.get_secret_value(moto.secret_arn)
    assert got["ARN"] == moto.secret_arn
    assert got["Name"] == moto.secret_name
    assert got["SecretString"] == SECRET_STRING_V2


def test_binary_secret_stays_base64(moto: Moto, client: AwsClient) -> None:
    got = client.get_secret_value(moto.binary_secret_name)
    assert got == _expected_secret(moto, SecretId=moto.binary_secret_name)
    assert got["SecretBinary"] == base64.b64encode(SECRET_BINARY).decode()
    assert got["SecretString"] is None


def test_secret_by_version_id_and_stage(moto: Moto, client: AwsClient) -> None:
    first = client.get_secret_value(moto.secret_name, version_id=moto.secret_v1)
    assert first["SecretString"] == SECRET_STRING
    assert first["VersionId"] == moto.secret_v1
    previous = client.get_secret_value(moto.secret_name, version_stage="AWSPREVIOUS")
    assert previous == _expected_secret(moto, SecretId=moto.secret_name, VersionStage="AWSPREVIOUS")
    assert previous["SecretString"] == SECRET_STRING
    assert previous["VersionId"] == moto.secret_v1
    current = client.get_secret_value(moto.secret_name, version_stage="AWSCURRENT")
    assert current["VersionId"] == moto.secret_v2


def test_cross_region_arn_is_signed_for_its_region(moto: Moto, proxy: FaultProxy) -> None:
    # moto keeps each region's secrets apart, so only a us-east-1 signature finds this one.
    aws = _aws(moto, f"http://127.0.0.1:{proxy.port}", region="eu-west-1")
    made = _client(aws)
    try:
        assert made.get_secret_value(moto.secret_arn)["Name"] == moto.secret_name
    finally:
        made.close()
    assert "/us-east-1/secretsmanager/aws4_request" in proxy.header_values("authorization")[0]


# --- parameters ----------------------------------------------------------------------------


def _expected_parameter(
    moto: Moto, name: str, decrypt: bool, selector: str | None
) -> dict[str, object]:
    ssm: Any = moto.boto3_client("ssm")
    data = ssm.get_parameter(Name=name + (selector or ""), WithDecryption=decrypt)["Parameter"]
    return {
        "Parameter": {
            "ARN": data["ARN"],
            "DataType": data["DataType"],
            "LastModifiedDate": _iso(data["LastModifiedDate"]),
            "Name": data["Name"],
            "Selector": selector,
            "SourceResult": None,
            "Type": data["Type"],
            "Value": data["Value"],
            "Version": data["Version"],
        },
        "ResultMetadata": {},
    }


@pytest.mark.parametrize(
    "case",
    [
        ("param_string", "String", PARAM_STRING, False),
        ("param_string", "String", PARAM_STRING, True),
        ("param_secure", "SecureString", PARAM_SECURE, True),
        ("param_list", "StringList", PARAM_LIST, False),
    ],
)
def test_parameters_match_boto3_field_by_field(
    moto: Moto, client: AwsClient, case: tuple[str, str, str, bool]
) -> None:
    attribute, kind, value, decrypt = case
    name = getattr(moto, attribute)
    got = client.get_parameter(name, with_decryption=decrypt)
    assert list(got) == ["Parameter", "ResultMetadata"]
    assert list(got["Parameter"]) == PARAMETER_FIELDS  # type: ignore[call-overload]
    assert got == _expected_parameter(moto, name, decrypt, None)
    parameter: Any = got["Parameter"]
    assert (parameter["Type"], parameter["Value"], parameter["Selector"]) == (kind, value, None)
    assert parameter["SourceResult"] is None
    assert parameter["LastModifiedDate"].endswith("Z")


def test_secure_string_without_decryption(moto: Moto, client: AwsClient) -> None:
    got: Any = client.get_parameter(moto.param_secure, with_decryption=False)
    # Whatever the service returns undecrypted is passed through; it is not the plaintext.
    assert got == _expected_parameter(moto, moto.param_secure, False, None)
    assert got["Parameter"]["Value"] != PARAM_SECURE


def test_parameter_by_version_and_label(
    moto: Moto, client: AwsClient, versioned: dict[int, Any]
) -> None:
    latest: Any = client.get_parameter(VERSIONED)
    assert (latest["Parameter"]["Value"], latest["Parameter"]["Version"]) == ("value-3", 3)
    assert latest["Parameter"]["Selector"] is None
    first: Any = client.get_parameter(VERSIONED, version=1)
    assert first == _expected_parameter(moto, VERSIONED, False, ":1")
    assert (first["Parameter"]["Value"], first["Parameter"]["Selector"]) == ("value-1", ":1")
    blue: Any = client.get_parameter(VERSIONED, label="blue")
    assert blue == _expected_parameter(moto, VERSIONED, False, ":blue")
    assert (blue["Parameter"]["Value"], blue["Parameter"]["Version"]) == ("value-2", 2)
    both: Any = client.get_parameter(VERSIONED, version=3, label="blue")
    assert both["Parameter"]["Selector"] == ":3"
    assert versioned[2]["Value"] == "value-2"


# --- signing and credentials ---------------------------------------------------------------


def test_request_headers(moto: Moto, proxy: FaultProxy) -> None:
    made = _client(_aws(moto, f"http://127.0.0.1:{proxy.port}"))
    try:
        made.get_parameter(moto.param_string)
        made.get_secret_value(moto.secret_name)
    finally:
        made.close()
    major, minor = sys.version_info[:2]
    user_agent = f"parameters-secrets-extension/{version.VERSION} python/{major}.{minor}"
    assert proxy.header_values("user-agent") == [user_agent, user_agent]
    assert proxy.header_values("x-amz-target") == [
        "AmazonSSM.GetParameter",
        "secretsmanager.GetSecretValue",
    ]
    assert proxy.header_values("content-type") == ["application/x-amz-json-1.1"] * 2
    assert proxy.header_values("host") == [f"127.0.0.1:{proxy.port}"] * 2
    assert proxy.header_values("x-amz-security-token") == []
    assert all(a.startswith("AWS4-HMAC-SHA256 ") for a in proxy.header_values("authorization"))
    assert [head[0] for head in proxy.request_heads] == [b"POST / HTTP/1.1"] * 2


def test_wrong_secret_key_is_rejected(moto: Moto) -> None:
    made = _client(_aws(moto, secret_access_key="wrong-SECRET-key"))
    try:
        with pytest.raises(UpstreamError) as caught:
            made.get_secret_value(moto.secret_name)
    finally:
        made.close()
    assert (caught.value.status, caught.value.error_type) == (403, "SignatureDoesNotMatch")
    assert "signature" in caught.value.message
    assert "wrong-SECRET-key" not in caught.value.message


@pytest.fixture(scope="module")
def role_arn(moto: Moto) -> str:
    """A role that trusts the admin user by its ARN (moto does not match an account-root
    principal against a user, so the conftest role cannot be assumed there)."""
    sts: Any = moto.boto3_client("sts")
    iam: Any = moto.boto3_client("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": sts.get_caller_identity()["Arn"]},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    read = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue", "ssm:GetParameter", "kms:Decrypt"],
                "Resource": "*",
            }
        ],
    }
    role = iam.create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(RoleName=ROLE_NAME, PolicyName="read", PolicyDocument=json.dumps(read))
    return str(role["Role"]["Arn"])


def test_assumed_role_credentials_with_session_token(
    moto: Moto, proxy: FaultProxy, role_arn: str
) -> None:
    sts: Any = moto.boto3_client("sts")
    creds = sts.assume_role(RoleArn=role_arn, RoleSessionName="client-test")["Credentials"]
    aws = _aws(
        moto,
        f"http://127.0.0.1:{proxy.port}",
        access_key_id=creds["AccessKeyId"],
        secret_access_key=creds["SecretAccessKey"],
        session_token=creds["SessionToken"],
    )
    made = _client(aws)
    try:
        assert made.get_secret_value(moto.secret_name)["SecretString"] == SECRET_STRING_V2
        got: Any = made.get_parameter(moto.param_secure, with_decryption=True)
        assert got["Parameter"]["Value"] == PARAM_SECURE
    finally:
        made.close()
    assert proxy.header_values("x-amz-security-token") == [creds["SessionToken"]] * 2


def test_missing_credentials_and_region(moto: Moto) -> None:
    with pytest.raises(MissingCredentials):
        _client(_aws(moto, access_key_id=None, secret_access_key=None)).get_parameter("/x")
    with pytest.raises(MissingRegion):
        _client(_aws(moto, region=None)).get_parameter("/x")


@pytest.mark.parametrize(
    ("resource_id", "call"),
    [
        ("arn:aws:secretsmanager:x@127.0.0.1#:123456789012:secret:x", "secret"),
        ("arn:aws:ssm:us-east-1.evil.example:123456789012:parameter/x", "parameter"),
        ("arn:evil:secretsmanager:us-east-1:123456789012:secret:x", "secret"),
        ("arn:aws:secretsmanager:cn-north-1:123456789012:secret:x", "secret"),
        ("arn:aws:secretsmanager:us-east-1:123456789012:secret:x", "parameter"),
    ],
)
def test_crafted_arns_fail_before_any_connection(moto: Moto, resource_id: str, call: str) -> None:
    with StubUpstream() as upstream:
        made = _client(_aws(moto, f"http://127.0.0.1:{upstream.port}"))
        fetch = made.get_secret_value if call == "secret" else made.get_parameter
        with pytest.raises(RequestError) as caught:
            fetch(resource_id)
        made.close()
    assert (caught.value.status, caught.value.error_type) == (400, "InvalidParameterException")
    assert upstream.accepted == 0


def test_invalid_configured_region_fails_before_any_connection(moto: Moto) -> None:
    with StubUpstream() as upstream:
        made = _client(_aws(moto, f"http://127.0.0.1:{upstream.port}", region="x@127.0.0.1#"))
        with pytest.raises(InvalidRegion) as caught:
            made.get_parameter("/x")
        made.close()
    assert caught.value.error_type == "InvalidRegionException"
    assert "AWS_REGION" in caught.value.message
    assert upstream.accepted == 0


def test_endpoint_userinfo_never_reaches_the_wire(moto: Moto) -> None:
    with StubUpstream() as upstream:
        made = _client(_aws(moto, f"http://admin:hunter2@127.0.0.1:{upstream.port}"))
        with pytest.raises(UpstreamError) as caught:
            made.get_secret_value("app/db")
        made.close()
    assert caught.value.error_type == "AccessDeniedException"
    assert upstream.header_values("host") == [f"127.0.0.1:{upstream.port}"]
    assert not any(b"hunter2" in head for head in upstream.heads)


def test_oversized_response_is_a_502_and_not_retried(moto: Moto) -> None:
    sleeps = Sleeps()
    with StubUpstream(answer=response(200, b"z" * (3 << 20))) as upstream:
        made = _client(_aws(moto, f"http://127.0.0.1:{upstream.port}"), sleep=sleeps)
        with pytest.raises(ResponseTooLarge) as caught:
            made.get_secret_value("app/db")
        made.close()
    assert (caught.value.status, caught.value.error_type) == (502, "ResponseTooLargeException")
    assert len(upstream.heads) == 1
    assert sleeps.delays == []


# --- AWS errors ----------------------------------------------------------------------------


def test_not_found_passes_status_and_type_through(moto: Moto, client: AwsClient) -> None:
    sm: Any = moto.boto3_client("secretsmanager")
    ssm: Any = moto.boto3_client("ssm")
    expected_secret = boto_error(lambda: sm.get_secret_value(SecretId="no/such/secret"))
    expected_param = boto_error(lambda: ssm.get_parameter(Name="/no/such/param"))
    with pytest.raises(UpstreamError) as secret_error:
        client.get_secret_value("no/such/secret")
    with pytest.raises(UpstreamError) as param_error:
        client.get_parameter("/no/such/param")
    assert (secret_error.value.status, secret_error.value.error_type) == expected_secret
    assert expected_secret[1] == "ResourceNotFoundException"
    assert secret_error.value.message
    assert (param_error.value.status, param_error.value.error_type) == expected_param
    assert expected_param[1] == "ParameterNotFound"
    assert "/no/such/param" in param_error.value.message


def test_access_denied_by_action(moto: Moto) -> None:
    aws = _aws(
        moto, access_key_id=moto.limited_access_key, secret_access_key=moto.limited_secret_key
    )
    sleeps = Sleeps()
    made = _client(aws, sleeps)
    try:
        got: Any = made.get_parameter(moto.param_string)
        assert got["Parameter"]["Value"] == PARAM_STRING
        with pytest.raises(UpstreamError) as caught:
            made.get_secret_value(moto.secret_name)
    finally:
        made.close()
    assert (caught.value.status, caught.value.error_type) == (403, "AccessDenied")
    assert "secretsmanager:GetSecretValue" in caught.value.message
    assert sleeps.delays == []


# --- connections, retries and deadlines ----------------------------------------------------


def test_200_sequential_calls_stay_within_max_connections(moto: Moto, proxy: FaultProxy) -> None:
    made = _client(_aws(moto, f"http://127.0.0.1:{proxy.port}"), max_connections=2)
    try:
        for _ in range(100):
            assert made.get_parameter(moto.param_string)["Parameter"]
            assert made.get_secret_value(moto.secret_name)["Name"] == moto.secret_name
    finally:
        made.close()
    assert proxy.requests_received == 200
    assert 1 <= proxy.connections_accepted <= 2


def test_connection_closed_while_idle_is_invisible(moto: Moto, proxy: FaultProxy) -> None:
    sleeps = Sleeps()
    made = _client(_aws(moto, f"http://127.0.0.1:{proxy.port}"), sleeps)
    try:
        made.get_secret_value(moto.secret_name)
        assert proxy.close_idle() == 1  # what a Lambda freeze and thaw does
        assert made.get_secret_value(moto.secret_name)["SecretString"] == SECRET_STRING_V2
        proxy.set_fault("drop", times=1)  # the server closes right as the request goes out
        assert made.get_secret_value(moto.secret_name)["SecretString"] == SECRET_STRING_V2
    finally:
        made.close()
    assert proxy.connections_accepted == 3
    assert sleeps.delays == []  # the pool's silent reconnect, not a backed-off retry


def _within_full_jitter(delays: list[float]) -> bool:
    return all(
        0 <= delay <= min(aws_client.BACKOFF_CAP_SECONDS, aws_client.BACKOFF_BASE_SECONDS * 2**n)
        for n, delay in enumerate(delays)
    )


@pytest.mark.parametrize("fault", ["status_500", "throttle"])
def test_transient_errors_are_retried_with_backoff(
    moto: Moto, proxy: FaultProxy, fault: str
) -> None:
    sleeps = Sleeps()
    made = _client(_aws(moto, f"http://127.0.0.1:{proxy.port}"), sleeps)
    proxy.set_fault(fault, times=2)
    try:
        assert made.get_secret_value(moto.secret_name)["SecretString"] == SECRET_STRING_V2
    finally:
        made.close()
    assert proxy.requests_received == 3
    assert len(sleeps.delays) == 2
    assert _within_full_jitter(sleeps.delays)
    assert proxy.connections_accepted == 1  # canned errors keep the connection


@pytest.mark.parametrize(
    ("fault", "status", "error_type"),
    [("status_500", 500, "InternalFailure"), ("throttle", 400, "ThrottlingException")],
)
def test_error_surfaces_after_three_attempts(
    moto: Moto, proxy: FaultProxy, fault: str, status: int, error_type: str
) -> None:
    sleeps = Sleeps()
    made = _client(_aws(moto, f"http://127.0.0.1:{proxy.port}"), sleeps)
    proxy.set_fault(fault)
    try:
        with pytest.raises(UpstreamError) as caught:
            made.get_parameter(moto.param_string)
    finally:
        made.close()
    assert (caught.value.status, caught.value.error_type) == (status, error_type)
    assert proxy.requests_received == aws_client.MAX_ATTEMPTS == 3
    assert len(sleeps.delays) == 2
    assert _within_full_jitter(sleeps.delays)


def test_backoff_grows_and_stays_within_its_cap(moto: Moto, proxy: FaultProxy) -> None:
    delays: list[float] = []
    for seed in range(20):
        sleeps = Sleeps()
        made = _client(
            _aws(moto, f"http://127.0.0.1:{proxy.port}"), sleeps, rng=random.Random(seed)
        )
        proxy.set_fault("throttle", times=2)
        made.get_parameter(moto.param_string)
        made.close()
        delays += sleeps.delays
    firsts, seconds = delays[0::2], delays[1::2]
    assert all(0 <= d <= aws_client.BACKOFF_BASE_SECONDS for d in firsts)
    assert all(0 <= d <= 2 * aws_client.BACKOFF_BASE_SECONDS for d in seconds)
    assert max(seconds) > aws_client.BACKOFF_BASE_SECONDS  # the second window is wider


def test_client_errors_are_not_retried(moto: Moto, proxy: FaultProxy) -> None:
    sleeps = Sleeps()
    made = _client(_aws(moto, f"http://127.0.0.1:{proxy.port}"), sleeps)
    try:
        with pytest.raises(UpstreamError) as caught:
            made.get_secret_value("no/such/secret")
    finally:
        made.close()
    assert caught.value.status < 500
    assert proxy.requests_received == 1
    assert sleeps.delays == []


def test_upstream_down_is_a_connection_error_after_retries(moto: Moto, proxy: FaultProxy) -> None:
    sleeps = Sleeps()
    made = _client(_aws(moto, f"http://127.0.0.1:{proxy.port}"), sleeps)
    proxy.set_fault("down")
    try:
        with pytest.raises(UpstreamConnectionError) as caught:
            made.get_secret_value(moto.secret_name)
        proxy.set_fault(None)
        assert made.get_secret_value(moto.secret_name)["Name"] == moto.secret_name
    finally:
        made.close()
    assert caught.value.status == 502
    assert caught.value.error_type == "ConnectionException"
    assert len(sleeps.delays) == 2
    assert proxy.connections_accepted == 4


def test_reset_mid_response_is_retried(moto: Moto, proxy: FaultProxy) -> None:
    sleeps = Sleeps()
    made = _client(_aws(moto, f"http://127.0.0.1:{proxy.port}"), sleeps)
    proxy.set_fault("reset", times=1)
    try:
        assert made.get_secret_value(moto.secret_name)["SecretString"] == SECRET_STRING_V2
    finally:
        made.close()
    assert len(sleeps.delays) == 1
    assert proxy.connections_accepted == 2


@pytest.mark.parametrize("service", ["secretsmanager", "ssm"])
def test_timeout_millis_is_honoured(moto: Moto, proxy: FaultProxy, service: str) -> None:
    sm_ms, ssm_ms = (300, 0) if service == "secretsmanager" else (0, 300)
    aws = _aws(moto, f"http://127.0.0.1:{proxy.port}")
    made = _client(aws, secrets_manager_timeout_ms=sm_ms, ssm_timeout_ms=ssm_ms)
    proxy.set_fault("delay", delay_ms=5000)
    started = time.monotonic()
    try:
        with pytest.raises(UpstreamTimeout) as caught:
            if service == "secretsmanager":
                made.get_secret_value(moto.secret_name)
            else:
                made.get_parameter(moto.param_string)
    finally:
        made.close()
    assert time.monotonic() - started < 3.0  # about 0.3 s; generous only to avoid flakes
    assert (caught.value.status, caught.value.error_type) == (504, "TimeoutException")


def test_retries_stop_at_the_deadline(moto: Moto, proxy: FaultProxy) -> None:
    # A backoff that overruns the 400 ms budget ends in a timeout instead of a 4th attempt.
    made = _client(
        _aws(moto, f"http://127.0.0.1:{proxy.port}"),
        sleep=lambda _delay: time.sleep(0.5),
        ssm_timeout_ms=400,
    )
    proxy.set_fault("status_500")
    try:
        with pytest.raises(UpstreamTimeout):
            made.get_parameter(moto.param_string)
    finally:
        made.close()
    assert proxy.requests_received == 1


# --- TLS -----------------------------------------------------------------------------------


def test_tls_through_ca_bundle(moto: Moto, tmp_path: Path) -> None:
    trusted = make_pki(tmp_path, "trusted")
    stranger = make_pki(tmp_path, "stranger")
    with FaultProxy(moto.host, moto.port, ssl_context=trusted.server_context()) as tls_proxy:
        endpoint = f"https://127.0.0.1:{tls_proxy.port}"
        made = _client(_aws(moto, endpoint, ca_bundle=str(trusted.ca_file)))
        try:
            assert made.get_secret_value(moto.secret_name)["SecretString"] == SECRET_STRING_V2
            got: Any = made.get_parameter(moto.param_secure, with_decryption=True)
            assert got["Parameter"]["Value"] == PARAM_SECURE
        finally:
            made.close()
        assert tls_proxy.connections_accepted == 1
    with FaultProxy(moto.host, moto.port, ssl_context=stranger.server_context()) as other:
        sleeps = Sleeps()
        endpoint = f"https://127.0.0.1:{other.port}"
        made = _client(_aws(moto, endpoint, ca_bundle=str(trusted.ca_file)), sleeps)
        try:
            with pytest.raises(UpstreamConnectionError) as caught:
                made.get_secret_value(moto.secret_name)
        finally:
            made.close()
        assert "not trusted" in caught.value.message
        assert other.requests_received == 0
        assert sleeps.delays == []  # an untrusted certificate does not heal by retrying


# --- hygiene -------------------------------------------------------------------------------


def test_no_value_or_credential_in_logs_or_errors(moto: Moto, proxy: FaultProxy) -> None:
    messages: list[str] = []
    made = _client(_aws(moto, f"http://127.0.0.1:{proxy.port}"))
    try:
        with log_capture.captured("debug") as stream:
            made.get_secret_value(moto.secret_name)
            made.get_parameter(moto.param_secure, with_decryption=True)
            proxy.set_fault("throttle", times=1)
            made.get_secret_value(moto.secret_name)
            proxy.close_idle()
            made.get_parameter(moto.param_secure, with_decryption=True)
            proxy.set_fault("status_500")
            with pytest.raises(UpstreamError) as failed:
                made.get_secret_value(moto.secret_name)
            messages.append(failed.value.message)
    finally:
        made.close()
    signatures = [a.rsplit("Signature=", 1)[1] for a in proxy.header_values("authorization")]
    text = stream.getvalue() + "\n".join(messages)
    assert "retrying" in text
    for forbidden in [SECRET_STRING_V2, "s3cr3t", PARAM_SECURE, moto.secret_key, *signatures]:
        assert forbidden not in text


def test_aws_error_message_is_cleaned() -> None:
    message = (
        "The request signature we calculated does not match.\n\nThe Canonical String for this "
        "request should have been\n'POST\n/\n\nx-amz-security-token:TOKEN123\n'"
    )
    cleaned = aws_client.clean_message(message + " key SECRETKEY", ["SECRETKEY", None])
    assert cleaned == "The request signature we calculated does not match."
    assert aws_client.clean_message("bad SECRETKEY here", ["SECRETKEY"]) == "bad <redacted> here"
    assert len(aws_client.clean_message("x" * 5000)) <= aws_client.MAX_MESSAGE_CHARS + 3


def test_import_loads_only_the_standard_library() -> None:
    output = fresh_python(
        "from parameters_secrets_extension.aws import operations\n"
        "names = {m for m in sys.modules if m.split('.')[0] not in sys.stdlib_module_names}\n"
        "print('\\n'.join(sorted(names)))\n"
    )
    package = "parameters_secrets_extension"
    ours = {package, f"{package}.aws"} | {
        f"{package}.aws.{name}"
        for name in (
            "connection_pool",
            "credentials",
            "dates",
            "endpoints",
            "operations",
            "pairing",
            "partitions",
            "role_arns",
            "roles",
            "trust_store",
        )
    }
    ours |= {f"{package}.{name}" for name in ("config", "errors", "logs", "services", "version")}
    ours |= {f"{package}.aws.sdk_shapes", f"{package}.aws.transport", "sigv4", "__main__"}
    ours |= {f"{package}.lambda_api", f"{package}.lambda_api.lifecycle"}  # config's port
    ours |= {f"{package}.urls", f"{package}.response_reader"}
    assert set(output.split()) <= ours


def test_an_unset_timeout_still_ends_a_trickling_upstream(
    moto: Moto, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every socket read gets a byte in time, so only a total deadline can end the request.
    monkeypatch.setattr(services, "UNSET_TIMEOUT_SECONDS", 1.0)
    with RawServer(trickle) as upstream:
        client = _client(_aws(moto, upstream.uri.removesuffix("/creds")))
        try:
            started = time.monotonic()
            with pytest.raises(UpstreamTimeout):
                client.get_secret_value("trickled")
            assert time.monotonic() - started < 5.0  # the cap, not the 20 s body
        finally:
            client.close()


def test_a_batch_of_large_secrets_may_pass_the_single_answer_limit(
    moto: Moto, client: AwsClient
) -> None:
    # 20 secrets of 60 KB make a BatchGetSecretValue answer of about 1.2 MB: over the 1 MiB
    # any single answer may have, under the batch's own limit.
    sm: Any = moto.boto3_client("secretsmanager")
    names = [f"large/batch-{i:02d}" for i in range(20)]
    for index, name in enumerate(names):
        sm.create_secret(Name=name, SecretString=chr(ord("a") + index) * 60_000)
    try:
        found, failed = client.batch_get_secret_value(names)
        assert failed == {}
        assert sum(len(str(found[name]["SecretString"])) for name in names) == 20 * 60_000
    finally:
        for name in names:
            sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
