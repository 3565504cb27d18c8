"""Edges of the control helper (helper/server.py) that its hostile-client tests left open.

What the helper measures for a client (which endpoints get a TLS handshake, which header value it reports, the
ip_info flags, when it tries QUIC) and the bounds of what it parses (endpoint ports, header-field counts, the body
size limit, the bodies and requests it counts). Nothing leaves the machine: measurements go through stubs of
the helper's network calls, and the only real sockets are on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from tamperscope.helper import server as helper
from tamperscope.model import failures as F
from tamperscope.netx import dns as dns_mod
from tamperscope.netx import quic as quic_mod
from tamperscope.netx.classify import NetxError
from tamperscope.netx.fetch import FetchResult
from tamperscope.netx.http import HTTPResponse
from tamperscope.netx.resolver import Resolver
from tamperscope.netx.trace import Trace

LO = "127.0.0.1"


# -- stubs of the helper's network calls -------------------------------------------------------------------


class _Stream:
    def __init__(self, ip: str, port: int) -> None:
        self.ip, self.port = ip, port

    async def aclose(self) -> None:
        pass


class Net:
    """Stands in for every network call `ControlHelper.measure` makes: records them, answers as told."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, addrs: Sequence[str] = (),
                 responses: Sequence[HTTPResponse] = (), tls_ok: bool = True) -> None:
        self.addrs = tuple(addrs)
        self.responses = tuple(responses)
        self.tls_ok = tls_ok
        self.connects: list[tuple[str, int]] = []
        self.handshakes: list[tuple[str, int, str | None]] = []
        self.quic: list[tuple[str, int]] = []
        monkeypatch.setattr(helper, "tcp_connect", self.connect)
        monkeypatch.setattr(helper, "tls_handshake", self.handshake)
        monkeypatch.setattr(helper, "lookup_addresses", self.lookup)
        monkeypatch.setattr(helper, "fetch", self.fetch)
        monkeypatch.setattr(quic_mod, "handshake", self.quic_handshake)

    async def connect(self, ip: str, port: int, *, trace: Trace, timeout: float = 0.0) -> _Stream:
        self.connects.append((ip, port))
        return _Stream(ip, port)

    async def handshake(self, stream: _Stream, *, server_name: str | None, trace: Trace, **_: Any) -> _Stream:
        self.handshakes.append((stream.ip, stream.port, server_name))
        if not self.tls_ok:
            raise NetxError(F.CONNECTION_RESET, operation=F.TLS_HANDSHAKE, endpoint=f"{stream.ip}:{stream.port}")
        return stream

    async def lookup(self, host: str, **_: Any) -> dns_mod.DNSResult:
        return dns_mod.DNSResult(host, "ANY", "system", self.addrs, None, 0)

    async def fetch(self, url: str, **_: Any) -> FetchResult:
        return FetchResult(url, self.responses, None, None)

    async def quic_handshake(self, ip: str, port: int, **_: Any) -> dict[str, Any]:
        self.quic.append((ip, port))
        return {"failure": None}


def _response(url: str, headers: Sequence[tuple[bytes, bytes]] = (), version: str = "HTTP/1.1",
              status: int = 200, body: bytes = b"<title>t</title>") -> HTTPResponse:
    return HTTPResponse(url, status, tuple(headers), body, False, version, "198.18.0.1:443", 1)


def _lab_helper() -> helper.ControlHelper:
    return helper.ControlHelper(resolver=Resolver(), ca_bundle=None, timeout=2,
                                allow_networks=helper.parse_networks(["198.18.0.0/15"]))


def _measure(url: str, endpoints: Sequence[str] = ()) -> dict[str, Any]:
    return asyncio.run(_lab_helper().measure(url, [("Accept", "*/*")], list(endpoints)))


# -- what a control request may name -----------------------------------------------------------------------


@pytest.mark.parametrize("ep", ["198.18.0.1:0", "198.18.0.1:65536", "[2001:db8::1]:0", "[2001:db8::1]:65536",
                                "198.18.0.1:99999", "[2001:db8::1:80", "[2001:db8::1]80"])
def test_an_endpoint_port_outside_1_to_65535_is_refused(ep: str) -> None:
    """Port 0 (which connect() takes for "any"), or one past 65535, would be asked of the kernel as given; an
    IPv6 endpoint missing its closing bracket is no endpoint (not "[2001:db8::1]:80" guessed at)."""
    with pytest.raises(helper.BadRequest):
        helper.parse_control_request(orjson.dumps({"http_request": "http://example.com/", "tcp_connect": [ep]}))


def test_the_endpoint_ports_at_the_bounds_are_taken() -> None:
    eps = ["198.18.0.1:1", "198.18.0.1:65535", "[2001:db8::1]:65535"]
    _, _, got = helper.parse_control_request(orjson.dumps({"http_request": "http://example.com/",
                                                           "tcp_connect": eps}))
    assert got == eps


# -- what the helper measures ------------------------------------------------------------------------------


def test_an_https_sites_own_port_gets_a_tls_handshake(monkeypatch: pytest.MonkeyPatch) -> None:
    """TLS on port 443, and on the https URL's own port; a plain port of an https site gets TCP only."""
    net = Net(monkeypatch, addrs=["198.18.0.7"], responses=[_response("https://site.example:8443/")])
    out = _measure("https://site.example:8443/", ["198.18.0.1:8443", "198.18.0.2:443", "198.18.0.3:80"])
    assert sorted(net.handshakes) == [("198.18.0.1", 8443, "site.example"), ("198.18.0.2", 443, "site.example"),
                                      ("198.18.0.7", 8443, "site.example")]
    assert set(out["tls_handshake"]) == {"198.18.0.1:8443", "198.18.0.2:443", "198.18.0.7:8443"}
    assert set(out["tcp_connect"]) == {"198.18.0.1:8443", "198.18.0.2:443", "198.18.0.3:80", "198.18.0.7:8443"}


def test_an_http_sites_port_gets_no_tls_handshake(monkeypatch: pytest.MonkeyPatch) -> None:
    """An http URL's own port is not TLS's: only port 443 gets a handshake."""
    net = Net(monkeypatch, addrs=["198.18.0.7"], responses=[_response("http://site.example:8080/")])
    out = _measure("http://site.example:8080/", ["198.18.0.1:8080", "198.18.0.2:443"])
    assert net.handshakes == [("198.18.0.2", 443, "site.example")]
    assert set(out["tls_handshake"]) == {"198.18.0.2:443"}


def test_the_first_value_of_a_repeated_response_field_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """As OONI's helper (Go's Header.Get): the first value; the last one would let a later field override."""
    Net(monkeypatch, responses=[_response("http://198.18.0.1/", [(b"X-Seen", b"first"), (b"X-Seen", b"second")])])
    out = _measure("http://198.18.0.1/")
    assert out["http_request"]["headers"] == {"X-Seen": "first"}
    assert out["http_request"]["status_code"] == 200 and out["http_request"]["title"] == "t"


def test_http2_field_names_are_reported_in_canonical_case(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP/2 names are lowercase on the wire; a probe compares them with HTTP/1.1's Canonical-Case ones."""
    Net(monkeypatch, responses=[_response("http://198.18.0.1/", [(b"content-type", b"text/html"),
                                                                 (b"x-frame-options", b"DENY")], "HTTP/2")])
    out = _measure("http://198.18.0.1/")
    assert out["http_request"]["headers"] == {"Content-Type": "text/html", "X-Frame-Options": "DENY"}


def test_ip_info_flags_say_who_resolved_each_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """1: the probe's, 2: the helper's, 4: a bogon, 8: a handshake valid for the name succeeded there."""
    Net(monkeypatch, addrs=["198.18.0.1", "8.8.8.8"], responses=[_response("https://site.example/")])
    out = _measure("https://site.example/", ["198.18.0.1:443", "198.18.0.9:443"])
    flags = {ip: info["flags"] for ip, info in out["ip_info"].items()}
    assert flags == {
        "198.18.0.1": helper.FLAG_RESOLVED_BY_PROBE | helper.FLAG_RESOLVED_BY_TH | helper.FLAG_BOGON
        | helper.FLAG_VALID_FOR_DOMAIN,
        "198.18.0.9": helper.FLAG_RESOLVED_BY_PROBE | helper.FLAG_BOGON | helper.FLAG_VALID_FOR_DOMAIN,
        "8.8.8.8": helper.FLAG_RESOLVED_BY_TH | helper.FLAG_VALID_FOR_DOMAIN,
    }


def test_a_failed_handshake_is_not_valid_for_the_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    Net(monkeypatch, addrs=["198.18.0.1"], responses=[_response("https://site.example/")], tls_ok=False)
    out = _measure("https://site.example/", ["198.18.0.1:443"])
    assert out["tls_handshake"]["198.18.0.1:443"]["failure"] == F.CONNECTION_RESET
    assert out["ip_info"]["198.18.0.1"]["flags"] == (helper.FLAG_RESOLVED_BY_PROBE | helper.FLAG_RESOLVED_BY_TH
                                                     | helper.FLAG_BOGON)


def test_quic_is_tried_for_the_sites_own_alt_svc(monkeypatch: pytest.MonkeyPatch) -> None:
    net = Net(monkeypatch, addrs=["198.18.0.1"],
              responses=[_response("https://site.example/", [(b"Alt-Svc", b'h3=":443"')])])
    out = _measure("https://site.example/")
    assert net.quic == [("198.18.0.1", 443)]
    assert out["http_request"]["discovered_h3_endpoint"] == "site.example:443"
    assert "x_final_host" not in out["http_request"]  # read by measure, not sent


def test_quic_is_not_tried_for_another_sites_alt_svc(monkeypatch: pytest.MonkeyPatch) -> None:
    """A redirect to another host: its Alt-Svc says nothing of the site asked about."""
    net = Net(monkeypatch, addrs=["198.18.0.1"],
              responses=[_response("https://elsewhere.example/", [(b"Alt-Svc", b'h3=":443"')])])
    out = _measure("https://site.example/")
    assert net.quic == [] and out["quic_handshake"] == {}
    assert out["http_request"]["discovered_h3_endpoint"] == ""
    assert "x_final_host" not in out["http_request"]


# -- the HTTP front end: what a request head may be --------------------------------------------------------


def _head(*fields: bytes, line: bytes = b"POST / HTTP/1.1") -> bytes:
    return b"\r\n".join((line, *fields)) + b"\r\n\r\n"


def test_a_head_of_exactly_max_headers_fields_is_taken() -> None:
    """The bound is "more than 100"; 100 fields (as some proxies add up) are a request, not a 431."""
    head = helper.parse_head(_head(*[b"X-%d: a" % i for i in range(helper.MAX_HEADERS)]))
    assert head.method == "POST" and head.length == 0
    with pytest.raises(helper.Refusal) as e:
        helper.parse_head(_head(*[b"X-%d: a" % i for i in range(helper.MAX_HEADERS + 1)]))
    assert e.value.status == 431


def test_a_body_of_exactly_max_request_bytes_is_taken() -> None:
    assert helper.parse_head(_head(b"Content-Length: %d" % helper.MAX_REQUEST)).length == helper.MAX_REQUEST
    with pytest.raises(helper.Refusal) as e:
        helper.parse_head(_head(b"Content-Length: %d" % (helper.MAX_REQUEST + 1)))
    assert e.value.status == 413


@pytest.mark.parametrize("codings, expected", [(b"gzip, chunked", 411), (b"chunked, gzip", 501),
                                               (b"gzip\r\nTransfer-Encoding: chunked", 411)])
def test_the_last_transfer_coding_decides_411_or_501(codings: bytes, expected: int) -> None:
    """RFC 9112: a body is chunked when chunked is the last coding applied (411: send Content-Length instead)."""
    with pytest.raises(helper.Refusal) as e:
        helper.parse_head(_head(b"Transfer-Encoding: " + codings))
    assert e.value.status == expected


@pytest.mark.parametrize("version, fields, keep", [
    (b"HTTP/1.1", (), True), (b"HTTP/1.1", (b"Connection: Keep-Alive, Close",), False),
    (b"HTTP/1.0", (), False), (b"HTTP/1.0", (b"Connection: keep-alive",), True),
    (b"HTTP/1.0", (b"Connection: upgrade",), False),
])
def test_keep_alive_follows_the_version_and_connection_field(version: bytes, fields: tuple[bytes, ...],
                                                             keep: bool) -> None:
    """HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes it unless told to keep it."""
    assert helper.parse_head(_head(*fields, line=b"GET /health " + version)).keep is keep


def test_expect_100_continue_is_an_http_1_1_clients_only() -> None:
    """An HTTP/1.0 client knows no 1xx answer: it would read "100 Continue" as the answer to its request."""
    assert helper.parse_head(_head(b"Expect: 100-continue", b"Content-Length: 2")).expect_continue
    assert not helper.parse_head(_head(b"Expect: 100-continue", b"Content-Length: 2",
                                       line=b"POST / HTTP/1.0")).expect_continue


@pytest.mark.parametrize("target, path", [("http://helper.example", "/"), ("https://helper.example?x=1", "/"),
                                          ("http://helper.example/api/v1/ctrl?x", "/api/v1/ctrl"),
                                          ("/health?x=1", "/health")])
def test_an_absolute_form_target_without_a_path_is_the_root(target: str, path: str) -> None:
    """RFC 9112: an empty path in an absolute-form target is "/" (else the helper's POST / would be a 404)."""
    assert helper.parse_head(_head(line=b"POST " + target.encode() + b" HTTP/1.1")).path == path


# -- the HTTP front end: what it counts, and how it answers ------------------------------------------------


class Scripted(helper.ControlHelper):
    """A helper whose measurement does what the test says: answer, time out, or fail."""

    def __init__(self, outcome: str) -> None:
        super().__init__(resolver=Resolver(), ca_bundle=None, timeout=2, max_inflight=1)
        self.outcome = outcome

    async def measure(self, url: str, headers: Sequence[tuple[str, str]],
                      endpoints: Sequence[str]) -> dict[str, Any]:
        if self.outcome == "timeout":
            raise TimeoutError
        if self.outcome == "bug":
            raise RuntimeError("a bug of ours")
        return {"measured": url}


CONTROL = b'{"http_request": "http://example.com/"}'


def _post(body: bytes = CONTROL, path: bytes = b"/", keep: bool = True) -> bytes:
    return (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n" % (path, len(body),
                                                                            b"" if keep else b"Connection: close\r\n")
            + body)


async def _answers(port: int, data: bytes, count: int) -> list[tuple[int, bytes, dict[str, Any]]]:
    """Send ``data`` on one connection and read ``count`` answers: (status, head, JSON body) each."""
    reader, writer = await asyncio.open_connection(LO, port)
    try:
        writer.write(data)
        out = []
        async with asyncio.timeout(3):
            for _ in range(count):
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
                out.append((int(head.split(b" ", 2)[1]), head, orjson.loads(await reader.readexactly(length))))
        return out
    finally:
        writer.close()


def _serve(h: helper.ControlHelper, check: Any, **limits: Any) -> None:
    async def main() -> None:
        front = helper.HelperServer(h, helper.Limits(**limits))
        server = await front.serve(LO, 0)
        try:
            await check(front, server.sockets[0].getsockname()[1])
        finally:
            server.close()

    asyncio.run(main())


def test_bodies_are_released_once_answered() -> None:
    """Each body is counted against `Limits.bodies` while held only: kept, 3 requests filled a 64 MiB limit."""
    async def check(front: helper.HelperServer, port: int) -> None:
        body = b" " * 300 + CONTROL  # 339 bytes: two of them at once are over the limit of 700
        got = await _answers(port, _post(body) * 3 + _post(body, keep=False), 4)
        assert [s for s, _, _ in got] == [200] * 4
        assert front.body_bytes == 0

    _serve(Scripted("answer"), check, bodies=700)


def test_a_body_of_exactly_the_bodies_limit_is_taken() -> None:
    async def check(front: helper.HelperServer, port: int) -> None:
        got = await _answers(port, _post(keep=False), 1)
        assert got[0][0] == 200 and got[0][2] == {"measured": "http://example.com/",
                                                  "x_client_address": LO}

    _serve(Scripted("answer"), check, bodies=len(CONTROL))


@pytest.mark.parametrize("outcome, expected", [("answer", 200), ("timeout", 504), ("bug", 500)])
def test_requests_in_flight_are_counted_down_however_they_end(outcome: str, expected: int,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """With max_inflight=1, one request that ended without counting down left every later one a 503."""
    async def check(front: helper.HelperServer, port: int) -> None:
        got = await _answers(port, _post(), 1) + await _answers(port, _post(), 1)
        assert [s for s, _, _ in got] == [expected, expected]
        assert front.helper.inflight == 0
        status, _, said = (await _answers(port, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 1))[0]
        assert status == 200 and said["inflight"] == 0

    with caplog.at_level("ERROR", logger="tamperscope.helper"):
        _serve(Scripted(outcome), check)
    assert bool(caplog.records) is (outcome == "bug")  # our bug is logged; a client's slow site is not


def test_a_measurement_that_times_out_is_a_504_and_the_connection_kept() -> None:
    async def check(front: helper.HelperServer, port: int) -> None:
        got = await _answers(port, _post() + b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n", 2)
        assert got[0][0] == 504 and got[0][2] == {"error": "control measurement timed out"}
        assert b"\r\nConnection: keep-alive\r\n" in got[0][1]
        assert got[1][0] == 200

    _serve(Scripted("timeout"), check)


def test_a_failed_measurement_is_a_500_and_the_connection_closed() -> None:
    async def check(front: helper.HelperServer, port: int) -> None:
        got = await _answers(port, _post(), 1)
        assert got[0][0] == 500 and b"\r\nConnection: close\r\n" in got[0][1]

    _serve(Scripted("bug"), check)


@pytest.mark.parametrize("path", [b"/nothing", b"/api/v1/ctrl/", b"//", b"/API/V1/CTRL"])
def test_a_path_not_served_is_a_404_not_a_measurement(path: bytes) -> None:
    async def check(front: helper.HelperServer, port: int) -> None:
        got = await _answers(port, _post(path=path, keep=False), 1)
        assert got[0][0] == 404 and got[0][2] == {"error": "not found"}

    _serve(Scripted("answer"), check)


def test_the_control_request_is_served_on_both_paths() -> None:
    async def check(front: helper.HelperServer, port: int) -> None:
        got = await _answers(port, _post() + _post(path=b"/api/v1/ctrl", keep=False), 2)
        assert [(s, said.get("measured")) for s, _, said in got] == [(200, "http://example.com/")] * 2

    _serve(Scripted("answer"), check)


# -- options -----------------------------------------------------------------------------------------------


def _args(*argv: str) -> Any:
    import argparse

    p = argparse.ArgumentParser()
    helper.add_arguments(p)
    return p.parse_args(list(argv))


@pytest.mark.parametrize("option, value", [("--max-connections", "0"), ("--max-connections", "100001"),
                                           ("--max-inflight", "100001"), ("--max-inflight", "-1")])
def test_connection_and_inflight_caps_are_bounded(option: str, value: str) -> None:
    """Beyond 100,000 the caps bound nothing a machine has (and 0 would refuse every client)."""
    with pytest.raises(helper.BadOption, match=f"{option} must be between 1 and 100000, not {value}"):
        helper.check_options(_args(option, value))


def test_connection_and_inflight_caps_at_their_bounds_are_taken() -> None:
    for value in ("1", "100000"):
        args = _args("--max-connections", value, "--max-inflight", value)
        helper.check_options(args)
        assert args.max_connections == args.max_inflight == int(value)


@pytest.mark.parametrize("soft, wanted, room", [(1000, 1024, 500), (4096, 1024, 1024), (1, 1024, 1), (None, 7, 7)])
def test_connections_leave_half_the_open_file_limit_to_measurements(monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str],
                                                                    soft: int | None, wanted: int,
                                                                    room: int) -> None:
    """Each measurement opens sockets of its own: with every descriptor held by clients, none could be made."""
    monkeypatch.setattr(helper, "open_files", lambda: soft)
    assert helper.connection_room(wanted) == room
    said = capsys.readouterr().err
    assert (f"at most {room} connections at once" in said) is (room < wanted)


def test_a_long_title_is_cut_to_256_characters() -> None:
    """The title goes back to every client asking of that page: 64 KiB of it would be 64 KiB in each answer."""
    assert helper.title_of(b"<title>" + b"a" * 5000 + b"</title>") == "a" * 256


class _Transport:
    def abort(self) -> None:
        pass


class _Writer:
    """What `HelperServer._control` writes to, from a peer with a scoped IPv6 address."""

    def __init__(self, peer: tuple[Any, ...]) -> None:
        self.peer, self.data, self.transport = peer, b"", _Transport()

    def get_extra_info(self, name: str) -> Any:
        return self.peer if name == "peername" else None

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        pass


def test_the_client_address_is_said_without_its_scope() -> None:
    """A link-local peer's "%eth0" names an interface of the helper's machine, not the probe's address."""
    writer = _Writer(("fe80::1%eth0", 40000, 0, 2))
    asyncio.run(helper.HelperServer(Scripted("answer"))._control(writer, CONTROL, False))  # type: ignore[arg-type]
    said = orjson.loads(writer.data.partition(b"\r\n\r\n")[2])
    assert said == {"measured": "http://example.com/", "x_client_address": "fe80::1"}


@pytest.mark.parametrize("ep", ["2001:db8::1:443", "::1:80", "::ffff:198.18.0.1:80"])
def test_an_ipv6_endpoint_without_brackets_is_refused(ep: str) -> None:
    """"2001:db8::1:443" is an IPv6 address itself, or 2001:db8::1 on port 443: OONI's format and Go's SplitHostPort
    want "[2001:db8::1]:443"; the helper guessed the last colon."""
    with pytest.raises(helper.BadRequest):
        helper.parse_control_request(orjson.dumps({"http_request": "http://example.com/", "tcp_connect": [ep]}))
