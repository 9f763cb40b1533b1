"""Nation codes: ISO 3166-1 alpha-3 only (a partner named by a wrong code would silently receive nothing), with a
hint for the code probably meant, and an explicit way for an operator to allow one outside ISO."""

from __future__ import annotations

import pytest

from relto.domain.errors import InvalidValue
from relto.domain.markings import canonical_rel_to
from relto.domain.parties import EXTRA_NATIONS_ENV, check_nation


@pytest.mark.parametrize("code", ["GBR", "kor", " usa ", "DEU", "UKR", "NZL"])
def test_iso_codes_are_accepted_upper_cased(code: str) -> None:
    assert check_nation(code) == code.strip().upper()


@pytest.mark.parametrize(
    ("code", "meant"), [("GER", "DEU"), ("ROK", "KOR"), ("SUI", "CHE"), ("NED", "NLD"), ("POR", "PRT")]
)
def test_a_wrong_code_says_which_was_meant(code: str, meant: str) -> None:
    with pytest.raises(InvalidValue, match=f"did you mean {meant}"):
        check_nation(code)


def test_nonsense_is_refused_and_says_how_to_allow_it(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidValue, match=f"{EXTRA_NATIONS_ENV}=QQQ"):
        check_nation("QQQ")
    with pytest.raises(InvalidValue, match="three letters"):
        check_nation("GB")
    monkeypatch.setenv(EXTRA_NATIONS_ENV, "qqq, XKX")
    assert check_nation("QQQ") == "QQQ"
    assert canonical_rel_to(["XKX", "GBR"]) == ("GBR", "XKX")


def test_rel_to_lists_are_checked_too() -> None:
    with pytest.raises(InvalidValue, match="DEU"):
        canonical_rel_to(["GBR", "GER"])
