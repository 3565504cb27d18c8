"""The verdict of a ``stunreachability`` measurement (ooni/spec ts-025), ours or OONI's.

One binding request over UDP: ``failure`` null is ok, a string an anomaly (OONI fastpath's
``score_stunreachability``; a missing or non-string ``failure``, which fastpath calls ok, is a
failure here). A DNS failure names its dns.* mechanism (``dns_bogon_error``, the name answered with an
address no public server has: ``dns.poison``, or ``dns.injection`` when another answer followed it, 0.9); a
request never answered (a timeout) is
``udp.drop``; anything else (an error response, an ICMP refusal) is an anomaly with mechanism
"none". Both are weak evidence: a STUN server also fails when it is down.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .failures import DNS_BOGON_ERROR
from .verdict import Verdict, failure_class

DNS_CONFIDENCE = 0.7  # the server's name did not resolve, with a failure string that says how
UNREACHED_CONFIDENCE = 0.6  # no answer, and nothing says why
EVIDENCE = ("test_keys.failure",)


def _answered(duplicates: Any) -> bool:
    """Whether a later answer to a lookup gave an address (the real one, after an injector's)."""
    return any(isinstance(d, Mapping) and isinstance(d.get("answers"), list) and any(
        isinstance(a, Mapping) and isinstance(a.get("ipv4") or a.get("ipv6"), str) for a in d["answers"])
        for d in (duplicates if isinstance(duplicates, list) else ()))


def stun_verdict(measurement: Mapping[str, Any]) -> Verdict:
    tk = measurement.get("test_keys")
    tk = tk if isinstance(tk, Mapping) else {}
    if "failure" in tk and tk["failure"] is None:
        return Verdict(False, True, "none", 0.8, "ok", EVIDENCE)
    failure = tk.get("failure")
    if not isinstance(failure, str) or not failure:
        return Verdict(None, None, "none", 0.0, "failure", ())
    kind = failure_class(failure)
    if failure == DNS_BOGON_ERROR:  # the name answered with a bogon: a lie, raced by the truth when injected
        raced = _answered(tk.get("x_dns_duplicate_responses"))
        evidence = ("test_keys.failure", "test_keys.queries", *(("test_keys.x_dns_duplicate_responses",) * raced))
        return Verdict("dns", False, "dns.injection" if raced else "dns.poison", 0.9, "anomaly", evidence)
    if kind.startswith("dns"):
        mechanism = ("dns.nxdomain" if kind == "dns_nxdomain"
                     else "dns.drop" if kind in ("dns_error", "dns_no_answer") else "dns.poison")
        return Verdict("dns", False, mechanism, DNS_CONFIDENCE, "anomaly", EVIDENCE)
    if kind == "timeout":
        return Verdict("tcp_ip", False, "udp.drop", UNREACHED_CONFIDENCE, "anomaly", EVIDENCE)
    return Verdict("http-failure", False, "none", UNREACHED_CONFIDENCE, "anomaly", EVIDENCE)
