"""CSV for spreadsheets: what the API's exports, the explorer's /new-blockpages.csv and ``report
--propose-fingerprints`` write; and JSON text for other programs (`escaped_json`: ``report --json``, ``analyze
--jsonl``).

Measurement content is hostile. A cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
is a formula to a spreadsheet (CSV injection): such a cell is written with a leading ``'``, which spreadsheets
show as text; so is one that begins so after white space and characters no one sees (`UNSEEN`: a NUL or an ESC
before the ``=``), which a spreadsheet may drop. A proposed pattern never begins so (`unrecognised.propose`), so
it reads back exactly. A cell's text is `shown` as the pages show it: a control character is U+FFFD, a bidi
control its escape, so that a NUL, an ESC or an RLO in a measurement neither reaches a terminal nor reorders a row.

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


# Characters of measurement content a page or a sheet must not pass on as they are. Controls (C0 but tab and
# newlines, DEL, C1), lone surrogates and noncharacters render as nothing, or as nothing a reader can tell apart:
# U+FFFD.
_UNSHOWN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]")
# Bidi controls (embeddings, overrides, isolates, marks): a right-to-left override in a network's name would
# reverse the page's own text after it. And characters no one sees that no script needs: invisible operators,
# deprecated format controls, the byte order mark, interlinear annotations, line and paragraph separators, tag
# characters, Hangul fillers. Shown as the escape that names them (``\u202e``, ``\U000e0041``), so a reader sees
# them.
_INVISIBLE = ("\u061c\u115f\u1160\u200e\u200f\u2028-\u202e\u2061-\u2064\u2066-\u206f\u3164\ufeff\uffa0"
              "\ufff9-\ufffb\U000e0000-\U000e007f")
# Joiners and other characters that show nothing but that scripts need between their letters: Persian writes the
# zero-width non-joiner inside words (می‌شود), Burmese and Thai a zero-width space between words, Indic scripts
# and emoji sequences the zero-width joiner, emoji the variation selectors. Escaped where a letter of theirs is not
# on both sides, as in ``exa<U+200B>mple.com`` or ``paypa<U+00AD>l``, which read as another name; a variation
# selector where it follows no such letter (it changes the one before it: ``❤️`` keeps its own).
_JOINERS = "\u00ad\u034f\u180e\u200b-\u200d\u2060"
_SELECTORS = "\ufe00-\ufe0f\U000e0100-\U000e01ef"
_ESCAPED = re.compile(f"[{_INVISIBLE}]|(?<![^\\x00-\\x7f])[{_JOINERS}{_SELECTORS}]|[{_JOINERS}](?![^\\x00-\\x7f])")


def _named(m: re.Match[str]) -> str:
    code = ord(m[0])
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def shown(text: str) -> str:
    """Text as a page or a spreadsheet can show it, whatever a measurement put in it: a control character (but tab,
    newline and carriage return) is U+FFFD; a bidi control, an invisible character (`_INVISIBLE`), and a joiner
    (`_JOINERS`) without a non-ASCII letter on both sides the escape that names it (``\\u202e``, ``\\u200b``), so
    measurement content can neither hide nor reorder the text around it, nor pass for another name
    (`report.shown_text` for pages, `cell` for sheets)."""
    if text.isascii():
        return text if text.isprintable() else _UNSHOWN.sub("\ufffd", text)
    return _ESCAPED.sub(_named, _UNSHOWN.sub("\ufffd", text))


def _formula(text: str) -> bool:
    if text[:1] in FORMULA_STARTS:
        return True
    before = _BEFORE_FORMULA.match(text)
    return before is not None and text[before.end():before.end() + 1] in FORMULA_STARTS


def cell(value: Any) -> Any:
    """A value as a CSV cell: a list joined by spaces, a date in ISO form, text `shown` (a NUL or an ESC is U+FFFD,
    a bidi control its escape: the export of a hostile measurement's fields reaches a terminal or a sheet), a
    would-be formula made text."""
    if isinstance(value, (list, tuple)):
        value = " ".join(str(v) for v in value)
    if isinstance(value, str):
        return ("'" if _formula(value) else "") + shown(value)  # a formula behind a NUL stays text once shown
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


__all__ = ["FORMULA_STARTS", "UNSEEN", "cell", "csv_text", "escaped_json", "shown"]
