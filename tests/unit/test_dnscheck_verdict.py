"""The dnscheck verdict (model/dnsverdict.py): its rules on a typical record, and no crash whatever
type any field of a hostile record has (a crash stores the measurement with a `failure` verdict and
an `analysis_error`; the verdict itself should simply not rely on the field)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from tamperscope.model.dnsverdict import dnscheck_verdict


def _record(**lookups: dict[str, Any]) -> dict[str, Any]:
    return {"test_name": "dnscheck", "input": "dot://1.1.1.1", "test_keys": {
        "control": {"dns": {"addrs": ["93.184.216.34"], "failure": None},
                    "ip_info": {"93.184.216.34": {"asn": 15133}, "93.184.216.35": {"asn": 15133}}},
        "x_lookups": {"dot": {"engine": "dot", "addrs": ["93.184.216.34"], "failure": None}, **lookups},
        "x_dns_duplicate_responses": [{"engine": "udp", "resolver_address": "8.8.8.8:53", "query_type": "A"}],
    }}


def test_the_rules_on_typical_records() -> None:
    ok = dnscheck_verdict(_record(udp={"engine": "udp", "resolver_address": "8.8.8.8:53",
                                       "addrs": ["93.184.216.35"]}))
    assert (ok.status, ok.mechanism) == ("ok", "none")  # another address of the same AS: a CDN
    forged = dnscheck_verdict(_record(udp={"engine": "udp", "resolver_address": "8.8.8.8:53", "addrs": ["10.0.0.1"]}))
    assert (forged.mechanism, forged.blocking) == ("dns.injection", "dns")  # with a duplicate response
    poisoned = dnscheck_verdict(_record(tcp={"engine": "tcp", "resolver_address": "9.9.9.9:53", "addrs": ["10.0.0.1"]}))
    assert poisoned.mechanism == "dns.poison"
    nx = dnscheck_verdict(_record(system={"engine": "system", "failure": "dns_nxdomain_error"}))
    assert nx.mechanism == "dns.nxdomain"
    silent = dict(_record(), test_keys={**_record()["test_keys"], "x_injection": {"answers": ["1.2.3.4"]}})
    assert dnscheck_verdict(silent).mechanism == "dns.injection"


def test_a_tcp_timeout_where_the_same_server_answered_over_udp_is_no_drop() -> None:
    """QA (delay_ms 1500): the public resolver answered over UDP, and its TCP lookup (two round trips) timed out:
    dns.drop where the censor did nothing. A timeout from a server no other transport got an answer from still
    is one."""
    udp = {"engine": "udp", "resolver_address": "198.19.0.8:53", "addrs": ["93.184.216.34"]}
    tcp = {"engine": "tcp", "resolver_address": "198.19.0.8:53", "failure": "generic_timeout_error"}
    v = dnscheck_verdict(_record(udp=udp, tcp=tcp))
    assert (v.status, v.mechanism) == ("ok", "none"), v
    elsewhere = {**tcp, "resolver_address": "198.19.0.9:53"}
    v = dnscheck_verdict(_record(udp=udp, tcp=elsewhere))
    assert (v.mechanism, v.evidence) == ("dns.drop", ("test_keys.x_lookups.tcp",)), v
    v = dnscheck_verdict(_record(udp={**udp, "resolver_address": "[2001:db8::8]:53"},
                                 tcp={**tcp, "resolver_address": "[2001:db8::8]:53"}))
    assert v.mechanism == "none", v
    # the system resolver's timeout is its own: the public one answering says nothing of it
    v = dnscheck_verdict(_record(udp=udp, system={"engine": "system", "failure": "dns_temporary_failure"}))
    assert v.mechanism == "dns.drop", v


def test_a_name_that_does_not_exist_anywhere_is_not_blocked() -> None:
    """QA: `dnscheck -i nx.example.com` under the none profile was a failure, the control and every transport
    agreeing on NXDOMAIN. A lookup answered with an address, or a control that resolved, says otherwise."""
    nx = {"failure": "dns_nxdomain_error", "addrs": []}
    m = {"test_name": "dnscheck", "test_keys": {
        "control": {"dns": {"failure": "dns_nxdomain_error", "addrs": []}},
        "x_lookups": {"system": {"engine": "system", **nx}, "udp": {"engine": "udp", **nx},
                      "dot": {"engine": "dot", **nx}, "doh": {"engine": "doh", "failure": "generic_timeout_error"}}}}
    v = dnscheck_verdict(m)
    assert (v.status, v.mechanism, v.blocking, v.accessible) == ("ok", "none", False, True), v
    lying = copy.deepcopy(m)
    lying["test_keys"]["x_lookups"]["udp"] = {"engine": "udp", "failure": None, "addrs": ["10.0.0.1"]}
    assert dnscheck_verdict(lying).status == "failure"  # an address where the control has none: cannot tell
    silent = copy.deepcopy(m)
    for lk in silent["test_keys"]["x_lookups"].values():
        lk.update(failure="generic_timeout_error")
    assert dnscheck_verdict(silent).status == "failure"  # nothing answered here


ODD = [None, True, 7, 1.5, "x", [], {}, [None], [[1]], [{"a": [1]}], {"k": [1]}]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*path, i))


def test_no_field_of_any_type_makes_it_raise() -> None:
    base = _record(udp={"engine": "udp", "resolver_address": "8.8.8.8:53", "addrs": ["10.0.0.1"]},
                   system={"engine": "system", "failure": "generic_timeout_error", "addrs": []})
    tried = 0
    for path in _paths(base["test_keys"]):
        for odd in ODD:
            m = copy.deepcopy(base)
            if not path:
                m["test_keys"] = odd
            else:
                node = m["test_keys"]
                for step in path[:-1]:
                    node = node[step]
                node[path[-1]] = odd
            try:
                verdict = dnscheck_verdict(m)
            except Exception as exc:  # noqa: BLE001 - the test is that nothing escapes
                pytest.fail(f"test_keys{list(path)} = {odd!r}: {type(exc).__name__}: {exc}")
            assert verdict.status in ("ok", "anomaly", "failure")
            tried += 1
    assert tried > 300
