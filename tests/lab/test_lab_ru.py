"""Profile `ru-like`: a poisoning ISP resolver with a real blockpage, SNI RST, SNI throttling,
QUIC drop, an in-path HTTP blockpage."""

from __future__ import annotations

import pytest

from tamperscope.lab import addresses as A
from tamperscope.lab import blockpages

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab(lab_factory):  # type: ignore[no-untyped-def]
    return lab_factory("ru-like")


def test_isp_resolver_poisons_to_a_real_blockpage(lab) -> None:  # type: ignore[no-untyped-def]
    res = lab.run([{"op": "dns_system", "args": ["meduza.io"]},
                   {"op": "dns_udp", "args": [A.PUBLIC_RESOLVER, "meduza.io"]},
                   {"op": "dns_udp", "args": [A.ISP_RESOLVER, "www.grani.ru"]},
                   {"op": "http_get", "args": [A.ISP_BLOCKPAGE, "meduza.io"]}])
    assert res[0]["ips"] == [A.ISP_BLOCKPAGE]
    assert [r["ips"] for r in res[1]["responses"]] == [[lab.addr("meduza.io")]]  # not on the wire
    assert [r["ips"] for r in res[2]["responses"]] == [[A.ISP_BLOCKPAGE]]
    assert res[3]["status"] == 200 and res[3]["body"].encode() == blockpages.load("ru-rostelecom")
    assert lab.logged("ru-poison", "meduza.io")


def test_sni_rst_and_http_blockpage(lab) -> None:  # type: ignore[no-untyped-def]
    res = lab.run([{"op": "tls", "args": [lab.addr("www.linkedin.com"), "www.linkedin.com"]},
                   {"op": "sniff_rst", "args": [lab.addr("rutracker.org"), "rutracker.org"]}])
    assert res[0]["error"] == "reset"
    page = res[1]["result"]
    assert page["error"] is None and page["body"].encode() == blockpages.load("ru-mts")
    assert page["headers"]["Connection"] == "close"
    assert lab.logged("ru-sni", "www.linkedin.com") and lab.logged("ru-http-blockpage", "rutracker.org")


def test_sni_throttling_near_rate(lab) -> None:  # type: ignore[no-untyped-def]
    res = lab.run([{"op": "tls", "args": [lab.addr("abs.twimg.com"), "abs.twimg.com"], "kwargs": {"path": "/blob?size=80000"}},
                   {"op": "tls", "args": [lab.addr("example.com"), "example.com"], "kwargs": {"path": "/blob?size=80000"}}],
                  timeout=60)
    slow, fast = res
    assert slow["bytes"] == fast["bytes"] == 80000
    rate = lab.profile.rules[2].rate_kbps
    assert 0.75 * rate <= slow["kbps"] <= 1.25 * rate, slow["kbps"]
    assert fast["kbps"] > 20 * rate
    assert lab.logged("ru-throttle", "abs.twimg.com")


def test_quic_dropped_only_for_named_addresses(lab) -> None:  # type: ignore[no-untyped-def]
    res = lab.run([{"op": "udp_probe", "args": [lab.addr("www.youtube.com")]},
                   {"op": "udp_probe", "args": [lab.addr("example.com")]},
                   {"op": "tcp", "args": [lab.addr("www.youtube.com"), 443]}])
    assert [r["error"] for r in res] == ["timeout", "refused", None]
    assert lab.logged("ru-quic")
