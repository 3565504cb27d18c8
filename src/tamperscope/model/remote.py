"""Verdicts of remote measurement: interference seen from outside the country, through its own servers.

Censored Planet's method: no volunteer inside. A measurer outside the censored network
asks in-country infrastructure (open DNS resolvers, web servers) about each domain, and
the censor, which filters traffic in both directions, shows itself on the way in. Two
nettests record it (nettests/remote_dns.py, nettests/remote_web.py); these functions
re-derive their verdicts from the raw records alone, so `analyze` reaches the probe's.

Every record a remote nettest writes carries a role in its ``tags``:

- ``vantage_before``/``vantage_after``: the vantage answering an innocuous control domain,
  before and after the test. Without a good answer before, the vantage is down or no
  resolver/server at all: the measurement is a failure, never a verdict on the domain.
- ``test``: the domain, through the vantage (several attempts: remote vantages are lossy).
- ``control``: the domain through a trusted resolver outside (remote_dns); ``control_domain``:
  the control domain through the same trusted resolver.
- ``validate``: a TLS handshake (and HTTP fetch) to an address the vantage answered that the
  control did not, with the domain as SNI (Satellite's HTTPS validation).
- remote_web adds the protocol, ``http``, ``https``, ``quic``, ``echo``, ``echo_tls`` or ``echo_ech``, to each
  record's tags.

remote_dns, in order:
1. The vantage did not resolve the control domain before the test, or its answer shares no
   address and no AS number with the trusted resolver's for the same control domain (a
   resolver that hijacks every name; Satellite drops such resolvers): failure.
2. The first answer holds no address consistent with the control (the control's own
   addresses, an address in one of their AS numbers, or an address that completed a
   verified TLS handshake for the domain; bogons are consistent only when the control
   named them): ``dns.injection`` when another answer to the same query followed (0.95:
   a resolver answers once; the late answer is often forged too, the resolver's own
   upstream query having been injected),
   else ``dns.poison`` (0.8; 0.95 when a blockpage fingerprint matched the page served
   from that address). A consistent first answer followed by an inconsistent late one:
   ``dns.injection`` at 0.7 (the injector lost the race).
3. No address in any attempt while the control resolves: ``dns.nxdomain`` for a negative
   answer (NXDOMAIN, REFUSED, SERVFAIL, no data; a truncated reply is none of these, and
   attempts answered only that way are a failure), ``dns.drop`` when every attempt timed out
   (0.6 when the vantage answered the control domain again afterwards, else 0.4).
4. Without a control answer nothing but an injection can be told: failure; except where the trusted
   resolver said the domain does not exist (NXDOMAIN) and the vantage gave an address no public server has
   (a bogon), or one whose page a blockpage fingerprint knows: ``dns.poison`` (0.8), "ghost" DNS, as
   web_connectivity reads it. A public address alone stays a failure: many open resolvers answer every name
   that does not exist with their own ad server's.

Censored Planet's Satellite lines (analysis/censoredplanet.py) carry no trusted resolver's
answer: Satellite compared each answer with those of its own control resolvers, and the
addresses it found consistent (``x_consistent``: the address, its page's or certificate's
hash, or its AS matched) count as the control's would, while ``x_control_answered`` (a
control resolver answered the domain) stands for a control answer in rules 2-4. The pages
Satellite fetched from the answers' addresses (its ``blockpages.json``) are ``validate``
records, as our nettest's validation: a fingerprint on one confirms rule 2's poisoning, and a
trusted certificate naming the domain makes its address consistent. Satellite v2.1 kept no record of
its control-domain queries, only whether both were answered (``passed_control``): that flag,
``x_vantage_alive``, stands for the answers before and after in rules 1 and 3. Satellite v1 queried
no control domain beside each domain: it chose, at the scan's start, the resolvers that answered
its probe domain rightly; that choice, ``x_vantage_vetted``, stands for rule 1's answer before.

remote_web, for each protocol, then the strongest:
1. The vantage did not serve the control domain before the test: failure for that protocol.
   Censored Planet's Hyperquack v1 probed the control domain only after the domain's probes
   failed (``x_control_after_only``): there a completed probe, of the domain or of the
   control after it, stands for the one before.
2. An attempt that completed: a blockpage fingerprint on its response is ``http.blockpage``
   (0.95); otherwise not blocked (0.85). The server need not host the domain: a different
   page is not interference, only a failure or a known blockpage is. Censored Planet's data
   says more (analysis/censoredplanet.py): each answer was compared with the page the vantage
   serves any name, its template; when every completed attempt's record says it did not match
   (``x_matches_template`` false) and no fingerprint knows the page, ``http.blockpage`` at 0.5,
   as web_connectivity's page that differs from the control's. An HTTPS attempt's page is the
   ``requests`` record with its transaction id (our nettest fetches none).
3. No attempt completed, and one failed after the domain was sent (in the HTTP round
   trip, or the TLS handshake carrying the SNI): reset or EOF is ``http.rst``/``tls.rst``
   (0.9 when the vantage served the control domain again afterwards, else 0.85: residual
   blocking), a timeout ``http.drop``/``tls.drop`` (0.75, else 0.5). Failures that stop
   before the domain is sent (the TCP connect) name no domain: failure (often residual
   blocking after an earlier test).
4. ``echo`` (Quack: a GET naming the domain sent to the vantage's echo service, its
   ``x_echo`` record what came back): the very bytes back is not blocked (0.85); a reset
   or a close is ``http.rst``, silence ``http.drop`` (as in 3); other bytes are
   ``http.blockpage`` when a fingerprint matches them (0.95), else ``middlebox`` (0.6: the
   request was altered or answered on the way, and the same echo service sent the control
   domain's request back intact). ``echo_tls`` is the same with a ClientHello naming the
   domain as its SNI (``middlebox`` here says ``blocking`` "http-diff": the request naming the domain did not
   come back, where web_connectivity's middlebox is a proxy that let the site through, ``false``), and
   ``echo_ech`` with the ClientHello with Encrypted Client Hello a
   browser sends the domain: a reset or a close is ``tls.rst``, silence ``tls.drop``.
   ``discard`` (Censored Planet's Quack only) is ``echo`` where nothing back is the service's
   answer: other bytes, a reset or a close are judged as for ``echo``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from . import failures as F
from .consistency import _records
from .verdict import OONI_BLOCKING, BlockpageMatcher, Verdict, failure_class, quic_completed
from .webparts import body_bytes, header_pairs, is_bogon

BEFORE, AFTER, TEST, CONTROL, VALIDATE = "vantage_before", "vantage_after", "test", "control", "validate"
CONTROL_DOMAIN = "control_domain"  # the trusted resolver's answer for the control domain
PROTOCOLS = ("http", "https", "quic", "echo", "echo_tls", "echo_ech")
# judged, and "discard" too: Quack's other service, which sends nothing back (read from Censored Planet's data,
# analysis/censoredplanet.py; the nettest does not measure it)
JUDGED = (*PROTOCOLS, "discard")
_ECHOES = ("echo", "echo_tls", "echo_ech", "discard")  # steps whose record is in x_echo
ECHO_MISMATCH = F.ECHO_MISMATCH  # an echo service's answer that is not the bytes sent
NEGATIVE = frozenset({"dns_nxdomain", "dns_no_answer", "dns_error"})  # failure classes of a negative answer


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _tags(record: Mapping[str, Any]) -> frozenset[str]:
    tags = record.get("tags")
    return frozenset(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else frozenset()


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _address(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _host_of(address: Any) -> str | None:
    """The IP address of an "ip:port" or "[ip]:port" endpoint."""
    if not isinstance(address, str) or ":" not in address:
        return None
    return _address(address.rsplit(":", 1)[0].removeprefix("[").removesuffix("]"))


def _answers(query: Mapping[str, Any]) -> list[str]:
    """The A/AAAA addresses of one DNS record (OONI's answer objects)."""
    out: list[str] = []
    for _, a in _records(query.get("answers")):
        ip = _address(a.get("ipv4")) or _address(a.get("ipv6"))
        if ip is not None and ip not in out:
            out.append(ip)
    return out


def truncated(query: Mapping[str, Any]) -> bool:
    """A reply with the TC bit: "ask again over TCP", not an answer (rate-limiting resolvers send them empty)."""
    raw = query.get("raw_response")
    if not isinstance(raw, str):
        return False
    try:
        head = base64.b64decode(raw[:8], validate=False)
    except (binascii.Error, ValueError):
        return False
    return len(head) >= 3 and bool(head[2] & 0x02)


def _verdict(blocking: Any, accessible: Any, mechanism: str, confidence: float, status: str,
             evidence: Sequence[str], fingerprints: Sequence[str] = ()) -> Verdict:
    return Verdict(blocking, accessible, mechanism, round(min(max(confidence, 0.0), 1.0), 2), status,
                   tuple(dict.fromkeys(evidence)), tuple(dict.fromkeys(fingerprints)))


def _failure(evidence: Sequence[str] = ()) -> Verdict:
    return _verdict(None, None, "none", 0.0, "failure", evidence)


def _blocked(mechanism: str, confidence: float, evidence: Sequence[str], fingerprints: Sequence[str] = ()) -> Verdict:
    return _verdict(OONI_BLOCKING[mechanism], False, mechanism, confidence, "anomaly", evidence, fingerprints)


def _matches(matcher: BlockpageMatcher | None, response: Mapping[str, Any]) -> list[str]:
    if matcher is None or not response:
        return []
    body = body_bytes(response.get("body")).decode("utf-8", errors="replace")
    return [str(i) for i in matcher(body, dict(header_pairs(response)))]


# --------------------------------------------------------------------------- remote_dns


def remote_dns_verdict(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None = None) -> Verdict:
    tk = _mapping(measurement.get("test_keys"))
    queries = _records(tk.get("queries"))
    role = {i: _tags(q) for i, q in queries}
    before = [(i, q) for i, q in queries if BEFORE in role[i]]
    alive = tk.get("x_vantage_alive") is True  # Satellite v2.1: both control queries answered, neither kept
    vetted = tk.get("x_vantage_vetted") is True  # Satellite v1: chosen at the scan's start for a right answer
    if not alive and not vetted and not any(_answers(q) for _, q in before):
        return _failure([f"test_keys.queries[{i}]" for i, _ in before] or ["test_keys.queries"])
    control = [(i, q) for i, q in queries if CONTROL in role[i]]
    tests = [(i, q) for i, q in queries if TEST in role[i]]
    after_alive = alive or any(_answers(q) for i, q in queries if AFTER in role[i])
    good = {ip for _, q in control if not _text(q.get("failure")) for ip in _answers(q)}
    asn_of = {ip: n for ip, n in _mapping(tk.get("x_asn")).items()
              if isinstance(n, int) and not isinstance(n, bool) and n > 0}
    good_asns = {asn_of[ip] for ip in good if ip in asn_of}
    liar = _lies_about_the_control_domain(queries, role, before, asn_of)
    if liar:
        return _failure(liar)
    validated, fingerprints, fp_evidence = _validation(tk, matcher)
    # Censored Planet's Satellite compared the answers with its own control resolvers' (analysis/censoredplanet.py):
    # the addresses it found consistent, and whether a control resolver answered the domain at all
    given = tk.get("x_consistent")
    agreed = {ip for ip in given if isinstance(ip, str)} if isinstance(given, list) else set()
    cp_control = tk.get("x_control_answered") is True

    def consistent(ip: str) -> bool:
        if ip in good or ip in validated or ip in agreed:
            return True
        return not is_bogon(ip) and asn_of.get(ip) in good_asns

    duplicates = [(i, d) for i, d in _records(tk.get("x_dns_duplicate_responses")) if TEST in _tags(d)]
    for i, q in tests:
        first = _answers(q)
        if not first or _text(q.get("failure")):
            continue
        late = [(j, d) for j, d in duplicates if d.get("transaction_id") == q.get("transaction_id")]
        ev = [f"test_keys.queries[{i}]", *(f"test_keys.x_dns_duplicate_responses[{j}]" for j, _ in late)]
        if not good and not validated and not cp_control:
            if any(set(_answers(d)) != set(first) for _, d in late):
                # two different answers to one question: one of them is forged, whatever the control
                return _blocked("dns.injection", 0.8, ev)
            if control and all(failure_class(_text(q.get("failure"))) == "dns_nxdomain" for _, q in control) \
                    and (fingerprints or any(is_bogon(ip) for ip in first)):
                # an address no public server has, or a known blockpage's, for a name the trusted resolver says
                # does not exist: "ghost" DNS, as web_connectivity reads it (QA: a forged answer for nx.google.com,
                # cached by the vantage, was a failure). A public address alone is not: many open resolvers answer
                # every name that does not exist with their own ad server's (adversarial QA)
                return _blocked("dns.poison", 0.8, [*ev, *(f"test_keys.queries[{j}]" for j, _ in control),
                                                     *fp_evidence], fingerprints)
            return _failure([*ev, *(f"test_keys.queries[{j}]" for j, _ in control)])
        if not any(consistent(ip) for ip in first):
            if late:  # a resolver answers once: the first of several answers, inconsistent, was forged
                return _blocked("dns.injection", 0.95, [*ev, *fp_evidence], fingerprints)
            return _blocked("dns.poison", 0.95 if fingerprints else 0.8, [*ev, *fp_evidence], fingerprints)
        if any(not consistent(ip) for _, d in late for ip in _answers(d)):
            return _blocked("dns.injection", 0.7, ev)
        return _verdict(False, True, "none", 0.9, "ok", ev)
    ev = [f"test_keys.queries[{i}]" for i, _ in tests]
    tests = [(i, q) for i, q in tests if not truncated(q)]  # no answer at all: neither negative nor silent
    if not tests:
        return _failure(ev or ["test_keys.queries"])
    if not good and not cp_control:
        negative = all(failure_class(_text(q.get("failure"))) in NEGATIVE for _, q in tests) and any(
            failure_class(_text(q.get("failure"))) == "dns_nxdomain" for _, q in control)
        if negative:  # the domain does not exist, in the country or out of it
            return _verdict(False, False, "none", 0.7, "ok", ev)
        return _failure([*ev, *(f"test_keys.queries[{j}]" for j, _ in control)])
    classes = [failure_class(_text(q.get("failure"))) for _, q in tests]
    if any(c in NEGATIVE for c in classes) or any(c == "ok" for c in classes):  # "ok": an answer without addresses
        return _blocked("dns.nxdomain", 0.7, ev)
    if all(c == "timeout" for c in classes):
        return _blocked("dns.drop", 0.6 if after_alive else 0.4, ev)
    return _failure(ev)


def _lies_about_the_control_domain(queries: list[tuple[int, Mapping[str, Any]]], role: Mapping[int, frozenset[str]],
                                   before: list[tuple[int, Mapping[str, Any]]], asn_of: Mapping[str, int]) -> list[str]:
    """Pointers showing that the vantage's answer for the control domain shares nothing with the trusted
    resolver's (no address, no AS number; bogons never count): a resolver that hijacks every name, whose
    answer for the domain says nothing about censorship. Empty when it agrees, or when there is nothing to
    compare with (older measurements, a trusted resolver that did not answer)."""
    trusted = [(i, q) for i, q in queries if CONTROL_DOMAIN in role[i] and not _text(q.get("failure"))]
    reference = {ip for _, q in trusted for ip in _answers(q)}
    if not reference:
        return []
    reference_asns = {asn_of[ip] for ip in reference if ip in asn_of}
    given = [(i, q) for i, q in before if _answers(q)]
    agrees = any(ip in reference or (not is_bogon(ip) and asn_of.get(ip) in reference_asns)
                 for _, q in given for ip in _answers(q))
    if agrees:
        return []
    return [*(f"test_keys.queries[{i}]" for i, _ in given), *(f"test_keys.queries[{i}]" for i, _ in trusted)]


def vantage_lies(tk: Mapping[str, Any]) -> bool:
    """Whether these records show a vantage that lies about the control domain (rule 1's second half)."""
    queries = _records(tk.get("queries"))
    role = {i: _tags(q) for i, q in queries}
    before = [(i, q) for i, q in queries if BEFORE in role[i]]
    asn_of = {ip: n for ip, n in _mapping(tk.get("x_asn")).items()
              if isinstance(n, int) and not isinstance(n, bool) and n > 0}
    return bool(_lies_about_the_control_domain(queries, role, before, asn_of))


def _validation(tk: Mapping[str, Any], matcher: BlockpageMatcher | None) -> tuple[set[str], list[str], list[str]]:
    """(addresses that completed a verified TLS handshake for the domain, fingerprint ids matched by the
    pages those addresses served, pointers to those pages)."""
    validated: set[str] = set()
    for _, h in _records(tk.get("tls_handshakes")):
        if VALIDATE in _tags(h) and h.get("failure") is None and h.get("x_verified") is True \
                and h.get("no_tls_verify") is not True:
            ip = _host_of(h.get("address"))
            if ip is not None:
                validated.add(ip)
    fingerprints: list[str] = []
    pointers: list[str] = []
    for i, r in _records(tk.get("requests")):
        if VALIDATE not in _tags(r):
            continue
        matched = _matches(matcher, _mapping(r.get("response")))
        if matched:
            fingerprints.extend(matched)
            pointers.append(f"test_keys.requests[{i}]")
    return validated, fingerprints, pointers


# --------------------------------------------------------------------------- remote_web


def _tx(record: Mapping[str, Any]) -> int | None:
    tx = record.get("transaction_id")
    return tx if type(tx) is int else None  # a list or an object from hostile input is no key


class _Attempt:
    """One connection of remote_web: its connect, handshake and request records (by transaction id)."""

    __slots__ = ("role", "step", "failure", "pointer", "response", "order", "mismatch")

    def __init__(self, role: str, order: float) -> None:
        self.role = role
        self.order = order
        self.step = "connect"  # how far it got: connect, tls, http, done
        self.failure: str | None = None
        self.pointer = ""
        self.response: Mapping[str, Any] = {}
        self.mismatch = False  # the record says its answer did not match the vantage's template (Censored Planet's)


def _started(by_tx: dict[Any, _Attempt], record: Mapping[str, Any], i: int, key: str,
             protocol: str) -> _Attempt | None:
    """The attempt that `record` (test_keys.key[i]) starts, filed by its transaction id; None when it starts none
    (another protocol's, no role, no usable id, or an id already taken)."""
    tags = _tags(record)
    role = next((r for r in (BEFORE, TEST, AFTER) if r in tags), None)
    tx = _tx(record)
    if protocol not in tags or role is None or tx is None or tx in by_tx:
        return None
    t0 = record.get("t0")
    a = by_tx[tx] = _Attempt(role, t0 if isinstance(t0, (int, float)) else float(i))
    a.pointer = f"test_keys.{key}[{i}]"
    return a


def _attempts(tk: Mapping[str, Any], protocol: str) -> list[_Attempt]:
    by_tx: dict[Any, _Attempt] = {}
    for i, c in _records(tk.get("tcp_connect")):
        a = _started(by_tx, c, i, "tcp_connect", protocol)
        if a is None:
            continue
        status = _mapping(c.get("status"))
        a.failure = _text(status.get("failure")) or (None if status.get("success") is True else "unknown_failure")
        if a.failure is None:
            a.step = "tls" if protocol == "https" else protocol if protocol in _ECHOES else "http"
    if protocol == "quic":  # no TCP: each QUIC handshake is an attempt of its own, the name in its first packet
        for i, q in _records(tk.get("quic_handshakes")):
            a = _started(by_tx, q, i, "quic_handshakes", protocol)
            if a is None:
                continue
            a.step, a.failure = "quic", _text(q.get("failure"))
            # a completed handshake with a certificate not for this name still reached the server (the vantage
            # need not host the domain): only the handshake's own failures count
            if quic_completed(q):
                a.step, a.failure = "done", None
    for key, steps in (("tls_handshakes", ("tls",)), ("requests", ("http",)), ("x_echo", _ECHOES)):  # after connect
        for i, r in _records(tk.get(key)):
            a = by_tx.get(_tx(r))
            if a is not None and protocol == "https" and key == "requests" and a.step == "done" and not a.response:
                # the page fetched over the completed handshake (Censored Planet's HTTPS probes fetch one)
                a.response, a.pointer = _mapping(r.get("response")), f"test_keys.{key}[{i}]"
                a.mismatch = r.get("x_matches_template") is False
                continue
            if a is None or a.step not in steps:
                continue
            a.mismatch = r.get("x_matches_template") is False
            step = a.step
            a.pointer = f"test_keys.{key}[{i}]"
            a.failure = _text(r.get("failure"))
            if step == "http":
                a.response = _mapping(r.get("response"))
            elif step in _ECHOES:
                a.response = {"body": r.get("received")}
            if a.failure is None:
                a.step = "done"
    return sorted(by_tx.values(), key=lambda a: a.order)


_STEP_MECHANISMS = {("http", "reset"): "http.rst", ("http", "eof"): "http.rst", ("http", "timeout"): "http.drop",
                    ("echo", "reset"): "http.rst", ("echo", "eof"): "http.rst", ("echo", "timeout"): "http.drop",
                    ("discard", "reset"): "http.rst", ("discard", "eof"): "http.rst",
                    ("echo_tls", "reset"): "tls.rst", ("echo_tls", "eof"): "tls.rst",
                    ("echo_tls", "timeout"): "tls.drop", ("echo_ech", "reset"): "tls.rst",
                    ("echo_ech", "eof"): "tls.rst", ("echo_ech", "timeout"): "tls.drop",
                    ("tls", "reset"): "tls.rst", ("tls", "eof"): "tls.rst", ("tls", "timeout"): "tls.drop",
                    ("quic", "timeout"): "quic.drop"}


def _web_protocol(tk: Mapping[str, Any], protocol: str, matcher: BlockpageMatcher | None) -> Verdict | None:
    attempts = _attempts(tk, protocol)
    if not attempts:
        return None  # not measured over this protocol
    before = [a for a in attempts if a.role == BEFORE]
    if not any(a.step == "done" for a in before) and not (
            # Hyperquack v1 (analysis/censoredplanet.py) probed the control domain only after the domain's probes
            # failed: a completed probe, of the domain or of the control after it, shows the vantage alive
            not before and tk.get("x_control_after_only") is True
            and any(a.step == "done" for a in attempts if a.role in (TEST, AFTER))):
        return _failure([a.pointer for a in before])
    tests = [a for a in attempts if a.role == TEST]
    after_alive = any(a.step == "done" for a in attempts if a.role == AFTER)
    done = [a for a in tests if a.step == "done"]
    if done:
        for a in done:
            matched = _matches(matcher, a.response)
            if matched:
                return _blocked("http.blockpage", 0.95, [a.pointer], matched)
        if all(a.mismatch for a in done):  # another page than the vantage serves every name (Censored Planet's
            # template), and no fingerprint knows it: a blockpage, not yet confirmed (web_connectivity's 0.5)
            return _blocked("http.blockpage", 0.5, [a.pointer for a in done])
        return _verdict(False, True, "none", 0.85, "ok", [a.pointer for a in done])
    # failed after the domain was sent (a connection with no record past its connect decides nothing)
    decisive = [a for a in tests if a.step in ("http", "tls", "quic", *_ECHOES) and a.failure]
    if not decisive:
        return _failure([a.pointer for a in tests] or [a.pointer for a in before])
    altered = [a for a in decisive if a.step in _ECHOES and a.failure == ECHO_MISMATCH]
    if altered:  # the control domain's request came back intact from the same echo service
        matched = [f for a in altered for f in _matches(matcher, a.response)]
        if matched:
            return _blocked("http.blockpage", 0.95, [a.pointer for a in altered], list(dict.fromkeys(matched)))
        return _verdict("http-diff", False, "middlebox", 0.6, "anomaly", [a.pointer for a in altered])
    first = decisive[0]
    kind = failure_class(first.failure)
    mechanism = _STEP_MECHANISMS.get((first.step, kind))
    evidence = [a.pointer for a in decisive]
    if mechanism is None:  # a failure no censorship technique explains (an alert, a malformed answer)
        return _verdict("http-failure", False, "none", 0.3, "anomaly", evidence)
    if mechanism.endswith(".rst"):  # a reset is the censor's own packet
        confidence = 0.9 if after_alive else 0.85
    else:  # silence: surer when the vantage still answered the control domain afterwards
        confidence = 0.75 if after_alive else 0.5
    return _blocked(mechanism, confidence, evidence)


def remote_web_verdict(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None = None) -> Verdict:
    tk = _mapping(measurement.get("test_keys"))
    verdicts = [v for v in (_web_protocol(tk, p, matcher) for p in JUDGED) if v is not None]
    if not verdicts:
        return _failure(["test_keys.tcp_connect"])
    anomalies = [v for v in verdicts if v.status == "anomaly"]
    if anomalies:
        best = max(anomalies, key=lambda v: (v.mechanism != "none", v.confidence))
        others = [e for v in anomalies if v is not best for e in v.evidence]  # the other protocol's, too
        blocking, accessible = best.blocking, best.accessible
        if best.mechanism == "quic.drop" and len(anomalies) == 1 and any(v.accessible for v in verdicts):
            # HTTP/3 dropped while the domain came through over TCP: not blocked, as web_connectivity's quic.drop
            # (QA: "blocked, not accessible" beside a 200 over HTTP and a handshake over HTTPS)
            blocking, accessible = False, True
        return _verdict(blocking, accessible, best.mechanism, best.confidence, best.status,
                        [*best.evidence, *others], [f for v in anomalies for f in v.fingerprints])
    oks = [v for v in verdicts if v.status == "ok"]
    if oks:
        return min(oks, key=lambda v: v.confidence)
    return _failure([e for v in verdicts for e in v.evidence])
