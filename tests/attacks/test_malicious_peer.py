"""A malicious peer, in process: KOR's node (it speaks for KOR alone) hand-crafts federation documents and feeds
them to GBR's node's receive path. Whatever it sends, GBR's node must store only KOR's versions in KOR's copy,
keep GBR's objects and definitions as GBR made them, count what it refuses, and never stop or half-apply a batch.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from relto.domain.errors import InvalidRequest
from relto.domain.parties import Party
from relto.domain.timestamps import now_micros
from relto.node import Node
from relto.store.base import PeerRecord
from relto.taxii.filters import Filters
from tests.attacks.conftest import acs_marking
from tests.conftest import make_node
from tests.federation.test_feed import T0, T1, everything, mark, report, writer

KOR_NODE = str(uuid.uuid4())


@pytest.fixture
def gbr(tmp_path: Path) -> Iterator[Node]:
    """GBR's node (the victim), following KOR's node as peer `kor` (it speaks for KOR, its own nation)."""
    node = make_node(tmp_path, "GBR", node_id=str(uuid.uuid4()))
    node.store.add_peer(PeerRecord(name="kor", url="http://kor.invalid", token="rt_x", created=now_micros()))
    yield node
    node.close()


def peer(node: Node) -> PeerRecord:
    found = node.store.peer("kor")
    assert found is not None
    return found


def version(collection: str, obj: Any, originator: str = "KOR", path: Any = None) -> dict[str, Any]:
    """One version event as a feed carries it."""
    stix_id = obj.get("id") if isinstance(obj, dict) else None
    return {
        "c": collection,
        "id": stix_id,
        "o": originator,
        "p": [KOR_NODE] if path is None else path,
        "t": 1,
        "obj": obj,
    }


def document(events: list[Any], definitions: list[Any] | None = None, **extra: Any) -> dict[str, Any]:
    doc = {
        "node": {"id": KOR_NODE, "nation": "KOR", "title": "KOR's node"},
        "collections": [],
        "definitions": definitions or [],
        "events": events,
        "next": f"cursor-{uuid.uuid4()}",
        "more": False,
    }
    doc.update(extra)
    return doc


def reader(nation: str) -> Party:
    return Party(token_id=0, nation=nation, clearance=3)


def rows_of(node: Node, collection: str, stix_id: str) -> list[tuple[str, str]]:
    """(originator, name) of every stored version of an id, whoever may read it."""
    out = []
    for nation in ("GBR", "KOR", "FRA", "USA"):
        page = node.read(reader(nation), collection, Filters(limit=100), versions=("all",))
        for r, body in zip(page.rows, page.bodies, strict=True):
            if r.stix_id == stix_id:
                out.append((r.originator, orjson.loads(body).get("name", "")))
    return sorted(set(out))


def names(node: Node, collection: str, nation: str) -> set[str]:
    return {b.get("name") for b in everything(node, collection, nation).values() if b["type"] != "marking-definition"}


def test_a_version_of_another_originator_is_refused_and_counted(gbr: Node) -> None:
    """(a) KOR's node delivers a version claiming GBR as its originator (to plant a 'GBR' object on GBR's node)."""
    col = gbr.add_collection("intel").id
    rel = mark("SECRET", "GBR", "KOR")
    forged = report("GBR's? no: KOR's", rel["id"])
    outcome, _, _ = gbr.federation.receive(
        peer(gbr), document([version(col, rel, "GBR"), version(col, forged, "GBR"), version(col, forged, "USA")])
    )
    assert (outcome.received, outcome.refused) == (0, 3)
    assert "GBR" in (outcome.last_refusal or "") or "USA" in (outcome.last_refusal or "")
    assert names(gbr, col, "GBR") == set()
    after = peer(gbr)
    assert after.refused == 3 and "not among the nations this peer speaks for" in (after.last_refusal or "")


def test_a_definition_claiming_to_be_gbrs_is_ignored(gbr: Node) -> None:
    """(b) GBR's ACS definition D means 'GBR only'. KOR's node sends D's id as GBR's definition with a meaning that
    releases to everyone, and KOR's own version of D's id; GBR's objects marked D must stay GBR-only."""
    col = gbr.add_collection("intel").id
    d = acs_marking("U")  # originator only
    secret = report("GBR only", d["id"])
    assert gbr.publish(writer(gbr, "GBR"), col, [d, secret])["failure_count"] == 0
    wide = acs_marking("U", ["GBR", "KOR", "FRA", "USA"], id_=d["id"])
    kors = report("KOR's, under KOR's D", d["id"])
    doc = document(
        [version(col, wide), version(col, kors)],
        definitions=[{"o": "GBR", "d": wide}, {"o": "KOR", "d": wide}],
    )
    outcome, _, _ = gbr.federation.receive(peer(gbr), doc)
    assert outcome.received == 2, outcome  # KOR's own definition and report, in KOR's copy
    # GBR's definition is unchanged, and still the one GBR's objects are read under.
    copies = {c.originator: orjson.loads(c.body) for c in gbr.store.definitions([d["id"]])}
    assert copies["GBR"] == d and copies["KOR"] == wide
    for nation in ("FRA", "USA", "KOR"):
        assert "GBR only" not in names(gbr, col, nation), nation
    assert "KOR's, under KOR's D" in names(gbr, col, "FRA")  # KOR's object, read under KOR's meaning
    assert names(gbr, col, "GBR") >= {"GBR only"}


@pytest.mark.parametrize("gbr_shares_with_kor", [False, True], ids=["hidden-from-kor", "rel-to-kor"])
def test_a_kor_version_of_an_id_gbr_owns_goes_only_into_kors_copy(gbr: Node, gbr_shares_with_kor: bool) -> None:
    """(c) GBR owns indicator X on its node; KOR's node delivers a newer KOR version of X's id, REL TO everyone.
    GBR's readers must still see GBR's X, and no version of GBR's copy may change."""
    col = gbr.add_collection("intel").id
    own = mark("SECRET", "GBR", "KOR") if gbr_shares_with_kor else mark("SECRET", "GBR")
    x = report("GBR's X", own["id"])
    assert gbr.publish(writer(gbr, "GBR"), col, [own, x])["failure_count"] == 0
    everyone = mark("SECRET", "GBR", "KOR", "FRA")
    takeover = {**x, "modified": T1, "name": "KOR's takeover", "object_marking_refs": [everyone["id"]]}
    doc = document([version(col, everyone), version(col, takeover)], definitions=[{"o": "KOR", "d": everyone}])
    outcome, _, _ = gbr.federation.receive(peer(gbr), doc)
    assert outcome.received == 2, outcome  # stored, as KOR's: a peer speaks for its originators (no gate)

    stored = rows_of(gbr, col, x["id"])
    assert ("GBR", "GBR's X") in stored
    assert all(name == "GBR's X" for originator, name in stored if originator == "GBR"), stored
    assert all(originator == "KOR" for originator, name in stored if name == "KOR's takeover"), stored
    gbr_reads = everything(gbr, col, "GBR")
    assert gbr_reads.get((x["id"], T0)) == x
    assert all(b.get("name") != "KOR's takeover" for b in gbr_reads.values()), "GBR reads KOR's version of its X"
    assert ("KOR", "KOR's takeover") in stored
    assert "GBR's X" not in names(gbr, col, "FRA")  # GBR's copy did not widen to KOR's readers


def test_a_deletion_of_gbrs_version_is_ignored(gbr: Node) -> None:
    """(d) KOR's node deletes GBR's X: once naming GBR as the originator, once as its own deletion of X's id."""
    col = gbr.add_collection("intel").id
    own = mark("SECRET", "GBR", "KOR")
    x = report("GBR's X", own["id"])
    assert gbr.publish(writer(gbr, "GBR"), col, [own, x])["failure_count"] == 0
    deletions = [
        {"c": col, "id": x["id"], "o": "GBR", "deleted": True, "v": T0},
        {"c": col, "id": x["id"], "o": "KOR", "deleted": True, "v": T0},
        {"c": col, "id": x["id"], "o": "KOR", "deleted": True, "v": ""},
        {"c": col, "id": own["id"], "o": "KOR", "deleted": True, "v": ""},
    ]
    outcome, _, _ = gbr.federation.receive(peer(gbr), document(deletions))
    assert outcome.refused == 1  # the one naming GBR
    for nation in ("GBR", "KOR"):
        assert everything(gbr, col, nation).get((x["id"], T0)) == x, nation


MALFORMED_DOCUMENTS: list[Any] = [
    {},
    {"node": "KOR", "events": [], "next": "", "more": False},
    {"node": {"id": KOR_NODE}, "events": [], "next": "", "more": False},
    {"node": {"id": KOR_NODE, "nation": "KOR"}, "events": 5, "next": "", "more": False},
    [],
    None,
]


@pytest.mark.parametrize("doc", MALFORMED_DOCUMENTS, ids=range(len(MALFORMED_DOCUMENTS)))
def test_a_document_that_is_not_a_feed_is_refused_whole(gbr: Node, doc: Any) -> None:
    """(e) The document itself is malformed: InvalidRequest (the sync records it and retries), nothing stored."""
    before = peer(gbr)
    with pytest.raises(InvalidRequest):
        gbr.federation.receive(before, doc)
    assert peer(gbr) == before


def test_malformed_events_are_refused_entries_and_the_rest_is_stored(gbr: Node) -> None:
    """(e) Non-dict events, objects that are not STIX, wrong types everywhere: each is a refused entry, the good
    versions of the same batch are stored, and the cursor moves on (one bad entry must not wedge the peer)."""
    col = gbr.add_collection("intel").id
    rel = mark("SECRET", "GBR", "KOR")
    good = report("good", rel["id"])
    late = report("after the junk", rel["id"])
    no_id = {k: v for k, v in report("no id", rel["id"]).items() if k != "id"}
    junk: list[Any] = [
        "a string",
        42,
        None,
        ["a", "list"],
        {"c": col, "o": "KOR", "p": [KOR_NODE]},  # no object
        version(col, "not an object"),
        version(col, ["a", "list"]),
        version(col, no_id),
        version(col, {**report("bad type", rel["id"]), "type": "Not A Type"}),
        version(col, {**report("bad time", rel["id"]), "modified": "yesterday"}),
        version(col, report("unknown marking", f"marking-definition--{uuid.uuid4()}")),
        version(col, {**report("bad refs", rel["id"]), "object_marking_refs": "nope"}),
        {**version(col, report("bad collection", rel["id"])), "c": ["x"]},
        {**version(col, report("unhashable originator", rel["id"])), "o": ["KOR"]},
        {**version(col, report("dict path", rel["id"])), "p": {"a": 1}},
        version(col, {**report("bad granular", rel["id"]), "granular_markings": "x"}),
        version(col, {**report("bad selectors", rel["id"]), "granular_markings": [{"selectors": 5}]}),
        version(col, {**report("bad selector", rel["id"]), "granular_markings": [{"selectors": ["no.such[9]"]}]}),
        version(col, {**report("granular no ref", rel["id"]), "granular_markings": [{"selectors": ["name"]}]}),
        version(col, {**report("spec", rel["id"]), "spec_version": 2.1}),
    ]
    doc = document(
        [version(col, rel), version(col, good), *junk, version(col, late)], definitions=[{"o": "KOR", "d": rel}]
    )
    outcome, cursor, _ = gbr.federation.receive(peer(gbr), doc)
    assert names(gbr, col, "KOR") == {"good", "after the junk"}
    assert outcome.received == 3  # the definition and the two reports
    assert outcome.refused + outcome.looped == len(junk)
    assert peer(gbr).cursor == cursor == doc["next"]


def test_a_junk_collection_list_creates_nothing_odd(gbr: Node) -> None:
    """(e) The document's collection list is junk or names ids that are not collection ids."""
    before = {c.id for c in gbr.collections()}
    junk = [5, None, "x", {"id": 7}, {"id": "../../etc"}, {"id": "x" * 10000}, {"title": "no id"}]
    gbr.federation.receive(peer(gbr), document([], collections=junk))
    made = {c.id for c in gbr.collections()} - before
    assert all(_is_uuid(c) for c in made), made


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def test_a_version_whose_path_names_the_receiver_is_not_stored(gbr: Node) -> None:
    """(f) A path that already went through this node (a ring, or a forged path): not stored again."""
    col = gbr.add_collection("intel").id
    rel = mark("SECRET", "GBR", "KOR")
    me = gbr.info.node_id
    looped = report("looped", rel["id"])
    forged = report("forged path", rel["id"])
    doc = document(
        [
            version(col, rel),
            version(col, report("control", rel["id"])),
            version(col, looped, path=[KOR_NODE, me]),
            version(col, forged, path=[me]),
            version(col, report("no path", rel["id"]), path="not a list"),
        ],
        definitions=[{"o": "KOR", "d": rel}],
    )
    outcome, _, _ = gbr.federation.receive(peer(gbr), doc)
    assert outcome.looped == 3
    assert names(gbr, col, "KOR") == {"control"}
