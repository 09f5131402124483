"""build_layer.py: the layer zip, the zipapp inside it, its launcher, and reproducible builds."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import json
import marshal
import shutil
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

import build_layer
from bench.harness import unpack_layer
from tests.conftest import (
    PARAM_STRING,
    ROOT,
    SECRET_STRING_V2,
    LambdaCredentials,
    Moto,
    free_port,
)
from tests.extension_process import ExtensionProcess, lambda_env
from tests.fake_extensions_api import FakeExtensionsApi

NAME = "parameters-secrets-extension"
ENTRY = f"extensions/{NAME}"
PYENV = Path.home() / ".pyenv" / "versions"
SUPPORTED = ("3.10", "3.11", "3.12", "3.13", "3.14")
TOO_OLD = ("3.6", "3.7", "3.8", "3.9")
NO_PYTHON3 = f"{NAME} needs python3 >= 3.10 at /var/lang/bin/python3 or on PATH; none found\n"
PKG = "parameters_secrets_extension"
NATIVE = build_layer.native_launcher("x86_64")
ELF_MACHINE = {"x86_64": 62, "arm64": 183}  # e_machine: EM_X86_64, EM_AARCH64
# The stub repository's runtime modules, in the index's order (their paths sorted).
STUB_MODULES = (
    PKG,
    f"{PKG}.config",
    f"{PKG}.lambda_api",
    f"{PKG}.lambda_api.boot",
    f"{PKG}.version",
    f"{PKG}.zipapp_finder",
)
# The file name compiled into the shipped code: where Lambda puts the executable.
CODE_ROOT = f"/opt/{ENTRY}"

# A stand-in boot module that reports how it was started and exits with a code of its own.
STUB_BOOT = """\
import json, sys, traceback
from parameters_secrets_extension import config

def main():
    try:
        config.fail()
    except RuntimeError as exc:
        [frame] = traceback.extract_tb(exc.__traceback__)[1:]
    print(json.dumps({
        "argv": sys.argv, "config": config.__file__, "marker": config.MARKER,
        "isolated": sys.flags.isolated, "no_site": sys.flags.no_site,
        "version": list(sys.version_info[:2]),
        "traceback": [frame.filename, frame.lineno, frame.line],
    }))
    return 3
"""
STUB_CONFIG = """\
MARKER = "the zipapp config"


def fail():
    raise RuntimeError("a line a traceback shows")
"""
SHADOW = "raise RuntimeError('a module outside the zipapp shadowed ours')\n"


def pyenv_python(version: str) -> Path:
    """~/.pyenv's python3 for `version` (e.g. "3.9"), or skip the test saying it is absent."""
    found = sorted(PYENV.glob(f"{version}.*/bin/python3"))
    if not found:
        pytest.skip(f"python {version} is not installed under {PYENV}")
    return found[-1]


def path_with_python3(tmp_path: Path, python: Path) -> str:
    """A PATH holding nothing but a `python3` symlink to `python`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(python)
    return str(bin_dir)


def inner_zip(layer: bytes) -> zipfile.ZipFile:
    with zipfile.ZipFile(io.BytesIO(layer)) as archive:
        return zipfile.ZipFile(io.BytesIO(archive.read(ENTRY)))


def modules_of(zipapp: zipfile.ZipFile) -> tuple[dict[str, Any], bytes]:
    """The zipapp's `modules` entry: the index it starts with, and the modules after it."""
    data = zipapp.read(build_layer.MODULES_ENTRY)
    # The index is the entry's first object: marshal.loads ignores the bytes after it.
    index = marshal.loads(data)  # noqa: S302 -- our own build's bytes
    return index, data[len(marshal.dumps(index, 2)) :]


@functools.cache
def magic_numbers() -> dict[str, bytes]:
    """The magic number of each Python build_layer compiles with, by version."""
    found = {}
    for version, python in build_layer.interpreters().items():
        done = subprocess.run(
            [python, "-I", "-c", "import importlib.util; print(importlib.util.MAGIC_NUMBER.hex())"],
            capture_output=True,
            text=True,
            check=True,
        )
        found[version] = bytes.fromhex(done.stdout)
    return found


def part(data: bytes, span: tuple[int, int]) -> bytes:
    """The bytes an index record's (offset, length) names."""
    offset, length = span
    return data[offset : offset + length]


@pytest.fixture(scope="module")
def stub_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository laid out like ours, with stub runtime modules and dev-only files."""
    root = tmp_path_factory.mktemp("repo")
    shutil.copy(ROOT / "build_layer.py", root)  # not on the allow-list
    (root / PKG / "lambda_api").mkdir(parents=True)
    (root / PKG / "__init__.py").write_text("")
    (root / PKG / "lambda_api" / "__init__.py").write_text("")
    (root / PKG / "config.py").write_text(STUB_CONFIG)
    (root / PKG / "lambda_api" / "boot.py").write_text(STUB_BOOT)
    shutil.copy(ROOT / PKG / "version.py", root / PKG)
    shutil.copy(ROOT / PKG / "zipapp_finder.py", root / PKG)
    (root / PKG / ".#config.py").write_text("an editor's lock file\n")
    (root / "scratch.py").write_text("not on the allow-list\n")
    for folder, module in (("tests", "test_config.py"), ("bench", "bench_cache.py")):
        (root / folder).mkdir()
        (root / folder / module).write_text("import config\n")
    return root


@pytest.fixture(scope="module")
def stub_layer(stub_root: Path) -> bytes:
    return build_layer.build_layer(stub_root, "x86_64")


@pytest.fixture(scope="module")
def stub_executable(stub_layer: bytes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return unpack_layer(stub_layer, tmp_path_factory.mktemp("opt"))


@pytest.fixture(scope="module")
def repo_layer() -> bytes:
    return build_layer.build_layer(ROOT, "x86_64")


@pytest.fixture
def shadow_dir(tmp_path: Path) -> Path:
    """A directory of modules that raise on import, named like ours and like stdlib ones.

    The zipapp comes first on sys.path whatever the flags, so only -I keeps PYTHONPATH
    from shadowing the standard library modules the extension imports.
    """
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    ours = ("config", "extension", "errors", "logs", "cache", PKG)
    for module in (*ours, "json", "selectors", "socket", "hmac", "threading"):
        (shadow / f"{module}.py").write_text(SHADOW)
    return shadow


def build(*args: str, **env: str) -> tuple[str, str]:
    """Run build_layer.py as a command; return its stdout and stderr."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "build_layer.py"), *args],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", **env},
        # The first build on a machine installs Zig and compiles musl for the launcher.
        timeout=600,
    )
    return done.stdout, done.stderr


# The zip


def test_layer_holds_one_executable_regular_file(repo_layer: bytes) -> None:
    with zipfile.ZipFile(io.BytesIO(repo_layer)) as archive:
        [info] = archive.infolist()
    mode = info.external_attr >> 16
    assert info.filename == ENTRY
    assert stat.S_ISREG(mode) and stat.S_IMODE(mode) == 0o755
    assert info.create_system == 3  # Unix: unzip honours the mode
    assert info.date_time == (1980, 1, 1, 0, 0, 0)


def test_zipapp_holds_main_and_each_modules_source_and_code_only(
    stub_root: Path, stub_layer: bytes
) -> None:
    with inner_zip(stub_layer) as app:
        names = app.namelist()
        infos = app.infolist()
        index, data = modules_of(app)
    assert names == ["__main__.py", "modules"]  # no tests/, bench/, build_layer.py nor editor files
    assert {stat.S_IMODE(info.external_attr >> 16) for info in infos} == {0o644}
    magic = [magic_numbers()[version] for version in sorted(magic_numbers())]
    assert list(index) == list(STUB_MODULES)
    end = 0  # each module in its turn
    for name, (path, package, source, code) in index.items():
        assert part(data, source) == (stub_root / path).read_bytes()
        assert list(code) == magic
        # Its source, then its versions side by side: deflate finds one in the next.
        for offset, length in [source, *code.values()]:
            assert offset == end
            end = offset + length
        assert package == path.endswith("/__init__.py")
        assert name == path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
    compiled = marshal.loads(part(data, index[f"{PKG}.config"][3][importlib.util.MAGIC_NUMBER]))  # noqa: S302
    assert compiled.co_filename == f"{CODE_ROOT}/{PKG}/config.py"
    assert "MARKER" in compiled.co_names


def test_repo_zipapp_ships_every_top_level_module_but_the_build(repo_layer: bytes) -> None:
    with inner_zip(repo_layer) as app:
        names = app.namelist()
        index, _ = modules_of(app)
    found = [*ROOT.glob("*.py"), *(ROOT / PKG).rglob("*.py")]
    modules = {path.relative_to(ROOT).as_posix() for path in found} - {"build_layer.py"}
    assert {f"{PKG}/config.py", f"{PKG}/errors.py", f"{PKG}/logs.py", "extension.py"} <= modules
    assert names == ["__main__.py", "modules"]
    assert {path for path, _, _, _ in index.values()} == modules
    assert {"3.10", "3.11", "3.12", "3.13"} <= set(magic_numbers())  # what this machine has
    magic = set(magic_numbers().values())
    assert all(set(code) == magic for _, _, _, code in index.values())


# The cold-start work set 256 KB with every version's bytecode; the batch, path, refresh-ahead
# and metrics code then added about 40% more modules, and with four bytecode sets of each
# (deflate sees little of one version in the next) the layer is about 322 KB. Lambda unpacks
# it once per sandbox, well under a millisecond more. This bound catches a real regression,
# such as sources shipped twice or an unstripped dependency, not the growth of our own code:
# roleArn (three small modules), revalidation and the AWS JSON protocol (two) took it from
# about 370 KB to about 475 KB (each module ships as source and as code for four Pythons, side
# by side in the `modules` entry: 478 KB, against 485 KB as 201 zip entries). Round 6 left it
# at 502 KB; the percent-encoding, URL splitting and records written out so that the first
# answer imports neither urllib.parse nor namedtuple's classes added 16 KB, the client TLS over
# _ssl and the HMAC written out (aws/tls.py, sigv4) 10 KB more: 528 KB (540,658 bytes). The
# native launcher in front of the zipapp (37 KB, static) added 20 KB: 553 KB (565,828 bytes).
def test_layer_stays_small(repo_layer: bytes) -> None:
    assert len(repo_layer) <= 560 * 1024


def test_each_versions_bytecode_is_its_own_and_without_debug_ranges(repo_layer: bytes) -> None:
    with inner_zip(repo_layer) as app:
        main = app.read("__main__.py").decode()
        index, data = modules_of(app)
    _, _, _, code = index[f"{PKG}.lookups"]
    for version, python in build_layer.interpreters().items():
        check = (
            "import marshal, sys\n"
            "code = marshal.loads(sys.stdin.buffer.read())\n"
            "if sys.version_info >= (3, 11):\n"
            "    columns = [c for f in code.co_consts if hasattr(f, 'co_positions')\n"
            "               for p in f.co_positions() for c in p[2:]]\n"
            "    assert columns and set(columns) == {None}, 'debug ranges'\n"
        )
        done = subprocess.run(
            [python, "-I", "-S", "-c", check],
            input=part(data, code[magic_numbers()[version]]),
            capture_output=True,
            check=False,
        )
        assert done.returncode == 0, (version, done.stderr)
    with zipfile.ZipFile(io.BytesIO(repo_layer)) as layer:
        executable = layer.read(ENTRY)
    assert main.encode() in launcher_of(executable)  # the -c program is __main__.py itself


def launcher_of(executable: bytes) -> bytes:
    """The bytes before the zip: where its first entry's local header starts."""
    with zipfile.ZipFile(io.BytesIO(executable)) as app:
        return executable[: app.infolist()[0].header_offset]


def test_a_missing_interpreter_is_reported_not_fatal(
    stub_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    only = {"3.11": build_layer.interpreters()["3.11"], "3.12": "/nonexistent/python3.12"}
    with zipfile.ZipFile(io.BytesIO(build_layer.build_zipapp(stub_root, NATIVE, only))) as app:
        index, _ = modules_of(app)
    magic = [magic_numbers()["3.11"]]
    assert all(list(code) == magic for _, _, _, code in index.values())
    err = capsys.readouterr().err
    assert "/nonexistent/python3.12 is not a working 3.12" in err
    assert "no python3.13 found" in err


@pytest.mark.parametrize("arch", build_layer.ARCHES)
def test_zipapp_starts_with_the_native_launcher_of_its_arch(stub_root: Path, arch: str) -> None:
    layer = build_layer.build_layer(stub_root, arch)
    with zipfile.ZipFile(io.BytesIO(layer)) as archive:
        executable = archive.read(ENTRY)
    launcher = launcher_of(executable)
    # A static ELF executable for the layer's architecture, the -c program compiled in.
    assert launcher.startswith(b"\x7fELF\x02\x01")  # 64-bit, little-endian
    assert int.from_bytes(launcher[18:20], "little") == ELF_MACHINE[arch]
    with zipfile.ZipFile(io.BytesIO(executable)) as app:
        main = app.read("__main__.py")
    assert launcher.count(main) == 1
    # Tens of kilobytes: the layer stays small (test_layer_stays_small).
    assert len(launcher) < 64 * 1024


def test_two_builds_are_byte_identical(tmp_path: Path) -> None:
    outputs = [tmp_path / "a.zip", tmp_path / "b.zip"]
    printed = [
        build("--arch", "x86_64", "--output", str(out), PYTHONHASHSEED=seed)[0]
        for out, seed in zip(outputs, ("1", "2"), strict=True)
    ]
    first, second = (out.read_bytes() for out in outputs)
    assert first == second
    digest = hashlib.sha256(first).hexdigest()
    assert printed[0] == f"{outputs[0]}  {len(first)} bytes  sha256 {digest}\n"
    assert printed[1] == f"{outputs[1]}  {len(second)} bytes  sha256 {digest}\n"


@pytest.mark.parametrize(
    ("epoch", "stamp"),
    [("1700000000", (2023, 11, 14, 22, 13, 20)), ("0", (1980, 1, 1, 0, 0, 0))],
)
def test_source_date_epoch_stamps_every_entry(
    stub_root: Path, monkeypatch: pytest.MonkeyPatch, epoch: str, stamp: tuple[int, ...]
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
    layer = build_layer.build_layer(stub_root, "x86_64")
    with zipfile.ZipFile(io.BytesIO(layer)) as archive:
        outer = [info.date_time for info in archive.infolist()]
    with inner_zip(layer) as app:
        inner = [info.date_time for info in app.infolist()]
    assert set(outer + inner) == {stamp}


def test_default_output_is_dist_beside_the_script(
    stub_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # In this process, the script's directory made the stub's: its Zig build (the launcher)
    # takes names from the real runtime package, which the stub does not have.
    monkeypatch.setattr(build_layer, "ROOT", stub_root)
    assert build_layer.main(["--arch", "arm64"]) == 0
    output = stub_root / "dist" / f"{NAME}-arm64.zip"
    data = output.read_bytes()
    stdout = capsys.readouterr().out
    assert stdout == f"{output}  {len(data)} bytes  sha256 {hashlib.sha256(data).hexdigest()}\n"


def test_unknown_arch_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "build_layer.py"), "--arch", "amd64", "--output", "x.zip"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2
    assert "invalid choice: 'amd64' (choose from 'x86_64', 'arm64')" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_help_documents_every_option(tmp_path: Path) -> None:
    stdout, stderr = build("--help")
    assert stderr == ""
    for option in ("--arch", "--output", "--version", "--help"):
        assert option in stdout
    text = " ".join(stdout.split())
    assert "the architecture the layer is published for (required): its launcher's" in text
    assert "downloads Zig from PyPI" in text
    assert "byte-identical" in text


def test_version_needs_no_arch() -> None:
    assert build("--version") == (f"{NAME} 0.1.0\n", "")


def test_missing_arch_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "build_layer.py")],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2
    assert "required: --arch" in done.stderr
    assert list(tmp_path.iterdir()) == []


# The launcher


def run(
    executable: Path, path: str, *args: str, cwd: Path | None = None, **env: str
) -> tuple[int, str, str]:
    done = subprocess.run(
        [str(executable), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env={"PATH": path, **env},
        timeout=60,
    )
    return done.returncode, done.stdout, done.stderr


def test_without_python3_one_line_says_what_is_needed(
    stub_executable: Path, tmp_path: Path
) -> None:
    if Path("/var/lang/bin/python3").exists():
        pytest.skip("/var/lang/bin/python3 exists here, so the launcher would use it")
    assert run(stub_executable, str(tmp_path)) == (127, "", NO_PYTHON3)


@pytest.mark.parametrize("version", TOO_OLD)
def test_too_old_python3_one_line_says_what_is_needed(
    stub_executable: Path, tmp_path: Path, version: str
) -> None:
    path = path_with_python3(tmp_path, pyenv_python(version))
    message = f"{NAME} needs python3 >= 3.10, found {version} at {path}/python3\n"
    assert run(stub_executable, path) == (1, "", message)


def test_main_stays_valid_for_python_2(stub_executable: Path) -> None:
    # 2.7 refuses -I before reading a byte, so run it directly: __main__.py still speaks.
    python2 = sorted(PYENV.glob("2.7.*/bin/python"))
    if not python2:
        pytest.skip(f"python 2.7 is not installed under {PYENV}")
    done = subprocess.run(
        [str(python2[-1]), "-S", str(stub_executable)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (
        1,
        f"{NAME} needs python3 >= 3.10, found 2.7 at {python2[-1]}\n",
    )


@pytest.mark.parametrize("version", SUPPORTED)
def test_supported_python3_runs_main_isolated_from_pythonpath_and_cwd(
    stub_executable: Path, tmp_path: Path, shadow_dir: Path, version: str
) -> None:
    path = path_with_python3(tmp_path, pyenv_python(version))
    code, stdout, stderr = run(
        stub_executable, path, "--some-arg", cwd=shadow_dir, PYTHONPATH=str(shadow_dir)
    )
    assert (code, stderr) == (3, "")  # main()'s return value is the exit code
    report = json.loads(stdout)
    # Each version's own code, where one was compiled (the file name it was compiled with);
    # the source otherwise. Either way the traceback shows the line.
    shipped = version in build_layer.interpreters()
    compiled_as = (
        f"{CODE_ROOT}/{PKG}/config.py" if shipped else f"{stub_executable}/{PKG}/config.py"
    )
    assert report == {
        "argv": [str(stub_executable), "--some-arg"],
        "config": f"{stub_executable}/{PKG}/config.py",
        "marker": "the zipapp config",
        "isolated": 1,
        "no_site": 1,
        "version": [int(part) for part in version.split(".")],
        "traceback": [compiled_as, 5, 'raise RuntimeError("a line a traceback shows")'],
    }


def test_python_runs_the_zipapp_itself(stub_executable: Path) -> None:
    # `python <zipapp>` runs __main__.py through runpy: the same program, the same finder.
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(stub_executable), "--some-arg"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (3, "")
    report = json.loads(done.stdout)
    assert report["argv"] == [str(stub_executable), "--some-arg"]
    assert report["traceback"][0] == f"{CODE_ROOT}/{PKG}/config.py"  # this Python's code


def test_a_python_runs_only_code_of_its_own_magic_number(stub_root: Path, tmp_path: Path) -> None:
    # Only 3.11's code shipped: 3.11 runs it, 3.12 compiles the source rather than load code
    # it cannot run.
    only = {"3.11": build_layer.interpreters()["3.11"]}
    executable = tmp_path / ENTRY
    executable.parent.mkdir(parents=True)
    executable.write_bytes(build_layer.build_zipapp(stub_root, NATIVE, only))
    executable.chmod(0o755)
    for version, compiled_as in (
        ("3.11", f"{CODE_ROOT}/{PKG}/config.py"),
        ("3.12", f"{executable}/{PKG}/config.py"),
    ):
        (tmp_path / version).mkdir()
        path = path_with_python3(tmp_path / version, pyenv_python(version))
        code, stdout, stderr = run(executable, path)
        assert (code, stderr) == (3, "")
        assert json.loads(stdout)["traceback"][0] == compiled_as


# End to end, as Lambda runs it: the real extension from the real layer.


@pytest.fixture(scope="module")
def real_extension_importable() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            f"import sys; sys.path[:0] = [{str(ROOT)!r}]; import extension",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(f"the real extension does not import yet: {last}")


def wait_first_next(fake: FakeExtensionsApi, ext: ExtensionProcess) -> None:
    """Wait until the extension asks for its first event; fail at once if it exits first."""
    deadline = time.monotonic() + 30
    while not fake.first_next.wait(0.05):
        if ext.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no first next:\n{ext.output()}")


@pytest.mark.usefixtures("real_extension_importable")
@pytest.mark.parametrize("version", SUPPORTED)
def test_layer_registers_serves_and_shuts_down_with_each_python(
    *,
    extension_executable: Path,
    tmp_path: Path,
    shadow_dir: Path,
    moto: Moto,
    lambda_credentials: LambdaCredentials,
    version: str,
) -> None:
    path = path_with_python3(tmp_path, pyenv_python(version))
    with FakeExtensionsApi() as fake:
        env = lambda_env(
            moto,
            lambda_credentials,
            free_port(),
            fake.address,
            PATH=path,
            PYTHONPATH=str(shadow_dir),
        )
        with ExtensionProcess(extension_executable, env, tmp_path / "extension.log") as ext:
            wait_first_next(fake, ext)
            secret = ext.get_json(f"/secretsmanager/get?secretId={quote(moto.secret_name)}")
            parameter = ext.get_json(f"/systemsmanager/parameters/get?name={moto.param_string}")
            fake.shutdown_extension()
            assert ext.proc.wait(timeout=10) == 0, ext.output()
    assert fake.calls.registrations[0].headers["lambda-extension-name"] == NAME
    assert secret[0] == 200 and secret[1]["SecretString"] == SECRET_STRING_V2
    assert parameter[0] == 200
    assert parameter[1]["Parameter"]["Value"] == PARAM_STRING
    assert fake.calls.init_errors == [] and fake.calls.exit_errors == []
