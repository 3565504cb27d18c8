"""Residual blocking: a censor that goes on dropping or resetting a client's packets to an address and port for a
while after it acted there. A second measurement at that endpoint meets the first one's block: the probe records it
(``x_residual``), the verdict says the measurement could not tell, and the engine measures it again later."""

from __future__ import annotations

import asyncio
import copy
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from tamperscope.model.measurement import ProbeInfo
from tamperscope.model.verdict import web_connectivity_verdict
from tamperscope.nettests.base import RESIDUAL_WINDOW, Context, Residual
from tamperscope.probe.engine import Engine, Progress, RunStats
from tamperscope.probe.privacy import Scrubber

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"


def _sample(name: str) -> dict[str, Any]:
    m: dict[str, Any] = orjson.loads((SAMPLES / name / "measurement.json").read_bytes())
    return m


def _held(m: dict[str, Any], *entries: tuple[str, str]) -> dict[str, Any]:
    m = copy.deepcopy(m)
    m["test_keys"]["x_residual"] = [{"endpoint": ep, "step": step, "seconds_after": 2.5} for ep, step in entries]
    return m


def test_another_measurements_trigger_is_met_and_ones_own_is_not() -> None:
    r = Residual()
    a, b = r.token(), r.token()
    assert a != b
    r.trigger("198.19.1.5", 80, a, at=100.0)
    assert r.met("198.19.1.5", 80, b, began=101.0, failed=106.0) == pytest.approx(6.0)  # the connect began after
    assert r.met("198.19.1.5", 80, b, began=99.0, failed=100.5) == pytest.approx(0.5)  # it came while the step ran
    assert r.met("198.19.1.5", 80, a, began=101.0, failed=106.0) is None  # its own trigger is no residue
    assert r.met("198.19.1.5", 443, b, began=101.0, failed=106.0) is None  # another port
    assert r.met("198.19.1.6", 80, b, began=101.0, failed=106.0) is None  # another address
    assert r.met("198.19.1.5", 80, b, began=90.0, failed=99.0) is None  # the step was over before it
    late = 100.0 + RESIDUAL_WINDOW + 1
    assert r.met("198.19.1.5", 80, b, began=late, failed=late + 5) is None  # long after: the hold is over
    for i in range(Residual.KEPT + 3):
        r.trigger("198.19.1.5", 80, a, at=200.0 + i)
    assert r.last("198.19.1.5", 80) == 200.0 + Residual.KEPT + 2
    assert r.last("198.19.1.7", 80) is None


@pytest.mark.parametrize(("sample", "endpoint", "step", "mechanism"), [
    ("tcpBlockingConnectTimeout", "93.184.216.34:443", "tcp_connect", "tcp.drop"),
    ("tlsBlockingConnectionResetWithConsistentDNS", "93.184.216.34:443", "tls_handshake", "tls.rst"),
    ("httpBlockingConnectionReset", "93.184.216.34:80", "http_request", "http.rst"),
])
def test_a_step_blocked_by_residual_blocking_is_a_failure_not_a_block(sample: str, endpoint: str, step: str,
                                                                      mechanism: str) -> None:
    m = _sample(sample)
    assert web_connectivity_verdict(m).mechanism == mechanism  # the sample as OONI made it
    v = web_connectivity_verdict(_held(m, (endpoint, step)))
    assert (v.status, v.mechanism, v.blocking, v.accessible) == ("failure", "none", None, None)
    assert v.evidence[-1] == "test_keys.x_residual" and len(v.evidence) > 1  # what failed stays in the evidence
    # what the residue does not cover keeps its verdict: another endpoint, another step, hostile shapes
    other = "93.184.216.35:443" if endpoint.endswith("443") else "93.184.216.35:80"
    wrong_step = "http_request" if step != "http_request" else "tcp_connect"
    for kept in (_held(m, (other, step)), _held(m, (endpoint, wrong_step))):
        assert web_connectivity_verdict(kept).mechanism == mechanism
    # a hold no probe waits for (10,000 s), or no number, hides nothing (a crafted record, or another tool's)
    for seconds in (10000, -1, "2", True, None, float("nan")):
        h = _held(m, (endpoint, step))
        h["test_keys"]["x_residual"][0]["seconds_after"] = seconds
        assert web_connectivity_verdict(h).mechanism == mechanism, seconds
    for hostile in ({"endpoint": endpoint}, [endpoint], "x", [None, 3, {"endpoint": [endpoint], "step": step}]):
        h = copy.deepcopy(m)
        h["test_keys"]["x_residual"] = hostile
        assert web_connectivity_verdict(h).mechanism == mechanism


def test_one_endpoint_held_and_another_blocked_too_is_still_a_block() -> None:
    m = _sample("tcpBlockingConnectTimeout")
    second = copy.deepcopy(m["test_keys"]["tcp_connect"][0])
    second["ip"] = "93.184.216.35"
    m["test_keys"]["tcp_connect"].append(second)
    m["test_keys"]["control"]["tcp_connect"]["93.184.216.35:443"] = {"status": True, "failure": None}
    assert web_connectivity_verdict(_held(m, ("93.184.216.34:443", "tcp_connect"))).mechanism == "tcp.drop"
    both = _held(m, ("93.184.216.34:443", "tcp_connect"), ("93.184.216.35:443", "tcp_connect"))
    assert web_connectivity_verdict(both).status == "failure"


class _Nettest:
    """A stand-in nettest for the engine's scheduling (a unit test; the lab test measures for real): the first
    input of each pair triggers the censor, the second meets its residue the first time and passes after."""

    NAME = "web_connectivity"
    VERSION = "0.5.28"
    NEEDS_INPUT = True
    HOLD = 0.3  # seconds

    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []
        self.triggers: list[float] = []

    async def run(self, input: str | None, ctx: Context) -> dict[str, Any]:
        assert input is not None
        self.calls.append((input, time.monotonic()))
        token = ctx.residual.token()
        if input.endswith("/slow-blocked"):  # blocked by its own name, a moment later
            await asyncio.sleep(0.2)
            self.triggers.append(time.monotonic())
            ctx.residual.trigger("198.19.1.5", 80, token)
            return {"x_status": "anomaly", "x_mechanism": "http.rst"}
        if input.endswith("/blocked"):
            self.triggers.append(time.monotonic())
            ctx.residual.trigger("198.19.1.5", 80, token)
            return {"x_status": "anomaly", "x_mechanism": "http.rst"}
        began = time.monotonic()
        seconds = ctx.residual.met("198.19.1.5", 80, token, began, began)
        if seconds is not None and seconds < self.HOLD:  # the fake censor's hold
            return {"x_status": "failure", "x_mechanism": "none",
                    "x_residual": [{"endpoint": "198.19.1.5:80", "step": "tcp_connect", "seconds_after": seconds}]}
        return {"x_status": "ok", "x_mechanism": "none", "accessible": True, "blocking": False}


def test_the_engine_measures_a_residual_failure_again_once_the_hold_is_over() -> None:
    nettest = _Nettest()
    probe = ProbeInfo()
    engine = Engine(nettest, Context(), probe, Scrubber([], interfaces=False), parallel=1,  # type: ignore[arg-type]
                    residual_wait=0.4)
    stats = RunStats(total=3)
    written: list[dict[str, Any]] = []
    engine.sink = written.append
    inputs = ["http://a.example/blocked", "http://b.example/", "http://c.example/"]
    asyncio.run(engine.run(inputs, None, stats, Progress(stats, enabled=False)))
    order = [i for i, _ in nettest.calls]
    assert order == [*inputs, "http://b.example/", "http://c.example/"]
    # the other inputs went on meanwhile; each again once, no sooner than the wait after the trigger
    first = nettest.calls[0][1]
    assert all(t - first >= 0.4 for _, t in nettest.calls[3:])
    assert [m["test_keys"]["x_status"] for m in written] == ["anomaly", "failure", "failure", "ok", "ok"]
    assert [m["annotations"].get("residual_retry") for m in written] == [None, None, None, "true", "true"]
    # a measurement made again is no more input: the progress line and --recheck's counts stay the run's inputs'
    assert stats.residual == ["http://b.example/", "http://c.example/"] and stats.total == 3 and stats.done == 3


def test_a_hold_renewed_while_an_input_waits_is_waited_for_too() -> None:
    """Another input blocked by its own name at the same address while the held one waits renews the hold: the
    one measured again goes no sooner than the wait after the latest trigger."""
    nettest = _Nettest()
    engine = Engine(nettest, Context(), ProbeInfo(), Scrubber([], interfaces=False),  # type: ignore[arg-type]
                    parallel=2, residual_wait=0.4)
    stats = RunStats(total=3)
    inputs = ["http://a.example/blocked", "http://b.example/", "http://d.example/slow-blocked"]
    asyncio.run(engine.run(inputs, None, stats, Progress(stats, enabled=False)))
    again = [t for i, t in nettest.calls[3:] if i == "http://b.example/"]
    assert len(again) == 1 and len(nettest.triggers) == 2
    assert again[0] - max(nettest.triggers) >= 0.4 - 0.01, (again, nettest.triggers)
    assert engine.ctx.residual.window == 0.4  # a hold lasts as long as the wait: an older trigger is over


def test_no_wait_means_no_second_measurement_and_a_deadline_is_kept() -> None:
    probe = ProbeInfo()
    for wait, deadline, calls, left in ((0.0, None, 2, []), (30.0, 1.0, 2, ["http://b.example/"])):
        nettest = _Nettest()
        engine = Engine(nettest, Context(), probe, Scrubber([], interfaces=False),  # type: ignore[arg-type]
                        parallel=2, residual_wait=wait)
        stats = RunStats(total=2)
        t = time.monotonic()
        asyncio.run(engine.run(["http://a.example/blocked", "http://b.example/"], None, stats,
                               Progress(stats, enabled=False),
                               deadline=None if deadline is None else time.monotonic() + deadline))
        assert len(nettest.calls) == calls and stats.residual_left == left
        assert time.monotonic() - t < 5  # past the deadline nothing waits for the hold


def test_the_option_is_checked_before_anything_runs(tmp_path: Path) -> None:
    from tamperscope.probe.command import UsageError, _residual_wait

    assert _residual_wait(SimpleNamespace(residual_wait=30.0)) == 30.0
    for bad in (-1.0, float("nan"), float("inf"), 3601.0):
        with pytest.raises(UsageError, match="--residual-wait"):
            _residual_wait(SimpleNamespace(residual_wait=bad))
