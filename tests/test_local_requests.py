"""Request reading and query validation, on in-memory byte streams."""

from __future__ import annotations

import io

import pytest

from parameters_secrets_extension import services
from parameters_secrets_extension.errors import RequestError
from parameters_secrets_extension.local_api import queries as lq
from parameters_secrets_extension.local_api import request_head as lr


def read(raw: bytes) -> lr.Request | None:
    return lr.read_request(io.BytesIO(raw))


def error_of(raw: bytes) -> tuple[int, str]:
    with pytest.raises(RequestError) as caught:
        read(raw)
    return caught.value.status, caught.value.error_type


def test_reads_method_target_and_lowercased_headers() -> None:
    request = read(
        b"GET /secretsmanager/get?secretId=a HTTP/1.1\r\n"
        b"Host: localhost\r\nX-Aws-Parameters-Secrets-Token:  tok \r\n\r\n"
    )
    assert request is not None
    assert request.method == "GET"
    assert request.target == "/secretsmanager/get?secretId=a"
    assert request.headers == {"host": b"localhost", "x-aws-parameters-secrets-token": b"tok"}
    assert request.keep_alive
    assert not request.http10


def test_repeated_headers_are_joined_so_a_doubled_token_never_matches() -> None:
    request = read(b"GET / HTTP/1.1\r\nX-A: one\r\nx-a: two\r\n\r\n")
    assert request is not None
    assert request.headers["x-a"] == b"one, two"


def test_header_values_keep_other_control_and_high_bytes() -> None:
    request = read(b"GET / HTTP/1.1\r\nX-A: a\x01\x7f\tb \r\nX-B: c\n\n")
    assert request is not None
    assert (request.headers["x-a"], request.headers["x-b"]) == (b"a\x01\x7f\tb", b"c")


@pytest.mark.parametrize(
    ("names", "forwarded"),
    [
        ((), False),
        (("host", "x-forwarded-proto", "x-real-ip"), False),
        (("x-forwarded-for",), True),
        (("forwarded",), True),
        (("x-forwarded-host",), True),
    ],
)
def test_forwarding_headers(names: tuple[str, ...], forwarded: bool) -> None:
    assert lr.is_forwarded(dict.fromkeys(names, b"v")) is forwarded


def test_forwarding_header_names_match_in_any_case() -> None:
    for name in (b"Forwarded", b"X-FORWARDED-HOST", b"x-Forwarded-For"):
        request = read(b"GET / HTTP/1.1\r\n" + name + b": for=1.2.3.4\r\n\r\n")
        assert request is not None
        assert lr.is_forwarded(request.headers)


def test_header_values_keep_their_raw_bytes() -> None:
    request = read(b"GET / HTTP/1.1\r\nX-Aws-Parameters-Secrets-Token: \xe9t\xff\r\n\r\n")
    assert request is not None
    assert request.headers[lr.TOKEN_HEADER] == b"\xe9t\xff"


@pytest.mark.parametrize(
    ("raw", "keep_alive"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", True),
        (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", False),
        (b"GET / HTTP/1.1\r\nConnection: TE, Close\r\n\r\n", False),
        (b"GET / HTTP/1.0\r\n\r\n", False),
        (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", True),
        (b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", False),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", False),
        (b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", True),
    ],
)
def test_keep_alive_follows_version_connection_and_body(raw: bytes, keep_alive: bool) -> None:
    request = read(raw)
    assert request is not None
    assert request.keep_alive is keep_alive


def test_one_empty_line_before_the_request_is_tolerated() -> None:
    request = read(b"\r\nGET /ping HTTP/1.1\r\n\r\n")
    assert request is not None
    assert request.target == "/ping"


@pytest.mark.parametrize("raw", [b"", b"GET / HT", b"GET / HTTP/1.1\r\nHost: x\r\n"])
def test_a_connection_closed_mid_request_reads_as_none(raw: bytes) -> None:
    assert read(raw) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"GET\r\n\r\n",
        b"GET /\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET  / HTTP/1.1\r\n\r\n",
        b"G(T / HTTP/1.1\r\n\r\n",
        b"GET /a\x00b HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\n\xff: x\r\n\r\n",
        b"GET / HTTP/1.1\r\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-A: one\rtwo\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-A: one\r\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-A: one\rX-Forwarded-For: 1.2.3.4\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-A: one\x00two\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-A: one\x00\r\n\r\n",
        b"GET / HTTP/1.1\nX-A: \x00\n\n",
        b"GET / HTTP/1.1\r\nX-\x00A: one\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\x00\r\n\r\n",
    ],
)
def test_malformed_requests_are_400(raw: bytes) -> None:
    assert error_of(raw) == (400, "BadRequestException")


def test_request_line_over_the_limit_is_414() -> None:
    target = b"/" + b"a" * lr.MAX_REQUEST_LINE
    assert error_of(b"GET " + target + b" HTTP/1.1\r\n\r\n") == (414, "UriTooLongException")


def test_request_line_at_the_limit_is_read() -> None:
    target = b"/" + b"a" * (lr.MAX_REQUEST_LINE - len(b"GET / HTTP/1.1\r\n"))
    request = read(b"GET " + target + b" HTTP/1.1\r\n\r\n")
    assert request is not None
    assert len(request.target) == len(target)


def test_too_many_header_fields_is_431() -> None:
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(lr.MAX_HEADERS + 1))
    assert error_of(b"GET / HTTP/1.1\r\n" + fields + b"\r\n")[0] == 431
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(lr.MAX_HEADERS))
    assert read(b"GET / HTTP/1.1\r\n" + fields + b"\r\n") is not None


def test_header_section_over_the_byte_limit_is_431() -> None:
    big = b"X-Big: " + b"v" * (lr.MAX_HEADER_BYTES // 2) + b"\r\n"
    status, error_type = error_of(b"GET / HTTP/1.1\r\n" + big + big + b"\r\n")
    assert (status, error_type) == (431, "RequestHeaderFieldsTooLargeException")
    one_line = b"X-Big: " + b"v" * lr.MAX_HEADER_BYTES + b"\r\n"
    assert error_of(b"GET / HTTP/1.1\r\n" + one_line + b"\r\n")[0] == 431


def test_raw_utf8_in_the_target_is_escaped_so_the_query_decodes() -> None:
    request = read("GET /secretsmanager/get?secretId=caf\u00e9 HTTP/1.1\r\n\r\n".encode())
    assert request is not None
    assert request.target == "/secretsmanager/get?secretId=caf%C3%A9"
    assert lq.secret_query(request.target.partition("?")[2]).secret_id == "caf\u00e9"


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/secretsmanager/get", "secretsmanager"),
        ("/systemsmanager/parameters/get", "ssm"),
        ("/systemsmanager/parameters/get/", "ssm"),
        ("/secretsmanager/batch", "secretsmanager-batch"),
        ("/systemsmanager/parameters/batch", "ssm-batch"),
        ("/systemsmanager/parameters/get-by-path", "ssm-path"),
        ("/ping", "ping"),
    ],
)
def test_routes(path: str, name: str) -> None:
    assert lq.route(path) == name


@pytest.mark.parametrize(
    "path", ["/", "", "/secretsmanager/get/", "/secretsmanager", "/ping/", "/Ping", "/x"]
)
def test_unknown_paths_are_404(path: str) -> None:
    with pytest.raises(RequestError) as caught:
        lq.route(path)
    assert (caught.value.status, caught.value.error_type) == (404, "NotFoundException")
    assert caught.value.message == (
        "unknown path: use /secretsmanager/get, /secretsmanager/batch,"
        " /systemsmanager/parameters/get, /systemsmanager/parameters/batch,"
        " /systemsmanager/parameters/get-by-path, /metrics, /secretsmanager/<secret id> or /ping"
    )


def test_a_name_outside_the_service_table_is_an_error_not_another_service() -> None:
    assert [services.named(name).name for name in ("secretsmanager", "ssm")] == [
        "secretsmanager",
        "ssm",
    ]
    with pytest.raises(ValueError, match="no service"):
        services.named("ping")


def test_secret_query_decodes_percent_and_plus_and_takes_first_values() -> None:
    query = lq.secret_query(
        "secretId=app%2Fa+b&versionId=v1&versionStage=AWSPREVIOUS&secretId=other&refreshNow=TRUE"
    )
    assert query == lq.SecretQuery("app/a b", "v1", "AWSPREVIOUS", True)


def test_secret_query_empty_optional_values_count_as_absent() -> None:
    assert lq.secret_query("secretId=s&versionId=&versionStage=&refreshNow=") == lq.SecretQuery(
        "s", None, None, False
    )


@pytest.mark.parametrize("query", ["", "secretId=", "secretid=s", "versionId=v", "secretId"])
def test_secret_query_without_secret_id_is_missing_parameter(query: str) -> None:
    with pytest.raises(RequestError) as caught:
        lq.secret_query(query)
    assert (caught.value.status, caught.value.error_type) == (400, "MissingParameterException")


@pytest.mark.parametrize(
    ("query", "version", "label"),
    [
        ("name=n", None, None),
        ("name=n&version=3", 3, None),
        ("name=n&label=blue", None, "blue"),
        ("name=n&version=3&label=blue", 3, None),
        ("name=n&label=blue&version=3", None, "blue"),
        ("name=n&label=blue&version=abc", None, "blue"),
        ("name=n&version=&label=blue", None, "blue"),
        ("name=n&version=9223372036854775807", 2**63 - 1, None),
    ],
)
def test_parameter_query_first_of_version_or_label_wins(
    query: str, version: int | None, label: str | None
) -> None:
    parsed = lq.parameter_query(query)
    assert (parsed.name, parsed.version, parsed.label) == ("n", version, label)


@pytest.mark.parametrize(
    ("value", "expected"), [("true", True), ("TRUE", True), ("False", False), ("", False)]
)
def test_with_decryption_any_case_default_false(value: str, expected: bool) -> None:
    assert lq.parameter_query(f"name=n&withDecryption={value}").with_decryption is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("tRuE", True),
        ("1", True),
        ("false", False),
        ("False", False),
        ("0", False),
        ("", False),
    ],
)
def test_refresh_now_takes_true_false_1_0_any_case(value: str, expected: bool) -> None:
    assert lq.secret_query(f"secretId=s&refreshNow={value}").refresh is expected
    assert lq.parameter_query(f"name=n&refreshNow={value}").refresh is expected


@pytest.mark.parametrize("value", ["yes", "2", "01", "-1", "1.0", "truee", "%201", "t"])
def test_refresh_now_other_values_are_invalid(value: str) -> None:
    for parse, query in ((lq.secret_query, "secretId=s"), (lq.parameter_query, "name=n")):
        with pytest.raises(RequestError) as caught:
            parse(f"{query}&refreshNow={value}")
        assert (caught.value.status, caught.value.error_type) == (400, "InvalidParameterException")
        assert "refreshNow" in caught.value.message


@pytest.mark.parametrize("value", ["1", "0"])
def test_with_decryption_stays_true_or_false_only(value: str) -> None:
    with pytest.raises(RequestError):
        lq.parameter_query(f"name=n&withDecryption={value}")


@pytest.mark.parametrize(
    "query",
    [
        "name=n&version=abc",
        "name=n&version=0",
        "name=n&version=-1",
        "name=n&version=+1",
        "name=n&version=1.5",
        "name=n&version=%201",
        "name=n&version=9223372036854775808",
        "name=n&version=" + "9" * 5000,
        "name=n&withDecryption=yes",
        "name=n&refreshNow=maybe",
        "name=%ff",
    ],
)
def test_parameter_query_invalid_values_are_invalid_parameter(query: str) -> None:
    with pytest.raises(RequestError) as caught:
        lq.parameter_query(query)
    assert (caught.value.status, caught.value.error_type) == (400, "InvalidParameterException")


def test_parameter_query_without_name_is_missing_parameter() -> None:
    with pytest.raises(RequestError) as caught:
        lq.parameter_query("name=&version=1")
    assert caught.value.error_type == "MissingParameterException"
