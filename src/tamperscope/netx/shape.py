"""Shapes for the first bytes a client sends: the evasion strategies' wire tricks.

A censor's DPI reads the first flight of a flow (a ClientHello's SNI, a request's Host header) with a parser
of its own, and real equipment differs in what that parser copes with: whether it reassembles TCP segments,
whether it follows a ClientHello over several TLS records, whether it compares names case-sensitively. A
strategy changes only how the same request is framed, so a strategy that gets through where the plain
request did not is proof that a DPI box was reading that flight, and says something about its parser
(Geneva's and GoodbyeDPI's techniques, done by the client alone, without raw sockets).

Each shape is a pure function ``bytes -> list[bytes]``: the pieces to write, in order, each as its own TCP
segment (:meth:`TCPStream.write` waits ``GAP`` between pieces). A shape that cannot find what it needs in the
bytes (no SNI, no Host header) returns them unchanged, as one piece, and says so through :class:`Unshaped`
on the stream, so a strategy never claims a trick it did not play.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Shape = Callable[[bytes], list[bytes]]

GAP = 0.05  # seconds between two pieces: the kernel sends the first before the second is written

_HOST = re.compile(rb"\r\nhost:[ \t]*([^\r\n]*?)[ \t]*\r\n", re.IGNORECASE)


class Unshaped(ValueError):
    """The bytes did not hold what the shape changes (no SNI, no Host header)."""


def _split_inside(start: int, length: int) -> int:
    """The middle of the ``length`` bytes at ``start`` (at least one byte on each side)."""
    return start + max(1, length // 2)


def sni_span(record: bytes, name: str) -> tuple[int, int]:
    """Where the SNI ``name`` lies in the first TLS record ``record`` (offset, length), or Unshaped."""
    if len(record) < 5 or record[0] != 0x16:
        raise Unshaped("not a TLS handshake record")
    raw = name.encode("ascii", "replace")
    i = record.find(raw, 5)
    if i < 0 or not name:
        raise Unshaped("the ClientHello carries no SNI")
    return i, len(raw)


def tls_segments(name: str) -> Shape:
    """The ClientHello in two TCP segments, cut in the middle of the SNI."""
    def shape(data: bytes) -> list[bytes]:
        i, n = sni_span(data, name)
        cut = _split_inside(i, n)
        return [data[:cut], data[cut:]]
    return shape


def _two_records(data: bytes, name: str) -> tuple[bytes, bytes]:
    """The first TLS record of ``data`` re-framed as two records, cut in the middle of the SNI; the rest of
    ``data`` (any later record) follows the second. A handshake message may span records (RFC 8446 5.1), so
    a server reassembles it; a parser that reads one record sees half a name."""
    i, n = sni_span(data, name)
    length = int.from_bytes(data[3:5], "big")
    end = 5 + length
    if end > len(data) or i + n > end:
        raise Unshaped("the ClientHello does not fit its first record")
    cut = _split_inside(i, n) - 5  # offset in the record's payload
    payload = data[5:end]
    head = data[:3]
    first = head + len(payload[:cut]).to_bytes(2, "big") + payload[:cut]
    second = head + len(payload[cut:]).to_bytes(2, "big") + payload[cut:] + data[end:]
    return first, second


def tls_records(name: str) -> Shape:
    """The ClientHello in two TLS records, cut in the middle of the SNI, sent as one write."""
    def shape(data: bytes) -> list[bytes]:
        first, second = _two_records(data, name)
        return [first + second]
    return shape


def tls_records_segments(name: str) -> Shape:
    """Two TLS records, each in its own TCP segment."""
    def shape(data: bytes) -> list[bytes]:
        return list(_two_records(data, name))
    return shape


def _host(data: bytes) -> re.Match[bytes]:
    """The Host header of the request head (never a match in the body)."""
    end = data.find(b"\r\n\r\n", 0, 65536)
    m = _HOST.search(data, 0, end + 2) if end >= 0 else None
    if m is None:
        raise Unshaped("the request has no Host header")
    return m


def http_segments(data: bytes) -> list[bytes]:
    """The request in two TCP segments, cut in the middle of the Host header's value."""
    m = _host(data)
    start, end = m.span(1)
    if end - start < 2:
        raise Unshaped("the Host header is too short to cut")
    cut = _split_inside(start, end - start)
    return [data[:cut], data[cut:]]


def mixed_case(text: bytes) -> bytes:
    """Every other letter upper-cased: ``host`` -> ``HoSt``; a name stays the same name (DNS and HTTP
    compare host names case-insensitively)."""
    out = bytearray(text.lower())
    letters = [k for k, c in enumerate(out) if 0x61 <= c <= 0x7A]
    for k in letters[::2]:
        out[k] -= 0x20
    return bytes(out)


def _changed(before: bytes, after: bytes) -> bytes:
    if after == before:
        raise Unshaped("the name is already in mixed case")
    return after


def host_name_case(data: bytes) -> list[bytes]:
    """The header's name in mixed case (``HoSt:``); HTTP header names are case-insensitive."""
    m = _host(data)
    k = m.start() + 2  # after CRLF
    return [_changed(data, data[:k] + mixed_case(data[k:k + 4]) + data[k + 4:])]


def host_value_case(data: bytes) -> list[bytes]:
    """The Host header's value in mixed case (``WwW.eXaMpLe.CoM``: every other letter, counted across the dots)."""
    m = _host(data)
    start, end = m.span(1)
    if not re.search(rb"[A-Za-z]", data[start:end]):
        raise Unshaped("the Host header holds no letters")
    return [_changed(data, data[:start] + mixed_case(data[start:end]) + data[end:])]


def host_trailing_dot(data: bytes) -> list[bytes]:
    """The Host header's name as a fully qualified name (``www.example.com.``), the port kept."""
    m = _host(data)
    start, end = m.span(1)
    value = data[start:end]
    if value.startswith(b"["):
        raise Unshaped("the Host header holds an IPv6 address")
    name, sep, port = value.partition(b":")
    if not name or name.endswith(b".") or name.replace(b".", b"").isdigit():
        raise Unshaped("the Host header holds no name to qualify")
    return [data[:start] + name + b"." + sep + port + data[end:]]


def openvpn_segments(data: bytes) -> list[bytes]:
    """OpenVPN's first packet over TCP in two segments: its two-byte length, then the packet. A server reads the
    stream; DPI that reads one segment sees a length with nothing after it, then a frame without its length."""
    if len(data) < 3 or int.from_bytes(data[:2], "big") != len(data) - 2:
        raise Unshaped("not one OpenVPN frame")
    return [data[:2], data[2:]]
