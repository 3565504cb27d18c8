"""A country's ISO 3166-1 code from its English name, as GeoIP databases and ISO write it.

Censored Planet's Satellite v1 tagged each resolver with its country's full name (MaxMind's
"Russia", "Turkey", "Ivory Coast"), where later data and ours carry the two-letter code. The names
are in ``tamperscope/data/countries.tsv`` (written by ``scripts/gen_countries.py`` from ISO's names,
common names and official names, and the GeoIP and older names beside them). Names are compared
without case, accents, punctuation or a leading "the": "Cote d'Ivoire" and "Côte d’Ivoire" are one.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from importlib import resources

_NOT_LETTERS = re.compile(r"[^0-9a-z]+")
MAX_NAME = 100  # characters: longer is no country's name


def _key(name: str) -> str:
    flat = unicodedata.normalize("NFKD", name[:MAX_NAME]).encode("ascii", "ignore").decode("ascii")
    words = _NOT_LETTERS.sub(" ", flat.lower().replace("&", " and ").replace("'", "").replace("’", "")).split()
    if words[:1] == ["the"]:
        words = words[1:]
    return " ".join("saint" if w == "st" else w for w in words)


@lru_cache(maxsize=1)
def _table() -> tuple[dict[str, str], frozenset[str]]:
    by_name: dict[str, str] = {}
    codes: set[str] = set()
    text = resources.files("tamperscope.data").joinpath("countries.tsv").read_text(encoding="utf-8")
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        code, *names = line.split("\t")
        codes.add(code)
        for name in names:
            by_name.setdefault(_key(name), code)
    return by_name, frozenset(codes)


def code_of(name: object) -> str | None:
    """The two-letter code (``RU``) of a country named ``name`` ("Russia", "Russian Federation", or the code
    itself), or None for a name the table does not hold or a value that is not text."""
    if not isinstance(name, str) or not name.strip():
        return None
    by_name, codes = _table()
    bare = name.strip()
    if len(bare) == 2 and bare.isascii() and bare.upper() in codes:
        return bare.upper()
    return by_name.get(_key(bare))


__all__ = ["code_of"]
