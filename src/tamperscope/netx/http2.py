"""HTTP/2 exchange with h2 (sans-IO) over a netx TLS connection that negotiated ``h2``.

One connection, one stream: a measurement wants to see each exchange on its
own, not a multiplexed pool. Bytes received before the response headers are
counted against ``Limits.header_bytes`` (plus one frame of slack), so a server
that streams endless HEADERS/CONTINUATION or junk frames fails fast; h2's own
HPACK list-size check is a second line. The receive windows granted up front
cover ``Limits.body`` (so the body never needs a WINDOW_UPDATE; only DATA frames'
padding, which takes window and is no body, is handed back as it comes); past it the
stream is cancelled with RST_STREAM.
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings

from tamperscope.model import failures as F
from tamperscope.netx.classify import HTTPError
from tamperscope.netx.http import Limits, Partial, Request, request_headers
from tamperscope.netx.stream import READ_SIZE, Connection

_CONFIG = h2.config.H2Configuration(client_side=True, header_encoding=None,
                                    validate_inbound_headers=False)
_WINDOW = 1 << 22  # connection-level receive window we grant up front
_FRAME_SLACK = 16384 + 9  # one max-size frame beyond the header budget
_HOP_BY_HOP = frozenset({b"host", b"connection", b"keep-alive", b"proxy-connection",
                         b"transfer-encoding", b"upgrade"})


def _new_connection(limits: Limits) -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(config=_CONFIG)
    codes = h2.settings.SettingCodes
    conn.local_settings = h2.settings.Settings(client=True, initial_values={
        codes.ENABLE_PUSH: 0,
        codes.MAX_CONCURRENT_STREAMS: 100,
        codes.MAX_HEADER_LIST_SIZE: limits.header_bytes,
        codes.INITIAL_WINDOW_SIZE: _window(limits),
    })
    # h2 advertises this by default; servers do not need it from a client.
    del conn.local_settings[codes.ENABLE_CONNECT_PROTOCOL]
    conn.initiate_connection()
    conn.increment_flow_control_window(_window(limits))
    return conn


def _window(limits: Limits) -> int:
    """Receive windows (stream and connection) that hold the whole body we keep and a frame more:
    the server never waits for a WINDOW_UPDATE, and we never send one (one write less per fetch)."""
    return min(2**31 - 1 - 65535, max(_WINDOW, limits.body + 2 * 16384))


async def exchange(conn: Connection, request: Request, partial: Partial, limits: Limits) -> None:
    """Send ``request`` on a fresh HTTP/2 connection state and read the response into ``partial``."""
    h2conn = _new_connection(limits)
    stream_id = h2conn.get_next_available_stream_id()
    target = request.target
    headers = [(b":method", request.method.encode("ascii")),
               (b":authority", target.authority.encode("ascii")),
               (b":scheme", target.scheme.encode("ascii")),
               (b":path", target.path.encode("latin-1"))]
    headers += [(k.lower(), v) for k, v in request_headers(request)
                if k.lower() not in _HOP_BY_HOP]
    h2conn.send_headers(stream_id, headers, end_stream=not request.body)
    if request.body:
        h2conn.send_data(stream_id, request.body, end_stream=True)
    await conn.write(h2conn.data_to_send())
    partial.http_version = "HTTP/2"
    head_budget = limits.header_bytes + _FRAME_SLACK
    got_headers = False
    while True:
        data = await conn.read(READ_SIZE)
        if not data:
            raise EOFError("EOF before the end of the HTTP/2 stream")
        if not got_headers:
            head_budget -= len(data)
            if head_budget < 0:
                raise HTTPError(F.HTTP_HEADERS_TOO_LARGE)
        events = h2conn.receive_data(data)
        done = False
        padding = 0
        for event in events:
            if getattr(event, "stream_id", stream_id) != stream_id:
                continue
            if isinstance(event, h2.events.ResponseReceived):
                got_headers = True
                _take_headers(partial, event.headers or [], limits)
            elif isinstance(event, h2.events.DataReceived):
                padding += (event.flow_controlled_length or 0) - len(event.data or b"")
                if not partial.add_body(event.data or b"", limits.body):
                    if not event.stream_ended:  # ended in the same frame: h2 has closed it, nothing to cancel
                        h2conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
                    done = True
                    break
            elif isinstance(event, h2.events.StreamEnded):
                done = True
            elif isinstance(event, h2.events.StreamReset):
                raise HTTPError(F.HTTP_STREAM_RESET)
            elif isinstance(event, h2.events.ConnectionTerminated):
                if not done:
                    raise HTTPError(F.unknown(f"http2 goaway error_code={int(event.error_code or 0)}"))
        if padding > 0 and not done:
            # Padding takes window and is no body: hand it back, or a server that pads its DATA frames (as
            # RFC 9113 allows) waits for window once padding has used what we granted, and we time out.
            h2conn.increment_flow_control_window(padding)
            h2conn.increment_flow_control_window(padding, stream_id=stream_id)
        pending = h2conn.data_to_send()
        if pending:
            await conn.write(pending)
        if done:
            return


def _take_headers(partial: Partial, headers: list[tuple[bytes, bytes]], limits: Limits) -> None:
    status = 0
    fields: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        name_b = name if isinstance(name, bytes) else name.encode("latin-1")
        value_b = value if isinstance(value, bytes) else value.encode("latin-1")
        if name_b == b":status":
            # Three ASCII digits (RFC 9110 15), as h11 requires: int() alone takes "-1",
            # " 200", "2_00" and 10**30, which no record (nor orjson) should hold.
            if len(value_b) != 3 or not value_b.isdigit():
                raise HTTPError(F.HTTP_PROTOCOL_ERROR)
            status = int(value_b)
        elif not name_b.startswith(b":"):
            fields.append((name_b, value_b))
    if status < 200:  # no :status at all (1xx responses are h2's InformationalResponseReceived)
        raise HTTPError(F.HTTP_PROTOCOL_ERROR)
    partial.status = status
    partial.headers = fields
    partial.check_headers(limits)
