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
from typing import Any

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
        if pos > 254 + 12:  # 255 octets with the root's
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


QTYPE_CNAME = 5
_MAX_POINTERS = 16  # dnspython follows no more (MAX_COMPRESSION_POINTER_CHAIN), and the two must agree


@dataclass(frozen=True, slots=True)
class Answers:
    """The answer section of a reply, grouped as dnspython groups it: one RRset per
    (owner, type), in order of first appearance, identical records once, the RRset's
    TTL the smallest of its records, of several CNAMEs the last. ``records`` holds
    ``(rdtype, ttl, value, owner)``: a dotted or colon address for A/AAAA, an absolute name
    ("a.example.") for CNAME; ``owner`` is the RRset's name as its first record spells it
    ("WWW.example.", as dnspython's ``rrset.name``), one string object per RRset."""

    rcode: int
    records: tuple[tuple[int, int, str, str], ...]
    qname: str = ""  # the question's name, absolute ("www.example.com.")


def _name(msg: bytes, pos: int) -> tuple[str, int] | None:
    """A (possibly compressed) name at ``pos`` → (text with a trailing dot, offset after it).
    ``None`` when it is malformed or not plain (escapes would be needed): callers fall back."""
    labels: list[bytes] = []
    end = -1
    hops = 0
    total = 0
    while True:
        if pos >= len(msg):
            return None
        n = msg[pos]
        if n & 0xC0 == 0xC0:
            if pos + 1 >= len(msg):
                return None
            target = ((n & 0x3F) << 8) | msg[pos + 1]
            if end < 0:
                end = pos + 2
            if target >= pos or hops >= _MAX_POINTERS:  # only backwards, as dnspython requires
                return None
            hops += 1
            pos = target
            continue
        if n & 0xC0:
            return None
        if n == 0:
            if end < 0:
                end = pos + 1
            break
        label = msg[pos + 1 : pos + 1 + n]
        if len(label) != n or not _PLAIN_LABEL.issuperset(label):
            return None
        total += n + 1
        if total > 254:
            return None
        labels.append(label)
        pos += 1 + n
    return (b".".join(labels).decode("ascii") + ".") if labels else ".", end


def parse_answers(msg: bytes) -> Answers | None:
    """The rcode and the A/AAAA/CNAME answers of a plain reply to one question, or ``None``
    for anything this fast path does not decode exactly as dnspython would (EDNS, other
    classes, escaped names, truncation, trailing bytes...): the caller then uses dnspython."""
    if len(msg) < 12:
        return None
    _, flags, qdcount, ancount, nscount, arcount = struct.unpack_from("!HHHHHH", msg, 0)
    if qdcount != 1 or nscount or arcount:
        return None
    q = _name(msg, 12)
    if q is None or q[1] + 4 > len(msg):
        return None
    pos = q[1] + 4
    groups: dict[tuple[str, int], list[Any]] = {}
    for _ in range(ancount):
        owner = _name(msg, pos)
        if owner is None or owner[1] + 10 > len(msg):
            return None
        rdtype, rdclass, ttl, rdlength = struct.unpack_from("!HHIH", msg, owner[1])
        start = owner[1] + 10
        pos = start + rdlength
        if pos > len(msg) or rdclass != 1 or ttl > 0x7FFFFFFF:
            return None
        if rdtype == QTYPE_A:
            if rdlength != 4:
                return None
            value = socket.inet_ntop(socket.AF_INET, msg[start:pos])
        elif rdtype == QTYPE_AAAA:
            if rdlength != 16:
                return None
            value = socket.inet_ntop(socket.AF_INET6, msg[start:pos])
        elif rdtype == QTYPE_CNAME:
            target = _name(msg, start)
            if target is None or target[1] != pos:
                return None
            value = target[0]
        else:
            return None
        key = (owner[0].lower(), rdtype)
        group = groups.get(key)
        if group is None:  # values as dict keys: in order, each once, found in O(1) (64 KiB is 4000 records)
            groups[key] = [ttl, {value: None}, owner[0]]
        else:
            group[0] = min(group[0], ttl)
            if rdtype == QTYPE_CNAME:  # a singleton type: the last one stands (as in dnspython)
                group[1] = {value: None}
            else:
                group[1][value] = None
    if pos != len(msg):
        return None
    records = tuple((rdtype, g[0], v, g[2]) for (_, rdtype), g in groups.items() for v in g[1])
    return Answers(flags & 0xF, records, q[0])
