"""Shared pieces of the node benchmark: corpus, measurements, subprocesses, a TAXII client, the report."""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import orjson

MEDIA_TYPE = "application/taxii+json;version=2.1"
MIB = 1024 * 1024
PAGE_SIZE = 1000
MAX_FAILURES_SHOWN = 5

StixObject = dict[str, Any]
Params = dict[str, str | int]


def _exit_on_sigterm(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so that finally blocks stop the servers a benchmark started."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)


def log(message: str) -> None:
    """Print a progress line to stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- corpus -------------------------------------------------------------------------------------


class Envelope(NamedTuple):
    """A TAXII envelope pre-serialised as a client would send it."""

    body: bytes
    size: int


def load_objects(path: Path) -> list[StixObject]:
    """Read a gzipped STIX bundle; marking definitions first, so no object precedes its marking."""
    with gzip.open(path, "rb") as stream:
        objects: list[StixObject] = orjson.loads(stream.read())["objects"]
    return sorted(objects, key=lambda obj: obj["type"] != "marking-definition")


def envelopes(objects: list[StixObject], size: int = PAGE_SIZE) -> list[Envelope]:
    """Cut the objects into serialised envelopes of `size` objects."""
    chunks = (objects[start : start + size] for start in range(0, len(objects), size))
    return [Envelope(orjson.dumps({"objects": chunk}), len(chunk)) for chunk in chunks]


# --- measurements -------------------------------------------------------------------------------


@dataclass
class Measurement:
    """What one system did: objects and seconds for ingest and read-back, page latencies."""

    system: str
    ingested: int = 0
    ingest_s: float = 0.0
    read: int = 0
    read_s: float = 0.0
    first_page_ms: float | None = None
    last_page_ms: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ingest_rate(self) -> float | None:
        return self.ingested / self.ingest_s if self.ingest_s > 0 and self.ingested else None

    @property
    def read_rate(self) -> float | None:
        return self.read / self.read_s if self.read_s > 0 and self.read else None

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the JSON report, rates included."""
        return asdict(self) | {"ingest_obj_s": self.ingest_rate, "read_obj_s": self.read_rate}


def median_ms(action: Callable[[], object], repeat: int) -> float:
    """Median wall time of `action` over `repeat` calls, in milliseconds."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


# --- subprocesses -------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_cli(command: list[str]) -> str:
    """Run a command to completion and return its stripped stdout; raise with its stderr on failure."""
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done.stdout.strip()


def log_tail(path: Path, chars: int = 3000) -> str:
    """The end of a server log, for error messages."""
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


@contextmanager
def server(command: list[str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server in its own process group for the duration of the block; always stop it."""
    with log_path.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield process
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate a server's process group, killing it if it does not go within 5 s."""
    if process.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


# --- TAXII client -------------------------------------------------------------------------------


class Page(NamedTuple):
    """One GET of an objects endpoint, already parsed."""

    size: int
    more: bool
    next: str | None
    date_added_last: str | None


class TaxiiClient:
    """The few TAXII 2.1 calls the benchmark makes, the same for every server.

    It uses the standard library's http.client on one kept-alive connection: the benchmark measures servers,
    and httpx's pure-Python body handling would add ~5 ms per 3 MB page to every system alike.
    """

    def __init__(self, base_url: str, authorization: str, timeout: float) -> None:
        parts = urllib.parse.urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout
        self.headers = {"Accept": MEDIA_TYPE, "Authorization": authorization}
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def close(self) -> None:
        self.conn.close()

    def request(
        self, method: str, path: str, body: bytes | None = None, params: dict[str, str | int] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """One request on the kept-alive connection (reconnecting once if the server closed it)."""
        url = path + ("?" + urllib.parse.urlencode(params) if params else "")
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = MEDIA_TYPE
        for attempt in (1, 2):
            try:
                self.conn.request(method, url, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                return response.status, {k.lower(): v for k, v in response.getheaders()}, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def wait_ready(self, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 60.0) -> None:
        """Poll the discovery endpoint until it answers 200, the server dies, or `timeout` passes."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited {process.returncode}:\n{log_tail(log_path)}")
            try:
                status, _, data = self.request("GET", "/taxii2/")
                if status == 200:
                    return
                last = f"HTTP {status}: {data[:300]!r}"
            except OSError as error:
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                last = repr(error)
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {timeout:.0f} s ({last}):\n{log_tail(log_path)}")

    def post(self, path: str, envelope: Envelope) -> dict[str, Any]:
        """POST an envelope; return the status resource of the 202."""
        status, _, data = self.request("POST", path, body=envelope.body)
        if status != 202:
            raise RuntimeError(f"POST {path}: HTTP {status}: {data[:500]!r}")
        result: dict[str, Any] = orjson.loads(data)
        return result

    def status(self, path: str) -> dict[str, Any]:
        """GET a status resource."""
        status, _, data = self.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: HTTP {status}")
        result: dict[str, Any] = orjson.loads(data)
        return result

    def page(self, path: str, params: dict[str, str | int]) -> Page:
        """GET one page of objects and parse it, as a client must."""
        status, headers, data = self.request("GET", path, params=params)
        if status != 200:
            raise RuntimeError(f"GET {path} {params}: HTTP {status}: {data[:500]!r}")
        body = orjson.loads(data)
        return Page(
            size=len(body.get("objects", [])),
            more=bool(body.get("more", False)),
            next=body.get("next"),
            date_added_last=headers.get("x-taxii-date-added-last"),
        )


# --- TAXII runs -----------------------------------------------------------------------------------


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
    client: TaxiiClient,
    collection: Collection,
    batch: list[Envelope],
    result: Measurement,
    budget: float,
    *,
    log_every: int = 5,
    times: list[float] | None = None,
) -> bool:
    """POST the envelopes one after another, adding to `result`; False if stopped by the time budget.

    `times`, if given, receives the cumulative ingest seconds after each envelope.
    """
    failures: list[str] = []
    start, spent = time.perf_counter(), result.ingest_s
    for number, envelope in enumerate(batch, 1):
        status = settle(client, collection, client.post(collection.objects, envelope))
        result.ingested += int(status.get("success_count", 0))
        if status.get("success_count") != envelope.size:
            failures += [json.dumps(failure)[:300] for failure in status.get("failures", [])]
        result.ingest_s = spent + time.perf_counter() - start
        if times is not None:
            times.append(result.ingest_s)
        if number % log_every == 0 or number == len(batch):
            rate = result.ingested / result.ingest_s if result.ingest_s else 0.0
            log(f"{result.system}: {result.ingested:,} objects stored, {result.ingest_s:.1f} s, {rate:,.0f} obj/s")
        if result.ingest_s > budget and number < len(batch):
            result.notes.append(f"ingest stopped by the {budget:g} s budget, {result.ingested:,} objects stored")
            return False
    if failures:
        examples = " | ".join(failures[:MAX_FAILURES_SHOWN])
        result.notes.append(f"{len(failures)} objects failed, e.g. {examples}")
    return True


def ingest_concurrently(
    connect: Callable[[], TaxiiClient],
    collection: Collection,
    batch: list[Envelope],
    result: Measurement,
    clients: int,
) -> None:
    """POST the first envelope (it holds the marking definitions), then the rest from `clients` threads.

    Each thread has its own connection and takes every `clients`-th envelope. The ingest time is the wall
    time from the first POST until the last thread is done.
    """
    shares = [batch[1 + i :: clients] for i in range(clients)]
    parts = [Measurement(f"{result.system} [client {i + 1}]") for i in range(clients)]
    start = time.perf_counter()
    first = connect()
    try:
        ingest(first, collection, batch[:1], result, float("inf"), log_every=1)
    finally:
        first.close()

    def work(index: int) -> None:
        client = connect()
        try:
            ingest(client, collection, shares[index], parts[index], float("inf"), log_every=50)
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=clients) as pool:
        for future in [pool.submit(work, i) for i in range(clients)]:
            future.result()
    result.ingest_s = time.perf_counter() - start
    result.ingested += sum(part.ingested for part in parts)
    result.notes += [note for part in parts for note in part.notes]
    result.notes.append(f"ingest: the first envelope alone, then {clients} clients (threads) at once")


class Fetch(NamedTuple):
    """One page request of a read-back sweep, its page and its wall time."""

    params: Params
    page: Page
    ms: float


def read_back(
    client: TaxiiClient,
    path: str,
    result: Measurement,
    expected: int | None = None,
    budget: float = float("inf"),
    log_every: int = 0,
) -> list[Fetch]:
    """Page through the collection with limit=1000 following `next`; return every request made.

    `expected`: how many objects the reader should see (default: what was ingested); a note if it differs.
    `budget`: stop after this many seconds (with a note). `log_every`: a progress line every N pages.
    """
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
        spent = time.perf_counter() - start
        if log_every and len(sweep) % log_every == 0:
            log(f"{result.system}: read {result.read:,} objects, {spent:.1f} s, {result.read / spent:,.0f} obj/s")
        if spent > budget:
            result.notes.append(f"read stopped by the {budget:g} s budget after {len(sweep)} pages")
            expected = result.read
            break
    result.read_s = time.perf_counter() - start
    log(f"{result.system}: read {result.read:,} objects in {len(sweep)} pages, {result.read_s:.2f} s")
    expected = result.ingested if expected is None else expected
    if result.read != expected:
        result.notes.append(f"read back {result.read:,} objects, expected {expected:,}")
    return sweep


def read_concurrently(connect: Callable[[], TaxiiClient], path: str, result: Measurement, clients: int) -> None:
    """`clients` threads each read the whole collection at once; objects out is their sum over the wall time."""
    expected = result.ingested
    parts = [Measurement(f"{result.system} [reader {i + 1}]", ingested=expected) for i in range(clients)]
    barrier = threading.Barrier(clients + 1)

    def work(index: int) -> None:
        client = connect()
        try:
            client.page(path, {"limit": 1})  # connect before the clock starts
            barrier.wait()
            read_back(client, path, parts[index])
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=clients) as pool:
        futures = [pool.submit(work, i) for i in range(clients)]
        barrier.wait()
        start = time.perf_counter()
        for future in futures:
            future.result()
        result.read_s = time.perf_counter() - start
    result.read = sum(part.read for part in parts)
    result.notes += [note for part in parts for note in part.notes]
    result.notes.append(
        f"read: {clients} clients (threads) each read the whole collection at once; objects out is the sum"
    )


def replayable_last(client: TaxiiClient, path: str, sweep: list[Fetch], result: Measurement) -> Params:
    """The request for the last page: its `next` token if it replays, else added_after the page before."""
    params, page = sweep[-1].params, sweep[-1].page
    try:
        if client.page(path, params).size == page.size:
            return params
    except RuntimeError as error:
        log(f"{result.system}: replaying the last `next` failed ({error}); using added_after")
    before = sweep[-2].page.date_added_last if len(sweep) > 1 else None
    if before is None:
        raise RuntimeError("the last page can be replayed neither by `next` nor by added_after")
    result.notes.append("last page replayed with added_after=X-TAXII-Date-Added-Last of the page before")
    return {"limit": PAGE_SIZE, "added_after": before}


def time_pages(client: TaxiiClient, path: str, sweep: list[Fetch], result: Measurement, repeat: int) -> None:
    """Median times of the first page and of the last page of a sweep, each replayed `repeat` times."""
    last = replayable_last(client, path, sweep, result)
    first: Params = {"limit": PAGE_SIZE}
    result.first_page_ms = median_ms(lambda: client.page(path, first), repeat)
    result.last_page_ms = median_ms(lambda: client.page(path, last), repeat)


# --- relto nodes and their databases -------------------------------------------------------------


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one measurement; dropped (WITH (FORCE)) afterwards.

    `admin_url` names a role that may CREATE DATABASE; the new database's URL is yielded.
    """
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    url = make_url(admin_url)
    admin = create_engine(url.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    name = f"relto_bench_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        log(f"created PostgreSQL database {name}")
        try:
            yield url.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
        finally:
            drop_postgres_database(admin, name)
    finally:
        admin.dispose()


def drop_postgres_database(admin: Any, name: str, attempts: int = 60) -> None:
    """DROP DATABASE ... WITH (FORCE), retried: FORCE cannot end an autovacuum worker (a superuser's
    process) that a non-superuser role does not own, and one often runs on a database just written to."""
    from sqlalchemy.exc import DBAPIError

    for attempt in range(1, attempts + 1):
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            log(f"dropped PostgreSQL database {name}")
            return
        except DBAPIError as error:
            if attempt == attempts:
                log(f"could not drop PostgreSQL database {name}; drop it by hand: {error.orig}")
                return
            time.sleep(1.0)


def postgres_size_bytes(url: str) -> int:
    """pg_database_size of the database `url` names."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"))
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
    finally:
        engine.dispose()


class NodeDatabase(NamedTuple):
    """A fresh node database: the CLI arguments that name it and its SQLAlchemy URL."""

    args: list[str]
    url: str
    postgres: bool


@contextmanager
def node_database(postgres_admin_url: str | None, data: Path) -> Iterator[NodeDatabase]:
    """A new PostgreSQL database when `postgres_admin_url` is given (dropped afterwards), else SQLite in `data`."""
    if postgres_admin_url is None:
        yield NodeDatabase(["--data", str(data)], f"sqlite:///{data / 'relto.db'}", False)
        return
    with postgres_database(postgres_admin_url) as url:
        yield NodeDatabase(["--database", url], url, True)


def relto_setup(binary: str, where: list[str], title: str = "relto bench") -> tuple[str, str]:
    """Initialise a GBR node, issue a TOP SECRET GBR token, add a collection; return (token, collection id).

    `where`: the CLI arguments that name the node's database, ["--data", DIR] or ["--database", URL].
    """
    run_cli([binary, "init", *where, "--nation", "GBR"])
    token = issue_token(binary, where, "GBR", "TOP SECRET")
    collection = run_cli([binary, "collection", "add", *where, title])
    return token, collection.splitlines()[-1].strip()


def issue_token(binary: str, where: list[str], nation: str, clearance: str, *, read_only: bool = False) -> str:
    """`relto token issue` for a nation and clearance; return the token."""
    command = [binary, "token", "issue", *where, "--nation", nation, "--clearance", clearance]
    out = run_cli(command + (["--read-only"] if read_only else []))
    return out.splitlines()[-1].strip()


def serve_command(binary: str, where: list[str], port: int, workers: int = 1) -> list[str]:
    """`relto serve` on loopback."""
    command = [binary, "serve", *where, "--host", "127.0.0.1", "--port", str(port)]
    return command + (["--workers", str(workers)] if workers > 1 else [])


def process_parents() -> dict[int, int]:
    """pid -> parent pid for every readable process (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])  # after "(comm)": state, ppid, ...
    return parents


def process_tree(pid: int, parents: dict[int, int]) -> list[int]:
    """A process and all its descendants, by the parent map `parents`."""
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        tree.append(current)
    return tree


def status_total(pids: list[int], key: str) -> int:
    """The sum of one /proc/PID/status value ("VmRSS", "Threads", ...) over `pids`; unreadable ones count 0."""
    total = 0
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in lines if line.startswith(key + ":"))
    return total


def process_tree_rss_bytes(pid: int) -> int:
    """VmRSS of a process and all its descendants (from /proc), in bytes; 0 where unreadable."""
    return status_total(process_tree(pid, process_parents()), "VmRSS") * 1024


# --- report -------------------------------------------------------------------------------------


def figure(value: float | None, digits: int = 0) -> str:
    """1,234 (or 1,234.5 with digits=1); '-' for no value."""
    return "-" if value is None else f"{value:,.{digits}f}"


def mib(value: int | None, digits: int = 0) -> str:
    """Bytes as MiB, formatted as `figure`."""
    return figure(None if value is None else value / MIB, digits)


def _rate(value: float | None) -> str:
    return f"{value:,.0f}" if value is not None else "-"


def _ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}" if value is not None and base else "-"


def _ms(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "-"


def table(results: list[Measurement], floor: Measurement | None, reference: Measurement | None = None) -> str:
    """The results as a Markdown table, rates relative to the floor (and to `reference`, if given)."""
    base_in = floor.ingest_rate if floor else None
    base_out = floor.read_rate if floor else None
    ref_in = reference.ingest_rate if reference else None
    ref_out = reference.read_rate if reference else None
    extra = f" x {reference.system} |" if reference else ""
    lines = [
        f"| system | objects in | ingest obj/s | x floor |{extra} objects out | read obj/s | x floor |{extra} "
        "first page ms | last page ms |",
        "|---|---:|---:|---:|"
        + ("---:|" if reference else "")
        + "---:|---:|---:|"
        + ("---:|" if reference else "")
        + "---:|---:|",
    ]
    for result in results:
        vs_in = f" {_ratio(result.ingest_rate, ref_in)} |" if reference else ""
        vs_out = f" {_ratio(result.read_rate, ref_out)} |" if reference else ""
        lines.append(
            f"| {result.system} | {result.ingested:,} | {_rate(result.ingest_rate)} "
            f"| {_ratio(result.ingest_rate, base_in)} |{vs_in} {result.read:,} | {_rate(result.read_rate)} "
            f"| {_ratio(result.read_rate, base_out)} |{vs_out} "
            f"{_ms(result.first_page_ms)} | {_ms(result.last_page_ms)} |"
        )
    return "\n".join(lines)


class Target(NamedTuple):
    """A ratio with the bound it should meet; no bound: shown for information."""

    name: str
    value: float | None
    bound: float | None
    at_least: bool

    def line(self) -> str:
        if self.value is None:
            return f"{self.name}: not measured"
        if self.bound is None:
            return f"{self.name}: {self.value:.2f} (information)"
        met = self.value >= self.bound if self.at_least else self.value <= self.bound
        sign = ">=" if self.at_least else "<="
        return f"{self.name}: {self.value:.2f} (target {sign} {self.bound:g}) {'PASS' if met else 'FAIL'}"


def quotient(top: float | None, bottom: float | None) -> float | None:
    """top / bottom, or None when either is missing or bottom is zero."""
    return top / bottom if top is not None and bottom else None


def basic_auth(user: str, password: str) -> str:
    """An HTTP Basic Authorization header value."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def bearer_auth(token: str) -> str:
    """A Bearer Authorization header value."""
    return f"Bearer {token}"
