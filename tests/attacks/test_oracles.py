"""Class 4: nothing KOR receives — cursors, trimmed references, hidden relationships, answers — depends on what is
hidden from it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.attacks.conftest import (
    EPOCH,
    T0,
    T1,
    Node,
    decoded,
    identity,
    indicator,
    integers_in,
    is_object,
    marking,
    sdo,
    sid,
    tampered,
    without,
)

pytestmark = pytest.mark.slow

HIDDEN_WRITES = 20


def counts_hidden_writes(before: str, after: str) -> bool:
    """Whether a decoded number grew, between two of KOR's consecutive cursors, by GBR's hidden writes (plus KOR's
    own one)."""
    return any(HIDDEN_WRITES <= b - a <= HIDDEN_WRITES + 2 for a in integers_in(before) for b in integers_in(after))


def test_cursors_are_opaque_survive_a_restart_and_are_blind_to_hidden_writes(node: Node) -> None:
    """Class 4a (oracles): KOR pages through its own indicators, one per page, while GBR writes 20 GBR-only objects in
    between; KOR's `next` cursors and stream event ids must not spell a sequence nor let KOR count GBR's writes,
    and must still work after the server restarts."""
    kor_only = marking("UNCLASSIFIED", "KOR")
    mine = [indicator([kor_only], name=f"KOR {i}") for i in range(6)]
    cid = node.new_collection()
    one = {"match[type]": "indicator", "limit": "1"}

    node.post("KOR", cid, [kor_only, *mine[:3]])
    pages = [node.page("KOR", cid, one)]
    pages.append(node.page("KOR", cid, {**one, "next": pages[0]["next"]}))
    hidden = node.post("GBR", cid, [indicator(None, name=f"GBR {i}") for i in range(HIDDEN_WRITES)])
    assert len(hidden.raw["successes"]) == HIDDEN_WRITES, hidden.raw
    node.post("KOR", cid, [kor_only, *mine[3:]])
    while pages[-1].get("more"):
        pages.append(node.page("KOR", cid, {**one, "next": pages[-1]["next"]}))
    cursors: list[str] = [p["next"] for p in pages if p.get("more")]
    received = [o for p in pages for o in p.get("objects", [])]

    with node.stream("KOR", cid, {"added_after": EPOCH, "match[type]": "indicator"}) as events:
        seen = events.until(is_object(mine[-1]["id"]), "for KOR's last indicator")
    event_ids = [e.id or "" for e in seen if e.event == "object"]
    streamed = [e.data for e in seen if e.event == "object"]

    node.restart()
    resumed = node.page("KOR", cid, {**one, "next": cursors[1]})
    with node.stream("KOR", cid, {"match[type]": "indicator"}, **{"Last-Event-ID": event_ids[2]}) as events:
        after_restart = events.until(lambda e: e.event == "object", "after the restart")[-1]

    for c in cursors + event_ids:
        assert b"relto:" not in decoded(c), f"the cursor {c!r} decodes to {decoded(c)!r}"
    assert not counts_hidden_writes(cursors[2], cursors[3]), (cursors, [integers_in(c) for c in cursors])
    assert not counts_hidden_writes(event_ids[2], event_ids[3]), (event_ids, [integers_in(c) for c in event_ids])
    assert len({len(c) for c in cursors}) == 1, cursors
    assert len({len(c) for c in event_ids}) == 1, event_ids
    assert received == mine and streamed == mine
    assert resumed.get("objects") == [mine[2]], "a cursor issued before the restart no longer works"
    assert after_restart.data == mine[3], "a stream event id issued before the restart no longer works"


def test_a_tampered_cursor_is_refused(node: Node) -> None:
    """Class 4a (oracles): KOR changes one character of a `next` cursor or of a stream event id, to walk the node's
    sequence by itself; every changed cursor must be refused with 400."""
    kor_only = marking("UNCLASSIFIED", "KOR")
    mine = [indicator([kor_only]) for _ in range(3)]
    cid = node.new_collection()
    node.post("KOR", cid, [kor_only, *mine])
    one = {"match[type]": "indicator", "limit": "1"}
    cursor = node.page("KOR", cid, one)["next"]
    with node.stream("KOR", cid, {"added_after": EPOCH, "match[type]": "indicator"}) as events:
        event_id = events.until(is_object(mine[0]["id"]), "for KOR's first indicator")[-1].id or ""

    path = f"/api/collections/{cid}/objects/"
    taxii = {t: node.get("KOR", path, {**one, "next": t}).status_code for t in tampered(cursor)}
    stream = {t: node.stream_status("KOR", cid, {"after": t}) for t in tampered(event_id)}
    assert taxii and stream
    assert {t: s for t, s in taxii.items() if s != 400} == {}, f"changed `next` cursors accepted (was {cursor!r})"
    assert {t: s for t, s in stream.items() if s != 400} == {}, f"changed event ids accepted (was {event_id!r})"
    assert node.get("KOR", path, {**one, "next": cursor}).status_code == 200  # the cursor as issued works


def test_trimming_does_not_tell_whether_a_hidden_id_is_held(node: Node) -> None:
    """Class 4b (oracles): KOR's own report names GBR's GBR-only identity I, an id nobody holds, and an object of
    KOR's; if the node trimmed I alone from KOR's own report, KOR would learn that the node holds I."""
    gbr_only = marking("UNCLASSIFIED", "GBR")
    kor_only = marking("UNCLASSIFIED", "KOR")
    i = identity([gbr_only], name="GBR's source")
    cid = node.new_collection()
    node.post("GBR", cid, [gbr_only, i])
    own = identity([kor_only], name="KOR's source")
    report = sdo(
        "report", [kor_only], name="KOR's report", published=T0, object_refs=[i["id"], sid("identity"), own["id"]]
    )
    status = node.post("KOR", cid, [kor_only, own, report])
    assert status.stored(report["id"]), status.raw

    assert node.get_object("KOR", cid, report["id"]) == [report], "KOR's own report came back trimmed"
    assert node.read_id("KOR", cid, report["id"]) == [report]


def test_a_writers_own_relationship_to_a_hidden_id_is_not_hidden_from_it(node: Node) -> None:
    """Class 4c (oracles): KOR relates its own indicator to GBR's GBR-only identity I; if KOR's own relationship
    vanished from KOR's reads, KOR would learn that the node holds I."""
    gbr_only = marking("UNCLASSIFIED", "GBR")
    kor_only = marking("UNCLASSIFIED", "KOR")
    i = identity([gbr_only], name="GBR's source")
    cid = node.new_collection()
    node.post("GBR", cid, [gbr_only, i])
    own = indicator([kor_only])
    rel = sdo("relationship", [kor_only], relationship_type="attributed-to", source_ref=own["id"], target_ref=i["id"])
    status = node.post("KOR", cid, [kor_only, own, rel])
    assert status.stored(rel["id"]), status.raw

    assert node.get_object("KOR", cid, rel["id"]) == [rel], "KOR's own relationship is hidden from KOR"
    assert node.read_id("KOR", cid, rel["id"]) == [rel]


@pytest.mark.parametrize(
    ("shared_with_ukr", "kor_modified"),
    [(False, T0), (True, T1)],
    ids=["gbr-only-same-version", "gbr-and-ukr-newer-version"],
)
def test_an_id_hidden_from_a_writer_answers_and_reads_like_a_fresh_one(
    node: Node, shared_with_ukr: bool, kor_modified: str
) -> None:
    """Class 4d (oracles): KOR learned out of band the id of GBR's indicator H, hidden from KOR, and posts its own
    indicator under it: to learn from the answer that the node holds H, or to replace H for UKR."""
    gbr_m = marking("UNCLASSIFIED", "GBR", "UKR") if shared_with_ukr else marking("UNCLASSIFIED", "GBR")
    kor_m = marking("UNCLASSIFIED", "KOR", "UKR") if shared_with_ukr else marking("UNCLASSIFIED", "KOR")
    h = indicator([gbr_m], name="GBR's H")
    cid = node.new_collection()
    node.post("GBR", cid, [gbr_m, h])
    kors: dict[str, Any] = indicator([kor_m], id=h["id"], modified=kor_modified, name="KOR's")
    fresh = indicator([kor_m], modified=kor_modified, name="KOR's")
    answer = node.post("KOR", cid, [kor_m, kors])
    control = node.post("KOR", cid, [fresh])

    if shared_with_ukr:
        assert node.get_object("UKR", cid, h["id"]) == [h], "UKR receives KOR's object under GBR's id"
        assert node.read_id("UKR", cid, h["id"]) == [h]
    assert node.get_object("KOR", cid, h["id"]) == [kors], "KOR does not read back its own indicator"
    assert node.read_id("KOR", cid, h["id"]) == [kors]
    assert node.get_object("GBR", cid, h["id"], versions="all") == [h], "GBR's H changed"
    assert without(answer.entry(h["id"])[1], h["id"]) == without(control.entry(fresh["id"])[1], fresh["id"])
    assert answer.entry(h["id"])[0] == control.entry(fresh["id"])[0] == "success"
