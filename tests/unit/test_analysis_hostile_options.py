"""`analyze`, `report` and `export` on input and options that broke them: measurements nested deeper than
orjson writes back, a store path under a file, another program's DuckDB database, an export directory that
holds a folder of its own under a table's name. Each is one line (exit 2, or a counted rejection), no
traceback, and nothing good is lost."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from tamperscope.analysis import pipeline, reader
from tamperscope.analysis.reader import Line, Partition, Rejection
from tamperscope.analysis.records import TOO_DEEP
from tamperscope.analysis.store import Store
from tamperscope.cli import main

SAMPLE = (Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"
          / "successWithHTTP" / "measurement.json")


def _measurement(report_id: str) -> dict[str, Any]:
    return dict(json.loads(SAMPLE.read_text(encoding="utf-8")), report_id=report_id)


def _deep(report_id: str, levels: int = 300) -> bytes:
    """A measurement orjson reads (under 1,024 levels) but cannot write back (over 254)."""
    m = orjson.dumps(_measurement(report_id))
    return m.replace(b'"test_keys":{', b'"test_keys":{"x_deep":' + b"[" * levels + b"]" * levels + b",", 1)


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


# --------------------------------------------------------------------------- nested too deep


def test_a_measurement_nested_too_deep_to_hash_is_one_rejection_and_its_neighbours_are_kept(tmp_path: Path) -> None:
    """orjson.dumps (the uid's canonical JSON) raised "Recursion limit reached" out of analyse_batch: the run
    stopped with a traceback, and the good lines of the batch were lost."""
    path = tmp_path / "m.jsonl"
    path.write_bytes(b"\n".join([orjson.dumps(_measurement("a")), _deep("b"), orjson.dumps(_measurement("c"))]))
    store = Store(tmp_path / "s.duckdb")
    try:
        stats = pipeline.run([str(path)], store)
        rows = store.con.execute("SELECT report_id FROM measurements ORDER BY report_id").fetchall()
    finally:
        store.close()
    assert stats.accepted == 2 and rows == [("a",), ("c",)]
    assert stats.by_reason == {"invalid_value": 1}
    assert stats.examples["invalid_value"] == [f"{path}:2: {TOO_DEEP}"]


def test_a_deep_array_item_or_submission_is_one_rejection(tmp_path: Path) -> None:
    """An array item and a .post's content are re-serialised by the reader: the same error, out of the reader."""
    good = [orjson.dumps(_measurement("a")), orjson.dumps(_measurement("c"))]
    array = tmp_path / "a.json"
    array.write_bytes(b"[" + good[0] + b"," + _deep("b") + b"," + good[1] + b"]")
    items = list(reader.read_partition(Partition(str(array), "json")))
    assert [type(i).__name__ for i in items] == ["Line", "Rejection", "Line"]
    assert items[1] == Rejection(str(array), 2, "invalid_value", TOO_DEEP)

    can = tmp_path / "can.tar.gz"
    with tarfile.open(can, "w:gz") as tar:
        for name, content in (("a.post", good[0]), ("b.post", _deep("b")), ("c.post", good[1])):
            data = b'{"format":"json","content":' + content + b"}"
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    items = list(reader.read_partition(Partition(str(can), "tar")))
    assert [(type(i).__name__, i.source.rsplit("!", 1)[1]) for i in items] == [
        ("Line", "a.post"), ("Rejection", "b.post"), ("Line", "c.post")]
    assert isinstance(items[0], Line) and isinstance(items[1], Rejection) and items[1].detail == TOO_DEEP


# --------------------------------------------------------------------------- --db


def test_a_store_under_a_file_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Making the store's directory raised FileExistsError / NotADirectoryError as a traceback."""
    (tmp_path / "file").write_text("mine")
    for db in (tmp_path / "file" / "s.duckdb", tmp_path / "file" / "a" / "s.duckdb"):
        assert main(["analyze", str(SAMPLE), "--db", str(db), "--quiet"]) == 2
        assert "cannot create the store" in _one_line_error(capsys)
    assert main(["analyze", str(SAMPLE), "--db", str(tmp_path / "file" / "s.duckdb"), "--quiet"]) == 2
    assert f"{tmp_path / 'file'} is not a directory" in _one_line_error(capsys)
    assert (tmp_path / "file").read_text() == "mine"


@pytest.mark.parametrize("command", [["analyze", str(SAMPLE), "--quiet"], ["report"], ["export", "--parquet", "OUT"]])
@pytest.mark.parametrize("ddl", ["CREATE TABLE measurements (x INTEGER)", "CREATE TABLE notes (x INTEGER)"])
def test_another_programs_duckdb_database_is_refused_and_left_as_it_was(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str], ddl: str) -> None:
    """A table named like one of ours made the first migration raise duckdb.CatalogException as a traceback;
    any other table, and the store's tables were written into the other program's database."""
    db = tmp_path / "theirs.duckdb"
    con = duckdb.connect(str(db))
    con.execute(ddl)
    con.close()
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in command]
    assert main([*argv, "--db", str(db)]) == 2
    assert "is not a tamperscope store" in _one_line_error(capsys)
    con = duckdb.connect(str(db), read_only=True)
    tables = con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    con.close()
    assert tables == [(ddl.split()[2],)]
    assert not (tmp_path / "theirs.duckdb.raw").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [["analyze", str(SAMPLE), "--quiet"], ["report"], ["export", "--parquet", "OUT"]])
@pytest.mark.parametrize(("name", "content", "said"), [
    ("measurements.jsonl", SAMPLE.read_bytes().replace(b"\n", b" ") + b"\n", "not a DuckDB database"),
    ("verdicts.csv", b"uid,blocking\nx,dns\n", "not a DuckDB database"),
    ("old.parquet", b"PAR1" + bytes(64), "not a DuckDB database"),
    ("empty.duckdb", b"", "an empty file"),
    ("empty.jsonl", b"", "an empty file"),
])
def test_a_file_that_is_not_a_duckdb_database_is_refused_as_the_store(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str], name: str, content: bytes,
        said: str) -> None:
    """DuckDB opens an existing .jsonl, .csv or .parquet file as an in-memory database with a view over it:
    measurements given as ``--db`` were "a DuckDB database with other tables (file, measurements)"."""
    db = tmp_path / name
    db.write_bytes(content)
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in command]
    assert main([*argv, "--db", str(db)]) == 2
    line = _one_line_error(capsys)
    assert f"{db} is not a tamperscope store: it is {said}" in line and "--db names the DuckDB file" in line, line
    assert db.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.parametrize("command", [["analyze", str(SAMPLE), "--quiet"], ["report"]])
def test_a_named_pipe_as_the_store_is_refused_at_once(tmp_path: Path, command: list[str]) -> None:
    """DuckDB waited forever for a writer on a named pipe given as --db (in a subprocess: a hang fails, by its
    timeout, instead of hanging the suite)."""
    pipe = tmp_path / "store.duckdb"
    os.mkfifo(pipe)
    res = subprocess.run([sys.executable, "-m", "tamperscope", *command, "--db", str(pipe)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip() == f"tamperscope: {pipe} is not a tamperscope store: it is not a regular file " \
                                 "(a pipe or a device)", res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.duckdb"]


def test_an_empty_duckdb_database_becomes_a_store(tmp_path: Path) -> None:
    db = tmp_path / "new.duckdb"
    duckdb.connect(str(db)).close()
    assert main(["analyze", str(SAMPLE), "--db", str(db), "--quiet"]) == 0


# --------------------------------------------------------------------------- export --parquet


def test_an_export_never_replaces_a_folder_of_ones_own(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The export swapped DIR/measurements, DIR/rules, DIR/runs.parquet... in whole and deleted what was
    there: `export --parquet ~` deleted a folder ~/rules of one's own."""
    db = tmp_path / "s.duckdb"
    assert main(["analyze", str(SAMPLE), "--db", str(db), "--quiet"]) == 0
    capsys.readouterr()
    home = tmp_path / "home"
    (home / "rules").mkdir(parents=True)
    (home / "rules" / "notes.txt").write_text("mine")
    assert main(["export", "--parquet", str(home), "--db", str(db)]) == 2
    assert f"{home / 'rules'} is not an earlier export" in _one_line_error(capsys)
    assert sorted(p.name for p in home.iterdir()) == ["rules"]  # nothing written either
    assert (home / "rules" / "notes.txt").read_text() == "mine"

    out = tmp_path / "export"
    assert main(["export", "--parquet", str(out), "--db", str(db)]) == 0
    (out / "verdicts" / ".DS_Store").write_bytes(b"")  # a file manager's: an export still
    assert main(["export", "--parquet", str(out), "--db", str(db)]) == 0  # an earlier export is replaced
    (out / "runs.parquet").write_text("my runs")
    assert main(["export", "--parquet", str(out), "--db", str(db)]) == 2
    assert (out / "runs.parquet").read_text() == "my runs"
