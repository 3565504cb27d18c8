"""TTL-limited probes on raw sockets, for locating censors (the CenTrace method).

- `traceroute`: ICMP echo requests with TTL 1..N: which router answers at each
  hop, and at which TTL the destination itself answers.
- `tcp_trigger`: a normal TCP handshake, then the triggering payload (an HTTP
  request or a ClientHello) sent with IP TTL k; for a short while every packet
  that comes back is captured on an AF_PACKET socket: ICMP time-exceeded
  quoting our segment (which router the trigger died at) and anything from
  the server's address and port (a forged RST, a blockpage, the real answer),
  with the header fields that fingerprint the equipment.
- `udp_trigger`: the same for a DNS query over UDP.

What comes back is hostile input. A packet counts only if it names our flow
(our address and ports; for an ICMP error, a quote of a packet we sent), a
packet that does not parse is counted and ignored, and collection is bounded in
time (the deadline holds under a flood) and memory (`MAX_SEEN` packets and
`MAX_PAYLOAD` bytes per trigger). A connection reset, closed or answered before
its trigger went is not a step: what came back cannot be about the trigger.

Needs root (raw and packet sockets). Blocking code, meant to run in a thread.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ..model import failures as F
from ..wire import packet
from .classify import classify

PACKET_OUTGOING = 4
ETH_P_IP = 0x0800
MAX_SEEN = 64  # packets kept per trigger; more naming our flow (a flood) are counted, not kept
MAX_PAYLOAD = 64 << 10  # payload bytes kept per trigger: a blockpage fits, a real page is cut short
MAX_DRAIN = 10_000  # stale packets discarded before a trigger at most: a flood cannot hold it up
SETTLE_MIN = 0.02  # seconds to watch a new connection before its trigger, beyond twice the handshake's time
# ICMP errors, which quote the packet they are about (RFC 792): unreachable, source quench, redirect,
# time exceeded, parameter problem.
ICMP_ERRORS = frozenset({3, 4, 5, 11, 12})
PARSE_ERRORS = (struct.error, IndexError, ValueError, OSError)  # what a damaged packet can raise
# bytes of the TCP header of the kernel's bare ACK (timestamps on): a quote too short to hold the segment's own
# header length (RFC 792's 8 bytes) is taken to have carried data when its packet was longer than that
ACK_TCP_HEADER = 32


@dataclass(frozen=True)
class Seen:
    """One packet that came back."""

    kind: str  # "icmp-time-exceeded", "icmp-unreachable", "tcp", "udp", "echo-reply"
    src: str
    ttl: int
    ip_id: int
    flags: int = 0  # TCP flags
    window: int = 0
    payload: bytes = b""
    t: float = 0.0  # seconds after the trigger was sent
    payload_len: int | None = None  # bytes on the wire when `payload` was cut short; None: len(payload)

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "src": self.src, "ttl": self.ttl, "initial_ttl": packet.initial_ttl(self.ttl),
                "ip_id": self.ip_id, "flags": tcp_flags(self.flags) if self.kind == "tcp" else None,
                "window": self.window if self.kind == "tcp" else None,
                "payload_len": len(self.payload) if self.payload_len is None else self.payload_len,
                "t": round(self.t, 4)}


@dataclass
class Step:
    """What one TTL-limited trigger produced."""

    ttl: int
    connected: bool
    connect_failure: str | None = None
    seen: list[Seen] = field(default_factory=list)

    @property
    def icmp_from(self) -> str | None:
        return next((s.src for s in self.seen if s.kind == "icmp-time-exceeded"), None)

    def responses(self) -> list[Seen]:
        return [s for s in self.seen if s.kind in ("tcp", "udp")]


def tcp_flags(f: int) -> str:
    return "".join(c for bit, c in ((packet.SYN, "S"), (packet.FIN, "F"), (packet.RST, "R"), (packet.PSH, "P"),
                                    (packet.ACK, "A")) if f & bit)


class Capture:
    """Incoming IPv4 packets on every interface of this namespace.

    `ignored` counts the packets read that named none of our flows or did not parse; `dropped` the
    ones of ours beyond `MAX_SEEN` for one trigger. A hostile network's noise is counted, not kept."""

    def __init__(self, sock: socket.socket | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        if sock is None:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.setblocking(False)
        self.sock = sock
        self._clock = clock  # monotonic seconds; injected in tests
        self.ignored = 0
        self.dropped = 0

    def now(self) -> float:
        return self._clock()

    def drain(self) -> None:
        """Discard what is queued (at most `MAX_DRAIN` packets: under a flood there is always more)."""
        for _ in range(MAX_DRAIN):
            try:
                self.sock.recv(65535)
            except BlockingIOError:
                return

    def collect(self, seconds: float, classify: Callable[[bytes, float], Seen | None]) -> list[Seen]:
        """For `seconds`, the packets that `classify(data, now)` recognises, in arrival order.

        The deadline is checked before every packet, so a flood ends with it; a packet whose parsing
        raises is one more ignored packet."""
        seen: list[Seen] = []
        budget = MAX_PAYLOAD
        end = self._clock() + seconds
        while (left := end - self._clock()) > 0:
            try:
                data, addr = self.sock.recvfrom(65535)
            except BlockingIOError:
                select.select([self.sock], [], [], left)
                continue
            if addr[2] == PACKET_OUTGOING:
                continue
            try:
                one = classify(data, self._clock())
            except PARSE_ERRORS:
                one = None
            if one is None:
                self.ignored += 1
            elif len(seen) >= MAX_SEEN:
                self.dropped += 1
            else:
                if len(one.payload) > budget:
                    one = replace(one, payload=one.payload[:budget], payload_len=len(one.payload))
                budget -= len(one.payload)
                seen.append(one)
        return seen

    def close(self) -> None:
        self.sock.close()


def _icmp_kind(itype: int, code: int) -> str:
    if (itype, code) == (11, 0):  # TTL exceeded in transit (code 1 is a host's fragment reassembly timeout)
        return "icmp-time-exceeded"
    return "icmp-unreachable" if itype == 3 else f"icmp-{itype}.{code}"


def _quotes_flow(quote: bytes, *, local: str | None, server: str, sport: int, dport: int, proto: int,
                 data: bool = False) -> bool:
    """Whether an ICMP error's quote starts a packet of our flow (RFC 792 quotes 8 bytes of its transport).
    ``data``: a TCP segment that carried data, as a trigger does; not the kernel's own ACK on the flow (it
    answers a server's retransmitted SYN-ACK with the socket's TTL, set low for the trigger: QA, on a path of
    2.4 s, a router's time-exceeded for such an ACK was taken for the trigger's)."""
    inner = packet.parse_ipv4(quote)
    if inner is None or inner.frag_offset or inner.proto != proto or inner.dst != server:
        return False
    if local is not None and inner.src != local:
        return False
    ports = quote[inner.header_len : inner.header_len + 4]
    if len(ports) != 4 or struct.unpack("!HH", ports) != (sport, dport):
        return False
    if data and proto == packet.PROTO_TCP:
        offset = quote[inner.header_len + 12 : inner.header_len + 13]  # quoted beyond RFC 792's 8 bytes (RFC 1812)
        headers = inner.header_len + ((offset[0] >> 4) * 4 if offset else ACK_TCP_HEADER)
        return inner.total_len > headers
    return True


def _classify(data: bytes, t: float, *, server: str, sport: int, dport: int, proto: int,
              local: str | None = None, trigger: bool = False) -> Seen | None:
    """What `data` (an IPv4 packet from the packet socket) is for the flow local:sport -> server:dport, or
    None when it is not about that flow (`local` None: any local address). ``trigger``: after a trigger sent on
    an open TCP connection, only what can be about it: an ICMP error for a segment with data, and no SYN (the
    server's SYN-ACK sent again, on a path slower than its retransmission timer, is the handshake's, not an
    answer: QA, locate placed a censor at hop 1 on a path no rule touched)."""
    ip = packet.parse_ipv4(data)
    if ip is None or ip.frag_offset or (local is not None and ip.dst != local):
        return None  # a later fragment has no transport header: its first bytes are not ports
    body = bytes(ip.body(data))
    if ip.proto == packet.PROTO_ICMP and len(body) >= 8:
        itype, code = body[0], body[1]
        if itype in ICMP_ERRORS and _quotes_flow(body[8:], local=local, server=server, sport=sport, dport=dport,
                                                 proto=proto, data=trigger):
            return Seen(_icmp_kind(itype, code), ip.src, ip.ttl, ip.ip_id, t=t)
        if itype == 0 and ip.src == server:
            return Seen("echo-reply", ip.src, ip.ttl, ip.ip_id, t=t)
        return None
    if ip.src != server:
        return None
    if ip.proto == packet.PROTO_TCP and proto == packet.PROTO_TCP:
        seg = packet.parse_tcp(body)
        if seg is None or (seg.sport, seg.dport) != (dport, sport) or (trigger and seg.flags & packet.SYN):
            return None
        return Seen("tcp", ip.src, ip.ttl, ip.ip_id, seg.flags, seg.window, seg.payload, t)
    if ip.proto == packet.PROTO_UDP and proto == packet.PROTO_UDP:
        dg = packet.parse_udp(body)
        if dg is None or (dg.sport, dg.dport) != (dport, sport):
            return None
        return Seen("udp", ip.src, ip.ttl, ip.ip_id, payload=dg.payload, t=t)
    return None


def _before_trigger(s: socket.socket, early: list[Seen]) -> str | None:
    """Why a new connection can no longer carry a trigger (reset, closed or answered with nothing
    asked), or None. `early`: what came back on its flow before the trigger was sent."""
    s.setblocking(False)
    try:
        peek = s.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        peek = None
    except OSError as e:
        return classify(e, operation=F.READ)
    flags = 0
    for x in early:
        flags |= x.flags if x.kind == "tcp" else 0
    if flags & packet.RST:
        return F.CONNECTION_RESET
    if peek == b"" or flags & packet.FIN:
        return F.EOF_ERROR
    if peek or any(x.kind == "tcp" and x.payload for x in early):
        return F.unknown("answered before the trigger")
    return None


def _abort(s: socket.socket) -> None:
    """Close with RST, no FIN dance."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def tcp_trigger(cap: Capture, ip: str, port: int, payload: bytes, ttl: int, *, wait: float = 1.0,
                connect_timeout: float = 3.0) -> Step:
    """Connect normally, then send `payload` with IP TTL `ttl`; capture for `wait` seconds.

    Before the trigger the connection is watched for twice the handshake's time (plus `SETTLE_MIN`):
    anything on its flow then (a box resetting every connection to the address, residual blocking)
    would otherwise be taken for an answer to the trigger, at whatever TTL it was sent with."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(connect_timeout)
    started = cap.now()
    try:
        s.connect((ip, port))
    except OSError as e:
        s.close()
        return Step(ttl, False, classify(e, operation=F.CONNECT))
    settle = min(wait, 2 * (cap.now() - started) + SETTLE_MIN)
    try:
        local, sport = s.getsockname()[:2]
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)

        def ours(t0: float, trigger: bool) -> Callable[[bytes, float], Seen | None]:
            return lambda data, now: _classify(data, now - t0, server=ip, sport=sport, dport=port,
                                               proto=packet.PROTO_TCP, local=local, trigger=trigger)

        cap.drain()
        failure = _before_trigger(s, cap.collect(settle, ours(0.0, False)))
        t0 = cap.now()
        failure = failure or _send(s, payload)
        if failure is not None:
            return Step(ttl, False, failure)
        return Step(ttl, True, None, cap.collect(wait, ours(t0, True)))
    finally:
        _abort(s)


def syn_trigger(cap: Capture, ip: str, port: int, ttl: int, *, wait: float = 1.0) -> Step:
    """A bare SYN with IP TTL `ttl`, and what came back in `wait` seconds: a router's time-exceeded quoting it,
    or the server's SYN-ACK or RST. The trigger for an address and port that cannot be connected to at all (an
    IP or port block), where `tcp_trigger` has no connection to send anything on."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        s.setblocking(False)
        cap.drain()
        t0 = cap.now()
        err = s.connect_ex((ip, port))
        if err not in (0, errno.EINPROGRESS):
            return Step(ttl, False, classify(OSError(err, os.strerror(err)), operation=F.CONNECT))
        local, sport = s.getsockname()[:2]
        seen = cap.collect(wait, lambda data, now: _classify(data, now - t0, server=ip, sport=sport, dport=port,
                                                              proto=packet.PROTO_TCP, local=local))
        return Step(ttl, True, None, seen)
    finally:
        _abort(s)


def _send(s: socket.socket, payload: bytes) -> str | None:
    try:
        s.sendall(payload)
    except BlockingIOError:
        pass  # a full send buffer (the socket is non-blocking by now): the trigger's first bytes went
    except OSError as e:
        return classify(e, operation=F.WRITE)
    return None


def udp_trigger(cap: Capture, ip: str, port: int, payload: bytes, ttl: int, *, wait: float = 1.0) -> Step:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((ip, port))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        local, sport = s.getsockname()[:2]
        cap.drain()
        t0 = cap.now()
        s.send(payload)
        seen = cap.collect(wait, lambda data, now: _classify(data, now - t0, server=ip, sport=sport, dport=port,
                                                              proto=packet.PROTO_UDP, local=local))
    return Step(ttl, True, None, seen)


def _source_address(ip: str) -> str:
    """Our address on the route to `ip` (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((ip, 9))
        return str(s.getsockname()[0])


def _hop_reply(data: bytes, *, ip: str, local: str, ident: int, seq: int) -> tuple[str, bool] | None:
    """(who answered, whether it is `ip` itself) if `data` answers our echo request (ident, seq), else None.

    A time-exceeded counts only if it quotes that very request: ours, to `ip`, with that id and sequence."""
    outer = packet.parse_ipv4(data)
    if outer is None or outer.frag_offset:
        return None
    icmp = bytes(outer.body(data))
    if len(icmp) < 8:
        return None
    if icmp[0] == 0 and outer.src == ip and struct.unpack("!HH", icmp[4:8]) == (ident, seq):
        return outer.src, True
    if (icmp[0], icmp[1]) != (11, 0):
        return None
    inner = packet.parse_ipv4(icmp[8:])
    if inner is None or inner.frag_offset or inner.proto != packet.PROTO_ICMP or (inner.src, inner.dst) != (local, ip):
        return None
    q = icmp[8 + inner.header_len : 8 + inner.header_len + 8]
    if len(q) == 8 and q[0] == 8 and struct.unpack("!HH", q[4:8]) == (ident, seq):
        return outer.src, False
    return None


def traceroute(ip: str, *, max_ttl: int = 16, wait: float = 0.5) -> tuple[list[str | None], int | None]:
    """(router address at each TTL 1..n, TTL at which `ip` itself answered or None).

    Every TTL's echo request goes out at once, as traceroute(8) sends its probes side by side, and the answers
    are read for at most `wait` seconds after: a path that goes silent costs one wait, not one per hop. It ends
    sooner once `ip` answered and every hop before it did. Each answer is matched by the sequence number it
    quotes, and sequence numbers start at random: a late or replayed answer to an earlier trace is not this
    one's. A router rate-limits its time-exceeded messages per source, but each sees one probe of ours."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    base = int.from_bytes(os.urandom(2), "big")
    hops: list[str | None] = [None] * max_ttl
    reached: int | None = None
    try:
        s.setblocking(False)
        local = _source_address(ip)
        for ttl in range(1, max_ttl + 1):
            seq = (base + ttl) & 0xFFFF
            s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
            body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"tamperscope-locate"
            body = body[:2] + struct.pack("!H", packet.checksum(body)) + body[4:]
            s.sendto(body, (ip, 0))
        end = time.monotonic() + wait
        while (left := end - time.monotonic()) > 0:
            if reached is not None and all(hops[:reached - 1]):
                break
            r, _, _ = select.select([s], [], [], left)
            if not r:
                break
            try:
                data, _ = s.recvfrom(65535)
            except BlockingIOError:
                continue
            for ttl in range(1, max_ttl + 1):
                try:
                    got = _hop_reply(data, ip=ip, local=local, ident=ident, seq=(base + ttl) & 0xFFFF)
                except PARSE_ERRORS:
                    got = None
                if got is None:
                    continue
                hops[ttl - 1] = got[0]
                if got[1] and (reached is None or ttl < reached):
                    reached = ttl
                break
    finally:
        s.close()
    if reached is not None:
        return hops[:reached], reached
    return hops, None
