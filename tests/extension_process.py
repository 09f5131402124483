"""Run the built extension as Lambda does: a real subprocess with a Lambda-like environment."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from parameters_secrets_extension.lambda_api.lifecycle import DEFAULT_PORT, PORT_VARIABLE, http_port
from tests.conftest import REGION, LambdaCredentials, Moto

TOKEN_HEADER = "X-Aws-Parameters-Secrets-Token"
OWN_TOKEN = "<the process's own token>"  # a sentinel, compared by identity


def lambda_env(
    moto: Moto, creds: LambdaCredentials, port: int, runtime_api: str | None, **extra: str
) -> dict[str, str]:
    """The environment Lambda gives an extension, pointed at moto and the fake Extensions API."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": creds.access_key,
        "AWS_SECRET_ACCESS_KEY": creds.secret_key,
        "AWS_SESSION_TOKEN": creds.session_token,
        "AWS_ENDPOINT_URL": moto.endpoint,
        "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(port),
    }
    if runtime_api is not None:
        env["AWS_LAMBDA_RUNTIME_API"] = runtime_api
    env.update(extra)
    return env


class ExtensionProcess:
    """The extension subprocess; stdout and stderr go to a file the test can read."""

    def __init__(self, executable: Path, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        # The port the extension listens on, by its own rule (an invalid value: the default).
        self.port = http_port(env.get(PORT_VARIABLE, "")) or DEFAULT_PORT
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(executable)], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self.token = env.get("AWS_SESSION_TOKEN") or env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN")

    def __enter__(self) -> ExtensionProcess:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_listening(self, timeout: float = 15.0) -> None:
        """Poll /ping until the server answers (standalone mode has no `next` to wait on)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"extension exited early:\n{self.output()}")
            try:
                if self.get("/ping", token=None)[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"extension never listened:\n{self.output()}")

    def get(
        self, path: str, *, token: str | None = OWN_TOKEN, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """One GET on a fresh connection, sending the process's own token unless told otherwise."""
        all_headers = dict(headers or {})
        if token is OWN_TOKEN:
            token = self.token
        if token is not None:
            all_headers[TOKEN_HEADER] = token
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path, headers=all_headers)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def get_json(self, path: str, **kwargs: object) -> tuple[int, Any]:
        """The status and the JSON body of one GET (typed loosely, as JSON is)."""
        status, _, body = self.get(path, **kwargs)  # type: ignore[arg-type]
        return status, json.loads(body)
