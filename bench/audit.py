"""Decision log benchmark: what recording every release costs a TAXII reader (MITRE ATT&CK Enterprise).

Run from the repository root:
    .venv/bin/python bench/audit.py [--rounds 9] [--postgres URL] [--json out.json]

1. One node (SQLite by default; a fresh PostgreSQL database with --postgres) is loaded with the corpus through
   `relto serve`, in envelopes of 1,000.
2. Two servers on that same database, started alike but for RELTO_DECISION_LOG=1 (on) and =0 (off).
3. Rounds alternate between them (a warm-up round each first, not counted): each reads the whole collection
   through TAXII pages (limit=1000, following `next`) on one kept-alive connection. Reported: objects/s per
   round, the median per server, the ratio on/off of the medians and the median of each round's ratio
   (1.00: the log costs nothing; the latter is steadier on a shared machine).
4. In-process, without HTTP: the cost of one DecisionLog.record() call for a 1,000-item page (with its
   references), and of writing such records (flush), per record.
5. The servers are stopped (shutdown flushes the log) and `relto audit verify` walks what the "on" server
   recorded: records and seconds.
6. Stored bytes per released item, side by side: the records as stored (format 2, references) and the same
   records copied into a scratch table as relto stored them before (format 1, every (id, version) copied);
   table and index size over the items they hold (SQLite: dbstat; PostgreSQL: pg_total_relation_size).
7. `relto audit archive` of every record, then `relto audit verify --archive` of the file: seconds, and the
   archive's size per item.
Progress goes to stderr; the figures to stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import orjson
from _common import (
    Collection,
    Measurement,
    TaxiiClient,
    bearer_auth,
    envelopes,
    exit_on_sigterm,
    free_port,
    ingest,
    load_objects,
    log,
    node_database,
    read_back,
    relto_setup,
    run_cli,
    serve_command,
    server,
)

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "data" / "enterprise-attack-18.1-stix21.json.gz"
SWITCH = "RELTO_DECISION_LOG"


@contextmanager
def relto_server(
    args: argparse.Namespace, where: list[str], token: str, decision_log: int, log_path: Path
) -> Iterator[TaxiiClient]:
    """`relto serve` with RELTO_DECISION_LOG set as asked; yields a client once it answers."""
    port = free_port()
    before = os.environ.get(SWITCH)
    try:
        os.environ[SWITCH] = str(decision_log)  # the child copies the environment when it starts
        with server(serve_command(args.relto, where, port), log_path) as process:
            restore(SWITCH, before)
            client = TaxiiClient(f"http://127.0.0.1:{port}", bearer_auth(token), args.timeout)
            try:
                client.wait_ready(process, log_path)
                yield client
            finally:
                client.close()
    finally:
        restore(SWITCH, before)


def restore(name: str, value: str | None) -> None:
    """Put an environment variable back as it was."""
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def sweep(client: TaxiiClient, path: str, name: str, expected: int) -> float:
    """Read the whole collection once; return objects per second."""
    result = Measurement(name, ingested=expected)
    read_back(client, path, result)
    if result.notes:
        raise RuntimeError(f"{name}: {'; '.join(result.notes)}")
    return result.read / result.read_s


def record_costs(count: int, items: int) -> dict[str, float]:
    """In-process: microseconds per DecisionLog.record() of `items` items (and their references), and per
    record written by flush."""
    from relto.decisions import DecisionLog
    from relto.domain.parties import Party
    from relto.store.sqlite import SQLiteStore

    with tempfile.TemporaryDirectory(prefix="relto-bench-audit-") as scratch:
        store = SQLiteStore(Path(scratch) / "log.db")
        try:
            decisions = DecisionLog(store, enabled=True, flush_seconds=3600)  # flushed below, by hand
            party = Party(token_id=1, nation="GBR", clearance=3)
            page = [
                (f"attack-pattern--{n:08d}-0000-4000-8000-000000000000", "2024-10-18T09:30:00.000Z")
                for n in range(items)
            ]
            refs = list(range(1_000_000, 1_000_000 + items))  # a page of consecutive versions
            start = time.perf_counter()
            for _ in range(count):
                decisions.record(party, "taxii.objects", "11111111-1111-4111-8111-111111111111", page, refs)
            recorded = time.perf_counter() - start
            start = time.perf_counter()
            decisions.close()
            flushed = time.perf_counter() - start
        finally:
            store.close()
    # A restricted reader's page refers to scattered versions: 1,000 of 10,000 (a 10% reader), at random.
    from relto.domain.audit import pack_refs

    scattered = sorted(random.Random(16).sample(range(1_000_000, 1_010_000), items))
    return {
        "record_us": recorded / count * 1e6,
        "flush_us_per_record": flushed / count * 1e6,
        "packed_consecutive_bytes": len(pack_refs(refs)),
        "packed_scattered_bytes": len(pack_refs(scattered)),
    }


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    objects = load_objects(args.corpus)
    batch = envelopes(objects)
    log(f"corpus {args.corpus.name}: {len(objects):,} objects, {len(batch)} envelopes")
    rates: dict[str, list[float]] = {"on": [], "off": []}
    with node_database(args.postgres, workdir / "node") as db:
        where = db.args
        token, collection_id = relto_setup(args.relto, where, "decision log bench")
        target = Collection("/api/", collection_id)
        with ExitStack() as servers:
            on = servers.enter_context(relto_server(args, where, token, 1, workdir / "relto-on.log"))
            loaded = Measurement("load")
            ingest(on, target, batch, loaded, budget=float("inf"), log_every=10)
            off = servers.enter_context(relto_server(args, where, token, 0, workdir / "relto-off.log"))
            clients = {"on": on, "off": off}
            for name, client in clients.items():
                sweep(client, target.objects, f"warm-up ({name})", loaded.ingested)
            for number in range(1, args.rounds + 1):
                # Alternate which goes first, so neither always follows the other's flush.
                order = ("on", "off") if number % 2 else ("off", "on")
                for name in order:
                    rates[name].append(sweep(clients[name], target.objects, f"log {name}", loaded.ingested))
                log(f"round {number}: on {rates['on'][-1]:,.0f} obj/s, off {rates['off'][-1]:,.0f} obj/s")
        start = time.perf_counter()
        verified = run_cli([args.relto, "audit", "verify", *where])
        verify_s = time.perf_counter() - start
        log(f"relto audit verify: {verified} ({verify_s:.1f} s)")
        sizes = log_sizes(db.url)
        log(f"bytes per item: {sizes['v1_bytes_per_item']:.1f} copied, {sizes['v2_bytes_per_item']:.2f} referenced")
        archived = archive_and_verify(args.relto, where, workdir / "decisions-1.jsonl.gz", sizes["items"])
    costs = record_costs(args.record_calls, 1000)
    on_median, off_median = statistics.median(rates["on"]), statistics.median(rates["off"])
    # Each round's two sweeps run back to back, so their ratio sees the same machine load: the median of
    # those ratios is steadier on a shared machine than the ratio of the medians.
    paired = statistics.median(on / off for on, off in zip(rates["on"], rates["off"], strict=True))
    return {
        "corpus": str(args.corpus),
        "objects": loaded.ingested,
        "backend": "postgres" if args.postgres else "sqlite",
        "rounds": args.rounds,
        "on_obj_s": rates["on"],
        "off_obj_s": rates["off"],
        "on_median_obj_s": on_median,
        "off_median_obj_s": off_median,
        "ratio_on_off": on_median / off_median,
        "paired_ratio_on_off": paired,
        "verify": verified,
        "verify_s": verify_s,
        **sizes,
        **archived,
        **costs,
    }


def log_sizes(url: str) -> dict[str, Any]:
    """Stored bytes per released item of the log as written (format 2) and of the same records copied into a
    scratch table the way format 1 stored them; the scratch table is dropped afterwards."""
    from sqlalchemy import Column, Index, MetaData, Table, create_engine, insert, text

    from relto.domain.audit import GENESIS, encode_v1
    from relto.store.open import open_store
    from relto.store.postgres import engine_url
    from relto.store.schema import decisions as t

    store = open_store(url=url) if url.startswith("postgresql") else open_store(data=Path(url[10:]).parent)
    try:
        records = store.decisions(0, 1_000_000)
    finally:
        store.close()
    rows, prev = [], GENESIS
    for r in records:
        digest = hashlib.sha256(encode_v1(r.seq, r.fields, prev)).hexdigest()
        fields = {k: getattr(r, k) for k in ("seq", "at", "token_id", "nation", "path", "collection")}
        rows.append({**fields, "items": orjson.dumps(r.items).decode(), "prev_hash": prev, "hash": digest})
        prev = digest
    engine = create_engine(engine_url(url) if url.startswith("postgresql") else url)
    scratch = "bench_decisions_v1"
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":  # the same columns, index and lz4 setting as `decisions`
                conn.exec_driver_sql(f"CREATE TABLE {scratch} (LIKE decisions INCLUDING ALL)")
                copy = Table(scratch, MetaData(), autoload_with=conn)
            else:
                columns = [Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable) for c in t.columns]
                copy = Table(scratch, MetaData(), *columns, Index(f"ix_{scratch}_at", "at"))
                copy.create(conn)
            conn.execute(insert(copy), [{**row, "format": 1} for row in rows])
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                size = "SELECT pg_total_relation_size(:table)"
            else:  # the table's pages and its indexes' (dbstat, in SQLite's own build)
                size = (
                    "SELECT SUM(pgsize) FROM dbstat WHERE name IN "
                    "(SELECT name FROM sqlite_master WHERE tbl_name = :table)"
                )
            v1, v2 = (int(conn.execute(text(size), {"table": name}).scalar() or 0) for name in (scratch, "decisions"))
            conn.exec_driver_sql(f"DROP TABLE {scratch}")
    finally:
        engine.dispose()
    items = sum(len(r.items) for r in records)
    return {
        "records": len(records),
        "items": items,
        "v1_bytes": v1,
        "v2_bytes": v2,
        "v1_bytes_per_item": v1 / items,
        "v2_bytes_per_item": v2 / items,
    }


def archive_and_verify(binary: str, where: list[str], path: Path, items: int) -> dict[str, Any]:
    """`relto audit archive` of every record, then `relto audit verify --archive` of the file: seconds."""
    start = time.perf_counter()
    archived = run_cli([binary, "audit", "archive", *where, "--before", "2999-01-01", "--to", str(path)])
    archive_s = time.perf_counter() - start
    log(f"relto audit archive: {archived} ({archive_s:.1f} s)")
    start = time.perf_counter()
    verified = run_cli([binary, "audit", "verify", *where, "--archive", str(path)])
    verify_s = time.perf_counter() - start
    log(f"relto audit verify --archive: {verified} ({verify_s:.1f} s)")
    size = path.stat().st_size
    return {
        "archive_s": archive_s,
        "archive_verify": verified,
        "archive_verify_s": verify_s,
        "archive_bytes": size,
        "archive_bytes_per_item": size / items,
    }


def report(result: dict[str, Any]) -> None:
    print(f"corpus: {Path(result['corpus']).name}, {result['objects']:,} objects, {result['backend']}")
    print(f"read rounds (alternating), obj/s: on {[round(r) for r in result['on_obj_s']]}")
    print(f"                                 off {[round(r) for r in result['off_obj_s']]}")
    print(f"median read obj/s: log on {result['on_median_obj_s']:,.0f}, log off {result['off_median_obj_s']:,.0f}")
    ratio, paired = result["ratio_on_off"], result["paired_ratio_on_off"]
    print(f"ratio on/off: {ratio:.2f} (of the medians); {paired:.2f} (median of each round's ratio)")
    record, flush = result["record_us"], result["flush_us_per_record"]
    print(f"record() of a 1,000-item page: {record:.1f} µs; flush: {flush:.0f} µs per record")
    consecutive, scattered = result["packed_consecutive_bytes"], result["packed_scattered_bytes"]
    print(f"references of a 1,000-item page packed: {consecutive} bytes (consecutive), {scattered} (a 10% reader's)")
    print(f"relto audit verify: {result['verify']} in {result['verify_s']:.1f} s")
    items, records = result["items"], result["records"]
    print(f"stored log: {records:,} records, {items:,} items released")
    v1, v2 = result["v1_bytes"], result["v2_bytes"]
    print(f"  format 1 (copies):    {v1:>12,} bytes, {result['v1_bytes_per_item']:8.2f} bytes per item")
    print(f"  format 2 (references):{v2:>12,} bytes, {result['v2_bytes_per_item']:8.2f} bytes per item")
    print(f"relto audit archive (every record): {result['archive_s']:.1f} s, file {result['archive_bytes']:,} bytes")
    print(f"  ({result['archive_bytes_per_item']:.1f} bytes per item, references resolved)")
    print(f"relto audit verify --archive: {result['archive_verify']} in {result['archive_verify_s']:.1f} s")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--corpus", type=Path, default=CORPUS, help="gzipped STIX bundle (default: %(default)s)")
    add("--rounds", type=int, default=9, help="measured read rounds per server, median (default: 9)")
    add("--record-calls", type=int, default=2000, help="in-process record() calls timed (default: 2000)")
    add("--postgres", default=None, help="PostgreSQL URL of a role that may CREATE DATABASE (default: SQLite)")
    add("--relto", default=str(Path(sys.executable).parent / "relto"), help="relto's CLI (default: %(default)s)")
    add("--timeout", type=float, default=300.0, help="seconds allowed per HTTP request (default: 300)")
    add("--json", type=Path, help="also write the results as JSON to this file")
    add("--workdir", type=Path, help="keep the database and server logs under this directory (default: a temp dir)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()  # so the finally blocks stop the servers
    with tempfile.TemporaryDirectory(prefix="relto-bench-") as scratch:
        workdir = (args.workdir or Path(scratch)) / time.strftime("audit-%Y%m%d-%H%M%S")
        workdir.mkdir(parents=True)
        log(f"work directory {workdir}")
        result = measure(args, workdir)
    report(result)
    if args.json:
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
