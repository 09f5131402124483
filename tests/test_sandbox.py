"""The sandbox emulator of bench/bench_sandbox.py, one cold start per variant, with the real layer.

Checks the answers only; the timings are the benchmark's business.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import bench_sandbox
from tests.conftest import REGION, LambdaCredentials, Moto

pytest.importorskip("awslambdaric")


@pytest.fixture(scope="module")
def context(
    extension_executable: Path,
    moto: Moto,
    lambda_credentials: LambdaCredentials,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[bench_sandbox.Context]:
    sm = moto.boto3_client("secretsmanager")
    sm.create_secret(Name=bench_sandbox.SECRET_ID, SecretString=bench_sandbox.SECRET_VALUE)  # type: ignore[attr-defined]
    tmp = tmp_path_factory.mktemp("sandbox")
    python = Path(sys.executable).resolve()
    (tmp / "bin").mkdir()
    (tmp / "bin" / "python3").symlink_to(python)  # a real interpreter, not a pyenv shim
    env = {
        "PATH": f"{tmp / 'bin'}:/usr/bin:/bin",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": lambda_credentials.access_key,
        "AWS_SECRET_ACCESS_KEY": lambda_credentials.secret_key,
        "AWS_SESSION_TOKEN": lambda_credentials.session_token,
        "AWS_ENDPOINT_URL": moto.endpoint,
    }
    with bench_sandbox.zero_cost_server(python) as port:
        yield bench_sandbox.Context(
            extension=extension_executable,
            python=python,
            runtime_python=Path(sys.executable),
            env=env,
            tmp=tmp,
            zero_cost_port=port,
        )


@pytest.mark.parametrize("variant", bench_sandbox.VARIANTS)
def test_a_cold_sandbox_answers(context: bench_sandbox.Context, variant: str) -> None:
    result = bench_sandbox.cold_start(variant, context, warm=1)
    constant = variant in {"constant", "ext-unused", "minimal-ext"}
    expected = {"value": "constant" if constant else bench_sandbox.SECRET_VALUE}
    assert result.answers == [expected, expected]
    assert 0 < result.init <= result.first_answer
    if variant in bench_sandbox.WITH_EXTENSION or variant in {"minimal-ext", "bare-ext"}:
        assert result.register is not None and result.ext_next is not None
        assert 0 < result.register <= result.ext_next <= result.init
        assert result.exit_codes == [0]  # SHUTDOWN: each extension exits 0 on its own
        assert 0.005 < result.cpu < 10  # an interpreter's start at least, from os.wait4
        assert 0.005 < result.cpu_to_first <= result.cpu  # from the process's CPU clock
    else:
        assert result.register is None
        assert (result.exit_codes, result.cpu, result.cpu_to_first) == ([], 0.0, 0.0)
