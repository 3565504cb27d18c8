"""`netx.ttlprobe` at its edges, without root: what a hostile network sends back is judged by the pure classifiers,
and the capture loop and the traceroute are driven with fake sockets (no packet is sent, no namespace is made)."""

from __future__ import annotations

import struct
from types import SimpleNamespace
from typing import Any

import pytest

from tamperscope.model import failures as F
from tamperscope.netx import ttlprobe
from tamperscope.wire import packet as P

US, SERVER, ROUTER, OTHER = "198.18.0.2", "198.18.0.9", "198.18.0.6", "198.18.7.7"
SPORT, DPORT = 40000, 80


def _icmp(itype: int, code: int, quote: bytes) -> bytes:
    body = struct.pack("!BBHI", itype, code, 0, 0) + quote
    return body[:2] + struct.pack("!H", P.checksum(body)) + body[4:]


def _from(src: str, icmp: bytes, dst: str = US) -> bytes:
    return P.ipv4_header(src, dst, P.PROTO_ICMP, len(icmp)) + icmp


def _tcp(pkt: bytes, *, trigger: bool = True) -> ttlprobe.Seen | None:
    return ttlprobe._classify(pkt, 0.0, server=SERVER, sport=SPORT, dport=DPORT, proto=P.PROTO_TCP, local=US,
                              trigger=trigger)


def _udp(pkt: bytes) -> ttlprobe.Seen | None:
    return ttlprobe._classify(pkt, 0.0, server=SERVER, sport=SPORT, dport=53, proto=P.PROTO_UDP, local=US)


def _trigger_segment(src: str = US, dst: str = SERVER) -> bytes:
    return P.tcp_packet(src, dst, SPORT, DPORT, seq=2, ack=2, flags=P.PSH | P.ACK, ttl=1, payload=b"GET / HTTP/1.1")


# -- which ICMP errors are about our flow ---------------------------------------------------------------------------

def test_a_time_exceeded_for_our_trigger_names_the_router() -> None:
    seen = _tcp(_from(ROUTER, _icmp(11, 0, _trigger_segment())))
    assert seen is not None and (seen.kind, seen.src) == ("icmp-time-exceeded", ROUTER)


def test_a_quote_of_a_packet_from_another_source_is_not_ours() -> None:
    """Would break if the quote's source address were not compared with ours (a forger's packet made a hop)."""
    assert _tcp(_from(ROUTER, _icmp(11, 0, _trigger_segment(src=OTHER)))) is None


def test_a_quote_of_a_packet_to_another_server_is_not_ours() -> None:
    """Would break if the quote's destination were not compared with the server's."""
    assert _tcp(_from(ROUTER, _icmp(11, 0, _trigger_segment(dst=OTHER)))) is None


def test_a_quote_of_a_later_fragment_is_not_ours() -> None:
    """A later fragment has no transport header: its first bytes only look like our ports."""
    seg = bytearray(_trigger_segment())
    seg[6:8] = struct.pack("!H", 1480 // 8)
    assert _tcp(_from(ROUTER, _icmp(11, 0, bytes(seg)))) is None


def test_an_icmp_error_sent_to_another_local_address_is_not_ours() -> None:
    assert _tcp(_from(ROUTER, _icmp(11, 0, _trigger_segment()), dst=OTHER)) is None


def test_a_quote_cut_before_the_ports_is_not_ours_and_raises_nothing() -> None:
    assert _tcp(_from(ROUTER, _icmp(11, 0, _trigger_segment()[:22]))) is None


def _bare_ack_quote(total_len: int) -> bytes:
    """The first 28 bytes (RFC 792's least) of a TCP packet of ``total_len`` bytes on the wire."""
    pkt = bytearray(P.tcp_packet(US, SERVER, SPORT, DPORT, seq=2, ack=2, flags=P.ACK, ttl=1))
    pkt[2:4] = struct.pack("!H", total_len)
    return bytes(pkt[:28])


def test_a_short_quote_of_a_bare_ack_with_timestamps_is_not_the_trigger() -> None:
    """52 bytes is the kernel's bare ACK with timestamps (20 + 32): a router's time-exceeded for it says nothing of
    the trigger; one byte more is a segment with data. Would break on `>=` or a smaller bare-ACK header."""
    assert _tcp(_from(ROUTER, _icmp(11, 0, _bare_ack_quote(52)))) is None
    seen = _tcp(_from(ROUTER, _icmp(11, 0, _bare_ack_quote(53))))
    assert seen is not None and seen.kind == "icmp-time-exceeded"
    # before the trigger (the connection's own packets) any quote of the flow counts
    assert _tcp(_from(ROUTER, _icmp(11, 0, _bare_ack_quote(52))), trigger=False) is not None


def test_a_destination_unreachable_is_told_from_a_time_exceeded() -> None:
    seen = _tcp(_from(ROUTER, _icmp(3, 13, _trigger_segment())))
    assert seen is not None and seen.kind == "icmp-unreachable"
    seen = _tcp(_from(ROUTER, _icmp(12, 0, _trigger_segment())))
    assert seen is not None and seen.kind == "icmp-12.0"


def test_an_echo_reply_counts_only_from_the_server() -> None:
    """Would break if any host's echo reply were taken for the server's."""
    echo = _icmp(0, 0, b"tamperscope")
    assert _udp(_from(OTHER, echo)) is None
    seen = _udp(_from(SERVER, echo))
    assert seen is not None and seen.kind == "echo-reply"


def test_an_icmp_message_shorter_than_its_header_is_nothing() -> None:
    assert _udp(_from(ROUTER, b"\x0b\x00\x00\x00")) is None


def test_a_datagram_from_the_server_to_other_ports_is_not_an_answer() -> None:
    """Would break if a UDP answer's ports were not compared with the flow's."""
    assert _udp(P.udp_packet(SERVER, US, 53, SPORT + 1, b"answer")) is None
    assert _udp(P.udp_packet(SERVER, US, 54, SPORT, b"answer")) is None
    seen = _udp(P.udp_packet(SERVER, US, 53, SPORT, b"answer"))
    assert seen is not None and (seen.kind, seen.payload) == ("udp", b"answer")


def test_a_segment_from_another_host_or_to_other_ports_is_not_an_answer() -> None:
    rst = dict(seq=1, ack=2, flags=P.RST | P.ACK)
    assert _tcp(P.tcp_packet(OTHER, US, DPORT, SPORT, **rst)) is None
    assert _tcp(P.tcp_packet(SERVER, US, DPORT, SPORT + 1, **rst)) is None
    seen = _tcp(P.tcp_packet(SERVER, US, DPORT, SPORT, **rst, ttl=57, ip_id=77))
    assert seen is not None and (seen.kind, seen.ttl, seen.ip_id, seen.flags) == ("tcp", 57, 77, P.RST | P.ACK)


# -- what a step says ----------------------------------------------------------------------------------------------

def test_a_step_names_a_router_only_from_a_time_exceeded() -> None:
    """Would break if an unreachable (or any other ICMP error) were taken for the hop's router."""
    step = ttlprobe.Step(3, True, None, [ttlprobe.Seen("icmp-unreachable", OTHER, 60, 0),
                                         ttlprobe.Seen("icmp-time-exceeded", ROUTER, 61, 0),
                                         ttlprobe.Seen("tcp", SERVER, 50, 1, P.RST)])
    assert step.icmp_from == ROUTER
    assert [s.kind for s in step.responses()] == ["tcp"]
    assert ttlprobe.Step(3, True, None, [ttlprobe.Seen("icmp-unreachable", OTHER, 60, 0)]).icmp_from is None


def test_a_payload_cut_short_keeps_its_length_on_the_wire() -> None:
    cut = ttlprobe.Seen("tcp", SERVER, 57, 1, P.PSH | P.ACK, 512, b"x" * 10, 0.123456, payload_len=9000)
    d = cut.as_dict()
    assert (d["payload_len"], d["flags"], d["window"], d["initial_ttl"], d["t"]) == (9000, "PA", 512, 64, 0.1235)
    whole = ttlprobe.Seen("udp", SERVER, 57, 1, payload=b"x" * 10).as_dict()
    assert (whole["payload_len"], whole["flags"], whole["window"]) == (10, None, None)


def test_tcp_flags_are_spelled_in_a_fixed_order() -> None:
    assert ttlprobe.tcp_flags(P.RST | P.ACK) == "RA"
    assert ttlprobe.tcp_flags(P.SYN | P.ACK) == "SA"
    assert ttlprobe.tcp_flags(P.FIN | P.PSH | P.ACK) == "FPA"
    assert ttlprobe.tcp_flags(0) == ""


# -- the capture loop, on a fake packet socket ---------------------------------------------------------------------

class _Queue:
    """A packet socket holding ``packets`` (data, packet type), then nothing."""

    def __init__(self, packets: list[tuple[bytes, int]]) -> None:
        self.packets = list(packets)

    def setblocking(self, flag: bool) -> None:
        pass

    def recvfrom(self, n: int) -> tuple[bytes, tuple[Any, ...]]:
        if not self.packets:
            raise BlockingIOError
        data, kind = self.packets.pop(0)
        return data, ("veth0", P.ETH_P_IP, kind, 1, b"")

    def recv(self, n: int) -> bytes:
        return self.recvfrom(n)[0]


def _capture(packets: list[tuple[bytes, int]]) -> ttlprobe.Capture:
    sock = _Queue(packets)
    # time stands still while packets are queued, and the deadline has passed once they are all read
    return ttlprobe.Capture(sock, clock=lambda: 0.0 if sock.packets else 100.0)  # type: ignore[arg-type]


def _answers(data: bytes, now: float) -> ttlprobe.Seen | None:
    return _udp(data)


def test_a_flood_of_answers_keeps_max_seen_and_counts_the_rest() -> None:
    """Would break if one packet more than MAX_SEEN were kept."""
    answer = P.udp_packet(SERVER, US, 53, SPORT, b"a")
    cap = _capture([(answer, 0)] * (ttlprobe.MAX_SEEN + 3))
    seen = cap.collect(1.0, _answers)
    assert (len(seen), cap.dropped, cap.ignored) == (ttlprobe.MAX_SEEN, 3, 0)


def test_the_payload_kept_per_trigger_is_bounded_across_packets() -> None:
    """Would break if the byte budget were not spent by each packet kept: three 40 KiB answers kept 120 KiB."""
    answer = P.udp_packet(SERVER, US, 53, SPORT, b"p" * (40 << 10))
    cap = _capture([(answer, 0)] * 3)
    seen = cap.collect(1.0, _answers)
    assert [len(s.payload) for s in seen] == [40 << 10, 24 << 10, 0]
    assert [s.as_dict()["payload_len"] for s in seen] == [40 << 10] * 3
    assert sum(len(s.payload) for s in seen) == ttlprobe.MAX_PAYLOAD


def test_our_own_outgoing_packets_are_neither_kept_nor_counted() -> None:
    """Would break if the packet socket's copies of what we sent were read as answers."""
    answer = P.udp_packet(SERVER, US, 53, SPORT, b"a")
    cap = _capture([(answer, ttlprobe.PACKET_OUTGOING), (b"\x45junk", 0), (answer, 0)])
    seen = cap.collect(1.0, _answers)
    assert (len(seen), cap.ignored, cap.dropped) == (1, 1, 0)


def test_a_packet_whose_parsing_raises_is_one_more_ignored() -> None:
    """Would break if a parse error escaped the capture loop (a hostile packet ended the trigger)."""
    def raises(data: bytes, now: float) -> ttlprobe.Seen | None:
        if data == b"bad":
            raise struct.error("unpack requires a buffer of 4 bytes")
        return _udp(data)

    cap = _capture([(b"bad", 0), (P.udp_packet(SERVER, US, 53, SPORT, b"a"), 0)])
    assert len(cap.collect(1.0, raises)) == 1 and cap.ignored == 1


# -- before the trigger --------------------------------------------------------------------------------------------

class _Conn:
    def __init__(self, peek: bytes | None) -> None:
        self.peek = peek

    def setblocking(self, flag: bool) -> None:
        pass

    def recv(self, n: int, flags: int = 0) -> bytes:
        if self.peek is None:
            raise BlockingIOError
        return self.peek


def _early(flags: int, payload: bytes = b"") -> list[ttlprobe.Seen]:
    return [ttlprobe.Seen("tcp", SERVER, 60, 1, flags, payload=payload)]


def test_what_came_back_before_the_trigger_spoils_the_step() -> None:
    """A reset, a FIN or data on the flow before the trigger went cannot be about it: each would otherwise be taken
    for a censor's answer at the trigger's TTL."""
    before = ttlprobe._before_trigger
    assert before(_Conn(None), []) is None  # type: ignore[arg-type]
    assert before(_Conn(None), _early(P.RST | P.ACK)) == F.CONNECTION_RESET  # type: ignore[arg-type]
    assert before(_Conn(None), _early(P.FIN | P.ACK)) == F.EOF_ERROR  # type: ignore[arg-type]
    assert before(_Conn(b""), []) == F.EOF_ERROR  # type: ignore[arg-type]
    answered = F.unknown("answered before the trigger")
    assert before(_Conn(None), _early(P.PSH | P.ACK, b"HTTP/1.1 403")) == answered  # type: ignore[arg-type]
    assert before(_Conn(b"H"), []) == answered  # type: ignore[arg-type]
    # a router's time-exceeded for the handshake's own packets is no answer
    assert before(_Conn(None), [ttlprobe.Seen("icmp-time-exceeded", ROUTER, 60, 0)]) is None  # type: ignore[arg-type]


# -- the traceroute's answers -----------------------------------------------------------------------------------------

IDENT = 0x1234


def _echo_request(seq: int, src: str = US, dst: str = SERVER, itype: int = 8) -> bytes:
    body = struct.pack("!BBHHH", itype, 0, 0, IDENT, seq) + b"tamperscope-locate"
    return P.ipv4_header(src, dst, P.PROTO_ICMP, len(body), ttl=1) + body


def _echo_reply(seq: int, src: str = SERVER, ident: int = IDENT) -> bytes:
    return _from(src, struct.pack("!BBHHH", 0, 0, 0, ident, seq) + b"tamperscope-locate")


def _hop(data: bytes, seq: int = 7) -> tuple[str, bool] | None:
    return ttlprobe._hop_reply(data, ip=SERVER, local=US, ident=IDENT, seq=seq)


def test_a_hop_is_named_by_a_time_exceeded_quoting_that_very_request() -> None:
    assert _hop(_from(ROUTER, _icmp(11, 0, _echo_request(7)))) == (ROUTER, False)
    assert _hop(_from(ROUTER, _icmp(11, 0, _echo_request(8)))) is None  # another TTL's request
    assert _hop(_from(ROUTER, _icmp(11, 1, _echo_request(7)))) is None  # reassembly timeout


def test_a_hop_is_not_named_by_a_quote_of_another_hosts_request() -> None:
    """Would break if the quote's source were not compared with ours (an on-path forger copies id and sequence)."""
    assert _hop(_from(ROUTER, _icmp(11, 0, _echo_request(7, src=OTHER)))) is None
    assert _hop(_from(ROUTER, _icmp(11, 0, _echo_request(7, dst=OTHER)))) is None


def test_a_hop_is_not_named_by_a_quote_of_an_echo_reply() -> None:
    """Would break if the quoted ICMP message's type were not checked (an echo reply of ours is no request)."""
    assert _hop(_from(ROUTER, _icmp(11, 0, _echo_request(7, itype=0)))) is None


def test_only_the_server_itself_answers_for_the_server() -> None:
    """Would break if an echo reply from any host, with our id and sequence, placed the server."""
    assert _hop(_echo_reply(7)) == (SERVER, True)
    assert _hop(_echo_reply(7, src=OTHER)) is None
    assert _hop(_echo_reply(7, ident=IDENT + 1)) is None
    assert _hop(_echo_reply(8)) is None


class _RawICMP:
    """A raw ICMP socket that records each echo request (its TTL and sequence) and, once they are all sent, hands
    back what ``answer`` makes of them."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.ttl = 0
        self.sent: dict[int, int] = {}  # ttl -> sequence
        self.queue: list[bytes] | None = None

    def setblocking(self, flag: bool) -> None:
        pass

    def setsockopt(self, level: int, opt: int, value: int) -> None:
        self.ttl = value

    def sendto(self, body: bytes, addr: tuple[str, int]) -> None:
        ident, seq = struct.unpack("!HH", body[4:8])
        self.sent[self.ttl] = seq
        self.ident = ident

    def ready(self) -> bool:
        if self.queue is None:
            self.queue = list(self.answer(self))
        return bool(self.queue)

    def recvfrom(self, n: int) -> tuple[bytes, Any]:
        assert self.queue
        return self.queue.pop(0), (SERVER, 0)

    def close(self) -> None:
        pass


def _traceroute(monkeypatch: pytest.MonkeyPatch, answer: Any, max_ttl: int = 8) -> Any:
    raw = _RawICMP(answer)
    fake_socket = SimpleNamespace(AF_INET=2, SOCK_RAW=3, IPPROTO_ICMP=1, IPPROTO_IP=0, IP_TTL=2,
                                  socket=lambda *a: raw)
    monkeypatch.setattr(ttlprobe, "socket", fake_socket)
    monkeypatch.setattr(ttlprobe, "select",
                        SimpleNamespace(select=lambda r, w, x, t: (r if raw.ready() else [], [], [])))
    monkeypatch.setattr(ttlprobe, "_source_address", lambda ip: US)
    return ttlprobe.traceroute(SERVER, max_ttl=max_ttl, wait=5.0)


def _request(raw: _RawICMP, ttl: int) -> bytes:
    body = struct.pack("!BBHHH", 8, 0, 0, raw.ident, raw.sent[ttl]) + b"tamperscope-locate"
    return P.ipv4_header(US, SERVER, P.PROTO_ICMP, len(body), ttl=1) + body


def _reply(raw: _RawICMP, ttl: int) -> bytes:
    return _from(SERVER, struct.pack("!BBHHH", 0, 0, 0, raw.ident, raw.sent[ttl]) + b"tamperscope-locate")


def test_traceroute_takes_the_smallest_ttl_and_waits_for_the_hops_before_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server answers TTL 5's request first, then TTL 3's (TTL 3 is its distance); the routers' time-exceeded
    come last. Would break if a larger TTL won, if the trace ended before the hops before the server answered, or
    if hops past the server were returned."""
    def answer(raw: _RawICMP) -> list[bytes]:
        return [_reply(raw, 5), _reply(raw, 3), _from("198.18.0.1", _icmp(11, 0, _request(raw, 1))),
                _from(ROUTER, _icmp(11, 0, _request(raw, 2)))]

    assert _traceroute(monkeypatch, answer) == (["198.18.0.1", ROUTER, SERVER], 3)


def test_traceroute_of_a_path_that_goes_silent_has_every_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    def answer(raw: _RawICMP) -> list[bytes]:
        # the second router's answer, junk, and the server's reply cut short
        return [_from(ROUTER, _icmp(11, 0, _request(raw, 2))), b"\x45\x00garbage", _reply(raw, 4)[:24]]

    assert _traceroute(monkeypatch, answer, max_ttl=4) == ([None, ROUTER, None, None], None)
