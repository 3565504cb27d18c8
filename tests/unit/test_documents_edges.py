"""Edges of `analysis.documents`: how a ``.json`` input that starts with ``{`` is told pretty-printed documents or
damaged JSON lines, the per-item bound of an array at exactly the limit, and what a collector submission must be."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import orjson

from tamperscope.analysis import documents
from tamperscope.analysis.records import Line, Rejection


def _read(data: bytes, max_bytes: int = 10_000) -> list[Line | Rejection]:
    return list(documents.read_json("x.json", io.BytesIO(data), max_bytes))


def _lines(records: list[Line | Rejection]) -> list[tuple[int, bytes]]:
    return [(r.line, r.data) for r in records if isinstance(r, Line)]


def test_two_damaged_lines_that_start_with_a_brace_among_the_first_five_make_json_lines() -> None:
    """In a pretty-printed document only its first line starts with "{": two such lines (both damaged) among the
    first five mean JSON lines, and the good line after them is kept as a line of its own (read as one document,
    it would be lost with the damage)."""
    data = b'{"a": 1,\n{"b": 2,\nxx\nyy\nzz\n{"c": 3}\n'
    assert _lines(_read(data)) == [(1, b'{"a": 1,'), (2, b'{"b": 2,'), (3, b"xx"), (4, b"yy"), (5, b"zz"),
                                   (6, b'{"c": 3}')]


def test_a_whole_object_on_the_third_line_makes_json_lines() -> None:
    """Up to five lines are looked at before a "{" start is taken for a document: a whole object on the third line
    (after two damaged ones) means JSON lines, whose good lines are kept."""
    data = b'{"a": 1,\nxx\n{"c": 3}\n{"d": 4}\n'
    assert _lines(_read(data)) == [(1, b'{"a": 1,'), (2, b"xx"), (3, b'{"c": 3}'), (4, b'{"d": 4}')]


def test_a_first_line_one_byte_over_the_limit_is_too_large_and_the_lines_after_it_are_read() -> None:
    """A first line of max_bytes + 1 bytes is over the limit: JSON lines, one "too_large" and the lines after it
    kept (looked at further, the four lines after it made the input one pretty-printed document)."""
    limit = 50
    first = b"{" + b"x" * limit  # limit + 1 bytes, no object
    data = first + b"\nab\ncd\nef\ngh\n"
    records = _read(data, limit)
    assert [(r.line, r.reason) for r in records if isinstance(r, Rejection)] == [(1, "too_large")]
    assert _lines(records) == [(2, b"ab"), (3, b"cd"), (4, b"ef"), (5, b"gh")]


def test_an_array_item_of_exactly_the_limit_followed_by_spaces_is_kept() -> None:
    """The bound is on the item's bytes, not the white space after it: an item of exactly max_bytes bytes, with
    spaces before the array's "]", is kept."""
    item = orjson.dumps({"k": "v" * 40})
    data = b"[" + item + b"   \n  ]"
    records = _read(data, len(item))
    assert _lines(records) == [(1, item)]
    assert [r for r in records if isinstance(r, Rejection)] == []
    over = _read(b"[" + item + b"   \n  ]", len(item) - 1)
    assert [(r.line, r.reason) for r in over] == [(1, "too_large")]


def test_a_damaged_array_item_that_is_not_utf8_ends_at_the_next_items_line() -> None:
    """A damaged item holding a byte that is not UTF-8 is shown damaged as any other (orjson gives no position for
    it): it ends at the next line that starts an item, and the items after it are kept."""
    data = b'[\n  {"a": "\xff", "b": [1,\n  {"c": 2},\n  {"d": 3}\n]\n'
    records = _read(data)
    assert _lines(records) == [(2, b'{"c":2}'), (3, b'{"d":3}')]
    assert [(r.line, r.reason) for r in records if isinstance(r, Rejection)] == [(1, "corrupt_json")]


def test_an_array_cut_after_a_number_keeps_only_its_complete_objects() -> None:
    """An array cut short keeps the object items complete before the cut; a number (or a string) at the cut may be
    cut itself ("12" of "123") and is no item: one "corrupt_json" says the array ends early after 1 item."""
    for tail in (b"12", b'"abc"'):
        records = _read(b'[{"a": 1}, ' + tail)
        assert _lines(records) == [(1, b'{"a":1}')]
        assert [(r.line, r.reason, r.detail) for r in records if isinstance(r, Rejection)] == \
            [(2, "corrupt_json", "the JSON array ends early, after 1 items")]


def test_a_json_value_one_byte_over_the_limit_is_too_large() -> None:
    """A ``.json`` file holding one value that is neither an array nor an object is bounded too: max_bytes bytes
    are read, one more is "too_large"."""
    value = b'"' + b"x" * 20 + b'"'
    assert [(r.line, r.data) for r in _read(value, len(value)) if isinstance(r, Line)] == [(1, value)]
    assert [(r.line, r.reason) for r in _read(value, len(value) - 1) if isinstance(r, Rejection)] == \
        [(0, "too_large")]


def _post(value: object) -> list[Line | Rejection]:
    return list(documents.read_post("x.post", io.BytesIO(orjson.dumps(value)), 10_000))


def test_a_submission_in_another_format_or_with_content_that_is_no_object_is_rejected() -> None:
    """A collector submission is ``{"format": "json", "content": {...}}``: another format is "unsupported_format" and
    content that is no object "wrong_type", never a measurement stored."""
    assert [(r.line, r.data) for r in _post({"format": "json", "content": {"a": 1}}) if isinstance(r, Line)] == \
        [(1, b'{"a":1}')]
    for post, reason in (({"format": "yaml", "content": {"a": 1}}, "unsupported_format"),
                         ({"content": {"a": 1}}, "unsupported_format"),
                         ({"format": "json", "content": [{"a": 1}]}, "wrong_type"),
                         ({"format": "json", "content": "{}"}, "wrong_type"),
                         ({"format": "json"}, "wrong_type")):
        records = _post(post)
        assert [(type(r), r.line, getattr(r, "reason", "")) for r in records] == [(Rejection, 1, reason)], post


def test_a_gzipped_array_cut_short_names_the_record_after_the_last_complete_one() -> None:
    """A compressed array cut short keeps its complete items, numbered 1..n, and one "truncated" numbered n + 1, the
    record the cut fell in (numbered n, it would point at an item that was kept)."""
    items = b",\n".join(orjson.dumps({"i": i, "pad": "p" * 200}) for i in range(50))
    packed = gzip.compress(b"[" + items + b"]", mtime=0)
    cut = gzip.GzipFile(fileobj=io.BytesIO(packed[: len(packed) // 2]))
    records = list(documents.read_json("x.json.gz", cut, 10_000))
    kept = _lines(records)
    assert kept and [n for n, _ in kept] == list(range(1, len(kept) + 1)) and len(kept) < 50
    last = records[-1]
    assert isinstance(last, Rejection) and (last.line, last.reason) == (len(kept) + 1, "truncated")
    assert f"after {len(kept)} complete records" in last.detail


def _tar(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_nul_padding_after_a_tar_gz_is_no_gzip_member(tmp_path: Path) -> None:
    """NUL bytes after the last gzip member (block padding) are not another member: an archive cut between its
    members, then padded, is "truncated" as it is unpadded, not "damaged" by a gzip header that is not there."""
    whole = _tar([("a.jsonl", b'{"a":1}\n{"b":2}\n'), ("b.jsonl", b'{"c":3}\n')])
    cut = whole[:2048]  # the two members (a header and a block of data each), no end-of-archive marker
    for pad in (b"", b"\0" * 512):
        path = tmp_path / "can.tar.gz"
        path.write_bytes(gzip.compress(cut, mtime=0) + pad)
        records = list(documents.read_tar(str(path), 1000))
        assert [r.data for r in records if isinstance(r, Line)] == [b'{"a":1}', b'{"b":2}', b'{"c":3}']
        assert [(r.line, r.reason) for r in records if isinstance(r, Rejection)] == [(0, "truncated")], pad


def test_short_pretty_printed_documents_one_after_another_are_each_kept() -> None:
    """A first line that is only "{" means pretty-printed documents at once: two documents of three lines each
    (their second "{" among the first five lines) are two measurements, not six damaged JSON lines."""
    data = b'{\n  "a": 1\n}\n{\n  "b": 2\n}\n'
    records = _read(data)
    assert _lines(records) == [(1, b'{   "a": 1 }'), (4, b'{   "b": 2 }')]
    assert [r for r in records if isinstance(r, Rejection)] == []
