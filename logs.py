"""Logging to stdout, plain or one JSON object a line; every module logs through `log`.

AWS_LAMBDA_LOG_FORMAT=JSON picks the JSON form, as Lambda's own log format setting does.

A few lines of our own instead of the stdlib `logging` package, whose import alone costs
about 4 ms (15 M instructions) of the extension's init.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from version import NAME

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from typing import TextIO

DEBUG, INFO, WARN, ERROR = 10, 20, 30, 40
# "none" sits above ERROR so that nothing passes; "warn" is spelled as Lambda users write it.
LEVELS = {"debug": DEBUG, "info": INFO, "warn": WARN, "error": ERROR, "none": ERROR + 10}
_LEVEL_NAMES = {DEBUG: "DEBUG", INFO: "INFO", WARN: "WARN", ERROR: "ERROR"}


class Logger:
    """The part of `logging.Logger` the modules use: `log.info(msg, *args)` and its siblings.

    The message is %-formatted with `args` only when the level is enabled, and only if there
    are args. Each line goes out in one write followed by a flush, under a lock, because
    Lambda reads stdout and lines from concurrent threads must not interleave.
    """

    def __init__(self) -> None:
        # Until setup(): warnings and errors to stderr, as `logging` does with no handler.
        self.level = WARN
        self.json_format = False
        self.stream: TextIO | None = None  # None: sys.stderr at the time of writing
        self._lock = threading.Lock()

    def debug(self, msg: str, *args: object) -> None:
        if self.level <= DEBUG:
            self._write(DEBUG, msg, args)

    def info(self, msg: str, *args: object) -> None:
        if self.level <= INFO:
            self._write(INFO, msg, args)

    def warning(self, msg: str, *args: object) -> None:
        if self.level <= WARN:
            self._write(WARN, msg, args)

    def error(self, msg: str, *args: object) -> None:
        if self.level <= ERROR:
            self._write(ERROR, msg, args)

    def _write(self, level: int, msg: str, args: tuple[object, ...]) -> None:
        message = msg % args if args else msg
        if self.json_format:
            line = _json_line(_LEVEL_NAMES[level], message)
        else:
            line = f"[{NAME}] {_LEVEL_NAMES[level]} {message}"
        stream = self.stream if self.stream is not None else sys.stderr
        with self._lock:
            try:
                stream.write(line + "\n")
                stream.flush()
            except (OSError, ValueError):
                pass  # stdout closed or broken: a log line is not worth the process


def _json_line(level: str, message: str) -> str:
    """One JSON object, for AWS_LAMBDA_LOG_FORMAT=JSON."""
    now_ns = time.time_ns()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now_ns // 1_000_000_000))
    millis = now_ns // 1_000_000 % 1000
    return json.dumps(
        {"timestamp": f"{stamp}.{millis:03d}Z", "level": level, "logger": NAME, "message": message}
    )


log = Logger()


def setup(level: str, *, json_format: bool, stream: TextIO | None = None) -> None:
    """Send `log` to stdout (or `stream`) at `level`, replacing any earlier setup."""
    log.level = LEVELS[level]
    log.json_format = json_format
    log.stream = stream if stream is not None else sys.stdout
