"""`relto audit`: check and read the decision log."""

from __future__ import annotations

import re
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
_ARCHIVE_PROGRESS_EVERY = 1_000  # records of up to 1,000 items each


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
    help="Also fail unless some record (or checkpoint) has this hash: a head printed by an earlier verify and "
    "kept elsewhere (detects a log cut short or rewritten from the start).",
)
@click.option(
    "--archive",
    "archives",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Also walk these archive files (repeat the option, any order): together they must hold every "
    "archived record and join the database's chain.",
)
@click.option(
    "--key",
    "key",
    default=None,
    metavar="HEX",
    help="Check checkpoints against this public key (as `relto audit key` printed it, kept elsewhere) instead "
    "of the one derived from the node's own secret.",
)
def audit_verify(
    data: Path | None, database: str | None, expected: str | None, archives: tuple[Path, ...], key: str | None
) -> None:
    """Walk the hash chain: print `OK: N records, head HASH` (exit 0) or `BROKEN at record SEQ: REASON` (exit 1).

    The walk starts from the last signed checkpoint (records before it were archived), after checking every
    checkpoint's signature; with --archive it starts from record 1 in the files. Progress goes to stderr
    every 100,000 records.
    """
    from relto.archive import signing_key, verify_log
    from relto.domain.checkpoints import public_key

    if key is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", key):
        raise click.BadParameter(
            "an Ed25519 public key is 64 hex digits (as `relto audit key` prints it)", param_hint="--key"
        )
    node = admin.open_node(data, database)
    try:
        verdict = verify_log(
            node.store,
            node_id=node.info.node_id,
            trusted_key=lambda: key.lower() if key else public_key(signing_key(node.store)),
            archives=archives,
            expected=expected,
            progress=lambda n: err(f"checked {n:,} records ..."),
        )
    finally:
        node.close()
    if verdict.ok and expected is not None and not verdict.seen:
        click.echo(f"BROKEN after record {verdict.count}: no record has hash {expected} (cut short or rewritten)")
        sys.exit(1)
    click.echo(verdict.line)
    if not verdict.ok:
        sys.exit(1)


@audit.command("archive")
@node_options
@click.option(
    "--before",
    default=None,
    metavar="TIME",
    help="Archive the records decided before this time (YYYY-MM-DD or ISO 8601, UTC), from the oldest on.",
)
@click.option("--upto", default=None, type=click.IntRange(1), metavar="SEQ", help="Archive the records up to SEQ.")
@click.option(
    "--to",
    "to",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="The archive file to write (gzipped JSON lines; it must not exist).",
)
def audit_archive(data: Path | None, database: str | None, before: str | None, upto: int | None, to: Path) -> None:
    """Move the oldest decision records out of the database into FILE, closed by a signed checkpoint.

    The records (from the last checkpoint on, up to --upto SEQ or to the last one decided before --before
    TIME) are verified, written to FILE with what their references mean, and then deleted in the
    transaction that stores the checkpoint. `relto audit verify` keeps starting from that checkpoint;
    `relto audit verify --archive FILE ...` walks the files too. Progress goes to stderr.
    """
    from relto.archive import archive, signing_key
    from relto.domain.checkpoints import fingerprint

    if (before is None) == (upto is None):
        raise click.UsageError("give exactly one of --before TIME and --upto SEQ")
    until = parse_instant(before, "--before") if before is not None else None
    node = admin.open_node(data, database)
    try:
        last = node.store.last_decision_before(until) if until is not None else int(upto or 0)
        checkpoints = node.store.checkpoints()
        start = checkpoints[-1].seq if checkpoints else 0
        if until is not None and last <= start:
            after = f"after the last archived record ({start}) " if start else ""
            raise ReltoError(f"nothing to archive: no record {after}was decided before {before}")
        total = last - start

        def progress(n: int) -> None:
            if n % _ARCHIVE_PROGRESS_EVERY == 0:
                err(f"archived {n:,} of {total:,} records ...")

        checkpoint = archive(
            node.store, node_id=node.info.node_id, key=signing_key(node.store), upto=last, to=to, progress=progress
        )
    finally:
        node.close()
    click.echo(
        f"archived {checkpoint.count:,} records ({checkpoint.seq - checkpoint.count + 1} to {checkpoint.seq}) to {to}; "
        f"checkpoint at record {checkpoint.seq}, hash {checkpoint.hash}, signed by {fingerprint(checkpoint.public_key)}"
    )


@audit.command("key")
@node_options
def audit_key(data: Path | None, database: str | None) -> None:
    """Print the public key that signs this node's checkpoints (made now if the node has none): give it to
    auditors and partners, who check archives with `relto audit verify --key HEX`."""
    from relto.archive import signing_key
    from relto.domain.checkpoints import fingerprint, public_key

    node = admin.open_node(data, database)
    try:
        public = public_key(signing_key(node.store))
    finally:
        node.close()
    click.echo(f"{public}\t{fingerprint(public)}")


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
