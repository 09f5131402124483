"""One deadline per local request, and batch answers paired with the right ids: the real
extension process behind the fault proxy in front of moto.

`*_TIMEOUT_MILLIS` is the local request's deadline, shared by every call it makes: pages,
regions, retries, the wait on another request's flight, and every byte of each answer, its
head included. Timed assertions are bounds with wide margins (a 504 well within twice a 1 s
deadline, against the several seconds the defects took), not benchmarks.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import BATCH_POLICY, REGION, LambdaCredentials, Moto
from tests.extension_process import ExtensionProcess
from tests.fault_proxy import FaultProxy
from tests.hardening_support import param_path, secret_path, start_standalone

TIMEOUT_MILLIS = 1000
MAX_PATH_PARAMETERS = 50
SM_BATCH = "/secretsmanager/batch?secretIds="
SSM_BATCH = "/systemsmanager/parameters/batch?names="
SSM_PATH = "/systemsmanager/parameters/get-by-path?path="
OTHER_REGIONS = [
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-2",
    "sa-east-1",
    "ap-northeast-1",
    "ca-central-1",
]


def ids(*names: str) -> str:
    return ",".join(quote(name, safe="") for name in names)


@dataclass(frozen=True)
class Rig:
    proxy: FaultProxy
    ext: ExtensionProcess
    moto: Moto

    def get(self, path: str) -> tuple[int, Any]:
        return _get(self.ext, path)

    def timed(self, path: str) -> tuple[int, Any, float]:
        started = time.monotonic()
        status, body = self.get(path)
        return status, body, time.monotonic() - started

    def calls(self, operation: str) -> int:
        targets = self.proxy.header_values("X-Amz-Target")
        return len([t for t in targets if t.endswith("." + operation)])

    def metrics(self) -> Any:
        status, body = self.get("/metrics")
        assert status == 200
        return body


@pytest.fixture(scope="module")
def batch_role(moto: Moto) -> Iterator[None]:
    """The Lambda role may also call the batch operations, for this module only."""
    iam: Any = moto.boto3_client("iam")
    role = moto.role_arn.rsplit("/", 1)[1]
    iam.put_role_policy(
        RoleName=role, PolicyName="deadlines", PolicyDocument=json.dumps(BATCH_POLICY)
    )
    yield
    iam.delete_role_policy(RoleName=role, PolicyName="deadlines")


@pytest.fixture(scope="module")
def module_rig(
    extension_executable: Path,
    tmp_path_factory: pytest.TempPathFactory,
    moto: Moto,
    lambda_credentials: LambdaCredentials,
    batch_role: None,
) -> Iterator[Rig]:
    with FaultProxy(moto.host, moto.port) as proxy:
        log_path = tmp_path_factory.mktemp("deadlines") / "extension.log"
        with start_standalone(
            extension_executable,
            log_path,
            moto,
            lambda_credentials,
            endpoint=f"http://127.0.0.1:{proxy.port}",
            SECRETS_MANAGER_TIMEOUT_MILLIS=str(TIMEOUT_MILLIS),
            SSM_PARAMETER_STORE_TIMEOUT_MILLIS=str(TIMEOUT_MILLIS),
            PARAMETERS_SECRETS_EXTENSION_MAX_PATH_PARAMETERS=str(MAX_PATH_PARAMETERS),
            PARAMETERS_SECRETS_EXTENSION_MAX_CLIENT_CONNECTIONS="64",
            # Every region's calls reach the one proxy here, as they would reach one host
            # each on AWS: enough connections to it for all of them at once.
            PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS="8",
        ) as ext:
            yield Rig(proxy, ext, moto)
            assert "Traceback" not in ext.output()


@pytest.fixture
def rig(module_rig: Rig) -> Iterator[Rig]:
    module_rig.proxy.set_fault(None)
    yield module_rig
    module_rig.proxy.set_fault(None)


def _put_parameters(moto: Moto, names: list[str]) -> None:
    ssm: Any = moto.boto3_client("ssm")
    for name in names:
        ssm.put_parameter(Name=name, Value="deadline-PARAM", Type="String", Overwrite=True)


# ---------------------------------------------------------------- one deadline per request


def test_every_page_of_a_path_read_shares_the_request_deadline(rig: Rig) -> None:
    # 45 parameters are 5 pages; at 0.3 s each they need 1.5 s, past the 1 s deadline.
    path = "/deadline/pages/"
    _put_parameters(rig.moto, [f"{path}p{i:02d}" for i in range(45)])
    rig.proxy.set_fault("delay", delay_ms=300)
    status, body, seconds = rig.timed(SSM_PATH + quote(path, safe=""))
    assert (status, body["__type"]) == (504, "TimeoutException"), body
    assert seconds < 2.5, seconds
    rig.proxy.set_fault(None)
    status, body = rig.get(SSM_PATH + quote(path, safe=""))
    assert (status, len(body["Parameters"])) == (200, 45)


def test_the_regions_of_a_batch_are_asked_at_once(rig: Rig) -> None:
    # Eight regions at 0.3 s each would take 2.4 s one after another; at once, about 0.3 s.
    arns = []
    for index, region in enumerate([REGION, *OTHER_REGIONS]):
        sm: Any = _client(rig.moto, "secretsmanager", region)
        created = sm.create_secret(Name=f"deadline/regions-{index}", SecretString=f"R-{index}")
        arns.append(created["ARN"])
    rig.proxy.set_fault("delay", delay_ms=300)
    status, body, seconds = rig.timed(SM_BATCH + ids(*arns))
    assert status == 200, body
    assert [item["SecretString"] for item in body["SecretValues"]] == [
        f"R-{i}" for i in range(len(arns))
    ]
    assert body["Errors"] == []
    assert seconds < 1.5, seconds  # within the deadline, as it must be to answer 200 at all
    assert rig.calls("BatchGetSecretValue") >= len(arns)


def test_a_read_waiting_on_other_requests_keeps_its_own_deadline(rig: Rig) -> None:
    # A chain of batches, each leading its first key and waiting on the next batch's: k1's
    # flight ends only when the chain does, one deadline per link. A single read of k1
    # joins that flight, but must end within its own 1 s.
    keys = [f"deadline/chain-k{i}" for i in range(1, 5)]
    rig.proxy.set_fault("delay", delay_ms=1500)
    answers: list[int] = []
    batches = [
        threading.Thread(
            target=lambda chunk=chunk: answers.append(rig.get(SM_BATCH + ids(*chunk))[0])
        )
        for chunk in ([keys[3]], keys[2:4], keys[1:3], keys[0:2])
    ]
    for thread in batches:
        thread.start()
        time.sleep(0.15)  # each batch has opened its flights before the next one starts
    status, body, seconds = rig.timed(secret_path(keys[0]))
    for thread in batches:
        thread.join(timeout=30)
    assert (status, body["__type"]) == (504, "TimeoutException"), body
    assert seconds < 2.0, seconds
    assert answers == [504] * 4


def test_a_trickled_response_head_cannot_outlast_the_deadline(rig: Rig) -> None:
    # About 300 bytes at one every 50 ms is 15 s; the deadline is 1 s for every byte.
    name = "/deadline/trickled"
    _put_parameters(rig.moto, [name])
    rig.proxy.set_fault("trickle", times=1, delay_ms=50)
    status, body, seconds = rig.timed(param_path(name))
    assert (status, body["__type"]) == (504, "TimeoutException"), body
    assert seconds < 3.0, seconds
    status, body = rig.get(param_path(name))  # the next call is not trickled
    assert (status, body["Parameter"]["Value"]) == (200, "deadline-PARAM")


# ---------------------------------------------------------------- batch answers and ids


def test_a_secret_named_like_another_secrets_arn_is_never_taken_for_it(rig: Rig) -> None:
    # Secret A's ARN ends "…:secret:Deadline/db-AbCdEf"; secret B is *named* "Deadline/db-AbCdEf",
    # so B's ARN is A's plus "-XXXXXX": the partial-ARN rule must not give A's id to B.
    sm: Any = rig.moto.boto3_client("secretsmanager")
    arn_a = sm.create_secret(Name="Deadline/db", SecretString="value-of-A")["ARN"]
    name_b = arn_a.split(":secret:", 1)[1]
    sm.create_secret(Name=name_b, SecretString="value-of-B")
    status, body = rig.get(SM_BATCH + ids(name_b, arn_a))
    assert status == 200, body
    by_arn = {item["ARN"]: item["SecretString"] for item in body["SecretValues"]}
    assert by_arn[arn_a] == "value-of-A"
    assert sorted(by_arn.values()) == ["value-of-A", "value-of-B"]
    # The single reads of both ids are hits on what the batch cached: each its own value.
    assert rig.get(secret_path(arn_a))[1]["SecretString"] == "value-of-A"
    assert rig.get(secret_path(name_b))[1]["SecretString"] == "value-of-B"


def test_two_labels_of_one_parameter_are_never_swapped(rig: Rig) -> None:
    # moto echoes no Selector, as AWS documents it does: which answer is which label's
    # cannot be told, so each label is read alone rather than guessed.
    ssm: Any = rig.moto.boto3_client("ssm")
    name = "/deadline/labelled"
    for value in ("label-v1", "label-v2", "label-v3"):
        ssm.put_parameter(Name=name, Value=value, Type="String", Overwrite=True)
    ssm.label_parameter_version(Name=name, ParameterVersion=1, Labels=["one"])
    ssm.label_parameter_version(Name=name, ParameterVersion=2, Labels=["two"])
    status, body = rig.get(SSM_BATCH + ids(f"{name}:one", f"{name}:two", name))
    assert status == 200, body
    values = [(item["Selector"], item["Value"]) for item in body["Parameters"]]
    assert values == [(":one", "label-v1"), (":two", "label-v2"), (None, "label-v3")]
    single = rig.get(param_path(name) + "&label=two")[1]
    assert single["Parameter"]["Value"] == "label-v2"


def test_a_batch_refused_whole_does_not_fail_a_read_that_joined_it(rig: Rig) -> None:
    sm: Any = rig.moto.boto3_client("secretsmanager")
    sm.create_secret(Name="deadline/joiner", SecretString="joiner-VALUE")
    # The batch's call is held 0.6 s, then refused as a whole (as one malformed id would be).
    rig.proxy.set_fault("validation", times=1, hold_ms=600)
    refused: list[tuple[int, dict[str, Any]]] = []
    batch = threading.Thread(
        target=lambda: refused.append(rig.get(SM_BATCH + ids("deadline/joiner", "deadline/other")))
    )
    batch.start()
    time.sleep(0.2)  # the batch leads the flight of deadline/joiner by now
    status, body = rig.get(secret_path("deadline/joiner"))
    batch.join(timeout=30)
    assert (status, body.get("SecretString")) == (200, "joiner-VALUE"), body
    assert [(code, answer["__type"]) for code, answer in refused] == [(400, "ValidationException")]


def test_a_path_over_the_limit_is_refused_from_memory_and_counted_as_local(rig: Rig) -> None:
    path = "/deadline/over/"
    _put_parameters(rig.moto, [f"{path}p{i:02d}" for i in range(MAX_PATH_PARAMETERS + 5)])
    before = rig.metrics()
    pages_before = rig.calls("GetParametersByPath")
    for _ in range(5):
        status, body = rig.get(SSM_PATH + quote(path, safe=""))
        assert (status, body["__type"]) == (400, "InvalidParameterException"), body
        assert f"MAX_PATH_PARAMETERS={MAX_PATH_PARAMETERS}" in body["message"]
    # Telling takes limit/10+1 pages once; the next four are answered without a call.
    assert rig.calls("GetParametersByPath") - pages_before == MAX_PATH_PARAMETERS // 10 + 1
    # A local refusal of the wrong ARN kind reaches no AWS at all.
    status, body = rig.get(secret_path("arn:aws:ssm:us-east-1:123456789012:parameter/x"))
    assert (status, body["__type"]) == (400, "InvalidParameterException")
    after = rig.metrics()
    assert after["UpstreamErrors"] == before["UpstreamErrors"]
    assert after["LocalErrors"] - before["LocalErrors"] == 6
    assert after["UpstreamCalls"] - before["UpstreamCalls"] == 1
    # Back within the limit: refreshNow reads it again, and from then on it is served.
    ssm: Any = rig.moto.boto3_client("ssm")
    ssm.delete_parameters(Names=[f"{path}p{i:02d}" for i in range(10)])
    status, body = rig.get(SSM_PATH + quote(path, safe="") + "&refreshNow=true")
    assert (status, len(body["Parameters"])) == (200, MAX_PATH_PARAMETERS - 5), body
    status, body = rig.get(SSM_PATH + quote(path, safe=""))
    assert (status, len(body["Parameters"])) == (200, MAX_PATH_PARAMETERS - 5), body


def test_a_secrets_batch_too_large_for_one_answer_is_split(
    start_extension: Callable[..., ExtensionProcess], moto: Moto, batch_role: None
) -> None:
    # Each secret escapes to 360 kB ("\u0001" for every byte): twelve pass the 4 MiB one
    # batch answer may have, though each reads fine alone.
    sm: Any = moto.boto3_client("secretsmanager")
    names = [f"deadline/split-{i:02d}" for i in range(12)]
    for index, name in enumerate(names):
        sm.create_secret(Name=name, SecretString=f"{index}:" + "\x01" * 60_000)
    ext = start_extension()
    status, body = _get(ext, SM_BATCH + ids(*names))
    assert status == 200, body
    assert body["Errors"] == []
    values = [item["SecretString"] for item in body["SecretValues"]]
    assert values == [f"{index}:" + "\x01" * 60_000 for index in range(12)]


def _get(ext: ExtensionProcess, path: str) -> tuple[int, Any]:
    return ext.get_json(path)


def _client(moto: Moto, service: str, region: str) -> object:
    import boto3

    return boto3.client(  # type: ignore[call-overload]
        service,
        region_name=region,
        endpoint_url=moto.endpoint,
        aws_access_key_id=moto.access_key,
        aws_secret_access_key=moto.secret_key,
    )
