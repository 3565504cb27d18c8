"""CSV for spreadsheets: what the API's exports, the explorer's /new-blockpages.csv and ``report
--propose-fingerprints`` write; and JSON text for other programs (`escaped_json`: ``report --json``, ``analyze
--jsonl``).

Measurement content is hostile. A cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
is a formula to a spreadsheet (CSV injection): such a cell is written with a leading ``'``, which spreadsheets
show as text; so is one that begins so after white space and characters no one sees (`UNSEEN`: a NUL or an ESC
before the ``=``), which a spreadsheet may drop. A proposed pattern never begins so (`unrecognised.propose`), so
it reads back exactly.

`UNSEEN` is the one list of the characters measurement content must not carry as they are into a file, a
terminal or a page: a proposed fingerprint holds none (`unrecognised`), and the JSON the commands write has them
escaped (`escaped_json`: orjson escapes the C0 controls only, and a C1 control or a bidi override in a
``report --json -`` reaches the terminal).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

# Characters no one sees, that move or hide text, or that a terminal runs: the C0 controls but tab and the line
# ends, DEL and the C1 controls (ESC, BEL, NUL, BS, CSI...), the bidi controls (embeddings, overrides, isolates,
# marks), the zero-width characters (spaces, joiners, word joiner, BOM), the invisible operators, the line and
# paragraph separators and the interlinear annotation marks. A regex character class, for ``[...]``.
UNSEEN = ("\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064"
          "\u2066-\u206f\ufeff\ufff9-\ufffb")
# what may come before a formula's first character and leave it one
_BEFORE_FORMULA = re.compile(f"[\\s{UNSEEN}]+")

# `UNSEEN` but the C0 controls (JSON escapes those), as UTF-8: what `escaped_json` looks for, at C speed
_UNSEEN_UTF8 = re.compile(rb"\x7f|\xc2[\x80-\x9f]|\xd8\x9c|\xe1\xa0\x8e|\xe2\x80[\x8b-\x8f\xa8-\xae]"
                          rb"|\xe2\x81[\xa0-\xa4\xa6-\xaf]|\xef\xbb\xbf|\xef\xbf[\xb9-\xbb]")


def _escape(match: re.Match[bytes]) -> bytes:
    return b"\\u%04x" % ord(match[0].decode())


def escaped_json(data: bytes) -> bytes:
    """JSON text (orjson's: UTF-8, C0 controls escaped) with every other `UNSEEN` character escaped as
    ``\\uXXXX``: the same values when read back, and nothing a terminal runs or that reorders the text around it
    when it is shown. Such a character can only be inside a string, where the escape means it. The text is
    returned as it is (no copy) when it holds none, which is nearly always: ``analyze --jsonl`` calls this on
    every line."""
    if (data.isascii() and b"\x7f" not in data) or _UNSEEN_UTF8.search(data) is None:
        return data
    return _UNSEEN_UTF8.sub(_escape, data)


def _formula(text: str) -> bool:
    if text[:1] in FORMULA_STARTS:
        return True
    before = _BEFORE_FORMULA.match(text)
    return before is not None and text[before.end():before.end() + 1] in FORMULA_STARTS


def cell(value: Any) -> Any:
    """A value as a CSV cell: a list joined by spaces, a date in ISO form, a would-be formula made text."""
    if isinstance(value, (list, tuple)):
        value = " ".join(str(v) for v in value)
    if isinstance(value, str) and _formula(value):
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


__all__ = ["FORMULA_STARTS", "UNSEEN", "cell", "csv_text", "escaped_json"]
