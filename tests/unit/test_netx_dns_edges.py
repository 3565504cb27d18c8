"""Edges of netx.dns that a hostile resolver or path can reach: replies with the wrong opcode or id over UDP and
TCP, a TCP reply cut short or arriving in pieces, an ICMP error racing a queued answer, a learnt floor longer than
the lookup's timeout, duplicate getaddrinfo entries, and a record owned by the root name."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from typing import Any

import dns.message
import dns.rrset
import pytest

from tamperscope.model import failures as F
from tamperscope.netx import Trace
from tamperscope.netx import dns as dns_mod
from tamperscope.netx.dns import interpret, lookup_system, lookup_tcp, lookup_udp, make_query

try:
    from . import test_netx_servers as srv
except ImportError:
    import test_netx_servers as srv  # type: ignore[no-redef]

LO = srv.LOOPBACK


def _with_opcode(wire: bytes, opcode: int) -> bytes:
    """``wire`` with its header's opcode set to ``opcode`` (bits 11-14 of the flags)."""
    (flags,) = struct.unpack_from("!H", wire, 2)
    return wire[:2] + struct.pack("!H", (flags & ~0x7800) | (opcode << 11)) + wire[4:]


def test_udp_reply_with_another_opcode_is_ignored() -> None:
    """A forged reply whose opcode is NOTIFY (4) is no answer to a QUERY: taking it would make the forgery the
    result (the opcode check in Expected.reply)."""
    async def main() -> None:
        def handler(q: dns.message.Message | None, _: bytes) -> list[srv.Reply]:
            assert q is not None
            return [(0, _with_opcode(srv.answer(q, "10.6.6.6"), 4)), (0.03, srv.answer(q, "198.18.0.20"))]

        async with srv.UDPDNSServer(handler) as server, Trace() as trace:
            result = await lookup_udp("op.example", "A", server=LO, port=server.port, trace=trace,
                                      duplicate_window=0)
        assert result.failure is None and result.addresses == ("198.18.0.20",)
        assert len([e for e in trace.network_events if e.get("x_dns_ignored")]) == 1

    srv.run(main())


def _tcp_server(reply: Any) -> srv.TCPServer:
    """A DNS-over-TCP server: ``reply(query, writer)`` answers the one length-prefixed query it reads."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        size = struct.unpack("!H", await reader.readexactly(2))[0]
        query = dns.message.from_wire(await reader.readexactly(size))
        await reply(query, writer)
        await asyncio.sleep(0.5)  # hold the connection: the client must stop at the message's end, not at EOF

    return srv.TCPServer(handle)


def test_tcp_reply_with_the_wrong_id_is_server_misbehaving() -> None:
    """A TCP reply to another query id is no answer: without parse_reply's is_response check (or the failure set
    when it gives None) the lookup took a forged reply as the answer."""
    async def wrong_id(query: dns.message.Message, writer: asyncio.StreamWriter) -> None:
        query.id = (query.id + 1) % 65536
        wire = srv.answer(query, "10.6.6.6")
        writer.write(struct.pack("!H", len(wire)) + wire)
        await writer.drain()

    async def main() -> None:
        async with _tcp_server(wrong_id) as server, Trace() as trace:
            result = await lookup_tcp("id.example", "A", server=LO, port=server.port, trace=trace, timeout=2)
        assert result.failure == F.DNS_SERVER_MISBEHAVING and result.addresses == ()
        assert trace.queries[0]["failure"] == F.DNS_SERVER_MISBEHAVING and trace.queries[0]["answers"] is None

    srv.run(main())


def test_tcp_reply_in_two_pieces_followed_by_junk_reads_exactly_the_message() -> None:
    """The second read asks only for what is left of the message: reading a full message's length again took the
    junk after it into the reply, which then failed to parse."""
    async def split(query: dns.message.Message, writer: asyncio.StreamWriter) -> None:
        wire = srv.answer(query, "198.18.0.21")
        framed = struct.pack("!H", len(wire)) + wire
        writer.write(framed[:10])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(framed[10:] + b"\x00\x10junk-after-the-message")
        await writer.drain()

    async def main() -> None:
        async with _tcp_server(split) as server, Trace() as trace:
            result = await lookup_tcp("split.example", "A", server=LO, port=server.port, trace=trace, timeout=2)
        assert result.failure is None and result.addresses == ("198.18.0.21",)

    srv.run(main())


def test_tcp_reply_cut_short_is_an_eof_error() -> None:
    """A server closing mid-message is eof_error at once (a lookup that kept reading at EOF spun forever)."""
    async def cut(query: dns.message.Message, writer: asyncio.StreamWriter) -> None:
        wire = srv.answer(query, "198.18.0.22")
        writer.write(struct.pack("!H", len(wire)) + wire[:5])
        await writer.drain()
        writer.close()

    async def main() -> None:
        async with _tcp_server(cut) as server, Trace() as trace:
            result = await lookup_tcp("cut.example", "A", server=LO, port=server.port, trace=trace, timeout=2)
        assert result.failure == F.EOF_ERROR and result.addresses == ()

    srv.run(main())


def test_an_answer_in_the_grace_is_read_even_when_the_loop_stalled_past_it() -> None:
    """The loop blocked for longer than the grace (a loaded machine: CI saw it once): the datagram's arrival and
    the grace's timeout run in the same turn, and the datagram, which came within the grace, is read, not lost."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        proto = dns_mod._UDPProtocol(loop)
        proto.error_received(ConnectionRefusedError("port unreachable"))
        loop.call_later(dns_mod.ICMP_GRACE / 5, proto.datagram_received, b"forged", (LO, 53))
        loop.call_soon(time.sleep, dns_mod.ICMP_GRACE * 2)  # the stall, once get() waits
        assert await proto.get() == b"forged"
        with pytest.raises(ConnectionRefusedError):
            await proto.get()

    srv.run(main())


def test_an_answer_queued_just_after_an_icmp_error_is_still_read() -> None:
    """An injector's answer can arrive just after the port-unreachable: without ICMP_GRACE the error ended the
    wait and the answer was lost."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        proto = dns_mod._UDPProtocol(loop)
        proto.error_received(ConnectionRefusedError("port unreachable"))
        loop.call_later(dns_mod.ICMP_GRACE / 5, proto.datagram_received, b"forged", (LO, 53))
        assert await proto.get() == b"forged"
        with pytest.raises(ConnectionRefusedError):  # and after the grace, the error
            await proto.get()

    srv.run(main())


def test_a_closed_socket_ends_the_wait_at_once() -> None:
    """A socket closed under the reader is no ICMP error: get() raises at once, without the ICMP grace."""
    async def main() -> None:
        proto = dns_mod._UDPProtocol(asyncio.get_running_loop())
        proto.connection_lost(None)
        with pytest.raises(ConnectionAbortedError):
            async with asyncio.timeout(dns_mod.ICMP_GRACE / 5):  # fires first if get() waits out the grace
                await proto.get()

    srv.run(main())


def test_a_lookup_without_a_window_still_teaches_the_floor() -> None:
    """Lookups with duplicate_window=0 note their reply time too: otherwise the floor never learnt a slow
    resolver from them."""
    async def main() -> None:
        def handler(q: dns.message.Message | None, _: bytes) -> list[srv.Reply]:
            assert q is not None
            return [(0.02, srv.answer(q, "198.18.0.25"))]

        async with srv.UDPDNSServer(handler) as server, Trace() as trace:
            address = f"{LO}:{server.port}"
            try:
                result = await lookup_udp("learn.example", "A", server=LO, port=server.port, trace=trace,
                                          duplicate_window=0)
                assert result.addresses == ("198.18.0.25",)
                assert dns_mod.duplicate_floor(address, 0.0) >= dns_mod.FLOOR_FACTOR * 0.02
            finally:
                dns_mod._REPLY_TIMES.pop(address, None)

    srv.run(main())


@pytest.mark.wallclock
def test_a_learnt_floor_never_outlasts_the_lookups_timeout() -> None:
    """A resolver once slow (20 s replies) makes a floor of 30 s; the collector is still bounded by the
    lookup's timeout (0.3 s): uncapped, the trace's end waited for the whole floor."""
    async def main() -> None:
        loop = asyncio.get_running_loop()

        def handler(q: dns.message.Message | None, _: bytes) -> list[srv.Reply]:
            assert q is not None
            return [(0, srv.answer(q, "198.18.0.23"))]

        async with srv.UDPDNSServer(handler) as server:
            address = f"{LO}:{server.port}"
            dns_mod._note_reply_time(address, 20.0)
            try:
                start = loop.time()
                async with Trace() as trace:
                    result = await lookup_udp("floor.example", "A", server=LO, port=server.port, trace=trace,
                                              timeout=0.3, duplicate_window=0.1)
                assert loop.time() - start < 3
            finally:
                dns_mod._REPLY_TIMES.pop(address, None)
        assert result.addresses == ("198.18.0.23",)

    srv.run(main(), limit=10)


def test_system_lookup_lists_each_address_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """getaddrinfo repeats an address (two /etc/hosts lines, several socket types): each is one answer."""
    infos = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("198.18.0.24", 0)),
             (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2001:db8::24", 0, 0, 0)),
             (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("198.18.0.24", 0))]

    def fake(*args: object, **kwargs: object) -> list[Any]:
        return infos

    async def fake_async(*args: object, **kwargs: object) -> list[Any]:
        return infos

    monkeypatch.setattr(dns_mod.socket, "getaddrinfo", fake)

    async def main() -> None:
        monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fake_async)  # under uvloop
        async with Trace() as trace:
            result = await lookup_system("dup.example", trace=trace)
        assert result.failure is None and result.addresses == ("198.18.0.24", "2001:db8::24")
        assert trace.queries[0]["answers"] == [{"answer_type": "A", "ipv4": "198.18.0.24", "ttl": None},
                                               {"answer_type": "AAAA", "ipv6": "2001:db8::24", "ttl": None}]

    srv.run(main())


def test_a_record_owned_by_the_root_keeps_its_owner_name() -> None:
    """An unrelated record owned by the root name is noted with x_owner ".", not with an empty owner."""
    query = make_query("www.example.com", "A", query_id=4243)
    reply = dns.message.make_response(query)
    reply.answer.append(dns.rrset.from_text(".", 60, "IN", "A", "10.6.6.7"))
    answers, addresses, _, failure, unrelated = interpret("A", reply)
    assert answers == [] and addresses == () and failure == F.DNS_NO_ANSWER
    assert unrelated == [{"answer_type": "A", "ipv4": "10.6.6.7", "ttl": 60, "x_owner": "."}]
