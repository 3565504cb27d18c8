"""Censored Planet lines at the edges of their conversion: a Hyperquack probe that matched the template despite an
error, a measurer's own connect error however it is spelled, and the failure strings of Satellite trials with an
unusual rcode or with no answer at all."""

from __future__ import annotations

from typing import Any

import pytest

from tamperscope.analysis import censoredplanet
from tamperscope.analysis.verdicts import default_matcher, verdict_for
from tests.unit.test_censoredplanet import CONTROL, _before, _control, _line, _probe, _satellite, _trial

BIND = "0.0.0.0:0->198.18.9.7:80: bind: address already in use"


def _test_queries(trials: list[dict[str, Any]]) -> list[tuple[Any, Any]]:
    """(answers, failure) of the query records of the tested domain."""
    tk = censoredplanet.convert(_satellite(trials))["test_keys"]
    return [(q["answers"], q["failure"]) for q in tk["queries"] if "test" in q["tags"]]


def test_a_probe_that_matched_the_template_is_ok_whatever_error_it_also_wrote() -> None:
    """Hyperquack says the answer matched the template: the site was reached, the "dial tcp" error it also wrote
    notwithstanding. A user would see a failed measurement (a connect that never happened) instead of an ok one."""
    refused = "dial tcp 198.18.9.7:443: connect: connection refused"
    line = _line("https", [_control(1), _probe(2, error=refused, matches_template=True), _control(3)])
    m = censoredplanet.convert(line)
    connect = [r for r in m["test_keys"]["tcp_connect"] if "test" in r["tags"]]
    assert [r["status"]["success"] for r in connect] == [True]
    assert [r["status"]["failure"] for r in connect] == [None]
    verdict = verdict_for(m, default_matcher())
    assert (verdict.status, verdict.mechanism, verdict.confidence) == ("ok", "none", 0.85)


@pytest.mark.parametrize("error", [f"Dial tcp {BIND}", f"DIAL tcp {BIND}", f"  dial tcp {BIND}"])
def test_the_measurers_own_connect_error_is_a_failure_however_it_is_spelled(error: str) -> None:
    """A "dial" error is the measurer's connect failing (here its own bind), in any case and after blanks. A user
    would see an anomaly blamed on the network where the measurement simply failed."""
    m = censoredplanet.convert(_line("http", [_control(1), _probe(2, error=error), _control(4)]))
    connect = [r for r in m["test_keys"]["tcp_connect"] if "test" in r["tags"]]
    assert [(r["status"]["success"], r["status"]["failure"]) for r in connect] == [(False, "address_in_use")]
    verdict = verdict_for(m, default_matcher())
    assert (verdict.status, verdict.mechanism, verdict.confidence) == ("failure", "none", 0.0)


@pytest.mark.parametrize("rcode", [4, 1, 9, 23])
def test_an_unusual_rcode_is_a_misbehaving_server(rcode: int) -> None:
    """An rcode that is none of SERVFAIL, NXDOMAIN or REFUSED (NOTIMP, FORMERR...) still failed the query. A user
    would see the query record with no failure at all, as if it had simply been answered with nothing."""
    trials = [_before(), _trial(2, "example.org", rcode=rcode), _trial(3, CONTROL, {"198.18.0.10": []})]
    assert _test_queries(trials) == [(None, "dns_server_misbehaving")]


def test_a_satellite_query_without_an_answer_has_failed_with_no_answer() -> None:
    """rcode 0 with no address is an empty answer. A user would see a query record without a failure and without
    an answer, which says nothing of what went wrong."""
    trials = [_before(), _trial(2, "example.org", rcode=0), _trial(3, CONTROL, {"198.18.0.10": []})]
    assert _test_queries(trials) == [(None, "dns_no_answer")]
    answered = [_before(), _trial(2, "example.org", {"198.18.0.20": ["ip"]}), _trial(3, CONTROL, {"198.18.0.10": []})]
    assert _test_queries(answered) == [([{"answer_type": "A", "ipv4": "198.18.0.20"}], None)]
