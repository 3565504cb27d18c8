"""riseupvpn in the lab: the inet farm stands in for RiseupVPN's API (black.riseup.net serves the provider's own CA,
api.black.riseup.net a certificate from it and the gateways' list), and a real gateway listens at 198.19.3.30: Debian's
openvpn on TCP 1194 and obfs4proxy on 23042. A censor that resets OpenVPN's first packet at any address (the TSPU's
way) is seen even though every TCP connect succeeds, and one that resets the API's ClientHello by SNI is seen before
any gateway is tried."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from tamperscope.lab import addresses as A
from tamperscope.lab import manager

from .conftest import locate_json
from .test_probe_cli import measure_once, probe, read

pytestmark = pytest.mark.lab
PROFILES = Path(__file__).parent / "profiles"


def _issuer(handshake: dict) -> str:  # type: ignore[type-arg]
    """The common name of the authority that issued the server's certificate."""
    leaf = x509.load_der_x509_certificate(base64.b64decode(handshake["peer_certificates"][0]["data"]))
    return str(leaf.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _locate(port: int) -> dict:  # type: ignore[type-arg]
    """`tamperscope locate --layer openvpn` towards the gateway's ``port``, from the lab's client (--json)."""
    return locate_json(f"https://{A.RISEUP_GATEWAY}:{port}/", "--layer", "openvpn")


def _truth() -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in manager.PATHS.log.read_text().splitlines()]


def test_riseupvpn_reachable_without_a_censor(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab_factory("none")
    tk = measure_once("riseupvpn", tmp_path / "r.jsonl")
    assert (tk["api_status"], tk["api_failure"], tk["ca_cert_status"]) == ("ok", None, True)
    assert tk["transport_status"] == {"openvpn": "ok", "obfs4": "ok"} and tk["failing_gateways"] is None
    assert [(g["ip"], g["port"], g["transport_type"], g["protocol"], g["summary"]["handshake"]["failure"])
            for g in tk["x_gateways"]] == [(A.RISEUP_GATEWAY, A.OPENVPN_PORT, "openvpn", "tcp", None),
                                           (A.RISEUP_GATEWAY, A.OPENVPN_PORT, "openvpn", "udp", None),
                                           (A.RISEUP_GATEWAY, A.RISEUP_OBFS4_PORT, "obfs4", "tcp", None)]
    # the CA fetched is the lab's stand-in for the provider's, and the API's certificate was verified against it only
    served = [r for r in tk["requests"] if r["request"]["url"].endswith("/ca.crt")]
    assert len(served) == 1 and "BEGIN CERTIFICATE" in served[0]["response"]["body"]
    issuers = {h["server_name"]: _issuer(h) for h in tk["tls_handshakes"] if h["failure"] is None}
    assert issuers == {"black.riseup.net": "tamperscope lab root CA", "riseup.net": "tamperscope lab root CA",
                       "api.black.riseup.net": "Riseup Networks Root CA (lab stand-in)"}
    assert (tk["x_status"], tk["blocking"], tk["accessible"]) == ("ok", False, True)
    # and locate's OpenVPN trigger finds nothing: the server's own answer (its reset, to ours; to the control's
    # random bytes, a close) is not taken for a censor's
    out = _locate(A.OPENVPN_PORT)
    assert (out["layer"], out["hop"]) == ("openvpn", None), out
    assert _truth() == []


def test_openvpn_reset_by_dpi_after_the_connect(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab_factory(str(PROFILES / "riseupvpn.toml"))
    tk = measure_once("riseupvpn", tmp_path / "r.jsonl")
    assert all(c["status"]["failure"] is None for c in tk["tcp_connect"])  # what OONI's test reads: all reached
    assert tk["transport_status"] == {"openvpn": "blocked", "obfs4": "ok"}
    openvpn, udp, obfs4 = tk["x_gateways"]
    assert openvpn["summary"] == {"connect": {"failure": None}, "handshake": {"failure": "connection_reset"}}
    assert obfs4["failure"] is None and "split" not in obfs4
    # over UDP the same DPI drops the reset's datagram (UDP has nothing to reset): real openvpn never hears it
    assert (udp["protocol"], udp["failure"], udp["summary"]) == \
        ("udp", "generic_timeout_error", {"handshake": {"failure": "generic_timeout_error"}})
    # the same first packet split after its length, on a new connection, gets the real server's answer: the lab's
    # DPI reads one segment at a time (and the censor acted once, on the plain one)
    assert openvpn["split"] == {"connect": None, "handshake": None}
    assert tk["failing_gateways"] == [{"ip": A.RISEUP_GATEWAY, "port": A.OPENVPN_PORT, "transport_type": "openvpn"}]
    assert (tk["x_status"], tk["x_mechanism"], tk["blocking"]) == ("anomaly", "tcp.rst", "tcp_ip")
    # the censor acted once over TCP (on the plain packet, not the split one) and on the one UDP flow
    assert sorted((t["rule"], t["server"], t.get("proto", "tcp")) for t in _truth()) == [
        ("openvpn-dpi", f"{A.RISEUP_GATEWAY}:{A.OPENVPN_PORT}", "tcp"),
        ("openvpn-dpi", f"{A.RISEUP_GATEWAY}:{A.OPENVPN_PORT}", "udp")]


def test_openvpn_dpi_is_located_at_the_censor_for_openvpn_only(lab_factory) -> None:  # type: ignore[no-untyped-def]
    """`tamperscope locate --layer openvpn`: OpenVPN's first packet with TTL 1, 2, ... meets the reset at hop 2, and
    the control (as many random bytes, same address and port) does not: scope "protocol"; at the obfs4 port too."""
    lab_factory(str(PROFILES / "riseupvpn.toml"))
    for port in (A.OPENVPN_PORT, A.RISEUP_OBFS4_PORT):
        out = _locate(port)
        assert (out["layer"], out["hop"], out["router"], out["placement"], out["scope"]) == \
            ("openvpn", A.CENSOR_AFTER_HOP + 1, A.ACCESS_LAN, "in-path", "protocol"), out
        assert len(out["runs"]) >= 3 and out["agreement"] > 0.5 and "switched" not in out
        assert out["fingerprint"]["flags"] == "RA" and out["fingerprint"]["initial_ttl"] == 64  # the inject's ttl 58
        controls = [o for run in out["detail"] for o in run["control"]]
        assert controls and not any("R" in str(r.get("flags")) for o in controls for r in o["responses"])
    assert {t["rule"] for t in _truth()} == {"openvpn-dpi"}


def test_the_api_blocked_by_sni_stops_before_the_gateways(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab_factory(str(PROFILES / "riseupvpn-api.toml"))
    tk = measure_once("riseupvpn", tmp_path / "r.jsonl")
    assert (tk["api_status"], tk["api_failure"], tk["ca_cert_status"]) == ("blocked", "connection_reset", True)
    assert tk["x_gateways"] == [] and tk["transport_status"] == {}
    assert (tk["x_status"], tk["x_mechanism"]) == ("anomaly", "tls.rst")
    assert {(t["rule"], t["name"]) for t in _truth()} == {("riseup-api-sni", "api.black.riseup.net")}


def test_the_circumvention_group_runs_tor_and_riseupvpn(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab_factory(str(PROFILES / "riseupvpn.toml"))
    out = tmp_path / "c.jsonl"
    res = probe("circumvention", "-o", str(out))
    assert res.returncode == 0, res.stderr
    ms = read(out)
    assert [m["test_name"] for m in ms] == ["tor", "riseupvpn"]
    tor, vpn = (m["test_keys"] for m in ms)
    assert (tor["x_status"], vpn["x_status"], vpn["x_mechanism"]) == ("ok", "anomaly", "tcp.rst")
