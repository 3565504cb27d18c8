"""Connection strategies: how a URL becomes a traced TCP (+TLS) connection.

A :class:`Connector` is any ``async (url, *, trace, timeout, tags) -> Connection``.
HTTP redirects and DoH are written against this seam so the caller decides
which addresses are used (the system resolver, a chosen resolver, a fixed IP
for a control measurement, a lab address). :class:`DirectConnector` is the
ordinary one: resolve (a ``resolve`` hook, else getaddrinfo), then TCP to each
address in turn until one connects, then TLS with SNI for ``https``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from tamperscope.model import failures as F
from tamperscope.model.webparts import is_ip
from tamperscope.netx import dns as dns_mod
from tamperscope.netx import tcp as tcp_mod
from tamperscope.netx import tls as tls_mod
from tamperscope.netx.classify import DNSError, NetxError
from tamperscope.netx.http import Target
from tamperscope.netx.stream import Connection
from tamperscope.netx.trace import Trace

ResolveFn = Callable[..., Awaitable[Sequence[str]]]
"""``async resolve(hostname, *, trace, timeout, tags) -> [ip, ...]``; raises DNSError on failure."""


class Connector(Protocol):
    async def __call__(self, url: str, *, trace: Trace, timeout: float,
                       tags: Sequence[str] = ()) -> Connection: ...


async def system_resolve(hostname: str, *, trace: Trace, timeout: float,
                         tags: Sequence[str] = ()) -> Sequence[str]:
    """getaddrinfo, traced; raises :class:`DNSError` when it yields no address."""
    result = await dns_mod.lookup_system(hostname, trace=trace, timeout=timeout, tags=tags)
    if result.failure is not None:
        raise DNSError(result.failure, endpoint=hostname, rcode=result.rcode)
    return result.addresses


@dataclass(frozen=True, slots=True)
class DirectConnector:
    """Resolve, connect to the first address that accepts, and do TLS for ``https``."""

    resolve: ResolveFn | None = None  # None: the system resolver, traced
    ca_bundle: str | None = None  # None: the system trust store
    alpn: tuple[str, ...] = tls_mod.DEFAULT_ALPN
    verify: bool = True  # False: record no_tls_verify, check the chain afterwards
    connect_timeout: float = tcp_mod.DEFAULT_CONNECT_TIMEOUT  # per address
    max_addresses: int = 4  # addresses tried before giving up
    # Which addresses may be connected to (None: any). A service fetching for others (the control helper)
    # refuses its own machine's and network's: when none of a host's addresses is allowed, the connection
    # fails with dns_bogon_error, before any packet is sent to them.
    allow: Callable[[str], bool] | None = None
    extra_ca: str | None = None  # a CA (PEM text) trusted beside the trust store: one a service's apps pin

    async def __call__(self, url: str, *, trace: Trace, timeout: float,
                       tags: Sequence[str] = ()) -> Connection:
        try:
            target = Target.parse(url)
        except ValueError as exc:
            raise NetxError(F.unknown(str(exc)), operation=F.TOP_LEVEL, endpoint=url) from exc
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if is_ip(target.host):
            addresses: Sequence[str] = [target.host]
        else:
            resolve = self.resolve or system_resolve
            addresses = await resolve(target.host, trace=trace, timeout=timeout, tags=tags)
            if not addresses:
                raise DNSError(F.DNS_NO_ANSWER, endpoint=target.host)
        if self.allow is not None:
            addresses = [ip for ip in addresses if self.allow(ip)]
            if not addresses:
                raise DNSError(F.DNS_BOGON_ERROR, endpoint=target.host)
        last: NetxError | None = None
        for ip in addresses[: self.max_addresses]:
            remaining = deadline - loop.time()
            try:
                stream = await tcp_mod.connect(ip, target.port, trace=trace, tags=tags,
                                               timeout=max(0.0, min(self.connect_timeout, remaining)))
            except NetxError as exc:
                last = exc
                if exc.failure == F.GENERIC_TIMEOUT_ERROR and deadline - loop.time() <= 0:
                    break
                continue
            if target.scheme != "https":
                return stream
            # A TLS failure is the answer for this URL: do not hide it by trying other addresses.
            return await tls_mod.handshake(stream, server_name=target.host, trace=trace,
                                           alpn=self.alpn, ca_bundle=self.ca_bundle,
                                           verify=self.verify, tags=tags, extra_ca=self.extra_ca,
                                           timeout=max(0.0, deadline - loop.time()))
        assert last is not None
        raise last
