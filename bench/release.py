"""Release benchmark: what field markings and referential hiding cost on reads of MITRE ATT&CK Enterprise.

Run from the repository root:
    .venv/bin/python bench/release.py [--rounds 3]

In process (no HTTP, so the release step is not hidden behind the server): the corpus is published by USA,
every other object also released to KOR, and every relationship's description marked SECRET REL USA at field
level. Then the whole collection is read in 1,000-object pages:
- by USA, who sees every marking set (the fast path: only versions with field markings are looked at);
- by KOR, who sees about half: every page checks its references against the store, and relationships whose
  endpoints it may not see are withheld.
Each is measured with the release step and with it bypassed (the store's bodies returned as they are),
alternating, in the same run. The figure is the ratio of whole-collection read times, without / with
(1.0: releasing costs nothing; 0.5: reads take twice as long).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import load_objects, log

from relto.domain.markings import releasability_marking
from relto.node import Node
from relto.settings import Settings
from relto.store import open_store
from relto.taxii.filters import Filters

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "enterprise-attack-18.1-stix21.json.gz"


def prepare(folder: Path) -> tuple[Node, Any, Any, str]:
    init = [sys.executable, "-m", "relto", "init", "--data", str(folder), "--nation", "USA"]
    subprocess.run(init, check=True, capture_output=True)
    node = Node(open_store(data=folder), Settings(decision_log=0))
    usa_token = _token(node, "USA")
    kor_token = _token(node, "KOR")
    usa, kor = node.authenticate(usa_token), node.authenticate(kor_token)
    coll = node.add_collection("ATT&CK").id
    wide = releasability_marking("UNCLASSIFIED", ["KOR", "USA"], node.ladder)
    narrow = releasability_marking("SECRET", ["USA"], node.ladder)
    objects = load_objects(CORPUS)
    for i, obj in enumerate(objects):
        if obj["type"] == "marking-definition":
            continue
        if i % 2 == 0:
            obj["object_marking_refs"] = [*obj.get("object_marking_refs", []), wide["id"]]
        if obj["type"] == "relationship" and "description" in obj:
            obj["granular_markings"] = [{"selectors": ["description"], "marking_ref": narrow["id"]}]
    node.publish(usa, coll, [wide, narrow])
    started = time.perf_counter()
    for start in range(0, len(objects), 1000):
        status = node.publish(usa, coll, objects[start : start + 1000])
        if status["failure_count"]:
            raise SystemExit(f"publish failed: {status['failures'][:3]}")
    log(f"published {len(objects):,} objects in {time.perf_counter() - started:.1f} s")
    return node, usa, kor, coll


def _token(node: Node, nation: str) -> str:
    from relto.admin import issue_token

    return issue_token(node.store, nation=nation, clearance="SECRET", organisation="", name="bench")


def read_all(node: Node, party: Any, coll: str) -> tuple[float, int]:
    started = time.perf_counter()
    count = 0
    cursor: str | None = None
    while True:
        page = node.read(party, coll, Filters(limit=1000, next=cursor))
        count += len(page.rows)
        if not page.more or page.next is None:
            break
        cursor = page.next
    return time.perf_counter() - started, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per reader (median reported)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="relto-bench-release-") as tmp:
        node, usa, kor, coll = prepare(Path(tmp))
        release = node.release
        bypass = lambda _party, _coll, versions, _at=None: [v.body for v in versions]  # noqa: E731
        print(f"{'reader':<8} {'released':>9} {'stored':>7} {'with (s)':>9} {'without (s)':>12} {'ratio':>6}")
        for name, party in (("USA", usa), ("KOR", kor)):
            timings: dict[str, list[float]] = {"with": [], "without": []}
            counts: dict[str, int] = {}
            for _ in range(args.rounds):
                for mode in ("with", "without"):
                    node.release = release if mode == "with" else bypass  # type: ignore[method-assign]
                    seconds, count = read_all(node, party, coll)
                    timings[mode].append(seconds)
                    counts[mode] = count
            node.release = release  # type: ignore[method-assign]
            with_s, without_s = statistics.median(timings["with"]), statistics.median(timings["without"])
            print(
                f"{name:<8} {counts['with']:>9,} {counts['without']:>7,} {with_s:>9.2f} {without_s:>12.2f} "
                f"{without_s / with_s:>6.2f}"
            )
        node.store.close()


if __name__ == "__main__":
    main()
