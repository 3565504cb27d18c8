"""Edges of the pure verdict functions (model.dnsverdict, model.interception, model.portverdict, model.stunverdict,
model.freezeverdict) that the rule tests leave open: boundaries, confidences, tie-breaks, and hostile records that
must vouch for nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tamperscope.model import portverdict as P
from tamperscope.model import stunverdict as S
from tamperscope.model.dnsverdict import dnscheck_verdict
from tamperscope.model.freezeverdict import CONTROLLED, tcp_freeze_verdict
from tamperscope.model.interception import interception, issuer_name

# --------------------------------------------------------------------------- dnscheck


def _dns(control: dict[str, Any] | None = None, ip_info: dict[str, Any] | None = None, dot: bool = True,
         **lookups: dict[str, Any]) -> dict[str, Any]:
    ctl = {"dns": {"addrs": ["93.184.216.34"], "failure": None} if control is None else control,
           "ip_info": {"93.184.216.34": {"asn": 15133}, **(ip_info or {})}}
    dot_lookup = {"dot": {"engine": "dot", "addrs": ["93.184.216.34"], "failure": None}} if dot else {}
    return {"test_name": "dnscheck", "test_keys": {"control": ctl, "x_lookups": {**dot_lookup, **lookups},
                                                   "x_dns_duplicate_responses": []}}


@pytest.mark.parametrize("failure", ["dns_refused_error", "dns_server_failure", "generic_timeout_error",
                                     "dns_temporary_failure"])
def test_a_cleartext_refusal_or_timeout_while_the_control_resolves_is_a_drop(failure: str) -> None:
    """REFUSED (and every DROP_FAILURES string) from the cleartext resolver is dns.drop: dropping one would say ok."""
    v = dnscheck_verdict(_dns(udp={"engine": "udp", "resolver_address": "8.8.8.8:53", "addrs": [],
                                   "failure": failure}))
    assert (v.status, v.blocking, v.mechanism, v.confidence) == ("anomaly", "dns", "dns.drop", 0.6), v


def test_an_encrypted_lookup_that_failed_vouches_for_no_address() -> None:
    """A DoH record with a failure and addresses (hostile) is no encrypted answer: without a control, cannot tell."""
    m = _dns(dot=False, doh={"engine": "doh", "failure": "generic_timeout_error", "addrs": ["10.0.0.1"]},
             udp={"engine": "udp", "resolver_address": "8.8.8.8:53", "addrs": ["10.0.0.1"], "failure": None})
    m["test_keys"]["control"] = None
    v = dnscheck_verdict(m)
    assert (v.status, v.blocking) == ("failure", None), v


def test_a_failed_control_lookup_vouches_for_no_address() -> None:
    """The control's addresses count only when its lookup did not fail: else udp's answer is judged against them."""
    v = dnscheck_verdict(_dns(control={"failure": "generic_timeout_error", "addrs": ["93.184.216.34"]}, dot=False,
                              udp={"engine": "udp", "resolver_address": "8.8.8.8:53", "addrs": ["10.0.0.1"],
                                   "failure": None}))
    assert (v.status, v.blocking, v.mechanism) == ("failure", None, "none"), v


def test_a_cleartext_lookup_that_failed_does_not_say_its_server_answered() -> None:
    """Only a lookup without failure puts its server among those that answered: a timed-out UDP lookup that still
    lists addresses (hostile) must not excuse itself or the TCP timeout to the same server."""
    udp = {"engine": "udp", "resolver_address": "198.19.0.8:53", "addrs": ["93.184.216.34"],
           "failure": "generic_timeout_error"}
    tcp = {"engine": "tcp", "resolver_address": "198.19.0.8:53", "addrs": [], "failure": "generic_timeout_error"}
    v = dnscheck_verdict(_dns(udp=udp, tcp=tcp))
    assert (v.status, v.mechanism) == ("anomaly", "dns.drop"), v


def test_a_bogon_in_the_controls_as_is_still_poison() -> None:
    """Consistency by AS number never counts a bogon, even one the helper's ip_info places in the control's AS."""
    v = dnscheck_verdict(_dns(ip_info={"10.10.34.35": {"asn": 15133}},
                              udp={"engine": "udp", "resolver_address": "9.9.9.9:53", "addrs": ["10.10.34.35"],
                                   "failure": None}))
    assert (v.status, v.mechanism) == ("anomaly", "dns.poison"), v


def test_an_injection_is_surer_than_a_poisoning() -> None:
    """A duplicate response to the same query makes the lie an injection at 0.9; without one, poison at 0.8."""
    lie = {"engine": "udp", "resolver_address": "8.8.8.8:53", "addrs": ["10.0.0.1"], "failure": None}
    m = _dns(udp=lie)
    v = dnscheck_verdict(m)
    assert (v.mechanism, v.confidence) == ("dns.poison", 0.8), v
    m["test_keys"]["x_dns_duplicate_responses"] = [{"engine": "udp", "resolver_address": "8.8.8.8:53",
                                                     "query_type": "A"}]
    v = dnscheck_verdict(m)
    assert (v.mechanism, v.confidence) == ("dns.injection", 0.9), v


def test_an_answer_set_sharing_one_address_with_the_control_is_consistent() -> None:
    """One address the control knows makes the answer consistent: not every address has to be vouched for."""
    v = dnscheck_verdict(_dns(udp={"engine": "udp", "resolver_address": "8.8.8.8:53",
                                   "addrs": ["93.184.216.34", "203.0.113.9"], "failure": None}))
    assert (v.status, v.mechanism, v.blocking) == ("ok", "none", False), v


# --------------------------------------------------------------------------- interception


def _tls(failure: str = "ssl_unknown_authority", ours: Any = "key-we-saw",
         control: dict[str, Any] | None = None) -> dict[str, Any]:
    addr = "198.19.0.5:443"
    ctrl = {addr: {"status": True, "failure": None, "x_spki_sha256": "real-key", "x_issuer": "O=Real CA"}} \
        if control is None else control
    return {"test_keys": {"tls_handshakes": [{"address": addr, "server_name": "example.org", "failure": failure,
                                              "x_spki_sha256": ours, "x_issuer": "O=Box"}],
                          "control": {"tls_handshake": ctrl}}}


def test_a_certificate_for_another_name_is_interception_too() -> None:
    """ssl_invalid_hostname is one of the certificate failures an interceptor causes."""
    x = interception(_tls(failure="ssl_invalid_hostname"))
    assert x is not None and x["intercepted"] is True and x["issuer"] == "O=Box"


def test_a_control_that_succeeded_without_naming_its_key_still_vouches() -> None:
    """The control verified the name; a key of ours it did not report is no match: intercepted."""
    x = interception(_tls(control={"198.19.0.5:443": {"status": True, "failure": None}}))
    assert x is not None and x["intercepted"] is True and x["control_spki_sha256"] is None


def test_no_key_recorded_by_the_probe_is_no_interception() -> None:
    """Without the key we were shown there is nothing to compare: not intercepted."""
    x = interception(_tls(ours=None))
    assert x is not None and x["intercepted"] is False and x["control_ok"] is True


def test_the_controls_entry_for_the_same_address_is_the_one_compared() -> None:
    """The handshake's own address's control entry wins over the first successful one of another address."""
    control = {"198.19.0.6:443": {"status": True, "failure": None, "x_spki_sha256": "other-key"},
               "198.19.0.5:443": {"status": True, "failure": None, "x_spki_sha256": "key-we-saw"}}
    x = interception(_tls(control=control))
    assert x is not None and x["control_spki_sha256"] == "key-we-saw" and x["intercepted"] is False


@pytest.mark.parametrize("issuer, name", [
    ("CN=Proxy+O=Acme", "Acme"),  # a multi-valued RDN: "+" separates its attributes
    ("cn=Proxy,o=Acme", "Acme"),  # attribute types are case-insensitive
    ("O=,O=Acme,CN=Box CA", "Acme"),  # an empty O= names nothing: the next O= does
    ("C=US , O = Acme Ltd , CN=x", "Acme Ltd"),  # spaces around a value are not the value's
    ("O=Acme\\", "Acme\\"),  # a trailing lone backslash (hostile): kept, no IndexError
    ("O=Acme\\A", "AcmeA"),  # one hex digit is no hex pair: the character itself
])
def test_issuer_names_written_by_hand(issuer: str, name: str) -> None:
    assert issuer_name(issuer) == name


# --------------------------------------------------------------------------- portfiltering

IP = "198.18.9.9"


def _pf(ports: list[dict[str, Any]], control: dict[str, Any] | None = None, address: str = IP,
        failure: str | None = None) -> dict[str, Any]:
    return {"test_name": "portfiltering", "test_keys": {"failure": failure, "x_address": address, "x_ports": ports,
                                                        "control": control}}


def _p(port: Any, connect: Any = None, reply: str | None = None) -> dict[str, Any]:
    return {"port": port, "connect": connect, "reply": reply, "status": None if connect or reply else 200}


def _states(m: dict[str, Any]) -> dict[int, tuple[str, str]]:
    return {r.port: (r.state, r.mechanism) for r in P.port_results(m)}


def test_port_65536_is_no_port() -> None:
    """The upper bound of a port is 65535: an entry past it is not judged."""
    assert [r.port for r in P.port_results(_pf([_p(65536), _p(65535), _p(80)]))] == [65535, 80]


def test_an_ipv6_servers_control_is_read_at_its_bracketed_key() -> None:
    """OONI's TH keys an IPv6 endpoint "[addr]:port": the helper's connect there makes our failure a block."""
    m = _pf([_p(22, "generic_timeout_error"), _p(80)], address="2001:db8::9",
            control={"tcp_connect": {"[2001:db8::9]:22": {"status": True, "failure": None}}})
    assert _states(m)[22] == ("blocked", "tcp.drop")


@pytest.mark.parametrize("entry, state", [
    ({"status": 1, "failure": None}, "suspect"),  # a status that is not exactly true is no success
    ({"status": "true", "failure": None}, "suspect"),
    ({}, "suspect"),  # neither status nor failure: the helper said nothing
    ({"status": False, "failure": None}, "unreached"),
])
def test_only_a_true_status_is_the_helpers_connect(entry: dict[str, Any], state: str) -> None:
    m = _pf([_p(22, "generic_timeout_error"), _p(80)], control={"tcp_connect": {f"{IP}:22": entry}})
    assert _states(m)[22][0] == state


def test_an_empty_connect_string_is_unreadable_not_connected() -> None:
    """``connect`` neither null nor a failure string (here "") is skipped: it must not make the port open."""
    assert [r.port for r in P.port_results(_pf([_p(22, ""), _p(80)]))] == [80]


def test_an_entry_without_connect_was_not_measured() -> None:
    m = _pf([{"port": 22, "reply": None, "status": 200}, _p(80)])
    assert [r.port for r in P.port_results(m)] == [80]


def test_a_request_ended_by_eof_is_a_reset_cut() -> None:
    """An EOF after connecting, beside an answered port, is http.rst as a reset is (not http.drop)."""
    m = _pf([_p(80), _p(8080, reply="eof_error")], control=None)
    assert _states(m)[8080] == ("cut", "http.rst")


def test_a_tie_in_ports_is_broken_by_confidence_and_the_verdict_takes_the_highest() -> None:
    """One cut port (0.6) listed before one blocked port (0.9): a tie of one each, the more confident wins."""
    m = _pf([_p(80), _p(8080, reply="connection_reset"), _p(22, "generic_timeout_error")],
            control={"tcp_connect": {f"{IP}:22": {"status": True, "failure": None}}})
    v = P.portfiltering_verdict(m)
    assert (v.mechanism, v.blocking, v.confidence) == ("tcp.drop", "tcp_ip", P.CONTROLLED), v


@pytest.mark.parametrize("failure", ["dns_server_failure", "dns_no_answer", "dns_refused_error"])
def test_the_names_lookup_failing_otherwise_is_a_dns_drop(failure: str) -> None:
    v = P.portfiltering_verdict(_pf([], failure=failure))
    assert (v.status, v.blocking, v.mechanism, v.confidence) == ("anomaly", "dns", "dns.drop", P.DNS_CONFIDENCE)


def _ooni(*ports: tuple[Any, Any, Any]) -> dict[str, Any]:
    return {"test_name": "portfiltering", "test_keys": {"tcp_connect": [
        {"ip": "192.0.2.7", "port": p, "status": {"success": ok, "failure": f}} for p, ok, f in ports]}}


def test_oonis_success_with_a_failure_is_no_open_port() -> None:
    """A df-005 status claiming success and a failure at once is a failed connect, not an open port."""
    m = _ooni((22, True, "connection_refused"), (80, True, None))
    assert _states(m) == {22: ("suspect", "tcp.rst"), 80: ("open", "none")}


def test_oonis_repeated_failing_port_is_judged_once() -> None:
    m = _ooni((22, False, "generic_timeout_error"), (22, True, None), (80, True, None))
    assert [(r.port, r.state) for r in P.port_results(m)] == [(22, "suspect"), (80, "open")]


# --------------------------------------------------------------------------- stunreachability


def _stun(**tk: Any) -> dict[str, Any]:
    return {"test_name": "stunreachability", "test_keys": tk}


def test_an_empty_failure_string_is_a_failure_not_an_anomaly() -> None:
    v = S.stun_verdict(_stun(failure=""))
    assert (v.status, v.blocking, v.confidence) == ("failure", None, 0.0)


def test_a_timeout_is_a_weak_udp_drop() -> None:
    v = S.stun_verdict(_stun(failure="generic_timeout_error"))
    assert (v.mechanism, v.confidence) == ("udp.drop", S.UNREACHED_CONFIDENCE) and v.confidence == 0.6


@pytest.mark.parametrize("duplicates, mechanism", [
    (None, "dns.poison"),
    ([], "dns.poison"),
    ([{"answers": []}], "dns.poison"),  # a later answer with no record gave no address
    ([{"answers": [{"ipv4": None}, {"hostname": "x"}]}], "dns.poison"),
    ([{"answers": [{}, {"ipv4": "93.184.216.34"}]}], "dns.injection"),  # one address among them is enough
    ([{"answers": [{"ipv6": "2001:db8::1"}]}], "dns.injection"),
])
def test_a_bogon_answer_is_an_injection_only_when_a_later_answer_gave_an_address(
        duplicates: Any, mechanism: str) -> None:
    v = S.stun_verdict(_stun(failure="dns_bogon_error", x_dns_duplicate_responses=duplicates))
    assert (v.blocking, v.mechanism, v.confidence) == ("dns", mechanism, 0.9), v
    raced = mechanism == "dns.injection"
    assert ("test_keys.x_dns_duplicate_responses" in v.evidence) is raced


# --------------------------------------------------------------------------- tcp_freeze

EP = "198.19.200.1:443"
SINGLE = {"stage": "http", "requests": 0, "received": 15070, "failure": "generic_timeout_error", "closed": False,
          "silence_s": 10.0, "frozen": True}
STALL = {**SINGLE, "frozen": False}
WHOLE = {"mode": "range", "connections": 4, "completed": 4, "received": 24170, "failure": None}


def _fz(single: dict[str, Any] | None, split: dict[str, Any] | None = None, failure: str | None = None,
        control: dict[str, Any] | None = None, address: Any = EP) -> dict[str, Any]:
    x = None if single is None else {"target_bytes": 65536, "single": single, "split": split}
    return {"test_name": "tcp_freeze", "test_keys": {"failure": failure, "x_freeze": x, "x_address": address,
                                                     "control": control}}


def _said(m: dict[str, Any]) -> tuple[str, str, float]:
    v = tcp_freeze_verdict(m)
    return v.status, v.mechanism, v.confidence


@pytest.mark.parametrize("split", [
    {**WHOLE, "failure": "generic_timeout_error"},  # every range came, yet the split failed: not confirmed
    {**WHOLE, "completed": 5},  # more completed than made (hostile)
    {**WHOLE, "connections": True, "completed": True},  # booleans are no counts
])
def test_a_split_that_is_not_whole_does_not_confirm_the_freeze(split: dict[str, Any]) -> None:
    assert _said(_fz(SINGLE, split)) == ("anomaly", "tcp.freeze", 0.6)


def test_exactly_the_target_bytes_is_ok() -> None:
    assert _said(_fz({**STALL, "failure": None, "received": 64 * 1024})) == ("ok", "none", 0.8)
    assert _said(_fz({**STALL, "failure": None, "received": 64 * 1024 - 1}))[0] == "failure"


def test_silence_of_exactly_the_threshold_is_a_freeze() -> None:
    assert _said(_fz({**STALL, "silence_s": 2.0})) == ("anomaly", "tcp.freeze", 0.6)
    assert _said(_fz({**STALL, "silence_s": 1.99})) == ("anomaly", "throttle", 0.5)


@pytest.mark.parametrize("single", [
    {**STALL, "received": 0},  # nothing at all came: the request went unanswered
    {**STALL, "received": True},  # a boolean is no count of bytes
    {**STALL, "silence_s": True},  # a boolean is no silence
])
def test_a_timeout_without_bytes_or_silence_read_is_an_unanswered_request(single: dict[str, Any]) -> None:
    assert _said(_fz(single)) == ("anomaly", "http.drop", 0.5)


def test_a_tls_stage_timeout_is_no_stall_whatever_came() -> None:
    """Only the request's stage is read for a stall: a handshake that timed out after bytes is tls.drop."""
    assert _said(_fz({**STALL, "stage": "tls"})) == ("anomaly", "tls.drop", 0.5)


def test_a_failure_without_the_single_connection_is_judged_only_when_it_is_the_names() -> None:
    assert _said(_fz(None, failure="generic_timeout_error")) == ("failure", "none", 0.0)


def test_a_control_whose_lookup_gave_no_address_did_not_get_past_dns() -> None:
    control = {"dns": {"failure": None, "addrs": []}}
    assert _said(_fz(None, failure="dns_nxdomain_error", control=control)) == ("failure", "none", 0.0)


@pytest.mark.parametrize("http", [{"failure": None, "status_code": 0}, {"failure": None, "status_code": True}])
def test_a_control_page_without_a_status_gives_no_bonus(http: dict[str, Any]) -> None:
    assert _said(_fz(SINGLE, None, control={"http_request": http})) == ("anomaly", "tcp.freeze", 0.6)


def test_a_control_connect_with_a_failure_is_not_a_controlled_anomaly() -> None:
    """status true beside a failure (hostile) is no connect the helper got past: not the 0.7 of CONTROLLED."""
    control = {"tcp_connect": {EP: {"status": True, "failure": "generic_timeout_error"}}}
    m = _fz({**STALL, "stage": "connect", "received": 0}, control=control)
    assert tcp_freeze_verdict(m).confidence != CONTROLLED


@pytest.mark.parametrize("address, control", [
    (["198.19.200.1:443"], {"tcp_connect": {EP: {"status": True, "failure": None}}}),  # unhashable address
    (EP, {"dns": {"failure": None, "addrs": None}, "tcp_connect": {}}),
])
def test_hostile_control_shapes_say_nothing_and_raise_nothing(address: Any, control: dict[str, Any]) -> None:
    m = _fz({**STALL, "stage": "connect", "received": 0}, control=control, address=address)
    assert _said(m) == ("anomaly", "tcp.drop", 0.5)
    assert _said(_fz(None, failure="dns_nxdomain_error", control=control)) == ("anomaly", "dns.nxdomain", 0.5)


def test_dnschecks_own_lookups_are_read_with_their_transport_in_the_address() -> None:
    """dnscheck's lookups spell their server "udp://198.19.0.8:53" (its key), its queries and duplicate responses
    "198.19.0.8:53": the two were compared as written and never met, so a TCP timeout where UDP answered from the
    same server read dns.drop, and a lie raced by a second answer read dns.poison, not dns.injection."""
    udp = {"engine": "udp", "resolver_address": "udp://198.19.0.8:53", "addrs": ["93.184.216.34"], "failure": None}
    tcp = {"engine": "tcp", "resolver_address": "tcp://198.19.0.8:53", "addrs": [], "failure": "generic_timeout_error"}
    slow = dnscheck_verdict(_dns(**{"udp://198.19.0.8:53": udp, "tcp://198.19.0.8:53": tcp}))
    assert (slow.mechanism, slow.status) == ("none", "ok"), slow
    elsewhere = {**tcp, "resolver_address": "tcp://198.19.0.9:53"}
    assert dnscheck_verdict(_dns(**{"udp://198.19.0.8:53": udp, "tcp://198.19.0.9:53": elsewhere})).mechanism \
        == "dns.drop"
    lie = {**udp, "addrs": ["10.10.34.34"]}
    raced = _dns(**{"udp://198.19.0.8:53": lie})
    raced["test_keys"]["x_dns_duplicate_responses"] = [
        {"engine": "udp", "resolver_address": "198.19.0.8:53", "query_type": "A", "answers": []}]
    v = dnscheck_verdict(raced)
    assert (v.mechanism, v.confidence) == ("dns.injection", 0.9), v
    raced["test_keys"]["x_dns_duplicate_responses"][0]["resolver_address"] = "198.19.0.80:53"  # another server's
    assert dnscheck_verdict(raced).mechanism == "dns.poison"
