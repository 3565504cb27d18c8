"""Hostile vantages: what an in-country resolver or web server may do to `tamperscope remote dns|web`.

A remote measurement trusts nobody inside the country: the vantage is someone else's server,
broken, overloaded or malicious. These tests run the nettests against real servers on loopback
only (the trusted resolver on 127.0.0.2, the DNS vantage on 127.0.0.3, the web vantage on
127.0.0.4, ephemeral ports), each in threads of its own so its pace is not the client's. Every
connection a nettest opens goes through a guard that refuses anything outside 127.0.0.0/8 (the
validation of remote_dns then records the attempt and connects nowhere). Each test states what
must hold: no exception escapes, the run ends within a bound measured with time.monotonic(),
records and memory stay bounded, and the verdict never blames the network for the vantage's own
misbehaviour (a failure, or what the rules of model/remote.py say).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import gc
import ipaddress
import json
import os
import socket
import ssl
import struct
import threading
import time
import tracemalloc
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.rrset
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.x509.oid import NameOID

from tamperscope.model import failures as F
from tamperscope.model.remote import remote_dns_verdict, remote_web_verdict
from tamperscope.nettests import remote_dns, remote_web
from tamperscope.nettests.base import Context, NettestError, Timeouts
from tamperscope.nettests.vantage import domain_name, vantage_of
from tamperscope.netx import Limits, NetxError, Resolver
from tamperscope.wire.tlshello import ClientHello, parse_client_hello

try:
    from . import test_netx_servers as srv
except ImportError:
    import test_netx_servers as srv  # type: ignore[no-redef]

# hostile vantages must be cut off fast: these tests bound wall-clock time, so they do not run among the
# low-priority tests (scripts/test.sh)
pytestmark = pytest.mark.wallclock

TRUSTED_IP, DNS_VANTAGE_IP, WEB_VANTAGE_IP = "127.0.0.2", "127.0.0.3", "127.0.0.4"
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
CONTROL, DOMAIN = "example.com", "blocked.example"
CONTROL_IP, DOMAIN_IP = "93.184.215.14", "93.184.215.20"  # what the trusted resolver says; never contacted
TRUSTED_ANSWERS = {CONTROL: (CONTROL_IP,), DOMAIN: (DOMAIN_IP,)}
TIMEOUTS = Timeouts(dns=1.0, connect=1.0, tls=1.0, http=2.0, measurement=20)
HARD_LIMIT = 30.0  # a run still going after this is a hang: the test fails, it does not wait
# The bounds promised, written out here (not read from the source, where a change would move them too):
EXTRA_PER_LOOKUP = 32  # netx.dns.MAX_UDP_EXTRA: late replies kept, and ignored datagrams noted, per lookup
VALIDATED = 3  # remote_dns.MAX_VALIDATED: addresses validated per measurement
BODY_KEPT = 512 * 1024  # netx.http.Limits().body


# --------------------------------------------------------------------------- the loopback guard


@pytest.fixture(autouse=True)
def contacted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every (ip, port) a remote nettest connects to, in order. Loopback connects for real; anything
    else is recorded and refused here, before a socket exists: no test sends a packet off 127/8."""
    seen: list[tuple[str, int]] = []

    def guarded(real: Callable[..., Any]) -> Callable[..., Any]:
        async def connect(ip: str, port: int, **kw: Any) -> Any:
            seen.append((ip, port))
            if ipaddress.ip_address(ip) not in LOOPBACK:
                raise NetxError(F.CONNECTION_REFUSED, operation=F.CONNECT, endpoint=f"{ip}:{port}")
            return await real(ip, port, **kw)
        return connect

    real_lookup = remote_dns.lookup_udp

    async def lookup(*args: Any, server: str, **kw: Any) -> Any:
        assert ipaddress.ip_address(server) in LOOPBACK, f"a DNS query to {server}"
        return await real_lookup(*args, server=server, **kw)

    monkeypatch.setattr(remote_dns, "tcp_connect", guarded(remote_dns.tcp_connect))
    monkeypatch.setattr(remote_web, "tcp_connect", guarded(remote_web.tcp_connect))
    monkeypatch.setattr(remote_dns, "lookup_udp", lookup)
    return seen


def measure(module: Any, ctx: Context, domain: str = DOMAIN) -> tuple[dict[str, Any], float]:
    """Run the nettest and its verdict as the probe does; (test_keys with the verdict, seconds)."""
    async def bounded() -> dict[str, Any]:
        async with asyncio.timeout(HARD_LIMIT):
            return await module.run(domain, ctx)

    t0 = time.monotonic()
    tk = asyncio.run(bounded())
    elapsed = time.monotonic() - t0
    measurement = {"test_name": module.NAME, "input": domain, "test_keys": tk}
    module.finish(measurement, ctx)
    json.dumps(measurement)  # every record can be written out
    again = (remote_dns_verdict if module is remote_dns else remote_web_verdict)(measurement, ctx.matcher)
    assert again.to_test_keys()["x_mechanism"] == tk["x_mechanism"]  # `analyze` reaches the probe's verdict
    return tk, elapsed


def tagged(records: list[dict[str, Any]], *tags: str) -> list[dict[str, Any]]:
    return [r for r in records if all(t in r.get("tags", ()) for t in tags)]


def addresses(records: list[dict[str, Any]]) -> set[str]:
    return {a.get("ipv4") or a.get("ipv6") for r in records for a in r.get("answers") or ()} - {None}


# --------------------------------------------------------------------------- DNS servers

DNSHandler = Callable[[dns.message.Message, bytes, int], list[bytes]]  # (query, wire, n-th for that name) -> datagrams


def qname(query: dns.message.Message) -> str:
    return query.question[0].name.to_text(omit_final_dot=True).lower()


def reply(query: dns.message.Message, *ips: str, rcode: int = 0, tc: bool = False,
          qid: int | None = None, cnames: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A reply to ``query``: A records for ``ips``, CNAME records (owner, target), an rcode, the TC bit."""
    r = dns.message.make_response(query)
    r.set_rcode(rcode)
    for owner, target in cnames:
        r.answer.append(dns.rrset.from_text(owner, 60, "IN", "CNAME", target))
    if ips:
        r.answer.append(dns.rrset.from_text_list(query.question[0].name, 60, "IN", "A", list(ips)))
    if tc:
        r.flags |= dns.flags.TC
    wire = r.to_wire()
    return wire if qid is None else struct.pack("!H", qid) + wire[2:]


class UDPServer:
    """A DNS server on ``host`` (UDP, an ephemeral port) answering each query with ``handler``'s datagrams,
    from a thread of its own. ``queries`` lists the names asked, ``sent`` counts datagrams sent."""

    def __init__(self, host: str, handler: DNSHandler) -> None:
        self.handler = handler
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self.queries: list[str] = []
        self.sent = 0
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> UDPServer:
        self.thread.start()
        return self

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                wire, peer = self.sock.recvfrom(65535)
                query = dns.message.from_wire(wire)
            except (OSError, dns.exception.DNSException):
                continue
            name = qname(query)
            n = self.queries.count(name)
            self.queries.append(name)
            try:
                for datagram in self.handler(query, wire, n):
                    self.sock.sendto(datagram, peer)
                    self.sent += 1
            except OSError:
                pass
            except Exception as exc:  # a bug in the test's handler: reported, not swallowed
                self.errors.append(exc)

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()
        assert not self.errors, self.errors


def trusted_handler(query: dns.message.Message, wire: bytes, n: int) -> list[bytes]:
    ips = TRUSTED_ANSWERS.get(qname(query))
    return [reply(query, *ips)] if ips else [reply(query, rcode=3)]


@pytest.fixture
def trusted() -> Iterator[UDPServer]:
    with UDPServer(TRUSTED_IP, trusted_handler) as server:
        yield server


def dns_ctx(trusted: UDPServer, vantage: UDPServer, **options: Any) -> Context:
    return Context(udp_resolver=Resolver("udp", TRUSTED_IP, port=trusted.port), timeouts=TIMEOUTS,
                   options={"vantage": DNS_VANTAGE_IP, "port": vantage.port, "tries": 2, **options})


def honest(query: dns.message.Message) -> bytes:
    """What a working resolver answers (the trusted resolver's addresses)."""
    return trusted_handler(query, b"", 0)[0]


# --------------------------------------------------------------------------- remote_dns


def test_an_honest_vantage_is_not_blocking(trusted: UDPServer) -> None:
    """The baseline the hostile cases are measured against: same servers, an honest vantage."""
    with UDPServer(DNS_VANTAGE_IP, lambda q, w, n: [honest(q)]) as vantage:
        tk, elapsed = measure(remote_dns, dns_ctx(trusted, vantage))
    assert (tk["x_status"], tk["x_mechanism"], tk["blocking"]) == ("ok", "none", False)
    assert vantage.queries == [CONTROL, DOMAIN, CONTROL] and sorted(trusted.queries) == [DOMAIN, CONTROL]
    assert elapsed < 3


def _garbage(query: dns.message.Message, wire: bytes) -> list[bytes]:
    qid = query.id
    header = struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0)
    question = wire[12:]
    return [
        b"",
        os.urandom(7),
        os.urandom(512),
        b"\xff" * 1400,
        wire,  # the query reflected back (QR=0)
        header,  # the right id, then nothing
        header + question,  # an answer counted, none there
        header + question + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\xff\xff\x01\x02\x03\x04",  # rdlength past end
        header + question + b"\xc0\x3f\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x01\x02\x03\x04",  # a forward pointer
        header + question + b"\xc0" + bytes([len(header) + len(question)]) + b"\x00\x01",  # a pointer to itself
        reply(dns.message.make_query("other.example", "A", id=qid), "10.66.66.66"),  # another question
    ]


@pytest.mark.parametrize("then_answer", [False, True], ids=["garbage-only", "garbage-then-answer"])
def test_dns_vantage_answering_garbage(trusted: UDPServer, then_answer: bool) -> None:
    """Datagrams that are no reply (random bytes, the query reflected, malformed answers with the right id,
    another question's answer with its 10.66.66.66) are ignored, and noted at most 32 times per
    lookup: garbage alone is a vantage that never answered (failure, after the DNS timeout); garbage
    before the real answer does not hide the real answer."""
    def handler(q: dns.message.Message, wire: bytes, n: int) -> list[bytes]:
        return _garbage(q, wire) * 10 + ([honest(q)] if then_answer else [])

    with UDPServer(DNS_VANTAGE_IP, handler) as vantage:
        tk, elapsed = measure(remote_dns, dns_ctx(trusted, vantage))
    vantage_lookups = [q for q in tk["queries"] if q["resolver_address"].startswith(DNS_VANTAGE_IP)]
    ignored = [e for e in tk["network_events"] if e.get("x_dns_ignored")]
    assert vantage.sent >= 110  # the garbage did go out
    assert 0 < len(ignored) <= EXTRA_PER_LOOKUP * len(vantage_lookups)
    assert "10.66.66.66" not in addresses(tk["queries"]) | addresses(tk["x_dns_duplicate_responses"])
    if then_answer:
        assert (tk["x_status"], tk["x_mechanism"]) == ("ok", "none")
        assert elapsed < 3
    else:
        assert (tk["x_status"], tk["blocking"]) == ("failure", None)
        assert vantage.queries == [CONTROL] and trusted.queries == []  # nothing learnt: nothing more asked
        assert 0.9 < elapsed < 2.5


@pytest.mark.parametrize("then_answer", [False, True], ids=["wrong-id-only", "wrong-id-then-answer"])
def test_dns_vantage_answering_with_the_wrong_transaction_id(trusted: UDPServer, then_answer: bool) -> None:
    """Replies to the right question under another id (a blind spoofer's guesses) carry 10.66.66.66: they
    are never taken for the answer, which would make the test domain look poisoned."""
    def handler(q: dns.message.Message, wire: bytes, n: int) -> list[bytes]:
        wrong = [reply(q, "10.66.66.66", qid=(q.id + k) & 0xFFFF) for k in range(1, 51)]
        return wrong + ([honest(q)] if then_answer else [])

    with UDPServer(DNS_VANTAGE_IP, handler) as vantage:
        tk, elapsed = measure(remote_dns, dns_ctx(trusted, vantage))
    assert "10.66.66.66" not in addresses(tk["queries"]) | addresses(tk["x_dns_duplicate_responses"])
    if then_answer:
        assert (tk["x_status"], tk["x_mechanism"]) == ("ok", "none")
        assert elapsed < 3
    else:
        assert (tk["x_status"], tk["x_mechanism"]) == ("failure", "none")
        assert 0.9 < elapsed < 2.5


@pytest.mark.parametrize("lie", ["127.0.0.1", "10.10.34.35", "0.0.0.0", "198.51.100.7", "1.2.3.4"])
@pytest.mark.parametrize("only_the_domain", [False, True], ids=["every-name", "domain-only"])
def test_dns_vantage_lying_about_the_control_domain_is_a_failure(
        trusted: UDPServer, contacted: list[tuple[str, int]], lie: str, only_the_domain: bool) -> None:
    """A resolver that answers every name with one address (a captive portal, a hijacking ISP resolver)
    says nothing about censorship: it lies about the control domain too, so the measurement is a failure.
    The same vantage lying about the domain alone is what a censor does: dns.poison (the positive control
    proving this test can fail). Addresses outside public space are never contacted."""
    def handler(q: dns.message.Message, wire: bytes, n: int) -> list[bytes]:
        return [honest(q) if only_the_domain and qname(q) == CONTROL else reply(q, lie)]

    with UDPServer(DNS_VANTAGE_IP, handler) as vantage:
        tk, elapsed = measure(remote_dns, dns_ctx(trusted, vantage))
    assert elapsed < 3.5
    assert all(ip == lie == "1.2.3.4" and port in (80, 443) for ip, port in contacted)  # public only (refused)
    if only_the_domain:
        assert (tk["x_status"], tk["x_mechanism"], tk["blocking"]) == ("anomaly", "dns.poison", "dns")
        return
    assert (tk["x_status"], tk["x_mechanism"], tk["blocking"]) == ("failure", "none", None)
    assert not contacted  # a resolver that hijacks every name gets none of its addresses visited
    before = next(i for i, q in enumerate(tk["queries"]) if "vantage_before" in q["tags"])
    reference = next(i for i, q in enumerate(tk["queries"]) if "control_domain" in q["tags"])
    assert {f"test_keys.queries[{before}]", f"test_keys.queries[{reference}]"} <= set(tk["x_evidence"])


def test_dns_vantage_flooding_every_query_keeps_the_records_bounded(trusted: UDPServer) -> None:
    """5,000 copies of the answer to every query: x_dns_duplicate_responses keeps at most 32
    per lookup, network_events stay small, the run ends on time, and identical consistent copies are no
    injection (a resolver that repeats itself is not a censor)."""
    def handler(q: dns.message.Message, wire: bytes, n: int) -> list[bytes]:
        return [honest(q)] * 5000

    with UDPServer(DNS_VANTAGE_IP, handler) as vantage:
        tk, elapsed = measure(remote_dns, dns_ctx(trusted, vantage))
    test_lookups = tagged(tk["queries"], "test")
    duplicates = tagged(tk["x_dns_duplicate_responses"], "test")
    assert vantage.queries == [CONTROL, DOMAIN, CONTROL] and vantage.sent > 10_000 and len(test_lookups) == 1
    assert 0 < len(duplicates) <= EXTRA_PER_LOOKUP * len(test_lookups)
    assert len(tk["x_dns_duplicate_responses"]) <= EXTRA_PER_LOOKUP * 2  # the test's and the control's lookups
    assert len(tk["network_events"]) < 4 * EXTRA_PER_LOOKUP + 20
    assert (tk["x_status"], tk["x_mechanism"]) == ("ok", "none")
    assert elapsed < 4


@pytest.mark.parametrize("with_the_real_address", [True, False])
def test_dns_vantage_answering_500_addresses_gets_a_few_validated(
        trusted: UDPServer, contacted: list[tuple[str, int]], with_the_real_address: bool) -> None:
    """500 A records (250 loopback addresses, then 249 or 250 in the allowed 198.18.0.0/15): validation
    contacts at most 3 addresses (each on 443 then 80), never one on loopback. With the
    control's address among them the answer is consistent (ok); without it, poison by rule 2."""
    allowed = ipaddress.ip_network("198.18.0.0/15")
    many = [f"127.0.{i // 200 + 1}.{i % 200 + 1}" for i in range(250)]
    many += [str(allowed[1000 + i]) for i in range(249)] + [DOMAIN_IP if with_the_real_address else "198.19.0.1"]

    def handler(q: dns.message.Message, wire: bytes, n: int) -> list[bytes]:
        return [honest(q) if qname(q) == CONTROL else reply(q, *many)]

    with UDPServer(DNS_VANTAGE_IP, handler) as vantage:
        tk, elapsed = measure(remote_dns, dns_ctx(trusted, vantage, allow=(allowed,)))
    test = tagged(tk["queries"], "test")
    assert len(test) == 1 and len(test[0]["answers"]) == 500  # the answer was read in full
    ips = {ip for ip, _ in contacted}
    assert 0 < len(ips) <= VALIDATED and len(contacted) <= 2 * VALIDATED
    assert all(ipaddress.ip_address(ip) in allowed for ip in ips)
    assert elapsed < 3.5
    if with_the_real_address:
        assert (tk["x_status"], tk["x_mechanism"]) == ("ok", "none")
    else:
        assert (tk["x_status"], tk["x_mechanism"], tk["x_confidence"]) == ("anomaly", "dns.poison", 0.8)


@pytest.mark.parametrize("everywhere", [False, True], ids=["domain-only", "control-too"])
def test_dns_vantage_answering_a_cname_loop_without_addresses(trusted: UDPServer, everywhere: bool) -> None:
    """blocked.example CNAME loop.blocked.example CNAME blocked.example, and no A record: the loop is
    recorded as it came (two CNAMEs, no chasing), one attempt is enough (an answer is no timeout), and
    the verdict is rule 3's for "no data" (dns.nxdomain at 0.7). A vantage that answers the control
    domain the same way answers nothing useful: failure."""
    def handler(q: dns.message.Message, wire: bytes, n: int) -> list[bytes]:
        name = qname(q)
        if name == CONTROL and not everywhere:
            return [honest(q)]
        loop = f"loop.{name}."
        return [reply(q, cnames=((f"{name}.", loop), (loop, f"{name}.")))]

    with UDPServer(DNS_VANTAGE_IP, handler) as vantage:
        tk, elapsed = measure(remote_dns, dns_ctx(trusted, vantage))
    assert elapsed < 3
    if everywhere:
        assert (tk["x_status"], tk["blocking"]) == ("failure", None) and vantage.queries == [CONTROL]
        return
    test = tagged(tk["queries"], "test")
    assert len(test) == 1 and test[0]["failure"] == F.DNS_NO_ANSWER
    assert [a["answer_type"] for a in test[0]["answers"]] == ["CNAME", "CNAME"]
    assert (tk["x_status"], tk["x_mechanism"], tk["x_confidence"]) == ("anomaly", "dns.nxdomain", 0.7)


@pytest.mark.parametrize("after_alive,confidence", [(True, 0.6), (False, 0.4)])
def test_dns_vantage_silent_for_the_test_is_drop(trusted: UDPServer, after_alive: bool, confidence: float) -> None:
    """The vantage answers the control domain, then never answers the domain: every attempt (tries=2)
    times out, dns.drop by rule 3, surer when the vantage answers the control domain again afterwards.
    The run lasts the attempts' timeouts, not more."""
    def handler(q: dns.message.Message, wire: bytes, n: int) -> list[bytes]:
        if qname(q) == CONTROL and (n == 0 or after_alive):
            return [honest(q)]
        return []

    with UDPServer(DNS_VANTAGE_IP, handler) as vantage:
        tk, elapsed = measure(remote_dns, dns_ctx(trusted, vantage))
    assert vantage.queries == [CONTROL, DOMAIN, DOMAIN, CONTROL]
    assert [q["failure"] for q in tagged(tk["queries"], "test")] == [F.GENERIC_TIMEOUT_ERROR] * 2
    assert (tk["x_status"], tk["x_mechanism"], tk["x_confidence"]) == ("anomaly", "dns.drop", confidence)
    assert 1.9 < elapsed < (3.5 if after_alive else 4.5)


def test_dns_vantage_silent_before_is_a_failure(trusted: UDPServer) -> None:
    """A vantage that does not answer the control domain is down or no resolver: failure, after one DNS
    timeout, and neither the domain nor the trusted resolver is asked."""
    with UDPServer(DNS_VANTAGE_IP, lambda q, w, n: []) as vantage:
        tk, elapsed = measure(remote_dns, dns_ctx(trusted, vantage))
    assert (tk["x_status"], tk["x_mechanism"], tk["blocking"]) == ("failure", "none", None)
    assert vantage.queries == [CONTROL] and trusted.queries == []
    assert len(tk["queries"]) == 1
    assert 0.9 < elapsed < 2


def test_dns_truncated_answer_with_the_address_is_used(trusted: UDPServer) -> None:
    """A reply with the TC bit that still carries the domain's address: the address stands (ok)."""
    def handler(q: dns.message.Message, wire: bytes, n: int) -> list[bytes]:
        return [reply(q, *TRUSTED_ANSWERS[qname(q)], tc=True)]

    with UDPServer(DNS_VANTAGE_IP, handler) as vantage:
        tk, elapsed = measure(remote_dns, dns_ctx(trusted, vantage))
    assert (tk["x_status"], tk["x_mechanism"]) == ("ok", "none") and elapsed < 3


def test_dns_truncated_control_answer_without_records_is_a_failure(trusted: UDPServer) -> None:
    """TC bit and an empty answer for every name (a resolver whose rate limiting "slips"): no address for
    the control domain before the test, so failure, and the domain is never asked."""
    with UDPServer(DNS_VANTAGE_IP, lambda q, w, n: [reply(q, tc=True)]) as vantage:
        tk, elapsed = measure(remote_dns, dns_ctx(trusted, vantage))
    assert (tk["x_status"], tk["blocking"]) == ("failure", None) and vantage.queries == [CONTROL]
    assert elapsed < 2


def test_dns_truncated_empty_answer_for_the_domain_accuses_nobody(trusted: UDPServer) -> None:
    """The vantage answers the control domain, and the domain with TC=1, NOERROR and no records. A truncated
    reply holds no verdict on the name: it must not become a negative answer (dns.nxdomain)."""
    def handler(q: dns.message.Message, wire: bytes, n: int) -> list[bytes]:
        return [honest(q) if qname(q) == CONTROL else reply(q, tc=True)]

    with UDPServer(DNS_VANTAGE_IP, handler) as vantage:
        tk, elapsed = measure(remote_dns, dns_ctx(trusted, vantage))
    assert elapsed < 3
    assert tk["x_status"] != "anomaly" and tk["x_mechanism"] == "none", (tk["x_mechanism"], tk["x_confidence"])


# --------------------------------------------------------------------------- web servers

Script = Callable[[socket.socket, "TCPServer"], None]


class TCPServer:
    """A TCP server on ``host`` (an ephemeral port) running ``script(conn, server)`` in a thread per
    connection. ``sent`` counts the bytes scripts sent through ``send``; leaving the context shuts every
    connection down (waking a script blocked in sendall) and joins the threads."""

    def __init__(self, host: str, script: Script) -> None:
        self.script = script
        self.stop = threading.Event()
        self.listener = socket.socket()
        self.listener.bind((host, 0))
        self.listener.listen(64)
        self.listener.settimeout(0.05)
        self.port: int = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.live: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.sent = 0
        self.connections = 0
        self.errors: list[BaseException] = []

    def __enter__(self) -> TCPServer:
        self._start(self._accept)
        return self

    def _start(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            conn.settimeout(5)
            with self.lock:
                self.connections += 1
                self.live.append(conn)
            self._start(self._serve, conn)

    def track(self, sock: socket.socket) -> None:
        with self.lock:
            self.live.append(sock)

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.script(conn, self)
        except (OSError, ValueError):
            pass  # the client went away: what a hostile server does next does not matter
        except Exception as exc:  # a bug in the test's script: reported, not swallowed
            self.errors.append(exc)
        finally:
            conn.close()

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        with self.lock:
            self.sent += len(data)

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        with self.lock:
            for sock in self.live:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # closed already
        for thread in self.threads:
            thread.join(5)
        self.listener.close()
        assert not any(t.is_alive() for t in self.threads)
        assert not self.errors, self.errors


def read_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        got = conn.recv(65536)
        if not got:
            raise OSError("EOF before the request head")
        data += got
    return data


def host_of(head: bytes) -> str:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"host":
            return value.strip().decode("latin-1").rsplit(":", 1)[0].lower()
    return ""


def reset(conn: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), as a censor's middlebox does."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


PAGE = b"<p>another site</p>\n"
OK_PAGE = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s" % (len(PAGE), PAGE)


def serve_ok(conn: socket.socket, server: TCPServer) -> None:
    read_head(conn)
    server.send(conn, OK_PAGE)


def close_at_once(conn: socket.socket, server: TCPServer) -> None:
    conn.close()


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> srv.TestCA:
    return srv.TestCA(tmp_path_factory.mktemp("ca"))


# With verify=False, netx checks the chain offline against the system trust store (tls._store). Debian's
# bundle holds roots whose serial number is 0 (Go Daddy, Starfield, SECOM...), and cryptography 50 warns
# about each; the project's pytest settings make that warning an error. Tests that complete a handshake
# ignore that one warning (see test_tls_vantage_with_a_serial_zero_certificate_breaks_nothing for the bug).
SERIAL_WARNING = "Parsed a serial number:cryptography.utils.CryptographyDeprecationWarning"
completes_handshakes = pytest.mark.filterwarnings(f"ignore:{SERIAL_WARNING}")


def serial_zero_context(ca: srv.TestCA, directory: Path) -> ssl.SSLContext:
    """A server context whose leaf certificate has serial number 0 (cryptography refuses to build one: the
    serial is patched in the DER, which voids the signature; the client does not verify it anyway)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vantage.example")]))
            .issuer_name(ca.cert.subject).public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("vantage.example")]), critical=False)
            .sign(ca.key, hashes.SHA256()))
    der = leaf.public_bytes(serialization.Encoding.DER)
    version_and_serial = b"\xa0\x03\x02\x01\x02\x02\x01\x01"
    assert der.count(version_and_serial) == 1
    der = der.replace(version_and_serial, version_and_serial[:-1] + b"\x00")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert x509.load_der_x509_certificate(der).serial_number == 0
    chain, keyfile = directory / "zero.pem", directory / "zero.key"
    chain.write_bytes(ssl.DER_cert_to_PEM_cert(der).encode())
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, keyfile)
    return context


def tls_script(ca: srv.TestCA, *, reset_sni: str | None = None, garbage: bytes | None = None,
               context: ssl.SSLContext | None = None) -> Script:
    """A TLS server (certificate for vantage.example, whatever the SNI) that resets the connection when the
    ClientHello names ``reset_sni``, or answers every ClientHello with ``garbage`` instead of a ServerHello."""
    context = context or ca.server_context("vantage.example")

    def script(conn: socket.socket, server: TCPServer) -> None:
        hello: ClientHello | None | bool = False
        deadline = time.monotonic() + 3
        while hello is False and time.monotonic() < deadline and not server.stop.is_set():
            peeked = conn.recv(16384, socket.MSG_PEEK)
            if not peeked:
                return
            hello = parse_client_hello(peeked)
            if hello is False:
                time.sleep(0.01)
        if not isinstance(hello, ClientHello):
            return
        if garbage is not None:
            conn.recv(16384)
            server.send(conn, garbage)
            server.stop.wait(2)  # keep the connection open: the client must give up by itself
            return
        if hello.sni == reset_sni:
            reset(conn)
            return
        with context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False) as tls:
            server.track(tls)  # before the handshake: leaving the server must wake it wherever it waits
            tls.do_handshake()
            while tls.recv(4096):
                pass

    return script


def web_ctx(http: TCPServer | None, https: TCPServer | None, **options: Any) -> Context:
    ports = {"http": http.port if http else 1, "https": https.port if https else 1}
    protocols = [p for p, s in (("http", http), ("https", https)) if s is not None]
    return Context(timeouts=TIMEOUTS, options={"vantage": WEB_VANTAGE_IP, "ports": ports, "tries": 2,
                                               "residual_wait": 0, "protocols": protocols, **options})


def roles(tk: dict[str, Any], protocol: str) -> list[str]:
    """The role of each connection of one protocol, in order."""
    return [next(t for t in c["tags"] if t.startswith("vantage_") or t == "test")
            for c in tagged(tk["tcp_connect"], protocol)]


# --------------------------------------------------------------------------- remote_web


@completes_handshakes
def test_an_honest_web_vantage_is_not_blocking(ca: srv.TestCA) -> None:
    """The baseline: a server that hosts another site, over HTTP and HTTPS, is no interference."""
    with TCPServer(WEB_VANTAGE_IP, serve_ok) as http, TCPServer(WEB_VANTAGE_IP, tls_script(ca)) as https:
        tk, elapsed = measure(remote_web, web_ctx(http, https))
    assert (tk["x_status"], tk["x_mechanism"], tk["blocking"]) == ("ok", "none", False)
    assert roles(tk, "http") == roles(tk, "https") == ["vantage_before", "test", "vantage_after"]
    assert elapsed < 3


def _endless_headers(conn: socket.socket, server: TCPServer) -> None:
    read_head(conn)
    server.send(conn, b"HTTP/1.1 200 OK\r\n")
    block = b"".join(b"X-Filler-%05d: %s\r\n" % (i, b"v" * 40) for i in range(1000))
    while not server.stop.is_set():
        server.send(conn, block)


def _many_headers(conn: socket.socket, server: TCPServer) -> None:
    read_head(conn)
    server.send(conn, b"HTTP/1.1 200 OK\r\n" + b"a: b\r\n" * 5000 + b"Content-Length: 0\r\n\r\n")
    server.stop.wait(3)


@pytest.mark.parametrize("script,failure", [
    (_endless_headers, F.HTTP_HEADERS_TOO_LARGE),
    (_many_headers, F.HTTP_TOO_MANY_HEADERS),
], ids=["endless", "5000-headers"])
def test_web_vantage_sending_endless_headers_is_cut_off(script: Script, failure: str) -> None:
    """A response head that never ends (or holds 5,000 fields) fails at Limits' caps, fast and in bounded
    memory; on every connection, the control domain included, it is the vantage's fault: failure."""
    with TCPServer(WEB_VANTAGE_IP, script) as http:
        tracemalloc.start()
        try:
            tk, elapsed = measure(remote_web, web_ctx(http, None))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert (tk["x_status"], tk["x_mechanism"], tk["blocking"]) == ("failure", "none", None)
    assert roles(tk, "http") == ["vantage_before"]  # the domain was never sent to a broken server
    assert [r["failure"] for r in tk["requests"]] == [failure]
    assert len(json.dumps(tk)) < 256 * 1024  # the record keeps at most the capped head
    assert http.sent < 32 * 2**20 and peak < 32 * 2**20, (http.sent, peak)
    assert elapsed < 2


# --------------------------------------------------------------------------- remote_web --protocol echo (Quack)


def echo_ctx(echo: TCPServer, **options: Any) -> Context:
    return Context(timeouts=TIMEOUTS, matcher=_real_matcher(),
                   options={"vantage": WEB_VANTAGE_IP, "ports": {"echo": echo.port}, "tries": 2,
                            "residual_wait": 0, "protocols": ["echo"], **options})


def _real_matcher() -> Any:
    from tamperscope.analysis.verdicts import default_matcher

    return default_matcher()


def echo_script(on_domain: Callable[[socket.socket, TCPServer, bytes], None] | None = None) -> Script:
    """An echo service (port 7) that sends back what it reads; a request naming DOMAIN goes to ``on_domain``."""
    def script(conn: socket.socket, server: TCPServer) -> None:
        data = read_head(conn)
        if on_domain is not None and host_of(data) == DOMAIN:
            on_domain(conn, server, data)
            return
        server.send(conn, data)
        server.stop.wait(0.2)
    return script


FORTIGUARD = (Path(__file__).resolve().parents[3] / "shared" / "data" / "blockpages" / "citizenlab")


def _blockpage_then_close(conn: socket.socket, server: TCPServer, data: bytes) -> None:
    page = next(p for p in sorted(FORTIGUARD.glob("*.html")) if "forti" in p.name.lower()).read_bytes()
    server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n" + page)


def _altered(conn: socket.socket, server: TCPServer, data: bytes) -> None:
    server.send(conn, data.replace(b"Host:", b"Hose:"))  # a middlebox rewrote the header's name
    server.stop.wait(3)


def _endless(conn: socket.socket, server: TCPServer, data: bytes) -> None:
    block = b"garbage" * 4096
    while not server.stop.is_set():
        server.send(conn, block)


def _silent(conn: socket.socket, server: TCPServer, data: bytes) -> None:
    server.stop.wait(5)


@pytest.mark.parametrize("on_domain,mechanism,failure", [
    (None, "none", None),
    (lambda conn, server, data: reset(conn), "http.rst", "connection_reset"),
    (_blockpage_then_close, "http.blockpage", "echo_mismatch"),
    (_altered, "middlebox", "echo_mismatch"),
    (_endless, "middlebox", "echo_mismatch"),
    (_silent, "http.drop", "generic_timeout_error"),
], ids=["echoed", "reset", "blockpage", "altered", "endless", "silent"])
def test_echo_vantage(on_domain: Any, mechanism: str, failure: str | None) -> None:
    """Quack over real sockets: the control domain's request comes back intact each time; what happens to the
    domain's decides, and a server that never stops sending is cut at ECHO_KEEP, fast."""
    with TCPServer(WEB_VANTAGE_IP, echo_script(on_domain)) as echo:
        tk, elapsed = measure(remote_web, echo_ctx(echo))
    assert tk["x_mechanism"] == mechanism and tk["protocols"] == ["echo"]
    assert roles(tk, "echo")[0] == "vantage_before" and roles(tk, "echo")[-1] == "vantage_after"
    controls = [e for e in tk["x_echo"] if "test" not in e["tags"]]
    assert controls and all(e["received"] == e["sent"] and e["failure"] is None for e in controls)
    tests = [e for e in tk["x_echo"] if "test" in e["tags"]]
    assert tests and all(e["sent"] == f"GET / HTTP/1.1\r\nHost: {DOMAIN}\r\n\r\n" for e in tests)
    assert {e["failure"] for e in tests} == {failure}
    if mechanism == "none":
        assert tk["x_status"] == "ok" and len(tests) == 1 and tests[0]["received"] == tests[0]["sent"]
    else:
        assert tk["x_status"] == "anomaly" and any(p.startswith("test_keys.x_echo[") for p in tk["x_evidence"])
    if mechanism == "http.blockpage":
        assert tk["x_fingerprints"] and "forti" in " ".join(tk["x_fingerprints"]).lower()
        assert len(tests) == 1  # a forged answer is an answer: not tried again
    if on_domain is _endless:
        assert all(len(e["received"]) <= remote_web.ECHO_KEEP for e in tests)
    assert len(json.dumps(tk)) < 512 * 1024
    assert elapsed < 10


def read_hello(conn: socket.socket) -> tuple[bytes, str | None]:
    """The bytes of a ClientHello read whole, and its SNI (None for bytes that are no ClientHello)."""
    data = b""
    while (hello := parse_client_hello(data)) is False and len(data) < 65536:
        got = conn.recv(65536)
        if not got:
            raise OSError("EOF before the ClientHello")
        data += got
    return data, hello.sni if isinstance(hello, ClientHello) else None


def echo_tls_script(on_domain: Callable[[socket.socket, TCPServer, bytes], None] | None = None) -> Script:
    """An echo service that sends back the ClientHello it reads; one naming DOMAIN goes to ``on_domain``."""
    def script(conn: socket.socket, server: TCPServer) -> None:
        data, sni = read_hello(conn)
        if on_domain is not None and sni == DOMAIN:
            on_domain(conn, server, data)
            return
        server.send(conn, data)
        server.stop.wait(0.2)
    return script


def _tls_alert(conn: socket.socket, server: TCPServer, data: bytes) -> None:
    server.send(conn, bytes.fromhex("15030300020228"))  # a forged handshake_failure alert, then the close


def _hello_with_another_name(conn: socket.socket, server: TCPServer, data: bytes) -> None:
    server.send(conn, data.replace(DOMAIN.encode(), b"x" * len(DOMAIN)))  # a middlebox blanked the SNI
    server.stop.wait(3)


@pytest.mark.parametrize("on_domain,mechanism,failure", [
    (None, "none", None),
    (lambda conn, server, data: reset(conn), "tls.rst", "connection_reset"),
    (_silent, "tls.drop", "generic_timeout_error"),
    (_tls_alert, "middlebox", "echo_mismatch"),
    (_hello_with_another_name, "middlebox", "echo_mismatch"),
    (_blockpage_then_close, "http.blockpage", "echo_mismatch"),
], ids=["echoed", "reset", "silent", "alert", "sni-rewritten", "blockpage"])
def test_echo_tls_vantage(on_domain: Any, mechanism: str, failure: str | None) -> None:
    """Quack's TLS payload over real sockets: a real ClientHello naming the domain as its SNI goes to the echo
    service (a fresh one each time, kept as base64); a reset or silence is the TLS filter's (tls.rst, tls.drop),
    other bytes back are a middlebox, or a blockpage when a fingerprint matches them."""
    with TCPServer(WEB_VANTAGE_IP, echo_tls_script(on_domain)) as echo:
        tk, elapsed = measure(remote_web, echo_ctx(echo, protocols=["echo_tls"]))
    assert tk["x_mechanism"] == mechanism and tk["protocols"] == ["echo_tls"]
    assert roles(tk, "echo_tls")[0] == "vantage_before" and roles(tk, "echo_tls")[-1] == "vantage_after"
    assert {c["port"] for c in tk["tcp_connect"]} == {echo.port}
    sent = [base64.b64decode(e["sent"]["data"]) for e in tk["x_echo"]]
    names = [parse_client_hello(b).sni for b in sent]  # type: ignore[union-attr]
    assert names[0] == names[-1] == CONTROL and DOMAIN in names
    assert len(set(sent)) == len(sent)  # fresh randoms: no two hellos alike
    controls = [e for e in tk["x_echo"] if "test" not in e["tags"]]
    assert controls and all(e["received"] == e["sent"] and e["failure"] is None for e in controls)
    tests = [e for e in tk["x_echo"] if "test" in e["tags"]]
    assert {e["failure"] for e in tests} == {failure}
    if mechanism == "none":
        assert tk["x_status"] == "ok" and len(tests) == 1
    else:
        assert tk["x_status"] == "anomaly" and any(p.startswith("test_keys.x_echo[") for p in tk["x_evidence"])
        assert tk["x_confidence"] >= 0.5
    if mechanism == "http.blockpage":
        assert tk["x_fingerprints"] and "forti" in " ".join(tk["x_fingerprints"]).lower()
    assert elapsed < 10


ECH_KEY = X25519PrivateKey.from_private_bytes(bytes(range(2, 34)))  # fixed, as any key test parameters use


def _ech_published() -> bytes:
    from tamperscope.wire import ech

    return ech.encode_config_list(ech.encode_config(0x33, ECH_KEY.public_key().public_bytes_raw(),
                                                    "cloudflare-ech.com", ((1, 1),), 64))


def _https_resolver(published: bytes | None) -> srv.UDPHandler:
    """The trusted resolver: an HTTPS record for DOMAIN with ``published`` (None: none)."""
    def handler(query: Any, data: bytes) -> list[srv.Reply]:
        reply = dns.message.make_response(query)
        q = query.question[0]
        if published is not None and q.rdtype == 65 and q.name.to_text().rstrip(".") == DOMAIN:
            value = f'1 . ech="{base64.b64encode(published).decode()}"'
            reply.answer.append(dns.rrset.from_text(q.name, 60, "IN", "HTTPS", value))
        return [(0.0, reply.to_wire())]
    return handler


def ech_echo_script(seen: list[tuple[str | None, bool]]) -> Script:
    """An echo service behind Russia's rule: a hello with ECH whose outer name is cloudflare-ech.com is reset;
    every other hello comes back. ``seen``: (outer name, carries ECH) of each hello read."""
    def script(conn: socket.socket, server: TCPServer) -> None:
        data, sni = read_hello(conn)
        hello = parse_client_hello(data)
        ech = isinstance(hello, ClientHello) and hello.ech
        seen.append((sni, ech))
        if ech and sni == "cloudflare-ech.com":
            reset(conn)
            return
        server.send(conn, data)
        server.stop.wait(0.2)
    return script


@pytest.mark.parametrize("published", [True, False], ids=["config-published", "no-config"])
def test_echo_ech_sends_what_a_browser_sends_the_domain(published: bool) -> None:
    """--protocol echo_ech: the domain's hello is sealed with the config its HTTPS record publishes, so its
    name in the clear is the config's public name, which Russia's rule reads: tls.rst from outside. The
    control domain's hello is GREASE ECH naming itself and comes back. Without a published config the
    domain's hello is GREASE naming the domain, which that rule lets through."""
    from tamperscope.wire import ech

    seen: list[tuple[str | None, bool]] = []

    async def with_resolver() -> tuple[dict[str, Any], float]:
        async with srv.UDPDNSServer(_https_resolver(_ech_published() if published else None)) as dns_server:
            ctx = echo_ctx(echo, protocols=["echo_ech"])
            ctx = Context(timeouts=ctx.timeouts, matcher=ctx.matcher, options=ctx.options,
                          udp_resolver=Resolver("udp", "127.0.0.1", port=dns_server.port, duplicate_window=0))
            return await asyncio.to_thread(measure, remote_web, ctx)

    with TCPServer(WEB_VANTAGE_IP, ech_echo_script(seen)) as echo:
        tk, _ = asyncio.run(with_resolver())
    controls = [e for e in tk["x_echo"] if "test" not in e["tags"]]
    assert controls and all(e["failure"] is None and e["received"] == e["sent"] for e in controls)
    assert (CONTROL, True) in seen and all(ech_flag for _, ech_flag in seen)
    tests = [base64.b64decode(e["sent"]["data"]) for e in tk["x_echo"] if "test" in e["tags"]]
    if published:
        assert tk["x_mechanism"] == "tls.rst" and ("cloudflare-ech.com", True) in seen
        (config,) = ech.parse_config_list(_ech_published())
        assert {ech.open_client_hello(t, {0x33: (config, ECH_KEY)}).sni for t in tests} == {DOMAIN}
        (query,) = [q for q in tk["queries"] if q["query_type"] == "HTTPS"]
        assert query["tags"] == ["ech_config"]
    else:
        assert tk["x_mechanism"] == "none" and (DOMAIN, True) in seen
        assert all(parse_client_hello(t).sni == DOMAIN for t in tests)  # type: ignore[union-attr]


def test_echo_and_echo_tls_together_the_strongest_wins() -> None:
    """Both payloads through one echo service: the HTTP one comes back intact, the ClientHello naming the domain
    is reset. The verdict is the TLS filter's, and each record is filed under its own protocol."""
    def script(conn: socket.socket, server: TCPServer) -> None:
        first = conn.recv(1, socket.MSG_PEEK)
        if first == b"\x16":
            echo_tls_script(lambda c, s, d: reset(c))(conn, server)
        else:
            echo_script()(conn, server)

    with TCPServer(WEB_VANTAGE_IP, script) as echo:
        tk, _ = measure(remote_web, echo_ctx(echo, protocols=["echo", "echo_tls"]))
    assert tk["x_mechanism"] == "tls.rst" and tk["protocols"] == ["echo", "echo_tls"]
    plain = [e for e in tk["x_echo"] if "echo" in e["tags"]]
    assert plain and all(e["failure"] is None and isinstance(e["sent"], str) for e in plain)
    verdict = remote_web_verdict({"test_keys": {**tk, "x_echo": plain}})
    assert verdict.mechanism == "none" and verdict.status == "ok"  # without the TLS records: nothing blocked


def test_a_vantage_that_is_no_echo_service_is_a_failure_not_a_verdict() -> None:
    """A web server on the echo port answers the control domain's request with a page: the vantage does not
    echo, so nothing can be said of the domain (and it is never sent); a closed port likewise."""
    with TCPServer(WEB_VANTAGE_IP, serve_ok) as web:
        tk, _ = measure(remote_web, echo_ctx(web))
    assert (tk["x_status"], tk["x_mechanism"], tk["blocking"]) == ("failure", "none", None)
    assert roles(tk, "echo") == ["vantage_before"]
    assert [e["failure"] for e in tk["x_echo"]] == ["echo_mismatch"]
    with TCPServer(WEB_VANTAGE_IP, close_at_once) as closed:
        tk, _ = measure(remote_web, echo_ctx(closed))
    # the close, or the RST our request meets when it arrives after the close: both before any byte came back
    assert tk["x_status"] == "failure" and len(tk["x_echo"]) == 1
    assert tk["x_echo"][0]["failure"] in ("eof_error", "connection_reset") and tk["x_echo"][0]["received"] == ""


def test_web_vantage_sending_a_200_mb_body_is_truncated() -> None:
    """A 200 MB body: Limits.body bytes are kept (body_is_truncated), reading stops there and the server
    cannot push much more; the attempt completed, so the page (not the domain's) is no interference."""
    size = 200 * 2**20
    chunk = b"A" * 65536

    def script(conn: socket.socket, server: TCPServer) -> None:
        read_head(conn)
        server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                          b"Content-Length: %d\r\n\r\n" % size)
        sent = 0
        while sent < size and not server.stop.is_set():
            server.send(conn, chunk)
            sent += len(chunk)

    with TCPServer(WEB_VANTAGE_IP, script) as http:
        tracemalloc.start()
        try:
            tk, elapsed = measure(remote_web, web_ctx(http, None))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert (tk["x_status"], tk["x_mechanism"], tk["blocking"]) == ("ok", "none", False)
    assert len(tk["requests"]) == 3
    for r in tk["requests"]:
        assert r["failure"] is None and r["response"]["body_is_truncated"] is True
        assert len(r["response"]["body"]) == BODY_KEPT == Limits().body
    assert http.sent < 3 * 16 * 2**20, http.sent  # far from 3 x 200 MB
    assert peak < 48 * 2**20, peak
    assert elapsed < 5


def _slow_status(conn: socket.socket, server: TCPServer) -> None:
    read_head(conn)
    for byte in OK_PAGE:
        server.send(conn, bytes([byte]))
        if server.stop.wait(1.0):
            return


def _slow_body(conn: socket.socket, server: TCPServer) -> None:
    read_head(conn)
    server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
    for _ in range(100):
        server.send(conn, b"x")
        if server.stop.wait(1.0):
            return


@pytest.mark.parametrize("script", [_slow_status, _slow_body], ids=["slow-head", "slow-body"])
def test_web_vantage_slowloris_is_cut_at_the_http_timeout(script: Script) -> None:
    """One byte a second: the round trip ends at the HTTP timeout (2 s), not when the server is done;
    every connection being slow, the control domain's too, it is a failure, and the domain is never sent."""
    with TCPServer(WEB_VANTAGE_IP, script) as http:
        tk, elapsed = measure(remote_web, web_ctx(http, None))
    assert (tk["x_status"], tk["x_mechanism"], tk["blocking"]) == ("failure", "none", None)
    assert roles(tk, "http") == ["vantage_before"]
    assert [r["failure"] for r in tk["requests"]] == [F.GENERIC_TIMEOUT_ERROR]
    assert 1.9 < elapsed < 3.5


def test_web_vantage_closing_every_connection_is_a_failure_not_blocking() -> None:
    """The server accepts and closes every connection at once, before and during the test alike: that is
    a broken server, not a censor answering the domain (failure over both protocols, no domain sent)."""
    with TCPServer(WEB_VANTAGE_IP, close_at_once) as http, TCPServer(WEB_VANTAGE_IP, close_at_once) as https:
        tk, elapsed = measure(remote_web, web_ctx(http, https))
    assert (tk["x_status"], tk["x_mechanism"], tk["blocking"]) == ("failure", "none", None)
    assert roles(tk, "http") == roles(tk, "https") == ["vantage_before"]
    assert tk["requests"][0]["failure"] in (F.EOF_ERROR, F.CONNECTION_RESET)
    assert tk["tls_handshakes"][0]["failure"] in (F.EOF_ERROR, F.CONNECTION_RESET)
    assert elapsed < 2.5


def test_web_vantage_closing_every_connection_with_a_residual_wait_still_ends() -> None:
    """With a residual wait (1 s), the control domain is tried again, then the measurement gives up: the
    wait is bounded and a server that never serves the control domain is still a failure."""
    with TCPServer(WEB_VANTAGE_IP, close_at_once) as http:
        tk, elapsed = measure(remote_web, web_ctx(http, None, residual_wait=1.0))
    assert (tk["x_status"], tk["x_mechanism"]) == ("failure", "none")
    assert roles(tk, "http") == ["vantage_before", "vantage_before"] and http.connections == 2
    assert 0.9 < elapsed < 3


def test_web_reset_of_the_domains_host_only_is_http_rst() -> None:
    """The positive control: a path that resets the request carrying Host: blocked.example and serves the
    control domain before and after is http.rst at 0.9, after one attempt (a reset is an answer)."""
    def script(conn: socket.socket, server: TCPServer) -> None:
        head = read_head(conn)
        if host_of(head) == DOMAIN:
            reset(conn)
        else:
            server.send(conn, OK_PAGE)

    with TCPServer(WEB_VANTAGE_IP, script) as http:
        tk, elapsed = measure(remote_web, web_ctx(http, None))
    assert (tk["x_status"], tk["x_mechanism"], tk["x_confidence"]) == ("anomaly", "http.rst", 0.9)
    assert roles(tk, "http") == ["vantage_before", "test", "vantage_after"]
    assert [r["failure"] for r in tagged(tk["requests"], "test")] == [F.CONNECTION_RESET]
    assert elapsed < 3


@pytest.mark.parametrize("banner", [
    b"SSH-2.0-OpenSSH_9.6p1 Debian-4\r\n",
    b"220 mail.example ESMTP Postfix\r\n",
    b"\x00\x01\x02\x03" * 64,
    b"HTTP/9.9 999 \xff\xfe\r\nX: \x00\r\n\r\n",
], ids=["ssh", "smtp", "binary", "bad-status"])
def test_web_vantage_speaking_something_else_is_a_failure(banner: bytes) -> None:
    """Not an HTTP server at all (a banner at connect, whatever is asked): failure, quickly."""
    def script(conn: socket.socket, server: TCPServer) -> None:
        server.send(conn, banner)
        server.stop.wait(3)

    with TCPServer(WEB_VANTAGE_IP, script) as http:
        tk, elapsed = measure(remote_web, web_ctx(http, None))
    assert (tk["x_status"], tk["x_mechanism"], tk["blocking"]) == ("failure", "none", None)
    assert roles(tk, "http") == ["vantage_before"]
    assert tk["requests"][0]["failure"] is not None
    assert elapsed < 2.5


@pytest.mark.parametrize("garbage", [
    os.urandom(2048),
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
    b"\x16\x03\x03\xff\xff" + os.urandom(64),  # a handshake record announcing 64 KiB, then silence
    b"\x15\x03\x03\x00\x02\x02\x28",  # a fatal handshake_failure alert
], ids=["random", "plain-http", "huge-record", "alert"])
def test_tls_vantage_answering_garbage_is_a_failure(ca: srv.TestCA, garbage: bytes) -> None:
    """Garbage instead of a ServerHello, on every connection: the handshake fails (at the latest at the TLS
    timeout) and the vantage serves no control domain: failure, the domain is never sent."""
    with TCPServer(WEB_VANTAGE_IP, tls_script(ca, garbage=garbage)) as https:
        tk, elapsed = measure(remote_web, web_ctx(None, https))
    assert (tk["x_status"], tk["x_mechanism"], tk["blocking"]) == ("failure", "none", None)
    assert roles(tk, "https") == ["vantage_before"]
    assert tk["tls_handshakes"][0]["failure"] is not None and tk["tls_handshakes"][0]["server_name"] == CONTROL
    assert elapsed < 2.5


@completes_handshakes
def test_tls_reset_of_the_domains_sni_only_is_tls_rst(ca: srv.TestCA) -> None:
    """The positive control: the ClientHello naming blocked.example is reset, the control domain's passes
    before and after: tls.rst at 0.9, after one attempt; HTTP, untouched, is ok, and TLS's anomaly wins."""
    with TCPServer(WEB_VANTAGE_IP, serve_ok) as http, \
            TCPServer(WEB_VANTAGE_IP, tls_script(ca, reset_sni=DOMAIN)) as https:
        tk, elapsed = measure(remote_web, web_ctx(http, https))
    assert (tk["x_status"], tk["x_mechanism"], tk["x_confidence"]) == ("anomaly", "tls.rst", 0.9)
    assert roles(tk, "https") == ["vantage_before", "test", "vantage_after"]
    test = tagged(tk["tls_handshakes"], "test")
    assert [(h["server_name"], h["failure"]) for h in test] == [(DOMAIN, F.CONNECTION_RESET)]
    http_alone = {**tk, "tls_handshakes": [], "tcp_connect": tagged(tk["tcp_connect"], "http")}
    assert remote_web_verdict({"test_keys": http_alone}).mechanism == "none"  # HTTP alone: not blocked
    assert elapsed < 3


@pytest.mark.filterwarnings(f"error:{SERIAL_WARNING}")
def test_tls_vantage_with_a_serial_zero_certificate_breaks_nothing(ca: srv.TestCA, tmp_path: Path) -> None:
    """A vantage whose certificate has serial number 0 (RFC 5280 forbids it; real roots have it): whatever
    cryptography thinks of it, the handshake completed, and the measurement is recorded (ok), with no
    exception out of run() and no socket left open."""
    error = tk = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)  # a leaked stream is noted here, when collected
        with TCPServer(WEB_VANTAGE_IP, tls_script(ca, context=serial_zero_context(ca, tmp_path))) as https:
            try:
                tk, _ = measure(remote_web, web_ctx(None, https))
            except Exception as exc:
                error = f"{type(exc).__name__}: {[repr(e) for e in getattr(exc, 'exceptions', [exc])]}"
        gc.collect()
    assert error is None, error
    assert tk is not None and (tk["x_status"], tk["x_mechanism"]) == ("ok", "none")
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


# --------------------------------------------------------------------------- input and vantage validation

HOSTILE_DOMAINS = [
    "", " ", "\x00", ".", "..", "a..b", "blocked.example\x00", "blocked.example\r\nHost: evil.example",
    "blocked example", "*.example", "-blocked.example", "blocked-.example", "a" * 64 + ".example",
    ("a" * 60 + ".") * 5 + "example", "a." * 200_000 + "example", "127.0.0.1", "127.1", "2130706433", "1.2.3.4.5",
    "::1", "[::1]", "::ffff:127.0.0.1", "http://127.0.0.1/", "http://[::1]:80/", "http://blocked.example@127.0.0.1/",
    "http://", "http://:80/", "%62locked.example", "blocked.example:80", "blocked.example/path", "xn--.example",
    "blocked.example%00", "\ud800.example", "fe80::1%eth0",
]


@pytest.mark.parametrize("value", HOSTILE_DOMAINS, ids=range(len(HOSTILE_DOMAINS)))
def test_hostile_domains_are_refused_in_one_line(value: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(NettestError) as info:
        domain_name(value, "remote_dns")
    message = str(info.value)
    assert "\n" not in message and "\r" not in message and len(message) < 2 * len(value) + 100
    with pytest.raises(NettestError):
        remote_web.check_input(value)
    assert time.monotonic() - t0 < 1


@pytest.mark.parametrize("value,name", [
    ("  Blocked.Example.  ", "blocked.example"),
    ("HTTPS://Blocked.Example:8443/path?q=1#f", "blocked.example"),
    ("ｂｌｏｃｋｅｄ．ｅｘａｍｐｌｅ", "blocked.example"),  # fullwidth: what IDNA maps it to
    ("bücher.example", "xn--bcher-kva.example"),
    ("bl\u200bocked.example", "blocked.example"),  # IDNA maps a zero-width space to nothing
])
def test_domains_are_normalised_to_what_is_sent(value: str, name: str) -> None:
    assert domain_name(value, "t") == name


@pytest.mark.parametrize("value", ["１２７．０．０．１", "192。0。2。7", "http://１０．０．０．１/"])
def test_an_ip_address_in_unicode_disguise_is_not_a_domain(value: str) -> None:
    with pytest.raises(NettestError):
        domain_name(value, "t")


HOSTILE_VANTAGES: list[Any] = [
    None, "", " ", 2130706433, b"127.0.0.3", ["127.0.0.3"], {"ip": "127.0.0.3"}, "localhost", "127.0.0.3:53",
    " 127.0.0.3", "127.0.0.3\n", "127.0.0.3/32", "127.1", "0x7f.0.0.3", "127.000.000.003", "[::1]",
    "127.0.0.3\x00", "1" * 100_000,
]


@pytest.mark.parametrize("vantage", HOSTILE_VANTAGES, ids=range(len(HOSTILE_VANTAGES)))
def test_hostile_vantages_are_refused_before_anything_is_sent(
        trusted: UDPServer, contacted: list[tuple[str, int]], vantage: Any) -> None:
    """A vantage that is not an IP address is refused (one line) before a single packet goes out."""
    ctx = Context(udp_resolver=Resolver("udp", TRUSTED_IP, port=trusted.port), timeouts=TIMEOUTS,
                  options={"vantage": vantage, "ports": {"http": 1, "https": 1}})
    with pytest.raises(NettestError, match="needs a vantage") as info:
        vantage_of(ctx, "remote_dns")
    assert "\n" not in str(info.value)
    for module in (remote_dns, remote_web):
        t0 = time.monotonic()
        with pytest.raises(NettestError, match="needs a vantage"):
            asyncio.run(module.run(DOMAIN, ctx))
        assert time.monotonic() - t0 < 1
    time.sleep(0.05)
    assert trusted.queries == [] and contacted == []


def test_a_hostile_domain_is_refused_before_the_vantage_is_asked(
        trusted: UDPServer, contacted: list[tuple[str, int]]) -> None:
    with UDPServer(DNS_VANTAGE_IP, lambda q, w, n: [honest(q)]) as vantage:
        ctx = dns_ctx(trusted, vantage)
        for value in ("127.0.0.1", "blocked.example\r\nX: y", "a..b"):
            for module in (remote_dns, remote_web):
                with pytest.raises(NettestError, match="not a domain name"):
                    asyncio.run(module.run(value, ctx))
        time.sleep(0.05)
    assert vantage.queries == [] and trusted.queries == [] and contacted == []

