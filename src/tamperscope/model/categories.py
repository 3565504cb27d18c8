"""Citizen Lab's test-list categories: what a site is (news, human rights, circumvention tools...).

A measurement does not record its input's category (OONI's format has no such field, and OONI's own
pipeline looks it up in Citizen Lab's lists). tamperscope does the same: the lists a store was given
(`tamperscope analyze --test-list`) say each site's category, and the explorer and the report count
blocked sites by it. `NAMES` is the 31 codes of Citizen Lab's current lists, named as their CSVs'
``category_description`` column names them; a list that uses another code names it itself.
"""

from __future__ import annotations

from tamperscope.model.inputs import CATEGORY_CODE

NAMES: dict[str, str] = {
    "ALDR": "Alcohol & Drugs",
    "ANON": "Anonymization and circumvention tools",
    "COMM": "E-commerce",
    "COMT": "Communication Tools",
    "CTRL": "Control content",
    "CULTR": "Culture",
    "DATE": "Online Dating",
    "ECON": "Economics",
    "ENV": "Environment",
    "FILE": "File-sharing",
    "GAME": "Gaming",
    "GMB": "Gambling",
    "GOVT": "Government",
    "GRP": "Social Networking",
    "HACK": "Hacking Tools",
    "HATE": "Hate Speech",
    "HOST": "Hosting and Blogging Platforms",
    "HUMR": "Human Rights Issues",
    "IGO": "Intergovernmental Organizations",
    "LGBT": "LGBTQ+",
    "MILX": "Terrorism and Militants",
    "MISC": "Miscellaneous content",
    "MMED": "Media sharing",
    "NEWS": "News Media",
    "POLR": "Political Criticism",
    "PORN": "Pornography",
    "PROV": "Provocative Attire",
    "PUBH": "Public Health",
    "REL": "Religion",
    "SRCH": "Search Engines",
    "XED": "Sex Education",
}

GLOBAL = "ZZ"  # the country code of Citizen Lab's global list, as OONI writes it


def category_name(code: str | None, named: dict[str, str] | None = None) -> str:
    """The words for a category code: a list's own description first, then Citizen Lab's; the code itself
    when neither knows it; "Not in a test list" for None."""
    if code is None:
        return "Not in a test list"
    return (named or {}).get(code) or NAMES.get(code) or code


def category_label(code: str | None) -> str:
    """A category as the tables show it: "News Media (NEWS)" for Citizen Lab's codes, another code as it is,
    "Not in a test list" for None."""
    return category_name(code) + (f" ({code})" if code is not None and code in NAMES else "")


def normal_code(value: str) -> str:
    """``news`` -> "NEWS"; ValueError, in words, for anything but a few capitals, digits and underscores."""
    code = value.strip().upper()
    if not CATEGORY_CODE.fullmatch(code):
        raise ValueError(f"{value[:100]!r} is not a category code (NEWS, HUMR, ANON...)")
    return code


def list_country(stem: str) -> str:
    """The country a test list is for, from its file name as Citizen Lab names them: ``tm.csv`` is
    Turkmenistan's (TM), ``global.csv`` and any other name are global (ZZ)."""
    stem = stem.strip().lower()
    return stem.upper() if len(stem) == 2 and stem.isascii() and stem.isalpha() else GLOBAL


__all__ = ["GLOBAL", "NAMES", "category_label", "category_name", "list_country", "normal_code"]
