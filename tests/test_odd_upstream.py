"""Valid HTTP but odd answers from upstream, against the real process: a 502
InvalidResponseException, nothing cached, and the client's connection left in step."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LambdaCredentials, Moto
from tests.extension_process import ExtensionProcess
from tests.hardening_support import (
    get_request,
    param_path,
    parse_responses,
    read_to_eof,
    start_standalone,
)
from tests.stub_upstream import StubUpstream, response

GOOD_PARAMETER = b'{"Parameter":{"Name":"p","Type":"String","Value":"good","Version":1}}'
ODD_PARAMETERS = {
    "NaN": b'{"Parameter":{"Name":"p","Type":"String","Value":"v","Version":NaN}}',
    "Infinity": b'{"Parameter":{"Name":"p","Type":"String","Value":"v","Version":-Infinity}}',
    "overflow": b'{"Parameter":{"Name":"p","Type":"String","Value":"v","Version":1e400}}',
    "date": b'{"Parameter":{"Name":"p","Type":"String","Value":"v","LastModifiedDate":1e36}}',
    "nested": b'{"Parameter":' * 20_000 + b"1" + b"}" * 20_000,
}


@pytest.fixture
def stubbed(
    extension_executable: Path, tmp_path: Path, moto: Moto, lambda_credentials: LambdaCredentials
) -> Iterator[tuple[StubUpstream, ExtensionProcess]]:
    with StubUpstream() as upstream, contextlib.ExitStack() as stack:
        ext = start_standalone(
            extension_executable,
            tmp_path / "extension.log",
            moto,
            lambda_credentials,
            endpoint=f"http://127.0.0.1:{upstream.port}",
        )
        stack.enter_context(ext)
        yield upstream, ext


@pytest.mark.parametrize("odd", list(ODD_PARAMETERS), ids=list(ODD_PARAMETERS))
def test_odd_json_is_a_502_and_is_not_cached(
    stubbed: tuple[StubUpstream, ExtensionProcess], odd: str
) -> None:
    upstream, ext = stubbed
    upstream.answer = response(200, ODD_PARAMETERS[odd])
    status, _, body = ext.get(param_path("p"))
    assert (status, json.loads(body)["__type"]) == (502, "InvalidResponseException"), body
    upstream.answer = response(200, GOOD_PARAMETER)
    status, _, body = ext.get(param_path("p"))
    assert (status, json.loads(body)["Parameter"]["Value"]) == (200, "good"), body


def test_an_errors_item_with_an_odd_secret_id_is_a_502(
    stubbed: tuple[StubUpstream, ExtensionProcess],
) -> None:
    upstream, ext = stubbed
    answer = {"SecretValues": [], "Errors": [{"SecretId": ["a"], "ErrorCode": "X"}]}
    upstream.answer = response(200, json.dumps(answer).encode())
    status, _, body = ext.get("/secretsmanager/batch?secretIds=a,b")
    assert (status, json.loads(body)["__type"]) == (502, "InvalidResponseException"), body


@pytest.mark.parametrize("code", [204, 304, 201, 302])
def test_a_status_that_is_no_error_is_never_passed_through(
    stubbed: tuple[StubUpstream, ExtensionProcess], code: int
) -> None:
    upstream, ext = stubbed
    upstream.answer = response(code, b"")
    first = get_request(param_path("p"), ext.token)
    last = get_request(param_path("p"), ext.token, extra="Connection: close\r\n")
    with socket.create_connection(("127.0.0.1", ext.port), timeout=30) as sock:
        sock.sendall(first + last)
        data = read_to_eof(sock)
    # Both replies 502, each with its JSON body: a 204 or 304 with a body breaks the framing
    # of any client that knows those statuses have none.
    parsed = parse_responses(data)
    assert (parsed.statuses, parsed.leftover) == ([502, 502], b""), data[:400]
    assert data.count(b'"__type": "InvalidResponseException"') == 2, data[:400]
