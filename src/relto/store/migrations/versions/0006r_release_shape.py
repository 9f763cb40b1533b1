"""A version's stored shape says where, in its stored body, lie the members a release may cut (its references,
its granular markings and the fields they select), so that a release cuts the bytes without parsing them
(docs/tearlines.md, "What a release costs"). Filled here for the versions stored before; a version whose
references are not all at the top level, or whose body is not what orjson writes, keeps its shape and is
parsed at release, as before.

Revision ID: 0006r
Revises: 0005
"""

from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op

revision = "0006r"
down_revision = "0005"
branch_labels = None
depends_on = None

_PAGE = 1000
# What redact.Shape.with_members tracked at this revision (kept here as it was: a migration does not change).
_NOT_REFERENCES = frozenset({"object_marking_refs", "marking_ref", "granular_markings"})


def upgrade() -> None:
    bind = op.get_bind()
    objects = sa.table("objects", sa.column("seq", sa.Integer), sa.column("body"), sa.column("shape"))
    after = 0
    while True:
        page = bind.execute(
            sa.select(objects.c.seq, objects.c.body, objects.c.shape)
            .where(objects.c.seq > after, objects.c.shape.is_not(None))
            .order_by(objects.c.seq)
            .limit(_PAGE)
        ).all()
        if not page:
            return
        after = page[-1].seq
        filled = [{"s": seq, "v": shape} for seq, body, old in page if (shape := _with_members(bytes(body), old))]
        if filled:
            bind.execute(
                sa.update(objects).where(objects.c.seq == sa.bindparam("s")).values(shape=sa.bindparam("v")), filled
            )


def _with_members(body: bytes, raw: bytes) -> bytes | None:
    """The stored shape with its members' spans, or None to leave it as it is."""
    doc = orjson.loads(raw)
    if doc.get("n") or "s" in doc:
        return None
    obj = orjson.loads(body)
    if not isinstance(obj, dict) or orjson.dumps(obj) != body:
        return None
    keys = {"granular_markings"}
    keys.update(k for k in obj if k.endswith(("_ref", "_refs")) and k not in _NOT_REFERENCES)
    keys.update(selector for _, selector in doc.get("f", ()) if "." not in selector)
    members: list[Any] = []
    at = 1
    for key, value in obj.items():
        end = at + len(orjson.dumps(key)) + 1 + len(orjson.dumps(value))
        if key in keys:
            members.extend((key, at, end))
        at = end + 1
    if not members:
        return None
    return orjson.dumps({**doc, "s": members, "z": at})


def downgrade() -> None:
    """The spans are ignored by the code before this revision: nothing to undo."""
