"""The demo reads what the probe wrote: a probe that measured some inputs and not others (exit 1) still gets a
summary of those it measured, and the demo ends with 1; a torn last line is not a traceback."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tamperscope.demo import ech_summary, evasion_summary, outside_summary, probe_results, rules_summary
from tamperscope.lab import addresses as A
from tamperscope.model.evasion import evasion_verdict
from tamperscope.model.rules import conclude, rules_verdict
from tests.unit.test_blocking_rules import measurement as rules_measurement


def _m(url: str) -> bytes:
    return json.dumps({"input": url, "test_keys": {"x_mechanism": "dns"}}).encode() + b"\n"


def test_some_inputs_unmeasured_still_gives_the_others(tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    out.write_bytes(_m("http://a.example/") + _m("http://b.example/") + b'{"input": "http://c.exa')
    said: list[str] = []
    measurements, status = probe_results(1, out, said.append)
    assert [m["input"] for m in measurements] == ["http://a.example/", "http://b.example/"]
    assert status == 1
    assert len(said) == 1 and "the 2 it measured" in said[0]


def test_a_clean_run_says_nothing(tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    out.write_bytes(_m("http://a.example/") + b"\n" + b"[1, 2]\n")
    said: list[str] = []
    measurements, status = probe_results(0, out, said.append)
    assert [m["input"] for m in measurements] == ["http://a.example/"] and status == 0 and said == []


def test_a_failed_probe_is_a_failure_whatever_it_wrote(tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    out.write_bytes(_m("http://a.example/"))
    for code in (2, 70, -9):
        said: list[str] = []
        assert probe_results(code, out, said.append) == ([], code)
        assert said == [f"demo: the probe failed (exit {code})"]
    said = []
    assert probe_results(1, tmp_path / "missing.jsonl", said.append) == ([], 1)
    assert said and said[0].startswith("demo: cannot read the probe's measurements") and "\n" not in said[0]
    (tmp_path / "empty.jsonl").write_bytes(b"")
    said = []
    assert probe_results(1, tmp_path / "empty.jsonl", said.append) == ([], 1)
    assert said == ["demo: the probe failed and measured nothing"]


SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ooni-samples" / "generated"


def test_the_demo_reanalyses_what_the_probe_wrote_and_names_what_differs(tmp_path: Path) -> None:
    """`analysis` runs the real `tamperscope analyze` and `report --html` (subprocesses, a real DuckDB file) over
    the probe's file: each measurement's mechanism, re-derived from its raw records, is compared with the one the
    probe wrote, and a disagreement is named."""
    from tamperscope.analysis.verdicts import verdict_for
    from tamperscope.demo import analysis

    names = ["dnsBlockingAndroidDNSCacheNoData", "httpBlockingConnectionReset", "successWithHTTP",
             "badSSLWithExpiredCertificate"]
    measurements = []
    for name in names:
        m = json.loads((SAMPLES / name / "measurement.json").read_text())
        m["test_keys"]["x_mechanism"] = verdict_for(m).mechanism
        measurements.append(m)
    mechanisms = [m["test_keys"]["x_mechanism"] for m in measurements]
    assert len(set(mechanisms)) >= 3, mechanisms  # the samples differ, so a mix-up would show
    measurements[1]["test_keys"]["x_mechanism"] = "tls.mitm"  # what the probe "said", wrongly
    out = tmp_path / "measurements.jsonl"
    out.write_text("".join(json.dumps(m) + "\n" for m in measurements))
    # what the demo's blocking_rules step wrote: every layer says "not_blocked", its records say otherwise
    ruled = dict(rules_measurement(), probe_cc="IT", probe_asn="AS30722", measurement_start_time="2026-11-10 10:00:00")
    (tmp_path / "rules.jsonl").write_text(json.dumps(ruled) + "\n")
    # what the demo's echcheck step wrote: the probe said "ok", its records show the ECH hello dropped
    hs = {"address": "198.19.0.5:443", "server_name": "cloudflare-ech.com", "t0": 0.1, "t": 0.2}
    ech = dict(ruled, test_name="echcheck", input="https://cloudflare-ech.com/",
               test_keys={"control": {**hs, "failure": None}, "x_mechanism": "none", "x_status": "ok",
                          "target": {**hs, "failure": "generic_timeout_error", "echconfig": "GREASE"}})
    (tmp_path / "echcheck.jsonl").write_text(json.dumps(ech) + "\n")
    said: list[str] = []
    text = analysis(measurements, out, tmp_path, said.append)
    assert "ECH, judged again from the records: https://cloudflare-ech.com/ tls.drop" in text, text
    assert "the probe's mechanism reached again for 3/4" in text, text
    assert f"differs: {measurements[1]['input']} (probe tls.mitm, analysis {mechanisms[1]})" in text
    assert text.count("differs:") == 1
    assert ("blocking rules, judged again from the records: blocked.example dns domain_and_subdomains, "
            "blocked.example tls ends_with, blocked.example http substring") in text
    html = (tmp_path / "report.html").read_text()
    assert html.startswith("<!doctype html>") and "Plotly" in html and "<script src=" not in html
    assert "<h2>What the censors' rules match</h2>" in html and "DNS lookups naming blocked.example or any" in html
    assert "whether TLS with Encrypted Client Hello (ECH) is blocked" in html  # echcheck in the tests' table
    assert (tmp_path / "analysis.duckdb").stat().st_size > 0


def test_the_demo_says_in_one_line_when_the_analysis_fails(tmp_path: Path) -> None:
    from tamperscope.demo import analysis

    out = tmp_path / "measurements.jsonl"
    out.write_text("not a measurement\n")
    text = analysis([], out, tmp_path, lambda _: None)
    assert text.startswith("\n  tamperscope analyze failed: ") and text.count("\n") == 1, text


def test_a_port_left_in_time_wait_is_free_for_the_explorer_and_a_listening_one_is_not() -> None:
    """The demo checks --port before its minute of measuring. Connections of an earlier explorer on that port
    linger in TIME_WAIT for a minute; the server binds regardless (SO_REUSEADDR), so the check must too."""
    import socket

    import pytest

    from tamperscope.cli import UsageError
    from tamperscope.demo import _port_is_free

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    with pytest.raises(UsageError, match=f"port {port} on 127.0.0.1 is taken"):
        _port_is_free(port)
    client = socket.create_connection(("127.0.0.1", port))
    served, _ = listener.accept()
    served.close()  # the server's side closes first: it is the one left in TIME_WAIT
    client.close()
    listener.close()
    _port_is_free(port)


def test_the_http3_line_counts_sites_tried_handshakes_and_drops() -> None:
    from tamperscope.demo import http3

    def m(url: str, quic: list[dict], mech: str = "none") -> dict:
        return {"input": url, "test_keys": {"quic_handshakes": quic, "x_mechanism": mech}}

    ok = {"failure": None, "tags": ["depth=0"]}
    lost = {"failure": "generic_timeout_error", "tags": ["depth=0"]}
    innocent = {"failure": None, "tags": ["depth=0", "x_innocent_sni"]}
    ms = [m("https://a.example/", [ok]), m("https://b.example/", [lost, innocent], "quic.drop"),
          m("https://c.example/", []), m("http://d.example/", [])]
    assert http3(ms) == ("  HTTP/3: tried over QUIC for 2 of 3 https URLs (those whose sites advertise it); "
                         "handshakes 2, completed 1; quic.drop 1")
    ms.append(m("https://e.example/", [ok], "tls.rst"))  # the censor resets TLS, and leaves QUIC alone
    assert http3(ms).endswith("quic.drop 1; QUIC got through for 1 whose TLS was blocked")


def test_the_evasion_lines_say_what_got_through_and_what_the_box_coped_with() -> None:
    def attempt(name: str, outcome: str) -> dict:
        return {"strategy": name, "outcome": outcome, "step": None if outcome == "ok" else "tls",
                "failure": None if outcome == "ok" else "connection_reset", "fingerprints": []}
    tk = {"control": {"http_request": {"status_code": 200, "failure": None}},
          "x_evasion": {"attempts": [attempt("tls-records", "blocked"), attempt("plain", "blocked")],
                        "residual_waits": [31.5]}}
    tk.update(evasion_verdict(tk))
    text = evasion_summary([{"input": "https://youtube.com/", "test_keys": tk}])
    assert "tls.rst: tls-records blocked, plain blocked (waited 31.5 s" in text
    assert "the box follows a ClientHello over several TLS records" in text
    assert "not tried" in evasion_summary([])


def test_the_rules_lines_say_each_layers_rule_from_the_verdict() -> None:
    def probe(kind: str, outcome: str) -> dict:
        return {"kind": kind, "name": f"{kind}.x", "outcome": outcome}
    tk = {"x_blocking_rules": {"host": "facebook.com", "layers": {
        "dns": {"probes": [probe("innocent", "passed"), probe("exact", "blocked"), probe("subdomain", "blocked"),
                           probe("prefixed", "passed"), probe("suffixed", "passed")]},
        "dns_path": {"probes": [probe("innocent", "passed"), probe("exact", "blocked"), probe("subdomain", "blocked"),
                                probe("prefixed", "passed"), probe("suffixed", "passed")]},
        "tls": {"probes": [probe("innocent", "passed"), probe("exact", "passed")]}}}}
    layers = {k: {**v, **conclude(v["probes"])} for k, v in tk["x_blocking_rules"]["layers"].items()}
    tk.update(rules_verdict(tk, layers))
    text = rules_summary({"input": "facebook.com", "test_keys": tk})
    assert "dns      domain_and_subdomains  DNS lookups naming facebook.com or any of its subdomains are blocked" in text
    assert ("dns_path domain_and_subdomains  a device on the path forges DNS answers for facebook.com and any of its "
            "subdomains") in text
    assert "tls      not_blocked" in text and "http" not in text.split("\n", 2)[2]
    assert "not read" in rules_summary(None)


def test_the_demo_says_what_echcheck_found_against_the_profiles_ech_rule() -> None:
    """ru-like drops ECH to cloudflare-ech.com, the outer name of crypto.cloudflare.com's sealed hellos: a tls.drop
    agrees with it and 'not blocked' does not; tm-like has no such rule: the reverse. A GREASE hello naming the
    site itself is not what the rule reads. A failed plain handshake is no verdict, and never agrees."""
    from tamperscope.lab import manager

    ru, tm = manager.resolve_profile("ru-like"), manager.resolve_profile("tm-like")
    site = "crypto.cloudflare.com"
    sealed = {"server_name": site, "outer_server_name": "cloudflare-ech.com", "echconfig": "AEn+DQ=="}
    blocked = {"input": site, "test_keys": {"x_mechanism": "tls.drop", "x_status": "anomaly",
                                            "target": {**sealed, "failure": "generic_timeout_error"}}}
    passed = {"input": site, "test_keys": {"x_mechanism": "none", "x_status": "ok", "target": sealed}}
    failed = {"input": site, "test_keys": {"x_mechanism": "none", "x_status": "failure"}}
    text = ech_summary(site, blocked, ru)
    assert "blocked (tls.drop)" in text and "(generic_timeout_error) where a plain hello naming the site went" in text
    assert f"the hello for {site}, sealed with its published ECH config inside one naming cloudflare-ech.com" in text
    assert "rule ru-ech blocks ECH to cloudflare-ech.com (drop)" in text
    assert text.endswith("agrees with the lab's ground truth")
    assert ech_summary(site, passed, ru).endswith("DISAGREES with the lab's ground truth")
    assert ech_summary(site, passed, tm).endswith(
        "the censor has no rule against ECH: agrees with the lab's ground truth")
    assert ech_summary(site, blocked, tm).endswith("DISAGREES with the lab's ground truth")
    grease = {"input": site, "test_keys": {"x_mechanism": "none", "x_status": "ok",
                                           "target": {"server_name": site, "outer_server_name": site,
                                                      "echconfig": "GREASE"}}}
    text = ech_summary(site, grease, ru)  # the rule reads cloudflare-ech.com: a GREASE hello naming the site passes
    assert "the hello carrying Encrypted Client Hello got" in text
    assert text.endswith(f"the censor has no rule against ECH to {site}: agrees with the lab's ground truth")
    assert "no verdict" in ech_summary("x", failed, tm) and "DISAGREES" in ech_summary("x", failed, tm)
    assert "not measured" in ech_summary("x", None, ru)
    located = {**blocked, "located": {"hop": 2, "router": "198.18.1.1", "placement": "in-path", "scope": "name"}}
    assert ech_summary(site, located, ru).endswith(
        "located (tamperscope locate --layer ech): hop 2, after router 198.18.1.1 (in-path, scope name)")
    assert ech_summary(site, {**blocked, "located": {"hop": None}}, ru).endswith("no hop found")


def test_apps_summary_says_what_is_blocked_and_checks_it_against_the_ground_truth() -> None:
    from tamperscope.demo import APPS, apps_summary

    telegram = {"test_keys": {"x_status": "ok", "x_mechanism": "none", "telegram_tcp_blocking": False}}
    whatsapp = {"test_keys": {"x_status": "anomaly", "x_mechanism": "dns.poison", "whatsapp_web_status": "blocked",
                              "whatsapp_endpoints_status": "ok"}}
    fb = {"test_keys": {"x_status": "anomaly", "x_mechanism": "dns.poison", "facebook_dns_blocking": True,
                        "facebook_tcp_blocking": False}}
    dns = [{"rule": "tm-dns", "name": "web.whatsapp.com"}]
    signal = {"test_keys": {"x_status": "ok", "x_mechanism": "none", "signal_backend_status": "ok"}}
    text = apps_summary([(telegram, []), (whatsapp, dns), (fb, dns * 4), (signal, [])])
    assert "Telegram            reachable; the censor did nothing to it: agrees" in text
    assert ("WhatsApp            blocked (dns.poison): WhatsApp Web; the censor's rule tm-dns acted on it (1 time): "
            "agrees") in text
    assert ("Facebook Messenger  blocked (dns.poison): its names (their answers checked against Facebook's network, "
            "AS32934); ") in text
    assert "an injector on the path is not told from the resolver's own list" in text
    assert "(4 times)" in text and text.endswith("apps agreeing with the lab's ground truth: 4/4")
    # the censor acted and the probe saw nothing, a run that failed, a measurement that failed: none agree
    failed = {"test_keys": {"x_status": "failure", "x_mechanism": "none"}}
    text = apps_summary([(telegram, dns), (None, []), (failed, []), (failed, [])])
    assert "injector" not in text and text.count("DISAGREES") == 3
    assert "WhatsApp            not measured; the censor did nothing to it" in text
    assert text.endswith(f"apps agreeing with the lab's ground truth: 0/{len(APPS)}")


def test_tor_summary_counts_what_was_reached_and_checks_it_against_the_ground_truth() -> None:
    from tamperscope.demo import tor_summary

    blocked = {"test_keys": {"x_status": "anomaly", "x_mechanism": "tcp.drop", "or_port_dirauth_accessible": 0,
                             "or_port_dirauth_total": 10, "dir_port_accessible": 3, "dir_port_total": 10}}
    drops = [{"rule": "tm-tor", "server": "198.19.3.1:443"}] * 2
    text = tor_summary(blocked, drops)
    assert text.endswith("OR ports reached 0/10, directories serving a consensus 3/10: blocked (tcp.drop); the "
                         "censor's rule tm-tor acted on it (2 times): agrees with the lab's ground truth"), text
    bridged = {"test_keys": {**blocked["test_keys"], "obfs4_total": 2, "obfs4_accessible": 1}}
    assert "consensus 3/10, obfs4 bridges 1/2: blocked" in tor_summary(bridged, drops)
    reached = {"test_keys": {**blocked["test_keys"], "x_status": "ok", "x_mechanism": "none"}}
    assert tor_summary(reached, []).endswith("reachable; the censor did nothing to it: agrees with the lab's ground truth")
    assert tor_summary(reached, drops).endswith("DISAGREES with the lab's ground truth")  # the censor acted, unseen
    assert tor_summary({"test_keys": {"x_status": "failure"}}, []).endswith("no verdict; the censor did nothing to "
                                                                            "it: DISAGREES with the lab's ground truth")
    assert tor_summary(None, drops).endswith("not measured; the censor's rule tm-tor acted on it (2 times)")
    located = {**blocked, "located": {"url": "https://198.19.3.1/", "layer": "tcp", "hop": 2, "router": "198.18.1.1",
                                      "placement": "in-path", "scope": "port"}}
    assert tor_summary(located, drops).endswith("\n    located (tamperscope locate https://198.19.3.1/, layer tcp): "
                                                "hop 2, after router 198.18.1.1 (in-path, this port only)")
    assert tor_summary({**blocked, "located": {"url": "https://198.19.3.1/", "hop": None}}, drops).endswith(
        "located (tamperscope locate https://198.19.3.1/): no hop found")
    both = drops + [{"rule": "ru-tor-dir"}]
    assert "the censor's rules ru-tor-dir and tm-tor acted on it (3 times): agrees" in tor_summary(blocked, both)


def test_vanilla_tor_summary_says_how_far_tor_got_and_checks_it_against_the_ground_truth() -> None:
    from tamperscope.demo import vanilla_tor_summary

    stuck = {"test_keys": {"x_status": "anomaly", "x_mechanism": "tcp.drop", "success": False, "tor_progress": 5,
                           "tor_progress_tag": "conn", "tor_progress_summary": "Connecting to a relay"}}
    drops = [{"rule": "tm-tor", "server": "198.19.3.11:9001"}] * 3
    assert vanilla_tor_summary((stuck, drops)).endswith(
        "stopped at 5% (conn: Connecting to a relay): blocked (tcp.drop); the censor's rule tm-tor acted on it "
        "(3 times): agrees with the lab's ground truth")
    done = {"test_keys": {"x_status": "ok", "success": True, "bootstrap_time": 2.5, "tor_progress": 100}}
    assert vanilla_tor_summary((done, [])).endswith(
        "bootstrapped in 2.5 s: reachable; the censor did nothing to it: agrees with the lab's ground truth")
    assert vanilla_tor_summary((done, drops)).endswith("DISAGREES with the lab's ground truth")
    assert vanilla_tor_summary((None, [])).endswith("not measured; the censor did nothing to it")
    # then through the bridge: it got past, or not
    text = vanilla_tor_summary((stuck, drops), (done, []))
    assert text.endswith("agrees with the lab's ground truth\n    through the lab's obfs4 bridge: bootstrapped in "
                         "2.5 s: Tor works from here through a bridge the censor does not know; the censor did "
                         "nothing to it"), text
    bridge_stuck = {"test_keys": {**stuck["test_keys"], "tor_progress": 2, "tor_progress_tag": "conn_done_pt",
                                  "tor_progress_summary": "Connected to pluggable transport"}}
    assert vanilla_tor_summary((stuck, drops), (bridge_stuck, drops[:1])).endswith(
        "through the lab's obfs4 bridge: stopped at 2% (conn_done_pt: Connected to pluggable transport): the bridge "
        "does not get past it either; the censor's rule tm-tor acted on it (1 time)")
    assert vanilla_tor_summary((stuck, drops), (None, [])).endswith(
        "through the lab's obfs4 bridge: not measured; the censor did nothing to it")


def test_riseupvpn_summary_counts_gateways_by_their_first_exchange() -> None:
    from tamperscope.demo import riseupvpn_summary

    def gateway(transport: str, connect: str | None, handshake: str | None) -> dict:  # type: ignore[type-arg]
        summary = {"connect": {"failure": connect}, **({} if connect else {"handshake": {"failure": handshake}})}
        return {"transport_type": transport, "failure": connect or handshake, "summary": summary}

    cut = {"test_keys": {"x_status": "anomaly", "x_mechanism": "tcp.rst", "api_status": "ok", "x_gateways": [
        gateway("openvpn", None, "connection_reset"), gateway("openvpn", "generic_timeout_error", None),
        gateway("obfs4", None, None)]}}
    resets = [{"rule": "tm-openvpn"}]
    assert riseupvpn_summary(cut, resets).endswith(
        "API ok, OpenVPN gateways 0/2 (connected 1/2), obfs4 gateways 1/1: blocked (tcp.rst); the censor's rule "
        "tm-openvpn acted on it (1 time): agrees with the lab's ground truth")
    udp = {"transport_type": "openvpn", "protocol": "udp", "failure": "generic_timeout_error",
           "summary": {"handshake": {"failure": "generic_timeout_error"}}}
    both = {"test_keys": {**cut["test_keys"], "x_gateways": [*cut["test_keys"]["x_gateways"][:2], udp,
                                                             cut["test_keys"]["x_gateways"][2]]}}
    assert "OpenVPN gateways 0/2 (connected 1/2), OpenVPN over UDP 0/1, obfs4 gateways 1/1: blocked" in \
        riseupvpn_summary(both, resets)  # a UDP port has no connect: not counted as connected
    split = {"test_keys": {**cut["test_keys"], "x_gateways": [
        {**gateway("openvpn", None, "connection_reset"), "split": {"connect": None, "handshake": None}},
        {**gateway("openvpn", None, "connection_reset"), "split": {"connect": "generic_timeout_error",
                                                                     "handshake": None}}]}}
    assert riseupvpn_summary(split, resets).endswith(
        "\n    OpenVPN's first packet split in two TCP segments: through at 1/2: the DPI reads one segment at a time; "
        "1 could not connect again (the censor held the gateway after the reset)")
    located = {**cut, "located": {"url": "https://198.19.3.30:23042/", "layer": "openvpn", "hop": 2,
                                  "router": "198.18.1.1", "placement": "in-path", "scope": "protocol"}}
    assert riseupvpn_summary(located, resets).endswith(
        "\n    located (tamperscope locate https://198.19.3.30:23042/ --layer openvpn, layer openvpn): hop 2, after "
        "router 198.18.1.1 (in-path, this protocol only)")
    api = {"test_keys": {"x_status": "anomaly", "x_mechanism": "tls.rst", "api_status": "blocked", "x_gateways": []}}
    assert "API blocked: blocked (tls.rst); the censor's rule x acted" in riseupvpn_summary(api, [{"rule": "x"}])
    usable = {"test_keys": {"x_status": "ok", "api_status": "ok", "x_gateways": [gateway("obfs4", None, None)]}}
    assert riseupvpn_summary(usable, resets).endswith("usable; the censor's rule tm-openvpn acted on it (1 time): "
                                                      "DISAGREES with the lab's ground truth")
    assert riseupvpn_summary(None, []).endswith("not measured; the censor did nothing to it")


def test_wireguard_summary_says_what_the_junk_first_retry_showed() -> None:
    from tamperscope.demo import wireguard_summary

    drops = [{"rule": "tm-wireguard"}]
    dpi = {"test_keys": {"x_status": "anomaly", "x_mechanism": "udp.drop", "failure": "generic_timeout_error",
                         "x_handshake": {"failure": "generic_timeout_error", "initiations": 5},
                         "x_junk_first": {"failure": None, "answer": "response"}}}
    assert wireguard_summary(dpi, drops).endswith(
        "handshake generic_timeout_error (5 initiations), junk first: answered: blocked (udp.drop): DPI judged the "
        "flow by its first datagram; the censor's rule tm-wireguard acted on it (1 time): agrees with the lab's "
        "ground truth")
    down = {"test_keys": {**dpi["test_keys"], "x_mechanism": "udp.drop",
                          "x_junk_first": {"failure": "generic_timeout_error"}}}
    said = wireguard_summary(down, [])
    assert said.endswith("junk first: generic_timeout_error: blocked (udp.drop); the censor did nothing to it: "
                         "DISAGREES with the lab's ground truth") and "DPI" not in said
    ok = {"test_keys": {"x_status": "ok", "failure": None, "x_handshake": {"failure": None}, "x_junk_first": None}}
    assert wireguard_summary(ok, []).endswith("handshake answered: reachable; the censor did nothing to it: agrees "
                                              "with the lab's ground truth")
    assert wireguard_summary(None, drops).endswith("not measured; the censor's rule tm-wireguard acted on it (1 time)")
    located = {**dpi, "located": {"url": "https://198.19.3.40:51820/", "layer": "wireguard", "hop": 2,
                                  "router": "198.18.1.1", "placement": "in-path", "scope": "protocol"}}
    assert wireguard_summary(located, drops).endswith(
        "\n    located (tamperscope locate https://198.19.3.40:51820/ --layer wireguard, layer wireguard): hop 2, after "
        "router 198.18.1.1 (in-path, this protocol only)")


def test_freeze_summary_says_both_steps_and_checks_them_against_the_ground_truth() -> None:
    from tamperscope.demo import freeze_summary

    frozen = [{"rule": "ru-freeze", "action": "freeze", "after_kb": 16}]
    tk = {"x_status": "anomaly", "x_mechanism": "tcp.freeze", "x_confidence": 0.9, "failure": "generic_timeout_error",
          "x_freeze": {"single": {"frozen": True, "received": 15070, "silence_s": 10.016,
                                  "failure": "generic_timeout_error"},
                       "split": {"mode": "range", "connections": 4, "completed": 4, "failure": None}},
          "control": {"http_request": {"failure": None, "body_length": 15730, "status_code": 200}}}
    m = {"input": "https://hetzner.com/", "test_keys": tk}
    said = freeze_summary((m, frozen))
    assert ("    https://hetzner.com/: one connection carried 15,070 bytes (TLS included), then nothing for 10.0 s;\n"
            "    over 4 new connections (4 KiB ranges), every one came whole: the limit is per connection, and "
            "splitting gets past it\n"
            "    tcp.freeze (0.9); the censor's rule ru-freeze froze 1 connection after 16 KiB: agrees with the lab's "
            "ground truth\n"
            "    from outside, the control helper fetched the page (15,730 bytes)") in said
    # a freeze the censor never made, or one the probe did not see, is a disagreement
    assert "DISAGREES with the lab's ground truth" in freeze_summary((m, []))
    free = {"input": m["input"], "test_keys": {"x_status": "ok", "x_mechanism": "none", "x_confidence": 0.8,
                                              "x_freeze": {"single": {"frozen": False, "failure": None}}}}
    assert "it did not freeze (the connection carried 64 KiB)" in freeze_summary((free, []))
    assert "DISAGREES" in freeze_summary((free, frozen)) and "agrees" in freeze_summary((free, []))
    assert freeze_summary(None) == ""
    assert freeze_summary((None, frozen)).endswith("not measured; the censor's rule ru-freeze acted on it (1 time)")


def test_the_demo_locates_quic_with_its_trigger_and_says_what_it_cannot_locate(monkeypatch: pytest.MonkeyPatch) -> None:
    from tamperscope import demo

    calls: list[list[str]] = []

    def run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 1, "", "")

    monkeypatch.setattr(demo.subprocess, "run", run)
    measured = [{"input": "https://hetzner.com/", "test_keys": {"x_mechanism": "tcp.freeze"}},
                {"input": "https://x.com/", "test_keys": {"x_mechanism": "throttle"}},
                {"input": "https://instagram.com/", "test_keys": {"x_mechanism": "quic.drop"}},
                {"input": "https://telegram.org/", "test_keys": {"x_mechanism": "tls.rst"}}]
    demo.locate_examples(measured, lambda _: None)
    # a dropped QUIC handshake is located with QUIC's trigger; a freeze and a throttle are not tried
    assert [c[c.index("locate") + 1:c.index("locate") + 4] for c in calls] == \
        [["https://instagram.com/", "--layer", "quic"], ["https://telegram.org/", "--yes", "--json"]]
    table = demo.equipment(measured, {})
    assert "  tcp.freeze      not located: the server's packets are dropped after a few KiB" in table
    assert "  throttle        not located: the flow is slowed" in table and "dns.poison" not in table


def test_the_outside_location_says_when_the_censor_ignored_a_request_from_outside() -> None:
    from tamperscope.demo import bracket

    inside = {"http.rst": {"hop": 2, "router": "198.18.1.1"}}
    both = bracket(inside, {"hop": 2, "router": "198.18.4.1", "placement": "on-path"})
    assert both.endswith("the censor sits between 198.18.1.1 and 198.18.4.1")
    said = bracket(inside, {"hop": None, "reason": "no interference seen"})
    assert said.endswith("nothing located (no interference seen): the censor did not act on a request from outside")
    assert bracket(inside, None).endswith("not done (no http.rst, or no run completed)")
    assert bracket({}, {"hop": 2, "router": "198.18.4.1"}).endswith("not done (no http.rst, or no run completed)")


def test_a_transparent_proxy_that_relays_is_not_blocking() -> None:
    """The middlebox profile's proxy re-sends every HTTP request it reads: the ground truth logs each (action
    "proxy"), and an app it relayed is reachable, which agrees with it."""
    from tamperscope.demo import apps_summary, censor_did, tor_summary

    relayed = [{"rule": "proxy", "action": "proxy"}] * 5
    assert censor_did(relayed) == "the censor did nothing to it but pass it on: its transparent proxy relayed it " \
                                  "(5 times)"
    mitm = [{"rule": "mb-mitm", "action": "mitm"}, {"rule": "proxy", "action": "proxy"}]
    assert censor_did(mitm) == "the censor's rule mb-mitm acted on it (1 time), and its transparent proxy relayed " \
                               "it (1 time)"
    reachable = {"test_keys": {"x_status": "ok", "x_mechanism": "none"}}
    said = apps_summary([(reachable, relayed)] + [(reachable, [])] * 3)
    assert "Telegram            reachable; the censor did nothing to it but pass it on" in said
    assert "DISAGREES" not in said and "apps agreeing with the lab's ground truth: 4/4" in said
    tor = {"test_keys": {"x_status": "ok", "x_mechanism": "none", "targets": {}}}
    assert "agrees with the lab's ground truth" in tor_summary(tor, relayed)


def test_middlebox_summary_says_how_the_proxy_rewrote_and_checks_it_against_the_ground_truth() -> None:
    from tamperscope.demo import middlebox_summary

    relayed = [{"rule": "proxy", "action": "proxy"}] * 3
    headers = {"test_keys": {"x_status": "anomaly", "x_mechanism": "middlebox", "tampering": {
        "total": True, "header_name_capitalization": True, "request_line_capitalization": False,
        "header_name_diff": ["via", "x-forwarded-for", "\x1b[31mred\x07"]}}}
    lines = {"test_keys": {"x_status": "anomaly", "x_mechanism": "middlebox", "tampering": True}}
    said = middlebox_summary([(headers, relayed), (lines, relayed[:1])])
    assert ("    headers        tampered with (middlebox): headers added or removed: via, x-forwarded-for, ?[31mred?; "
            "header names re-cased; the censor's transparent proxy relayed it (3 times): agrees with the lab's "
            "ground truth") in said and "\x1b" not in said
    assert "    request lines  tampered with (middlebox); the censor's transparent proxy relayed it (1 time): agrees" \
        in said
    clean = {"test_keys": {"x_status": "ok", "x_mechanism": "none", "tampering": False}}
    said = middlebox_summary([(clean, []), (clean, relayed)])
    assert "headers        came back as sent; no proxy relayed it: agrees" in said
    assert "request lines  came back as sent; the censor's transparent proxy relayed it (3 times): DISAGREES" in said
    assert "not measured; no proxy relayed it" in middlebox_summary([(None, []), (None, [])])


def test_the_demo_judges_each_tor_bootstrap_again_the_bridged_one_too(tmp_path: Path) -> None:
    """vanilla_tor runs twice in the demo when Tor is blocked, the second time through a bridge: both runs are
    analysed again and named apart (they were matched by test name, so the bridged one was left out)."""
    from tamperscope.demo import analysis

    web = json.loads((SAMPLES / "successWithHTTP" / "measurement.json").read_text())
    web["test_keys"]["x_mechanism"] = "none"
    out = tmp_path / "measurements.jsonl"
    out.write_text(json.dumps(web) + "\n")
    tor = {k: web[k] for k in ("probe_cc", "probe_asn", "measurement_start_time", "software_name",
                               "software_version", "data_format_version")}
    stuck = dict(tor, test_name="vanilla_tor", input=None, report_id="20261203T000000Z_vanillator_XX_1_a",
                 test_keys={"success": False, "error": "timeout-reached", "tor_progress": 5, "x_bridges": 0,
                            "x_mechanism": "tcp.drop"})
    bridged = dict(stuck, report_id="20261203T000001Z_vanillator_XX_1_b",
                   test_keys={"success": True, "error": None, "tor_progress": 100, "x_bridges": 1,
                              "transport_name": "obfs4", "x_mechanism": "tls.drop"})  # what the probe "said", wrongly
    (tmp_path / "vanilla_tor.jsonl").write_text(json.dumps(stuck) + "\n")
    (tmp_path / "vanilla_tor-bridge.jsonl").write_text(json.dumps(bridged) + "\n")
    text = analysis([web], out, tmp_path, [].append)
    assert ("the messaging apps, Tor, RiseupVPN and WireGuard, judged again from the records: "
            "Tor (its own bootstrap) tcp.drop, Tor (its own bootstrap) through a bridge none (the probe said tls.drop)"
            "\n") in text, text


def test_the_demo_waits_for_the_tor_networks_full_consensus_and_says_how_long(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """vanilla_tor run before the lab's new Tor network listed every relay got a consensus with no exit, stayed at
    75%, and the demo called Tor blocked where nothing blocked it: the demo waits for the full consensus first."""
    import threading

    from tamperscope import demo
    from tamperscope.lab import manager, tornet
    from tests.unit.test_lab_tornet import FLAGS, _consensus, _microdescs

    monkeypatch.setattr(manager, "PATHS", manager.Paths(tmp_path))
    monkeypatch.setattr(demo, "TOR_NETWORK_WAIT", 0.6)
    homes = [manager.PATHS.tornet / nickname for nickname, _ in (*A.TOR_NETWORK, *A.TOR_NETWORK_RELAYS)]
    for home in homes:
        home.mkdir(parents=True)
        (home / tornet.CONSENSUS).write_text(_consensus([FLAGS]))  # the first one: one relay
        (home / tornet.MICRODESCS[1]).write_text(_microdescs(1))
    said: list[str] = []
    demo.await_tor_network(said.append)  # never complete: waits its 0.6 s, says so, and goes on
    assert len(said) == 2 and "waiting until every directory of the lab's new Tor network serves its 5 relays" \
        in said[0], said
    assert said[1].endswith("directories serve 1 of its 5 relays; measuring anyway"), said

    def complete() -> None:
        for home in homes:
            (home / tornet.CONSENSUS).write_text(_consensus([FLAGS] * tornet.RELAY_COUNT))
            (home / tornet.MICRODESCS[1]).write_text(_microdescs(tornet.RELAY_COUNT))

    monkeypatch.setattr(demo, "TOR_NETWORK_WAIT", 30)
    said.clear()
    timer = threading.Timer(0.4, complete)
    timer.start()
    try:
        demo.await_tor_network(said.append)  # completed while it waits
    finally:
        timer.join()
    assert len(said) == 2 and said[1].startswith("demo: the Tor network serves them all after"), said
    said.clear()
    demo.await_tor_network(said.append)  # already complete: nothing to wait for, nothing said
    assert said == []


def test_the_demo_counts_a_url_measured_twice_once_and_confirms_it_by_the_repeat(tmp_path: Path) -> None:
    """The demo's --recheck: the second measurements follow the first in the probe's file; the analysis's line
    counts URLs, and a URL whose two measurements show the same anomaly is confirmed (a real `tamperscope analyze`
    into a real DuckDB file)."""
    from tamperscope.analysis.verdicts import verdict_for
    from tamperscope.demo import analysis, first_and_again

    names = ["httpBlockingConnectionReset", "badSSLWithExpiredCertificate", "dnsBlockingAndroidDNSCacheNoData"]
    written = []
    for name in names:
        m = json.loads((SAMPLES / name / "measurement.json").read_text())
        m["test_keys"]["x_mechanism"] = verdict_for(m).mechanism
        written.append(m)
    assert written[0]["test_keys"]["x_mechanism"] not in ("none", None)
    assert written[1]["test_keys"]["x_mechanism"] == "none"
    again = json.loads(json.dumps(written[0]))
    again["measurement_start_time"] = "2030-01-01 00:00:00"  # later: another measurement, another uid
    again["annotations"] = {**again.get("annotations", {}), "recheck": "true"}
    written.append(again)
    first, repeats = first_and_again(written)
    assert first == written[:3] and repeats == [again]
    out = tmp_path / "measurements.jsonl"
    out.write_text("".join(json.dumps(m) + "\n" for m in written))
    text = analysis(first, out, tmp_path, lambda _: None, repeats=repeats)
    assert "4 measurements (1 of them second measurements); the probe's mechanism reached again for 4/4" in text, text
    # the reset URL twice, alike: confirmed; the DNS one once: an anomaly only
    assert "2 URLs with an anomaly (1 confirmed by a blockpage fingerprint or a repeat), 0 failures" in text, text
    # without its second measurement, nothing is confirmed
    (tmp_path / "once").mkdir()
    once = tmp_path / "once" / "measurements.jsonl"
    once.write_text("".join(json.dumps(m) + "\n" for m in first))
    text = analysis(first, once, tmp_path / "once", lambda _: None)
    assert "3 measurements; the probe's mechanism reached again for 3/3" in text, text
    assert "2 URLs with an anomaly (0 confirmed by a blockpage fingerprint or a repeat)" in text, text


def test_the_recheck_line_checks_the_second_measurements_against_the_first_and_the_ground_truth() -> None:
    from tamperscope.demo import recheck_summary
    from tamperscope.lab import manager

    profile = manager.resolve_profile("tm-like")

    def m(url: str, mech: str) -> dict:
        return {"input": url, "test_keys": {"x_mechanism": mech}}

    first = [m("http://www.bbc.com/", "http.rst"), m("https://signal.org/", "tls.rst"), m("https://x.com/", "none")]
    text = recheck_summary(first, [m("http://www.bbc.com/", "http.rst"), m("https://signal.org/", "tcp.drop")],
                           profile, [{"rule": "tm-http"}])
    assert ("2 URLs found blocked or failing, the same mechanism for 1/2; agreement with the lab's ground truth: 1/2; "
            "censor actions logged: 1; different: https://signal.org/ (tls.rst, then tcp.drop)") in text, text
    assert recheck_summary(first, [], profile, []) == "  measured again (--recheck): nothing"


def test_a_recheck_that_could_not_measure_everything_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's second run captures the probe's stderr (for its --recheck line): when that run could not measure
    an input, the probe's reason is passed on, not lost, and what it wrote is still read (a unit test's fakes for
    the lab: its log file and the command in the client)."""
    from types import SimpleNamespace

    from tamperscope import demo
    from tamperscope.lab import manager

    log = tmp_path / "censor.jsonl"
    log.write_text('{"rule": "tm-http"}\n')
    out = tmp_path / "measurements.jsonl"
    first = {"input": "http://www.bbc.com/", "test_keys": {"x_mechanism": "http.rst", "blocking": "http-failure",
                                                           "accessible": False}}
    out.write_text(json.dumps(first) + "\n" + json.dumps(first) + "\n")  # the second: the probe's recheck
    ran: list[list[str]] = []

    def fake_run(argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        ran.append(argv)
        with log.open("a") as f:
            f.write('{"rule": "tm-http"}\n')
        return subprocess.CompletedProcess(argv, 1, "", "tamperscope: not measured: 'http://x.org/': boom\n"
                                           "tamperscope: --recheck: of 2 input(s) found blocked or failing, 1 the "
                                           "same again (`tamperscope analyze` takes two alike as confirmed), 0 "
                                           "different; 1 not measured again\n")

    monkeypatch.setattr(manager, "PATHS", SimpleNamespace(log=log))
    monkeypatch.setattr(manager, "exec_argv", lambda argv, *_: argv)
    monkeypatch.setattr(manager, "client_env", lambda: {})
    monkeypatch.setattr(demo.subprocess, "run", fake_run)
    said: list[str] = []
    again, status, truth = demo.recheck_blocked([first], ["probe"], out, said.append,
                                                manager.resolve_profile("tm-like"))
    assert ran == [["probe", "--recheck", "--recheck-after", "60", "--no-progress"]]  # twice tm-like's 30 s
    assert "tamperscope: not measured: 'http://x.org/': boom" in said, said
    assert any(s.startswith("demo: --recheck: of 2 input(s)") for s in said), said
    assert again == [first] and status == 1 and truth == [{"rule": "tm-http"}]


def test_the_demos_equipment_table_folds_ip_ids_seen_once_as_the_report_does() -> None:
    """QA: under gfw-like each injected answer's IP-ID differs, and the demo's table gave the one box a row per URL.
    Keys alike but for an IP-ID seen once each are one row (ipid*); a fixed IP-ID seen twice keeps its own."""
    from tamperscope import demo

    def m(key: str, mech: str) -> dict[str, object]:
        return {"input": "x", "test_keys": {"x_mechanism": mech, "x_signature": {"key": key}}}

    measured = [m(f"udp/ttl64/ipid{i}", "dns.injection") for i in (11, 12, 13)]
    measured += [m("tcp/RA/ttl128/win0/ipid30000", "http.rst")] * 2 + [m("tcp/RA/ttl128/win0/ipid7", "tls.rst")]
    table = demo.equipment(measured, {})
    rows = {line.split()[0]: line.split()[1] for line in table.splitlines()
            if line.startswith("  udp/") or line.startswith("  tcp/")}
    assert rows == {"udp/ttl64/ipid*": "3", "tcp/RA/ttl128/win0/ipid30000": "2", "tcp/RA/ttl128/win0/ipid7": "1"}


def test_the_demo_says_when_more_categories_were_blocked_than_it_lists(tmp_path: Path) -> None:
    """QA: the line of blocked sites by category stopped at six, with nothing to say that COMM and HUMR were
    blocked too."""
    from tamperscope.demo import analysis

    base = json.loads((SAMPLES / "httpBlockingConnectionReset" / "measurement.json").read_text())
    codes = ["NEWS", "HUMR", "POLR", "COMM", "ANON", "GRP", "LGBT", "REL"]
    measurements = []
    for i, _ in enumerate(codes):
        m = json.loads(json.dumps(base))
        m["input"] = f"http://site{i}.example/"
        m["report_id"] = f"{m['report_id']}{i}"
        measurements.append(m)
    out = tmp_path / "measurements.jsonl"
    out.write_text("".join(json.dumps(m) + "\n" for m in measurements))
    listed = tmp_path / "list.csv"
    listed.write_text("url,category_code,category_description,date_added,source,notes\n"
                      + "".join(f"http://site{i}.example/,{c},,2024-01-01,test,\n" for i, c in enumerate(codes)))
    text = analysis(measurements, out, tmp_path, lambda _: None, categories=listed)
    line = next(x for x in text.splitlines() if "blocked sites by category" in x)
    assert line.count("/1") == 6 and line.endswith(f", and 2 more (tamperscope report --db {tmp_path / 'analysis.duckdb'})"), line


def test_outside_view_says_when_the_two_sides_name_dns_tampering_differently() -> None:
    """gfw-like: the inside probe sees injected answers race its resolver's (dns.injection); the outside one asks
    the ISP's resolver, which took the forged answer (dns.poison). The count agrees; the names are said."""
    def inside(url: str, mech: str) -> dict[str, object]:
        return {"input": url, "test_keys": {"x_mechanism": mech}}

    def outside(domain: str, mech: str) -> dict[str, object]:
        return {"input": domain, "test_keys": {"x_mechanism": mech, "x_status": "anomaly"}}

    measurements = [inside("http://a.org/", "dns.injection"), inside("https://b.org/x", "dns.injection"),
                    inside("http://c.org/", "http.rst")]
    said = outside_summary([outside("a.org", "dns.poison"), outside("b.org", "dns.poison"), outside("c.org", "none")],
                           measurements, [])
    assert ("the inside probe's DNS findings seen again from outside: 2/2 (named dns.injection 2 inside, "
            "dns.poison 2 outside)") in said, said
    # named alike: nothing more is said
    said = outside_summary([outside("a.org", "dns.injection"), outside("b.org", "none")], measurements, [])
    assert said.splitlines()[3].endswith("seen again from outside: 1/2"), said
