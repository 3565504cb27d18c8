"""Traced DNS over loopback: UDP duplicates, garbage, timeouts, rcodes; TCP, DoT, DoH, system."""

from __future__ import annotations

import asyncio
import socket
import struct
from pathlib import Path

import dns.message
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tamperscope.model import failures as F
from tamperscope.netx import Resolver, Trace, lookup_addresses
from tamperscope.netx import dns as dns_mod
from tamperscope.netx.dns import (
    interpret,
    lookup_dot,
    lookup_system,
    lookup_tcp,
    lookup_udp,
    make_query,
    parse_reply,
)
from tamperscope.netx.doh import lookup_doh

try:
    from . import test_netx_servers as srv
except ImportError:
    import test_netx_servers as srv  # type: ignore[no-redef]

LO = srv.LOOPBACK


def test_udp_answer_record_shape() -> None:
    async def main() -> None:
        def handler(q: dns.message.Message | None, _: bytes) -> list[srv.Reply]:
            assert q is not None
            return [(0, srv.answer(q, "198.18.0.10", cname="real.example."))]

        async with srv.UDPDNSServer(handler) as server, Trace() as trace:
            result = await lookup_udp("www.example.com", "A", server=LO, port=server.port,
                                      trace=trace, duplicate_window=0)
        assert result.failure is None and result.addresses == ("198.18.0.10",)
        (q,) = trace.queries
        assert q["engine"] == "udp" and q["query_type"] == "A" and q["failure"] is None
        assert q["resolver_address"] == f"{LO}:{server.port}"
        assert q["answers"][0] == {"answer_type": "CNAME", "hostname": "real.example.", "ttl": 60}
        assert q["answers"][1] == {"answer_type": "A", "ipv4": "198.18.0.10", "ttl": 60}
        assert 0 <= q["t0"] <= q["t"] and q["transaction_id"] == result.transaction_id
        assert "rcode" not in q and q["raw_response"]
        assert set(q) >= {"hostname", "resolver_hostname", "resolver_port", "tags"}
        assert trace.x_dns_duplicate_responses == []

    srv.run(main())


# The late answers come 50 and 60 ms after the first, and the collector listens for a second. A test process
# stalled for longer than the window (the parallel tests run at nice 10 beside the lab's) sees the window close
# before it reads them: it failed so once in CI with a window of 0.5 s. A window of 1 s, at normal priority.
@pytest.mark.wallclock
def test_udp_duplicate_and_late_answers_are_recorded() -> None:
    async def main() -> None:
        def handler(q: dns.message.Message | None, _: bytes) -> list[srv.Reply]:
            assert q is not None  # the injector wins the race, the real answer comes later
            return [(0, srv.answer(q, "10.10.34.35", ttl=0)),
                    (0.05, srv.answer(q, "198.18.0.10")),
                    (0.06, srv.answer(q, "198.18.0.10"))]

        async with srv.UDPDNSServer(handler) as server:
            async with Trace() as trace:
                result = await lookup_udp("blocked.example", "A", server=LO, port=server.port,
                                          trace=trace, duplicate_window=1.0)
                assert result.addresses == ("10.10.34.35",)
                assert trace.pending == 1  # the collector is still listening
            assert trace.pending == 0
        assert [d["answers"][0]["ipv4"] for d in trace.x_dns_duplicate_responses] == [
            "198.18.0.10", "198.18.0.10"]
        first = trace.queries[0]
        for dup in trace.x_dns_duplicate_responses:
            assert dup["transaction_id"] == first["transaction_id"]
            assert dup["t"] > first["t"] and dup["engine"] == "udp"

    srv.run(main())


def _racing(forged_at: float, real_at: float) -> srv.UDPDNSServer:
    """A resolver whose answers an injector races: a forged one after ``forged_at`` s (none when negative), the
    real one after ``real_at`` s."""
    def handler(q: dns.message.Message | None, _: bytes) -> list[srv.Reply]:
        assert q is not None
        real = [(real_at, srv.answer(q, "198.18.0.10"))]
        return real if forged_at < 0 else [(forged_at, srv.answer(q, "10.10.34.35")), *real]

    return srv.UDPDNSServer(handler)


# Timed against the loop (0.6 s against 1.5 s, 0.2 against 5): at normal priority.
@pytest.mark.wallclock
def test_a_late_answer_is_kept_while_the_measurement_goes_on() -> None:
    """The real answer 0.6 s after the injector's, past the window of 0.1 s, while the measurement still runs
    (QA: behind more than 0.3 s of round trip, injection read as poisoning, the real answer unheard)."""
    async def main() -> None:
        async with _racing(0, 0.6) as server:
            async with Trace() as trace:
                result = await lookup_udp("blocked.example", "A", server=LO, port=server.port, trace=trace,
                                          duplicate_window=0.1)
                assert result.addresses == ("10.10.34.35",)
                await asyncio.sleep(1.5)  # the measurement's other steps
        assert [d["answers"][0]["ipv4"] for d in trace.x_dns_duplicate_responses] == ["198.18.0.10"]

    srv.run(main())


@pytest.mark.wallclock
def test_draining_ends_the_wait_at_the_floor_not_the_timeout() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with _racing(-1, 0) as server:
            trace = Trace()
            await lookup_udp("ok.example", "A", server=LO, port=server.port, trace=trace, timeout=5,
                             duplicate_window=0.2)
            start = loop.time()
            await trace.drain()
            waited = loop.time() - start
            assert 0.15 < waited < 2, waited  # the floor after the reply, not the 5 s the lookup may take
            late = Trace()  # a lookup made once draining has begun listens for its floor alone
            late.draining = True
            await lookup_udp("ok.example", "A", server=LO, port=server.port, trace=late, timeout=5,
                             duplicate_window=0.2)
            start = loop.time()
            await late.drain()
            assert loop.time() - start < 2

    srv.run(main())


@pytest.mark.wallclock
def test_the_floor_follows_a_slow_resolver() -> None:
    """A resolver 0.4 s away: after a few lookups the floor is 1.5 times that, and an injection is heard whole
    even when the measurement ends at the first answer."""
    async def main() -> None:
        async with _racing(-1, 0.4) as slow, _racing(0, 0.4) as raced:
            address = f"{LO}:{slow.port}"
            assert dns_mod.duplicate_floor(address, 0.3) == 0.3  # nothing known yet
            for name in ("a.example", "b.example", "c.example"):
                async with Trace() as trace:
                    await lookup_udp(name, "A", server=LO, port=slow.port, trace=trace, duplicate_window=0.3)
            assert 0.55 < dns_mod.duplicate_floor(address, 0.3) < 1.5
            dns_mod._REPLY_TIMES[f"{LO}:{raced.port}"] = dns_mod._REPLY_TIMES[address]  # the same resolver, raced
            async with Trace() as trace:
                result = await lookup_udp("blocked.example", "A", server=LO, port=raced.port, trace=trace,
                                          duplicate_window=0.3)
            assert result.addresses == ("10.10.34.35",)
            assert [d["answers"][0]["ipv4"] for d in trace.x_dns_duplicate_responses] == ["198.18.0.10"]

    srv.run(main())


def test_the_floor_is_the_median_of_recent_lookups() -> None:
    address = "198.18.99.1:53"
    dns_mod._REPLY_TIMES.pop(address, None)
    for seconds in (0.8, 0.8, 0.81, 0.01, 0.02, 4.0):  # two injected names answered first, a slow recursion
        dns_mod._note_reply_time(address, seconds)
    assert dns_mod.duplicate_floor(address, 0.3) == pytest.approx(1.5 * 0.8)
    assert dns_mod.duplicate_floor(address, 2.0) == 2.0  # never below the window asked for
    for _ in range(dns_mod.RECENT_LOOKUPS):  # the resolver moved closer: only recent lookups count
        dns_mod._note_reply_time(address, 0.02)
    assert dns_mod.duplicate_floor(address, 0.3) == 0.3
    for i in range(dns_mod.MAX_RESOLVERS):  # bounded: the oldest resolvers are forgotten
        dns_mod._note_reply_time(f"198.18.100.{i % 250}:{i}", 0.1)
    assert len(dns_mod._REPLY_TIMES) <= dns_mod.MAX_RESOLVERS and address not in dns_mod._REPLY_TIMES


def test_udp_garbage_and_wrong_id_are_ignored() -> None:
    async def main() -> None:
        def handler(q: dns.message.Message | None, data: bytes) -> list[srv.Reply]:
            assert q is not None
            wrong = dns.message.make_response(q)
            wrong.id = (q.id + 1) % 65536
            return [(0, b"\x00garbage"), (0.01, b""), (0.02, wrong.to_wire()),
                    (0.03, srv.answer(q, "198.18.0.11")), (0.04, b"\xff" * 700)]

        async with srv.UDPDNSServer(handler) as server, Trace() as trace:
            result = await lookup_udp("ok.example", "A", server=LO, port=server.port,
                                      trace=trace, duplicate_window=0.2)
        assert result.failure is None and result.addresses == ("198.18.0.11",)
        ignored = [e for e in trace.network_events if e.get("x_dns_ignored")]
        assert len(ignored) >= 3
        assert trace.x_dns_duplicate_responses == []

    srv.run(main())


def test_udp_timeout() -> None:
    async def main() -> None:
        async with srv.UDPDNSServer(lambda q, d: []) as server, Trace() as trace:
            loop = asyncio.get_running_loop()
            start = loop.time()
            result = await lookup_udp("slow.example", "A", server=LO, port=server.port,
                                      trace=trace, timeout=0.3)
            assert loop.time() - start < 2
        assert result.failure == F.GENERIC_TIMEOUT_ERROR
        assert trace.queries[0]["failure"] == F.GENERIC_TIMEOUT_ERROR
        assert trace.queries[0]["answers"] is None

    srv.run(main())


@pytest.mark.parametrize(("rcode", "failure"), [(3, F.DNS_NXDOMAIN_ERROR), (2, F.DNS_SERVFAIL_ERROR),
                                                (5, F.DNS_REFUSED_ERROR), (0, F.DNS_NO_ANSWER)])
def test_udp_rcodes(rcode: int, failure: str) -> None:
    async def main() -> None:
        def handler(q: dns.message.Message | None, _: bytes) -> list[srv.Reply]:
            assert q is not None
            return [(0, srv.answer(q, rcode=rcode))]

        async with srv.UDPDNSServer(handler) as server, Trace() as trace:
            result = await lookup_udp("nx.example", "AAAA", server=LO, port=server.port,
                                      trace=trace, duplicate_window=0)
        assert result.failure == failure and result.rcode == rcode
        q = trace.queries[0]
        assert q["failure"] == failure and q["answers"] is None
        assert q.get("rcode", 0) == rcode

    srv.run(main())


def test_udp_port_unreachable_is_refused() -> None:
    async def main() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((LO, 0))
        port = sock.getsockname()[1]
        sock.close()  # nothing listens there now: the kernel answers ICMP port unreachable
        async with Trace() as trace:
            result = await lookup_udp("x.example", "A", server=LO, port=port, trace=trace,
                                      timeout=1)
        assert result.failure == F.CONNECTION_REFUSED

    srv.run(main())


async def _tcp_dns(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    size = struct.unpack("!H", await reader.readexactly(2))[0]
    query = dns.message.from_wire(await reader.readexactly(size))
    ips = ["198.18.0.12"] if query.question[0].rdtype == 1 else ["2001:db8::12"]
    wire = srv.answer(query, *ips)
    writer.write(struct.pack("!H", len(wire)) + wire)
    await writer.drain()


def test_tcp_lookup() -> None:
    async def main() -> None:
        async with srv.TCPServer(_tcp_dns) as server, Trace() as trace:
            result = await lookup_tcp("t.example", "AAAA", server=LO, port=server.port, trace=trace)
        assert result.failure is None and result.addresses == ("2001:db8::12",)
        assert trace.queries[0]["engine"] == "tcp"
        assert trace.queries[0]["answers"][0]["ipv6"] == "2001:db8::12"
        assert trace.tcp_connect == []  # transport records are off by default

    srv.run(main())


def test_tcp_lookup_refused() -> None:
    async def main() -> None:
        async with srv.TCPServer(_tcp_dns) as server:
            port = server.port
        async with Trace() as trace:
            result = await lookup_tcp("t.example", "A", server=LO, port=port, trace=trace,
                                      record_transport=True)
        assert result.failure == F.CONNECTION_REFUSED
        assert trace.tcp_connect[0]["status"] == {"failure": F.CONNECTION_REFUSED, "success": False}

    srv.run(main())


def test_dot_lookup(tmp_path: Path) -> None:
    ca = srv.TestCA(tmp_path)

    async def main() -> None:
        ctx = ca.server_context("dns.test", alpn=("dot",))
        async with srv.TCPServer(_tcp_dns, ssl_context=ctx) as server, Trace() as trace:
            ok = await lookup_dot("d.example", "A", server=LO, port=server.port,
                                  server_name="dns.test", ca_bundle=str(ca.pem), trace=trace)
            bad = await lookup_dot("d.example", "A", server=LO, port=server.port,
                                   server_name="other.test", ca_bundle=str(ca.pem), trace=trace)
        assert ok.failure is None and ok.addresses == ("198.18.0.12",)
        assert trace.queries[0]["engine"] == "dot"
        assert bad.failure == F.SSL_INVALID_HOSTNAME

    srv.run(main())


def test_doh_lookup(tmp_path: Path) -> None:
    ca = srv.TestCA(tmp_path)

    async def doh(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method, target, headers, body = await srv.read_head(reader)
        assert method == "POST" and headers["content-type"] == "application/dns-message"
        query = dns.message.from_wire(body)
        assert query.id == 0
        wire = srv.answer(query, "198.18.0.13")
        writer.write(srv.http_response(200, wire, [("Content-Type", "application/dns-message")]))
        await writer.drain()

    async def main() -> None:
        ctx = ca.server_context("doh.test")
        async with srv.TCPServer(doh, ssl_context=ctx) as server, Trace() as trace:
            url = f"https://doh.test:{server.port}/dns-query"
            from tamperscope.netx.connect import DirectConnector

            async def to_loopback(host: str, **_: object) -> list[str]:
                return [LO]

            connector = DirectConnector(resolve=to_loopback, ca_bundle=str(ca.pem))
            result = await lookup_doh("h.example", "A", url=url, trace=trace, connector=connector)
        assert result.failure is None and result.addresses == ("198.18.0.13",)
        q = trace.queries[0]
        assert q["engine"] == "doh" and q["resolver_address"] == url
        assert trace.requests == [] and trace.tls_handshakes == []

    srv.run(main())


def test_system_lookup_localhost() -> None:
    async def main() -> None:
        async with Trace() as trace:
            result = await lookup_system("localhost", trace=trace)
        assert result.failure is None
        assert set(result.addresses) <= {"127.0.0.1", "::1"} and result.addresses
        q = trace.queries[0]
        assert q["engine"] == "system" and q["query_type"] == "ANY" and q["resolver_address"] == ""

    srv.run(main())


def test_system_lookup_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def nxdomain(*args: object, **kwargs: object) -> list[object]:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

        monkeypatch.setattr(loop, "getaddrinfo", nxdomain)
        async with Trace() as trace:
            result = await lookup_system("nx.example", trace=trace)
        assert result.failure == F.DNS_NXDOMAIN_ERROR
        assert trace.queries[0]["failure"] == F.DNS_NXDOMAIN_ERROR

    srv.run(main())


def test_lookup_addresses_merges_a_and_aaaa() -> None:
    async def main() -> None:
        def handler(q: dns.message.Message | None, _: bytes) -> list[srv.Reply]:
            assert q is not None
            if q.question[0].rdtype == 1:
                return [(0, srv.answer(q, "198.18.0.14"))]
            return [(0, srv.answer(q))]  # no AAAA

        async with srv.UDPDNSServer(handler) as server, Trace() as trace:
            resolver = Resolver("udp", LO, port=server.port, duplicate_window=0)
            result = await lookup_addresses("m.example", resolver=resolver, trace=trace)
        assert result.addresses == ("198.18.0.14",) and result.failure is None
        assert sorted(q["query_type"] for q in trace.queries) == ["A", "AAAA"]
        assert {q["transaction_id"] for q in trace.queries} == {result.transaction_id}
        assert [q["failure"] for q in trace.queries if q["query_type"] == "AAAA"] == [F.DNS_NO_ANSWER]

    srv.run(main())


def test_resolver_validation() -> None:
    with pytest.raises(ValueError):
        Resolver("carrier-pigeon", "x")
    with pytest.raises(ValueError):
        Resolver("udp")


@given(st.binary(max_size=600))
@settings(max_examples=300, deadline=None)
def test_garbage_never_crashes_the_parser(data: bytes) -> None:
    query = make_query("fuzz.example", "A", query_id=4242)
    reply = parse_reply(query, data)
    assert reply is None or reply.id == 4242
    wire = data[:2] and (struct.pack("!H", 4242) + data[2:])
    reply = parse_reply(query, wire)  # right id, random rest
    if reply is not None:
        interpret("A", reply)
