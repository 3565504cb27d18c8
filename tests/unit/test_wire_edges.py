"""Edges of the censor's and the probe's DNS fast paths (dnswire): bounds, hostile names, what falls back."""

from __future__ import annotations

import socket
import struct

import dns.exception
import dns.flags
import dns.message
import dns.name
import pytest

from tamperscope.netx.dns import interpret
from tamperscope.wire import dnswire

_QUERY = dnswire.encode_query("www.example.com", dnswire.QTYPE_A, 9)
assert _QUERY is not None
_QUESTION = _QUERY[12:]  # www.example.com IN A, uncompressed, at offset 12


def _reply(records: list[bytes], *, rcode: int = 0, ancount: int | None = None, nscount: int = 0,
           arcount: int = 0) -> bytes:
    count = len(records) if ancount is None else ancount
    return struct.pack("!HHHHHH", 9, 0x8180 | rcode, 1, count, nscount, arcount) + _QUESTION + b"".join(records)


def _a(owner: bytes = b"\xc0\x0c", *, ttl: int = 60, rdclass: int = 1, ip: str = "198.19.1.1") -> bytes:
    return owner + struct.pack("!HHIH", dnswire.QTYPE_A, rdclass, ttl, 4) + socket.inet_aton(ip)


def _wire_name(*labels: bytes) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


def _question_msg(qname_wire: bytes, *, qdcount: int = 1) -> bytes:
    return struct.pack("!HHHHHH", 5, 0x0100, qdcount, 0, 0, 0) + qname_wire + struct.pack("!HH", 1, 1)


# --- encode_query ---


def test_a_name_of_253_characters_is_encoded_and_one_of_254_is_left_to_dnspython() -> None:
    """253 characters (255 octets on the wire) is the longest name; one more must not be sent as a query."""
    longest = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    assert len(longest) == 253
    assert dnswire.encode_query(longest, dnswire.QTYPE_A, 3) == dns.message.make_query(longest, "A", id=3).to_wire()
    too_long = longest + "d"
    with pytest.raises(dns.name.NameTooLong):
        dns.message.make_query(too_long, "A")
    assert dnswire.encode_query(too_long, dnswire.QTYPE_A, 3) is None


# --- parse_question (the censor reads every query with it) ---


def test_a_message_without_a_question_has_no_question() -> None:
    """QDCOUNT 0: whatever bytes follow the header are no question the censor may answer."""
    msg = _question_msg(_wire_name(b"blocked", b"example"), qdcount=0)
    assert dnswire.parse_question(msg) is None
    assert dnswire.parse_question(_question_msg(_wire_name(b"blocked", b"example"))) is not None


@pytest.mark.parametrize("first", [0x40, 0x80, 0xC0])
def test_a_question_name_with_a_pointer_or_reserved_label_type_is_refused(first: int) -> None:
    """A length byte with either top bit set is no label (a pointer, or a reserved type): never read as a long label."""
    msg = _question_msg(bytes([first]) + b"x" * first + b"\x00")
    assert dnswire.parse_question(msg) is None


def test_a_question_name_longer_than_255_octets_is_refused() -> None:
    """The name's walk stops at DNS's length limit instead of reading a 60 KB name out of a hostile query."""
    assert dnswire.parse_question(_question_msg(_wire_name(*[b"a" * 60] * 4))) is not None  # 245 octets
    assert dnswire.parse_question(_question_msg(_wire_name(*[b"a" * 60] * 5))) is None
    assert dnswire.parse_question(_question_msg(_wire_name(*[b"a" * 63] * 900))) is None


# --- forge_response ---


def test_a_forged_address_answers_a_questions_only() -> None:
    """AAAA (and any other type) gets an empty NOERROR answer, never an A record under an AAAA question."""
    query = dns.message.make_query("blocked.example", "AAAA").to_wire()
    q = dnswire.parse_question(query)
    assert q is not None and q.qtype == dnswire.QTYPE_AAAA
    forged = dns.message.from_wire(dnswire.forge_response(query, q, answer_ip="198.18.0.1"))
    assert forged.rcode() == 0 and forged.answer == [] and forged.question[0].rdtype == dnswire.QTYPE_AAAA


def test_a_forged_response_copies_the_querys_rd_bit_and_sets_qr_and_ra() -> None:
    """RD is copied from the query (set or not), as a real resolver does; QR and RA are set."""
    for rd in (True, False):
        query = dns.message.make_query("blocked.example", "A")
        if not rd:
            query.flags &= ~dns.flags.RD
        wire = query.to_wire()
        q = dnswire.parse_question(wire)
        assert q is not None
        forged = dns.message.from_wire(dnswire.forge_response(wire, q, answer_ip="198.18.0.1"))
        assert bool(forged.flags & dns.flags.RD) is rd
        assert forged.flags & dns.flags.QR and forged.flags & dns.flags.RA


# --- parse_answers (the probe's fast path; None means "let dnspython read it") ---


def test_a_forward_compression_pointer_is_left_to_dnspython() -> None:
    """dnspython refuses a pointer to a later offset (BadPointer): the fast path must not decode it either."""
    later = _a(_wire_name(b"www", b"example", b"com"), ip="198.19.1.2")
    first_len = len(_a())
    target = 12 + len(_QUESTION) + first_len  # the second record's owner, after the first record
    wire = _reply([_a(struct.pack("!H", 0xC000 | target)), later])
    with pytest.raises(dns.name.BadPointer):
        dns.message.from_wire(wire)
    assert dnswire.parse_answers(wire) is None


def _cname_chain(n: int) -> bytes:
    """``n`` CNAME records whose targets are each a pointer to the previous one's (the first's: the question)."""
    records = []
    at = 12 + len(_QUESTION)
    previous = 12
    for _ in range(n):
        pointer = struct.pack("!H", 0xC000 | previous)
        records.append(struct.pack("!HHHIH", 0xC00C, dnswire.QTYPE_CNAME, 1, 60, 2) + pointer)
        previous = at + 12  # this record's rdata: after owner pointer (2) and type, class, ttl, rdlength (10)
        at += 14
    return _reply(records)


def test_a_long_chain_of_compression_pointers_is_not_followed() -> None:
    """Each name follows a bounded number of pointers (a reply of pointer chains would cost hops squared): a
    33-hop chain falls back to dnspython; a 16-hop one (dnspython's own limit) is read as dnspython reads it."""
    ok = _cname_chain(16)
    fast = dnswire.parse_answers(ok)
    assert fast is not None
    assert interpret("A", fast) == interpret("A", dns.message.from_wire(ok))
    assert dnswire.parse_answers(_cname_chain(33)) is None


@pytest.mark.parametrize("hops", [17, 32])
def test_a_chain_dnspython_refuses_is_not_read_by_the_fast_path(hops: int) -> None:
    """dnspython follows at most 16 pointers (PointerChainTooLong past them): the fast path, which promises to
    read a reply as dnspython does, must not answer where dnspython refuses (it read up to 32)."""
    wire = _cname_chain(hops)
    with pytest.raises(dns.exception.FormError):
        dns.message.from_wire(wire)
    assert dnswire.parse_answers(wire) is None


def test_a_question_name_of_256_octets_is_refused() -> None:
    """255 octets with the root's label is the most a name may take (RFC 1035); the query's walk refused only
    past 256."""
    assert dnswire.parse_question(_question_msg(_wire_name(b"a" * 63, b"b" * 63, b"c" * 63, b"d" * 61))) is not None
    assert dnswire.parse_question(_question_msg(_wire_name(b"a" * 63, b"b" * 63, b"c" * 63, b"d" * 62))) is None


def test_an_owner_name_over_255_octets_is_left_to_dnspython() -> None:
    """255 octets is the most a name may take; one more, and dnspython refuses it (NameTooLong)."""
    longest = _wire_name(b"a" * 63, b"b" * 63, b"c" * 63, b"d" * 61)
    assert len(longest) == 255
    wire = _reply([_a(longest)])
    fast = dnswire.parse_answers(wire)
    assert fast is not None and fast.records[0][3] == ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61]) + "."
    over = _reply([_a(_wire_name(b"a" * 63, b"b" * 63, b"c" * 63, b"d" * 62))])
    with pytest.raises(dns.name.NameTooLong):
        dns.message.from_wire(over)
    assert dnswire.parse_answers(over) is None


def test_a_ttl_with_the_top_bit_set_is_read_as_dnspython_reads_it() -> None:
    """RFC 2181: a TTL over 2**31 - 1 is read as 0 by dnspython; the fast path must not report 2**31."""
    wire = _reply([_a(ttl=0x80000000)])
    fast = dnswire.parse_answers(wire)
    slow = interpret("A", dns.message.from_wire(wire))
    assert fast is None or interpret("A", fast) == slow
    assert slow[0][0]["ttl"] == 0


def test_an_answer_of_another_class_is_left_to_dnspython() -> None:
    """A CHAOS-class A record is no IN address: the fast path must not decode it as one."""
    assert dnswire.parse_answers(_reply([_a(rdclass=3)])) is None
    assert dnswire.parse_answers(_reply([_a(rdclass=1)])) is not None


def test_a_cname_whose_rdata_runs_past_its_target_is_left_to_dnspython() -> None:
    """RDLENGTH must end exactly where the target name does (dnspython: FormError)."""
    exact = struct.pack("!HHHIH", 0xC00C, dnswire.QTYPE_CNAME, 1, 60, 2) + b"\xc0\x10"
    assert dnswire.parse_answers(_reply([exact])) is not None
    padded = struct.pack("!HHHIH", 0xC00C, dnswire.QTYPE_CNAME, 1, 60, 3) + b"\xc0\x10\x00"
    with pytest.raises(dns.exception.FormError):
        dns.message.from_wire(_reply([padded]))
    assert dnswire.parse_answers(_reply([padded])) is None


@pytest.mark.parametrize(("nscount", "arcount"), [(1, 0), (0, 1)])
def test_a_reply_counting_authority_or_additional_records_is_left_to_dnspython(nscount: int, arcount: int) -> None:
    """Sections the fast path does not read (EDNS's OPT is in the additional one) send the reply to dnspython,
    even when the counted records are missing (dnspython: FormError)."""
    wire = _reply([_a()], nscount=nscount, arcount=arcount)
    with pytest.raises(dns.exception.FormError):
        dns.message.from_wire(wire)
    assert dnswire.parse_answers(wire) is None


@pytest.mark.parametrize("rcode", [9, 10, 15])
def test_rcodes_above_7_are_read_whole(rcode: int) -> None:
    """The rcode is the header's four low bits (NOTAUTH is 9), as dnspython reads it."""
    wire = _reply([], rcode=rcode)
    fast = dnswire.parse_answers(wire)
    assert fast is not None and fast.rcode == rcode == dns.message.from_wire(wire).rcode()
