"""The README's snippets work when copied: each is read out of README.md, not kept as a copy."""

from __future__ import annotations

import json
import os
import re
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
