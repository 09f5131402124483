"""The datetime classes, from CPython's C module `_datetime` rather than through `datetime`.

On Python 3.10 and 3.11 `import datetime` first builds the whole pure-Python module, whose
classes `_datetime` then replaces: 1.1 ms of CPU on the way to the first answer, against
0.4 ms for `_datetime` alone (3.12+ build only the C module either way). `_datetime` is
private, but present and unchanged in 3.10-3.14, and its classes are the very ones
`datetime` exports.
"""

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from datetime import datetime, timedelta, timezone
else:
    try:
        from _datetime import datetime, timedelta, timezone
    except ImportError:  # pragma: no cover - an interpreter without the C module
        from datetime import datetime, timedelta, timezone

__all__ = ["datetime", "timedelta", "timezone"]
