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

Needs root (raw and packet sockets). Blocking code, meant to run in a thread.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from dataclasses import dataclass, field

from ..wire import packet

PACKET_OUTGOING = 4
ETH_P_IP = 0x0800


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

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "src": self.src, "ttl": self.ttl, "initial_ttl": packet.initial_ttl(self.ttl),
                "ip_id": self.ip_id, "flags": tcp_flags(self.flags) if self.kind == "tcp" else None,
                "window": self.window if self.kind == "tcp" else None, "payload_len": len(self.payload),
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
    """Incoming IPv4 packets on every interface of this namespace."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.setblocking(False)

    def drain(self) -> None:
        while True:
            try:
                self.sock.recv(65535)
            except BlockingIOError:
                return

    def packets(self, seconds: float) -> list[tuple[float, bytes]]:
        out = []
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return out
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                continue
            while True:
                try:
                    data, addr = self.sock.recvfrom(65535)
                except BlockingIOError:
                    break
                if addr[2] != PACKET_OUTGOING:
                    out.append((time.monotonic(), data))

    def close(self) -> None:
        self.sock.close()


def _classify(data: bytes, t: float, *, server: str, sport: int, dport: int, proto: int) -> Seen | None:
    ip = packet.parse_ipv4(data)
    if ip is None:
        return None
    body = data[ip.header_len : ip.total_len]
    if ip.proto == packet.PROTO_ICMP and len(body) >= 8:
        itype = body[0]
        inner = packet.parse_ipv4(body[8:])
        if inner is None or inner.dst != server or inner.proto != proto:
            if itype == 0 and ip.src == server:
                return Seen("echo-reply", ip.src, ip.ttl, ip.ip_id, t=t)
            return None
        ports = body[8 + inner.header_len : 8 + inner.header_len + 4]
        if len(ports) < 4 or struct.unpack("!HH", ports) != (sport, dport):
            return None
        kind = "icmp-time-exceeded" if itype == 11 else "icmp-unreachable" if itype == 3 else f"icmp-{itype}"
        return Seen(kind, ip.src, ip.ttl, ip.ip_id, t=t)
    if ip.src != server:
        return None
    if ip.proto == packet.PROTO_TCP and proto == packet.PROTO_TCP:
        seg = packet.parse_tcp(body)
        if seg is None or (seg.sport, seg.dport) != (dport, sport):
            return None
        return Seen("tcp", ip.src, ip.ttl, ip.ip_id, seg.flags, seg.window, seg.payload, t)
    if ip.proto == packet.PROTO_UDP and proto == packet.PROTO_UDP:
        dg = packet.parse_udp(body)
        if dg is None or (dg.sport, dg.dport) != (dport, sport):
            return None
        return Seen("udp", ip.src, ip.ttl, ip.ip_id, payload=dg.payload, t=t)
    return None


def tcp_trigger(cap: Capture, ip: str, port: int, payload: bytes, ttl: int, *, wait: float = 1.0,
                connect_timeout: float = 3.0) -> Step:
    """Connect normally, then send `payload` with IP TTL `ttl`; capture for `wait` seconds."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(connect_timeout)
    try:
        s.connect((ip, port))
    except OSError as e:
        s.close()
        return Step(ttl, False, "generic_timeout_error" if isinstance(e, (socket.timeout, TimeoutError))
                    else "connection_refused" if isinstance(e, ConnectionRefusedError) else f"unknown_failure: {e}")
    sport = s.getsockname()[1]
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    cap.drain()
    t0 = time.monotonic()
    try:
        s.sendall(payload)
    except OSError:
        pass
    seen = [x for t, data in cap.packets(wait) if (x := _classify(data, t - t0, server=ip, sport=sport, dport=port,
                                                                 proto=packet.PROTO_TCP)) is not None]
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST, no FIN dance
    s.close()
    return Step(ttl, True, None, seen)


def udp_trigger(cap: Capture, ip: str, port: int, payload: bytes, ttl: int, *, wait: float = 1.0) -> Step:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((ip, port))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    sport = s.getsockname()[1]
    cap.drain()
    t0 = time.monotonic()
    s.send(payload)
    seen = [x for t, data in cap.packets(wait) if (x := _classify(data, t - t0, server=ip, sport=sport, dport=port,
                                                                 proto=packet.PROTO_UDP)) is not None]
    s.close()
    return Step(ttl, True, None, seen)


def traceroute(ip: str, *, max_ttl: int = 16, wait: float = 0.5) -> tuple[list[str | None], int | None]:
    """(router address at each TTL 1..n, TTL at which `ip` itself answered or None)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    hops: list[str | None] = []
    try:
        for ttl in range(1, max_ttl + 1):
            s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
            body = struct.pack("!BBHHH", 8, 0, 0, ident, ttl) + b"tamperscope-locate"
            body = body[:2] + struct.pack("!H", packet.checksum(body)) + body[4:]
            s.sendto(body, (ip, 0))
            end = time.monotonic() + wait
            got: str | None = None
            reached = False
            while time.monotonic() < end and got is None:
                r, _, _ = select.select([s], [], [], max(0.0, end - time.monotonic()))
                if not r:
                    break
                data, _ = s.recvfrom(65535)
                outer = packet.parse_ipv4(data)
                if outer is None:
                    continue
                icmp = data[outer.header_len :]
                if icmp[0] == 0 and outer.src == ip and struct.unpack("!HH", icmp[4:8]) == (ident, ttl):
                    got, reached = outer.src, True
                elif icmp[0] == 11 and len(icmp) >= 36:
                    inner = packet.parse_ipv4(icmp[8:])
                    q = icmp[8 + (inner.header_len if inner else 20):]
                    if inner is not None and inner.dst == ip and len(q) >= 8 and struct.unpack("!HH", q[4:8]) == (ident, ttl):
                        got = outer.src
            hops.append(got)
            if reached:
                return hops, ttl
    finally:
        s.close()
    return hops, None
