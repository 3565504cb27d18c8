"""The server name in a QUIC Initial packet, as a censor reads it.

QUIC encrypts even its first packets, but with keys anyone can derive from the
packet's own Destination Connection ID (RFC 9001 section 5.2). A DPI box that
wants the SNI removes the header protection, decrypts the payload, gathers its
CRYPTO frames and parses the TLS ClientHello inside: the Great Firewall has done
so since 2024. The lab's censor does it with this module; the cryptography is
aioquic's.

`initial_hello(datagram)` reads the first packet of a client's datagram:
a `ClientHello` when the Initial carries a whole one, False when it is an
Initial whose ClientHello continues in a later packet (or is cut), None when it
is no QUIC v1/v2 Initial at all. Malformed input never raises.
"""

from __future__ import annotations

from aioquic.quic.crypto import CryptoPair

from .tlshello import ClientHello, parse_handshake

VERSION_1 = 0x00000001
VERSION_2 = 0x6B3343CF
_INITIAL_TYPE = {VERSION_1: 0, VERSION_2: 1}  # the long-header type bits of an Initial (RFC 9369 for v2)
MIN_INITIAL = 1200  # a client pads its Initial datagrams to this (RFC 9000 section 14.1)
MAX_CRYPTO = 16384


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """QUIC's variable-length integer at `pos`: (value, next position). IndexError when cut."""
    first = buf[pos]
    size = 1 << (first >> 6)
    value = first & 0x3F
    for b in buf[pos + 1 : pos + size]:
        value = (value << 8) | b
    if pos + size > len(buf):
        raise IndexError("varint cut")
    return value, pos + size


def initial_hello(datagram: bytes) -> ClientHello | None | bool:
    """The ClientHello of the QUIC Initial at the start of `datagram` (see the module's docstring)."""
    try:
        return _initial_hello(datagram)
    except (IndexError, ValueError):
        return None


def _initial_hello(d: bytes) -> ClientHello | None | bool:
    if len(d) < 7 or not d[0] & 0x80:  # not a long header
        return None
    version = int.from_bytes(d[1:5], "big")
    if version not in _INITIAL_TYPE or (d[0] >> 4) & 0x3 != _INITIAL_TYPE[version]:
        return None
    pos = 5
    dcid_len = d[pos]
    if dcid_len > 20:
        return None
    dcid = d[pos + 1 : pos + 1 + dcid_len]
    pos += 1 + dcid_len
    scid_len = d[pos]
    if scid_len > 20:
        return None
    pos += 1 + scid_len
    token_len, pos = _varint(d, pos)
    pos += token_len
    length, pos = _varint(d, pos)
    end = pos + length
    if end > len(d) or length < 20:
        return None
    crypto = CryptoPair()
    crypto.setup_initial(cid=bytes(dcid), is_client=False, version=version)
    try:
        _header, payload, _pn = crypto.decrypt_packet(bytes(d[:end]), pos, 0)
    except Exception:  # noqa: BLE001 - aioquic's CryptoError: not an Initial for these keys
        return None
    return _hello_in(payload)


def _hello_in(payload: bytes) -> ClientHello | None | bool:
    """Gather the CRYPTO frames of one Initial's payload and parse the ClientHello they start."""
    pieces: list[tuple[int, bytes]] = []  # (offset, data) of each CRYPTO frame, in packet order
    pos = 0
    while pos < len(payload):
        kind = payload[pos]
        if kind in (0x00, 0x01):  # PADDING, PING
            pos += 1
        elif kind == 0x06:  # CRYPTO: offset, length, data
            offset, pos = _varint(payload, pos + 1)
            size, pos = _varint(payload, pos)
            if offset + size > MAX_CRYPTO or pos + size > len(payload):
                return None
            pieces.append((offset, payload[pos : pos + size]))
            pos += size
        elif kind in (0x02, 0x03):  # ACK: a client's first Initial has none, but a later one may
            _, pos = _varint(payload, pos + 1)  # largest acknowledged
            _, pos = _varint(payload, pos)  # delay
            ranges, pos = _varint(payload, pos)
            _, pos = _varint(payload, pos)  # first range
            if 2 * ranges > len(payload) - pos:  # each range is two varints of a byte or more: a lie
                return None
            for _ in range(2 * ranges):  # all of them: a frame half read would be read on from inside it
                _, pos = _varint(payload, pos)
            if kind == 0x03:
                for _ in range(3):
                    _, pos = _varint(payload, pos)
        elif kind == 0x1C:  # CONNECTION_CLOSE: nothing to read after it
            break
        else:
            return None  # no other frame may be in an Initial (RFC 9000 section 12.4)
    if not pieces:
        return None
    # The contiguous bytes from offset 0, as the server reassembles them: frames in any order, overlapping
    # (where they overlap, the bytes already gathered stand) or empty, each looked at once.
    data = bytearray()
    for offset, piece in sorted(pieces, key=lambda p: p[0]):
        if offset > len(data):
            break  # a gap: the rest is in another packet
        data += piece[len(data) - offset :]
    if not data:
        return False  # the ClientHello's start is in another packet
    return parse_handshake(bytes(data))


__all__ = ["VERSION_1", "VERSION_2", "initial_hello"]
