"""The lab's web servers: HTTP/1.1 on 80, HTTPS with HTTP/1.1 or HTTP/2 (ALPN) on 443.

One listener per port serves every address of the namespace; what it serves
depends on the local address a connection arrived at (`Site` callback):
the web farm, the echo service, DoH on the public resolver, or an ISP's
blockpage. Hostile clients are bounded: 64 KiB of head, 64 KiB of body,
30 s idle.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from .farm import Response

log = logging.getLogger("tamperscope.lab.web")
MAX_HEAD = 65536
MAX_BODY = 65536
IDLE = 30.0
REASONS = {200: "OK", 206: "Partial Content", 301: "Moved Permanently", 302: "Found", 400: "Bad Request",
           404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large", 416: "Range Not Satisfiable",
           503: "Service Unavailable"}


@dataclass(frozen=True)
class Request:
    scheme: str
    method: str
    host: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    local_ip: str
    peer_ip: str


Handler = Callable[[Request], Awaitable[Response]]
RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _drain(writer: asyncio.StreamWriter) -> None:
    """Wait for the peer to take what was written, IDLE s at most (TimeoutError past it): a client that
    asked for a large body and stopped reading held its connection, and the body, for ever."""
    async with asyncio.timeout(IDLE):
        await writer.drain()


def _host_of(headers: tuple[tuple[str, str], ...], fallback: str) -> str:
    for k, v in headers:
        if k.lower() in ("host", ":authority"):
            v = v.strip().lower()
            if v.startswith("["):
                return v
            return v.rsplit(":", 1)[0] if ":" in v else v
    return fallback


class WebServer:
    """HTTP/1.1 and HTTP/2 over a handler; `raw` maps local IPs to raw TCP handlers (echo)."""

    def __init__(self, handler: Handler, raw: dict[str, RawHandler] | None = None) -> None:
        self.handler = handler
        self.raw = raw or {}

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None = None, reuse_port: bool = False) -> asyncio.base_events.Server:
        return await asyncio.start_server(lambda r, w: self._conn(r, w, tls is not None), host, port,
                                          ssl=tls, reuse_port=reuse_port, backlog=1024, limit=MAX_HEAD)

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tls: bool) -> None:
        local = writer.get_extra_info("sockname")
        peer = writer.get_extra_info("peername")
        local_ip = local[0] if local else ""
        peer_ip = peer[0] if peer else ""
        try:
            raw = self.raw.get(local_ip)
            if raw is not None and not tls:
                await raw(reader, writer)
                return
            sslobj = writer.get_extra_info("ssl_object")
            if sslobj is not None and sslobj.selected_alpn_protocol() == "h2":
                await self._h2(reader, writer, local_ip, peer_ip, sslobj.server_hostname or local_ip)
            else:
                default_host = (sslobj.server_hostname if sslobj is not None else None) or local_ip
                await self._h1(reader, writer, "https" if tls else "http", local_ip, peer_ip, default_host)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ssl.SSLError, OSError):
            pass
        except Exception:
            log.exception("web connection failed")
        finally:
            writer.close()

    async def _h1(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, scheme: str,
                  local_ip: str, peer_ip: str, default_host: str) -> None:
        while True:
            async with asyncio.timeout(IDLE):
                head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                await self._write_h1(writer, Response(400, (("Content-Type", "text/plain"),), b"bad request line\n"), False)
                return
            headers = []
            for line in lines[1:]:
                if not line:
                    continue
                if ":" not in line:
                    await self._write_h1(writer, Response(400, (), b"bad header\n"), False)
                    return
                k, v = line.split(":", 1)
                headers.append((k.strip(), v.strip()))
            hdrs = tuple(headers)
            body = b""
            clen = next((v for k, v in hdrs if k.lower() == "content-length"), None)
            if clen is not None:
                try:
                    n = int(clen)
                except ValueError:
                    n = -1
                if not 0 <= n <= MAX_BODY:
                    await self._write_h1(writer, Response(413, (), b"body too large\n"), False)
                    return
                async with asyncio.timeout(IDLE):
                    body = await reader.readexactly(n)
            keep = not any(k.lower() == "connection" and v.lower() == "close" for k, v in hdrs) and parts[2] == "HTTP/1.1"
            req = Request(scheme, parts[0], _host_of(hdrs, default_host), parts[1], hdrs, body, local_ip, peer_ip)
            resp = await self.handler(req)
            await self._write_h1(writer, resp, keep, head_only=parts[0] == "HEAD")
            if not keep:
                return

    async def _write_h1(self, writer: asyncio.StreamWriter, resp: Response, keep: bool, head_only: bool = False) -> None:
        lines = [f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'OK')}", "Server: tamperscope-lab"]
        lines += [f"{k}: {v}" for k, v in resp.headers]
        lines.append(f"Content-Length: {len(resp.body)}")
        lines.append("Connection: keep-alive" if keep else "Connection: close")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if not head_only:
            view = memoryview(resp.body)
            for i in range(0, len(view), 256 * 1024):
                writer.write(view[i : i + 256 * 1024])
                await _drain(writer)
        await _drain(writer)

    async def _h2(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, local_ip: str, peer_ip: str, sni: str) -> None:
        # headers as bytes, decoded here: h2's own decoding raised UnicodeDecodeError on a non-UTF-8 one
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False, header_encoding=None))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        streams: dict[int, tuple[list[tuple[str, str]], bytearray]] = {}
        windows: dict[int, asyncio.Event] = {}
        tasks: set[asyncio.Task[None]] = set()

        async def respond(sid: int, hdrs: list[tuple[str, str]], body: bytes) -> None:
            try:
                await answer(sid, hdrs, body)
            except (h2.exceptions.ProtocolError, TimeoutError, ConnectionError, OSError):
                pass  # the stream was reset or the peer stopped reading: nothing left to answer

        async def answer(sid: int, hdrs: list[tuple[str, str]], body: bytes) -> None:
            d = dict(hdrs)
            req = Request("https", d.get(":method", "GET"), _host_of(tuple(hdrs), sni), d.get(":path", "/"),
                          tuple(hdrs), body, local_ip, peer_ip)
            resp = await self.handler(req)
            out = [(":status", str(resp.status)), ("server", "tamperscope-lab"), ("content-length", str(len(resp.body)))]
            out += [(k.lower(), v) for k, v in resp.headers]
            conn.send_headers(sid, out, end_stream=not resp.body)
            writer.write(conn.data_to_send())
            data = memoryview(resp.body)
            while data:
                try:
                    n = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size, len(data))
                except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                    return
                if n <= 0:
                    ev = windows.setdefault(sid, asyncio.Event())
                    ev.clear()
                    async with asyncio.timeout(IDLE):
                        await ev.wait()
                    continue
                conn.send_data(sid, data[:n].tobytes(), end_stream=n == len(data))
                data = data[n:]
                writer.write(conn.data_to_send())
                await _drain(writer)

        try:
            while True:
                async with asyncio.timeout(IDLE):
                    chunk = await reader.read(65536)
                if not chunk:
                    return
                try:
                    events = conn.receive_data(chunk)
                except h2.exceptions.ProtocolError:
                    writer.write(conn.data_to_send())
                    return
                for ev in events:
                    if isinstance(ev, h2.events.RequestReceived):
                        streams[ev.stream_id] = (_decoded(ev.headers), bytearray())
                        if ev.stream_ended is not None:
                            hdrs, body = streams.pop(ev.stream_id)
                            t = asyncio.ensure_future(respond(ev.stream_id, hdrs, bytes(body)))
                            tasks.add(t)
                            t.add_done_callback(tasks.discard)
                    elif isinstance(ev, h2.events.DataReceived):
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                        if ev.stream_id in streams and len(streams[ev.stream_id][1]) < MAX_BODY:
                            streams[ev.stream_id][1].extend(ev.data or b"")
                    elif isinstance(ev, h2.events.StreamEnded):
                        if ev.stream_id in streams:
                            hdrs, body = streams.pop(ev.stream_id)
                            t = asyncio.ensure_future(respond(ev.stream_id, hdrs, bytes(body)))
                            tasks.add(t)
                            t.add_done_callback(tasks.discard)
                    elif isinstance(ev, h2.events.WindowUpdated):
                        if ev.stream_id == 0:
                            for e in windows.values():
                                e.set()
                        elif ev.stream_id in windows:
                            windows[ev.stream_id].set()
                    elif isinstance(ev, h2.events.StreamReset):
                        streams.pop(ev.stream_id, None)  # kept, its body made the connection grow for ever
                        waiting = windows.pop(ev.stream_id, None)
                        if waiting is not None:
                            waiting.set()  # its response task then finds the stream closed and ends
                    elif isinstance(ev, h2.events.ConnectionTerminated):
                        return
                writer.write(conn.data_to_send())
                await _drain(writer)
        finally:
            for t in tasks:
                t.cancel()


def _decoded(headers: Iterable[tuple[bytes | str, bytes | str]]) -> list[tuple[str, str]]:
    """An h2 header block (bytes pairs) as text: UTF-8 where it is, Latin-1 (byte for byte) where not."""
    return [(_text(k), _text(v)) for k, v in headers]


def _text(b: bytes | str) -> str:
    if isinstance(b, str):
        return b
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b.decode("latin-1")


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Write back exactly the bytes received, until the peer closes or 10 s idle (64 KiB at most)."""
    total = 0
    while total < MAX_HEAD:
        try:
            async with asyncio.timeout(10):
                data = await reader.read(4096)
        except TimeoutError:
            return
        if not data:
            return
        total += len(data)
        writer.write(data)
        await writer.drain()
