"""The local HTTP API end to end: real servers on port 0, real sockets, moto as AWS."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from cache import Cache
from parameters_secrets_extension.aws.operations import AwsClient
from parameters_secrets_extension.config import AwsConfig
from parameters_secrets_extension.lambda_api.boot import listen
from parameters_secrets_extension.local_api import server as local_server
from parameters_secrets_extension.local_api.request_head import MAX_HEADERS, MAX_REQUEST_LINE
from parameters_secrets_extension.lookups import Lookups
from tests import log_capture
from tests.conftest import (
    PARAM_LIST,
    PARAM_SECURE,
    PARAM_STRING,
    PARAMETER_FIELDS,
    SECRET_BINARY,
    SECRET_FIELDS,
    SECRET_STRING,
    SECRET_STRING_V2,
    Moto,
    boto_error,
    free_port,
    wait_until,
)

TOKEN = "local-server-TOKEN-1234"
SM = "/secretsmanager/get"
SSM = "/systemsmanager/parameters/get"
ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
LABELLED = "/local-server/labelled"
PLUS_SECRET = "local-server/plus+sign"
PLUS_VALUE = "plus-SECRET-value"


# ---------------------------------------------------------------- raw HTTP over sockets


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers["content-type"] == "application/json"
        return json.loads(self.body)

    @property
    def error(self) -> tuple[int, str]:
        body = self.json()
        assert set(body) == {"__type", "message"}
        assert isinstance(body["message"], str)
        return self.status, body["__type"]


def connect(port: int, host: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection((host, port), timeout=10)
    return sock


def request_bytes(
    target: str, *, token: str | None = TOKEN, headers: str = "", method: str = "GET"
) -> bytes:
    token_line = f"X-Aws-Parameters-Secrets-Token: {token}\r\n" if token is not None else ""
    head = f"{method} {target} HTTP/1.1\r\nHost: localhost\r\n{token_line}{headers}\r\n"
    return head.encode()


def read_response(stream: io.BufferedReader, *, head: bool = False) -> Response:
    status_line = stream.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers["content-length"])
    body = b"" if head else stream.read(length)
    assert len(body) == (0 if head else length)
    return Response(status, headers, body)


def exchange(port: int, raw: bytes, *, host: str = "127.0.0.1", head: bool = False) -> Response:
    with connect(port, host) as sock, sock.makefile("rb") as stream:
        sock.sendall(raw)
        return read_response(stream, head=head)


def get(port: int, target: str, **kwargs: Any) -> Response:
    return exchange(port, request_bytes(target, **kwargs))


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed: EOF, or a reset for unread data."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


# ---------------------------------------------------------------- servers under test


@dataclass(frozen=True)
class Served:
    port: int
    servers: local_server.Servers
    cache: Cache


def moto_config(moto: Moto, *, limited: bool = False) -> AwsConfig:
    return AwsConfig(
        region="us-east-1",
        endpoint_url=moto.endpoint,
        access_key_id=moto.limited_access_key if limited else moto.access_key,
        secret_access_key=moto.limited_secret_key if limited else moto.secret_key,
    )


@contextlib.contextmanager
def serving(
    aws: AwsConfig,
    *,
    token: str | None = TOKEN,
    timeout_ms: int = 0,
    max_connections: int = 256,
    idle_timeout: float = 60.0,
) -> Iterator[Served]:
    client = AwsClient(
        aws, max_connections=3, secrets_manager_timeout_ms=timeout_ms, ssm_timeout_ms=timeout_ms
    )
    cache: Cache = Cache(100)
    lookups = Lookups(client, cache, secrets_manager_ttl=300, ssm_ttl=300)
    servers = local_server.start(
        lookups,
        sockets=listen(0),
        token=token,
        max_connections=max_connections,
        idle_timeout=idle_timeout,
    )
    try:
        yield Served(servers.port, servers, cache)
    finally:
        servers.shutdown()
        client.close()


@pytest.fixture
def served(moto: Moto) -> Iterator[Served]:
    with serving(moto_config(moto)) as running:
        yield running


@pytest.fixture(scope="module")
def extra_data(moto: Moto) -> None:
    """Data of this file's own: a parameter with two versions and a label, a '+' secret."""
    ssm: Any = moto.boto3_client("ssm")
    ssm.put_parameter(Name=LABELLED, Value="one-VALUE", Type="String")
    ssm.put_parameter(Name=LABELLED, Value="two-VALUE", Type="String", Overwrite=True)
    ssm.label_parameter_version(Name=LABELLED, ParameterVersion=2, Labels=["lbl"])
    sm: Any = moto.boto3_client("secretsmanager")
    sm.create_secret(Name=PLUS_SECRET, SecretString=PLUS_VALUE)


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    with log_capture.captured("debug") as stream:
        yield stream


def all_slots_serve(port: int, slots: int) -> bool:
    """True when `slots` connections held at once are all answered, none refused with 503:
    seen from outside, the server has released every connection that ended before."""
    socks = [connect(port) for _ in range(slots)]
    try:
        for sock in socks:
            sock.sendall(request_bytes("/ping"))
            if read_response(sock.makefile("rb")).status != 200:
                return False
        return True
    except (OSError, AssertionError):  # a refused connection may be reset mid-exchange
        return False
    finally:
        for sock in socks:
            sock.close()


# ---------------------------------------------------------------- success shapes (Go SDK's)


def same_instant(ours: str, theirs: datetime) -> None:
    assert ISO_MS.fullmatch(ours), ours
    parsed = datetime.fromisoformat(ours.replace("Z", "+00:00"))
    assert abs(parsed - theirs) < timedelta(milliseconds=1)


def assert_secret(ours: Any, theirs: Any) -> None:
    assert set(ours) == set(SECRET_FIELDS)
    assert ours["ResultMetadata"] == {}
    for field in ("ARN", "Name", "VersionId", "VersionStages"):
        assert ours[field] == theirs[field], field
    same_instant(ours["CreatedDate"], theirs["CreatedDate"])
    assert ours["SecretString"] == theirs.get("SecretString")
    if "SecretBinary" in theirs:
        assert base64.b64decode(ours["SecretBinary"]) == theirs["SecretBinary"]
    else:
        assert ours["SecretBinary"] is None


def assert_parameter(ours: Any, theirs: Any, selector: str | None) -> None:
    assert set(ours) == {"Parameter", "ResultMetadata"}
    assert ours["ResultMetadata"] == {}
    parameter, expected = ours["Parameter"], theirs["Parameter"]
    assert set(parameter) == set(PARAMETER_FIELDS)
    for field in ("ARN", "DataType", "Name", "Type", "Value", "Version"):
        assert parameter[field] == expected[field], field
    same_instant(parameter["LastModifiedDate"], expected["LastModifiedDate"])
    assert parameter["Selector"] == selector
    assert parameter["SourceResult"] == expected.get("SourceResult")


@pytest.mark.parametrize(
    ("query", "kwargs"),
    [
        ("secretId=app/db-credentials", {}),
        ("secretId=app%2Fdb-credentials", {}),
        ("secretId=app/binary-blob", {}),
        ("secretId=app/db-credentials&versionStage=AWSPREVIOUS", {"VersionStage": "AWSPREVIOUS"}),
        ("secretId=app/db-credentials&versionStage=AWSCURRENT", {"VersionStage": "AWSCURRENT"}),
    ],
)
def test_secret_shapes_match_aws(served: Served, moto: Moto, query: str, kwargs: Any) -> None:
    response = get(served.port, f"{SM}?{query}")
    assert response.status == 200
    secret_id = "app/binary-blob" if "binary" in query else moto.secret_name
    theirs: Any = moto.boto3_client("secretsmanager").get_secret_value(  # type: ignore[attr-defined]
        SecretId=secret_id, **kwargs
    )
    assert_secret(response.json(), theirs)


def test_secret_values_by_arn_version_id_and_stage(served: Served, moto: Moto) -> None:
    by_arn = get(served.port, f"{SM}?secretId={moto.secret_arn}").json()
    assert by_arn["ARN"] == moto.secret_arn
    assert by_arn["SecretString"] == SECRET_STRING_V2
    by_id = get(served.port, f"{SM}?secretId={moto.secret_name}&versionId={moto.secret_v1}")
    assert by_id.json()["SecretString"] == SECRET_STRING
    assert by_id.json()["VersionId"] == moto.secret_v1
    previous = get(served.port, f"{SM}?secretId={moto.secret_name}&versionStage=AWSPREVIOUS")
    assert previous.json()["SecretString"] == SECRET_STRING
    binary = get(served.port, f"{SM}?secretId={moto.binary_secret_name}").json()
    assert base64.b64decode(binary["SecretBinary"]) == SECRET_BINARY


@pytest.mark.parametrize(
    ("name", "decrypt", "value"),
    [
        ("/app/plain", False, PARAM_STRING),
        ("/app/list", False, PARAM_LIST),
        ("/app/secure", True, PARAM_SECURE),
        ("/app/secure", False, None),
    ],
)
def test_parameter_shapes_match_aws(
    served: Served, moto: Moto, name: str, decrypt: bool, value: str | None
) -> None:
    query = f"name={name}" + ("&withDecryption=TRUE" if decrypt else "")
    response = get(served.port, f"{SSM}?{query}")
    assert response.status == 200
    theirs: Any = moto.boto3_client("ssm").get_parameter(  # type: ignore[attr-defined]
        Name=name, WithDecryption=decrypt
    )
    assert_parameter(response.json(), theirs, None)
    if value is not None:
        assert response.json()["Parameter"]["Value"] == value
    else:
        assert response.json()["Parameter"]["Value"] != PARAM_SECURE


def test_parameter_trailing_slash_and_percent_decoding(served: Served) -> None:
    for path in (SSM, SSM + "/"):
        response = get(served.port, f"{path}?name=%2Fapp%2Fplain")
        assert response.status == 200
        assert response.json()["Parameter"]["Value"] == PARAM_STRING


@pytest.mark.parametrize(
    ("query", "value", "selector"),
    [
        ("version=1&label=lbl", "one-VALUE", ":1"),
        ("label=lbl&version=1", "two-VALUE", ":lbl"),
        ("version=2", "two-VALUE", ":2"),
    ],
)
@pytest.mark.usefixtures("extra_data")
def test_first_of_version_or_label_wins(
    served: Served, moto: Moto, query: str, value: str, selector: str
) -> None:
    response = get(served.port, f"{SSM}?name={LABELLED}&{query}")
    assert response.status == 200
    ours = response.json()
    assert ours["Parameter"]["Value"] == value
    theirs: Any = moto.boto3_client("ssm").get_parameter(  # type: ignore[attr-defined]
        Name=LABELLED + selector
    )
    assert_parameter(ours, theirs, selector)


def test_plus_means_space(served: Served, extra_data: None) -> None:
    escaped = get(served.port, f"{SM}?secretId=local-server/plus%2Bsign")
    assert escaped.json()["SecretString"] == PLUS_VALUE
    # An unescaped '+' is a space, so it names another, absent, secret.
    assert get(served.port, f"{SM}?secretId=local-server/plus+sign").status >= 400


def test_refresh_now_stores_the_fresh_value(served: Served, moto: Moto) -> None:
    sm: Any = moto.boto3_client("secretsmanager")
    sm.create_secret(Name="local-server/rotating", SecretString="rotating-VALUE-1")
    target = f"{SM}?secretId=local-server/rotating"
    assert get(served.port, target).json()["SecretString"] == "rotating-VALUE-1"
    sm.put_secret_value(SecretId="local-server/rotating", SecretString="rotating-VALUE-2")
    assert get(served.port, target).json()["SecretString"] == "rotating-VALUE-1"
    refreshed = get(served.port, target + "&refreshNow=True")
    assert refreshed.json()["SecretString"] == "rotating-VALUE-2"
    hits = served.cache.info().hits
    assert get(served.port, target).json()["SecretString"] == "rotating-VALUE-2"
    assert served.cache.info().hits == hits + 1


def test_ping_needs_no_token(served: Served) -> None:
    response = get(served.port, "/ping", token=None)
    assert (response.status, response.body) == (200, b"healthy")
    assert response.headers["content-type"].startswith("text/plain")


# ---------------------------------------------------------------- error statuses and types


def test_token_missing_wrong_right_and_header_case(served: Served) -> None:
    target = f"{SSM}?name=/app/plain"
    assert get(served.port, target, token=None).error == (401, "UnauthorizedException")
    assert get(served.port, target, token="wrong").error == (401, "UnauthorizedException")
    assert get(served.port, target, token=TOKEN + "x").error == (401, "UnauthorizedException")
    assert get(served.port, target, token="").error == (401, "UnauthorizedException")
    assert get(served.port, target).status == 200
    for name in ("x-aws-parameters-secrets-token", "X-AWS-PARAMETERS-SECRETS-TOKEN"):
        response = get(served.port, target, token=None, headers=f"{name}: {TOKEN}\r\n")
        assert response.status == 200
    doubled = f"X-Aws-Parameters-Secrets-Token: {TOKEN}\r\n"
    assert get(served.port, target, headers=doubled).status == 401


def test_non_ascii_token_is_refused_without_error(served: Served) -> None:
    raw = b"GET /ping2 HTTP/1.1\r\n".replace(b"/ping2", f"{SM}?secretId=x".encode())
    raw += b"X-Aws-Parameters-Secrets-Token: \xe9\xff\r\n\r\n"
    assert exchange(served.port, raw).error == (401, "UnauthorizedException")


def test_a_wrong_token_never_reads_a_warm_cache(served: Served) -> None:
    target = f"{SM}?secretId=app/db-credentials"
    assert get(served.port, target).status == 200
    assert get(served.port, target).status == 200
    before = served.cache.info()
    response = get(served.port, target, token="wrong")
    assert response.error == (401, "UnauthorizedException")
    assert SECRET_STRING_V2.encode() not in response.body
    assert served.cache.info() == before


def test_no_configured_token_refuses_everything(moto: Moto) -> None:
    with serving(moto_config(moto), token=None) as running:
        assert get(running.port, f"{SM}?secretId=x").error == (401, "UnauthorizedException")
        assert get(running.port, f"{SM}?secretId=x", token="").error[0] == 401
        assert get(running.port, "/ping").status == 200


def test_forwarded_request_is_refused(served: Served) -> None:
    response = get(
        served.port, f"{SM}?secretId=app/db-credentials", headers="X-Forwarded-For: 1.2.3.4\r\n"
    )
    assert response.error == (400, "ForwardedRequestException")


@pytest.mark.parametrize(
    "target",
    [SM, f"{SM}?secretId=", f"{SM}?versionId=v", SSM, f"{SSM}?name=", f"{SSM}/?version=1"],
)
def test_missing_parameter(served: Served, target: str) -> None:
    assert get(served.port, target).error == (400, "MissingParameterException")


@pytest.mark.parametrize(
    "query",
    [
        f"{SSM}?name=/app/plain&version=abc",
        f"{SSM}?name=/app/plain&version=0",
        f"{SSM}?name=/app/plain&version=-2",
        f"{SSM}?name=/app/plain&withDecryption=maybe",
        f"{SSM}?name=/app/plain&refreshNow=maybe",
        f"{SM}?secretId=app/db-credentials&refreshNow=yes",
        f"{SM}?secretId=%ff%fe",
    ],
)
def test_invalid_parameter(served: Served, query: str) -> None:
    assert get(served.port, query).error == (400, "InvalidParameterException")


@pytest.mark.parametrize("path", ["/", "/secretsmanager", "/secretsmanager/get/", "/nope?x=1"])
def test_unknown_path(served: Served, path: str) -> None:
    assert get(served.port, path).error == (404, "NotFoundException")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"])
def test_methods_other_than_get(served: Served, method: str) -> None:
    raw = request_bytes(f"{SM}?secretId=app/db-credentials", method=method)
    assert exchange(served.port, raw).error == (405, "MethodNotAllowedException")


def test_head_is_405_with_headers_only(served: Served) -> None:
    raw = request_bytes("/ping", method="HEAD")
    response = exchange(served.port, raw, head=True)
    assert response.status == 405
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) > 0


def test_post_with_body_is_405_then_closed(served: Served) -> None:
    with connect(served.port) as sock, sock.makefile("rb") as stream:
        sock.sendall(request_bytes(SM, method="POST", headers="Content-Length: 5\r\n") + b"hello")
        response = read_response(stream)
        assert response.error == (405, "MethodNotAllowedException")
        assert response.headers["connection"] == "close"
        assert stream.read() == b""


def test_upstream_not_found_passes_through(served: Served, moto: Moto) -> None:
    sm: Any = moto.boto3_client("secretsmanager")
    ssm: Any = moto.boto3_client("ssm")
    secret = get(served.port, f"{SM}?secretId=local-server/absent")
    assert secret.error == boto_error(lambda: sm.get_secret_value(SecretId="local-server/absent"))
    assert secret.error[1] == "ResourceNotFoundException"
    parameter = get(served.port, f"{SSM}?name=/local-server/absent")
    assert parameter.error == boto_error(lambda: ssm.get_parameter(Name="/local-server/absent"))
    assert parameter.error[1] == "ParameterNotFound"


def test_upstream_access_denied_passes_through(moto: Moto) -> None:
    limited: Any = moto.boto3_client("secretsmanager", admin=False)
    status, _ = boto_error(lambda: limited.get_secret_value(SecretId=moto.secret_name))
    assert status == 403
    with serving(moto_config(moto, limited=True)) as running:
        response = get(running.port, f"{SM}?secretId={moto.secret_name}")
        # moto's auth errors are XML, which boto3's JSON parser cannot read the code from.
        assert response.error == (403, "AccessDenied")
        assert get(running.port, f"{SSM}?name=/app/plain").status == 200


def test_missing_credentials_is_500(moto: Moto) -> None:
    with serving(AwsConfig(region="us-east-1", endpoint_url=moto.endpoint)) as running:
        response = get(running.port, f"{SM}?secretId={moto.secret_name}")
        assert response.error == (500, "MissingCredentialsException")


def test_unreachable_upstream_is_502() -> None:
    closed_port = free_port()
    aws = AwsConfig(
        region="us-east-1",
        endpoint_url=f"http://127.0.0.1:{closed_port}",
        access_key_id="AKIDEXAMPLE",
        secret_access_key="example",
    )
    with serving(aws, timeout_ms=3000) as running:
        response = get(running.port, f"{SM}?secretId=x")
        assert response.error == (502, "ConnectionException")


def test_silent_upstream_is_504() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # connections complete in the backlog and are never answered
        aws = AwsConfig(
            region="us-east-1",
            endpoint_url=f"http://127.0.0.1:{silent.getsockname()[1]}",
            access_key_id="AKIDEXAMPLE",
            secret_access_key="example",
        )
        with serving(aws, timeout_ms=300) as running:
            response = get(running.port, f"{SSM}?name=/x")
            assert response.error == (504, "TimeoutException")


# ---------------------------------------------------------------- connections and limits


def test_fifty_keep_alive_requests_on_one_socket(served: Served) -> None:
    with connect(served.port) as sock, sock.makefile("rb") as stream:
        for i in range(50):
            target = "/ping" if i % 5 == 0 else f"{SSM}?name=/app/plain"
            sock.sendall(request_bytes(target))
            response = read_response(stream)
            assert response.status == 200
            assert "connection" not in response.headers
            if i % 5:
                assert response.json()["Parameter"]["Value"] == PARAM_STRING


def test_pipelined_requests_are_answered_in_order(served: Served) -> None:
    with connect(served.port) as sock, sock.makefile("rb") as stream:
        sock.sendall(request_bytes("/ping") + request_bytes("/nope") + request_bytes("/ping"))
        assert [read_response(stream).status for _ in range(3)] == [200, 404, 200]


def test_handler_sets_tcp_nodelay() -> None:
    # Verified where it takes effect: Handler.setup sets TCP_NODELAY from this.
    assert local_server.Handler.disable_nagle_algorithm is True


def test_http10_closes_unless_asked_to_keep_alive(served: Served) -> None:
    with connect(served.port) as sock, sock.makefile("rb") as stream:
        sock.sendall(b"GET /ping HTTP/1.0\r\n\r\n")
        assert read_response(stream).headers["connection"] == "close"
        assert stream.read() == b""
    with connect(served.port) as sock, sock.makefile("rb") as stream:
        for _ in range(2):
            sock.sendall(b"GET /ping HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            assert read_response(stream).headers["connection"] == "keep-alive"


def test_connection_close_is_honoured(served: Served) -> None:
    with connect(served.port) as sock, sock.makefile("rb") as stream:
        sock.sendall(request_bytes("/ping", headers="Connection: close\r\n"))
        assert read_response(stream).headers["connection"] == "close"
        assert stream.read() == b""


def test_request_line_too_long_is_414(served: Served) -> None:
    target = f"{SM}?secretId=" + "a" * MAX_REQUEST_LINE
    with connect(served.port) as sock, sock.makefile("rb") as stream:
        sock.sendall(request_bytes(target))
        response = read_response(stream)
        assert response.error == (414, "UriTooLongException")
        assert response.headers["connection"] == "close"


@pytest.mark.parametrize(
    "headers",
    [
        "".join(f"X-Field-{i}: v\r\n" for i in range(MAX_HEADERS + 1)),
        "X-Big: " + "v" * 40_000 + "\r\nX-Big-2: " + "v" * 40_000 + "\r\n",
    ],
)
def test_headers_too_large_is_431(served: Served, headers: str) -> None:
    response = exchange(served.port, request_bytes("/ping", headers=headers))
    assert response.error == (431, "RequestHeaderFieldsTooLargeException")
    assert response.headers["connection"] == "close"


@pytest.mark.parametrize(
    "raw", [b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"GET /ping HTTP/1.1\r\nbad\r\n\r\n"]
)
def test_malformed_request_is_400(served: Served, raw: bytes) -> None:
    assert exchange(served.port, raw).error == (400, "BadRequestException")


EARLY_DISCONNECT_CAP = 5


def test_early_disconnects_print_nothing(
    moto: Moto, debug_log: io.StringIO, capfd: pytest.CaptureFixture[str]
) -> None:
    with serving(moto_config(moto), max_connections=EARLY_DISCONNECT_CAP) as served:
        _disconnect_early(served)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    text = debug_log.getvalue()
    assert "Traceback" not in text
    assert " ERROR " not in text and " WARN " not in text


def _disconnect_early(served: Served) -> None:
    for raw in (b"", b"GET /pi", request_bytes(f"{SM}?secretId=app/db-credentials")):
        sock = connect(served.port)
        sock.sendall(raw)
        sock.close()
    reset = connect(served.port)
    reset.sendall(request_bytes("/ping") * 20)
    reset.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    reset.close()  # linger 0: the close is a reset
    wait_until(lambda: all_slots_serve(served.port, EARLY_DISCONNECT_CAP), 10.0, "free slots")


def test_connection_cap_answers_503_beyond_it(moto: Moto) -> None:
    with serving(moto_config(moto), max_connections=4) as running:
        held = [connect(running.port) for _ in range(4)]
        try:
            for sock in held:
                sock.sendall(request_bytes("/ping"))
                assert read_response(sock.makefile("rb")).status == 200
            with connect(running.port) as extra, extra.makefile("rb") as stream:
                response = read_response(stream)
                assert response.error == (503, "TooManyConnectionsException")
                assert response.headers["connection"] == "close"
            held.pop().close()
            wait_until(lambda: all_slots_serve(running.port, 1), 10.0, "the freed slot to serve")
        finally:
            for sock in held:
                sock.close()


def test_idle_connections_are_closed_after_the_idle_timeout(moto: Moto) -> None:
    with serving(moto_config(moto), idle_timeout=1.0, max_connections=2) as running:
        with connect(running.port) as used, connect(running.port) as silent:
            used.sendall(request_bytes("/ping"))
            assert read_response(used.makefile("rb")).status == 200
            started = time.monotonic()
            assert closed_by_server(used)
            assert closed_by_server(silent)
            assert time.monotonic() - started >= 0.5
        wait_until(lambda: all_slots_serve(running.port, 2), 10.0, "free slots")


def test_a_trickled_request_head_is_cut_off_at_the_idle_timeout(moto: Moto) -> None:
    """A byte every 0.2 s never trips a per-read timeout of 1 s, but the head's deadline does."""
    with (
        serving(moto_config(moto), idle_timeout=1.0, max_connections=1) as running,
        connect(running.port) as slow,
    ):
        slow.settimeout(5)  # a server that never cuts off fails the test instead of hanging it
        slow.sendall(b"GET /ping HTTP/1.1\r\n")
        started = time.monotonic()
        cut_off = False
        for byte in b"X-Slow: " + b"a" * 200:
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                cut_off = True
                break
            time.sleep(0.2)
            if time.monotonic() - started > 10:
                break
        assert cut_off or closed_by_server(slow)
        assert time.monotonic() - started < 10
        wait_until(lambda: all_slots_serve(running.port, 1), 10.0, "a free slot")


def test_ipv6_loopback_serves_the_same_port(served: Served) -> None:
    if not has_ipv6_loopback():
        pytest.skip("this host has no IPv6 loopback")
    response = get_v6(served.port, f"{SSM}?name=/app/plain")
    assert response.json()["Parameter"]["Value"] == PARAM_STRING


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def get_v6(port: int, target: str) -> Response:
    return exchange(port, request_bytes(target), host="::1")


def test_shutdown_is_fast_closes_connections_and_releases_the_port(moto: Moto) -> None:
    with serving(moto_config(moto)) as running:
        port = running.port
        idle = connect(port)
        idle.sendall(request_bytes("/ping"))
        assert read_response(idle.makefile("rb")).status == 200
        started = time.monotonic()
        running.servers.shutdown()
        elapsed = time.monotonic() - started
        # A hang guard, not a speed claim: it must not wait for the 60 s idle timeout.
        assert elapsed < 5
        assert closed_by_server(idle)
        idle.close()
        with pytest.raises(OSError):
            connect(port)
    with serving(moto_config(moto)) as again:
        assert again.port != 0
    lookups = Lookups(
        AwsClient(
            moto_config(moto), max_connections=1, secrets_manager_timeout_ms=0, ssm_timeout_ms=0
        ),
        Cache(0),
        secrets_manager_ttl=0,
        ssm_ttl=0,
    )
    rebound = local_server.start(lookups, sockets=listen(port), token=TOKEN)
    try:
        assert rebound.port == port
        assert get(port, "/ping").status == 200
    finally:
        rebound.shutdown()


def test_port_in_use_raises_oserror(served: Served, moto: Moto) -> None:
    lookups = Lookups(
        AwsClient(
            moto_config(moto), max_connections=1, secrets_manager_timeout_ms=0, ssm_timeout_ms=0
        ),
        Cache(0),
        secrets_manager_ttl=0,
        ssm_ttl=0,
    )
    with pytest.raises(OSError):
        local_server.start(lookups, sockets=listen(served.port), token=TOKEN)


# ---------------------------------------------------------------- logs


def test_debug_log_has_route_outcome_latency_and_no_values(
    served: Served, moto: Moto, debug_log: io.StringIO
) -> None:
    get(served.port, f"{SM}?secretId=app/db-credentials")
    get(served.port, f"{SM}?secretId=app/db-credentials")
    get(served.port, f"{SSM}?name=/app/secure&withDecryption=true")
    get(served.port, f"{SSM}?name=/app/secure&withDecryption=true", token="bad-TOKEN-value")
    # Each line is written just after its response, so the last may trail the client a little.
    wait_until(lambda: debug_log.getvalue().count("\n") >= 4, 10.0, "4 log lines")
    text = debug_log.getvalue()
    assert re.search(r"DEBUG secretsmanager miss 200 \d+\.\d\d ms", text)
    assert re.search(r"DEBUG secretsmanager hit 200 \d+\.\d\d ms", text)
    assert re.search(r"DEBUG ssm miss 200 \d+\.\d\d ms", text)
    assert re.search(r"DEBUG ssm error 401 \d+\.\d\d ms", text)
    for secret in (
        "s3cr3t-VALUE",
        PARAM_SECURE,
        TOKEN,
        "bad-TOKEN-value",
        moto.access_key,
        moto.secret_key,
    ):
        assert secret not in text


# ---------------------------------------------------------------- request hygiene


@pytest.mark.parametrize(
    "header", ["Forwarded: for=1.2.3.4", "X-Forwarded-Host: evil.example", "x-forwarded-for: ::1"]
)
def test_every_forwarding_header_is_refused(served: Served, header: str) -> None:
    response = get(served.port, f"{SM}?secretId=app/db-credentials", headers=header + "\r\n")
    assert response.error == (400, "ForwardedRequestException")
    assert SECRET_STRING_V2.encode() not in response.body


@pytest.mark.parametrize(
    "field", [b"X-A: one\rtwo", b"X-A: one\x00two", b"X-Aws-Parameters-Secrets-Token: \x00"]
)
def test_bare_cr_or_nul_in_a_header_is_400_and_closes(served: Served, field: bytes) -> None:
    raw = request_bytes(f"{SM}?secretId=app/db-credentials").replace(
        b"Host: localhost\r\n", b"Host: localhost\r\n" + field + b"\r\n"
    )
    with connect(served.port) as sock, sock.makefile("rb") as stream:
        sock.sendall(raw + request_bytes("/ping"))
        response = read_response(stream)
        assert response.error == (400, "BadRequestException")
        assert response.headers["connection"] == "close"
        assert stream.read() == b""  # the pipelined /ping is never read as a request


def test_refresh_now_1_bypasses_the_cache_and_0_does_not(served: Served, moto: Moto) -> None:
    sm: Any = moto.boto3_client("secretsmanager")
    sm.create_secret(Name="local-server/refresh-digits", SecretString="digits-VALUE-1")
    target = f"{SM}?secretId=local-server/refresh-digits"
    assert get(served.port, target).json()["SecretString"] == "digits-VALUE-1"
    sm.put_secret_value(SecretId="local-server/refresh-digits", SecretString="digits-VALUE-2")
    assert get(served.port, target + "&refreshNow=0").json()["SecretString"] == "digits-VALUE-1"
    assert get(served.port, target + "&refreshNow=1").json()["SecretString"] == "digits-VALUE-2"
    assert get(served.port, target).json()["SecretString"] == "digits-VALUE-2"
