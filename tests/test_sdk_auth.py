"""The signature check of the AWS JSON protocol, in process: a request signed with the
function's credentials passes, and changing any signed part of it, or signing it with
anything else, is refused with AWS's error type.

The requests are made by sigv4.sign, the signer the extension's own calls use (checked
against AWS's test suite and botocore in test_sigv4.py), and read by request_head from the
bytes a client would send, so the check sees what it sees in the server.
"""

from __future__ import annotations

import datetime
import io

import pytest

import sigv4
from parameters_secrets_extension.aws.credentials import Credentials
from parameters_secrets_extension.errors import SignatureRefused
from parameters_secrets_extension.local_api import request_head
from parameters_secrets_extension.local_api.sdk_auth import MAX_SKEW_SECONDS, Verifier
from parameters_secrets_extension.services import SECRETS_MANAGER, SSM

NOW = datetime.datetime(2026, 12, 7, 1, 2, 3, tzinfo=datetime.timezone.utc)
CREDS = Credentials("ASIAFUNCTIONKEY00001", "function/secret/key/" * 2, "FwoGZX" + "t" * 994)
OTHER = Credentials("ASIAFUNCTIONKEY00001", "another/secret/key//" * 2, CREDS.session_token)
BODY = b'{"SecretId": "my-app/db"}'
HEADERS = {
    "X-Amz-Target": "secretsmanager.GetSecretValue",
    "Content-Type": "application/x-amz-json-1.1",
    "User-Agent": "Boto3/1.44.18 md/Botocore#1.44.18",
    "amz-sdk-invocation-id": "f06029b4-d773-4e7f-a3e0-b1966628d3ac",
    "amz-sdk-request": "attempt=1; max=1",
}


def signed(
    creds: Credentials = CREDS,
    *,
    body: bytes = BODY,
    now: datetime.datetime = NOW,
    service: str = "secretsmanager",
    region: str = "us-east-1",
) -> dict[str, str]:
    headers = sigv4.sign(
        "POST",
        "http://localhost:2773/",
        dict(HEADERS),
        body,
        access_key=creds.access_key,
        secret_key=creds.secret_key,
        session_token=creds.session_token,
        region=region,
        service=service,
        now=now,
    )
    return {"Host": "localhost:2773", **headers, "Content-Length": str(len(body))}


def wire(headers: dict[str, str], body: bytes = BODY, target: str = "/") -> bytes:
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"POST {target} HTTP/1.1\r\n{head}\r\n".encode("latin-1") + body


def check(data: bytes, *, clock: float | None = None, service: object = SECRETS_MANAGER) -> None:
    """Read `data` as the server does and verify it against CREDS at `clock` (NOW)."""
    raw = io.BytesIO(data)
    request = request_head.read_request(io.BufferedReader(raw))
    assert request is not None
    now = NOW.timestamp() if clock is None else clock
    verifier = Verifier(lambda deadline: CREDS, clock=lambda: now)
    verifier.verify(request, service, deadline=0.0)  # type: ignore[arg-type]


def refusal(data: bytes, **kwargs: object) -> tuple[str, str]:
    with pytest.raises(SignatureRefused) as caught:
        check(data, **kwargs)  # type: ignore[arg-type]
    return caught.value.error_type, caught.value.message


def test_a_request_signed_with_the_functions_credentials_passes() -> None:
    check(wire(signed()))
    # Many times over, as a function calls again and again (the signing key and its HMAC
    # are kept between calls; each request is checked in full).
    for _ in range(3):
        check(wire(signed()))
    check(wire(signed(now=NOW - datetime.timedelta(seconds=MAX_SKEW_SECONDS - 1))))


@pytest.mark.parametrize(
    "name",
    ["Host", "X-Amz-Target", "Content-Type", "amz-sdk-request", "X-Amz-Date"],
)
def test_a_changed_signed_header_is_refused(name: str) -> None:
    headers = signed()
    if name == "X-Amz-Date":  # a second later: still within the clock's window
        headers[name] = headers[name][:-3] + f"{int(headers[name][-3:-1]) + 1:02d}Z"
    else:
        headers[name] = headers[name] + "x"
    assert refusal(wire(headers))[0] == "InvalidSignatureException"


def test_a_changed_body_path_or_query_is_refused() -> None:
    headers = signed()
    other_body = b'{"SecretId": "my-app/dc"}'
    assert refusal(wire(headers, other_body))[0] == "InvalidSignatureException"
    assert refusal(wire(headers, target="/?a=b"))[0] == "InvalidSignatureException"
    assert refusal(wire(headers, target="/x"))[0] == "InvalidSignatureException"


def test_a_signature_changed_in_one_digit_is_refused() -> None:
    headers = signed()
    auth = headers["Authorization"]
    last = "0" if auth[-1] != "0" else "1"
    headers["Authorization"] = auth[:-1] + last
    assert refusal(wire(headers)) == (
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided.",
    )


def test_another_secret_key_is_refused_after_the_keys_of_the_function_were_used() -> None:
    check(wire(signed()))  # the function's signing key is now kept
    assert refusal(wire(signed(OTHER)))[0] == "InvalidSignatureException"
    check(wire(signed()))


def test_another_access_key_or_token_is_an_unrecognized_client() -> None:
    other_key = Credentials("ASIAOTHERKEY00000001", CREDS.secret_key, CREDS.session_token)
    assert refusal(wire(signed(other_key)))[0] == "UnrecognizedClientException"
    forged = "x" * len(CREDS.session_token or "")
    other_token = Credentials(CREDS.access_key, CREDS.secret_key, forged)
    assert refusal(wire(signed(other_token)))[0] == "UnrecognizedClientException"
    no_token = Credentials(CREDS.access_key, CREDS.secret_key, None)
    assert refusal(wire(signed(no_token)))[0] == "UnrecognizedClientException"


def test_an_old_or_future_date_is_refused() -> None:
    for minutes in (-6, 6):
        headers = signed(now=NOW + datetime.timedelta(minutes=minutes))
        error_type, message = refusal(wire(headers))
        assert error_type == "InvalidSignatureException"
        assert "Signature expired or not yet valid" in message


def test_the_wrong_service_or_a_missing_part_is_refused() -> None:
    assert refusal(wire(signed(service="ssm")))[0] == "InvalidSignatureException"
    assert refusal(wire(signed()), service=SSM)[0] == "InvalidSignatureException"
    headers = signed()
    del headers["Authorization"]
    assert refusal(wire(headers))[0] == "IncompleteSignatureException"
    headers = signed()
    headers["Authorization"] = headers["Authorization"].replace("SignedHeaders", "Signed")
    assert refusal(wire(headers))[0] == "IncompleteSignatureException"


def test_a_signed_header_left_out_of_the_request_is_refused() -> None:
    headers = signed()
    del headers["amz-sdk-request"]
    assert refusal(wire(headers)) == (
        "InvalidSignatureException",
        "the signed header 'amz-sdk-request' is not in the request",
    )


def test_a_content_hash_header_that_is_not_the_bodys_is_refused() -> None:
    headers = signed()
    headers["X-Amz-Content-SHA256"] = sigv4.EMPTY_SHA256
    assert refusal(wire(headers)) == (
        "InvalidSignatureException",
        "X-Amz-Content-SHA256 is not the body's hash",
    )


def test_unsigned_extra_headers_do_not_matter_but_signed_ones_must_all_be_there() -> None:
    headers = signed()
    headers["X-Extra"] = "anything"  # not in SignedHeaders
    check(wire(headers))
    # Whitespace inside a signed value is collapsed by the signer and the checker alike.
    spaced = dict(HEADERS, **{"amz-sdk-request": "attempt=1;   max=1"})
    signed_spaced = sigv4.sign(
        "POST",
        "http://localhost:2773/",
        spaced,
        BODY,
        access_key=CREDS.access_key,
        secret_key=CREDS.secret_key,
        session_token=CREDS.session_token,
        region="us-east-1",
        service="secretsmanager",
        now=NOW,
    )
    request = {"Host": "localhost:2773", **signed_spaced, "Content-Length": str(len(BODY))}
    check(wire(request))
    request["amz-sdk-request"] = "attempt=1; max=1"  # the same after trimming: still signed
    check(wire(request))
    request["amz-sdk-request"] = "attempt=1;max=1"  # not the same
    assert refusal(wire(request))[0] == "InvalidSignatureException"
