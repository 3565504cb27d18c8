"""netx: the only code that opens sockets. Every operation becomes an OONI archival record.

Layers below: ``model`` (failure strings) and third-party codecs (dnspython's
message module, h11, h2, OpenSSL via ``ssl``). Layers above (nettests, helper,
probe) use the names re-exported here:

- :class:`Trace` collects ``queries``, ``x_dns_duplicate_responses``,
  ``tcp_connect``, ``tls_handshakes``, ``requests``, ``network_events``;
- DNS: ``lookup_system``/``lookup_udp``/``lookup_tcp``/``lookup_dot``/``lookup_doh``,
  or ``lookup``/``lookup_addresses`` with a :class:`Resolver` spec;
- ``tcp_connect`` → ``tls_handshake`` → ``round_trip``, or ``fetch`` for all of it
  with redirects; :class:`DirectConnector` is the default connection strategy;
- ``classify`` and the :class:`NetxError` tree.
"""

from __future__ import annotations

from tamperscope.netx.classify import DNSError, HTTPError, NetxError, TLSError, classify
from tamperscope.netx.connect import Connector, DirectConnector
from tamperscope.netx.dns import DNSResult, lookup_dot, lookup_system, lookup_tcp, lookup_udp
from tamperscope.netx.doh import lookup_doh
from tamperscope.netx.fetch import FetchResult, fetch
from tamperscope.netx.http import HTTPResponse, Limits, round_trip
from tamperscope.netx.resolver import SYSTEM, Resolver, lookup, lookup_addresses
from tamperscope.netx.stream import Connection, TCPStream
from tamperscope.netx.tcp import connect as tcp_connect
from tamperscope.netx.tls import TLSStream, client_context
from tamperscope.netx.tls import handshake as tls_handshake
from tamperscope.netx.trace import Trace

__all__ = [
    "SYSTEM", "Connection", "Connector", "DNSError", "DNSResult", "DirectConnector",
    "FetchResult", "HTTPError", "HTTPResponse", "Limits", "NetxError", "Resolver", "TCPStream",
    "TLSError", "TLSStream", "Trace", "classify", "client_context", "fetch", "lookup",
    "lookup_addresses", "lookup_doh", "lookup_dot", "lookup_system",
    "lookup_tcp", "lookup_udp", "round_trip", "tcp_connect", "tls_handshake",
]
