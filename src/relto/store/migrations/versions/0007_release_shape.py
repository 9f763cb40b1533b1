"""A version's stored shape says where, in its stored body, lie the members a release may cut (its references,
its granular markings and the fields they select), so that a release cuts the bytes without parsing them
(docs/tearlines.md). Filled here for the versions stored before; a version whose body is not what orjson writes
keeps its shape and is parsed at release, as before.

Revision ID: 0007
Revises: 0006
"""

import orjson
import sqlalchemy as sa
from alembic import op

from relto.domain import redact
from relto.domain.errors import InvalidObject

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_PAGE = 1000


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
        filled = [
            {"s": seq, "v": shape} for seq, body, old in page if (shape := _with_members(bytes(body), bytes(old)))
        ]
        if filled:
            bind.execute(
                sa.update(objects).where(objects.c.seq == sa.bindparam("s")).values(shape=sa.bindparam("v")), filled
            )


def _with_members(body: bytes, raw: bytes) -> bytes | None:
    """The stored shape with its members' spans (and the ids referenced below the top level), or None to leave
    it as it is. Made by the release code's own functions: the spans must be what it reads."""
    shape = redact.Shape.decode(raw)
    if shape.members:
        return None
    obj = orjson.loads(body)
    if not isinstance(obj, dict) or orjson.dumps(obj) != body:
        return None
    try:
        deep = redact.analyse(obj).deep
    except InvalidObject:
        return None
    shape = shape._replace(deep=deep) if shape.nested else shape
    new = shape.with_members(obj).encode()
    return None if new == raw else new


def downgrade() -> None:
    """The spans are ignored by the code before this revision: nothing to undo."""
