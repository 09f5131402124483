"""A secret's VersionId as the version of a Secrets Manager reference parameter
(/aws/reference/secretsmanager/<secret>), against moto with signature checks: the single
read through the real process, the batch read through the in-process server. Other names
keep "version must be a positive whole number"."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from parameters_secrets_extension.errors import InvalidParameter
from parameters_secrets_extension.parameter_names import parameter_name
from tests.conftest import SECRET_STRING, SECRET_STRING_V2, LambdaCredentials, Moto
from tests.extension_process import ExtensionProcess
from tests.hardening_support import serving_standalone
from tests.test_local_server import get, moto_config, serving

REFERENCE = "/aws/reference/secretsmanager/"
# A secret whose first version's id starts with a digit, as about 10 in 16 UUIDs do: the
# batch route's `name:selector` split must not take it for a version number.
DIGIT_SECRET = "reference-versions/digit"
DIGIT_VERSION = "1a2b3c4d-0000-4000-8000-00000000000a"
DIGIT_VALUE_1 = "reference-DIGIT-one"
DIGIT_VALUE_2 = "reference-DIGIT-two"
NOT_A_NUMBER = "version must be a positive whole number"
NOT_A_VERSION_ID = (
    "version of a Secrets Manager reference must be a positive whole number or a"
    " secret's VersionId (32 to 64 letters, digits and hyphens)"
)


@pytest.fixture(scope="module")
def ext(
    extension_executable: Path,
    tmp_path_factory: pytest.TempPathFactory,
    moto: Moto,
    lambda_credentials: LambdaCredentials,
) -> Iterator[ExtensionProcess]:
    sm: Any = moto.boto3_client("secretsmanager")
    sm.create_secret(
        Name=DIGIT_SECRET, SecretString=DIGIT_VALUE_1, ClientRequestToken=DIGIT_VERSION
    )
    sm.put_secret_value(SecretId=DIGIT_SECRET, SecretString=DIGIT_VALUE_2)
    log_path = tmp_path_factory.mktemp("reference-versions") / "extension.log"
    with serving_standalone(extension_executable, log_path, moto, lambda_credentials) as process:
        yield process


def reference_read(name: str, version: str) -> str:
    return (
        f"/systemsmanager/parameters/get?name={quote(REFERENCE + name, safe='')}"
        f"&version={quote(version, safe='')}&withDecryption=true"
    )


def test_a_secret_version_id_reads_that_version(ext: ExtensionProcess, moto: Moto) -> None:
    cases = [
        (moto.secret_name, moto.secret_v1, SECRET_STRING),
        (moto.secret_name, moto.secret_v2, SECRET_STRING_V2),
        (DIGIT_SECRET, DIGIT_VERSION, DIGIT_VALUE_1),
    ]
    for name, version, value in cases:
        status, body = ext.get_json(reference_read(name, version))
        assert status == 200, body
        assert body["Parameter"]["Value"] == value, (name, version)
        assert body["Parameter"]["Selector"] == ":" + version
    # Without a version, the current one, as before.
    status, body = ext.get_json(
        f"/systemsmanager/parameters/get?name={quote(REFERENCE + DIGIT_SECRET, safe='')}"
        "&withDecryption=true",
    )
    assert (status, body["Parameter"]["Value"]) == (200, DIGIT_VALUE_2)


@pytest.mark.parametrize(
    "version",
    [
        "abc",  # too short
        "a" * 31,
        "a" * 65,  # too long
        "1a2b3c4d-0000-4000-8000-00000000000a:x",  # ':' would split the name again
        "1a2b3c4d/0000-4000-8000-00000000000a",
        "1a2b3c4d 0000-4000-8000-00000000000a",
        "0",
    ],
)
def test_a_bad_version_id_is_a_400(ext: ExtensionProcess, moto: Moto, version: str) -> None:
    status, body = ext.get_json(reference_read(moto.secret_name, version))
    assert (status, body["__type"], body["message"]) == (
        400,
        "InvalidParameterException",
        NOT_A_VERSION_ID,
    )


def test_other_names_still_take_only_a_version_number(ext: ExtensionProcess, moto: Moto) -> None:
    for name in (moto.param_string, "/aws/reference/other/x", "/aws/reference/secretsmanager"):
        target = (
            f"/systemsmanager/parameters/get?name={quote(name, safe='')}&version={moto.secret_v1}"
        )
        status, body = ext.get_json(target)
        assert (status, body["message"]) == (400, NOT_A_NUMBER), name


def test_the_batch_route_takes_a_version_id_that_starts_with_a_digit(
    ext: ExtensionProcess, moto: Moto
) -> None:
    # ext made the secret; the in-process server reads it with the admin's keys.
    names = [
        f"{REFERENCE}{DIGIT_SECRET}:{DIGIT_VERSION}",
        f"{REFERENCE}{moto.secret_name}:{moto.secret_v1}",
    ]
    target = "/systemsmanager/parameters/batch?withDecryption=true&names=" + ",".join(
        quote(name, safe="") for name in names
    )
    with serving(moto_config(moto)) as served:
        response = get(served.port, target)
    assert response.status == 200, response.body
    body = json.loads(response.body)
    assert body["InvalidParameters"] == []
    values = {item["Selector"]: item["Value"] for item in body["Parameters"]}
    assert values == {":" + DIGIT_VERSION: DIGIT_VALUE_1, ":" + moto.secret_v1: SECRET_STRING}


def test_the_split_of_a_requested_name() -> None:
    entry = parameter_name(f"{REFERENCE}app:{DIGIT_VERSION}")
    assert (entry.name, entry.version, entry.label) == (REFERENCE + "app", None, DIGIT_VERSION)
    assert parameter_name(f"{REFERENCE}app:12")[1:] == (REFERENCE + "app", 12, None)
    with pytest.raises(InvalidParameter, match=NOT_A_NUMBER):
        parameter_name(f"/app/plain:{DIGIT_VERSION}")
