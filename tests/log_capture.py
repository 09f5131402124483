"""Point logs.log at an in-memory stream for a test, and put its setup back afterwards."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

from parameters_secrets_extension import logs


@contextlib.contextmanager
def restored() -> Iterator[None]:
    """Whatever the block does to logs.log's level, format, stream or descriptor is undone
    at its end."""
    log = logs.log
    saved = log.level, log.json_format, log.stream, log.fd, log._poll
    try:
        yield
    finally:
        log.level, log.json_format, log.stream, log.fd, log._poll = saved


@contextlib.contextmanager
def captured(level: str = "debug", *, json_format: bool = False) -> Iterator[io.StringIO]:
    """The stream that receives every line logged in the block, set up as the extension does."""
    stream = io.StringIO()
    with restored():
        logs.setup(level, json_format=json_format, stream=stream)
        yield stream
