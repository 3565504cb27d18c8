"""OONI's summary test_keys for web_connectivity: dns_consistency and the *_match fields.

These are the keys OONI's own probe writes next to `blocking`; ours are
computed from the same normalised observations the verdict uses
(model/consistency.py), so the two never disagree about the facts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .consistency import AddressJudge, Observations, http_diff, observe
from .failures import failure_class


def _same_failure(obs: Observations, failure: str) -> bool:
    """Whether the control's lookup failed as the probe's did: the same error however each spells it (the control
    says NXDOMAIN as ``dns_name_error``, the probe as ``dns_nxdomain_error``), or no address for both."""
    control = obs.control
    if control is None:
        return False
    kind = failure_class(failure)
    if control.dns_failure is not None:
        return failure_class(control.dns_failure) == kind
    return kind == "dns_no_answer" and control.dns_addrs is not None and not control.dns_addrs


def summary_keys(measurement: Mapping[str, Any], obs: Observations | None = None) -> dict[str, Any]:
    obs = observe(measurement) if obs is None else obs
    judge = AddressJudge(obs, use_tls=obs.version >= (0, 5))
    depth0 = [q for q in obs.queries if q.depth == 0 and not q.encrypted and q.addrs]
    addrs = sorted({a for q in depth0 for a in q.addrs})
    consistent = judge.consistent(addrs, obs.host) if addrs else None
    failures = [q.failure for q in obs.queries if q.depth == 0 and q.failure]
    if consistent is None and failures and _same_failure(obs, failures[0]):
        dns_consistency: str | None = "consistent"
    elif consistent is None:
        dns_consistency = None if not failures else "inconsistent"
    else:
        dns_consistency = "consistent" if consistent else "inconsistent"
    out: dict[str, Any] = {"dns_consistency": dns_consistency, "body_length_match": None, "body_proportion": 0,
                           "status_code_match": None, "headers_match": None, "title_match": None}
    final = next((e for e in reversed(obs.exchanges) if e.is_final), None)
    if final is not None and obs.control is not None and obs.control.http is not None and obs.control.http.failure is None:
        d = http_diff(final, obs.control.http, obs.version)
        out.update(body_length_match=d.body_length_match, body_proportion=d.body_proportion or 0,
                   status_code_match=d.status_code_match, headers_match=d.headers_match, title_match=d.title_match)
    return out
