"""The verdict of a ``wireguard`` measurement (our nettest: OONI has no stable one).

``failure`` is the plain handshake's. Null: ok. A DNS failure names its dns.* mechanism. Otherwise the junk-first
retry (``x_junk_first``) decides how sure we are. If it got through, the same server with the same keys answered
once the flow's first datagram was not WireGuard's, so DPI dropped the handshake by its first packet: ``udp.drop``
with high confidence. If it failed too, the server may be down or blocked by address: an anomaly, ``udp.drop`` for
a timeout at low confidence, else the mechanism the failure string names (a refusal is an ICMP unreachable).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .services import anomaly, failed, ok
from .services import test_keys as _tk
from .verdict import Verdict, failure_class

DPI_CONFIDENCE = 0.9  # the plain handshake failed where the junk-first one, same server and keys, got through
UNREACHED_CONFIDENCE = 0.5  # neither got an answer: a server down looks the same
DNS_CONFIDENCE = 0.7
EVIDENCE = ("test_keys.failure", "test_keys.x_junk_first.failure")


def _failure(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def wireguard_verdict(measurement: Mapping[str, Any]) -> Verdict:
    tk = _tk(measurement)
    if "failure" not in tk:
        return failed()
    failure = tk["failure"]
    if failure is None:
        return ok(("test_keys.failure",))
    failure = _failure(failure)
    if failure is None:
        return failed()
    kind = failure_class(failure)
    if kind.startswith("dns"):
        mechanism = ("dns.nxdomain" if kind == "dns_nxdomain"
                     else "dns.drop" if kind in ("dns_error", "dns_no_answer") else "dns.poison")
        return anomaly("dns", mechanism, DNS_CONFIDENCE, ("test_keys.failure",))
    junk = tk.get("x_junk_first")
    if isinstance(junk, Mapping) and "failure" in junk and junk["failure"] is None:
        return anomaly("tcp_ip", "udp.drop", DPI_CONFIDENCE, EVIDENCE)
    if kind == "refused":
        return anomaly("tcp_ip", "none", UNREACHED_CONFIDENCE, ("test_keys.failure",))
    return anomaly("tcp_ip", "udp.drop", UNREACHED_CONFIDENCE, ("test_keys.failure",))
