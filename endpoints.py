"""Where each AWS request goes: the endpoint URL, the signing region and the signing name."""

from __future__ import annotations

from urllib.parse import urlsplit

from config import AwsConfig
from errors import ExtensionError

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from typing import Final

SECRETS_MANAGER = "secretsmanager"
SSM = "ssm"

# Region-name prefix -> partition; partition -> DNS suffix (botocore's endpoints.json).
_REGION_PARTITIONS = (
    ("us-gov-", "aws-us-gov"),
    ("us-isob-", "aws-iso-b"),
    ("us-isof-", "aws-iso-f"),
    ("us-iso-", "aws-iso"),
    ("eu-isoe-", "aws-iso-e"),
    ("eusc-", "aws-eusc"),
    ("cn-", "aws-cn"),
)
_DNS_SUFFIXES = {
    "aws": "amazonaws.com",
    "aws-cn": "amazonaws.com.cn",
    "aws-us-gov": "amazonaws.com",
    "aws-iso": "c2s.ic.gov",
    "aws-iso-b": "sc2s.sgov.gov",
    "aws-iso-e": "cloud.adc-e.uk",
    "aws-iso-f": "csp.hci.ic.gov",
    "aws-eusc": "amazonaws.eu",
}


class MissingRegion(ExtensionError):
    """No region to sign with: neither AWS_REGION/AWS_DEFAULT_REGION nor an ARN gave one."""

    status = 500
    error_type = "MissingRegionException"


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


def _override(aws: AwsConfig, service: str) -> str | None:
    specific = (
        aws.endpoint_url_secrets_manager if service == SECRETS_MANAGER else aws.endpoint_url_ssm
    )
    return specific or aws.endpoint_url


def _split_override(url: str) -> tuple[str, str]:
    """(origin, path) of an override URL; a base path is kept as AWS SDKs do."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ExtensionError(
            f"invalid endpoint override {url!r}: expected http(s)://host[:port][/path]",
            status=500,
            error_type="InvalidEndpointException",
        )
    return f"{parts.scheme}://{parts.netloc}", parts.path or "/"


def resolve(aws: AwsConfig, service: str, resource_id: str | None = None) -> Endpoint:
    """The endpoint for `service` ("secretsmanager" or "ssm") and, if given, this secret/name."""
    arn = parse_arn(resource_id) if resource_id else None
    region = arn.region if arn else aws.region
    if not region:
        raise MissingRegion("no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION)")
    override = _override(aws, service)
    if override:
        origin, path = _split_override(override)
        return Endpoint(origin=origin, path=path, region=region, signing_name=service)
    partition = arn.partition if arn else partition_of(region)
    suffix = _DNS_SUFFIXES.get(partition, "amazonaws.com")
    host = f"{service}-fips" if aws.use_fips else service
    return Endpoint(
        origin=f"https://{host}.{region}.{suffix}", path="/", region=region, signing_name=service
    )
