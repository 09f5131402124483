"""The AWS client, imported and made at the first miss (or prefetch), not at start.

Its modules (the transport, the pool and our signer; _ssl, through aws/tls.py, once an https
origin is used) are about 7 ms of imports; a start without prefetch reaches `next` without
them. One object is deferred: get() makes the AwsClient on first use and hands it out, so no
operation's signature is written here.

The warm-up (warm(), on a thread at low priority) imports those modules one at a time and
stops at the first request that wants the client: from then on that request's own thread, at
its own priority, imports what is left, waiting on the warm-up for at most the one module it
is importing. Holding a lock through all of them would make the request wait for a thread
that, on a CPU shared with the function's runtime (or another extension), gets about a tenth
of it.
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

# What making the client imports, leaves first, so that each step imports little beside its
# own module (a request that needs a module being imported waits for that import). Only the
# warm-up's order: get() imports whatever is still missing, whatever this list says.
CLIENT_MODULES = (
    "sigv4",
    "parameters_secrets_extension.aws.endpoints",
    "parameters_secrets_extension.aws.trust_store",
    "parameters_secrets_extension.aws.connection_pool",
    "parameters_secrets_extension.aws.credentials",
    "parameters_secrets_extension.aws.transport",
    "parameters_secrets_extension.aws.operations",
)


class LazyClient:
    """Stands in for operations.AwsClient until get() is first called, which makes it."""

    def __init__(self, settings: Config, *, modules: tuple[str, ...] = CLIENT_MODULES) -> None:
        self._settings = settings
        self._modules = modules  # what warm() imports, in order
        self._client: AwsClient | None = None
        self._lock = threading.Lock()
        self._wanted = False  # a request asked for the client: the warm-up stops

    def get(self) -> AwsClient:
        """The client, made (and its modules imported) on the first call."""
        client = self._client
        if client is None:
            self._wanted = True
            client = self._made()
        return client

    def _made(self) -> AwsClient:
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
        """Import the client's modules, make it and load its trust store, off the request
        path, until a request wants the client (that request does the rest); failures wait
        for a request.

        Started on a thread once the extension is serving: on Lambda the runtime's own init
        runs meanwhile, so the first miss no longer pays for these imports.
        """
        # On failure the first request imports or makes it again, and that request says why.
        for name in self._modules:
            if self._wanted:
                return
            with contextlib.suppress(Exception):
                __import__(name)
        if self._wanted:
            return
        with contextlib.suppress(Exception):
            self._made().warm()

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
