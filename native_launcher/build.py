"""Compile the small layer's launcher (main.c) for one architecture with the pinned Zig.

The launcher is the head of the layer's executable, before the zipapp (build_layer.py). It
is built at each layer build, with the zipapp's own -c program compiled in: about 0.2 s once
Zig's cache holds musl for the architecture (the first build on a machine: about 45 s, and
the download of Zig from PyPI, shared with the --with-python build).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bundled_python.build import (
    CPU,
    BuildError,
    Log,
    cache_root,
    register_early_source,
    zig_compiler,
)
from parameters_secrets_extension.version import NAME

MAIN_SOURCE = Path(__file__).resolve().parent / "main.c"
# Static against musl: no dynamic loader runs at each start and no glibc version must match
# the image's; about 37 KB. -O2 -g0 -s as the interpreter's build, stripped.
FLAGS = ("-static", "-O2", "-g0", "-s", "-Wall", "-Wextra", "-Werror")


def launcher_source(main_program: str) -> str:
    """main.c after register_early.c and the definitions both take from Python."""
    if not main_program.isascii() or any(c < " " and c != "\n" for c in main_program):
        raise ValueError("the -c program must be printable ASCII to be a C string literal")
    # json.dumps writes printable ASCII (and newlines) as a valid C string literal.
    defines = (
        f"#define ZIPAPP_MAIN {json.dumps(main_program)}\n#define PRODUCT_NAME {json.dumps(NAME)}\n"
    )
    return defines + register_early_source() + MAIN_SOURCE.read_text()


def build_launcher(arch: str, main_program: str, log: Log | None = None) -> bytes:
    """The launcher for `arch` ("x86_64" or "arm64") that runs `main_program`."""
    log = log or (lambda line: print(line, file=sys.stderr))
    root = cache_root()
    zig = zig_compiler(root / "tools", log)
    with tempfile.TemporaryDirectory(prefix="launcher.") as work:
        source = Path(work, "launcher.c")
        source.write_text(launcher_source(main_program))
        output = Path(work, "launcher")
        env = {
            **os.environ,
            # musl, built once per architecture, stays in the build cache; this file's
            # objects stay in the temporary directory.
            "ZIG_GLOBAL_CACHE_DIR": str(root / "zig-cache"),
            "ZIG_LOCAL_CACHE_DIR": str(Path(work, "zig-local")),
        }
        command = [str(zig), "cc", "-target", f"{CPU[arch]}-linux-musl", *FLAGS]
        done = subprocess.run(  # noqa: S603 -- the pinned Zig on our own source
            [*command, str(source), "-o", str(output)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or not output.is_file():
            raise BuildError(f"cannot compile the launcher for {arch}:\n{done.stderr[-3000:]}")
        return output.read_bytes()
