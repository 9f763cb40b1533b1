"""`relto tls`: a node's own certificate for serving HTTPS, and the fingerprint peers pin."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from relto.cli.common import err
from relto.federation.tls import DEFAULT_HOSTS, certificate_fingerprint, create_certificate


def write_certificate(data: Path, hosts: Sequence[str]) -> None:
    """Create the node's certificate and tell the operator where it is and what fingerprint to hand to peers."""
    cert, key, fingerprint = create_certificate(data, hosts)
    err(f"Wrote a self-signed TLS certificate for {', '.join(hosts)}, valid for 10 years:")
    err(f"  certificate: {cert}")
    err(f"  private key: {key} (0600: keep it on this machine, never copy it to peers)")
    err(f"Serve HTTPS with: relto serve --data {data} --tls-cert {cert} --tls-key {key}")
    err("Give peer operators the fingerprint below over a channel you trust (not the network it protects):")
    err(f"SHA-256 fingerprint: {fingerprint}")


@click.group()
def tls() -> None:
    """The node's TLS certificate: create it, print its fingerprint."""


@tls.command("create")
@click.option(
    "--data",
    envvar="RELTO_DATA",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The node's data directory; the certificate goes in DIR/tls/. Env: RELTO_DATA.",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    help="A DNS name or IP address peers reach this node by (repeat; default: localhost and 127.0.0.1).",
)
def tls_create(data: Path, hosts: tuple[str, ...]) -> None:
    """Create a self-signed certificate and key in DIR/tls/ and print its fingerprint.

    Never overwrites an existing certificate or key: peers have pinned its fingerprint.
    """
    write_certificate(data, hosts or DEFAULT_HOSTS)


@tls.command("fingerprint")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
def tls_fingerprint(file: Path) -> None:
    """Print a certificate's SHA-256 fingerprint alone on stdout.

    FILE is PEM or DER (a node's DIR/tls/cert.pem, or a certificate a peer sent you).
    """
    click.echo(certificate_fingerprint(file))
