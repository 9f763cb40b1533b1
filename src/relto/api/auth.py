"""Credentials: `Authorization: Bearer TOKEN` or `Token TOKEN` (taxii2-client's TokenAuth), or HTTP Basic with
the token as password (any user name)."""

from __future__ import annotations

import base64
import binascii

from starlette.requests import Request

from relto.domain.parties import Party
from relto.node import Node


def token_from(header: str | None) -> str | None:
    """The token carried by an Authorization header, if any."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme in ("bearer", "token"):
        return value.strip() or None
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def party_of(request: Request) -> Party:
    """The party making this request; raises Unauthenticated."""
    node: Node = request.app.state.node
    return node.authenticate(token_from(request.headers.get("authorization")))
