"""Where is the censor? Deciding from TTL-limited observations (pure).

Input: the plain path to the server (which router answers ICMP at each TTL,
and at which TTL the server itself answers), and, for TTL k = 1, 2, …, what
came back after the triggering packet was sent with TTL k, for the target
name and for an innocent control name.

Interference at TTL k is any of:
- an answer (RST, data, FIN; a DNS answer) although TTL k is too small to
  reach the server: something between hop k-1 and hop k answered;
- silence where the router at hop k should have sent ICMP time-exceeded
  (and does for the control): the trigger was dropped before hop k; or
  silence from hop k up to the server for the control name too: everything
  to that port is dropped (scope "all": QUIC blocked by address);
- at or beyond the server's distance, an answer that the control does not get
  (an RST or a different payload), or no answer where the control got one
  (a dropped trigger, when no router on the way answers ICMP).
`hop` is the smallest such k; `router` the address that answered at k-1 (the
last hop before the censor); `placement` is on-path when the trigger still
travelled on (ICMP from hop k arrived) and a forged answer came too, in-path
otherwise. At the server's own hop (a censor next to the server, as from outside
towards an in-country server), where no ICMP comes, a forged RST beside a packet
of the server's own (its TTL as the control's packets have it, no RST: the server
got the trigger) is on-path too. `scope` says whether the control name saw the same thing
(a transparent proxy intercepts everything: scope "all"). When the trigger is
the SYN itself (an address's port that cannot be connected to), the control is
another port of the same address, and the caller says scope "port"; where the
path itself goes silent before the server, "address". When the trigger is a
protocol's first packet (OpenVPN's) and the control the same number of random
bytes to the same address and port, the caller says scope "protocol".
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Observation:
    """One TTL step: what came back (plain data, built from netx.ttlprobe.Step)."""

    ttl: int
    connected: bool
    icmp_from: str | None
    responses: tuple[Mapping[str, Any], ...]  # each: kind, src, ttl, initial_ttl, ip_id, flags, window, payload_len
    payload: bytes = b""  # the first response's payload, for blockpage matching


@dataclass(frozen=True)
class RunResult:
    hop: int | None
    router: str | None
    placement: str | None  # "in-path" | "on-path" | None
    scope: str | None  # "name" | "port" | "protocol" | "address" | "all" | None
    reason: str
    forged: tuple[Mapping[str, Any], ...] = ()
    payload: bytes = b""


def decide_run(path: Sequence[str | None], server_ttl: int | None, target: Sequence[Observation],
               control: Mapping[int, Observation]) -> RunResult:
    dist = server_ttl or (len(path) + 1)
    for obs in target:
        k = obs.ttl
        ctl = control.get(k)
        expected = path[k - 1] if k - 1 < len(path) else None
        if not obs.connected:
            continue
        reason = None
        if k < dist and obs.responses:
            reason = f"answer at TTL {k}, before the server (TTL {dist})"
        elif k < dist and expected and obs.icmp_from is None and (ctl is None or ctl.icmp_from is not None):
            reason = f"no ICMP time-exceeded from {expected} at TTL {k}: the trigger was dropped"
        elif (k < dist and expected and obs.icmp_from is None and ctl is not None and ctl.icmp_from is None
              and _silent_from(target, k, dist) and _silent_from(list(control.values()), k, dist)):
            reason = (f"no ICMP time-exceeded from {expected} at TTL {k}, and no answer up to the server, for the "
                      "control name too: everything sent there on this port is dropped")
        elif k >= dist and ctl is not None and _rst(obs) and not _rst(ctl):
            reason = f"RST at TTL {k} that the control did not get"
        elif k >= dist and ctl is not None and ctl.responses and not obs.responses and obs.icmp_from is None:
            reason = f"no answer at TTL {k}, where the control got one: the trigger was dropped"
        if reason is None:
            continue
        on_path = bool(obs.responses) and obs.icmp_from is not None
        if not on_path and k >= dist and _rst(obs) and ctl is not None:
            # at the server's own hop no ICMP can say the trigger went on; the server saying it got it can: a
            # packet without RST at the TTL the server's own packets arrive with (the control's). An in-path
            # censor drops the trigger, so the server never sees it (CenTrace from outside, the censor next to
            # the server)
            real = {r.get("ttl") for r in ctl.responses if not _rst_packet(r)}
            on_path = any(not _rst_packet(r) and r.get("ttl") in real for r in obs.responses)
        ctl_hit = ctl is not None and ((k < dist and bool(ctl.responses)) or (k < dist and expected is not None and ctl.icmp_from is None))
        return RunResult(
            hop=k, router=path[k - 2] if k >= 2 and k - 2 < len(path) else None,
            placement="on-path" if on_path else "in-path", scope="all" if ctl_hit else "name", reason=reason,
            forged=obs.responses, payload=obs.payload)
    return RunResult(None, None, None, None, "no interference seen")


def _silent_from(obs: Sequence[Observation], k: int, dist: int) -> bool:
    """Nothing at all came back from TTL `k` on, and the sweep went as far as the server: not one lost ICMP."""
    later = [o for o in obs if o.ttl >= k]
    return any(o.ttl >= dist for o in later) and all(o.icmp_from is None and not o.responses for o in later)


def _rst_packet(r: Mapping[str, Any]) -> bool:
    return "R" in str(r.get("flags") or "")


def _rst(o: Observation) -> bool:
    return any(_rst_packet(r) for r in o.responses)


def signature(forged: Sequence[Mapping[str, Any]], hop: int | None = None) -> dict[str, Any] | None:
    """The equipment's packet signature: header values of the forged packets (of every run that placed it: an
    IP-ID that differs from run to run is no fixed value, QA). ``initial_ttl`` is the smallest usual initial TTL
    (32, 64, 128, 255) the received one fits under: the equipment's class, not what it sent. Where the censor's
    hop is known (`locate`), ``sent_ttl`` is what it sent: the received TTL plus the routers on the way back (one
    fewer than the hop: QA, a censor sending 62 at hop 2 was said to send 64)."""
    if not forged:
        return None
    first = forged[0]
    ids = sorted({int(r["ip_id"]) for r in forged})
    sig = {"kind": first.get("kind"), "flags": first.get("flags"), "ip_id": ids[0] if len(ids) == 1 else None,
           "ip_ids": ids[:8], "ttl": first.get("ttl"), "initial_ttl": first.get("initial_ttl"),
           "window": first.get("window"), "packets": len(forged)}
    received = first.get("ttl")
    if hop is not None and hop >= 1 and isinstance(received, int) and not isinstance(received, bool):
        sig["sent_ttl"] = min(255, received + hop - 1)
    return sig


def carriers(forged: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The forged packets that carried the page, where they carried one: its data with the FIN, as a measurement's
    signature picks them (`model.signature.signature_from`). A page cut into several segments is one packet with
    the FIN for a measurement and all of them at one TTL for `locate`: the lab's MTS page was keyed "PA" by locate
    and "FPA" by web_connectivity, and the same box's two keys could not be joined (left alone in an earlier note).
    Without such a packet (resets, a DNS answer), every forged packet."""
    page = [r for r in forged if r.get("kind") == "tcp" and r.get("payload_len") and "F" in str(r.get("flags") or "")]
    return page or list(forged)


def signature_key(sig: Mapping[str, Any] | None, fingerprints: Sequence[str] = ()) -> str:
    """A stable name for grouping: two rules forging with different header values differ."""
    if not sig:
        return "none"
    ipid = sig.get("ip_id")
    parts = [str(sig.get("kind")), str(sig.get("flags") or ""), f"ttl{sig.get('initial_ttl')}",
             f"win{sig.get('window')}" if sig.get("window") is not None else "", f"ipid{ipid}" if ipid is not None else "ipid*"]
    if fingerprints:
        parts.append("fp:" + "+".join(sorted(fingerprints)))
    return "/".join(p for p in parts if p)


# TCP flags by the letter a signature key and a captured packet write them with
FLAG_NAMES = {"F": "FIN", "S": "SYN", "R": "RST", "P": "PSH", "A": "ACK", "U": "URG", "E": "ECE", "C": "CWR"}
_KEY_NUMBER = re.compile(r"(ttl|win|ipid)(\d{1,10})")


def signature_words(key: str) -> str:
    """A `signature_key` in words, for readers who do not read keys: "tcp/RA/ttl128/win0/ipid30000" is "TCP
    RST+ACK, sent with TTL 128, window 0, IP-ID 30000". A part it does not know (the key is read back from
    measurements: hostile input) is left out, and a key with no part it knows is ""."""
    said: list[str] = []
    head, has_fp, fps = key.partition("/fp:")  # fingerprint ids hold "/" themselves (cp/f_gen_ru_3~2): last
    parts = head.split("/") if 0 < len(key) <= 400 else []
    if parts and parts[0] in ("tcp", "udp", "icmp"):
        said.append(parts.pop(0).upper())
    else:
        parts = []  # no packet kind first: not a key signature_key wrote
    for part in parts:
        if part and len(part) <= 8 and set(part) <= set(FLAG_NAMES) and said and len(said) == 1:
            said[0] += " " + "+".join(FLAG_NAMES[f] for f in part)
        elif m := _KEY_NUMBER.fullmatch(part):
            name, number = m.groups()
            # the key holds the TTL's class (`signature`), not what was sent: a TTL up to it
            said.append({"ttl": f"sent with TTL ≤ {number}", "win": f"window {number}",
                         "ipid": f"IP-ID {number}"}[name])
        elif part == "ipid*":
            said.append("IP-ID varies")
    if said and has_fp and fps:
        said.append("blockpage " + ", ".join(fps.split("+")[:5]))
    return ", ".join(said)


@dataclass(frozen=True)
class Location:
    hop: int | None
    router: str | None
    placement: str | None
    scope: str | None
    runs: tuple[int | None, ...]
    agreement: float
    reason: str
    fingerprint: dict[str, Any] | None = None
    blockpage: tuple[str, ...] = ()
    signature: str = "none"
    path: tuple[str | None, ...] = field(default_factory=tuple)
    server_ttl: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"hop": self.hop, "router": self.router, "placement": self.placement, "scope": self.scope,
                "runs": list(self.runs), "agreement": round(self.agreement, 3), "reason": self.reason,
                "fingerprint": self.fingerprint, "blockpage": list(self.blockpage), "signature": self.signature,
                "path": list(self.path), "server_ttl": self.server_ttl}


def majority(results: Sequence[RunResult]) -> tuple[RunResult | None, float]:
    """The result most runs agree on (by hop), and the share that agrees."""
    if not results:
        return None, 0.0
    counts = Counter(r.hop for r in results)
    hop, n = counts.most_common(1)[0]
    best = next(r for r in results if r.hop == hop)
    return best, n / len(results)
