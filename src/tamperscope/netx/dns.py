"""Traced DNS lookups over getaddrinfo, UDP, TCP and DNS-over-TLS (DoH lives in ``doh.py``).

dnspython is used for its message codec only (``make_query`` / ``from_wire``);
every socket is ours. Each lookup appends one record to ``trace.queries`` and
returns a :class:`DNSResult`; network outcomes are data here, never exceptions
(only cancellation propagates).

UDP keeps listening after the first reply: on-path injectors race the real
resolver, so the first answer may be forged and the real one arrives later.
The first reply goes to ``queries``; every further reply to the same query
(duplicates, late answers) is appended to ``x_dns_duplicate_responses`` by a
collector the trace owns. It listens while the measurement goes on, up to the
lookup's timeout, and once the measurement has otherwise ended (the trace
drains) for what is left of its floor: ``duplicate_window`` seconds after the
first reply, or longer where this resolver's answers have been slower
(`duplicate_floor`: behind a satellite hop the real answer comes a second after
an injector's). Datagrams that do not parse or do not match the query are noted
in ``network_events`` and otherwise ignored.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import concurrent.futures
import copy
import functools
import os
import secrets
import socket
import struct
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import dns.message
import dns.name
import dns.rdatatype
import dns.rdtypes.svcbbase
import dns.rrset

from tamperscope.model import failures as F
from tamperscope.netx import tcp as tcp_mod
from tamperscope.netx import tls as tls_mod
from tamperscope.netx.classify import classify, failure_for_rcode
from tamperscope.netx.stream import Connection
from tamperscope.netx.trace import Record, Trace, dns_record, endpoint
from tamperscope.wire import dnswire

DEFAULT_DNS_TIMEOUT = 5.0
ICMP_GRACE = 0.05  # seconds to keep reading after an ICMP error (see _UDPProtocol.get)
DEFAULT_DUPLICATE_WINDOW = 0.3  # seconds at least to keep listening for injected/late UDP replies
# The floor grows with the resolver: this many times the median of its recent lookups' last replies' times
# (RECENT_LOOKUPS of them, for at most MAX_RESOLVERS addresses).
FLOOR_FACTOR = 1.5
RECENT_LOOKUPS = 32
MAX_RESOLVERS = 256
# Per UDP lookup: later replies kept in x_dns_duplicate_responses, and datagrams that are
# no reply noted in network_events. Injectors send a few; a flood would otherwise fill the
# measurement (tens of thousands of records a second).
MAX_UDP_EXTRA = 32
_A, _AAAA, _CNAME = dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.CNAME
_HTTPS = dns.rdatatype.HTTPS


@dataclass(frozen=True, slots=True)
class DNSResult:
    """What one lookup produced; the archival record is in the trace (and in ``record``)."""

    hostname: str
    query_type: str  # "A", "AAAA", or "ANY" for getaddrinfo and merged lookups
    engine: str  # "system", "udp", "tcp", "dot", "doh"
    addresses: tuple[str, ...]  # addresses of the asked type, in answer order
    failure: str | None  # OONI failure string, None on success
    rcode: int | None = None  # DNS rcode of the reply, None without one
    transaction_id: int = 0
    record: Record | None = field(default=None, compare=False, repr=False)


@functools.lru_cache(maxsize=4096)
def _template(hostname: str, query_type: str) -> tuple[dns.message.Message, bytes]:
    # Building a query (name parsing, rendering) costs more than the rest of a UDP
    # lookup; measurements ask for the same names again and again, so render once.
    query = dns.message.make_query(hostname, query_type)
    return query, query.to_wire()


def build_query(hostname: str, query_type: str, *,
                query_id: int | None = None) -> tuple[dns.message.Message, bytes]:
    """A recursive query and its wire form (random id unless given). Never mutate the result."""
    template, wire = _template(hostname, query_type)
    query = copy.copy(template)
    query.id = secrets.randbits(16) if query_id is None else query_id
    return query, struct.pack("!H", query.id) + wire[2:]


_QTYPE_CODES = {"A": dnswire.QTYPE_A, "AAAA": dnswire.QTYPE_AAAA}


class Expected:
    """What a reply to one UDP query must look like; `reply()` parses a datagram that is one.

    For plain names the query is encoded, and a datagram checked (id, QR bit, opcode,
    question), without dnspython: only a datagram that answers is parsed by it.
    """

    __slots__ = ("query", "qid", "name", "qtype")

    def __init__(self, query: dns.message.Message | None, qid: int, name: str, qtype: int) -> None:
        self.query, self.qid, self.name, self.qtype = query, qid, name, qtype

    def reply(self, wire: bytes) -> dns.message.Message | dnswire.Answers | None:
        if self.query is not None:
            return parse_reply(self.query, wire)
        q = dnswire.parse_question(wire)
        if (q is None or not q.is_response or q.qid != self.qid or q.flags & 0x7800 or q.qtype != self.qtype
                or q.qclass != 1 or q.name != self.name):
            return None
        return dnswire.parse_answers(wire) or _from_wire(wire)


def udp_query(hostname: str, query_type: str) -> tuple[Expected, bytes]:
    """A query with a random id, and what its reply must look like."""
    qid = secrets.randbits(16)
    qtype = _QTYPE_CODES.get(query_type)
    wire = dnswire.encode_query(hostname, qtype, qid) if qtype is not None else None
    if wire is None:
        query, wire = build_query(hostname, query_type, query_id=qid)
        return Expected(query, qid, "", 0), wire
    return Expected(None, qid, hostname.rstrip(".").lower(), qtype), wire  # type: ignore[arg-type]


def make_query(hostname: str, query_type: str, *, query_id: int | None = None) -> dns.message.Message:
    """A recursive query for ``hostname``/``query_type`` (random id unless given)."""
    return build_query(hostname, query_type, query_id=query_id)[0]


def _from_wire(wire: bytes) -> dns.message.Message | None:
    try:
        return dns.message.from_wire(wire)
    except Exception:  # hostile input: any decode error means "not a reply"
        return None


def parse_reply(query: dns.message.Message, wire: bytes) -> dns.message.Message | None:
    """The reply in ``wire`` if it parses and answers ``query``, else ``None``."""
    reply = _from_wire(wire)
    if reply is None:
        return None
    try:
        return reply if query.is_response(reply) else None
    except Exception:
        return None


MAX_CNAME_HOPS = 16  # a CNAME chain followed past this (or round a loop) ends there
MAX_UNRELATED = 32  # records for names off the CNAME chain kept as evidence, per reply
_PLAIN_NAME = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_*.")
K = TypeVar("K", bound=Hashable)


def _key(name: str) -> str:
    """A plain name as the fast path compares it: lower case, absolute (its names all are)."""
    name = name.lower()
    return name if name.endswith(".") else name + "."


def _labels_key(name: dns.name.Name) -> tuple[bytes, ...]:
    """A name as the dnspython path compares it: its labels in lower case (ASCII only, as
    DNS compares names), exact even for a label with a dot in it."""
    return tuple(map(bytes.lower, name.labels))


@functools.lru_cache(maxsize=1024)
def _qname_key(hostname: str) -> str:
    """The fast path's key of the name a query for ``hostname`` asks about."""
    if _PLAIN_NAME.issuperset(hostname):
        return _key(hostname)
    try:  # IDNA and escapes as ``make_query`` encodes them
        return _key(dns.name.from_text(hostname).to_text())
    except Exception:  # no query could be built for it either
        return _key(hostname)


@functools.lru_cache(maxsize=1024)
def _qname_labels(hostname: str) -> tuple[bytes, ...] | None:
    """The dnspython path's key of the name a query for ``hostname`` asks about."""
    try:
        return _labels_key(dns.name.from_text(hostname))
    except Exception:  # no query could be built for it either: nothing answers
        return None


class _Chain(Generic[K]):
    """The names (keys) on the CNAME chain from the asked one, at most MAX_CNAME_HOPS on.

    Grown while a reply is read, since CNAMEs usually come in chain order; the first owner
    off it has the chain worked out once from all the reply's CNAMEs, in any order (then it
    no longer grows). Either way a loop ends it.
    """

    __slots__ = ("names", "tip", "hops", "cnames")

    def __init__(self, qkey: K | None, cnames: Callable[[], dict[K, K]]) -> None:
        self.names: set[K | None] = {qkey}
        self.tip: K | None = qkey
        self.hops = 0
        self.cnames: Callable[[], dict[K, K]] | None = cnames

    def __contains__(self, key: K) -> bool:
        if key in self.names:
            return True
        if self.cnames is None:
            return False
        cnames, self.cnames, name = self.cnames(), None, self.tip
        self.tip = None  # complete: `follow` is done
        while name is not None and self.hops < MAX_CNAME_HOPS:
            name = cnames.get(name)
            if name is None or name in self.names:
                break
            self.names.add(name)
            self.hops += 1
        return key in self.names

    def follow(self, owner: K, target: K) -> None:
        """A CNAME of a name on the chain: the chain goes on to its target."""
        if owner != self.tip:  # (the chain's owners before the tip have had theirs)
            return
        if self.hops >= MAX_CNAME_HOPS or target in self.names:
            self.tip = None
            return
        self.names.add(target)
        self.tip = target
        self.hops += 1


def _answer(rdtype: int, ttl: int, value: str) -> Record:
    if rdtype == _A:
        return {"answer_type": "A", "ipv4": value, "ttl": ttl}
    if rdtype == _AAAA:
        return {"answer_type": "AAAA", "ipv6": value, "ttl": ttl}
    return {"answer_type": "CNAME", "hostname": value, "ttl": ttl}


def _https_answer(rr: dns.rdtypes.svcbbase.SVCBBase, ttl: int) -> Record:
    """An HTTPS record (RFC 9460) as an answer: OONI's shape, its parameters as ``x_`` keys (the ECH
    config list in base64, as the record's presentation format writes it)."""
    out: Record = {"answer_type": "HTTPS", "hostname": rr.target.to_text(), "ttl": ttl, "x_priority": rr.priority}
    alpn = rr.params.get(dns.rdtypes.svcbbase.ParamKey.ALPN)
    if alpn is not None:
        out["x_alpn"] = [i.decode("ascii", "replace") for i in alpn.ids]
    ech = rr.params.get(dns.rdtypes.svcbbase.ParamKey.ECH)
    if ech is not None:
        out["x_ech"] = base64.b64encode(ech.ech).decode("ascii")
    return out


def interpret(query_type: str, reply: dns.message.Message | dnswire.Answers, qname: str | None = None
              ) -> tuple[list[Record], tuple[str, ...], int, str | None, list[Record]]:
    """``(answers, addresses, rcode, failure, unrelated)`` of a reply to a query for ``qname``
    (default: the reply's question), in OONI's answer shape. An HTTPS query's records are answers
    (`_https_answer`) and it has no addresses.

    As a stub resolver does, only records owned by ``qname`` or a name on the CNAME chain
    from it answer: those are ``answers`` (and, of the asked type, ``addresses``). Records
    owned by any other name (an injector's or a broken server's) are evidence only:
    ``unrelated`` holds the first MAX_UNRELATED, as answers with their ``x_owner``.
    Names compare as DNS compares them (ASCII case-insensitive, trailing dot or not).
    """
    want = _A if query_type == "A" else _HTTPS if query_type == "HTTPS" else _AAAA
    answers: list[Record] = []
    addresses: list[str] = []
    unrelated: list[Record] = []
    if isinstance(reply, dnswire.Answers):
        _read_wire(reply, _qname_key(reply.qname if qname is None else qname), want,
                   answers, addresses, unrelated)
        return _outcome(answers, addresses, reply.rcode, unrelated)
    if qname is not None:
        asked = _qname_labels(qname)
    else:  # no question, no name to answer: every record is unrelated
        asked = _labels_key(reply.question[0].name) if reply.question else None
    _read_message(reply, asked, want, answers, addresses, unrelated)
    if want == _HTTPS and not addresses and any(a["answer_type"] == "HTTPS" for a in answers):
        return answers, (), reply.rcode(), failure_for_rcode(reply.rcode()), unrelated
    return _outcome(answers, addresses, reply.rcode(), unrelated)


def _wire_cnames(records: tuple[tuple[int, int, str, str], ...]) -> dict[str, str]:
    return {o.lower(): v.lower() for t, _, v, o in records if t == _CNAME}


def _read_wire(reply: dnswire.Answers, qkey: str, want: int, answers: list[Record],
               addresses: list[str], unrelated: list[Record]) -> None:
    records = reply.records
    chain: _Chain[str] | None = None  # none needed while every owner is the question
    owner_seen: str | None = None
    okey, related = qkey, True
    for rdtype, ttl, value, owner in records:
        if owner is not owner_seen:  # one string per RRset: one check per RRset
            owner_seen = owner
            okey = owner.lower()  # == _key(owner): dnswire's names are absolute
            if okey != qkey:
                if chain is None:
                    chain = _Chain(qkey, functools.partial(_wire_cnames, records))
                related = okey in chain
            else:
                related = True
        if not related:
            if len(unrelated) < MAX_UNRELATED:
                unrelated.append({**_answer(rdtype, ttl, value), "x_owner": _owner_text(owner)})
        elif rdtype == _A:
            answers.append({"answer_type": "A", "ipv4": value, "ttl": ttl})
            if want == _A:
                addresses.append(value)
        elif rdtype == _AAAA:
            answers.append({"answer_type": "AAAA", "ipv6": value, "ttl": ttl})
            if want == _AAAA:
                addresses.append(value)
        else:
            answers.append({"answer_type": "CNAME", "hostname": value, "ttl": ttl})
            if chain is None:
                chain = _Chain(qkey, functools.partial(_wire_cnames, records))
            chain.follow(okey, value.lower())


def _message_cnames(rrsets: list[dns.rrset.RRset]) -> dict[tuple[bytes, ...], tuple[bytes, ...]]:
    return {_labels_key(r.name): _labels_key(r[0].target) for r in rrsets if r.rdtype == _CNAME and len(r)}


def _read_message(reply: dns.message.Message, asked: tuple[bytes, ...] | None, want: int,
                  answers: list[Record], addresses: list[str], unrelated: list[Record]) -> None:
    rrsets = reply.answer
    chain: _Chain[tuple[bytes, ...]] | None = None  # none needed while every owner is the question
    for rrset in rrsets:
        rdtype = rrset.rdtype
        if rdtype != _A and rdtype != _AAAA and rdtype != _CNAME and not (rdtype == want == _HTTPS):
            continue
        name = _labels_key(rrset.name)
        if name != asked:
            if chain is None:
                chain = _Chain(asked, functools.partial(_message_cnames, rrsets))
            if name not in chain:
                owner = _owner_text(rrset.name.to_text())
                for rr in rrset:
                    if len(unrelated) >= MAX_UNRELATED:
                        break
                    if rdtype == _HTTPS:
                        unrelated.append({**_https_answer(rr, rrset.ttl), "x_owner": owner})
                        continue
                    value = rr.target.to_text() if rdtype == _CNAME else rr.address
                    unrelated.append({**_answer(rdtype, rrset.ttl, value), "x_owner": owner})
                continue
        for rr in rrset:
            if rdtype == _HTTPS:
                answers.append(_https_answer(rr, rrset.ttl))
                continue
            if rdtype == _A:
                answers.append({"answer_type": "A", "ipv4": rr.address, "ttl": rrset.ttl})
            elif rdtype == _AAAA:
                answers.append({"answer_type": "AAAA", "ipv6": rr.address, "ttl": rrset.ttl})
            else:
                answers.append({"answer_type": "CNAME", "hostname": rr.target.to_text(), "ttl": rrset.ttl})
                if chain is None:
                    chain = _Chain(asked, functools.partial(_message_cnames, rrsets))
                chain.follow(name, _labels_key(rr.target))
                continue
            if rdtype == want:
                addresses.append(rr.address)


def _owner_text(name: str) -> str:
    """An owner name as ``x_owner`` gives it: as received, without the trailing dot."""
    return name[:-1] if len(name) > 1 and name.endswith(".") else name


def _outcome(answers: list[Record], addresses: list[str], rcode: int, unrelated: list[Record]
             ) -> tuple[list[Record], tuple[str, ...], int, str | None, list[Record]]:
    failure = failure_for_rcode(rcode)
    if failure is None and not addresses:
        failure = F.DNS_NO_ANSWER
    return answers, tuple(addresses), rcode, failure, unrelated


def _with_unrelated(record: Record, unrelated: list[Record]) -> Record:
    """``record`` with ``x_unrelated_answers`` when a reply had records for other names."""
    if unrelated:
        record["x_unrelated_answers"] = unrelated
    return record


def finish_lookup(trace: Trace, *, engine: str, hostname: str, query_type: str,
                  resolver_address: str, t0: float, tid: int, tags: Sequence[str],
                  reply: dns.message.Message | dnswire.Answers | None, wire: bytes | None,
                  failure: str | None) -> DNSResult:
    """Append the ``queries`` record of a finished lookup and return its result."""
    answers: list[Record] | None = None
    addresses: tuple[str, ...] = ()
    rcode: int | None = None
    unrelated: list[Record] = []
    if reply is not None:
        found, addresses, rcode, failure, unrelated = interpret(query_type, reply, hostname)
        answers = found or None
    record = _with_unrelated(dns_record(
        engine=engine, hostname=hostname, query_type=query_type,
        resolver_address=resolver_address, answers=answers, failure=failure,
        t0=t0, t=trace.now(), transaction_id=tid, rcode=rcode,
        raw_response=wire, tags=tags), unrelated)
    trace.queries.append(record)
    return DNSResult(hostname, query_type, engine, addresses, failure, rcode, tid, record)


# --- getaddrinfo ------------------------------------------------------------------------

_GAI_POOL: concurrent.futures.ThreadPoolExecutor | None = None
GAI_THREADS = 64  # getaddrinfo blocks a thread for a whole lookup; a probe runs dozens at once


def _gai_pool() -> concurrent.futures.ThreadPoolExecutor:
    """A thread pool of its own for getaddrinfo (loops' default pools have 4-6 threads)."""
    global _GAI_POOL
    if _GAI_POOL is None:
        _GAI_POOL = concurrent.futures.ThreadPoolExecutor(GAI_THREADS, thread_name_prefix="getaddrinfo")
    return _GAI_POOL


def _libuv_pool_is_wide(loop: asyncio.AbstractEventLoop) -> bool:
    """uvloop resolves in libuv's thread pool: use it when it was sized for a probe's dozens of
    lookups at once (``UV_THREADPOOL_SIZE``, read when the pool starts; see `wide_libuv_pool`)."""
    if not type(loop).__module__.startswith("uvloop"):
        return False
    try:
        return int(os.environ.get("UV_THREADPOOL_SIZE", "4")) >= 16
    except ValueError:
        return False


def wide_libuv_pool() -> None:
    """Size libuv's thread pool for getaddrinfo (call before the first uvloop loop starts)."""
    os.environ.setdefault("UV_THREADPOOL_SIZE", str(GAI_THREADS))


async def lookup_system(hostname: str, *, trace: Trace, timeout: float = DEFAULT_DNS_TIMEOUT,
                        tags: Sequence[str] = (), transaction_id: int | None = None) -> DNSResult:
    """The system resolver (``getaddrinfo``): one ``ANY`` record with A and AAAA answers."""
    tid = trace.next_transaction_id() if transaction_id is None else transaction_id
    loop = asyncio.get_running_loop()
    t0 = trace.now()
    answers: list[Record] = []
    addresses: list[str] = []
    failure: str | None = None
    try:
        async with asyncio.timeout(timeout):
            if _libuv_pool_is_wide(loop):  # C threads, no GIL hand-offs: about half the CPU
                infos = await loop.getaddrinfo(hostname, None, type=socket.SOCK_STREAM)
            else:
                infos = await loop.run_in_executor(_gai_pool(), functools.partial(
                    socket.getaddrinfo, hostname, None, type=socket.SOCK_STREAM))
        for family, _, _, _, sockaddr in infos:
            ip = str(sockaddr[0])
            if ip in addresses:
                continue
            addresses.append(ip)
            if family == socket.AF_INET6:
                answers.append({"answer_type": "AAAA", "ipv6": ip, "ttl": None})
            else:
                answers.append({"answer_type": "A", "ipv4": ip, "ttl": None})
        if not addresses:
            failure = F.DNS_NO_ANSWER
    except BaseException as exc:
        failure = classify(exc, operation=F.RESOLVE)
        if not isinstance(exc, Exception):
            _system_record(trace, hostname, None, failure, t0, tid, tags)
            raise
    record = _system_record(trace, hostname, answers or None, failure, t0, tid, tags)
    return DNSResult(hostname, "ANY", "system", tuple(addresses), failure, None, tid, record)


def _system_record(trace: Trace, hostname: str, answers: list[Record] | None, failure: str | None,
                   t0: float, tid: int, tags: Sequence[str]) -> Record:
    record = dns_record(engine="system", hostname=hostname, query_type="ANY", resolver_address="",
                        answers=answers, failure=failure, t0=t0, t=trace.now(),
                        transaction_id=tid, tags=tags)
    trace.queries.append(record)
    return record


# --- UDP -------------------------------------------------------------------------------------

async def connected_udp(ip: str, port: int) -> tuple[asyncio.DatagramTransport, _UDPProtocol]:
    """A UDP socket connected to ``ip:port`` (numeric: no getaddrinfo thread pool, see stream.open), as a
    transport and the protocol whose ``get`` returns each datagram from there, or raises an ICMP error."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.connect((ip, port))
        return await loop.create_datagram_endpoint(lambda: _UDPProtocol(loop), sock=sock)
    except BaseException:
        sock.close()
        raise


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.datagrams: collections.deque[bytes] = collections.deque()
        self.error: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.loop = loop
        self.grace_until: float | None = None
        self.ignored = 0  # datagrams that were no reply

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.datagrams.append(data)
        self._wake()

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable
        self.error = exc
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.error is None:
            self.error = exc or ConnectionAbortedError("socket closed")
        self._wake()

    def _wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> bytes:
        """The next datagram. An ICMP error ends the wait only after a short grace period:
        Linux reports a pending ICMP error before datagrams already queued, and an
        injector's forged answer to a silent address is queued just before the
        port-unreachable that the real destination sends back."""
        if self.datagrams:
            # Yield even so: a flood of replies that are slow to parse (64 KiB each) would
            # otherwise be worked through in one go, past the caller's deadline.
            await asyncio.sleep(0)
        while not self.datagrams:
            if self.error is not None:
                if isinstance(self.error, ConnectionAbortedError):
                    raise self.error
                if self.grace_until is None:
                    self.grace_until = self.loop.time() + ICMP_GRACE
                left = self.grace_until - self.loop.time()
                if left <= 0:
                    raise self.error
                self.waiter = self.loop.create_future()
                try:
                    async with asyncio.timeout(left):
                        await self.waiter
                except TimeoutError:
                    # A loop that stalled past the grace runs the datagram's arrival and the timeout in one turn:
                    # the datagram is in, and is read (the error comes at the next call)
                    if not self.datagrams:
                        raise self.error from None
                continue
            self.waiter = self.loop.create_future()
            await self.waiter
        return self.datagrams.popleft()


async def lookup_udp(hostname: str, query_type: str = "A", *, server: str, port: int = 53,
                     trace: Trace, timeout: float = DEFAULT_DNS_TIMEOUT,
                     duplicate_window: float = DEFAULT_DUPLICATE_WINDOW,
                     tags: Sequence[str] = (), transaction_id: int | None = None) -> DNSResult:
    """One query over UDP to ``server:port``; later replies go to ``x_dns_duplicate_responses``."""
    tid = trace.next_transaction_id() if transaction_id is None else transaction_id
    address = endpoint(server, port)
    t0 = trace.now()
    transport: asyncio.DatagramTransport | None = None
    reply = wire = None
    try:
        query, payload = udp_query(hostname, query_type)
        async with asyncio.timeout(timeout):
            transport, proto = await connected_udp(server, port)
            transport.sendto(payload)
            if trace.record_io:
                trace.add_network_event(F.WRITE_TO, t0=t0, transaction_id=tid, address=address,
                                        proto="udp", num_bytes=len(payload))
            while reply is None:
                wire = await proto.get()
                reply = _check(trace, proto, query, wire, address, tid)
    except BaseException as exc:
        if transport is not None:
            transport.close()
        failure = classify(exc, operation=F.RESOLVE)
        result = finish_lookup(trace, engine="udp", hostname=hostname, query_type=query_type,
                         resolver_address=address, t0=t0, tid=tid, tags=tags, reply=None,
                         wire=None, failure=failure)
        if not isinstance(exc, Exception):
            raise
        return result
    result = finish_lookup(trace, engine="udp", hostname=hostname, query_type=query_type,
                     resolver_address=address, t0=t0, tid=tid, tags=tags, reply=reply,
                     wire=wire, failure=None)
    first = trace.now() - t0
    if duplicate_window > 0:
        floor = min(duplicate_floor(address, duplicate_window), max(timeout, duplicate_window))
        trace.spawn(_collect_duplicates(trace, transport, proto, query, hostname, query_type,
                                        address, t0, tid, tags, floor, max(floor, timeout - first), first))
    else:
        _note_reply_time(address, first)
        transport.close()
    return result


_REPLY_TIMES: dict[str, collections.deque[float]] = {}  # resolver address: its recent lookups' last replies' times


def _note_reply_time(address: str, seconds: float) -> None:
    """How long the last reply to one lookup from ``address`` took, after the query was sent."""
    times = _REPLY_TIMES.get(address)
    if times is None:
        if len(_REPLY_TIMES) >= MAX_RESOLVERS:
            _REPLY_TIMES.pop(next(iter(_REPLY_TIMES)))
        times = _REPLY_TIMES[address] = collections.deque(maxlen=RECENT_LOOKUPS)
    times.append(seconds)


def duplicate_floor(address: str, window: float) -> float:
    """How long at least to listen after the first reply from ``address``: ``window``, or `FLOOR_FACTOR`
    times the median time of its recent lookups' last replies when that is longer.

    An injector near the probe answers at once and the resolver a round trip later: the last reply's time
    is the round trip's, and so is most lookups' only reply (a censor injects for some names only), so
    the median follows the resolver's round trip even where some names are forged, and a slow recursion
    now and then does not move it."""
    times = _REPLY_TIMES.get(address)
    if not times:
        return window
    ordered = sorted(times)
    return max(window, FLOOR_FACTOR * ordered[len(ordered) // 2])


def _check(trace: Trace, proto: _UDPProtocol, query: Expected, wire: bytes, address: str,
           tid: int) -> dns.message.Message | dnswire.Answers | None:
    """Parse a datagram; note it in network_events (of those that are no reply, the first
    MAX_UDP_EXTRA); the reply if it answers ``query``."""
    reply = query.reply(wire)
    if reply is None:
        proto.ignored += 1
    if (trace.record_io or reply is None) and (reply is not None or proto.ignored <= MAX_UDP_EXTRA):
        extra = None if reply is not None else {"x_dns_ignored": True}
        now = trace.now()
        trace.add_network_event(F.READ_FROM, t0=now, transaction_id=tid, address=address,
                                proto="udp", num_bytes=len(wire), extra=extra)
    return reply


async def _collect_duplicates(trace: Trace, transport: asyncio.DatagramTransport,
                              proto: _UDPProtocol, query: Expected, hostname: str,
                              query_type: str, address: str, t0: float, tid: int,
                              tags: Sequence[str], floor: float, cap: float, first: float) -> None:
    """Further replies, for ``cap`` seconds at most; once the trace drains, for what is left of ``floor``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    last = first  # when the last reply came, after the query was sent
    listening = True

    try:
        async with asyncio.timeout(cap) as scope:
            def wind_down() -> None:
                when = scope.when()
                if listening and when is not None:
                    scope.reschedule(min(when, max(start + floor, loop.time())))

            trace.on_drain(wind_down)
            kept = 0
            while kept < MAX_UDP_EXTRA:
                wire = await proto.get()
                reply = _check(trace, proto, query, wire, address, tid)
                if reply is None:
                    continue
                kept += 1
                last = trace.now() - t0
                answers, _, rcode, failure, unrelated = interpret(query_type, reply, hostname)
                trace.x_dns_duplicate_responses.append(_with_unrelated(dns_record(
                    engine="udp", hostname=hostname, query_type=query_type,
                    resolver_address=address, answers=answers or None, failure=failure, t0=t0,
                    t=trace.now(), transaction_id=tid, rcode=rcode, raw_response=wire, tags=tags),
                    unrelated))
    except (TimeoutError, OSError):
        pass
    finally:
        listening = False
        transport.close()
    _note_reply_time(address, last)


# --- TCP and DNS-over-TLS ----------------------------------------------------------------------

async def exchange_stream(conn: Connection, payload: bytes) -> bytes:
    """Send one length-prefixed DNS message (RFC 1035 4.2.2) and read one back."""
    await conn.write(struct.pack("!H", len(payload)) + payload)
    head = await _read_exact(conn, 2)
    return await _read_exact(conn, struct.unpack("!H", head)[0])


async def _read_exact(conn: Connection, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        data = await conn.read(size - len(chunks))
        if not data:
            raise EOFError("EOF before the end of the DNS message")
        chunks += data
    return bytes(chunks)


async def lookup_tcp(hostname: str, query_type: str = "A", *, server: str, port: int = 53,
                     trace: Trace, timeout: float = DEFAULT_DNS_TIMEOUT,
                     record_transport: bool = False, tags: Sequence[str] = (),
                     transaction_id: int | None = None) -> DNSResult:
    """One query over TCP to ``server:port``."""
    return await _lookup_stream("tcp", hostname, query_type, server=server, port=port,
                                trace=trace, timeout=timeout, record_transport=record_transport,
                                tags=tags, transaction_id=transaction_id)


async def lookup_dot(hostname: str, query_type: str = "A", *, server: str, port: int = 853,
                     server_name: str | None = None, ca_bundle: str | None = None,
                     trace: Trace, timeout: float = DEFAULT_DNS_TIMEOUT,
                     record_transport: bool = False, tags: Sequence[str] = (),
                     transaction_id: int | None = None) -> DNSResult:
    """One query over DNS-over-TLS (RFC 7858); SNI and verification use ``server_name`` or ``server``."""
    return await _lookup_stream("dot", hostname, query_type, server=server, port=port,
                                trace=trace, timeout=timeout, record_transport=record_transport,
                                tags=tags, transaction_id=transaction_id,
                                server_name=server_name or server, ca_bundle=ca_bundle)


async def _lookup_stream(engine: str, hostname: str, query_type: str, *, server: str, port: int,
                         trace: Trace, timeout: float, record_transport: bool,
                         tags: Sequence[str], transaction_id: int | None,
                         server_name: str | None = None, ca_bundle: str | None = None) -> DNSResult:
    tid = trace.next_transaction_id() if transaction_id is None else transaction_id
    address = endpoint(server, port)
    sub = trace if record_transport else Trace(record_io=False)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    t0 = trace.now()
    reply = wire = None
    failure: str | None = None
    try:
        query, payload = build_query(hostname, query_type)
        stream = await tcp_mod.connect(server, port, trace=sub, timeout=timeout, tags=tags,
                                       transaction_id=tid)
        conn: Connection = stream
        try:
            if engine == "dot":
                conn = await tls_mod.handshake(stream, server_name=server_name, alpn=("dot",),
                                               ca_bundle=ca_bundle, trace=sub, tags=tags,
                                               timeout=max(0.0, deadline - loop.time()))
            async with asyncio.timeout_at(deadline):
                wire = await exchange_stream(conn, payload)
        finally:
            await conn.aclose()
        reply = parse_reply(query, wire)
        if reply is None:
            failure = F.DNS_SERVER_MISBEHAVING
    except BaseException as exc:
        failure = classify(exc, operation=F.RESOLVE)
        if not isinstance(exc, Exception):
            finish_lookup(trace, engine=engine, hostname=hostname, query_type=query_type,
                    resolver_address=address, t0=t0, tid=tid, tags=tags, reply=None,
                    wire=None, failure=failure)
            raise
    return finish_lookup(trace, engine=engine, hostname=hostname, query_type=query_type,
                   resolver_address=address, t0=t0, tid=tid, tags=tags, reply=reply,
                   wire=wire, failure=failure)

