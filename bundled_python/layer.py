"""What the layer takes from the interpreter build: the binary and the stdlib modules' bytecode."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import NamedTuple

from bundled_python import build, pins, stdlib

# Run by the host's build of the same CPython: prints {name-in-zip: pyc hex} for each module
# file named on its command line (relative to the stdlib directory). Hash-based, unchecked
# (PEP 552): the zip holds no source to check against.
COMPILE = """\
import importlib.util, json, marshal, sys
lib, pyc = sys.argv[1], {}
for path in sys.argv[2:]:
    with open(lib + "/" + path, "rb") as file:
        source = file.read()
    code = compile(source, path, "exec", dont_inherit=True, optimize=0)
    header = importlib.util.MAGIC_NUMBER + (1).to_bytes(4, "little")
    header += importlib.util.source_hash(source)
    pyc[path[:-3] + ".pyc"] = (header + marshal.dumps(code)).hex()
print(json.dumps(pyc))
"""


class Bundle(NamedTuple):
    version: str  # CPython's, such as "3.13.15"
    python: bytes  # the stripped executable
    stdlib: list[tuple[str, bytes]]  # (path in the stdlib zip, .pyc), in a fixed order
    compiler: Path  # the same CPython built for this machine, to compile the zipapp's .pyc


def bundled_files(arch: str, sources: Path | None = None) -> Bundle:
    """The interpreter for `arch` and the compiled stdlib modules the extension uses."""
    built = build.interpreter(arch, sources)
    host = build.interpreter(build.host_arch(), sources)  # runs here, compiles for both
    lib = built / build.STDLIB
    files = module_files(lib, stdlib.MODULES)
    result = subprocess.run(  # noqa: S603 -- our own interpreter and script
        [
            str(host / "bin" / "python3"),
            "-S",
            "-X",
            "no_debug_ranges",
            "-c",
            COMPILE,
            str(lib),
            *files,
        ],
        capture_output=True,
        text=True,
        check=False,
        # Not -I, which would ignore PYTHONHASHSEED: the .pyc bytes depend on set order.
        env={"PYTHONHASHSEED": "0"},
    )
    if result.returncode != 0:
        raise build.BuildError(f"compiling the stdlib modules failed:\n{result.stderr[-2000:]}")
    compiled = json.loads(result.stdout)
    python = (built / "bin" / "python3").read_bytes()
    stdlib_pyc = [(name, bytes.fromhex(pyc)) for name, pyc in sorted(compiled.items())]
    return Bundle(pins.CPYTHON.version, python, stdlib_pyc, host / "bin" / "python3")


def module_files(lib: Path, modules: tuple[str, ...]) -> list[str]:
    """Each module's source file relative to `lib` (a package's __init__.py); an error for
    a name that is no module there, so that a typo in the list fails the build."""
    files = []
    for name in modules:
        relative = name.replace(".", "/")
        if (lib / relative / "__init__.py").is_file():
            files.append(f"{relative}/__init__.py")
        elif (lib / f"{relative}.py").is_file():
            files.append(f"{relative}.py")
        else:
            raise build.BuildError(f"stdlib.MODULES names {name}, which is not in {lib}")
    return sorted(files)
