"""TLS ClientHello parsing: the server name (SNI), even across segments.

DPI boxes read the SNI of the first flight; so does the lab's censor and the
interception proxy. `ClientHelloBuffer` accumulates a flow's first bytes (the
ClientHello may be split over several TCP segments or TLS records) and says
when it has the whole message. Malformed input yields `Incomplete`/None,
never an exception.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAX_HELLO = 16384 + 5  # one record's worth is plenty for a ClientHello


@dataclass(frozen=True, slots=True)
class ClientHello:
    sni: str | None  # lower-cased host_name, if any
    alpn: tuple[str, ...]


class NotTLS(Exception):
    """The bytes are not a TLS handshake."""


def _handshake_bytes(data: bytes) -> bytes | None:
    """Concatenate the handshake-record payloads at the start of `data`.

    Returns None when the first record is not a TLS handshake; raises nothing.
    """
    out = bytearray()
    pos = 0
    while pos + 5 <= len(data):
        ctype, _major, _minor, length = struct.unpack_from("!BBBH", data, pos)
        if ctype != 22:
            return None if pos == 0 else bytes(out)
        out += data[pos + 5 : pos + 5 + length]
        pos += 5 + length
    if pos == 0 and len(data) >= 1 and data[0] != 22:
        return None
    return bytes(out)


def parse_client_hello(data: bytes) -> ClientHello | None | bool:
    """Parse the ClientHello at the start of a flow.

    Returns a ClientHello when complete, False when more bytes are needed,
    and None when the bytes are not a TLS ClientHello.
    """
    hs = _handshake_bytes(data)
    if hs is None:
        return None
    if len(hs) < 4:
        return False
    if hs[0] != 1:  # client_hello
        return None
    length = int.from_bytes(hs[1:4], "big")
    if len(hs) < 4 + length:
        return False
    body = hs[4 : 4 + length]
    try:
        return _parse_body(body)
    except (IndexError, struct.error, ValueError):
        return None


def _parse_body(body: bytes) -> ClientHello | None:
    pos = 2 + 32  # version, random
    sid_len = body[pos]
    pos += 1 + sid_len
    (cs_len,) = struct.unpack_from("!H", body, pos)
    pos += 2 + cs_len
    comp_len = body[pos]
    pos += 1 + comp_len
    sni: str | None = None
    alpn: list[str] = []
    if pos + 2 > len(body):
        return ClientHello(None, ())
    (ext_total,) = struct.unpack_from("!H", body, pos)
    pos += 2
    end = min(len(body), pos + ext_total)
    while pos + 4 <= end:
        etype, elen = struct.unpack_from("!HH", body, pos)
        ext = body[pos + 4 : pos + 4 + elen]
        pos += 4 + elen
        if etype == 0 and len(ext) >= 5:  # server_name
            p = 2
            while p + 3 <= len(ext):
                ntype, nlen = ext[p], struct.unpack_from("!H", ext, p + 1)[0]
                if ntype == 0:
                    sni = ext[p + 3 : p + 3 + nlen].decode("ascii", "replace").lower().rstrip(".")
                    break
                p += 3 + nlen
        elif etype == 16 and len(ext) >= 2:  # ALPN
            p = 2
            while p < len(ext):
                n = ext[p]
                alpn.append(ext[p + 1 : p + 1 + n].decode("ascii", "replace"))
                p += 1 + n
    return ClientHello(sni, tuple(alpn))


class ClientHelloBuffer:
    """Reassembles the first flight of a TLS flow from in-order TCP payloads."""

    __slots__ = ("_buf", "next_seq", "done")

    def __init__(self, first_seq: int) -> None:
        self._buf = bytearray()
        self.next_seq = first_seq
        self.done = False

    def feed(self, seq: int, payload: bytes) -> ClientHello | None | bool:
        """Add a segment; returns like `parse_client_hello` (False = need more)."""
        if self.done:
            return None
        if seq != self.next_seq:
            # A retransmission of what we hold, or out of order: wait for in-order data.
            if (seq - self.next_seq) & 0xFFFFFFFF > 0x7FFFFFFF:
                return False
            return False
        self._buf += payload
        self.next_seq = (seq + len(payload)) & 0xFFFFFFFF
        result = parse_client_hello(bytes(self._buf))
        if result is not False or len(self._buf) > MAX_HELLO:
            self.done = True
            return result if result is not False else None
        return False
