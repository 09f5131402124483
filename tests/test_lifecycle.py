"""lifecycle.ExtensionsApi against the fake Extensions API."""

from __future__ import annotations

import threading

import pytest

from fake_extensions_api import IDENTIFIER, FakeExtensionsApi
from lifecycle import ExtensionsApi


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


def test_unexpected_status_is_an_error() -> None:
    with FakeExtensionsApi() as fake:
        api = ExtensionsApi(fake.address)
        with pytest.raises(RuntimeError, match="403"):
            api.next_event()  # not registered: no identifier
