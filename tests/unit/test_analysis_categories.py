"""Sites by Citizen Lab category: test lists kept in the store, a verdict's category looked up from them (its
country's list first, a whole-site entry before a page's), counted and filtered in the aggregates, the report,
the API and the explorer; bad lists refused in one line."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tamperscope.analysis import aggregates, pipeline
from tamperscope.analysis import schema as st
from tamperscope.analysis.aggregates import Filters
from tamperscope.analysis.categories import category_sql, read_test_lists, store_lists
from tamperscope.analysis.report import html_report, json_report, terminal_report
from tamperscope.analysis.store import Store
from tamperscope.collector import samples
from tamperscope.collector.config import Settings
from tamperscope.collector.testing import SyncClient, running_app

HEADER = "url,category_code,category_description,date_added,source,notes\n"
GLOBAL = HEADER + "\n".join([
    "https://www.facebook.com/,GRP,Social Networking,2014-04-15,citizenlab,",
    "https://www.facebook.com/Kasparov.Ru/,NEWS,News Media,2019-05-25,citizenlab,",  # a page, not the site
    "https://meduza.io/,NEWS,News Media,2015-01-01,citizenlab,",
    "https://www.bbc.com/,NEWS,News Media,2015-01-01,citizenlab,",                   # measured without www.
    "https://xn--d1acpjx3f.xn--p1ai/,SRCH,Search Engines,2020-01-01,citizenlab,",   # measured in Unicode
]) + "\n"
TM = HEADER + "\n".join([
    "https://meduza.io/,POLR,Political Criticism,2016-01-01,citizenlab,",            # TM's list says otherwise
    "https://www.facebook.com/SomeDissident/,NEWS,News Media,2019-05-25,citizenlab,",
]) + "\n"

# (url, country, network, scenario): what was measured
MEASURED = [
    ("https://www.facebook.com/", "TM", "AS20661", "dns.poison"),
    ("https://www.facebook.com/", "TM", "AS20661", "dns.poison"),
    ("http://meduza.io/", "TM", "AS20661", "http.blockpage"),
    ("https://bbc.com/", "TM", "AS20661", "ok"),
    ("https://unlisted.example/", "TM", "AS20661", "tcp.drop"),
    ("https://www.facebook.com/", "RU", "AS12389", "ok"),
    ("https://meduza.io/", "RU", "AS12389", "dns.poison"),
    ("https://meduza.io/", "RU", "AS12389", "ok"),
    ("https://яндекс.рф/", "RU", "AS12389", "tcp.drop"),
]
# what each (site, country) must be filed under
EXPECTED = {("www.facebook.com", "TM"): "GRP", ("www.facebook.com", "RU"): "GRP", ("meduza.io", "TM"): "POLR",
            ("meduza.io", "RU"): "NEWS", ("bbc.com", "TM"): "NEWS", ("unlisted.example", "TM"): None,
            ("яндекс.рф", "RU"): "SRCH"}


def _lists(tmp: Path, global_text: str = GLOBAL) -> list[Path]:
    (tmp / "global.csv").write_text(global_text)
    (tmp / "tm.csv").write_text(TM)
    return [tmp / "global.csv", tmp / "tm.csv"]


def _measurements(tmp: Path) -> Path:
    lines = [orjson.dumps(samples.measurement(scenario, url=url, probe_cc=cc, probe_asn=asn,
                                              start=f"2026-05-0{i % 9 + 1} 10:00:0{i % 10}",
                                              report_id=f"r{i}"))
             for i, (url, cc, asn, scenario) in enumerate(MEASURED)]
    path = tmp / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    tmp = tmp_path_factory.mktemp("categories")
    s = Store(tmp / "s.duckdb")
    pipeline.run([str(_measurements(tmp))], s)  # analysed first: the lists given later categorise it too
    store_lists(s.con, read_test_lists(_lists(tmp)))
    yield s
    s.close()


def _verdicts(s: Store) -> list[dict[str, object]]:
    rows = s.con.execute("SELECT domain, probe_cc, outcome FROM verdicts").fetchall()
    return [{"domain": d, "probe_cc": cc, "outcome": o} for d, cc, o in rows]


def test_each_verdict_gets_its_countrys_category_and_a_whole_site_entry_beats_a_page(store: Store) -> None:
    got = dict(((d, cc), code) for d, cc, code in store.con.execute(
        f"SELECT DISTINCT domain, probe_cc, {category_sql()} FROM verdicts").fetchall())
    assert got == EXPECTED


def test_per_category_counts_what_the_verdicts_and_the_lists_say(store: Store) -> None:
    verdicts = _verdicts(store)
    assert len(verdicts) == len(MEASURED)
    want: dict[object, dict[str, object]] = {}
    for v in verdicts:
        code = EXPECTED[(str(v["domain"]), str(v["probe_cc"]))]
        row = want.setdefault(code, {"domains": set(), "blocked": set(), "n": 0, "anomalies": 0})
        row["domains"].add(v["domain"])  # type: ignore[attr-defined]
        row["n"] = int(row["n"]) + 1  # type: ignore[call-overload]
        if v["outcome"] in ("anomaly", "confirmed"):
            row["blocked"].add(v["domain"])  # type: ignore[attr-defined]
            row["anomalies"] = int(row["anomalies"]) + 1  # type: ignore[call-overload]
    rows = aggregates.per_category(store)
    assert {r["category_code"]: (r["domain_count"], r["blocked_domain_count"], r["measurement_count"],
                                 r["anomaly_count"]) for r in rows} == {
        code: (len(w["domains"]), len(w["blocked"]), w["n"], w["anomalies"])  # type: ignore[arg-type]
        for code, w in want.items()}
    # most blocked sites first; the sites in no list last
    assert rows[-1]["category_code"] is None
    blocked = [r["blocked_domain_count"] for r in rows[:-1]]
    assert blocked == sorted(blocked, reverse=True)


def test_a_category_narrows_every_aggregate(store: Store) -> None:
    polr = aggregates.totals(store, Filters(category_code="POLR"))
    assert polr["measurement_count"] == 1 and polr["domain_count"] == 1 and polr["country_count"] == 1
    news = aggregates.per_domain(store, Filters(category_code="NEWS"), limit=None)
    assert {d["domain"] for d in news} == {"meduza.io", "bbc.com"}
    assert sum(d["measurement_count"] for d in news) == 3  # meduza from RU twice, bbc once: not meduza from TM
    assert aggregates.totals(store, Filters(category_code="NEWS", probe_cc="TM"))["measurement_count"] == 1
    assert aggregates.totals(store, Filters(category_code="PORN"))["measurement_count"] == 0


def test_a_list_given_again_replaces_the_one_of_its_name(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.duckdb")
    try:
        pipeline.run([str(_measurements(tmp_path))], s)
        store_lists(s.con, read_test_lists(_lists(tmp_path)))
        assert aggregates.totals(s, Filters(category_code="NEWS", probe_cc="RU"))["measurement_count"] == 2
        store_lists(s.con, read_test_lists(_lists(tmp_path, GLOBAL.replace("meduza.io/,NEWS", "meduza.io/,HUMR"))[:1]))
        held = dict(s.con.execute("SELECT list, count(*) FROM test_lists GROUP BY list").fetchall())
        assert held == {"global.csv": 5, "tm.csv": 2}  # replaced, not added to; tm.csv kept
        assert aggregates.totals(s, Filters(category_code="HUMR", probe_cc="RU"))["measurement_count"] == 2
        assert aggregates.totals(s, Filters(category_code="NEWS", probe_cc="RU"))["measurement_count"] == 0
        assert aggregates.totals(s, Filters(category_code="POLR"))["measurement_count"] == 1  # TM's list still wins
    finally:
        s.close()


def test_the_parquet_export_carries_each_verdicts_category_and_the_lists(store: Store, tmp_path: Path) -> None:
    import duckdb

    counts = store.export_parquet(tmp_path / "out")
    assert counts["verdicts"] == len(MEASURED) and counts["test_lists"] == 7
    con = duckdb.connect()
    got = dict(((d, cc), code) for d, cc, code in con.execute(
        f"SELECT DISTINCT domain, probe_cc, category_code FROM read_parquet('{tmp_path}/out/verdicts/*/*/*.parquet', "
        "hive_partitioning = true)").fetchall())
    assert got == EXPECTED
    lists = con.execute(f"SELECT list, cc, count(*) FROM '{tmp_path}/out/test_lists.parquet' GROUP BY ALL "
                        "ORDER BY 1").fetchall()
    assert lists == [("global.csv", "ZZ", 5), ("tm.csv", "TM", 2)]


def test_a_store_without_lists_has_no_categories_and_says_why_a_category_matches_nothing(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.duckdb")
    try:
        pipeline.run([str(_measurements(tmp_path))], s)
        assert aggregates.per_category(s) == []
        text = terminal_report(s, Filters(category_code="NEWS"))
        assert "holds no test list" in text and "--test-list" in text
        assert "Sites by category" not in terminal_report(s)
    finally:
        s.close()


def test_the_reports_count_sites_by_category(store: Store) -> None:
    text = terminal_report(store)
    assert "Sites by category" in text
    section = text.split("Sites by category", 1)[1].split("\n\n", 1)[0]
    assert "Social Networking (GRP)" in section and "Political Criticism (POLR)" in section
    assert "Not in a test list" in section
    page = html_report(store, plotly_js="")
    assert "<section id='categories'>" in page and "Search Engines (SRCH)" in page
    doc = json_report(store)
    assert {r["category_code"] for r in doc["categories"]} == {"GRP", "POLR", "NEWS", "SRCH", None}
    narrowed = terminal_report(store, Filters(category_code="POLR"))
    assert narrowed.startswith("Only category POLR.") and "meduza.io" in narrowed and "facebook" not in narrowed


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tamperscope", *args], capture_output=True, text=True, timeout=300,
                          check=False)


def test_the_cli_keeps_lists_and_refuses_bad_ones_in_one_line(tmp_path: Path) -> None:
    db = str(tmp_path / "s.duckdb")
    global_csv, tm_csv = _lists(tmp_path)
    r = _run("analyze", str(_measurements(tmp_path)), "--db", db, "--test-list", str(global_csv), "--quiet")
    assert r.returncode == 0, r.stderr
    assert "test list global.csv: 5 entries, 5 with a category, for every country" in r.stdout
    r = _run("analyze", "--db", db, "--test-list", str(tm_csv))  # no measurements: the list alone
    assert r.returncode == 0 and "test list tm.csv: 2 entries, 2 with a category, for TM" in r.stdout, r.stderr
    r = _run("report", "--db", db, "--category", "polr")
    assert r.returncode == 0 and r.stdout.startswith("Only category POLR."), r.stderr
    bad = {
        "plain.txt": ("https://a.example/\nhttps://b.example/\n", "no categories in it"),
        "cut.csv": (HEADER + '"https://a.example/,NEWS\n', "line 2: not valid CSV"),
        "empty.csv": (HEADER, "no URLs in it"),
        "bin.csv": ("url,category_code\n\udcff", "not UTF-8"),
        "odd.csv": (HEADER + "https://a.example/,<b>NEWS</b>,,,,\n", "is not a category code"),
    }
    for name, (text, says) in bad.items():
        path = tmp_path / name
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
        r = _run("analyze", "--db", db, "--test-list", str(path))
        assert r.returncode == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, (name, r.stderr)
    for args, says in ((["analyze", "--db", db], "--test-list FILE or --reanalyse stale"),
                       (["analyze", "--db", db, "--test-list", str(tm_csv), "--jsonl", str(tmp_path / "v.jsonl")],
                        "--jsonl writes the verdicts of the measurements analysed"),
                       (["analyze", "--db", db, "--test-list", str(tmp_path / "none.csv")], "cannot read"),
                       (["analyze", "--db", db, "--test-list", str(global_csv), "--test-list", str(global_csv)],
                        "two lists named global.csv"),
                       (["report", "--db", db, "--category", "News Media"], "is not a category code")):
        r = _run(*args)
        assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    # a refused list left the store's lists as they were
    s = Store(db)
    try:
        assert dict(s.con.execute("SELECT list, count(*) FROM test_lists GROUP BY list").fetchall()) == {
            "global.csv": 5, "tm.csv": 2}
    finally:
        s.close()


def test_a_version_10_store_gains_the_tables_and_takes_lists(tmp_path: Path) -> None:
    import duckdb

    con = duckdb.connect(str(tmp_path / "old.duckdb"))
    assert st.migrate(con, target=10)[-1] == 10
    con.close()
    s = Store(tmp_path / "old.duckdb")
    try:
        assert s.migrated == [11, 12] and aggregates.per_category(s) == []
        pipeline.run([str(_measurements(tmp_path))], s)
        store_lists(s.con, read_test_lists(_lists(tmp_path)))
        assert {r["category_code"] for r in aggregates.per_category(s)} == {"GRP", "POLR", "NEWS", "SRCH", None}
    finally:
        s.close()


def test_serve_refuses_a_bad_list_before_it_starts(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("https://a.example/\n")
    r = _run("serve", "--db", str(tmp_path / "s.duckdb"), "--port", "1", "--test-list", str(path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no categories in it" in r.stderr, r.stderr
    assert not (tmp_path / "s.duckdb").exists()  # nothing opened, nothing created


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncClient]:
    tmp = tmp_path_factory.mktemp("categories-api")
    db = tmp / "a.duckdb"
    with Store(db) as s:
        store_lists(s.con, read_test_lists(_lists(tmp)))
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0)) as c:
        out = c.post("/api/v1/submit", content=_measurements(tmp).read_bytes()).json()
        assert out["stored"] == len(MEASURED)
        c.run(c.collector.ingestor.settled)
        yield c


def test_the_api_filters_and_aggregates_by_category_as_oonis_does(client: SyncClient) -> None:
    r = client.get("/api/v1/measurements", params={"category_code": "news"})
    assert r.status_code == 200
    found = Counter((m["domain"], m["probe_cc"]) for m in r.json()["results"])
    assert found == Counter({("meduza.io", "RU"): 2, ("bbc.com", "TM"): 1})
    assert r.json()["metadata"]["count"] == 3
    agg = client.get("/api/v1/aggregation/per_category").json()
    assert agg["filters"] == {} and {row["category_code"] for row in agg["result"]} == {"GRP", "POLR", "NEWS",
                                                                                        "SRCH", None}
    tm = client.get("/api/v1/aggregation/per_domain", params={"category_code": "GRP", "probe_cc": "TM"}).json()
    assert [(d["domain"], d["measurement_count"]) for d in tm["result"]] == [("www.facebook.com", 2)]
    bad = client.get("/api/v1/measurements", params={"category_code": "NEWS'--"})
    assert bad.status_code == 400 and "category_code" in bad.json()["detail"]
    report = client.get("/api/v1/export/report.html", params={"category_code": "POLR"})
    assert report.status_code == 200 and "Only category POLR." in report.text
    assert "tamperscope-report-POLR.html" in report.headers["content-disposition"]


def test_the_explorer_shows_sites_by_category_and_searches_by_it(client: SyncClient) -> None:
    home = client.get("/index.json").json()
    assert {c["category_code"]: c["blocked_domain_count"] for c in home["categories"]} == {
        "GRP": 1, "POLR": 1, "NEWS": 1, "SRCH": 1, None: 1}
    page = client.get("/").text
    assert "<section id=\"categories\">" in page and "Political Criticism (POLR)" in page
    polr = next(c for c in home["categories"] if c["category_code"] == "POLR")
    found = client.get(polr["search"].replace("/search", "/search.json", 1)).json()
    assert [(m["domain"], m["probe_cc"]) for m in found["results"]] == [("meduza.io", "TM")]
    country = client.get("/country/RU.json").json()
    assert {c["category_code"] for c in country["categories"]} == {"GRP", "NEWS", "SRCH"}
    assert all("probe_cc=RU" in c["search"] for c in country["categories"] if c.get("search"))
    # TM's list files meduza.io under POLR, the global one under NEWS: the site's page says which country is which
    domain = client.get("/domain/meduza.io").text
    assert re.search(r'Category: News Media \(NEWS\) <span class="muted">in RU</span>; Political Criticism \(POLR\) '
                     r'<span class="muted">in TM</span>', domain), domain
    assert [(c["category_code"], c["countries"]) for c in client.get("/domain/meduza.io.json").json()["categories"]] \
        == [("NEWS", ["RU"]), ("POLR", ["TM"])]
    one = client.get("/domain/bbc.com").text  # filed alike everywhere: no countries to tell apart
    assert re.search(r'Category: News Media \(NEWS\) <span class="muted">\(Citizen Lab', one), one
    form = client.get("/search").text
    assert '<select name="category_code">' in form and '<option value="POLR">' in form
