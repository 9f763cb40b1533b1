"""The one place where domain errors become HTTP statuses and TAXII error bodies (TAXII 2.1 section 3.6)."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from relto.domain import errors
from relto.taxii.media import TAXII

# Most specific first: the first class the error is an instance of decides.
ERROR_TABLE: tuple[tuple[type[errors.ReltoError], int, str], ...] = (
    (errors.MalformedJSON, 400, "Bad request: malformed JSON"),
    (errors.InvalidEnvelope, 422, "Unprocessable envelope"),
    (errors.NotAcceptable, 406, "Not acceptable"),
    (errors.UnsupportedMediaType, 415, "Unsupported media type"),
    (errors.PayloadTooLarge, 413, "Payload too large"),
    (errors.InvalidRequest, 400, "Bad request"),
    (errors.InvalidObject, 400, "Bad request: invalid object"),
    (errors.Unauthenticated, 401, "Unauthorized"),
    (errors.Forbidden, 403, "Forbidden"),
    (errors.NotFound, 404, "Not found"),
    (errors.ConfigurationError, 400, "Bad request"),
)


def error_response(status: int, title: str, description: str) -> Response:
    """A TAXII error message."""
    body = orjson.dumps({"title": title, "description": description, "http_status": str(status)})
    headers = {"WWW-Authenticate": 'Basic realm="relto", Bearer, Token'} if status == 401 else None
    return Response(body, status_code=status, media_type=TAXII, headers=headers)


async def handle_relto_error(_request: Request, exc: Exception) -> Response:
    """Map a domain error through ERROR_TABLE."""
    assert isinstance(exc, errors.ReltoError)
    for cls, status, title in ERROR_TABLE:
        if isinstance(exc, cls):
            return error_response(status, title, exc.message)
    return error_response(500, "Internal error", "an unexpected error; the server log has the details")
