"""Blocking rules: what a censor's rule matches, told apart by the names it catches (TMC's method).

A name ``H`` blocked on one layer (a DNS answer, the SNI of a ClientHello, the Host of a request) is shown
to the censor again in other names made from it, on the same layer, and what each one meets tells what the
rule matches:

============  =========================  ==============================================================
probe         name                       caught when the rule...
============  =========================  ==============================================================
innocent      ``<salt>.example.net``     (the baseline: an unknown name the censor has no reason to catch)
exact         ``H``                      (the name itself: the layer blocks it or not)
subdomain     ``<salt>.H``               covers H's subdomains
prefixed      ``<salt>H``                has no left anchor: ``notH`` is caught too
suffixed      ``H.<salt>.net``           has no right anchor: ``H.anything`` is caught too
keyword       ``<salt>K<salt>.net``      contains ``K``: the shortest part K of H still caught, found by
                                         trimming H from the left, then from the right (only when both
                                         ends are free)
============  =========================  ==============================================================

The rule is then ``exact`` (H only), ``domain_and_subdomains`` (H and ``*.H``), ``ends_with`` (any name
ending in H: ``notH`` too), ``starts_with`` (any name starting with H) or ``substring`` (any name holding
the keyword: what an over-broad regex such as TMC's found does). The last three block names nobody meant
to block, and ``overblocks`` gives one such name.

A probe is judged from its own records, by the probe while it measures and by the analysis afterwards
(``judge_dns``, ``judge_tls``, ``judge_http`` and ``rules_from_records``):

* dns: blocked when the answer holds an address the censor gave the blocked name and the control did not
  (its injected answer); an innocent name that gets one too makes the layer ``undetermined`` (a resolver
  answering every unknown name, as some ISPs' do);
* dns_path (with a silent address, ``--silent-resolver``: one where no DNS server runs): the same names
  asked of that address over UDP. Any answer was forged on the way (an injector on the path, or a proxy
  that takes every query), so an answer is "blocked" and silence "passed". It tells an injector's rule
  from the resolver's own list: a DNS rule the path does not share is the resolver's (``dns.poison``),
  one it shares is injected (``dns.injection``);
* tls and http, to one address of the site: blocked when the connection is reset, closed or left silent
  after the name was sent, or the answer is a known blockpage. A server's own refusal of an unknown name
  (a TLS alert, a 404) is an answer, so it passes. When the innocent name is not answered either, the
  address cannot tell anything and the layer is ``undetermined``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tamperscope.model.records import RECORD_KEYS, by_transaction, failure_of, transaction_of
from tamperscope.model.verdict import OONI_BLOCKING, BlockpageMatcher, failure_class, step_mechanism
from tamperscope.model.webparts import body_bytes, header_pairs, is_bogon

LAYERS = ("dns", "dns_path", "tls", "http")
LAYER_NAMES = {"dns": "DNS", "dns_path": "DNS on the path", "tls": "TLS", "http": "HTTP"}
PORTS = {"tls": 443, "http": 80}
KINDS = ("innocent", "exact", "subdomain", "prefixed", "suffixed", "keyword")
OUTCOMES = ("blocked", "passed", "residual", "unusable")  # residual: not tried, the address was held too long
RULES = ("exact", "domain_and_subdomains", "ends_with", "starts_with", "substring", "not_blocked",
         "undetermined")
MAX_PROBES = 64  # per layer, read back from a measurement
MAX_NAME = 253
TAG = "rules"
VERIFY_TAG = f"{TAG}=dns:verify"


@dataclass(frozen=True)
class Probe:
    kind: str
    name: str


def innocent(salt: str) -> str:
    return f"{salt}.example.net"


def variants(host: str, salt: str) -> list[Probe]:
    """The probes after ``exact``, in the order they are tried (names too long for DNS left out)."""
    probes = [Probe("subdomain", f"{salt}.{host}"), Probe("prefixed", f"{salt}{host}"),
              Probe("suffixed", f"{host}.{salt}.net")]
    return [p for p in probes if _fits(p.name)]


def keyword_name(part: str, salt: str, before: str = "", after: str = "") -> str | None:
    """``part`` of the blocked name, between two copies of the salt, as a name of its own (None: no valid
    name holds it). ``before`` and ``after`` are the characters next to the part in the blocked name: the
    salt's characters next to it differ from them, so the salt never puts back the character just trimmed
    (a salt ending in "f" would make "orbid" read as "forbid")."""
    left = salt if salt[-1:] != before else salt[:-1] + ("z" if before != "z" else "y")
    right = salt if salt[:1] != after else ("x" if after != "x" else "w") + salt[1:]
    name = f"{left}{part}{right}.net"
    return name if _fits(name) and ".." not in name else None


def _fits(name: str) -> bool:
    return len(name) <= MAX_NAME and all(0 < len(label) <= 63 for label in name.split("."))


def infer(outcomes: Mapping[str, str | None], keyword: str | None = None) -> dict[str, Any]:
    """The rule of one layer from its probes' outcomes (kind → blocked, passed, residual, unusable or None).

    Returns ``{"rule", "keyword", "overblocks"}``: ``rule`` is one of RULES, ``overblocks`` a name the rule
    catches though it is not the blocked one's (None for exact rules)."""
    def b(kind: str) -> bool | None:
        o = outcomes.get(kind)
        return True if o == "blocked" else False if o == "passed" else None

    out: dict[str, Any] = {"rule": "undetermined", "keyword": None, "overblocks": None}
    if b("innocent") is not False:  # the baseline was caught too, or could not be asked
        return out
    exact = b("exact")
    if exact is False:
        return {**out, "rule": "not_blocked"}
    if exact is None:
        return out
    sub, pre, suf = b("subdomain"), b("prefixed"), b("suffixed")
    if pre is None or suf is None:
        return out
    if pre and sub is not True:  # no left anchor, yet <salt>.H, which ends in H too, passed: not one rule
        return out
    if pre and suf:
        return {**out, "rule": "substring", "keyword": keyword, "overblocks": "prefixed"}
    if pre:
        return {**out, "rule": "ends_with", "overblocks": "prefixed"}
    if suf:
        return {**out, "rule": "starts_with", "overblocks": "suffixed"}
    if sub is None:
        return out
    return {**out, "rule": "domain_and_subdomains" if sub else "exact"}


def describe(host: str, layer: str, result: Mapping[str, Any]) -> str:
    """One sentence for a person: what the layer's rule matches."""
    rule, kw = result.get("rule"), result.get("keyword")
    if layer == "dns_path":
        forged = "a device on the path forges DNS answers for"
        return {
            "exact": f"{forged} {host} exactly",
            "domain_and_subdomains": f"{forged} {host} and any of its subdomains",
            "ends_with": f"{forged} any name ending in '{host}' (such as not{host})",
            "starts_with": f"{forged} any name starting with '{host}' (such as {host}.example.org)",
            "substring": f"{forged} any name containing '{kw or host}'",
            "not_blocked": f"no DNS answer for {host} is forged on the path",
        }.get(str(rule), f"DNS answers forged on the path, for {host}: undetermined")
    what = {"dns": "DNS lookups", "tls": "TLS connections", "http": "HTTP requests"}[layer]
    return {
        "exact": f"{what} naming {host} exactly are blocked",
        "domain_and_subdomains": f"{what} naming {host} or any of its subdomains are blocked",
        "ends_with": f"{what} naming any name ending in '{host}' are blocked (such as not{host})",
        "starts_with": f"{what} naming any name starting with '{host}' are blocked (such as {host}.example.org)",
        "substring": f"{what} naming any name containing '{kw or host}' are blocked",
        "not_blocked": f"{what} naming {host} are not blocked",
    }.get(str(rule), f"{what} naming {host}: undetermined")


# --- judging one probe from its records ---------------------------------------------------------------


def addresses_of(queries: Sequence[Mapping[str, Any]]) -> set[str]:
    found: set[str] = set()
    for q in queries:
        answers = q.get("answers")
        for a in answers[:64] if isinstance(answers, list) else ():
            if isinstance(a, Mapping):
                for key in ("ipv4", "ipv6"):
                    v = a.get(key)
                    if isinstance(v, str):
                        found.add(v)
    return found


def injected(exact: Sequence[Mapping[str, Any]], control: Any,
             verify: Sequence[Mapping[str, Any]] = ()) -> set[str] | None:
    """The addresses our resolver gave the name that the control's did not, when they are the censor's
    answer (empty: no lie). None when answers cannot tell names apart: the control resolved nothing, we got
    no address (an NXDOMAIN or a silence is what every made-up name gets too), or an address unlike the
    control's may be the site's own after all (a CDN answers each resolver its own way).

    Such an address is the censor's when it is a bogon, or when the ``verify`` records (the tcp_connect and
    tls_handshakes of a handshake to it naming the site, its certificate checked: Satellite's test) show it
    refuses the connection or has no certificate for the name; a verified handshake makes it the site's."""
    diff = _unlike_control(exact, control)
    if diff is None or not diff or all(is_bogon(a) for a in diff):
        return diff
    if not verify:
        return None
    failure = failure_of(verify)
    if failure is None:
        shook = any(r.get("no_tls_verify") is False and "server_name" in r for r in verify)  # a checked one
        return set() if shook else None
    return diff if failure_class(failure) in ("tls_cert", "refused") else None


def _unlike_control(exact: Sequence[Mapping[str, Any]], control: Any) -> set[str] | None:
    """Our addresses for the name that the control did not give (None: nothing to compare)."""
    dns = control.get("dns") if isinstance(control, Mapping) else None
    addrs = dns.get("addrs") if isinstance(dns, Mapping) else None
    ours = addresses_of(exact)
    if not isinstance(addrs, list) or not addrs or not ours:
        return None
    return ours - {a for a in addrs if isinstance(a, str)}


def to_verify(exact: Sequence[Mapping[str, Any]], control: Any) -> str | None:
    """The address to check with a handshake before our resolver's answer can be called a lie or not: the
    first of ours unlike the control's that is no bogon (None: nothing needs checking)."""
    diff = _unlike_control(exact, control) or set()
    return next((a for a in sorted(diff) if not is_bogon(a)), None)


def verify_records(tk: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The tcp_connect and tls_handshakes records of the DNS answer's check (tag ``rules=dns:verify``)."""
    out: list[Mapping[str, Any]] = []
    for key in ("tcp_connect", "tls_handshakes"):
        items = tk.get(key)
        for r in items[:8192] if isinstance(items, list) else ():
            tags = r.get("tags") if isinstance(r, Mapping) else None
            if isinstance(tags, list) and VERIFY_TAG in tags[:16]:
                out.append(r)
    return out


def judge_dns(queries: Sequence[Mapping[str, Any]], lies: set[str] | None) -> dict[str, Any]:
    if lies is None or not queries:
        return {"outcome": "unusable", "failure": failure_of(queries), "addresses": []}
    found = addresses_of(queries)
    hit = sorted(found & lies)
    return {"outcome": "blocked" if hit else "passed", "failure": failure_of(queries), "addresses": hit[:8]}


def judge_path(queries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A query to the silent address: any reply (addresses, a negative answer, even garbage) was forged on the
    path; no reply (a timeout, or a refusal by the host itself) is what a clean path gives."""
    if not queries:
        return {"outcome": "unusable", "failure": "no_query", "addresses": []}
    failure = failure_of(queries)
    kind = failure_class(failure)
    if kind in ("timeout", "refused"):
        return {"outcome": "passed", "failure": failure, "addresses": []}
    if kind in ("ok", "dns_nxdomain", "dns_no_answer", "dns_error"):
        return {"outcome": "blocked", "failure": failure, "addresses": sorted(addresses_of(queries))[:8]}
    return {"outcome": "unusable", "failure": failure, "addresses": []}


def judge_tls(connect: Sequence[Mapping[str, Any]], handshakes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    failure = failure_of(connect)
    if failure is not None or not connect:
        return {"outcome": "unusable", "failure": failure or "no_connection", "step": "tcp"}
    if not handshakes:
        return {"outcome": "unusable", "failure": "no_handshake", "step": "tls"}
    failure = failure_of(handshakes)
    caught = failure_class(failure) in ("reset", "eof", "timeout")
    return {"outcome": "blocked" if caught else "passed", "failure": failure, "step": "tls"}


def judge_http(connect: Sequence[Mapping[str, Any]], requests: Sequence[Mapping[str, Any]],
               matcher: BlockpageMatcher | None) -> dict[str, Any]:
    failure = failure_of(connect)
    if failure is not None or not connect:
        return {"outcome": "unusable", "failure": failure or "no_connection", "step": "tcp"}
    if not requests:
        return {"outcome": "unusable", "failure": "no_request", "step": "http", "fingerprints": []}
    failure = failure_of(requests)
    if failure is not None:
        caught = failure_class(failure) in ("reset", "eof", "timeout")
        return {"outcome": "blocked" if caught else "passed", "failure": failure, "step": "http",
                "fingerprints": []}
    response = requests[-1].get("response")
    fps: list[str] = []
    if isinstance(response, Mapping) and matcher is not None:
        body = body_bytes(response.get("body")).decode("utf-8", "replace")
        fps = [str(f) for f in matcher(body, dict(header_pairs(response)))][:16]
    return {"outcome": "blocked" if fps else "passed", "failure": None, "step": "http", "fingerprints": fps}


def judge(layer: str, tid: int, tk: Mapping[str, Any], lies: set[str] | None, matcher: BlockpageMatcher | None,
          index: Mapping[str, dict[int, list[Mapping[str, Any]]]] | None = None) -> dict[str, Any]:
    """One probe (its transaction_id ``tid``) judged from the measurement's records."""
    ix = index if index is not None else {k: by_transaction(tk, k) for k in RECORD_KEYS}
    if layer == "dns":
        return judge_dns(ix["queries"].get(tid, []), lies)
    if layer == "dns_path":
        return judge_path(ix["queries"].get(tid, []))
    if layer == "tls":
        return judge_tls(ix["tcp_connect"].get(tid, []), ix["tls_handshakes"].get(tid, []))
    return judge_http(ix["tcp_connect"].get(tid, []), ix["requests"].get(tid, []), matcher)


# --- a whole measurement ------------------------------------------------------------------------------


def _layers(tk: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    x = tk.get("x_blocking_rules")
    layers = x.get("layers") if isinstance(x, Mapping) else None
    if not isinstance(layers, Mapping):
        return {}
    return {k: v for k, v in layers.items() if k in LAYERS and isinstance(v, Mapping)}


def _probes(layer: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    items = layer.get("probes")
    return [p for p in items[:MAX_PROBES] if isinstance(p, Mapping)] if isinstance(items, list) else []


def host_of(tk: Mapping[str, Any]) -> str:
    x = tk.get("x_blocking_rules")
    host = x.get("host") if isinstance(x, Mapping) else None
    return host if isinstance(host, str) else "?"


def keyword_from(probes: Sequence[Mapping[str, Any]]) -> str | None:
    """The shortest keyword probe that was caught."""
    caught = [p for p in probes if p.get("kind") == "keyword" and p.get("outcome") == "blocked"
              and isinstance(p.get("part"), str)]
    return min((p["part"] for p in caught), key=len, default=None)


def conclude(probes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A layer's rule from its judged probes (the first probe of each kind counts)."""
    outcomes: dict[str, str | None] = {}
    names: dict[str, str] = {}
    for p in probes:
        kind = p.get("kind")
        if isinstance(kind, str) and kind not in outcomes and kind != "keyword":
            outcomes[kind] = p.get("outcome") if p.get("outcome") in OUTCOMES else None
            if isinstance(p.get("name"), str):
                names[kind] = p["name"]
    result = infer(outcomes, keyword_from(probes))
    over = result.get("overblocks")
    result["overblocks"] = names.get(over) if isinstance(over, str) else None
    return result


def rules_from_records(tk: Mapping[str, Any], matcher: BlockpageMatcher | None) -> dict[str, dict[str, Any]]:
    """Every layer's probes judged again from their records (not from the outcomes the probe wrote), and
    each layer's rule concluded from them. Probes never made (``residual``) stay so."""
    index = {k: by_transaction(tk, k) for k in RECORD_KEYS}
    out: dict[str, dict[str, Any]] = {}
    for layer, data in _layers(tk).items():
        probes = _probes(data)
        exact = next((p for p in probes if p.get("kind") == "exact"), None)
        lies: set[str] | None = None
        if layer == "dns" and exact is not None and transaction_of(exact) is not None:
            lies = injected(index["queries"].get(transaction_of(exact) or 0, []), tk.get("control"),
                            verify_records(tk))
        judged = []
        for p in probes:
            tid = transaction_of(p)
            base = {"kind": p.get("kind"), "name": p.get("name"), "transaction_id": tid}
            if "part" in p:
                base["part"] = p.get("part")
            if tid is None or p.get("outcome") == "residual":
                judged.append({**base, "outcome": "residual"})
                continue
            judged.append({**base, **judge(layer, tid, tk, lies, matcher, index)})
        out[layer] = {"probes": judged, **conclude(judged)}
    return out


def _forged_on_path(layer: Any) -> bool:
    """The path layer read a rule that blocks: the silent address "answered" the name and not the innocent
    one (a proxy answering every query, the innocent name too, leaves the layer undetermined)."""
    rule = layer.get("rule") if isinstance(layer, Mapping) else None
    return rule in RULES and rule not in ("not_blocked", "undetermined")


def rules_verdict(tk: Mapping[str, Any], layers: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The verdict keys of a blocking_rules measurement (from ``layers``, else from what it wrote):
    blocking, accessible, x_mechanism (of the first blocked layer, in LAYERS order), x_confidence,
    x_evidence, x_status, and x_rules: per layer, the rule and a sentence."""
    layers = layers if layers is not None else {k: dict(v) for k, v in _layers(tk).items()}
    host = host_of(tk)
    x_rules: dict[str, Any] = {}
    mechanism, confidence, evidence = "none", 0.0, []
    blocked_any, determined = False, False
    for layer in LAYERS:
        data = layers.get(layer)
        if data is None:
            continue
        rule = data.get("rule") if data.get("rule") in RULES else "undetermined"
        x_rules[layer] = {"rule": rule, "keyword": data.get("keyword"), "overblocks": data.get("overblocks"),
                          "says": describe(host, layer, data)}
        if rule != "undetermined":
            determined = True
        if rule in ("not_blocked", "undetermined") or blocked_any:
            continue
        blocked_any = True
        probes = data.get("probes")
        if not isinstance(probes, list):
            probes = []
        exact = next((p for p in probes if isinstance(p, Mapping) and p.get("kind") == "exact"), {})
        evidence.append(f"test_keys.x_blocking_rules.layers.{layer}")
        if layer == "dns":
            # the resolver lied: injected on its way if the path forges an answer for the name too, else the
            # resolver's own (with no path layer, nothing shows an injector: the resolver's answer is false)
            if _forged_on_path(layers.get("dns_path")):
                mechanism, confidence = "dns.injection", 0.95
                evidence.append("test_keys.x_blocking_rules.layers.dns_path")
            else:
                mechanism, confidence = "dns.poison", 0.9
        elif layer == "dns_path":  # an answer from an address where no DNS server runs
            mechanism, confidence = "dns.injection", 0.95
        elif exact.get("fingerprints"):
            mechanism, confidence = "http.blockpage", 0.95
        else:
            failure = exact.get("failure")
            mechanism, confidence = step_mechanism(layer, failure if isinstance(failure, str) else "")
            # an innocent name to the same address was answered: the name, not the address, is blocked
            confidence = max(confidence, 0.9) if mechanism != "none" else confidence
    if blocked_any:
        return {"blocking": OONI_BLOCKING.get(mechanism, "http-failure"), "accessible": False,
                "x_mechanism": mechanism, "x_confidence": confidence, "x_evidence": evidence,
                "x_status": "anomaly", "x_rules": x_rules}
    return {"blocking": False if determined else None, "accessible": True if determined else None,
            "x_mechanism": "none", "x_confidence": 0.8 if determined else 0.0, "x_evidence": [],
            "x_status": "ok" if determined else "failure", "x_rules": x_rules}
