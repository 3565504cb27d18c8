"""The lead lines count in English: "1 measurement from 1 country and 1 network", not "1 countries"."""

from __future__ import annotations

import re
from pathlib import Path

import orjson

from tamperscope.collector import samples
from tamperscope.collector.config import Settings
from tamperscope.collector.testing import running_app


def _lead(page: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", page.split('<p class="lead">', 1)[1].split("</p>", 1)[0]))


def test_one_of_each_is_singular_and_two_are_plural(tmp_path: Path) -> None:
    with running_app(Settings(db_path=tmp_path / "p.duckdb", announce=False, submit_rate=0, read_rate=0)) as c:
        one = samples.measurement("http.blockpage", url="http://one.example/", start="2026-05-27 00:00:00")
        assert c.post("/api/v1/submit", content=orjson.dumps(one)).json()["stored"] == 1
        home = _lead(c.get("/").text)
        assert "1 measurement from 1 country and 1 network, of 1 domain; 1 anomaly, 1 confirmed" in home, home
        # (and how it was confirmed: its blockpage is one a fingerprint knows)
        assert ("1 measurement, 1 anomaly (1 confirmed: 1 by a blockpage fingerprint, 0 by a repeat)"
                in _lead(c.get("/domain/one.example").text))
        assert "1 measurement." in c.get("/search").text
        two = samples.measurement("http.blockpage", url="http://two.example/", start="2026-05-27 00:00:01",
                                  probe_cc="RU", probe_asn="AS12389")
        assert c.post("/api/v1/submit", content=orjson.dumps(two)).json()["stored"] == 1
        home = _lead(c.get("/").text)
        assert "2 measurements from 2 countries and 2 networks, of 2 domains; 2 anomalies" in home, home
