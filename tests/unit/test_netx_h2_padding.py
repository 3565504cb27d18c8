"""HTTP/2 servers that pad their DATA frames (RFC 9113 6.1): the padding takes flow-control window and is
no body, so the probe must hand it back or a conforming server waits for window that never comes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import h2.config
import h2.connection
import h2.events

from tamperscope.netx import Trace, fetch

try:
    from . import test_netx_servers as srv
except ImportError:
    import test_netx_servers as srv  # type: ignore[no-redef]

BODY = 20000  # bytes, one per frame: 20,000 frames of 256 bytes of padding use 5 MB of window (4 MiB granted)
PAD = 255  # the most one frame may carry


def padded_handler(served: list[int]) -> srv.StreamHandler:
    """A conforming h2 server: one byte of body per DATA frame, padded, never past the window it was given."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        stream_id = 0
        while True:
            data = await reader.read(65536)
            if not data:
                return
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    stream_id = event.stream_id
                    conn.send_headers(stream_id, [(b":status", b"200")])
            while stream_id and served[0] < BODY and conn.local_flow_control_window(stream_id) >= 2 + PAD:
                served[0] += 1
                conn.send_data(stream_id, b"x", end_stream=served[0] == BODY, pad_length=PAD)
                if served[0] % 256 == 0:
                    writer.write(conn.data_to_send())
                    await writer.drain()
            writer.write(conn.data_to_send())
            await writer.drain()

    return handle


def test_padded_data_frames_do_not_exhaust_the_window(tmp_path: Path) -> None:
    """The padding's window was never handed back: after 16,320 bytes (4 MiB of window) the server waited for a
    WINDOW_UPDATE and the fetch ended in generic_timeout_error, a blocked-looking failure for a working site."""
    ca = srv.TestCA(tmp_path)

    async def main() -> None:
        served = [0]
        ctx = ca.server_context("h2.test", alpn=("h2",))
        async with srv.TCPServer(padded_handler(served), ssl_context=ctx) as server:
            connector = srv.loopback_connector(ca)
            start = time.monotonic()
            # 2 s here idle; 4 s was exceeded in a loaded CI run with every frame sent. Without the fix it never ends
            result = await fetch(f"https://h2.test:{server.port}/", trace=Trace(), connector=connector,
                                 timeout=20)
            elapsed = time.monotonic() - start
        assert result.failure is None, (result.failure, served[0], elapsed)
        assert result.final is not None and result.final.body == b"x" * BODY
        assert result.final.http_version == "HTTP/2"

    srv.run(main(), limit=40)
