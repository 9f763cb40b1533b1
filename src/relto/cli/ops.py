"""`relto backup`, `relto restore` and `relto migrate`: keeping a node (docs/operations.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from relto import admin
from relto.cli.audit import audit_verify
from relto.cli.common import err, node_options
from relto.domain.errors import ReltoError

_FORCE_BACKUP = "Overwrite DEST if it exists."
_FORCE_RESTORE = "Replace the node the target holds (its objects, tokens and decision log are lost)."


@click.command()
@node_options
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help=_FORCE_BACKUP)
def backup(data: Path | None, database: str | None, dest: Path, force: bool) -> None:
    """Back up the node into the file DEST (created 0600), consistent while the node serves.

    SQLite: the online backup API (a database file). PostgreSQL: pg_dump -Fc (needs pg_dump on PATH). A summary
    goes to stderr. The backup holds every object and the decision log: protect it like the node.
    """
    from relto.store.backup import backup as run_backup
    from relto.store.backup import locate

    admin.private_umask()
    target = locate(data, database)
    err(f"backing up {target} ...")
    held = run_backup(target, dest, force=force)
    size = dest.stat().st_size
    err(f"backed up to {dest}: {size:,} bytes, schema {held.revision}, {held.describe()}")


@click.command()
@node_options
@click.argument("source", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--force", is_flag=True, help=_FORCE_RESTORE)
@click.pass_context
def restore(ctx: click.Context, data: Path | None, database: str | None, source: Path, force: bool) -> None:
    """Restore the backup SOURCE into an empty data directory or database, then migrate and verify.

    The schema is upgraded to this relto's (a backup from an older relto restores), then the decision log's
    chain is checked and `audit verify`'s line printed (exit 1 if it is broken).
    """
    from relto.store.backup import inventory, locate
    from relto.store.backup import restore as run_restore
    from relto.store.migrate import head_revision

    admin.private_umask()
    target = locate(data, database)
    replaced = run_restore(source, target, force=force)
    if replaced is not None:
        err(f"replaced the node at {target} ({replaced.describe()})")
    restored = inventory(target)
    if restored is None:
        raise ReltoError(f"{source} held no relto node: {target} is empty")
    admin.open_private_store(data, database).close()  # migrates to head
    err(f"restored {source} into {target}: {restored.describe()}; schema {restored.revision} -> {head_revision()}")
    ctx.invoke(audit_verify, data=data, database=database, expected=None)


@click.command()
@node_options
@click.option("--check", is_flag=True, help="Change nothing: exit 1 if the schema is behind this relto's.")
def migrate(data: Path | None, database: str | None, check: bool) -> None:
    """Upgrade the node's schema to this relto's: prints `FROM -> HEAD`.

    `relto serve` (and every command that opens the node) does the same on start; this does it explicitly,
    e.g. right after `pip install -U relto` and before restarting the service.
    """
    from relto.store.backup import inventory, locate
    from relto.store.migrate import head_revision, known_revisions

    target = locate(data, database)
    held = inventory(target)
    if held is None:
        raise ReltoError(f"{target} holds no relto node: run `relto init` first, or `relto restore` a backup")
    head = head_revision()
    if held.revision is not None and held.revision not in known_revisions():
        raise ReltoError(
            f"{target} is at schema {held.revision}, newer than this relto's ({head}): install the relto that wrote "
            "it, or restore a backup taken before the upgrade"
        )
    if held.revision == head:
        click.echo(f"{head} -> {head}: already at head")
        return
    if check:
        click.echo(f"{held.revision} -> {head}: behind; run `relto migrate`")
        sys.exit(1)
    admin.open_private_store(data, database).close()
    click.echo(f"{held.revision} -> {head}")
