"""lifecycle.ExtensionsApi against the fake Extensions API, and its HTTP parsing."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from parameters_secrets_extension.errors import ExtensionsApiError
from parameters_secrets_extension.lambda_api.lifecycle import ExtensionsApi
from tests.fake_extensions_api import IDENTIFIER, FakeExtensionsApi


def test_register_next_and_errors() -> None:
    with FakeExtensionsApi() as fake:
        api = ExtensionsApi(fake.address)
        assert api.register("parameters-secrets-extension", ["SHUTDOWN"]) == IDENTIFIER
        call = fake.calls.registrations[0]
        assert call.headers["lambda-extension-name"] == "parameters-secrets-extension"
        assert call.body == {"events": ["SHUTDOWN"]}

        api.report_error("Extension.InvalidConfiguration", "bad value")
        assert fake.calls.init_errors[0].body == {
            "errorMessage": "bad value",
            "errorType": "Extension.InvalidConfiguration",
            "stackTrace": [],
        }
        assert (
            fake.calls.init_errors[0].headers["lambda-extension-function-error-type"]
            == "Extension.InvalidConfiguration"
        )

        fake.send({"eventType": "INVOKE", "requestId": "r1"})
        assert api.next_event() == {"eventType": "INVOKE", "requestId": "r1"}
        assert fake.calls.next_calls[0].headers["lambda-extension-identifier"] == IDENTIFIER

        api.report_error("Extension.Crash", "later")
        assert fake.calls.exit_errors[0].body["errorType"] == "Extension.Crash"  # type: ignore[index]


def test_next_blocks_until_an_event_arrives() -> None:
    with FakeExtensionsApi() as fake:
        api = ExtensionsApi(fake.address)
        api.register("x", ["SHUTDOWN"])
        got: list[dict[str, object]] = []
        waiter = threading.Thread(target=lambda: got.append(api.next_event()))
        waiter.start()
        assert fake.first_next.wait(10)
        assert got == []
        fake.shutdown_extension("timeout", 500)
        waiter.join(10)
        assert got == [{"eventType": "SHUTDOWN", "shutdownReason": "timeout", "deadlineMs": 500}]


def test_on_sent_runs_once_while_next_waits() -> None:
    with FakeExtensionsApi() as fake:
        api = ExtensionsApi(fake.address)
        api.register("x", ["SHUTDOWN"])
        sent = threading.Event()
        calls: list[int] = []

        def on_sent() -> None:
            calls.append(len(got))
            sent.set()

        got: list[dict[str, object]] = []
        waiter = threading.Thread(target=lambda: got.append(api.next_event(on_sent)))
        waiter.start()
        assert sent.wait(10)
        assert fake.first_next.wait(10)  # the request had left: the fake has it
        assert got == []  # and the answer is still awaited
        fake.shutdown_extension()
        waiter.join(10)
        assert calls == [0]
        assert got[0]["eventType"] == "SHUTDOWN"


def test_unexpected_status_is_an_error() -> None:
    with FakeExtensionsApi() as fake:
        api = ExtensionsApi(fake.address)
        with pytest.raises(RuntimeError, match="403") as caught:
            api.next_event()  # not registered: no identifier
    assert isinstance(caught.value, ExtensionsApiError)
    assert (caught.value.path, caught.value.status) == ("/event/next", 403)


def test_a_silent_extensions_api_times_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # completes the handshake, never answers
        api = ExtensionsApi(f"127.0.0.1:{silent.getsockname()[1]}", timeout=0.3)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            api.register("x", ["SHUTDOWN"])
        assert time.monotonic() - started < 3


def test_a_name_that_would_smuggle_a_header_is_refused() -> None:
    with FakeExtensionsApi() as fake:
        api = ExtensionsApi(fake.address)
        with pytest.raises(ValueError, match="header value"):
            api.register("x\r\nLambda-Extension-Identifier: forged", ["SHUTDOWN"])
        assert fake.calls.registrations == []


@contextlib.contextmanager
def answering(answer: bytes) -> Iterator[str]:
    """A server on loopback that reads one request and sends `answer`; yields its address."""
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(answer)

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        yield f"127.0.0.1:{listener.getsockname()[1]}"
        server.join(timeout=5)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"garbage\r\n\r\n", "not HTTP/1.x"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort", "closed the connection"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (2 << 20), "over 1048576 bytes"),
    ],
)
def test_an_answer_that_cannot_be_read_is_an_extensions_api_error(
    answer: bytes, message: str
) -> None:
    # The answers are read by response_reader (tests/test_response_reader.py has the rest).
    with answering(answer) as address:
        api = ExtensionsApi(address, timeout=5)
        with pytest.raises(RuntimeError, match=message) as caught:
            api.register("x", ["SHUTDOWN"])
    assert isinstance(caught.value, ExtensionsApiError)
    assert caught.value.path == "/register"


def test_a_chunked_event_is_read() -> None:
    event = b'{"eventType": "SHUTDOWN", "shutdownReason": "spindown"}'
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (
        len(event),
        event,
    )
    with answering(answer) as address:
        api = ExtensionsApi(address)
        assert api.next_event() == {"eventType": "SHUTDOWN", "shutdownReason": "spindown"}
