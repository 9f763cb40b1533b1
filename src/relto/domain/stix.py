"""Fast STIX 2.1 checks for the publish path (the stix2 library is ~10x too slow for it).

We check what storage and policy rely on: type and id syntax, spec_version, the common timestamps,
marking references and the properties that make relationships and sightings meaningful. Everything else,
custom types and x_ properties included, is stored and returned unchanged.

An object of a type STIX 2.1 does not define (OpenCTI's `hostname`, a stix2 `CustomObservable`) is judged by
its shape: without `created` and `modified` it is an SCO (unversioned, `spec_version` optional); with them,
an SDO. SCO ids of unknown types are not checked for being deterministic (UUIDv5): their contributing
properties are not known here.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from relto.domain.errors import InvalidObject
from relto.domain.observables import id_mismatch
from relto.domain.selectors import CHECKED_AT_PUBLISH, REQUIRED
from relto.domain.timestamps import parse_timestamp

_TYPE = re.compile(r"[a-z0-9][a-z0-9-]{1,248}[a-z0-9]")
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_ID = re.compile(rf"([a-z0-9][a-z0-9-]{{1,248}}[a-z0-9])--({_UUID})")

SCO_TYPES = frozenset(
    [
        "artifact",
        "autonomous-system",
        "directory",
        "domain-name",
        "email-addr",
        "email-message",
        "file",
        "ipv4-addr",
        "ipv6-addr",
        "mac-addr",
        "mutex",
        "network-traffic",
        "process",
        "software",
        "url",
        "user-account",
        "windows-registry-key",
        "x509-certificate",
    ]
)
# Types that carry created but no modified (they are never versioned).
_CREATED_ONLY = frozenset({"marking-definition"})
# Types STIX 2.1 defines with created and modified: SDOs, SROs, language content and extension definitions.
_VERSIONED = frozenset(
    [
        "attack-pattern",
        "campaign",
        "course-of-action",
        "extension-definition",
        "grouping",
        "identity",
        "incident",
        "indicator",
        "infrastructure",
        "intrusion-set",
        "language-content",
        "location",
        "malware",
        "malware-analysis",
        "note",
        "observed-data",
        "opinion",
        "relationship",
        "report",
        "sighting",
        "threat-actor",
        "tool",
        "vulnerability",
    ]
)
_REQUIRED = {type_: REQUIRED[type_] for type_ in CHECKED_AT_PUBLISH}


class Checked(NamedTuple):
    """What the store and the policy need to know about one object that passed the checks."""

    id: str
    type: str
    spec_version: str
    version: int  # microseconds; 0 for objects that are never versioned (no created/modified)
    version_text: str | None
    marking_refs: tuple[str, ...]  # every marking referenced, object-level and granular
    object_markings: tuple[str, ...] = ()  # object_marking_refs alone


_UUID_ONLY = re.compile(_UUID)
# Identifiers already seen to be well formed; marking and identity refs repeat across a whole corpus.
_GOOD_IDS: set[str] = set()


def is_identifier(value: object, of_type: str | None = None) -> bool:
    """Whether `value` is a STIX identifier (optionally of one type)."""
    if not isinstance(value, str):
        return False
    if of_type is not None and not value.startswith(of_type + "--"):
        return False
    if value in _GOOD_IDS:
        return True
    m = _ID.fullmatch(value)
    if m is None:
        return False
    if len(_GOOD_IDS) > 100_000:
        _GOOD_IDS.clear()
    _GOOD_IDS.add(value)
    return True


def _id_matches(value: str, type_: str) -> bool:
    n = len(type_)
    return (
        len(value) == n + 38
        and value[n : n + 2] == "--"
        and value.startswith(type_)
        and bool(_UUID_ONLY.fullmatch(value, n + 2))
    )


def check_object(obj: object) -> Checked:
    """Check one object; raise InvalidObject with a message that says what to fix."""
    if not isinstance(obj, dict):
        raise InvalidObject("each entry of 'objects' must be a JSON object")
    type_ = obj.get("type")
    if not isinstance(type_, str) or not _TYPE.fullmatch(type_) or "--" in type_:
        raise InvalidObject("'type' is required: 3-250 characters of a-z, 0-9 and single '-'")
    id_ = obj.get("id")
    if not isinstance(id_, str) or not _id_matches(id_, type_):
        raise InvalidObject(f"'id' must be '{type_}--' followed by a UUID, got {id_!r}")
    if type_ == "bundle":
        raise InvalidObject("a bundle is not stored as an object: send its 'objects' as the envelope's objects")
    spec = obj.get("spec_version")
    if spec is None:
        if not is_sco(obj, type_):
            raise InvalidObject("'spec_version' is required and must be '2.1'")
        spec = "2.1"
    elif spec != "2.1":
        raise InvalidObject(f"'spec_version' must be '2.1' (this node stores STIX 2.1), got {spec!r}")

    if type_ in SCO_TYPES:
        # An observable's id is derived from its value: no one may post one value under another's id.
        wrong = id_mismatch(obj)
        if wrong:
            raise InvalidObject(wrong)
    version, version_text = _version(obj, type_)
    refs, object_markings = _marking_refs(obj)
    for prop in _REQUIRED.get(type_, ()):
        if obj.get(prop) in (None, "", []):
            raise InvalidObject(f"a {type_} requires '{prop}'")
    created_by = obj.get("created_by_ref")
    if created_by is not None and not is_identifier(created_by, "identity"):
        raise InvalidObject(f"'created_by_ref' must be an identity id, got {created_by!r}")
    return Checked(id_, type_, spec, version, version_text, refs, object_markings)


def is_sco(obj: dict[str, Any], type_: str) -> bool:
    """Whether an object is a cyber-observable: a STIX 2.1 SCO type, or an unknown type without timestamps."""
    if type_ in SCO_TYPES:
        return True
    unknown = type_ not in _VERSIONED and type_ not in _CREATED_ONLY
    return unknown and obj.get("created") is None and obj.get("modified") is None


def _version(obj: dict[str, Any], type_: str) -> tuple[int, str | None]:
    created = obj.get("created")
    modified = obj.get("modified")
    if created is None and modified is None:
        if is_sco(obj, type_):
            return 0, None
        if type_ in _CREATED_ONLY:
            raise InvalidObject(f"a {type_} requires 'created' (a timestamp)")
        raise InvalidObject(f"'created' and 'modified' are required timestamps of a {type_}")
    if created is None:
        raise InvalidObject("'created' is required (a timestamp) when 'modified' is given")
    created_us = parse_timestamp(created, "'created'")
    if modified is None:
        if type_ not in _CREATED_ONLY and type_ not in SCO_TYPES:
            raise InvalidObject("'modified' is required (a timestamp not earlier than 'created')")
        return created_us, str(created)
    # Most objects are first versions, modified == created: one parse.
    modified_us = created_us if modified == created else parse_timestamp(modified, "'modified'")
    if modified_us < created_us:
        raise InvalidObject(f"'modified' ({modified}) is earlier than 'created' ({created})")
    return modified_us, str(modified)


def _marking_refs(obj: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Every marking referenced by the object (object-level and granular, de-duplicated), and the object-level."""
    refs: list[str] = []
    omr = obj.get("object_marking_refs")
    if omr is not None:
        if not isinstance(omr, list) or not all(is_identifier(r, "marking-definition") for r in omr):
            raise InvalidObject("'object_marking_refs' must be a list of marking-definition ids")
        refs.extend(omr)
    object_level = tuple(dict.fromkeys(refs))
    granular = obj.get("granular_markings")
    if granular is not None:
        if not isinstance(granular, list):
            raise InvalidObject("'granular_markings' must be a list")
        for gm in granular:
            if not isinstance(gm, dict) or not isinstance(gm.get("selectors"), list) or not gm["selectors"]:
                raise InvalidObject("each granular marking needs a non-empty 'selectors' list")
            ref = gm.get("marking_ref")
            if ref is None and "lang" in gm:
                continue
            if not isinstance(ref, str) or not is_identifier(ref, "marking-definition"):
                raise InvalidObject("each granular marking needs 'marking_ref' (a marking-definition id) or 'lang'")
            refs.append(ref)
    return tuple(dict.fromkeys(refs)), object_level
