"""Opaque cursors: TAXII `next` values and live-stream event ids.

A cursor stands for a node-wide sequence number. Given in plain, two cursors would let a reader count the
writes between its reads, hidden ones included (DESIGN invariant 11). So a cursor is the sequence sealed with
AES-256-GCM under a key kept in the node's database (one per node, so cursors survive restarts and are
understood by every worker), with a random nonce, and bound to its collection: nothing in it can be read,
changed or carried to another collection.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from relto.domain.errors import InvalidRequest

KEY_BYTES = 32
_NONCE = 12


def new_key() -> bytes:
    """A fresh random cursor key."""
    return os.urandom(KEY_BYTES)


class Cursors:
    """Seals and opens cursors with one node's key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("a cursor key is 32 bytes")
        self._aead = AESGCM(key)

    def seal(self, seq: int, collection_id: str) -> str:
        """The cursor for reading after `seq` in a collection."""
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, seq.to_bytes(8, "big"), collection_id.encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, value: str, collection_id: str) -> int:
        """The sequence a cursor stands for; InvalidRequest when this node did not issue it for this collection."""
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            plain = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], collection_id.encode())
        except (ValueError, binascii.Error, InvalidTag):
            raise InvalidRequest(
                f"cursor ('next' or event id) {value[:60]!r} was not issued by this server for this collection;"
                " start again without it"
            ) from None
        return int.from_bytes(plain, "big")

    def seal_bytes(self, payload: bytes, scope: str) -> str:
        """A cursor carrying more than a sequence (the federation feed's), bound to `scope`."""
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, payload, scope.encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open_bytes(self, value: str, scope: str) -> bytes:
        """What `seal_bytes` sealed; InvalidRequest when this node did not issue it for this scope."""
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            return self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], scope.encode())
        except (ValueError, binascii.Error, InvalidTag):
            raise InvalidRequest(
                f"cursor {value[:60]!r} was not issued by this server for this feed; start again without it"
            ) from None
