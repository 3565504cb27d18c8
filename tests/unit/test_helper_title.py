"""The test helper reads the title of pages fetched from servers its clients name: in linear time."""

from __future__ import annotations

import re
import time

import pytest

from tamperscope.helper.server import title_of

_REFERENCE = re.compile(rb"<title[^>]*>(.*?)</title>", re.I | re.S)  # what it did, slowly


@pytest.mark.parametrize("body", [
    b"<html><head><title>Example Domain</title></head></html>",
    b"<TITLE lang='en'>\n  Access denied \n</TITLE>",
    b"<title>first</title><title>second</title>",
    b"<title>no end",
    b"<title no closing bracket",
    b"no title at all",
    b"<title></title>",
    "<title>Доступ ограничен</title>".encode(),
])
def test_the_same_titles_as_before(body: bytes) -> None:
    m = _REFERENCE.search(body)
    assert title_of(body) == (m.group(1).decode("utf-8", "replace").strip()[:256] if m else "")


def test_a_hostile_page_costs_linear_time() -> None:
    started = time.process_time()
    for body in (b"<title>" * 9362, b"<title" * 10_000, b"<title>" + b"x" * 65_000):
        assert title_of(body) == ""
    assert time.process_time() - started < 0.5  # the regex took 7 s on the first
