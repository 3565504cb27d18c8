"""Citizen Lab's DNS fingerprints in the verdicts (QA: the 127 of them were never applied).

A lie that is a known block address names who told it: Iran's 10.10.34.35, OpenDNS's block page. It is matched
only where it may be known from: a state's or an ISP's in its own country, a product's anywhere; the generic lies
(127.0.0.1, 0.0.0.0) name no one and confirm nothing.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tamperscope.analysis.confidence import outcome
from tamperscope.analysis.verdicts import default_matcher, verdict_for

GENERATED = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"
OPENDNS_BLOCK = "146.112.61.106"  # cl/dns_prod_opendns_1


def _sample(name: str, cc: str) -> dict[str, Any]:
    m: dict[str, Any] = copy.deepcopy(json.loads((GENERATED / name / "measurement.json").read_text()))
    m["probe_cc"] = cc
    return m


def _answering(m: dict[str, Any], address: str) -> dict[str, Any]:
    """``m`` with the system resolver's answer for the input's host replaced by ``address``."""
    for q in m["test_keys"]["queries"]:
        if q["engine"] == "getaddrinfo":
            q["answers"] = [{"answer_type": "A", "ipv4": address, "ttl": None}]
    return m


@pytest.mark.parametrize(("cc", "expected"), [("IR", ("cl/dns_nat_ir_inject_2",)), ("IT", ())])
def test_a_states_block_address_is_its_fingerprint_in_its_own_country(cc: str, expected: tuple[str, ...]) -> None:
    v = verdict_for(_sample("dnsBlockingBOGON", cc), default_matcher())  # 10.10.34.35, a bogon too
    assert (v.blocking, v.mechanism) == ("dns", "dns.poison"), v
    assert v.fingerprints == expected
    assert v.confidence == (0.95 if expected else v.confidence)


def test_a_generic_lie_names_no_one() -> None:
    v = verdict_for(_sample("dnsHijackingToLocalhostWithHTTP", "BR"), default_matcher())  # 127.0.0.1
    assert v.mechanism == "dns.poison" and v.fingerprints == (), v


@pytest.mark.parametrize("cc", ["IT", "KE"])
def test_a_filtering_products_block_address_is_named_anywhere(cc: str) -> None:
    m = _answering(_sample("dnsBlockingBOGON", cc), OPENDNS_BLOCK)
    v = verdict_for(m, default_matcher())
    assert (v.mechanism, v.fingerprints) == ("dns.poison", ("cl/dns_prod_opendns_1",)), v
    assert v.confidence == 0.95
    assert outcome(v.status, v.fingerprints, same_anomaly=1) == "confirmed"  # by one measurement


def test_without_a_control_a_known_block_address_is_a_finding_of_its_own() -> None:
    m = _answering(_sample("successWithHTTP", "IT"), OPENDNS_BLOCK)
    m["test_keys"]["control"] = None
    m["test_keys"]["control_failure"] = "generic_timeout_error"
    v = verdict_for(m, default_matcher())
    assert (v.blocking, v.mechanism, v.fingerprints) == ("dns", "dns.poison", ("cl/dns_prod_opendns_1",)), v
    # a routable answer no fingerprint knows, without a control: nothing can be said (OONI: None/None)
    v = verdict_for(_answering(m, "93.184.216.99"), default_matcher())
    assert (v.mechanism, v.fingerprints) == ("none", ()), v


def test_an_ipv4_block_address_answered_mapped_in_ipv6_is_the_same_fingerprint() -> None:
    m = default_matcher()
    assert m.dns(["::ffff:10.10.34.35"], "IR") == m.dns(["10.10.34.35"], "IR") == ("cl/dns_nat_ir_inject_2",)
    assert m.dns([f"::FFFF:{OPENDNS_BLOCK}"], "IT") == ("cl/dns_prod_opendns_1",)
