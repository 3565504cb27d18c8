"""Fuzzed bad submissions (hypothesis) get 4xx, never a 5xx; the rate limiter's arithmetic."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tamperscope.collector import samples
from tamperscope.collector.config import Settings
from tamperscope.collector.ratelimit import RateLimiter
from tamperscope.collector.schema import Limits
from tamperscope.collector.testing import SyncClient, running_app

RID = "20260101T000000Z_webconnectivity_IT_30722_n1_fuzz"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncClient]:
    db = tmp_path_factory.mktemp("fuzz") / "f.duckdb"
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0,
                              limits=Limits(measurement=256 * 1024, bulk=1024 * 1024))) as c:
        yield c


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)

BASE = samples.measurement("http.blockpage", url="http://fuzz.example/", start="2026-05-10 10:10:10")
FIELDS = ["test_name", "measurement_start_time", "probe_cc", "probe_asn", "test_keys", "input", "report_id",
          "annotations", "test_runtime", "probe_network_name", "data_format_version"]
TEST_KEYS = ["queries", "tcp_connect", "tls_handshakes", "requests", "control", "x_hop", "x_signature",
             "network_events", "x_dns_duplicate_responses", "x_throttle", "tampering"]


@st.composite
def broken_measurements(draw: st.DrawFn) -> dict[str, Any]:
    """A real measurement with one to three envelope fields replaced or removed (always invalid or odd)."""
    m = copy.deepcopy(BASE)
    for name in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True)):
        if draw(st.booleans()):
            m.pop(name, None)
        else:
            m[name] = draw(json_values)
    return m


@st.composite
def odd_test_keys(draw: st.DrawFn) -> dict[str, Any]:
    """A valid envelope whose archival records are garbage: analysis must refuse or cope, never crash."""
    m = copy.deepcopy(BASE)
    m["measurement_start_time"] = f"2026-06-{draw(st.integers(1, 28)):02d} 00:00:{draw(st.integers(0, 59)):02d}"
    for name in draw(st.lists(st.sampled_from(TEST_KEYS), min_size=1, max_size=4, unique=True)):
        m["test_keys"][name] = draw(json_values)
    return m


def _status(client: SyncClient, body: bytes) -> int:
    return int(client.post(f"/report/{RID}", content=body).status_code)


@settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300))
def test_random_bytes_are_4xx(client: SyncClient, body: bytes) -> None:
    assert 400 <= _status(client, body) < 500


@settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_values)
def test_random_json_is_4xx(client: SyncClient, value: Any) -> None:
    status = _status(client, orjson.dumps(value))
    assert 400 <= status < 500
    wrapped = _status(client, orjson.dumps({"format": "json", "content": value}))
    assert 400 <= wrapped < 500


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(m=broken_measurements())
def test_broken_envelopes_are_4xx_or_accepted_never_5xx(client: SyncClient, m: dict[str, Any]) -> None:
    status = _status(client, orjson.dumps({"format": "json", "content": m}))
    assert status == 200 or 400 <= status < 500, status
    if status == 200:  # only when every change kept the envelope valid (e.g. a string input)
        for name in ("test_name", "probe_cc", "probe_asn", "measurement_start_time", "test_keys"):
            assert name in m


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(m=odd_test_keys())
def test_garbage_records_never_5xx_and_the_pages_still_render(client: SyncClient, m: dict[str, Any]) -> None:
    r = client.post(f"/report/{RID}", content=orjson.dumps({"format": "json", "content": m}))
    assert r.status_code in (200, 422), r.text
    if r.status_code == 200:
        uid = r.json()["measurement_uid"]
        assert client.get(f"/m/{uid}").status_code == 200
        assert client.get(f"/m/{uid}.json").status_code == 200


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.binary(max_size=80) | json_values.map(orjson.dumps), min_size=1, max_size=8))
def test_bulk_garbage_is_4xx_per_line(client: SyncClient, lines: list[bytes]) -> None:
    body = b"\n".join(line.replace(b"\n", b" ") for line in lines)
    r = client.post("/api/v1/submit", content=body)
    assert 400 <= r.status_code < 500 or r.status_code == 200
    if r.status_code == 200:
        assert r.json()["stored"] + r.json()["duplicates"] >= 1


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=st.dictionaries(st.sampled_from(["probe_cc", "probe_asn", "since", "until", "limit", "offset",
                                               "anomaly", "order", "domain", "input", "report_id"]),
                              st.text(max_size=30), max_size=4))
def test_odd_query_parameters_are_never_5xx(client: SyncClient, params: dict[str, str]) -> None:
    for path in ("/api/v1/measurements", "/api/v1/aggregation/timeline", "/search", "/search.json"):
        assert client.get(path, params=params).status_code < 500, (path, params)


def test_token_bucket_refills_and_forgets() -> None:
    now = [100.0]
    rl = RateLimiter(rate=2, burst=4, now=lambda: now[0], max_clients=2)
    assert [rl.take("a") for _ in range(4)] == [0.0] * 4
    assert rl.take("a") == pytest.approx(0.5)
    now[0] += 1.0  # two tokens back
    assert rl.take("a") == 0.0 and rl.take("a") == 0.0 and rl.take("a") > 0
    assert rl.take("b", cost=10) == 0.0  # a bulk bigger than the burst passes on a full bucket
    assert rl.take("b") > 0
    rl.take("c")  # "a" is forgotten: bounded memory
    assert rl.take("a") == 0.0
    assert RateLimiter(rate=0, burst=1).take("x", 1000) == 0.0
    assert RateLimiter.retry_after(0.01) == "1" and RateLimiter.retry_after(2.2) == "3"
