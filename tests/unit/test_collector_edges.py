"""The collector at the edges of its limits and its bookkeeping: a rate limiter's bucket after a long idle, a bulk
submission holding the same measurement twice, and what an export costs of a client's read bucket."""

from __future__ import annotations

from pathlib import Path

import orjson

from tamperscope.collector import samples
from tamperscope.collector.app import EXPORT_COST
from tamperscope.collector.config import Settings
from tamperscope.collector.ratelimit import RateLimiter
from tamperscope.collector.testing import running_app, unlimited_app


class _Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_a_long_idle_fills_the_bucket_to_its_burst_and_no_further() -> None:
    """A client that was quiet for a long time may send `burst` requests at once, not everything the rate would
    have paid in the meantime. A user would see no limit at all after an idle hour: a client could save up."""
    clock = _Clock()
    limiter = RateLimiter(rate=1.0, burst=3.0, now=clock)
    assert limiter.take("198.51.100.7") == 0.0
    clock.t = 3600.0  # an hour later: 3,600 tokens' worth of refill, but the bucket holds 3
    assert [limiter.take("198.51.100.7") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("198.51.100.7")
    assert wait == 1.0 and RateLimiter.retry_after(wait) == "1"
    clock.t += 1.0  # one second pays one token back, and no more
    assert limiter.take("198.51.100.7") == 0.0 and limiter.take("198.51.100.7") > 0


def test_a_bulk_submission_holding_one_measurement_twice_stores_it_once(tmp_path: Path) -> None:
    """The same line twice in one /api/v1/submit: the second is the first's duplicate. A user would see it
    answered "stored" twice and journalled twice, counted as two measurements where there is one."""
    m = samples.measurement("dns.poison", start="2026-05-06 10:00:00", url="https://twice-in-one.example/")
    with unlimited_app(tmp_path / "d.duckdb") as c:
        before = c.collector.rawlog.size
        r = c.post("/api/v1/submit", content=orjson.dumps(m) + b"\n" + orjson.dumps(m) + b"\n")
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["stored"], body["duplicates"], body["refused"]) == (1, 1, 0)
        first, second = body["results"]
        assert (first["duplicate"], second["duplicate"]) == (False, True)
        assert first["measurement_uid"] == second["measurement_uid"]
        assert c.collector.rawlog.size - before == len(orjson.dumps(m) + b"\n")  # journalled once
        listed = c.get("/api/v1/measurements", params={"input": "https://twice-in-one.example/"}).json()
        assert listed["metadata"]["count"] == 1


def test_an_export_costs_a_big_share_of_the_read_bucket(tmp_path: Path) -> None:
    """An export streams everything that matches: it costs `EXPORT_COST` tokens, not one. With a burst of 30, the
    second export is refused while a plain request still passes. A user would see a client run export after export
    on a bucket meant to stop that."""
    settings = Settings(db_path=tmp_path / "e.duckdb", announce=False, submit_rate=0, read_rate=0.001,
                        read_burst=EXPORT_COST + 10)
    with running_app(settings) as c:
        assert c.get("/api/v1/export/measurements.jsonl").status_code == 200
        refused = c.get("/api/v1/export/measurements.csv")
        assert refused.status_code == 429 and refused.json()["error"] == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1
        assert c.get("/api/v1/health").status_code == 200  # the ten tokens left pay for plain requests
