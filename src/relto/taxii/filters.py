"""Query parameters of the TAXII 2.1 read endpoints (TAXII 2.1 section 3.4), parsed and checked."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from relto.domain.errors import InvalidObject, InvalidRequest
from relto.domain.timestamps import parse_timestamp

_KNOWN = {"added_after", "limit", "next", "match[id]", "match[type]", "match[version]", "match[spec_version]"}


@dataclass(frozen=True, kw_only=True)
class Filters:
    """The parsed filters of one request."""

    added_after: int | None = None
    limit: int
    next: str | None = None  # the client's `next` cursor, still sealed (relto.taxii.cursors)
    after_seq: int = 0
    ids: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    versions: tuple[str | int, ...] = ("last",)
    spec_versions: tuple[str, ...] = ()


def _split(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v.strip() for value in values for v in value.split(",") if v.strip()))


def parse_filters(
    params: Iterable[tuple[str, str]],
    *,
    default_limit: int,
    max_limit: int,
    allowed: set[str] | None = None,
    default_versions: tuple[str, ...] = ("last",),
) -> Filters:
    """Parse the query string of a read endpoint: a malformed value of a parameter it takes (`allowed`,
    default every TAXII one) is a 400; parameters it does not take are ignored.

    TAXII 2.1 section 3.4 lets servers ignore match fields they do not understand and says nothing of other
    unknown parameters; ignoring them all keeps cache-busters and other servers' fields from breaking reads.
    """
    permitted = _KNOWN if allowed is None else allowed
    grouped: dict[str, list[str]] = {}
    for key, value in params:
        if key in permitted:
            grouped.setdefault(key, []).append(value)
    added_after = None
    if "added_after" in grouped:
        try:
            added_after = parse_timestamp(grouped["added_after"][-1], "added_after")
        except InvalidObject as exc:
            raise InvalidRequest(exc.message) from None
    limit = default_limit
    if "limit" in grouped:
        raw = grouped["limit"][-1]
        if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
            raise InvalidRequest(f"limit must be a positive whole number, got {raw!r}")
        limit = min(int(raw), max_limit)
    versions: list[str | int] = []
    for v in _split(grouped.get("match[version]", ())):
        if v in ("first", "last", "all"):
            versions.append(v)
        else:
            try:
                versions.append(parse_timestamp(v, "match[version]"))
            except InvalidObject as exc:
                raise InvalidRequest(f"{exc.message}; or use first, last or all") from None
    return Filters(
        added_after=added_after,
        limit=limit,
        next=grouped["next"][-1] if "next" in grouped else None,
        ids=_split(grouped.get("match[id]", ())),
        types=_split(grouped.get("match[type]", ())),
        versions=tuple(versions) or default_versions,
        spec_versions=_split(grouped.get("match[spec_version]", ())),
    )
