"""The lab's DNS servers: authoritative, public resolver, ISP resolver.

- The authoritative server answers any name deterministically (lab/farm.py).
- The public resolver (on the internet side) answers the same, as a
  recursive resolver with a warm cache would; it also serves DNS over TCP,
  DoT (853) and DoH (through the web farm, /dns-query).
- The ISP resolver (on the access router) recurses through the censor to the
  authoritative server for every query, and applies the profile's `poison`
  rules itself, logging each as ground truth. If its upstream stays silent it
  answers SERVFAIL, as real resolvers do.

Messages are parsed and built with dnspython (sans-IO); sockets are asyncio's.
Garbage in is ignored, never fatal.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
import ssl
import struct
from collections.abc import Awaitable, Callable

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from ..model.profile import Profile
from . import farm

log = logging.getLogger("tamperscope.lab.dns")
Answerer = Callable[[dns.message.Message, tuple[str, int]], Awaitable[dns.message.Message | None]]  # None: no answer
WireHandler = Callable[[bytes, tuple[str, int]], Awaitable[bytes | None]]  # the same on wire bytes
TCP_IDLE = 10.0  # s a DNS-over-TCP session may wait for its next query, or for the client to read an answer


def authoritative_answer(query: dns.message.Message, profile: Profile | None, *, recursive: bool) -> dns.message.Message:
    resp = dns.message.make_response(query)
    if recursive:
        resp.flags |= dns.flags.RA
    else:
        resp.flags |= dns.flags.AA
    if not query.question:
        resp.set_rcode(dns.rcode.FORMERR)
        return resp
    q = query.question[0]
    name = q.name.to_text(omit_final_dot=True).lower()
    if farm.is_nxdomain(name):
        resp.set_rcode(dns.rcode.NXDOMAIN)
        return resp
    if q.rdtype == dns.rdatatype.A and q.rdclass == dns.rdataclass.IN:
        ip = name if _is_ipv4(name) else farm.address_for(name, profile)
        resp.answer.append(dns.rrset.from_text(q.name, 300, "IN", "A", ip))
    elif q.rdtype == dns.rdatatype.HTTPS and q.rdclass == dns.rdataclass.IN and farm.publishes_ech(name):
        config = base64.b64encode(farm.ech_config_list()).decode("ascii")
        resp.answer.append(dns.rrset.from_text(q.name, 300, "IN", "HTTPS", f'1 . alpn="h2,http/1.1" ech="{config}"'))
    return resp


def _is_ipv4(s: str) -> bool:
    try:
        ipaddress.IPv4Address(s)
        return True
    except ValueError:
        return False


class _UDP(asyncio.DatagramProtocol):
    def __init__(self, handle: WireHandler) -> None:
        self.handle = handle
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        asyncio.ensure_future(self._reply(data, addr))

    async def _reply(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            out = await self.handle(data, addr)
        except Exception:  # a bad query must never stop the server
            log.exception("dns handler failed")
            return
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)


async def _tcp_session(handle: WireHandler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    peer = writer.get_extra_info("peername")
    try:
        while True:
            async with asyncio.timeout(TCP_IDLE):
                hdr = await reader.readexactly(2)
                (n,) = struct.unpack("!H", hdr)
                data = await reader.readexactly(n)
            out = await handle(data, peer)
            if out is None:
                break
            writer.write(struct.pack("!H", len(out)) + out)
            async with asyncio.timeout(TCP_IDLE):  # a client that sent queries and never read the answers
                await writer.drain()  # once held its session, and a file descriptor, for ever
    except (asyncio.IncompleteReadError, TimeoutError, ConnectionError, OSError):
        pass
    finally:
        writer.close()


def formerr(query: bytes) -> bytes:
    """A header-only FORMERR answer to the message `query` (at least 12 bytes): its id, opcode and RD kept."""
    qid, flags = struct.unpack_from("!HH", query, 0)
    return struct.pack("!HHHHHH", qid, 0x8000 | (flags & 0x7900) | dns.rcode.FORMERR, 0, 0, 0, 0)


class DNSServer:
    """Serves one answer function on UDP and TCP port 53 of one address (and DoT if given a TLS context)."""

    def __init__(self, address: str, answer: Answerer) -> None:
        self.address = address
        self.answer = answer

    async def handle_wire(self, data: bytes, peer: tuple[str, int]) -> bytes | None:
        if len(data) >= 12 and data[2] & 0x80:
            return None  # a response (QR): dnspython refuses to answer it, and a server that did could loop
        if len(data) >= 12 and struct.unpack_from("!H", data, 4)[0] > 1:
            return formerr(data)  # as real servers do: 13,000 questions once took 0.2 s and echoed 64 KB
        try:
            query = dns.message.from_wire(data)
        except (dns.exception.DNSException, ValueError, struct.error):
            return None
        resp = await self.answer(query, peer)
        return None if resp is None else resp.to_wire()

    async def start(self, tls: ssl.SSLContext | None = None) -> list[object]:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _UDP(self.handle_wire), local_addr=(self.address, 53))
        srv = await asyncio.start_server(lambda r, w: _tcp_session(self.handle_wire, r, w), self.address, 53)
        out: list[object] = [transport, srv]
        if tls is not None:
            out.append(await asyncio.start_server(lambda r, w: _tcp_session(self.handle_wire, r, w), self.address, 853,
                                                  ssl=tls))
        return out


def static_answerer(profile: Profile | None, *, recursive: bool) -> Answerer:
    async def answer(query: dns.message.Message, _peer: tuple[str, int]) -> dns.message.Message | None:
        return authoritative_answer(query, profile, recursive=recursive)

    return answer


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, fut: "asyncio.Future[bytes]", qid: int) -> None:
        self.fut = fut
        self.qid = qid

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) >= 2 and data[:2] == struct.pack("!H", self.qid) and not self.fut.done():
            self.fut.set_result(data)


MAX_UPSTREAM_QUERIES = 512  # queries the ISP resolver has in flight upstream at once, each with its own socket


def isp_answerer(profile: Profile, upstream: str, truth_write: Callable[..., None], timeout: float = 2.0) -> Answerer:
    """The ISP resolver: poison rules locally, else ask `upstream` through the censor.

    Each forwarded query holds a socket until its answer or `timeout`: past `MAX_UPSTREAM_QUERIES` at once (a
    flood, or a `dns drop` rule leaving the upstream silent) a query is answered SERVFAIL at once, where the
    sockets ran the server (and the web farm beside it) out of descriptors."""
    poison = [r for r in profile.rules_for("dns") if r.action == "poison"]
    inflight = [0]

    def servfail(query: dns.message.Message) -> dns.message.Message:
        resp = dns.message.make_response(query)
        resp.flags |= dns.flags.RA
        resp.set_rcode(dns.rcode.SERVFAIL)
        return resp

    async def answer(query: dns.message.Message, peer: tuple[str, int]) -> dns.message.Message | None:
        if not query.question:
            return None
        q = query.question[0]
        name = q.name.to_text(omit_final_dot=True).lower()
        for r in poison:
            if r.applies_to("egress") and r.matches_name(name) and r.asks(q.rdtype):
                truth_write(r, f"{peer[0]}:{peer[1]}", "isp-resolver", name)
                resp = dns.message.make_response(query)
                resp.flags |= dns.flags.RA
                if q.rdtype == dns.rdatatype.A:
                    resp.answer.append(dns.rrset.from_text(q.name, 300, "IN", "A", r.answer or "127.0.0.1"))
                return resp
        if inflight[0] >= MAX_UPSTREAM_QUERIES:
            return servfail(query)
        loop = asyncio.get_running_loop()
        fwd = dns.message.make_query(q.name, q.rdtype, q.rdclass)
        fut: asyncio.Future[bytes] = loop.create_future()
        inflight[0] += 1
        try:
            try:
                transport, _ = await loop.create_datagram_endpoint(lambda: _Upstream(fut, fwd.id),
                                                                   remote_addr=(upstream, 53))
            except OSError:  # out of descriptors all the same (other servers share the process)
                return servfail(query)
            try:
                transport.sendto(fwd.to_wire())
                async with asyncio.timeout(timeout):
                    data = await fut
                got = dns.message.from_wire(data)
            except (TimeoutError, dns.exception.DNSException, ValueError):
                return servfail(query)
            finally:
                transport.close()
        finally:
            inflight[0] -= 1
        resp = dns.message.make_response(query)
        resp.flags |= dns.flags.RA
        resp.set_rcode(got.rcode())
        resp.answer = got.answer
        return resp

    return answer
