"""Edges of netx.stream: reading pauses and resumes around a large buffer, a peer's half-close, writes after
close or while the connection dies, record_io off, and IPv6 peers."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from tamperscope.netx import Trace, tcp_connect
from tamperscope.netx import stream as stream_mod
from tamperscope.netx.stream import TCPStream

try:
    from . import test_netx_servers as srv
except ImportError:
    import test_netx_servers as srv  # type: ignore[no-redef]

LO = srv.LOOPBACK


class _FakeTransport:
    """Just enough of an asyncio transport to watch TCPStream drive it."""

    def __init__(self) -> None:
        self.reading = True
        self.closing = False
        self.aborted = False
        self.written: list[bytes] = []

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closing

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True

    def get_extra_info(self, name: str) -> Any:
        return None


def _fake_stream(trace: Trace) -> tuple[TCPStream, stream_mod._StreamProtocol, _FakeTransport]:
    loop = asyncio.get_running_loop()
    transport = _FakeTransport()
    proto = stream_mod._StreamProtocol(loop)
    proto.connection_made(transport)  # type: ignore[arg-type]
    stream = TCPStream(transport, proto, address=f"{LO}:1", transaction_id=1, trace=trace)  # type: ignore[arg-type]
    return stream, proto, transport


def test_reading_pauses_above_the_buffer_limit_and_resumes_below_half() -> None:
    """A fast peer is held off past _PAUSE_ABOVE buffered bytes (memory stays bounded), and let in again once
    the reader has taken the buffer below half of it (else the stream stalled for good)."""
    async def main() -> None:
        async with Trace(record_io=False) as trace:
            stream, proto, transport = _fake_stream(trace)
            limit = stream_mod._PAUSE_ABOVE
            proto.data_received(b"x" * limit)
            assert transport.reading  # at the limit: still reading
            proto.data_received(b"y")
            assert not transport.reading
            buffered = limit + 1
            while buffered >= limit // 2:
                assert not transport.reading
                buffered -= len(await stream.read(65536))
            assert transport.reading  # below half: resumed
            proto.data_received(b"z" * 1000)
            buffered += 1000
            while buffered:
                buffered -= len(await stream.read(65536))
            proto.eof_received()
            assert await stream.read() == b""

    srv.run(main())


def test_a_write_paused_for_a_peer_that_dies_raises() -> None:
    """A write waiting for the kernel buffer to drain ends when the connection is lost, with its error: it
    neither waits forever nor returns as if the bytes had gone out."""
    async def main() -> None:
        async with Trace() as trace:
            stream, proto, transport = _fake_stream(trace)
            proto.pause_writing()
            writing = asyncio.ensure_future(stream.write(b"request"))
            await asyncio.sleep(0)
            assert not writing.done()
            transport.closing = True
            proto.connection_lost(ConnectionResetError("reset by peer"))
            async with asyncio.timeout(1):
                with pytest.raises(ConnectionResetError):
                    await writing

    srv.run(main())


def test_a_close_the_peer_never_completes_ends_in_an_abort(monkeypatch: pytest.MonkeyPatch) -> None:
    """aclose() waits _CLOSE_WAIT for a graceful close, then aborts: a peer that never reads must not keep the
    socket (and its unsent bytes) open after the stream is closed."""
    monkeypatch.setattr(stream_mod, "_CLOSE_WAIT", 0.01)

    async def main() -> None:
        async with Trace() as trace:
            stream, proto, transport = _fake_stream(trace)
            await stream.aclose()  # the transport never reports the connection lost
            assert transport.closing and transport.aborted

    srv.run(main())


def test_writing_after_close_raises_instead_of_dropping_the_bytes() -> None:
    """A write on a closed stream is connection_reset, never silently lost."""
    async def idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async def main() -> None:
        async with srv.TCPServer(idle) as server, Trace() as trace:
            conn = await tcp_connect(LO, server.port, trace=trace)
            await conn.aclose()
            with pytest.raises(ConnectionResetError):
                await conn.write(b"GET / HTTP/1.1\r\n\r\n")
        assert trace.network_events[-1]["operation"] == "write"
        assert trace.network_events[-1]["failure"] == "connection_reset"

    srv.run(main())


def test_after_the_peers_fin_we_can_still_write() -> None:
    """A half-close: the peer's FIN ends our reads, yet what we write afterwards still reaches it."""
    received: list[bytes] = []

    async def half_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello")
        writer.write_eof()
        await writer.drain()
        received.append(await reader.read(100))

    async def main() -> None:
        async with srv.TCPServer(half_close) as server, Trace() as trace:
            async with await tcp_connect(LO, server.port, trace=trace) as conn:
                assert await conn.read() == b"hello"
                assert await conn.read() == b""
                await asyncio.sleep(0.05)  # the FIN is in: a transport closed at EOF is closing by now
                await conn.write(b"after your fin")
                async with asyncio.timeout(2):
                    while not received:
                        await asyncio.sleep(0.01)
        assert received == [b"after your fin"]

    srv.run(main())


def test_without_record_io_reads_and_writes_leave_no_events() -> None:
    """record_io=False (DNS over TCP's sub-trace) records no read, write or EOF event."""
    async def echo_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(100))
        writer.write_eof()
        await writer.drain()

    async def main() -> None:
        async with srv.TCPServer(echo_once) as server, Trace(record_io=False) as trace:
            stream = await TCPStream.open(LO, server.port, transaction_id=7, trace=trace, address=f"{LO}:{server.port}")
            async with stream:
                await stream.write(b"ping")
                assert await stream.read() == b"ping"
                assert await stream.read() == b""
        assert trace.network_events == []

    srv.run(main())


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
def test_an_ipv6_peer_is_reached_over_an_ipv6_socket() -> None:
    """An address with a colon opens an AF_INET6 socket (an AF_INET one cannot connect to ::1)."""
    async def main() -> None:
        async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"hi6")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(hello, "::1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with Trace() as trace:
                stream = await TCPStream.open("::1", port, transaction_id=1, trace=trace, address=f"[::1]:{port}")
                async with stream:
                    assert await stream.read() == b"hi6"
                    assert stream.local_address[0] == "::1"
        finally:
            server.close()
            await server.wait_closed()

    srv.run(main())
