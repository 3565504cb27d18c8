"""Edges of netx's small parts: the evasion shapes (shape.py), the passive sniffer's parsing and ring (sniffer.py),
the direct connector (connect.py), the resolver dispatch (resolver.py) and the listening words (listening.py).

Each test names the mistake it would catch. The sniffer is fed crafted IPv4 bytes through a socketpair standing in
for its packet socket (no raw socket is opened); servers listen on 127.0.0.1 only, on ports from free_port().
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest

from tamperscope.collector.testing import closed_port, free_port
from tamperscope.model import failures as F
from tamperscope.netx import connect as connect_mod
from tamperscope.netx import dns as dns_mod
from tamperscope.netx import listening
from tamperscope.netx import resolver as resolver_mod
from tamperscope.netx import sniffer as sniffer_mod
from tamperscope.netx.classify import DNSError, NetxError
from tamperscope.netx.connect import DirectConnector, system_resolve
from tamperscope.netx.resolver import SYSTEM, Resolver, lookup, lookup_addresses, resolve_fn
from tamperscope.netx.shape import (
    Unshaped,
    host_name_case,
    mixed_case,
    openvpn_segments,
    sni_span,
    tls_segments,
)
from tamperscope.netx.sniffer import Packet, Sniffer
from tamperscope.netx.trace import Trace
from tamperscope.wire import packet as P

try:
    from . import test_netx_servers as srv
except ImportError:
    import test_netx_servers as srv  # type: ignore[no-redef]


def _client_hello(name: str) -> bytes:
    ctx = ssl.create_default_context()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out := ssl.MemoryBIO(), server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


# -- shape.py ----------------------------------------------------------------------------------------------------

def test_an_empty_sni_name_is_unshaped_not_cut_after_the_record_header() -> None:
    """Without the empty-name check, find(b"") matched at offset 5 and tls_segments claimed a cut it never made."""
    hello = _client_hello("www.example.com")
    with pytest.raises(Unshaped):
        sni_span(hello, "")
    with pytest.raises(Unshaped):
        tls_segments("")(hello)


def test_the_sni_span_is_searched_past_the_record_header() -> None:
    """A one-letter name equal to the record's length byte is in the payload, never in the 5-byte header."""
    payload = bytearray(b"\x00" * 0x61)
    payload[40] = ord("a")
    record = b"\x16\x03\x01\x00\x61" + bytes(payload)
    assert record[4] == ord("a")
    assert sni_span(record, "a") == (45, 1)


def test_mixed_case_upper_cases_every_other_letter_from_the_first() -> None:
    """host -> HoSt, letters counted across dots, z included; an off-by-one started on the second letter."""
    assert mixed_case(b"host") == b"HoSt"
    assert mixed_case(b"WWW.EXAMPLE.COM") == b"WwW.eXaMpLe.CoM"
    assert mixed_case(b"xyz.z") == b"XyZ.z"
    assert mixed_case(b"a") == b"A"


def test_host_name_case_rewrites_exactly_the_header_name() -> None:
    """The four bytes after the CRLF are the name: reading one byte early left an upper-case name's T as it was."""
    head = b"GET / HTTP/1.1\r\nHOST: a.example\r\nAccept: */*\r\n\r\n"
    assert host_name_case(head) == [b"GET / HTTP/1.1\r\nHoSt: a.example\r\nAccept: */*\r\n\r\n"]


def test_openvpn_segments_needs_exactly_one_nonempty_frame() -> None:
    """A bare zero length (an empty second piece) or bytes past the frame's length are not one OpenVPN frame."""
    assert openvpn_segments(b"\x00\x03abc") == [b"\x00\x03", b"abc"]
    for data in (b"\x00\x00", b"\x00\x01ab", b"\x00\x02abc", b"\x00\x01", b"\x00"):
        with pytest.raises(Unshaped):
            openvpn_segments(data)


# -- sniffer.py --------------------------------------------------------------------------------------------------

SERVER = "198.18.0.9"
US = "198.18.0.2"


def test_the_sniffer_names_the_sender_and_its_flags() -> None:
    """The remote is the packet's source address and port; flags are spelled S F R P A in that order."""
    rst = P.tcp_packet(SERVER, US, 443, 40000, seq=1, ack=2, flags=P.RST | P.ACK, window=4321, ttl=57, ip_id=99)
    p = Sniffer._parse(rst)
    assert p is not None
    assert (p.remote, p.proto, p.flags, p.window, p.ttl, p.ip_id) == (f"{SERVER}:443", "tcp", "RA", 4321, 57, 99)
    fin = Sniffer._parse(P.tcp_packet(SERVER, US, 80, 40000, seq=1, ack=2, flags=P.FIN | P.PSH | P.ACK,
                                      payload=b"<html>"))
    assert fin is not None and fin.flags == "FPA" and fin.payload == b"<html>"
    dns = Sniffer._parse(P.udp_packet(SERVER, US, 53, 40001, b"answer"))
    assert dns is not None
    assert (dns.remote, dns.proto, dns.flags, dns.window, dns.payload) == (f"{SERVER}:53", "udp", "", None, b"answer")


def test_the_sniffer_drops_a_cut_transport_header_and_caps_a_udp_payload() -> None:
    """A TCP header cut short is not a packet (it raised in the capture thread); a UDP payload keeps 4096 bytes."""
    cut = P.ipv4_header(SERVER, US, P.PROTO_TCP, 10) + b"\x00" * 10
    assert Sniffer._parse(cut) is None
    cut_udp = P.ipv4_header(SERVER, US, P.PROTO_UDP, 6) + b"\x00" * 6
    assert Sniffer._parse(cut_udp) is None
    big = Sniffer._parse(P.udp_packet(SERVER, US, 53, 40001, b"x" * 5000))
    assert big is not None and len(big.payload) == 4096


def test_a_packet_record_is_relative_to_the_measurement_start() -> None:
    """The record's t is relative, its initial TTL guessed, and no flags is null rather than an empty string."""
    p = Packet(wall=100.25, remote=f"{SERVER}:53", proto="udp", ip_id=7, ttl=50, flags="", window=None,
               payload=b"abc")
    assert p.as_record(100.0) == {"remote": f"{SERVER}:53", "proto": "udp", "ip_id": 7, "ttl": 50,
                                  "initial_ttl": 64, "flags": None, "window": None, "payload_len": 3, "t": 0.25}
    assert p.payload_b64() == "YWJj"


class _Feed:
    """Stands in for the AF_PACKET socket: what is sent on ``peer`` is what the sniffer reads."""

    def __init__(self) -> None:
        self._mine, self.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)

    def setsockopt(self, *_: object) -> None:
        pass

    def fileno(self) -> int:
        return self._mine.fileno()

    def recv(self, n: int) -> bytes:
        return self._mine.recv(n)

    def close(self) -> None:
        self._mine.close()
        self.peer.close()


@pytest.fixture
def fed_sniffer(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A factory of started sniffers reading a socketpair, each closed at the end."""
    made: list[tuple[Sniffer, _Feed]] = []

    def make(**kw: int) -> tuple[Sniffer, _Feed]:
        feed = _Feed()
        fake = types.SimpleNamespace(AF_PACKET=0, SOCK_DGRAM=0, SOL_SOCKET=socket.SOL_SOCKET,
                                     SO_RCVBUF=socket.SO_RCVBUF, htons=socket.htons, socket=lambda *a: feed)
        monkeypatch.setattr(sniffer_mod, "socket", fake)
        sn = Sniffer(**kw).start()
        made.append((sn, feed))
        return sn, feed

    yield make
    for sn, _ in made:
        sn.close()


def _send_all(sn: Sniffer, feed: _Feed, packets: list[bytes]) -> None:
    """Send ``packets`` and wait (10 s at most: it returns as soon as it is there) until the capture thread has
    kept the last one."""
    for pkt in packets:
        feed.peer.send(pkt)
    last = Sniffer._parse(packets[-1])
    assert last is not None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if sn.ring and sn.ring[-1].payload == last.payload and sn.ring[-1].remote == last.remote:
            return
        time.sleep(0.01)


def _fin(payload: bytes, sport: int = 80) -> bytes:
    return P.tcp_packet(SERVER, US, sport, 40000, seq=1, ack=1, flags=P.FIN | P.ACK, payload=payload)


def test_the_sniffer_ring_keeps_the_newest_packets_up_to_its_count(fed_sniffer: Any) -> None:
    """keep=2 keeps the last two of three; evicting at the bound (>=) kept one."""
    sn, feed = fed_sniffer(keep=2)
    _send_all(sn, feed, [_fin(b"1"), _fin(b"2"), _fin(b"3")])
    assert [p.payload for p in sn.ring] == [b"2", b"3"]


def test_the_sniffer_ring_keeps_the_newest_packets_up_to_its_bytes(fed_sniffer: Any) -> None:
    """Payload bytes are bounded, and freed on eviction: without that the ring emptied and the thread died."""
    sn, feed = fed_sniffer(keep_bytes=130)
    _send_all(sn, feed, [_fin(b"a" * 60), _fin(b"b" * 60), _fin(b"c" * 60)])
    assert [p.payload[:1] for p in sn.ring] == [b"b", b"c"]
    _send_all(sn, feed, [_fin(b"d" * 60), _fin(b"e" * 10)])
    assert [p.payload[:1] for p in sn.ring] == [b"c", b"d", b"e"]  # 130 bytes: an exact fit is kept
    assert sum(len(p.payload) for p in sn.ring) <= 130


def test_packets_for_picks_by_remote_and_an_inclusive_time_window(fed_sniffer: Any) -> None:
    """Only the measurement's endpoints, between since and until both included."""
    sn, feed = fed_sniffer()
    _send_all(sn, feed, [_fin(b"x", sport=443), P.udp_packet("198.18.0.7", US, 53, 40001, b"dns")])
    tcp, udp = list(sn.ring)
    assert sn.packets_for({f"{SERVER}:443"}, 0, time.time() + 10) == [tcp]
    assert sn.packets_for({f"{SERVER}:443", "198.18.0.7:53"}, 0, time.time() + 10) == [tcp, udp]
    assert sn.packets_for({f"{SERVER}:443"}, tcp.wall, tcp.wall) == [tcp]
    assert sn.packets_for({f"{SERVER}:443"}, tcp.wall + 1e-3, tcp.wall + 10) == []


# -- connect.py --------------------------------------------------------------------------------------------------

def _run(coro: Any, limit: float = 10.0) -> Any:
    return srv.run(coro, limit=limit)


def test_a_resolver_hook_with_no_address_fails_as_no_answer() -> None:
    """An empty answer is dns_no_answer, not an AssertionError from an attempt loop that never ran."""
    async def nothing(host: str, **_: object) -> list[str]:
        return []

    with pytest.raises(DNSError) as err:
        _run(DirectConnector(resolve=nothing)("http://nothing.example/", trace=Trace(), timeout=2))
    assert err.value.failure == F.DNS_NO_ANSWER


def test_the_connector_tries_at_most_max_addresses_and_each_in_turn() -> None:
    """Every refused address is tried (no stop at the first), and no more than max_addresses of them."""
    port = closed_port()

    async def many(host: str, **_: object) -> list[str]:
        return [srv.LOOPBACK] * 6

    trace = Trace()
    with pytest.raises(NetxError) as err:
        _run(DirectConnector(resolve=many, max_addresses=4)(f"http://many.example:{port}/", trace=trace, timeout=5))
    assert err.value.failure == F.CONNECTION_REFUSED
    assert len(trace.tcp_connect) == 4


def test_a_url_that_does_not_parse_is_a_top_level_netx_error() -> None:
    """A bad URL is a NetxError with a failure string, not a bare ValueError escaping to the nettest."""
    with pytest.raises(NetxError) as err:
        _run(DirectConnector()("ftp://example.com/", trace=Trace(), timeout=2))
    assert err.value.operation == F.TOP_LEVEL and err.value.failure.startswith("unknown_failure")


def test_the_overall_timeout_bounds_the_connects_and_no_attempt_follows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A per-address timeout longer than the whole is cut to what remains; after the deadline no SYN is sent.
    (TCP is a stand-in that takes all the time it is given: no wall clock is read, no black hole needed.)"""
    given: list[float] = []

    async def silent_connect(ip: str, port: int, *, timeout: float, **_: object) -> Any:
        given.append(timeout)
        await asyncio.sleep(timeout + 0.05)  # a connect that times out, a little after its deadline as a real one
        raise NetxError(F.GENERIC_TIMEOUT_ERROR, operation=F.CONNECT, endpoint=f"{ip}:{port}")

    async def three(host: str, **_: object) -> list[str]:
        return [srv.LOOPBACK] * 3

    monkeypatch.setattr(connect_mod.tcp_mod, "connect", silent_connect)
    with pytest.raises(NetxError) as err:
        _run(DirectConnector(resolve=three, connect_timeout=5.0)("http://hole.example:81/", trace=Trace(),
                                                                 timeout=0.4), limit=8)
    assert err.value.failure == F.GENERIC_TIMEOUT_ERROR
    assert len(given) == 1 and given[0] <= 0.4


def test_the_tls_handshake_gets_only_what_remains_of_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Time spent resolving counts: the handshake is given what remains of the overall timeout, not all of it."""
    given: list[float] = []

    async def slow(host: str, **_: object) -> list[str]:
        await asyncio.sleep(0.5)
        return [srv.LOOPBACK]

    async def connected(ip: str, port: int, **_: object) -> Any:
        return object()

    async def handshake(stream: Any, *, timeout: float, **_: object) -> Any:
        given.append(timeout)
        raise NetxError(F.GENERIC_TIMEOUT_ERROR, operation=F.TLS_HANDSHAKE, endpoint="")

    monkeypatch.setattr(connect_mod.tcp_mod, "connect", connected)
    monkeypatch.setattr(connect_mod.tls_mod, "handshake", handshake)
    with pytest.raises(NetxError):
        _run(DirectConnector(resolve=slow)("https://slow.example/", trace=Trace(), timeout=1.0))
    assert len(given) == 1 and given[0] <= 0.5


def test_verify_false_completes_a_handshake_with_an_untrusted_certificate(tmp_path: Any) -> None:
    """verify=False reaches the handshake (no_tls_verify recorded); ignoring it failed on the test CA."""
    ca = srv.TestCA(tmp_path)

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async def go() -> Trace:
        trace = Trace()
        async with srv.TCPServer(hold, ssl_context=ca.server_context("www.example.com"),
                                 port=free_port()) as server:
            conn = await DirectConnector(resolve=srv.to_loopback, verify=False)(
                f"https://www.example.com:{server.port}/", trace=trace, timeout=5)
            await conn.aclose()
        return trace

    trace = _run(go())
    (hs,) = trace.tls_handshakes
    assert hs["failure"] is None and hs["no_tls_verify"] is True


def test_system_resolve_raises_the_lookups_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed getaddrinfo is raised with its own failure and rcode, not returned as an empty list."""
    async def failed(hostname: str, **_: object) -> dns_mod.DNSResult:
        return dns_mod.DNSResult(hostname, "ANY", "system", (), F.DNS_NXDOMAIN_ERROR, 3)

    monkeypatch.setattr(dns_mod, "lookup_system", failed)
    with pytest.raises(DNSError) as err:
        _run(system_resolve("gone.example", trace=Trace(), timeout=1))
    assert err.value.failure == F.DNS_NXDOMAIN_ERROR and err.value.rcode == 3


# -- resolver.py -------------------------------------------------------------------------------------------------

_Answer = tuple[tuple[str, ...], str | None, int]  # addresses, failure, rcode


class _Engines:
    """Stands in for every DNS engine: records each call's options and answers from ``answers`` by query type."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, answers: dict[str, _Answer]) -> None:
        self.calls: list[dict[str, Any]] = []
        self.answers = answers
        for name in ("lookup_udp", "lookup_tcp", "lookup_dot", "lookup_system"):
            monkeypatch.setattr(dns_mod, name, self._engine(name))
        monkeypatch.setattr(resolver_mod, "lookup_doh", self._engine("lookup_doh"))

    def _engine(self, name: str) -> Any:
        async def fake(hostname: str, query_type: str = "ANY", **kw: Any) -> dns_mod.DNSResult:
            self.calls.append({"engine": name, "query_type": query_type, **kw})
            addresses, failure, rcode = self.answers.get(query_type, ((), F.DNS_NO_ANSWER, 0))
            return dns_mod.DNSResult(hostname, query_type, name, addresses, failure, rcode,
                                     kw.get("transaction_id") or 0)
        return fake


def test_lookup_gives_each_engine_its_default_port_and_its_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """53 for udp and tcp, 853 for DoT unless a port is given; the resolver's own options reach the engine."""
    engines = _Engines(monkeypatch, {})

    async def go() -> None:
        trace = Trace()
        await lookup("a.example", "A", resolver=Resolver("udp", "127.0.0.1", duplicate_window=0.0), trace=trace)
        await lookup("a.example", "A", resolver=Resolver("tcp", "127.0.0.1"), trace=trace)
        await lookup("a.example", "A", resolver=Resolver("tcp", "127.0.0.1", port=5353), trace=trace)
        await lookup("a.example", "A", trace=trace,
                     resolver=Resolver("dot", "127.0.0.1", server_name="dns.example", ca_bundle="/ca.pem"))
        await lookup("a.example", "A", resolver=Resolver("doh", "https://dns.example/q", ca_bundle="/doh.pem"),
                     trace=trace)

    _run(go())
    udp, tcp, tcp_port, dot, doh = engines.calls
    assert (udp["engine"], udp["port"], udp["server"], udp["duplicate_window"]) == ("lookup_udp", 53, "127.0.0.1", 0.0)
    assert (tcp["engine"], tcp["port"], tcp_port["port"]) == ("lookup_tcp", 53, 5353)
    assert (dot["engine"], dot["port"], dot["server_name"], dot["ca_bundle"]) == ("lookup_dot", 853, "dns.example",
                                                                                  "/ca.pem")
    assert (doh["engine"], doh["url"], doh["ca_bundle"]) == ("lookup_doh", "https://dns.example/q", "/doh.pem")


def test_lookup_addresses_puts_ipv4_first_under_one_transaction_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """A before AAAA, both queries and the result under the same id (the caller's when given), A's rcode kept."""
    engines = _Engines(monkeypatch, {"A": (("198.18.0.1",), None, 0), "AAAA": (("2001:db8::1",), None, 2)})
    udp = Resolver("udp", "127.0.0.1")
    result = _run(lookup_addresses("a.example", resolver=udp, trace=Trace(), transaction_id=77))
    assert result.addresses == ("198.18.0.1", "2001:db8::1") and result.failure is None
    assert result.transaction_id == 77 and result.rcode == 0 and result.query_type == "ANY"
    assert sorted(c["query_type"] for c in engines.calls) == ["A", "AAAA"]
    assert {c["transaction_id"] for c in engines.calls} == {77}
    engines.calls.clear()
    fresh = _run(lookup_addresses("a.example", resolver=udp, trace=Trace(first_transaction_id=5)))
    assert {c["transaction_id"] for c in engines.calls} == {fresh.transaction_id} == {5}


@pytest.mark.parametrize("answers,addresses,failure", [
    ({"A": ((), F.DNS_NXDOMAIN_ERROR, 3), "AAAA": (("2001:db8::1",), None, 0)}, ("2001:db8::1",), None),
    ({"A": ((), F.DNS_NO_ANSWER, 0), "AAAA": ((), F.DNS_SERVFAIL_ERROR, 2)}, (), F.DNS_NO_ANSWER),
    ({"A": ((), None, 0), "AAAA": ((), F.DNS_SERVFAIL_ERROR, 2)}, (), F.DNS_SERVFAIL_ERROR),
    ({"A": ((), None, 0), "AAAA": ((), None, 0)}, (), F.DNS_NO_ANSWER),
])
def test_lookup_addresses_fails_only_when_nothing_was_found_and_then_with_as_failure(
        monkeypatch: pytest.MonkeyPatch, answers: Any, addresses: tuple[str, ...], failure: str | None) -> None:
    """Any address is success; with none, A's failure comes first, then AAAA's, then dns_no_answer."""
    _Engines(monkeypatch, answers)
    result = _run(lookup_addresses("a.example", resolver=Resolver("tcp", "127.0.0.1"), trace=Trace()))
    assert (result.addresses, result.failure) == (addresses, failure)


def test_the_system_engine_is_one_getaddrinfo_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """getaddrinfo already gives A and AAAA: lookup_addresses asks it once, not once per type."""
    engines = _Engines(monkeypatch, {"ANY": (("198.18.0.1",), None, 0)})
    result = _run(lookup_addresses("a.example", resolver=SYSTEM, trace=Trace(), transaction_id=9))
    assert result.addresses == ("198.18.0.1",)
    assert [(c["engine"], c["transaction_id"]) for c in engines.calls] == [("lookup_system", 9)]


def test_resolve_fn_raises_the_lookups_failure_with_its_rcode(monkeypatch: pytest.MonkeyPatch) -> None:
    """The connector hook raises DNSError (nxdomain, rcode 3) rather than handing back an empty list."""
    _Engines(monkeypatch, {"A": ((), F.DNS_NXDOMAIN_ERROR, 3), "AAAA": ((), F.DNS_NXDOMAIN_ERROR, 3)})
    resolve = resolve_fn(Resolver("udp", "127.0.0.1"))
    with pytest.raises(DNSError) as err:
        _run(resolve("gone.example", trace=Trace(), timeout=1))
    assert err.value.failure == F.DNS_NXDOMAIN_ERROR and err.value.rcode == 3 and err.value.endpoint == "gone.example"
    _Engines(monkeypatch, {"A": (("198.18.0.1",), None, 0)})
    assert list(_run(resolve("a.example", trace=Trace(), timeout=1))) == ["198.18.0.1"]


# -- listening.py ------------------------------------------------------------------------------------------------

def test_shown_brackets_only_an_ipv6_host() -> None:
    """[::1]:80 for IPv6 (a sockname has 4 items), 127.0.0.1:8080 for IPv4."""
    assert listening.shown(("::1", 80, 0, 0)) == "[::1]:80"
    assert listening.shown(("::", 443)) == "[::]:443"
    assert listening.shown(("127.0.0.1", 8080)) == "127.0.0.1:8080"


def test_bind_failure_words_for_permission_and_for_any_other_error() -> None:
    """EACCES says why; an errno without words of ours keeps the system's words; no errno keeps the message."""
    assert listening.bind_failure(OSError(errno.EACCES, "Permission denied"), "0.0.0.0") == (
        "permission denied (a port below 1024 needs root)")
    assert listening.bind_failure(OSError(errno.ENODEV, "No such device"), "127.0.0.1") == "No such device"
    assert listening.bind_failure(OSError("no address given"), "127.0.0.1") == "no address given"


class _Limits:
    """Stands in for the resource module: the process's real limits are never changed."""

    RLIMIT_NOFILE = 7
    RLIM_INFINITY = -1

    def __init__(self, soft: int, hard: int, refuse: bool = False) -> None:
        self.limits, self.refuse, self.set_to = (soft, hard), refuse, None

    def getrlimit(self, which: int) -> tuple[int, int]:
        assert which == self.RLIMIT_NOFILE
        return self.limits

    def setrlimit(self, which: int, limits: tuple[int, int]) -> None:
        if self.refuse:
            raise ValueError("not allowed")
        self.set_to = limits


@pytest.mark.parametrize("soft,hard,refuse,raised_to,answer", [
    (1024, 4096, False, (4096, 4096), 4096),  # raised to the hard limit
    (1024, -1, False, (-1, -1), None),  # an unlimited hard limit: unlimited
    (1024, 4096, True, None, 1024),  # refused: the soft limit as it was
    (4096, 4096, False, None, 4096),  # nothing to raise
    (-1, -1, False, None, None),  # already unlimited
])
def test_open_files_raises_the_soft_limit_to_the_hard_one(monkeypatch: pytest.MonkeyPatch, soft: int, hard: int,
                                                          refuse: bool, raised_to: Any, answer: int | None) -> None:
    """What a server can serve: the limit after raising, never one that a refused raise only claimed."""
    fake = _Limits(soft, hard, refuse)
    monkeypatch.setattr(listening, "resource", fake)
    assert listening.open_files() == answer
    assert fake.set_to == raised_to
