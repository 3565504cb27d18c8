"""tcp_freeze: does this network freeze TCP connections to a server after a few kilobytes, and does splitting the
transfer over several connections get past it?

Russia's TSPU has done this since 2025 to connections to foreign hosting and CDN addresses (Hetzner, DigitalOcean,
OVH, Cloudflare, Akamai...): "the 16-20 KB block". The connection opens and the TLS handshake completes; once the
server has sent about 14-24 KB on it, nothing more arrives, and the client waits until its own timeout. A page
smaller than that loads, a bigger one never finishes; each new connection gets its first kilobytes again. OONI's
web_connectivity sees a timeout; tools like dpi-checkers download a large file from each provider. This test does
that against any URL, and then checks what the freeze implies.

1. **One connection** (``x_freeze.single``): the URL's address (its first, as ``first_address`` gives it), TCP, TLS
   for https (HTTP/1.1: one request after another on the same connection), then GETs of the URL, one after
   another, until the server has sent `TARGET` bytes on that connection (TLS included) or a request fails. A page
   smaller than `TARGET` is asked for again (keep-alive): what counts is the connection's bytes, not one response.
2. **Split** (``x_freeze.split``), only when that connection froze (`model.freeze`: the response started, then not
   one byte for 2 s before the request's timeout, after 4-64 KiB): the same bytes over new connections, each
   carrying less than the frozen one did. When responses had come whole before the freeze (``mode`` "repeat"),
   the same request again, one connection each, one more than came whole; when the first response froze
   (``mode`` "range"), its bytes in `CHUNK`-byte ranges (``Range: bytes=A-B``), one connection each. If every one
   of them completes, the limit is per connection (a freeze, confirmed: 0.9), and splitting gets past it. A server
   that ignores ``Range`` answers each with the whole page, which freezes again (``range_ignored``).

``test_keys``: ``failure`` (the one connection's, or the lookup's), ``x_address``, ``x_freeze`` {``target_bytes``,
``single`` {``stage`` ("connect", "tls", "http"), ``requests`` (that came whole), ``received`` (bytes the server
sent on it, TLS included), ``failure``, ``closed`` (the server ended the connection before `TARGET`),
``silence_s``, ``frozen``}, ``split`` {``mode``, ``connections``, ``completed``, ``received``, ``failure``,
``range_ignored``} or null}; ``control`` and ``control_failure`` (the helper's answer for the same URL and
address, in OONI's test-helper format, asked while the one connection runs: it tells a site that is down for
everyone from a blocked one); and the archival ``queries``, ``tcp_connect``, ``tls_handshakes``, ``requests``
(bodies included) and ``network_events`` (always recorded: they are the evidence). The verdict is
`model.freezeverdict.tcp_freeze_verdict`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..model import freeze
from ..model.freezeverdict import TARGET, tcp_freeze_verdict
from ..model.inputs import BadInput, parse_url
from ..model.webparts import endpoint
from ..netx import Connection, NetxError, TCPStream, Trace, round_trip, tcp_connect, tls_handshake
from .base import Context, NettestError, first_address
from .control import ask_helper, control_request

NAME = "tcp_freeze"
VERSION = "0.1.0"
NEEDS_INPUT = True
USES_HELPER = True  # the control: the same URL and address from outside
MAX_REQUESTS = 32  # on the one connection: a 2 KB page is asked for 32 times at most
CHUNK = 4096       # bytes of each range of the split (a freeze lets 14-24 KB through)
MAX_SPLIT = 16     # connections of the split
HEADERS = (("Accept", "*/*"), ("User-Agent", "Mozilla/5.0"))


def check_input(input: str) -> None:
    try:
        parse_url(input)
    except BadInput as e:
        raise NettestError(str(e)) from None


def _received(trace: Trace, tid: int) -> int:
    return sum(e.get("num_bytes") or 0 for e in trace.network_events
               if e.get("transaction_id") == tid and e.get("operation") == "read" and e.get("failure") is None)


class Unopened(Exception):
    """No connection: the stage that failed ("connect", "tls") and its failure string."""

    def __init__(self, stage: str, failure: str) -> None:
        super().__init__(failure)
        self.stage, self.failure = stage, failure


async def _open(ip: str, port: int, scheme: str, host: str, trace: Trace, ctx: Context,
                tags: tuple[str, ...]) -> tuple[Connection, TCPStream]:
    """A connection to ip:port (TLS with SNI ``host`` for https, HTTP/1.1): (it, the TCP stream to close)."""
    try:
        stream = await tcp_connect(ip, port, trace=trace, timeout=ctx.timeouts.connect, tags=tags)
    except NetxError as e:
        raise Unopened("connect", e.failure) from None
    if scheme != "https":
        return stream, stream
    try:
        conn = await tls_handshake(stream, server_name=host, ca_bundle=ctx.ca_bundle, alpn=("http/1.1",),
                                   timeout=ctx.timeouts.tls, tags=tags)
    except NetxError as e:
        raise Unopened("tls", e.failure) from None
    return conn, stream


def _closes(headers: tuple[tuple[bytes, bytes], ...]) -> bool:
    return any(k.lower() == b"connection" and b"close" in v.lower() for k, v in headers)


async def _single(ip: str, port: int, scheme: str, host: str, url: str, trace: Trace,
                  ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {"stage": "connect", "requests": 0, "received": 0, "failure": None, "closed": False,
                           "silence_s": None, "frozen": False}
    try:
        conn, stream = await _open(ip, port, scheme, host, trace, ctx, ("single",))
    except Unopened as e:
        out.update(stage=e.stage, failure=e.failure)
        return out
    out["stage"] = "http"
    tid = conn.transaction_id
    try:
        while _received(trace, tid) < TARGET and out["requests"] < MAX_REQUESTS:
            try:
                resp = await round_trip(conn, url, trace=trace, headers=HEADERS, timeout=ctx.timeouts.http,
                                        tags=("single",))
            except NetxError as e:
                out["failure"] = e.failure
                break
            out["requests"] += 1
            if _closes(resp.headers):
                out["closed"] = _received(trace, tid) < TARGET
                break
    finally:
        await stream.aclose()
    out["received"] = _received(trace, tid)
    stall = next((s for s in freeze.stalls({"requests": trace.requests, "network_events": trace.network_events})
                  if s.transaction_id == tid), None)
    if stall is not None:
        out.update(silence_s=stall.silence_s, frozen=stall.frozen)
    return out


async def _split(ip: str, port: int, scheme: str, host: str, url: str, single: dict[str, Any], trace: Trace,
                 ctx: Context) -> dict[str, Any]:
    """The frozen connection's bytes again, over new connections that each carry less."""
    repeat = single["requests"] > 0
    out: dict[str, Any] = {"mode": "repeat" if repeat else "range", "connections": 0, "completed": 0,
                           "received": 0, "failure": None, "range_ignored": False}
    count = min(single["requests"] + 1, MAX_SPLIT) if repeat else MAX_SPLIT
    for k in range(count):
        headers = HEADERS if repeat else (*HEADERS, ("Range", f"bytes={k * CHUNK}-{(k + 1) * CHUNK - 1}"))
        out["connections"] += 1
        try:
            conn, stream = await _open(ip, port, scheme, host, trace, ctx, ("split",))
        except Unopened as e:
            out["failure"] = e.failure
            break
        try:
            resp = await round_trip(conn, url, trace=trace, headers=headers, timeout=ctx.timeouts.http,
                                    tags=("split",))
        except NetxError as e:
            out["failure"] = e.failure
            out["range_ignored"] = not repeat and _range_ignored(trace, conn.transaction_id)
            break
        finally:
            out["received"] += _received(trace, conn.transaction_id)
            await stream.aclose()
        out["completed"] += 1
        if not repeat and (resp.status != 206 or len(resp.body) < CHUNK):
            out["range_ignored"] = resp.status == 200
            break  # the last range (or a whole page that fitted after all)
    return out


def _idna(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def _range_ignored(trace: Trace, tid: int) -> bool:
    """Whether the server answered a range request with the whole resource (200), seen on a request that failed."""
    return any(r.get("transaction_id") == tid and (r.get("response") or {}).get("code") == 200
               for r in trace.requests)


async def run(input: str | None, ctx: Context) -> dict[str, Any]:
    if not input:
        raise NettestError("tcp_freeze needs an input URL")
    try:
        u = parse_url(input)
    except BadInput as e:
        raise NettestError(str(e)) from None
    trace = Trace(record_io=True)  # the reads' bytes and times are the evidence of a freeze
    tk: dict[str, Any] = {"failure": None, "x_address": None, "x_freeze": None, "control": None,
                          "control_failure": None}
    async with trace:
        ip, tk["failure"] = await first_address(u.host, ctx, trace)
        if ip is None:
            tk["control"], tk["control_failure"] = await ask_helper(ctx, control_request(input, []))
        else:
            tk["x_address"] = endpoint(ip, u.port)
            host = u.host if u.host.isascii() else _idna(u.host)  # SNI and Host in IDNA, as browsers send them
            # the control runs while the one connection waits, outside the per-address limit (it sends nothing from
            # here to the address: web_connectivity's names forged to one address waited in twos on it)
            async with asyncio.TaskGroup() as tg:
                control = tg.create_task(ask_helper(ctx, control_request(input, [tk["x_address"]])))
                async with ctx.limiter.hold([ip]):
                    single = await _single(ip, u.port, u.scheme, host, input, trace, ctx)
                    split = await _split(ip, u.port, u.scheme, host, input, single, trace, ctx) \
                        if single["frozen"] else None
            tk["control"], tk["control_failure"] = control.result()
            tk["failure"] = single["failure"]
            tk["x_freeze"] = {"target_bytes": TARGET, "single": single, "split": split}
    tk.update(trace.test_keys())
    return tk


def finish(measurement: dict[str, Any], ctx: Context) -> None:
    measurement["test_keys"].update(tcp_freeze_verdict(measurement).to_test_keys())
