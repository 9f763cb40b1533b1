"""Node benchmark: TAXII ingest and read-back of MITRE ATT&CK Enterprise, relto against a floor and medallion.

Run from the repository root:
    .venv/bin/python bench/node.py [--skip-medallion] [--skip-relto] [--json out.json]

1. floor: no server; orjson + SQLite (WAL, synchronous=NORMAL), one transaction per 1,000-object envelope;
   read by rowid cursor, each page joined into an envelope and parsed.
2. medallion 3.0.0 (OASIS reference server, memory back-end) in its own cached venv.
3. relto, started through its CLI.
Targets: relto ingest >= 0.5x the floor and >= 10x medallion; relto read >= 0.5x the read floor;
relto's last page no slower than 2x its first. Progress goes to stderr; the table and targets to stdout.
"""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import orjson
from _common import (
    MEDIA_TYPE,
    PAGE_SIZE,
    Envelope,
    Measurement,
    Page,
    StixObject,
    Target,
    TaxiiClient,
    basic_auth,
    bearer_auth,
    envelopes,
    free_port,
    load_objects,
    log,
    median_ms,
    quotient,
    run_cli,
    server,
    table,
)

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "data" / "enterprise-attack-18.1-stix21.json.gz"
MEDALLION_VENV = Path.home() / ".cache" / "relto-bench" / "medallion-3.0.0"
# The set that installs and serves on Python 3.11; medallion 3.0.0 itself pins nothing.
MEDALLION_REQUIREMENTS = ["medallion==3.0.0", "Flask==3.1.3", "Werkzeug==3.1.9", "Flask-HTTPAuth==4.8.1"]
MAX_FAILURES_SHOWN = 5
FLOOR_TABLE = "CREATE TABLE objects (id TEXT NOT NULL, type TEXT NOT NULL, modified TEXT, body BLOB NOT NULL)"

Params = dict[str, str | int]


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


def floor_once(batch: list[Envelope], path: Path, repeat: int) -> Measurement:
    """One floor run on a fresh SQLite file."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(FLOOR_TABLE)
        result = Measurement("floor (orjson + sqlite)")
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


def measure_floor(batch: list[Envelope], workdir: Path, runs: int, repeat: int) -> Measurement:
    """The floor, median of `runs` runs (it is cheap, and the machine is noisy)."""
    results = [floor_once(batch, workdir / f"floor-{run}.sqlite", repeat) for run in range(runs)]
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


# --- TAXII runs (medallion and relto) -----------------------------------------------------------


class Collection(NamedTuple):
    """Where a server keeps the benchmark's collection."""

    api_root: str
    id: str

    @property
    def objects(self) -> str:
        return f"{self.api_root}collections/{self.id}/objects/"

    def status(self, status_id: str) -> str:
        return f"{self.api_root}status/{status_id}/"


def settle(client: TaxiiClient, collection: Collection, status: dict[str, Any]) -> dict[str, Any]:
    """Poll a status resource until it is no longer pending."""
    while status.get("status") != "complete":
        time.sleep(0.05)
        status = client.status(collection.status(status["id"]))
    return status


def ingest(
    client: TaxiiClient, collection: Collection, batch: list[Envelope], result: Measurement, budget: float
) -> bool:
    """POST the envelopes one after another, adding to `result`; False if stopped by the time budget."""
    failures: list[str] = []
    start, spent = time.perf_counter(), result.ingest_s
    for number, envelope in enumerate(batch, 1):
        status = settle(client, collection, client.post(collection.objects, envelope))
        result.ingested += int(status.get("success_count", 0))
        if status.get("success_count") != envelope.size:
            failures += [json.dumps(failure)[:300] for failure in status.get("failures", [])]
        result.ingest_s = spent + time.perf_counter() - start
        if number % 5 == 0 or number == len(batch):
            log(f"{result.system}: {result.ingested:,} objects stored, {result.ingest_s:.1f} s")
        if result.ingest_s > budget and number < len(batch):
            result.notes.append(f"ingest stopped by the {budget:g} s budget, {result.ingested:,} objects stored")
            return False
    if failures:
        examples = " | ".join(failures[:MAX_FAILURES_SHOWN])
        result.notes.append(f"{len(failures)} objects failed, e.g. {examples}")
    return True


class Fetch(NamedTuple):
    """One page request of a read-back sweep, its page and its wall time."""

    params: Params
    page: Page
    ms: float


def read_back(client: TaxiiClient, path: str, result: Measurement) -> list[Fetch]:
    """Page through the collection with limit=1000 following `next`; return every request made."""
    sweep: list[Fetch] = []
    params: Params = {"limit": PAGE_SIZE}
    start = time.perf_counter()
    while True:
        begun = time.perf_counter()
        page = client.page(path, params)
        sweep.append(Fetch(params, page, (time.perf_counter() - begun) * 1000))
        result.read += page.size
        if not page.more or page.next is None:
            break
        params = {"limit": PAGE_SIZE, "next": page.next}
    result.read_s = time.perf_counter() - start
    log(f"{result.system}: read {result.read:,} objects in {len(sweep)} pages, {result.read_s:.2f} s")
    if result.read != result.ingested:
        result.notes.append(f"read back {result.read:,} objects, ingested {result.ingested:,}")
    return sweep


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


def relto_setup(binary: str, data: Path) -> tuple[str, str]:
    """Initialise a node, issue a TOP SECRET GBR token, add a collection; return (token, collection id)."""
    run_cli([binary, "init", "--data", str(data), "--nation", "GBR"])
    issue = [binary, "token", "issue", "--data", str(data), "--nation", "GBR", "--clearance", "TOP SECRET"]
    token = run_cli(issue)
    collection = run_cli([binary, "collection", "add", "--data", str(data), "relto bench"])
    return token.splitlines()[-1].strip(), collection.splitlines()[-1].strip()


def replayable_last(client: TaxiiClient, path: str, sweep: list[Fetch], result: Measurement) -> Params:
    """The request for the last page: its `next` token if it replays, else added_after the page before."""
    params, page = sweep[-1].params, sweep[-1].page
    try:
        if client.page(path, params).size == page.size:
            return params
    except RuntimeError as error:
        log(f"relto: replaying the last `next` failed ({error}); using added_after")
    before = sweep[-2].page.date_added_last if len(sweep) > 1 else None
    if before is None:
        raise RuntimeError("the last page can be replayed neither by `next` nor by added_after")
    result.notes.append("last page replayed with added_after=X-TAXII-Date-Added-Last of the page before")
    return {"limit": PAGE_SIZE, "added_after": before}


def measure_relto(objects: list[StixObject], args: argparse.Namespace, workdir: Path) -> Measurement:
    """relto through its CLI: POST every envelope, read back, then time the first and last page."""
    token, collection = relto_setup(args.relto, workdir / "relto-data")
    port = free_port()
    result = Measurement("relto")
    log_path = workdir / "relto.log"
    data = str(workdir / "relto-data")
    command = [args.relto, "serve", "--data", data, "--host", "127.0.0.1", "--port", str(port)]
    with server(command, log_path) as process:
        client = TaxiiClient(f"http://127.0.0.1:{port}", bearer_auth(token), args.timeout)
        try:
            client.wait_ready(process, log_path)
            target = Collection("/api/", collection)
            ingest(client, target, envelopes(objects), result, budget=float("inf"))
            path = target.objects
            sweep = read_back(client, path, result)
            last = replayable_last(client, path, sweep, result)
            first: Params = {"limit": PAGE_SIZE}
            result.first_page_ms = median_ms(lambda: client.page(path, first), args.repeat)
            result.last_page_ms = median_ms(lambda: client.page(path, last), args.repeat)
        finally:
            client.close()
    return result


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--corpus", type=Path, default=CORPUS, help="gzipped STIX bundle (default: %(default)s)")
    add("--skip-medallion", action="store_true", help="do not run medallion")
    add("--skip-relto", action="store_true", help="do not run relto")
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
    """The ratios relto is held to."""
    relto, floor, medallion = (results.get(key) for key in ("relto", "floor", "medallion"))
    first, last = (relto.first_page_ms, relto.last_page_ms) if relto else (None, None)
    floor_pages = quotient(floor.last_page_ms, floor.first_page_ms) if floor else None
    return [
        Target("relto ingest / floor", quotient(_rate(relto, "ingest"), _rate(floor, "ingest")), 0.5, True),
        Target("relto ingest / medallion", quotient(_rate(relto, "ingest"), _rate(medallion, "ingest")), 10, True),
        Target("relto read / read floor", quotient(_rate(relto, "read"), _rate(floor, "read")), 0.5, True),
        Target("relto last page / first page", quotient(last, first), 2, False),
        # the pages differ in content (see the floor's note), so the same ratio relative to the floor's
        Target(
            "relto last/first page, relative to the floor's",
            quotient(quotient(last, first), floor_pages),
            None,
            False,
        ),
    ]


def report(results: dict[str, Measurement], args: argparse.Namespace, count: int) -> None:
    """Print the table, the targets and the notes; write the JSON file if asked."""
    goals = targets(results)
    print(f"corpus: {args.corpus.name}, {count:,} objects, envelopes of {PAGE_SIZE:,}\n")
    print(table(list(results.values()), results.get("floor")))
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


def _exit_on_sigterm(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so the finally blocks stop the servers
    objects = load_objects(args.corpus)
    batch = envelopes(objects)
    log(f"corpus {args.corpus.name}: {len(objects):,} objects, {len(batch)} envelopes")
    runs = {"medallion": measure_medallion, "relto": measure_relto}
    skipped = {"medallion": args.skip_medallion, "relto": args.skip_relto}
    results: dict[str, Measurement] = {}
    failed = False
    with tempfile.TemporaryDirectory(prefix="relto-bench-") as scratch:
        # a fresh run directory, so every database starts empty
        workdir = (args.workdir or Path(scratch)) / time.strftime("run-%Y%m%d-%H%M%S")
        workdir.mkdir(parents=True)
        log(f"work directory {workdir}")
        log("floor ...")
        results["floor"] = measure_floor(batch, workdir, args.floor_runs, args.repeat)
        for name, measure in runs.items():
            if skipped[name]:
                continue
            log(f"{name} ...")
            try:
                results[name] = measure(objects, args, workdir)
            except Exception as error:  # report the others even if one server fails
                log(f"{name} failed: {error}")
                results[name] = Measurement(name, notes=[f"failed: {error}"])
                failed = True
    report(results, args, len(objects))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
