"""Edges of the VPN and obfs4 wire clients (netx.openvpn, netx.wireguard, netx.obfs4) and of the circumvention
verdicts (model.vpnverdict, model.wgverdict) that the other tests leave open, found by mutation testing: what a
server's answer must hold to count, which answers to an earlier attempt still count, how a flood of stray datagrams
is bounded, and that a cancelled handshake stays cancelled. The servers are fakes on the loopback."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tamperscope.collector.testing import free_port
from tamperscope.model import failures as F
from tamperscope.model.torverdict import SCAN
from tamperscope.model.vpnverdict import riseupvpn_verdict
from tamperscope.model.wgverdict import wireguard_verdict
from tamperscope.netx import obfs4, openvpn, tcp
from tamperscope.netx import wireguard as wg
from tamperscope.netx.classify import NetxError
from tamperscope.netx.trace import Trace
from tamperscope.wire import wireguard as W
from tests.unit.test_netx_servers import TCPServer
from tests.unit.test_tor import CERT, IDENTITY, NODE_ID, _mac, bridge_reply

# --------------------------------------------------------------------------- helpers


def _ovpn_reset(session: bytes, acks: tuple[int, ...] = (0,), opcode: int = openvpn.HARD_RESET_SERVER_V2) -> bytes:
    """A server's packet (no TCP framing): opcode, its session id, our acks, our session id, its message id 0."""
    return (bytes([opcode << 3]) + os.urandom(8) + bytes([len(acks)]) + struct.pack(f"!{len(acks)}I", *acks)
            + session + struct.pack("!I", 0))


class _Udp(asyncio.DatagramProtocol):
    """A UDP server whose ``answer`` gives the datagrams to send back for each one received (and what came)."""

    def __init__(self, answer: Callable[[bytes, list[bytes]], list[bytes]]) -> None:
        self.answer = answer
        self.got: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.got.append(data)
        for out in self.answer(data, self.got):
            self.transport.sendto(out, addr)


async def _with_udp(answer: Callable[[bytes, list[bytes]], list[bytes]],
                    client: Callable[[int], Awaitable[Any]]) -> tuple[Any, _Udp]:
    proto = _Udp(answer)
    port = free_port(udp=True)
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: proto, local_addr=("127.0.0.1", port))
    try:
        return await client(port), proto
    finally:
        transport.close()


def _events(trace: Trace, op: str) -> list[dict[str, Any]]:
    return [e for e in trace.test_keys()["network_events"] if e["operation"] == op]


# --------------------------------------------------------------------------- openvpn: the server's reset


def test_an_openvpn_packet_that_only_acknowledges_is_no_server_reset() -> None:
    """Only opcode 8 (P_CONTROL_HARD_RESET_SERVER_V2) counts: a P_ACK_V1 or P_CONTROL_V1 laid out alike does not
    (would break if the opcode were not checked)."""
    ours = os.urandom(8)
    assert openvpn.check_reset(_ovpn_reset(ours), ours)
    for opcode in (4, 5, 9, 0):
        assert not openvpn.check_reset(_ovpn_reset(ours, opcode=opcode), ours), opcode


def test_a_reset_cut_anywhere_is_refused_without_raising() -> None:
    """Every prefix of a good reset is no reset and raises nothing: cut at its ack count (an IndexError if that
    byte were read unchecked) or in its final message id (which must be there in full)."""
    ours = os.urandom(8)
    good = _ovpn_reset(ours)
    for n in range(len(good)):
        assert openvpn.check_reset(good[:n], ours) is False, n
    assert openvpn.check_reset(good, ours) is True


def test_message_zero_may_be_any_of_the_acks_but_must_be_one() -> None:
    """OpenVPN may acknowledge up to 8 ids at once: 0 anywhere in the list counts, a list without 0 does not."""
    ours = os.urandom(8)
    assert openvpn.check_reset(_ovpn_reset(ours, acks=(3, 0)), ours)
    assert openvpn.check_reset(_ovpn_reset(ours, acks=(1, 2, 3, 4, 5, 6, 7, 0)), ours)
    assert not openvpn.check_reset(_ovpn_reset(ours, acks=(3, 1)), ours)
    # more than OpenVPN's RELIABLE_ACK_SIZE (8) acknowledgements, however complete the frame: not OpenVPN's
    assert not openvpn.check_reset(_ovpn_reset(ours, acks=(1, 2, 3, 4, 5, 6, 7, 8, 0)), ours)


async def _tcp_handshake(serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
                         timeout: float) -> int | str:
    async with TCPServer(serve, port=free_port()) as server:
        async with await tcp.connect("127.0.0.1", server.port, trace=Trace(), timeout=2) as stream:
            try:
                return await openvpn.handshake(stream, timeout=timeout)
            except NetxError as exc:
                return exc.failure


def test_an_openvpn_frame_longer_than_a_reset_is_refused_before_it_is_read() -> None:
    """A length prefix past MAX_ANSWER is no reset: refused at once, not read (or waited for) to the deadline."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(64)
        writer.write(b"\xff\xff" + os.urandom(64))  # 65535 bytes announced, a trickle sent
        await writer.drain()
        await asyncio.sleep(30)

    # the deadline far above the bound: a loaded machine (this runs in the low-priority pass) does not reach it
    start = time.monotonic()
    assert asyncio.run(asyncio.wait_for(_tcp_handshake(serve, timeout=20), 40)) == F.OPENVPN_HANDSHAKE_FAILED
    assert time.monotonic() - start < 10


def test_the_openvpn_answer_s_size_is_its_frame_not_what_came_after_it() -> None:
    """The bytes the answer took are its frame's (2 + its length), however much the same segment carried after."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.readexactly(16)
        packet = _ovpn_reset(data[3:11])
        writer.write(struct.pack("!H", len(packet)) + packet + os.urandom(40))  # then a P_CONTROL_V1's bytes
        await writer.drain()
        await reader.read(1)

    assert asyncio.run(asyncio.wait_for(_tcp_handshake(serve, timeout=3), 10)) == 2 + 26


# --------------------------------------------------------------------------- openvpn over UDP


def test_a_flood_of_stray_datagrams_is_counted_not_recorded_one_by_one_openvpn() -> None:
    """20 datagrams that are no reset, then the reset: success, and only MAX_IGNORED_EVENTS of the strays are in
    network_events (a flood would otherwise grow the measurement without bound)."""
    trace = Trace()

    def answer(data: bytes, got: list[bytes]) -> list[bytes]:
        return [b"\x00stray"] * 20 + [_ovpn_reset(data[1:9])]

    async def main() -> tuple[Any, _Udp]:
        return await _with_udp(answer, lambda port: openvpn.udp_handshake("127.0.0.1", port, trace=trace, timeout=3))

    failure, _ = asyncio.run(asyncio.wait_for(main(), 10))
    assert failure is None
    reads = _events(trace, F.READ_FROM)
    assert len(reads) == openvpn.MAX_IGNORED_EVENTS + 1, len(reads)
    assert [bool(e.get("x_openvpn_ignored")) for e in reads] == [True] * openvpn.MAX_IGNORED_EVENTS + [False]


def test_a_late_reset_to_an_earlier_openvpn_session_still_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server answers the first session's reset only after the retry's came: the answer is still ours."""
    monkeypatch.setattr(openvpn, "UDP_RETRY", 0.1)

    def answer(data: bytes, got: list[bytes]) -> list[bytes]:
        return [_ovpn_reset(got[0][1:9])] if len(got) == 2 else []

    async def main() -> tuple[Any, _Udp]:
        return await _with_udp(answer, lambda port: openvpn.udp_handshake("127.0.0.1", port, trace=Trace(),
                                                                          timeout=3))

    failure, proto = asyncio.run(asyncio.wait_for(main(), 10))
    assert failure is None and len(proto.got) >= 2


# --------------------------------------------------------------------------- wireguard

SERVER, CLIENT, PSK = (bytes([n]) * 32 for n in (7, 9, 11))
KEYS = wg.Keys(CLIENT, W.public_key(SERVER), PSK)


def _wg(answer: Callable[[bytes, list[bytes]], list[bytes]], timeout: float = 3,
        trace: Trace | None = None) -> tuple[wg.Handshake, _Udp]:
    async def main() -> tuple[wg.Handshake, _Udp]:
        return await _with_udp(answer, lambda port: wg.handshake("127.0.0.1", port, KEYS, trace=trace or Trace(),
                                                                 timeout=timeout))

    return asyncio.run(asyncio.wait_for(main(), 10))


def _response(init: bytes) -> bytes:
    answered = W.respond(SERVER, init, PSK)
    assert answered is not None
    return answered[1]


def test_junk_datagrams_never_start_with_a_wireguard_type_and_span_their_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The random draws at both ends: the first byte stays 5..255 (never a WireGuard type 1-4) and the size spans
    JUNK_SIZES inclusive."""
    monkeypatch.setattr(secrets, "randbelow", lambda n: 0)
    low = wg.junk_datagram()
    monkeypatch.setattr(secrets, "randbelow", lambda n: n - 1)
    high = wg.junk_datagram()
    assert (low[0], len(low)) == (5, wg.JUNK_SIZES[0])
    assert (high[0], len(high)) == (255, wg.JUNK_SIZES[1])


def test_a_response_with_our_index_that_does_not_open_with_our_keys_is_ignored() -> None:
    """A datagram shaped as a response to our index, but not made with the server's key: no proof that the
    server was reached (an on-path box can forge the header, not the content)."""

    def answer(data: bytes, got: list[bytes]) -> list[bytes]:
        forged = struct.pack("<B3xII", W.RESPONSE, 1, struct.unpack_from("<I", data, 4)[0])
        return [forged + os.urandom(W.RESPONSE_SIZE - len(forged))]

    h, _ = _wg(answer, timeout=1.5)
    assert (h.failure, h.answer) == ("generic_timeout_error", None) and h.ignored >= 1


def test_a_cookie_reply_shows_the_wireguard_server_was_reached() -> None:
    """A server under load answers with a cookie reply to our index: reached, answer "cookie"."""

    def answer(data: bytes, got: list[bytes]) -> list[bytes]:
        head = struct.pack("<B3xI", W.COOKIE_REPLY, struct.unpack_from("<I", data, 4)[0])
        return [head + os.urandom(W.COOKIE_REPLY_SIZE - len(head))]

    h, _ = _wg(answer)
    assert (h.failure, h.answer, h.ignored) == (None, "cookie", 0)


def test_a_flood_of_stray_datagrams_is_counted_not_recorded_one_by_one_wireguard() -> None:
    """20 strays then the response: all 20 counted, only MAX_IGNORED_EVENTS of them in network_events."""
    trace = Trace()
    h, _ = _wg(lambda data, got: [b"\x04stray"] * 20 + [_response(data)], trace=trace)
    assert (h.failure, h.answer, h.ignored) == (None, "response", 20)
    kinds = [e.get("x_wireguard") for e in _events(trace, F.READ_FROM)]
    assert kinds == ["ignored"] * wg.MAX_IGNORED_EVENTS + ["response"]


def test_a_late_answer_to_an_earlier_initiation_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server answers the first initiation only after the retransmission came: still our server's answer."""
    monkeypatch.setattr(wg, "RETRY", 0.1)
    h, proto = _wg(lambda data, got: [_response(got[0])] if len(got) == 2 else [])
    assert (h.failure, h.answer) == (None, "response") and h.initiations >= 2 and len(proto.got) >= 2


def test_an_answer_to_a_retransmission_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first initiation lost, the later ones answered: the answer to the latest is recognised."""
    monkeypatch.setattr(wg, "RETRY", 0.1)
    h, _ = _wg(lambda data, got: [_response(data)] if len(got) >= 2 else [])
    assert (h.failure, h.answer) == (None, "response") and h.initiations >= 2


@pytest.mark.parametrize("start", [
    lambda port: openvpn.udp_handshake("127.0.0.1", port, trace=Trace(), timeout=5),
    lambda port: wg.handshake("127.0.0.1", port, KEYS, trace=Trace(), timeout=5),
], ids=["openvpn-udp", "wireguard"])
def test_cancelling_a_udp_handshake_stays_a_cancellation(start: Callable[[int], Awaitable[Any]]) -> None:
    """A cancelled exchange raises CancelledError, not a failure string (which would swallow a shutdown)."""

    async def main() -> None:
        async def client(port: int) -> None:
            task = asyncio.ensure_future(start(port))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        await _with_udp(lambda data, got: [], client)

    asyncio.run(asyncio.wait_for(main(), 10))


# --------------------------------------------------------------------------- obfs4

NOW = 1_800_000_000.0  # the client's clock, and the fake bridge's: no hour turns during a test
EPOCH = str(int(NOW) // 3600).encode()


def test_a_cert_of_the_wrong_length_is_refused_either_way() -> None:
    """52 bytes exactly: one more (or less) is no bridge identity, not one with a byte ignored."""
    raw = NODE_ID + IDENTITY
    for wrong in (raw + b"\x00", raw[:-1]):
        with pytest.raises(ValueError, match="must hold 52 bytes"):
            obfs4.parse_cert(base64.b64encode(wrong).decode().rstrip("="))


def test_a_cert_copied_with_surrounding_whitespace_is_read() -> None:
    """As pasted from a bridge line: spaces or a newline around it are not part of it."""
    assert obfs4.parse_cert(f"  {CERT}\n") == (NODE_ID, IDENTITY)


def _bridge(kind: str) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """A fake obfs4 bridge at hour EPOCH. ``ok``: a right answer; ``split``: the same in two segments, cut inside
    its MAC; ``unreduced``: its representative the other root (bit 254 set, as an older bridge may send);
    ``bad_mac``: a wrong final MAC; ``low_order``: a representative of the all-zero point (an impostor who knows the
    bridge line: right mark and MAC); ``far_mark``: padding that puts the mark past obfs4's 8 KiB."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = b""
        while True:
            chunk = await reader.read(8192)
            if not chunk:
                return
            data += chunk
            at = data.find(_mac(data[:32]), 32 + obfs4.CLIENT_MIN_PAD)
            if at >= 0 and len(data) >= at + 32:
                break
        if data[at + 16:at + 32] != _mac(data[:at + 16] + EPOCH):
            return  # not this hour's MAC: the bridge hangs up
        rep, auth = bridge_reply(data)
        if kind == "unreduced":
            rep = (obfs4.P - (int.from_bytes(rep, "little") & ((1 << 254) - 1))).to_bytes(32, "little")
            assert rep[31] & 0x40  # bit 254 set: the first reading (bits 0-253) is not the key
        elif kind == "low_order":
            rep, auth = bytes(32), os.urandom(32)
        answer = rep + auth + os.urandom(8200 if kind == "far_mark" else 40) + _mac(rep)
        mac = _mac(answer + EPOCH)
        answer += bytes(a ^ 1 for a in mac) if kind == "bad_mac" else mac
        if kind == "split":
            writer.write(answer[:-8])
            await writer.drain()
            await asyncio.sleep(0.2)
            answer = answer[-8:]
        writer.write(answer + os.urandom(45))  # then the bridge's first frame
        await writer.drain()
        await reader.read(1)

    return serve


def _obfs4(kind: str) -> int | str:
    async def main() -> int | str:
        async with TCPServer(_bridge(kind), port=free_port()) as server:
            async with await tcp.connect("127.0.0.1", server.port, trace=Trace(), timeout=2) as stream:
                try:
                    return await obfs4.handshake(stream, NODE_ID, IDENTITY, timeout=3, clock=lambda: NOW)
                except NetxError as exc:
                    return exc.failure

    return asyncio.run(asyncio.wait_for(main(), 10))


def test_an_obfs4_answer_is_read_to_its_mac_and_no_further() -> None:
    """The bridge's answer proves its key; the bytes it took end at its MAC (the first frame after is not it)."""
    assert _obfs4("ok") == 32 + 32 + 40 + 16 + 16


def test_an_obfs4_answer_cut_inside_its_mac_is_waited_for() -> None:
    """The mark came, half the MAC after it: read on, do not judge the half (a slow link is no impostor)."""
    assert _obfs4("split") == 32 + 32 + 40 + 16 + 16


def test_an_older_bridge_s_representative_with_bit_254_is_read_too() -> None:
    """The other square root (bit 254 set) maps to the same key: the second reading finds the bridge."""
    assert _obfs4("unreduced") == 32 + 32 + 40 + 16 + 16


def test_an_obfs4_answer_with_a_wrong_mac_is_refused_whatever_its_auth() -> None:
    """A right AUTH does not excuse a wrong MAC (the MAC binds the answer and the hour)."""
    assert _obfs4("bad_mac") == F.OBFS4_HANDSHAKE_FAILED


def test_an_impostor_s_all_zero_point_is_a_failed_handshake_not_a_crash() -> None:
    """Whoever knows the bridge line can send a right mark and MAC; a representative of the all-zero point makes
    the key exchange fail: OBFS4_HANDSHAKE_FAILED (not a ValueError, and never a success)."""
    assert _obfs4("low_order") == F.OBFS4_HANDSHAKE_FAILED


def test_a_mark_past_obfs4_s_8_kib_is_too_long_whatever_follows() -> None:
    """The bridge's mark must come within MAX_HANDSHAKE bytes: one past it is refused, however right the rest."""
    assert _obfs4("far_mark") == F.OBFS4_HANDSHAKE_TOO_LONG


# --------------------------------------------------------------------------- the riseupvpn verdict


def _riseup(**tk: Any) -> dict[str, Any]:
    return {"test_name": "riseupvpn", "test_keys": tk}


def test_a_ca_certificate_that_failed_is_an_anomaly_even_with_the_api_ok() -> None:
    """``ca_cert_status`` false alone (the API said ok) is blocking: OONI's score_riseupvpn reads either flag."""
    v = riseupvpn_verdict(_riseup(api_status="ok", ca_cert_status=False, api_failure=None,
                                  transport_status={"openvpn": "ok", "obfs4": "ok"}))
    assert v.status == "anomaly" and v.evidence == ("test_keys.ca_cert_status",), v


def test_a_gateway_record_without_a_protocol_is_a_tcp_one() -> None:
    """x_gateways written before OpenVPN over UDP was measured have no "protocol": TCP, so a reset is tcp.rst
    (not a UDP port's failure, which names nothing for a reset)."""
    v = riseupvpn_verdict(_riseup(api_status="ok", ca_cert_status=True, transport_status={"openvpn": "blocked"},
                                  x_gateways=[{"transport_type": "openvpn", "failure": "connection_reset"}]))
    assert (v.status, v.mechanism, v.blocking) == ("anomaly", "tcp.rst", "tcp_ip"), v


def test_only_the_first_scan_gateways_name_a_blocked_transport() -> None:
    """Hostile lists are read up to SCAN records: a reset just past them says nothing, one just within does."""
    timeout = {"transport_type": "openvpn", "protocol": "tcp", "failure": "generic_timeout_error"}
    reset = {**timeout, "failure": "connection_reset"}

    def mechanism(gateways: list[dict[str, Any]]) -> str:
        return riseupvpn_verdict(_riseup(api_status="ok", ca_cert_status=True, transport_status={"openvpn": "blocked"},
                                         x_gateways=gateways)).mechanism

    assert mechanism([timeout] * SCAN + [reset]) == "tcp.drop"
    assert mechanism([timeout] * (SCAN - 1) + [reset]) == "tcp.rst"


def test_only_the_first_scan_api_failures_name_the_api_s_block() -> None:
    """The same bound on ``api_failure`` as a list (v0.2.0): a reset past SCAN strings is not read."""

    def mechanism(failures: list[str]) -> str:
        return riseupvpn_verdict(_riseup(api_status="blocked", ca_cert_status=True, api_failure=failures)).mechanism

    timeouts = ["generic_timeout_error"] * SCAN
    assert mechanism(timeouts + ["connection_reset"]) == mechanism(["generic_timeout_error"])
    assert mechanism(timeouts[1:] + ["connection_reset"]) == mechanism(["connection_reset"]) != mechanism(timeouts)


# --------------------------------------------------------------------------- the wireguard verdict


def _wg_verdict(**tk: Any) -> tuple[str, str, Any, float]:
    v = wireguard_verdict({"test_name": "wireguard", "test_keys": tk})
    return v.status, v.mechanism, v.blocking, v.confidence


def test_an_empty_wireguard_failure_string_is_no_success() -> None:
    """Only null is a handshake that worked: "" (hostile) is no result, neither ok nor an anomaly."""
    assert _wg_verdict(failure="")[0] == "failure"
    assert _wg_verdict(failure="", x_junk_first={"failure": None})[0] == "failure"


def test_a_resolver_with_no_answer_is_dns_drop() -> None:
    """dns_no_answer names dns.drop, as any dns_error does (not dns.poison)."""
    assert _wg_verdict(failure="dns_no_answer") == ("anomaly", "dns.drop", "dns", 0.7)


@pytest.mark.parametrize("junk", [{}, {"failure": ""}, {"failure": False}, {"answer": "response"}])
def test_only_a_null_junk_first_failure_proves_dpi(junk: dict[str, Any]) -> None:
    """The junk-first retry got through only when its ``failure`` is null; missing, "" or false says nothing, so
    the timeout stays a low-confidence drop (not DPI at 0.9, and no KeyError)."""
    assert _wg_verdict(failure="generic_timeout_error", x_junk_first=junk) == ("anomaly", "udp.drop", "tcp_ip", 0.5)
