"""Point logs.log at an in-memory stream for a test, and put its setup back afterwards."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

import logs


@contextlib.contextmanager
def restored() -> Iterator[None]:
    """Whatever the block does to logs.log's level, format or stream is undone at its end."""
    saved = logs.log.level, logs.log.json_format, logs.log.stream
    try:
        yield
    finally:
        logs.log.level, logs.log.json_format, logs.log.stream = saved


@contextlib.contextmanager
def captured(level: str = "debug", *, json_format: bool = False) -> Iterator[io.StringIO]:
    """The stream that receives every line logged in the block, set up as the extension does."""
    stream = io.StringIO()
    with restored():
        logs.setup(level, json_format=json_format, stream=stream)
        yield stream
