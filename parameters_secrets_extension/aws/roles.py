"""Assumed roles (`roleArn`): STS AssumeRole through our own signed client, each role's
credentials refreshed before expiry exactly as the container credentials are (one
credentials.CredentialProvider per role, with AssumeRole as its fetch), in a table bounded
to MAX_ROLES (the least recently used role dropped first, with its credentials).

STS speaks the Query protocol: a form body in, XML out. Its answer holds four fields of
plain text, read here with a pattern each rather than an XML parser, which the layer
built with its own Python would have to carry (pyexpat) for this alone.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable

from ..config import AwsConfig
from ..errors import ExtensionError, InvalidResponse, UpstreamError, is_transient
from ..logs import log
from ..services import Service
from ..version import NAME
from . import endpoints
from .credentials import CredentialProvider, Credentials, parse_expiration

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from .transport import Transport

# Roles whose credentials are kept; one more drops the least recently used (its cached
# values stay, in its own namespace, until their TTL). The Workload Credentials Provider's
# default max_roles is 20 too, but it refuses the 21st role until restarted.
MAX_ROLES = 20
# The session asked for: one hour, the most STS grants a chained role session (the
# function's own credentials are a role session) and the least any role allows.
SESSION_SECONDS = 3600
MAX_ANSWER_BYTES = 64 * 1024  # an AssumeRole answer is about 1.5 KB
STS_API_VERSION = "2011-06-15"
# RoleSessionName: 2 to 64 of letters, digits and +=,.@_- (STS's rule).
MAX_SESSION_NAME = 64
_NOT_IN_SESSION_NAME = re.compile(r"[^\w+=,.@-]", re.ASCII)
_FORM = "application/x-www-form-urlencoded; charset=utf-8"
_CREDENTIALS = r"<Credentials>(.*?)</Credentials>"  # compiled at the first AssumeRole answer
_FIELDS = ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")

# STS, described as the record endpoints.resolve reads: host sts.<region>.<DNS suffix>
# (-fips with AWS_USE_FIPS_ENDPOINT), signing name sts, override AWS_ENDPOINT_URL_STS. It
# is no service of the local API: not in services.SERVICES, no route, no TTL, no cache.
STS = Service(
    name="sts",
    routes={},
    operation="AssumeRole",
    target="",
    batch_operation="AssumeRole",
    max_batch_ids=1,
    path_operation=None,
    host_prefix="sts",
    signing_name="sts",
    ttl_variable="",
    timeout_variable="",
    timeout_setting="",
    endpoint_variable="AWS_ENDPOINT_URL_STS",
    endpoint_setting="endpoint_url_sts",
    selectors=(),
)


def session_name(function_name: str | None) -> str:
    """The RoleSessionName, which CloudTrail shows in the target account: this extension,
    and the function it serves when known (`parameters-secrets-extension@my-function`),
    cut to STS's 64 characters."""
    name = NAME
    if function_name and function_name != "unknown":
        name += "@" + _NOT_IN_SESSION_NAME.sub("-", function_name)
    return name[:MAX_SESSION_NAME]


def assume_role(
    transport: Transport, aws: AwsConfig, role_arn: str, session: str, limit: float
) -> Credentials:
    """New credentials of `role_arn` from STS AssumeRole, signed with the function's own,
    by `limit` (a time.monotonic value).

    A refusal (no sts:AssumeRole, a trust policy that does not name the function's role,
    no such role) is a 403 with STS's own error type and a message naming the role; an
    outage keeps its own status (5xx, 502, 504), with the role named too.
    """
    endpoint = endpoints.resolve(aws, STS)
    form = {
        "Action": "AssumeRole",
        "Version": STS_API_VERSION,
        "RoleArn": role_arn,
        "RoleSessionName": session,
        "DurationSeconds": str(SESSION_SECONDS),
    }
    import urllib.parse  # noqa: PLC0415 -- 2.5-3 ms of CPU that only a roleArn request needs

    body = urllib.parse.urlencode(form).encode("ascii")
    try:
        response = transport.send(
            endpoint, {"Content-Type": _FORM}, body, limit, max_body=MAX_ANSWER_BYTES
        )
    except ExtensionError as exc:
        refused = isinstance(exc, UpstreamError) and exc.status < 500 and not is_transient(exc)
        status = 403 if refused else exc.status
        named = type(exc)(
            f"cannot assume role {role_arn}: {exc.message}",
            status=status,
            error_type=exc.error_type,
        )
        named.attempts = exc.attempts
        named.of_credentials = True
        raise named from exc
    creds = _parse(response.body)
    log.info("assumed role %s as session %s, expiring %s", role_arn, session, creds.expiration)
    return creds


def _parse(body: bytes) -> Credentials:
    """The Credentials element of an AssumeRole answer; never echoes the body (it holds them)."""
    import html  # noqa: PLC0415 -- only roleArn requests need it: off the first call's path

    text = body.decode("utf-8", "replace")
    block = re.search(_CREDENTIALS, text, re.DOTALL)
    values: dict[str, str] = {}
    for field in _FIELDS:
        found = re.search(f"<{field}>(.*?)</{field}>", block.group(1)) if block else None
        if found:
            values[field] = html.unescape(found.group(1).strip())
    try:
        return Credentials(
            access_key=values["AccessKeyId"],
            secret_key=values["SecretAccessKey"],
            session_token=values["SessionToken"],
            expiration=parse_expiration(values["Expiration"]),
        )
    except (KeyError, ValueError) as exc:
        raise InvalidResponse("STS sent an AssumeRole answer without usable credentials") from exc


class Roles:
    """Role ARN -> its CredentialProvider, at most `most` of them, the least recently used
    dropped first; the lock guards only this bookkeeping (making a provider does no I/O:
    its first get() assumes the role, and concurrent first uses share that one call)."""

    def __init__(self, make: Callable[[str], CredentialProvider], most: int = MAX_ROLES) -> None:
        self._make = make
        self._most = most
        self._lock = threading.Lock()
        self._providers: OrderedDict[str, CredentialProvider] = OrderedDict()

    def credentials(self, role_arn: str) -> CredentialProvider:
        """The provider of `role_arn`'s credentials, made on its first use."""
        with self._lock:
            provider = self._providers.get(role_arn)
            if provider is not None:
                self._providers.move_to_end(role_arn)
                return provider
            provider = self._make(role_arn)
            self._providers[role_arn] = provider
            while len(self._providers) > self._most:
                dropped, _ = self._providers.popitem(last=False)
                log.info("role table full (%d roles): dropped %s", self._most, dropped)
            return provider

    def __len__(self) -> int:
        with self._lock:
            return len(self._providers)

    def __contains__(self, role_arn: object) -> bool:
        with self._lock:
            return role_arn in self._providers
