"""Edges of `explorer.display` the page tests leave open: where a value is cut exactly, text that follows an end
tag, an <option>'s long text, a macro's Markup, and the keys and tuples of a page's data."""

from __future__ import annotations

from markupsafe import Markup

from tamperscope.analysis.report import MAX_SHOWN
from tamperscope.explorer.display import CLOSE, CUT, OPEN, Whole, finalize, isolated, shown

ARABIC = "\u0645\u0631\u062d\u0628\u0627"  # right-to-left letters, isolated in a page's text


def test_a_value_one_character_past_max_shown_is_cut_and_one_of_max_shown_is_not() -> None:
    """A bound off by one would show a value of MAX_SHOWN + 1 characters whole in the page's text."""
    assert CUT not in finalize("x" * MAX_SHOWN)
    assert isolated(f"<p>{finalize('x' * MAX_SHOWN)}</p>") == f"<p>{'x' * MAX_SHOWN}</p>"
    out = isolated(f"<p>{finalize('x' * (MAX_SHOWN + 1))}</p>")
    assert out.startswith(f"<p>{'x' * MAX_SHOWN}… (1 more character)") and "x" * (MAX_SHOWN + 1) not in out


def test_text_after_an_end_tag_of_a_text_only_element_is_isolated() -> None:
    """Only a start tag opens a <title> or <textarea>: its end tag taken as one would leave the text after it
    unisolated (the marks dropped), free to reorder the page around it."""
    marked = finalize(ARABIC)
    for name in ("title", "textarea", "option", "script"):
        page = f"<{name}>t</{name}>{marked} (XS)<p>x</p>"
        assert isolated(page) == f"<{name}>t</{name}><bdi>{ARABIC}</bdi> (XS)<p>x</p>", name


def test_a_long_option_is_cut_as_the_page_text_is() -> None:
    """An <option> shows its text: a megabyte network name in a select would otherwise be a megabyte page."""
    long = "y" * (MAX_SHOWN + 5000)
    out = isolated(f"<select><option>{finalize(long)}</option></select>")
    assert out == f"<select><option>{'y' * MAX_SHOWN}… (5,000 more characters)</option></select>"
    assert CUT not in out and OPEN not in out


def test_a_macros_markup_is_neither_reshown_nor_isolated() -> None:
    """Markup's parts were finalized: isolating it would put its tags inside a <bdi>."""
    markup = Markup(f"<b>{ARABIC}</b>")
    assert finalize(markup) is markup
    assert OPEN not in finalize(markup) and CLOSE not in finalize(markup)


def test_the_keys_of_a_pages_data_and_its_tuples_are_shown_too() -> None:
    """A key (a network's name used as a dict key) or a tuple's item left as it is would pass a bidi override or a
    NUL to a filter like ``join`` or ``attrjson``."""
    data = shown({"AS1 \u202e(XS)": ("a\x00b", ["c\u202ed"]), 7: "\u202e"})
    assert data == {"AS1 \\u202e(XS)": ("a\ufffdb", ["c\\u202ed"]), 7: "\\u202e"}
    assert isinstance(data["AS1 \\u202e(XS)"], tuple)


def test_whole_text_is_shown_and_stays_whole() -> None:
    """A captured body (Whole) is shown as any text is, and keeps being Whole so that the page does not cut it."""
    body = shown(Whole("blocked\x00 \u202e(XS)"))
    assert body == "blocked\ufffd \\u202e(XS)" and isinstance(body, Whole)
    assert shown([Whole("a\u202e")])[0] == "a\\u202e"


def test_a_tag_name_in_capitals_is_the_same_element() -> None:
    """HTML tag names have no case: a <TITLE> holds text only, where a <bdi> cannot go."""
    marked = finalize(ARABIC)
    page = f"<TITLE>{marked}</TITLE><Option>{marked}</Option><P>{marked}</P>"
    assert isolated(page) == f"<TITLE>{ARABIC}</TITLE><Option>{ARABIC}</Option><P><bdi>{ARABIC}</bdi></P>"


def test_the_reports_clipped_value_counts_what_is_cut_in_words_that_agree() -> None:
    """One character cut is "1 more character", more are "characters"; a value at the limit is not cut."""
    from tamperscope.analysis.report import clipped

    assert clipped("abcd", limit=3) == "abc… (1 more character)"
    assert clipped("abcdef", limit=3) == "abc… (3 more characters)"
    assert clipped("abc", limit=3) == "abc"
