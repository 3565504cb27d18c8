"""The charts' axes, in the report and in the explorer: counts tick at whole numbers (plotly ticked one
measurement at 0.2, 0.4 ... 1) and a few days tick by day (plotly's own ticks said "00:00:00 Dec 4")."""

from __future__ import annotations

from typing import Any

import pytest

from tamperscope.analysis.report import _mechanisms_figure, _timeline_figure, count_axis, day_axis, stack_axis
from tamperscope.explorer import charts


def days(counts: dict[str, int]) -> list[dict[str, Any]]:
    return [{"day": d, "measurement_count": n, "anomaly_count": n // 2, "confirmed_count": 0, "failure_count": 0,
             "ok_count": n - n // 2} for d, n in counts.items()]


@pytest.mark.parametrize("largest,whole", [(0, True), (1, True), (6, True), (7, False), (1000, False)])
def test_small_counts_tick_at_every_unit(largest: int, whole: bool) -> None:
    axis = count_axis(largest)
    assert axis["rangemode"] == "tozero"
    assert ((axis.get("tick0"), axis.get("dtick")) == (0, 1)) is whole, axis


def test_stacked_bars_are_scaled_by_their_tallest_stack_not_their_tallest_part() -> None:
    assert stack_axis({"ok": [3, 1], "anomaly": [2, 0]})["dtick"] == 1          # stacks of 5 and 1
    assert "dtick" not in stack_axis({"ok": [3, 1], "anomaly": [4, 0]})         # a stack of 7
    assert "dtick" not in stack_axis({"ok": [1, 6], "anomaly": [0, 1]})         # the second stack, 7
    assert stack_axis({})["dtick"] == 1 and stack_axis({"ok": []})["dtick"] == 1


def test_a_few_days_tick_by_day_and_dates_may_be_dates() -> None:
    import datetime as dt

    assert day_axis(["2026-12-04"])["dtick"] == 86_400_000
    assert day_axis([dt.date(2026, 12, 4), dt.date(2026, 12, 6)])["tickformat"] == "%b %d\n%Y"
    assert "dtick" not in day_axis(["2026-12-01", "2026-12-04"]) and day_axis([]) == {"type": "date"}


def test_the_report_charts_count_in_whole_numbers() -> None:
    one = _timeline_figure(days({"2026-12-04": 1}))["layout"]
    assert one["yaxis"]["dtick"] == 1 and one["xaxis"]["dtick"] == 86_400_000
    many = _timeline_figure(days({"2026-12-01": 40, "2026-12-09": 3}))["layout"]
    assert "dtick" not in many["yaxis"] and "dtick" not in many["xaxis"]
    # stacked by country: the tallest bar is a country's total (3 + 4 = 7: plotly's own whole ticks)
    rows = [{"probe_cc": "TM", "mechanism": "dns.injection", "measurement_count": 3},
            {"probe_cc": "TM", "mechanism": "tls.rst", "measurement_count": 4},
            {"probe_cc": "RU", "mechanism": "tls.rst", "measurement_count": 1}]
    figure = _mechanisms_figure(rows)
    assert figure is not None and "dtick" not in figure["layout"]["yaxis"]
    small = _mechanisms_figure(rows[2:])
    assert small is not None and small["layout"]["yaxis"]["dtick"] == 1


def test_the_explorer_charts_count_in_whole_numbers() -> None:
    timeline = charts.timeline(days({"2026-12-04": 1}))
    assert timeline is not None
    assert timeline["layout"]["yaxis"]["dtick"] == 1 and timeline["layout"]["xaxis"]["dtick"] == 86_400_000
    mechanisms = charts.mechanisms([{"mechanism": "http.rst", "measurement_count": 1}])
    assert mechanisms is not None and mechanisms["layout"]["xaxis"]["dtick"] == 1
    busy = charts.mechanisms([{"mechanism": "http.rst", "measurement_count": 120}])
    assert busy is not None and "dtick" not in busy["layout"]["xaxis"]
