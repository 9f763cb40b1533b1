"""STIX/TAXII timestamps as integers of microseconds since the epoch (UTC), and back."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from relto.domain.errors import InvalidObject, InvalidValue

_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def parse_timestamp(value: object, what: str = "timestamp") -> int:
    """Microseconds since the epoch for an RFC 3339 UTC timestamp ('2024-10-18T09:30:00.000Z')."""
    if not isinstance(value, str) or _TIMESTAMP.fullmatch(value) is None:
        shown = repr(value) if isinstance(value, str) else f"a {type(value).__name__}"
        raise InvalidObject(f"{what} {shown} is not an RFC 3339 UTC timestamp like '2024-10-18T09:30:00.000Z'")
    try:
        # The regex fixed the shape; fromisoformat (C) checks the calendar and does the arithmetic.
        return (datetime.fromisoformat(value) - _EPOCH) // _MICROSECOND
    except ValueError as exc:
        raise InvalidObject(f"{what} {value!r} is not a valid date and time: {exc}") from None


def parse_instant(text: str, what: str) -> int:
    """Microseconds for a time an operator gives: YYYY-MM-DD or an ISO 8601 time (UTC unless it says otherwise)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidValue(f"{what} {text!r} is not a date or time: use YYYY-MM-DD or 2026-01-31T12:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND


def format_timestamp(micros: int) -> str:
    """An RFC 3339 UTC timestamp with microsecond precision, as TAXII's date_added."""
    dt = _EPOCH + timedelta(microseconds=micros)
    return f"{dt.year:04d}-" + dt.strftime("%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}Z"


def now_micros() -> int:
    """The current time in microseconds since the epoch."""
    delta = datetime.now(UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
