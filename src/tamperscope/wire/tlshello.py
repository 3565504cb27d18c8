"""TLS ClientHello parsing: the server name (SNI), even across segments.

DPI boxes read the SNI of the first flight; so does the lab's censor and the
interception proxy. `ClientHelloBuffer` accumulates a flow's first bytes (the
ClientHello may be split over several TCP segments or TLS records) and says
when it has the whole message. Malformed input yields `Incomplete`/None,
never an exception.
"""

from __future__ import annotations

import secrets
import ssl
import struct
from dataclasses import dataclass

MAX_HELLO = 16384 + 5  # one record's worth is plenty for a ClientHello


ECH_EXTENSION = 0xFE0D  # encrypted_client_hello (draft-ietf-tls-esni; what TLS 1.3's ECH puts in a hello)
PRE_SHARED_KEY = 41  # an extension that must stay last


@dataclass(frozen=True, slots=True)
class ClientHello:
    sni: str | None  # lower-cased host_name, if any (with ECH: the outer, public name)
    alpn: tuple[str, ...]
    ech: bool = False  # carries an encrypted_client_hello extension (real or GREASE: on the wire, alike)


def client_hello(server_name: str, alpn: tuple[str, ...] = ()) -> bytes:
    """The first flight a real client sends for `server_name`: OpenSSL's own ClientHello (TLS records, SNI,
    key shares, fresh randoms each call), written into memory, no socket. What a trigger or an echo payload
    needs: the bytes a DPI box reads as this name's handshake."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    out = ssl.MemoryBIO()
    conn = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname=server_name)
    try:
        conn.do_handshake()
    except ssl.SSLWantReadError:  # the hello is written; the server's answer is never coming
        pass
    return out.read()


def grease_ech(config_id: int | None = None) -> bytes:
    """The body of a GREASE encrypted_client_hello extension (draft-ietf-tls-esni's "GREASE ECH"): an outer
    hello's fields (HKDF-SHA256, AES-128-GCM, a random config id, a 32-byte X25519 share, a payload as long
    as a real one) holding random bytes. What browsers send when a site has no ECH keys, and what a censor
    that blocks ECH cannot tell from the real thing without the server's keys."""
    cid = secrets.randbelow(256) if config_id is None else config_id
    enc, payload = secrets.token_bytes(32), secrets.token_bytes(208)  # 192 rounded up by padding, + 16 tag
    return (b"\x00" + struct.pack("!HHB", 1, 1, cid) + struct.pack("!H", len(enc)) + enc
            + struct.pack("!H", len(payload)) + payload)


def with_extension(hello: bytes, etype: int, body: bytes) -> bytes | None:
    """``hello`` (one TLS record holding one ClientHello, as `client_hello` writes it) with one more extension,
    before pre_shared_key if there is one (it must stay last), every length mended; None for other bytes."""
    if len(hello) < 9 or hello[0] != 22 or hello[5] != 1:
        return None
    rec_len = struct.unpack_from("!H", hello, 3)[0]
    hs_len = int.from_bytes(hello[6:9], "big")
    if rec_len != len(hello) - 5 or hs_len != rec_len - 4:
        return None
    body_at = 9
    pos = body_at + 2 + 32
    try:
        pos += 1 + hello[pos]
        pos += 2 + struct.unpack_from("!H", hello, pos)[0]
        pos += 1 + hello[pos]
        ext_at = pos
        (ext_total,) = struct.unpack_from("!H", hello, ext_at)
    except (IndexError, struct.error):
        return None
    end = ext_at + 2 + ext_total
    if end != len(hello):
        return None
    insert = end
    p = ext_at + 2
    while p + 4 <= end:
        t, n = struct.unpack_from("!HH", hello, p)
        if t == PRE_SHARED_KEY:
            insert = p
            break
        p += 4 + n
    ext = struct.pack("!HH", etype, len(body)) + body
    grow = len(ext)
    out = bytearray(hello[:insert] + ext + hello[insert:])
    struct.pack_into("!H", out, 3, rec_len + grow)
    out[6:9] = (hs_len + grow).to_bytes(3, "big")
    struct.pack_into("!H", out, ext_at, ext_total + grow)
    return bytes(out)


def client_hello_with_ech(server_name: str, alpn: tuple[str, ...] = ()) -> bytes:
    """`client_hello` for ``server_name`` (the outer name a censor reads) with a GREASE ECH extension."""
    hello = with_extension(client_hello(server_name, alpn), ECH_EXTENSION, grease_ech())
    if hello is None:  # OpenSSL wrote something else than one record with one hello: never seen
        raise ValueError("OpenSSL's ClientHello is not one record")
    return hello


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
    return _hello_from(hs)


def parse_handshake(hs: bytes) -> ClientHello | None | bool:
    """Parse the ClientHello at the start of bare handshake bytes (no TLS records: QUIC's CRYPTO frames)."""
    return _hello_from(hs)


def _hello_from(hs: bytes) -> ClientHello | None | bool:
    """The ClientHello at the start of the handshake bytes `hs`, as `parse_client_hello` returns it."""
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
    ech = False
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
        elif etype == ECH_EXTENSION:
            ech = True
    return ClientHello(sni, tuple(alpn), ech)


class ClientHelloBuffer:
    """Reassembles the first flight of a TLS flow from in-order TCP payloads.

    Records are unwrapped as they complete, so each segment costs time for its own bytes only: a hello
    sent in 1-byte records over tiny segments once re-read the whole buffer per segment (1.2 s for 16 KB)."""

    __slots__ = ("_buf", "_hs", "_rec", "next_seq", "done", "_records")

    def __init__(self, first_seq: int, records: int = -1) -> None:
        """``records``: read at most this many TLS records (-1: as many as the hello needs); a hello that
        does not end within them is given up on, as a DPI box that parses one record would."""
        self._buf = bytearray()  # the flow's bytes so far
        self._hs = bytearray()  # the payloads of the whole handshake records in _buf
        self._rec = 0  # offset in _buf of the first record not yet whole
        self.next_seq = first_seq
        self.done = False
        self._records = records  # records still to read; negative: no limit

    @property
    def held(self) -> int:
        """The bytes this buffer keeps: the flow's first bytes, and the handshake payloads read from them."""
        return len(self._buf) + len(self._hs)

    def feed(self, seq: int, payload: bytes) -> ClientHello | None | bool:
        """Add a segment; returns like `parse_client_hello` (False = need more)."""
        if self.done:
            return None
        if seq != self.next_seq:
            return False  # a retransmission of what we hold, or out of order: wait for in-order data
        self._buf += payload
        self.next_seq = (seq + len(payload)) & 0xFFFFFFFF
        result = self._advance()
        if result is not False or len(self._buf) > MAX_HELLO:
            self.done = True
            self._buf = self._hs = bytearray()
            return result if result is not False else None
        return False

    def _advance(self) -> ClientHello | None | bool:
        buf, hs = self._buf, self._hs
        while self._rec + 5 <= len(buf):
            ctype, length = buf[self._rec], int.from_bytes(buf[self._rec + 3 : self._rec + 5], "big")
            if ctype != 22:  # not TLS at all, or the first flight's handshake records are over
                return None if self._rec == 0 else _hello_from(bytes(hs)) or None
            end = self._rec + 5 + length
            if end > len(buf):
                break
            hs += buf[self._rec + 5 : end]
            self._rec = end
            self._records -= 1
            if self._records == 0:  # the last record this parser reads: the hello ends in it, or is missed
                return _hello_from(bytes(hs)) or None
        if self._rec == 0 and buf and buf[0] != 22:
            return None
        start = self._rec + 5
        have = len(hs) + max(0, len(buf) - start)  # a handshake may end before its record does
        if have < 4:
            return False
        head = bytes(hs[:4]) if len(hs) >= 4 else bytes(hs) + bytes(buf[start : start + 4 - len(hs)])
        if head[0] == 1 and have < 4 + int.from_bytes(head[1:4], "big"):
            return False
        return _hello_from(bytes(hs) + bytes(buf[start:]))
