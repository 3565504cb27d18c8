"""The lab censor's decisions at their edges: ports of a CIDR rule, a tap's forged answers, the sequence numbers of
forged segments, residual blocking, the throttle's queue bound, freezes, gc and OpenVPN's first packet; and the
lab's DNS (dnsd): the authoritative answers, and the ISP resolver's poison rules, upstream answers and bound.

No lab is started: ``Censor.decide`` is called with crafted Ethernet frames, as the bridge gives them, and the DNS
answer functions with dnspython messages (the resolver's upstream socket is a stand-in: no port 53 is opened).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from tamperscope.lab import blockpages, censor, dnsd, farm
from tamperscope.model.profile import parse_profile
from tamperscope.netx import openvpn
from tamperscope.wire import dnswire, packet
from tests.unit.test_lab_services_hostile import _client_hello

MACS = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
CLIENT, SERVER, NET_SERVER, RESOLVER = "198.18.1.2", "198.19.0.5", "198.19.8.9", "198.19.0.8"
ISN = 0xFFFFF000  # the server's initial sequence number, near the wrap


def _censor(tmp_path: Path, text: str, name: str = "truth") -> censor.Censor:
    profile = parse_profile(text, source=f"{name}.toml", base=tmp_path, builtin_pages=blockpages.names())
    return censor.Censor(profile, censor.GroundTruth(tmp_path / f"{name}.jsonl"))


@pytest.fixture
def boxes(tmp_path: Path) -> Iterator[list[censor.Censor]]:
    made: list[censor.Censor] = []
    yield made
    for c in made:
        c.truth._f.close()


def _box(boxes: list[censor.Censor], tmp_path: Path, text: str, name: str = "truth") -> censor.Censor:
    c = _censor(tmp_path, text, name)
    boxes.append(c)
    return c


def _truth(c: censor.Censor) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(c.truth._f.name).read_text().splitlines()]


def _decide(c: censor.Censor, frame: bytes, from_client: bool = True, wall: float | None = None) -> list[Any]:
    return c.decide(frame, from_client, time.monotonic(), time.time() if wall is None else wall)


def _forwarded(frame: bytes, from_client: bool = True) -> list[tuple[bytes, bool, float]]:
    return [(frame, not from_client, 0.0)]


def _segment(src: str, dst: str, sport: int, dport: int, *, seq: int, ack: int, flags: int,
             payload: bytes = b"") -> bytes:
    return MACS + packet.tcp_packet(src, dst, sport, dport, seq=seq, ack=ack, flags=flags, window=64240,
                                    payload=payload)


def _request(host: str, sport: int = 40000, seq: int = 1000, ack: int = 5000, port: int = 80) -> bytes:
    return _segment(CLIENT, SERVER, sport, port, seq=seq, ack=ack, flags=packet.ACK | packet.PSH,
                    payload=f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())


def _tcp_of(frame: bytes) -> packet.TCP:
    t = packet.parse_tcp(frame[14 + 20:])
    assert t is not None
    return t


# -- ip rules ---------------------------------------------------------------------------------------------------


def test_a_cidr_ip_rule_with_ports_leaves_the_other_ports_of_its_network_alone(boxes: list[censor.Censor],
                                                                               tmp_path: Path) -> None:
    """A CIDR rule's ``ports`` bound it as a domain rule's do: without the port check a SYN to port 80 of the
    network was reset and written down as ground truth."""
    c = _box(boxes, tmp_path, 'name = "p"\n[[rule]]\nid = "net-443"\nlayer = "ip"\naction = "rst"\n'
                              'cidrs = ["198.19.8.0/24"]\nports = [443]\n')
    syn80 = _segment(CLIENT, NET_SERVER, 40000, 80, seq=1, ack=0, flags=packet.SYN)
    assert _decide(c, syn80) == _forwarded(syn80)
    assert _truth(c) == []
    syn443 = _segment(CLIENT, NET_SERVER, 40001, 443, seq=1, ack=0, flags=packet.SYN)
    out = _decide(c, syn443)
    assert len(out) == 1 and _tcp_of(out[0][0]).flags & packet.RST
    assert [t["server"] for t in _truth(c)] == [f"{NET_SERVER}:443"]


def test_a_syn_ack_towards_an_ip_rule_s_address_is_held_back_but_not_answered(boxes: list[censor.Censor],
                                                                              tmp_path: Path) -> None:
    """Only a SYN opens a connection to the address: a SYN-ACK sent towards it is dropped in path, with no forged
    RST and no ground-truth line for a trigger nobody sent."""
    c = _box(boxes, tmp_path, 'name = "p"\n[[rule]]\nid = "net"\nlayer = "ip"\naction = "rst"\n'
                              'cidrs = ["198.19.8.0/24"]\n')
    synack = _segment(CLIENT, NET_SERVER, 443, 50000, seq=7, ack=2, flags=packet.SYN | packet.ACK)
    assert _decide(c, synack) == []
    assert _truth(c) == []


# -- dns rules --------------------------------------------------------------------------------------------------


def _query(name: str, sport: int = 40000) -> bytes:
    q = dnswire.encode_query(name, dnswire.QTYPE_A, 7)
    assert q is not None
    return MACS + packet.udp_packet(CLIENT, RESOLVER, sport, 53, q)


def test_an_on_path_nxdomain_answers_and_still_lets_the_query_through(boxes: list[censor.Censor],
                                                                       tmp_path: Path) -> None:
    """A tap on the path holds nothing back: its forged NXDOMAIN races the real answer. In path, the query is
    dropped. Forwarding only for ``inject`` would make the tap swallow queries it cannot touch."""
    rule = '[[rule]]\nid = "nx"\nlayer = "dns"\naction = "nxdomain"\ndomains = ["nx-me.org"]\n'
    for placement, passed in (("in-path", False), ("on-path", True)):
        c = _box(boxes, tmp_path, f'name = "d"\n[network]\nplacement = "{placement}"\n' + rule, placement)
        frame = _query("nx-me.org")
        out = _decide(c, frame)
        forged = [f for f, to_client, _ in out if f != frame]
        assert len(forged) == 1, placement
        answer = dns.message.from_wire(packet.parse_udp(forged[0][14 + 20:]).payload)  # type: ignore[union-attr]
        assert answer.rcode() == dns.rcode.NXDOMAIN and answer.id == 7, placement
        assert ((frame, False, 0.0) in out) is passed, placement


def test_a_dns_response_sent_to_port_53_is_not_answered(boxes: list[censor.Censor], tmp_path: Path) -> None:
    """A resolver that asks from port 53 gets its answers on port 53: a rule for both directions must not read
    an answer (QR set) as a query, forge another answer to it, and log a trigger nobody sent."""
    c = _box(boxes, tmp_path, 'name = "d"\n[[rule]]\nid = "nx"\nlayer = "dns"\naction = "nxdomain"\n'
                              'direction = "both"\ndomains = ["nx-me.org"]\n')
    query = dns.message.make_query("nx-me.org", "A")
    answer = dns.message.make_response(query).to_wire()
    frame = MACS + packet.udp_packet(RESOLVER, CLIENT, 53, 53, answer)
    assert _decide(c, frame, from_client=False) == _forwarded(frame, from_client=False)
    assert _truth(c) == []
    asked = MACS + packet.udp_packet(CLIENT, RESOLVER, 53, 53, query.to_wire())  # the same name asked: answered
    assert _decide(c, asked) != _forwarded(asked)


# -- quic rules -------------------------------------------------------------------------------------------------


def test_a_quic_drop_rule_for_both_directions_drops_datagrams_its_address_begins(boxes: list[censor.Censor],
                                                                                 tmp_path: Path) -> None:
    """Ingress, the flow is begun by the rule's address on the internet side: its datagrams to a client-side port
    443 are dropped, and a datagram from another address passes."""
    c = _box(boxes, tmp_path, 'name = "q"\n[[rule]]\nid = "h3"\nlayer = "quic"\naction = "drop"\n'
                              'direction = "both"\ndomains = ["h3.org"]\n')
    addr = farm.address_for("h3.org", c.p)
    inbound = MACS + packet.udp_packet(addr, CLIENT, 50000, 443, b"\xc0" + bytes(1199))
    assert _decide(c, inbound, from_client=False) == []
    assert [t["rule"] for t in _truth(c)] == ["h3"]
    stranger = MACS + packet.udp_packet(SERVER, CLIENT, 50000, 443, b"\xc0" + bytes(1199))
    assert _decide(c, stranger, from_client=False) == _forwarded(stranger, from_client=False)


# -- forged segments --------------------------------------------------------------------------------------------


def test_forged_rsts_carry_the_numbers_each_end_accepts(boxes: list[censor.Censor], tmp_path: Path) -> None:
    """The client's RST starts at the client's ack and acknowledges the request; the server's starts where the
    server expects the client's next byte: before the request in path (it was held back), after it on a tap."""
    rule = '[[rule]]\nid = "rst"\nlayer = "http"\naction = "rst"\ndomains = ["blocked.org"]\n'
    for placement in ("in-path", "on-path"):
        c = _box(boxes, tmp_path, f'name = "r"\n[network]\nplacement = "{placement}"\n' + rule, placement)
        frame = _request("blocked.org", seq=1000, ack=5000)
        plen = len(_tcp_of(frame).payload)
        out = _decide(c, frame)
        to_client = [_tcp_of(f) for f, to_c, _ in out if to_c and f != frame]
        to_server = [_tcp_of(f) for f, to_c, _ in out if not to_c and f != frame]
        assert len(to_client) == 1 and len(to_server) == 1, placement
        assert (to_client[0].seq, to_client[0].ack) == (5000, 1000 + plen), placement
        server_seq = 1000 if placement == "in-path" else 1000 + plen
        assert (to_server[0].seq, to_server[0].ack) == (server_seq, 5000), placement
        assert all(t.flags & packet.RST for t in to_client + to_server), placement


def test_a_blockpage_over_several_segments_ends_with_fin_on_the_last_only(boxes: list[censor.Censor],
                                                                          tmp_path: Path) -> None:
    """A page longer than one segment: contiguous sequence numbers from the client's ack, the whole response,
    and FIN only on its last segment (a FIN on the first would end the stream after 1,400 bytes)."""
    c = _box(boxes, tmp_path, 'name = "b"\n[[rule]]\nid = "page"\nlayer = "http"\naction = "blockpage"\n'
                              'domains = ["blocked.org"]\nblockpage = "fortiguard"\n')
    out = _decide(c, _request("blocked.org", seq=1000, ack=5000))
    segments = [_tcp_of(f) for f, to_client, _ in out if to_client]
    assert len(segments) >= 2
    body = blockpages.load("fortiguard")
    data = b"".join(s.payload for s in segments)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(body)
    assert [s.seq for s in segments] == [5000 + sum(len(s.payload) for s in segments[:i]) for i in range(len(segments))]
    assert [bool(s.flags & packet.FIN) for s in segments] == [False] * (len(segments) - 1) + [True]
    assert all(s.ack == 1000 + len(_tcp_of(_request("blocked.org")).payload) for s in segments)


# -- residual blocking ------------------------------------------------------------------------------------------


def test_residual_blocking_drops_the_next_connection_to_that_port_until_it_ends(boxes: list[censor.Censor],
                                                                               tmp_path: Path) -> None:
    """After a trigger, the client's packets to that address and port (and the server's back) are dropped for
    ``residual_s``; another port passes, and so does the same port once the hold is over."""
    c = _box(boxes, tmp_path, 'name = "r"\n[network]\nresidual_s = 60\n[[rule]]\nid = "rst"\nlayer = "http"\n'
                              'action = "rst"\ndomains = ["blocked.org"]\n')
    wall = time.time()
    assert _decide(c, _request("blocked.org"), wall=wall) != _forwarded(_request("blocked.org"))
    syn = _segment(CLIENT, SERVER, 40001, 80, seq=1, ack=0, flags=packet.SYN)
    assert _decide(c, syn, wall=wall + 1) == []
    synack = _segment(SERVER, CLIENT, 80, 40001, seq=9, ack=2, flags=packet.SYN | packet.ACK)
    assert _decide(c, synack, from_client=False, wall=wall + 1) == []
    other = _segment(CLIENT, SERVER, 40002, 443, seq=1, ack=0, flags=packet.SYN)
    assert _decide(c, other, wall=wall + 1) == _forwarded(other)
    assert _decide(c, syn, wall=wall + 61) == _forwarded(syn)


# -- throttling -------------------------------------------------------------------------------------------------


def test_a_throttled_flow_drops_what_would_wait_past_the_queue_bound(boxes: list[censor.Censor], tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """At 8 kbit/s a 1,454-byte frame takes 1.45 s: the fifth in a row would wait over MAX_QUEUE_DELAY (5 s) and
    is dropped, where an unbounded queue held frames (and memory) for ever. The other direction has its own
    bucket. (The censor's clock stands still here: a stall of the machine between two frames would otherwise
    shorten the waits it computes.)"""
    monkeypatch.setattr(censor.time, "monotonic", lambda: 1000.0)
    c = _box(boxes, tmp_path, 'name = "t"\n[[rule]]\nid = "slow"\nlayer = "tls"\naction = "throttle"\n'
                              'domains = ["slow.org"]\nrate_kbps = 8\n')
    hello = _client_hello("slow.org")
    first = _segment(CLIENT, SERVER, 40000, 443, seq=1000, ack=1, flags=packet.ACK | packet.PSH, payload=hello)
    assert _decide(c, first) == _forwarded(first)
    assert [t["rule"] for t in _truth(c)] == ["slow"]
    seq = 1000 + len(hello)
    outs = []
    for i in range(6):
        frame = _segment(CLIENT, SERVER, 40000, 443, seq=seq + 1400 * i, ack=1, flags=packet.ACK,
                         payload=b"\x17" * 1400)
        outs.append(_decide(c, frame))
    assert [len(o) for o in outs] == [1, 1, 1, 1, 0, 0]
    delays = [o[0][2] for o in outs[:4]]
    assert [round(d - c.delay, 3) for d in delays] == [1.454, 2.908, 4.362, 5.816]
    back = _segment(SERVER, CLIENT, 443, 40000, seq=1, ack=seq, flags=packet.ACK, payload=b"\x17" * 100)
    assert len(_decide(c, back, from_client=False)) == 1


# -- freeze -----------------------------------------------------------------------------------------------------


def test_a_server_segment_from_before_its_isn_does_not_freeze_the_flow(boxes: list[censor.Censor],
                                                                       tmp_path: Path) -> None:
    """A segment wholly before the server's ISN (an old duplicate) sits at a huge offset modulo 2**32: it is no
    data past the cap, and the flow's first kilobytes still pass."""
    c = _box(boxes, tmp_path, 'name = "f"\n[[rule]]\nid = "frz"\nlayer = "ip"\naction = "freeze"\n'
                              'cidrs = ["198.19.8.0/24"]\nafter_kb = 4\n')
    assert _decide(c, _segment(CLIENT, NET_SERVER, 40000, 443, seq=1, ack=0, flags=packet.SYN))
    assert _decide(c, _segment(NET_SERVER, CLIENT, 443, 40000, seq=ISN, ack=2, flags=packet.SYN | packet.ACK),
                   from_client=False)
    old = _segment(NET_SERVER, CLIENT, 443, 40000, seq=ISN - 100, ack=2, flags=packet.ACK, payload=b"o" * 10)
    assert _decide(c, old, from_client=False) == _forwarded(old, from_client=False)
    data = _segment(NET_SERVER, CLIENT, 443, 40000, seq=ISN + 1, ack=2, flags=packet.ACK, payload=b"d" * 1000)
    assert _decide(c, data, from_client=False) == _forwarded(data, from_client=False)
    assert _truth(c) == []


# -- gc ---------------------------------------------------------------------------------------------------------


def test_gc_keeps_a_dropped_flow_until_it_expires_then_forgets_it(boxes: list[censor.Censor],
                                                                  tmp_path: Path) -> None:
    """gc forgets what has expired only: a flow an http drop rule dropped stays dropped through a gc run inside
    its FLOW_TTL, and passes once a later run is past it."""
    c = _box(boxes, tmp_path, 'name = "g"\n[[rule]]\nid = "drop"\nlayer = "http"\naction = "drop"\n'
                              'domains = ["blocked.org"]\n')
    wall = time.time()
    assert _decide(c, _request("blocked.org"), wall=wall) == []
    more = _segment(CLIENT, SERVER, 40000, 80, seq=2000, ack=5000, flags=packet.ACK, payload=b"x")
    c.gc(wall + 1)
    assert _decide(c, more, wall=wall + 1) == []
    c.gc(wall + censor.FLOW_TTL + 1)
    assert _decide(c, more, wall=wall + censor.FLOW_TTL + 1) == _forwarded(more)


# -- OpenVPN ----------------------------------------------------------------------------------------------------


def test_an_openvpn_hard_reset_that_lists_acks_is_no_first_packet() -> None:
    """A client's first packet acknowledges nothing: the same 14 bytes with an ack count of 1 are not it (the
    shape is read whole, or other traffic passes for OpenVPN)."""
    first = openvpn.reset_packet(b"\x22" * 8)
    assert censor.is_openvpn_reset_datagram(first)
    acked = first[:9] + b"\x01" + first[10:]
    assert not censor.is_openvpn_reset_datagram(acked)
    assert not censor.is_openvpn_reset(len(acked).to_bytes(2, "big") + acked)


# -- the lab's DNS servers (dnsd): the authoritative answers and the ISP resolver's poison ----------------------


def _authoritative(name: str, rdtype: str = "A", rdclass: str = "IN", *, recursive: bool = False,
                   profile: Any = None) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, rdclass)
    return dnsd.authoritative_answer(query, profile, recursive=recursive)


def test_the_authoritative_answer_flags_say_which_server_answered() -> None:
    """The authoritative server sets AA, the public resolver RA, never the other's: a swap tells a probe that the
    resolver is the authority."""
    auth = _authoritative("a.org")
    public = _authoritative("a.org", recursive=True)
    assert auth.flags & dns.flags.AA and not auth.flags & dns.flags.RA
    assert public.flags & dns.flags.RA and not public.flags & dns.flags.AA


def test_the_authoritative_answer_follows_the_farm() -> None:
    """NXDOMAIN for the farm's missing names, an IP literal answered as itself, the farm's address otherwise, and
    nothing for another class or an HTTPS query of a name without ECH."""
    nx = _authoritative("nx.a.org")
    assert nx.rcode() == dns.rcode.NXDOMAIN and not nx.answer
    literal = _authoritative("198.19.3.4")
    assert [r.address for r in literal.answer[0]] == ["198.19.3.4"]
    assert [r.address for r in _authoritative("a.org").answer[0]] == [farm.address_for("a.org", None)]
    chaos = _authoritative("a.org", rdclass="CH")
    assert chaos.rcode() == dns.rcode.NOERROR and not chaos.answer
    assert not _authoritative("a.org", "HTTPS").answer
    ech = _authoritative("cloudflare.com", "HTTPS")
    assert len(ech.answer) == 1 and "ech=" in ech.answer[0].to_text()


def test_a_query_without_a_question_gets_formerr() -> None:
    """No question to read: FORMERR, where indexing the empty question list raised inside the handler."""
    query = dns.message.Message(id=99)
    resp = dnsd.authoritative_answer(query, None, recursive=False)
    assert resp.rcode() == dns.rcode.FORMERR and resp.id == 99


def test_two_questions_get_formerr() -> None:
    """A query carrying two questions is refused with FORMERR, as real servers do, and is not answered."""
    query = dns.message.make_query("a.org", "A")
    query.question.append(dns.rrset.RRset(dns.name.from_text("b.org"), dns.rdataclass.IN, dns.rdatatype.A))
    server = dnsd.DNSServer("127.0.0.1", dnsd.static_answerer(None, recursive=False))
    out = asyncio.run(asyncio.wait_for(server.handle_wire(query.to_wire(), ("127.0.0.1", 5353)), 5))
    assert out is not None
    resp = dns.message.from_wire(out)
    assert resp.rcode() == dns.rcode.FORMERR and resp.id == query.id and not resp.answer


POISON = """
name = "poison"
[[rule]]
id = "poison-a"
layer = "dns"
action = "poison"
domains = ["poisoned.org"]
answer = "198.18.99.99"
qtypes = ["A"]
"""


class _Upstream:
    """A stand-in for the ISP resolver's upstream socket: each query sent is answered with ``replies(query)``
    (datagrams; none: a silent upstream), so no port 53 is needed."""

    def __init__(self, protocol: Any, replies: Any, sent: list[bytes]) -> None:
        self.protocol, self.replies, self.sent = protocol, replies, sent

    def sendto(self, data: bytes) -> None:
        self.sent.append(data)
        for reply in (self.replies(data) if self.replies else ()):
            asyncio.get_running_loop().call_soon(self.protocol.datagram_received, reply, ("127.0.0.1", 53))

    def close(self) -> None:
        pass


def _fake_upstream(replies: Any, sent: list[bytes]) -> None:
    """Route the running loop's datagram endpoints to `_Upstream`."""
    async def endpoint(factory: Any, remote_addr: Any = None, **_: Any) -> tuple[_Upstream, Any]:
        protocol = factory()
        return _Upstream(protocol, replies, sent), protocol

    asyncio.get_running_loop().create_datagram_endpoint = endpoint  # type: ignore[method-assign]


def _ask(tmp_path: Path, query: dns.message.Message,
         upstream_replies: Any = None) -> tuple[dns.message.Message | None, list[Any], list[bytes]]:
    """Ask the ISP resolver ``query``, its upstream a `_Upstream`: the answer, the ground truth it logged and
    what it sent upstream."""
    profile = parse_profile(POISON, source="p.toml", base=tmp_path, builtin_pages=blockpages.names())
    truth: list[Any] = []
    sent: list[bytes] = []

    async def main() -> dns.message.Message | None:
        _fake_upstream(upstream_replies, sent)
        answer = dnsd.isp_answerer(profile, "127.0.0.1", lambda *a: truth.append(a), timeout=2.0)
        return await answer(query, ("198.18.1.2", 5000))

    return asyncio.run(asyncio.wait_for(main(), 5)), truth, sent


def test_poison_answers_the_rule_s_address_for_the_query_types_it_names(tmp_path: Path) -> None:
    """The poisoned A answer is the rule's ``answer``; an AAAA query, which the rule's ``qtypes`` leave out, goes
    upstream unpoisoned and is not logged."""
    resp, truth, sent = _ask(tmp_path, dns.message.make_query("poisoned.org", "A"))
    assert resp is not None and [r.address for r in resp.answer[0]] == ["198.18.99.99"]
    assert [t[0].id for t in truth] == ["poison-a"] and sent == []

    def empty(data: bytes) -> list[bytes]:
        return [dns.message.make_response(dns.message.from_wire(data)).to_wire()]

    resp, truth, sent = _ask(tmp_path, dns.message.make_query("poisoned.org", "AAAA"), empty)
    assert resp is not None and resp.rcode() == dns.rcode.NOERROR and not resp.answer
    assert truth == [] and len(sent) == 1


def test_the_isp_resolver_passes_the_upstream_rcode_and_ignores_answers_to_other_ids(tmp_path: Path) -> None:
    """An upstream NXDOMAIN reaches the client as NXDOMAIN (not an empty NOERROR), and a datagram whose id is not
    the forwarded query's (a spoofed or stale answer) is not taken for its answer."""
    def replies(data: bytes) -> list[bytes]:
        fwd = dns.message.from_wire(data)
        spoof = dns.message.make_response(fwd)
        spoof.id = (fwd.id + 1) & 0xFFFF
        spoof.answer.append(dns.rrset.from_text(fwd.question[0].name, 300, "IN", "A", "198.18.66.66"))
        real = dns.message.make_response(fwd)
        real.set_rcode(dns.rcode.NXDOMAIN)
        return [spoof.to_wire(), real.to_wire()]

    query = dns.message.make_query("gone.org", "A")
    resp, truth, sent = _ask(tmp_path, query, replies)
    assert resp is not None and resp.id == query.id
    assert resp.rcode() == dns.rcode.NXDOMAIN and not resp.answer
    assert resp.flags & dns.flags.RA and truth == []


def test_a_query_past_the_in_flight_bound_is_answered_servfail_at_once(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """With MAX_UPSTREAM_QUERIES in flight, the next query is answered SERVFAIL at once, not sent upstream: one
    past the bound held one more socket until its timeout."""
    monkeypatch.setattr(dnsd, "MAX_UPSTREAM_QUERIES", 1)
    profile = parse_profile('name = "none"\n', source="none.toml", base=tmp_path, builtin_pages=blockpages.names())
    answer = dnsd.isp_answerer(profile, "127.0.0.1", lambda *a: None, timeout=3.0)
    sent: list[bytes] = []

    async def main() -> dns.message.Message | None:
        _fake_upstream(None, sent)  # silent: the first query waits for its timeout
        held = asyncio.create_task(answer(dns.message.make_query("one.org", "A"), ("198.18.1.2", 5000)))
        await asyncio.sleep(0.05)
        try:
            return await asyncio.wait_for(answer(dns.message.make_query("two.org", "A"), ("198.18.1.2", 5001)), 0.5)
        finally:
            held.cancel()
            await asyncio.gather(held, return_exceptions=True)

    resp = asyncio.run(asyncio.wait_for(main(), 5))
    assert resp is not None and resp.rcode() == dns.rcode.SERVFAIL
    assert len(sent) == 1  # only the first went upstream
