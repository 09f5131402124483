"""Every environment variable the extension reads, read once into immutable settings.

No setting ever stops the extension, as the AWS extension clamps an over-range TTL rather
than fail the function: a value out of its range is clamped to the range, and a value that
cannot be read at all is replaced by the default. Each such value adds one line to
`Config.warnings`, naming the variable, the value given and the value used, for the
extension to log at WARN. The one exception is a missing token: nothing could ever
authenticate, so `load` raises ConfigError and the extension reports an init error.

Plain classes with __slots__ instead of dataclasses: importing dataclasses (and with it
inspect) costs a good share of the extension's init.
"""

from __future__ import annotations

from .errors import ConfigError
from .lambda_api.lifecycle import DEFAULT_PORT, PORT_VARIABLE, http_port
from .services import BY_NAME, SECRETS_MANAGER, SSM

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Final

PREFIX = "PARAMETERS_SECRETS_EXTENSION_"
LOG_LEVELS = ("debug", "info", "warn", "error", "none")
# Other spellings people write for a level; each means the level it maps to.
LOG_LEVEL_ALIASES = {"warning": "warn"}
PREFETCH_SERVICES = tuple(BY_NAME)
# Prefetch runs during init, each item a call to AWS; more would only slow init and throttle.
MAX_PREFETCH = 100
# Parameters one path read may return: each page of 10 is a call to AWS, and the answer
# is held in the cache as one entry.
MAX_PATH_PARAMETERS = 10_000
# The cache's bound in bytes, in MiB: the smallest Lambda has 128 MB for the function, its
# runtime and this extension together, so by default a quarter of it, at most 1 GiB.
DEFAULT_CACHE_MAX_MB = 32
MAX_CACHE_MAX_MB = 1024
# Lambda's longest invocation: a longer upstream deadline can never matter.
MAX_TIMEOUT_MS = 900_000
# Past half of an entry's life, refreshing ahead would just halve the TTL.
MAX_REFRESH_AHEAD_PERCENT = 50
METRICS_OUTPUTS = ("off", "emf")
# The other defaults and limits, each written once by name (as the credentials provider's
# config.rs keeps them): the AWS extension's own where it has the setting. The port's are
# lifecycle's (DEFAULT_PORT, and 1-65535 in http_port): boot listens on it before registering.
DEFAULT_CACHE_ENABLED = True
DEFAULT_CACHE_SIZE = MAX_CACHE_SIZE = 1000
DEFAULT_LOG_LEVEL = "info"
DEFAULT_MAX_CONNECTIONS, MAX_MAX_CONNECTIONS = 3, 100
DEFAULT_TTL_SECONDS = MAX_TTL_SECONDS = 300  # the AWS extension's TTL cap, kept by default
# The opt-in for longer TTLs raises the TTLs' cap up to an hour, as the newer AWS agents allow.
DEFAULT_MAX_TTL_SECONDS, LONGEST_MAX_TTL_SECONDS = MAX_TTL_SECONDS, 3600
DEFAULT_TIMEOUT_MS = 0  # unset: services.UNSET_TIMEOUT_SECONDS
DEFAULT_STALE_IF_ERROR_SECONDS, MAX_STALE_IF_ERROR_SECONDS = 300, 86_400
# How long a not-found or denied answer is replayed without asking AWS (never past the
# service's TTL). Short: the AWS extension keeps no errors, and a function that creates the
# missing secret must soon see it; Cloud Extensions keeps them one TTL, which 300 matches.
DEFAULT_NEGATIVE_TTL_SECONDS, MAX_NEGATIVE_TTL_SECONDS = 5, MAX_TTL_SECONDS
DEFAULT_MAX_PATH_PARAMETERS = 500
DEFAULT_PREFETCH_TIMEOUT_MS, MAX_PREFETCH_TIMEOUT_MS = 2000, 60_000
DEFAULT_MAX_CLIENT_CONNECTIONS, MAX_MAX_CLIENT_CONNECTIONS = 256, 4096
DEFAULT_IDLE_TIMEOUT_SECONDS, MAX_IDLE_TIMEOUT_SECONDS = 60, 3600
DEFAULT_REFRESH_AHEAD_PERCENT = 10
DEFAULT_METRICS = "off"
# How often the EMF counters are written while the sandbox runs: CloudWatch's standard
# resolution is a minute; at most an hour, so a long-lived sandbox still reports.
DEFAULT_METRICS_INTERVAL_SECONDS, MAX_METRICS_INTERVAL_SECONDS = 60, 3600
DEFAULT_PREFETCH: tuple[tuple[str, ...], ...] = ()
# Between an item's id and the role to read it as: `secretsmanager:<id>|<role ARN>`. No
# secret name, parameter name or ARN holds one (aws/role_arns.py keeps it out of roles).
PREFETCH_ROLE_SEPARATOR = "|"


class SettingValue(str):
    """A range's bound that is the value of the earlier setting of this field name."""

    __slots__ = ()


TTL_CAP = SettingValue("max_ttl_seconds")
_SHOWN_CHARS = 64  # of a bad value in a warning: enough to recognise it, never a flood
_SHOWN_ITEMS = 5

# Every setting, one row each: the Config field, the variable, how it is read (the _Reader
# method: flag, number, port, log_level, choice or prefetch), its default, and its range
# (low, high), choices or most items. A table as h11 keeps its readers, with the defaults and
# limits named above as the credentials provider's config.rs does. load() reads the rows in
# this order, which is the order of their warnings. A range's high end may be a SettingValue
# instead of a number: an earlier row's value is the limit (TTL_CAP, the TTLs' cap).
SETTINGS: tuple[tuple[str, str, str, object, object], ...] = (
    ("cache_enabled", PREFIX + "CACHE_ENABLED", "flag", DEFAULT_CACHE_ENABLED, None),
    ("cache_size", PREFIX + "CACHE_SIZE", "number", DEFAULT_CACHE_SIZE, (0, MAX_CACHE_SIZE)),
    (
        "cache_max_mb",  # the cache's bound in bytes, in MiB
        PREFIX + "CACHE_MAX_MB",
        "number",
        DEFAULT_CACHE_MAX_MB,
        (1, MAX_CACHE_MAX_MB),
    ),
    ("http_port", PORT_VARIABLE, "port", DEFAULT_PORT, None),
    ("log_level", PREFIX + "LOG_LEVEL", "log_level", DEFAULT_LOG_LEVEL, LOG_LEVELS),
    (
        "max_ttl_seconds",  # the TTLs' cap: past the AWS extension's only when asked
        PREFIX + "MAX_TTL_SECONDS",
        "number",
        DEFAULT_MAX_TTL_SECONDS,
        (MAX_TTL_SECONDS, LONGEST_MAX_TTL_SECONDS),
    ),
    (
        "max_connections",
        PREFIX + "MAX_CONNECTIONS",
        "number",
        DEFAULT_MAX_CONNECTIONS,
        (1, MAX_MAX_CONNECTIONS),
    ),
    (
        "secrets_manager_ttl",
        SECRETS_MANAGER.ttl_variable,
        "number",
        DEFAULT_TTL_SECONDS,
        (0, TTL_CAP),
    ),
    ("ssm_ttl", SSM.ttl_variable, "number", DEFAULT_TTL_SECONDS, (0, TTL_CAP)),
    (
        "secrets_manager_timeout_ms",
        SECRETS_MANAGER.timeout_variable,
        "number",
        DEFAULT_TIMEOUT_MS,
        (0, MAX_TIMEOUT_MS),
    ),
    ("ssm_timeout_ms", SSM.timeout_variable, "number", DEFAULT_TIMEOUT_MS, (0, MAX_TIMEOUT_MS)),
    (
        "stale_if_error_seconds",
        PREFIX + "STALE_IF_ERROR_SECONDS",
        "number",
        DEFAULT_STALE_IF_ERROR_SECONDS,
        (0, MAX_STALE_IF_ERROR_SECONDS),
    ),
    (
        "negative_ttl_seconds",
        PREFIX + "NEGATIVE_TTL_SECONDS",
        "number",
        DEFAULT_NEGATIVE_TTL_SECONDS,
        (0, MAX_NEGATIVE_TTL_SECONDS),
    ),
    (
        "max_path_parameters",
        PREFIX + "MAX_PATH_PARAMETERS",
        "number",
        DEFAULT_MAX_PATH_PARAMETERS,
        (1, MAX_PATH_PARAMETERS),
    ),
    ("prefetch", PREFIX + "PREFETCH", "prefetch", DEFAULT_PREFETCH, MAX_PREFETCH),
    (
        "prefetch_timeout_ms",
        PREFIX + "PREFETCH_TIMEOUT_MILLIS",
        "number",
        DEFAULT_PREFETCH_TIMEOUT_MS,
        (0, MAX_PREFETCH_TIMEOUT_MS),
    ),
    (
        "max_client_connections",
        PREFIX + "MAX_CLIENT_CONNECTIONS",
        "number",
        DEFAULT_MAX_CLIENT_CONNECTIONS,
        (1, MAX_MAX_CLIENT_CONNECTIONS),
    ),
    (
        "idle_timeout_seconds",
        PREFIX + "IDLE_TIMEOUT_SECONDS",
        "number",
        DEFAULT_IDLE_TIMEOUT_SECONDS,
        (1, MAX_IDLE_TIMEOUT_SECONDS),
    ),
    (
        "refresh_ahead_percent",
        PREFIX + "REFRESH_AHEAD_PERCENT",
        "number",
        DEFAULT_REFRESH_AHEAD_PERCENT,
        (0, MAX_REFRESH_AHEAD_PERCENT),
    ),
    (
        "metrics",  # "emf": the counters on stdout every interval and at shutdown
        PREFIX + "METRICS",
        "choice",
        DEFAULT_METRICS,
        METRICS_OUTPUTS,
    ),
    (
        "metrics_interval_seconds",
        PREFIX + "METRICS_INTERVAL_SECONDS",
        "number",
        DEFAULT_METRICS_INTERVAL_SECONDS,
        (1, MAX_METRICS_INTERVAL_SECONDS),
    ),
)
# Config's other fields, which are no setting of ours: from Lambda's own variables (read as
# Lambda sets them, never warned about), derived, and the warnings.
OTHER_FIELDS = (
    "log_json",
    "function_name",
    "snapstart",
    "auth_token",
    "aws",
    "warnings",
)


class AwsConfig:
    """What the upstream client needs: region, endpoints, TLS and credential sources."""

    __slots__ = (
        "access_key_id",
        "ca_bundle",
        "container_authorization_token",
        "container_authorization_token_file",
        "container_credentials_full_uri",
        "endpoint_url",
        "endpoint_url_secrets_manager",
        "endpoint_url_ssm",
        "endpoint_url_sts",
        "region",
        "secret_access_key",
        "session_token",
        "use_fips",
    )
    # Kept out of repr() and describe(), as is the userinfo of the URL fields.
    SECRET_FIELDS = frozenset(
        {"access_key_id", "secret_access_key", "session_token", "container_authorization_token"}
    )
    URL_FIELDS = (
        "endpoint_url",
        "endpoint_url_secrets_manager",
        "endpoint_url_ssm",
        "endpoint_url_sts",
        "container_credentials_full_uri",
    )

    def __init__(
        self,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        endpoint_url_secrets_manager: str | None = None,
        endpoint_url_ssm: str | None = None,
        endpoint_url_sts: str | None = None,
        use_fips: bool = False,
        ca_bundle: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        container_credentials_full_uri: str | None = None,
        container_authorization_token: str | None = None,
        container_authorization_token_file: str | None = None,
    ) -> None:
        self.region: Final = region
        self.endpoint_url: Final = endpoint_url
        self.endpoint_url_secrets_manager: Final = endpoint_url_secrets_manager
        self.endpoint_url_ssm: Final = endpoint_url_ssm
        self.endpoint_url_sts: Final = endpoint_url_sts  # for roleArn's AssumeRole (aws/roles.py)
        self.use_fips: Final = use_fips
        self.ca_bundle: Final = ca_bundle
        self.access_key_id: Final = access_key_id
        self.secret_access_key: Final = secret_access_key
        self.session_token: Final = session_token
        self.container_credentials_full_uri: Final = container_credentials_full_uri
        self.container_authorization_token: Final = container_authorization_token
        self.container_authorization_token_file: Final = container_authorization_token_file

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self.describe().items())
        return f"AwsConfig({shown})"

    def describe(self) -> dict[str, object]:
        """The fields safe to log: no credentials, no userinfo in URLs."""
        safe: dict[str, object] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if name in self.SECRET_FIELDS:
                continue
            safe[name] = _redact_url(value) if name in self.URL_FIELDS and value else value
        return safe


class Config:
    """The extension's settings, and the warnings reading them produced.

    Immutable: load() sets every field once, from SETTINGS and OTHER_FIELDS.
    """

    __slots__ = (*(row[0] for row in SETTINGS), *OTHER_FIELDS)
    # The fields' types, for the type checker and the reader; values come from load().
    cache_enabled: bool
    cache_size: int
    cache_max_mb: int
    http_port: int
    log_level: str
    max_ttl_seconds: int
    max_connections: int
    secrets_manager_ttl: int
    ssm_ttl: int
    secrets_manager_timeout_ms: int
    ssm_timeout_ms: int
    stale_if_error_seconds: int
    negative_ttl_seconds: int
    max_path_parameters: int
    prefetch: tuple[tuple[str, ...], ...]  # (service, id) or (service, id, role ARN)
    prefetch_timeout_ms: int
    max_client_connections: int
    idle_timeout_seconds: int
    refresh_ahead_percent: int
    metrics: str
    metrics_interval_seconds: int
    log_json: bool
    function_name: str  # Lambda's, for the metrics' dimension
    snapstart: bool
    auth_token: str
    aws: AwsConfig
    warnings: tuple[str, ...]

    def __init__(self, fields: Mapping[str, object]) -> None:
        for name in self.__slots__:  # a missing field is a KeyError naming it
            object.__setattr__(self, name, fields[name])

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Config is immutable: cannot set {name}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Config is immutable: cannot delete {name}")

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}" for name in self.__slots__ if name != "auth_token"
        )
        return f"Config({shown})"

    @property
    def effective_cache_size(self) -> int:
        """Items the cache may hold: 0 when caching is off, by the switch, the size or both TTLs."""
        if not self.cache_enabled or (self.secrets_manager_ttl == 0 and self.ssm_ttl == 0):
            return 0
        return self.cache_size

    def describe(self) -> dict[str, object]:
        """The settings safe to log at debug: never the token or credentials."""
        safe = {
            name: getattr(self, name)
            for name in self.__slots__
            if name not in ("auth_token", "aws", "warnings")
        }
        safe["aws"] = self.aws.describe()
        safe["aws_credentials_from_env"] = self.aws.access_key_id is not None
        safe["auth_token_set"] = bool(self.auth_token)
        return safe

    def summary(self) -> str:
        """The effective settings for the one INFO line at start, without userinfo or secrets."""
        aws = self.aws
        sm_url = aws.endpoint_url_secrets_manager or aws.endpoint_url
        ssm_url = aws.endpoint_url_ssm or aws.endpoint_url
        return (
            f"port {self.http_port}, cache size {self.effective_cache_size},"
            f" TTL secretsmanager {self.secrets_manager_ttl} s ssm {self.ssm_ttl} s,"
            f" region {aws.region or 'unset'},"
            f" endpoints secretsmanager {_host(sm_url)} ssm {_host(ssm_url)},"
            f" prefetch {len(self.prefetch)} items"
        )


def _redact_url(url: str) -> str:
    """The URL without its userinfo or query, either of which may hold a password or a
    token (AWS_CONTAINER_CREDENTIALS_FULL_URI may carry one in its query string)."""
    # Imported here, not at the top: config is read on the way to the first `next`, which
    # ends Lambda's init, and only a function with a custom endpoint has a URL to redact.
    import urllib.parse  # noqa: PLC0415

    from .urls import without_userinfo  # noqa: PLC0415 (as urllib.parse)

    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.query or parts.fragment:
        parts = parts._replace(query="<redacted>" if parts.query else "", fragment="")
    return without_userinfo(parts.geturl(), "<redacted>@")


def _host(url: str | None) -> str:
    """host[:port] of an endpoint URL, "default" for AWS's own endpoints."""
    if url is None:
        return "default"
    from .urls import split  # noqa: PLC0415 (as in _redact_url)

    try:
        parts = split(url)
        port = parts.port
    except ValueError:
        return "<unparseable URL>"
    host = parts.hostname
    if not host:
        return "<unparseable URL>"
    if ":" in host:
        host = f"[{host}]"
    return host if port is None else f"{host}:{port}"


def _is_role_arn(text: str) -> bool:
    # Imported here: only a prefetch item that names a role needs it, not every start.
    from .aws.role_arns import is_role_arn  # noqa: PLC0415

    return is_role_arn(text)


def _show(raw: str) -> str:
    """A value as a warning shows it: as given if plain, else quoted, and never long."""
    text = raw if len(raw) <= _SHOWN_CHARS else raw[:_SHOWN_CHARS] + "..."
    plain = text.isprintable() and not any(c in text for c in " '\"")
    return text if plain else repr(text)


def _whole_number(text: str) -> int | None:
    """An optionally signed ASCII whole number, None for anything else ("5m", "1.5")."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits or not digits.isascii() or not digits.isdigit():
        return None
    # Past 18 digits the exact value cannot matter and int() may refuse a very long string.
    value = int(digits) if len(digits.lstrip("0")) <= 18 else 10**19
    return -value if text[0] == "-" else value


class _Reader:
    """Reads variables from one environment, collecting a warning per value it replaced."""

    __slots__ = ("env", "warnings")

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.warnings: list[str] = []

    def warn(self, name: str, raw: str, problem: str, used: object) -> None:
        self.warnings.append(f"{name}={_show(raw)} {problem}; using {used}")

    def text(self, name: str) -> str | None:
        """The value, or None when unset or blank (Lambda passes an unset variable as empty)."""
        value = self.env.get(name)
        return value if value and value.strip() else None

    # Each method below reads one kind of setting: (variable, default, limits) -> value,
    # the limits as SETTINGS gives them (None where the kind has none).

    def flag(self, name: str, default: bool, _limits: None = None) -> bool:
        raw = self.text(name)
        if raw is None:
            return default
        lowered = raw.strip().lower()
        if lowered not in ("true", "false"):
            self.warn(name, raw, "is not true or false", f"the default {str(default).lower()}")
            return default
        return lowered == "true"

    def number(self, name: str, default: int, limits: tuple[int, int]) -> int:
        low, high = limits
        raw = self.text(name)
        if raw is None:
            return default
        value = _whole_number(raw.strip())
        if value is None:
            self.warn(name, raw, "is not a whole number", f"the default {default}")
            return default
        if value < low:
            self.warn(name, raw, f"is below the minimum {low}", low)
            return low
        if value > high:
            self.warn(name, raw, f"is above the maximum {high}", high)
            return high
        return value

    def port(self, name: str, default: int, _limits: None = None) -> int:
        # Out of range, the default rather than the nearest bound: port 1 or 65535 is no
        # likelier to be what the clients call than any other, and the default is what
        # clients written from the AWS documentation call.
        raw = self.text(name)
        if raw is None:
            return default
        # Parsed as boot parses it to listen, so the port reported is the port listened on.
        port = http_port(raw)
        if port is None:
            self.warn(name, raw, "is not a port number from 1 to 65535", f"the default {default}")
            return default
        return port

    def log_level(self, name: str, default: str, levels: tuple[str, ...]) -> str:
        raw = self.text(name)
        if raw is None:
            return default
        level = raw.strip().lower()
        level = LOG_LEVEL_ALIASES.get(level, level)
        if level not in levels:
            self.warn(name, raw, f"is not one of {', '.join(levels)}", f"the default {default}")
            return default
        return level

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        """One of `choices`, any case; anything else is replaced by the default."""
        raw = self.text(name)
        if raw is None:
            return default
        value = raw.strip().lower()
        if value not in choices:
            self.warn(name, raw, f"is not one of {', '.join(choices)}", f"the default {default}")
            return default
        return value

    def prefetch(
        self, name: str, default: tuple[tuple[str, ...], ...], most: int
    ) -> tuple[tuple[str, ...], ...]:
        """Parse `secretsmanager:<id>,ssm:<name>`; ids may hold colons, so split on the first.
        An item may end in `|<role ARN>` to be read as that role: (service, id, role ARN).

        A malformed item is skipped and the others kept, with one warning for them all.
        """
        raw = self.text(name)
        if raw is None:
            return default
        entries: list[tuple[str, ...]] = []
        bad: list[str] = []
        for part in raw.split(","):
            item = part.strip()
            if not item:
                continue
            service, _, rest = item.partition(":")
            ident, separator, role = rest.partition(PREFETCH_ROLE_SEPARATOR)
            ident, role = ident.strip(), role.strip()
            if (
                service not in PREFETCH_SERVICES
                or not ident
                or (separator and not _is_role_arn(role))
            ):
                bad.append(item)
            else:
                entries.append((service, ident, role) if separator else (service, ident))
        if bad:
            shown = ", ".join(_show(item) for item in bad[:_SHOWN_ITEMS])
            more = f" and {len(bad) - _SHOWN_ITEMS} more" if len(bad) > _SHOWN_ITEMS else ""
            self.warnings.append(
                f"{name} items {shown}{more} are not secretsmanager:<secret id> or"
                f" ssm:<parameter name>, each optionally followed by |<role ARN>;"
                f" skipping them, using the other {len(entries)}"
            )
        if len(entries) > most:
            self.warnings.append(
                f"{name} lists {len(entries)} items, above the maximum {most};"
                f" using the first {most}"
            )
            del entries[most:]
        return tuple(entries)


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
    """Build the Config from an environment mapping.

    Never raises for a bad value (see the module docstring); raises ConfigError only when
    there is no token for clients to authenticate with.
    """
    read = _Reader(env)
    aws = AwsConfig(
        region=read.text("AWS_REGION") or read.text("AWS_DEFAULT_REGION"),
        endpoint_url=read.text("AWS_ENDPOINT_URL"),
        endpoint_url_secrets_manager=read.text(SECRETS_MANAGER.endpoint_variable),
        endpoint_url_ssm=read.text(SSM.endpoint_variable),
        endpoint_url_sts=read.text("AWS_ENDPOINT_URL_STS"),
        use_fips=read.flag("AWS_USE_FIPS_ENDPOINT", False),
        ca_bundle=read.text("AWS_CA_BUNDLE"),
        access_key_id=read.text("AWS_ACCESS_KEY_ID"),
        secret_access_key=read.text("AWS_SECRET_ACCESS_KEY"),
        session_token=read.text("AWS_SESSION_TOKEN"),
        container_credentials_full_uri=read.text("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
        container_authorization_token=read.text("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
        container_authorization_token_file=read.text("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
    )
    fields: dict[str, object] = {}
    for field, variable, kind, default, given in SETTINGS:
        limits = given
        if isinstance(given, tuple) and isinstance(given[1], SettingValue):
            limits = (given[0], fields[given[1]])  # a cap that is another setting's value
        fields[field] = getattr(read, kind)(variable, default, limits)
    # Lambda's own variable: any value but JSON means its default, text.
    log_format = (read.text("AWS_LAMBDA_LOG_FORMAT") or "text").strip().lower()
    fields.update(
        log_json=log_format == "json",
        function_name=read.text("AWS_LAMBDA_FUNCTION_NAME") or "unknown",
        snapstart=read.text("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start",
        auth_token=_auth_token(aws),
        aws=aws,
        warnings=tuple(read.warnings),
    )
    return Config(fields)
