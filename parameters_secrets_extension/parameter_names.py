"""A requested parameter name: one record from the local query to the AWS call and back.

As written (and sent to GetParameters, which splits it the same way), and split from its
`:version` or `:label` selector, which is how the single read spells the same cache key.
"""

from __future__ import annotations

import re
from collections import namedtuple

from .errors import InvalidParameter

_ARN_PARAMETER = ":parameter/"
_DIGITS = re.compile(r"[0-9]{1,19}")
_MAX_VERSION = 2**63 - 1


class ParameterName(namedtuple("ParameterName", "requested name version label")):
    """One requested parameter: `requested` as written, `name` without its selector, and the
    selector's `version` or `label` (at most one of them)."""

    __slots__ = ()
    requested: str
    name: str
    version: int | None
    label: str | None

    def selector(self) -> str | None:
        """The selector as GetParameter echoes it (":3", ":label"), or None."""
        if self.version is not None:
            return f":{self.version}"
        return f":{self.label}" if self.label else None


def parameter_name(requested: str) -> ParameterName:
    """Split `name:3` or `name:label` (after an ARN's `parameter/`) as GetParameters does."""
    start = 0
    if requested.startswith("arn:"):
        found = requested.find(_ARN_PARAMETER)
        start = found + len(_ARN_PARAMETER) if found >= 0 else len(requested)
    cut = requested.find(":", start)
    if cut < 0:
        return ParameterName(requested, requested, None, None)
    name, selector = requested[:cut], requested[cut + 1 :]
    if not name or not selector:
        raise InvalidParameter("a selector after ':' must be a version number or a label")
    if selector[0].isdigit():
        return ParameterName(requested, name, version_number(selector), None)
    return ParameterName(requested, name, None, selector)


def version_number(text: str) -> int:
    """A parameter version as a query or a selector gives it: a positive whole number."""
    if not _DIGITS.fullmatch(text) or not 0 < int(text) <= _MAX_VERSION:
        raise InvalidParameter("version must be a positive whole number")
    return int(text)
