"""Deterministic ids of STIX 2.1 Cyber-observable Objects (SCOs), and whether a posted SCO's id is acceptable.

STIX 2.1 section 2.9: an SCO's id SHOULD be a UUIDv5 in namespace 00abedb4-aa42-466c-9c01-fed23315a9b7 whose
name is the RFC 8785 (JCS) serialization of a JSON object holding the SCO's "ID Contributing Properties"
(listed per type in section 6) that are present; "If the contributing properties are all optional, and none
are present on the SCO, then a UUIDv4 MUST be used." Values are used exactly as posted: reference properties
(from_ref, src_ref, parent_directory_ref, ...) contribute the referenced id string, and list or dictionary
properties (protocols, values, extensions) contribute their whole value, arrays in their given order and
object members sorted at every depth (JCS). Of `hashes` only one hash contributes: the first present of MD5,
SHA-1, SHA-256, SHA-512 (sections 6.1, 6.7, 6.18); when none of those is present the spec sets no order, so
expected_id takes the first in the object (as the stix2 library does) and id_mismatch accepts any of them.

Acceptance rule (id_mismatch). A UUIDv4 is accepted whenever contributing properties are present, because
section 2.9 only says SCOs "SHOULD use UUIDv5" (misp-stix emits MISP's UUIDv4s) and a UUIDv4 can never equal a
deterministic id, so it cannot squat one. Any other UUID must be exactly the UUIDv5 computed here: a UUIDv5 of
some other name or namespace cannot be told apart from a squat, and a producer using the STIX namespace
without following the rules breaks "Producers not following these rules MUST NOT use a namespace of
00abedb4-..." (the stix2 library matches; OpenCTI's own property selection for some types does not). When
none of the contributing properties is present only a UUIDv4 is accepted (the spec's MUST), and process,
which defines none, takes any UUID.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from json.encoder import encode_basestring
from typing import Any

__all__ = ["SCO_ID_PROPERTIES", "expected_id", "id_mismatch"]

NAMESPACE = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")

# STIX 2.1 section 6, "ID Contributing Properties" of each SCO, in the order the spec lists them.
SCO_ID_PROPERTIES: Mapping[str, tuple[str, ...]] = {
    "artifact": ("hashes", "payload_bin"),
    "autonomous-system": ("number",),
    "directory": ("path",),
    "domain-name": ("value",),
    "email-addr": ("value",),
    "email-message": ("from_ref", "subject", "body"),
    "file": ("hashes", "name", "extensions", "parent_directory_ref"),
    "ipv4-addr": ("value",),
    "ipv6-addr": ("value",),
    "mac-addr": ("value",),
    "mutex": ("name",),
    "network-traffic": ("start", "end", "src_ref", "dst_ref", "src_port", "dst_port", "protocols", "extensions"),
    "process": (),
    "software": ("name", "cpe", "swid", "vendor", "version"),
    "url": ("value",),
    "user-account": ("account_type", "user_id", "account_login"),
    "windows-registry-key": ("key", "values"),
    "x509-certificate": ("hashes", "serial_number"),
}

# The order of preference for the one contributing hash (sections 6.1.1, 6.7.1, 6.18.1).
_PREFERRED_HASHES = ("MD5", "SHA-1", "SHA-256", "SHA-512")
# Property names are ASCII, so code-point order is the UTF-16 order JCS sorts members by.
_SORTED = {t: tuple(sorted(p)) for t, p in SCO_ID_PROPERTIES.items()}
_KEY = {p: encode_basestring(p) + ":" for props in SCO_ID_PROPERTIES.values() for p in props}
_NS_BYTES = NAMESPACE.bytes
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_MAX_EXACT_INT = 2**53  # integers beyond this are not exact IEEE-754 doubles, which JCS numbers are
_MAX_DEPTH = 100


def expected_id(obj: Mapping[str, Any]) -> str | None:
    """The UUIDv5 id STIX 2.1 defines for this SCO from its id-contributing properties; None when the type has
    none defined or none of them are present (then any UUIDv4 id is allowed).

    Raises ValueError, saying what is wrong, when a contributing value has no JSON canonical form (null, an
    empty `hashes`, NaN, an unpaired surrogate, a non-JSON type).
    """
    type_ = obj.get("type")
    if not isinstance(type_, str) or type_ not in _SORTED:
        return None
    names = _names(obj, _SORTED[type_], every_hash=False)
    return f"{type_}--{_uuid5(names[0])}" if names else None


def id_mismatch(obj: Mapping[str, Any]) -> str | None:
    """None when obj's id is acceptable under the rule in the module docstring; otherwise a short message
    saying what to fix. Types other than the 18 STIX 2.1 SCOs are not checked."""
    type_ = obj.get("type")
    if not isinstance(type_, str) or type_ not in _SORTED:
        return None
    id_ = obj.get("id")
    n = len(type_)
    if not (isinstance(id_, str) and id_[n : n + 2] == "--" and id_.startswith(type_) and _UUID.fullmatch(id_, n + 2)):
        return f"'id' of this {type_} must be '{type_}--' followed by a UUID, got {id_!r}"
    props = _SORTED[type_]
    if not props:
        return None
    try:
        names = _names(obj, props, every_hash=True)
    except ValueError as e:
        return f"cannot check the 'id' of this {type_} (STIX 2.1 section 2.9): {e}"
    is_v4 = id_[n + 16] == "4" and id_[n + 21] in "89abAB"
    if not names:
        if is_v4:
            return None
        listed = ", ".join(SCO_ID_PROPERTIES[type_])
        return (
            f"'id' of this {type_} must be {type_}--<random UUIDv4>: it has none of its ID contributing properties"
            f" ({listed}), and STIX 2.1 section 2.9 then requires a UUIDv4; got {id_!r}"
        )
    if is_v4:
        return None
    uuids = [_uuid5(name) for name in names]
    if id_[n + 2 :] in uuids:
        return None
    present = [p for p in SCO_ID_PROPERTIES[type_] if p in obj]
    from_ = "its " + (present[0] if len(present) == 1 else "properties " + ", ".join(present))
    return (
        f"'id' of this {type_} must be {type_}--{uuids[0]} derived from {from_} (STIX 2.1 section 2.9),"
        f" or a random UUIDv4; got {id_!r}"
    )


def _names(obj: Mapping[str, Any], props: tuple[str, ...], every_hash: bool) -> list[bytes]:
    """The UUIDv5 names (UTF-8 JCS text) for obj; empty when no contributing property is present. More than
    one only when every_hash and the contributing hash is not one the spec orders."""
    members: list[str] = []
    hashes_at = -1
    hash_members: list[str] = []
    for prop in props:  # sorted, so the members come out in JCS order
        if prop not in obj:
            continue
        value = obj[prop]
        if value is None:
            raise ValueError(f"'{prop}' is null, which STIX 2.1 forbids: leave the property out instead")
        if prop == "hashes":
            hashes_at = len(members)
            hash_members = [
                _KEY[prop] + "{" + encode_basestring(alg) + ":" + _jcs(v, 1) + "}"
                for alg, v in _hash_choices(value, every_hash)
            ]
            members.append("")  # filled in below, once per hash choice
        else:
            members.append(_KEY[prop] + _jcs(value, 0))
    if not members:
        return []
    if hashes_at < 0:
        return [_utf8("{" + ",".join(members) + "}")]
    names = []
    for member in hash_members:
        members[hashes_at] = member
        names.append(_utf8("{" + ",".join(members) + "}"))
    return names


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a value holds an unpaired surrogate, which has no UTF-8 (RFC 8785) form") from None


def _hash_choices(hashes: object, every: bool) -> list[tuple[str, Any]]:
    """The (algorithm, value) pairs that may contribute: the preferred one, else any (every) or the first."""
    if not isinstance(hashes, Mapping):
        raise ValueError("'hashes' must be a dictionary of hash algorithm name to hash value")
    if not hashes:
        raise ValueError("'hashes' is empty, which STIX 2.1 forbids: give at least one hash or leave it out")
    for alg in _PREFERRED_HASHES:
        if alg in hashes:
            return [(alg, hashes[alg])]
    items = [(k, v) for k, v in hashes.items() if isinstance(k, str)]
    if len(items) != len(hashes):
        raise ValueError("'hashes' keys must be strings")
    return items if every else items[:1]


def _uuid5(name: bytes) -> str:
    """uuid5(NAMESPACE, name) as text, without building UUID objects (this is on the publish path)."""
    d = bytearray(hashlib.sha1(_NS_BYTES + name, usedforsecurity=False).digest()[:16])
    d[6] = (d[6] & 0x0F) | 0x50  # version 5
    d[8] = (d[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = d.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _jcs(value: object, depth: int) -> str:
    """RFC 8785 canonical JSON text of a parsed-JSON value (UTF-8 checking happens once, in _utf8)."""
    if isinstance(value, str):
        return encode_basestring(value)  # escapes exactly ", \ and U+0000-U+001F, as RFC 8785 3.2.2.2 does
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value) if -_MAX_EXACT_INT <= value <= _MAX_EXACT_INT else _number(value)
    if isinstance(value, float):
        return _number(value)
    if depth >= _MAX_DEPTH:
        raise ValueError(f"a value is nested more than {_MAX_DEPTH} deep")
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise ValueError("object member names must be strings")
        try:
            keys = sorted(value, key=_utf16)
        except UnicodeEncodeError:
            raise ValueError("a member name holds an unpaired surrogate, which JSON cannot carry") from None
        return "{" + ",".join(encode_basestring(k) + ":" + _jcs(value[k], depth + 1) for k in keys) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_jcs(v, depth + 1) for v in value) + "]"
    raise ValueError(f"a value of type {type(value).__name__} is not JSON")


def _utf16(key: str) -> bytes:
    """Sort key for JCS member order: UTF-16 code units, compared as unsigned (big-endian bytes do that)."""
    return key.encode("utf-16-be")


def _number(value: float) -> str:
    """ECMAScript Number::toString of an IEEE-754 double, which RFC 8785 3.2.2.3 prescribes."""
    try:
        x = float(value)
    except OverflowError:
        raise ValueError(f"the number {value} is too large for JSON (RFC 8785 numbers are IEEE-754 doubles)") from None
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError(f"{x} is not a JSON number")
    if x == 0:
        return "0"  # also for -0
    sign = "-" if x < 0 else ""
    mantissa, _, exp = repr(abs(x)).partition("e")  # repr gives the shortest round-tripping digits
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    stripped = digits.rstrip("0")
    k = len(stripped)
    # x = 0.d1d2...dk * 10**n, as ECMAScript names them
    n = len(digits) + (int(exp) if exp else 0) - len(frac)
    if k <= n <= 21:
        text = stripped + "0" * (n - k)
    elif 0 < n <= 21:
        text = stripped[:n] + "." + stripped[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + stripped
    else:
        e = n - 1
        text = stripped[0] + ("." + stripped[1:] if k > 1 else "") + "e" + ("+" if e > 0 else "-") + str(abs(e))
    return sign + text
