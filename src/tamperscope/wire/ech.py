"""Encrypted Client Hello with a site's real ECH configuration (RFC 9849): configs, and the sealed hello.

A site that offers ECH publishes an ``ECHConfigList`` in its DNS HTTPS record (``ech=`` SvcParam). A
client then sends two ClientHellos in one: the *outer* hello, which names the config's ``public_name``
(``cloudflare-ech.com`` for every site on Cloudflare), and, HPKE-sealed inside its
``encrypted_client_hello`` extension, the *inner* hello, which names the site. A censor reads the outer
hello only: it blocks ECH by that public name and the extension, as Russia's TSPU has since November 2024.
A GREASE extension sent with the site's own name (`tlshello.client_hello_with_ech`) is not what a browser
sends such a site, and passes that rule.

Sans-IO: `parse_config_list` reads configs (hostile bytes: `ECHError`, one line), `seal_client_hello`
builds the first flight a browser would send, and `open_client_hello` is the server's side (the lab and
the tests hold the private key), which reads the inner hello back. This client never compresses the inner
hello's extensions (``ech_outer_extensions``), so the server's side does not expand them.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from . import hpke
from .tlshello import ECH_EXTENSION, ClientHello, client_hello, parse_handshake, with_extension

VERSION = 0xFE0D  # ECHConfig.version: the extension's code point
OUTER, INNER = 0, 1  # ECHClientHello.type
PADDING = 21  # the padding extension (RFC 7685)
MAX_CONFIGS = 16  # configs read from one list: a real one holds one or two
_INFO = b"tls ech\x00"


class ECHError(ValueError):
    """Malformed ECH bytes (a config list, an extension), or a hello that does not open."""


@dataclass(frozen=True)
class ECHConfig:
    """One ECHConfig of version 0xfe0d."""

    raw: bytes  # the whole ECHConfig (version, length, contents): HPKE's info holds it verbatim
    config_id: int
    kem_id: int
    public_key: bytes
    suites: tuple[tuple[int, int], ...]  # (KDF id, AEAD id), in the server's order of preference
    max_name_length: int
    public_name: str  # the outer hello's name, lower-cased
    extensions: bytes

    def suite(self) -> tuple[int, int] | None:
        """The first of the config's suites this client can use; None if none."""
        return next(((k, a) for k, a in self.suites if k in hpke.KDFS and a in hpke.AEADS), None)

    def usable(self) -> bool:
        return self.kem_id == hpke.KEM_X25519_SHA256 and len(self.public_key) == 32 and self.suite() is not None


class _Reader:
    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ECHError(f"{self.what}: {len(self.data)} bytes end inside a field")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack("!H", self.take(2))[0])

    def vector(self, width: int) -> bytes:
        return self.take(self.u8() if width == 1 else self.u16())

    def done(self) -> bool:
        return self.pos >= len(self.data)


def parse_config_list(data: bytes) -> list[ECHConfig]:
    """The configs of an ``ECHConfigList`` (with its 2-byte length, as the HTTPS record's ``ech`` holds it),
    those of other versions skipped as RFC 9849 says; `ECHError` for malformed bytes."""
    outer = _Reader(data, "ECHConfigList")
    body = _Reader(outer.vector(2), "ECHConfigList")
    if not outer.done():
        raise ECHError(f"ECHConfigList: {len(data) - outer.pos} bytes after its end")
    if body.done():
        raise ECHError("ECHConfigList: empty")
    configs: list[ECHConfig] = []
    while not body.done() and len(configs) < MAX_CONFIGS:
        start = body.pos
        version = body.u16()
        contents = body.vector(2)
        if version != VERSION:
            continue
        configs.append(_contents(body.data[start:body.pos], contents))
    return configs


def _contents(raw: bytes, contents: bytes) -> ECHConfig:
    r = _Reader(contents, "ECHConfig")
    config_id, kem_id = r.u8(), r.u16()
    public_key = r.vector(2)
    suites_raw = r.vector(2)
    if not suites_raw or len(suites_raw) % 4:
        raise ECHError(f"ECHConfig {config_id}: cipher_suites of {len(suites_raw)} bytes")
    suites = tuple(struct.unpack_from("!HH", suites_raw, i) for i in range(0, len(suites_raw), 4))
    max_name_length = r.u8()
    name = r.vector(1)
    extensions = r.vector(2)
    if not r.done():
        raise ECHError(f"ECHConfig {config_id}: {len(contents) - r.pos} bytes after its extensions")
    if not name or not name.isascii() or not name.replace(b"-", b"").replace(b".", b"").isalnum():
        raise ECHError(f"ECHConfig {config_id}: public_name {name[:64]!r} is not a host name")
    return ECHConfig(raw, config_id, kem_id, public_key, suites, max_name_length,
                     name.decode("ascii").lower().rstrip("."), extensions)


def encode_config(config_id: int, public_key: bytes, public_name: str,
                  suites: Sequence[tuple[int, int]] = ((1, 1),), max_name_length: int = 0) -> bytes:
    """One ECHConfig (what a server publishes, in an `encode_config_list`)."""
    name = public_name.encode("ascii")
    suites_raw = b"".join(struct.pack("!HH", k, a) for k, a in suites)
    contents = (struct.pack("!BH", config_id, hpke.KEM_X25519_SHA256) + struct.pack("!H", len(public_key))
                + public_key + struct.pack("!H", len(suites_raw)) + suites_raw
                + struct.pack("!BB", max_name_length, len(name)) + name + b"\x00\x00")
    return struct.pack("!HH", VERSION, len(contents)) + contents


def encode_config_list(*configs: bytes) -> bytes:
    body = b"".join(configs)
    return struct.pack("!H", len(body)) + body


@dataclass(frozen=True)
class Sealed:
    """A first flight with real ECH: what to send, and what it says."""

    record: bytes  # one TLS record: the outer ClientHello carrying the sealed inner one
    outer_name: str  # the config's public_name: all a censor reads
    inner_name: str  # the site
    config_id: int
    suite: tuple[int, int]  # (KDF, AEAD)


def _hello_body(record: bytes) -> bytes:
    return record[9:]  # a record of one ClientHello: 5 bytes of record header, 4 of handshake header


def _encoded_inner(body: bytes, name: str, max_name_length: int) -> bytes:
    """EncodedClientHelloInner: the inner hello without its legacy_session_id (the server copies the outer
    one), then zeros so that the name's length and the hello's size (to 32 bytes) say nothing. OpenSSL
    already pads a hello of 256-511 bytes to 512 with a padding extension, whatever the name: then the
    name needs none."""
    sid = body[34]
    encoded = body[:34] + b"\x00" + body[35 + sid:]
    pad = 0 if _find_extension(body, PADDING) is not None else max(0, max_name_length - len(name))
    pad += 31 - ((len(encoded) + pad - 1) % 32)
    return encoded + bytes(pad)


def _extension(suite: tuple[int, int], config_id: int, enc: bytes, payload: bytes) -> bytes:
    return (bytes([OUTER]) + struct.pack("!HHB", suite[0], suite[1], config_id) + struct.pack("!H", len(enc)) + enc
            + struct.pack("!H", len(payload)) + payload)


def seal_client_hello(config: ECHConfig, inner_name: str, alpn: tuple[str, ...] = ()) -> Sealed:
    """The hello a browser sends a site that publishes ``config``: OpenSSL's ClientHello for the site (with
    the inner ECH extension) sealed in OpenSSL's ClientHello for the config's public name."""
    suite = config.suite()
    if config.kem_id != hpke.KEM_X25519_SHA256 or suite is None:
        raise ECHError(f"ECHConfig {config.config_id}: no KEM and suite this client supports")
    inner = with_extension(client_hello(inner_name, alpn), ECH_EXTENSION, bytes([INNER]))
    outer = client_hello(config.public_name, alpn)
    if inner is None:
        raise ECHError("OpenSSL's ClientHello is not one record")
    plaintext = _encoded_inner(_hello_body(inner), inner_name, config.max_name_length)
    enc, ctx = hpke.setup_sender(config.public_key, _INFO + config.raw, *suite)
    size = len(plaintext) + hpke.TAG
    blank = with_extension(outer, ECH_EXTENSION, _extension(suite, config.config_id, enc, bytes(size)))
    if blank is None:
        raise ECHError("OpenSSL's ClientHello is not one record")
    payload = ctx.seal(_hello_body(blank), plaintext)  # the AAD: the outer hello, its payload zeros
    record = with_extension(outer, ECH_EXTENSION, _extension(suite, config.config_id, enc, payload))
    assert record is not None and len(record) == len(blank)
    return Sealed(record, config.public_name, inner_name, config.config_id, suite)


def open_client_hello(record: bytes, keys: Mapping[int, tuple[ECHConfig, X25519PrivateKey]]) -> ClientHello:
    """The server's side: the inner ClientHello of an outer one (one record), with the key of its config id;
    `ECHError` when it carries no ECH, names an unknown config, or does not open (a GREASE one never does)."""
    body = _hello_body(record)
    found = _find_extension(body, ECH_EXTENSION)
    if found is None:
        raise ECHError("no outer encrypted_client_hello extension")
    at, ext = found
    r = _Reader(ext, "encrypted_client_hello")
    kind, kdf, aead, config_id = r.u8(), r.u16(), r.u16(), r.u8()
    enc = r.vector(2)
    payload_at = at + r.pos + 2
    payload = r.vector(2)
    if kind != OUTER or config_id not in keys:
        raise ECHError(f"config id {config_id} is not one of ours")
    config, key = keys[config_id]
    aad = body[:payload_at] + bytes(len(payload)) + body[payload_at + len(payload):]
    try:
        plaintext = hpke.open_(enc, key, _INFO + config.raw, aad, payload, kdf, aead)
    except hpke.HPKEError as exc:
        raise ECHError(str(exc)) from None
    return _decoded_inner(plaintext, body)


def _find_extension(body: bytes, wanted: int) -> tuple[int, bytes] | None:
    """(offset in ``body`` of the first extension of type ``wanted``'s body, that body), or None."""
    try:
        pos = 34
        pos += 1 + body[pos]
        pos += 2 + struct.unpack_from("!H", body, pos)[0]
        pos += 1 + body[pos]
        end = pos + 2 + struct.unpack_from("!H", body, pos)[0]
        pos += 2
        while pos + 4 <= end:
            etype, n = struct.unpack_from("!HH", body, pos)
            if etype == wanted:
                return pos + 4, body[pos + 4:pos + 4 + n]
            pos += 4 + n
    except (IndexError, struct.error):
        pass
    return None


def _decoded_inner(plaintext: bytes, outer_body: bytes) -> ClientHello:
    """The inner ClientHello from an EncodedClientHelloInner: the outer session id put back, padding cut."""
    try:
        pos = 34
        if plaintext[pos] != 0:
            raise ECHError("the inner hello keeps a legacy_session_id")
        pos += 1
        pos += 2 + struct.unpack_from("!H", plaintext, pos)[0]
        pos += 1 + plaintext[pos]
        end = pos + 2 + struct.unpack_from("!H", plaintext, pos)[0]
    except (IndexError, struct.error):
        raise ECHError("the inner hello is cut short") from None
    if end > len(plaintext) or any(plaintext[end:]):
        raise ECHError("the inner hello's padding is not zeros")
    sid = outer_body[34]
    body = plaintext[:34] + outer_body[34:35 + sid] + plaintext[35:end]
    hello = parse_handshake(b"\x01" + len(body).to_bytes(3, "big") + body)
    if not isinstance(hello, ClientHello):
        raise ECHError("the inner hello does not parse")
    return hello
