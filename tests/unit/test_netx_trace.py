"""The Trace (clock, ids, record helpers, collectors) and fetch end to end, also under uvloop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

import dns.message
import pytest

from tamperscope.model import failures as F
from tamperscope.netx import Resolver, Trace, fetch
from tamperscope.netx.trace import binary, endpoint, headers_fields, maybe_binary

try:
    from . import test_netx_servers as srv
except ImportError:
    import test_netx_servers as srv  # type: ignore[no-redef]

LO = srv.LOOPBACK


def test_clock_ids_and_lists() -> None:
    ticks = iter([100.0, 100.25, 101.5])
    trace = Trace(clock=lambda: next(ticks), first_transaction_id=7)
    assert trace.now() == 0.25 and trace.now() == 1.5
    assert trace.next_transaction_id() == 7 and trace.next_transaction_id() == 8
    keys = trace.test_keys()
    assert list(keys) == ["queries", "x_dns_duplicate_responses", "tcp_connect", "tls_handshakes",
                          "requests", "network_events"]
    assert keys["requests"] is trace.requests  # no copies


def test_requests_are_newest_first() -> None:
    trace = Trace()
    trace.add_request({"n": 1})
    trace.add_request({"n": 2})
    assert [r["n"] for r in trace.requests] == [2, 1]


def test_binary_helpers() -> None:
    assert maybe_binary("héllo".encode()) == "héllo"
    assert maybe_binary(b"\xff\x00") == {"format": "base64", "data": "/wA="}
    assert binary(b"ok") == {"format": "base64", "data": "b2s="}
    headers, pairs = headers_fields([(b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2"),
                                     (b"X-Bin", b"\xff")])
    assert headers == {"Set-Cookie": "a=1", "X-Bin": {"format": "base64", "data": "/w=="}}
    assert pairs[1] == ["Set-Cookie", "b=2"]
    assert endpoint("::1", 53) == "[::1]:53" and endpoint("127.0.0.1", 53) == "127.0.0.1:53"


def test_collectors_are_drained_and_cancelled() -> None:
    async def main() -> None:
        trace = Trace()
        done: list[str] = []

        async def short() -> None:
            await asyncio.sleep(0.01)
            done.append("short")

        async def forever() -> None:
            try:
                await asyncio.sleep(60)
            finally:
                done.append("closed")

        trace.spawn(short())
        await trace.drain()
        assert done == ["short"] and trace.pending == 0
        with pytest.raises(RuntimeError):
            async with trace:
                trace.spawn(forever())
                await asyncio.sleep(0)
                raise RuntimeError("measurement aborted")
        assert done == ["short", "closed"]

    srv.run(main())


def _site() -> srv.StreamHandler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, target, headers, _ = await srv.read_head(reader)
        if target == "/":
            writer.write(srv.http_response(302, b"", [("Location", "/home"),
                                                      ("Set-Cookie", "seen=1; Path=/")]))
        else:
            writer.write(srv.http_response(200, headers.get("cookie", "").encode()))
        await writer.drain()

    return handle


async def _fetch_via_udp_dns() -> Trace:
    def dns_handler(q: dns.message.Message | None, _: bytes) -> list[srv.Reply]:
        assert q is not None
        return [(0, srv.answer(q, LO))] if q.question[0].rdtype == 1 else [(0, srv.answer(q))]

    async with srv.UDPDNSServer(dns_handler) as dns_server, srv.TCPServer(_site()) as web:
        async with Trace() as trace:
            resolver = Resolver("udp", LO, port=dns_server.port, duplicate_window=0.05)
            result = await fetch(f"http://www.site.test:{web.port}/", trace=trace,
                                 resolver=resolver, tags=["classic"])
    assert result.failure is None and result.final is not None
    assert result.final.body == b"seen=1"  # the cookie set by the redirect came back
    return trace


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_fetch_with_udp_resolver(loop_name: str) -> None:
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    if loop_name == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        factory = uvloop.new_event_loop

    def run(coro: Coroutine[Any, Any, Trace]) -> Trace:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(asyncio.wait_for(coro, 20))

    trace = run(_fetch_via_udp_dns())
    engines = {(q["engine"], q["query_type"], q["failure"]) for q in trace.queries}
    assert engines == {("udp", "A", None), ("udp", "AAAA", F.DNS_NO_ANSWER)}
    assert [r["response"]["code"] for r in trace.requests] == [200, 302]
    assert trace.requests[0]["tags"] == ["classic", "depth=1"]
    assert len(trace.tcp_connect) == 2 and all(t["status"]["success"] for t in trace.tcp_connect)
    json.dumps(trace.test_keys())  # everything is plain JSON
