"""Live stream benchmark: publish -> receive latency for many subscribers of different nations.

Run from the repository root:
    .venv/bin/python bench/stream.py [--backend sqlite|postgres|both] [--subscribers 100] [--rate 1000]
                                     [--seconds 30] [--postgres URL] [--also-rate R] [--json out.json]

Per back-end, a fresh relto node (SQLite: one `relto serve` process; PostgreSQL: a fresh database and
`relto serve --workers 4`), a GBR TOP SECRET publisher token and one SECRET read-only token per subscriber nation
(GBR, USA, KOR, UKR, FRA, DEU, JPN, POL, AUS, ITA, cycling over the subscribers).

1. The marking definitions (six relto releasability markings, below) are POSTed first; the server's RSS (VmRSS of
   its process tree) is read.
2. One subscriber process (bench/stream_workers.py, mode `_subscribers`) opens N server-sent-event connections to
   GET /api/collections/{id}/stream/ with asyncio protocols over raw sockets (HTTP/1.1, chunked or not), and
   says when every stream has sent its first frame; RSS is read again with N idle subscribers.
3. One publisher process (mode `_publisher`) POSTs envelopes of 10 indicators every 10 ms (the rate is
   --rate objects/s) for --seconds on one kept-alive connection, never skipping: if a POST is late, the next
   goes at once. Each indicator carries `x_sent_ns` (time.time_ns() just before its POST) and one of the six
   markings drawn at random; the publisher records when each 202 came back.
4. Every subscriber records, for each event, the object's number (encoded in its id) and time.time_ns() when
   the bytes reached the process (the same clock: one machine). After the publisher stops, the script waits
   until the deliveries stop growing, then reads each nation's TAXII manifest (match[version]=all) to
   cross-check what each nation may see.

Reported per back-end: deliveries expected (from the markings and today's community members, `relto community
list --json`; the publisher's nation is the originator and sees all it is cleared for) vs received, missing,
duplicated and not releasable; latency p50 / p99 / max over all deliveries, from x_sent_ns and from the 202;
achieved publish rate; server RSS before subscribers, with idle subscribers, per idle subscriber, at the end;
CPU used (utime+stime from /proc) by the server tree, the subscriber and publisher processes, PostgreSQL, and
the whole machine, over the publishing window. Targets: p50 <= 5 ms, p99 <= 50 ms, no event lost (every
subscriber exactly its nation's events, no duplicates), <= 50 KB per idle subscriber.
Progress goes to stderr; the report to stdout.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pickle
import random
import shutil
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import stream_workers
from _common import (
    MIB,
    TaxiiClient,
    bearer_auth,
    exit_on_sigterm,
    figure,
    free_port,
    issue_token,
    log,
    mib,
    node_database,
    process_tree,
    process_tree_rss_bytes,
    relto_setup,
    run_cli,
    serve_command,
    server,
    status_total,
)
from stream_workers import ENVELOPE, PublisherConfig, SubscriberConfig, object_number

from relto.domain.levels import Ladder
from relto.domain.markings import releasability_marking

PUBLISHER = "GBR"
NATIONS = ("GBR", "USA", "KOR", "UKR", "FRA", "DEU", "JPN", "POL", "AUS", "ITA")
CLEARANCE = "SECRET"
MARKINGS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("SECRET", ("NATO",)),
    ("SECRET", ("FVEY",)),
    ("SECRET", ("GBR", "KOR", "UKR")),
    ("SECRET", ("IP4",)),
    ("CONFIDENTIAL", ("EU",)),  # GBR left the EU: it sees these only as their originator
    ("TOP SECRET", ("FVEY", "NATO")),  # no SECRET subscriber may see these
)
TICKS = os.sysconf("SC_CLK_TCK")
TARGET_P50_MS = 5.0
TARGET_P99_MS = 50.0
TARGET_IDLE_KB = 50.0
DEFAULT_POSTGRES = "postgresql://relto_test:relto_test@127.0.0.1:5432/relto_test"


# --- CPU and memory from /proc --------------------------------------------------------------------

ProcessTable = dict[int, tuple[int, str, int]]  # pid -> (parent pid, command name, utime + stime ticks)


def process_table() -> ProcessTable:
    """pid -> (parent pid, command name, utime + stime in clock ticks) for every readable process."""
    table: dict[int, tuple[int, str, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        rest = stat.rsplit(")", 1)[1].split()  # state, ppid, ... utime is field 14, the 12th after ")"
        table[int(entry.name)] = (int(rest[1]), comm, int(rest[11]) + int(rest[12]))
    return table


def tree_ticks(pid: int, table: ProcessTable) -> int:
    """CPU ticks of a process and its live descendants."""
    tree = process_tree(pid, {child: parent for child, (parent, _, _) in table.items()})
    return sum(table[p][2] for p in tree if p in table)


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already in user
    return total - idle, total


def tree_threads(pid: int) -> int:
    """Threads of a process and its live descendants."""
    tree = process_tree(pid, {child: parent for child, (parent, _, _) in process_table().items()})
    return status_total(tree, "Threads")


@dataclass
class CpuSample:
    """CPU ticks of every process and of the whole machine at one moment."""

    wall: float
    table: ProcessTable
    busy: int
    total: int

    @classmethod
    def take(cls) -> CpuSample:
        table = process_table()
        busy, total = machine_ticks()
        return cls(time.monotonic(), table, busy, total)


@dataclass
class CpuUse:
    """Cores used on average over a window (1.0 = one core busy all the time)."""

    seconds: float
    server: float
    subscribers: float
    publisher: float
    postgres: float  # the backends connected to this run's database
    machine: float  # every process on the machine, ours included
    cores: int

    @property
    def others(self) -> float:
        """Cores used by processes that are not this benchmark's (other work on a shared machine)."""
        return max(0.0, self.machine - self.server - self.subscribers - self.publisher - self.postgres)

    @classmethod
    def between(
        cls, a: CpuSample, b: CpuSample, server: int, subscribers: int, publisher_ticks: int, db_pids: set[int]
    ) -> CpuUse:
        seconds = max(b.wall - a.wall, 1e-9)
        cores = os.cpu_count() or 1

        def used(ticks: int) -> float:
            return ticks / TICKS / seconds

        database = sum(b.table[p][2] - a.table.get(p, (0, "", 0))[2] for p in db_pids if p in b.table)
        return cls(
            seconds,
            used(tree_ticks(server, b.table) - tree_ticks(server, a.table)),
            used(tree_ticks(subscribers, b.table) - tree_ticks(subscribers, a.table)),
            used(publisher_ticks),
            used(database),
            (b.busy - a.busy) / max(b.total - a.total, 1) * cores,
            cores,
        )


def database_pids(url: str) -> set[int]:
    """The PostgreSQL backends connected to the database `url` names (but this query's own)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"))
    query = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    try:
        with engine.connect() as conn:
            return {int(row[0]) for row in conn.execute(text(query))}
    finally:
        engine.dispose()


# --- one measurement --------------------------------------------------------------------------------


@dataclass
class NationResult:
    nation: str
    subscribers: int
    expected_each: int
    received_min: int
    received_max: int
    missing: int
    duplicates: int
    not_releasable: int
    manifest: int | None  # indicators of this run in the nation's TAXII manifest
    manifest_agrees: bool | None


@dataclass
class Point:
    """One back-end at one rate."""

    backend: str
    workers: int
    subscribers: int
    rate: float
    seconds: float
    published: int = 0
    publish_s: float = 0.0
    post_ms_p50: float | None = None
    post_ms_p99: float | None = None
    expected: int = 0
    deliveries: int = 0
    missing: int = 0
    duplicates: int = 0
    not_releasable: int = 0
    out_of_order: int = 0
    foreign: int = 0
    lagged: int = 0
    reconnects: int = 0
    subscribers_connected: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)  # p50, p99, max from x_sent_ns
    ack_latency_ms: dict[str, float] = field(default_factory=dict)  # p50, p99, max from the 202
    rss_before: int | None = None
    rss_idle: int | None = None
    rss_end: int | None = None
    threads_before: int | None = None
    threads_idle: int | None = None
    cpu: CpuUse | None = None
    drain_s: float = 0.0
    nations: list[NationResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def system(self) -> str:
        return f"relto {self.backend} x{self.workers}"

    @property
    def achieved_rate(self) -> float | None:
        return self.published / self.publish_s if self.publish_s else None

    @property
    def idle_kb_per_subscriber(self) -> float | None:
        if self.rss_before is None or self.rss_idle is None or not self.subscribers:
            return None
        return (self.rss_idle - self.rss_before) / 1024 / self.subscribers

    @property
    def no_event_lost(self) -> bool:
        return (
            self.deliveries > 0
            and self.missing == 0
            and self.duplicates == 0
            and self.not_releasable == 0
            and self.subscribers_connected == self.subscribers
        )


def communities(binary: str, where: list[str], day: date) -> dict[str, frozenset[str]]:
    """Community name -> members on `day`, from `relto community list --json`."""
    out: dict[str, frozenset[str]] = {}
    for community in json.loads(run_cli([binary, "community", "list", *where, "--json"])):
        members = set()
        for member in community["members"]:
            since = date.fromisoformat(member["since"])
            until = date.fromisoformat(member["until"]) if member.get("until") else None
            if since <= day and (until is None or day < until):
                members.add(member["nation"])
        out[community["name"]] = frozenset(members)
    return out


def admits(nation: str, marking: tuple[str, tuple[str, ...]], members: dict[str, frozenset[str]]) -> bool:
    """Whether a SECRET reader of `nation` may see an object the publisher marked so (relto's documented rule)."""
    ladder = Ladder()
    level, rel_to = marking
    if ladder.rank(CLEARANCE) < ladder.rank(level):
        return False
    return nation == PUBLISHER or any(entry == nation or nation in members.get(entry, ()) for entry in rel_to)


def quantiles(values: list[int]) -> dict[str, float]:
    """p50, p99 and max of nanosecond values, in milliseconds."""
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6

    return {"p50": at(0.5), "p99": at(0.99), "max": ordered[-1] / 1e6}


def manifest_numbers(client: TaxiiClient, path: str, tag: int) -> set[int]:
    """This run's indicator numbers in a TAXII manifest, all versions, following `next`."""
    found: set[int] = set()
    params: dict[str, str | int] = {"limit": 10000, "match[version]": "all"}
    while True:
        status, _, data = client.request("GET", path, params=params)
        if status != 200:
            raise RuntimeError(f"GET {path}: HTTP {status}: {data[:300]!r}")
        body = orjson.loads(data)
        for entry in body.get("objects", []):
            number = object_number(entry["id"], tag)
            if number >= 0:
                found.add(number)
        if not body.get("more") or not body.get("next"):
            return found
        params = {"limit": 10000, "match[version]": "all", "next": body["next"]}


class Child:
    """A helper process (bench/stream_workers.py) speaking JSON lines on stdout."""

    def __init__(self, mode: str, config: dict[str, Any], workdir: Path) -> None:
        path = workdir / f"{mode}.json"
        path.write_text(json.dumps(config))
        command = [sys.executable, str(Path(stream_workers.__file__).resolve()), mode, str(path)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def ask(self, command: str | None = None) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        if command is not None:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"helper process exited {self.process.wait()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def measure(backend: str, rate: float, args: argparse.Namespace, workdir: Path, label: str) -> Point:
    workers = 1 if backend == "sqlite" else args.workers
    point = Point(backend, workers, args.subscribers, rate, args.seconds)
    ladder = Ladder()
    definitions = [releasability_marking(level, rel_to, ladder) for level, rel_to in MARKINGS]
    tag = random.getrandbits(32)
    with node_database(args.postgres if backend == "postgres" else None, workdir / f"relto-{label}") as db:
        where, url = db.args, (db.url if db.postgres else None)
        publisher_token, collection = relto_setup(args.relto, where, "relto stream")
        tokens = {nation: issue_token(args.relto, where, nation, CLEARANCE, read_only=True) for nation in NATIONS}
        members = communities(args.relto, where, date.today())
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        objects_path = f"/api/collections/{collection}/objects/"
        log_path = workdir / f"relto-{label}.log"
        with server(serve_command(args.relto, where, port, workers), log_path) as process:
            client = TaxiiClient(base, bearer_auth(publisher_token), 60.0)
            try:
                client.wait_ready(process, log_path)
                status, _, data = client.request("POST", objects_path, body=orjson.dumps({"objects": definitions}))
                if status != 202 or orjson.loads(data).get("success_count") != len(definitions):
                    raise RuntimeError(f"marking definitions: HTTP {status}: {data[:500]!r}")
            finally:
                client.close()
            time.sleep(2.0)
            point.rss_before = process_tree_rss_bytes(process.pid)
            point.threads_before = tree_threads(process.pid)
            log(f"{point.system}: server RSS before subscribers {point.rss_before / MIB:.1f} MiB")
            nations = [NATIONS[i % len(NATIONS)] for i in range(args.subscribers)]
            sub_config = asdict(
                SubscriberConfig(
                    "127.0.0.1",
                    port,
                    f"/api/collections/{collection}/stream/",
                    [tokens[n] for n in nations],
                    tag,
                    str(workdir / f"subscribers-{label}.pickle"),
                )
            )
            subs = Child("_subscribers", sub_config, workdir)
            publisher: Child | None = None
            try:
                point.subscribers_connected = int(subs.ask()["ready"])
                log(f"{point.system}: {point.subscribers_connected}/{args.subscribers} subscribers connected")
                time.sleep(2.0)
                point.rss_idle = process_tree_rss_bytes(process.pid)
                point.threads_idle = tree_threads(process.pid)
                log(f"{point.system}: server RSS with idle subscribers {point.rss_idle / MIB:.1f} MiB")
                pub_config = asdict(
                    PublisherConfig(
                        "127.0.0.1",
                        port,
                        objects_path,
                        publisher_token,
                        tag,
                        [d["id"] for d in definitions],
                        rate,
                        args.seconds,
                        args.seed,
                        str(workdir / f"publisher-{label}.json"),
                    )
                )
                log(f"{point.system}: publishing {rate:,.0f} obj/s for {args.seconds:g} s")
                publisher = Child("_publisher", pub_config, workdir)
                before = CpuSample.take()
                first_publisher = last_publisher = tree_ticks(publisher.process.pid, before.table)
                while publisher.process.poll() is None:  # the publisher's own ticks vanish when it exits
                    last_publisher = tree_ticks(publisher.process.pid, process_table()) or last_publisher
                    time.sleep(0.5)
                after = CpuSample.take()
                db_pids = database_pids(url) if url else set()
                point.cpu = CpuUse.between(
                    before, after, process.pid, subs.process.pid, last_publisher - first_publisher, db_pids
                )
                if publisher.process.returncode != 0:
                    raise RuntimeError(f"the publisher exited {publisher.process.returncode}")
                sent = orjson.loads(Path(pub_config["result"]).read_bytes())
                marking_of: list[int] = sent["markings"]
                failed = {object_number(i, tag) for i in sent["failed"]}
                if failed:
                    point.notes.append(f"{len(failed)} objects failed to publish (not expected on the stream)")
                sent_ns, acked_ns = array("q"), array("q")
                for _, count, at, acked in sent["envelopes"]:
                    sent_ns.extend([at] * count)
                    acked_ns.extend([acked] * count)
                envelopes = sent["envelopes"]
                point.published = len(marking_of) - len(failed)
                point.publish_s = (envelopes[-1][3] - envelopes[0][2]) / 1e9 if envelopes else 0.0
                post = quantiles([acked - at for _, _, at, acked in envelopes])
                point.post_ms_p50, point.post_ms_p99 = post.get("p50"), post.get("p99")
                visible = {
                    nation: {
                        n for n, m in enumerate(marking_of) if n not in failed and admits(nation, MARKINGS[m], members)
                    }
                    for nation in NATIONS
                }
                point.expected = sum(len(visible[n]) for n in nations)
                log(
                    f"{point.system}: published {point.published:,} objects in {point.publish_s:.1f} s "
                    f"({point.achieved_rate or 0:,.0f} obj/s); {point.expected:,} deliveries expected; draining"
                )
                drain_start = time.monotonic()
                last, still = -1, time.monotonic()
                while time.monotonic() - drain_start < args.drain:
                    received = int(subs.ask("status")["received"])
                    if received != last:
                        last, still = received, time.monotonic()
                    else:
                        quiet = time.monotonic() - still
                        if quiet >= args.quiet or (received >= point.expected and quiet >= 1.0):
                            break
                    time.sleep(0.25)
                point.drain_s = time.monotonic() - drain_start
                point.rss_end = process_tree_rss_bytes(process.pid)
                subs.ask("stop")
                subs.process.wait(timeout=60)
                with open(sub_config["result"], "rb") as stream:
                    results: list[dict[str, Any]] = pickle.load(stream)
            finally:
                subs.stop()
                if publisher is not None:
                    publisher.stop()
            manifests: dict[str, set[int]] = {}
            for nation in NATIONS:
                reader = TaxiiClient(base, bearer_auth(tokens[nation]), 120.0)
                try:
                    manifests[nation] = manifest_numbers(reader, f"/api/collections/{collection}/manifest/", tag)
                except Exception as error:  # the cross-check is evidence, not the measurement
                    point.notes.append(f"manifest of {nation}: {error!r}")
                finally:
                    reader.close()
    analyse(point, nations, results, visible, manifests, sent_ns, acked_ns)
    return point


def analyse(
    point: Point,
    nations: list[str],
    results: list[dict[str, Any]],
    visible: dict[str, set[int]],
    manifests: dict[str, set[int]],
    sent_ns: array[int],
    acked_ns: array[int],
) -> None:
    """Compare each subscriber's deliveries with its nation's share; latencies over all deliveries."""
    latencies: list[int] = []
    from_ack: list[int] = []
    per_nation: dict[str, list[tuple[int, int, int, int]]] = {n: [] for n in NATIONS}
    errors: Counter[str] = Counter()
    for nation, result in zip(nations, results, strict=True):
        numbers: array[int] = result["numbers"]
        received: array[int] = result["received_ns"]
        allowed = visible[nation]
        got = set(numbers)
        missing = len(allowed - got)
        duplicates = len(numbers) - len(got)
        wrong = len(got - allowed)
        point.out_of_order += sum(1 for a, b in itertools.pairwise(numbers) if b < a)
        per_nation[nation].append((len(numbers), missing, duplicates, wrong))
        point.deliveries += len(numbers)
        point.missing += missing
        point.duplicates += duplicates
        point.not_releasable += wrong
        point.foreign += int(result["foreign"])
        point.lagged += int(result["lagged"])
        point.reconnects += int(result["reconnects"])
        for error in result["errors"]:
            errors[error[:200]] += 1
        for other, count in result["other_events"].items():
            errors[f"event {other!r}"] += count
        for number, at in zip(numbers, received, strict=True):
            if 0 <= number < len(sent_ns):
                latencies.append(at - sent_ns[number])
                from_ack.append(at - acked_ns[number])
    point.latency_ms = quantiles(latencies)
    point.ack_latency_ms = quantiles(from_ack)
    for nation in NATIONS:
        rows = per_nation[nation]
        if not rows:
            continue
        manifest = manifests.get(nation)
        point.nations.append(
            NationResult(
                nation,
                len(rows),
                len(visible[nation]),
                min(r[0] for r in rows),
                max(r[0] for r in rows),
                sum(r[1] for r in rows),
                sum(r[2] for r in rows),
                sum(r[3] for r in rows),
                len(manifest) if manifest is not None else None,
                manifest == visible[nation] if manifest is not None else None,
            )
        )
    point.notes += [f"{count} x {error}" for error, count in errors.most_common(10)]
    if point.foreign:
        point.notes.append(f"{point.foreign} events for objects this run did not publish (the marking definitions?)")


# --- report -------------------------------------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("met" if ok else "NOT MET")


def report_lines(points: list[Point]) -> list[str]:
    out = [
        "| system | subscribers | target obj/s | achieved obj/s | POST ms p50 / p99 | deliveries expected "
        "| received | missing | duplicated | not releasable | latency ms p50 / p99 / max | from 202: p50 / p99 / max |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        lat, ack = p.latency_ms, p.ack_latency_ms
        out.append(
            f"| {p.system} | {p.subscribers_connected}/{p.subscribers} | {p.rate:,.0f} | {figure(p.achieved_rate)} "
            f"| {figure(p.post_ms_p50, 1)} / {figure(p.post_ms_p99, 1)} | {p.expected:,} | {p.deliveries:,} "
            f"| {p.missing:,} | {p.duplicates:,} | {p.not_releasable:,} "
            f"| {figure(lat.get('p50'), 1)} / {figure(lat.get('p99'), 1)} / {figure(lat.get('max'), 1)} "
            f"| {figure(ack.get('p50'), 1)} / {figure(ack.get('p99'), 1)} / {figure(ack.get('max'), 1)} |"
        )
    out += [
        "",
        "| system | target obj/s | RSS before MiB | RSS with idle subscribers MiB | KB per idle subscriber "
        "| server threads before / idle | RSS end MiB | CPU cores: server | subscribers | publisher | PostgreSQL "
        "| other processes | machine (of N) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        c = p.cpu
        cpu = (
            f"{c.server:.2f} | {c.subscribers:.2f} | {c.publisher:.2f} | {c.postgres:.2f} | {c.others:.2f} "
            f"| {c.machine:.2f} of {c.cores}"
            if c
            else "- | - | - | - | - | -"
        )
        out.append(
            f"| {p.system} | {p.rate:,.0f} | {mib(p.rss_before, 1)} | {mib(p.rss_idle, 1)} "
            f"| {figure(p.idle_kb_per_subscriber, 1)} | {figure(p.threads_before)} / {figure(p.threads_idle)} "
            f"| {mib(p.rss_end, 1)} | {cpu} |"
        )
    for p in points:
        out += [
            "",
            f"{p.system}, {p.rate:,.0f} obj/s: per nation (SECRET readers; expected = that nation's share of the "
            "published objects; manifest = its TAXII manifest, match[version]=all)",
            "",
            "| nation | subscribers | expected each | received each (min-max) | missing | duplicated "
            "| not releasable | manifest | manifest = expected |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for n in p.nations:
            out.append(
                f"| {n.nation} | {n.subscribers} | {n.expected_each:,} | {n.received_min:,}-{n.received_max:,} "
                f"| {n.missing:,} | {n.duplicates:,} | {n.not_releasable:,} | {figure(n.manifest)} "
                f"| {'-' if n.manifest_agrees is None else ('yes' if n.manifest_agrees else 'NO')} |"
            )
    out.append("")
    for p in points:
        name = f"{p.system} @ {p.rate:,.0f} obj/s"
        p50, p99 = p.latency_ms.get("p50"), p.latency_ms.get("p99")
        kb = p.idle_kb_per_subscriber
        rate_ok = p.achieved_rate is not None and p.achieved_rate >= 0.95 * p.rate
        out += [
            f"{name}: publish rate {figure(p.achieved_rate)} obj/s of {p.rate:,.0f} "
            f"({'sustained' if rate_ok else 'NOT sustained'})",
            f"{name}: latency p50 {figure(p50, 1)} ms (target <= {TARGET_P50_MS:g}) "
            f"{verdict(None if p50 is None else p50 <= TARGET_P50_MS)}",
            f"{name}: latency p99 {figure(p99, 1)} ms (target <= {TARGET_P99_MS:g}) "
            f"{verdict(None if p99 is None else p99 <= TARGET_P99_MS)}",
            f"{name}: no event lost (exactly each nation's events, no duplicates): missing {p.missing:,}, "
            f"duplicated {p.duplicates:,}, not releasable {p.not_releasable:,} {verdict(p.no_event_lost)}",
            f"{name}: {figure(kb, 1)} KB per idle subscriber (target <= {TARGET_IDLE_KB:g}) "
            f"{verdict(None if kb is None else kb <= TARGET_IDLE_KB)}",
        ]
        if p.lagged or p.reconnects:
            out.append(f"{name}: {p.lagged} 'lagged' events, {p.reconnects} reconnects (resumed by Last-Event-ID)")
        if p.out_of_order:
            out.append(f"{name}: {p.out_of_order} deliveries arrived out of publish order")
        out.append(f"{name}: drained {p.drain_s:.1f} s after the last POST")
        out += [f"note ({name}): {note}" for note in p.notes]
    return out


# --- main ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--backend", choices=("sqlite", "postgres", "both"), default="both", help="(default: both)")
    add("--subscribers", type=int, default=100, help="concurrent SSE subscribers (default: 100)")
    add("--rate", type=float, default=1000.0, help="objects per second published (default: 1000)")
    add("--seconds", type=float, default=30.0, help="how long to publish (default: 30)")
    add(
        "--postgres",
        default=os.environ.get("RELTO_BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        help="PostgreSQL URL of a role that may CREATE DATABASE (default: $RELTO_BENCH_POSTGRES_URL or %(default)s)",
    )
    add("--workers", type=int, default=4, help="server processes on PostgreSQL (default: 4)")
    add("--also-rate", type=float, nargs="*", default=[], help="lighter extra points after the main one, obj/s")
    add("--seed", type=int, default=20261127, help="marking draw seed (default: %(default)s)")
    add("--drain", type=float, default=60.0, help="at most this many s to wait for deliveries after publishing")
    add("--quiet", type=float, default=3.0, help="stop draining after this many s without a new delivery")
    add("--relto", default=str(Path(sys.executable).parent / "relto"), help="relto's CLI (default: %(default)s)")
    add("--workdir", type=Path, help="where databases and logs go (default: a temp dir)")
    add("--keep", action="store_true", help="keep the work directory (default: delete it)")
    add("--json", type=Path, help="also write the results as JSON to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()  # so the finally blocks stop the server
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="relto-stream-", dir=args.workdir))
    log(f"work directory {workdir}")
    points: list[Point] = []
    failed = False
    try:
        for backend in backends:
            for number, rate in enumerate([args.rate, *args.also_rate]):
                label = f"{backend}-{number}"
                log(f"relto {backend}: {args.subscribers} subscribers, {rate:,.0f} obj/s ...")
                try:
                    points.append(measure(backend, rate, args, workdir, label))
                except Exception as error:  # report the other back-end even if one fails
                    log(f"relto {backend} @ {rate:,.0f} obj/s failed: {error!r}")
                    failed = True
                    workers = 1 if backend == "sqlite" else args.workers
                    points.append(
                        Point(backend, workers, args.subscribers, rate, args.seconds, notes=[f"failed: {error!r}"])
                    )
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"relto live stream, {date.today().isoformat()}: {args.subscribers} subscribers (SECRET, nations "
        f"{', '.join(NATIONS)} cycling), envelopes of {ENVELOPE}, {args.seconds:g} s per point; markings: "
        + "; ".join(f"{level} REL TO {', '.join(rel_to)}" for level, rel_to in MARKINGS)
    )
    print()
    print("\n".join(report_lines(points)))
    if args.json:
        document = [
            asdict(p) | {"achieved_rate": p.achieved_rate, "idle_kb_per_subscriber": p.idle_kb_per_subscriber}
            for p in points
        ]
        args.json.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    log(f"done in {time.perf_counter() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
