"""The messaging apps and circumvention tools, network by network: per app or tool and network, what the latest
measurement said and when it was last reached; in the terminal, HTML and JSON reports, hostile names escaped in
the HTML."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tamperscope.analysis import aggregates, pipeline
from tamperscope.analysis.aggregates import Filters
from tamperscope.analysis.report import html_report, json_report, terminal_report
from tamperscope.analysis.store import Store

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated" / \
    "dnsBlockingNXDOMAIN" / "measurement.json"
EVIL = "<img src=x onerror=window.pwned=1>"
WA_OK = {"whatsapp_endpoints_status": "ok", "registration_server_status": "ok", "whatsapp_web_status": "ok"}
WA_BLOCKED = dict(WA_OK, whatsapp_web_status="blocked", whatsapp_web_failure="connection_reset")
SIGNAL_BLOCKED = {"signal_backend_status": "blocked", "signal_backend_failure": "generic_timeout_error"}
# our tor nettest's keys: every directory authority's OR port dropped, its directory reached
TOR_BLOCKED = {"targets": {
    **{f"192.0.2.{i}:443": {"failure": "generic_timeout_error", "target_protocol": "or_port_dirauth",
                            "summary": {"connect": {"failure": "generic_timeout_error"}}} for i in range(1, 4)},
    **{f"192.0.2.{i}:80": {"failure": None, "target_protocol": "dir_port"} for i in range(1, 4)}}}

# our riseupvpn nettest's keys: the gateway's OpenVPN connected and was reset after its first packet; obfs4 worked
VPN_CUT = {"api_status": "ok", "ca_cert_status": True, "transport_status": {"openvpn": "blocked", "obfs4": "ok"},
           "tcp_connect": [{"ip": "192.0.2.9", "port": 1194, "status": {"failure": None, "success": True}}],
           "x_gateways": [{"ip": "192.0.2.9", "port": 1194, "transport_type": "openvpn", "failure": "connection_reset",
                           "summary": {"connect": {"failure": None}, "handshake": {"failure": "connection_reset"}}}]}


def _m(test: str, asn: str, when: str, tk: dict[str, Any], n: int) -> bytes:
    base = json.loads(SAMPLE.read_text())
    return orjson.dumps(dict(base, test_name=test, input=None, probe_asn=asn, report_id=f"r{n}",
                             probe_network_name=EVIL if asn == "AS2" else "Net One",
                             measurement_start_time=when, test_start_time=when, test_keys=tk))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    tmp = tmp_path_factory.mktemp("apps")
    lines = [
        _m("whatsapp", "AS1", "2024-03-01 10:00:00", WA_OK, 1),
        _m("whatsapp", "AS1", "2024-03-05 10:00:00", WA_BLOCKED, 2),
        _m("whatsapp", "AS2", "2024-03-01 10:00:00", WA_BLOCKED, 3),
        _m("whatsapp", "AS2", "2024-03-04 10:00:00", WA_OK, 4),
        _m("signal", "AS1", "2024-03-02 10:00:00", SIGNAL_BLOCKED, 5),
        _m("signal", "AS1", "2024-03-03 10:00:00", SIGNAL_BLOCKED, 6),
        _m("telegram", "AS1", "2024-03-03 10:00:00", {}, 7),  # no flag at all: a failed measurement
        _m("tor", "AS1", "2024-03-03 11:00:00", TOR_BLOCKED, 8),
        _m("riseupvpn", "AS1", "2024-03-03 12:00:00", VPN_CUT, 9),
        SAMPLE.read_bytes().replace(b"\n", b" "),  # a website's measurement: not an app
    ]
    (tmp / "in.jsonl").write_bytes(b"\n".join(lines))
    s = Store(tmp / "s.duckdb")
    pipeline.run([str(tmp / "in.jsonl")], s)
    return s


def test_blocked_now_first_with_the_latest_word_and_the_last_reachable_time(store: Store) -> None:
    rows = aggregates.apps(store)
    got = [(r["test_name"], r["probe_asn"], r["last_outcome"], r["last_mechanism"], r["measurement_count"],
            r["anomaly_count"], str(r["last_ok"] or "")[:10]) for r in rows]
    assert got == [
        ("signal", "AS1", "confirmed", "tls.drop", 2, 2, ""),  # the same anomaly twice: confirmed
        ("whatsapp", "AS1", "anomaly", "tls.rst", 2, 1, "2024-03-01"),
        # circumvention tools, beside the apps; RiseupVPN's OpenVPN reset after its connect (our x_gateways)
        ("riseupvpn", "AS1", "anomaly", "tcp.rst", 1, 1, ""),
        ("tor", "AS1", "anomaly", "tcp.drop", 1, 1, ""),
        ("whatsapp", "AS2", "ok", "none", 2, 1, "2024-03-04"),
        ("telegram", "AS1", "failure", "none", 1, 0, ""),
    ]
    assert [r["probe_asn"] for r in aggregates.apps(store, Filters(probe_asn="AS2"))] == ["AS2"]
    assert len(aggregates.apps(store, limit=1)) == 1


def test_the_reports_say_it_for_a_person(store: Store) -> None:
    text = terminal_report(store)
    section = text.split("Messaging apps and circumvention tools, network by network", 1)[1].split("\n\n", 1)[0]
    first, second, third, fourth = section.splitlines()[3:7]  # after the heading, the column names and the rule
    assert first.split() == ["Signal", "AS1", "IT", "blocked", "tls.drop", "2024-03-03", "never", "2", "2"]
    assert second.split() == ["WhatsApp", "AS1", "IT", "blocked", "tls.rst", "2024-03-05", "2024-03-01", "2", "1"]
    assert third.split() == ["RiseupVPN", "AS1", "IT", "blocked", "tcp.rst", "2024-03-03", "never", "1", "1"]
    assert fourth.split() == ["Tor", "AS1", "IT", "blocked", "tcp.drop", "2024-03-03", "never", "1", "1"]
    assert "failed" in section and "reachable" in section
    page = html_report(store, plotly_js="")
    part = page.split("<h2>Messaging apps and circumvention tools, network by network</h2>", 1)[1].split("<h2>", 1)[0]
    assert "Facebook Messenger" in part and EVIL not in page
    assert "<td class='name' data-label='app'>Signal</td>" in part  # names, not sentences
    assert "<td class='name' data-label='app'>Tor</td>" in part
    assert "&lt;img src=x" in part
    doc = orjson.loads(orjson.dumps(json_report(store)))
    assert [(a["test_name"], a["probe_asn"]) for a in doc["apps"]][:2] == [("signal", "AS1"), ("whatsapp", "AS1")]


def test_no_app_no_section(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_bytes(SAMPLE.read_bytes().replace(b"\n", b" "))
    with Store(tmp_path / "s.duckdb") as s:
        pipeline.run([str(tmp_path / "in.jsonl")], s)
        assert aggregates.apps(s) == [] and "Messaging apps" not in terminal_report(s)
        assert "Messaging apps" not in html_report(s, plotly_js="")


def test_the_explorer_shows_them_on_home_and_network_pages_and_serves_the_aggregation(tmp_path: Path) -> None:
    from tamperscope.collector.config import Settings
    from tamperscope.collector.testing import running_app

    body = b"\n".join([_m("whatsapp", "AS2", "2024-03-01 10:00:00", WA_BLOCKED, 1),
                       _m("signal", "AS2", "2024-03-02 10:00:00", SIGNAL_BLOCKED, 2),
                       _m("tor", "AS2", "2024-03-02 11:00:00", TOR_BLOCKED, 3)])
    with running_app(Settings(db_path=tmp_path / "e.duckdb", announce=False, submit_rate=0, read_rate=0)) as c:
        assert c.post("/api/v1/submit", content=body).status_code == 200
        home, network = c.get("/").text, c.get("/network/AS2").text
        twin = c.get("/network/AS2.json").json()
        served = c.get("/api/v1/aggregation/apps").json()
    for page in (home, network):
        section = " ".join(page.split('id="apps"', 1)[1].split("</section>", 1)[0].split())
        assert "WhatsApp</a>" in section and "Signal</a>" in section and "Tor</a>" in section and EVIL not in page
        assert "Messaging apps and circumvention tools, network by network" in page
        assert '<span class="fail">blocked</span>' in section and "&lt;img src=x" in section
        assert "/search?test_name=whatsapp&amp;probe_asn=AS2" in section
    assert [(a["app"], a["now"], a["how"]) for a in twin["apps"]] == [
        ("Signal", "blocked", "tls.drop"), ("Tor", "blocked", "tcp.drop"), ("WhatsApp", "blocked", "tls.rst")]
    assert served["aggregation"] == "apps"
    rows = served["result"]
    assert {(r["test_name"], r["last_outcome"]) for r in rows} == {("whatsapp", "anomaly"), ("signal", "anomaly"),
                                                                   ("tor", "anomaly")}


def test_a_technique_seen_against_apps_counts_them_beside_the_sites(store: Store, tmp_path: Path) -> None:
    # an app's measurement names no site: without the apps' own count, tcp.drop against Tor read "0 sites"
    rows = {r["mechanism"]: r for r in aggregates.per_mechanism(store)}
    assert {m: (r["domain_count"], r["app_count"]) for m, r in rows.items()} == {
        "tls.drop": (0, 1), "tls.rst": (0, 1), "tcp.rst": (0, 1), "tcp.drop": (0, 1), "dns.nxdomain": (1, 0)}
    assert aggregates.per_mechanism(store, Filters(probe_asn="AS2"))[0]["app_count"] == 1  # whatsapp there
    text = terminal_report(store)
    section = text.split("\nMechanisms\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert "apps and tools" in section[0]
    assert {ln.split()[0]: ln.split()[1:6] for ln in section[2:]}["tcp.drop"] == ["1", "0", "0", "1", "1"]
    page = html_report(store, plotly_js="")
    part = page.split("<h2>Techniques seen</h2>", 1)[1].split("<h2>", 1)[0]
    assert "<th class='num'>apps and tools</th>" in part and part.count("data-label='apps and tools'") == len(rows)
    with running_explorer(tmp_path, [_m("tor", "AS3", "2024-03-02 11:00:00", TOR_BLOCKED, 1)]) as c:
        home = c.get("/").text
    assert '<th class="num">Apps and tools</th>' in home and 'data-label="Apps and tools">1</td>' in home
    # a store of sites only: no such column anywhere
    (tmp_path / "in.jsonl").write_bytes(SAMPLE.read_bytes().replace(b"\n", b" "))
    with Store(tmp_path / "sites.duckdb") as s:
        pipeline.run([str(tmp_path / "in.jsonl")], s)
        assert [r["app_count"] for r in aggregates.per_mechanism(s)] == [0]
        mechanisms = terminal_report(s).split("\nMechanisms\n", 1)[1].split("\n\n", 1)[0]
        techniques = html_report(s, plotly_js="").split("<h2>Techniques seen</h2>", 1)[1].split("<h2>", 1)[0]
        assert "dns.nxdomain" in mechanisms and "apps and tools" not in mechanisms
        assert "dns.nxdomain" in techniques and "apps and tools" not in techniques
    with running_explorer(tmp_path / "e2", [SAMPLE.read_bytes().replace(b"\n", b" ")]) as c:
        assert "Apps and tools" not in c.get("/").text


@contextlib.contextmanager
def running_explorer(tmp_path: Path, lines: list[bytes]) -> Iterator[Any]:
    from tamperscope.collector.config import Settings
    from tamperscope.collector.testing import running_app

    tmp_path.mkdir(exist_ok=True)
    with running_app(Settings(db_path=tmp_path / "e.duckdb", announce=False, submit_rate=0, read_rate=0)) as c:
        assert c.post("/api/v1/submit", content=b"\n".join(lines)).status_code == 200
        yield c
