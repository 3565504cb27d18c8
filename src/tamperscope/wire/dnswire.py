"""Minimal DNS message codec for the censor's fast path.

The censor must read the question of every DNS query crossing it and forge
answers at line rate, so this module parses only the header and the first
question, and builds A answers and NXDOMAIN responses. Anything richer (the
probe's resolvers, the lab's DNS servers) uses dnspython. Malformed input
returns None; it never raises.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

QTYPE_A = 1
QTYPE_AAAA = 28
RCODE_NXDOMAIN = 3


@dataclass(frozen=True, slots=True)
class Question:
    qid: int
    flags: int
    name: str  # lower-cased, no trailing dot
    qtype: int
    qclass: int
    end: int  # offset just past the question, in the message

    @property
    def is_response(self) -> bool:
        return bool(self.flags & 0x8000)


_PLAIN_LABEL = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_*")


def encode_query(name: str, qtype: int, qid: int) -> bytes | None:
    """A recursive (RD) query for one plain ASCII name, no EDNS: the bytes dnspython's
    ``make_query(name, qtype).to_wire()`` gives. ``None`` for anything else (escapes,
    IDNA, empty or over-long labels, the root): callers then let dnspython build it."""
    if name.endswith("."):
        name = name[:-1]
    if not name or not name.isascii() or len(name) > 253:
        return None
    out = bytearray(struct.pack("!HHHHHH", qid & 0xFFFF, 0x0100, 1, 0, 0, 0))
    for label in name.encode("ascii").split(b"."):
        if not 0 < len(label) < 64 or not _PLAIN_LABEL.issuperset(label):
            return None
        out.append(len(label))
        out += label
    out += struct.pack("!BHH", 0, qtype, 1)
    return bytes(out)


def parse_question(msg: bytes) -> Question | None:
    """The first question of a DNS message, or None if the message is malformed."""
    if len(msg) < 12:
        return None
    qid, flags, qdcount = struct.unpack_from("!HHH", msg, 0)
    if qdcount < 1:
        return None
    labels: list[str] = []
    pos = 12
    while True:
        if pos >= len(msg):
            return None
        n = msg[pos]
        if n == 0:
            pos += 1
            break
        if n & 0xC0:  # compression is not valid in a query's first name
            return None
        label = msg[pos + 1 : pos + 1 + n]
        if len(label) != n:
            return None
        labels.append(label.decode("ascii", "replace").lower())
        pos += 1 + n
        if pos > 255 + 12:
            return None
    if pos + 4 > len(msg):
        return None
    qtype, qclass = struct.unpack_from("!HH", msg, pos)
    return Question(qid, flags, ".".join(labels), qtype, qclass, pos + 4)


def forge_response(
    query: bytes, q: Question, *, answer_ip: str | None, rcode: int = 0, ttl: int = 300
) -> bytes:
    """A response to `query`: one A record for `answer_ip` (A questions only), or `rcode`.

    AAAA and other types get an empty NOERROR answer when an address is forged,
    as injectors that only forge IPv4 do.
    """
    flags = 0x8000 | (q.flags & 0x0100) | 0x0080 | (rcode & 0xF)  # QR, RD copied, RA
    with_answer = answer_ip is not None and rcode == 0 and q.qtype == QTYPE_A
    header = struct.pack("!HHHHHH", q.qid, flags, 1, 1 if with_answer else 0, 0, 0)
    out = header + query[12 : q.end]
    if with_answer:
        assert answer_ip is not None
        out += struct.pack("!HHHIH", 0xC00C, QTYPE_A, 1, ttl, 4) + socket.inet_aton(answer_ip)
    return out
