"""Edges of the reports: what a reader is told (counts, cuts, plurals) and how hostile measurement content is cut
and escaped in the terminal tables and the HTML report's tables and chart data."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest

from tamperscope.analysis import aggregates, hops, pipeline, unrecognised
from tamperscope.analysis.confidence import CONFIRM_MIN
from tamperscope.analysis.report import (
    EXCERPT_CHARS,
    _heatmap_figure,
    _html_table,
    _json_for_script,
    _mechanisms_figure,
    _named,
    _share,
    _when,
    clipped,
    hops_in_words,
    more_said,
    sources_in_words,
    table,
    terminal_report,
    unknown_blockpages_in_words,
)
from tamperscope.analysis.store import Store

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"
IDN = "xn--80ak6aa92e.com"  # аррӏе.com, all Cyrillic: not apple.com


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """A store with a site confirmed by repeats (an IDN name), and one anomaly left unconfirmed."""
    tmp = tmp_path_factory.mktemp("report_edges")
    nx = json.loads((SAMPLES / "dnsBlockingNXDOMAIN" / "measurement.json").read_text())
    tcp = json.loads((SAMPLES / "tcpBlockingConnectTimeout" / "measurement.json").read_text())
    lines = [orjson.dumps(dict(nx, report_id=f"idn{i}", input=f"http://{IDN}/")) for i in range(CONFIRM_MIN + 1)]
    lines.append(orjson.dumps(dict(tcp, report_id="tcp0")))
    (tmp / "in.jsonl").write_bytes(b"\n".join(lines))
    s = Store(tmp / "s.duckdb")
    pipeline.run([str(tmp / "in.jsonl")], s)
    return s


# --------------------------------------------------------------------------- terminal


def test_terminal_cell_cut_after_sixty_characters() -> None:
    """A value up to 60 characters is printed whole, a longer one cut to 59 and "…": a looser bound breaks this."""
    out = table([{"x": "a" * 60}, {"x": "b" * 61}], [("x", "x")]).splitlines()
    assert out[2] == "a" * 60
    assert out[3] == "b" * 59 + "…"


def test_terminal_outcomes_count_unconfirmed_anomalies_apart(store: Store) -> None:
    """The terminal's "anomaly (unconfirmed)" is anomalies less confirmed ones, not every anomaly again."""
    t = aggregates.totals(store)
    assert t["confirmed_count"] > 0 and t["anomaly_count"] > t["confirmed_count"]
    text = terminal_report(store)
    assert f"{t['anomaly_count'] - t['confirmed_count']:,} anomaly (unconfirmed)" in text
    assert f"{t['anomaly_count']:,} anomaly (unconfirmed)" not in text


def test_terminal_top_domains_show_an_idn_name_in_both_spellings(store: Store) -> None:
    """A blocked IDN site is shown in Unicode and in its ASCII form, so a homograph does not pass for apple.com."""
    text = terminal_report(store)
    assert f"аррӏе.com ({IDN})" in text.split("Top blocked domains", 1)[1]


def test_share_of_nothing_is_a_dash() -> None:
    """A share of zero measurements reads "-", not a made-up "0%"; others are whole percentages."""
    assert _share(0, 0) == "-"
    assert _share(1, 3) == "33%"


def test_named_keeps_a_network_name_given_for_as0() -> None:
    """AS0 is called "(network not known)" only where no name is given: a given name is not overwritten."""
    rows = _named([{"probe_asn": "AS0", "probe_network_name": "Given"}, {"probe_asn": "AS0"},
                   {"probe_asn": "AS1"}])
    assert [r.get("probe_network_name") for r in rows] == ["Given", "(network not known)", None]


def test_sources_say_how_many_versions_are_not_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A source with more versions than listed says "and N more"; its span is one day or "A to B"."""
    rows = [{"software": "ooniprobe-cli", "versions": ["3.1", None, "3.2"], "version_count": 5,
             "first_day": "2024-03-01", "last_day": "2024-03-04", "measurement_count": 7},
            {"software": "", "versions": ["1"], "version_count": 1, "first_day": "2024-03-02",
             "last_day": "2024-03-02", "measurement_count": 1}]
    monkeypatch.setattr(aggregates, "sources", lambda store, filters: rows)
    out = sources_in_words(None, None)
    assert out[0]["versions_text"] == "3.1, 3.2 and 3 more"
    assert out[0]["span"] == "2024-03-01 to 2024-03-04"
    assert out[0]["source"] == "OONI Probe (command line)"
    assert (out[1]["versions_text"], out[1]["span"], out[1]["source"]) == ("1", "2024-03-02", "(not named)")


def test_hops_show_three_sites_then_an_ellipsis(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hop's sites are cut to the first three, "…" only when there were more, and all of them counted."""
    rows = [{"domains": "a.example, b.example, c.example", "apps": ""},
            {"domains": "a.example, b.example, c.example, d.example", "apps": "telegram"},
            {"domains": "", "apps": ""}]
    monkeypatch.setattr(hops, "located", lambda store, filters: [dict(r) for r in rows])
    out = hops_in_words(None, None, 10)
    assert out[0]["domains"] == "a.example, b.example, c.example"
    assert out[1]["domains"] == "a.example, b.example, c.example, …"
    assert [r["domain_count"] for r in out] == [3, 4, 0]
    assert out[1]["app_names"] == "Telegram" and out[0]["app_names"] is None


def test_hops_respect_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """At most ``limit`` hops are given."""
    monkeypatch.setattr(hops, "located", lambda store, filters: [{"domains": "", "apps": ""} for _ in range(5)])
    assert len(hops_in_words(None, None, 2)) == 2


# --------------------------------------------------------------------------- cutting and escaping


def test_more_said_is_singular_for_one_character() -> None:
    """One character cut reads "1 more character", not "1 more characters"."""
    assert more_said(1) == "… (1 more character)"
    assert more_said(2) == "… (2 more characters)"
    assert clipped("abcd", 3) == "abc… (1 more character)"


def test_when_shows_a_minute_precise_timestamp() -> None:
    """A timestamp of exactly 16 characters (to the minute) is shown as a day and a time, not left raw."""
    assert _when("2024-03-01T14:05") == "2024-03-01 14:05 UTC"
    assert _when("2024-03-01T14:05:09Z") == "2024-03-01 14:05 UTC"
    assert _when("2024-03-01") == "2024-03-01"
    assert _when(None) == ""


def test_json_for_script_escapes_markup_and_ampersands() -> None:
    """Chart data in a <script> carries no raw <, > or &, and still reads back as the same data."""
    value = {"x": ["</script><b>&amp;</b>", "a & b"], 1: "<!--"}
    text = _json_for_script(value)
    assert not set("<>&") & set(text)
    assert orjson.loads(text) == {"x": ["</script><b>&amp;</b>", "a & b"], "1": "<!--"}


def test_html_table_escapes_markup_holding_a_long_word() -> None:
    """Markup that carries a long identifier-like word is escaped, not taken for one word to break."""
    evil = "<img src=x onerror=alert(1)>domain_and_subdomains_long"
    page = _html_table([{"title": evil, "rule": "domain_and_subdomains"}], [("title", "t"), ("rule", "r")])
    assert "<img" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;domain_and_subdomains_long" in page
    assert "domain_<wbr>and_<wbr>subdomains" in page  # a word alone still gets its breaks


def test_heatmap_labels_are_escaped_for_plotly() -> None:
    """A site's name on the heatmap is escaped (plotly draws <a href> in labels), and a cell is a percentage."""
    cells = [{"domain": "<a href='https://x.example'>x</a>", "probe_asn": "AS1", "probe_cc": "<b>TM</b>",
              "country_count": 1, "anomaly_count": 1, "measurement_count": 4, "confirmed_count": 0}]
    figure = _heatmap_figure(cells)
    assert figure is not None
    data = figure["data"][0]
    assert not any("<" in label for label in data["y"] + data["x"])
    assert "&lt;a href=" in data["y"][0]
    assert data["z"] == [[25.0]]


def test_mechanism_chart_names_are_escaped_for_plotly() -> None:
    """A mechanism name of a newer version (data, not ours) is escaped in the chart's legend and hover text."""
    rows = [{"probe_cc": "TM", "mechanism": "<a href='https://x.example'>m</a>", "measurement_count": 2},
            {"probe_cc": "TM", "mechanism": "none", "measurement_count": 1}]
    figure = _mechanisms_figure(rows)
    assert figure is not None
    names = [trace["name"] for trace in figure["data"]]
    assert not any("<a" in name or "<a" in trace["hovertemplate"] for name, trace in zip(names, figure["data"]))
    assert "unexplained" in names


def test_unknown_blockpage_excerpt_is_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    """A template's excerpt, the censor's words, is cut to EXCERPT_CHARS, its title made visible text."""
    when = dt.datetime(2024, 3, 1, 12, tzinfo=dt.timezone.utc)
    group = unrecognised.Group(key="k", title="<b>Blocked</b>", status=200, server="x", measurements=2,
                               domains=Counter({"a.example": 1, "b.example": 1}),
                               networks=Counter({("AS1", "TM"): 1, ("AS0", "TM"): 1}), countries=Counter({"TM": 2}),
                               mechanisms=Counter({"http.blockpage": 2}), first=when, last=when,
                               sample="w " * 1000)
    found = SimpleNamespace(groups=[group])
    monkeypatch.setattr(unrecognised, "from_store", lambda *a, **k: found)
    rows = unknown_blockpages_in_words(None, None, 10)
    assert len(rows[0]["excerpt"]) == EXCERPT_CHARS
    assert rows[0]["title"] == "Blocked"
    assert rows[0]["seen"] == "2024-03-01"
    assert (rows[0]["network_count"], rows[0]["unknown_network"]) == (1, True)
    assert rows[0]["pattern_found"] == "none found"



def test_the_reports_name_one_day_as_one_day_and_several_as_a_span(tmp_path: Path) -> None:
    """The first line of both reports: "on D" when every measurement is of one day, "from A to B" otherwise (it
    said "From 2026-12-08 to 2026-12-08" for the demo's one day)."""
    from tamperscope.analysis.report import html_report

    m = json.loads((SAMPLES / "dnsBlockingNXDOMAIN" / "measurement.json").read_text())
    day = str(m["measurement_start_time"])[:10]
    one = Store(tmp_path / "one.duckdb")
    (tmp_path / "one.jsonl").write_bytes(orjson.dumps(m))
    pipeline.run([str(tmp_path / "one.jsonl")], one)
    assert terminal_report(one).splitlines()[0].startswith(f"1 measurement on {day}: ")
    assert f"<p class='summary'>On {day}, 1 measurement from " in html_report(one)
    later = dict(m, measurement_start_time="2030-01-02 03:04:05", report_id="later")
    (tmp_path / "two.jsonl").write_bytes(orjson.dumps(m) + b"\n" + orjson.dumps(later))
    two = Store(tmp_path / "two.duckdb")
    pipeline.run([str(tmp_path / "two.jsonl")], two)
    assert terminal_report(two).splitlines()[0].startswith(f"2 measurements from {day} to 2030-01-02: ")
    assert f"<p class='summary'>From {day} to 2030-01-02, 2 measurements from " in html_report(two)
