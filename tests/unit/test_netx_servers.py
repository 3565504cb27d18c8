"""Loopback servers and a run-time test PKI for the netx tests (no tests of its own).

Each server is an async context manager bound to 127.0.0.1 on a free port with
an overridable handler, in the spirit of dnspython's ``nanonameserver``; leaving
the context closes the listener and every connection it accepted, so no
transport outlives a test (warnings are errors here).
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import dns.rrset
import h2.config
import h2.connection
import h2.events
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tamperscope.netx import DirectConnector

LOOPBACK = "127.0.0.1"


async def to_loopback(host: str, **_: object) -> list[str]:
    """A resolver that sends every name to the loopback server of the test."""
    return [LOOPBACK]


def loopback_connector(ca: TestCA | None = None) -> DirectConnector:
    """A DirectConnector whose every name resolves to 127.0.0.1, trusting ``ca`` when given."""
    return DirectConnector(resolve=to_loopback, ca_bundle=str(ca.pem) if ca else None)


def run(coro: Awaitable[Any], *, limit: float = 20.0) -> Any:
    """Run ``coro`` in a fresh event loop with a hard limit, so no test can hang."""

    async def bounded() -> Any:
        async with asyncio.timeout(limit):
            return await coro

    return asyncio.run(bounded())


# --- PKI -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Issued:
    chain: Path  # PEM: leaf then CA
    key: Path


class TestCA:
    """A certificate authority made at run time (what trustme does, with cryptography)."""

    __test__ = False  # not a pytest class

    def __init__(self, directory: Path, name: str = "tamperscope test CA") -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        ski = x509.SubjectKeyIdentifier.from_public_key(self.key.public_key())
        self.cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                           critical=True)
            .add_extension(ski, critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = directory / f"{name.replace(' ', '_')}.pem"
        self.pem.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self._count = 0

    def issue(self, *names: str, expired: bool = False) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=7)
        if expired:
            start, end = now - datetime.timedelta(days=10), now - datetime.timedelta(days=2)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self._count += 1
        chain = self.directory / f"leaf{self._count}-{id(self)}.pem"
        keyfile = self.directory / f"leaf{self._count}-{id(self)}.key"
        chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM)
                          + self.cert.public_bytes(serialization.Encoding.PEM))
        keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        return Issued(chain, keyfile)

    def server_context(self, *names: str, alpn: tuple[str, ...] = ("http/1.1",),
                       expired: bool = False) -> ssl.SSLContext:
        issued = self.issue(*names, expired=expired)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(issued.chain, issued.key)
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        return ctx


# --- DNS over UDP --------------------------------------------------------------------------------

Reply = tuple[float, bytes]  # (delay in seconds, datagram)
UDPHandler = Callable[[dns.message.Message | None, bytes], list[Reply]]


def answer(query: dns.message.Message, *ips: str, rcode: int = 0, ttl: int = 60,
           cname: str | None = None) -> bytes:
    """A reply to ``query`` with A/AAAA records for ``ips`` (and an optional CNAME first)."""
    reply = dns.message.make_response(query)
    reply.set_rcode(rcode)
    qname = query.question[0].name
    if cname:
        reply.answer.append(dns.rrset.from_text(qname, ttl, "IN", "CNAME", cname))
    for ip in ips:
        rdtype = "AAAA" if ":" in ip else "A"
        reply.answer.append(dns.rrset.from_text(qname, ttl, "IN", rdtype, ip))
    return reply.to_wire()


class UDPDNSServer:
    """A UDP DNS server whose handler returns the datagrams (and delays) to send back."""

    def __init__(self, handler: UDPHandler) -> None:
        self.handler = handler
        self.port = 0
        self.received = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._timers: list[asyncio.TimerHandle] = []

    async def __aenter__(self) -> UDPDNSServer:
        loop = asyncio.get_running_loop()
        server = self

        class Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                server.received += 1
                try:
                    query: dns.message.Message | None = dns.message.from_wire(data)
                except Exception:
                    query = None
                for delay, out in server.handler(query, data):
                    server._timers.append(loop.call_later(delay, server._send, out, addr))

        transport, _ = await loop.create_datagram_endpoint(Proto, local_addr=(LOOPBACK, 0))
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        return self

    def _send(self, data: bytes, addr: Any) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(data, addr)

    async def __aexit__(self, *exc: object) -> None:
        for timer in self._timers:
            timer.cancel()
        if self._transport is not None:
            self._transport.close()
        await asyncio.sleep(0)


# --- TCP (optionally TLS) ----------------------------------------------------------------------------

StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class TCPServer:
    """A stream server (TLS when ``ssl`` is given) that runs ``handler`` per connection."""

    def __init__(self, handler: StreamHandler, *, ssl_context: ssl.SSLContext | None = None,
                 backlog: int = 100, port: int = 0) -> None:
        self.handler = handler
        self.ssl_context = ssl_context
        self.backlog = backlog
        self.port = port  # 0: an ephemeral one
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            await self.handler(reader, writer)
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError, EOFError):
            pass
        except asyncio.CancelledError:
            pass  # teardown: a cancelled handler must not log through asyncio's stream callback
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            writer.close()

    async def __aenter__(self) -> TCPServer:
        self._server = await asyncio.start_server(self._serve, LOOPBACK, self.port, ssl=self.ssl_context,
                                                  backlog=self.backlog)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for writer in list(self._writers):
            writer.transport.abort()
        await asyncio.sleep(0)
        await self._server.wait_closed()
        await asyncio.sleep(0.01)


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), as a censor's injected reset looks to the client."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def read_head(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes]:
    """Read one HTTP/1.1 request: method, target, lowercase headers, body (by Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    body = b""
    if int(headers.get("content-length", "0")):
        body = await reader.readexactly(int(headers["content-length"]))
    return method, target, headers, body


def http_response(status: int, body: bytes = b"", headers: list[tuple[str, str]] | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} X"]
    for key, value in headers or []:
        lines.append(f"{key}: {value}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# --- HTTP/2 ------------------------------------------------------------------------------------------------

H2Responder = Callable[[dict[bytes, bytes]], tuple[int, list[tuple[bytes, bytes]], bytes]]


def h2_handler(respond: H2Responder) -> StreamHandler:
    """A minimal HTTP/2 server over an ALPN-h2 TLS stream, honouring flow control."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False,
                                                                    header_encoding=None))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        pending: dict[int, bytes] = {}
        while True:
            data = await reader.read(65536)
            if not data:
                return
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    status, headers, body = respond(dict(event.headers or []))
                    conn.send_headers(event.stream_id, [(b":status", str(status).encode())] + headers,
                                      end_stream=not body)
                    if body:
                        pending[event.stream_id] = body
                elif isinstance(event, h2.events.StreamReset):
                    pending.pop(event.stream_id, None)
            for stream_id, body in list(pending.items()):
                window = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
                while body and window > 0:
                    chunk, body = body[:window], body[window:]
                    conn.send_data(stream_id, chunk, end_stream=not body)
                    window = min(conn.local_flow_control_window(stream_id),
                                 conn.max_outbound_frame_size)
                if body:
                    pending[stream_id] = body
                else:
                    pending.pop(stream_id)
            writer.write(conn.data_to_send())
            await writer.drain()

    return handle
