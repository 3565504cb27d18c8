"""The lab censor against frames whose lengths lie, hellos begun on a SYN, and floods of half-sent hellos.

No lab is started: ``Censor.decide`` is called with crafted Ethernet frames. Each case here once made the
censor act on bytes no host would read, miss a hello a host would read, or hold memory without a useful
bound.
"""

from __future__ import annotations

import json
import random
import ssl
import struct
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import pytest

from tamperscope.lab import blockpages, censor
from tamperscope.model.profile import parse_profile
from tamperscope.netx import openvpn
from tamperscope.wire import dnswire, packet

PROFILE = """
name = "hostile-frames"
[[rule]]
id = "dns-nx"
layer = "dns"
action = "nxdomain"
domains = ["nx-me.org"]
[[rule]]
id = "tls-rst"
layer = "tls"
action = "rst"
domains = ["sni.org"]
[[rule]]
id = "ip-rst"
layer = "ip"
action = "rst"
cidrs = ["198.19.8.0/24"]
ports = [443]
[[rule]]
id = "quic-sni"
layer = "quic"
action = "sni-drop"
domains = ["quicsni.org"]
[[rule]]
id = "openvpn-dpi"
layer = "openvpn"
action = "rst"
ports = [1194]
"""
MACS = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
CLIENT, SERVER, RST_NET_SERVER = "198.18.1.2", "198.19.0.5", "198.19.8.9"


@pytest.fixture
def box(tmp_path: Path) -> Iterator[censor.Censor]:
    profile = parse_profile(PROFILE, source="hostile-frames.toml", base=tmp_path, builtin_pages=blockpages.names())
    c = censor.Censor(profile, censor.GroundTruth(tmp_path / "truth.jsonl"))
    yield c
    c.truth._f.close()


def _truth(c: censor.Censor) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(c.truth._f.name).read_text().splitlines()]


def _decide(c: censor.Censor, frame: bytes) -> list[tuple[bytes, bool, float]]:
    return c.decide(frame, True, time.monotonic(), time.time())


def _forwarded(frame: bytes) -> list[tuple[bytes, bool, float]]:
    return [(frame, False, 0.0)]


def _hello(sni: str) -> bytes:
    ctx = ssl.create_default_context()
    out = ssl.MemoryBIO()
    tls = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return out.read()


def _with_lengths(frame: bytes, *, ip_total: int | None = None, udp_len: int | None = None) -> bytes:
    """``frame`` with its IP total length and/or UDP length rewritten (checksums are not the censor's business)."""
    b = bytearray(frame)
    if ip_total is not None:
        struct.pack_into("!H", b, 16, ip_total)
    if udp_len is not None:
        struct.pack_into("!H", b, 14 + 20 + 4, udp_len)
    return bytes(b)


# -- lengths that end the packet before the bytes the censor read ------------------------------------------


def _query_frame(name: str) -> bytes:
    query = dnswire.encode_query(name, dnswire.QTYPE_A, 7)
    assert query is not None
    return MACS + packet.udp_packet(CLIENT, "198.19.0.8", 40000, 53, query)


def test_a_query_whose_udp_length_ends_before_its_question_is_not_answered(box: censor.Censor) -> None:
    """The censor read the question from the bytes past the UDP length: it forged NXDOMAIN (and dropped the
    datagram) for a header-only message the resolver would never have read as a query for that name."""
    frame = _with_lengths(_query_frame("nx-me.org"), udp_len=8 + 12)
    assert _decide(box, frame) == _forwarded(frame)
    assert _truth(box) == []


def test_a_query_past_its_ip_total_length_is_not_answered(box: censor.Censor) -> None:
    """The same with the IP total length: the bytes past it are link padding to every host."""
    whole = _query_frame("nx-me.org")
    frame = _with_lengths(whole, ip_total=20 + 8 + 12)
    assert _decide(box, frame) == _forwarded(frame)
    assert _truth(box) == []


def test_a_query_with_padding_past_both_lengths_is_still_read(box: censor.Censor) -> None:
    """Bytes after the datagram do not hide the question inside it."""
    frame = _query_frame("nx-me.org") + b"\x00" * 18
    decision = _decide(box, frame)
    assert len(decision) == 1 and decision[0][1] is True  # the forged answer, back to the client; the query dropped
    assert [e["rule"] for e in _truth(box)] == ["dns-nx"]


def test_a_tcp_header_past_the_ip_total_length_is_not_read(box: censor.Censor) -> None:
    """An IP total length of 20 ends the packet before its TCP header: the censor still read a SYN to an ip
    rule's address in the bytes after it, forged an RST and wrote a ground-truth line."""
    syn = MACS + packet.tcp_packet(CLIENT, RST_NET_SERVER, 40000, 443, seq=1, ack=0, flags=packet.SYN)
    assert len(_decide(box, syn)) == 1 and _truth(box)  # the real SYN is refused
    frame = _with_lengths(MACS + packet.tcp_packet(CLIENT, RST_NET_SERVER, 40001, 443, seq=1, ack=0,
                                                   flags=packet.SYN), ip_total=20)
    assert _decide(box, frame) == _forwarded(frame)
    assert [e["client"] for e in _truth(box)] == [f"{CLIENT}:40000"]


def test_a_quic_initial_cut_short_by_its_udp_length_passes(box: censor.Censor) -> None:
    """The server reads only the UDP length's bytes, a packet it cannot decrypt; the censor read the whole
    Initial past it, and dropped the flow for 60 s."""
    from tamperscope.netx.quic import initial_datagram

    frame = MACS + packet.udp_packet(CLIENT, SERVER, 50000, 443, initial_datagram("quicsni.org"))
    cut = _with_lengths(frame, udp_len=8 + 100)
    assert _decide(box, cut) == _forwarded(cut)
    assert _truth(box) == []
    assert _decide(box, frame) == []  # the whole Initial is still read
    assert [e["rule"] for e in _truth(box)] == ["quic-sni"]


# -- a hello begun on a SYN (TCP Fast Open) ----------------------------------------------------------------


def _segment(payload: bytes, seq: int, flags: int, sport: int = 40000) -> bytes:
    return MACS + packet.tcp_packet(CLIENT, SERVER, sport, 443, seq=seq, ack=0 if flags & packet.SYN else 1,
                                    flags=flags, payload=payload)


def test_a_hello_begun_on_a_syn_and_ended_in_the_next_segment_is_read(box: censor.Censor) -> None:
    """A SYN's data starts at its sequence number plus one; the censor took the SYN's own number, waited for
    a segment one byte earlier than the real next one, and let the rest of the hello through unread."""
    hello = _hello("sni.org")
    isn, cut = 5000, 100
    first = _segment(hello[:cut], isn, packet.SYN)
    assert _decide(box, first) == _forwarded(first)
    second = _decide(box, _segment(hello[cut:], isn + 1 + cut, packet.ACK | packet.PSH))
    assert len(second) == 2 and all(out[0][14 + 20 + 13] & packet.RST for out in second)
    assert [e["rule"] for e in _truth(box)] == ["tls-rst"]


def test_a_whole_hello_on_a_syn_is_read(box: censor.Censor) -> None:
    assert len(_decide(box, _segment(_hello("sni.org"), 5000, packet.SYN))) == 2
    assert [e["rule"] for e in _truth(box)] == ["tls-rst"]


# -- half-sent hellos --------------------------------------------------------------------------------------


def _half_hello_segments(sport: int) -> list[bytes]:
    """A first flight that claims 16 KB and never ends: 1000-byte records in 1400-byte segments, 15 KB in all."""
    hs = b"\x01" + (16300).to_bytes(3, "big") + b"\x00" * 16300
    records = b"".join(b"\x16\x03\x01" + len(hs[i : i + 1000]).to_bytes(2, "big") + hs[i : i + 1000]
                       for i in range(0, len(hs), 1000))[:15000]
    return [_segment(records[i : i + 1400], 1000 + i, packet.ACK | packet.PSH, sport)
            for i in range(0, len(records), 1400)]


def test_half_sent_hellos_hold_a_bounded_number_of_bytes(box: censor.Censor, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the number of flows was bounded (50,000): each half-sent hello kept up to 32 KB (its bytes and its
    records' payloads), 1.7 GB in all for a client that opened flows and never finished their hellos."""
    monkeypatch.setattr(censor, "MAX_HELLO_BYTES", 1 << 20)
    frames = [f for sport in range(20000, 20200) for f in _half_hello_segments(sport)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for f in frames:
            assert _decide(box, f) == _forwarded(f)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert box.hello_bytes == sum(s.held for s in box.hello.values() if s is not None) <= 1 << 20
    assert grown < 3_000_000, grown  # 200 x 32 KB = 6.4 MB when every buffer was kept
    # a hello after the flood is still read
    assert len(_decide(box, _segment(_hello("sni.org"), 9000, packet.ACK | packet.PSH, 30000))) == 2


def test_the_byte_count_follows_every_way_a_flow_ends(box: censor.Censor) -> None:
    """A seeded mix of hellos completed, abandoned, cut by FIN or RST, retransmitted and out of order: the
    count of held bytes is always what the buffers hold."""
    rng = random.Random(19)
    hello = _hello("example.org")
    for i in range(400):
        sport = 10000 + rng.randrange(60)
        segs = _half_hello_segments(sport) if rng.random() < 0.3 else [
            _segment(hello[:150], 1000, packet.ACK | packet.PSH, sport),
            _segment(hello[150:], 1150, packet.ACK | packet.PSH, sport)]
        for f in rng.sample(segs, k=rng.randrange(1, len(segs) + 1)) if rng.random() < 0.3 else segs:
            _decide(box, f)
        if rng.random() < 0.3:
            _decide(box, _segment(b"", 1, rng.choice([packet.FIN | packet.ACK, packet.RST]), sport))
        assert box.hello_bytes == sum(s.held for s in box.hello.values() if s is not None), i


def test_mutated_frames_of_every_layer_never_raise(box: censor.Censor) -> None:
    """A seeded fuzz over real frames (a query, a hello, a SYN to an ip rule, an Initial): bytes flipped,
    frames cut or lengthened. ``decide`` never raises (the bridge would relay the frame unread), every decision
    is a list of (frame, side, delay), and the held-bytes count stays exact."""
    from tamperscope.netx.quic import initial_datagram

    rng = random.Random(1907)
    bases = [_query_frame("nx-me.org"), _segment(_hello("sni.org"), 1000, packet.ACK | packet.PSH),
             MACS + packet.tcp_packet(CLIENT, RST_NET_SERVER, 40000, 443, seq=1, ack=0, flags=packet.SYN),
             MACS + packet.udp_packet(CLIENT, SERVER, 50000, 443, initial_datagram("quicsni.org"))]
    for i in range(3000):
        b = bytearray(rng.choice(bases))
        how = rng.randrange(3)
        if how == 0:
            for _ in range(rng.randrange(1, 4)):
                b[rng.randrange(14, min(len(b), 80))] = rng.randrange(256)  # the headers, mostly
        elif how == 1:
            del b[rng.randrange(14, len(b)) :]
        else:
            b += rng.randbytes(rng.randrange(1, 64))
        out = box.decide(bytes(b), rng.random() < 0.8, time.monotonic(), time.time())
        assert all(isinstance(f, bytes) and isinstance(side, bool) and delay >= 0 for f, side, delay in out), i
    assert box.hello_bytes == sum(s.held for s in box.hello.values() if s is not None)


# -- OpenVPN's first packet, known by its shape -------------------------------------------------------------


def _openvpn_segment(payload: bytes, dport: int = 1194) -> bytes:
    return MACS + packet.tcp_packet(CLIENT, SERVER, 40000, dport, seq=1000, ack=2000, flags=packet.ACK | packet.PSH,
                                    window=64240, payload=payload)


def test_openvpn_s_first_datagram_over_udp_is_dropped_in_path_only(box: censor.Censor, tmp_path: Path) -> None:
    """OpenVPN over UDP sends the hard reset without its length: the in-path box drops each one (UDP has nothing to
    reset), logs the flow once, and lets other datagrams through; a tap on the path can drop nothing."""
    def datagram(payload: bytes, sport: int = 40000, dport: int = 1194) -> bytes:
        return MACS + packet.udp_packet(CLIENT, SERVER, sport, dport, payload)

    reset_packet = openvpn.reset_packet(b"\x22" * 8)
    assert censor.is_openvpn_reset_datagram(reset_packet) and not censor.is_openvpn_reset(reset_packet)
    assert _decide(box, datagram(reset_packet)) == [] and _decide(box, datagram(reset_packet)) == []
    for payload, port in ((reset_packet, 53), (reset_packet[:-1], 1194), (bytes([4 << 3]) + reset_packet[1:], 1194),
                          (openvpn.client_reset(b"\x22" * 8), 1194)):  # another port; short; P_CONTROL_V1; framed
        frame = datagram(payload, 40001, port)
        assert _decide(box, frame) == _forwarded(frame)
    assert [(t["rule"], t["server"], t["proto"]) for t in _truth(box)] == [("openvpn-dpi", f"{SERVER}:1194", "udp")]
    on_path = ('name = "tap"\n[network]\nplacement = "on-path"\n'
               '[[rule]]\nid = "openvpn-dpi"\nlayer = "openvpn"\naction = "rst"\nports = [1194]\n')
    tap = censor.Censor(parse_profile(on_path, source="tap.toml", base=tmp_path, builtin_pages=blockpages.names()),
                        censor.GroundTruth(tmp_path / "tap.jsonl"))
    frame = datagram(reset_packet, 40002)
    assert tap.decide(frame, True, time.monotonic(), time.time()) == _forwarded(frame)
    tap.truth._f.close()


def test_openvpn_s_first_packet_is_reset_where_the_rule_says_and_nothing_else_is(box: censor.Censor) -> None:
    reset_packet = openvpn.client_reset(b"\x11" * 8)
    out = _decide(box, _openvpn_segment(reset_packet))
    rsts = [packet.parse_tcp(frame[14 + 20:]) for frame, _, _ in out]
    assert len(out) == 2 and all(t is not None and t.flags & packet.RST for t in rsts)
    assert [(t["rule"], t["server"]) for t in _truth(box)] == [("openvpn-dpi", f"{SERVER}:1194")]
    # the same packet on a port the rule does not name, one byte short, a TLS record, a length that lies: passed
    tls_record = b"\x16\x03\x01\x00\x0c" + bytes(12)
    for payload, port in ((reset_packet, 443), (reset_packet[:-1], 1194), (tls_record, 1194),
                          (b"\x00\x20" + reset_packet[2:], 1194)):
        frame = _openvpn_segment(payload, port)
        assert _decide(box, frame) == _forwarded(frame)
    assert len(_truth(box)) == 1
    assert censor.is_openvpn_reset(reset_packet)
    early = b"\x00\x14" + reset_packet[2:] + b"\x00\x01\x00\x02\x00\x01"  # OpenVPN 2.6's early-negotiation TLV
    assert censor.is_openvpn_reset(early)
    assert not censor.is_openvpn_reset(b"\x00\x0e" + bytes([4 << 3]) + bytes(13))  # P_CONTROL_V1: not a first packet
    # DNS over TCP frames its messages the same way: a query whose id starts 0x38 is not OpenVPN (the censor once
    # reset one in sixteen DNS-over-TCP queries under the lab's openvpn rules)
    for name, qtype, edns in (("example.com", "A", False), ("ab", "A", False), (".", "NS", False),
                              ("a", "A", True), (".", "NS", True)):
        message = dns.message.make_query(name, qtype, use_edns=edns)
        message.id = 0x38F0
        query = message.to_wire()
        framed = len(query).to_bytes(2, "big") + query
        assert not censor.is_openvpn_reset(framed), name
        frame = _openvpn_segment(framed, 53)
        assert _decide(box, frame) == _forwarded(frame)
    assert len(_truth(box)) == 1


def test_an_on_path_ip_rst_answers_the_syn_and_lets_it_through(tmp_path: Path) -> None:
    # A tap holds nothing back; the ip branch returned the forged RST alone, so the SYN never reached the server,
    # and locate called the device in-path (QA in the lab). In path, the SYN is still held back.
    def box_of(placement: str) -> censor.Censor:
        text = (f'name = "{placement}"\n[network]\nplacement = "{placement}"\n'
                '[[rule]]\nid = "ip-rst"\nlayer = "ip"\naction = "rst"\ncidrs = ["198.19.8.0/24"]\n')
        return censor.Censor(parse_profile(text, source="p.toml", base=tmp_path, builtin_pages=blockpages.names()),
                             censor.GroundTruth(tmp_path / f"{placement}.jsonl"))

    syn = MACS + packet.tcp_packet(CLIENT, RST_NET_SERVER, 40000, 443, seq=1000, ack=0, flags=packet.SYN,
                                   window=64240)
    data = MACS + packet.tcp_packet(CLIENT, RST_NET_SERVER, 40000, 443, seq=1001, ack=5, flags=packet.ACK,
                                    window=64240, payload=b"x")
    for placement, passed in (("in-path", False), ("on-path", True)):
        c = box_of(placement)
        out = _decide(c, syn)
        forged = [packet.parse_tcp(f[14 + 20:]) for f, to_client, _ in out if f != syn]
        assert len(forged) == 1 and forged[0] is not None and forged[0].flags & packet.RST, placement
        assert ((syn, False, 0.0) in out) is passed, placement
        assert (_decide(c, data) == _forwarded(data)) is passed, placement
        c.truth._f.close()


def test_an_http_rule_without_ports_reads_port_80_only_where_another_names_8080(tmp_path: Path) -> None:
    # The censor inspects the ports its http rules name (80 without any); a rule without ports then acted on 8080
    # too once another rule named it, and `lab expect` said every port for it.
    from tamperscope.lab.expect import expect_url

    text = ('name = "ports"\n[[rule]]\nid = "plain"\nlayer = "http"\naction = "rst"\ndomains = ["a.example"]\n'
            '[[rule]]\nid = "alt"\nlayer = "http"\naction = "rst"\ndomains = ["b.example"]\nports = [8080]\n')
    profile = parse_profile(text, source="p.toml", base=tmp_path, builtin_pages=blockpages.names())
    c = censor.Censor(profile, censor.GroundTruth(tmp_path / "t.jsonl"))

    def request(host: str, port: int) -> bytes:
        return MACS + packet.tcp_packet(CLIENT, SERVER, 40000, port, seq=1000, ack=2000,
                                        flags=packet.ACK | packet.PSH, window=64240,
                                        payload=f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())

    for host, port, acted in (("a.example", 80, True), ("a.example", 8080, False), ("b.example", 8080, True),
                              ("b.example", 80, False)):
        frame = request(host, port)
        assert (_decide(c, frame) != _forwarded(frame)) is acted, (host, port)
        assert (expect_url(profile, f"http://{host}:{port}/").mechanism == "http.rst") is acted, (host, port)
    c.truth._f.close()
    nx = parse_profile('name = "nx"\n[[rule]]\nid = "nx"\nlayer = "dns"\naction = "nxdomain"\ndomains = '
                       '["nx.nxr.example", "real.example"]\n', source="nx.toml", base=tmp_path,
                       builtin_pages=blockpages.names())
    assert expect_url(nx, "http://nx.nxr.example/").mechanism == "none"  # NXDOMAIN anyway: the control's answer
    assert expect_url(nx, "http://real.example/").mechanism == "dns.nxdomain"
