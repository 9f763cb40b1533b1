"""Tokens to parties: verified against the store, remembered for a second in a bounded LRU cache."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from relto.domain.errors import Unauthenticated
from relto.domain.levels import Ladder
from relto.domain.parties import Party
from relto.domain.tokens import secret_matches, split_token
from relto.store.base import TokenStore

_TOKEN_TTL = 1.0  # seconds a verified token is trusted before the store is asked again
_TOKEN_CACHE = 4096  # token key ids remembered (known or not); the least recently used go first


class Authenticator:
    """Who holds a token: asks the store at most once a second per key id, and never grows without bound."""

    def __init__(self, tokens: TokenStore, ladder: Ladder) -> None:
        self.tokens = tokens
        self.ladder = ladder
        self._cache: OrderedDict[str, tuple[float, Party | None, str]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many key ids are remembered."""
        return len(self._cache)

    def authenticate(self, token: str | None) -> Party:
        """The party holding this token; Unauthenticated if it is missing, unknown or revoked."""
        if not token:
            raise Unauthenticated("send a token: 'Authorization: Bearer TOKEN' or HTTP Basic with it as password")
        parts = split_token(token)
        if parts is None:
            raise Unauthenticated("the token is not valid")
        key_id, secret = parts
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key_id)
        if cached is None or now - cached[0] > _TOKEN_TTL:
            cached = (now, *self._look_up(key_id))
            with self._lock:
                self._cache[key_id] = cached
                self._cache.move_to_end(key_id)
                while len(self._cache) > _TOKEN_CACHE:  # unknown key ids must not grow memory forever
                    self._cache.popitem(last=False)
        _, party, stored_hash = cached
        # Compare even when the key id is unknown, so timing does not tell which key ids exist.
        if not secret_matches(secret, stored_hash) or party is None:
            raise Unauthenticated("the token is not valid (unknown, mistyped or revoked)")
        return party

    def _look_up(self, key_id: str) -> tuple[Party | None, str]:
        """The party of a key id (None: unknown or revoked) and the hash to compare its secret with."""
        record = self.tokens.token(key_id)
        if record is None or record.revoked is not None:
            return None, "0" * 64
        party = Party(
            token_id=record.id,
            nation=record.nation,
            clearance=self.ladder.rank(record.clearance),
            organisation=record.organisation,
            name=record.name,
            admin=record.admin,
            can_write=record.can_write and not record.kind,
            kind=record.kind,
            relay_for=tuple(x for x in record.relay_for.split(",") if x),
        )
        return party, record.secret_hash
