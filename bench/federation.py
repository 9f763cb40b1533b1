"""Federation benchmark: replication of the ATT&CK corpus to a peer from empty, and live lag across two hops.

Run from the repository root:
    .venv/bin/python bench/federation.py [--rate 1000] [--seconds 20] [--relto PATH] [--json out.json]

Every node is a real `relto serve` process on SQLite (synchronous=FULL) on loopback, started from a fresh data
directory.

1. **Corpus.** Node A (GBR) ingests the MITRE ATT&CK Enterprise corpus (24,771 objects) through TAXII in envelopes of
   1,000: the single-node ingest time, the baseline measured in the same run. Node B, empty and already serving,
   then follows A (`relto peer add` with a `--peer` token of GBR that A issued: B is a second GBR node, so every
   object is releasable to it). Reported: seconds from `peer add` until B holds every version (its database is
   polled every 20 ms), seconds from B's first version to its last, the ratio to the ingest time, and B's RSS
   (its process tree) before and at most during the catch-up. Target: the corpus in <= 5 s.
2. **Live lag across two hops.** Node G (GBR) publishes, a hub H (BEL) follows G with a `--relay-for KOR` token, and
   node K (KOR) follows H with a `--peer` token of KOR. A publisher (bench/stream_workers.py) POSTs envelopes of
   10 indicators, SECRET REL TO GBR, KOR, to G at --rate objects/s for --seconds; each carries the time it was sent.
   One live-stream subscriber on K (a KOR reader) and one on G itself (the single-node baseline, same run) record
   when each object reaches them. Reported: lag p50 / p99 / max from sending to arrival at K and at G, objects lost
   or duplicated. Target: p99 <= 200 ms across the two hops.
Progress goes to stderr; the report to stdout.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import pickle
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import stream_workers
from _common import (
    MIB,
    TaxiiClient,
    bearer_auth,
    envelopes,
    exit_on_sigterm,
    free_port,
    load_objects,
    log,
    process_tree_rss_bytes,
    relto_setup,
    run_cli,
    serve_command,
    server,
)
from stream_workers import PublisherConfig, SubscriberConfig

from relto.domain.levels import Ladder
from relto.domain.markings import releasability_marking

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "enterprise-attack-18.1-stix21.json.gz"


@dataclass
class Report:
    corpus_objects: int = 0
    copies: int = 1  # the corpus ingested into this many collections
    ingest_s: float = 0.0
    replicate_s: float = 0.0  # peer add -> every version at the peer
    replicate_first_to_last_s: float = 0.0
    peer_rss_before_mib: float = 0.0
    peer_rss_max_mib: float = 0.0
    rate: float = 0.0
    seconds: float = 0.0
    published: int = 0
    two_hops: dict[str, float | int] = field(default_factory=dict)
    one_node: dict[str, float | int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def child(mode: str, config: dict[str, Any], workdir: Path, name: str) -> Any:
    """A helper process of bench/stream_workers.py, speaking JSON lines."""
    path = workdir / f"{name}.json"
    path.write_text(json.dumps(config))
    command = [sys.executable, str(Path(stream_workers.__file__).resolve()), mode, str(path)]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)


def ask(process: Any, command: str | None = None) -> dict[str, Any]:
    if command is not None:
        process.stdin.write(command + "\n")
        process.stdin.flush()
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"helper process exited {process.wait()}")
    answer: dict[str, Any] = json.loads(line)
    return answer


def count_versions(data: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{data / 'relto.db'}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return 0
    try:
        return int(db.execute("SELECT COUNT(*) FROM objects").fetchone()[0])
    except sqlite3.Error:
        return 0
    finally:
        db.close()


def init(binary: str, data: Path, nation: str) -> str:
    return run_cli([binary, "init", "--data", str(data), "--nation", nation]).splitlines()[-1]


def token(binary: str, data: Path, nation: str, *extra: str, clearance: str = "SECRET") -> str:
    out = run_cli([binary, "token", "issue", "--data", str(data), "--nation", nation, "--clearance", clearance, *extra])
    return out.splitlines()[-1]


def wait_until(check: Any, seconds: float, what: str, every: float = 0.05) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise RuntimeError(f"timed out waiting for {what}")


def corpus(binary: str, workdir: Path, report: Report, copies: int) -> None:
    objects = load_objects(CORPUS)
    report.corpus_objects = len(objects)
    report.copies = copies
    a, b = workdir / "a", workdir / "b"
    writer, collection = relto_setup(binary, ["--data", str(a)], "attack")
    collections = [collection]
    for n in range(1, copies):
        collections.append(run_cli([binary, "collection", "add", "--data", str(a), f"attack {n + 1}"]).splitlines()[-1])
    init(binary, b, "GBR")
    peer_token = token(binary, a, "GBR", "--peer")
    port_a, port_b = free_port(), free_port()
    with (
        server(serve_command(binary, ["--data", str(a)], port_a), workdir / "a.log") as proc_a,
        server(serve_command(binary, ["--data", str(b)], port_b), workdir / "b.log") as proc_b,
    ):
        client = TaxiiClient(f"http://127.0.0.1:{port_a}", bearer_auth(writer), 300)
        client.wait_ready(proc_a, workdir / "a.log")
        wait_until(lambda: _answers(port_b), 30, "node B")
        start = time.perf_counter()
        for collection in collections:
            path = f"/api/collections/{collection}/objects/"
            for envelope in envelopes(objects):
                status = client.post(path, envelope)
                if status.get("failure_count"):
                    report.notes.append(f"{status['failure_count']} objects refused at ingest")
        report.ingest_s = time.perf_counter() - start
        client.close()
        total = len(objects) * copies
        log(f"corpus: A ingested {total:,} objects in {report.ingest_s:.2f} s")
        report.peer_rss_before_mib = process_tree_rss_bytes(proc_b.pid) / MIB
        start = time.perf_counter()
        run_cli([binary, "peer", "add", "--data", str(b), "a", f"http://127.0.0.1:{port_a}", "--token", peer_token])
        first = None
        rss = 0
        while True:
            held = count_versions(b)
            now = time.perf_counter()
            if held and first is None:
                first = now
            rss = max(rss, process_tree_rss_bytes(proc_b.pid))
            if held >= total:
                break
            if now - start > 120 * copies:
                raise RuntimeError(f"B holds {held:,} of {total:,} after {120 * copies} s")
            time.sleep(0.02)
        report.replicate_s = now - start
        report.replicate_first_to_last_s = now - (first or start)
        report.peer_rss_max_mib = rss / MIB
        log(f"corpus: B holds every version {report.replicate_s:.2f} s after `peer add`")


def lag(samples: list[int]) -> dict[str, float | int]:
    if not samples:
        return {"received": 0}
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6  # noqa: E731
    return {
        "received": len(samples),
        "p50_ms": round(pick(0.50), 2),
        "p99_ms": round(pick(0.99), 2),
        "max_ms": round(ordered[-1] / 1e6, 2),
        "mean_ms": round(statistics.fmean(ordered) / 1e6, 2),
    }


def two_hops(binary: str, workdir: Path, report: Report, rate: float, seconds: float) -> None:
    g, h, k = workdir / "g", workdir / "h", workdir / "k"
    writer, collection = relto_setup(binary, ["--data", str(g)], "live")
    init(binary, h, "BEL")
    init(binary, k, "KOR")
    relay = token(binary, g, "BEL", "--relay-for", "KOR")
    peer = token(binary, h, "KOR", "--peer")
    reader_k = token(binary, k, "KOR", "--read-only")
    reader_g = token(binary, g, "KOR", "--read-only")
    definition = releasability_marking("SECRET", ["GBR", "KOR"], Ladder())
    ports = {name: free_port() for name in "ghk"}
    with (
        server(serve_command(binary, ["--data", str(g)], ports["g"]), workdir / "g.log") as proc_g,
        server(serve_command(binary, ["--data", str(h)], ports["h"]), workdir / "h.log") as proc_h,
        server(serve_command(binary, ["--data", str(k)], ports["k"]), workdir / "k.log") as proc_k,
    ):
        for name, proc in (("g", proc_g), ("h", proc_h), ("k", proc_k)):
            if proc.poll() is not None:
                raise RuntimeError(f"node {name} exited")
            wait_until(lambda p=ports[name]: _answers(p), 30, f"node {name}")
        run_cli([binary, "peer", "add", "--data", str(h), "g", f"http://127.0.0.1:{ports['g']}", "--token", relay])
        run_cli(
            [binary, "peer", "add", "--data", str(k), "hub", f"http://127.0.0.1:{ports['h']}", "--token", peer,
             "--speaks-for", "GBR"]
        )  # fmt: skip
        client = TaxiiClient(f"http://127.0.0.1:{ports['g']}", bearer_auth(writer), 60)
        client.post(f"/api/collections/{collection}/objects/", envelopes([definition])[0])
        client.close()
        wait_until(lambda: count_versions(k) >= 1, 30, "the definition and collection at K", every=0.1)
        tag = random.getrandbits(32)
        subs = {}
        for name, port, reader in (("k", ports["k"], reader_k), ("g", ports["g"], reader_g)):
            config = asdict(
                SubscriberConfig(
                    "127.0.0.1", port, f"/api/collections/{collection}/stream/", [reader], tag,
                    str(workdir / f"sub-{name}.pickle"),
                )
            )  # fmt: skip
            subs[name] = child("_subscribers", config, workdir, f"sub-{name}")
            ask(subs[name])  # ready
        pub_config = asdict(
            PublisherConfig(
                "127.0.0.1", ports["g"], f"/api/collections/{collection}/objects/", writer, tag, [definition["id"]],
                rate, seconds, 7, str(workdir / "publisher.json"),
            )
        )  # fmt: skip
        log(f"two hops: publishing {rate:,.0f} obj/s for {seconds:g} s on G")
        publisher = child("_publisher", pub_config, workdir, "publisher")
        publisher.wait()
        sent = json.loads(Path(pub_config["result"]).read_text())
        sent_ns: dict[int, int] = {}
        for first, count, at, _ in sent["envelopes"]:
            for n in range(first, first + count):
                sent_ns[n] = at
        report.published = len(sent_ns)
        report.rate, report.seconds = report.published / sent["elapsed"], seconds
        # Drain: until K has every object (or it stops growing for 10 s).
        last, still = -1, time.monotonic()
        while time.monotonic() - still < 10:
            got = int(ask(subs["k"], "status")["received"])
            if got >= report.published:
                break
            if got != last:
                last, still = got, time.monotonic()
            time.sleep(0.2)
        for name, process in subs.items():
            ask(process, "stop")
            results = pickle.loads(Path(workdir / f"sub-{name}.pickle").read_bytes())[0]
            process.wait()
            numbers, arrived = results["numbers"], results["received_ns"]
            samples = [at - sent_ns[n] for n, at in zip(numbers, arrived, strict=True) if n in sent_ns]
            figures = lag(samples)
            figures["missing"] = len(set(sent_ns) - set(numbers))
            figures["duplicated"] = len(numbers) - len(set(numbers))
            if name == "k":
                report.two_hops = figures
            else:
                report.one_node = figures
        log(f"two hops: K received {report.two_hops.get('received')}, p99 {report.two_hops.get('p99_ms')} ms")


def _answers(port: int) -> bool:
    """Whether a node answers on this port (401 without a token: it is up)."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/taxii2/")
        status = conn.getresponse().status
        conn.close()
        return status == 401
    except OSError:
        return False


def render(r: Report) -> str:
    ratio = r.replicate_s / r.ingest_s if r.ingest_s else 0
    lines = [
        "## Federation (bench/federation.py)",
        "",
        f"Corpus: MITRE ATT&CK Enterprise, {r.corpus_objects:,} objects x {r.copies} collection(s), SQLite nodes on "
        "loopback.",
        "",
        "| figure | measured | baseline (same run) | ratio | target |",
        "|---|---:|---:|---:|---|",
        f"| hub -> peer replication from empty (peer add -> all stored) | {r.replicate_s:.2f} s | "
        f"single-node TAXII ingest {r.ingest_s:.2f} s | {ratio:.2f}x | <= 5 s |",
        f"| of which first version -> last | {r.replicate_first_to_last_s:.2f} s | | | |",
        f"| peer RSS before / max during catch-up | {r.peer_rss_before_mib:.0f} / {r.peer_rss_max_mib:.0f} MiB | | | |",
    ]
    for name, figures, base in (("two hops (G -> hub -> K)", r.two_hops, r.one_node),):
        lines.append(
            f"| live lag p50, {name}, {r.rate:,.0f} obj/s | {figures.get('p50_ms')} ms | "
            f"one node {base.get('p50_ms')} ms | | |"
        )
        lines.append(
            f"| live lag p99, {name} | {figures.get('p99_ms')} ms | one node {base.get('p99_ms')} ms | | <= 200 ms |"
        )
        lines.append(f"| live lag max, {name} | {figures.get('max_ms')} ms | one node {base.get('max_ms')} ms | | |")
        lines.append(
            f"| received / missing / duplicated at K | {figures.get('received')} / {figures.get('missing')} / "
            f"{figures.get('duplicated')} of {r.published} | G: {base.get('received')} / {base.get('missing')} / "
            f"{base.get('duplicated')} | | none lost |"
        )
    lines += [f"- note: {n}" for n in r.notes]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--relto", default=str(Path(sys.executable).with_name("relto")))
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--skip-corpus", action="store_true")
    parser.add_argument("--copies", type=int, default=1, help="ingest the corpus into this many collections")
    args = parser.parse_args()
    exit_on_sigterm()
    workdir = Path(tempfile.mkdtemp(prefix="relto-fed-bench-"))
    os.chmod(workdir, 0o700)
    report = Report()
    try:
        if not args.skip_corpus:
            corpus(args.relto, workdir, report, args.copies)
        two_hops(args.relto, workdir, report, args.rate, args.seconds)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2))


if __name__ == "__main__":
    main()
