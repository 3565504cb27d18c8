"""Blockpages recognised: the fingerprints the verdicts matched, counted where and when, said in words (whose page),
in the report (terminal, HTML, JSON), the collector's API and the explorer, and a filter to find their measurements."""

from __future__ import annotations

import copy
import re
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from tamperscope.analysis import aggregates, pipeline
from tamperscope.analysis.aggregates import Filters
from tamperscope.analysis.report import blockpages_in_words, html_report, json_report, terminal_report
from tamperscope.analysis.store import Store
from tamperscope.analysis.verdicts import default_matcher, verdict_for
from tamperscope.collector.config import Settings
from tamperscope.collector.queries import MeasurementQuery
from tamperscope.collector.testing import running_app

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"
SHARED_BLOCKPAGES = Path(__file__).resolve().parents[3] / "shared" / "data" / "blockpages" / "citizenlab"
FORTINET, JEFFCO, GENERIC = "cp/a_prod_fortinet_1", "cl/inst_edu_jeffco", "cp/f_gen_access_denied"
EVIL = '<img src=x onerror="window.pwned=1">'


def _sample(name: str) -> dict[str, Any]:
    m: dict[str, Any] = orjson.loads((SAMPLES / name / "measurement.json").read_bytes())
    return m


def _page(body: str, cc: str, asn: str, n: int) -> dict[str, Any]:
    """The http-diff sample, its page replaced by ``body``, measured on ``asn`` in ``cc``."""
    m = copy.deepcopy(_sample("httpDiffWithConsistentDNS"))
    for r in m["test_keys"]["requests"]:
        r["response"]["body"] = body
    m.update(report_id=f"bp-{cc}-{n}", probe_cc=cc, probe_asn=asn)
    return m


def corpus() -> list[dict[str, Any]]:
    fortinet = "<html><body><h1>FortiGuard Web Filtering</h1>Web page blocked</body></html>"
    jeffco = "<html><h2>Jeffco Schools Internet Filtering Page</h2></html>"
    ms = [_page(fortinet, "RU", "AS12389", i) for i in range(3)]
    ms += [_page(fortinet, "TR", "AS9121", 3)]
    ms += [_page(jeffco, "US", "AS7922", i) for i in range(4, 6)]
    ms += [_sample(name) for name in ("httpDiffWithInconsistentDNS", "ghostDNSBlockingWithHTTP", "successWithHTTP",
                                      "dnsBlockingNXDOMAIN")]
    ms += [dict(_sample("successWithHTTP"), report_id="bp-RU-ok", probe_cc="RU", probe_asn="AS12389")]  # no blockpage
    return ms


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    tmp = tmp_path_factory.mktemp("blockpages")
    (tmp / "in.jsonl").write_bytes(b"\n".join(orjson.dumps(m) for m in corpus()))
    s = Store(tmp / "s.duckdb")
    pipeline.run([str(tmp / "in.jsonl")], s)
    return s


def _expected() -> Counter[str]:
    """How many measurements each fingerprint should count: the verdict function, one measurement at a time."""
    matcher = default_matcher()
    return Counter(fid for m in corpus() for fid in set(verdict_for(m, matcher).fingerprints))


def test_each_fingerprint_is_counted_with_where_and_when(store: Store) -> None:
    expected = _expected()
    assert expected[FORTINET] == 4 and expected[JEFFCO] == 2 and expected[GENERIC] >= 2  # the corpus is as meant
    rows = {r["fingerprint"]: r for r in aggregates.blockpages(store)}
    assert {k: r["measurement_count"] for k, r in rows.items()} == dict(expected)
    fortinet = rows[FORTINET]
    assert (fortinet["countries"], fortinet["network_count"], fortinet["domain_count"]) == ("RU, TR", 2, 1)
    assert fortinet["mechanisms"] == "http.blockpage" and fortinet["confirmed_count"] == 4
    assert fortinet["first_seen"] == fortinet["last_seen"] == "2024-02-12"
    assert [r["fingerprint"] for r in aggregates.blockpages(store)][0] == FORTINET  # commonest first
    assert len(aggregates.blockpages(store, limit=1)) == 1
    only_us = aggregates.blockpages(store, Filters(probe_cc="US"))
    assert [(r["fingerprint"], r["measurement_count"]) for r in only_us] == [(JEFFCO, 2)]


def test_the_fingerprint_filter_narrows_every_aggregate_and_the_listing(store: Store) -> None:
    f = Filters(fingerprint=FORTINET)
    assert aggregates.totals(store, f)["measurement_count"] == 4
    assert [(n["probe_asn"], n["measurement_count"]) for n in aggregates.per_network(store, f)] == [
        ("AS12389", 3), ("AS9121", 1)]
    assert aggregates.totals(store, Filters(fingerprint="cp/nothing"))["measurement_count"] == 0
    where, params = MeasurementQuery(fingerprint=JEFFCO).where()
    got = store.con.execute(f"SELECT count(*) FROM verdicts v WHERE {where}", params).fetchone()
    assert got == (2,)
    assert MeasurementQuery(fingerprint=JEFFCO, probe_cc="RU").filters() == Filters(probe_cc="RU", fingerprint=JEFFCO)


def test_the_report_says_whose_page_each_is(store: Store) -> None:
    words = {r["fingerprint"]: r for r in blockpages_in_words(store, None, 10)}
    assert words[FORTINET]["names"] == "a filtering product" and words[FORTINET]["source"] == "Censored Planet"
    assert words[JEFFCO]["names"] == "an institution (a school, an office)"
    assert words[JEFFCO]["name"] == "Institutional Block - Jeffco School" and words[JEFFCO]["expected"] == "US"
    assert words[GENERIC]["names"] == "no one (generic wording)"

    text = terminal_report(store)
    table = text[text.index("Blockpages recognised"):].splitlines()
    header = table[1]
    columns = ["fingerprint", "name", "whose", "known from", "measurements", "confirmed"]
    starts = [header.index(c) for c in columns]
    assert starts == sorted(starts), header  # in this order, and the name and countries there (QA: only in HTML)

    def cells(line: str) -> list[str]:
        return [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None])]

    rows = {cells(line)[0]: cells(line) for line in table[3:] if line.strip()}
    assert rows[FORTINET][2:5] == ["a filtering product", "", "4"]
    assert rows[JEFFCO][1:5] == ["Institutional Block - Jeffco School", "an institution (a school, an office)",
                                 "US", "2"]

    page = html_report(store, plotly_js="")
    section = page[page.index("<section id='blockpages'>"):]
    section = section[:section.index("</section>")]
    assert "Institutional Block - Jeffco School" in section and "a filtering product" in section
    assert "None." not in section
    assert "#blockpages" in page  # reached from the contents line
    doc = orjson.loads(orjson.dumps(json_report(store)))
    assert {r["fingerprint"]: r["measurement_count"] for r in doc["blockpages"]} == dict(_expected())
    jeffco = next(r for r in doc["blockpages"] if r["fingerprint"] == JEFFCO)  # what the terminal and HTML say
    assert (jeffco["name"], jeffco["names"], jeffco["expected"], jeffco["source"]) == (
        "Institutional Block - Jeffco School", "an institution (a school, an office)", "US", "Citizen Lab")


def test_an_id_this_version_does_not_ship_keeps_its_id_and_is_inert(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.duckdb")
    (tmp_path / "in.jsonl").write_bytes(orjson.dumps(_page("FortiGuard Web Filtering", "RU", "AS12389", 0)))
    pipeline.run([str(tmp_path / "in.jsonl")], s)
    # a store written by another version (or a submission analysed elsewhere) may name anything
    s.con.execute("UPDATE verdicts SET fingerprints = ['cp/retired_1', ?]", [EVIL])
    rows = {r["fingerprint"]: r for r in blockpages_in_words(s, None, 10)}
    assert set(rows) == {"cp/retired_1", EVIL}
    assert rows["cp/retired_1"]["names"] == rows["cp/retired_1"]["name"] == ""
    page = html_report(s, plotly_js="")
    s.close()
    assert EVIL not in page and "&lt;img src=x onerror=" in page


def test_the_explorer_lists_them_and_links_to_their_measurements(tmp_path: Path) -> None:
    with running_app(Settings(db_path=tmp_path / "e.duckdb", announce=False, submit_rate=0, read_rate=0)) as c:
        out = c.post("/api/v1/submit", content=b"\n".join(orjson.dumps(m) for m in corpus())).json()
        assert out["stored"] == len(corpus()), out
        country = c.get("/country/RU").text
        listed = c.get("/api/v1/measurements", params={"fingerprint": FORTINET}).json()
        agg = c.get("/api/v1/aggregation/blockpages", params={"probe_cc": "RU"}).json()
        section = re.search(r'<section id="blockpages">(.*?)</section>', country, re.S)
        assert section is not None and FORTINET in section.group(1)
        link = re.search(r'href="(/search\?[^"]*)"', section.group(1))
        assert link is not None
        href = link.group(1).replace("&amp;", "&")
        assert "fingerprint=cp%2Fa_prod_fortinet_1" in href and "probe_cc=RU" in href
        found = c.get(href).text
        everything = c.get("/search", params={"probe_cc": "RU"}).text
        blank = c.get("/country/US").text
    assert re.search(r'id="result-count">3 measurements', found)  # of the 4 from RU
    assert re.search(r'id="result-count">4 measurements', everything)
    assert 'name="fingerprint" value="cp/a_prod_fortinet_1"' in found  # the form shows what it searched
    assert listed["metadata"]["count"] == 4
    assert {r["probe_cc"] for r in listed["results"]} == {"RU", "TR"}
    assert [(r["fingerprint"], r["measurement_count"]) for r in agg["result"]] == [(FORTINET, 3)]
    us = re.search(r'<section id="blockpages">(.*?)</section>', blank, re.S)
    assert us is not None and "Institutional Block - Jeffco School" in us.group(1) and "known from US" in us.group(1)


def test_a_pattern_shipped_under_two_names_is_named_by_both(tmp_path: Path) -> None:
    """QA: RM Education's real filter page matched Citizen Lab's RM fingerprint and VAS Experts' (the very same
    pattern), and the report named the page VAS Experts SKAT DPI. It is one of them: both names are said."""
    rm, vas = "cl/prod_rmedufilter_blockpage", "cl/prod_vasexperts_blockpage_1"
    db = default_matcher().db
    assert vas in {f.id for f in db.same_pattern(rm)} and rm in {f.id for f in db.same_pattern(vas)}
    assert db.same_pattern(FORTINET) == ()
    page = (SHARED_BLOCKPAGES / "blockpage_meta_prod_rmedufilter_blockpage.html").read_text(errors="replace")
    s = Store(tmp_path / "s.duckdb")
    (tmp_path / "in.jsonl").write_bytes(orjson.dumps(_page(page, "GB", "AS786", 0)))
    pipeline.run([str(tmp_path / "in.jsonl")], s)
    rows = {r["fingerprint"]: r for r in blockpages_in_words(s, None, 10)}
    assert {rm, vas} <= set(rows)
    for own, other in ((rm, vas), (vas, rm)):
        assert rows[own]["same_pattern_as"] == [other]
        assert " or " in rows[own]["name"] and {db.get(rm).title, db.get(vas).title} == set(
            rows[own]["name"].split(" or ")), rows[own]["name"]
    s.close()


def test_an_empty_page_fingerprint_names_no_isp(tmp_path: Path) -> None:
    """Citizen Lab files its 'Blank or No-Render HTML - Suspected Block' fingerprints under the scope "isp": the
    report said an ISP's page (QA). An empty page names no one."""
    s = Store(tmp_path / "s.duckdb")
    (tmp_path / "in.jsonl").write_bytes(orjson.dumps(_page("<html><body></body></html>", "RU", "AS12389", 0)))
    pipeline.run([str(tmp_path / "in.jsonl")], s)
    rows = {r["fingerprint"]: r for r in blockpages_in_words(s, None, 10)}
    assert rows["cl/susp_blankhtml_2"]["names"] == "no one (a suspected block: an empty page)", rows
    s.close()


def test_a_fingerprint_named_for_one_isp_on_anothers_real_page_is_not_taken_at_its_word(tmp_path: Path) -> None:
    """Citizen Lab's 'RU ISP Megamax Block' is RKN's standard sentence: it matches the real pages Citizen Lab
    captured at Convex, Rostelecom and UCAnet, and the report said a Convex page was Megamax's. The name is now
    given with what it is worth, in the terminal, HTML and JSON reports and on the measurement's page."""
    megamax = "cl/isp_ru_megamax_rkn_block"
    page = (SHARED_BLOCKPAGES / "blockpage_meta_isp_ru_convex_rkn_blockpage.html").read_text(errors="replace")
    m = _page(page, "RU", "AS41704", 0)
    s = Store(tmp_path / "s.duckdb")
    (tmp_path / "in.jsonl").write_bytes(orjson.dumps(m))
    pipeline.run([str(tmp_path / "in.jsonl")], s)
    rows = {r["fingerprint"]: r for r in blockpages_in_words(s, None, 20)}
    assert megamax in rows, sorted(rows)
    row = rows[megamax]
    assert row["name"] == "RU ISP Megamax Block"
    assert row["also_on"] == ["convex (RU)", "rostelcom (RU)", "ucanet (RU)"], row["also_on"]
    assert row["names"].startswith("an ISP, not certainly the one its name says") and "convex (RU)" in row["names"]
    national = [r for fid, r in rows.items() if fid != megamax]
    assert national and all(not r["also_on"] and "not certainly" not in r["names"] for r in national)
    assert "not certainly the one its name says" in terminal_report(s)
    html = html_report(s, plotly_js="")
    assert "not certainly the one its name says: the same words are on real pages of convex (RU)" in html
    doc = orjson.loads(orjson.dumps(json_report(s)))
    assert next(r for r in doc["blockpages"] if r["fingerprint"] == megamax)["also_on"] == row["also_on"]
    s.close()
    with running_app(Settings(db_path=tmp_path / "e.duckdb", announce=False, submit_rate=0, read_rate=0)) as c:
        out = c.post("/api/v1/submit", content=orjson.dumps(m)).json()
        assert out["stored"] == 1, out
        uid = c.get("/api/v1/measurements").json()["results"][0]["measurement_uid"]
        shown = c.get(f"/m/{uid}").text
    section = re.search(r'<section id="fingerprints">(.*?)</section>', shown, re.S)
    assert section is not None, shown[:500]
    assert "Whose page: not certainly the one its name says: the same words are on real pages of convex (RU), " \
           "rostelcom (RU), ucanet (RU) (Citizen Lab&#39;s captures)." in section.group(1)
