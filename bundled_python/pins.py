"""What the bundled interpreter is built from: each source and tool by version and sha256.

The one place these are written. To move to a new release, change a version, its file
name and its hash (README: "Keeping the interpreter current"); the build cache is keyed
by these, so the next build compiles afresh.

Each source names where to find exactly the pinned file: its upstream URLs, then the
Debian source package whose "orig" tarball it is (`apt-get source --download-only
<package>=<version>`, from DEBIAN_SUITES). The hashes are those of Debian's orig tarballs,
where they could be verified. For python3.13 and openssl that tarball is upstream's release
file, renamed (openssl's comes with upstream's signature); should upstream's bytes differ,
its file is refused for its hash and Debian's used. Debian repacks zlib (the "dfsg"
tarball), so zlib has no upstream URL. Every file is checked against its hash before use,
wherever it came from (sources.py).
"""

from __future__ import annotations

from typing import NamedTuple


class Source(NamedTuple):
    name: str
    version: str
    filename: str  # the name it is stored under in the download cache and --sources DIR
    sha256: str
    urls: tuple[str, ...]  # upstream, tried in order; each must serve exactly this file
    debian_package: str  # the Debian source package whose orig tarball this file is
    debian_version: str  # ... at this version (one `apt-get source` can still download)
    debian_file: str  # ... under this name


# The Debian suites whose source indices list the versions below (sid keeps older versions
# listed for a while; pin ones `apt-get source` can download).
DEBIAN_SUITES = ("sid", "trixie")

CPYTHON = Source(
    name="cpython",
    version="3.13.15",
    filename="Python-3.13.15.tar.xz",
    sha256="1e66a7945a48390ee4c2a4268a0e4185884059a13c4aab6d148aa208deea4a76",
    urls=("https://www.python.org/ftp/python/3.13.15/Python-3.13.15.tar.xz",),
    debian_package="python3.13",
    debian_version="3.13.15-1",
    debian_file="python3.13_3.13.15.orig.tar.xz",
)
OPENSSL = Source(
    name="openssl",
    version="3.5.7",  # the 3.5 long-term-support series
    filename="openssl-3.5.7.tar.gz",
    sha256="a8c0d28a529ca480f9f36cf5792e2cd21984552a3c8e4aa11a24aa31aeac98e8",
    urls=(
        "https://github.com/openssl/openssl/releases/download/openssl-3.5.7/openssl-3.5.7.tar.gz",
    ),
    debian_package="openssl",
    debian_version="3.5.7-1~deb13u2",
    debian_file="openssl_3.5.7.orig.tar.gz",
)
ZLIB = Source(
    name="zlib",
    version="1.3.2",
    filename="zlib_1.3.dfsg+really1.3.2.orig.tar.gz",
    sha256="7b6903eb019983987b7112eccf90f1703f1c6c0e0cede36564bf611d19ca579d",
    urls=(),
    debian_package="zlib",
    debian_version="1:1.3.dfsg+really1.3.2-3",
    debian_file="zlib_1.3.dfsg+really1.3.2.orig.tar.gz",
)
SOURCES = (CPYTHON, OPENSSL, ZLIB)

# The C compiler: Zig's `zig cc` (clang) from its PyPI wheel, installed into the build
# cache with pip --require-hashes. One hash per build-host platform's wheel.
ZIG_VERSION = "0.17.1"
ZIG_WHEEL_SHA256 = {
    "x86_64": "ea6cc5d87b033cf0aedfbc8f9549a908cae6c50ac31f1698188fa48a74524b54",
    "aarch64": "b7c5f02fccd40f89b999ee16a1f5ddced56e6182370f8affe494bcf8a28cf07e",
}
# The oldest glibc whose symbols the binary may use: Amazon Linux 2 has 2.26, 2023 has 2.34.
GLIBC = "2.17"
