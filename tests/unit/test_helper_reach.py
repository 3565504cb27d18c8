"""The control helper measures whatever a client names, so it must not become a way into its own machine or
network (server-side request forgery): internal addresses are not connected to unless their network was
allowed with --allow-net, as the lab allows 198.18.0.0/15. Real sockets on loopback: a server counts the
connections it gets."""

from __future__ import annotations

import argparse
import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest

from tamperscope.helper import server as helper
from tamperscope.netx.resolver import Resolver


@pytest.mark.parametrize("ip", [
    "127.0.0.1", "127.8.8.8", "::1", "::", "0.0.0.0", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "169.254.169.254",
    "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "224.0.0.1", "239.1.1.1", "255.255.255.255",
    "fe80::1%eth0", "fc00::1", "198.18.0.1", "198.19.255.255", "2001:db8::1", "not an address",
    "168.63.129.16",  # Azure's WireServer, every Azure VM's configuration: was taken for the internet's
    "64:ff9b::7f00:1", "2002:7f00:1::1", "fec0::1", "192.0.2.1",
])
def test_internal_addresses(ip: str) -> None:
    assert helper.internal(ip)
    if ip != "not an address":  # ip_info's bogon flag says so of each address the helper refuses
        assert helper.is_bogon(ip), ip


@pytest.mark.parametrize("ip", ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8", "193.0.14.129"])
def test_internet_addresses(ip: str) -> None:
    assert not helper.internal(ip) and not helper.is_bogon(ip)


@pytest.fixture
def loopback_site() -> Iterator[tuple[int, list[int]]]:
    """An HTTP server on 127.0.0.1 that answers every request with a page titled 'secret', counting connections."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    seen = [0]
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            seen[0] += 1
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                    body = b"<title>secret</title>internal admin page"
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
                                 + body)
                except OSError:
                    pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1], seen
    finally:
        stop.set()
        t.join()
        srv.close()


def _measure(h: helper.ControlHelper, url: str, endpoints: list[str]) -> dict:  # type: ignore[type-arg]
    return asyncio.run(h.measure(url, [("Accept", "*/*")], endpoints))


def test_the_helper_connects_to_no_internal_address_by_default(loopback_site: tuple[int, list[int]]) -> None:
    port, seen = loopback_site
    h = helper.ControlHelper(resolver=Resolver(), ca_bundle=None, timeout=4)
    for url in (f"http://127.0.0.1:{port}/", f"http://[::ffff:127.0.0.1]:{port}/", f"http://localhost:{port}/"):
        out = _measure(h, url, [f"127.0.0.1:{port}", f"[::1]:{port}", f"10.0.0.1:{port}"])
        assert out["tcp_connect"] == {} and out["tls_handshake"] == {}, url
        assert out["http_request"]["failure"] == "dns_bogon_error", (url, out["http_request"])
        assert out["http_request"]["title"] == "" and out["http_request"]["body_length"] == -1
        assert all(info["flags"] & helper.FLAG_BOGON for info in out["ip_info"].values())  # still said, as OONI does
    assert seen[0] == 0  # not one connection reached the internal server


def test_an_allowed_network_is_measured(loopback_site: tuple[int, list[int]]) -> None:
    port, seen = loopback_site
    h = helper.ControlHelper(resolver=Resolver(), ca_bundle=None, timeout=4,
                             allow_networks=helper.parse_networks(["127.0.0.0/8"]))
    out = _measure(h, f"http://127.0.0.1:{port}/", [f"127.0.0.1:{port}", f"10.0.0.1:{port}"])
    assert out["tcp_connect"] == {f"127.0.0.1:{port}": {"status": True, "failure": None}}  # 10/8 still refused
    assert out["http_request"]["status_code"] == 200 and out["http_request"]["title"] == "secret"
    assert seen[0] == 2


def test_a_redirect_into_the_internal_network_is_not_followed(loopback_site: tuple[int, list[int]]) -> None:
    """An allowed site (standing in for a public one) redirecting to an internal address: the hop is refused."""
    port, seen = loopback_site
    srv = socket.socket()
    srv.bind(("127.0.0.2", 0))
    srv.listen(4)
    srv.settimeout(0.2)
    redirect_port = srv.getsockname()[1]
    stop = threading.Event()

    def redirect() -> None:  # the helper connects twice: its tcp_connect check, then the fetch
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:%d/admin\r\n"
                                 b"Content-Length: 0\r\nConnection: close\r\n\r\n" % port)
                except OSError:
                    pass

    t = threading.Thread(target=redirect, daemon=True)
    t.start()
    try:
        h = helper.ControlHelper(resolver=Resolver(), ca_bundle=None, timeout=4,
                                 allow_networks=helper.parse_networks(["127.0.0.2/32"]))
        out = _measure(h, f"http://127.0.0.2:{redirect_port}/", [])
    finally:
        stop.set()
        t.join(5)
        srv.close()
    assert out["tcp_connect"] == {f"127.0.0.2:{redirect_port}": {"status": True, "failure": None}}
    assert out["http_request"]["failure"] == "dns_bogon_error"
    assert seen[0] == 0


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    helper.add_arguments(p)
    return p.parse_args(list(argv))


def test_allow_net_is_checked_and_normalised() -> None:
    args = _args("--allow-net", "198.18.1.2/15", "--allow-net", "FC00::/7")
    helper.check_options(args)
    assert args.allow_net == ["198.18.0.0/15", "fc00::/7"]
    for bad in ("nonsense", "10.0.0.0/33", ""):
        with pytest.raises(helper.BadOption, match="--allow-net takes a network like 198.18.0.0/15"):
            helper.check_options(_args("--allow-net", bad))


def test_only_net_keeps_every_connection_inside_it(loopback_site: tuple[int, list[int]]) -> None:
    """The lab's helper runs with --only-net 198.18.0.0/15: whatever a client names outside it (1.1.1.1, 8.8.8.8)
    is not connected to, so nothing it measures leaves the lab (QA: it connected to 1.1.1.1:80 from ts-inet)."""
    port, seen = loopback_site
    h = helper.ControlHelper(resolver=Resolver(), ca_bundle=None, timeout=4,
                             allow_networks=helper.parse_networks(["127.0.0.0/8"]),
                             only_networks=helper.parse_networks(["127.0.0.2/32"], "--only-net"))
    out = _measure(h, f"http://127.0.0.1:{port}/", [f"127.0.0.1:{port}"])
    assert out["tcp_connect"] == {} and out["http_request"]["failure"] == "dns_bogon_error"
    assert seen[0] == 0
    assert h.reachable("127.0.0.2") and not h.reachable("8.8.8.8") and not h.reachable("1.1.1.1")
    assert not h.reachable("2001:4860:4860::8888")  # no IPv6 network named: none
    args = argparse.Namespace(host="127.0.0.1", port=80, resolver=None, allow_net=[], only_net=["lab"],
                              max_inflight=64, max_connections=64, timeout=5.0, ca_bundle=None)
    with pytest.raises(helper.BadOption, match="--only-net takes a network like 198.18.0.0/15, not 'lab'"):
        helper.check_options(args)
