"""The lab's servers against clients that ask and then stop reading the answer.

Each server ran on 127.0.0.1 only. Before, the web farm and the DNS-over-TCP server waited for such a
client for ever: their timeouts covered reading a request, not writing its answer, so every such
connection kept its coroutine, its socket and its answer (up to 64 MiB) for the server's life.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Awaitable, Callable

import pytest

from tamperscope.lab import dnsd, farm, web
from tamperscope.wire import dnswire

Session = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _deaf_client(port: int) -> socket.socket:
    """A client with a tiny receive buffer that will never read."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.setblocking(False)
    return s


async def _ended_within(session: Session, send: bytes, limit: float) -> float | None:
    """Serve ``session`` on 127.0.0.1 with a small send buffer; a deaf client sends ``send``: seconds until the
    session ended, or None."""
    ended: list[float] = []

    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # full sooner
        try:
            await session(r, w)
        finally:
            ended.append(time.monotonic())

    srv = await asyncio.start_server(serve, "127.0.0.1", 0, limit=web.MAX_HEAD)
    client = _deaf_client(srv.sockets[0].getsockname()[1])
    t0 = time.monotonic()
    try:
        view = memoryview(send)
        while view and time.monotonic() - t0 < limit:
            try:
                view = view[client.send(view) :]
            except BlockingIOError:
                await asyncio.sleep(0.01)
        while not ended and time.monotonic() - t0 < limit:
            await asyncio.sleep(0.05)
        return ended[0] - t0 if ended else None
    finally:
        client.close()
        srv.close()


async def _farm(req: web.Request) -> farm.Response:
    return farm.respond(req.scheme, req.host, req.target)


@pytest.mark.wallclock  # bounds wall-clock time: not among the low-priority tests (scripts/test.sh)
def test_a_web_client_that_stops_reading_a_large_body_is_let_go(monkeypatch: pytest.MonkeyPatch) -> None:
    """GET /blob?size=8000000 and never read: the server sat in drain() with the 8 MB body for ever."""
    monkeypatch.setattr(web, "IDLE", 0.5)
    server = web.WebServer(_farm)

    async def session(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server._conn(r, w, False)

    took = asyncio.run(_ended_within(session, b"GET /blob?size=8000000 HTTP/1.1\r\nHost: a.org\r\n\r\n", 4.0))
    assert took is not None and took < 3.0, took


@pytest.mark.wallclock  # bounds wall-clock time: not among the low-priority tests (scripts/test.sh)
def test_a_dns_tcp_client_that_never_reads_its_answers_is_let_go(monkeypatch: pytest.MonkeyPatch) -> None:
    """Thousands of pipelined queries whose answers are never read filled the socket; the session then
    waited in drain() for ever, past its idle timeout, holding a file descriptor of the DNS process."""
    monkeypatch.setattr(dnsd, "TCP_IDLE", 0.5)
    server = dnsd.DNSServer("127.0.0.1", dnsd.static_answerer(None, recursive=False))
    query = dnswire.encode_query("a" * 60 + ".example.org", dnswire.QTYPE_A, 7)
    assert query is not None

    async def session(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await dnsd._tcp_session(server.handle_wire, r, w)

    took = asyncio.run(_ended_within(session, (struct.pack("!H", len(query)) + query) * 3000, 4.0))
    assert took is not None and took < 3.0, took


def test_the_proxy_relays_connections_whose_descriptors_are_past_1023() -> None:
    """pipe() used select(), which raises ValueError for a descriptor past 1023: with two sockets a
    connection, every connection past about the 500th open one failed (the cap is 1024)."""
    import os
    import resource
    import threading

    from tamperscope.lab import proxy

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        if hard != resource.RLIM_INFINITY and hard < 1200:
            pytest.skip("the open-file limit leaves no room for descriptors past 1023")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
    fillers = [os.open(os.devnull, os.O_RDONLY) for _ in range(1050)]
    client, a = socket.socketpair()
    b, upstream = socket.socketpair()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            proxy.pipe(a, b, idle=3.0)
        except BaseException as e:  # noqa: BLE001 - the test reports it
            errors.append(e)

    try:
        assert min(s.fileno() for s in (a, b)) > 1023
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        client.sendall(b"ping")
        upstream.settimeout(3)
        assert upstream.recv(10) == b"ping"
        upstream.sendall(b"pong")
        client.settimeout(3)
        assert client.recv(10) == b"pong"
        client.shutdown(socket.SHUT_WR)
        upstream.shutdown(socket.SHUT_WR)
        thread.join(timeout=5)
        assert not thread.is_alive() and errors == []
    finally:
        for s in (client, a, b, upstream):
            s.close()
        for fd in fillers:
            os.close(fd)
        if soft < 1200:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
