"""The layer built `--with-python` works on any runtime: it carries its own interpreter.

- A Node.js function (AWS's Node runtime client, no python3 anywhere on PATH) reads a secret
  at init and on every invoke through the extension, which reaches moto over TLS and trusts
  the test CA only because the CA is where the system keeps its bundle.
- The arm64 layer runs under qemu-user-static: start, register, a TLS miss, a hit, SHUTDOWN.
- Both binaries load on Amazon Linux 2 and 2023: glibc 2.17 symbols at most, no DT_RELR,
  nothing but the glibc family needed.
- The interpreter opens nothing outside the layer but the system's loader, glibc, name
  service and CA files, even with PYTHONPATH, PYTHONHOME and LD_LIBRARY_PATH set.
- Two builds of the same pinned sources give byte-identical layer zips.

The layers come from this checkout's `python build_layer.py --arch <arch> --with-python`
(its interpreter cached by build_layer.py). The tools are Debian packages that .ci/run
installs: nodejs and npm, qemu-user-static, libc6-arm64-cross, binutils, strace, gcc and
util-linux's unshare (user and mount namespaces). Without one, its tests skip, except under
CI=true, where they fail.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

import build_layer
import parameters_secrets_extension.aws.trust_store
from bench import bench_sandbox, node_sandbox, with_python
from bundled_python import build, launch
from parameters_secrets_extension.lambda_api.lifecycle import http_port
from tests import elf_facts
from tests.conftest import SECRET_STRING_V2, LambdaCredentials, Moto, free_port
from tests.extension_process import ExtensionProcess
from tests.fake_extensions_api import FakeExtensionsApi
from tests.fault_proxy import FaultProxy
from tests.hardening_support import secret_path
from tests.host_tools import missing, require, require_namespaces
from tests.tls_certs import Pki, make_pki

ROOT = Path(__file__).resolve().parent.parent
# The hashed CA directories the extension lists (are they hashed?), then looks CAs up in.
CA_DIRECTORIES = parameters_secrets_extension.aws.trust_store.CA_DIRECTORIES
LOADER = {"x86_64": "/lib64/ld-linux-x86-64.so.2", "arm64": "/lib/ld-linux-aarch64.so.1"}
MACHINE = {"x86_64": "Advanced Micro Devices X86-64", "arm64": "AArch64"}
OLDEST_GLIBC = (2, 17)  # Amazon Linux 2 has 2.26; 2.17 is the floor the build promises
QEMU_START = 120  # seconds: an emulated interpreter starts many times slower


def require_arm64_emulation() -> None:
    require("qemu-aarch64-static", "qemu-user-static")
    if not Path(node_sandbox.AARCH64_SYSROOT, "lib", "ld-linux-aarch64.so.1").is_file():
        missing(f"no aarch64 glibc at {node_sandbox.AARCH64_SYSROOT} (libc6-arm64-cross)")
    require_namespaces()


class Layer(NamedTuple):
    zip: Path
    opt: Path  # unpacked as Lambda unpacks it at /opt
    executable: Path  # opt/extensions/parameters-secrets-extension

    @property
    def interpreter(self) -> Path:
        return with_python.interpreter(self.opt)


@pytest.fixture(scope="session")
def layers(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Layer]:
    """The with-python layer of an architecture, built on first use."""
    built: dict[str, Layer] = {}

    def get(arch: str) -> Layer:
        if arch not in built:
            out = tmp_path_factory.mktemp(f"with-python-{arch}")
            layer_zip = with_python.build(arch, out / f"layer-{arch}.zip")
            executable = with_python.unpack(layer_zip, out / "opt")
            built[arch] = Layer(layer_zip, out / "opt", executable)
        return built[arch]

    return get


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), "lambda")


@pytest.fixture(scope="module")
def tls_moto(moto: Moto, pki: Pki) -> Iterator[FaultProxy]:
    """Moto (signatures checked) behind TLS, with a certificate of the test CA."""
    with FaultProxy(moto.host, moto.port, ssl_context=pki.server_context()) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def no_python_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = node_sandbox.path_without_python(tmp_path_factory.mktemp("no-python") / "bin")
    assert shutil.which("python3", path=path) is None
    assert shutil.which("sh", path=path) is not None  # the rest of the system is there
    return path


class Function(NamedTuple):
    """A function's side of the tests: its environment, and moto over TLS behind it."""

    env: dict[str, str]  # no SSL_CERT_FILE, SSL_CERT_DIR nor AWS_CA_BUNDLE; no python3 on PATH
    upstream: FaultProxy  # counts the requests that reached moto
    ca_file: Path  # the test CA's certificate, for the system bundle's place
    secret_name: str  # in moto; its value is SECRET_STRING_V2


@pytest.fixture(scope="module")
def function(
    moto: Moto,
    lambda_credentials: LambdaCredentials,
    tls_moto: FaultProxy,
    pki: Pki,
    no_python_path: str,
) -> Function:
    env = {
        "PATH": no_python_path,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": lambda_credentials.access_key,
        "AWS_SECRET_ACCESS_KEY": lambda_credentials.secret_key,
        "AWS_SESSION_TOKEN": lambda_credentials.session_token,
        "AWS_ENDPOINT_URL": f"https://127.0.0.1:{tls_moto.port}",
    }
    return Function(env, tls_moto, pki.ca_file, moto.secret_name)


# --- a Node.js function ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def node_context(
    layers: Callable[[str], Layer],
    moto: Moto,
    function: Function,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[node_sandbox.NodeContext]:
    require("node", "nodejs")
    require("npm", "npm")
    require_namespaces()
    node = node_sandbox.node()
    assert node is not None
    context = node_sandbox.NodeContext(
        extension=layers("x86_64").executable,  # tests wrap it with isolated()
        node=node,
        runtime_client=node_sandbox.runtime_client(),
        env=function.env,
        tmp=tmp_path_factory.mktemp("node"),
        zero_cost_port=0,  # no zero-cost variant here
    )
    # The sandbox's secret, as test_sandbox.py makes it (and leaves it): made here only if
    # absent, and then removed again, so that either module may run first.
    sm: Any = moto.boto3_client("secretsmanager")
    made = False
    with contextlib.suppress(sm.exceptions.ResourceExistsException):
        sm.create_secret(Name=bench_sandbox.SECRET_ID, SecretString=bench_sandbox.SECRET_VALUE)
        made = True
    try:
        yield context
    finally:
        if made:
            sm.delete_secret(SecretId=bench_sandbox.SECRET_ID, ForceDeleteWithoutRecovery=True)


def _with_extension(ctx: node_sandbox.NodeContext, wrapper: Path) -> node_sandbox.NodeContext:
    return node_sandbox.NodeContext(
        extension=wrapper,
        node=ctx.node,
        runtime_client=ctx.runtime_client,
        env=ctx.env,
        tmp=ctx.tmp,
        zero_cost_port=ctx.zero_cost_port,
    )


def test_a_node_function_reads_at_init_and_on_every_invoke(
    node_context: node_sandbox.NodeContext, function: Function, tmp_path: Path
) -> None:
    # The test CA is the system's CA bundle, in the extension's own mount namespace.
    wrapper = node_sandbox.isolated(
        node_context.extension, tmp_path / "extension", ca_bundle=function.ca_file
    )
    before = function.upstream.requests_received
    result = node_sandbox.cold_start("ext-init", _with_extension(node_context, wrapper), warm=2)
    secret = bench_sandbox.SECRET_VALUE
    assert result.answers == [{"value": secret, "init": secret}] * 3
    assert result.register is not None and result.ext_next is not None
    assert 0 < result.register <= result.ext_next <= result.init <= result.first_answer
    assert result.exit_codes == [0]  # SHUTDOWN: the extension exits 0 on its own
    # The init read was the one miss, signed and over TLS; every invoke's read was a hit.
    assert function.upstream.requests_received - before == 1
    # The system's hashed CA directory, looked in first, lacks the test CA: the extension
    # then loaded the system's bundle, found by itself (the launcher names none), once.
    log = (node_context.tmp / "node-ext-init.log").read_text(errors="replace")
    fallbacks = [line for line in log.splitlines() if "not verified with the CA directory" in line]
    hashed = any(map(parameters_secrets_extension.aws.trust_store.holds_hash_links, CA_DIRECTORIES))
    assert len(fallbacks) == hashed, log


def test_without_the_ca_in_the_system_bundle_the_tls_miss_fails(
    node_context: node_sandbox.NodeContext, function: Function, tmp_path: Path
) -> None:
    # The same sandbox with the system's own CA bundle: the test CA is nowhere, so the trust
    # in the test above came from the system bundle and from nothing else.
    wrapper = node_sandbox.isolated(node_context.extension, tmp_path / "extension")
    before = function.upstream.requests_received
    with pytest.raises(RuntimeError, match="init/error"):
        node_sandbox.cold_start("ext-init", _with_extension(node_context, wrapper))
    assert function.upstream.requests_received == before
    log = (node_context.tmp / "node-ext-init.log").read_text(errors="replace")
    assert "not trusted" in log


# --- arm64 under qemu -----------------------------------------------------------------------


def test_the_arm64_layer_serves_under_qemu(
    layers: Callable[[str], Layer], function: Function, tmp_path: Path
) -> None:
    require_arm64_emulation()
    layer = layers("arm64")
    assert elf_facts.machine(layer.interpreter) == MACHINE["arm64"]
    wrapper = node_sandbox.isolated(
        layer.executable, tmp_path / "extension", ca_bundle=function.ca_file, aarch64=True
    )
    fake = FakeExtensionsApi()
    env = {
        **function.env,
        "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(free_port()),
        "AWS_LAMBDA_RUNTIME_API": fake.address,
    }
    before = function.upstream.requests_received
    with fake, ExtensionProcess(wrapper, env, tmp_path / "extension.log") as ext:
        assert fake.first_next.wait(QEMU_START), ext.output()
        assert len(fake.calls.registrations) == 1
        path = secret_path(function.secret_name)
        for _ in range(2):  # a miss over TLS, then a hit
            status, body = ext.get_json(path)
            assert (status, body.get("SecretString")) == (200, SECRET_STRING_V2), ext.output()
            assert function.upstream.requests_received - before == 1
        fake.shutdown_extension()
        assert ext.proc.wait(60) == 0, ext.output()


@pytest.mark.parametrize("arch", with_python.ARCHES)
def test_version_names_the_pinned_python_and_openssl(
    layers: Callable[[str], Layer], arch: str, tmp_path: Path
) -> None:
    layer = layers(arch)
    command = layer.executable
    if arch != "x86_64":
        require_arm64_emulation()
        command = node_sandbox.isolated(command, tmp_path / "extension", aarch64=True)
    done = subprocess.run(
        [str(command), "--version"], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    from bundled_python import pins

    # The pinned releases, and the interpreter is the layer's own.
    python = re.search(rf"^Python {re.escape(pins.CPYTHON.version)} \((.*)\)$", done.stdout, re.M)
    assert python is not None, done.stdout
    assert Path(python.group(1)).resolve() == layer.interpreter.resolve()
    assert re.search(rf"^OpenSSL {re.escape(pins.OPENSSL.version)} ", done.stdout, re.M)


# --- loadability ----------------------------------------------------------------------------


def _loadability_problems(path: Path) -> list[str]:
    problems = []
    versions = elf_facts.glibc_requirements(path)
    named = sorted(v for v in versions if not re.fullmatch(r"[0-9.]+", v))
    if named:
        problems.append(f"needs GLIBC_{', GLIBC_'.join(named)}")
    numeric = [elf_facts.version_tuple(v) for v in versions if re.fullmatch(r"[0-9.]+", v)]
    if max(numeric, default=(0,)) > OLDEST_GLIBC:
        problems.append(f"needs GLIBC_{'.'.join(map(str, max(numeric)))}")
    if any(tag.startswith("RELR") for tag, _ in elf_facts.dynamic_tags(path)):
        problems.append("has DT_RELR (glibc < 2.36 cannot load it)")
    others = [lib for lib in elf_facts.needed(path) if not elf_facts.GLIBC_FAMILY.fullmatch(lib)]
    if others:
        problems.append(f"needs {', '.join(others)}")
    return problems


@pytest.mark.parametrize("arch", with_python.ARCHES)
def test_the_interpreter_loads_on_amazon_linux_2_and_2023(
    layers: Callable[[str], Layer], arch: str
) -> None:
    require("readelf", "binutils")
    layer = layers(arch)
    (binary,) = with_python.elf_files(layer.opt)  # one native file: everything is built in
    assert elf_facts.machine(binary) == MACHINE[arch]
    assert elf_facts.program_interpreter(binary) == LOADER[arch]
    assert elf_facts.glibc_requirements(binary)  # dynamic glibc: NSS and getaddrinfo work
    assert _loadability_problems(binary) == []


def test_the_loadability_checks_see_what_they_look_for(tmp_path: Path) -> None:
    # A binary built the way today's toolchains do: packed relocations, a C++ library and
    # the build machine's glibc. Every check must object.
    require("readelf", "binutils")
    gcc = require("gcc", "gcc")
    source = tmp_path / "r.c"
    source.write_text("int x; int *p = &x;\nint main(void) { return *p; }\n")
    binary = tmp_path / "r"
    flags = ["-pie", "-fPIE", "-Wl,-z,pack-relative-relocs", "-Wl,--no-as-needed"]
    subprocess.run([gcc, *flags, str(source), "-o", str(binary), "-lstdc++"], check=True)
    problems = " | ".join(_loadability_problems(binary))
    assert "DT_RELR" in problems
    assert "libstdc++.so.6" in problems
    assert re.search(r"needs GLIBC_2\.(1[89]|[2-9]\d)", problems), problems


# --- isolation ------------------------------------------------------------------------------

# What the process may open outside the layer: the dynamic loader's cache, glibc and its
# name-service modules, name resolution and time zone files, the CA bundle, the kernel's
# files. Nothing that Python imports or OpenSSL configures itself from.
SYSTEM_FILES = re.compile(
    r"/etc/ld\.so\.cache"
    r"|/(usr/)?lib(64)?/([\w-]+/)?(" + elf_facts.GLIBC_FAMILY.pattern + r"|libnss_\w+\.so\.\d+"
    r"|libresolv\.so\.\d+)"
    r"|/etc/(nsswitch\.conf|hosts|host\.conf|resolv\.conf|gai\.conf|services|localtime)"
    r"|/usr/share/zoneinfo/.*"
    r"|/usr/lib/locale/.*|/usr/share/locale/locale\.alias|/usr/lib/([\w-]+/)?gconv/.*"  # glibc's
    r"|"
    + "|".join(re.escape(path) for path in node_sandbox.SYSTEM_CA_BUNDLES)
    + r"|/etc/(ssl|pki/tls)/certs/[0-9a-f]{8}\.\d+"  # OpenSSL's hashed lookup in a CA directory
    + "|"  # the hashed CA directories: listed by the extension (is it hashed?), looked up in
    + "|".join(rf"{re.escape(path)}(/[0-9a-f]{{8}}\.\d+)?" for path in CA_DIRECTORIES)
    + r"|/(proc|dev|sys)/.*"
)
_TRACED = re.compile(r'^\d+ +(execve|open|openat|openat2)\((?:AT_FDCWD, )?"([^"]*)"', re.MULTILINE)


def _poisoned(directory: Path) -> dict[str, str]:
    """A function that sets PYTHONPATH, PYTHONHOME and LD_LIBRARY_PATH to its own code."""
    for module in ("sitecustomize", "usercustomize", "json", "ssl", "socket", "http", "os"):
        (directory / f"{module}.py").write_text("raise ImportError('the function shadowed me')\n")
    stdlib = directory / "lib" / "python3.13"
    stdlib.mkdir(parents=True)
    (stdlib / "os.py").write_text("raise ImportError('PYTHONHOME was used')\n")
    (directory / "lib" / "python313.zip").write_bytes(b"not a zip")
    for library in ("libm.so.6", "libz.so.1", "libssl.so.3", "libcrypto.so.3", "libffi.so.8"):
        (directory / library).write_bytes(b"not a library")
    return {
        "PYTHONPATH": str(directory),
        "PYTHONHOME": str(directory),
        "PYTHONUSERBASE": str(directory),
        "PYTHONSTARTUP": str(directory / "os.py"),
        "LD_LIBRARY_PATH": f"{directory}:{directory / 'lib'}",
    }


def _traced_lifecycle(executable: Path, function: Function, tmp_path: Path) -> list[str]:
    """Register, a TLS miss, a hit and SHUTDOWN under strace -f; every path the extension's
    processes executed or opened (successfully), in order, normalised."""
    strace = require("strace", "strace")
    trace = tmp_path / "strace.txt"
    traced = tmp_path / "traced"
    traced.write_text(
        "#!/bin/sh\n"
        f"exec {strace} -f -qq -e trace=execve,open,openat,openat2 -e status=successful "
        f'-o {trace} {executable} "$@"\n'
    )
    traced.chmod(0o755)
    wrapper = node_sandbox.isolated(traced, tmp_path / "extension", ca_bundle=function.ca_file)
    fake = FakeExtensionsApi()
    env = {
        **function.env,
        "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(free_port()),
        "AWS_LAMBDA_RUNTIME_API": fake.address,
    }
    with fake, ExtensionProcess(wrapper, env, tmp_path / "extension.log") as ext:
        assert fake.first_next.wait(60), ext.output()
        for _ in range(2):
            status, body = ext.get_json(secret_path(function.secret_name))
            assert (status, body.get("SecretString")) == (200, SECRET_STRING_V2), ext.output()
        fake.shutdown_extension()
        assert ext.proc.wait(30) == 0, ext.output()
    # Normalised: the launcher runs `<dir>/../parameters-secrets-extension/bin/python3`, and
    # a path that climbs out of the layer with `..` must not pass for one inside it.
    return [os.path.normpath(path) for _, path in _TRACED.findall(trace.read_text())]


def _outside(paths: list[str], layer: Path, allowed_executables: set[str]) -> list[str]:
    """The paths neither inside `layer` nor system files the process may use."""
    found = []
    for path in paths:
        if Path(path).is_relative_to(layer) or SYSTEM_FILES.fullmatch(path):
            continue
        if os.path.realpath(path) in allowed_executables:
            continue
        found.append(path)
    return found


def test_the_bundled_interpreter_opens_nothing_outside_the_layer(
    layers: Callable[[str], Layer], function: Function, tmp_path: Path
) -> None:
    require_namespaces()
    layer = layers("x86_64")
    task = tmp_path / "task"
    task.mkdir()
    poisoned = function._replace(env={**function.env, **_poisoned(task)})
    paths = _traced_lifecycle(layer.executable, poisoned, tmp_path)
    assert str(layer.interpreter) in paths  # it ran, from the layer
    # Nor does its launcher run any command: its interpreter blocks the stop signals itself.
    assert _outside(paths, layer.opt, set()) == []


def test_the_trace_sees_an_interpreter_outside_the_layer(
    extension_executable: Path, function: Function, tmp_path: Path
) -> None:
    # The small layer runs the python3 on PATH, whose standard library lies outside the
    # layer: the same check must name those files.
    require_namespaces()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python = Path(sys.executable).resolve()
    (bin_dir / "python3").symlink_to(python)
    with_python3 = function._replace(env={**function.env, "PATH": f"{bin_dir}:/usr/bin:/bin"})
    paths = _traced_lifecycle(extension_executable, with_python3, tmp_path)
    outside = _outside(paths, extension_executable.parent.parent, set())
    assert str(python) in {os.path.realpath(path) for path in outside}
    assert any(path.endswith((".py", ".pyc")) for path in outside), outside


# --- stop signals, blocked without env ------------------------------------------------------

# Prints the signals blocked when Python starts, then whether the launcher's variable is in
# the environment Python read.
_MASK_AT_START = f"""\
import _signal, posix
print(*map(int, _signal.pthread_sigmask(_signal.SIG_BLOCK, ())))
print({launch.BLOCK_STOP_SIGNALS.encode()!r} in posix.environ)
"""
STOP = {int(signal.SIGTERM), int(signal.SIGINT)}


def test_asked_so_the_interpreter_starts_with_the_stop_signals_blocked(
    layers: Callable[[str], Layer],
) -> None:
    python = layers("x86_64").interpreter

    def start(env: dict[str, str]) -> tuple[set[int], str]:
        done = subprocess.run(
            [str(python), "-I", "-S", "-c", _MASK_AT_START],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        mask, variable_seen = done.stdout.splitlines()
        return {int(number) for number in mask.split()}, variable_seen

    asked, seen = start({launch.BLOCK_STOP_SIGNALS: "1"})
    assert asked >= STOP  # blocked before Python ran anything
    assert seen == "False"  # and the variable gone before Python read its environment
    unasked, _ = start({})
    assert not unasked & STOP  # only when asked: any other use of it is a plain python3


def test_the_launcher_execs_the_interpreter_itself_which_blocks_the_signals_first(
    layers: Callable[[str], Layer], tmp_path: Path
) -> None:
    # With GNU env on PATH, as on Amazon Linux 2023: the layer's launcher still neither
    # probes it nor execs through it.
    strace = require("strace", "strace")
    layer = layers("x86_64")
    trace = tmp_path / "trace"
    command = [strace, "-f", "-qq", "-e", "trace=execve,rt_sigprocmask,rt_sigaction"]
    subprocess.run(
        [*command, "-o", str(trace), str(layer.executable), "--version"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        check=True,
    )
    lines = trace.read_text().splitlines()
    execs = [(n, m[1]) for n, line in enumerate(lines) if (m := _EXECVE.search(line))]
    programs = [os.path.realpath(program) for _, program in execs]
    assert programs == [str(layer.executable), str(layer.interpreter)], lines
    # The interpreter's first word on SIGINT or SIGTERM blocks both: before its own
    # SIGINT handler, before any Python code ran.
    after = [line for line in lines[execs[-1][0] + 1 :] if _STOP_NAMED.search(line)]
    assert after and _BLOCKS_STOP.search(after[0]), after[:3]


def test_the_small_layers_launcher_blocks_the_signals_then_execs_python3(
    extension_executable: Path, tmp_path: Path
) -> None:
    # Its first word on SIGINT or SIGTERM blocks both, and the mask survives its one exec:
    # PATH's python3, with nothing between them.
    strace = require("strace", "strace")
    trace = tmp_path / "trace"
    command = [strace, "-f", "-qq", "-e", "trace=execve,rt_sigprocmask,rt_sigaction"]
    subprocess.run(
        [*command, "-o", str(trace), str(extension_executable), "--version"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        check=True,
    )
    lines = trace.read_text().splitlines()
    execs = [(n, m[1]) for n, line in enumerate(lines) if (m := _EXECVE.search(line))]
    assert [program for _, program in execs] == [str(extension_executable), "/usr/bin/python3"]
    before = [line for line in lines[: execs[-1][0]] if _STOP_NAMED.search(line)]
    assert before and _BLOCKS_STOP.search(before[0]), before[:3]


_EXECVE = re.compile(r'execve\("([^"]+)".* = 0$')
_STOP_NAMED = re.compile(r"rt_sig(procmask|action)\(.*\b(SIG)?(INT|TERM)\b")
_BLOCKS_STOP = re.compile(r"rt_sigprocmask\(SIG_BLOCK, \[INT TERM\]")


# --- registering before Python starts --------------------------------------------------------

PORT_VARIABLE = "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"
_SENDS_REGISTER = re.compile(r'^\d+ +(sendto|write)\(\d+, "POST /2020-01-01/extension/register ')
_IMPORT_TIME = re.compile(r'^\d+ +write\(2, "import time:')
_LOGGED_PROBLEM = re.compile(r"\[[\w-]+\] (WARN|ERROR) ")


class Lifecycle(NamedTuple):
    """What Lambda and the function's log saw of one start: everything but timings."""

    registrations: list[bytes]  # each request as sent, the fake's port as <port>
    init_errors: list[tuple[str, object]]  # (error type header, body)
    served: bool  # the first `next` arrived
    exit_code: int
    problems: list[str]  # the log's WARN and ERROR lines


def _lifecycle(executable: Path, settings: Callable[[str], dict[str, str]], log: Path) -> Lifecycle:
    """Start the extension with `settings(the fake Extensions API's host:port)` as its
    environment, SHUTDOWN it once its first `next` has arrived; what happened."""
    with (
        FakeExtensionsApi() as fake,
        ExtensionProcess(executable, settings(fake.address), log) as ext,
    ):
        while ext.proc.poll() is None and not fake.first_next.wait(0.05):
            pass
        if fake.first_next.is_set():
            fake.shutdown_extension()
        code = ext.proc.wait(30)
        output = ext.output()
    port = fake.address.rpartition(":")[2].encode()
    return Lifecycle(
        [call.request.replace(port, b"<port>") for call in fake.calls.registrations],
        [
            (call.headers["lambda-extension-function-error-type"], call.body)
            for call in fake.calls.init_errors
        ],
        fake.first_next.is_set(),
        code,
        [line for line in output.splitlines() if _LOGGED_PROBLEM.match(line)],
    )


@pytest.fixture
def lambda_settings(moto: Moto, lambda_credentials: LambdaCredentials) -> dict[str, str]:
    """Lambda's environment but for AWS_LAMBDA_RUNTIME_API; python3 3.10+ on PATH."""
    return {
        "PATH": "/usr/bin:/bin",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": lambda_credentials.access_key,
        "AWS_SECRET_ACCESS_KEY": lambda_credentials.secret_key,
        "AWS_SESSION_TOKEN": lambda_credentials.session_token,
        "AWS_ENDPOINT_URL": moto.endpoint,
        PORT_VARIABLE: str(free_port()),
    }


# Both layers register before Python starts: the small one from its native launcher
# (native_launcher/main.c), the other from its interpreter's main(). Python alone (the
# zipapp run by python3, no launcher) is the reference every early start is compared with.
KINDS = ("small", "bundled")


def _executable(kind: str, layers: Callable[[str], Layer], small: Path) -> Path:
    return small if kind == "small" else layers("x86_64").executable


def _python_alone(executable: Path, directory: Path) -> Path:
    """A script named as `executable` that runs it with PATH's python3 and no launcher:
    Python listens and registers itself."""
    wrapper = directory / executable.name
    wrapper.parent.mkdir(parents=True)
    wrapper.write_text(f'#!/bin/sh\nexec python3 -I -S "{executable}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


@pytest.mark.parametrize("kind", KINDS)
def test_the_layer_registers_before_python_imports_anything(
    layers: Callable[[str], Layer],
    extension_executable: Path,
    lambda_settings: dict[str, str],
    tmp_path: Path,
    kind: str,
) -> None:
    # The layer as Lambda unpacks it, its python3 a wrapper adding -X importtime (the
    # launcher's -I hides PYTHONPROFILEIMPORTTIME): Python writes a line as each import ends.
    # The small layer's is PATH's python3; the other layer's its own.
    strace = require("strace", "strace")
    source = _executable(kind, layers, extension_executable)
    executable = tmp_path / "opt" / "extensions" / source.name
    executable.parent.mkdir(parents=True)
    shutil.copy2(source, executable)
    settings = dict(lambda_settings)
    if kind == "small":
        python = tmp_path / "bin" / "python3"
        real = shutil.which("python3", path=settings["PATH"])
        settings["PATH"] = f"{python.parent}:{settings['PATH']}"
    else:
        python = tmp_path / "opt" / build_layer.BUNDLED_PYTHON
        real = str(layers("x86_64").interpreter)
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\nexec "{real}" -X importtime "$@"\n')
    python.chmod(0o755)
    # Lambda's name for it, the file name, is what registers: the trace wraps it in a
    # directory of its own. -s: enough of each write to tell `register` from an import.
    trace = tmp_path / "trace"
    traced = tmp_path / "traced" / source.name
    traced.parent.mkdir()
    traced.write_text(
        f"#!/bin/sh\nexec {strace} -f -qq -s 64 -e trace=sendto,write -o {trace} "
        f'"{executable}" "$@"\n'
    )
    traced.chmod(0o755)
    seen = _lifecycle(
        traced,
        lambda api: {**settings, "AWS_LAMBDA_RUNTIME_API": api},
        tmp_path / "extension.log",
    )
    assert seen.served and seen.exit_code == 0, (tmp_path / "extension.log").read_text()
    lines = trace.read_text().splitlines()
    register = [n for n, line in enumerate(lines) if _SENDS_REGISTER.match(line)]
    imports = [n for n, line in enumerate(lines) if _IMPORT_TIME.match(line)]
    assert imports, lines[:20]  # -X importtime took effect
    # Sent once, before Python's first import ended.
    assert len(register) == 1 and register[0] < imports[0], lines[: imports[0] + 3]


@pytest.mark.parametrize("snapstart", [False, True], ids=["on-demand", "snap-start"])
def test_each_early_register_is_pythons_byte_for_byte(
    layers: Callable[[str], Layer],
    extension_executable: Path,
    lambda_settings: dict[str, str],
    tmp_path: Path,
    snapstart: bool,
) -> None:
    # The same settings under Python alone (Python registers), the small layer (its launcher
    # registers) and the layer built --with-python (its interpreter's main() registers): the
    # same request, to the byte, and the same start.
    extra = {"AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start"} if snapstart else {}

    def settings(api: str) -> dict[str, str]:
        return {**lambda_settings, **extra, "AWS_LAMBDA_RUNTIME_API": api}

    alone = _python_alone(extension_executable, tmp_path / "alone")
    python = _lifecycle(alone, settings, tmp_path / "python.log")
    assert python.served and python.exit_code == 0 and python.init_errors == []
    events = b'["INVOKE", "SHUTDOWN"]' if snapstart else b'["SHUTDOWN"]'
    assert len(python.registrations) == 1 and python.registrations[0].endswith(events + b"}")
    for kind in KINDS:
        executable = _executable(kind, layers, extension_executable)
        assert _lifecycle(executable, settings, tmp_path / f"{kind}.log") == python, kind


# Settings that register_early.c leaves to Python, each a change to Lambda's environment
# given the fake's host:port and a port no one listens on: each layer's start must then go
# exactly as Python alone's, down to the report to init/error and the warnings.
FALLBACKS: dict[str, Callable[[dict[str, str], str, int], dict[str, str]]] = {
    "port taken": lambda env, api, closed: env,  # the test holds the port (below)
    "runtime API a host name": lambda env, api, closed: {
        **env,
        "AWS_LAMBDA_RUNTIME_API": api.replace("127.0.0.1", "localhost"),
    },
    "runtime API unreachable": lambda env, api, closed: {
        **env,
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{closed}",
    },
    "port with blanks": lambda env, api, closed: {**env, PORT_VARIABLE: f" {env[PORT_VARIABLE]} "},
    "port of six digits": lambda env, api, closed: {
        **env,
        PORT_VARIABLE: f"{int(env[PORT_VARIABLE]):06d}",
    },
    "port not a number": lambda env, api, closed: {**env, PORT_VARIABLE: "http"},
    "name not printable": lambda env, api, closed: env,  # the executable's name (below)
}


@pytest.mark.parametrize("case", FALLBACKS)
def test_what_the_early_register_leaves_to_python_goes_as_in_python_alone(
    layers: Callable[[str], Layer],
    extension_executable: Path,
    lambda_settings: dict[str, str],
    tmp_path: Path,
    case: str,
) -> None:
    executables = {kind: _executable(kind, layers, extension_executable) for kind in KINDS}
    if case == "name not printable":  # Lambda's name for the extension holds a tab
        executables = {
            kind: _renamed(executable, tmp_path / kind, "parameters\tsecrets")
            for kind, executable in executables.items()
        }
    executables["python"] = _python_alone(executables["small"], tmp_path / "alone")
    closed = free_port()

    def settings(api: str) -> dict[str, str]:
        env = {**lambda_settings, "AWS_LAMBDA_RUNTIME_API": api}
        return FALLBACKS[case](env, api, closed)

    with contextlib.ExitStack() as stack:
        if case == "port taken":
            taken = stack.enter_context(socket.socket())
            taken.bind(("127.0.0.1", int(lambda_settings[PORT_VARIABLE])))
            taken.listen()
        seen = {
            kind: _lifecycle(executable, settings, tmp_path / f"{kind}.log")
            for kind, executable in executables.items()
        }
    python = seen["python"]
    assert seen["small"] == python and seen["bundled"] == python
    # And each case went through the Python rule or report it is named for.
    if case == "port taken":
        assert [error for error, _ in python.init_errors] == ["Extension.PortUnavailable"]
    elif case == "port not a number":  # a WARN naming it; served on the default port if free
        assert any(PORT_VARIABLE in line and "WARN" in line for line in python.problems)
    elif case in ("runtime API unreachable", "name not printable"):
        assert python.exit_code == 1 and python.problems and not python.served
    else:
        assert python.served and python.exit_code == 0 and not python.problems


def _renamed(executable: Path, opt: Path, name: str) -> Path:
    """The layer's executable under another file name, in a copy of its layer at `opt`."""
    renamed = opt / "extensions" / name
    renamed.parent.mkdir(parents=True)
    shutil.copy2(executable, renamed)
    interpreter = executable.parent.parent / build_layer.BUNDLED_DIR
    if interpreter.is_dir():  # the layer built --with-python: its interpreter beside it
        (opt / build_layer.BUNDLED_DIR).symlink_to(interpreter)
    return renamed


# main()'s port rule, on values a function may set: register_early.c's early_port, compiled
# with the system's cc, prints the port it reads from each argument (0: left to Python).
_PORT_RULE = """
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) printf("%d\\n", early_port(argv[i]));
    return 0;
}
"""
PORT_VALUES = (
    "1", "80", "080", "00080", "2773", "65535",  # read by both
    "", "0", "00000", "000080", "65536", "99999", "123456", "+80", "-1", " 80", "80 ",
    "8 0", "0x50", "1e3", "80.5", "\u0663", "80\n",
)  # fmt: skip


def test_the_interpreters_port_rule_reads_only_what_python_reads_the_same_way(
    tmp_path: Path,
) -> None:
    gcc = require("gcc", "gcc")
    source = tmp_path / "port.c"
    source.write_text("#define _GNU_SOURCE\n" + build.register_early_source() + _PORT_RULE)
    binary = tmp_path / "port"
    subprocess.run(
        [gcc, "-Wall", "-Wno-unused-function", "-Werror", str(source), "-o", str(binary)],
        check=True,
    )
    done = subprocess.run(
        [str(binary), *PORT_VALUES], capture_output=True, text=True, check=True, timeout=30
    )
    read = dict(zip(PORT_VALUES, map(int, done.stdout.split()), strict=True))
    for value, port in read.items():
        assert port == 0 or port == http_port(value), value  # 0: Python's rule applies
    assert [value for value, port in read.items() if port] == list(PORT_VALUES[:6])


@pytest.mark.parametrize("kind", KINDS)
def test_a_stop_signal_while_registering_early_ends_the_extension_with_0(
    layers: Callable[[str], Layer],
    extension_executable: Path,
    lambda_settings: dict[str, str],
    tmp_path: Path,
    kind: str,
) -> None:
    # SIGTERM arrives while Lambda holds the answer to the register request sent before
    # Python started: it waits, blocked, for the extension's boot, which exits 0 as on any stop.
    fake = FakeExtensionsApi()
    started: list[ExtensionProcess] = []
    popened = threading.Event()

    def stop() -> None:  # in the fake's thread, which may see `register` before Popen returns
        assert popened.wait(30)
        started[0].proc.send_signal(signal.SIGTERM)

    fake.on_register = stop  # set before the start: the request leaves within milliseconds
    env = {**lambda_settings, "AWS_LAMBDA_RUNTIME_API": fake.address}
    executable = _executable(kind, layers, extension_executable)
    with fake, ExtensionProcess(executable, env, tmp_path / "ext.log") as ext:
        started.append(ext)
        popened.set()
        assert ext.proc.wait(30) == 0, ext.output()
        assert len(fake.calls.registrations) == 1 and fake.calls.init_errors == []


@pytest.mark.parametrize("kind", KINDS)
def test_with_arguments_or_without_lambda_the_layer_registers_nothing(
    layers: Callable[[str], Layer],
    extension_executable: Path,
    lambda_settings: dict[str, str],
    tmp_path: Path,
    kind: str,
) -> None:
    executable = _executable(kind, layers, extension_executable)
    with FakeExtensionsApi() as fake:
        env = {**lambda_settings, "AWS_LAMBDA_RUNTIME_API": fake.address}
        for argument in ("--version", "--help"):  # the launcher asks only without arguments
            done = subprocess.run(
                [str(executable), argument], env=env, capture_output=True, timeout=60, check=False
            )
            assert done.returncode == 0 and done.stdout, done.stderr
        assert fake.calls.registrations == []
    # Standalone (no AWS_LAMBDA_RUNTIME_API): Python listens, serves, and stops on SIGTERM.
    with ExtensionProcess(executable, lambda_settings, tmp_path / "standalone.log") as ext:
        ext.wait_listening()
        ext.proc.send_signal(signal.SIGTERM)
        assert ext.proc.wait(30) == 0, ext.output()


@pytest.mark.parametrize("alone", [True, False], ids=["python alone", "small layer"])
def test_a_function_cannot_hand_the_extension_sockets(
    extension_executable: Path, lambda_settings: dict[str, str], tmp_path: Path, alone: bool
) -> None:
    # The hand-over variable set by a function: Python alone ignores descriptors that are not
    # sockets, and the launcher removes the variable before it sets its own. Either way the
    # extension registers once and serves.
    from parameters_secrets_extension.lambda_api import boot

    executable = extension_executable
    if alone:
        executable = _python_alone(extension_executable, tmp_path / "alone")
    for value in ("0 1", "1 2 9999", "x"):

        def settings(api: str, value: str = value) -> dict[str, str]:
            return {**lambda_settings, "AWS_LAMBDA_RUNTIME_API": api, boot.EARLY_SOCKETS: value}

        seen = _lifecycle(executable, settings, tmp_path / "extension.log")
        assert seen.served and seen.exit_code == 0 and len(seen.registrations) == 1, value


# --- reproducible ---------------------------------------------------------------------------


def test_two_builds_of_the_pinned_sources_are_byte_identical(
    layers: Callable[[str], Layer], tmp_path: Path
) -> None:
    first = {arch: layers(arch).zip for arch in with_python.ARCHES}
    # A second build in a cache of its own, sharing only the downloaded sources and the
    # compiler (inputs, each checked against its pinned hash by the build). That cache is
    # kept, keyed like the first by the build's exact inputs, so the interpreters are
    # compiled a second time once per change of those inputs, not on every run; the layers
    # themselves (zipapp, stdlib zip, layer zip) are assembled again each time.
    shared = node_sandbox.CACHE
    second_home = shared.parent / f"{shared.name}-second-build"
    second = second_home / shared.name
    second.mkdir(parents=True, exist_ok=True)
    for name in ("downloads", "tools"):
        if (shared / name).is_dir() and not (second / name).exists():
            (second / name).symlink_to(shared / name)
    env = {**os.environ, "XDG_CACHE_HOME": str(second_home)}
    for arch in with_python.ARCHES:
        again = with_python.build(arch, tmp_path / f"again-{arch}.zip", env=env)
        assert _zip_differences(first[arch], again) == []
        assert first[arch].read_bytes() == again.read_bytes()
    # The second build's interpreters are its own, compiled in its cache, not the first's.
    for arch in with_python.ARCHES:
        python = second / "python" / build.cache_key(arch) / "bin" / "python3"
        assert python.is_file() and not python.resolve().is_relative_to(shared.resolve())


def _zip_differences(one: Path, other: Path) -> list[str]:
    """The entries whose name, bytes, time or mode differ: what to look at when zips differ."""
    with zipfile.ZipFile(one) as a, zipfile.ZipFile(other) as b:
        left = {i.filename: (a.read(i), i.date_time, i.external_attr) for i in a.infolist()}
        right = {i.filename: (b.read(i), i.date_time, i.external_attr) for i in b.infolist()}
    return sorted(name for name in left.keys() | right.keys() if left.get(name) != right.get(name))
