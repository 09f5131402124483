"""The AWS services the extension serves, one record each: the only place a service is described.

Everything that differs between services is read from its record: the local routes, the
names of its upstream operations (as log lines give them), the signing name and host, the
TTL and timeout variables, the endpoint override, and the query selectors that make up a
cache key. Adding a route: its path and route name in `routes`, its query in
local_api/queries.py, its handler in local_api/routes.Api, its answer in lookups.py
(README.md, "Layout"). Adding a service: a record in SERVICES, its AwsConfig endpoint
field and setting (config.py), its operations (aws/operations.py), its routes as above and
its prefetch group (lookups.py). Code that meets a name not in the table raises, never
falls through to "the other service".
"""

from __future__ import annotations

import time

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from typing import Final


# How long one upstream call may take, retries included, when its service's *_TIMEOUT_MILLIS
# is unset: each socket operation is bounded anyway, but an upstream that trickles bytes or a
# full pool would otherwise hold a caller indefinitely.
UNSET_TIMEOUT_SECONDS = 30.0


def deadline_after(timeout_ms: int) -> float:
    """The time.monotonic() by which a local request that starts now must end, given its
    service's `*_TIMEOUT_MILLIS` (0: UNSET_TIMEOUT_SECONDS)."""
    return time.monotonic() + (timeout_ms / 1000 if timeout_ms else UNSET_TIMEOUT_SECONDS)


class Service:
    """One service. `name` is what cache keys, prefetch entries and log lines call it.

    A plain class rather than a namedtuple: there are only two instances, and creating a
    namedtuple class at import costs several times more of the extension's init.
    """

    __slots__ = (
        "batch_operation",
        "endpoint_setting",
        "endpoint_variable",
        "host_prefix",
        "max_batch_ids",
        "name",
        "operation",
        "path_operation",
        "routes",
        "selectors",
        "signing_name",
        "target",
        "timeout_setting",
        "timeout_variable",
        "ttl_variable",
    )

    def __init__(
        self,
        *,
        name: str,
        routes: dict[str, str],
        operation: str,
        target: str,
        batch_operation: str,
        max_batch_ids: int,
        path_operation: str | None,
        host_prefix: str,
        signing_name: str,
        ttl_variable: str,
        timeout_variable: str,
        timeout_setting: str,
        endpoint_variable: str,
        endpoint_setting: str,
        selectors: tuple[str, ...],
    ) -> None:
        self.name: Final = name
        # Local path -> route name; the single read's route is the service's name.
        self.routes: Final = routes
        self.operation: Final = operation  # the AWS API operation, as log lines name it
        self.target: Final = target  # its X-Amz-Target header (AWS JSON 1.1)
        self.batch_operation: Final = batch_operation  # reads many ids in one call
        self.max_batch_ids: Final = max_batch_ids  # the most ids that call takes
        self.path_operation: Final = path_operation  # reads a whole path, if the service has paths
        self.host_prefix: Final = host_prefix  # host: <prefix>[-fips].<region>.<dns suffix>
        self.signing_name: Final = signing_name  # SigV4 service name, and its ARNs' service
        self.ttl_variable: Final = ttl_variable  # seconds an answer is cached
        self.timeout_variable: Final = timeout_variable  # ms an upstream request may take
        self.timeout_setting: Final = timeout_setting  # the Config field holding that
        self.endpoint_variable: Final = endpoint_variable  # its own endpoint override
        self.endpoint_setting: Final = endpoint_setting  # the AwsConfig field holding that
        self.selectors: Final = selectors  # query names after the id in a cache key, in order

    def __repr__(self) -> str:
        return f"Service({self.name!r})"

    def target_of(self, operation: str) -> str:
        """The X-Amz-Target header of another operation of this service."""
        return self.target.rpartition(".")[0] + "." + operation


SECRETS_MANAGER = Service(
    name="secretsmanager",
    routes={
        "/secretsmanager/get": "secretsmanager",
        "/secretsmanager/batch": "secretsmanager-batch",
    },
    operation="GetSecretValue",
    target="secretsmanager.GetSecretValue",
    batch_operation="BatchGetSecretValue",
    max_batch_ids=20,
    path_operation=None,
    host_prefix="secretsmanager",
    signing_name="secretsmanager",
    ttl_variable="SECRETS_MANAGER_TTL",
    timeout_variable="SECRETS_MANAGER_TIMEOUT_MILLIS",
    timeout_setting="secrets_manager_timeout_ms",
    endpoint_variable="AWS_ENDPOINT_URL_SECRETS_MANAGER",
    endpoint_setting="endpoint_url_secrets_manager",
    selectors=("versionId", "versionStage"),
)
SSM = Service(
    name="ssm",
    routes={
        "/systemsmanager/parameters/get": "ssm",
        "/systemsmanager/parameters/get/": "ssm",
        "/systemsmanager/parameters/batch": "ssm-batch",
        "/systemsmanager/parameters/get-by-path": "ssm-path",
    },
    operation="GetParameter",
    target="AmazonSSM.GetParameter",
    batch_operation="GetParameters",
    max_batch_ids=10,
    path_operation="GetParametersByPath",
    host_prefix="ssm",
    signing_name="ssm",
    ttl_variable="SSM_PARAMETER_STORE_TTL",
    timeout_variable="SSM_PARAMETER_STORE_TIMEOUT_MILLIS",
    timeout_setting="ssm_timeout_ms",
    endpoint_variable="AWS_ENDPOINT_URL_SSM",
    endpoint_setting="endpoint_url_ssm",
    selectors=("version", "label", "withDecryption"),
)
SERVICES = (SECRETS_MANAGER, SSM)
BY_NAME = {service.name: service for service in SERVICES}


def named(name: str) -> Service:
    """The service called `name`; ValueError for any other name (a bug: input never gets here)."""
    service = BY_NAME.get(name)
    if service is None:
        raise ValueError(f"no service is called {name!r}")
    return service
