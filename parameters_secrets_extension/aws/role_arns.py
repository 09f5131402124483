"""A role ARN as the local API takes it (`roleArn`), checked before anything reaches AWS.

Light on purpose: the query parser uses it on every request that names a role, and the
prefetch setting at start. The roles themselves (AssumeRole, their credentials): roles.py.
"""

from __future__ import annotations

from ..errors import InvalidParameter
from .partitions import PARTITIONS

QUERY_NAME = "roleArn"  # the query parameter, as both the Workload Credentials Provider
# and the Cloud Extensions call it
MAX_ROLE_ARN_CHARS = 2048  # STS AssumeRole's RoleArn limit
MAX_NAME_CHARS = 64  # IAM's limit on a role's name
MAX_PATH_CHARS = 512  # IAM's limit on a role's path, its slashes included
# A role's name, and each part of its path: letters, digits and +=,.@_- (IAM allows more
# printable characters in a path; like the Workload Credentials Provider we take these only),
# so no ARN taken holds a "|" (the prefetch setting's separator), a comma, a space or a "%".
# No `re` here: config.py uses this, and config must stay cheap to import.
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+=,.@_-")
RULE = (
    f"{QUERY_NAME} must be an IAM role ARN, arn:<partition>:iam::<12-digit account>:"
    "role/[<path>/]<name>, of a known partition"
)


def _is_name(part: str) -> bool:
    return bool(part) and all(char in _NAME_CHARS for char in part)


def is_role_arn(text: str) -> bool:
    """True for arn:<known partition>:iam::<12 digits>:role/[<path>/]<name> within IAM's limits."""
    if len(text) > MAX_ROLE_ARN_CHARS:
        return False
    parts = text.split(":")
    if len(parts) != 6:
        return False
    arn, partition, service, region, account, resource = parts
    if (arn, service, region) != ("arn", "iam", "") or partition not in PARTITIONS:
        return False
    if len(account) != 12 or not all("0" <= digit <= "9" for digit in account):
        return False
    if "/" not in resource:  # role/<name> at the least
        return False
    kind, *path, name = resource.split("/")
    return (
        kind == "role"
        and _is_name(name)
        and len(name) <= MAX_NAME_CHARS
        and all(_is_name(part) for part in path)
        and len("/".join(["", *path, ""])) <= MAX_PATH_CHARS
    )


def role_arn(text: str) -> str:
    """`text` if it is a role ARN (see is_role_arn); else a 400 naming the parameter, never
    the value (it may be long or hold anything)."""
    if not is_role_arn(text):
        raise InvalidParameter(RULE)
    return text
