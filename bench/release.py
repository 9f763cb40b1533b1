"""Release benchmark: what field markings and referential hiding cost on reads of MITRE ATT&CK Enterprise.

Run from the repository root:
    .venv/bin/python bench/release.py [--rounds 5] [--before ../wt-before]

In process (no HTTP, so the release step is not hidden behind the server): the corpus is published by USA,
every other object also released to KOR, and every relationship's description marked SECRET REL USA at field
level. Then the whole collection is read in 1,000-object pages:
- by USA, who sees every marking set (the fast path: only versions with field markings are looked at);
- by KOR, who sees about half: every page checks its references against the store, and relationships whose
  endpoints it may not see are withheld.
Each is measured with the release step and with it bypassed (the store's bodies returned as they are),
alternating, in the same run. The figure is the ratio of whole-collection read times, with / without (1.0:
releasing costs nothing; 2.0: reads take twice as long): of the medians, of the best rounds ("best"), and of
the best rounds' CPU time ("cpu": the least disturbed by other work on a shared machine). KOR's is the worst
case (issue 16, target 4: <= 1.5). `--before DIR` first runs this same bench on the code of another checkout
(its src, through its own .venv), for a before figure from the same run.
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


def read_all(node: Node, party: Any, coll: str) -> tuple[float, float, int, int]:
    """Read the whole collection in pages of 1,000: (seconds, CPU seconds, versions released, pages)."""
    started, cpu = time.perf_counter(), time.process_time()
    count = pages = 0
    cursor: str | None = None
    while True:
        page = node.read(party, coll, Filters(limit=1000, next=cursor))
        count += len(page.rows)
        pages += 1
        if not page.more or page.next is None:
            break
        cursor = page.next
    return time.perf_counter() - started, time.process_time() - cpu, count, pages


def measure(node: Node, party: Any, coll: str, rounds: int) -> dict[str, Any]:
    """Whole-collection reads with the release step and with it bypassed, alternating."""
    release = node.release
    bypass = lambda _party, _coll, versions, _at=None: [v.body for v in versions]  # noqa: E731
    wall: dict[str, list[float]] = {"with": [], "without": []}
    cpu: dict[str, list[float]] = {"with": [], "without": []}
    counts: dict[str, tuple[int, int]] = {}
    for _ in range(rounds):
        for mode in ("with", "without"):
            node.release = release if mode == "with" else bypass  # type: ignore[method-assign]
            seconds, cpu_seconds, count, pages = read_all(node, party, coll)
            wall[mode].append(seconds)
            cpu[mode].append(cpu_seconds)
            counts[mode] = (count, pages)
    node.release = release  # type: ignore[method-assign]
    return {"wall": wall, "cpu": cpu, "counts": counts}


def report(name: str, m: dict[str, Any]) -> float:
    """Print one reader's line; return its trimmed / untrimmed ratio (of the medians)."""
    with_s, without_s = (statistics.median(m["wall"][k]) for k in ("with", "without"))
    best = min(m["wall"]["with"]) / min(m["wall"]["without"])
    cpu = min(m["cpu"]["with"]) / min(m["cpu"]["without"])
    (released, pages), (stored, stored_pages) = m["counts"]["with"], m["counts"]["without"]
    print(
        f"{name:<6} {released:>9,} {stored:>7,} {with_s * 1000:>9.0f} {without_s * 1000:>11.0f} "
        f"{with_s * 1000 / pages:>9.1f} {without_s * 1000 / stored_pages:>12.1f} "
        f"{with_s / without_s:>8.2f} {best:>6.2f} {cpu:>6.2f}"
    )
    return with_s / without_s


def before(checkout: Path, rounds: int) -> str:
    """This bench run on the code of another checkout (its src, through its own venv)."""
    python = checkout / ".venv" / "bin" / "python"
    done = subprocess.run(
        [str(python), __file__, "--rounds", str(rounds)], cwd=checkout, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"the bench on {checkout} failed: {done.stderr[-2000:]}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per reader (median reported)")
    parser.add_argument("--before", type=Path, help="a checkout (with .venv) of earlier code: measured first")
    args = parser.parse_args()
    if args.before:
        log(f"the same bench on {args.before} ...")
        print(f"before ({args.before}):")
        print(before(args.before, args.rounds).rstrip())
        print("now:")
    with tempfile.TemporaryDirectory(prefix="relto-bench-release-") as tmp:
        node, usa, kor, coll = prepare(Path(tmp))
        print(
            f"{'reader':<6} {'released':>9} {'stored':>7} {'with (ms)':>9} {'without (ms)':>11} "
            f"{'ms/page':>9} {'ms/page w/o':>12} {'with/w/o':>8} {'best':>6} {'cpu':>6}"
        )
        ratios = {
            name: report(name, measure(node, party, coll, args.rounds)) for name, party in (("USA", usa), ("KOR", kor))
        }
        node.store.close()
    verdict = "met" if ratios["KOR"] <= 1.5 else "not met"
    print(f"worst case (KOR): a trimmed read costs {ratios['KOR']:.2f}x an untrimmed one (target <= 1.5: {verdict})")


if __name__ == "__main__":
    main()
