"""relto.domain.stix.check_object and relto.domain.timestamps, without a node."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from relto.domain.errors import InvalidObject
from relto.domain.markings import TLP_IDS
from relto.domain.stix import SCO_TYPES, check_object, is_identifier
from relto.domain.timestamps import format_timestamp, now_micros, parse_timestamp

TS = "2024-01-01T00:00:00.000Z"
LATER = "2024-06-01T12:30:00.000Z"
TS_US = 1_704_067_200_000_000


def new_id(type_: str) -> str:
    return f"{type_}--{uuid.uuid4()}"


def sdo(type_: str = "malware", **over: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": type_,
        "spec_version": "2.1",
        "id": new_id(type_),
        "created": TS,
        "modified": LATER,
        "name": "x",
        "is_family": False,
    }
    obj.update(over)
    return obj


def rejected(obj: Any, *mentions: str) -> str:
    with pytest.raises(InvalidObject) as info:
        check_object(obj)
    message = info.value.message
    assert message.strip()
    for word in mentions:
        assert word.lower() in message.lower(), (word, message)
    return message


# timestamps ----------------------------------------------------------------------------------------------
def test_parse_known_values() -> None:
    assert parse_timestamp("1970-01-01T00:00:00Z") == 0
    assert parse_timestamp(TS) == TS_US
    assert parse_timestamp("2024-01-01T00:00:00.000001Z") == TS_US + 1
    assert parse_timestamp("1969-12-31T23:59:59.999999Z") == -1
    assert parse_timestamp("9999-12-31T23:59:59.999999Z") == 253_402_300_799_999_999


@pytest.mark.parametrize("digits", range(10))
def test_fractional_digits_0_to_9(digits: int) -> None:
    frac = "123456789"[:digits]
    text = "2024-01-01T00:00:00" + (f".{frac}" if digits else "") + "Z"
    expected = TS_US + int((frac + "000000")[:6]) if digits else TS_US
    assert parse_timestamp(text) == expected
    # Beyond microseconds the digits are dropped, never rounded into the next microsecond.
    assert parse_timestamp("2024-01-01T00:00:00." + "9" * max(digits, 1) + "Z") == TS_US + int(
        ("9" * max(digits, 1) + "000000")[:6]
    )


@pytest.mark.parametrize("micros", [0, 1, -1, TS_US, TS_US + 123_456, 253_402_300_799_999_999, -62_135_596_800_000_000])
def test_format_parse_round_trip(micros: int) -> None:
    text = format_timestamp(micros)
    assert text.endswith("Z") and len(text) == len("2024-01-01T00:00:00.000000Z")
    assert parse_timestamp(text) == micros
    assert format_timestamp(parse_timestamp(text)) == text


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00.000000Z"),
        ("2024-01-01T00:00:00.1Z", "2024-01-01T00:00:00.100000Z"),
        ("2024-02-29T23:59:59.999Z", "2024-02-29T23:59:59.999000Z"),
        ("2024-01-01T00:00:00.123456789Z", "2024-01-01T00:00:00.123456Z"),
    ],
)
def test_parse_then_format_is_canonical(text: str, canonical: str) -> None:
    assert format_timestamp(parse_timestamp(text)) == canonical


def test_now_is_now() -> None:
    before = parse_timestamp(datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    now = now_micros()
    assert before <= now <= before + 60_000_000


@pytest.mark.parametrize(
    "value",
    [
        "2023-02-29T00:00:00Z",  # not a leap year
        "2024-02-30T00:00:00Z",
        "2024-04-31T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-00-10T00:00:00Z",
        "2024-01-00T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T23:60:00Z",
        "2024-01-01T23:59:61Z",
        "0000-01-01T00:00:00Z",
        "yesterday",
        "",
        "2024-01-01",
        "2024-01-01T00:00:00",
        "2024-01-01T00:00:00z",
        "2024-01-01 00:00:00Z",
        "2024-01-01T00:00:00+00:00",
        "2024-01-01T00:00:00.Z",
        "2024-01-01T00:00:00.1234567890Z",
        "24-01-01T00:00:00Z",
        "2024-1-01T00:00:00Z",
        " 2024-01-01T00:00:00Z",
        "2024-01-01T00:00:00Z ",
        "2024-01-01T00:00:00Z\n",
        "\u0662\u0660\u0662\u0664-01-01T00:00:00Z",  # Arabic-Indic digits match \d but are not RFC 3339
        12345,
        1.5,
        None,
        ["2024-01-01T00:00:00Z"],
    ],
)
def test_invalid_timestamps_are_rejected(value: object) -> None:
    with pytest.raises(InvalidObject) as info:
        parse_timestamp(value, "'created'")
    assert "'created'" in info.value.message


def test_timestamp_message_names_the_property() -> None:
    with pytest.raises(InvalidObject, match="added_after"):
        parse_timestamp("yesterday", "added_after")


# check_object: what passes -------------------------------------------------------------------------------
def test_sdo_passes_with_its_version() -> None:
    obj = sdo()
    checked = check_object(obj)
    assert checked.id == obj["id"]
    assert checked.type == "malware"
    assert checked.spec_version == "2.1"
    assert checked.version == parse_timestamp(LATER)
    assert checked.version_text == LATER
    assert checked.marking_refs == ()


def test_modified_equal_to_created_passes() -> None:
    assert check_object(sdo(modified=TS)).version == TS_US


def test_uppercase_uuid_passes() -> None:
    obj = sdo(id="malware--" + str(uuid.uuid4()).upper())
    assert check_object(obj).id == obj["id"]


@pytest.mark.parametrize("type_", sorted(SCO_TYPES))
def test_sco_without_spec_version_or_created_is_version_0(type_: str) -> None:
    obj = {"type": type_, "id": new_id(type_), "value": "x"}
    checked = check_object(obj)
    assert checked.version == 0
    assert checked.version_text is None
    assert checked.spec_version == "2.1"


def test_sco_with_spec_version_and_created_only() -> None:
    obj = {"type": "ipv4-addr", "spec_version": "2.1", "id": new_id("ipv4-addr"), "value": "198.51.100.1"}
    assert check_object(obj).version == 0
    checked = check_object({**obj, "created": TS})
    assert checked.version == TS_US


def test_marking_definition_needs_created_only() -> None:
    obj = {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": new_id("marking-definition"),
        "created": TS,
        "definition_type": "statement",
        "definition": {"statement": "x"},
    }
    checked = check_object(obj)
    assert checked.version == TS_US
    assert checked.version_text == TS


@pytest.mark.parametrize(
    "obj",
    [
        {"type": "x-acme-widget", "spec_version": "2.1", "created": TS, "modified": LATER, "colour": "red"},
        {"type": "x-acme-widget", "spec_version": "2.1", "colour": "red"},
        {"type": "x-a1", "spec_version": "2.1", "created": TS, "modified": TS},
    ],
)
def test_custom_x_types_pass(obj: dict[str, Any]) -> None:
    obj = {**obj, "id": new_id(obj["type"])}
    checked = check_object(obj)
    assert checked.type == obj["type"]
    assert checked.version == (parse_timestamp(obj["modified"]) if "modified" in obj else 0)


# OpenCTI's own observable types (pycti's CustomObservable classes): a value, no created or modified.
OPENCTI_OBSERVABLES = (
    "hostname",
    "text",
    "user-agent",
    "phone-number",
    "cryptocurrency-wallet",
    "bank-account",
    "credential",
    "payment-card",
    "tracking-number",
    "media-content",
)


@pytest.mark.parametrize("type_", OPENCTI_OBSERVABLES)
def test_unknown_type_without_created_or_modified_is_an_sco(type_: str) -> None:
    """An object of a type relto does not know is judged by its shape: no created/modified is an SCO."""
    obj = {"type": type_, "spec_version": "2.1", "id": new_id(type_), "value": "x", "x_opencti_score": 50}
    checked = check_object(obj)
    assert (checked.type, checked.version, checked.version_text, checked.spec_version) == (type_, 0, None, "2.1")


@pytest.mark.parametrize("type_", ["hostname", "x-acme-sensor"])
def test_unknown_sco_may_leave_out_spec_version_like_any_sco(type_: str) -> None:
    """STIX 2.1 makes spec_version optional on SCOs; an unknown type shaped like one gets the same."""
    checked = check_object({"type": type_, "id": new_id(type_), "value": "x"})
    assert (checked.version, checked.spec_version) == (0, "2.1")


def test_unknown_sco_ids_need_not_be_deterministic() -> None:
    """SCO ids are UUIDv5 of their contributing properties, which relto cannot know for unknown types."""
    for made in (uuid.uuid4(), uuid.uuid5(uuid.NAMESPACE_URL, "x"), uuid.uuid1()):
        assert check_object({"type": "hostname", "spec_version": "2.1", "id": f"hostname--{made}"}).version == 0


@pytest.mark.parametrize("type_", ["malware", "indicator", "report", "relationship", "sighting", "identity"])
def test_known_sdo_without_created_and_modified_is_still_rejected(type_: str) -> None:
    rejected({"type": type_, "spec_version": "2.1", "id": new_id(type_), "name": "x"}, "created", "modified")


def test_unknown_type_with_created_only_is_rejected() -> None:
    """Half an SDO's timestamps is a mistake, not an SCO."""
    rejected({"type": "hostname", "spec_version": "2.1", "id": new_id("hostname"), "created": TS}, "modified")


def test_custom_properties_and_extensions_pass_unchanged() -> None:
    obj = sdo(x_acme_score=99, extensions={"extension-definition--" + str(uuid.uuid4()): {"a": 1}})
    before = dict(obj)
    check_object(obj)
    assert obj == before


def test_marking_refs_collects_object_and_granular_refs() -> None:
    amber, red = TLP_IDS["amber"], TLP_IDS["red"]
    obj = sdo(
        object_marking_refs=[amber, amber],
        granular_markings=[
            {"marking_ref": red, "selectors": ["name"]},
            {"marking_ref": amber, "selectors": ["description"]},
            {"lang": "fr", "selectors": ["name"]},
        ],
    )
    assert check_object(obj).marking_refs == (amber, red)


@pytest.mark.parametrize("type_", ["relationship", "sighting", "indicator", "report"])
def test_types_with_required_properties_pass_when_complete(type_: str) -> None:
    extra = {
        "relationship": {
            "relationship_type": "indicates",
            "source_ref": new_id("indicator"),
            "target_ref": new_id("malware"),
        },
        "sighting": {"sighting_of_ref": new_id("indicator")},
        "indicator": {"pattern": "[ipv4-addr:value = '198.51.100.1']", "pattern_type": "stix", "valid_from": TS},
        "report": {"name": "r", "published": TS, "object_refs": [new_id("malware")]},
    }[type_]
    obj = {"type": type_, "spec_version": "2.1", "id": new_id(type_), "created": TS, "modified": TS, **extra}
    assert check_object(obj).type == type_


# check_object: what is rejected, and the message says what to fix -----------------------------------------
@pytest.mark.parametrize("value", ["a string", 5, None, [], ["x"], True])
def test_non_objects_are_rejected(value: object) -> None:
    rejected(value, "JSON object")


@pytest.mark.parametrize(
    "type_",
    [
        None,
        "",
        "ab",
        "Malware",
        "mal ware",
        "-malware",
        "malware-",
        "mal--ware",
        5,
        "a" * 251,
        "malware\n",
        "malware_x",
    ],
)
def test_bad_type_is_rejected(type_: object) -> None:
    obj = sdo()
    obj["type"] = type_
    if isinstance(type_, str):
        obj["id"] = f"{type_}--{uuid.uuid4()}"
    rejected(obj, "'type'")


def test_type_of_3_and_250_characters_passes() -> None:
    for type_ in ("x-a", "x-" + "a" * 248):
        assert check_object({"type": type_, "spec_version": "2.1", "id": new_id(type_)}).type == type_


@pytest.mark.parametrize(
    "id_",
    [
        None,
        5,
        "",
        "malware",
        "malware--",
        "malware--not-a-uuid",
        "malware--" + "0" * 32,
        "indicator--" + str(uuid.uuid4()),
        "malware-" + str(uuid.uuid4()),
        "malware--" + str(uuid.uuid4()) + "0",
        "malware--" + str(uuid.uuid4()) + "\n",
        " malware--" + str(uuid.uuid4()),
        "malware--" + str(uuid.uuid4()).replace("-", ""),
        "malware--{" + str(uuid.uuid4()) + "}",
    ],
)
def test_bad_id_is_rejected(id_: object) -> None:
    rejected(sdo(id=id_), "'id'", "malware--")


@pytest.mark.parametrize("spec", ["2.0", "2.2", 2.1, "", "2.1 "])
def test_bad_spec_version_is_rejected(spec: object) -> None:
    rejected(sdo(spec_version=spec), "spec_version", "2.1")


def test_sdo_without_spec_version_is_rejected() -> None:
    obj = sdo()
    del obj["spec_version"]
    rejected(obj, "spec_version")


def test_custom_type_shaped_like_an_sdo_without_spec_version_is_rejected() -> None:
    """An unknown type with created/modified is judged an SDO, and an SDO states its spec_version."""
    obj = {"type": "x-acme-widget", "id": new_id("x-acme-widget"), "created": TS, "modified": LATER}
    rejected(obj, "spec_version")


@pytest.mark.parametrize("missing", [("created", "modified"), ("modified",), ("created",)])
def test_sdo_missing_created_or_modified_is_rejected(missing: tuple[str, ...]) -> None:
    """STIX 2.1 3.2: created and modified are both required on every SDO and SRO."""
    obj = sdo()
    for prop in missing:
        del obj[prop]
    rejected(obj, missing[-1] if len(missing) == 1 else "created")


@pytest.mark.parametrize("prop", ["created", "modified"])
@pytest.mark.parametrize("value", ["2024-13-01T00:00:00Z", "yesterday", 12345, "2024-02-30T00:00:00Z", ""])
def test_bad_timestamps_are_rejected(prop: str, value: object) -> None:
    rejected(sdo(**{prop: value}), f"'{prop}'")


def test_modified_before_created_is_rejected() -> None:
    rejected(sdo(created=LATER, modified=TS), "earlier", LATER, TS)


def test_modified_a_microsecond_before_created_is_rejected() -> None:
    rejected(sdo(created="2024-01-01T00:00:00.000001Z", modified="2024-01-01T00:00:00Z"), "earlier")


@pytest.mark.parametrize(
    "refs",
    [
        TLP_IDS["red"],
        {"id": TLP_IDS["red"]},
        [5],
        ["TLP:RED"],
        [new_id("identity")],
        ["marking-definition--not-a-uuid"],
        [TLP_IDS["red"], None],
        [TLP_IDS["red"] + "\n"],
    ],
)
def test_bad_object_marking_refs_are_rejected(refs: object) -> None:
    rejected(sdo(object_marking_refs=refs), "object_marking_refs")


@pytest.mark.parametrize(
    "granular",
    [
        "x",
        [5],
        [{"marking_ref": TLP_IDS["red"]}],
        [{"marking_ref": TLP_IDS["red"], "selectors": []}],
        [{"marking_ref": TLP_IDS["red"], "selectors": "name"}],
        [{"selectors": ["name"]}],
        [{"marking_ref": new_id("identity"), "selectors": ["name"]}],
    ],
)
def test_bad_granular_markings_are_rejected(granular: object) -> None:
    rejected(sdo(granular_markings=granular), "granular")


@pytest.mark.parametrize(
    ("type_", "prop"),
    [
        ("relationship", "source_ref"),
        ("relationship", "target_ref"),
        ("relationship", "relationship_type"),
        ("sighting", "sighting_of_ref"),
        ("indicator", "pattern"),
        ("report", "object_refs"),
    ],
)
@pytest.mark.parametrize("how", ["missing", "empty"])
def test_missing_required_properties_are_rejected(type_: str, prop: str, how: str) -> None:
    extra: dict[str, Any] = {
        "relationship": {
            "relationship_type": "indicates",
            "source_ref": new_id("indicator"),
            "target_ref": new_id("malware"),
        },
        "sighting": {"sighting_of_ref": new_id("indicator")},
        "indicator": {"pattern": "[ipv4-addr:value = '198.51.100.1']", "pattern_type": "stix", "valid_from": TS},
        "report": {"name": "r", "published": TS, "object_refs": [new_id("malware")]},
    }[type_]
    obj = {"type": type_, "spec_version": "2.1", "id": new_id(type_), "created": TS, "modified": TS, **extra}
    if how == "missing":
        del obj[prop]
    else:
        obj[prop] = [] if prop == "object_refs" else ""
    rejected(obj, prop, type_)


@pytest.mark.parametrize(
    "ref", [new_id("malware"), "identity--x", 5, "identity--" + str(uuid.uuid4()) + "\n", ["identity--x"]]
)
def test_bad_created_by_ref_is_rejected(ref: object) -> None:
    rejected(sdo(created_by_ref=ref), "created_by_ref")


def test_is_identifier() -> None:
    good = new_id("identity")
    assert is_identifier(good)
    assert is_identifier(good, "identity")
    assert not is_identifier(good, "malware")
    assert not is_identifier(good, "ident")
    assert not is_identifier(5)
    assert not is_identifier(good + "\n")
    assert not is_identifier("identity--" + "z" * 36)


def test_a_bundle_is_not_taken_for_an_unknown_observable() -> None:
    """A bundle has neither created nor modified, but it is a wrapper, not an object to store."""
    rejected({"type": "bundle", "id": new_id("bundle"), "objects": []}, "bundle", "envelope")
