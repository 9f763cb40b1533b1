"""TLS and certificate pinning: the node's own certificate, the fingerprint peers pin, and the pin enforced by the
TLS handshake itself between real `relto serve` processes (not only by the fingerprint comparison in pin())."""

from __future__ import annotations

import os
import re
import socket
import ssl
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from cryptography import x509

from relto.cli import main
from relto.domain.errors import ConfigurationError, InvalidValue
from relto.federation.tls import (
    CertificateExists,
    CertificateMismatch,
    PeerUnreachable,
    check_server_files,
    client_verify,
    create_certificate,
    explain_tls_failure,
    fingerprint,
    normalise_fingerprint,
    pin,
    pinned_context,
    presented_certificate,
)
from tests.conftest import Database, Server, free_port, start_server

FINGERPRINT_LINE = re.compile(r"^SHA-256 fingerprint: ((?:[0-9a-f]{2}:){31}[0-9a-f]{2})$", re.MULTILINE)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """The real `relto` command, with its stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "relto", *args], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )


def der_of(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


# -- the certificate -----------------------------------------------------------------------------------------


def test_create_certificate_writes_a_private_key_and_a_self_signed_anchor(tmp_path: Path) -> None:
    cert_path, key_path, fp = create_certificate(tmp_path / "node", ("node.example.org", "10.1.2.3"))
    assert cert_path == tmp_path / "node" / "tls" / "cert.pem"
    assert key_path == tmp_path / "node" / "tls" / "key.pem"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_path.parent.stat().st_mode) == 0o700
    assert fp == fingerprint(der_of(cert_path))
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["node.example.org"]
    assert names.get_values_for_type(x509.IPAddress) == [ip_address("10.1.2.3")]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.issuer == cert.subject
    lifetime = cert.not_valid_after_utc - datetime.now(UTC)
    assert timedelta(days=3640) < lifetime <= timedelta(days=3650)
    check_server_files(cert_path, key_path)  # the pair loads as a server's


def test_create_certificate_never_overwrites(tmp_path: Path) -> None:
    cert_path, key_path, _ = create_certificate(tmp_path)
    before = cert_path.read_bytes(), key_path.read_bytes()
    with pytest.raises(CertificateExists, match="already exists"):
        create_certificate(tmp_path)
    cert_path.unlink()  # a key alone is still someone's key
    with pytest.raises(CertificateExists, match=r"key\.pem already exists"):
        create_certificate(tmp_path)
    assert key_path.read_bytes() == before[1]


def test_a_mismatched_certificate_and_key_are_refused_before_serving(tmp_path: Path) -> None:
    cert_a, _, _ = create_certificate(tmp_path / "a")
    _, key_b, _ = create_certificate(tmp_path / "b")
    with pytest.raises(ConfigurationError, match="relto tls create"):
        check_server_files(cert_a, key_b)


def test_host_names_are_checked(tmp_path: Path) -> None:
    with pytest.raises(InvalidValue, match="neither a host name nor an IP"):
        create_certificate(tmp_path, ("https://node.example.org/",))
    assert not (tmp_path / "tls" / "key.pem").exists()


# -- fingerprints -------------------------------------------------------------------------------------------

HEX = "AB" * 32
CANONICAL = ":".join(["ab"] * 32)


@pytest.mark.parametrize(
    "given", [HEX, HEX.lower(), CANONICAL, CANONICAL.upper(), f"sha256:{HEX}", f" SHA256:{CANONICAL} "]
)
def test_normalise_fingerprint_accepts_the_usual_forms(given: str) -> None:
    assert normalise_fingerprint(given) == CANONICAL


@pytest.mark.parametrize("given", ["", "ab" * 31, "ab" * 33, "zz" * 32, "md5:" + "ab" * 32, "ab " * 32])
def test_normalise_fingerprint_refuses_anything_else(given: str) -> None:
    with pytest.raises(InvalidValue, match="not a SHA-256 fingerprint"):
        normalise_fingerprint(given)


def test_fingerprint_is_sha256_in_colon_pairs() -> None:
    assert fingerprint(b"") == normalise_fingerprint("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


# -- reaching a peer ----------------------------------------------------------------------------------------


def test_presented_certificate_sends_no_http_request(tmp_path: Path) -> None:
    """The handshake alone: a node that is not the pinned one never sees a request, so never a token."""
    cert, key, fp = create_certificate(tmp_path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    received: list[bytes] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def accept() -> None:
            conn, _ = listener.accept()
            with server.wrap_socket(conn, server_side=True) as tls:
                tls.settimeout(5)
                chunks = []
                try:
                    while data := tls.recv(4096):
                        chunks.append(data)
                except OSError:  # the client hangs up without close_notify
                    pass
                received.append(b"".join(chunks))

        thread = threading.Thread(target=accept)
        thread.start()
        der = presented_certificate(f"https://127.0.0.1:{port}/taxii2/")
        thread.join(10)
    assert fingerprint(der) == fp
    assert received == [b""]


def test_an_unreachable_peer_is_named() -> None:
    url = f"https://127.0.0.1:{free_port()}/"
    with pytest.raises(PeerUnreachable, match=r"no TLS handshake with 127\.0\.0\.1"):
        presented_certificate(url, timeout=2)


def test_pinning_needs_https() -> None:
    with pytest.raises(InvalidValue, match="not an https URL"):
        pin("http://127.0.0.1:8000/", CANONICAL)


def test_client_verify(tmp_path: Path) -> None:
    cert, _, _ = create_certificate(tmp_path)
    pem = cert.read_text()
    context = client_verify("https://peer.example.org:8443/", pem)
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and not context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert client_verify("https://peer.example.org/", None) is True
    assert client_verify("http://127.0.0.1:8000/", None) is True


def test_pinned_context_takes_exactly_one_certificate(tmp_path: Path) -> None:
    a, _, _ = create_certificate(tmp_path / "a")
    b, _, _ = create_certificate(tmp_path / "b")
    with pytest.raises(InvalidValue, match="holds 2"):
        pinned_context(a.read_text() + b.read_text())
    with pytest.raises(InvalidValue, match="holds 0"):
        pinned_context("not a certificate")


# -- the command line ---------------------------------------------------------------------------------------


def test_init_tls_needs_a_data_directory(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["init", "--database", f"sqlite:///{tmp_path}/x.db", "--nation", "GBR", "--tls"], env={}
    )
    assert result.exit_code == 2
    assert "--tls needs --data: the certificate is written there" in result.output
    assert not (tmp_path / "x.db").exists()  # refused before anything was made


def test_serve_takes_certificate_and_key_together(tmp_path: Path) -> None:
    cert, _, _ = create_certificate(tmp_path)
    result = CliRunner().invoke(main, ["serve", "--data", str(tmp_path), "--tls-cert", str(cert)], env={})
    assert result.exit_code == 2
    assert "--tls-cert and --tls-key go together" in result.output


def test_tls_create_refuses_an_existing_certificate_and_names_hosts(tmp_path: Path) -> None:
    done = run("tls", "create", "--data", str(tmp_path), "--host", "relto.gbr.example", "--host", "192.0.2.7")
    assert done.returncode == 0, done.stderr
    found = FINGERPRINT_LINE.search(done.stderr)
    assert found is not None and found[1] == fingerprint(der_of(tmp_path / "tls" / "cert.pem"))
    assert "relto.gbr.example, 192.0.2.7" in done.stderr
    again = run("tls", "create", "--data", str(tmp_path))
    assert again.returncode == 2
    assert "already exists" in again.stderr and "Traceback" not in again.stderr


# -- two real nodes over TLS --------------------------------------------------------------------------------


@dataclass
class TLSNode:
    """A `relto serve` over HTTPS, as `relto init --tls` made it."""

    server: Server
    cert: Path
    fingerprint: str
    init_output: str

    @property
    def pem(self) -> str:
        return self.cert.read_text()

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.server.admin}"}


def start_tls_node(folder: Path) -> TLSNode:
    data = folder / "node"
    done = run("init", "--data", str(data), "--nation", "GBR", "--tls")
    assert done.returncode == 0, done.stderr
    found = FINGERPRINT_LINE.search(done.stderr)
    assert found is not None, done.stderr
    cert, key = data / "tls" / "cert.pem", data / "tls" / "key.pem"
    db = Database("sqlite", ("--data", str(data)))
    tls = pinned_context(cert.read_text())
    server = start_server(db, done.stdout.strip(), "--tls-cert", str(cert), "--tls-key", str(key), logs=folder, tls=tls)
    return TLSNode(server, cert, found[1], done.stderr)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TLSNode, TLSNode]]:
    first = start_tls_node(tmp_path_factory.mktemp("first"))
    try:
        second = start_tls_node(tmp_path_factory.mktemp("second"))
    except BaseException:
        first.server.stop()
        raise
    try:
        yield first, second
    finally:
        first.server.stop()
        second.server.stop()


def test_init_tls_prints_the_fingerprint_tls_fingerprint_prints(nodes: tuple[TLSNode, TLSNode]) -> None:
    node, _ = nodes
    assert node.fingerprint == fingerprint(der_of(node.cert))
    assert str(node.cert) in node.init_output
    done = run("tls", "fingerprint", str(node.cert))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == node.fingerprint


def test_pin_returns_the_certificate_of_the_pinned_node(nodes: tuple[TLSNode, TLSNode]) -> None:
    node, _ = nodes
    pem = pin(node.server.url + "/taxii2/", node.fingerprint)
    assert fingerprint(ssl.PEM_cert_to_DER_cert(pem)) == node.fingerprint
    assert pin(node.server.url, node.fingerprint.replace(":", "").upper()) == pem


def test_a_pinned_client_reads_with_the_admin_token(nodes: tuple[TLSNode, TLSNode]) -> None:
    node, _ = nodes
    pem = pin(node.server.url, node.fingerprint)
    answer = httpx.get(f"{node.server.url}/taxii2/", headers=node.auth(), verify=pinned_context(pem))
    assert answer.status_code == 200, answer.text


def test_another_node_does_not_pass_pin(nodes: tuple[TLSNode, TLSNode]) -> None:
    first, second = nodes
    assert first.fingerprint != second.fingerprint
    with pytest.raises(CertificateMismatch) as caught:
        pin(second.server.url, first.fingerprint)
    message = caught.value.message
    assert second.fingerprint in message and first.fingerprint in message
    assert "--fingerprint" in message


def test_the_handshake_itself_enforces_the_pin(nodes: tuple[TLSNode, TLSNode]) -> None:
    """A client holding node 1's pin cannot talk to node 2 at all: the request (and its token) is never sent."""
    first, second = nodes
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{second.server.url}/taxii2/", headers=first.auth(), verify=pinned_context(first.pem))
    explained = explain_tls_failure(second.server.url, first.pem)
    assert first.fingerprint in explained and second.fingerprint in explained
    with pytest.raises(httpx.ConnectError):  # nor does a self-signed certificate pass the system's CAs
        httpx.get(f"{second.server.url}/taxii2/", verify=True)


def test_explain_names_an_unreachable_peer(nodes: tuple[TLSNode, TLSNode]) -> None:
    first, _ = nodes
    assert "no TLS handshake" in explain_tls_failure(f"https://127.0.0.1:{free_port()}/", first.pem)


def test_plain_http_to_the_tls_port_fails(nodes: tuple[TLSNode, TLSNode]) -> None:
    node, _ = nodes
    with pytest.raises(httpx.TransportError):
        httpx.get(node.server.url.replace("https://", "http://") + "/taxii2/", headers=node.auth(), timeout=5)
