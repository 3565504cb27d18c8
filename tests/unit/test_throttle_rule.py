"""The throttling rule (`model.throttle.judge`) on recorded rounds, and the analysis re-applying it.

The rounds below are what the lab recorded: a loaded CI machine measuring ru-like, where abs.twimg.com is capped
at 150 kbit/s and example.com is not. The probe used to flag example.com too (its median "ratio" was 0.2454, from
fetches of 7 ms against 2 ms).
"""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest

from tamperscope.analysis.verdicts import verdict_for
from tamperscope.model.throttle import MIN_DELAY_S, RATIO, judge


def _fetch(kbps: Any, size: Any = 30000, seconds: float = 0.0) -> dict[str, Any]:
    return {"kbps": kbps, "bytes": size, "seconds": seconds, "failure": None, "status": 200}


def _round(target: Any, control: Any, same: Any = True, size: Any = 30000) -> dict[str, Any]:
    return {"target": _fetch(target, size), "control": _fetch(control, size), "same_resource": same}


# example.com under load (not throttled), then abs.twimg.com (throttled at ~138 kbit/s), as recorded
JITTER = [_round(8834.38, 134974.09), _round(33118.06, 119142.71), _round(113181.87, 138856.75)]
CAPPED = [_round(138.03, 92453.06), _round(138.05, 122389.22), _round(137.82, 154390.38)]


def _measurement(rounds: Any, flagged: bool | None = None) -> dict[str, Any]:
    tk: dict[str, Any] = {"rounds": rounds}
    if flagged is not None:
        tk["x_throttle"] = {"throttled": flagged, "innocent_name": "www.example.com"}
    return {"test_name": "throttling", "test_version": "0.1.0", "input": "https://example.com/blob?size=30000",
            "test_keys": tk}


def test_a_few_milliseconds_slower_is_jitter_not_a_throttle() -> None:
    th = judge(JITTER)
    assert th is not None
    assert th["ratio"] == 0.2454 and th["ratio"] < RATIO  # the rate rule alone said "throttled"
    assert th["delay_s"] == pytest.approx(240 / 33118.06 - 240 / 134974.09, abs=1e-4)  # ~5 ms
    assert th["throttled"] is False and th["cap_kbps"] is None


def test_a_cap_that_holds_for_the_transfer_is_a_throttle() -> None:
    th = judge(CAPPED)
    assert th is not None and th["throttled"] is True
    assert th["cap_kbps"] == 138.0 and th["target_kbps"] == 138.0 and th["control_kbps"] == 122389.2
    assert th["delay_s"] == pytest.approx(1.737, abs=0.01)


def test_the_delay_is_over_the_resource_the_control_got() -> None:
    """A target cut by its window got less than the resource: the delay is for the control's bytes, all of it."""
    rounds = [{"target": _fetch(320.0, 70_000), "control": _fetch(500_000.0, 4_000_000), "same_resource": True}]
    th = judge(rounds)
    assert th is not None and th["throttled"] is True
    assert th["delay_s"] == pytest.approx(32_000 / 320 - 32_000 / 500_000, abs=1e-3)  # 100 s


@pytest.mark.parametrize("delay,throttled", [(MIN_DELAY_S * 0.95, False), (MIN_DELAY_S * 1.05, True)])
def test_the_threshold_of_delay(delay: float, throttled: bool) -> None:
    control = 100_000.0
    kilobits = 240.0  # 30,000 bytes
    target = kilobits / (delay + kilobits / control)
    th = judge([_round(target, control)])
    assert th is not None and th["ratio"] < RATIO and th["throttled"] is throttled


def test_a_ratio_over_the_threshold_is_not_a_throttle_however_long() -> None:
    th = judge([_round(300.0, 1000.0)])  # 0.8 s against 0.24 s: slower, by a third, not four times
    assert th is not None and th["delay_s"] > MIN_DELAY_S and th["throttled"] is False


def test_rounds_of_different_resources_do_not_count() -> None:
    assert judge([_round(138.0, 120000.0, same=False)]) is None
    assert judge([_round(138.0, 120000.0, same="true")]) is None  # a string is no flag
    th = judge([_round(10.0, 120000.0, same=False), *JITTER])
    assert th is not None and th["throttled"] is False and th["target_kbps"] == 33118.1


@pytest.mark.parametrize("rounds", [
    None, "rounds", 5, {}, [], [None], ["x"], [[]], [{"target": None, "control": None, "same_resource": True}],
    [_round(None, 100.0)], [_round(100.0, None)], [_round("100", "1000")], [_round(True, 1000.0)],
    [_round(math.nan, 1000.0)], [_round(100.0, math.inf)], [_round(-5.0, 1000.0)], [_round(0, 1000.0)],
    [_round(100.0, 10**400)], [_round(10**400, 100.0)], [_round([1], {"a": 1})],
])
def test_hostile_rounds_give_no_rate(rounds: Any) -> None:
    assert judge(rounds) is None


@pytest.mark.parametrize("size", [None, "30000", -1, 0, math.nan, 10**400, True])
def test_a_hostile_size_gives_no_delay(size: Any) -> None:
    th = judge([{"target": _fetch(100.0), "control": _fetch(100_000.0, size), "same_resource": True}])
    assert th is not None and th["delay_s"] == 0.0 and th["throttled"] is False
    orjson.dumps(th)


def test_many_rounds_are_read_up_to_a_bound() -> None:
    th = judge(CAPPED * 400 + JITTER * 2000)  # the jitter rounds come after the bound: unread
    assert th is not None and th["throttled"] is True


# --- the analysis re-judges the rounds; without them it reads the flag ---------------------------------------

def test_the_analysis_re_judges_a_flag_set_on_jitter() -> None:
    """An earlier probe flagged the jitter rounds: the analysis, from the rounds, says ok."""
    v = verdict_for(_measurement(JITTER, flagged=True), None)
    assert (v.status, v.mechanism) == ("ok", "none") and "test_keys.rounds" in v.evidence


def test_the_analysis_finds_the_throttle_in_the_rounds() -> None:
    v = verdict_for(_measurement(CAPPED, flagged=True), None)
    assert (v.status, v.mechanism, v.blocking, v.accessible) == ("anomaly", "throttle", False, True)  # as the probe
    assert v.evidence == ("test_keys.rounds", "test_keys.x_throttle")
    assert verdict_for(_measurement(CAPPED, flagged=False), None).status == "anomaly"  # the rounds decide


@pytest.mark.parametrize("flagged,status", [(True, "anomaly"), (False, "ok"), (None, "failure")])
def test_without_usable_rounds_the_flag_is_read(flagged: bool | None, status: str) -> None:
    for rounds in (None, [], [_round(None, None)], "junk"):
        assert verdict_for(_measurement(rounds, flagged), None).status == status
