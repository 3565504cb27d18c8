"""The client side of obfs4's handshake (Tor's pluggable transport; Yawning Angel's obfs4-spec), to tell
whether an obfs4 bridge can be used from here: a TCP connect that a censor lets through says nothing when
the censor recognises obfs4 and kills what follows, or answers in the bridge's place.

The client sends its ephemeral X25519 key disguised as uniform bytes (its Elligator2 representative),
random padding, a mark and a MAC keyed with the bridge's identity (``cert=`` of its bridge line: node id
and public key). The bridge answers with its own representative, an ntor ``AUTH``, padding, a mark and a
MAC. The handshake succeeds when that MAC is right (only the bridge knows the key it is made with, besides
us) and ``AUTH`` proves that the bridge holds the private half of its public key (obfs4's variant of Tor's
ntor). Nothing after the handshake is read or sent: no Tor traffic goes over it.

Only the handshake is here; the stream's reads and writes are recorded by `TCPStream`, as OONI's
obfs4 targets are, in ``network_events``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from ..model import failures as F
from .classify import NetxError, classify
from .stream import TCPStream

P = 2**255 - 19
A = 486662
_SQRT_M1 = pow(2, (P - 1) // 4, P)
PROTOID = b"ntor-curve25519-sha256-1"
T_MAC = PROTOID + b":mac"
T_KEY = PROTOID + b":key_extract"
T_VERIFY = PROTOID + b":key_verify"
MARK = MAC = 16
REPRESENTATIVE = AUTH = 32
MAX_HANDSHAKE = 8192
CLIENT_MIN_HANDSHAKE = REPRESENTATIVE + MARK + MAC  # 64
SERVER_MIN_HANDSHAKE = REPRESENTATIVE + AUTH + MARK + MAC  # 96
INLINE_SEED_FRAME = 2 + 16 + 3 + 24  # frame length, secretbox tag, packet header, the PRNG seed
CLIENT_MIN_PAD = SERVER_MIN_HANDSHAKE + INLINE_SEED_FRAME - CLIENT_MIN_HANDSHAKE  # 77: as long as the answer
CLIENT_MAX_PAD = MAX_HANDSHAKE - CLIENT_MIN_HANDSHAKE
NODE_ID = 20
CERT_BYTES = NODE_ID + 32
_LOW_254 = (1 << 254) - 1


def parse_cert(cert: str) -> tuple[bytes, bytes]:
    """(node id, public key) of a bridge line's ``cert=`` (base64 without padding); ValueError otherwise."""
    text = cert.strip()
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("cert is not base64") from None
    if len(raw) != CERT_BYTES:
        raise ValueError(f"cert must hold {CERT_BYTES} bytes (node id and public key), not {len(raw)}")
    return raw[:NODE_ID], raw[NODE_ID:]


# --------------------------------------------------------------------------- Elligator2 on Curve25519

def _is_square(a: int) -> bool:
    return a % P == 0 or pow(a, (P - 1) // 2, P) == 1


def _sqrt(a: int) -> int | None:
    """A square root of ``a`` mod p (p = 5 mod 8), or None when there is none."""
    a %= P
    root = pow(a, (P + 3) // 8, P)
    if root * root % P == a:
        return root
    root = root * _SQRT_M1 % P
    return root if root * root % P == a else None


def forward(r: int) -> int:
    """The Montgomery u-coordinate a representative stands for (Elligator2 with the non-square 2)."""
    v = -A * pow(1 + 2 * r * r, P - 2, P) % P
    e = (v * v * v + A * v * v + v) % P
    return v if _is_square(e) else (-A - v) % P


def representative(u: int) -> int | None:
    """A representative of ``u`` below 2^254 (so that its two top bits are free), or None: about half of the
    curve's points have none, and the caller draws another key."""
    if u % P == 0 or (u + A) % P == 0 or not _is_square(-2 * u * (u + A)):
        return None
    for numerator, denominator in ((-(u + A), 2 * u), (-u, 2 * (u + A))):
        r = _sqrt(numerator * pow(denominator, P - 2, P))
        if r is not None:
            r = min(r, P - r)
            if forward(r) == u:
                return r
    return None


def _keypair() -> tuple[X25519PrivateKey, bytes, bytes]:
    """An ephemeral key whose public half has a representative: (key, public bytes, representative bytes)."""
    for _ in range(256):  # each draw fails with probability 1/2
        key = X25519PrivateKey.generate()
        public = key.public_key().public_bytes_raw()
        r = representative(int.from_bytes(public, "little"))
        if r is not None:
            # the top two bits are random on the wire (a fixed 0 would tell obfs4 apart); the bridge clears them
            tweak = secrets.randbits(2) << 254
            return key, public, (r | tweak).to_bytes(32, "little")
    raise RuntimeError("no representable key in 256 draws")  # pragma: no cover - probability 2^-256


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _auth(key: X25519PrivateKey, public: bytes, server_public: bytes, node_id: bytes, identity: bytes) -> bytes | None:
    """obfs4's ntor AUTH as the client computes it (secret input EXP(Y,x) | EXP(B,x), then B | B | X | Y |
    PROTOID | ID, as obfs4's reference writes it); None when an exchange gives the all-zero point."""
    try:
        xy = key.exchange(X25519PublicKey.from_public_bytes(server_public))
        xb = key.exchange(X25519PublicKey.from_public_bytes(identity))
    except ValueError:  # a low-order point: what a forged answer could send
        return None
    suffix = identity + identity + public + server_public + PROTOID + node_id
    verify = _hmac(T_VERIFY, xy + xb + suffix)
    return _hmac(T_MAC, verify + suffix + b"Server")


async def handshake(stream: TCPStream, node_id: bytes, identity: bytes, *, timeout: float,
                    clock: Callable[[], float] = time.time) -> int:
    """obfs4's client handshake over ``stream`` within ``timeout`` seconds: the bytes the bridge's answer took.
    Raises NetxError: the stream's failure (a timeout, a reset, EOF), or `OBFS4_HANDSHAKE_FAILED` when the answer
    does not prove the bridge's key, or `OBFS4_HANDSHAKE_TOO_LONG`."""
    try:
        async with asyncio.timeout(timeout):
            return await _handshake(stream, node_id, identity, clock)
    except NetxError:
        raise
    except (OSError, EOFError, TimeoutError) as exc:
        raise NetxError(classify(exc, operation=F.READ), operation=F.READ, endpoint=stream.address) from exc


async def _handshake(stream: TCPStream, node_id: bytes, identity: bytes, clock: Callable[[], float]) -> int:
    mac_key = identity + node_id
    key, public, rep = _keypair()
    epoch = str(int(clock()) // 3600).encode()
    hello = rep + secrets.token_bytes(CLIENT_MIN_PAD + secrets.randbelow(CLIENT_MAX_PAD - CLIENT_MIN_PAD + 1))
    hello += _hmac(mac_key, rep)[:MARK]
    hello += _hmac(mac_key, hello + epoch)[:MAC]
    await stream.write(hello)
    answer = b""
    while True:
        chunk = await stream.read(MAX_HANDSHAKE)
        if not chunk:
            raise NetxError(F.EOF_ERROR, operation=F.READ, endpoint=stream.address)
        answer += chunk
        if len(answer) < SERVER_MIN_HANDSHAKE:
            continue
        mark = _hmac(mac_key, answer[:REPRESENTATIVE])[:MARK]
        at = answer.find(mark, REPRESENTATIVE + AUTH, MAX_HANDSHAKE)
        if at < 0 or len(answer) < at + MARK + MAC:
            if len(answer) >= MAX_HANDSHAKE + MAC:
                raise NetxError(F.OBFS4_HANDSHAKE_TOO_LONG, operation=F.READ, endpoint=stream.address)
            continue
        end = at + MARK
        if not hmac.compare_digest(answer[end:end + MAC], _hmac(mac_key, answer[:end] + epoch)[:MAC]):
            raise NetxError(F.OBFS4_HANDSHAKE_FAILED, operation=F.READ, endpoint=stream.address)
        r = int.from_bytes(answer[:REPRESENTATIVE], "little")
        auth = answer[REPRESENTATIVE:REPRESENTATIVE + AUTH]
        # a bridge since obfs4proxy 0.0.12 sets the representative's two top bits at random; an older one may
        # use bit 254: try both readings
        for reading in dict.fromkeys((r & _LOW_254, r & ((1 << 255) - 1))):
            server_public = forward(reading).to_bytes(32, "little")
            expected = _auth(key, public, server_public, node_id, identity)
            if expected is not None and hmac.compare_digest(auth, expected):
                return end + MAC
        raise NetxError(F.OBFS4_HANDSHAKE_FAILED, operation=F.READ, endpoint=stream.address)
