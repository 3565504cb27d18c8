"""A store missing one of its tables (dropped by hand, or a file of another program's holding only what looked
like ours) is refused in one line before anything runs: analyze ran, then died in a traceback on the missing
table. A DuckDB file whose only tables sit in another schema, or whose ``migrations`` table is another program's,
is not taken over as a store either."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import orjson
import pytest

from tamperscope.collector import samples

SRC = Path(__file__).resolve().parents[2] / "src"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, "-m", "tamperscope", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(orjson.dumps(m) + b"\n" for m in samples.corpus(5, seed="dmg")))
    return path


def test_a_store_missing_a_table_is_refused_in_one_line(tmp_path: Path, corpus: Path) -> None:
    db = tmp_path / "s.duckdb"
    assert _cli("analyze", "--db", str(db), str(corpus), cwd=tmp_path).returncode == 0
    con = duckdb.connect(str(db))
    con.execute("DROP TABLE verdicts CASCADE")
    con.close()
    before = db.read_bytes()
    for args in (["analyze", "--db", str(db), str(corpus)], ["analyze", "--db", str(db), str(corpus), "--reread"],
                 ["report", "--db", str(db)], ["export", "--db", str(db), "--parquet", str(tmp_path / "pq")]):
        r = _cli(*args, cwd=tmp_path)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (args, r.stderr[-800:])
        assert r.stderr.strip() == (f"tamperscope: the store {db} is damaged: its table verdicts is missing; analyse "
                                    "the measurements into a new --db"), r.stderr
    assert db.read_bytes() == before and not (tmp_path / "pq").exists()


@pytest.mark.parametrize("sql, words", [
    ("CREATE SCHEMA other; CREATE TABLE other.t (a INTEGER)", "a DuckDB database with other tables (other.t)"),
    ("CREATE TABLE migrations (id INTEGER, name VARCHAR)",
     "a DuckDB database whose table migrations is another program's"),
])
def test_another_programs_database_is_not_taken_over(tmp_path: Path, corpus: Path, sql: str, words: str) -> None:
    db = tmp_path / "theirs.duckdb"
    con = duckdb.connect(str(db))
    con.execute(sql)
    con.close()
    before = db.read_bytes()
    r = _cli("analyze", "--db", str(db), str(corpus), cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip() == f"tamperscope: {db} is not a tamperscope store: it is {words}", \
        r.stderr[-800:]
    assert db.read_bytes() == before
    con = duckdb.connect(str(db), read_only=True)
    assert not {"measurements", "verdicts"} & {row[0] for row in con.execute("SHOW TABLES").fetchall()}
    con.close()
