"""HTTP/1.1 exchange with h11 (sans-IO) over a netx connection.

Fills a :class:`~tamperscope.netx.http.Partial` as the response arrives so that
a failure mid-way still leaves the status, headers and body prefix for the
record. h11's ``max_incomplete_event_size`` bounds the response head in bytes
(endless headers fail fast instead of growing a buffer); the body is kept up
to ``Limits.body`` and reading stops there (the connection is then unusable
and the caller closes it).

What a server sends costs CPU by the byte read, not only by the byte kept: at most
`MAX_INFORMATIONAL` 1xx responses come before the real one (an endless stream of
``100 Continue`` failed only at the caller's deadline, with a core busy until then),
and the bytes read, head and body, are bounded by `wire_budget` (chunk framing
counts: chunk extensions of 30 KB, or a body sent one byte a chunk, are cut
there as a body over the cap is, ``truncated``).
"""

from __future__ import annotations

import h11

from tamperscope.model import failures as F
from tamperscope.netx.classify import HTTPError
from tamperscope.netx.http import Limits, Partial, Request, request_headers
from tamperscope.netx.stream import READ_SIZE, Connection

MAX_INFORMATIONAL = 5  # 1xx responses before the final one (Go's net/http allows 5)


def wire_budget(limits: Limits) -> int:
    """Bytes read for a response before its body counts as truncated: the body's cap, an eighth more for chunk
    framing (a chunk of 50 bytes or more needs less), and the most a head may take (the trailers' room too)."""
    return limits.body + limits.body // 8 + limits.header_bytes


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
    informational = 0
    budget = wire_budget(limits)
    while True:
        event = h11conn.next_event()
        if event is h11.NEED_DATA:
            data = await conn.read(READ_SIZE)
            if not data and not got_response:
                raise EOFError("EOF before the response head")
            budget -= len(data)  # the head's bytes too: the budget has room for one
            if budget < 0 and got_response:  # framing beyond any body's: what is kept stands, as over the cap
                partial.truncated = True
                return
            h11conn.receive_data(data)
            continue
        if isinstance(event, h11.Response):
            got_response = True
            partial.status = event.status_code
            partial.http_version = "HTTP/" + event.http_version.decode("ascii")
            partial.headers = list(event.headers.raw_items())
            partial.check_headers(limits)
        elif isinstance(event, h11.InformationalResponse):
            informational += 1  # 1xx: the real response follows, unless they never end
            if informational > MAX_INFORMATIONAL:
                raise HTTPError(F.HTTP_PROTOCOL_ERROR)
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
