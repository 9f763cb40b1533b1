"""What the trust checks cost the publish path (issue 9): ingest with and without them, in one run.

Run from the repository root:
    .venv/bin/python bench/trust.py [--rounds 3]

In process (no HTTP), each round on fresh SQLite databases, alternating: the node as it is ("checked"), and the
same node with the ownership gate and the observable id check switched off ("unchecked"). Two corpora: MITRE
ATT&CK Enterprise (24,771 objects, SDOs and relationships) and 20,000 small observables (ipv4-addr with their
STIX UUIDv5 ids) published by two nations, half of them the same values (copies). Prints the median ingest
rate of each and the ratio; the target is checked >= 0.9x unchecked. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

import relto.domain.stix as stix
from relto.admin import issue_token
from relto.domain.communities import default_communities
from relto.domain.levels import DEFAULT_LEVELS, Ladder
from relto.domain.markings import releasability_marking
from relto.node import Node
from relto.store import open_store
from relto.store.base import NodeInfo

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "enterprise-attack-18.1-stix21.json.gz"
STIX_NAMESPACE = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")


def attack() -> list[Any]:
    with gzip.open(CORPUS) as f:
        objects = orjson.loads(f.read())["objects"]
    return sorted(objects, key=lambda o: o["type"] != "marking-definition")


def observables(count: int) -> list[Any]:
    marking = releasability_marking("UNCLASSIFIED", ["NATO"], Ladder())
    out: list[Any] = [marking]
    for i in range(count):
        value = f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"
        key = orjson.dumps({"value": value}).decode()
        out.append(
            {
                "type": "ipv4-addr",
                "spec_version": "2.1",
                "id": f"ipv4-addr--{uuid.uuid5(STIX_NAMESPACE, key)}",
                "value": value,
                "object_marking_refs": [marking["id"]],
            }
        )
    return out


@contextmanager
def unchecked(node: Node) -> Iterator[None]:
    """The node without the ownership gate and the observable id check."""
    gate, mismatch = node.markings.gate, stix.id_mismatch
    node.markings.gate = lambda _party: None  # type: ignore[assignment,method-assign,return-value]
    stix.id_mismatch = lambda _obj: None
    try:
        yield
    finally:
        node.markings.gate = gate  # type: ignore[method-assign]
        stix.id_mismatch = mismatch


def ingest(objects: list[Any], nations: tuple[str, ...], checks: bool) -> float:
    """Objects per second published into a fresh node, each nation posting the whole list in 1,000s."""
    with tempfile.TemporaryDirectory(prefix="relto-bench-trust-") as tmp:
        store = open_store(data=Path(tmp))
        store.initialise(NodeInfo(node_id="b", nation="GBR", levels=DEFAULT_LEVELS, title="b"), default_communities())
        node = Node(store)
        parties = [
            node.authenticate(issue_token(store, nation=n, clearance="SECRET", organisation="", name="b"))
            for n in nations
        ]
        coll = node.add_collection("bench").id
        context = contextmanager(lambda: (yield))() if checks else unchecked(node)
        with context:
            started = time.perf_counter()
            for party in parties:
                for i in range(0, len(objects), 1000):
                    status = node.publish(party, coll, objects[i : i + 1000])
                    if status["failure_count"]:
                        raise SystemExit(f"publish failed: {status['failures'][:2]}")
            elapsed = time.perf_counter() - started
        node.close()
    return len(objects) * len(parties) / elapsed


def median_rates(run: Callable[[bool], float], rounds: int) -> tuple[float, float]:
    rates: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for checks in (True, False):
            rates[checks].append(run(checks))
    return statistics.median(rates[True]), statistics.median(rates[False])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median reported)")
    args = parser.parse_args()
    corpora = {
        "ATT&CK Enterprise": (attack(), ("USA",)),
        "20,000 observables x2 nations": (observables(20_000), ("GBR", "KOR")),
    }
    print(f"{'corpus':<32} {'checked obj/s':>14} {'unchecked obj/s':>16} {'ratio':>6}")
    for name, (objects, nations) in corpora.items():
        print(f"measuring {name} ...", file=sys.stderr)
        checked, plain = median_rates(lambda checks, o=objects, n=nations: ingest(o, n, checks), args.rounds)
        verdict = "PASS" if checked >= 0.9 * plain else "FAIL"
        print(f"{name:<32} {checked:>14,.0f} {plain:>16,.0f} {checked / plain:>6.2f}  (target >= 0.90) {verdict}")


if __name__ == "__main__":
    main()
