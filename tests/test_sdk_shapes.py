"""The Go-SDK output shapes the AWS extension answers with, from fixed AWS JSON answers."""

from __future__ import annotations

import pytest

from parameters_secrets_extension.aws.sdk_shapes import iso_date, parameter, secret_value
from tests.conftest import SECRET_FIELDS


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1668586960.499, "2022-11-16T08:22:40.499Z"),
        (1668586960, "2022-11-16T08:22:40.000Z"),
        (1668586960.5, "2022-11-16T08:22:40.500Z"),
        (1668586960.9996, "2022-11-16T08:22:41.000Z"),
        (0, "1970-01-01T00:00:00.000Z"),
        (None, None),
        ("2022-11-16T08:22:40.499Z", "2022-11-16T08:22:40.499Z"),
        (True, None),
    ],
)
def test_iso_date(value: object, expected: str | None) -> None:
    assert iso_date(value) == expected


def test_secret_value_fills_every_field_in_order() -> None:
    shaped = secret_value({"Name": "n", "SecretBinary": "AAEC", "CreatedDate": 1668586960.499})
    assert shaped == {
        "ARN": None,
        "CreatedDate": "2022-11-16T08:22:40.499Z",
        "Name": "n",
        "SecretBinary": "AAEC",
        "SecretString": None,
        "VersionId": None,
        "VersionStages": None,
        "ResultMetadata": {},
    }
    assert list(shaped) == SECRET_FIELDS


def test_parameter_selector_and_nulls() -> None:
    answer = {"Parameter": {"Name": "/p", "Value": "v", "Version": 3, "Type": "String"}}
    shaped = parameter(answer, ":3")
    assert shaped == {
        "Parameter": {
            "ARN": None,
            "DataType": None,
            "LastModifiedDate": None,
            "Name": "/p",
            "Selector": ":3",
            "SourceResult": None,
            "Type": "String",
            "Value": "v",
            "Version": 3,
        },
        "ResultMetadata": {},
    }
    assert parameter(answer, None)["Parameter"]["Selector"] is None  # type: ignore[index]


def test_parameter_keeps_what_aws_echoes() -> None:
    answer = {"Parameter": {"Selector": ":blue", "SourceResult": "{}", "Version": 2}}
    shaped = parameter(answer, ":blue")["Parameter"]
    assert shaped["Selector"] == ":blue"  # type: ignore[index]
    assert shaped["SourceResult"] == "{}"  # type: ignore[index]
    assert parameter({}, None)["Parameter"]["Name"] is None  # type: ignore[index]
