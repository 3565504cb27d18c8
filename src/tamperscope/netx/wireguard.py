"""WireGuard's handshake over UDP: can this WireGuard server be used from here?

A handshake initiation (`wire.wireguard`) goes to the server from a new UDP socket, and a new one (a fresh
ephemeral key and timestamp: the server ignores a replayed one) each `RETRY` seconds until the deadline. The
handshake is done when an answer opens with our keys (a handshake response), or when the server answers with a
cookie (it is under load: reached all the same). Datagrams that are neither are counted and ignored.

With ``junk`` > 0 the socket first sends that many datagrams of random bytes (`junk_datagram`: a type byte no
WireGuard message has, so the server drops them unread), as AmneziaWG's clients do: DPI that judges a UDP flow
by its first datagram, as Russia's TSPU did, then lets the initiation through. The server is the same and so are
the keys: only the flow's first datagram differs.

Each datagram sent and received is a ``write_to``/``read_from`` in ``network_events`` (no content: the packets
hold keys' public halves and the initiation identifies the client to its server).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..model import failures as F
from ..wire import wireguard as W
from .classify import classify
from .dns import connected_udp
from .trace import Trace, endpoint

RETRY = 1.0  # seconds between initiations (WireGuard's own client waits 5 s: a measurement has less time)
MAX_IGNORED_EVENTS = 8  # datagrams that were no answer, noted in network_events (then only counted)
JUNK_SIZES = (24, 160)  # bytes of a junk datagram, at random between these (AmneziaWG's Jmin/Jmax are alike)


@dataclass(frozen=True)
class Keys:
    """What the client's configuration gives for one peer (never recorded)."""

    private: bytes = field(repr=False)  # the client's [Interface] PrivateKey
    server_public: bytes  # the peer's PublicKey
    psk: bytes = field(default=bytes(32), repr=False)  # the peer's PresharedKey, zeros when there is none


@dataclass(frozen=True)
class Handshake:
    """One handshake attempt: ``failure`` null when the server answered. ``answer`` is "response" (it opened
    with our keys) or "cookie" (the server is under load), None without one."""

    failure: str | None
    answer: str | None
    address: str  # the server's ip:port
    initiations: int  # sent, retransmissions included
    junk: int  # junk datagrams sent before the first initiation
    ignored: int  # datagrams that were no answer to us
    t: float | None  # seconds from the first initiation to the answer


def junk_datagram() -> bytes:
    """Random bytes that no WireGuard message starts with (types 1 to 4), of a random size."""
    size = JUNK_SIZES[0] + secrets.randbelow(JUNK_SIZES[1] - JUNK_SIZES[0] + 1)
    first = 5 + secrets.randbelow(251)
    return bytes([first]) + os.urandom(size - 1)


async def handshake(ip: str, port: int, keys: Keys, *, trace: Trace, timeout: float, junk: int = 0,
                    tags: Sequence[str] = ()) -> Handshake:
    """WireGuard's handshake with the server at ``ip:port`` (numeric) within ``timeout`` seconds."""
    tid = trace.next_transaction_id()
    address = endpoint(ip, port)
    loop = asyncio.get_running_loop()
    transport: asyncio.DatagramTransport | None = None
    sent = ignored = 0
    started: float | None = None
    extra = {"tags": list(tags)} if tags else None

    def note(op: str, size: int, more: dict[str, object] | None = None) -> None:
        trace.add_network_event(op, t0=trace.now(), transaction_id=tid, address=address, proto="udp",
                                num_bytes=size, extra={**(extra or {}), **(more or {})} or None)

    try:
        async with asyncio.timeout(timeout):
            transport, proto = await connected_udp(ip, port)
            for _ in range(junk):
                data = junk_datagram()
                transport.sendto(data)
                note(F.WRITE_TO, len(data), {"x_wireguard": "junk"})
            pending: dict[int, W.Initiation] = {}
            started = loop.time()
            while True:
                init = W.initiation(keys.private, keys.server_public, keys.psk)
                pending[init.sender] = init
                transport.sendto(init.packet)
                sent += 1
                note(F.WRITE_TO, len(init.packet), {"x_wireguard": "initiation"})
                try:
                    async with asyncio.timeout(RETRY):
                        while True:
                            data = await proto.get()
                            kind = next((k for s in pending if (k := W.answer_kind(data, s))), None)
                            if kind == "response" and not any(W.opens(i, data) for i in pending.values()):
                                kind = None  # a response that is not to our keys: no proof of the server
                            if kind is None:
                                ignored += 1
                                if ignored <= MAX_IGNORED_EVENTS:
                                    note(F.READ_FROM, len(data), {"x_wireguard": "ignored"})
                                continue
                            note(F.READ_FROM, len(data), {"x_wireguard": kind})
                            return Handshake(None, kind, address, sent, junk, ignored,
                                             round(loop.time() - started, 6))
                except TimeoutError:
                    continue  # a new initiation; the outer deadline ends it
    except BaseException as exc:
        if not isinstance(exc, Exception):
            raise
        return Handshake(classify(exc, operation=F.READ_FROM), None, address, sent, junk, ignored, None)
    finally:
        if transport is not None:
            transport.close()
