"""The releaser on a real store: copy choice, trimmed references, withheld relationships."""

from __future__ import annotations

import gzip
from typing import Any

import orjson
import pytest

from relto.domain import redact
from relto.domain.levels import Ladder
from relto.domain.markings import releasability_marking
from relto.domain.parties import Party
from relto.domain.timestamps import parse_timestamp
from relto.node import Node
from relto.store.base import VersionQuery
from relto.taxii.filters import Filters
from tests.conftest import shared_data

LADDER = Ladder()
SECRET = LADDER.rank("SECRET")
GBR = Party(token_id=1, nation="GBR", clearance=SECRET, can_write=True)
USA = Party(token_id=2, nation="USA", clearance=SECRET, can_write=True)
KOR = Party(token_id=3, nation="KOR", clearance=SECRET, can_write=True)
WIDE = releasability_marking("UNCLASSIFIED", ["GBR", "KOR", "USA"], LADDER)
GBR_ONLY = releasability_marking("SECRET", ["GBR"], LADDER)
T0 = "2024-10-18T09:00:00.000Z"
T1 = "2024-10-19T09:00:00.000Z"


def sdo(kind: str, n: int, marking: dict[str, Any], **fields: Any) -> dict[str, Any]:
    uid = f"{kind}--00000000-0000-4000-8000-{n:012d}"
    base = {"type": kind, "spec_version": "2.1", "id": uid, "created": T0, "modified": T0}
    return {**base, "object_marking_refs": [marking["id"]], **fields}


def test_hidden_references_are_trimmed_and_relationships_withheld(node: Node) -> None:
    coll = node.add_collection("c").id
    secret_source = sdo("identity", 1, GBR_ONLY, name="a source", identity_class="individual")
    malware = sdo("malware", 2, WIDE, name="m", is_family=False, created_by_ref=secret_source["id"])
    tool = sdo("tool", 3, GBR_ONLY, name="t")
    uses = sdo("relationship", 4, WIDE, relationship_type="uses", source_ref=malware["id"], target_ref=tool["id"])
    status = node.publish(GBR, coll, [WIDE, GBR_ONLY, secret_source, malware, tool, uses])
    assert status["failure_count"] == 0, status
    page = node.read(KOR, coll, Filters(limit=100, types=("malware", "relationship")))
    assert [orjson.loads(b) for b in page.bodies] == [{k: v for k, v in malware.items() if k != "created_by_ref"}]
    gbr = node.read(GBR, coll, Filters(limit=100, types=("malware", "relationship")))
    assert [orjson.loads(b) for b in gbr.bodies] == [malware, uses]


def test_a_party_is_shown_one_copy_of_an_id(node: Node) -> None:
    coll = node.add_collection("c").id
    node.publish(GBR, coll, [WIDE])
    node.publish(USA, coll, [WIDE])
    every_copy = VersionQuery(collection=coll, visible=node.visible_sets(KOR), ids=(WIDE["id"],), versions=("all",))
    rows = node.store.read(every_copy)  # before release
    released = node.release(KOR, coll, rows)
    assert len(rows) == 2 and sum(b is not None for b in released) == 1


def test_hidden_verdicts_kept_between_reads_follow_every_new_or_deleted_version(node: Node) -> None:
    """The releaser keeps, per compiled view, which ids are hidden; a version stored or deleted since changes
    the answer at the next read: a reference that became hidden is never released from a stale verdict (and one
    that became visible is not kept hidden)."""
    coll = node.add_collection("c").id
    node.publish(GBR, coll, [WIDE, GBR_ONLY])
    source = sdo("identity", 1, GBR_ONLY, name="a source", identity_class="individual")
    malware = sdo("malware", 2, WIDE, name="m", is_family=False, created_by_ref=source["id"])
    node.publish(GBR, coll, [malware])

    def for_kor() -> dict[str, Any]:
        page = node.read(KOR, coll, Filters(limit=100, types=("malware",)))
        return dict(orjson.loads(page.bodies[0]))

    assert for_kor() == malware  # an id the node does not hold is not hidden
    assert for_kor() == malware  # (the verdict is kept)
    node.publish(GBR, coll, [source])  # now held, for GBR alone
    assert "created_by_ref" not in for_kor()
    wider = {**source, "modified": T1, "object_marking_refs": [WIDE["id"]]}
    node.publish(GBR, coll, [wider])  # a version KOR may see
    assert for_kor() == malware
    assert node.delete_object(GBR, coll, source["id"], Filters(limit=100, versions=(parse_timestamp(T1, "T1"),))) == 1
    assert "created_by_ref" not in for_kor()
    gbr = node.read(GBR, coll, Filters(limit=100, types=("malware",)))  # another view: its own verdicts
    assert [orjson.loads(b) for b in gbr.bodies] == [malware]


def test_a_page_past_many_withheld_versions_reads_on_in_one_larger_read(node: Node) -> None:
    """Nine in ten versions withheld from KOR: each page is still `limit` versions, in order, and is read in a
    couple of store reads rather than one per refill."""
    coll = node.add_collection("c").id
    hidden = sdo("tool", 1, GBR_ONLY, name="t")
    node.publish(GBR, coll, [WIDE, GBR_ONLY, hidden])
    shown = []
    for n in range(40):
        malware = sdo("malware", 100 + n, WIDE, name=f"m{n}", is_family=False)
        uses = [
            sdo(
                "relationship",
                1000 + 10 * n + k,
                WIDE,
                relationship_type="uses",
                source_ref=malware["id"],
                target_ref=hidden["id"],
            )
            for k in range(9)
        ]
        node.publish(GBR, coll, [malware, *uses])
        shown.append(malware["id"])
    reads = 0
    read = node.store.read

    def counted(query: VersionQuery) -> Any:
        nonlocal reads
        reads += 1
        return read(query)

    node.store.read = counted  # type: ignore[method-assign]
    pages, cursor = [], None
    while True:
        page = node.read(KOR, coll, Filters(limit=10, next=cursor, types=("malware", "relationship")))
        pages.append([r.stix_id for r in page.rows])
        if not page.more or page.next is None:
            break
        cursor = page.next
    assert [i for p in pages for i in p] == shown
    assert [len(p) for p in pages] == [10, 10, 10, 10, 0]  # the last withheld versions come after the 40th
    assert reads <= 2 * len(pages) + 1


def test_cutting_stored_bytes_releases_what_parsing_released_on_attack(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slice of ATT&CK Enterprise marked as bench/release.py marks it (half also for KOR, every relationship's
    description for USA alone): every page KOR and GBR read is the same, byte for byte, whether the release cuts
    the stored bytes or parses every version it trims (the path before the cut)."""
    everything = orjson.loads(gzip.decompress(shared_data("enterprise-attack-18.1-stix21.json.gz").read_bytes()))
    definitions = [o for o in everything["objects"] if o["type"] == "marking-definition"]
    mitre = [o for o in everything["objects"] if o["type"] == "identity"]  # named by every object; USA's alone
    objects = [o for o in everything["objects"] if o["type"] not in ("marking-definition", "identity")][::10]
    wide = releasability_marking("UNCLASSIFIED", ["GBR", "KOR", "USA"], LADDER)
    narrow = releasability_marking("SECRET", ["USA"], LADDER)
    for i, obj in enumerate(objects):
        obj["object_marking_refs"] = [*obj.get("object_marking_refs", []), *([wide["id"]] if i % 2 else [])]
        if obj["type"] == "relationship" and "description" in obj:
            obj["granular_markings"] = [{"selectors": ["description"], "marking_ref": narrow["id"]}]
    coll = node.add_collection("ATT&CK").id
    status = node.publish(USA, coll, [wide, narrow, *definitions, *mitre, *objects])
    assert status["failure_count"] == 0, status["failures"][:3]

    def pages(party: Party) -> list[bytes]:
        bodies, cursor = [], None
        while True:
            page = node.read(party, coll, Filters(limit=200, next=cursor))
            bodies.extend(page.bodies)
            if not page.more or page.next is None:
                return bodies
            cursor = page.next

    made = []
    real_cut = redact.cut
    with monkeypatch.context() as m:
        m.setattr(redact, "cut", lambda *a: made.append(r := real_cut(*a)) or r)
        cut = {party.nation: pages(party) for party in (KOR, GBR)}
    assert sum(done for done, _ in made) > 500  # most trimmed versions were cut, not parsed
    with monkeypatch.context() as m:
        m.setattr(redact, "cut", lambda *_: (False, None))
        parsed = {party.nation: pages(party) for party in (KOR, GBR)}
    assert cut == parsed
    assert 100 < len(cut["KOR"]) < len(objects) and any(b'"created_by_ref"' not in b for b in cut["KOR"])
