"""Real Encrypted Client Hello on the wire: HPKE (checked against cryptography's own), ECHConfigList, and
the sealed hello, opened again with the server's key."""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives import hpke as theirs
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from tamperscope.wire import ech, hpke
from tamperscope.wire.tlshello import client_hello_with_ech, parse_client_hello

KDF = {1: theirs.KDF.HKDF_SHA256, 2: theirs.KDF.HKDF_SHA384, 3: theirs.KDF.HKDF_SHA512}
AEAD = {1: theirs.AEAD.AES_128_GCM, 2: theirs.AEAD.AES_256_GCM, 3: theirs.AEAD.CHACHA20_POLY1305}
KEY = X25519PrivateKey.from_private_bytes(bytes(range(32)))  # fixed: xdist's workers must build the same params
PUBLIC = KEY.public_key().public_bytes_raw()


@pytest.mark.parametrize("kdf", [1, 2, 3])
@pytest.mark.parametrize("aead", [1, 2, 3])
def test_hpke_agrees_with_cryptographys_own_both_ways(kdf: int, aead: int) -> None:
    suite = theirs.Suite(theirs.KEM.X25519, KDF[kdf], AEAD[aead])
    sealed = suite.encrypt(b"inner hello", KEY.public_key(), b"tls ech\x00config")
    assert hpke.open_(sealed[:32], KEY, b"tls ech\x00config", b"", sealed[32:], kdf, aead) == b"inner hello"
    enc, ct = hpke.seal(PUBLIC, b"info", b"", b"the other way", kdf, aead)
    assert len(enc) == 32 and len(ct) == len(b"the other way") + hpke.TAG
    assert suite.decrypt(enc + ct, KEY, b"info") == b"the other way"


def test_hpke_binds_the_aad_the_info_and_the_key() -> None:
    enc, ct = hpke.seal(PUBLIC, b"info", b"outer hello", b"secret")
    assert hpke.open_(enc, KEY, b"info", b"outer hello", ct) == b"secret"
    for args in ((enc, KEY, b"info", b"outer hellO", ct), (enc, KEY, b"inf0", b"outer hello", ct),
                 (enc, X25519PrivateKey.generate(), b"info", b"outer hello", ct)):
        with pytest.raises(hpke.HPKEError):
            hpke.open_(*args)
    with pytest.raises(hpke.HPKEError, match="unsupported HPKE suite"):
        hpke.seal(PUBLIC, b"", b"", b"x", 9, 1)
    with pytest.raises(hpke.HPKEError, match="not an X25519 public key"):
        hpke.seal(b"short", b"", b"", b"x")
    with pytest.raises(hpke.HPKEError, match="no shared secret"):  # a low-order point
        hpke.open_(bytes(32), KEY, b"info", b"", ct)


def _config(cid: int = 7, name: str = "cloudflare-ech.com", suites: tuple[tuple[int, int], ...] = ((1, 1),),
            max_name: int = 0) -> ech.ECHConfig:
    return ech.parse_config_list(ech.encode_config_list(ech.encode_config(cid, PUBLIC, name, suites, max_name)))[0]


def test_a_config_list_reads_back_and_skips_other_versions() -> None:
    other = struct.pack("!HH", 0xFE0A, 3) + b"abc"  # a draft version: skipped, not an error
    mine = ech.encode_config(42, PUBLIC, "Cloudflare-ECH.com.", ((2, 9), (1, 3)), 64)
    (config,) = ech.parse_config_list(ech.encode_config_list(other, mine))
    assert (config.config_id, config.kem_id, config.public_key) == (42, 0x20, PUBLIC)
    assert config.public_name == "cloudflare-ech.com" and config.max_name_length == 64
    assert config.suites == ((2, 9), (1, 3)) and config.suite() == (1, 3)  # AEAD 9 is nobody's
    assert config.raw == mine and config.usable()
    assert not _config(suites=((1, 9),)).usable()


@pytest.mark.parametrize("data,needle", [
    (b"", "end inside a field"),
    (b"\x00\x00", "empty"),
    (ech.encode_config_list(ech.encode_config(1, PUBLIC, "a.com")) + b"\x00", "1 bytes after its end"),
    (ech.encode_config_list(ech.encode_config(1, PUBLIC, "a.com"))[:-3], "end inside a field"),
    (ech.encode_config_list(ech.encode_config(1, PUBLIC, "a.com", ((1, 1),))[:-2]), "end inside a field"),
    (ech.encode_config_list(ech.encode_config(1, PUBLIC, "a b.com")), "is not a host name"),
    (ech.encode_config_list(ech.encode_config(1, PUBLIC, "a.com", ())), "cipher_suites of 0 bytes"),
], ids=["nothing", "empty", "trailing", "cut", "cut-suites", "bad-name", "no-suites"])
def test_a_malformed_config_list_is_one_line(data: bytes, needle: str) -> None:
    with pytest.raises(ech.ECHError, match=needle) as err:
        ech.parse_config_list(data)
    assert "\n" not in str(err.value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_config_lists_of_random_bytes_raise_only_ech_errors(data: bytes) -> None:
    try:
        ech.parse_config_list(data)
    except ech.ECHError:
        pass


def test_the_sealed_hello_names_the_public_name_and_opens_to_the_site() -> None:
    config = _config()
    sealed = ech.seal_client_hello(config, "crypto.cloudflare.com", ("h2", "http/1.1"))
    outer = parse_client_hello(sealed.record)
    assert outer == parse_client_hello(sealed.record) and outer is not None and not isinstance(outer, bool)
    assert (outer.sni, outer.ech, outer.alpn) == ("cloudflare-ech.com", True, ("h2", "http/1.1"))
    assert b"crypto.cloudflare.com" not in sealed.record  # the site's name travels sealed only
    inner = ech.open_client_hello(sealed.record, {7: (config, KEY)})
    assert (inner.sni, inner.ech, inner.alpn) == ("crypto.cloudflare.com", True, ("h2", "http/1.1"))
    assert (sealed.outer_name, sealed.inner_name, sealed.config_id, sealed.suite) == (
        "cloudflare-ech.com", "crypto.cloudflare.com", 7, (1, 1))


def test_the_outer_hello_is_the_aad_and_the_key_must_match() -> None:
    config = _config()
    record = ech.seal_client_hello(config, "crypto.cloudflare.com").record
    tampered = bytearray(record)
    tampered[20] ^= 1  # a byte of the outer hello's random: authenticated, though not encrypted
    with pytest.raises(ech.ECHError, match="does not open"):
        ech.open_client_hello(bytes(tampered), {7: (config, KEY)})
    with pytest.raises(ech.ECHError, match="does not open"):
        ech.open_client_hello(record, {7: (config, X25519PrivateKey.generate())})
    with pytest.raises(ech.ECHError, match="config id 7 is not one of ours"):
        ech.open_client_hello(record, {8: (config, KEY)})
    grease = client_hello_with_ech("crypto.cloudflare.com")
    with pytest.raises(ech.ECHError):  # GREASE: random bytes, nothing to open
        ech.open_client_hello(grease, {cid: (config, KEY) for cid in range(256)})


def test_padding_hides_the_length_of_the_sites_name() -> None:
    config = _config(max_name=40)
    sizes = {len(ech.seal_client_hello(config, name).record) for name in ("a.io", "crypto.cloudflare.com",
                                                                           "x" * 30 + ".org")}
    assert len(sizes) == 1
    hello = ech.seal_client_hello(config, "b.org").record
    assert ech.open_client_hello(hello, {7: (config, KEY)}).sni == "b.org"


def test_each_suite_the_config_offers_seals_and_opens() -> None:
    for suite in ((1, 1), (1, 2), (1, 3), (2, 1), (3, 3)):
        config = _config(suites=(suite,))
        sealed = ech.seal_client_hello(config, "crypto.cloudflare.com")
        assert sealed.suite == suite
        assert ech.open_client_hello(sealed.record, {7: (config, KEY)}).sni == "crypto.cloudflare.com"
    with pytest.raises(ech.ECHError, match="no KEM and suite"):
        ech.seal_client_hello(_config(suites=((1, 9),)), "a.org")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_opening_random_bytes_raises_only_ech_errors(data: bytes) -> None:
    try:
        ech.open_client_hello(b"\x16\x03\x01" + struct.pack("!H", len(data) + 4) + b"\x01\x00\x00\x00" + data,
                              {7: (_config(), KEY)})
    except ech.ECHError:
        pass
