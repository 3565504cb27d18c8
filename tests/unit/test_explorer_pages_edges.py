"""Edges of what the explorer's pages show (`explorer/pages.py`): the search form's fields read into a query (its
bounds and its outcome choice), and the chart's buckets and links."""

from __future__ import annotations

import datetime as dt

import pytest

from tamperscope.analysis import aggregates
from tamperscope.collector.queries import QueryError
from tamperscope.collector.testing import SyncClient
from tamperscope.explorer import pages


def test_the_last_page_the_search_allows_is_served_and_the_next_is_refused() -> None:
    """Page `SEARCH_PAGES` is allowed (it is "at most"); one more is refused in words."""
    last = pages.search_query({"page": str(pages.SEARCH_PAGES), "limit": "10"})
    assert last.offset == (pages.SEARCH_PAGES - 1) * 10 and last.limit == 10
    with pytest.raises(QueryError, match="page must be at most 100,000"):
        pages.search_query({"page": str(pages.SEARCH_PAGES + 1)})


def test_the_outcome_ok_excludes_anomalies_and_failures() -> None:
    """"no interference found" is neither an anomaly nor a measurement that failed."""
    ok = pages.search_query({"outcome": "ok"})
    assert ok.anomaly is False and ok.failure is False and ok.confirmed is None
    failed = pages.search_query({"outcome": "failure"})
    assert failed.failure is True and failed.anomaly is None
    anything = pages.search_query({})
    assert anything.anomaly is None and anything.failure is None and anything.confirmed is None


@pytest.mark.parametrize(("start", "grain", "end"), [
    (dt.datetime(2026, 12, 1), "month", dt.datetime(2027, 1, 1)),
    (dt.datetime(2026, 11, 1), "month", dt.datetime(2026, 12, 1)),
    (dt.datetime(2026, 1, 1), "year", dt.datetime(2027, 1, 1)),
    (dt.datetime(2026, 12, 28), "week", dt.datetime(2027, 1, 4)),
])
def test_a_bucket_ends_where_the_next_one_starts(start: dt.datetime, grain: str, end: dt.datetime) -> None:
    """December's bucket ended on 1 January of the same year: its link searched a range that ends before it
    starts."""
    assert pages._bucket_end(start, grain) == end


def test_a_december_bucket_links_the_month_it_counts() -> None:
    """The chart's link for December 2026 by the month: since its first day, until the next year's."""
    axis = aggregates.TIME_AXIS
    row = {axis: "2026-12-01T00:00:00Z", "measurement_count": 1}
    assert pages._chart_search(row, {"probe_cc": "RU"}, [axis], "month", None, None) == \
        "/search?probe_cc=RU&since=2026-12-01&until=2027-01-01"


def test_the_chart_table_says_it_is_cut_only_when_it_is(three_sites: SyncClient,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Three days, three rows: a table of three rows shows them all and says nothing; of two, it says so."""
    monkeypatch.setattr(pages, "CHART_TABLE", 3)
    whole = three_sites.get("/chart.json").json()
    assert whole["row_count"] == len(whole["rows"]) == 3
    assert not [n for n in whole["notes"] if n.startswith("The table shows")]
    monkeypatch.setattr(pages, "CHART_TABLE", 2)
    cut = three_sites.get("/chart.json").json()
    assert cut["row_count"] == 3 and len(cut["rows"]) == 2
    assert "The table shows the first 2 rows of 3; the data have them all." in cut["notes"]


def test_the_place_a_line_names_is_cut_as_analyze_cuts_it() -> None:
    """A line's resolver place is its own text: a name of 10,000 characters is shown as its first 100."""
    from tamperscope.analysis import censoredplanet

    assert pages._added_place({censoredplanet.LOCATION: {"country_name": "x" * 10_000}}) == "x" * 100
    assert pages._added_place({censoredplanet.LOCATION: {"country_code": "RU"}}) == "RU"
    assert pages._added_place({censoredplanet.LOCATION: {"country_name": 7}}) is None
    assert pages._added_place({censoredplanet.LOCATION: "RU"}) is None


def test_a_chart_that_draws_every_value_says_nothing_about_leaving_some_out(three_sites: SyncClient) -> None:
    """Three sites by site, three rows by country: all drawn, so no note says the chart left values out."""
    page = three_sites.get("/chart.json", params={"axis_x": "domain", "axis_y": "probe_cc"}).json()
    assert page["problem"] is None and page["row_count"] == 3
    assert page["notes"] == []


def test_the_new_blockpages_data_links_name_only_the_filters_given(three_sites: SyncClient) -> None:
    """The JSON twin's ``data_params`` (what its data links and feed take) lists no empty filter."""
    page = three_sites.get("/new-blockpages.json", params={"probe_cc": "IT", "domain": " "}).json()
    assert page["problem"] is None
    assert page["data_params"] == {"probe_cc": "IT"}
    assert three_sites.get("/new-blockpages.json").json()["data_params"] == {}
