"""relto backup and restore on every back-end: what a nation reads, its tokens and the decision log survive."""

from __future__ import annotations

import stat
import threading
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from relto.cli import main
from relto.domain.levels import Ladder
from relto.domain.markings import releasability_marking
from relto.node import Node
from relto.operations import issue_token, join_community, revoke_token
from relto.taxii.filters import Filters
from tests.conftest import Database, PostgresDatabases, make_node, new_database

LADDER = Ladder()
WIDE = releasability_marking("UNCLASSIFIED", ["GBR", "KOR", "USA"], LADDER)
GBR_ONLY = releasability_marking("SECRET", ["GBR"], LADDER)
PACT = releasability_marking("SECRET", ["PACT"], LADDER)
KOR_GBR = releasability_marking("SECRET", ["GBR", "KOR"], LADDER)
T0 = "2024-10-18T09:00:00.000Z"
T1 = "2024-10-19T09:00:00.000Z"
NATIONS = ("GBR", "KOR")


def tool(n: int, marking: dict[str, Any], modified: str = T0) -> dict[str, Any]:
    return {
        "type": "tool",
        "spec_version": "2.1",
        "id": f"tool--00000000-0000-4000-8000-{n:012d}",
        "created": T0,
        "modified": modified,
        "name": f"t{n}",
        "object_marking_refs": [marking["id"]],
    }


def populate(node: Node) -> tuple[str, dict[str, str]]:
    """Marked objects of two nations, a new version, a deletion, tokens (one revoked), a community that
    grants KOR a marking, and decision records: return the collection and each nation's token."""
    tokens = {
        n: issue_token(node.store, nation=n, clearance="SECRET", organisation="", name=n, admin=n == "GBR")
        for n in ("GBR", "KOR", "USA")
    }
    revoke_token(node.store, tokens.pop("USA").split("_")[1])
    join_community(node, "PACT", "GBR", date(2020, 1, 1), "a test pact")
    join_community(node, "PACT", "KOR", date(2020, 1, 1))
    gbr, kor = node.authenticate(tokens["GBR"]), node.authenticate(tokens["KOR"])
    coll = node.add_collection("intel").id
    node.publish(gbr, coll, [WIDE, GBR_ONLY, PACT, tool(1, WIDE), tool(2, GBR_ONLY), tool(3, PACT), tool(4, WIDE)])
    node.publish(gbr, coll, [tool(1, WIDE, T1)])
    node.publish(kor, coll, [KOR_GBR, tool(5, KOR_GBR)])
    node.delete_object(gbr, coll, tool(4, WIDE)["id"], Filters(limit=10, versions=("all",)))
    views(node, coll, tokens)
    node.decisions.flush()
    return coll, tokens


def views(node: Node, coll: str, tokens: dict[str, str]) -> dict[str, list[tuple[str, str | None, bytes]]]:
    """What each nation reads (every version) through the node, as released."""
    seen = {}
    for nation in NATIONS:
        page = node.read(node.authenticate(tokens[nation]), coll, Filters(limit=100, versions=("all",)))
        seen[nation] = [(r.stix_id, r.version_text, b) for r, b in zip(page.rows, page.bodies, strict=True)]
    return seen


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def source(database: Database) -> Any:
    node = make_node(database)
    coll, tokens = populate(node)
    yield node, coll, tokens
    node.close()


def test_backup_and_restore_keep_reads_tokens_and_the_log(
    source: tuple[Node, str, dict[str, str]], database: Database, tmp_path: Path, postgres: PostgresDatabases | None
) -> None:
    node, coll, tokens = source
    before = views(node, coll, tokens)
    assert len(before["GBR"]) > len(before["KOR"]) > 0
    node.decisions.flush()
    dest = tmp_path / "backup"
    done = cli("backup", *database.args, str(dest))
    assert done.exit_code == 0, done.output
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert "decision records" in done.output and "bytes" in done.output
    assert cli("backup", *database.args, str(dest)).exit_code == 2  # no overwrite without --force
    assert cli("backup", *database.args, str(dest), "--force").exit_code == 0
    with new_database(database.backend, tmp_path / "restored", postgres) as target:
        done = cli("restore", str(dest), *target.args)
        assert done.exit_code == 0, done.output
        assert "OK: " in done.output
        restored = Node(target.open())
        try:
            assert views(restored, coll, tokens) == before
            assert restored.authenticate(tokens["KOR"]).nation == "KOR"
        finally:
            restored.close()
        assert "OK: " in cli("audit", "verify", *target.args).output
        kor = tokens["KOR"].split("_")[1]
        shown = cli("audit", "show", *target.args, "--token", kor).output.splitlines()
        assert len(shown) > 1 and all(f"\tKOR\t{kor}\t" in line for line in shown[1:])
        refused = cli("restore", str(dest), *target.args)
        assert refused.exit_code == 2 and "would replace it and lose" in refused.output
        assert cli("restore", str(dest), *target.args, "--force").exit_code == 0


def test_sqlite_backup_is_consistent_while_a_reader_reads(tmp_path: Path) -> None:
    node = make_node(tmp_path / "node")
    coll, tokens = populate(node)
    before = views(node, coll, tokens)
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            views(node, coll, tokens)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        assert cli("backup", "--data", str(tmp_path / "node"), str(tmp_path / "b.db")).exit_code == 0
    finally:
        stop.set()
        reader.join()
        node.close()
    assert cli("restore", str(tmp_path / "b.db"), "--data", str(tmp_path / "copy")).exit_code == 0
    copy = make_node_at(tmp_path / "copy")
    try:
        assert views(copy, coll, tokens) == before
    finally:
        copy.close()
    assert not (tmp_path / "b.db-wal").exists()  # one self-contained file


def make_node_at(folder: Path) -> Node:
    from relto.store import open_store

    return Node(open_store(data=folder))


def test_restore_refuses_a_backup_of_the_other_back_end(tmp_path: Path) -> None:
    fake = tmp_path / "x.dump"
    fake.write_bytes(b"PGDMP\x01\x0e")
    done = cli("restore", str(fake), "--data", str(tmp_path / "n"))
    assert done.exit_code == 2 and "same back-end" in done.output
    fake.write_bytes(b"hello")
    assert "neither a SQLite backup" in cli("restore", str(fake), "--data", str(tmp_path / "n")).output


def test_backup_of_nothing_is_refused(tmp_path: Path) -> None:
    done = cli("backup", "--data", str(tmp_path / "none"), str(tmp_path / "b.db"))
    assert done.exit_code == 2 and "holds no relto node" in done.output
    assert not (tmp_path / "b.db").exists()


def test_pg_dump_missing_is_said(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from relto.store import backup

    monkeypatch.setattr(backup.shutil, "which", lambda name: None)
    with pytest.raises(Exception, match="pg_dump is not installed"):
        backup._tool("pg_dump")
