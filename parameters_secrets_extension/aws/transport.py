"""One signed AWS call, whatever the operation: endpoint, deadline, retries, signing, error
parsing. Like botocore's endpoint.py, it knows no operation: operations.py holds them (AWS
JSON 1.1, through call()), and roles.py its one Query-protocol call (through send()).
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from collections.abc import Callable, Iterable

import sigv4

from ..config import AwsConfig
from ..errors import (
    ExtensionError,
    InvalidResponse,
    ResponseTooLarge,
    TlsVerificationError,
    UpstreamError,
    UpstreamTimeout,
    is_transient,
)
from ..logs import log
from ..response_reader import Response
from ..services import Service
from ..urls import split
from ..version import NAME, VERSION
from . import endpoints
from .connection_pool import MAX_RESPONSE_BYTES, Pools, TlsSettings
from .credentials import CredentialProvider, Credentials, utc_now

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    import random
    from datetime import datetime

USER_AGENT = f"{NAME}/{VERSION} python/{sys.version_info[0]}.{sys.version_info[1]}"
MAX_ATTEMPTS = 3
BACKOFF_BASE_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 2.0
MAX_MESSAGE_CHARS = 1000
_CONTENT_TYPE = "application/x-amz-json-1.1"
# Only failures use these: compiled (and cached by re) at the first, not at the first call's
# import (about 0.1 ms each).
_XML_CODE = r"<Code>(.*?)</Code>"
_XML_MESSAGE = r"<Message>(.*?)</Message>"
_SIGNATURE = r"Signature=([0-9a-f]+)"


class Transport:
    """Signed calls with pooled connections, credentials, retries and the caller's deadline."""

    def __init__(
        self,
        aws: AwsConfig,
        *,
        max_connections: int,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = utc_now,
        rng: random.Random | None = None,
    ) -> None:
        self._aws = aws
        self._sleep = sleep
        self._now = now
        self._rng = rng  # made at the first retry (_backoff)
        self._credentials = CredentialProvider(aws, now=now)
        self._tls = TlsSettings(aws.ca_bundle)
        self._pools = Pools(max_connections=max_connections, tls=self._tls)

    def warm(self, services: Iterable[Service]) -> None:
        """Make the TLS context now if a call to one of `services` would use TLS: _ssl's
        imports (3 ms of CPU) and the trust store (2 ms with a hashed CA directory, about 20
        with the whole CA bundle: trust_store.py), that the first call then does not pay."""
        for service in services:
            with contextlib.suppress(ExtensionError):  # no region: the first call says so
                if endpoints.resolve(self._aws, service).origin.startswith("https:"):
                    self._tls.context()
                    return

    def endpoint(self, service: Service, resource_id: str) -> endpoints.Endpoint:
        """Where a call for this resource goes (a 400 for an ARN of the wrong kind)."""
        return endpoints.resolve(self._aws, service, resource_id)

    def call(
        self,
        service: Service,
        operation: str,
        payload: dict[str, object],
        deadline: float,
        *,
        resource_id: str,
        max_body: int = MAX_RESPONSE_BYTES,
        credentials: CredentialProvider | None = None,
    ) -> dict[str, object]:
        """One signed AWS JSON 1.1 call of `operation`, with retries, within `deadline` (the
        local request's, a time.monotonic value), to the endpoint `resource_id` resolves
        to, signed with `credentials` (by default the function's own); the JSON object it
        answers.

        An answer over `max_body` bytes is refused with 502 ResponseTooLargeException.
        """
        target = service.target_of(operation)
        endpoint = endpoints.resolve(self._aws, service, resource_id)
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"Content-Type": _CONTENT_TYPE, "X-Amz-Target": target}
        response = self.send(
            endpoint, headers, body, deadline, max_body=max_body, credentials=credentials
        )
        return _json_object(response)

    def send(
        self,
        endpoint: endpoints.Endpoint,
        headers: dict[str, str],
        body: bytes,
        deadline: float,
        *,
        max_body: int = MAX_RESPONSE_BYTES,
        credentials: CredentialProvider | None = None,
    ) -> Response:
        """POST `body` with `headers` (its Content-Type, any X-Amz-Target) to `endpoint`,
        signed, with retries, within `deadline`: AWS's 200 answer, else its error raised.
        Whatever the protocol: the caller builds the body and reads the answer."""
        target = headers.get("X-Amz-Target") or endpoint.signing_name
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._attempt(
                    endpoint, headers, body, deadline, max_body=max_body, credentials=credentials
                )
            except ExtensionError as exc:
                exc.attempts = attempt
                if attempt >= MAX_ATTEMPTS or not _retryable(exc):
                    raise
                delay = self._backoff(attempt)
                if time.monotonic() + delay >= deadline:
                    if isinstance(exc, UpstreamTimeout):
                        raise
                    timeout = UpstreamTimeout(
                        f"{target}: the deadline leaves no time to retry after {exc.error_type}"
                    )
                    timeout.attempts = attempt
                    raise timeout from exc
                log.debug(
                    "%s attempt %d failed (%s %s), retrying in %.3f s",
                    target,
                    attempt,
                    exc.status,
                    exc.error_type,
                    delay,
                )
                self._sleep(delay)

    def _backoff(self, attempt: int) -> float:
        """The wait before retry `attempt` + 1: full jitter under an exponential cap."""
        if self._rng is None:
            import random  # noqa: PLC0415 -- only a retry needs it: off the first call's path

            # Jitter only spreads retries out in time; it needs no cryptographic strength.
            self._rng = random.Random()  # noqa: S311
        cap = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
        return self._rng.uniform(0, cap)

    def close(self) -> None:
        """Close every idle upstream connection."""
        self._pools.close()

    def credentials(self, deadline: float | None = None) -> Credentials:
        """The credentials calls are signed with now (local_api/sdk_auth verifies with them)."""
        return self._credentials.get(deadline)

    def _attempt(
        self,
        endpoint: endpoints.Endpoint,
        headers: dict[str, str],
        body: bytes,
        deadline: float,
        *,
        max_body: int,
        credentials: CredentialProvider | None,
    ) -> Response:
        creds = (credentials or self._credentials).get(deadline)
        signed = sigv4.sign(
            "POST",
            endpoint.url,
            {"Host": split(endpoint.origin).netloc, **headers},
            body,
            access_key=creds.access_key,
            secret_key=creds.secret_key,
            session_token=creds.session_token,
            region=endpoint.region,
            service=endpoint.signing_name,
            now=self._now(),
        )
        # Added after signing: proxies may rewrite it, and AWS does not need it signed.
        signed["User-Agent"] = USER_AGENT
        response = self._pools.get(endpoint.origin).request(
            "POST", endpoint.path, signed, body, deadline=deadline, max_body=max_body
        )
        if response.status == 200:
            return response
        secrets = [creds.access_key, creds.secret_key, creds.session_token]
        secrets += re.findall(_SIGNATURE, signed.get("Authorization", ""))
        raise upstream_error(response, secrets)


def _retryable(exc: ExtensionError) -> bool:
    # An untrusted certificate or an oversized body would come back the same way.
    return is_transient(exc) and not isinstance(exc, (TlsVerificationError, ResponseTooLarge))


def _json_object(response: Response) -> dict[str, object]:
    try:
        data = json.loads(response.body, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError) as exc:
        raise InvalidResponse("AWS sent a response that is not JSON") from exc
    if not isinstance(data, dict):
        raise InvalidResponse("AWS sent a JSON response that is not an object")
    return data


def _no_constant(name: str) -> object:
    # NaN and Infinity are not JSON (RFC 8259); Python's parser takes them, and its encoder
    # would send them on to clients whose parsers do not.
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if value - value != 0:  # inf or nan: 1e400 overflows to inf
        raise ValueError(f"{text} is not a finite number")
    return value


def upstream_error(response: Response, redact: Iterable[str | None] = ()) -> UpstreamError:
    """The AWS error in `response`, with AWS's status, type and a cleaned message."""
    if not 400 <= response.status <= 599:
        # Not an error status, or one without a body (1xx, 204, 304): passing it on would
        # send a client a JSON body its framing does not allow, desynchronising keep-alive.
        return InvalidResponse(f"AWS answered HTTP {response.status}, not an answer or an error")
    error_type, message = _parse_error(response)
    if not error_type:
        error_type = "InternalFailure" if response.status >= 500 else "UnknownError"
    if not message:
        message = f"AWS answered HTTP {response.status}"
    return UpstreamError(
        clean_message(message, redact), status=response.status, error_type=error_type
    )


def _parse_error(response: Response) -> tuple[str, str]:
    """(type, message) from a JSON body, moto's XML body, or the x-amzn-ErrorType header."""
    error_type, message = "", ""
    text = response.body.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error_type = str(data.get("__type") or data.get("code") or "")
        message = str(data.get("message") or data.get("Message") or "")
    else:
        import html  # noqa: PLC0415 -- only XML errors (STS's, moto's): off the first call's path

        code = re.search(_XML_CODE, text, re.DOTALL)
        found = re.search(_XML_MESSAGE, text, re.DOTALL)
        error_type = html.unescape(code.group(1)) if code else ""
        message = html.unescape(found.group(1)) if found else ""
    if not error_type:
        error_type = response.headers.get("x-amzn-errortype", "").split(":", 1)[0]
    # "com.amazonaws.secretsmanager#ResourceNotFoundException" -> the part after '#'.
    return error_type.rsplit("#", 1)[-1].strip(), message.strip()


def clean_message(message: str, redact: Iterable[str | None] = ()) -> str:
    """AWS's message without credentials, signatures or the echoed canonical request."""
    # AWS's SignatureDoesNotMatch text quotes the canonical request, security token included.
    message = message.split("\n\nThe Canonical String", 1)[0]
    for value in redact:
        if value:
            message = message.replace(value, "<redacted>")
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + "..."
    return message
