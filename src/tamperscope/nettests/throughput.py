"""Timed fetches for throttling detection: the same resource, the same server, two names.

A throttler keyed on the SNI or Host slows the flow that names the target and
leaves the same bytes from the same address alone when the name is innocent;
a slow line slows both. Shared by web_connectivity (a quick check when a page
came slowly) and the throttling nettest (repeated rounds).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..netx import Connection, NetxError, Trace, round_trip, tcp_connect, tls_handshake
from .base import Context

INNOCENT = "www.example.com"
MIN_BYTES = 4096


@dataclass(frozen=True)
class Timed:
    kbps: float | None  # None: failed or too small to tell
    bytes: int
    seconds: float
    failure: str | None


def swap_host(url: str, host: str, new: str) -> str:
    return url.replace(f"//{host}", f"//{new}", 1)


async def timed_fetch(ip: str, port: int, scheme: str, url: str, sni: str, ctx: Context,
                      headers: tuple[tuple[str, str], ...] = (("Accept", "*/*"),)) -> Timed:
    """GET `url` (its Host) from ip:port with TLS SNI `sni`; kbit/s from request to last byte.

    Certificates are not verified: only the speed counts here.
    """
    probe = Trace(record_io=False)
    try:
        stream = await tcp_connect(ip, port, trace=probe, timeout=ctx.timeouts.connect)
        try:
            conn: Connection = stream
            if scheme == "https":
                conn = await tls_handshake(stream, server_name=sni, ca_bundle=ctx.ca_bundle, verify=False,
                                           timeout=ctx.timeouts.tls, alpn=("http/1.1",))
            c0 = probe.now()
            resp = await round_trip(conn, url, headers=headers, timeout=max(ctx.timeouts.http, 60.0), record=False)
            seconds = max(1e-6, probe.now() - c0)
        finally:
            await stream.aclose()
    except NetxError as e:
        return Timed(None, 0, 0.0, e.failure)
    n = len(resp.body)
    return Timed(n * 8 / 1000 / seconds if n >= MIN_BYTES else None, n, seconds, None)
