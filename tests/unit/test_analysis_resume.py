"""Files an earlier run analysed in full are not read again: a run over a growing archive, or one
restarted after an interruption, reads only what is new or changed. A file is recorded in the
transaction that commits its last measurement, so a recorded file is always wholly in the store."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tamperscope.analysis import pipeline, reader
from tamperscope.analysis.pipeline import Options, Selection
from tamperscope.analysis.store import Store

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"


def _samples() -> list[dict[str, Any]]:
    paths = sorted(p / "measurement.json" for p in SAMPLES.iterdir() if (p / "measurement.json").is_file())
    return [json.loads(p.read_text(encoding="utf-8")) for p in paths]


def _archive(root: Path, files: int = 6, per_file: int = 5) -> list[Path]:
    """``files`` gzipped JSONL files of distinct measurements."""
    ms = _samples()
    out = []
    for f in range(files):
        path = root / "raw" / "20240212" / f"{f:02d}" / "IT" / "webconnectivity" / f"20240212{f:02d}_IT_x.jsonl.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(path, "wb") as out_file:
            for i in range(per_file):
                m = dict(ms[(f * per_file + i) % len(ms)], report_id=f"r{f}-{i}")
                out_file.write(orjson.dumps(m) + b"\n")
        out.append(path)
    return out


class _Spy:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened: list[str] = []
        original = reader.read_partition

        def spy(part: reader.Partition, *args: Any) -> Any:
            self.opened.append(part.path)
            return original(part, *args)

        monkeypatch.setattr(reader, "read_partition", spy)


def _count(store: Store, sql: str = "SELECT count(*) FROM verdicts") -> int:
    return int(store.con.execute(sql).fetchone()[0])


def test_a_second_run_reads_only_what_is_new_or_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _archive(tmp_path)
    with Store(tmp_path / "s.duckdb") as store:
        first = pipeline.run([str(tmp_path / "raw")], store)
        assert (first.accepted, first.files_known) == (30, 0)

        spy = _Spy(monkeypatch)
        again = pipeline.run([str(tmp_path / "raw")], store)
        assert spy.opened == [] and again.files_known == 6 and again.records == 0
        assert _count(store) == 30

        # one file grows (a later hour of the same can), one new file arrives
        with gzip.open(files[2], "ab") as f:
            f.write(orjson.dumps(dict(_samples()[0], report_id="late")) + b"\n")
        extra = files[0].with_name("2024021299_IT_x.jsonl.gz")
        extra.write_bytes(gzip.compress(orjson.dumps(dict(_samples()[1], report_id="new")) + b"\n"))
        spy.opened.clear()
        third = pipeline.run([str(tmp_path / "raw")], store)
        assert sorted(Path(p).name for p in spy.opened) == sorted([files[2].name, extra.name])
        assert (third.files_known, third.new, third.duplicates) == (5, 2, 5)  # the grown file's old lines repeat
        assert _count(store) == 32

        # --reread reads everything again; the store still holds each measurement once
        spy.opened.clear()
        forced = pipeline.run([str(tmp_path / "raw")], store, Options(reread=True))
        assert len(spy.opened) == 7 and forced.files_known == 0
        assert (forced.new, forced.duplicates) == (0, 32) and _count(store) == 32


def test_a_touched_file_is_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _archive(tmp_path, files=2)
    with Store(tmp_path / "s.duckdb") as store:
        pipeline.run([str(tmp_path / "raw")], store)
        os.utime(files[1], ns=(1, 1))  # same size, another modification time: maybe rewritten
        spy = _Spy(monkeypatch)
        stats = pipeline.run([str(tmp_path / "raw")], store)
        assert [Path(p).name for p in spy.opened] == [files[1].name] and stats.files_known == 1


def test_a_file_reached_through_a_link_is_the_same_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _archive(tmp_path, files=2)
    (tmp_path / "mirror").symlink_to(tmp_path / "raw", target_is_directory=True)
    (tmp_path / "latest.jsonl.gz").symlink_to(files[1])
    with Store(tmp_path / "s.duckdb") as store:
        pipeline.run([str(tmp_path / "raw")], store)
        spy = _Spy(monkeypatch)
        stats = pipeline.run([str(tmp_path / "mirror"), str(tmp_path / "latest.jsonl.gz")], store)
        assert spy.opened == [] and stats.files_known == 3
        recorded = store.con.execute("SELECT path FROM ingested_files ORDER BY path").fetchall()
        assert [Path(p) for (p,) in recorded] == sorted(f.resolve() for f in files)


def test_an_interrupted_run_records_only_files_wholly_committed(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from tamperscope.analysis import store as store_module

    _archive(tmp_path, files=12, per_file=9)
    monkeypatch.setattr(store_module, "FLUSH_ROWS", 20)  # a commit every few files, mid-file too
    original = reader.read_partition
    read = [0]

    def dies(part: reader.Partition, *args: Any) -> Any:
        read[0] += 1
        if read[0] == 9:
            raise KeyboardInterrupt  # ^C while the ninth file is opened
        return original(part, *args)

    monkeypatch.setattr(reader, "read_partition", dies)
    with Store(tmp_path / "s.duckdb") as store, pytest.raises(KeyboardInterrupt):
        pipeline.run([str(tmp_path / "raw")], store, Options(batch_size=4))
    monkeypatch.setattr(reader, "read_partition", original)
    with Store(tmp_path / "s.duckdb") as store:
        recorded = [r[0] for r in store.con.execute("SELECT path FROM ingested_files").fetchall()]
        assert 0 < len(recorded) < 9
        for path in recorded:  # every recorded file has all its measurements in the store
            lines = gzip.decompress(Path(path).read_bytes()).splitlines()
            assert _count(store, f"SELECT count(*) FROM measurements WHERE source = '{path}'") == len(lines)
        before = _count(store)
        stats = pipeline.run([str(tmp_path / "raw")], store)  # the restart reads the rest
        assert stats.files_known == len(recorded)
        assert _count(store) == 12 * 9 and stats.new == 12 * 9 - before


def test_what_is_not_recorded(tmp_path: Path) -> None:
    """A run with a selection stored only part of each file, and a pipe is not a file: neither is skipped
    later (an unreadable file: the next test)."""
    _archive(tmp_path, files=2)
    with Store(tmp_path / "s.duckdb") as store:
        pipeline.run([str(tmp_path / "raw")], store, Options(selection=Selection(probe_cc=frozenset({"IT"}))))
        assert _count(store, "SELECT count(*) FROM ingested_files") == 0
        full = pipeline.run([str(tmp_path / "raw")], store)
        assert full.files_known == 0 and full.records == 10
        assert _count(store, "SELECT count(*) FROM ingested_files") == 2

    r = subprocess.run([sys.executable, "-m", "tamperscope", "analyze", "-", "--db", str(tmp_path / "p.duckdb"),
                        "--quiet"], input=gzip.compress(orjson.dumps(_samples()[0]) + b"\n"),
                       capture_output=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    with Store(tmp_path / "p.duckdb") as store:
        assert _count(store) == 1 and _count(store, "SELECT count(*) FROM ingested_files") == 0


def test_an_unreadable_file_is_not_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _archive(tmp_path, files=2)
    original = reader.read_partition

    def fails(part: reader.Partition, *args: Any) -> Any:
        if part.path == str(files[0]):
            return iter([reader.Rejection(part.path, 0, "unreadable", "Input/output error")])
        return original(part, *args)

    monkeypatch.setattr(reader, "read_partition", fails)
    with Store(tmp_path / "s.duckdb") as store:
        pipeline.run([str(tmp_path / "raw")], store)
        recorded = [r[0] for r in store.con.execute("SELECT path FROM ingested_files").fetchall()]
    assert recorded == [str(files[1])]


@pytest.mark.parametrize("engine,workers", [("local", 2), ("dask", 2)])
def test_every_engine_records_and_skips_alike(tmp_path: Path, engine: str, workers: int) -> None:
    _archive(tmp_path, files=4)
    big = tmp_path / "raw" / "big.jsonl"  # cut into byte ranges by the dask engine
    big.write_bytes(b"".join(orjson.dumps(dict(m, report_id="big")) + b"\n" for m in _samples()))
    options = Options(engine=engine, workers=workers, split_bytes=60_000)
    with Store(tmp_path / "s.duckdb") as store:
        first = pipeline.run([str(tmp_path / "raw")], store, options)
        recorded = sorted(r[0] for r in store.con.execute("SELECT path FROM ingested_files").fetchall())
        assert recorded == sorted(str(p) for p in (tmp_path / "raw").rglob("*.json*"))
        again = pipeline.run([str(tmp_path / "raw")], store, options)
    assert first.accepted == 4 * 5 + len(_samples()) and (again.files_known, again.records) == (5, 0)


def test_dask_does_not_record_a_file_one_of_whose_ranges_was_unreadable(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from distributed import LocalCluster

    _archive(tmp_path, files=1)
    big = tmp_path / "raw" / "big.jsonl"
    big.write_bytes(b"".join(orjson.dumps(dict(m, report_id="big")) + b"\n" for m in _samples()))
    ranges = [p for p in reader.partitions([str(big)], 60_000)]
    assert len(ranges) >= 3
    middle = ranges[1]
    original = reader.read_partition

    def fails(part: reader.Partition, *args: Any) -> Any:  # the workers are threads here: they see this
        if (part.path, part.start) == (middle.path, middle.start):
            return iter([reader.Rejection(part.path, part.start, "unreadable", "Input/output error")])
        return original(part, *args)

    monkeypatch.setattr(reader, "read_partition", fails)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0",
                      scheduler_kwargs={"dashboard": False}) as cluster, \
             Store(tmp_path / "s.duckdb") as store:
        options = Options(engine="dask", scheduler=cluster.scheduler_address, split_bytes=60_000)
        stats = pipeline.run([str(tmp_path / "raw")], store, options)
        recorded = [Path(r[0]).name for r in store.con.execute("SELECT path FROM ingested_files").fetchall()]
        kept = _count(store, "SELECT count(*) FROM measurements WHERE report_id = 'big'")
    assert recorded == ["2024021200_IT_x.jsonl.gz"]  # the gzip file, read whole; not big.jsonl
    assert 0 < kept < len(_samples()) and stats.by_reason == {"unreadable": 1}


def test_the_command_says_what_it_skipped(tmp_path: Path) -> None:
    _archive(tmp_path, files=3)
    args = [sys.executable, "-m", "tamperscope", "analyze", str(tmp_path / "raw"), "--db", str(tmp_path / "s.duckdb"),
            "--quiet"]
    assert subprocess.run(args, capture_output=True, timeout=300, check=False).returncode == 0
    r = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    assert "analyzed 0 measurements" in r.stdout
    assert "3 files skipped: analysed in full by an earlier run and unchanged since (--reread reads them again)" \
        in r.stdout
    r = subprocess.run([*args, "--reread"], capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0 and "analyzed 15 measurements" in r.stdout and "15 already in the store" in r.stdout
    one = tmp_path / "one.jsonl"
    one.write_bytes(orjson.dumps(_samples()[0]) + b"\n")
    single = [*args[:4], str(one), *args[5:]]
    assert subprocess.run(single, capture_output=True, timeout=300, check=False).returncode == 0
    r = subprocess.run(single, capture_output=True, text=True, timeout=300, check=False)
    assert "1 file skipped: analysed in full by an earlier run and unchanged since (--reread reads it again)" \
        in r.stdout
