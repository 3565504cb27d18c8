"""Edges of the wire framing: IPv4/TCP/UDP (``tamperscope.wire.packet``) header lengths, total lengths and
fragment fields as a hostile network or a TSO-offloading kernel sends them; ECH config lists and sealed hellos
(``tamperscope.wire.ech``) from hostile bytes; and the echcheck verdict (``tamperscope.model.ech``)."""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tamperscope.model.ech import echcheck_verdict
from tamperscope.wire import ech
from tamperscope.wire import packet as P

SRC, DST = "198.18.0.1", "198.18.0.2"


def _with_total(pkt: bytes, total: int) -> bytes:
    return pkt[:2] + struct.pack("!H", total) + pkt[4:]


def _with_frag(pkt: bytes, frag: int) -> bytes:
    return pkt[:6] + struct.pack("!H", frag) + pkt[8:]


def test_a_header_length_past_the_end_is_not_a_header_whatever_the_total_length() -> None:
    """Without the `ihl > len(packet)` check, a 24-byte header in 20 bytes (total 0, or quoted past the end) parses."""
    hdr = P.ipv4_header(SRC, DST, P.PROTO_TCP, 0)
    longer = bytes([0x46]) + hdr[1:]  # IHL 6: 24 bytes, of which only 20 are there
    assert P.parse_ipv4(_with_total(longer, 0)) is None
    assert P.parse_ipv4(_with_total(longer, 100)) is None  # an ICMP quote's total length, past the end


def test_a_header_only_packet_is_a_header_with_an_empty_body() -> None:
    """Total length equal to the header length is valid (`0 < total < ihl`, not `<=`)."""
    hdr = P.ipv4_header(SRC, DST, P.PROTO_TCP, 0)
    ip = P.parse_ipv4(hdr)
    assert ip is not None and (ip.header_len, ip.total_len) == (20, 20)
    assert ip.body(hdr) == b""


def test_a_total_length_of_zero_reads_to_the_end_as_tso_leaves_it() -> None:
    """A zero total length (TSO) means "to the end": without it the body would be empty."""
    pkt = P.tcp_packet(SRC, DST, 40000, 443, seq=1, ack=2, flags=P.ACK | P.PSH, payload=b"hello")
    ip = P.parse_ipv4(_with_total(pkt, 0))
    assert ip is not None and ip.total_len == len(pkt)
    seg = P.parse_tcp(ip.body(pkt))
    assert seg is not None and seg.payload == b"hello"


def test_the_more_fragments_and_dont_fragment_flags_are_not_the_offset() -> None:
    """The offset is the low 13 bits: a first fragment with MF set still carries its transport header."""
    pkt = P.udp_packet(SRC, DST, 5353, 53, b"q")
    for flags in (0x2000, 0x4000, 0x6000):
        ip = P.parse_ipv4(_with_frag(pkt, flags))
        assert ip is not None and ip.frag_offset == 0
    ip = P.parse_ipv4(_with_frag(pkt, 0x2000 | 185))
    assert ip is not None and ip.frag_offset == 1480


def test_tcp_flags_are_the_six_classic_bits_whatever_ecn_says() -> None:
    """ECE/CWR (0x40/0x80) are masked off: an ECN SYN-ACK still compares equal to SYN|ACK."""
    pkt = P.tcp_packet(SRC, DST, 443, 40000, seq=7, ack=8, flags=P.SYN | P.ACK | 0x40 | 0x80)
    ip = P.parse_ipv4(pkt)
    assert ip is not None
    seg = P.parse_tcp(ip.body(pkt))
    assert seg is not None and seg.flags == P.SYN | P.ACK


def test_the_udp_length_field_bounds_the_payload() -> None:
    """Bytes after the UDP length (link padding, a lie) are not payload; a length under 8 gives none."""
    dgram = struct.pack("!HHHH", 53, 5353, 8 + 3, 0) + b"abc" + b"\0" * 7
    udp = P.parse_udp(dgram)
    assert udp is not None and (udp.sport, udp.dport, udp.payload) == (53, 5353, b"abc")
    short = P.parse_udp(struct.pack("!HHHH", 53, 5353, 4, 0) + b"abc")
    assert short is not None and short.payload == b""
    long_ = P.parse_udp(struct.pack("!HHHH", 53, 5353, 500, 0) + b"abc")  # past the end: what is there
    assert long_ is not None and long_.payload == b"abc"


def test_the_checksum_folds_the_carry_until_none_is_left() -> None:
    """FFFF+FFFF+0001 folds twice (RFC 1071): one fold only would give 0xFFFF, not 0xFFFE."""
    assert P.checksum(b"\xff\xff\xff\xff\x00\x01") == 0xFFFE
    assert P.checksum(b"\x00\x01\xf2") == ~(0x0001 + 0xF200) & 0xFFFF  # odd length: padded at the end


def test_a_udp_checksum_that_computes_to_zero_is_sent_as_ffff() -> None:
    """RFC 768: 0 means "no checksum", so a computed 0 goes out as 0xFFFF."""
    pseudo = socket.inet_aton(SRC) + socket.inet_aton(DST) + struct.pack("!BBH", 0, P.PROTO_UDP, 10)
    blank = P.checksum(pseudo + struct.pack("!HHHH", 1000, 2000, 10, 0) + b"\0\0")
    pkt = P.udp_packet(SRC, DST, 1000, 2000, struct.pack("!H", blank))  # this payload sums to zero
    assert pkt[26:28] == b"\xff\xff"
    assert P.checksum(pseudo + pkt[20:]) == 0  # and still verifies


def test_forged_ipv4_headers_set_dont_fragment_and_verify() -> None:
    """`ipv4_header` says DF set: the flags field is 0x4000 and the header checksum verifies."""
    hdr = P.ipv4_header(SRC, DST, P.PROTO_UDP, 12, ttl=300, ip_id=0x12345)
    assert hdr[6:8] == b"\x40\x00" and hdr[8] == 300 & 0xFF and hdr[4:6] == b"\x23\x45"
    assert P.checksum(hdr) == 0


def test_an_ipv6_packet_is_not_an_ipv4_header_even_when_its_low_nibble_looks_like_one() -> None:
    """The version nibble is checked: IPv6 with traffic class 0xB8 starts 0x6B, an 'IHL' of 44 bytes."""
    v6 = bytes([0x6B, 0x80, 0, 0, 0, 8, P.PROTO_UDP, 64]) + bytes(32) + bytes(8)
    assert P.parse_ipv4(v6) is None
    assert P.parse_ipv4(bytes([0x55]) + P.ipv4_header(SRC, DST, P.PROTO_TCP, 0)[1:]) is None


# --------------------------------------------------------------------------- ECH config lists (wire/ech.py)

KEY = X25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC = KEY.public_key().public_bytes_raw()


def _raw_config(suites_raw: bytes = struct.pack("!HH", 1, 1), name: bytes = b"a.com", tail: bytes = b"",
                kem: int = 0x20) -> bytes:
    """An ECHConfig built field by field, so that any field can be wrong."""
    contents = (struct.pack("!BHH", 9, kem, len(PUBLIC)) + PUBLIC + struct.pack("!H", len(suites_raw)) + suites_raw
                + struct.pack("!BB", 0, len(name)) + name + b"\x00\x00" + tail)
    return struct.pack("!HH", ech.VERSION, len(contents)) + contents


def test_a_config_list_yields_at_most_max_configs() -> None:
    """A list of 40 configs is read only up to MAX_CONFIGS (a real one holds one or two)."""
    configs = [ech.encode_config(i, PUBLIC, f"n{i}.example") for i in range(40)]
    got = ech.parse_config_list(ech.encode_config_list(*configs))
    assert [c.config_id for c in got] == list(range(ech.MAX_CONFIGS))


@pytest.mark.parametrize("suites_raw", [b"\x00\x01\x00\x01\x00\x01", b"\x00\x01\x00"], ids=["six", "three"])
def test_cipher_suites_not_a_multiple_of_four_bytes_are_an_ech_error(suites_raw: bytes) -> None:
    """Without the `% 4` check a ragged cipher_suites vector escapes as struct.error, not ECHError."""
    with pytest.raises(ech.ECHError, match="cipher_suites of"):
        ech.parse_config_list(ech.encode_config_list(_raw_config(suites_raw)))


def test_bytes_after_a_configs_extensions_are_an_ech_error() -> None:
    """A config whose declared length holds more than its fields is malformed, not silently accepted."""
    with pytest.raises(ech.ECHError, match="bytes after its extensions"):
        ech.parse_config_list(ech.encode_config_list(_raw_config(tail=b"junk")))
    assert ech.parse_config_list(ech.encode_config_list(_raw_config()))[0].public_name == "a.com"


def test_a_config_is_usable_only_with_a_32_byte_x25519_key_and_a_known_suite() -> None:
    """`usable` checks the key's length and both halves of a suite, not only the KEM id."""
    def config(key: bytes, suites: tuple[tuple[int, int], ...] = ((1, 1),)) -> ech.ECHConfig:
        return ech.parse_config_list(ech.encode_config_list(ech.encode_config(1, key, "a.com", suites)))[0]
    assert config(PUBLIC).usable()
    assert not config(PUBLIC[:31]).usable() and not config(PUBLIC + b"\0").usable()
    assert not config(PUBLIC, ((1, 99),)).usable() and not config(PUBLIC, ((99, 1),)).usable()
    assert config(PUBLIC, ((1, 99), (2, 3))).suite() == (2, 3)


# --------------------------------------------------------------------------- sealed hellos (wire/ech.py)


def _sealable() -> ech.ECHConfig:
    return ech.parse_config_list(ech.encode_config_list(ech.encode_config(7, PUBLIC, "cloudflare-ech.com")))[0]


def test_the_encoded_inner_hello_is_padded_to_the_next_32_bytes_never_a_block_more() -> None:
    """A hello already a multiple of 32 bytes gets no padding; others get the fewest zeros up to one."""
    for size in range(40, 140):
        body = bytes(size)  # no session id, no extensions: the name's padding alone decides
        encoded = ech._encoded_inner(body, "a.io", 0)
        assert len(encoded) == -(-size // 32) * 32 and encoded[:size] == body
    assert len(ech._encoded_inner(bytes(64), "a.io", 40)) == 128  # 64 + 36 for the name, to 32 bytes


def test_an_ech_extension_of_the_inner_type_in_the_outer_hello_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Anyone can seal to the public key: an extension marked INNER (1) in the outer hello must not open."""
    config = _sealable()
    real = ech._extension
    monkeypatch.setattr(ech, "_extension", lambda *a: bytes([ech.INNER]) + real(*a)[1:])
    record = ech.seal_client_hello(config, "crypto.cloudflare.com").record
    monkeypatch.setattr(ech, "_extension", real)
    with pytest.raises(ech.ECHError, match="not one of ours"):
        ech.open_client_hello(record, {7: (config, KEY)})


def test_an_inner_hello_with_non_zero_padding_does_not_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """The padding after the inner hello must be zeros (RFC 9849 6.1.6); a sealed 0x01 in it is refused."""
    config = _sealable()
    real = ech._encoded_inner
    monkeypatch.setattr(ech, "_encoded_inner", lambda *a: real(*a)[:-1] + b"\x01")
    record = ech.seal_client_hello(config, "crypto.cloudflare.com").record
    monkeypatch.setattr(ech, "_encoded_inner", real)
    with pytest.raises(ech.ECHError, match="padding is not zeros"):
        ech.open_client_hello(record, {7: (config, KEY)})
    good = ech.seal_client_hello(config, "crypto.cloudflare.com").record
    assert ech.open_client_hello(good, {7: (config, KEY)}).sni == "crypto.cloudflare.com"


def test_an_inner_hello_that_keeps_its_session_id_does_not_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """EncodedClientHelloInner carries an empty legacy_session_id (the outer one is copied back)."""
    config = _sealable()
    real = ech._encoded_inner
    monkeypatch.setattr(ech, "_encoded_inner", lambda *a: real(*a)[:34] + b"\x20" + real(*a)[35:])
    record = ech.seal_client_hello(config, "crypto.cloudflare.com").record
    monkeypatch.setattr(ech, "_encoded_inner", real)
    with pytest.raises(ech.ECHError, match="keeps a legacy_session_id"):
        ech.open_client_hello(record, {7: (config, KEY)})


def test_a_config_of_another_kem_is_never_sealed_to() -> None:
    """A P-256 (0x0010) config with a 32-byte key is not sealed with X25519 as if it were one."""
    (config,) = ech.parse_config_list(ech.encode_config_list(_raw_config(kem=0x0010)))
    assert config.kem_id == 0x0010 and config.suite() == (1, 1) and not config.usable()
    with pytest.raises(ech.ECHError, match="no KEM and suite"):
        ech.seal_client_hello(config, "crypto.cloudflare.com")


# --------------------------------------------------------------------------- echcheck verdict (model/ech.py)


def _hs(failure: str | None) -> dict[str, Any]:
    return {"address": "104.16.1.1:443", "server_name": "cloudflare-ech.com", "failure": failure}


def _stripped(failure: str | None) -> Any:
    tk = {"control": _hs(None), "target": _hs(None),
          "x_ech_config_stripped": {"resolver": "198.19.0.8:53", "failure": failure}}
    return echcheck_verdict({"test_name": "echcheck", "test_keys": tk})


@pytest.mark.parametrize("failure,confidence", [
    ("generic_timeout_error", 0.6), ("dns_server_failure", 0.6), ("dns_temporary_failure", 0.6),
    ("dns_no_answer", 0.5), (None, 0.5), ("", 0.5),
])
def test_a_config_stripped_from_plain_dns_is_surer_when_the_query_failed(failure: str | None,
                                                                         confidence: float) -> None:
    """0.6 where the plain HTTPS query timed out or failed (timeout, dns_error); 0.5 where it merely held no config."""
    v = _stripped(failure)
    assert (v.status, v.mechanism, v.blocking, v.confidence) == ("anomaly", "dns.drop", "dns", confidence)
    assert v.evidence == ("test_keys.x_ech_config_stripped", "test_keys.target", "test_keys.control")


@pytest.mark.parametrize("control,target", [(None, None), ("", None), (None, ""), ("", "")])
def test_an_empty_failure_string_is_no_failure(control: str | None, target: str | None) -> None:
    """"" is not a failure (as null is): the target reached the ServerHello, not blocked at 0.85."""
    v = echcheck_verdict({"test_name": "echcheck", "test_keys": {"control": _hs(control), "target": _hs(target)}})
    assert (v.status, v.mechanism, v.blocking, v.accessible, v.confidence) == ("ok", "none", False, True, 0.85)
    assert v.evidence == ("test_keys.target", "test_keys.control")


def test_a_failure_for_want_of_records_points_only_at_those_there_are() -> None:
    """The evidence of "no target" is the control alone; of no records at all, nothing."""
    v = echcheck_verdict({"test_name": "echcheck", "test_keys": {"control": _hs(None)}})
    assert (v.status, v.evidence) == ("failure", ("test_keys.control",))
    v = echcheck_verdict({"test_name": "echcheck", "test_keys": {"target": _hs(None), "control": [1]}})
    assert (v.status, v.evidence) == ("failure", ("test_keys.target",))
    assert echcheck_verdict({"test_name": "echcheck", "test_keys": {}}).evidence == ()
