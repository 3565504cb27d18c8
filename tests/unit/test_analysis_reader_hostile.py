"""Hostile and unusual input for the reader: big JSON arrays and documents, archives of pretty-printed
files, truncated archives and zstd files, byte-order marks, FIFOs in directories, symbolic link loops.

Each case goes through the public reader (`reader.read`, `read_partition`, `discover`) and checks what a
user would: how many measurements are kept, and which rejections say why the rest were not.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import socket
import tarfile
import threading
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from tamperscope.analysis import reader
from tamperscope.analysis.reader import Line, Partition, Rejection
from tests.unit.test_analysis_streams import _zstd

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"
BOM = b"\xef\xbb\xbf"


def _samples(n: int = 50) -> list[dict[str, Any]]:
    paths = sorted(p / "measurement.json" for p in SAMPLES.iterdir() if (p / "measurement.json").is_file())
    return [json.loads(p.read_text(encoding="utf-8")) for p in paths[:n]]


def _many(n: int) -> list[dict[str, Any]]:
    """``n`` real measurements: the samples again and again, each copy with its own report_id."""
    samples = _samples()
    return [dict(samples[i % len(samples)], report_id=f"20240101T000000Z_hostile_{i:08d}") for i in range(n)]


def _split(items: Iterator[Line | Rejection] | list[Line | Rejection]) -> tuple[list[Line], list[Rejection]]:
    items = list(items)
    return [i for i in items if isinstance(i, Line)], [i for i in items if isinstance(i, Rejection)]


def _part(path: Path, kind: str, max_bytes: int) -> tuple[list[Line], list[Rejection]]:
    return _split(reader.read_partition(Partition(str(path), kind), max_bytes=max_bytes))


# --------------------------------------------------------------------------- 1. JSON arrays and documents


def test_a_json_array_over_16_mib_keeps_every_measurement_from_a_file_a_pipe_and_stdin(
        tmp_path: Path, fifo: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real limit: a pretty-printed array of more than 16 MiB is read item by item, not rejected whole."""
    ms = _many(1400)
    data = orjson.dumps(ms, option=orjson.OPT_INDENT_2)
    assert len(data) > reader.MAX_MEASUREMENT_BYTES
    path = tmp_path / "big.json"
    path.write_bytes(data)
    stdin = io.TextIOWrapper(io.BufferedReader(io.BytesIO(data)))  # tamperscope analyze - < big.json
    monkeypatch.setattr("sys.stdin", stdin)
    for source in (path, fifo(data), reader.STDIN):
        lines, rejections = _split(reader.read([source]))
        assert rejections == []
        assert len(lines) == len(ms)
        # as a small array always was: each item re-serialised, numbered from 1
        assert [line.line for line in lines[:3]] == [1, 2, 3]
        assert lines[-1].data == orjson.dumps(ms[-1])
        assert {orjson.loads(line.data)["report_id"] for line in lines} == {m["report_id"] for m in ms}


def test_an_array_item_over_the_limit_is_one_rejection_and_the_others_are_kept(tmp_path: Path, fifo: Any) -> None:
    ms = _many(6)
    big = dict(ms[2], test_keys=dict(ms[2]["test_keys"], body="B" * 40_000))
    items = [ms[0], ms[1], big, ms[3], ms[4], ms[5]]
    data = orjson.dumps(items, option=orjson.OPT_INDENT_2)
    path = tmp_path / "array.json"
    path.write_bytes(data)
    for lines, rejections in (_part(path, "json", 30_000), _split(reader.read_partition(
            Partition(str(fifo(data)), "stream"), max_bytes=30_000))):
        assert [(r.line, r.reason) for r in rejections] == [(3, "too_large")]
        assert [line.line for line in lines] == [1, 2, 4, 5, 6]
        assert [line.data for line in lines] == [orjson.dumps(m) for m in (ms[0], ms[1], ms[3], ms[4], ms[5])]


def test_an_array_with_a_bad_item_or_cut_short_keeps_the_good_items(tmp_path: Path) -> None:
    good = [orjson.dumps(m) for m in _many(4)]
    path = tmp_path / "bad.json"
    path.write_bytes(b"[" + b",\n".join([good[0], b'{"test_name": tru}', good[1], b"42", good[2]]) + b"]\n")
    lines, rejections = _split(reader.read([path]))
    assert [line.data for line in lines] == good[:3]
    assert [(r.line, r.reason) for r in rejections] == [(2, "corrupt_json"), (4, "wrong_type")]

    whole = b"[\n" + b",\n".join(good) + b"\n]\n"
    cut = whole.index(good[3]) + len(good[3]) // 2  # in the middle of the last item
    path.write_bytes(whole[:cut])
    lines, rejections = _split(reader.read([path]))
    assert [line.data for line in lines] == good[:3]
    assert [(r.line, r.reason) for r in rejections] == [(4, "corrupt_json")] and "ends early" in rejections[0].detail

    path.write_bytes(b" [ ] ")
    assert _split(reader.read([path])) == ([], [])


def test_a_pretty_printed_document_over_the_limit_is_one_rejection(tmp_path: Path, fifo: Any) -> None:
    m = _samples(1)[0]
    big = dict(m, test_keys=dict(m["test_keys"], queries=[{"n": i, "answers": [{"ipv4": "10.0.0.1"}]}
                                                          for i in range(3000)]))
    data = json.dumps(big, indent=2).encode()
    assert data.count(b"\n") > 20_000
    path = tmp_path / "doc.json"
    path.write_bytes(data)
    for lines, rejections in (_part(path, "json", 100_000), _split(reader.read_partition(
            Partition(str(fifo(data)), "stream"), max_bytes=100_000))):
        assert lines == []
        assert [(r.reason, r.line) for r in rejections] == [("too_large", 1)]
        assert f"{len(data)} bytes in one JSON document" in rejections[0].detail
    # within the limit, the same document is one measurement on one line
    lines, rejections = _part(path, "json", len(data))
    assert rejections == [] and len(lines) == 1 and orjson.loads(lines[0].data) == big and b"\n" not in lines[0].data


def test_pretty_printed_documents_one_after_another_are_each_kept(tmp_path: Path) -> None:
    ms = _samples(3)
    texts = [json.dumps(m, indent=2).encode() for m in ms]
    path = tmp_path / "cat.json"  # cat */measurement.json > cat.json
    path.write_bytes(b"\n".join(texts) + b"\n")
    lines, rejections = _split(reader.read([path]))
    assert rejections == []
    assert [orjson.loads(line.data) for line in lines] == ms
    starts = [1, 1 + texts[0].count(b"\n") + 1]
    starts.append(starts[1] + texts[1].count(b"\n") + 1)
    assert [line.line for line in lines] == starts  # the line each document starts on


def _indented(text: str, by: int) -> str:
    return "\n".join(" " * by + line for line in text.splitlines())


def _flush_left(text: str) -> str:
    """Indented JSON with its indentation taken away: every nested object in an array starts a line at column
    0, as an item or a document does (a layout no resync may cut)."""
    return "\n".join(line.lstrip() for line in text.splitlines())


def _array(layout: str, items: list[str]) -> bytes:
    if layout == "one a line":
        return ("[\n" + ",\n".join(items) + "\n]\n").encode()
    if layout == "indent 2":
        return ("[\n" + ",\n".join(_indented(i, 2) for i in items) + "\n]\n").encode()
    return ("[\n" + ",\n".join(items) + "\n]\n").encode()  # "flush left": the items are already


_DAMAGES = {  # an item whose brackets or string do not close, in each layout
    "bracket": '{"test_name": "x", "a": [1}',
    "string": '{"test_name": "x", "a": "no end}',
    "pretty bracket": '{\n  "a": [\n    1\n  }\n}',
}


@pytest.mark.parametrize("chunk", [None, 61])
@pytest.mark.parametrize("layout", ["one a line", "indent 2", "flush left"])
@pytest.mark.parametrize("damage", sorted(_DAMAGES))
def test_a_damaged_array_item_loses_only_itself(tmp_path: Path, fifo: Any, monkeypatch: pytest.MonkeyPatch,
                                                damage: str, layout: str, chunk: int | None) -> None:
    # An item whose bracket or string does not close took every item after it, uncounted, and the file was
    # said to "end early" (QA): the items after it are kept, and the damaged one is one rejection.
    from tamperscope.analysis import documents
    if chunk:
        monkeypatch.setattr(documents, "CHUNK", chunk)  # chunk boundaries everywhere, in strings and brackets
    ms = _many(5)
    form = {"one a line": lambda m: json.dumps(m), "indent 2": lambda m: json.dumps(m, indent=2),
            "flush left": lambda m: _flush_left(json.dumps(m, indent=2))}[layout]
    bad = _DAMAGES[damage] if layout != "flush left" else _flush_left(_DAMAGES[damage])
    data = _array(layout, [form(ms[0]), form(ms[1]), bad, form(ms[2]), form(ms[3]), form(ms[4])])
    path = tmp_path / "damaged.json"
    path.write_bytes(data)
    for lines, rejections in (_split(reader.read([path])), _split(reader.read_partition(
            Partition(str(fifo(data)), "stream")))):
        assert [orjson.loads(line.data) for line in lines] == ms
        assert [line.line for line in lines] == [1, 2, 4, 5, 6]
        assert [(r.line, r.reason) for r in rejections] == [(3, "corrupt_json")]
        assert "array item 3 is not valid JSON" in rejections[0].detail and "ends early" not in rejections[0].detail


@pytest.mark.parametrize("chunk", [None, 61])
def test_a_stray_brace_or_a_second_array_loses_no_item(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       chunk: int | None) -> None:
    from tamperscope.analysis import documents
    if chunk:
        monkeypatch.setattr(documents, "CHUNK", chunk)
    ms = _many(4)
    one = [json.dumps(m) for m in ms]
    path = tmp_path / "stray.json"
    # a "}" that closes nothing, and the comma after it starting the next line
    path.write_bytes(f"[\n{one[0]}}}\n,{one[1]},\n{one[2]},\n{one[3]}\n]\n".encode())
    lines, rejections = _split(reader.read([path]))
    assert [orjson.loads(line.data) for line in lines] == ms
    assert [(r.line, r.reason) for r in rejections] == [(1, "corrupt_json")]
    assert "closes nothing" in rejections[0].detail

    path.write_bytes(f"[\n{one[0]},\n{one[1]}\n]\n[\n{one[2]},\n{one[3]}\n]\n".encode())  # two arrays, one file
    lines, rejections = _split(reader.read([path]))
    assert [orjson.loads(line.data) for line in lines] == ms
    assert [r.reason for r in rejections] == ["corrupt_json"] and "data after the end" in rejections[0].detail


@pytest.mark.parametrize("chunk", [None, 61])
def test_a_damaged_document_or_data_between_documents_loses_only_itself(
        tmp_path: Path, fifo: Any, monkeypatch: pytest.MonkeyPatch, chunk: int | None) -> None:
    from tamperscope.analysis import documents
    if chunk:
        monkeypatch.setattr(documents, "CHUNK", chunk)
    ms = _samples(4)
    texts = [json.dumps(m, indent=2) for m in ms]
    damaged = "{\n  \"a\": [\n    1,\n}"  # its bracket never closes
    parts = [texts[0], damaged, texts[1], "}", "garbage", texts[2], '{"a": "no end', texts[3]]
    data = "\n".join(parts).encode() + b"\n"
    path = tmp_path / "docs.json"
    path.write_bytes(data)
    starts, line = [], 1
    for part in parts:
        starts.append(line)
        line += part.count("\n") + 1
    for lines, rejections in (_split(reader.read([path])), _split(reader.read_partition(
            Partition(str(fifo(data)), "stream")))):
        assert [orjson.loads(x.data) for x in lines] == ms
        assert [x.line for x in lines] == [starts[0], starts[2], starts[5], starts[7]]
        assert [(r.line, r.reason) for r in rejections] == [
            (starts[1], "corrupt_json"), (starts[3], "corrupt_json"), (starts[6], "corrupt_json")]
        assert "does not close" in rejections[0].detail and "data after the end" in rejections[1].detail


def test_nested_objects_that_start_lines_where_items_do_are_not_cut(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Valid JSON whose nested objects start lines at the items' column: every such line is checked against
    # the bytes held, which stay a prefix of valid JSON, so nothing is cut; and the checks are few (the
    # bytes held are parsed again only once they have doubled), not one a line.
    from tamperscope.analysis import documents
    parses = []
    real = documents.orjson

    class Counting:
        JSONDecodeError = real.JSONDecodeError
        JSONEncodeError = real.JSONEncodeError

        @staticmethod
        def loads(data: bytes) -> Any:
            parses.append(len(data))
            return real.loads(data)

        dumps = staticmethod(real.dumps)

    m = dict(_samples(1)[0], x_many=[{"n": i, "deep": {"k": [i]}} for i in range(4000)])
    item = _flush_left(json.dumps(m, indent=2))
    assert item.count("\n{") > 4000
    path = tmp_path / "flush.json"
    path.write_bytes(("[\n" + ",\n".join([item, item]) + "\n]\n").encode())
    monkeypatch.setattr(documents, "orjson", Counting)
    monkeypatch.setattr(documents, "CHUNK", 4096)
    lines, rejections = _split(reader.read([path]))
    assert rejections == [] and [orjson.loads(x.data) for x in lines] == [m, m]
    checks = len(parses) - 2  # one parse an item is the item's own
    assert 0 < checks <= 2 * 20, checks  # a few per item, doubling; not one per line (8,000)
    path.write_bytes((item + "\n" + item + "\n").encode())  # the same as documents
    parses.clear()
    lines, rejections = _split(reader.read([path]))
    assert rejections == [] and [orjson.loads(x.data) for x in lines] == [m, m]
    assert len(parses) <= 2 * 20 + 4


# --------------------------------------------------------------------------- 2. tar archives


def _tar(members: list[tuple[str, bytes]], mode: str = "w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode, format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_jsonl_member_over_the_limit_is_read_line_by_line(tmp_path: Path) -> None:
    lines_in = [orjson.dumps(m) for m in _many(12)]
    huge = orjson.dumps(dict(_samples(1)[0], input="http://huge.example/", body="H" * 60_000))
    member = b"\n".join([*lines_in[:6], huge, *lines_in[6:]]) + b"\n"
    assert len(member) > 80_000
    for mode, name in (("w", "can.tar"), ("w:gz", "can.tar.gz")):
        (tmp_path / name).write_bytes(_tar([("2024/web_connectivity.jsonl", member)], mode))
        lines, rejections = _part(tmp_path / name, "tar", 30_000)
        assert [line.data for line in lines] == lines_in
        assert [(r.line, r.reason) for r in rejections] == [(7, "too_large")]


def test_a_tar_of_many_members_is_read_in_flat_memory(tmp_path: Path) -> None:
    """A postcan holds tens of thousands of members: tarfile, even streaming, keeps every header it has
    read (about 1 kB each) unless told otherwise. 8,000 members must cost no more than 1,000."""
    import tracemalloc

    line = orjson.dumps(_many(1)[0]) + b"\n"

    def peak(members: int) -> int:
        path = tmp_path / f"can-{members}.tar"
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
            for i in range(members):
                # long names: PAX headers, as OONI's paths (2024-01-01/20240101T000000Z-IT-AS137-web_connectivity-…)
                info = tarfile.TarInfo(f"2024-01-01/{i:08d}-{'x' * 120}-web_connectivity.jsonl")
                info.size = len(line)
                tar.addfile(info, io.BytesIO(line))
        tracemalloc.start()
        try:
            count = 0
            for record in reader.read_partition(Partition(str(path), "tar")):
                assert isinstance(record, Line)
                count += 1
            assert count == members
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(1_000), peak(8_000)
    assert large - small < 1_000_000, (small, large)


def test_a_tar_of_pretty_printed_json_files_is_read_like_the_files(tmp_path: Path, fifo: Any) -> None:
    """``tar cf samples.tar -C generated .``: one pretty-printed measurement per ``.json`` member."""
    ms = _samples()
    by_input: Counter[str] = Counter(json.dumps(m, sort_keys=True) for m in ms)
    for suffix, mode in (("tar", "w"), ("tar.gz", "w:gz")):
        path = tmp_path / f"samples.{suffix}"
        with tarfile.open(path, mode) as tar:
            tar.add(SAMPLES, arcname=".")
        for source in (path, fifo(path.read_bytes())):
            lines, rejections = _split(reader.read([source]))
            assert rejections == []
            assert Counter(json.dumps(orjson.loads(line.data), sort_keys=True) for line in lines) == by_input
            assert all(line.source.endswith("/measurement.json") and b"\n" not in line.data for line in lines)


def _complete_before(tar_bytes: bytes, available: int) -> int:
    """How many records of a tar of ``.json`` (one document each) and ``.jsonl`` members are complete in its
    first ``available`` bytes."""
    complete = 0
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        for member in tar:
            data = tar_bytes[member.offset_data:member.offset_data + member.size]
            room = available - member.offset_data
            if member.name.endswith(".jsonl"):
                complete += data[:max(room, 0)].count(b"\n")
            elif room >= member.size:
                complete += 1
    return complete


def test_a_truncated_tar_keeps_everything_before_the_cut_with_one_rejection(tmp_path: Path) -> None:
    ms = _many(30)
    members = [(f"{i}.json", json.dumps(m, indent=2).encode()) for i, m in enumerate(ms[:10])]
    members.append(("legacy.jsonl", b"".join(orjson.dumps(m) + b"\n" for m in ms[10:])))
    members += [(f"later{i}.json", orjson.dumps(m)) for i, m in enumerate(ms[:5])]
    plain = _tar(members)
    compressed = gzip.compress(plain)
    headers = [member.offset for member in tarfile.open(fileobj=io.BytesIO(plain))]
    cuts = [
        ("tar", plain[:headers[5]]),                   # right before a header: tarfile would end quietly
        ("tar", plain[:headers[7] + 100]),             # inside a header
        ("tar", plain[:len(plain) * 3 // 5]),          # inside the JSON-lines member
        ("tar", plain[:headers[3] + 700]),             # inside a pretty-printed member
        ("tar.gz", compressed[:len(compressed) * 2 // 3]),
        ("tar.gz", compressed[:len(compressed) // 3]),
    ]
    for i, (suffix, data) in enumerate(cuts):
        path = tmp_path / f"cut{i}.{suffix}"
        path.write_bytes(data)
        available = len(zlib.decompressobj(31).decompress(data)) if suffix == "tar.gz" else len(data)
        lines, rejections = _split(reader.read([path]))
        assert [r.reason for r in rejections] == ["truncated"], (i, rejections)
        assert len(lines) == _complete_before(plain, available), i
        assert all(orjson.loads(line.data) for line in lines)


def test_a_tar_of_gzipped_files_is_read_like_the_files_and_a_damaged_member_ends_only_itself(
        tmp_path: Path, fifo: Any) -> None:
    """``tar cf day.tar raw/20240101/``: OONI's ``.jsonl.gz`` files (and a ``.json.gz``), tarred as they were."""
    ms = _many(60)
    jsonl = [orjson.dumps(m) for m in ms]
    whole = gzip.compress(b"\n".join(jsonl[6:56]) + b"\n", compresslevel=1)
    members = [("raw/a.jsonl.gz", gzip.compress(b"\n".join(jsonl[:4]) + b"\n")),
               ("raw/b.json.gz", gzip.compress(json.dumps(ms[4], indent=2).encode())),  # pretty-printed
               ("raw/c.jsonl.gz", whole[:len(whole) // 2]),  # its gzip stream cut short: the archive is whole
               ("raw/d.jsonl.gz", b"not gzip at all\n"),
               ("raw/e.jsonl", jsonl[56] + b"\n"),
               ("raw/f.JSONL.GZ", gzip.compress(jsonl[57] + b"\n"))]
    plain = _tar(members)
    path = tmp_path / "day.tar"
    path.write_bytes(plain)
    for source in (path, fifo(plain)):
        lines, rejections = _split(reader.read([source]))
        kept = [orjson.loads(line.data) for line in lines]
        cut = [m for m in kept if m in ms[6:56]]  # the complete lines before c's cut
        assert kept == [*ms[:4], ms[4], *cut, ms[56], ms[57]] and cut == ms[6:6 + len(cut)], source
        assert 0 < len(cut) < 50, len(cut)
        assert [(r.source.rsplit("/", 1)[-1], r.reason) for r in rejections] == [
            ("c.jsonl.gz", "truncated"), ("d.jsonl.gz", "damaged")], rejections
    # the archive cut inside a gzipped member: its complete lines, then one rejection, and nothing after
    big = [orjson.dumps(m) for m in _many(400)]
    members = [("raw/a.jsonl.gz", gzip.compress(b"\n".join(big) + b"\n", compresslevel=1)), ("raw/e.jsonl", jsonl[0])]
    plain = _tar(members)
    start = next(iter(tarfile.open(fileobj=io.BytesIO(plain)))).offset_data
    path.write_bytes(plain[:start + len(members[0][1]) // 2])
    lines, rejections = _split(reader.read([path]))
    assert 0 < len(lines) < len(big) and [line.data for line in lines] == big[:len(lines)]
    assert [r.reason for r in rejections] == ["truncated"]


# --------------------------------------------------------------------------- 3. a truncated .zst


def _decodable(path: Path) -> int:
    """How many bytes of a truncated zstd file can be decompressed at all: read one byte at a time at the end,
    where a bigger read would lose what it got when the stream runs out."""
    done = 0
    with pa.CompressedInputStream(pa.OSFile(str(path), "rb"), "zstd") as stream:
        with contextlib.suppress(OSError):
            while chunk := stream.read(65536):
                done += len(chunk)
    with pa.CompressedInputStream(pa.OSFile(str(path), "rb"), "zstd") as stream:
        stream.read(done)
        with contextlib.suppress(OSError):
            while stream.read(1):
                done += 1
    return done


def test_a_truncated_zst_keeps_every_complete_line_like_gzip(tmp_path: Path) -> None:
    lines_in = [orjson.dumps(m) for m in _many(2000)]
    data = b"\n".join(lines_in) + b"\n"
    blob = _zstd(data)
    for fraction in (0.65, 0.8, 0.9):
        path = tmp_path / f"cut{fraction}.jsonl.zst"
        path.write_bytes(blob[:int(len(blob) * fraction)])
        complete = data[:_decodable(path)].count(b"\n")
        assert 0 < complete < len(lines_in)
        lines, rejections = _split(reader.read([path]))
        assert [line.data for line in lines] == lines_in[:complete]
        assert [(r.line, r.reason) for r in rejections] == [(complete + 1, "truncated")]
    # the same reason gzip gives
    (tmp_path / "cut.jsonl.gz").write_bytes(gzip.compress(data)[:5000])
    assert [r.reason for r in _split(reader.read([tmp_path / "cut.jsonl.gz"]))[1]] == ["truncated"]


# --------------------------------------------------------------------------- 4. byte-order marks


def test_a_byte_order_mark_at_the_start_is_skipped(tmp_path: Path, fifo: Any) -> None:
    ms = _samples(3)
    jsonl = b"".join(orjson.dumps(m) + b"\n" for m in ms)
    inputs = {
        "a.jsonl": jsonl,
        "b.json": json.dumps(ms[0], indent=2).encode(),
        "c.json": orjson.dumps(ms),
        "d.json": jsonl,  # a legacy can's JSON lines
        "e.post": orjson.dumps({"format": "json", "content": ms[1]}),
    }
    expected = {"a.jsonl": ms, "b.json": ms[:1], "c.json": ms, "d.json": ms, "e.post": ms[1:2]}
    for name, data in inputs.items():
        (tmp_path / name).write_bytes(BOM + data)
        lines, rejections = _split(reader.read([tmp_path / name]))
        assert rejections == [], name
        assert [orjson.loads(line.data) for line in lines] == expected[name], name
    with gzip.open(tmp_path / "f.jsonl.gz", "wb") as f:
        f.write(BOM + jsonl)
    (tmp_path / "g.tar").write_bytes(_tar([("m.jsonl", BOM + jsonl), ("n.json", BOM + orjson.dumps(ms[2]))]))
    for name, want in (("f.jsonl.gz", ms), ("g.tar", [*ms, ms[2]])):
        lines, rejections = _split(reader.read([tmp_path / name]))
        assert rejections == [] and [orjson.loads(line.data) for line in lines] == want, name
    for data in (BOM + jsonl, BOM + json.dumps(ms[0], indent=2).encode(), BOM + orjson.dumps(ms)):
        lines, rejections = _split(reader.read([fifo(data)]))
        assert rejections == [] and len(lines) in (1, 3) and all(orjson.loads(line.data) for line in lines)


# --------------------------------------------------------------------------- 5. FIFOs and sockets in directories


def test_a_fifo_or_socket_inside_a_directory_is_skipped_not_opened(tmp_path: Path) -> None:
    ms = _samples(2)
    (tmp_path / "a.jsonl").write_bytes(b"".join(orjson.dumps(m) + b"\n" for m in ms))
    os.mkfifo(tmp_path / "b.jsonl")
    os.mkfifo(tmp_path / "c.json")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with contextlib.suppress(OSError):  # (a path too long for a socket: the FIFOs still say it)
            server.bind(str(tmp_path / "d.jsonl"))
        assert list(reader.discover([tmp_path])) == [(tmp_path / "a.jsonl", "jsonl")]
        result: list[Line | Rejection] = []
        thread = threading.Thread(target=lambda: result.extend(reader.read([tmp_path])), daemon=True)
        thread.start()
        thread.join(timeout=10)
        if thread.is_alive():  # release the reader stuck opening a FIFO, then fail
            for name in ("b.jsonl", "c.json"):
                with contextlib.suppress(OSError):
                    os.close(os.open(tmp_path / name, os.O_WRONLY | os.O_NONBLOCK))
            thread.join(timeout=10)
            pytest.fail("reading the directory opened a FIFO and waited for a writer")
        lines, rejections = _split(result)
        assert rejections == [] and [orjson.loads(line.data) for line in lines] == ms
    finally:
        server.close()
    # named on the command line, a FIFO is a stream, as before
    assert list(reader.discover([tmp_path / "b.jsonl"])) == [(tmp_path / "b.jsonl", "stream")]


# --------------------------------------------------------------------------- 6. symbolic link loops


def test_a_symbolic_link_loop_is_called_what_it_is(tmp_path: Path) -> None:
    os.symlink("self.jsonl", tmp_path / "self.jsonl")
    os.symlink("b.jsonl", tmp_path / "a.jsonl")
    os.symlink("a.jsonl", tmp_path / "b.jsonl")
    for name in ("self.jsonl", "a.jsonl"):
        with pytest.raises(reader.InputError, match="symbolic link loop") as caught:
            list(reader.discover([tmp_path / name]))
        assert "no such file" not in str(caught.value) and str(tmp_path / name) in str(caught.value)
    with pytest.raises(reader.InputError, match="no such file or directory"):
        list(reader.discover([tmp_path / "missing.jsonl"]))
    # inside a directory, a loop is a file that cannot be read, said so, and the run goes on
    lines, rejections = _split(reader.read([tmp_path]))
    assert lines == [] and {r.reason for r in rejections} == {"unreadable"} and len(rejections) == 3
    assert all("symbolic links" in r.detail for r in rejections)


def _parses(data: bytes) -> bool:
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return True


def test_json_lines_named_json_whose_first_lines_are_damaged_keep_their_good_lines(tmp_path: Path) -> None:
    """A `.json` starting with "{" is pretty-printed unless one of its first lines is a whole object on its
    own: three damaged lines at the top of a legacy can must not make the other lines one bad document."""
    good = [orjson.dumps(m) for m in _many(20)]
    path = tmp_path / "can.json"
    path.write_bytes(b"\n".join([b'{"test_name": "cut', b'{"x": [1, 2', b"{nope"] + good) + b"\n")
    lines, rejections = _part(path, "json", reader.MAX_MEASUREMENT_BYTES)
    assert rejections == [] and len(lines) == 23  # read as lines: the pipeline rejects the three
    assert sum(_parses(line.data) for line in lines) == 20
    cut = [b'{"test_name": "cut%d' % i for i in range(7)]  # more damaged lines than are looked at
    path.write_bytes(b"\n".join(cut + good) + b"\n")
    lines, rejections = _part(path, "json", reader.MAX_MEASUREMENT_BYTES)
    assert rejections == [] and len(lines) == 27 and sum(_parses(line.data) for line in lines) == 20
    indented = tmp_path / "doc.json"  # another indenting style: no line an object on its own
    indented.write_bytes(b'{"test_name": "web_connectivity",\n  "tags": [\n    "a"\n  ],\n  "n": {"a": 1}\n}\n')
    lines, rejections = _part(indented, "json", reader.MAX_MEASUREMENT_BYTES)
    assert len(lines) == 1 and rejections == [] and orjson.loads(lines[0].data)["n"] == {"a": 1}
