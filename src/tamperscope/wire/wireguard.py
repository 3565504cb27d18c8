"""WireGuard's handshake messages (the whitepaper's section 5.4), sans I/O: the initiator's first message, and
the check of the responder's answer.

A WireGuard server answers nothing but a handshake initiation from a peer it knows: the initiation carries the
client's static key, encrypted to the server's, and a timestamp, and the server answers with a handshake
response that only the holder of the client's private key can open. So an answer that opens is proof that
this WireGuard server, and not a middlebox, was reached; silence says nothing by itself. That is why a probe
needs a real client configuration (its private key, the server's public key, the pre-shared key if any).

The initiation (148 bytes, type 1) is what DPI recognises: Russia's TSPU dropped WireGuard flows from 2023 by
that first packet. The module keeps the client's private key and the handshake state in memory only.

Primitives (Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s): X25519, ChaCha20-Poly1305 with a 64-bit little-endian
counter as nonce, BLAKE2s-256 for HASH, keyed BLAKE2s-128 for MAC, HMAC-BLAKE2s for the KDF.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
import time
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

CONSTRUCTION = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
IDENTIFIER = b"WireGuard v1 zx2c4 Jason@zx2c4.com"
LABEL_MAC1 = b"mac1----"
INITIATION, RESPONSE, COOKIE_REPLY, TRANSPORT = 1, 2, 3, 4
INITIATION_SIZE, RESPONSE_SIZE, COOKIE_REPLY_SIZE = 148, 92, 64
KEY = 32
TAI64_BASE = 0x400000000000000A  # TAI64's label for 1970 (2**62), plus TAI's 10 s ahead of UTC, as WireGuard's
_ZERO_KEY = bytes(KEY)
_C0 = hashlib.blake2s(CONSTRUCTION).digest()
_H0 = hashlib.blake2s(_C0 + IDENTIFIER).digest()


class WireGuardError(ValueError):
    """A key or configuration that is not WireGuard's (a one-line reason)."""


def key_from_text(text: str, what: str) -> bytes:
    """A 32-byte key from its base64 text (wg(8)'s format); WireGuardError naming ``what`` otherwise."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise WireGuardError(f"{what} is not base64") from None
    if len(raw) != KEY:
        raise WireGuardError(f"{what} is not a 32-byte key")
    return raw


def key_text(key: bytes) -> str:
    return base64.b64encode(key).decode()


def public_key(private: bytes) -> bytes:
    """The X25519 public key of ``private`` (as ``wg pubkey`` prints it, decoded)."""
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def _hash(data: bytes) -> bytes:
    return hashlib.blake2s(data).digest()


def _mac(key: bytes, data: bytes) -> bytes:
    return hashlib.blake2s(data, key=key, digest_size=16).digest()


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.blake2s).digest()


def _kdf(key: bytes, data: bytes, n: int) -> list[bytes]:
    t0 = _hmac(key, data)
    out, prev = [], b""
    for i in range(1, n + 1):
        prev = _hmac(t0, prev + bytes([i]))
        out.append(prev)
    return out


def _dh(private: bytes, public: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).exchange(X25519PublicKey.from_public_bytes(public))


def _nonce(counter: int) -> bytes:
    return b"\x00\x00\x00\x00" + struct.pack("<Q", counter)


def tai64n(now: float | None = None) -> bytes:
    """12 bytes: TAI64 seconds and nanoseconds, big-endian (the server rejects one not newer than the last)."""
    ns = time.time_ns() if now is None else int(now * 1e9)
    return struct.pack(">QI", TAI64_BASE + ns // 1_000_000_000, ns % 1_000_000_000)


@dataclass(frozen=True)
class Initiation:
    """One handshake initiation and what checking its answer needs (never recorded: it holds keys)."""

    packet: bytes          # 148 bytes, to send as one UDP datagram
    sender: int            # our index; the server's answer carries it as its receiver index
    chaining: bytes = field(repr=False)
    hash: bytes = field(repr=False)
    ephemeral: bytes = field(repr=False)  # our ephemeral private key
    static: bytes = field(repr=False)     # our static private key
    static_public: bytes = field(repr=False)
    psk: bytes = field(repr=False)


def initiation(private: bytes, server_public: bytes, psk: bytes = _ZERO_KEY, *, now: float | None = None,
               ephemeral: bytes | None = None, sender: int | None = None) -> Initiation:
    """The initiator's first message to the server whose static public key is ``server_public``."""
    if len(private) != KEY or len(server_public) != KEY or len(psk) != KEY:
        raise WireGuardError("a WireGuard key is 32 bytes")
    e_priv = os.urandom(KEY) if ephemeral is None else ephemeral
    e_pub = public_key(e_priv)
    s_pub = public_key(private)
    index = int.from_bytes(os.urandom(4), "little") if sender is None else sender
    h = _hash(_H0 + server_public)
    (c,) = _kdf(_C0, e_pub, 1)
    h = _hash(h + e_pub)
    c, k = _kdf(c, _dh(e_priv, server_public), 2)
    enc_static = ChaCha20Poly1305(k).encrypt(_nonce(0), s_pub, h)
    h = _hash(h + enc_static)
    c, k = _kdf(c, _dh(private, server_public), 2)
    enc_time = ChaCha20Poly1305(k).encrypt(_nonce(0), tai64n(now), h)
    h = _hash(h + enc_time)
    body = struct.pack("<B3xI", INITIATION, index) + e_pub + enc_static + enc_time
    mac1 = _mac(_hash(LABEL_MAC1 + server_public), body)
    return Initiation(body + mac1 + bytes(16), index, c, h, e_priv, private, s_pub, psk)


def answer_kind(data: bytes, sender: int) -> str | None:
    """What the datagram ``data`` is to our initiation ``sender``, from its header alone: "response" or
    "cookie" (the server is under load and answered with a cookie, so it was reached), else None (not
    an answer to us: another index, another type, a wrong size)."""
    if len(data) < 12 or data[1:4] != b"\x00\x00\x00":
        return None
    if data[0] == RESPONSE and len(data) == RESPONSE_SIZE and struct.unpack_from("<I", data, 8)[0] == sender:
        return "response"
    if data[0] == COOKIE_REPLY and len(data) == COOKIE_REPLY_SIZE and struct.unpack_from("<I", data, 4)[0] == sender:
        return "cookie"
    return None


def opens(init: Initiation, data: bytes) -> bool:
    """Whether ``data`` is the server's handshake response to ``init`` and opens with our keys: its mac1 is
    keyed with our static public key and its empty payload authenticates. Only the server holding the
    private key of ``server_public`` (and the pre-shared key) can make one."""
    if answer_kind(data, init.sender) != "response":
        return False
    if not hmac.compare_digest(_mac(_hash(LABEL_MAC1 + init.static_public), data[:60]), data[60:76]):
        return False
    e_r = data[12:44]
    try:
        (c,) = _kdf(init.chaining, e_r, 1)
        h = _hash(init.hash + e_r)
        (c,) = _kdf(c, _dh(init.ephemeral, e_r), 1)
        (c,) = _kdf(c, _dh(init.static, e_r), 1)
        c, t, k = _kdf(c, init.psk, 3)
        h = _hash(h + t)
        ChaCha20Poly1305(k).decrypt(_nonce(0), data[44:60], h)
    except (InvalidTag, ValueError):
        return False
    return True


def respond(server_private: bytes, packet: bytes, psk: bytes = _ZERO_KEY, *, sender: int = 1,
            ephemeral: bytes | None = None) -> tuple[bytes, bytes] | None:
    """The responder's side, for tests only: (the initiator's static public key, our response), or None when
    ``packet`` is no initiation to ``server_private`` (a real server then stays silent)."""
    if len(packet) != INITIATION_SIZE or packet[0] != INITIATION or packet[1:4] != b"\x00\x00\x00":
        return None
    s_pub = public_key(server_private)
    if not hmac.compare_digest(_mac(_hash(LABEL_MAC1 + s_pub), packet[:116]), packet[116:132]):
        return None
    (their_index,) = struct.unpack_from("<I", packet, 4)
    e_i = packet[8:40]
    h = _hash(_H0 + s_pub)
    (c,) = _kdf(_C0, e_i, 1)
    h = _hash(h + e_i)
    try:
        c, k = _kdf(c, _dh(server_private, e_i), 2)
        s_i = ChaCha20Poly1305(k).decrypt(_nonce(0), packet[40:88], h)
        h = _hash(h + packet[40:88])
        c, k = _kdf(c, _dh(server_private, s_i), 2)
        ChaCha20Poly1305(k).decrypt(_nonce(0), packet[88:116], h)
    except (InvalidTag, ValueError):
        return None
    h = _hash(h + packet[88:116])
    e_priv = os.urandom(KEY) if ephemeral is None else ephemeral
    e_r = public_key(e_priv)
    (c,) = _kdf(c, e_r, 1)
    h = _hash(h + e_r)
    (c,) = _kdf(c, _dh(e_priv, e_i), 1)
    (c,) = _kdf(c, _dh(e_priv, s_i), 1)
    c, t, k = _kdf(c, psk, 3)
    h = _hash(h + t)
    empty = ChaCha20Poly1305(k).encrypt(_nonce(0), b"", h)
    body = struct.pack("<B3xII", RESPONSE, sender, their_index) + e_r + empty
    return s_i, body + _mac(_hash(LABEL_MAC1 + s_i), body) + bytes(16)


def looks_like_initiation(payload: bytes) -> bool:
    """What a DPI box matches (the lab's censor, as Russia's TSPU did): a datagram of 148 bytes, type 1 and three
    zero bytes. Only its size and header: the rest is random to anyone without the server's key."""
    return len(payload) == INITIATION_SIZE and payload[:4] == b"\x01\x00\x00\x00"
