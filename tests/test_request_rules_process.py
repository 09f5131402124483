"""Request rules against the real process from the built layer: forwarded requests, bare CR
and NUL in a head, refreshNow's spellings, and an upstream answer over the size limit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SECRET_STRING_V2, LambdaCredentials, Moto
from tests.extension_process import ExtensionProcess
from tests.hardening_support import (
    exchange,
    get_request,
    parse_responses,
    secret_path,
    serving_standalone,
    start_standalone,
)
from tests.stub_upstream import StubUpstream, response


@pytest.fixture(scope="module")
def ext(
    extension_executable: Path,
    tmp_path_factory: pytest.TempPathFactory,
    moto: Moto,
    lambda_credentials: LambdaCredentials,
) -> Iterator[ExtensionProcess]:
    log_path = tmp_path_factory.mktemp("request-rules") / "extension.log"
    with serving_standalone(extension_executable, log_path, moto, lambda_credentials) as process:
        yield process


@pytest.mark.parametrize(
    "header",
    ["X-Forwarded-For: 10.0.0.1", "Forwarded: for=10.0.0.1", "x-forwarded-host: evil.example"],
)
def test_forwarded_requests_are_refused(ext: ExtensionProcess, header: str) -> None:
    name, _, value = header.partition(": ")
    status, body = ext.get_json(secret_path("anything"), headers={name: value})
    assert (status, body["__type"]) == (400, "ForwardedRequestException")


@pytest.mark.parametrize("bad", [b"X-Odd: a\rb", b"X-Odd: a\x00b"])
def test_a_bare_cr_or_nul_in_a_header_is_a_400_that_closes(
    ext: ExtensionProcess, bad: bytes
) -> None:
    assert ext.token is not None
    request = get_request(secret_path("anything"), ext.token).replace(
        b"\r\n\r\n", b"\r\n" + bad + b"\r\n\r\n"
    )
    follow_up = get_request("/ping", None)
    # The follow-up on the same connection is never answered: the stream is not trusted.
    parsed = parse_responses(exchange(ext.port, request + follow_up))
    assert parsed.statuses == [400]


@pytest.mark.parametrize("flag", ["1", "0", "TRUE", "False"])
def test_refresh_now_takes_one_zero_and_any_case(
    ext: ExtensionProcess, moto: Moto, flag: str
) -> None:
    status, body = ext.get_json(secret_path(moto.secret_name) + f"&refreshNow={flag}")
    assert status == 200
    assert body["SecretString"] == SECRET_STRING_V2


def test_refresh_now_refuses_other_words(ext: ExtensionProcess, moto: Moto) -> None:
    status, body = ext.get_json(secret_path(moto.secret_name) + "&refreshNow=yes")
    assert (status, body["__type"]) == (400, "InvalidParameterException")


def test_an_upstream_answer_over_one_mib_is_a_502(
    extension_executable: Path, tmp_path: Path, moto: Moto, lambda_credentials: LambdaCredentials
) -> None:
    huge = json.dumps({"Name": "big", "SecretString": "x" * (1 << 20)}).encode()
    with (
        StubUpstream(answer=response(200, huge)) as upstream,
        start_standalone(
            extension_executable,
            tmp_path / "extension.log",
            moto,
            lambda_credentials,
            endpoint=f"http://127.0.0.1:{upstream.port}",
        ) as process,
    ):
        status, body = process.get_json(secret_path("big"))
        assert (status, body["__type"]) == (502, "ResponseTooLargeException")
        assert upstream.accepted == 1  # refused once, never retried
        assert "x" * 100 not in process.output()
