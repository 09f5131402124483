"""GET /secretsmanager/<id> and the X-Vault-Token header, against the real process from the
built layer and moto: the path route answers as the query route does, from the same cache
entry; names that are routes of their own are refused on it; either token header works, and
two different tokens are refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import SECRET_STRING, SECRET_STRING_V2, LambdaCredentials, Moto
from tests.extension_process import TOKEN_HEADER, ExtensionProcess
from tests.hardening_support import param_path, secret_path, serving_standalone

PLUS_NAME = "path-route/team+app"  # '+' is literal in a path, a space in a query
PLUS_VALUE = "path-route-PLUS-value"
VAULT = "X-Vault-Token"


@pytest.fixture(scope="module")
def ext(
    extension_executable: Path,
    tmp_path_factory: pytest.TempPathFactory,
    moto: Moto,
    lambda_credentials: LambdaCredentials,
) -> Iterator[ExtensionProcess]:
    sm: Any = moto.boto3_client("secretsmanager")
    sm.create_secret(Name=PLUS_NAME, SecretString=PLUS_VALUE)
    log_path = tmp_path_factory.mktemp("path-route") / "extension.log"
    with serving_standalone(extension_executable, log_path, moto, lambda_credentials) as process:
        yield process


def counters(ext: ExtensionProcess) -> Any:
    status, body = ext.get_json("/metrics")
    assert status == 200, body
    return body


def test_the_path_route_answers_as_the_query_route_from_the_same_entry(
    ext: ExtensionProcess, moto: Moto
) -> None:
    by_query = ext.get(secret_path(moto.secret_name) + "&refreshNow=true")
    assert by_query[0] == 200
    before = counters(ext)
    for path in ("/secretsmanager/app/db-credentials", "/secretsmanager/app%2Fdb-credentials"):
        status, _, body = ext.get(path)
        assert (status, body) == (200, by_query[2]), path
        assert json.loads(body)["SecretString"] == SECRET_STRING_V2
    after = counters(ext)
    # Both path reads were hits on the query route's entry: no call to AWS.
    assert after["Hits"] - before["Hits"] == 2
    assert after["UpstreamCalls"] == before["UpstreamCalls"]


def test_the_path_route_takes_the_query_routes_parameters(
    ext: ExtensionProcess, moto: Moto
) -> None:
    base = "/secretsmanager/" + moto.secret_name
    cases = {
        f"?versionId={moto.secret_v1}": SECRET_STRING,
        "?versionStage=AWSPREVIOUS": SECRET_STRING,
        "?versionStage=AWSCURRENT&refreshNow=true": SECRET_STRING_V2,
    }
    for query, value in cases.items():
        status, body = ext.get_json(base + query)
        assert (status, body.get("SecretString")) == (200, value), (query, body)
    status, body = ext.get_json(base + "?refreshNow=maybe")
    assert (status, body["__type"]) == (400, "InvalidParameterException")
    status, body = ext.get_json("/secretsmanager/" + moto.secret_arn)
    assert (status, body["Name"]) == (200, moto.secret_name)


def test_a_plus_in_the_path_is_a_plus(ext: ExtensionProcess) -> None:
    status, body = ext.get_json("/secretsmanager/" + PLUS_NAME)
    assert (status, body["Name"], body["SecretString"]) == (200, PLUS_NAME, PLUS_VALUE)
    status, body = ext.get_json("/secretsmanager/" + quote(PLUS_NAME, safe=""))
    assert (status, body["SecretString"]) == (200, PLUS_VALUE)


@pytest.mark.parametrize(
    ("path", "status", "error_type", "message_part"),
    [
        # The query routes keep their paths: these are the query routes, not secret "get".
        ("/secretsmanager/get", 400, "MissingParameterException", "secretId is required"),
        ("/secretsmanager/batch", 400, "MissingParameterException", "secretIds is required"),
        # A secret named like a route, asked for by path: refused, naming the query route.
        ("/secretsmanager/%67et", 400, "InvalidParameterException", "?secretId=get"),
        ("/secretsmanager/%62atch", 400, "InvalidParameterException", "?secretId=batch"),
        # The routes with a trailing slash stay unknown paths, as on the AWS extension.
        ("/secretsmanager/get/", 404, "NotFoundException", "unknown path"),
        ("/secretsmanager/batch/", 404, "NotFoundException", "unknown path"),
        ("/secretsmanager/", 400, "MissingParameterException", "secret id"),
        ("/secretsmanager/app/db-credentials?secretId=x", 400, "InvalidParameterException", ""),
        ("/secretsmanager/%ff%fe", 400, "InvalidParameterException", "UTF-8"),
        ("/secretsmanager/path-route/nope", 404, "ResourceNotFoundException", ""),
    ],
)
def test_what_each_path_under_secretsmanager_answers(
    ext: ExtensionProcess, path: str, status: int, error_type: str, message_part: str
) -> None:
    got, body = ext.get_json(path)
    assert (got, body["__type"]) == (status, error_type), body
    assert message_part in body["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/secretsmanager/app/db-credentials",
        "/secretsmanager/get?secretId=app%2Fdb-credentials",
        "/systemsmanager/parameters/get?name=%2Fapp%2Fplain",
        "/metrics",
    ],
)
def test_x_vault_token_is_the_same_token(ext: ExtensionProcess, path: str) -> None:
    assert ext.token is not None
    assert ext.get(path, token=None, headers={VAULT: ext.token})[0] == 200
    assert ext.get(path, token=None, headers={VAULT: ext.token + "x"})[0] == 401
    assert ext.get(path, token=None)[0] == 401
    assert ext.get(path, headers={VAULT: ext.token})[0] == 200  # both, the same: fine


@pytest.mark.parametrize("right", [TOKEN_HEADER, VAULT])
def test_two_different_tokens_are_refused_whichever_is_right(
    ext: ExtensionProcess, moto: Moto, right: str
) -> None:
    assert ext.token is not None
    wrong = VAULT if right == TOKEN_HEADER else TOKEN_HEADER
    headers = {right: ext.token, wrong: "not-the-token"}
    for path in (secret_path(moto.secret_name), param_path(moto.param_string)):
        status, body = ext.get_json(path, token=None, headers=headers)
        assert (status, body["__type"]) == (401, "UnauthorizedException")
        assert body["message"] == "X-Aws-Parameters-Secrets-Token and X-Vault-Token differ"
        assert ext.token not in body["message"]
    assert ext.token not in ext.output()
