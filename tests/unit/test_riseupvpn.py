"""The riseupvpn nettest on loopback (real TLS, HTTP, TCP, OpenVPN resets and obfs4 handshakes; its URLs
replaced, as only tests may): the API is reached only through the CA the provider serves, the gateways'
transports count only when their first exchange succeeds, and a hostile eip-service costs nothing. The
gateways here are fakes written for these tests; the lab runs real ones (Debian's openvpn and obfs4proxy:
tests/lab/test_riseupvpn.py)."""

from __future__ import annotations

import asyncio
import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest

from tamperscope.analysis.verdicts import verdict_for
from tamperscope.collector.testing import free_port
from tamperscope.model import failures as F
from tamperscope.model.measurement import ProbeInfo
from tamperscope.nettests import GROUPS, riseupvpn
from tamperscope.nettests.base import Context, NettestError
from tamperscope.netx import openvpn
from tamperscope.probe.engine import Engine
from tamperscope.probe.privacy import Scrubber
from tests.unit.test_netx_servers import TCPServer, TestCA, http_response, read_head, reset
from tests.unit.test_telegram import FAST
from tests.unit.test_tor import CERT, _bridge


def _server_reset(frame: bytes, *, session: bytes | None = None) -> bytes:
    """A server's P_CONTROL_HARD_RESET_SERVER_V2 acknowledging message 0 of the client's session."""
    theirs = frame[1:9] if session is None else session
    packet = bytes([openvpn.HARD_RESET_SERVER_V2 << 3]) + os.urandom(8) + b"\x01" + struct.pack("!I", 0) + theirs \
        + struct.pack("!I", 0)
    return struct.pack("!H", len(packet)) + packet


def _openvpn(kind: str = "ok") -> Any:
    """A fake OpenVPN server: answers the client's reset (``ok``), resets the connection (``rst``, as a DPI box
    that knows OpenVPN's first packet), or answers for another session (``impostor``)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await reader.read(64)  # what one segment brought (the client's pieces are 50 ms apart)
        whole = len(first) == 16
        data = first + await reader.readexactly(2 + struct.unpack("!H", first[:2])[0] - len(first))
        frame = data[2:]
        assert frame[0] >> 3 == openvpn.HARD_RESET_CLIENT_V2 and len(frame) == 14
        if kind == "rst" or (kind == "dpi" and whole):  # "dpi": reset only what came in one segment
            reset(writer)
            return
        writer.write(_server_reset(frame, session=os.urandom(8) if kind == "impostor" else None))
        await writer.drain()
        await reader.read(1)

    return serve


class _UdpOpenVPN(asyncio.DatagramProtocol):
    """The same fake server over UDP: answers each hard reset (``ok``; ``impostor``: for another session), or
    stays silent (``rst``, ``dpi``: DPI that knows OpenVPN drops its datagrams)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.got: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.got.append(data)
        if self.kind in ("ok", "impostor"):
            answer = _server_reset(data, session=os.urandom(8) if self.kind == "impostor" else None)[2:]
            self.transport.sendto(b"\x00junk", addr)  # no reset: noted, ignored
            self.transport.sendto(answer, addr)  # type: ignore[attr-defined]


def _eip(ports: dict[str, int], *, openvpn_port: str = "ovpn") -> dict[str, Any]:
    return {"version": 3, "serial": 3, "gateways": [
        {"host": "gw1.test", "ip_address": "127.0.0.1", "location": "lab", "capabilities": {"transport": [
            {"type": "openvpn", "protocols": ["tcp", "udp"], "ports": [str(ports[openvpn_port])]},
            {"type": "obfs4", "protocols": ["tcp"], "ports": [str(ports["bridge"])],
             "options": {"cert": CERT, "iatMode": "0"}}]}}]}


def _run(tmp_path: Path, *, ca_body: bytes | None = None, api_ca: str = "provider", eip: Any = None,
         openvpn_kind: str = "ok") -> dict[str, Any]:
    public = TestCA(tmp_path, "a public CA")  # the trust store's: black.riseup.net's certificate
    provider = TestCA(tmp_path, "the provider's CA")  # what ca.crt serves, and the API's certificate is from
    other = TestCA(tmp_path, "an interceptor's CA")

    async def main() -> dict[str, Any]:
        # the gateway's TCP and UDP ports have one number: one from below the ephemeral range, which no other
        # test's socket takes meanwhile (QA: an ephemeral TCP port's number may be some other test's UDP socket's)
        async with TCPServer(_openvpn(openvpn_kind), port=free_port()) as ovpn, TCPServer(_bridge()) as bridge:
            ports = {"ovpn": ovpn.port, "bridge": bridge.port}
            loop = asyncio.get_running_loop()
            udp, _ = await loop.create_datagram_endpoint(lambda: _UdpOpenVPN(openvpn_kind),
                                                         local_addr=("127.0.0.1", ovpn.port))
            document = _eip(ports) if eip is None else eip(ports)
            body = document if isinstance(document, bytes) else json.dumps(document).encode()

            async def ca(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await read_head(reader)
                writer.write(http_response(200, provider.pem.read_bytes() if ca_body is None else ca_body))
                await writer.drain()

            async def api(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                _, target, _, _ = await read_head(reader)
                writer.write(http_response(200, body if "eip-service" in target else b'{"domain": "riseup.net"}'))
                await writer.drain()

            api_issuer = provider if api_ca == "provider" else other
            async with TCPServer(ca, ssl_context=public.server_context("localhost")) as ca_server, \
                    TCPServer(api, ssl_context=api_issuer.server_context("localhost")) as api_server:
                urls = (f"https://localhost:{ca_server.port}/ca.crt",
                        f"https://localhost:{api_server.port}/provider.json",
                        f"https://localhost:{api_server.port}/3/config/eip-service.json")
                ctx = Context(timeouts=FAST, ca_bundle=str(public.pem), options={"riseupvpn_urls": urls})
                try:
                    return await Engine(riseupvpn, ctx, ProbeInfo(), Scrubber([], interfaces=False)).measure(None)
                finally:
                    udp.close()

    return asyncio.run(asyncio.wait_for(main(), 30))


def _consistent(m: dict[str, Any]) -> None:
    """The verdict the probe wrote is the analysis's."""
    written = verdict_for(m).to_test_keys()
    assert written == {k: m["test_keys"][k] for k in written}


def test_the_api_and_both_transports_reached(tmp_path: Path) -> None:
    m = _run(tmp_path)
    tk = m["test_keys"]
    assert (tk["api_status"], tk["api_failure"], tk["ca_cert_status"]) == ("ok", None, True)
    assert tk["transport_status"] == {"openvpn": "ok", "obfs4": "ok"}
    assert tk["failing_gateways"] is None
    ok = {"connect": {"failure": None}, "handshake": {"failure": None}}
    assert [(g["transport_type"], g["protocol"], g["failure"], g["summary"]) for g in tk["x_gateways"]] == [
        ("openvpn", "tcp", None, ok), ("openvpn", "udp", None, {"handshake": {"failure": None}}),
        ("obfs4", "tcp", None, ok)]
    assert [g["host"] for g in tk["x_gateways"]] == ["gw1.test"] * 3
    # over UDP: the reset as one datagram (14 bytes), the junk before the answer noted and ignored
    udp = [(e["operation"], e["num_bytes"], bool(e.get("x_openvpn_ignored"))) for e in tk["network_events"]
           if e.get("proto") == "udp" and "udp" in (e.get("tags") or [])]
    assert udp == [("write_to", 14, False), ("read_from", 5, True), ("read_from", 26, False)]
    assert len(tk["requests"]) == 3 and {r["response"]["code"] for r in tk["requests"]} == {200}
    assert {t for c in tk["tcp_connect"] for t in c["tags"]} >= {"api", "openvpn", "obfs4"}
    assert (tk["x_status"], tk["x_mechanism"], tk["accessible"]) == ("ok", "none", True)
    _consistent(m)


def test_a_ca_answer_without_a_certificate_stops_the_test(tmp_path: Path) -> None:
    m = _run(tmp_path, ca_body=b"<html>This site is blocked</html>")
    tk = m["test_keys"]
    assert (tk["api_status"], tk["api_failure"], tk["ca_cert_status"]) == ("blocked", "invalid_ca", False)
    assert len(tk["requests"]) == 1 and tk["x_gateways"] == [] and tk["transport_status"] == {}
    assert (tk["x_status"], tk["x_mechanism"]) == ("anomaly", "none")
    _consistent(m)


def test_an_api_certificate_the_provider_s_ca_does_not_vouch_for_is_blocked(tmp_path: Path) -> None:
    """The trust store does not know the interceptor's CA, and the CA the provider served does not vouch for it."""
    m = _run(tmp_path, api_ca="other")
    tk = m["test_keys"]
    assert (tk["api_status"], tk["api_failure"], tk["ca_cert_status"]) == ("blocked", "ssl_unknown_authority", True)
    assert tk["x_gateways"] == []
    assert (tk["x_status"], tk["x_mechanism"]) == ("anomaly", "tls.mitm")
    _consistent(m)


def test_openvpn_reset_after_the_connect_is_blocking_ooni_s_test_would_miss(tmp_path: Path) -> None:
    m = _run(tmp_path, openvpn_kind="rst")
    tk = m["test_keys"]
    assert all(c["status"]["success"] for c in tk["tcp_connect"])  # OONI's test: every gateway reached
    assert tk["transport_status"] == {"openvpn": "blocked", "obfs4": "ok"}
    ovpn = tk["x_gateways"][0]
    assert ovpn["summary"] == {"connect": {"failure": None}, "handshake": {"failure": "connection_reset"}}
    udp = tk["x_gateways"][1]  # over UDP, the same DPI drops the reset's datagram: a timeout, resets resent
    assert (udp["protocol"], udp["failure"]) == ("udp", "generic_timeout_error")
    # OONI's failing_gateways lists TCP ports only (its test measures nothing else): UDP's are in x_gateways
    assert tk["failing_gateways"] == [{"ip": "127.0.0.1", "port": ovpn["port"], "transport_type": "openvpn"}]
    assert (tk["x_status"], tk["x_mechanism"], tk["blocking"]) == ("anomaly", "tcp.rst", "tcp_ip")
    _consistent(m)


def test_a_reset_of_the_whole_first_packet_is_retried_in_two_segments(tmp_path: Path) -> None:
    """Geneva's segmentation by the client alone: the plain first packet is reset, the same packet split after its
    length gets the server's answer: what failed it reads one segment at a time. The transport stays blocked (the
    app does not split), and the retry is its own connection, tagged."""
    tk = _run(tmp_path, openvpn_kind="dpi")["test_keys"]
    ovpn = tk["x_gateways"][0]
    assert ovpn["summary"]["handshake"] == {"failure": "connection_reset"}
    assert ovpn["split"] == {"connect": None, "handshake": None}
    assert tk["transport_status"]["openvpn"] == "blocked" and (tk["x_status"], tk["x_mechanism"]) == ("anomaly",
                                                                                                       "tcp.rst")
    (split,) = [c for c in tk["tcp_connect"] if "split" in c["tags"]]
    assert split["tags"] == ["openvpn", "split"]
    writes = [e["num_bytes"] for e in tk["network_events"]
              if e["operation"] == "write" and e["transaction_id"] == split["transaction_id"]]
    assert writes == [2, 14]  # the length, then the packet
    # a server that resets whatever it gets: the split does not help, and says so
    (tmp_path / "again").mkdir()
    tk = _run(tmp_path / "again", openvpn_kind="rst")["test_keys"]
    assert tk["x_gateways"][0]["split"] == {"connect": None, "handshake": "connection_reset"}
    assert not any("split" in g for g in tk["x_gateways"][1:])  # UDP has no segments; obfs4 worked


def test_an_answer_for_another_session_is_no_openvpn_server(tmp_path: Path) -> None:
    tk = _run(tmp_path, openvpn_kind="impostor")["test_keys"]
    assert tk["x_gateways"][0]["failure"] == F.OPENVPN_HANDSHAKE_FAILED
    assert tk["transport_status"]["openvpn"] == "blocked"
    assert (tk["x_status"], tk["x_mechanism"]) == ("anomaly", "none")


@pytest.mark.parametrize("document", [b"<html>blocked</html>", b"[" * 100_000, {"gateways": "none"}])
def test_an_eip_service_that_is_not_one_blocks_the_api(tmp_path: Path, document: Any) -> None:
    tk = _run(tmp_path, eip=lambda ports: document)["test_keys"]
    assert (tk["api_status"], tk["api_failure"], tk["ca_cert_status"]) == ("blocked", "http_request_failed", True)
    assert tk["x_gateways"] == []


def test_hostile_gateways_are_skipped_and_counted() -> None:
    good = {"type": "openvpn", "protocols": ["tcp"], "ports": ["1194"]}
    document = {"gateways": [
        "not an object",
        {"ip_address": "gw.example.org", "capabilities": {"transport": [good]}},
        {"ip_address": 3323068417, "capabilities": {"transport": [good]}},  # an int is an address to ip_address()
        {"ip_address": "0.0.0.0", "capabilities": {"transport": [good]}},
        {"ip_address": "224.0.0.1", "capabilities": {"transport": [good]}},
        {"ip_address": "198.18.9.3", "capabilities": {"transport": [
            {"type": "obfs4", "protocols": ["tcp"], "ports": ["1"], "options": {"cert": 5}}]}},
        {"ip_address": "198.18.9.1", "capabilities": {"transport": [
            {"type": "openvpn", "protocols": ["tcp"], "ports": ["0", "65536", "x", True, "٤٤٣", 443, "1194"]},
            {"type": "openvpn", "protocols": ["udp"], "ports": ["53"]},
            {"type": "obfs4", "protocols": ["tcp"], "ports": ["23042"], "options": {"cert": "AAAA"}},
            {"type": "obfs4", "protocols": ["tcp"], "ports": ["23042"]},
            {"type": "kcp", "protocols": ["tcp"], "ports": ["1"]},
            {"type": "openvpn", "protocols": ["tcp"], "ports": ["1194"]},  # listed twice: tried once
        ]}},
        *({"ip_address": "198.18.9.2", "capabilities": {"transport": [good]}} for _ in range(70)),
    ]}
    gateways, skipped = riseupvpn.read_gateways(document)
    assert [(g.ip, g.port, g.transport, g.protocol) for g in gateways] == [
        ("198.18.9.1", 443, "openvpn", "tcp"), ("198.18.9.1", 1194, "openvpn", "tcp"),
        ("198.18.9.1", 53, "openvpn", "udp"), ("198.18.9.2", 1194, "openvpn", "tcp")]
    # obfs4 runs over TCP only: a listing that says UDP is not tried
    udp_obfs4 = {"type": "obfs4", "protocols": ["udp"], "ports": ["1"], "options": {"cert": CERT}}
    assert riseupvpn.read_gateways({"gateways": [{"ip_address": "1.2.3.4",
                                                  "capabilities": {"transport": [udp_obfs4]}}]}) == ([], {})
    assert skipped == {"not an object": 1, "no ip address": 2, "an address no server has": 2, "a port out of range": 5,
                       "obfs4 without a valid cert": 3, "more than 64 gateways": 13}
    assert riseupvpn.read_gateways({"gateways": [{"ip_address": "1.2.3.4", "capabilities": []}]}) == ([], {})
    assert riseupvpn.read_gateways([1, 2]) == ([], {})


def test_a_server_reset_is_checked_against_our_session() -> None:
    ours = os.urandom(8)
    hello = openvpn.client_reset(ours)
    assert hello[:2] == b"\x00\x0e" and hello[2] == 0x38 and hello[3:11] == ours
    good = _server_reset(hello[2:])[2:]
    assert openvpn.check_reset(good, ours)
    assert not openvpn.check_reset(good, os.urandom(8))
    assert not openvpn.check_reset(bytes([7 << 3]) + good[1:], ours)  # a client's opcode
    assert not openvpn.check_reset(good[:12], ours)
    assert not openvpn.check_reset(good[:9] + b"\x00" + good[10:], ours)  # no acks
    assert not openvpn.check_reset(good[:9] + b"\x09" + good[10:], ours)  # more acks than OpenVPN sends


def test_the_verdict_reads_ooni_s_layout_without_our_gateways() -> None:
    m = {"test_name": "riseupvpn", "test_keys": {
        "api_status": "ok", "ca_cert_status": True, "transport_status": {"openvpn": "blocked", "obfs4": "ok"},
        "tcp_connect": [{"ip": "198.18.9.1", "port": 443, "status": {"failure": "generic_timeout_error"}}]}}
    assert (verdict_for(m).status, verdict_for(m).mechanism) == ("anomaly", "tcp.drop")


def test_riseupvpn_takes_no_input_and_is_in_the_circumvention_group() -> None:
    with pytest.raises(NettestError, match="no input"):
        riseupvpn.check_input("https://riseup.net/")
    assert GROUPS["circumvention"] == ("tor", "riseupvpn")


@pytest.mark.parametrize("failure, mechanism", [("generic_timeout_error", "udp.drop"), ("connection_refused", "none")])
def test_a_transport_blocked_over_udp_alone_is_named_by_its_datagrams(failure: str, mechanism: str) -> None:
    """A gateway that offers OpenVPN over UDP only: no TCP port failed, so the UDP port's failure names it (a
    timeout: the datagrams were dropped; a refusal names nothing). With a TCP failure beside it, TCP's decides."""
    udp = {"ip": "198.18.9.1", "port": 1194, "transport_type": "openvpn", "protocol": "udp", "failure": failure}
    m = {"test_name": "riseupvpn", "test_keys": {"api_status": "ok", "ca_cert_status": True,
                                                 "transport_status": {"openvpn": "blocked"}, "x_gateways": [udp]}}
    v = verdict_for(m)
    assert (v.status, v.mechanism, v.blocking) == ("anomaly", mechanism, "tcp_ip")
    tcp = {**udp, "protocol": "tcp", "failure": "connection_reset"}
    m["test_keys"]["x_gateways"] = [udp, tcp]
    assert verdict_for(m).mechanism == "tcp.rst"
