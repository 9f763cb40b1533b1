"""Upgrading a node written by an older relto: for each earlier schema revision, a database built with the old
migrations and filled with rows in that revision's shape is upgraded by `relto migrate` (and by opening it, as
`relto serve` does); each nation then reads exactly what it read before, tokens authenticate, the log verifies.

The rows are those of a node populated through Node.publish/read at head (tests/store/test_backup.py), written
into the old tables column by column, as the old code wrote them: only the columns that revision has (no
originator, copy rank or shape where it had none), marking definitions in `marking_definitions` before 0004,
no decision log before 0003. The data avoids what an older relto could not store (field markings, references).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import Engine, MetaData, create_engine, inspect

from relto import admin
from relto.domain.audit import GENESIS, Decision, encode_v1
from relto.node import Node
from relto.store.migrate import _config, current_revision, head_revision
from relto.store.open import DB_FILE, open_store
from relto.store.postgres import engine_url
from tests.conftest import PostgresDatabases, make_node
from tests.store.test_backup import GBR_ONLY, T0, WIDE, cli, populate, tool, views

OLD = ("0001", "0002", "0003", "0004", "0005")


class Original:
    """A node populated at head: its rows, its collection, its tokens and what each nation read."""

    def __init__(self, folder: Path, trimmed: bool = False) -> None:
        node = make_node(folder)
        self.coll, self.tokens = populate(node)
        if trimmed:
            self._publish_trimmed(node)
        self.views = views(node, self.coll, self.tokens)
        node.decisions.flush()
        self.v1_decisions = format_1(node.store.decisions(0, 1000))
        node.close()
        engine = create_engine(f"sqlite:///{folder / DB_FILE}")
        found = MetaData()
        found.reflect(engine)
        with engine.connect() as conn:
            self.rows = {t.name: [dict(r._mapping) for r in conn.execute(t.select())] for t in found.sorted_tables}
        engine.dispose()

    def _publish_trimmed(self, node: Node) -> None:
        """A version that KOR receives trimmed: a reference to a tool hidden from it, a field marked for GBR."""
        report = {
            **tool(6, WIDE),
            "type": "report",
            "id": "report--00000000-0000-4000-8000-000000000006",
            "published": T0,
            "description": "for GBR",
            "object_refs": [tool(2, GBR_ONLY)["id"], tool(1, WIDE)["id"]],
            "x_links": [{"owner_ref": tool(1, WIDE)["id"]}],  # a reference below the top level
            "granular_markings": [{"selectors": ["description"], "marking_ref": GBR_ONLY["id"]}],
        }
        status = node.publish(node.authenticate(self.tokens["GBR"]), self.coll, [report])
        assert status["failure_count"] == 0, status


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Original:
    return Original(tmp_path_factory.mktemp("original") / "node")


def format_1(records: list[Decision]) -> list[dict[str, Any]]:
    """The decision rows an older relto wrote for the same decisions: format 1, every item copied."""
    rows, prev = [], GENESIS
    for r in records:
        digest = hashlib.sha256(encode_v1(r.seq, r.fields, prev)).hexdigest()
        rows.append({**{k: getattr(r, k) for k in ("seq", "at", "token_id", "nation", "path", "collection")}})
        rows[-1].update(items=orjson.dumps(r.items).decode(), prev_hash=prev, hash=digest)
        prev = digest
    return rows


def build_old(engine: Engine, revision: str, original: Original) -> None:
    """Migrate an empty database to `revision` with the old migrations, then write the original's rows in
    that revision's shape."""
    with engine.begin() as conn:
        cfg = _config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    old = MetaData()
    old.reflect(engine)
    rows = dict(original.rows)
    rows["decisions"] = original.v1_decisions  # the log stored copies (format 1) before 0006
    # Before 0007 a shape did not say where its members lie in the body.
    rows["objects"] = [{**r, "shape": _without_spans(r["shape"])} for r in rows["objects"]]
    if "marking_definitions" in old.tables:  # before 0004: one definition per id, no publisher
        rows["marking_definitions"] = [{"id": d["id"], "body": d["body"]} for d in rows.pop("definitions")]
    with engine.begin() as conn:
        for table in old.sorted_tables:
            if table.name == "alembic_version" or not rows.get(table.name):
                continue
            names = set(table.columns.keys())
            conn.execute(table.insert(), [{k: v for k, v in row.items() if k in names} for row in rows[table.name]])
        assert current_revision(conn) == revision


def _without_spans(shape: bytes | None) -> bytes | None:
    if shape is None:
        return None
    doc = orjson.loads(shape)
    return orjson.dumps({k: v for k, v in doc.items() if k not in ("s", "z")})


def check_upgraded(node: Node, original: Original) -> None:
    """Each nation reads what it read before; tokens authenticate; each version's shape is what publishing it
    now would store (0007 filled in the spans of its members)."""
    assert views(node, original.coll, original.tokens) == original.views
    with node.store.engine.connect() as conn:  # type: ignore[attr-defined]
        shapes = dict(conn.execute(sa.text("SELECT seq, shape FROM objects")).all())
    assert shapes == {r["seq"]: r["shape"] for r in original.rows["objects"]}
    for nation, token in original.tokens.items():
        assert node.authenticate(token).nation == nation


def make_old_node(folder: Path, revision: str, original: Original) -> None:
    """A node folder (modes as `relto init` makes them) whose database is at `revision`, holding `original`."""
    folder.mkdir(mode=0o700)
    engine = create_engine(f"sqlite:///{folder / DB_FILE}")
    build_old(engine, revision, original)
    engine.dispose()
    (folder / DB_FILE).chmod(0o600)


@pytest.mark.parametrize("revision", OLD)
def test_sqlite_node_upgrades_from(revision: str, original: Original, tmp_path: Path) -> None:
    folder = tmp_path / "node"
    make_old_node(folder, revision, original)
    behind = cli("migrate", "--data", str(folder), "--check")
    assert behind.exit_code == 1 and f"{revision} -> {head_revision()}: behind" in behind.output
    done = cli("migrate", "--data", str(folder))
    assert done.exit_code == 0 and done.output.strip() == f"{revision} -> {head_revision()}"
    assert cli("migrate", "--data", str(folder), "--check").exit_code == 0
    node = Node(open_store(data=folder))
    try:
        check_upgraded(node, original)
    finally:
        node.close()
    verified = cli("audit", "verify", "--data", str(folder))
    assert verified.exit_code == 0 and verified.output.startswith("OK: ")
    if revision == "0005":  # the reads above were recorded in format 2, chained after the format-1 records
        store = open_store(data=folder)
        try:
            formats = [r.format for r in store.decisions(0, 1000)]
        finally:
            store.close()
        old = len(original.v1_decisions)
        assert formats[:old] == [1] * old and formats[old:] and set(formats[old:]) == {2}


@pytest.fixture(scope="module")
def trimmed(tmp_path_factory: pytest.TempPathFactory) -> Original:
    return Original(tmp_path_factory.mktemp("trimmed") / "node", trimmed=True)


@pytest.mark.parametrize("revision", ["0002", "0005"])
def test_0007_gives_stored_shapes_the_spans_a_release_cuts_by(revision: str, trimmed: Original, tmp_path: Path) -> None:
    """Versions stored before 0007 get the spans publishing now stores, and are released as before."""
    folder = tmp_path / "node"
    make_old_node(folder, revision, trimmed)
    assert cli("migrate", "--data", str(folder)).exit_code == 0
    node = Node(open_store(data=folder))
    try:
        check_upgraded(node, trimmed)
    finally:
        node.close()
    assert any(b'"s":' in (r["shape"] or b"") for r in trimmed.rows["objects"])


def test_serve_open_path_upgrades(original: Original, tmp_path: Path) -> None:
    folder = tmp_path / "node"
    make_old_node(folder, "0003", original)
    node = admin.open_node(folder, None)  # what `relto serve` opens
    try:
        check_upgraded(node, original)
        with node.store.engine.connect() as conn:  # type: ignore[attr-defined]
            assert current_revision(conn) == head_revision()
    finally:
        node.close()


@pytest.fixture
def empty_postgres(postgres: PostgresDatabases | None) -> Iterator[str]:
    """An empty PostgreSQL database (not the migrated template)."""
    if postgres is None:
        pytest.skip("PostgreSQL tests run when RELTO_TEST_POSTGRES_URL is set")
    name = f"relto_u_{uuid.uuid4().hex[:12]}"
    with postgres.admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = postgres.url.set(database=name).render_as_string(hide_password=False)
    yield url
    postgres.drop(url)


def test_postgres_node_upgrades_from_0004(original: Original, empty_postgres: str) -> None:
    engine = create_engine(engine_url(empty_postgres))
    build_old(engine, "0004", original)
    assert "peers" not in inspect(engine).get_table_names()
    engine.dispose()
    done = cli("migrate", "--database", empty_postgres)
    assert done.exit_code == 0 and done.output.strip() == f"0004 -> {head_revision()}"
    node = Node(open_store(url=empty_postgres))
    try:
        check_upgraded(node, original)
    finally:
        node.close()
    verified = cli("audit", "verify", "--database", empty_postgres)
    assert verified.exit_code == 0 and verified.output.startswith("OK: ")


def test_migrate_refuses_an_empty_place(tmp_path: Path) -> None:
    done: Any = cli("migrate", "--data", str(tmp_path / "none"))
    assert done.exit_code == 2 and "holds no relto node" in done.output


def test_migrate_refuses_a_schema_from_a_newer_relto(original: Original, tmp_path: Path) -> None:
    folder = tmp_path / "node"
    folder.mkdir(mode=0o700)
    engine = create_engine(f"sqlite:///{folder / DB_FILE}")
    build_old(engine, "0004", original)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    engine.dispose()
    (folder / DB_FILE).chmod(0o600)
    done = cli("migrate", "--data", str(folder), "--check")
    assert done.exit_code == 2 and "newer than this relto's" in done.output
