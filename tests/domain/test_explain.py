"""domain/explain: the reasons a party receives less than the whole, in words, from the decision's own inputs."""

from __future__ import annotations

from typing import Any

from relto.domain.explain import explain, marking_words, why_not
from relto.domain.levels import Ladder
from relto.domain.markings import MarkingSet

LADDER = Ladder()
SECRET = LADDER.rank("SECRET")
TOP = len(LADDER.levels) - 1
NATO = {"NATO": frozenset({"GBR", "POL"})}
REPORT: dict[str, Any] = {
    "type": "report",
    "id": "report--1",
    "name": "r",
    "description": "d",
    "object_refs": ["identity--1", "location--1"],
}


def ms(rel_to: tuple[tuple[str, ...], ...] | None, rank: int = SECRET, tlp: str | None = None) -> MarkingSet:
    return MarkingSet(0, "GBR", rank, rel_to, tlp)


def test_marking_words() -> None:
    assert marking_words(ms((("GBR", "KOR"),)), LADDER) == "SECRET REL TO GBR, KOR"
    assert marking_words(ms(None, tlp="amber"), LADDER) == "SECRET (no REL TO: GBR only) TLP:AMBER"
    # For a nation: only the groups that leave it out.
    two = ms((("GBR", "NATO"), ("GBR", "UKR")))
    assert marking_words(two, LADDER, "POL", NATO) == "SECRET REL TO GBR, UKR"
    assert marking_words(two, LADDER, "KOR", NATO) == "SECRET REL TO GBR, NATO and REL TO GBR, UKR"


def test_why_not_asks_the_policy() -> None:
    assert why_not("POL", TOP, ms((("NATO",),)), NATO, LADDER) is None  # a member today
    assert why_not("UKR", TOP, ms((("NATO",),)), NATO, LADDER) == ("SECRET REL TO NATO", "does not include UKR")
    low = LADDER.rank("CONFIDENTIAL")
    assert why_not("POL", low, ms((("NATO",),)), NATO, LADDER) == (
        "SECRET REL TO NATO",
        "is above POL's clearance CONFIDENTIAL",
    )
    assert why_not("GBR", TOP, ms(None), {}, LADDER) is None  # the originator, cleared


def test_explain_names_fields_references_and_the_withholding_cause() -> None:
    wide = ms((("GBR", "UKR"),))
    narrow = ms((("GBR", "UKR"), ("GBR",)))
    common: dict[str, Any] = {"clearance": TOP, "whole": wide, "members": {}, "ladder": LADDER}
    cut = {k: v for k, v in REPORT.items() if k != "description"} | {"object_refs": ["location--1"]}
    assert explain(
        REPORT, cut, nation="UKR", fields=[("description", narrow)], hidden_ids={"identity--1"}, **common
    ) == (
        "the field description is marked SECRET REL TO GBR, which does not include UKR",
        "its object_ref identity--1 is not releasable to UKR, so it is left out",
    )
    assert explain(REPORT, REPORT, nation="UKR", fields=[], hidden_ids=set(), **common) == ()
    both = {"identity--1", "location--1"}
    assert explain(REPORT, None, nation="UKR", fields=[], hidden_ids=both, **common) == (
        "UKR would receive nothing of report--1: none of its object_refs (identity--1, location--1) is releasable "
        "to UKR, and a report must name at least one object",
    )
    assert explain(REPORT, None, nation="KOR", fields=[], hidden_ids=set(), **common) == (
        "KOR would receive nothing of report--1: its marking SECRET REL TO GBR, UKR does not include KOR",
    )
