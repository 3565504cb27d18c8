"""Edges of the middleboxes' parsers (tlshello, quicinitial, httphead) and of the probe's HTTP/1.1 exchange."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
from aioquic.quic.crypto import CryptoPair

from tamperscope.netx import Limits, Trace, round_trip, tcp_connect
from tamperscope.netx.http import HTTPResponse
from tamperscope.wire import httphead, tlshello
from tamperscope.wire.quicinitial import MAX_CRYPTO, VERSION_1, initial_hello
from tamperscope.wire.tlshello import MAX_HELLO, ClientHello, ClientHelloBuffer

try:
    from . import test_netx_hostile_servers as hostile
    from . import test_netx_servers as srv
except ImportError:
    import test_netx_hostile_servers as hostile  # type: ignore[no-redef]
    import test_netx_servers as srv  # type: ignore[no-redef]


def _sni_ext(*entries: tuple[int, bytes]) -> bytes:
    names = b"".join(struct.pack("!BH", kind, len(name)) + name for kind, name in entries)
    data = struct.pack("!H", len(names)) + names
    return struct.pack("!HH", 0, len(data)) + data


def _hello(exts: bytes, *, ext_total: int | None = None, after: bytes = b"", hs_type: int = 1) -> bytes:
    """One TLS record holding one hand-built ClientHello (no session id, one suite, null compression)."""
    body = (b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
            + struct.pack("!H", len(exts) if ext_total is None else ext_total) + exts + after)
    hs = bytes([hs_type]) + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


# --- tlshello ---


def test_the_hand_built_hello_is_read() -> None:
    """The helper's hello is a hello (so the edges below test what they mean to)."""
    assert tlshello.parse_client_hello(_hello(_sni_ext((0, b"site.example")))) == ClientHello("site.example", ())


def test_a_first_record_that_is_no_handshake_is_not_tls_rather_than_incomplete() -> None:
    """Application data, an alert, a ChangeCipherSpec first: None at once, not False (which keeps a censor
    buffering the flow)."""
    for ctype in (20, 21, 23):
        assert tlshello.parse_client_hello(bytes([ctype]) + b"\x03\x03\x00\x02ab") is None


def test_a_handshake_that_is_no_client_hello_is_not_read_as_one() -> None:
    """A ServerHello (type 2) carrying the same bytes is no ClientHello: no SNI read from it."""
    assert tlshello.parse_client_hello(_hello(_sni_ext((0, b"site.example")), hs_type=2)) is None
    hs = _hello(_sni_ext((0, b"site.example")), hs_type=2)[5:]
    assert tlshello.parse_handshake(hs) is None


def test_only_a_host_name_entry_of_server_name_is_the_sni() -> None:
    """A server_name entry of another name type is skipped; the host_name (type 0) after it is the SNI."""
    got = tlshello.parse_client_hello(_hello(_sni_ext((1, b"decoy.example"), (0, b"real.example"))))
    assert got == ClientHello("real.example", ())
    assert tlshello.parse_client_hello(_hello(_sni_ext((1, b"decoy.example")))) == ClientHello(None, ())


def test_an_sni_with_a_trailing_dot_is_the_same_name() -> None:
    """"Blocked.Example." and "blocked.example" are one name to a rule: lower-cased, the root dot dropped."""
    assert tlshello.parse_client_hello(_hello(_sni_ext((0, b"Blocked.Example.")))) == ClientHello("blocked.example", ())


def test_extensions_past_the_declared_extensions_block_are_not_read() -> None:
    """Only the extensions within the block's length are the hello's: an SNI in bytes after it is not."""
    decoy = _sni_ext((0, b"decoy.example"))
    got = tlshello.parse_client_hello(_hello(b"", ext_total=0, after=decoy))
    assert got == ClientHello(None, ())


def test_a_hello_followed_by_another_record_in_the_same_segment_is_read() -> None:
    """A first flight of a hello then a ChangeCipherSpec or early data: the hello's records end, the hello stands."""
    hello = _hello(_sni_ext((0, b"early.example")))
    for follow in (b"\x14\x03\x03\x00\x01\x01", b"\x17\x03\x03\x00\x03abc"):
        buf = ClientHelloBuffer(100)
        assert buf.feed(100, hello + follow) == ClientHello("early.example", ())


def test_a_handshake_that_is_no_client_hello_is_given_up_at_once() -> None:
    """A buffer whose handshake starts with another type (here claiming 64 KB) is not TLS to read: None, not
    a wait for the rest of it."""
    buf = ClientHelloBuffer(1)
    assert buf.feed(1, b"\x16\x03\x01\x00\x08" + b"\x02\x01\x00\x00" + b"\x00" * 4) is None
    assert buf.done


def test_the_buffer_gives_up_past_max_hello_and_frees_what_it_held() -> None:
    """A hello that claims to be huge and keeps coming is dropped once the buffer passes MAX_HELLO bytes."""
    buf = ClientHelloBuffer(0)
    seq, result = 0, None
    first = b"\x16\x03\x01\xff\xff" + b"\x01\xff\xff\xff"  # a 64 KB record holding a 16 MB hello
    chunk = b"\x00" * 1000
    assert buf.feed(seq, first) is False
    seq += len(first)
    for _ in range(MAX_HELLO // len(chunk) + 1):
        result = buf.feed(seq, chunk)
        seq += len(chunk)
        if buf.done:
            break
    assert result is None and buf.done and buf.held == 0


def test_the_buffer_follows_sequence_numbers_across_the_32_bit_wrap() -> None:
    """A flow whose first sequence number is just below 2**32: the next segment's sequence number wraps to 0..."""
    hello = _hello(_sni_ext((0, b"wrap.example")))
    start = 0xFFFFFFFF - 9
    buf = ClientHelloBuffer(start)
    assert buf.feed(start, hello[:20]) is False
    assert buf.next_seq == 10
    assert buf.feed(10, hello[20:]) == ClientHello("wrap.example", ())


def test_with_extension_refuses_a_hello_whose_extensions_length_disagrees() -> None:
    """The extensions block must end where the record does, or the lengths mended would be wrong."""
    plain = tlshello.client_hello("len.example")
    pos = 9 + 2 + 32
    pos += 1 + plain[pos]
    pos += 2 + struct.unpack_from("!H", plain, pos)[0]
    pos += 1 + plain[pos]
    total = struct.unpack_from("!H", plain, pos)[0]
    for wrong in (total - 1, total + 1):
        bad = bytearray(plain)
        struct.pack_into("!H", bad, pos, wrong)
        assert tlshello.with_extension(bytes(bad), tlshello.ECH_EXTENSION, b"") is None


def test_with_extension_refuses_a_record_holding_another_handshake() -> None:
    """Only a ClientHello gets an extension: a record whose handshake is of another type is refused."""
    other = bytearray(tlshello.client_hello("type.example"))
    other[5] = 2
    assert tlshello.with_extension(bytes(other), tlshello.ECH_EXTENSION, b"") is None


# --- quicinitial ---

QUIC_NAME = "quic.example"
_ALPN_H3 = struct.pack("!HHHB", 16, 5, 3, 2) + b"h3"
QUIC_HELLO = _hello(_sni_ext((0, QUIC_NAME.encode())) + _ALPN_H3)[5:]  # fixed bytes: every packet below is too
QUIC_RIGHT = ClientHello(QUIC_NAME, ("h3",))


def _crypto(offset: int, data: bytes, size: int | None = None) -> bytes:
    """A CRYPTO frame (4-byte varints), its length field ``size`` if given."""
    length = len(data) if size is None else size
    return b"\x06" + struct.pack("!I", 0x80000000 | offset) + struct.pack("!I", 0x80000000 | length) + data


def _initial(frames: bytes, *, first: int = 0xC1, dcid: bytes = bytes(range(8)), scid: bytes = b"",
             token: bool = True, extra_length: int = 0, pad: bool = True) -> bytes:
    """A packet encrypted with the Initial keys of ``dcid`` (v1), whatever its header says: first byte, CID
    lengths, token field, a Length field ``extra_length`` past the packet's end; padded to 1200 if ``pad``."""
    pn_len = (first & 3) + 1
    if pad:
        frames += bytes(max(0, 1136 - len(frames)))
    length = pn_len + len(frames) + 16 + extra_length
    header = (bytes([first]) + struct.pack("!I", VERSION_1) + bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid
              + (b"\x00" if token else b"") + struct.pack("!H", 0x4000 | length) + bytes(pn_len))
    pair = CryptoPair()
    pair.setup_initial(cid=dcid, is_client=True, version=VERSION_1)
    return pair.encrypt_packet(header, frames, 0)


def test_the_initial_helper_builds_what_the_parser_reads() -> None:
    """The helper's Initial is read (so the edges below test what they mean to)."""
    assert initial_hello(_initial(_crypto(0, QUIC_HELLO))) == QUIC_RIGHT


def test_packets_of_other_types_under_initial_keys_are_not_initials() -> None:
    """A 0-RTT long header or a short header is no Initial, even when the Initial keys decrypt it."""
    assert initial_hello(_initial(_crypto(0, QUIC_HELLO), first=0xD1)) is None  # 0-RTT (v1 type 1)
    short = _initial(_crypto(0, QUIC_HELLO), first=0x41)  # short header
    assert (short[0] >> 4) & 3 == 0  # its protected first byte has an Initial's type bits: only the form bit differs
    assert initial_hello(short) is None


def test_connection_ids_longer_than_20_bytes_are_no_v1_initial() -> None:
    """RFC 9000 17.2: a v1 connection ID has at most 20 bytes; a server drops anything longer."""
    assert initial_hello(_initial(_crypto(0, QUIC_HELLO), dcid=bytes(20))) == QUIC_RIGHT
    assert initial_hello(_initial(_crypto(0, QUIC_HELLO), dcid=bytes(21))) is None
    assert initial_hello(_initial(_crypto(0, QUIC_HELLO), scid=bytes(20))) == QUIC_RIGHT
    assert initial_hello(_initial(_crypto(0, QUIC_HELLO), scid=bytes(21))) is None


def test_a_length_field_past_the_datagram_is_no_packet() -> None:
    """A Length that runs past the datagram's end: the packet is cut, not read up to where the datagram ends."""
    assert initial_hello(_initial(_crypto(0, QUIC_HELLO), extra_length=10)) is None


def test_a_frame_cut_at_the_payloads_end_is_no_initial() -> None:
    """An ACK frame whose last varint is cut by the payload's end is malformed (a server closes): None."""
    frames = _crypto(0, QUIC_HELLO)
    ack = b"\x02\x00\x00\x00\x40"  # ACK: largest 0, delay 0, no more ranges, a first range cut after 1 of 2 bytes
    frames += bytes(1136 - len(frames) - len(ack)) + ack
    assert initial_hello(_initial(frames, pad=False)) is None


def test_crypto_data_past_max_crypto_is_given_up() -> None:
    """CRYPTO data beyond MAX_CRYPTO (16 KB) is no ClientHello a censor waits for: None, not the prefix."""
    assert initial_hello(_initial(_crypto(0, QUIC_HELLO) + _crypto(MAX_CRYPTO - 1, b"x"))) == QUIC_RIGHT
    assert initial_hello(_initial(_crypto(0, QUIC_HELLO) + _crypto(MAX_CRYPTO, b"x"))) is None


def test_a_crypto_frame_longer_than_the_payload_is_malformed() -> None:
    """A CRYPTO frame whose length runs past the payload is not read as the bytes that are there."""
    assert initial_hello(_initial(_crypto(0, QUIC_HELLO, size=len(QUIC_HELLO) + 5000))) is None


def test_ping_ack_ecn_and_connection_close_frames_are_stepped_over() -> None:
    """PING, ACK with ECN counts (read whole), and a CONNECTION_CLOSE (nothing read after it) around the hello."""
    ack_ecn = b"\x03" + b"\x00\x00\x00\x00" + b"\x05\x05\x05"  # largest, delay, 0 ranges, first; ECT0, ECT1, CE
    assert initial_hello(_initial(b"\x01" + _crypto(0, QUIC_HELLO))) == QUIC_RIGHT
    assert initial_hello(_initial(ack_ecn + _crypto(0, QUIC_HELLO))) == QUIC_RIGHT
    assert initial_hello(_initial(_crypto(0, QUIC_HELLO) + b"\x1c" + b"\xff" * 8)) == QUIC_RIGHT


def test_an_ack_of_more_than_256_ranges_is_read_whole() -> None:
    """An ACK's ranges are all stepped over: read only 256 of 300, the rest was read as frames (here STOP_SENDING,
    0x05, which no Initial holds; a client could hide a decoy CRYPTO frame there instead)."""
    ack = b"\x02\x00\x00" + b"\x41\x2c" + b"\x00" + b"\x05" * 600  # largest, delay, 300 ranges, first, 300 pairs
    assert initial_hello(_initial(ack + _crypto(0, QUIC_HELLO))) == QUIC_RIGHT
    # more ranges than the frame has bytes left for: malformed
    assert initial_hello(_initial(b"\x02\x00\x00\x80\x01\x00\x00\x00" + _crypto(0, QUIC_HELLO))) is None


# --- httphead ---


def test_find_host_reads_only_what_looks_like_a_request() -> None:
    """A flow that does not start with a method is no HTTP request, whatever "Host:" lines it carries."""
    assert httphead.find_host(b"\x00\x01junk\r\nHost: blocked.example\r\n") is None
    assert httphead.find_host(b"GET / HTTP/1.1\r\nHost: blocked.example\r\n") == "blocked.example"


def test_find_host_reads_a_connect_request() -> None:
    """CONNECT is a method like the others: its Host is read (a proxy-bound tunnel names its target there)."""
    assert httphead.looks_like_request(b"CONNECT blocked.example:443 HTTP/1.1\r\n")
    connect = b"CONNECT blocked.example:443 HTTP/1.1\r\nHost: blocked.example:443\r\n"
    assert httphead.find_host(connect) == "blocked.example"


def test_find_host_waits_for_the_end_of_the_host_line() -> None:
    """A segment cut inside the Host line gives no name, never the prefix that arrived ("bloc")."""
    assert httphead.find_host(b"GET / HTTP/1.1\r\nHost: bloc") is None


def test_find_host_keeps_an_ipv6_literal_whole() -> None:
    """The colons of a bracketed IPv6 literal are no port separator; only a port after "]" is dropped."""
    assert httphead.find_host(b"GET / HTTP/1.1\r\nHost: [2001:DB8::1]\r\n") == "[2001:db8::1]"
    assert httphead.find_host(b"GET / HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n") == "[2001:db8::1]:8080"


def test_find_host_looks_no_further_than_max_head() -> None:
    """A Host line past the head's 64 KB bound is not searched for (nor lower-cased: the cost is bounded)."""
    late = b"GET / HTTP/1.1\r\nX-Pad: " + b"a" * httphead.MAX_HEAD + b"\r\nHost: late.example\r\n"
    assert httphead.find_host(late) is None


@pytest.mark.parametrize("line", [b"GET / HTTP/1.1 extra", b"G@T / HTTP/1.1", b"GET  HTTP/1.1", b"GET / HTTP/1.1x",
                                  b"GET / HTTP/11", b"GET / FTP/1.0"])
def test_a_malformed_request_line_is_refused(line: bytes) -> None:
    """Three space-separated parts, a token method, a non-empty target, an HTTP/d.d version: anything else is None."""
    assert httphead.parse_request_head(line + b"\r\nHost: x.org\r\n\r\n") is None
    assert httphead.parse_request_head(b"GET / HTTP/1.1\r\nHost: x.org\r\n\r\n") is not None


def test_a_header_line_without_a_colon_refuses_the_head() -> None:
    """A line that is no header (here: an obsolete folded continuation) is not skipped: the head is refused."""
    assert httphead.parse_request_head(b"GET / HTTP/1.1\r\nHost: x.org\r\n folded\r\n\r\n") is None


def test_a_head_ended_by_bare_newlines_measures_its_own_length() -> None:
    """raw_len counts the blank line as sent: two bytes for LF LF, four for CRLF CRLF."""
    lf = b"GET / HTTP/1.0\nHost: x.org\n\n"
    head = httphead.parse_request_head(lf + b"BODY")
    assert head is not None and head.raw_len == len(lf) and head.host == "x.org"


def test_header_values_are_stripped_and_the_host_loses_its_port() -> None:
    """Values lose the spaces around them; the host property drops a port, and keeps an IPv6 literal whole."""
    head = httphead.parse_request_head(b"GET / HTTP/1.1\r\nHost:   X.org:8080  \r\nX-A:  1 \r\n\r\n")
    assert head is not None and head.header("x-a") == "1" and head.host == "x.org"
    v6 = httphead.parse_request_head(b"GET / HTTP/1.1\r\nHost: [2001:db8::1]\r\n\r\n")
    assert v6 is not None and v6.host == "[2001:db8::1]"


def test_a_head_longer_than_max_head_is_refused() -> None:
    """The blank line must come within MAX_HEAD bytes (CRLF or bare LF): a longer head is None, not read whole."""
    pad = b"a" * httphead.MAX_HEAD
    assert httphead.parse_request_head(b"GET / HTTP/1.1\r\nX-Pad: " + pad + b"\r\n\r\n") is None
    assert httphead.parse_request_head(b"GET / HTTP/1.1\nX-Pad: " + pad + b"\n\n") is None


# --- netx.http11 (against raw-socket servers on 127.0.0.1, as test_netx_hostile_servers.py runs them) ---


def _scripted(*parts: bytes, pause: float = 0.1) -> hostile.Script:
    """Read the request, send ``parts`` with a pause between them, then keep the connection open, silent."""
    def script(sock: socket.socket, stop: threading.Event) -> None:
        hostile.read_request(sock)
        for i, part in enumerate(parts):
            if i:
                time.sleep(pause)
            sock.sendall(part)
        stop.wait(5)

    return script


def _get(script: hostile.Script, limits: Limits, timeout: float = 5.0) -> tuple[HTTPResponse, float]:
    async def main() -> tuple[HTTPResponse, float]:
        with hostile.HostileServer(script) as server:
            async with await tcp_connect(hostile.LO, server.port, trace=Trace(record_io=False)) as conn:
                start = time.monotonic()
                response = await round_trip(conn, f"http://{hostile.LO}:{server.port}/", timeout=timeout,
                                            limits=limits, record=False)
                return response, time.monotonic() - start

    return srv.run(main())  # type: ignore[no-any-return]


def test_a_body_at_the_cap_in_64_byte_chunks_is_read_whole() -> None:
    """wire_budget leaves an eighth of the cap for chunk framing: 64-byte chunks (6 bytes of framing each) fit,
    so a body exactly at the cap is whole, not truncated."""
    limit = 64 * 1024
    chunks = b"".join(b"40\r\n" + b"x" * 64 + b"\r\n" for _ in range(limit // 64)) + b"0\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    response, _ = _get(_scripted(head, chunks[: len(chunks) // 2], chunks[len(chunks) // 2 :]),
                       Limits(body=limit, header_bytes=4096))
    assert response.status == 200 and not response.body_is_truncated and response.body == b"x" * limit


def test_a_large_head_is_read_and_counts_on_the_heads_room_not_the_bodys() -> None:
    """A 20 KB head (within the default 64 KB header_bytes, over h11's own 16 KB default) with a small body cap:
    the head is parsed, and its bytes come out of the budget's head room, so the body after it is whole."""
    head = (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n"
            + b"".join(b"X-Pad-%d: " % i + b"p" * 490 + b"\r\n" for i in range(40)) + b"\r\n")
    assert 16 * 1024 < len(head) < 64 * 1024
    # the head in two sends, so that h11 holds 17 KB of it incomplete (its bound: header_bytes, not 16 KB)
    response, _ = _get(_scripted(head[:17000], head[17000:], b"y" * 500, b"y" * 500), Limits(body=1024))
    assert response.status == 200 and not response.body_is_truncated and response.body == b"y" * 1000


def test_informational_heads_before_the_answer_do_not_cut_it() -> None:
    """1xx heads count against what is read, but only the final response's reading is cut by the budget: five
    large 103s (more than the budget of a 1 KB cap) still let the 200 after them through."""
    hint = b"HTTP/1.1 103 Early Hints\r\n" + b"".join(b"Link: </s%d.css>; rel=preload; x=" % i + b"q" * 400 + b"\r\n"
                                                    for i in range(10)) + b"\r\n"
    limits = Limits(body=1024, header_bytes=8 * 1024)
    assert len(hint) * 5 > limits.body + limits.body // 8 + limits.header_bytes
    response, _ = _get(_scripted(hint * 5 + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), limits)
    assert response.status == 200 and not response.body_is_truncated


def test_reading_stops_once_the_body_passes_its_cap() -> None:
    """A server that sends more than the cap then stalls (a 10 MB Content-Length, half-sent): the body is cut at
    the cap at once, not read on until the deadline."""
    limit = 16 * 1024
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n"
    response, took = _get(_scripted(head + b"z" * (limit + 1000)), Limits(body=limit), timeout=4.0)
    assert response.body_is_truncated and response.body == b"z" * limit
    assert took < 2.0


def test_find_host_reads_the_head_not_the_body() -> None:
    """A "host:" line in a POST's body is no Host header: the censor acted on a name the request did not name."""
    post = b"POST / HTTP/1.1\r\nHost: ok.example\r\nContent-Length: 30\r\n\r\nfoo=1\nhost: blocked.example\n"
    assert httphead.find_host(post) == "ok.example"
    assert httphead.find_host(b"POST / HTTP/1.1\r\nContent-Length: 30\r\n\r\nfoo=1\nhost: blocked.example\n") is None
    bare = b"POST / HTTP/1.1\nContent-Length: 30\n\nfoo=1\nhost: blocked.example\n"
    assert httphead.find_host(bare) is None
    assert httphead.find_host(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n") == "a.example"  # the last line


def test_a_head_ends_at_its_first_blank_line() -> None:
    """A head ended by bare newlines ends there, whatever CRLF CRLF a body holds later ("BODY" is no header)."""
    head = httphead.parse_request_head(b"GET / HTTP/1.1\nHost: a.example\n\nBODY\r\n\r\n")
    assert head is not None and head.host == "a.example" and head.raw_len == 32
    head = httphead.parse_request_head(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\nx\n\n")
    assert head is not None and head.raw_len == 35
