"""AWS credentials: from the environment, or from the container provider with early refresh."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable

from ..config import AwsConfig
from ..errors import ExtensionError, MissingCredentials, UpstreamConnectionError, UpstreamTimeout
from ..logs import log
from ..response_reader import OverLimit, ResponseError, read_response
from ..urls import host_port, split
from . import trust_store
from .connection_pool import host_bytes
from .dates import datetime, timedelta, timezone

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from typing import Final

    from .tls import TlsSocket

# botocore's RefreshableCredentials windows: one caller refreshes in the advisory window
# while the rest use the current credentials; in the mandatory window callers wait for it.
ADVISORY_REFRESH = timedelta(minutes=15)
MANDATORY_REFRESH = timedelta(minutes=10)
# Credentials are not signed with in their last seconds: the request must arrive before expiry.
EXPIRY_MARGIN = timedelta(seconds=10)
# After a failed refresh, or for credentials that arrived short-lived, the next attempt.
RETRY_INTERVAL = timedelta(seconds=60)
# With nothing usable, a failed fetch is repeated no sooner; callers in between share its error.
FAILURE_BACKOFF = timedelta(seconds=1)
# One fetch in total, connect to the body's last byte, whatever the request's own deadline.
FETCH_TIMEOUT_SECONDS = 5.0
MAX_CREDENTIALS_BYTES = 64 * 1024  # a credentials answer is about 1.5 KB
_PROVIDER = "container credentials provider"  # the peer, as messages name it
# No control characters or spaces may reach the request line; none but tab in a header value.
# Compiled (and cached by re) at the first container credentials fetch: Lambda's own
# credentials are in the environment.
_BAD_TARGET = r"[\x00-\x20\x7f]"
_BAD_VALUE = r"[\x00-\x08\x0a-\x1f\x7f]"
# Plain-http credential endpoints are allowed only on hosts that cannot be a stranger's:
# loopback and the ECS/EKS link-local agent addresses (the same rule as botocore).
_AGENT_HOSTS = ("169.254.170.2", "169.254.170.23", "fd00:ec2::23")


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


class Credentials:
    """One set of AWS credentials; the secret parts are kept out of repr() (and so str()).

    A plain class rather than a namedtuple (about 0.1 ms of CPU to build at import, on the
    way to the first answer), equal and hashed by its four fields as one was.
    """

    __slots__ = ("access_key", "expiration", "secret_key", "session_token")

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        session_token: str | None = None,
        expiration: datetime | None = None,
    ) -> None:
        self.access_key: Final = access_key
        self.secret_key: Final = secret_key
        self.session_token: Final = session_token
        self.expiration: Final = expiration

    def _fields(self) -> tuple[str, str, str | None, datetime | None]:
        return (self.access_key, self.secret_key, self.session_token, self.expiration)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Credentials) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return f"Credentials(access_key={self.access_key!r}, expiration={self.expiration!r})"


class _Held:
    """Credentials and the times that govern them; replaced whole, so a read needs no lock."""

    __slots__ = ("advisory_at", "creds", "mandatory_at", "usable_until")

    def __init__(
        self,
        creds: Credentials,
        advisory_at: datetime | None,
        mandatory_at: datetime | None,
        usable_until: datetime | None,
    ) -> None:
        self.creds: Final = creds
        self.advisory_at: Final = advisory_at
        self.mandatory_at: Final = mandatory_at
        self.usable_until: Final = usable_until

    def fresh(self, now: datetime) -> bool:
        return self.advisory_at is None or now < self.advisory_at

    def usable(self, now: datetime) -> bool:
        return self.usable_until is None or now < self.usable_until

    def mandatory(self, now: datetime) -> bool:
        return self.mandatory_at is not None and now >= self.mandatory_at

    def postponed(self, now: datetime) -> _Held:
        """The same credentials with the next refresh attempt RETRY_INTERVAL away."""
        usable_until = self.usable_until or now + RETRY_INTERVAL
        retry_at = min(now + RETRY_INTERVAL, usable_until)
        mandatory_at = max(self.mandatory_at or retry_at, retry_at)
        return _Held(self.creds, retry_at, mandatory_at, self.usable_until)


def _schedule(creds: Credentials, now: datetime) -> _Held:
    """When one caller should refresh `creds`, when all must wait, when to stop using them."""
    expiration = creds.expiration
    if expiration is None:
        return _Held(creds, None, None, None)
    usable_until = expiration - EXPIRY_MARGIN
    if usable_until <= now:
        usable_until = expiration  # the margin would leave nothing: use them to the end
    mandatory_at = expiration - MANDATORY_REFRESH
    if mandatory_at <= now:
        # Short-lived on arrival: refetching on every call would not make them last longer.
        mandatory_at = usable_until
    advisory_at = max(expiration - ADVISORY_REFRESH, min(now + RETRY_INTERVAL, mandatory_at))
    return _Held(creds, advisory_at, mandatory_at, usable_until)


class CredentialProvider:
    """Hands out current credentials; container credentials (or those of another `fetch`, such
    as an assumed role's: roles.py) are refetched before they expire.

    Refresh follows botocore's two windows. In the advisory window (ADVISORY_REFRESH before
    expiry) one caller refetches while the others go on with the still-valid credentials.
    In the mandatory window (MANDATORY_REFRESH before expiry) callers wait for the refetch,
    but only for half of their remaining time: after that, and after any failed refetch,
    credentials that have not expired are used, and the next attempt is RETRY_INTERVAL away.
    Credentials that arrive already inside the mandatory window are used until just before
    they expire. With nothing usable, callers wait up to their deadline and then fail with a
    timeout; a failed fetch is repeated at most once per FAILURE_BACKOFF, and callers in
    between get its error at once.
    """

    def __init__(
        self,
        aws: AwsConfig,
        *,
        now: Callable[[], datetime] = utc_now,
        timeout: float = FETCH_TIMEOUT_SECONDS,
        fetch: Callable[[float], Credentials] | None = None,
        source: str = "container credentials provider",
    ) -> None:
        """`timeout` caps one whole fetch, from connect to the body's last byte.

        `fetch(limit)` replaces the environment and container sources: it returns new
        credentials by `limit` (a time.monotonic value) or raises an ExtensionError; `source`
        names it in log lines.
        """
        self._aws = aws
        self._now = now
        self._timeout = timeout
        self._from_container = fetch is None
        self._fetch = fetch if fetch is not None else self._fetch_container
        self._source = source
        self._held: _Held | None = None
        self._failed: ExtensionError | None = None
        self._failed_until: datetime | None = None
        # One fetch at a time; readers of fresh credentials never take this lock.
        self._refresh_lock = threading.Lock()
        if fetch is None and aws.access_key_id and aws.secret_access_key:
            creds = Credentials(aws.access_key_id, aws.secret_access_key, aws.session_token)
            self._held = _Held(creds, None, None, None)

    def get(self, deadline: float | None = None) -> Credentials:
        """Current credentials, within `deadline` (a time.monotonic value) when one is given.

        Raise MissingCredentials when there are none, UpstreamTimeout when the deadline or
        the fetch cap runs out first, UpstreamConnectionError when the provider is unreachable.
        """
        held = self._held
        now = self._now()
        if held is not None and held.fresh(now):
            return held.creds
        if self._from_container and not self._aws.container_credentials_full_uri:
            raise MissingCredentials(
                "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                "AWS_CONTAINER_CREDENTIALS_FULL_URI"
            )
        start = time.monotonic()
        cap = start + self._timeout
        limit = cap if deadline is None else min(deadline, cap)
        if held is not None and held.usable(now):
            # The request can go on with what it has: credential work gets half its time.
            limit = start + (limit - start) / 2
            wait = max(0.0, limit - start) if held.mandatory(now) else 0.0
            if not self._refresh_lock.acquire(timeout=wait):
                return held.creds
        elif not self._refresh_lock.acquire(timeout=max(0.0, limit - start)):
            raise UpstreamTimeout(f"timed out waiting for the {self._source}")
        try:
            return self._refresh(limit, shared=limit >= cap)
        finally:
            self._refresh_lock.release()

    def _refresh(self, limit: float, *, shared: bool) -> Credentials:
        """Fetch, unless another caller did while this one waited; the caller holds the lock.

        A failure is `shared` with the callers of the next FAILURE_BACKOFF unless it is a
        timeout that only this caller's own, shorter deadline caused.
        """
        now = self._now()
        held = self._held
        if held is not None and held.fresh(now):
            return held.creds
        usable = held is not None and held.usable(now)
        failed = self._failed
        if not usable and failed is not None and self._failed_until and now < self._failed_until:
            raise _again(failed)
        try:
            creds = self._fetch(limit)
        except ExtensionError as exc:
            if held is not None and usable:
                self._held = held.postponed(now)
                log.warning("credential refresh failed, using current ones: %s", exc.message)
                return held.creds
            if shared or not isinstance(exc, UpstreamTimeout):
                self._failed, self._failed_until = exc, now + FAILURE_BACKOFF
            raise
        now = self._now()
        if creds.expiration is not None and creds.expiration <= now:
            expired = MissingCredentials(f"{self._source} sent expired credentials")
            if held is not None and held.usable(now):
                self._held = held.postponed(now)
                log.warning("credential refresh failed, using current ones: %s", expired.message)
                return held.creds
            self._failed, self._failed_until = expired, now + FAILURE_BACKOFF
            raise expired
        self._held = _schedule(creds, now)
        self._failed = self._failed_until = None
        return creds

    def _auth_token(self) -> str | None:
        """The token, read from its file at each refresh because the file may be rotated."""
        path = self._aws.container_authorization_token_file
        if path:
            try:
                with open(path, encoding="utf-8") as handle:
                    return handle.read().strip()
            except OSError as exc:
                raise MissingCredentials(
                    f"cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: {exc.strerror}"
                ) from exc
        return self._aws.container_authorization_token

    def _fetch_container(self, limit: float) -> Credentials:
        uri = self._aws.container_credentials_full_uri or ""
        parts = split(uri)
        _check_container_uri(parts.scheme, parts.hostname)
        headers = {"Accept": "application/json"}
        token = self._auth_token()
        if token:
            headers["Authorization"] = token
        status, body = _http_get(uri, headers, limit)
        if status != 200:
            raise MissingCredentials(f"container credentials provider answered HTTP {status}")
        creds = _parse_container(body)
        log.debug("loaded container credentials, expiring %s", creds.expiration)
        return creds


def _again(exc: ExtensionError) -> ExtensionError:
    """A new exception like `exc`, for another caller: one instance must not be raised twice."""
    return type(exc)(
        f"{exc.message} (from a fetch moments ago)",
        status=exc.status,
        error_type=exc.error_type,
    )


def _check_container_uri(scheme: str, host: str | None) -> None:
    if scheme == "https" and host:
        return
    if scheme == "http" and host:
        if host == "localhost":
            return
        # Imported here (1.2-1.5 ms of CPU): Lambda's own credentials are in the environment.
        import ipaddress  # noqa: PLC0415

        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        agents = {ipaddress.ip_address(agent) for agent in _AGENT_HOSTS}
        if address is not None and (address.is_loopback or address in agents):
            return
    raise MissingCredentials(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI must be https, or http on a loopback or "
        "container-agent address"
    )


def _left(limit: float) -> float:
    left = limit - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _http_get(uri: str, headers: dict[str, str], limit: float) -> tuple[int, bytes]:
    """GET `uri` with the whole exchange, connect to last byte, done by `limit` (monotonic)."""
    parts = split(uri)
    host = parts.hostname or ""
    https = parts.scheme == "https"
    target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    if re.search(_BAD_TARGET, target) or any(re.search(_BAD_VALUE, v) for v in headers.values()):
        # Never name the value: the bad one may be the authorization token.
        raise MissingCredentials(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI or the authorization token holds control characters"
        )
    lines = [f"GET {target} HTTP/1.1", f"Host: {host_port(parts.netloc)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    try:
        request = ("\r\n".join([*lines, "Connection: close", "", ""])).encode("latin-1")
    except UnicodeEncodeError as exc:
        raise MissingCredentials(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI or the authorization token is not Latin-1"
        ) from exc
    address = (host_bytes(host), parts.port or (443 if https else 80))
    try:
        # getaddrinfo takes the host as bytes too (see host_bytes); typeshed says str.
        sock = socket.create_connection(address, _left(limit))  # type: ignore[arg-type]
        try:
            conn: socket.socket | TlsSocket = sock
            if https:  # only here is TLS (_ssl) imported: Lambda's provider is http
                from . import tls  # noqa: PLC0415 -- imported by client_context just now

                # The system's whole store, found as for AWS (trust_store.py); the handshake
                # is bounded as a whole by the socket's timeout.
                context = trust_store.client_context(None, None)
                conn = tls.connect(context, sock, address[0])
            conn.settimeout(_left(limit))
            conn.sendall(request)
            response = read_response(conn, limit, MAX_CREDENTIALS_BYTES, _PROVIDER)
        finally:
            sock.close()
        return response.status, response.body
    except OverLimit as exc:
        raise MissingCredentials(f"{_PROVIDER} sent too large an answer") from exc
    except TimeoutError as exc:
        raise UpstreamTimeout(f"{_PROVIDER} did not answer before the deadline") from exc
    except (OSError, ResponseError) as exc:
        raise UpstreamConnectionError(f"{_PROVIDER} unreachable: {type(exc).__name__}") from exc


def _parse_container(body: bytes) -> Credentials:
    try:
        data = json.loads(body)
        expiration = data.get("Expiration")
        return Credentials(
            access_key=str(data["AccessKeyId"]),
            secret_key=str(data["SecretAccessKey"]),
            session_token=data.get("Token"),
            expiration=parse_expiration(expiration) if expiration else None,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        # Never echo the body: it holds the credentials.
        raise MissingCredentials("container credentials provider sent an invalid answer") from exc


def parse_expiration(text: str) -> datetime:
    """An ISO-8601 timestamp such as 2024-01-01T00:00:00Z, as an aware UTC datetime."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)
