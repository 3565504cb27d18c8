"""The blocking_rules nettest against a censor whose rules are known (tests/lab/profiles/rules.toml).

Each rule's shape (an exact name, a name with its subdomains, a regex anchored at one end, an unanchored
keyword) on DNS, TLS and HTTP must be read back from what the names made from the blocked one meet, and
the censor's ground-truth log must show it acted exactly on the names the nettest says were blocked. The
analysis, judging every probe again from its records alone, must reach the same rules and verdicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .conftest import run_nettest

pytestmark = pytest.mark.lab
PROFILES = Path(__file__).parent / "profiles"

EXPECTED = {  # input: (dns, dns_path, tls, http) rules; dns_path asks the lab's silent address (198.19.0.9)
    "dns-exact.example": ("exact", "exact", "not_blocked", "not_blocked"),
    "dns-tree.example": ("domain_and_subdomains", "domain_and_subdomains", "not_blocked", "not_blocked"),
    "dns-poison.example": ("domain_and_subdomains", "not_blocked", "not_blocked", "not_blocked"),
    "https://sni-tree.example/": ("not_blocked", "not_blocked", "domain_and_subdomains", "not_blocked"),
    "forbidden.example": ("not_blocked", "not_blocked", "substring", "not_blocked"),
    "http://host-exact.example/": ("not_blocked", "not_blocked", "not_blocked", "exact"),
    "host-ends.example": ("not_blocked", "not_blocked", "not_blocked", "ends_with"),
    "example.com": ("not_blocked", "not_blocked", "not_blocked", "not_blocked"),
}
MECHANISMS = {"dns-exact.example": "dns.injection", "dns-tree.example": "dns.injection",
              "dns-poison.example": "dns.poison",
              "https://sni-tree.example/": "tls.rst", "forbidden.example": "tls.rst",
              "http://host-exact.example/": "http.rst", "host-ends.example": "http.blockpage",
              "example.com": "none"}


def run_rules(tmp_path: Path, *inputs: str, extra: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    return run_nettest(tmp_path / "r.jsonl", "blocking_rules", inputs, extra)


def rules(m: dict[str, Any]) -> tuple[str, ...]:
    x = m["test_keys"]["x_rules"]
    return tuple(x[layer]["rule"] for layer in ("dns", "dns_path", "tls", "http"))


def test_every_rule_shape_is_read_back(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab = lab_factory(str(PROFILES / "rules.toml"))
    got = run_rules(tmp_path, *EXPECTED)
    assert {i: rules(m) for i, m in got.items()} == EXPECTED
    assert {i: m["test_keys"]["x_mechanism"] for i, m in got.items()} == MECHANISMS
    for i, m in got.items():
        tk = m["test_keys"]
        if MECHANISMS[i] == "none":
            assert (tk["blocking"], tk["accessible"], tk["x_status"]) == (False, True, "ok")
        else:
            assert tk["blocking"] and tk["accessible"] is False and tk["x_status"] == "anomaly"
            assert tk["x_confidence"] >= 0.9  # an innocent name to the same place passed: the name is blocked

    # the keyword: the shortest part of the name the over-broad regex still catches, caught on its own
    tls = got["forbidden.example"]["test_keys"]["x_rules"]["tls"]
    assert tls["keyword"] == "forbid" and "containing 'forbid'" in tls["says"]
    assert tls["overblocks"].endswith("forbidden.example") and tls["overblocks"] != "forbidden.example"
    assert "ending in 'host-ends.example'" in got["host-ends.example"]["test_keys"]["x_rules"]["http"]["says"]

    # every probe the nettest calls blocked was acted on by the censor, and none it calls passed
    log = lab.log()
    acted = {(e["rule"], e["name"].rstrip(".")) for e in log}
    layer_rules = {"dns": ("dns-exact", "dns-suffix", "dns-poison"), "dns_path": ("dns-exact", "dns-suffix"),
                   "tls": ("sni-tree", "sni-keyword"), "http": ("host-exact", "host-ends")}
    checked = 0
    for m in got.values():
        layers = m["test_keys"]["x_blocking_rules"]["layers"]
        for layer, data in layers.items():
            for p in data["probes"]:
                hit = any((r, p["name"]) in acted for r in layer_rules[layer])
                assert hit == (p["outcome"] == "blocked"), (layer, p)
                checked += 1
    assert checked > 40

    # each probe is its own transaction, its records tagged with its layer and kind
    tk = got["https://sni-tree.example/"]["test_keys"]
    probes = tk["x_blocking_rules"]["layers"]["tls"]["probes"]
    assert [p["kind"] for p in probes] == ["innocent", "exact", "subdomain", "prefixed", "suffixed"]
    for p in probes:
        hs = [h for h in tk["tls_handshakes"] if h["transaction_id"] == p["transaction_id"]]
        assert len(hs) == 1 and hs[0]["tags"] == [f"rules=tls:{p['kind']}"] and hs[0]["server_name"] == p["name"]

    # the analysis, judging every probe again from its records, reaches the same rules and verdicts
    from tamperscope.analysis.verdicts import default_matcher, verdict_for
    from tamperscope.model.rules import rules_from_records

    matcher = default_matcher()
    for m in got.values():
        again = rules_from_records(m["test_keys"], matcher)
        assert tuple(again[layer]["rule"] for layer in ("dns", "dns_path", "tls", "http")) == rules(m)
        v = verdict_for(m, matcher)
        assert (v.mechanism, v.blocking, v.confidence) == \
            (m["test_keys"]["x_mechanism"], m["test_keys"]["blocking"], m["test_keys"]["x_confidence"])


def test_residual_blocking_is_waited_out_not_blamed(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """After each caught name the censor holds the address for 8 s: without the waits the prefixed and suffixed
    names would be reset by the hold, and the rule would read `substring`."""
    lab = lab_factory(str(PROFILES / "rules-residual.toml"))
    got = run_rules(tmp_path, "sni-tree.example")["sni-tree.example"]
    tls = got["test_keys"]["x_blocking_rules"]["layers"]["tls"]
    assert tls["rule"] == "domain_and_subdomains", tls
    assert [p["outcome"] for p in tls["probes"]] == ["passed", "blocked", "blocked", "passed", "passed"]
    assert len(tls["residual_waits"]) == 2 and all(3 <= w <= 15 for w in tls["residual_waits"])
    assert {e["name"].rstrip(".") for e in lab.logged("sni-tree")} == {p["name"] for p in tls["probes"][1:3]}

    # with too little time for the holds, the names left are residual and the layer undetermined, never a rule
    short = run_rules(tmp_path, "sni-tree.example", extra=("--timeout", "12"))["sni-tree.example"]
    tls = short["test_keys"]["x_blocking_rules"]["layers"]["tls"]
    assert "residual" in [p["outcome"] for p in tls["probes"]] and tls["rule"] == "undetermined"
