"""roleArn: reads made as another role, through STS AssumeRole, against moto with signature
checks on. Account A (the session's moto default) runs the function; accounts B and C each
hold a role the function's role may assume, and a secret and parameters under the same names
as A's, with values of their own, so that a value served under the wrong role shows.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from parameters_secrets_extension.aws import endpoints, role_arns, roles
from parameters_secrets_extension.aws.credentials import CredentialProvider
from parameters_secrets_extension.aws.operations import AwsClient
from parameters_secrets_extension.config import AwsConfig
from parameters_secrets_extension.errors import InvalidParameter
from tests.conftest import (
    ACCOUNT,
    PARAM_STRING,
    REGION,
    SECRET_STRING_V2,
    LambdaCredentials,
    Moto,
    _set_auth,
    wait_until,
)
from tests.extension_process import ExtensionProcess
from tests.fault_proxy import FaultProxy
from tests.hardening_support import start_standalone
from tests.raw_server import RawServer, hang

ACCOUNT_B = "222222222222"
ACCOUNT_C = "333333333333"
ROLE_B = f"arn:aws:iam::{ACCOUNT_B}:role/team/cross-reader"
ROLE_C = f"arn:aws:iam::{ACCOUNT_C}:role/cross-reader"
SECRET = "app/db-credentials"  # in all three accounts; A's current value is SECRET_STRING_V2
PARAM = "/app/plain"  # in all three accounts; A's value is PARAM_STRING
PATH = "/app/"
READS = [
    "secretsmanager:GetSecretValue",
    "secretsmanager:BatchGetSecretValue",
    "ssm:GetParameter",
    "ssm:GetParameters",
    "ssm:GetParametersByPath",
]


def secret_of(account: str) -> str:
    return f"secret-of-{account}-VALUE"


def param_of(account: str) -> str:
    return f"param-of-{account}-VALUE"


@dataclass(frozen=True)
class Accounts:
    caller: LambdaCredentials  # a role in A that may read and call sts:AssumeRole
    caller_arn: str
    moto: Moto


def _client(moto: Moto, service: str, account: str) -> object:
    """A boto3 client acting in `account` (moto's own header; only while auth is off)."""
    client = moto.boto3_client(service)

    def add_header(request: object, **_: object) -> None:
        request.headers["x-moto-account-id"] = account  # type: ignore[attr-defined]

    client.meta.events.register("before-sign.*.*", add_header)  # type: ignore[attr-defined]
    return client


def _role(
    moto: Moto, account: str, name: str, trusted: str, actions: list[str], *, path: str = "/"
) -> str:
    iam = _client(moto, "iam", account)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": trusted}, "Action": "sts:AssumeRole"}
        ],
    }
    arn = iam.create_role(  # type: ignore[attr-defined]
        RoleName=name, Path=path, AssumeRolePolicyDocument=json.dumps(trust)
    )["Role"]["Arn"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
    }
    iam.put_role_policy(  # type: ignore[attr-defined]
        RoleName=name, PolicyName="reads", PolicyDocument=json.dumps(policy)
    )
    return str(arn)


@pytest.fixture(scope="module")
def accounts(moto: Moto) -> Iterator[Accounts]:
    _set_auth(moto.endpoint, b"inf")
    try:
        caller_arn = _role(
            moto,
            ACCOUNT,
            "role-chainer",
            f"arn:aws:iam::{ACCOUNT}:user/extension",
            [*READS, "sts:AssumeRole"],
        )
        for account, role, path in ((ACCOUNT_B, ROLE_B, "/team/"), (ACCOUNT_C, ROLE_C, "/")):
            assert _role(moto, account, "cross-reader", caller_arn, READS, path=path) == role
            sm = _client(moto, "secretsmanager", account)
            sm.create_secret(Name=SECRET, SecretString=secret_of(account))  # type: ignore[attr-defined]
            ssm = _client(moto, "ssm", account)
            ssm.put_parameter(Name=PARAM, Value=param_of(account), Type="String")  # type: ignore[attr-defined]
    finally:
        _set_auth(moto.endpoint, b"0")
    sts = moto.boto3_client("sts")
    creds = sts.assume_role(RoleArn=caller_arn, RoleSessionName="lambda")["Credentials"]  # type: ignore[attr-defined]
    caller = LambdaCredentials(
        creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]
    )
    yield Accounts(caller=caller, caller_arn=caller_arn, moto=moto)


def assumed(role_arn: str) -> list[object]:
    """The AssumeRole sessions moto has issued for `role_arn` (the server runs in this process)."""
    from moto.sts.models import sts_backends

    account = role_arn.split(":")[4]
    return [r for r in sts_backends[account]["aws"].assumed_roles if r.role_arn == role_arn]


def in_process_client(
    accounts: Accounts, now: Callable[[], datetime] | None = None, **kw: object
) -> AwsClient:
    aws = AwsConfig(
        region=REGION,
        endpoint_url=accounts.moto.endpoint,
        access_key_id=accounts.caller.access_key,
        secret_access_key=accounts.caller.secret_key,
        session_token=accounts.caller.session_token,
    )
    extra: dict[str, object] = {"now": now} if now is not None else {}
    return AwsClient(
        aws,
        max_connections=4,
        secrets_manager_timeout_ms=0,
        ssm_timeout_ms=0,
        function_name="roles-test",
        **extra,  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def get(ext: ExtensionProcess, path: str) -> tuple[int, Any]:
    """Status and JSON answer, the answer untyped (its shape is what the test checks)."""
    return ext.get_json(path)


def quoted(text: str) -> str:
    return urllib.parse.quote(text, safe="")


# --- The ARN, the endpoint, the session name, the setting: no AWS needed ---


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:iam::123456789012:role/reader",
        "arn:aws:iam::123456789012:role/team/app/reader",
        "arn:aws-cn:iam::123456789012:role/r+=,.@_-",
        "arn:aws-us-gov:iam::123456789012:role/" + "n" * 64,
        "arn:aws:iam::123456789012:role/" + "p" * 510 + "/name",  # a 512-character path
    ],
)
def test_role_arns_that_are_taken(arn: str) -> None:
    assert role_arns.role_arn(arn) == arn


@pytest.mark.parametrize(
    "arn",
    [
        "reader",
        "arn:aws:iam::123456789012:role",
        "arn:aws:iam::123456789012:role/",
        "arn:aws:iam::123456789012:role//reader",
        "arn:aws:iam::123456789012:role/team/",
        "arn:aws:iam::123456789012:user/reader",
        "arn:aws:sts::123456789012:role/reader",
        "arn:aws:iam:us-east-1:123456789012:role/reader",
        "arn:aws:iam::12345678901:role/reader",
        "arn:aws:iam::1234567890123:role/reader",
        "arn:aws:iam::12345678901x:role/reader",
        "arn:aws:iam::" + "\uff11" * 12 + ":role/reader",  # digits, but not ASCII ones
        "arn:nope:iam::123456789012:role/reader",
        "arn:AWS:iam::123456789012:role/reader",
        "arn:aws:iam::123456789012:role/a|b",
        "arn:aws:iam::123456789012:role/a b",
        "arn:aws:iam::123456789012:role/a%2Fb",
        "arn:aws:iam::123456789012:role/reader:extra",
        "arn:aws:iam::123456789012:role/" + "n" * 65,
        "arn:aws:iam::123456789012:role/" + "p" * 511 + "/name",  # a 513-character path
        "arn:aws:iam::123456789012:role/" + "p/" * 1100 + "name",
    ],
)
def test_role_arns_that_are_refused_name_the_parameter(arn: str) -> None:
    with pytest.raises(InvalidParameter) as refused:
        role_arns.role_arn(arn)
    assert refused.value.status == 400
    assert "roleArn" in refused.value.message
    assert arn not in refused.value.message


def test_sts_endpoint_is_regional_and_honours_its_override() -> None:
    def url(**aws: object) -> str:
        return endpoints.resolve(AwsConfig(**aws), roles.STS).url  # type: ignore[arg-type]

    assert url(region="eu-west-1") == "https://sts.eu-west-1.amazonaws.com/"
    assert url(region="cn-north-1") == "https://sts.cn-north-1.amazonaws.com.cn/"
    assert (
        url(region="us-gov-west-1", use_fips=True)
        == "https://sts-fips.us-gov-west-1.amazonaws.com/"
    )
    assert url(region="us-east-1", endpoint_url="http://all:1") == "http://all:1/"
    both = {"endpoint_url": "http://all:1", "endpoint_url_sts": "http://sts-only:2/base"}
    assert url(region="us-east-1", **both) == "http://sts-only:2/base"
    from parameters_secrets_extension import config

    loaded = config.load({"AWS_SESSION_TOKEN": "t", "AWS_ENDPOINT_URL_STS": "http://u:p@h:3"})
    assert loaded.aws.endpoint_url_sts == "http://u:p@h:3"
    assert "u:p" not in repr(loaded.aws)


@pytest.mark.parametrize(
    ("function_name", "expected"),
    [
        (None, "parameters-secrets-extension"),
        ("unknown", "parameters-secrets-extension"),
        ("my-function", "parameters-secrets-extension@my-function"),
        ("x" * 80, ("parameters-secrets-extension@" + "x" * 80)[:64]),
        ("odd name/é", "parameters-secrets-extension@odd-name--"),
    ],
)
def test_session_name_says_who_we_are_within_sts_limits(
    function_name: str | None, expected: str
) -> None:
    name = roles.session_name(function_name)
    assert name == expected
    assert 2 <= len(name) <= 64
    assert all(c.isascii() and (c.isalnum() or c in "+=,.@_-") for c in name)


def test_prefetch_items_may_name_a_role() -> None:
    from parameters_secrets_extension import config

    setting = ",".join(
        [
            f"secretsmanager:{SECRET}|{ROLE_B}",
            f"ssm:{PARAM}:3 | {ROLE_C}",
            f"secretsmanager:{SECRET}",
            f"secretsmanager:other|{ROLE_B}x|y",  # no role ARN after the separator
            "ssm:/p|not-an-arn",
            f"ssm:|{ROLE_B}",
        ]
    )
    loaded = config.load(
        {"AWS_SESSION_TOKEN": "t", "PARAMETERS_SECRETS_EXTENSION_PREFETCH": setting}
    )
    assert loaded.prefetch == (
        ("secretsmanager", SECRET, ROLE_B),
        ("ssm", f"{PARAM}:3", ROLE_C),
        ("secretsmanager", SECRET),
    )
    (warning,) = loaded.warnings
    assert "|<role ARN>" in warning and "ssm:/p|not-an-arn" in warning


# --- The role table and its credentials, in process, against moto ---


def test_concurrent_first_uses_of_a_role_make_one_assume_role_call(accounts: Accounts) -> None:
    client = in_process_client(accounts)
    before = len(assumed(ROLE_C))
    barrier = threading.Barrier(8)
    values: list[object] = []

    def read() -> None:
        barrier.wait()
        values.append(client.as_role(ROLE_C).get_secret_value(SECRET)["SecretString"])

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    client.close()
    assert values == [secret_of(ACCOUNT_C)] * 8
    assert len(assumed(ROLE_C)) - before == 1


class Clock:
    """A settable UTC clock that starts at the real time (moto dates its sessions by it)."""

    def __init__(self) -> None:
        self.value = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.value


def test_role_credentials_are_refreshed_before_expiry(accounts: Accounts) -> None:
    clock = Clock()
    start = clock.value
    client = in_process_client(accounts, now=clock)
    before = len(assumed(ROLE_B))

    def read() -> object:
        answer: Any = client.as_role(ROLE_B).get_parameter(PARAM)
        return answer["Parameter"]["Value"]

    assert read() == param_of(ACCOUNT_B)
    session = assumed(ROLE_B)[-1]
    expiry = session.expiration.replace(tzinfo=timezone.utc)  # type: ignore[attr-defined]
    assert timedelta(minutes=59) < expiry - start <= timedelta(minutes=61)  # one hour asked for
    # Before the advisory window (15 minutes before expiry, as for container credentials):
    # the same credentials.
    clock.value = expiry - roles_advisory() - timedelta(seconds=30)
    assert read() == param_of(ACCOUNT_B)
    assert len(assumed(ROLE_B)) - before == 1
    # In it: one caller assumes the role again.
    clock.value = expiry - roles_advisory() + timedelta(seconds=30)
    assert read() == param_of(ACCOUNT_B)
    assert len(assumed(ROLE_B)) - before == 2
    client.close()


def roles_advisory() -> timedelta:
    from parameters_secrets_extension.aws.credentials import ADVISORY_REFRESH

    return ADVISORY_REFRESH


def test_role_table_drops_the_least_recently_used_role_with_its_credentials(
    accounts: Accounts,
) -> None:
    client = in_process_client(accounts, max_roles=2)
    b_before, c_before = len(assumed(ROLE_B)), len(assumed(ROLE_C))
    third = ROLE_B.replace("cross-reader", "not-there")  # moto assumes roles that do not exist
    assert client.as_role(ROLE_B).get_secret_value(SECRET)["SecretString"] == secret_of(ACCOUNT_B)
    assert client.as_role(ROLE_C).get_secret_value(SECRET)["SecretString"] == secret_of(ACCOUNT_C)
    client.as_role(ROLE_B)  # B is now the more recently used
    client.as_role(third)
    assert len(client.roles) == 2
    assert ROLE_C not in client.roles and ROLE_B in client.roles and third in client.roles
    # B kept its credentials; C's went with it, so using C again assumes it again.
    assert client.as_role(ROLE_B).get_secret_value(SECRET)["SecretString"] == secret_of(ACCOUNT_B)
    assert client.as_role(ROLE_C).get_secret_value(SECRET)["SecretString"] == secret_of(ACCOUNT_C)
    assert len(assumed(ROLE_B)) - b_before == 1
    assert len(assumed(ROLE_C)) - c_before == 2
    client.close()


def test_the_default_table_bound_is_a_named_constant() -> None:
    made: list[str] = []

    def make(arn: str) -> CredentialProvider:
        made.append(arn)
        return CredentialProvider(AwsConfig(), fetch=lambda limit: pytest.fail("no fetch"))

    table = roles.Roles(make)
    arns = [f"arn:aws:iam::{ACCOUNT_B}:role/r{i}" for i in range(roles.MAX_ROLES + 5)]
    for arn in arns:
        table.credentials(arn)
    assert len(table) == roles.MAX_ROLES
    assert all(arn in table for arn in arns[5:]) and not any(arn in table for arn in arns[:5])
    assert made == arns


# --- The real extension process ---


@pytest.fixture
def start_as(
    extension_executable: Path, tmp_path: Path, accounts: Accounts
) -> Iterator[Callable[..., ExtensionProcess]]:
    """Start the real extension standalone with `creds` (the role-chaining caller's by
    default) and extra variables; each one started is stopped at the end of the test."""
    started: list[ExtensionProcess] = []

    def start(creds: LambdaCredentials | None = None, **env: str) -> ExtensionProcess:
        log = tmp_path / f"extension-{len(started)}.log"
        ext = start_standalone(
            extension_executable, log, accounts.moto, creds or accounts.caller, **env
        )
        started.append(ext)
        return ext

    yield start
    for ext in started:
        ext.__exit__(None, None, None)


def secret_route(role: str | None, *, refresh: bool = False) -> str:
    path = f"/secretsmanager/get?secretId={quoted(SECRET)}"
    return (
        path
        + (f"&roleArn={quoted(role)}" if role else "")
        + ("&refreshNow=true" if refresh else "")
    )


def with_role(path: str, role: str | None) -> str:
    return path + (f"&roleArn={quoted(role)}" if role else "")


def read_everything(ext: ExtensionProcess, role: str | None) -> dict[str, object]:
    """What each route answers as `role` (None: the function's own)."""
    seen: dict[str, object] = {}
    status, body = get(ext, with_role(f"/secretsmanager/get?secretId={quoted(SECRET)}", role))
    assert status == 200, body
    seen["secret"] = body["SecretString"]
    # The path route reads the query route's entry, under the same role's namespace.
    status, body = get(ext, with_role(f"/secretsmanager/{quoted(SECRET)}?refreshNow=false", role))
    assert status == 200, body
    seen["secret by path"] = body["SecretString"]
    status, body = get(ext, with_role(f"/secretsmanager/batch?secretIds={quoted(SECRET)}", role))
    assert status == 200 and body["Errors"] == [], body
    seen["secret batch"] = [item["SecretString"] for item in body["SecretValues"]]
    status, body = get(ext, with_role(f"/systemsmanager/parameters/get?name={quoted(PARAM)}", role))
    assert status == 200, body
    seen["parameter"] = body["Parameter"]["Value"]
    status, body = get(
        ext, with_role(f"/systemsmanager/parameters/batch?names={quoted(PARAM)}", role)
    )
    assert status == 200 and body["InvalidParameters"] == [], body
    seen["parameter batch"] = [item["Value"] for item in body["Parameters"]]
    status, body = get(
        ext, with_role(f"/systemsmanager/parameters/get-by-path?path={quoted(PATH)}", role)
    )
    assert status == 200, body
    found = {item["Name"]: item["Value"] for item in body["Parameters"]}
    seen["path"] = found.get(PARAM)
    return seen


def expected(account: str) -> dict[str, object]:
    secret = SECRET_STRING_V2 if account == ACCOUNT else secret_of(account)
    param = PARAM_STRING if account == ACCOUNT else param_of(account)
    return {
        "secret": secret,
        "secret by path": secret,
        "secret batch": [secret],
        "parameter": param,
        "parameter batch": [param],
        "path": param,
    }


def test_every_route_reads_as_the_role_and_no_value_crosses_namespaces(
    start_as: Callable[..., ExtensionProcess], accounts: Accounts
) -> None:
    """One name, three accounts, three values: each read as the function's own role, as B's
    role or as C's gets its own account's value, on every route, whatever the others
    cached before it; the second round comes from the cache and is just as right."""
    ext = start_as(AWS_LAMBDA_FUNCTION_NAME="roles-fn")
    b_before, c_before = len(assumed(ROLE_B)), len(assumed(ROLE_C))
    order = [(None, ACCOUNT), (ROLE_B, ACCOUNT_B), (ROLE_C, ACCOUNT_C)]
    for role, account in [*order, *reversed(order)]:
        assert read_everything(ext, role) == expected(account), role
    status, counters = get(ext, "/metrics")
    assert status == 200
    # Round one missed on all 15 reads (the batches' ids were cached by the single reads
    # before them, so they hit), round two hit on every one.
    assert counters["Hits"] >= 15 + 6, counters
    # Each role was assumed once, for every route and both services, in the name of this
    # extension and function.
    assert len(assumed(ROLE_B)) - b_before == 1
    assert len(assumed(ROLE_C)) - c_before == 1
    session = assumed(ROLE_B)[-1]
    assert session.session_name == "parameters-secrets-extension@roles-fn"  # type: ignore[attr-defined]
    # refreshNow as a role refreshes that role's entry only.
    assert get(ext, secret_route(ROLE_B, refresh=True))[1]["SecretString"] == secret_of(ACCOUNT_B)
    assert get(ext, secret_route(None))[1]["SecretString"] == SECRET_STRING_V2
    # Logged without credentials: neither the role's nor the function's own.
    output = ext.output()
    assert "assumed role " + ROLE_B in output
    for secret in (
        session.secret_access_key,  # type: ignore[attr-defined]
        session.session_token,  # type: ignore[attr-defined]
        accounts.caller.secret_key,
        secret_of(ACCOUNT_B),
    ):
        assert secret not in output


ROUTES = [
    f"/secretsmanager/get?secretId={quoted(SECRET)}",
    f"/secretsmanager/batch?secretIds={quoted(SECRET)}",
    f"/secretsmanager/{quoted(SECRET)}?refreshNow=false",
    f"/systemsmanager/parameters/get?name={quoted(PARAM)}",
    f"/systemsmanager/parameters/get/?name={quoted(PARAM)}",
    f"/systemsmanager/parameters/batch?names={quoted(PARAM)}",
    f"/systemsmanager/parameters/get-by-path?path={quoted(PATH)}",
]


def test_a_bad_role_arn_is_400_on_every_route_and_reaches_nothing(
    start_as: Callable[..., ExtensionProcess],
) -> None:
    with RawServer(hang) as upstream:
        origin = upstream.uri.rsplit("/", 1)[0]
        ext = start_as(AWS_ENDPOINT_URL=origin, AWS_ENDPOINT_URL_STS=origin)
        bad = [
            "not-an-arn",
            "arn:aws:iam::123456789012:user/reader",
            "arn:evil.example:iam::123456789012:role/reader",
            "arn:aws:iam::123456789012:role/" + "n" * 65,
            "arn:aws:iam::123456789012:role/reader\x00",
        ]
        for route in ROUTES:
            for arn in bad:
                status, body = get(ext, with_role(route, arn))
                assert status == 400, (route, arn, body)
                assert body["__type"] == "InvalidParameterException"
                assert "roleArn" in body["message"]
        time.sleep(0.2)  # a connection on its way would have arrived by now
        assert upstream.accepted == 0
        status, counters = get(ext, "/metrics")
        assert counters["UpstreamCalls"] == 0
        assert counters["LocalErrorsByType"] == {
            "InvalidParameterException": len(ROUTES) * len(bad)
        }


def test_a_role_that_cannot_be_assumed_is_403_naming_the_role(
    start_as: Callable[..., ExtensionProcess], lambda_credentials: LambdaCredentials
) -> None:
    # The session's Lambda role may read, but has no sts:AssumeRole: STS refuses it.
    ext = start_as(lambda_credentials)
    for route in ROUTES:
        status, body = get(ext, with_role(route, ROLE_B))
        assert status == 403, (route, body)
        assert body["__type"] == "AccessDenied", body
        assert ROLE_B in body["message"]
    # Its own reads are unaffected.
    status, body = get(ext, f"/systemsmanager/parameters/get?name={quoted(PARAM)}")
    assert (status, body["Parameter"]["Value"]) == (200, PARAM_STRING)
    status, counters = get(ext, "/metrics")
    assert counters["UpstreamErrorsByType"].get("AccessDenied", 0) >= 1
    assert lambda_credentials.secret_key not in ext.output()


def test_sts_goes_where_aws_endpoint_url_sts_points(
    start_as: Callable[..., ExtensionProcess], accounts: Accounts
) -> None:
    with RawServer(hang) as elsewhere:
        nowhere = elsewhere.uri.rsplit("/", 1)[0]
        services = {
            "AWS_ENDPOINT_URL": nowhere,
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": accounts.moto.endpoint,
            "SECRETS_MANAGER_TIMEOUT_MILLIS": "3000",
        }
        ext = start_as(AWS_ENDPOINT_URL_STS=accounts.moto.endpoint, **services)
        status, body = get(ext, secret_route(ROLE_B))
        assert (status, body.get("SecretString")) == (200, secret_of(ACCOUNT_B)), body
        assert elsewhere.accepted == 0
        # Without it, AssumeRole goes to AWS_ENDPOINT_URL, which never answers.
        ext = start_as(**services)
        status, body = get(ext, secret_route(ROLE_B))
        assert status == 504, body
        assert ROLE_B in body["message"]
        assert elsewhere.accepted >= 1


def test_prefetch_reads_as_the_role_it_names(
    start_as: Callable[..., ExtensionProcess],
) -> None:
    prefetch = f"secretsmanager:{SECRET}|{ROLE_B},secretsmanager:{SECRET},ssm:{PARAM}|{ROLE_C}"
    ext = start_as(
        PARAMETERS_SECRETS_EXTENSION_PREFETCH=prefetch,
        PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL="debug",
    )
    # Standalone, the server answers while prefetch runs: wait for its three items.
    wait_until(lambda: ext.output().count("prefetched ") == 3, 15, "the prefetch")
    assert f"prefetched secretsmanager {SECRET} as {ROLE_B}" in ext.output()
    assert get(ext, secret_route(ROLE_B))[1]["SecretString"] == secret_of(ACCOUNT_B)
    assert get(ext, secret_route(None))[1]["SecretString"] == SECRET_STRING_V2
    _, body = get(ext, with_role(f"/systemsmanager/parameters/get?name={quoted(PARAM)}", ROLE_C))
    assert body["Parameter"]["Value"] == param_of(ACCOUNT_C)
    _, counters = get(ext, "/metrics")
    assert (counters["Hits"], counters["Misses"]) == (3, 3), counters  # the prefetch's 3 misses


# --- README: the worked example, its policies applied as written ---


def readme_blocks(language: str) -> list[str]:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    start = readme.index("\n## Cross-account reads (roleArn)\n")
    section = readme[start : readme.index("\n## ", start + 1)]
    return re.findall(rf"```{language}\n(.*?)```", section, re.DOTALL)


def test_the_readme_example_works_with_its_policies_as_written(
    extension_executable: Path, tmp_path: Path, accounts: Accounts
) -> None:
    """The README's three policies, applied in moto as written (the function's account
    111111111111 being moto's default one), and its client snippet, run unchanged."""
    function_policy, trust, permissions = (
        block.replace("111111111111", ACCOUNT) for block in readme_blocks("json")
    )
    (snippet,) = readme_blocks("python")
    target = json.loads(function_policy)["Statement"][0]["Resource"]
    assert target.startswith(f"arn:aws:iam::{ACCOUNT_B}:role/")
    function_role = json.loads(trust)["Statement"][0]["Principal"]["AWS"]
    assert json.loads(trust)["Statement"][0]["Action"] == "sts:AssumeRole"
    moto = accounts.moto
    _set_auth(moto.endpoint, b"inf")
    try:
        for account, arn, trusted, policy in (
            (ACCOUNT, function_role, f"arn:aws:iam::{ACCOUNT}:user/extension", function_policy),
            (ACCOUNT_B, target, None, permissions),
        ):
            iam: Any = _client(moto, "iam", account)
            name = arn.rsplit("/", 1)[1]
            doc = (
                trust
                if trusted is None
                else json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {"AWS": trusted},
                                "Action": "sts:AssumeRole",
                            }
                        ],
                    }
                )
            )
            if name not in {r["RoleName"] for r in iam.list_roles()["Roles"]}:
                iam.create_role(RoleName=name, AssumeRolePolicyDocument=doc)
                iam.put_role_policy(RoleName=name, PolicyName="readme", PolicyDocument=policy)
    finally:
        _set_auth(moto.endpoint, b"0")
    sts: Any = moto.boto3_client("sts")
    creds = sts.assume_role(RoleArn=function_role, RoleSessionName="fn")["Credentials"]
    function_creds = LambdaCredentials(
        creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]
    )
    with start_standalone(extension_executable, tmp_path / "ext.log", moto, function_creds) as ext:
        namespace: dict[str, Any] = {}
        exec(snippet.replace("localhost:2773", f"localhost:{ext.port}"), namespace)  # noqa: S102
        os.environ["AWS_SESSION_TOKEN"] = function_creds.session_token
        assert namespace["SHARED_ROLE"] == target
        assert namespace["get_shared_secret"](SECRET) == secret_of(ACCOUNT_B)
        # The function's role itself may read nothing: the value came as the role.
        status, body = get(ext, f"/secretsmanager/get?secretId={quoted(SECRET)}")
        assert status == 403, body


def test_an_expired_secret_is_revalidated_as_the_role_it_was_read_as(
    extension_executable: Path, tmp_path: Path, accounts: Accounts
) -> None:
    """DescribeSecret goes out with the role's credentials, and its outcome is the role's: a
    role that may describe renews its entry while the function's own role (which may not)
    falls back to GetSecretValue."""
    moto = accounts.moto
    _set_auth(moto.endpoint, b"inf")
    try:
        describer = _role(
            moto,
            ACCOUNT_B,
            "describer",
            accounts.caller_arn,
            [*READS, "secretsmanager:DescribeSecret"],
        )
    finally:
        _set_auth(moto.endpoint, b"0")
    with (
        FaultProxy(moto.host, moto.port) as proxy,
        start_standalone(
            extension_executable,
            tmp_path / "ext.log",
            moto,
            accounts.caller,
            endpoint=f"http://127.0.0.1:{proxy.port}",
            SECRETS_MANAGER_TTL="1",
            PARAMETERS_SECRETS_EXTENSION_REFRESH_AHEAD_PERCENT="0",
        ) as ext,
    ):
        as_role, own = secret_route(describer), secret_route(None)
        first_role, first_own = get(ext, as_role), get(ext, own)
        assert first_role == (200, first_role[1]) and first_own[0] == 200
        assert first_role[1]["SecretString"] == secret_of(ACCOUNT_B)
        seen = len(proxy.header_values("x-amz-target"))
        time.sleep(1.3)
        assert get(ext, as_role) == first_role
        assert get(ext, own) == first_own
        operations = [t.split(".")[-1] for t in proxy.header_values("x-amz-target")[seen:]]
        # The role's: DescribeSecret alone. The function's own: denied, then GetSecretValue.
        assert operations == ["DescribeSecret", "DescribeSecret", "GetSecretValue"], operations
        denied = [line for line in ext.output().splitlines() if "DescribeSecret is denied" in line]
        assert len(denied) == 1 and describer not in denied[0], denied
