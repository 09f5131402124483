"""Routing one request to its reply: method, route, forwarding guard, token, query, lookup.
`POST /` with X-Amz-Target goes to sdk_protocol (imported at its first request) instead.

Each route name of the service table (services.py), and the path route of queries.py, has
one handler here; a route without one is a 404, never another route's handler. The token
comes in X-Aws-Parameters-Secrets-Token or X-Vault-Token; two different ones are refused.
"""

from __future__ import annotations

import json
import threading

# hmac.compare_digest is this same constant-time function; importing hmac would load
# OpenSSL's _hashlib before `next` (about 0.4 of a bare interpreter's start, 3.6 MiB RSS).
from _operator import _compare_digest as compare_digest

from ..errors import (
    ExtensionError,
    ForwardedRequest,
    MethodNotAllowed,
    NotFound,
    RequestError,
    Unauthorized,
)
from ..logs import log
from ..lookups import Lookups
from ..services import SECRETS_MANAGER, SSM
from . import queries, request_head
from .replies import JSON, TEXT, Reply, error_reply
from .request_head import Request

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from .sdk_protocol import Client as SdkClient
    from .sdk_protocol import SdkApi

_UNEXPECTED = "an unexpected error occurred while executing request"


class Api:
    """Request to reply: method, route, forwarding guard, token, query, then the lookup."""

    def __init__(
        self, lookups: Lookups, token: str | None, client: SdkClient | None = None
    ) -> None:
        """With `client` (the LazyClient), `POST /` also serves the AWS JSON protocol,
        verified against its credentials (sdk_protocol.py)."""
        self._lookups = lookups
        self._client = client
        self._sdk: SdkApi | None = None
        self._sdk_lock = threading.Lock()
        # Bytes on both sides: compare_digest refuses non-ASCII str, and header bytes are raw.
        self._token = token.encode("utf-8") if token else None
        # Route name -> handler, one per route of the service table; a route without one
        # is a 404, never another route's handler.
        self._handlers = {
            SECRETS_MANAGER.name: self._secret,
            SSM.name: self._parameter,
            "secretsmanager-batch": self._secret_batch,
            "ssm-batch": self._parameter_batch,
            "ssm-path": self._path,
            queries.METRICS: self._metrics,
            queries.SECRET_PATH: self._secret_by_path,
        }

    def respond(self, request: Request) -> Reply:
        """The reply to one request; never raises."""
        route = "-"
        try:
            if request.method != "GET":
                client = self._client
                if request.sdk and client is not None:
                    if request_head.is_forwarded(request.headers):
                        raise ForwardedRequest("forwarded requests are refused")
                    return self._sdk_api(client).respond(request)
                raise MethodNotAllowed("only GET is allowed")
            path, _, query = request.target.partition("?")
            route = queries.route(path)
            if route == queries.PING:
                return Reply(200, b"healthy", TEXT, route)
            if request_head.is_forwarded(request.headers):
                raise ForwardedRequest("forwarded requests are refused")
            self._authorize(request.headers)
            return self._lookup(route, path, query)
        except ExtensionError as exc:
            return self.refuse(exc, route)
        except Exception as exc:  # a bug must cost one request, never the server
            log.error("request failed unexpectedly: %s", type(exc).__name__)
            log.traceback(exc)
            return error_reply(ExtensionError(_UNEXPECTED), route)

    def _sdk_api(self, client: SdkClient) -> SdkApi:
        """The AWS JSON protocol's handler, imported at its first request: its signature
        checks load sigv4 (urllib.parse, datetime), which a start must not pay for."""
        sdk = self._sdk  # made once; the lock only guards its making
        if sdk is None:
            with self._sdk_lock:
                if self._sdk is None:
                    from .sdk_protocol import SdkApi  # noqa: PLC0415 -- see the docstring

                    self._sdk = SdkApi(self._lookups, client)
                sdk = self._sdk
        return sdk

    def refuse(self, exc: ExtensionError, route: str = "-") -> Reply:
        """The error reply for `exc`, counting the local request errors among them."""
        if isinstance(exc, RequestError):
            self._lookups.metrics.local_error(exc.error_type)
        return error_reply(exc, route)

    def _authorize(self, headers: dict[str, bytes]) -> None:
        # Checked before any cache access, so a wrong token never reads a warm entry.
        token = self._token
        supplied = headers.get(request_head.TOKEN_HEADER)
        vault = headers.get(request_head.VAULT_TOKEN_HEADER)
        if supplied is not None and vault is not None and not compare_digest(supplied, vault):
            # Two different tokens: one is wrong, and which one the client meant is a guess.
            raise Unauthorized("X-Aws-Parameters-Secrets-Token and X-Vault-Token differ")
        supplied = supplied if supplied is not None else vault
        if token is None or supplied is None or not compare_digest(supplied, token):
            raise Unauthorized(
                "missing or invalid X-Aws-Parameters-Secrets-Token (or X-Vault-Token) header"
            )

    def _lookup(self, route: str, path: str, query: str) -> Reply:
        handler = self._handlers.get(route)
        if handler is None:
            raise NotFound(f"no handler for the route {route}")
        body, outcome = handler(path, query)
        return Reply(200, body, JSON, route, outcome)

    # Each handler takes the request's path and query; only the path route reads the path.

    def _secret(self, path: str, query: str) -> tuple[bytes, str]:
        sq = queries.secret_query(query)
        return self._lookups.secret(
            sq.secret_id, sq.version_id, sq.version_stage, refresh=sq.refresh, role=sq.role_arn
        )

    def _secret_by_path(self, path: str, query: str) -> tuple[bytes, str]:
        sq = queries.secret_path_query(path, query)
        return self._lookups.secret(
            sq.secret_id, sq.version_id, sq.version_stage, refresh=sq.refresh, role=sq.role_arn
        )

    def _metrics(self, path: str, query: str) -> tuple[bytes, str]:
        return json.dumps(self._lookups.counters(), separators=(",", ":")).encode(), "-"

    def _parameter(self, path: str, query: str) -> tuple[bytes, str]:
        pq = queries.parameter_query(query)
        return self._lookups.parameter(
            pq.name, pq.version, pq.label, pq.with_decryption, refresh=pq.refresh, role=pq.role_arn
        )

    def _secret_batch(self, path: str, query: str) -> tuple[bytes, str]:
        sq = queries.secret_batch_query(query)
        return self._lookups.secret_batch(sq.secret_ids, refresh=sq.refresh, role=sq.role_arn)

    def _parameter_batch(self, path: str, query: str) -> tuple[bytes, str]:
        bq = queries.parameter_batch_query(query)
        return self._lookups.parameter_batch(
            bq.names, bq.with_decryption, refresh=bq.refresh, role=bq.role_arn
        )

    def _path(self, path: str, query: str) -> tuple[bytes, str]:
        pq = queries.path_query(query)
        return self._lookups.parameters_by_path(
            pq.path, pq.recursive, pq.with_decryption, refresh=pq.refresh, role=pq.role_arn
        )
