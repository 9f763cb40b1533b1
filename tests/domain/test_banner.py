"""The marking banner (relto.domain.banner): what people read above and below an item."""

from __future__ import annotations

from relto.domain.banner import banner
from relto.domain.levels import Ladder
from relto.domain.markings import MarkingSet

LADDER = Ladder()


def test_banner_lists_nations_then_communities_with_the_originator() -> None:
    ms = MarkingSet(7, "GBR", LADDER.rank("SECRET"), (("NATO", "KOR"),), "amber")
    b = banner(ms, LADDER)
    assert b.text == "SECRET // REL TO GBR, KOR, NATO"
    assert b.rel_to == ("GBR", "KOR", "NATO") and b.classification == "SECRET" and b.tlp == "AMBER"
    assert b.as_dict() == {"text": b.text, "classification": "SECRET", "rel_to": ["GBR", "KOR", "NATO"], "tlp": "AMBER"}


def test_banner_of_several_groups_shows_each() -> None:
    ms = MarkingSet(1, "USA", LADDER.rank("TOP SECRET"), (("FVEY",), ("KOR", "USA")))
    assert banner(ms, LADDER).text == "TOP SECRET // REL TO USA, FVEY // REL TO KOR, USA"


def test_banner_without_rel_to_is_originator_only() -> None:
    ms = MarkingSet(2, "KOR", LADDER.rank("CONFIDENTIAL"), None)
    b = banner(ms, LADDER)
    assert b.text == "CONFIDENTIAL // KOR ONLY" and b.rel_to == ("KOR",) and b.tlp is None


def test_banner_of_public_vocabulary_is_the_lowest_level() -> None:
    b = banner(MarkingSet(3, "GBR", 0, None, "clear", public=True), LADDER)
    assert b.text == "UNCLASSIFIED" and b.tlp == "CLEAR"
