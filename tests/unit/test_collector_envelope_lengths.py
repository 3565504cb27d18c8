"""The collector refuses an envelope string longer than any real one (a network's name, a report id, the
software's name and version: 1,024 characters; OONI's longest network names are under 100), as it refuses an
input over 8,192: a megabyte network name is a malformed measurement, and every page that lists it would carry
it. The rest of a bulk body is stored."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tamperscope.collector import samples
from tamperscope.collector.config import Settings
from tamperscope.collector.testing import SyncClient, running_app


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncClient]:
    db = tmp_path_factory.mktemp("env") / "e.duckdb"
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0)) as c:
        yield c


def _with(field: str, value: str, n: int) -> dict[str, Any]:
    m = samples.measurement(url=f"https://site{n}.example/")
    m[field] = value
    return m


@pytest.mark.parametrize("field", ["probe_network_name", "report_id", "software_name", "software_version",
                                   "test_version", "data_format_version"])
def test_a_string_over_1024_characters_is_refused(client: SyncClient, field: str) -> None:
    r = client.post("/report/r1", json={"format": "json", "content": _with(field, "x" * 1025, 1)})
    assert r.status_code == 422, r.text
    assert r.json() == {"error": "invalid_measurement", "detail": f"{field} is longer than 1024 characters"}
    ok = client.post("/report/r1", json={"format": "json", "content": _with(field, "x" * 1024, 2)})
    assert ok.status_code == 200, ok.text


def test_in_a_bulk_body_only_that_line_is_refused(client: SyncClient) -> None:
    lines = [_with("probe_network_name", "Net", 3), _with("probe_network_name", "N" * 1_000_000, 4),
             _with("probe_network_name", "Other Net", 5)]
    r = client.post("/api/v1/submit", content=b"\n".join(orjson.dumps(m) for m in lines))
    body = r.json()
    assert r.status_code == 200 and body["stored"] == 2 and body["refused"] == 1, body
    assert body["results"][1] == {"line": 2, "error": "invalid_measurement",
                                  "detail": "probe_network_name is longer than 1024 characters"}
