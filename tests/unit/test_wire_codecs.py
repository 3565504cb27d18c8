"""Sans-IO codecs the censor and the probe share: packets, DNS questions, ClientHello, request heads."""

from __future__ import annotations

import socket
import ssl
import struct

import dns.message
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tamperscope.wire import dnswire, httphead, packet, tlshello


def _client_hello(sni: str, alpn: list[str] | None = None) -> bytes:
    ctx = ssl.create_default_context()
    if alpn:
        ctx.set_alpn_protocols(alpn)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


def test_checksum_known_value() -> None:
    # RFC 1071 example words
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert packet.checksum(data) == 0x220D


def test_forged_tcp_packet_parses_back_and_verifies() -> None:
    pkt = packet.tcp_packet("198.18.1.2", "198.19.1.1", 40000, 80, seq=123, ack=456,
                            flags=packet.RST | packet.ACK, window=0, ttl=128, ip_id=30000)
    ip = packet.parse_ipv4(pkt)
    assert ip is not None and (ip.src, ip.dst, ip.ttl, ip.ip_id, ip.proto) == ("198.18.1.2", "198.19.1.1", 128, 30000, 6)
    assert packet.checksum(pkt[:20]) == 0
    seg = packet.parse_tcp(pkt[20:])
    assert seg is not None and (seg.seq, seg.ack, seg.flags, seg.window) == (123, 456, packet.RST | packet.ACK, 0)
    pseudo = socket.inet_aton("198.18.1.2") + socket.inet_aton("198.19.1.1") + struct.pack("!BBH", 0, 6, len(pkt) - 20)
    assert packet.checksum(pseudo + pkt[20:]) == 0


def test_initial_ttl_guess() -> None:
    assert [packet.initial_ttl(t) for t in (1, 47, 64, 65, 127, 200)] == [32, 64, 64, 128, 128, 255]


def test_dns_question_and_forged_answer_roundtrip() -> None:
    q = dns.message.make_query("WWW.Example.COM", "A")
    wire = q.to_wire()
    parsed = dnswire.parse_question(wire)
    assert parsed is not None and parsed.name == "www.example.com" and parsed.qtype == 1 and not parsed.is_response
    forged = dns.message.from_wire(dnswire.forge_response(wire, parsed, answer_ip="127.0.0.1"))
    assert forged.id == q.id and [rd.address for rr in forged.answer for rd in rr] == ["127.0.0.1"]
    nx = dns.message.from_wire(dnswire.forge_response(wire, parsed, answer_ip=None, rcode=3))
    assert nx.rcode() == 3 and not nx.answer


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_dns_parser_never_raises_on_garbage(data: bytes) -> None:
    dnswire.parse_question(data)


def test_client_hello_sni_and_alpn() -> None:
    hello = _client_hello("Video.Example.org", ["h2", "http/1.1"])
    got = tlshello.parse_client_hello(hello)
    assert isinstance(got, tlshello.ClientHello) and got.sni == "video.example.org" and got.alpn == ("h2", "http/1.1")


def test_client_hello_built_in_memory_is_a_whole_first_flight() -> None:
    """tlshello.client_hello (locate's TLS trigger, Quack's echo_tls payload): OpenSSL's own hello, whole in one
    call, naming the SNI and ALPN asked for, with fresh randoms each time (an echo must be compared with what
    was sent, never with a constant)."""
    name = "xn--mnchen-3ya.example"
    a, b = tlshello.client_hello(name, ("http/1.1",)), tlshello.client_hello(name)
    assert tlshello.parse_client_hello(a) == tlshello.ClientHello(name, ("http/1.1",))
    assert tlshello.parse_client_hello(b) == tlshello.ClientHello(name, ())
    assert a[0] == 22 and struct.unpack("!H", a[3:5])[0] == len(a) - 5  # one handshake record, whole
    assert a != tlshello.client_hello(name, ("http/1.1",))


def test_an_extension_is_added_before_pre_shared_key_and_every_length_mended() -> None:
    """with_extension puts ECH before a pre_shared_key (which must stay last), mends the record, handshake and
    extensions lengths, and refuses anything that is not one whole record holding one hello."""
    plain = tlshello.client_hello("psk.example")
    psk = struct.pack("!HH", tlshello.PRE_SHARED_KEY, 3) + b"pre"
    # the extensions block, found as the parser finds it: after the session id, suites and compression methods
    pos = 9 + 2 + 32
    pos += 1 + plain[pos]
    pos += 2 + struct.unpack_from("!H", plain, pos)[0]
    pos += 1 + plain[pos]
    ext_at = pos
    total = struct.unpack_from("!H", plain, ext_at)[0]
    with_psk = bytearray(plain + psk)
    struct.pack_into("!H", with_psk, 3, len(with_psk) - 5)
    with_psk[6:9] = (len(with_psk) - 9).to_bytes(3, "big")
    struct.pack_into("!H", with_psk, ext_at, total + len(psk))
    out = tlshello.with_extension(bytes(with_psk), tlshello.ECH_EXTENSION, tlshello.grease_ech(7))
    assert out is not None and out.endswith(psk)  # still last
    assert tlshello.parse_client_hello(out) == tlshello.ClientHello("psk.example", (), True)
    assert struct.unpack_from("!H", out, 3)[0] == len(out) - 5 and int.from_bytes(out[6:9], "big") == len(out) - 9
    for bad in (b"", b"\x17\x03\x03\x00\x01x", plain[:-1], plain + b"x", plain[:40]):
        assert tlshello.with_extension(bad, tlshello.ECH_EXTENSION, b"") is None


@pytest.mark.parametrize("cut", [1, 5, 40, 100, -1])
def test_client_hello_reassembled_across_segments(cut: int) -> None:
    hello = _client_hello("split.example")
    cut = cut if cut > 0 else len(hello) - 1
    buf = tlshello.ClientHelloBuffer(1000)
    assert buf.feed(1000, hello[:cut]) is False
    assert buf.feed(5000, b"out of order") is False
    got = buf.feed(1000 + cut, hello[cut:])
    assert isinstance(got, tlshello.ClientHello) and got.sni == "split.example"


@given(st.binary(max_size=600))
@settings(max_examples=300)
def test_client_hello_parser_never_raises(data: bytes) -> None:
    tlshello.parse_client_hello(b"\x16\x03\x01" + data)
    tlshello.parse_client_hello(data)


def test_request_head_host_and_strictness() -> None:
    assert httphead.find_host(b"GET / HTTP/1.1\r\nHOST: Example.COM:8080\r\n") == "example.com"
    assert httphead.find_host(b"\x16\x03\x01") is None
    head = httphead.parse_request_head(b"GET /a HTTP/1.1\r\nHost: x.org\r\nX-A: 1\r\n\r\nBODY")
    assert head is not None and head.host == "x.org" and head.raw_len == len(b"GET /a HTTP/1.1\r\nHost: x.org\r\nX-A: 1\r\n\r\n")
    assert httphead.parse_request_head(b"GET\t/ HTTP/1.1 x\r\n\r\n") is None
    assert httphead.parse_request_head(b"GET / HTTP/1.1\r\nBad Header: y\r\n\r\n") is None


@pytest.mark.parametrize("name", ["example.com", "WWW.Example.COM.", "a-b_c.x1.example", "*.wild.example",
                                  "x" * 63 + ".example"])
@pytest.mark.parametrize("qtype", ["A", "AAAA"])
def test_encoded_query_is_what_dnspython_renders(name: str, qtype: str) -> None:
    ours = dnswire.encode_query(name, dnswire.QTYPE_A if qtype == "A" else dnswire.QTYPE_AAAA, 0x1234)
    theirs = dns.message.make_query(name, qtype, id=0x1234).to_wire()
    assert ours == theirs


@pytest.mark.parametrize("name", ["", ".", "a..b", "x" * 64 + ".example", "bücher.example", "a\\.b.example",
                                  "sp ace.example", ("a" * 60 + ".") * 5])
def test_names_dnspython_must_build_are_refused(name: str) -> None:
    assert dnswire.encode_query(name, dnswire.QTYPE_A, 1) is None


def test_udp_reply_must_answer_the_query() -> None:
    from tamperscope.netx.dns import udp_query

    expected, wire = udp_query("Www.Example.com", "A")
    query = dns.message.from_wire(wire)
    good = dns.message.make_response(query)
    good.answer.append(dns.rrset.from_text("www.example.com.", 60, "IN", "A", "198.19.1.1"))
    assert expected.reply(good.to_wire()) is not None
    other_id = dns.message.make_response(query)
    other_id.id = (query.id + 1) & 0xFFFF
    assert expected.reply(other_id.to_wire()) is None
    assert expected.reply(wire) is None  # the query itself (QR clear) is no reply
    other = dns.message.make_response(dns.message.make_query("www.example.org", "A", id=query.id))
    assert expected.reply(other.to_wire()) is None
    aaaa = dns.message.make_response(dns.message.make_query("www.example.com", "AAAA", id=query.id))
    assert expected.reply(aaaa.to_wire()) is None
    assert expected.reply(b"\x00" * 11) is None and expected.reply(wire[:2] + b"\x81\x80" + b"\xff" * 40) is None
    idna, wire2 = udp_query("bücher.example", "A")  # falls back to dnspython's codec
    assert idna.query is not None and dns.message.from_wire(wire2).question[0].name.to_text() == "xn--bcher-kva.example."


_names = st.sampled_from(["www.example.com.", "WWW.Example.COM.", "cdn.example.net.", "a-b.example.org.", "x.y.z."])
_rr = st.one_of(
    st.tuples(_names, st.just("A"), st.integers(0, 2**31 - 1), st.ip_addresses(v=4).map(str)),
    st.tuples(_names, st.just("AAAA"), st.integers(0, 2**31 - 1), st.ip_addresses(v=6).map(str)),
    st.tuples(_names, st.just("CNAME"), st.integers(0, 2**31 - 1), _names),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_rr, max_size=8), st.sampled_from([0, 2, 3, 5]), st.booleans())
def test_fast_answers_equal_dnspython(rrs: list, rcode: int, compress: bool) -> None:
    """The probe's fast path reads a reply exactly as dnspython does (grouping, TTLs, duplicates)."""
    from tamperscope.netx.dns import interpret

    query = dns.message.make_query("www.example.com", "A", id=7)
    reply = dns.message.make_response(query)
    reply.set_rcode(rcode)
    for name, rdtype, ttl, value in rrs:
        reply.answer.append(dns.rrset.from_text(name, ttl, "IN", rdtype, value))
    # dnspython merges on append; render record by record to keep duplicates and TTLs on the wire
    wire = reply.to_wire() if compress else _uncompressed(reply)
    fast = dnswire.parse_answers(wire)
    slow = dns.message.from_wire(wire)
    if fast is None:  # allowed (the caller falls back), but not for these plain messages
        raise AssertionError(wire.hex())
    for qtype in ("A", "AAAA"):
        assert interpret(qtype, fast) == interpret(qtype, slow)


def _uncompressed(msg: dns.message.Message) -> bytes:
    out = bytearray(msg.to_wire()[:12])
    out[6:8] = struct.pack("!H", sum(len(r) for r in msg.answer))
    q = msg.question[0]
    out += q.name.to_wire() + struct.pack("!HH", q.rdtype, q.rdclass)
    for rrset in msg.answer:
        for rd in rrset:
            data = rd.to_digestable()
            out += rrset.name.to_wire() + struct.pack("!HHIH", rrset.rdtype, 1, rrset.ttl, len(data)) + data
    return bytes(out)


def test_raw_duplicate_records_and_ttls_are_grouped_like_dnspython() -> None:
    from tamperscope.netx.dns import interpret

    q = dnswire.encode_query("www.example.com", dnswire.QTYPE_A, 9)
    assert q is not None
    head = struct.pack("!HHHHHH", 9, 0x8180, 1, 4, 0, 0) + q[12:]
    rr = lambda ttl, ip: struct.pack("!HHHIH", 0xC00C, 1, 1, ttl, 4) + socket.inet_aton(ip)  # noqa: E731
    wire = head + rr(300, "198.19.1.1") + rr(60, "198.19.1.2") + rr(100, "198.19.1.1") + rr(90, "198.19.1.3")
    assert interpret("A", dnswire.parse_answers(wire)) == interpret("A", dns.message.from_wire(wire))  # type: ignore[arg-type]
    assert interpret("A", dnswire.parse_answers(wire))[1] == ("198.19.1.1", "198.19.1.2", "198.19.1.3")  # type: ignore[arg-type]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_fast_answer_parser_never_raises(data: bytes) -> None:
    q = dnswire.encode_query("www.example.com", dnswire.QTYPE_A, 9)
    assert q is not None
    for msg in (data, q[:2] + b"\x81\x80" + q[4:] + data):
        result = dnswire.parse_answers(msg)
        if result is not None:  # whatever it decodes, dnspython decodes the same way
            from tamperscope.netx.dns import interpret

            assert interpret("A", result) == interpret("A", dns.message.from_wire(msg))
