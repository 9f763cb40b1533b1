"""The pure release functions: selectors, analysis at publish, redaction at release."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from relto.domain.errors import InvalidObject
from relto.domain.redact import Shape, analyse, redact
from relto.domain.selectors import format_selector, parse_selector

M1 = "marking-definition--11111111-1111-4111-8111-111111111111"
M2 = "marking-definition--22222222-2222-4222-8222-222222222222"
A = "identity--aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
B = "malware--bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
C = "tool--cccccccc-cccc-4ccc-8ccc-cccccccccccc"


def report(**extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "report",
        "spec_version": "2.1",
        "id": "report--dddddddd-dddd-4ddd-8ddd-dddddddddddd",
        "created": "2024-10-18T00:00:00Z",
        "modified": "2024-10-18T00:00:00Z",
        "name": "r",
        "published": "2024-10-18T00:00:00Z",
        "object_refs": [A, B, C],
        "object_marking_refs": [M1],
    }
    obj.update(extra)
    return obj


@pytest.mark.parametrize(
    ("text", "path"),
    [("description", ("description",)), ("object_refs.[2]", ("object_refs", 2)), ("a.[0].b", ("a", 0, "b"))],
)
def test_selectors_parse_and_format(text: str, path: tuple[Any, ...]) -> None:
    assert parse_selector(text) == path
    assert format_selector(path) == text


@pytest.mark.parametrize("bad", ["", "a..b", "a[0]", "[1]", "a.[x]", "a.[-1]"])
def test_bad_selectors_are_refused(bad: str) -> None:
    with pytest.raises(InvalidObject):
        parse_selector(bad)


def test_analyse_combines_outer_markings_and_spots_required_properties() -> None:
    obj = report(
        kill_chain_phases=[{"kill_chain_name": "k", "phase_name": "p"}],
        granular_markings=[
            {"selectors": ["kill_chain_phases"], "marking_ref": M1},
            {"selectors": ["kill_chain_phases.[0].phase_name", "name"], "marking_ref": M2},
            {"selectors": ["object_refs.[1]"], "lang": "fr"},
        ],
        created_by_ref=A,
        extensions={"x-ext": {"extension_type": "property-extension", "owner_ref": C}},
    )
    analysis = analyse(obj)
    fields = {f.selector: (f.refs, f.whole_required) for f in analysis.fields}
    assert fields == {
        "kill_chain_phases": ((M1,), False),
        "kill_chain_phases.[0].phase_name": (tuple(sorted((M1, M2))), False),
        "name": ((M2,), True),
    }
    assert set(analysis.references) == {A, B, C}
    assert analysis.endpoints == ()


def test_analyse_refuses_selectors_that_name_nothing() -> None:
    for selector in ("description", "object_refs.[3]", "name.[0]", "granular_markings"):
        with pytest.raises(InvalidObject):
            analyse(report(granular_markings=[{"selectors": [selector], "marking_ref": M2}]))


def test_removed_list_elements_renumber_the_remaining_selectors() -> None:
    obj = report(
        granular_markings=[
            {"selectors": ["object_refs.[0]"], "marking_ref": M2},
            {"selectors": ["object_refs.[2]", "name"], "lang": "en"},
        ]
    )
    out = redact(copy.deepcopy(obj), ["object_refs.[0]"], {B})
    assert out is not None
    assert out["object_refs"] == [C]
    assert out["granular_markings"] == [{"selectors": ["object_refs.[0]", "name"], "lang": "en"}]


def test_a_required_list_emptied_withholds_and_an_optional_one_goes() -> None:
    assert redact(report(), [], {A, B, C}) is None
    sighting = {
        "type": "sighting",
        "id": "sighting--eeeeeeee-eeee-4eee-8eee-eeeeeeeeeeee",
        "sighting_of_ref": B,
        "where_sighted_refs": [A],
    }
    out = redact(copy.deepcopy(sighting), [], {A})
    assert out is not None and "where_sighted_refs" not in out
    assert redact(copy.deepcopy(sighting), [], {B}) is None


def test_nested_references_and_fields_go_and_markings_are_kept() -> None:
    obj = report(
        description="secret",
        extensions={"x-ext": {"extension_type": "property-extension", "owner_ref": C, "other": 1}},
        granular_markings=[{"selectors": ["description"], "marking_ref": M2}],
    )
    out = redact(copy.deepcopy(obj), ["description"], {C})
    assert out is not None
    assert "description" not in out and "granular_markings" not in out
    assert out["extensions"] == {"x-ext": {"extension_type": "property-extension", "other": 1}}
    assert out["object_refs"] == [A, B]
    assert out["object_marking_refs"] == [M1]


def test_nothing_hidden_leaves_the_object_alone() -> None:
    obj = report(granular_markings=[{"selectors": ["name"], "marking_ref": M2}])
    assert redact(copy.deepcopy(obj), [], set()) == obj
    assert redact(copy.deepcopy(obj), [], {"tool--00000000-0000-4000-8000-000000000000"}) == obj


def test_shape_round_trips_and_is_none_when_empty() -> None:
    shape = Shape(((3, "description"),), (A, B), (B,))
    raw = shape.encode()
    assert raw is not None and Shape.decode(raw) == shape
    assert Shape().encode() is None and Shape.decode(None) == Shape()


def test_references_below_the_top_level_are_flagged_so_flat_objects_skip_the_deep_walk() -> None:
    flat = analyse(report(created_by_ref=A))
    assert flat.nested is False
    deep = analyse(report(extensions={"x-ext": {"extension_type": "property-extension", "owner_ref": C}}))
    assert deep.nested is True
    shape = Shape((), deep.references, (), deep.nested)
    assert Shape.decode(shape.encode()).nested is True


def test_reference_like_properties_that_hold_no_id_are_left_alone() -> None:
    obj = report(x_odd_ref={"not": "an id"}, x_odd_refs=[["nested"], A], created_by_ref=A)
    for nested in (True, False):
        out = redact(copy.deepcopy(obj), [], {A}, nested=nested)
        assert out is not None
        assert out["x_odd_ref"] == {"not": "an id"} and out["x_odd_refs"] == [["nested"]]
        assert "created_by_ref" not in out and out["object_refs"] == [B, C]


def test_references_are_found_from_the_parsed_object_whatever_its_keys() -> None:
    """Issue 9, class 7: odd top-level keys (one literally named marking_ref beside granular markings) used to
    make a byte count skip the walk and miss a reference in an extension."""
    flat = report(created_by_ref=A, external_references=[{"source_name": "s", "url": "u"}])
    assert analyse(flat).nested is False
    deep = report(x_links=[{"owner_ref": C}], created_by_ref=A)
    assert analyse(deep).nested is True and C in analyse(deep).references
    tricky = report(
        granular_markings=[{"selectors": ["name"], "marking_ref": M2}],
        marking_ref="x",
        extensions={"extension-definition--1": {"extension_type": "property-extension", "x_target_ref": C}},
    )
    assert C in analyse(tricky).references and analyse(tricky).nested is True


def test_a_reference_inside_an_object_in_a_refs_list_is_found() -> None:
    """Found by the release property test: `x_parts_refs: [{"part_ref": C}]` leaked C to parties it is hidden from."""
    obj = report(x_parts_refs=[{"part_ref": C, "x_role": "part"}])
    assert C in analyse(obj).references and analyse(obj).nested is True
