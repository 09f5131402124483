"""Logging to stdout in SPEC 7's plain or JSON format; every module logs through `log`."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TextIO

NAME = "parameters-secrets-extension"
log = logging.getLogger(NAME)

# "none" sits above CRITICAL so that nothing passes; "warn" is spelled as Lambda users write it.
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "none": logging.CRITICAL + 10,
}
_LEVEL_NAMES = {logging.WARNING: "WARN", logging.CRITICAL: "ERROR"}


def _level_name(record: logging.LogRecord) -> str:
    return _LEVEL_NAMES.get(record.levelno, record.levelname)


class PlainFormatter(logging.Formatter):
    """`[parameters-secrets-extension] LEVEL message`."""

    def format(self, record: logging.LogRecord) -> str:
        return f"[{NAME}] {_level_name(record)} {record.getMessage()}"


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for AWS_LAMBDA_LOG_FORMAT=JSON."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return json.dumps(
            {
                "timestamp": f"{stamp}.{int(record.msecs):03d}Z",
                "level": _level_name(record),
                "logger": NAME,
                "message": record.getMessage(),
            }
        )


def setup(level: str, *, json_format: bool, stream: TextIO | None = None) -> None:
    """Send `log` to stdout (or `stream`) at `level`, replacing any earlier setup."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(JsonFormatter() if json_format else PlainFormatter())
    log.handlers[:] = [handler]
    log.setLevel(LEVELS[level])
    log.propagate = False
