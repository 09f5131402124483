"""The AWS operations the extension calls, in one place: each is a record (its service, its
name, the most its answer may hold) and a small method of AwsClient that builds its payload
and shapes its answer into the Go SDK's output (the many-id ones through the functions
below, which pair answers with ids and fall back to single reads). They reach AWS only
through a Transport, which knows no operation (botocore's endpoint.py). Adding an operation
touches this module alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence

from .. import services
from ..config import AwsConfig
from ..errors import ExtensionError, PathTooLarge, ResponseTooLarge, UpstreamError
from ..services import SECRETS_MANAGER, SSM, Service
from . import sdk_shapes
from .connection_pool import MAX_RESPONSE_BYTES
from .credentials import CredentialProvider, Credentials, utc_now
from .endpoints import Endpoint
from .pairing import match_parameters, match_secrets
from .roles import MAX_ROLES, Roles, assume_role, session_name
from .transport import Transport

TYPE_CHECKING = False  # mypy takes it as True
if TYPE_CHECKING:
    import random
    from datetime import datetime

    from ..parameter_names import ParameterName

    # Shaped answers by requested id, and the ids AWS answered with an error.
    BatchResult = tuple[dict[str, dict[str, object]], dict[str, ExtensionError]]

# BatchGetSecretValue answers every listed id at once; a NextToken past this is not followed.
_MAX_BATCH_PAGES = 20
# One BatchGetSecretValue answer holds up to 20 secrets of up to 64 KiB each, base64 (binary)
# or JSON-escaped: past the 1 MiB that any single answer may have, so it gets 4 MiB.
BATCH_SECRETS_MAX_BODY = 4 << 20
_PATH_PAGE_SIZE = 10  # the most GetParametersByPath returns per page


class Operation:
    """One AWS operation: the service it belongs to, its name, its answer's size limit."""

    __slots__ = ("max_body", "name", "service")

    def __init__(self, service: Service, name: str, max_body: int = MAX_RESPONSE_BYTES) -> None:
        self.service = service
        self.name = name
        self.max_body = max_body


# The names the services' records give for their log lines (services.py); a new operation
# that no log line names is written here alone.
GET_SECRET_VALUE = Operation(SECRETS_MANAGER, SECRETS_MANAGER.operation)
BATCH_GET_SECRET_VALUE = Operation(
    SECRETS_MANAGER, SECRETS_MANAGER.batch_operation, max_body=BATCH_SECRETS_MAX_BODY
)
GET_PARAMETER = Operation(SSM, SSM.operation)
GET_PARAMETERS = Operation(SSM, SSM.batch_operation)
GET_PARAMETERS_BY_PATH = Operation(SSM, "GetParametersByPath")  # SSM.path_operation
# Which version carries which stage, without the value: renews an expired entry (lookups.py).
DESCRIBE_SECRET = Operation(SECRETS_MANAGER, "DescribeSecret")


def batch_get_secret_value(
    client: AwsClient, secret_ids: Sequence[str], deadline: float
) -> BatchResult:
    """BatchGetSecretValue for the ids, one call per endpoint (one unless ARNs name
    other regions, and then all at once), all within `deadline`: each found id's
    GetSecretValueOutput, and each failed id's error.

    The whole call failing raises; an id AWS answers with an error is in the second map.
    """
    found: dict[str, dict[str, object]] = {}
    failed: dict[str, ExtensionError] = {}
    groups = _groups(client, SECRETS_MANAGER, secret_ids, secret_ids, failed)
    _each(groups, lambda group: _secret_group(client, group, deadline, found, failed))
    return found, failed


def _secret_group(
    client: AwsClient,
    group: list[str],
    deadline: float,
    found: dict[str, dict[str, object]],
    failed: dict[str, ExtensionError],
) -> None:
    """One endpoint's ids; an answer too large for one call is asked for again in halves
    (each secret alone fits a single read's limit)."""
    entries: list[object] = []
    errors: list[object] = []
    payload: dict[str, object] = {"SecretIdList": group}
    try:
        for _ in range(_MAX_BATCH_PAGES):
            data = client.call(BATCH_GET_SECRET_VALUE, payload, deadline, group[0])
            entries += _list(data, "SecretValues")
            errors += _list(data, "Errors")
            token = data.get("NextToken")
            if not token:
                break
            payload = {"SecretIdList": group, "NextToken": token}
    except ResponseTooLarge:
        if len(group) == 1:
            raise
        half = len(group) // 2
        for part in (group[:half], group[half:]):
            _secret_group(client, part, deadline, found, failed)
        return
    match_secrets(group, entries, errors, found, failed)

    def alone(one: list[str]) -> None:
        try:
            found[one[0]] = client.get_secret_value(one[0], deadline=deadline)
        except ExtensionError as exc:
            failed[one[0]] = exc

    # AWS left these out, or answered them ambiguously: each asked for alone, all at once.
    _each([[i] for i in group if i not in found and i not in failed], alone)


def get_parameters(
    client: AwsClient, names: Sequence[ParameterName], with_decryption: bool, deadline: float
) -> BatchResult:
    """GetParameters for the names, one call per endpoint (all at once), within `deadline`:
    each found name's GetParameterOutput (keyed by the name as requested), and each
    invalid name's error."""
    found: dict[str, dict[str, object]] = {}
    failed: dict[str, ExtensionError] = {}
    by_requested = {entry.requested: entry for entry in names}
    requested = [entry.requested for entry in names]
    bases = [entry.name for entry in names]

    def one_group(group: list[str]) -> None:
        payload = {"Names": group, "WithDecryption": with_decryption}
        data = client.call(GET_PARAMETERS, payload, deadline, by_requested[group[0]].name)
        for name in _list(data, "InvalidParameters"):
            if isinstance(name, str) and name in by_requested:
                failed[name] = UpstreamError(
                    "the parameter or its version or label does not exist",
                    status=400,
                    error_type="ParameterNotFound",
                )
        entries = [by_requested[name] for name in group if name not in failed]
        for entry, raw in match_parameters(entries, _list(data, "Parameters")):
            found[entry.requested] = sdk_shapes.parameter({"Parameter": raw}, entry.selector())
        # AWS left these out, or which is which cannot be told: each asked for alone, at once.
        _each([[entry.requested] for entry in entries if entry.requested not in found], alone)

    def alone(one: list[str]) -> None:
        entry = by_requested[one[0]]
        try:
            found[entry.requested] = client.get_parameter(
                entry.name,
                version=entry.version,
                label=entry.label,
                with_decryption=with_decryption,
                deadline=deadline,
            )
        except ExtensionError as exc:
            failed[entry.requested] = exc

    _each(_groups(client, SSM, requested, bases, failed), one_group)
    return found, failed


def get_parameters_by_path(
    client: AwsClient,
    path: str,
    *,
    recursive: bool,
    with_decryption: bool,
    limit: int,
    deadline: float,
) -> list[dict[str, object]]:
    """Every parameter under `path` (each shaped as GetParameterOutput's Parameter),
    following NextToken, every page within the one `deadline`; PathTooLarge once there
    are more than `limit`."""
    payload: dict[str, object] = {
        "Path": path,
        "Recursive": recursive,
        "WithDecryption": with_decryption,
        "MaxResults": _PATH_PAGE_SIZE,
    }
    found: list[dict[str, object]] = []
    # AWS may answer a page with fewer items than asked (even none), so pages are
    # bounded separately from items.
    for _ in range(limit // _PATH_PAGE_SIZE + _MAX_BATCH_PAGES):
        data = client.call(GET_PARAMETERS_BY_PATH, payload, deadline, path)
        for raw in _list(data, "Parameters"):
            if isinstance(raw, Mapping):
                shaped = sdk_shapes.parameter({"Parameter": raw}, None)["Parameter"]
                found.append(shaped)  # type: ignore[arg-type]
        if len(found) > limit:
            raise PathTooLarge(
                f"more than {limit} parameters under the path: the limit is"
                f" PARAMETERS_SECRETS_EXTENSION_MAX_PATH_PARAMETERS={limit}"
            )
        token = data.get("NextToken")
        if not token:
            return found
        payload = {**payload, "NextToken": token}
    raise PathTooLarge(f"GetParametersByPath did not finish within its page limit for {path}")


def _groups(
    client: AwsClient,
    service: Service,
    ids: Sequence[str],
    resources: Sequence[str],
    failed: dict[str, ExtensionError],
) -> list[list[str]]:
    """`ids` grouped by the endpoint their `resources` resolve to; an id whose ARN is
    refused is failed instead."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for ident, resource in zip(ids, resources, strict=True):
        try:
            endpoint = client.endpoint(service, resource)
        except ExtensionError as exc:
            if exc.status >= 500:  # no region or a bad override: nothing can succeed
                raise
            failed[ident] = exc
            continue
        groups.setdefault((endpoint.origin, endpoint.path, endpoint.region), []).append(ident)
    return list(groups.values())


def _each(groups: list[list[str]], work: Callable[[list[str]], None]) -> None:
    """work(group) for every group, each on its own thread when there are several (one
    per region, or one per id read alone), so that they share the request's deadline
    rather than queue for it; the first group's error (in the order given) is raised once
    all have ended."""
    if len(groups) <= 1:
        for group in groups:
            work(group)
        return
    raised: list[BaseException | None] = [None] * len(groups)

    def run(index: int) -> None:
        try:
            work(groups[index])
        except BaseException as exc:  # handed to the request's thread below
            raised[index] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(groups))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for exc in raised:
        if exc is not None:
            raise exc


def _list(data: Mapping[str, object], name: str) -> list[object]:
    value = data.get(name)
    return value if isinstance(value, list) else []


class AwsClient:
    """The operations bound to one Transport, each call within its local request's deadline
    (by default the service's `*_TIMEOUT_MILLIS` from now), signed with the function's own
    credentials, or an assumed role's in the client as_role() returns."""

    def __init__(
        self,
        aws: AwsConfig,
        *,
        max_connections: int,
        secrets_manager_timeout_ms: int,
        ssm_timeout_ms: int,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = utc_now,
        rng: random.Random | None = None,
        function_name: str | None = None,
        max_roles: int = MAX_ROLES,
    ) -> None:
        """`function_name` goes into the RoleSessionName of every role assumed."""
        self._timeouts_ms = {SECRETS_MANAGER: secrets_manager_timeout_ms, SSM: ssm_timeout_ms}
        transport = Transport(aws, max_connections=max_connections, sleep=sleep, now=now, rng=rng)
        self._transport = transport
        session = session_name(function_name)

        def role_credentials(role_arn: str) -> CredentialProvider:
            return CredentialProvider(
                aws,
                now=now,
                fetch=lambda limit: assume_role(transport, aws, role_arn, session, limit),
                source=f"AssumeRole of {role_arn}",
            )

        self.roles = Roles(role_credentials, max_roles)
        self._credentials: CredentialProvider | None = None  # None: the function's own

    def as_role(self, role_arn: str) -> AwsClient:
        """This client acting as `role_arn`: the same operations, transport and connections,
        every call signed with that role's credentials (assumed at its first call)."""
        import copy  # noqa: PLC0415 -- only roleArn requests need it: off the first call's path

        view = copy.copy(self)
        view._credentials = self.roles.credentials(role_arn)
        return view

    def deadline(self, service: Service) -> float:
        """When a local request for `service` that starts now must end (a time.monotonic
        value): the service's `*_TIMEOUT_MILLIS`, or 30 s when unset. Every call the request
        makes (pages, regions, retries) shares it."""
        return services.deadline_after(self._timeouts_ms[service])

    def get_secret_value(
        self,
        secret_id: str,
        *,
        version_id: str | None = None,
        version_stage: str | None = None,
        deadline: float | None = None,
    ) -> dict[str, object]:
        """The secret in the Go SDK's GetSecretValueOutput shape."""
        payload: dict[str, object] = {"SecretId": secret_id}
        if version_id:
            payload["VersionId"] = version_id
        if version_stage:
            payload["VersionStage"] = version_stage
        deadline = self.deadline(SECRETS_MANAGER) if deadline is None else deadline
        data = self.call(GET_SECRET_VALUE, payload, deadline, secret_id)
        return sdk_shapes.secret_value(data)

    def describe_secret(
        self, secret_id: str, *, deadline: float | None = None
    ) -> dict[str, list[str]]:
        """DescribeSecret's VersionIdsToStages: each version id and the stages it carries
        (members of any other shape left out)."""
        deadline = self.deadline(SECRETS_MANAGER) if deadline is None else deadline
        data = self.call(DESCRIBE_SECRET, {"SecretId": secret_id}, deadline, secret_id)
        stages = data.get("VersionIdsToStages")
        if not isinstance(stages, Mapping):
            return {}
        return {
            version: [stage for stage in labels if isinstance(stage, str)]
            for version, labels in stages.items()
            if isinstance(version, str) and isinstance(labels, list)
        }

    def get_parameter(
        self,
        name: str,
        *,
        version: int | None = None,
        label: str | None = None,
        with_decryption: bool = False,
        deadline: float | None = None,
    ) -> dict[str, object]:
        """The parameter in the Go SDK's GetParameterOutput shape; a version wins over a label."""
        chosen = f":{version}" if version is not None else (f":{label}" if label else None)
        payload: dict[str, object] = {
            "Name": name + (chosen or ""),
            "WithDecryption": with_decryption,
        }
        deadline = self.deadline(SSM) if deadline is None else deadline
        data = self.call(GET_PARAMETER, payload, deadline, name)
        return sdk_shapes.parameter(data, chosen)

    def batch_get_secret_value(
        self, secret_ids: Sequence[str], *, deadline: float | None = None
    ) -> BatchResult:
        """BatchGetSecretValue: see batch_get_secret_value."""
        deadline = self.deadline(SECRETS_MANAGER) if deadline is None else deadline
        return batch_get_secret_value(self, secret_ids, deadline)

    def get_parameters(
        self,
        names: Sequence[ParameterName],
        with_decryption: bool,
        *,
        deadline: float | None = None,
    ) -> BatchResult:
        """GetParameters: see get_parameters."""
        deadline = self.deadline(SSM) if deadline is None else deadline
        return get_parameters(self, names, with_decryption, deadline)

    def get_parameters_by_path(
        self,
        path: str,
        *,
        recursive: bool,
        with_decryption: bool,
        limit: int,
        deadline: float | None = None,
    ) -> list[dict[str, object]]:
        """GetParametersByPath, every page: see get_parameters_by_path."""
        deadline = self.deadline(SSM) if deadline is None else deadline
        return get_parameters_by_path(
            self,
            path,
            recursive=recursive,
            with_decryption=with_decryption,
            limit=limit,
            deadline=deadline,
        )

    def call(
        self, operation: Operation, payload: dict[str, object], deadline: float, resource: str
    ) -> dict[str, object]:
        """`operation`'s answer from the endpoint `resource` resolves to."""
        return self._transport.call(
            operation.service,
            operation.name,
            payload,
            deadline,
            resource_id=resource,
            max_body=operation.max_body,
            credentials=self._credentials,
        )

    def get(self) -> AwsClient:
        """This client: it is made already (LazyClient.get makes one first)."""
        return self

    def endpoint(self, service: Service, resource_id: str) -> Endpoint:
        """Where a call for this resource goes (a 400 for an ARN of the wrong kind)."""
        return self._transport.endpoint(service, resource_id)

    def warm(self) -> None:
        """Do now what the first call would otherwise do first (load the trust store)."""
        self._transport.warm(services.SERVICES)

    def close(self) -> None:
        """Close every idle upstream connection."""
        self._transport.close()

    def credentials(self, deadline: float | None = None) -> Credentials:
        """The credentials its calls are signed with now: the ones a caller of the AWS JSON
        protocol signs with too (local_api/sdk_auth.py)."""
        return self._transport.credentials(deadline)
