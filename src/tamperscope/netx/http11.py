"""HTTP/1.1 exchange with h11 (sans-IO) over a netx connection.

Fills a :class:`~tamperscope.netx.http.Partial` as the response arrives so that
a failure mid-way still leaves the status, headers and body prefix for the
record. h11's ``max_incomplete_event_size`` bounds the response head in bytes
(endless headers fail fast instead of growing a buffer); the body is kept up
to ``Limits.body`` and reading stops there (the connection is then unusable
and the caller closes it).
"""

from __future__ import annotations

import h11

from tamperscope.model import failures as F
from tamperscope.netx.classify import HTTPError
from tamperscope.netx.http import Limits, Partial, Request, request_headers
from tamperscope.netx.stream import READ_SIZE, Connection


async def exchange(conn: Connection, request: Request, partial: Partial, limits: Limits) -> None:
    """Send ``request`` and read the response into ``partial`` (no timeout here: the caller's)."""
    h11conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=limits.header_bytes)
    out = h11conn.send(h11.Request(method=request.method, target=request.target.path,
                                   headers=request_headers(request)))
    if request.body:
        out += h11conn.send(h11.Data(data=request.body))
    out += h11conn.send(h11.EndOfMessage())
    await conn.write(out)
    got_response = False
    while True:
        event = h11conn.next_event()
        if event is h11.NEED_DATA:
            data = await conn.read(READ_SIZE)
            if not data and not got_response:
                raise EOFError("EOF before the response head")
            h11conn.receive_data(data)
            continue
        if isinstance(event, h11.Response):
            got_response = True
            partial.status = event.status_code
            partial.http_version = "HTTP/" + event.http_version.decode("ascii")
            partial.headers = list(event.headers.raw_items())
            partial.check_headers(limits)
        elif isinstance(event, h11.InformationalResponse):
            continue  # 1xx: the real response follows
        elif isinstance(event, h11.Data):
            if not partial.add_body(bytes(event.data), limits.body):
                return  # truncated: stop reading, the caller closes the connection
        elif isinstance(event, h11.EndOfMessage):
            return
        elif isinstance(event, h11.ConnectionClosed):
            if not got_response:
                raise EOFError("connection closed before the response")
            return
        elif event is h11.PAUSED:
            return
        else:  # pragma: no cover - h11 has no other client-side events
            raise HTTPError(F.HTTP_PROTOCOL_ERROR)
