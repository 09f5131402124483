"""The log lines of upstream failures and of stale serves: the first per (key, error type) at
once, repeats summarised, the whole bounded in keys and in lines per interval."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

from .errors import THROTTLING_TYPES, ExtensionError, RequestError, error_type_of
from .logs import log
from .services import BY_NAME

# The caller's mistakes, logged at WARN; every other upstream failure is an ERROR.
_CLIENT_MISTAKES = frozenset(
    {
        "ResourceNotFoundException",
        "ParameterNotFound",
        "ParameterVersionNotFound",
        "ValidationException",
        "InvalidParameterException",
        "InvalidRequestException",
        "InvalidKeyId",
    }
)
REPEAT_INTERVAL_SECONDS = 60.0
MAX_TRACKED_FAILURES = 256
# Across all keys: beyond this many lines per interval, failures are only counted.
MAX_LINES_PER_INTERVAL = 100
_MAX_LOGGED_ID = 512
# An id made only of these is logged as it is; any other is quoted (see printable). Only a
# failure's line uses it: compiled (and cached by re) then, not at import (about 0.1 ms).
_PLAIN_ID = r"[A-Za-z0-9/_.:@+-]+"


def printable(ident: str) -> str:
    """An id as one log token that always parses back into the fields it was written with:
    plain if made of name characters only, else a JSON string, quoted and ASCII (so a space,
    an "=", a quote, a control character or a line or bidi separator such as U+2028 or U+202E
    is escaped); at most _MAX_LOGGED_ID characters, cut ones followed by "..."."""
    text = ident[:_MAX_LOGGED_ID]
    shown = text if re.fullmatch(_PLAIN_ID, text) else json.dumps(text)
    return shown if len(ident) <= _MAX_LOGGED_ID else shown + "..."


def is_client_mistake(exc: ExtensionError) -> bool:
    if isinstance(exc, RequestError):
        return True
    if exc.status >= 500 or exc.error_type in THROTTLING_TYPES:
        return False
    return exc.error_type in _CLIENT_MISTAKES or exc.error_type.endswith("NotFoundException")


class FailureLog:
    """Logs upstream failures and stale serves: the first per (key, error type) at once,
    repeats in summary.

    A repeat within `interval` seconds of the last line for its key is only counted; the
    next failure after that logs one line with the count. Names and ARNs are logged, never
    a message, value, token or key. Both tables are bounded: `max_keys` keys (least recently
    failed forgotten first) and `max_lines` lines per interval across all keys.
    """

    def __init__(
        self,
        *,
        interval: float = REPEAT_INTERVAL_SECONDS,
        max_keys: int = MAX_TRACKED_FAILURES,
        max_lines: int = MAX_LINES_PER_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = interval
        self._max_keys = max_keys
        self._max_lines = max_lines
        self._clock = clock
        self._lock = threading.Lock()
        # (key, error type) -> [time of its last line, repeats counted since]
        self._seen: OrderedDict[tuple[Hashable, str], list[float]] = OrderedDict()
        self._window_start = clock()
        self._lines = 0
        self._dropped = 0

    def record(
        self,
        key: tuple[object, ...],
        exc: ExtensionError,
        attempts: int | None,
        seconds: float,
        *,
        operation: str | None = None,
        selectors: tuple[str, ...] | None = None,
    ) -> None:
        """Log (or count) one failed fetch of cache key `key` that took `seconds`.

        `attempts` is logged when known: the transport sets it on the errors it raises. The
        operation and the names of the key's selectors default to the single read's.
        """
        repeats, dropped = self._admit((key, exc.error_type))
        self._report_dropped(dropped)
        if repeats is None:
            return
        name, ident, *values = key
        # A key in a role's namespace ends in the pair ("roleArn", arn) (lookups.in_role).
        role: tuple[object, ...] = ()
        if values and isinstance(values[-1], tuple):
            role = values.pop()  # type: ignore[assignment]  # narrowed just above
        service = BY_NAME[str(name)]
        details = "".join(
            f" {selector}={printable(str(value))}"
            for selector, value in zip(selectors or service.selectors, values, strict=True)
            if value not in (None, False)
        )
        for selector, value in zip(role[::2], role[1::2], strict=True):
            details += f" {selector}={printable(str(value))}"
        write = log.warning if is_client_mistake(exc) else log.error
        write(
            "upstream %s failed: id=%s%s type=%s status=%d%s duration_ms=%.0f%s",
            operation or service.operation,
            printable(str(ident)),
            details,
            exc.error_type,
            exc.status,
            "" if attempts is None else f" attempts={attempts}",
            seconds * 1000,
            f" (and {repeats} more like it in the last {self._interval:.0f} s)" if repeats else "",
        )

    def _report_dropped(self, dropped: int) -> None:
        """One line for the lines left out in the interval before, if any were."""
        if dropped:
            log.warning(
                "%d upstream failure lines were not logged in the last %.0f s (too many)",
                dropped,
                self._interval,
            )

    def stale(self, key: Hashable, age: float, exc: BaseException) -> None:
        """Log (or count) one stale serve of cache key `key`, by the rules of record(): one
        warning naming the key's service and id, never the value."""
        repeats, dropped = self._admit((key, "stale " + error_type_of(exc)))
        self._report_dropped(dropped)
        if repeats is None:
            return
        name, ident = key[:2] if isinstance(key, tuple) else (key, "")
        log.warning(
            "serving %s %s stale, expired %.0f s ago: fetch failed: %s%s",
            name,
            printable(str(ident)),
            age,
            error_type_of(exc),
            f" (and {repeats} more like it in the last {self._interval:.0f} s)" if repeats else "",
        )

    def _admit(self, item: tuple[Hashable, str]) -> tuple[int | None, int]:
        """(repeats to report, or None to stay silent; lines dropped in the last window)."""
        with self._lock:
            now = self._clock()
            dropped = 0
            if now - self._window_start >= self._interval:
                dropped, self._dropped = self._dropped, 0
                self._window_start, self._lines = now, 0
            entry = self._seen.get(item)
            if entry is not None:
                self._seen.move_to_end(item)
                if now - entry[0] < self._interval:
                    entry[1] += 1
                    return None, dropped
            if self._lines >= self._max_lines:
                self._dropped += 1
                return None, dropped
            repeats = 0 if entry is None else int(entry[1])
            self._seen[item] = [now, 0]
            self._seen.move_to_end(item)
            while len(self._seen) > self._max_keys:
                self._seen.popitem(last=False)
            self._lines += 1
            return repeats, dropped
