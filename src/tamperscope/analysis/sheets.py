"""CSV for spreadsheets: what the API's exports, the explorer's /new-blockpages.csv and ``report
--propose-fingerprints`` write.

Measurement content is hostile. A cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
is a formula to a spreadsheet (CSV injection): such a cell is written with a leading ``'``, which spreadsheets
show as text. A proposed pattern never begins so (`unrecognised.propose`), so it reads back exactly.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> Any:
    """A value as a CSV cell: a list joined by spaces, a date in ISO form, a would-be formula made text."""
    if isinstance(value, (list, tuple)):
        value = " ".join(str(v) for v in value)
    if isinstance(value, str) and value[:1] in FORMULA_STARTS:
        return "'" + value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def csv_text(rows: Sequence[dict[str, Any]], header: Sequence[str] | None = None) -> str:
    """``rows`` under ``header`` (default: the first row's keys), one CSV document with CRLF line ends."""
    out = io.StringIO()
    names = list(header or (rows[0].keys() if rows else []))
    writer = csv.writer(out)
    writer.writerow(names)
    for row in rows:
        writer.writerow([cell(row.get(n)) for n in names])
    return out.getvalue()


__all__ = ["FORMULA_STARTS", "cell", "csv_text"]
