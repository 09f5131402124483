"""An AWS JSON request's head is checked before its body is read (sdk_auth.Verifier.check_head,
request_head.read_request's before_body): the body still decides the signature, and a
request refused on its head alone still has its body read, so the connection goes on.

In process: requests made by sigv4.sign (as in test_sdk_auth.py), read by request_head, and
sent to the real local server (local_api.server) with the real LazyClient, whose credentials
are the function's from the environment. Nothing here reaches AWS: every request is refused,
answered from the head's checks, or a ping.
"""

from __future__ import annotations

import datetime
import io
import json
import socket
from collections.abc import Iterator

import pytest

from cache import Cache
from parameters_secrets_extension import config
from parameters_secrets_extension.aws.credentials import Credentials
from parameters_secrets_extension.aws.lazy_client import LazyClient
from parameters_secrets_extension.errors import SignatureRefused
from parameters_secrets_extension.lambda_api.boot import listen
from parameters_secrets_extension.local_api import request_head
from parameters_secrets_extension.local_api import server as local_server
from parameters_secrets_extension.local_api.sdk_auth import Signed, Verifier
from parameters_secrets_extension.lookups import Lookups
from parameters_secrets_extension.services import SECRETS_MANAGER
from tests.test_sdk_auth import BODY, CREDS, NOW, OTHER, signed, wire


class Recorded(io.RawIOBase):
    """A socket's stream: the head in one read, the body in the next, each read logged."""

    def __init__(self, head: bytes, body: bytes, events: list[str]) -> None:
        self._pieces = [head, body]
        self._events = events

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._pieces:
            return 0
        piece = self._pieces.pop(0)
        self._events.append("head read" if len(self._pieces) == 1 else "body read")
        buffer[: len(piece)] = piece
        return len(piece)


def test_read_request_asks_before_body_between_the_head_and_the_body() -> None:
    data = wire(signed())
    head, _, body = data.partition(b"\r\n\r\n")
    events: list[str] = []
    seen: list[tuple[str, str, str]] = []

    def before_body(method: str, target: str, headers: dict[str, bytes]) -> object:
        events.append("before_body")
        seen.append((method, target, headers["x-amz-target"].decode()))
        return "the head's answer"

    reader = io.BufferedReader(Recorded(head + b"\r\n\r\n", body, events))
    request = request_head.read_request(reader, before_body)
    assert request is not None
    assert events == ["head read", "before_body", "body read"]
    assert seen == [("POST", "/", "secretsmanager.GetSecretValue")]
    assert (request.checked, request.body) == ("the head's answer", BODY)
    # Any other request is read as before: no hook, nothing carried.
    get = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
    other = request_head.read_request(io.BufferedReader(io.BytesIO(get)), before_body)
    assert other is not None and other.checked is None and seen == seen[:1]


def _head_checked(data: bytes) -> tuple[Signed, bytes]:
    request = request_head.read_request(io.BufferedReader(io.BytesIO(data)))
    assert request is not None
    verifier = Verifier(lambda deadline: CREDS, clock=NOW.timestamp)
    checked = verifier.check_head(
        request.method, request.target, request.headers, SECRETS_MANAGER, deadline=0.0
    )
    return checked, request.body


def test_the_body_still_decides_the_signature_after_the_head_passed() -> None:
    checked, body = _head_checked(wire(signed()))
    checked.check_body(body)
    with pytest.raises(SignatureRefused) as caught:
        checked.check_body(b'{"SecretId": "another/secret"}')
    assert caught.value.error_type == "InvalidSignatureException"
    checked.check_body(body)  # the head's hash state is not used up by a check


def test_a_head_signed_with_another_key_passes_its_checks_but_never_the_body() -> None:
    # Same access key and token, another secret key: only the HMAC, after the body, tells.
    checked, body = _head_checked(wire(signed(OTHER)))
    with pytest.raises(SignatureRefused) as caught:
        checked.check_body(body)
    assert caught.value.error_type == "InvalidSignatureException"


# ---------------------------------------------------------------- through the server


@pytest.fixture
def sdk_server() -> Iterator[int]:
    """The local server with the AWS JSON protocol, the function's credentials CREDS;
    AWS is a closed port (nothing here may reach it)."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    env = {
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": CREDS.access_key,
        "AWS_SECRET_ACCESS_KEY": CREDS.secret_key,
        "AWS_SESSION_TOKEN": CREDS.session_token or "",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed.getsockname()[1]}",
    }
    settings = config.load(env)
    client = LazyClient(settings)
    lookups = Lookups(client, Cache(10), secrets_manager_ttl=300, ssm_ttl=300)
    servers = local_server.start(
        lookups, sockets=listen(0), token=settings.auth_token, client=client
    )
    try:
        yield servers.port
    finally:
        servers.shutdown()
        client.close()
        closed.close()


def _answers(port: int, data: bytes, count: int) -> list[tuple[int, str]]:
    """Send `data` (several requests) on one connection; each answer's status and type."""
    answers: list[tuple[int, str]] = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        stream = sock.makefile("rb")
        for _ in range(count):
            status = int(stream.readline().split()[1])
            length = 0
            while (line := stream.readline()) != b"\r\n":
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            body = stream.read(length)
            answers.append(
                (status, "healthy" if body == b"healthy" else json.loads(body)["__type"])
            )
    return answers


def test_a_request_refused_on_its_head_has_its_body_read_and_the_connection_goes_on(
    sdk_server: int,
) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    another_token = Credentials(CREDS.access_key, CREDS.secret_key, "t" * 1000)
    unknown = signed(now=now)
    unknown["X-Amz-Target"] = "secretsmanager.DeleteSecret"
    requests = {
        # Refused on the head: the date, the token, the target.
        "six minutes old": wire(signed(now=now - datetime.timedelta(minutes=6))),
        "another token": wire(signed(another_token, now=now)),
        "not served": wire(unknown),
        # Refused after the body: another secret key, or another body of the same length.
        "another secret key": wire(signed(OTHER, now=now)),
        "another body": wire(signed(now=now), body=BODY.replace(b"db", b"dc")),
        "ping": b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n",
    }
    answers = _answers(sdk_server, b"".join(requests.values()), len(requests))
    assert dict(zip(requests, answers, strict=True)) == {
        "six minutes old": (403, "InvalidSignatureException"),
        "another token": (403, "UnrecognizedClientException"),
        "not served": (400, "UnknownOperationException"),
        "another secret key": (403, "InvalidSignatureException"),
        "another body": (403, "InvalidSignatureException"),
        "ping": (200, "healthy"),
    }
