"""The report's "Blockpages no fingerprint knows" (terminal, JSON, HTML): the templates of the pages censors served
that no fingerprint recognises, each with the fingerprint proposed for it, as the explorer's /new-blockpages finds
them; gone once a fingerprint of one's own knows them; the censor's words shown as text. Over real DuckDB stores
and `tamperscope` processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import orjson

from tamperscope.analysis.verdicts import FINGERPRINTS_ENV
from tamperscope.collector import samples
from tamperscope.collector.config import Settings
from tamperscope.collector.testing import running_app
from tests.unit.test_local_fingerprints import HEADER, _measurements

TITLE = "Сайт заблокирован"
PATTERN = "<p>Operator: Example Telecom filtering service</p>"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != FINGERPRINTS_ENV}
    return subprocess.run([sys.executable, "-m", "tamperscope", *args], capture_output=True, text=True, timeout=300,
                          env=env)


def _store(tmp_path: Path, measurements: list[dict]) -> Path:
    data = tmp_path / "m.jsonl"
    data.write_bytes(b"\n".join(orjson.dumps(m) for m in measurements))
    db = tmp_path / "s.duckdb"
    res = _run("analyze", "--quiet", "--db", str(db), str(data))
    assert res.returncode == 0, res.stderr
    return db


def _json(db: Path, *args: str) -> dict:
    res = _run("report", "--db", str(db), "--json", "-", *args)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_the_report_names_the_template_and_proposes_its_fingerprint(tmp_path: Path) -> None:
    db = _store(tmp_path, _measurements())
    (row,) = _json(db)["new_blockpages"]
    assert (row["title"], row["measurement_count"], row["domain_count"], row["countries"], row["network_count"]) == (
        TITLE, 4, 4, "RU", 1)
    assert row["seen"] == "2026-05-01 to 2026-05-04"
    assert row["pattern"] == PATTERN and row["pattern_found"] == "in 4 of 4 pages"
    assert row["fingerprint"]["pattern"] == PATTERN and row["fingerprint"]["expected_countries"] == "['RU']"
    # the page's words as a reader sees them, not its markup
    assert row["excerpt"].startswith(f"{TITLE} Доступ к ресурсу ") and "<" not in row["excerpt"]
    assert "http.blockpage" in row["mechanisms"] and "accessible by OONI's rules" in row["mechanisms"]

    text = _run("report", "--db", str(db)).stdout
    section = text[text.index("Blockpages no fingerprint knows"):]
    assert TITLE in section and PATTERN in section and "in 4 of 4 pages" in section

    out = tmp_path / "r.html"
    assert _run("report", "--db", str(db), "--html", str(out)).returncode == 0
    page = out.read_text()
    assert "<section id='new-blockpages'><h2>Blockpages no fingerprint knows</h2>" in page
    assert "href='#new-blockpages'" in page  # in the contents line
    assert "&lt;p&gt;Operator: Example Telecom filtering service&lt;/p&gt;" in page

    # narrowed away: no section
    assert _json(db, "--cc", "IT")["new_blockpages"] == []
    assert "Blockpages no fingerprint knows" not in _run("report", "--db", str(db), "--cc", "IT").stdout


def test_as0_is_no_network_in_templates_feeds_and_pages(tmp_path: Path) -> None:
    """AS0 is no network: a template seen on AS0 and on one network (in two countries) is on 1 network, and on
    networks not known as well (report, JSON, proposed fingerprint, explorer page and feed); a measurement on AS0 is
    "on a network not known" in the feeds, and says so where it is listed and on its own page."""
    measurements = _measurements()
    for m in measurements[:2]:  # whose network nobody said
        m["probe_asn"] = "AS0"
        m.pop("probe_network_name", None)
    measurements[2]["probe_cc"] = "BY"  # AS1 in two countries is still one network
    db = _store(tmp_path, measurements)
    (row,) = _json(db)["new_blockpages"]
    assert (row["measurement_count"], row["countries"], row["network_count"], row["unknown_network"]) == (
        4, "BY, RU", 1, True)
    assert "from 4 measurements of 4 sites on AS1 and networks not known; review" in row["fingerprint"]["notes"]
    text = _run("report", "--db", str(db)).stdout
    section = text[text.index("Blockpages no fingerprint knows"):]
    assert f"{TITLE}  " in section and "  1 + not known  " in section, section
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0)) as client:
        (group,) = client.get("/new-blockpages.json").json()["groups"]
        page = client.get("/new-blockpages").text
        feed = client.get("/new-blockpages.atom").text
        anomalies = client.get("/feed.atom", params={"probe_asn": "AS0"}).text
        found = client.get("/search", params={"domain": "a.example"}).text  # measurements[0], on AS0
        uid = client.get("/api/v1/measurements", params={"probe_asn": "AS0"}).json()["results"][0]["measurement_uid"]
        measurement = client.get(f"/m/{uid}").text
    # a measurement on AS0, listed and on its own page
    assert re.search(r'href="/network/AS0">AS0</a> <a href="/country/RU">RU</a><br><span class="muted">network not '
                     r'known</span>', found), found
    assert re.search(r'<dt>Network</dt><dd>AS0 <span class="muted">\(network not known\)</span> \(RU\)</dd>',
                     measurement), measurement
    assert ".example) on AS1 and networks not known, from " in feed, feed  # AS1 once, though in two countries
    assert "in RU on a network not known" in anomalies and "on AS0" not in anomalies.split("<entry>", 1)[1], anomalies
    assert (group["network_count"], group["unknown_network"]) == (1, True)
    assert "4 measurements of 4 sites on 1 network (and networks not known)," in " ".join(page.split()), page


def test_a_fingerprint_of_ones_own_makes_it_a_known_blockpage(tmp_path: Path) -> None:
    db = _store(tmp_path, _measurements())
    mine = tmp_path / "mine.csv"
    mine.write_text(HEADER + "isp_ru_example,Example Telecom,Example Telecom filtering service,body,,8,[],isp,"
                             "['RU'],ours\n")
    res = _run("analyze", "--fingerprints", str(mine), "--reanalyse", "stale", "--db", str(db))
    assert res.returncode == 0, res.stderr
    document = _json(db)
    assert document["new_blockpages"] == []
    assert [b["fingerprint"] for b in document["blockpages"]] == ["local/isp_ru_example"]


def test_the_censors_words_are_text_everywhere(tmp_path: Path) -> None:
    payload = "&lt;img src=x onerror=alert(1)&gt;"  # markup once the entities are read: shown, never parsed
    body = (f"<html><head><title>Blocked {payload}</title></head><body><h1>Blocked {payload}</h1>"
            f"<p>\x1b[31mNotice {{d}}: access denied by order {{i}}</p></body></html>")
    ms = []
    for i, d in enumerate(["a.example", "b.example"]):
        m = samples.measurement("http.blockpage", url=f"http://{d}/", probe_cc="FR", probe_asn="AS3215",
                                start=f"2026-05-0{i + 1} 10:00:00", body=body.format(d=d, i=i), report_id=f"r{i}")
        response = m["test_keys"]["requests"][0]["response"]
        response["headers"]["X-Filter"] = "on"  # a header the site's page has not: OONI's diff fires
        response["headers_list"].append(["X-Filter", "on"])
        ms.append(m)
    db = _store(tmp_path, ms)
    (row,) = _json(db)["new_blockpages"]
    assert row["measurement_count"] == 2 and "<img src=x onerror=alert(1)>" in row["title"]
    out = tmp_path / "r.html"
    assert _run("report", "--db", str(db), "--html", str(out)).returncode == 0
    section = out.read_text().split("<section id='new-blockpages'>")[1].split("</section>")[0]
    assert "<img" not in section and "&lt;img src=x onerror=alert(1)&gt;" in section
    assert "\x1b" not in section
    text = _run("report", "--db", str(db)).stdout
    assert "Blockpages no fingerprint knows" in text and "\x1b" not in text


def test_proposed_fingerprints_go_from_the_report_to_a_file_and_back(tmp_path: Path) -> None:
    """The loop without a server: report --propose-fingerprints FILE, review, analyze --fingerprints FILE
    --reanalyse stale; the page is then a blockpage recognised, and nothing is left to propose."""
    from urllib.parse import unquote

    from tamperscope.wire.fingerprints import local_entries

    db = _store(tmp_path, _measurements())
    mine = tmp_path / "mine.csv"
    res = _run("report", "--db", str(db), "--propose-fingerprints", str(mine))
    assert res.returncode == 0, res.stderr
    assert f"proposed fingerprints: {mine} (1 to review; then analyze --fingerprints {mine} --reanalyse stale)" \
        in res.stdout
    (entry,) = local_entries(mine.read_text(), str(mine))
    assert entry["pattern"] == PATTERN and entry["title"] == TITLE and entry["expected_countries"] == ["RU"]
    row = mine.read_text().splitlines()[1]
    assert "example: measurement 20260504100000_RU_webconnectivity_" in row and ",/m/" not in row
    # to standard output, alone
    res = _run("report", "--db", str(db), "--propose-fingerprints", "-")
    assert res.returncode == 0 and res.stdout.replace("\r\n", "\n") == mine.read_text().replace("\r\n", "\n")
    # and from inside the HTML report, the same file
    out = tmp_path / "r.html"
    assert _run("report", "--db", str(db), "--html", str(out)).returncode == 0
    page = out.read_text()
    link = page.split("<a download='proposed-fingerprints.csv' href='data:text/csv;charset=utf-8,")[1].split("'")[0]
    assert unquote(link) == mine.read_bytes().decode()

    res = _run("analyze", "--fingerprints", str(mine), "--reanalyse", "stale", "--db", str(db))
    assert res.returncode == 0 and ": 3 verdicts changed" in res.stdout, res.stdout + res.stderr
    again = tmp_path / "again.csv"
    res = _run("report", "--db", str(db), "--propose-fingerprints", str(again))
    assert res.returncode == 0 and res.stderr == ""
    assert f"no blockpage without a fingerprint has a pattern to propose: {again} not written" in res.stdout
    assert not again.exists()


def test_propose_fingerprints_usage_errors_are_one_line(tmp_path: Path) -> None:
    db = _store(tmp_path, _measurements())
    for args, words in ((["--propose-fingerprints", "-", "--json", "-"], "both name standard output"),
                        (["--propose-fingerprints", "-", "--json", "-", "--html", "-"], "all name standard output"),
                        (["--propose-fingerprints", str(tmp_path / "x"), "--html", str(tmp_path / "x")],
                         "give each its own file"),
                        (["--propose-fingerprints", str(db)], "is the store"),
                        (["--propose-fingerprints", str(tmp_path)], "is a directory"),
                        (["--propose-fingerprints", str(tmp_path / "no" / "x.csv")], "no such directory")):
        res = _run("report", "--db", str(db), *args)
        assert res.returncode == 2, (args, res.stderr)
        assert words in res.stderr and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, args


def test_a_would_be_formula_is_text_in_a_spreadsheet() -> None:
    from tamperscope.analysis.sheets import cell, csv_text

    assert cell('=HYPERLINK("http://evil.example")') == '\'=HYPERLINK("http://evil.example")'
    assert [cell(v) for v in ("+1", "-x", "@a", "\tx", "ok", 3)] == ["'+1", "'-x", "'@a", "'\tx", "ok", 3]
    assert csv_text([{"a": "=1", "b": ["x", "y"]}]) == "a,b\r\n'=1,x y\r\n"
