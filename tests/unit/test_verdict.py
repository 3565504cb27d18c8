"""Unit tests for model.verdict: one small hand-built measurement per rule.

`WC` builds OONI-format web_connectivity measurements record by record, without
OONI's ``depth=``/``fetch_body=`` tags (as a probe other than OONI's may write
them), so these tests also exercise the inference of hops and fetch paths.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tamperscope.model.consistency import AddressJudge, observe
from tamperscope.model.verdict import (
    MECHANISMS,
    OONI_BLOCKING,
    Verdict,
    failure_class,
    web_connectivity_verdict,
)
from tamperscope.model.webparts import is_bogon

HOST = "www.example.com"
IP = "93.184.216.34"        # the site, AS15133
OTHER_IP = "93.184.216.99"  # same AS as the site (a sibling server)
CDN_IP = "5.5.5.5"          # a geo-CDN edge in another AS
FAKE_IP = "6.6.6.6"         # where a censor points people
PAGE = (
    "<!doctype html><html><head><title>Example Domain Landing Page</title></head><body>"
    + "<p>Lorem ipsum dolor sit amet.</p>" * 40
    + "</body></html>"
)
BLOCKPAGE = "<html><head><title>Access Denied</title></head><body>This site is blocked.</body></html>"
PAGE_HEADERS = {"Content-Type": "text/html", "Date": "Thu, 01 Jan 2026 00:00:00 GMT", "X-Site": "1"}
BLOCK_HEADERS = {"Content-Type": "text/html", "Connection": "close"}


class WC:
    """Builds one web_connectivity measurement; records are appended chronologically."""

    def __init__(self, url: str = f"http://{HOST}/", version: str = "0.5.28") -> None:
        self.url = url
        self.version = version
        self.queries: list[dict[str, Any]] = []
        self.late: list[dict[str, Any]] = []
        self.connects: list[dict[str, Any]] = []
        self.handshakes: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.control_data: dict[str, Any] | None = None
        self.control_failure: str | None = None
        self.extra: dict[str, Any] = {}
        self._tx = 0

    def _next_tx(self) -> int:
        self._tx += 1
        return self._tx

    def dns(self, host: str = HOST, addrs: Sequence[str] = (IP,), *, failure: str | None = None,
            engine: str = "getaddrinfo", qtype: str = "ANY", tx: int | None = None,
            asns: Mapping[str, int] | None = None, late: bool = False) -> WC:
        asns = asns or {IP: 15133, OTHER_IP: 15133, CDN_IP: 777, FAKE_IP: 666}
        answers = [
            {"answer_type": "AAAA" if ":" in a else "A", ("ipv6" if ":" in a else "ipv4"): a,
             **({"asn": asns[a]} if a in asns else {})}
            for a in addrs
        ]
        record = {"engine": engine, "resolver_address": "" if engine == "getaddrinfo" else "8.8.8.8:53",
                  "hostname": host, "query_type": qtype, "failure": failure,
                  "answers": answers or None, "transaction_id": tx if tx is not None else self._next_tx()}
        (self.late if late else self.queries).append(record)
        return self

    def connect(self, ip: str = IP, port: int = 80, failure: str | None = None, tx: int | None = None) -> WC:
        self.connects.append({"ip": ip, "port": port, "transaction_id": tx if tx is not None else self._next_tx(),
                              "status": {"success": failure is None, "failure": failure}})
        return self

    def tls(self, ip: str = IP, port: int = 443, sni: str = HOST, failure: str | None = None,
            tx: int | None = None) -> WC:
        self.handshakes.append({"address": f"{ip}:{port}", "server_name": sni, "failure": failure,
                                "no_tls_verify": False, "transaction_id": tx if tx is not None else self._next_tx()})
        return self

    def fetch(self, url: str | None = None, *, ip: str = IP, code: int = 200, body: str = PAGE,
              headers: Mapping[str, str] | None = None, failure: str | None = None,
              tx: int | None = None) -> WC:
        url = url or self.url
        port = 443 if url.startswith("https") else 80
        if headers is None:
            headers = BLOCK_HEADERS if body == BLOCKPAGE else PAGE_HEADERS
        headers = dict(headers)
        self.requests.append({
            "address": f"{ip}:{port}", "failure": failure,
            "transaction_id": tx if tx is not None else self._next_tx(),
            "request": {"url": url, "method": "GET", "headers": {"Host": HOST}},
            "response": {"code": code if failure is None or code else 0, "body": body if code else "",
                         "body_is_truncated": False, "headers": headers},
        })
        return self

    def fetch_ok(self, url: str | None = None, ip: str = IP, **kw: Any) -> WC:
        """Connect (+ TLS for https) + GET, all in one transaction."""
        url = url or self.url
        tx = self._next_tx()
        https = url.startswith("https")
        self.connect(ip, 443 if https else 80, tx=tx)
        if https:
            self.tls(ip, 443, sni=url.split("/")[2], tx=tx)
        return self.fetch(url, ip=ip, tx=tx, **kw)

    def control(self, addrs: Sequence[str] = (IP,), *, dns_failure: str | None = None,
                tcp: Mapping[str, str | None] | None = None, tls: Mapping[str, str | None] | None = None,
                http_failure: str | None = None, status: int = 200, body: str = PAGE,
                asns: Mapping[str, int] | None = None) -> WC:
        tcp = {f"{a}:{p}": None for a in addrs for p in (80, 443)} if tcp is None else tcp
        tls = {f"{a}:443": None for a in addrs} if tls is None else tls
        asns = {IP: 15133, OTHER_IP: 15133, CDN_IP: 777, FAKE_IP: 666} if asns is None else asns
        self.control_data = {
            "dns": {"failure": dns_failure, "addrs": list(addrs)},
            "tcp_connect": {k: {"status": v is None, "failure": v} for k, v in tcp.items()},
            "tls_handshake": {k: {"status": v is None, "failure": v, "server_name": HOST} for k, v in tls.items()},
            "http_request": {"failure": http_failure, "status_code": -1 if http_failure else status,
                             "body_length": -1 if http_failure else len(body.encode()),
                             "title": "" if http_failure else "Example Domain Landing Page",
                             "headers": {} if http_failure else dict(PAGE_HEADERS)},
            "ip_info": {a: {"asn": n} for a, n in asns.items()},
        }
        return self

    def build(self) -> dict[str, Any]:
        return {
            "input": self.url, "test_name": "web_connectivity", "test_version": self.version,
            "test_keys": {
                "queries": self.queries, "x_dns_duplicate_responses": self.late or None,
                "tcp_connect": self.connects, "tls_handshakes": self.handshakes,
                "requests": list(reversed(self.requests)),  # OONI lists the newest first
                "control": self.control_data, "control_failure": self.control_failure,
                "x_control_request": {"http_request": self.url}, **self.extra,
                # stale verdict fields that must be ignored
                "blocking": "tcp_ip", "accessible": False, "dns_consistency": "inconsistent",
            },
        }

    def verdict(self, matcher: Any = None) -> Verdict:
        return web_connectivity_verdict(self.build(), matcher)


def fake_matcher(body: str, headers: Mapping[str, str]) -> list[str]:
    out = []
    if "blocked" in body.lower():
        out.append("test_blockpage")
    if headers.get("X-Censor") == "yes":
        out.append("test_header")
    return out


def ooni(v: Verdict) -> tuple[object, object, str]:
    return (v.blocking, v.accessible, v.mechanism)


# --------------------------------------------------------------------------- the verdict type


def test_verdict_validates_and_serialises() -> None:
    v = Verdict("dns", False, "dns.poison", 0.9, "anomaly", ("test_keys.queries[0]",), ("fp",))
    assert v.to_test_keys() == {
        "blocking": "dns", "accessible": False, "x_mechanism": "dns.poison", "x_confidence": 0.9,
        "x_evidence": ["test_keys.queries[0]"], "x_fingerprints": ["fp"], "x_status": "anomaly",
    }
    with pytest.raises(ValueError):
        Verdict(False, True, "dns.bogus", 0.5, "ok")
    with pytest.raises(ValueError):
        Verdict(False, True, "none", 1.5, "ok")
    with pytest.raises(ValueError):
        Verdict(False, True, "none", 0.5, "fine")
    assert set(OONI_BLOCKING) == set(MECHANISMS)


@pytest.mark.parametrize("failure, expected", [
    (None, "ok"), ("generic_timeout_error", "timeout"), ("timed_out", "timeout"),
    ("connection_reset", "reset"), ("connection_refused", "refused"),
    ("connection_refused_error", "refused"), ("eof_error", "eof"),
    ("dns_nxdomain_error", "dns_nxdomain"), ("dns_name_error", "dns_nxdomain"),
    ("android_dns_cache_no_data", "dns_nxdomain"), ("dns_no_answer", "dns_no_answer"),
    ("dns_refused_error", "dns_error"), ("ssl_unknown_authority", "tls_cert"),
    ("ssl_invalid_hostname", "tls_cert"), ("ssl_failed_handshake", "tls_error"),
    ("host_unreachable", "unreachable"), ("http_invalid_redirect_location_host", "http_error"),
    ("unknown_failure: stopped after too many redirects", "unknown"),
])
def test_failure_class(failure: str | None, expected: str) -> None:
    assert failure_class(failure) == expected


@pytest.mark.parametrize("ip, bogon", [
    ("127.0.0.1", True), ("0.0.0.0", True), ("10.10.34.35", True), ("192.168.1.1", True),
    ("100.64.0.1", True), ("::1", True), ("fe80::1", True), ("::ffff:10.0.0.1", True),
    ("93.184.216.34", False), ("2606:2800:220:1:248:1893:25c8:1946", False), ("not-an-ip", False),
])
def test_bogons(ip: str, bogon: bool) -> None:
    assert is_bogon(ip) is bogon


def test_model_layer_is_pure() -> None:
    """verdict, consistency and their helpers import only the standard library and tamperscope.model."""
    root = Path(__file__).resolve().parents[2] / "src" / "tamperscope" / "model"
    banned = {"asyncio", "socket", "ssl", "subprocess", "os", "requests", "httpx"}
    for name in ("verdict.py", "consistency.py", "webparts.py", "frozen.py"):
        tree = ast.parse((root / name).read_text())
        for node in ast.walk(tree):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for module in modules:
                assert module.split(".")[0] not in banned, (name, module)
                if module.startswith("tamperscope"):
                    assert module.startswith("tamperscope.model"), (name, module)


# --------------------------------------------------------------------------- not blocked


def test_success_over_http_matches_the_control() -> None:
    v = WC().dns().fetch_ok().control().verdict()
    assert ooni(v) == (False, True, "none") and v.status == "ok" and v.confidence >= 0.8
    assert "test_keys.requests[0]" in v.evidence


def test_success_over_https_needs_no_comparison() -> None:
    v = WC(f"https://{HOST}/").dns().fetch_ok(body="whatever").control().verdict()
    assert ooni(v) == (False, True, "none") and v.confidence == 0.9


def test_stored_verdict_fields_are_ignored() -> None:
    m = WC().dns().fetch_ok().control().build()
    assert m["test_keys"]["blocking"] == "tcp_ip"
    assert web_connectivity_verdict(m).blocking is False


def test_website_down_when_the_control_fails_the_same_way() -> None:
    v = WC().dns(addrs=(), failure="dns_nxdomain_error").control(
        (), dns_failure="dns_name_error", http_failure="dns_lookup_error").verdict()
    assert ooni(v) == (False, False, "none") and v.status == "ok"
    v = WC().dns().connect(IP, 80, "connection_refused").control(
        tcp={f"{IP}:80": "connection_refused_error"}, http_failure="connection_refused_error").verdict()
    assert ooni(v) == (False, False, "none")


def test_tls_misconfiguration_seen_by_the_control_is_not_mitm() -> None:
    v = WC(f"https://{HOST}/").dns().connect(IP, 443).tls(failure="ssl_invalid_certificate").control(
        tls={f"{IP}:443": "ssl_invalid_certificate"}, http_failure="unknown_error").verdict()
    assert ooni(v) == (False, False, "none")


# --------------------------------------------------------------------------- DNS


def test_dns_injection_from_duplicate_responses() -> None:
    w = WC().dns(engine="udp", qtype="A", addrs=(FAKE_IP,), tx=77)
    w.dns(engine="udp", qtype="A", addrs=(IP,), tx=77, late=True)
    w.dns(addrs=(FAKE_IP,)).fetch_ok(ip=FAKE_IP, body=BLOCKPAGE).control()
    v = w.verdict()
    assert ooni(v) == ("dns", False, "dns.injection") and v.confidence == 0.95
    assert {"test_keys.queries[0]", "test_keys.x_dns_duplicate_responses[0]"} <= set(v.evidence)


def test_dns_injection_from_repeated_queries_entries() -> None:
    w = WC().dns(engine="udp", qtype="A", addrs=("10.10.34.35",), tx=9).dns(engine="udp", qtype="A", tx=9)
    v = w.control().verdict()
    assert ooni(v) == ("dns", False, "dns.injection")
    assert v.evidence[:2] == ("test_keys.queries[0]", "test_keys.queries[1]")


def test_late_inconsistent_duplicate_is_not_injection_when_the_first_answer_is_right() -> None:
    w = WC().dns(engine="udp", qtype="A", addrs=(IP,), tx=5)
    w.dns(engine="udp", qtype="A", addrs=(FAKE_IP,), tx=5, late=True)
    v = w.dns().fetch_ok().control().verdict()
    assert ooni(v) == (False, True, "none")


def test_dns_poison_not_in_control_addrs_nor_asn_nor_tls() -> None:
    v = WC().dns(addrs=(FAKE_IP,)).fetch_ok(ip=FAKE_IP, body=BLOCKPAGE).control().verdict()
    assert ooni(v) == ("dns", False, "dns.poison") and v.confidence == 0.9
    assert v.evidence == ("test_keys.queries[0]", "test_keys.control.dns")


@pytest.mark.parametrize("bogon", ["127.0.0.1", "0.0.0.0", "10.10.34.35", "192.168.0.1"])
def test_bogons_are_always_inconsistent(bogon: str) -> None:
    v = WC().dns(addrs=(bogon,)).connect(bogon, 80, "generic_timeout_error").control().verdict()
    assert ooni(v) == ("dns", False, "dns.poison") and v.confidence == 0.95


def test_bogon_the_control_also_resolved_is_a_misconfigured_site() -> None:
    v = WC().dns(addrs=("127.0.0.1",)).control(("127.0.0.1",), tcp={}, tls={},
                                               http_failure="unknown_error").verdict()
    assert ooni(v) == (False, False, "none")


def test_dns_nxdomain_while_the_control_resolves() -> None:
    v = WC().dns(addrs=(), failure="dns_nxdomain_error").control().verdict()
    assert ooni(v) == ("dns", False, "dns.nxdomain") and v.confidence == 0.9


def test_dns_drop_is_a_resolver_timeout() -> None:
    v = WC().dns(addrs=(), failure="generic_timeout_error").control().verdict()
    assert ooni(v) == ("dns", False, "dns.drop")


def test_aaaa_no_answer_and_doh_failures_are_not_blocking() -> None:
    w = WC().dns().dns(engine="udp", qtype="AAAA", addrs=(), failure="dns_no_answer")
    w.dns(engine="doh", qtype="A", addrs=(), failure="generic_timeout_error")
    assert ooni(w.fetch_ok().control().verdict()) == (False, True, "none")


def test_ghost_dns_local_answer_for_a_name_the_control_says_does_not_exist() -> None:
    v = WC().dns(addrs=(FAKE_IP,)).fetch_ok(ip=FAKE_IP, body=BLOCKPAGE).control(
        (), dns_failure="dns_name_error", tcp={}, tls={}, http_failure="dns_lookup_error").verdict()
    assert ooni(v) == ("dns", False, "dns.poison") and v.confidence == 0.8


# --------------------------------------------------------------------------- Geo/CDN differences


def test_geo_cdn_answer_validated_by_tls_is_not_dns_blocking() -> None:
    v = WC(f"https://{HOST}/").dns(addrs=(CDN_IP,)).fetch_ok(ip=CDN_IP).control().verdict()
    assert ooni(v) == (False, True, "none")


def test_geo_cdn_answer_validated_by_a_tls_side_check_for_an_http_url() -> None:
    w = WC().dns(addrs=(CDN_IP,)).fetch_ok(ip=CDN_IP).connect(CDN_IP, 443).tls(CDN_IP)
    assert ooni(w.control().verdict()) == (False, True, "none")


def test_geo_cdn_answer_in_the_same_asn_is_consistent() -> None:
    v = WC().dns(addrs=(OTHER_IP,)).fetch_ok(ip=OTHER_IP).control().verdict()
    assert ooni(v) == (False, True, "none")


def test_tls_with_the_wrong_sni_does_not_validate_an_address() -> None:
    w = WC().dns(addrs=(CDN_IP,)).fetch_ok(ip=CDN_IP, body=BLOCKPAGE).connect(CDN_IP, 443)
    w.tls(CDN_IP, sni="other.example.net")
    assert ooni(w.control().verdict()) == ("dns", False, "dns.poison")


def test_address_judge_uses_tls_only_in_v05() -> None:
    m = WC(f"https://{HOST}/").dns(addrs=(CDN_IP,)).fetch_ok(ip=CDN_IP).control().build()
    obs = observe(m)
    assert AddressJudge(obs, use_tls=True).consistent((CDN_IP,), HOST) is True
    assert AddressJudge(obs, use_tls=False).consistent((CDN_IP,), HOST) is False


def test_page_from_a_suspicious_address_equal_to_the_controls_is_accessible() -> None:
    """OONI's rule: an unvalidated answer is forgiven when the page it served is the right one."""
    v = WC().dns(addrs=(FAKE_IP,)).fetch_ok(ip=FAKE_IP).control().verdict()
    assert ooni(v) == (False, True, "none") and v.confidence == 0.6


# --------------------------------------------------------------------------- TCP, TLS, HTTP


def test_tcp_drop() -> None:
    v = WC().dns().connect(IP, 80, "generic_timeout_error").control().verdict()
    assert ooni(v) == ("tcp_ip", False, "tcp.drop")
    assert 'test_keys.control.tcp_connect["93.184.216.34:80"]' in v.evidence


@pytest.mark.parametrize("failure", ["connection_refused", "connection_reset"])
def test_tcp_rst(failure: str) -> None:
    v = WC().dns().connect(IP, 80, failure).control().verdict()
    assert ooni(v) == ("tcp_ip", False, "tcp.rst")


def test_ipv6_unreachable_is_the_probe_lacking_ipv6() -> None:
    v6 = "2606:2800:220:1:248:1893:25c8:1946"
    w = WC().dns(addrs=(IP, v6)).connect(v6, 80, "network_unreachable").fetch_ok()
    assert ooni(w.control((IP, v6)).verdict()) == (False, True, "none")


@pytest.mark.parametrize("failure, mechanism", [
    ("connection_reset", "tls.rst"), ("eof_error", "tls.rst"), ("generic_timeout_error", "tls.drop"),
    ("ssl_unknown_authority", "tls.mitm"), ("ssl_invalid_hostname", "tls.mitm"),
    ("ssl_invalid_certificate", "tls.mitm"),
])
def test_tls_failures(failure: str, mechanism: str) -> None:
    v = WC(f"https://{HOST}/").dns().connect(IP, 443).tls(failure=failure).control().verdict()
    assert ooni(v) == ("http-failure", False, mechanism)
    assert 'test_keys.control.tls_handshake["93.184.216.34:443"]' in v.evidence


@pytest.mark.parametrize("failure", ["connection_reset", "eof_error"])
def test_http_rst(failure: str) -> None:
    w = WC().dns().connect(IP, 80, tx=50).fetch(code=0, failure=failure, tx=50)
    assert ooni(w.control().verdict()) == ("http-failure", False, "http.rst")


def test_http_drop() -> None:
    w = WC().dns().connect(IP, 80, tx=50).fetch(code=0, failure="generic_timeout_error", tx=50)
    assert ooni(w.control().verdict()) == ("http-failure", False, "http.drop")


def test_http_blockpage_by_ooni_diff() -> None:
    v = WC().dns().fetch_ok(body=BLOCKPAGE, headers={"Content-Type": "text/html"}).control().verdict()
    assert ooni(v) == ("http-diff", False, "http.blockpage") and v.confidence == 0.5
    v = WC().dns().fetch_ok(code=403, body=BLOCKPAGE).control().verdict()
    assert ooni(v) == ("http-diff", False, "http.blockpage") and v.confidence == 0.6


def test_a_fingerprint_in_the_controls_own_page_is_the_sites_text() -> None:
    """Same status, length, title and headers as the control's page: no OONI diff, and the control fetched it from
    outside: what a fingerprint finds in it is the site's own text. (It was a blockpage at 0.95, the fingerprint's
    name its equipment: QA found product reviews and news pages named as vendors' blockpages.)"""
    page = PAGE.replace("Lorem", "blocked", 1)
    w = WC().dns().fetch_ok(body=page).control()
    assert ooni(w.verdict()) == (False, True, "none")
    v = w.verdict(fake_matcher)
    assert ooni(v) == (False, True, "none") and v.fingerprints == ()


def test_fingerprint_match_forces_blockpage_where_only_the_title_differs() -> None:
    """As long as the site's page, under another title: no OONI diff (the length and headers match), but no
    likeness to forgive it either: the fingerprint decides."""
    page = PAGE.replace("Example Domain Landing Page", "Blocked Domain Landing Page").replace("Lorem", "Loren", 1)
    assert len(page) == len(PAGE)
    w = WC().dns().fetch_ok(body=page).control()
    assert ooni(w.verdict()) == (False, True, "none")
    v = w.verdict(fake_matcher)
    assert ooni(v) == ("http-diff", False, "http.blockpage")
    assert v.confidence == 0.95 and v.fingerprints == ("test_blockpage",)
    assert v.evidence == ("test_keys.requests[0]",)


def test_fingerprint_on_headers_and_without_control() -> None:
    w = WC().dns().fetch_ok(headers={"X-Censor": "yes"})
    w.control_failure = "connection_reset"
    v = w.verdict(fake_matcher)
    assert ooni(v) == ("http-diff", False, "http.blockpage") and v.fingerprints == ("test_header",)


def test_fingerprints_are_reported_when_dns_decides() -> None:
    v = WC().dns(addrs=(FAKE_IP,)).fetch_ok(ip=FAKE_IP, body=BLOCKPAGE).control().verdict(fake_matcher)
    assert ooni(v) == ("dns", False, "dns.poison") and v.fingerprints == ("test_blockpage",)


# --------------------------------------------------------------------------- precedence


def test_dns_decides_before_tcp() -> None:
    v = WC().dns(addrs=(FAKE_IP,)).connect(FAKE_IP, 80, "generic_timeout_error").control().verdict()
    assert v.mechanism == "dns.poison"


def test_tcp_decides_before_tls_and_http() -> None:
    w = WC(f"https://{HOST}/").dns(addrs=(IP, OTHER_IP)).connect(OTHER_IP, 443, "connection_refused")
    w.connect(IP, 443, tx=40).tls(IP, failure="connection_reset", tx=40)
    v = w.control((IP, OTHER_IP)).verdict()
    assert ooni(v) == ("tcp_ip", False, "tcp.rst")


def test_tls_decides_before_http() -> None:
    w = WC(f"https://{HOST}/").dns(addrs=(IP, OTHER_IP))
    w.connect(IP, 443, tx=40).tls(IP, tx=40).fetch(ip=IP, code=0, failure="connection_reset", tx=40)
    w.connect(OTHER_IP, 443, tx=41).tls(OTHER_IP, failure="generic_timeout_error", tx=41)
    assert w.control((IP, OTHER_IP)).verdict().mechanism == "tls.drop"


def test_a_fetched_page_wins_over_failures_of_other_endpoints() -> None:
    w = WC(f"https://{HOST}/").dns(addrs=(IP, OTHER_IP)).connect(OTHER_IP, 443, "generic_timeout_error")
    assert ooni(w.fetch_ok().control((IP, OTHER_IP)).verdict()) == (False, True, "none")


def test_side_check_failures_do_not_decide_when_the_fetch_path_failed() -> None:
    w = WC().dns().connect(IP, 443).tls(failure="connection_reset")            # 443 side check
    w.connect(IP, 80, tx=60).fetch(code=0, failure="eof_error", tx=60)         # the fetch
    assert w.control().verdict().mechanism == "http.rst"


# --------------------------------------------------------------------------- redirects


def redirecting(first: str, target: str) -> WC:
    """The input URL answers with a redirect to `target`."""
    return WC(first).dns(HOST).fetch_ok(first, code=302, body="",
                                        headers={"Location": target, "Content-Type": "text/html"})


def test_redirect_then_connection_refused_on_the_next_hop() -> None:
    w = redirecting(f"https://{HOST}/", "http://blocked.example.org/")
    w.dns("blocked.example.org", (OTHER_IP,)).connect(OTHER_IP, 80, "connection_refused")
    v = w.control().verdict()
    # No per-endpoint control for a redirect hop: OONI calls this http-failure.
    assert ooni(v) == ("http-failure", False, "tcp.rst")
    assert v.evidence[0] == "test_keys.tcp_connect[1]" and v.confidence == 0.75


def test_redirect_then_tls_reset_on_the_next_hop() -> None:
    w = redirecting(f"http://{HOST}/", "https://blocked.example.org/")
    w.dns("blocked.example.org", (OTHER_IP,)).connect(OTHER_IP, 443, tx=70)
    w.tls(OTHER_IP, sni="blocked.example.org", failure="connection_reset", tx=70)
    assert ooni(w.control().verdict()) == ("http-failure", False, "tls.rst")


def test_redirect_then_nxdomain_on_the_next_hop() -> None:
    w = redirecting(f"https://{HOST}/", "https://blocked.example.org/")
    w.dns("blocked.example.org", (), failure="dns_nxdomain_error")
    assert ooni(w.control().verdict()) == ("dns", False, "dns.nxdomain")


def test_redirect_to_a_page_that_is_fine() -> None:
    w = redirecting(f"http://{HOST}/", f"https://{HOST}/")
    w.fetch_ok(f"https://{HOST}/", body="different but over TLS")
    assert ooni(w.control().verdict()) == (False, True, "none")


def test_redirect_to_a_blockpage_host() -> None:
    w = redirecting(f"http://{HOST}/", "http://warning.isp.example/")
    w.dns("warning.isp.example", (FAKE_IP,)).fetch_ok("http://warning.isp.example/", ip=FAKE_IP, body=BLOCKPAGE)
    v = w.control().verdict(fake_matcher)
    assert ooni(v) == ("http-diff", False, "http.blockpage") and v.evidence == ("test_keys.requests[0]",)


def test_redirect_hops_are_judged_with_ooni_tags_too() -> None:
    m = redirecting(f"https://{HOST}/", "http://blocked.example.org/")
    m.dns("blocked.example.org", (OTHER_IP,)).connect(OTHER_IP, 80, "connection_refused")
    built = m.control().build()
    tk = built["test_keys"]
    for record, depth in [(tk["queries"][0], 0), (tk["queries"][1], 1), (tk["tcp_connect"][0], 0),
                          (tk["tcp_connect"][1], 1), (tk["tls_handshakes"][0], 0), (tk["requests"][0], 0)]:
        record["tags"] = [f"depth={depth}", "fetch_body=true"]
    assert ooni(web_connectivity_verdict(built)) == ("http-failure", False, "tcp.rst")


# --------------------------------------------------------------------------- control failures


def test_control_failure_with_http_cannot_tell() -> None:
    w = WC().dns().fetch_ok()
    w.control_failure = "connection_reset"
    v = w.verdict()
    assert (v.blocking, v.accessible, v.status, v.confidence) == (None, None, "failure", 0.0)


def test_control_failure_with_https_success_is_accessible() -> None:
    w = WC(f"https://{HOST}/").dns().fetch_ok()
    w.control_failure = "generic_timeout_error"
    assert ooni(w.verdict()) == (False, True, "none")


def test_control_failure_with_a_bogon_is_still_dns() -> None:
    w = WC().dns(addrs=("127.0.0.1",))
    w.control_failure = "connection_reset"
    assert ooni(w.verdict()) == ("dns", False, "dns.poison")


def test_control_failure_with_conflicting_duplicates_is_injection() -> None:
    w = WC().dns(engine="udp", qtype="A", addrs=(FAKE_IP,), tx=3)
    w.dns(engine="udp", qtype="A", addrs=(IP,), tx=3, late=True)
    w.control_failure = "connection_reset"
    v = w.verdict()
    assert ooni(v) == ("dns", False, "dns.injection") and v.confidence == 0.7


def test_control_http_failure_cannot_compare_a_cleartext_page() -> None:
    v = WC().dns().fetch_ok().control(http_failure="generic_timeout_error").verdict()
    assert (v.blocking, v.accessible, v.status) == (None, None, "failure")


# --------------------------------------------------------------------------- throttling, middleboxes


def test_x_throttle_on_a_successful_fetch() -> None:
    w = WC().dns().fetch_ok().control()
    w.extra["x_throttle"] = {"throttled": True, "confidence": 0.85}
    v = w.verdict()
    assert ooni(v) == (False, True, "throttle") and v.status == "anomaly" and v.confidence == 0.85
    assert v.evidence[-1] == "test_keys.x_throttle"


def test_x_throttle_not_throttled_changes_nothing() -> None:
    w = WC().dns().fetch_ok().control()
    w.extra["x_throttle"] = {"throttled": False}
    assert w.verdict().mechanism == "none"


def test_stalled_body_looks_like_throttling() -> None:
    w = WC().dns().connect(IP, 80, tx=8).fetch(code=200, body="", failure="generic_timeout_error", tx=8)
    v = w.control().verdict()
    assert ooni(v) == ("http-failure", False, "throttle") and v.confidence == 0.5
    w.extra["x_throttle"] = {"throttled": True}
    assert w.verdict().confidence == 0.8


def test_middlebox_only_when_nothing_else_decided() -> None:
    w = WC().dns().fetch_ok().control()
    w.extra["x_middlebox_tampering"] = True
    v = w.verdict()
    assert ooni(v) == (False, True, "middlebox") and v.status == "anomaly"
    w = WC().dns(addrs=(), failure="dns_nxdomain_error").control()
    w.extra["x_middlebox_tampering"] = True
    assert w.verdict().mechanism == "dns.nxdomain"


def test_quic_drop_when_http3_times_out_but_tcp_works() -> None:
    w = WC(f"https://{HOST}/").dns().fetch_ok().control()
    w.extra["quic_handshakes"] = [{"address": f"{IP}:443", "failure": "generic_timeout_error"}]
    assert w.verdict().mechanism == "none"  # no control QUIC data: cannot say
    w.control_data = dict(w.control_data or {}, quic_handshake={f"{IP}:443": {"status": True, "failure": None}})
    v = w.verdict()
    assert ooni(v) == (False, True, "quic.drop")


# --------------------------------------------------------------------------- v0.4 rules


def test_v04_has_no_tls_validation() -> None:
    w = WC(version="0.4.3").dns(addrs=(CDN_IP,)).fetch_ok(ip=CDN_IP).connect(CDN_IP, 443).tls(CDN_IP)
    assert ooni(w.control().verdict()) == ("dns", False, "dns.poison")
    w.version = "0.5.28"
    assert ooni(w.verdict()) == (False, True, "none")


def test_v04_same_asn_is_consistent() -> None:
    w = WC(version="0.4.3").dns(addrs=(OTHER_IP,)).fetch_ok(ip=OTHER_IP)
    assert ooni(w.control().verdict()) == (False, True, "none")


def test_v04_https_success_comes_first() -> None:
    w = WC(f"https://{HOST}/", version="0.4.3").dns(addrs=(FAKE_IP,)).fetch_ok(ip=FAKE_IP)
    assert ooni(w.control().verdict()) == (False, True, "none")


def test_v04_request_failure_names_its_step() -> None:
    w = WC(f"https://{HOST}/", version="0.4.3").dns().connect(IP, 443).tls(failure="connection_reset")
    w.fetch(code=0, failure="connection_reset")
    assert ooni(w.control().verdict()) == ("http-failure", False, "tls.rst")
    w = WC(version="0.4.3").dns().connect(IP, 80).fetch(code=0, failure="generic_timeout_error")
    assert ooni(w.control().verdict()) == ("http-failure", False, "http.drop")


def test_v04_all_connects_failed_is_tcp_ip() -> None:
    w = WC(version="0.4.3").dns().connect(IP, 80, "generic_timeout_error").fetch(code=0, failure="generic_timeout_error")
    assert ooni(w.control().verdict()) == ("tcp_ip", False, "tcp.drop")


def test_requests_in_chronological_order_are_understood() -> None:
    """A probe may list the chain oldest first; the input may lack the trailing slash."""
    w = WC(f"http://{HOST}")
    w.dns().fetch_ok(f"http://{HOST}/", code=301, body="",
                     headers={"Location": "http://blocked.example.org/", "Content-Type": "text/html"})
    w.dns("blocked.example.org", (OTHER_IP,)).connect(OTHER_IP, 80, tx=90)
    w.fetch("http://blocked.example.org/", ip=OTHER_IP, code=0, failure="connection_reset", tx=90)
    m = w.control().build()
    m["test_keys"]["requests"].reverse()  # oldest first
    v = web_connectivity_verdict(m)
    assert ooni(v) == ("http-failure", False, "http.rst") and v.evidence[0] == "test_keys.requests[1]"


# --------------------------------------------------------------------------- speed-ups keep results


def test_memoised_helpers_agree_with_the_uncached_definitions() -> None:
    """The string-keyed memos and the ASCII fast path of IDNA must not change any answer."""
    import dataclasses
    import ipaddress
    import pickle

    from tamperscope.model import consistency as c
    from tamperscope.model import webparts as w

    for value in ("1.2.3.4", "010.0.0.1", "1.2.3.4\n", "256.1.1.1", "::ffff:127.0.0.1", "fe80::1%eth0",
                  "198.19.0.1", "2001:db8::1", "", "host", "١.٢.٣.٤"):
        try:
            ipaddress.ip_address(value)
            expected = True
        except ValueError:
            expected = False
        assert w.is_ip(value) is expected, value
        assert w.is_bogon(value) is w._is_bogon.__wrapped__(value), value
    for name in ("www.Example.COM.", " a.b ", "x" * 64 + ".com", "a..b", "münchen.de", "K.com", "☃.net", ""):
        stripped = name.strip().rstrip(".").lower()
        try:
            expected_name = stripped.encode("idna").decode("ascii")
        except UnicodeError:
            expected_name = stripped
        assert w.idna_host(name) == expected_name, name
    # Records built by the one-step __init__ behave like any frozen dataclass.
    q = c.Query("p", "udp", "", "h", "A", 1, None, ("1.2.3.4",), 0, False)
    same = c.Query(pointer="p", engine="udp", resolver="", hostname="h", query_type="A", transaction_id=1,
                   failure=None, addrs=("1.2.3.4",), depth=0, late=False)
    assert q == same and hash(q) == hash(same) and q.key == ("udp", "", "h", "A", 1)
    assert pickle.loads(pickle.dumps(q)) == q and dataclasses.replace(q, depth=2).depth == 2
    assert repr(q).startswith("Query(pointer='p'")
    with pytest.raises(dataclasses.FrozenInstanceError):
        q.depth = 3  # type: ignore[misc]
    with pytest.raises(ValueError):
        Verdict(False, True, "no-such-mechanism", 0.5, "ok")
    assert Verdict(False, True, "none", 0.5, "ok").evidence == ()


def test_observe_is_the_same_with_cold_and_warm_memos() -> None:
    from tamperscope.model import consistency as c
    from tamperscope.model import webparts as w

    m = WC().dns().dns(HOST, (FAKE_IP,), engine="udp").fetch_ok().control().build()
    warm = observe(m)
    for memo in (w.url_parts, w.url_host, w.url_port, w.url_scheme, w.join_url, w._is_ip, w._is_bogon,
                 w._idna_encode, w.split_endpoint, c._same_url, c._parse_tags, c._normal_endpoint_of,
                 w._parse_version):
        memo.cache_clear()
    cold = observe(m)
    assert cold == warm and web_connectivity_verdict(m) == verdict_from_cold(m)


def verdict_from_cold(m: Mapping[str, Any]) -> Verdict:
    from tamperscope.model.failures import _failure_class
    from tamperscope.model.verdict import _index, verdict_from

    _failure_class.cache_clear()
    _index.cache_clear()
    return verdict_from(observe(m), m)


@pytest.mark.parametrize("bad", ["http://[::1", "https://[zz::/x", "http://[::1]:99999/"])
def test_an_unparsable_url_in_a_hostile_measurement_gets_a_verdict_not_an_exception(bad: str) -> None:
    """urlsplit raises on these; the verdict must still come out (it used to raise ValueError)."""
    import json

    sample = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"
    m = json.loads((sample / "dnsBlockingNXDOMAIN" / "measurement.json").read_text())
    m["input"] = bad
    for r in m["test_keys"].get("requests") or []:
        r["request"]["url"] = bad
        (r.get("response") or {}).setdefault("headers", {})["Location"] = bad
    m["test_keys"]["x_control_request"] = {"http_request": bad}
    v = web_connectivity_verdict(m)
    assert isinstance(v, Verdict) and v.mechanism in MECHANISMS


def test_quic_handshake_with_an_innocent_name_is_not_evidence_of_a_drop() -> None:
    """The probe's check with an innocent SNI (tagged) does not count as a dropped handshake of the site."""
    w = WC(f"https://{HOST}/").dns().fetch_ok().control()
    w.control_data = dict(w.control_data or {}, quic_handshake={f"{IP}:443": {"status": True, "failure": None}})
    w.extra["quic_handshakes"] = [{"address": f"{IP}:443", "failure": "generic_timeout_error",
                                   "tags": ["depth=0", "x_innocent_sni"]}]
    assert w.verdict().mechanism == "none"
    w.extra["quic_handshakes"].insert(0, {"address": f"{IP}:443", "failure": "generic_timeout_error",
                                          "tags": ["depth=0"]})
    v = w.verdict()
    assert v.mechanism == "quic.drop" and "test_keys.quic_handshakes[1]" not in v.evidence


@pytest.mark.parametrize("record,done", [
    ({"failure": None}, True),
    ({"failure": "ssl_invalid_hostname", "negotiated_protocol": "h3"}, True),  # answered in full, another name
    ({"failure": "ssl_failed_handshake", "negotiated_protocol": ""}, False),  # an alert anyone could forge
    ({"failure": "generic_timeout_error"}, False),
    ({"failure": ["ssl_x"], "negotiated_protocol": "h3"}, False),
])
def test_a_quic_handshake_completed_whatever_its_certificate(record: dict, done: bool) -> None:
    from tamperscope.model.verdict import quic_completed

    assert quic_completed(record) is done
