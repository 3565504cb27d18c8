"""The first exchange of OpenVPN over TCP, to tell whether an OpenVPN server can be used from here: a TCP
connect that a censor lets through says nothing when the censor recognises OpenVPN's first packet and kills
the flow, as Russia's, Iran's and China's DPI have done.

The client sends ``P_CONTROL_HARD_RESET_CLIENT_V2`` (OpenVPN's reliability layer, before any TLS): a random
session id and message id 0, in TCP's two-byte length framing. A server answers with
``P_CONTROL_HARD_RESET_SERVER_V2`` that acknowledges message 0 of our session id; only an OpenVPN server
(one without ``tls-auth``/``tls-crypt``, which would ignore a packet without its HMAC) does that. Nothing
else is read or sent: no TLS, no tunnel.

The stream's reads and writes are recorded by `TCPStream`, in ``network_events``.
"""

from __future__ import annotations

import asyncio
import secrets
import struct
from collections.abc import Sequence

from ..model import failures as F
from .classify import NetxError, classify
from .dns import connected_udp
from .stream import TCPStream
from .trace import Trace, endpoint

HARD_RESET_CLIENT_V2 = 7
HARD_RESET_SERVER_V2 = 8
SESSION_ID = 8
MAX_ANSWER = 1024  # a server's reset is 26 bytes (more with tls-auth); a frame longer than this is no reset
MAX_ACKS = 8       # OpenVPN's reliability layer acknowledges at most 8 ids (RELIABLE_ACK_SIZE)


def reset_packet(session_id: bytes) -> bytes:
    """``P_CONTROL_HARD_RESET_CLIENT_V2`` (key id 0): opcode, session id, no acks, message 0. Over UDP it is the
    datagram itself; over TCP it is framed (`client_reset`)."""
    return bytes([HARD_RESET_CLIENT_V2 << 3]) + session_id + b"\x00" + struct.pack("!I", 0)


def client_reset(session_id: bytes) -> bytes:
    """``P_CONTROL_HARD_RESET_CLIENT_V2`` framed for TCP: the packet after its two-byte length."""
    packet = reset_packet(session_id)
    return struct.pack("!H", len(packet)) + packet


def check_reset(frame: bytes, session_id: bytes) -> bool:
    """Whether ``frame`` (one TCP frame's packet, without its length) is a server's hard reset that acknowledges
    message 0 of ``session_id``: opcode 8, its own session id, an ack list holding 0 and our session id."""
    if len(frame) < 1 + SESSION_ID + 1 or frame[0] >> 3 != HARD_RESET_SERVER_V2:
        return False
    acks = frame[1 + SESSION_ID]
    at = 2 + SESSION_ID
    if not 1 <= acks <= MAX_ACKS or len(frame) < at + 4 * acks + SESSION_ID + 4:
        return False
    ids = struct.unpack_from(f"!{acks}I", frame, at)
    remote = frame[at + 4 * acks:at + 4 * acks + SESSION_ID]
    return 0 in ids and remote == session_id


async def handshake(stream: TCPStream, *, timeout: float) -> int:
    """OpenVPN's first exchange over ``stream`` within ``timeout`` seconds: the bytes the server's answer took.
    Raises NetxError: the stream's failure (a timeout, a reset, EOF), or `OPENVPN_HANDSHAKE_FAILED` when the
    answer is not a server's reset to ours."""
    try:
        async with asyncio.timeout(timeout):
            return await _handshake(stream)
    except NetxError:
        raise
    except (OSError, EOFError, TimeoutError) as exc:
        raise NetxError(classify(exc, operation=F.READ), operation=F.READ, endpoint=stream.address) from exc


async def _handshake(stream: TCPStream) -> int:
    session_id = secrets.token_bytes(SESSION_ID)
    await stream.write(client_reset(session_id))
    answer = b""
    while len(answer) < 2 or len(answer) < 2 + struct.unpack_from("!H", answer)[0]:
        if len(answer) >= 2 and struct.unpack_from("!H", answer)[0] > MAX_ANSWER:
            raise NetxError(F.OPENVPN_HANDSHAKE_FAILED, operation=F.READ, endpoint=stream.address)
        chunk = await stream.read(MAX_ANSWER)
        if not chunk:
            raise NetxError(F.EOF_ERROR, operation=F.READ, endpoint=stream.address)
        answer += chunk
    size: int = struct.unpack_from("!H", answer)[0]
    if not check_reset(answer[2:2 + size], session_id):
        raise NetxError(F.OPENVPN_HANDSHAKE_FAILED, operation=F.READ, endpoint=stream.address)
    return 2 + size


MAX_IGNORED_EVENTS = 8  # datagrams that were no reset to ours, noted in network_events (then only counted)
UDP_RETRY = 1.0  # seconds between resets over UDP (OpenVPN's own client waits 2 s: a measurement has less time)


async def udp_handshake(ip: str, port: int, *, trace: Trace, timeout: float, tags: Sequence[str] = ()) -> str | None:
    """OpenVPN's first exchange over UDP with ``ip:port`` (numeric) within ``timeout`` seconds: the failure
    string, None when the server's reset to ours came. A new session's reset goes out each `UDP_RETRY`
    seconds; a datagram that is no reset to one of them is noted (``x_openvpn_ignored``) and ignored."""
    tid = trace.next_transaction_id()
    address = endpoint(ip, port)
    extra = {"tags": list(tags)} if tags else None
    transport: asyncio.DatagramTransport | None = None
    ignored = 0
    try:
        async with asyncio.timeout(timeout):
            transport, proto = await connected_udp(ip, port)
            sessions: list[bytes] = []
            while True:
                sessions.append(secrets.token_bytes(SESSION_ID))
                packet = reset_packet(sessions[-1])
                transport.sendto(packet)
                trace.add_network_event(F.WRITE_TO, t0=trace.now(), transaction_id=tid, address=address,
                                        proto="udp", num_bytes=len(packet), extra=extra)
                try:
                    async with asyncio.timeout(UDP_RETRY):
                        while True:
                            data = await proto.get()
                            ours = any(check_reset(data, sid) for sid in sessions)
                            ignored += not ours
                            if ours or ignored <= MAX_IGNORED_EVENTS:  # a flood is counted, not recorded
                                trace.add_network_event(F.READ_FROM, t0=trace.now(), transaction_id=tid,
                                                        address=address, proto="udp", num_bytes=len(data),
                                                        extra=extra if ours else {**(extra or {}),
                                                                                  "x_openvpn_ignored": True})
                            if ours:
                                return None
                except TimeoutError:
                    continue  # a new reset; the outer deadline ends it
    except BaseException as exc:
        if not isinstance(exc, Exception):
            raise
        return classify(exc, operation=F.READ_FROM)
    finally:
        if transport is not None:
            transport.close()
