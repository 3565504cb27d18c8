"""OONI's ``/api/v1/aggregation``: its parameters (several values each, axis_x, axis_y, time_grain, format) and its
shape, each count checked against the measurements themselves; bad parameters are a 400 in words."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from tamperscope.analysis.categories import TestList, store_lists
from tamperscope.analysis.store import Store
from tamperscope.collector import samples
from tamperscope.collector.app import AGGREGATE_COST, read_cost
from tamperscope.collector.config import Settings
from tamperscope.collector.testing import SyncClient, running_app
from tamperscope.model.inputs import ListEntry

N = 160
COUNTS = ("anomaly_count", "confirmed_count", "failure_count", "ok_count", "measurement_count")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncClient]:
    db = tmp_path_factory.mktemp("ooni-aggregation") / "a.duckdb"
    with Store(db) as s:  # two of the corpus's sites in a test list
        store_lists(s.con, [TestList("global.csv", "ZZ", [ListEntry("https://news.example.org/", "NEWS"),
                                                          ListEntry("https://chat.example.io/", "COMT")])])
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0)) as c:
        body = b"\n".join(orjson.dumps(m) for m in samples.corpus(N, seed="ooni-aggregation"))
        assert c.post("/api/v1/submit", content=body).json()["stored"] == N
        c.run(c.collector.ingestor.settled)
        yield c


@pytest.fixture(scope="module")
def rows(client: SyncClient) -> list[dict[str, Any]]:
    """Every measurement's verdict, as the export gives it: what the counts must add up to."""
    out = client.get("/api/v1/export/measurements.jsonl")
    assert out.status_code == 200
    found = [orjson.loads(line) for line in out.text.splitlines()]
    assert len(found) == N
    for r in found:
        r["when"] = dt.datetime.fromisoformat(r["measurement_start_time"].replace("Z", ""))
        r["outcome"] = ("failure" if r["failure"] else "confirmed" if r["confirmed"] else
                        "anomaly" if r["anomaly"] else "ok")
    return found


def _expected(rows: list[dict[str, Any]], key: Callable[[dict[str, Any]], Any],
              keep: Callable[[dict[str, Any]], bool] = lambda r: True) -> dict[Any, dict[str, int]]:
    out: dict[Any, Counter[str]] = {}
    for r in rows:
        if keep(r):
            c = out.setdefault(key(r), Counter())
            c[f"{r['outcome']}_count"] += 1
            c["measurement_count"] += 1
    return {k: {name: c[name] for name in COUNTS} for k, c in out.items()}


def _get(client: SyncClient, **params: str) -> dict[str, Any]:
    r = client.get("/api/v1/aggregation", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["v"] == 0
    return body


def test_no_axis_is_one_row_whose_counts_split_the_measurements(client: SyncClient,
                                                                   rows: list[dict[str, Any]]) -> None:
    body = _get(client)
    assert body["dimension_count"] == 0
    assert body["result"] == _expected(rows, lambda r: None)[None]
    # OONI's counts split them: a confirmed measurement is not also counted an anomaly
    assert sum(body["result"][k] for k in COUNTS[:4]) == N == body["result"]["measurement_count"]
    assert body["result"]["confirmed_count"] > 0 and body["result"]["anomaly_count"] > 0


def test_one_axis_and_several_values(client: SyncClient, rows: list[dict[str, Any]]) -> None:
    body = _get(client, axis_x="probe_cc")
    assert body["dimension_count"] == 1
    assert {r.pop("probe_cc"): r for r in body["result"]} == _expected(rows, lambda r: r["probe_cc"])
    ccs = sorted({r["probe_cc"] for r in rows})[:2]
    body = _get(client, axis_x="probe_asn", probe_cc=",".join(c.lower() for c in ccs))
    assert {r.pop("probe_asn"): r for r in body["result"]} == _expected(
        rows, lambda r: r["probe_asn"], lambda r: r["probe_cc"] in ccs)
    body = _get(client, axis_x="domain", test_name="web_connectivity", domain="news.example.org,chat.example.io")
    assert [r["domain"] for r in body["result"]] == ["chat.example.io", "news.example.org"]  # in axis order


def test_days_weeks_and_a_second_axis(client: SyncClient, rows: list[dict[str, Any]]) -> None:
    since, until = "2026-05-03", "2026-05-10"
    inside = (lambda r: dt.datetime(2026, 5, 3) <= r["when"] < dt.datetime(2026, 5, 10))
    body = _get(client, axis_x="measurement_start_day", axis_y="probe_cc", since=since, until=until,
                time_grain="day")
    assert body["dimension_count"] == 2
    got = {(r.pop("measurement_start_day"), r.pop("probe_cc")): r for r in body["result"]}
    assert got == _expected(rows, lambda r: (r["when"].date().isoformat(), r["probe_cc"]), inside)
    assert [k for k in got] == sorted(got)
    weeks = _get(client, axis_x="measurement_start_day", time_grain="week")["result"]
    monday = (lambda r: (r["when"].date() - dt.timedelta(days=r["when"].weekday())).isoformat())
    assert {r.pop("measurement_start_day"): r for r in weeks} == _expected(rows, monday)
    # auto: by the hour over 7 days at most, by the day over more (as OONI's)
    hours = _get(client, axis_x="measurement_start_day", since="2026-05-03", until="2026-05-05")["result"]
    assert all(r["measurement_start_day"].endswith(":00:00Z") for r in hours) and hours
    assert sum(r["measurement_count"] for r in hours) == sum(
        1 for r in rows if dt.datetime(2026, 5, 3) <= r["when"] < dt.datetime(2026, 5, 5))
    days = _get(client, axis_x="measurement_start_day")["result"]
    assert all(len(r["measurement_start_day"]) == 10 for r in days)


def test_categories_and_csv(client: SyncClient, rows: list[dict[str, Any]]) -> None:
    body = _get(client, axis_x="category_code")
    got = {r.pop("category_code"): r for r in body["result"]}
    codes = {"news.example.org": "NEWS", "chat.example.io": "COMT"}
    assert got == _expected(rows, lambda r: codes.get(r["domain"]))
    assert list(got)[-1] is None  # the sites in no list last
    news = _get(client, category_code="news")["result"]
    assert news == _expected(rows, lambda r: None, lambda r: r["domain"] == "news.example.org")[None]
    r = client.get("/api/v1/aggregation", params={"axis_x": "probe_cc", "format": "CSV", "download": "true"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(r.text)))
    assert {t["probe_cc"]: int(t["measurement_count"]) for t in table} == {
        k: v["measurement_count"] for k, v in _expected(rows, lambda r: r["probe_cc"]).items()}
    assert read_cost("/api/v1/aggregation") == AGGREGATE_COST  # it reads the whole store, as the others


@pytest.mark.parametrize(("params", "says"), [
    ({"axis_x": "probe_network_name"}, "no axis 'probe_network_name'"),
    ({"axis_x": "probe_cc", "axis_y": "probe_cc"}, "two different axes"),
    ({"axis_x": "measurement_start_day", "time_grain": "hour"}, "at most 7 days apart"),
    ({"axis_x": "measurement_start_day", "time_grain": "fortnight"}, "time_grain must be one of"),
    ({"probe_cc": "IT,Italy"}, "probe_cc: 'Italy' is not one"),
    ({"probe_asn": "AS12x"}, "probe_asn: 'AS12x' is not one"),
    ({"since": "yesterday"}, "since must be a date"),
    ({"category_code": "<b>"}, "category_code must be"),
])
def test_bad_parameters_are_a_400_in_words(client: SyncClient, params: dict[str, str], says: str) -> None:
    r = client.get("/api/v1/aggregation", params=params)
    assert r.status_code == 400 and r.json()["error"] == "invalid_parameter", r.text
    assert says in r.json()["detail"], r.json()


def test_more_rows_than_allowed_is_refused_not_cut(client: SyncClient) -> None:
    from tamperscope.analysis import aggregates

    reader = client.collector.reader
    full = aggregates.counts_by(reader, aggregates.Slice(), ["domain", "probe_asn"])
    assert len(full) > 3
    with pytest.raises(aggregates.SliceError, match="more than 3 rows: narrow the selection"):
        aggregates.counts_by(reader, aggregates.Slice(), ["domain", "probe_asn"], most=3)
    assert aggregates.counts_by(reader, aggregates.Slice(), ["domain", "probe_asn"], most=len(full)) == full
    with pytest.raises(aggregates.SliceError, match="time_grain must be one of"):  # it is written into the SQL
        aggregates.counts_by(reader, aggregates.Slice(), ["measurement_start_day"], "day'); DROP TABLE verdicts; --")
