"""The lab's censor: an in-path layer-2 bridge in user space on AF_PACKET sockets.

This kernel has no NFQUEUE and no netem, so the censor relays every frame
between its two interfaces itself. It parses just enough of each frame to
apply the profile: it forwards, delays, drops, throttles, or forges packets
(DNS answers, RSTs, blockpages with FIN) with the header values the rule asks
for, and appends one ground-truth line per censor action to a JSONL log.

Directions: frames arriving on the client-side interface travel "egress";
frames from the internet side travel "ingress". A rule's `direction` says
which side's requests trigger it (`both`: either, as Turkmenistan's filter).

Run as `python -m tamperscope.lab.censor --profile FILE --log FILE` inside the
censor namespace (the lab does this).
"""

from __future__ import annotations

import argparse
import heapq
import ipaddress
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..model.profile import DEFAULT_PORTS, Profile, Rule, load_profile
from ..wire import dnswire, httphead, packet
from ..wire.quicinitial import initial_hello
from ..wire.tlshello import ClientHello, ClientHelloBuffer
from ..wire.wireguard import looks_like_initiation
from . import addresses as A
from . import blockpages, farm

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
MSS = 1400
MAX_QUEUE_DELAY = 5.0  # seconds a throttled packet may wait before it is dropped
FLOW_TTL = 300.0
QUIC_FLOW_DROP_S = 60.0  # a QUIC flow whose Initial named a sni-drop rule's site stays dropped this long
WIREGUARD_FLOW_DROP_S = 60.0  # a UDP flow that began with WireGuard's initiation stays dropped this long
UDP_FLOW_S = 120.0  # a UDP flow the wireguard rules saw begin is remembered this long (conntrack's UDP stream)
MAX_UDP_FLOWS = 200000  # UDP flows remembered at once; past it the table starts again
MAX_FREEZE_FLOWS = 200000  # TCP flows an ip freeze rule follows at once; past it the table starts again
MAX_HELLO_FLOWS = 50000  # TLS flows whose first flight is tracked at once; past it the table starts again
MAX_HELLO_BYTES = 32 << 20  # bytes those flows' buffers may hold in all; past it the table starts again

Flow = tuple[str, int, str, int]  # (src, sport, dst, dport) as seen travelling egress
Sends = list[tuple[bytes, bool, float]]  # [(frame, to_client_side, delay_s)]


@dataclass
class Bucket:
    rate_bps: float
    next_free: float = 0.0


@dataclass
class Freeze:
    """A TCP flow an ip freeze rule follows: the server's initial sequence number (from its SYN-ACK), whether the
    flow is frozen, and until when it is remembered."""

    isn: int | None
    until: float
    frozen: bool = False


class GroundTruth:
    """Appends one JSON line per censor action."""

    def __init__(self, path: Path) -> None:
        self._f = open(path, "a", buffering=1, encoding="utf-8")

    def write(self, rule: Rule, client: str, server: str, name: str | None, **extra: object) -> None:
        rec = {"t": round(time.time(), 6), "rule": rule.id, "layer": rule.layer, "action": rule.action,
               "client": client, "server": server, "name": name, **extra}
        self._f.write(json.dumps(rec) + "\n")


OPENVPN_RESET_SIZES = (14, 20)  # a client's hard reset: plain, and with OpenVPN 2.6's early-negotiation TLV


def is_openvpn_reset(payload: bytes) -> bool:
    """Whether a TCP segment's payload is OpenVPN's first packet: one frame (two-byte length, then the packet) of
    ``P_CONTROL_HARD_RESET_CLIENT_V2`` without tls-auth: the opcode, a session id, an empty ack list and message id
    0 (14 bytes; 20 with OpenVPN 2.6's early-negotiation TLV), the length spanning the segment. What DPI that
    blocks OpenVPN keys on, at any address and port. The whole shape is read, not the opcode alone: DNS over TCP
    has the same two-byte framing, and a query id of 0x38xx would pass for the opcode."""
    return int.from_bytes(payload[:2], "big") == len(payload) - 2 and is_openvpn_reset_datagram(payload[2:])


def is_openvpn_reset_datagram(packet: bytes) -> bool:
    """Whether ``packet`` is that hard reset itself, as OpenVPN over UDP sends it (one datagram, no length): the
    opcode, a session id, an empty ack list and message id 0, 14 bytes (20 with the TLV)."""
    return (len(packet) in OPENVPN_RESET_SIZES and packet[0] >> 3 == 7 and packet[9] == 0
            and packet[10:14] == b"\x00\x00\x00\x00")


class Censor:
    """The profile's decisions over frames. `Bridge` moves the frames."""

    def __init__(self, profile: Profile, truth: GroundTruth) -> None:
        self.p = profile
        self.truth = truth
        self.in_path = profile.network.placement == "in-path"
        self.delay = profile.network.delay_ms / 1000.0
        self.residual_s = profile.network.residual_s
        self.reassembly = profile.network.tls_reassembly  # how much of a ClientHello the DPI puts together
        self.dns_rules = [r for r in profile.rules_for("dns") if r.action != "poison"]
        self.http_rules = profile.rules_for("http")
        self.tls_rules = [r for r in profile.rules_for("tls") if r.action != "mitm"]
        self.http_ports = {p for r in self.http_rules for p in (r.ports or DEFAULT_PORTS["http"])}
        self.tls_ports = {p for r in self.tls_rules for p in (r.ports or DEFAULT_PORTS["tls"])}
        # ip rules: address -> rules; CIDR rules checked by network
        self.ip_addr_rules: dict[str, list[Rule]] = {}
        self.ip_net_rules: list[tuple[ipaddress.IPv4Network, Rule]] = []
        for r in profile.rules_for("ip"):
            for d in r.domains:
                self.ip_addr_rules.setdefault(farm.address_for(d, profile), []).append(r)
            for c in r.cidrs:
                self.ip_net_rules.append((ipaddress.IPv4Network(c), r))
        self.quic_addrs: dict[str, Rule] = {}
        for r in profile.rules_for("quic"):
            for d in r.domains if r.action == "drop" else ():
                self.quic_addrs.setdefault(farm.address_for(d, profile), r)
        self.quic_sni = [r for r in profile.rules_for("quic") if r.action == "sni-drop"]
        self.openvpn_rules = profile.rules_for("openvpn")
        self.wireguard_rules = profile.rules_for("wireguard")
        self.udp_flows: dict[Flow, float] = {}  # UDP flows seen begin (for wireguard rules): flow -> until
        self.names_by_addr = {farm.address_for(d, profile): d for r in profile.rules for d in r.domains}
        self.hello: dict[Flow, ClientHelloBuffer | None] = {}
        self.hello_bytes = 0  # what the buffers in `hello` hold: 50,000 half-sent hellos once held 1.7 GB
        self.dropped: dict[Flow, float] = {}  # 4-tuples dropped until t
        self.residual: dict[tuple[str, str, int], float] = {}  # (client, server, port) until t
        self.throttled: dict[Flow, tuple[Bucket, Bucket]] = {}
        self.logged_ip: dict[Flow, float] = {}
        self.freezes: dict[Flow, Freeze] = {}  # (client, cport, server, port) -> its state, for ip freeze rules
        self.last_gc = time.monotonic()

    # -- helpers -----------------------------------------------------------
    def _ip_id(self, r: Rule) -> int:
        return r.inject.ip_id if r.inject.ip_id is not None else random.randrange(1, 0xFFFF)

    def _ip_rule(self, addr: str, port: int) -> Rule | None:
        for r in self.ip_addr_rules.get(addr, ()):
            if not r.ports or port in r.ports:
                return r
        if self.ip_net_rules:
            a = ipaddress.IPv4Address(addr)
            for net, r in self.ip_net_rules:
                if a in net and (not r.ports or port in r.ports):
                    return r
        return None

    def _first(self, rules: tuple[Rule, ...] | list[Rule], name: str | None, direction: str, port: int | None = None,
               ech: bool = False, qtype: int | None = None) -> Rule | None:
        """The first rule for ``name``; a rule for ECH (tls ``ech = true``) only when the hello carried it, a dns
        rule with ``qtypes`` only for a query of one of them."""
        for r in rules:
            if r.applies_to(direction) and r.matches_name(name) and (port is None or r.on_port(port)) \
                    and (ech or not r.ech) and (qtype is None or r.asks(qtype)):
                return r
        return None

    def gc(self, now_wall: float, now: float | None = None) -> None:
        """Forget expired state; `now` (monotonic) also ends throttling of flows idle for FLOW_TTL."""
        tables: tuple[dict[Any, float], ...] = (self.dropped, self.residual, self.logged_ip,
                                                self.udp_flows)  # key -> until
        for table in tables:
            for k in [k for k, t in table.items() if t < now_wall]:
                del table[k]
        if len(self.hello) > MAX_HELLO_FLOWS:
            self._forget_hellos()
        if len(self.udp_flows) > MAX_UDP_FLOWS:  # a flood of new flows: judge the next ones as new
            self.udp_flows.clear()
        for k in [k for k, f in self.freezes.items() if f.until < now_wall]:
            del self.freezes[k]
        if now is not None:
            idle = now - FLOW_TTL  # a bucket's next_free is at or after its flow's last packet
            for k in [k for k, (up, down) in self.throttled.items() if max(up.next_free, down.next_free) < idle]:
                del self.throttled[k]

    def _forget_hellos(self) -> None:
        self.hello.clear()
        self.hello_bytes = 0

    def _hello_done(self, flow: Flow) -> None:
        """Stop following the first flight of ``flow``: the rest of it passes unread."""
        state = self.hello.get(flow)
        if state is not None:
            self.hello_bytes -= state.held
        self.hello[flow] = None

    # -- decisions ---------------------------------------------------------
    def decide(self, frame: bytes, from_client_side: bool, now: float, wall: float) -> list[tuple[bytes, bool, float]]:
        """What to send for one frame: [(frame, to_client_side, delay_s)].

        The original frame, if forwarded, goes to the other side.
        """
        fwd = [(frame, not from_client_side, self.delay)]
        if len(frame) < 34 or frame[12:14] != b"\x08\x00":
            return fwd
        ihl = (frame[14] & 0x0F) * 4
        proto = frame[23]
        src = socket.inet_ntoa(frame[26:30])
        dst = socket.inet_ntoa(frame[30:34])
        l4 = 14 + ihl
        total = struct.unpack_from("!H", frame, 16)[0]  # 0: to the frame's end, as TSO leaves it
        end = min(len(frame), 14 + total) if total else len(frame)  # where the packet ends: past it, padding
        # a later fragment's first bytes are data, not ports; a header under 20 bytes is no header, nor is a
        # transport header the packet ends inside (its receiver drops it: bytes past the end are padding)
        opaque = frame[20] & 0x1F or frame[21] or ihl < 20 or end < l4 + (20 if proto == packet.PROTO_TCP else 8)
        if self.ip_addr_rules or self.ip_net_rules:
            if proto != packet.PROTO_TCP or opaque:
                blocked = self._ip_block_all(src, dst, from_client_side, wall)
                if blocked is not None:
                    if proto == packet.PROTO_UDP and not opaque and blocked[1]:  # a datagram towards the server
                        sport, dport = struct.unpack_from("!HH", frame, l4)
                        if self._once((src, sport, dst, dport), wall):
                            self.truth.write(blocked[0], f"{src}:{sport}", f"{dst}:{dport}",
                                             self.names_by_addr.get(dst), proto="udp")
                    return []
        if opaque:
            return fwd
        if proto == packet.PROTO_TCP:
            sport, dport = struct.unpack_from("!HH", frame, l4)
            return self._tcp(frame, from_client_side, src, dst, sport, dport, l4, fwd, wall)
        if proto == packet.PROTO_UDP:
            sport, dport, ulen = struct.unpack_from("!HHH", frame, l4)
            # the datagram ends where its UDP and IP lengths say, as for its receiver: the bytes past them
            # (a short UDP length, link padding) once made a query no server reads get a forged answer
            payload = frame[l4 + 8 : min(l4 + ulen, end)]
            if dport == 53:
                return self._dns(frame, payload, from_client_side, src, dst, sport, fwd)
            if dport == 443 and self.quic_addrs:
                r = self.quic_addrs.get(dst if from_client_side else src)
                if r is not None and r.applies_to("egress" if from_client_side else "ingress"):
                    flow = (src, sport, dst, dport)
                    if self._once(flow, wall):
                        self.truth.write(r, f"{src}:{sport}", f"{dst}:{dport}", self.names_by_addr.get(dst))
                    return []
            if dport == 443 and self.quic_sni:
                return self._quic_sni(payload, from_client_side, src, dst, sport, fwd, wall)
            if self.openvpn_rules and is_openvpn_reset_datagram(payload):
                direction = "egress" if from_client_side else "ingress"
                r = next((r for r in self.openvpn_rules
                          if r.applies_to(direction) and (not r.ports or dport in r.ports)), None)
                if r is not None and self.in_path:  # rst or drop: dropped either way (UDP has nothing to reset;
                    # a tap on the path can drop nothing, so an on-path rule lets OpenVPN over UDP through)
                    if self._once((src, sport, dst, dport), wall):
                        self.truth.write(r, f"{src}:{sport}", f"{dst}:{dport}", None, proto="udp")
                    return []
            if self.wireguard_rules:
                return self._wireguard(payload, from_client_side, src, dst, sport, dport, fwd, wall)
        return fwd

    def _wireguard(self, payload: bytes, from_client: bool, src: str, dst: str, sport: int, dport: int,
                   fwd: Sends, wall: float) -> Sends:
        """Drop a UDP flow whose first datagram is WireGuard's handshake initiation (148 bytes, type 1: no key is
        needed to see it), and the rest of that flow, as Russia's TSPU did from 2023; a flow begun from the client's
        side is egress, one begun from the internet's ingress. Only a flow's first datagram is judged: one that began
        with anything else passes, as AmneziaWG's junk packets found."""
        flow: Flow = (src, sport, dst, dport) if from_client else (dst, dport, src, sport)
        if self.dropped.get(flow, 0.0) >= wall:
            return []
        if flow in self.udp_flows:
            self.udp_flows[flow] = wall + UDP_FLOW_S
            return fwd
        self.udp_flows[flow] = wall + UDP_FLOW_S
        if not looks_like_initiation(payload):
            return fwd
        direction = "egress" if from_client else "ingress"  # who began the flow: its first datagram's sender
        r = next((r for r in self.wireguard_rules if r.applies_to(direction) and (not r.ports or dport in r.ports)),
                 None)
        if r is None:
            return fwd
        self.dropped[flow] = wall + WIREGUARD_FLOW_DROP_S
        self.truth.write(r, f"{src}:{sport}", f"{dst}:{dport}", None, proto="udp")
        return []

    def _quic_sni(self, payload: bytes, from_client: bool, src: str, dst: str, sport: int, fwd: Sends,
                  wall: float) -> Sends:
        """Read the SNI of a QUIC Initial (decrypted with the keys its own header gives away, as the GFW has since
        2024) and drop the datagram, and the rest of its flow, when a sni-drop rule names it. A ClientHello
        continued in a second Initial passes, as it does through the GFW."""
        flow = (src, sport, dst, 443)
        if self.dropped.get(flow, 0.0) >= wall:
            return []
        if not payload or not payload[0] & 0x80:  # short header: no SNI to read
            return fwd
        hello = initial_hello(payload)
        if not isinstance(hello, ClientHello):
            return fwd
        r = self._first(self.quic_sni, hello.sni, "egress" if from_client else "ingress")
        if r is None:
            return fwd
        self.dropped[flow] = wall + QUIC_FLOW_DROP_S
        self.truth.write(r, f"{src}:{sport}", f"{dst}:443", hello.sni)
        return []

    def _ip_block_all(self, src: str, dst: str, from_client: bool, wall: float) -> tuple[Rule, bool] | None:
        """The ip rule without ports that drops this packet (every packet to/from its addresses: ICMP and UDP
        too), and whether the packet goes towards the rule's address; None when none does."""
        for server, towards in ((dst, True), (src, False)):
            r = self._ip_rule(server, 0)
            if r is not None and not r.ports and r.action == "drop":
                init_dir = "egress" if from_client == towards else "ingress"
                if r.applies_to(init_dir):
                    return r, towards
        return None

    def _once(self, flow: Flow, wall: float) -> bool:
        if flow in self.logged_ip:
            return False
        self.logged_ip[flow] = wall + 30
        return True

    def _dns(self, frame: bytes, payload: bytes, from_client: bool, src: str, dst: str, sport: int,
             fwd: Sends) -> Sends:
        """A UDP query's first question (``payload``: the datagram's bytes) against the dns rules."""
        if not self.dns_rules:
            return fwd
        q = dnswire.parse_question(payload)
        if q is None or q.is_response:
            return fwd
        direction = "egress" if from_client else "ingress"
        r = self._first(self.dns_rules, q.name, direction, qtype=q.qtype)
        if r is None:
            return fwd
        self.truth.write(r, f"{src}:{sport}", f"{dst}:53", q.name)
        out = []
        if r.action in ("inject", "nxdomain"):
            if r.action == "inject":
                resp = dnswire.forge_response(payload, q, answer_ip=r.answer)
            else:
                resp = dnswire.forge_response(payload, q, answer_ip=None, rcode=dnswire.RCODE_NXDOMAIN)
            pkt = packet.udp_packet(dst, src, 53, sport, resp, ttl=r.inject.ttl, ip_id=self._ip_id(r))
            out.append((frame[6:12] + frame[0:6] + b"\x08\x00" + pkt, from_client, 0.0))
            if r.action == "inject" or not self.in_path:
                out.extend(fwd)
            return out
        # drop
        return []

    def _tcp(self, frame: bytes, from_client: bool, src: str, dst: str, sport: int, dport: int,
             l4: int, fwd: Sends, wall: float) -> Sends:
        flow: Flow = (src, sport, dst, dport) if from_client else (dst, dport, src, sport)
        if self.dropped and flow in self.dropped:
            return []
        if self.residual:
            for key in ((src, dst, dport), (dst, src, sport)):
                until = self.residual.get(key)
                if until is not None:
                    if until > wall:
                        return []
        # ip rules: the server is dst when egress, src when ingress
        if self.ip_addr_rules or self.ip_net_rules:
            for server, port, client, cport, towards_server in ((dst, dport, src, sport, True), (src, sport, dst, dport, False)):
                r = self._ip_rule(server, port)
                if r is None:
                    continue
                init_dir = "egress" if from_client == towards_server else "ingress"
                if not r.applies_to(init_dir):
                    continue
                if r.action == "freeze":
                    if self._frozen((client, cport, server, port), r, frame, towards_server, l4, wall):
                        return []
                    break  # the flow's other rules (tls, http) still apply
                flags = frame[l4 + 13]
                if towards_server and flags & packet.SYN and not flags & packet.ACK:
                    if self._once((client, cport, server, port), wall):
                        self.truth.write(r, f"{client}:{cport}", f"{server}:{port}", self.names_by_addr.get(server))
                    if r.action == "rst":
                        seq = struct.unpack_from("!I", frame, l4 + 4)[0]
                        pkt = packet.tcp_packet(server, client, port, cport, seq=0, ack=seq + 1,
                                                flags=packet.RST | packet.ACK, window=0,
                                                ttl=r.inject.ttl, ip_id=self._ip_id(r))
                        forged = (frame[6:12] + frame[0:6] + b"\x08\x00" + pkt, from_client, 0.0)
                        return [forged] if self.in_path else [forged, *fwd]  # a tap holds nothing back
                return [] if self.in_path else fwd
        if self.throttled:
            buckets = self.throttled.get(flow)
            if buckets is not None:
                return self._throttle(frame, from_client, buckets)
        doff = (frame[l4 + 12] >> 4) * 4
        total = struct.unpack_from("!H", frame, 16)[0]
        pstart = l4 + doff
        pend = min(len(frame), 14 + total)
        if pend <= pstart or doff < 20:  # no payload, or a data offset that points into the header
            if frame[l4 + 13] & (packet.FIN | packet.RST) and flow in self.hello:
                self._hello_done(flow)
                del self.hello[flow]
            return fwd
        payload = frame[pstart:pend]
        direction = "egress" if from_client else "ingress"
        if self.openvpn_rules and is_openvpn_reset(payload):
            r = next((r for r in self.openvpn_rules if r.applies_to(direction) and (not r.ports or dport in r.ports)),
                     None)
            if r is not None:
                return self._act(r, frame, from_client, src, dst, sport, dport, l4, len(payload), None, fwd, wall)
        if dport in self.http_ports and payload[:1].isalpha():
            host = httphead.find_host(payload)
            if host is not None:
                r = self._first(self.http_rules, host, direction, dport)
                if r is not None:
                    return self._act(r, frame, from_client, src, dst, sport, dport, l4, len(payload), host, fwd, wall)
        if dport in self.tls_ports:
            state: ClientHelloBuffer | Literal[False] | None = self.hello.get(flow, False)  # False: not tracked yet
            if state is None:
                return fwd
            seq = struct.unpack_from("!I", frame, l4 + 4)[0]
            if frame[l4 + 13] & packet.SYN:  # data on a SYN (TCP Fast Open) starts after the SYN's own number
                seq = (seq + 1) & 0xFFFFFFFF
            if state is False:
                if len(self.hello) >= MAX_HELLO_FLOWS:  # bounded between two gc runs too
                    self._forget_hellos()
                if payload[:1] != b"\x16":
                    self.hello[flow] = None
                    return fwd
                state = self.hello[flow] = ClientHelloBuffer(seq, -1 if self.reassembly == "full" else 1)
            held = state.held
            result = state.feed(seq, payload)
            self.hello_bytes += state.held - held
            if result is False and self.reassembly != "none":
                if self.hello_bytes > MAX_HELLO_BYTES:  # half-sent hellos, each up to 32 KB with its records
                    self._forget_hellos()
                return fwd
            self._hello_done(flow)
            if isinstance(result, ClientHello) and result.sni:
                r = self._first(self.tls_rules, result.sni, direction, dport, result.ech)
                if r is not None:
                    return self._act(r, frame, from_client, src, dst, sport, dport, l4, len(payload), result.sni, fwd, wall)
        return fwd

    def _frozen(self, key: Flow, r: Rule, frame: bytes, towards_server: bool, l4: int, wall: float) -> bool:
        """An ip freeze rule: whether to drop this segment of a TCP flow to one of its addresses. The flow's server
        data passes until its sequence numbers pass ``after_kb`` KiB (counted from the server's SYN-ACK, so a
        retransmission is not counted twice); from the segment that would carry more, everything the server sends on
        that flow is dropped, and the client waits for nothing: no RST, as Russia's TSPU froze connections to
        foreign hosting and CDN addresses from 2025 ("the 16-20 KB block"). What the client sends passes. A flow
        whose SYN the censor did not see is not followed."""
        flags = frame[l4 + 13]
        state = self.freezes.get(key)
        if towards_server:
            if flags & packet.SYN and not flags & packet.ACK:  # a new connection, even on a frozen one's ports
                if len(self.freezes) >= MAX_FREEZE_FLOWS:  # bounded between two gc runs too
                    self.freezes.clear()
                self.freezes[key] = Freeze(None, wall + FLOW_TTL)
            return False
        if state is None:
            return False
        if state.frozen:
            return True
        seq = struct.unpack_from("!I", frame, l4 + 4)[0]
        if flags & packet.SYN:
            state.isn = seq
            return False
        if state.isn is None:
            return False
        doff = (frame[l4 + 12] >> 4) * 4
        total = struct.unpack_from("!H", frame, 16)[0]
        size = max(0, min(len(frame), 14 + total) - (l4 + doff)) if total else max(0, len(frame) - (l4 + doff))
        end = (seq + size - state.isn - 1) & 0xFFFFFFFF  # the flow's data offset past this segment
        if not size or end > 0x7FFFFFFF or end <= r.after_kb * 1024:  # a keep-alive before the start: passes
            return False
        state.frozen = True
        state.until = wall + FLOW_TTL
        client, cport, server, port = key
        self.truth.write(r, f"{client}:{cport}", f"{server}:{port}", self.names_by_addr.get(server),
                         after_kb=r.after_kb)
        return True

    def _throttle(self, frame: bytes, from_client: bool, buckets: tuple[Bucket, Bucket]) -> Sends:
        now = time.monotonic()
        b = buckets[0] if from_client else buckets[1]
        start = max(now, b.next_free)
        if start - now > MAX_QUEUE_DELAY:
            return []
        b.next_free = start + len(frame) * 8 / b.rate_bps
        return [(frame, not from_client, self.delay + (b.next_free - now))]

    def _act(self, r: Rule, frame: bytes, from_client: bool, src: str, dst: str, sport: int, dport: int,
             l4: int, plen: int, name: str | None, fwd: Sends, wall: float) -> Sends:
        """Apply an http/tls/openvpn rule to the segment that completed the trigger."""
        flow: Flow = (src, sport, dst, dport) if from_client else (dst, dport, src, sport)
        self.truth.write(r, f"{src}:{sport}", f"{dst}:{dport}", name)
        seq, ack = struct.unpack_from("!II", frame, l4 + 4)
        back_macs = frame[6:12] + frame[0:6] + b"\x08\x00"
        fwd_macs = frame[0:14]
        out: list[tuple[bytes, bool, float]] = []
        if r.action == "throttle":
            rate = float(r.rate_kbps or 0) * 1000.0
            start = time.monotonic()
            self.throttled[flow] = (Bucket(rate, start), Bucket(rate, start))
            return fwd
        residual = self.residual_s > 0
        if r.action == "rst":
            to_client = packet.tcp_packet(dst, src, dport, sport, seq=ack, ack=seq + plen, flags=packet.RST | packet.ACK,
                                          window=r.inject.window, ttl=r.inject.ttl, ip_id=self._ip_id(r))
            to_server_seq = seq if self.in_path else seq + plen
            to_server = packet.tcp_packet(src, dst, sport, dport, seq=to_server_seq, ack=ack, flags=packet.RST | packet.ACK,
                                          window=r.inject.window, ttl=r.inject.ttl, ip_id=self._ip_id(r))
            out.append((back_macs + to_client, from_client, 0.0))
            if not self.in_path:
                out.extend(fwd)
            out.append((fwd_macs + to_server, not from_client, self.delay))
        elif r.action == "drop":
            self.dropped[flow] = wall + FLOW_TTL
        elif r.action == "blockpage":
            body = blockpages.load(r.blockpage or "generic")
            resp = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nConnection: close\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            s = ack
            chunks = [resp[i : i + MSS] for i in range(0, len(resp), MSS)]
            ip_id = self._ip_id(r)
            for i, chunk in enumerate(chunks):
                last = i == len(chunks) - 1
                flags = packet.ACK | packet.PSH | (packet.FIN if last else 0)
                pkt = packet.tcp_packet(dst, src, dport, sport, seq=s, ack=seq + plen, flags=flags,
                                        window=r.inject.window, payload=chunk, ttl=r.inject.ttl,
                                        ip_id=(ip_id + i) & 0xFFFF if r.inject.ip_id is None else ip_id)
                out.append((back_macs + pkt, from_client, 0.0))
                s += len(chunk)
            if self.in_path:
                to_server = packet.tcp_packet(src, dst, sport, dport, seq=seq, ack=ack, flags=packet.RST | packet.ACK,
                                              window=r.inject.window, ttl=r.inject.ttl, ip_id=self._ip_id(r))
                out.append((fwd_macs + to_server, not from_client, self.delay))
                self.dropped[flow] = wall + FLOW_TTL
            else:
                out.extend(fwd)
        if residual:
            self.residual[(src, dst, dport)] = wall + self.residual_s
        return out


class Bridge:
    """Moves frames between the two interfaces through a `Censor`, with delays."""

    def __init__(self, censor: Censor, client_if: str, inet_if: str) -> None:
        self.censor = censor
        self.socks = []
        for ifname in (client_if, inet_if):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 * 1024 * 1024)
            s.bind((ifname, 0))
            s.setblocking(False)
            self.socks.append(s)
        self.heap: list[tuple[float, int, bytes, bool]] = []
        self.seq = 0
        self.running = True
        self.stats = {"frames": 0, "errors": 0}  # errors: frames `decide` failed on, relayed as they came

    def _send(self, frame: bytes, to_client_side: bool) -> None:
        try:
            self.socks[0 if to_client_side else 1].send(frame)
        except OSError:
            pass  # a full queue drops the frame, as a busy link would

    def _failed(self, frame: bytes, from_client: bool, e: Exception) -> list[tuple[bytes, bool, float]]:
        self.stats["errors"] += 1
        if self.stats["errors"] == 1:
            print(f"censor: a frame it could not handle was relayed ({type(e).__name__}: {e}); later ones are "
                  "only counted", file=sys.stderr)
        return [(frame, not from_client, self.censor.delay)]

    def run(self) -> None:
        poller = select.epoll()
        fds = {s.fileno(): i for i, s in enumerate(self.socks)}
        for s in self.socks:
            poller.register(s.fileno(), select.EPOLLIN)
        censor = self.censor
        heap = self.heap
        while self.running:
            timeout = -1.0
            if heap:
                timeout = max(0.0, heap[0][0] - time.monotonic())
            try:
                events = poller.poll(timeout if timeout >= 0 else 1.0)
            except InterruptedError:
                continue
            now = time.monotonic()
            wall = time.time()
            for fd, _ev in events:
                i = fds[fd]
                sock = self.socks[i]
                from_client = i == 0
                for _ in range(256):
                    try:
                        frame = sock.recv(65535)
                    except BlockingIOError:
                        break
                    except OSError:
                        break
                    self.stats["frames"] += 1
                    try:
                        todo = censor.decide(frame, from_client, now, wall)
                    except Exception as e:  # a bug must not stop the bridge: relay the frame as a bridge would
                        todo = self._failed(frame, from_client, e)
                    for out, to_client, delay in todo:
                        if delay <= 0:
                            self._send(out, to_client)
                        else:
                            self.seq += 1
                            heapq.heappush(heap, (now + delay, self.seq, out, to_client))
            if heap:
                now = time.monotonic()
                while heap and heap[0][0] <= now:
                    _, _, out, to_client = heapq.heappop(heap)
                    self._send(out, to_client)
            if now - censor.last_gc > 10:
                censor.last_gc = now
                censor.gc(wall, now)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tamperscope-censor", description="The lab's in-path censor bridge.")
    ap.add_argument("--profile", required=True, type=Path)
    ap.add_argument("--log", required=True, type=Path)
    ap.add_argument("--client-if", default=A.CENSOR_CLIENT_SIDE)
    ap.add_argument("--inet-if", default=A.CENSOR_INET_SIDE)
    ap.add_argument("--ready", type=Path)
    args = ap.parse_args(argv)
    profile = load_profile(args.profile, blockpages.names())
    bridge = Bridge(Censor(profile, GroundTruth(args.log)), args.client_if, args.inet_if)

    def stop(*_: object) -> None:
        bridge.running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.ready:
        args.ready.write_text(str(os.getpid()))
    bridge.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
