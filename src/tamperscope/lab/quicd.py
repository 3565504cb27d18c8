"""The lab's QUIC server: HTTP/3's handshake on UDP 443, for every address of its namespace.

The web farm answers on a whole range of addresses (a local route), so one
socket serves them all. QUIC over UDP must answer from the address each client
wrote to, or the client's connected socket never sees the reply: the socket
reads each datagram's destination with ``IP_PKTINFO`` and sends from it.

Each handshake presents a certificate for the client's SNI, issued on the fly
by the lab CA, as the TCP farm's ``Issuer.sni_context`` does. aioquic has no
SNI callback, so the server's TLS context reads the ClientHello's name first
(``_SniContext``); this relies on aioquic's internals, and the version is pinned.

The server completes handshakes (ALPN ``h3``) and serves HTTP/3 GETs with the
same pages as the TCP farm (``farm.respond``). It keeps at most
``MAX_CONNECTIONS`` connections; a client that floods it with Initials gets
no more than that.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any

from aioquic import tls
from aioquic.buffer import Buffer  # type: ignore[attr-defined]  # re-exported from aioquic._buffer, no __all__
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import HeadersReceived
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicPacketType, pull_quic_header

from .farm import Response

log = logging.getLogger(__name__)

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux's value; Python 3.11 does not export it
MAX_CONNECTIONS = 4096
MIN_INITIAL = 1200  # RFC 9000 section 14.1: a client's Initial is padded to 1200 bytes
# aioquic drops an Initial of another version before it has a network path, and such a connection can
# neither send nor expire: only these versions start one
VERSIONS = frozenset(QuicConfiguration(is_client=False).supported_versions)
# (certificate, chain, private key) for a server name
Credentials = tuple[Any, list[Any], Any]
Handler = Callable[[str, str, str], Response]  # (host, path, local_ip) -> response


class _SniContext(tls.Context):
    """aioquic's server TLS context, choosing its certificate by the ClientHello's SNI."""

    pick: Callable[[str], Credentials]
    local_ip: str

    def _server_handle_hello(self, input_buf: Buffer, initial_buf: Buffer, handshake_buf: Buffer,
                             *rest: Any) -> None:
        start = input_buf.tell()
        try:
            name = tls.pull_client_hello(input_buf).server_name
        except Exception:  # noqa: BLE001 - a malformed hello fails in aioquic's own parse just after
            name = None
        input_buf.seek(start)
        self.certificate, self.certificate_chain, self.certificate_private_key = self.pick(name or self.local_ip)
        super()._server_handle_hello(input_buf, initial_buf, handshake_buf, *rest)


class _Connection(QuicConnection):
    pick: Callable[[str], Credentials]
    local_ip: str

    def _initialize(self, peer_cid: bytes) -> None:
        super()._initialize(peer_cid)
        self.tls.__class__ = _SniContext
        self.tls.pick = self.pick  # type: ignore[attr-defined]
        self.tls.local_ip = self.local_ip  # type: ignore[attr-defined]


class QuicServer:
    """One UDP socket on ``host:port`` serving QUIC handshakes and HTTP/3 for every local address."""

    def __init__(self, pick: Callable[[str], Credentials], handler: Handler) -> None:
        self.pick = pick
        self.handler = handler
        self.conns: dict[tuple[Any, str], tuple[QuicConnection, H3Connection | None]] = {}
        self.timers: dict[tuple[Any, str], asyncio.TimerHandle] = {}
        self.sock: socket.socket | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.handshakes = 0

    def start(self, host: str, port: int) -> socket.socket:
        self.loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind((host, port))
        sock.setblocking(False)
        self.sock = sock
        self.loop.add_reader(sock.fileno(), self._readable)
        return sock

    def close(self) -> None:
        if self.sock is not None and self.loop is not None:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
        for t in self.timers.values():
            t.cancel()

    # --- datagrams in ---------------------------------------------------------------
    def _readable(self) -> None:
        assert self.sock is not None
        for data, peer, local in received(self.sock):
            self._datagram(data, peer, local)

    def _datagram(self, data: bytes, peer: Any, local: str) -> None:
        assert self.loop is not None
        key = (peer, local)
        entry = self.conns.get(key)
        if entry is None:
            if len(self.conns) >= MAX_CONNECTIONS or len(data) < MIN_INITIAL:
                return
            try:
                header = pull_quic_header(Buffer(data=data), host_cid_length=8)
            except ValueError:
                return
            if header.packet_type != QuicPacketType.INITIAL or header.version not in VERSIONS:
                return
            config = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN, idle_timeout=10.0)
            # the certificate for a hello without SNI: the address it was sent to
            config.certificate, config.certificate_chain, config.private_key = self.pick(local)
            conn = _Connection(configuration=config, original_destination_connection_id=header.destination_cid)
            conn.pick, conn.local_ip = self.pick, local
            entry = (conn, None)
            self.conns[key] = entry
        try:
            entry[0].receive_datagram(data, peer, now=self.loop.time())
        except Exception:  # noqa: BLE001 - a hostile datagram must not take the server down
            log.debug("quic datagram from %s dropped", peer, exc_info=True)
        self._process(key)

    # --- events, datagrams out, timers ----------------------------------------------------
    def _process(self, key: tuple[Any, str]) -> None:
        assert self.loop is not None and self.sock is not None
        entry = self.conns.get(key)
        if entry is None:
            return
        conn, h3 = entry
        ended = False
        event = conn.next_event()
        while event is not None:
            if isinstance(event, events.HandshakeCompleted):
                self.handshakes += 1
                if event.alpn_protocol in H3_ALPN:
                    h3 = H3Connection(conn)
                    self.conns[key] = (conn, h3)
            elif isinstance(event, events.ConnectionTerminated):
                ended = True
            if h3 is not None and not ended:
                for h in h3.handle_event(event):
                    if isinstance(h, HeadersReceived):
                        try:
                            self._answer(h3, h.stream_id, h.headers, key[1])
                        except Exception:  # noqa: BLE001 - trailers (a second HEADERS) find the answer sent
                            log.debug("quic request from %s not answered", key[0], exc_info=True)
            event = conn.next_event()
        for data, addr in conn.datagrams_to_send(now=self.loop.time()):
            try:
                send_from(self.sock, data, key[1], addr)
            except OSError:
                break
        old = self.timers.pop(key, None)
        if old is not None:
            old.cancel()
        timer = conn.get_timer()
        if ended and timer is None:
            self.conns.pop(key, None)
        elif timer is not None:
            self.timers[key] = self.loop.call_at(timer, self._timeout, key)
        else:
            self.conns.pop(key, None)

    def _timeout(self, key: tuple[Any, str]) -> None:
        assert self.loop is not None
        self.timers.pop(key, None)
        entry = self.conns.get(key)
        if entry is None:
            return
        entry[0].handle_timer(now=self.loop.time())
        self._process(key)

    def _answer(self, h3: H3Connection, stream_id: int, headers: list[tuple[bytes, bytes]], local: str) -> None:
        d = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}
        host = d.get(":authority", local).rsplit(":", 1)[0] if d.get(":authority") else local
        resp = self.handler(host, d.get(":path", "/"), local)
        out = [(b":status", str(resp.status).encode()), (b"server", b"tamperscope-lab"),
               (b"content-length", str(len(resp.body)).encode())]
        out += [(k.lower().encode(), v.encode()) for k, v in resp.headers]
        h3.send_headers(stream_id, out)
        h3.send_data(stream_id, resp.body, end_stream=True)


def received(sock: socket.socket, size: int = 65535) -> Iterator[tuple[bytes, Any, str]]:
    """The datagrams waiting on a non-blocking socket with IP_PKTINFO on (at most 256, then the loop breathes),
    each with its sender and the local address it was sent to (the socket listens on many)."""
    for _ in range(256):
        try:
            data, anc, _flags, peer = sock.recvmsg(size, socket.CMSG_SPACE(12))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            continue
        local = _destination(anc)
        if local is not None:
            yield data, peer, local


def send_from(sock: socket.socket, data: bytes, local: str, peer: Any) -> None:
    """Send ``data`` to ``peer`` from the local address ``local`` (the one the peer wrote to)."""
    pkt = struct.pack("I4s4s", 0, socket.inet_aton(local), b"\0\0\0\0")
    sock.sendmsg([data], [(socket.IPPROTO_IP, IP_PKTINFO, pkt)], 0, peer)


def _destination(anc: list[tuple[int, int, bytes]]) -> str | None:
    """The destination address of a datagram, from its IP_PKTINFO control message."""
    for level, kind, data in anc:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 12:
            return socket.inet_ntoa(data[8:12])
    return None


__all__ = ["MAX_CONNECTIONS", "QuicServer", "received", "send_from"]
