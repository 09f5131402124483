"""Endpoint resolution: regions, partitions, FIPS, overrides and ARN regions."""

from __future__ import annotations

from typing import Any

import pytest

from parameters_secrets_extension import urls
from parameters_secrets_extension.aws import endpoints
from parameters_secrets_extension.aws.endpoints import resolve
from parameters_secrets_extension.config import AwsConfig
from parameters_secrets_extension.errors import (
    ExtensionError,
    InvalidRegion,
    MissingRegion,
    RequestError,
)
from parameters_secrets_extension.services import SECRETS_MANAGER, SSM, Service

SM_ARN_WEST = "arn:aws:secretsmanager:us-west-2:123456789012:secret:app/db-AbCdEf"
SM_ARN_CN = "arn:aws-cn:secretsmanager:cn-northwest-1:123456789012:secret:x-AbCdEf"
SSM_ARN_EU = "arn:aws:ssm:eu-west-1:123456789012:parameter/app/plain"


@pytest.mark.parametrize(
    ("region", "service", "fips", "expected"),
    [
        ("us-east-1", SECRETS_MANAGER, False, "https://secretsmanager.us-east-1.amazonaws.com"),
        ("us-east-1", SSM, False, "https://ssm.us-east-1.amazonaws.com"),
        ("eu-central-2", SSM, False, "https://ssm.eu-central-2.amazonaws.com"),
        (
            "ap-southeast-4",
            SECRETS_MANAGER,
            False,
            "https://secretsmanager.ap-southeast-4.amazonaws.com",
        ),
        (
            "cn-north-1",
            SECRETS_MANAGER,
            False,
            "https://secretsmanager.cn-north-1.amazonaws.com.cn",
        ),
        ("cn-northwest-1", SSM, False, "https://ssm.cn-northwest-1.amazonaws.com.cn"),
        ("us-gov-west-1", SSM, False, "https://ssm.us-gov-west-1.amazonaws.com"),
        ("us-iso-east-1", SSM, False, "https://ssm.us-iso-east-1.c2s.ic.gov"),
        ("us-east-1", SECRETS_MANAGER, True, "https://secretsmanager-fips.us-east-1.amazonaws.com"),
        ("us-west-2", SSM, True, "https://ssm-fips.us-west-2.amazonaws.com"),
        (
            "us-gov-east-1",
            SECRETS_MANAGER,
            True,
            "https://secretsmanager-fips.us-gov-east-1.amazonaws.com",
        ),
    ],
)
def test_regional_endpoints(region: str, service: Service, fips: bool, expected: str) -> None:
    endpoint = resolve(AwsConfig(region=region, use_fips=fips), service, "plain-name")
    assert endpoint.origin == expected
    assert endpoint.path == "/"
    assert endpoint.url == expected + "/"
    assert endpoint.region == region
    assert endpoint.signing_name == service.signing_name


@pytest.mark.parametrize(
    ("fields", "service", "expected_origin", "expected_path"),
    [
        ({"endpoint_url": "http://127.0.0.1:4566"}, SSM, "http://127.0.0.1:4566", "/"),
        ({"endpoint_url": "http://127.0.0.1:4566"}, SECRETS_MANAGER, "http://127.0.0.1:4566", "/"),
        (
            {"endpoint_url": "http://a:1", "endpoint_url_ssm": "http://b:2"},
            SSM,
            "http://b:2",
            "/",
        ),
        (
            {"endpoint_url": "http://a:1", "endpoint_url_ssm": "http://b:2"},
            SECRETS_MANAGER,
            "http://a:1",
            "/",
        ),
        (
            {
                "endpoint_url": "http://a:1",
                "endpoint_url_secrets_manager": "https://sm.example:8443/base",
            },
            SECRETS_MANAGER,
            "https://sm.example:8443",
            "/base",
        ),
        (
            {"endpoint_url_secrets_manager": "https://sm.example"},
            SSM,
            "https://ssm.us-east-1.amazonaws.com",
            "/",
        ),
        (
            {"endpoint_url": "http://localhost:5000", "use_fips": True},
            SSM,
            "http://localhost:5000",
            "/",
        ),
    ],
)
def test_overrides_win(
    fields: dict[str, Any], service: Service, expected_origin: str, expected_path: str
) -> None:
    aws = AwsConfig(region="us-east-1", **fields)
    endpoint = resolve(aws, service, "name")
    assert (endpoint.origin, endpoint.path) == (expected_origin, expected_path)
    assert endpoint.region == "us-east-1"


def test_arn_region_and_partition_win_over_config() -> None:
    aws = AwsConfig(region="us-east-1")
    west = resolve(aws, SECRETS_MANAGER, SM_ARN_WEST)
    assert west.origin == "https://secretsmanager.us-west-2.amazonaws.com"
    assert west.region == "us-west-2"
    china = resolve(aws, SECRETS_MANAGER, SM_ARN_CN)
    assert china.origin == "https://secretsmanager.cn-northwest-1.amazonaws.com.cn"
    assert china.region == "cn-northwest-1"
    europe = resolve(aws, SSM, SSM_ARN_EU)
    assert europe.origin == "https://ssm.eu-west-1.amazonaws.com"
    fips = resolve(AwsConfig(region="us-east-1", use_fips=True), SECRETS_MANAGER, SM_ARN_WEST)
    assert fips.origin == "https://secretsmanager-fips.us-west-2.amazonaws.com"


def test_arn_region_signs_requests_to_an_override() -> None:
    aws = AwsConfig(region="us-east-1", endpoint_url="http://127.0.0.1:5000")
    endpoint = resolve(aws, SECRETS_MANAGER, SM_ARN_WEST)
    assert endpoint.origin == "http://127.0.0.1:5000"
    assert endpoint.region == "us-west-2"


def test_arn_gives_the_region_when_config_has_none() -> None:
    assert resolve(AwsConfig(), SSM, SSM_ARN_EU).region == "eu-west-1"


@pytest.mark.parametrize(
    "name",
    ["app/db", "arn:aws", "arn:aws:ssm::123:parameter/x", "arn::ssm:us-west-2:1:parameter/x", ""],
)
def test_not_regional_arns_are_plain_names(name: str) -> None:
    assert endpoints.parse_arn(name) is None
    assert resolve(AwsConfig(region="us-east-1"), SSM, name).region == "us-east-1"


def test_missing_region_is_a_clear_error() -> None:
    with pytest.raises(MissingRegion) as caught:
        resolve(AwsConfig(), SECRETS_MANAGER, "app/db")
    assert caught.value.status == 500
    assert caught.value.error_type == "MissingRegionException"
    assert "AWS_REGION" in caught.value.message


def test_invalid_override_is_a_clear_error() -> None:
    with pytest.raises(ExtensionError) as caught:
        resolve(AwsConfig(region="us-east-1", endpoint_url="localhost:4566"), SSM, "x")
    assert "localhost:4566" in caught.value.message


@pytest.mark.parametrize(
    ("region", "partition"),
    [
        ("us-east-1", "aws"),
        ("cn-north-1", "aws-cn"),
        ("us-gov-west-1", "aws-us-gov"),
        ("us-isob-east-1", "aws-iso-b"),
        ("us-iso-west-1", "aws-iso"),
        ("us-isof-south-1", "aws-iso-f"),
        ("eu-isoe-west-1", "aws-iso-e"),
        ("eusc-de-east-1", "aws-eusc"),
    ],
)
def test_partition_of(region: str, partition: str) -> None:
    assert endpoints.partition_of(region) == partition


# One real region of each partition, and the host its ARN must lead to.
PARTITION_REGIONS = [
    ("aws", "us-east-1", "amazonaws.com"),
    ("aws", "ap-southeast-4", "amazonaws.com"),
    ("aws", "il-central-1", "amazonaws.com"),
    ("aws-cn", "cn-north-1", "amazonaws.com.cn"),
    ("aws-us-gov", "us-gov-west-1", "amazonaws.com"),
    ("aws-iso", "us-iso-east-1", "c2s.ic.gov"),
    ("aws-iso-b", "us-isob-east-1", "sc2s.sgov.gov"),
    ("aws-iso-e", "eu-isoe-west-1", "cloud.adc-e.uk"),
    ("aws-iso-f", "us-isof-south-1", "csp.hci.ic.gov"),
    ("aws-eusc", "eusc-de-east-1", "amazonaws.eu"),
]


@pytest.mark.parametrize(("partition", "region", "suffix"), PARTITION_REGIONS)
@pytest.mark.parametrize("service", [SECRETS_MANAGER, SSM])
def test_arns_of_every_partition(
    partition: str, region: str, suffix: str, service: Service
) -> None:
    resource = "secret:x-AbCdEf" if service == SECRETS_MANAGER else "parameter/app/x"
    arn = f"arn:{partition}:{service.signing_name}:{region}:123456789012:{resource}"
    endpoint = resolve(AwsConfig(region="us-east-1"), service, arn)
    assert endpoint.origin == f"https://{service.host_prefix}.{region}.{suffix}"
    assert endpoint.region == region
    assert endpoint.signing_name == service.signing_name


@pytest.mark.parametrize(("partition", "region", "suffix"), PARTITION_REGIONS)
def test_configured_region_of_every_partition(partition: str, region: str, suffix: str) -> None:
    assert endpoints.is_region(region, partition)
    endpoint = resolve(AwsConfig(region=region), SSM, "/app/x")
    assert endpoint.origin == f"https://ssm.{region}.{suffix}"


CRAFTED_REGIONS = [
    "x@127.0.0.1#",
    "x@127.0.0.1/",
    "x@127.0.0.1?",
    "us-east-1.evil.example",
    "us-east-1/",
    "us-east-1?a",
    "us-east-1#",
    "us-east-1%2F",
    "[",
    " us-east-1",
    "us-east-1 ",
    "us-east-1\n",
    "us-east-1\x00",
    "US-EAST-1",
    "us-east-\uff11",
    "us-\u00e9ast-1",
    "us--east-1",
    "us-east-",
    "us-east",
    "-1",
    "u-east-1",
    "a" * 298 + "-1",
]


@pytest.mark.parametrize("region", CRAFTED_REGIONS)
@pytest.mark.parametrize("service", [SECRETS_MANAGER, SSM])
def test_crafted_arn_regions_are_a_400(region: str, service: Service) -> None:
    with pytest.raises(RequestError) as caught:
        resolve(
            AwsConfig(region="us-east-1"), service, f"arn:aws:{service.signing_name}:{region}:1:x"
        )
    assert caught.value.status == 400
    assert caught.value.error_type == "InvalidParameterException"
    assert "region" in caught.value.message


@pytest.mark.parametrize(
    ("arn", "says"),
    [
        ("arn:evil:ssm:us-east-1:1:parameter/x", "partition"),
        ("arn:aws-mars:ssm:us-east-1:1:parameter/x", "partition"),
        ("arn:AWS:ssm:us-east-1:1:parameter/x", "partition"),
        ("arn:evil:ssm:x@127.0.0.1#:1:parameter/x", "partition"),
        ("arn:aws:ssm:cn-north-1:1:parameter/x", "region"),
        ("arn:aws:ssm:us-gov-west-1:1:parameter/x", "region"),
        ("arn:aws-cn:ssm:us-east-1:1:parameter/x", "region"),
        ("arn:aws-us-gov:ssm:us-east-1:1:parameter/x", "region"),
        ("arn:aws-iso:ssm:us-isob-east-1:1:parameter/x", "region"),
        ("arn:aws:secretsmanager:us-east-1:1:secret:x", "ssm"),
        ("arn:aws:s3:us-east-1:1:parameter/x", "ssm"),
    ],
)
def test_arns_that_do_not_fit_the_route_are_a_400(arn: str, says: str) -> None:
    with pytest.raises(RequestError) as caught:
        resolve(AwsConfig(region="us-east-1", endpoint_url="http://127.0.0.1:1"), SSM, arn)
    assert caught.value.status == 400
    assert says in caught.value.message


@pytest.mark.parametrize("region", ["x@127.0.0.1#", "us-east-1.evil.example", "US-EAST-1", " "])
def test_invalid_configured_region_is_a_clear_error(region: str) -> None:
    with pytest.raises(InvalidRegion) as caught:
        resolve(AwsConfig(region=region), SECRETS_MANAGER, "app/db")
    assert caught.value.error_type == "InvalidRegionException"
    assert "AWS_REGION" in caught.value.message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://admin:hunter2@127.0.0.1:4566", "http://127.0.0.1:4566"),
        ("https://user@sm.example/base", "https://sm.example/base"),
        ("https://a:b@c@sm.example:8443/p@q?x=@", "https://sm.example:8443/p@q?x=@"),
        ("admin:hunter2@localhost:4566", "localhost:4566"),
        ("http://127.0.0.1:4566/a?b=c@d", "http://127.0.0.1:4566/a?b=c@d"),
        ("http://[::1]:4566", "http://[::1]:4566"),
        ("//u:p@host/x", "//host/x"),
        ("1http://u:p@host", "1http://u:p@host"),  # not a scheme: no authority follows
    ],
)
def test_without_userinfo_removes_userinfo(url: str, expected: str) -> None:
    assert urls.without_userinfo(url) == expected
    if expected == url:
        return
    # With a mark, the userinfo's place is shown and nothing of it remains.
    marked = urls.without_userinfo(url, "<redacted>@")
    assert "<redacted>@" in marked
    assert all(word not in marked for word in ("admin", "hunter2", "user"))


def test_override_userinfo_never_reaches_the_origin() -> None:
    aws = AwsConfig(region="us-east-1", endpoint_url="http://admin:hunter2@127.0.0.1:4566/base")
    endpoint = resolve(aws, SSM, "x")
    assert (endpoint.origin, endpoint.path) == ("http://127.0.0.1:4566", "/base")


@pytest.mark.parametrize(
    "url", ["http://admin:hunter2@h:port", "http://admin:hunter2@[::1", "ftp://admin:hunter2@h"]
)
def test_invalid_override_error_hides_userinfo(url: str) -> None:
    with pytest.raises(ExtensionError) as caught:
        resolve(AwsConfig(region="us-east-1", endpoint_url=url), SSM, "x")
    assert caught.value.error_type == "InvalidEndpointException"
    assert "hunter2" not in caught.value.message
