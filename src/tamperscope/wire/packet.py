"""Ethernet, IPv4, TCP and UDP framing: parse just enough, build forged packets.

Sans-IO: bytes in, values out. The lab's censor bridge uses it on every frame,
and the locator (`tamperscope locate`) uses it to read what comes back on raw
sockets. Only IPv4 is handled: the lab is IPv4-only (198.18.0.0/15).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

ETH_P_IP = 0x0800
ETH_HLEN = 14
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17

# TCP flag bits
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of `data`."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@dataclass(frozen=True, slots=True)
class IPv4:
    """The fields of an IPv4 header that tamperscope looks at."""

    src: str
    dst: str
    proto: int
    ttl: int
    ip_id: int
    header_len: int  # bytes, 20-60 and within the packet
    total_len: int  # bytes, header included; at least header_len (0 on the wire: read to the end, as TSO leaves it)
    frag_offset: int = 0  # bytes; a later fragment (non-zero) carries no transport header

    def body(self, packet: bytes | memoryview) -> bytes | memoryview:
        """What follows the header in `packet`, bounded by the total length (link padding cut off)."""
        return packet[self.header_len : self.total_len]


@dataclass(frozen=True, slots=True)
class TCP:
    """A TCP segment's header fields and payload."""

    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class UDP:
    sport: int
    dport: int
    payload: bytes


def parse_ipv4(packet: bytes | memoryview) -> IPv4 | None:
    """Parse an IPv4 header at the start of `packet`, or None if it is not one.

    Whatever the network sent: a header length under 20 bytes or past the end of `packet`, or a total
    length shorter than the header, is not a header. A total length past the end is kept (an ICMP
    error quotes only the start of a packet); 0 means "to the end"."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    total, ip_id, frag, ttl, proto = struct.unpack_from("!HHHBB", packet, 2)
    if ihl < 20 or ihl > len(packet) or 0 < total < ihl:
        return None
    return IPv4(
        src=socket.inet_ntoa(bytes(packet[12:16])),
        dst=socket.inet_ntoa(bytes(packet[16:20])),
        proto=proto,
        ttl=ttl,
        ip_id=ip_id,
        header_len=ihl,
        total_len=total or len(packet),
        frag_offset=(frag & 0x1FFF) * 8,
    )


def parse_tcp(segment: bytes | memoryview, end: int | None = None) -> TCP | None:
    """Parse a TCP header and payload; `end` bounds the payload (IP total length).

    None when the data offset is under 20 bytes or past the end: there is no payload to find."""
    if len(segment) < 20:
        return None
    sport, dport, seq, ack, off_flags, window = struct.unpack_from("!HHIIHH", segment, 0)
    doff = (off_flags >> 12) * 4
    if doff < 20 or doff > len(segment):
        return None
    stop = len(segment) if end is None else min(end, len(segment))
    return TCP(sport, dport, seq, ack, off_flags & 0x3F, window, bytes(segment[doff:stop]))


def parse_udp(datagram: bytes | memoryview) -> UDP | None:
    if len(datagram) < 8:
        return None
    sport, dport, length = struct.unpack_from("!HHH", datagram, 0)
    return UDP(sport, dport, bytes(datagram[8 : max(8, min(length, len(datagram)))]))


def ipv4_header(
    src: str, dst: str, proto: int, payload_len: int, *, ttl: int = 64, ip_id: int = 0
) -> bytes:
    """A 20-byte IPv4 header (DF set) with its checksum filled in."""
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + payload_len,
        ip_id & 0xFFFF,
        0x4000,
        ttl & 0xFF,
        proto,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    return hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]


def _pseudo(src: str, dst: str, proto: int, length: int) -> bytes:
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, proto, length)


def tcp_packet(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    *,
    seq: int,
    ack: int,
    flags: int,
    window: int = 8192,
    payload: bytes = b"",
    ttl: int = 64,
    ip_id: int = 0,
) -> bytes:
    """A whole IPv4+TCP packet with both checksums computed."""
    hdr = struct.pack(
        "!HHIIHHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, (5 << 12) | flags, window & 0xFFFF, 0, 0
    )
    csum = checksum(_pseudo(src, dst, PROTO_TCP, len(hdr) + len(payload)) + hdr + payload)
    seg = hdr[:16] + struct.pack("!H", csum) + hdr[18:] + payload
    return ipv4_header(src, dst, PROTO_TCP, len(seg), ttl=ttl, ip_id=ip_id) + seg


def udp_packet(
    src: str, dst: str, sport: int, dport: int, payload: bytes, *, ttl: int = 64, ip_id: int = 0
) -> bytes:
    """A whole IPv4+UDP packet with both checksums computed."""
    length = 8 + len(payload)
    hdr = struct.pack("!HHHH", sport, dport, length, 0)
    csum = checksum(_pseudo(src, dst, PROTO_UDP, length) + hdr + payload) or 0xFFFF
    return ipv4_header(src, dst, PROTO_UDP, length, ttl=ttl, ip_id=ip_id) + hdr[:6] + struct.pack("!H", csum) + payload


def ethernet(dst_mac: bytes, src_mac: bytes, payload: bytes, ethertype: int = ETH_P_IP) -> bytes:
    return dst_mac + src_mac + struct.pack("!H", ethertype) + payload


def initial_ttl(observed: int) -> int:
    """The likely initial TTL of a packet seen with TTL `observed` (32, 64, 128 or 255)."""
    for guess in (32, 64, 128, 255):
        if observed <= guess:
            return guess
    return 255
