"""Tokens: random, shown once, stored as a hash, compared in constant time.

A token reads `rt_<key id>_<secret>`: the key id finds the stored record, the secret is checked against
its SHA-256 with hmac.compare_digest. Secrets are 256 random bits, so a fast hash is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

PREFIX = "rt_"


@dataclass(frozen=True)
class NewToken:
    """A freshly made token: `value` is shown once; only `secret_hash` is stored."""

    key_id: str
    secret_hash: str
    value: str


def make_token() -> NewToken:
    """A new random token."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return NewToken(key_id, hash_secret(secret), f"{PREFIX}{key_id}_{secret}")


def hash_secret(secret: str) -> str:
    """The stored form of a secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(value: str) -> tuple[str, str] | None:
    """(key id, secret) of a token string, or None if it is not shaped like one."""
    if not value.startswith(PREFIX):
        return None
    key_id, sep, secret = value[len(PREFIX) :].partition("_")
    if not sep or len(key_id) != 16 or not secret:
        return None
    return key_id, secret


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Constant-time check of a secret against its stored hash."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)
