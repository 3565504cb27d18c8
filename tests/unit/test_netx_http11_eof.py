"""HTTP/1.1 servers (or censors) that close a chunked response part-way: the failure is eof_error wherever the
FIN lands in the body's framing, and what came before it is kept."""

from __future__ import annotations

import asyncio

import pytest

from tamperscope.model import failures as F
from tamperscope.netx import Trace, fetch

try:
    from . import test_netx_servers as srv
except ImportError:
    import test_netx_servers as srv  # type: ignore[no-redef]

HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n"
CUTS = {  # name: what follows the first chunk, then the FIN
    "in a chunk-size line": b"5",
    "in a chunk extension": b"5;name=val",
    "in the trailers": b"0\r\nX-Trailer: a",
    "between trailer lines": b"0\r\nX-Trailer: a\r\n",
    "in a chunk": b"5\r\nab",  # already eof_error: kept so that both stay alike
    "after the last chunk": b"0\r\n",
}


@pytest.mark.parametrize("cut", list(CUTS))
def test_a_fin_anywhere_in_a_chunked_body_is_eof_error(cut: str) -> None:
    """A FIN within a chunk-size line or the trailers was `unknown_failure: http protocol error` (h11 says
    "peer unexpectedly closed connection" there), while one a byte later, within the chunk, was eof_error."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.read_head(reader)
        writer.write(HEAD + CUTS[cut])
        await writer.drain()
        writer.write_eof()
        await reader.read()  # until the client closes

    async def main() -> None:
        async with srv.TCPServer(handler) as server:
            trace = Trace()
            result = await fetch(f"http://cut.test:{server.port}/", trace=trace,
                                 connector=srv.loopback_connector(), timeout=3)
        assert result.failure == F.EOF_ERROR
        assert result.failed_operation == F.HTTP_ROUND_TRIP
        record = trace.requests[0]
        assert record["failure"] == F.EOF_ERROR
        assert record["response"]["code"] == 200
        assert record["response"]["body"] in ("ok", "okab")  # what came of a cut chunk is kept too

    srv.run(main())
