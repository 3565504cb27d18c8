"""HPKE (RFC 9180), base mode, single-shot: what Encrypted Client Hello seals the inner ClientHello with.

`cryptography` ships HPKE, but without associated data, and ECH authenticates the whole outer ClientHello
as the AAD of its payload. This is the base mode on `cryptography`'s primitives (X25519, HMAC, AES-GCM,
ChaCha20-Poly1305), sans-IO: a key, bytes in, bytes out.

Supported: KEM DHKEM(X25519, HKDF-SHA256) (0x0020); KDF HKDF-SHA256/384/512 (0x0001-0x0003); AEAD
AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305 (0x0001-0x0003). The tests check it against `cryptography`'s
own HPKE (empty AAD) in both directions.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

KEM_X25519_SHA256 = 0x0020
KDFS = {0x0001: "sha256", 0x0002: "sha384", 0x0003: "sha512"}  # HKDF's hash, by name
AEADS: dict[int, tuple[type[AESGCM] | type[ChaCha20Poly1305], int]] = {  # (cipher, key length)
    0x0001: (AESGCM, 16), 0x0002: (AESGCM, 32), 0x0003: (ChaCha20Poly1305, 32)}
NONCE = 12
TAG = 16  # every supported AEAD's tag: a payload is its plaintext plus this
_VERSION = b"HPKE-v1"


class HPKEError(ValueError):
    """An unsupported suite, a malformed key, or a ciphertext that does not open."""


def _i2osp(n: int, width: int) -> bytes:
    return n.to_bytes(width, "big")


def _extract(hash_: str, salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt or bytes(hashlib.new(hash_).digest_size), ikm, hash_).digest()


def _expand(hash_: str, prk: bytes, info: bytes, length: int) -> bytes:
    out, block, i = b"", b"", 0
    while len(out) < length:
        i += 1
        block = hmac.new(prk, block + info + bytes([i]), hash_).digest()
        out += block
    return out[:length]


def _labeled_extract(hash_: str, suite: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _extract(hash_, salt, _VERSION + suite + label + ikm)


def _labeled_expand(hash_: str, suite: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    return _expand(hash_, prk, _i2osp(length, 2) + _VERSION + suite + label + info, length)


def _shared_secret(dh: bytes, kem_context: bytes) -> bytes:
    """DHKEM(X25519, HKDF-SHA256)'s ExtractAndExpand."""
    suite = b"KEM" + _i2osp(KEM_X25519_SHA256, 2)
    prk = _labeled_extract("sha256", suite, b"", b"eae_prk", dh)
    return _labeled_expand("sha256", suite, prk, b"shared_secret", kem_context, 32)


@dataclass(frozen=True)
class Context:
    """A base-mode context: the AEAD key and nonce of its first (and, here, only) message."""

    aead_id: int
    key: bytes
    nonce: bytes

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        ciphertext: bytes = AEADS[self.aead_id][0](self.key).encrypt(self.nonce, plaintext, aad)
        return ciphertext

    def open(self, aad: bytes, ciphertext: bytes) -> bytes:
        try:
            plaintext: bytes = AEADS[self.aead_id][0](self.key).decrypt(self.nonce, ciphertext, aad)
            return plaintext
        except Exception as exc:  # InvalidTag: the wrong key, AAD or bytes
            raise HPKEError("the ciphertext does not open with this key and AAD") from exc


def _schedule(kdf_id: int, aead_id: int, shared: bytes, info: bytes) -> Context:
    if kdf_id not in KDFS or aead_id not in AEADS:
        raise HPKEError(f"unsupported HPKE suite: KDF 0x{kdf_id:04x}, AEAD 0x{aead_id:04x}")
    hash_ = KDFS[kdf_id]
    suite = b"HPKE" + _i2osp(KEM_X25519_SHA256, 2) + _i2osp(kdf_id, 2) + _i2osp(aead_id, 2)
    psk_id_hash = _labeled_extract(hash_, suite, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(hash_, suite, b"", b"info_hash", info)
    context = b"\x00" + psk_id_hash + info_hash  # mode_base
    secret = _labeled_extract(hash_, suite, shared, b"secret", b"")
    key = _labeled_expand(hash_, suite, secret, b"key", context, AEADS[aead_id][1])
    nonce = _labeled_expand(hash_, suite, secret, b"base_nonce", context, NONCE)
    return Context(aead_id, key, nonce)


def _public(raw: bytes) -> X25519PublicKey:
    try:
        return X25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise HPKEError(f"not an X25519 public key ({len(raw)} bytes)") from exc


def setup_sender(public_key: bytes, info: bytes, kdf_id: int = 1, aead_id: int = 1,
                 ephemeral: X25519PrivateKey | None = None) -> tuple[bytes, Context]:
    """(enc, context) for the recipient's X25519 ``public_key``: SetupBaseS. ``ephemeral`` only for tests."""
    recipient = _public(public_key)
    own = ephemeral or X25519PrivateKey.generate()
    enc = own.public_key().public_bytes_raw()
    shared = _shared_secret(own.exchange(recipient), enc + public_key)
    return enc, _schedule(kdf_id, aead_id, shared, info)


def setup_receiver(enc: bytes, private_key: X25519PrivateKey, info: bytes, kdf_id: int = 1,
                   aead_id: int = 1) -> Context:
    """The recipient's context for ``enc``: SetupBaseR."""
    try:
        dh = private_key.exchange(_public(enc))
    except ValueError as exc:  # a low-order point: an all-zero shared secret, refused
        raise HPKEError("the encapsulated key gives no shared secret") from exc
    shared = _shared_secret(dh, enc + private_key.public_key().public_bytes_raw())
    return _schedule(kdf_id, aead_id, shared, info)


def seal(public_key: bytes, info: bytes, aad: bytes, plaintext: bytes, kdf_id: int = 1,
         aead_id: int = 1) -> tuple[bytes, bytes]:
    """(enc, ciphertext): single-shot base-mode encryption."""
    enc, ctx = setup_sender(public_key, info, kdf_id, aead_id)
    return enc, ctx.seal(aad, plaintext)


def open_(enc: bytes, private_key: X25519PrivateKey, info: bytes, aad: bytes, ciphertext: bytes,
          kdf_id: int = 1, aead_id: int = 1) -> bytes:
    """The plaintext of a single-shot base-mode ciphertext; HPKEError when it does not open."""
    return setup_receiver(enc, private_key, info, kdf_id, aead_id).open(aad, ciphertext)


__all__ = ["AEADS", "KDFS", "KEM_X25519_SHA256", "TAG", "Context", "HPKEError", "open_", "seal", "setup_receiver",
           "setup_sender"]
