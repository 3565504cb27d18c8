"""Only records for the asked name (or a name on the CNAME chain from it) answer a DNS query.

A reply giving ``A 198.18.9.9`` for ``other.example.`` to a query for ``www.example.com``
answers nothing: a stub resolver (glibc) ignores such records, and so does the probe. The
records are kept as evidence in ``x_unrelated_answers`` with their ``x_owner``.

Every reply comes from a UDP server on 127.0.0.1, through ``lookup_udp`` /
``lookup_addresses``, once read by the fast wire decoder (``dnswire.parse_answers``) and
once by dnspython (an EDNS OPT record in the additional section makes the fast path give
up). Each scenario carries a decoy record the owner check must reject, so that it fails
when the check is gone.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from typing import Any

import dns.message
import dns.rdatatype
import dns.rrset
import pytest

from tamperscope.model import failures as F
from tamperscope.netx import Resolver, Trace, lookup_addresses
from tamperscope.netx.dns import lookup_udp
from tamperscope.wire import dnswire

try:
    from . import test_netx_servers as srv
except ImportError:
    import test_netx_servers as srv  # type: ignore[no-redef]

LO = srv.LOOPBACK
PATHS = ("fast", "dnspython")
Builder = Callable[[dns.message.Message, bytes], bytes]  # (parsed query, query bytes) -> reply


# --- replies ------------------------------------------------------------------------------

def made(*records: tuple[str, str, str], ttl: int = 60) -> Builder:
    """A reply built with dnspython: ``(owner, type, value)`` answer records, in order."""
    def build(query: dns.message.Message, _: bytes) -> bytes:
        reply = dns.message.make_response(query)
        for owner, rdtype, value in records:
            reply.answer.append(dns.rrset.from_text(owner, ttl, "IN", rdtype, value))
        return reply.to_wire()
    return build


def _wire_name(name: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode("ascii")
                    for label in name.rstrip(".").split(".")) + b"\x00"


def raw(*records: tuple[str, str, str], ttl: int = 60) -> Builder:
    """A reply written byte by byte, names uncompressed and spelled exactly as given
    (dnspython would compress ``WWW.Example.COM.`` into a pointer to the question)."""
    def build(_: dns.message.Message, query: bytes) -> bytes:
        q = dnswire.parse_question(query)
        assert q is not None
        out = bytearray(struct.pack("!HHHHHH", q.qid, 0x8180, 1, len(records), 0, 0))
        out += query[12:q.end]
        for owner, rdtype, value in records:
            if rdtype == "A":
                code, data = 1, socket.inet_aton(value)
            elif rdtype == "AAAA":
                code, data = 28, socket.inet_pton(socket.AF_INET6, value)
            else:
                code, data = 5, _wire_name(value)
            out += _wire_name(owner) + struct.pack("!HHIH", code, 1, ttl, len(data)) + data
        return bytes(out)
    return build


_OPT = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)  # root owner, OPT, UDP size, no options


def with_opt(wire: bytes) -> bytes:
    """``wire`` with an EDNS OPT record added: the fast decoder returns None for it."""
    (arcount,) = struct.unpack_from("!H", wire, 10)
    return wire[:10] + struct.pack("!H", arcount + 1) + wire[12:] + _OPT


def serve(build: Builder, path: str, late: Builder | None = None) -> srv.UDPHandler:
    def handler(query: dns.message.Message | None, data: bytes) -> list[srv.Reply]:
        assert query is not None
        out = []
        for delay, b in ((0.0, build), (0.05, late)):
            if b is None:
                continue
            wire = b(query, data)
            if path == "dnspython":
                wire = with_opt(wire)
            # each path really is the one taken: the fast decoder reads it, or gives up
            assert (dnswire.parse_answers(wire) is None) == (path == "dnspython")
            out.append((delay, wire))
        return out
    return handler


async def lookup(hostname: str, build: Builder, path: str, query_type: str = "A",
                 late: Builder | None = None) -> tuple[Any, dict[str, Any], Trace]:
    async with srv.UDPDNSServer(serve(build, path, late)) as server, Trace() as trace:
        result = await lookup_udp(hostname, query_type, server=LO, port=server.port, trace=trace,
                                  duplicate_window=1.0 if late else 0)
    (record,) = trace.queries
    return result, record, trace


def run(hostname: str, build: Builder, path: str, query_type: str = "A") -> tuple[Any, dict[str, Any]]:
    result, record, _ = srv.run(lookup(hostname, build, path, query_type))
    return result, record


def a(ip: str, owner: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"answer_type": "A", "ipv4": ip, "ttl": 60}
    return out if owner is None else {**out, "x_owner": owner}


def cname(target: str, owner: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"answer_type": "CNAME", "hostname": target, "ttl": 60}
    return out if owner is None else {**out, "x_owner": owner}


# --- scenarios ----------------------------------------------------------------------------

@pytest.mark.parametrize("path", PATHS)
def test_an_answer_only_for_another_name_is_no_answer(path: str) -> None:
    result, q = run("www.example.com", made(("other.example.", "A", "198.18.9.9")), path)
    assert result.addresses == () and result.failure == F.DNS_NO_ANSWER
    assert q["failure"] == F.DNS_NO_ANSWER and q["answers"] is None and "rcode" not in q
    assert q["x_unrelated_answers"] == [a("198.18.9.9", "other.example")]


@pytest.mark.parametrize("path", PATHS)
def test_an_address_at_the_end_of_a_cname_chain_answers(path: str) -> None:
    # the chain is written out of order, with a CNAME and an address beside it as decoys
    build = made(("b.example.", "A", "198.18.0.20"),
                 ("a.example.", "CNAME", "b.example."),
                 ("www.example.com.", "CNAME", "a.example."),
                 ("stray.example.", "CNAME", "b.example."),
                 ("c.example.", "A", "198.18.9.9"))
    result, q = run("www.example.com", build, path)
    assert result.addresses == ("198.18.0.20",) and result.failure is None
    assert q["answers"] == [a("198.18.0.20"), cname("b.example."), cname("a.example.")]
    assert q["x_unrelated_answers"] == [cname("b.example.", "stray.example"), a("198.18.9.9", "c.example")]


@pytest.mark.wallclock  # the late reply must come within the window (1 s; it is sent after 50 ms)
@pytest.mark.parametrize("path", PATHS)
def test_a_plain_reply_is_recorded_as_before(path: str) -> None:
    """No unrelated record: the record has no ``x_unrelated_answers`` key at all. The
    unrelated reply right after it (a late duplicate) does, in x_dns_duplicate_responses."""
    build = made(("www.example.com.", "CNAME", "cdn.example.net."), ("cdn.example.net.", "A", "198.18.0.10"))
    late = made(("other.example.", "A", "198.18.9.9"))
    result, q, trace = srv.run(lookup("www.example.com", build, path, late=late))
    assert result.addresses == ("198.18.0.10",) and "x_unrelated_answers" not in q
    assert q["answers"] == [cname("cdn.example.net."), a("198.18.0.10")]
    (dup,) = trace.x_dns_duplicate_responses
    assert dup["answers"] is None and dup["failure"] == F.DNS_NO_ANSWER
    assert dup["x_unrelated_answers"] == [a("198.18.9.9", "other.example")]


@pytest.mark.parametrize("path", PATHS)
def test_mixed_reply_keeps_only_the_asked_names_addresses(path: str) -> None:
    build = made(("www.example.com.", "A", "198.18.0.1"),
                 ("other.example.", "A", "198.18.9.9"),
                 ("other.example.", "AAAA", "2001:db8::99"),
                 ("other.example.", "CNAME", "x.example."),
                 ("www.example.com.", "AAAA", "2001:db8::1"))
    result, q = run("www.example.com", build, path)
    assert result.addresses == ("198.18.0.1",) and result.failure is None
    assert q["answers"] == [a("198.18.0.1"), {"answer_type": "AAAA", "ipv6": "2001:db8::1", "ttl": 60}]
    assert q["x_unrelated_answers"] == [
        a("198.18.9.9", "other.example"),
        {"answer_type": "AAAA", "ipv6": "2001:db8::99", "ttl": 60, "x_owner": "other.example"},
        cname("x.example.", "other.example")]
    result, q = run("www.example.com", build, path, "AAAA")
    assert result.addresses == ("2001:db8::1",) and len(q["x_unrelated_answers"]) == 3


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("hostname", ["www.example.com", "www.example.com.", "WWW.EXAMPLE.com."])
def test_owner_names_compare_without_case_or_trailing_dot(path: str, hostname: str) -> None:
    build = raw(("WWW.Example.COM.", "CNAME", "Edge.Example.NET."),
                ("edge.EXAMPLE.net.", "A", "198.18.0.30"),
                ("example.com.", "A", "198.18.9.1"),  # the parent: no suffix matching
                ("www.example.com.example.", "A", "198.18.9.2"))
    result, q = run(hostname, build, path)
    assert result.addresses == ("198.18.0.30",) and result.failure is None
    assert q["hostname"] == hostname
    assert q["answers"] == [cname("Edge.Example.NET."), a("198.18.0.30")]
    assert q["x_unrelated_answers"] == [a("198.18.9.1", "example.com"),
                                        a("198.18.9.2", "www.example.com.example")]


@pytest.mark.parametrize("path", PATHS)
def test_a_cname_loop_terminates(path: str) -> None:
    build = made(("www.example.com.", "CNAME", "a.example."),
                 ("a.example.", "CNAME", "b.example."),
                 ("b.example.", "CNAME", "www.example.com."),
                 ("c.example.", "A", "198.18.9.9"))  # reached by nothing
    result, q = run("www.example.com", build, path)
    assert result.addresses == () and result.failure == F.DNS_NO_ANSWER
    assert [x["hostname"] for x in q["answers"]] == ["a.example.", "b.example.", "www.example.com."]
    assert q["x_unrelated_answers"] == [a("198.18.9.9", "c.example")]


@pytest.mark.parametrize("path", PATHS)
def test_a_cname_chain_is_followed_sixteen_hops(path: str) -> None:
    names = ["www.example.com."] + [f"h{i}.example." for i in range(1, 18)]
    chain = [(names[i], "CNAME", names[i + 1]) for i in range(17)]
    near = made(*chain, (names[16], "A", "198.18.0.16"))
    result, q = run("www.example.com", near, path)
    assert result.addresses == ("198.18.0.16",)
    far = made(*chain, (names[17], "A", "198.18.0.17"))  # 17 hops on: past the bound
    result, q = run("www.example.com", far, path)
    assert result.addresses == () and result.failure == F.DNS_NO_ANSWER
    assert q["x_unrelated_answers"] == [a("198.18.0.17", "h17.example")]


@pytest.mark.parametrize("path", PATHS)
def test_unrelated_records_are_capped_at_32(path: str) -> None:
    others = [(f"o{i}.example.", "A", f"198.18.9.{i}") for i in range(20)]
    others += [("flood.example.", "A", f"198.18.10.{i}") for i in range(25)]
    build = made(*others[:10], ("www.example.com.", "A", "198.18.0.1"), *others[10:])
    result, q = run("www.example.com", build, path)
    assert result.addresses == ("198.18.0.1",) and q["answers"] == [a("198.18.0.1")]
    kept = q["x_unrelated_answers"]
    assert len(kept) == 32
    assert kept[0] == a("198.18.9.0", "o0.example") and kept[19] == a("198.18.9.19", "o19.example")
    assert kept[-1] == a("198.18.10.11", "flood.example")


def test_idna_names_compare_in_their_ascii_form() -> None:
    # a non-ASCII name is encoded by dnspython (IDNA), and its reply read by dnspython too
    build = made(("xn--bcher-kva.example.", "A", "198.18.0.40"), ("bucher.example.", "A", "198.18.9.9"))
    result, q = run("bücher.example", build, "fast")
    assert result.addresses == ("198.18.0.40",) and q["answers"] == [a("198.18.0.40")]
    assert q["x_unrelated_answers"] == [a("198.18.9.9", "bucher.example")]


VARY = ("t0", "t", "raw_response", "transaction_id", "resolver_address")  # the server's port


def test_both_decoders_record_the_same() -> None:
    """The whole record, but for timings, ids, ports and raw bytes, is the same whichever decoder read it."""
    scenarios: list[tuple[str, Builder]] = [
        ("www.example.com", made(("other.example.", "A", "198.18.9.9"),
                                 ("www.example.com.", "CNAME", "a.example."),
                                 ("a.example.", "A", "198.18.0.2"), ("a.example.", "A", "198.18.0.3"),
                                 ("z.example.", "CNAME", "www.example.com."))),
        ("Www.Example.com.", raw(("www.EXAMPLE.com.", "A", "198.18.0.1"), ("q.example.", "A", "198.18.9.1"),
                                 ("WWW.example.COM.", "A", "198.18.0.5"), ("Q.example.", "A", "198.18.9.2"))),
    ]
    for hostname, build in scenarios:
        seen = []
        for path in PATHS:
            result, q = run(hostname, build, path)
            seen.append((result.addresses, result.failure, {k: v for k, v in q.items() if k not in VARY}))
        assert seen[0] == seen[1]
        assert seen[0][2]["x_unrelated_answers"]
        assert seen[0][0]


def test_lookup_addresses_connects_only_to_the_asked_names_addresses() -> None:
    async def main() -> tuple[Any, Trace]:
        def handler(query: dns.message.Message | None, data: bytes) -> list[srv.Reply]:
            assert query is not None
            if query.question[0].rdtype == dns.rdatatype.A:
                return [(0, made(("injected.example.", "A", "198.18.9.9"))(query, data))]
            return [(0, made(("www.example.com.", "AAAA", "2001:db8::5"),
                             ("injected.example.", "AAAA", "2001:db8::99"))(query, data))]

        async with srv.UDPDNSServer(handler) as server, Trace() as trace:
            resolver = Resolver("udp", LO, port=server.port, duplicate_window=0)
            return await lookup_addresses("www.example.com", resolver=resolver, trace=trace), trace

    result, trace = srv.run(main())
    assert result.addresses == ("2001:db8::5",) and result.failure is None
    by_type = {q["query_type"]: q for q in trace.queries}
    assert by_type["A"]["failure"] == F.DNS_NO_ANSWER
    assert by_type["A"]["x_unrelated_answers"] == [a("198.18.9.9", "injected.example")]
    assert by_type["AAAA"]["x_unrelated_answers"][0]["x_owner"] == "injected.example"


# --- HTTPS records (RFC 9460): what echcheck reads a site's ECH configs from ----------------

ECH_B64 = "AEX+DQBBBwAgACDl4Y6hGnWqgQiCAHVfVEW8SqIX5RhYVFx4ZhvlqJ5VdwAEAAEAAQASY2xvdWRmbGFyZS1lY2guY29tAAA="


def test_an_https_query_answers_with_its_records_parameters_and_only_the_askeds() -> None:
    build = made(("other.example.", "HTTPS", f'1 . ech="{ECH_B64}"'),  # a decoy for another name
                 ("crypto.cloudflare.com.", "HTTPS", f'1 . alpn="h3,h2" ech="{ECH_B64}"'))
    result, record = run("crypto.cloudflare.com", build, "dnspython", "HTTPS")
    assert result.failure is None and result.addresses == () and record["failure"] is None
    assert record["answers"] == [{"answer_type": "HTTPS", "hostname": ".", "ttl": 60, "x_priority": 1,
                                  "x_alpn": ["h3", "h2"], "x_ech": ECH_B64}]
    assert record["x_unrelated_answers"] == [{"answer_type": "HTTPS", "hostname": ".", "ttl": 60,
                                              "x_priority": 1, "x_ech": ECH_B64, "x_owner": "other.example"}]
    assert record["query_type"] == "HTTPS"


def test_an_https_query_without_https_records_has_no_answer_and_an_a_query_ignores_them() -> None:
    _, record = run("crypto.cloudflare.com", made(("crypto.cloudflare.com.", "A", "198.18.9.9")), "dnspython",
                    "HTTPS")
    assert record["failure"] == F.DNS_NO_ANSWER
    result, record = run("crypto.cloudflare.com", made(("crypto.cloudflare.com.", "HTTPS", f'1 . ech="{ECH_B64}"'),
                                                       ("crypto.cloudflare.com.", "A", "198.18.9.9")),
                         "dnspython", "A")
    assert result.addresses == ("198.18.9.9",) and record["answers"] == [a("198.18.9.9")]
