"""The search page's export links hold what the page lists (every page of it), and an aggregation's ``rows``
bounds the hops as it bounds every other aggregation."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import orjson
import pytest

from tamperscope.collector import samples
from tamperscope.collector.config import Settings
from tamperscope.collector.testing import SyncClient, running_app


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncClient]:
    db = tmp_path_factory.mktemp("search-exports") / "s.duckdb"
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0)) as c:
        r = c.post("/api/v1/submit", content=b"\n".join(orjson.dumps(m) for m in samples.corpus(60, seed="s19")))
        assert r.json()["stored"] == 60
        yield c


def _export_links(page: str) -> dict[str, str]:
    links = [html.unescape(h) for h in re.findall(r'href="(/api/v1/export/[^"]*)"', page)]
    return {link.split("?", 1)[0].rsplit("/", 1)[1]: link for link in links}


@pytest.mark.parametrize("params", [
    {"outcome": "anomaly"}, {"outcome": "ok"}, {"outcome": "failure"},
    {"outcome": "anomaly", "probe_cc": "RU", "limit": "5", "page": "2"},
    {"since": "2026-05-05", "until": "2026-05-10", "limit": "3"},
], ids=["anomaly", "ok", "failure", "anomaly-ru-page-2", "dates-limit-3"])
def test_the_search_page_exports_what_it_lists(client: SyncClient, params: dict[str, str]) -> None:
    listed = client.get("/search.json", params=params).json()["metadata"]["count"]
    page = client.get("/search", params=params)
    assert page.status_code == 200
    links = _export_links(page.text)
    assert set(links) == {"measurements.csv", "measurements.json", "raw.jsonl"}
    csv_rows = client.get(links["measurements.csv"]).text.strip().splitlines()[1:]
    json_rows = client.get(links["measurements.json"]).json()
    raw_rows = client.get(links["raw.jsonl"]).text.strip().splitlines()
    assert len(csv_rows) == len(json_rows) == len(raw_rows) == listed
    if params.get("outcome") == "anomaly":
        assert listed and all(row["anomaly"] for row in json_rows)


def test_rows_bounds_the_hops_too(client: SyncClient) -> None:
    every = client.get("/api/v1/aggregation/hops").json()["result"]
    assert len(every) > 2
    for fmt in ("json", "csv"):
        r = client.get("/api/v1/aggregation/hops", params={"rows": "2", "format": fmt})
        assert r.status_code == 200
        count = len(r.json()["result"]) if fmt == "json" else len(r.text.strip().splitlines()) - 1
        assert count == 2
