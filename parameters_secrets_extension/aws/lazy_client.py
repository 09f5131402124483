"""The AWS client, imported and made at the first miss (or prefetch), not at start.

Its modules (the transport, the pool, hashlib, datetime and our signer; ssl once an https
origin is used) are about 7 ms of imports; a start without prefetch reaches `next` without
them. One object is deferred: get() makes the AwsClient on first use and hands it out, so no
operation's signature is written here.
"""

from __future__ import annotations

import contextlib
import threading

from ..logs import log
from ..services import deadline_after

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from ..config import Config
    from ..services import Service
    from .operations import AwsClient


class LazyClient:
    """Stands in for operations.AwsClient until get() is first called, which makes it."""

    def __init__(self, settings: Config) -> None:
        self._settings = settings
        self._client: AwsClient | None = None
        self._lock = threading.Lock()

    def get(self) -> AwsClient:
        """The client, made (and its modules imported) on the first call."""
        with self._lock:
            if self._client is None:
                from .endpoints import without_own_address  # noqa: PLC0415 (as below)
                from .operations import AwsClient  # noqa: PLC0415 -- the point of this class

                settings = self._settings
                aws, ignored = without_own_address(settings.aws, settings.http_port)
                for variable in ignored:
                    log.info(
                        "%s names this extension's own address: ignored for its calls to AWS"
                        " (it is for the function's SDK)",
                        variable,
                    )
                self._client = AwsClient(
                    aws,
                    max_connections=settings.max_connections,
                    secrets_manager_timeout_ms=settings.secrets_manager_timeout_ms,
                    ssm_timeout_ms=settings.ssm_timeout_ms,
                    function_name=settings.function_name,
                )
            return self._client

    def deadline(self, service: Service) -> float:
        # From the settings alone: a cache hit must not wait for the client to be made.
        timeout_ms: int = getattr(self._settings, service.timeout_setting)
        return deadline_after(timeout_ms)

    def warm(self) -> None:
        """Import and make the client now, and load its trust store, off the request path;
        failures wait for a request.

        Started on a thread once the extension is serving: on Lambda the runtime's own init
        runs meanwhile, so the first miss no longer pays for these imports.
        """
        # On failure the first request makes it again, and that request reports why.
        with contextlib.suppress(Exception):
            self.get().warm()

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
