"""The evasion nettest's strategies and its verdict: a pure function over the records it wrote.

Geneva showed that censors' DPI can be evaded by re-framing a request, and that which framings work tells
one censor's equipment from another's. Our strategies are the ones a client can play alone, over a normal
kernel socket: they change how the ClientHello or the request is cut into TCP segments and TLS records,
and the case or form of the name, never what the request asks for. So when the plain request is blocked
and a strategy gets the site's own answer from the same address, a DPI box was reading that flight, and the
strategy names a gap in its parser: that is ``x_equipment.traits``.

``x_evasion`` (written by ``nettests/evasion.py``, read here; see docs/measurement-format.md):
``{"address", "address_source", "attempts": [{"strategy", "layer", "transaction_id", "shaped", "failure",
"step", "status_code", "fingerprints", "matches_control", "outcome"}]}`` with the plain request as the
strategy ``plain``. ``outcome`` is ``ok`` (the site's answer), ``blocked`` (a failure, or a blockpage),
``different`` (an answer unlike the control's), ``unshaped`` (the trick could not be played) or
``residual`` (not tried: the censor still blocked the address after an earlier attempt's trigger, for
longer than the measurement had left; ``residual_waits`` lists the waits that did end).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tamperscope.model.consistency import BODY_PROPORTION_FACTOR
from tamperscope.model.records import by_transaction, failure_of
from tamperscope.model.verdict import OONI_BLOCKING, BlockpageMatcher, step_mechanism
from tamperscope.model.webparts import body_bytes, header_pairs, page_title

PLAIN = "plain"


@dataclass(frozen=True)
class Strategy:
    name: str
    scheme: str   # the URLs it applies to: "https" or "http"
    what: str     # what it does, for --help and the docs
    trait: str    # what its getting through says about the censor's DPI
    key: str      # the trait's key in x_equipment.traits (its value: False when the strategy got through)
    coped: str    # what its being blocked too says (the trait's value True)


STRATEGIES: tuple[Strategy, ...] = (
    Strategy("tls-segments", "https", "the ClientHello in two TCP segments, cut inside the SNI",
             "does not reassemble TCP segments before reading the SNI", "reassembles_tcp",
             "reassembles TCP segments before reading the SNI"),
    Strategy("tls-records", "https", "the ClientHello in two TLS records (one segment), cut inside the SNI",
             "reads the SNI in the first TLS record only", "reassembles_tls_records",
             "follows a ClientHello over several TLS records"),
    Strategy("tls-records-segments", "https", "two TLS records, each in its own TCP segment",
             "does not follow a ClientHello over records in separate segments",
             "reassembles_records_across_segments", "follows a ClientHello over records in separate segments"),
    Strategy("sni-case", "https", "the SNI in mixed case (WwW.ExAmPlE.CoM), the certificate still checked",
             "compares the SNI case-sensitively", "sni_case_insensitive", "compares the SNI case-insensitively"),
    Strategy("http-segments", "http", "the request in two TCP segments, cut inside the Host value",
             "does not reassemble TCP segments before reading the Host header", "reassembles_tcp",
             "reassembles TCP segments before reading the Host header"),
    Strategy("host-name-case", "http", "the header's name in mixed case (HoSt:)",
             "looks for the Host header's name case-sensitively", "host_name_case_insensitive",
             "finds the Host header whatever the case of its name"),
    Strategy("host-value-case", "http", "the Host value in mixed case",
             "compares the Host value case-sensitively", "host_value_case_insensitive",
             "compares the Host value case-insensitively"),
    Strategy("host-trailing-dot", "http", "the Host value as a fully qualified name (www.example.com.)",
             "does not strip a trailing dot from the Host value", "strips_trailing_dot",
             # (or reads the Host loosely: a pattern matching inside it, "tor" in history.com., is blocked by the
             # fully qualified name too: QA)
             "matches the Host value with a trailing dot too (strips it, or matches a pattern inside the name)"),
)
BY_NAME: Mapping[str, Strategy] = {s.name: s for s in STRATEGIES}
OUTCOMES = ("ok", "blocked", "different", "unshaped", "residual")


def strategies_for(scheme: str, names: Sequence[str] | None = None) -> list[Strategy]:
    """The strategies that apply to a URL of ``scheme``: all, in catalogue order, or those named, in the order
    given (the order they are tried in)."""
    chosen = STRATEGIES if names is None else [BY_NAME[n] for n in dict.fromkeys(names) if n in BY_NAME]
    return [s for s in chosen if s.scheme == scheme]


def matches_control(status: int, body: bytes, control: Any) -> bool | None:
    """Whether a response is the page the control got: its status code, and a body of similar length (OONI's
    0.7 proportion) or the same title. None when the control has no page to compare with."""
    http = control.get("http_request") if isinstance(control, Mapping) else None
    if not isinstance(http, Mapping) or http.get("failure") is not None:
        return None
    want = http.get("status_code")
    if not isinstance(want, int) or isinstance(want, bool) or status != want:
        return False
    length = http.get("body_length")
    if isinstance(length, int) and not isinstance(length, bool) and length > 0 and body:
        small, big = sorted((len(body), length))
        if small / big > BODY_PROPORTION_FACTOR:  # more than 70%, as web_connectivity's rule
            return True
    title = http.get("title")
    return isinstance(title, str) and bool(title) and page_title(body.decode("utf-8", "replace")) == title


def judge(failure: str | None, step: str | None, status: int | None, body: bytes,
          headers: Mapping[str, str], control: Any, matcher: BlockpageMatcher | None) -> dict[str, Any]:
    """One attempt's result from what it got: the probe calls it on the response in hand, the analysis on the
    attempt's records. ``outcome`` is ok, blocked or different (see the module's docstring)."""
    out: dict[str, Any] = {"failure": failure, "step": step if failure is not None else None,
                           "status_code": None, "fingerprints": [], "matches_control": None}
    if failure is not None or status is None:
        return {**out, "outcome": "blocked"}
    out["status_code"] = status
    if matcher is not None:
        out["fingerprints"] = [str(f) for f in matcher(body.decode("utf-8", "replace"), headers)][:16]
    out["matches_control"] = same = matches_control(status, body, control)
    outcome = "blocked" if out["fingerprints"] else "different" if same is False else "ok"
    return {**out, "outcome": outcome}


def attempts_from_records(tk: Mapping[str, Any], matcher: BlockpageMatcher | None) -> list[dict[str, Any]]:
    """The attempts of ``x_evasion`` judged again from their raw records (``tcp_connect``, ``tls_handshakes``,
    ``requests`` of each attempt's transaction_id), not from the outcomes the probe wrote. What records cannot
    say is kept from ``x_evasion``: the strategy, how the bytes were shaped, and attempts not made
    (``residual``, ``unshaped``)."""
    connects, handshakes, requests = (by_transaction(tk, k, 4096) for k in ("tcp_connect", "tls_handshakes",
                                                                              "requests"))
    judged: list[dict[str, Any]] = []
    for a in _attempts(tk):
        tid = a.get("transaction_id")
        base = {"strategy": a.get("strategy"), "layer": a.get("layer"), "transaction_id": tid,
                "shaped": a.get("shaped")}
        if a.get("outcome") in ("residual", "unshaped") or not isinstance(tid, int) or isinstance(tid, bool) \
                or tid not in connects:
            judged.append({**base, "failure": None, "step": None, "status_code": None, "fingerprints": [],
                           "matches_control": None,
                           "outcome": a.get("outcome") if a.get("outcome") in ("residual", "unshaped") else None})
            continue
        failure, step, status, body, headers = failure_of(connects[tid]), "tcp", None, b"", {}
        if failure is None and handshakes.get(tid):
            failure, step = failure_of(handshakes[tid]), "tls"
        if failure is None:
            step = "http"
            reqs = requests.get(tid, [])
            failure = failure_of(reqs) if reqs else "no_request"
            response = reqs[-1].get("response") if reqs else None
            if failure is None and isinstance(response, Mapping):
                code = response.get("code")
                status = code if isinstance(code, int) and not isinstance(code, bool) and code > 0 else None
                body = body_bytes(response.get("body"))
                headers = dict(header_pairs(response))
        judged.append({**base, **judge(failure, step, status, body, headers, tk.get("control"), matcher)})
    return judged


def _attempts(tk: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    x = tk.get("x_evasion")
    items = x.get("attempts") if isinstance(x, Mapping) else None
    return [a for a in items if isinstance(a, Mapping)][:64] if isinstance(items, list) else []


def _control_ok(tk: Mapping[str, Any]) -> bool | None:
    control = tk.get("control")
    if not isinstance(control, Mapping):
        return None
    http = control.get("http_request")
    if not isinstance(http, Mapping):
        return None
    return http.get("failure") is None and isinstance(http.get("status_code"), int) and http["status_code"] > 0


def evasion_verdict(tk: Mapping[str, Any]) -> dict[str, Any]:
    """The verdict keys of an evasion measurement: blocking, accessible, x_mechanism, x_confidence,
    x_evidence, x_status, and x_evaded (the strategies that got through) with x_equipment when a DPI box
    showed itself. Hostile values count as missing."""
    attempts = _attempts(tk)
    plain = next((a for a in attempts if a.get("strategy") == PLAIN), None)
    got_through = [a for a in attempts if a.get("outcome") == "ok" and isinstance(a.get("strategy"), str)
                   and a["strategy"] in BY_NAME]
    evaded = [str(a["strategy"]) for a in got_through]
    keys: dict[str, Any] = {"x_evaded": evaded}
    if plain is None or plain.get("outcome") not in ("ok", "blocked", "different"):  # untried, or could not be
        keys.update(blocking=None, accessible=None, x_mechanism="none", x_confidence=0.0, x_evidence=[],
                    x_status="failure")
        return keys
    index = attempts.index(plain)
    evidence = [f"test_keys.x_evasion.attempts[{index}]"]
    if plain["outcome"] == "ok":
        keys.update(blocking=False, accessible=True, x_mechanism="none", x_confidence=0.9, x_evidence=evidence,
                    x_status="ok", x_evaded=[])
        return keys
    fps = plain.get("fingerprints")
    step = plain.get("step")
    failure = plain.get("failure")
    if plain["outcome"] == "blocked" and isinstance(fps, list) and fps:
        mechanism, confidence = "http.blockpage", 0.95
    elif plain["outcome"] == "blocked" and isinstance(failure, str) and step in ("tcp", "tls", "http"):
        mechanism, confidence = step_mechanism(step, failure)
    elif plain["outcome"] == "different" and evaded:
        # the plain request got a page unlike the site's, a re-framed one the site's own: the answer was
        # replaced on the way (OONI's http-diff), by a box that reads the plain request
        mechanism, confidence = "http.blockpage", 0.9
    else:
        mechanism, confidence = "none", 0.3
    caught = ("blocked", "different") if plain["outcome"] == "different" else ("blocked",)
    control = _control_ok(tk)
    if mechanism == "none" or control is False:
        # an answer unlike the control's, or a site down for the control too: not a censor we can name
        keys.update(blocking=None, accessible=None if control is not False else False, x_mechanism="none",
                    x_confidence=0.3 if mechanism == "none" else 0.0, x_evidence=evidence, x_status="anomaly")
        return keys
    traits: dict[str, bool] = {}
    for a in attempts:
        s = BY_NAME.get(str(a.get("strategy")))
        if s is None or a.get("outcome") not in ("ok", *caught):
            continue
        # a strategy the box caught shows its parser coped with the trick; one that got through, that it did not
        traits[s.key] = traits.get(s.key, True) and a["outcome"] != "ok"
    if evaded:
        confidence = max(confidence, 0.95)  # the same address answered a re-framed request: DPI, not routing
        evidence += [f"test_keys.x_evasion.attempts[{attempts.index(a)}]" for a in got_through]
    keys.update(blocking=OONI_BLOCKING.get(mechanism, "http-failure"), accessible=False,
                x_mechanism=mechanism, x_confidence=confidence if control else min(confidence, 0.5),
                x_evidence=evidence, x_status="anomaly")
    if traits:
        coped = [s for s in STRATEGIES if traits.get(s.key) and any(a.get("strategy") == s.name for a in attempts)]
        keys["x_equipment"] = {"kind": "dpi", "traits": traits,
                               "evaded_by": [f"{name}: {BY_NAME[name].trait}" for name in evaded],
                               "coped_with": [f"{s.name}: {s.coped}" for s in coped]}
    return keys
