"""Scale benchmark: 1,000,000 small indicators under 50 releasability markings, through TAXII, on one relto node.

Run from the repository root:
    .venv/bin/python bench/scale.py [--objects N] [--backend sqlite|postgres|both] [--postgres URL]
                                    [--skip-floor] [--workdir DIR [--keep]] [--json out.json]

The corpus: N indicators (~500 bytes each; random ids, a pattern on an ipv4 address) spread evenly, in a shuffled
order, over 50 relto releasability markings (UNCLASSIFIED..SECRET, REL TO GBR plus nations and communities).
Five of the 50 name UKR in their REL TO, so exactly 10% of the indicators are releasable to UKR: UKR is in no
community, so only an explicit UKR admits it. The 50 marking definitions go first, in the first envelope.

Per back-end (a fresh SQLite directory, or a fresh PostgreSQL database relto_bench_<random> dropped afterwards),
one `relto serve` process:
1. ingest: a GBR TOP SECRET token POSTs envelopes of 1,000; obj/s overall and over the first and the last tenth.
2. read: an unrestricted reader (GBR, TOP SECRET: it sees everything) pages through the collection with
   limit=1000; then a UKR SECRET reader pages through its 10%. The target: the restricted reader pays no more
   per object it receives than the unrestricted one (ratio <= 1.0). First and last page: median of replays.
   On PostgreSQL each read first waits (up to --wait-autovacuum s) for the autovacuum that follows a bulk load,
   so the reads measure the steady state, not two cores shared with VACUUM.
3. RSS (VmRSS of the server process and its children) after ingest and after the reads; database size.
4. the read query's plan (EXPLAIN QUERY PLAN on SQLite, EXPLAIN ANALYZE on PostgreSQL) for each reader, and
   its SQL time in this process, to tell the database's share of a page from the rest.
Baseline in the same run: the floor of bench/node.py (orjson + SQLite, no server) on the same envelopes.
Progress goes to stderr; the report to stdout.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from itertools import combinations
from pathlib import Path
from typing import Any

import orjson
from _common import (
    MIB,
    PAGE_SIZE,
    Collection,
    Envelope,
    Measurement,
    StixObject,
    Target,
    TaxiiClient,
    bearer_auth,
    exit_on_sigterm,
    figure,
    free_port,
    ingest,
    issue_token,
    log,
    mib,
    node_database,
    postgres_size_bytes,
    process_tree_rss_bytes,
    quotient,
    read_back,
    relto_setup,
    serve_command,
    server,
    time_pages,
)
from node import floor_once

from relto.domain.levels import Ladder
from relto.domain.markings import releasability_marking

PUBLISHER = "GBR"
READER = "UKR"  # in no default community: only an explicit UKR in REL TO admits it
READER_CLEARANCE = "SECRET"
LEVELS = ("UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET")
PARTNERS = ("USA", "KOR", "FRA", "JPN", "NATO", "FVEY", "IP4", "EU")
MARKINGS = 50
READER_MARKINGS = (  # REL TO beyond GBR and UKR, for the five markings that admit the reader
    (),
    ("USA",),
    ("NATO",),
    ("FVEY", "KOR"),
    ("EU", "JPN"),
)
BASE_TIME = 1_735_689_600  # 2025-01-01T00:00:00Z
DURABLE_FLOOR: list[float | None] = [None]  # the floor's ingest rate with synchronous=FULL, once measured


# --- corpus -------------------------------------------------------------------------------------


def marking_definitions() -> tuple[list[StixObject], list[bool]]:
    """50 distinct releasability markings, and for each whether its REL TO admits the reader."""
    ladder = Ladder()
    chosen: list[tuple[str, tuple[str, ...]]] = []
    for index, extra in enumerate(READER_MARKINGS):
        chosen.append((LEVELS[index % len(LEVELS)], (PUBLISHER, READER, *extra)))
    groups = [group for size in (1, 2, 3) for group in combinations(PARTNERS, size)]
    step = 0
    while len(chosen) < MARKINGS:
        candidate = (LEVELS[step % len(LEVELS)], (PUBLISHER, *groups[(step * 7) % len(groups)]))
        step += 1
        if candidate not in chosen:
            chosen.append(candidate)
    definitions = [releasability_marking(level, rel_to, ladder) for level, rel_to in chosen]
    if len({d["id"] for d in definitions}) != MARKINGS:
        raise AssertionError("the markings are not distinct")
    return definitions, [READER in rel_to for _, rel_to in chosen]


def timestamp(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(seconds))


def indicators(count: int, refs: list[str], rng: random.Random) -> Iterator[StixObject]:
    """`count` small indicators, each marked with one of `refs` (the list says which, in object order)."""
    for number in range(count):
        stamp = timestamp(BASE_TIME + number)
        a, b, c = rng.randrange(256), rng.randrange(256), rng.randrange(1, 255)
        yield {
            "type": "indicator",
            "spec_version": "2.1",
            "id": f"indicator--{uuid.UUID(int=rng.getrandbits(128), version=4)}",
            "created": stamp,
            "modified": stamp,
            "name": f"Scale indicator {number:07d}: suspicious host 10.{a}.{b}.{c}",
            "description": "Synthetic indicator for relto's scale benchmark; the address is made up.",
            "indicator_types": ["malicious-activity"],
            "pattern": f"[ipv4-addr:value = '10.{a}.{b}.{c}']",
            "pattern_type": "stix",
            "valid_from": stamp,
            "object_marking_refs": [refs[number]],
        }


@dataclass
class Corpus:
    """The serialised envelopes and what each reader should see."""

    envelopes: list[Envelope]
    objects: int
    indicators: int
    reader_sees: int
    mean_bytes: float


def generate(count: int, seed: int) -> Corpus:
    """Marking definitions first, then `count` indicators spread evenly (shuffled) over the markings."""
    rng = random.Random(seed)
    definitions, admits = marking_definitions()
    share = [count // MARKINGS + (1 if index < count % MARKINGS else 0) for index in range(MARKINGS)]
    assignment = [index for index in range(MARKINGS) for _ in range(share[index])]
    rng.shuffle(assignment)
    refs = [definitions[index]["id"] for index in assignment]
    reader_sees = sum(share[index] for index in range(MARKINGS) if admits[index]) + sum(admits)
    batch: list[Envelope] = []
    chunk: list[StixObject] = list(definitions)
    sizes = 0
    for obj in indicators(count, refs, rng):
        chunk.append(obj)
        if len(chunk) == PAGE_SIZE:
            body = orjson.dumps({"objects": chunk})
            batch.append(Envelope(body, len(chunk)))
            sizes += len(body)
            chunk = []
            if len(batch) % 100 == 0:
                log(f"generated {len(batch) * PAGE_SIZE:,} objects")
    if chunk:
        body = orjson.dumps({"objects": chunk})
        batch.append(Envelope(body, len(chunk)))
        sizes += len(body)
    total = count + len(definitions)
    return Corpus(batch, total, count, reader_sees, sizes / total)


# --- one back-end -------------------------------------------------------------------------------


@dataclass
class Reader:
    """One reader's sweep."""

    name: str
    nation: str
    clearance: str
    expected: int
    result: Measurement
    page_ms: list[float] = field(default_factory=list)  # every page of the sweep, in order

    @property
    def us_per_object(self) -> float | None:
        return self.result.read_s / self.result.read * 1e6 if self.result.read else None

    def page_quantile(self, q: float) -> float | None:
        """A quantile of the sweep's page times (0.5: the median)."""
        ordered = sorted(self.page_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


@dataclass
class BackendRun:
    """What one back-end did at scale."""

    backend: str
    ingest: Measurement
    times: list[float] = field(default_factory=list)  # cumulative ingest seconds after each envelope
    sizes: list[int] = field(default_factory=list)  # objects stored by each envelope
    readers: list[Reader] = field(default_factory=list)
    rss_after_ingest: int | None = None
    rss_after_reads: int | None = None
    database_bytes: int | None = None
    plans: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def window_rate(self, tenth: str) -> float | None:
        """obj/s over the first or the last tenth of the envelopes (100k objects of 1M)."""
        count = len(self.times)
        if count < 2:
            return None
        span = max(1, count // 10)
        if tenth == "first":
            objects, seconds = sum(self.sizes[:span]), self.times[span - 1]
        else:
            objects, seconds = sum(self.sizes[-span:]), self.times[-1] - self.times[-span - 1]
        return objects / seconds if seconds > 0 else None


def database_size(backend: str, url: str) -> int:
    if backend == "sqlite":
        path = Path(url.removeprefix("sqlite:///"))
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    return postgres_size_bytes(url)


def measure_backend(backend: str, corpus: Corpus, args: argparse.Namespace, workdir: Path) -> BackendRun:
    """Ingest the corpus into a fresh node, then sweep it as the unrestricted and as the restricted reader."""
    system = f"relto {backend} x1"
    run = BackendRun(backend, Measurement(system))
    with node_database(args.postgres if backend == "postgres" else None, workdir / "relto-sqlite") as db:
        where, url = db.args, db.url
        publisher, collection = relto_setup(args.relto, where, "relto scale")
        readers = [
            (f"{PUBLISHER} TOP SECRET (unrestricted)", PUBLISHER, "TOP SECRET", corpus.objects),
            (f"{READER} {READER_CLEARANCE} (sees 10%)", READER, READER_CLEARANCE, corpus.reader_sees),
        ]
        tokens = [issue_token(args.relto, where, nation, level, read_only=True) for _, nation, level, _ in readers]
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log_path = workdir / f"relto-{backend}.log"
        target = Collection("/api/", collection)
        with server(serve_command(args.relto, where, port), log_path) as process:
            client = TaxiiClient(base, bearer_auth(publisher), args.timeout)
            try:
                client.wait_ready(process, log_path)
                ingest(client, target, corpus.envelopes, run.ingest, float("inf"), log_every=50, times=run.times)
            finally:
                client.close()
            run.sizes = [envelope.size for envelope in corpus.envelopes]
            run.rss_after_ingest = process_tree_rss_bytes(process.pid)
            log(f"{system}: server RSS after ingest {run.rss_after_ingest / MIB:,.0f} MiB")
            for (name, nation, level, expected), token in zip(readers, tokens, strict=True):
                reader = Reader(name, nation, level, expected, Measurement(f"{system} {name}"))
                client = TaxiiClient(base, bearer_auth(token), args.timeout)
                try:
                    if backend == "postgres":
                        if args.wait_autovacuum:
                            wait_for_autovacuum(url, args.wait_autovacuum)
                        run.notes.append(f"before the {reader.name} read: {postgres_stats(url)}")
                    sweep = read_back(
                        client, target.objects, reader.result, expected, budget=args.read_budget, log_every=100
                    )
                    reader.page_ms = [fetch.ms for fetch in sweep]
                    time_pages(client, target.objects, sweep, reader.result, args.repeat)
                finally:
                    client.close()
                run.readers.append(reader)
            run.rss_after_reads = process_tree_rss_bytes(process.pid)
            log(f"{system}: server RSS after reads {run.rss_after_reads / MIB:,.0f} MiB")
        run.database_bytes = database_size(backend, url)
        if not args.skip_explain:
            try:
                run.plans = explain(backend, url, collection, run.readers, args.repeat)
            except Exception as error:  # the plan is evidence, not the measurement
                run.notes.append(f"EXPLAIN failed: {error!r}")
    return run


def postgres_stats(url: str) -> str:
    """When the objects table was last analysed and how many rows changed since: the planner's estimates."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"))
    query = (
        "SELECT n_live_tup, n_mod_since_analyze, last_autoanalyze, last_analyze, reltuples::bigint "
        "FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid WHERE s.relname = 'objects'"
    )
    try:
        with engine.connect() as conn:
            live, changed, auto, manual, estimate = conn.execute(text(query)).one()
            workers = autovacuum_workers(conn)
    finally:
        engine.dispose()
    analysed = auto or manual
    when = analysed.strftime("%H:%M:%S") if analysed else "never"
    return (
        f"objects: {live:,} live rows, {changed:,} changed since the last ANALYZE ({when}), "
        f"planner's row estimate {estimate:,}; autovacuum: {'; '.join(workers) or 'idle'}"
    )


def autovacuum_workers(conn: Any) -> list[str]:
    """What the autovacuum workers on the connection's database are doing now."""
    from sqlalchemy import text

    query = (
        "SELECT query FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' AND datname = current_database()"
    )
    return [str(row[0]) for row in conn.execute(text(query))]


def wait_for_autovacuum(url: str, limit: float) -> None:
    """Wait (at most `limit` seconds) until no autovacuum worker runs on the database: after a bulk load one
    vacuums and analyses the objects table, competing for this machine's two cores with the reads."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"))
    start = time.perf_counter()
    try:
        while True:
            with engine.connect() as conn:
                workers = autovacuum_workers(conn)
            waited = time.perf_counter() - start
            if not workers or waited > limit:
                if waited > 1:
                    log(f"waited {waited:.0f} s for autovacuum ({'still running' if workers else 'done'})")
                return
            if waited < 1 or int(waited) % 10 == 0:
                log(f"autovacuum running: {'; '.join(workers)}")
            time.sleep(1.0)
    finally:
        engine.dispose()


# --- the read query's plan ----------------------------------------------------------------------


def explain(backend: str, url: str, collection: str, readers: list[Reader], repeat: int) -> list[str]:
    """The plan and in-process SQL time of the read query each reader's first page and a middle page run.

    The statement is relto's own (relto.store.sql._build_select, default filters: newest version), with the
    reader's visible marking sets computed by relto's policy from this database's marking sets and communities.
    """
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from relto.domain.communities import membership_index
    from relto.domain.policy import visible_sets
    from relto.store import open_store
    from relto.store import schema as t
    from relto.store.sql import _VERSION_COLUMNS, _build_select

    store = open_store(url=url)
    try:
        sets, members = store.marking_sets(), membership_index(store.communities(), date.today())
        ladder = Ladder(store.node_info().levels)
    finally:
        store.close()
    engine_url = make_url(url)
    if backend == "postgres":
        engine_url = engine_url.set(drivername="postgresql+psycopg")
    engine = create_engine(engine_url)
    lines: list[str] = []
    statement = _build_select(_VERSION_COLUMNS, False, False, False, ("last",), False, True)
    statement = statement.order_by(t.objects.c.seq).limit(PAGE_SIZE + 1)
    if backend == "postgres":
        lines.append(f"at EXPLAIN time: {postgres_stats(url)}")
    try:
        with engine.connect() as conn:
            top = int(conn.exec_driver_sql("SELECT max(seq) FROM objects").scalar_one())
            for reader in readers:
                visible = sorted(visible_sets(reader.nation, ladder.rank(reader.clearance), sets, members))
                for where, after in (("first page", 0), ("middle page", top // 2)):
                    bound = statement.params(
                        collection=collection, after=after, visible=visible, known_max=max(s.id for s in sets)
                    )
                    sql = str(bound.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
                    ms = statistics.median(_timed(conn, sql) for _ in range(repeat))
                    lines.append(
                        f"{reader.name}, {where} (seq > {after:,}; {len(visible)} visible marking sets): "
                        f"SQL {ms:.1f} ms in-process"
                    )
                    prefix = "EXPLAIN QUERY PLAN " if backend == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS) "
                    rows = conn.exec_driver_sql(prefix + sql).all()
                    lines += ["    " + str(row[-1]) for row in rows]
    finally:
        engine.dispose()
    return lines


def _timed(conn: Any, sql: str) -> float:
    start = time.perf_counter()
    conn.exec_driver_sql(sql).all()
    return (time.perf_counter() - start) * 1000


# --- report -------------------------------------------------------------------------------------


def report_lines(corpus: Corpus, floor: Measurement | None, runs: list[BackendRun]) -> tuple[list[str], list[Target]]:
    """The report as Markdown tables, the targets, the notes and the plans."""
    share = corpus.reader_sees / corpus.objects
    out = [
        f"corpus: {corpus.objects:,} objects ({corpus.indicators:,} indicators + {MARKINGS} marking definitions), "
        f"{corpus.mean_bytes:.0f} bytes each on average, envelopes of {PAGE_SIZE:,}; the {READER} "
        f"{READER_CLEARANCE} reader should see {corpus.reader_sees:,} ({share:.1%})",
        "",
        "| system | objects in | ingest obj/s | x floor | first 10% obj/s | last 10% obj/s | last / first "
        "| RSS after ingest MiB | RSS after reads MiB | database MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    floor_in = floor.ingest_rate if floor else None
    if floor:
        out.append(f"| {floor.system} | {floor.ingested:,} | {figure(floor.ingest_rate)} | 1.00 | | | | | | |")
    for run in runs:
        first, last = run.window_rate("first"), run.window_rate("last")
        out.append(
            f"| {run.ingest.system} | {run.ingest.ingested:,} | {figure(run.ingest.ingest_rate)} "
            f"| {figure(quotient(run.ingest.ingest_rate, floor_in), 2)} | {figure(first)} | {figure(last)} "
            f"| {figure(quotient(last, first), 2)} | {mib(run.rss_after_ingest)} | {mib(run.rss_after_reads)} "
            f"| {mib(run.database_bytes)} |"
        )
    out += [
        "",
        "| system | reader | objects out | read s | read obj/s | x floor | µs per object out | x unrestricted "
        "| page ms median / p90 | first page ms | last page ms | last / first |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    floor_out = floor.read_rate if floor else None
    if floor:
        us = floor.read_s / floor.read * 1e6 if floor.read else None
        out.append(
            f"| {floor.system} | everything | {floor.read:,} | {floor.read_s:.1f} | {figure(floor.read_rate)} | 1.00 "
            f"| {figure(us, 1)} | | | {figure(floor.first_page_ms, 1)} | {figure(floor.last_page_ms, 1)} "
            f"| {figure(quotient(floor.last_page_ms, floor.first_page_ms), 2)} |"
        )
    goals: list[Target] = []
    for run in runs:
        base = run.readers[0].us_per_object if run.readers else None
        for reader in run.readers:
            r = reader.result
            out.append(
                f"| {run.ingest.system} | {reader.name} | {r.read:,} | {r.read_s:.1f} | {figure(r.read_rate)} "
                f"| {figure(quotient(r.read_rate, floor_out), 2)} | {figure(reader.us_per_object, 1)} "
                f"| {figure(quotient(reader.us_per_object, base), 2)} "
                f"| {figure(reader.page_quantile(0.5), 1)} / {figure(reader.page_quantile(0.9), 1)} "
                f"| {figure(r.first_page_ms, 1)} "
                f"| {figure(r.last_page_ms, 1)} | {figure(quotient(r.last_page_ms, r.first_page_ms), 2)} |"
            )
        name = run.ingest.system
        if len(run.readers) == 2:
            ratio = quotient(run.readers[1].us_per_object, base)
            goals.append(Target(f"{name}: cost per object out, {READER} reader / unrestricted", ratio, 1.0, False))
        for reader in run.readers:
            pages = quotient(reader.result.last_page_ms, reader.result.first_page_ms)
            goals.append(Target(f"{name}: {reader.name} last page / first page", pages, 2, False))
        goals.append(Target(f"{name}: ingest / floor", quotient(run.ingest.ingest_rate, floor_in), 0.5, True))
        durable = quotient(run.ingest.ingest_rate, DURABLE_FLOOR[0])
        goals.append(Target(f"{name}: ingest / floor with synchronous=FULL (as durable)", durable, None, True))
        if run.readers:
            read = quotient(run.readers[0].result.read_rate, floor_out)
            goals.append(Target(f"{name}: unrestricted read / read floor", read, 0.5, True))
        ingest_trend = quotient(run.window_rate("last"), run.window_rate("first"))
        goals.append(Target(f"{name}: ingest rate, last 10% / first 10%", ingest_trend, None, True))
    rates = {run.backend: run.ingest.ingest_rate for run in runs}
    if "sqlite" in rates and "postgres" in rates:
        goals.append(
            Target("ingest, relto postgres / relto sqlite", quotient(rates["postgres"], rates["sqlite"]), 0.7, True)
        )
    out.append("")
    out += [goal.line() for goal in goals]
    for item in [floor, *(run.ingest for run in runs), *(r.result for run in runs for r in run.readers)]:
        for note in item.notes if item else []:
            out.append(f"note ({item.system if item else ''}): {note}")
    for run in runs:
        out += [f"note (relto {run.backend} x1): {note}" for note in run.notes]
        if run.plans:
            out += ["", f"read query plans, relto {run.backend} x1:", *run.plans]
    return out, goals


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--objects", type=int, default=1_000_000, help="indicators to generate (default: 1,000,000)")
    add("--backend", choices=("sqlite", "postgres", "both"), default="both", help="(default: both)")
    add(
        "--postgres",
        default=os.environ.get("RELTO_BENCH_POSTGRES_URL"),
        help="PostgreSQL URL of a role that may CREATE DATABASE (default: $RELTO_BENCH_POSTGRES_URL; "
        "without one the PostgreSQL run is skipped)",
    )
    add("--seed", type=int, default=20261127, help="corpus seed (default: %(default)s)")
    add("--skip-floor", action="store_true", help="do not measure the floor")
    add("--skip-explain", action="store_true", help="do not print the read query's plans")
    add("--relto", default=str(Path(sys.executable).parent / "relto"), help="relto's CLI (default: %(default)s)")
    add("--repeat", type=int, default=5, help="samples per first/last page timing, median (default: 5)")
    add("--timeout", type=float, default=600.0, help="seconds allowed per HTTP request (default: 600)")
    add(
        "--wait-autovacuum",
        type=float,
        default=300.0,
        help="PostgreSQL: before each read, wait up to S seconds for autovacuum on the database to finish "
        "(0: do not wait; default: 300)",
    )
    add("--read-budget", type=float, default=600.0, help="stop a reader's sweep after S seconds (default: 600)")
    add("--workdir", type=Path, help="where databases and logs go (default: a temp dir)")
    add("--keep", action="store_true", help="keep the work directory (default: delete it)")
    add("--json", type=Path, help="also write the results as JSON to this file")
    return parser.parse_args(argv)


def to_json(corpus: Corpus, floor: Measurement | None, runs: list[BackendRun], goals: list[Target]) -> bytes:
    document = {
        "objects": corpus.objects,
        "indicators": corpus.indicators,
        "reader_sees": corpus.reader_sees,
        "mean_bytes": corpus.mean_bytes,
        "floor": floor.as_dict() if floor else None,
        "runs": [
            {
                "backend": run.backend,
                "ingest": run.ingest.as_dict(),
                "ingest_first_tenth_obj_s": run.window_rate("first"),
                "ingest_last_tenth_obj_s": run.window_rate("last"),
                "readers": [
                    reader.result.as_dict()
                    | {"reader": reader.name, "us_per_object": reader.us_per_object, "page_ms": reader.page_ms}
                    for reader in run.readers
                ],
                "rss_after_ingest": run.rss_after_ingest,
                "rss_after_reads": run.rss_after_reads,
                "database_bytes": run.database_bytes,
                "plans": run.plans,
                "notes": run.notes,
            }
            for run in runs
        ],
        "targets": [goal._asdict() for goal in goals],
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()  # so the finally blocks stop the server
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if "postgres" in backends and not args.postgres:
        print("note: no PostgreSQL URL (--postgres or $RELTO_BENCH_POSTGRES_URL): PostgreSQL run skipped\n")
        backends.remove("postgres")
    started = time.perf_counter()
    log(f"generating {args.objects:,} indicators ...")
    corpus = generate(args.objects, args.seed)
    spent = time.perf_counter() - started
    log(f"generated {corpus.objects:,} objects in {len(corpus.envelopes)} envelopes, {spent:.0f} s")
    workdir = Path(tempfile.mkdtemp(prefix="relto-scale-", dir=args.workdir))
    log(f"work directory {workdir}")
    floor: Measurement | None = None
    runs: list[BackendRun] = []
    failed = False
    try:
        if not args.skip_floor:
            log("floor ...")
            floor = floor_once(corpus.envelopes, workdir / "floor.sqlite", args.repeat)
            (workdir / "floor.sqlite").unlink()
            log(f"floor: ingest {floor.ingest_rate or 0:,.0f} obj/s, read {floor.read_rate or 0:,.0f} obj/s")
            durable = floor_once(corpus.envelopes, workdir / "floor-full.sqlite", 1, "FULL")
            (workdir / "floor-full.sqlite").unlink()
            floor.notes.append(
                f"with synchronous=FULL (an fsync per commit, as durable as relto) the floor ingests "
                f"{durable.ingest_rate or 0:,.0f} obj/s"
            )
            DURABLE_FLOOR[0] = durable.ingest_rate
        for backend in backends:
            log(f"relto {backend} ...")
            try:
                runs.append(measure_backend(backend, corpus, args, workdir))
            except Exception as error:  # report the other back-end even if one fails
                log(f"relto {backend} failed: {error}")
                failed = True
                runs.append(BackendRun(backend, Measurement(f"relto {backend} x1"), notes=[f"failed: {error}"]))
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    lines, goals = report_lines(corpus, floor, runs)
    print("\n".join(lines))
    if args.json:
        args.json.write_bytes(to_json(corpus, floor, runs, goals))
    log(f"done in {time.perf_counter() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
