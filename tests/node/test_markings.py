"""The marking resolver: meanings per nation, marking sets made once, the ownership gate."""

from __future__ import annotations

import pytest

from relto.domain.errors import InvalidObject
from relto.domain.levels import Ladder
from relto.domain.markings import MarkingMeaning, MarkingSet, releasability_marking
from relto.domain.parties import Party
from relto.domain.stix import check_object
from relto.node import Node
from relto.store.base import Holding, NewVersion

LADDER = Ladder()
GBR = Party(token_id=1, nation="GBR", clearance=LADDER.rank("SECRET"), can_write=True)
USA = Party(token_id=2, nation="USA", clearance=LADDER.rank("SECRET"), can_write=True)
REL_GBR_USA = releasability_marking("SECRET", ["GBR", "USA"], LADDER)


def actor(*refs: str) -> dict[str, object]:
    return {
        "type": "threat-actor",
        "spec_version": "2.1",
        "id": "threat-actor--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
        "created": "2024-10-18T09:00:00.000Z",
        "modified": "2024-10-18T09:00:00.000Z",
        "name": "unit",
        "object_marking_refs": list(refs),
    }


def test_an_unknown_marking_is_a_clear_failure(node: Node) -> None:
    obj = actor("marking-definition--00000000-0000-4000-8000-000000000000")
    with pytest.raises(InvalidObject, match="unknown marking-definition"):
        node.markings.for_object(GBR, obj, check_object(obj), {})


def test_the_same_markings_make_the_same_set_and_the_policy_learns_it(node: Node) -> None:
    pending: dict[str, MarkingMeaning] = {}
    definition = check_object(REL_GBR_USA)
    node.markings.for_definition(GBR, REL_GBR_USA, definition, pending)
    obj = actor(REL_GBR_USA["id"])
    first, _ = node.markings.for_object(GBR, obj, check_object(obj), pending)
    again, _ = node.markings.for_object(GBR, obj, check_object(obj), pending)
    assert first == again
    assert node.marking_set(first).rel_to is not None
    assert node.known_max_set >= first


def test_the_gate_refuses_only_what_the_publisher_can_see(node: Node) -> None:
    public = node.store.marking_set_id("public", MarkingSet(0, "GBR", 0, None, None, public=True))
    assert public is not None
    node.visible_sets(USA, refresh=True)
    gate = node.markings.gate(USA)
    version = NewVersion("threat-actor--x", "threat-actor", "2.1", 1, "2024", public, b"{}", originator="USA")
    owned = Holding("threat-actor--x", "threat-actor", 1, public, None, "c", originator="GBR")
    assert "belongs to GBR" in (gate(version, [owned]) or "")
    hidden = Holding("threat-actor--x", "threat-actor", 1, 10**9, None, "c", originator="GBR")
    assert gate(version, [hidden]) is None  # its own copy, exactly as if the id were new
    mine = Holding("threat-actor--x", "threat-actor", 0, public, None, "c", originator="USA")
    assert gate(version, [owned, mine]) is None  # it adds to its own copy
    observable = NewVersion("ipv4-addr--x", "ipv4-addr", "2.1", 0, None, public, b"{}", originator="USA")
    assert gate(observable, [owned]) is None  # ids derived from contents: always the publisher's own copy
