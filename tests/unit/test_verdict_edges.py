"""Edges of the web_connectivity verdict and of OONI's HTTP comparison that a mutation-testing pass left unguarded.

Each test is a measurement a user could submit (built with `WC`, the builder of ``test_verdict``) or a comparison
the verdict makes, at the very edge of one rule: IPv6 the probe does not have, a site without an IPv6 address, a
lie told to a resolver the browser does not use, an unverified handshake, OONI's 0.7 body proportion, its five-byte
title words and v0.5's status-code rule.
"""

from __future__ import annotations

from typing import Any

import pytest

from tamperscope.model.consistency import ControlHTTP, Exchange, HTTPDiff, http_diff, title_words
from tamperscope.model.verdict import Verdict, web_connectivity_verdict
from tests.unit.test_verdict import BLOCK_HEADERS, BLOCKPAGE, CDN_IP, FAKE_IP, HOST, IP, PAGE, WC

IP6 = "2606:2800:220:1:248:1893:25c8:1946"  # the site's IPv6 address


def ooni(v: Verdict) -> tuple[object, object, str]:
    return (v.blocking, v.accessible, v.mechanism)


# --------------------------------------------------------------------------- a site without IPv6


def test_a_site_without_ipv6_measured_through_a_udp_resolver_only_is_accessible() -> None:
    """The only lookups are a UDP resolver's: A answered, AAAA ``dns_no_answer`` (the site has no IPv6 address),
    and the page was fetched as the control fetched it. Otherwise a user sees a site that works reported as
    blocked by DNS (dns.nxdomain) just because it has no IPv6 address."""
    w = WC().dns(engine="udp", qtype="A").dns(engine="udp", qtype="AAAA", addrs=(), failure="dns_no_answer")
    v = w.fetch_ok().control().verdict()
    assert ooni(v) == (False, True, "none"), v
    assert v.status == "ok" and v.confidence == 0.8


def test_a_site_without_ipv6_and_no_page_is_judged_by_its_connect_not_by_the_missing_aaaa() -> None:
    """Same UDP-only lookups, then the IPv4 connect is refused where the control connected: the user must see a
    TCP reset (tcp.rst), not a DNS answer forged as empty (dns.nxdomain) that never was."""
    w = WC().dns(engine="udp", qtype="A").dns(engine="udp", qtype="AAAA", addrs=(), failure="dns_no_answer")
    v = w.connect(IP, 80, "connection_refused").control().verdict()
    assert ooni(v) == ("tcp_ip", False, "tcp.rst"), v
    assert v.confidence == 0.9


# --------------------------------------------------------------------------- a probe without IPv6


def _dual_stack() -> WC:
    """A site with an IPv6 and an IPv4 address, and a control that reached both."""
    return WC().dns(addrs=(IP6, IP))


def _dual_stack_control(w: WC, **kw: Any) -> WC:
    return w.control((IP6, IP), asns={IP: 15133, IP6: 15133}, **kw)


def test_ipv6_unreachable_then_ipv4_refused_is_a_tcp_reset_not_a_drop() -> None:
    """The probe has no IPv6 (network_unreachable) and its IPv4 connect is refused: the censor's RST is what the
    user must see (tcp.rst, 0.9). Otherwise the probe's own missing IPv6 is reported as packets dropped
    (tcp.drop)."""
    w = _dual_stack().connect(IP6, 80, "network_unreachable").connect(IP, 80, "connection_refused")
    v = _dual_stack_control(w).verdict()
    assert ooni(v) == ("tcp_ip", False, "tcp.rst"), v
    assert v.confidence == 0.9
    assert v.evidence[0] == "test_keys.tcp_connect[1]"  # the IPv4 connect, not the IPv6 one


def test_ipv6_unreachable_then_an_http_timeout_is_an_http_drop_not_a_tcp_drop() -> None:
    """IPv6 unreachable (the probe has none), IPv4 connects, and the GET times out with no response: the user must
    see the request dropped (http.drop), not a TCP drop blamed on the probe's missing IPv6."""
    w = _dual_stack().connect(IP6, 80, "network_unreachable")
    tx = 99
    w.connect(IP, 80, tx=tx).fetch(ip=IP, code=0, failure="generic_timeout_error", tx=tx)
    v = _dual_stack_control(w).verdict()
    assert ooni(v) == ("http-failure", False, "http.drop"), v
    assert v.confidence == 0.8


# --------------------------------------------------------------------------- a lie to a resolver the browser ignores


def test_a_lie_injected_into_a_non_primary_resolver_does_not_block_a_site_the_system_resolver_got_right() -> None:
    """The system resolver answered the site's address and the page was fetched; only a side query to 8.8.8.8 over
    UDP got an injected lie first (the true answer came late). The user's browser was not lied to: accessible
    (0.8), not dns.injection."""
    w = WC().dns()  # getaddrinfo: the site's address
    w.dns(engine="udp", qtype="A", addrs=(FAKE_IP,), tx=50)  # the injected answer, first
    w.dns(engine="udp", qtype="A", addrs=(IP,), tx=50, late=True)  # the resolver's true answer, late
    v = w.fetch_ok().control().verdict()
    assert ooni(v) == (False, True, "none"), v
    assert v.confidence == 0.8


def test_the_same_lie_injected_into_the_primary_resolver_is_dns_injection() -> None:
    """The counterpart: when the resolver the browser uses gets the injected answer first, it is dns.injection."""
    w = WC().dns(engine="udp", qtype="A", addrs=(FAKE_IP,), tx=50)
    w.dns(engine="udp", qtype="A", addrs=(IP,), tx=50, late=True)
    v = w.fetch_ok(ip=FAKE_IP, body=BLOCKPAGE).control().verdict()
    assert ooni(v) == ("dns", False, "dns.injection"), v
    assert v.confidence == 0.95


# --------------------------------------------------------------------------- unverified handshakes vouch for nothing


def _no_tls_verify(m: dict[str, Any]) -> dict[str, Any]:
    for h in m["test_keys"]["tls_handshakes"]:
        h["no_tls_verify"] = True
    return m


def test_an_unverified_handshake_with_the_censors_server_does_not_clear_a_poisoned_answer() -> None:
    """DNS pointed the user at the censor's server (another AS than the control's), and the probe's handshake with
    it skipped certificate verification (``no_tls_verify``): it proves nothing about who answered. The user must
    see dns.poison (0.9), not a site reported accessible because any server completes an unverified handshake."""
    w = WC(f"https://{HOST}/").dns(addrs=(FAKE_IP,)).fetch_ok(ip=FAKE_IP, body=BLOCKPAGE, headers=BLOCK_HEADERS)
    v = web_connectivity_verdict(_no_tls_verify(w.control().build()))
    assert ooni(v) == ("dns", False, "dns.poison"), v
    assert v.confidence == 0.9


def test_a_verified_handshake_for_the_host_does_clear_a_different_answer() -> None:
    """The counterpart: the same answer with a verified handshake for the host is a CDN's address (accessible)."""
    w = WC(f"https://{HOST}/").dns(addrs=(CDN_IP,)).fetch_ok(ip=CDN_IP, body=BLOCKPAGE, headers=BLOCK_HEADERS)
    v = w.control().verdict()
    assert ooni(v) == (False, True, "none"), v


# --------------------------------------------------------------------------- OONI's HTTP comparison


def _exchange(body: bytes, *, status: int = 200, title: str = "") -> Exchange:
    page = f"<html><head><title>{title}</title></head><body>".encode() if title else b""
    return Exchange("test_keys.requests[0]", f"http://{HOST}/", None, status, page + body, False,
                    (("Content-Type", "text/html"),), 1, 0, IP)


def _control(*, length: int = 1000, status: int = 200, title: str = "") -> ControlHTTP:
    return ControlHTTP(None, status, length, title, (("Content-Type", "text/html"),))


@pytest.mark.parametrize(("measured", "match"), [(690, False), (700, False), (710, True), (1000, True)])
def test_bodies_match_only_when_the_smaller_is_more_than_seventy_percent_of_the_larger(measured: int,
                                                                                        match: bool) -> None:
    """OONI's body-length rule: proportion > 0.7. A 69% body is a different page (a blockpage the size of a
    truncated site would otherwise pass as the site)."""
    diff = http_diff(_exchange(b"x" * measured), _control(length=1000), (0, 5))
    assert diff.body_proportion == pytest.approx(measured / 1000)
    assert diff.body_length_match is match


def test_a_page_69_percent_of_the_controls_with_another_title_is_an_http_blockpage() -> None:
    """Through the verdict: a page 0.69 of the control's length, another title, only common headers: the user must
    see http.blockpage, not accessible; at 0.71 the same page is the site (accessible)."""
    control_length = len(PAGE.encode())
    for proportion, expected in ((0.69, ("http-diff", False, "http.blockpage")), (0.71, (False, True, "none"))):
        head = "<html><head><title>Something Else Entirely</title></head><body>"
        body = head + "y" * (int(control_length * proportion) - len(head))
        assert abs(len(body) / control_length - proportion) < 0.005
        w = WC().dns().fetch_ok(body=body, headers={"Content-Type": "text/html"})
        v = w.control().verdict()
        assert ooni(v) == expected, (proportion, v)


def test_title_words_are_those_of_five_bytes_or_more() -> None:
    """OONI compares title words of five bytes or more: four-letter words do not count, five-letter ones do."""
    assert title_words("Home Page News") == set()
    assert title_words("Hello Page") == {"hello"}
    assert title_words("Über Café") == {"über", "café"}  # five bytes in UTF-8, four letters


def test_titles_differing_only_in_a_four_letter_word_match() -> None:
    """Two titles that differ only in a short word ("Home"/"Page") are the same title for OONI; one that differs
    in a five-letter word is not. Otherwise a site whose title says "Home" while the control's says "Page" is a
    blockpage to the user."""
    control = _control(title="Example Domain Page")
    assert http_diff(_exchange(b"x" * 10, title="Example Domain Home"), control, (0, 5)).title_match is True
    assert http_diff(_exchange(b"x" * 10, title="Example Domain Front"), control, (0, 5)).title_match is False


def test_v05_skips_the_status_comparison_when_the_control_got_no_2xx() -> None:
    """v0.5: a control that got a 404 says nothing of which status is right, so a 403 is no status mismatch
    (None); v0.4 only skips a control's 5xx, so there it is a mismatch (False)."""
    response, control = _exchange(b"x" * 100, status=403), _control(status=404, length=5000)
    assert http_diff(response, control, (0, 5)).status_code_match is None
    assert http_diff(response, control, (0, 4)).status_code_match is False
    assert http_diff(_exchange(b"x", status=403), _control(status=503), (0, 5)).status_code_match is None
    assert http_diff(_exchange(b"x", status=403), _control(status=200), (0, 5)).status_code_match is False


def test_v05_http_diff_against_a_controls_404_has_the_lower_confidence() -> None:
    """The page differs from the control's and the control got a 404: an http.blockpage of confidence 0.5, not the
    0.6 of a status mismatch the control cannot vouch for."""
    m = WC().dns().fetch_ok(code=403, body=BLOCKPAGE).control(status=404).build()
    v = web_connectivity_verdict(m)
    assert ooni(v) == ("http-diff", False, "http.blockpage"), v
    assert v.confidence == 0.5
    m = WC().dns().fetch_ok(code=403, body=BLOCKPAGE).control(status=200).build()
    assert web_connectivity_verdict(m).confidence == 0.6  # a control's 2xx: a real mismatch


def test_is_diff_needs_the_same_status_and_one_more_match() -> None:
    """OONI's rule as the verdict uses it: same status plus body, headers or title."""
    assert HTTPDiff(0.9, True, True, None, None).is_diff is False
    assert HTTPDiff(0.9, True, None, None, None).is_diff is True
