"""A store whose raw segments are gone (copied without its ``.raw`` directory) or damaged: the explorer's pages
and the listing still work from the tables, and a measurement whose bytes cannot be read says so, not "unknown"."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import orjson
import pytest

from tamperscope.analysis.store import raw_root_for
from tamperscope.collector import samples
from tamperscope.collector.config import Settings
from tamperscope.collector.testing import running_app


def _settings(db: Path) -> Settings:
    return Settings(db_path=db, announce=False, submit_rate=0, read_rate=0)


def _fill(db: Path) -> tuple[list[str], str]:
    ms = list(samples.corpus(30, seed="raw-missing"))
    with running_app(_settings(db)) as c:
        out = c.post("/api/v1/submit", content=b"\n".join(orjson.dumps(m) for m in ms)).json()
        assert out["stored"] == len(ms), out
        uids = [r["measurement_uid"] for r in out["results"]]
        assert c.get(f"/api/v1/measurement/{uids[0]}").status_code == 200
    return uids, ms[0]["probe_cc"]


@pytest.mark.parametrize("damage", ["removed", "cut"])
def test_pages_work_and_a_measurement_without_its_bytes_says_why(tmp_path: Path, damage: str,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "e.duckdb"
    uids, cc = _fill(db)
    raw = raw_root_for(db)
    segments = sorted(raw.rglob("*.jsonl.zst"))
    assert segments
    if damage == "removed":
        shutil.rmtree(raw)
    else:
        for seg in segments:
            seg.write_bytes(seg.read_bytes()[:40])
    with caplog.at_level(logging.WARNING, logger="tamperscope.collector"), running_app(_settings(db)) as c:
        country = c.get(f"/country/{cc}")
        listing = c.get("/api/v1/measurements", params={"limit": 100}).json()
        api = c.get(f"/api/v1/measurement/{uids[0]}")
        page = c.get(f"/m/{uids[0]}")
        twin = c.get(f"/m/{uids[0]}.json")
        export = c.get("/api/v1/export/raw.jsonl")
        unknown = c.get("/api/v1/measurement/20240101000000_XX_webconnectivity_" + "0" * 32)
    assert country.status_code == 200 and "<section id=\"blockpages\">" in country.text
    assert listing["metadata"]["count"] == len(uids)
    assert api.status_code == 500 and api.json()["error"] == "raw_unreadable"
    assert "cannot be read" in api.json()["detail"]
    assert page.status_code == 500 and "cannot be read" in page.text
    assert twin.status_code == 500 and twin.json()["error"] == "raw_unreadable"
    assert export.status_code == 200 and export.content == b""
    assert unknown.status_code == 404
    said = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
    assert 1 <= len(said) <= len(segments)  # once per segment, however many requests met it
