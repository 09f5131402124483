"""AWS credentials: from the environment, or from the container provider with early refresh."""

from __future__ import annotations

import http.client
import ipaddress
import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from config import AwsConfig
from errors import MissingCredentials, UpstreamConnectionError
from logs import log

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from typing import Final

REFRESH_MARGIN = timedelta(minutes=5)
FETCH_TIMEOUT_SECONDS = 5.0
# Plain-http credential endpoints are allowed only on hosts that cannot be a stranger's:
# loopback and the ECS/EKS link-local agent addresses (the same rule as botocore).
_AGENT_HOSTS = frozenset(
    ipaddress.ip_address(host) for host in ("169.254.170.2", "169.254.170.23", "fd00:ec2::23")
)


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


class Credentials:
    """One set of AWS credentials; the secret parts are kept out of repr()."""

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

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Credentials):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        return f"Credentials(access_key={self.access_key!r}, expiration={self.expiration!r})"

    def _values(self) -> tuple[object, ...]:
        return (self.access_key, self.secret_key, self.session_token, self.expiration)


class CredentialProvider:
    """Hands out current credentials; container credentials are refetched before they expire."""

    def __init__(
        self,
        aws: AwsConfig,
        *,
        now: Callable[[], datetime] = utc_now,
        refresh_margin: timedelta = REFRESH_MARGIN,
        timeout: float = FETCH_TIMEOUT_SECONDS,
    ) -> None:
        self._aws = aws
        self._now = now
        self._margin = refresh_margin
        self._timeout = timeout
        self._current: Credentials | None = None
        # One refresh at a time; readers of still-fresh credentials never take this lock.
        self._refresh_lock = threading.Lock()
        if aws.access_key_id and aws.secret_access_key:
            self._current = Credentials(aws.access_key_id, aws.secret_access_key, aws.session_token)

    def get(self) -> Credentials:
        """Current credentials; raise MissingCredentials when there are none."""
        current = self._current
        if current is not None and self._fresh(current):
            return current
        if not self._aws.container_credentials_full_uri:
            raise MissingCredentials(
                "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                "AWS_CONTAINER_CREDENTIALS_FULL_URI"
            )
        with self._refresh_lock:
            current = self._current
            if current is not None and self._fresh(current):
                return current
            try:
                self._current = self._fetch_container()
            except (MissingCredentials, UpstreamConnectionError) as exc:
                # Credentials that are due for refresh but not yet expired still work.
                if current is not None and not self._expired(current):
                    log.warning("credential refresh failed, using current ones: %s", exc.message)
                    return current
                raise
            return self._current

    def _fresh(self, creds: Credentials) -> bool:
        return creds.expiration is None or self._now() < creds.expiration - self._margin

    def _expired(self, creds: Credentials) -> bool:
        return creds.expiration is not None and self._now() >= creds.expiration

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

    def _fetch_container(self) -> Credentials:
        uri = self._aws.container_credentials_full_uri or ""
        parts = urlsplit(uri)
        _check_container_uri(parts.scheme, parts.hostname)
        headers = {"Accept": "application/json"}
        token = self._auth_token()
        if token:
            headers["Authorization"] = token
        status, body = _http_get(uri, headers, self._timeout)
        if status != 200:
            raise MissingCredentials(f"container credentials provider answered HTTP {status}")
        creds = _parse_container(body)
        log.debug("loaded container credentials, expiring %s", creds.expiration)
        return creds


def _check_container_uri(scheme: str, host: str | None) -> None:
    if scheme == "https" and host:
        return
    if scheme == "http" and host:
        if host == "localhost":
            return
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None and (address.is_loopback or address in _AGENT_HOSTS):
            return
    raise MissingCredentials(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI must be https, or http on a loopback or "
        "container-agent address"
    )


def _http_get(uri: str, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    parts = urlsplit(uri)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    conn_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    conn = conn_class(parts.netloc, timeout=timeout)
    try:
        conn.request("GET", target, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise UpstreamConnectionError(
            f"container credentials provider unreachable: {type(exc).__name__}"
        ) from exc
    finally:
        conn.close()


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
