"""Verdicts for OONI's circumvention tests: ``tor``, ``vanilla_tor``, ``torsf``, ``psiphon``,
``riseupvpn`` and ``stunreachability`` (ooni/spec ts-015, ts-016, ts-023, ts-025, ts-026, ts-030).

They carry no raw records rich enough to re-derive a verdict from, so each reads the flags and
failure strings its spec documents, decides as OONI's fastpath does where it scores the test, and
names the mechanism through the model's one classifier of failure strings (`failure_class`, by
way of `services.how`). Registered in `verdicts.VERDICTS` when `verdicts` is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tamperscope.analysis.verdicts import register
from tamperscope.model.services import anomaly as _anomaly
from tamperscope.model.services import failed as _failure
from tamperscope.model.services import ok as _ok
from tamperscope.model.services import request_failure as _request_failure
from tamperscope.model.services import test_keys as _tk
from tamperscope.model.stunverdict import stun_verdict
from tamperscope.model.torverdict import BOOTSTRAP_CONFIDENCE as _BOOTSTRAP_CONFIDENCE
from tamperscope.model.torverdict import anomaly_of as _failed
from tamperscope.model.torverdict import failure_string as _failure_string
from tamperscope.model.torverdict import tor_verdict, vanilla_tor_verdict
from tamperscope.model.verdict import BlockpageMatcher, Verdict
from tamperscope.model.vpnverdict import riseupvpn_verdict
from tamperscope.model.wgverdict import wireguard_verdict

# --------------------------------------------------------------------------- OONI's circumvention tests
#
# Whether a circumvention tool, or the servers it needs, can be reached from here (ooni/spec ts-015,
# ts-016, ts-023, ts-025, ts-026, ts-030). The anomaly rules are OONI fastpath's (``score_tor``,
# ``score_psiphon``...), so our status agrees with OONI's anomaly flag; differences are said in each
# docstring. A tool also fails when its servers are down or the network is slow, so a failed bootstrap
# with nothing more specific is weak evidence; a failure string saying reset or refused is stronger.

BOOTSTRAP_CONFIDENCE = _BOOTSTRAP_CONFIDENCE  # the tool did not come up, and nothing says why


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")


@register("tor")
def tor(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    """ts-023: the probe's own verdict function (`model.torverdict`), which our tor nettest writes into its
    measurements too."""
    return tor_verdict(measurement)


@register("vanilla_tor")
def vanilla_tor(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    """ts-016 (both the legacy and the 2022 Go layouts): ``success`` false is an anomaly, true ok.

    The mechanism comes from ``failure``/``error`` when it names one (a reset: tcp.rst, 0.8), else from
    ``tor_progress``, where the bootstrap stopped. ``success`` null or missing: ok if the log reached
    100%, else failure. OONI fastpath (``score_vanilla_tor``) reads only the legacy ``tor_log``: it
    calls every 2022 measurement ok (we read ``success``), and a legacy null ``success`` whose log
    stops short an anomaly (the spec says tor exited before the test completed: we say failure).
    """
    return vanilla_tor_verdict(measurement)


def _top_failure(tk: Mapping[str, Any]) -> Verdict | str:
    """A test's one top-level ``failure``: null is "ok", a string is returned for the caller to
    judge, and anything else (missing, another type) is a failure."""
    if "failure" in tk and tk["failure"] is None:
        return _ok(["test_keys.failure"])
    failure = _failure_string(tk.get("failure"))
    return _failure() if failure is None else failure


@register("torsf")
def torsf(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    """ts-030: tor over Snowflake; ``failure`` null: it bootstrapped, a string: it did not (OONI
    fastpath's ``score_torsf``). A missing or non-string ``failure`` is a failure (fastpath: ok)."""
    failure = _top_failure(_tk(measurement))
    if isinstance(failure, Verdict):
        return failure
    return _failed(failure, "tcp", BOOTSTRAP_CONFIDENCE, ["test_keys.failure"])


@register("psiphon")
def psiphon(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    """ts-015 v0.3 "Possible conclusions": ``failure`` a string is an anomaly (``bootstrap_time`` 0:
    Psiphon did not bootstrap; above 0: the fetch through it failed, its ``requests`` may say how);
    ``failure`` null with ``bootstrap_time`` above 0 is ok; null with 0 or no time "should not happen":
    failure (all as OONI fastpath's ``score_psiphon``). The legacy v0.1/v0.2 keys are read too, where
    fastpath fails the measurement (it has no ``bootstrap_time``)."""
    tk = _tk(measurement)
    if "bootstrapped_success" in tk:
        return _psiphon_legacy(tk)
    failure = tk.get("failure")
    booted = _positive(tk.get("bootstrap_time"))
    if failure is None:
        return _ok(["test_keys.failure", "test_keys.bootstrap_time"]) if booted else _failure()
    if not _failure_string(failure):
        return _failure()
    if booted:
        failure = _request_failure(tk) or failure
    return _failed(failure, "tcp", BOOTSTRAP_CONFIDENCE, ["test_keys.failure", "test_keys.bootstrap_time"])


def _psiphon_legacy(tk: Mapping[str, Any]) -> Verdict:
    """probe-legacy's psiphon: ``bootstrapped_success``, then ``request_success`` (no failure strings)."""
    booted, fetched = tk.get("bootstrapped_success"), tk.get("request_success")
    if booted is False and tk.get("psiphon_found") is not False:  # not found: nothing ran
        return _anomaly("http-failure", "none", BOOTSTRAP_CONFIDENCE, ["test_keys.bootstrapped_success"])
    if booted is True and fetched is False:
        return _failed(_request_failure(tk), "tcp", BOOTSTRAP_CONFIDENCE, ["test_keys.request_success"])
    if booted is True and fetched is True:
        return _ok(["test_keys.bootstrapped_success", "test_keys.request_success"])
    return _failure()


@register("riseupvpn")
def riseupvpn(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    """ts-026: the probe's own verdict function (`model.vpnverdict`), which our riseupvpn nettest writes into its
    measurements too."""
    return riseupvpn_verdict(measurement)


@register("wireguard")
def wireguard(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    """Our wireguard nettest's (OONI has no stable one): the probe's own verdict function (`model.wgverdict`)."""
    return wireguard_verdict(measurement)


@register("stunreachability")
@register("stun_reachability")  # the name in the spec's 2020 example
def stunreachability(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    """ts-025: the probe's own verdict function (`model.stunverdict`), which our stunreachability nettest
    writes into its measurements too."""
    return stun_verdict(measurement)
