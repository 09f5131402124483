"""aws/tls.py: TLS over _ssl with ssl.create_default_context()'s client settings, on every
Python the layer is built for; its checks against real TLS servers; and, seen from outside
the real extension process (-X importtime, as tests/test_import_order.py does), a TLS miss
answered without ssl.py, hashlib or hmac ever imported.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from parameters_secrets_extension.aws import tls
from parameters_secrets_extension.aws.connection_pool import ConnectionPool, TlsSettings
from parameters_secrets_extension.aws.credentials import CredentialProvider
from parameters_secrets_extension.config import AwsConfig
from parameters_secrets_extension.errors import TlsVerificationError, UpstreamConnectionError
from tests.conftest import ROOT, SECRET_STRING_V2, LambdaCredentials, Moto
from tests.echo_upstream import serving_echo
from tests.fault_proxy import FaultProxy
from tests.hardening_support import secret_path, start_standalone
from tests.test_import_order import PYTHONS, imported, importtime_path
from tests.tls_certs import make_pki

# Every setting of a context that create_default_context or _ssl's constructor decides,
# compared on each Python as that Python's ssl reports it.
COMPARE = r"""
import json, os, ssl, sys
sys.path.insert(0, sys.argv[1])
from parameters_secrets_extension.aws import tls
SETTINGS = ("protocol", "options", "verify_flags", "verify_mode", "check_hostname",
            "minimum_version", "maximum_version", "security_level", "post_handshake_auth",
            "_host_flags", "keylog_filename")
def facts(context):
    found = {name: getattr(context, name) for name in SETTINGS}
    found = {k: v if v is None or isinstance(v, (bool, str)) else int(v) for k, v in found.items()}
    found["ciphers"] = [c["name"] for c in context.get_ciphers()]
    found["store"] = context.cert_store_stats()
    found["ca_names"] = sorted(str(c.get("subject")) for c in context.get_ca_certs())
    return found
ca = {"cafile": sys.argv[2] or None, "capath": sys.argv[3] or None}
ours = facts(tls.client_context(**ca))
theirs = facts(ssl.create_default_context(**ca))
print(json.dumps({"python": sys.version, "ours": ours, "theirs": theirs}))
"""


@pytest.fixture(scope="module")
def echo() -> Iterator[tuple[str, int]]:
    with serving_echo() as address:
        yield address


def _post(pool: ConnectionPool, body: bytes) -> bytes:
    response = pool.request("POST", "/p", {"Content-Type": "text/plain"}, body)
    assert response.status == 200
    return response.body


# --- the context, as ssl makes it ---------------------------------------------------------


@pytest.mark.parametrize("python", sorted(PYTHONS))
@pytest.mark.parametrize("store", ["default", "cafile", "capath", "keylog"])
def test_the_context_is_create_default_contexts(python: str, store: str, tmp_path: Path) -> None:
    pki = make_pki(tmp_path, "ctx")
    env = {"PATH": "/usr/bin:/bin"}
    cafile = capath = ""
    if store == "cafile":
        cafile = str(pki.ca_file)
    elif store == "capath":
        capath = str(tmp_path)
    elif store == "keylog":  # ssl honours SSLKEYLOGFILE outside -I; so does tls.py
        env["SSLKEYLOGFILE"] = str(tmp_path / "keys.log")
    done = subprocess.run(
        [PYTHONS[python], "-c", COMPARE, str(ROOT), cafile, capath],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    found = json.loads(done.stdout)
    assert found["ours"] == found["theirs"], found["python"]
    assert found["ours"]["check_hostname"] is True
    assert found["ours"]["verify_mode"] == 2  # CERT_REQUIRED
    if store == "cafile":
        assert found["ours"]["store"]["x509_ca"] == 1
    if store == "keylog":
        assert found["ours"]["keylog_filename"] == env["SSLKEYLOGFILE"]


def test_the_errors_are_ssls_own_classes() -> None:
    # Whoever catches ssl's exceptions catches tls.py's: _ssl defines them, ssl re-exports them.
    assert tls.SSLError is ssl.SSLError
    assert tls.SSLCertVerificationError is ssl.SSLCertVerificationError


# --- the checks, against real TLS servers -------------------------------------------------


def test_a_certificate_for_another_host_is_refused(echo: tuple[str, int], tmp_path: Path) -> None:
    # Signed by a trusted CA, but for other names than the one connected to.
    elsewhere = make_pki(tmp_path, "elsewhere", hosts=("other.example", "192.0.2.1"))
    with FaultProxy(*echo, ssl_context=elsewhere.server_context()) as upstream:
        tls_settings = TlsSettings(str(elsewhere.ca_file))
        for origin in (f"https://127.0.0.1:{upstream.port}", f"https://localhost:{upstream.port}"):
            pool = ConnectionPool(origin, max_connections=1, tls=tls_settings)
            with pytest.raises(TlsVerificationError) as caught:
                _post(pool, b"x")
            assert "mismatch" in caught.value.message
        assert upstream.requests_received == 0
    # The control: the same CA and proxy, a certificate for the name connected to.
    here = make_pki(tmp_path, "here")
    with FaultProxy(*echo, ssl_context=here.server_context()) as upstream:
        pool = ConnectionPool(
            f"https://localhost:{upstream.port}",
            max_connections=1,
            tls=TlsSettings(str(here.ca_file)),
        )
        assert _post(pool, b"ok") == b"echo:/p:ok"
        pool.close()


def test_no_host_name_is_refused_before_any_handshake(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, "any")
    left, right = socket.socketpair()
    with left, right, pytest.raises(ValueError, match="server_hostname"):
        tls.connect(tls.client_context(cafile=str(pki.ca_file)), left, b"")


def test_a_close_without_close_notify_ends_a_close_delimited_body(tmp_path: Path) -> None:
    # A server that ends its answer by closing the TCP connection without TLS's close_notify:
    # the body so far is the answer, as ssl's default suppress_ragged_eofs reads it.
    pki = make_pki(tmp_path, "ragged")
    server_context = pki.server_context()
    listener = socket.create_server(("127.0.0.1", 0))
    answer = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nwhole body"

    def serve() -> None:
        conn, _ = listener.accept()
        with server_context.wrap_socket(conn, server_side=True) as tls_conn:
            tls_conn.recv(65536)
            tls_conn.sendall(answer)
            raw = tls_conn.detach()  # no close_notify: the bare TCP close
        socket.socket(fileno=raw).close()

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        pool = ConnectionPool(
            f"https://127.0.0.1:{listener.getsockname()[1]}",
            max_connections=1,
            tls=TlsSettings(str(pki.ca_file)),
        )
        assert _post(pool, b"x") == b"whole body"
    finally:
        server.join(10)
        listener.close()


# --- container credentials over https -----------------------------------------------------


@pytest.fixture
def https_credentials(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A container credentials provider over TLS on 127.0.0.1:0: (its URI, its CA file)."""
    pki = make_pki(tmp_path, "provider")
    body = json.dumps(
        {"AccessKeyId": "ASIATLS", "SecretAccessKey": "tls-secret", "Token": "tls-token"}
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = pki.server_context().wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"https://localhost:{server.server_address[1]}/v1/credentials", pki.ca_file
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_container_credentials_over_https(
    https_credentials: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, ca_file = https_credentials
    aws = AwsConfig(container_credentials_full_uri=uri)
    # The provider's CA in the system's store (SSL_CERT_FILE, as a function may set it).
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    creds = CredentialProvider(aws, timeout=5.0).get()
    assert (creds.access_key, creds.secret_key) == ("ASIATLS", "tls-secret")
    # Another CA's store refuses the provider's certificate.
    monkeypatch.setenv("SSL_CERT_FILE", str(make_pki(tmp_path, "other").ca_file))
    with pytest.raises(UpstreamConnectionError) as caught:
        CredentialProvider(aws, timeout=5.0).get()
    assert "SSLCertVerificationError" in caught.value.message


# --- seen from outside: the first answer of a TLS miss --------------------------------------


@pytest.mark.parametrize("python", sorted(PYTHONS))
def test_a_tls_miss_is_answered_without_ssl_hashlib_or_hmac(
    python: str,
    extension_executable: Path,
    moto: Moto,
    lambda_credentials: LambdaCredentials,
    tmp_path: Path,
) -> None:
    # ssl.py costs 3-6 ms of CPU over _ssl, hashlib and hmac 2-3 ms over the built-in SHA-256:
    # none of them may be imported on the way to the function's first answer.
    path = importtime_path(PYTHONS[python], tmp_path)
    pki = make_pki(tmp_path, "upstream")
    with FaultProxy(moto.host, moto.port, ssl_context=pki.server_context()) as upstream:
        with start_standalone(
            extension_executable,
            tmp_path / "extension.log",
            moto,
            lambda_credentials,
            endpoint=f"https://127.0.0.1:{upstream.port}",
            AWS_CA_BUNDLE=str(pki.ca_file),
            PATH=path,
        ) as ext:
            status, body = ext.get_json(secret_path(moto.secret_name))
            at_answer = ext.output()
        assert (status, body.get("SecretString")) == (200, SECRET_STRING_V2), at_answer
        assert upstream.requests_received == 1  # the answer came over TLS
    loaded = {name for _, name in imported(at_answer)}
    assert "_ssl" in loaded, at_answer  # -X importtime took effect, and TLS was _ssl's
    assert not {"ssl", "hashlib", "hmac", "_hashlib"} & loaded
