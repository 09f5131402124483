"""The README's snippets work when copied: each is read out of README.md, not kept as a copy."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint_file

from tests.conftest import ROOT, LambdaCredentials, Moto
from tests.hardening_support import start_standalone

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    """The text of one `## title` section."""
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else len(README)]


def _blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", _section(section), re.DOTALL)


def test_python_client_quotes_the_id(
    extension_executable: Path, tmp_path: Path, moto: Moto, lambda_credentials: LambdaCredentials
) -> None:
    # '+' decodes as a space and '/' ends nothing in a query, so both must be quoted.
    name, value = "team+app/db", "readme-VALUE-quoted"
    client = moto.boto3_client("secretsmanager")
    client.create_secret(Name=name, SecretString=value)  # type: ignore[attr-defined]
    try:
        with start_standalone(
            extension_executable, tmp_path / "ext.log", moto, lambda_credentials
        ) as ext:
            snippet = _blocks("Clients", "python")[0]
            assert "localhost:2773" in snippet
            namespace: dict[str, object] = {}
            # The only change: the port this test's extension listens on.
            exec(snippet.replace("localhost:2773", f"localhost:{ext.port}"), namespace)  # noqa: S102
            os.environ["AWS_SESSION_TOKEN"] = lambda_credentials.session_token
            get_secret = namespace["get_secret"]
            assert callable(get_secret)
            assert get_secret(name) == value
    finally:
        client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)  # type: ignore[attr-defined]


def test_sam_template_passes_cfn_lint(tmp_path: Path) -> None:
    (template,) = [b for b in _blocks("Infrastructure as code", "yaml") if "Transform:" in b]
    path = tmp_path / "template.yaml"
    path.write_text(template, encoding="utf-8")
    assert [f"{m.rule.id} {m.message}" for m in lint_file(path)] == []
    # The check can fail: without the Transform line cfn-lint refuses the serverless types.
    path.write_text(template.replace("Transform: AWS::Serverless-2016-10-31\n", ""))
    assert "E3038" in {m.rule.id for m in lint_file(path)}


@pytest.mark.parametrize(
    ("block", "actions"),
    [
        ("json", {"secretsmanager:GetSecretValue", "ssm:GetParameter"}),
        ("yaml", {"secretsmanager:GetSecretValue", "ssm:GetParameter"}),
        ("typescript", {"secret.grantRead(fn)", "parameter.grantRead(fn)"}),
        ("hcl", {"secretsmanager:GetSecretValue", "ssm:GetParameter"}),
    ],
)
def test_every_iac_snippet_grants_the_reads(block: str, actions: set[str]) -> None:
    text = "\n".join(_blocks("Quick start", block) + _blocks("Infrastructure as code", block))
    assert text, f"no {block} snippet"
    for action in actions:
        assert action in text
    if block == "json":
        policy = json.loads(text)
        granted = {s["Action"] for s in policy["Statement"] if s["Effect"] == "Allow"}
        assert granted == actions


def test_batch_client_reads_every_secret(
    extension_executable: Path, tmp_path: Path, moto: Moto, lambda_credentials: LambdaCredentials
) -> None:
    wanted = {"readme/batch+one": "batch-VALUE-1", "readme/batch two": "batch-VALUE-2"}
    client = moto.boto3_client("secretsmanager")
    for name, value in wanted.items():
        client.create_secret(Name=name, SecretString=value)  # type: ignore[attr-defined]
    # The README's batch permission, granted to the function's role for this test only.
    iam: Any = moto.boto3_client("iam")
    role = moto.role_arn.rsplit("/", 1)[1]
    statement = {"Effect": "Allow", "Action": "secretsmanager:BatchGetSecretValue", "Resource": "*"}
    policy = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
    iam.put_role_policy(RoleName=role, PolicyName="readme-batch", PolicyDocument=policy)
    try:
        with start_standalone(
            extension_executable, tmp_path / "ext.log", moto, lambda_credentials
        ) as ext:
            snippet = _blocks("Batch and path reads", "python")[0]
            namespace: dict[str, object] = {}
            exec(snippet.replace("localhost:2773", f"localhost:{ext.port}"), namespace)  # noqa: S102
            os.environ["AWS_SESSION_TOKEN"] = lambda_credentials.session_token
            get_secrets = namespace["get_secrets"]
            assert callable(get_secrets)
            assert get_secrets(list(wanted)) == wanted
    finally:
        iam.delete_role_policy(RoleName=role, PolicyName="readme-batch")
        for name in wanted:
            client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)  # type: ignore[attr-defined]


# --- any runtime: the layer built --with-python --------------------------------------------


def test_quick_start_builds_a_layer_per_runtime_family() -> None:
    quick = _section("Quick start")
    commands = re.findall(r"^ {4}(python build_layer\.py .*)$", quick, re.MULTILINE)
    assert commands == [
        "python build_layer.py --arch arm64",
        "python build_layer.py --arch arm64 --with-python",
    ]
    comments = re.findall(r"^ {4}# (.*)$", quick, re.MULTILINE)
    assert "Python" in comments[0] and "Node.js" in comments[1] and "without Python" in quick
    # The option is the build's own, as its --help describes it.
    done = subprocess.run(
        [sys.executable, str(ROOT / "build_layer.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--with-python" in done.stdout


def test_the_interpreter_section_names_the_pinned_releases() -> None:
    from bundled_python import pins

    section = _section("Keeping the interpreter current")
    found = re.search(r"CPython (\S+) with OpenSSL (\S+) and\s+zlib (\S+),", section)
    assert found is not None
    assert found.groups() == (pins.CPYTHON.version, pins.OPENSSL.version, pins.ZLIB.version)
    assert "`bundled_python/pins.py`" in section and (ROOT / "bundled_python/pins.py").is_file()
    # The fields it tells the reader to change are the pin's fields.
    for field in re.findall(r"`(\w+)`", section.split("1. ", 1)[1].split("2. ", 1)[0]):
        assert field in pins.Source._fields
    # The sample output of --version shows the same releases.
    assert f"\n    Python {pins.CPYTHON.version} (" in section
    assert f"\n    OpenSSL {pins.OPENSSL.version} " in section


def test_an_image_without_python_gets_the_whole_layer_at_opt() -> None:
    import build_layer

    (dockerfile,) = [b for b in _blocks("Container images", "dockerfile") if "COPY layer/" in b]
    assert "python" not in dockerfile.splitlines()[0].lower()  # FROM an image without Python
    copy = re.search(r"^COPY (\S+)/ (\S+)$", dockerfile, re.MULTILINE)
    assert copy is not None and copy.group(2) == "/opt/"
    section = _section("Container images")
    assert f"-d {copy.group(1)}`" in section  # the directory the layer was unzipped into
    # The two directories the text says must stay side by side are the layer's.
    assert f"`{build_layer.BUNDLED_DIR}/`" in section
    assert build_layer.LAYER_ENTRY.startswith("extensions/") and "`extensions/`" in section
