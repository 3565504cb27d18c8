"""Edges of the riseupvpn nettest that its main tests leave open, on loopback: only a 200 from the CA and the API
counts, the first API failure (in the spec's order) is the one reported, a transport is "ok" when any of its
gateways worked, an obfs4 failure is not retried as OpenVPN, and a hostile eip-service stays bounded."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tamperscope.collector import testing
from tamperscope.nettests import riseupvpn
from tamperscope.nettests.base import Context
from tests.unit.test_netx_servers import TCPServer, TestCA, http_response, read_head
from tests.unit.test_riseupvpn import _openvpn
from tests.unit.test_telegram import FAST
from tests.unit.test_tor import CERT

NO_GATEWAYS = json.dumps({"version": 3, "gateways": []}).encode()


async def _not_obfs4(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Connects, then answers whatever comes with bytes that are no obfs4 (nor OpenVPN) answer, and closes."""
    await reader.read(1 << 16)
    writer.write(bytes(range(256)) * 16)
    await writer.drain()


def _measure(tmp_path: Path, *, ca_status: int = 200, provider: tuple[int, bytes] = (200, b'{"domain": "x"}'),
             eip: Any = (200, NO_GATEWAYS), ca_closed: bool = False, provider_closed: bool = False) -> dict[str, Any]:
    """One riseupvpn run against a CA and an API on loopback (``*_closed``: that URL's port refuses). ``eip`` is
    (status, body), or a function of the gateway servers' ports returning the eip-service document."""
    public = TestCA(tmp_path, "a public CA")
    own = TestCA(tmp_path, "the provider's CA")

    async def main() -> dict[str, Any]:
        async with TCPServer(_openvpn("ok")) as ovpn, TCPServer(_not_obfs4) as impostor:
            closed = testing.closed_port()
            ports = {"ovpn": ovpn.port, "impostor": impostor.port, "closed": closed}
            status, body = (200, json.dumps(eip(ports)).encode()) if callable(eip) else eip

            async def ca(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await read_head(reader)
                writer.write(http_response(ca_status, own.pem.read_bytes()))
                await writer.drain()

            async def api(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                _, target, _, _ = await read_head(reader)
                writer.write(http_response(*((status, body) if "eip-service" in target else provider)))
                await writer.drain()

            async with TCPServer(ca, ssl_context=public.server_context("localhost")) as ca_server, \
                    TCPServer(api, ssl_context=own.server_context("localhost")) as api_server:
                urls = (f"https://localhost:{closed if ca_closed else ca_server.port}/ca.crt",
                        f"https://localhost:{closed if provider_closed else api_server.port}/provider.json",
                        f"https://localhost:{api_server.port}/3/config/eip-service.json")
                ctx = Context(timeouts=FAST, ca_bundle=str(public.pem), options={"riseupvpn_urls": urls})
                return await riseupvpn.run(None, ctx)

    return asyncio.run(asyncio.wait_for(main(), 20))


def test_a_ca_certificate_served_with_an_error_status_is_not_the_ca(tmp_path: Path) -> None:
    """Only a 200 holding a certificate is the CA: a 404 whose body is PEM (a cache's page, a censor's copy) is not."""
    tk = _measure(tmp_path, ca_status=404)
    assert (tk["api_status"], tk["api_failure"], tk["ca_cert_status"]) == ("blocked", "invalid_ca", False)
    assert len(tk["requests"]) == 1 and tk["x_gateways"] == []


def test_an_unreachable_ca_is_reported_by_its_network_failure(tmp_path: Path) -> None:
    """A CA that cannot be reached says how (here a refused connect), not ``invalid_ca``."""
    tk = _measure(tmp_path, ca_closed=True)
    assert (tk["api_status"], tk["api_failure"], tk["ca_cert_status"]) == ("blocked", "connection_refused", False)


def test_a_provider_json_answered_with_an_error_status_blocks_the_api(tmp_path: Path) -> None:
    """provider.json must come as a 200: a 403 blockpage over the right TLS is still a blocked API."""
    tk = _measure(tmp_path, provider=(403, b"<html>forbidden</html>"))
    assert (tk["api_status"], tk["api_failure"], tk["ca_cert_status"]) == ("blocked", "http_request_failed", True)


def test_the_first_api_failure_in_order_is_the_one_reported(tmp_path: Path) -> None:
    """provider.json is first: its refused connect is api_failure, not the eip-service's bad status after it."""
    tk = _measure(tmp_path, provider_closed=True, eip=(500, b"oops"))
    assert (tk["api_status"], tk["api_failure"]) == ("blocked", "connection_refused")


def test_an_empty_gateway_list_is_an_ok_api_with_nothing_to_try(tmp_path: Path) -> None:
    """Two 200s and a gateways list: the API is ok (the counterpart of the failures above)."""
    tk = _measure(tmp_path)
    assert (tk["api_status"], tk["api_failure"], tk["ca_cert_status"]) == ("ok", None, True)
    assert (tk["x_gateways"], tk["transport_status"], tk["failing_gateways"]) == ([], {}, None)


def _gateway(ports: dict[str, int]) -> dict[str, Any]:
    return {"gateways": [{"host": "gw.test", "ip_address": "127.0.0.1", "capabilities": {"transport": [
        {"type": "openvpn", "protocols": ["tcp"], "ports": [str(ports["closed"]), str(ports["ovpn"])]},
        {"type": "obfs4", "protocols": ["tcp"], "ports": [str(ports["impostor"])], "options": {"cert": CERT}}]}}]}


def test_a_transport_is_ok_when_any_gateway_port_worked_and_obfs4_is_not_split(tmp_path: Path) -> None:
    """One OpenVPN port refused and one that answered: the transport works (any port), the refused one is in
    failing_gateways. An obfs4 bridge that fails its handshake is not retried as OpenVPN in two segments."""
    tk = _measure(tmp_path, eip=_gateway)
    assert tk["transport_status"] == {"openvpn": "ok", "obfs4": "blocked"}
    refused, answered, obfs4 = tk["x_gateways"]
    assert (refused["failure"], answered["failure"]) == ("connection_refused", None)
    assert refused["summary"] == {"connect": {"failure": "connection_refused"}} and "split" not in refused
    assert obfs4["summary"]["connect"] == {"failure": None} and obfs4["failure"] is not None
    assert "split" not in obfs4
    assert tk["failing_gateways"] == [
        {"ip": "127.0.0.1", "port": refused["port"], "transport_type": "openvpn"},
        {"ip": "127.0.0.1", "port": obfs4["port"], "transport_type": "obfs4"}]


def _one(transports: list[Any], **gateway: Any) -> dict[str, Any]:
    return {"gateways": [{"ip_address": "198.18.9.1", "capabilities": {"transport": transports}, **gateway}]}


def test_a_port_of_thousands_of_digits_is_skipped_not_raised() -> None:
    """int() of a 5,000-digit string raises in Python 3.11+: the length bound keeps a hostile port a skip."""
    doc = _one([{"type": "openvpn", "protocols": ["tcp"], "ports": ["9" * 5000, "1194"]}])
    gateways, skipped = riseupvpn.read_gateways(doc)
    assert [g.port for g in gateways] == [1194] and skipped == {"a port out of range": 1}


def test_at_most_max_ports_transports_and_ports_per_gateway() -> None:
    """A gateway listing many transports or ports costs at most MAX_PORTS of each, in the listed order."""
    n = riseupvpn.MAX_PORTS
    many_ports = _one([{"type": "openvpn", "protocols": ["tcp"], "ports": [str(1000 + i) for i in range(n + 4)]}])
    assert [g.port for g in riseupvpn.read_gateways(many_ports)[0]] == [1000 + i for i in range(n)]
    many_transports = _one([{"type": "openvpn", "protocols": ["tcp"], "ports": [str(2000 + i)]} for i in range(n + 4)])
    assert [g.port for g in riseupvpn.read_gateways(many_transports)[0]] == [2000 + i for i in range(n)]


def test_a_gateway_s_host_and_location_are_cut_short() -> None:
    """Hostile text from the eip-service is recorded bounded: a host at 253 characters, a location at 64."""
    doc = _one([{"type": "openvpn", "protocols": ["tcp"], "ports": ["1194"]}], host="h" * 1000, location="L" * 1000)
    (g,) = riseupvpn.read_gateways(doc)[0]
    assert (len(g.host or ""), len(g.location or "")) == (253, 64)


@pytest.mark.parametrize("address", ["ff02::1", "239.1.2.3", "::"])
def test_multicast_and_unspecified_addresses_are_not_tried(address: str) -> None:
    """No server has these: skipped and counted."""
    doc = {"gateways": [{"ip_address": address, "capabilities": {"transport": [
        {"type": "openvpn", "protocols": ["tcp"], "ports": ["1194"]}]}}]}
    assert riseupvpn.read_gateways(doc) == ([], {"an address no server has": 1})
