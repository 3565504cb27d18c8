"""Verdicts re-derived from hostile or odd measurements: the regressions the seeded structure fuzzer
(test_verdict_fuzz.py) and hand-made sanity cases found.

* a QUIC record whose ``address`` is a list or whose ``failure`` is no string made the web_connectivity
  overlay raise (unhashable dict key; ``.lower()`` of a bool): an ``analysis_error`` for the measurement;
* an item of ``queries``/``tcp_connect``/``tls_handshakes``/``requests`` that is no object shifted every
  later record's pointer, so the evidence named the wrong record (or the junk item itself);
* a v0.4 measurement of a site the control could not resolve either was a DNS anomaly (confirmed after two
  of them), where OONI's v0.4 and our v0.5 rules both say it is no evidence of blocking;
* ``meek_fronted_requests_test``: an item of ``requests`` that is no object read as a transaction that got
  no response, an anomaly;
* ``body_is_truncated: "false"`` (a string) read as true, which turned the body's length and title
  comparison off.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tamperscope.analysis.verdicts import verdict_for

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"


def sample(name: str) -> dict[str, Any]:
    with (SAMPLES / name / "measurement.json").open(encoding="utf-8") as f:
        m: dict[str, Any] = json.load(f)
    return m


def resolve(measurement: Mapping[str, Any], pointer: str) -> Any:
    """The value an indexed pointer like ``test_keys.queries[2]`` names."""
    node: Any = measurement
    for name, index in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]", pointer):
        node = node[int(index)] if index else node[name]
    return node


# --------------------------------------------------------------------------- QUIC overlay


def with_quic(address: Any = "93.184.216.34:443", failure: Any = "generic_timeout_error") -> dict[str, Any]:
    """successWithHTTPS, and a QUIC handshake that timed out where the control's went through."""
    m = sample("successWithHTTPS")
    ip = m["test_keys"]["control"]["dns"]["addrs"][0]
    m["test_keys"]["control"]["quic_handshake"] = {f"{ip}:443": {"status": True, "failure": None}}
    m["test_keys"]["quic_handshakes"] = [{"address": f"{ip}:443" if address == "93.184.216.34:443" else address,
                                          "failure": failure, "server_name": "www.example.com", "t0": 0.1, "t": 5.1}]
    return m


def test_a_quic_timeout_where_the_control_got_through_is_still_quic_drop() -> None:
    v = verdict_for(with_quic())
    assert (v.mechanism, v.status, v.blocking, v.accessible) == ("quic.drop", "anomaly", False, True)
    assert "test_keys.quic_handshakes[0]" in v.evidence


@pytest.mark.parametrize("address, failure", [
    (["93.184.216.34:443"], "generic_timeout_error"),   # unhashable: no key of the control's map
    ({"ip": "93.184.216.34"}, "generic_timeout_error"),
    ("93.184.216.34:443", True),                          # no failure string: no timeout
    ("93.184.216.34:443", ["generic_timeout_error"]),
    ("93.184.216.34:443", {"failure": "generic_timeout_error"}),
    ("93.184.216.34:443", 7),
], ids=["address-list", "address-object", "failure-true", "failure-list", "failure-object", "failure-int"])
def test_a_quic_record_of_the_wrong_shape_is_read_as_absent(address: Any, failure: Any) -> None:
    v = verdict_for(with_quic(address, failure))
    assert (v.mechanism, v.status, v.blocking, v.accessible) == ("none", "ok", False, True)


# --------------------------------------------------------------------------- pointers


@pytest.mark.parametrize("name, field", [
    ("dnsBlockingBOGON", "queries"),
    ("httpBlockingConnectionReset", "requests"),
    ("tcpBlockingConnectTimeout", "tcp_connect"),
    ("tlsBlockingConnectionResetWithConsistentDNS", "tls_handshakes"),
])
@pytest.mark.parametrize("junk", [None, 7, "x", [], [{}]], ids=["null", "int", "str", "list", "nested"])
def test_evidence_names_the_record_whatever_junk_comes_before_it(name: str, field: str, junk: Any) -> None:
    m = sample(name)
    before = verdict_for(m)
    hostile = copy.deepcopy(m)
    for key in ("queries", "x_dns_duplicate_responses", "tcp_connect", "tls_handshakes", "requests"):
        records = hostile["test_keys"].get(key)
        if isinstance(records, list):
            hostile["test_keys"][key] = [copy.deepcopy(junk), *records]
    after = verdict_for(hostile)
    assert (after.blocking, after.mechanism, after.status) == (before.blocking, before.mechanism, before.status)
    shifted = [re.sub(r"^(test_keys\.[a-z_]+)\[(\d+)\]$", lambda g: f"{g[1]}[{int(g[2]) + 1}]", p)
               for p in before.evidence]
    assert list(after.evidence) == shifted
    cited = [p for p in after.evidence if p.startswith(f"test_keys.{field}[")]
    assert cited
    for pointer in cited:  # the very records the unchanged measurement cites
        assert resolve(hostile, pointer) == resolve(m, re.sub(r"\[(\d+)\]$", lambda g: f"[{int(g[1]) - 1}]", pointer))


# --------------------------------------------------------------------------- v0.4, site down


def v04(name: str) -> dict[str, Any]:
    m = sample(name)
    m["test_version"] = "0.4.3"
    return m


def test_v04_a_lookup_failure_the_control_shares_is_no_dns_blocking() -> None:
    """websiteDownNoAddrs: no address for the probe, none for the control (its fetch failed on DNS too).
    OONI's v0.4 says null/null (the control's HTTP failed); it was "dns"/dns.nxdomain, an anomaly."""
    m = v04("websiteDownNoAddrs")
    assert m["test_keys"]["control"]["dns"]["addrs"] == []
    v = verdict_for(m)
    assert v.status != "anomaly" and not isinstance(v.blocking, str)
    assert (v.blocking, v.accessible, v.mechanism) == (None, None, "none")


def test_v04_a_lookup_failure_where_the_control_resolved_is_still_dns() -> None:
    m = v04("websiteDownNoAddrs")
    control = m["test_keys"]["control"]
    control["dns"]["addrs"] = ["93.184.216.34"]
    control["http_request"] = {"body_length": 1256, "failure": None, "title": "Example Domain", "headers": {},
                               "status_code": 200}
    v = verdict_for(m)
    assert (v.blocking, v.accessible, v.status) == ("dns", False, "anomaly")


def test_v04_stored_verdict_keys_are_ignored() -> None:
    """The verdict is re-derived: whatever blocking the measurement carries changes nothing."""
    m = v04("websiteDownNoAddrs")
    derived = verdict_for(m)
    m["test_keys"].update({"blocking": "dns", "accessible": False, "dns_consistency": "inconsistent",
                           "x_mechanism": "dns.nxdomain", "x_status": "anomaly", "x_confidence": 1.0,
                           "body_length_match": False, "status_code_match": False})
    assert verdict_for(m) == derived


# --------------------------------------------------------------------------- meek_fronted_requests_test


OK = {"failure": None, "response": {"code": 200, "body": "", "headers": {}}}


@pytest.mark.parametrize("requests, expected", [
    ([None], ("failure", "none")),
    (["x", 7, []], ("failure", "none")),
    ([None, OK], ("ok", "none")),
    ([OK, {"a": 1}], ("anomaly", "none")),   # an object is a transaction: one without a response
    ([OK, "junk"], ("ok", "none")),
])
def test_meek_items_that_are_no_transaction_are_absent(requests: list[Any], expected: tuple[str, str]) -> None:
    v = verdict_for({"test_name": "meek_fronted_requests_test", "test_keys": {"requests": requests}})
    assert (v.status, v.mechanism) == expected


# --------------------------------------------------------------------------- body_is_truncated


@pytest.mark.parametrize("flag, truncated", [(True, True), (False, False), ("false", False), ("true", False),
                                             (1, False), (None, False), ([], False)],
                         ids=["true", "false", "string-false", "string-true", "one", "null", "list"])
def test_only_a_json_true_marks_a_body_truncated(flag: Any, truncated: bool) -> None:
    """A truncated body is not compared by length or title; a string or number where OONI writes a boolean is
    no flag (``bool("false")`` is true, and read so it silently turned the body comparison off)."""
    from tamperscope.model.consistency import http_diff, observe

    m = sample("httpDiffWithConsistentDNS")
    m["test_keys"]["requests"][0]["response"]["body_is_truncated"] = flag
    obs = observe(m)
    (exchange,) = obs.exchanges
    assert exchange.body_truncated is truncated
    assert obs.control is not None and obs.control.http is not None
    diff = http_diff(exchange, obs.control.http, (0, 5))
    assert (diff.body_proportion is None) is truncated
    assert (diff.title_match is None) is truncated


@pytest.mark.parametrize("http_request", [
    {}, {"status_code": "200"}, {"status_code": None}, {"status_code": []}, {"status_code": True},
    {"status_code": 10**30}, {"status_code": -200}, {"status_code": 0, "body_length": 1533},
], ids=["empty", "string", "null", "list", "bool", "huge", "negative", "zero"])
def test_a_control_success_without_an_http_status_is_no_blockpage(http_request: dict[str, Any]) -> None:
    """A broken or hostile helper answering a success with no usable status compared as status 0 and body 0:
    every page it was asked about became a blockpage (http-diff). There is nothing to compare with instead."""
    m = sample("successWithHTTP")
    assert verdict_for(m).mechanism == "none"  # the same measurement with the helper's real answer
    m["test_keys"]["control"]["http_request"] = http_request
    v = verdict_for(m)
    assert v.mechanism != "http.blockpage" and v.blocking != "http-diff" and v.status != "anomaly", v
