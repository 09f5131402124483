"""bundled_python/build.py and the --with-python launcher, without compiling anything.

The interpreter's build itself is exercised by the tests that build the layer (and by
test_stdlib_modules.py); these check what decides whether a build may run at all: the
hash check of every source, the cache key, and how the launcher starts the interpreter.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import build_layer
from bench.harness import unpack_layer
from bundled_python import build, pins, sources
from tests.host_tools import require_namespaces

NAME = "parameters-secrets-extension"
# A stand-in for the bundled interpreter: reports how the launcher ran it.
FAKE_PYTHON = """#!/bin/sh
printf '%s\\0' "$@" > "${0%/*}/argv"
env > "${0%/*}/env"
"""


def source(tmp_path: Path, data: bytes) -> pins.Source:
    """A pinned source whose file is `data`, served from nowhere reachable."""
    return pins.Source(
        name="demo",
        version="1.0",
        filename="demo-1.0.tar.gz",
        sha256=hashlib.sha256(data).hexdigest(),
        urls=("http://127.0.0.1:9/release/demo-1.0.tar.gz",),
        debian_package="demo",
        debian_version="1.0-1",
        debian_file="demo_1.0.orig.tar.gz",
    )


def test_sources_dir_file_is_used_under_its_pinned_or_mirror_name(tmp_path: Path) -> None:
    local = tmp_path / "sources"
    local.mkdir()
    pinned = source(tmp_path, b"the release")
    (local / "demo_1.0.orig.tar.gz").write_bytes(b"the release")  # the name at its URL
    found = sources.fetch(pinned, tmp_path / "downloads", local, lambda _: None)
    assert found.read_bytes() == b"the release"


def test_a_file_with_another_hash_is_refused(tmp_path: Path) -> None:
    local = tmp_path / "sources"
    local.mkdir()
    pinned = source(tmp_path, b"the release")
    (local / "demo-1.0.tar.gz").write_bytes(b"the release, altered")
    messages: list[str] = []
    with pytest.raises(sources.SourceError, match=r"no demo-1\.0\.tar\.gz with sha256"):
        sources.fetch(pinned, tmp_path / "downloads", local, messages.append)
    assert any("sha256 is not the pinned" in message for message in messages)


def test_an_unreachable_source_says_how_to_provide_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "APT_SOURCES", (tmp_path / "no-apt-sources",))
    pinned = source(tmp_path, b"the release")
    with pytest.raises(sources.SourceError, match="--sources DIR"):
        sources.fetch(pinned, tmp_path / "downloads", None, lambda _: None)
    assert list((tmp_path / "downloads").iterdir()) == []  # no partial file left


def test_debian_archives_are_read_from_both_apt_source_formats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listed = tmp_path / "sources.list.d"
    listed.mkdir()
    (listed / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\n\n"
        "Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\n"
    )
    (listed / "extra.list").write_text(
        "# a comment\ndeb [arch=amd64] http://other.invalid/debian/ trixie main\n"
        "deb http://other.invalid/debian-security trixie-security main\n"
    )
    monkeypatch.setattr(sources, "APT_SOURCES", (tmp_path / "sources.list", listed))
    assert sources.debian_archives() == [
        "http://other.invalid/debian",
        "http://mirror.invalid/debian",
    ]


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs Debian's apt-get")
def test_a_pinned_source_comes_from_its_debian_source_package(tmp_path: Path) -> None:
    """The route a machine without upstream access (CI's) takes: apt-get source, verified."""
    if not sources.debian_archives():
        pytest.skip("this machine's apt sources name no Debian archive")
    zlib = pins.ZLIB
    found = sources.fetch(zlib, tmp_path / "downloads", None, lambda _: None)
    assert found.name == zlib.filename
    assert hashlib.sha256(found.read_bytes()).hexdigest() == zlib.sha256


def test_every_pin_is_a_sha256_and_names_its_version() -> None:
    for pinned in pins.SOURCES:
        assert len(pinned.sha256) == 64 and int(pinned.sha256, 16) >= 0
        assert pinned.version in pinned.filename
        assert all(pinned.version in url for url in pinned.urls)
        assert pinned.version in pinned.debian_version and pinned.version in pinned.debian_file
    assert set(pins.ZIG_WHEEL_SHA256) == {"x86_64", "aarch64"}


def test_cache_key_depends_on_the_arch_and_lives_under_xdg_cache_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert build.cache_key("x86_64") != build.cache_key("arm64")
    assert build.cache_key("arm64") == build.cache_key("arm64")
    assert build.cache_key("arm64").startswith(f"arm64-{pins.CPYTHON.version}-")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert build.cache_root() == tmp_path / NAME
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert build.cache_root() == Path.home() / ".cache" / NAME


def test_prune_keeps_the_most_recently_used_builds_of_each_arch(tmp_path: Path) -> None:
    builds = tmp_path / "python"
    for n in range(7):
        for arch in ("x86_64", "arm64"):
            entry = builds / f"{arch}-{pins.CPYTHON.version}-{n:016x}"
            (entry / "bin").mkdir(parents=True)
            (entry / "bin" / "python3").write_bytes(b"")
            os.utime(entry, (1_000_000 + n, 1_000_000 + n))
    building = builds / f".x86_64-{pins.CPYTHON.version}-0000000000000009.tmp"  # no bin/python3
    building.mkdir()
    os.utime(builds / f"x86_64-{pins.CPYTHON.version}-{0:016x}", (2_000_000, 2_000_000))  # used
    removed = build.prune(builds, "x86_64", keep=4)
    kept = sorted(path.name[-1] for path in builds.glob("x86_64-*"))
    assert kept == ["0", "4", "5", "6"] and len(removed) == 3
    assert len(list(builds.glob("arm64-*"))) == 7 and building.is_dir()


@pytest.fixture
def bundled_layer(tmp_path: Path) -> Path:
    """A --with-python layer whose interpreter is FAKE_PYTHON, unpacked; its executable."""
    entries = [(build_layer.BUNDLED_PYTHON, FAKE_PYTHON.encode(), 0o755)]
    layer = build_layer.build_layer(build_layer.ROOT, "x86_64", pythons={}, bundled=entries)
    return unpack_layer(layer, tmp_path / "opt")


def launched(executable: Path, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    # stderr: ld.so's word on the LD_PRELOAD that sh and env still see
    subprocess.run(
        [str(executable), "--version"], env=env, check=True, timeout=30, capture_output=True
    )
    bin_dir = executable.parent.parent / NAME / "bin"
    argv = (bin_dir / "argv").read_text().split("\0")[:-1]
    seen = dict(
        line.split("=", 1) for line in (bin_dir / "env").read_text().splitlines() if "=" in line
    )
    return argv, seen


def test_launcher_runs_the_layers_interpreter_isolated(bundled_layer: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "LD_LIBRARY_PATH": "/var/task/lib",
        "LD_PRELOAD": "/var/task/lib/hook.so",
        "PYTHONPATH": "/var/task",
        # A function's variable of the name the launchers once took python3's flags from.
        "pyflags": "-X importtime",
        "LC_ALL": "en_US.ISO-8859-1",
    }
    argv, seen = launched(bundled_layer, env)
    # -X utf8: the function's locale changes nothing in how the extension encodes.
    assert argv[:5] == ["-X", "utf8", "-I", "-S", "-c"]
    assert argv[6:] == [str(bundled_layer), "--version"]
    assert "LD_LIBRARY_PATH" not in seen and "LD_PRELOAD" not in seen
    # The extension finds the CA certificates itself (aws/trust_store.py): a bundle named
    # here would be parsed whole before the first https call.
    assert "SSL_CERT_FILE" not in seen and "SSL_CERT_DIR" not in seen


def test_launcher_keeps_the_functions_own_ca_bundle(bundled_layer: Path) -> None:
    _, seen = launched(bundled_layer, {"PATH": "/usr/bin:/bin", "SSL_CERT_FILE": "/x/ca.pem"})
    assert seen["SSL_CERT_FILE"] == "/x/ca.pem"


def test_launcher_finds_its_interpreter_when_started_by_a_relative_path(
    bundled_layer: Path,
) -> None:
    subprocess.run(
        ["sh", bundled_layer.name, "--help"],
        cwd=bundled_layer.parent,
        env={"PATH": "/usr/bin:/bin"},
        check=True,
        timeout=30,
    )
    argv = (bundled_layer.parent.parent / NAME / "bin" / "argv").read_text().split("\0")[:-1]
    assert argv[-1] == "--help"


def test_small_layer_launcher_passes_no_flag_of_the_functions(tmp_path: Path) -> None:
    # The small layer's native launcher runs PATH's python3 (here a fake: no
    # /var/lang/bin/python3 on this machine) with -I -S -c and its program, then its own path
    # and arguments; a function's variable of the name the shell launchers once took python3's
    # flags from adds nothing.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(FAKE_PYTHON)
    (bin_dir / "python3").chmod(0o755)
    executable = tmp_path / NAME
    main = build_layer.main_program(0, 0)
    executable.write_bytes(build_layer.native_launcher(build.host_arch())(main))
    executable.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "pyflags": "-X importtime"}
    subprocess.run([str(executable), "--version"], env=env, check=True, timeout=30)
    argv = (bin_dir / "argv").read_text().split("\0")[:-1]
    assert argv == ["-I", "-S", "-c", main, str(executable), "--version"]


def test_the_bundled_launcher_is_done_before_the_zip() -> None:
    # The shell reads its script as it runs it: its last line must exec (or, failing, exit),
    # so that it never reads a byte of the zip after it.
    main = build_layer.main_program(0, 0)
    script = build_layer.bundled_launcher(main).decode()
    assert script.startswith("#!/bin/sh\n") and script.endswith("\n")
    assert script.splitlines()[-1] == 'exec "$py" -X utf8 -I -S -c "$main" "$0" "$@"'
    assert script.count("exec ") == 1 and main in script


def test_a_read_only_cache_still_serves_its_build(tmp_path: Path) -> None:
    """A cache mounted read-only (a shared CI cache) is used as it is, not refused because
    its entry's time cannot be touched. As root, only a read-only mount can refuse the write."""
    require_namespaces()
    entry = tmp_path / NAME / "python" / build.cache_key(build.host_arch())
    (entry / "bin").mkdir(parents=True)
    (entry / "bin" / "python3").write_bytes(b"")
    program = (
        "import sys; sys.path.insert(0, sys.argv[1]); from bundled_python import build;"
        " print(build.interpreter(build.host_arch(), log=sys.exit))"
    )
    root = Path(build_layer.__file__).resolve().parent
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    done = subprocess.run(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            script,
            "sh",
            str(tmp_path),
            sys.executable,
            "-I",
            "-c",
            program,
            str(root),
        ],
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(entry)
