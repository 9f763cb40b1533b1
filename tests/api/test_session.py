"""The UI's session cookie and CSRF values (relto.api.session)."""

from __future__ import annotations

import os

import pytest

from relto.api.session import Sessions

TOKEN = "rt_0123456789abcdef_secret"


def test_a_sealed_token_opens_and_reads_nothing_in_clear() -> None:
    sessions = Sessions(os.urandom(32))
    cookie = sessions.seal(TOKEN)
    assert TOKEN not in cookie and "secret" not in cookie
    assert sessions.open(cookie) == TOKEN
    assert sessions.seal(TOKEN) != cookie  # a fresh nonce each time


def test_a_session_expires() -> None:
    sessions = Sessions(os.urandom(32), lifetime=60)
    cookie = sessions.seal(TOKEN, now=1000.0)
    assert sessions.open(cookie, now=1059.0) == TOKEN
    assert sessions.open(cookie, now=1060.0) is None


@pytest.mark.parametrize("bad", ["", "x", "A" * 40, "!!!!", "A" * 5000])
def test_forged_or_garbled_cookies_open_to_nothing(bad: str) -> None:
    assert Sessions(os.urandom(32)).open(bad) is None


def test_a_cookie_changed_or_from_another_node_is_refused() -> None:
    mine, other = Sessions(os.urandom(32)), Sessions(os.urandom(32))
    cookie = mine.seal(TOKEN)
    flipped = cookie[:-2] + ("A" if cookie[-2] != "A" else "B") + cookie[-1]
    assert mine.open(flipped) is None
    assert other.open(cookie) is None


def test_csrf_is_bound_to_the_cookie_and_purpose() -> None:
    sessions = Sessions(os.urandom(32))
    a, b = sessions.seal(TOKEN), sessions.seal(TOKEN)
    value = sessions.csrf(a)
    assert sessions.check_csrf(a, value)
    assert not sessions.check_csrf(b, value)
    assert not sessions.check_csrf(a, None) and not sessions.check_csrf(None, value)
    assert not sessions.check_csrf(a, sessions.csrf(a, "signin"))
    assert Sessions(os.urandom(32)).csrf(a) != value


def test_the_key_must_be_32_bytes() -> None:
    with pytest.raises(ValueError):
        Sessions(b"short")
