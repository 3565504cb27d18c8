"""Profile `tm-like`: DNS injection, HTTP/SNI RSTs with TM's header values, over-broad regex,
IP drops, residual blocking, both directions."""

from __future__ import annotations

import pytest

from tamperscope.lab import addresses as A
from tamperscope.wire.packet import initial_ttl

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab(lab_factory):  # type: ignore[no-untyped-def]
    return lab_factory("tm-like")


def test_dns_injection_races_the_real_answer(lab) -> None:  # type: ignore[no-untyped-def]
    udp = lab.one("dns_udp", A.PUBLIC_RESOLVER, "www.facebook.com")
    ips = [r["ips"] for r in udp["responses"]]
    assert ips == [["127.0.0.1"], [lab.addr("www.facebook.com")]], udp
    system = lab.one("dns_system", "instagram.com")
    assert system["ips"] == ["127.0.0.1"]  # the ISP resolver took the forged answer
    assert lab.logged("tm-dns", "www.facebook.com")
    clean = lab.one("dns_udp", A.PUBLIC_RESOLVER, "example.com")
    assert len(clean["responses"]) == 1


def test_http_rst_carries_tm_signature(lab) -> None:  # type: ignore[no-untyped-def]
    host = "www.bbc.com"
    r = lab.one("sniff_rst", lab.addr(host), host)
    assert r["result"]["error"] == "reset"
    rst = r["rst"]
    assert rst is not None and rst["ip_id"] == 30000 and initial_ttl(rst["ttl"]) == 128 and rst["window"] == 0
    assert rst["ttl"] == 127  # one router (the access router) between censor and client
    e = lab.logged("tm-http", host)[-1]
    assert e["layer"] == "http" and e["action"] == "rst" and e["client"].startswith(A.CLIENT + ":")


def test_sni_rst_and_overbroad_regex(lab) -> None:  # type: ignore[no-untyped-def]
    res = lab.run([
        {"op": "tls", "args": [lab.addr("en.wikipedia.org"), "en.wikipedia.org"]},
        {"op": "tls", "args": [lab.addr("www.history.com"), "www.history.com"]},  # innocent, hit by /tor/
        {"op": "http_get", "args": [lab.addr("www.motorola.com"), "www.motorola.com"]},
        {"op": "tls", "args": [lab.addr("example.com"), "example.com"]},
    ])
    assert [r["error"] for r in res] == ["reset", "reset", "reset", None]
    assert lab.logged("tm-sni", "en.wikipedia.org") and lab.logged("tm-sni-regex", "www.history.com")
    assert lab.logged("tm-http-regex", "www.motorola.com")


def test_split_client_hello_still_caught(lab) -> None:  # type: ignore[no-untyped-def]
    # The ClientHello sent in two TCP segments, the SNI in the second: the censor must reassemble.
    res = lab.run([{"op": "tls_split", "args": [lab.addr("m.youtube.com"), "m.youtube.com", 40]},
                   {"op": "tls_split", "args": [lab.addr("example.com"), "example.com", 40]}])
    assert res[0]["error"] == "reset", res
    assert res[1]["error"] is None, res


def test_ip_drop_and_residual(lab) -> None:  # type: ignore[no-untyped-def]
    r = lab.one("tcp", lab.addr("nordvpn.com"), 443)
    assert r["error"] == "timeout"
    assert lab.logged("tm-ip", "nordvpn.com")
    host = "hronikatm.com"
    ip = lab.addr(host)
    first = lab.one("http_get", ip, host)
    assert first["error"] == "reset"
    again = lab.run([{"op": "tcp", "args": [ip, 80]}, {"op": "tcp", "args": [ip, 443]},
                     {"op": "tcp", "args": [lab.addr("example.com"), 80]}])
    assert again[0]["error"] == "timeout"  # residual: the client and that server endpoint
    assert again[1]["error"] is None and again[2]["error"] is None


def test_ingress_direction_from_outside(lab) -> None:  # type: ignore[no-untyped-def]
    # Turkmenistan filters traffic entering the country too: a request from the outside
    # vantage to an in-country server is reset, and a DNS query to the ISP resolver injected.
    ok = lab.one("http_get", A.ISP_WEB, "example.com", ns=A.NS_OUTSIDE)
    assert ok["error"] is None and ok["status"] in (200, 301)
    r = lab.one("http_get", A.ISP_WEB, "www.rferl.org", ns=A.NS_OUTSIDE)
    assert r["error"] == "reset"
    d = lab.one("dns_udp", A.ISP_RESOLVER, "twitter.com", ns=A.NS_OUTSIDE)
    assert d["responses"][0]["ips"] == ["127.0.0.1"]
    assert any(e["client"].startswith(A.OUTSIDE) for e in lab.logged("tm-http", "www.rferl.org"))
