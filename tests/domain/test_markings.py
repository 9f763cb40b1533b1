"""Markings, the policy engine and the default communities, on hand-written cases without a node."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from relto.domain import policy
from relto.domain.communities import Community, Membership, default_communities, membership_index
from relto.domain.errors import InvalidObject, InvalidValue
from relto.domain.levels import DEFAULT_LEVELS, Ladder
from relto.domain.markings import (
    ACS_EXTENSION_ID,
    RELTO_EXTENSION_ID,
    TLP1_IDS,
    TLP_IDS,
    MarkingMeaning,
    MarkingSet,
    Releasability,
    combine,
    interpret_marking_definition,
    level_name,
    releasability_marking,
    tlp_definition,
)
from relto.domain.stix import check_object

LADDER = Ladder.of(DEFAULT_LEVELS)
U, R, C, S, TS = range(5)


def today() -> date:
    return datetime.now(UTC).date()


# releasability_marking ------------------------------------------------------------------------------------
def test_releasability_marking_shape() -> None:
    m = releasability_marking("SECRET", ["USA", "GBR"], LADDER)
    assert m["type"] == "marking-definition"
    assert m["spec_version"] == "2.1"
    assert m["name"] == "SECRET REL TO GBR, USA"
    ext = m["extensions"][RELTO_EXTENSION_ID]
    assert ext == {"extension_type": "property-extension", "classification": "SECRET", "rel_to": ["GBR", "USA"]}
    assert check_object(m).id == m["id"]
    assert uuid.UUID(m["id"].removeprefix("marking-definition--"))


@pytest.mark.parametrize(
    ("classification", "rel_to"),
    [
        ("SECRET", ["GBR", "USA"]),
        ("secret", ["usa", "gbr"]),
        ("Secret", [" USA ", "GBR", "usa"]),
        ("S", ["USA", "GBR"]),
        ("  secret ", ["GBR", "", "USA"]),
    ],
)
def test_releasability_id_ignores_order_case_and_duplicates(classification: str, rel_to: list[str]) -> None:
    reference = releasability_marking("SECRET", ["GBR", "USA"], LADDER)
    assert releasability_marking(classification, rel_to, LADDER) == reference


def test_releasability_id_is_the_same_on_every_call() -> None:
    a = releasability_marking("TOP SECRET", ["NATO", "KOR"], LADDER)
    b = releasability_marking("top secret", ("kor", "nato"), Ladder.of(DEFAULT_LEVELS))
    assert a["id"] == b["id"]
    assert a == b


@pytest.mark.parametrize(
    ("classification", "rel_to"),
    [
        ("CONFIDENTIAL", ["GBR", "USA"]),
        ("TOP SECRET", ["GBR", "USA"]),
        ("SECRET", ["GBR"]),
        ("SECRET", ["GBR", "USA", "FRA"]),
        ("SECRET", ["GBR", "FVEY"]),
        ("SECRET", ["NATO"]),
    ],
)
def test_different_releasability_gives_a_different_id(classification: str, rel_to: list[str]) -> None:
    reference = releasability_marking("SECRET", ["GBR", "USA"], LADDER)
    other = releasability_marking(classification, rel_to, LADDER)
    assert other["id"] != reference["id"]


def test_all_distinct_markings_have_distinct_ids() -> None:
    groups = [["GBR"], ["USA"], ["GBR", "USA"], ["NATO"], ["EU"], ["FVEY", "KOR"], ["IP4"]]
    ids = {releasability_marking(level, g, LADDER)["id"] for level in DEFAULT_LEVELS for g in groups}
    assert len(ids) == len(DEFAULT_LEVELS) * len(groups)


@pytest.mark.parametrize(
    ("code", "level"),
    [("S", "SECRET"), ("TS", "TOP SECRET"), ("ts", "TOP SECRET"), ("C", "CONFIDENTIAL"), ("U", "UNCLASSIFIED")],
)
def test_acs_codes_map_to_ladder_levels(code: str, level: str) -> None:
    assert level_name(code, LADDER) == level
    m = releasability_marking(code, ["GBR"], LADDER)
    assert m["extensions"][RELTO_EXTENSION_ID]["classification"] == level
    assert m["id"] == releasability_marking(level, ["GBR"], LADDER)["id"]


@pytest.mark.parametrize(
    ("classification", "rel_to"),
    [
        ("SECRET", []),
        ("SECRET", ["", " "]),
        ("SUPER SECRET", ["GBR"]),
        ("SECRET", ["G"]),
        ("SECRET", ["G B"]),
        ("SECRET", ["nato alliance"]),
    ],
)
def test_bad_releasability_is_an_invalid_value(classification: str, rel_to: list[str]) -> None:
    with pytest.raises(InvalidValue):
        releasability_marking(classification, rel_to, LADDER)


# interpret_marking_definition -----------------------------------------------------------------------------
def test_interpret_relto_marking() -> None:
    m = releasability_marking("SECRET", ["USA", "NATO"], LADDER)
    meaning = interpret_marking_definition(m, LADDER)
    assert meaning == MarkingMeaning("releasability", releasability=Releasability("SECRET", ("NATO", "USA")))


def test_interpret_relto_marking_canonicalises_hand_written_values() -> None:
    m = {
        "type": "marking-definition",
        "id": releasability_marking("TOP SECRET", ["FVEY", "USA"], LADDER)["id"],
        "extensions": {RELTO_EXTENSION_ID: {"classification": "top_secret", "rel_to": ["usa", "fvey", "USA"]}},
    }
    meaning = interpret_marking_definition(m, LADDER)
    assert meaning.releasability == Releasability("TOP SECRET", ("FVEY", "USA"))
    assert meaning.self_verifying


def test_a_relto_marking_under_another_markings_id_is_refused() -> None:
    """Meaning is not taken on trust: the id must be the UUIDv5 of the contents (DESIGN invariant 10)."""
    narrow = releasability_marking("SECRET", ["GBR"], LADDER)
    forged = {**narrow, "extensions": {RELTO_EXTENSION_ID: {"classification": "UNCLASSIFIED", "rel_to": ["KOR"]}}}
    with pytest.raises(InvalidObject, match="UUIDv5"):
        interpret_marking_definition(forged, LADDER)
    with pytest.raises(InvalidObject, match="UUIDv5"):
        interpret_marking_definition({**narrow, "id": f"marking-definition--{uuid.uuid4()}"}, LADDER)


def test_a_tlp_id_with_a_body_that_says_otherwise_is_refused() -> None:
    clear = tlp_definition("clear")
    red_body = {**tlp_definition("red"), "id": clear["id"]}
    with pytest.raises(InvalidObject, match="TLP:CLEAR"):
        interpret_marking_definition(red_body, LADDER)
    relto_body = {**releasability_marking("SECRET", ["GBR"], LADDER), "id": clear["id"]}
    with pytest.raises(InvalidObject, match="releasability"):
        interpret_marking_definition(relto_body, LADDER)


@pytest.mark.parametrize(
    ("ext", "mention"),
    [
        ({"classification": "SUPER SECRET", "rel_to": ["GBR"]}, "classification"),
        ({"classification": 3, "rel_to": ["GBR"]}, "classification"),
        ({"rel_to": ["GBR"]}, "classification"),
        ({"classification": "SECRET", "rel_to": []}, "rel_to"),
        ({"classification": "SECRET"}, "rel_to"),
        ({"classification": "SECRET", "rel_to": "GBR"}, "rel_to"),
        ({"classification": "SECRET", "rel_to": [5]}, "rel_to"),
        ({"classification": "SECRET", "rel_to": ["G"]}, "community"),
        ("SECRET", RELTO_EXTENSION_ID),
    ],
)
def test_interpret_malformed_relto_marking_is_invalid(ext: Any, mention: str) -> None:
    m = {
        "type": "marking-definition",
        "id": f"marking-definition--{uuid.uuid4()}",
        "extensions": {RELTO_EXTENSION_ID: ext},
    }
    with pytest.raises(InvalidObject) as info:
        interpret_marking_definition(m, LADDER)
    assert mention.lower() in info.value.message.lower()


@pytest.mark.parametrize("name", ["clear", "green", "amber", "amber+strict", "red"])
def test_interpret_tlp_2(name: str) -> None:
    assert interpret_marking_definition(tlp_definition(name), LADDER) == MarkingMeaning("tlp", tlp=name)
    assert check_object(tlp_definition(name)).id == TLP_IDS[name]


@pytest.mark.parametrize(("id_", "name"), sorted(TLP1_IDS.items()))
def test_interpret_tlp_1_maps_to_tlp_2_names(id_: str, name: str) -> None:
    tlp1 = {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": id_,
        "created": "2017-01-20T00:00:00.000Z",
        "definition_type": "tlp",
        "name": f"TLP:{name.upper()}",
        "definition": {"tlp": name},
    }
    assert interpret_marking_definition(tlp1, LADDER) == MarkingMeaning("tlp", tlp=name)


def _acs(control_set: Any) -> dict[str, Any]:
    return {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": f"marking-definition--{uuid.uuid4()}",
        "created": "2024-01-01T00:00:00.000Z",
        "name": "ACS",
        "extensions": {ACS_EXTENSION_ID: {"extension_type": "property-extension", "control_set": control_set}},
    }


def test_interpret_acs_3_marking() -> None:
    assert ACS_EXTENSION_ID == "extension-definition--3a65884d-005a-4290-8335-cb2d778a83ce"
    m = _acs({"classification": "S", "permitted_nationalities": ["USA", "GBR"]})
    meaning = interpret_marking_definition(m, LADDER)
    assert meaning == MarkingMeaning("releasability", releasability=Releasability("SECRET", ("GBR", "USA")))
    rank, groups, tlp = combine([meaning], LADDER)
    assert (rank, groups, tlp) == (S, (("GBR", "USA"),), None)


def test_interpret_acs_without_nationalities_is_originator_only() -> None:
    """An empty any-of group: the originator only, even beside a wide relto marking (issue 9, class 5)."""
    meaning = interpret_marking_definition(_acs({"classification": "TS"}), LADDER)
    assert meaning.releasability == Releasability("TOP SECRET", ())
    assert combine([meaning], LADDER) == (TS, ((),), None)
    wide = interpret_marking_definition(releasability_marking("UNCLASSIFIED", ["NATO", "KOR"], LADDER), LADDER)
    rank, rel_to, _ = combine([wide, meaning], LADDER)
    ms = MarkingSet(1, "GBR", rank, rel_to)
    assert not policy.visible("KOR", TS, ms, {"NATO": frozenset({"KOR"})})
    assert policy.visible("GBR", TS, ms, {})


@pytest.mark.parametrize(
    "control_set",
    [
        None,
        {},
        {"classification": 1},
        {"classification": "XS"},
        {"classification": "S", "permitted_nationalities": "USA"},
        {"classification": "S", "permitted_nationalities": [1]},
    ],
)
def test_interpret_malformed_acs_is_invalid(control_set: Any) -> None:
    with pytest.raises(InvalidObject, match="ACS"):
        interpret_marking_definition(_acs(control_set), LADDER)


@pytest.mark.parametrize(
    "extensions",
    [None, {}, {"extension-definition--" + str(uuid.uuid4()): {"extension_type": "property-extension"}}, "x"],
)
def test_interpret_statement_and_unknown_markings(extensions: Any) -> None:
    m: dict[str, Any] = {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": f"marking-definition--{uuid.uuid4()}",
        "created": "2024-01-01T00:00:00.000Z",
        "definition_type": "statement",
        "definition": {"statement": "Copyright 2024"},
    }
    if extensions is not None:
        m["extensions"] = extensions
    assert interpret_marking_definition(m, LADDER) == MarkingMeaning("statement")


# combine ---------------------------------------------------------------------------------------------------
def rel(level: str, *parties: str) -> MarkingMeaning:
    return MarkingMeaning("releasability", releasability=Releasability(level, tuple(sorted(parties)) or None))


def tlp(name: str) -> MarkingMeaning:
    return MarkingMeaning("tlp", tlp=name)


def test_combine_nothing() -> None:
    assert combine([], LADDER) == (U, None, None)
    assert combine([MarkingMeaning("statement")], LADDER) == (U, None, None)


def test_combine_takes_the_highest_classification_and_every_group() -> None:
    rank, groups, strongest = combine(
        [rel("CONFIDENTIAL", "USA", "GBR"), rel("SECRET", "NATO"), rel("RESTRICTED", "KOR")], LADDER
    )
    assert rank == S
    assert groups == (("GBR", "USA"), ("KOR",), ("NATO",))
    assert strongest is None


def test_combine_deduplicates_groups_and_is_order_free() -> None:
    a = combine([rel("SECRET", "USA"), rel("SECRET", "USA"), rel("CONFIDENTIAL", "FVEY")], LADDER)
    b = combine([rel("CONFIDENTIAL", "FVEY"), rel("SECRET", "USA")], LADDER)
    assert a == b == (S, (("FVEY",), ("USA",)), None)


def test_combine_a_marking_without_rel_to_adds_its_classification_only() -> None:
    assert combine([rel("TOP SECRET"), rel("SECRET", "USA")], LADDER) == (TS, (("USA",),), None)
    assert combine([rel("TOP SECRET")], LADDER) == (TS, None, None)


@pytest.mark.parametrize(
    ("names", "strongest"),
    [
        (["clear", "green"], "green"),
        (["red", "green"], "red"),
        (["amber", "amber+strict"], "amber+strict"),
        (["amber+strict", "amber"], "amber+strict"),
        (["clear", "red", "amber", "green", "amber+strict"], "red"),
        (["clear"], "clear"),
    ],
)
def test_combine_keeps_the_strongest_tlp(names: list[str], strongest: str) -> None:
    meanings = [tlp(n) for n in names] + [MarkingMeaning("statement"), rel("CONFIDENTIAL", "FRA")]
    assert combine(meanings, LADDER) == (C, (("FRA",),), strongest)


# policy ----------------------------------------------------------------------------------------------------
NO_COMMUNITIES: dict[str, frozenset[str]] = {}


def ms(
    id_: int, originator: str, rank: int, *groups: tuple[str, ...], public: bool = False, no_rel_to: bool = False
) -> MarkingSet:
    return MarkingSet(id_, originator, rank, None if no_rel_to else tuple(groups), public=public)


@pytest.mark.parametrize("rank", range(5))
def test_originator_always_sees_its_own_at_its_clearance(rank: int) -> None:
    for s in (ms(1, "GBR", rank, ("USA",)), ms(2, "GBR", rank, no_rel_to=True), ms(3, "GBR", rank, ("NATO",))):
        assert policy.visible("GBR", rank, s, NO_COMMUNITIES)
        assert policy.visible("GBR", TS, s, NO_COMMUNITIES)


@pytest.mark.parametrize("rank", range(1, 5))
def test_clearance_below_classification_hides_even_from_the_originator(rank: int) -> None:
    for s in (ms(1, "GBR", rank, ("USA",)), ms(2, "GBR", rank, no_rel_to=True)):
        assert not policy.visible("GBR", rank - 1, s, NO_COMMUNITIES)
        assert not policy.visible("USA", rank - 1, s, NO_COMMUNITIES)


def test_no_rel_to_is_originator_only() -> None:
    s = ms(1, "GBR", U, no_rel_to=True)
    assert policy.visible("GBR", U, s, NO_COMMUNITIES)
    members = {"NATO": frozenset({"GBR", "USA"})}
    for nation in ("USA", "FRA", "KOR"):
        assert not policy.visible(nation, TS, s, members)


def test_rel_to_nations() -> None:
    s = ms(1, "GBR", S, ("USA", "FRA"))
    assert policy.visible("USA", S, s, NO_COMMUNITIES)
    assert policy.visible("FRA", TS, s, NO_COMMUNITIES)
    assert not policy.visible("USA", C, s, NO_COMMUNITIES)
    assert not policy.visible("DEU", TS, s, NO_COMMUNITIES)


def test_every_rel_to_group_must_admit_the_nation() -> None:
    members = {"NATO": frozenset({"GBR", "USA", "FRA"}), "FVEY": frozenset({"GBR", "USA", "AUS"})}
    s = ms(1, "GBR", C, ("NATO",), ("FVEY", "KOR"))
    assert policy.visible("USA", C, s, members)  # in both
    assert not policy.visible("FRA", TS, s, members)  # NATO only
    assert not policy.visible("AUS", TS, s, members)  # FVEY only
    assert not policy.visible("KOR", TS, s, members)  # second group only
    assert policy.visible("GBR", C, s, members)


def test_public_sets_are_visible_to_everyone() -> None:
    s = ms(1, "GBR", TS, public=True, no_rel_to=True)
    assert policy.visible("KOR", U, s, NO_COMMUNITIES)


def test_community_membership_is_dated() -> None:
    day = date(2024, 6, 1)
    club = Community(
        "CLUB",
        members=(
            Membership("GBR", date(2000, 1, 1)),
            Membership("FRA", date(2000, 1, 1), until=date(2024, 1, 1)),  # left
            Membership("DEU", date(2024, 6, 2)),  # not yet joined
            Membership("ITA", date(2024, 6, 1)),  # joins today (inclusive)
            Membership("ESP", date(2000, 1, 1), until=date(2024, 6, 1)),  # leaves today (exclusive)
        ),
    )
    members = membership_index([club], day)
    assert members == {"CLUB": frozenset({"GBR", "ITA"})}
    s = ms(1, "USA", S, ("CLUB",))
    assert policy.visible("GBR", S, s, members)
    assert policy.visible("ITA", S, s, members)
    for nation in ("FRA", "DEU", "ESP"):
        assert not policy.visible(nation, TS, s, members)
    # On an earlier day FRA and ESP were members.
    before = membership_index([club], date(2023, 6, 1))
    assert policy.visible("FRA", S, s, before)
    assert policy.visible("ESP", S, s, before)
    assert not policy.visible("ITA", S, s, before)


def test_a_nation_that_left_is_not_a_member_today() -> None:
    past = today() - timedelta(days=1)
    club = Community("CLUB", members=(Membership("FRA", date(2000, 1, 1), until=past), Membership("GBR", past)))
    members = membership_index([club], today())
    s = ms(1, "USA", U, ("CLUB",))
    assert not policy.visible("FRA", TS, s, members)
    assert policy.visible("GBR", U, s, members)


def test_visible_sets_on_hand_written_cases() -> None:
    members = {"NATO": frozenset({"GBR", "USA", "FRA"}), "IP4": frozenset({"KOR", "JPN", "AUS", "NZL"})}
    sets = [
        ms(1, "GBR", U, no_rel_to=True),  # GBR only
        ms(2, "GBR", S, ("NATO",)),
        ms(3, "USA", TS, ("GBR",)),
        ms(4, "USA", C, ("NATO",), ("IP4", "GBR")),  # GBR (both), USA (originator)
        ms(5, "KOR", R, ("IP4",)),
        ms(6, "FRA", S, public=True, no_rel_to=True),
        ms(7, "USA", U, ("FRA", "KOR")),
    ]
    assert policy.visible_sets("GBR", TS, sets, members) == {1, 2, 3, 4, 6}
    assert policy.visible_sets("GBR", C, sets, members) == {1, 4, 6}
    assert policy.visible_sets("USA", S, sets, members) == {2, 4, 6, 7}
    assert policy.visible_sets("USA", TS, sets, members) == {2, 3, 4, 6, 7}
    assert policy.visible_sets("FRA", TS, sets, members) == {2, 6, 7}
    assert policy.visible_sets("KOR", R, sets, members) == {5, 6, 7}
    assert policy.visible_sets("JPN", TS, sets, members) == {5, 6}
    assert policy.visible_sets("JPN", U, sets, members) == {6}
    assert policy.visible_sets("UKR", TS, sets, members) == {6}
    assert policy.visible_sets("GBR", TS, [], members) == frozenset()


# default communities ----------------------------------------------------------------------------------------
def communities() -> dict[str, Community]:
    return {c.name: c for c in default_communities()}


def test_default_community_names() -> None:
    assert set(communities()) == {"NATO", "EU", "FVEY", "IP4"}


def test_nato_has_32_members_today() -> None:
    nato = communities()["NATO"]
    members = nato.members_on(today())
    assert len(members) == 32
    assert {"FIN", "SWE", "GBR", "USA", "TUR", "MKD", "MNE"} <= members
    assert not {"UKR", "AUT", "IRL", "CHE", "KOR"} & members


def test_nato_finland_and_sweden_accession_dates() -> None:
    nato = communities()["NATO"]
    assert not nato.has_member("FIN", date(2023, 4, 3))
    assert nato.has_member("FIN", date(2023, 4, 4))
    assert not nato.has_member("SWE", date(2024, 3, 6))
    assert nato.has_member("SWE", date(2024, 3, 7))
    assert len(nato.members_on(date(2023, 4, 3))) == 30
    assert len(nato.members_on(date(2023, 4, 4))) == 31
    assert len(nato.members_on(date(2024, 3, 7))) == 32


def test_gbr_left_the_eu() -> None:
    eu = communities()["EU"]
    assert eu.has_member("GBR", date(2019, 6, 1))
    assert eu.has_member("GBR", date(2020, 1, 31))
    assert not eu.has_member("GBR", date(2020, 2, 1))
    assert not eu.has_member("GBR", today())
    assert len(eu.members_on(today())) == 27
    assert len(eu.members_on(date(2019, 6, 1))) == 28


def test_ip4_members() -> None:
    ip4 = communities()["IP4"]
    assert ip4.members_on(today()) == {"AUS", "JPN", "KOR", "NZL"}


def test_fvey_members() -> None:
    assert communities()["FVEY"].members_on(today()) == {"AUS", "CAN", "GBR", "NZL", "USA"}


def test_policy_with_default_communities_today() -> None:
    members = membership_index(default_communities(), today())
    eu_only = ms(1, "FRA", S, ("EU",))
    assert policy.visible("DEU", S, eu_only, members)
    assert not policy.visible("GBR", TS, eu_only, members)
    then = membership_index(default_communities(), date(2019, 6, 1))
    assert policy.visible("GBR", S, eu_only, then)
    nato = ms(2, "USA", S, ("NATO",))
    assert policy.visible("SWE", S, nato, members)
    assert not policy.visible("SWE", S, nato, membership_index(default_communities(), date(2024, 3, 6)))
