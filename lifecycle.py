"""A client for the Lambda Extensions API (SPEC 5): register, next, init/error, exit/error."""

from __future__ import annotations

import http.client
import json

BASE = "/2020-01-01/extension"


class ExtensionsApi:
    """Calls `AWS_LAMBDA_RUNTIME_API` over plain HTTP on a fresh loopback connection each time."""

    def __init__(self, runtime_api: str) -> None:
        self.runtime_api = runtime_api
        self.identifier = ""
        self.initialized = False  # True once the first `next` has been sent

    def _call(
        self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
    ) -> tuple[http.client.HTTPResponse, bytes]:
        # `next` blocks until Lambda has an event, which may be hours: no timeout here.
        conn = http.client.HTTPConnection(self.runtime_api)
        try:
            all_headers = (
                {"Lambda-Extension-Identifier": self.identifier} if self.identifier else {}
            )
            all_headers.update(headers or {})
            payload = None if body is None else json.dumps(body).encode()
            if payload is not None:
                all_headers["Content-Type"] = "application/json"
            conn.request(method, BASE + path, body=payload, headers=all_headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        if not 200 <= response.status < 300:
            raise RuntimeError(f"Extensions API {method} {path} answered {response.status}")
        return response, data

    def register(self, name: str, events: list[str]) -> str:
        """Register as `name` for `events`; return and keep the extension identifier."""
        response, _ = self._call(
            "POST", "/register", {"events": events}, {"Lambda-Extension-Name": name}
        )
        self.identifier = response.getheader("Lambda-Extension-Identifier", "")
        if not self.identifier:
            raise RuntimeError("Extensions API register answered without an identifier")
        return self.identifier

    def next_event(self) -> dict[str, object]:
        """Block until Lambda sends the next event (INVOKE or SHUTDOWN)."""
        self.initialized = True
        _, data = self._call("GET", "/event/next")
        event: dict[str, object] = json.loads(data)
        return event

    def report_error(self, error_type: str, message: str) -> None:
        """Post init/error before the first `next`, exit/error after it (SPEC 5.3)."""
        path = "/exit/error" if self.initialized else "/init/error"
        body = {"errorMessage": message, "errorType": error_type, "stackTrace": []}
        self._call("POST", path, body, {"Lambda-Extension-Function-Error-Type": error_type})
