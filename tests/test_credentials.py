"""Credentials from the environment and from a real (test) container credentials endpoint."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from parameters_secrets_extension.aws.credentials import (
    CredentialProvider,
    Credentials,
    parse_expiration,
)
from parameters_secrets_extension.aws.operations import AwsClient
from parameters_secrets_extension.config import AwsConfig
from parameters_secrets_extension.errors import (
    MissingCredentials,
    UpstreamConnectionError,
    UpstreamTimeout,
)
from tests.conftest import free_port
from tests.raw_server import RawServer, hang, trickle

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
    hang: bool = False
    generation: int = 0
    tokens_seen: list[str | None] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    released: threading.Event = field(default_factory=threading.Event)

    def requests(self) -> int:
        with self.lock:
            return len(self.tokens_seen)

    def answer(self, authorization: str | None) -> tuple[int, bytes]:
        with self.lock:
            self.tokens_seen.append(authorization)
            if authorization != self.expected_token:
                return 401, b'{"message":"bad token"}'
            self.generation += 1
            n = self.generation
            hang = self.hang
        if hang:
            self.released.wait(30)  # set at teardown, so no handler outlives its test
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
        state.released.set()
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


def test_refresh_happens_in_the_advisory_window(container: ContainerEndpoint) -> None:
    clock = Clock(T0)
    aws = AwsConfig(
        container_credentials_full_uri=container.uri, container_authorization_token=TOKEN
    )
    provider = _provider(aws, clock)
    assert provider.get().access_key == "ASIAKEY1"
    clock.value = T0 + timedelta(minutes=44, seconds=59)
    assert provider.get().access_key == "ASIAKEY1"
    assert container.generation == 1
    # 15 minutes before the 1-hour expiry: refreshed while still valid.
    container.expiration = T0 + timedelta(hours=2)
    clock.value = T0 + timedelta(minutes=45)
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


# --- Deadlines: a provider that hangs, trickles or is slow never holds a request up ---


def _close_delimited(body: bytes) -> Callable[[socket.socket, threading.Event], None]:
    def serve(conn: socket.socket, stop: threading.Event) -> None:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + body)

    return serve


@pytest.fixture
def raw_servers() -> Iterator[list[RawServer]]:
    servers: list[RawServer] = []
    try:
        yield servers
    finally:
        for server in servers:
            server.close()


def _container_aws(uri: str) -> AwsConfig:
    return AwsConfig(container_credentials_full_uri=uri, container_authorization_token=TOKEN)


def _timed(call: Callable[[], object]) -> tuple[object, float]:
    """The call's result or the exception it raised, and how long it took."""
    started = time.monotonic()
    try:
        result: object = call()
    except Exception as exc:
        result = exc
    return result, time.monotonic() - started


def _concurrently(calls: list[Callable[[], object]]) -> list[tuple[object, float]]:
    results: list[tuple[object, float]] = [(None, 0.0)] * len(calls)

    def run(i: int) -> None:
        results[i] = _timed(calls[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_concurrent_callers_of_a_hanging_provider_all_end_at_their_deadline(
    raw_servers: list[RawServer],
) -> None:
    server = RawServer(hang)
    raw_servers.append(server)
    provider = CredentialProvider(_container_aws(server.uri), timeout=5.0)

    def call() -> object:
        return provider.get(deadline=time.monotonic() + 1.0)

    results = _concurrently([call] * 4)
    for outcome, elapsed in results:
        assert isinstance(outcome, UpstreamTimeout), outcome
        assert outcome.status == 504
        # Each caller's own 1 s deadline, not a queue behind the others' fetches.
        assert 0.9 <= elapsed < 1.6, elapsed


def test_aws_client_passes_its_deadline_to_the_credentials(raw_servers: list[RawServer]) -> None:
    server = RawServer(hang)
    raw_servers.append(server)
    aws = AwsConfig(
        region="us-east-1",
        endpoint_url="http://127.0.0.1:9",  # never reached: the credentials fail first
        container_credentials_full_uri=server.uri,
        container_authorization_token=TOKEN,
    )
    client = AwsClient(aws, max_connections=2, secrets_manager_timeout_ms=1000, ssm_timeout_ms=1000)
    try:
        results = _concurrently([lambda: client.get_secret_value("app/db")] * 4)
    finally:
        client.close()
    for outcome, elapsed in results:
        assert isinstance(outcome, UpstreamTimeout), outcome
        assert elapsed < 1.6, elapsed


def test_a_trickling_provider_is_cut_off_at_the_fetch_cap(raw_servers: list[RawServer]) -> None:
    server = RawServer(trickle)
    raw_servers.append(server)
    provider = CredentialProvider(_container_aws(server.uri), timeout=1.0)
    # No request deadline at all: the cap alone bounds connect plus the whole body.
    outcome, elapsed = _timed(provider.get)
    assert isinstance(outcome, UpstreamTimeout), outcome
    assert 0.9 <= elapsed < 1.6, elapsed
    # A request deadline shorter than the cap wins.
    provider = CredentialProvider(_container_aws(server.uri), timeout=5.0)
    outcome, elapsed = _timed(lambda: provider.get(deadline=time.monotonic() + 0.5))
    assert isinstance(outcome, UpstreamTimeout), outcome
    assert 0.4 <= elapsed < 1.1, elapsed


def test_a_slow_provider_within_the_deadline_is_waited_for(container: ContainerEndpoint) -> None:
    container.delay = 0.3
    provider = _provider(_container_aws(container.uri), Clock(T0))
    outcome, elapsed = _timed(lambda: provider.get(deadline=time.monotonic() + 2.0))
    assert isinstance(outcome, Credentials)
    assert outcome.access_key == "ASIAKEY1"
    assert elapsed >= 0.3


def test_a_close_delimited_answer_is_read_to_the_end(raw_servers: list[RawServer]) -> None:
    body = json.dumps({"AccessKeyId": "ASIACLOSE", "SecretAccessKey": "s", "Token": "t"}).encode()
    server = RawServer(_close_delimited(body))
    raw_servers.append(server)
    creds = CredentialProvider(_container_aws(server.uri)).get()
    assert creds == Credentials("ASIACLOSE", "s", "t")


def test_an_oversized_answer_is_refused(raw_servers: list[RawServer]) -> None:
    server = RawServer(_close_delimited(b"x" * (200 * 1024)))
    raw_servers.append(server)
    with pytest.raises(MissingCredentials, match="too large"):
        CredentialProvider(_container_aws(server.uri)).get()


def test_a_token_with_line_breaks_never_reaches_the_wire(container: ContainerEndpoint) -> None:
    bad = "BADTOK\r\nX-Injected: 1"
    aws = AwsConfig(container_credentials_full_uri=container.uri, container_authorization_token=bad)
    with pytest.raises(MissingCredentials) as caught:
        CredentialProvider(aws).get()
    assert "BADTOK" not in caught.value.message
    assert container.requests() == 0


# --- Refresh windows ---


def _warm(container: ContainerEndpoint, clock: Clock) -> CredentialProvider:
    provider = _provider(_container_aws(container.uri), clock)
    assert provider.get().access_key == "ASIAKEY1"
    container.expiration = T0 + timedelta(hours=2)
    return provider


def test_advisory_window_one_caller_refreshes_the_others_go_on(
    container: ContainerEndpoint,
) -> None:
    clock = Clock(T0)
    provider = _warm(container, clock)
    container.delay = 0.5
    clock.value = T0 + timedelta(minutes=47)  # advisory: 13 minutes left
    refresher = threading.Thread(target=lambda: results.append(_timed(provider.get)))
    results: list[tuple[object, float]] = []
    refresher.start()
    deadline = time.monotonic() + 5
    while container.requests() < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert container.requests() == 2, "the refresher never reached the provider"
    others = _concurrently([provider.get] * 8)
    for outcome, elapsed in others:
        assert isinstance(outcome, Credentials)
        assert outcome.access_key == "ASIAKEY1"
        assert elapsed < 0.2, elapsed  # not waiting for the 0.5 s refresh
    refresher.join(timeout=10)
    assert isinstance(results[0][0], Credentials)
    assert results[0][0].access_key == "ASIAKEY2"
    assert provider.get().access_key == "ASIAKEY2"
    assert container.requests() == 2


def test_mandatory_window_callers_wait_for_the_refresh(container: ContainerEndpoint) -> None:
    clock = Clock(T0)
    provider = _warm(container, clock)
    container.delay = 0.3
    clock.value = T0 + timedelta(minutes=52)  # mandatory: 8 minutes left

    def call() -> object:
        return provider.get(deadline=time.monotonic() + 3.0)

    for outcome, _ in _concurrently([call] * 6):
        assert isinstance(outcome, Credentials)
        assert outcome.access_key == "ASIAKEY2"
    assert container.requests() == 2


def test_mandatory_window_with_a_hanging_provider_keeps_half_the_deadline(
    container: ContainerEndpoint,
) -> None:
    clock = Clock(T0)
    provider = _warm(container, clock)
    container.hang = True
    clock.value = T0 + timedelta(minutes=55)

    def call() -> object:
        return provider.get(deadline=time.monotonic() + 1.0)

    for outcome, elapsed in _concurrently([call] * 4):
        assert isinstance(outcome, Credentials)
        assert outcome.access_key == "ASIAKEY1"
        assert 0.4 <= elapsed < 0.8, elapsed  # half of the 1 s, the rest is the request's
    assert container.requests() == 2
    # The failed refresh is not repeated on every call: the next try is a minute away.
    outcome, elapsed = _timed(call)
    assert isinstance(outcome, Credentials)
    assert elapsed < 0.1
    assert container.requests() == 2
    clock.value = T0 + timedelta(minutes=56, seconds=1)
    container.hang = False
    assert provider.get().access_key == "ASIAKEY3"


def test_short_lived_credentials_are_used_without_a_fetch_per_call(
    container: ContainerEndpoint,
) -> None:
    clock = Clock(T0)
    container.expiration = T0 + timedelta(minutes=5)  # inside the 10-minute mandatory window
    provider = _provider(_container_aws(container.uri), clock)
    for second in range(0, 60, 2):
        clock.value = T0 + timedelta(seconds=second)
        assert provider.get().access_key == "ASIAKEY1"
    assert container.requests() == 1
    # Newer ones are asked for once a minute meanwhile; the provider still has short ones.
    clock.value = T0 + timedelta(seconds=61)
    assert provider.get().access_key == "ASIAKEY2"
    for _ in range(20):
        provider.get()
    assert container.requests() == 2
    # Used until just before they expire, then replaced.
    container.expiration = T0 + timedelta(hours=1)
    clock.value = T0 + timedelta(minutes=4, seconds=51)
    assert provider.get().access_key == "ASIAKEY3"
    assert container.requests() == 3


def test_a_failed_fetch_is_shared_for_a_moment_then_retried(container: ContainerEndpoint) -> None:
    clock = Clock(T0)
    container.expected_token = "something-else"
    provider = _provider(_container_aws(container.uri), clock)
    for _ in range(5):
        with pytest.raises(MissingCredentials, match="401"):
            provider.get()
    assert container.requests() == 1
    clock.value = T0 + timedelta(seconds=1)
    container.expected_token = TOKEN
    assert provider.get().access_key == "ASIAKEY1"
    assert container.requests() == 2


def test_expired_credentials_from_the_provider_are_refused(container: ContainerEndpoint) -> None:
    container.expiration = T0 - timedelta(seconds=1)
    with pytest.raises(MissingCredentials, match="expired"):
        _provider(_container_aws(container.uri), Clock(T0)).get()
