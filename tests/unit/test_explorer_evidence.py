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

from tamperscope.analysis.hops import hop_fields
from tamperscope.collector import samples
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
    # where our locate placed it, the address is the router before the device
    ({"ttl": 2, "ip": "198.18.1.1", "asn": "AS64500", "method": "tamperscope locate --layer tls: TTL-limited trigger "
      "packets"}, "hop 2, after router 198.18.1.1 (AS64500)"),
    ({"ttl": 2, "ip": "198.18.1.1", "method": "someone else's traceroute"}, "hop 2 198.18.1.1"),
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
    assert v["gateways"] == [{"address": "198.18.9.1:1194", "transport": "openvpn", "host": None, "udp": False,
                              "connect": "generic_timeout_error", "handshake": None, "tried_handshake": False,
                              "failure": None, "split": None}]
    udp = {"ip": "198.18.9.1", "port": 1194, "transport_type": "openvpn", "protocol": "udp",
           "failure": "generic_timeout_error", "summary": {"handshake": {"failure": "generic_timeout_error"}}}
    (g,) = evidence({"test_name": "riseupvpn", "test_keys": {"x_gateways": [udp]}})["vpn"]["gateways"]
    assert (g["udp"], g["connect"], g["handshake"], g["tried_handshake"]) == \
        (True, None, "generic_timeout_error", True)  # no connect over UDP: the page says so, not "ok"
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


WG = "198.19.3.40:51820"


def _wg_events(*rows: tuple[str, int, float, str, bool]) -> list[dict[str, object]]:
    return [{"operation": op, "address": WG, "proto": "udp", "num_bytes": n, "t": t, "x_wireguard": kind,
             **({"tags": ["junk"]} if junk else {})} for op, n, t, kind, junk in rows]


def _wg(tk: dict[str, object]) -> dict[str, object]:
    got = evidence({"test_name": "wireguard", "test_keys": tk})["wireguard"]
    assert isinstance(got, dict)
    return got


def test_wireguard_a_server_that_answered_the_plain_handshake() -> None:
    tk = {"endpoint": "wg.example.net:51820", "failure": None, "x_address": WG,
          "x_handshake": {"failure": None, "answer": "response", "initiations": 1, "junk": 0, "ignored": 1,
                          "t": 0.0123},
          "x_junk_first": None, "queries": [],
          "network_events": [{"operation": "write_to", "address": "8.8.8.8:53", "num_bytes": 40, "t": 0.0},
                             *_wg_events(("write_to", 148, 0.01, "initiation", False),
                                         ("read_from", 7, 0.015, "ignored", False),
                                         ("read_from", 92, 0.022, "response", False))]}
    wg = _wg(tk)
    assert (wg["endpoint"], wg["address"], wg["failure"], wg["dpi"], wg["junk_first"]) == (
        "wg.example.net:51820", WG, None, False, None)
    assert wg["says"] == "The server answered the plain handshake: WireGuard reaches it from this network."
    plain = wg["handshake"]
    assert isinstance(plain, dict) and plain["answered"] is True and plain["answer"] == "response"
    assert plain["says"] == ("The plain handshake, as a WireGuard client starts it: 1 initiation sent; the server's "
                             "handshake response came after 0.012 s and opened with our keys: only the real server "
                             "can make one. 1 datagram that was no answer to us came back.")
    assert wg["events"] == [  # the lookup's datagram (another address) left out
        {"operation": "sent", "t": 0.01, "bytes": 148, "what": "initiation", "words": "handshake initiation",
         "junk_first": False},
        {"operation": "received", "t": 0.015, "bytes": 7, "what": "ignored", "words": "ignored: no answer to us",
         "junk_first": False},
        {"operation": "received", "t": 0.022, "bytes": 92, "what": "response", "words": "handshake response",
         "junk_first": False}]
    cookie = _wg({**tk, "x_handshake": {"failure": None, "answer": "cookie", "initiations": 2, "junk": 0,
                                        "ignored": 0, "t": 1.5}})
    assert "2 initiations sent; the server answered with a cookie reply after 1.500 s: it is under load, and was " \
           "reached all the same." in cookie["handshake"]["says"]  # type: ignore[index]
    assert evidence({"test_name": "stunreachability", "test_keys": tk})["wireguard"] is None


def test_wireguard_dpi_dropped_the_plain_handshake_where_junk_first_got_through() -> None:
    tk = {"endpoint": WG, "failure": "generic_timeout_error", "x_address": WG,
          "x_handshake": {"failure": "generic_timeout_error", "answer": None, "initiations": 5, "junk": 0,
                          "ignored": 0, "t": None},
          "x_junk_first": {"failure": None, "answer": "response", "initiations": 1, "junk": 3, "ignored": 0,
                           "t": 0.004},
          "network_events": _wg_events(("write_to", 148, 0.0, "initiation", False),
                                       ("write_to", 148, 1.0, "initiation", False),
                                       ("write_to", 40, 5.0, "junk", True), ("write_to", 150, 5.0, "junk", True),
                                       ("write_to", 24, 5.0, "junk", True),
                                       ("write_to", 148, 5.001, "initiation", True),
                                       ("read_from", 92, 5.005, "response", True))}
    wg = _wg(tk)
    assert wg["dpi"] is True and wg["failure"] == "generic_timeout_error"
    says = wg["says"]
    assert isinstance(says, str) and says.startswith("DPI dropped the flow by its first datagram")
    assert "a flow begun by junk datagrams got through to the same server with the same keys" in says
    assert wg["handshake"]["says"] == (  # type: ignore[index]
        "The plain handshake, as a WireGuard client starts it: 5 initiations sent; no answer (generic_timeout_error).")
    assert wg["junk_first"]["says"] == (  # type: ignore[index]
        "The junk-first retry, from a new UDP flow: 3 junk datagrams (random bytes no WireGuard message starts with) "
        "first, then 1 initiation sent; the server's handshake response came after 0.004 s and opened with our keys: "
        "only the real server can make one.")
    events = wg["events"]
    assert isinstance(events, list)
    assert [(e["what"], e["junk_first"]) for e in events] == [
        ("initiation", False), ("initiation", False), ("junk", True), ("junk", True), ("junk", True),
        ("initiation", True), ("response", True)]


def test_wireguard_both_handshakes_failed_or_the_name_did_not_resolve() -> None:
    failed = {"failure": "generic_timeout_error", "answer": None, "initiations": 5, "junk": 0, "ignored": 0,
              "t": None}
    wg = _wg({"endpoint": WG, "failure": "generic_timeout_error", "x_address": WG, "x_handshake": failed,
              "x_junk_first": {**failed, "junk": 3}, "network_events": []})
    assert wg["dpi"] is False and wg["events"] == []
    assert wg["says"] == ("Neither handshake got an answer, the junk-first one included: the server may be down, or "
                          "blocked by its address.")
    assert "no answer (generic_timeout_error)" in wg["junk_first"]["says"]  # type: ignore[index]
    refused = {**failed, "failure": "connection_refused"}
    wg = _wg({"endpoint": WG, "failure": "connection_refused", "x_address": WG, "x_handshake": refused,
              "x_junk_first": refused})
    assert wg["dpi"] is False and wg["says"].startswith("Neither handshake got an answer")  # type: ignore[union-attr]
    dns = _wg({"endpoint": "wg.invalid:51820", "failure": "dns_nxdomain_error", "x_address": None,
               "x_handshake": None, "x_junk_first": None,
               "network_events": [{"operation": "write_to", "address": "8.8.8.8:53", "num_bytes": 40, "t": 0.0}]})
    assert (dns["handshake"], dns["junk_first"], dns["dpi"], dns["events"]) == (None, None, False, [])
    assert dns["says"] == "The endpoint's name did not resolve (dns_nxdomain_error): no handshake was tried."


@pytest.mark.parametrize("tk", [
    {}, {"endpoint": 7, "failure": ["x"], "x_address": {"a": 1}, "x_handshake": "yes", "x_junk_first": 3,
         "network_events": {"operation": "write_to"}},
    {"endpoint": "<script>alert(1)</script>" * 100, "failure": "<script>x</script>", "x_address": WG,
     "x_handshake": {"failure": {"<script>": 1}, "answer": "<script>", "initiations": "5", "junk": True,
                     "ignored": -4, "t": float("nan")},
     "x_junk_first": {"failure": None, "answer": ["response"], "initiations": 10**30, "junk": None,
                      "ignored": 2.5, "t": float("inf")},
     "network_events": [{"operation": "write_to", "address": WG, "num_bytes": "148", "t": "0.1",
                         "x_wireguard": "<script>", "tags": "junk"}, 5, None,
                        {"operation": "<script>", "address": WG}] * 2000},
])
def test_wireguard_hostile_values_are_typed_and_bounded(tk: dict[str, object]) -> None:
    wg = _wg(tk)
    assert isinstance(wg["says"], str) and isinstance(wg["dpi"], bool)
    texts = (wg["endpoint"], wg["address"], wg["failure"])
    assert all(v is None or isinstance(v, str) and len(v) <= 200 for v in texts)
    for attempt in (wg["handshake"], wg["junk_first"]):
        if attempt is not None:
            assert isinstance(attempt, dict) and attempt["answer"] is None and isinstance(attempt["says"], str)
            assert all(attempt[k] is None for k in ("initiations", "junk", "ignored", "t"))
    events = wg["events"]
    assert isinstance(events, list) and len(events) <= 32
    for e in events:
        assert e == {"operation": "sent", "t": None, "bytes": None, "what": None, "words": None, "junk_first": False}
    assert wg["events_not_listed"] == (2000 - 32 if events else 0)
