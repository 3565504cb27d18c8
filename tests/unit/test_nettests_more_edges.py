"""Edges of dnscheck, echcheck, portfiltering, tcp_freeze and blocking_rules that their own tests leave open: what
an input may spell, which transport and timeout each lookup gets, what a late or hostile answer adds, how a first
record is judged, what one connection's bytes and requests record, how a split asks for its ranges, and how the
rule search spends its probes. No traffic leaves 127.0.0.1: lookups are replaced by fakes, servers are local."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tamperscope.collector.testing import closed_port, free_port
from tamperscope.model.freezeverdict import TARGET
from tamperscope.nettests import blocking_rules as BR
from tamperscope.nettests import dnscheck, echcheck, portfiltering, tcp_freeze
from tamperscope.nettests.base import Context, NettestError, Timeouts
from tamperscope.netx import DNSResult, NetxError, Resolver, Trace
from tamperscope.netx.trace import dns_record
from tests.unit.test_echcheck import TCPServer, censor, tls_context  # noqa: F401 (a fixture)

FAST = Timeouts(dns=1, connect=1, tls=1, http=2, control=2, measurement=6)


# --- dnscheck -------------------------------------------------------------------------------------------------


def _fake_dns(monkeypatch: pytest.MonkeyPatch, *, system_failure: str | None = None,
              trap_answers: tuple[str, ...] = (), late: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    """Every lookup answered from nowhere; each call recorded as (kind, engine, address, timeout)."""
    calls: list[tuple[Any, ...]] = []

    async def system(name: str, *, trace: Trace, timeout: float) -> DNSResult:
        calls.append(("system", "system", "", timeout))
        if system_failure:
            return DNSResult(name, "ANY", "system", (), system_failure)
        return DNSResult(name, "ANY", "system", ("93.184.216.34",), None)

    async def addresses(name: str, *, resolver: Resolver, trace: Trace, timeout: float) -> DNSResult:
        calls.append(("resolver", resolver.engine, resolver.address, timeout))
        if late is not None and resolver.engine == "udp":
            trace.x_dns_duplicate_responses.append(late)
        return DNSResult(name, "ANY", resolver.engine, ("93.184.216.34",), None)

    async def trap(name: str, qtype: str, *, server: str, trace: Trace, timeout: float,
                   tags: tuple[str, ...]) -> DNSResult:
        calls.append(("trap", "udp", server, timeout))
        return DNSResult(name, qtype, "udp", trap_answers, None if trap_answers else "generic_timeout_error")

    monkeypatch.setattr(dnscheck, "lookup_system", system)
    monkeypatch.setattr(dnscheck, "lookup_addresses", addresses)
    monkeypatch.setattr(dnscheck, "lookup_udp", trap)
    return calls


def _dnscheck(input: str, ctx: Context) -> dict[str, Any]:
    return asyncio.run(asyncio.wait_for(dnscheck.run(input, ctx), 10))


def test_dnscheck_refuses_what_is_no_domain_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name over 253 characters, an empty label or a space is no name: asking it would measure nothing."""
    calls = _fake_dns(monkeypatch)
    for bad in ["a" * 250 + ".org", "example..org", "exa mple.org", "https:///", ".", ""]:
        with pytest.raises(NettestError):
            _dnscheck(bad, Context(timeouts=FAST))
    assert calls == []


def test_dnscheck_takes_a_253_character_name_and_a_urls_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """The domain recorded is the URL's host, lower case, without its final dot; 253 characters is a name."""
    _fake_dns(monkeypatch)
    assert _dnscheck("https://WWW.Example.ORG./path?q=1", Context(timeouts=FAST))["domain"] == "www.example.org"
    longest = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(longest) == 253 and _dnscheck(longest + ".", Context(timeouts=FAST))["domain"] == longest


def test_dnscheck_asks_each_transport_of_the_servers_it_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """udp and tcp of the resolver, DoT of --dot (else the resolver), DoH of --doh: each under its own key."""
    calls = _fake_dns(monkeypatch)
    doh = "https://doh.example/dns-query"
    ctx = Context(timeouts=FAST, options={"resolver": "192.0.2.10", "dot": "192.0.2.11", "doh": doh})
    tk = _dnscheck("example.org", ctx)
    assert {k: v["engine"] for k, v in tk["x_lookups"].items()} == {
        "system": "system", "udp://192.0.2.10:53": "udp", "tcp://192.0.2.10:53": "tcp",
        "dot://192.0.2.11:853": "dot", doh: "doh"}
    assert sorted(c[1:3] for c in calls if c[0] == "resolver") == [
        ("doh", doh), ("dot", "192.0.2.11"), ("tcp", "192.0.2.10"), ("udp", "192.0.2.10")]


def test_dnscheck_uses_the_runs_public_resolver_when_no_option_names_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --resolver, the run's UDP resolver is the one asked (else only the system's would be)."""
    _fake_dns(monkeypatch)
    tk = _dnscheck("example.org", Context(timeouts=FAST, udp_resolver=Resolver("udp", "192.0.2.53")))
    assert sorted(tk["x_lookups"]) == ["dot://192.0.2.53:853", "system", "tcp://192.0.2.53:53",
                                       "udp://192.0.2.53:53"]


def test_dnscheck_records_each_lookups_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """The failure is the evidence the verdict reads (NXDOMAIN here, the control's answer elsewhere)."""
    _fake_dns(monkeypatch, system_failure="dns_nxdomain_error")
    tk = _dnscheck("example.org", Context(timeouts=FAST))
    assert tk["x_lookups"]["system"] == {"engine": "system", "resolver_address": "system", "addrs": [],
                                         "failure": "dns_nxdomain_error"}


def test_the_trap_waits_two_seconds_at_most(monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer from the silent address is forged within a round trip: a long --dns timeout must not wait on it."""
    calls = _fake_dns(monkeypatch)
    t = Timeouts(dns=7, connect=1, tls=1, http=2, control=2, measurement=20)
    tk = _dnscheck("example.org", Context(timeouts=t, options={"silent": "192.0.2.9"}))
    assert [c for c in calls if c[0] == "trap"] == [("trap", "udp", "192.0.2.9", 2.0)]
    assert [c[3] for c in calls if c[0] != "trap"] == [7]
    assert tk["x_injection"] == {"silent_resolver": "192.0.2.9", "answers": [], "failure": "generic_timeout_error"}


def test_the_traps_late_answers_are_added_once_and_only_as_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    """A late answer already among the trap's is not added again; one without an IPv4 address adds no None."""
    late = dns_record(engine="udp", hostname="example.org", query_type="A", resolver_address="192.0.2.9:53",
                      answers=[{"answer_type": "A", "ipv4": "203.0.113.5", "ttl": 60},
                               {"answer_type": "A", "ipv4": "203.0.113.6", "ttl": 60},
                               {"answer_type": "A", "ipv4": "203.0.113.6", "ttl": 60},
                               {"answer_type": "CNAME", "hostname": "x.example", "ttl": 60}],
                      failure=None, t0=0.0, t=0.1, transaction_id=1, rcode=0, raw_response=None, tags=["silent"])
    _fake_dns(monkeypatch, trap_answers=("203.0.113.5",), late=late)
    ctx = Context(timeouts=FAST, options={"resolver": "192.0.2.10", "silent": "192.0.2.9"})
    tk = _dnscheck("example.org", ctx)
    assert tk["x_injection"]["answers"] == ["203.0.113.5", "203.0.113.6"]


# --- tcp_freeze ------------------------------------------------------------------------------------------------

LO = "127.0.0.1"


class _Site:
    """An HTTP/1.1 server on 127.0.0.1 that answers every request on a connection with ``page`` (keep-alive, or
    ``Connection: <close>``), or byte ranges of it when ``ranges``; it records each request's Host and Range."""

    def __init__(self, page: bytes, *, close: str | None = None, ranges: bool = False) -> None:
        self.page, self.close, self.ranges = page, close, ranges
        self.hosts: list[str] = []
        self.asked: list[str | None] = []
        self.connections = 0
        self.sent = 0  # bytes of responses written
        self.hang_up = False  # close every connection at once, unread

    def response(self, head: bytes) -> bytes:
        fields = {k.strip().lower(): v.strip() for k, _, v in
                  (line.partition(b":") for line in head.split(b"\r\n")[1:] if b":" in line)}
        self.hosts.append(fields.get(b"host", b"").decode())
        wanted = fields.get(b"range")
        self.asked.append(wanted.decode() if wanted is not None else None)
        status, body, extra = b"200 OK", self.page, b""
        if self.ranges and wanted is not None:
            first, _, last = wanted.removeprefix(b"bytes=").partition(b"-")
            a, b = int(first), min(int(last), len(self.page) - 1)
            if a >= len(self.page):
                status, body = b"416 Range Not Satisfiable", b""
            else:
                status, body = b"206 Partial Content", self.page[a:b + 1]
                extra = b"Content-Range: bytes %d-%d/%d\r\n" % (a, b, len(self.page))
        if self.close:
            extra += b"Connection: " + self.close.encode() + b"\r\n"
        return b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\n" % len(body) + extra + b"\r\n" + body

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.hang_up:
            writer.close()
            return
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                out = self.response(head)
                writer.write(out)
                await writer.drain()
                self.sent += len(out)
                if self.close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _serve(site: _Site) -> tuple[asyncio.Server, int]:
    port = free_port()
    return await asyncio.start_server(site.handle, LO, port), port


def _freeze_run(site: _Site, url: str | None = None, *, scheme: str = "http", hang_up: bool = False) -> dict[str, Any]:
    site.hang_up = hang_up

    async def main() -> dict[str, Any]:
        server, port = await _serve(site)
        async with server:
            return await tcp_freeze.run(url.format(port=port) if url else f"{scheme}://{LO}:{port}/",
                                        Context(timeouts=FAST))

    return asyncio.run(asyncio.wait_for(main(), 20))


def test_tcp_freeze_asks_a_small_page_again_until_the_request_cap() -> None:
    """32 requests at most on the one connection; the bytes counted are those the server sent, not ours."""
    site = _Site(b"x" * 1000)
    tk = _freeze_run(site)
    single = tk["x_freeze"]["single"]
    assert (single["stage"], single["requests"], single["failure"], single["closed"], single["frozen"]) == (
        "http", tcp_freeze.MAX_REQUESTS, None, False, False)
    assert single["received"] == site.sent < TARGET and site.connections == 1
    assert (tk["failure"], tk["x_freeze"]["split"]) == (None, None) and tk["x_address"].startswith(f"{LO}:")


def test_tcp_freeze_stops_at_the_target_on_one_connection() -> None:
    """A page of 30 KB: the third response takes the connection past TARGET, and no fourth is asked."""
    site = _Site(b"y" * 30000)
    single = _freeze_run(site)["x_freeze"]["single"]
    assert (single["requests"], single["closed"], single["received"]) == (3, False, site.sent)


def test_a_server_closing_before_the_target_is_said_closed() -> None:
    """Connection: close (in whatever case) ends the one connection: ``closed``, not a freeze, one request."""
    for header in ("close", "Close"):
        single = _freeze_run(_Site(b"z" * 2000, close=header))["x_freeze"]["single"]
        assert (single["stage"], single["requests"], single["closed"], single["failure"]) == ("http", 1, True, None)


def test_a_server_closing_after_the_target_is_not_said_closed() -> None:
    """``closed`` means the server ended it before TARGET: after it, the connection carried what was asked."""
    single = _freeze_run(_Site(b"w" * 70000, close="close"))["x_freeze"]["single"]
    assert (single["requests"], single["closed"]) == (1, False)


def test_tcp_freeze_says_which_step_of_the_one_connection_failed() -> None:
    """A refused connect is stage "connect"; a TLS handshake the server ends is stage "tls", and the failure is
    the measurement's."""
    tk = asyncio.run(tcp_freeze.run(f"http://{LO}:{closed_port()}/", Context(timeouts=FAST)))
    single = tk["x_freeze"]["single"]
    assert (single["stage"], single["failure"], single["requests"], tk["failure"]) == (
        "connect", "connection_refused", 0, "connection_refused")
    tk = _freeze_run(_Site(b"", close="close"), scheme="https", hang_up=True)  # the ClientHello answered by a close
    single = tk["x_freeze"]["single"]
    assert single["stage"] == "tls" and single["failure"] and tk["failure"] == single["failure"]
    assert single["requests"] == 0 and tk["x_freeze"]["split"] is None


def _split(site: _Site, single: dict[str, Any]) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        server, port = await _serve(site)
        trace = Trace(record_io=True)
        async with server, trace:
            return await tcp_freeze._split(LO, port, "http", LO, f"http://{LO}:{port}/", single, trace,
                                           Context(timeouts=FAST))

    return asyncio.run(asyncio.wait_for(main(), 20))


def test_a_repeat_split_asks_once_more_than_came_whole() -> None:
    """Two responses came whole before the freeze: three connections, each asking the page once."""
    site = _Site(b"r" * 3000)
    out = _split(site, {"requests": 2})
    assert (out["mode"], out["connections"], out["completed"], out["failure"]) == ("repeat", 3, 3, None)
    assert site.connections == 3 and site.asked == [None, None, None] and out["received"] == site.sent


def test_a_range_split_asks_contiguous_ranges_up_to_the_last_short_one() -> None:
    """Ranges of CHUNK bytes that neither overlap nor leave a gap; a shorter 206 is the last one asked."""
    site = _Site(b"0123456789" * 1000, ranges=True)  # 10,000 bytes: two full ranges and a short third
    out = _split(site, {"requests": 0})
    c = tcp_freeze.CHUNK
    assert site.asked == [f"bytes=0-{c - 1}", f"bytes={c}-{2 * c - 1}", f"bytes={2 * c}-{3 * c - 1}"]
    assert (out["mode"], out["connections"], out["completed"], out["range_ignored"]) == ("range", 3, 3, False)


def test_a_server_answering_a_range_with_the_whole_page_is_said_to_ignore_ranges() -> None:
    """A 200 to ``Range:`` is the whole page again (which would freeze again): said, and no more ranges asked."""
    site = _Site(b"p" * 5000)
    out = _split(site, {"requests": 0})
    assert (out["connections"], out["completed"], out["range_ignored"]) == (1, 1, True)
    assert site.asked == ["bytes=0-4095"]


def test_tcp_freeze_sends_a_non_ascii_host_in_idna(monkeypatch: pytest.MonkeyPatch) -> None:
    """Host and SNI in IDNA, as browsers send them (and as the TLS record names it): never the raw UTF-8 name."""
    async def first_address(host: str, ctx: Context, trace: Trace) -> tuple[str | None, str | None]:
        return LO, None

    monkeypatch.setattr(tcp_freeze, "first_address", first_address)
    site = _Site(b"i" * 500, close="close")
    _freeze_run(site, "http://bücher.example:{port}/")
    assert site.hosts and all(h.startswith("xn--bcher-kva.example") for h in site.hosts), site.hosts
    tk = _freeze_run(_Site(b""), "https://bücher.example:{port}/", hang_up=True)
    assert [h["server_name"] for h in tk["tls_handshakes"]] == ["xn--bcher-kva.example"]


# --- blocking_rules: a layer's probes, one at a time ---------------------------------------------------------

SALT = "q1234567"


def _rules_layer(monkeypatch: pytest.MonkeyPatch, host: str, caught: Any, *, layer: str = "dns",
                 ip: str | None = None, end_in: float = 30.0, timeouts: Timeouts = FAST,
                 waited: Any = None) -> tuple[dict[str, Any], list[str]]:
    """A layer of blocking_rules run against a censor that catches the names ``caught(name)`` says; nothing is
    sent: each probe's name is recorded, and judged by ``caught``. ``waited`` replaces the residual check."""
    asked: dict[int, str] = {}
    monkeypatch.setattr(BR.R, "judge", lambda layer, tid, tk, lies, matcher: {
        "outcome": "blocked" if caught(asked[tid]) else "passed"})
    if waited is not None:
        monkeypatch.setattr(BR, "wait_residual", waited)

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        lay = BR._Layer(layer, host, SALT, ip, Trace(), Context(timeouts=timeouts), loop.time() + end_in)

        async def ask(name: str, tid: int, tags: tuple[str, ...]) -> None:
            asked[tid] = name

        monkeypatch.setattr(lay, "_ask", ask)
        return await lay.run()

    return asyncio.run(asyncio.wait_for(main(), 10)), list(asked.values())


def _kinds(result: dict[str, Any]) -> list[str]:
    return [p["kind"] for p in result["probes"]]


def test_a_keyword_rule_is_searched_down_to_the_keyword_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prefixed and suffixed names both caught: both binary searches converge on "bad", wherever it sits in the
    name (a search whose middle rounds the wrong way never leaves a two-wide interval and spends the budget)."""
    for host in ("www.badsite.com", "badsite.com", "abad.com", "www.bad.com", "sitebad.com"):
        result, _ = _rules_layer(monkeypatch, host, lambda name: "bad" in name)
        assert (result["rule"], result["keyword"]) == ("substring", "bad"), host
        keyword = [p for p in result["probes"] if p["kind"] == "keyword"]
        assert [p["outcome"] for p in keyword if p["part"] == "bad"] == ["blocked"], host
        assert len(keyword) <= 10 and all(p["part"] in p["name"] for p in keyword), host


def test_a_keyword_deep_in_a_long_name_is_found_within_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 167-character name: the searches still end on the keyword, within MAX_KEYWORD_PROBES."""
    host = f"{'x' * 40}.{'y' * 20}bad{'z' * 17}.{'w' * 40}.{'v' * 40}.com"
    result, _ = _rules_layer(monkeypatch, host, lambda name: "bad" in name)
    keyword = [p for p in result["probes"] if p["kind"] == "keyword"]
    assert result["keyword"] == "bad" and len(keyword) <= BR.MAX_KEYWORD_PROBES
    assert (keyword[-1]["part"], keyword[-1]["outcome"]) == ("bad", "blocked")


def test_a_caught_innocent_name_stops_the_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the innocent name is caught too, nothing this layer asks can tell a rule: no more probes."""
    result, asked = _rules_layer(monkeypatch, "www.badsite.com", lambda name: True)
    assert _kinds(result) == ["innocent"] and len(asked) == 1 and result["rule"] == "undetermined"


def test_an_exact_name_that_passes_is_not_blocked_and_ends_the_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    """No variant is shown to a censor that let the name itself through."""
    result, asked = _rules_layer(monkeypatch, "www.badsite.com", lambda name: False)
    assert _kinds(result) == ["innocent", "exact"] and result["rule"] == "not_blocked"


def test_an_ends_with_rule_gets_no_keyword_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a rule free at both ends (prefixed and suffixed caught) has a keyword to find."""
    result, _ = _rules_layer(monkeypatch, "badsite.com", lambda name: name.endswith("badsite.com"))
    assert _kinds(result) == ["innocent", "exact", "subdomain", "prefixed", "suffixed"]
    assert result["rule"] == "ends_with"


def test_a_probe_past_the_layers_deadline_is_residual_and_not_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe whose steps' timeouts no longer fit before the end would be cut short and read as a silent censor."""
    result, asked = _rules_layer(monkeypatch, "www.badsite.com", lambda name: False, end_in=0.5)  # dns=1 > 0.5
    assert asked == [] and result["probes"] == [
        {"kind": "innocent", "name": f"{SALT}.example.net", "transaction_id": None, "outcome": "residual"}]


def test_each_layers_deadline_leaves_room_for_its_own_steps() -> None:
    """TLS needs connect + tls before the end, HTTP connect + http, DNS its lookup."""
    t = Timeouts(dns=1, connect=2, tls=3, http=5, control=2, measurement=6)
    ctx = Context(timeouts=t)
    got = {layer: 100.0 - BR._Layer(layer, "a.example", SALT, LO, Trace(), ctx, 100.0).deadline
           for layer in ("dns", "dns_path", "tls", "http")}
    assert got == {"dns": 1, "dns_path": 1, "tls": 5, "http": 7}


def test_a_layer_without_an_address_asks_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """TLS and HTTP need the site's address: without one the layer is empty and undetermined."""
    result, asked = _rules_layer(monkeypatch, "www.badsite.com", lambda name: True, layer="tls", ip=None)
    assert asked == [] and result["probes"] == [] and result["rule"] == "undetermined"


def test_the_residual_waits_are_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seconds waited for the censor to let the address go are the evidence of residual blocking."""
    async def waited(ip: str, port: int, trace: Trace, ctx: Context, deadline: float, tag: str = "") -> float:
        return 2.345 if trace.next_transaction_id() == 1 else 0.0

    result, asked = _rules_layer(monkeypatch, "www.badsite.com", lambda name: False, layer="tls", ip=LO,
                                 waited=waited)
    assert _kinds(result) == ["innocent", "exact"] and result["residual_waits"] == [2.3]


def test_a_wait_that_outlasts_the_deadline_leaves_the_rest_residual(monkeypatch: pytest.MonkeyPatch) -> None:
    """A residual check that ends past the deadline: the probe is not made (it would be cut short)."""
    async def waited(ip: str, port: int, trace: Trace, ctx: Context, deadline: float, tag: str = "") -> float:
        await asyncio.sleep(max(0.0, deadline - asyncio.get_running_loop().time()) + 0.02)
        return 0.15

    t = Timeouts(dns=1, connect=1, tls=1, http=1, control=2, measurement=6)
    result, asked = _rules_layer(monkeypatch, "www.badsite.com", lambda name: False, layer="tls", ip=LO,
                                 end_in=2.1, timeouts=t, waited=waited)
    assert asked == [] and [p["outcome"] for p in result["probes"]] == ["residual"]


def test_the_path_query_waits_two_seconds_at_most(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forged answers from the path come within a round trip: a long --dns timeout must not be waited on each."""
    seen: list[tuple[str, float]] = []

    async def lookup_udp(name: str, qtype: str, *, server: str, trace: Trace, timeout: float,
                         tags: tuple[str, ...], transaction_id: int) -> DNSResult:
        seen.append((server, timeout))
        return DNSResult(name, qtype, "udp", (), "generic_timeout_error")

    monkeypatch.setattr(BR, "lookup_udp", lookup_udp)
    t = Timeouts(dns=7, connect=1, tls=1, http=1, control=2, measurement=6)

    async def main() -> None:
        lay = BR._Layer("dns_path", "a.example", SALT, None, Trace(), Context(timeouts=t), 100.0)
        lay.silent = "192.0.2.9"
        await lay._ask("a.example", 1, ("rules=dns_path:exact",))

    asyncio.run(main())
    assert seen == [("192.0.2.9", 2.0)]


# --- echcheck --------------------------------------------------------------------------------------------------


def test_a_server_hello_of_the_shortest_length_is_a_server_hello() -> None:
    """Version, random, an empty session id and the suite: 41 bytes is a whole ServerHello, not a refusal."""
    body = b"\x02\x00\x00\x25\x03\x03" + b"r" * 32 + b"\x00\x13\x02"
    assert len(body) == echcheck.SERVER_HELLO_MIN
    assert echcheck.server_answer(b"\x16\x03\x03\x00\x29" + body) == (True, 0x1302)
    assert echcheck.server_answer(b"\x16\x03\x03\x00\x28" + body[:-1]) == (False, None)  # one byte short


def test_echcheck_targets_port_443_of_the_lower_case_name() -> None:
    """TLS is asked of 443 unless the URL names a port (an http URL too); the SNI is the name in lower case."""
    assert [echcheck.target_of(given) for given in ("Example.ORG", "https://WWW.Example.org/path",
                                                    "http://example.org/", "https://example.org:8443/")] == [
        ("example.org", 443), ("www.example.org", 443), ("example.org", 443), ("example.org", 8443)]


def test_echcheck_prefers_an_ipv4_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first IPv4 address is measured (a probe without IPv6 would fail on ::1 first), else the IPv6 ones."""
    answers: list[tuple[str, ...]] = [("::1", "127.0.0.1", "127.0.0.2"), ("::1",)]

    async def lookup_addresses(name: str, *, resolver: Any, trace: Trace, timeout: float) -> DNSResult:
        return DNSResult(name, "ANY", "system", answers.pop(0), None)

    monkeypatch.setattr(echcheck, "lookup_addresses", lookup_addresses)

    async def main() -> list[list[str]]:
        ctx = Context(timeouts=FAST)
        return [await echcheck._addresses("a.example", Trace(), ctx) for _ in range(2)]

    assert asyncio.run(main()) == [["127.0.0.1", "127.0.0.2"], ["::1"]]


def test_a_target_hello_answered_by_a_close_is_an_eof(tls_context: Any) -> None:  # noqa: F811
    """The censor (or server) reads the hello with ECH and closes: eof_error, which is not an alert's failure."""

    def hang_up(conn: Any, server: Any) -> None:
        conn.recv(65536)  # the hello read: the close is a FIN, not a reset
        conn.shutdown(2)
        conn.close()

    with TCPServer(LO, censor(tls_context, hang_up)) as server:
        ctx = Context(timeouts=Timeouts(dns=2.0, connect=1.0, tls=1.5, http=2.0, measurement=20))
        tk = asyncio.run(asyncio.wait_for(echcheck.run(f"https://localhost:{server.port}/", ctx), 20))
    assert tk["control"]["failure"] is None
    assert (tk["target"]["failure"], tk["target"]["x_server_hello"]) == ("eof_error", False)


# --- portfiltering ---------------------------------------------------------------------------------------------


def _answering(reply: bytes, hold: float = 0.0, live: list[int] | None = None) -> Any:
    """A server's handler: reads the request, waits ``hold`` s (counting the connections open at once in
    ``live``: [now, most]), answers ``reply`` (nothing: an orderly close) and closes."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if live is not None:
            live[0] += 1
            live[1] = max(live[1], live[0])
        try:
            await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(hold)
            writer.write(reply)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if live is not None:
                live[0] -= 1
            writer.close()

    return handle


def _portfiltering(handlers: list[Any]) -> tuple[dict[str, Any], list[int]]:
    async def main() -> tuple[dict[str, Any], list[int]]:
        servers, ports = [], []
        for handler in handlers:
            port = free_port()
            servers.append(await asyncio.start_server(handler, LO, port))
            ports.append(port)
        try:
            tk = await portfiltering.run(f"{LO}:{','.join(map(str, ports))}", Context(timeouts=FAST))
        finally:
            for server in servers:
                server.close()
                await server.wait_closed()
        return tk, ports

    return asyncio.run(asyncio.wait_for(main(), 20))


def test_each_ports_answer_is_read_as_http_only_when_it_is_a_status_line() -> None:
    """A status of three digits after HTTP/1.x is a status; anything else is another protocol; no answer at all
    (an orderly close) is eof_error, which says the request was cut, not that another protocol answered."""
    replies = [b"HTTP/1.1 200 OK\r\n\r\n", b"HTTP/1.0 404 Not Found\r\n\r\n", b"HTTP/1.1 2000 Odd\r\n\r\n",
               b"HTTP/1.1 20 Short\r\n\r\n", b"HTTP/2 200\r\n\r\n", b"RTSP/1.0 200 OK\r\n\r\n", b""]
    tk, ports = _portfiltering([_answering(r) for r in replies])
    got = {p["port"]: (p["connect"], p["reply"], p["status"]) for p in tk["x_ports"]}
    protocol = "unknown_failure: http protocol error"
    assert [got[p] for p in ports] == [
        (None, None, 200), (None, None, 404), (None, protocol, None), (None, protocol, None),
        (None, protocol, None), (None, protocol, None), (None, "eof_error", None)]


def test_no_more_than_eight_connections_are_open_at_once() -> None:
    """CONCURRENCY bounds what one measurement asks of the server (and what a network sees as a port scan)."""
    live = [0, 0]
    tk, ports = _portfiltering([_answering(b"HTTP/1.1 204 No Content\r\n\r\n", 0.05, live) for _ in range(12)])
    assert [p["status"] for p in tk["x_ports"] if p["port"] in ports] == [204] * 12
    assert 1 < live[1] <= portfiltering.CONCURRENCY == 8


def test_the_request_to_an_ipv6_server_names_it_in_brackets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Host: [2001:db8::1], as RFC 9110 writes an IPv6 literal; bare, a server would read a port in it."""
    written: list[bytes] = []

    class Stream:
        async def write(self, data: bytes) -> None:
            written.append(data)

        async def read(self, n: int) -> bytes:
            return b"HTTP/1.1 204 No Content\r\n\r\n"

        async def aclose(self) -> None:
            pass

        def abort(self) -> None:
            pass

    async def tcp_connect(ip: str, port: int, **kwargs: Any) -> Stream:
        return Stream()

    monkeypatch.setattr(portfiltering, "tcp_connect", tcp_connect)
    entry = asyncio.run(portfiltering._one("2001:db8::1", 22, "2001:db8::1", Trace(), Context(timeouts=FAST)))
    assert entry == {"port": 22, "connect": None, "reply": None, "status": 204}
    assert b"\r\nHost: [2001:db8::1]\r\n" in written[0]


def test_a_server_name_is_253_characters_at_most_and_percent_is_refused() -> None:
    """254 characters is no DNS name; a % (a URL escape) would be a name the helper reads otherwise."""
    longest = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert portfiltering.target_of(f"{longest}:22") == (longest, (22, 80))
    for bad in (f"{longest}c:22", f"c{longest}", "portquiz%2enet:22", "portquiz.net%"):
        with pytest.raises(NettestError, match="not a server and ports"):
            portfiltering.target_of(bad)


def test_blocking_rules_asks_the_control_about_eight_addresses_at_most(monkeypatch: pytest.MonkeyPatch) -> None:
    """A resolver answering a dozen addresses: the helper is asked about the first eight (its endpoint limit is
    shared), and the address probed is the first. Nothing is sent: every network call is a fake that fails."""
    ours = tuple(f"127.0.0.{n}" for n in range(1, 13))
    asked: list[dict[str, Any]] = []

    async def lookup_addresses(name: str, **kwargs: Any) -> DNSResult:
        return DNSResult(name, "ANY", "system", ours, None)

    async def ask_helper(ctx: Context, request: dict[str, Any]) -> tuple[None, str]:
        asked.append(request)
        return None, "control_disabled"

    async def wait_residual(*args: Any, **kwargs: Any) -> float:
        return 0.0

    async def tcp_connect(ip: str, port: int, **kwargs: Any) -> None:
        raise NetxError("connection_refused", operation="connect", endpoint=f"{ip}:{port}")

    for name, fake in (("lookup_addresses", lookup_addresses), ("ask_helper", ask_helper),
                       ("wait_residual", wait_residual), ("tcp_connect", tcp_connect)):
        monkeypatch.setattr(BR, name, fake)
    tk = asyncio.run(asyncio.wait_for(BR.run("www.example.org", Context(timeouts=FAST)), 10))
    assert [r["tcp_connect"] for r in asked] == [[f"127.0.0.{n}:443" for n in range(1, 9)]]
    x = tk["x_blocking_rules"]
    assert (x["host"], x["address"], x["address_source"], tk["control_failure"]) == (
        "www.example.org", "127.0.0.1", "dns", "control_disabled")
