"""The `relto` command: a thin shell over relto.admin; `mark` and `audit` live in modules of their own."""

from __future__ import annotations

import logging
import logging.config
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import click
import orjson

from relto import __version__, admin
from relto.cli.audit import audit
from relto.cli.common import ReltoGroup, err, node_options
from relto.cli.mark import mark
from relto.cli.ops import backup, migrate, restore
from relto.cli.peer import peer
from relto.cli.preview import preview
from relto.cli.tls import tls, write_certificate
from relto.domain.communities import Community, check_community_name
from relto.domain.levels import DEFAULT_LEVELS, Ladder
from relto.domain.parties import check_nation
from relto.federation.peers import parse_list
from relto.federation.tls import DEFAULT_HOSTS, check_free
from relto.logs import FORMATS, log_config
from relto.store.open import DB_FILE, sqlite_path, tighten


@click.group(cls=ReltoGroup)
@click.version_option(__version__, prog_name="relto")
def main() -> None:
    """relto: a coalition intelligence-sharing node (STIX 2.1 over TAXII 2.1).

    Start with `relto demo`, or create a node with `relto init --data DIR --nation GBR`.
    """


@main.command()
@node_options
@click.option("--nation", required=True, help="The operating nation, ISO 3166-1 alpha-3 (e.g. GBR).")
@click.option("--title", default=None, help="The node's title in TAXII discovery.")
@click.option(
    "--levels",
    default=",".join(DEFAULT_LEVELS),
    show_default=True,
    help="The classification ladder, lowest first, comma-separated.",
)
@click.option("--tls", "with_tls", is_flag=True, help="Also create a self-signed TLS certificate in DIR/tls/.")
def init(data: Path | None, database: str | None, nation: str, title: str | None, levels: str, with_tls: bool) -> None:
    """Create a node and print its first admin token (shown once) on stdout.

    An existing data directory (or database file) that group or others may use is tightened to 0700 (0600).
    With --tls, the certificate's paths and SHA-256 fingerprint (for peers to pin) go to stderr.
    """
    nation = check_nation(nation)
    ladder = Ladder.of(levels.split(","))
    if with_tls:
        if data is None:
            raise click.UsageError("--tls needs --data: the certificate is written there")
        check_free(data)
    _tighten(data, database)
    token = admin.create_node(data, database, nation=nation, title=title, ladder=ladder)
    err(f"Created a relto node for {nation}. The admin token below is shown once: keep it safe.")
    if with_tls and data is not None:
        write_certificate(data, DEFAULT_HOSTS)
    click.echo(token)


def _tighten(data: Path | None, database: str | None) -> None:
    """relto init: make an existing data directory and its database files private, and say so."""
    if database:
        path = sqlite_path(database) if database.startswith("sqlite:///") else None
        changed = tighten(path) if path is not None else []
    else:
        changed = tighten(data / DB_FILE, folder=data) if data is not None else []
    for p in changed:
        err(f"Made {p} private ({'0700' if p.is_dir() else '0600'}): it was open to other users of this machine.")


@main.group()
def token() -> None:
    """Issue, list and revoke tokens."""


@token.command("issue")
@node_options
@click.option("--nation", required=True, help="The token holder's nation (ISO 3166-1 alpha-3).")
@click.option("--clearance", required=True, help="A level of the node's ladder, e.g. SECRET.")
@click.option("--org", "organisation", default="", help="The holder's organisation.")
@click.option("--name", default="", help="A name to recognise the token by.")
@click.option("--admin", "is_admin", is_flag=True, help="May manage the node (delete any object, read any status).")
@click.option("--read-only", is_flag=True, help="May read but not publish.")
@click.option("--peer", "is_peer", is_flag=True, help="For a peer node of NATION: it reads what NATION may receive.")
@click.option(
    "--relay-for",
    default=None,
    metavar="LIST",
    help="For a hub: it reads what any of these nations and communities may receive (e.g. NATO,UKR,KOR).",
)
def token_issue(
    data: Path | None,
    database: str | None,
    nation: str,
    clearance: str,
    organisation: str,
    name: str,
    is_admin: bool,
    read_only: bool,
    is_peer: bool,
    relay_for: str | None,
) -> None:
    """Issue a token and print it alone on stdout (it is shown once and stored only as a hash).

    With --peer or --relay-for it is another node's token (docs/federation.md): it reads the federation feed,
    is told each version's originator, never publishes, and never receives TLP:RED or TLP:AMBER+STRICT.
    """
    if is_peer and relay_for is not None:
        raise click.UsageError("--peer and --relay-for are two kinds of node token: give one")
    if (is_peer or relay_for is not None) and is_admin:
        raise click.UsageError("a node token cannot be --admin")
    kind = "peer" if is_peer else "relay" if relay_for is not None else ""
    with closing(admin.open_node(data, database)) as node:
        value = admin.issue_token(
            node.store,
            nation=check_nation(nation),
            clearance=node.ladder.name(node.ladder.rank(clearance)),
            organisation=organisation,
            name=name,
            admin=is_admin,
            can_write=not read_only,
            kind=kind,
            relay_for=",".join(parse_list(relay_for)) if relay_for is not None else "",
        )
    click.echo(value)


@token.command("list")
@node_options
def token_list(data: Path | None, database: str | None) -> None:
    """List tokens (never their secrets)."""
    with closing(admin.open_node(data, database)) as node:
        tokens = node.store.tokens()
    if tokens:
        click.echo("KEY ID\tNATION\tCLEARANCE\tORGANISATION\tNAME\tSTATE\tKIND")
    for t in tokens:
        state = "revoked" if t.revoked else "active"
        flags = ",".join(f for f, on in (("admin", t.admin), ("read-only", not t.can_write and not t.kind)) if on)
        if t.kind:
            flags = f"peer node of {t.nation}" if t.kind == "peer" else f"relay for {t.relay_for}"
        click.echo(f"{t.key_id}\t{t.nation}\t{t.clearance}\t{t.organisation or '-'}\t{t.name or '-'}\t{state}\t{flags}")


@token.command("revoke")
@node_options
@click.argument("key_id")
def token_revoke(data: Path | None, database: str | None, key_id: str) -> None:
    """Revoke a token by its key id (the 16 hex digits after `rt_`, as `token list` shows)."""
    with closing(admin.open_node(data, database)) as node:
        admin.revoke_token(node.store, key_id)
    err(f"Revoked {key_id}.")


@main.group()
def collection() -> None:
    """Create and list TAXII collections."""


@collection.command("add")
@node_options
@click.argument("title")
@click.option("--description", default="", help="What the collection holds.")
def collection_add(data: Path | None, database: str | None, title: str, description: str) -> None:
    """Create a collection and print its id alone on stdout."""
    with closing(admin.open_node(data, database)) as node:
        click.echo(node.add_collection(title, description).id)


@collection.command("list")
@node_options
def collection_list(data: Path | None, database: str | None) -> None:
    """List collections: id and title."""
    with closing(admin.open_node(data, database)) as node:
        collections = node.collections()
    for c in collections:
        click.echo(f"{c.id}\t{c.title}")


@main.group()
def community() -> None:
    """List and edit communities (NATO, EU, FVEY, IP4, ...) and their membership history."""


def _community_json(c: Community) -> dict[str, Any]:
    return {
        "name": c.name,
        "description": c.description,
        "members": [
            {"nation": m.nation, "since": m.since.isoformat(), "until": m.until.isoformat() if m.until else None}
            for m in c.members
        ],
    }


@community.command("list")
@node_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON: name, members with since/until.")
def community_list(data: Path | None, database: str | None, as_json: bool) -> None:
    """List communities and their members today (all spells with --json)."""
    with closing(admin.open_node(data, database)) as node:
        communities = node.store.communities()
    if as_json:
        click.echo(orjson.dumps([_community_json(c) for c in communities], option=orjson.OPT_INDENT_2).decode())
        return
    today = date.today()
    for c in communities:
        click.echo(f"{c.name}\t{', '.join(sorted(c.members_on(today)))}")


@community.command("join")
@node_options
@click.argument("name")
@click.argument("nation")
@click.option("--since", default=None, help="First day of membership (YYYY-MM-DD); default today.")
@click.option("--description", default=None, help="Description, when creating a new community.")
def community_join(
    data: Path | None, database: str | None, name: str, nation: str, since: str | None, description: str | None
) -> None:
    """Add NATION to community NAME (creating the community if new)."""
    with closing(admin.open_node(data, database)) as node:
        name, nation = check_community_name(name), check_nation(nation)
        day = admin.parse_day(since) if since else date.today()
        admin.join_community(node, name, nation, day, description)
    err(f"{nation} is a member of {name} from {day}.")


@community.command("leave")
@node_options
@click.argument("name")
@click.argument("nation")
@click.option("--on", "on", default=None, help="First day no longer a member (YYYY-MM-DD); default today.")
def community_leave(data: Path | None, database: str | None, name: str, nation: str, on: str | None) -> None:
    """End NATION's membership of community NAME (history is kept)."""
    with closing(admin.open_node(data, database)) as node:
        name, nation = check_community_name(name), check_nation(nation)
        day = admin.parse_day(on) if on else date.today()
        admin.leave_community(node, name, nation, day)
    err(f"{nation} leaves {name} on {day}.")


@main.command()
@node_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Server processes sharing the port and the database (PostgreSQL recommended above 1).",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Serve HTTPS with this certificate (PEM).",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The certificate's private key (PEM).",
)
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="One line per request on stderr: method, path, route, status, duration, client (never headers, so never "
    "tokens or cookies).",
)
@click.option(
    "--log-format",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    envvar="RELTO_LOG_FORMAT",
    help="Logs on stderr as text, or as JSON lines (ts, level, logger, message and fields). Env: RELTO_LOG_FORMAT.",
)
def serve(
    data: Path | None,
    database: str | None,
    host: str,
    port: int,
    workers: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    access_log: bool,
    log_format: str,
) -> None:
    """Serve the node's TAXII 2.1 API.

    Over HTTPS with --tls-cert and --tls-key (as `relto init --tls` or `relto tls create` writes them).
    """
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together: give both (relto tls create writes them)")
    pair = (tls_cert, tls_key) if tls_cert is not None and tls_key is not None else None
    base = f"{'https' if pair else 'http'}://{host}:{port}/"
    say = _sayer(log_format)
    with closing(admin.open_node(data, database)) as node:
        node.purge_statuses()
        if workers == 1:

            def ready() -> None:
                say(
                    f"relto: {node.info.nation}'s node is ready on {base} (TAXII 2.1: {base}taxii2/); Ctrl-C stops",
                    url=base,
                    nation=node.info.nation,
                )

            with _stopping(say):
                admin.serve(node, host, port, tls=pair, access_log=access_log, log_format=log_format, on_ready=ready)
            return
    admin.check_port_free(host, port)
    if log_format == "json":
        logging.config.dictConfig(log_config(access_log, log_format))
    say(f"relto: {workers} worker processes on {base} (TAXII 2.1: {base}taxii2/); Ctrl-C stops", url=base)
    with _stopping(say):
        admin.serve_workers(data, database, host, port, workers, tls=pair, access_log=access_log, log_format=log_format)


def _sayer(log_format: str) -> Callable[..., None]:
    """How serve tells the operator it is ready and stopped: a line on stderr, or a log record in JSON mode."""
    if log_format != "json":
        return lambda message, **fields: err(message)
    logger = logging.getLogger("relto")
    return lambda message, **fields: logger.info(message.removeprefix("relto: "), extra={"fields": fields})


@contextmanager
def _stopping(say: Callable[..., None]) -> Iterator[None]:
    """Ctrl-C and SIGTERM end the server cleanly: a last line, exit status 0 (uvicorn passes the signal on once
    it has shut down)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    say("relto: stopped")


@main.command()
@click.argument("url")
@click.option("--token", envvar="RELTO_TOKEN", required=True, help="Your token. Env: RELTO_TOKEN.")
@click.option("--type", "types", multiple=True, help="Only these STIX types (repeat for several).")
@click.option("--after", default=None, help="Resume after this event id (as printed by a previous watch).")
@click.option("--from-start", is_flag=True, help="Replay the collection's whole history first, then follow.")
def watch(url: str, token: str, types: tuple[str, ...], after: str | None, from_start: bool) -> None:
    """Print a collection's live stream, one line per object with its marking banner.

    URL is the collection's TAXII URL (http://HOST:PORT/api/collections/ID/). Reconnects and resumes by itself.
    """
    from relto.watch import watch as follow

    try:
        sys.exit(follow(url, token, types=types, after=after, from_start=from_start, say=lambda line: click.echo(line)))
    except KeyboardInterrupt:
        sys.exit(0)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on (0: any free port).")
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the demo node(s) here instead of a throwaway directory.",
)
@click.option(
    "--speed",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.01),
    help="Replay the story this many times faster.",
)
@click.option("--loop", is_flag=True, help="When the story ends, replay it again with fresh ids.")
@click.option("--no-replay", is_flag=True, help="Publish the whole story at once instead of in real time.")
@click.option(
    "--federation",
    is_flag=True,
    help="Run a coalition hub (BEL) and national nodes (GBR, USA, KOR) on their own ports, linked.",
)
def demo(host: str, port: int, data: Path | None, speed: float, loop: bool, no_replay: bool, federation: bool) -> None:
    """Start a throwaway demo: a coalition, a fictional story replayed in real time, tokens printed.

    The story (docs/demo.md) lasts about two minutes: KOR reports North Korean troop movements to Russia, its
    request to join the coalition's sharing is approved (and what was releasable to the coalition becomes
    visible to it), a GBR report carries a tearline. Ctrl-C or SIGTERM stops and deletes the throwaway folder.
    """
    from relto.demo import run_demo

    os.umask(admin.PRIVATE_UMASK)
    run_demo(host=host, port=port, data=data, speed=speed, loop=loop, replay=not no_replay, federation=federation)


main.add_command(mark)
main.add_command(audit)
main.add_command(tls)
main.add_command(peer)
main.add_command(preview)
main.add_command(backup)
main.add_command(restore)
main.add_command(migrate)
