"""The decision log: the hash chain (pure), its storage on every back-end, tampering, the CLI, concurrency."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from click.testing import CliRunner
from sqlalchemy import text

from relto.cli import main
from relto.decisions import DecisionLog, all_decisions
from relto.domain.audit import (
    DELETED_OR_REORDERED,
    EDITED,
    GENESIS,
    MEANING_CHANGED,
    Decision,
    PendingDecision,
    chain,
    encode,
    encode_v1,
    pack_refs,
    seal,
    unpack_refs,
    verify,
)
from relto.domain.communities import default_communities
from relto.domain.errors import ConfigurationError
from relto.domain.levels import DEFAULT_LEVELS
from relto.domain.parties import Party
from relto.node import Node
from relto.settings import Settings
from relto.store import Store
from relto.store.base import NodeInfo
from relto.store.postgres import PostgresStore
from relto.store.sql import SQLStore
from relto.taxii.filters import Filters
from tests.conftest import ROOT, Database, Harness, make_node, relto

C = "11111111-1111-4111-8111-111111111111"
GBR = Party(token_id=1, nation="GBR", clearance=3)
KOR = Party(token_id=2, nation="KOR", clearance=2)
V = "2024-10-18T09:30:00.000Z"


def pending(n: int, at: int = 1_700_000_000_000_000) -> PendingDecision:
    return PendingDecision(
        at=at + n,
        token_id=n % 3,
        nation="GBR",
        path="taxii.objects",
        collection=C,
        items=((f"indicator--{n:08d}", V), (f"ipv4-addr--{n:08d}", None)),
    )


def sealed(count: int) -> list[Decision]:
    records, prev = [], GENESIS
    for seq in range(1, count + 1):
        record = seal(prev, seq, pending(seq))
        records.append(record)
        prev = record.hash
    return records


# --- the chain, pure ---------------------------------------------------------------------------------


def test_intact_chain_verifies_with_count_and_head() -> None:
    records = sealed(5)
    result = verify(records)
    assert result.ok and result.count == 5 and result.head == records[-1].hash
    assert records[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))


def test_empty_log_is_intact() -> None:
    result = verify([])
    assert result.ok and result.count == 0 and result.head == GENESIS


def test_encoding_can_be_reimplemented_from_the_docstring() -> None:
    """An auditor's version, from the module docstring with the standard library alone, gives the same hash."""
    fields = PendingDecision(
        at=1_795_000_000_123_456,
        token_id=7,
        nation="KOR",
        path="taxii.objects",
        collection=C,
        items=(('indicator--é\u2028"\\\n\x01', V), ("ipv4-addr--1", None), ("indicator--3", V)),
        refs=(0, 41, 43),
    )
    prev = "ab" * 32

    def dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    digest = hashlib.sha256(dumps([list(i) for i in fields.items])).hexdigest()
    doc = ["relto.decision.2", 3, fields.at, 7, "KOR", "taxii.objects", C, [0, 41, 43], [list(fields.items[0])]]
    theirs = dumps([*doc, digest, prev])
    assert encode(3, fields, prev) == theirs
    assert chain(prev, 3, fields) == hashlib.sha256(theirs).hexdigest()
    record = seal(prev, 3, fields)
    assert record.digest == digest and record.hash == hashlib.sha256(theirs).hexdigest()
    # Format 1, as records written before references were, still verifies by its own encoding.
    v1 = ["relto.decision.1", 3, fields.at, 7, "KOR", "taxii.objects", C, [list(i) for i in fields.items], prev]
    assert encode_v1(3, fields, prev) == dumps(v1)
    old = replace(record, format=1, refs=(), digest="", hash=hashlib.sha256(dumps(v1)).hexdigest())
    assert verify([old], after_seq=2, prev_hash=prev).ok


def test_refs_pack_as_documented() -> None:
    """zlib of little-endian int64 differences (module docstring), tiny for a page of consecutive versions."""
    refs = (*range(5_000, 6_000), 0, 7, 2**40)
    blob = pack_refs(refs)
    deltas = struct.unpack(f"<{len(refs)}q", zlib.decompress(blob))
    assert tuple(itertools.accumulate(deltas)) == refs == unpack_refs(blob)
    assert len(pack_refs(range(5_000, 6_000))) < 100
    with pytest.raises(ValueError):
        unpack_refs(b"not zlib")


def test_encoding_is_frozen() -> None:
    """A change to an encoding would break every stored chain: these hashes must never change."""
    assert chain(GENESIS, 1, pending(1)) == "a29f1b2e3a5dd41a4a43ab6d3f076fadc8ee2e9556192018d0f732e9c77d0ce3"
    with_refs = replace(pending(1), refs=(17, 0))
    assert chain(GENESIS, 1, with_refs) == "773142ad06d701966b5e2ae6628189533e44664d6894734ba9b32227b2a0a2ae"
    v1 = hashlib.sha256(encode_v1(1, pending(1), GENESIS)).hexdigest()
    assert v1 == "1bb56f1cf311ae77c3b9e3961fa6f93b53a3a694719a77e2a387327e02a0aac1"


def test_every_field_is_covered_by_the_hash() -> None:
    record = sealed(1)[0]
    changes: list[dict[str, Any]] = [
        {"at": record.at + 1},
        {"token_id": 99},
        {"nation": "USA"},
        {"path": "taxii.manifest"},
        {"collection": "x"},
        {"items": record.items[:1]},
        {"items": ((record.items[0][0], "2024-10-18T09:30:00.001Z"), record.items[1])},
        {"items": tuple(reversed(record.items))},
        {"digest": "0" * 64},
    ]
    for change in changes:
        result = verify([replace(record, **change)])
        assert (result.ok, result.broken_at, result.reason) == (False, 1, EDITED), change
    for fmt in (1, 3):
        assert verify([replace(record, format=fmt)]).reason == EDITED


def test_references_are_covered_and_bound_to_their_meaning() -> None:
    record = seal(GENESIS, 1, replace(pending(1), refs=(17, 0)))
    assert verify([record]).ok and record.refs == (17, 0)
    for refs in ((18, 0), (17, 5), (0, 0)):
        assert verify([replace(record, refs=refs)]).reason == EDITED, refs
    # The reference resolves to another version than was released: the digest says so.
    moved = replace(record, items=(("indicator--other", V), record.items[1]))
    result = verify([moved])
    assert (result.ok, result.broken_at, result.reason) == (False, 1, MEANING_CHANGED)
    with pytest.raises(ValueError):
        seal(GENESIS, 1, replace(pending(1), refs=(17,)))


def test_edited_record_breaks_at_itself() -> None:
    records = sealed(5)
    records[2] = replace(records[2], nation="USA")
    result = verify(records)
    assert (result.ok, result.broken_at, result.reason, result.count) == (False, 3, EDITED, 2)
    assert result.head == records[1].hash


def test_edited_and_rehashed_record_breaks_at_the_next() -> None:
    records = sealed(5)
    forged = seal(records[2].prev_hash, 3, replace(records[2], nation="USA").fields)
    records[2] = forged
    result = verify(records)
    assert (result.broken_at, result.reason) == (4, DELETED_OR_REORDERED)


def test_deleted_record_breaks_at_the_next() -> None:
    records = sealed(5)
    del records[2]
    result = verify(records)
    assert (result.broken_at, result.reason) == (4, DELETED_OR_REORDERED)


def test_deleted_first_record_is_seen() -> None:
    result = verify(sealed(3)[1:])
    assert (result.broken_at, result.reason) == (2, DELETED_OR_REORDERED)


def test_reordered_records_break_at_the_first_swapped() -> None:
    records = sealed(6)
    # Swapping their seqs, as an edit of the table would: read back in seq order.
    a, b = records[1], records[4]
    records[1], records[4] = replace(b, seq=2), replace(a, seq=5)
    result = verify(records)
    assert (result.broken_at, result.reason) == (2, DELETED_OR_REORDERED)


def test_renumbered_record_is_seen() -> None:
    records = sealed(3)
    records[2] = replace(records[2], seq=7)
    result = verify(records)
    assert (result.broken_at, result.reason) == (7, DELETED_OR_REORDERED)


def test_verify_from_a_checkpoint() -> None:
    records = sealed(6)
    result = verify(records[3:], after_seq=3, prev_hash=records[2].hash)
    assert result.ok and result.count == 3 and result.head == records[-1].hash
    assert not verify(records[3:], after_seq=3, prev_hash=GENESIS).ok


def test_verify_streams_and_stops_at_the_first_break() -> None:
    """One pass over an iterator, nothing read past the broken record (so millions of records stream)."""
    records = sealed(4)
    records[1] = replace(records[1], path="forged")

    def once() -> Iterator[Decision]:
        yield from records[:2]
        raise AssertionError("read past the broken record")

    assert verify(once()).broken_at == 2


# --- settings ------------------------------------------------------------------------------------------


def test_settings_switch_and_interval() -> None:
    assert Settings().decision_log == 1 and Settings().decision_log_flush_ms == 200
    assert Settings.from_env({"RELTO_DECISION_LOG": "0"}).decision_log == 0
    for bad in ({"decision_log": 2}, {"decision_log": -1}, {"decision_log_flush_ms": 0}):
        with pytest.raises(ConfigurationError):
            Settings(**bad)


# --- DecisionLog, without a database ---------------------------------------------------------------------


class MemoryStore:
    """Just the decision-log part of a Store; `fail` makes writes raise."""

    def __init__(self) -> None:
        self.batches: list[list[PendingDecision]] = []
        self.fail: Exception | None = None

    def append_decisions(self, records: Sequence[PendingDecision]) -> list[Decision]:
        if self.fail is not None:
            raise self.fail
        self.batches.append(list(records))
        return []


def log_on(store: MemoryStore, **kw: Any) -> DecisionLog:
    return DecisionLog(cast(Store, store), enabled=kw.get("enabled", True), flush_seconds=kw.get("flush", 60.0))


def test_disabled_log_records_nothing() -> None:
    store = MemoryStore()
    log = log_on(store, enabled=False)
    log.record(GBR, "taxii.objects", C, [("indicator--1", V)])
    assert log.pending == 0 and log.flush() == 0 and store.batches == []
    log.close()


def test_record_is_stamped_when_called_and_flushed_in_order() -> None:
    store = MemoryStore()
    log = log_on(store)
    before = time.time_ns() // 1000
    items = [("indicator--1", V)]
    log.record(GBR, "taxii.objects", C, items)
    items.append(("indicator--2", V))  # the caller's list may change afterwards: the record keeps its copy
    log.record(KOR, "stream", C, iter([("indicator--3", None)]))
    time.sleep(0.01)
    assert log.flush() == 2
    first, second = store.batches[0]
    assert before <= first.at < second.at < time.time_ns() // 1000 - 5000
    assert (first.token_id, first.nation, first.path, first.collection, first.items) == (
        1,
        "GBR",
        "taxii.objects",
        C,
        (("indicator--1", V),),
    )
    assert (second.nation, second.path, second.items) == ("KOR", "stream", (("indicator--3", None),))
    log.close()


def test_background_thread_flushes_and_ends_when_idle() -> None:
    store = MemoryStore()
    log = log_on(store, flush=0.02)
    log.record(GBR, "taxii.objects", C, [("indicator--1", V)])
    deadline = time.monotonic() + 5
    while (store.batches == [] or log._worker is not None) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(store.batches) == 1 and log._worker is None
    log.record(GBR, "taxii.objects", C, [("indicator--2", V)])  # a new thread for the next record
    log.close()
    assert [b[0].items[0][0] for b in store.batches] == ["indicator--1", "indicator--2"]


def test_failed_flush_keeps_records_in_order_and_logs_no_parameters(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore()
    log = log_on(store)
    log.record(GBR, "taxii.objects", C, [("indicator--1", V)])
    store.fail = RuntimeError("database is down\n[parameters: ('indicator--1', 'GBR')]")
    with caplog.at_level(logging.ERROR, logger="relto.decisions"):
        assert log.flush() == 0
        log.record(GBR, "taxii.objects", C, [("indicator--2", V)])
        assert log.flush() == 0  # a repeated failure within a minute is not logged again
    assert log.pending == 2
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "could not write 1 records" in message and "database is down" in message and "indicator" not in message
    store.fail = None
    assert log.flush() == 2
    assert [r.items[0][0] for r in store.batches[0]] == ["indicator--1", "indicator--2"]
    log.close()


# --- storage, every back-end -------------------------------------------------------------------------


@pytest.fixture
def store(database: Database) -> Iterator[Store]:
    s = database.open()
    s.initialise(NodeInfo(node_id="n", nation="GBR", levels=DEFAULT_LEVELS, title="t"), default_communities())
    yield s
    s.close()


def tamper(store: Store, *statements: str) -> None:
    """Edit the table behind relto's back, as someone with database access could."""
    with cast(SQLStore, store).engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def fill(store: Store, count: int = 6) -> None:
    log = DecisionLog(store, enabled=True, flush_seconds=60)
    for n in range(1, count + 1):
        party = GBR if n % 2 else KOR
        log.record(party, "taxii.objects" if n % 3 else "publish", C, [(f"indicator--{n:08d}", V), ("x--1", None)])
    log.close()


def check(store: Store) -> tuple[bool, int | None, str | None, int]:
    result = verify(all_decisions(store, batch=4))
    return result.ok, result.broken_at, result.reason, result.count


def test_flushed_records_form_an_intact_chain(store: Store) -> None:
    assert store.decision_head() == (0, GENESIS)
    fill(store, 10)
    log = DecisionLog(store, enabled=True, flush_seconds=60)  # a second flush continues the same chain
    log.record(GBR, "delete", C, [("indicator--00000001", V)])
    log.close()
    records = list(all_decisions(store, batch=4))
    assert [r.seq for r in records] == list(range(1, 12))
    assert check(store) == (True, None, None, 11)
    assert store.decision_head() == (11, records[-1].hash)
    assert records[0].items == (("indicator--00000001", V), ("x--1", None))
    assert records[-1].path == "delete"


def test_reading_with_filters(store: Store) -> None:
    fill(store, 9)
    head = store.decisions(0, 100)
    assert [r.seq for r in store.decisions(0, 100, nation="KOR")] == [2, 4, 6, 8]
    assert [r.seq for r in store.decisions(0, 100, path="publish")] == [3, 6, 9]
    assert [r.seq for r in store.decisions(0, 100, object_id="indicator--00000005")] == [5]
    assert [r.seq for r in store.decisions(0, 100, object_id="x--1")] == list(range(1, 10))
    assert store.decisions(0, 100, object_id="x--") == []  # whole ids only
    assert [r.seq for r in store.decisions(0, 100, since=head[3].at, until=head[6].at)] == [4, 5, 6]
    assert [r.seq for r in store.decisions(0, 3, newest=True)] == [7, 8, 9]
    assert [r.seq for r in store.decisions(5, 2)] == [6, 7]
    assert [r.seq for r in store.decisions(0, 2, nation="GBR", newest=True)] == [7, 9]


def test_object_filter_treats_like_wildcards_literally(store: Store) -> None:
    log = DecisionLog(store, enabled=True, flush_seconds=60)
    log.record(GBR, "taxii.object", C, [("x-a_b--1", V)])
    log.record(GBR, "taxii.object", C, [("x-aXb--1", V)])
    log.record(GBR, "taxii.object", C, [("x-100%--1", V)])
    log.close()
    assert [r.seq for r in store.decisions(0, 10, object_id="x-a_b--1")] == [1]
    assert [r.seq for r in store.decisions(0, 10, object_id="x-100%--1")] == [3]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE decisions SET nation = 'USA' WHERE seq = 3",
        """UPDATE decisions SET items = '[["indicator--00000099","2024-10-18T09:30:00.000Z"]]' WHERE seq = 3""",
        "UPDATE decisions SET items = 'not json' WHERE seq = 3",
        "UPDATE decisions SET at = at + 1 WHERE seq = 3",
        "UPDATE decisions SET token_id = 42 WHERE seq = 3",
    ],
)
def test_edited_row_breaks_at_itself(store: Store, statement: str) -> None:
    fill(store)
    tamper(store, statement)
    assert check(store) == (False, 3, EDITED, 2)


def test_deleted_row_breaks_at_the_next(store: Store) -> None:
    fill(store)
    tamper(store, "DELETE FROM decisions WHERE seq = 3")
    assert check(store) == (False, 4, DELETED_OR_REORDERED, 2)


def test_swapped_rows_break_at_the_first_swapped(store: Store) -> None:
    fill(store)
    tamper(
        store,
        "UPDATE decisions SET seq = -1 WHERE seq = 2",
        "UPDATE decisions SET seq = 2 WHERE seq = 5",
        "UPDATE decisions SET seq = 5 WHERE seq = -1",
    )
    assert check(store) == (False, 2, DELETED_OR_REORDERED, 1)


def test_new_records_chain_after_a_tampered_one_and_the_break_stays(store: Store) -> None:
    fill(store)
    tamper(store, "UPDATE decisions SET nation = 'USA' WHERE seq = 6")
    fill(store, 2)
    assert check(store) == (False, 6, EDITED, 5)


def test_two_stores_flushing_at_once_make_one_chain(database: Database) -> None:
    """Two processes' worth of writers (a store each) on one database: the write lock keeps the chain linear."""
    first = database.open()
    first.initialise(NodeInfo(node_id="n", nation="GBR", levels=DEFAULT_LEVELS, title="t"), default_communities())
    second = database.open()
    logs = [DecisionLog(s, enabled=True, flush_seconds=0.005) for s in (first, second)]
    per_thread, threads_per_log = 150, 2
    start = threading.Barrier(len(logs) * threads_per_log)

    def work(log: DecisionLog, party: Party) -> None:
        start.wait()
        for n in range(per_thread):
            log.record(party, "taxii.objects", C, [(f"indicator--{party.nation}-{n}", V)])
            if n % 25 == 0:
                log.flush()

    threads = [
        threading.Thread(target=work, args=(log, party))
        for log in logs
        for party in (GBR, KOR)
        for _ in range(threads_per_log // 2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for log in logs:
        log.close()
    try:
        assert check(first) == (True, None, None, len(threads) * per_thread)
        ids = [r.items[0][0] for r in all_decisions(first)]
        assert len(set(ids)) < len(ids)  # both logs recorded the same ids ...
        for nation in ("GBR", "KOR"):  # ... and each log's records of one party kept their order
            mine = [int(i.rsplit("-", 1)[1]) for i in ids if f"--{nation}-" in i]
            assert sorted(mine) == sorted(list(range(per_thread)) * (len(threads) // 2))
    finally:
        first.close()
        second.close()


def test_migration_matches_the_schema(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from relto.store.schema import metadata

    with cast(SQLStore, store).engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert [d for d in diffs if any(n in repr(d) for n in ("decisions", "checkpoints", "version_seq"))] == []


# --- the CLI -----------------------------------------------------------------------------------------


def audit_cli(*args: str) -> tuple[int, str, str]:
    done = subprocess.run([sys.executable, "-m", "relto", "audit", *args], capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout.strip(), done.stderr.strip()


def test_cli_verify_ok_then_broken(database: Database) -> None:
    relto("init", *database.args, "--nation", "GBR")
    store = database.open()
    try:
        fill(store)
        head = store.decision_head()[1]
        assert relto("audit", "verify", *database.args) == f"OK: 6 records, head {head}"
        assert relto("audit", "verify", *database.args, "--expect", head).startswith("OK: 6 records")
        code, out, _ = audit_cli("verify", *database.args, "--expect", "f" * 64)
        assert code == 1 and out.startswith("BROKEN after record 6: no record has hash")
        tamper(store, "UPDATE decisions SET items = '[]' WHERE seq = 4")
        code, out, _ = audit_cli("verify", *database.args)
        assert code == 1
        assert out == "BROKEN at record 4: edited (its hash does not match its contents)"
    finally:
        store.close()


def test_cli_verify_reports_progress_on_stderr(tmp_path: Path) -> None:
    db = Database("sqlite", ("--data", str(tmp_path / "node")))
    relto("init", *db.args, "--nation", "GBR")
    store = db.open()
    try:
        # 100,000 small records, chained directly (the flush path is tested above; this is about the walk).
        from relto.store.audit import append_decisions

        with cast(SQLStore, store).engine.begin() as conn:
            append_decisions(conn, [replace(pending(n), items=()) for n in range(100_001)])
    finally:
        store.close()
    code, out, err = audit_cli("verify", *db.args)
    assert (code, out.split(",")[0]) == (0, "OK: 100001 records")
    assert "checked 100,000 records" in err


def test_cli_show(database: Database) -> None:
    relto("init", *database.args, "--nation", "GBR")
    store = database.open()
    try:
        fill(store, 8)
    finally:
        store.close()

    def show(*args: str) -> list[str]:
        result = CliRunner().invoke(main, ["audit", "show", *database.args, *args])
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        if lines and not lines[0].startswith("{"):
            assert lines[0].split("\t")[:3] == ["SEQ", "TIME (UTC)", "NATION"]  # the columns are named
            lines = lines[1:]
        return lines

    lines = show("--limit", "3")
    assert [line.split("\t")[0] for line in lines] == ["6", "7", "8"]
    _seq, at, nation, _token, path, collection, items = lines[-1].split("\t")
    assert (nation, path, collection) == ("KOR", "taxii.objects", C)
    assert at.endswith("Z") and items == "2 items: indicator--00000008, x--1"
    assert [line.split("\t")[0] for line in show("--after", "2", "--limit", "2")] == ["3", "4"]
    assert [line.split("\t")[0] for line in show("--nation", "kor", "--path", "publish")] == ["6"]
    assert [line.split("\t")[0] for line in show("--object", "indicator--00000003")] == ["3"]
    assert show("--since", "2100-01-01") == [] and len(show("--until", "2100-01-01T00:00:00Z")) == 8
    record = orjson.loads(show("--json", "--limit", "1")[0])
    assert record["seq"] == 8 and record["items"] == [["indicator--00000008", V], ["x--1", None]]
    assert len(record["hash"]) == 64 and record["at"].endswith("Z")
    bad = CliRunner().invoke(main, ["audit", "show", *database.args, "--since", "yesterday"])
    assert bad.exit_code == 2 and "YYYY-MM-DD" in bad.stderr


def test_the_auditors_script_in_the_docs_agrees(tmp_path: Path) -> None:
    """docs/audit.md's standard-library check gives relto's answers, intact and tampered, on a log of both
    formats, with copies and references (a deleted version's too), from the last checkpoint."""
    script = tmp_path / "auditor.py"
    script.write_text((ROOT / "docs" / "audit.md").read_text().split("```python\n", 1)[1].split("```", 1)[0])
    db = Database("sqlite", ("--data", str(tmp_path / "node")))
    node = make_node(db)
    store = node.store

    def ours() -> str:
        return str(CliRunner().invoke(main, ["audit", "verify", *db.args]).stdout.strip())

    try:
        old = PendingDecision(at=1, token_id=1, nation="GBR", path="taxii.objects", collection=C, items=(("x--1", V),))
        v1 = hashlib.sha256(encode_v1(1, old, GENESIS)).hexdigest()
        tamper(  # a record an older relto wrote (format 1)
            store,
            "INSERT INTO decisions (seq, at, token_id, nation, path, collection, items, prev_hash, hash, format) "
            f"""VALUES (1, 1, 1, 'GBR', 'taxii.objects', '{C}', '[["x--1","{V}"]]', '{GENESIS}', '{v1}', 1)""",
        )
        log = DecisionLog(store, enabled=True, flush_seconds=60)
        log.record(GBR, "taxii.objects", C, [("indicator--é\u2028", V), ("ipv4-addr--1", None)])
        log.record(KOR, "stream", C, [("indicator--2", V)])
        log.record(GBR, "publish", C, [])
        log.close()
        coll = node.add_collection("c").id
        node.publish(GBR, coll, [stix_indicator(1), stix_indicator(2)])  # record 5
        node.read(GBR, coll, Filters(limit=10))
        node.delete_object(GBR, coll, stix_indicator(1)["id"], Filters(limit=10))
        node.decisions.flush()
        assert [r.format for r in store.decisions(0, 100)] == [1, 2, 2, 2, 2, 2, 2]

        def audited() -> tuple[int, str]:
            done = subprocess.run(
                [sys.executable, str(script), str(tmp_path / "node" / "relto.db")], capture_output=True, text=True
            )
            return done.returncode, (done.stdout + done.stderr).strip()

        assert audited() == (0, ours())
        archived = CliRunner().invoke(main, ["audit", "archive", *db.args, "--upto", "2", "--to", str(tmp_path / "a")])
        assert archived.exit_code == 0, archived.output
        assert ours().startswith("OK: 5 records") and audited() == (0, ours().split(" (")[0])
        tamper(store, "DELETE FROM deletions")
        assert audited() == (1, "BROKEN at record 5: references changed")
        tamper(store, "UPDATE decisions SET path = 'stream' WHERE seq = 4")
        assert audited() == (1, "BROKEN at record 4: edited")
    finally:
        node.close()


def test_postgres_compresses_items_with_lz4_where_it_can(store: Store) -> None:
    if not isinstance(store, PostgresStore):
        pytest.skip("a PostgreSQL storage setting")
    with store.engine.connect() as conn:
        has_lz4 = conn.execute(
            text("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")
        ).scalar()
        method = conn.execute(
            text("SELECT attcompression FROM pg_attribute WHERE attrelid = 'decisions'::regclass AND attname = 'items'")
        ).scalar()
    assert method == ("l" if has_lz4 else "")


# --- the node records what it releases (the wiring in node.py, seen from here) -----------------------


def stix_indicator(n: int, modified: str = V) -> dict[str, Any]:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--00000000-0000-4000-8000-{n:012d}",
        "created": V,
        "modified": modified,
        "name": f"indicator {n}",
        "pattern": "[domain-name:value = 'evil.example']",
        "pattern_type": "stix",
        "valid_from": V,
    }


def test_every_taxii_path_is_recorded(harness: Harness) -> None:
    gbr, kor = harness.token("GBR"), harness.token("KOR")
    coll = harness.collection()
    first, second = stix_indicator(1), stix_indicator(2)
    newer = stix_indicator(1, "2024-10-19T09:30:00.000Z")
    harness.post(gbr, coll, [first, second, newer])
    base = f"/api/collections/{coll}/"
    for path in ("objects/", "manifest/", f"objects/{first['id']}/", f"objects/{first['id']}/versions/"):
        assert harness.get(gbr, base + path).status_code == 200
    assert "objects" not in harness.get(kor, base + "objects/").json()  # nothing released: nothing recorded
    assert harness.client.delete(base + f"objects/{second['id']}/", headers=harness.headers(gbr)).status_code == 200
    harness.node.decisions.flush()
    records = harness.node.store.decisions(0, 100)
    assert [(r.nation, r.path, r.collection) for r in records] == [
        ("GBR", "publish", coll),
        ("GBR", "taxii.objects", coll),
        ("GBR", "taxii.manifest", coll),
        ("GBR", "taxii.object", coll),
        ("GBR", "taxii.versions", coll),
        ("GBR", "delete", coll),
    ]
    newest = (first["id"], newer["modified"])
    assert set(records[0].items) == {(first["id"], V), (second["id"], V), newest}
    assert records[1].items == ((second["id"], V), newest)
    assert records[3].items == (newest,)
    assert set(records[4].items) == {(first["id"], V), newest}
    assert records[5].items == ((second["id"], V),)
    assert verify(records).ok


def test_a_node_with_the_log_off_records_nothing(database: Database) -> None:
    node = make_node(database)
    try:
        quiet = Node(node.store, Settings(decision_log=0))
        party = Party(token_id=1, nation="GBR", clearance=3)
        coll = quiet.add_collection("c").id
        quiet.publish(party, coll, [stix_indicator(1)])
        quiet.decisions.close()
        assert quiet.store.decisions(0, 10) == [] and quiet.store.decision_head() == (0, GENESIS)
    finally:
        node.close()
