"""OONI's summary test_keys for web_connectivity: dns_consistency and the *_match fields.

These are the keys OONI's own probe writes next to `blocking`; ours are
computed from the same normalised observations the verdict uses
(model/consistency.py), so the two never disagree about the facts.

OONI's probe from web_connectivity 0.5.2x on (LTE with its "classic" analysis)
writes these keys as v0.4 would have: from the records it tags ``classic``
alone, the system resolver's lookups (``getaddrinfo``) and the connections and
requests to the addresses they gave. The other resolvers' lookups and the
fetches from the control's addresses feed its blocking flags, not these keys.
Where the tag appears, the keys here follow that rule (compared with OONI's
own keys in tests/unit/test_summary_classic.py); elsewhere (v0.4, earlier
v0.5, our probe) every cleartext lookup counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .consistency import (
    COMMON_HEADERS,
    AddressJudge,
    ControlHTTP,
    Exchange,
    Observations,
    http_diff,
    observe,
    title_words,
)
from .failures import failure_class

CLASSIC_TAG = "classic"
_KEYS = ("queries", "tcp_connect", "requests")


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


def _unknown(dns_consistency: str | None) -> dict[str, Any]:
    """The keys with nothing compared yet: OONI writes an unknown proportion as 0, the rest as null."""
    return {"dns_consistency": dns_consistency, "body_length_match": None, "body_proportion": 0,
            "status_code_match": None, "headers_match": None, "title_match": None}


def classic_records(measurement: Mapping[str, Any]) -> dict[str, frozenset[int]] | None:
    """For each of queries, tcp_connect and requests, the indexes of the records tagged ``classic``; None when no
    record is (data from before OONI's classic analysis, or not OONI's)."""
    tk = measurement.get("test_keys")
    if not isinstance(tk, Mapping):
        return None
    out: dict[str, frozenset[int]] = {}
    for key in _KEYS:
        records = tk.get(key)
        if not isinstance(records, list):
            out[key] = frozenset()
            continue
        out[key] = frozenset(i for i, r in enumerate(records) if isinstance(r, Mapping)
                             and isinstance(tags := r.get("tags"), list) and CLASSIC_TAG in tags)
    return out if any(out.values()) else None


def _index(pointer: str, key: str) -> int | None:
    """``test_keys.<key>[N]`` → N; None for a pointer elsewhere (a late duplicate response, another list)."""
    head = f"test_keys.{key}["
    if not pointer.startswith(head) or not pointer.endswith("]"):
        return None
    digits = pointer[len(head):-1]
    return int(digits) if digits.isdigit() and len(digits) <= 9 else None


def summary_keys(measurement: Mapping[str, Any], obs: Observations | None = None) -> dict[str, Any]:
    obs = observe(measurement) if obs is None else obs
    classic = classic_records(measurement)
    if classic is not None:
        return _classic_keys(obs, classic)
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
    out = _unknown(dns_consistency)
    final = next((e for e in reversed(obs.exchanges) if e.is_final), None)
    if final is not None and obs.control is not None and obs.control.http is not None and obs.control.http.failure is None:
        d = http_diff(final, obs.control.http, obs.version)
        out.update(body_length_match=d.body_length_match, body_proportion=d.body_proportion or 0,
                   status_code_match=d.status_code_match, headers_match=d.headers_match, title_match=d.title_match)
    return out


def _classic_keys(obs: Observations, classic: dict[str, frozenset[int]]) -> dict[str, Any]:
    """The keys as OONI's classic analysis writes them: from the ``classic`` records alone."""
    queries = [q for q in obs.queries if q.depth == 0 and not q.late and _index(q.pointer, "queries") in
               classic["queries"]]
    control = obs.control
    addrs = sorted({a for q in queries for a in q.addrs})
    # the addresses against the control's (its answers and their networks; no TLS vouching here, as in OONI's)
    valid = AddressJudge(obs, use_tls=False).consistent(addrs, obs.host) if addrs else None
    has_control_dns = control is not None and (control.dns_failure is not None or control.dns_addrs is not None)
    failures = [q.failure for q in queries if q.failure]
    expected = any(_same_failure(obs, f) for f in failures)
    unexpected = has_control_dns and any(not _same_failure(obs, f) for f in failures)
    dns_consistency: str | None = None
    if valid is not False and not unexpected and (valid or expected):
        dns_consistency = "consistent"
    elif valid is False or unexpected:
        dns_consistency = "inconsistent"
    out = _unknown(dns_consistency)
    final = next((e for e in obs.exchanges if e.is_final and _index(e.pointer, "requests") in classic["requests"]),
                 None)
    if final is not None and control is not None and control.http is not None and control.http.failure is None:
        out.update(_classic_diff(final, control.http))
    return out


def _classic_diff(final: Exchange, control: ControlHTTP) -> dict[str, Any]:
    """OONI's classic HTTP diff of the final response with the control's: the headers are compared (their uncommon
    names' intersection) and the titles too (their long words), even when one side has none."""
    d = http_diff(final, control, (0, 5))
    # (a control fetch without failure has a status: `observe` keeps none without one, so both are compared here)
    ours = {name.lower() for name, _ in final.headers} - COMMON_HEADERS
    theirs = {name.lower() for name, _ in control.headers} - COMMON_HEADERS
    return {"body_length_match": d.body_length_match, "body_proportion": d.body_proportion or 0,
            "status_code_match": d.status_code_match, "headers_match": bool(ours & theirs),
            "title_match": title_words(final.title()) == title_words(control.title)}
