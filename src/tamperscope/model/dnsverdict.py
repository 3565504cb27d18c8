"""The dnscheck verdict: one name over every transport, against the control.

Pure, like the web_connectivity verdict, so `analyze` re-derives it. Rules, in order:
1. Any answer from the silent address (where no DNS server runs) is forged:
   `dns.injection`, confirmed (the GFWatch / Turkmenistan-study method).
2. A cleartext (system/udp/tcp) answer set inconsistent with the control and
   with what the encrypted transports (DoT/DoH) say, with a duplicate response
   to the same query: `dns.injection`; without: `dns.poison`.
3. Cleartext NXDOMAIN while the control or an encrypted transport resolves:
   `dns.nxdomain`; cleartext timeouts/SERVFAIL while they resolve: `dns.drop`,
   unless the same server answered the name over another cleartext transport
   (a TCP query timing out on a slow path where UDP got through).
4. Otherwise not blocked. With no control and no encrypted answer: cannot tell; but where the control
   says NXDOMAIN and every transport answered that too, the name does not exist: not blocked (0.7).
Consistency is by address or by AS number (CDNs), and bogons never count.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from .verdict import Verdict
from .webparts import is_bogon, split_endpoint

CLEARTEXT = ("system", "getaddrinfo", "udp", "tcp")
ENCRYPTED = ("dot", "doh")
DROP_FAILURES = {"generic_timeout_error", "dns_server_failure", "dns_temporary_failure", "dns_refused_error"}


def _v(blocking: Any, accessible: Any, mechanism: str, confidence: float, status: str, evidence: list[str]) -> Verdict:
    return Verdict(blocking=blocking, accessible=accessible, mechanism=mechanism, confidence=confidence,
                   status=status, evidence=tuple(evidence), fingerprints=())


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _strings(value: Any) -> list[str]:
    """The strings of a JSON array; nothing from anything else (the record is hostile input)."""
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _addresses(value: Any) -> list[str]:
    """The strings of a JSON array that are IP addresses: a helper answering other strings vouches for none."""
    out = []
    for v in _strings(value):
        try:
            ipaddress.ip_address(v)
        except ValueError:
            continue
        out.append(v)
    return out


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _endpoint(address: Any) -> str | None:
    """A ``resolver_address`` as the records of a query spell it ("198.19.0.8:53"): dnscheck's lookups name their
    transport too ("udp://198.19.0.8:53"), the queries and their duplicate responses do not; None for what is no
    string."""
    if not isinstance(address, str):
        return None
    scheme, sep, rest = address.partition("://")
    return rest if sep and scheme.isalpha() else address


def _server(address: Any) -> str:
    """The server of a ``resolver_address`` ("198.19.0.8:53", "udp://198.19.0.8:53", "[2001:db8::8]:53"), without
    its transport and port; "" for the system resolver's (and for what is no string)."""
    endpoint = _endpoint(address)
    return split_endpoint(endpoint)[0] if endpoint else ""


def _no_such_name(ctrl_dns: Any, lookups: Mapping[Any, Any]) -> bool:
    """Whether the control's lookup said NXDOMAIN and every lookup here that was answered said so too (one at
    least; a timeout answers nothing, an address contradicts it)."""
    if not isinstance(ctrl_dns, Mapping) or ctrl_dns.get("failure") != "dns_nxdomain_error":
        return False
    answered = [lk for lk in lookups.values() if isinstance(lk, Mapping)
                and (_addresses(lk.get("addrs")) or _text(lk.get("failure")) not in DROP_FAILURES)]
    return bool(answered) and all(_text(lk.get("failure")) == "dns_nxdomain_error" and not _addresses(lk.get("addrs"))
                                  for lk in answered)


def dnscheck_verdict(measurement: Mapping[str, Any]) -> Verdict:
    tk = _mapping(measurement.get("test_keys"))
    lookups = tk.get("x_lookups") or {}
    if not isinstance(lookups, Mapping):
        return _v(None, None, "none", 0.0, "failure", [])
    silent = tk.get("x_injection") or {}
    if isinstance(silent, Mapping) and silent.get("answers"):
        return _v("dns", False, "dns.injection", 0.99, "anomaly", ["test_keys.x_injection"])
    control = _mapping(tk.get("control"))
    ctrl_dns = control.get("dns")
    good: set[str] = set()
    good_asn: set[int] = set()
    if isinstance(ctrl_dns, Mapping) and not ctrl_dns.get("failure"):
        good |= set(_addresses(ctrl_dns.get("addrs")))
    asn_of: dict[str, int] = {}
    for ip, info in _mapping(control.get("ip_info")).items():
        if isinstance(info, Mapping) and isinstance(info.get("asn"), int):
            asn_of[ip] = info["asn"]
    encrypted_ok = False
    for key, lk in lookups.items():
        if isinstance(lk, Mapping) and _text(lk.get("engine")) in ENCRYPTED and not lk.get("failure") and \
                _addresses(lk.get("addrs")):
            good |= set(_addresses(lk.get("addrs")))
            encrypted_ok = True
    good_asn = {asn_of[a] for a in good if asn_of.get(a)}
    if not good and _no_such_name(ctrl_dns, lookups):
        # the control says the name does not exist, and every lookup here that got an answer says so too: nothing
        # is blocked (QA: a failure, where the lab's truth and every transport agreed)
        return _v(False, True, "none", 0.7, "ok", ["test_keys.control.dns", "test_keys.x_lookups"])
    if not good:
        return _v(None, None, "none", 0.0, "failure" if not encrypted_ok else "ok", ["test_keys.control"])
    duplicates = tk.get("x_dns_duplicate_responses")
    dup_keys = {(_text(d.get("engine")), _endpoint(d.get("resolver_address")), _text(d.get("query_type")))
                for d in (duplicates if isinstance(duplicates, list) else []) if isinstance(d, Mapping)}
    # the servers that answered the name over a cleartext transport: a timeout of another transport to one of them
    # (TCP, two round trips where UDP takes one: on a slow path it timed out) is the transport's, not the name's
    answered = {_server(lk.get("resolver_address")) for lk in lookups.values() if isinstance(lk, Mapping)
                and _text(lk.get("engine")) in CLEARTEXT and not lk.get("failure") and _addresses(lk.get("addrs"))}
    for key, lk in lookups.items():
        if not isinstance(lk, Mapping) or _text(lk.get("engine")) not in CLEARTEXT:
            continue
        ev = [f"test_keys.x_lookups.{key}"]
        failure = _text(lk.get("failure"))
        addrs = _strings(lk.get("addrs"))
        if failure == "dns_nxdomain_error":
            return _v("dns", False, "dns.nxdomain", 0.8, "anomaly", ev)
        if failure in DROP_FAILURES and _server(lk.get("resolver_address")) not in answered:
            return _v("dns", False, "dns.drop", 0.6, "anomaly", ev)
        if addrs and not any(a in good or (asn_of.get(a) in good_asn and not is_bogon(a)) for a in addrs):
            injected = (_text(lk.get("engine")), _endpoint(lk.get("resolver_address")), "A") in dup_keys
            return _v("dns", False, "dns.injection" if injected else "dns.poison", 0.9 if injected else 0.8,
                      "anomaly", ev)
    return _v(False, True, "none", 0.8, "ok", ["test_keys.x_lookups"])
