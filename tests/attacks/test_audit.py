"""Class 8: the decision log records what a writer tried and was refused, its no-ops, and every preview."""

from __future__ import annotations

import gzip
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from relto.archive import SIGNING_SECRET, signing_key
from relto.domain.checkpoints import fingerprint, public_key, sign
from relto.node import Node as DbNode
from tests.attacks.conftest import T1, Node, indicator, marking
from tests.conftest import Database
from tests.test_archive import audit, logged
from tests.test_audit import tamper

pytestmark = pytest.mark.slow


def names(record: dict[str, Any], stix_id: str) -> bool:
    return any(item[0] == stix_id for item in record["items"])


def test_refusals_noops_and_previews_are_in_the_decision_log(node: Node) -> None:
    """Class 8 (decision log): KOR tries to take over GBR's object, reposts its own object, tries to DELETE GBR's
    object and to preview it for UKR; each attempt must leave a record, so an auditor sees the probing."""
    shared = marking("UNCLASSIFIED", "GBR", "KOR")
    kor_only = marking("UNCLASSIFIED", "KOR")
    x = indicator([shared], name="GBR's indicator")
    own = indicator([kor_only], name="KOR's indicator")
    cid = node.new_collection()
    assert node.post("GBR", cid, [shared, x]).stored(x["id"])
    assert node.post("KOR", cid, [kor_only, own]).stored(own["id"])

    assert node.delete("KOR", cid, x["id"]).status_code == 403  # (iii)
    preview = node.get("KOR", f"/api/collections/{cid}/objects/{x['id']}/preview/", {"nation": "UKR"})
    assert preview.status_code in (403, 404), preview.text  # (iv)
    node.post("KOR", cid, [{**x, "modified": T1, "name": "KOR's takeover"}])  # (i) refused: X is GBR's
    node.post("KOR", cid, [own])  # (ii) a no-op
    time.sleep(1.0)  # the log is written every 200 ms

    records = [r for r in node.audit("--nation", "KOR", "--limit", "1000") if r["collection"] == cid]
    paths = sorted({r["path"] for r in records})
    assert any(r["path"] == "publish.refused" and names(r, x["id"]) for r in records), paths
    assert any(r["path"] == "publish.noop" for r in records), paths
    assert any(r["path"] == "refused.delete" for r in records), paths
    assert any(r["path"] in ("preview", "refused.preview") and names(r, x["id"]) for r in records), paths


# --- archives and checkpoints: what someone with the database, or the archive files, could try ------------


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two SQLite nodes' folders, made once: `plain` with a log of 6 records, and `archived`, the same with
    records 1-2 and 3-4 archived in two files (1.jsonl.gz, 2.jsonl.gz) and 5-6 left in the database. (The
    checks here are of verify's logic; the SQL of archiving is tested on every back-end in tests/test_archive.py.)"""
    root = tmp_path_factory.mktemp("audit-templates")
    database = Database("sqlite", ("--data", str(root / "archived")))
    node, _ = logged(database)
    node.close()
    shutil.copytree(root / "archived", root / "plain")
    for n, upto in ((1, 2), (2, 4)):
        assert (
            audit(database, "archive", "--upto", str(upto), "--to", str(root / "archived" / f"{n}.jsonl.gz")).exit_code
            == 0
        )
    return root / "plain", root / "archived"


def copied(template: Path, tmp_path: Path) -> tuple[Database, DbNode]:
    folder = Path(shutil.copytree(template, tmp_path / "node"))
    database = Database("sqlite", ("--data", str(folder)))
    return database, DbNode(database.open())


@pytest.fixture
def archived(templates: tuple[Path, Path], tmp_path: Path) -> Iterator[tuple[Database, DbNode, Path, Path]]:
    """A copy of the archived node, its two archive files beside it."""
    database, node = copied(templates[1], tmp_path)
    yield database, node, tmp_path / "node" / "1.jsonl.gz", tmp_path / "node" / "2.jsonl.gz"
    node.close()


def verdict(database: Database, *args: str) -> str:
    done = audit(database, "verify", *args)
    assert done.exit_code == (0 if done.stdout.startswith("OK") else 1), done.output
    return str(done.stdout.strip())


def rewrite(path: Path, change: Callable[[list[Any]], None]) -> None:
    with gzip.open(path, "rb") as f:
        docs = [orjson.loads(line) for line in f]
    change(docs)
    with gzip.open(path, "wb") as f:
        f.writelines(orjson.dumps(doc) + b"\n" for doc in docs)


def test_archives_verify_intact_first(archived: tuple[Database, DbNode, Path, Path]) -> None:
    database, _, first, second = archived
    assert verdict(database).startswith("OK: 2 records")
    assert verdict(database, "--archive", str(first), "--archive", str(second)).startswith("OK: 6 records")


@pytest.mark.parametrize(
    ("change", "broken"),
    [
        (lambda docs: docs[1].update(nation="USA"), "BROKEN at record 1 (1.jsonl.gz): edited"),
        (lambda docs: docs[2]["items"].reverse(), "BROKEN at record 2 (1.jsonl.gz): references changed"),
        (lambda docs: docs.pop(2), "BROKEN at checkpoint 2 (1.jsonl.gz): it does not close the records of the file"),
        (
            lambda docs: docs[-1]["checkpoint"].update(at=1),
            "BROKEN at checkpoint 2 (1.jsonl.gz): its signature does not verify with the node's key",
        ),
        (lambda docs: docs.pop(), "BROKEN in 1.jsonl.gz: it does not end with its checkpoint (cut short or added to)"),
    ],
)
def test_an_edited_archive_is_named(
    archived: tuple[Database, DbNode, Path, Path], change: Callable[[list[Any]], None], broken: str
) -> None:
    """An archive file changed on its way to the auditor: the record, or the checkpoint, that no longer holds."""
    database, _, first, second = archived
    rewrite(first, change)
    assert verdict(database, "--archive", str(first), "--archive", str(second)).startswith(broken)


def test_a_missing_archive_is_named(archived: tuple[Database, DbNode, Path, Path]) -> None:
    database, _, first, second = archived
    assert verdict(database, "--archive", str(second)) == (
        "BROKEN at record 3 (2.jsonl.gz): records 1 to 2 are in no archive given"
    )
    assert verdict(database, "--archive", str(first)).startswith(
        "BROKEN after record 2: the database's log continues from checkpoint 4, so records 3 to 4 are in no archive"
    )


def test_a_checkpoint_forged_without_the_key_is_named(archived: tuple[Database, DbNode, Path, Path]) -> None:
    """Someone with the database hides record 5 behind a checkpoint of their own: they cannot sign as the node."""
    database, node, _, _ = archived
    fifth = node.store.decisions(4, 1)[0]
    mine = sign(bytes(32), node=node.info.node_id, seq=5, hash=fifth.hash, at=fifth.at, count=1)
    names, values = ", ".join(mine.to_json()), ", ".join(repr(v) for v in mine.to_json().values())
    tamper(node.store, "DELETE FROM decisions WHERE seq = 5", f"INSERT INTO checkpoints ({names}) VALUES ({values})")
    ours = fingerprint(public_key(signing_key(node.store)))
    assert verdict(database) == (
        f"BROKEN at checkpoint 5: it is signed with another key ({fingerprint(mine.public_key)}), not {ours}"
    )
    claimed = public_key(signing_key(node.store))
    tamper(node.store, f"UPDATE checkpoints SET public_key = '{claimed}' WHERE seq = 5")
    assert verdict(database) == "BROKEN at checkpoint 5: its signature does not verify with the node's key"


def test_records_deleted_without_archiving_are_named(archived: tuple[Database, DbNode, Path, Path]) -> None:
    database, node, _, _ = archived
    tamper(node.store, "DELETE FROM decisions WHERE seq = 5")
    assert verdict(database) == (
        "BROKEN at record 6: deleted or reordered (seq 6 where 5 was due: a record before it is missing)"
    )


def test_a_checkpoint_deleted_is_named(archived: tuple[Database, DbNode, Path, Path]) -> None:
    database, node, _, _ = archived
    tamper(node.store, "DELETE FROM checkpoints WHERE seq = 2")
    assert verdict(database) == "BROKEN at checkpoint 4: it closes 2 records where 4 follow checkpoint 0"
    tamper(node.store, "DELETE FROM checkpoints")
    assert verdict(database).startswith("BROKEN at record 5: deleted or reordered (seq 5 where 1 was due")


def test_a_replaced_node_key_is_caught_by_the_key_kept_elsewhere(
    archived: tuple[Database, DbNode, Path, Path],
) -> None:
    """The key lives with the node's secrets: whoever holds the whole database could replace it and re-sign.
    The public key given out before (`relto audit key`) and checked with --key still tells."""
    database, node, first, second = archived
    kept = audit(database, "key").stdout.split("\t")[0]
    other = bytes(range(32))
    tamper(node.store, f"UPDATE meta SET value = '{other.hex()}' WHERE key = 'secret:{SIGNING_SECRET}'")
    for cp in node.store.checkpoints():
        forged = sign(other, node=cp.node, seq=cp.seq, hash=cp.hash, at=cp.at, count=cp.count)
        tamper(
            node.store,
            f"UPDATE checkpoints SET public_key = '{forged.public_key}', signature = '{forged.signature}' "
            f"WHERE seq = {cp.seq}",
        )
    assert verdict(database).startswith("OK: 2 records")  # the database agrees with itself ...
    assert verdict(database, "--key", kept).startswith("BROKEN at checkpoint 2: it is signed with another key")
    bad = audit(database, "verify", "--key", "not-a-key")
    assert bad.exit_code == 2 and "64 hex digits" in bad.output
    # ... and the archives, signed with the real key, no longer agree with it.
    assert verdict(database, "--archive", str(first), "--archive", str(second)).startswith(
        "BROKEN at checkpoint 2 (1.jsonl.gz): it is signed with another key"
    )


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM deletions",  # the deleted version's tombstone gone
        "UPDATE objects SET seq = seq + 1000",  # versions renumbered, as a careless copy between databases would
        "UPDATE objects SET version_text = '2030-01-01T00:00:00.000Z'",  # a version row edited
    ],
)
def test_references_that_no_longer_mean_what_was_released_are_named(
    templates: tuple[Path, Path], tmp_path: Path, statement: str
) -> None:
    """Records refer to version rows: rows edited, renumbered or deleted without their tombstone would make
    them say something else. Record 1 (the publish) is the first to refer to the versions, the deleted one too."""
    database, node = copied(templates[0], tmp_path)
    try:
        assert verdict(database).startswith("OK: 6 records")
        tamper(node.store, statement)
        assert verdict(database) == (
            "BROKEN at record 1: references changed (its references no longer resolve to the versions it released: "
            "a version row renumbered, edited, or deleted without its tombstone)"
        )
    finally:
        node.close()
