"""Edges of web_connectivity that its main tests leave open: when the throughput check runs and what it records
(its fetches replaced by fixed rates), which HTTP/3 port and QUIC targets the records name, an IP URL asks no DNS,
and redirects (a 308, a Location that cannot be followed) on loopback servers."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from tamperscope.collector import testing
from tamperscope.nettests import web_connectivity as wc
from tamperscope.nettests.base import Context, Timeouts
from tamperscope.nettests.throughput import INNOCENT, Timed
from tamperscope.netx import Trace
from tamperscope.netx.dns import DNSResult
from tests.unit.test_netx_servers import TCPServer, http_response, read_head, reset

HOST = "site.example"
TIMEOUTS = Timeouts(dns=1, connect=1, tls=1, http=2, control=1, measurement=8)
CTX = {"quic": False, "network_events": False}


class _Resp:
    """What round_trip returns, as far as the throughput check reads it."""

    def __init__(self, size: int, seconds: float, *, truncated: bool = False) -> None:
        self.body = b"x" * size
        self.body_is_truncated = truncated
        self.address = "198.18.0.7:80"
        self.record = {"t0": 10.0, "t": 10.0 + seconds}


def _check(monkeypatch: pytest.MonkeyPatch, resp: _Resp, *, rtt: float = 0.01, again: float | None = None,
           control: float | None = 5000.0, scheme: str = "http") -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Run the throughput check on ``resp``; the two fetches give ``again`` and ``control`` kbit/s. Returns the test
    keys and each fetch's (url, name)."""
    calls: list[tuple[str, str]] = []

    async def timed_fetch(ip: str, port: int, scheme: str, url: str, sni: str, ctx: Context,
                          headers: Any = ()) -> Timed:
        calls.append((url, sni))
        return Timed(control if sni == INNOCENT else again, 0, 1.0, None, 200)

    monkeypatch.setattr(wc, "timed_fetch", timed_fetch)
    trace = Trace()
    trace.tcp_connect.append({"t0": 1.0, "t": 1.0 + rtt, "status": {"success": True}})
    trace.tcp_connect.append({"t0": 1.0, "t": 1.0 + rtt / 2, "status": {"success": False}})  # not a round trip
    tk: dict[str, Any] = {}
    url = f"{scheme}://{HOST}/big?x=1"
    asyncio.run(wc._throughput_check(url, scheme, HOST, 80, resp, trace, Context(timeouts=TIMEOUTS), tk))
    return tk, calls


def test_a_slow_big_page_is_fetched_again_beside_an_innocent_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """64 KiB in 1 s (524 kbit/s) against 5000 for the innocent name: throttled, at the better of the target's
    two rates; over http the innocent fetch names the innocent host in its URL too."""
    tk, calls = _check(monkeypatch, _Resp(64 * 1024, 1.0), again=800.0)
    assert sorted(calls) == sorted([(f"http://{HOST}/big?x=1", HOST), (f"http://{INNOCENT}/big?x=1", INNOCENT)])
    x = tk["x_throttle"]
    assert (x["target_kbps"], x["control_kbps"], x["ratio"], x["cap_kbps"], x["throttled"]) == \
        (800.0, 5000.0, 0.16, 800.0, True)
    assert x["innocent_name"] == INNOCENT


def test_over_https_the_innocent_fetch_keeps_the_url_and_changes_the_sni(monkeypatch: pytest.MonkeyPatch) -> None:
    tk, calls = _check(monkeypatch, _Resp(64 * 1024, 1.0), scheme="https")
    assert sorted(calls) == sorted([(f"https://{HOST}/big?x=1", HOST), (f"https://{HOST}/big?x=1", INNOCENT)])
    assert tk["x_throttle"]["target_kbps"] == 524.3  # the first fetch's rate: the second gave none


@pytest.mark.parametrize("resp, rtt", [
    (_Resp(wc.MIN_BODY - 1, 5.0), 0.01),  # too small to rate: all latency
    (_Resp(64 * 1024, 5.0, truncated=True), 0.01),  # cut short: its rate is not the page's
    (_Resp(1024 * 1024, 1.0), 0.01),  # 8389 kbit/s: not slow
    (_Resp(64 * 1024, 1.0), 0.2),  # slow, but a long path: 1 s is under six round trips of 0.2 s
    (_Resp(64 * 1024, wc.SLOW_MIN_SECONDS - 0.01), 0.0),  # over too soon to tell
])
def test_no_throughput_check_when_the_page_says_nothing(monkeypatch: pytest.MonkeyPatch, resp: _Resp,
                                                        rtt: float) -> None:
    tk, calls = _check(monkeypatch, resp, rtt=rtt)
    assert (tk, calls) == ({}, [])


def test_a_slowish_page_over_half_the_slow_rate_is_not_throttled(monkeypatch: pytest.MonkeyPatch) -> None:
    """192 KiB in 1 s (1573 kbit/s), the innocent name 10x faster: a low ratio, but not below SLOW_KBPS / 2 (a
    slow line's ordinary pace), so no throttling and no cap."""
    tk, _ = _check(monkeypatch, _Resp(192 * 1024, 1.0), control=15000.0)
    x = tk["x_throttle"]
    assert (x["target_kbps"], x["ratio"], x["cap_kbps"], x["throttled"]) == (1572.9, 0.1049, None, False)


def test_no_record_when_the_innocent_fetch_gave_no_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    tk, calls = _check(monkeypatch, _Resp(64 * 1024, 1.0), control=None)
    assert len(calls) == 2 and tk == {}


def _trace(*requests: dict[str, Any], tls: Sequence[tuple[str, str | None, list[str]]] = ()) -> Trace:
    t = Trace()
    t.requests.extend(requests)
    for address, failure, tags in tls:
        t.tls_handshakes.append({"address": address, "failure": failure, "tags": tags})
    return t


def test_a_redirect_s_alt_svc_is_not_the_site_s() -> None:
    """Only our own first request (depth=0) names the site's HTTP/3 port, not a redirect to elsewhere."""
    redirect = {"tags": ["redirect"], "failure": None, "response": {"headers": {"Alt-Svc": 'h3=":8443"'}}}
    assert wc._advertised_h3(HOST, _trace(redirect), {"control": None}) is None
    ours = {"tags": ["depth=0"], "failure": None, "response": {"headers": {"ALT-SVC": 'h3=":9443"'}}}
    assert wc._advertised_h3(HOST, _trace(redirect, ours), {"control": None}) == 9443


@pytest.mark.parametrize("found, port", [
    (f"{HOST.upper()}:8443", 8443),  # a host name's case says nothing
    (f"{HOST}:1", 1), (f"{HOST}:65535", 65535),
    (f"{HOST}:0", None), (f"{HOST}:65536", None), (f"{HOST}:-1", None), (f"{HOST}:+443", None),
])
def test_the_control_s_http3_endpoint_port_bounds_and_case(found: str, port: int | None) -> None:
    ctl = {"http_request": {"discovered_h3_endpoint": found}}
    assert wc._advertised_h3(HOST, _trace(), {"control": ctl}) == port


def test_quic_targets_are_only_where_our_first_tls_got_through() -> None:
    """A TLS failure (a reset at that address) or a redirect's handshake elsewhere makes no QUIC target of itself."""
    t = _trace(tls=[("198.18.0.7:443", None, ["depth=0"]), ("198.18.0.8:443", "connection_reset", ["depth=0"]),
                    ("198.18.0.9:443", None, ["redirect"]), ("[2001:db8::1]:443", None, ["depth=0"])])
    keys = {"control": None, "x_control_request": {"tcp_connect": ["198.18.0.7:443", "198.18.0.8:443",
                                                                   "198.18.0.9:443", "[2001:db8::1]:443"]}}
    assert wc._quic_targets(t, keys) == ["198.18.0.7", "2001:db8::1"]


async def _page(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    _, target, _, _ = await read_head(reader)
    if target == "/":
        writer.write(http_response(308, b"", [("Location", "/moved")]))
    elif target == "/bad":
        writer.write(http_response(302, b"", [("Location", "http://")]))
    else:
        writer.write(http_response(200, b"<html>moved here</html>"))
    await writer.drain()


def _run(path: str) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async with TCPServer(_page) as server:
            ctx = Context(timeouts=TIMEOUTS, options=CTX)
            return await wc.run(f"http://127.0.0.1:{server.port}{path}", ctx)

    return asyncio.run(asyncio.wait_for(main(), 10))


def test_an_ip_url_asks_no_resolver_and_a_308_is_followed() -> None:
    """An address in the URL is the endpoint: no DNS query is made or recorded. A 308 is a redirect as a 301 is."""
    tk = _run("/")
    assert not tk["queries"] and tk["dns_experiment_failure"] is None
    assert tk["x_control_request"]["tcp_connect"] == [tk["tcp_connect"][0]["ip"] + f":{tk['tcp_connect'][0]['port']}"]
    codes = sorted(r["response"]["code"] for r in tk["requests"])
    assert codes == [200, 308] and tk["http_experiment_failure"] is None


def test_a_location_that_cannot_be_followed_fails_the_request() -> None:
    """As fetch does: a Location without a host is the request's failure, not a success with nothing after it."""
    tk = _run("/bad")
    assert [r["response"]["code"] for r in tk["requests"]] == [302]
    assert tk["http_experiment_failure"] == tk["requests"][0]["failure"] == "http_invalid_redirect_location_host"


def test_the_system_resolver_s_failure_is_the_dns_experiment_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name the system resolver does not know: dns_experiment_failure says so, and nothing is connected to."""

    async def lookup_system(host: str, **_: Any) -> DNSResult:
        return DNSResult(host, "ANY", "system", (), "dns_nxdomain_error")

    monkeypatch.setattr(wc, "lookup_system", lookup_system)
    tk = asyncio.run(wc.run("http://no-such-site.example/", Context(timeouts=TIMEOUTS, options=CTX)))
    assert tk["dns_experiment_failure"] == "dns_nxdomain_error"
    assert (tk["tcp_connect"], tk["requests"], tk["http_experiment_failure"]) == ([], [], None)
    assert tk["x_control_request"]["tcp_connect"] == []


async def _reset_after_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    reset(writer)


async def _blockpage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(http_response(200, b"<html>Access to this site is BLOCKED by order</html>"))
    await writer.drain()


@pytest.mark.parametrize("handler, matcher", [
    (_reset_after_request, None),  # a reset after the connect worked: the censor acted here
    # a recognised blockpage: so did it
    (_blockpage, lambda body, headers: ["test.blocked"] if "BLOCKED" in body else []),
])
def test_the_censor_acting_after_the_connect_is_noted_for_residual_blocking(handler: Any, matcher: Any) -> None:
    """Without the note, the next measurement at this address would take the censor's residual hold for its own."""

    async def main() -> tuple[Context, int]:
        async with TCPServer(handler) as server:
            ctx = Context(timeouts=TIMEOUTS, options=CTX, matcher=matcher)
            await wc.run(f"http://127.0.0.1:{server.port}/", ctx)
            return ctx, server.port

    ctx, port = asyncio.run(asyncio.wait_for(main(), 10))
    assert ctx.residual.last("127.0.0.1", port) is not None


def _knows_nothing(body: str, headers: Mapping[str, str]) -> list[str]:
    return []


def test_an_ordinary_page_is_no_censor_s_act() -> None:
    """The counterpart: a page no matcher recognises leaves no trigger (only the connection is noted)."""

    async def main() -> tuple[Context, int]:
        async with TCPServer(_blockpage) as server:
            ctx = Context(timeouts=TIMEOUTS, options=CTX, matcher=_knows_nothing)
            tk = await wc.run(f"http://127.0.0.1:{server.port}/", ctx)
            assert tk["http_experiment_failure"] is None
            return ctx, server.port

    ctx, port = asyncio.run(asyncio.wait_for(main(), 10))
    assert ctx.residual.last("127.0.0.1", port) is None


@pytest.mark.parametrize("record, trigger", [
    ({"failure": None}, "sni"),  # the innocent name got through: the censor read the name
    ({"failure": "ssl_invalid_hostname", "negotiated_protocol": "h3"}, "sni"),  # answered in full, for another name
    ({"failure": "generic_timeout_error"}, "undetermined"),  # dropped too: the address, or a hold on it
])
def test_the_quic_trigger_names_the_sni_only_when_the_innocent_handshake_got_through(
        monkeypatch: pytest.MonkeyPatch, record: dict[str, Any], trigger: str) -> None:
    import tamperscope.netx.quic as quic

    asked: list[tuple[str, int, str]] = []

    async def handshake(ip: str, port: int, *, server_name: str, **_: Any) -> dict[str, Any]:
        asked.append((ip, port, server_name))
        return record

    monkeypatch.setattr(quic, "handshake", handshake)
    tk: dict[str, Any] = {}
    asyncio.run(wc._quic_trigger("198.18.0.7", 443, Context(timeouts=TIMEOUTS), Trace(), tk))
    assert asked == [("198.18.0.7", 443, INNOCENT)]
    assert tk["x_quic_trigger"] == {"address": "198.18.0.7:443", "innocent_name": INNOCENT,
                                    "innocent_failure": record["failure"], "trigger": trigger}


def test_a_measurement_that_runs_out_of_time_says_the_control_timed_out_too() -> None:
    """A page and a helper that never answer: the measurement's deadline ends both, and the control's keys say a
    timeout (null would read as a control that answered nothing)."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)
        await asyncio.sleep(30)

    async def main() -> dict[str, Any]:
        async with TCPServer(silent) as server:
            ctx = Context(helper_url=f"http://127.0.0.1:{server.port}/", options=CTX,
                          timeouts=Timeouts(dns=1, connect=1, tls=1, http=5, control=5, measurement=0.5))
            return await wc.run(f"http://127.0.0.1:{server.port}/", ctx)

    tk = asyncio.run(asyncio.wait_for(main(), 10))
    assert tk["x_measurement_failure"] == "generic_timeout_error"
    assert (tk["control"], tk["control_failure"]) == (None, "generic_timeout_error")


def test_at_most_max_endpoints_addresses_are_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name that resolves to many addresses (a censor may answer with dozens) costs MAX_ENDPOINTS connects."""
    port = testing.closed_port()
    many = tuple(f"127.0.0.{i}" for i in range(1, wc.MAX_ENDPOINTS + 4))

    async def lookup_system(host: str, **_: Any) -> DNSResult:
        return DNSResult(host, "ANY", "system", many, None)

    monkeypatch.setattr(wc, "lookup_system", lookup_system)
    tk = asyncio.run(wc.run(f"http://many.example:{port}/", Context(timeouts=TIMEOUTS, options=CTX)))
    wanted = [f"{ip}:{port}" for ip in many[:wc.MAX_ENDPOINTS]]
    assert tk["x_control_request"]["tcp_connect"] == wanted
    assert sorted(f"{c['ip']}:{c['port']}" for c in tk["tcp_connect"]) == sorted(wanted)
