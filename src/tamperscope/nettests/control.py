"""The control request: ask the test helper how the target looks from outside.

Speaks OONI's web-connectivity test-helper protocol, over netx with its own
trace (the control exchange is not part of the target's evidence).
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Sequence
from typing import Any

import orjson

from ..model import failures as F
from ..netx import Connection, DirectConnector, NetxError, Trace, round_trip
from ..netx.stream import TCPStream
from .base import Context

USER_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
REQUEST_HEADERS = {"Accept": ["text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"],
                   "Accept-Language": ["en-US;q=0.8,en;q=0.5"], "User-Agent": [USER_AGENT]}


def control_request(url: str, endpoints: Sequence[str]) -> dict[str, Any]:
    return {"http_request": url, "http_request_headers": REQUEST_HEADERS, "tcp_connect": list(endpoints),
            "x_quic_enabled": False}


class _Pool:
    """Idle keep-alive connections to the helper, reused across measurements (one per loop). They are aborted
    when the loop shuts down (`asyncio.run` and `uvloop.run` cancel the pool's keeper task): otherwise each would
    stay open, owned by nobody, until the garbage collector found it."""

    def __init__(self) -> None:
        self.idle: dict[str, list[Connection]] = {}
        self._keeper = asyncio.get_running_loop().create_task(self._abort_at_shutdown())

    async def _abort_at_shutdown(self) -> None:
        try:
            await asyncio.get_running_loop().create_future()  # never done: cancelled when the loop shuts down
        finally:
            for conns in self.idle.values():
                for conn in conns:
                    tcp = conn if isinstance(conn, TCPStream) else getattr(conn, "tcp", None)  # a TLS stream's
                    if isinstance(tcp, TCPStream):
                        tcp.abort()
            self.idle.clear()

    def take(self, url: str) -> Connection | None:
        conns = self.idle.get(url)
        return conns.pop() if conns else None

    def give(self, url: str, conn: Connection) -> None:
        conns = self.idle.setdefault(url, [])
        if len(conns) < MAX_IDLE:
            conns.append(conn)
        else:
            asyncio.ensure_future(conn.aclose())


MAX_IDLE = 64
# Nesting a control response may have. OONI's has 3 levels; orjson parses 1024 but writes 254,
# so a deeper answer, kept in test_keys, would make the whole measurement unwritable.
MAX_DEPTH = 16
_POOLS: dict[int, _Pool] = {}


def _pool() -> _Pool:
    loop = asyncio.get_running_loop()
    pool = _POOLS.get(id(loop))
    if pool is None:
        _POOLS.clear()  # pools of loops that have ended
        pool = _POOLS[id(loop)] = _Pool()
    return pool


async def _exchange(ctx: Context, body: bytes, trace: Trace) -> tuple[int, bytes]:
    """POST the control request on a pooled connection, or a fresh one if the pooled one died."""
    assert ctx.helper_url is not None
    pool = _pool()
    connector = DirectConnector(ca_bundle=ctx.ca_bundle, alpn=("http/1.1",))
    headers = (("Content-Type", "application/json"), ("Accept", "application/json"))
    for reuse in (True, False):
        conn = pool.take(ctx.helper_url) if reuse else None
        if reuse and conn is None:
            continue
        if conn is None:
            conn = await connector(ctx.helper_url, trace=trace, timeout=ctx.timeouts.control)
        try:
            resp = await round_trip(conn, ctx.helper_url, method="POST", body=body, record=False,
                                    headers=headers, timeout=ctx.timeouts.control)
        except NetxError:
            await conn.aclose()
            if reuse:
                continue  # the helper closed an idle connection: try a fresh one
            raise
        except BaseException:
            await conn.aclose()
            raise
        if (resp.header("Connection") or "").lower() == "close":
            await conn.aclose()
        else:
            pool.give(ctx.helper_url, conn)
        return resp.status, resp.body
    raise AssertionError("unreachable")


def _shallow(value: Any, depth: int) -> bool:
    """Whether ``value`` (parsed JSON) nests at most ``depth`` levels of objects and arrays."""
    if isinstance(value, dict):
        return depth > 0 and all(_shallow(v, depth - 1) for v in value.values())
    if isinstance(value, list):
        return depth > 0 and all(_shallow(v, depth - 1) for v in value)
    return True


CLIENT_ADDRESS = "x_client_address"  # the helper's answer: the address this probe's request came from
MAX_OWN_ADDRESSES = 8  # learnt in one run (IPv4 and IPv6, a new lease): a helper cannot name the whole internet


def learn_own_address(ctx: Context, value: Any) -> None:
    """Keep an address this probe was seen to come from (by the helper, or a STUN server), to be scrubbed:
    behind NAT it is the public address that a blockpage ("your IP is …") or a rewriting proxy echoes, which
    no interface of this machine has. Taken out of the control answer (and never put in a STUN measurement),
    so it is never recorded."""
    if not isinstance(value, str) or len(ctx.own_addresses) >= MAX_OWN_ADDRESSES:
        return
    try:
        ctx.own_addresses.add(str(ipaddress.ip_address(value)))
    except ValueError:
        return


BUSY_TRIES = 6  # asked at most this often while the helper answers 503: about 8 s of waits in all, jittered


async def ask_helper(ctx: Context, request: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(control response, failure). Retries on 503 (busy)."""
    if not ctx.helper_url:
        return None, F.CONTROL_DISABLED
    body = orjson.dumps(request)
    trace = Trace(record_io=False)
    for attempt in range(BUSY_TRIES):
        try:
            async with ctx.control_slots:  # at most CONTROL_SLOTS of the run's requests at the helper at once
                status, data_bytes = await _exchange(ctx, body, trace)
        except NetxError as e:
            return None, e.failure
        if status == 503:  # busy (other probes' requests): asked again, waiting longer each time, then "control
            # helper busy" (QA: the third 503 was written "answered 503", and the string the docs promise was never
            # reached; then, three tries over 0.6 s left a loaded helper's measurements without a control)
            if attempt < BUSY_TRIES - 1:
                await asyncio.sleep(min(4.0, 0.25 * 2 ** attempt) * (0.5 + random.random()))
            continue
        if status != 200:
            return None, F.request_failed(f"control helper answered {status}")
        try:
            data = orjson.loads(data_bytes)
        except orjson.JSONDecodeError:
            return None, F.CONTROL_GARBAGE
        if not isinstance(data, dict) or not _shallow(data, MAX_DEPTH):
            return None, F.CONTROL_GARBAGE
        learn_own_address(ctx, data.pop(CLIENT_ADDRESS, None))
        return data, None
    return None, F.request_failed("control helper busy")
