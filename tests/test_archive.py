"""Archiving the decision log: signed checkpoints, archive files, and `relto audit verify` across the boundary
(attacks on archives and checkpoints are in tests/attacks/test_audit.py)."""

from __future__ import annotations

import gzip
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner, Result

from relto.archive import signing_key
from relto.cli import main
from relto.decisions import DecisionLog
from relto.domain.checkpoints import fingerprint, public_key, sign
from relto.domain.parties import Party
from relto.node import Node
from relto.taxii.filters import Filters
from tests.attacks.conftest import relto_many
from tests.conftest import TAXII, Database, make_node, relto, start_server
from tests.test_audit import V, stix_indicator, tamper

GBR = Party(token_id=1, nation="GBR", clearance=3)


def audit(database: Database, *args: str) -> Result:
    return CliRunner().invoke(main, ["audit", *args[:1], *database.args, *args[1:]])


def logged(database: Database) -> tuple[Node, str]:
    """A node whose log holds 6 records: a publish, reads of pages, a delete (a tombstone), and a read after."""
    node = make_node(database)
    coll = node.add_collection("c").id
    node.publish(GBR, coll, [stix_indicator(n) for n in range(1, 6)])
    for limit in (2, 5):
        node.read(GBR, coll, Filters(limit=limit))
    node.delete_object(GBR, coll, stix_indicator(1)["id"], Filters(limit=10, versions=("all",)))
    node.read(GBR, coll, Filters(limit=10, versions=("all",)))
    node.read(GBR, coll, Filters(limit=1))
    node.decisions.flush()
    return node, coll


@pytest.fixture
def node(database: Database) -> Iterator[Node]:
    node, _ = logged(database)
    yield node
    node.close()


def lines(path: Path) -> list[Any]:
    with gzip.open(path, "rb") as f:
        return [orjson.loads(line) for line in f]


def test_archive_moves_records_out_and_verify_stays_true(database: Database, node: Node, tmp_path: Path) -> None:
    before = node.store.decisions(0, 100)
    assert [r.seq for r in before] == [1, 2, 3, 4, 5, 6]
    # Writes and reads refer to the versions (the deleted one's too, through its tombstone).
    assert all(r.format == 2 and r.refs and 0 not in r.refs for r in before)
    # Who received an object: found through the references, its deleted version's too.
    gone = stix_indicator(1)["id"]
    assert [r.seq for r in node.store.decisions(0, 100, object_id=gone)] == [1, 2, 3, 4]
    assert [r.seq for r in node.store.decisions(0, 2, object_id=gone, newest=True)] == [3, 4]
    assert [r.seq for r in node.store.decisions(0, 100, object_id=stix_indicator(2)["id"])] == [1, 2, 3, 5, 6]
    first, second = tmp_path / "1.jsonl.gz", tmp_path / "2.jsonl.gz"

    done = audit(database, "archive", "--upto", "2", "--to", str(first))
    assert done.exit_code == 0, done.output
    key = public_key(signing_key(node.store))
    assert done.stdout.startswith(f"archived 2 records (1 to 2) to {first}; checkpoint at record 2, hash ")
    assert done.stdout.strip().endswith(f"signed by {fingerprint(key)}")
    assert [r.seq for r in node.store.decisions(0, 100)] == [3, 4, 5, 6]
    again = audit(database, "archive", "--upto", "2", "--to", str(tmp_path / "again.gz"))
    assert again.exit_code == 2 and "nothing to archive: records up to 2 are archived already" in again.output
    assert audit(database, "verify").stdout.strip() == (
        f"OK: 4 records, head {before[-1].hash} (checkpoint 2, signed by {fingerprint(key)})"
    )
    # Everything up to a time: the rest of the log, the last record included; the database's log is empty.
    done = audit(database, "archive", "--before", "2100-01-01", "--to", str(second))
    assert done.exit_code == 0 and "archived 4 records (3 to 6)" in done.stdout, done.output
    assert node.store.decisions(0, 100) == [] and node.store.decision_head() == (6, before[-1].hash)
    assert audit(database, "verify").stdout.startswith("OK: 0 records, head " + before[-1].hash)
    walked = audit(database, "verify", "--archive", str(second), "--archive", str(first))  # any order
    assert walked.exit_code == 0 and walked.stdout.startswith(f"OK: 6 records, head {before[-1].hash}"), walked.output

    # The files say what each record released, references resolved (the deleted object's too), and close
    # with the signed checkpoint; they are the node's private data.
    header, *records, closing = lines(first) + lines(second)[1:]
    assert header["relto"] == "decision-archive.1" and header["public_key"] == key
    assert [r["items"] for r in records if "items" in r] == [[list(i) for i in r.items] for r in before]
    assert closing["checkpoint"]["seq"] == 6 and closing["checkpoint"]["count"] == 4
    assert oct(first.stat().st_mode & 0o777) == "0o600"

    # New records chain after the checkpoint.
    node.read(GBR, node.collections()[0].id, Filters(limit=1))
    node.decisions.flush()
    assert [r.seq for r in node.store.decisions(0, 100)] == [7]
    assert audit(database, "verify").stdout.startswith("OK: 1 records")
    assert audit(database, "verify", "--archive", str(first), "--archive", str(second)).stdout.startswith(
        "OK: 7 records"
    )


def test_archive_refuses_what_it_cannot_do_and_changes_nothing(tmp_path: Path) -> None:
    database = Database("sqlite", ("--data", str(tmp_path / "node")))  # the checks are the same on every back-end
    node, _ = logged(database)
    out = tmp_path / "a.gz"

    def refused(*args: str) -> str:
        done = audit(database, "archive", *args)
        assert done.exit_code != 0
        return done.output

    assert "exactly one of --before TIME and --upto SEQ" in refused("--to", str(out))
    assert "exactly one of" in refused("--upto", "1", "--before", "2100-01-01", "--to", str(out))
    assert "there is no record 9: the log ends at record 6" in refused("--upto", "9", "--to", str(out))
    assert "nothing to archive: no record was decided before 2000-01-01" in refused(
        "--before", "2000-01-01", "--to", str(out)
    )
    out.write_bytes(b"")
    assert "exists: an archive is never overwritten" in refused("--upto", "1", "--to", str(out))
    out.unlink()
    tamper(node.store, "UPDATE decisions SET nation = 'USA' WHERE seq = 2")
    assert "nothing archived: the log is broken at record 2: edited" in refused("--upto", "3", "--to", str(out))
    assert not out.exists() and not list(tmp_path.glob("*.partial"))
    assert len(node.store.decisions(0, 100)) == 6 and node.store.checkpoints() == []
    node.close()


def test_checkpoints_are_signed_over_their_documented_bytes() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = bytes(range(32))
    cp = sign(key, node="n-1", seq=5, hash="ab" * 32, at=1_700_000_000_000_000, count=3)
    signed = b'["relto.checkpoint.1","n-1",5,"' + b"ab" * 32 + b'",1700000000000000,3]'
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(cp.public_key)).verify(bytes.fromhex(cp.signature), signed)
    assert cp.public_key == public_key(key) and len(cp.signature) == 128


@pytest.mark.slow
def test_archive_and_verify_through_the_real_command_on_a_node_that_served_reads(tmp_path: Path) -> None:
    """`relto serve` records TAXII reads; `relto audit archive` moves them out while it keeps serving and
    recording; after it stops, `relto audit verify` holds with and without the archive, and `audit show`
    still names what the records left in the database released."""
    db = Database("sqlite", ("--data", str(tmp_path / "node")))
    admin, coll = relto_many(["init", *db.args, "--nation", "GBR"], ["collection", "add", *db.args, "intel"])
    server = start_server(db, admin, logs=tmp_path)
    try:
        headers = {"Authorization": f"Bearer {admin}", "Accept": TAXII, "Content-Type": TAXII}
        base = f"{server.url}/api/collections/{coll}/objects/"
        posted = httpx.post(base, headers=headers, content=orjson.dumps({"objects": [stix_indicator(1)]}))
        assert posted.status_code == 202, posted.text
        for _ in range(3):
            assert httpx.get(base, headers=headers).status_code == 200
        stored(tmp_path / "node" / "relto.db", 4)  # the server writes its records in the background
        archive = tmp_path / "log-1.jsonl.gz"
        out = relto("audit", "archive", *db.args, "--before", "2100-01-01", "--to", str(archive))
        assert out.startswith("archived 4 records (1 to 4)")
        assert httpx.get(base, headers=headers).status_code == 200  # recorded after the checkpoint
    finally:
        server.stop()  # a clean stop writes what is buffered
    checked, walked, shown = relto_many(
        ["audit", "verify", *db.args],
        ["audit", "verify", *db.args, "--archive", str(archive)],
        ["audit", "show", *db.args, "--json"],
    )
    assert checked.startswith("OK: 1 records") and walked.startswith("OK: 5 records")
    record = orjson.loads(shown)
    assert (record["seq"], record["path"], record["items"]) == (5, "taxii.objects", [[stix_indicator(1)["id"], V]])


def stored(path: Path, count: int) -> None:
    """Wait until the log in this SQLite file holds `count` records (a condition, not a duration, is awaited)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with sqlite3.connect(path) as db:
            if db.execute("SELECT count(*) FROM decisions").fetchone()[0] >= count:
                return
        time.sleep(0.05)
    raise AssertionError(f"the log did not reach {count} records")


def test_archive_reports_progress_on_stderr(tmp_path: Path) -> None:
    database = Database("sqlite", ("--data", str(tmp_path / "node")))
    node = make_node(database)
    try:
        log = DecisionLog(node.store, enabled=True, flush_seconds=3600)
        for _ in range(1_001):
            log.record(GBR, "taxii.objects", "c", [])
        log.close()
        done = audit(database, "archive", "--upto", "1001", "--to", str(tmp_path / "a.gz"))
    finally:
        node.close()
    assert done.exit_code == 0 and "archived 1,000 of 1,001 records ..." in done.stderr
    assert done.stdout.startswith("archived 1,001 records (1 to 1001)")
