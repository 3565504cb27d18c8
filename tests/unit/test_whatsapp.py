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
