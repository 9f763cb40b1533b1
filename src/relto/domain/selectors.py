"""Granular marking selectors and required properties: one grammar for authoring (tearline) and release (redact).

A selector names a property by steps separated by '.', a list element by its own step `[n]`
('object_refs.[2]', 'kill_chain_phases.[0].phase_name'). Identity (`id`, `type`) and the markings themselves
are never selectable. Required properties are what a version may not lose: a field marking on one restricts
the whole version (docs/tearlines.md). Pure functions, no I/O.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from relto.domain.errors import InvalidObject, InvalidValue

Path = tuple[str | int, ...]

# One canonical spelling per list index, as the node writes selectors back: [0], [7], [12]; never [07].
INDEX = re.compile(r"\[(0|[1-9][0-9]*)\]")
# Never selectable: the identity of the object, and the markings themselves (vocabulary, never trimmed).
IDENTITY = frozenset({"id", "type"})
MARKINGS = frozenset({"granular_markings", "object_marking_refs"})

# required properties ------------------------------------------------------------------------------------
# Common properties that may not be removed from a version that has them, then per type (STIX 2.1).
_COMMON_REQUIRED = ("type", "id", "spec_version", "created", "modified")
_NAMED = ("name",)
REQUIRED: Mapping[str, tuple[str, ...]] = {
    "attack-pattern": _NAMED,
    "campaign": _NAMED,
    "course-of-action": _NAMED,
    "grouping": ("context", "object_refs"),
    "identity": _NAMED,
    "incident": _NAMED,
    "indicator": ("pattern", "pattern_type", "valid_from"),
    "infrastructure": _NAMED,
    "intrusion-set": _NAMED,
    "language-content": ("object_ref", "contents"),
    "malware": ("is_family",),
    "malware-analysis": ("product",),
    "note": ("content", "object_refs"),
    "observed-data": ("first_observed", "last_observed", "number_observed"),
    "opinion": ("opinion", "object_refs"),
    "relationship": ("relationship_type", "source_ref", "target_ref"),
    "report": ("name", "published", "object_refs"),
    "sighting": ("sighting_of_ref",),
    "threat-actor": _NAMED,
    "tool": _NAMED,
    "vulnerability": _NAMED,
}
# The types whose required properties the publish checks insist on (domain/stix.py): what storage and policy
# rely on. Other types' are enforced only at release, where a version never loses one.
CHECKED_AT_PUBLISH = ("relationship", "sighting", "indicator", "report")
# Properties required inside the elements of common STIX lists: removing one leaves an element that is not
# valid STIX, so marking the whole element is the better advice.
ELEMENT_REQUIRED: Mapping[str, frozenset[str]] = {
    "kill_chain_phases": frozenset({"kill_chain_name", "phase_name"}),
    "external_references": frozenset({"source_name"}),
}

_REQUIRED_SETS = {t: frozenset(_COMMON_REQUIRED + props) for t, props in REQUIRED.items()}
_COMMON_SET = frozenset(_COMMON_REQUIRED)


def required(type_: str) -> frozenset[str]:
    """The properties a version of this type may not lose."""
    return _REQUIRED_SETS.get(type_, _COMMON_SET)


# syntax -------------------------------------------------------------------------------------------------
def parse_selector(selector: str) -> Path:
    """'a.[2].b' -> ('a', 2, 'b'); raise InvalidObject when it is not a selector."""
    parts: list[str | int] = []
    for token in selector.split("."):
        if INDEX.fullmatch(token):
            parts.append(int(token[1:-1]))
        elif token and "[" not in token and "]" not in token:
            parts.append(token)
        else:
            raise InvalidObject(
                f"granular marking selector {selector!r} is not a selector such as 'description' or 'object_refs.[2]'"
            )
    if isinstance(parts[0], int):
        raise InvalidObject(f"granular marking selector {selector!r} must start with a property name")
    return tuple(parts)


def format_selector(path: Path) -> str:
    """('a', 2, 'b') -> 'a.[2].b'."""
    return ".".join(f"[{p}]" if isinstance(p, int) else p for p in path)


def check_selector_syntax(raw: Any) -> str:
    """An analyst's selector, stripped; raise InvalidValue with advice when it cannot mark anything."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidValue("a selector names a property: 'description', 'object_refs.[2]', 'a.b.[0].c'")
    selector = raw.strip()
    steps = selector.split(".")
    for step in steps:
        if not step:
            raise InvalidValue(f"selector {selector!r} has an empty step: steps are separated by one '.'")
        if ("[" in step or "]" in step) and not INDEX.fullmatch(step):
            raise InvalidValue(
                f"selector {selector!r}: {step!r} is not a list index; write [n] as its own step, "
                "as in object_refs.[2] (no leading zeros)"
            )
    if INDEX.fullmatch(steps[0]):
        raise InvalidValue(f"selector {selector!r} must start with a property name, e.g. 'object_refs.[2]'")
    if steps[0] in IDENTITY:
        raise InvalidValue(f"selector {selector!r}: '{steps[0]}' identifies the object and cannot be marked")
    if steps[0] in MARKINGS:
        raise InvalidValue(f"selector {selector!r}: the markings themselves cannot be marked")
    return selector


# walkers ------------------------------------------------------------------------------------------------
def resolves(obj: Any, path: Path) -> bool:
    """Whether `path` names something in `obj`."""
    node = obj
    for part in path:
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                return False
        elif not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def within(path: Path, outer: Path) -> bool:
    """Whether `path` is `outer` or inside it."""
    return len(path) >= len(outer) and path[: len(outer)] == outer


def why_unresolved(what: str, obj: Mapping[str, Any], selector: str) -> str | None:
    """None when the selector names something in `obj`; otherwise why it does not, for the analyst."""
    node: Any = obj
    walked = ""
    for step in selector.split("."):
        here = f"{walked}.{step}" if walked else step
        index = INDEX.fullmatch(step)
        if index is not None:
            if not isinstance(node, list):
                return f"selector {selector!r} names nothing in {what}: {walked!r} is not a list"
            if int(index[1]) >= len(node):
                size = f"has {len(node)} elements, [0] to [{len(node) - 1}]" if node else "is empty"
                return f"selector {selector!r} names nothing in {what}: {walked!r} {size}"
            node = node[int(index[1])]
        else:
            if isinstance(node, list):
                return (
                    f"selector {selector!r} names nothing in {what}: {walked!r} is a list; "
                    f"name an element as '{walked}.[n]'"
                )
            if not isinstance(node, dict):
                return (
                    f"selector {selector!r} names nothing in {what}: {walked!r} is a {json_kind(node)}, not an object"
                )
            if step not in node:
                near = difflib.get_close_matches(step, [k for k in node if isinstance(k, str)], n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                place = f"{walked!r}" if walked else "it"
                return f"selector {selector!r} names nothing in {what}: {place} has no property {step!r}{hint}"
            node = node[step]
        walked = here
    return None


def json_kind(value: Any) -> str:
    """What a JSON value is, in JSON's words: object, list, string, boolean, number, null."""
    return {
        dict: "object",
        list: "list",
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
        type(None): "null",
    }.get(type(value), type(value).__name__)
