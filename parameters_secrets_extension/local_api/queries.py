"""A request's route and query, validated into records: one function per route's query.

Bad input is a 400 (InvalidParameter, MissingParameter) naming the parameter; an unknown
path a 404 naming the known ones.
"""

from __future__ import annotations

from ..errors import InvalidParameter, MissingParameter, NotFound
from ..parameter_names import ParameterName, parameter_name, version_selector
from ..percent import unquote
from ..services import SECRETS_MANAGER, SERVICES, SSM

PING = "ping"
METRICS = "metrics"  # the extension's own counters; like a service, it needs the token
# Path -> route name: one of a service's route names, PING or METRICS.
ROUTES = {path: route for service in SERVICES for path, route in service.routes.items()}
ROUTES["/ping"] = PING
ROUTES["/metrics"] = METRICS
_KNOWN_PATHS = [path for path in ROUTES if not path.endswith("/") and path != "/ping"]
# GET /secretsmanager/<id>: the secret id is the rest of the path, as Cloud Extensions
# serves it. Each route under the prefix (get, batch, ...) keeps its path, so a secret of
# such a name must be read through the query route; asked for by path it is a 400.
SECRET_PATH = "secretsmanager-path"  # noqa: S105 (a route name)
SECRET_PATH_PREFIX = "/secretsmanager/"  # noqa: S105 (a path)
RESERVED_SECRET_NAMES = frozenset(
    path[len(SECRET_PATH_PREFIX) :] for path in ROUTES if path.startswith(SECRET_PATH_PREFIX)
)
# Those routes with a trailing slash stay unknown paths (404), as on the AWS extension.
_NOT_SECRET_PATHS = frozenset(SECRET_PATH_PREFIX + name + "/" for name in RESERVED_SECRET_NAMES)
# Ids one batch request may list, as BatchGetSecretValue and GetParameters allow.
MAX_SECRET_IDS = SECRETS_MANAGER.max_batch_ids
MAX_PARAMETER_NAMES = SSM.max_batch_ids
_NOT_FOUND = (
    f"unknown path: use {', '.join(_KNOWN_PATHS)}, {SECRET_PATH_PREFIX}<secret id> or /ping"
)


class _Query:
    """A validated query: its fields by name, compared and shown by their values.

    What the records had as namedtuples, without building one at import: about 0.1 ms of
    CPU each, five of them, on the way to the first answer. Each query's last argument is
    role_arn, the validated roleArn (None: the function's own role); it defaults to None so
    that a query built without one reads as the function's own role.
    """

    __slots__: tuple[str, ...] = ()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, type(self)) and self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]  # equal by value, yet not immutable

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


class SecretQuery(_Query):
    """The validated query of GET /secretsmanager/get."""

    __slots__ = ("refresh", "role_arn", "secret_id", "version_id", "version_stage")

    def __init__(
        self,
        secret_id: str,
        version_id: str | None,
        version_stage: str | None,
        refresh: bool,
        role_arn: str | None = None,
    ) -> None:
        self.secret_id = secret_id
        self.version_id = version_id
        self.version_stage = version_stage
        self.refresh = refresh
        self.role_arn = role_arn


class ParameterQuery(_Query):
    """The validated query of GET /systemsmanager/parameters/get."""

    __slots__ = ("label", "name", "refresh", "role_arn", "version", "with_decryption")

    def __init__(
        self,
        name: str,
        version: int | None,
        label: str | None,
        *,
        with_decryption: bool,
        refresh: bool,
        role_arn: str | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.label = label
        self.with_decryption = with_decryption
        self.refresh = refresh
        self.role_arn = role_arn


class SecretBatchQuery(_Query):
    """The validated query of GET /secretsmanager/batch."""

    __slots__ = ("refresh", "role_arn", "secret_ids")

    def __init__(
        self, secret_ids: tuple[str, ...], refresh: bool, role_arn: str | None = None
    ) -> None:
        self.secret_ids = secret_ids
        self.refresh = refresh
        self.role_arn = role_arn


class ParameterBatchQuery(_Query):
    """The validated query of GET /systemsmanager/parameters/batch."""

    __slots__ = ("names", "refresh", "role_arn", "with_decryption")

    def __init__(
        self,
        names: tuple[ParameterName, ...],
        with_decryption: bool,
        refresh: bool,
        role_arn: str | None = None,
    ) -> None:
        self.names = names
        self.with_decryption = with_decryption
        self.refresh = refresh
        self.role_arn = role_arn


class PathQuery(_Query):
    """The validated query of GET /systemsmanager/parameters/get-by-path."""

    __slots__ = ("path", "recursive", "refresh", "role_arn", "with_decryption")

    def __init__(
        self,
        path: str,
        recursive: bool,
        with_decryption: bool,
        refresh: bool,
        role_arn: str | None = None,
    ) -> None:
        self.path = path
        self.recursive = recursive
        self.with_decryption = with_decryption
        self.refresh = refresh
        self.role_arn = role_arn


def route(path: str) -> str:
    """The route name of a path (a service's route, PING, METRICS or SECRET_PATH); 404 for
    any other. A path of ROUTES is its route, never SECRET_PATH."""
    name = ROUTES.get(path)
    if name is None:
        if path.startswith(SECRET_PATH_PREFIX) and path not in _NOT_SECRET_PATHS:
            return SECRET_PATH
        raise NotFound(_NOT_FOUND)
    return name


def _pairs(query: str) -> list[tuple[str, str]]:
    """The query's (name, value) pairs, as urllib.parse.parse_qsl(keep_blank_values=True,
    errors="strict") gives them: split at `&`, empty fields left out, a field without `=`
    an empty value, `+` a space, then percent-decoded (see percent.py for why not urllib)."""
    pairs = []
    try:
        for field in query.split("&"):
            if field:
                name, _, value = field.partition("=")
                pairs.append((unquote(name.replace("+", " ")), unquote(value.replace("+", " "))))
    except ValueError as exc:  # UnicodeDecodeError
        raise InvalidParameter("the query string is not valid UTF-8 once percent-decoded") from exc
    return pairs


def _first(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """The first non-empty value of each name: an empty value counts as absent."""
    values: dict[str, str] = {}
    for name, value in pairs:
        if value:
            values.setdefault(name, value)
    return values


def _bool(values: dict[str, str], name: str) -> bool:
    """true or false, any case; absent means false."""
    raw = values.get(name)
    if raw is None:
        return False
    lowered = raw.lower()
    if lowered not in ("true", "false"):
        raise InvalidParameter(f"{name} must be true or false")
    return lowered == "true"


def _refresh(values: dict[str, str]) -> bool:
    """refreshNow: true/false or 1/0, any case, as aws-secretsmanager-agent reads it."""
    raw = values.get("refreshNow")
    if raw is None:
        return False
    lowered = raw.lower()
    if lowered not in ("true", "false", "1", "0"):
        raise InvalidParameter("refreshNow must be true, false, 1 or 0")
    return lowered in ("true", "1")


def _role(values: dict[str, str]) -> str | None:
    """roleArn: a role ARN of a known partition (400 otherwise); absent or empty is None."""
    raw = values.get("roleArn")
    if raw is None:
        return None
    # Imported here: only a request that names a role needs it, not every start.
    from ..aws.role_arns import role_arn  # noqa: PLC0415

    return role_arn(raw)


def _required(values: dict[str, str], name: str) -> str:
    value = values.get(name)
    if value is None:
        raise MissingParameter(f"the query parameter {name} is required")
    return value


def _id_list(pairs: list[tuple[str, str]], name: str, limit: int) -> list[str]:
    """The comma-separated ids of query parameter `name`: 1 to `limit`, none empty, no repeat."""
    raw = next((value for key, value in pairs if key == name), None)
    if raw is None:
        raise MissingParameter(f"the query parameter {name} is required")
    rule = f"{name} must list 1 to {limit} ids separated by commas"
    items = raw.split(",")
    if len(items) > limit:
        raise InvalidParameter(f"{rule}; it lists {len(items)}")
    if not all(items):
        raise InvalidParameter(f"{rule}; it has an empty one")
    if len(set(items)) != len(items):
        raise InvalidParameter(f"{rule}; it lists one more than once")
    return items


def secret_batch_query(query: str) -> SecretBatchQuery:
    """Validate the query of the Secrets Manager batch endpoint."""
    pairs = _pairs(query)
    ids = tuple(_id_list(pairs, "secretIds", MAX_SECRET_IDS))
    values = _first(pairs)
    return SecretBatchQuery(ids, _refresh(values), _role(values))


def parameter_batch_query(query: str) -> ParameterBatchQuery:
    """Validate the query of the Parameter Store batch endpoint."""
    pairs = _pairs(query)
    names = tuple(parameter_name(item) for item in _id_list(pairs, "names", MAX_PARAMETER_NAMES))
    # name:3 and name:03 are one key, so one parameter listed twice.
    if len({entry[1:] for entry in names}) != len(names):
        raise InvalidParameter(
            f"names must list 1 to {MAX_PARAMETER_NAMES} ids separated by commas;"
            " it lists one more than once"
        )
    values = _first(pairs)
    return ParameterBatchQuery(
        names, _bool(values, "withDecryption"), _refresh(values), _role(values)
    )


def path_query(query: str) -> PathQuery:
    """Validate the query of the Parameter Store path endpoint."""
    values = _first(_pairs(query))
    return PathQuery(
        path=_required(values, "path"),
        recursive=_bool(values, "recursive"),
        with_decryption=_bool(values, "withDecryption"),
        refresh=_refresh(values),
        role_arn=_role(values),
    )


def secret_query(query: str) -> SecretQuery:
    """Validate the query of the Secrets Manager endpoint."""
    values = _first(_pairs(query))
    return _secret_query(_required(values, "secretId"), values)


def _secret_query(secret_id: str, values: dict[str, str]) -> SecretQuery:
    """The secret `secret_id` with the other parameters of both secret routes."""
    return SecretQuery(
        secret_id=secret_id,
        version_id=values.get("versionId"),
        version_stage=values.get("versionStage"),
        refresh=_refresh(values),
        role_arn=_role(values),
    )


def secret_path_query(path: str, query: str) -> SecretQuery:
    """Validate GET /secretsmanager/<id>: the id from the path (slashes kept, percent-escapes
    such as %2F decoded), the other parameters as the query route takes them."""
    raw = path[len(SECRET_PATH_PREFIX) :]
    try:
        secret_id = unquote(raw)
    except UnicodeDecodeError as exc:
        raise InvalidParameter("the secret id is not valid UTF-8 once percent-decoded") from exc
    if not secret_id:
        raise MissingParameter(f"the secret id after {SECRET_PATH_PREFIX} is required")
    if secret_id in RESERVED_SECRET_NAMES:
        raise InvalidParameter(
            f"{SECRET_PATH_PREFIX}{secret_id} is a route of its own: read a secret named"
            f" {secret_id} with {SECRET_PATH_PREFIX}get?secretId={secret_id}"
        )
    values = _first(_pairs(query))
    if "secretId" in values:
        raise InvalidParameter("secretId is not taken on the path route: the path names the secret")
    return _secret_query(secret_id, values)


def parameter_query(query: str) -> ParameterQuery:
    """Validate the query of the Parameter Store endpoint; of version and label, first wins."""
    pairs = _pairs(query)
    values = _first(pairs)
    name = _required(values, "name")
    selector = next(((k, v) for k, v in pairs if v and k in ("version", "label")), None)
    version = label = None
    if selector is not None and selector[0] == "version":
        # On a reference name, a secret's VersionId too (sent as `name:<VersionId>`).
        version, label = version_selector(name, selector[1])
    elif selector is not None:
        label = selector[1]
    return ParameterQuery(
        name=name,
        version=version,
        label=label,
        with_decryption=_bool(values, "withDecryption"),
        refresh=_refresh(values),
        role_arn=_role(values),
    )
