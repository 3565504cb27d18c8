"""netx.quic's behaviour that its other tests leave open: loss recovery over a lossy path, IPv6, the record of a
handshake without a name, the goodbye sent for a bad certificate, a checker that cannot read a chain, the
socket of a handshake that could not start, aioquic raising on a datagram, and the key shares offered."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aioquic.buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import pull_quic_header
from aioquic.tls import Group
from cryptography.hazmat.primitives.asymmetric import ec

from tamperscope.collector.testing import closed_udp_port
from tamperscope.lab.ca import Issuer
from tamperscope.model import failures as F
from tamperscope.netx import Trace, quic
from tamperscope.netx.quic import _verified_over_tls, handshake
from tamperscope.netx.trace import binary
from tamperscope.wire.quicinitial import initial_hello
from tamperscope.wire.tlshello import ClientHello
from tests.unit.test_netx_quic import (  # noqa: F401 - lab: a fixture, used by name
    LO,
    _free_udp_port,
    _Server,
    _serving,
    _udp_peer,
    _until,
    lab,
    run,
)

FDS = Path("/proc/self/fd")


@pytest.fixture
def quic_lab(request: pytest.FixtureRequest) -> tuple[Issuer, str]:
    """The lab CA's issuer and bundle: test_netx_quic's module-scoped `lab` fixture, imported above."""
    return request.getfixturevalue("lab")  # type: ignore[no-any-return]


class _Relay(asyncio.DatagramProtocol):
    """A loopback UDP relay in front of ``port`` that drops the client's first ``drop`` datagrams (a lossy path)."""

    def __init__(self, port: int, drop: int) -> None:
        self.port = port
        self.drop = drop
        self.seen = 0
        self.client: Any = None
        self.front: asyncio.DatagramTransport | None = None
        self.back: asyncio.DatagramTransport | None = None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not ipaddress.ip_address(addr[0]).is_loopback or self.front is None or self.back is None:
            return
        self.client = addr
        self.seen += 1
        if self.seen > self.drop:
            self.back.sendto(data)


class _Back(asyncio.DatagramProtocol):
    def __init__(self, relay: _Relay) -> None:
        self.relay = relay

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.relay.front is not None and self.relay.client is not None:
            self.relay.front.sendto(data, self.relay.client)


@contextlib.asynccontextmanager
async def _relay(port: int, drop: int) -> AsyncIterator[tuple[_Relay, int]]:
    loop = asyncio.get_running_loop()
    relay = _Relay(port, drop)
    front, _ = await loop.create_datagram_endpoint(lambda: relay, local_addr=(LO, 0))
    back, _ = await loop.create_datagram_endpoint(lambda: _Back(relay), remote_addr=(LO, port))
    relay.front, relay.back = front, back  # type: ignore[assignment]
    try:
        yield relay, front.get_extra_info("sockname")[1]
    finally:
        front.close()
        back.close()


def test_a_lost_initial_is_sent_again_and_the_handshake_completes(quic_lab: tuple[Issuer, str]) -> None:
    """The path loses the client's first datagram: aioquic's retransmission timer, which the handshake must wake
    for, sends the Initial again and the handshake completes within the deadline."""
    issuer, ca = quic_lab

    async def main() -> None:
        with _serving(issuer.credentials) as server:
            async with _relay(server.port, drop=1) as (relay, port), Trace() as trace:
                rec = await handshake(LO, port, server_name="lossy.example", trace=trace, ca_bundle=ca, timeout=10.0)
        assert relay.seen >= 2
        assert rec["failure"] is None and rec["negotiated_protocol"] == "h3"

    run(main(), limit=20.0)


def test_an_ipv6_address_gets_an_ipv6_socket() -> None:
    """An IPv6 literal is dialled over IPv6: a closed port on ::1 is connection_refused, not a socket error."""
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as held:
        held.bind(("::1", 0))
        held.connect(("::1", 9))  # held, and deaf to us: its port answers with ICMPv6 port unreachable
        port = held.getsockname()[1]

        async def main() -> None:
            async with Trace() as trace:
                rec = await handshake("::1", port, server_name="v6.example", trace=trace, timeout=10.0)
            assert rec["failure"] == F.CONNECTION_REFUSED and rec["address"] == f"[::1]:{port}"

        run(main())


def test_an_ipv6_chain_verified_over_tls_is_not_verified_again() -> None:
    """An IPv6 TLS record's address is written "[ip]:port": it names the same address as the bare literal."""
    certs = [binary(b"leaf"), binary(b"ca")]
    trace = Trace()
    trace.tls_handshakes.append({"address": "[2001:db8::7]:443", "server_name": "a.example", "failure": None,
                                 "x_verified": True, "no_tls_verify": False, "peer_certificates": certs})
    assert _verified_over_tls(trace, "2001:db8::7", "a.example", certs)
    assert not _verified_over_tls(trace, "2001:db8::8", "a.example", certs)


def test_a_handshake_without_a_name_records_an_empty_one(quic_lab: tuple[Issuer, str]) -> None:
    """No server name (an address-only URL): the record's server_name is "" as OONI writes it, never null, and
    an empty name is no name (no empty SNI)."""
    issuer, _ = quic_lab

    async def main() -> None:
        with _serving(issuer.credentials) as server:
            async with Trace() as trace:
                recs = [await handshake(LO, server.port, server_name=name, trace=trace, timeout=10.0)
                        for name in (None, "")]
        for rec in recs:
            assert rec["server_name"] == ""
            assert rec["peer_certificates"]  # the handshake completed; only the name check can fail
            assert rec["negotiated_protocol"] == "h3" and rec["tls_version"] == "TLSv1.3"

    run(main(), limit=30.0)


class _Closes(_Server):
    """The test server, remembering the error code of every CONNECTION_CLOSE its clients send."""

    def __init__(self, pick: Callable[[str], Any]) -> None:
        super().__init__(pick)
        self.codes: list[int] = []

    def _datagram(self, data: bytes, peer: Any, local: str) -> None:
        super()._datagram(data, peer, local)
        entry = self.conns.get((peer, local))
        event = entry[0]._close_event if entry else None  # noqa: SLF001 - aioquic reports it after draining
        if event is not None and event.error_code not in self.codes:
            self.codes.append(event.error_code)


def test_a_bad_certificate_is_said_with_tls_bad_certificate(quic_lab: tuple[Issuer, str]) -> None:
    """A chain that does not verify ends with QUIC's crypto error for TLS's bad_certificate alert (0x100 + 42), as a
    browser says it; a good one with NO_ERROR."""
    issuer, ca = quic_lab

    async def main() -> None:
        for bundle, code in ((None, 0x100 + 42), (ca, 0)):
            server = _Closes(issuer.credentials)
            server.port = _free_udp_port()
            server.start(LO, server.port)
            try:
                async with Trace() as trace:
                    rec = await handshake(LO, server.port, server_name="bad.example", trace=trace, ca_bundle=bundle,
                                          timeout=10.0)
                assert (rec["failure"] is None) == (bundle is not None)
                await _until(lambda: bool(server.codes))
                assert server.codes == [code]
            finally:
                server.close()

    run(main(), limit=40.0)


def test_a_timeout_is_no_bad_certificate(monkeypatch: pytest.MonkeyPatch) -> None:
    """A handshake that ran out of time closes without blaming the certificate: no bad_certificate alert."""
    closes: list[int] = []

    class Client(quic._Client):
        def close(self, error_code: int = 0, frame_type: int | None = None, reason_phrase: str = "") -> None:
            closes.append(error_code)
            super().close(error_code=error_code, frame_type=frame_type, reason_phrase=reason_phrase)

    monkeypatch.setattr(quic, "_Client", Client)

    async def main() -> None:
        async with _udp_peer(lambda _d: []) as (_, port), Trace() as trace:
            rec = await handshake(LO, port, server_name="x.example", trace=trace, timeout=0.5)
        assert rec["failure"] == F.GENERIC_TIMEOUT_ERROR
        assert 0x100 + 42 not in closes

    run(main())


def test_a_chain_the_checker_cannot_read_is_an_invalid_certificate(quic_lab: tuple[Issuer, str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """When the offline check itself raises on the server's chain, the record says ssl_invalid_certificate."""
    issuer, ca = quic_lab

    def broken(*_: Any) -> str | None:
        raise ValueError("unreadable certificate")

    monkeypatch.setattr(quic, "verify_offline", broken)

    async def main() -> None:
        with _serving(issuer.credentials) as server:
            async with Trace() as trace:
                rec = await handshake(LO, server.port, server_name="odd.example", trace=trace, ca_bundle=ca,
                                      timeout=10.0)
        assert rec["failure"] == F.SSL_INVALID_CERTIFICATE and rec["x_verified"] is False
        assert rec["peer_certificates"]

    run(main())


def test_a_handshake_that_cannot_start_leaves_no_socket_open() -> None:
    """A port the socket cannot connect to fails the handshake at once, and its socket goes with it."""

    async def main() -> None:
        before = len(os.listdir(FDS))
        for _ in range(20):
            async with Trace() as trace:
                rec = await handshake(LO, 70000, server_name="x.example", trace=trace, timeout=10.0)
            assert rec["failure"] is not None and rec["failure"] != F.GENERIC_TIMEOUT_ERROR
        # 20 with the leak; slack for what other threads of the run may open meanwhile
        assert len(os.listdir(FDS)) - before <= 2

    run(main())


def test_aioquic_raising_on_a_datagram_ends_the_handshake(monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception from aioquic's datagram handling ends the handshake with that exception's name, not a wait for
    the deadline."""

    class Client(quic._Client):
        def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
            raise RuntimeError("boom")

    monkeypatch.setattr(quic, "_Client", Client)

    async def main() -> None:
        async with _udp_peer(lambda d: [d]) as (peer, port), Trace() as trace:
            rec = await handshake(LO, port, server_name="x.example", trace=trace, timeout=10.0)
        assert peer.sent >= 1
        assert rec["failure"] == F.unknown("quic: RuntimeError")

    run(main())


def test_key_shares_are_x25519_and_p256_only() -> None:
    """The client offers the groups browsers offer, X25519 and P-256, and none of aioquic's others."""
    config = QuicConfiguration(is_client=True, alpn_protocols=["h3"], server_name="a.example",
                               verify_mode=ssl.CERT_NONE)
    conn = quic._Client(configuration=config)
    conn.connect((LO, 443), now=time.monotonic())
    assert sorted(conn.tls._supported_groups) == sorted([Group.X25519, Group.SECP256R1])  # noqa: SLF001


def test_an_empty_name_sends_no_sni() -> None:
    """An empty server name is no name: the Initial on the wire (the handshake's, and the one `locate` sends)
    carries no server_name extension, not an empty one a censor could read as a name."""
    sent: list[bytes] = []

    def keep(d: bytes) -> list[bytes]:
        sent.append(d)
        return []

    async def main() -> None:
        async with _udp_peer(keep) as (_, port), Trace() as trace:
            rec = await handshake(LO, port, server_name="", trace=trace, timeout=0.5)
        assert rec["failure"] == F.GENERIC_TIMEOUT_ERROR

    run(main())
    hello = initial_hello(sent[0])
    assert isinstance(hello, ClientHello) and hello.sni is None and hello.alpn == ("h3",)
    hello = initial_hello(quic.initial_datagram(""))
    assert isinstance(hello, ClientHello) and hello.sni is None


def _h3_server(issuer: Issuer, datagrams: int = 1 << 30, key: Any = None) -> Callable[[bytes], list[bytes]]:
    """A reply function for `_udp_peer`: an aioquic h3 server with the lab's certificate for "plain.example"
    (signing with ``key`` if given, not the certificate's own), sending at most ``datagrams`` datagrams in all."""
    state: dict[str, Any] = {"sent": 0}
    addr = (LO, 1)  # aioquic's idea of the peer: the replies go back to the client whatever it says

    def reply(data: bytes) -> list[bytes]:
        if "conn" not in state:
            config = QuicConfiguration(is_client=False, alpn_protocols=["h3"])
            config.certificate, config.certificate_chain, config.private_key = issuer.credentials("plain.example")
            config.private_key = key or config.private_key
            cid = pull_quic_header(Buffer(data=data), host_cid_length=8).destination_cid
            state["conn"] = QuicConnection(configuration=config, original_destination_connection_id=cid)
        conn = state["conn"]
        conn.receive_datagram(data, addr, now=time.monotonic())
        out = [d for d, _ in conn.datagrams_to_send(now=time.monotonic())]
        out = out[: max(0, datagrams - state["sent"])]
        state["sent"] += len(out)
        return out

    return reply


def test_a_certificate_the_server_cannot_sign_for_is_kept_with_its_tls_version(quic_lab: tuple[Issuer, str]
                                                                              ) -> None:
    """A server whose handshake signature does not match its certificate (an impostor replaying a site's chain):
    the handshake fails, the chain it showed is kept, and the record says TLSv1.3 but names no cipher suite nor
    protocol (nothing was negotiated)."""
    issuer, ca = quic_lab
    public = issuer.credentials("plain.example")[0].public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)  # the lab's leaves are EC: another key of that curve
    key = ec.generate_private_key(public.curve)

    async def main() -> None:
        async with _udp_peer(_h3_server(issuer, key=key)) as (_, port), Trace() as trace:
            rec = await handshake(LO, port, server_name="plain.example", trace=trace, ca_bundle=ca, timeout=10.0)
        assert rec["failure"] not in (None, F.GENERIC_TIMEOUT_ERROR) and rec["x_verified"] is False
        assert rec["peer_certificates"] and rec["tls_version"] == "TLSv1.3"
        assert rec["cipher_suite"] == "" and rec["negotiated_protocol"] == ""

    run(main())


def test_a_handshake_cut_after_the_server_hello_names_no_cipher_suite(quic_lab: tuple[Issuer, str]) -> None:
    """The server's first datagram (its hello, the cipher suite chosen) arrives and nothing after: the handshake
    times out, and its record claims no cipher suite, as for any handshake that did not complete."""
    issuer, ca = quic_lab

    async def main() -> None:
        async with _udp_peer(_h3_server(issuer, datagrams=1)) as (peer, port), Trace() as trace:
            rec = await handshake(LO, port, server_name="plain.example", trace=trace, ca_bundle=ca, timeout=2.0)
        assert peer.sent == 1
        assert rec["failure"] == F.GENERIC_TIMEOUT_ERROR
        assert rec["cipher_suite"] == "" and rec["negotiated_protocol"] == ""

    run(main())


def test_what_comes_back_wakes_the_handshake_without_a_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The handshake wakes for what the socket reads (here an ICMP port unreachable), not only for aioquic's next
    timer: with no timer at all, a closed port is still refused rather than left to the deadline."""

    class Client(quic._Client):
        def get_timer(self) -> float | None:
            return None

    monkeypatch.setattr(quic, "_Client", Client)

    async def main() -> None:
        async with Trace() as trace:
            rec = await handshake(LO, closed_udp_port(), server_name="x.example", trace=trace, timeout=5.0)
        assert rec["failure"] == F.CONNECTION_REFUSED

    run(main())


def test_an_error_on_send_ends_the_handshake(monkeypatch: pytest.MonkeyPatch) -> None:
    """A send that fails other than for a full buffer (here refused: an ICMP error reported on send) ends the
    handshake with that failure, not a wait for the deadline."""

    class Refusing:
        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock

        def send(self, data: bytes) -> int:
            raise ConnectionRefusedError(111, "Connection refused")

        def __getattr__(self, name: str) -> Any:
            return getattr(self.sock, name)

    class Sock(quic._Socket):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self.sock = Refusing(self.sock)  # type: ignore[assignment]

    monkeypatch.setattr(quic, "_Socket", Sock)

    async def main() -> None:
        async with _udp_peer(lambda _d: []) as (_, port), Trace() as trace:
            rec = await handshake(LO, port, server_name="x.example", trace=trace, timeout=5.0)
        assert rec["failure"] == F.CONNECTION_REFUSED

    run(main())
