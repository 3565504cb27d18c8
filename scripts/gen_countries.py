"""Write src/tamperscope/data/countries.tsv: each ISO 3166-1 code with the English names a country goes by.

    .venv/bin/python scripts/gen_countries.py [ISO_3166-1_JSON]

The names come from Debian's iso-codes (``/usr/share/iso-codes/json/iso_3166-1.json``: ISO's name, its
common name, its official name), and from `OTHER_NAMES` below: the short names GeoIP databases (MaxMind's
GeoLite, which Censored Planet's Satellite v1 used to tag its resolvers) give where ISO's differ, and names
from before a renaming. `tamperscope.model.countries` reads the file; a test checks the names in it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ISO = Path("/usr/share/iso-codes/json/iso_3166-1.json")
OUT = Path(__file__).resolve().parents[1] / "src" / "tamperscope" / "data" / "countries.tsv"

# Names not in ISO's three for a code: GeoIP short names, older names, common English ones.
OTHER_NAMES: dict[str, tuple[str, ...]] = {
    "AN": ("Netherlands Antilles",),  # withdrawn in 2010, still in older GeoIP data
    "AX": ("Åland",),
    "BN": ("Brunei",),
    "BQ": ("Bonaire, Sint Eustatius, and Saba", "Caribbean Netherlands"),
    "CC": ("Cocos [Keeling] Islands", "Cocos Islands"),
    "CD": ("DR Congo", "Democratic Republic of the Congo", "Congo (Kinshasa)", "Congo, Democratic Republic"),
    "CG": ("Congo Republic", "Republic of the Congo", "Congo (Brazzaville)"),
    "CI": ("Ivory Coast",),
    "CS": ("Serbia and Montenegro",),  # withdrawn in 2006
    "CV": ("Cape Verde",),
    "FK": ("Falkland Islands",),
    "FM": ("Micronesia",),
    "GB": ("Great Britain", "UK"),
    "JO": ("Hashemite Kingdom of Jordan",),
    "KN": ("St Kitts and Nevis", "St. Kitts and Nevis"),
    "KP": ("North Korea", "Democratic People's Republic of Korea"),
    "KR": ("Republic of Korea",),
    "LC": ("St Lucia", "St. Lucia"),
    "LT": ("Republic of Lithuania",),
    "MF": ("Saint Martin",),
    "MK": ("Macedonia", "Republic of Macedonia", "Macedonia, the former Yugoslav Republic of"),
    "MM": ("Myanmar [Burma]", "Burma"),
    "MO": ("Macao", "Macau"),
    "PN": ("Pitcairn Islands",),
    "PS": ("Palestine", "Palestinian Territory"),
    "RU": ("Russia",),
    "SH": ("Saint Helena",),
    "ST": ("Sao Tome and Principe",),
    "SX": ("Sint Maarten",),
    "SZ": ("Swaziland",),
    "TL": ("East Timor",),
    "TR": ("Turkey",),  # ISO's English name until 2022
    "UM": ("U.S. Minor Outlying Islands",),
    "US": ("USA", "United States of America"),
    "VA": ("Vatican City", "Vatican"),
    "VC": ("St Vincent and Grenadines", "St. Vincent and the Grenadines", "Saint Vincent and Grenadines"),
    "VG": ("British Virgin Islands",),
    "VI": ("U.S. Virgin Islands",),
    "XK": ("Kosovo",),  # not in ISO 3166-1; the code GeoIP databases and the EU use
}


def render(iso: Path) -> str:
    rows: dict[str, list[str]] = {}
    for entry in json.loads(iso.read_text(encoding="utf-8"))["3166-1"]:
        names = [entry[k] for k in ("name", "common_name", "official_name") if entry.get(k)]
        rows[entry["alpha_2"]] = list(dict.fromkeys(names))
    for code, names in OTHER_NAMES.items():
        rows.setdefault(code, [])
        rows[code] += [n for n in names if n not in rows[code]]
    lines = ["# ISO 3166-1 alpha-2 code, then the English names it goes by (scripts/gen_countries.py)"]
    lines += ["\t".join([code, *names]) for code, names in sorted(rows.items())]
    return "\n".join(lines) + "\n"


def main() -> int:
    iso = Path(sys.argv[1]) if len(sys.argv) > 1 else ISO
    OUT.write_text(render(iso), encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
