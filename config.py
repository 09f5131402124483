"""Every environment variable the extension reads, validated once into frozen dataclasses."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from errors import ConfigError
from version import NAME, VERSION

PREFIX = "PARAMETERS_SECRETS_EXTENSION_"
LOG_LEVELS = ("debug", "info", "warn", "error", "none")
PREFETCH_SERVICES = ("secretsmanager", "ssm")
_WHOLE = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class AwsConfig:
    """What the upstream client needs: region, endpoints, TLS and credential sources."""

    region: str | None = None
    endpoint_url: str | None = None
    endpoint_url_secrets_manager: str | None = None
    endpoint_url_ssm: str | None = None
    use_fips: bool = False
    ca_bundle: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    container_credentials_full_uri: str | None = None
    container_authorization_token: str | None = field(default=None, repr=False)
    container_authorization_token_file: str | None = None


@dataclass(frozen=True)
class Config:
    """The extension's settings; secret-bearing fields are kept out of repr()."""

    cache_enabled: bool = True
    cache_size: int = 1000
    http_port: int = 2773
    log_level: str = "info"
    log_json: bool = False
    max_connections: int = 3
    secrets_manager_ttl: int = 300
    ssm_ttl: int = 300
    secrets_manager_timeout_ms: int = 0
    ssm_timeout_ms: int = 0
    stale_if_error_seconds: int = 300
    prefetch: tuple[tuple[str, str], ...] = ()
    max_client_connections: int = 256
    idle_timeout_seconds: int = 60
    auth_token: str | None = field(default=None, repr=False)
    runtime_api: str | None = None
    snapstart: bool = False
    aws: AwsConfig = field(default_factory=AwsConfig)
    prefetch_timeout_ms: int = 2000
    warnings: tuple[str, ...] = ()

    def summary(self) -> str:
        """The start-up info line."""
        return f"{NAME} {VERSION} listening on port {self.http_port}"

    @property
    def effective_cache_size(self) -> int:
        """Items the cache may hold: 0 when caching is off by any of SPEC 3's switches."""
        if not self.cache_enabled or (self.secrets_manager_ttl == 0 and self.ssm_ttl == 0):
            return 0
        return self.cache_size

    def describe(self) -> dict[str, object]:
        """The settings safe to log: never the token or credentials."""
        safe = {f.name: getattr(self, f.name) for f in fields(self) if f.repr and f.name != "aws"}
        safe["aws"] = {f.name: getattr(self.aws, f.name) for f in fields(self.aws) if f.repr}
        safe["aws_credentials_from_env"] = self.aws.access_key_id is not None
        safe["auth_token_set"] = self.auth_token is not None
        return safe


def _text(env: Mapping[str, str], name: str) -> str | None:
    """The variable's value, or None when unset or empty (Lambda passes unset as empty)."""
    value = env.get(name)
    return value if value else None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _text(env, name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered not in ("true", "false"):
        raise ConfigError(name, raw, "true or false (any case)")
    return lowered == "true"


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int | None) -> int:
    raw = _text(env, name)
    if raw is None:
        return default
    valid = (
        f"a whole number from {low} to {high}" if high is not None else f"a whole number >= {low}"
    )
    if not _WHOLE.fullmatch(raw.strip()):
        raise ConfigError(name, raw, valid)
    value = int(raw.strip())
    if value < low or (high is not None and value > high):
        raise ConfigError(name, raw, valid)
    return value


def _log_level(env: Mapping[str, str]) -> str:
    name = PREFIX + "LOG_LEVEL"
    raw = _text(env, name)
    if raw is None:
        return "info"
    level = raw.strip().lower()
    if level not in LOG_LEVELS:
        raise ConfigError(name, raw, ", ".join(LOG_LEVELS) + " (any case)")
    return level


def _prefetch(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Parse `secretsmanager:<id>,ssm:<name>`; ids may hold colons, so split on the first."""
    name = PREFIX + "PREFETCH"
    raw = _text(env, name)
    if raw is None:
        return ()
    entries = []
    for item in raw.split(","):
        if not item.strip():
            continue
        service, _, ident = item.strip().partition(":")
        if service not in PREFETCH_SERVICES or not ident:
            raise ConfigError(
                name, raw, "a comma-separated list of secretsmanager:<secret id> and ssm:<name>"
            )
        entries.append((service, ident))
    return tuple(entries)


def runtime_api(env: Mapping[str, str]) -> str | None:
    """Lambda's Extensions API address; None means standalone mode (SPEC 5.4)."""
    return _text(env, "AWS_LAMBDA_RUNTIME_API")


def _auth_token(aws: AwsConfig) -> str:
    token = aws.session_token or aws.container_authorization_token
    if token is None:
        raise ConfigError(
            "AWS_SESSION_TOKEN",
            "",
            "a non-empty token",
            "AWS_SESSION_TOKEN is not set (nor AWS_CONTAINER_AUTHORIZATION_TOKEN): set it to the"
            " value clients will send in X-Aws-Parameters-Secrets-Token",
        )
    return token


def load(env: Mapping[str, str]) -> Config:
    """Build the Config from an environment mapping; raise ConfigError on the first bad value."""
    aws = AwsConfig(
        region=_text(env, "AWS_REGION") or _text(env, "AWS_DEFAULT_REGION"),
        endpoint_url=_text(env, "AWS_ENDPOINT_URL"),
        endpoint_url_secrets_manager=_text(env, "AWS_ENDPOINT_URL_SECRETS_MANAGER"),
        endpoint_url_ssm=_text(env, "AWS_ENDPOINT_URL_SSM"),
        use_fips=_bool(env, "AWS_USE_FIPS_ENDPOINT", False),
        ca_bundle=_text(env, "AWS_CA_BUNDLE"),
        access_key_id=_text(env, "AWS_ACCESS_KEY_ID"),
        secret_access_key=_text(env, "AWS_SECRET_ACCESS_KEY"),
        session_token=_text(env, "AWS_SESSION_TOKEN"),
        container_credentials_full_uri=_text(env, "AWS_CONTAINER_CREDENTIALS_FULL_URI"),
        container_authorization_token=_text(env, "AWS_CONTAINER_AUTHORIZATION_TOKEN"),
        container_authorization_token_file=_text(env, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
    )
    log_format = (_text(env, "AWS_LAMBDA_LOG_FORMAT") or "text").strip().lower()
    return Config(
        cache_enabled=_bool(env, PREFIX + "CACHE_ENABLED", True),
        cache_size=_int(env, PREFIX + "CACHE_SIZE", 1000, 0, 1000),
        http_port=_int(env, PREFIX + "HTTP_PORT", 2773, 1, 65535),
        log_level=_log_level(env),
        log_json=log_format == "json",
        max_connections=_int(env, PREFIX + "MAX_CONNECTIONS", 3, 1, None),
        secrets_manager_ttl=_int(env, "SECRETS_MANAGER_TTL", 300, 0, 300),
        ssm_ttl=_int(env, "SSM_PARAMETER_STORE_TTL", 300, 0, 300),
        secrets_manager_timeout_ms=_int(env, "SECRETS_MANAGER_TIMEOUT_MILLIS", 0, 0, None),
        ssm_timeout_ms=_int(env, "SSM_PARAMETER_STORE_TIMEOUT_MILLIS", 0, 0, None),
        stale_if_error_seconds=_int(env, PREFIX + "STALE_IF_ERROR_SECONDS", 300, 0, 86400),
        prefetch=_prefetch(env),
        prefetch_timeout_ms=_int(env, PREFIX + "PREFETCH_TIMEOUT_MILLIS", 2000, 0, None),
        max_client_connections=_int(env, PREFIX + "MAX_CLIENT_CONNECTIONS", 256, 1, 4096),
        idle_timeout_seconds=_int(env, PREFIX + "IDLE_TIMEOUT_SECONDS", 60, 1, 3600),
        auth_token=_auth_token(aws),
        runtime_api=runtime_api(env),
        snapstart=_text(env, "AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start",
        aws=aws,
    )
