"""Edges of the fingerprint regex analysis (`wire.patterns`), body decoding (`model.charset`), the TSPU freeze
reading (`model.freeze`) and OONI's summary keys (`model.summary`) that no other test pinned down."""

from __future__ import annotations

import codecs
import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tamperscope.model import freeze
from tamperscope.model.charset import decode_body
from tamperscope.model.summary import summary_keys
from tamperscope.wire.patterns import (
    MAX_ALTERNATIVES,
    MIN_LITERAL,
    backtracking_risk,
    fold,
    guard_pattern,
    parse,
    polynomial_risk,
    required_literals,
    word_edges,
)
from tests.unit.test_summary_classic import _untagged

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"

# --------------------------------------------------------------------------- wire.patterns


def test_fold_keeps_length_for_dotted_capital_i() -> None:
    """"İ".lower() is two characters: offsets in the folded text would drift from the page's."""
    assert fold("İSTANBUL") == "istanbul"
    assert len(fold("xİy" * 5)) == 15


def test_fold_reads_a_final_sigma_as_any_sigma() -> None:
    """lower() writes ς at a word's end: a literal "ΣΑΣ" would fold differently alone and inside a page."""
    assert fold("ΣΑΣ") == "σασ"
    assert fold("ΣΑΣ ΠΑΡΑ").startswith(fold("ΣΑΣ"))


@pytest.mark.parametrize(("pattern", "texts"), [
    ("ab{1,3}cdefg", ["abcdefg", "abbbcdefg"]),       # a ranged repeat is no fixed string
    ("zz(abcdefg)?\\d", ["zz1", "zzabcdefg1"]),        # an optional group is not required
    ("(abcdef|\\d+)", ["abcdef", "12345"]),            # an arm without a literal makes the branch unknown
    ("(ab|abcdefgh)\\d", ["ab1", "abcdefgh1"]),        # a set with a short member is no usable index
])
def test_every_match_contains_one_of_the_required_literals(pattern: str, texts: list[str]) -> None:
    """An index literal that some match lacks makes the matcher miss that blockpage."""
    literals = required_literals(pattern)
    for text in texts:
        assert re.search(pattern, text)
        assert not literals or any(lit in fold(text) for lit in literals), (pattern, text, literals)


def test_required_literals_stay_few() -> None:
    """Character classes in a row must not multiply into dozens of index entries."""
    literals = required_literals("[abcd][efgh][ijkl]mnop")
    assert literals == ("imnop", "jmnop", "kmnop", "lmnop")
    assert len(literals) <= MAX_ALTERNATIVES


def test_a_literal_set_with_a_short_member_is_no_index() -> None:
    """The scanner anchors on MIN_LITERAL characters: a shorter literal would never be found, nor its page."""
    assert required_literals("(ab|abcdefgh)\\d") == ()
    for pattern in ("(abcd|abcdefgh)\\d", "access denied", "(?:blocked|denied) by"):
        assert required_literals(pattern) and all(len(lit) >= MIN_LITERAL for lit in required_literals(pattern))


def test_required_literals_prefer_the_longest_shortest_member() -> None:
    """The most selective set is the one whose shortest literal is longest, not the one with fewest members."""
    assert required_literals("[ab]cdefghij\\dklmn") == ("acdefghij", "bcdefghij")


@pytest.mark.parametrize("regex", ["x|(a+)+b", "(?=(a+)+b)", "(?:(a+)+b)++", "x[a-z]*[a-c]*y"])
def test_risks_inside_branches_lookarounds_possessives_and_ranges_are_seen(regex: str) -> None:
    """A nested quantifier in an alternative, a lookahead or a possessive body, or overlapping ranges, hangs."""
    assert backtracking_risk(regex) is not None


def test_polynomial_risk_counts_the_worst_branch_and_allows_two() -> None:
    """Unbounded quantifiers inside an alternative count; two alone are allowed."""
    assert polynomial_risk(".*a.*b") is None
    assert polynomial_risk("(a.*b|c).*d.*e") is not None
    assert guard_pattern("(a.*b|c).*d", re.S).rejected is not None


@pytest.mark.parametrize(("pattern", "flags", "chain"), [
    ("abc.*def", re.S, ("abc", "def")),
    ("abc.*def", 0, ()),                # without DOTALL . stops at a newline: no chain
    ("abc.+def", re.S, ()),             # .+ needs a character between: no chain
    ("ab{2,5}c.*d", re.S, ()),          # a ranged repeat is no fixed-width segment
    ("[^<>]bc.*d", re.S, ("[^<>]bc", "d")),
    ("a[^<]b.*c", re.S, ("a[^<]b", "c")),
])
def test_gapped_chains_are_only_exact_rewrites(pattern: str, flags: int, chain: tuple[str, ...]) -> None:
    """A chain that matches more (or other) text than its regex makes the matcher report pages it should not."""
    guarded = guard_pattern(pattern, flags)
    assert guarded.rejected is None and guarded.chain == chain


def test_chains_search_like_their_regex() -> None:
    """A negated class in a chain segment must still exclude its characters."""
    (first, second) = guard_pattern("a[^<]b.*c", re.S).chain
    assert re.search(first, "a<b") is None and re.search(first, "axb")
    assert re.search(second, "c")


def test_word_edges_only_at_cased_letters_and_digits() -> None:
    """A word edge before "-" or around CJK text never holds, so such a generic fingerprint would never match."""
    assert word_edges(parse("-abc.", 0)) == (False, False)
    assert word_edges(parse("访问被拒绝", 0)) == (False, False)
    assert word_edges(parse("Abc9", 0)) == (True, True)


# --------------------------------------------------------------------------- model.charset

CP = b"\xcf\xf0\xe8\xe2\xe5\xf2 \xff"  # not UTF-8


@pytest.mark.parametrize(("label", "codec"), [("windows-874", "cp874"), ("x-cp1251", "cp1251"), ("win-1251", "cp1251")])
def test_windows_style_labels_map_to_python_codecs(label: str, codec: str) -> None:
    """codecs.lookup knows no "windows-874" or "x-cp1251": such a page would read as UTF-8 with U+FFFD."""
    assert decode_body(CP, {"Content-Type": f"text/html; charset={label}"}) == CP.decode(codec, "replace")


def test_a_lowercase_content_type_header_is_read() -> None:
    """HTTP/2 and many servers send header names in lowercase."""
    assert decode_body(CP, [("content-type", "text/html; charset=koi8-r")]) == CP.decode("koi8-r", "replace")


def test_a_header_label_that_is_no_charset_falls_back_to_the_meta() -> None:
    """A bogus header label is ignored, as browsers do, and the page's own <meta> still counts."""
    body = b'<meta charset="windows-1251">' + CP
    assert decode_body(body, {"Content-Type": "text/html; charset=base64"}) == body.decode("cp1251", "replace")


def test_a_meta_charset_past_the_sniffed_prefix_is_ignored() -> None:
    """Only the body's first 4096 bytes are searched for <meta charset> (hostile bodies are large)."""
    body = b"x" * 5000 + b'<meta charset="koi8-r">' + CP
    assert decode_body(body) == body.decode("utf-8", "replace")
    assert decode_body(body[4900:]) == body[4900:].decode("koi8-r", "replace")


@pytest.mark.parametrize("bom, codec", [(codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")])
def test_a_utf16_bom_wins_over_the_declared_charset(bom: bytes, codec: str) -> None:
    """Browsers read a page after a UTF-16 byte-order mark as UTF-16, whatever it declares, in its byte order."""
    text = "Доступ ограничен"
    assert decode_body(bom + text.encode(codec), {"Content-Type": "text/html; charset=koi8-r"}) == text


def test_a_capped_body_cut_inside_a_character_drops_the_partial_character() -> None:
    """A UTF-8 body cut mid-character is still UTF-8, not re-read in its declared charset."""
    body = "Доступ ограничен".encode()[:-1]
    assert decode_body(body, {"Content-Type": "text/html; charset=koi8-r"}) == "Доступ ограниче"


# --------------------------------------------------------------------------- model.freeze


def _tk(reads: list[tuple[float, Any]], body: Any = "x" * 12000, code: int = 200) -> dict[str, Any]:
    return {"requests": [{"failure": "generic_timeout_error", "transaction_id": 3, "t0": 0.5, "t": 10.0,
                          "response": {"code": code, "body": body}}],
            "network_events": [{"operation": "read", "transaction_id": 3, "num_bytes": n, "t": t, "failure": None}
                               for t, n in reads]}


def test_the_frozen_bounds_are_inclusive() -> None:
    """Exactly MIN_BYTES, MAX_BYTES or SILENCE_S is still a freeze."""
    for received in (freeze.MIN_BYTES, freeze.MAX_BYTES):
        assert freeze.Stall(0, 3, received, 1, freeze.SILENCE_S, 0).frozen
    assert not freeze.Stall(0, 3, freeze.MAX_BYTES + 1, 1, 5.0, 0).frozen
    assert not freeze.Stall(0, 3, freeze.MIN_BYTES - 1, 1, 5.0, 0).frozen
    assert not freeze.Stall(0, 3, 16384, 1, freeze.SILENCE_S - 0.001, 0).frozen


def test_reads_that_carry_nothing_failed_or_are_bools_do_not_end_the_silence() -> None:
    """A zero-byte, failed or boolean read late in the record is no byte from the server."""
    tk = _tk([(1.0, 16384), (9.5, 0), (9.6, True)])
    tk["network_events"].append({"operation": "read", "transaction_id": 3, "num_bytes": 100, "t": 9.7,
                                 "failure": "eof_error"})
    (stall,) = freeze.stalls(tk)
    assert (stall.received, stall.reads, stall.silence_s) == (16384, 1, 9.0) and stall.frozen


def test_the_last_read_is_the_latest_not_the_last_listed() -> None:
    """Events out of time order must not lengthen the silence."""
    (stall,) = freeze.stalls(_tk([(5.0, 8000), (1.0, 8384)]))
    assert stall.silence_s == 5.0 and stall.received == 16384


def test_reads_only_before_the_request_say_nothing() -> None:
    """Bytes all read before the request began (the handshake) do not show the response froze."""
    assert freeze.stalls(_tk([(0.2, 16384)])) == []


def test_a_base64_body_counts_its_decoded_bytes() -> None:
    """16,000 base64 characters are 12,000 bytes, which 13,000 bytes of reads cover."""
    (stall,) = freeze.stalls(_tk([(1.0, 13000)], body={"format": "base64", "data": "A" * 16000}))
    assert stall.body == 12000


def test_a_body_without_a_status_code_still_started() -> None:
    """A response with body bytes but no code (0) had started: its stall is read."""
    (stall,) = freeze.stalls(_tk([(1.0, 16384)], code=0))
    assert stall.frozen


def test_the_first_request_of_a_transaction_is_the_one_reported() -> None:
    """Two requests sharing a transaction id: the stall is the first one's."""
    tk = _tk([(1.0, 16384)])
    tk["requests"].append(copy.deepcopy(tk["requests"][0]))
    (stall,) = freeze.stalls(tk)
    assert stall.request == 0


def test_only_the_first_64_requests_and_max_events_are_read() -> None:
    """Hostile records are bounded: a request past the 64th, or reads past MAX_EVENTS, are not looked at."""
    tk = _tk([(1.0, 16384)])
    tk["requests"] = [{"failure": None}] * 64 + tk["requests"]
    assert freeze.stalls(tk) == []
    tk = _tk([(1.0, 16384)])
    tk["network_events"] = [{"operation": "write"}] * freeze.MAX_EVENTS + tk["network_events"]
    assert freeze.stalls(tk) == []


# --------------------------------------------------------------------------- model.summary

AGREED = ["successWithHTTP", "cloudflareCAPTCHAWithHTTP", "ghostDNSBlockingWithHTTP", "localhostWithHTTP",
          "badSSLWithExpiredCertificate", "tlsBlockingConnectionResetWithInconsistentDNS",
          "idnaWithoutCensorshipLowercase", "redirectWithConsistentDNSAndThenNXDOMAIN", "httpBlockingConnectionReset",
          # a site that is down: the control's lookup failed as the probe's did, however each spells it
          "websiteDownNXDOMAIN", "websiteDownNoAddrs"]
KEYS = ("dns_consistency", "body_length_match", "body_proportion", "status_code_match", "headers_match",
        "title_match")


@pytest.mark.parametrize("name", AGREED)
def test_summary_keys_agree_with_oonis_own(name: str) -> None:
    """The summary keys OONI's probe wrote on its QA samples are re-derived from the raw records."""
    m = json.loads((SAMPLES / name / "measurement.json").read_text(encoding="utf-8"))
    blanked = copy.deepcopy(m)
    for key in KEYS:
        blanked["test_keys"].pop(key, None)
    got = summary_keys(blanked)
    assert {k: got[k] for k in KEYS} == {k: m["test_keys"].get(k) for k in KEYS}


def _sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / name / "measurement.json").read_text(encoding="utf-8"))
    return data


def _all_queries_fail(m: dict[str, Any], control_dns: dict[str, Any]) -> dict[str, Any]:
    m = copy.deepcopy(m)
    for q in m["test_keys"]["queries"]:
        q["failure"], q["answers"] = "dns_nxdomain_error", None
    m["test_keys"]["control"]["dns"] = control_dns
    return m


def test_dns_consistency_of_failed_lookups() -> None:
    """The same failure as the control's is consistent; a failure where the control resolved is not; no lookup
    at all says nothing."""
    m = _sample("successWithHTTP")
    same = _all_queries_fail(m, {"failure": "dns_nxdomain_error", "addrs": []})
    assert summary_keys(same)["dns_consistency"] == "consistent"
    resolved = _all_queries_fail(m, {"failure": None, "addrs": ["93.184.216.34"]})
    assert summary_keys(resolved)["dns_consistency"] == "inconsistent"
    none = copy.deepcopy(m)
    none["test_keys"]["queries"] = []
    assert summary_keys(none)["dns_consistency"] is None


def test_the_controls_spelling_of_a_failure_is_the_probes() -> None:
    """The control writes NXDOMAIN as ``dns_name_error`` (OONI's helper), the probe as ``dns_nxdomain_error``: the
    same failure, consistent; another failure of the control's (a server failure) is not; and no address for
    both (``dns_no_answer`` against a control that resolved nothing) is consistent too."""
    m = _sample("successWithHTTP")
    assert summary_keys(_all_queries_fail(m, {"failure": "dns_name_error", "addrs": []}))["dns_consistency"] \
        == "consistent"
    assert summary_keys(_all_queries_fail(m, {"failure": "dns_server_failure", "addrs": []}))["dns_consistency"] \
        == "inconsistent"
    empty = _all_queries_fail(m, {"failure": None, "addrs": []})
    for q in empty["test_keys"]["queries"]:
        q["failure"] = "dns_no_answer"
    assert summary_keys(empty)["dns_consistency"] == "consistent"


def test_http_match_keys_need_a_successful_control_fetch() -> None:
    """A failed control fetch leaves every *_match unknown; an unknown proportion is written as 0."""
    m = _sample("successWithHTTP")
    failed = copy.deepcopy(m)
    failed["test_keys"]["control"]["http_request"]["failure"] = "connection_reset"
    got = summary_keys(failed)
    assert [got[k] for k in KEYS[1:]] == [None, 0, None, None, None]
    no_length = copy.deepcopy(m)
    no_length["test_keys"]["control"]["http_request"]["body_length"] = None
    got = summary_keys(no_length)
    assert got["body_proportion"] == 0 and got["body_length_match"] is None and got["status_code_match"] is True


def test_v04_does_not_make_a_tls_validated_address_consistent() -> None:
    """TLS validation of an address is (pre-classic) v0.5's rule; a v0.4 record is judged as v0.4 judged it. (With
    its ``classic`` tags, the sample is judged by the system resolver's answer alone, as OONI wrote: inconsistent.)"""
    m = _untagged(_sample("httpDiffWithInconsistentDNS"))
    assert summary_keys(m)["dns_consistency"] == "consistent"
    m["test_version"] = "0.4.3"
    assert summary_keys(m)["dns_consistency"] == "inconsistent"
