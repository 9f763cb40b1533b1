"""Field markings and references: what part of a version a party receives. Pure functions, no I/O.

At publish, `analyse` reads an object's granular markings and references once; the node stores the answer
(a `Shape`) beside the version. At release, `redact` removes the fields a party may not see and the references
to objects hidden from it, rewrites the granular markings to match, and says when the version must be withheld.
The rules are in docs/tearlines.md.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from relto.domain.errors import InvalidObject
from relto.domain.selectors import MARKINGS, Path, format_selector, parse_selector, required, resolves, within

# The references that make a relationship or sighting what it is (docs/tearlines.md, hidden rule 2).
ENDPOINTS = ("source_ref", "target_ref", "sighting_of_ref")
# Marking references are vocabulary: never trimmed, never counted as references.
_NOT_REFERENCES = frozenset({"object_marking_refs", "marking_ref", "granular_markings"})


# publish ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FieldMarking:
    """The granular marking refs on one selected field: its own and those of the fields containing it."""

    selector: str
    refs: tuple[str, ...]
    whole_required: bool  # the selector is exactly a required property: it restricts the whole version


@dataclass(frozen=True)
class Analysis:
    """What the publish path learns from an object about its fields and references."""

    fields: tuple[FieldMarking, ...]
    references: tuple[str, ...]
    endpoints: tuple[str, ...]
    nested: bool = False  # some reference is below the top level (in an extension, a list of objects, ...)
    deep: tuple[str, ...] = ()  # the ids referenced there


def analyse(obj: Mapping[str, Any]) -> Analysis:
    """Check the granular markings' selectors against the object and collect its references.

    Called after the STIX checks (granular_markings is a list of entries with non-empty selector lists). The
    references are found by walking the parsed object, never by looking at its bytes: whatever its property
    names, every `*_ref(s)` at any depth is seen.
    """
    fields = _field_markings(obj) if obj.get("granular_markings") else ()
    found = list(references(obj))
    deep = tuple(dict.fromkeys(ref for path, ref in found if len(path) > (2 if isinstance(path[-1], int) else 1)))
    refs = tuple(dict.fromkeys(ref for _, ref in found))
    endpoints = tuple(v for k in ENDPOINTS if isinstance(v := obj.get(k), str))
    return Analysis(fields, refs, endpoints, bool(deep), deep)


def _field_markings(obj: Mapping[str, Any]) -> tuple[FieldMarking, ...]:
    direct: dict[Path, set[str]] = {}
    names: dict[Path, str] = {}
    for entry in obj["granular_markings"]:
        ref = entry.get("marking_ref")
        for selector in entry["selectors"]:
            if not isinstance(selector, str):
                raise InvalidObject("granular marking selectors must be strings")
            path = parse_selector(selector)
            if path[0] in MARKINGS:
                raise InvalidObject(f"granular marking selector {selector!r}: markings cannot mark the markings")
            if not resolves(obj, path):
                raise InvalidObject(f"granular marking selector {selector!r} names nothing in this object")
            names[path] = selector
            refs = direct.setdefault(path, set())
            if isinstance(ref, str):
                refs.add(ref)
    needed = required(str(obj.get("type")))
    fields = []
    for path, selector in names.items():
        refs = set()
        for outer, outer_refs in direct.items():
            if within(path, outer):
                refs |= outer_refs
        if refs:
            whole = len(path) == 1 and path[0] in needed
            fields.append(FieldMarking(selector, tuple(sorted(refs)), whole))
    return tuple(fields)


def _top_level(obj: Mapping[str, Any]) -> list[tuple[Path, str]]:
    """(path, id) of the references at the top level of the object (markings excepted)."""
    out: list[tuple[Path, str]] = []
    for key, value in obj.items():
        if key in _NOT_REFERENCES:
            continue
        if key.endswith("_ref"):
            if isinstance(value, str):
                out.append(((key,), value))
        elif key.endswith("_refs") and isinstance(value, list):
            out.extend(((key, i), item) for i, item in enumerate(value) if isinstance(item, str))
    return out


def references(node: Any, path: Path = ()) -> list[tuple[Path, str]]:
    """(path, id) of every reference in the object, at any depth, markings excepted."""
    out: list[tuple[Path, str]] = []
    _collect(node, path, out)
    return out


def _collect(node: Any, path: Path, out: list[tuple[Path, str]]) -> None:
    # A plain recursive walk appending to one list: several times cheaper than nested generators, and it runs
    # on every published object.
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str):
                if key.endswith("_ref") and key != "marking_ref":
                    out.append(((*path, key), value))
            elif isinstance(value, list):
                if key.endswith("_refs"):
                    if key != "object_marking_refs":
                        for i, item in enumerate(value):
                            if isinstance(item, str):
                                out.append(((*path, key, i), item))
                            elif isinstance(item, dict | list):  # a reference can hide in an object in the list
                                _collect(item, (*path, key, i), out)
                elif key not in _NOT_REFERENCES:
                    for i, item in enumerate(value):
                        if isinstance(item, dict | list):
                            _collect(item, (*path, key, i), out)
            elif isinstance(value, dict) and key not in _NOT_REFERENCES:
                _collect(value, (*path, key), out)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, dict | list):
                _collect(item, (*path, i), out)


# stored shape -------------------------------------------------------------------------------------------
class Shape(NamedTuple):
    """Stored beside a version: its field marking sets (set id, selector), references and endpoints; and where
    in the stored body lie the top-level members a release may cut (`members`: key, start, end of each
    `"key":value`, flat; `size`: the body's length), so that it cuts without parsing. Decoded on every version a
    restricted party reads: kept flat and cheap to make."""

    fields: tuple[tuple[int, str], ...] = ()
    references: tuple[str, ...] = ()
    endpoints: tuple[str, ...] = ()
    nested: bool = False
    members: tuple[Any, ...] = ()  # key, start, end, key, start, end, ...
    size: int = 0
    deep: tuple[str, ...] = ()  # with `nested`: the ids referenced below the top level (a cut leaves them)

    def encode(self) -> bytes | None:
        """Compact JSON, or None when the version has nothing that a release could trim."""
        if not self.fields and not self.references:
            return None
        doc: dict[str, Any] = {}
        if self.fields:
            doc["f"] = self.fields
        if self.references:
            doc["r"] = self.references
        if self.endpoints:
            doc["e"] = self.endpoints
        if self.nested:
            doc["n"] = 1
        if self.members:
            doc["s"] = self.members
        if self.size:
            doc["z"] = self.size
        if self.deep:
            doc["d"] = self.deep
        return orjson.dumps(doc)

    @classmethod
    def decode(cls, raw: bytes | None) -> Shape:
        """The inverse of encode."""
        if raw is None:
            return _EMPTY
        doc = orjson.loads(raw)
        fields, flat = doc.get("f"), doc.get("s")
        return cls(
            tuple(map(tuple, fields)) if fields else (),
            tuple(doc.get("r", ())),
            tuple(doc.get("e", ())),
            "n" in doc,
            tuple(flat) if flat else (),
            doc.get("z", 0),
            tuple(doc["d"]) if "d" in doc else (),
        )

    def with_members(self, obj: Mapping[str, Any]) -> Shape:
        """This shape with the spans of the members a release may cut, in `orjson.dumps(obj)` (the stored body).

        A shape with references below the top level needs `deep` (a version whose hidden ids are among them is
        cut by parsing)."""
        if (self.nested and not self.deep) or (not self.fields and not self.references):
            return self
        keys = {"granular_markings"}
        keys.update(k for k in obj if k.endswith(("_ref", "_refs")) and k not in _NOT_REFERENCES)
        for _, selector in self.fields:
            path = parse_selector(selector)
            if len(path) == 1 and isinstance(path[0], str):
                keys.add(path[0])
        members, size = spans(obj, keys)
        return self._replace(members=members, size=size)


def spans(obj: Mapping[str, Any], keys: Collection[str]) -> tuple[tuple[Any, ...], int]:
    """Where each member of `obj` named in `keys` lies in `orjson.dumps(obj)` (key, start, end of `"key":value`,
    flat), and the length of the whole. orjson writes compact JSON: each member is its key's and value's bytes."""
    found: list[Any] = []
    at = 1
    dumps = orjson.dumps
    for key, value in obj.items():  # on every published version with references: ~3 us for ATT&CK's
        end = at + len(_NAMES.get(key) or _name(key)) + len(dumps(value))
        if key in keys:
            found.extend((key, at, end))
        at = end + 1
    return tuple(found), max(at, 2)


_EMPTY = Shape()


def skeleton(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What a tombstone keeps of a deleted version: its required properties with every value dropped except
    references (list lengths kept), and its granular markings. Enough for `redact` to say whether a party was
    released the version (docs/stream.md: `deleted` events), nothing of what it said."""
    keep = required(str(obj.get("type"))) | {"granular_markings"}
    out: dict[str, Any] = {}
    for key in keep:
        if key in obj:
            out[key] = obj[key] if key in ("type", "id", "granular_markings") else _bare(key, obj[key])
    return out


def _bare(key: str, value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _bare(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_bare(key, v) for v in value]
    if isinstance(value, str) and key.endswith(("_ref", "_refs")):
        return value
    return None


# release ------------------------------------------------------------------------------------------------
def redact(
    obj: dict[str, Any], hidden_selectors: Sequence[str], hidden_ids: Collection[str], *, nested: bool = True
) -> dict[str, Any] | None:
    """The object without the hidden fields and references to hidden ids; None when it must be withheld.

    `obj` is modified in place (pass a fresh copy). Granular markings are rewritten to match what is left.
    `nested=False` (the shape says every reference is at the top level) spares the walk through the rest.
    """
    removed: set[Path] = set()
    for selector in hidden_selectors:
        path = parse_selector(selector)
        if resolves(obj, path):
            removed.add(path)
    if hidden_ids:
        found = references(obj) if nested else _top_level(obj)
        removed.update(path for path, ref in found if ref in hidden_ids)
    if not removed:
        return obj
    _close_emptied_lists(obj, removed)
    # Keep only the outermost removals; remove from the end so list indexes stay valid while we go.
    outermost = sorted((p for p in removed if not any(p[:i] in removed for i in range(1, len(p)))), reverse=True)
    gone: dict[Path, list[int]] = {}
    for path in outermost:
        parent = _at(obj, path[:-1])
        last = path[-1]
        if isinstance(last, int):
            del parent[last]
            gone.setdefault(path[:-1], []).append(last)
        else:
            del parent[last]
    for indexes in gone.values():
        indexes.sort()
    for name in required(str(obj.get("type"))):
        if (name,) in removed:
            return None
    _rewrite_granular(obj, removed, gone)
    return obj


def cut(
    body: bytes, shape: Shape, type_: str, hidden_selectors: Sequence[str], hidden_ids: Collection[str]
) -> tuple[bool, bytes | None]:
    """What `redact` then `orjson.dumps` would make of the stored body, made by splicing its bytes where the
    shape's members lie: (True, the bytes, or None when the version must be withheld); (False, None) when it
    cannot be done so (a hidden id referenced or a hidden selector below the top level, no spans, spans that
    do not fit the body): then the caller parses. The same rules as `redact`, on top-level members only.

    It runs on every version a release trims, so it is written for speed: one pass over the few members."""
    if not shape.size or len(body) != shape.size:
        return False, None
    if shape.nested and (not shape.deep or any(i in hidden_ids for i in shape.deep)):
        return False, None  # a hidden id below the top level: only the walk through the object finds it
    drop: set[str] = set()  # members removed whole
    for selector in hidden_selectors:
        if "." in selector or "[" in selector:  # below the top level (a stored selector never starts with [n])
            return False, None
        drop.add(selector)
    found = 0
    needed = required(type_)
    lists: dict[str, tuple[list[Any], list[int]]] = {}  # `*_refs` members losing elements: (the list, which)
    # A hidden id in a member is its JSON string there: the members without one are never parsed.
    encoded = [orjson.dumps(i) for i in hidden_ids]
    it = iter(members := shape.members)
    for key, start, end in zip(it, it, it, strict=True):
        name = _NAMES.get(key) or _name(key)
        if not body.startswith(name, start) or body[end] not in b",}" or body[start - 1] not in b"{,":
            return False, None  # the spans do not describe this body
        if key in drop:
            found += 1
        elif encoded and key not in _NOT_REFERENCES:  # the same references as _top_level finds
            value = body[start + len(name) : end]
            if key.endswith("_ref"):
                if value in encoded:
                    if key in needed:  # a required reference to a hidden object: the version is withheld
                        return True, None
                    drop.add(key)
            elif key.endswith("_refs") and any(e in value for e in encoded):
                items = orjson.loads(value)
                if isinstance(items, list):
                    at = [i for i, item in enumerate(items) if isinstance(item, str) and item in hidden_ids]
                    if len(at) >= len(items):  # every element goes: the list goes (_close_emptied_lists)
                        if key in needed:
                            return True, None
                        drop.add(key)
                    elif at:
                        lists[key] = (items, at)
    if found < len(hidden_selectors):
        return False, None  # a hidden field that is not among the members
    if not drop and not lists:
        return True, body
    if not needed.isdisjoint(drop):
        return True, None
    return True, _spliced(body, members, drop, lists)


_NAMES: dict[str, bytes] = {}  # a member's key as it starts the member: '"key":'


def _name(key: str) -> bytes:
    if len(_NAMES) > 4096:  # bounded: keys are mostly the same few
        _NAMES.clear()
    name = _NAMES[key] = orjson.dumps(key) + b":"
    return name


def _spliced(
    body: bytes, members: Sequence[Any], drop: Collection[str], lists: Mapping[str, tuple[list[Any], list[int]]]
) -> bytes:
    pieces: list[bytes] = []
    after = 1  # just past the last member cut; between two lie the others, with their commas
    it = iter(members)
    for key, start, end in zip(it, it, it, strict=True):
        if key in drop:
            new = None
        elif key in lists:
            items, at = lists[key]
            new = [item for i, item in enumerate(items) if i not in at]
        elif key == "granular_markings":
            new = _granular(orjson.loads(body[start + len(b'"granular_markings":') : end]), drop, lists)
            if new is _UNCHANGED:
                continue
        else:
            continue
        between = body[after:start].removeprefix(b",").removesuffix(b",")
        if between:
            pieces.append(between)
        if new is not None:
            pieces.append(_NAMES.get(key) or _name(key))
            pieces[-1] += orjson.dumps(new)
        after = end
    rest = body[after:-1].removeprefix(b",")
    if rest:
        pieces.append(rest)
    return b"{" + b",".join(pieces) + b"}"


_UNCHANGED: Any = object()


def _granular(entries: Any, drop: Collection[str], lists: Mapping[str, tuple[list[Any], list[int]]]) -> Any:
    """The granular markings once these members and list elements are cut (_rewrite_granular's answer), or
    _UNCHANGED when no selector names any of them."""
    if isinstance(entries, list) and not any(
        selector.partition(".")[0] in drop or selector.partition(".")[0] in lists
        for entry in entries
        if isinstance(entry, dict)
        for selector in entry.get("selectors", ())
        if isinstance(selector, str)
    ):
        return _UNCHANGED
    removed: set[Path] = {(key,) for key in drop}
    gone: dict[Path, list[int]] = {}
    for key, (_, at) in lists.items():
        removed.update((key, i) for i in at)
        gone[(key,)] = at
    holder = {"granular_markings": entries}
    _rewrite_granular(holder, removed, gone)
    return holder.get("granular_markings")


def _at(obj: Any, path: Path) -> Any:
    for part in path:
        obj = obj[part]
    return obj


def _close_emptied_lists(obj: dict[str, Any], removed: set[Path]) -> None:
    """A list or object whose every member is removed is removed itself (STIX lists and dictionaries may not
    be empty, and an empty one would show that something was there)."""
    changed = True
    while changed:
        changed = False
        members: dict[Path, set[str | int]] = {}
        for p in removed:
            if len(p) > 1:
                members.setdefault(p[:-1], set()).add(p[-1])
        for container, gone in members.items():
            if container in removed:
                continue
            value = _at(obj, container)
            if isinstance(value, list | dict) and len(gone) >= len(value):
                removed.add(container)
                changed = True


def _rewrite_granular(obj: dict[str, Any], removed: set[Path], gone: Mapping[Path, list[int]]) -> None:
    entries = obj.get("granular_markings")
    if not isinstance(entries, list):
        return
    kept = []
    for entry in entries:
        selectors = []
        for selector in entry.get("selectors", ()):
            moved = _moved(parse_selector(selector), removed, gone)
            if moved is not None:
                selectors.append(format_selector(moved))
        if selectors:
            kept.append({**entry, "selectors": selectors})
    if kept:
        obj["granular_markings"] = kept
    else:
        del obj["granular_markings"]


def _moved(path: Path, removed: set[Path], gone: Mapping[Path, list[int]]) -> Path | None:
    """Where a selected field is after the removals, or None if it went."""
    out: list[str | int] = []
    for i, part in enumerate(path):
        if path[: i + 1] in removed:
            return None
        if isinstance(part, int):
            before = gone.get(path[:i])
            if before:
                part -= bisect.bisect_left(before, part)
        out.append(part)
    return tuple(out)
