"""The real extension process, launched from the built layer, against the fake Lambda and moto."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest

import extension
from tests.conftest import (
    PARAM_SECURE,
    SECRET_STRING_V2,
    LambdaCredentials,
    Moto,
    free_port,
    wait_until,
)
from tests.extension_process import TOKEN_HEADER, ExtensionProcess, lambda_env
from tests.fake_extensions_api import IDENTIFIER, FakeExtensionsApi
from tests.fault_proxy import FaultProxy
from tests.tls_certs import make_pki

SECRET_PATH = "/secretsmanager/get?secretId="
PARAM_PATH = "/systemsmanager/parameters/get?name="


def start(
    executable: Path,
    tmp_path: Path,
    moto: Moto,
    creds: LambdaCredentials,
    fake: FakeExtensionsApi | None,
    **extra: str,
) -> ExtensionProcess:
    env = lambda_env(moto, creds, free_port(), fake.address if fake else None, **extra)
    return ExtensionProcess(executable, env, tmp_path / "extension.log")


def wait_first_next(fake: FakeExtensionsApi, ext: ExtensionProcess) -> None:
    if not fake.first_next.wait(20):
        raise AssertionError(f"no first next:\n{ext.output()}")
    if fake.first_next_error is not None:
        raise fake.first_next_error


def test_lifecycle_register_serve_then_shutdown(
    extension_executable: Path, tmp_path: Path, moto: Moto, lambda_credentials: LambdaCredentials
) -> None:
    served_before_next: list[int] = []
    with FakeExtensionsApi() as fake:
        ext = start(extension_executable, tmp_path, moto, lambda_credentials, fake)

        def during_init() -> None:
            served_before_next.append(ext.get("/ping", token=None)[0])
            served_before_next.append(ext.get(SECRET_PATH + quote(moto.secret_name))[0])

        fake.on_first_next = during_init
        with ext:
            wait_first_next(fake, ext)
            registration = fake.calls.registrations[0]
            assert registration.headers["lambda-extension-name"] == "parameters-secrets-extension"
            assert registration.body == {"events": ["SHUTDOWN"]}
            assert fake.calls.next_calls[0].headers["lambda-extension-identifier"] == IDENTIFIER
            assert served_before_next == [200, 200]

            fake.shutdown_extension()
            assert ext.proc.wait(timeout=1.0) == 0
            assert fake.calls.init_errors == [] and fake.calls.exit_errors == []


# Every kind of init: unset (not on Lambda), on-demand, and provisioned concurrency, whose
# sandbox Lambda freezes after the init (the first invoke, maybe hours later, must find the
# values cached).
@pytest.mark.parametrize("initialization_type", ["", "on-demand", "provisioned-concurrency"])
def test_prefetch_finishes_before_the_first_next(
    extension_executable: Path,
    tmp_path: Path,
    moto: Moto,
    lambda_credentials: LambdaCredentials,
    initialization_type: str,
) -> None:
    sm = moto.boto3_client("secretsmanager")
    ssm = moto.boto3_client("ssm")
    sm.create_secret(Name="prefetch/one", SecretString="prefetched-VALUE-1")  # type: ignore[attr-defined]
    ssm.put_parameter(Name="/prefetch/two", Value="prefetched-VALUE-2", Type="String")  # type: ignore[attr-defined]
    answers: list[tuple[int, dict[str, object]]] = []
    with FakeExtensionsApi() as fake:
        prefetch = "secretsmanager:prefetch/one,ssm:/prefetch/two,ssm:/prefetch/absent"
        ext = start(
            extension_executable,
            tmp_path,
            moto,
            lambda_credentials,
            fake,
            PARAMETERS_SECRETS_EXTENSION_PREFETCH=prefetch,
            AWS_LAMBDA_INITIALIZATION_TYPE=initialization_type,
        )

        def during_init() -> None:
            # Gone from AWS now: only the cache can still answer.
            sm.delete_secret(SecretId="prefetch/one", ForceDeleteWithoutRecovery=True)  # type: ignore[attr-defined]
            ssm.delete_parameter(Name="/prefetch/two")  # type: ignore[attr-defined]
            answers.append(ext.get_json(SECRET_PATH + "prefetch/one"))
            answers.append(ext.get_json(PARAM_PATH + "/prefetch/two"))

        fake.on_first_next = during_init
        with ext:
            wait_first_next(fake, ext)
            assert answers[0][0] == 200 and answers[0][1]["SecretString"] == "prefetched-VALUE-1"
            assert answers[1][0] == 200
            assert answers[1][1]["Parameter"]["Value"] == "prefetched-VALUE-2"  # type: ignore[index]
            assert "/prefetch/absent" in ext.output()  # the failed prefetch is logged, not fatal
            fake.shutdown_extension()
            assert ext.proc.wait(timeout=5) == 0


def _writer_if_read(fifo: Path) -> int | None:
    """A write end of `fifo` once some process has it open to read, else None."""
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:  # ENXIO: no reader yet
        if exc.errno != errno.ENXIO:
            raise
        return None


def test_the_warm_up_loads_the_trust_store_before_the_first_request(
    extension_executable: Path, tmp_path: Path, moto: Moto, lambda_credentials: LambdaCredentials
) -> None:
    # Loading the trust store costs the first https call about 20 ms of CPU: the warm-up,
    # started once `next` has left, loads it instead. AWS_CA_BUNDLE is a FIFO here, so the
    # moment something reads it shows.
    pki = make_pki(tmp_path, "warm")
    bundle = tmp_path / "bundle.pem"
    os.mkfifo(bundle)
    writers: list[int] = []
    with (
        FaultProxy(moto.host, moto.port, ssl_context=pki.server_context()) as upstream,
        FakeExtensionsApi() as fake,
    ):
        ext = start(
            extension_executable,
            tmp_path,
            moto,
            lambda_credentials,
            fake,
            AWS_ENDPOINT_URL=f"https://127.0.0.1:{upstream.port}",
            AWS_CA_BUNDLE=str(bundle),
        )
        with ext:
            wait_first_next(fake, ext)

            def read_by_now() -> bool:
                writer = _writer_if_read(bundle)
                writers.extend([] if writer is None else [writer])
                return writer is not None

            wait_until(read_by_now, 20, "a read of AWS_CA_BUNDLE before any request")
            # The warm-up, waiting on the FIFO, runs niced; the threads that serve do not.
            usual = os.getpriority(os.PRIO_PROCESS, 0)  # the extension inherits the test's
            niced = min(usual + extension.WARM_UP_NICENESS, 19)
            niceness = sorted(_niceness_of_threads(ext.proc.pid))
            assert niceness == [usual] * (len(niceness) - 1) + [niced], niceness
            with os.fdopen(writers[0], "wb") as writer:
                writer.write(pki.ca_file.read_bytes())
            assert upstream.requests_received == 0  # warming made no call
            status, body = ext.get_json(SECRET_PATH + quote(moto.secret_name))
            assert (status, body["SecretString"]) == (200, SECRET_STRING_V2), body
            fake.shutdown_extension()
            assert ext.proc.wait(timeout=5) == 0


def _niceness_of_threads(pid: int) -> list[int]:
    """The niceness of each thread of process `pid` (field 19 of /proc/<pid>/task/*/stat)."""
    values = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rpartition(")")[2].split()
        values.append(int(fields[16]))
    return values


def test_no_token_reports_init_error(
    extension_executable: Path, tmp_path: Path, moto: Moto, lambda_credentials: LambdaCredentials
) -> None:
    # A bad setting only warns (see test_config_process.py); no token at all is fatal.
    with FakeExtensionsApi() as fake:
        ext = start(
            extension_executable,
            tmp_path,
            moto,
            lambda_credentials,
            fake,
            AWS_SESSION_TOKEN="",
            SECRETS_MANAGER_TTL="301",
        )
        with ext:
            assert ext.proc.wait(timeout=15) != 0
        [error] = fake.calls.init_errors
        assert (
            error.headers["lambda-extension-function-error-type"]
            == "Extension.InvalidConfiguration"
        )
        assert error.headers["lambda-extension-identifier"] == IDENTIFIER
        body = error.body
        assert isinstance(body, dict) and body["errorType"] == "Extension.InvalidConfiguration"
        assert "AWS_SESSION_TOKEN" in body["errorMessage"] and body["stackTrace"] == []
        assert fake.calls.next_calls == []


def test_port_in_use_reports_init_error(
    extension_executable: Path, tmp_path: Path, moto: Moto, lambda_credentials: LambdaCredentials
) -> None:
    with socket.socket() as taken, FakeExtensionsApi() as fake:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        ext = start(
            extension_executable,
            tmp_path,
            moto,
            lambda_credentials,
            fake,
            PARAMETERS_SECRETS_EXTENSION_HTTP_PORT=port,
        )
        with ext:
            assert ext.proc.wait(timeout=15) != 0
        [error] = fake.calls.init_errors
        assert error.headers["lambda-extension-function-error-type"] == "Extension.PortUnavailable"
        assert port in error.body["errorMessage"]  # type: ignore[index]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_standalone_mode_serves_until_a_signal(
    extension_executable: Path,
    tmp_path: Path,
    moto: Moto,
    lambda_credentials: LambdaCredentials,
    signum: int,
) -> None:
    with start(extension_executable, tmp_path, moto, lambda_credentials, None) as ext:
        ext.wait_listening()
        status, body = ext.get_json(SECRET_PATH + quote(moto.secret_name))
        assert status == 200 and body["SecretString"] == SECRET_STRING_V2
        ext.proc.send_signal(signum)
        assert ext.proc.wait(timeout=5) == 0
        assert "Traceback" not in ext.output()


def test_standalone_without_token_refuses_to_start(
    extension_executable: Path, tmp_path: Path, moto: Moto, lambda_credentials: LambdaCredentials
) -> None:
    ext = start(
        extension_executable, tmp_path, moto, lambda_credentials, None, AWS_SESSION_TOKEN=""
    )
    with ext:
        assert ext.proc.wait(timeout=15) != 0
        assert "AWS_SESSION_TOKEN" in ext.output()


def test_snapstart_passes_through_until_the_first_invoke(
    extension_executable: Path, tmp_path: Path, moto: Moto
) -> None:
    sm = moto.boto3_client("secretsmanager")
    sm.create_secret(Name="snap/secret", SecretString="snap-VALUE-1")  # type: ignore[attr-defined]
    # SnapStart environments carry the container token instead of AWS_SESSION_TOKEN.
    admin = LambdaCredentials(moto.access_key, moto.secret_key, "")
    with FakeExtensionsApi() as fake:
        ext = start(
            extension_executable,
            tmp_path,
            moto,
            admin,
            fake,
            AWS_LAMBDA_INITIALIZATION_TYPE="snap-start",
            AWS_CONTAINER_AUTHORIZATION_TOKEN="snapstart-token-fixture",
            PARAMETERS_SECRETS_EXTENSION_PREFETCH="secretsmanager:snap/secret",
        )
        with ext:
            wait_first_next(fake, ext)
            assert fake.calls.registrations[0].body == {"events": ["INVOKE", "SHUTDOWN"]}
            path = SECRET_PATH + "snap/secret"
            assert ext.get_json(path)[1]["SecretString"] == "snap-VALUE-1"
            sm.put_secret_value(SecretId="snap/secret", SecretString="snap-VALUE-2")  # type: ignore[attr-defined]
            assert ext.get_json(path)[1]["SecretString"] == "snap-VALUE-2"  # not cached in init

            fake.send({"eventType": "INVOKE", "requestId": "r1", "deadlineMs": 0})
            deadline = time.monotonic() + 10
            while len(fake.calls.next_calls) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert ext.get_json(path)[1]["SecretString"] == "snap-VALUE-2"
            sm.put_secret_value(SecretId="snap/secret", SecretString="snap-VALUE-3")  # type: ignore[attr-defined]
            assert ext.get_json(path)[1]["SecretString"] == "snap-VALUE-2"  # cached after invoke
            fake.shutdown_extension()
            assert ext.proc.wait(timeout=5) == 0


def test_debug_logs_never_carry_values_tokens_or_keys(
    extension_executable: Path, tmp_path: Path, moto: Moto, lambda_credentials: LambdaCredentials
) -> None:
    with FakeExtensionsApi() as fake:
        ext = start(
            extension_executable,
            tmp_path,
            moto,
            lambda_credentials,
            fake,
            PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL="debug",
        )
        with ext:
            wait_first_next(fake, ext)
            secret = ext.get_json(SECRET_PATH + quote(moto.secret_name))
            assert secret[1]["SecretString"] == SECRET_STRING_V2
            param = ext.get_json(PARAM_PATH + moto.param_secure + "&withDecryption=true")
            assert param[1]["Parameter"]["Value"] == PARAM_SECURE
            ext.get_json(SECRET_PATH + quote(moto.secret_name))  # a hit, logged too
            assert ext.get(SECRET_PATH + "x", token="wrong-token-fixture")[0] == 401
            fake.shutdown_extension()
            assert ext.proc.wait(timeout=5) == 0
        logs = ext.output()
        assert "DEBUG" in logs and "hit" in logs and "miss" in logs
        for leak in (
            SECRET_STRING_V2,
            "s3cr3t-VALUE",
            PARAM_SECURE,
            lambda_credentials.session_token,
            lambda_credentials.access_key,
            lambda_credentials.secret_key,
            "wrong-token-fixture",
            "Signature=",
        ):
            assert leak not in logs, leak


def test_json_log_format(
    extension_executable: Path, tmp_path: Path, moto: Moto, lambda_credentials: LambdaCredentials
) -> None:
    with start(
        extension_executable, tmp_path, moto, lambda_credentials, None, AWS_LAMBDA_LOG_FORMAT="JSON"
    ) as ext:
        ext.wait_listening()
        # The server answers /ping a moment before the main thread logs that it listens,
        # and SIGTERM ends the process at once: wait for the line rather than race it.
        wait_until(lambda: "listening on port" in ext.output(), 10, "the listening line")
        ext.proc.send_signal(signal.SIGTERM)
        assert ext.proc.wait(timeout=5) == 0
        records = [json.loads(line) for line in ext.output().splitlines() if line.strip()]
        assert records and all(
            set(r) == {"timestamp", "level", "logger", "message"} for r in records
        )
        assert any("listening on port" in r["message"] for r in records)


# The client code shown in the AWS docs, unchanged, against the running extension.
URLLIB_CLIENT = """
import json, os, sys, urllib.request
port, secret_name = sys.argv[1], sys.argv[2]
url = f"http://localhost:{port}/secretsmanager/get?secretId={secret_name}"
req = urllib.request.Request(url)
req.add_header("X-Aws-Parameters-Secrets-Token", os.environ.get("AWS_SESSION_TOKEN"))
secret = json.loads(urllib.request.urlopen(req).read())["SecretString"]
print(json.loads(secret)["username"])
"""

REQUESTS_CLIENT = """
import json, os, sys, requests
port, name = sys.argv[1], sys.argv[2]
headers = {"X-Aws-Parameters-Secrets-Token": os.environ.get("AWS_SESSION_TOKEN")}
url = f"http://localhost:{port}/systemsmanager/parameters/get?name={name}&withDecryption=true"
r = requests.get(url, headers=headers)
print(r.json()["Parameter"]["Type"])
"""

NODE_CLIENT = """
const http = require('http');
const [port, name] = process.argv.slice(1);  // node -e: argv[0] is node itself
const options = {
  hostname: 'localhost', port: port,
  path: '/secretsmanager/get?secretId=' + encodeURIComponent(name),
  headers: {'X-Aws-Parameters-Secrets-Token': process.env.AWS_SESSION_TOKEN},
  method: 'GET',
};
const req = http.request(options, (res) => {
  let body = '';
  res.on('data', (chunk) => body += chunk);
  res.on('end', () => console.log(JSON.parse(JSON.parse(body).SecretString).username));
});
req.end();
"""


def test_clients_from_the_aws_docs_work_unchanged(
    extension_executable: Path, tmp_path: Path, moto: Moto, lambda_credentials: LambdaCredentials
) -> None:
    import shutil

    with start(extension_executable, tmp_path, moto, lambda_credentials, None) as ext:
        ext.wait_listening()
        env = {"AWS_SESSION_TOKEN": lambda_credentials.session_token, "PATH": "/usr/bin:/bin"}
        port = str(ext.port)
        runs = [
            ([sys.executable, "-c", URLLIB_CLIENT, port, moto.secret_name], "svc"),
            ([sys.executable, "-c", REQUESTS_CLIENT, port, moto.param_secure], "SecureString"),
        ]
        node = shutil.which("node")
        if node is not None:
            runs.append(([node, "-e", NODE_CLIENT, port, moto.secret_name], "svc"))
        for argv, expected in runs:
            done = subprocess.run(
                argv, check=False, env=env, capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 0, done.stderr
            assert done.stdout.strip() == expected
        if node is None:
            pytest.skip("node is not installed: the Node client was not run")


def test_token_header_is_case_insensitive_and_required(
    extension_executable: Path, tmp_path: Path, moto: Moto, lambda_credentials: LambdaCredentials
) -> None:
    with start(extension_executable, tmp_path, moto, lambda_credentials, None) as ext:
        ext.wait_listening()
        path = SECRET_PATH + quote(moto.secret_name)
        assert ext.get(path, token=None)[0] == 401
        lower = {TOKEN_HEADER.lower(): lambda_credentials.session_token}
        assert ext.get(path, token=None, headers=lower)[0] == 200


def test_a_connection_right_after_registering_is_answered(
    extension_executable: Path, tmp_path: Path, moto: Moto, lambda_credentials: LambdaCredentials
) -> None:
    # The port is listening before `register`, so the kernel holds a connection made at once
    # until the server, started after the imports, accepts it.
    with FakeExtensionsApi() as fake:
        ext = start(extension_executable, tmp_path, moto, lambda_credentials, fake)
        with ext:
            assert fake.registered.wait(20), ext.output()
            assert not fake.first_next.is_set()
            status, body = ext.get_json(SECRET_PATH + quote(moto.secret_name))
            assert status == 200 and body["SecretString"] == SECRET_STRING_V2
            wait_first_next(fake, ext)
            fake.shutdown_extension()
            assert ext.proc.wait(timeout=5) == 0


def test_a_silent_upstream_costs_the_prefetch_budget_not_the_init_limit(
    extension_executable: Path, tmp_path: Path, moto: Moto, lambda_credentials: LambdaCredentials
) -> None:
    budget_ms = 500
    with socket.socket() as silent, FakeExtensionsApi() as fake:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # completes TCP handshakes, never reads nor answers
        ext = start(
            extension_executable,
            tmp_path,
            moto,
            lambda_credentials,
            fake,
            AWS_ENDPOINT_URL=f"http://127.0.0.1:{silent.getsockname()[1]}",
            PARAMETERS_SECRETS_EXTENSION_PREFETCH="secretsmanager:never/answered",
            PARAMETERS_SECRETS_EXTENSION_PREFETCH_TIMEOUT_MILLIS=str(budget_ms),
        )
        started = time.monotonic()
        with ext:
            wait_first_next(fake, ext)
            took = time.monotonic() - started
            # Without the budget this is 3 attempts of 10 s; the slack covers a loaded box.
            assert budget_ms / 1000 <= took < budget_ms / 1000 + 4, took
            assert "prefetch not finished after 500 ms" in ext.output()
            fake.shutdown_extension()
            assert ext.proc.wait(timeout=5) == 0


@pytest.mark.parametrize(
    ("argument", "expected"),
    [("--version", "parameters-secrets-extension 0.1.0\n"), ("--help", "usage: ")],
)
def test_help_and_version_print_and_exit_without_registering(
    *,
    extension_executable: Path,
    moto: Moto,
    lambda_credentials: LambdaCredentials,
    argument: str,
    expected: str,
) -> None:
    with FakeExtensionsApi() as fake:
        port = free_port()
        env = lambda_env(moto, lambda_credentials, port, fake.address)
        for command in ([str(extension_executable)], [sys.executable, "extension.py"]):
            done = subprocess.run(
                [*command, argument],
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=30,
                cwd=Path(__file__).resolve().parent.parent,
            )
            assert (done.returncode, done.stderr) == (0, ""), command
            assert done.stdout.startswith(expected), command
        assert fake.calls.registrations == []
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # never bound by the runs above


def test_an_unknown_argument_is_refused(extension_executable: Path) -> None:
    done = subprocess.run(
        [str(extension_executable), "--serve"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 2
    assert "unexpected arguments '--serve'" in done.stderr and "usage: " in done.stderr
