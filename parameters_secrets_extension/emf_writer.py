"""The counters as CloudWatch Embedded Metric Format lines on stdout, every interval while the
sandbox runs and once more at SHUTDOWN, which Lambda does not always deliver.

Each line holds what was counted since the line before (deltas), not the totals since
start: CloudWatch adds up the values of a Count metric within each period, so totals would
be counted again in every line. A period in which nothing was counted writes no line; the
SHUTDOWN line is always written. The gauges of GET /metrics (CacheSize, ...) are not in the
line, as metrics.emf_line says. A line is one write of at most logs.MAX_LINE_BYTES, like a
log line: should the by-type tables make it longer, that line carries the counts alone.

One daemon thread sleeps in a timed wait between lines: it holds nothing up, costs no CPU
while it waits, and a frozen sandbox is never woken for it (a thawed one writes the line
that fell due while it was frozen at once). It is started after registering, by the wiring;
under SnapStart, at the first invoke, counting from there (start_from_now).
"""

from __future__ import annotations

import threading
import time

from .logs import MAX_LINE_BYTES, log
from .metrics import COUNTER_NAMES, TABLE_NAMES, emf_line

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from collections.abc import Callable

# How long stop() waits for a line being written by the thread.
_JOIN_SECONDS = 1.0


def delta(now: dict[str, object], before: dict[str, object]) -> dict[str, object]:
    """What was counted between two snapshots of the counters: each counter's and each error
    type's increase (types that did not grow are left out)."""
    result: dict[str, object] = {
        name: _int(now.get(name)) - _int(before.get(name)) for name in COUNTER_NAMES
    }
    for table in TABLE_NAMES:
        current, earlier = now.get(table), before.get(table)
        grown: dict[str, int] = {}
        if isinstance(current, dict):
            old = earlier if isinstance(earlier, dict) else {}
            for kind, count in current.items():
                increase = _int(count) - _int(old.get(kind))
                if increase > 0:
                    grown[kind] = increase
        result[table] = grown
    return result


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


class EmfWriter:
    """Writes the counters' deltas as one EMF line every `interval` seconds from its own
    thread (start), and the last line at stop."""

    def __init__(
        self,
        counters: Callable[[], dict[str, object]],
        function_name: str,
        interval: float,
        write: Callable[[str], None] = log.emit,
    ) -> None:
        self._counters = counters
        self._function_name = function_name
        self._interval = interval
        self._write = write
        self._lock = threading.Lock()  # one line at a time, each delta against the last
        self._last: dict[str, object] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="metrics-emf", daemon=True)
        self._thread.start()

    def start_from_now(self) -> None:
        """start(), counting from now: what was counted before is never written (under
        SnapStart, from the first invoke, so that init's counts, which the snapshot holds,
        are not reported again by every sandbox restored from it)."""
        with self._lock:
            self._last = self._counters()
        self.start()

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            self.flush(final=False)

    def stop(self, *, final: bool = True) -> None:
        """End the thread; with `final`, write the last line (at SHUTDOWN)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(_JOIN_SECONDS)
        if final:
            self.flush(final=True)

    def flush(self, *, final: bool) -> None:
        """Write what was counted since the last line; unless `final`, only if anything was."""
        with self._lock:
            now = self._counters()
            counted = delta(now, self._last)
            self._last = now
            if not final and not any(counted[name] for name in COUNTER_NAMES):
                return
            stamp = time.time_ns() // 1_000_000
            line = emf_line(counted, self._function_name, stamp)
            if len(line) >= MAX_LINE_BYTES:
                # Many error types in one period: the counts without the by-type tables
                # rather than a line cut short (and lost) or a write that may block.
                counts = {**counted, **{table: {} for table in TABLE_NAMES}}
                line = emf_line(counts, self._function_name, stamp)
            self._write(line)
