"""A country's code from the names GeoIP databases and ISO give it (tamperscope.model.countries)."""

from __future__ import annotations

from importlib import resources

import pytest

from tamperscope.model.countries import code_of


def _rows() -> list[tuple[str, list[str]]]:
    text = resources.files("tamperscope.data").joinpath("countries.tsv").read_text(encoding="utf-8")
    return [(code, names) for code, *names in (line.split("\t") for line in text.splitlines()
                                                if line and not line.startswith("#"))]


@pytest.mark.parametrize(("name", "code"), [
    ("Russia", "RU"), ("Russian Federation", "RU"), ("Turkey", "TR"), ("Türkiye", "TR"), ("Iran", "IR"),
    ("Iran, Islamic Republic of", "IR"), ("Ivory Coast", "CI"), ("Côte d’Ivoire", "CI"), ("Cote d'Ivoire", "CI"),
    ("South Korea", "KR"), ("North Korea", "KP"), ("Vietnam", "VN"), ("Myanmar [Burma]", "MM"), ("DR Congo", "CD"),
    ("Congo Republic", "CG"), ("St Kitts and Nevis", "KN"), ("Saint Kitts and Nevis", "KN"), ("Kosovo", "XK"),
    ("the Netherlands", "NL"), ("Bosnia & Herzegovina", "BA"), ("  turkmenistan ", "TM"), ("Hong Kong", "HK"),
    ("Åland", "AX"), ("Netherlands Antilles", "AN"), ("tr", "TR"), ("BY", "BY")])
def test_a_name_gives_its_code(name: str, code: str) -> None:
    assert code_of(name) == code


@pytest.mark.parametrize("value", [None, 5, "", "   ", "Atlantis", "ZZ", "QQ", "Russia" * 50, "Rus\x00sia", ["RU"]])
def test_what_names_no_country_gives_none(value: object) -> None:
    assert code_of(value) is None


def test_every_name_in_the_table_gives_its_own_code_and_every_iso_country_is_there() -> None:
    rows = _rows()
    codes = [code for code, _ in rows]
    assert len(codes) == len(set(codes)) and len(codes) >= 249  # ISO 3166-1's 249, and the names beside them
    for code, names in rows:
        assert len(code) == 2 and code.isascii() and code.isupper() and names, code
        for name in names:
            assert code_of(name) == code, (name, code)
    # ISO's names for the countries where censorship is measured most, as the table writes them
    assert {"Turkmenistan", "China", "Belarus", "Eritrea", "Myanmar", "Saudi Arabia"} <= {
        n for _, names in rows for n in names}
