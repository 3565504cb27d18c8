"""Durability in-process: the raw log is fsync'd before the answer, torn tails are cut, the store is
rebuilt from the raw log, deletions survive rebuilds."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import orjson
import pytest

from tamperscope.analysis.store import raw_root_for
from tamperscope.collector import samples
from tamperscope.collector.config import Settings
from tamperscope.collector.rawlog import Position, RawLog, collector_dir_for
from tamperscope.collector.testing import running_app

TOKEN = "t" * 24


def settings(db: Path) -> Settings:
    return Settings(db_path=db, announce=False, submit_rate=0, read_rate=0, admin_token=TOKEN)


def test_append_fsyncs_before_returning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_write, real_sync = os.write, os.fdatasync
    monkeypatch.setattr(os, "write", lambda fd, data: calls.append("write") or real_write(fd, data))
    monkeypatch.setattr(os, "fdatasync", lambda fd: calls.append("fdatasync") or real_sync(fd))
    log = RawLog(tmp_path / "c", now=lambda: dt.datetime(2026, 5, 1, tzinfo=dt.timezone.utc))
    end = log.append([b'{"a":1}', b'{"b":2}'])
    assert calls == ["write", "fdatasync"]  # one write, one sync, for the whole group
    assert end == Position("2026-05-01.jsonl", 16)
    assert [line for _, line in log.read()] == [b'{"a":1}', b'{"b":2}']
    assert [line for _, line in log.read(Position("2026-05-01.jsonl", 8))] == [b'{"b":2}']
    log.close()


def test_a_torn_tail_is_cut_and_kept_aside(tmp_path: Path) -> None:
    root = tmp_path / "c"
    log = RawLog(root, now=lambda: dt.datetime(2026, 5, 1, tzinfo=dt.timezone.utc))
    log.append([b'{"a":1}'])
    log.close()
    with open(root / "incoming" / "2026-05-01.jsonl", "ab") as f:
        f.write(b'{"half":')  # a crash mid-write: never acknowledged
    again = RawLog(root)
    assert again.torn_bytes == 8
    assert (root / "incoming" / "2026-05-01.jsonl").read_bytes() == b'{"a":1}\n'
    assert [p.read_bytes() for p in (root / "torn").iterdir()] == [b'{"half":']
    again.close()


def test_tombstones_are_durable_and_idempotent(tmp_path: Path) -> None:
    log = RawLog(tmp_path / "c")
    assert log.bury("u1", "privacy") is True
    assert log.bury("u1", "again") is False
    log.close()
    assert RawLog(tmp_path / "c").is_deleted("u1")


def _submit_all(c, ms):  # type: ignore[no-untyped-def]
    body = b"\n".join(orjson.dumps(m) for m in ms)
    out = c.post("/api/v1/submit", content=body).json()
    return [r["measurement_uid"] for r in out["results"]]


def _verdicts(c) -> dict[str, tuple]:  # type: ignore[no-untyped-def]
    rows = c.collector.reader.rows("SELECT measurement_uid, mechanism, blocking, status, outcome FROM verdicts")
    return {r["measurement_uid"]: (r["mechanism"], r["blocking"], r["status"], r["outcome"]) for r in rows}


def test_the_store_is_rebuilt_from_the_raw_log(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    ms = list(samples.corpus(60, seed="rebuild"))
    with running_app(settings(db)) as c:
        uids = _submit_all(c, ms)
        deleted = uids[3]
        assert c.post(f"/api/v1/admin/delete/{deleted}", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        before = _verdicts(c)
    assert deleted not in before and len(before) == 59
    # lose every derived thing: the DuckDB file and the store's frames
    db.unlink()
    wal = db.with_name(db.name + ".wal")
    if wal.exists():
        wal.unlink()
    shutil.rmtree(raw_root_for(db))
    with running_app(settings(db)) as c:
        assert c.collector.ingestor.stats.replayed == 60
        assert _verdicts(c) == before            # same verdicts, the deleted one stays deleted
        assert c.get(f"/api/v1/measurement/{deleted}").status_code == 404
        r = c.post("/report/20260101T000000Z_webconnectivity_IT_1_n1_x", json={"format": "json", "content": ms[3]})
        assert r.status_code == 410 and r.json()["error"] == "deleted"


def test_acknowledged_but_not_yet_ingested_lines_are_replayed_at_start(tmp_path: Path) -> None:
    """What a kill -9 between the fsync and the store's commit leaves: lines past the checkpoint."""
    db = tmp_path / "s.duckdb"
    ms = list(samples.corpus(10, seed="replay"))
    with running_app(settings(db)) as c:
        _submit_all(c, ms[:5])
    log = RawLog(collector_dir_for(db))
    log.append([orjson.dumps(m) for m in ms[5:]])  # in the raw log, not in the tables
    log.close()
    with running_app(settings(db)) as c:
        assert c.collector.ingestor.stats.replayed == 5
        listed = c.get("/api/v1/measurements", params={"limit": 100}).json()
        assert listed["metadata"]["count"] == 10


def test_checkpoint_moves_so_a_restart_reads_only_the_tail(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    with running_app(settings(db)) as c:
        _submit_all(c, list(samples.corpus(20, seed="tail")))
    with running_app(settings(db)) as c:
        assert c.collector.ingestor.stats.replayed == 0
