"""The pinned source tarballs, obtained and verified: the one place files come from outside.

In order: the download cache, a directory given with --sources, the upstream URLs, then
Debian's source package through `apt-get source --download-only` (a machine that reaches
Debian's archive but not upstream, like CI's). Every file is checked against its pinned
sha256 before use, wherever it came from, so how a file was obtained never changes a build:
this module is not part of the build cache's key.

For the Debian route, deb-src lines are written to a private apt configuration, pointed at
the archive this machine's own apt sources already use: nothing of the system's apt state
changes, and no archive address is written here.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

from bundled_python import pins

DOWNLOAD_TIMEOUT = 60
APT_TIMEOUT = 600
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))

Log = Callable[[str], None]


class SourceError(RuntimeError):
    """A pinned file could not be obtained with its hash; the message says how to provide it."""


def fetch(source: pins.Source, downloads: Path, local: Path | None, log: Log) -> Path:
    """`source`'s tarball, verified: from the download cache, `local`, upstream or Debian."""
    downloads.mkdir(parents=True, exist_ok=True)
    target = downloads / source.filename
    candidates = [target]
    if local is not None:  # the pinned name, or the name it has upstream or in Debian
        names = [source.filename, source.debian_file]
        names += [unquote(url.rsplit("/", 1)[-1]) for url in source.urls]
        candidates += [local / name for name in dict.fromkeys(names)]
    for path in candidates:
        if path.is_file():
            if sha256(path) == source.sha256:
                return path
            log(f"{path}: sha256 is not the pinned {source.sha256}; not used")
    if local is not None:
        raise SourceError(f"--sources {local}: no {source.filename} with sha256 {source.sha256}")
    errors: list[str] = []
    for url in source.urls:
        if _download(url, source, target, log, errors):
            return target
    if _from_debian(source, target, log, errors):
        return target
    raise SourceError(
        f"cannot obtain {source.filename} ({source.name} {source.version}):\n  "
        + "\n  ".join(errors)
        + "\nDownload it by hand and pass its directory with --sources DIR."
    )


def _download(url: str, source: pins.Source, target: Path, log: Log, errors: list[str]) -> bool:
    partial = target.with_name(target.name + ".part")
    try:
        log(f"downloading {url}")
        # Pinned https URLs; the file is hash-checked below.
        request = urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT)  # noqa: S310
        with request as response, partial.open("wb") as file:
            shutil.copyfileobj(response, file)
    except OSError as exc:
        log(f"  not available: {exc}")
        errors.append(f"{url}: {exc}")
        partial.unlink(missing_ok=True)
        return False
    return _accept(partial, source, target, url, errors)


def _from_debian(source: pins.Source, target: Path, log: Log, errors: list[str]) -> bool:
    """`apt-get source --download-only <package>=<version>` in a private apt configuration."""
    wanted = f"{source.debian_package}={source.debian_version}"
    if shutil.which("apt-get") is None:
        errors.append(f"Debian's {wanted}: no apt-get on this machine")
        return False
    archives = debian_archives()
    if not archives:
        errors.append(f"Debian's {wanted}: no Debian archive in this machine's apt sources")
        return False
    log(f"fetching Debian's source package {wanted} with apt-get")
    with tempfile.TemporaryDirectory(prefix="apt-source.") as scratch:
        root = Path(scratch)
        for folder in ("lists/partial", "cache/archives/partial", "parts", "download"):
            (root / folder).mkdir(parents=True)
        lines = [
            f"deb-src {archive} {suite} main\n"
            for archive in archives
            for suite in pins.DEBIAN_SUITES
        ]
        (root / "sources.list").write_text("".join(lines))
        options = [
            f"-oDir::Etc::SourceList={root / 'sources.list'}",
            f"-oDir::Etc::SourceParts={root / 'parts'}",
            f"-oDir::State::Lists={root / 'lists'}",
            f"-oDir::Cache={root / 'cache'}",
            "-oAPT::Sandbox::User=root",  # the scratch directory is not the _apt user's
            "-q",
        ]
        for command in (
            ["apt-get", *options, "update"],
            ["apt-get", *options, "source", "--download-only", wanted],
        ):
            done = subprocess.run(  # noqa: S603 -- apt-get with our own options
                command,
                cwd=root / "download",
                capture_output=True,
                text=True,
                timeout=APT_TIMEOUT,
                check=False,
            )
            if done.returncode != 0:
                detail = (done.stderr or done.stdout).strip()[-500:]
                errors.append(f"Debian's {wanted}: `{' '.join(command[-2:])}` failed: {detail}")
                return False
        found = root / "download" / source.debian_file
        if not found.is_file():
            errors.append(f"Debian's {wanted} has no {source.debian_file}")
            return False
        partial = target.with_name(target.name + ".part")
        shutil.move(found, partial)
        return _accept(partial, source, target, f"Debian's {wanted}", errors)


def _accept(
    partial: Path, source: pins.Source, target: Path, origin: str, errors: list[str]
) -> bool:
    digest = sha256(partial)
    if digest != source.sha256:
        partial.unlink()
        errors.append(f"{origin}: sha256 {digest}, not the pinned {source.sha256}")
        return False
    partial.rename(target)
    return True


def debian_archives() -> list[str]:
    """The Debian archive URIs this machine's apt sources name (security archives left out:
    they carry no source package of other suites), in the order they appear."""
    found: list[str] = []
    files: list[Path] = []
    for place in APT_SOURCES:
        if place.is_dir():
            files += sorted(place.glob("*.list")) + sorted(place.glob("*.sources"))
        elif place.is_file():
            files.append(place)
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":  # deb822: stanzas of URIs: and Suites:
            for stanza in re.split(r"\n\s*\n", text):
                uris = re.search(r"^URIs:\s*(.+)$", stanza, re.MULTILINE)
                suites = re.search(r"^Suites:\s*(.+)$", stanza, re.MULTILINE)
                if uris and suites and "security" not in suites.group(1):
                    found += uris.group(1).split()
        else:  # one-line format: deb [options] URI suite components...
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
                if (
                    len(words) >= 3
                    and words[0] in ("deb", "deb-src")
                    and "security" not in words[2]
                ):
                    found.append(words[1])
    return list(dict.fromkeys(uri.rstrip("/") for uri in found if "debian" in uri))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
