"""The AWS client, imported and made at the first miss (or prefetch), not at start.

Its modules (http.client, ssl, hashlib, datetime and our signer) are over a third of the
extension's imports; a start without prefetch reaches `next` without them.
"""

from __future__ import annotations

import contextlib
import threading

from ..services import SECRETS_MANAGER, deadline_after

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ..config import Config
    from ..services import Service
    from .batch import BatchResult, NameEntry
    from .client import AwsClient


class LazyClient:
    """Stands in for aws_client.AwsClient, which it makes on the first call of any method."""

    def __init__(self, settings: Config) -> None:
        self._settings = settings
        self._client: AwsClient | None = None
        self._lock = threading.Lock()

    def _get(self) -> AwsClient:
        with self._lock:
            if self._client is None:
                from .client import AwsClient  # noqa: PLC0415 -- the point of this class

                settings = self._settings
                self._client = AwsClient(
                    settings.aws,
                    max_connections=settings.max_connections,
                    secrets_manager_timeout_ms=settings.secrets_manager_timeout_ms,
                    ssm_timeout_ms=settings.ssm_timeout_ms,
                )
            return self._client

    def deadline(self, service: Service) -> float:
        # From the settings alone: a cache hit must not wait for the client to be made.
        settings = self._settings
        if service is SECRETS_MANAGER:
            return deadline_after(settings.secrets_manager_timeout_ms)
        return deadline_after(settings.ssm_timeout_ms)

    def get_secret_value(
        self,
        secret_id: str,
        *,
        version_id: str | None = None,
        version_stage: str | None = None,
        deadline: float | None = None,
    ) -> Mapping[str, object]:
        return self._get().get_secret_value(
            secret_id, version_id=version_id, version_stage=version_stage, deadline=deadline
        )

    def get_parameter(
        self,
        name: str,
        *,
        version: int | None = None,
        label: str | None = None,
        with_decryption: bool = False,
        deadline: float | None = None,
    ) -> Mapping[str, object]:
        return self._get().get_parameter(
            name,
            version=version,
            label=label,
            with_decryption=with_decryption,
            deadline=deadline,
        )

    def batch_get_secret_value(
        self, secret_ids: Sequence[str], *, deadline: float | None = None
    ) -> BatchResult:
        return self._get().batch_get_secret_value(secret_ids, deadline=deadline)

    def get_parameters(
        self,
        names: Sequence[NameEntry],
        with_decryption: bool,
        *,
        deadline: float | None = None,
    ) -> BatchResult:
        return self._get().get_parameters(names, with_decryption, deadline=deadline)

    def get_parameters_by_path(
        self,
        path: str,
        *,
        recursive: bool,
        with_decryption: bool,
        limit: int,
        deadline: float | None = None,
    ) -> list[dict[str, object]]:
        return self._get().get_parameters_by_path(
            path,
            recursive=recursive,
            with_decryption=with_decryption,
            limit=limit,
            deadline=deadline,
        )

    def warm(self) -> None:
        """Import and make the client now, off the request path; failures wait for a request.

        Started on a thread once the extension is serving: on Lambda the runtime's own init
        runs meanwhile, so the first miss no longer pays for these imports.
        """
        # On failure the first request makes it again, and that request reports why.
        with contextlib.suppress(Exception):
            self._get()

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
