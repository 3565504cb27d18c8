"""A dns rule's ``qtypes``: a censor that strips the HTTPS records carrying ECH configs (an ECH downgrade by DNS)
while the same name's A queries pass. Real frames through the lab censor's `decide`, as the bridge gives them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import dns.message
import pytest

from tamperscope.lab import blockpages, censor
from tamperscope.lab.expect import expect_url
from tamperscope.model.profile import Profile, ProfileError, parse_profile
from tamperscope.wire import packet

CLIENT, RESOLVER = "198.18.1.2", "198.19.0.8"
MACS = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
PROFILE = """
name = "strip"
[[rule]]
id = "https-strip"
layer = "dns"
action = "drop"
qtypes = ["HTTPS", "svcb"]
domains = ["cloudflare.com"]
suffix = true
"""


def parse(text: str, tmp_path: Path) -> Profile:
    return parse_profile(text, source="p.toml", base=tmp_path, builtin_pages=blockpages.names())


def test_qtypes_are_read_on_dns_rules_only_and_by_name(tmp_path: Path) -> None:
    (rule,) = parse(PROFILE, tmp_path).rules
    assert rule.qtypes == (65, 64) and rule.asks(65) and rule.asks(64) and not rule.asks(1)
    (every,) = parse("[[rule]]\nid='d'\nlayer='dns'\naction='drop'\ndomains=['a.example']\n", tmp_path).rules
    assert every.qtypes == () and every.asks(1) and every.asks(65)
    for bad, why in (("layer='tls'\naction='rst'\nqtypes=['A']", "only dns rules"),
                     ("layer='dns'\naction='drop'\nqtypes=['HTTPZ']", "'HTTPZ' is not a query type"),
                     ("layer='dns'\naction='drop'\nqtypes=[]", "non-empty list"),
                     ("layer='dns'\naction='drop'\nqtypes='HTTPS'", "non-empty list"),
                     ("layer='dns'\naction='inject'\nanswer='198.18.1.81'\nqtypes=['HTTPS']", "list A")):
        with pytest.raises(ProfileError, match=why) as info:
            parse(f"[[rule]]\nid='x'\n{bad}\ndomains=['a.example']\n", tmp_path)
        assert "\n" not in str(info.value) and ".qtypes" in str(info.value)


def _query(name: str, qtype: str) -> bytes:
    wire = dns.message.make_query(name, qtype).to_wire()
    return MACS + packet.udp_packet(CLIENT, RESOLVER, 40000, 53, wire)


def test_the_censor_strips_https_queries_and_passes_the_same_names_a_queries(tmp_path: Path) -> None:
    c = censor.Censor(parse(PROFILE, tmp_path), censor.GroundTruth(tmp_path / "truth.jsonl"))
    try:
        https, a = _query("crypto.cloudflare.com", "HTTPS"), _query("crypto.cloudflare.com", "A")
        assert c.decide(https, True, time.monotonic(), time.time()) == []  # dropped, nothing forged
        assert c.decide(a, True, time.monotonic(), time.time()) == [(a, False, 0.0)]  # forwarded as it came
        assert c.decide(_query("example.org", "HTTPS"), True, time.monotonic(), time.time()) != []
        c.truth._f.flush()
        logged = [json.loads(line) for line in (tmp_path / "truth.jsonl").read_text().splitlines()]
        assert [(e["rule"], e["name"]) for e in logged] == [("https-strip", "crypto.cloudflare.com")]
    finally:
        c.truth._f.close()


def test_expect_never_predicts_a_rule_for_other_query_types(tmp_path: Path) -> None:
    profile = parse(PROFILE, tmp_path)
    assert expect_url(profile, "https://crypto.cloudflare.com/").mechanism == "none"
    every = parse(PROFILE.replace('qtypes = ["HTTPS", "svcb"]\n', ""), tmp_path)
    assert expect_url(every, "https://crypto.cloudflare.com/").mechanism == "dns.drop"


def test_expect_predicts_a_drop_of_aaaa_as_the_users_failed_lookup(tmp_path: Path) -> None:
    """QA: a rule dropping only AAAA made web_connectivity see dns.drop (glibc's lookup asks A and AAAA, and fails
    whole when one goes unanswered), where `lab expect` said none. An injection reads A, so only a drop counts."""
    aaaa = parse(PROFILE.replace('qtypes = ["HTTPS", "svcb"]', 'qtypes = ["AAAA"]'), tmp_path)
    got = expect_url(aaaa, "https://crypto.cloudflare.com/")
    assert (got.mechanism, got.blocking, got.rule) == ("dns.drop", "dns", "https-strip")
    assert expect_url(aaaa, "https://example.com/").mechanism == "none"  # another name
