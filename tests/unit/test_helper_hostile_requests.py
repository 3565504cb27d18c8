"""Hostile control requests: what a client can make the control helper connect to, send and spend.

The helper measures whatever a client names. Beyond tests/unit/test_helper_reach.py (loopback, private, mapped
addresses, redirects) and test_helper_hostile_clients.py (the HTTP front end), these hold: an IPv4 address
written as IPv6 (6to4, NAT64) or site-local IPv6 is judged as what it reaches; the machine's own addresses are
refused even when public; numeric IPv4 spellings in a URL resolve to what they are and are refused; only the
page-choosing request fields go out; a name with hundreds of addresses costs a bounded number of connections.

Nothing here leaves the machine: connections that would go elsewhere are made by stubs that record them, and
the only real sockets are on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import pytest

from tamperscope.helper import server as helper
from tamperscope.model import failures as F
from tamperscope.netx import dns as dns_mod
from tamperscope.netx import tcp as tcp_mod
from tamperscope.netx.classify import NetxError
from tamperscope.netx.fetch import FetchResult
from tamperscope.netx.resolver import Resolver
from tamperscope.netx.trace import Trace


@pytest.fixture
def loopback_site() -> Iterator[tuple[int, list[bytes]]]:
    """An HTTP server on 127.0.0.1 keeping each request head it gets (b"" for a connection that sent none)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.1)
    heads: list[bytes] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                head = b""
                try:
                    while b"\r\n\r\n" not in head:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        head += chunk
                except OSError:
                    pass
                # kept before the answer: once the helper has the page, the test reads what was sent (kept
                # after it, a loaded machine let the test look first and find nothing)
                heads.append(head)
                if head:
                    try:
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\nConnection: close\r\n\r\n"
                                     b"<title>page</title>.")
                    except OSError:
                        pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1], heads
    finally:
        stop.set()
        t.join(5)
        srv.close()


class Connects:
    """Stands in for every TCP connect the helper makes (its own checks and its fetch): records, refuses."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, int]] = []
        monkeypatch.setattr(helper, "tcp_connect", self)
        monkeypatch.setattr(tcp_mod, "connect", self)

    async def __call__(self, ip: str, port: int, *, trace: Trace, timeout: float = 0.0,
                       tags: Sequence[str] = (), transaction_id: int | None = None) -> Any:
        self.calls.append((ip, port))
        raise NetxError(F.CONNECTION_REFUSED, operation=F.CONNECT, endpoint=f"{ip}:{port}")


def _measure(h: helper.ControlHelper, url: str, endpoints: Sequence[str] = ()) -> dict[str, Any]:
    return asyncio.run(h.measure(url, [("Accept", "*/*")], list(endpoints)))


# -- addresses: what is internal -----------------------------------------------------------------------------


@pytest.mark.parametrize("ip", [
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254, the cloud metadata service
    "2002:a00:1::",  # 6to4 of 10.0.0.1
    "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::808:808",  # local-use NAT64 (RFC 8215): whatever this network makes of it
    "::127.0.0.1", "::ffff:0:7f00:1",  # IPv4-compatible, IPv4-translated
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo
    "fec0::1", "fefe::1",  # site-local, deprecated but routed inside some networks
    "fd00:ec2::254",  # AWS's IPv6 metadata service (ULA)
    "0.1.2.3", "100.64.0.1", "192.0.0.9", "192.0.0.170", "198.18.0.1", "255.255.255.255", "ff0e::1",
])
def test_addresses_that_reach_inside_are_internal(ip: str) -> None:
    assert helper.internal(ip)


@pytest.mark.parametrize("ip", ["2002:808:808::1", "64:ff9b::808:808", "::ffff:8.8.8.8", "2606:4700::1111"])
def test_the_internet_written_as_ipv6_is_not_internal(ip: str) -> None:
    assert not helper.internal(ip)


def test_an_internal_address_written_as_ipv6_is_refused_before_any_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    connects = Connects(monkeypatch)
    h = helper.ControlHelper(resolver=Resolver(), ca_bundle=None, timeout=2)
    out = _measure(h, "http://[2002:a9fe:a9fe::1]/latest/meta-data/",
                   ["[2002:7f00:1::1]:22", "[64:ff9b::a00:1]:80", "[fec0::1]:80", "[2002:808:808::1]:80"])
    assert connects.calls == [("2002:808:808::1", 80)]  # the one public endpoint only
    assert out["http_request"]["failure"] == F.DNS_BOGON_ERROR
    assert set(out["tcp_connect"]) == {"[2002:808:808::1]:80"}


def test_the_machines_own_address_is_refused(loopback_site: tuple[int, list[bytes]],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A public address of the helper's machine reaches the services it serves on every interface (and
    through firewalls that trust the loopback interface): 127.0.0.1 stands in for one here, as if public."""
    port, heads = loopback_site
    monkeypatch.setattr(helper, "internal", lambda ip: False)
    h = helper.ControlHelper(resolver=Resolver(), ca_bundle=None, timeout=2)
    out = _measure(h, f"http://127.0.0.1:{port}/", [f"127.0.0.1:{port}"])
    assert heads == []  # not one connection
    assert out["tcp_connect"] == {} and out["http_request"]["failure"] == F.DNS_BOGON_ERROR


def test_local_is_asked_of_the_kernel() -> None:
    assert helper.local("127.0.0.1")
    assert not helper.local("198.18.0.1") and not helper.local("not an address")
    if socket.has_ipv6:
        with socket.socket(socket.AF_INET6) as s:
            try:
                s.bind(("::1", 0))
            except OSError:
                return  # no IPv6 loopback here
        assert helper.local("::1")


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "0x7f000001", "017700000001", "0177.0.0.1", "127.1"])
def test_a_numeric_ipv4_spelling_in_the_url_is_refused(host: str, loopback_site: tuple[int, list[bytes]]) -> None:
    """getaddrinfo reads these as 127.0.0.1 (inet_aton's forms, no DNS query): what it gives is checked."""
    port, heads = loopback_site
    h = helper.ControlHelper(resolver=Resolver(), ca_bundle=None, timeout=2)
    out = _measure(h, f"http://{host}:{port}/", [f"127.0.0.1:{port}"])
    assert heads == [] and out["tcp_connect"] == {}
    assert out["http_request"]["failure"] == F.DNS_BOGON_ERROR


@pytest.mark.parametrize("ep", ["2130706433:80", "0x7f.1:80", "017700000001:80", "127.1:80", "0177.0.0.1:80",
                                "localhost:80", "127.0.0.1.:80"])
def test_an_endpoint_that_is_no_plain_ip_is_refused(ep: str) -> None:
    with pytest.raises(helper.BadRequest):
        helper.parse_control_request(orjson.dumps({"http_request": "http://example.com/", "tcp_connect": [ep]}))


# -- what the helper sends, and how much it spends -----------------------------------------------------------


def test_only_the_page_choosing_fields_are_passed_on() -> None:
    fields: dict[str, Any] = {"Cookie": "session=1", "Authorization": "Bearer x", "X-Forwarded-For": "1.2.3.4",
                              "Referer": "http://a/", "User-Agent": "UA", "accept-language": ["en", "fr"]}
    fields.update({f"X-{i}": ["v" * 200] * 4 for i in range(1000)})
    fields.update({"".join(c.upper() if i >> k & 1 else c for k, c in enumerate("accept")): ["a" * 2000] * 4
                   for i in range(64)})  # 64 spellings of Accept, 4 long values each
    _, headers, _ = helper.parse_control_request(orjson.dumps({"http_request": "http://example.com/",
                                                               "http_request_headers": fields}))
    assert {k.lower() for k, _ in headers} == {"user-agent", "accept", "accept-language"}
    assert sum(k.lower() == "accept" for k, _ in headers) == helper.MAX_HEADER_VALUES
    assert all(len(v) <= helper.MAX_HEADER_VALUE for _, v in headers)


def test_a_megabyte_of_fields_does_not_go_out(loopback_site: tuple[int, list[bytes]]) -> None:
    port, heads = loopback_site
    body = orjson.dumps({"http_request": f"http://127.0.0.1:{port}/",
                         "http_request_headers": {f"X-{i}": ["v" * 200] * 4 for i in range(1200)}})
    assert len(body) < helper.MAX_REQUEST
    url, headers, eps = helper.parse_control_request(body)
    h = helper.ControlHelper(resolver=Resolver(), ca_bundle=None, timeout=2,
                             allow_networks=helper.parse_networks(["127.0.0.0/8"]))
    out = asyncio.run(h.measure(url, headers, eps))
    assert out["http_request"]["title"] == "page"
    sent = [head for head in heads if head]
    assert len(sent) == 1 and len(sent[0]) < 1024 and b"X-1" not in sent[0]


def test_a_name_with_hundreds_of_addresses_costs_a_bounded_number_of_connections(
        monkeypatch: pytest.MonkeyPatch) -> None:
    addrs = tuple(f"198.18.{i // 250}.{i % 250 + 1}" for i in range(1000))

    async def lookup(host: str, **_: Any) -> dns_mod.DNSResult:
        return dns_mod.DNSResult(host, "ANY", "system", addrs, None, 0)

    async def fetch(url: str, **_: Any) -> FetchResult:
        return FetchResult(url, (), F.CONNECTION_REFUSED, F.CONNECT)

    connects = Connects(monkeypatch)
    monkeypatch.setattr(helper, "lookup_addresses", lookup)
    monkeypatch.setattr(helper, "fetch", fetch)
    h = helper.ControlHelper(resolver=Resolver(), ca_bundle=None, timeout=2,
                             allow_networks=helper.parse_networks(["198.18.0.0/15"]))
    url, _, theirs = helper.parse_control_request(orjson.dumps(
        {"http_request": "http://many.example/", "tcp_connect": [f"198.19.0.{i}:80" for i in range(1, 100)]}))
    out = _measure(h, url, theirs)
    assert len(connects.calls) == 2 * helper.MAX_ENDPOINTS  # the client's first 32, and 32 of the name's
    assert out["dns"]["addrs"] == list(addrs)  # still all said


# -- malformed requests, and many at once --------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b'{"http_request": ["http://example.com/"]}', b'{"http_request": {"url": "http://example.com/"}}',
    b'{"http_request": "ftp://example.com/"}', b'{"http_request": "http:///x"}', b'{"http_request": null}',
    b'{"http_request": "http://example.com/", "http_request_headers": ["Accept"]}',
    b'{"http_request": "http://example.com/", "http_request_headers": "Accept: */*"}',
    b'{"http_request": "http://example.com/", "tcp_connect": "1.2.3.4:80"}',
    b'{"http_request": "http://example.com/", "tcp_connect": [["1.2.3.4:80"]]}',
    b'{"http_request": "http://example.com/", "tcp_connect": [80]}',
    b'{"http_request": "http://example.com/", "tcp_connect": ["1.2.3.4:80:80"]}',
    b'[' * 5000 + b']' * 5000, b'{"a":' * 5000 + b'1' + b'}' * 5000, b'\xff\xfe{}', b'', b'1e999999',
])
def test_a_malformed_control_request_is_a_bad_request(body: bytes) -> None:
    with pytest.raises(helper.BadRequest):
        helper.parse_control_request(body)


def test_values_of_the_wrong_type_in_the_fields_are_dropped() -> None:
    _, headers, _ = helper.parse_control_request(orjson.dumps({
        "http_request": "http://example.com/",
        "http_request_headers": {"Accept": [1, None, {"a": 1}, [["x"]], "text/html"], "User-Agent": 7}}))
    assert headers == []  # only the first 4 values of a field are looked at


def test_requests_beyond_max_inflight_get_503() -> None:
    class Slow(helper.ControlHelper):
        async def measure(self, url: str, headers: Sequence[tuple[str, str]],
                          endpoints: Sequence[str]) -> dict[str, Any]:
            await asyncio.sleep(0.5)
            return {}

    async def post(port: int) -> bytes:
        body = b'{"http_request": "http://example.com/"}'
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        try:
            async with asyncio.timeout(3):
                return await reader.read()
        finally:
            writer.close()

    async def main() -> list[bytes]:
        front = helper.HelperServer(Slow(resolver=Resolver(), ca_bundle=None, max_inflight=2))
        server = await front.serve("127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await asyncio.gather(*(post(port) for _ in range(5)))
        finally:
            server.close()

    answers = asyncio.run(main())
    codes = sorted(int(a.split(b" ", 2)[1]) for a in answers)
    assert codes == [200, 200, 503, 503, 503]
