"""Node benchmark: TAXII ingest and read-back of MITRE ATT&CK Enterprise, relto against a floor and medallion.

Run from the repository root:
    .venv/bin/python bench/node.py [--skip-medallion] [--skip-relto] [--postgres URL | --skip-postgres]
                                   [--json out.json]

1. floor: no server; orjson + SQLite (WAL, synchronous=NORMAL), one transaction per 1,000-object envelope
   (and, for information, the same with synchronous=FULL: an fsync per commit, as durable as relto);
   read by rowid cursor, each page joined into an envelope and parsed.
2. medallion 3.0.0 (OASIS reference server, memory back-end) in its own cached venv.
3. relto, started through its CLI, each run on a fresh database:
   relto sqlite x1 (one process); with a PostgreSQL URL (--postgres, or $RELTO_BENCH_POSTGRES_URL) also
   relto postgres x1, relto postgres x4 (four server processes, one sequential client) and
   relto postgres x4 (4 clients: four threads publish their share of the envelopes at once, then each reads
   the whole collection at once). The URL names a role that may CREATE DATABASE; each PostgreSQL run gets
   its own database relto_bench_<random>, dropped afterwards.
Targets: relto ingest >= 0.5x the floor and >= 10x medallion; relto read >= 0.5x the read floor;
relto's last page no slower than 2x its first. Progress goes to stderr; the table and targets to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import NamedTuple

import orjson
from _common import (
    MEDIA_TYPE,
    PAGE_SIZE,
    Collection,
    Envelope,
    Measurement,
    StixObject,
    Target,
    TaxiiClient,
    basic_auth,
    bearer_auth,
    envelopes,
    exit_on_sigterm,
    free_port,
    ingest,
    ingest_concurrently,
    load_objects,
    log,
    median_ms,
    node_database,
    quotient,
    read_back,
    read_concurrently,
    relto_setup,
    run_cli,
    serve_command,
    server,
    table,
    time_pages,
)

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "data" / "enterprise-attack-18.1-stix21.json.gz"
MEDALLION_VENV = Path.home() / ".cache" / "relto-bench" / "medallion-3.0.0"
# The set that installs and serves on Python 3.11; medallion 3.0.0 itself pins nothing.
MEDALLION_REQUIREMENTS = ["medallion==3.0.0", "Flask==3.1.3", "Werkzeug==3.1.9", "Flask-HTTPAuth==4.8.1"]
FLOOR_TABLE = "CREATE TABLE objects (id TEXT NOT NULL, type TEXT NOT NULL, modified TEXT, body BLOB NOT NULL)"


# --- floor --------------------------------------------------------------------------------------


def floor_ingest(db: sqlite3.Connection, batch: list[Envelope]) -> int:
    """Parse each envelope, serialise each object, insert the rows in one transaction per envelope."""
    stored = 0
    for envelope in batch:
        objects: list[StixObject] = orjson.loads(envelope.body)["objects"]
        rows = [(obj["id"], obj["type"], obj.get("modified"), orjson.dumps(obj)) for obj in objects]
        db.execute("BEGIN")
        db.executemany("INSERT INTO objects (id, type, modified, body) VALUES (?, ?, ?, ?)", rows)
        db.execute("COMMIT")
        stored += len(rows)
    return stored


def floor_page(db: sqlite3.Connection, after: int) -> tuple[int, int]:
    """One page after rowid `after`, built into an envelope and parsed; return (last rowid, count)."""
    rows = db.execute(
        "SELECT rowid, body FROM objects WHERE rowid > ? ORDER BY rowid LIMIT ?", (after, PAGE_SIZE)
    ).fetchall()
    if not rows:
        return after, 0
    body = b'{"objects":[' + b",".join(row[1] for row in rows) + b"]}"
    return rows[-1][0], len(orjson.loads(body)["objects"])


def floor_once(batch: list[Envelope], path: Path, repeat: int, synchronous: str = "NORMAL") -> Measurement:
    """One floor run on a fresh SQLite file. synchronous=NORMAL (the floor): no fsync per commit in WAL mode;
    FULL: an fsync per commit, as durable as relto's ("success" survives a power cut), for information."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute(FLOOR_TABLE)
        name = "floor (orjson + sqlite)" if synchronous == "NORMAL" else f"floor, synchronous={synchronous}"
        result = Measurement(name)
        start = time.perf_counter()
        result.ingested = floor_ingest(db, batch)
        result.ingest_s = time.perf_counter() - start
        cursors = [0]
        start = time.perf_counter()
        while True:
            cursor, count = floor_page(db, cursors[-1])
            result.read += count
            if count < PAGE_SIZE:
                break
            cursors.append(cursor)
        result.read_s = time.perf_counter() - start
        result.first_page_ms = median_ms(lambda: floor_page(db, 0), repeat)
        result.last_page_ms = median_ms(lambda: floor_page(db, cursors[-1]), repeat)
        return result
    finally:
        db.close()


def measure_floor(
    batch: list[Envelope], workdir: Path, runs: int, repeat: int, synchronous: str = "NORMAL"
) -> Measurement:
    """The floor, median of `runs` runs (it is cheap, and the machine is noisy)."""
    results = [
        floor_once(batch, workdir / f"floor-{synchronous}-{run}.sqlite", repeat, synchronous) for run in range(runs)
    ]
    log(f"floor: {runs} runs, ingest s {[round(r.ingest_s, 3) for r in results]}")
    merged = results[0]
    merged.ingest_s = statistics.median(r.ingest_s for r in results)
    merged.read_s = statistics.median(r.read_s for r in results)
    merged.first_page_ms = statistics.median(r.first_page_ms or 0.0 for r in results)
    merged.last_page_ms = statistics.median(r.last_page_ms or 0.0 for r in results)
    first, last = batch[0], batch[-1]
    merged.notes.append(
        f"the pages are not alike: the first holds {first.size:,} objects in {len(first.body) / 1e6:.1f} MB, "
        f"the last {last.size:,} in {len(last.body) / 1e6:.1f} MB"
    )
    return merged


# --- medallion ----------------------------------------------------------------------------------


def medallion_binary(venv: Path) -> Path:
    """medallion's CLI in its own venv, created on first use and reused after."""
    binary, python = venv / "bin" / "medallion", venv / "bin" / "python"
    if binary.exists() and python.exists():
        try:
            run_cli([str(python), "-c", "import medallion.scripts.run"])
            return binary
        except RuntimeError:
            log(f"medallion venv {venv} is broken; rebuilding it")
    log(f"creating medallion venv {venv} (pip install {' '.join(MEDALLION_REQUIREMENTS)})")
    run_cli([sys.executable, "-m", "venv", "--clear", str(venv)])
    run_cli([str(python), "-m", "pip", "install", "--quiet", *MEDALLION_REQUIREMENTS])
    return binary


def medallion_config(workdir: Path, port: int, user: str, password: str) -> tuple[Path, str]:
    """Write medallion's data file and config; return the config path and the collection id."""
    collection = str(uuid.uuid4())
    data = {
        "/discovery": {
            "title": "relto bench",
            "default": f"http://127.0.0.1:{port}/api1/",
            "api_roots": [f"http://127.0.0.1:{port}/api1/"],
        },
        "api1": {
            "information": {"title": "bench", "versions": [MEDIA_TYPE], "max_content_length": 2**29},
            "status": [],
            "collections": [
                {
                    "id": collection,
                    "title": "bench",
                    "can_read": True,
                    "can_write": True,
                    "media_types": ["application/stix+json;version=2.1"],
                    "objects": [],
                    "manifest": [],
                }
            ],
        },
    }
    data_path, config_path = workdir / "medallion-data.json", workdir / "medallion-config.json"
    data_path.write_text(json.dumps(data))
    backend = {
        "module": "medallion.backends.memory_backend",
        "module_class": "MemoryBackend",
        "filename": str(data_path),
        "session_timeout": 24 * 3600,  # its default, 30 s, can expire a `next` mid-read on a big collection
    }
    config = {"backend": backend, "users": {user: password}, "taxii": {"max_page_size": PAGE_SIZE}}
    config_path.write_text(json.dumps(config))
    return config_path, collection


def measure_medallion(objects: list[StixObject], args: argparse.Namespace, workdir: Path) -> Measurement:
    """medallion 3.0.0, memory back-end: POST the envelopes, with one read-back part way."""
    binary = medallion_binary(args.medallion_venv)
    batch = envelopes(objects[: args.medallion_objects] if args.medallion_objects else objects)
    # Its GET is quadratic in the collection size (about 40 min for the whole corpus on 2 cores), so the
    # read-back runs once the collection holds --medallion-read-objects; then the ingest goes on.
    before_read = -(-args.medallion_read_objects // PAGE_SIZE)
    user, password, port = "bench", secrets.token_urlsafe(16), free_port()
    config, collection = medallion_config(workdir, port, user, password)
    result = Measurement("medallion 3.0.0 (memory)")
    log_path = workdir / "medallion.log"
    command = [str(binary), "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARN", str(config)]
    with server(command, log_path) as process:
        client = TaxiiClient(f"http://127.0.0.1:{port}", basic_auth(user, password), args.medallion_timeout)
        try:
            client.wait_ready(process, log_path)
            target = Collection("/api1/", collection)
            if ingest(client, target, batch[:before_read], result, args.medallion_budget) and sweep_once(
                client, target.objects, result, args.medallion_timeout
            ):
                ingest(client, target, batch[before_read:], result, args.medallion_budget)
        finally:
            client.close()
    return result


def sweep_once(client: TaxiiClient, path: str, result: Measurement, timeout: float) -> bool:
    """Read back once, False on a timeout; page times come from here (medallion's `next` is single-use)."""
    try:
        sweep = read_back(client, path, result)
    except TimeoutError:
        result.notes.append(f"read-back: a page took over {timeout:g} s; {result.read:,} objects read by then")
        # the server is still busy with that page, so an ingest timed now would be skewed
        result.notes.append("ingest not continued after the timeout")
        result.read, result.read_s = 0, 0.0
        return False
    result.first_page_ms, result.last_page_ms = sweep[0].ms, sweep[-1].ms
    result.notes.append(f"read back when the collection held {result.ingested:,} objects")
    result.notes.append("first/last page: one sample each, from that read-back")
    return True


# --- relto --------------------------------------------------------------------------------------


class ReltoRun(NamedTuple):
    """One relto measurement: a back-end, how many server processes, how many publishing/reading clients."""

    key: str
    system: str
    backend: str  # "sqlite" or "postgres"
    workers: int
    clients: int


RELTO_RUNS = (
    ReltoRun("relto", "relto sqlite x1", "sqlite", 1, 1),
    ReltoRun("postgres x1", "relto postgres x1", "postgres", 1, 1),
    ReltoRun("postgres x4", "relto postgres x4 (1 client)", "postgres", 4, 1),
    ReltoRun("postgres x4 4 clients", "relto postgres x4 (4 clients)", "postgres", 4, 4),
)


def measure_relto(run: ReltoRun, objects: list[StixObject], args: argparse.Namespace, workdir: Path) -> Measurement:
    """relto through its CLI on a fresh database: POST every envelope, read back, time the first and last page.

    With several clients, the envelopes are shared out between threads and each thread then reads the whole
    collection; page times are taken only with one client.
    """
    result = Measurement(run.system)
    log_path = workdir / f"relto-{run.key.replace(' ', '-')}.log"
    data = workdir / f"relto-{run.key.replace(' ', '-')}"
    with node_database(args.postgres if run.backend == "postgres" else None, data) as db:
        where = db.args
        token, collection = relto_setup(args.relto, where)
        port = free_port()
        base = f"http://127.0.0.1:{port}"

        def connect() -> TaxiiClient:
            return TaxiiClient(base, bearer_auth(token), args.timeout)

        with server(serve_command(args.relto, where, port, run.workers), log_path) as process:
            client = connect()
            try:
                client.wait_ready(process, log_path)
                target = Collection("/api/", collection)
                path = target.objects
                batch = envelopes(objects)
                if run.clients == 1:
                    ingest(client, target, batch, result, budget=float("inf"))
                    sweep = read_back(client, path, result)
                    time_pages(client, path, sweep, result, args.repeat)
                else:
                    ingest_concurrently(connect, target, batch, result, run.clients)
                    read_concurrently(connect, path, result, run.clients)
            finally:
                client.close()
    return result


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--corpus", type=Path, default=CORPUS, help="gzipped STIX bundle (default: %(default)s)")
    add("--skip-medallion", action="store_true", help="do not run medallion")
    add("--skip-relto", action="store_true", help="do not run relto (on any back-end)")
    add(
        "--postgres",
        default=os.environ.get("RELTO_BENCH_POSTGRES_URL"),
        help="PostgreSQL URL of a role that may CREATE DATABASE (default: $RELTO_BENCH_POSTGRES_URL; "
        "without one the PostgreSQL rows are skipped)",
    )
    add("--skip-postgres", action="store_true", help="do not run the PostgreSQL rows")
    add("--json", type=Path, help="also write the results as JSON to this file")
    add(
        "--relto",
        default=str(Path(sys.executable).parent / "relto"),
        help="relto's CLI (default: %(default)s)",
    )
    add("--repeat", type=int, default=5, help="samples per first/last page timing, median (default: 5)")
    add("--floor-runs", type=int, default=3, help="floor runs, median (default: 3)")
    add("--timeout", type=float, default=300.0, help="relto: seconds allowed per HTTP request (default: 300)")
    add("--medallion-venv", type=Path, default=MEDALLION_VENV, help="(default: %(default)s)")
    add("--medallion-objects", type=int, help="medallion: only the first N objects (default: all)")
    add("--medallion-read-objects", type=int, default=3000, help="medallion: read back at N objects (3000)")
    add("--medallion-budget", type=float, default=300.0, help="medallion: stop POSTing after S seconds (300)")
    add("--medallion-timeout", type=float, default=300.0, help="medallion: seconds allowed per request (300)")
    add(
        "--workdir",
        type=Path,
        help="keep databases and server logs under this directory (default: a temp dir)",
    )
    return parser.parse_args(argv)


def _rate(result: Measurement | None, kind: str) -> float | None:
    if result is None:
        return None
    return result.ingest_rate if kind == "ingest" else result.read_rate


def targets(results: dict[str, Measurement]) -> list[Target]:
    """The ratios relto is held to, for every relto row; the PostgreSQL rows' ratios to SQLite for information."""
    floor, medallion, sqlite = (results.get(key) for key in ("floor", "medallion", "relto"))
    floor_pages = quotient(floor.last_page_ms, floor.first_page_ms) if floor else None
    goals: list[Target] = []
    for run in RELTO_RUNS:
        relto = results.get(run.key)
        if relto is None:
            continue
        name = run.system
        first, last = relto.first_page_ms, relto.last_page_ms
        durable = quotient(_rate(relto, "ingest"), _rate(results.get("floor full"), "ingest"))
        goals += [
            Target(f"{name} ingest / floor", quotient(_rate(relto, "ingest"), _rate(floor, "ingest")), 0.5, True),
            Target(f"{name} ingest / floor with synchronous=FULL (as durable)", durable, None, True),
            Target(f"{name} read / read floor", quotient(_rate(relto, "read"), _rate(floor, "read")), 0.5, True),
        ]
        if run.key == "relto":
            ratio = quotient(_rate(relto, "ingest"), _rate(medallion, "ingest"))
            goals.append(Target(f"{name} ingest / medallion", ratio, 10, True))
        if run.clients == 1:
            goals.append(Target(f"{name} last page / first page", quotient(last, first), 2, False))
            # the pages differ in content (see the floor's note), so the same ratio relative to the floor's
            relative = quotient(quotient(last, first), floor_pages)
            goals.append(Target(f"{name} last/first page, relative to the floor's", relative, None, False))
        if run.backend != "sqlite":
            for kind in ("ingest", "read"):
                ratio = quotient(_rate(relto, kind), _rate(sqlite, kind))
                goals.append(Target(f"{name} {kind} / relto sqlite x1", ratio, None, True))
    one, four = results.get("postgres x4"), results.get("postgres x4 4 clients")
    for kind in ("ingest", "read"):
        ratio = quotient(_rate(four, kind), _rate(one, kind))
        goals.append(Target(f"relto postgres x4 {kind}: 4 clients / 1 client", ratio, None, True))
    return [goal for goal in goals if goal.value is not None or goal.bound is not None]


def report(results: dict[str, Measurement], args: argparse.Namespace, count: int) -> None:
    """Print the table, the targets and the notes; write the JSON file if asked."""
    goals = targets(results)
    print(f"corpus: {args.corpus.name}, {count:,} objects, envelopes of {PAGE_SIZE:,}\n")
    print(table(list(results.values()), results.get("floor"), results.get("relto")))
    print()
    for goal in goals:
        print(goal.line())
    for result in results.values():
        for note in result.notes:
            print(f"note ({result.system}): {note}")
    if args.json:
        document = {
            "corpus": str(args.corpus),
            "objects": count,
            "results": [result.as_dict() for result in results.values()],
            "targets": [goal._asdict() for goal in goals],
        }
        args.json.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()  # so the finally blocks stop the servers
    objects = load_objects(args.corpus)
    batch = envelopes(objects)
    log(f"corpus {args.corpus.name}: {len(objects):,} objects, {len(batch)} envelopes")
    runs = [run for run in RELTO_RUNS if not args.skip_relto]
    if args.skip_postgres or not args.postgres:
        if not args.skip_postgres and not args.skip_relto:
            print("note: no PostgreSQL URL (--postgres or $RELTO_BENCH_POSTGRES_URL): PostgreSQL rows skipped\n")
        runs = [run for run in runs if run.backend != "postgres"]
    results: dict[str, Measurement] = {}
    failed = False
    with tempfile.TemporaryDirectory(prefix="relto-bench-") as scratch:
        # a fresh run directory, so every database starts empty
        workdir = (args.workdir or Path(scratch)) / time.strftime("run-%Y%m%d-%H%M%S")
        workdir.mkdir(parents=True)
        log(f"work directory {workdir}")
        log("floor ...")
        results["floor"] = measure_floor(batch, workdir, args.floor_runs, args.repeat)
        results["floor full"] = measure_floor(batch, workdir, args.floor_runs, args.repeat, "FULL")
        if not args.skip_medallion:
            log("medallion ...")
            try:
                results["medallion"] = measure_medallion(objects, args, workdir)
            except Exception as error:  # report the others even if one server fails
                log(f"medallion failed: {error}")
                results["medallion"] = Measurement("medallion 3.0.0 (memory)", notes=[f"failed: {error}"])
                failed = True
        for run in runs:
            log(f"{run.system} ...")
            try:
                results[run.key] = measure_relto(run, objects, args, workdir)
            except Exception as error:
                log(f"{run.system} failed: {error}")
                results[run.key] = Measurement(run.system, notes=[f"failed: {error}"])
                failed = True
    report(results, args, len(objects))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
