"""Long lists (TMC measured 15.5M domains): a list is read a part at a time, numbered as an editor numbers it, cut
at commas as the csv module cuts it, held once; and the ranked lists researchers start from (Tranco's
``1,example.com``) give their names to `remote`, not their ranks."""

from __future__ import annotations

import argparse
import random
import string
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tamperscope.cli import UsageError
from tamperscope.model import inputs
from tamperscope.model.inputs import (
    BadInput,
    ListEntry,
    categories_by_line,
    first_column,
    lines_of,
    list_entries,
    numbered_lines,
    read_bounded,
    read_url_list,
)
from tamperscope.probe import remote

TEXT = st.text(alphabet="ab.,# \t\r\n\ufeff\u2028", max_size=60)


@given(TEXT)
@settings(max_examples=300, deadline=None)
def test_lines_are_numbered_alike_whatever_the_part_size(text: str) -> None:
    whole = list(enumerate(lines_of(text), 1))
    saved = inputs.LINES_AT_ONCE
    try:
        for size in (1, 2, 3, 5, 8):
            inputs.LINES_AT_ONCE = size
            assert list(numbered_lines(text)) == whole, size
    finally:
        inputs.LINES_AT_ONCE = saved


@given(TEXT, st.booleans())
@settings(max_examples=300, deadline=None)
def test_a_list_without_quotes_reads_as_the_csv_module_reads_it(text: str, ranked: bool) -> None:
    quoted = text + '\n#"'  # a quote in a comment: the same records, read by the csv module
    headers = ("url", "domain")
    assert first_column(text, "l", headers, ranked) == first_column(quoted, "l", headers, ranked)
    assert categories_by_line(text) == categories_by_line(quoted)


def _names(n: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    return ["".join(rnd.choices(string.ascii_lowercase, k=rnd.randint(5, 12))) + rnd.choice([".com", ".tm", ".org"])
            for _ in range(n)]


def _domains(path: Path) -> list[str]:
    args = argparse.Namespace(input=[], list=[path], category=None)
    return remote._inputs(args, remote.KINDS["dns"], {})


def test_a_ranked_list_gives_its_names(tmp_path: Path) -> None:
    lst = tmp_path / "top.csv"
    lst.write_text("1,example.com\n2,Example.ORG\n3,example.com\n10,xn--d1acpjx3f.xn--p1ai\n")  # Tranco's form
    assert _domains(lst) == ["example.com", "example.org", "xn--d1acpjx3f.xn--p1ai"]
    lst.write_text("Rank,Domain\n1,a.example\n2,b.example\n")  # a header naming the column of names
    assert _domains(lst) == ["a.example", "b.example"]
    lst.write_text("domain,rank\na.example,1\n")
    assert _domains(lst) == ["a.example"]
    lst.write_text("url,category_code\nhttp://a.example/,NEWS\n")  # a Citizen Lab list: its URLs' hosts
    assert _domains(lst) == ["a.example"]
    lst.write_text("category_code,url\nNEWS,http://b.example/\n")  # a header naming its column of URLs
    assert _domains(lst) == ["b.example"]
    lst.write_text("urls,category_code\nhttp://a.example/,NEWS\n")  # no column is named: refused, not measured
    with pytest.raises(UsageError, match=r"top.csv: line 1: 'urls' is not a domain \(a list's header names its "
                                         r"column of domains url or domain\)"):
        _domains(lst)
    lst.write_text("1,\n")  # a rank without its name
    with pytest.raises(UsageError, match="line 1: not a domain name: '1'"):
        _domains(lst)
    # run reads a header naming its column of URLs, but a URL with ",url" in it is a URL
    assert read_url_list("category_code,url\nNEWS,http://b.example/\n") == [ListEntry("http://b.example/", "NEWS")]
    assert read_url_list("http://a.example/?q=1,url\n") == [ListEntry("http://a.example/?q=1,url", None)]
    # where a list is not ranked (run's inputs) the first column is the entry, as it was
    assert first_column("1,example.com\n") == [(1, "1")]
    assert list_entries("1,example.com\n", ranked=True) == [(1, "example.com")]


def test_a_bad_entry_far_into_a_long_list_is_named_by_its_line(tmp_path: Path) -> None:
    names = _names(300_000, 1)
    names[250_000] = "bad..name"
    lst = tmp_path / "long.txt"
    lst.write_bytes(("# a long list\r\n" + "\r\n".join(names) + "\r\n").encode())
    assert lst.stat().st_size > 3 * inputs.LINES_AT_ONCE  # read in parts
    with pytest.raises(UsageError, match=r"long.txt: line 250002: not a domain name: 'bad..name'"):
        _domains(lst)
    text = "url\n" + "\n".join(f"http://{n}/" for n in names[:200_000]) + '\n"http://a.example/x,y",NEWS\nhttp://b b/\n'
    with pytest.raises(BadInput, match=r"l.csv: entry 200002 \(line 200003\): malformed URL 'http://b b/'"):
        read_url_list(text, "l.csv")


def test_a_long_list_is_held_once(tmp_path: Path) -> None:
    """The peak of what Python holds while `remote` reads 200,000 domains, against the file's size: about 10x
    (the text, the names kept, their table), where it was 33x (the lines, the CSV rows and the entries as lists,
    each whole, at once)."""
    names = _names(200_000, 2)
    lst = tmp_path / "long.txt"
    lst.write_text("\n".join(names) + "\n")
    tracemalloc.start()
    try:
        got = _domains(lst)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == list(dict.fromkeys(names))
    assert peak < 16 * lst.stat().st_size, f"{peak / lst.stat().st_size:.1f}x the file"


def test_a_small_list_is_not_read_into_a_list_sized_buffer(tmp_path: Path) -> None:
    lst = tmp_path / "small.txt"
    lst.write_text("a.example\n")
    tracemalloc.start()
    try:
        assert read_bounded(lst, remote.MAX_DOMAIN_LIST, "list") == "a.example\n"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 256 << 10  # f.read(512 MiB) took 512 MiB before it read 10 bytes
    with pytest.raises(BadInput, match="larger than 1 MiB"):
        read_bounded("/dev/zero", 1 << 20, "list")
