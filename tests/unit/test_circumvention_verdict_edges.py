"""Edges of the riseupvpn and tor verdicts (model.vpnverdict, model.torverdict) that the other tests leave open,
found by mutation testing: which layer a failed API request is blamed on, whose gateways name a blocked transport,
how sure an "ok" is, and what a hostile counter or percentage may not decide."""

from __future__ import annotations

from typing import Any

from tamperscope.model.torverdict import progress_mechanism, tor_verdict, vanilla_tor_verdict
from tamperscope.model.vpnverdict import riseupvpn_verdict

API = "api.black.riseup.net"
API_IP = "198.51.100.20"


def _riseup(**tk: Any) -> dict[str, Any]:
    return {"test_name": "riseupvpn", "test_keys": tk}


def _lookup(name: str, ip: str) -> dict[str, Any]:
    return {"hostname": name, "answers": [{"answer_type": "A", "ipv4": ip}], "failure": None}


def _connect(ip: str, ok: bool, failure: str | None = None) -> dict[str, Any]:
    return {"ip": ip, "port": 443, "status": {"success": ok, "failure": failure}}


def _api_timed_out(name: str, connected: bool) -> dict[str, Any]:
    return _riseup(api_status="blocked", ca_cert_status=True, api_failure="generic_timeout_error",
                   queries=[_lookup(name, API_IP)],
                   tcp_connect=[_connect(API_IP, connected, None if connected else "generic_timeout_error")])


def test_an_api_whose_address_no_connection_reached_is_blocked_at_tcp() -> None:
    """The API's address dropped (every connect to it timed out): tcp.drop, not a TLS handshake that stalled."""
    assert riseupvpn_verdict(_api_timed_out(API, connected=False)).mechanism == "tcp.drop"
    # the connection went through and the request then timed out: the TLS layer's
    assert riseupvpn_verdict(_api_timed_out(API, connected=True)).mechanism == "tls.drop"


def test_the_api_names_are_riseups_own_with_or_without_the_root_dot() -> None:
    """A lookup written with the DNS root's dot is the API's; a name merely ending in the letters "riseup.net"
    (another registrant's domain) is not, and its failed connects say nothing about the API's layer."""
    assert riseupvpn_verdict(_api_timed_out(API + ".", connected=False)).mechanism == "tcp.drop"
    assert riseupvpn_verdict(_api_timed_out("riseup.net", connected=False)).mechanism == "tcp.drop"
    assert riseupvpn_verdict(_api_timed_out("notriseup.net", connected=False)).mechanism == "tls.drop"
    assert riseupvpn_verdict(_api_timed_out("api.notriseup.net", connected=False)).mechanism == "tls.drop"


def test_a_blocked_transport_is_named_by_its_own_gateways_not_another_transports() -> None:
    """openvpn blocked, its gateway timed out; an obfs4 gateway (obfs4 is fine) was reset: tcp.drop, not tcp.rst
    (the reset of a transport that works is no evidence against the blocked one)."""
    v = riseupvpn_verdict(_riseup(
        api_status="ok", ca_cert_status=True, transport_status={"openvpn": "blocked", "obfs4": "ok"},
        x_gateways=[{"transport_type": "obfs4", "protocol": "tcp", "failure": "connection_reset"},
                    {"transport_type": "openvpn", "protocol": "tcp", "failure": "generic_timeout_error"}]))
    assert v.status == "anomaly" and v.mechanism == "tcp.drop", v


def test_failing_gateways_lower_only_an_ok_that_has_no_transport_status() -> None:
    """``failing_gateways`` lowers the confidence of "ok" in the 2020 layout alone: with ``transport_status``
    saying each transport is ok, the gateways listed (an overloaded one is too) leave it at 0.8."""
    gateways = [{"ip": "198.51.100.30", "port": 443, "transport_type": "openvpn"}]
    with_status = riseupvpn_verdict(_riseup(api_status="ok", ca_cert_status=True, failing_gateways=gateways,
                                            transport_status={"openvpn": "ok", "obfs4": "ok"}))
    assert with_status.status == "ok" and with_status.confidence == 0.8, with_status
    old = riseupvpn_verdict(_riseup(api_status="ok", ca_cert_status=True, failing_gateways=gateways))
    assert old.status == "ok" and old.confidence == 0.6, old


def _tor(targets: dict[str, Any], **tk: Any) -> dict[str, Any]:
    return {"test_name": "tor", "test_keys": {"targets": targets, **tk}}


def test_tor_counters_that_are_booleans_are_no_counts() -> None:
    """``dir_port_accessible: false`` is no count of 0 (a bool is no number here) and ``dir_port_total: true`` no
    count of 1: neither makes half a tor run's targets failing a wholly blocked protocol."""
    targets = {"a": {"failure": None}, "b": {"failure": "generic_timeout_error"}}
    assert tor_verdict(_tor(targets, dir_port_total=2, dir_port_accessible=False)).status == "ok"
    assert tor_verdict(_tor(targets, dir_port_total=True, dir_port_accessible=0)).status == "ok"
    # the same run with real counts: every directory port failed
    assert tor_verdict(_tor(targets, dir_port_total=2, dir_port_accessible=0)).status == "anomaly"


def test_a_bootstrap_percentage_past_100_says_nothing() -> None:
    """A ``tor_progress`` of 150 (hostile or broken) is no percentage: it names no mechanism and is not cited as
    where the bootstrap stopped."""
    assert progress_mechanism(150) is None and progress_mechanism(100) == "none"
    v = vanilla_tor_verdict({"test_name": "vanilla_tor", "test_keys": {"success": False, "tor_progress": 150}})
    assert v.status == "anomaly" and "test_keys.tor_progress" not in v.evidence, v
    stuck = vanilla_tor_verdict({"test_name": "vanilla_tor", "test_keys": {"success": False, "tor_progress": 5}})
    assert "test_keys.tor_progress" in stuck.evidence and stuck.mechanism == "tcp.drop", stuck
