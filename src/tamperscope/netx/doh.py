"""Traced DNS-over-HTTPS lookups (RFC 8484, POST ``application/dns-message``).

The HTTP exchange runs on our own client (``http.round_trip``) over a
connection from a :class:`~tamperscope.netx.connect.Connector`, so the caller
decides how the DoH server itself is reached (system DNS, a bootstrap IP).
Only the ``queries`` record is kept by default: the transport's TCP/TLS/HTTP
records would otherwise mix with the measured site's (``requests[0]`` must stay
the site's final response); ``record_transport=True`` keeps them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from tamperscope.model import failures as F
from tamperscope.netx.classify import classify
from tamperscope.netx.connect import Connector, DirectConnector
from tamperscope.netx.dns import (
    DEFAULT_DNS_TIMEOUT,
    DNSResult,
    build_query,
    finish_lookup,
    parse_reply,
)
from tamperscope.netx.http import round_trip
from tamperscope.netx.trace import Trace

_CONTENT_TYPE = "application/dns-message"


async def lookup_doh(hostname: str, query_type: str = "A", *, url: str, trace: Trace,
                     connector: Connector | None = None, ca_bundle: str | None = None,
                     timeout: float = DEFAULT_DNS_TIMEOUT, record_transport: bool = False,
                     tags: Sequence[str] = (), transaction_id: int | None = None) -> DNSResult:
    """One query to the DoH endpoint ``url``; the record's ``resolver_address`` is the URL."""
    tid = trace.next_transaction_id() if transaction_id is None else transaction_id
    sub = trace if record_transport else Trace(record_io=False)
    connector = connector or DirectConnector(ca_bundle=ca_bundle, alpn=("h2", "http/1.1"))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    t0 = trace.now()
    reply = wire = None
    failure: str | None = None
    try:
        query, payload = build_query(hostname, query_type, query_id=0)  # RFC 8484 4.1: id 0
        conn = await connector(url, trace=sub, timeout=timeout, tags=tags)
        try:
            response = await round_trip(
                conn, url, trace=sub, method="POST", body=payload,
                headers=(("Accept", _CONTENT_TYPE), ("Content-Type", _CONTENT_TYPE)),
                timeout=max(0.0, deadline - loop.time()), record=record_transport, tags=tags)
        finally:
            await conn.aclose()
        if response.status != 200:
            failure = F.unknown(f"doh: server returned status {response.status}")
        elif response.body_is_truncated:
            failure = F.DNS_SERVER_MISBEHAVING
        else:
            wire = response.body
            reply = parse_reply(query, wire)
            if reply is None:
                failure = F.DNS_SERVER_MISBEHAVING
    except BaseException as exc:
        failure = classify(exc, operation=F.RESOLVE)
        if not isinstance(exc, Exception):
            finish_lookup(trace, engine="doh", hostname=hostname, query_type=query_type,
                    resolver_address=url, t0=t0, tid=tid, tags=tags, reply=None, wire=None,
                    failure=failure)
            raise
    return finish_lookup(trace, engine="doh", hostname=hostname, query_type=query_type,
                   resolver_address=url, t0=t0, tid=tid, tags=tags, reply=reply, wire=wire,
                   failure=failure)
