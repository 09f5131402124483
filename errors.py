"""The extension's exceptions; local_server maps them to HTTP in one place."""

from __future__ import annotations

THROTTLING_TYPES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "ProvisionedThroughputExceededException",
    }
)


class ExtensionError(Exception):
    """Base class: an error the local API answers with `status` and `{"__type", "message"}`."""

    status = 500
    error_type = "InternalFailure"
    attempts: int | None = None  # upstream calls made before giving up, when one was made

    def __init__(self, message: str, *, status: int | None = None, error_type: str | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if error_type is not None:
            self.error_type = error_type


class RequestError(ExtensionError):
    """The local request itself is wrong (bad token, parameter, path or method)."""

    status = 400
    error_type = "InvalidParameterException"


class UpstreamError(ExtensionError):
    """AWS answered with an error; status and type are AWS's own, passed through."""


class UpstreamTimeout(ExtensionError):
    """The per-request deadline or the retry budget ran out."""

    status = 504
    error_type = "TimeoutException"


class UpstreamConnectionError(ExtensionError):
    """AWS could not be reached: DNS, refused, reset, TLS failure."""

    status = 502
    error_type = "ConnectionException"


class MissingCredentials(ExtensionError):
    """No AWS credentials could be found in the environment or the container provider."""

    status = 500
    error_type = "MissingCredentialsException"


class ConfigError(Exception):
    """The extension cannot serve at all: no token is set for clients to send."""

    def __init__(self, variable: str, value: str, valid: str, message: str | None = None):
        super().__init__(message or f"invalid {variable}={value!r}: valid values are {valid}")
        self.variable = variable
        self.value = value
        self.valid = valid


def is_transient(exc: BaseException) -> bool:
    """True for failures worth a retry or a stale answer: timeouts, network, 5xx, throttling."""
    if isinstance(exc, (UpstreamTimeout, UpstreamConnectionError)):
        return True
    if isinstance(exc, UpstreamError):
        return exc.status >= 500 or exc.error_type in THROTTLING_TYPES
    return False


class InvalidRegion(ExtensionError):
    """AWS_REGION or AWS_DEFAULT_REGION is not a region name, so no host can be built from it."""

    status = 500
    error_type = "InvalidRegionException"


class ResponseTooLarge(UpstreamConnectionError):
    """AWS (or what answers in its place) sent a body far larger than any secret or parameter."""

    error_type = "ResponseTooLargeException"
