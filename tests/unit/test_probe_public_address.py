"""Behind NAT the probe's public address is on no interface of its machine, yet a blockpage ("your IP is …")
or a rewriting proxy echoes that one. The control helper says which address a request came from
(`x_client_address`, to that client alone); the probe scrubs it from every measurement after, and never
records it (it is taken out of the control answer)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson

from tamperscope.helper import server as helper
from tamperscope.model.measurement import ProbeInfo
from tamperscope.nettests import control, web_connectivity
from tamperscope.nettests.base import Context, Timeouts
from tamperscope.nettests.control import MAX_OWN_ADDRESSES, ask_helper
from tamperscope.netx.resolver import Resolver
from tamperscope.probe.engine import Engine
from tamperscope.probe.privacy import SCRUBBED, Scrubber

LO = "127.0.0.1"
PUBLIC = "203.0.113.7"  # the address a NAT gave this probe (no interface has it)
FAST = Timeouts(dns=1, connect=1, tls=1, http=2, control=3, measurement=8)


def _site_and_helper(answer: dict[str, Any]) -> tuple[Any, Any]:
    page = f"<html><title>Blocked</title>Access denied. Your IP address is {PUBLIC}.</html>".encode()

    async def site(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
                     % len(page) + page)
        await writer.drain()
        writer.close()

    async def control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0]))
        body = orjson.dumps(answer)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    return site, control


CONTROL = {"dns": {"addrs": [LO], "failure": None}, "tcp_connect": {}, "tls_handshake": {}, "ip_info": {},
           "http_request": {"body_length": 60, "failure": None, "title": "Example", "headers": {}, "status_code": 200}}


def _measure(answer: dict[str, Any]) -> dict[str, Any]:
    """One web_connectivity measurement, through the engine, of a site whose page names PUBLIC, with a helper
    answering ``answer``."""
    site, control = _site_and_helper(answer)

    async def main() -> dict[str, Any]:
        s = await asyncio.start_server(site, LO, 0)
        c = await asyncio.start_server(control, LO, 0)
        ctx = Context(helper_url=f"http://{LO}:{c.sockets[0].getsockname()[1]}/", timeouts=FAST)
        engine = Engine(web_connectivity, ctx, ProbeInfo(), Scrubber([], interfaces=False))
        async with s, c:
            return await engine.measure(f"http://{LO}:{s.sockets[0].getsockname()[1]}/")

    return asyncio.run(asyncio.wait_for(main(), 20))


def test_the_address_the_helper_saw_is_scrubbed_and_not_recorded() -> None:
    m = _measure({**CONTROL, "x_client_address": PUBLIC})
    line = orjson.dumps(m)
    assert PUBLIC.encode() not in line  # anywhere: the body, the control answer
    assert "x_client_address" not in (m["test_keys"]["control"] or {})
    assert f"Your IP address is {SCRUBBED}" in m["test_keys"]["requests"][0]["response"]["body"]


def test_without_the_helper_saying_it_the_public_address_stays() -> None:
    """The test above fails for the reason it names: the same run, the helper silent about the address."""
    m = _measure(CONTROL)
    assert PUBLIC in m["test_keys"]["requests"][0]["response"]["body"]


def test_a_helper_naming_the_sites_address_cannot_scrub_it_from_the_evidence() -> None:
    """A hostile helper says our address is the site's: the site's address, in the input and in every record,
    stays (it is what was measured), in this measurement and in the next one of the same run."""
    other = "127.0.0.2"  # the site's address (loopback, but not one the scrubber keeps for itself)

    async def site(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    _, control = _site_and_helper({**CONTROL, "dns": {"addrs": [other], "failure": None},
                                   "x_client_address": other})

    async def main() -> list[dict[str, Any]]:
        s = await asyncio.start_server(site, other, 0)
        c = await asyncio.start_server(control, LO, 0)
        ctx = Context(helper_url=f"http://{LO}:{c.sockets[0].getsockname()[1]}/", timeouts=FAST)
        engine = Engine(web_connectivity, ctx, ProbeInfo(), Scrubber([], interfaces=False))
        url = f"http://{other}:{s.sockets[0].getsockname()[1]}/"
        async with s, c:
            return [await engine.measure(url), await engine.measure(url + "again")]

    for m in asyncio.run(asyncio.wait_for(main(), 30)):
        assert m["input"].startswith(f"http://{other}:") and SCRUBBED not in orjson.dumps(m).decode()
        assert m["test_keys"]["tcp_connect"][0]["ip"] == other
        assert m["test_keys"]["requests"][0]["request"]["url"] == m["input"]


def test_a_helper_cannot_have_the_whole_internet_scrubbed() -> None:
    """A lying helper naming a new address in every answer: at most MAX_OWN_ADDRESSES are learnt; junk none."""
    answers = iter([f"198.51.100.{i}" for i in range(40)] + ["not an address", "1.2.3.4.5"])

    async def control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0]))
        body = orjson.dumps({"x_client_address": next(answers, None)})
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    async def main() -> Context:
        c = await asyncio.start_server(control, LO, 0)
        ctx = Context(helper_url=f"http://{LO}:{c.sockets[0].getsockname()[1]}/", timeouts=FAST)
        async with c:
            for _ in range(42):
                data, failure = await ask_helper(ctx, {"http_request": "http://a.example/"})
                assert failure is None and data is not None and "x_client_address" not in data
        return ctx

    ctx = asyncio.run(asyncio.wait_for(main(), 30))
    assert len(ctx.own_addresses) == MAX_OWN_ADDRESSES
    assert all(a.startswith("198.51.100.") for a in ctx.own_addresses)


@contextlib.asynccontextmanager
async def _real_helper() -> AsyncIterator[Context]:
    """The real control helper on the loopback, and a probe's context that asks it."""
    h = helper.ControlHelper(resolver=Resolver(), ca_bundle=None, timeout=2,
                             allow_networks=helper.parse_networks(["127.0.0.0/8"]))
    server = await helper.HelperServer(h).serve(LO, 0)
    try:
        yield Context(helper_url=f"http://{LO}:{server.sockets[0].getsockname()[1]}/", timeouts=FAST)
    finally:
        server.close()


def test_the_helper_tells_a_client_the_address_its_request_came_from() -> None:
    async def main() -> dict[str, Any]:
        async with _real_helper() as ctx:
            raw, failure = await ask_helper(ctx, {"http_request": f"http://{LO}:9/", "tcp_connect": []})
        assert failure is None and raw is not None
        assert ctx.own_addresses == {LO}  # learnt (the loopback address itself is never scrubbed)
        return raw

    data = asyncio.run(asyncio.wait_for(main(), 20))
    assert "x_client_address" not in data and "http_request" in data


def test_a_tuple_is_scrubbed_as_the_array_it_is_written_as() -> None:
    """``orjson`` writes a tuple as an array; the walk went into lists only, so a nettest keeping a tuple
    (none does today) would have written the address as it was."""
    s = Scrubber([PUBLIC], interfaces=False)
    out = s({"a": (f"you are {PUBLIC}", [PUBLIC])})
    assert PUBLIC.encode() not in orjson.dumps(out) and out["a"][0] == f"you are {SCRUBBED}"


def test_a_kept_alive_helper_connection_is_closed_when_the_loop_ends() -> None:
    """The helper keeps connections alive and the probe pools them: when the run's loop ends, the pooled
    connection is closed, not left to the garbage collector (an unclosed-socket warning in a later test)."""
    pooled: list[Any] = []

    async def main() -> None:
        async with _real_helper() as ctx:
            raw, failure = await ask_helper(ctx, {"http_request": f"http://{LO}:9/", "tcp_connect": []})
            assert failure is None and raw is not None
            pooled.extend(c for conns in control._pool().idle.values() for c in conns)

    asyncio.run(asyncio.wait_for(main(), 20))
    assert len(pooled) == 1  # the helper said keep-alive: the connection was pooled
    transport = pooled[0]._transport
    assert transport.is_closing() and transport.get_extra_info("socket").fileno() == -1
