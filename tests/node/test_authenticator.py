"""The authenticator on an in-memory token store: what it accepts, how often it asks, how much it remembers."""

from __future__ import annotations

import pytest

import relto.node.authenticator
from relto.domain.errors import Unauthenticated
from relto.domain.levels import Ladder
from relto.domain.tokens import make_token
from relto.node.authenticator import Authenticator
from relto.store.base import TokenRecord


class Tokens:
    """A TokenStore in a dict, counting the look-ups."""

    def __init__(self) -> None:
        self.records: dict[str, TokenRecord] = {}
        self.asked = 0

    def add_token(self, record: TokenRecord) -> int:
        self.records[record.key_id] = record
        return record.id

    def token(self, key_id: str) -> TokenRecord | None:
        self.asked += 1
        return self.records.get(key_id)

    def tokens(self) -> list[TokenRecord]:
        return list(self.records.values())

    def revoke_token(self, key_id: str, when: int) -> bool:
        return False


def issue(tokens: Tokens, nation: str = "GBR", revoked: int | None = None) -> str:
    new = make_token()
    record = TokenRecord(
        id=len(tokens.records) + 1,
        key_id=new.key_id,
        secret_hash=new.secret_hash,
        nation=nation,
        organisation="",
        name="test",
        clearance="SECRET",
        admin=False,
        can_write=True,
        created=0,
        revoked=revoked,
    )
    tokens.add_token(record)
    return new.value


def test_a_token_names_its_party_and_is_asked_for_once_a_second() -> None:
    tokens = Tokens()
    auth = Authenticator(tokens, Ladder())
    value = issue(tokens, "KOR")
    assert auth.authenticate(value).nation == "KOR"
    assert auth.authenticate(value).clearance == Ladder().rank("SECRET")
    assert tokens.asked == 1


@pytest.mark.parametrize("value", [None, "", "not a token", "rt_0123456789abcdef_"])
def test_missing_or_malformed_tokens_are_refused(value: str | None) -> None:
    with pytest.raises(Unauthenticated):
        Authenticator(Tokens(), Ladder()).authenticate(value)


def test_revoked_unknown_and_mistyped_tokens_are_refused_alike() -> None:
    tokens = Tokens()
    auth = Authenticator(tokens, Ladder())
    good = issue(tokens)
    for value in (issue(tokens, revoked=1), make_token().value, good[:-1] + ("A" if good[-1] != "A" else "B")):
        with pytest.raises(Unauthenticated, match="unknown, mistyped or revoked"):
            auth.authenticate(value)


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relto.node.authenticator, "_TOKEN_CACHE", 10)
    tokens = Tokens()
    auth = Authenticator(tokens, Ladder())
    for _ in range(50):
        with pytest.raises(Unauthenticated):
            auth.authenticate(make_token().value)
    assert len(auth) == 10
