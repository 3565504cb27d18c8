"""The whatsapp nettest on loopback (real TCP and HTTP; its endpoints and URLs replaced, as only tests may),
and its verdict, which is the analysis's: endpoints that did not resolve name the DNS mechanism."""

from __future__ import annotations

import asyncio
from typing import Any

from tamperscope.analysis.verdicts import verdict_for
from tamperscope.model.services import whatsapp_verdict
from tamperscope.nettests import whatsapp
from tests.unit.test_telegram import measure_on_loopback

LO = "127.0.0.1"


async def _http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        writer.close()  # an endpoint check: connected, then closed
        return
    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    await writer.drain()
    writer.close()


def _measure(endpoints_up: bool, web_ok: bool) -> dict[str, Any]:
    return measure_on_loopback(whatsapp, _http, lambda up, rst, closed: {
        "whatsapp_endpoints": [(LO, closed), (LO, up)] if endpoints_up else [(LO, closed)] * 2,
        "whatsapp_registration": f"http://{LO}:{up}/v2/register",
        "whatsapp_web": f"http://{LO}:{up if web_ok else rst}/"})


def test_one_endpoint_reachable_is_enough() -> None:
    m = _measure(endpoints_up=True, web_ok=True)
    tk = m["test_keys"]
    assert (tk["whatsapp_endpoints_status"], tk["registration_server_status"], tk["whatsapp_web_status"]) == \
        ("ok", "ok", "ok")
    assert len(tk["whatsapp_endpoints_blocked"]) == 1  # the closed one
    assert tk["registration_server_failure"] is None  # its 400 is an answer
    assert (tk["x_status"], tk["x_mechanism"], tk["accessible"]) == ("ok", "none", True)
    assert {c["status"]["failure"] for c in tk["tcp_connect"] if "endpoint" in c["tags"]} == \
        {"connection_refused", None}
    assert verdict_for(m).to_test_keys() == {k: tk[k] for k in verdict_for(m).to_test_keys()}


def test_every_endpoint_refused_is_blocked() -> None:
    tk = _measure(endpoints_up=False, web_ok=True)["test_keys"]
    assert tk["whatsapp_endpoints_status"] == "blocked" and len(tk["whatsapp_endpoints_blocked"]) == 1  # (one, twice)
    assert (tk["x_status"], tk["x_mechanism"], tk["blocking"]) == ("anomaly", "tcp.rst", "tcp_ip")


def test_a_reset_web_client() -> None:
    tk = _measure(endpoints_up=True, web_ok=False)["test_keys"]
    assert (tk["whatsapp_web_status"], tk["whatsapp_web_failure"]) == ("blocked", "connection_reset")
    assert (tk["x_mechanism"], tk["x_evidence"]) == ("tls.rst", ["test_keys.whatsapp_web_status"])


def test_endpoints_that_did_not_resolve_name_the_dns_mechanism() -> None:
    """OONI's whatsapp and ours alike: when the endpoints failed at their lookups, no tcp_connect failure is
    there, and the mechanism comes from the queries (before: tcp.drop, a connection nobody attempted)."""
    m = {"test_name": "whatsapp", "test_keys": {
        "whatsapp_endpoints_status": "blocked", "registration_server_status": "ok", "whatsapp_web_status": "ok",
        "tcp_connect": [], "queries": [{"hostname": "e1.whatsapp.net", "failure": "dns_nxdomain_error"}]}}
    v = whatsapp_verdict(m)
    assert (v.status, v.mechanism, v.blocking) == ("anomaly", "dns.nxdomain", "dns")
    m["test_keys"]["tcp_connect"] = [{"ip": "198.19.1.1", "port": 5222, "status": {"failure": "generic_timeout_error"}}]
    assert whatsapp_verdict(m).mechanism == "tcp.drop"  # a connection's failure comes first


def test_a_failure_after_a_bogon_answer_is_the_resolvers_lie() -> None:
    """A censor's resolver answering 127.0.0.1 for web.whatsapp.com makes the connection fail (refused, on
    the probe's own machine): the mechanism is the lie (dns.poison), not a reset of TLS (tls.rst)."""
    tk: dict[str, Any] = {
        "whatsapp_endpoints_status": "ok", "registration_server_status": "ok",
        "whatsapp_web_status": "blocked", "whatsapp_web_failure": "connection_refused",
        "queries": [{"hostname": "web.whatsapp.com", "failure": None,
                     "answers": [{"answer_type": "A", "ipv4": "157.240.1.35"}]}]}
    m = {"test_name": "whatsapp", "test_keys": tk}
    assert whatsapp_verdict(m).mechanism == "tls.rst"  # a public address: the refusal is the mechanism
    tk["queries"].append({"hostname": "WEB.whatsapp.com.", "answers": [{"answer_type": "A", "ipv4": "127.0.0.1"}]})
    assert (whatsapp_verdict(m).mechanism, whatsapp_verdict(m).blocking) == ("dns.poison", "dns")
    tk.update(whatsapp_web_status="ok", whatsapp_endpoints_status="blocked",
              tcp_connect=[{"ip": "10.0.0.1", "port": 5222, "status": {"failure": "connection_refused"}}])
    assert whatsapp_verdict(m).mechanism == "tcp.rst"  # the lie was about another name
    tk["queries"].append({"hostname": "e7.whatsapp.net", "answers": [{"answer_type": "A", "ipv4": "10.0.0.1"}]})
    assert whatsapp_verdict(m).mechanism == "dns.poison"
    tk["queries"] = [{"hostname": "e7.whatsapp.net", "answers": [{"answer_type": "A", "ipv4": ["10.0.0.1"]}, 7]}]
    assert whatsapp_verdict(m).mechanism == "tcp.rst"  # hostile shapes are not a lie, nor a crash


def test_the_benchmarking_range_is_no_lie() -> None:
    """198.18.0.0/15 is a bogon, but test beds (our lab) use it as their internet: an answer there is not a lie."""
    from tamperscope.model.services import lied

    def one(ip: str) -> bool:
        return lied({"queries": [{"hostname": "web.whatsapp.com", "answers": [{"ipv4": ip}]}]}, lambda n: True)
    assert [one(ip) for ip in ("198.19.1.7", "::ffff:198.18.1.81", "127.0.0.1", "::ffff:10.10.34.34", "0.0.0.0",
                               "157.240.1.35", "not an address")] == [False, False, True, True, True, False, False]
