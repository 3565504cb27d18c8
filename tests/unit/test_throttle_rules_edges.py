"""The edges of two rules a user reads the verdict of: the throttling rule exactly at its thresholds (a ratio of
exactly `RATIO`, a delay of exactly `MIN_DELAY_S`), and a blocking_rules measurement none of whose layers could
be determined."""

from __future__ import annotations

from tamperscope.analysis.verdicts import default_matcher, verdict_for
from tamperscope.model.throttle import MIN_DELAY_S, RATIO, judge
from tests.unit.test_blocking_rules import measurement
from tests.unit.test_throttle_rule import _measurement, _round


def test_a_target_exactly_four_times_slower_is_not_a_throttle() -> None:
    """250 kbit/s against 1000 kbit/s is a ratio of exactly 0.25: not *under* four times slower. A user would see
    a throttle reported (with a cap of 250 kbit/s) where the rule says there is none."""
    rounds = [_round(250.0, 1000.0)]  # 30,000 bytes: 0.96 s against 0.24 s, well over the delay threshold
    th = judge(rounds)
    assert th is not None
    assert th["ratio"] == RATIO and th["delay_s"] >= MIN_DELAY_S
    assert th["throttled"] is False and th["cap_kbps"] is None
    verdict = verdict_for(_measurement(rounds), None)
    assert (verdict.status, verdict.mechanism) == ("ok", "none")


def test_a_delay_of_exactly_the_threshold_is_a_throttle() -> None:
    """100 kbit/s against 500 kbit/s over 3,125 bytes (25 kbit) costs 0.25 s against 0.05 s: exactly 0.2 s more,
    which is enough. A user would see no throttle where a cap of 100 kbit/s held."""
    rounds = [_round(100.0, 500.0, size=3125)]
    th = judge(rounds)
    assert th is not None
    assert th["ratio"] < RATIO and th["delay_s"] == MIN_DELAY_S
    assert th["throttled"] is True and th["cap_kbps"] == 100.0
    verdict = verdict_for(_measurement(rounds), None)
    assert (verdict.status, verdict.mechanism) == ("anomaly", "throttle")


def test_a_blocking_rules_measurement_with_every_layer_undetermined_is_a_failure_of_no_confidence() -> None:
    """Without the control's answer no DNS probe can be judged, and no other layer was measured: nothing was
    determined. A user would see a failed measurement claiming 0.8 confidence in a verdict it never reached."""
    m = measurement()
    tk = m["test_keys"]
    tk["control"] = None
    for layer in ("tls", "http"):
        del tk["x_blocking_rules"]["layers"][layer]
    verdict = verdict_for(m, default_matcher())
    assert (verdict.status, verdict.blocking, verdict.accessible, verdict.mechanism) == (
        "failure", None, None, "none")
    assert verdict.confidence == 0.0
