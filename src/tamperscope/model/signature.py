"""The equipment signature of a measurement: header values of the packets that did it.

With `--capture` the probe keeps, per measurement, the packets that censors
forge (`test_keys.x_packets`: RSTs, data+FIN, DNS answers, each with IP-ID,
TTL, window, flags). For the mechanism the verdict chose, this picks the
packets that carried it (the first DNS answer for an injection, the RSTs from
the endpoint that was reset, the data+FIN of a blockpage) and summarises them
with model.location.signature; `key` groups measurements of the same gear.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .location import signature, signature_key


def _as_forged(p: Mapping[str, Any]) -> dict[str, Any]:
    return {"kind": p.get("proto"), "flags": p.get("flags"), "ip_id": p.get("ip_id"), "ttl": p.get("ttl"),
            "initial_ttl": p.get("initial_ttl"), "window": p.get("window")}


def _addresses(tk: Mapping[str, Any], evidence: Sequence[str]) -> set[str]:
    out = set()
    for ptr in evidence:
        if not ptr.startswith("test_keys.") or "[" not in ptr:
            continue
        key, _, rest = ptr[len("test_keys."):].partition("[")
        try:
            rec = (tk.get(key) or [])[int(rest.split("]")[0])]
        except (ValueError, IndexError, TypeError):
            continue
        if isinstance(rec, Mapping):
            if rec.get("address"):
                out.add(str(rec["address"]))
            if rec.get("ip") and rec.get("port"):
                out.add(f"{rec['ip']}:{rec['port']}")
    return out


def _first_senders(rsts: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The RSTs sent as the first one was (its initial TTL and window): the equipment's. A later RST sent otherwise
    is the server's own, answering a segment of the connection it had been reset out of (a retransmission that
    went past the censor after its RST), and is not the equipment's signature. Their IP-IDs may differ: equipment
    that varies them is told by that."""
    def when(p: Mapping[str, Any]) -> float:
        t = p.get("t")
        return float(t) if isinstance(t, (int, float)) else float("inf")

    first = min(rsts, key=when)
    sent = (first.get("initial_ttl"), first.get("window"))
    return [p for p in rsts if (p.get("initial_ttl"), p.get("window")) == sent]


def signature_from(measurement: Mapping[str, Any]) -> dict[str, Any] | None:
    tk = measurement.get("test_keys") or {}
    packets = [p for p in tk.get("x_packets") or [] if isinstance(p, Mapping)]
    mech = tk.get("x_mechanism") or "none"
    if not packets or mech == "none":
        return None
    evidence = [str(e) for e in tk.get("x_evidence") or []]
    chosen: list[Mapping[str, Any]] = []
    if mech.startswith("dns.") and mech != "dns.injection":
        # a poisoning resolver's lie, an NXDOMAIN or a timeout: no packet was forged on the way, and the
        # resolver's own answer is no equipment's signature (QA: dns.poison got one, udp/ttl64/ipid45289)
        return None
    if mech.startswith("dns."):
        first = [p for p in packets if p.get("proto") == "udp" and str(p.get("matches", "")).startswith("test_keys.queries[")]
        # the answer to the query the verdict names, when it names one: a measurement may ask other names too
        # (remote_dns asks the control domain first, and that answer is the resolver's own)
        named = [p for p in first if p.get("matches") in evidence]
        chosen = sorted(named or first, key=lambda p: p.get("t", 0))[:1]
    else:
        addrs = _addresses(tk, evidence)
        if mech.endswith(".rst"):
            chosen = [p for p in packets if "R" in str(p.get("flags") or "") and (not addrs or p.get("remote") in addrs)]
        elif mech == "http.blockpage":
            chosen = [p for p in packets if p.get("proto") == "tcp" and p.get("payload_len") and "F" in str(p.get("flags") or "")
                      and (not addrs or p.get("remote") in addrs)]
    if not chosen:
        return None
    if mech.endswith(".rst"):
        chosen = _first_senders(chosen)
    sig = signature([_as_forged(p) for p in chosen])
    if sig is None:
        return None
    fps = [str(f) for f in tk.get("x_fingerprints") or []]
    return {**sig, "key": signature_key(sig, fps), "remote": chosen[0].get("remote")}
