"""The Web Connectivity verdict: one pure function over a measurement's raw records.

`web_connectivity_verdict()` re-derives OONI's ``blocking``/``accessible`` pair from
the archival records of any web_connectivity measurement (ours or OONI's, v0.4 or
v0.5), ignoring whatever verdict the measurement already carries, and adds our finer
``mechanism`` (one of `MECHANISMS`), a ``confidence``, the ``evidence`` (pointers to
the records that decided) and the blockpage ``fingerprints`` that matched. The probe
stores it with `Verdict.to_test_keys()`; ``tamperscope analyze`` recomputes it.

Rules (v0.5; docs/verdicts.md has the long form and the v0.4 differences):

1. No usable control (``control_failure`` or no ``control``): only the probe's own
   conclusive evidence counts: a bogon answer or injected DNS duplicates (dns), a
   blockpage fingerprint (http-diff), or a final response over verified TLS
   (accessible). Anything else is ``None``/``None``, status "failure".
2. DNS of the input's host (system resolver; other resolvers only for duplicates):
   injection (several responses, the first inconsistent), poison (answers neither in
   the control's addresses, nor in its ASNs, nor vouched for by a verified TLS
   handshake with the right SNI; bogons always suspicious), NXDOMAIN or timeout while
   the control resolves. The first step decides, so DNS tampering wins over
   whatever failed later, except when the page fetched from the suspicious address
   matches the control (OONI: accessible).
3. A blockpage fingerprint on any response of the chain: http.blockpage.
4. The deepest hop of the redirect chain: a final response is accessible over
   HTTPS, otherwise compared with the control (OONI's http-diff); without a final
   response, the earliest unexpected failure on the fetch path decides
   (DNS, TCP, TLS, HTTP). Failures the control shares mean the site is down
   (``False``/``False``). A hop the control did not measure endpoint by endpoint
   (redirects) is judged against the control's HTTP success, and reported as
   OONI does: "dns" for DNS, "http-failure" for anything else.
5. Overlays: ``x_throttle.throttled`` turns a successful or stalled fetch into
   "throttle", a QUIC-only timeout is "quic.drop", and ``x_middlebox_tampering``
   names "middlebox" when nothing else did.

Confidence (docs/verdicts.md has the table): 0.95 fingerprint match, injected DNS
duplicates, bogon answers; 0.9 poison against the control's addresses, NXDOMAIN,
TCP refused/reset, TLS reset or certificate errors against a control success,
HTTPS accessible; 0.85 TCP timeouts, HTTP resets; 0.8 other timeouts and EOFs,
ghost DNS, accessible by HTTP diff; 0.7 site down; 0.6 http-diff with another
status code, forged negative DNS answers; 0.5 http-diff on body/headers/title
alone, stalled-body throttling; 0.3 failures no technique explains; minus 0.15
where the control did not measure the endpoint (redirect hops); 0.0 cannot tell.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Protocol, cast

from tamperscope.model.consistency import (
    ENCRYPTED_ENGINES,
    NO_ANSWER_FAILURES,
    NXDOMAIN_FAILURES,
    SYSTEM_ENGINES,
    AddressJudge,
    Connect,
    Exchange,
    Handshake,
    Observations,
    Query,
    _failure,
    _str,
    http_diff,
    observe,
    title_words,
)
from tamperscope.model.failures import failure_class
from tamperscope.model.freeze import Stall
from tamperscope.model.freeze import frozen as frozen_connection
from tamperscope.model.frozen import quick_init
from tamperscope.model.webparts import endpoint, is_bogon, is_ip, url_port

MECHANISMS = (
    "none", "dns.injection", "dns.poison", "dns.nxdomain", "dns.drop", "tcp.drop", "tcp.rst",
    "tls.rst", "tls.drop", "tls.mitm", "http.rst", "http.drop", "http.blockpage", "throttle",
    "quic.drop", "middlebox", "udp.drop", "tcp.freeze",
)
STATUSES = ("ok", "anomaly", "failure")
_MECHANISM_SET = frozenset(MECHANISMS)
_STATUS_SET = frozenset(STATUSES)

# OONI's `blocking` vocabulary for each of our mechanisms (see _blocking for redirect hops).
OONI_BLOCKING: Mapping[str, str | bool] = {
    "none": False, "dns.injection": "dns", "dns.poison": "dns", "dns.nxdomain": "dns",
    "dns.drop": "dns", "tcp.drop": "tcp_ip", "tcp.rst": "tcp_ip", "tls.rst": "http-failure",
    "tls.drop": "http-failure", "tls.mitm": "http-failure", "http.rst": "http-failure",
    "http.drop": "http-failure", "http.blockpage": "http-diff", "throttle": "http-failure",
    "quic.drop": "http-failure", "middlebox": False, "udp.drop": "tcp_ip",
    "tcp.freeze": "http-failure",
}

STEP_DNS, STEP_TCP, STEP_TLS, STEP_HTTP = 0, 1, 2, 3
_TAGS = re.compile(r"<[^>]*>")
REDIRECT_PENALTY = 0.15  # less sure on hops the control only vouches for via its HTTP fetch


class BlockpageMatcher(Protocol):
    """Returns the ids of the blockpage fingerprints matching one HTTP response. One that also has a ``dns``
    method (`DNSMatcher`) matches DNS answers too."""

    def __call__(self, body: str, headers: Mapping[str, str]) -> Sequence[str]: ...


class DNSMatcher(Protocol):
    """The ids of the DNS fingerprints (a filter's block address, a known lie) among answers, those that may be
    known from ``country`` (the measurement's ISO code)."""

    def dns(self, answers: Sequence[str], country: str) -> Sequence[str]: ...


@quick_init
@dataclass(frozen=True)
class Verdict:
    """What a Web Connectivity measurement says about its URL."""

    blocking: str | bool | None    # OONI: False, "dns", "tcp_ip", "http-failure", "http-diff", None
    accessible: bool | None        # OONI: None when it cannot tell
    mechanism: str                 # one of MECHANISMS; "none" when not blocked or unknown
    confidence: float              # 0..1: in the mechanism, or in "not blocked" for "none"
    status: str                    # "ok" | "anomaly" | "failure" (the measurement itself failed)
    evidence: tuple[str, ...] = ()       # e.g. "test_keys.queries[2]"
    fingerprints: tuple[str, ...] = ()   # blockpage fingerprint ids that matched

    def __post_init__(self) -> None:
        if self.mechanism not in _MECHANISM_SET:
            raise ValueError(f"unknown mechanism {self.mechanism!r}")
        if self.status not in _STATUS_SET:
            raise ValueError(f"unknown status {self.status!r}")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence {self.confidence} outside 0..1")

    def to_test_keys(self) -> dict[str, Any]:
        return {
            "blocking": self.blocking,
            "accessible": self.accessible,
            "x_mechanism": self.mechanism,
            "x_confidence": self.confidence,
            "x_evidence": list(self.evidence),
            "x_fingerprints": list(self.fingerprints),
            "x_status": self.status,
        }


# --------------------------------------------------------------------------- findings


@quick_init
@dataclass(frozen=True)
class Finding:
    """One failed (or suspicious) step, judged against the control."""

    step: int                      # STEP_DNS .. STEP_HTTP
    mechanism: str
    confidence: float
    evidence: tuple[str, ...]
    order: int = 0                 # position among records, to break ties
    expected: bool = False         # the control failed too: the site is down
    endpoint_control: bool = True  # the control measured this very step (not just HTTP)


@quick_init
@dataclass(frozen=True)
class DNSOutcome:
    finding: Finding | None = None            # tampering of the input's host
    suspect: frozenset[str] = frozenset()     # addresses from inconsistent lookups
    fingerprints: tuple[str, ...] = ()        # DNS fingerprints among the suspect addresses (`_dns_fingerprints`)


@lru_cache(maxsize=4096)
def _index(pointer: str) -> int:
    digits = pointer.rsplit("[", 1)[-1].rstrip("]")
    return int(digits) if digits.isdigit() else 0


def _dns_mechanism(failure: str) -> tuple[str, float]:
    cls = failure_class(failure)
    if cls == "dns_nxdomain":
        return "dns.nxdomain", 0.6 if failure == "android_dns_cache_no_data" else 0.9
    if cls in ("dns_no_answer", "dns_error"):
        return "dns.nxdomain", 0.6  # forged negative answers: NODATA, REFUSED, SERVFAIL
    return "dns.drop", 0.8 if cls == "timeout" else 0.5


def _tcp_mechanism(failure: str) -> tuple[str, float]:
    cls = failure_class(failure)
    if cls in ("reset", "refused"):
        return "tcp.rst", 0.9
    return "tcp.drop", _TCP_CONFIDENCE.get(cls, 0.5)


_TCP_CONFIDENCE = {"timeout": 0.85, "unreachable": 0.6}


def _tls_mechanism(failure: str) -> tuple[str, float]:
    return _TLS_MECHANISMS.get(failure_class(failure), ("tls.rst", 0.5))


_TLS_MECHANISMS = {"reset": ("tls.rst", 0.9), "eof": ("tls.rst", 0.8), "timeout": ("tls.drop", 0.8),
                   "tls_cert": ("tls.mitm", 0.9)}


def step_mechanism(layer: str, failure: str) -> tuple[str, float]:
    """The mechanism, and its confidence, of one failed step at ``layer`` (``tcp``, ``tls``, ``http``)
    whose control succeeded: the rules the web_connectivity verdict applies to its own steps."""
    if layer == "tcp":
        return _tcp_mechanism(failure)
    if layer == "tls":
        return _tls_mechanism(failure)
    cls = failure_class(failure)
    if cls in ("reset", "eof"):
        return "http.rst", 0.85 if cls == "reset" else 0.8
    return ("http.drop", 0.8) if cls == "timeout" else ("none", 0.3)


def _http_mechanism(exchange: Exchange) -> tuple[str, float]:
    cls = failure_class(exchange.failure)
    if cls in ("reset", "eof"):
        return "http.rst", 0.85 if cls == "reset" else 0.8
    if cls == "timeout":
        # The response had started and then stalled: what throttling looks like.
        started = exchange.status_code > 0 or bool(exchange.body)
        return ("throttle", 0.5) if started else ("http.drop", 0.8)
    return "none", 0.3


def _primary(queries: Sequence[Query]) -> list[Query]:
    """The lookups the user's browser relies on: first response per question."""
    live = [q for q in queries if not q.late]
    chosen = [q for q in live if q.engine in SYSTEM_ENGINES]
    chosen = chosen or [q for q in live if q.engine not in ENCRYPTED_ENGINES] or live
    seen: set[tuple[object, ...]] = set()
    out = []
    for q in chosen:
        if q.key not in seen:
            seen.add(q.key)
            out.append(q)
    return out


def _http_expectation(obs: Observations) -> bool | None:
    """Did the control fetch the page? None when it did not say."""
    if obs.control is None or obs.control.http is None:
        return None
    return obs.control.http.failure is None


def _dns_failure(obs: Observations, q: Query, hop: bool) -> Finding | None:
    if q.failure is None or q.addrs:
        return None
    if q.query_type == "AAAA" and q.failure in NO_ANSWER_FAILURES:
        return None  # many sites have no IPv6 address
    control = obs.control
    if hop:  # no DNS control for redirect targets: the control's HTTP success stands in
        expectation = _http_expectation(obs)
        ctrl = "test_keys.control.http_request"
    else:
        no_dns = control is None or control.dns_addrs is None
        expectation = None if no_dns or control is None else control.resolved
        ctrl = "test_keys.control.dns"
    if expectation is None:
        return None
    mechanism, confidence = _dns_mechanism(q.failure)
    return Finding(STEP_DNS, mechanism, confidence, (q.pointer, ctrl), _index(q.pointer),
                   expected=not expectation, endpoint_control=not hop)


def _injection(obs: Observations, judge: AddressJudge, depth0: Sequence[Query],
               primary: Sequence[Query], tampered: bool) -> Finding | None:
    groups: dict[tuple[object, ...], list[Query]] = {}
    grouped = 0
    for q in depth0:
        if not q.encrypted:
            groups.setdefault(q.key, []).append(q)
            grouped += 1
    if not obs.late_responses and len(groups) == grouped:
        return None  # every question answered once: no duplicates to judge
    for late in obs.late_responses:
        # Exact question first; else the same name and type from the same resolver.
        key = late.key if late.key in groups else next(
            (k for k in groups if k[:4] == late.key[:4]), None)
        if key is not None:
            groups[key].append(late)
    primary_keys = {q.key for q in primary}
    for key, group in groups.items():
        first, others = group[0], [q for q in group[1:] if q.addrs]
        if first.late or not first.addrs or not others:
            continue
        if not (tampered or key in primary_keys):
            continue  # another resolver was tampered with, not the user's
        consistent = judge.consistent(first.addrs, first.hostname)
        if consistent is False:
            confidence = 0.95
        elif consistent is None and any(set(first.addrs).isdisjoint(o.addrs) for o in others):
            confidence = 0.7  # two different answers to one question, no control to tell which
        else:
            continue
        evidence = (first.pointer, *(o.pointer for o in others),
                    *(["test_keys.control.dns"] if obs.control is not None else []))
        return Finding(STEP_DNS, "dns.injection", confidence, evidence, _index(first.pointer))
    return None


def _dns_step(obs: Observations, judge: AddressJudge) -> DNSOutcome:
    """Tampering with the resolution of the input's host (hop 0)."""
    if not obs.host or is_ip(obs.host):
        return DNSOutcome()
    depth0 = [q for q in obs.queries if q.depth == 0 and q.hostname == obs.host]
    primary = _primary(depth0)
    poisoned = [q for q in primary if q.addrs and judge.consistent(q.addrs, q.hostname) is False]
    failed = [f for f in (_dns_failure(obs, q, hop=False) for q in primary) if f and not f.expected]
    suspect = frozenset(ip for q in poisoned for ip in q.addrs)
    injected = _injection(obs, judge, depth0, primary, bool(poisoned or failed))
    if injected is not None:
        addrs = (ip for q in depth0 if q.pointer == injected.evidence[0] for ip in q.addrs)
        return DNSOutcome(injected, suspect | frozenset(addrs))
    if poisoned:
        control = obs.control
        bogon = any(is_bogon(ip) for q in poisoned for ip in q.addrs)
        confidence = 0.95 if bogon else 0.9 if control is not None and control.resolved else 0.8
        # the control's answer where there is one (QA: a measurement the helper never answered pointed at it)
        evidence = (*(q.pointer for q in poisoned), *(["test_keys.control.dns"] if control is not None else []))
        return DNSOutcome(Finding(STEP_DNS, "dns.poison", confidence, evidence), suspect)
    if failed:
        return DNSOutcome(failed[0])
    return DNSOutcome()


def _control_pointer(kind: str, key: str) -> str:
    return f'test_keys.control.{kind}["{key}"]'


def _endpoint_expectation(obs: Observations, kind: str,
                          record: Connect | Handshake) -> tuple[bool | None, str, bool]:
    """(did the control succeed, pointer to its record, was it this very endpoint).

    The control measures hop 0's endpoints one by one; for redirect hops (and
    endpoints it was not told about) its HTTP success is the only expectation.
    """
    control = obs.control
    if record.depth == 0 and control is not None:
        if kind == "tcp_connect" and record.endpoint in control.tcp:
            return control.tcp[record.endpoint] is None, _control_pointer(kind, record.endpoint), True
        if kind == "tls_handshake" and record.endpoint in control.tls:
            return control.tls[record.endpoint][0] is None, _control_pointer(kind, record.endpoint), True
    return _http_expectation(obs), "test_keys.control.http_request", False


def _connect_finding(obs: Observations, c: Connect) -> Finding | None:
    if c.failure is None:
        return None
    if ":" in c.ip and failure_class(c.failure) == "unreachable":
        return None  # the probe has no IPv6: not censorship (ooni/probe#2284)
    expectation, ctrl, exact = _endpoint_expectation(obs, "tcp_connect", c)
    if expectation is None:
        return None
    mechanism, confidence = _tcp_mechanism(c.failure)
    return Finding(STEP_TCP, mechanism, confidence, (c.pointer, ctrl), _index(c.pointer),
                   expected=not expectation, endpoint_control=exact)


def _handshake_finding(obs: Observations, h: Handshake) -> Finding | None:
    if h.failure is None:
        return None
    expectation, ctrl, exact = _endpoint_expectation(obs, "tls_handshake", h)
    if expectation is None:
        return None
    mechanism, confidence = _tls_mechanism(h.failure)
    return Finding(STEP_TLS, mechanism, confidence, (h.pointer, ctrl), _index(h.pointer),
                   expected=not expectation, endpoint_control=exact)


def _exchange_finding(obs: Observations, e: Exchange) -> Finding | None:
    if e.failure is None:
        return None
    expectation = _http_expectation(obs)
    if expectation is None:
        return None
    mechanism, confidence = _http_mechanism(e)
    return Finding(STEP_HTTP, mechanism, confidence, (e.pointer, "test_keys.control.http_request"),
                   _index(e.pointer), expected=not expectation, endpoint_control=e.depth == 0)


def _hop_findings(obs: Observations, depth: int) -> list[Finding]:
    """Failures at one hop: on the path that fetched the page, else the side checks."""
    host = obs.hop_hosts[depth] if depth < len(obs.hop_hosts) else None
    queries = _primary([q for q in obs.queries if q.depth == depth and host in (None, q.hostname)])
    dns = [_dns_failure(obs, q, hop=depth > 0) for q in queries]

    def endpoints(on_path: bool) -> list[Finding | None]:
        connects = [c for c in obs.connects if c.depth == depth and c.fetch_body is on_path]
        handshakes = [h for h in obs.handshakes if h.depth == depth and h.fetch_body is on_path]
        return [*map(lambda c: _connect_finding(obs, c), connects),
                *map(lambda h: _handshake_finding(obs, h), handshakes)]

    fetch = [*endpoints(True), *(_exchange_finding(obs, e) for e in obs.exchanges if e.depth == depth)]
    chosen = fetch if any(fetch) else endpoints(False)
    return [f for f in (*dns, *chosen) if f is not None]


# --------------------------------------------------------------------------- verdicts


def _cannot_tell(evidence: Sequence[str] = (), fingerprints: Sequence[str] = ()) -> Verdict:
    return Verdict(None, None, "none", 0.0, "failure", tuple(evidence), tuple(fingerprints))


def _accessible(confidence: float, evidence: Sequence[str]) -> Verdict:
    return Verdict(False, True, "none", confidence, "ok", tuple(dict.fromkeys(evidence)))


def _website_down(evidence: Sequence[str]) -> Verdict:
    return Verdict(False, False, "none", 0.7, "ok", tuple(dict.fromkeys(evidence)))


def _blocked(blocking: str, mechanism: str, confidence: float, evidence: Sequence[str],
             fingerprints: Sequence[str] = ()) -> Verdict:
    return Verdict(blocking, False, mechanism, round(confidence, 2), "anomaly",
                   tuple(dict.fromkeys(evidence)), tuple(fingerprints))


def _from_findings(findings: Sequence[Finding], depth: int, fps: Sequence[str]) -> Verdict | None:
    """The earliest unexpected failure decides; failures shared with the control: site down."""
    unexpected = sorted((f for f in findings if not f.expected), key=lambda f: (f.step, f.order))
    if not unexpected:
        expected = [p for f in findings for p in f.evidence]
        return _website_down(expected) if expected else None
    first = unexpected[0]
    peers = [f for f in unexpected if f.step == first.step and f.mechanism == first.mechanism]
    evidence = [p for f in peers for p in f.evidence]
    confidence = first.confidence
    if not first.endpoint_control:
        confidence = max(0.3, confidence - REDIRECT_PENALTY)
    return _blocked(_blocking(first, depth), first.mechanism, confidence, evidence, fps)


def _blocking(finding: Finding, depth: int) -> str:
    """OONI's word for a failure: without per-endpoint control it says http-failure."""
    if finding.step == STEP_DNS:
        return "dns"
    if finding.step == STEP_TCP and depth == 0 and finding.endpoint_control:
        return "tcp_ip"
    return "http-failure"


def _final(obs: Observations, depth: int) -> Exchange | None:
    return next((e for e in obs.exchanges if e.depth == depth and e.is_final), None)


def _handshake_for(obs: Observations, e: Exchange) -> Handshake | None:
    return next((h for h in obs.handshakes if h.transaction_id is not None
                 and h.transaction_id == e.transaction_id), None)


def _judge_final(obs: Observations, final: Exchange) -> Verdict:
    """A page was fetched: HTTPS vouches for itself, HTTP is compared with the control."""
    if final.scheme == "https":
        handshake = _handshake_for(obs, final)
        return _accessible(0.9, [final.pointer, *([handshake.pointer] if handshake else [])])
    control = obs.control
    if control is None or control.http is None or control.http.failure is not None:
        return _cannot_tell([final.pointer, "test_keys.control.http_request"])
    diff = http_diff(final, control.http, obs.version)
    evidence = [final.pointer, "test_keys.control.http_request"]
    if not diff.is_diff:
        return _accessible(0.8, evidence)
    confidence = 0.6 if diff.status_code_match is False else 0.5
    return _blocked("http-diff", "http.blockpage", confidence, evidence)


def _scan_fingerprints(obs: Observations,
                       matcher: BlockpageMatcher | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(fingerprint ids, pointers of the responses they matched)."""
    if matcher is None:
        return (), ()
    ids: dict[str, None] = {}
    pointers: list[str] = []
    for e in obs.exchanges:
        if e.status_code <= 0 and not e.body:
            continue
        if _authenticated_site_page(obs, e):
            continue
        matched = [str(i) for i in matcher(e.text(), e.header_map())]
        if matched and not _the_controls_page(obs, e):
            ids.update(dict.fromkeys(matched))
            pointers.append(e.pointer)
    return tuple(ids), tuple(pointers)


def _the_controls_page(obs: Observations, e: Exchange) -> bool:
    """A cleartext page that is the one the control fetched: the same status, a body as long (OONI's 0.7) and the
    same title, one with words to compare (or both pages empty, with no title and nothing to read). What a fingerprint matched in it is the site's own text (a review of a filtering product, an
    article quoting a blockpage, a forum's "Access denied"), not a blockpage: a censor's page is not the control's,
    whose helper fetches the site from outside the censored network. (A fingerprint still decides where the control
    failed or is absent.)"""
    control = obs.control
    if control is None or control.http is None or control.http.failure is not None:
        return False
    diff = http_diff(e, control.http, obs.version)
    if diff.status_code_match is not True or diff.body_length_match is not True:
        return False
    if diff.title_match is True and title_words(e._title):
        return True  # the same words of five bytes or more, and there are some (OONI's rule holds for none: "MTC")
    # neither has a title, and this one is empty (no more than a few bare tags): what else would tell them apart
    return not e._title.strip() and not (control.http.title or "").strip() and _empty(e.text())


EMPTY_PAGE = 64  # characters, white space aside: Citizen Lab's empty pages are 13-52 ("<HTML></HTML>")


def _empty(page: str) -> bool:
    """Whether a page is empty: a few bare tags (`EMPTY_PAGE` characters at most, white space aside) and nothing to
    read between them. (A page of one image and a link is no empty page: Myanmar's blockpage is that.)"""
    bare = "".join(page[:4096].split())
    return len(bare) <= EMPTY_PAGE and not any(c.isalnum() for c in _TAGS.sub("", bare))


def _authenticated_site_page(obs: Observations, e: Exchange) -> bool:
    """A response from the tested host itself over TLS that verified for it: the site's own
    page, not an injected one, so the fingerprint scan (the costliest step) is skipped.
    Cleartext pages are scanned; what matched in one that is the control's page does not count
    (`_the_controls_page`)."""
    if e.scheme != "https" or e.host != obs.host or e.status_code // 100 != 2:
        return False
    h = _handshake_for(obs, e)
    return h is not None and h.failure is None and h.verified and h.server_name == obs.host


def _dns_verdict(dns: DNSOutcome, fps: Sequence[str]) -> Verdict:
    finding = dns.finding
    assert finding is not None
    confidence = max(finding.confidence, 0.95) if dns.fingerprints else finding.confidence
    return _blocked("dns", finding.mechanism, confidence, finding.evidence, (*fps, *dns.fingerprints))


def _dns_fingerprints(obs: Observations, dns: DNSOutcome, matcher: BlockpageMatcher | None,
                      country: str) -> DNSOutcome:
    """``dns`` with the DNS fingerprints its suspect addresses match (Citizen Lab's: a filter's or an ISP's block
    address, known from the measurement's country or from none in particular). Without a control, an answer that
    is such an address is a finding of its own (dns.poison), as OONI's fastpath takes one; with a control, the
    control's judgement of the answers stands."""
    if matcher is None or not callable(getattr(matcher, "dns", None)):
        return dns
    match = cast(DNSMatcher, matcher)
    if dns.finding is not None:
        addrs = sorted(dns.suspect)
        ids = tuple(match.dns(addrs, country)) if addrs else ()
        return replace(dns, fingerprints=ids) if ids else dns
    if obs.control is not None or not obs.host or is_ip(obs.host):
        return dns
    primary = _primary([q for q in obs.queries if q.depth == 0 and q.hostname == obs.host])
    matched = {a for q in primary for a in q.addrs if match.dns([a], country)}
    if not matched:
        return dns
    lied = [q for q in primary if matched.intersection(q.addrs)]
    finding = Finding(STEP_DNS, "dns.poison", 0.9, tuple(q.pointer for q in lied), _index(lied[0].pointer))
    return DNSOutcome(finding, dns.suspect | frozenset(matched), tuple(match.dns(sorted(matched), country)))


def _suspect_page_matches(obs: Observations, dns: DNSOutcome) -> Exchange | None:
    """The page fetched from a suspicious address is the control's page (OONI: accessible).

    Stricter than OONI: matching header names alone do not forgive a suspicious
    answer; the status and the body length or the title must match too.
    """
    final = _final(obs, obs.max_depth)
    control = obs.control
    if final is None or final.ip not in dns.suspect or control is None or control.http is None:
        return None
    if control.http.failure is not None:
        return None
    diff = http_diff(final, control.http, obs.version)
    if diff.status_code_match is not True or not (diff.body_length_match or diff.title_match):
        return None
    return final


def _decide_v05(obs: Observations, matcher: BlockpageMatcher | None, country: str) -> Verdict:
    judge = AddressJudge(obs, use_tls=True)
    dns = _dns_fingerprints(obs, _dns_step(obs, judge), matcher, country)
    fps, fp_pointers = _scan_fingerprints(obs, matcher)
    if obs.control is None:
        return _without_control(obs, dns, fps, fp_pointers)
    if dns.finding is not None:
        page = None if fps else _suspect_page_matches(obs, dns)
        if page is None:
            return _dns_verdict(dns, fps)
        return _accessible(0.6, [page.pointer, "test_keys.control.http_request", *dns.finding.evidence])
    if fps:
        return _blocked("http-diff", "http.blockpage", 0.95, fp_pointers, fps)
    depth = obs.max_depth
    final = _final(obs, depth)
    if final is not None:
        return _judge_final(obs, final)
    verdict = _from_findings(_hop_findings(obs, depth), depth, fps)
    if verdict is not None:
        return verdict
    if _http_expectation(obs) is False:
        return _website_down(["test_keys.control.http_request"])
    return _cannot_tell()


def _without_control(obs: Observations, dns: DNSOutcome, fps: Sequence[str],
                     fp_pointers: Sequence[str]) -> Verdict:
    """OONI says None/None without a control, unless the probe's evidence is conclusive."""
    if dns.finding is not None:  # without a control, only bogons and duplicates are findings
        return _dns_verdict(dns, fps)
    if fps:
        return _blocked("http-diff", "http.blockpage", 0.95, fp_pointers, fps)
    final = _final(obs, obs.max_depth)
    if final is not None and final.scheme == "https":
        return _accessible(0.8, [final.pointer])
    return _cannot_tell(["test_keys.control_failure"] if obs.control_failure else [])


# --------------------------------------------------------------------------- v0.4


def _v04_consistency(obs: Observations, judge: AddressJudge) -> bool | None:
    """Web Connectivity v0.4's dns_consistency: addresses, then ASNs, no TLS."""
    if is_ip(obs.host):
        return True
    control = obs.control
    if control is None or control.dns_addrs is None:
        return None
    primary = _primary([q for q in obs.queries if q.depth == 0 and q.hostname == obs.host])
    addrs = [ip for q in primary for ip in q.addrs]
    failure = next((q.failure for q in primary if q.failure and not
                    (q.query_type == "AAAA" and q.failure in NO_ANSWER_FAILURES)), None)
    if failure and control.dns_failure:
        return control.dns_failure in NXDOMAIN_FAILURES and failure in NXDOMAIN_FAILURES
    return bool(addrs) and judge.consistent(addrs, obs.host) is True


def _v04_request_failure(obs: Observations, final: Exchange, fps: Sequence[str]) -> Verdict:
    """v0.4 only saw the HTTP failure string; find the step it happened in."""
    failure = final.failure or ""
    cls = failure_class(failure)
    evidence = [final.pointer, "test_keys.control.http_request"]
    if failure == "dns_nxdomain_error":
        return _blocked("dns", "dns.nxdomain", 0.75, evidence, fps)
    if cls not in ("refused", "reset", "eof", "timeout", "tls_cert"):
        return _cannot_tell(evidence, fps)
    handshake = next(
        (h for h in obs.handshakes if h.failure == failure and h.server_name == final.host), None)
    connect = next((c for c in obs.connects if c.failure == failure), None)
    if cls == "refused" or (connect is not None and handshake is None):
        mechanism, confidence = _tcp_mechanism(failure)
        evidence += [connect.pointer] if connect else []
    elif cls == "tls_cert" or handshake is not None:
        mechanism, confidence = _tls_mechanism(failure)
        evidence += [handshake.pointer] if handshake else []
    else:
        mechanism, confidence = _http_mechanism(final)
    return _blocked("http-failure", mechanism, confidence - 0.1, evidence, fps)


def _decide_v04(obs: Observations, matcher: BlockpageMatcher | None, country: str) -> Verdict:
    judge = AddressJudge(obs, use_tls=False)
    dns = _dns_fingerprints(obs, _dns_step(obs, judge), matcher, country)
    fps, fp_pointers = _scan_fingerprints(obs, matcher)
    consistent = _v04_consistency(obs, judge)
    if fps:
        if consistent is False and dns.finding is not None:
            return _dns_verdict(dns, fps)
        return _blocked("http-diff", "http.blockpage", 0.95, fp_pointers, fps)
    final = obs.exchanges[-1] if obs.exchanges else None
    if final is not None and final.failure is None and final.scheme == "https":
        return _accessible(0.9, [final.pointer])
    if obs.control is None:
        return _without_control(obs, dns, fps, fp_pointers)
    primary = _primary([q for q in obs.queries if q.depth == 0 and q.hostname == obs.host])
    nxdomain = next((q for q in primary if q.failure in NXDOMAIN_FAILURES), None)
    if nxdomain is not None and consistent:
        return _accessible(0.6, [nxdomain.pointer, "test_keys.control.dns"])  # MK: "site gone"
    if consistent is False and (dns.finding is not None or obs.control.resolved):
        # Without a finding, "inconsistent" may only mean the control resolved nothing either: a lookup failure
        # it shares says the site is down, not that DNS is blocked (OONI's v0.4 does not blame DNS for it).
        if dns.finding is not None:
            return _dns_verdict(dns, fps)
        failed = next((q for q in primary if q.failure), None)
        mechanism, confidence = _dns_mechanism(failed.failure or "") if failed else ("dns.poison", 0.8)
        evidence = [q.pointer for q in primary] + ["test_keys.control.dns"]
        return _blocked("dns", mechanism, confidence - 0.3, evidence)
    if obs.connects and all(c.failure for c in obs.connects) and consistent is not None:
        mechanism, confidence = _tcp_mechanism(obs.connects[0].failure or "")
        return _blocked("tcp_ip", mechanism, confidence, [c.pointer for c in obs.connects])
    control_http = obs.control.http
    if control_http is None or control_http.failure is not None or final is None:
        return _cannot_tell(["test_keys.control.http_request"])
    if final.failure is not None:
        return _v04_request_failure(obs, final, fps)
    return _judge_final(obs, final)


# --------------------------------------------------------------------------- overlays & entry


def _overlays(verdict: Verdict, tk: Mapping[str, Any]) -> Verdict:
    throttle = tk.get("x_throttle")
    if isinstance(throttle, Mapping) and throttle.get("throttled") is True:
        given = throttle.get("confidence")
        confidence = float(given) if isinstance(given, (int, float)) and 0 <= given <= 1 else 0.8
        stalled = verdict.mechanism in ("http.drop", "throttle")
        if (verdict.mechanism == "none" and verdict.accessible is True) or stalled:
            return replace(verdict, mechanism="throttle", status="anomaly",
                           confidence=max(confidence, verdict.confidence if stalled else 0.0),
                           evidence=(*verdict.evidence, "test_keys.x_throttle"))
    if verdict.mechanism == "throttle" and (stall := frozen_connection(tk)) is not None:
        # A response that started and then stopped dead: frozen after a few kilobytes, not slowed down.
        confidence = round(FREEZE_CONFIDENCE + 0.1 * _control_had_more(tk, stall), 2)
        return replace(verdict, mechanism="tcp.freeze", confidence=confidence,
                       evidence=(*verdict.evidence, "test_keys.network_events"))
    quic = _quic_drop(tk)
    if quic and verdict.mechanism == "none" and verdict.accessible is True:
        return replace(verdict, mechanism="quic.drop", status="anomaly", confidence=0.7,
                       evidence=(*verdict.evidence, *quic))
    if tk.get("x_middlebox_tampering") is True and verdict.mechanism == "none" \
            and not isinstance(verdict.blocking, str):
        return replace(verdict, mechanism="middlebox", status="anomaly", confidence=0.6,
                       evidence=(*verdict.evidence, "test_keys.x_middlebox_tampering"))
    return verdict


FREEZE_CONFIDENCE = 0.7  # 0.8 when the control fetched more of the body than arrived


def _control_had_more(tk: Mapping[str, Any], stall: Stall) -> bool:
    """Whether the control's fetch got a longer body than the frozen connection delivered."""
    control = tk.get("control")
    http = control.get("http_request") if isinstance(control, Mapping) else None
    length = http.get("body_length") if isinstance(http, Mapping) else None
    return isinstance(length, int) and not isinstance(length, bool) and length > stall.body


INNOCENT_TAG = "x_innocent_sni"  # a probe's handshake with an innocent name, to tell what triggered a drop


def quic_completed(record: Mapping[str, Any]) -> bool:
    """Whether a ``quic_handshakes`` record's handshake completed, its certificate aside: no failure, or a
    certificate failure after an ALPN was negotiated (the server answered in full, for another name). A TLS alert
    without a negotiated ALPN is not: anyone can forge a close in an Initial packet, whose keys are public."""
    failure = record.get("failure")
    if failure is None:
        return True
    return isinstance(failure, str) and failure.startswith("ssl_") and bool(record.get("negotiated_protocol"))


def _quic_drop(tk: Mapping[str, Any]) -> list[str]:
    """QUIC handshakes that timed out where the control's succeeded (HTTP/3 blocked); a probe's own check with an
    innocent name (tagged ``INNOCENT_TAG``) is not one of them."""
    control = tk.get("control")
    expected = control.get("quic_handshake") if isinstance(control, Mapping) else None
    if not isinstance(expected, Mapping):
        return []
    out = []
    records = tk.get("quic_handshakes")
    for i, h in enumerate(records if isinstance(records, list) else []):
        # hostile records: a failure or an address that is no string is absent (a list is no dict key)
        if not isinstance(h, Mapping) or failure_class(_failure(h.get("failure"))) != "timeout":
            continue
        tags = h.get("tags")
        if isinstance(tags, list) and INNOCENT_TAG in tags:
            continue
        address = _str(h.get("address"))
        ctrl = expected.get(address)
        if isinstance(ctrl, Mapping) and ctrl.get("status") is True and not ctrl.get("failure"):
            out += [f"test_keys.quic_handshakes[{i}]", _control_pointer("quic_handshake", address)]
    return out


def web_connectivity_verdict(measurement: Mapping[str, Any],
                             match_blockpage: BlockpageMatcher | None = None) -> Verdict:
    """Re-derive the verdict of one web_connectivity measurement from its raw records.

    Stored ``blocking``/``accessible``/``dns_consistency``/``*_match`` are ignored.
    Measurements with ``test_version`` 0.4.x follow v0.4's rules (no TLS validation
    of addresses); everything else follows v0.5's.
    """
    return verdict_from(observe(measurement), measurement, match_blockpage)


def verdict_from(obs: Observations, measurement: Mapping[str, Any],
                 match_blockpage: BlockpageMatcher | None = None) -> Verdict:
    """`web_connectivity_verdict` for observations already made (saves a second `observe`)."""
    decide = _decide_v04 if obs.version < (0, 5) else _decide_v05
    country = measurement.get("probe_cc")
    verdict = decide(obs, match_blockpage, country if isinstance(country, str) else "")
    tk = measurement.get("test_keys")
    tk = tk if isinstance(tk, Mapping) else {}
    return _overlays(_residual(verdict, obs, tk), tk)


def _residual(verdict: Verdict, obs: Observations, tk: Mapping[str, Any]) -> Verdict:
    """A step blocked where the same run's censor had just acted on another measurement's connection to the same
    address and port (``x_residual``, the probe's record of it) says nothing of this URL: a censor with residual
    blocking drops or resets every packet there for a while, whatever it carries. When every failed step that
    decided the verdict is one of those, the measurement could not tell (a failure), and the probe measures it
    again once the hold is over."""
    layer = _RESIDUAL_LAYERS.get(verdict.mechanism)
    held = tk.get("x_residual") if layer is not None else None
    if not held or not isinstance(held, list):
        return verdict
    endpoints = {_str(h.get("endpoint")) for h in held if isinstance(h, Mapping) and h.get("step") == layer
                 and _held_seconds(h.get("seconds_after"))}
    steps: Sequence[Connect | Handshake | Exchange]
    if layer == "tcp_connect":
        steps = obs.connects
    elif layer == "tls_handshake":
        steps = obs.handshakes
    else:
        steps = obs.exchanges
    failed = [x for x in steps if x.depth == 0 and x.failure is not None]
    if not failed or any(_step_endpoint(x) not in endpoints for x in failed):
        return verdict
    return _cannot_tell((*verdict.evidence, "test_keys.x_residual"), verdict.fingerprints)


def _held_seconds(value: Any) -> bool:
    """A ``seconds_after`` a hold can have lasted: a number from 0 to `RESIDUAL_MAX` (a record saying 10,000 s,
    crafted or another tool's, hides nothing)."""
    return type(value) in (int, float) and 0 <= value <= RESIDUAL_MAX


RESIDUAL_MAX = 3600.0  # seconds: the longest hold a probe waits for (`run --residual-wait`'s bound)
_RESIDUAL_LAYERS = {"tcp.drop": "tcp_connect", "tcp.rst": "tcp_connect", "tls.rst": "tls_handshake",
                    "tls.drop": "tls_handshake", "http.rst": "http_request", "http.drop": "http_request"}


def _step_endpoint(step: Connect | Handshake | Exchange) -> str | None:
    if isinstance(step, Exchange):
        return endpoint(step.ip, url_port(step.url)) if step.ip else None
    return step.endpoint


__all__ = [
    "INNOCENT_TAG", "MECHANISMS", "quic_completed", "OONI_BLOCKING", "STATUSES", "BlockpageMatcher", "Verdict",
    "failure_class", "verdict_from", "web_connectivity_verdict",
]
