"""The AWS services the extension serves, one record each: the only place a service is described.

Everything that differs between services is read from its record: the local routes, the
upstream operation, the signing name and host, the TTL and timeout variables, the endpoint
override, and the query selectors that make up a cache key. Adding a route means adding it
to `routes`; adding a service means a record in SERVICES plus its one handler in
local_server.Api and in lookups.Lookups. Code that meets a name not in the table raises,
never falls through to "the other service".
"""

from __future__ import annotations

from collections import namedtuple


class Service(
    namedtuple(
        "Service",
        "name routes operation target host_prefix signing_name ttl_variable timeout_variable"
        " endpoint_variable endpoint_setting selectors",
    )
):
    """One service. `name` is what cache keys, prefetch entries and log lines call it."""

    __slots__ = ()
    name: str
    routes: tuple[str, ...]  # local paths; the first is the one error messages name
    operation: str  # the AWS API operation, as log lines name it
    target: str  # the X-Amz-Target header of that operation (AWS JSON 1.1)
    host_prefix: str  # the endpoint host is <host_prefix>[-fips].<region>.<dns suffix>
    signing_name: str  # the SigV4 service name, and the service part of the ARNs it takes
    ttl_variable: str  # seconds an answer is cached
    timeout_variable: str  # milliseconds an upstream request may take, 0 meaning unset
    endpoint_variable: str  # its own endpoint override, which wins over AWS_ENDPOINT_URL
    endpoint_setting: str  # the config.AwsConfig field that holds that override
    selectors: tuple[str, ...]  # the query names after the id in a cache key, in key order


SECRETS_MANAGER = Service(
    name="secretsmanager",
    routes=("/secretsmanager/get",),
    operation="GetSecretValue",
    target="secretsmanager.GetSecretValue",
    host_prefix="secretsmanager",
    signing_name="secretsmanager",
    ttl_variable="SECRETS_MANAGER_TTL",
    timeout_variable="SECRETS_MANAGER_TIMEOUT_MILLIS",
    endpoint_variable="AWS_ENDPOINT_URL_SECRETS_MANAGER",
    endpoint_setting="endpoint_url_secrets_manager",
    selectors=("versionId", "versionStage"),
)
SSM = Service(
    name="ssm",
    routes=("/systemsmanager/parameters/get", "/systemsmanager/parameters/get/"),
    operation="GetParameter",
    target="AmazonSSM.GetParameter",
    host_prefix="ssm",
    signing_name="ssm",
    ttl_variable="SSM_PARAMETER_STORE_TTL",
    timeout_variable="SSM_PARAMETER_STORE_TIMEOUT_MILLIS",
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
