"""The report's "Where the measurements come from": counts by the software that made the measurements (OONI Probe,
tamperscope, Censored Planet's published data), its days and versions, in the terminal, JSON and HTML reports, the
names as text. Over a real store written by `tamperscope analyze`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson

from tamperscope.analysis import aggregates
from tamperscope.analysis.store import Store
from tests.unit.test_censoredplanet import CASES, SATELLITE_CASES

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tamperscope", *args], capture_output=True, text=True, timeout=300)


def test_the_report_says_where_its_measurements_come_from(tmp_path: Path) -> None:
    samples = [orjson.loads(p.read_bytes()) for p in sorted(SAMPLES.glob("*/measurement.json"))]
    assert len(samples) == 50
    hostile = dict(samples[0], software_name="<script>alert(1)</script>", software_version="\x1b[31m9.9")
    lines = [*samples, hostile, *(line for line, _ in CASES.values()), *(line for line, _ in SATELLITE_CASES.values())]
    data = tmp_path / "m.jsonl"
    data.write_bytes(b"\n".join(orjson.dumps(m) for m in lines) + b"\n")
    db = tmp_path / "s.duckdb"
    assert _run("analyze", "--quiet", "--db", str(db), str(data)).returncode == 0

    document = json.loads(_run("report", "--db", str(db), "--json", "-").stdout)
    got = [(r["software"], r["measurement_count"], r["versions"]) for r in document["sources"]]
    names = {s["software_name"] for s in samples}
    assert len(names) == 1  # OONI's QA suite's miniooni
    (ooni,) = names
    assert got == [(ooni, 50, sorted({s["software_version"] for s in samples}, reverse=True)),
                   ("censoredplanet-hyperquack", 9, ["2"]), ("censoredplanet-satellite", 6, ["2.2"]),
                   ("<script>alert(1)</script>", 1, ["\x1b[31m9.9"])]
    assert document["sources"][1]["first_day"] == document["sources"][1]["last_day"] == "2021-05-30"
    # the --cc narrowing narrows it too
    narrowed = json.loads(_run("report", "--db", str(db), "--json", "-", "--cc", "IR").stdout)["sources"]
    assert [(r["software"], r["measurement_count"]) for r in narrowed] == [("censoredplanet-satellite", 6)]

    # narrowed by what only a verdict says (its technique): the measurements the verdicts select
    with Store(db, create=False) as store:
        for mechanism in ("dns.poison", "http.blockpage"):
            expected = store.con.execute(
                """SELECT m.software_name, count(*) FROM verdicts v JOIN measurements m USING (measurement_uid)
                   WHERE v.mechanism = ? GROUP BY 1 ORDER BY 2 DESC, 1""", [mechanism]).fetchall()
            got_rows = aggregates.sources(store, aggregates.Filters(mechanism=mechanism))
            assert [(r["software"], r["measurement_count"]) for r in got_rows] == expected and expected

    text = _run("report", "--db", str(db)).stdout
    section = text[text.index("Where the measurements come from"):]
    assert "Censored Planet, Hyperquack (read from its published data)" in section
    assert "Censored Planet, Satellite (read from its published data)" in section
    assert "\x1b" not in section and "?[31m9.9" in section  # no terminal escape from a field

    out = tmp_path / "r.html"
    assert _run("report", "--db", str(db), "--html", str(out)).returncode == 0
    page = out.read_text()
    assert "<section id='sources'><h2>Where the measurements come from</h2>" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
