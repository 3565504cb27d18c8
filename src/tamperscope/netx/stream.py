"""Byte streams over asyncio transports: the one socket wrapper every netx protocol uses.

:class:`TCPStream` sits on a plain asyncio ``Protocol`` (no ``StreamReader``:
fewer layers, and we need to tell a FIN from an RST). ``read`` returns ``b""``
at a clean EOF and raises the transport's own ``OSError`` (e.g.
``ConnectionResetError``) after an RST, so the classifier sees what happened.
Each read and write may be recorded in ``network_events`` with its byte count
and time, which is what throttling analysis needs.

:class:`Connection` is the seam the HTTP and DNS code is written against; both
``TCPStream`` and ``tls.TLSStream`` satisfy it.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Protocol, cast

from tamperscope.model import failures as F
from tamperscope.netx.classify import classify
from tamperscope.netx.shape import GAP, Shape, Unshaped
from tamperscope.netx.trace import Trace

READ_SIZE = 65536
_PAUSE_ABOVE = 1 << 20  # stop reading the socket when this much is buffered
_CLOSE_WAIT = 1.0  # seconds to wait for a graceful close before aborting


class Connection(Protocol):
    """A connected, traced byte stream."""

    address: str  # "ip:port" of the peer
    transaction_id: int  # shared by the records of this connection
    trace: Trace

    @property
    def alpn(self) -> str | None: ...  # negotiated ALPN protocol, None for plain TCP

    async def read(self, max_bytes: int = READ_SIZE) -> bytes: ...  # b"" at EOF

    async def write(self, data: bytes) -> None: ...

    async def aclose(self) -> None: ...


class _StreamProtocol(asyncio.Protocol):
    __slots__ = ("transport", "buffer", "eof", "exc", "waiter", "read_paused",
                 "write_paused", "drain_waiter", "lost")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.exc: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.read_paused = False
        self.write_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.lost: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check here.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _PAUSE_ABOVE and not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return True  # keep the transport: we may still write (half-close) and we close it ourselves

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        if exc is not None and self.exc is None:
            self.exc = exc
        if not self.lost.done():
            self.lost.set_result(None)
        self._wake()
        waiter, self.drain_waiter = self.drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        waiter, self.drain_waiter = self.drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class TCPStream:
    """A connected TCP socket with traced reads and writes. Use as an async context manager."""

    __slots__ = ("address", "transaction_id", "trace", "shape", "shaped", "_proto", "_transport", "_loop", "_closed")

    def __init__(self, transport: asyncio.Transport, proto: _StreamProtocol, *, address: str,
                 transaction_id: int, trace: Trace) -> None:
        self.address = address
        self.transaction_id = transaction_id
        self.trace = trace
        self._proto = proto
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._closed = False
        # An evasion strategy's shape (netx/shape.py) for the next write, consumed by it; `shaped` then
        # says how many pieces went out, or why the bytes could not be shaped.
        self.shape: Shape | None = None
        self.shaped: int | str | None = None

    @classmethod
    async def open(cls, ip: str, port: int, *, transaction_id: int, trace: Trace,
                   address: str) -> TCPStream:
        """Connect (no timeout here: callers wrap this in ``asyncio.timeout``)."""
        loop = asyncio.get_running_loop()
        # Our own socket, connected by address: event loops (uvloop) would otherwise send even a
        # numeric address through getaddrinfo's thread pool, where it queues behind real lookups.
        sock = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, (ip, port))
            transport, proto = await loop.create_connection(lambda: _StreamProtocol(loop), sock=sock)
        except BaseException:
            sock.close()
            raise
        return cls(transport, proto, address=address,
                   transaction_id=transaction_id, trace=trace)

    @property
    def alpn(self) -> str | None:
        return None

    @property
    def local_address(self) -> tuple[str, int]:
        return self._transport.get_extra_info("sockname")[:2]  # type: ignore[no-any-return]

    async def read(self, max_bytes: int = READ_SIZE) -> bytes:
        """Up to ``max_bytes``; ``b""`` at EOF; raises the socket error after an RST."""
        proto = self._proto
        trace = self.trace
        t0 = trace.now() if trace.record_io else 0.0
        if proto.buffer:
            # Yield even when data is waiting: a fast peer keeps the buffer full, and a caller
            # parsing it (1-byte chunks) would otherwise hold the loop and outlive its deadline.
            await asyncio.sleep(0)
        while not proto.buffer:
            if proto.exc is not None:
                self._record(F.READ, t0, None, proto.exc)
                raise proto.exc
            if proto.eof or self._closed:
                self._record(F.READ, t0, 0, None)
                return b""
            waiter = self._loop.create_future()
            proto.waiter = waiter
            try:
                await waiter
            finally:
                proto.waiter = None
        buffer = proto.buffer
        if len(buffer) <= max_bytes:
            data = bytes(buffer)
            buffer.clear()
        else:
            data = bytes(buffer[:max_bytes])
            del buffer[:max_bytes]
        if proto.read_paused and len(buffer) < _PAUSE_ABOVE // 2:
            proto.read_paused = False
            self._transport.resume_reading()
        if trace.record_io:
            self._record(F.READ, t0, len(data), None)
        return data

    async def write(self, data: bytes, *, drain: bool = True) -> None:
        """Queue ``data``; waits only when the kernel buffer is full, and only if ``drain``
        (a parting message, like TLS close_notify, must not wait for a peer that never reads)."""
        if self.shape is not None:
            await self._write_shaped(data, drain)
            return
        await self._write(data, drain)

    async def _write_shaped(self, data: bytes, drain: bool) -> None:
        """The first write of an evasion strategy: its pieces, each sent before the next is written."""
        shape, self.shape = self.shape, None
        assert shape is not None
        try:
            pieces = shape(data)
        except Unshaped as exc:
            self.shaped, pieces = str(exc), [data]
        else:
            self.shaped = len(pieces)
        for k, piece in enumerate(pieces):
            if k:
                await asyncio.sleep(GAP)
            await self._write(piece, drain)

    async def _write(self, data: bytes, drain: bool) -> None:
        proto = self._proto
        trace = self.trace
        t0 = trace.now() if trace.record_io else 0.0
        if proto.exc is not None:
            self._record(F.WRITE, t0, None, proto.exc)
            raise proto.exc
        if self._closed or self._transport.is_closing():
            exc = ConnectionResetError("write on a closed connection")
            self._record(F.WRITE, t0, None, exc)
            raise exc
        self._transport.write(data)
        while drain and proto.write_paused and not self._transport.is_closing():
            waiter = self._loop.create_future()
            proto.drain_waiter = waiter
            await waiter
        if proto.exc is not None:
            self._record(F.WRITE, t0, None, proto.exc)
            raise proto.exc
        if trace.record_io:
            self._record(F.WRITE, t0, len(data), None)

    def _record(self, operation: str, t0: float, num_bytes: int | None,
                exc: BaseException | None) -> None:
        if not self.trace.record_io:
            return
        failure = None if exc is None else classify(exc, operation=operation)
        self.trace.add_network_event(operation, t0=t0, transaction_id=self.transaction_id,
                                     address=self.address, proto="tcp", failure=failure,
                                     num_bytes=num_bytes)

    def abort(self) -> None:
        """Close at once, discarding unsent data (an RST when data is pending)."""
        self._closed = True
        self._transport.abort()

    async def aclose(self) -> None:
        """Close gracefully (bounded wait), then abort; idempotent."""
        self._closed = True
        transport = self._transport
        if not transport.is_closing():
            transport.close()
        if self._proto.lost.done():
            return
        try:
            async with asyncio.timeout(_CLOSE_WAIT):
                await asyncio.shield(self._proto.lost)
        except TimeoutError:
            transport.abort()
        except BaseException:
            transport.abort()
            raise

    async def __aenter__(self) -> TCPStream:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        await self.aclose()
