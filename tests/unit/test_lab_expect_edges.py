"""`lab expect` at its edges: rule directions and ports, redirect hops, the AAAA drop of a missing name, the first
throttle met, HTTP/3 on the first hop only, the freeze's overhead and the longest redirect chain the probe follows.

Each case is what a correct probe concludes under the lab's own censor; a wrong prediction makes `lab expect`
grade a correct probe as wrong.
"""

from __future__ import annotations

from pathlib import Path

from tamperscope.lab import blockpages, expect, farm
from tamperscope.model.profile import Profile, parse_profile


def _profile(tmp_path: Path, rules: str) -> Profile:
    return parse_profile('name = "x"\n' + rules, source="x.toml", base=tmp_path, builtin_pages=blockpages.names())


def _said(profile: Profile, url: str) -> tuple[str, str, str | None]:
    e = expect.expect_url(profile, url)
    return e.blocking, e.mechanism, e.rule


def test_an_ingress_only_ip_rule_does_not_block_the_probe_s_connections(tmp_path: Path) -> None:
    """The probe's connections are egress: a rule for connections begun from the internet is not met."""
    rule = '[[rule]]\nid = "ip"\nlayer = "ip"\naction = "drop"\ndomains = ["a.org"]\n'
    assert _said(_profile(tmp_path, rule), "https://a.org/") == ("tcp_ip", "tcp.drop", "ip")
    inbound = _profile(tmp_path, rule + 'direction = "ingress"\n')
    assert _said(inbound, "https://a.org/") == ("false", "none", None)


def test_an_ip_rule_with_ports_blocks_those_ports_only(tmp_path: Path) -> None:
    """An ip rule for port 443 leaves the same address's port 80 alone, as the censor does."""
    p = _profile(tmp_path, '[[rule]]\nid = "ip443"\nlayer = "ip"\naction = "rst"\ndomains = ["a.org"]\n'
                           'ports = [443]\n')
    assert _said(p, "https://a.org/") == ("tcp_ip", "tcp.rst", "ip443")
    assert _said(p, "http://a.org/") == ("false", "none", None)


def test_an_ip_block_met_after_a_redirect_is_an_http_failure(tmp_path: Path) -> None:
    """OONI calls a connect failure on a redirect hop http-failure, not tcp_ip (the first hop connected)."""
    p = _profile(tmp_path, '[[rule]]\nid = "ip"\nlayer = "ip"\naction = "drop"\ndomains = ["a.org"]\n')
    assert farm.redirect_for("https", "redirect.a.org", "/") == "https://a.org/"
    e = expect.expect_url(p, "https://redirect.a.org/")
    assert (e.blocking, e.mechanism, e.rule, e.host) == ("http-failure", "tcp.drop", "ip", "a.org")


def test_an_aaaa_drop_says_nothing_for_a_name_that_does_not_exist(tmp_path: Path) -> None:
    """A missing name is NXDOMAIN for the probe and its control alike: no blocking, though the AAAA drop rule
    names it; a name that exists fails its lookup (dns.drop)."""
    p = _profile(tmp_path, '[[rule]]\nid = "no-aaaa"\nlayer = "dns"\naction = "drop"\ndomains = ["blocked.org"]\n'
                           'suffix = true\nqtypes = ["AAAA"]\n')
    assert farm.is_nxdomain("nx.blocked.org")
    assert _said(p, "http://nx.blocked.org/") == ("false", "none", None)
    assert _said(p, "http://www.blocked.org/") == ("dns", "dns.drop", "no-aaaa")


def test_the_throttle_named_is_the_first_one_met_on_the_redirect_path(tmp_path: Path) -> None:
    """Both hops are throttled by different rules: the first hop's rule is the one the probe meets first."""
    p = _profile(tmp_path, '[[rule]]\nid = "slow-1"\nlayer = "tls"\naction = "throttle"\nrate_kbps = 100\n'
                           'domains = ["redirect.a.org"]\n'
                           '[[rule]]\nid = "slow-2"\nlayer = "tls"\naction = "throttle"\nrate_kbps = 100\n'
                           'domains = ["a.org"]\n')
    assert _said(p, "https://redirect.a.org/") == ("false", "throttle", "slow-1")
    assert _said(p, "https://a.org/") == ("false", "throttle", "slow-2")


def test_http3_is_tried_for_the_url_itself_not_for_a_redirect_s_target(tmp_path: Path) -> None:
    """The probe tries HTTP/3 for its URL only: a quic drop of the redirect's target is not met."""
    p = _profile(tmp_path, '[[rule]]\nid = "h3"\nlayer = "quic"\naction = "drop"\ndomains = ["a.org"]\n')
    assert _said(p, "https://a.org/") == ("false", "quic.drop", "h3")
    assert _said(p, "https://redirect.a.org/") == ("false", "none", None)


def test_an_ingress_only_quic_rule_is_not_met(tmp_path: Path) -> None:
    """The probe's HTTP/3 is egress: a quic rule for traffic begun from the internet does not drop it."""
    p = _profile(tmp_path, '[[rule]]\nid = "h3"\nlayer = "quic"\naction = "drop"\ndomains = ["a.org"]\n'
                           'direction = "ingress"\n')
    assert _said(p, "https://a.org/") == ("false", "none", None)


def test_a_quic_sni_rule_never_matches_a_url_by_ip_address(tmp_path: Path) -> None:
    """A URL by address sends no SNI, in QUIC as in TLS: a sni-drop regex that the address text matches does not
    drop it."""
    p = _profile(tmp_path, '[[rule]]\nid = "sni"\nlayer = "quic"\naction = "sni-drop"\nregex = "198"\n')
    assert farm.speaks_h3("198.19.0.6", p)
    assert _said(p, "https://198.19.0.6/") == ("false", "none", None)


def test_the_https_overhead_counts_toward_the_freeze_cap(tmp_path: Path) -> None:
    """Over https the server sends about 2 KB beside the body (handshake, records, frames): a page 1 KB under the
    cap is frozen over https, and not over http, whose overhead is a response head."""
    size = len(farm.page("a.org"))
    assert farm.redirect_for("http", "a.org", "/") is None and size % 1024 < 500
    after_kb = size // 1024 + 1  # the cap is 524-1,024 bytes past the body
    p = _profile(tmp_path, f'[[rule]]\nid = "frz"\nlayer = "ip"\naction = "freeze"\ndomains = ["a.org"]\n'
                           f'after_kb = {after_kb}\n')
    rule = p.rules_for("ip")[0]
    assert expect.freezes(rule, "https", "a.org", "/") and not expect.freezes(rule, "http", "a.org", "/")
    assert _said(p, "https://a.org/") == ("http-failure", "tcp.freeze", "frz")
    assert _said(p, "http://a.org/") == ("false", "none", None)


def test_a_block_after_the_longest_redirect_chain_the_probe_follows_is_met(tmp_path: Path) -> None:
    """The probe follows MAX_REDIRECT_HOPS redirects, so the host at the end of a chain that long is reached and
    its tls rule decides."""
    p = _profile(tmp_path, '[[rule]]\nid = "tls"\nlayer = "tls"\naction = "rst"\ndomains = ["a.org"]\n')
    url = "https://" + "redirect." * farm.MAX_REDIRECT_HOPS + "a.org/"
    e = expect.expect_url(p, url)
    assert (e.blocking, e.mechanism, e.rule, e.host) == ("http-failure", "tls.rst", "tls", "a.org")
