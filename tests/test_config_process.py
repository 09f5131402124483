"""The built extension process with bad settings: it warns, uses a safe value and still serves."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import SECRET_STRING_V2, LambdaCredentials, Moto, free_port
from tests.extension_process import ExtensionProcess, lambda_env
from tests.fake_extensions_api import FakeExtensionsApi

SECRET_PATH = "/secretsmanager/get?secretId="
WARN = "[parameters-secrets-extension] WARN "


def start(
    executable: Path,
    tmp_path: Path,
    moto: Moto,
    creds: LambdaCredentials,
    fake: FakeExtensionsApi,
    **extra: str,
) -> ExtensionProcess:
    env = lambda_env(moto, creds, free_port(), fake.address, **extra)
    return ExtensionProcess(executable, env, tmp_path / "extension.log")


def serve_through_init(fake: FakeExtensionsApi, ext: ExtensionProcess) -> None:
    """Wait for the first `next`, which ends init, then shut the extension down cleanly."""
    if not fake.first_next.wait(20):
        raise AssertionError(f"no first next:\n{ext.output()}")
    fake.shutdown_extension()
    assert ext.proc.wait(timeout=10) == 0, ext.output()
    assert fake.calls.init_errors == [] and fake.calls.exit_errors == []


def warn_lines(ext: ExtensionProcess) -> list[str]:
    return [line for line in ext.output().splitlines() if line.startswith(WARN)]


def test_an_over_range_ttl_is_clamped_with_one_warning_and_init_goes_on(
    extension_executable: Path, tmp_path: Path, moto: Moto, lambda_credentials: LambdaCredentials
) -> None:
    answers: list[tuple[int, dict[str, object]]] = []
    with FakeExtensionsApi() as fake:
        ext = start(
            extension_executable,
            tmp_path,
            moto,
            lambda_credentials,
            fake,
            SECRETS_MANAGER_TTL="600",
        )
        fake.on_first_next = lambda: answers.append(
            ext.get_json(SECRET_PATH + quote(moto.secret_name))
        )
        with ext:
            serve_through_init(fake, ext)
        assert len(fake.calls.registrations) == 1 and len(fake.calls.next_calls) >= 1
        [(status, body)] = answers
        assert status == 200 and body["SecretString"] == SECRET_STRING_V2
        [warning] = warn_lines(ext)
        assert "SECRETS_MANAGER_TTL" in warning and "600" in warning and "300" in warning
        assert "Traceback" not in ext.output()


def test_every_bad_setting_warns_once_and_none_stops_init(
    extension_executable: Path, tmp_path: Path, moto: Moto, lambda_credentials: LambdaCredentials
) -> None:
    bad = {
        "SSM_PARAMETER_STORE_TTL": "5m",
        "PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED": "yes",
        "PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE": "-3",
        "PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS": "0",
        "SECRETS_MANAGER_TIMEOUT_MILLIS": "1.5",
        "PARAMETERS_SECRETS_EXTENSION_PREFETCH": "s3:bucket",
        "AWS_USE_FIPS_ENDPOINT": "maybe",
    }
    with FakeExtensionsApi() as fake:
        ext = start(
            extension_executable,
            tmp_path,
            moto,
            lambda_credentials,
            fake,
            # WARNING, as Python's logging spells it, is read as warn: no warning of its own.
            PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL="WARNING",
            **bad,
        )
        with ext:
            serve_through_init(fake, ext)
        warnings = warn_lines(ext)
        assert len(warnings) == len(bad), ext.output()
        for variable, value in bad.items():
            [line] = [w for w in warnings if variable in w]
            assert value in line and "using" in line
        assert " INFO " not in ext.output()  # the level really is warn


def test_an_invalid_port_is_listened_on_where_its_warning_says(
    extension_executable: Path, tmp_path: Path, moto: Moto, lambda_credentials: LambdaCredentials
) -> None:
    """`+80` is no port in README's 1-65535: boot (which listens before registering) and config
    (which warns after) must read it alike, so the port the warning names is the one served on,
    and the one the INFO line reports."""
    variable = "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.1", 2773))  # where an invalid port falls back to
    except OSError:
        pytest.skip("port 2773 is taken on this machine")
    finally:
        probe.close()
    with FakeExtensionsApi() as fake:
        env = lambda_env(moto, lambda_credentials, 0, fake.address, **{variable: "+80"})
        with ExtensionProcess(extension_executable, env, tmp_path / "extension.log") as ext:
            if not fake.first_next.wait(20):
                raise AssertionError(f"no first next:\n{ext.output()}")
            [warning] = warn_lines(ext)
            assert warning == (
                f"{WARN}{variable}=+80 is not a port number from 1 to 65535; using the default 2773"
            ), ext.output()
            assert "port 2773," in ext.output()
            ext.port = 2773
            assert ext.get("/ping", token=None)[0] == 200, ext.output()
            fake.shutdown_extension()
            assert ext.proc.wait(timeout=10) == 0, ext.output()
