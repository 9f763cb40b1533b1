"""`relto peer`: the nodes this node follows (docs/federation.md)."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import click
import orjson

from relto import admin
from relto.cli.common import err, node_options
from relto.federation import peers


@click.group()
def peer() -> None:
    """Follow other nodes: add, list and remove peers (`relto serve` keeps them in sync)."""


@peer.command("add")
@node_options
@click.argument("name")
@click.argument("url")
@click.option("--token", required=True, envvar="RELTO_PEER_TOKEN", help="The token the peer issued for this node.")
@click.option(
    "--fingerprint", default="", help="Pin the peer's TLS certificate (SHA-256, as `relto init --tls` printed)."
)
@click.option(
    "--speaks-for",
    default="",
    metavar="LIST",
    help="The nations (and communities) whose versions it may deliver; default: the peer node's own nation.",
)
def peer_add(
    data: Path | None, database: str | None, name: str, url: str, token: str, fingerprint: str, speaks_for: str
) -> None:
    """Follow the node at URL as NAME, with the token it issued for this node (`relto token issue --peer`)."""
    with closing(admin.open_node(data, database)) as node:
        added = peers.add_peer(node, name, url, token, fingerprint=fingerprint, speaks_for=speaks_for)
    p = added.peer
    if added.warning:
        err(f"Warning: {added.warning}.")
    who = f"node {p.remote_node} of {p.remote_nation}" if p.remote_node else "a node not reached yet"
    speaks = p.speaks_for or (p.remote_nation or "its own nation (learned on first contact)")
    err(f"Following {name} at {p.url}: {who}; it may deliver versions of {speaks}.")
    if p.fingerprint:
        err(f"Its certificate is pinned: {p.fingerprint}")
    err("`relto serve` keeps it in sync; `relto peer list` shows how it goes.")


@peer.command("list")
@node_options
@click.option("--json", "as_json", is_flag=True, help="One JSON document (a list of peers).")
def peer_list(data: Path | None, database: str | None, as_json: bool) -> None:
    """Each peer: name, url, state, lag (seconds), objects received, cursor, last error."""
    with closing(admin.open_node(data, database)) as node:
        views = [peers.peer_view(p) for p in node.store.peers()]
    if as_json:
        click.echo(orjson.dumps(views, option=orjson.OPT_INDENT_2).decode())
        return
    if not views:
        err("No peers: add one with `relto peer add --data DIR NAME URL --token TOKEN`.")
        return
    for v in views:
        line = (
            f"{v['name']}\t{v['url']}\t{v['state']}\tlag {v['lag_seconds']}s\treceived {v['received']}"
            f"\trefused {v['refused']}\tcursor {v['cursor'] or '-'}"
        )
        if v["last_error"]:
            line += f"\terror: {v['last_error']}"
        if v["refused"] and v["last_refusal"]:
            line += f"\tlast refused: {v['last_refusal']}"
        click.echo(line)


@peer.command("remove")
@node_options
@click.argument("name")
def peer_remove(data: Path | None, database: str | None, name: str) -> None:
    """Stop following peer NAME (what it sent stays; re-adding starts from the beginning)."""
    with closing(admin.open_node(data, database)) as node:
        peers.remove_peer(node, name)
    err(f"No longer following {name}.")
