"""The evasion nettest against peers on 127.0.0.1: a userland "DPI" that reads one segment (so the strategies
can be seen to work end to end without the lab), and hostile servers (huge bodies, endless headers, garbage,
silence). Nothing leaves 127.0.0.1: the URL's host is an IP literal and there is no helper."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from tamperscope.model.evasion import attempts_from_records
from tamperscope.nettests import blockpages, evasion
from tamperscope.nettests.base import Context, Timeouts

try:
    from . import test_netx_servers as srv
except ImportError:
    import test_netx_servers as srv  # type: ignore[no-redef]

LO = srv.LOOPBACK
FAST = Timeouts(dns=1, connect=1, tls=1, http=2, control=2, measurement=20)
PAGE = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\n<p>hello</p>\n"


def closing(handler: Any) -> Any:
    """The handler, its connection closed whatever it does (the residual checks connect and leave at once)."""
    async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()  # after what was written (abort() in the handler resets at once)
    return wrapped


async def one_segment_dpi(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Resets a request whose first segment holds the whole Host value, as a box that reads one packet would;
    answers any other with the page."""
    first = await reader.read(65536)
    if f"Host: {LO}".encode() in first:
        writer.transport.abort()
        return
    data = first
    while b"\r\n\r\n" not in data:
        more = await reader.read(65536)
        if not more:
            return
        data += more
    writer.write(PAGE)
    await writer.drain()


def measure(handler: Any, strategies: tuple[str, ...] | None = None, with_fingerprints: bool = False) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        server = await asyncio.start_server(closing(handler), LO, 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            ctx = Context(timeouts=FAST, options={"strategies": strategies},
                          matcher=blockpages.matcher() if with_fingerprints else None)
            tk = await evasion.run(f"http://{LO}:{port}/", ctx)
        m = {"test_keys": tk}
        evasion.finish(m, ctx)
        return tk

    tk = srv.run(main())
    orjson.loads(orjson.dumps(tk))  # writable
    return tk


def test_a_box_that_reads_one_segment_is_evaded_by_cutting_the_host() -> None:
    tk = measure(one_segment_dpi)
    got = {a["strategy"]: (a["outcome"], a["shaped"]) for a in tk["x_evasion"]["attempts"]}
    assert got["http-segments"] == ("ok", 2)
    assert got["plain"][0] == "blocked"
    # an IP literal has no letters to mix and no name to qualify: those tricks are not played, and say so
    assert got["host-value-case"][0] == got["host-trailing-dot"][0] == "unshaped"
    assert got["host-name-case"][0] == "ok"  # this "box" looks for "Host:" case-sensitively
    assert tk["x_mechanism"] == "http.rst" and tk["x_evaded"] == ["http-segments", "host-name-case"]
    assert tk["x_confidence"] == 0.5  # no control to say the site was up
    assert tk["x_evasion"]["address_source"] == "dns"


async def thai_redirect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Thailand's block: a redirect known by its Location header alone (Citizen Lab's nat_th_* fingerprints)."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 302 Found\r\nLocation: http://103.208.24.21/\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()


def test_a_blockpage_known_by_its_headers_is_matched_as_it_comes_and_again_from_the_records() -> None:
    # the response's header names and values are bytes on the wire: the matcher must get them as text
    tk = measure(thai_redirect, ("http-segments",), with_fingerprints=True)
    live = {a["strategy"]: a for a in tk["x_evasion"]["attempts"]}
    assert live["plain"]["status_code"] == 302
    assert "cl/nat_th_deb_forward_1" in live["plain"]["fingerprints"]
    assert live["plain"]["outcome"] == live["http-segments"]["outcome"] == "blocked"
    again = {a["strategy"]: a for a in attempts_from_records(tk, blockpages.matcher())}
    assert again["plain"]["fingerprints"] == live["plain"]["fingerprints"]


async def _huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\n\r\n")
    try:
        for _ in range(400):  # 16 MiB, no length: the body limit must stop the reading
            writer.write(b"x" * 40960)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    writer.close()


async def _endless_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\n")
    try:
        for i in range(100_000):
            writer.write(b"X-%d: %s\r\n" % (i, b"y" * 100))
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    writer.close()


async def _garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(100)
    writer.write(bytes(range(256)) * 8)
    await writer.drain()
    writer.close()


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await reader.read(65536):  # reads the request, answers nothing, until the client gives up
        pass


@pytest.mark.parametrize("handler,plain", [
    (_huge, "ok"), (_endless_headers, "blocked"), (_garbage, "blocked"), (_silent, "blocked"),
], ids=["huge-body", "endless-headers", "garbage", "silent"])
def test_hostile_servers_give_outcomes_in_bounded_time(handler: Any, plain: str) -> None:
    t0 = time.monotonic()
    tk = measure(handler, ("http-segments",))
    assert time.monotonic() - t0 < 15
    attempts = tk["x_evasion"]["attempts"]
    assert [a["strategy"] for a in attempts] == ["http-segments", "plain"]
    assert attempts[-1]["outcome"] == plain
    for r in tk.get("requests", []):  # 1 MiB of body kept at most (base64 when binary), and said to be cut
        body = r["response"]["body"]
        assert len(body if isinstance(body, str) else body.get("data", "")) <= (1 << 20) * 4 // 3 + 4
    if handler is _huge:
        assert all(r["response"]["body_is_truncated"] for r in tk["requests"])
