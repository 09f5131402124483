"""Checking an AWS JSON protocol request's SigV4 signature against the extension's own
credentials, which are the function's: the caller signed with them.

The canonical request is rebuilt from what arrived (method, path, query, the values of the
headers it says it signed, the body's hash) with sigv4's step functions, and the signature
computed from it must equal the one sent. Beside the signature: the access key and session
token must be the ones in use (under SnapStart, the container credentials), and X-Amz-Date
within MAX_SKEW_SECONDS of now. A refusal names AWS's own error type and never carries, or
logs, the signature. Imported at the first such request, not at start: sigv4's imports
(urllib.parse, datetime, the built-in SHA-256) must not be loaded before the extension
registers.
"""

from __future__ import annotations

import re
import time

# Constant time, as routes.py compares the token of the GET routes.
from _operator import _compare_digest as compare_digest

import sigv4

from ..errors import IncompleteSignature, SignatureRefused, UnrecognizedClient
from .request_head import Request

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from collections.abc import Callable

    from ..aws.credentials import Credentials
    from ..services import Service

# AWS refuses a request whose X-Amz-Date is further than this from its own clock.
MAX_SKEW_SECONDS = 300
_PREFIX = sigv4.ALGORITHM + " "
_SCOPE_TERMINATOR = "aws4_request"
_PARTS = ("Credential", "SignedHeaders", "Signature")
# The header as SDKs write it: the three parts in this order, ", " between them, no value
# empty or holding a separator. Anything else is parsed part by part (Authorization), to the
# same fields where both apply.
_SCOPE_PART = r"([^/,= ]+)"
_USUAL_AUTHORIZATION = re.compile(
    rf"{sigv4.ALGORITHM} Credential={_SCOPE_PART}/{_SCOPE_PART}/{_SCOPE_PART}/{_SCOPE_PART}/"
    rf"{_SCOPE_TERMINATOR}, SignedHeaders=([^,= ]+), Signature=([^,= ]+)"
)
_INVALID_TOKEN = "The security token included in the request is invalid."  # noqa: S105
_MISMATCH = "The request signature we calculated does not match the signature you provided."


class Authorization:
    """The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header."""

    __slots__ = ("access_key", "date", "region", "service", "signature", "signed")

    def __init__(self, header: str) -> None:
        usual = _USUAL_AUTHORIZATION.fullmatch(header)
        if usual is not None:  # what every SDK sends: one match, no loop over the parts
            self.access_key, self.date, self.region, self.service = usual.group(1, 2, 3, 4)
            self.signed, self.signature = usual.group(5, 6)
            return
        if not header.startswith(_PREFIX):
            raise IncompleteSignature(f"the Authorization header must use {sigv4.ALGORITHM}")
        parts: dict[str, str] = {}
        for item in header[len(_PREFIX) :].split(","):
            name, equals, value = item.strip().partition("=")
            if equals:
                parts[name] = value
        credential = parts.get("Credential")
        signed = parts.get("SignedHeaders")
        signature = parts.get("Signature")
        if not (credential and signed and signature):
            missing = [name for name in _PARTS if not parts.get(name)]
            raise IncompleteSignature(f"the Authorization header lacks {' and '.join(missing)}")
        scope = credential.split("/")
        if len(scope) != 5 or scope[4] != _SCOPE_TERMINATOR or not all(scope):
            raise IncompleteSignature(
                "Credential must be <access key>/<date>/<region>/<service>/aws4_request"
            )
        self.access_key, self.date, self.region, self.service = scope[:4]
        self.signed = signed
        self.signature = signature


def epoch_seconds(digits: str) -> int | None:
    """`YYYYMMDDhhmmss` (UTC) as epoch seconds, None when it is not 14 ASCII digits with a
    month of 1-12: calendar.timegm's answer (days from the civil date, H. Hinnant's
    algorithm) without importing calendar, which the layer built with its own Python does
    not carry."""
    if len(digits) != 14 or not digits.isascii() or not digits.isdigit():
        return None
    year, month, day = int(digits[0:4]), int(digits[4:6]), int(digits[6:8])
    if not 1 <= month <= 12:
        return None
    hour, minute, second = int(digits[8:10]), int(digits[10:12]), int(digits[12:14])
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    days = era * 146097 + day_of_era - 719468
    return days * 86400 + hour * 3600 + minute * 60 + second


def _epoch(amz_date: str, last: list[tuple[str, int]] = [("", 0)]) -> int:  # noqa: B006
    """X-Amz-Date (`20240101T000000Z`) as epoch seconds; `last` remembers the latest one,
    which the requests of one second share."""
    remembered = last[0]
    if remembered[0] == amz_date:
        return remembered[1]
    seconds = None
    if len(amz_date) == 16 and amz_date[8] == "T" and amz_date[15] == "Z":
        seconds = epoch_seconds(amz_date[:8] + amz_date[9:15])
    if seconds is None:
        raise IncompleteSignature("X-Amz-Date must be a date like 20240101T000000Z")
    last[0] = (amz_date, seconds)  # one tuple, replaced whole: no lock needed
    return seconds


class Verifier:
    """Checks requests against the credentials `credentials(deadline)` returns now."""

    def __init__(
        self,
        credentials: Callable[[float | None], Credentials],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._credentials = credentials
        self._clock = clock
        # The credentials last used, and their key and token as bytes, for the comparisons.
        self._encoded: tuple[Credentials | None, bytes, bytes | None] = (None, b"", None)

    def verify(self, request: Request, service: Service, deadline: float) -> None:
        """Return when `request` is signed for `service` with the credentials in use;
        otherwise raise a SignatureRefused (403) naming AWS's error type."""
        headers = request.headers
        raw = headers.get("authorization")
        if raw is None:
            raise IncompleteSignature("the request is not signed: no Authorization header")
        auth = Authorization(raw.decode("latin-1"))
        raw_date = headers.get("x-amz-date")
        if raw_date is None:
            raise IncompleteSignature("the signed request has no X-Amz-Date header")
        amz_date = raw_date.decode("latin-1")
        skew = self._clock() - _epoch(amz_date)
        if abs(skew) > MAX_SKEW_SECONDS:
            raise SignatureRefused(
                f"Signature expired or not yet valid: X-Amz-Date {amz_date} is more than"
                f" {MAX_SKEW_SECONDS // 60} minutes from the extension's clock"
            )
        if auth.date != amz_date[:8]:
            raise SignatureRefused("the credential scope's date is not X-Amz-Date's")
        if auth.service != service.signing_name:
            raise SignatureRefused(
                f"Credential should be scoped to correct service: '{service.signing_name}'"
            )
        creds = self._credentials(deadline)
        encoded = self._encoded
        if encoded[0] is not creds:
            token = creds.session_token
            held_token = token.encode() if token else None
            encoded = self._encoded = (creds, creds.access_key.encode(), held_token)
        _check_identity(auth, headers.get("x-amz-security-token"), encoded[1], encoded[2])
        selected = _signed_headers(auth.signed, headers)
        body_hash = sigv4.body_hash(request.body)  # of what arrived, never a claim
        claimed = headers.get("x-amz-content-sha256")
        if claimed is not None and claimed.decode("latin-1") != body_hash:
            raise SignatureRefused("X-Amz-Content-SHA256 is not the body's hash")
        path, _, query = request.target.partition("?")
        creq = sigv4.canonical_request(
            request.method, path, query, selected=selected, signed=auth.signed, body_hash=body_hash
        )
        scope = sigv4.credential_scope(auth.date, auth.region, auth.service)
        key = sigv4.signing_key(creds.secret_key, auth.date, auth.region, auth.service)
        expected = sigv4.signature(key, sigv4.string_to_sign(amz_date, scope, creq))
        if not compare_digest(expected.encode(), auth.signature.encode("latin-1")):
            raise SignatureRefused(_MISMATCH)


def _check_identity(
    auth: Authorization, token: bytes | None, access_key: bytes, held_token: bytes | None
) -> None:
    """The access key and session token must be the ones the extension holds.

    Compared in constant time, the held value second: compare_digest's time then depends
    on its length alone, whatever was sent. The token (about 1 KB) is compared as it is,
    not by its SHA-256: warm, hashing it first halves the comparison, but a hit runs woken
    with cold caches, where one more OpenSSL digest (its context made, initialised and
    freed) costs several times the byte loop.
    """
    same_key = compare_digest(auth.access_key.encode("latin-1"), access_key)
    if held_token:
        same_token = token is not None and compare_digest(token, held_token)
    else:
        same_token = token is None
    if not (same_key and same_token):
        raise UnrecognizedClient(_INVALID_TOKEN)


def _signed_headers(signed: str, headers: dict[str, bytes]) -> dict[str, list[str]]:
    """The headers SignedHeaders names, with the values that arrived; host and x-amz-date
    must be among them. (Names out of order or in upper case sign a canonical request no
    signer makes, so the signature does not match.)"""
    names = signed.split(";")
    if "host" not in names or "x-amz-date" not in names:
        raise IncompleteSignature("SignedHeaders must include host and x-amz-date")
    selected: dict[str, list[str]] = {}
    for name in names:
        value = headers.get(name)
        if value is None:
            raise SignatureRefused(f"the signed header {name!r} is not in the request")
        selected[name] = [value.decode("latin-1")]
    return selected
