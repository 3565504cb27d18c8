"""`tamperscope analyze -` and pipes: standard input and FIFOs are read once, front to back,
sniffed by their first bytes (gzip, zstd, LZ4, a tar postcan, a JSON document, JSON lines),
with the same bad-input accounting as files, and never handed to a Dask worker."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from tamperscope.analysis import pipeline, reader
from tamperscope.analysis.reader import Line, Partition, Rejection
from tamperscope.analysis.store import Store

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"


def _samples(n: int) -> list[dict[str, Any]]:
    paths = sorted(p / "measurement.json" for p in SAMPLES.iterdir() if (p / "measurement.json").is_file())
    return [json.loads(p.read_text(encoding="utf-8")) for p in paths[:n]]


def _jsonl(ms: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(m) + b"\n" for m in ms)


def _zstd(data: bytes) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as out:
        out.write(data)
    return sink.getvalue().to_pybytes()


def _lz4(data: bytes) -> bytes:
    import lz4.frame

    return lz4.frame.compress(data)


def _postcan(ms: list[dict[str, Any]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for i, m in enumerate(ms):
            post = orjson.dumps({"format": "json", "content": m})
            info = tarfile.TarInfo(f"2024010100/IR/web_connectivity/{i}.post")
            info.size = len(post)
            tar.addfile(info, io.BytesIO(post))
    return buffer.getvalue()


def _split(items: list[Line | Rejection]) -> tuple[list[Line], list[Rejection]]:
    return [i for i in items if isinstance(i, Line)], [i for i in items if isinstance(i, Rejection)]


# --------------------------------------------------------------------------- discovery


def test_a_fifo_is_a_stream_and_discovery_does_not_open_it(tmp_path: Path) -> None:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    # Opening a FIFO without a writer blocks: discovery must decide by stat alone (this would hang).
    assert list(reader.discover([str(path), "-"])) == [(path, "stream"), (Path("-"), "stream")]
    assert reader.is_stream("-") and reader.is_stream(path)
    (tmp_path / "f.jsonl").write_bytes(b"{}\n")
    assert not reader.is_stream(tmp_path / "f.jsonl") and not reader.is_stream(tmp_path)
    assert not reader.is_stream(tmp_path / "missing")


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_a_device_is_refused_in_one_line_not_read_forever(tmp_path: Path, device: str) -> None:
    # /dev/zero has no line end: its one "line" was skipped as too large, forever, at full CPU
    with pytest.raises(reader.InputError, match="is a device, not measurements"):
        list(reader.discover([device]))
    res = subprocess.run([sys.executable, "-m", "tamperscope", "analyze", device, "--db", str(tmp_path / "s.db")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [
        f"tamperscope: {device} is a device, not measurements: give files, a directory, a pipe or - (standard input)"]
    assert not (tmp_path / "s.db").exists()


# --------------------------------------------------------------------------- formats


FORMATS = {
    "jsonl": _jsonl,
    "gzip": lambda ms: gzip.compress(_jsonl(ms)),
    "zstd": lambda ms: _zstd(_jsonl(ms)),
    "lz4": lambda ms: _lz4(_jsonl(ms)),
    "postcan": _postcan,
    "array": lambda ms: orjson.dumps(ms, option=orjson.OPT_INDENT_2),
    "jsonl with blank lines and CRLF": lambda ms: b"\r\n\r\n".join(orjson.dumps(m) for m in ms) + b"\r\n",
}


@pytest.mark.parametrize("kind", sorted(FORMATS))
def test_every_format_reads_from_a_pipe_as_from_a_file(kind: str, fifo: Any) -> None:
    ms = _samples(5)
    lines, rejections = _split(list(reader.read([str(fifo(FORMATS[kind](ms)))])))
    assert rejections == []
    assert [orjson.loads(line.data) for line in lines] == ms
    if kind == "postcan":
        assert lines[0].source.endswith("pipe!2024010100/IR/web_connectivity/0.post")
    else:
        assert all(line.source.endswith("pipe") for line in lines)


def test_one_pretty_printed_measurement_from_a_pipe(fifo: Any) -> None:
    m = _samples(1)[0]
    text = json.dumps(m, indent=2).encode()
    assert text.startswith(b"{\n")
    lines, rejections = _split(list(reader.read([str(fifo(b"\n  " + text + b"\n"))])))
    assert rejections == [] and len(lines) == 1
    assert orjson.loads(lines[0].data) == m and b"\n" not in lines[0].data  # one line in the raw store


# --------------------------------------------------------------------------- bad input


def test_a_truncated_stream_keeps_every_complete_line(fifo: Any) -> None:
    ms = _samples(20)
    data = gzip.compress(_jsonl(ms))
    lines, rejections = _split(list(reader.read([str(fifo(data[: len(data) * 3 // 4]))])))
    assert 0 < len(lines) < 20
    assert [orjson.loads(line.data) for line in lines] == ms[: len(lines)]
    assert [r.reason for r in rejections] == ["truncated"]


def test_garbage_after_a_gzip_magic_is_counted_not_raised(fifo: Any) -> None:
    junk = b"\x1f\x8b" + bytes(range(256)) * 20
    lines, rejections = _split(list(reader.read([str(fifo(junk))])))
    assert lines == [] and [r.reason for r in rejections] == ["damaged"]


def test_a_damaged_zstd_stream_is_counted_and_the_lines_before_it_kept(tmp_path: Path, fifo: Any) -> None:
    ms = _samples(30)
    data = bytearray(_zstd(_jsonl(ms)))
    data[len(data) // 2: len(data) // 2 + 64] = b"\x00" * 64
    # A zstd frame without a checksum may decode damage into garbage bytes: the reader passes such lines
    # on and the parser rejects them; either way nothing raises and nothing before the damage is lost.
    with Store(tmp_path / "s.duckdb") as store:
        stats = pipeline.run([str(fifo(bytes(data)))], store)
        kept = store.con.execute("SELECT count(*) FROM verdicts").fetchone()[0]
    assert stats.rejected >= 1 and 0 < stats.accepted < 30 and kept == stats.accepted
    assert set(stats.by_reason) <= {"damaged", "truncated", "corrupt_json"}


def test_an_overlong_line_in_a_stream_is_skipped_and_its_neighbours_kept(tmp_path: Path, fifo: Any) -> None:
    ms = _samples(2)
    data = orjson.dumps(ms[0]) + b"\n" + b"x" * 50_000 + b"\n" + orjson.dumps(ms[1]) + b"\n"
    items = list(reader.read_partition(Partition(str(fifo(data)), "stream"), max_bytes=20_000))
    lines, rejections = _split(items)
    assert [orjson.loads(line.data) for line in lines] == ms
    assert [(r.line, r.reason) for r in rejections] == [(2, "too_large")]


def test_an_array_in_a_stream_is_read_item_by_item_and_only_an_oversized_item_is_rejected(fifo: Any) -> None:
    big = b'{"test_name": "' + b"x" * 20_000 + b'"}'
    data = b"[" + b",".join([b'{"test_name": "x"}'] * 2500 + [big] + [b'{"test_name": "y"}'] * 2500) + b"]"
    items = list(reader.read_partition(Partition(str(fifo(data)), "stream"), max_bytes=10_000))
    assert [getattr(i, "reason", None) for i in items if isinstance(i, reader.Rejection)] == ["too_large"]
    assert sum(isinstance(i, reader.Line) for i in items) == 5000  # the array is longer than the limit
    doc = b"{\n" + b'  "test_name": "' + b"x" * 20_000 + b'"\n}\n'  # one pretty-printed document: one rejection
    items = list(reader.read_partition(Partition(str(fifo(doc)), "stream"), max_bytes=10_000))
    assert [(type(i).__name__, getattr(i, "reason", "")) for i in items] == [("Rejection", "too_large")]


# --------------------------------------------------------------------------- the command


def _analyze_stdin(tmp_path: Path, data: bytes, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "tamperscope", "analyze", "-", "--db", str(tmp_path / "s.duckdb"),
                           "--quiet", *extra], input=data, capture_output=True, timeout=300, check=False)


def test_analyze_reads_standard_input_and_stores_what_a_file_would(tmp_path: Path) -> None:
    ms = _samples(12)
    r = _analyze_stdin(tmp_path, gzip.compress(_jsonl(ms)), "--jsonl", "-")
    assert r.returncode == 0, r.stderr
    piped = sorted(orjson.loads(line)["measurement_uid"] for line in r.stdout.splitlines())
    assert "analyzed 12 measurements" in r.stderr.decode()

    (tmp_path / "m.jsonl").write_bytes(_jsonl(ms))
    with Store(tmp_path / "f.duckdb") as store:
        pipeline.run([str(tmp_path / "m.jsonl")], store)
        from_file = sorted(row[0] for row in store.con.execute("SELECT measurement_uid FROM verdicts").fetchall())
    assert piped == from_file and len(set(piped)) == 12  # same content, same uids


def test_analyze_of_standard_input_with_bad_lines_counts_them(tmp_path: Path) -> None:
    ms = _samples(3)
    r = _analyze_stdin(tmp_path, orjson.dumps(ms[0]) + b"\n{not json\n[1,2]\n" + _jsonl(ms[1:]))
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr
    assert "analyzed 3 measurements" in out and "2 records skipped" in out
    assert "<stdin>:2" in out  # where, for the person who has to find it


def test_the_dask_engine_refuses_standard_input_and_pipes(tmp_path: Path) -> None:
    r = _analyze_stdin(tmp_path, _jsonl(_samples(2)), "--engine", "dask")
    assert r.returncode == 2
    err = r.stderr.decode().strip()
    assert err.count("\n") == 0 and "--engine local" in err and "Traceback" not in err
    assert not (tmp_path / "s.duckdb").exists()  # refused before anything was opened

    path = tmp_path / "pipe"
    os.mkfifo(path)
    with Store(tmp_path / "t.duckdb") as store, pytest.raises(pipeline.EngineError, match="pipes"):
        pipeline.run([str(path)], store, pipeline.Options(engine="dask"))  # before any cluster starts
