"""Classes 1 and 5: a marking's meaning cannot be forged, squatted, probed, or lost in a combination."""

from __future__ import annotations

import pytest

from tests.attacks.conftest import (
    Node,
    acs_marking,
    indicator,
    marking,
    sid,
    statement_marking,
    without,
)

pytestmark = pytest.mark.slow


def ids_received(node: Node, who: str, collection: str) -> set[str]:
    return {o["id"] for o in node.read(who, collection)}


@pytest.mark.parametrize("gbr_sends_definition", [False, True], ids=["gbr-names-the-id", "gbr-sends-the-definition"])
def test_forged_relto_definition_is_refused(node: Node, gbr_sends_definition: bool) -> None:
    """Class 1a (marking definitions): KOR posts, under the id of GBR's SECRET (or CONFIDENTIAL) REL TO GBR marking, a
    definition saying UNCLASSIFIED REL TO GBR, KOR, so that GBR's objects marked with that id flow to KOR."""
    # Each variant forges a marking no other test uses, so the node has never seen the real one before.
    real = marking("CONFIDENTIAL" if gbr_sends_definition else "SECRET", "GBR")
    forged = {**marking("UNCLASSIFIED", "GBR", "KOR"), "id": real["id"]}
    cid = node.new_collection()

    attack = node.post("KOR", cid, [forged])
    first = indicator([real], name="GBR eyes only (1)")
    later = indicator([real], name="GBR eyes only (2)")
    with_definition = node.post("GBR", cid, [real, first] if gbr_sends_definition else [first])
    by_reference = node.post("GBR", cid, [later])

    gbr_objects = {first["id"], later["id"]}
    assert not ids_received(node, "KOR", cid) & gbr_objects, "KOR received GBR's indicator through a forged marking"
    for o in (first, later):
        assert node.get_object("KOR", cid, o["id"]) == [], "KOR read GBR's indicator through a forged marking"
    for who in ("GBR", "KOR"):
        for got in node.read_id(who, cid, real["id"], versions="all"):
            assert got["extensions"] == real["extensions"], f"{who} reads a definition its id does not say: {got}"
    assert "uuidv5" in attack.failure(real["id"])["message"].lower()
    if gbr_sends_definition:
        assert with_definition.stored(real["id"]) and with_definition.stored(first["id"]), with_definition.raw
        assert by_reference.stored(later["id"]), by_reference.raw


@pytest.mark.parametrize("squat", ["acs", "statement"])
def test_a_definition_id_taken_first_stays_the_owners(node: Node, squat: str) -> None:
    """Class 1b (marking definitions): KOR first posts its own definition under the id D that GBR uses (an ACS marking
    releasable to KOR, GBR, UKR, or a plain statement); GBR's objects marked with its own D must stay GBR's."""
    d = sid("marking-definition")
    squatter = acs_marking("U", ["KOR", "GBR", "UKR"], id_=d) if squat == "acs" else statement_marking("KOR", id_=d)
    own = acs_marking("S", ["GBR"], id_=d)
    cid = node.new_collection()

    squatted = node.post("KOR", cid, [squatter])
    assert squatted.stored(d), squatted.raw
    g1 = indicator([own], name="GBR (same envelope as D)")
    together = node.post("GBR", cid, [own, g1])
    g2 = indicator([own], name="GBR (D by reference)")
    by_reference = node.post("GBR", cid, [g2])
    redefined = node.post("GBR", cid, [acs_marking("U", ["GBR", "KOR"], id_=d)])
    g3 = indicator([own], name="GBR (after the redefinition)")
    after = node.post("GBR", cid, [g3])
    again = node.post("GBR", cid, [own])

    gbr_objects = {g1["id"], g2["id"], g3["id"]}
    for who in ("KOR", "UKR"):
        assert not ids_received(node, who, cid) & gbr_objects, f"{who} received GBR's indicator"
        for g in (g1, g2, g3):
            assert node.get_object(who, cid, g["id"]) == [], f"{who} read GBR's indicator {g['name']}"
    assert own in node.read_id("GBR", cid, d, versions="all"), "GBR does not read back its own definition D"
    assert together.stored(d) and together.stored(g1["id"]), together.raw
    assert by_reference.stored(g2["id"]) and after.stored(g3["id"]), (by_reference.raw, after.raw)
    assert "immutable" in redefined.failure(d)["message"].lower()
    assert again.stored(d), again.raw  # the identical body: a successful no-op


def test_relying_on_a_hidden_definition_answers_like_an_unknown_one(node: Node) -> None:
    """Class 1c (marking definitions): KOR names GBR's GBR-only ACS definition D2 in an object without sending it, to
    learn from the answer whether the node holds D2; it must answer exactly as for an id it never received."""
    d2 = acs_marking("S", ["GBR"])
    cid = node.new_collection()
    gbr = node.post("GBR", cid, [d2, indicator([d2])])
    assert not gbr.raw.get("failures"), gbr.raw

    never_seen = sid("marking-definition")
    probe = indicator([d2], name="KOR's probe")
    control = indicator([{"id": never_seen}], name="KOR's probe")
    probed = node.post("KOR", cid, [probe])
    controlled = node.post("KOR", cid, [control])

    assert node.get_object("KOR", cid, probe["id"]) == [], "KOR's object was stored under GBR's hidden definition"
    kind, entry = probed.entry(probe["id"])
    control_kind, control_entry = controlled.entry(control["id"])
    assert control_kind == "failure", controlled.raw
    assert kind == "failure", f"naming a hidden definition succeeded: {entry}"
    assert without(entry, probe["id"], d2["id"]) == without(control_entry, control["id"], never_seen)


def test_an_originator_only_acs_marking_is_not_widened_by_a_relto_marking(node: Node) -> None:
    """Class 5 (combined markings): GBR marks an object with an ACS marking that permits no nationality (originator
    only) and with UNCLASSIFIED REL TO GBR, KOR, NATO; the wide marking must not drop the restriction for KOR."""
    acs = acs_marking("U")
    wide = marking("UNCLASSIFIED", "GBR", "KOR", "NATO")
    obj = indicator([acs, wide], name="GBR only, whatever the REL TO says")
    cid = node.new_collection()
    status = node.post("GBR", cid, [acs, wide, obj])
    assert status.stored(obj["id"]), status.raw

    assert obj["id"] not in ids_received(node, "KOR", cid), "KOR received an originator-only object"
    assert node.get_object("KOR", cid, obj["id"]) == []
    assert node.get_object("GBR", cid, obj["id"]) == [obj]


def test_a_granular_originator_only_acs_marking_removes_the_field(node: Node) -> None:
    """Class 5 (combined markings, granular): GBR's object is REL TO GBR, KOR but its description is granularly marked
    with an originator-only ACS marking; KOR must receive the object without the description."""
    acs = acs_marking("U")
    shared = marking("UNCLASSIFIED", "GBR", "KOR")
    obj = indicator(
        [shared],
        description="GBR's source, for GBR alone",
        granular_markings=[{"selectors": ["description"], "marking_ref": acs["id"]}],
    )
    cid = node.new_collection()
    status = node.post("GBR", cid, [acs, shared, obj])
    assert status.stored(obj["id"]), status.raw

    got = node.get_object("KOR", cid, obj["id"])
    assert len(got) == 1, got
    assert "description" not in got[0], "KOR received a field marked originator-only"
    assert obj["description"] not in str(node.read_id("KOR", cid, obj["id"]))
    assert node.get_object("GBR", cid, obj["id"]) == [obj]
