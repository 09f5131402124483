"""What the built executable imports before `register`: only what the interpreter loads anyway.

Lambda starts the function's runtime only once every extension has registered, so each module
imported before `register` delays the function. The layer's executable is run as Lambda runs
it (its native launcher registers, then execs `python3 -I -S`; test_any_runtime checks that
`register` leaves before Python's first import), and as Python alone runs it (the launcher's
program run by python3 directly: every case the launcher leaves to Python), with a `python3`
on PATH that adds `-X importtime`: the launcher's -I hides PYTHONPROFILEIMPORTTIME, not a
command-line option. The interpreter then writes a line to stderr, unbuffered, as each import
completes. When Python registers, the fake Extensions API takes a copy of that stderr as
`register` arrives, while the extension waits for the answer; minus what a bare
`python3 -I -S -c pass` imports, it must be exactly PRE_REGISTER. Either way nothing more is
imported between `register` and `import extension`.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.harness import launcher_program
from build_layer import interpreters
from tests.conftest import LambdaCredentials, Moto, free_port
from tests.extension_process import ExtensionProcess, lambda_env
from tests.fake_extensions_api import FakeExtensionsApi

# Beyond the bare interpreter's own: our four modules and the two (empty) package __init__s
# on their path, and the two of the standard library that listening and the signal set-up
# cannot do without (_socket is a shared library in lib-dynload, gc a built-in module not
# imported at start). A change that imports more before `register` (os, __future__, the idna
# codec that a str host makes getaddrinfo import, ...) fails here.
PACKAGE = "parameters_secrets_extension"
PRE_REGISTER = {
    PACKAGE,
    f"{PACKAGE}.lambda_api",
    f"{PACKAGE}.lambda_api.boot",
    f"{PACKAGE}.lambda_api.lifecycle",
    f"{PACKAGE}.response_reader",
    f"{PACKAGE}.version",
    "_socket",
    "gc",
}
# What only a later, rarer request needs: a roleArn (in a request or a prefetch item), EMF
# metrics, a secret's first expiry. A start without them loads none before the first `next`.
LATER = {
    f"{PACKAGE}.aws.role_arns",
    f"{PACKAGE}.emf_writer",
    f"{PACKAGE}.revalidation",
}
# A self time can be negative: when two threads import at once (the warm-up and a request),
# one's nested imports are counted against the other's.
LINE = re.compile(r"^import time:\s+-?\d+ \|\s+-?\d+ \|( *)(\S+)\s*$")
# Each Python 3.10+ that build_layer compiles for, and the one running the tests.
PYTHONS = {version: str(Path(path).resolve()) for version, path in interpreters().items()}
if str(Path(sys.executable).resolve()) not in PYTHONS.values():
    PYTHONS["current"] = str(Path(sys.executable).resolve())
CURRENT = next(key for key, path in PYTHONS.items() if path == str(Path(sys.executable).resolve()))


def imported(stderr: str) -> list[tuple[int, str]]:
    """(nesting depth, module) of each -X importtime line, in the order the imports ended."""
    found = []
    for line in stderr.splitlines():
        match = LINE.match(line)
        if match:
            found.append((len(match.group(1)) // 2, match.group(2)))
    return found


def before_extension(lines: list[tuple[int, str]]) -> set[str]:
    """The modules imported before `import extension` began (it ends a depth-0 group)."""
    names = [name for _, name in lines]
    if "extension" not in names:
        raise AssertionError(f"extension was never imported: {names}")
    end = names.index("extension")
    while end > 0 and lines[end - 1][0] > 0:  # extension's own imports end before it does
        end -= 1
    return set(names[:end])


def importtime_path(real: str, tmp_path: Path) -> str:
    """A PATH whose python3 runs `real` with -X importtime (the launcher's -I hides the
    variable, not the option)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "python3"
    wrapper.write_text(f'#!/bin/sh\nexec "{real}" -X importtime "$@"\n')
    wrapper.chmod(0o755)
    return f"{bin_dir}:/usr/bin:/bin"


@pytest.fixture(params=sorted(PYTHONS))
def python(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, frozenset[str]]:
    """(PATH whose python3 adds -X importtime, the bare interpreter's own imports)."""
    real = PYTHONS[request.param]
    bare = subprocess.run(
        [real, "-X", "importtime", "-I", "-S", "-c", "pass"],
        capture_output=True,
        text=True,
        check=True,
    )
    baseline = frozenset(name for _, name in imported(bare.stderr))
    assert "encodings" in baseline, bare.stderr  # -X importtime took effect
    return importtime_path(real, tmp_path), baseline


@pytest.mark.parametrize("registers", ["launcher", "python"])
def test_nothing_but_built_ins_before_register(
    *,
    extension_executable: Path,
    tmp_path: Path,
    moto: Moto,
    lambda_credentials: LambdaCredentials,
    python: tuple[str, frozenset[str]],
    registers: str,
) -> None:
    path, bare = python
    command = [str(extension_executable)]
    if registers == "python":  # what the launcher execs, but without its early register
        python3 = path.split(":")[0] + "/python3"
        main = launcher_program(extension_executable)
        command = [python3, "-I", "-S", "-c", main, str(extension_executable)]
    stderr = tmp_path / "stderr"
    with FakeExtensionsApi() as fake:
        at_register: list[str] = []
        fake.on_register = lambda: at_register.append(stderr.read_text())
        env = lambda_env(moto, lambda_credentials, free_port(), fake.address, PATH=path)
        with stderr.open("w") as err:
            proc = subprocess.Popen(command, env=env, stderr=err)
            try:
                assert fake.first_next.wait(30), stderr.read_text()
            finally:
                proc.kill()
                proc.wait(10)
    assert len(at_register) == 1
    registered = {name for _, name in imported(at_register[0])}
    # The launcher's register leaves before python3 starts, so the copy taken when it arrives
    # holds whatever Python did meanwhile: test_any_runtime orders the two under strace.
    if registers == "python":
        assert registered - bare == PRE_REGISTER
    # The same seen from the import order: nothing more between register and `extension`.
    assert before_extension(imported(stderr.read_text())) - bare == PRE_REGISTER


def test_nothing_but_built_ins_before_listening_standalone(
    extension_executable: Path,
    tmp_path: Path,
    moto: Moto,
    lambda_credentials: LambdaCredentials,
    python: tuple[str, frozenset[str]],
) -> None:
    """Without AWS_LAMBDA_RUNTIME_API boot listens, then imports `extension` to serve."""
    path, bare = python
    env = lambda_env(moto, lambda_credentials, free_port(), None, PATH=path)
    with ExtensionProcess(extension_executable, env, tmp_path / "out") as ext:
        ext.wait_listening()
        lines = imported(ext.output())
    assert before_extension(lines) - bare == PRE_REGISTER


@pytest.mark.parametrize("argument", ["--help", "--version"])
def test_help_and_version_import_nothing_more(
    extension_executable: Path, python: tuple[str, frozenset[str]], argument: str
) -> None:
    path, bare = python
    done = subprocess.run(
        [str(extension_executable), argument],
        env={"PATH": path},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert "parameters-secrets-extension" in done.stdout
    # --version names the OpenSSL in use: _ssl's own version string, and nothing of ssl.py.
    expected = PRE_REGISTER | ({"_ssl"} if argument == "--version" else set())
    assert {name for _, name in imported(done.stderr)} - bare == expected


@pytest.mark.parametrize("python", [CURRENT], indirect=True)
@pytest.mark.parametrize("needed", [False, True], ids=["plain", "emf-and-a-role"])
def test_what_only_a_later_request_needs_waits_for_it(
    *,
    extension_executable: Path,
    tmp_path: Path,
    moto: Moto,
    lambda_credentials: LambdaCredentials,
    python: tuple[str, frozenset[str]],
    needed: bool,
) -> None:
    path, _ = python
    extra = {"PATH": path}
    if needed:  # the control: a start that does need two of them loads them
        extra["PARAMETERS_SECRETS_EXTENSION_METRICS"] = "emf"
        extra["PARAMETERS_SECRETS_EXTENSION_PREFETCH"] = f"ssm:{moto.param_string}|{moto.role_arn}"
    stderr = tmp_path / "stderr"
    with FakeExtensionsApi() as fake:
        at_next: list[str] = []
        fake.on_first_next = lambda: at_next.append(stderr.read_text())
        env = lambda_env(moto, lambda_credentials, free_port(), fake.address, **extra)
        with stderr.open("w") as err:
            proc = subprocess.Popen(
                [str(extension_executable)], env=env, stdout=subprocess.DEVNULL, stderr=err
            )
            try:
                assert fake.first_next.wait(30), stderr.read_text()
            finally:
                proc.kill()
                proc.wait(10)
    loaded = {name for _, name in imported(at_next[0])}
    assert f"{PACKAGE}.local_api.server" in loaded  # the wiring's imports are all there
    # Reason phrases come from replies.py's table, not from the enum of every status that
    # importing `http` builds; answers are read by response_reader, never http.client.
    assert not {"http", "http.client"} & loaded
    expected = {f"{PACKAGE}.aws.role_arns", f"{PACKAGE}.emf_writer"} if needed else set()
    assert loaded & LATER == expected


# Costly modules the first answer to a miss does without (ms of CPU on Python 3.11 / 3.13):
# urllib.parse 2.5 / 3.0 with the ipaddress it imports (1.2 / 1.5), and datetime, which on
# 3.10 and 3.11 builds the whole pure-Python module (1.1 ms) before `_datetime` replaces it
# (3.12+ keep that one as _pydatetime). On one CPU each ms delays the function's first answer.
NOT_FOR_THE_FIRST_ANSWER = {"urllib.parse", "ipaddress", "datetime", "_pydatetime"}


def test_the_first_answer_to_a_miss_imports_no_url_or_date_library(
    extension_executable: Path,
    tmp_path: Path,
    moto: Moto,
    lambda_credentials: LambdaCredentials,
    python: tuple[str, frozenset[str]],
) -> None:
    """A secret read from AWS right after the first `next`: what is imported by the time
    its answer arrives (the warm-up's imports included) holds none of those modules."""
    path, _ = python
    with FakeExtensionsApi() as fake:
        env = lambda_env(moto, lambda_credentials, free_port(), fake.address, PATH=path)
        with ExtensionProcess(extension_executable, env, tmp_path / "out") as ext:
            assert fake.first_next.wait(30), ext.output()
            status, body = ext.get_json(f"/secretsmanager/get?secretId={moto.secret_name}")
            lines = imported(ext.output())
    assert status == 200, body
    assert body["VersionId"] == moto.secret_v2
    loaded = {name for _, name in lines}
    # The miss went through the AWS client: its modules were imported, and are listed.
    assert {"sigv4", f"{PACKAGE}.aws.transport", f"{PACKAGE}.aws.sdk_shapes"} <= loaded
    assert loaded & NOT_FOR_THE_FIRST_ANSWER == set()
