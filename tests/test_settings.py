"""The settings table and the Settings values agree, by name (relto.settings)."""

from __future__ import annotations

from dataclasses import fields

from relto.settings import SETTINGS, Settings


def test_every_setting_defaults_to_its_own_row_of_the_table() -> None:
    assert [f.name for f in fields(Settings)] == [s.name for s in SETTINGS]
    defaults = Settings()
    for s in SETTINGS:
        assert getattr(defaults, s.name) == s.default, s.name
