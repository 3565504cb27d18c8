"""facebook_messenger in the lab: Facebook's names resolve into the lab's stand-in for Facebook's network
(AS32934 in the lab's ASN table); a resolver that answers another network's address is caught by the ASN
check, before any connection, and a path that refuses Facebook's CDN is seen as TCP blocking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tamperscope.lab import addresses as A
from tamperscope.lab import manager
from tamperscope.nettests.facebook_messenger import SERVICES

from .test_probe_cli import measure_once, probe

pytestmark = pytest.mark.lab
PROFILE = str(Path(__file__).parent / "profiles" / "facebook.toml")
KEYS = [k for k, _ in SERVICES]



def test_messenger_reachable_without_a_censor(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Run as OONI Probe's instant-messaging card runs it: `tamperscope run im`, the four apps in turn."""
    lab_factory("none")
    out = tmp_path / "im.jsonl"
    res = probe("im", "-o", str(out))
    assert res.returncode == 0, res.stderr
    ms = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(m["test_name"], m["test_keys"]["x_status"]) for m in ms] == \
        [("telegram", "ok"), ("whatsapp", "ok"), ("facebook_messenger", "ok"), ("signal", "ok")]
    tk = ms[2]["test_keys"]
    assert all(tk[f"facebook_{k}_dns_consistent"] is True for k in KEYS), tk
    assert [tk[f"facebook_{k}_reachable"] for k in KEYS] == [None] + [True] * (len(KEYS) - 1)  # stun: by name only
    assert (tk["facebook_dns_blocking"], tk["facebook_tcp_blocking"], tk["x_status"]) == (False, False, "ok")
    answers = [a for q in tk["queries"] for a in q["answers"] or () if a["answer_type"] == "A"]
    assert {q["hostname"] for q in tk["queries"]} == {h for _, h in SERVICES}
    assert answers and all(a["asn"] == 32934 for a in answers)
    assert all(c["port"] == 443 and c["status"]["success"] for c in tk["tcp_connect"])


def test_messenger_blocked_by_name_and_address(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab_factory(PROFILE)
    tk = measure_once("facebook_messenger", tmp_path / "b.jsonl")
    lied = ["stun", "b_api", "b_graph", "edge", "star"]
    assert [tk[f"facebook_{k}_dns_consistent"] for k in lied] == [False] * 5, tk
    assert all(tk[f"facebook_{k}_reachable"] is None for k in lied)  # a lie's address is not connected to
    assert {(a["ipv4"], a["asn"]) for q in tk["queries"] for a in q["answers"] or () if q["hostname"].endswith(
        ("facebook.com", "fbsbx.com"))} == {(A.ISP_BLOCKPAGE, 64500)}
    for k in ("external_cdn", "scontent_cdn"):
        assert (tk[f"facebook_{k}_dns_consistent"], tk[f"facebook_{k}_reachable"]) == (True, False)
    assert {c["status"]["failure"] for c in tk["tcp_connect"]} == {"connection_refused"}
    assert (tk["facebook_dns_blocking"], tk["facebook_tcp_blocking"]) == (True, True)
    assert (tk["x_status"], tk["x_mechanism"], tk["blocking"]) == ("anomaly", "dns.poison", "dns")
    truth = [json.loads(line) for line in manager.PATHS.log.read_text().splitlines()]
    assert {"b-api.facebook.com", "stun.fbsbx.com"} <= {t["name"] for t in truth if t["rule"] == "fb-dns"}
    assert {t["rule"] for t in truth} >= {"fb-dns", "fb-cdn"}
