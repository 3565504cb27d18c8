"""Fingerprints of one's own (`analyze --fingerprints FILE`, `serve --fingerprints FILE`): the loop from a page no
database knows to a confirmed blockpage. The explorer proposes a fingerprint (/new-blockpages.csv), the file is
given back to the server, a re-analysis judges the stored measurements with it, and the page is then a known
blockpage (id local/NAME), the measurements confirmed; and the CLI's analyze matches with it in its worker
processes too. Over real collectors, DuckDB stores and `tamperscope` processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tamperscope.analysis import verdicts
from tamperscope.analysis.store import Store
from tamperscope.analysis.verdicts import ANALYSIS_VERSION, FINGERPRINTS_ENV
from tamperscope.collector import samples
from tamperscope.collector.config import Settings
from tamperscope.collector.testing import running_app
from tamperscope.wire.fingerprints import local_entries
from tests.unit.test_new_blockpages import ISP_RU

TOKEN = "a-token-long-enough-for-the-admin"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HEADER = "name,common_name,pattern,location_found,exp_url,confidence_no_fp,source,scope,expected_countries,notes\n"


def _measurements() -> list[dict]:
    """The ISP's page for three sites (sent with only common headers, so OONI's diff calls two accessible), and
    with an uncommon one for a fourth (an anomaly with no fingerprint)."""
    out = [samples.measurement("http.blockpage", url=f"http://{d}/", probe_cc="RU", probe_asn="AS1",
                               start=f"2026-05-0{i + 1} 10:00:00", body=ISP_RU.format(d=d, i=i), report_id=f"r{i}")
           for i, d in enumerate(["a.example", "b.example", "c.example"])]
    m = samples.measurement("http.blockpage", url="http://d.example/", probe_cc="RU", probe_asn="AS1",
                            start="2026-05-04 10:00:00", body=ISP_RU.format(d="d.example", i=9), report_id="r9")
    m["test_keys"]["requests"][0]["response"]["headers"]["X-Filter"] = "on"
    m["test_keys"]["requests"][0]["response"]["headers_list"].append(["X-Filter", "on"])
    return [*out, m]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No fingerprints of one's own before, nor left after, for the other tests of this process."""
    monkeypatch.delenv(FINGERPRINTS_ENV, raising=False)
    yield
    os.environ.pop(FINGERPRINTS_ENV, None)


def test_a_proposed_fingerprint_given_back_confirms_the_blockpage(tmp_path: Path, clean_env: None) -> None:
    db = tmp_path / "a.duckdb"
    body = b"\n".join(orjson.dumps(m) for m in _measurements())
    settings = Settings(db_path=db, announce=False, submit_rate=0, read_rate=0, admin_token=TOKEN)
    with running_app(settings) as c:
        out = c.post("/api/v1/submit", content=body).json()
        assert [r["verdict"]["mechanism"] for r in out["results"]] == ["none", "none", "none", "http.blockpage"]
        assert all(not r["verdict"]["fingerprints"] for r in out["results"])
        c.run(c.collector.ingestor.settled)
        proposed = c.get("/new-blockpages.csv").text
        (group,) = c.get("/new-blockpages.json").json()["groups"]
        assert group["measurements"] == 4
    (tmp_path / "mine.csv").write_text(proposed)
    name = proposed.splitlines()[1].split(",")[0]
    # the same store, served with the file: what is stored is stale, and a re-analysis judges it again
    verdicts.use_fingerprints(tmp_path / "mine.csv")
    version = verdicts.analysis_version()
    assert version.startswith(f"{ANALYSIS_VERSION}+local.") and version != ANALYSIS_VERSION
    with running_app(settings) as c:
        assert c.get("/api/v1/health").json()["analysis_version"] == version
        done = c.post("/api/v1/admin/reanalyse", json={"stale": True}, headers=AUTH).json()
        # changed: the three judged accessible; the fourth was a blockpage already (it gains its fingerprint)
        assert done["selected"] == 4 and done["reanalysed"] == 4 and done["changed"] == 3, done
        assert done["fingerprinted"] == 1, done  # ... and is counted apart
        c.run(c.collector.ingestor.settled)
        rows = c.get("/api/v1/measurements", params={"limit": 10}).json()["results"]
        assert {r["input"]: (r["mechanism"], r["outcome"], r["fingerprints"]) for r in rows} == {
            f"http://{d}/": ("http.blockpage", "confirmed", [f"local/{name}"])
            for d in ("a.example", "b.example", "c.example", "d.example")}
        # known now: nothing left to propose, and the explorer names whose it is
        assert c.get("/new-blockpages.json").json()["groups"] == []
        known = c.get("/country/RU.json").json()["blockpages"]
        assert [(b["fingerprint"], b["source"]) for b in known] == [
            (f"local/{name}", "this collector's own (--fingerprints)")]
        # a new submission is judged with it at once
        new = samples.measurement("http.blockpage", url="http://e.example/", probe_cc="RU", probe_asn="AS1",
                                  start="2026-05-09 10:00:00", body=ISP_RU.format(d="e.example", i=3))
        verdict = c.post("/api/v1/submit", content=orjson.dumps(new)).json()["results"][0]["verdict"]
        assert verdict["fingerprints"] == [f"local/{name}"] and verdict["mechanism"] == "http.blockpage"
    with Store(db) as store:
        versions = {r[0] for r in store.con.execute("SELECT DISTINCT analysis_version FROM verdicts").fetchall()}
    assert versions == {version}
    # the reports name the source too, given the file or not (`report` takes no --fingerprints): its cell was empty
    env = {k: v for k, v in os.environ.items() if k != FINGERPRINTS_ENV}
    report = subprocess.run([sys.executable, "-m", "tamperscope", "report", "--db", str(db), "--html",
                             str(tmp_path / "r.html")], capture_output=True, text=True, timeout=300, env=env)
    assert report.returncode == 0, report.stderr
    table = report.stdout[report.stdout.index("Blockpages recognised"):]
    assert f"local/{name}" in table and "this collector's own (--fingerprints)" in table, table
    html = (tmp_path / "r.html").read_text()
    assert "<th>from</th>" in html and "this collector&#x27;s own (--fingerprints)" in html


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != FINGERPRINTS_ENV}
    return subprocess.run([sys.executable, "-m", "tamperscope", "analyze", "--quiet", *args], capture_output=True,
                          text=True, timeout=300, env=env)


@pytest.mark.parametrize("engine, workers", [("local", "1"), ("local", "2"), ("dask", "2")])
def test_analyze_matches_with_them_in_every_worker(tmp_path: Path, engine: str, workers: str) -> None:
    data = tmp_path / "m.jsonl"
    data.write_bytes(b"\n".join(orjson.dumps(m) for m in _measurements()))
    mine = tmp_path / "mine.csv"
    mine.write_text(HEADER + "isp_ru_example,Example Telecom,Example Telecom filtering service,body,,8,[],isp,"
                             "['RU'],ours\n")
    res = _analyze("--db", str(tmp_path / "a.duckdb"), "--engine", engine, "--workers", workers,
                   "--fingerprints", str(mine),
                   "--jsonl", str(tmp_path / "v.jsonl"), str(data))
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert [v["fingerprints"] for v in lines] == [["local/isp_ru_example"]] * 4
    with Store(tmp_path / "a.duckdb") as store:
        rows = store.con.execute("SELECT outcome, analysis_version FROM verdicts").fetchall()
    assert {r[0] for r in rows} == {"confirmed"} and all(r[1].startswith(f"{ANALYSIS_VERSION}+local.") for r in rows)
    # without the file, the same measurements have no fingerprint
    res = _analyze("--db", str(tmp_path / "b.duckdb"), "--jsonl", str(tmp_path / "w.jsonl"), str(data))
    assert res.returncode == 0, res.stderr
    assert all(json.loads(line)["fingerprints"] == [] for line in (tmp_path / "w.jsonl").read_text().splitlines())


@pytest.mark.parametrize("content, words", [
    ("", "empty"),
    ("name,title\nx,y\n", "no pattern column"),
    (HEADER + "bad name!,t,p,body,,,,,,\n", "name 'bad name!' is not"),
    (HEADER + "a,t,,body,,,,,,\n", "the pattern must be"),
    (HEADER + "a,t,p,cookie,,,,,,\n", "location_found 'cookie' is not body or header"),
    (HEADER + "a,t,p,body,,11,,,,\n", "confidence_no_fp must be 0 to 10"),
    (HEADER + "a,t,p,body,,٣,,,,\n", "confidence_no_fp must be 0 to 10"),  # a digit, not an ASCII one
    (HEADER + "a,t,p,body,,,,,['Russia'],\n", "expected_countries"),
    (HEADER + "a,t,p,body,,,,,,\na,t,q,body,,,,,,\n", "name 'a' is given twice"),
    (HEADER + "a,t,p\n", "3 fields where the header has 10"),
    (HEADER, "no fingerprint in it"),
])
def test_a_bad_file_is_refused_in_one_line(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "mine.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match="mine.csv") as caught:
        local_entries(content, str(path))
    assert words in str(caught.value) and "\n" not in str(caught.value)
    for command in (["analyze", "--db", str(tmp_path / "x.duckdb"), str(tmp_path)],
                    ["serve", "--db", str(tmp_path / "y.duckdb"), "--port", "1"]):  # it stops before listening
        res = subprocess.run([sys.executable, "-m", "tamperscope", *command, "--fingerprints", str(path)],
                             capture_output=True, text=True, timeout=60,
                             env={k: v for k, v in os.environ.items() if k != FINGERPRINTS_ENV})
        assert res.returncode == 2, (command, res.stderr)
        assert words in res.stderr and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr


def test_the_environment_can_name_the_file_and_is_checked_as_the_option_is(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER)
    env = {**os.environ, FINGERPRINTS_ENV: str(bad)}
    for command in (["analyze", "--db", str(tmp_path / "x.duckdb"), str(tmp_path)],
                    ["serve", "--db", str(tmp_path / "y.duckdb"), "--port", "1"]):
        res = subprocess.run([sys.executable, "-m", "tamperscope", *command], capture_output=True, text=True,
                             timeout=60, env=env)
        assert res.returncode == 2 and res.stderr.startswith(f"tamperscope: ${FINGERPRINTS_ENV}: "), res.stderr
        assert "no fingerprint in it" in res.stderr and "Traceback" not in res.stderr
    good = tmp_path / "good.csv"
    good.write_text(HEADER + "isp_ru_example,Example Telecom,Example Telecom filtering service,body,,,,,,\n")
    data = tmp_path / "m.jsonl"
    data.write_bytes(b"\n".join(orjson.dumps(m) for m in _measurements()))
    res = subprocess.run([sys.executable, "-m", "tamperscope", "analyze", "--quiet", "--db", str(tmp_path / "a.duckdb"),
                          "--jsonl", "-", str(data)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, FINGERPRINTS_ENV: str(good)})
    assert res.returncode == 0, res.stderr
    assert [json.loads(line)["fingerprints"] for line in res.stdout.splitlines()] == [["local/isp_ru_example"]] * 4


def test_a_file_that_cannot_be_read_is_refused(tmp_path: Path) -> None:
    for path, words in ((tmp_path / "nowhere.csv", "cannot read the fingerprint file"),
                        (tmp_path, "cannot read the fingerprint file")):
        with pytest.raises(ValueError, match=words):
            verdicts.read_fingerprints(path)
    (tmp_path / "latin1.csv").write_bytes(HEADER.encode() + "a,é,p,body,,,,,,\n".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        verdicts.read_fingerprints(tmp_path / "latin1.csv")
    res = _analyze("--db", str(tmp_path / "a.duckdb"), "--engine", "dask", "--scheduler", "tcp://198.18.0.1:8786",
                   "--fingerprints", str(tmp_path / "latin1.csv"), str(tmp_path))
    assert res.returncode == 2 and "--fingerprints and --scheduler" in res.stderr


def test_only_the_latest_few_compiled_databases_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tamperscope.wire import fingerprints

    monkeypatch.setenv("TAMPERSCOPE_CACHE_DIR", str(tmp_path))
    for i in range(6):  # a file edited six times
        db = fingerprints.FingerprintDB.load_with(local_entries(HEADER + f"v{i},t,pattern {i},body,,,,,,\n", "f"))
        assert db.get(f"local/v{i}").pattern == f"pattern {i}"
    kept = sorted(tmp_path.glob("fingerprints-local-*.pickle"))
    assert len(kept) == fingerprints.LOCAL_CACHES_KEPT
    # and the latest loads from its cache
    again = fingerprints.FingerprintDB.load_with(local_entries(HEADER + "v5,t,pattern 5,body,,,,,,\n", "f"))
    assert again.get("local/v5").pattern == "pattern 5"
    assert len(sorted(tmp_path.glob("fingerprints-local-*.pickle"))) == fingerprints.LOCAL_CACHES_KEPT


def test_entries_are_substrings_in_the_body_or_the_headers() -> None:
    entries = local_entries(HEADER + "in_body,Page,Example Telecom,body,,,,,\"['RU', 'tr']\",\n"
                                     "in_header,Box,X-Filter: on,header,,,,,RU,\n", "f.csv")
    assert [(e["id"], e["where"], e["expected_countries"]) for e in entries] == [
        ("local/in_body", "body", ["RU", "TR"]), ("local/in_header", "header", ["RU"])]
    from tamperscope.wire.fingerprints import FingerprintDB

    db = FingerprintDB.load_with(entries)
    page = ISP_RU.format(d="x.example", i=1)
    assert [m.id for m in db.match_response(page, [("Server", "x")], 200)] == ["local/in_body"]
    assert [m.id for m in db.match_response("<p>hello</p>", [("X-Filter", "on")], 200)] == ["local/in_header"]
    assert db.match_response("<p>Example</p>", [("X-Other", "on")], 200) == []
    assert len(db.fingerprints) == len(FingerprintDB.load().fingerprints) + 2
