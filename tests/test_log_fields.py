"""What the real process logs: ids that cannot forge fields, no credentials in the debug
configuration line, and a prefetch whose items name one key twice."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from tests.conftest import Moto, wait_until
from tests.extension_process import ExtensionProcess
from tests.hardening_support import secret_path

# key=value, the value plain or a JSON string.
FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')
FORGING_IDS = [
    "x type=AccessDeniedException status=403",
    'q" type="AccessDeniedException',
    "line\u2028sep\u2029para\u202eright-to-left",
]


def _fields(line: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for name, value in FIELD.findall(line):
        fields.setdefault(name, json.loads(value) if value.startswith('"') else value)
    return fields


def test_an_id_in_a_log_line_never_forges_a_field(extension: ExtensionProcess) -> None:
    for ident in FORGING_IDS:
        status, _, body = extension.get(secret_path(ident))
        assert json.loads(body)["__type"] == "ResourceNotFoundException", (status, body)
    wait_until(
        lambda: extension.output().count("upstream GetSecretValue failed") == len(FORGING_IDS),
        10,
        "the failure lines",
    )
    output = extension.output()
    assert not any(char in output for char in "\u2028\u2029\u202e")
    lines = [line for line in output.splitlines() if "upstream GetSecretValue failed" in line]
    for ident, line in zip(FORGING_IDS, lines, strict=True):
        fields = _fields(line)
        assert (fields["id"], fields["type"]) == (ident, "ResourceNotFoundException"), line
        assert len(FIELD.findall(line)) == len(fields), f"a field written twice: {line}"


def test_the_debug_configuration_line_has_no_query_string_of_the_credentials_uri(
    start_extension: Callable[..., ExtensionProcess],
) -> None:
    ext = start_extension(
        PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL="debug",
        AWS_CONTAINER_CREDENTIALS_FULL_URI="http://127.0.0.1:9/v1/creds?token=QUERYSECRET#FRAG",
    )
    output = ext.output()
    assert "configuration:" in output
    assert "QUERYSECRET" not in output and "FRAG" not in output
    assert "http://127.0.0.1:9/v1/creds?<redacted>" in output


def test_prefetch_items_naming_one_key_twice_fail_nothing(
    start_extension: Callable[..., ExtensionProcess], moto: Moto
) -> None:
    ssm = moto.boto3_client("ssm")
    ssm.put_parameter(Name="/issue19/prefetch", Value="one", Type="String", Overwrite=True)  # type: ignore[attr-defined]
    ssm.put_parameter(Name="/issue19/other", Value="two", Type="String", Overwrite=True)  # type: ignore[attr-defined]
    version = ssm.get_parameter(Name="/issue19/prefetch")["Parameter"]["Version"]  # type: ignore[attr-defined]
    ext = start_extension(
        PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL="debug",
        PARAMETERS_SECRETS_EXTENSION_PREFETCH=(
            f"ssm:/issue19/prefetch:{version},ssm:/issue19/prefetch:0{version},ssm:/issue19/other"
        ),
    )
    wait_until(
        lambda: ext.output().count("prefetched ssm") + ext.output().count("prefetch of") >= 3,
        10,
        "the prefetch lines",
    )
    output = ext.output()
    assert "prefetch of" not in output, output
    assert output.count("prefetched ssm") == 3, output
    # `name:3` warms the key of name with version=3.
    for query in (f"/issue19/prefetch&version={version}", "/issue19/other"):
        _, before = ext.get_json("/metrics")
        path = "/systemsmanager/parameters/get?name=" + query
        assert ext.get(path)[0] == 200
        _, after = ext.get_json("/metrics")
        hits = before["Hits"] + 1
        assert (after["Hits"], after["Misses"]) == (hits, before["Misses"]), query
