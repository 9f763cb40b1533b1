"""The pure release functions: selectors, analysis at publish, redaction at release."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relto.domain.errors import InvalidObject
from relto.domain.redact import Shape, analyse, cut, redact
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


# cutting the stored bytes (`cut`): the same answer as parsing, trimming and serialising -------------------
POOL = (A, B, C, "identity--99999999-9999-4999-8999-999999999999")
SELECTABLE_TYPES = ("report", "relationship", "sighting", "malware", "x-custom")
_text = st.one_of(
    st.text(max_size=8),
    st.sampled_from([f'"{A}"', f'say "{B}", \\ {C}', "é\u2028\x00", f"{A}"]),
)
_value = st.one_of(_text, st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False), st.booleans())
_extra = {
    "created_by_ref": st.sampled_from(POOL),
    "x_a_ref": st.sampled_from(POOL),
    "x_c_ref": st.one_of(st.sampled_from(POOL), st.dictionaries(st.text(max_size=3), _value, max_size=2)),
    "x_b_refs": st.lists(st.one_of(st.sampled_from(POOL), _value, st.lists(_value, max_size=2)), max_size=4),
    "where_sighted_refs": st.lists(st.sampled_from(POOL), min_size=1, max_size=3),
    "description": _text,
    "labels": st.lists(_text, min_size=1, max_size=3),
    "x_num": _value,
    "x_obj": st.dictionaries(st.text(max_size=3), _value, min_size=1, max_size=2),
    "x_deep": st.lists(st.fixed_dictionaries({"owner_ref": st.sampled_from(POOL)}), min_size=1, max_size=2),
}


@st.composite
def stored_objects(draw: Any) -> dict[str, Any]:
    """An object as it could be published: required properties, references and other members in any order,
    granular markings on some of its fields (whole members and list elements)."""
    type_ = draw(st.sampled_from(SELECTABLE_TYPES))
    obj: dict[str, Any] = {"type": type_, "id": f"{type_}--{draw(st.uuids())}", "spec_version": "2.1"}
    obj.update(created="2024-10-18T00:00:00Z", modified="2024-10-18T00:00:00Z")
    if type_ == "report":
        obj.update(
            name="r", published="2024-10-18T00:00:00Z", object_refs=draw(st.lists(st.sampled_from(POOL), min_size=1))
        )
    elif type_ == "relationship":
        obj.update(
            relationship_type="uses", source_ref=draw(st.sampled_from(POOL)), target_ref=draw(st.sampled_from(POOL))
        )
    elif type_ == "sighting":
        obj.update(sighting_of_ref=draw(st.sampled_from(POOL)))
    elif type_ == "malware":
        obj.update(name="m", is_family=draw(st.booleans()))
    for key in draw(st.lists(st.sampled_from(sorted(_extra)), unique=True)):
        obj[key] = draw(_extra[key])
    obj["object_marking_refs"] = [M1]
    keys = draw(st.permutations(list(obj)))
    obj = {k: obj[k] for k in keys}
    selectable = [k for k in obj if k not in ("id", "type", "object_marking_refs")]
    selectable += [f"{k}.[{i}]" for k in ("labels", "x_b_refs", "object_refs") for i in range(len(obj.get(k, ())))]
    chosen = draw(st.lists(st.sampled_from(selectable), unique=True, max_size=4))
    if chosen:
        split = draw(st.integers(0, len(chosen)))
        entries = [{"selectors": chosen[:split], "marking_ref": M2}, {"selectors": chosen[split:], "lang": "en"}]
        obj["granular_markings"] = [e for e in entries if e["selectors"]]
    return obj


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(stored_objects(), st.data())
def test_cutting_the_stored_bytes_equals_parsing_and_trimming(obj: dict[str, Any], data: st.DataObject) -> None:
    analysis = analyse(obj)
    selectors = [f.selector for f in analysis.fields]
    shape = Shape(
        tuple((7, s) for s in selectors), analysis.references, analysis.endpoints, analysis.nested, deep=analysis.deep
    )
    shape = Shape.decode(shape.with_members(obj).encode())
    body = orjson.dumps(obj)
    hidden_selectors = data.draw(st.lists(st.sampled_from(selectors), unique=True) if selectors else st.just([]))
    hidden_ids = set(data.draw(st.lists(st.sampled_from(POOL), unique=True)))
    parsed = redact(orjson.loads(body), hidden_selectors, hidden_ids, nested=analysis.nested)
    done, cut_bytes = cut(body, shape, obj["type"], hidden_selectors, hidden_ids)
    if done:
        assert cut_bytes == (None if parsed is None else orjson.dumps(parsed))
    else:  # it may decline only what it cannot do without parsing (or a version with nothing to trim)
        assert (
            shape.encode() is None
            or not hidden_ids.isdisjoint(analysis.deep)
            or any(len(parse_selector(s)) > 1 for s in hidden_selectors)
        )


def test_cut_declines_spans_that_do_not_describe_the_body() -> None:
    obj = report(x_a_ref=A, x_c_ref=C, created_by_ref=A)
    shape = Shape((), analyse(obj).references).with_members(obj)
    swapped = {("x_c_ref" if k == "x_a_ref" else "x_a_ref" if k == "x_c_ref" else k): v for k, v in obj.items()}
    body = orjson.dumps(swapped)  # the same length, other keys where the spans point
    assert len(body) == shape.size
    assert cut(body, shape, "report", [], {A}) == (False, None)
    assert cut(orjson.dumps(obj), shape, "report", [], {A})[0] is True
