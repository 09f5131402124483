"""The trust store: CA certificates looked up lazily in a hashed directory, the whole store
after a miss there, and the variables that name CA files keeping their meaning.

Upstream is a real TLS server (the fault proxy with a test CA's certificate, in front of a
stdlib echo server or moto); the hashed directories are made here with OpenSSL's own names
(`openssl x509 -hash`). What a context holds is read from OpenSSL (`cert_store_stats()`):
a lazy store holds no CA until a chain asks for one, the whole store holds every one at once.
The fallback is also seen from outside, in the real extension process, in a private mount
namespace where the test CA is the system's CA bundle but not in its hashed directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import node_sandbox
from parameters_secrets_extension.aws import trust_store
from parameters_secrets_extension.aws.connection_pool import ConnectionPool, TlsSettings
from parameters_secrets_extension.errors import TlsVerificationError
from tests import log_capture
from tests.conftest import SECRET_STRING_V2, LambdaCredentials, Moto, fresh_python
from tests.echo_upstream import serving_echo
from tests.fault_proxy import FaultProxy
from tests.hardening_support import secret_path, start_standalone
from tests.host_tools import require, require_namespaces
from tests.tls_certs import make_pki

FALLBACK_LINE = "not verified with the CA directory"


@pytest.fixture(scope="module")
def echo() -> Iterator[tuple[str, int]]:
    with serving_echo() as address:
        yield address


@pytest.fixture
def no_cert_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither SSL_CERT_FILE nor SSL_CERT_DIR, as on Lambda (this machine may set both)."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


def openssl() -> str:
    return require("openssl", "openssl")


def hashed(directory: Path, *cas: Path) -> Path:
    """`directory` holding each CA certificate under OpenSSL's name for it (<hash>.0)."""
    directory.mkdir()
    for ca in cas:
        name = subprocess.run(
            [openssl(), "x509", "-hash", "-noout", "-in", str(ca)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        shutil.copyfile(ca, directory / f"{name}.0")
    return directory


def post(pool: ConnectionPool, body: bytes) -> bytes:
    response = pool.request("POST", "/p", {"Content-Type": "text/plain"}, body)
    assert response.status == 200
    return response.body


def cas_held(tls: TlsSettings) -> int:
    return tls.context().cert_store_stats()["x509_ca"]


def fallback_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if FALLBACK_LINE in line]


# --- which directory --------------------------------------------------------------------------


def test_the_aws_client_imports_no_ssl_until_an_https_origin_needs_it() -> None:
    # ssl's imports (about 5 ms of CPU) come with the first TLS context, never before.
    output = fresh_python(
        "from parameters_secrets_extension.aws import operations, trust_store\n"
        "assert trust_store.holds_hash_links('/nonexistent') is False\n"
        "print(sorted({'ssl', '_ssl'} & set(sys.modules)))\n"
    )
    assert output.strip() == "[]"


def test_a_directory_counts_only_with_a_hash_link(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert not trust_store.holds_hash_links(str(plain))
    for name in ("ca.pem", "README", "9d6523ce.r0", "9d6523cg.0", "9d6523ce.", "9d6523ce0"):
        (plain / name).write_text("x")  # a CRL's link (.r0), not hex, no digit, no dot
    assert not trust_store.holds_hash_links(str(plain))
    assert not trust_store.holds_hash_links(str(tmp_path / "absent"))
    (plain / "9d6523ce.1").write_text("x")
    assert trust_store.holds_hash_links(str(plain))


@pytest.mark.usefixtures("no_cert_variables")
def test_the_functions_variables_come_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pki = make_pki(tmp_path, "dir")
    links = hashed(tmp_path / "links", pki.ca_file)
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copyfile(pki.ca_file, plain / "ca.pem")
    # SSL_CERT_DIR is a list, given to OpenSSL whole when one of its directories is hashed.
    listed = f"{plain}{os.pathsep}{links}"
    monkeypatch.setenv("SSL_CERT_DIR", listed)
    assert trust_store.hashed_directory() == listed
    # Without a hash link it is passed over for the system's places.
    monkeypatch.setenv("SSL_CERT_DIR", str(plain))
    assert trust_store.hashed_directory() != str(plain)
    # A bundle file named by the function makes the store the whole one, that file in it.
    monkeypatch.setenv("SSL_CERT_DIR", str(links))
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca_file))
    assert trust_store.hashed_directory() is None


# --- the lazy store -------------------------------------------------------------------------


@pytest.mark.usefixtures("no_cert_variables")
def test_the_hashed_directory_is_read_only_for_the_ca_a_chain_asks_for(
    echo: tuple[str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trusted = make_pki(tmp_path, "trusted")
    others = [make_pki(tmp_path, f"other{n}").ca_file for n in range(3)]
    directory = hashed(tmp_path / "certs", *others, trusted.ca_file)
    monkeypatch.setenv("SSL_CERT_DIR", str(directory))
    tls = TlsSettings(None)
    assert cas_held(tls) == 0  # nothing parsed before the first handshake
    with (
        log_capture.captured("debug") as logged,
        FaultProxy(*echo, ssl_context=trusted.server_context()) as upstream,
    ):
        pool = ConnectionPool(f"https://127.0.0.1:{upstream.port}", max_connections=2, tls=tls)
        assert post(pool, b"lazy") == b"echo:/p:lazy"
        pool.close()
        assert upstream.connections_accepted == 1
    assert cas_held(tls) == 1  # the one CA of the chain, of four in the directory
    assert fallback_lines(logged.getvalue()) == []


@pytest.mark.usefixtures("no_cert_variables")
def test_aws_ca_bundle_is_loaded_beside_the_lazy_directory(
    echo: tuple[str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trusted = make_pki(tmp_path, "trusted")
    other = make_pki(tmp_path, "other")
    monkeypatch.setenv("SSL_CERT_DIR", str(hashed(tmp_path / "certs", other.ca_file)))
    tls = TlsSettings(str(trusted.ca_file))
    assert cas_held(tls) == 1  # AWS_CA_BUNDLE's one certificate, and not the system's
    with (
        log_capture.captured("debug") as logged,
        FaultProxy(*echo, ssl_context=trusted.server_context()) as upstream,
    ):
        pool = ConnectionPool(f"https://127.0.0.1:{upstream.port}", max_connections=2, tls=tls)
        assert post(pool, b"bundle") == b"echo:/p:bundle"
        pool.close()
        assert upstream.connections_accepted == 1
    assert fallback_lines(logged.getvalue()) == []


@pytest.mark.usefixtures("no_cert_variables")
def test_ssl_cert_file_keeps_its_meaning(
    echo: tuple[str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The function's own bundle is loaded whole, as OpenSSL loads it, hashed directory or not.
    trusted = make_pki(tmp_path, "trusted")
    other = make_pki(tmp_path, "other")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(other.ca_file.read_bytes() + trusted.ca_file.read_bytes())
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.setenv("SSL_CERT_DIR", str(hashed(tmp_path / "certs", other.ca_file)))
    tls = TlsSettings(None)
    assert cas_held(tls) == 2
    with (
        log_capture.captured("debug") as logged,
        FaultProxy(*echo, ssl_context=trusted.server_context()) as upstream,
    ):
        pool = ConnectionPool(f"https://127.0.0.1:{upstream.port}", max_connections=2, tls=tls)
        assert post(pool, b"file") == b"echo:/p:file"
        pool.close()
        assert upstream.connections_accepted == 1
    assert fallback_lines(logged.getvalue()) == []


# --- after a miss: the whole store ----------------------------------------------------------


@pytest.mark.usefixtures("no_cert_variables")
def test_an_untrusted_certificate_is_refused_by_the_whole_store_too(
    echo: tuple[str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The directory lacks the stranger's CA, and so does the system's whole store: after
    # one more connection with the whole store, the same 502 as without a directory.
    stranger = make_pki(tmp_path, "stranger")
    other = make_pki(tmp_path, "other")
    directory = hashed(tmp_path / "certs", other.ca_file)
    monkeypatch.setenv("SSL_CERT_DIR", str(directory))
    tls = TlsSettings(None)
    with (
        log_capture.captured("debug") as logged,
        FaultProxy(*echo, ssl_context=stranger.server_context()) as upstream,
    ):
        pool = ConnectionPool(f"https://127.0.0.1:{upstream.port}", max_connections=2, tls=tls)
        with pytest.raises(TlsVerificationError) as caught:
            post(pool, b"x")
        assert caught.value.status == 502
        assert "not trusted" in caught.value.message
        assert (upstream.connections_accepted, upstream.requests_received) == (2, 0)
        (line,) = fallback_lines(logged.getvalue())
        assert "INFO" in line and str(directory) in line
        # The whole store is kept: the next connection is refused at once, and not logged.
        assert cas_held(tls) > 1
        with pytest.raises(TlsVerificationError):
            post(pool, b"x")
        assert (upstream.connections_accepted, upstream.requests_received) == (3, 0)
        assert len(fallback_lines(logged.getvalue())) == 1


def test_the_extension_falls_back_to_the_bundle_that_holds_the_ca(
    extension_executable: Path,
    moto: Moto,
    lambda_credentials: LambdaCredentials,
    tmp_path: Path,
    no_cert_variables: None,
) -> None:
    # In a private mount namespace the test CA is the system's CA bundle (every bundle file
    # bind-mounted with it), while the system's hashed directory holds the real CAs: the
    # first chain fails against the directory, the whole store verifies it on a second
    # connection, with one INFO line; the function gets its answer.
    require_namespaces()
    if trust_store.hashed_directory() is None:
        pytest.skip("no hashed CA directory on this machine: the store is the whole one")
    pki = make_pki(tmp_path, "system")
    wrapper = node_sandbox.isolated(extension_executable, tmp_path / "ext", ca_bundle=pki.ca_file)
    with FaultProxy(moto.host, moto.port, ssl_context=pki.server_context()) as upstream:
        endpoint = f"https://127.0.0.1:{upstream.port}"
        with start_standalone(
            wrapper, tmp_path / "extension.log", moto, lambda_credentials, endpoint=endpoint
        ) as ext:
            status, body = ext.get_json(secret_path(moto.secret_name))
            assert (status, body.get("SecretString")) == (200, SECRET_STRING_V2), ext.output()
            assert (upstream.connections_accepted, upstream.requests_received) == (2, 1)
            status, body = ext.get_json(secret_path(moto.secret_name) + "&versionStage=AWSPREVIOUS")
            assert status in (200, 404), body  # a second miss, whatever moto holds for it
            assert upstream.requests_received == 2
            (line,) = fallback_lines(ext.output())
            assert "INFO" in line
            assert "Traceback" not in ext.output()
