"""Renewing an expired secret without reading its value again, as both newer AWS agents do.

A secret read by stage (AWSCURRENT unless the request names another) changes only when
that stage moves to another version. So when its entry expires, DescribeSecret (no value,
no KMS decrypt) tells whether the version held still carries the stage: if it does, the
cache keeps the held bytes for another TTL; if not, GetSecretValue reads the new one.

DescribeSecret is optional: the AWS extension needs only GetSecretValue, and a role written
for it must keep working. A denial is logged once (WARN) and remembered per principal, so
later expiries go straight to GetSecretValue; any other DescribeSecret failure falls back
to GetSecretValue for that one refresh. Never an error to the caller either way.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence

from .errors import ExtensionError, error_type_of
from .logs import log
from .metrics import Metrics

# The stage a read without versionId or versionStage gets, as GetSecretValue defaults.
DEFAULT_STAGE = "AWSCURRENT"
# Principals (the extension's own credentials, or roles) remembered as denied; beyond it
# the least recently denied is forgotten, and its next expiry asks DescribeSecret again.
MAX_DENIED_PRINCIPALS = 256


class Revalidation:
    """Makes the `renew` callables the cache asks before fetching an expired secret."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()
        self._denied: OrderedDict[Hashable, None] = OrderedDict()

    def renewer(
        self,
        describe: Callable[[], Mapping[str, Sequence[str]]],
        stage: str | None,
        principal: Hashable = None,
    ) -> Callable[[bytes], bool]:
        """renew(held GetSecretValue answer) for a read by `stage`: True if DescribeSecret
        (`describe()`, its VersionIdsToStages) says the held version still carries it."""
        wanted = stage or DEFAULT_STAGE

        def renew(held: bytes) -> bool:
            if self._is_denied(principal):
                self._metrics.revalidation("denied")
                return False
            version = _version_of(held)
            if version is None:  # nothing to compare: read it
                self._metrics.revalidation("refetched")
                return False
            try:
                stages = describe()
            except ExtensionError as exc:
                if error_type_of(exc).startswith("AccessDenied") and not exc.of_credentials:
                    self._deny(principal, exc)
                    self._metrics.revalidation("denied")
                else:
                    log.debug("DescribeSecret failed (%s): reading the value", exc.error_type)
                    self._metrics.revalidation("refetched")
                return False
            if wanted in stages.get(version, ()):
                self._metrics.revalidation("renewed")
                return True
            self._metrics.revalidation("refetched")
            return False

        return renew

    def _is_denied(self, principal: Hashable) -> bool:
        with self._lock:
            return principal in self._denied

    def _deny(self, principal: Hashable, exc: ExtensionError) -> None:
        with self._lock:
            first = principal not in self._denied
            self._denied[principal] = None
            self._denied.move_to_end(principal)
            while len(self._denied) > MAX_DENIED_PRINCIPALS:
                self._denied.popitem(last=False)
        if first:
            # A principal is None (the function's own role) or a role ARN checked before any
            # call (aws/role_arns.py), printable as it is.
            log.warning(
                "DescribeSecret is denied%s (%s): expired secrets are read again with"
                " GetSecretValue; allow secretsmanager:DescribeSecret to renew them without"
                " reading the value",
                f" as {principal}" if isinstance(principal, str) else "",
                exc.error_type,
            )


def _version_of(held: bytes) -> str | None:
    """The VersionId of a cached GetSecretValue answer, if it has one."""
    try:
        data = json.loads(held)
    except ValueError:
        return None
    version = data.get("VersionId") if isinstance(data, dict) else None
    return version if isinstance(version, str) and version else None
