"""How the explorer's pages show measurement content, in one place: `shown`, which `routes.render` runs over a
page's data before its template sees it, the Jinja environment's ``finalize`` hook, which every
``{{ expression }}`` goes through, and `isolated`, run on each rendered page.

Measurement content is hostile to the page's text, not only to its markup (autoescaping takes care of that):

* a control character (a NUL in an input) is shown as U+FFFD, a bidi control (a right-to-left override in a
  network's name, which reversed "(XS)" after it) as the escape that names it (``\\u202e``): `report.shown_text`,
  applied to every string of the page's data (the JSON twins keep the data as it is);
* text holding right-to-left letters (Arabic, Hebrew...) is isolated, in a ``<bdi>`` element, so it cannot move
  the page's own words and numbers around it.

``finalize`` does not know where in the page a value goes: it marks text to isolate with two noncharacters
(`OPEN`, `CLOSE`; `shown_text` replaced any the data held, so only these marks remain), and `isolated` makes them
``<bdi>`` and ``</bdi>`` in the page's text, and drops them where an element cannot go: inside a tag (an
attribute's value) and in the elements whose content is text only (``<title>``, ``<option>``, ``<textarea>``).
There the text is shown as `shown_text` made it, which holds no bidi control.
"""

from __future__ import annotations

import re
from typing import Any

from markupsafe import Markup

from tamperscope.analysis.report import MAX_SHOWN, RIGHT_TO_LEFT, host_shown, more_said, shown_text

OPEN = "\ufdd0"    # noncharacters: never in text `shown_text` made
CLOSE = "\ufdd1"
CUT = "\ufdd2"     # where a long value's shown part ends, and (`CUT_END`) where the value ends
CUT_END = "\ufdd3"
_CUT = re.compile(f"{CUT}([^{CUT_END}]*){CUT_END}")
_MARKS = str.maketrans({OPEN: None, CLOSE: None, CUT: None, CUT_END: None})
# elements whose text is shown, cut as the page's text is (a <textarea>, a <script>'s data: whole)
_SHOWN_TEXT_ONLY = frozenset({"title", "option"})
_RTL = RIGHT_TO_LEFT
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)?[^>]*>")
_TEXT_ONLY = frozenset({"title", "option", "textarea", "script", "style"})


class Whole(str):
    """Text a page shows whole however long (a captured body, already cut to `evidence.MAX_BODY_TEXT`)."""

    __slots__ = ()


def finalize(value: Any) -> Any:
    """What a template's ``{{ value }}`` shows (the Jinja environment's ``finalize``): text as `shown_text` makes
    it, marked for isolation when it holds right-to-left letters, and past `MAX_SHOWN` characters marked where
    the page's text cuts it (`isolated`). Markup (a macro's output) is left as it is: its parts were finalized,
    and its tags cannot go in a ``<bdi>``."""
    if isinstance(value, Markup) or not isinstance(value, str):
        return value
    text = shown_text(value)
    if len(text) > MAX_SHOWN and not isinstance(value, Whole):
        text = text[:MAX_SHOWN] + CUT + text[MAX_SHOWN:] + CUT_END
    return OPEN + text + CLOSE if _RTL.search(text) else text


def _unmarked(text: str) -> str:
    return text.translate(_MARKS)


def _said(m: re.Match[str]) -> str:
    return more_said(len(m[1]))


def _cut(text: str) -> str:
    return _CUT.sub(_said, text) if CUT in text else text


def isolated(page: str) -> str:
    """A rendered page with `finalize`'s marks made ``<bdi>`` elements in its text, and dropped elsewhere; and a
    long value cut in the page's text (the rest said: "… (1,044,480 more characters)"), whole where it is data:
    inside a tag (a link, a form field's value) and in a ``<textarea>`` or a ``<script>``."""
    if OPEN not in page and CUT not in page:
        return page
    out: list[str] = []
    at = 0
    text_only = ""
    for tag in _TAG.finditer(page):
        out.append(_part(page[at:tag.start()], text_only))
        out.append(_unmarked(tag[0]))
        # the text up to the next tag is an element's that holds text only: no tag is inside one (escaped content
        # holds no "<"), so any tag ends it, its end tag or (an <option> left open) the next
        name = (tag[2] or "").lower()
        text_only = name if not tag[1] and name in _TEXT_ONLY else ""
        at = tag.end()
    out.append(_part(page[at:], text_only))
    return "".join(out)


def _part(text: str, text_only: str) -> str:
    if not text_only:
        return _cut(text).replace(OPEN, "<bdi>").replace(CLOSE, "</bdi>")
    return _unmarked(_cut(text) if text_only in _SHOWN_TEXT_ONLY else text)


def host(value: Any) -> str:
    """The ``host`` filter: a site's name as `report.host_shown` shows it (its ASCII form beside one beyond ASCII)."""
    return host_shown(value) if value is not None else ""


def shown(value: Any) -> Any:
    """``value`` with every string in it, in dicts (their keys too), lists and tuples, as `shown_text` makes it: the
    data a page is rendered from, so that no filter (``join``, ``replace``, ``attrjson``...) passes on what a
    measurement put in it."""
    if isinstance(value, str):
        if isinstance(value, Whole):
            return Whole(shown_text(value))
        return value if isinstance(value, Markup) else shown_text(value)
    if isinstance(value, dict):
        return {shown_text(k) if isinstance(k, str) else k: shown(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shown(v) for v in value]
    if isinstance(value, tuple):
        return tuple(shown(v) for v in value)
    return value


__all__ = ["CLOSE", "CUT", "CUT_END", "OPEN", "Whole", "finalize", "host", "isolated", "shown"]
