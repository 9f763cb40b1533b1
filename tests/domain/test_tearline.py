"""Marking a whole object widely and its fields narrowly (relto.domain.tearline), without a node."""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

import pytest

from relto.domain.communities import default_communities, membership_index
from relto.domain.errors import InvalidObject, InvalidRequest, InvalidValue, ReltoError
from relto.domain.levels import Ladder
from relto.domain.markings import TLP_IDS, releasability_marking, tlp_definition
from relto.domain.redact import analyse
from relto.domain.stix import check_object
from relto.domain.tearline import mark_object, mark_objects, objects_of, parse_field

LADDER = Ladder()
COMMUNITIES = membership_index(default_communities(), date(2024, 10, 21))
WIDE = ("UNCLASSIFIED", ["GBR", "KOR", "NATO", "UKR"])
TS = "2024-10-19T08:00:00.000Z"


def rid(n: int, type_: str = "location") -> str:
    return f"{type_}--00000000-0000-4000-8000-{n:012d}"


def report(**over: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "report",
        "spec_version": "2.1",
        "id": rid(1, "report"),
        "created": TS,
        "modified": TS,
        "name": "DPRK forces in Russia's Far East (fictional)",
        "published": TS,
        "object_refs": [rid(2), rid(3), rid(4, "note"), rid(5, "observed-data")],
        "description": "the body",
        "x_source": "sourcing",
        "kill_chain_phases": [{"kill_chain_name": "example", "phase_name": "recon"}],
        "x_detail": {"places": ["Vladivostok", "Ussuriysk"]},
        "labels": [],
    }
    obj.update(over)
    return obj


def marking_id(level: str, *rel_to: str) -> str:
    return str(releasability_marking(level, rel_to, LADDER)["id"])


def mark(obj: Any = None, fields: dict[str, tuple[str, list[str]]] | None = None, **kw: Any) -> Any:
    kw.setdefault("communities", COMMUNITIES)
    return mark_object(report() if obj is None else obj, classification=WIDE[0], rel_to=WIDE[1], fields=fields, **kw)


# the marked object -----------------------------------------------------------------------------------------
def test_whole_marking_only() -> None:
    marked = mark()
    [obj] = marked.objects
    assert obj["object_marking_refs"] == [marking_id("UNCLASSIFIED", "GBR", "KOR", "NATO", "UKR")]
    assert "granular_markings" not in obj
    assert marked.definitions == (releasability_marking(*WIDE, LADDER),)
    assert marked.warnings == ()
    assert {k: v for k, v in obj.items() if k != "object_marking_refs"} == report()


def test_field_markings_group_selectors_by_marking() -> None:
    marked = mark(
        fields={
            "description": ("SECRET", ["GBR"]),
            "object_refs.[2]": ("S", ["gbr"]),
            "object_refs.[3]": ("SECRET", ["KOR", "GBR"]),
            "x_source": ("secret", ["GBR"]),
            "x_detail.places.[1]": ("SECRET", ["GBR", "KOR"]),
        }
    )
    [obj] = marked.objects
    assert obj["granular_markings"] == [
        {"selectors": ["description", "object_refs.[2]", "x_source"], "marking_ref": marking_id("SECRET", "GBR")},
        {
            "selectors": ["object_refs.[3]", "x_detail.places.[1]"],
            "marking_ref": marking_id("SECRET", "GBR", "KOR"),
        },
    ]
    assert [d["name"] for d in marked.definitions] == [
        "UNCLASSIFIED REL TO GBR, KOR, NATO, UKR",
        "SECRET REL TO GBR",
        "SECRET REL TO GBR, KOR",
    ]
    assert marked.warnings == ()
    # What relto makes, relto takes: the STIX checks and the engine's own reading of the selectors pass.
    check_object(obj)
    assert {f.selector for f in analyse(obj).fields} == {
        "description",
        "object_refs.[2]",
        "x_source",
        "object_refs.[3]",
        "x_detail.places.[1]",
    }


def test_the_input_is_not_changed() -> None:
    obj = report(object_marking_refs=[TLP_IDS["red"]])
    before = copy.deepcopy(obj)
    mark(obj, {"description": ("SECRET", ["GBR"])}, replace=True)
    assert obj == before


def test_tlp_joins_the_whole() -> None:
    marked = mark(tlp="AMBER")
    assert marked.objects[0]["object_marking_refs"] == [
        marking_id("UNCLASSIFIED", "GBR", "KOR", "NATO", "UKR"),
        TLP_IDS["amber"],
    ]
    assert marked.definitions[1] == tlp_definition("amber")
    assert mark(tlp="tlp:clear").definitions[1] == tlp_definition("clear")


def test_definitions_are_deduplicated_across_objects_and_input_definitions() -> None:
    secret_gbr = releasability_marking("SECRET", ["GBR"], LADDER)
    objects = [
        secret_gbr,
        report(),
        report(id=rid(9, "report")),
        tlp_definition("green"),
        releasability_marking(*WIDE, LADDER),
    ]
    marked = mark_objects(
        objects,
        classification=WIDE[0],
        rel_to=WIDE[1],
        tlp="green",
        fields={"description": ("SECRET", ["GBR"]), "x_source": ("SECRET", ["GBR"])},
        communities=COMMUNITIES,
    )
    ids = [d["id"] for d in marked.definitions]
    assert len(ids) == len(set(ids)) == 3
    assert [o["id"] for o in marked.objects] == [rid(1, "report"), rid(9, "report")]
    envelope = marked.envelope()["objects"]
    assert envelope[:3] == list(marked.definitions)
    assert envelope[3:] == list(marked.objects)


def test_a_field_marking_applies_to_the_objects_that_have_the_field() -> None:
    indicator = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": rid(7, "indicator"),
        "created": TS,
        "modified": TS,
        "pattern": "[ipv4-addr:value = '203.0.113.17']",
        "pattern_type": "stix",
        "valid_from": TS,
    }
    marked = mark_objects(
        [report(), indicator], classification="U", rel_to=["GBR", "KOR"], fields={"description": ("S", ["GBR"])}
    )
    assert "granular_markings" in marked.objects[0]
    assert "granular_markings" not in marked.objects[1]
    [warning] = marked.warnings
    assert "'description' names nothing in indicator--" in warning and "not applied" in warning


def test_lang_markings_are_kept() -> None:
    lang = {"selectors": ["description"], "lang": "en"}
    marked = mark(report(granular_markings=[lang]), {"x_source": ("SECRET", ["GBR"])})
    assert marked.objects[0]["granular_markings"] == [
        lang,
        {"selectors": ["x_source"], "marking_ref": marking_id("SECRET", "GBR")},
    ]


def test_existing_markings_are_refused_unless_replaced() -> None:
    marked_before = report(
        object_marking_refs=[TLP_IDS["red"]],
        granular_markings=[{"selectors": ["name"], "marking_ref": TLP_IDS["red"]}],
    )
    with pytest.raises(InvalidObject, match=r"already carries markings.*--replace.*\"replace\": true"):
        mark(marked_before)
    obj = mark(marked_before, {"description": ("SECRET", ["GBR"])}, replace=True).objects[0]
    assert obj["object_marking_refs"] == [marking_id("UNCLASSIFIED", "GBR", "KOR", "NATO", "UKR")]
    assert obj["granular_markings"] == [{"selectors": ["description"], "marking_ref": marking_id("SECRET", "GBR")}]
    with pytest.raises(InvalidObject, match="already carries markings"):
        mark(report(granular_markings=[{"selectors": ["name"], "marking_ref": TLP_IDS["red"]}]))


# selectors -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("descripton", "has no property 'descripton' (did you mean 'description'?)"),
        ("object_refs.[4]", "'object_refs' has 4 elements, [0] to [3]"),
        ("labels.[0]", "'labels' is empty"),
        ("object_refs.2", "'object_refs' is a list; name an element as 'object_refs.[n]'"),
        ("object_refs.[1].x", "'object_refs.[1]' is a string, not an object"),
        ("name.[0]", "'name' is not a list"),
        ("kill_chain_phases.[0].phase", "'kill_chain_phases.[0]' has no property 'phase' (did you mean 'phase_name'?)"),
        ("object_refs.[01]", "not a list index"),
        ("object_refs[2]", "not a list index"),
        ("object_refs.[-1]", "not a list index"),
        ("object_refs.[]", "not a list index"),
        ("a..b", "empty step"),
        (".name", "empty step"),
        ("[0]", "must start with a property name"),
        ("id", "identifies the object"),
        ("type", "identifies the object"),
        ("granular_markings.[0]", "markings themselves"),
        ("object_marking_refs", "markings themselves"),
        ("  ", "a selector names a property"),
    ],
)
def test_bad_selectors_say_what_to_fix(selector: str, message: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        mark(fields={selector: ("SECRET", ["GBR"])})
    assert message in caught.value.message


def test_a_selector_that_names_nothing_in_any_object_is_an_error() -> None:
    with pytest.raises(InvalidValue, match="nor in the other objects"):
        mark_objects([report(), report(id=rid(9, "report"))], classification="U", rel_to=["GBR"], fields={"x": WIDE})


def test_a_selector_may_be_given_once() -> None:
    with pytest.raises(InvalidValue, match="given twice"):
        mark(fields={"description": ("SECRET", ["GBR"]), " description ": ("SECRET", ["GBR", "KOR"])})


# levels, nations, communities ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("whole", "fields", "message"),
    [
        (("COSMIC", ["GBR"]), {}, "the whole object: unknown classification 'COSMIC'"),
        (("SECRET", ["Korea"]), {}, "'KOREA' is neither a nation code (ISO 3166-1 alpha-3, e.g. GBR) nor a known"),
        (("SECRET", ["G"]), {}, "'G' is not a community name"),
        (("SECRET", ["XYZW"]), {}, "'XYZW' is neither a nation code"),
        (("SECRET", [" "]), {}, "REL TO needs at least one"),
        (("U", ["GBR"]), {"name": ("COSMIC", ["GBR"])}, "field 'name': unknown classification 'COSMIC'"),
        (("U", ["GBR"]), {"name": ("SECRET", ["UK"])}, "field 'name': 'UK' is neither a nation code"),
        (("U", ["GBR"]), {"name": ("SECRET", [])}, "field 'name': REL TO needs at least one"),
        (("U", ["GBR"]), {"name": ("SECRET", "GBR")}, "REL TO must be a list"),
    ],
)
def test_bad_levels_and_parties(whole: tuple[str, list[str]], fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        mark_object(report(), classification=whole[0], rel_to=whole[1], fields=fields, communities=COMMUNITIES)
    assert message in caught.value.message


def test_unknown_tlp() -> None:
    with pytest.raises(InvalidValue, match=r"unknown TLP 'purple'; TLP 2\.0 names are clear, green"):
        mark(tlp="purple")


def test_community_names_are_only_checked_for_syntax_without_communities() -> None:
    marked = mark_object(report(), classification="U", rel_to=["GBR", "AUKUS"])
    assert marked.definitions[0]["name"] == "UNCLASSIFIED REL TO AUKUS, GBR"


def test_the_ladder_is_the_nodes() -> None:
    ladder = Ladder.of(["OFFEN", "VS-NFD", "GEHEIM"])
    marked = mark_object(
        report(), classification="offen", rel_to=["DEU"], fields={"description": ("GEHEIM", ["DEU"])}, ladder=ladder
    )
    assert [d["name"] for d in marked.definitions] == ["OFFEN REL TO DEU", "GEHEIM REL TO DEU"]
    with pytest.raises(InvalidValue, match="OFFEN, VS-NFD, GEHEIM"):
        mark_object(report(), classification="SECRET", rel_to=["DEU"], ladder=ladder)


# bad objects -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("objects", "error", "message"),
    [
        ([5], InvalidObject, "not a JSON number"),
        ([{"type": "report"}], InvalidObject, "needs its 'type' and 'id'"),
        ([report(modified="yesterday")], InvalidObject, "report--00000000-0000-4000-8000-000000000001: 'modified'"),
        ([releasability_marking("SECRET", ["GBR"], LADDER)], InvalidRequest, "no STIX object to mark"),
        ([], InvalidRequest, "no STIX object to mark"),
    ],
)
def test_bad_objects(objects: list[Any], error: type[ReltoError], message: str) -> None:
    with pytest.raises(error) as caught:
        mark_objects(objects, classification="U", rel_to=["GBR"])
    assert message in caught.value.message


# warnings --------------------------------------------------------------------------------------------------
def warnings(fields: dict[str, tuple[str, list[str]]], obj: dict[str, Any] | None = None) -> list[str]:
    return list(mark(obj, fields).warnings)


def test_a_field_marking_no_narrower_than_the_whole_has_no_effect() -> None:
    for spec in [WIDE, ("UNCLASSIFIED", ["GBR", "KOR", "NATO", "UKR", "JPN"]), ("U", ["EU", "NATO", "KOR", "UKR"])]:
        [warning] = warnings({"description": spec, "x_source": spec})
        assert "on 'description', 'x_source' is not narrower than the whole object" in warning
        assert "has no effect" in warning


def test_a_community_counts_as_its_members() -> None:
    # NATO admits every member: a field REL TO a few members is narrower, one REL TO all of them is not.
    assert warnings({"description": ("UNCLASSIFIED", ["GBR", "USA", "KOR", "UKR"])}) == []
    all_members = sorted(COMMUNITIES["NATO"] | {"KOR", "UKR"})
    [warning] = warnings({"description": ("UNCLASSIFIED", all_members)})
    assert "has no effect" in warning


def test_a_lower_level_or_a_wider_rel_to_is_pointed_out() -> None:
    whole_secret = report()
    marked = mark_object(
        whole_secret,
        classification="SECRET",
        rel_to=["GBR", "KOR", "USA"],
        fields={"description": ("UNCLASSIFIED", ["GBR"]), "x_source": ("SECRET", ["GBR", "JPN", "IP4"])},
        communities=COMMUNITIES,
    )
    low, wide = marked.warnings
    assert "the level is below the whole object's (SECRET)" in low and "stays SECRET" in low
    assert "'x_source': IP4, JPN reaches beyond the whole object (SECRET REL TO GBR, KOR, USA)" in wide
    assert "never wider" in wide


def test_marking_a_whole_required_property_withholds_the_version() -> None:
    [name, refs] = warnings({"name": ("SECRET", ["GBR"]), "object_refs": ("SECRET", ["GBR", "KOR"])})
    assert "'name' is required for a report" in name and "receives none of it" in name
    assert "mark optional properties instead" in name
    assert "mark elements such as 'object_refs.[0]' instead" in refs


def test_marking_every_element_of_a_required_list_is_pointed_out() -> None:
    obj = report(object_refs=[rid(2), rid(3)])
    [warning] = warnings({"object_refs.[0]": ("SECRET", ["GBR"]), "object_refs.[1]": ("SECRET", ["GBR", "KOR"])}, obj)
    assert "every element of the required 'object_refs' carries a field marking" in warning
    assert warnings({"object_refs.[0]": ("SECRET", ["GBR"])}, obj) == []


def test_marking_a_property_required_inside_a_list_element_points_to_the_element() -> None:
    obj = report(external_references=[{"source_name": "NIS", "url": "https://example.org"}])
    fields = {"kill_chain_phases.[0].phase_name": ("SECRET", ["GBR"]), "external_references.[0].source_name": WIDE}
    no_effect, kill_chain = warnings(fields, obj)
    assert "'phase_name' is required in each of 'kill_chain_phases'" in kill_chain
    assert "mark 'kill_chain_phases.[0]' instead" in kill_chain
    # A marking that narrows nothing only says so; other properties of an element may be marked alone.
    assert "has no effect" in no_effect
    assert warnings({"external_references.[0].url": ("SECRET", ["GBR"])}, obj) == []


def test_a_no_op_marking_on_a_required_property_only_says_it_has_no_effect() -> None:
    [warning] = warnings({"name": WIDE})
    assert "has no effect" in warning


# inputs ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("description=SECRET:GBR", ("description", ("SECRET", ["GBR"]))),
        ("object_refs.[2]=SECRET:GBR,USA", ("object_refs.[2]", ("SECRET", ["GBR", "USA"]))),
        (" x_a = TOP SECRET : GBR, NATO ", ("x_a", ("TOP SECRET", [" GBR", " NATO "]))),
        ("name=S:GBR,", ("name", ("S", ["GBR"]))),
    ],
)
def test_parse_field(text: str, parsed: tuple[str, tuple[str, list[str]]]) -> None:
    assert parse_field(text) == parsed


@pytest.mark.parametrize("text", ["description", "description=SECRET", "=SECRET:GBR", "description=:GBR", "d=S:"])
def test_parse_field_says_the_syntax(text: str) -> None:
    with pytest.raises(InvalidValue, match=r"SELECTOR=CLASSIFICATION:REL,TO \(for example"):
        parse_field(text)


def test_objects_of_an_object_a_bundle_or_an_envelope() -> None:
    obj = report()
    assert objects_of(obj) == [obj]
    assert objects_of({"type": "bundle", "id": "bundle--x", "objects": [obj]}) == [obj]
    assert objects_of({"objects": [obj], "more": False}) == [obj]
    for bad in ([obj], "report", {"objects": 5}, {"type": "bundle"}):
        with pytest.raises(InvalidRequest, match="one STIX object, a bundle or an envelope"):
            objects_of(bad)


@pytest.mark.parametrize("granular", [5, "x", {"selectors": ["name"]}, [5]])
def test_malformed_markings_count_as_markings(granular: Any) -> None:
    with pytest.raises(InvalidObject, match="already carries markings"):
        mark(report(granular_markings=granular))
    assert "granular_markings" not in mark(report(granular_markings=granular), replace=True).objects[0]
