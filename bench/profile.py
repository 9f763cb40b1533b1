"""Where each microsecond of a publish and a read goes: per-object costs by stage, this checkout beside another.

Run from the repository root:
    .venv/bin/python bench/profile.py [--baseline /path/to/other/checkout/.venv/bin/python] [--rounds 3]
                                      [--corpus small|attack|both] [--skip-http]

For each corpus (20,000 small indicators under 50 releasability markings, as bench/scale.py makes them; MITRE
ATT&CK Enterprise, 24,771 objects), on a fresh SQLite node each round:

1. in process (no HTTP): a GBR TOP SECRET party publishes the corpus in envelopes of 1,000, then reads it back in
   pages of 1,000 (an unrestricted reader, and on the small corpus a UKR SECRET reader who sees 10%). Each stage
   is timed by wrapping the function that does it (time.perf_counter around the call; the wrappers cost ~0.3 µs
   per call, so stages called per object carry that much); "other" is the rest of the total.
2. through HTTP: `relto serve` on loopback, the same envelopes POSTed and pages read with http.client; "HTTP and
   framework" is the difference between this per-object figure and the in-process total.

With --baseline, the same script runs under that interpreter (a venv with another checkout of relto installed,
e.g. the commit before a change) in alternating rounds, and each figure is printed beside its baseline: the
median over rounds, in µs per object (per object released, for reads). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gzip
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Envelope,
    TaxiiClient,
    bearer_auth,
    free_port,
    issue_token,
    log,
    relto_setup,
    serve_command,
    server,
)

ROOT = Path(__file__).resolve().parent.parent
ATTACK = ROOT.parent / "shared" / "data" / "enterprise-attack-18.1-stix21.json.gz"
SMALL_COUNT = 20_000
PAGE = 1000

PUBLISH_STAGES = [
    ("parse envelope (orjson)", "relto.taxii.envelopes", "parse_envelope"),
    ("STIX checks", "relto.node.publisher", "check_object"),
    ("markings and shape", "relto.node.markings", "MarkingResolver.for_object"),
    ("definitions", "relto.node.markings", "MarkingResolver.for_definition"),
    ("append: lookups and rows", "relto.store.appending", "Appending._append_in"),
    ("append: INSERT", "relto.store.sqlite", "SQLiteStore._insert_versions"),
    ("status", "relto.taxii.envelopes", "status"),
    ("decision log record", "relto.decisions", "DecisionLog.record"),
]
READ_STAGES = [
    ("SQL query and rows", "relto.store.reading", "Reading.read"),
    ("release (policy, trimming)", "relto.node.releaser", "Releaser.release"),
    ("envelope join", "relto.taxii.envelopes", "envelope"),
    ("decision log record", "relto.decisions", "DecisionLog.record"),
]
# Stages nested in others: their time is subtracted from the enclosing stage's.
NESTED = {"append: INSERT": "append: lookups and rows"}


# --- corpora ------------------------------------------------------------------------------------


def small_corpus() -> list[list[Any]]:
    import scale  # bench/scale.py: the same indicators and markings

    corpus = scale.generate(SMALL_COUNT, 7)
    return [orjson.loads(e.body)["objects"] for e in corpus.envelopes]


def attack_corpus() -> list[list[Any]]:
    with gzip.open(ATTACK) as f:
        objects = orjson.loads(f.read())["objects"]
    objects.sort(key=lambda o: o["type"] != "marking-definition")
    return [objects[i : i + PAGE] for i in range(0, len(objects), PAGE)]


# --- stage timers -------------------------------------------------------------------------------


class Timers:
    """Wraps functions by dotted name; accumulates seconds per stage while `active`."""

    def __init__(self) -> None:
        self.seconds: collections.Counter[str] = collections.Counter()
        self.active = False
        self.depth = 0  # wrapped calls under way: a commit inside one is that stage's, not counted apart

    def wrap(self, stage: str, module_name: str, qualname: str) -> None:
        import importlib

        try:
            owner: Any = importlib.import_module(module_name)
        except ImportError:
            return
        *path, name = qualname.split(".")
        for part in path:
            owner = getattr(owner, part, None)
            if owner is None:
                return
        original = getattr(owner, name, None)
        if original is None:
            return
        timers = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            if not timers.active:
                return original(*args, **kwargs)
            started = time.perf_counter()
            timers.depth += 1
            try:
                return original(*args, **kwargs)
            finally:
                timers.depth -= 1
                timers.seconds[stage] += time.perf_counter() - started

        setattr(owner, name, timed)  # for good: each round runs in a process of its own
        # Modules that imported the function by name keep their own reference: rebind those too.
        for other in list(sys.modules.values()):
            if other is None or not getattr(other, "__name__", "").startswith("relto"):
                continue
            if not path and getattr(other, name, None) is original:
                setattr(other, name, timed)

    def commit_timer(self, store: Any) -> None:
        """Time the end of each write transaction outside a wrapped stage: the COMMIT, and its fsync."""
        original = store._writing
        timers = self

        @contextlib.contextmanager
        def writing(*args: Any, **kwargs: Any) -> Iterator[Any]:
            transaction = original(*args, **kwargs)
            conn = transaction.__enter__()
            try:
                yield conn
            except BaseException:
                if not transaction.__exit__(*sys.exc_info()):
                    raise
                return
            started = time.perf_counter()
            transaction.__exit__(None, None, None)
            if timers.active and timers.depth == 0:
                timers.seconds["COMMIT (fsync)"] += time.perf_counter() - started

        store._writing = writing


# --- one measured round, in this interpreter ----------------------------------------------------


def in_process(kind: str) -> dict[str, float]:
    """One round: publish then read in process, per-stage µs per object."""
    from relto.admin import issue_token as issue
    from relto.domain.communities import default_communities
    from relto.domain.levels import DEFAULT_LEVELS
    from relto.node import Node
    from relto.store import open_store
    from relto.store.base import NodeInfo
    from relto.taxii import envelopes as taxii_envelopes
    from relto.taxii.filters import Filters

    envelopes = small_corpus() if kind == "small" else attack_corpus()
    bodies = [orjson.dumps({"objects": objects}) for objects in envelopes]
    count = sum(map(len, envelopes))
    timers = Timers()
    for stage, module, name in PUBLISH_STAGES + READ_STAGES:
        timers.wrap(stage, module, name)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="relto-profile-") as tmp:
        store = open_store(data=Path(tmp))
        store.initialise(NodeInfo(node_id="p", nation="GBR", levels=DEFAULT_LEVELS, title="p"), default_communities())
        node = Node(store)
        timers.commit_timer(store)
        gbr = node.authenticate(issue(store, nation="GBR", clearance="TOP SECRET", organisation="", name="p"))
        ukr = node.authenticate(issue(store, nation="UKR", clearance="SECRET", organisation="", name="p"))
        collection = node.add_collection("profile").id
        timers.active = True
        started = time.perf_counter()
        for body in bodies:
            status = node.publish(gbr, collection, taxii_envelopes.parse_envelope(body))
            if status["failure_count"]:
                raise SystemExit(f"publish failed: {status['failures'][:2]}")
        total = time.perf_counter() - started
        timers.active = False
        out.update(_per_object("publish", total, timers.seconds, count, PUBLISH_STAGES))
        readers = [("read", gbr)] + ([("read 10%", ukr)] if kind == "small" else [])
        for label, party in readers:
            _read_all(node, party, collection, Filters)  # warm
            timers.seconds.clear()
            timers.active = True
            started = time.perf_counter()
            released = _read_all(node, party, collection, Filters)
            total = time.perf_counter() - started
            timers.active = False
            out.update(_per_object(label, total, timers.seconds, released, READ_STAGES))
        timers.seconds.clear()
        node.close()
    return out


def _read_all(node: Any, party: Any, collection: str, filters: Any) -> int:
    from relto.taxii import envelopes as taxii_envelopes

    released, cursor = 0, None
    while True:
        page = node.read(party, collection, filters(limit=PAGE, next=cursor))
        taxii_envelopes.envelope(page.bodies, page.more, page.next)
        released += len(page.rows)
        if not page.more:
            return released
        cursor = page.next


def _per_object(
    what: str, total: float, seconds: collections.Counter[str], count: int, stages: list[tuple[str, str, str]]
) -> dict[str, float]:
    spent = dict(seconds)
    for inner, outer in NESTED.items():
        if inner in spent and outer in spent:
            spent[outer] -= spent[inner]
    out = {f"{what}: total (in process)": total / count * 1e6}
    named = 0.0
    for stage, _, _ in stages:
        if stage in spent:
            out[f"{what}: {stage}"] = spent[stage] / count * 1e6
            named += spent[stage]
    if "COMMIT (fsync)" in spent and what == "publish":
        out[f"{what}: COMMIT (fsync)"] = spent["COMMIT (fsync)"] / count * 1e6
        named += spent["COMMIT (fsync)"]
    out[f"{what}: other"] = (total - named) / count * 1e6
    return out


def over_http(kind: str, relto: str) -> dict[str, float]:
    """One round through `relto serve`: µs per object published and read."""
    envelopes = small_corpus() if kind == "small" else attack_corpus()
    batch = [Envelope(orjson.dumps({"objects": objects}), len(objects)) for objects in envelopes]
    count = sum(e.size for e in batch)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="relto-profile-http-") as tmp:
        where = ["--data", str(Path(tmp) / "node")]
        token, collection = relto_setup(relto, where)
        ukr = issue_token(relto, where, "UKR", "SECRET", read_only=True)
        port = free_port()
        log_path = Path(tmp) / "server.log"
        with server(serve_command(relto, where, port), log_path) as process:
            client = TaxiiClient(f"http://127.0.0.1:{port}", bearer_auth(token), 300)
            client.wait_ready(process, log_path)
            path = f"/api/collections/{collection}/objects/"
            started = time.perf_counter()
            for envelope in batch:
                client.post(path, envelope)
            out["publish: total (HTTP)"] = (time.perf_counter() - started) / count * 1e6
            readers = [("read", client)]
            if kind == "small":
                readers.append(("read 10%", TaxiiClient(f"http://127.0.0.1:{port}", bearer_auth(ukr), 300)))
            for label, reader in readers:
                _read_http(reader, path)  # warm
                started = time.perf_counter()
                released = _read_http(reader, path)
                out[f"{label}: total (HTTP)"] = (time.perf_counter() - started) / released * 1e6
                reader.close()
    return out


def _read_http(client: TaxiiClient, path: str) -> int:
    released, params = 0, {"limit": PAGE}
    while True:
        page = client.page(path, params)
        released += page.size
        if not page.more:
            return released
        params = {"limit": PAGE, "next": page.next or ""}


# --- driver -------------------------------------------------------------------------------------


def one_round(kind: str, http: bool) -> dict[str, float]:
    figures = in_process(kind)
    if http:
        relto = str(Path(sys.executable).with_name("relto"))
        figures.update(over_http(kind, relto))
        for what in ("publish", "read", "read 10%"):
            if f"{what}: total (HTTP)" in figures:
                figures[f"{what}: HTTP and framework"] = (
                    figures[f"{what}: total (HTTP)"] - figures[f"{what}: total (in process)"]
                )
    return figures


def run_round(python: str, kind: str, http: bool) -> dict[str, float]:
    command = [python, __file__, "--_round", kind] + ([] if http else ["--skip-http"])
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{python}: round failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def report(kind: str, rounds: dict[str, list[dict[str, float]]]) -> None:
    names = list(rounds["this"][0])
    baseline = "baseline" in rounds
    title = "MITRE ATT&CK Enterprise (24,771 objects)" if kind == "attack" else f"{SMALL_COUNT:,} small indicators"
    print(f"\n{title}: µs per object (median of {len(rounds['this'])} rounds)\n")
    head = f"| {'stage':<44} | {'this':>8} |" + (f" {'baseline':>8} | {'this/base':>9} |" if baseline else "")
    print(head)
    print("|" + "|".join("---" for _ in head.split("|")[1:-1]) + "|")
    for name in names:
        this = statistics.median(r[name] for r in rounds["this"] if name in r)
        line = f"| {name:<44} | {this:8.1f} |"
        if baseline:
            values = [r[name] for r in rounds["baseline"] if name in r]
            if values:
                base = statistics.median(values)
                ratio = f"{this / base:9.2f}" if base > 0.05 else f"{'':>9}"
                line += f" {base:8.1f} | {ratio} |"
            else:
                line += f" {'-':>8} | {'':>9} |"
        print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="python of a venv with another relto checkout installed")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--corpus", choices=["small", "attack", "both"], default="both")
    parser.add_argument("--skip-http", action="store_true", help="in-process stages only")
    parser.add_argument("--_round", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._round:
        print(json.dumps(one_round(args._round, not args.skip_http)))
        return 0
    kinds = ["small", "attack"] if args.corpus == "both" else [args.corpus]
    pythons = {"this": sys.executable} | ({"baseline": args.baseline} if args.baseline else {})
    for kind in kinds:
        rounds: dict[str, list[dict[str, float]]] = {name: [] for name in pythons}
        for number in range(1, args.rounds + 1):
            for name, python in pythons.items():  # alternating, so drifts in the machine's load hit both
                log(f"{kind}: round {number}/{args.rounds}, {name}")
                rounds[name].append(run_round(python, kind, not args.skip_http))
        report(kind, rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
