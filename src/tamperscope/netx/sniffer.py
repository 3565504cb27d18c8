"""A passive sniffer for the packets that fingerprint censorship equipment.

While a probe runs with `--capture` (root), a thread reads incoming IPv4
packets on an AF_PACKET socket whose in-kernel BPF filter passes only TCP
segments with RST or FIN and UDP from port 53: the forged RSTs, the injected
blockpages (data + FIN) and DNS answers. Each is kept, with the header values
that a socket API hides (IP-ID, TTL, TCP window, flags), in a ring bounded in
packets and in payload bytes (a flood of large segments cannot fill memory);
the engine attaches the ones that belong to a measurement as `x_packets`.
Our own address is never recorded (only the remote endpoint). What does not
parse (a header length under 20 bytes, a later fragment) is not a packet.
"""

from __future__ import annotations

import base64
import collections
import ctypes
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass

from ..wire import packet

SO_ATTACH_FILTER = 26
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
ETH_P_IP = 0x0800
# Classic BPF over the IP header (cooked socket): TCP with FIN|RST, or UDP from port 53.
_BPF = [
    (0x30, 0, 0, 9),  # ldb [9]              protocol
    (0x15, 0, 3, 6),  # jeq #6 ? next : UDP check
    (0xB1, 0, 0, 0),  # ldxb 4*([0]&0xf)     header length
    (0x50, 0, 0, 13),  # ldb [x+13]          TCP flags
    (0x45, 4, 5, 0x05),  # jset #FIN|RST ? accept : drop
    (0x15, 0, 4, 17),  # jeq #17 ? : drop    -> UDP
    (0xB1, 0, 0, 0),  # ldxb 4*([0]&0xf)
    (0x48, 0, 0, 0),  # ldh [x+0]            source port
    (0x15, 0, 1, 53),  # jeq #53 ? accept : drop
    (0x06, 0, 0, 0xFFFF),  # ret #65535 accept
    (0x06, 0, 0, 0),  # ret #0 drop
]


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


@dataclass(frozen=True)
class Packet:
    wall: float  # time.time() when read
    remote: str  # "ip:port" of the sender
    proto: str  # "tcp" | "udp"
    ip_id: int
    ttl: int
    flags: str  # TCP flags, "" for UDP
    window: int | None
    payload: bytes

    def as_record(self, zero_wall: float) -> dict[str, object]:
        return {"remote": self.remote, "proto": self.proto, "ip_id": self.ip_id, "ttl": self.ttl,
                "initial_ttl": packet.initial_ttl(self.ttl), "flags": self.flags or None, "window": self.window,
                "payload_len": len(self.payload), "t": round(self.wall - zero_wall, 6)}

    def payload_b64(self) -> str:
        return base64.b64encode(self.payload).decode()


def _flags(f: int) -> str:
    return "".join(c for bit, c in ((packet.SYN, "S"), (packet.FIN, "F"), (packet.RST, "R"), (packet.PSH, "P"),
                                    (packet.ACK, "A")) if f & bit)


class Sniffer:
    """Background capture; `packets_for(endpoints, since, until)` picks a measurement's packets."""

    def __init__(self, keep: int = 100_000, keep_bytes: int = 64 << 20) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        prog = (_SockFilter * len(_BPF))(*[_SockFilter(*ins) for ins in _BPF])
        self._fprog = _SockFprog(len(_BPF), prog)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(self._fprog))
        self.ring: collections.deque[Packet] = collections.deque()
        self._keep = keep  # packets in the ring at most
        self._keep_bytes = keep_bytes  # payload bytes in the ring at most; the oldest go first
        self._bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sniffer", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> "Sniffer":
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            r, _, _ = select.select([self.sock], [], [], 0.2)
            if not r:
                continue
            try:
                data = self.sock.recv(65535)
            except OSError:
                continue
            try:
                p = self._parse(data)
            except (struct.error, ValueError, IndexError, OSError):  # damaged: not a packet
                continue
            if p is not None:
                self._keep_packet(p)

    def _keep_packet(self, p: Packet) -> None:
        with self._lock:
            self.ring.append(p)
            self._bytes += len(p.payload)
            while len(self.ring) > self._keep or self._bytes > self._keep_bytes:
                self._bytes -= len(self.ring.popleft().payload)

    @staticmethod
    def _parse(data: bytes) -> Packet | None:
        ip = packet.parse_ipv4(data)
        if ip is None or ip.frag_offset:  # a later fragment has no transport header
            return None
        body = bytes(ip.body(data))
        now = time.time()
        if ip.proto == packet.PROTO_TCP:
            seg = packet.parse_tcp(body)
            if seg is None:
                return None
            return Packet(now, f"{ip.src}:{seg.sport}", "tcp", ip.ip_id, ip.ttl, _flags(seg.flags), seg.window,
                          seg.payload[:65536])
        if ip.proto == packet.PROTO_UDP:
            dg = packet.parse_udp(body)
            if dg is None:
                return None
            return Packet(now, f"{ip.src}:{dg.sport}", "udp", ip.ip_id, ip.ttl, "", None, dg.payload[:4096])
        return None

    def packets_for(self, remotes: set[str], since: float, until: float) -> list[Packet]:
        with self._lock:
            return [p for p in self.ring if p.remote in remotes and since <= p.wall <= until]


