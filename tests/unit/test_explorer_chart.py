"""The explorer's `/chart` (OONI Explorer's MAT): a selection counted by one or two axes, as bars stacked by result
and a table whose rows link their measurements; its JSON twin; refusals in words; hostile values drawn as typed.
Over a real collector and DuckDB store, fed through the submission endpoint."""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from tamperscope.analysis.categories import read_test_lists, store_lists
from tamperscope.analysis.store import Store
from tamperscope.collector import samples
from tamperscope.collector.config import Settings
from tamperscope.collector.testing import SyncClient, running_app

HOSTILE = 'http://evil.example/<a href="https://leak.example/">x</a><b>bold</b>&amp;'

# (url, country, network, day, scenario): what was measured
MEASURED = [
    ("https://www.facebook.com/", "TM", "AS20661", "2026-05-01", "dns.poison"),
    ("https://www.facebook.com/", "TM", "AS20661", "2026-05-01", "dns.poison"),
    ("http://meduza.io/", "TM", "AS20661", "2026-05-02", "http.blockpage"),
    ("https://bbc.com/", "TM", "AS20661", "2026-05-02", "ok"),
    ("https://www.facebook.com/", "RU", "AS12389", "2026-05-01", "ok"),
    ("https://meduza.io/", "RU", "AS12389", "2026-05-03", "dns.poison"),
    ("https://meduza.io/", "RU", "AS12389", "2026-05-03", "ok"),
    ("https://meduza.io/", "RU", "AS8359", "2026-05-10", "tcp.drop"),
    (HOSTILE, "IR", "AS197207", "2026-05-03", "tls.rst"),
]
LIST = ("url,category_code,category_description,date_added,source,notes\n"
        "https://www.facebook.com/,GRP,Social Networking,2014-04-15,citizenlab,\n"
        "https://meduza.io/,NEWS,News Media,2015-01-01,citizenlab,\n")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncClient]:
    tmp = tmp_path_factory.mktemp("chart")
    db = tmp / "a.duckdb"
    (tmp / "global.csv").write_text(LIST)
    with Store(db) as s:
        store_lists(s.con, read_test_lists([Path(tmp / "global.csv")]))
    body = b"\n".join(orjson.dumps(samples.measurement(scenario, url=url, probe_cc=cc, probe_asn=asn,
                                                       start=f"{day} 10:00:0{i}", report_id=f"r{i}"))
                      for i, (url, cc, asn, day, scenario) in enumerate(MEASURED))
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0)) as c:
        assert c.post("/api/v1/submit", content=body).json()["stored"] == len(MEASURED)
        c.run(c.collector.ingestor.settled)
        yield c


def _outcomes(rows: list[dict]) -> Counter[str]:
    return Counter({k: sum(r[f"{k}_count"] for r in rows) for k in ("anomaly", "confirmed", "failure", "ok")})


def test_by_day_it_counts_what_the_aggregation_counts_and_draws_one_stack_per_day(client: SyncClient) -> None:
    page = client.get("/chart.json").json()
    assert page["params"]["axis_x"] == "measurement_start_day" and page["grain"] == "day"
    days = [r["measurement_start_day"] for r in page["rows"]]
    assert days == ["2026-05-01", "2026-05-02", "2026-05-03", "2026-05-10"]
    assert [r["measurement_count"] for r in page["rows"]] == [3, 2, 3, 1]
    assert page["measurement_count"] == len(MEASURED)
    api = client.get("/api/v1/aggregation", params={"axis_x": "measurement_start_day"}).json()["result"]
    assert [{k: v for k, v in r.items() if k not in ("search", "anomalies_search")} for r in page["rows"]] == api
    spec = page["charts"]["counts"]
    assert {t["name"] for t in spec["data"]} == {"confirmed", "anomaly", "failure", "ok"}
    assert spec["layout"]["barmode"] == "stack" and spec["layout"]["xaxis"]["type"] == "date"
    drawn = {t["name"]: dict(zip(t["x"], t["y"])) for t in spec["data"]}
    by_day = {r["measurement_start_day"]: r for r in page["rows"]}
    for name in ("confirmed", "anomaly", "failure", "ok"):
        assert drawn[name] == {d: by_day[d][f"{name}_count"] for d in by_day}
    # each day links its measurements, and its anomalies, in the search; which finds as many as the row counts
    first = page["rows"][0]
    assert parse_qs(urlsplit(first["search"]).query) == {"since": ["2026-05-01"], "until": ["2026-05-02"]}
    found = client.get(first["search"].replace("/search", "/search.json", 1)).json()
    assert found["metadata"]["count"] == first["measurement_count"] == 3
    anomalous = client.get(first["anomalies_search"].replace("/search", "/search.json", 1)).json()
    assert anomalous["metadata"]["count"] == first["anomaly_count"] + first["confirmed_count"] == 2


def test_two_axes_draw_one_row_of_bars_per_value_and_link_each_cell(client: SyncClient) -> None:
    page = client.get("/chart.json", params={"axis_x": "probe_cc", "axis_y": "category_code",
                                              "test_name": "web_connectivity"}).json()
    cells = {(r["probe_cc"], r["category_code"]): r["measurement_count"] for r in page["rows"]}
    assert cells == {("IR", None): 1, ("RU", "GRP"): 1, ("RU", "NEWS"): 3, ("TM", "GRP"): 2, ("TM", "NEWS"): 1,
                     ("TM", None): 1}
    spec = page["charts"]["counts"]
    rows = [a["text"] for a in spec["layout"]["annotations"]]
    assert sorted(rows) == ["(none)", "GRP", "NEWS"]  # one row of bars each, labelled
    assert {t["yaxis"] for t in spec["data"]} == {"y", "y2", "y3"}
    assert sum(t["showlegend"] for t in spec["data"]) == 4  # one legend entry per result, not per row
    total = sum(sum(t["y"]) for t in spec["data"])
    assert total == sum(cells.values()) == len(MEASURED)
    tm_news = next(r for r in page["rows"] if (r["probe_cc"], r["category_code"]) == ("TM", "NEWS"))
    assert parse_qs(urlsplit(tm_news["search"]).query) == {"probe_cc": ["TM"], "category_code": ["NEWS"],
                                                            "test_name": ["web_connectivity"]}
    found = client.get(tm_news["search"].replace("/search", "/search.json", 1)).json()["results"]
    assert [(m["domain"], m["probe_cc"]) for m in found] == [("meduza.io", "TM")]
    # a row without a value cannot be searched for: no link, rather than one to everything
    assert next(r for r in page["rows"] if r["category_code"] is None)["search"] is None


def test_a_week_links_the_days_it_spans_within_the_selection(client: SyncClient) -> None:
    page = client.get("/chart.json", params={"time_grain": "week", "since": "2026-05-02"}).json()
    first = page["rows"][0]  # the week of Monday 2026-04-27, cut at the selection's start
    assert first["measurement_start_day"] == "2026-04-27"
    assert parse_qs(urlsplit(first["search"]).query) == {"since": ["2026-05-02"], "until": ["2026-05-04"]}
    found = client.get(first["search"].replace("/search", "/search.json", 1)).json()
    assert found["metadata"]["count"] == first["measurement_count"] == 5


def test_several_countries_are_counted_but_never_linked_as_one(client: SyncClient) -> None:
    page = client.get("/chart.json", params={"probe_cc": "RU,TM", "axis_x": "probe_asn"}).json()
    assert {r["probe_asn"]: r["measurement_count"] for r in page["rows"]} == {"AS12389": 3, "AS8359": 1,
                                                                               "AS20661": 4}
    assert all(r["search"] is None for r in page["rows"])


@pytest.mark.parametrize(("params", "words"), [
    ({"axis_x": "colour"}, "no axis 'colour'"),
    ({"axis_x": "probe_cc", "axis_y": "probe_cc"}, "two different axes"),
    ({"time_grain": "hour"}, "time_grain hour needs since and until at most 7 days apart"),
    ({"time_grain": "fortnight"}, "time_grain must be one of"),
    ({"probe_cc": "Russia"}, "probe_cc"),
    ({"since": "yesterday"}, "since must be a date"),
    ({"category_code": "<b>NEWS</b>"}, "category_code"),
])
def test_a_selection_the_aggregation_refuses_is_said_in_words(client: SyncClient, params: dict[str, str],
                                                              words: str) -> None:
    r = client.get("/chart.json", params=params)
    assert r.status_code == 400 and r.json()["error"] == "invalid_parameter" and words in r.json()["detail"]
    page = client.get("/chart", params=params)
    assert page.status_code == 400
    problem = re.search(r'<p class="problem">(.*?)</p>', page.text)
    assert problem and words in html.unescape(problem.group(1))
    assert 'id="chart-counts"' not in page.text and "<select name=\"axis_x\">" in page.text  # the form stays


def test_the_page_draws_hostile_values_as_typed_and_links_the_data(client: SyncClient) -> None:
    page = client.get("/chart", params={"axis_x": "input", "probe_cc": "IR"})
    assert page.status_code == 200
    assert "<b>bold</b>" not in page.text and '<a href="https://leak.example/"' not in page.text
    spec = orjson.loads(html.unescape(re.search(r'data-chart="([^"]*)"', page.text).group(1)))
    (x,) = {x for t in spec["data"] for x in t["x"]}
    # plotly draws a subset of HTML in labels and decodes entities: escaped once more, it shows the input as typed
    assert x == HOSTILE.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    table = re.search(r'<table id="chart-rows">(.*?)</table>', page.text, re.S).group(1)
    cell = re.search(r'<td data-label="Input">([^<]*)</td>', table).group(1)  # text only: no tag inside
    assert html.unescape(cell) == HOSTILE
    data = re.search(r'href="(/api/v1/aggregation\?[^"]*)">JSON', page.text).group(1)
    api = client.get(html.unescape(data)).json()
    assert api["dimension_count"] == 1 and [r["input"] for r in api["result"]] == [HOSTILE]
    csv = re.search(r'href="(/api/v1/aggregation\?[^"]*)">CSV', page.text).group(1)
    assert client.get(html.unescape(csv)).headers["content-type"].startswith("text/csv")


def test_the_chart_is_in_the_menu_and_each_area_page_links_its_own(client: SyncClient) -> None:
    assert '<a href="/chart">Charts</a>' in client.get("/").text
    assert '<a href="/chart?probe_cc=RU">Chart</a>' in client.get("/country/RU").text
    page = client.get("/chart.json", params={"probe_cc": "RU"}).json()
    assert page["measurement_count"] == 4


def test_by_the_hour_each_hour_links_its_own_measurements(client: SyncClient) -> None:
    page = client.get("/chart.json", params={"time_grain": "hour", "since": "2026-05-03", "until": "2026-05-04",
                                              "axis_y": "probe_cc"}).json()
    assert {(r["measurement_start_day"], r["probe_cc"]): r["measurement_count"] for r in page["rows"]} == {
        ("2026-05-03T10:00:00Z", "RU"): 2, ("2026-05-03T10:00:00Z", "IR"): 1}
    ru = next(r for r in page["rows"] if r["probe_cc"] == "RU")
    assert parse_qs(urlsplit(ru["search"]).query) == {"since": ["2026-05-03T10:00:00Z"],
                                                       "until": ["2026-05-03T11:00:00Z"], "probe_cc": ["RU"]}
    assert client.get(ru["search"].replace("/search", "/search.json", 1)).json()["metadata"]["count"] == 2
    spec = page["charts"]["counts"]
    assert spec["layout"]["xaxis"]["type"] == "date" and "dtick" not in spec["layout"]["xaxis"]
    assert {x for t in spec["data"] for x in t["x"]} == {"2026-05-03 10:00:00"}


def test_a_chart_costs_a_reader_what_an_aggregation_does() -> None:
    from tamperscope.collector.app import AGGREGATE_COST, read_cost

    assert read_cost("/chart") == read_cost("/chart.json") == read_cost("/api/v1/aggregation") == AGGREGATE_COST


def test_the_chart_draws_the_most_anomalous_values_and_says_so(client: SyncClient,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from tamperscope.explorer import pages

    monkeypatch.setattr(pages, "CHART_Y", 2)
    monkeypatch.setattr(pages, "CHART_X", 1)
    page = client.get("/chart.json", params={"axis_x": "domain", "axis_y": "probe_cc"}).json()
    assert page["notes"][:2] == [
        "The chart draws the 2 country values with the most anomalies of 3; the table and the data have them all.",
        "The chart draws the 1 site values with the most anomalies of 3; the table and the data have them all."]
    spec = page["charts"]["counts"]
    # TM (3 anomalies) on top, then RU (2); IR's one anomaly is left out; of their sites, the most anomalous only
    assert [a["text"] for a in spec["layout"]["annotations"]] == ["TM", "RU"]
    assert {x for t in spec["data"] for x in t["x"]} == {"meduza.io"}  # 3 anomalies there, 2 for facebook
    assert len(page["rows"]) == page["row_count"] == 6  # the table has them all


def test_a_bucket_at_the_end_of_time_gets_no_link_rather_than_an_error() -> None:
    """A measurement may say it was made in December 9999: its week, month or year ends past the last date."""
    from tamperscope.explorer.pages import _chart_search

    for grain, start in (("hour", "9999-12-31T23:00:00Z"), ("day", "9999-12-31"), ("week", "9999-12-27"),
                         ("month", "9999-12-01"), ("year", "9999-01-01")):
        assert _chart_search({"measurement_start_day": start}, {}, ["measurement_start_day"], grain, None,
                             None) is None, grain
    link = _chart_search({"measurement_start_day": "9999-11-01"}, {}, ["measurement_start_day"], "month", None, None)
    assert link is not None and parse_qs(urlsplit(link).query) == {"since": ["9999-11-01"], "until": ["9999-12-01"]}



def test_every_row_of_bars_orders_its_categories_by_their_rank_over_all_rows(tmp_path: Path) -> None:
    """By site, one row per country: TM (5 anomalies) comes first and never measured b.example, yet b.example (4
    anomalies, in RU) is the first category of every row, as its rank over all rows says (not TM's own order)."""
    measured = [("https://c.example/", "TM")] * 3 + [("https://d.example/", "TM")] * 2 + \
        [("https://b.example/", "RU")] * 4
    body = b"\n".join(orjson.dumps(samples.measurement("dns.poison", url=url, probe_cc=cc, probe_asn="AS1",
                                                       start=f"2026-05-01 10:00:0{i}", report_id=f"r{i}"))
                      for i, (url, cc) in enumerate(measured))
    with running_app(Settings(db_path=tmp_path / "a.duckdb", announce=False, submit_rate=0, read_rate=0)) as c:
        assert c.post("/api/v1/submit", content=body).json()["stored"] == len(measured)
        c.run(c.collector.ingestor.settled)
        spec = c.get("/chart.json", params={"axis_x": "domain", "axis_y": "probe_cc"}).json()["charts"]["counts"]
    assert [a["text"] for a in spec["layout"]["annotations"]] == ["TM", "RU"]
    assert spec["layout"]["xaxis"]["categoryorder"] == "array"
    assert spec["layout"]["xaxis"]["categoryarray"] == ["b.example", "c.example", "d.example"]
    tm = {t["name"]: t["x"] for t in spec["data"] if t["yaxis"] == "y2"}  # the top row's own bars
    assert tm["anomaly"] == ["c.example", "d.example"]
