"""The facade's exits that are not TAXII pages: the live stream reads and records through the Node."""

from __future__ import annotations

from typing import Any

from relto.domain.levels import Ladder
from relto.domain.markings import releasability_marking
from relto.domain.parties import Party
from relto.node import Node

LADDER = Ladder()
GBR = Party(token_id=1, nation="GBR", clearance=LADDER.rank("SECRET"), can_write=True)
KOR = Party(token_id=3, nation="KOR", clearance=LADDER.rank("SECRET"), can_write=True)
WIDE = releasability_marking("UNCLASSIFIED", ["GBR", "KOR", "USA"], LADDER)
GBR_ONLY = releasability_marking("SECRET", ["GBR"], LADDER)
T0 = "2024-10-18T09:00:00.000Z"


def tool(n: int, marking: dict[str, Any]) -> dict[str, Any]:
    uid = f"tool--00000000-0000-4000-8000-{n:012d}"
    return {
        "type": "tool",
        "spec_version": "2.1",
        "id": uid,
        "created": T0,
        "modified": T0,
        "name": f"t{n}",
        "object_marking_refs": [marking["id"]],
    }


def test_the_stream_reads_and_records_through_the_node(node: Node) -> None:
    coll = node.add_collection("c").id
    start = node.head()
    node.publish(GBR, coll, [WIDE, GBR_ONLY, tool(3, GBR_ONLY), tool(5, WIDE)])
    everything, _ = node.tail(coll, start, 100)
    for_kor, covered = node.catch_up(KOR, coll, start, 100)
    assert covered == node.head() and len(for_kor) < len(everything)
    before = node.decisions.pending
    released = node.stream_release(KOR, coll, for_kor)
    assert all(b is not None for b in released)
    assert node.decisions.pending == before + 1
    node.decisions.flush()
    last = node.store.decisions(newest=True, limit=1)[0]
    assert last.path == "stream" and last.nation == "KOR"
