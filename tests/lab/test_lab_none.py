"""Profile `none`: everything passes untouched, and nothing is logged."""

from __future__ import annotations

import pytest

from tamperscope.lab import addresses as A
from tamperscope.lab import farm

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab(lab_factory):  # type: ignore[no-untyped-def]
    return lab_factory("none")


def test_dns_answers_deterministically_once(lab) -> None:  # type: ignore[no-untyped-def]
    names = ["example.com", "facebook.com", "www.bbc.com", "youtube.com"]
    res = lab.run([{"op": "dns_udp", "args": [A.PUBLIC_RESOLVER, n]} for n in names]
                  + [{"op": "dns_system", "args": [n]} for n in names])
    for n, udp, system in zip(names, res[:4], res[4:]):
        assert [r["ips"] for r in udp["responses"]] == [[lab.addr(n)]], (n, udp)
        assert system["ips"] == [lab.addr(n)], (n, system)
    assert len({lab.addr(n) for n in names}) >= 2  # spread over the farm
    nx = lab.one("dns_udp", A.PUBLIC_RESOLVER, "nx.example.com")
    assert nx["responses"][0]["rcode"] == "NXDOMAIN"


def test_web_farm_http_https_h2_and_pages(lab) -> None:  # type: ignore[no-untyped-def]
    host = "example.org"
    ip = lab.addr(host)
    h = lab.one("http_get", ip, host)
    if farm.redirect_for("http", host, "/"):
        assert h["status"] == 301 and h["headers"]["Location"] == f"https://{host}/"
    else:
        assert h["status"] == 200 and farm.title_of(host) in h["body"]
    t = lab.one("tls", ip, host, alpn=["h2", "http/1.1"])
    assert t["error"] is None and t["alpn"] == "h2"
    t = lab.one("tls", ip, host, path="/")
    assert t["error"] is None and t["status"] == 200 and t["body"] == farm.page(host).decode()
    assert "tamperscope lab root CA" in t["issuer"]
    other = lab.one("tls", lab.addr("example.net"), "example.net", path="/")
    assert other["bytes"] != t["bytes"] or farm.title_of("example.net") in other["body"]


def test_redirects_and_large_body(lab) -> None:  # type: ignore[no-untyped-def]
    r = lab.one("http_get", lab.addr("redirect.example.com"), "redirect.example.com")
    assert r["status"] == 302 and r["headers"]["Location"] == "https://example.com/"
    hosts = [f"site{i}.example" for i in range(40)]
    redirecting = [h for h in hosts if farm.redirect_for("http", h, "/")]
    assert redirecting, "some hosts must redirect http to https"
    r = lab.one("http_get", lab.addr(redirecting[0]), redirecting[0])
    assert r["status"] == 301 and r["headers"]["Location"].startswith("https://")
    big = lab.one("tls", lab.addr("large.example.com"), "large.example.com", path="/")
    assert big["bytes"] == farm.LARGE_BODY


def test_echo_returns_exact_bytes(lab) -> None:  # type: ignore[no-untyped-def]
    data = "GET / HTTP/1.1\r\nhOsT: example.com\r\nX-Odd:  spaced \r\n\r\n"
    r = lab.one("raw_echo", A.ECHO, data)
    assert r["data"] == data


def test_nothing_blocked_nothing_logged(lab) -> None:  # type: ignore[no-untyped-def]
    r = lab.one("quic", lab.addr("youtube.com"), "youtube.com")
    assert r["error"] is None and r["alpn"] == "h3"  # QUIC to the site completes: not dropped
    r = lab.one("udp_probe", lab.addr("youtube.com"), 8443)
    assert r["error"] == "refused"  # ICMP port unreachable came back from a port nobody serves: not dropped
    r = lab.one("tcp", lab.addr("nordvpn.com"), 443)
    assert r["error"] is None
    assert lab.log() == []


def test_status_reports_every_address(lab) -> None:  # type: ignore[no-untyped-def]
    from tamperscope.lab import manager

    st = manager.status()
    assert st["up"] and st["profile"] == "none"
    a = st["addresses"]
    for key in ("client", "isp_resolver", "public_resolver", "helper", "echo", "web_farm", "routers", "outside"):
        assert a[key]
    assert len(a["web_farm"]) >= 4
    assert st["censor_after_hop"] == 1 == len([h for h in a["hops"]]) - 1
