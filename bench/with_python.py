"""The layer that carries its own Python (`build_layer.py --with-python`), built and unpacked.

The build is the README's command, run as a subprocess of this checkout's build_layer.py;
its interpreter is cached by build_layer.py itself, so only a machine's first build compiles.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from bench.harness import unpack_layer

ROOT = Path(__file__).resolve().parent.parent
ARCHES = ("x86_64", "arm64")
BUILD_TIMEOUT = 3600  # a first build compiles CPython and OpenSSL: minutes, more when loaded


def build(arch: str, output: Path, *, env: dict[str, str] | None = None) -> Path:
    """`python build_layer.py --arch <arch> --with-python --output <output>`; the zip's path."""
    command = [sys.executable, str(ROOT / "build_layer.py"), "--arch", arch, "--with-python"]
    done = subprocess.run(
        [*command, "--output", str(output)],
        capture_output=True,
        text=True,
        check=False,
        timeout=BUILD_TIMEOUT,
        env=env if env is not None else dict(os.environ),
        cwd=ROOT,
    )
    if done.returncode != 0 or not output.is_file():
        failed = f"{' '.join(command)} failed ({done.returncode})"
        raise RuntimeError(f"{failed}:\n{done.stderr[-4000:]}")
    return output


def base(rev: str, tmp: Path) -> Path:
    """The executable of `rev`'s layer built --with-python by `rev`'s own build_layer.py,
    unpacked under `tmp` (its interpreter comes from the build cache when `rev` builds the
    same one as this tree, else it is built: minutes)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev], cwd=ROOT, capture_output=True, check=True
    ).stdout
    source = tmp / "base-source"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(source, filter="data")
    output = tmp / "base-with-python.zip"
    command = [sys.executable, "build_layer.py", "--arch", "x86_64", "--with-python"]
    subprocess.run(
        [*command, "--output", str(output)],
        cwd=source,
        capture_output=True,
        check=True,
        timeout=BUILD_TIMEOUT,
    )
    return unpack(output, tmp / "base-opt-with-python")


def unpack(layer_zip: Path, opt: Path) -> Path:
    """Unpack like Lambda does at /opt (here anywhere); the extension's executable."""
    return unpack_layer(layer_zip.read_bytes(), opt)


def elf_files(opt: Path) -> list[Path]:
    """Every ELF file in an unpacked layer, sorted."""
    found = []
    for path in sorted(opt.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as file:
                if file.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def interpreter(opt: Path) -> Path:
    """The layer's interpreter: its one ELF file."""
    found = elf_files(opt)
    if len(found) != 1:
        raise RuntimeError(f"expected one ELF file (the interpreter) in the layer, found {found}")
    return found[0]
