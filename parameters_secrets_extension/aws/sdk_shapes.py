"""AWS JSON responses reshaped as the AWS SDK for Go marshals its output structs.

The AWS extension answers with those structs, so a drop-in must send the same field names,
order and encodings (timestamps as RFC 3339 strings, binary as base64).
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import InvalidResponse
from .dates import datetime, timezone


def iso_date(value: object) -> str | None:
    """Epoch seconds (int or float) as ISO-8601 UTC with milliseconds and Z; None stays None.

    A number no date can have raises InvalidResponse."""
    if value is None:
        return None
    if isinstance(value, str):
        # Some emulators send a date string already; it is passed through untouched.
        return value
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    # Whole milliseconds first, so 40.499 never becomes 40.498999.
    try:
        seconds, millis = divmod(round(value * 1000), 1000)
        stamp = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    except (OverflowError, OSError, ValueError) as exc:  # past year 9999, or not a number
        raise InvalidResponse(f"AWS sent a date that is out of range: {value!r}") from exc
    return f"{stamp}.{millis:03d}Z"


def secret_value(data: Mapping[str, object]) -> dict[str, object]:
    """GetSecretValueOutput in the Go SDK's field order, missing fields null."""
    return {
        "ARN": data.get("ARN"),
        "CreatedDate": iso_date(data.get("CreatedDate")),
        "Name": data.get("Name"),
        "SecretBinary": data.get("SecretBinary"),
        "SecretString": data.get("SecretString"),
        "VersionId": data.get("VersionId"),
        "VersionStages": data.get("VersionStages"),
        "ResultMetadata": {},
    }


def parameter(data: Mapping[str, object], selector: str | None) -> dict[str, object]:
    """GetParameterOutput; `selector` (":3", ":label") is used when AWS did not echo one."""
    raw = data.get("Parameter")
    param: Mapping[str, object] = raw if isinstance(raw, Mapping) else {}
    return {
        "Parameter": {
            "ARN": param.get("ARN"),
            "DataType": param.get("DataType"),
            "LastModifiedDate": iso_date(param.get("LastModifiedDate")),
            "Name": param.get("Name"),
            "Selector": param.get("Selector") or selector,
            "SourceResult": param.get("SourceResult"),
            "Type": param.get("Type"),
            "Value": param.get("Value"),
            "Version": param.get("Version"),
        },
        "ResultMetadata": {},
    }
