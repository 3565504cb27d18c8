"""Lists are split into lines as an editor numbers them (CR, LF, CRLF): ``str.splitlines`` also split at a form
feed, U+0085 or U+2028, which cut an entry in two and shifted the line number every later message names."""

from __future__ import annotations

import pytest

from tamperscope.model.inputs import BadInput, first_column, lines_of, read_url_list


@pytest.mark.parametrize("sep", ["\x0c", "\x0b", "\x1c", "\x85", "\u2028", "\u2029"],
                         ids=["ff", "vt", "fs", "nel", "ls", "ps"])
def test_only_cr_and_lf_end_a_line(sep: str) -> None:
    text = f"http://a.example/{sep}\nhttp://b b/\n"
    with pytest.raises(BadInput) as e:
        read_url_list(text, "l.txt")
    assert "(line 2)" in str(e.value), str(e.value)  # the line an editor shows it on
    assert first_column(f"a.example{sep}b.example\r\nc.example\rd.example\n") == [
        (1, f"a.example{sep}b.example"), (2, "c.example"), (3, "d.example")]


def test_lines_of_keeps_crlf_cr_and_lf_alike() -> None:
    assert lines_of("a\r\nb\rc\nd") == ["a", "b", "c", "d"]
