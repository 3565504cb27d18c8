"""Traced QUIC handshakes (HTTP/3's transport), recorded in ``quic_handshakes`` as OONI does.

A censor that cannot read TLS over TCP any better than before may still drop
QUIC wholesale (UDP to port 443) or read the SNI of its Initial packet, whose
keys anyone can derive. Either way the TCP and TLS steps succeed and only this
step tells. The handshake is aioquic's state machine driven over our own
connected UDP socket, so that:

- an ICMP port unreachable comes back as ``connection_refused``;
- only the server's own datagrams are fed to the state machine;
- the deadline is ours (``generic_timeout_error``), with aioquic's loss
  recovery retransmitting the Initial meanwhile, as a browser would;
- the certificates are kept even when they do not verify: aioquic is told not
  to verify, and the chain is checked afterwards with the same offline check
  ``netx.tls`` uses (``ssl_unknown_authority``, ``ssl_invalid_hostname``, ...),
  so a QUIC interception box leaves the same evidence as a TLS one.

A server's CONNECTION_CLOSE is classified by ``netx.classify`` like every
other failure. The record carries no local address.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Sequence
from typing import Any

from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.tls import Group

from tamperscope.model import failures as F
from tamperscope.netx.classify import QUICClosed, classify
from tamperscope.netx.tls import leaf_info, verify_offline
from tamperscope.netx.trace import Record, Trace, binary, endpoint

DEFAULT_ALPN = ("h3",)
DEFAULT_QUIC_TIMEOUT = 10.0
# aioquic names the suites by their IANA numbers; OONI writes the IANA names.
_SUITES = {0x1301: "TLS_AES_128_GCM_SHA256", 0x1302: "TLS_AES_256_GCM_SHA384",
           0x1303: "TLS_CHACHA20_POLY1305_SHA256"}


class _Client(QuicConnection):
    """aioquic's client, offering key shares for X25519 and P-256 only, as browsers do: aioquic also makes P-384
    and X448 keys for every handshake, a third of its CPU, which a probe making thousands of them cannot spare."""

    def _initialize(self, peer_cid: bytes) -> None:
        super()._initialize(peer_cid)
        groups = getattr(self.tls, "_supported_groups", None)
        if isinstance(groups, list) and Group.X25519 in groups:
            self.tls._supported_groups = [g for g in groups if g in (Group.X25519, Group.SECP256R1)]


class _Socket:
    """A connected, non-blocking UDP socket that the loop reads into one QUIC connection. A plain socket and
    add_reader, not a datagram transport: a probe makes thousands of handshakes, and the transport's machinery
    cost as much as a third of each."""

    def __init__(self, conn: QuicConnection, loop: asyncio.AbstractEventLoop, ip: str, port: int) -> None:
        self.conn = conn
        self.loop = loop
        self.addr = (ip, port)
        self.wake: asyncio.Future[None] = loop.create_future()
        self.error: OSError | None = None
        self.sock = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            self.sock.connect(self.addr)  # only the server's datagrams, and its ICMP errors, come back
            loop.add_reader(self.sock.fileno(), self._readable)
        except BaseException:
            self.sock.close()
            raise
        self.closed = False

    def _readable(self) -> None:
        for _ in range(64):  # then let the loop breathe
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # an ICMP error on a connected socket: refused, unreachable
                self.error = self.error or exc
                break
            try:
                self.conn.receive_datagram(data, self.addr, now=self.loop.time())
            except Exception as exc:  # noqa: BLE001 - aioquic drops garbage itself; anything else ends it
                self.error = self.error or OSError(f"quic: {type(exc).__name__}")
                break
        self.awake()

    def awake(self) -> None:
        if not self.wake.done():
            self.wake.set_result(None)

    def flush(self) -> None:
        if self.closed:
            return
        for data, _ in self.conn.datagrams_to_send(now=self.loop.time()):
            try:
                self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                continue  # a full socket buffer loses the datagram, as the network may: aioquic resends
            except OSError as exc:
                self.error = self.error or exc
                break

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


async def handshake(ip: str, port: int, *, server_name: str | None, trace: Trace,
                    alpn: Sequence[str] = DEFAULT_ALPN, ca_bundle: str | None = None,
                    timeout: float = DEFAULT_QUIC_TIMEOUT, tags: Sequence[str] = ()) -> Record:
    """A QUIC handshake with ``ip:port`` and SNI ``server_name``, appended to ``trace.quic_handshakes``.

    Returns the record; its ``failure`` is ``None`` only when the handshake completed
    and the certificate verified for ``server_name``. The connection is closed right
    after: the handshake is the measurement.
    """
    loop = asyncio.get_running_loop()
    config = QuicConfiguration(is_client=True, alpn_protocols=list(alpn), server_name=server_name or None,
                               verify_mode=ssl.CERT_NONE, idle_timeout=max(1.0, timeout))
    conn = _Client(configuration=config)
    tid = trace.next_transaction_id()
    t0 = trace.now()
    failure: str | None = None
    negotiated = ""
    proto: _Socket | None = None
    try:
        async with asyncio.timeout(timeout):
            proto = _Socket(conn, loop, ip, port)
            negotiated = await _drive(conn, proto, (ip, port), loop)
    except Exception as exc:  # noqa: BLE001 - every failure becomes the record's failure string
        failure = classify(exc, operation=F.QUIC_HANDSHAKE)
    except BaseException:  # cancelled (a measurement's deadline): the socket and its reader go all the same
        if proto is not None:
            proto.close()
        raise
    chain = _peer_chain(conn)
    certs = [binary(der) for der in chain]
    if failure is None and not _verified_over_tls(trace, ip, server_name, certs):
        try:
            failure = verify_offline(chain, server_name, ca_bundle)
        except Exception:  # noqa: BLE001 - a certificate the checker cannot read is a bad certificate
            failure = F.SSL_INVALID_CERTIFICATE
    _close(conn, proto, failure)
    issuer, spki = leaf_info(chain[0]) if chain else (None, None)
    suite = getattr(getattr(getattr(conn, "tls", None), "key_schedule", None), "cipher_suite", None)
    record: Record = {
        "network": "quic", "address": endpoint(ip, port), "alpn": list(alpn),
        "cipher_suite": _SUITES.get(int(suite), "") if suite is not None and negotiated else "",
        "failure": failure, "negotiated_protocol": negotiated, "no_tls_verify": False,
        "peer_certificates": certs or None,
        "server_name": server_name or "", "t0": t0, "t": trace.now(), "tags": list(tags),
        "tls_version": "TLSv1.3" if negotiated or chain else "", "transaction_id": tid,
        "x_verified": failure is None, "x_issuer": issuer, "x_spki_sha256": spki,
    }
    trace.quic_handshakes.append(record)
    return record


def initial_datagram(server_name: str | None, alpn: Sequence[str] = DEFAULT_ALPN) -> bytes:
    """The first datagram a QUIC client sends (its Initial, ClientHello inside, padded to 1200 bytes): what
    ``locate --layer quic`` sends with a limited TTL. Nothing is sent here."""
    import time

    config = QuicConfiguration(is_client=True, alpn_protocols=list(alpn), server_name=server_name or None,
                               verify_mode=ssl.CERT_NONE)
    conn = QuicConnection(configuration=config)
    conn.connect(("198.18.0.1", 443), now=time.monotonic())  # nothing is sent; no address goes in the packet
    return conn.datagrams_to_send(now=time.monotonic())[0][0]


async def _drive(conn: QuicConnection, proto: _Socket, addr: tuple[str, int], loop: asyncio.AbstractEventLoop) -> str:
    """Run the handshake to its end; the negotiated ALPN, or raise what ended it."""
    conn.connect(addr, now=loop.time())
    while True:
        proto.flush()
        event = conn.next_event()
        while event is not None:
            if isinstance(event, events.HandshakeCompleted):
                return event.alpn_protocol or ""
            if isinstance(event, events.ConnectionTerminated):
                raise QUICClosed(event.error_code, event.reason_phrase)
            event = conn.next_event()
        if proto.error is not None:
            raise proto.error
        # sleep until a datagram, an ICMP error or aioquic's next timer (retransmission, idle): one future, no
        # task per wait (a probe makes thousands of handshakes)
        proto.wake = loop.create_future()
        timer = conn.get_timer()
        alarm = loop.call_at(timer, proto.awake) if timer is not None else None
        try:
            await proto.wake
        finally:
            if alarm is not None:
                alarm.cancel()
        timer = conn.get_timer()
        if timer is not None and loop.time() >= timer:
            conn.handle_timer(now=loop.time())


def _verified_over_tls(trace: Trace, ip: str, server_name: str | None, certs: list[Any]) -> bool:
    """Whether this trace already verified the very same chain from the same address for the same name over TLS
    (a site shows one certificate over TCP and QUIC): checking it again would give the same answer."""
    if not certs or not server_name:
        return False
    for h in trace.tls_handshakes:
        if (h.get("failure") is None and h.get("x_verified") is True and h.get("no_tls_verify") is False
                and h.get("server_name") == server_name and h.get("peer_certificates") == certs
                and str(h.get("address", "")).rsplit(":", 1)[0].strip("[]") == ip):
            return True
    return False


def _peer_chain(conn: QuicConnection) -> tuple[bytes, ...]:
    """The certificates the server sent (DER, leaf first), whether or not they verify."""
    tls = getattr(conn, "tls", None)
    leaf = getattr(tls, "_peer_certificate", None)
    if leaf is None:
        return ()
    from cryptography.hazmat.primitives.serialization import Encoding

    rest = getattr(tls, "_peer_certificate_chain", None) or []
    return tuple(c.public_bytes(Encoding.DER) for c in [leaf, *rest])


def _close(conn: QuicConnection, proto: _Socket | None, failure: str | None) -> None:
    """Say goodbye (a bad certificate gets TLS's bad_certificate alert, as a browser sends) and close."""
    try:
        if failure is None:
            conn.close(error_code=0, reason_phrase="")
        elif failure.startswith("ssl_"):
            conn.close(error_code=0x100 + 42, reason_phrase="bad certificate")
        if proto is not None:
            proto.flush()
    except Exception:  # noqa: BLE001 - closing a connection that never started has nothing to send
        pass
    finally:
        if proto is not None:
            proto.close()


__all__ = ["DEFAULT_ALPN", "DEFAULT_QUIC_TIMEOUT", "handshake", "initial_datagram"]
