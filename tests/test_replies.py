"""replies.render: the status line of each status a reply can carry."""

from __future__ import annotations

import pytest

from parameters_secrets_extension.local_api.replies import Reply, render


@pytest.mark.parametrize(
    ("status", "phrase"),
    [
        (200, b"OK"),
        (400, b"Bad Request"),
        (404, b"Not Found"),
        (413, b"Content Too Large"),
        (429, b"Too Many Requests"),  # an upstream throttle, relayed with its status
        (431, b"Request Header Fields Too Large"),
        (503, b"Service Unavailable"),
        (599, b"Error"),  # a status without a registered phrase
    ],
)
def test_status_line_carries_the_registered_reason_phrase(status: int, phrase: bytes) -> None:
    wire = render(Reply(status, b"{}"), close=False)
    assert wire.startswith(b"HTTP/1.1 %d %s\r\n" % (status, phrase))
    assert wire.endswith(b"\r\n\r\n{}")
