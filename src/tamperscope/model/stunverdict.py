"""The verdict of a ``stunreachability`` measurement (ooni/spec ts-025), ours or OONI's.

One binding request over UDP: ``failure`` null is ok, a string an anomaly (OONI fastpath's
``score_stunreachability``; a missing or non-string ``failure``, which fastpath calls ok, is a
failure here). A DNS failure names its dns.* mechanism; a request never answered (a timeout) is
``udp.drop``; anything else (an error response, an ICMP refusal) is an anomaly with mechanism
"none". Both are weak evidence: a STUN server also fails when it is down.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .verdict import Verdict, failure_class

DNS_CONFIDENCE = 0.7  # the server's name did not resolve, with a failure string that says how
UNREACHED_CONFIDENCE = 0.6  # no answer, and nothing says why
EVIDENCE = ("test_keys.failure",)


def stun_verdict(measurement: Mapping[str, Any]) -> Verdict:
    tk = measurement.get("test_keys")
    tk = tk if isinstance(tk, Mapping) else {}
    if "failure" in tk and tk["failure"] is None:
        return Verdict(False, True, "none", 0.8, "ok", EVIDENCE)
    failure = tk.get("failure")
    if not isinstance(failure, str) or not failure:
        return Verdict(None, None, "none", 0.0, "failure", ())
    kind = failure_class(failure)
    if kind.startswith("dns"):
        mechanism = ("dns.nxdomain" if kind == "dns_nxdomain"
                     else "dns.drop" if kind in ("dns_error", "dns_no_answer") else "dns.poison")
        return Verdict("dns", False, mechanism, DNS_CONFIDENCE, "anomaly", EVIDENCE)
    if kind == "timeout":
        return Verdict("tcp_ip", False, "udp.drop", UNREACHED_CONFIDENCE, "anomaly", EVIDENCE)
    return Verdict("http-failure", False, "none", UNREACHED_CONFIDENCE, "anomaly", EVIDENCE)
