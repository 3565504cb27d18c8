"""Reader edges: gzip by name inside a directory, gzip by its magic on the command line, a compressed stream cut
before its first 512 bytes.

Each case goes through the public reader (`reader.read`) and `tamperscope analyze`'s pipeline, and checks what a
user sees: how many measurements were stored, and which rejection reason (docs/analysis.md, "Bad input") counts the
rest.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest

from tamperscope.analysis import pipeline, reader
from tamperscope.analysis.reader import REASONS, Line, Rejection
from tamperscope.analysis.store import Store
from tests.unit.test_analysis_streams import _jsonl, _samples


def _split(items: list[Any]) -> tuple[list[Line], list[Rejection]]:
    return [i for i in items if isinstance(i, Line)], [i for i in items if isinstance(i, Rejection)]


def _stored(tmp_path: Path, source: Path) -> tuple[int, Any]:
    with Store(tmp_path / "store.duckdb") as store:
        stats = pipeline.run([str(source)], store)
        row = store.cursor().execute("SELECT count(*) FROM verdicts").fetchone()
    return (int(row[0]) if row else 0), stats


# --------------------------------------------------------------------------- .json.gz inside a directory


def test_a_json_gz_file_inside_a_directory_has_every_measurement_read(tmp_path: Path) -> None:
    """OONI's legacy cans and many mirrors name gzipped JSON lines ``*.json.gz``. Inside a directory only known
    suffixes are read: were ``.json.gz`` not one of them, the file would be passed over without a word, and a user
    analysing the directory would see 0 measurements and no rejection instead of 3."""
    ms = _samples(3)
    data = tmp_path / "data"
    data.mkdir()
    (data / "2024010100_IT_webconnectivity.n0.0.json.gz").write_bytes(gzip.compress(_jsonl(ms)))
    (data / "README.txt").write_text("not measurements\n")  # an unknown suffix, still skipped
    assert list(reader.discover([data])) == [(data / "2024010100_IT_webconnectivity.n0.0.json.gz", "gzip")]
    lines, rejections = _split(list(reader.read([data])))
    assert rejections == []
    assert [orjson.loads(line.data) for line in lines] == ms
    stored, stats = _stored(tmp_path, data)
    assert (stored, stats.new, stats.rejected) == (3, 3, 0)


def test_an_index_json_gz_inside_a_directory_is_still_skipped(tmp_path: Path) -> None:
    """The one ``.json.gz`` that holds no measurement, OONI's S3 ``index.json.gz``, is skipped beside a can that is
    read (3 measurements, no rejection for the index)."""
    ms = _samples(3)
    data = tmp_path / "data"
    data.mkdir()
    (data / "index.json.gz").write_bytes(gzip.compress(b'{"files": ["a.json.gz"]}\n'))
    (data / "a.json.gz").write_bytes(gzip.compress(_jsonl(ms)))
    lines, rejections = _split(list(reader.read([data])))
    assert (len(lines), rejections) == (3, [])


# --------------------------------------------------------------------------- gzip named on the command line


def test_a_gzip_file_without_a_known_suffix_named_on_the_command_line_is_sniffed_by_its_magic(
        tmp_path: Path) -> None:
    """``tamperscope analyze data.bin`` where data.bin is gzipped JSON lines: the file is read whatever its name,
    its first bytes (gzip's magic, 1f 8b) saying it is gzip. Read as text instead, a user would see its 3
    measurements lost and one ``corrupt_json`` rejection."""
    ms = _samples(3)
    path = tmp_path / "data.bin"
    path.write_bytes(gzip.compress(_jsonl(ms)))
    assert list(reader.discover([path])) == [(path, "gzip")]
    lines, rejections = _split(list(reader.read([path])))
    assert rejections == []
    assert [orjson.loads(line.data) for line in lines] == ms
    stored, stats = _stored(tmp_path, path)
    assert (stored, stats.new, stats.rejected, dict(stats.by_reason)) == (3, 3, 0, {})


# --------------------------------------------------------------------------- a stream cut short early


@pytest.mark.parametrize("cut", [10, 20, -4, -1])
def test_a_compressed_stream_that_ends_within_its_first_512_bytes_is_counted_truncated(
        tmp_path: Path, fifo: Any, cut: int) -> None:
    """A gzip stream piped in (``tamperscope analyze <(head -c … data.jsonl.gz)``) that ends before 512 bytes of
    it have been decompressed: the reader could not even tell what it holds. The user is told the input "ends
    early", counted under ``truncated`` as docs/analysis.md's "Bad input" table names it, not ``damaged`` (which
    would say the bytes are wrong, not missing)."""
    whole = gzip.compress(b'{"test_name": "web_connectivity"}\n')  # far less than 512 bytes decompressed
    lines, rejections = _split(list(reader.read([str(fifo(whole[:cut]))])))
    assert lines == []
    assert [(r.line, r.reason) for r in rejections] == [(1, "truncated")]
    assert "truncated" in REASONS and "ends early" in REASONS["truncated"]


def test_an_early_cut_stream_is_one_truncated_rejection_in_the_run_statistics(tmp_path: Path, fifo: Any) -> None:
    """The same, end to end: ``tamperscope analyze`` stores nothing and reports ``truncated: 1``."""
    whole = gzip.compress(_jsonl(_samples(1))[:300])
    stored, stats = _stored(tmp_path, fifo(whole[:len(whole) // 2]))
    assert (stored, stats.new, stats.rejected) == (0, 0, 1)
    assert dict(stats.by_reason) == {"truncated": 1}
