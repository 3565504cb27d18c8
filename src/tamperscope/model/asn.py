"""Prefix-to-ASN lookups from a table in iptoasn.com's TSV format.

Each line: range_start, range_end, AS number, country code, AS description,
tab-separated (IPv4 dotted quads). AS number 0 means "not routed". The
table is parsed from text here (pure); apps read the file. No IP-to-ASN source
on PyPI gives AS numbers, so users point the probe and helper at an iptoasn
dump, and the lab ships its own for 198.18.0.0/15.
"""

from __future__ import annotations

import bisect
import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class ASInfo:
    asn: int
    cc: str
    name: str


UNKNOWN = ASInfo(0, "ZZ", "")
MAX_TABLE = 256 << 20  # bytes of an ASN table read from a file: iptoasn.com's combined table is ~30 MB


class AsnTable:
    def __init__(self, rows: list[tuple[int, int, ASInfo]]) -> None:
        rows.sort(key=lambda r: r[0])
        self._starts = [r[0] for r in rows]
        self._rows = rows

    @classmethod
    def from_text(cls, text: str, source: str = "asn table") -> "AsnTable":
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) < 4:
                raise ValueError(f"{source}: line {n}: expected range_start, range_end, AS number, country, description")
            try:
                start = int(ipaddress.IPv4Address(parts[0].strip()))
                end = int(ipaddress.IPv4Address(parts[1].strip()))
                asn = int(parts[2])
            except ValueError:
                continue  # IPv6 rows and junk are skipped: this table serves IPv4
            rows.append((start, end, ASInfo(asn, parts[3].strip() or "ZZ", parts[4].strip() if len(parts) > 4 else "")))
        return cls(rows)

    @property
    def size(self) -> int:
        """How many ranges the table holds (0: no table was given, and nothing can be looked up)."""
        return len(self._rows)

    def lookup(self, ip: str) -> ASInfo:
        try:
            v = int(ipaddress.IPv4Address(ip))
        except ValueError:
            return UNKNOWN
        i = bisect.bisect_right(self._starts, v) - 1
        if i >= 0:
            start, end, info = self._rows[i]
            if start <= v <= end and info.asn:
                return info
        return UNKNOWN


EMPTY = AsnTable([])
