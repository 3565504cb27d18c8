"""The store's aggregates at their edges: a change found after a single anomaly, the last day of a ``totals``
span, and the first instant of an aggregation slice."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tamperscope.analysis import aggregates
from tamperscope.analysis.store import Store
from tests.unit.test_analysis_report import _series

DAY = "2024-03-01"  # the day `_series` puts every row on, minutes after its midnight


def test_a_single_anomaly_between_fine_runs_makes_no_unblocked_change(tmp_path: Path) -> None:
    """ok ok BAD ok ok: one anomaly is no blocking, so the fine run after it is no unblocking either, even in a
    series that is blocked and unblocked later for real. A user would see an "unblocked" change at 00:04 for a
    site that was never blocked before it."""
    s = Store(tmp_path / "s.duckdb")
    ok, bad = "ok", "anomaly"
    _series(s, [("x.example", "AS1", minute, outcome) for minute, outcome in enumerate(
        [ok, ok, bad, ok, ok, bad, bad, ok, ok], start=1)]
        + [("y.example", "AS1", minute, outcome) for minute, outcome in enumerate([ok, ok, bad, ok, ok], start=1)])
    got = [(c["change"], c["domain"], c["since"][11:16], c["before"][11:16], c["measurements"])
           for c in aggregates.changes(s)]
    assert got == [("unblocked", "x.example", "00:08", "00:07", 2), ("blocked", "x.example", "00:06", "00:05", 2)]
    s.close()


def test_totals_until_a_day_count_that_days_measurements(tmp_path: Path) -> None:
    """``until`` is inclusive: the totals up to a day hold the measurements of that day. A user asking for the
    totals up to today would see today's measurements left out."""
    s = Store(tmp_path / "s.duckdb")
    _series(s, [("a.example", "AS1", 1, "ok"), ("a.example", "AS1", 2, "anomaly"), ("b.example", "AS2", 3, "ok")])
    upto = aggregates.totals(s, aggregates.Filters(until=DAY))
    assert (upto["measurement_count"], upto["anomaly_count"], upto["ok_count"]) == (3, 1, 2)
    assert (upto["first_day"], upto["last_day"]) == (DAY, DAY)
    assert aggregates.totals(s, aggregates.Filters(until=dt.date(2024, 3, 1)))["measurement_count"] == 3
    assert aggregates.totals(s, aggregates.Filters(until="2024-02-29"))["measurement_count"] == 0
    assert aggregates.totals(s, aggregates.Filters(since=DAY, until=DAY))["measurement_count"] == 3
    s.close()


def test_a_slice_starting_at_midnight_counts_a_measurement_made_at_midnight(tmp_path: Path) -> None:
    """A slice's ``since`` is inclusive (its ``until`` exclusive): a chart from 00:00 counts the measurement made
    at exactly 00:00. A user would see the first measurement of the span missing from the chart."""
    s = Store(tmp_path / "s.duckdb")
    _series(s, [("a.example", "AS1", 0, "anomaly"), ("a.example", "AS1", 1, "ok"), ("a.example", "AS1", 60, "ok")])
    midnight = dt.datetime(2024, 3, 1)
    rows = aggregates.counts_by(s, aggregates.Slice(since=midnight), [aggregates.TIME_AXIS], grain="hour")
    assert [(r[aggregates.TIME_AXIS], r["measurement_count"], r["anomaly_count"]) for r in rows] == [
        ("2024-03-01T00:00:00Z", 2, 1), ("2024-03-01T01:00:00Z", 1, 0)]
    one_hour = aggregates.Slice(since=midnight, until=midnight + dt.timedelta(hours=1))
    (total,) = aggregates.counts_by(s, one_hour)
    assert (total["measurement_count"], total["anomaly_count"], total["ok_count"]) == (2, 1, 1)
    s.close()
