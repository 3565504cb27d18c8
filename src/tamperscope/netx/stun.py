"""STUN binding requests over UDP (RFC 5389): is a STUN server reachable, and what address did it see.

Voice and video calls, WebRTC and Tor's Snowflake need STUN servers; censors block them (OONI's
``stunreachability``). A binding request is 20 bytes; the server answers with the address and port it
saw the request come from (XOR-MAPPED-ADDRESS, or the older MAPPED-ADDRESS). Behind NAT that is the
probe's public address, which the probe never records: `binding` returns it for the scrubber alone.

Requests are retransmitted as RFC 5389 says (after 0.5 s, then doubling) until the deadline. A datagram
that is not the answer to our transaction (junk, another transaction, a truncated message) is noted in
``network_events`` and ignored, as the DNS client ignores forged-looking replies; the wait goes on.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from tamperscope.model import failures as F
from tamperscope.netx.classify import classify
from tamperscope.netx.dns import connected_udp
from tamperscope.netx.trace import Trace, endpoint

MAGIC_COOKIE = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
BINDING_ERROR = 0x0111
MAPPED_ADDRESS = 0x0001
XOR_MAPPED_ADDRESS = 0x0020
ERROR_CODE = 0x0009
HEADER = struct.Struct("!HHI12s")
FIRST_RTO = 0.5  # seconds before the first retransmission (RFC 5389, 7.2.1)
MAX_IGNORED_EVENTS = 8  # datagrams that were no answer, noted in network_events (then only counted)
STUN_ERROR_PREFIX = "stun_error_response"


class StunError(ValueError):
    """A datagram that is no answer to our binding request."""


@dataclass(frozen=True)
class BindingAnswer:
    """A parsed success or error response: ``mapped`` is what the server saw (None if it said nothing
    readable), ``error`` its error code and reason for an error response."""

    mapped: tuple[str, int] | None
    error: tuple[int, str] | None = None


@dataclass(frozen=True)
class BindingResult:
    """One binding transaction: ``failure`` null when a success response came. ``mapped`` is the probe's
    address as the server saw it: never to be recorded."""

    failure: str | None
    mapped: tuple[str, int] | None
    address: str  # the server's ip:port
    sent: int  # requests sent, retransmissions included
    ignored: int  # datagrams that were no answer


def new_transaction_id() -> bytes:
    return os.urandom(12)


def binding_request(transaction_id: bytes) -> bytes:
    """A binding request without attributes (RFC 5389, 6)."""
    if len(transaction_id) != 12:
        raise ValueError("a STUN transaction id is 12 bytes")
    return HEADER.pack(BINDING_REQUEST, 0, MAGIC_COOKIE, transaction_id)


def _address(value: bytes, transaction_id: bytes, xor: bool) -> tuple[str, int] | None:
    """A (XOR-)MAPPED-ADDRESS value, or None when it is malformed."""
    if len(value) < 4:
        return None
    family, port = value[1], struct.unpack_from("!H", value, 2)[0]
    raw = value[4:]
    if family == 0x01 and len(raw) == 4:
        pass
    elif family == 0x02 and len(raw) == 16:
        pass
    else:
        return None
    if xor:
        port ^= MAGIC_COOKIE >> 16
        key = struct.pack("!I", MAGIC_COOKIE) + transaction_id
        raw = bytes(a ^ b for a, b in zip(raw, key, strict=False))
    return str(ipaddress.ip_address(raw)), port


def parse_binding_answer(data: bytes, transaction_id: bytes) -> BindingAnswer:
    """The answer ``data`` holds to the binding request ``transaction_id``; StunError when it holds none
    (not STUN, another transaction or method, a length that does not add up)."""
    if len(data) < HEADER.size:
        raise StunError("shorter than a STUN header")
    kind, length, cookie, tid = HEADER.unpack_from(data)
    if kind & 0xC000 or cookie != MAGIC_COOKIE:
        raise StunError("not a STUN message")
    if tid != transaction_id:
        raise StunError("another transaction")
    if kind not in (BINDING_SUCCESS, BINDING_ERROR):
        raise StunError(f"not a binding response (type {kind:#06x})")
    if length % 4 or HEADER.size + length != len(data):
        raise StunError("its length does not match the datagram")
    at, end = HEADER.size, HEADER.size + length
    found: dict[int, bytes] = {}
    while at + 4 <= end:
        attr, size = struct.unpack_from("!HH", data, at)
        value = data[at + 4:at + 4 + size]
        if len(value) != size or at + 4 + size > end:
            raise StunError("an attribute runs past the message")
        found.setdefault(attr, value)  # the first of each counts (RFC 5389, 15)
        at += 4 + size + (-size % 4)
    if kind == BINDING_ERROR:
        value = found.get(ERROR_CODE, b"")
        if len(value) < 4:
            return BindingAnswer(None, (0, ""))
        code = (value[2] & 0x07) * 100 + value[3]
        reason = value[4:4 + 128].decode("utf-8", "replace")
        return BindingAnswer(None, (code, "".join(c if c.isprintable() else "?" for c in reason)))
    mapped = None
    if XOR_MAPPED_ADDRESS in found:
        mapped = _address(found[XOR_MAPPED_ADDRESS], transaction_id, True)
    if mapped is None and MAPPED_ADDRESS in found:
        mapped = _address(found[MAPPED_ADDRESS], transaction_id, False)
    return BindingAnswer(mapped)


def binding_response(transaction_id: bytes, mapped: tuple[str, int]) -> bytes:
    """A success response carrying XOR-MAPPED-ADDRESS (what the lab's STUN server sends)."""
    ip, port = ipaddress.ip_address(mapped[0]), mapped[1]
    key = struct.pack("!I", MAGIC_COOKIE) + transaction_id
    raw = bytes(a ^ b for a, b in zip(ip.packed, key, strict=False))
    value = struct.pack("!BBH", 0, 0x01 if ip.version == 4 else 0x02, port ^ (MAGIC_COOKIE >> 16)) + raw
    body = struct.pack("!HH", XOR_MAPPED_ADDRESS, len(value)) + value
    return HEADER.pack(BINDING_SUCCESS, len(body), MAGIC_COOKIE, transaction_id) + body


def error_failure(code: int, reason: str) -> str:
    """The failure string of an error response (the server answered, and refused)."""
    return F.unknown(f"{STUN_ERROR_PREFIX} {code} {reason}".strip())


async def binding(ip: str, port: int, *, trace: Trace, timeout: float = 5.0, tags: Sequence[str] = (),
                  transaction_id: int | None = None) -> BindingResult:
    """One binding transaction with the STUN server at ``ip:port`` (numeric), retransmitting until
    ``timeout``. Records a ``write_to`` for each request and a ``read_from`` for each datagram."""
    tid = trace.next_transaction_id() if transaction_id is None else transaction_id
    address = endpoint(ip, port)
    stun_id = new_transaction_id()
    request = binding_request(stun_id)
    transport: asyncio.DatagramTransport | None = None
    sent = ignored = 0
    extra = {"tags": list(tags)} if tags else None
    try:
        async with asyncio.timeout(timeout):
            transport, proto = await connected_udp(ip, port)
            rto = FIRST_RTO
            while True:
                t0 = trace.now()
                transport.sendto(request)
                sent += 1
                trace.add_network_event(F.WRITE_TO, t0=t0, transaction_id=tid, address=address, proto="udp",
                                        num_bytes=len(request), extra=extra)
                try:
                    async with asyncio.timeout(rto):
                        while True:
                            data = await proto.get()
                            now = trace.now()
                            try:
                                answer = parse_binding_answer(data, stun_id)
                            except StunError:
                                ignored += 1
                                if ignored <= MAX_IGNORED_EVENTS:
                                    trace.add_network_event(F.READ_FROM, t0=now, transaction_id=tid,
                                                            address=address, proto="udp", num_bytes=len(data),
                                                            extra={**(extra or {}), "x_stun_ignored": True})
                                continue
                            trace.add_network_event(F.READ_FROM, t0=now, transaction_id=tid, address=address,
                                                    proto="udp", num_bytes=len(data), extra=extra)
                            failure = error_failure(*answer.error) if answer.error is not None else None
                            return BindingResult(failure, answer.mapped, address, sent, ignored)
                except TimeoutError:
                    rto *= 2  # retransmit (RFC 5389, 7.2.1); the outer deadline ends it
    except BaseException as exc:
        failure = classify(exc, operation=F.READ_FROM)
        if not isinstance(exc, Exception):
            raise
        return BindingResult(failure, None, address, sent, ignored)
    finally:
        if transport is not None:
            transport.close()
