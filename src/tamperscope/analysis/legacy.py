"""Verdicts for OONI's legacy tests, common in its 2012-2020 archive: ``http_requests``,
``dns_consistency``, ``bridge_reachability``, ``meek_fronted_requests_test`` and ``http_host``
(ooni/spec ts-002, ts-003, ts-004, ts-011, ts-014).

Each reads only what its spec says means blocked or not blocked. Registered in
`verdicts.VERDICTS` when `verdicts` is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tamperscope.analysis.circumvention import BOOTSTRAP_CONFIDENCE
from tamperscope.analysis.verdicts import register
from tamperscope.model.consistency import _records
from tamperscope.model.services import anomaly as _anomaly
from tamperscope.model.services import failed as _failure
from tamperscope.model.services import flag as _flag
from tamperscope.model.services import ok as _ok
from tamperscope.model.services import test_keys as _tk
from tamperscope.model.torverdict import SCAN as _SCAN
from tamperscope.model.torverdict import TARGET_CONFIDENCE
from tamperscope.model.torverdict import anomaly_of as _failed
from tamperscope.model.torverdict import bootstrap_verdict as _tor_bootstrap
from tamperscope.model.torverdict import failure_string as _failure_string
from tamperscope.model.verdict import BlockpageMatcher, Verdict, failure_class

# --------------------------------------------------------------------------- OONI's legacy tests (2012-2020)
#
# ooniprobe-legacy's tests, common in the archive: ts-002, ts-003, ts-004, ts-011, ts-014. Read only
# where the spec gives a key that means blocked or not blocked.


@register("bridge_reachability")
def bridge_reachability(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    """ts-011: a tor bootstrap through one bridge, read as `vanilla_tor` (``success``, ``tor_progress``).

    0.5, not 0.6: there is no control, and a dead bridge fails the same way. A missing transport
    (``error`` "missing-pyobfsproxy", "unsupported-tor-version"...) is a failure. OONI fastpath does
    not score this test (its flag: failure).
    """
    tk = _tk(measurement)
    error = tk.get("error")
    if isinstance(error, str) and (error.startswith("missing-") or error.startswith("unsupported-")):
        return _failure(["test_keys.error"])
    return _tor_bootstrap(tk, 0.5)


def _header_map(headers: Any) -> dict[str, str]:
    """Response headers as name -> value: a map (legacy) or a list of [name, value or [values]]."""
    if isinstance(headers, Mapping):
        return {k: v for k, v in list(headers.items())[:_SCAN] if isinstance(k, str) and isinstance(v, str)}
    out: dict[str, str] = {}
    for pair in headers[:_SCAN] if isinstance(headers, list) else ():
        if isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[0], str):
            value = pair[1][0] if isinstance(pair[1], list) and pair[1] else pair[1]
            if isinstance(value, str):
                out[pair[0]] = value
    return out


def _response(request: Any) -> tuple[bool, str, dict[str, str]] | None:
    """(over Tor?, body, headers) of one legacy transaction with a text body."""
    if not isinstance(request, Mapping):
        return None
    sent, got = request.get("request"), request.get("response")
    if not isinstance(sent, Mapping) or not isinstance(got, Mapping) or not isinstance(got.get("body"), str):
        return None
    via = sent.get("tor")
    return isinstance(via, Mapping) and via.get("is_tor") is True, got["body"], _header_map(got.get("headers"))


def _legacy_fingerprints(tk: Mapping[str, Any], matcher: BlockpageMatcher | None
                         ) -> tuple[tuple[str, ...], tuple[str, ...], bool]:
    """(fingerprint ids, pointers of the direct responses they matched, did a response over Tor match)."""
    requests = tk.get("requests")
    if matcher is None or not isinstance(requests, list):
        return (), (), False
    ids: dict[str, None] = {}
    pointers, over_tor = [], False
    for i, request in enumerate(requests[:_SCAN]):
        response = _response(request)
        matched = [str(m) for m in matcher(response[1], response[2])] if response else []
        if matched and response and response[0]:
            over_tor = True
        elif matched:
            ids.update(dict.fromkeys(matched))
            pointers.append(f"test_keys.requests[{i}]")
    return tuple(ids), tuple(pointers), over_tor


@register("http_requests")
def http_requests(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    """ts-003: one GET over the probe's network, one over Tor (the control).

    As OONI fastpath's ``score_http_requests``: a blockpage fingerprint on a direct response is a
    confirmed http.blockpage (one on a response over Tor fails the measurement); ``body_length_match``
    or ``headers_match`` false is an anomaly (http-diff: 0.6 on the body, 0.5 on headers alone); both
    true is ok. Where fastpath says failure we read two more things: an ``experiment_failure`` while
    ``control_failure`` is null (the site answered over Tor, not here) is an anomaly named by its
    failure string, as Web Connectivity v0.4 would; and before v0.2, which had no ``headers_match``,
    ``body_length_match`` decides alone.
    """
    tk = _tk(measurement)
    fps, pointers, over_tor = _legacy_fingerprints(tk, matcher)
    if over_tor:
        return _failure(["test_keys.requests"])
    if fps:
        return Verdict("http-diff", False, "http.blockpage", 0.95, "anomaly", pointers, fps)
    experiment = _failure_string(tk.get("experiment_failure"))
    if experiment and "control_failure" in tk and tk["control_failure"] is None:
        layer = "tcp" if failure_class(experiment) == "refused" or experiment.startswith("tcp_") else "http"
        return _failed(experiment, layer, BOOTSTRAP_CONFIDENCE, ["test_keys.experiment_failure",
                                                                  "test_keys.control_failure"])
    body, headers = _flag(tk.get("body_length_match")), _flag(tk.get("headers_match"))
    if body is False or headers is False:
        keys = [k for k, flag in (("body_length_match", body), ("headers_match", headers)) if flag is False]
        return _anomaly("http-diff", "http.blockpage", 0.6 if body is False else 0.5, [f"test_keys.{k}" for k in keys])
    if body and (headers or "headers_match" not in tk):
        return _ok([f"test_keys.{k}" for k in ("body_length_match", "headers_match") if k in tk])
    return _failure()


@register("dns_consistency")
def dns_consistency(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    """ts-002: each tested resolver's A answer against a control resolver's: ``inconsistent`` lists
    the resolvers with no address in common and no matching reverse lookup (``tampering`` true).

    Any inconsistent resolver is dns.poison at 0.5: the spec warns that geolocated answers look the
    same. Some answered and none inconsistent is ok; nothing answered (or the control failed) is a
    failure. Without this entry the per-resolver ``tampering`` map read as a middlebox. OONI fastpath
    does not score this test (its flag: ok), so our anomalies are ours alone.
    """
    tk = _tk(measurement)
    key, inconsistent = "inconsistent", tk.get("inconsistent")
    tampering = tk.get("tampering")
    if not isinstance(inconsistent, list) and isinstance(tampering, Mapping):
        key, inconsistent = "tampering", [r for r, v in list(tampering.items())[:_SCAN] if v is True]
    if isinstance(inconsistent, list) and any(isinstance(r, str) and r for r in inconsistent[:_SCAN]):
        return _anomaly("dns", "dns.poison", 0.5, [f"test_keys.{key}"])
    successful = tk.get("successful")
    if isinstance(inconsistent, list) and isinstance(successful, list) and successful:
        return _ok([f"test_keys.{key}", "test_keys.successful"], 0.7)
    return _failure()


@register("meek_fronted_requests_test")
def meek_fronted_requests_test(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    """ts-014: a domain-fronted HTTPS GET to a meek server.

    As OONI fastpath's ``score_meek_fronted_requests_test``: a transaction without a response is an
    anomaly (named by its failure string, at TLS), one whose status is not 200 an http-diff (0.5:
    the front may have stopped fronting); all 200 is ok; no transaction is a failure. Fastpath's half
    point for a ``Server`` other than Azure's "ECAcc" is not kept (it alone never makes an anomaly).
    Without ``requests`` the spec's ``success`` decides.
    """
    tk = _tk(measurement)
    requests = tk.get("requests")
    # an item that is no object is no transaction (hostile input): skipped, as if absent
    transactions = _records(requests[:_SCAN] if isinstance(requests, list) else None)
    if not transactions:
        success = _flag(tk.get("success"))
        if success is None or isinstance(requests, list):
            return _failure()
        return _ok(["test_keys.success"]) if success else \
            _anomaly("http-failure", "none", BOOTSTRAP_CONFIDENCE, ["test_keys.success"])
    for i, request in transactions:
        response, failure = request.get("response"), request.get("failure")
        if not isinstance(response, Mapping) or _failure_string(failure):
            return _failed(failure, "https", TARGET_CONFIDENCE, [f"test_keys.requests[{i}]"])
        if response.get("code") != 200:
            return _anomaly("http-diff", "http.blockpage", 0.5, [f"test_keys.requests[{i}]"])
    return _ok(["test_keys.requests"])


_HTTP_HOST_FLAGS = ("send_host_header", "filtering_of_subdomain", "filtering_via_fuzzy_matching",
                    "filtering_add_tab_to_host", "filtering_prepend_newline_to_method")


@register("http_host")
def http_host(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    """ts-004 "Semantics": ``send_host_header`` and the ``filtering_*`` variants are true only when
    the response matched the blockpage the user supplied (http.blockpage), false when the test
    helper's own answer came back (ok for ``send_host_header``), null otherwise. A
    ``transparent_http_proxy`` without a blockpage is a middlebox, as our reading of OONI's
    ``tampering`` is. OONI fastpath does not score this test (its flag: failure).
    """
    tk = _tk(measurement)
    censored = [k for k in _HTTP_HOST_FLAGS if tk.get(k) is True]
    if censored:
        return _anomaly("http-diff", "http.blockpage", 0.8, [f"test_keys.{k}" for k in censored])
    if tk.get("transparent_http_proxy") is True:
        return _anomaly("http-failure", "middlebox", 0.6, ["test_keys.transparent_http_proxy"])
    if tk.get("send_host_header") is False:
        return _ok(["test_keys.send_host_header"])
    return _failure()
