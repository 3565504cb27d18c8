"""Agreement with OONI on real OONI output (../shared/data/ooni-samples).

The 50 samples are Web Connectivity v0.5 measurements that OONI's own QA suite
produced against an emulated censor; each carries OONI's verdict. We blank every
stored verdict field, re-derive ours from the raw records, and compare. Each
disagreement must be explained in `EXPLAINED`, and an explanation that no longer
applies fails the test too, so the table stays honest.

The second half builds v0.4-shaped variants of some samples (system resolver
only, no TLS validation, failed fetches recorded as a failed ``requests[0]`` as
v0.4 did) and checks v0.4's rules, which differ from v0.5's on purpose.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tamperscope.model.verdict import Verdict, web_connectivity_verdict

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"
VERDICT_FIELDS = (
    "blocking", "accessible", "dns_consistency", "body_length_match", "status_code_match",
    "headers_match", "title_match", "x_blocking_flags", "x_null_null_flags",
)
MIN_AGREEMENT = 48

EXPLAINED = {
    "httpDiffWithInconsistentDNS": (
        "The system resolver answers 130.192.182.17 (AS137, a proxy) instead of 93.184.216.34 "
        "(AS15133), but the probe completed a verified TLS handshake with SNI www.example.com "
        "to that address (tls_handshakes[0]). v0.5's rule makes a TLS-validated address "
        "consistent, so the different page is an http-diff, not DNS. OONI's 'classic' engine, "
        "which produced this sample, ignores TLS validation to mimic v0.4 and blames DNS; "
        "OONI's own LTE engine (x_blocking_flags has the HTTPDiff bit) agrees with us."
    ),
}


def _scenarios() -> list[str]:
    assert SAMPLES.is_dir(), f"reference samples missing: {SAMPLES}"
    return sorted(p.name for p in SAMPLES.iterdir() if (p / "measurement.json").is_file())


def _load(name: str) -> dict[str, Any]:
    with (SAMPLES / name / "measurement.json").open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def _blank(measurement: dict[str, Any]) -> tuple[dict[str, Any], tuple[object, object]]:
    """A copy without any stored verdict, and OONI's (blocking, accessible)."""
    blanked = copy.deepcopy(measurement)
    tk = blanked["test_keys"]
    expected = (tk.get("blocking"), tk.get("accessible"))
    for key in VERDICT_FIELDS:
        tk.pop(key, None)
    assert not set(VERDICT_FIELDS) & set(tk), "stored verdict fields must be gone"
    return blanked, expected


def _show(value: object) -> str:
    return json.dumps(value)


def test_fifty_samples() -> None:
    assert len(_scenarios()) == 50


@pytest.mark.serial  # what it prints belongs in CI's log, which a parallel worker's output never reaches
def test_agreement_with_ooni_v05(capsys: pytest.CaptureFixture[str]) -> None:
    rows = []
    disagreements = {}
    for name in _scenarios():
        blanked, expected = _blank(_load(name))
        verdict = web_connectivity_verdict(blanked)
        ours = (verdict.blocking, verdict.accessible)
        if ours != expected:
            disagreements[name] = (expected, ours)
        rows.append((name, expected, ours, verdict))

    with capsys.disabled():
        print(f"\n{'scenario':<58} {'OONI':<24} {'ours':<24} {'mechanism':<15} conf")
        for name, expected, ours, verdict in rows:
            mark = " " if expected == ours else "*"
            print(f"{mark}{name:<57} {_show(expected):<24} {_show(ours):<24} "
                  f"{verdict.mechanism:<15} {verdict.confidence:.2f}")
        print(f"agreement: {len(rows) - len(disagreements)}/{len(rows)}; explained: {sorted(EXPLAINED)}")

    unexplained = sorted(set(disagreements) - set(EXPLAINED))
    stale = sorted(set(EXPLAINED) - set(disagreements))
    assert not unexplained, f"unexplained disagreements: {[(n, disagreements[n]) for n in unexplained]}"
    assert not stale, f"explained but no longer disagreeing: {stale}"
    assert len(rows) - len(disagreements) >= MIN_AGREEMENT


@pytest.mark.parametrize("name", _scenarios())
def test_every_sample_has_a_well_formed_verdict(name: str) -> None:
    verdict = web_connectivity_verdict(_blank(_load(name))[0])
    assert isinstance(verdict, Verdict)
    if verdict.blocking is None:
        assert verdict.status == "failure" and verdict.confidence == 0.0
    elif isinstance(verdict.blocking, str):
        assert verdict.status == "anomaly" and verdict.accessible is False and verdict.evidence
    tk = _load(name)["test_keys"]
    for pointer in verdict.evidence:  # every pointer names a record that exists
        head, _, rest = pointer.partition(".")
        assert head == "test_keys"
        key = rest.split("[")[0].split(".")[0]
        assert key in tk, pointer
        if "[" in rest and rest.split("[")[1][0].isdigit():
            assert int(rest.split("[")[1].rstrip("]")) < len(tk[key]), pointer


def test_stored_verdicts_are_really_ignored() -> None:
    blanked, _ = _blank(_load("dnsBlockingNXDOMAIN"))
    forged = copy.deepcopy(blanked)
    forged["test_keys"].update(blocking=False, accessible=True, dns_consistency="consistent")
    assert web_connectivity_verdict(forged) == web_connectivity_verdict(blanked)


def test_tags_are_not_needed() -> None:
    """Records without OONI's depth=/fetch_body= tags, in either order, give the same verdicts."""
    for name in _scenarios():
        blanked, _ = _blank(_load(name))
        reference = web_connectivity_verdict(blanked)
        for chronological in (False, True):
            bare = copy.deepcopy(blanked)
            tk = bare["test_keys"]
            for key in ("queries", "tcp_connect", "tls_handshakes", "requests"):
                for record in tk.get(key) or []:
                    record.pop("tags", None)
            if chronological and tk.get("requests"):
                tk["requests"].reverse()
            verdict = web_connectivity_verdict(bare)
            assert (verdict.blocking, verdict.accessible, verdict.mechanism) == \
                (reference.blocking, reference.accessible, reference.mechanism), (name, chronological)


# --------------------------------------------------------------------------- v0.4


def _has(record: dict[str, Any], tag: str) -> bool:
    return tag in (record.get("tags") or [])


def as_v04(measurement: dict[str, Any]) -> dict[str, Any]:
    """Reshape an LTE (v0.5) sample into what Web Connectivity v0.4 would have recorded.

    v0.4 resolved with the system resolver only, checked TCP to the input's endpoints,
    fetched with one HTTP client (TLS handshakes only for https hops) and recorded a
    failed fetch as a failed request, whatever step failed. It had no TLS checks on
    port 443 for http URLs, no duplicate DNS responses and no ip_info.
    """
    m, _ = _blank(measurement)
    m["test_version"] = "0.4.3"
    tk = m["test_keys"]
    classic = [q for q in tk.get("queries") or [] if q["engine"] == "getaddrinfo"]
    tk["queries"] = [dict(q, engine="system") for q in classic if _has(q, "depth=0")]
    fetch = lambda r: _has(r, "classic") and _has(r, "fetch_body=true")  # noqa: E731
    connects = [c for c in tk.get("tcp_connect") or [] if fetch(c)]
    handshakes = [h for h in tk.get("tls_handshakes") or [] if fetch(h)]
    requests = [r for r in tk.get("requests") or [] if _has(r, "classic")]
    failed = _failed_before_http(classic, connects, handshakes, requests, m["input"])
    tk["tcp_connect"] = [c for c in connects if _has(c, "depth=0")]  # v0.4 checked hop 0 only
    tk["tls_handshakes"] = handshakes
    tk["requests"] = ([failed] if failed else []) + requests
    for key in ("queries", "tcp_connect", "tls_handshakes", "requests"):
        for record in tk[key]:
            record.pop("tags", None)
    for key in ("x_dns_duplicate_responses", "x_control_request"):
        tk.pop(key, None)
    if tk.get("control"):
        tk["control"].pop("tls_handshake", None)
        tk["control"].pop("ip_info", None)
    return m


def _depth(record: dict[str, Any]) -> int:
    return next(int(t[6:]) for t in record.get("tags") or ["depth=0"] if t.startswith("depth="))


def _failed_before_http(queries: list[dict[str, Any]], connects: list[dict[str, Any]],
                        handshakes: list[dict[str, Any]], requests: list[dict[str, Any]],
                        url: str) -> dict[str, Any] | None:
    """The request v0.4 would have written for a hop that failed before any HTTP."""
    records = [*queries, *connects, *handshakes, *requests]
    deepest = max((_depth(r) for r in records), default=0)
    if any(_depth(r) == deepest for r in requests):
        return None
    failures = [h["failure"] for h in handshakes if _depth(h) == deepest and h["failure"]]
    failures += [c["status"]["failure"] for c in connects if _depth(c) == deepest and c["status"]["failure"]]
    failures += [q["failure"] for q in queries if _depth(q) == deepest and q["failure"]]
    if not failures:
        return None
    if deepest > 0:
        previous = next(r for r in requests if _depth(r) == deepest - 1)
        url = previous["response"]["headers"]["Location"]
    return {"request": {"url": url}, "failure": failures[-1], "response": None}


V04_EXPECTED = {
    # scenario: (blocking, accessible, mechanism)      v0.5 result, when different
    "successWithHTTP": (False, True, "none"),
    "successWithHTTPS": (False, True, "none"),
    "dnsBlockingNXDOMAIN": ("dns", False, "dns.nxdomain"),
    "dnsBlockingBOGON": ("dns", False, "dns.poison"),
    "httpDiffWithConsistentDNS": ("http-diff", False, "http.blockpage"),
    "httpDiffWithInconsistentDNS": ("dns", False, "dns.poison"),      # v0.5: http-diff (TLS validated)
    "dnsHijackingToProxyWithHTTPURL": ("dns", False, "dns.poison"),   # v0.5: accessible (TLS validated)
    "dnsHijackingToProxyWithHTTPSURL": (False, True, "none"),         # v0.4: HTTPS success comes first
    "tcpBlockingConnectTimeout": ("tcp_ip", False, "tcp.drop"),
    "tlsBlockingConnectionResetWithConsistentDNS": ("http-failure", False, "tls.rst"),
    "httpBlockingConnectionReset": ("http-failure", False, "http.rst"),
    "redirectWithConsistentDNSAndThenConnectionRefusedForHTTPS": ("http-failure", False, "tcp.rst"),
    "redirectWithConsistentDNSAndThenNXDOMAIN": ("dns", False, "dns.nxdomain"),
    "websiteDownNXDOMAIN": (False, True, "none"),                     # v0.4/MK quirk; v0.5: (False, False)
    "websiteDownTCPConnect": ("tcp_ip", False, "tcp.rst"),            # v0.4 false positive; v0.5: down
    "controlFailureWithSuccessfulHTTPWebsite": (None, None, "none"),
}


@pytest.mark.parametrize("name", sorted(V04_EXPECTED))
def test_v04_rules_on_v04_shaped_samples(name: str) -> None:
    v04 = as_v04(_load(name))
    assert v04["test_version"] == "0.4.3" and not v04["test_keys"].get("x_dns_duplicate_responses")
    assert all(q["engine"] == "system" for q in v04["test_keys"]["queries"])
    verdict = web_connectivity_verdict(v04)
    assert (verdict.blocking, verdict.accessible, verdict.mechanism) == V04_EXPECTED[name]


def _geo(asn_of_answer: int, enrich_control: bool) -> dict[str, Any]:
    """successWithHTTP in v0.4 shape, with the resolver answering a sibling server."""
    m = as_v04(_load("successWithHTTP"))
    tk = m["test_keys"]
    sibling = "93.184.216.99"
    tk["queries"][0]["answers"] = [{"answer_type": "A", "ipv4": sibling, "asn": asn_of_answer}]
    for c in tk["tcp_connect"]:
        c["ip"] = sibling
    tk["requests"][0]["address"] = f"{sibling}:80"
    tk["control"]["tcp_connect"] = {f"{sibling}:80": {"status": True, "failure": None}}
    if enrich_control:  # what an analysis layer with a GeoIP database adds before calling us
        tk["control"]["ip_info"] = {"93.184.216.34": {"asn": 15133}}
    return m


def test_v04_geo_cdn_difference_with_a_consistent_asn_is_not_dns() -> None:
    verdict = web_connectivity_verdict(_geo(15133, enrich_control=True))
    assert (verdict.blocking, verdict.accessible, verdict.mechanism) == (False, True, "none")


def test_v04_geo_cdn_difference_with_another_asn_is_dns() -> None:
    verdict = web_connectivity_verdict(_geo(64500, enrich_control=True))
    assert (verdict.blocking, verdict.accessible, verdict.mechanism) == ("dns", False, "dns.poison")


def test_v04_without_control_asns_cannot_forgive_a_different_address() -> None:
    verdict = web_connectivity_verdict(_geo(15133, enrich_control=False))
    assert verdict.blocking == "dns"


def test_v04_and_v05_differ_only_where_tls_validation_matters() -> None:
    """On the same v0.5 sample, forcing v0.4 rules turns TLS-validated answers into dns."""
    m, _ = _blank(_load("dnsHijackingToProxyWithHTTPURL"))
    assert web_connectivity_verdict(m).blocking is False
    m["test_version"] = "0.4.3"
    assert web_connectivity_verdict(m).blocking == "dns"
