"""Verdicts by test name: one function per nettest, so new nettests plug in.

`VERDICTS` maps an OONI ``test_name`` to a function ``(measurement, matcher) ->
Verdict`` (the model's `Verdict`, so every nettest speaks the same vocabulary of
mechanisms and statuses). ``web_connectivity`` re-derives everything from the raw
records with the probe's own verdict function, ignoring any stored
``blocking``/``accessible``; ``dnscheck`` uses the model's dnscheck verdict; the
middlebox, throttling and interception nettests read the flags their test_keys
carry (OONI's ``tampering``, our ``x_throttle``, ``x_mitm``). A test name with no
entry gets `generic_verdict`, which understands those same flags and otherwise
says "ok, nothing to judge".

To add a nettest: write ``def my_verdict(m, matcher) -> Verdict`` and
``register("my_nettest")(my_verdict)`` (or decorate it).

`Matcher` wraps the blockpage fingerprint database (`wire.fingerprints`) into
the callable the web_connectivity verdict wants, with a bounded memo: the same
response (body and headers) always gets the same answer, and blockpages,
error pages and redirects recur across thousands of measurements.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tamperscope.model.dnsverdict import dnscheck_verdict
from tamperscope.model.verdict import BlockpageMatcher, Verdict, web_connectivity_verdict

VerdictFunction = Callable[[Mapping[str, Any], BlockpageMatcher | None], Verdict]

VERDICTS: dict[str, VerdictFunction] = {}

# Bumped whenever a verdict rule here or in the model changes meaning: rows
# carry it, so stale verdicts can be found and re-derived from the raw data.
ANALYSIS_VERSION = "1"


def register(test_name: str) -> Callable[[VerdictFunction], VerdictFunction]:
    def add(fn: VerdictFunction) -> VerdictFunction:
        VERDICTS[test_name] = fn
        return fn
    return add


def verdict_for(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None = None) -> Verdict:
    """The verdict of any measurement, by its test_name."""
    name = measurement.get("test_name")
    fn = VERDICTS.get(name, generic_verdict) if isinstance(name, str) else generic_verdict
    return fn(measurement, matcher)


def _tk(measurement: Mapping[str, Any]) -> Mapping[str, Any]:
    tk = measurement.get("test_keys")
    return tk if isinstance(tk, Mapping) else {}


def _ok(evidence: Sequence[str] = (), confidence: float = 0.8) -> Verdict:
    return Verdict(False, True, "none", confidence, "ok", tuple(evidence))


def _failure(evidence: Sequence[str] = ()) -> Verdict:
    return Verdict(None, None, "none", 0.0, "failure", tuple(evidence))


def _anomaly(blocking: str, mechanism: str, confidence: float, evidence: Sequence[str]) -> Verdict:
    return Verdict(blocking, False, mechanism, confidence, "anomaly", tuple(evidence))


@register("web_connectivity")
def web_connectivity(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    return web_connectivity_verdict(measurement, matcher)


@register("dnscheck")
def dnscheck(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    tk = _tk(measurement)
    if "x_lookups" not in tk and isinstance(tk.get("lookups"), Mapping):
        # OONI's own dnscheck carries no control and no verdict: all we can say is
        # whether the resolvers answered at all.
        if tk.get("bootstrap_failure"):
            return _failure(["test_keys.bootstrap_failure"])
        return Verdict(None, None, "none", 0.0, "ok", ("test_keys.lookups",))
    return dnscheck_verdict(measurement)


def _tampering_flag(value: Any) -> bool | None:
    """OONI's ``tampering``: a bool, or an object whose ``total`` is the bool."""
    if isinstance(value, bool):
        return value
    if isinstance(value, Mapping):
        total = value.get("total")
        if isinstance(total, bool):
            return total
        flags = [v for v in value.values() if isinstance(v, bool)]
        return any(flags) if flags else None
    return None


@register("http_invalid_request_line")
@register("http_header_field_manipulation")
def middlebox(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    tampering = _tampering_flag(_tk(measurement).get("tampering"))
    if tampering is None:
        return _failure()
    if tampering:
        return _anomaly("http-failure", "middlebox", 0.8, ["test_keys.tampering"])
    return _ok(["test_keys.tampering"])


@register("throttling")
def throttling(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    throttle = _tk(measurement).get("x_throttle")
    if not isinstance(throttle, Mapping) or not isinstance(throttle.get("throttled"), bool):
        return _failure()
    if throttle["throttled"]:
        given = throttle.get("confidence")
        confidence = float(given) if isinstance(given, (int, float)) and 0 <= given <= 1 else 0.8
        return _anomaly("http-failure", "throttle", confidence, ["test_keys.x_throttle"])
    return _ok(["test_keys.x_throttle"])


@register("tls_mitm")
def tls_mitm(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    tk = _tk(measurement)
    for key in ("x_mitm", "tampering"):
        value = tk.get(key)
        flag = value.get("intercepted") if isinstance(value, Mapping) and "intercepted" in value \
            else _tampering_flag(value)
        if isinstance(flag, bool):
            if flag:
                return _anomaly("http-failure", "tls.mitm", 0.9, [f"test_keys.{key}"])
            return _ok([f"test_keys.{key}"])
    return generic_verdict(measurement, matcher)


def generic_verdict(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    """Nettests without their own entry: the flags any of ours may carry, else "ok"."""
    tk = _tk(measurement)
    tampering = _tampering_flag(tk.get("tampering"))
    if tampering:
        return _anomaly("http-failure", "middlebox", 0.6, ["test_keys.tampering"])
    throttle = tk.get("x_throttle")
    if isinstance(throttle, Mapping) and throttle.get("throttled") is True:
        return _anomaly("http-failure", "throttle", 0.7, ["test_keys.x_throttle"])
    if tk.get("x_middlebox_tampering") is True:
        return _anomaly("http-failure", "middlebox", 0.6, ["test_keys.x_middlebox_tampering"])
    if tampering is False:
        return _ok(["test_keys.tampering"])
    return Verdict(None, None, "none", 0.0, "ok")


# --------------------------------------------------------------------------- fingerprints


class Matcher:
    """The fingerprint database as a `BlockpageMatcher`, memoised by response.

    Exact: the key is the whole (body, headers) pair, so a hit returns what
    the database would have returned. Bounded in entries and in the size of
    bodies it keeps, so memory does not grow with the corpus.
    """

    MAX_ENTRIES = 4096
    MAX_BODY = 64 * 1024  # bodies longer than this are matched every time, not kept

    def __init__(self, db: Any | None = None) -> None:
        if db is None:
            from tamperscope.wire.fingerprints import FingerprintDB

            db = FingerprintDB.load()
        self.db = db
        self._memo: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[str, ...]] = {}
        self.calls = 0
        self.hits = 0

    def __call__(self, body: str, headers: Mapping[str, str]) -> Sequence[str]:
        self.calls += 1
        key = (body, tuple(headers.items()))
        found = self._memo.get(key)
        if found is not None:
            self.hits += 1
            return found
        result = tuple(m.id for m in self.db.match_response(body, headers))
        if len(body) <= self.MAX_BODY:
            while len(self._memo) >= self.MAX_ENTRIES:
                del self._memo[next(iter(self._memo))]  # oldest first
            self._memo[key] = result
        return result

    @property
    def pattern_count(self) -> int:
        return int(getattr(self.db, "pattern_count", 0))


_MATCHER: Matcher | None = None


def default_matcher() -> Matcher:
    """One matcher per process (the database compiles once, in about a second)."""
    global _MATCHER
    if _MATCHER is None:
        _MATCHER = Matcher()
    return _MATCHER


__all__ = [
    "ANALYSIS_VERSION", "Matcher", "VERDICTS", "VerdictFunction", "default_matcher", "generic_verdict",
    "register", "verdict_for",
]
