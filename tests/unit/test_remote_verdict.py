"""Unit tests for model/remote.py: the verdicts of remote_dns and remote_web, one rule at a time.

Measurements are built by hand, record by record, in the exact archival shapes the nettests write
(netx/trace.py's ``dns_record`` and ``add_tcp_connect``, netx/tls.py's and netx/http.py's ``_record``),
each record carrying its role in ``tags`` and the ``transaction_id`` of its connection or lookup.
Every verdict checked here also has its ``evidence`` pointers resolved against the measurement.
Then hostile input: every field of a rich measurement replaced by values of the wrong type.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from tamperscope.model.remote import remote_dns_verdict, remote_web_verdict
from tamperscope.model.verdict import MECHANISMS, Verdict

DOMAIN = "blocked.example"
CONTROL_DOMAIN = "example.org"
CONTROL_DOMAIN_IP = "96.7.128.175"
VANTAGE = "85.15.1.1"          # the in-country resolver / web server
TRUSTED = "8.8.8.8:53"         # the trusted resolver outside
SITE = "93.184.216.34"         # the domain's address, as the control resolves it (AS15133)
SIBLING = "93.184.216.35"      # another server of the same AS (a CDN's other edge)
ELSEWHERE = "104.18.0.7"       # a public address in another AS (AS13335)
BOGON = "127.0.0.1"
SITE_ASN, ELSEWHERE_ASN = 15133, 13335
BLOCKPAGE = "<html><head><title>Access Denied</title></head><body>Blocked by order of the court</body></html>"
PAGE = "<html><head><title>Default site</title></head><body>It works!</body></html>"


def matcher(body: str, headers: Mapping[str, str]) -> list[str]:
    """A fake fingerprint database: keeps to the BlockpageMatcher contract (str body, str headers)."""
    assert isinstance(body, str), body
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()), headers
    found = []
    if "Blocked by order" in body:
        found.append("fp_court")
    if headers.get("Server") == "CensorGate":
        found.append("fp_gate")
    return found


# --------------------------------------------------------------------------- pointers


_POINTER = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)$")


def resolve(measurement: Mapping[str, Any], pointer: str) -> Any:
    """The value a pointer like ``test_keys.queries[1]`` names; KeyError/IndexError when there is none."""
    node: Any = measurement
    for part in pointer.split("."):
        match = _POINTER.match(part)
        assert match, f"malformed pointer {pointer!r}"
        if not isinstance(node, Mapping):
            raise KeyError(pointer)
        node = node[match.group(1)]
        for index in re.findall(r"\[(\d+)\]", match.group(2)):
            if not isinstance(node, list):
                raise IndexError(pointer)
            node = node[int(index)]
    return node


def checked(verdict: Verdict, measurement: Mapping[str, Any]) -> Verdict:
    """The verdict, after checking that it is well formed and that every pointer names a record."""
    assert isinstance(verdict, Verdict)
    assert verdict.mechanism in MECHANISMS
    assert 0.0 <= verdict.confidence <= 1.0
    assert len(set(verdict.evidence)) == len(verdict.evidence), verdict.evidence
    for pointer in verdict.evidence:
        target = resolve(measurement, pointer)
        if "[" in pointer:
            assert isinstance(target, Mapping), (pointer, target)  # an indexed pointer names a record
    return verdict


def pointers(measurement: Mapping[str, Any], field: str, **match: Any) -> list[str]:
    """Pointers of the records of ``test_keys[field]`` whose fields equal ``match`` (tags: a subset)."""
    out = []
    for i, record in enumerate(measurement["test_keys"][field]):
        if all(set(v) <= set(record.get(k) or ()) if k == "tags" else record.get(k) == v for k, v in match.items()):
            out.append(f"test_keys.{field}[{i}]")
    return out


# --------------------------------------------------------------------------- remote_dns measurements


def dns_answer(ip: str) -> dict[str, Any]:
    if ":" in ip:
        return {"answer_type": "AAAA", "ipv6": ip, "ttl": 300}
    return {"answer_type": "A", "ipv4": ip, "ttl": 300}


class DNS:
    """A remote_dns measurement, record by record (netx/trace.py's ``dns_record`` shape)."""

    def __init__(self) -> None:
        self._tid = 0
        self._t = 0.0
        self.queries: list[dict[str, Any]] = []
        self.duplicates: list[dict[str, Any]] = []
        self.tcp_connect: list[dict[str, Any]] = []
        self.tls_handshakes: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.asn: dict[str, int] = {}

    def _next(self) -> tuple[int, float]:
        self._tid += 1
        self._t += 0.05
        return self._tid, self._t

    @staticmethod
    def _record(role: str, tid: int, t0: float, ips: Sequence[str], failure: str | None, rcode: int | None,
                hostname: str, resolver: str) -> dict[str, Any]:
        record: dict[str, Any] = {
            "answers": [dns_answer(ip) for ip in ips] or None, "engine": "udp", "failure": failure,
            "hostname": hostname, "query_type": "A", "resolver_address": resolver,
            "resolver_hostname": None, "resolver_port": None, "t0": t0, "t": t0 + 0.03,
            "tags": [role], "transaction_id": tid,
        }
        if rcode:  # OONI omits a NOERROR rcode
            record["rcode"] = rcode
        return record

    def query(self, role: str, *ips: str, failure: str | None = None, rcode: int | None = None) -> int:
        """One lookup; returns its transaction id. Roles before/after ask the control domain of the vantage,
        control asks the domain of the trusted resolver, test asks the domain of the vantage."""
        tid, t0 = self._next()
        hostname = CONTROL_DOMAIN if role in ("vantage_before", "vantage_after") else DOMAIN
        resolver = TRUSTED if role == "control" else f"{VANTAGE}:53"
        if not ips and failure is None:
            failure = "dns_no_answer"  # what netx/dns.py writes for NOERROR without addresses
        self.queries.append(self._record(role, tid, t0, ips, failure, rcode, hostname, resolver))
        return tid

    def before(self, ok: bool = True) -> DNS:
        if ok:
            self.query("vantage_before", CONTROL_DOMAIN_IP)
        else:
            self.query("vantage_before", failure="generic_timeout_error")
        return self

    def after(self, ok: bool = True) -> DNS:
        if ok:
            self.query("vantage_after", CONTROL_DOMAIN_IP)
        else:
            self.query("vantage_after", failure="generic_timeout_error")
        return self

    def control(self, *ips: str, failure: str | None = None, rcode: int | None = None) -> DNS:
        self.query("control", *(ips or (() if failure else (SITE,))), failure=failure, rcode=rcode)
        return self

    def test(self, *ips: str, failure: str | None = None, rcode: int | None = None) -> int:
        return self.query("test", *ips, failure=failure, rcode=rcode)

    def timeout(self, n: int = 1) -> DNS:
        for _ in range(n):
            self.test(failure="generic_timeout_error")
        return self

    def late(self, tid: int, *ips: str) -> DNS:
        """A later answer to the lookup ``tid`` (x_dns_duplicate_responses, same shape and tags)."""
        first = next(q for q in self.queries if q["transaction_id"] == tid)
        self._t += 0.05
        self.duplicates.append(self._record(first["tags"][0], tid, first["t0"], ips, None, None,
                                            first["hostname"], first["resolver_address"]))
        return self

    def validate_tls(self, ip: str, *, failure: str | None = None, verified: bool | None = None,
                     tags: Sequence[str] = ("validate",), no_tls_verify: bool = False) -> DNS:
        """netx/tls.py's record of the handshake to ip:443 with the domain as SNI, verified against the store."""
        tid, t0 = self._next()
        self.tcp_connect.append({"ip": ip, "port": 443, "status": {"failure": None, "success": True},
                                 "t0": t0, "t": t0 + 0.02, "tags": list(tags), "transaction_id": tid})
        ok = failure is None
        self.tls_handshakes.append({
            "network": "tcp", "address": f"{ip}:443", "cipher_suite": "TLS_AES_128_GCM_SHA256" if ok else "",
            "failure": failure, "negotiated_protocol": "http/1.1" if ok else "", "no_tls_verify": no_tls_verify,
            "peer_certificates": [{"format": "base64", "data": "MIIB"}] if ok else None,
            "server_name": DOMAIN, "t0": t0 + 0.02, "t": t0 + 0.04, "tags": list(tags),
            "tls_version": "TLSv1.3" if ok else "", "transaction_id": tid,
            "x_verified": ok if verified is None else verified, "x_issuer": None, "x_spki_sha256": None,
        })
        return self

    def validate_http(self, ip: str, body: str, headers: Sequence[tuple[str, str]] = (),
                      tags: Sequence[str] = ("validate",)) -> DNS:
        """The handshake failed; then netx/http.py's record of GET http://domain/ from ip:80."""
        self.validate_tls(ip, failure="ssl_invalid_hostname", tags=tags)
        tid, t0 = self._next()
        self.tcp_connect.append({"ip": ip, "port": 80, "status": {"failure": None, "success": True},
                                 "t0": t0, "t": t0 + 0.02, "tags": list(tags), "transaction_id": tid})
        self.requests.insert(0, http_record(f"{ip}:80", f"http://{DOMAIN}/", tid, t0, None, 200, body,
                                            [("Content-Type", "text/html"), *headers], tags))
        return self

    def build(self) -> dict[str, Any]:
        return {
            "test_name": "remote_dns", "test_version": "0.1.0", "input": DOMAIN,
            "probe_asn": "AS64496", "probe_cc": "ZZ",
            "test_keys": {
                "vantage": VANTAGE, "control_domain": CONTROL_DOMAIN, "domain": DOMAIN,
                "queries": self.queries, "x_dns_duplicate_responses": self.duplicates,
                "tcp_connect": self.tcp_connect, "tls_handshakes": self.tls_handshakes,
                "requests": self.requests, "network_events": [],
                "x_asn": dict(self.asn),
            },
        }

    def verdict(self, with_matcher: bool = True) -> Verdict:
        m = self.build()
        return checked(remote_dns_verdict(m, matcher if with_matcher else None), m)


def http_record(address: str, url: str, tid: int, t0: float, failure: str | None, code: int, body: str,
                headers: Sequence[tuple[str, str]], tags: Sequence[str]) -> dict[str, Any]:
    """netx/http.py's ``_record`` (an empty response when no status line arrived)."""
    host = url.split("/")[2]
    if code:
        response: dict[str, Any] = {"body": body, "body_is_truncated": False, "code": code,
                                    "headers": {k: v for k, v in reversed(headers)},
                                    "headers_list": [[k, v] for k, v in headers]}
    else:
        response = {"body": "", "body_is_truncated": False, "code": 0, "headers": {}, "headers_list": []}
    sent = [("Host", host), ("Accept", "*/*"), ("User-Agent", "Mozilla/5.0")]
    return {
        "network": "tcp", "address": address, "failure": failure,
        "request": {"body": "", "body_is_truncated": False, "headers": dict(sent),
                    "headers_list": [[k, v] for k, v in sent], "method": "GET",
                    "tor": {"exit_ip": None, "exit_name": None, "is_tor": False}, "x_transport": "tcp", "url": url},
        "response": response, "t0": t0, "t": t0 + 0.1, "tags": list(tags), "transaction_id": tid,
    }


def standard() -> tuple[DNS, int]:
    """Vantage alive before, one answered test lookup of an address in another AS, control resolves SITE."""
    d = DNS().before()
    tid = d.test(ELSEWHERE)
    d.control().after()
    d.asn = {CONTROL_DOMAIN_IP: 20940, SITE: SITE_ASN, ELSEWHERE: ELSEWHERE_ASN}
    return d, tid


# --------------------------------------------------------------------------- remote_dns rules


def test_dns_vantage_silent_before_is_a_failure_not_a_verdict() -> None:
    d = DNS().before(ok=False)
    d.test(BOGON)
    d.control().after()
    v = d.verdict()
    assert (v.blocking, v.accessible, v.mechanism, v.status, v.confidence) == (None, None, "none", "failure", 0.0)
    assert v.evidence == ("test_keys.queries[0]",)
    # the same measurement with the vantage alive: the bogon is poison (the rule above is what hid it)
    alive = DNS().before()
    alive.test(BOGON)
    assert alive.control().after().verdict().mechanism == "dns.poison"


@pytest.mark.parametrize("failure", ["dns_nxdomain_error", "dns_refused_error", "dns_no_answer"])
def test_dns_vantage_that_answered_before_without_address_is_a_failure(failure: str) -> None:
    d = DNS()
    d.query("vantage_before", failure=failure, rcode=3 if failure == "dns_nxdomain_error" else None)
    d.test(BOGON)
    v = d.control().verdict()
    assert (v.status, v.blocking, v.mechanism) == ("failure", None, "none")


def test_dns_without_any_before_record_is_a_failure() -> None:
    d = DNS()
    d.test(BOGON)
    d.control()
    v = d.verdict()
    assert (v.status, v.blocking) == ("failure", None)
    assert v.evidence == ("test_keys.queries",)


def test_dns_bogon_first_then_duplicate_is_injection() -> None:
    d = DNS().before()
    tid = d.test(BOGON)
    d.late(tid, SITE).control().after()
    d.asn = {SITE: SITE_ASN}
    m = d.build()
    v = d.verdict()
    assert (v.blocking, v.accessible, v.mechanism, v.confidence, v.status) == (
        "dns", False, "dns.injection", 0.95, "anomaly")
    test_query = pointers(m, "queries", tags=["test"])[0]
    assert test_query in v.evidence and "test_keys.x_dns_duplicate_responses[0]" in v.evidence
    assert resolve(m, test_query)["transaction_id"] == tid


def test_dns_duplicate_of_another_lookup_is_not_an_injection() -> None:
    """A late answer belongs to the lookup with its transaction id, not to every test lookup."""
    d = DNS().before()
    d.timeout()
    earlier = d.queries[-1]["transaction_id"]
    d.test(BOGON)
    d.late(earlier, SITE).control().after()
    v = d.verdict()
    assert (v.mechanism, v.confidence) == ("dns.poison", 0.8)
    assert "test_keys.x_dns_duplicate_responses[0]" not in v.evidence


def test_dns_inconsistent_answer_without_duplicates_is_poison() -> None:
    d, tid = standard()
    m = d.build()
    v = d.verdict()
    assert (v.blocking, v.accessible, v.mechanism, v.confidence, v.status) == (
        "dns", False, "dns.poison", 0.8, "anomaly")
    assert v.fingerprints == ()
    assert pointers(m, "queries", transaction_id=tid)[0] in v.evidence


def test_dns_poison_with_matching_blockpage_at_that_address() -> None:
    d, _ = standard()
    d.validate_http(ELSEWHERE, BLOCKPAGE, headers=[("Server", "CensorGate")])
    m = d.build()
    v = d.verdict()
    assert (v.mechanism, v.confidence, v.status, v.blocking) == ("dns.poison", 0.95, "anomaly", "dns")
    assert set(v.fingerprints) == {"fp_court", "fp_gate"}
    assert "test_keys.requests[0]" in v.evidence and resolve(m, "test_keys.requests[0]")["tags"] == ["validate"]
    # without a matcher, or with a page no fingerprint matches, the same measurement is plain poison
    assert (d.verdict(with_matcher=False).confidence, d.verdict(with_matcher=False).fingerprints) == (0.8, ())
    plain, _ = standard()
    plain.validate_http(ELSEWHERE, PAGE)
    assert (plain.verdict().confidence, plain.verdict().fingerprints) == (0.8, ())


def test_dns_pages_not_tagged_validate_are_not_fingerprinted() -> None:
    d, _ = standard()
    d.validate_http(ELSEWHERE, BLOCKPAGE, tags=("test",))
    v = d.verdict()
    assert (v.mechanism, v.confidence, v.fingerprints) == ("dns.poison", 0.8, ())


def test_dns_answer_in_the_controls_as_is_consistent() -> None:
    d = DNS().before()
    d.test(SIBLING)
    d.control().after()
    d.asn = {SITE: SITE_ASN, SIBLING: SITE_ASN}
    v = d.verdict()
    assert (v.blocking, v.accessible, v.mechanism, v.status) == (False, True, "none", "ok")
    assert v.confidence == 0.9
    # the AS is what vouches for it: unknown or different AS number, poison
    d.asn = {SITE: SITE_ASN}
    assert d.verdict().mechanism == "dns.poison"
    d.asn = {SITE: SITE_ASN, SIBLING: ELSEWHERE_ASN}
    assert d.verdict().mechanism == "dns.poison"


@pytest.mark.parametrize("asn", [True, 0, -15133, "15133", 15133.0, None])
def test_dns_malformed_as_numbers_vouch_for_nothing(asn: Any) -> None:
    d = DNS().before()
    d.test(SIBLING)
    d.control().after()
    d.asn = {SITE: asn, SIBLING: asn}
    assert d.verdict().mechanism == "dns.poison"


@pytest.mark.parametrize("bogon", [BOGON, "10.0.0.1", "192.168.1.1", "0.0.0.0"])
def test_dns_bogon_in_the_controls_as_is_still_poison(bogon: str) -> None:
    d = DNS().before()
    d.test(bogon)
    d.control().after()
    d.asn = {SITE: SITE_ASN, bogon: SITE_ASN}
    v = d.verdict()
    assert (v.mechanism, v.confidence, v.blocking) == ("dns.poison", 0.8, "dns")


def test_dns_bogon_the_control_named_is_consistent() -> None:
    d = DNS().before()
    d.test("10.1.2.3")
    d.control("10.1.2.3").after()
    v = d.verdict()
    assert (v.status, v.mechanism, v.accessible) == ("ok", "none", True)


def test_dns_address_with_verified_tls_handshake_is_consistent() -> None:
    d, _ = standard()
    d.validate_tls(ELSEWHERE)
    m = d.build()
    v = d.verdict()
    assert (v.blocking, v.accessible, v.mechanism, v.status) == (False, True, "none", "ok")
    assert resolve(m, "test_keys.tls_handshakes[0]")["address"] == f"{ELSEWHERE}:443"


@pytest.mark.parametrize("kwargs", [
    {"verified": False},
    {"failure": "ssl_invalid_hostname"},
    {"failure": "generic_timeout_error", "verified": True},
    {"tags": ("test",)},
    {"tags": ()},
    {"no_tls_verify": True},
], ids=["unverified", "failed", "failed-but-verified", "not-validate", "no-tags", "no-verify"])
def test_dns_handshakes_that_vouch_for_nothing(kwargs: dict[str, Any]) -> None:
    d, _ = standard()
    d.validate_tls(ELSEWHERE, **kwargs)
    assert d.verdict().mechanism == "dns.poison"


def test_dns_verified_handshake_of_another_address_vouches_only_for_it() -> None:
    d, _ = standard()
    d.validate_tls("104.18.0.8")
    assert d.verdict().mechanism == "dns.poison"


def test_dns_verified_handshake_at_an_ipv6_endpoint() -> None:
    d = DNS().before()
    d.test("2606:4700::6812:7")
    d.control().after()
    d.validate_tls("2606:4700::6812:7")
    d.tls_handshakes[-1]["address"] = "[2606:4700::6812:7]:443"
    assert d.verdict().status == "ok"


def test_dns_consistent_first_then_inconsistent_late_is_injection_that_lost_the_race() -> None:
    d = DNS().before()
    tid = d.test(SITE)
    d.late(tid, BOGON).control().after()
    v = d.verdict()
    assert (v.mechanism, v.confidence, v.status, v.blocking, v.accessible) == (
        "dns.injection", 0.7, "anomaly", "dns", False)
    assert "test_keys.x_dns_duplicate_responses[0]" in v.evidence


def test_dns_consistent_late_answer_after_consistent_first_is_ok() -> None:
    d = DNS().before()
    tid = d.test(SITE)
    d.late(tid, SITE).control().after()
    v = d.verdict()
    assert (v.status, v.mechanism) == ("ok", "none")


def test_dns_first_answered_attempt_decides() -> None:
    d = DNS().before().timeout(2)
    d.test(BOGON)
    d.control().after()
    m = d.build()
    v = d.verdict()
    assert (v.mechanism, v.confidence) == ("dns.poison", 0.8)
    assert v.evidence == tuple(pointers(m, "queries", tags=["test"], failure=None))


def test_dns_answers_of_a_failed_lookup_are_not_its_answer() -> None:
    d = DNS().before()
    d.test(BOGON, failure="generic_timeout_error")  # addresses beside a failure: not an answer
    d.test(SITE)
    v = d.control().after().verdict()
    assert (v.status, v.mechanism) == ("ok", "none")
    assert v.evidence == ("test_keys.queries[2]",)


@pytest.mark.parametrize("failure,rcode", [
    ("dns_nxdomain_error", 3), ("dns_refused_error", 5), ("dns_server_misbehaving", 2), ("dns_no_answer", None),
])
def test_dns_negative_answer_while_control_resolves_is_nxdomain(failure: str, rcode: int | None) -> None:
    d = DNS().before()
    d.test(failure=failure, rcode=rcode)
    d.control().after()
    m = d.build()
    v = d.verdict()
    assert (v.blocking, v.accessible, v.mechanism, v.confidence, v.status) == (
        "dns", False, "dns.nxdomain", 0.7, "anomaly")
    assert v.evidence == tuple(pointers(m, "queries", tags=["test"]))


def test_dns_timeouts_then_nxdomain_is_nxdomain() -> None:
    d = DNS().before().timeout(2)
    d.test(failure="dns_nxdomain_error", rcode=3)
    v = d.control().after().verdict()
    assert v.mechanism == "dns.nxdomain"
    assert len(v.evidence) == 3


@pytest.mark.parametrize("after,confidence", [(True, 0.6), (False, 0.4), (None, 0.4)])
def test_dns_every_attempt_timed_out_is_drop(after: bool | None, confidence: float) -> None:
    d = DNS().before().timeout(3)
    d.control()
    if after is not None:
        d.after(ok=after)
    m = d.build()
    v = d.verdict()
    assert (v.blocking, v.accessible, v.mechanism, v.confidence, v.status) == (
        "dns", False, "dns.drop", confidence, "anomaly")
    assert v.evidence == tuple(pointers(m, "queries", tags=["test"]))


def test_dns_timeouts_mixed_with_unexplained_failures_are_a_failure() -> None:
    d = DNS().before().timeout(2)
    d.test(failure="connection_refused")
    v = d.control().after().verdict()
    assert (v.status, v.blocking, v.mechanism) == ("failure", None, "none")


@pytest.mark.parametrize("control_failure", ["generic_timeout_error", "dns_server_misbehaving"])
def test_dns_control_failed_and_vantage_timed_out_is_failure(control_failure: str) -> None:
    d = DNS().before().timeout(3)
    d.control(failure=control_failure).after()
    v = d.verdict()
    assert (v.blocking, v.accessible, v.mechanism, v.status, v.confidence) == (None, None, "none", "failure", 0.0)


def test_dns_control_failed_and_vantage_nxdomain_is_failure() -> None:
    """A negative answer is only 'the domain does not exist' when the control says NXDOMAIN too."""
    d = DNS().before()
    d.test(failure="dns_nxdomain_error", rcode=3)
    v = d.control(failure="generic_timeout_error").after().verdict()
    assert v.status == "failure"


def test_dns_both_nxdomain_means_the_domain_does_not_exist() -> None:
    d = DNS().before()
    d.test(failure="dns_nxdomain_error", rcode=3)
    d.control(failure="dns_nxdomain_error", rcode=3).after()
    v = d.verdict()
    assert (v.blocking, v.accessible, v.mechanism, v.status) == (False, False, "none", "ok")
    assert v.confidence == 0.7


@pytest.mark.parametrize("answer", [BOGON])
def test_dns_an_address_for_a_domain_the_control_says_does_not_exist_is_ghost_dns(answer: str) -> None:
    """QA: a forged answer for nx.google.com (198.18.250.3 in the lab), cached by the vantage and served once,
    while the trusted resolver said NXDOMAIN, was a failure; web_connectivity calls it "ghost" DNS, dns.poison."""
    d = DNS().before()
    d.test(answer)
    d.control(failure="dns_nxdomain_error", rcode=3).after()
    m = d.build()
    v = d.verdict()
    assert (v.blocking, v.accessible, v.mechanism, v.status, v.confidence) == ("dns", False, "dns.poison",
                                                                               "anomaly", 0.8)
    assert set(pointers(m, "queries", tags=["control"])) <= set(v.evidence)
    # a control that timed out says nothing of the domain: the same answer then tells nothing
    d = DNS().before()
    d.test(answer)
    assert d.control(failure="generic_timeout_error").after().verdict().status == "failure"


def test_dns_a_public_address_for_a_domain_that_does_not_exist_is_no_verdict() -> None:
    """Adversarial QA: an open resolver that answers every name that does not exist with its ad server's address
    made each dead domain of a test list ghost DNS. A public address alone tells nothing; the blockpage a
    fingerprint knows, served from it, does."""
    d = DNS().before()
    d.test(ELSEWHERE)
    assert d.control(failure="dns_nxdomain_error", rcode=3).after().verdict().status == "failure"
    d = DNS().before()
    d.test(ELSEWHERE)
    d.control(failure="dns_nxdomain_error", rcode=3).after()
    d.validate_http(ELSEWHERE, BLOCKPAGE)
    v = d.verdict()
    assert (v.mechanism, v.status, v.fingerprints) == ("dns.poison", "anomaly", ("fp_court",)), v


def test_dns_without_control_answer_a_bogon_alone_tells_nothing() -> None:
    d = DNS().before()
    d.test(BOGON)
    d.control(failure="generic_timeout_error").after()
    v = d.verdict()
    assert (v.status, v.blocking, v.mechanism) == ("failure", None, "none")


def test_dns_without_control_answer_two_different_answers_are_injection() -> None:
    d = DNS().before()
    tid = d.test(BOGON)
    d.late(tid, SITE).control(failure="generic_timeout_error").after()
    v = d.verdict()
    assert (v.mechanism, v.confidence, v.blocking) == ("dns.injection", 0.8, "dns")
    # the same answer twice (a retransmission) is not two answers
    same = DNS().before()
    tid = same.test(SITE)
    same.late(tid, SITE).control(failure="generic_timeout_error").after()
    assert same.verdict().status == "failure"


def test_dns_no_test_lookup_is_failure() -> None:
    v = DNS().before().control().after().verdict()
    assert (v.status, v.blocking) == ("failure", None)


# --------------------------------------------------------------------------- remote_web measurements


class Web:
    """A remote_web measurement: per attempt, its tcp_connect, then its TLS handshake (https) or request (http)."""

    PORTS = {"http": 80, "https": 443}

    def __init__(self) -> None:
        self._tid = 0
        self._t = 0.0
        self.tcp_connect: list[dict[str, Any]] = []
        self.tls_handshakes: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.quic_handshakes: list[dict[str, Any]] = []

    def quic(self, role: str, failure: str | None = None, negotiated: str = "h3") -> Web:
        """One QUIC handshake (no TCP): the name is in its first packet."""
        self._tid += 1
        self._t += 0.5
        done = failure is None or failure.startswith("ssl_")
        self.quic_handshakes.append({
            "network": "quic", "address": f"{VANTAGE}:443", "alpn": ["h3"], "failure": failure,
            "negotiated_protocol": negotiated if done else "", "server_name": DOMAIN if role == "test" else
            CONTROL_DOMAIN, "t0": self._t, "t": self._t + 0.1, "tags": ["quic", role], "transaction_id": self._tid,
            "peer_certificates": [{"format": "base64", "data": "MIIB"}] if done else None,
        })
        return self

    def attempt(self, protocol: str, role: str, *, connect: str | None = None, failure: str | None = None,
                code: int = 200, body: str = PAGE, headers: Sequence[tuple[str, str]] = ()) -> Web:
        """One connection; ``connect`` is the TCP connect's failure, ``failure`` the handshake's or round trip's."""
        self._tid += 1
        self._t += 0.5
        tid, t0 = self._tid, self._t
        tags = [protocol, role]
        host = DOMAIN if role == "test" else CONTROL_DOMAIN
        address = f"{VANTAGE}:{self.PORTS[protocol]}"
        self.tcp_connect.append({"ip": VANTAGE, "port": self.PORTS[protocol],
                                 "status": {"failure": connect, "success": connect is None},
                                 "t0": t0, "t": t0 + 0.05, "tags": tags, "transaction_id": tid})
        if connect is not None:
            return self
        if protocol == "https":
            ok = failure is None
            self.tls_handshakes.append({
                "network": "tcp", "address": address, "cipher_suite": "TLS_AES_128_GCM_SHA256" if ok else "",
                "failure": failure, "negotiated_protocol": "http/1.1" if ok else "", "no_tls_verify": True,
                "peer_certificates": [{"format": "base64", "data": "MIIB"}] if ok else None,
                "server_name": host, "t0": t0 + 0.05, "t": t0 + 0.1, "tags": tags,
                "tls_version": "TLSv1.3" if ok else "", "transaction_id": tid,
                "x_verified": False, "x_issuer": None, "x_spki_sha256": None,
                "x_verify_failure": "ssl_invalid_hostname" if ok else None,
            })
        else:
            self.requests.insert(0, http_record(address, f"http://{host}/", tid, t0 + 0.05, failure,
                                                0 if failure else code, body,
                                                [("Content-Type", "text/html"), *headers], tags))
        return self

    def ok(self, protocol: str, role: str) -> Web:
        return self.attempt(protocol, role)

    def build(self) -> dict[str, Any]:
        return {
            "test_name": "remote_web", "test_version": "0.1.0", "input": DOMAIN,
            "probe_asn": "AS64496", "probe_cc": "ZZ",
            "test_keys": {
                "vantage": VANTAGE, "control_domain": CONTROL_DOMAIN, "domain": DOMAIN,
                "protocols": sorted({r["tags"][0] for r in [*self.tcp_connect, *self.quic_handshakes]
                                     if isinstance(r.get("tags"), list) and r["tags"]
                                     and isinstance(r["tags"][0], str)}),
                "queries": [], "x_dns_duplicate_responses": [], "tcp_connect": self.tcp_connect,
                "tls_handshakes": self.tls_handshakes, "requests": self.requests, "network_events": [],
                **({"quic_handshakes": self.quic_handshakes} if self.quic_handshakes else {}),
                "x_residual_wait": {},
            },
        }

    def verdict(self, with_matcher: bool = True) -> Verdict:
        m = self.build()
        return checked(remote_web_verdict(m, matcher if with_matcher else None), m)


# --------------------------------------------------------------------------- remote_web rules


@pytest.mark.parametrize("protocol", ["http", "https"])
def test_web_control_not_served_before_is_failure(protocol: str) -> None:
    w = Web()
    w.attempt(protocol, "vantage_before", connect="generic_timeout_error")
    w.attempt(protocol, "vantage_before", connect="connection_refused")
    w.attempt(protocol, "test", failure="connection_reset").ok(protocol, "vantage_after")
    m = w.build()
    v = w.verdict()
    assert (v.blocking, v.accessible, v.mechanism, v.status) == (None, None, "none", "failure")
    assert v.evidence == tuple(pointers(m, "tcp_connect", tags=["vantage_before"]))
    # with the vantage serving the control domain first, the reset is the domain's
    alive = Web().ok(protocol, "vantage_before").attempt(protocol, "test", failure="connection_reset")
    assert alive.verdict().status == "anomaly"


@pytest.mark.parametrize("protocol", ["http", "https"])
def test_web_control_failing_after_the_connect_before_is_failure(protocol: str) -> None:
    w = Web().attempt(protocol, "vantage_before", failure="connection_reset").ok(protocol, "test")
    assert w.verdict().status == "failure"


def test_web_vantage_back_after_residual_wait_counts_as_served() -> None:
    w = Web().attempt("http", "vantage_before", connect="generic_timeout_error")
    w.ok("http", "vantage_before").attempt("http", "test", failure="connection_reset").ok("http", "vantage_after")
    v = w.verdict()
    assert (v.mechanism, v.confidence) == ("http.rst", 0.9)


@pytest.mark.parametrize("protocol", ["http", "https"])
def test_web_completed_attempt_is_ok(protocol: str) -> None:
    w = Web().ok(protocol, "vantage_before").ok(protocol, "test").ok(protocol, "vantage_after")
    m = w.build()
    v = w.verdict()
    assert (v.blocking, v.accessible, v.mechanism, v.confidence, v.status) == (False, True, "none", 0.85, "ok")
    field = "requests" if protocol == "http" else "tls_handshakes"
    assert v.evidence == tuple(pointers(m, field, tags=["test"]))


def test_web_page_other_than_the_domains_is_not_interference() -> None:
    w = Web().ok("http", "vantage_before").attempt("http", "test", code=404, body="Not Found")
    assert (w.verdict().status, w.verdict().mechanism) == ("ok", "none")


@pytest.mark.parametrize("body,headers,fingerprints", [
    (BLOCKPAGE, (), ("fp_court",)),
    (PAGE, [("Server", "CensorGate")], ("fp_gate",)),
], ids=["body", "headers"])
def test_web_blockpage_on_a_completed_attempt(body: str, headers: Any, fingerprints: tuple[str, ...]) -> None:
    w = Web().ok("http", "vantage_before").attempt("http", "test", code=403, body=body, headers=headers)
    w.ok("http", "vantage_after")
    m = w.build()
    v = w.verdict()
    assert (v.blocking, v.accessible, v.mechanism, v.confidence, v.status) == (
        "http-diff", False, "http.blockpage", 0.95, "anomaly")
    assert v.fingerprints == fingerprints
    assert v.evidence == tuple(pointers(m, "requests", tags=["test"]))
    assert (w.verdict(with_matcher=False).mechanism, w.verdict(with_matcher=False).confidence) == ("none", 0.85)


def test_web_blockpage_served_for_the_control_domain_is_not_the_domains() -> None:
    w = Web().attempt("http", "vantage_before", body=BLOCKPAGE).ok("http", "test")
    assert w.verdict().mechanism == "none"


@pytest.mark.parametrize("failure", ["connection_reset", "eof_error"])
@pytest.mark.parametrize("after,confidence", [(True, 0.9), (False, 0.85)])
def test_web_http_round_trip_reset_is_http_rst(failure: str, after: bool, confidence: float) -> None:
    w = Web().ok("http", "vantage_before").attempt("http", "test", failure=failure)
    if after:
        w.ok("http", "vantage_after")
    else:
        w.attempt("http", "vantage_after", connect="generic_timeout_error")
    m = w.build()
    v = w.verdict()
    assert (v.blocking, v.accessible, v.mechanism, v.confidence, v.status) == (
        "http-failure", False, "http.rst", confidence, "anomaly")
    assert v.evidence == tuple(pointers(m, "requests", tags=["test"]))


@pytest.mark.parametrize("after,confidence", [(True, 0.75), (False, 0.5)])
def test_web_http_round_trip_timeout_is_http_drop(after: bool, confidence: float) -> None:
    w = Web().ok("http", "vantage_before").attempt("http", "test", failure="generic_timeout_error")
    w.attempt("http", "test", failure="generic_timeout_error")
    if after:
        w.ok("http", "vantage_after")
    v = w.verdict()
    assert (v.mechanism, v.confidence, v.blocking) == ("http.drop", confidence, "http-failure")
    assert len(v.evidence) == 2


@pytest.mark.parametrize("after,confidence", [(True, 0.75), (False, 0.5)])
def test_web_tls_handshake_timeout_is_tls_drop(after: bool, confidence: float) -> None:
    w = Web().ok("https", "vantage_before").attempt("https", "test", failure="generic_timeout_error")
    w.attempt("https", "test", failure="generic_timeout_error")
    if after:
        w.ok("https", "vantage_after")
    else:
        w.attempt("https", "vantage_after", failure="generic_timeout_error")
    m = w.build()
    v = w.verdict()
    assert (v.blocking, v.accessible, v.mechanism, v.confidence, v.status) == (
        "http-failure", False, "tls.drop", confidence, "anomaly")
    assert v.evidence == tuple(pointers(m, "tls_handshakes", tags=["test"]))


@pytest.mark.parametrize("after,confidence", [(True, 0.75), (False, 0.5)])
def test_web_quic_handshake_timeout_is_quic_drop(after: bool, confidence: float) -> None:
    w = Web().quic("vantage_before").quic("test", "generic_timeout_error").quic("test", "generic_timeout_error")
    w.quic("vantage_after", None if after else "generic_timeout_error")
    m = w.build()
    v = w.verdict()
    assert (v.blocking, v.accessible, v.mechanism, v.confidence, v.status) == (
        "http-failure", False, "quic.drop", confidence, "anomaly")
    assert v.evidence == tuple(pointers(m, "quic_handshakes", tags=["quic", "test"]))


@pytest.mark.parametrize("failure", [None, "ssl_invalid_hostname", "ssl_unknown_authority"])
def test_web_quic_handshake_completed_reached_the_vantage_whatever_its_certificate(failure: str | None) -> None:
    """The vantage need not hold a certificate for the domain: a completed handshake is no interference."""
    v = Web().quic("vantage_before").quic("test", failure).quic("vantage_after").verdict()
    assert (v.mechanism, v.status, v.blocking) == ("none", "ok", False)


def test_web_quic_alert_without_a_completed_handshake_is_no_known_technique() -> None:
    w = Web().quic("vantage_before").quic("test", "ssl_failed_handshake", negotiated="").quic("vantage_after")
    w.quic_handshakes[1]["negotiated_protocol"] = ""
    v = w.verdict()
    assert (v.mechanism, v.status, v.confidence) == ("none", "anomaly", 0.3)


def test_web_quic_without_a_control_handshake_before_is_failure() -> None:
    v = Web().quic("vantage_before", "generic_timeout_error").quic("test", "generic_timeout_error").verdict()
    assert v.status == "failure" and v.mechanism == "none"


def test_web_quic_drop_beside_https_ok_is_the_anomaly() -> None:
    w = Web().ok("https", "vantage_before").ok("https", "test").ok("https", "vantage_after")
    w.quic("vantage_before").quic("test", "generic_timeout_error").quic("vantage_after")
    v = w.verdict()
    assert v.mechanism == "quic.drop" and v.status == "anomaly"
    # the domain came through over TCP: HTTP/3 alone is dropped, not the site (QA: it said "blocked, not
    # accessible"), as web_connectivity's quic.drop
    assert (v.blocking, v.accessible) == (False, True)
    # with HTTPS reset too, the site is blocked, and the reset is the verdict
    w = Web().ok("https", "vantage_before").attempt("https", "test", failure="connection_reset")
    w.ok("https", "vantage_after").quic("vantage_before").quic("test", "generic_timeout_error").quic("vantage_after")
    v = w.verdict()
    assert (v.mechanism, v.blocking, v.accessible) == ("tls.rst", "http-failure", False)


@pytest.mark.parametrize("odd", [None, "quic", ["test"], [["quic"], "test"], 7])
def test_web_quic_records_with_hostile_tags_are_no_attempt(odd: Any) -> None:
    w = Web().quic("vantage_before").quic("test", "generic_timeout_error").quic("vantage_after")
    w.quic_handshakes[1]["tags"] = odd
    v = w.verdict()
    assert v.mechanism == "none" and v.status in ("failure", "ok")


@pytest.mark.parametrize("failure", ["connection_reset", "eof_error"])
def test_web_tls_handshake_reset_is_tls_rst(failure: str) -> None:
    w = Web().ok("https", "vantage_before").attempt("https", "test", failure=failure).ok("https", "vantage_after")
    v = w.verdict()
    assert (v.mechanism, v.confidence, v.blocking) == ("tls.rst", 0.9, "http-failure")


def test_web_connect_not_marked_successful_is_not_a_connection() -> None:
    """status.success must be true: a connect without it carried no domain, whatever was recorded after."""
    w = Web().ok("http", "vantage_before").attempt("http", "test", failure="connection_reset")
    w.tcp_connect[1]["status"] = {"failure": None, "success": False}
    v = w.verdict()
    assert (v.status, v.blocking) == ("failure", None)
    assert v.evidence == ("test_keys.tcp_connect[1]",)


def test_web_first_decisive_attempt_decides() -> None:
    w = Web().ok("http", "vantage_before").attempt("http", "test", failure="connection_reset")
    w.attempt("http", "test", failure="generic_timeout_error")
    assert w.verdict().mechanism == "http.rst"
    # records are ordered by t0, not by list position
    w = Web().ok("http", "vantage_before").attempt("http", "test", failure="generic_timeout_error")
    w.attempt("http", "test", failure="connection_reset")
    w.tcp_connect[1]["t0"], w.tcp_connect[2]["t0"] = w.tcp_connect[2]["t0"], w.tcp_connect[1]["t0"]
    assert w.verdict().mechanism == "http.rst"


def test_web_one_completed_attempt_outweighs_a_failed_one() -> None:
    w = Web().ok("http", "vantage_before").attempt("http", "test", failure="generic_timeout_error")
    w.ok("http", "test")
    assert (w.verdict().status, w.verdict().mechanism) == ("ok", "none")


@pytest.mark.parametrize("protocol", ["http", "https"])
@pytest.mark.parametrize("connect", ["generic_timeout_error", "connection_refused", "connection_reset"])
def test_web_only_connect_failures_name_no_domain(protocol: str, connect: str) -> None:
    w = Web().ok(protocol, "vantage_before")
    w.attempt(protocol, "test", connect=connect).attempt(protocol, "test", connect=connect)
    w.ok(protocol, "vantage_after")
    m = w.build()
    v = w.verdict()
    assert (v.blocking, v.accessible, v.mechanism, v.status) == (None, None, "none", "failure")
    assert v.evidence == tuple(pointers(m, "tcp_connect", tags=["test"]))


@pytest.mark.parametrize("protocol,failure", [
    ("https", "ssl_failed_handshake"), ("https", "ssl_unknown_authority"), ("http", "http_unexpected_status_line"),
])
def test_web_failure_no_technique_explains(protocol: str, failure: str) -> None:
    w = Web().ok(protocol, "vantage_before").attempt(protocol, "test", failure=failure).ok(protocol, "vantage_after")
    v = w.verdict()
    assert (v.blocking, v.accessible, v.mechanism, v.confidence, v.status) == (
        "http-failure", False, "none", 0.3, "anomaly")


def test_web_tls_anomaly_wins_over_http_ok() -> None:
    w = Web()
    w.ok("http", "vantage_before").ok("http", "test").ok("http", "vantage_after")
    w.ok("https", "vantage_before").attempt("https", "test", failure="connection_reset")
    w.ok("https", "vantage_after")
    m = w.build()
    v = w.verdict()
    assert (v.blocking, v.accessible, v.mechanism, v.confidence, v.status) == (
        "http-failure", False, "tls.rst", 0.9, "anomaly")
    tls_test = pointers(m, "tls_handshakes", tags=["https", "test"])
    assert set(tls_test) <= set(v.evidence)


def test_web_two_anomalies_the_strongest_wins_and_both_are_evidence() -> None:
    w = Web()
    w.ok("http", "vantage_before").attempt("http", "test", failure="generic_timeout_error")
    w.ok("https", "vantage_before").attempt("https", "test", failure="connection_reset")
    m = w.build()
    v = w.verdict()
    assert (v.mechanism, v.confidence) == ("tls.rst", 0.85)
    assert set(v.evidence) == {*pointers(m, "requests", tags=["test"]), *pointers(m, "tls_handshakes", tags=["test"])}
    # a named mechanism beats a failure no technique explains
    w = Web()
    w.ok("http", "vantage_before").attempt("http", "test", failure="generic_timeout_error")
    w.ok("https", "vantage_before").attempt("https", "test", failure="ssl_failed_handshake")
    assert w.verdict().mechanism == "http.drop"


def test_web_blockpage_over_http_and_tls_ok() -> None:
    w = Web()
    w.ok("http", "vantage_before").attempt("http", "test", body=BLOCKPAGE)
    w.ok("https", "vantage_before").ok("https", "test")
    v = w.verdict()
    assert (v.mechanism, v.fingerprints) == ("http.blockpage", ("fp_court",))


def test_web_one_protocol_failed_the_other_ok_is_ok() -> None:
    w = Web()
    w.attempt("http", "vantage_before", connect="generic_timeout_error").ok("http", "test")
    w.ok("https", "vantage_before").ok("https", "test")
    v = w.verdict()
    assert (v.status, v.accessible) == ("ok", True)


def test_web_nothing_measured_is_failure() -> None:
    v = Web().verdict()
    assert (v.status, v.blocking, v.evidence) == ("failure", None, ("test_keys.tcp_connect",))
    # records of no known protocol or role are not attempts
    w = Web().ok("http", "vantage_before").ok("http", "test")
    for record in [*w.tcp_connect, *w.requests]:
        record["tags"] = ["gopher", *record["tags"][1:]]
    assert w.verdict().status == "failure"


def test_web_records_are_joined_by_transaction_id() -> None:
    """A request of another connection does not complete this one, whatever its tags say."""
    w = Web().ok("http", "vantage_before").attempt("http", "test", failure="connection_reset")
    stray = {**w.requests[0], "transaction_id": 99, "failure": None, "response": dict(w.requests[1]["response"])}
    w.requests.insert(0, stray)
    v = w.verdict()
    assert (v.mechanism, v.confidence) == ("http.rst", 0.85)
    assert "test_keys.requests[0]" not in v.evidence


@pytest.mark.parametrize("protocol", ["http", "https"])
def test_web_attempt_without_a_recorded_failure_is_not_blocking(protocol: str) -> None:
    w = Web().ok(protocol, "vantage_before").attempt(protocol, "test", failure="connection_reset")
    records = w.requests if protocol == "http" else w.tls_handshakes
    records[:] = [r for r in records if "test" not in r["tags"]]  # connected; the rest never recorded
    v = w.verdict()
    assert (v.status, v.blocking) == ("failure", None)


# --------------------------------------------------------------------------- hostile input


ODD: list[Any] = [
    None, 0, 7, -1, 1.5, float("nan"), True, False, "", "x", "127.0.0.1", "1.2.3.4:443",
    [], [1, 2], [None], [[1]], [{"a": [1]}], ["test", 1], {}, {"k": [1]}, {"ipv4": {"x": 1}},
    [{"tags": {"test": 1}, "transaction_id": "1", "answers": "x", "status": [], "response": [1]}],
    [{"tags": ["http", "test", 3], "transaction_id": True, "answers": [{"ipv4": 1}], "t0": "0"}],
]
# nested garbage whose transaction id is a JSON array: see test_web_unhashable_transaction_id_never_raises
UNHASHABLE_GARBAGE = [{"tags": ["https", "test"], "transaction_id": [], "answers": "x"}]
UNHASHABLE: list[Any] = [[], {}, [[1]], {"k": [1]}]

FIELDS = ["queries", "x_dns_duplicate_responses", "tcp_connect", "tls_handshakes", "requests", "tags", "answers",
          "x_asn", "status", "transaction_id", "body", "headers_list", "headers", "response", "failure", "ipv4",
          "address", "x_verified", "no_tls_verify", "t0", "success", "code", "test_keys"]
WEB_FIELDS = [f for f in FIELDS if f not in ("answers", "x_asn", "ipv4")]  # none in a remote_web measurement
WEB_FIELDS += ["quic_handshakes", "negotiated_protocol"]  # in remote_web's only


def rich_dns() -> dict[str, Any]:
    d = DNS().before()
    d.timeout()
    tid = d.test(BOGON, ELSEWHERE)
    d.late(tid, SITE).late(tid, SIBLING).control(SITE, "2606:2800:220:1::1").after()
    d.validate_tls(ELSEWHERE, verified=False).validate_http(ELSEWHERE, BLOCKPAGE, headers=[("Server", "CensorGate")])
    d.asn = {SITE: SITE_ASN, SIBLING: SITE_ASN, ELSEWHERE: ELSEWHERE_ASN}
    return d.build()


def rich_web() -> dict[str, Any]:
    w = Web()
    w.attempt("http", "vantage_before", connect="generic_timeout_error").ok("http", "vantage_before")
    w.attempt("http", "test", failure="connection_reset").attempt("http", "test", body=BLOCKPAGE)
    w.ok("http", "vantage_after")
    w.ok("https", "vantage_before").attempt("https", "test", failure="generic_timeout_error")
    w.attempt("https", "test", connect="connection_refused").ok("https", "vantage_after")
    w.quic("vantage_before").quic("test", "generic_timeout_error").quic("vantage_after")
    return w.build()


def _occurrences(value: Any, field: str, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Paths (from the measurement) of every key named ``field``."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k == field:
                yield (*path, k)
            yield from _occurrences(v, field, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _occurrences(v, field, (*path, i))


def _replaced(base: dict[str, Any], paths: Sequence[tuple[Any, ...]], odd: Any) -> dict[str, Any]:
    m = copy.deepcopy(base)
    for path in paths:
        node = m
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = copy.deepcopy(odd)
    return m


def _variants(base: dict[str, Any], field: str, odds: Sequence[Any]) -> Iterator[dict[str, Any]]:
    paths = list(_occurrences(base, field))
    assert paths, f"{field} does not occur in the measurement"
    for odd in odds:
        for path in paths:
            yield _replaced(base, [path], odd)
        yield _replaced(base, paths, odd)


def _survives(verdict_of: Any, m: dict[str, Any]) -> None:
    for with_matcher in (matcher, None):
        v = verdict_of(m, with_matcher)
        assert isinstance(v, Verdict)
        assert v.mechanism in MECHANISMS and v.status in ("ok", "anomaly", "failure")
        assert 0.0 <= v.confidence <= 1.0
        for pointer in v.evidence:  # indexed pointers name records that exist
            if "[" in pointer:
                assert isinstance(resolve(m, pointer), Mapping), pointer


def test_the_rich_measurements_decide_as_expected() -> None:
    """The fuzz bases themselves: the verdicts the corrupted copies start from."""
    dns = checked(remote_dns_verdict(rich_dns(), matcher), rich_dns())
    assert (dns.mechanism, dns.confidence) == ("dns.injection", 0.95)
    web = checked(remote_web_verdict(rich_web(), matcher), rich_web())
    assert (web.mechanism, web.fingerprints) == ("http.blockpage", ("fp_court",))


@pytest.mark.parametrize("field", FIELDS)
def test_dns_hostile_fields_never_raise(field: str) -> None:
    base = rich_dns()
    for m in _variants(base, field, [*ODD, UNHASHABLE_GARBAGE]):
        _survives(remote_dns_verdict, m)


@pytest.mark.parametrize("field", WEB_FIELDS)
def test_web_hostile_fields_never_raise(field: str) -> None:
    base = rich_web()
    # unhashable transaction ids: see test_web_unhashable_transaction_id_never_raises
    odds = [v for v in ODD if not isinstance(v, (list, dict))] if field == "transaction_id" else ODD
    for m in _variants(base, field, odds):
        _survives(remote_web_verdict, m)


@pytest.mark.parametrize("field", ["tls_handshakes", "requests"])
@pytest.mark.parametrize("odd", UNHASHABLE, ids=repr)
def test_web_unhashable_transaction_id_never_raises(field: str, odd: Any) -> None:
    m = rich_web()
    m["test_keys"][field][0]["transaction_id"] = copy.deepcopy(odd)
    _survives(remote_web_verdict, m)


@pytest.mark.parametrize("odd", UNHASHABLE, ids=repr)
def test_dns_unhashable_transaction_ids_never_raise(odd: Any) -> None:
    m = rich_dns()
    for record in [*m["test_keys"]["queries"], *m["test_keys"]["x_dns_duplicate_responses"],
                   *m["test_keys"]["tls_handshakes"], *m["test_keys"]["requests"]]:
        record["transaction_id"] = copy.deepcopy(odd)
    _survives(remote_dns_verdict, m)


@pytest.mark.parametrize("odd", ODD, ids=repr)
def test_the_whole_measurement_or_test_keys_wrong(odd: Any) -> None:
    for verdict_of in (remote_dns_verdict, remote_web_verdict):
        v = verdict_of({"test_keys": odd}, matcher)
        assert (v.status, v.blocking, v.mechanism) == ("failure", None, "none")
        assert verdict_of({}, None).status == "failure"


def test_hostile_records_are_skipped_not_trusted() -> None:
    """Garbage beside good records changes nothing: the verdict comes from the records that make sense."""
    d, _ = standard()
    m = d.build()
    clean = remote_dns_verdict(m, matcher)
    for key in ("queries", "x_dns_duplicate_responses", "tls_handshakes", "requests"):
        m["test_keys"][key] = [*m["test_keys"][key], None, 7, "x", [1], {"tags": "test"}]
    m["test_keys"]["x_asn"] = {**m["test_keys"]["x_asn"], ELSEWHERE: "15133"}
    dirty = checked(remote_dns_verdict(m, matcher), m)
    assert (dirty.mechanism, dirty.confidence, dirty.evidence) == (clean.mechanism, clean.confidence, clean.evidence)
    # a junk entry before the good ones shifts their indexes: the pointers follow
    d, tid = standard()
    m = d.build()
    m["test_keys"]["queries"].insert(0, "junk")
    v = checked(remote_dns_verdict(m, matcher), m)
    assert v.mechanism == "dns.poison"
    assert all(resolve(m, p)["transaction_id"] == tid for p in v.evidence)


# --------------------------------------------------------------------------- a vantage that lies about everything


def test_dns_a_vantage_lying_about_the_control_domain_is_a_failure_not_censorship() -> None:
    """A resolver that answers every name with its own address (an ad or captive-portal hijack) would make
    every domain look poisoned: Satellite drops such resolvers, and so does the verdict."""
    d = DNS()
    d.query("vantage_before", ELSEWHERE)  # the vantage's answer for the control domain ...
    d.query("control_domain", CONTROL_DOMAIN_IP)  # ... and the trusted resolver's: nothing in common
    d.control(SITE)
    d.test(ELSEWHERE)
    v = d.verdict()
    assert (v.blocking, v.mechanism, v.status) == (None, "none", "failure")
    # the same measurement from a vantage that agrees on the control domain is poisoning
    d = DNS()
    d.query("vantage_before", CONTROL_DOMAIN_IP)
    d.query("control_domain", CONTROL_DOMAIN_IP)
    d.control(SITE)
    d.test(ELSEWHERE)
    assert d.verdict().mechanism == "dns.poison"


def test_dns_control_domain_agreement_by_network_and_without_a_reference() -> None:
    # another address of the control domain's own network: a CDN answering differently, not a liar
    d = DNS()
    d.asn.update({SIBLING: SITE_ASN, SITE: SITE_ASN})
    d.query("vantage_before", SIBLING)
    d.query("control_domain", SITE)
    d.control(SITE)
    d.test(SITE)
    assert d.verdict().status == "ok"
    # a bogon of that network proves nothing: still a liar
    d = DNS()
    d.asn.update({BOGON: SITE_ASN, SITE: SITE_ASN})
    d.query("vantage_before", BOGON)
    d.query("control_domain", SITE)
    d.control(SITE)
    d.test(SITE)
    assert d.verdict().status == "failure"
    # the trusted resolver did not answer for the control domain: nothing to judge the vantage by
    d = DNS()
    d.query("vantage_before", ELSEWHERE)
    d.query("control_domain", failure="generic_timeout_error")
    d.control(SITE)
    d.test(SITE)
    assert d.verdict().status == "ok"


def test_the_dns_signature_is_the_answer_to_the_query_the_verdict_names() -> None:
    """remote_dns asks the control domain first: its genuine answer must not be taken for the forged one."""
    from tamperscope.model.signature import signature_from

    def packet(t: float, matches: str, ip_id: int) -> dict[str, Any]:
        return {"proto": "udp", "remote": f"{VANTAGE}:53", "ip_id": ip_id, "ttl": 63, "initial_ttl": 64,
                "flags": "", "window": None, "payload_len": 40, "t": t, "matches": matches}

    m = {"test_keys": {"x_mechanism": "dns.injection", "x_evidence": ["test_keys.queries[2]"],
                       "x_packets": [packet(0.01, "test_keys.queries[0]", 4242),  # the vantage's own answer
                                     packet(0.20, "test_keys.queries[2]", 0)]}}  # the injector's
    sig = signature_from(m)
    assert sig is not None and sig["key"] == "udp/ttl64/ipid0", sig
    m["test_keys"]["x_evidence"] = []  # no pointer: the earliest answer, as before
    assert signature_from(m)["key"] == "udp/ttl64/ipid4242"  # type: ignore[index]


def test_a_resolvers_own_lie_has_no_equipment_signature() -> None:
    """QA: under ru-like, dns.poison (the ISP resolver's own lie) was given the resolver's answer as an equipment
    signature (udp/ttl64/ipid45289). No packet was forged on the way: only an injection has one."""
    from tamperscope.model.signature import signature_from

    answer = {"proto": "udp", "remote": "198.18.1.53:53", "ip_id": 45289, "ttl": 64, "initial_ttl": 64, "flags": "",
              "window": None, "payload_len": 40, "t": 0.01, "matches": "test_keys.queries[0]"}
    for mech, signed in (("dns.poison", False), ("dns.nxdomain", False), ("dns.injection", True)):
        m = {"test_keys": {"x_mechanism": mech, "x_evidence": ["test_keys.queries[0]"], "x_packets": [answer]}}
        assert (signature_from(m) is not None) == signed, mech
