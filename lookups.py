"""The glue between the local API and AWS: cache keys, per-service TTLs, JSON bytes, prefetch."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence

from cache import Cache
from errors import ExtensionError
from logs import log

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from typing import Protocol

    class Upstream(Protocol):
        """What Lookups needs from aws_client.AwsClient: the two calls, in SPEC 2.3's shapes."""

        def get_secret_value(
            self,
            secret_id: str,
            *,
            version_id: str | None = None,
            version_stage: str | None = None,
        ) -> Mapping[str, object]: ...

        def get_parameter(
            self,
            name: str,
            *,
            version: int | None = None,
            label: str | None = None,
            with_decryption: bool = False,
        ) -> Mapping[str, object]: ...


SECRETS_MANAGER = "secretsmanager"
SSM = "ssm"


def _encode(result: Mapping[str, object]) -> bytes:
    # Compact and ASCII-only, like Go's encoder minus its HTML escaping: the bytes are
    # cached as they are sent, so a hit costs no serialization at all.
    return json.dumps(result, separators=(",", ":")).encode("ascii")


class Lookups:
    """Answers secret and parameter requests as response-ready JSON bytes, through the cache."""

    def __init__(
        self,
        client: Upstream,
        cache: Cache[bytes],
        *,
        secrets_manager_ttl: float,
        ssm_ttl: float,
        cache_until_invoked: bool = False,
    ) -> None:
        """With `cache_until_invoked` (SnapStart), nothing is cached until start_caching()."""
        self._client = client
        self._cache = cache
        self._ttl = {SECRETS_MANAGER: secrets_manager_ttl, SSM: ssm_ttl}
        self._caching = not cache_until_invoked

    def start_caching(self) -> None:
        """Begin caching (SPEC 5.5: called on the first invoke under SnapStart)."""
        self._caching = True

    def _get(
        self, service: str, key: Hashable, fetch: Callable[[], bytes], refresh: bool
    ) -> tuple[bytes, str]:
        ttl = self._ttl[service] if self._caching else 0
        return self._cache.get_or_fetch(key, ttl, fetch, refresh=refresh)

    def secret(
        self,
        secret_id: str,
        version_id: str | None = None,
        version_stage: str | None = None,
        *,
        refresh: bool = False,
    ) -> tuple[bytes, str]:
        """GetSecretValue as JSON bytes, and the cache outcome (hit, miss, stale, ...)."""
        key = (SECRETS_MANAGER, secret_id, version_id, version_stage)

        def fetch() -> bytes:
            return _encode(
                self._client.get_secret_value(
                    secret_id, version_id=version_id, version_stage=version_stage
                )
            )

        return self._get(SECRETS_MANAGER, key, fetch, refresh)

    def parameter(
        self,
        name: str,
        version: int | None = None,
        label: str | None = None,
        with_decryption: bool = False,
        *,
        refresh: bool = False,
    ) -> tuple[bytes, str]:
        """GetParameter as JSON bytes, and the cache outcome (hit, miss, stale, ...)."""
        key = (SSM, name, version, label, with_decryption)

        def fetch() -> bytes:
            return _encode(
                self._client.get_parameter(
                    name, version=version, label=label, with_decryption=with_decryption
                )
            )

        return self._get(SSM, key, fetch, refresh)

    def prefetch(self, entries: Sequence[tuple[str, str]]) -> None:
        """Warm the cache for ("secretsmanager", id) / ("ssm", name) entries, all in parallel.

        Each entry warms the key a request without optional query parameters uses (for
        SSM that is withDecryption=false). A failure is logged and skipped. Nothing is
        fetched while caching is deferred or for a service whose TTL is 0.
        """
        if not self._caching:
            log.info("prefetch skipped: caching starts at the first invoke (SnapStart)")
            return
        wanted = [(service, ident) for service, ident in entries if self._ttl.get(service)]
        threads = [
            threading.Thread(target=self._prefetch_one, args=entry, name="prefetch", daemon=True)
            for entry in wanted
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _prefetch_one(self, service: str, ident: str) -> None:
        try:
            if service == SECRETS_MANAGER:
                self.secret(ident)
            else:
                self.parameter(ident)
        except Exception as exc:  # one bad entry must not stop the others or the start
            kind = exc.error_type if isinstance(exc, ExtensionError) else type(exc).__name__
            log.warning("prefetch of %s %s failed: %s", service, ident, kind)
        else:
            log.debug("prefetched %s %s", service, ident)
