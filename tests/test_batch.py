"""Batch and path reads end to end: the local API in process (and once the built layer's
process) against moto with signature checking, upstream calls counted at the fault proxy."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import pytest

from cache import Cache
from parameters_secrets_extension.aws.operations import AwsClient
from parameters_secrets_extension.config import AwsConfig
from parameters_secrets_extension.lambda_api.boot import listen
from parameters_secrets_extension.local_api import server as local_server
from parameters_secrets_extension.lookups import Lookups
from tests.conftest import BATCH_POLICY, PARAMETER_FIELDS, SECRET_FIELDS, Moto, wait_until
from tests.extension_process import ExtensionProcess
from tests.fault_proxy import FaultProxy
from tests.test_local_server import TOKEN, Response, get

SM_BATCH = "/secretsmanager/batch"
SSM_BATCH = "/systemsmanager/parameters/batch"
SSM_PATH = "/systemsmanager/parameters/get-by-path"
PREFIX = "batch-test"
PATH = "/batch-test/tree/"
TREE = [f"{PATH}p{i:02d}" for i in range(8)] + [f"{PATH}deep/q{i:02d}" for i in range(6)]
SECRETS = [f"{PREFIX}/s{i}" for i in range(12)]
VERSIONED = "/batch-test/versioned"
ITEM_SECRET_FIELDS = [field for field in SECRET_FIELDS if field != "ResultMetadata"]


def harness_path(name: str) -> str:
    return "/secretsmanager/get?secretId=" + quote(name, safe="")


def ids(*names: str) -> str:
    return ",".join(quote(name, safe="") for name in names)


@pytest.fixture(scope="module")
def data(moto: Moto) -> None:
    sm: Any = moto.boto3_client("secretsmanager")
    for index, name in enumerate(SECRETS):
        sm.create_secret(Name=name, SecretString=f"batch-SECRET-{index}")
    sm.create_secret(Name=f"{PREFIX}/binary", SecretBinary=b"\x00\xffbatch")
    ssm: Any = moto.boto3_client("ssm")
    for index, name in enumerate(TREE):
        kind = "SecureString" if index % 3 == 0 else "String"
        ssm.put_parameter(Name=name, Value=f"tree-PARAM-{index}", Type=kind)
    ssm.put_parameter(Name=VERSIONED, Value="v1-PARAM", Type="String")
    ssm.put_parameter(Name=VERSIONED, Value="v2-PARAM", Type="String", Overwrite=True)
    ssm.label_parameter_version(Name=VERSIONED, ParameterVersion=1, Labels=["first"])


class Setup:
    def __init__(self, port: int, proxy: FaultProxy, cache: Cache) -> None:
        self.port = port
        self.proxy = proxy
        self.cache = cache

    def get(self, target: str) -> Response:
        return get(self.port, target)

    def ok(self, target: str) -> Any:
        response = self.get(target)
        assert response.status == 200, response.body
        return response.json()

    def calls(self, operation: str | None = None) -> int:
        """Upstream requests so far (of one operation, by its X-Amz-Target)."""
        targets = self.proxy.header_values("X-Amz-Target")
        return len([t for t in targets if operation is None or t.endswith("." + operation)])


@contextlib.contextmanager
def serving(moto: Moto, *, max_path_parameters: int = 500, ttl: int = 300) -> Iterator[Setup]:
    with FaultProxy(moto.host, moto.port) as proxy:
        aws = AwsConfig(
            region="us-east-1",
            endpoint_url=f"http://127.0.0.1:{proxy.port}",
            access_key_id=moto.access_key,
            secret_access_key=moto.secret_key,
        )
        client = AwsClient(aws, max_connections=3, secrets_manager_timeout_ms=0, ssm_timeout_ms=0)
        cache = Cache(200)
        lookups = Lookups(
            client,
            cache,
            secrets_manager_ttl=ttl,
            ssm_ttl=ttl,
            max_path_parameters=max_path_parameters,
        )
        servers = local_server.start(lookups, sockets=listen(0), token=TOKEN)
        try:
            yield Setup(servers.port, proxy, cache)
        finally:
            servers.shutdown()
            client.close()


@pytest.fixture
def setup(moto: Moto, data: None) -> Iterator[Setup]:
    with serving(moto) as running:
        yield running


def _iso(value: datetime) -> str:
    """boto3's datetime as the answer spells it: UTC, milliseconds, Z."""
    utc = value.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


# ---------------------------------------------------------------- secrets


def test_secret_batch_shape_field_by_field_against_boto3(setup: Setup, moto: Moto) -> None:
    sm: Any = moto.boto3_client("secretsmanager")
    arn = sm.describe_secret(SecretId=SECRETS[1])["ARN"]
    wanted = [SECRETS[0], arn, f"{PREFIX}/binary", f"{PREFIX}/missing"]
    body = setup.ok(f"{SM_BATCH}?secretIds={ids(*wanted)}")
    assert list(body) == ["Errors", "NextToken", "SecretValues", "ResultMetadata"]
    assert (body["NextToken"], body["ResultMetadata"]) == (None, {})
    boto = sm.batch_get_secret_value(SecretIdList=wanted)
    assert len(body["SecretValues"]) == len(boto["SecretValues"]) == 3
    by_arn = {item["ARN"]: item for item in body["SecretValues"]}
    for ident in wanted[:3]:
        expected = sm.get_secret_value(SecretId=ident)
        item = by_arn[expected["ARN"]]
        assert list(item) == ITEM_SECRET_FIELDS
        assert item["Name"] == expected["Name"]
        assert item["VersionId"] == expected["VersionId"]
        assert item["VersionStages"] == expected["VersionStages"]
        assert item["SecretString"] == expected.get("SecretString")
        binary = expected.get("SecretBinary")
        assert item["SecretBinary"] == (base64.b64encode(binary).decode() if binary else None)
        assert item["CreatedDate"][:19] == _iso(expected["CreatedDate"])[:19]
    [error] = body["Errors"]
    assert list(error) == ["ErrorCode", "ErrorMessage", "SecretId"]
    assert error["SecretId"] == f"{PREFIX}/missing"
    assert error["ErrorCode"] == boto["Errors"][0]["ErrorCode"] == "ResourceNotFoundException"
    assert error["ErrorMessage"]


def test_secret_batch_and_single_reads_share_the_cache(setup: Setup) -> None:
    first = setup.ok(f"{SM_BATCH}?secretIds={ids(*SECRETS[:3])}")
    assert (setup.calls(), setup.calls("BatchGetSecretValue")) == (1, 1)
    for item, name in zip(first["SecretValues"], SECRETS[:3], strict=True):
        single = setup.ok(f"/secretsmanager/get?secretId={quote(name, safe='')}")
        assert single == {**item, "ResultMetadata": {}}
    assert setup.calls() == 1  # three single reads, all hits
    setup.ok(f"/secretsmanager/get?secretId={quote(SECRETS[3], safe='')}")
    assert setup.calls("GetSecretValue") == 1
    # Cached: 0, 1, 2 (batch) and 3 (single); only 4 and 5 go upstream, in one call.
    again = setup.ok(f"{SM_BATCH}?secretIds={ids(*SECRETS[:6])}")
    assert [item["Name"] for item in again["SecretValues"]] == SECRETS[:6]
    assert (setup.calls(), setup.calls("BatchGetSecretValue")) == (3, 2)
    setup.ok(f"{SM_BATCH}?secretIds={ids(*reversed(SECRETS[:6]))}")
    assert setup.calls() == 3


def test_secret_batch_item_failures_are_in_the_answer_not_an_error(setup: Setup) -> None:
    body = setup.ok(f"{SM_BATCH}?secretIds={ids(SECRETS[6], 'nope-1', 'nope-2')}")
    assert [item["Name"] for item in body["SecretValues"]] == [SECRETS[6]]
    assert [(e["SecretId"], e["ErrorCode"]) for e in body["Errors"]] == [
        ("nope-1", "ResourceNotFoundException"),
        ("nope-2", "ResourceNotFoundException"),
    ]
    # A failure is never cached: asked again, the missing ids go upstream again.
    before = setup.calls()
    setup.ok(f"{SM_BATCH}?secretIds={ids(SECRETS[6], 'nope-1')}")
    assert setup.calls() == before + 1


def test_a_single_read_during_a_batch_joins_its_flight(setup: Setup) -> None:
    setup.proxy.set_fault("delay", times=1, delay_ms=400)
    answers: list[Response] = []
    batch = threading.Thread(
        target=lambda: answers.append(setup.get(f"{SM_BATCH}?secretIds={ids(*SECRETS[7:10])}"))
    )
    batch.start()
    time.sleep(0.15)  # the batch call is held at the proxy; its keys' flights are open
    single = setup.ok(f"/secretsmanager/get?secretId={quote(SECRETS[9], safe='')}")
    batch.join(timeout=10)
    assert answers[0].status == 200
    assert single["SecretString"] == "batch-SECRET-9"
    assert setup.calls() == 1


@pytest.mark.parametrize(("fault", "status", "error_type"), [
    ("status_500", 500, "InternalFailure"),
    ("throttle", 400, "ThrottlingException"),
])  # fmt: skip
def test_whole_call_failure_maps_like_a_single_read(
    setup: Setup, fault: str, status: int, error_type: str
) -> None:
    setup.proxy.set_fault(fault)
    batch = setup.get(f"{SM_BATCH}?secretIds={ids(*SECRETS[10:12])}")
    single = setup.get(f"/secretsmanager/get?secretId={quote(SECRETS[10], safe='')}")
    params = setup.get(f"{SSM_BATCH}?names={ids(TREE[0])}")
    path = setup.get(f"{SSM_PATH}?path={quote(PATH, safe='')}")
    for response in (batch, single, params, path):
        assert response.error == (status, error_type)


# ---------------------------------------------------------------- parameters


def test_parameter_batch_shape_field_by_field_against_boto3(setup: Setup, moto: Moto) -> None:
    ssm: Any = moto.boto3_client("ssm")
    wanted = [TREE[0], TREE[1], f"{VERSIONED}:1", f"{VERSIONED}:first", VERSIONED]
    wanted += ["/batch-test/nope", f"{VERSIONED}:9"]
    body = setup.ok(f"{SSM_BATCH}?names={ids(*wanted)}&withDecryption=true")
    assert list(body) == ["InvalidParameters", "Parameters", "ResultMetadata"]
    boto = ssm.get_parameters(Names=wanted, WithDecryption=True)
    assert sorted(body["InvalidParameters"]) == sorted(boto["InvalidParameters"])
    assert sorted(body["InvalidParameters"]) == ["/batch-test/nope", f"{VERSIONED}:9"]
    assert len(body["Parameters"]) == 5
    for item, name in zip(body["Parameters"], wanted[:5], strict=False):
        assert list(item) == PARAMETER_FIELDS
        expected = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]
        for field in ("ARN", "DataType", "Name", "Type", "Value", "Version"):
            assert item[field] == expected.get(field), field
        assert item["LastModifiedDate"][:19] == _iso(expected["LastModifiedDate"])[:19]
    values = {p["Value"] for p in body["Parameters"]}
    assert {"v1-PARAM", "v2-PARAM", "tree-PARAM-0", "tree-PARAM-1"} == values
    selectors = {p["Selector"] for p in body["Parameters"] if p["Name"] == VERSIONED}
    assert selectors == {":1", ":first", None}


def test_parameter_batch_entries_are_the_single_reads_keys(setup: Setup) -> None:
    names = [f"{VERSIONED}:1", f"{VERSIONED}:first", TREE[2]]
    batch = setup.ok(f"{SSM_BATCH}?names={ids(*names)}")
    assert setup.calls() == 1
    singles = [
        f"name={quote(VERSIONED, safe='')}&version=1",
        f"name={quote(VERSIONED, safe='')}&label=first",
        f"name={quote(TREE[2], safe='')}",
    ]
    for item, query in zip(batch["Parameters"], singles, strict=True):
        single = setup.ok(f"/systemsmanager/parameters/get?{query}")
        assert single == {"Parameter": item, "ResultMetadata": {}}
    assert setup.calls() == 1  # all three single reads were hits
    # withDecryption is part of the key, as for single reads.
    setup.ok(f"{SSM_BATCH}?names={ids(TREE[2])}&withDecryption=true")
    assert setup.calls("GetParameters") == 2


# ---------------------------------------------------------------- paths


def test_path_follows_every_page_and_is_cached_as_one_entry(setup: Setup, moto: Moto) -> None:
    ssm: Any = moto.boto3_client("ssm")
    body = setup.ok(f"{SSM_PATH}?path={quote(PATH, safe='')}&recursive=true&withDecryption=true")
    assert list(body) == ["NextToken", "Parameters", "ResultMetadata"]
    assert body["NextToken"] is None
    pages = ssm.get_paginator("get_parameters_by_path").paginate(
        Path=PATH, Recursive=True, WithDecryption=True
    )
    expected = {p["Name"]: p for page in pages for p in page["Parameters"]}
    assert sorted(expected) == sorted(TREE)
    assert sorted(item["Name"] for item in body["Parameters"]) == sorted(TREE)
    for item in body["Parameters"]:
        assert list(item) == PARAMETER_FIELDS
        assert item["Value"] == expected[item["Name"]]["Value"]
        assert item["Version"] == expected[item["Name"]]["Version"]
    assert setup.calls("GetParametersByPath") == 2  # 14 parameters, pages of 10
    assert setup.ok(f"{SSM_PATH}?path={quote(PATH, safe='')}&recursive=true&withDecryption=true")
    assert setup.calls() == 2
    shallow = setup.ok(f"{SSM_PATH}?path={quote(PATH, safe='')}")
    assert sorted(item["Name"] for item in shallow["Parameters"]) == TREE[:8]
    secure = [p for p in shallow["Parameters"] if p["Type"] == "SecureString"]
    assert secure
    assert all(p["Value"] != expected[p["Name"]]["Value"] for p in secure)  # not decrypted
    assert setup.calls() == 3


def test_path_over_the_limit_is_a_400_naming_it(moto: Moto, data: None) -> None:
    with serving(moto, max_path_parameters=12) as setup:
        response = setup.get(f"{SSM_PATH}?path={quote(PATH, safe='')}&recursive=true")
        assert response.error == (400, "InvalidParameterException")
        message = response.json()["message"]
        assert "PARAMETERS_SECRETS_EXTENSION_MAX_PATH_PARAMETERS=12" in message
        assert "more than 12" in message
        assert len(setup.ok(f"{SSM_PATH}?path={quote(PATH, safe='')}")["Parameters"]) == 8


# ---------------------------------------------------------------- bad requests


@pytest.mark.parametrize(("target", "status", "error_type", "words"), [
    (f"{SM_BATCH}", 400, "MissingParameterException", "secretIds"),
    (f"{SM_BATCH}?secretIds=", 400, "InvalidParameterException", "1 to 20"),
    (f"{SM_BATCH}?secretIds=" + ",".join(f"s{i}" for i in range(21)), 400,
     "InvalidParameterException", "1 to 20"),
    (f"{SM_BATCH}?secretIds=a,b,a", 400, "InvalidParameterException", "more than once"),
    (f"{SM_BATCH}?secretIds=a,,b", 400, "InvalidParameterException", "empty"),
    (f"{SSM_BATCH}?names=", 400, "InvalidParameterException", "1 to 10"),
    (f"{SSM_BATCH}?names=" + ",".join(f"/p{i}" for i in range(11)), 400,
     "InvalidParameterException", "1 to 10"),
    (f"{SSM_BATCH}?names=/p:3,/p:03", 400, "InvalidParameterException", "more than once"),
    (f"{SSM_BATCH}?names=/p,", 400, "InvalidParameterException", "empty"),
    (f"{SSM_BATCH}?names=/p:0", 400, "InvalidParameterException", "version"),
    (f"{SSM_BATCH}?names=/p:", 400, "InvalidParameterException", "selector"),
    (f"{SSM_BATCH}?names=/p&withDecryption=maybe", 400, "InvalidParameterException", "true"),
    (f"{SSM_PATH}", 400, "MissingParameterException", "path"),
    (f"{SSM_PATH}?path=/a/&recursive=2", 400, "InvalidParameterException", "recursive"),
])  # fmt: skip
def test_bad_lists_are_400s_naming_the_rule(
    setup: Setup, target: str, status: int, error_type: str, words: str
) -> None:
    response = setup.get(target)
    assert response.error == (status, error_type)
    assert words in response.json()["message"]
    assert setup.calls() == 0


@pytest.mark.parametrize("target", [f"{SM_BATCH}?secretIds=a", f"{SSM_BATCH}?names=/a",
                                    f"{SSM_PATH}?path=/a/"])  # fmt: skip
def test_token_is_checked_first(setup: Setup, target: str) -> None:
    assert get(setup.port, target, token="wrong").error == (401, "UnauthorizedException")
    assert get(setup.port, target, token=None).error == (401, "UnauthorizedException")
    assert setup.calls() == 0


def test_an_arn_of_another_service_fails_only_its_own_item(setup: Setup) -> None:
    bad = "arn:aws:ssm:us-east-1:123456789012:parameter/x"
    body = setup.ok(f"{SM_BATCH}?secretIds={ids(SECRETS[0], bad)}")
    assert [item["Name"] for item in body["SecretValues"]] == [SECRETS[0]]
    assert [(e["SecretId"], e["ErrorCode"]) for e in body["Errors"]] == [
        (bad, "InvalidParameterException")
    ]
    assert setup.calls() == 1


# ---------------------------------------------------------------- the built layer


def test_batch_and_path_on_the_real_process(
    start_extension: Callable[..., ExtensionProcess], moto: Moto, data: None
) -> None:
    # The Lambda role may call GetSecretValue and GetParameter only: a batch read is
    # refused, with AWS's status and type, until the role may call the batch operations
    # too; the prefetch falls back to single reads, as a role set up for the AWS
    # extension allows.
    ext = start_extension(
        PARAMETERS_SECRETS_EXTENSION_PREFETCH=",".join(f"secretsmanager:{s}" for s in SECRETS),
    )
    target = f"{SM_BATCH}?secretIds={ids(*SECRETS[:4], 'nope')}"
    status, body = ext.get_json(target)
    assert (status, body["__type"]) == (403, "AccessDenied")  # moto's own, passed through
    # Standalone, the port answers while prefetch is still under way: wait for its line.
    fallback = "prefetch: BatchGetSecretValue refused (AccessDenied); fetching its 12 items"
    wait_until(lambda: fallback in ext.output(), 30, "the prefetch fallback line")
    assert "WARN prefetch" not in ext.output()
    # The request's refused batch is logged as an upstream failure (its ids that were not
    # already in the prefetch's flight); the prefetch's refusal is the one INFO line above,
    # so an id it alone asked for has no such line.
    assert "ERROR upstream BatchGetSecretValue failed: id=nope " in ext.output()
    assert f"BatchGetSecretValue failed: id={SECRETS[-1]} " not in ext.output()
    hits = [ext.get_json(harness_path(name)) for name in SECRETS]
    assert [body["SecretString"] for _, body in hits] == [f"batch-SECRET-{i}" for i in range(12)]
    iam: Any = moto.boto3_client("iam")
    role = moto.role_arn.rsplit("/", 1)[1]
    iam.put_role_policy(RoleName=role, PolicyName="batch", PolicyDocument=json.dumps(BATCH_POLICY))
    try:
        status, body = ext.get_json(target)
        assert status == 200, body
        values: Any = body["SecretValues"]
        assert [item["SecretString"] for item in values] == [f"batch-SECRET-{i}" for i in range(4)]
        errors: Any = body["Errors"]
        assert [error["SecretId"] for error in errors] == ["nope"]
        status, body = ext.get_json(f"{SSM_PATH}?path={quote(PATH, safe='')}&recursive=true")
        assert status == 200, body
        params: Any = body["Parameters"]
        assert sorted(p["Name"] for p in params) == sorted(TREE)
        status, body = ext.get_json(f"{SSM_BATCH}?names={ids(TREE[1], '/nope')}")
        assert (status, body["InvalidParameters"]) == (200, ["/nope"])
        output = ext.output()
        for index in range(len(TREE)):
            assert f"tree-PARAM-{index}" not in output
        for index in range(len(SECRETS)):
            assert f"batch-SECRET-{index}" not in output
    finally:
        iam.delete_role_policy(RoleName=role, PolicyName="batch")
