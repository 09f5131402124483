"""Credentials from the environment and from a real (test) container credentials endpoint."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from config import AwsConfig
from conftest import free_port
from credentials import CredentialProvider, Credentials, parse_expiration
from errors import MissingCredentials, UpstreamConnectionError

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
TOKEN = "container-auth-TOKEN-1"


class Clock:
    """A settable UTC clock."""

    def __init__(self, start: datetime) -> None:
        self.value = start

    def __call__(self) -> datetime:
        return self.value


@dataclass
class ContainerEndpoint:
    """What the fake endpoint serves and what it saw."""

    uri: str = ""
    expected_token: str = TOKEN
    expiration: datetime = T0 + timedelta(hours=1)
    delay: float = 0.0
    generation: int = 0
    tokens_seen: list[str | None] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, authorization: str | None) -> tuple[int, bytes]:
        with self.lock:
            self.tokens_seen.append(authorization)
            if authorization != self.expected_token:
                return 401, b'{"message":"bad token"}'
            self.generation += 1
            n = self.generation
        time.sleep(self.delay)
        body = {
            "AccessKeyId": f"ASIAKEY{n}",
            "SecretAccessKey": f"secret-{n}",
            "Token": f"session-{n}",
            "Expiration": self.expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        return 200, json.dumps(body).encode()


@pytest.fixture
def container() -> Iterator[ContainerEndpoint]:
    """A stdlib HTTP server on 127.0.0.1:0 that plays the container credentials provider."""
    state = ContainerEndpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = state.answer(self.headers.get("Authorization"))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.uri = f"http://127.0.0.1:{server.server_address[1]}/2023-01-01/credentials"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _provider(aws: AwsConfig, clock: Clock) -> CredentialProvider:
    return CredentialProvider(aws, now=clock, timeout=2.0)


def test_environment_credentials() -> None:
    aws = AwsConfig(access_key_id="AKIDENV", secret_access_key="env-secret", session_token="tok")
    creds = CredentialProvider(aws).get()
    assert creds == Credentials("AKIDENV", "env-secret", "tok")
    assert "env-secret" not in repr(creds)
    assert "tok" not in repr(creds)


def test_environment_wins_over_container(container: ContainerEndpoint) -> None:
    aws = AwsConfig(
        access_key_id="AKIDENV",
        secret_access_key="env-secret",
        container_credentials_full_uri=container.uri,
        container_authorization_token=TOKEN,
    )
    assert CredentialProvider(aws).get().access_key == "AKIDENV"
    assert container.tokens_seen == []


def test_no_credentials_is_missing_credentials() -> None:
    for aws in (AwsConfig(), AwsConfig(access_key_id="AKIDONLY")):
        with pytest.raises(MissingCredentials) as caught:
            CredentialProvider(aws).get()
        assert caught.value.status == 500
        assert caught.value.error_type == "MissingCredentialsException"
        assert "AWS_ACCESS_KEY_ID" in caught.value.message


def test_container_credentials_with_token(container: ContainerEndpoint) -> None:
    aws = AwsConfig(
        container_credentials_full_uri=container.uri, container_authorization_token=TOKEN
    )
    creds = _provider(aws, Clock(T0)).get()
    assert creds.access_key == "ASIAKEY1"
    assert creds.secret_key == "secret-1"
    assert creds.session_token == "session-1"
    assert creds.expiration == T0 + timedelta(hours=1)
    assert container.tokens_seen == [TOKEN]


def test_refresh_happens_before_expiry(container: ContainerEndpoint) -> None:
    clock = Clock(T0)
    aws = AwsConfig(
        container_credentials_full_uri=container.uri, container_authorization_token=TOKEN
    )
    provider = _provider(aws, clock)
    assert provider.get().access_key == "ASIAKEY1"
    clock.value = T0 + timedelta(minutes=54, seconds=59)
    assert provider.get().access_key == "ASIAKEY1"
    assert container.generation == 1
    # Inside the 5-minute margin before the 1-hour expiry: refreshed while still valid.
    container.expiration = T0 + timedelta(hours=2)
    clock.value = T0 + timedelta(minutes=55)
    assert provider.get().access_key == "ASIAKEY2"
    assert provider.get().access_key == "ASIAKEY2"
    assert container.generation == 2


def test_token_file_is_read_at_each_refresh(container: ContainerEndpoint, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    clock = Clock(T0)
    aws = AwsConfig(
        container_credentials_full_uri=container.uri,
        container_authorization_token="ignored-when-a-file-is-set",
        container_authorization_token_file=str(token_file),
    )
    provider = _provider(aws, clock)
    assert provider.get().access_key == "ASIAKEY1"
    token_file.write_text("rotated-TOKEN-2")
    container.expected_token = "rotated-TOKEN-2"
    container.expiration = T0 + timedelta(hours=3)
    clock.value = T0 + timedelta(hours=1)
    assert provider.get().access_key == "ASIAKEY2"
    assert container.tokens_seen == [TOKEN, "rotated-TOKEN-2"]


def test_one_refresh_at_a_time(container: ContainerEndpoint) -> None:
    container.delay = 0.2
    aws = AwsConfig(
        container_credentials_full_uri=container.uri, container_authorization_token=TOKEN
    )
    provider = _provider(aws, Clock(T0))
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(provider.get().access_key))
        for _ in range(16)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert results == ["ASIAKEY1"] * 16
    assert container.generation == 1


def test_wrong_token_is_missing_credentials(container: ContainerEndpoint) -> None:
    aws = AwsConfig(
        container_credentials_full_uri=container.uri, container_authorization_token="wrong"
    )
    with pytest.raises(MissingCredentials) as caught:
        _provider(aws, Clock(T0)).get()
    assert "401" in caught.value.message
    assert "wrong" not in caught.value.message


def test_failed_refresh_keeps_unexpired_credentials(container: ContainerEndpoint) -> None:
    clock = Clock(T0)
    aws = AwsConfig(
        container_credentials_full_uri=container.uri, container_authorization_token=TOKEN
    )
    provider = _provider(aws, clock)
    assert provider.get().access_key == "ASIAKEY1"
    container.expected_token = "rotated-elsewhere"
    clock.value = T0 + timedelta(minutes=58)
    assert provider.get().access_key == "ASIAKEY1"
    clock.value = T0 + timedelta(hours=1)
    with pytest.raises(MissingCredentials):
        provider.get()


def test_unreachable_endpoint_is_a_connection_error() -> None:
    port = free_port()
    aws = AwsConfig(
        container_credentials_full_uri=f"http://127.0.0.1:{port}/creds",
        container_authorization_token=TOKEN,
    )
    with pytest.raises(UpstreamConnectionError):
        _provider(aws, Clock(T0)).get()


@pytest.mark.parametrize(
    "uri",
    ["http://example.com/creds", "http://10.0.0.1/creds", "ftp://127.0.0.1/creds", "nonsense"],
)
def test_untrusted_plain_http_hosts_are_refused(uri: str) -> None:
    aws = AwsConfig(container_credentials_full_uri=uri, container_authorization_token=TOKEN)
    with pytest.raises(MissingCredentials) as caught:
        _provider(aws, Clock(T0)).get()
    assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" in caught.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T13:00:00Z", T0 + timedelta(hours=1)),
        ("2024-05-01T13:00:00.500Z", T0 + timedelta(hours=1, milliseconds=500)),
        ("2024-05-01T15:00:00+02:00", T0 + timedelta(hours=1)),
        ("2024-05-01T13:00:00", T0 + timedelta(hours=1)),
    ],
)
def test_parse_expiration(text: str, expected: datetime) -> None:
    assert parse_expiration(text) == expected
