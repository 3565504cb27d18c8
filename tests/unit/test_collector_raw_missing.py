"""A store whose raw segments are gone (copied without its ``.raw`` directory) or damaged: the explorer's pages
and the listing still work from the tables, and a measurement whose bytes cannot be read says so, not "unknown"."""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from tamperscope.analysis.store import Store, raw_root_for
from tamperscope.collector import samples
from tamperscope.collector.config import Settings
from tamperscope.collector.testing import asgi_client, running_app


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


def test_bytes_changed_in_place_are_not_shown_as_the_measurement(tmp_path: Path) -> None:
    # A zstd frame holds no checksum: a frame changed in place decompresses to the size written, and its bytes were
    # served as the measurement, evidence that no longer gives its uid. One measurement is checked against the hash
    # its uid ends with; the others of the same frame are still shown.
    db = tmp_path / "e.duckdb"
    uids, _ = _fill(db)
    with Store(db, create=False) as store:
        rows = store.con.execute("SELECT measurement_uid, raw_segment, raw_frame_offset, raw_frame_length, "
                                 "raw_frame_size, raw_line_offset, raw_line_length FROM measurements").fetchall()
    pointers = {r[0]: r[1:] for r in rows}
    segment, offset, length, size, line_offset, line_length = pointers[uids[0]]
    path = raw_root_for(db) / segment
    data = path.read_bytes()
    frame = bytearray(pa.Codec("zstd").decompress(data[offset:offset + length], decompressed_size=size, asbytes=True))
    line = bytes(frame[line_offset:line_offset + line_length])
    changed = line.replace(b'"probe_asn":"AS', b'"probe_asn":"XS', 1)
    assert changed != line and len(changed) == len(line)
    frame[line_offset:line_offset + line_length] = changed
    packed = pa.Codec("zstd").compress(bytes(frame), asbytes=True)
    path.write_bytes(data[:offset] + packed + data[offset + length:])
    with Store(db, create=False) as store:  # the frame's pointers, as a damaged disk leaves them, but its length
        store.con.execute("UPDATE measurements SET raw_frame_length = ? WHERE raw_segment = ? AND "
                          "raw_frame_offset = ?", [len(packed), segment, offset])
        store.con.execute("UPDATE measurements SET raw_frame_offset = raw_frame_offset + ? WHERE raw_segment = ? "
                          "AND raw_frame_offset > ?", [len(packed) - length, segment, offset])
    neighbour = next(u for u in uids[1:] if pointers[u][:2] == (segment, offset))
    with running_app(_settings(db)) as c:
        api = c.get(f"/api/v1/measurement/{uids[0]}")
        page = c.get(f"/m/{uids[0]}")
        twin = c.get(f"/m/{uids[0]}.json")
        other = c.get(f"/api/v1/measurement/{neighbour}")
        other_page = c.get(f"/m/{neighbour}")
    why = f"the raw segment {segment} of the store is damaged"
    assert api.status_code == 500 and api.json()["error"] == "raw_unreadable" and why in api.json()["detail"]
    assert page.status_code == 500 and why in page.text and "XS" not in page.text
    assert twin.status_code == 500 and why in twin.json()["detail"]
    assert other.status_code == 200 and orjson.loads(other.content)["probe_asn"].startswith("AS")
    assert other_page.status_code == 200


def test_a_measurement_received_but_not_yet_stored_says_so_not_unknown(tmp_path: Path) -> None:
    # The receipt names /m/{uid}; the API answered it at once from what the ingestor holds, the page said "no
    # measurement with this uid" until the store took it. Held here by keeping the store's thread busy.
    m = next(iter(samples.corpus(1, seed="being-stored")))

    async def main() -> tuple[list[Any], list[int]]:
        async with asgi_client(_settings(tmp_path / "s.duckdb")) as client:
            ingestor = client.app.state.collector.ingestor
            go = threading.Event()
            busy = asyncio.create_task(ingestor.call(lambda: go.wait(60)))
            await asyncio.sleep(0)
            receipt = (await client.post("/api/v1/submit", content=orjson.dumps(m))).json()
            uid = receipt["results"][0]["measurement_uid"]
            held = [await client.get(path) for path in (f"/m/{uid}", f"/m/{uid}.json", f"/api/v1/measurement/{uid}")]
            go.set()
            await busy
            await ingestor.settled()
            after = [(await client.get(path)).status_code for path in (f"/m/{uid}", f"/m/{uid}.json")]
            return held, after

    held, after = asyncio.run(asyncio.wait_for(main(), 120))
    page, twin, api = held
    said = "this measurement was received and is being stored: it shows here in a moment"
    assert page.status_code == 503 and said in page.text and page.headers["retry-after"] == "1"
    assert twin.status_code == 503 and twin.json() == {"error": "being_stored", "detail": said}
    assert api.status_code == 200 and orjson.loads(api.content) == m
    assert after == [200, 200]
    unknown = "20240101000000_XX_webconnectivity_" + "0" * 32
    with running_app(_settings(tmp_path / "s.duckdb")) as c:
        assert c.get(f"/m/{unknown}").status_code == 404
