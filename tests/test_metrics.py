"""Metrics: counters after a scripted sequence, GET /metrics behind the token, the bounded
error tables, and the EMF line the real process writes at SHUTDOWN."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from cache import Cache
from parameters_secrets_extension.aws.operations import AwsClient
from parameters_secrets_extension.config import AwsConfig
from parameters_secrets_extension.lambda_api.boot import listen
from parameters_secrets_extension.local_api import server as local_server
from parameters_secrets_extension.lookups import Lookups
from parameters_secrets_extension.metrics import MAX_TYPES, OTHER, Metrics
from tests.conftest import SECRET_STRING, LambdaCredentials, Moto, free_port
from tests.extension_process import ExtensionProcess, lambda_env
from tests.fake_extensions_api import FakeExtensionsApi
from tests.hardening_support import exchange, get_request, parse_responses

TOKEN = "metrics-TOKEN-5678"
SECRET = "/secretsmanager/get?secretId="
COUNTERS = (
    "Hits",
    "Misses",
    "StaleServes",
    "RefreshesAhead",
    "CoalescedWaits",
    "Evictions",
    "NegativeHits",
    "RevalidationsRenewed",
    "RevalidationsRefetched",
    "RevalidationsDeniedFallback",
    "UpstreamCalls",
    "UpstreamErrors",
    "LocalErrors",
)


@contextlib.contextmanager
def serving(moto: Moto, cache_size: int) -> Iterator[int]:
    aws = AwsConfig(
        region="us-east-1",
        endpoint_url=moto.endpoint,
        access_key_id=moto.access_key,
        secret_access_key=moto.secret_key,
    )
    client = AwsClient(aws, max_connections=2, secrets_manager_timeout_ms=0, ssm_timeout_ms=0)
    lookups = Lookups(client, Cache(cache_size), secrets_manager_ttl=300, ssm_ttl=300)
    servers = local_server.start(lookups, sockets=listen(0), token=TOKEN)
    try:
        yield servers.port
    finally:
        servers.shutdown()
        client.close()


def status_and_body(port: int, path: str, token: str | None = TOKEN) -> tuple[int, bytes]:
    data = exchange(port, get_request(path, token, extra="Connection: close\r\n"))
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def test_counters_after_a_scripted_sequence(moto: Moto) -> None:
    with serving(moto, cache_size=1) as port:
        assert status_and_body(port, "/metrics", token=None)[0] == 401
        assert status_and_body(port, "/metrics", token="wrong")[0] == 401
        first = SECRET + quote(moto.secret_name, safe="")
        assert status_and_body(port, first)[0] == 200  # miss
        assert status_and_body(port, first)[0] == 200  # hit
        assert status_and_body(port, SECRET + "metrics/no-such-secret")[0] == 404  # moto's 404
        assert status_and_body(port, SECRET)[0] == 400  # no secretId
        assert status_and_body(port, SECRET + quote(moto.binary_secret_name, safe=""))[0] == 200
        post = get_request("/ping", None).replace(b"GET", b"POST", 1)
        assert parse_responses(exchange(port, post)).statuses == [405]
        assert parse_responses(exchange(port, b"NOT A REQUEST\r\n\r\n")).statuses == [400]

        status, body = status_and_body(port, "/metrics")
    assert status == 200
    counters = json.loads(body)
    assert {name: counters[name] for name in COUNTERS} == {
        "Hits": 1,
        "Misses": 3,
        "StaleServes": 0,
        "RefreshesAhead": 0,
        "CoalescedWaits": 0,
        "Evictions": 1,  # the size-1 cache made room for the binary secret
        "NegativeHits": 0,
        "RevalidationsRenewed": 0,
        "RevalidationsRefetched": 0,
        "RevalidationsDeniedFallback": 0,
        "UpstreamCalls": 3,
        "UpstreamErrors": 1,
        "LocalErrors": 5,
    }
    assert counters["UpstreamErrorsByType"] == {"ResourceNotFoundException": 1}
    assert counters["LocalErrorsByType"] == {
        "UnauthorizedException": 2,
        "MissingParameterException": 1,
        "MethodNotAllowedException": 1,
        "BadRequestException": 1,
    }
    assert (counters["CacheSize"], counters["CacheMaxSize"]) == (1, 1)
    text = body.decode()
    assert "VALUE" not in text and TOKEN not in text and moto.secret_name not in text


def test_a_batch_read_is_one_upstream_call_whatever_it_holds(moto: Moto) -> None:
    names = [moto.secret_name, moto.binary_secret_name, "metrics/no-such-secret"]
    batch = "/secretsmanager/batch?secretIds=" + ",".join(quote(n, safe="") for n in names)
    with serving(moto, cache_size=10) as port:
        assert status_and_body(port, batch)[0] == 200  # two values and one item error
        assert status_and_body(port, SECRET + quote(moto.secret_name, safe=""))[0] == 200
        counters = json.loads(status_and_body(port, "/metrics")[1])
    # One BatchGetSecretValue for the three ids; the single read after it is a hit.
    assert (counters["UpstreamCalls"], counters["UpstreamErrors"]) == (1, 0)
    assert (counters["Hits"], counters["Misses"]) == (1, 3)


@pytest.mark.parametrize(
    "route",
    [
        "/secretsmanager/batch?secretIds={secret}",
        "/systemsmanager/parameters/batch?names={param}",
        "/systemsmanager/parameters/get-by-path?path=/&recursive=true",
    ],
)
def test_refresh_now_on_batch_and_path_routes_goes_upstream_once_more(
    moto: Moto, route: str
) -> None:
    target = route.format(
        secret=quote(moto.secret_name, safe=""), param=quote(moto.param_string, safe="")
    )
    with serving(moto, cache_size=10) as port:
        assert status_and_body(port, target)[0] == 200  # a miss: one call
        assert status_and_body(port, target)[0] == 200  # a hit: none
        assert status_and_body(port, target + "&refreshNow=1")[0] == 200  # one more
        assert status_and_body(port, target + "&refreshNow=yes")[0] == 400
        counters = json.loads(status_and_body(port, "/metrics")[1])
    assert counters["UpstreamCalls"] == 2


def test_the_error_tables_are_bounded_and_hold_only_type_names() -> None:
    metrics = Metrics()
    for index in range(MAX_TYPES + 10):
        metrics.upstream_call(f"Error{index}Exception")
    metrics.upstream_call("a value with spaces: s3cr3t")
    metrics.upstream_call(None)
    for _ in range(3):
        metrics.local_error("x" * 500)
    counters = metrics.counters(Cache(1).info())
    upstream = counters["UpstreamErrorsByType"]
    assert isinstance(upstream, dict)
    assert len(upstream) == MAX_TYPES + 1
    assert upstream[OTHER] == 11  # 10 past the cap and the one that is no type name
    assert upstream["Error0Exception"] == 1 and "Error64Exception" not in upstream
    assert (counters["UpstreamCalls"], counters["UpstreamErrors"]) == (MAX_TYPES + 12, 75)
    assert counters["LocalErrorsByType"] == {OTHER: 3}


def run_to_shutdown(
    executable: Path, tmp_path: Path, moto: Moto, creds: LambdaCredentials, **extra: str
) -> str:
    """Start under the fake Lambda, read a secret twice and fail once, shut down; the output."""
    with FakeExtensionsApi() as fake:
        env = lambda_env(moto, creds, free_port(), fake.address, **extra)
        with ExtensionProcess(executable, env, tmp_path / "extension.log") as ext:
            if not fake.first_next.wait(20):
                raise AssertionError(f"no first next:\n{ext.output()}")
            path = SECRET + quote(moto.secret_name, safe="")
            assert [ext.get(path)[0] for _ in range(2)] == [200, 200]
            assert ext.get(path, token="wrong")[0] == 401
            fake.shutdown_extension()
            assert ext.proc.wait(timeout=5) == 0
            return ext.output()


def emf_lines(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith('{"_aws"')]


def test_the_emf_line_at_shutdown_is_valid_embedded_metric_format(
    extension_executable: Path, tmp_path: Path, moto: Moto, lambda_credentials: LambdaCredentials
) -> None:
    before_ms = int(time.time() * 1000)
    output = run_to_shutdown(
        extension_executable,
        tmp_path,
        moto,
        lambda_credentials,
        PARAMETERS_SECRETS_EXTENSION_METRICS="emf",
        AWS_LAMBDA_FUNCTION_NAME="metrics-fn",
    )
    [line] = emf_lines(output)
    assert set(line) == {
        "_aws",
        "FunctionName",
        *COUNTERS,
        "UpstreamErrorsByType",
        "LocalErrorsByType",
    }
    aws = line["_aws"]
    assert isinstance(aws, dict) and set(aws) == {"Timestamp", "CloudWatchMetrics"}
    timestamp = aws["Timestamp"]
    assert isinstance(timestamp, int) and before_ms <= timestamp <= int(time.time() * 1000)
    [directive] = aws["CloudWatchMetrics"]
    assert set(directive) == {"Namespace", "Dimensions", "Metrics"}
    assert directive["Namespace"] == "ParametersSecretsExtension"
    assert directive["Dimensions"] == [["FunctionName"]]
    assert directive["Metrics"] == [{"Name": name, "Unit": "Count"} for name in COUNTERS]
    # Every dimension is a string member and every metric a number member of the root.
    assert line["FunctionName"] == "metrics-fn"
    for name in COUNTERS:
        value = line[name]
        assert isinstance(value, int) and not isinstance(value, bool) and value >= 0, name
    assert (line["Hits"], line["Misses"], line["UpstreamCalls"], line["LocalErrors"]) == (
        1,
        1,
        1,
        1,
    )
    assert line["LocalErrorsByType"] == {"UnauthorizedException": 1}
    emf_text = json.dumps(line)
    for secret in (SECRET_STRING, "VALUE", lambda_credentials.session_token, moto.secret_name):
        assert secret not in emf_text


@pytest.mark.parametrize("setting", [None, "prometheus"])
def test_no_emf_line_unless_asked_and_an_unknown_output_is_a_warning(
    extension_executable: Path,
    tmp_path: Path,
    moto: Moto,
    lambda_credentials: LambdaCredentials,
    setting: str | None,
) -> None:
    extra = {} if setting is None else {"PARAMETERS_SECRETS_EXTENSION_METRICS": setting}
    output = run_to_shutdown(extension_executable, tmp_path, moto, lambda_credentials, **extra)
    assert emf_lines(output) == [] and '"_aws"' not in output
    warned = f"WARN PARAMETERS_SECRETS_EXTENSION_METRICS={setting} is not one of off, emf"
    assert (warned in output) == (setting is not None), output


def test_metrics_route_is_a_token_route_not_a_lookup(moto: Moto) -> None:
    with serving(moto, cache_size=10) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                get_request("/metrics?refreshNow=true", TOKEN, extra="Connection: close\r\n")
            )
            data = sock.makefile("rb").read()
        assert data.startswith(b"HTTP/1.1 200 ")
        counters = json.loads(data.partition(b"\r\n\r\n")[2])
        assert counters["UpstreamCalls"] == 0 and counters["Misses"] == 0
        forwarded = get_request("/metrics", TOKEN, extra="X-Forwarded-For: 10.0.0.1\r\n")
        assert parse_responses(exchange(port, forwarded)).statuses == [400]
