"""Reading OONI-format input: every format, and every kind of bad input counted, never fatal.

Each bad-input case (corrupt line, truncated gzip, missing fields, a 100 MB body,
a wrong type) is checked end to end through `tamperscope analyze`'s pipeline:
the bad record is skipped with its reason, and every good record around it is
stored.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from tamperscope.analysis import pipeline, reader
from tamperscope.analysis.reader import Line, Partition, Rejection
from tamperscope.analysis.store import Store
from tamperscope.analysis.verdicts import VERDICTS

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"


def _samples(n: int = 50) -> list[dict[str, Any]]:
    paths = sorted(p / "measurement.json" for p in SAMPLES.iterdir() if (p / "measurement.json").is_file())
    return [json.loads(p.read_text(encoding="utf-8")) for p in paths[:n]]


def _lines(ms: list[dict[str, Any]]) -> list[bytes]:
    return [orjson.dumps(m) for m in ms]


def _records(path: Path | list[Path]) -> tuple[list[Line], list[Rejection]]:
    items = list(reader.read(path if isinstance(path, list) else [path]))
    return [i for i in items if isinstance(i, Line)], [i for i in items if isinstance(i, Rejection)]


def _analyze(tmp_path: Path, *paths: Path) -> tuple[Store, Any]:
    store = Store(tmp_path / "store.duckdb")
    stats = pipeline.run([str(p) for p in paths], store)
    return store, stats


# --------------------------------------------------------------------------- formats


def test_jsonl_json_gzip_zstd_post_and_postcans_all_read(tmp_path: Path) -> None:
    ms = _samples(6)
    lines = _lines(ms)
    (tmp_path / "a.jsonl").write_bytes(b"\n".join(lines[:2]) + b"\n\n")  # blank lines are not records
    with gzip.open(tmp_path / "b.jsonl.gz", "wb") as f:
        f.write(lines[2] + b"\n")
    (tmp_path / "c.json").write_text(json.dumps(ms[3], indent=2))  # pretty-printed, one document
    (tmp_path / "d.post").write_bytes(orjson.dumps({"format": "json", "content": ms[4]}))
    zstd = pa.Codec("zstd")
    (tmp_path / "e.jsonl.zst").write_bytes(zstd.compress(lines[5] + b"\n", asbytes=True))
    good, bad = _records(tmp_path)
    assert not bad
    assert len(good) == 6
    assert [orjson.loads(g.data) for g in good] == [ms[0], ms[1], ms[2], ms[3], ms[4], ms[5]]
    assert all(b"\n" not in g.data for g in good)  # one measurement per raw line, always


def test_ooni_raw_archive_layout(tmp_path: Path) -> None:
    """raw/YYYYMMDD/HH/CC/test/*.jsonl.gz and *.tar.gz postcans of .post files; index.json.gz skipped."""
    ms = _samples(5)
    hour = tmp_path / "raw" / "20240212" / "20" / "IT" / "webconnectivity"
    hour.mkdir(parents=True)
    with gzip.open(hour / "2024021220_IT_webconnectivity.n0.0.jsonl.gz", "wb") as f:
        f.write(b"\n".join(_lines(ms[:2])) + b"\n")
    with tarfile.open(hour / "2024021220_IT_webconnectivity.n0.0.tar.gz", "w:gz") as tar:
        for i, m in enumerate(ms[2:]):
            data = orjson.dumps({"format": "json", "content": m})
            info = tarfile.TarInfo(f"2024021220_IT_webconnectivity/2024021220_IT_webconnectivity_{i}.post")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with gzip.open(tmp_path / "raw" / "20240212" / "index.json.gz", "wb") as f:
        f.write(b'{"not": "a measurement"}')
    (hour / "README.txt").write_text("ignored: not a measurement file")
    good, bad = _records(tmp_path / "raw")
    assert not bad
    assert sorted(orjson.loads(g.data)["input"] for g in good) == sorted(m["input"] for m in ms)


def _lz4_tar(members: list[tuple[str, bytes]]) -> bytes:
    """A tar whose every member (header and data) is its own LZ4 frame, as OONI's autoclaved
    archive writes them, so that an index can point into it; the frames simply concatenate."""
    import lz4.frame

    out = []
    for name, data in members:
        one = io.BytesIO()
        with tarfile.open(fileobj=one, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        blob = one.getvalue().rstrip(b"\0")  # one member, without the archive's end
        blob += b"\0" * (-len(blob) % 512)
        out.append(lz4.frame.compress(blob))
    out.append(lz4.frame.compress(b"\0" * 1024))  # the end-of-archive blocks, a frame of their own
    return b"".join(out)


def test_ooni_historical_archive_in_lz4(tmp_path: Path) -> None:
    """autoclaved/jsonl.tar.lz4/<day>/*.tar.lz4 (JSONL reports as members) and *.json.lz4 (one report)."""
    import lz4.frame

    ms = _samples(7)
    lines = _lines(ms)
    day = tmp_path / "autoclaved" / "jsonl.tar.lz4" / "2018-09-20"
    day.mkdir(parents=True)
    (day / "20180920T010203Z-IT-AS137-web_connectivity-0.2.0-probe.json.lz4").write_bytes(
        lz4.frame.compress(b"\n".join(lines[:2]) + b"\n"))
    (day / "web_connectivity.00.tar.lz4").write_bytes(_lz4_tar([
        ("2018-09-20/20180920T020000Z-RU-AS8359-web_connectivity-probe.json", b"\n".join(lines[2:5]) + b"\n"),
        ("2018-09-20/20180920T030000Z-IR-AS58224-web_connectivity-probe.json", b"\n".join(lines[5:]) + b"\n"),
    ]))
    good, bad = _records(tmp_path / "autoclaved")
    assert not bad
    assert sorted(g.data for g in good) == sorted(lines)
    assert any("!2018-09-20/20180920T020000Z-RU" in g.source for g in good)  # where each came from
    # a file named otherwise is recognised by its magic number
    (tmp_path / "report").write_bytes(lz4.frame.compress(lines[0] + b"\n"))
    assert [g.data for g in _records(tmp_path / "report")[0]] == [lines[0]]


def test_damaged_lz4_keeps_what_came_before(tmp_path: Path) -> None:
    import lz4.frame

    lines = _lines(_samples(6))
    frames = [lz4.frame.compress(b"\n".join(lines[:3]) + b"\n"), lz4.frame.compress(b"\n".join(lines[3:]) + b"\n")]
    (tmp_path / "cut.json.lz4").write_bytes(b"".join(frames)[:-20])
    good, bad = _records(tmp_path / "cut.json.lz4")
    assert [g.data for g in good] == lines[:len(good)] and len(good) >= 3
    assert [b.reason for b in bad] == ["truncated"]
    broken = bytearray(frames[0] + frames[1])
    broken[len(frames[0]) + 5] ^= 0xFF  # the second frame's header checksum
    (tmp_path / "bad.json.lz4").write_bytes(bytes(broken))
    good, bad = _records(tmp_path / "bad.json.lz4")
    assert [g.data for g in good] == lines[:3]
    assert [b.reason for b in bad] == ["damaged"] and "lz4" in bad[0].detail
    (tmp_path / "bad.tar.lz4").write_bytes(b"\x04\x22\x4d\x18" + b"\x00" * 40)
    good, bad = _records(tmp_path / "bad.tar.lz4")
    assert not good and [b.reason for b in bad] == ["damaged"]


def test_json_array_and_legacy_json_lines(tmp_path: Path) -> None:
    ms = _samples(3)
    (tmp_path / "array.json").write_bytes(orjson.dumps([ms[0], ms[1]]))
    (tmp_path / "legacy.json").write_bytes(b"\n".join(_lines(ms)))  # old cans name JSONL ".json"
    good, bad = _records(tmp_path)
    assert not bad and len(good) == 5


def test_byte_range_partitions_cover_every_line_once(tmp_path: Path) -> None:
    lines = [orjson.dumps({"n": i, "pad": "x" * (i * 37 % 400)}) for i in range(300)]
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    for split in (1000, 4096, 7919, 10**9):
        parts = reader.partitions([path], split_bytes=split)
        seen = [orjson.loads(i.data)["n"] for p in parts for i in reader.read_partition(p) if isinstance(i, Line)]
        assert seen == list(range(300)), split
    # each line is named by its number in the file, whatever range read it (the dask engine's rejections named
    # line 464 for line 5,002: each range counted from 1); blank lines and lines over the limit count too
    lines[150:150] = [b"", b"", b"x" * 900, b"   "]
    path.write_bytes(b"\n".join(lines) + b"\n")
    for split in (1000, 4096, 7919, 10**9):
        items = [i for p in reader.partitions([path], split_bytes=split) for i in reader.read_partition(p, 800)]
        numbered = {i.line: i.data for i in items if isinstance(i, Line)}
        assert numbered == {n: line for n, line in enumerate(lines, 1) if line.strip() and n != 153}, split
        assert [(i.line, i.reason) for i in items if isinstance(i, Rejection)] == [(153, "too_large")], split


def test_missing_path_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(reader.InputError, match="no such file or directory"):
        list(reader.discover([tmp_path / "nope"]))


# --------------------------------------------------------------------------- bad input, one case each


def test_corrupt_line_is_skipped_and_neighbours_kept(tmp_path: Path) -> None:
    lines = _lines(_samples(4))
    path = tmp_path / "x.jsonl"
    path.write_bytes(b"\n".join([lines[0], lines[1][: len(lines[1]) // 2], lines[2], b"\xff\xfe{not json", lines[3]])
                     + b"\n")
    store, stats = _analyze(tmp_path, path)
    assert stats.by_reason == {"corrupt_json": 2}
    assert stats.accepted == stats.new == 3
    assert store.count("measurements") == 3
    assert {r["line"] for r in _rejections(store)} == {2, 4}
    # a byte that is not UTF-8 is named as such, not in orjson's words ("surrogates not allowed") (QA)
    assert {r["line"]: r["detail"] for r in _rejections(store)}[4] == "not UTF-8: byte 0xff at offset 0"
    store.close()


def test_truncated_keeps_every_complete_line(tmp_path: Path) -> None:
    lines = _lines(_samples(20))
    blob = gzip.compress(b"\n".join(lines) + b"\n")
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(blob[: int(len(blob) * 0.6)])
    good, _ = _records(path)
    kept = len(good)
    assert 0 < kept < 20
    assert [g.data for g in good] == lines[:kept]  # complete lines, in order, none damaged
    store, stats = _analyze(tmp_path, path)
    assert stats.by_reason == {"truncated": 1}
    assert stats.new == kept
    assert "ends early" in stats.examples["truncated"][0]
    store.close()


def test_damaged_gzip_is_counted(tmp_path: Path) -> None:
    lines = _lines(_samples(5))
    blob = bytearray(gzip.compress(b"\n".join(lines) + b"\n"))
    blob[-6] ^= 0xFF  # the CRC/size trailer
    path = tmp_path / "bad.jsonl.gz"
    path.write_bytes(bytes(blob))
    store, stats = _analyze(tmp_path, path)
    assert set(stats.by_reason) == {"damaged"}
    assert stats.rejected == 1
    store.close()


@pytest.mark.parametrize("field", ["test_name", "measurement_start_time", "probe_cc", "probe_asn", "test_keys"])
def test_missing_field_is_skipped(tmp_path: Path, field: str) -> None:
    ms = _samples(3)
    del ms[1][field]
    path = tmp_path / "x.jsonl"
    path.write_bytes(b"\n".join(_lines(ms)))
    store, stats = _analyze(tmp_path, path)
    assert stats.by_reason == {"missing_field": 1}
    assert stats.examples["missing_field"] == [f"{path}:2: no {field}"]
    assert store.count("measurements") == 2
    store.close()


def test_hundred_megabyte_body_is_skipped_without_loading_it(tmp_path: Path) -> None:
    ms = _samples(2)
    huge = dict(ms[0], input="http://huge.example/")
    huge["test_keys"] = dict(huge["test_keys"], requests=[{"response": {"body": "A" * (100 * 1024 * 1024)}}])
    path = tmp_path / "huge.jsonl"
    with path.open("wb") as f:
        f.write(_lines(ms)[0] + b"\n")
        f.write(orjson.dumps(huge) + b"\n")
        f.write(_lines(ms)[1] + b"\n")
    del huge
    assert path.stat().st_size > 100 * 1024 * 1024
    tracemalloc.start()
    try:
        good, bad = _records(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(good) == 2 and [b.reason for b in bad] == ["too_large"]
    assert peak < 3 * reader.MAX_MEASUREMENT_BYTES, f"reading held {peak / 1e6:.0f} MB"
    store, stats = _analyze(tmp_path, path)
    assert stats.by_reason == {"too_large": 1} and stats.new == 2
    assert stats.examples["too_large"][0].startswith(f"{path}:2: ")
    store.close()


def test_huge_single_json_document_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as f:
        f.write(b'[{"test_keys": "' + b"B" * (reader.MAX_MEASUREMENT_BYTES + 10) + b'"}]')
    _, bad = _records(path)
    assert [b.reason for b in bad] == ["too_large"]


@pytest.mark.parametrize("record,reason", [
    (b"[1, 2, 3]", "wrong_type"),
    (b'"a string"', "wrong_type"),
    (b"42", "wrong_type"),
    (b"null", "wrong_type"),
    ("test_keys", "wrong_type"),
    ("probe_cc", "wrong_type"),
    ("input", "wrong_type"),
    ("measurement_start_time", "invalid_value"),
])
def test_wrong_type_is_skipped(tmp_path: Path, record: bytes | str, reason: str) -> None:
    ms = _samples(2)
    if isinstance(record, bytes):
        bad = record
    else:
        m = dict(ms[0])
        m[record] = {"test_keys": ["a", "list"], "probe_cc": 39, "input": {"url": "x"},
                     "measurement_start_time": "yesterday"}[record]
        bad = orjson.dumps(m)
    path = tmp_path / "x.jsonl"
    path.write_bytes(b"\n".join([_lines(ms)[0], bad, _lines(ms)[1]]))
    store, stats = _analyze(tmp_path, path)
    assert stats.by_reason == {reason: 1}, stats.examples
    assert stats.new == 2
    store.close()


def test_unreadable_file_is_counted(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b"{}")
    items = list(reader.read_partition(Partition(str(tmp_path / "gone.jsonl"), "jsonl")))
    assert [i.reason for i in items if isinstance(i, Rejection)] == ["unreadable"]


def test_every_reason_is_explained() -> None:
    for reason, text in reader.REASONS.items():
        assert reason.replace("_", "").isalpha() and text


def _rejections(store: Store) -> list[dict[str, Any]]:
    cur = store.cursor().execute("SELECT * FROM rejections ORDER BY line")
    names = [d[0] for d in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


# --------------------------------------------------------------------------- fuzz

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# Strings that have broken parsers before: URLs urlsplit refuses, digits int() refuses, huge numbers.
_NASTY = ["http://[::1", "https://[zz::/x", "1.2.3.4:²", "[::1]:٤٤٣", "²", "depth=²", "depth=" + "9" * 5000,
          "9" * 5000, "https://ß.example/", "http://a:99999/", "", "\u0000"]
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20) | st.sampled_from(_NASTY),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)
_record_keys = st.sampled_from(["queries", "tcp_connect", "tls_handshakes", "requests", "control", "lookups",
                                "x_dns_duplicate_responses", "quic_handshakes", "x_throttle", "tampering",
                                "x_signature", "x_lookups", "x_injection", "control_failure", "targets",
                                "failure", "success", "bootstrap_time", "api_status", "transport_status",
                                "telegram_tcp_blocking", "connection", "inconsistent", "body_length_match"])
_test_keys = st.dictionaries(_record_keys, _json | st.lists(st.dictionaries(
    st.sampled_from(["hostname", "answers", "failure", "ip", "port", "status", "address", "request", "response",
                     "t0", "t", "transaction_id", "tags", "engine", "server_name"]), _json, max_size=6), max_size=4),
    max_size=6)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(test_name=st.sampled_from([*sorted(VERDICTS), "x"]),  # every nettest with a verdict, and one without
       test_keys=_test_keys, extra=st.dictionaries(st.sampled_from(["input", "probe_cc", "probe_asn",
                                                                   "measurement_start_time", "test_version"]),
                                                  _json, max_size=3))
def test_hostile_measurements_never_crash_the_pipeline(tmp_path_factory: pytest.TempPathFactory, test_name: str,
                                                       test_keys: dict[str, Any], extra: dict[str, Any]) -> None:
    m: dict[str, Any] = {"test_name": test_name, "measurement_start_time": "2024-01-01 00:00:00", "probe_cc": "IT",
                         "probe_asn": "AS1", "input": "http://x.example/", "test_keys": test_keys}
    m.update(extra)
    try:
        data = orjson.dumps(m)
    except orjson.JSONEncodeError:  # integers beyond 64 bits cannot even be written
        return
    result = pipeline.analyse_batch([Line("fuzz", 1, data)])
    assert result.records == 1
    assert not result.errors, result.errors  # a verdict function that raises is a bug, even on hostile input
    assert result.measurements.num_rows + len(result.rejections) == 1
    if result.measurements.num_rows:
        store = Store(tmp_path_factory.mktemp("fuzz") / "s.duckdb")
        store.write(result)
        store.flush()
        assert store.count("verdicts") == 1
        store.close()


def test_links_to_directories_are_followed_once_and_a_loop_ends(tmp_path: Path) -> None:
    # A directory linked into the input was passed over without a word (QA: 100 measurements missed).
    lines = _lines(_samples(3))
    top, real = tmp_path / "top", tmp_path / "real"
    (top / "sub").mkdir(parents=True)
    real.mkdir()
    (top / "a.jsonl").write_bytes(lines[0] + b"\n")
    (real / "b.jsonl").write_bytes(lines[1] + b"\n")
    (top / "sub" / "c.jsonl").write_bytes(lines[2] + b"\n")
    (top / "linked").symlink_to(real, target_is_directory=True)
    (top / "linked-again").symlink_to(real, target_is_directory=True)  # the same directory by another name
    (top / "sub" / "up").symlink_to(top, target_is_directory=True)  # a loop
    found = [p.relative_to(top).as_posix() for p, _ in reader.discover([top])]
    assert found == ["a.jsonl", "linked/b.jsonl", "sub/c.jsonl"], found
    good, bad = _records(top)
    assert len(good) == 3 and not bad
