"""Which CA certificates verify AWS's: looked up lazily in a hashed directory where the
system has one, else the system's whole store as ssl's default context loads it.

A default client context (ssl.create_default_context's, made by tls.client_context) parses
the system's whole CA bundle when it is made (Debian's 144 certificates: about 23 ms of CPU),
in front of the first https call. OpenSSL's hashed-directory lookup (`capath`) reads nothing
then: at verification it opens only the files named after the subject hash of the issuer a
chain asks for (`<hash>.0`, `.1`, ...).
Debian and Ubuntu keep such a directory in /etc/ssl/certs, Fedora and Amazon Linux 2023 in
/etc/pki/ca-trust/extracted/pem/directory-hash; where none is found the store is the whole
one, as before. Should a chain fail against the directory, the caller (TlsSettings) makes the
whole store and tries once more: what verified before still does.

A CA bundle file named by the function (SSL_CERT_FILE) keeps its meaning: the store is then
the whole one, that file included. AWS_CA_BUNDLE is loaded in both stores. The TLS module
(tls.py, and with it _ssl) is imported here only when a context is made: only an https
origin needs one.
"""

from __future__ import annotations

import os

from ..errors import UpstreamConnectionError

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    import _ssl

# Hashed CA directories, checked in this order after SSL_CERT_DIR and the interpreter's own
# default directory. Amazon Linux 2 has none (its /etc/pki/tls/certs holds bundles only).
CA_DIRECTORIES = (
    "/etc/pki/ca-trust/extracted/pem/directory-hash",  # Fedora 37+, Amazon Linux 2023, RHEL 9
    "/etc/ssl/certs",  # Debian, Ubuntu, Alpine
)
# The whole store's file where the interpreter's OpenSSL has none at its own default place:
# the layer's own interpreter (built --with-python) looks where Amazon Linux keeps it, and a
# function may run on another image. The first of these found is loaded.
CA_BUNDLES = (
    "/etc/pki/tls/certs/ca-bundle.crt",  # Amazon Linux, Fedora, RHEL
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine, Gentoo
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",  # CentOS, RHEL 7+
    "/etc/ssl/ca-bundle.pem",  # openSUSE
    "/etc/pki/tls/cacert.pem",  # OpenELEC
    "/etc/ssl/cert.pem",  # Alpine, BSDs
)
_HEX = frozenset("0123456789abcdef")


def hashed_directory() -> str | None:
    """Where to look CA certificates up lazily: SSL_CERT_DIR (the function's; OpenSSL reads
    it as a list, like PATH) if one of its directories holds a hash link, else the first of
    the interpreter's default directory and CA_DIRECTORIES that does; None when the function
    names its own bundle file (SSL_CERT_FILE) or none does."""
    if os.environ.get("SSL_CERT_FILE"):
        return None
    named = os.environ.get("SSL_CERT_DIR", "")
    if any(holds_hash_links(directory) for directory in named.split(os.pathsep) if directory):
        return named
    from . import tls  # noqa: PLC0415 -- a context is about to be made: the caller needs it

    for directory in (tls.openssl_capath(), *CA_DIRECTORIES):
        if holds_hash_links(directory):
            return directory
    return None


def holds_hash_links(directory: str) -> bool:
    """Whether `directory` holds a file named as OpenSSL's lookup names them (`9d6523ce.0`):
    a directory of certificates that nobody hashed would verify nothing. Stops at the first."""
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                name = entry.name
                if (
                    len(name) > 9
                    and name[8] == "."
                    and name[9:].isdigit()
                    and _HEX.issuperset(name[:8])
                ):
                    return True
    except OSError:
        pass
    return False


def client_context(ca_bundle: str | None, directory: str | None) -> _ssl._SSLContext:
    """ssl's default client context, as tls.py makes it (hostname and certificate checked),
    with `ca_bundle` (AWS_CA_BUNDLE) loaded; its other CA certificates looked up lazily in
    `directory`, or with None the system's whole store: ssl's default, and the first of
    CA_BUNDLES when the interpreter's OpenSSL finds no file of its own and the function names
    none."""
    from . import tls  # noqa: PLC0415 -- 3 ms of imports (_ssl) that only https needs

    if directory is not None:
        context = tls.client_context(capath=directory)
    else:
        context = tls.client_context()
        if not os.environ.get("SSL_CERT_FILE") and tls.default_cafile() is None:
            found = next((path for path in CA_BUNDLES if os.access(path, os.R_OK)), None)
            if found is not None:
                context.load_verify_locations(cafile=found)
    if ca_bundle:
        try:
            context.load_verify_locations(cafile=ca_bundle)
        except (OSError, tls.SSLError) as exc:
            raise UpstreamConnectionError(
                f"cannot load AWS_CA_BUNDLE {ca_bundle!r}: {exc}"
            ) from exc
    return context
