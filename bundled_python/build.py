"""Build the layer's own CPython: static OpenSSL and zlib, glibc 2.17 symbols, modules built in.

One entry point, `interpreter(arch)`, returns a directory holding `bin/python3` (stripped,
stdlib.py's modules frozen into it) and its whole standard library as source in
`lib/python3.13/` (STDLIB): a working Python where it runs (the cross build's build Python,
the compiler of the zipapp's bytecode).
The result is cached under the build cache, keyed by everything that goes into it, so only
the first build on a machine compiles (3-4 minutes per architecture on 2 quiet cores).

Steps: obtain and verify the pinned sources (sources.py: upstream, else Debian's source
packages, or a directory given with --sources), obtain Zig from PyPI, then with
`zig cc -target <arch>-linux-gnu.2.17` build zlib and OpenSSL as static libraries and
CPython against them. The arm64 build is a cross build; CPython's needs a build Python
of the same version: the host's own build.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from bundled_python import launch, pins, sources, stdlib
from parameters_secrets_extension.lambda_api import boot, lifecycle

HERE = Path(__file__).resolve().parent
CACHE_NAME = "parameters-secrets-extension"
# Our arch names (Lambda's) -> the GNU/Zig CPU names.
CPU = {"x86_64": "x86_64", "arm64": "aarch64"}
OPENSSL_TARGET = {"x86_64": "linux-x86_64", "arm64": "linux-aarch64"}
# Fixed file times and build paths, so that two builds of the same inputs are identical.
SOURCE_DATE_EPOCH = "315532800"
BUILD_PATH = "/build"  # what the work directory is called in the binary's debug strings
INSTALL_PREFIX = "/build/prefix"  # zlib's and OpenSSL's, as they know it
_MAJOR, _MINOR = pins.CPYTHON.version.split(".")[:2]
STDLIB = f"lib/python{_MAJOR}.{_MINOR}"  # where CPython looks for it from bin/python3
# Builds kept per architecture: checkouts of other versions (branches) keep theirs.
KEEP_BUILDS = 4

# OpenSSL: a static library with what TLS 1.2/1.3 to AWS and hashlib/hmac need; no
# config file read at start (the system's openssl.cnf must not change our TLS), no
# dynamically loaded engines or providers, no command-line tool.
OPENSSL_OPTIONS = tuple(
    """
    no-shared no-module no-dso no-engine no-legacy no-autoload-config no-apps no-tests
    no-docs no-ui-console no-async no-afalgeng no-padlockeng no-comp no-zlib
    no-ssl3 no-tls1 no-tls1_1 no-dtls no-srp no-srtp no-psk no-quic no-http no-ocsp
    no-nextprotoneg no-cms no-cmp no-ts no-ct no-rfc3779 no-gost no-sm2 no-sm3 no-sm4
    no-idea no-camellia no-aria no-seed no-rc2 no-rc4 no-md4 no-mdc2 no-whirlpool no-bf
    no-cast no-des no-dsa no-ec2m no-ml-dsa no-slh-dsa no-siv no-ocb no-argon2
    no-siphash no-blake2
    """.split()  # noqa: SIM905 -- read as one list, not one line per word
)
# CPython's optional modules that stay in, built into the binary; every other module of
# Modules/Setup.stdlib.in is disabled (those of Setup.bootstrap are always in). No _md5,
# _sha1, _sha3: hashlib takes those from OpenSSL; _sha2 is random's, _blake2 hashlib's.
KEPT_MODULES = frozenset(
    """
    array binascii fcntl math select unicodedata zlib _bisect _blake2 _contextvars
    _datetime _hashlib _heapq _json _posixsubprocess _queue _random _sha2 _socket _ssl
    _struct
    """.split()  # noqa: SIM905 -- read as one list, not one line per word
)
CPYTHON_OPTIONS = (
    "--prefix=/opt/parameters-secrets-extension",  # unused: the files are found relative to bin/
    "--disable-shared",
    "--disable-test-modules",
    "--without-ensurepip",
    "--without-doc-strings",
    "--without-mimalloc",
    "--with-pkg-config=no",
    "--with-openssl-rpath=no",
    "--with-ssl-default-suites=openssl",
)


class BuildError(RuntimeError):
    """A step of the interpreter build failed; the message says which and where its log is."""


Log = Callable[[str], None]


def cache_root() -> Path:
    """$XDG_CACHE_HOME/parameters-secrets-extension, else ~/.cache/parameters-secrets-extension."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / CACHE_NAME


def host_arch() -> str:
    """The build machine's architecture in our names (the native build runs on it)."""
    machine = platform.machine().lower()
    for arch, cpu in CPU.items():
        if machine in (cpu, arch, "amd64" if arch == "x86_64" else arch):
            return arch
    raise BuildError(f"cannot build the interpreter on a {machine} machine: x86_64 or arm64 only")


def cache_key(arch: str) -> str:
    """The inputs of one architecture's build, hashed: sources, Zig, this package's code."""
    inputs = {
        "arch": arch,
        "sources": {source.name: source.sha256 for source in pins.SOURCES},
        "zig": [pins.ZIG_VERSION, sorted(pins.ZIG_WHEEL_SHA256.values())],
        "glibc": pins.GLIBC,
        # The build's code and the modules it freezes (stdlib.py). Not sources.py or the
        # pins' URLs: where a file came from cannot change it (its hash).
        "code": hashlib.sha256((HERE / "build.py").read_bytes()).hexdigest(),
        "launch": hashlib.sha256((HERE / "launch.py").read_bytes()).hexdigest(),
        # main()'s early registration, with the names and numbers it takes from the package.
        "register_early": hashlib.sha256(register_early_source().encode()).hexdigest(),
        "frozen": list(stdlib.MODULES),
    }
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    return f"{arch}-{pins.CPYTHON.version}-{digest[:16]}"


def interpreter(arch: str, local: Path | None = None, log: Log | None = None) -> Path:
    """The cached build for `arch` (bin/python3 and STDLIB), building it first if absent."""
    log = log or _stderr
    root = cache_root()
    done = root / "python" / cache_key(arch)
    if (done / "bin" / "python3").is_file():
        # Used now: prune() keeps the most recently used. A cache shared read-only (a CI
        # cache mounted so, another user's) still serves its builds; it is just not pruned.
        with contextlib.suppress(OSError):
            os.utime(done)
        return done
    build_python = None
    if arch != host_arch():  # a cross build needs the same CPython running on this machine
        build_python = interpreter(host_arch(), local, log) / "bin" / "python3"
    tarballs = {
        source.name: _fetch(source, root / "downloads", local, log) for source in pins.SOURCES
    }
    zig = zig_compiler(root / "tools", log)
    # A directory of its own: builds running at once (another checkout's) never meet.
    (root / "work").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{done.name}.", dir=root / "work"))
    log(f"building CPython {pins.CPYTHON.version} for {arch} in {work} (a few minutes)")
    staged = _build(arch, tarballs, zig, work, build_python, log=log)
    done.parent.mkdir(parents=True, exist_ok=True)
    final = Path(tempfile.mkdtemp(prefix=f".{done.name}.", dir=done.parent))
    (final / "bin").mkdir()
    shutil.copy2(staged, final / "bin" / "python3")
    shutil.copytree(
        work / "cpython" / "Lib",
        final / STDLIB,
        ignore=shutil.ignore_patterns("test", "idlelib", "tkinter", "turtledemo", "__pycache__"),
    )
    (final / STDLIB / "lib-dynload").mkdir()  # CPython warns at start without it
    if arch == host_arch():
        _precompile(final)
    final.chmod(0o755)
    shutil.rmtree(work, ignore_errors=True)
    try:
        final.rename(done)  # atomic: an interrupted build never leaves half an entry
    except OSError:  # another build of the same inputs finished first: keep its result
        shutil.rmtree(final, ignore_errors=True)
        if not (done / "bin" / "python3").is_file():
            raise
    prune(done.parent, arch)
    return done


def prune(builds: Path, arch: str, keep: int = KEEP_BUILDS) -> list[Path]:
    """Remove all but the `keep` most recently used builds for `arch` (each 20-35 MB);
    the ones removed."""
    entries = [path for path in builds.glob(f"{arch}-*") if (path / "bin" / "python3").is_file()]
    entries.sort(key=lambda path: path.stat().st_mtime, reverse=True)
    for old in entries[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    return entries[keep:]


def _fetch(source: pins.Source, downloads: Path, local: Path | None, log: Log) -> Path:
    try:
        return sources.fetch(source, downloads, local, log)
    except sources.SourceError as exc:
        raise BuildError(str(exc)) from exc


def zig_compiler(tools: Path, log: Log) -> Path:
    """The pinned Zig from its PyPI wheel, installed once into the cache with pip."""
    target = tools / f"ziglang-{pins.ZIG_VERSION}"
    zig = target / "ziglang" / "zig"
    if zig.is_file():
        return zig
    cpu = CPU[host_arch()]
    tools.mkdir(parents=True, exist_ok=True)
    requirement = tools / f"ziglang-{pins.ZIG_VERSION}.txt"
    requirement.write_text(
        f"ziglang=={pins.ZIG_VERSION} --hash=sha256:{pins.ZIG_WHEEL_SHA256[cpu]}\n"
    )
    staging = Path(tempfile.mkdtemp(prefix=".ziglang.", dir=tools))
    log(f"installing ziglang {pins.ZIG_VERSION} from PyPI into {target}")
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--only-binary=:all:",
        "--require-hashes",
        "--target",
        str(staging),
        "-r",
        str(requirement),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 -- our own pip
    if result.returncode != 0 or not (staging / "ziglang" / "zig").is_file():
        shutil.rmtree(staging, ignore_errors=True)
        raise BuildError(
            f"cannot install ziglang {pins.ZIG_VERSION} with pip ({' '.join(command)}):\n"
            + result.stderr[-2000:]
        )
    staging.rename(target)
    return zig


def _build(
    arch: str,
    tarballs: dict[str, Path],
    zig: Path,
    work: Path,
    build_python: Path | None,
    *,
    log: Log,
) -> Path:
    # zlib's and OpenSSL's headers and static libraries: installed under work/ with DESTDIR,
    # so that the paths OpenSSL compiles in are INSTALL_PREFIX's, the same in every build.
    prefix = Path(f"{work}{INSTALL_PREFIX}")
    tools = _toolchain(arch, zig, work)
    # -O2: without an -O flag zig adds trapping UBSan checks; -g0: the binary is stripped.
    flags = " ".join(
        (
            "-O2 -g0 -fno-sanitize=undefined",
            "-ffunction-sections -fdata-sections",  # so that the linker drops what is unused
            "-Wno-error=date-time",  # __DATE__ is fixed by SOURCE_DATE_EPOCH
        )
    )
    env = {
        "PATH": f"{tools}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(work),
        "LANG": "C",
        "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH,
        "ZIG_GLOBAL_CACHE_DIR": str(work / "zig-cache"),
        "ZIG_LOCAL_CACHE_DIR": str(work / "zig-cache"),
        # The cross build freezes modules with the build Python: a fixed hash seed, so that
        # the order of a set constant's items, as marshal writes it, is the same in every build.
        "PYTHONHASHSEED": "0",
        "CC": "cc",
        "AR": "ar",
        "RANLIB": "ranlib",
    }
    run = _Runner(work, env, log)

    zlib = _unpack(tarballs["zlib"], work / "zlib")
    run(
        "zlib configure",
        ["./configure", "--static", f"--prefix={INSTALL_PREFIX}"],
        zlib,
        CFLAGS=f"{flags} -fPIC",
    )
    run("zlib make", ["make", "-j2", "libz.a"], zlib)
    run("zlib install", ["make", "install", f"DESTDIR={work}"], zlib)

    openssl = _unpack(tarballs["openssl"], work / "openssl")
    run(
        "openssl configure",
        [
            "perl",
            "./Configure",
            OPENSSL_TARGET[arch],
            f"--prefix={INSTALL_PREFIX}",
            "--libdir=lib",
            # Where Amazon Linux keeps its CA files: the defaults if the launcher found no bundle.
            "--openssldir=/etc/pki/tls",
            *OPENSSL_OPTIONS,
            *flags.split(),
            "-Os",  # a smaller layer; the hot loops are OpenSSL's assembly either way
        ],
        openssl,
    )
    run("openssl make", ["make", "-j2", "build_libs"], openssl)
    run("openssl install", ["make", "install_dev", f"DESTDIR={work}"], openssl)

    cpython = _unpack(tarballs["cpython"], work / "cpython")
    freeze(cpython, stdlib.MODULES, log)
    block_stop_signals(cpython)
    disabled = sorted(set(_optional_modules(cpython)) - KEPT_MODULES)
    cross = []
    if build_python is not None:
        cross = [
            f"--host={CPU[arch]}-linux-gnu",
            f"--build={CPU[host_arch()]}-linux-gnu",
            f"--with-build-python={build_python}",
            # What configure cannot run a test program to find out on another CPU.
            "ac_cv_buggy_getaddrinfo=no",
            "ac_cv_file__dev_ptmx=yes",
            "ac_cv_file__dev_ptc=no",
        ]
    run(
        "cpython configure",
        [
            "./configure",
            *CPYTHON_OPTIONS,
            f"--with-openssl={prefix}",
            *cross,
            *(f"py_cv_module_{name}=n/a" for name in disabled),
            "MODULE_BUILDTYPE=static",  # every kept module compiled into the binary
            f"CFLAGS={flags}",
            "OPT=-DNDEBUG -fwrapv",  # CPython's default adds -g -O3
            f"CPPFLAGS=-I{prefix}/include",
            # -s: stripped by the linker, no strip tool needed. (Zig's linker writes no DT_RELR,
            # which glibc < 2.36 cannot load; the tests check.)
            f"LDFLAGS=-L{prefix}/lib -s -Wl,--gc-sections",
            f"ZLIB_CFLAGS=-I{prefix}/include",
            f"ZLIB_LIBS=-L{prefix}/lib -lz",
        ],
        cpython,
    )
    run("cpython make", ["make", "-j2", "python"], cpython)
    return cpython / "python"


# Run by this machine's Python in CPython's source tree: adds a section to the list
# Tools/build/freeze_modules.py freezes (each module of argv that it does not freeze yet; a
# package as <name>), then regenerates Makefile.pre.in and Python/frozen.c from the list.
FREEZE = """\
import os, sys
sys.path.insert(0, "Tools/build")
import freeze_modules
frozen = {spec.split(":")[0].strip(" <>") for _, specs in freeze_modules.FROZEN for spec in specs}
def spec(name):
    package = os.path.isfile(os.path.join("Lib", *name.split("."), "__init__.py"))
    return f"<{name}>" if package else name
added = [spec(name) for name in sys.argv[1:] if name not in frozen]
freeze_modules.FROZEN.insert(-1, ("stdlib - the extension's imports", added))
freeze_modules.main()
"""
# _bootstrap_python freezes the modules of a native build. Its configuration is isolated, so
# PYTHONHASHSEED cannot reach it: the fixed seed goes into its source.
BOOTSTRAP_SOURCE = "Programs/_bootstrap_python.c"
BOOTSTRAP_ANCHOR = "    config.safe_path = 0;\n"
BOOTSTRAP_SEED = "    config.use_hash_seed = 1;\n    config.hash_seed = 0;\n"


def freeze(cpython: Path, modules: tuple[str, ...], log: Log) -> None:
    """Freeze `modules` into the binary, as CPython freezes os and codecs: their bytecode is
    then read from the executable's own memory, not found and read in a zip at each import
    (BENCHMARKS.md: a quarter of the import time of the extension's stdlib modules)."""
    log("  freeze the stdlib modules")
    result = subprocess.run(  # noqa: S603 -- CPython's own tool, from its verified sources
        [sys.executable, "-I", "-c", FREEZE, *modules],
        cwd=cpython,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BuildError(f"freezing the stdlib modules failed:\n{result.stderr[-2000:]}")
    bootstrap = cpython / BOOTSTRAP_SOURCE
    text = bootstrap.read_text()
    if text.count(BOOTSTRAP_ANCHOR) != 1:
        raise BuildError(f"{BOOTSTRAP_SOURCE} changed: cannot fix its hash seed")
    bootstrap.write_text(text.replace(BOOTSTRAP_ANCHOR, BOOTSTRAP_ANCHOR + BOOTSTRAP_SEED))


# The interpreter's main(), asked by the launcher (launch.py), blocks the stop signals before
# Python starts: pending, they wait for the extension's boot, which takes them with sigwait.
# Then, asked so, it listens and registers with Lambda itself (REGISTER_EARLY_SOURCE says why).
# The variables go before Python reads its environment: nothing else ever sees them.
MAIN_SOURCE = "Programs/python.c"
MAIN_INCLUDE = '#include "Python.h"\n'
MAIN_ANCHOR = "    return Py_BytesMain(argc, argv);\n"
MAIN_BLOCK = f"""\
    if (getenv("{launch.BLOCK_STOP_SIGNALS}") != NULL) {{
        sigset_t stop;
        sigemptyset(&stop);
        sigaddset(&stop, SIGTERM);
        sigaddset(&stop, SIGINT);
        sigprocmask(SIG_BLOCK, &stop, NULL);
        unsetenv("{launch.BLOCK_STOP_SIGNALS}");
    }}
    register_early();
"""
REGISTER_EARLY_SOURCE = HERE / "register_early.c"


def register_early_source() -> str:
    """register_early.c after the definitions it takes from the modules that own them."""
    # Each name and number is written once, in Python; json.dumps writes an ASCII string as
    # a C string literal.
    names = {
        "EARLY_NAME_VARIABLE": json.dumps(launch.REGISTER_EARLY),
        "EARLY_SOCKETS_VARIABLE": json.dumps(boot.EARLY_SOCKETS),
        "PORT_VARIABLE": json.dumps(lifecycle.PORT_VARIABLE),
        "DEFAULT_PORT": str(lifecycle.DEFAULT_PORT),
        "REGISTER_PATH": json.dumps(lifecycle.BASE + "/register"),
        "EARLY_TIMEOUT": str(int(lifecycle.TIMEOUT)),
        "BACKLOG": str(boot.BACKLOG),
    }
    defines = "".join(f"#define {name} {value}\n" for name, value in names.items())
    return defines + REGISTER_EARLY_SOURCE.read_text()


def block_stop_signals(cpython: Path) -> None:
    """Patch CPython's main() (MAIN_SOURCE) to block SIGTERM and SIGINT when asked, then to
    register early when asked (register_early_source())."""
    source = cpython / MAIN_SOURCE
    text = source.read_text()
    if text.count(MAIN_INCLUDE) != 1 or text.count(MAIN_ANCHOR) != 1:
        raise BuildError(f"{MAIN_SOURCE} changed: cannot make main() block the stop signals")
    includes = "#include <signal.h>\n#include <stdlib.h>\n" + register_early_source()
    text = text.replace(MAIN_INCLUDE, MAIN_INCLUDE + includes)
    source.write_text(text.replace(MAIN_ANCHOR, MAIN_BLOCK + MAIN_ANCHOR))


class _Runner:
    """Runs build steps with one environment, each step's output in work/<step>.log."""

    def __init__(self, work: Path, env: dict[str, str], log: Log) -> None:
        self.work, self.env, self.log = work, env, log

    def __call__(self, step: str, command: list[str], cwd: Path, **extra: str) -> None:
        log_path = self.work / (step.replace(" ", "-") + ".log")
        self.log(f"  {step}")
        with log_path.open("wb") as output:
            result = subprocess.run(  # noqa: S603 -- the build's own commands
                command,
                cwd=cwd,
                env={**self.env, **extra},
                stdout=output,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if result.returncode != 0:
            tail = log_path.read_text(errors="replace").splitlines()[-30:]
            raise BuildError(
                f"{step} failed (exit {result.returncode}); its log: {log_path}\n" + "\n".join(tail)
            )


def _toolchain(arch: str, zig: Path, work: Path) -> Path:
    """cc, ar and ranlib for `arch`: small scripts calling zig, so that every build system
    (configure, OpenSSL's Perl, make) sees an ordinary one-word compiler."""
    tools = work / "bin"
    tools.mkdir()
    # The work directory's name is mapped in cc itself, not in CFLAGS: OpenSSL writes its
    # CFLAGS into the binary, and they must be the same in every build.
    commands = {
        "cc": f"cc -target {CPU[arch]}-linux-gnu.{pins.GLIBC} "
        f"-ffile-prefix-map={work}={BUILD_PATH}",
        "ar": "ar",
        "ranlib": "ranlib",
    }
    for name, command in commands.items():
        script = tools / name
        script.write_text(f'#!/bin/sh\nexec "{zig}" {command} "$@"\n')
        script.chmod(0o755)
    return tools


def _precompile(python: Path) -> None:
    """Write the .pyc of `python`'s whole stdlib with `python` itself, once, in the cache.

    The bytes `marshal` writes depend on what the compiling process has loaded, and from
    where (a module compiled from source or read from .pyc). With every .pyc present
    from the start, each later run that compiles with this interpreter (the zipapp's
    .pyc) starts from the same state, and gives the same bytes.
    """
    command = [str(python / "bin" / "python3"), "-S", "-m", "compileall", "-q"]
    command += ["--invalidation-mode", "unchecked-hash", str(python / STDLIB)]
    result = subprocess.run(  # noqa: S603 -- our interpreter; only PYTHONHASHSEED in its env
        command, capture_output=True, text=True, check=False, env={"PYTHONHASHSEED": "0"}
    )
    if result.returncode != 0:
        raise BuildError(f"compiling the stdlib's .pyc failed:\n{result.stdout[-2000:]}")


def _optional_modules(cpython: Path) -> list[str]:
    """The names of Modules/Setup.stdlib.in's modules: the ones configure may build."""
    names = []
    for line in (cpython / "Modules" / "Setup.stdlib.in").read_text().splitlines():
        if line.startswith("@MODULE_") and "_TRUE@" in line:
            names.append(line.split("_TRUE@", 1)[1].split()[0])
    return names


def _unpack(tarball: Path, target: Path) -> Path:
    """Extract `tarball` (one top directory) into `target` itself."""
    staging = target.with_name(target.name + ".unpack")
    staging.mkdir()
    with tarfile.open(tarball) as archive:
        archive.extractall(staging, filter="data")
    (top,) = staging.iterdir()
    top.rename(target)
    staging.rmdir()
    return target


def _stderr(message: str) -> None:
    sys.stderr.write(f"build_layer: {message}\n")
