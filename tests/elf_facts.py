"""What the dynamic loader will ask of an ELF file, read with binutils' readelf (any target)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

# The glibc family: the libraries every glibc system has, versioned together with libc.
GLIBC_FAMILY = re.compile(
    r"(libc|libm|libpthread|libdl|librt|libutil)\.so\.\d+|ld-linux(-x86-64|-aarch64)?\.so\.\d+"
)


def is_elf(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(4) == b"\x7fELF"


def _readelf(path: Path, *options: str) -> str:
    done = subprocess.run(
        ["readelf", "-W", *options, str(path)], capture_output=True, text=True, check=True
    )
    return done.stdout


def glibc_requirements(path: Path) -> set[str]:
    """Every GLIBC_* version the file requires (.gnu.version_r): "2.17", "ABI_DT_RELR", ..."""
    return set(re.findall(r"Name: GLIBC_(\S+)", _readelf(path, "--version-info")))


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def dynamic_tags(path: Path) -> list[tuple[str, str]]:
    """The dynamic section: (tag, value) pairs such as ("NEEDED", "Shared library: [libm.so.6]")."""
    return re.findall(r"^\s*0x[0-9a-f]+ \((\w+)\)\s+(.*)$", _readelf(path, "-d"), re.MULTILINE)


def needed(path: Path) -> list[str]:
    """The DT_NEEDED libraries."""
    tags = dynamic_tags(path)
    return [re.sub(r"^Shared library: \[(.*)\]$", r"\1", v) for t, v in tags if t == "NEEDED"]


def program_interpreter(path: Path) -> str | None:
    """PT_INTERP: the dynamic loader the kernel starts for it (None when static)."""
    found = re.search(r"\[Requesting program interpreter: (.*)\]", _readelf(path, "-l"))
    return found.group(1) if found else None


def machine(path: Path) -> str:
    """e_machine as readelf names it, e.g. "Advanced Micro Devices X86-64", "AArch64"."""
    found = re.search(r"^\s*Machine:\s+(.*)$", _readelf(path, "-h"), re.MULTILINE)
    assert found is not None, f"{path}: no ELF header"
    return found.group(1).strip()
