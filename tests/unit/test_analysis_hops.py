"""Where on the path: the hops located measurements carry (``test_keys.x_hop``), grouped, in the terminal, HTML and
JSON reports as on the explorer's area pages; a hostile hop is escaped, and a store with none has no such section."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tamperscope.analysis import hops, pipeline
from tamperscope.analysis.aggregates import Filters
from tamperscope.analysis.report import html_report, json_report, terminal_report
from tamperscope.analysis.store import Store
from tamperscope.collector import samples

EVIL = "<img src=x onerror=window.pwned=1>"
BORDER = {"ttl": 2, "ip": "198.18.1.1", "asn": "AS64500", "name": "LABTELECOM", "placement": "in-path",
          "method": "tamperscope locate: TTL-limited trigger packets"}
INJECTOR = {"ttl": 5, "ip": "198.18.9.1", "placement": "on-path"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    tmp = tmp_path_factory.mktemp("hops")
    ms = [
        # three resets located at the border router, one of them on another network; the newest is the example
        samples.measurement("http.rst", url="http://a.example/", probe_asn="AS64500", start="2026-05-20 10:00:00",
                            hop=BORDER),
        samples.measurement("tls.rst", url="https://b.example/", probe_asn="AS64500", start="2026-05-21 10:00:00",
                            hop=BORDER),
        samples.measurement("tls.rst", url="https://c.example/", probe_asn="AS64501", start="2026-05-22 10:00:00",
                            hop=BORDER),
        samples.measurement("dns.poison", url="https://d.example/", probe_cc="RU", probe_asn="AS12389",
                            start="2026-05-22 11:00:00", hop=INJECTOR),
        # the same hop, and beside the device that resets, one that injects DNS answers: a row of its own
        samples.measurement("dns.poison", url="https://h.example/", probe_asn="AS64500", start="2026-05-18 10:00:00",
                            hop={**BORDER, "placement": "on-path"}),
        # a hostile hop: its words are the measurement's, shown escaped
        samples.measurement("http.rst", url="https://e.example/", probe_asn="AS64500", start="2026-05-19 10:00:00",
                            hop={"ttl": 3, "ip": EVIL, "placement": EVIL}),
        # not located; and located but not an anomaly (a hop on a measurement that was fine says nothing)
        samples.measurement("http.rst", url="https://f.example/", probe_asn="AS64500", start="2026-05-23 10:00:00"),
        samples.measurement("ok", url="https://g.example/", probe_asn="AS64500", start="2026-05-23 11:00:00",
                            hop={"ttl": 9, "ip": "198.18.99.1"}),
    ]
    (tmp / "in.jsonl").write_bytes(b"\n".join(orjson.dumps(m) for m in ms))
    s = Store(tmp / "s.duckdb")
    pipeline.run([str(tmp / "in.jsonl")], s)
    return s


def _uid(store: Store, url: str) -> str:
    row = store.cursor().execute("SELECT measurement_uid FROM measurements WHERE input = ?", [url]).fetchone()
    assert row is not None
    return str(row[0])


def test_the_located_anomalies_are_grouped_by_hop_commonest_first(store: Store) -> None:
    rows = hops.located(store)
    assert [(r["label"], r["placement"], r["measurement_count"], r["mechanisms"], r["networks"], r["domains"])
            for r in rows] == [
        ("hop 2, after router 198.18.1.1 (AS64500 LABTELECOM)", "in-path", 3, "http.rst, tls.rst", "AS64500, AS64501",
         "a.example, b.example, c.example"),
        ("hop 2, after router 198.18.1.1 (AS64500 LABTELECOM)", "on-path", 1, "dns.poison", "AS64500", "h.example"),
        (f"hop 3 {EVIL}", EVIL, 1, "http.rst", "AS64500", "e.example"),
        ("hop 5 198.18.9.1", "on-path", 1, "dns.poison", "AS12389", "d.example"),
    ]
    assert rows[0]["example_uid"] == _uid(store, "https://c.example/")  # the latest located there
    assert [r["label"] for r in hops.located(store, Filters(probe_cc="RU"))] == ["hop 5 198.18.9.1"]
    # the latest anomalies only: the two newest are not located (f) or the border's newest (c)
    assert [r["measurement_count"] for r in hops.located(store, scan=2)] == [1]


def test_the_reports_say_where(store: Store) -> None:
    text = terminal_report(store)
    section = text.split("\nWhere on the path", 1)[1].split("\n\n", 1)[0].splitlines()
    assert section[3].split()[:9] == ["hop", "2,", "after", "router", "198.18.1.1", "(AS64500", "LABTELECOM)",
                                      "in-path", "3"], section
    assert any("hop 5 198.18.9.1" in line and "on-path" in line for line in section)
    page = html_report(store, plotly_js="")
    part = page.split("<h2>Where on the path</h2>", 1)[1].split("</section>", 1)[0]
    assert "198.18.1.1" in part and "in-path" in part and "a.example, b.example, c.example" in part
    assert "href='#where'" in page  # in the contents at the top
    assert EVIL not in page and "hop 3 &lt;img src=x onerror=window.pwned=1&gt;" in part
    doc = orjson.loads(orjson.dumps(json_report(store)))
    assert [(h["ttl"], h["measurement_count"], h["domain_count"]) for h in doc["hops"]] == [
        (2, 3, 3), (2, 1, 1), (3, 1, 1), (5, 1, 1)]
    assert doc["hops"][0]["ip"] == "198.18.1.1" and doc["hops"][2]["ip"] == EVIL  # unescaped, as stored


def test_a_store_with_no_hop_has_no_such_section(tmp_path: Path) -> None:
    m = samples.measurement("http.rst", url="http://a.example/", start="2026-05-20 10:00:00")
    (tmp_path / "in.jsonl").write_bytes(orjson.dumps(m))
    with Store(tmp_path / "s.duckdb") as s:
        pipeline.run([str(tmp_path / "in.jsonl")], s)
        assert hops.located(s) == [] and json_report(s)["hops"] == []
        assert "Where on the path" not in terminal_report(s)
        assert "Where on the path" not in html_report(s, plotly_js="")


def test_hop_fields_reads_what_probes_wrote() -> None:
    assert hops.hop_fields(None) is None and hops.hop_fields([]) is None and hops.hop_fields({}) is None
    assert hops.hop_fields([{"ttl": 1, "ip": "a"}, {"hop": 4, "router": "b", "asn": 3}])["label"] == "hop 4 b (AS3)"
    assert hops.hop_fields("x" * 500)["label"] == "x" * 200
    assert hops.hop_fields(12)["label"] == "12"
    odd = hops.hop_fields({"ttl": True, "ip": {"deep": 1}, "placement": "p" * 100})
    assert odd is not None and odd["ip"] == "{'deep': 1}" and len(odd["placement"]) == 40
    huge = hops.hop_fields({"ttl": 3, "ip": "1" * 10_000, "name": "n" * 10_000, "cc": "c" * 10_000})
    assert huge is not None and (len(huge["ip"]), len(huge["name"]), len(huge["cc"]), len(huge["label"])) == (
        200, 200, 200, 200)
    assert hops.hop_in(b'{"test_keys": {"x_hop": {"ttl": 2}}}')["ttl"] == 2  # type: ignore[index]
    assert hops.hop_in(b'{"test_keys": {"x_hop"') is None and hops.hop_in(b'{"x_hop": 1}') is None


def test_the_explorer_shows_the_same_rows_on_a_network_page(tmp_path: Path) -> None:
    from tamperscope.collector.config import Settings
    from tamperscope.collector.testing import running_app

    ms = [samples.measurement("http.rst", url="http://a.example/", probe_asn="AS64500", start="2026-05-20 10:00:00",
                              hop=BORDER),
          samples.measurement("dns.poison", url="https://h.example/", probe_asn="AS64500",
                              start="2026-05-18 10:00:00", hop={**BORDER, "placement": "on-path"}),
          samples.measurement("http.rst", url="https://e.example/", probe_asn="AS64500", start="2026-05-19 10:00:00",
                              hop={"ttl": 3, "ip": EVIL, "placement": EVIL})]
    with running_app(Settings(db_path=tmp_path / "e.duckdb", announce=False, submit_rate=0, read_rate=0)) as c:
        assert c.post("/api/v1/submit", content=b"\n".join(orjson.dumps(m) for m in ms)).status_code == 200
        page = c.get("/network/AS64500").text
        served = c.get("/api/v1/aggregation/hops").json()["result"]
    part = page.split('id="hops"', 1)[1].split("</section>", 1)[0]
    rows = part.split("<tr>")[2:]
    assert len(rows) == 3, part
    assert ">hop 2, after router 198.18.1.1 (AS64500 LABTELECOM)</td><td data-label=\"Placement\">in-path</td>" \
        in rows[0]
    assert ">hop 2, after router 198.18.1.1 (AS64500 LABTELECOM)</td><td data-label=\"Placement\">on-path</td>" \
        in rows[1]
    assert EVIL not in page and "&lt;img src=x" in rows[2]
    assert [(h["ttl"], h["placement"], h["measurement_count"]) for h in served] == [
        (2, "in-path", 1), (2, "on-path", 1), (3, EVIL, 1)]


def test_an_app_located_is_named_beside_the_sites(tmp_path: Path) -> None:
    # our tor nettest's keys: every directory authority's OR port dropped; an app's measurement names no site
    tor_keys = {"targets": {f"192.0.2.{i}:443": {
        "failure": "generic_timeout_error", "target_protocol": "or_port_dirauth",
        "summary": {"connect": {"failure": "generic_timeout_error"}}} for i in range(1, 4)}, "x_hop": BORDER}
    web = samples.measurement("http.rst", url="http://a.example/", probe_asn="AS64500", start="2026-05-20 10:00:00",
                              hop=BORDER)
    tor = {**web, "test_name": "tor", "input": None, "measurement_start_time": "2026-05-20 11:00:00",
           "test_keys": tor_keys}
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(orjson.dumps(m) for m in (web, tor)))
    with Store(tmp_path / "s.duckdb") as s:
        pipeline.run([str(tmp_path / "in.jsonl")], s)
        [row] = hops.located(s)
        assert (row["measurement_count"], row["mechanisms"], row["domains"], row["apps"]) == (
            2, "http.rst, tcp.drop", "a.example", "tor")
        part = html_report(s, plotly_js="").split("<h2>Where on the path</h2>", 1)[1].split("</section>", 1)[0]
        assert "data-label='apps and tools'>Tor</td>" in part, part
        text = terminal_report(s).split("\nWhere on the path", 1)[1].split("\n\n", 1)[0]
        assert "apps and tools" in text and text.rstrip().endswith("Tor"), text


def test_no_app_located_no_apps_column(store: Store) -> None:
    part = html_report(store, plotly_js="").split("<h2>Where on the path</h2>", 1)[1].split("</section>", 1)[0]
    assert "apps and tools" not in part and all(not r["apps"] for r in hops.located(store))
