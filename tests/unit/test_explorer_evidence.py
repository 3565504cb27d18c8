"""Evidence extraction: DNS against the control, connects, certificates, the HTTP diff, fingerprints, hops,
and hostile or broken records that must not break a page."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tamperscope.collector import samples
from tamperscope.collector.queries import hop_fields
from tamperscope.explorer import charts
from tamperscope.explorer.evidence import body_text, certificate, evidence, title_of


def _cert_der(cn: str, issuer_cn: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
            .public_key(key.public_key()).serial_number(7).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn), x509.DNSName("*." + cn)]), False)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def test_dns_answers_not_seen_by_the_control_are_marked() -> None:
    e = evidence(samples.measurement("dns.poison"))
    q = e["dns"]["queries"][0]
    assert q["answers"] == [samples.POISON_IP] and q["unexpected"] == [samples.POISON_IP]
    assert e["dns"]["control"] == {"addrs": [samples.SITE_IP], "failure": None}
    assert e["tcp"][0]["endpoint"] == f"{samples.POISON_IP}:443" and e["tcp"][0]["failure"] == "connection_refused"
    ok = evidence(samples.measurement("ok"))
    assert ok["dns"]["queries"][0]["unexpected"] == []


def test_connects_and_handshakes_beside_the_control() -> None:
    e = evidence(samples.measurement("tls.rst"))
    assert e["tcp"][0]["success"] and e["tcp"][0]["control"] == {"success": True, "failure": None}
    h = e["tls"][0]
    assert h["failure"] == "connection_reset" and h["control"]["success"] is True
    assert h["server_name"] == "www.example.com"


def test_certificates_are_parsed_for_people() -> None:
    m = samples.measurement("ok")
    der = _cert_der("www.example.com", "Lab Interception CA")
    m["test_keys"]["tls_handshakes"][0]["peer_certificates"] = [
        {"format": "base64", "data": base64.b64encode(der).decode()}]
    cert = evidence(m)["tls"][0]["certificates"][0]
    assert cert["subject"] == "CN=www.example.com" and cert["issuer"] == "CN=Lab Interception CA"
    assert cert["names"] == ["www.example.com", "*.www.example.com"] and cert["self_signed"] is False
    assert cert["not_after"].startswith("2026-01-31") and len(cert["sha256"]) == 64
    assert "error" in certificate({"format": "base64", "data": base64.b64encode(b"garbage").decode()})
    assert certificate(None) == {"error": "no certificate data"}


def test_http_diff_against_the_control_and_fingerprints() -> None:
    e = evidence(samples.measurement("http.blockpage", url="http://blocked.example/"),
                 {"fingerprints": ["cl/inst_corp_prometey_datacenter_blockpage"], "mechanism": "http.blockpage"})
    d = e["http"]["diff"]
    assert d["status_code"] == {"measured": 200, "control": 200, "match": True}
    assert d["title"]["measured"] == "Access restricted" and d["title"]["match"] is False
    assert d["body_length"]["proportion"] < 0.5
    assert "server" not in d["headers"]["only_measured"]  # both have Server, with different values
    assert e["http"]["requests"][0]["body_text"].startswith("<html>")
    fp = e["fingerprints"][0]
    assert fp["id"] == "cl/inst_corp_prometey_datacenter_blockpage" and fp["source"] == "citizenlab"
    assert "RU" in fp["countries"]
    assert e["verdict"]["mechanism"] == "http.blockpage"


def test_base64_bodies_and_charsets() -> None:
    data = "<title>Доступ ограничен</title>".encode("cp1251")
    text = body_text({"format": "base64", "data": base64.b64encode(data).decode()},
                     [("Content-Type", "text/html; charset=windows-1251")])
    assert title_of(text) == "Доступ ограничен"
    assert body_text({"format": "base64", "data": "!!!"}) == ""
    assert body_text(None) == ""
    assert body_text("x", [("Content-Type", "text/html; charset=no-such-charset<script>")]) == "x"


@pytest.mark.parametrize(("value", "label"), [
    ({"ttl": 4, "ip": "198.18.0.1", "asn": 64500, "name": "LAB"}, "hop 4 198.18.0.1 (AS64500 LAB)"),
    ("198.18.0.9", "198.18.0.9"),
    ([{"ttl": 1, "ip": "a"}, {"ttl": 2, "ip": "b"}], "hop 2 b"),
    ({"hop": 3, "address": "x"}, "hop 3 x"),
])
def test_hops_in_any_shape(value: object, label: str) -> None:
    found = hop_fields(value)
    assert found is not None and found["label"] == label
    assert hop_fields(None) is None and hop_fields({}) is None


def test_broken_records_do_not_break_the_page() -> None:
    m = samples.measurement("ok")
    m["test_keys"].update({"queries": "x", "tcp_connect": [1, None, {"status": "no"}], "tls_handshakes": {"a": 1},
                           "requests": [{"request": [], "response": {"body": {"format": "base64", "data": 5},
                                                                     "headers_list": [[1], "x"], "code": "200"}}],
                           "control": {"dns": [], "tcp_connect": "x", "http_request": {"headers": 3}},
                           "x_hop": 12, "x_signature": ["weird"]})
    e = evidence(m)
    assert e["dns"]["queries"] == [] and e["tls"] == [] and e["http"]["requests"][0]["status_code"] is None
    assert e["hop"]["label"] == "12"


def test_tor_targets_are_laid_out() -> None:
    tk = {"targets": {
        "128.31.0.39:9101": {"target_protocol": "or_port_dirauth", "target_address": "128.31.0.39:9101",
                             "failure": "connection_reset"},
        "obfs4-1": {"target_protocol": "obfs4", "target_address": "192.95.36.142:443", "failure": None},
        "skipped": {"target_protocol": "dir_port", "failure": False},
        "junk": "not a target",
        "198.19.3.1:80": {"target_protocol": "dir_port", "failure": "http_request_failed", "x_consensus": False,
                          "target_name": "moria1" * 40}}}
    e = evidence({"test_name": "tor", "test_keys": tk})
    assert [(t["name"], t["protocol"], t["state"], t["failure"]) for t in e["targets"]] == [
        ("128.31.0.39:9101", "or_port_dirauth", "failed", "connection_reset"),
        ("obfs4-1", "obfs4", "reached", None), ("skipped", "dir_port", "did not run", None),
        ("198.19.3.1:80", "dir_port", "failed", "http_request_failed")]
    assert [(t["label"], t["not_consensus"]) for t in e["targets"]] == [
        (None, False), (None, False), (None, False), (("moria1" * 40)[:100], True)]  # a long name is cut
    many = {"targets": {str(i): {"failure": None} for i in range(5000)}}
    assert len(evidence({"test_keys": many})["targets"]) == 200  # a hostile map is cut, not rendered whole
    assert evidence({"test_keys": {"targets": ["a", "list"]}})["targets"] == []


def test_riseupvpn_in_words_from_ours_or_ooni_s_keys() -> None:
    ours = {"api_status": "ok", "ca_cert_status": True, "transport_status": {"openvpn": "blocked", 3: "x"},
            "x_gateways": ["junk", {"ip": "198.18.9.1", "port": 1194, "transport_type": "openvpn",
                                    "summary": {"connect": {"failure": "generic_timeout_error"}}}]}
    v = evidence({"test_name": "riseupvpn", "test_keys": ours})["vpn"]
    assert v["transports"] == {"openvpn": "blocked"} and v["failing"] == []
    assert v["gateways"] == [{"address": "198.18.9.1:1194", "transport": "openvpn", "host": None,
                              "connect": "generic_timeout_error", "handshake": None, "tried_handshake": False,
                              "failure": None, "split": None}]
    ooni = {"api_status": "blocked", "api_failure": [None, "connection_reset"], "ca_cert_status": "yes",
            "failing_gateways": [{"ip": "192.0.2.1", "port": 443, "transport_type": "openvpn"}, 7],
            "x_gateways": "not a list"}
    v = evidence({"test_name": "riseupvpn", "test_keys": ooni})["vpn"]
    assert (v["api_failure"], v["ca"], v["gateways"]) == ("connection_reset", None, [])
    assert v["failing"] == [{"address": "192.0.2.1:443", "transport": "openvpn"}]
    assert evidence({"test_name": "tor", "test_keys": ours})["vpn"] is None
    many = {"x_gateways": [{"ip": "198.18.9.1", "port": 1}] * 5000}
    assert len(evidence({"test_name": "riseupvpn", "test_keys": many})["vpn"]["gateways"]) == 64


def test_chart_specs() -> None:
    rows = [{"day": "2026-05-01", "measurement_count": 5, "anomaly_count": 3, "confirmed_count": 1, "ok_count": 2,
             "failure_count": 0}]
    spec = charts.timeline(rows)
    assert spec is not None
    assert [t["name"] for t in spec["data"]] == ["ok", "anomaly", "confirmed", "failure"]
    assert spec["data"][1]["y"] == [2] and spec["layout"]["barmode"] == "stack"
    assert charts.timeline([]) is None and charts.mechanisms([{"mechanism": None}]) is None


def test_quic_handshakes_are_shown_beside_tls_with_their_transport_and_control() -> None:
    m = samples.measurement("ok")
    tk = m["test_keys"]
    ep = f"{samples.SITE_IP}:443"
    tk["quic_handshakes"] = [{"address": ep, "server_name": "site.example", "failure": "generic_timeout_error",
                              "tls_version": "", "negotiated_protocol": "", "peer_certificates": None},
                             {"address": ep, "server_name": "www.example.com", "failure": None,
                              "tls_version": "TLSv1.3", "negotiated_protocol": "h3",
                              "peer_certificates": [{"format": "base64", "data": base64.b64encode(
                                  _cert_der("www.example.com", "Lab CA")).decode()}]}]
    tk["control"]["quic_handshake"] = {ep: {"server_name": "site.example", "status": True, "failure": None}}
    tk["x_quic_trigger"] = {"address": ep, "innocent_name": "www.example.com", "innocent_failure": None,
                            "trigger": "sni"}
    e = evidence(m)
    quic = [h for h in e["tls"] if h["transport"] == "QUIC"]
    assert [h["transport"] for h in e["tls"]][:1] == ["TCP"] and len(quic) == 2
    assert quic[0]["failure"] == "generic_timeout_error" and quic[0]["control"]["success"] is True
    assert quic[1]["alpn"] == "h3" and quic[1]["certificates"][0]["subject"] == "CN=www.example.com"
    assert e["quic_trigger"]["trigger"] == "sni" and "innocent name got through" in e["quic_trigger"]["meaning"]


@pytest.mark.parametrize("value", [None, "sni", 7, [], {"trigger": ["x"], "address": {"a": 1}}, {"trigger": "<b>"}])
def test_a_hostile_quic_trigger_is_typed_text_or_nothing(value: object) -> None:
    m = samples.measurement("ok")
    m["test_keys"]["x_quic_trigger"] = value
    got = evidence(m)["quic_trigger"]
    if not isinstance(value, dict) or not value:
        assert got is None
    else:
        assert all(v is None or isinstance(v, str) for v in got.values())
        assert got["meaning"] == "not given"
