"""Findings (`serve --findings DIR`): a researcher's conclusion in a text file, published by the explorer and the
API with the measurements it is about counted now; bad files refused in one line naming them (at start) or skipped
and said (while serving); the text shown as written, never as HTML. Over a real collector and DuckDB store."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from tamperscope.analysis import aggregates
from tamperscope.collector import samples
from tamperscope.collector.config import Settings
from tamperscope.collector.findings import FindingError, Findings, parse, read
from tamperscope.collector.testing import SyncClient, running_app

HOSTILE = '<script>window.__pwned=1</script><a href="https://leak.example/">click</a>'

MEDUZA = '''+++
title = "Rostelecom poisons DNS for meduza.io"
summary = "Every measurement from AS12389 in May got a forged address."
published = 2026-05-20
reported_by = "A. Researcher"

[evidence]
probe_cc = "ru"
probe_asn = "as12389"
domain = "meduza.io"
test_name = "web_connectivity"
since = 2026-05-01
until = 2026-06-01
+++
Since 1 May, Rostelecom's resolvers answer meduza.io with an address of their own.

The measurements below show it, network by network.
'''

HOSTILE_FINDING = f'''+++
title = "{HOSTILE.replace('"', "'")}"
summary = "{HOSTILE.replace('"', "'")}"
published = 2026-05-02

[evidence]
probe_cc = ["RU", "TM"]
+++
{HOSTILE}

second paragraph
'''

# (url, country, network, day, scenario): what was measured
MEASURED = [
    ("https://meduza.io/", "RU", "AS12389", "2026-05-03", "dns.poison"),
    ("https://meduza.io/", "RU", "AS12389", "2026-05-04", "dns.poison"),
    ("https://meduza.io/", "RU", "AS12389", "2026-05-05", "ok"),
    ("https://meduza.io/", "RU", "AS12389", "2026-04-20", "dns.poison"),  # before the finding's evidence
    ("https://meduza.io/", "RU", "AS8359", "2026-05-03", "tcp.drop"),     # another network
    ("https://bbc.com/", "TM", "AS20661", "2026-05-03", "http.blockpage"),
]


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.md"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_finding_file_reads_as_the_aggregation_selects() -> None:
    f = parse("ru-meduza", MEDUZA, "ru-meduza.md")
    assert (f.id, f.title, f.reported_by, f.published.isoformat()) == (
        "ru-meduza", "Rostelecom poisons DNS for meduza.io", "A. Researcher", "2026-05-20")
    # as the selection reads them: what the links and the search take
    assert f.evidence == {"probe_cc": "RU", "probe_asn": "AS12389", "test_name": "web_connectivity",
                          "domain": "meduza.io", "since": "2026-05-01", "until": "2026-06-01"}
    assert f.selection.probe_cc == ("RU",) and f.selection.domain == ("meduza.io",)
    assert f.paragraphs() == ["Since 1 May, Rostelecom's resolvers answer meduza.io with an address of their own.",
                              "The measurements below show it, network by network."]
    several = parse("x", HOSTILE_FINDING, "x.md")
    assert several.evidence == {"probe_cc": "RU,TM"} and several.about("probe_cc", "tm")
    assert not several.about("probe_asn", "AS1") and not several.about("probe_cc", "IR")


HEAD = '+++\ntitle = "t"\npublished = 2026-05-01\n[evidence]\nprobe_cc = "RU"\n'


@pytest.mark.parametrize(("name", "content", "words"), [
    ("ok", "title = 1\n", "line 1: a finding begins with a line '+++'"),
    ("ok", '+++\ntitle = "t"\n', "the header opened on line 1 is never closed"),
    ("ok", '+++\ntitle = "t"\npublished = 2026-05-01\ntitle = "again"\n+++\n', "line 4: not TOML"),
    ("ok", '+++\ntitle = "t"\npublished = 2026-05-01\ncolour = "red"\n+++\n', "unknown key 'colour'"),
    ("ok", '+++\npublished = 2026-05-01\n[evidence]\nprobe_cc = "RU"\n+++\n', "needs a title"),
    ("ok", '+++\ntitle = "  "\npublished = 2026-05-01\n+++\n', "needs a title"),
    ("ok", '+++\ntitle = "t"\n[evidence]\nprobe_cc = "RU"\n+++\n', "needs the date it was published"),
    ("ok", '+++\ntitle = "t"\npublished = "May"\n[evidence]\nprobe_cc = "RU"\n+++\n', "published must be a date"),
    ("ok", '+++\ntitle = "t"\npublished = 2026-05-01\n+++\n', "needs its [evidence]"),
    ("ok", '+++\ntitle = "t"\npublished = 2026-05-01\n[evidence]\nsince = 2026-05-01\n+++\n', "not only dates"),
    ("ok", HEAD.replace('"RU"', '"Russia"') + "+++\n", "evidence: probe_cc: 'Russia' is not one"),
    ("ok", HEAD + "since = 2026-06-01\nuntil = 2026-05-01\n+++\n", "since must come before until"),
    ("ok", HEAD + "colour = 1\n+++\n", "unknown key evidence.colour"),
    ("ok", HEAD + 'probe_asn = []\n+++\n', "evidence.probe_asn must be a list of values"),
    ("ok", HEAD + 'category_code = "<b>NEWS</b>"\n+++\n', "evidence: category_code"),
    ("ok", HEAD.replace('"t"', '"a\\u0007b"') + "+++\n", "title holds a control character"),
    ("ok", HEAD.replace('"t"', '"' + "t" * 201 + '"') + "+++\n", "title is longer than 200 characters"),
    ("Big-Finding", HEAD + "+++\n", "a finding's file name is its id"),
])
def test_a_bad_finding_is_named_in_one_line(tmp_path: Path, name: str, content: str, words: str) -> None:
    path = _write(tmp_path, name, content)
    with pytest.raises(FindingError) as err:
        read(path)
    assert str(err.value).startswith(str(path) + ": ") and words in str(err.value) and "\n" not in str(err.value)


def test_a_file_not_utf8_or_too_large_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bin.md").write_bytes(b"+++\ntitle = \"\xff\"\n+++\n")
    with pytest.raises(FindingError, match=r"bin\.md: not UTF-8 text \(byte 13 is 0xff, line 2\)"):
        read(tmp_path / "bin.md")
    _write(tmp_path, "big", HEAD + "+++\n" + "x" * (1 << 20))
    with pytest.raises(FindingError, match=r"big\.md is larger than 1 MiB"):
        read(tmp_path / "big.md")


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    return subprocess.run([sys.executable, "-m", "tamperscope", "serve", "--db", str(tmp_path / "s.duckdb"),
                           "--port", "1", *args], capture_output=True, text=True, env=env, timeout=60)


def test_serve_refuses_a_bad_finding_before_it_opens_anything(tmp_path: Path) -> None:
    folder = tmp_path / "findings"
    folder.mkdir()
    _write(folder, "ru-meduza", MEDUZA)
    _write(folder, "typo", MEDUZA.replace("published = 2026-05-20", "published = 2026-05-20 x"))
    res = _serve(tmp_path, "--findings", str(folder))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
    assert f"{folder / 'typo.md'}: line 4: not TOML" in res.stderr, res.stderr
    res = _serve(tmp_path, "--findings", str(tmp_path / "nowhere"))
    assert res.returncode == 2 and "nowhere: not a directory" in res.stderr, res.stderr
    assert not (tmp_path / "s.duckdb").exists()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SyncClient, Path, list[str]]]:
    tmp = tmp_path_factory.mktemp("findings")
    folder = tmp / "findings"
    folder.mkdir()
    _write(folder, "ru-meduza", MEDUZA)
    _write(folder, "hostile", HOSTILE_FINDING)
    warned: list[str] = []
    body = b"\n".join(orjson.dumps(samples.measurement(scenario, url=url, probe_cc=cc, probe_asn=asn,
                                                       start=f"{day} 10:00:0{i}", report_id=f"r{i}"))
                      for i, (url, cc, asn, day, scenario) in enumerate(MEASURED))
    with running_app(Settings(db_path=tmp / "a.duckdb", announce=False, submit_rate=0, read_rate=0,
                              findings_dir=folder)) as c:
        c.collector.findings.warn = warned.append
        assert c.post("/api/v1/submit", content=body).json()["stored"] == len(MEASURED)
        c.run(c.collector.ingestor.settled)
        yield c, folder, warned


def test_a_finding_is_published_with_its_evidence_counted_now(served: tuple[SyncClient, Path, list[str]]) -> None:
    client, _, _ = served
    listed = client.get("/findings.json").json()["findings"]
    assert [f["id"] for f in listed] == ["ru-meduza", "hostile"]  # newest first
    page = client.get("/findings/ru-meduza.json").json()
    # May, AS12389, meduza.io: three measurements, two poisoned (the April one and AS8359's are not its evidence)
    assert page["counts"]["measurement_count"] == 3 and page["anomalies"] == 2
    assert page["counts"] == aggregates.counts_by(client.collector.store,
                                                  client.collector.findings.get("ru-meduza").selection)[0]
    assert sum(sum(t["y"]) for t in page["charts"]["evidence"]["data"]) == 3
    # the anomalies link finds exactly those; the chart link selects the same measurements
    found = client.get(page["links"]["search"].replace("/search", "/search.json", 1)).json()
    assert found["metadata"]["count"] == 2 and {m["probe_asn"] for m in found["results"]} == {"AS12389"}
    assert [m["measurement_start_time"][:10] for m in page["recent_anomalies"]] == ["2026-05-04", "2026-05-03"]
    (how,) = page["techniques"]  # how they were blocked, each technique linking its measurements
    assert (how["mechanism"], how["count"]) == ("dns.poison", 2)
    assert client.get(how["search"].replace("/search", "/search.json", 1)).json()["metadata"]["count"] == 2
    assert '<p id="techniques">How: <a href="/search?' in client.get("/findings/ru-meduza").text
    chart = client.get(page["links"]["chart"].replace("/chart", "/chart.json", 1)).json()
    assert chart["measurement_count"] == 3
    assert parse_qs(urlsplit(page["links"]["data"]).query)["axis_x"] == ["measurement_start_day"]
    about = {a["field"]: [v["href"] for v in a["values"]] for a in page["about"]}
    assert about["probe_cc"] == ["/country/RU"] and about["probe_asn"] == ["/network/AS12389"]
    assert about["domain"] == ["/domain/meduza.io"] and about["test_name"] == [None]
    api = client.get("/api/v1/findings/ru-meduza").json()
    assert api["counts"] == page["counts"] and api["text"].startswith("Since 1 May")
    assert [f["id"] for f in client.get("/api/v1/findings").json()["results"]] == ["ru-meduza", "hostile"]
    assert client.get("/api/v1/findings/nope").status_code == 404
    assert client.get("/findings/nope").status_code == 404 and client.get("/findings/nope.json").status_code == 404


def test_the_pages_it_is_about_list_it(served: tuple[SyncClient, Path, list[str]]) -> None:
    client, _, _ = served
    ids = {path: [f["id"] for f in client.get(path).json()["findings"]]
           for path in ("/index.json", "/country/RU.json", "/country/TM.json", "/network/AS12389.json",
                        "/network/AS8359.json", "/domain/meduza.io.json", "/domain/bbc.com.json")}
    assert ids == {"/index.json": ["ru-meduza", "hostile"], "/country/RU.json": ["ru-meduza", "hostile"],
                   "/country/TM.json": ["hostile"], "/network/AS12389.json": ["ru-meduza"],
                   "/network/AS8359.json": [], "/domain/meduza.io.json": ["ru-meduza"], "/domain/bbc.com.json": []}
    home = client.get("/").text
    assert '<a href="/findings/ru-meduza">Rostelecom poisons DNS for meduza.io</a>' in home
    assert '<a href="/findings">Findings</a>' in home


def test_a_findings_text_is_shown_as_written_never_as_html(served: tuple[SyncClient, Path, list[str]]) -> None:
    client, _, _ = served
    page = client.get("/findings/hostile")
    assert page.status_code == 200
    assert "<script>window.__pwned" not in page.text and 'href="https://leak.example/"' not in page.text
    text = re.search(r'<section id="text">(.*?)</section>', page.text, re.S).group(1)
    assert [html.unescape(p) for p in re.findall(r"<p>(.*?)</p>", text, re.S)] == [HOSTILE, "second paragraph"]
    assert html.unescape(re.search(r"<h1>(.*?)</h1>", page.text).group(1)) == HOSTILE.replace('"', "'")
    # two countries: counted together, but no link to a search that takes one value
    data = client.get("/findings/hostile.json").json()
    assert data["counts"]["measurement_count"] == len(MEASURED) and data["links"]["search"] is None
    assert data["recent_anomalies"] == []


def test_the_directory_is_read_again_when_a_file_changes(served: tuple[SyncClient, Path, list[str]]) -> None:
    client, folder, warned = served
    new = _write(folder, "tm-bbc", MEDUZA.replace("published = 2026-05-20", "published = 2026-06-01")
                 .replace('probe_cc = "ru"', 'probe_cc = "TM"').replace('probe_asn = "as12389"\n', "")
                 .replace('domain = "meduza.io"', 'domain = "bbc.com"'))
    try:
        assert [f["id"] for f in client.get("/findings.json").json()["findings"]] == ["tm-bbc", "ru-meduza",
                                                                                     "hostile"]
        assert client.get("/findings/tm-bbc.json").json()["counts"]["measurement_count"] == 1
        # broken while serving: skipped and said once, the others still shown
        new.write_text(new.read_text().replace("+++\nSince", "Since"))
        for _ in range(2):
            assert [f["id"] for f in client.get("/findings.json").json()["findings"]] == ["ru-meduza", "hostile"]
        assert len(warned) == 1 and warned[0].startswith(f"finding skipped: {new}: the header"), warned
        assert client.get("/findings/tm-bbc").status_code == 404
    finally:
        new.unlink()
    assert [f["id"] for f in client.get("/findings.json").json()["findings"]] == ["ru-meduza", "hostile"]
    # the directory gone (moved away, unmounted): the findings last read stay, and that is said once
    away = folder.with_name("moved")
    folder.rename(away)
    try:
        for _ in range(2):
            assert [f["id"] for f in client.get("/findings.json").json()["findings"]] == ["ru-meduza", "hostile"]
        assert len(warned) == 2 and warned[1] == f"{folder}: cannot be read: No such file or directory", warned
    finally:
        away.rename(folder)


def test_without_a_directory_the_page_says_how_to_publish() -> None:
    assert Findings(None).all() == [] and Findings(None).check() == 0
