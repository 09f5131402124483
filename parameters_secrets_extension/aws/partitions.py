"""The AWS partitions and the DNS suffix of each (botocore's endpoints.json): the one list of
them, for endpoints.py (hosts) and role_arns.py (the partitions a roleArn may name)."""

from __future__ import annotations

DNS_SUFFIXES = {
    "aws": "amazonaws.com",
    "aws-cn": "amazonaws.com.cn",
    "aws-us-gov": "amazonaws.com",
    "aws-iso": "c2s.ic.gov",
    "aws-iso-b": "sc2s.sgov.gov",
    "aws-iso-e": "cloud.adc-e.uk",
    "aws-iso-f": "csp.hci.ic.gov",
    "aws-eusc": "amazonaws.eu",
}
PARTITIONS = frozenset(DNS_SUFFIXES)
