"""Upstream failures in the real extension's log: one line each, at the right level, summarised
when repeated, and never a value, token or key. The process runs from the built layer against
the signature-checking moto server."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PARAM_SECURE, SECRET_STRING, LambdaCredentials, Moto
from tests.extension_process import ExtensionProcess
from tests.hardening_support import param_path, secret_path, serving_standalone, start_standalone
from tests.raw_server import RawServer, hang

LINE = re.compile(r"^\[parameters-secrets-extension\] (DEBUG|INFO|WARN|ERROR) (.*)$")


def upstream_lines(ext: ExtensionProcess, ident: str) -> list[tuple[str, str]]:
    """(level, message) of each upstream-failure line naming `ident`."""
    found = []
    for line in ext.output().splitlines():
        match = LINE.match(line)
        if match and match.group(2).startswith("upstream ") and f" id={ident} " in line:
            found.append((match.group(1), match.group(2)))
    return found


@pytest.fixture(scope="module")
def admin_ext(
    extension_executable: Path,
    tmp_path_factory: pytest.TempPathFactory,
    moto: Moto,
    lambda_credentials: LambdaCredentials,
) -> Iterator[ExtensionProcess]:
    log_path = tmp_path_factory.mktemp("upstream-logging") / "extension.log"
    with serving_standalone(extension_executable, log_path, moto, lambda_credentials) as ext:
        yield ext


def test_a_missing_secret_gives_one_warn_line(admin_ext: ExtensionProcess) -> None:
    status, body = admin_ext.get_json(secret_path("logging/missing-once"))
    # AWS answers 400 here and moto 404: the log carries whichever came.
    assert status in (400, 404)
    assert body["__type"] == "ResourceNotFoundException"
    [(level, message)] = upstream_lines(admin_ext, "logging/missing-once")
    assert level == "WARN"
    assert message.startswith("upstream GetSecretValue failed: id=logging/missing-once ")
    assert f" type=ResourceNotFoundException status={status} " in message
    assert re.search(r" attempts=1 duration_ms=\d+", message)  # not found is not retried


def test_a_missing_parameter_gives_one_warn_line(admin_ext: ExtensionProcess) -> None:
    status, body = admin_ext.get_json(param_path("/logging/missing") + "&version=7")
    assert (status, body["__type"]) == (400, "ParameterNotFound")
    [(level, message)] = upstream_lines(admin_ext, "/logging/missing")
    assert level == "WARN"
    assert " version=7 type=ParameterNotFound status=400 " in message


def test_a_client_hammering_a_missing_secret_does_not_flood_the_log(
    admin_ext: ExtensionProcess,
) -> None:
    for _ in range(50):
        _, body = admin_ext.get_json(secret_path("logging/hammered"))
        assert body["__type"] == "ResourceNotFoundException"
    assert 1 <= len(upstream_lines(admin_ext, "logging/hammered")) <= 3


def test_access_denied_is_an_error_line(
    extension_executable: Path, tmp_path: Path, moto: Moto
) -> None:
    # The limited user may read parameters but not secrets. With no session token, the
    # container token is what a function presents to the extension.
    limited = LambdaCredentials(moto.limited_access_key, moto.limited_secret_key, "")
    with start_standalone(
        extension_executable,
        tmp_path / "extension.log",
        moto,
        limited,
        AWS_CONTAINER_AUTHORIZATION_TOKEN="limited-local-TOKEN",
    ) as ext:
        status, body = ext.get_json(secret_path(moto.secret_name))
        # AWS says AccessDeniedException with 400, moto AccessDenied with 403.
        assert status in (400, 403)
        assert body["__type"] in ("AccessDeniedException", "AccessDenied")
        assert ext.get_json(param_path(moto.param_string))[0] == 200
        [(level, message)] = upstream_lines(ext, moto.secret_name)
        assert level == "ERROR"
        assert f" type={body['__type']} status={status} " in message
        output = ext.output()
        assert upstream_lines(ext, moto.param_string) == []
        for secret in ("limited-local-TOKEN", moto.limited_secret_key, moto.limited_access_key):
            assert secret not in output


def test_no_line_holds_a_value_a_token_or_a_key(
    admin_ext: ExtensionProcess, moto: Moto, lambda_credentials: LambdaCredentials
) -> None:
    # Values do pass through the process: successes, then failures for the same names.
    assert admin_ext.get_json(secret_path(moto.secret_name))[0] == 200
    assert admin_ext.get_json(param_path(moto.param_secure) + "&withDecryption=true")[0] == 200
    assert admin_ext.get_json(secret_path(moto.secret_name) + "&versionId=no-such")[0] >= 400
    assert upstream_lines(admin_ext, moto.secret_name), "the failure was not logged"
    output = admin_ext.output()
    assert admin_ext.token is not None
    for secret in (
        SECRET_STRING,
        "s3cr3t-VALUE",
        PARAM_SECURE,
        admin_ext.token,
        lambda_credentials.session_token,
        lambda_credentials.secret_key,
        lambda_credentials.access_key,
    ):
        assert secret not in output


def test_a_hanging_credentials_provider_costs_each_request_only_its_timeout(
    extension_executable: Path, tmp_path: Path, moto: Moto
) -> None:
    # What SnapStart functions see: no keys in the environment, only the container provider.
    no_keys = LambdaCredentials("", "", "")
    with (
        RawServer(hang) as provider,
        start_standalone(
            extension_executable,
            tmp_path / "extension.log",
            moto,
            no_keys,
            AWS_CONTAINER_CREDENTIALS_FULL_URI=provider.uri,
            AWS_CONTAINER_AUTHORIZATION_TOKEN="container-local-TOKEN",
            SECRETS_MANAGER_TIMEOUT_MILLIS="1000",
        ) as ext,
    ):
        results: list[tuple[int, str, float]] = []

        def request(name: str) -> None:
            started = time.monotonic()
            status, body = ext.get_json(secret_path(name))
            results.append((status, str(body["__type"]), time.monotonic() - started))

        # Four names, so that four fetches (not one shared by the cache) wait for credentials.
        names = [f"logging/needs-credentials-{n}" for n in range(4)]
        threads = [threading.Thread(target=request, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len(results) == 4
        for status, error_type, elapsed in results:
            assert (status, error_type) == (504, "TimeoutException")
            assert elapsed < 1.6, elapsed  # each its own 1 s, not a queue of them
        for name in names:
            [(level, message)] = upstream_lines(ext, name)
            assert level == "ERROR"
            assert " type=TimeoutException status=504 " in message
        assert "container-local-TOKEN" not in ext.output()
