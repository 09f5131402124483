"""config.load: defaults, every variable, and init errors that name variable, value and range."""

from __future__ import annotations

import pytest

import config
from errors import ConfigError

TOKEN = {"AWS_SESSION_TOKEN": "session-token-fixture"}


def test_defaults_match_spec_section_3() -> None:
    c = config.load(TOKEN)
    assert (c.cache_enabled, c.cache_size, c.http_port, c.log_level) == (True, 1000, 2773, "info")
    assert (c.max_connections, c.secrets_manager_ttl, c.ssm_ttl) == (3, 300, 300)
    assert (c.secrets_manager_timeout_ms, c.ssm_timeout_ms) == (0, 0)
    assert (c.stale_if_error_seconds, c.prefetch, c.runtime_api, c.snapstart) == (
        300,
        (),
        None,
        False,
    )
    assert c.effective_cache_size == 1000


def test_every_variable_is_read() -> None:
    env = {
        **TOKEN,
        "PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED": "FALSE",
        "PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE": "10",
        "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": "8080",
        "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL": "DEBUG",
        "PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS": "7",
        "SECRETS_MANAGER_TTL": "0",
        "SSM_PARAMETER_STORE_TTL": "300",
        "SECRETS_MANAGER_TIMEOUT_MILLIS": "250",
        "SSM_PARAMETER_STORE_TIMEOUT_MILLIS": "100",
        "PARAMETERS_SECRETS_EXTENSION_STALE_IF_ERROR_SECONDS": "0",
        "PARAMETERS_SECRETS_EXTENSION_PREFETCH": (
            "secretsmanager:arn:aws:secretsmanager:us-east-1:1:secret:a, ssm:/p"
        ),
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_USE_FIPS_ENDPOINT": "true",
    }
    c = config.load(env)
    assert (c.cache_enabled, c.cache_size, c.http_port, c.log_level, c.log_json) == (
        False,
        10,
        8080,
        "debug",
        True,
    )
    assert (c.max_connections, c.secrets_manager_ttl, c.ssm_ttl) == (7, 0, 300)
    assert (c.secrets_manager_timeout_ms, c.ssm_timeout_ms, c.stale_if_error_seconds) == (
        250,
        100,
        0,
    )
    assert c.prefetch == (
        ("secretsmanager", "arn:aws:secretsmanager:us-east-1:1:secret:a"),
        ("ssm", "/p"),
    )
    assert (c.runtime_api, c.snapstart, c.aws.region, c.aws.use_fips) == (
        "127.0.0.1:9001",
        True,
        "eu-west-1",
        True,
    )
    assert c.effective_cache_size == 0


@pytest.mark.parametrize(
    ("variable", "value", "valid"),
    [
        ("PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED", "yes", "true or false"),
        ("PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE", "1001", "from 0 to 1000"),
        ("PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE", "-1", "from 0 to 1000"),
        ("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "0", "from 1 to 65535"),
        ("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "65536", "from 1 to 65535"),
        ("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "verbose", "debug, info, warn, error, none"),
        ("PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS", "0", ">= 1"),
        ("SECRETS_MANAGER_TTL", "301", "from 0 to 300"),
        ("SSM_PARAMETER_STORE_TTL", "1.5", "from 0 to 300"),
        ("SECRETS_MANAGER_TIMEOUT_MILLIS", "-5", ">= 0"),
        ("SSM_PARAMETER_STORE_TIMEOUT_MILLIS", "ten", ">= 0"),
        ("PARAMETERS_SECRETS_EXTENSION_PREFETCH", "s3:bucket", "secretsmanager:<secret id>"),
        ("AWS_USE_FIPS_ENDPOINT", "on", "true or false"),
    ],
)
def test_invalid_value_names_variable_value_and_range(
    variable: str, value: str, valid: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load({**TOKEN, variable: value})
    message = str(caught.value)
    assert variable in message
    assert repr(value) in message
    assert valid in message
    assert caught.value.variable == variable


def test_ttls_ignored_when_size_zero_and_size_ignored_when_both_ttls_zero() -> None:
    assert (
        config.load({**TOKEN, "PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE": "0"}).effective_cache_size
        == 0
    )
    both_zero = {**TOKEN, "SECRETS_MANAGER_TTL": "0", "SSM_PARAMETER_STORE_TTL": "0"}
    assert config.load(both_zero).effective_cache_size == 0
    assert config.load({**TOKEN, "SECRETS_MANAGER_TTL": "0"}).effective_cache_size == 1000


def test_token_falls_back_to_container_token_and_is_required() -> None:
    snap = config.load({"AWS_CONTAINER_AUTHORIZATION_TOKEN": "container-token-fixture"})
    assert snap.auth_token == "container-token-fixture"
    with pytest.raises(ConfigError) as caught:
        config.load({})
    assert "AWS_SESSION_TOKEN" in str(caught.value)


def test_secrets_never_appear_in_repr_or_describe() -> None:
    env = {
        **TOKEN,
        "AWS_ACCESS_KEY_ID": "AKIDFIXTURE",
        "AWS_SECRET_ACCESS_KEY": "secret-key-fixture",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": "container-token-fixture",
    }
    c = config.load(env)
    for text in (repr(c), str(c.describe())):
        for secret in (
            "session-token-fixture",
            "AKIDFIXTURE",
            "secret-key-fixture",
            "container-token-fixture",
        ):
            assert secret not in text
