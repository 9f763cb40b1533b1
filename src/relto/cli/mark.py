"""`relto mark`: marking definitions and tearlines for objects, printed (nothing is stored)."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import closing
from datetime import date
from pathlib import Path
from typing import BinaryIO

import click
import orjson

from relto import admin
from relto.cli.common import err
from relto.domain.communities import Community, default_communities, membership_index
from relto.domain.errors import ReltoError
from relto.domain.levels import DEFAULT_LEVELS, Ladder
from relto.domain.markings import TLP_IDS, canonical_rel_to, check_rel_to_known, releasability_marking, tlp_definition
from relto.domain.tearline import Marked, mark_objects, objects_of, parse_field
from relto.node.drafts import judge_draft


@click.command()
@click.option("--classification", required=True, help="A level (e.g. SECRET) or ACS code (U, C, S, TS).")
@click.option("--rel-to", "rel_to", required=True, help="Nations and communities, comma-separated: GBR,KOR,NATO.")
@click.option("--tlp", type=click.Choice(sorted(TLP_IDS)), default=None, help="A TLP 2.0 marking to add.")
@click.option("--levels", default=",".join(DEFAULT_LEVELS), show_default=True, help="The classification ladder.")
# Output is always JSON: --json is accepted, unlisted, so that scripts written when it was listed keep working.
@click.option("--json", "as_json", is_flag=True, hidden=True)
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="RELTO_DATA",
    default=None,
    help="Check ladder and community names against this node (default: the built-in ones).",
)
@click.option(
    "--database",
    envvar="RELTO_DATABASE_URL",
    default=None,
    help="As --data, for a node in this database (sqlite:///PATH or postgresql://...); overrides --data.",
)
@click.option(
    "--apply",
    "apply_to",
    type=click.File("rb"),
    default=None,
    metavar="FILE",
    help="Mark the objects of this JSON file (one object, a bundle or an envelope; - for stdin) and print a TAXII "
    "envelope to POST: definitions, then the marked objects.",
)
@click.option(
    "--field",
    "fields",
    multiple=True,
    metavar="SELECTOR=LEVEL:REL,TO",
    help="With --apply: mark one field more narrowly, e.g. description=SECRET:GBR or object_refs.[2]=S:GBR,USA "
    "(repeat for several; see docs/tearlines.md).",
)
@click.option("--replace", is_flag=True, help="With --apply: replace markings the objects already carry.")
def mark(
    classification: str,
    rel_to: str,
    tlp: str | None,
    levels: str,
    as_json: bool,
    data: Path | None,
    database: str | None,
    apply_to: BinaryIO | None,
    fields: tuple[str, ...],
    replace: bool,
) -> None:
    """Print the marking refs and definitions to put in a bundle: {"refs": [...], "definitions": [...]}.

    With --apply, mark objects instead: the whole with --classification/--rel-to/--tlp, fields with --field.
    """
    del as_json
    ladder = Ladder.of(levels.split(","))
    communities = default_communities()
    publisher = ""  # without a node, no party is the publisher (who receives all of its own objects)
    if data is not None or database is not None:
        with closing(admin.open_node(data, database)) as node:
            ladder, communities, publisher = node.ladder, node.store.communities(), node.info.nation
    if apply_to is None and (fields or replace):
        raise ReltoError("--field and --replace mark the objects of a file: add --apply FILE (- for stdin)")
    if apply_to is not None:
        _mark_file(apply_to, classification, rel_to, tlp, fields, replace, ladder, communities, publisher)
        return
    check_rel_to_known(canonical_rel_to(rel_to.split(",")), {c.name for c in communities})
    definitions = [releasability_marking(classification, rel_to.split(","), ladder)]
    if tlp:
        definitions.append(tlp_definition(tlp))
    doc = {"refs": [d["id"] for d in definitions], "definitions": definitions}
    click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())


def _mark_file(
    source: BinaryIO,
    classification: str,
    rel_to: str,
    tlp: str | None,
    fields: tuple[str, ...],
    replace: bool,
    ladder: Ladder,
    communities: list[Community],
    publisher: str,
) -> None:
    """relto mark --apply: the envelope on stdout, advice on stderr."""
    name = str(getattr(source, "name", "-"))
    name = "stdin" if name in ("-", "<stdin>") else name
    try:
        doc = orjson.loads(source.read())
    except orjson.JSONDecodeError as exc:
        raise ReltoError(f"{name} is not JSON: {exc}") from None
    members = membership_index(communities, date.today())
    marked = mark_objects(
        objects_of(doc),
        classification=classification,
        rel_to=rel_to.split(","),
        tlp=tlp,
        fields=dict(parse_field(f) for f in fields),
        replace=replace,
        ladder=ladder,
        communities=members,
    )
    for warning in [*marked.warnings, *_shut_out(marked, rel_to, publisher, ladder, members)]:
        err(f"Warning: {warning}")
    click.echo(orjson.dumps(marked.envelope(), option=orjson.OPT_INDENT_2).decode())


def _shut_out(
    marked: Marked, rel_to: str, publisher: str, ladder: Ladder, members: Mapping[str, frozenset[str]]
) -> list[str]:
    """One line per (object, party of --rel-to) that the party would receive nothing of, and why (judged at the
    top of the ladder, against the objects of the file: references to stored objects are not looked up)."""
    objects = [*marked.definitions, *marked.objects]
    out: list[str] = []
    for party in canonical_rel_to(rel_to.split(",")):
        top = len(ladder.levels) - 1
        for judged in judge_draft(objects, publisher, party, top, ladder, members):
            if judged.released is None:
                out.extend(judged.reasons)
    return out
