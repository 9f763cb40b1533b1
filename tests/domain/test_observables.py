"""relto.domain.observables: SCO deterministic ids agree with the stix2 library, and squatted ids are refused."""

from __future__ import annotations

import math
import struct
import uuid
from typing import Any

import orjson
import pytest
import stix2.v21 as s
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relto.domain.observables import SCO_ID_PROPERTIES, _jcs, _number, expected_id, id_mismatch
from relto.domain.stix import SCO_TYPES

IP_REF = "ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742dd"
IP_REF_2 = "ipv4-addr--6da8dad3-4de3-5f8e-ab23-45d0b8f12f16"
DIR_REF = "directory--93c0a9b0-520d-545d-9094-1a08ddf46b05"
EMAIL_REF = "email-addr--2d77a846-6264-5d51-b586-e43822ea1ea3"
MD5 = "4d5f3a1b6c7e8f90a1b2c3d4e5f60718"
SHA1 = "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"
SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
SHA512 = "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce" * 2
SHA3 = "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a"


def as_json(obj: Any) -> dict[str, Any]:
    """What a client would post: stix2's own serialization, parsed the way the node parses bodies."""
    parsed: dict[str, Any] = orjson.loads(obj.serialize())
    return parsed


def sco_id(type_: str, version: int) -> str:
    """An id of the given UUID version that derives from nothing."""
    raw = bytearray(uuid.uuid4().bytes)
    raw[6] = (raw[6] & 0x0F) | (version << 4)
    return f"{type_}--{uuid.UUID(bytes=bytes(raw))}"


# --- agreement with the stix2 library ----------------------------------------------------------------------

STIX2_OBJECTS: dict[str, Any] = {
    "artifact hashes": lambda: s.Artifact(url="https://example.com/a", hashes={"SHA-256": SHA256, "MD5": MD5}),
    "artifact payload": lambda: s.Artifact(payload_bin="VBORw0KGgoAAAANSUhEUgAAADI==", mime_type="image/png"),
    "artifact both": lambda: s.Artifact(payload_bin="aGVsbG8=", hashes={"SHA-512": SHA512, "SHA-1": SHA1}),
    "autonomous-system": lambda: s.AutonomousSystem(number=15169, name="Google"),
    "autonomous-system huge": lambda: s.AutonomousSystem(number=2**60 + 1),
    "directory": lambda: s.Directory(path="C:\\Windows\\Système32\\\u65e5\u672c"),
    "domain-name": lambda: s.DomainName(value="bücher.example"),
    "domain-name emoji": lambda: s.DomainName(value="\U0001f600.example", resolves_to_refs=[IP_REF]),
    "email-addr": lambda: s.EmailAddress(value="jöhn@example.com", display_name="John"),
    "email-message": lambda: s.EmailMessage(
        is_multipart=False, from_ref=EMAIL_REF, subject='Re: \u00e9t\u00e9\t"quoted"\n', body="héllo\u0001\\"
    ),
    "email-message subject only": lambda: s.EmailMessage(is_multipart=False, subject="x", date="2024-01-01T00:00:00Z"),
    "file": lambda: s.File(name="ünïcode €.exe", hashes={"SHA-256": SHA256, "SHA-1": SHA1, "MD5": MD5}),
    "file sha-512 only": lambda: s.File(hashes={"SHA-512": SHA512, "SHA3-256": SHA3}),
    "file non-preferred hash": lambda: s.File(hashes={"SHA3-256": SHA3, "SHA3-512": SHA512}),
    "file parent dir": lambda: s.File(name="a.txt", parent_directory_ref=DIR_REF, size=12),
    "file extensions": lambda: s.File(
        name="x.exe",
        hashes={"SHA-1": SHA1},
        extensions={
            "ntfs-ext": {"sid": "S-1-5", "alternate_data_streams": [{"name": "z", "size": 3}, {"name": "a"}]},
            "windows-pebinary-ext": {"pe_type": "exe", "sections": [{"name": ".text", "entropy": 7.123456789}]},
        },
    ),
    "file custom extension numbers": lambda: s.File(
        name="n",
        extensions={"x-acme-ext": {"z": 0.1 + 0.2, "big": 1e21, "tiny": 1e-7, "int": 2**60 + 1, "neg": -0.0}},
        allow_custom=True,
    ),
    "ipv4-addr": lambda: s.IPv4Address(value="198.51.100.7"),
    "ipv6-addr": lambda: s.IPv6Address(value="2001:db8::1"),
    "mac-addr": lambda: s.MACAddress(value="d2:fb:49:24:37:18"),
    "mutex": lambda: s.Mutex(name="__CLEANSWEEP__\u2603"),
    "network-traffic": lambda: s.NetworkTraffic(
        start="2024-01-01T10:00:00.123Z",
        end="2024-01-01T10:05:00Z",
        is_active=False,
        src_ref=IP_REF,
        dst_ref=IP_REF_2,
        src_port=49152,
        dst_port=443,
        protocols=["ipv4", "tcp", "tls"],
        src_byte_count=1000,
    ),
    "network-traffic extensions": lambda: s.NetworkTraffic(
        dst_ref=IP_REF_2,
        protocols=["tcp", "http"],
        extensions={
            "http-request-ext": {
                "request_method": "get",
                "request_value": "/index.html",
                "request_header": {"User-Agent": "Mozilla", "Accept-Encoding": "gzip", "Host": "example.com"},
            },
            "tcp-ext": {"src_flags_hex": "00000002"},
        },
    ),
    "software": lambda: s.Software(
        name="Word", cpe="cpe:2.3:a:microsoft:word:2000:*:*:*:*:*:*:*", swid="x", vendor="Microsoft", version="2002"
    ),
    "software name only": lambda: s.Software(name="Éditeur", languages=["fr"]),
    "url": lambda: s.URL(value='https://example.com/päth?q=\u4e2d\u6587&x="1"'),
    "user-account": lambda: s.UserAccount(account_type="unix", user_id="1001", account_login="jdoe", display_name="J"),
    "user-account login only": lambda: s.UserAccount(account_login="jdoe"),
    "windows-registry-key": lambda: s.WindowsRegistryKey(
        key="HKEY_LOCAL_MACHINE\\System\\Foo",
        values=[
            {"name": "Foo", "data": "qwerty", "data_type": "REG_SZ"},
            {"name": "Bar", "data": "42", "data_type": "REG_DWORD"},
        ],
    ),
    "x509-certificate": lambda: s.X509Certificate(
        serial_number="36:f7:d4:32:f4:ab:70:ea:d3:ce:98:6e:ea:99:93:49:32:0a:b7:06",
        hashes={"SHA-256": SHA256},
        issuer="C=ZA, O=Thawte",
    ),
    "x509-certificate serial only": lambda: s.X509Certificate(serial_number="01", is_self_signed=True),
}


@pytest.mark.parametrize("make", STIX2_OBJECTS.values(), ids=STIX2_OBJECTS.keys())
def test_expected_id_matches_stix2(make: Any) -> None:
    obj = make()
    posted = as_json(obj)
    assert expected_id(posted) == obj.id
    assert id_mismatch(posted) is None


def test_every_sco_type_with_contributing_properties_is_exercised() -> None:
    covered = {as_json(make())["type"] for make in STIX2_OBJECTS.values()}
    assert covered == {t for t, props in SCO_ID_PROPERTIES.items() if props}


def test_contributing_properties_are_the_specs_and_stix2s() -> None:
    assert set(SCO_ID_PROPERTIES) == SCO_TYPES
    for cls in vars(s.observables).values():
        if isinstance(cls, type) and issubclass(cls, s.base._Observable) and cls is not s.base._Observable:
            assert set(SCO_ID_PROPERTIES[cls._type]) == set(cls._id_contributing_properties), cls._type


def test_reference_extension_and_list_values_bind_the_id() -> None:
    """Refs contribute the id string; list order and every list item count; dict key order does not."""
    one = {"type": "file", "name": "a.txt", "parent_directory_ref": DIR_REF}
    other = {**one, "parent_directory_ref": "directory--0b0a2f69-1c33-5d15-a0a9-3b8ce1e4b3c0"}
    assert expected_id(one) != expected_id(other)
    tcp_ipv4 = {"type": "network-traffic", "src_ref": IP_REF, "protocols": ["tcp", "ipv4"]}
    assert expected_id(tcp_ipv4) != expected_id({**tcp_ipv4, "protocols": ["ipv4", "tcp"]})
    key = {"type": "windows-registry-key", "key": "HKLM\\x", "values": [{"name": "a", "data": "1"}]}
    more = {**key, "values": [{"name": "a", "data": "1"}, {"name": "b"}]}
    assert expected_id(key) != expected_id(more)
    assert expected_id(key) == expected_id({**key, "values": [{"data": "1", "name": "a"}]})


def test_only_the_preferred_hash_contributes() -> None:
    md5_only = {"type": "file", "hashes": {"MD5": MD5}}
    assert expected_id({"type": "file", "hashes": {"SHA-256": SHA256, "MD5": MD5}}) == expected_id(md5_only)
    assert expected_id({"type": "file", "hashes": {"SHA-1": SHA1}}) != expected_id(md5_only)


def test_type_without_contributing_properties_or_with_none_present() -> None:
    assert expected_id({"type": "process", "pid": 4, "command_line": "x"}) is None
    assert expected_id({"type": "user-account", "display_name": "Someone"}) is None
    assert expected_id({"type": "artifact", "url": "https://example.com/a"}) is None
    assert expected_id({"type": "x-acme-widget", "value": "1.2.3.4"}) is None
    assert expected_id({"type": "indicator", "name": "x"}) is None
    assert expected_id({"value": "no type"}) is None


# --- property test -----------------------------------------------------------------------------------------

HASH_LENGTHS = {"MD5": 32, "SHA-1": 40, "SHA-256": 64, "SHA-512": 128, "SHA3-256": 64, "SHA3-512": 128}
texts = st.text(min_size=1, max_size=40)  # any Unicode but surrogates: controls, quotes, astral planes


@st.composite
def hash_dicts(draw: st.DrawFn) -> dict[str, str]:
    algs = draw(st.lists(st.sampled_from(sorted(HASH_LENGTHS)), unique=True, max_size=len(HASH_LENGTHS)))
    return {
        alg: draw(st.text("0123456789abcdefABCDEF", min_size=n, max_size=n))
        for alg, n in HASH_LENGTHS.items()
        if alg in algs
    }


@st.composite
def stix2_scos(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["ipv4-addr", "domain-name", "url", "email-addr", "file"]))
    if kind == "ipv4-addr":
        return s.IPv4Address(value=draw(texts))
    if kind == "domain-name":
        return s.DomainName(value=draw(texts))
    if kind == "url":
        return s.URL(value=draw(texts))
    if kind == "email-addr":
        return s.EmailAddress(value=draw(texts))
    hashes = draw(hash_dicts())
    name = draw(st.none() | texts) if hashes else draw(texts)
    return s.File(**({"hashes": hashes} if hashes else {}), **({"name": name} if name is not None else {}))


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(stix2_scos())
def test_property_expected_id_equals_stix2(obj: Any) -> None:
    posted = as_json(obj)
    assert expected_id(posted) == obj.id
    assert id_mismatch(posted) is None


# --- the acceptance rule -----------------------------------------------------------------------------------


def test_squatting_another_values_id_is_refused() -> None:
    legit = as_json(s.IPv4Address(value="198.51.100.7"))
    squat = {**legit, "value": "203.0.113.9"}
    message = id_mismatch(squat)
    right = s.IPv4Address(value="203.0.113.9").id
    assert message == (
        f"'id' of this ipv4-addr must be {right} derived from its value (STIX 2.1 section 2.9),"
        f" or a random UUIDv4; got {legit['id']!r}"
    )
    assert id_mismatch(legit) is None


def test_squatting_through_hashes_and_refs_is_refused() -> None:
    legit = as_json(s.File(name="putty.exe", hashes={"MD5": MD5}))
    evil = {**legit, "hashes": {"MD5": "0" * 32, "SHA-256": SHA256}}
    message = id_mismatch(evil)
    assert message is not None
    assert "derived from its properties hashes, name (STIX 2.1 section 2.9)" in message
    moved = {**legit, "parent_directory_ref": DIR_REF}
    assert id_mismatch(moved) is not None
    traffic = as_json(s.NetworkTraffic(src_ref=IP_REF, dst_port=443, protocols=["tcp"]))
    assert id_mismatch({**traffic, "dst_port": 22}) is not None
    assert id_mismatch({**traffic, "protocols": ["udp"]}) is not None


def test_any_unordered_hash_may_contribute_but_only_one_that_is_there() -> None:
    """The spec orders MD5..SHA-512 only; for other hashes JSON member order is no basis to refuse."""
    one = s.File(hashes={"SHA3-256": SHA3, "SHA3-512": SHA512})
    two = s.File(hashes={"SHA3-512": SHA512, "SHA3-256": SHA3})
    assert one.id != two.id
    posted = as_json(one)
    assert expected_id(posted) == one.id
    assert id_mismatch(posted) is None
    assert id_mismatch({**posted, "id": two.id}) is None
    not_there = s.File(hashes={"SHA3-256": SHA3.replace("a", "b")}).id
    assert id_mismatch({**posted, "id": not_there}) is not None


def test_uuid4_is_accepted_while_contributing_properties_are_present() -> None:
    assert id_mismatch({"type": "ipv4-addr", "id": sco_id("ipv4-addr", 4), "value": "198.51.100.7"}) is None
    misp_style = {"type": "autonomous-system", "id": "autonomous-system--91ae0a21-c7ae-4c7f-b84b-b84a7ce53d1f"}
    assert id_mismatch({**misp_style, "number": 174}) is None


@pytest.mark.parametrize("version", [1, 3, 5, 6, 7, 8])
def test_other_uuid_versions_must_be_the_deterministic_id(version: int) -> None:
    message = id_mismatch({"type": "domain-name", "id": sco_id("domain-name", version), "value": "example.com"})
    assert message is not None
    assert s.DomainName(value="example.com").id in message


def test_uuid4_digit_without_rfc4122_variant_is_not_a_uuid4() -> None:
    id_ = "mutex--6ba7b810-9dad-41d1-00b4-00c04fd430c8"
    assert id_mismatch({"type": "mutex", "id": id_, "name": "m"}) is not None
    assert id_mismatch({"type": "mutex", "id": id_.replace("-00b4-", "-80b4-"), "name": "m"}) is None


def test_without_contributing_properties_only_uuid4_is_accepted() -> None:
    """'If the contributing properties are all optional, and none are present ... a UUIDv4 MUST be used'."""
    squatted = s.UserAccount(user_id="0").id
    message = id_mismatch({"type": "user-account", "id": squatted, "display_name": "root"})
    assert message == (
        "'id' of this user-account must be user-account--<random UUIDv4>: it has none of its ID contributing"
        " properties (account_type, user_id, account_login), and STIX 2.1 section 2.9 then requires a UUIDv4;"
        f" got {squatted!r}"
    )
    assert id_mismatch({"type": "user-account", "id": sco_id("user-account", 4), "display_name": "root"}) is None
    assert id_mismatch({"type": "artifact", "id": sco_id("artifact", 5), "url": "https://example.com/a"}) is not None


def test_process_takes_any_uuid() -> None:
    for version in (4, 5):
        assert id_mismatch({"type": "process", "id": sco_id("process", version), "pid": 4}) is None
    assert id_mismatch({"type": "process", "id": "process--not-a-uuid", "pid": 4}) is not None


def test_custom_and_non_sco_types_are_not_checked() -> None:
    assert id_mismatch({"type": "x-acme-widget", "id": "x-acme-widget--anything", "value": "1"}) is None
    assert id_mismatch({"type": "indicator", "id": sco_id("indicator", 5)}) is None
    assert id_mismatch({"id": "ipv4-addr--x"}) is None


@pytest.mark.parametrize(
    "id_",
    [
        None,
        42,
        "ipv4-addr--",
        "ipv4-addr-ff26c055-6336-5bc5-b98d-13d6226742dd",
        "domain-name--ff26c055-6336-5bc5-b98d-13d6226742dd",
        "ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742ddx",
        "ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742dg",
    ],
)
def test_malformed_id_is_refused(id_: object) -> None:
    obj = {"type": "ipv4-addr", "value": "1.2.3.4"} | ({} if id_ is None else {"id": id_})
    assert id_mismatch(obj) == f"'id' of this ipv4-addr must be 'ipv4-addr--' followed by a UUID, got {id_!r}"


def test_id_must_match_exactly_not_just_case_insensitively() -> None:
    legit = as_json(s.IPv4Address(value="198.51.100.7"))
    assert id_mismatch({**legit, "id": legit["id"].upper().replace("IPV4-ADDR", "ipv4-addr")}) is not None


def _deep(n: int) -> object:
    value: object = "leaf"
    for _ in range(n):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("obj", "mention"),
    [
        ({"type": "ipv4-addr", "value": None}, "'value' is null"),
        ({"type": "file", "hashes": {}}, "'hashes' is empty"),
        ({"type": "file", "hashes": ["MD5", MD5]}, "'hashes' must be a dictionary"),
        ({"type": "file", "name": "bad\ud800"}, "unpaired surrogate"),
        ({"type": "file", "extensions": {"x-ext": {"\udc00": 1}}}, "unpaired surrogate"),
        ({"type": "file", "name": "n", "extensions": {"x-ext": {"v": math.nan}}}, "not a JSON number"),
        ({"type": "file", "extensions": {"x-ext": {"v": 10**400}}}, "too large"),
        ({"type": "file", "extensions": {"x-ext": {"v": b"bytes"}}}, "not JSON"),
        ({"type": "file", "extensions": {"x-ext": {1: "v"}}}, "must be strings"),
        ({"type": "file", "extensions": {"x-ext": {"d": _deep(150)}}}, "nested more than 100 deep"),
    ],
)
def test_values_without_a_canonical_form_are_refused(obj: dict[str, Any], mention: str) -> None:
    with pytest.raises(ValueError, match=mention):
        expected_id(obj)
    message = id_mismatch({**obj, "id": sco_id(obj["type"], 5)})
    assert message is not None
    assert message.startswith(f"cannot check the 'id' of this {obj['type']} (STIX 2.1 section 2.9): ")
    assert mention in message


# --- RFC 8785 canonicalisation -----------------------------------------------------------------------------

RFC8785_NUMBERS = [  # RFC 8785 appendix B
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "text"), RFC8785_NUMBERS)
def test_rfc8785_numbers(bits: str, text: str) -> None:
    (value,) = struct.unpack(">d", bytes.fromhex(bits))
    assert _number(value) == text


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_numbers_round_trip_and_agree_with_stix2(value: float) -> None:
    from stix2.canonicalization.NumberToJson import convert2Es6Format

    text = _number(value)
    assert float(text) == value
    assert text == convert2Es6Format(value)


def test_rfc8785_example() -> None:
    """RFC 8785 section 3.2.4 (parsing the input with orjson, as the node does)."""
    parsed = orjson.loads(
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    assert _jcs(parsed, 0) == (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )


def test_rfc8785_members_sort_by_utf16_code_units() -> None:
    """RFC 8785 section 3.2.3: the emoji (a surrogate pair) sorts before U+FB33, unlike in code-point order."""
    names = {"\u20ac": 1, "\r": 2, "\ufb33": 3, "1": 4, "\U0001f600": 5, "\u0080": 6, "\u00f6": 7}
    assert list(orjson.loads(_jcs(names, 0))) == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
