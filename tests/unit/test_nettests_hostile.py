"""The nettests beside web_connectivity against hostile or broken peers on 127.0.0.1.

Helpers (control, echo) and servers answer what they like; each test states what must
hold: a helper that broke is a failure, not an accusation of the network, and an answer
that is not what was measured (a blockpage, a non-address) never becomes evidence.
No traffic leaves 127.0.0.1: lookups are of IP literals, or replaced by fakes that
append crafted records to the trace.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from tamperscope.collector import testing
from tamperscope.model.dnsverdict import dnscheck_verdict
from tamperscope.nettests import (
    dnscheck,
    http_header_field_manipulation,
    http_invalid_request_line,
    throttling,
    tls_mitm,
)
from tamperscope.nettests.base import Context, Timeouts
from tamperscope.netx import DNSResult, Trace
from tamperscope.netx.trace import dns_record

try:
    from . import test_netx_servers as srv
except ImportError:
    import test_netx_servers as srv  # type: ignore[no-redef]

LO = srv.LOOPBACK
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
FAST = Timeouts(dns=1, connect=1, tls=1, http=2, control=2, measurement=6)


def writable(value: Any) -> None:
    orjson.loads(orjson.dumps(value))


async def serve(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> asyncio.Server:
    return await asyncio.start_server(handler, LO, 0, ssl=ssl_context)


def port_of(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


def closed_port() -> int:
    """A loopback port nothing listens on (bound, never listening, and held: no other test can take it)."""
    return testing.closed_port()


def helper_answering(answer: dict[str, Any]) -> Handler:
    """A control helper that answers every request with ``answer``."""
    body = orjson.dumps(answer)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    return handle


# --- tls_mitm: a control that did not succeed cannot vouch for the site -----------------------------

@pytest.mark.parametrize("entry", [
    {"server_name": LO, "status": "false", "failure": "ssl_unknown_authority"},
    {"server_name": LO, "status": True, "failure": "ssl_unknown_authority"},
    {"server_name": LO, "status": 1, "failure": None},
    {"server_name": LO, "status": [False], "failure": None},
], ids=["status-string", "status-with-failure", "status-number", "status-list"])
def test_a_helper_whose_handshake_did_not_succeed_is_not_evidence_of_mitm(tmp_path: Path,
                                                                        entry: dict[str, Any]) -> None:
    """Before: any truthy `status` (the string "false", 1, a list; or true beside a failure) counted as
    the control's success, so a site with an untrusted certificate was called intercepted (0.95)."""
    ca = srv.TestCA(tmp_path)

    async def site(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async def main() -> dict[str, Any]:
        tls_server = await serve(site, ca.server_context(LO))
        ep = f"{LO}:{port_of(tls_server)}"
        helper = await serve(helper_answering({"tls_handshake": {ep: entry}}))
        ctx = Context(helper_url=f"http://{LO}:{port_of(helper)}/", timeouts=FAST)
        async with tls_server, helper:
            tk = await tls_mitm.run(f"https://{ep}/", ctx)
        m: dict[str, Any] = {"test_keys": tk}
        tls_mitm.finish(m, ctx)
        return tk

    tk = srv.run(main())
    assert tk["tls_handshakes"][0]["failure"] == "ssl_unknown_authority"
    assert tk["x_interception"]["intercepted"] is False
    assert tk["x_mechanism"] == "none" and tk["blocking"] is None and "x_equipment" not in tk
    writable(tk)


# --- dnscheck -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("addrs", [["not-an-address"], ["999.1.1.1"], [""], ["93.184.216.34 "]])
def test_a_control_answering_non_addresses_is_a_failure_not_poison(addrs: list[str]) -> None:
    """Before: whatever strings the helper listed were the 'good' answers, so a helper answering
    ["not-an-address"] made every real answer look poisoned (dns.poison, anomaly)."""
    m = {"test_keys": {"control": {"dns": {"addrs": addrs, "failure": None}, "ip_info": {}},
                       "x_lookups": {"system": {"engine": "system", "addrs": ["93.184.216.34"], "failure": None}}}}
    v = dnscheck_verdict(m)
    assert (v.status, v.mechanism, v.blocking) == ("failure", "none", None)


def _fake_lookups(monkeypatch: pytest.MonkeyPatch, duplicate: dict[str, Any]) -> None:
    """Replace every lookup by one that answers from nowhere; the resolver's lookup leaves ``duplicate``
    (a late second answer) in the trace, as netx does. Nothing is sent."""

    async def system(name: str, *, trace: Trace, timeout: float) -> DNSResult:
        return DNSResult(name, "ANY", "system", ("93.184.216.34",), None)

    async def addresses(name: str, *, resolver: Any, trace: Trace, timeout: float) -> DNSResult:
        if resolver.engine == "udp":
            trace.x_dns_duplicate_responses.append(duplicate)
        return DNSResult(name, "ANY", resolver.engine, ("93.184.216.34",), None)

    async def trap(name: str, qtype: str, *, server: str, trace: Trace, timeout: float,
                   tags: tuple[str, ...]) -> DNSResult:
        return DNSResult(name, qtype, "udp", (), "generic_timeout_error")

    monkeypatch.setattr(dnscheck, "lookup_system", system)
    monkeypatch.setattr(dnscheck, "lookup_addresses", addresses)
    monkeypatch.setattr(dnscheck, "lookup_udp", trap)


def _late(resolver: str, tags: list[str]) -> dict[str, Any]:
    return dns_record(engine="udp", hostname="example.org", query_type="A", resolver_address=resolver,
                      answers=[{"answer_type": "A", "ipv4": "203.0.113.5", "ttl": 60}], failure=None, t0=0.0,
                      t=0.1, transaction_id=1, rcode=0, raw_response=None, tags=tags)


@pytest.mark.parametrize(("silent", "resolver", "late", "injected"), [
    # the resolver's own duplicate answer, from an address the silent one is a prefix of
    ("192.0.2.1", "192.0.2.10", _late("192.0.2.10:53", []), False),
    # a late answer from an IPv6 silent address: written [addr]:53, never matched by its prefix
    ("2001:db8::9", "192.0.2.10", _late("[2001:db8::9]:53", ["silent"]), True),
], ids=["neighbour-address", "ipv6-silent"])
def test_late_answers_count_as_the_traps_by_their_tag(monkeypatch: pytest.MonkeyPatch, silent: str,
                                                      resolver: str, late: dict[str, Any], injected: bool) -> None:
    """Before: a late answer was the trap's when its resolver_address began with the silent address:
    the resolver 192.0.2.10's duplicate counted for the trap 192.0.2.1 (dns.injection, 0.99), and
    the trap's own late answer from an IPv6 address ("[2001:db8::9]:53") never did."""
    _fake_lookups(monkeypatch, late)
    ctx = Context(options={"resolver": resolver, "silent": silent}, timeouts=FAST)
    tk = srv.run(dnscheck.run("example.org", ctx))
    assert tk["x_injection"]["answers"] == (["203.0.113.5"] if injected else [])
    m: dict[str, Any] = {"test_keys": tk}
    dnscheck.finish(m, ctx)
    assert (tk["x_mechanism"] == "dns.injection") is injected
    writable(tk)


# --- the middlebox nettests: an echo helper that cannot be reached -------------------------------------

@pytest.mark.parametrize("nettest", [http_invalid_request_line, http_header_field_manipulation],
                         ids=["invalid_request_line", "header_field_manipulation"])
def test_an_unreachable_echo_helper_is_a_failure(nettest: Any) -> None:
    """Before: nothing came back from the echo, and the verdict said accessible=False with no status:
    neither a failure (the run's summary counted it as measured) nor anything the network did."""
    ctx = Context(timeouts=FAST)
    tk = srv.run(nettest.run(f"{LO}:{closed_port()}", ctx))
    m: dict[str, Any] = {"test_keys": tk}
    nettest.finish(m, ctx)
    assert tk["failure"] == "connection_refused"
    assert (tk["blocking"], tk["accessible"], tk["x_mechanism"], tk["x_status"]) == (None, None, "none", "failure")
    writable(tk)


# --- throttling: only the same resource, fetched whole or cut by time, is a rate ------------------------

def _site(target: bytes, control: bytes) -> Handler:
    """Answers the innocent name with ``control`` and the target's with ``target``, after 50 ms."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(0.05)
        writer.write(control if throttling.INNOCENT.encode() in head else target)
        await writer.drain()
        writer.close()

    return handle


BIG = b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n" + b"x" * 200_000


@pytest.mark.parametrize("target", [
    b"HTTP/1.1 403 Forbidden\r\nContent-Length: 5000\r\n\r\n" + b"b" * 5000,
    b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"b" * 5000,
], ids=["403-blockpage", "200-blockpage"])
def test_a_blockpage_for_the_target_is_not_throttling(target: bytes) -> None:
    """Before: the 5 KB page served for the target's name was rated against the 200 KB resource served
    for the innocent one; a short transfer is all latency, so the blockpage came out 'throttled' at
    ~600 kbit/s."""
    async def main() -> dict[str, Any]:
        server = await serve(_site(target, BIG))
        ctx = Context(timeouts=FAST, options={"rounds": 1})
        async with server:
            return await throttling.run(f"http://{LO}:{port_of(server)}/blob", ctx)

    tk = srv.run(main())
    assert "x_throttle" not in tk and tk["failure"] == "throttling_inconclusive"
    m: dict[str, Any] = {"test_keys": tk}
    throttling.finish(m, Context())
    assert (tk["blocking"], tk["accessible"], tk["x_status"]) == (None, None, "failure")
    writable(tk)


def test_the_same_resource_at_the_same_pace_is_still_rated() -> None:
    """The fix keeps the ordinary case: both names get the resource, nothing is throttled."""
    async def main() -> dict[str, Any]:
        server = await serve(_site(BIG, BIG))
        async with server:
            return await throttling.run(f"http://{LO}:{port_of(server)}/blob",
                                        Context(timeouts=FAST, options={"rounds": 1}))

    tk = srv.run(main())
    assert tk["failure"] is None and tk["x_throttle"]["throttled"] is False


def test_a_few_milliseconds_slower_is_not_a_throttle() -> None:
    """A 30 KB resource answered 80 ms later for the target's name than for the innocent one: its rate is a
    tenth of the control's, but that is latency (on a busy machine, jitter), not a cap on the transfer. Before,
    the ratio alone flagged it: in the lab, under load, example.com came out "throttled" at 33 Mbit/s."""
    small = b"HTTP/1.1 200 OK\r\nContent-Length: 30000\r\n\r\n" + b"x" * 30_000

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if throttling.INNOCENT.encode() not in head:
            await asyncio.sleep(0.08)
        writer.write(small)
        await writer.drain()
        writer.close()

    async def main() -> dict[str, Any]:
        server = await serve(handle)
        async with server:
            return await throttling.run(f"http://{LO}:{port_of(server)}/blob",
                                        Context(timeouts=FAST, options={"rounds": 3}))

    tk = srv.run(main())
    th = tk["x_throttle"]
    assert th["ratio"] < 0.25, th  # what used to be called a throttle
    assert 0 < th["delay_s"] < 0.2 and th["throttled"] is False and th["cap_kbps"] is None, th
    m: dict[str, Any] = {"test_name": "throttling", "test_keys": tk}
    throttling.finish(m, Context())
    assert (tk["x_mechanism"], tk["x_status"]) == ("none", "ok")
    from tamperscope.analysis.verdicts import verdict_for
    assert verdict_for(m).status == "ok"  # the analysis, from the rounds, agrees


# --- the analysis re-derives our own tls_mitm measurements ------------------------------------------------

@pytest.mark.parametrize("case", ["intercepted", "trusted", "unreachable"])
def test_the_analysis_reaches_the_probes_tls_mitm_verdict_from_the_raw_records(tmp_path: Path, case: str) -> None:
    """Real tls_mitm measurements (a TLS server on 127.0.0.1, a helper vouching for another key) analysed by
    `analysis.verdicts`. Before: it read only `x_mitm` and `tampering`, which our probe does not write, so each
    of these fell to the generic verdict (an interception came out as a TLS failure, not tls.mitm)."""
    from tamperscope.analysis.verdicts import verdict_for

    ca = srv.TestCA(tmp_path)

    async def site(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    # "localhost" (from /etc/hosts, no DNS) where the certificate must name the host: the test CA issues
    # DNS names only, and a certificate for 127.0.0.1 would fail as ssl_invalid_hostname
    host = "localhost" if case == "trusted" else LO

    async def main() -> dict[str, Any]:
        tls_server = await serve(site, ca.server_context(host))
        ep = f"{LO}:{port_of(tls_server) if case != 'unreachable' else closed_port()}"
        vouched = {"server_name": host, "status": True, "failure": None, "x_spki_sha256": "another key"}
        helper = await serve(helper_answering({"tls_handshake": {ep: vouched}}))
        ctx = Context(helper_url=f"http://{LO}:{port_of(helper)}/", timeouts=FAST,
                      ca_bundle=str(ca.pem) if case == "trusted" else None)
        async with tls_server, helper:
            tk = await tls_mitm.run(f"https://{host}:{ep.rpartition(':')[2]}/", ctx)
        m: dict[str, Any] = {"test_name": "tls_mitm", "test_keys": tk}
        tls_mitm.finish(m, ctx)
        return orjson.loads(orjson.dumps(m))  # as stored

    m = srv.run(main())
    tk = m["test_keys"]
    probe = {"intercepted": ("tls.mitm", "http-failure"), "trusted": ("none", False),
             "unreachable": ("none", None)}[case]
    assert (tk["x_mechanism"], tk["blocking"]) == probe, tk
    v = verdict_for(m)
    assert (v.mechanism, v.blocking) == probe
    assert v.status == {"intercepted": "anomaly", "trusted": "ok", "unreachable": "failure"}[case]
    if case == "intercepted":
        assert v.evidence[0] == "test_keys.tls_handshakes[0]"


@pytest.mark.parametrize("nettest", [http_header_field_manipulation, http_invalid_request_line])
def test_the_analysis_calls_an_unreachable_echo_a_failure_as_the_probe_does(nettest: Any) -> None:
    from tamperscope.analysis.verdicts import verdict_for

    async def main() -> dict[str, Any]:
        ctx = Context(timeouts=FAST)
        tk = await nettest.run(f"{LO}:{closed_port()}", ctx)
        m: dict[str, Any] = {"test_name": nettest.NAME, "test_keys": tk}
        nettest.finish(m, ctx)
        return orjson.loads(orjson.dumps(m))

    m = srv.run(main())
    assert m["test_keys"]["x_status"] == "failure"
    v = verdict_for(m)
    assert (v.status, v.blocking) == ("failure", None)


@pytest.mark.parametrize("answer, expected", [
    (b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
     "http_request_failed: control helper answered 500"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n[1,2]",
     "unknown_failure: control helper answered garbage"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{x}",
     "unknown_failure: control helper answered garbage"),
    # busy every time it is asked: three 503s (QA: the third was written "answered 503", and "busy" never)
    (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
     "http_request_failed: control helper busy"),
    (None, "control_disabled"),
])
def test_what_a_broken_helper_did_is_said_in_the_vocabulary(answer: bytes | None, expected: str) -> None:
    """control_failure comes from model.failures like every failure string (it was spelt out in the nettest,
    and `http_request_failed: ...` was not a known failure)."""
    from tamperscope.model import failures as F
    from tamperscope.nettests.control import ask_helper

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer or b"")
        await writer.drain()
        writer.close()

    async def main() -> str | None:
        helper = await serve(handle)
        ctx = Context(helper_url=f"http://{LO}:{port_of(helper)}/" if answer else None, timeouts=FAST)
        async with helper:
            return (await ask_helper(ctx, {"http_request": "http://x/"}))[1]

    failure = srv.run(main())
    assert failure == expected and F.is_known(failure)


@pytest.mark.parametrize("url, innocent_url", [
    ("http://Example.COM/a?b=1", "http://innocent.example/a?b=1"),
    ("http://bücher.de:8080/", "http://innocent.example:8080/"),
    ("http://[2001:db8::1]/x", "http://innocent.example/x"),
    ("http://example.com:80/", "http://innocent.example:80/"),
])
def test_the_innocent_fetch_names_the_innocent_host_however_the_url_spells_the_target(
        url: str, innocent_url: str) -> None:
    """A string replace of the parsed host missed upper case, a Unicode IDN and a bracketed IPv6 literal: the
    'innocent' fetch asked for the target's own name, and a throttle of that name was hidden."""
    from tamperscope.nettests.throughput import swap_host

    assert swap_host(url, "innocent.example") == innocent_url


def test_a_run_of_many_at_once_does_not_overload_its_control_helper() -> None:
    """QA: `--parallel 1024` asked the helper 1024 requests at once; it answered most of them 503 (64 in flight at
    most), and three tries over 0.6 s gave up: dozens of measurements had no control, and read as DNS poisoning.
    The run now keeps CONTROL_SLOTS of them at the helper at once, and waits longer between tries when it is busy:
    against a helper that takes 40 at once, 300 requests made together all get their answer."""
    from tamperscope.nettests.base import CONTROL_SLOTS
    from tamperscope.nettests.control import ask_helper

    assert CONTROL_SLOTS < 40
    state = {"inflight": 0, "peak": 0, "busy": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        await reader.readexactly(length)
        if state["inflight"] >= 40:
            state["busy"] += 1
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        else:
            state["inflight"] += 1
            state["peak"] = max(state["peak"], state["inflight"])
            await asyncio.sleep(0.05)  # the helper's own fetch
            state["inflight"] -= 1
            body = b'{"dns": {"addrs": [], "failure": null}}'
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    async def main() -> list[str | None]:
        helper = await serve(handle)
        ctx = Context(helper_url=f"http://{LO}:{port_of(helper)}/", timeouts=FAST)
        async with helper:
            answers = await asyncio.gather(*(ask_helper(ctx, {"http_request": f"http://x{i}.example/"})
                                             for i in range(300)))
        return [failure for _, failure in answers]

    failures = srv.run(main())
    assert failures == [None] * 300, sorted({f for f in failures if f})
    assert state["peak"] <= CONTROL_SLOTS and state["busy"] == 0, state
