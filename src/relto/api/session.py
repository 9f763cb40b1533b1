"""The UI's session cookie and CSRF values (docs/ui.md).

A session is the person's token sealed with AES-256-GCM under a node secret, with its expiry inside the seal:
nothing in the cookie can be read or changed, and every request re-authenticates the token itself, so a
revoked token ends its sessions as soon as the authenticator's cache lets go (a second). The CSRF value of a
session is an HMAC of its cookie under a key derived from the same secret: a page of this node can read it
(the shell carries it), another site cannot compute it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import time

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

COOKIE = "relto_session"
SIGNIN_COOKIE = "relto_signin"
LIFETIME_SECONDS = 12 * 3600
KEY_BYTES = 32
_NONCE = 12
_AAD = b"relto-ui-session-v1"


def new_key() -> bytes:
    """A fresh random session key."""
    return os.urandom(KEY_BYTES)


class Sessions:
    """Seals and opens session cookies and computes their CSRF values, with one node's key."""

    def __init__(self, key: bytes, lifetime: int = LIFETIME_SECONDS) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("a session key is 32 bytes")
        self._aead = AESGCM(key)
        self._mac_key = hmac.new(key, b"relto-ui-csrf", hashlib.sha256).digest()
        self.lifetime = lifetime

    def seal(self, token: str, now: float | None = None) -> str:
        """The cookie value for a session of `token`, valid for `lifetime` seconds."""
        expires = int((time.time() if now is None else now) + self.lifetime)
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, expires.to_bytes(8, "big") + token.encode(), _AAD)
        return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, value: str | None, now: float | None = None) -> str | None:
        """The token inside a cookie; None when it is missing, forged, or expired."""
        if not value or len(value) > 4096:
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            plain = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], _AAD)
        except (ValueError, binascii.Error, InvalidTag):
            return None
        if int.from_bytes(plain[:8], "big") <= (time.time() if now is None else now):
            return None
        try:
            return plain[8:].decode()
        except UnicodeDecodeError:
            return None

    def csrf(self, value: str, purpose: str = "session") -> str:
        """The CSRF value bound to a cookie value (the session's, or the sign-in form's)."""
        return hmac.new(self._mac_key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, value: str | None, given: str | None, purpose: str = "session") -> bool:
        """Whether `given` is the CSRF value of cookie `value` (compared in constant time)."""
        if not value or not given:
            return False
        return hmac.compare_digest(self.csrf(value, purpose), given)


def new_signin_nonce() -> str:
    """A random value for the sign-in form's cookie (its CSRF value is derived from it)."""
    return base64.urlsafe_b64encode(os.urandom(18)).decode()
