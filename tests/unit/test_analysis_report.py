"""Reports: terminal tables, and an HTML file that is self-contained, offline and inert to hostile content."""

from __future__ import annotations

import datetime as dt
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest

from tamperscope.analysis import pipeline
from tamperscope.analysis.report import MECHANISM_WORDS, _html_table, html_report, table, terminal_report
from tamperscope.analysis.store import Store
from tamperscope.model.verdict import MECHANISMS

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"
EVIL = '</script><script>window.pwned=1</script><img src=x onerror="window.pwned=2">'


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    tmp = tmp_path_factory.mktemp("report")
    lines = []
    for p in sorted(SAMPLES.iterdir()):
        lines.append((p / "measurement.json").read_bytes().replace(b"\n", b" "))
    # hostile strings where the report shows field data: input/domain, network name, signature
    m = json.loads((SAMPLES / "dnsBlockingNXDOMAIN" / "measurement.json").read_text())
    for i in range(2):
        evil = dict(m, report_id=f"evil{i}", input=f"http://evil{i}.example/{EVIL}", probe_network_name=EVIL,
                    test_keys=dict(m["test_keys"], x_signature=EVIL, x_equipment="Evil \u202e box"))
        lines.append(orjson.dumps(evil))
    (tmp / "in.jsonl").write_bytes(b"\n".join(lines))
    s = Store(tmp / "s.duckdb")
    pipeline.run([str(tmp / "in.jsonl")], s)
    return s


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self.scripts.append(dict(attrs))


def test_html_is_self_contained_and_offline(store: Store) -> None:
    page = html_report(store)
    parser = _Scripts()
    parser.feed(page)
    assert all("src" not in attrs for attrs in parser.scripts)  # no external script, no CDN
    assert not [a for t, a in parser.tags if t in ("link", "iframe", "img")]
    assert "cdn.plot.ly" not in page.split("</script>", 1)[1]  # nothing after the embedded library loads it
    assert "Plotly.newPlot" in page and len(page) > 1_000_000
    charts = [a for a in parser.scripts if a.get("type") == "application/json"]
    assert {c["data-chart"] for c in charts} == {"chart-timeline", "chart-heatmap", "chart-mechanisms"}


def test_chart_data_is_valid_json_with_the_counts(store: Store) -> None:
    page = html_report(store)
    blobs = re.findall(r"<script type='application/json' data-chart='(chart-\w+)'>(.*?)</script>", page, re.S)
    figures = {name: json.loads(blob) for name, blob in blobs}
    timeline = figures["chart-timeline"]["data"]
    assert sum(sum(trace["y"]) for trace in timeline) == 52
    heat = figures["chart-heatmap"]["data"][0]
    assert heat["type"] == "heatmap" and "www.example.com" in heat["y"]
    assert any(t["name"] == "dns.nxdomain" for t in figures["chart-mechanisms"]["data"])


def test_hostile_strings_are_inert(store: Store) -> None:
    page = html_report(store)
    assert "window.pwned" in page  # the data is there ...
    assert EVIL not in page        # ... but never as markup
    assert 'onerror="' not in page
    body = page.split("</script>", 1)[1]  # after the embedded plotly.js
    parser = _Scripts()
    parser.feed(body)
    assert not [a for t, a in parser.tags if t == "img"]
    for attrs in parser.scripts:
        assert attrs.get("type") in ("application/json", None)
    assert len(re.findall(r"<script>", body)) == 1  # only our drawing code


def test_an_anomaly_no_technique_explains_is_called_unexplained_not_none(store: Store) -> None:
    """A site under "Most blocked sites" with "none" as its main technique reads as not blocked: the HTML
    report (for readers who have not read the verdict rules) calls mechanism "none" "unexplained"."""
    from tamperscope.analysis import aggregates

    assert any(m["mechanism"] == "none" and m["measurement_count"] for m in aggregates.per_mechanism(store))
    page = html_report(store)
    cells = re.findall(r"<tr><td data-label='technique'>([^<]*)</td>"
                       r"<td(?: class='prose')? data-label='what it means'>([^<]*)</td>", page)
    assert ("unexplained", MECHANISM_WORDS["none"]) in cells  # the techniques table
    assert not [c for c in cells if c[0] == "none"]
    assert re.findall(r"<td[^>]*>unexplained</td>", page) and not re.findall(r"<td[^>]*>none</td>", page)
    blobs = dict(re.findall(r"<script type='application/json' data-chart='(chart-\w+)'>(.*?)</script>", page, re.S))
    names = {t["name"] for t in json.loads(blobs["chart-mechanisms"])["data"]}
    assert "unexplained" in names and "none" not in names
    assert any(line.startswith("none ") for line in terminal_report(store).splitlines())  # the data's word there


def test_signatures_are_listed(store: Store) -> None:
    page = html_report(store)
    # the override shown as its escape, as the explorer shows it: raw, it reversed the report's text after it
    assert "Equipment signatures seen" in page and "Evil \\u202e box" in page
    text = terminal_report(store)
    assert "Equipment signatures" in text
    assert "\u202e" not in text and "\x1b" not in text  # no control characters reach the terminal


def test_terminal_report(store: Store) -> None:
    text = terminal_report(store)
    assert text.splitlines()[0].startswith("52 measurements on 2024-02-12")
    for heading in ("Top blocked domains", "Top networks with interference", "Mechanisms"):
        assert heading in text
    assert "dns.nxdomain" in text


def test_empty_store(tmp_path: Path) -> None:
    s = Store(tmp_path / "empty.duckdb")
    assert "no measurements yet" in terminal_report(s)
    assert "no measurements yet" in html_report(s, plotly_js="/* stub */")
    s.close()


def test_every_mechanism_has_plain_words() -> None:
    assert set(MECHANISMS) == set(MECHANISM_WORDS)


def test_every_mechanism_has_a_colour_of_its_own() -> None:
    from tamperscope.analysis.report import MECHANISM_COLOURS, _mechanisms_figure

    assert set(MECHANISMS) == set(MECHANISM_COLOURS)
    assert len(set(MECHANISM_COLOURS.values())) == len(MECHANISM_COLOURS)
    rows = [{"probe_cc": cc, "mechanism": m, "measurement_count": 1}
            for cc in ("IR", "RU") for m in (*MECHANISMS, "future.one", "future.two")]
    figure = _mechanisms_figure(rows)
    assert figure is not None
    colours = [trace["marker"]["color"] for trace in figure["data"]]
    assert len(colours) == len(MECHANISMS) + 2 and len(set(colours)) == len(colours)


def test_table_alignment() -> None:
    rows: list[dict[str, Any]] = [{"a": "x", "n": 5}, {"a": "longer", "n": 12345}]
    lines = table(rows, [("a", "name"), ("n", "count")]).splitlines()
    assert lines[0].startswith("name") and lines[2].endswith("     5") and lines[3].endswith("12,345")
    # counts are written with thousands' separators, in the HTML report as in the terminal
    assert "<td class='num' data-label='count'>12,345</td>" in _html_table(rows, [("a", "name"), ("n", "count")])


def test_apps_and_tools_show_by_test(tmp_path: Path) -> None:
    """Tor, Psiphon and Telegram have no site: a report must still say they are blocked, and where."""
    lines = []
    for i in range(3):
        start = f"2024-03-01 10:0{i}:00"
        common = {"measurement_start_time": start, "probe_cc": "TM", "probe_asn": "AS20661", "input": None,
                  "report_id": f"r{i}"}
        lines.append({**common, "test_name": "tor", "test_keys": {"targets": {
            "a": {"target_protocol": "or_port_dirauth", "failure": "connection_reset"},
            "b": {"target_protocol": "or_port_dirauth", "failure": "connection_reset"}}}})
        lines.append({**common, "test_name": "psiphon", "test_keys": {"failure": None, "bootstrap_time": 3.5}})
        lines.append({**common, "test_name": "telegram", "test_keys": {
            "telegram_tcp_blocking": True, "telegram_http_blocking": False, "telegram_web_status": "ok",
            "tcp_connect": [{"ip": "149.154.167.51", "port": 443, "status": {"failure": "generic_timeout_error"}}]}})
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(orjson.dumps(m) for m in lines))
    s = Store(tmp_path / "s.duckdb")
    pipeline.run([str(tmp_path / "in.jsonl")], s)
    text = terminal_report(s)
    assert text.splitlines()[0] == ("9 measurements on 2024-03-01: 1 country, 1 network, "
                                    "0 domains.")
    section = text.split("Tests with interference")[1].split("\n\n")[0]
    rows = [line.split()[:4] for line in section.splitlines()[3:]]
    assert rows == [["telegram", "3", "3", "3"], ["tor", "3", "3", "3"]]  # psiphon worked: not listed
    assert "tcp.drop" in section and "tls.rst" in section and "Tor's directory authorities" in section
    page = html_report(s, plotly_js="/* stub */")
    assert "Apps, tools and sites, by test" in page and "the Telegram app and Telegram Web" in page
    assert "tested 0 sites and 3 tests" in page
    s.close()


def test_a_short_timeline_ticks_by_day_not_by_hour() -> None:
    from tamperscope.analysis.report import _timeline_figure

    def rows(days: list[str]) -> list[dict[str, Any]]:
        return [{"day": d, "measurement_count": 1, "anomaly_count": 0, "confirmed_count": 0, "failure_count": 0,
                 "ok_count": 1} for d in days]

    one = _timeline_figure(rows(["2024-03-01"]))["layout"]["xaxis"]
    assert (one["dtick"], one["tickformat"]) == (86_400_000, "%b %d\n%Y")  # plotly's ticks said "00:00:00 Mar 1"
    three = _timeline_figure(rows(["2024-03-01", "2024-03-03"]))["layout"]["xaxis"]
    assert three["dtick"] == 86_400_000
    week = _timeline_figure(rows(["2024-03-01", "2024-03-07"]))["layout"]["xaxis"]
    assert "dtick" not in week  # seven two-line labels overlap on a phone: plotly's own ticks
    months = _timeline_figure(rows(["2024-03-01", "2024-06-01"]))["layout"]["xaxis"]
    assert "dtick" not in months and "tickformat" not in months  # plotly picks months


# --------------------------------------------------------------------------- JSON


def test_json_report_holds_the_stores_numbers(store: Store) -> None:
    from tamperscope.analysis.aggregates import Filters
    from tamperscope.analysis.report import JSON_FORMAT, json_report

    doc = orjson.loads(orjson.dumps(json_report(store, limit=5)))  # JSON-ready: dates as strings
    con = store.con
    n, anomalous, confirmed = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE outcome IN ('anomaly', 'confirmed')), "
        "count(*) FILTER (WHERE outcome = 'confirmed') FROM verdicts").fetchone()
    # /2: network_count leaves AS0 out, and unknown_network says it is there (/1 counted it as a network)
    assert doc["format"] == JSON_FORMAT == "tamperscope-report/2" and doc["selection"] == {} and doc["limit"] == 5
    assert (doc["totals"]["measurement_count"], doc["totals"]["anomaly_count"],
            doc["totals"]["confirmed_count"]) == (n, anomalous, confirmed)
    assert len(doc["domains"]) == 5
    by_domain = dict(con.execute("SELECT domain, count(*) FILTER (WHERE outcome IN ('anomaly', 'confirmed')) "
                                 "FROM verdicts WHERE domain IS NOT NULL GROUP BY domain").fetchall())
    assert [d["anomaly_count"] for d in doc["domains"]] == sorted(by_domain.values(), reverse=True)[:5]
    assert all(d["anomaly_count"] == by_domain[d["domain"]] for d in doc["domains"])
    assert sum(c["measurement_count"] for c in doc["countries"]) == n
    assert sum(d["measurement_count"] for d in doc["timeline"]) == n
    assert sum(m["measurement_count"] for m in doc["mechanisms"]) == anomalous
    assert all(m["meaning"] == MECHANISM_WORDS[m["mechanism"]] for m in doc["mechanisms"])
    assert any(s["signature"] == EVIL for s in doc["signatures"])  # the store's value, as it is

    one = json_report(store, Filters(domain="www.example.com", since="2024-01-01"))
    assert one["selection"] == {"domain": "www.example.com", "since": "2024-01-01"}
    assert one["totals"]["measurement_count"] == con.execute(
        "SELECT count(*) FROM verdicts WHERE domain = 'www.example.com'").fetchone()[0] > 0
    assert [d["domain"] for d in one["domains"]] == ["www.example.com"]


def test_report_json_on_stdout_is_the_document_alone(store: Store, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from tamperscope.cli import main

    db = str(store.path)
    store.con.execute("CHECKPOINT")
    html = tmp_path / "r.html"
    assert main(["report", "--db", db, "--json", "-", "--html", str(html), "--cc", "it"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)  # nothing but the document: no tables, no "HTML report:" line
    assert doc["selection"] == {"probe_cc": "IT"} and doc["totals"]["measurement_count"] > 0
    assert "HTML report:" in err and html.is_file()

    target = tmp_path / "r.json"
    assert main(["report", "--db", db, "--json", str(target), "--limit", "3"]) == 0
    out, _ = capsys.readouterr()
    assert "Top blocked domains" in out and f"JSON report: {target}" in out
    assert len(json.loads(target.read_text())["domains"]) == 3
    assert not list(tmp_path.glob(".*.tmp"))

    assert main(["report", "--db", db, "--json", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert main(["report", "--db", db, "--json", str(target), "--html", str(target)]) == 2
    assert "both name" in capsys.readouterr().err


# --------------------------------------------------------------------------- changes


def _series(store: Store, rows: list[tuple[str, str, int, str]]) -> None:
    """Verdict rows (domain, network, minute of 2024-03-01, outcome), straight into the store."""
    import pyarrow as pa

    table = pa.table({
        "measurement_uid": [f"u{i:03d}" for i in range(len(rows))],
        "test_name": ["web_connectivity"] * len(rows),
        "input": [f"https://{d}/" for d, _, _, _ in rows], "domain": [d for d, _, _, _ in rows],
        "probe_cc": ["IR"] * len(rows), "probe_asn": [n for _, n, _, _ in rows],
        "day": [dt.date(2024, 3, 1)] * len(rows),
        "measurement_start_time": [dt.datetime(2024, 3, 1) + dt.timedelta(minutes=m) for _, _, m, _ in rows],
        "mechanism": ["dns.poison" if o != "ok" else "none" for _, _, _, o in rows],
        "status": [o if o != "confirmed" else "anomaly" for _, _, _, o in rows],
        "outcome": [o for _, _, _, o in rows]})
    cur = store.cursor()
    cur.register("_series", table)
    cur.execute("INSERT INTO verdicts BY NAME SELECT * FROM _series")
    cur.close()


def test_changes_find_when_sites_were_blocked_and_unblocked(tmp_path: Path) -> None:
    from tamperscope.analysis import aggregates

    s = Store(tmp_path / "s.duckdb")
    ok, bad, conf, fail = "ok", "anomaly", "confirmed", "failure"
    _series(s, [
        # a: fine twice, then blocked three times and still so
        ("a.example", "AS1", 1, ok), ("a.example", "AS1", 2, ok), ("a.example", "AS1", 3, bad),
        ("a.example", "AS1", 4, conf), ("a.example", "AS1", 5, bad),
        # b: a single anomaly between fine ones is no change
        ("b.example", "AS1", 1, ok), ("b.example", "AS1", 2, bad), ("b.example", "AS1", 3, ok),
        # c: blocked from the first measurement (no "blocked" change: nothing before), then unblocked
        ("c.example", "AS2", 1, bad), ("c.example", "AS2", 2, bad), ("c.example", "AS2", 3, ok),
        ("c.example", "AS2", 4, ok),
        # d: blocked, then unblocked; the failure in between says nothing and is skipped
        ("d.example", "AS3", 1, ok), ("d.example", "AS3", 2, bad), ("d.example", "AS3", 3, bad),
        ("d.example", "AS3", 4, ok), ("d.example", "AS3", 5, fail), ("d.example", "AS3", 6, ok),
        # the same site on another network is another series
        ("a.example", "AS9", 1, bad), ("a.example", "AS9", 2, ok), ("a.example", "AS9", 3, bad),
        # given out of order: the series is in time order
        ("e.example", "AS1", 9, bad), ("e.example", "AS1", 7, ok), ("e.example", "AS1", 8, bad),
        # no network known (AS0: anywhere): no series, though these would make a change on one network
        ("f.example", "AS0", 1, ok), ("f.example", "AS0", 2, bad), ("f.example", "AS0", 3, bad),
    ])
    got = [(c["change"], c["domain"], c["probe_asn"], c["since"][11:16], c["before"][11:16], c["latest"][11:16],
            c["measurements"], c["mechanism"], c["ongoing"]) for c in aggregates.changes(s)]
    assert got == [
        ("blocked", "e.example", "AS1", "00:08", "00:07", "00:09", 2, "dns.poison", True),
        ("unblocked", "d.example", "AS3", "00:04", "00:03", "00:06", 2, None, True),
        ("blocked", "a.example", "AS1", "00:03", "00:02", "00:05", 3, "dns.poison", True),
        ("unblocked", "c.example", "AS2", "00:03", "00:02", "00:04", 2, None, True),
        ("blocked", "d.example", "AS3", "00:02", "00:01", "00:03", 2, "dns.poison", False),
    ]
    assert [c["domain"] for c in aggregates.changes(s, aggregates.Filters(probe_asn="AS3"))] == ["d.example", "d.example"]
    assert len(aggregates.changes(s, limit=2)) == 2
    text = terminal_report(s)
    assert "Changes, latest first" in text and "unblocked" in text
    assert "What changed" in html_report(s)
    s.close()


class _Sections(HTMLParser):
    """The report's section ids and headings in document order, and the targets of its contents line."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.headings: list[str] = []
        self.links: list[str] = []
        self.date_cells: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.append(str(a["id"]))
        if tag == "a" and str(a.get("href", "")).startswith("#"):
            self.links.append(str(a["href"])[1:])
        if tag == "h2" or (tag == "td" and a.get("class") == "date"):
            self._in = tag
            (self.headings if tag == "h2" else self.date_cells).append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in is not None:
            target = self.headings if self._in == "h2" else self.date_cells
            target[-1] += data


def test_the_answers_come_first_and_the_contents_line_reaches_every_section(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.duckdb")
    _series(s, [("a.example", "AS1", 1, "ok"), ("a.example", "AS1", 2, "anomaly"), ("a.example", "AS1", 3, "anomaly")])
    parsed = _Sections()
    parsed.feed(html_report(s, plotly_js=""))
    s.close()
    h = parsed.headings
    # what is blocked and where, before the charts; the long list of changes last
    assert h.index("Most blocked sites") < h.index("Networks with the most interference") < h.index("Over time")
    assert h.index("Over time") < h.index("Techniques seen") < h.index("Equipment signatures seen")
    assert h[-1] == "What changed"
    # every section after "How to read this" is in the contents line, in order, and every link lands on one
    assert parsed.links == [i for i in parsed.ids if i in parsed.links]
    assert len(parsed.links) == len(h) - 1 and set(parsed.links) <= set(parsed.ids)
    assert parsed.links[0] == "sites" and parsed.links[-1] == "changes"
    # a change's times ("2024-03-01 00:02 UTC") stay on one line: two per change, in td.date
    assert [c for c in parsed.date_cells if c.endswith(" UTC")] == ["2024-03-01 00:02 UTC", "2024-03-01 00:01 UTC"]


def test_a_tools_server_is_no_site(tmp_path: Path) -> None:
    """A tool's test names one of its servers as its input (wireguard://198.19.3.40:51820): the app and tool tables
    show it; the sites' lists, counts, heatmap and changes do not, as the report says. Its input still finds it."""
    from tamperscope.analysis import aggregates

    blocked = json.loads((SAMPLES / "tlsBlockingConnectionResetWithConsistentDNS" / "measurement.json").read_text())
    wg = {**blocked, "test_name": "wireguard", "test_version": "0.1.0", "input": "wireguard://198.19.3.40:51820",
          "test_keys": {"x_handshake": {"failure": "generic_timeout_error", "initiations": 5}, "queries": []}}
    lines = [orjson.dumps({**m, "report_id": f"r{i}", "measurement_start_time": f"2024-03-01 00:0{i}:00"})
             for i, m in enumerate([blocked, blocked, wg, wg, {**wg, "test_keys": {}}])]
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(lines))
    s = Store(tmp_path / "s.duckdb")
    pipeline.run([str(tmp_path / "in.jsonl")], s)
    rows = s.con.execute("SELECT test_name, domain, mechanism FROM verdicts ORDER BY test_name").fetchall()
    assert {(t, d) for t, d, _ in rows} == {("web_connectivity", blocked["input"].split("/")[2]),
                                            ("wireguard", None)}, rows
    site = blocked["input"].split("/")[2]
    assert [d["domain"] for d in aggregates.per_domain(s)] == [site]
    assert aggregates.totals(s)["domain_count"] == 1
    assert {c["domain"] for c in aggregates.domain_network(s)} == {site}
    assert {a["test_name"] for a in aggregates.apps(s)} == {"wireguard"}  # where the tool shows
    found = aggregates.per_test(s, aggregates.Filters(input="wireguard://198.19.3.40:51820"))
    assert [(t["test_name"], t["measurement_count"]) for t in found] == [("wireguard", 3)]
    page = html_report(s, plotly_js="")
    s.close()
    sites = page[page.index("<section id='sites'>"):page.index("<section id='networks'>")]
    assert site in sites and "198.19.3.40" not in sites
    assert "tested 1 site and 2 tests" in page


def test_a_network_in_several_countries_is_shown_by_its_commonest_and_the_others_counted(tmp_path: Path) -> None:
    """AS0 (a network not known: Censored Planet's lines without an ASN table) gathers every country's measurements;
    the network's row names the country most of them do, and says how many more there are, in the reports and in
    the explorer; the same query gives the same country every time."""
    from tamperscope.analysis import aggregates
    from tamperscope.collector.config import Settings
    from tamperscope.collector.testing import running_app

    db = tmp_path / "s.duckdb"
    s = Store(db)
    rows = [("a.example", "AS0", cc) for cc in ("TM", "IR", "TM", "BY", "TM")]
    rows += [("b.example", "AS5", "RU"), ("b.example", "AS5", "BY")]  # a tie: the first alphabetically
    rows += [("c.example", "AS7", "IR")] * 2
    _series(s, [(domain, asn, i, "anomaly") for i, (domain, asn, _) in enumerate(rows)])
    cur = s.cursor()
    cur.executemany("UPDATE verdicts SET probe_cc = ? WHERE measurement_uid = ?",
                    [[cc, f"u{i:03d}"] for i, (_, _, cc) in enumerate(rows)])
    cur.close()
    found = {n["probe_asn"]: (n["probe_cc"], n["country_count"]) for n in aggregates.per_network(s)}
    assert found == {"AS0": ("TM", 3), "AS5": ("BY", 2), "AS7": ("IR", 1)}
    # one country's view holds that country's measurements only: there, AS0 is in one
    assert [(n["probe_cc"], n["country_count"], n["measurement_count"])
            for n in aggregates.per_network(s, aggregates.Filters(probe_cc="IR")) if n["probe_asn"] == "AS0"] == [
        ("IR", 1, 1)]
    text = terminal_report(s)
    # AS0 is no network: the headline counts the two others, and says how many measurements no network holds
    assert "4 countries, 2 networks (and networks not known for 5 measurements), 3 domains." in text, text
    assert re.search(r"^AS0\s+TM \+2\s+\(network not known\)\s", text, re.M), text
    assert re.search(r"^AS7\s+IR\s", text, re.M), text
    assert {(c["probe_asn"], c["probe_cc"], c["country_count"]) for c in aggregates.domain_network(s)} == {
        ("AS0", "TM", 3), ("AS5", "BY", 2), ("AS7", "IR", 1)}
    page = html_report(s)
    assert ">TM +2</td>" in page and '"AS0 (TM +2)"' in page and '"AS7 (IR)"' in page  # the table; the heatmap
    assert "9 measurements from 2 networks (and networks not known for 5 measurements) in 4 countries" in page
    s.close()
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0)) as client:
        home = client.get("/").text
        assert client.get("/index.json").json()["networks"][0]["country_count"] == 3
        network = client.get("/network/AS0").text
        single = client.get("/network/AS7").text
    # the network's own page says so too
    assert re.search(r'<a href="/country/TM">TM</a> <span class="muted" id="countries">\(its measurements name 3 '
                     r'countries, this one most often\)', network), network
    assert 'id="countries"' not in single
    assert 'id="unknown-network"' in network and 'id="unknown-network"' not in single  # AS0 is said to be none
    assert re.search(r'href="/network/AS0">AS0</a><br><span class="muted">network not known</span>', home), home
    assert re.search(r"4 countries and\s+2 networks \(and networks not known for 5 measurements\), of", home), home
    # a store of AS0 alone: no network is counted
    only = Store(tmp_path / "only.duckdb")
    _series(only, [("a.example", "AS0", 1, "anomaly")])
    assert "1 country, networks not known, 1 domain." in terminal_report(only)
    only.close()
    assert re.search(r'href="/network/AS0">AS0</a>.*?href="/country/TM">TM</a> <span class="muted"[^>]*>\+2</span>',
                     home, re.S), home


def test_an_apps_row_names_the_country_of_its_latest_measurement(tmp_path: Path) -> None:
    from tamperscope.analysis import aggregates

    s = Store(tmp_path / "s.duckdb")
    _series(s, [("telegram.example", "AS9", minute, outcome)
                for minute, outcome in ((1, "ok"), (9, "anomaly"), (5, "ok"))])
    cur = s.cursor()
    cur.executemany("UPDATE verdicts SET test_name = 'telegram', input = NULL, domain = NULL, probe_cc = ? "
                    "WHERE measurement_uid = ?", [["RU", "u000"], ["BY", "u001"], ["RU", "u002"]])
    cur.close()
    [row] = aggregates.apps(s)
    assert (row["test_name"], row["probe_cc"], row["last_outcome"]) == ("telegram", "BY", "anomaly")
    s.close()


def test_an_app_on_as0_is_on_a_network_not_known(tmp_path: Path) -> None:
    from tamperscope.analysis.report import apps_in_words

    s = Store(tmp_path / "s.duckdb")
    _series(s, [("telegram.example", "AS0", 1, "anomaly"), ("telegram.example", "AS9", 2, "anomaly")])
    cur = s.cursor()
    cur.execute("UPDATE verdicts SET test_name = 'telegram', input = NULL, domain = NULL")
    cur.execute("UPDATE verdicts SET probe_network_name = 'Nine Telecom' WHERE probe_asn = 'AS9'")
    cur.close()
    names = {r["probe_asn"]: r["probe_network_name"] for r in apps_in_words(s, None, 10)}
    assert names == {"AS0": "(network not known)", "AS9": "Nine Telecom"}
    assert "<td class='name' data-label='name'>(network not known)</td>" in html_report(s)
    s.close()


def test_a_count_of_networks_leaves_out_as0_and_says_when_some_are_not_known(tmp_path: Path) -> None:
    """AS0 is no network (measurements whose network nobody said, from anywhere): every count of networks leaves it
    out, and says "not known" where some of the measurements are on it, in the reports, their JSON and the explorer."""
    from tamperscope.analysis import aggregates
    from tamperscope.analysis.report import json_report
    from tamperscope.collector.config import Settings
    from tamperscope.collector.testing import running_app

    db = tmp_path / "s.duckdb"
    s = Store(db)
    _series(s, [("mixed.example", "AS0", 1, "anomaly"), ("mixed.example", "AS0", 2, "anomaly"),
                ("mixed.example", "AS5", 3, "anomaly"), ("mixed.example", "AS7", 4, "anomaly"),
                ("unknown.example", "AS0", 5, "anomaly"), ("named.example", "AS5", 6, "anomaly")])
    cur = s.cursor()
    cur.execute("UPDATE verdicts SET fingerprints = ['cl/isp_by_beltelecom_block'], signature = 'tcp/RA/ttl64/win0/ipid0'")
    cur.close()
    expected = {"mixed.example": (2, True), "unknown.example": (0, True), "named.example": (1, False)}
    assert {d["domain"]: (d["network_count"], d["unknown_network"]) for d in aggregates.per_domain(s)} == expected
    everywhere = (2, True)  # AS5 and AS7, and AS0
    for rows in (aggregates.per_test(s), aggregates.per_mechanism(s), aggregates.per_country(s),
                 aggregates.signatures(s), aggregates.blockpages(s)):
        assert [(r["network_count"], r["unknown_network"]) for r in rows] == [everywhere], rows
    t = aggregates.totals(s)
    assert (t["network_count"], t["unknown_network_count"]) == (2, 3)
    named = aggregates.Filters(probe_asn="AS5")
    assert [(r["network_count"], r["unknown_network"]) for r in aggregates.per_country(s, named)] == [(1, False)]

    text = terminal_report(s)
    assert re.search(r"^mixed\.example\s+4\s+4\s+0\s+100%\s+2 \+ not known\s+dns\.poison$", text, re.M), text
    assert re.search(r"^unknown\.example\s+1\s+1\s+0\s+100%\s+not known\s+dns\.poison$", text, re.M), text
    assert re.search(r"^named\.example\s+1\s+1\s+0\s+100%\s+1\s+dns\.poison$", text, re.M), text
    assert re.search(r"^dns\.poison\s+6\s+0\s+3\s+2 \+ not known\s", text, re.M), text  # the mechanisms
    assert "2 networks (and networks not known for 3 measurements)" in text
    page = html_report(s)
    assert "<td data-label='networks'>2 + not known</td>" in page, page
    assert "<td data-label='networks'>not known</td>" in page
    document = json_report(s)
    assert {d["domain"]: (d["network_count"], d["unknown_network"]) for d in document["domains"]} == expected
    s.close()
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0)) as client:
        home = client.get("/").text
        country = client.get("/country/IR").text
    cells = re.findall(r'<td class="num" data-label="Networks">([^<]*)</td>', home)
    assert "2 + not known" in cells and "1" in cells, cells  # the mechanisms' and a named site's
    assert re.search(r'href="/domain/unknown\.example".*?data-label="Networks">not known</td>', country, re.S)
