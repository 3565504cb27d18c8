"""The blocking_rules nettest's pure parts (model/rules.py): the names it shows the censor, the rule inferred
from what they meet, each probe judged from its OONI records, the verdict (the probe's and the analysis'),
and the nettest's input checks. The network part needs the lab and is not run here."""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tamperscope.analysis.verdicts import VERDICTS, default_matcher, verdict_for
from tamperscope.model.rules import (
    KINDS,
    LAYERS,
    MAX_NAME,
    OUTCOMES,
    RULES,
    conclude,
    describe,
    infer,
    injected,
    innocent,
    judge,
    judge_dns,
    judge_http,
    judge_path,
    judge_tls,
    keyword_name,
    rules_from_records,
    rules_verdict,
    to_verify,
    variants,
    verify_records,
)
from tamperscope.model.verdict import MECHANISMS, Verdict
from tamperscope.nettests.base import Context, NettestError
from tamperscope.nettests.blocking_rules import _host, _verify, check_input
from tamperscope.netx import Trace

try:
    from . import test_netx_servers as srv
except ImportError:  # run as a top-level module
    import test_netx_servers as srv  # type: ignore[no-redef]

HOST = "blocked.example"
SALT = "q1b2c3d4"
SITE = "198.19.0.5"      # the site's address, as the control resolves it
LIE = "10.10.34.35"      # what the censor's resolver answers for the blocked name
OTHER = "198.19.0.77"    # an honest answer for some other name
CONTROL = {"dns": {"addrs": [SITE], "failure": None},
           "http_request": {"status_code": 200, "body_length": 1000, "title": "Example", "failure": None}}

BLOCKPAGES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "blockpages" / "citizenlab"
REAL_BLOCKPAGE = BLOCKPAGES / "blockpage_meta_isp_by_beltelecom_block.html"


def fake_matcher(body: str, headers: Mapping[str, str]) -> list[str]:
    """A tiny blockpage database: one body fingerprint, one header fingerprint."""
    found = []
    if "Access to this site is blocked" in body:
        found.append("fp-body")
    if headers.get("Server") == "CensorBox":
        found.append("fp-header")
    return found


# --------------------------------------------------------------------------- hand-made OONI records


def query(tid: Any, *addrs: str, failure: str | None = None, name: str = HOST) -> dict[str, Any]:
    answers = [{"answer_type": "AAAA", "ipv6": a, "ttl": None} if ":" in a else
               {"answer_type": "A", "ipv4": a, "ttl": None} for a in addrs]
    return {"transaction_id": tid, "engine": "getaddrinfo", "hostname": name, "query_type": "ANY",
            "resolver_address": "", "failure": failure if addrs == () else None, "answers": answers, "t0": 0.0,
            "t": 0.01}


def connect(tid: Any, failure: str | None = None, port: int = 443) -> dict[str, Any]:
    return {"transaction_id": tid, "ip": SITE, "port": port,
            "status": {"blocked": None, "failure": failure, "success": failure is None}, "t0": 0.0, "t": 0.01}


def handshake(tid: Any, failure: str | None = None, sni: str = HOST) -> dict[str, Any]:
    return {"transaction_id": tid, "address": f"{SITE}:443", "server_name": sni, "failure": failure,
            "negotiated_protocol": "" if failure else "http/1.1", "t0": 0.01, "t": 0.02}


def request(tid: Any, failure: str | None = None, code: int = 200, body: Any = "",
            headers: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    response = {"code": code if failure is None else 0, "body": body, "body_is_truncated": False,
                "headers_list": [[k, v] for k, v in headers], "headers": {k: v for k, v in headers}}
    return {"transaction_id": tid, "failure": failure,
            "request": {"method": "GET", "url": f"http://{HOST}/", "headers_list": [], "body": ""},
            "response": response, "t0": 0.01, "t": 0.02}


BLOCKPAGE = "<html><title>Blocked</title><body>Access to this site is blocked by order</body></html>"
NOT_FOUND = "<html><body>404 Not Found</body></html>"


# --------------------------------------------------------------------------- infer

# Written by hand from the module docstring: the baseline must pass, H must be blocked, and then the two
# anchors decide (prefixed caught: no left anchor; suffixed caught: no right anchor); with both anchors,
# the subdomain probe tells H alone from H and *.H. "-" is any outcome (it must not matter).
INFER_TABLE = [
    # innocent   exact      subdomain  prefixed   suffixed   → rule
    ("passed",   "blocked", "passed",  "passed",  "passed",  "exact"),
    ("passed",   "blocked", "blocked", "passed",  "passed",  "domain_and_subdomains"),
    ("passed",   "blocked", "blocked", "blocked", "passed",  "ends_with"),
    # no left anchor, yet <salt>.H (which ends in H too) was not caught, or not asked: no one rule fits
    ("passed",   "blocked", "passed",  "blocked", "passed",  "undetermined"),
    ("passed",   "blocked", "unusable", "blocked", "passed", "undetermined"),
    ("passed",   "blocked", None,      "blocked", "passed",  "undetermined"),
    ("passed",   "blocked", "blocked", "passed",  "blocked", "starts_with"),
    ("passed",   "blocked", "passed",  "passed",  "blocked", "starts_with"),
    ("passed",   "blocked", "residual", "passed", "blocked", "starts_with"),
    ("passed",   "blocked", "blocked", "blocked", "blocked", "substring"),
    ("passed",   "blocked", "passed",  "blocked", "blocked", "undetermined"),
    ("passed",   "passed",  "blocked", "blocked", "blocked", "not_blocked"),
    ("passed",   "passed",  None,      None,      None,      "not_blocked"),
    # the baseline was caught too, or could not be asked: nothing can be told
    ("blocked",  "blocked", "blocked", "blocked", "blocked", "undetermined"),
    ("blocked",  "passed",  "passed",  "passed",  "passed",  "undetermined"),
    ("unusable", "blocked", "passed",  "passed",  "passed",  "undetermined"),
    ("residual", "blocked", "passed",  "passed",  "passed",  "undetermined"),
    (None,       "blocked", "passed",  "passed",  "passed",  "undetermined"),
    # H itself not judged
    ("passed",   "unusable", "passed", "passed",  "passed",  "undetermined"),
    ("passed",   "residual", "blocked", "blocked", "blocked", "undetermined"),
    ("passed",   None,      "passed",  "passed",  "passed",  "undetermined"),
    # an anchor not judged: exact/subdomains/starts/ends cannot be told apart
    ("passed",   "blocked", "passed",  "residual", "passed", "undetermined"),
    ("passed",   "blocked", "passed",  "passed",  "unusable", "undetermined"),
    ("passed",   "blocked", "blocked", "blocked", None,      "undetermined"),
    ("passed",   "blocked", "blocked", None,      "blocked", "undetermined"),
    # both anchors hold but the subdomain probe was not judged: exact or H and *.H?
    ("passed",   "blocked", "unusable", "passed", "passed",  "undetermined"),
    ("passed",   "blocked", "residual", "passed", "passed",  "undetermined"),
    ("passed",   "blocked", None,      "passed",  "passed",  "undetermined"),
]

OVERBLOCKS = {"ends_with": "prefixed", "starts_with": "suffixed", "substring": "prefixed"}


@pytest.mark.parametrize("innocent_,exact,sub,pre,suf,rule", INFER_TABLE)
def test_infer_table(innocent_: str | None, exact: str | None, sub: str | None, pre: str | None,
                     suf: str | None, rule: str) -> None:
    outcomes = {"innocent": innocent_, "exact": exact, "subdomain": sub, "prefixed": pre, "suffixed": suf}
    got = infer(outcomes, "kw")
    assert got == {"rule": rule, "keyword": "kw" if rule == "substring" else None,
                   "overblocks": OVERBLOCKS.get(rule)}
    # a missing key is the same as None
    assert infer({k: v for k, v in outcomes.items() if v is not None}, "kw") == got


def _expected_rule(o: Mapping[str, str | None]) -> str:
    """The docstring's reading, in terms of anchors: every combination must obey it."""
    judged = {k: o[k] for k in o if o[k] in ("blocked", "passed")}
    if judged.get("innocent") != "passed" or "exact" not in judged:
        return "undetermined"
    if judged["exact"] == "passed":
        return "not_blocked"
    if "prefixed" not in judged or "suffixed" not in judged:
        return "undetermined"
    left_anchored, right_anchored = judged["prefixed"] == "passed", judged["suffixed"] == "passed"
    if not left_anchored and judged.get("subdomain") != "blocked":
        return "undetermined"  # <salt>.H ends in H: a rule without a left anchor must catch it
    if not left_anchored and not right_anchored:
        return "substring"
    if not left_anchored:
        return "ends_with"
    if not right_anchored:
        return "starts_with"
    return {"blocked": "domain_and_subdomains", "passed": "exact"}.get(str(judged.get("subdomain")),
                                                                        "undetermined")


def test_infer_every_combination() -> None:
    values = ("blocked", "passed", "residual", "unusable", None)
    kinds = ("innocent", "exact", "subdomain", "prefixed", "suffixed")
    seen = set()
    for combo in itertools.product(values, repeat=len(kinds)):
        outcomes = dict(zip(kinds, combo))
        for keyword in (None, "ocke"):
            got = infer(outcomes, keyword)
            rule = _expected_rule(outcomes)
            assert got["rule"] == rule, outcomes
            assert got["keyword"] == (keyword if rule == "substring" else None), outcomes
            assert got["overblocks"] == OVERBLOCKS.get(rule), outcomes
            seen.add(rule)
    assert seen == set(RULES)


def test_infer_ignores_unknown_outcome_words_and_keyword_probes() -> None:
    base = {"innocent": "passed", "exact": "blocked", "subdomain": "passed", "prefixed": "passed",
            "suffixed": "passed"}
    assert infer(base)["rule"] == "exact"
    assert infer({**base, "prefixed": "BLOCKED"})["rule"] == "undetermined"  # only the exact words count
    assert infer({**base, "innocent": "ok"})["rule"] == "undetermined"
    assert infer({**base, "keyword": "blocked"})["rule"] == "exact"  # keyword probes do not make the rule
    assert infer({})["rule"] == "undetermined"


def test_conclude_names_the_overblocked_name_and_the_shortest_caught_keyword() -> None:
    probes = [
        {"kind": "innocent", "name": innocent(SALT), "outcome": "passed"},
        {"kind": "exact", "name": HOST, "outcome": "blocked"},
        {"kind": "subdomain", "name": f"{SALT}.{HOST}", "outcome": "blocked"},
        {"kind": "prefixed", "name": f"{SALT}{HOST}", "outcome": "blocked"},
        {"kind": "suffixed", "name": f"{HOST}.{SALT}.net", "outcome": "blocked"},
        {"kind": "keyword", "name": keyword_name("blocked", SALT), "part": "blocked", "outcome": "blocked"},
        {"kind": "keyword", "name": keyword_name("ock", SALT), "part": "ock", "outcome": "passed"},
        {"kind": "keyword", "name": keyword_name("lock", SALT), "part": "lock", "outcome": "blocked"},
        {"kind": "keyword", "name": keyword_name("loc", SALT), "part": "loc", "outcome": "residual"},
    ]
    got = conclude(probes)
    assert got == {"rule": "substring", "keyword": "lock", "overblocks": f"{SALT}{HOST}"}
    # the first probe of each kind counts, a later one of the same kind does not
    assert conclude([*probes[:4], {**probes[4], "outcome": "passed"}, probes[4]])["rule"] == "ends_with"
    ends = conclude([*probes[:4], {**probes[4], "outcome": "passed"}])
    assert ends == {"rule": "ends_with", "keyword": None, "overblocks": f"{SALT}{HOST}"}
    starts = conclude([*probes[:3], {**probes[3], "outcome": "passed"}, probes[4]])
    assert starts == {"rule": "starts_with", "keyword": None, "overblocks": f"{HOST}.{SALT}.net"}
    assert conclude([])["rule"] == "undetermined"


# --------------------------------------------------------------------------- names


def valid_name(name: str) -> bool:
    labels = name.split(".")
    return len(name) <= 253 and all(0 < len(label) <= 63 for label in labels)


def test_the_names_shown_to_the_censor() -> None:
    assert innocent(SALT) == f"{SALT}.example.net" and valid_name(innocent(SALT))
    assert [(p.kind, p.name) for p in variants(HOST, SALT)] == [
        ("subdomain", f"{SALT}.{HOST}"), ("prefixed", f"{SALT}{HOST}"), ("suffixed", f"{HOST}.{SALT}.net")]
    assert {p.kind for p in variants(HOST, SALT)} | {"innocent", "exact", "keyword"} == set(KINDS)
    assert keyword_name("ocke", SALT) == f"{SALT}ocke{SALT}.net"
    # parts of H that cross a dot still make a name (the salt keeps every label non-empty)
    assert keyword_name(".example", SALT) == f"{SALT}.example{SALT}.net"
    assert keyword_name("blocked.", SALT) == f"{SALT}blocked.{SALT}.net"


def test_long_hosts_drop_the_probes_that_would_not_fit() -> None:
    assert MAX_NAME == 253
    # the first label: 55 + 8 salt characters still fit in 63, 56 do not
    assert [p.kind for p in variants("a" * 55 + ".example", SALT)] == ["subdomain", "prefixed", "suffixed"]
    assert [p.kind for p in variants("a" * 56 + ".example", SALT)] == ["subdomain", "suffixed"]
    assert [p.kind for p in variants("a" * 63 + ".example", SALT)] == ["subdomain", "suffixed"]
    # the whole name: the suffixed probe adds 13 characters, the subdomain and prefixed ones 9 and 8
    def host(length: int) -> str:
        labels, left = [], length
        while left > 0:
            take = min(49, left - 2) if left > 51 else left
            labels.append("b" * take)
            left -= take + 1
        name = ".".join(labels)
        assert len(name) == length and valid_name(name)
        return name
    assert [p.kind for p in variants(host(240), SALT)] == ["subdomain", "prefixed", "suffixed"]
    assert [p.kind for p in variants(host(241), SALT)] == ["subdomain", "prefixed"]
    assert [p.kind for p in variants(host(244), SALT)] == ["subdomain", "prefixed"]
    assert [p.kind for p in variants(host(245), SALT)] == ["prefixed"]
    assert [p.kind for p in variants(host(246), SALT)] == []
    for length in range(230, 254):
        for p in variants(host(length), SALT):
            assert valid_name(p.name), (length, p)
    # a malformed name (the nettest refuses it before) still gets no name with an empty label
    assert variants("blocked..example", SALT) == []


def test_variants_and_keyword_names_are_always_valid_names() -> None:
    rng = random.Random(11)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_"
    for _ in range(500):
        labels = [rng.choice("abc") + "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 62)))
                  + rng.choice("xyz") for _ in range(rng.randrange(2, 6))]
        h = ".".join(labels)[:253].strip(".")
        if not valid_name(h) or "." not in h:
            continue
        for p in variants(h, SALT):
            assert valid_name(p.name) and h in p.name
        for start in range(len(h)):
            part = h[start:start + rng.randrange(1, 70)]
            name = keyword_name(part, SALT)
            if name is not None:
                assert valid_name(name) and part in name and ".." not in name


@pytest.mark.parametrize("part", [
    "a..b",                     # an empty label inside
    "x" * 48,                   # 8 + 48 + 8 = 64 characters: one label too long
    "ab." + "c" * 60,           # the last label too long
    "c" * 60 + ".ab",           # the first label too long
    ".".join(["d" * 60] * 4),   # the whole name too long
])
def test_keyword_name_refuses_parts_that_make_no_valid_name(part: str) -> None:
    assert keyword_name(part, SALT) is None


def test_keyword_name_at_its_limits() -> None:
    assert keyword_name("x" * 47, SALT) == f"{SALT}{'x' * 47}{SALT}.net"  # a label of exactly 63
    assert keyword_name("x" * 47 + ".y", SALT) == f"{SALT}{'x' * 47}.y{SALT}.net"


def test_keyword_names_never_put_back_the_character_just_trimmed() -> None:
    """'orbid', cut from 'forbid', must not read 'forbid' again because the salt ends in 'f'."""
    assert keyword_name("orbid", SALT, before="f", after=".") == f"{SALT}orbid{SALT}.net"  # no clash: as is
    name = keyword_name("orbid", "qabcdeff", before="f")
    assert name is not None and "orbid" in name and "forbid" not in name and valid_name(name)
    name = keyword_name("forbi", "dqabcdef", after="d")
    assert name is not None and "forbi" in name and "forbid" not in name and valid_name(name)
    name = keyword_name("zz", "qabcdez", before="z", after="x")
    assert name is not None and "zz" in name and "zzz" not in name and "zzx" not in name
    rng = random.Random(5)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    hosts = ["forbidden.example", "xx.xxx.example", "a-b-c.d-e.example", "qqqq.qq", "zzzz.example"]
    for _ in range(2000):
        h = rng.choice(hosts)
        salt = "q" + "".join(rng.choice(alphabet + "fqxz") for _ in range(7))
        start = rng.randrange(len(h))
        end = rng.randrange(start + 1, len(h) + 1)
        part, before, after = h[start:end], h[start - 1:start], h[end:end + 1]
        name = keyword_name(part, salt, before, after)
        assert name is not None and valid_name(name)
        # the part sits between two salts of the salt's length, each changed in at most its inner character
        n = len(salt)
        assert name[n:n + len(part)] == part and name.endswith(".net")
        left, right = name[:n], name[n + len(part):-len(".net")]
        assert left[:-1] == salt[:-1] and right[1:] == salt[1:]
        assert not before or left[-1] != before
        assert not after or right[0] != after


# --------------------------------------------------------------------------- injected and judge_dns


def test_injected_tells_the_censor_answer_from_the_control_one() -> None:
    assert injected([query(1, LIE)], None) is None                       # no control
    assert injected([query(1, LIE)], {"dns": {"addrs": None}}) is None   # the control resolved nothing
    assert injected([query(1, LIE)], {"dns": {"addrs": []}}) is None
    assert injected([query(1, LIE)], {"dns": "x"}) is None
    assert injected([query(1, failure="dns_nxdomain_error")], CONTROL) is None  # our NXDOMAIN: no address
    assert injected([], CONTROL) is None
    assert injected([query(1, SITE)], CONTROL) == set()                  # the same answer: no lie
    assert injected([query(1, LIE)], CONTROL) == {LIE}
    assert injected([query(1, LIE, SITE), query(1, "2001:db8::1")], CONTROL) == {LIE, "2001:db8::1"}
    assert injected([query(1, LIE)], {"dns": {"addrs": [5, None, LIE]}}) == set()  # non-strings ignored


CDN_OURS, CDN_THEIRS = "104.16.2.2", "104.16.1.1"  # one site's addresses as two resolvers see it (data only)


def verified(tid: int, failure: str | None, *, connect_failure: str | None = None) -> list[dict[str, Any]]:
    """The records of the DNS answer's check: a connect to our address, then a checked handshake."""
    tags = ["rules=dns:verify"]
    c = {**connect(tid, connect_failure), "ip": CDN_OURS, "tags": tags}
    if connect_failure is not None:
        return [c]
    return [c, {**handshake(tid, failure), "address": f"{CDN_OURS}:443", "no_tls_verify": False, "tags": tags}]


def test_an_honest_answer_unlike_the_control_is_checked_before_it_is_called_a_lie() -> None:
    """A CDN answers each resolver its own way: an address the control did not give, and no bogon, is the
    censor's only when a handshake naming the site, its certificate checked, says it does not serve it."""
    cdn = {"dns": {"addrs": [CDN_THEIRS]}}
    ours = [query(1, CDN_OURS)]
    assert to_verify(ours, cdn) == CDN_OURS
    assert to_verify([query(1, LIE)], CONTROL) is None            # a bogon needs no check
    assert to_verify([query(1, SITE)], CONTROL) is None           # the control's own answer
    assert injected(ours, cdn) is None                             # unchecked: nothing can be told
    assert injected(ours, cdn, verified(9, None)) == set()         # the site's certificate: no lie
    assert injected(ours, cdn, verified(9, "ssl_invalid_hostname")) == {CDN_OURS}  # not the site's
    assert injected(ours, cdn, verified(9, "ssl_unknown_authority")) == {CDN_OURS}
    assert injected(ours, cdn, verified(9, None, connect_failure="connection_refused")) == {CDN_OURS}
    assert injected(ours, cdn, verified(9, "connection_reset")) is None  # SNI filtering? undetermined
    assert injected(ours, cdn, verified(9, None, connect_failure="generic_timeout_error")) is None
    unchecked = [{**r, "no_tls_verify": True} for r in verified(9, None)]
    assert injected(ours, cdn, unchecked) is None                  # a handshake that checked nothing proves nothing
    # the records are found by their tag, wherever they are
    tk = {"tcp_connect": [connect(3), *verified(9, None)[:1]], "tls_handshakes": [handshake(3), verified(9, None)[1]]}
    assert [r["transaction_id"] for r in verify_records(tk)] == [9, 9]
    # a whole measurement: the CDN's honest answer is no injection once checked, and undetermined unchecked
    m = measurement()
    tk = m["test_keys"]
    tk["control"]["dns"]["addrs"] = [CDN_THEIRS]
    tk["queries"][1] = query(2, CDN_OURS)
    tk["queries"][2] = query(3, CDN_OURS)
    assert rules_from_records(tk, None)["dns"]["rule"] == "undetermined"
    tk["tcp_connect"] += verified(30, None)[:1]
    tk["tls_handshakes"] += verified(30, None)[1:]
    assert rules_from_records(tk, None)["dns"]["rule"] == "not_blocked"


def test_the_check_is_a_real_handshake_whose_records_decide(tmp_path: Path) -> None:
    """The nettest's check (`_verify`) over real TLS on loopback: a server with the site's certificate makes
    our answer the site's; one with another name's certificate, or none listening, makes it the censor's."""
    ca = srv.TestCA(tmp_path)
    ctx = Context(ca_bundle=str(ca.pem))
    cdn = {"dns": {"addrs": [CDN_THEIRS]}}

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)

    async def check(server_ctx: Any) -> set[str] | None:
        trace = Trace()
        async with trace:
            if server_ctx is None:  # nothing listens: a port just closed
                async with srv.TCPServer(hold) as server:
                    port = server.port
                await _verify(srv.LOOPBACK, HOST, trace, ctx, port=port)
            else:
                async with srv.TCPServer(hold, ssl_context=server_ctx) as server:
                    await _verify(srv.LOOPBACK, HOST, trace, ctx, port=server.port)
        records = verify_records(trace.test_keys())
        assert records and all(r["tags"] == ["rules=dns:verify"] for r in records)
        return injected([query(1, CDN_OURS)], cdn, records)

    async def main() -> None:
        assert await check(ca.server_context(HOST)) == set()
        assert await check(ca.server_context("other.example")) == {CDN_OURS}
        assert await check(None) == {CDN_OURS}

    asyncio.run(main())


def test_a_probe_whose_records_are_missing_is_unusable_not_passed() -> None:
    """A truncated or stripped measurement: no lookup, handshake or request of a probe's own is no answer."""
    assert judge_dns([], {LIE})["outcome"] == "unusable"
    assert judge_tls([connect(3)], [])["outcome"] == "unusable"
    assert judge_http([connect(3, port=80)], [], None)["outcome"] == "unusable"
    tk = measurement()["test_keys"]
    tk["queries"] = tk["queries"][:2]  # the subdomain, prefixed and suffixed lookups are gone
    tk["requests"] = [r for r in tk["requests"] if r["transaction_id"] != 12]  # and HTTP's exact request
    layers = rules_from_records(tk, fake_matcher)
    assert [p["outcome"] for p in layers["dns"]["probes"]][2:] == ["unusable"] * 3
    assert layers["dns"]["rule"] == layers["http"]["rule"] == "undetermined"


def test_judge_dns() -> None:
    lies = {LIE}
    assert judge_dns([query(1, LIE)], lies) == {"outcome": "blocked", "failure": None, "addresses": [LIE]}
    assert judge_dns([query(1, SITE, LIE)], lies)["addresses"] == [LIE]
    assert judge_dns([query(1, OTHER)], lies)["outcome"] == "passed"
    nx = judge_dns([query(1, failure="dns_nxdomain_error")], lies)
    assert nx == {"outcome": "passed", "failure": "dns_nxdomain_error", "addresses": []}
    assert judge_dns([query(1, LIE)], None)["outcome"] == "unusable"
    assert judge_dns([query(1, failure="generic_timeout_error")], None) == {
        "outcome": "unusable", "failure": "generic_timeout_error", "addresses": []}
    assert judge_dns([query(1, LIE)], set())["outcome"] == "passed"      # our resolver did not lie


# --------------------------------------------------------------------------- judge_tls and judge_http


@pytest.mark.parametrize("failure,outcome", [
    ("connection_reset", "blocked"), ("eof_error", "blocked"), ("generic_timeout_error", "blocked"),
    ("ssl_failed_handshake", "passed"),   # the server's own alert: an answer
    ("ssl_invalid_hostname", "passed"), (None, "passed"),
])
def test_judge_tls_after_a_connect(failure: str | None, outcome: str) -> None:
    got = judge_tls([connect(7)], [handshake(7, failure)])
    assert got == {"outcome": outcome, "failure": failure, "step": "tls"}


def test_judge_tls_without_a_connection_is_unusable() -> None:
    assert judge_tls([connect(7, "connection_refused")], [handshake(7, "connection_reset")]) == {
        "outcome": "unusable", "failure": "connection_refused", "step": "tcp"}
    assert judge_tls([connect(7, "generic_timeout_error")], [])["outcome"] == "unusable"
    assert judge_tls([], [handshake(7, "connection_reset")]) == {
        "outcome": "unusable", "failure": "no_connection", "step": "tcp"}


@pytest.mark.parametrize("failure", ["connection_reset", "eof_error", "generic_timeout_error"])
def test_judge_http_failures_after_the_request(failure: str) -> None:
    got = judge_http([connect(12, port=80)], [request(12, failure)], fake_matcher)
    assert got == {"outcome": "blocked", "failure": failure, "step": "http", "fingerprints": []}


def test_judge_http_answers() -> None:
    c = [connect(12, port=80)]
    page = judge_http(c, [request(12, body=BLOCKPAGE)], fake_matcher)
    assert page == {"outcome": "blocked", "failure": None, "step": "http", "fingerprints": ["fp-body"]}
    header = judge_http(c, [request(12, code=403, body="", headers=[("Server", "CensorBox")])], fake_matcher)
    assert (header["outcome"], header["fingerprints"]) == ("blocked", ["fp-header"])
    b64 = {"format": "base64", "data": base64.b64encode(BLOCKPAGE.encode()).decode()}
    assert judge_http(c, [request(12, body=b64)], fake_matcher)["fingerprints"] == ["fp-body"]
    # the server's own 404 for a name it does not serve is an answer
    assert judge_http(c, [request(12, code=404, body=NOT_FOUND, headers=[("Server", "nginx")])],
                      fake_matcher) == {"outcome": "passed", "failure": None, "step": "http", "fingerprints": []}
    # without a fingerprint database nothing is a blockpage
    assert judge_http(c, [request(12, body=BLOCKPAGE)], None)["outcome"] == "passed"
    assert judge_http([connect(12, "connection_refused", port=80)], [request(12, body=BLOCKPAGE)],
                      fake_matcher) == {"outcome": "unusable", "failure": "connection_refused", "step": "tcp"}
    assert judge_http([], [request(12, body=BLOCKPAGE)], fake_matcher)["outcome"] == "unusable"


def test_judge_http_with_the_real_fingerprint_database() -> None:
    body = REAL_BLOCKPAGE.read_text("utf-8", "replace")
    got = judge_http([connect(12, port=80)], [request(12, body=body)], default_matcher())
    assert got["outcome"] == "blocked" and "cl/isp_by_beltelecom_block" in got["fingerprints"]
    ordinary = judge_http([connect(12, port=80)], [request(12, code=404, body=NOT_FOUND)], default_matcher())
    assert (ordinary["outcome"], ordinary["fingerprints"]) == ("passed", [])


def test_judge_reads_only_the_records_of_its_transaction() -> None:
    tk = {"queries": [query(1, LIE), query(2, OTHER)],
          "tcp_connect": [connect(3), connect(4, "connection_refused")],
          "tls_handshakes": [handshake(3, "connection_reset"), handshake(4, None)],
          "requests": [request(3, body=BLOCKPAGE)]}
    assert judge("dns", 1, tk, {LIE}, None)["outcome"] == "blocked"
    assert judge("dns", 2, tk, {LIE}, None)["outcome"] == "passed"
    assert judge("tls", 3, tk, None, None)["outcome"] == "blocked"
    assert judge("tls", 4, tk, None, None)["outcome"] == "unusable"
    assert judge("tls", 5, tk, None, None)["outcome"] == "unusable"   # no records of its own
    assert judge("http", 3, tk, None, fake_matcher)["fingerprints"] == ["fp-body"]
    # a bool is not a transaction id (True == 1 in Python): its records belong to no probe
    tk["tcp_connect"].append(connect(True))
    tk["tls_handshakes"].append(handshake(True, "connection_reset"))
    assert judge("tls", 1, tk, None, None)["outcome"] == "unusable"


# --------------------------------------------------------------------------- a whole measurement


def probe(kind: str, name: str, tid: Any, outcome: str = "passed", **extra: Any) -> dict[str, Any]:
    """A probe as the nettest writes it; by default claiming it passed (the analysis must not believe it)."""
    return {"kind": kind, "name": name, "transaction_id": tid, "outcome": outcome, **extra}


def lying_layer(first_tid: int, *, residual: Sequence[str] = ()) -> list[dict[str, Any]]:
    names = [("innocent", innocent(SALT)), ("exact", HOST), ("subdomain", f"{SALT}.{HOST}"),
             ("prefixed", f"{SALT}{HOST}"), ("suffixed", f"{HOST}.{SALT}.net")]
    return [probe(kind, name, first_tid + i, "residual" if kind in residual else "passed")
            for i, (kind, name) in enumerate(names)]


def measurement() -> dict[str, Any]:
    """Every probe claims 'passed' and every layer 'not_blocked'; the records say:
    dns: H and <salt>.H get the censor's address (domain_and_subdomains);
    tls: H, <salt>.H, <salt>H are reset or closed, H.<salt>.net meets the server's alert (ends_with);
    http: every name holding 'ock' gets a blockpage (substring, keyword 'ock'), the others a 404."""
    http_probes = [*lying_layer(11),
                   probe("keyword", keyword_name(HOST, SALT) or "", 16, part=HOST),
                   probe("keyword", keyword_name("ocked.example", SALT) or "", 17, part="ocked.example"),
                   probe("keyword", keyword_name("ock", SALT) or "", 18, part="ock"),
                   probe("keyword", keyword_name("oc", SALT) or "", 19, part="oc"),
                   probe("keyword", keyword_name("ck", SALT) or "", None, "residual", part="ck")]
    layers = {name: {"probes": probes, "rule": "not_blocked", "keyword": None, "overblocks": None}
              for name, probes in (("dns", lying_layer(1)), ("tls", lying_layer(6)), ("http", http_probes))}
    blocked = request  # a blockpage for the name
    tk: dict[str, Any] = {
        "control": copy.deepcopy(CONTROL), "control_failure": None,
        "queries": [query(1, failure="dns_nxdomain_error", name=innocent(SALT)), query(2, LIE),
                    query(3, LIE), query(4, failure="dns_nxdomain_error"), query(5, OTHER)],
        "tcp_connect": [connect(t) for t in range(6, 11)] + [connect(t, port=80) for t in range(11, 20)],
        "tls_handshakes": [handshake(6), handshake(7, "connection_reset"), handshake(8, "connection_reset"),
                           handshake(9, "eof_error"), handshake(10, "ssl_failed_handshake")],
        "requests": [request(11, code=404, body=NOT_FOUND)]
                    + [blocked(t, code=403, body=BLOCKPAGE) for t in (12, 13, 14, 15, 16, 17, 18)]
                    + [request(19, code=404, body=NOT_FOUND)],
        "x_blocking_rules": {"host": HOST, "salt": SALT, "address": SITE, "address_source": "dns",
                             "layers": layers},
    }
    return {"test_name": "blocking_rules", "input": HOST, "test_keys": tk}


def test_the_analysis_judges_every_probe_again_from_its_records() -> None:
    tk = measurement()["test_keys"]
    layers = rules_from_records(tk, fake_matcher)
    assert list(layers) == ["dns", "tls", "http"]
    outcomes = {layer: [(p["kind"], p["outcome"]) for p in data["probes"]] for layer, data in layers.items()}
    assert outcomes["dns"] == [("innocent", "passed"), ("exact", "blocked"), ("subdomain", "blocked"),
                               ("prefixed", "passed"), ("suffixed", "passed")]
    assert outcomes["tls"] == [("innocent", "passed"), ("exact", "blocked"), ("subdomain", "blocked"),
                               ("prefixed", "blocked"), ("suffixed", "passed")]
    assert outcomes["http"] == [("innocent", "passed"), ("exact", "blocked"), ("subdomain", "blocked"),
                                ("prefixed", "blocked"), ("suffixed", "blocked"), ("keyword", "blocked"),
                                ("keyword", "blocked"), ("keyword", "blocked"), ("keyword", "passed"),
                                ("keyword", "residual")]
    assert layers["dns"]["probes"][1]["addresses"] == [LIE]
    assert layers["tls"]["probes"][3]["failure"] == "eof_error"
    assert layers["http"]["probes"][1]["fingerprints"] == ["fp-body"]
    assert [p.get("part") for p in layers["http"]["probes"][5:]] == [HOST, "ocked.example", "ock", "oc", "ck"]
    assert {k: layers["dns"][k] for k in ("rule", "keyword", "overblocks")} == {
        "rule": "domain_and_subdomains", "keyword": None, "overblocks": None}
    assert {k: layers["tls"][k] for k in ("rule", "keyword", "overblocks")} == {
        "rule": "ends_with", "keyword": None, "overblocks": f"{SALT}{HOST}"}
    assert {k: layers["http"][k] for k in ("rule", "keyword", "overblocks")} == {
        "rule": "substring", "keyword": "ock", "overblocks": f"{SALT}{HOST}"}

    keys = rules_verdict(tk, layers)
    # the resolver lied, and no query to a silent address shows an injector: the resolver's own lie
    assert (keys["blocking"], keys["accessible"], keys["x_mechanism"], keys["x_confidence"], keys["x_status"]) == \
        ("dns", False, "dns.poison", 0.9, "anomaly")
    assert keys["x_evidence"] == ["test_keys.x_blocking_rules.layers.dns"]
    assert {layer: r["rule"] for layer, r in keys["x_rules"].items()} == {
        "dns": "domain_and_subdomains", "tls": "ends_with", "http": "substring"}
    says = keys["x_rules"]
    assert HOST in says["dns"]["says"] and "subdomains" in says["dns"]["says"]
    assert f"not{HOST}" in says["tls"]["says"] and "ending in" in says["tls"]["says"]
    assert "'ock'" in says["http"]["says"] and says["http"]["keyword"] == "ock"
    assert says["tls"]["overblocks"] == f"{SALT}{HOST}"

    # what the probe wrote (every layer not_blocked) is a different story: only the records are believed
    written = rules_verdict(tk)
    assert (written["blocking"], written["accessible"], written["x_status"]) == (False, True, "ok")


SILENT = "198.19.0.9"  # where no DNS server runs


def path_query(tid: Any, *addrs: str, failure: str | None = None, name: str = HOST) -> dict[str, Any]:
    """A query sent over UDP to the silent address (what lookup_udp records)."""
    return {**query(tid, *addrs, failure=failure, name=name), "engine": "udp", "query_type": "A",
            "resolver_address": f"{SILENT}:53"}


def measurement_with_path() -> dict[str, Any]:
    """measurement(), and the same names asked of the silent address: H and <salt>.H are answered (forged on
    the path), the innocent name and the others meet silence (domain_and_subdomains)."""
    m = measurement()
    tk = m["test_keys"]
    timeout = "generic_timeout_error"
    tk["queries"] += [path_query(20, failure=timeout, name=innocent(SALT)), path_query(21, LIE),
                      path_query(22, LIE, name=f"{SALT}.{HOST}"), path_query(23, failure=timeout),
                      path_query(24, failure=timeout)]
    x = tk["x_blocking_rules"]
    x["silent_resolver"] = SILENT
    x["layers"] = {"dns": x["layers"]["dns"], "dns_path": {"probes": lying_layer(20), "rule": "not_blocked"},
                   "tls": x["layers"]["tls"], "http": x["layers"]["http"]}
    return m


@pytest.mark.parametrize("record,outcome", [
    (path_query(1, LIE), "blocked"),                                   # an answer from nowhere
    (path_query(1, failure="dns_nxdomain_error"), "blocked"),          # a forged negative answer
    (path_query(1, failure="dns_no_answer"), "blocked"),
    (path_query(1, failure="dns_reply_malformed"), "blocked"),         # even garbage came from somewhere
    (path_query(1, failure="generic_timeout_error"), "passed"),        # what a clean path gives
    (path_query(1, failure="connection_refused"), "passed"),           # the host itself: nobody forged
    (path_query(1, failure="network_unreachable"), "unusable"),
])
def test_judge_path(record: dict[str, Any], outcome: str) -> None:
    judged = judge_path([record])
    assert judged["outcome"] == outcome
    assert judged["addresses"] == ([LIE] if record["answers"] else [])
    assert judge_path([])["outcome"] == "unusable"


def test_the_path_layer_tells_an_injector_from_the_resolvers_own_lie() -> None:
    m = measurement_with_path()
    tk = m["test_keys"]
    layers = rules_from_records(tk, fake_matcher)
    assert list(layers) == ["dns", "dns_path", "tls", "http"]
    assert [(p["kind"], p["outcome"]) for p in layers["dns_path"]["probes"]] == [
        ("innocent", "passed"), ("exact", "blocked"), ("subdomain", "blocked"), ("prefixed", "passed"),
        ("suffixed", "passed")]
    assert layers["dns_path"]["rule"] == "domain_and_subdomains"  # the path's rule, not what was written
    keys = rules_verdict(tk, layers)
    assert (keys["blocking"], keys["x_mechanism"], keys["x_confidence"]) == ("dns", "dns.injection", 0.95)
    assert keys["x_evidence"] == ["test_keys.x_blocking_rules.layers.dns",
                                  "test_keys.x_blocking_rules.layers.dns_path"]
    assert keys["x_rules"]["dns_path"]["says"] == \
        f"a device on the path forges DNS answers for {HOST} and any of its subdomains"
    assert VERDICTS["blocking_rules"](m, fake_matcher).mechanism == "dns.injection"

    # the path forges nothing for the name: the resolver's own list
    clean = copy.deepcopy(tk)
    clean["queries"][6] = path_query(21, failure="generic_timeout_error")
    layers = rules_from_records(clean, fake_matcher)
    assert layers["dns_path"]["rule"] == "not_blocked"
    assert rules_verdict(clean, layers)["x_mechanism"] == "dns.poison"
    assert rules_verdict(clean, layers)["x_rules"]["dns_path"]["says"] == \
        f"no DNS answer for {HOST} is forged on the path"

    # everything asked of the silent address is answered (a proxy taking every query): no injector shown
    proxy = copy.deepcopy(tk)
    proxy["queries"][5] = path_query(20, SITE, name=innocent(SALT))
    layers = rules_from_records(proxy, fake_matcher)
    assert layers["dns_path"]["rule"] == "undetermined"
    assert rules_verdict(proxy, layers)["x_mechanism"] == "dns.poison"

    # the resolver tells the truth (it is reached another way) but the path forges: injected, from dns_path
    del tk["x_blocking_rules"]["layers"]["dns"]
    keys = rules_verdict(tk, rules_from_records(tk, fake_matcher))
    assert (keys["x_mechanism"], keys["x_confidence"], keys["x_evidence"]) == \
        ("dns.injection", 0.95, ["test_keys.x_blocking_rules.layers.dns_path"])


def test_describe_the_path_layer() -> None:
    said = {rule: describe("x.org", "dns_path", {"rule": rule, "keyword": "x.o"}) for rule in RULES}
    assert said["exact"] == "a device on the path forges DNS answers for x.org exactly"
    assert said["ends_with"] == "a device on the path forges DNS answers for any name ending in 'x.org' (such as notx.org)"
    assert said["substring"].endswith("any name containing 'x.o'")
    assert "undetermined" in said["undetermined"] and len(set(said.values())) == len(RULES)


def test_the_first_blocked_layer_names_the_mechanism_in_dns_tls_http_order() -> None:
    m = measurement()
    tk = m["test_keys"]
    layers_written = tk["x_blocking_rules"]["layers"]
    # the order the layers were written in does not matter
    tk["x_blocking_rules"]["layers"] = {k: layers_written[k] for k in ("http", "tls", "dns")}
    assert rules_verdict(tk, rules_from_records(tk, fake_matcher))["x_mechanism"] == "dns.poison"

    del tk["x_blocking_rules"]["layers"]["dns"]
    keys = rules_verdict(tk, rules_from_records(tk, fake_matcher))
    assert (keys["blocking"], keys["x_mechanism"], keys["x_confidence"], keys["x_evidence"]) == \
        ("http-failure", "tls.rst", 0.9, ["test_keys.x_blocking_rules.layers.tls"])
    assert set(keys["x_rules"]) == {"tls", "http"}

    del tk["x_blocking_rules"]["layers"]["tls"]
    keys = rules_verdict(tk, rules_from_records(tk, fake_matcher))
    assert (keys["blocking"], keys["x_mechanism"], keys["x_confidence"], keys["x_status"]) == \
        ("http-diff", "http.blockpage", 0.95, "anomaly")


@pytest.mark.parametrize("failure,mechanism", [
    ("connection_reset", "tls.rst"), ("eof_error", "tls.rst"), ("generic_timeout_error", "tls.drop")])
def test_a_tls_rule_names_how_the_handshake_failed(failure: str, mechanism: str) -> None:
    tk = measurement()["test_keys"]
    del tk["x_blocking_rules"]["layers"]["dns"]
    tk["tls_handshakes"][1]["failure"] = failure
    keys = rules_verdict(tk, rules_from_records(tk, fake_matcher))
    # an innocent name to the same address was answered: sure it is the name
    assert (keys["x_mechanism"], keys["x_confidence"]) == (mechanism, 0.9)


def test_an_http_reset_rule_without_a_blockpage() -> None:
    tk = measurement()["test_keys"]
    for layer in ("dns", "tls"):
        del tk["x_blocking_rules"]["layers"][layer]
    tk["requests"] = [request(11, code=404, body=NOT_FOUND)] + [request(t, "connection_reset")
                                                                  for t in range(12, 20)]
    layers = rules_from_records(tk, fake_matcher)
    assert layers["http"]["rule"] == "substring" and layers["http"]["keyword"] == "oc"
    keys = rules_verdict(tk, layers)
    assert (keys["blocking"], keys["x_mechanism"]) == ("http-failure", "http.rst")


def test_residual_probes_stay_residual_and_leave_their_layer_undetermined() -> None:
    tk = measurement()["test_keys"]
    tls = tk["x_blocking_rules"]["layers"]["tls"]
    tls["probes"][3]["outcome"] = "residual"          # prefixed: never tried, though a record has its tid
    tls["probes"][4]["transaction_id"] = None         # suffixed: no transaction at all
    layers = rules_from_records(tk, fake_matcher)
    assert [p["outcome"] for p in layers["tls"]["probes"]] == ["passed", "blocked", "blocked", "residual",
                                                               "residual"]
    assert layers["tls"]["rule"] == "undetermined"
    tls["probes"][4]["transaction_id"] = True         # not a transaction id either (though True == 1)
    assert rules_from_records(tk, fake_matcher)["tls"]["probes"][4]["outcome"] == "residual"


def test_a_resolver_that_answers_everything_or_nothing_tells_nothing() -> None:
    tk = measurement()["test_keys"]
    for layer in ("tls", "http"):
        del tk["x_blocking_rules"]["layers"][layer]
    everything = copy.deepcopy(tk)
    everything["queries"][0] = query(1, LIE, name=innocent(SALT))   # the innocent name gets the lie too
    layers = rules_from_records(everything, None)
    assert layers["dns"]["probes"][0]["outcome"] == "blocked" and layers["dns"]["rule"] == "undetermined"
    keys = rules_verdict(everything, layers)
    assert (keys["blocking"], keys["accessible"], keys["x_mechanism"], keys["x_status"]) == \
        (None, None, "none", "failure")
    for control in (None, {"dns": {"addrs": []}}, "x"):
        blind = {**tk, "control": control}
        layers = rules_from_records(blind, None)
        assert [p["outcome"] for p in layers["dns"]["probes"]] == ["unusable"] * 5
        assert rules_verdict(blind, layers)["x_status"] == "failure"
    honest = copy.deepcopy(tk)
    honest["queries"][1] = query(2, SITE)                     # our answer is the control's
    layers = rules_from_records(honest, None)
    assert layers["dns"]["rule"] == "not_blocked"
    keys = rules_verdict(honest, layers)
    assert (keys["blocking"], keys["accessible"], keys["x_mechanism"], keys["x_confidence"], keys["x_status"]) == \
        (False, True, "none", 0.8, "ok")
    assert HOST in keys["x_rules"]["dns"]["says"] and "not blocked" in keys["x_rules"]["dns"]["says"]


def test_nothing_to_read_is_a_failed_measurement() -> None:
    for tk in ({}, {"x_blocking_rules": None}, {"x_blocking_rules": {"layers": []}},
               {"x_blocking_rules": {"layers": {"smtp": {"probes": []}}}}):
        keys = rules_verdict(tk, rules_from_records(tk, None))
        assert (keys["blocking"], keys["accessible"], keys["x_status"], keys["x_rules"]) == \
            (None, None, "failure", {})


def test_the_registered_analysis_verdict() -> None:
    assert set(LAYERS) == {"dns", "dns_path", "tls", "http"} and "residual" in OUTCOMES
    fn = VERDICTS["blocking_rules"]
    m = measurement()
    v = fn(m, fake_matcher)
    assert v == verdict_for(m, fake_matcher)
    assert isinstance(v, Verdict)
    assert (v.blocking, v.accessible, v.mechanism, v.confidence, v.status) == \
        ("dns", False, "dns.poison", 0.9, "anomaly")
    assert v.evidence == ("test_keys.x_blocking_rules.layers.dns",)
    assert v.fingerprints == ("fp-body",)  # from the exact probes only, once
    # with the real database and the layers before it removed, a real blockpage names the mechanism
    tk = m["test_keys"]
    for layer in ("dns", "tls"):
        del tk["x_blocking_rules"]["layers"][layer]
    real = REAL_BLOCKPAGE.read_text("utf-8", "replace")
    for r in tk["requests"]:
        if r["response"]["body"] == BLOCKPAGE:
            r["response"]["body"] = real
    v = fn(m, default_matcher())
    assert (v.blocking, v.mechanism, v.status) == ("http-diff", "http.blockpage", "anomaly")
    assert "cl/isp_by_beltelecom_block" in v.fingerprints
    # without a matcher the same pages are answers: every name passes, so the exact probe passes
    v = fn(m, None)
    assert (v.blocking, v.accessible, v.mechanism, v.status) == (False, True, "none", "ok")
    assert fn({"test_name": "blocking_rules"}, None).status == "failure"


# --------------------------------------------------------------------------- hostile input


def _junk(rng: random.Random) -> Any:
    choices: list[Any] = [
        None, True, False, 0, -1, 1, 7, 2**70, -1.5, float("nan"), "", "x" * 5000, "\x00\x1b[31m\r\n\u202e",
        "blocked", "passed", "residual", "unusable", "exact", "keyword", "dns", "tls", "http", "substring",
        "connection_reset", LIE, [], {}, ["a"], [None] * 3, {"a": 1}, [{}] * 3000, list(range(10000)),
        {"transaction_id": True}, {"transaction_id": 1, "failure": ["x"]}, {"status": "x"},
        {"status": {"failure": {"x": 1}}}, {"answers": [{"ipv4": 5}, "x", {"ipv6": LIE}]},
        {"response": {"body": {"format": "base64", "data": "!!!"}, "headers_list": [[1, 2, 3], "x", [None, 1]]}},
        {"response": {"body": 5, "headers": {"Server": ["x"]}}}, {"response": []},
        [{"transaction_id": 1, "answers": "x"}], {"dns": {"addrs": [[], {}, LIE]}},
        {"layers": {"dns": []}}, {"probes": {}}, {"kind": "exact", "transaction_id": False},
    ]
    value = rng.choice(choices)
    # small junk is copied, so that a later mutation of it does not leak into the next measurements
    return value if isinstance(value, list) and len(value) > 64 else copy.deepcopy(value)


def _containers(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of every dict and list in a measurement (small ones: big junk lists are not walked)."""
    out = []
    if isinstance(value, dict):
        out.append(path)
        for k, v in value.items():
            out += _containers(v, (*path, k))
    elif isinstance(value, list) and len(value) <= 64:
        out.append(path)
        for i, v in enumerate(value):
            out += _containers(v, (*path, i))
    return out


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


def test_hostile_values_never_raise() -> None:
    rng = random.Random(20240611)
    base = measurement()
    keys_seen: set[str] = set()
    for _ in range(2000):
        m = copy.deepcopy(base)
        for _ in range(rng.randrange(1, 4)):
            target = _at(m, rng.choice(_containers(m["test_keys"], ("test_keys",))))
            if isinstance(target, dict):
                key = rng.choice([*target, "transaction_id", "outcome", "kind", "part", "failure"]) \
                    if target else "x"
                target[key] = _junk(rng)
            elif target:
                target[rng.randrange(len(target))] = _junk(rng)
            else:
                target.append(_junk(rng))
        if rng.random() < 0.1:
            m["test_keys"][rng.choice(["control", "x_blocking_rules", "queries", "requests"])] = _junk(rng)
        tk = m["test_keys"]
        layers = rules_from_records(tk, fake_matcher)
        for keys in (rules_verdict(tk, layers), rules_verdict(tk)):
            assert keys["x_status"] in ("ok", "anomaly", "failure")
            assert keys["x_mechanism"] in MECHANISMS and 0.0 <= keys["x_confidence"] <= 1.0
            assert all(r["rule"] in RULES and isinstance(r["says"], str) for r in keys["x_rules"].values())
            keys_seen.add(keys["x_status"])
        v = VERDICTS["blocking_rules"](m, fake_matcher)
        assert isinstance(v, Verdict) and v.status in ("ok", "anomaly", "failure")
        assert all(isinstance(f, str) for f in v.fingerprints)
    assert keys_seen == {"ok", "anomaly", "failure"}  # the mutations reached every branch


# --------------------------------------------------------------------------- input checks


@pytest.mark.parametrize("good", ["example.com", "https://www.example.com/x", "bücher.example",
                                  "http://Example.COM:8080/a?b", "example.com."])
def test_input_accepted(good: str) -> None:
    check_input(good)


def test_the_name_probed_is_the_ascii_host() -> None:
    assert _host("https://B\u00fccher.Example:8443/x") == "xn--bcher-kva.example"
    assert _host(" WWW.Example.COM. ") == "www.example.com"
    assert _host("http://user@a.example/p?q") == "a.example"


LONG_NAME = "a" * 60 + "." + ".".join(["b" * 59] * 4)  # 300 characters, every label valid


@pytest.mark.parametrize("bad", ["ftp://x.org/", "198.18.0.1", "http://[::1]/", "localhost", "", "a..b",
                                 LONG_NAME, f"https://{LONG_NAME}/", "https:///x", "*.example.com",
                                 "https://198.18.0.1/", "2001:db8::1"])
def test_input_refused(bad: str) -> None:
    assert len(LONG_NAME) == 300
    with pytest.raises(NettestError):
        check_input(bad)
