"""config.load: defaults, every variable, and the warning and value used for each bad one."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from parameters_secrets_extension import config
from parameters_secrets_extension.errors import ConfigError
from parameters_secrets_extension.lambda_api import boot, lifecycle

TOKEN = {"AWS_SESSION_TOKEN": "session-token-fixture"}


def test_defaults() -> None:
    c = config.load(TOKEN)
    assert (c.cache_enabled, c.cache_size, c.http_port, c.log_level) == (True, 1000, 2773, "info")
    assert (c.max_connections, c.secrets_manager_ttl, c.ssm_ttl) == (3, 300, 300)
    assert (c.secrets_manager_timeout_ms, c.ssm_timeout_ms) == (0, 0)
    assert (c.stale_if_error_seconds, c.prefetch, c.snapstart) == (300, (), False)
    assert (c.refresh_ahead_percent, c.metrics) == (10, "off")
    assert c.effective_cache_size == 1000


@pytest.mark.parametrize(
    ("initialization_type", "snapstart"),
    [
        ("on-demand", False),
        ("provisioned-concurrency", False),
        ("snap-start", True),
        ("", False),  # not on Lambda, or a type we do not know
    ],
)
def test_the_initialization_type_says_snapstart(initialization_type: str, snapstart: bool) -> None:
    c = config.load({**TOKEN, "AWS_LAMBDA_INITIALIZATION_TYPE": initialization_type})
    assert c.snapstart == snapstart


def test_each_service_names_the_setting_its_timeout_variable_sets() -> None:
    from parameters_secrets_extension.services import SERVICES

    for number, service in enumerate(SERVICES, start=1):
        loaded = config.load({**TOKEN, service.timeout_variable: str(1000 * number)})
        assert getattr(loaded, service.timeout_setting) == 1000 * number
        others = [other for other in SERVICES if other is not service]
        assert all(getattr(loaded, other.timeout_setting) == 0 for other in others)


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
        "PARAMETERS_SECRETS_EXTENSION_NEGATIVE_TTL_SECONDS": "60",
        "PARAMETERS_SECRETS_EXTENSION_PREFETCH": (
            "secretsmanager:arn:aws:secretsmanager:us-east-1:1:secret:a, ssm:/p"
        ),
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_USE_FIPS_ENDPOINT": "true",
        "PARAMETERS_SECRETS_EXTENSION_REFRESH_AHEAD_PERCENT": "25",
        "PARAMETERS_SECRETS_EXTENSION_METRICS": "EMF",
    }
    c = config.load(env)
    assert (c.refresh_ahead_percent, c.metrics, c.warnings) == (25, "emf", ())
    assert c.negative_ttl_seconds == 60
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
    assert (c.snapstart, c.aws.region, c.aws.use_fips) == (
        True,
        "eu-west-1",
        True,
    )
    assert c.effective_cache_size == 0


# Every whole-number setting: variable, attribute, default, minimum, maximum.
NUMBERS = [
    ("PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE", "cache_size", 1000, 0, 1000),
    ("PARAMETERS_SECRETS_EXTENSION_CACHE_MAX_MB", "cache_max_mb", 32, 1, 1024),
    ("PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS", "max_connections", 3, 1, 100),
    ("SECRETS_MANAGER_TTL", "secrets_manager_ttl", 300, 0, 300),
    ("SSM_PARAMETER_STORE_TTL", "ssm_ttl", 300, 0, 300),
    ("SECRETS_MANAGER_TIMEOUT_MILLIS", "secrets_manager_timeout_ms", 0, 0, 900_000),
    ("SSM_PARAMETER_STORE_TIMEOUT_MILLIS", "ssm_timeout_ms", 0, 0, 900_000),
    (
        "PARAMETERS_SECRETS_EXTENSION_STALE_IF_ERROR_SECONDS",
        "stale_if_error_seconds",
        300,
        0,
        86400,
    ),
    ("PARAMETERS_SECRETS_EXTENSION_NEGATIVE_TTL_SECONDS", "negative_ttl_seconds", 5, 0, 300),
    ("PARAMETERS_SECRETS_EXTENSION_PREFETCH_TIMEOUT_MILLIS", "prefetch_timeout_ms", 2000, 0, 60000),
    ("PARAMETERS_SECRETS_EXTENSION_MAX_CLIENT_CONNECTIONS", "max_client_connections", 256, 1, 4096),
    ("PARAMETERS_SECRETS_EXTENSION_IDLE_TIMEOUT_SECONDS", "idle_timeout_seconds", 60, 1, 3600),
    ("PARAMETERS_SECRETS_EXTENSION_REFRESH_AHEAD_PERCENT", "refresh_ahead_percent", 10, 0, 50),
    ("PARAMETERS_SECRETS_EXTENSION_MAX_PATH_PARAMETERS", "max_path_parameters", 500, 1, 10_000),
    ("PARAMETERS_SECRETS_EXTENSION_MAX_TTL_SECONDS", "max_ttl_seconds", 300, 300, 3600),
    (
        "PARAMETERS_SECRETS_EXTENSION_METRICS_INTERVAL_SECONDS",
        "metrics_interval_seconds",
        60,
        1,
        3600,
    ),
]
NUMBER_IDS = [row[0] for row in NUMBERS]


def one_warning(env: dict[str, str]) -> tuple[config.Config, str]:
    c = config.load({**TOKEN, **env})
    assert len(c.warnings) == 1, c.warnings
    return c, c.warnings[0]


@pytest.mark.parametrize(
    ("variable", "attribute", "default", "low", "high"), NUMBERS, ids=NUMBER_IDS
)
def test_numbers_in_range_are_read_without_warning(
    variable: str, attribute: str, default: int, low: int, high: int
) -> None:
    for value in (low, high, (low + high) // 2):
        c = config.load({**TOKEN, variable: f" {value} "})
        assert (getattr(c, attribute), c.warnings) == (value, ())
    c = config.load(TOKEN)
    assert (getattr(c, attribute), c.warnings) == (default, ())


@pytest.mark.parametrize(
    ("variable", "attribute", "default", "low", "high"), NUMBERS, ids=NUMBER_IDS
)
def test_numbers_out_of_range_are_clamped_with_one_warning(
    variable: str, attribute: str, default: int, low: int, high: int
) -> None:
    c, warning = one_warning({variable: str(high + 1)})
    assert getattr(c, attribute) == high
    assert warning == f"{variable}={high + 1} is above the maximum {high}; using {high}"
    c, warning = one_warning({variable: str(low - 1)})
    assert getattr(c, attribute) == low
    assert warning == f"{variable}={low - 1} is below the minimum {low}; using {low}"
    c, warning = one_warning({variable: "9" * 5000})  # longer than int() takes by default
    assert getattr(c, attribute) == high
    assert warning.endswith(f"is above the maximum {high}; using {high}")
    c, warning = one_warning({variable: "-" + "9" * 40})
    assert getattr(c, attribute) == low


@pytest.mark.parametrize(
    ("variable", "attribute", "default"), [row[:3] for row in NUMBERS], ids=NUMBER_IDS
)
@pytest.mark.parametrize("value", ["5m", "1.5", "ten", "0x10", "\uff11\uff12", "--1"])
def test_unparseable_numbers_use_the_default_with_one_warning(
    variable: str, attribute: str, default: int, value: str
) -> None:
    c, warning = one_warning({variable: value})
    assert getattr(c, attribute) == default
    assert warning == f"{variable}={value} is not a whole number; using the default {default}"


MAX_TTL = "PARAMETERS_SECRETS_EXTENSION_MAX_TTL_SECONDS"


@pytest.mark.parametrize("variable", ["SECRETS_MANAGER_TTL", "SSM_PARAMETER_STORE_TTL"])
def test_a_ttl_past_300_s_only_with_the_opt_in(variable: str) -> None:
    attribute = "secrets_manager_ttl" if variable == "SECRETS_MANAGER_TTL" else "ssm_ttl"
    # Without it, a TTL keeps the AWS extension's meaning: clamped to 300 s, as it warns.
    c, warning = one_warning({variable: "900"})
    assert (getattr(c, attribute), c.max_ttl_seconds) == (300, 300)
    assert warning == f"{variable}=900 is above the maximum 300; using 300"
    # With it, up to the cap it sets, and clamped to that cap past it.
    c = config.load({**TOKEN, MAX_TTL: "3600", variable: "900"})
    assert (getattr(c, attribute), c.warnings) == (900, ())
    c, warning = one_warning({MAX_TTL: "1200", variable: "3600"})
    assert getattr(c, attribute) == 1200
    assert warning == f"{variable}=3600 is above the maximum 1200; using 1200"
    # A cap past an hour is an hour; a TTL under 300 s is untouched by the opt-in.
    c = config.load({**TOKEN, MAX_TTL: "86400", variable: "7200"})
    assert (getattr(c, attribute), c.max_ttl_seconds) == (3600, 3600)
    assert c.warnings == (
        f"{MAX_TTL}=86400 is above the maximum 3600; using 3600",
        f"{variable}=7200 is above the maximum 3600; using 3600",
    )
    c = config.load({**TOKEN, MAX_TTL: "3600", variable: "60"})
    assert (getattr(c, attribute), c.warnings) == (60, ())
    # A cap that cannot be read is the default: the AWS extension's 300 s.
    c = config.load({**TOKEN, MAX_TTL: "1h", variable: "900"})
    assert getattr(c, attribute) == 300
    assert c.warnings == (
        f"{MAX_TTL}=1h is not a whole number; using the default 300",
        f"{variable}=900 is above the maximum 300; using 300",
    )


@pytest.mark.parametrize(
    ("variable", "attribute", "default"),
    [
        ("PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED", "cache_enabled", True),
        ("AWS_USE_FIPS_ENDPOINT", "use_fips", False),
    ],
)
def test_flags_any_case_and_unparseable_ones_use_the_default(
    variable: str, attribute: str, default: bool
) -> None:
    def read(value: str) -> tuple[object, tuple[str, ...]]:
        c = config.load({**TOKEN, variable: value})
        holder = c.aws if attribute == "use_fips" else c
        return getattr(holder, attribute), c.warnings

    for value, expected in (("TRUE", True), ("true", True), ("False", False), (" false ", False)):
        assert read(value) == (expected, ())
    for value in ("yes", "1", "on", "truex"):
        used, warnings = read(value)
        assert used is default
        assert warnings == (
            f"{variable}={value} is not true or false; using the default {str(default).lower()}",
        )


def test_port_out_of_range_or_unparseable_uses_the_default() -> None:
    variable = "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"
    for value in ("1", "65535", "8080"):
        c = config.load({**TOKEN, variable: value})
        assert (c.http_port, c.warnings) == (int(value), ())
    for value in ("0", "65536", "-1", "http", "80.5", "+80", "\u0668\u0660", "9" * 5000):
        c, warning = one_warning({variable: value})
        assert c.http_port == 2773
        assert warning == (
            f"{variable}={config._show(value)} is not a port number from 1 to 65535;"
            " using the default 2773"
        )
    # Blanks around it and leading zeros are allowed, as boot allows them to listen.
    for value, port in ((" 8080 ", 8080), ("0080", 80), ("000000065535", 65535)):
        assert (config.load({**TOKEN, variable: value}).http_port, port) == (port, port)


def test_the_port_is_parsed_once_for_boot_and_config() -> None:
    """boot listens on `http_port(value) or DEFAULT_PORT` before config is read: config must
    report that same port, and warn exactly when it differs from the value given."""
    assert vars(boot)["http_port"] is lifecycle.http_port  # boot listens where it says
    variable = "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"
    for value in ("1", " 443", "65535", "0", "+80", "-80", "80.0", "0x50", "1_000", "65536"):
        listened = lifecycle.http_port(value) or lifecycle.DEFAULT_PORT
        c = config.load({**TOKEN, variable: value})
        assert c.http_port == listened
        assert bool(c.warnings) == (lifecycle.http_port(value) is None), value


@pytest.mark.parametrize(
    ("value", "level"),
    [
        ("DEBUG", "debug"),
        ("Info", "info"),
        ("warn", "warn"),
        ("WARNING", "warn"),
        ("Error", "error"),
        ("NONE", "none"),
    ],
)
def test_log_levels_any_case_and_warning_means_warn(value: str, level: str) -> None:
    c = config.load({**TOKEN, "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL": value})
    assert (c.log_level, c.warnings) == (level, ())


@pytest.mark.parametrize("value", ["verbose", "trace", "5", "infoo"])
def test_unknown_log_level_uses_info_with_one_warning(value: str) -> None:
    variable = "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL"
    c, warning = one_warning({variable: value})
    assert c.log_level == "info"
    assert warning == (
        f"{variable}={value} is not one of debug, info, warn, error, none; using the default info"
    )


def test_malformed_prefetch_items_are_skipped_and_the_others_kept() -> None:
    variable = "PARAMETERS_SECRETS_EXTENSION_PREFETCH"
    c, warning = one_warning(
        {variable: "secretsmanager:a, s3:bucket ,ssm:/p,,ssm:, ssm:arn:aws:ssm:x:1:parameter/q"}
    )
    assert c.prefetch == (
        ("secretsmanager", "a"),
        ("ssm", "/p"),
        ("ssm", "arn:aws:ssm:x:1:parameter/q"),
    )
    assert warning.startswith(f"{variable} items s3:bucket, ssm: are not ")
    assert warning.endswith("skipping them, using the other 3")
    c, warning = one_warning({variable: ",".join(f"junk{i}" for i in range(8))})
    assert c.prefetch == ()
    assert "junk4" in warning and "junk5" not in warning and "and 3 more" in warning


def test_prefetch_is_capped() -> None:
    variable = "PARAMETERS_SECRETS_EXTENSION_PREFETCH"
    items = [f"ssm:/p{i}" for i in range(config.MAX_PREFETCH + 5)]
    c, warning = one_warning({variable: ",".join(items)})
    assert c.prefetch == tuple(("ssm", f"/p{i}") for i in range(config.MAX_PREFETCH))
    assert warning == (
        f"{variable} lists {config.MAX_PREFETCH + 5} items, above the maximum"
        f" {config.MAX_PREFETCH}; using the first {config.MAX_PREFETCH}"
    )


@pytest.mark.parametrize("value", ["cloudwatch", "on", "true", "emf,json"])
def test_an_unknown_metrics_output_is_off_with_one_warning(value: str) -> None:
    c, warning = one_warning({"PARAMETERS_SECRETS_EXTENSION_METRICS": value})
    assert c.metrics == "off"
    assert warning.startswith(f"PARAMETERS_SECRETS_EXTENSION_METRICS={value} is not one of")
    assert warning.endswith("off, emf; using the default off")
    assert config.load({**TOKEN, "PARAMETERS_SECRETS_EXTENSION_METRICS": " Off "}).metrics == "off"


def test_empty_or_blank_values_mean_unset_without_warning() -> None:
    env = {**TOKEN, **{variable: "" for variable, *_ in NUMBERS}}
    env.update({"PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL": "  ", "SECRETS_MANAGER_TTL": " \t"})
    c = config.load(env)
    assert (c.warnings, c.secrets_manager_ttl, c.log_level) == ((), 300, "info")


def test_each_bad_variable_gives_exactly_one_warning_naming_it() -> None:
    bad = {
        "SECRETS_MANAGER_TTL": "600",
        "SSM_PARAMETER_STORE_TTL": "5m",
        "PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED": "yes",
        "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL": "loud",
        "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": "99999",
        "PARAMETERS_SECRETS_EXTENSION_PREFETCH": "s3:x",
        "PARAMETERS_SECRETS_EXTENSION_METRICS": "prometheus",
        "PARAMETERS_SECRETS_EXTENSION_REFRESH_AHEAD_PERCENT": "80",
    }
    c = config.load({**TOKEN, **bad})
    assert len(c.warnings) == len(bad)
    for variable, value in bad.items():
        [line] = [
            w for w in c.warnings if w.startswith(variable + "=") or w.startswith(variable + " ")
        ]
        assert value in line and "using" in line


def test_a_warning_shows_a_strange_value_quoted_and_short() -> None:
    c, warning = one_warning({"SECRETS_MANAGER_TTL": "5 m\n\x1b[31m"})
    assert warning.startswith("SECRETS_MANAGER_TTL='5 m\\n\\x1b[31m' is not a whole number")
    assert "\n" not in warning and "\x1b" not in warning
    assert c.secrets_manager_ttl == 300
    _, warning = one_warning({"SECRETS_MANAGER_TTL": "x" * 10_000})
    assert len(warning) < 200


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


def test_a_blank_token_is_no_token() -> None:
    with pytest.raises(ConfigError) as caught:
        config.load({"AWS_SESSION_TOKEN": "  ", "SECRETS_MANAGER_TTL": "600"})
    assert caught.value.variable == "AWS_SESSION_TOKEN"


def test_userinfo_in_endpoint_urls_is_never_shown() -> None:
    env = {
        **TOKEN,
        "AWS_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": "http://user:pa55word@127.0.0.1:4566/base",
        "AWS_ENDPOINT_URL_SSM": "https://ssm-user:ssm-pa55@[::1]:8443",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://cred-user:cred-pa55@169.254.170.2/v1",
    }
    c = config.load(env)
    described = c.describe()
    aws = described["aws"]
    assert isinstance(aws, dict)
    assert aws["endpoint_url"] == "http://<redacted>@127.0.0.1:4566/base"
    assert aws["endpoint_url_ssm"] == "https://<redacted>@[::1]:8443"
    assert aws["container_credentials_full_uri"] == "http://<redacted>@169.254.170.2/v1"
    summary = c.summary()
    assert "endpoints secretsmanager 127.0.0.1:4566 ssm [::1]:8443" in summary
    for text in (str(described), summary, repr(c)):
        for secret in ("pa55", "user", "session-token-fixture"):
            assert secret not in text


def test_summary_has_the_effective_settings() -> None:
    env = {
        **TOKEN,
        "AWS_DEFAULT_REGION": "ap-south-1",
        "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": "8080",
        "PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE": "50",
        "SECRETS_MANAGER_TTL": "600",
        "SSM_PARAMETER_STORE_TTL": "20",
        "PARAMETERS_SECRETS_EXTENSION_PREFETCH": "ssm:/a,secretsmanager:b",
    }
    assert config.load(env).summary() == (
        "port 8080, cache size 50, TTL secretsmanager 300 s ssm 20 s, region ap-south-1,"
        " endpoints secretsmanager default ssm default, prefetch 2 items"
    )
    off = config.load({**env, "PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED": "false"})
    assert "cache size 0," in off.summary()
    bad = config.load({**TOKEN, "AWS_ENDPOINT_URL": "http://127.0.0.1:notaport"})
    assert "endpoints secretsmanager <unparseable URL>" in bad.summary()


def test_importing_config_stays_cheap() -> None:
    """No dataclasses, inspect, typing or urllib.parse: config is read before registering."""
    root = Path(__file__).resolve().parent.parent
    code = (
        f"import sys; sys.path.insert(0, {str(root)!r});"
        " from parameters_secrets_extension import config;"
        " print(' '.join(sorted(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-I", "-c", code], capture_output=True, text=True, check=True
    )
    loaded = set(done.stdout.split())
    assert "parameters_secrets_extension.config" in loaded
    assert not loaded & {"dataclasses", "inspect", "typing", "urllib.parse", "re"}


def test_every_setting_is_one_row_read_into_an_immutable_config() -> None:
    """Each setting's field, variable, kind, default and limits are one row of SETTINGS; the
    class names each field's type once, and nothing may change a Config once loaded."""
    fields = [row[0] for row in config.SETTINGS]
    variables = [row[1] for row in config.SETTINGS]
    assert len(set(fields)) == len(fields) and len(set(variables)) == len(variables)
    assert set(inspect.get_annotations(config.Config)) == set(config.Config.__slots__)
    assert set(config.Config.__slots__) == {*fields, *config.OTHER_FIELDS}
    c = config.load(TOKEN)
    for field, _variable, _kind, default, _limits in config.SETTINGS:
        assert getattr(c, field) == default, field
    with pytest.raises(AttributeError, match="immutable"):
        c.cache_size = 1
    with pytest.raises(AttributeError, match="immutable"):
        del c.cache_size
    assert c.cache_size == config.DEFAULT_CACHE_SIZE


def test_the_readme_configuration_table_names_every_setting() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.partition("## Configuration")[2].partition("\n## ")[0]
    rows = {line.split("|")[1].strip(" `") for line in section.splitlines() if line[:3] == "| `"}
    assert {row[1] for row in config.SETTINGS} <= rows
