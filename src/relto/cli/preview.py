"""`relto preview`: what a nation would receive of a stored object, or of a draft before it is shared."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Any, BinaryIO

import click
import orjson

from relto import admin
from relto.cli.common import err, node_options
from relto.domain.errors import ReltoError
from relto.domain.parties import Party
from relto.node import Node
from relto.node.drafts import clearance_words, draft_answer, draft_objects


@click.command()
@node_options
@click.argument("object_id", required=False)
@click.option("--as", "nation", required=True, help="The nation whose view to show (ISO 3166-1 alpha-3, e.g. KOR).")
@click.option("--clearance", default=None, help="Its clearance (default: the top level of the node's ladder).")
@click.option("--collection", "collection_id", default=None, help="The collection (default: every one holding it).")
@click.option(
    "--file",
    "draft",
    type=click.File("rb"),
    default=None,
    metavar="FILE",
    help="Preview a draft instead (one object, a list, a bundle or an envelope; - for stdin), as this node's "
    "nation would publish it: nothing is stored.",
)
@click.option("--json", "as_json", is_flag=True, help="With --file: print one JSON document instead of text.")
def preview(
    data: Path | None,
    database: str | None,
    object_id: str | None,
    nation: str,
    clearance: str | None,
    collection_id: str | None,
    draft: BinaryIO | None,
    as_json: bool,
) -> None:
    """Print what NATION would receive of OBJECT_ID, or of the draft in --file, and why it gets less.

    For OBJECT_ID: one JSON document per collection holding the object, its newest version as released to the
    nation; `"released": false` when it would receive nothing, and `"reasons"` in words when it is withheld or
    cut. With --file: each object of the draft as released (or "withheld"), with the reasons. Run by the
    operator, on the database; the preview is recorded in the decision log.
    """
    if (object_id is None) == (draft is None):
        raise click.UsageError("give OBJECT_ID (a stored object) or --file FILE (a draft), not both or neither")
    if as_json and draft is None:
        raise click.UsageError("--json goes with --file (a stored object's preview is always JSON)")
    with closing(admin.open_node(data, database)) as node:
        operator = Party(token_id=0, nation=node.info.nation, clearance=len(node.ladder.levels) - 1, admin=True)
        if draft is not None:
            _preview_draft(node, operator, draft, nation, clearance, as_json)
            return
        assert object_id is not None
        if collection_id is None:
            held = sorted({h.collection for h in node.store.holdings([object_id])})
            if not held:
                raise ReltoError(f"no collection on this node holds {object_id}")
        else:
            held = [collection_id]
        target, level = node.preview_party(nation, clearance)
        err(f"Preview {clearance_words(target, level, clearance is None)}.")
        for cid in held:
            doc = {"collection": cid, **node.preview(operator, cid, object_id, nation, clearance)}
            click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())


def _preview_draft(
    node: Node, operator: Party, source: BinaryIO, nation: str, clearance: str | None, as_json: bool
) -> None:
    name = str(getattr(source, "name", "-"))
    name = "stdin" if name in ("-", "<stdin>") else name
    try:
        doc: Any = orjson.loads(source.read())
    except orjson.JSONDecodeError as exc:
        raise ReltoError(f"{name} is not JSON: {exc}") from None
    objects = draft_objects(doc)
    target, level = node.preview_party(nation, clearance)
    judged = node.explain_draft(operator, objects, nation, clearance)
    if as_json:
        answer = draft_answer(judged, target, level, clearance is None, operator.nation)
        click.echo(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(
        f"Preview {clearance_words(target, level, clearance is None)}, of a draft published by "
        f"{operator.nation} (this node's nation); nothing is stored."
    )
    for j in judged:
        state = "withheld" if j.released is None else "cut" if j.reasons else "released whole"
        click.echo(f"\n{j.id}: {state}")
        for reason in j.reasons:
            click.echo(f"  - {reason}")
        if j.released is not None:
            click.echo(orjson.dumps(j.released, option=orjson.OPT_INDENT_2).decode())
