"""A requested parameter name: one record from the local query to the AWS call and back.

As written (and sent to GetParameters, which splits it the same way), and split from its
`:version` or `:label` selector, which is how the single read spells the same cache key.
"""

from __future__ import annotations

import re
from collections import namedtuple

from .errors import InvalidParameter

_ARN_PARAMETER = ":parameter/"
# The patterns here check a version selector, which most requests do not have: compiled (and
# cached by re) at the first one, not at import (about 0.1 ms each).
_DIGITS = r"[0-9]{1,19}"
_MAX_VERSION = 2**63 - 1
# A Secrets Manager secret read through Parameter Store: GetParameter takes the secret's
# VersionId as the selector of such a name (`<prefix><secret>:<VersionId>`).
REFERENCE_PREFIX = "/aws/reference/secretsmanager/"
# A secret's VersionId: 32 to 64 characters, as Secrets Manager bounds it (a UUID in
# practice). Letters, digits and hyphens only: it is sent after a ':' inside the name, so
# it must hold no ':' or '/' that SSM would split on.
_SECRET_VERSION_ID = r"[A-Za-z0-9-]{32,64}"  # noqa: S105 (a pattern)


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
        version, label = version_selector(name, selector)
        return ParameterName(requested, name, version, label)
    return ParameterName(requested, name, None, selector)


def version_selector(name: str, text: str) -> tuple[int | None, str | None]:
    """A version as a query or a selector gives it for `name`: (number, None), or, for a
    reference name only, (None, VersionId) when `text` is a secret's VersionId. A VersionId
    is sent as a label is (`name:<VersionId>`, which is how SSM takes it), so it shares the
    cache key of `label=<VersionId>`, which asks AWS the same thing."""
    if not name.startswith(REFERENCE_PREFIX):
        return version_number(text), None
    if re.fullmatch(_SECRET_VERSION_ID, text):
        return None, text
    if re.fullmatch(_DIGITS, text) and 0 < int(text) <= _MAX_VERSION:
        return int(text), None
    raise InvalidParameter(
        "version of a Secrets Manager reference must be a positive whole number or a"
        " secret's VersionId (32 to 64 letters, digits and hyphens)"
    )


def version_number(text: str) -> int:
    """A parameter version as a query or a selector gives it: a positive whole number."""
    if not re.fullmatch(_DIGITS, text) or not 0 < int(text) <= _MAX_VERSION:
        raise InvalidParameter("version must be a positive whole number")
    return int(text)
