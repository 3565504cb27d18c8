"""Traced QUIC handshakes over loopback UDP: the lab's QUIC server, and hostile UDP peers that must not hang us."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from aioquic.buffer import Buffer
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import HandshakeCompleted
from aioquic.quic.packet import QuicErrorCode, encode_quic_version_negotiation, pull_quic_header
from cryptography import x509

from tamperscope.collector.testing import closed_udp_port, free_port
from tamperscope.lab import quicd
from tamperscope.lab.ca import Issuer, create_ca
from tamperscope.lab.farm import Response
from tamperscope.lab.quicd import Credentials, QuicServer
from tamperscope.model import failures as F
from tamperscope.netx import Trace
from tamperscope.netx.quic import handshake

LO = "127.0.0.1"
RECORD_KEYS = {
    "network", "address", "alpn", "cipher_suite", "failure", "negotiated_protocol", "no_tls_verify",
    "peer_certificates", "server_name", "t0", "t", "tags", "tls_version", "transaction_id",
    "x_verified", "x_issuer", "x_spki_sha256",
}


def run(coro: Any, limit: float = 15.0) -> Any:
    """Run ``coro`` in a fresh loop with a hard limit, so no test can hang; the test fails if an exception
    escaped a loop callback (a server's or a client's datagram handler), which asyncio would only log."""
    escaped: list[dict[str, Any]] = []

    async def bounded() -> Any:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: escaped.append(context))
        async with asyncio.timeout(limit):
            return await coro

    result = asyncio.run(bounded())
    assert not escaped, [c.get("exception") or c.get("message") for c in escaped]
    return result


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> tuple[Issuer, str]:
    """The lab CA's issuer and the path of its certificate (the client's CA bundle)."""
    d = tmp_path_factory.mktemp("quic-ca")
    create_ca(d, "lab-ca", "lab CA", "lab")
    return Issuer(d, "lab-ca", d / "certs"), str(d / "lab-ca.pem")


def _free_udp_port(host: str = LO) -> int:
    return free_port(udp=True, host=host)  # below the ephemeral range: no neighbour's socket lands there meanwhile


def _handler(host: str, path: str, local: str) -> Response:
    return Response(200, (("Content-Type", "text/plain"), ("X-Lab", "yes")), f"{host} {path} {local}".encode())


class _Server(QuicServer):
    """The lab's QuicServer, answering loopback peers only (tests never send elsewhere), remembering them."""

    def __init__(self, pick: Callable[[str], Credentials]) -> None:
        super().__init__(pick, _handler)
        self.peers: list[Any] = []
        self.goodbyes: set[tuple[Any, str]] = set()  # connections the peer closed with NO_ERROR
        self.port = 0

    def _datagram(self, data: bytes, peer: Any, local: str) -> None:
        if not ipaddress.ip_address(peer[0]).is_loopback:
            return
        self.peers.append(peer)
        super()._datagram(data, peer, local)
        entry = self.conns.get((peer, local))
        event = entry[0]._close_event if entry else None  # noqa: SLF001 - aioquic reports it after draining
        if event is not None and event.error_code == QuicErrorCode.NO_ERROR:  # a CONNECTION_CLOSE came in
            self.goodbyes.add((peer, local))


@contextlib.contextmanager
def _serving(pick: Callable[[str], Credentials], host: str = LO) -> Iterator[_Server]:
    server = _Server(pick)
    server.port = _free_udp_port(host)
    server.start(host, server.port)
    try:
        yield server
    finally:
        server.close()


class _Peer(asyncio.DatagramProtocol):
    """A UDP server answering each datagram with ``reply(datagram)``."""

    def __init__(self, reply: Callable[[bytes], list[bytes]]) -> None:
        self.reply = reply
        self.received = self.sent = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.transport is None or not ipaddress.ip_address(addr[0]).is_loopback:
            return
        self.received += 1
        for out in self.reply(data):
            self.transport.sendto(out, addr)
            self.sent += 1


@contextlib.asynccontextmanager
async def _udp_peer(reply: Callable[[bytes], list[bytes]]) -> AsyncIterator[tuple[_Peer, int]]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(lambda: _Peer(reply), local_addr=(LO, 0))
    try:
        yield proto, transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


def _initial(name: str = "raw.example") -> bytes:
    """A real client Initial datagram (padded to 1200 bytes), as a browser's first flight."""
    conn = QuicConnection(configuration=QuicConfiguration(is_client=True, alpn_protocols=["h3"], server_name=name))
    conn.connect((LO, 443), now=time.monotonic())
    return conn.datagrams_to_send(now=time.monotonic())[0][0]


def _certs(rec: dict[str, Any]) -> list[x509.Certificate]:
    return [x509.load_der_x509_certificate(base64.b64decode(c["data"])) for c in rec["peer_certificates"]]


def _sans(cert: x509.Certificate) -> list[str]:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)


def _scalars(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _scalars(v)
    elif isinstance(value, list):
        for v in value:
            yield from _scalars(v)
    else:
        yield value


# a bound on the wait, not on speed: beside another test process, 20 goodbyes took over 2 s
async def _until(cond: Callable[[], bool], limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not cond() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


# --- against the lab's QUIC server ------------------------------------------------------------------


def test_handshake_success_record(lab: tuple[Issuer, str]) -> None:
    """A verified handshake: h3, TLS 1.3, the SNI's leaf from the lab CA, and no trace of the client's address."""
    issuer, ca = lab

    async def main() -> None:
        with _serving(issuer.credentials) as server:
            async with Trace() as trace:
                trace.next_transaction_id()
                t_before = trace.now()
                rec = await handshake(LO, server.port, server_name="good.example", trace=trace, ca_bundle=ca,
                                      timeout=2.0, tags=["depth=0"])
            assert trace.quic_handshakes == [rec] and set(rec) == RECORD_KEYS
            assert rec["failure"] is None and rec["x_verified"] is True
            assert rec["negotiated_protocol"] == "h3" and rec["tls_version"] == "TLSv1.3"
            assert rec["cipher_suite"].startswith("TLS_") and rec["alpn"] == ["h3"]
            assert rec["network"] == "quic" and rec["address"] == f"{LO}:{server.port}"
            assert rec["server_name"] == "good.example" and rec["tags"] == ["depth=0"]
            assert rec["transaction_id"] == 2 and rec["no_tls_verify"] is False
            assert rec["t"] >= rec["t0"] >= t_before
            leaf, *chain = _certs(rec)
            assert _sans(leaf) == ["good.example"] and len(chain) == 1
            assert rec["x_issuer"] == "O=lab,CN=lab CA" == leaf.issuer.rfc4514_string()
            assert len(rec["x_spki_sha256"]) == 64
            client_ports = {peer[1] for peer in server.peers}
            assert client_ports and server.port not in client_ports
            for value in _scalars(rec):
                assert not isinstance(value, int) or value not in client_ports
                if isinstance(value, str):
                    assert not any(f":{p}" in value for p in client_ports)

    run(main())


def test_unknown_authority_keeps_certificates(lab: tuple[Issuer, str]) -> None:
    """Without the lab CA in the bundle the handshake completes but fails verification, keeping the chain."""
    issuer, _ = lab

    async def main() -> None:
        with _serving(issuer.credentials) as server:
            async with Trace() as trace:
                rec = await handshake(LO, server.port, server_name="good.example", trace=trace, timeout=2.0)
        assert trace.quic_handshakes == [rec]
        assert rec["failure"] == F.SSL_UNKNOWN_AUTHORITY and rec["x_verified"] is False
        assert _sans(_certs(rec)[0]) == ["good.example"] and rec["x_issuer"] == "O=lab,CN=lab CA"
        assert rec["tls_version"] == "TLSv1.3"

    run(main())


def test_wrong_hostname_keeps_certificates(lab: tuple[Issuer, str]) -> None:
    """A server presenting another name's certificate (an SNI-blind interception box) is ssl_invalid_hostname."""
    issuer, ca = lab

    async def main() -> None:
        with _serving(lambda _name: issuer.credentials("other.example")) as server:
            async with Trace() as trace:
                rec = await handshake(LO, server.port, server_name="good.example", trace=trace, ca_bundle=ca,
                                      timeout=2.0)
        assert rec["failure"] == F.SSL_INVALID_HOSTNAME and rec["x_verified"] is False
        assert _sans(_certs(rec)[0]) == ["other.example"]

    run(main())


def test_answers_from_the_address_the_client_wrote_to(lab: tuple[Issuer, str]) -> None:
    """One wildcard socket serves every local address, replying from the destination (IP_PKTINFO)."""
    issuer, ca = lab

    async def main() -> None:
        with _serving(issuer.credentials, host="0.0.0.0") as server:  # noqa: S104 - replies go to loopback only
            async with Trace() as trace:
                rec = await handshake("127.0.0.2", server.port, server_name="127.0.0.2", trace=trace, ca_bundle=ca,
                                      timeout=1.5)
        assert rec["failure"] is None and rec["address"] == f"127.0.0.2:{server.port}"

    run(main())


def test_concurrent_handshakes(lab: tuple[Issuer, str]) -> None:
    """Twenty handshakes at once, each with its own SNI, all succeed with their own certificate."""
    issuer, ca = lab
    names = [f"site{i}.example" for i in range(20)]

    async def main() -> None:
        with _serving(issuer.credentials) as server:
            async with Trace() as trace:
                recs = await asyncio.gather(*(handshake(LO, server.port, server_name=n, trace=trace, ca_bundle=ca,
                                                        timeout=3.0) for n in names))
            # each client's own account first: a handshake that failed (say, timed out) sends no NO_ERROR goodbye
            assert [r["failure"] for r in recs] == [None] * len(names)
            await _until(lambda: server.handshakes >= len(names))
            assert server.handshakes == len(names)
            # every client said goodbye: the server's side of each connection got a CONNECTION_CLOSE with
            # NO_ERROR and drains, with a timer that frees it (the draining lasts 3 PTOs, which follow the
            # measured RTT: seconds on a loaded machine, so the test does not wait for the end)
            await _until(lambda: len(server.goodbyes) >= len(names))
            silent = {p for p in server.peers} - {p for p, _ in server.goodbyes}
            assert len(server.goodbyes) == len(names), {  # (QA once saw 19 of 20: which peer, after how much)
                str(p): [server.peers.count(p), server.conns.get((p, LO)) is not None] for p in silent}
            assert set(server.conns) <= set(server.timers)
        assert [_sans(_certs(r)[0]) for r in recs] == [[n] for n in names]
        assert len(trace.quic_handshakes) == len(names)
        assert len({r["transaction_id"] for r in recs}) == len(names)

    run(main())


async def _h3_get(port: int, authority: str, path: str, *, trailers: bool = False) -> tuple[dict[bytes, bytes], bytes]:
    """A minimal HTTP/3 GET over aioquic's H3Connection (no certificate check: the server is under test),
    optionally ending the request with a trailers HEADERS frame."""
    loop = asyncio.get_running_loop()
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=authority.split(":")[0],
                               verify_mode=ssl.CERT_NONE)
    conn = QuicConnection(configuration=config)
    inbox: asyncio.Queue[bytes] = asyncio.Queue()

    class Inbox(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            inbox.put_nowait(data)

    transport, _ = await loop.create_datagram_endpoint(Inbox, remote_addr=(LO, port))
    h3 = H3Connection(conn)
    conn.connect((LO, port), now=loop.time())
    headers: dict[bytes, bytes] = {}
    body = b""
    try:
        async with asyncio.timeout(3):
            while True:
                for data, _ in conn.datagrams_to_send(now=loop.time()):
                    transport.sendto(data)
                timer = conn.get_timer()
                try:
                    data = await asyncio.wait_for(inbox.get(), None if timer is None else max(0, timer - loop.time()))
                    conn.receive_datagram(data, (LO, port), now=loop.time())
                except TimeoutError:
                    conn.handle_timer(now=loop.time())
                while (event := conn.next_event()) is not None:
                    if isinstance(event, HandshakeCompleted):
                        stream = conn.get_next_available_stream_id()
                        h3.send_headers(stream, [(b":method", b"GET"), (b":scheme", b"https"),
                                                 (b":authority", authority.encode()), (b":path", path.encode())],
                                        end_stream=not trailers)
                        if trailers:
                            h3.send_headers(stream, [(b"x-trailer", b"1")], end_stream=True)
                    for h in h3.handle_event(event):
                        if isinstance(h, HeadersReceived):
                            headers.update(h.headers)
                        elif isinstance(h, DataReceived):
                            body += h.data
                        if isinstance(h, (HeadersReceived, DataReceived)) and h.stream_ended:
                            return headers, body
    finally:
        transport.close()


def test_http3_get_served_by_handler(lab: tuple[Issuer, str]) -> None:
    """An HTTP/3 GET gets the handler's response for the authority's host (port dropped), path and local address."""
    issuer, _ = lab

    async def main() -> None:
        with _serving(issuer.credentials) as server:
            headers, body = await _h3_get(server.port, "h3.example:4433", "/hello?x=1")
        assert body == f"h3.example /hello?x=1 {LO}".encode()
        assert headers[b":status"] == b"200" and headers[b"server"] == b"tamperscope-lab"
        assert headers[b"content-length"] == str(len(body)).encode() and headers[b"x-lab"] == b"yes"

    run(main())


def test_http3_request_trailers_are_harmless(lab: tuple[Issuer, str]) -> None:
    """A request ending with trailers (a second HEADERS frame on the stream) gets one answer and breaks nothing."""
    issuer, _ = lab

    async def main() -> None:
        with _serving(issuer.credentials) as server:
            _, first = await _h3_get(server.port, "t.example", "/a", trailers=True)
            _, second = await _h3_get(server.port, "t.example", "/b")
        assert (first, second) == (f"t.example /a {LO}".encode(), f"t.example /b {LO}".encode())

    run(main())


def test_server_ignores_short_and_non_initial_datagrams(lab: tuple[Issuer, str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """No connection for a datagram under 1200 bytes, a non-Initial packet, an Initial of an unsupported
    version (aioquic would drop it without a network path, and the entry would never expire) or an unparsable
    header."""
    issuer, _ = lab
    created: list[bytes] = []

    class Counting(quicd._Connection):
        def __init__(self, **kw: Any) -> None:
            created.append(kw["original_destination_connection_id"])
            super().__init__(**kw)

    monkeypatch.setattr(quicd, "_Connection", Counting)
    cids = bytes([8]) + b"D" * 8 + bytes([8]) + b"S" * 8
    short_initial = b"\xc3\x00\x00\x00\x01" + cids + b"\x00" + b"\x40\x64" + os.urandom(100)  # valid header, 118 B
    handshake_pkt = b"\xe3\x00\x00\x00\x01" + cids + b"\x44\x9c" + os.urandom(1180)  # Handshake type
    zero_rtt = b"\xd3\x00\x00\x00\x01" + cids + b"\x44\x9c" + os.urandom(1180)
    one_rtt = b"\x43" + os.urandom(1250)
    bad_cid = b"\xc3\x00\x00\x00\x01\xff" + os.urandom(1250)  # CID longer than 20 bytes
    real = _initial()
    grease = real[:1] + b"\x0a\x1a\x2a\x3a" + _initial()[5:]  # a real Initial of a version nobody speaks
    real_dcid = pull_quic_header(Buffer(data=real)).destination_cid

    async def main() -> None:
        with _serving(issuer.credentials) as server, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((LO, 0))
            for data in (short_initial, handshake_pkt, zero_rtt, one_rtt, bad_cid, grease, real):
                s.sendto(data, (LO, server.port))
            await _until(lambda: bool(created))
            await asyncio.sleep(0.05)
            assert created == [real_dcid]  # the real Initial, sent last, proves the others were read
            assert len(server.conns) == 1

    run(main())


def test_server_survives_hostile_initials(lab: tuple[Issuer, str]) -> None:
    """Initial-sized garbage, with or without a valid Initial header, leaves the server serving handshakes."""
    issuer, ca = lab
    head = b"\xc3\x00\x00\x00\x01" + bytes([8]) + os.urandom(8) + bytes([8]) + os.urandom(8) + b"\x00"
    forged = head + (0x4000 | 1174).to_bytes(2, "big") + os.urandom(1174)  # a parsable Initial header, 1200 B

    async def main() -> None:
        with _serving(issuer.credentials) as server, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((LO, 0))
            for data in (forged, os.urandom(1400), _initial(), os.urandom(1300), b"\xc0" * 1200, b""):
                s.sendto(data, (LO, server.port))
            await asyncio.sleep(0.05)
            async with Trace() as trace:
                rec = await handshake(LO, server.port, server_name="after.example", trace=trace, ca_bundle=ca,
                                      timeout=2.0)
        assert rec["failure"] is None

    run(main())


def test_server_caps_connections(lab: tuple[Issuer, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Initials from more peers than MAX_CONNECTIONS get no more than MAX_CONNECTIONS connections."""
    issuer, _ = lab
    monkeypatch.setattr(quicd, "MAX_CONNECTIONS", 3)

    async def main() -> None:
        with _serving(issuer.credentials) as server, contextlib.ExitStack() as stack:
            socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) for _ in range(6)]
            for s in socks:
                s.bind((LO, 0))
                s.sendto(_initial(), (LO, server.port))
            await _until(lambda: len(server.peers) >= len(socks))
            await asyncio.sleep(0.05)
            assert len(server.peers) == len(socks)
            assert {peer for peer, _ in server.conns} == {s.getsockname() for s in socks[:3]}

    run(main())


# --- failures -------------------------------------------------------------------------------------


@pytest.mark.wallclock  # bounds wall-clock time: not among the low-priority tests (scripts/test.sh)
def test_closed_port_is_refused_quickly() -> None:
    """The ICMP port unreachable of a closed UDP port ends the handshake at once as connection_refused."""

    async def main() -> None:
        async with Trace() as trace:
            start = time.monotonic()
            rec = await handshake(LO, closed_udp_port(), server_name="x.example", trace=trace, timeout=2.0)
        assert time.monotonic() - start < 1.0
        assert trace.quic_handshakes == [rec] and rec["failure"] == F.CONNECTION_REFUSED
        assert rec["peer_certificates"] is None and rec["tls_version"] == "" and rec["cipher_suite"] == ""
        assert rec["negotiated_protocol"] == "" and rec["x_verified"] is False and rec["x_issuer"] is None

    run(main())


@pytest.mark.wallclock  # bounds wall-clock time: not among the low-priority tests (scripts/test.sh)
def test_deadline_is_ours() -> None:
    """The caller's deadline ends the handshake, even one shorter than aioquic's idle timeout, and not before."""

    async def main() -> None:
        async with _udp_peer(lambda _d: []) as (_, port), Trace() as trace:
            start = time.monotonic()
            rec = await handshake(LO, port, server_name="x.example", trace=trace, timeout=0.3)
            elapsed = time.monotonic() - start
        assert rec["failure"] == F.GENERIC_TIMEOUT_ERROR and 0.29 <= elapsed < 0.7

    run(main())


def _vn(data: bytes) -> list[bytes]:
    """A Version Negotiation packet offering only versions the client does not speak."""
    header = pull_quic_header(Buffer(data=data), host_cid_length=8)
    return [encode_quic_version_negotiation(source_cid=header.destination_cid, destination_cid=header.source_cid,
                                            supported_versions=[0x0A1A2A3A, 0xFF00001D])]


def _flood(data: bytes) -> list[bytes]:
    """Hundreds of datagrams per client datagram: random bytes and Initials/short packets addressed to it."""
    scid = pull_quic_header(Buffer(data=data), host_cid_length=8).source_cid
    out = []
    for i in range(300):
        if i % 3 == 0:
            out.append(os.urandom(1 + i * 4))
        elif i % 3 == 1:
            head = b"\xc1\x00\x00\x00\x01" + bytes([len(scid)]) + scid + b"\x08" + os.urandom(8) + b"\x00\x44\x00"
            out.append(head + os.urandom(1024))
        else:
            out.append(b"\x41" + scid + os.urandom(200))
    return out


@pytest.mark.parametrize(
    ("reply", "expected", "min_sent"),
    [
        pytest.param(lambda _d: [], F.GENERIC_TIMEOUT_ERROR, 0, id="silent"),
        pytest.param(lambda _d: [os.urandom(1 + int.from_bytes(os.urandom(2)) % 1400)], F.GENERIC_TIMEOUT_ERROR, 1,
                     id="garbage"),
        pytest.param(lambda d: [d], F.GENERIC_TIMEOUT_ERROR, 1, id="echo"),
        pytest.param(_vn, F.QUIC_INCOMPATIBLE_VERSION, 1, id="version-negotiation"),
        pytest.param(_flood, F.GENERIC_TIMEOUT_ERROR, 600, id="flood"),
    ],
)
@pytest.mark.wallclock  # bounds wall-clock time: not among the low-priority tests (scripts/test.sh)
def test_hostile_udp_servers(reply: Callable[[bytes], list[bytes]], expected: str, min_sent: int) -> None:
    """A UDP peer that is silent, answers garbage, echoes, refuses our versions or floods ends within the timeout
    with one record and a failure string, never an exception or a hang."""
    timeout = 1.0

    async def main() -> None:
        async with _udp_peer(reply) as (peer, port), Trace() as trace:
            start = time.monotonic()
            rec = await handshake(LO, port, server_name="x.example", trace=trace, timeout=timeout)
            elapsed = time.monotonic() - start
        assert peer.received >= 1 and peer.sent >= min_sent
        if expected == F.GENERIC_TIMEOUT_ERROR:
            assert timeout * 0.95 <= elapsed < timeout + 0.5
        else:
            assert elapsed < timeout / 2
        assert trace.quic_handshakes == [rec] and rec["failure"] == expected
        assert rec["x_verified"] is False and rec["peer_certificates"] is None

    run(main())


def test_a_chain_already_verified_over_tls_is_not_verified_again_and_no_other_is_trusted() -> None:
    """The same chain, from the same address, for the same name, verified by OpenSSL over TLS: the QUIC record may
    reuse that. A different chain, name, address, or a TLS record that failed or was unverified may not."""
    from tamperscope.netx.quic import _verified_over_tls
    from tamperscope.netx.trace import binary

    certs = [binary(b"leaf"), binary(b"ca")]
    ok = {"address": "198.18.0.7:443", "server_name": "a.example", "failure": None, "x_verified": True,
          "no_tls_verify": False, "peer_certificates": certs}
    trace = Trace()
    trace.tls_handshakes.append(ok)
    assert _verified_over_tls(trace, "198.18.0.7", "a.example", certs)
    assert not _verified_over_tls(trace, "198.18.0.7", "a.example", [binary(b"other"), binary(b"ca")])
    assert not _verified_over_tls(trace, "198.18.0.7", "b.example", certs)
    assert not _verified_over_tls(trace, "198.18.0.8", "a.example", certs)
    assert not _verified_over_tls(trace, "198.18.0.7", None, certs)
    assert not _verified_over_tls(trace, "198.18.0.7", "a.example", [])
    for bad in ({"failure": "ssl_unknown_authority"}, {"x_verified": False}, {"no_tls_verify": True}):
        trace.tls_handshakes[:] = [{**ok, **bad}]
        assert not _verified_over_tls(trace, "198.18.0.7", "a.example", certs), bad
