"""`relto audit`: check and read the decision log."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson

from relto import admin
from relto.cli.common import err, node_options
from relto.domain.errors import ReltoError
from relto.domain.parties import check_nation
from relto.domain.timestamps import parse_instant

# audit: the decision log ------------------------------------------------------------------------------
_PROGRESS_EVERY = 100_000


@click.group()
def audit() -> None:
    """Check and read the decision log: what was released or written, to whom, when, and how."""


@audit.command("verify")
@node_options
@click.option(
    "--expect",
    "expected",
    default=None,
    metavar="HASH",
    help="Also fail unless some record has this hash: a head printed by an earlier verify and kept elsewhere "
    "(detects a log cut short or rewritten from the start).",
)
def audit_verify(data: Path | None, database: str | None, expected: str | None) -> None:
    """Walk the hash chain: print `OK: N records, head HASH` (exit 0) or `BROKEN at record SEQ: REASON` (exit 1).

    Progress goes to stderr every 100,000 records.
    """
    from collections.abc import Iterator

    from relto.decisions import all_decisions
    from relto.domain.audit import Decision, verify

    node = admin.open_node(data, database)
    seen = False

    def walk() -> Iterator[Decision]:
        nonlocal seen
        for number, record in enumerate(all_decisions(node.store), 1):
            if number % _PROGRESS_EVERY == 0:
                err(f"checked {number:,} records ...")
            seen = seen or record.hash == expected
            yield record

    try:
        result = verify(walk())
    finally:
        node.close()
    if not result.ok:
        click.echo(f"BROKEN at record {result.broken_at}: {result.reason} ({result.detail})")
        sys.exit(1)
    if expected is not None and not seen:
        click.echo(f"BROKEN after record {result.count}: no record has hash {expected} (cut short or rewritten)")
        sys.exit(1)
    click.echo(f"OK: {result.count} records, head {result.head}")


@audit.command("show")
@node_options
@click.option("--nation", default=None, help="Only records of this nation's tokens.")
@click.option("--token", "key_id", default=None, metavar="KEYID", help="Only records of this token (its key id).")
@click.option("--path", default=None, help="Only this path: taxii.objects, taxii.object, taxii.versions, ... publish.")
@click.option("--object", "object_id", default=None, metavar="ID", help="Only records naming this STIX id.")
@click.option("--since", default=None, help="Only records at or after this time (YYYY-MM-DD or ISO 8601, UTC).")
@click.option("--until", default=None, help="Only records before this time (YYYY-MM-DD or ISO 8601, UTC).")
@click.option("--after", "after_seq", default=None, type=click.IntRange(0), help="Page forward: records after SEQ.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1), help="At most this many records.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, with every item and both hashes.")
def audit_show(
    data: Path | None,
    database: str | None,
    nation: str | None,
    key_id: str | None,
    path: str | None,
    object_id: str | None,
    since: str | None,
    until: str | None,
    after_seq: int | None,
    limit: int,
    as_json: bool,
) -> None:
    """List decision records, oldest first: the newest LIMIT that match, or with --after the first LIMIT after SEQ.

    A header line, then one line per record: seq, time (UTC), nation, token key id, path, collection, number of
    items and the first ids.
    """
    from relto.decisions import as_json as record_json
    from relto.decisions import describe

    nation = check_nation(nation) if nation else None
    start = parse_instant(since, "--since") if since else None
    end = parse_instant(until, "--until") if until else None
    node = admin.open_node(data, database)
    try:
        key_ids = {t.id: t.key_id for t in node.store.tokens()}
        token_id = None
        if key_id is not None:
            token_id = next((i for i, k in key_ids.items() if k == key_id), None)
            if token_id is None:
                raise ReltoError(f"no token with key id {key_id!r} (`relto token list` shows them, revoked too)")
        records = node.store.decisions(
            after_seq or 0,
            limit,
            nation=nation,
            path=path,
            object_id=object_id,
            since=start,
            until=end,
            newest=after_seq is None,
            token_id=token_id,
        )
    finally:
        node.close()
    if records and not as_json:
        click.echo("SEQ\tTIME (UTC)\tNATION\tTOKEN\tPATH\tCOLLECTION\tITEMS")
    for record in records:
        click.echo(orjson.dumps(record_json(record, key_ids)).decode() if as_json else describe(record, key_ids))
