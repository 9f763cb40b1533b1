"""TAXII 2.1 media types and content negotiation (TAXII 2.1 section 1.6.8)."""

from __future__ import annotations

from collections.abc import Callable

from relto.domain.errors import NotAcceptable, UnsupportedMediaType

TAXII = "application/taxii+json;version=2.1"
STIX = "application/stix+json;version=2.1"


def _params(part: str) -> tuple[str, dict[str, str]]:
    kind, *rest = (p.strip() for p in part.split(";"))
    params = {}
    for p in rest:
        k, _, v = p.partition("=")
        params[k.strip().lower()] = v.strip().strip('"')
    return kind.lower(), params


def _is_taxii(kind: str, params: dict[str, str]) -> bool:
    return kind == "application/taxii+json" and params.get("version", "2.1") == "2.1"


def _accepts(header: str | None, wanted: Callable[[str, dict[str, str]], bool]) -> bool:
    """Whether an Accept header admits a media type `wanted` approves (no header admits everything)."""
    if not header:
        return True
    for part in header.split(","):
        kind, params = _params(part)
        if params.get("q", "1").strip() in ("0", "0.0", "0.00", "0.000"):
            continue  # q=0 means "not acceptable"
        if kind == "*/*" or wanted(kind, params):
            return True
    return False


def check_accept(header: str | None) -> None:
    """Refuse a request whose Accept header admits no TAXII 2.1 response (406)."""
    if not _accepts(header, lambda kind, params: kind == "application/*" or _is_taxii(kind, params)):
        raise NotAcceptable(f"this server answers in {TAXII}; the Accept header {header!r} does not allow it")


def check_content_type(header: str | None) -> None:
    """Refuse a body that is not a TAXII 2.1 envelope (415)."""
    kind, params = _params(header or "")
    if not _is_taxii(kind, params):
        raise UnsupportedMediaType(f"send the envelope as Content-Type: {TAXII} (got {header or 'none'!r})")


def check_stream_accept(header: str | None) -> None:
    """Refuse a live-stream request whose Accept header admits no text/event-stream (406)."""
    if not _accepts(header, lambda kind, _params: kind in ("text/*", "text/event-stream")):
        raise NotAcceptable(
            f"the live stream answers in text/event-stream; the Accept header {header!r} does not allow it"
        )


def check_json_content_type(header: str | None) -> None:
    """Refuse a body that is neither JSON nor TAXII 2.1 JSON (415), for relto's own JSON endpoints."""
    kind, params = _params(header or "")
    if kind != "application/json" and not _is_taxii(kind, params):
        raise UnsupportedMediaType(f"send JSON: Content-Type: application/json or {TAXII} (got {header or 'none'!r})")
