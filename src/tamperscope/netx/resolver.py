"""Resolver specs and the one ``lookup`` that dispatches to every DNS engine.

A :class:`Resolver` is a frozen description (engine + address + options) that
nettests and configuration pass around; ``lookup`` runs one query type with it
and ``lookup_addresses`` runs A and AAAA together (one getaddrinfo call for the
system engine) under one transaction id, as OONI's records show them.
``resolve_fn`` adapts a Resolver to the connection strategy's ``resolve`` hook.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from tamperscope.model import failures as F
from tamperscope.netx import dns as dns_mod
from tamperscope.netx.classify import DNSError
from tamperscope.netx.connect import ResolveFn
from tamperscope.netx.doh import lookup_doh
from tamperscope.netx.trace import Trace

ENGINES = ("system", "udp", "tcp", "dot", "doh")
_DEFAULT_PORTS = {"udp": 53, "tcp": 53, "dot": 853}


@dataclass(frozen=True, slots=True)
class Resolver:
    """How to resolve: ``Resolver()`` is getaddrinfo; ``Resolver("udp", "1.1.1.1")`` a server."""

    engine: str = "system"  # one of ENGINES
    address: str = ""  # server IP (udp, tcp, dot) or URL (doh); "" for system
    port: int | None = None  # None: 53, or 853 for dot
    server_name: str | None = None  # DoT SNI and verified name; None: the address
    ca_bundle: str | None = None  # DoT/DoH trust store; None: the system's
    duplicate_window: float = dns_mod.DEFAULT_DUPLICATE_WINDOW  # udp: listen for late replies

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"unknown DNS engine {self.engine!r}; expected one of {ENGINES}")
        if self.engine != "system" and not self.address:
            raise ValueError(f"the {self.engine} engine needs an address")


SYSTEM = Resolver()


async def lookup(hostname: str, query_type: str, *, resolver: Resolver, trace: Trace,
                 timeout: float = dns_mod.DEFAULT_DNS_TIMEOUT, tags: Sequence[str] = (),
                 transaction_id: int | None = None) -> dns_mod.DNSResult:
    """One ``query_type`` lookup (``"A"``/``"AAAA"``; the system engine always does both)."""
    engine = resolver.engine
    port = resolver.port or _DEFAULT_PORTS.get(engine, 0)
    if engine == "system":
        return await dns_mod.lookup_system(hostname, trace=trace, timeout=timeout, tags=tags,
                                           transaction_id=transaction_id)
    if engine == "udp":
        return await dns_mod.lookup_udp(hostname, query_type, server=resolver.address, port=port,
                                        trace=trace, timeout=timeout, tags=tags,
                                        duplicate_window=resolver.duplicate_window,
                                        transaction_id=transaction_id)
    if engine == "tcp":
        return await dns_mod.lookup_tcp(hostname, query_type, server=resolver.address, port=port,
                                        trace=trace, timeout=timeout, tags=tags,
                                        transaction_id=transaction_id)
    if engine == "dot":
        return await dns_mod.lookup_dot(hostname, query_type, server=resolver.address, port=port,
                                        server_name=resolver.server_name,
                                        ca_bundle=resolver.ca_bundle, trace=trace,
                                        timeout=timeout, tags=tags, transaction_id=transaction_id)
    return await lookup_doh(hostname, query_type, url=resolver.address, trace=trace,
                            ca_bundle=resolver.ca_bundle, timeout=timeout, tags=tags,
                            transaction_id=transaction_id)


async def lookup_addresses(hostname: str, *, resolver: Resolver = SYSTEM, trace: Trace,
                           timeout: float = dns_mod.DEFAULT_DNS_TIMEOUT,
                           tags: Sequence[str] = (), transaction_id: int | None = None) -> dns_mod.DNSResult:
    """A and AAAA, merged: IPv4 first; the failure is A's when nothing was found."""
    if resolver.engine == "system":
        return await lookup(hostname, "ANY", resolver=resolver, trace=trace, timeout=timeout,
                            tags=tags, transaction_id=transaction_id)
    tid = trace.next_transaction_id() if transaction_id is None else transaction_id
    a, aaaa = await asyncio.gather(
        lookup(hostname, "A", resolver=resolver, trace=trace, timeout=timeout, tags=tags,
               transaction_id=tid),
        lookup(hostname, "AAAA", resolver=resolver, trace=trace, timeout=timeout, tags=tags,
               transaction_id=tid),
    )
    addresses = a.addresses + aaaa.addresses
    failure = None if addresses else (a.failure or aaaa.failure or F.DNS_NO_ANSWER)
    return dns_mod.DNSResult(hostname, "ANY", resolver.engine, addresses, failure, a.rcode, tid)


def resolve_fn(resolver: Resolver) -> ResolveFn:
    """``resolver`` as a ``DirectConnector.resolve`` hook (raises DNSError on failure)."""

    async def resolve(hostname: str, *, trace: Trace, timeout: float,
                      tags: Sequence[str] = ()) -> Sequence[str]:
        result = await lookup_addresses(hostname, resolver=resolver, trace=trace,
                                        timeout=timeout, tags=tags)
        if result.failure is not None:
            raise DNSError(result.failure, endpoint=hostname, rcode=result.rcode)
        return result.addresses

    return resolve
