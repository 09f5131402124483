"""Every exception of the extension; local_api/replies.py maps them to HTTP in one place.

Each local error class carries its own HTTP status and `__type`, so a raise site names the
class and a message, never a status or type literal. UpstreamError alone takes a status and
type: AWS's own, or, for one id of a many-id answer, the 400 and type that the single read
of that id would have had (aws/operations.py, aws/pairing.py).
"""

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
    # Set on the refusal of a call made for many keys as a whole (say, a batch refused for
    # one malformed id): it is no answer about any one of the others.
    of_many_keys = False
    # Set on a failure to get the credentials a call needs (a role that cannot be assumed):
    # no answer about the name asked for, so never remembered as one (is_not_there).
    of_credentials = False

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


class InvalidParameter(RequestError):
    """A query parameter has a value the endpoint does not accept."""


class PathTooLarge(InvalidParameter):
    """A path read found more parameters than the extension is set to return."""


class MissingParameter(RequestError):
    """A required query parameter is absent or empty."""

    error_type = "MissingParameterException"


class BadRequest(RequestError):
    """The request is malformed: request line, header field, or a bare CR or NUL in the head."""

    error_type = "BadRequestException"


class ForwardedRequest(RequestError):
    """The request passed through a proxy; refused so that a forgery cannot reach secrets."""

    error_type = "ForwardedRequestException"


class Unauthorized(RequestError):
    """The token header is missing or wrong."""

    status = 401
    error_type = "UnauthorizedException"


class NotFound(RequestError):
    """No route for the path."""

    status = 404
    error_type = "NotFoundException"


class MethodNotAllowed(RequestError):
    """Any method but GET."""

    status = 405
    error_type = "MethodNotAllowedException"


class PayloadTooLarge(RequestError):
    """A request body (the AWS JSON protocol's) is longer than the limit."""

    status = 413
    error_type = "PayloadTooLargeException"


class LengthRequired(RequestError):
    """A request body without a Content-Length (chunked): refused, never read."""

    status = 411
    error_type = "LengthRequiredException"


class UnknownOperation(RequestError):
    """An X-Amz-Target this extension does not serve (only reads are)."""

    error_type = "UnknownOperationException"


class SignatureRefused(RequestError):
    """An AWS JSON protocol request whose SigV4 signature does not authenticate it; the
    subclass names which of AWS's error types it is."""

    status = 403
    error_type = "InvalidSignatureException"


class IncompleteSignature(SignatureRefused):
    """No Authorization header, or one missing a part (Credential, SignedHeaders, ...)."""

    error_type = "IncompleteSignatureException"


class UnrecognizedClient(SignatureRefused):
    """Signed with another access key, or without (or with another) session token."""

    error_type = "UnrecognizedClientException"


class UriTooLong(RequestError):
    """The request line is longer than the limit."""

    status = 414
    error_type = "UriTooLongException"


class HeaderFieldsTooLarge(RequestError):
    """The header section has too many bytes or fields."""

    status = 431
    error_type = "RequestHeaderFieldsTooLargeException"


class TooManyConnections(RequestError):
    """The connection cap is reached."""

    status = 503
    error_type = "TooManyConnectionsException"


class UpstreamError(ExtensionError):
    """AWS answered with an error; status and type are AWS's own, passed through."""


class InvalidResponse(UpstreamError):
    """AWS answered 200 with a body that is not a JSON object."""

    status = 502
    error_type = "InvalidResponseException"


class UpstreamTimeout(ExtensionError):
    """The per-request deadline or the retry budget ran out."""

    status = 504
    error_type = "TimeoutException"


class UpstreamConnectionError(ExtensionError):
    """AWS could not be reached: DNS, refused, reset, TLS failure."""

    status = 502
    error_type = "ConnectionException"


class TlsVerificationError(UpstreamConnectionError):
    """The server's certificate was not trusted; retrying cannot help."""


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


# Answers about the name itself, not about AWS's health: the same until someone creates the
# name or changes a policy, so worth remembering a short while (lookups.py).
NOT_THERE_TYPES = frozenset(
    {"ResourceNotFoundException", "ParameterNotFound", "ParameterVersionNotFound"}
)


def is_not_there(exc: BaseException) -> bool:
    """True for AWS's answer that the name (or its version) does not exist or is denied."""
    if not isinstance(exc, UpstreamError) or is_transient(exc) or exc.of_credentials:
        return False
    return exc.error_type in NOT_THERE_TYPES or exc.error_type.startswith("AccessDenied")


def of_another_call(exc: BaseException) -> bool:
    """True for a refusal of a call made for many keys as a whole (see of_many_keys)."""
    return isinstance(exc, ExtensionError) and exc.of_many_keys


class MissingRegion(ExtensionError):
    """No region to sign with: neither AWS_REGION/AWS_DEFAULT_REGION nor an ARN gave one."""

    status = 500
    error_type = "MissingRegionException"


class InvalidEndpoint(ExtensionError):
    """An AWS_ENDPOINT_URL* override is not http(s)://host[:port][/path]."""

    status = 500
    error_type = "InvalidEndpointException"


class InvalidRegion(ExtensionError):
    """AWS_REGION or AWS_DEFAULT_REGION is not a region name, so no host can be built from it."""

    status = 500
    error_type = "InvalidRegionException"


class ResponseTooLarge(UpstreamConnectionError):
    """AWS (or what answers in its place) sent a body far larger than any secret or parameter."""

    error_type = "ResponseTooLargeException"


class StaleConnection(Exception):
    """Internal to connection_pool: a reused connection failed before any response byte."""


class ExtensionsApiError(RuntimeError):
    """The Lambda Extensions API refused a call (`status`) or answered something unusable.

    A RuntimeError, so that callers catching (OSError, RuntimeError, ValueError) catch it.
    """

    def __init__(self, message: str, path: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.status = status


def error_type_of(exc: BaseException) -> str:
    """The `__type` an error would answer with; for anything else, its class name."""
    return exc.error_type if isinstance(exc, ExtensionError) else type(exc).__name__
