"""Counters of what the extension did, as GET /metrics answers them and as one CloudWatch
Embedded Metric Format (EMF) line at shutdown.

The cache counts its own outcomes under the lock it already holds (see cache.CacheInfo);
this module counts the rest: upstream calls and their errors by type, and the local API's
4xx answers by type. Both tables are bounded: past MAX_TYPES types, a new type is counted
under OTHER, and a type that is not a plain AWS-style name always is. Nothing here ever
holds a value, a name, a token or a message: only counts and error type names.
"""

from __future__ import annotations

import json
import re
import threading

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from cache import CacheInfo

MAX_TYPES = 64
OTHER = "other"
NAMESPACE = "ParametersSecretsExtension"
# What an AWS error type or one of our own looks like; anything else is counted as OTHER.
# Compiled (and cached by re) at the first error counted, not at import (about 0.1 ms).
_TYPE_NAME = r"[A-Za-z][A-Za-z0-9_.]{0,99}"
# Metric name -> CacheInfo field, in the order both outputs list them.
_CACHE_COUNTERS = (
    ("Hits", "hits"),
    ("Misses", "misses"),
    ("StaleServes", "stale"),
    ("RefreshesAhead", "refreshes_ahead"),
    ("CoalescedWaits", "coalesced"),
    ("Evictions", "evictions"),
    ("NegativeHits", "negative_hits"),
)
# An expired secret's DescribeSecret outcome -> its metric (revalidation.py): renewed without
# a read, read again (changed, or DescribeSecret failed), or read again since it is denied.
REVALIDATION_OUTCOMES = {
    "renewed": "RevalidationsRenewed",
    "refetched": "RevalidationsRefetched",
    "denied": "RevalidationsDeniedFallback",
}
COUNTER_NAMES = (
    *(name for name, _ in _CACHE_COUNTERS),
    *REVALIDATION_OUTCOMES.values(),
    "UpstreamCalls",
    "UpstreamErrors",
    "LocalErrors",
)
# The by-type tables of the upstream and local errors, beside the counters.
TABLE_NAMES = ("UpstreamErrorsByType", "LocalErrorsByType")


class Metrics:
    """Upstream calls, upstream errors by type and local 4xx by type, under one lock.

    Never touched by a cache hit: a hit costs only the cache's own counter.
    """

    __slots__ = ("_local", "_lock", "_revalidations", "_upstream", "_upstream_calls")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._upstream_calls = 0
        self._revalidations = dict.fromkeys(REVALIDATION_OUTCOMES.values(), 0)
        self._upstream: dict[str, int] = {}
        self._local: dict[str, int] = {}

    def upstream_call(self, error_type: str | None) -> None:
        """One call to AWS (retries included) ended: in success, or in error `error_type`."""
        with self._lock:
            self._upstream_calls += 1
            if error_type is not None:
                _add(self._upstream, error_type)

    def revalidation(self, outcome: str) -> None:
        """An expired secret was revalidated: `outcome` is a key of REVALIDATION_OUTCOMES."""
        name = REVALIDATION_OUTCOMES[outcome]  # an unknown outcome is a bug: KeyError
        with self._lock:
            self._revalidations[name] += 1

    def local_error(self, error_type: str) -> None:
        """The local API answered a 4xx of `error_type`."""
        with self._lock:
            _add(self._local, error_type)

    def counters(self, cache: CacheInfo) -> dict[str, object]:
        """Every counter, with `cache`'s, as /metrics answers them."""
        with self._lock:
            upstream, local = dict(self._upstream), dict(self._local)
            calls = self._upstream_calls
            revalidations = dict(self._revalidations)
        result: dict[str, object] = {name: getattr(cache, field) for name, field in _CACHE_COUNTERS}
        result.update(revalidations)
        result["UpstreamCalls"] = calls
        result["UpstreamErrors"] = sum(upstream.values())
        result["LocalErrors"] = sum(local.values())
        result.update(zip(TABLE_NAMES, (upstream, local), strict=True))
        result["CacheSize"] = cache.size
        result["CacheMaxSize"] = cache.max_size
        result["CacheBytes"] = cache.bytes
        result["CacheMaxBytes"] = cache.max_bytes
        return result


def _add(table: dict[str, int], error_type: str) -> None:
    """Count one error in a bounded table; the caller holds the lock."""
    if error_type not in table and (
        len(table) >= MAX_TYPES or not re.fullmatch(_TYPE_NAME, error_type)
    ):
        error_type = OTHER
    table[error_type] = table.get(error_type, 0) + 1


def emf_line(counters: dict[str, object], function_name: str, timestamp_ms: int) -> str:
    """One EMF object for CloudWatch Logs: each counter a Count metric in NAMESPACE, with the
    dimension FunctionName; the by-type tables ride along as plain (non-metric) members."""
    document: dict[str, object] = {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [["FunctionName"]],
                    "Metrics": [{"Name": name, "Unit": "Count"} for name in COUNTER_NAMES],
                }
            ],
        },
        "FunctionName": function_name,
    }
    for name in COUNTER_NAMES:
        document[name] = counters[name]
    for table in TABLE_NAMES:
        document[table] = counters[table]
    return json.dumps(document, separators=(",", ":"))
