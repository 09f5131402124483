"""bundled_python/stdlib.py: the --with-python layer carries each stdlib module the extension uses,
frozen into its interpreter.

The bundled interpreter (from the build cache; built first if absent) is run with its full
standard library on sys.path; it imports every runtime module, every module any of them
imports anywhere (lazily inside a function too), and does what imports more at run time.
Whatever it then has loaded from the standard library must be on the list.
"""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path

import pytest

import build_layer
from bundled_python import build, stdlib
from tests.conftest import ROOT

# Run by the bundled interpreter: argv = Lib directory, zipapp directory, module names.
EXERCISE = """\
import importlib, json, sys
lib, root, *names = sys.argv[1:]
sys.path[:] = [root, lib]
for name in names:
    importlib.import_module(name)
# What only run time imports: TLS host names (idna), a printed traceback, the codecs a
# Latin-1 or C locale gives stdio.
import ssl, traceback
ssl.create_default_context()
"bücher.example".encode("idna").decode("idna")
try:
    raise ValueError("x")
except ValueError as exc:
    traceback.format_exception(exc)
"é".encode("latin-1").decode("iso-8859-1"); "a".encode("us-ascii"); "a".encode("latin1")
codecs = importlib.import_module("codecs")
codecs.lookup("latin-1"); codecs.lookup("ascii"); codecs.lookup("utf-8")
print(json.dumps({name: getattr(module, "__file__", None) for name, module in sys.modules.items()}))
"""


# Modules that only a Python older than the bundled one (3.13) has, each imported where the
# newer one's module is missing: sigv4's built-in SHA-256 was _sha256 up to 3.11 (_sha2 since).
OLDER_PYTHONS = {"_sha256"}


def imported_names(paths: list[Path]) -> set[str]:
    """Every absolute module name an import statement in `paths` names, at any depth."""
    names: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
    return names


@pytest.fixture(scope="module")
def python() -> Path:
    """The bundled interpreter built for this machine, with its whole stdlib as source."""
    return build.interpreter(build.host_arch())


@pytest.fixture(scope="module")
def loaded(python: Path) -> dict[str, str | None]:
    """{module: file} the bundled interpreter loaded while exercising the extension's modules."""
    modules = build_layer.runtime_modules(ROOT)  # "parameters_secrets_extension/aws/x.py"
    own = {
        module.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for module in modules
    }
    names = sorted((imported_names([ROOT / module for module in modules]) | own) - OLDER_PYTHONS)
    lib = str(python / build.STDLIB)
    done = subprocess.run(
        [str(python / "bin" / "python3"), "-I", "-S", "-c", EXERCISE, lib, str(ROOT), *names],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, str | None] = json.loads(done.stdout)
    return result


def module_files(lib: Path, modules: tuple[str, ...]) -> list[str]:
    """Each module's source file relative to `lib` (a package's __init__.py); an error for
    a name that is no module there, so that a typo in the list fails."""
    files = []
    for name in modules:
        relative = name.replace(".", "/")
        if (lib / relative / "__init__.py").is_file():
            files.append(f"{relative}/__init__.py")
        elif (lib / f"{relative}.py").is_file():
            files.append(f"{relative}.py")
        else:
            raise AssertionError(f"stdlib.MODULES names {name}, which is not in {lib}")
    return sorted(files)


def test_every_stdlib_file_the_extension_loads_is_on_the_list(
    python: Path, loaded: dict[str, str | None]
) -> None:
    lib = python / build.STDLIB
    files = {Path(file) for file in loaded.values() if file is not None}
    from_stdlib = {str(file.relative_to(lib)) for file in files if file.is_relative_to(lib)}
    own = {ROOT / module for module in build_layer.runtime_modules(ROOT)} & files
    assert ROOT / "extension.py" in own  # the extension's modules were loaded, from here
    # Nothing from anywhere else: the stdlib directory and the extension's modules are all.
    assert files - own == {lib / name for name in from_stdlib}
    assert "ssl.py" in from_stdlib
    # Upstream answers are read by response_reader.py: http.client (and email) stay out.
    assert not any(name.startswith(("http/client", "email/")) for name in from_stdlib)
    assert sorted(from_stdlib - set(module_files(lib, stdlib.MODULES))) == []


def test_the_c_modules_it_loads_are_built_in(loaded: dict[str, str | None]) -> None:
    # No file: built into bin/python3 (lib-dynload stays empty) or frozen.
    extension_modules = {name for name, file in loaded.items() if file and file.endswith(".so")}
    assert extension_modules == set()
    assert {"_ssl", "_hashlib", "_socket", "_json", "unicodedata"} <= set(loaded)


def test_the_list_names_each_module_once_and_the_build_finds_them_all(python: Path) -> None:
    assert len(set(stdlib.MODULES)) == len(stdlib.MODULES)
    files = module_files(python / build.STDLIB, stdlib.MODULES)  # raises for a typo
    assert len(set(files)) == len(stdlib.MODULES)


# Argv: module names; prints those not frozen. importlib._bootstrap and _bootstrap_external
# are frozen under their bootstrap names (_frozen_importlib, ...) and importlib puts those
# into sys.modules under theirs.
FROZEN_CHECK = """\
import _imp, importlib, sys
def frozen(name):
    module = sys.modules.get(name)
    return _imp.is_frozen(name) or (module is not None and module.__spec__.origin == "frozen")
print(*(name for name in sys.argv[1:] if not frozen(name)))
"""


def test_every_module_on_the_list_is_frozen_into_the_interpreter(python: Path) -> None:
    # Frozen: its bytecode is in the executable, read from memory at import. A module the
    # build failed to freeze would be an ImportError in the layer, which ships no other copy.
    done = subprocess.run(
        [
            str(python / "bin" / "python3"),
            "-I",
            "-S",
            "-c",
            FROZEN_CHECK,
            *stdlib.MODULES,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.split() == []
