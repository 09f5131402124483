"""Logging to stdout, plain or one JSON object a line; every module logs through `log`.

AWS_LAMBDA_LOG_FORMAT=JSON picks the JSON form, as Lambda's own log format setting does.

A few lines of our own instead of the stdlib `logging` package, whose import alone costs
about 4 ms (15 M instructions) of the extension's init.
"""

from __future__ import annotations

import json
import os
import select
import sys
import threading
import time

from .version import NAME

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from typing import TextIO

DEBUG, INFO, WARN, ERROR = 10, 20, 30, 40
# "none" sits above ERROR so that nothing passes; "warn" is spelled as Lambda users write it.
LEVELS = {"debug": DEBUG, "info": INFO, "warn": WARN, "error": ERROR, "none": ERROR + 10}
_LEVEL_NAMES = {DEBUG: "DEBUG", INFO: "INFO", WARN: "WARN", ERROR: "ERROR"}
# Bounds on what one line may cost its caller when stdout is not being read: the wait for
# another thread's line, and the wait for room in the pipe. Past either, the line is dropped
# (and counted, and the count logged once there is room again).
LOCK_WAIT_SECONDS = 0.2
ROOM_WAIT_SECONDS = 0.1
# A line of at most this many bytes is written whole by one write() that cannot block once
# poll() says the pipe has room, and never interleaves with another writer's (POSIX
# PIPE_BUF); longer lines are cut to it.
MAX_LINE_BYTES = 4096


class Logger:
    """The part of `logging.Logger` the modules use: `log.info(msg, *args)` and its siblings.

    The message is %-formatted with `args` only when the level is enabled, and only if there
    are args. Each line goes out in one write, under a lock, because Lambda reads stdout and
    lines from concurrent threads must not interleave. To stdout (`fd`) a line never blocks
    its caller for long, whoever stops reading: see LOCK_WAIT_SECONDS and ROOM_WAIT_SECONDS;
    while lines are being dropped, a line does not wait for room at all.
    """

    def __init__(self) -> None:
        # Until setup(): warnings and errors to stderr, as `logging` does with no handler.
        self.level = WARN
        self.json_format = False
        self.stream: TextIO | None = None  # None: sys.stderr at the time of writing
        self.fd: int | None = None  # set: lines go to this descriptor, not to `stream`
        self.dropped = 0  # lines not written since the last one that was
        self._poll: select.poll | None = None
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

    def traceback(self, exc: BaseException) -> None:
        """At debug, where an unexpected `exc` was raised, in one line, innermost frame first.

        Each frame gives its file, line, function and the code on that line: never a local
        variable, so no value, token, credential or signature can appear. The exception's
        message is left out too, since it may quote what it failed on.
        """
        if self.level > DEBUG:
            return
        import traceback  # noqa: PLC0415 -- only when a bug is logged at debug

        frames = traceback.extract_tb(exc.__traceback__)
        where = " <- ".join(
            f"{frame.filename}:{frame.lineno} {frame.name}: {(frame.line or '').strip()}"
            for frame in reversed(frames)
        )
        self._write(DEBUG, "traceback of %s: %s", (type(exc).__name__, where or "-"))

    def emit(self, line: str) -> None:
        """Write `line` as it is, without level or prefix, whatever the level: a document for
        CloudWatch (an EMF line), not a log line. Written as log lines are: one write, the
        same bounded waits, and cut past MAX_LINE_BYTES, which the caller keeps it under."""
        if self.fd is not None:
            self._write_fd(self.fd, line)
            return
        self._write_stream(line)

    def _write(self, level: int, msg: str, args: tuple[object, ...]) -> None:
        message = msg % args if args else msg
        line = self._format(level, message)
        if self.fd is not None:
            self._write_fd(self.fd, line)
            return
        self._write_stream(line)

    def _write_stream(self, line: str) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        with self._lock:
            try:
                stream.write(line + "\n")
                stream.flush()
            except (OSError, ValueError):
                pass  # stdout closed or broken: a log line is not worth the process

    def _format(self, level: int, message: str) -> str:
        if self.json_format:
            return _json_line(_LEVEL_NAMES[level], message)
        return f"[{NAME}] {_LEVEL_NAMES[level]} {message}"

    def _write_fd(self, fd: int, line: str) -> None:
        if not self._lock.acquire(timeout=LOCK_WAIT_SECONDS):
            self.dropped += 1  # a lost count or two under contention is harmless
            return
        try:
            # Once a line found no room, the next ones only look: a stdout nobody reads
            # costs each line one wait until it is read again, not one wait per line.
            wait = 0.0 if self.dropped else ROOM_WAIT_SECONDS
            if self.dropped and self._room(wait):
                notice = f"{self.dropped} log lines dropped: stdout was not being read"
                if self._put(fd, self._format(WARN, notice)):
                    self.dropped = 0
            if not (self._room(wait) and self._put(fd, line)):
                self.dropped += 1
        finally:
            self._lock.release()

    def _room(self, wait: float) -> bool:
        """Whether a line can be written without blocking, after waiting up to `wait` s."""
        if self._poll is None:
            return True
        try:
            return bool(self._poll.poll(wait * 1000))
        except OSError:
            return False

    def _put(self, fd: int, line: str) -> bool:
        data = line.encode("utf-8", "replace")
        if len(data) >= MAX_LINE_BYTES:
            data = data[: MAX_LINE_BYTES - 4] + b"..."
        try:
            os.write(fd, data + b"\n")
        except OSError:
            return False  # stdout closed or broken: a log line is not worth the process
        return True


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
    log.fd = log._poll = None
    if stream is None:
        # Straight to the descriptor, past the TextIOWrapper's buffer and lock, so that a
        # full pipe costs a line a bounded wait (Logger._write_fd), never a blocked thread.
        try:
            sys.stdout.flush()
            fd = sys.stdout.fileno()
            poll = select.poll()
            poll.register(fd, select.POLLOUT)
        except (AttributeError, OSError, ValueError):
            return  # no real stdout (closed, or replaced by an object without a descriptor)
        log.fd, log._poll = fd, poll
