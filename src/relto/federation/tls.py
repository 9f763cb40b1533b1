"""TLS between nodes: a node's own self-signed certificate, and pinning a peer's certificate by its fingerprint.

Coalition nodes do not share a certificate authority, and a public CA says nothing about which nation runs a node.
So a node makes its own certificate, and its operator gives the SHA-256 fingerprint to peer operators over a
channel they already trust; a peer then trusts that one certificate and nothing else. The TLS handshake proves
possession of the private key, so a node that merely replays the certificate cannot pass.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import socket
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from relto.domain.errors import ConfigurationError, InvalidValue, ReltoError

TLS_FOLDER = "tls"
CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
DEFAULT_HOSTS = ("localhost", "127.0.0.1")
VALID_FOR = timedelta(days=3650)
CLOCK_SKEW = timedelta(minutes=5)
FINGERPRINT_HEX = 64
HTTPS_PORT = 443


class CertificateExists(ConfigurationError):
    """A certificate or key is already there: relto never overwrites one (peers have pinned it)."""


class PeerUnreachable(ReltoError):
    """No TLS handshake with the peer: wrong address, not serving, or not serving TLS."""


class CertificateMismatch(ReltoError):
    """The peer presented a certificate other than the pinned one."""


def tls_paths(folder: Path) -> tuple[Path, Path]:
    """Where a node's certificate and private key live inside its data directory."""
    return folder / TLS_FOLDER / CERT_FILE, folder / TLS_FOLDER / KEY_FILE


def check_free(folder: Path) -> None:
    """Refuse before anything is written when a certificate or key already exists (so `init --tls` fails early)."""
    for path in tls_paths(folder):
        if path.exists():
            raise CertificateExists(
                f"{path} already exists: relto does not overwrite a node's certificate or key, since peers have "
                "pinned its fingerprint. Use it as it is, or move it away first (peers must then re-pin)"
            )


def create_certificate(folder: Path, hosts: Sequence[str] = DEFAULT_HOSTS) -> tuple[Path, Path, str]:
    """Write a new self-signed certificate and its key under folder/tls; return (cert, key, fingerprint).

    EC P-256, SubjectAltName from `hosts`, valid ten years, and CA:true so that it is its own trust anchor (peers
    load it as the one CA they trust). The key is created 0600 in a 0700 folder, and never overwritten.
    """
    if not hosts:
        raise InvalidValue("a certificate needs at least one host name or address: give --host")
    check_free(folder)
    cert_path, key_path = tls_paths(folder)
    cert_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_path.parent.chmod(0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _self_signed(key, hosts)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_new(key_path, key_pem, 0o600)
    _write_new(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path, fingerprint(cert.public_bytes(serialization.Encoding.DER))


def _self_signed(key: ec.EllipticCurvePrivateKey, hosts: Sequence[str]) -> x509.Certificate:
    """The certificate itself: strict verifiers (OpenSSL's X509_STRICT) want the key identifiers and usages."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.now(UTC)
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.SubjectAlternativeName([_general_name(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _general_name(host: str) -> x509.GeneralName:
    """An IP address entry for an address, a DNS entry otherwise (clients match IPs only against IP entries)."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not host or any(c.isspace() or c in "/:@" for c in host):
        raise InvalidValue(f"{host!r} is neither a host name nor an IP address: give e.g. node.example.org")
    return x509.DNSName(host)


def _write_new(path: Path, content: bytes, mode: int) -> None:
    """Create `path` with `mode` from the start (no window where a key is readable), failing if it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise CertificateExists(f"{path} already exists: relto does not overwrite it; move it away first") from None
    with os.fdopen(fd, "wb") as f:
        f.write(content)
    os.chmod(path, mode)  # the umask may have narrowed it; make it exactly what was asked


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate as 'ab:cd:...': the form operators read to each other and paste back."""
    return ":".join(f"{b:02x}" for b in hashlib.sha256(der).digest())


def normalise_fingerprint(text: str) -> str:
    """A fingerprint as given by a person (colons or not, any case, 'sha256:' or not) in fingerprint()'s form."""
    bare = text.strip().lower().removeprefix("sha256:").strip().replace(":", "")
    if len(bare) != FINGERPRINT_HEX or any(c not in "0123456789abcdef" for c in bare):
        raise InvalidValue(
            f"{text!r} is not a SHA-256 fingerprint: give 64 hex digits, with or without colons, as "
            "`relto tls fingerprint cert.pem` prints on the peer's node"
        )
    return ":".join(bare[i : i + 2] for i in range(0, FINGERPRINT_HEX, 2))


def certificate_fingerprint(path: Path) -> str:
    """The fingerprint of the (first) certificate in a PEM or DER file."""
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise InvalidValue(f"cannot read {path}: {exc.strerror or exc}") from None
    return fingerprint(_certificate(content, str(path)).public_bytes(serialization.Encoding.DER))


def _certificate(content: bytes, where: str) -> x509.Certificate:
    """One certificate from PEM or DER bytes."""
    try:
        if b"-----BEGIN" in content:
            return x509.load_pem_x509_certificate(content)
        return x509.load_der_x509_certificate(content)
    except ValueError:
        raise InvalidValue(f"{where} holds no certificate (PEM or DER): give the node's cert.pem") from None


def _https_address(url: str) -> tuple[str, int]:
    """Host and port of an https URL (pinning means nothing over plain HTTP)."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise InvalidValue(f"{url!r} is not an https URL: a pinned peer is reached as https://HOST:PORT/")
    try:
        port = parts.port or HTTPS_PORT
    except ValueError:
        raise InvalidValue(f"{url!r} has no valid port: give https://HOST:PORT/") from None
    return parts.hostname, port


def presented_certificate(url: str, timeout: float = 10.0) -> bytes:
    """The DER certificate the node at `url` presents, from a bare TLS handshake.

    Nothing is verified here (the caller compares fingerprints) and no HTTP request is sent, so no token or
    other secret reaches a node that may not be the one intended.
    """
    host, port = _https_address(url)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ValueError) as exc:  # ssl.SSLError and timeouts are OSErrors
        raise PeerUnreachable(
            f"no TLS handshake with {host}:{port} ({url}): {exc}. Check the address and that the node serves "
            "TLS (relto serve --tls-cert FILE --tls-key FILE)"
        ) from None
    if not der:
        raise PeerUnreachable(f"the node at {url} presented no certificate: it is not serving relto's TLS")
    return der


def _mismatch(url: str, presented: str, pinned: str) -> str:
    """What to tell the operator when a peer's certificate is not the pinned one."""
    return (
        f"the node at {url} presented a certificate with SHA-256 fingerprint {presented}, not the pinned {pinned}: "
        "it is not the node you pinned (or its certificate changed); check with its operator, then re-add the "
        "peer with the new --fingerprint"
    )


def pin(url: str, expected_fingerprint: str) -> str:
    """The PEM of the certificate the node at `url` presents, if its fingerprint is the expected one."""
    expected = normalise_fingerprint(expected_fingerprint)
    der = presented_certificate(url)
    presented = fingerprint(der)
    if not hmac.compare_digest(presented, expected):
        raise CertificateMismatch(_mismatch(url, presented, expected))
    return ssl.DER_cert_to_PEM_cert(der)


def pinned_context(pem: str) -> ssl.SSLContext:
    """A client context that trusts exactly this one certificate (and no system CA).

    Host names are not checked: the pin is the identity. A peer passes only if it proves it holds the pinned
    certificate's private key, in the handshake itself.
    """
    certificates = x509.load_pem_x509_certificates(pem.encode()) if "-----BEGIN" in pem else []
    if len(certificates) != 1:
        raise InvalidValue(f"a pinned certificate is one PEM certificate; this text holds {len(certificates)}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=pem)
    return context


def client_verify(url: str, pem: str | None) -> ssl.SSLContext | bool:
    """What to give httpx as verify=: the pin when there is one, else the system's CAs (unused for http://)."""
    if pem is not None and urlsplit(url).scheme == "https":
        return pinned_context(pem)
    return True


def explain_tls_failure(url: str, pinned_pem: str) -> str:
    """After a handshake with a pinned peer failed: name both fingerprints, or say why the peer is unreachable."""
    pinned = fingerprint(ssl.PEM_cert_to_DER_cert(pinned_pem))
    try:
        presented = fingerprint(presented_certificate(url))
    except ReltoError as exc:
        return exc.message
    if not hmac.compare_digest(presented, pinned):
        return _mismatch(url, presented, pinned)
    return (
        f"the node at {url} presents the pinned certificate ({pinned}) but the TLS handshake failed: the certificate "
        "may have expired, or the node could not prove it holds the key; check with its operator"
    )


def check_server_files(cert: Path, key: Path) -> None:
    """Fail with a clear message before serving when the certificate and key do not load or do not match."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot serve TLS with {cert} and {key}: {exc}. Give the cert.pem and key.pem that "
            "`relto tls create` wrote (the same pair)"
        ) from None
