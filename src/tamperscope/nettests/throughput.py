"""Timed fetches for throttling detection: the same resource, the same server, two names.

A throttler keyed on the SNI or Host slows the flow that names the target and
leaves the same bytes from the same address alone when the name is innocent;
a slow line slows both. Shared by web_connectivity (a quick check when a page
came slowly) and the throttling nettest (repeated rounds).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from ..model import failures as F
from ..netx import Connection, NetxError, Trace, round_trip, tcp_connect, tls_handshake
from .base import Context

INNOCENT = "www.example.com"
MIN_BYTES = 4096


@dataclass(frozen=True)
class Timed:
    kbps: float | None  # None: failed, too small to tell, or not the resource (a status other than 2xx)
    bytes: int
    seconds: float
    failure: str | None
    status: int | None = None  # HTTP status; None when no complete response came


def swap_host(url: str, new: str) -> str:
    """``url`` naming the host ``new`` instead (its port, path and query kept). Rebuilt from its parts: a
    string replace of the host as parsed missed it in any other spelling (upper case, an IDN in Unicode, an
    IPv6 literal in brackets), and the innocent fetch then asked for the target's name again."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port is not None else ""
    return urlunsplit((parts.scheme, new + port, parts.path, parts.query, parts.fragment))


async def timed_fetch(ip: str, port: int, scheme: str, url: str, sni: str, ctx: Context,
                      headers: tuple[tuple[str, str], ...] = (("Accept", "*/*"),),
                      window: float | None = None) -> Timed:
    """GET `url` (its Host) from ip:port with TLS SNI `sni`; kbit/s from request to last byte (2xx only).

    `window`: at most this many seconds for the transfer (default: the HTTP timeout, at least
    60 s). A transfer still going when it closes is measured by what arrived: a throttled
    download is slow by definition, and its rate is the finding (the failure is kept).
    Certificates are not verified: only the speed counts here.
    """
    probe = Trace(record_io=False)
    c0: float | None = None
    try:
        stream = await tcp_connect(ip, port, trace=probe, timeout=ctx.timeouts.connect)
        try:
            conn: Connection = stream
            if scheme == "https":
                conn = await tls_handshake(stream, server_name=sni, ca_bundle=ctx.ca_bundle, verify=False,
                                           timeout=ctx.timeouts.tls, alpn=("http/1.1",))
            c0 = probe.now()
            resp = await round_trip(conn, url, headers=headers, record=False,
                                    timeout=window if window is not None else max(ctx.timeouts.http, 60.0))
            seconds = max(1e-6, probe.now() - c0)
        finally:
            await stream.aclose()
    except NetxError as e:
        if c0 is None or e.failure != F.GENERIC_TIMEOUT_ERROR:
            return Timed(None, 0, 0.0, e.failure)
        seconds = max(1e-6, probe.now() - c0)
        n = e.received
        return Timed(n * 8 / 1000 / seconds if n >= MIN_BYTES else None, n, seconds, e.failure)
    n = len(resp.body)
    # A 403 or a redirect is another answer (a blockpage, a site that does not serve this name), not the
    # resource at a slower pace: a short page is all latency, and would look throttled.
    rated = n >= MIN_BYTES and 200 <= resp.status < 300
    return Timed(n * 8 / 1000 / seconds if rated else None, n, seconds, None, resp.status)
