"""Where each AWS request goes: the endpoint URL, the signing region and the signing name."""

from __future__ import annotations

import re

from .. import urls
from ..config import AwsConfig
from ..errors import InvalidEndpoint, InvalidParameter, InvalidRegion, MissingRegion
from ..services import SECRETS_MANAGER, SSM
from .partitions import DNS_SUFFIXES, PARTITIONS

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from typing import Final

    from ..services import Service

# Region-name prefix -> partition (botocore's endpoints.json); DNS suffixes: partitions.py.
_REGION_PARTITIONS = (
    ("us-gov-", "aws-us-gov"),
    ("us-isob-", "aws-iso-b"),
    ("us-isof-", "aws-iso-f"),
    ("us-iso-", "aws-iso"),
    ("eu-isoe-", "aws-iso-e"),
    ("eusc-", "aws-eusc"),
    ("cn-", "aws-cn"),
)
# Lower-case letters and digits in dash-separated groups, ending in a number: "us-east-1".
_REGION = re.compile(r"[a-z]{2,}(?:-[a-z0-9]+)*-[0-9]+")
_MAX_LABEL = 63  # a region is one DNS label
# The endpoint overrides: AwsConfig field and the variable it is read from.
_OVERRIDES = (
    ("endpoint_url", "AWS_ENDPOINT_URL"),
    (SECRETS_MANAGER.endpoint_setting, SECRETS_MANAGER.endpoint_variable),
    (SSM.endpoint_setting, SSM.endpoint_variable),
)
_SCHEME_PORTS = {"http": 80, "https": 443}


class Endpoint:
    """One resolved target: `origin` is scheme://host[:port], `path` the request path."""

    __slots__ = ("origin", "path", "region", "signing_name")

    def __init__(self, origin: str, path: str, region: str, signing_name: str) -> None:
        self.origin: Final = origin
        self.path: Final = path
        self.region: Final = region
        self.signing_name: Final = signing_name

    @property
    def url(self) -> str:
        """The full URL that is signed and requested."""
        return self.origin + self.path


class Arn:
    """The parts of an ARN that choose an endpoint."""

    __slots__ = ("partition", "region", "service")

    def __init__(self, partition: str, service: str, region: str) -> None:
        self.partition: Final = partition
        self.service: Final = service
        self.region: Final = region


def parse_arn(resource_id: str) -> Arn | None:
    """The ARN's partition, service and region, or None when the id is not a regional ARN."""
    parts = resource_id.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn" or not parts[1] or not parts[3]:
        return None
    return Arn(partition=parts[1], service=parts[2], region=parts[3])


def partition_of(region: str) -> str:
    """The partition a region belongs to, 'aws' unless its name says otherwise."""
    for prefix, partition in _REGION_PARTITIONS:
        if region.startswith(prefix):
            return partition
    return "aws"


def is_region(region: str, partition: str) -> bool:
    """True when `region` is shaped like a region name of `partition` and fits in a DNS label."""
    return (
        len(region) <= _MAX_LABEL
        and _REGION.fullmatch(region) is not None
        and partition_of(region) == partition
    )


def _check_arn(arn: Arn, service: Service) -> None:
    """Raise a 400 unless every part of `arn` that picks the host is valid for `service`."""
    if arn.partition not in PARTITIONS:
        raise InvalidParameter("invalid ARN: unknown partition")
    if arn.service != service.signing_name:
        raise InvalidParameter(f"invalid ARN: expected a {service.signing_name} ARN on this route")
    if not is_region(arn.region, arn.partition):
        raise InvalidParameter(f"invalid ARN: its region is not a region of {arn.partition}")


def _override(aws: AwsConfig, service: Service) -> str | None:
    """The service's own endpoint override, else the one for every service, else None."""
    specific: str | None = getattr(aws, service.endpoint_setting)
    return specific or aws.endpoint_url


def _split_override(url: str) -> tuple[str, str]:
    """(origin, path) of an override URL; a base path is kept as AWS SDKs do, userinfo is not."""
    try:
        parts = urls.split(url.strip())
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a bad IPv6 literal, or a port that is not a number in range
        valid = False
    if not valid:
        raise InvalidEndpoint(
            f"invalid endpoint override {urls.without_userinfo(url)!r}: expected http(s)://host[:port][/path]"
        )
    return urls.origin(parts.scheme, parts.netloc), parts.path or "/"


def names_own_address(url: str, port: int) -> bool:
    """True when `url` reaches this host's loopback on `port`: the extension's own address,
    whatever the name (localhost, 127.0.0.0/8, ::1, 0.0.0.0)."""
    try:
        parts = urls.split(url.strip())
        host, url_port = parts.hostname, parts.port
    except ValueError:  # not a URL resolve() would take either; it reports it
        return False
    if parts.scheme not in _SCHEME_PORTS or not host:
        return False
    if (url_port or _SCHEME_PORTS[parts.scheme]) != port:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    # Imported here, past the port's check (1.2-1.5 ms of CPU): only an override on this
    # extension's own port gets this far.
    import ipaddress  # noqa: PLC0415

    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def without_own_address(aws: AwsConfig, port: int) -> tuple[AwsConfig, list[str]]:
    """`aws` without the endpoint overrides that name the extension's own address (the
    function's AWS_ENDPOINT_URL_* point its SDK at the extension, and the extension runs
    with the function's environment), and the variables left out: no call loops back."""
    ignored = [
        (field, variable)
        for field, variable in _OVERRIDES
        if getattr(aws, field) and names_own_address(getattr(aws, field), port)
    ]
    if not ignored:
        return aws, []
    fields = {name: getattr(aws, name) for name in AwsConfig.__slots__}
    for field, _ in ignored:
        fields[field] = None
    return AwsConfig(**fields), [variable for _, variable in ignored]


def resolve(aws: AwsConfig, service: Service, resource_id: str | None = None) -> Endpoint:
    """The endpoint for `service` and, if given, this secret or parameter name.

    An ARN's partition, service and region are checked (400 when wrong), and so is the
    configured region, before any of them can name a host.
    """
    arn = parse_arn(resource_id) if resource_id else None
    if arn:
        _check_arn(arn, service)
        partition, region = arn.partition, arn.region
    elif not aws.region:
        raise MissingRegion("no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION)")
    else:
        region = aws.region
        partition = partition_of(region)
        if not is_region(region, partition):
            raise InvalidRegion(
                f"AWS_REGION/AWS_DEFAULT_REGION {region[:_MAX_LABEL]!r} is not a region name"
            )
    override = _override(aws, service)
    if override:
        origin, path = _split_override(override)
        return Endpoint(origin=origin, path=path, region=region, signing_name=service.signing_name)
    host = f"{service.host_prefix}-fips" if aws.use_fips else service.host_prefix
    return Endpoint(
        origin=f"https://{host}.{region}.{DNS_SUFFIXES[partition]}",
        path="/",
        region=region,
        signing_name=service.signing_name,
    )
