"""Edges of hostile input the other tests leave open. `model.inputs`: the exact bounds of a host name and a URL,
what `read_upto` returns past its cap, list headers and entries that look like something else. And the other
parsers of what a server or a user wrote: `model.altsvc`, a lab profile's `model.profile`, an ASN table's
`model.asn`, a page body's `model.charset`, and `wire.patterns`, which judges a shared profile's regexes before
the censor runs them over hostile names."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tamperscope.model.altsvc import h3_port
from tamperscope.model.asn import EMPTY, UNKNOWN, ASInfo, AsnTable
from tamperscope.model.charset import decode_body
from tamperscope.model.inputs import (
    MAX_URL,
    BadInput,
    category_codes,
    check_host,
    first_column,
    list_entries,
    parse_url,
    read_upto,
)
from tamperscope.model.profile import Profile, ProfileError, load_profile, parse_profile
from tamperscope.wire.patterns import (
    MAX_ALTERNATIVES,
    backtracking_risk,
    fold,
    guard_pattern,
    polynomial_risk,
    required_literals,
)

# four labels joined by dots: 63 + 63 + 63 + 61 characters and three dots, 253 in all (RFC 1035's longest name)
LONGEST_NAME = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])


def test_a_host_name_of_253_characters_is_taken_and_one_of_254_refused() -> None:
    """A bound past 253 would take a name no resolver can ask for."""
    assert len(LONGEST_NAME) == 253
    assert check_host(LONGEST_NAME) == LONGEST_NAME
    assert check_host(LONGEST_NAME.upper() + ".") == LONGEST_NAME  # a trailing dot is not counted
    with pytest.raises(BadInput, match="bad host name"):
        check_host(LONGEST_NAME + "d")


def test_a_url_of_max_url_characters_is_taken_and_one_more_refused() -> None:
    """A bound past MAX_URL would take an input a collector refuses."""
    head = "http://a.example/"
    url = head + "x" * (MAX_URL - len(head))
    assert len(url) == MAX_URL and parse_url(url).host == "a.example"
    assert parse_url("  " + url + "\n").path == url[len(head) - 1:]  # whitespace around it is not counted
    with pytest.raises(BadInput, match=f"a URL of {MAX_URL + 1:,} characters"):
        parse_url(url + "x")


def test_read_upto_returns_no_more_than_asked_of_a_regular_file(tmp_path: Path) -> None:
    """A read sized by the file, not by the cap, would return (and hold) all of a file past the cap."""
    path = tmp_path / "big.txt"
    path.write_bytes(b"0123456789" * 1000)
    with open(path, "rb") as f:
        assert read_upto(f, 25) == b"0123456789" * 2 + b"01234"
    with open(path, "rb") as f:
        assert read_upto(f, 1 << 20) == b"0123456789" * 1000


def test_read_upto_returns_no_more_than_asked_of_a_device() -> None:
    """/dev/zero never ends: a read of 64 KiB at a time that ignored the cap would return 64 KiB for 100 bytes."""
    with open("/dev/zero", "rb") as f:
        assert read_upto(f, 100) == b"\0" * 100
    with open("/dev/zero", "rb") as f:
        assert len(read_upto(f, (1 << 16) + 7)) == (1 << 16) + 7


def test_a_header_naming_its_column_with_an_underscore_is_refused_not_measured() -> None:
    """``domain_name,rank`` is a header of other names: its first cell must not be taken as a domain."""
    with pytest.raises(BadInput, match="line 1: 'domain_name' is not a domain"):
        list_entries("domain_name,rank\na.example,1\n", "list", headers=("domain",), noun=("domain", "domains"))
    # a name with an underscore in a list's first row is still an entry when it is not a header's word
    assert list_entries("_dmarc.a.example,1\n", headers=("domain",)) == [(1, "_dmarc.a.example")]


def test_a_rank_is_ascii_digits_only() -> None:
    """An Arabic-Indic digit is decimal to Python but no list's rank: ``١,a.com`` is one entry in column one."""
    assert first_column("1,a.example\n2,b.example\n", ranked=True) == [(1, "a.example"), (2, "b.example")]
    assert first_column("\u0661,a.example\n", ranked=True) == [(1, "\u0661")]


def test_a_category_code_is_two_to_twelve_capitals_digits_or_underscores() -> None:
    """A one-letter code is no Citizen Lab category (NEWS, HUMR, CULTR): taking one lets a typo through."""
    assert category_codes(" news,HUMR , ") == ["NEWS", "HUMR"]
    assert category_codes("gr") == ["GR"] and category_codes("A" * 12) == ["A" * 12]
    for bad in ("N", "NEWS,H", "A" * 13, "NE WS", ",", ""):
        with pytest.raises(ValueError, match="is not a list of category codes"):
            category_codes(bad)


# --------------------------------------------------------------------------- Alt-Svc (model.altsvc)


def test_an_alt_svc_port_of_65536_is_no_port() -> None:
    """65535 is the last UDP port: a bound of <= 65536 would send QUIC to a port that does not exist."""
    assert h3_port('h3=":65536"') is None
    assert h3_port('h3=":65536", h3=":65535"') == 65535


def test_an_alt_svc_authority_without_a_colon_is_a_host_not_a_port() -> None:
    """``h3="8443"`` names a host (another one), not port 8443 on this one: it is skipped like any other host."""
    assert h3_port('h3="8443"') is None
    assert h3_port('h3="8443", h3=":4433"') == 4433


# --------------------------------------------------------------------------- regexes (wire.patterns)


def test_fold_keeps_the_length_of_a_dotted_capital_i_and_folds_a_final_sigma() -> None:
    """Offsets in the folded text are offsets in the page: "İ".lower() is two characters; and "ΟΔΟΣ" lowers to a
    final sigma that a fingerprint written "οδοσ" would miss."""
    assert fold("\u0130stanbul") == "istanbul" and len(fold("x\u0130y")) == 3
    assert fold("ΟΔΟΣ") == fold("οδος") == "οδοσ"


def test_a_bounded_repeat_past_64_counts_as_unbounded() -> None:
    """``.{0,100}`` three times over a 253-character name costs what ``.*`` three times does."""
    assert polynomial_risk(".{0,100}a.{0,100}a.{0,100}c") is not None
    assert polynomial_risk(".{0,64}a.{0,64}a.{0,64}c") is None


def test_polynomial_risk_allows_two_unbounded_quantifiers_and_counts_a_branchs_worst() -> None:
    """``most`` is the most allowed; a branch counts as its costliest alternative, not as nothing."""
    assert polynomial_risk(".*a.*b") is None
    assert polynomial_risk(".*a.*a.*c") is not None
    assert polynomial_risk("(?:.*a|b.*).*c.*") is not None
    assert guard_pattern("(?:.*a|b).*").rejected is not None


@pytest.mark.parametrize("regex", ["(ab?)+c", "a*b*c", "^(aa{2}){30}$"])
def test_safe_shapes_are_not_called_a_risk(regex: str) -> None:
    """An optional item inside a loop that starts elsewhere, adjacent repeats of disjoint characters and a fixed
    repeat cannot divide a text many ways: refusing them would refuse a profile for nothing."""
    assert backtracking_risk(regex) is None


def test_a_risky_body_under_a_possessive_repeat_is_still_a_risk() -> None:
    """A possessive repeat is not backtracked into as a whole, but ``(a+)+`` inside it still is."""
    assert backtracking_risk("(?:(a+)+b)*+") is not None
    assert backtracking_risk("(?:ab)*+") is None


def test_a_gapped_chain_is_searched_linearly_only_when_a_dot_matches_a_line_break() -> None:
    """Without DOTALL, ``.`` stops at a newline: "first a, then b, then c" would match what the regex does not."""
    assert guard_pattern("a.*b.*c", re.S) == guard_pattern("a.*b.*c", re.DOTALL)
    assert guard_pattern("a.*b.*c", re.S).chain == ("a", "b", "c")
    plain = guard_pattern("a.*b.*c")
    assert plain.chain == () and plain.rejected is not None and "polynomial" in plain.rejected
    assert guard_pattern("a.+b.*c", re.S).chain == ()  # ``.+`` is no gap: it needs a character


def test_required_literals_are_four_characters_at_least_and_never_optional() -> None:
    """A literal of three characters is in too many pages to index; an optional group's is in no match at all."""
    assert required_literals("abc") == () and required_literals("abcd") == ("abcd",)
    assert required_literals("(?:blocked)?page") == ("page",)
    assert required_literals("Blocked|DENIED") == ("blocked", "denied")


def test_a_literal_set_never_grows_past_max_alternatives() -> None:
    """``[ab][cd][ef][gh]`` is 16 strings: the matcher's index holds at most MAX_ALTERNATIVES per pattern."""
    assert required_literals("[ab][cd][ef][gh]") == ()
    literals = required_literals("block[ab][cd][ef][gh]")
    assert 0 < len(literals) <= MAX_ALTERNATIVES and all(s.startswith("block") for s in literals)


@pytest.mark.parametrize("regex", ["(?=(a+)+$)x", "(?!(a+)+$)x"])
def test_a_risk_inside_a_lookahead_is_a_risk(regex: str) -> None:
    """The engine backtracks inside a lookahead as anywhere else."""
    assert backtracking_risk(regex) is not None


# --------------------------------------------------------------------------- lab profiles (model.profile)

RULE = "[[rule]]\nid = 'r'\nlayer = 'dns'\naction = 'drop'\n"


def _refused(text: str, tmp_path: Path) -> str:
    with pytest.raises(ProfileError) as e:
        parse_profile(text, source="shared.toml", base=tmp_path, builtin_pages=set())
    assert str(e.value).startswith("shared.toml: ") and "\n" not in str(e.value)
    return str(e.value)


@pytest.mark.parametrize("address", ["::1", "2001:db8::1", "198.18.0.1", "198.18.0.1."])
def test_an_address_in_a_rules_domains_is_refused(tmp_path: Path, address: str) -> None:
    """The censor looks for a domain as a name: an address there would match nothing, and the rule never act."""
    assert "domains" in _refused(RULE + f"domains = ['{address}']\n", tmp_path)


def test_a_wildcard_domain_is_refused_saying_how_to_match_subdomains(tmp_path: Path) -> None:
    """"*.x.org" is refused with the advice that says what to write instead, not as a bare bad name."""
    assert "use suffix = true for subdomains" in _refused(RULE + "domains = ['*.x.org']\n", tmp_path)


def test_a_network_delay_is_at_most_5000_ms(tmp_path: Path) -> None:
    """A longer delay would stall every flow of the lab past any probe timeout."""
    ok = parse_profile("[network]\ndelay_ms = 5000\n", source="p.toml", base=tmp_path, builtin_pages=set())
    assert ok.network.delay_ms == 5000
    assert "network.delay_ms" in _refused("[network]\ndelay_ms = 5000.5\n", tmp_path)


def test_an_added_header_holding_a_delete_character_is_refused(tmp_path: Path) -> None:
    """DEL is a control character that no header value may hold; a tab may."""
    assert "control characters" in _refused('[proxy]\nadd_headers = {X-A = "a\\u007fb"}\n', tmp_path)
    ok = parse_profile('[proxy]\nadd_headers = {X-A = "a\\tb"}\n', source="p.toml", base=tmp_path,
                       builtin_pages=set())
    assert ok.proxy.add_headers == (("X-A", "a\tb"),)


def _profile(text: str, tmp_path: Path) -> Profile:
    return parse_profile(text, source="p.toml", base=tmp_path, builtin_pages=set())


def test_a_forged_packets_ttl_is_1_to_255(tmp_path: Path) -> None:
    """A TTL of 0 is a packet no router forwards: the forged reset would never reach the client."""
    rst = "[[rule]]\nid = 'r'\nlayer = 'http'\naction = 'rst'\ndomains = ['x.org']\n"
    assert _profile(rst + "inject = {ttl = 1}\n", tmp_path).rules[0].inject.ttl == 1
    assert "inject.ttl" in _refused(rst + "inject = {ttl = 0}\n", tmp_path)


def test_a_rule_id_is_at_most_64_characters(tmp_path: Path) -> None:
    """The bound the format documents: one past it is refused."""
    rule = "[[rule]]\nid = '{}'\nlayer = 'http'\naction = 'rst'\ndomains = ['x.org']\n"
    assert _profile(rule.format("r" * 64), tmp_path).rules[0].id == "r" * 64
    assert "use 1-64 letters" in _refused(rule.format("r" * 65), tmp_path)


def test_a_throttle_is_8_kbps_at_least(tmp_path: Path) -> None:
    """Below 8 kbit/s a throttle is a drop that the lab would report as a throttle."""
    rule = "[[rule]]\nid = 'r'\nlayer = 'tls'\naction = 'throttle'\ndomains = ['x.org']\nrate_kbps = {}\n"
    assert _profile(rule.format(8), tmp_path).rules[0].rate_kbps == 8
    assert "rate_kbps: must be between 8" in _refused(rule.format(7), tmp_path)


def test_a_dotted_key_of_16_dots_is_parsed_and_one_of_17_refused(tmp_path: Path) -> None:
    """MAX_NESTING is the deepest allowed: 16 dots reach tomllib (which names the unknown key), 17 do not."""
    assert "unknown key" in _refused("a" + ".a" * 16 + " = 1\n", tmp_path)
    assert "nest more than 16 deep" in _refused("a" + ".a" * 17 + " = 1\n", tmp_path)
    assert "nest more than 16 deep" in _refused("x = " + "[" * 17 + "]" * 17 + "\n", tmp_path)


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_profile_that_is_no_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    """A FIFO or a device read as nothing would load as an empty profile: a lab censoring nothing, in silence."""
    if kind == "fifo":
        path = tmp_path / "p.toml"
        os.mkfifo(path)
    else:
        path = Path("/dev/null")
    with pytest.raises(ProfileError, match="is not a regular file"):
        load_profile(path, set())


def test_a_profile_name_holding_a_delete_character_is_refused(tmp_path: Path) -> None:
    """DEL is a control character: `lab status` prints the name in its one line."""
    assert "name: must be one line" in _refused('name = "lab\\u007f"\n', tmp_path)


def test_a_suffix_rule_matches_subdomains_not_names_that_end_alike(tmp_path: Path) -> None:
    """``suffix`` means subdomains: "evilx.org" is no subdomain of x.org."""
    rule = _profile(RULE + "domains = ['x.org']\nsuffix = true\n", tmp_path).rules[0]
    assert rule.matches_name("x.org") and rule.matches_name("A.X.ORG.") and rule.matches_name("b.a.x.org")
    assert not rule.matches_name("evilx.org") and not rule.matches_name("x.org.evil")


def test_a_rules_regex_reads_the_first_253_characters_of_a_name_only(tmp_path: Path) -> None:
    """A Host header has no length limit: a regex run over all of it costs what the client wants it to."""
    rule = _profile(RULE + "regex = 'evil$'\n", tmp_path).rules[0]
    assert rule.matches_name("a" * 248 + ".evil")  # 253 characters
    assert not rule.matches_name("a" * 249 + ".evil")


# --------------------------------------------------------------------------- ASN tables (model.asn)

# out of order, with a comment, a blank line, a row not routed (AS 0), a row without a country, an IPv6 row and junk
TABLE = "\n".join([
    "# iptoasn", "",
    "10.0.2.0\t10.0.2.255\t64502\tDE\t Other Net ",
    "10.0.0.0\t10.0.0.255\t64500\tUS\tExample Net",
    "10.0.1.0\t10.0.1.255\t0\tNone\tNot routed",
    "10.0.3.0\t10.0.3.255\t64503\t\t",
    "2001:db8::\t2001:db8::ffff\t64504\tFR\tv6",
    "junk\tx\ty\tz",
])


def test_an_asn_table_finds_a_range_by_its_bounds_in_any_order() -> None:
    """Rows out of order are sorted; both ends of a range are in it, one past its end is not."""
    table = AsnTable.from_text(TABLE)
    assert table.size == 4  # the IPv6 row and the junk are skipped
    example = ASInfo(64500, "US", "Example Net")
    assert table.lookup("10.0.0.0") == example and table.lookup("10.0.0.255") == example
    assert table.lookup("10.0.2.7") == ASInfo(64502, "DE", "Other Net")  # the description stripped
    assert table.lookup("10.0.4.0") == UNKNOWN and table.lookup("9.255.255.255") == UNKNOWN
    assert table.lookup("10.0.3.255") == ASInfo(64503, "ZZ", "")  # no country: ZZ


def test_a_range_not_routed_and_what_is_no_ipv4_address_are_unknown() -> None:
    """AS 0 means "not routed", not a network called 0; a name or an IPv6 address is no key of this table."""
    table = AsnTable.from_text(TABLE)
    assert table.lookup("10.0.1.5") == UNKNOWN
    for ip in ("nope", "2001:db8::1", "", "10.0.0.256"):
        assert table.lookup(ip) == UNKNOWN, ip
    assert EMPTY.size == 0 and EMPTY.lookup("10.0.0.1") == UNKNOWN


def test_a_row_of_too_few_columns_names_its_line() -> None:
    with pytest.raises(ValueError, match="^tbl: line 2: expected range_start"):
        AsnTable.from_text("# x\n1.2.3.4\t1.2.3.5\t1\n", "tbl")


# --------------------------------------------------------------------------- page bodies (model.charset)

CYRILLIC = "Доступ ограничен".encode("cp1251")  # not UTF-8


@pytest.mark.parametrize("label", ["windows-1251", "win-1251", "x-cp1251", "windows1251", "WINDOWS-1251"])
def test_windows_charset_labels_python_does_not_know_are_read_as_their_code_page(label: str) -> None:
    """A Russian blockpage declared ``x-cp1251`` read as UTF-8 with replacement would match no fingerprint."""
    assert decode_body(CYRILLIC, {"Content-Type": f"text/html; charset={label}"}) == "Доступ ограничен"


def test_a_meta_charset_is_read_in_the_first_4096_bytes_only() -> None:
    """The body is searched as far as browsers sniff, not through a megabyte a server sends."""
    meta = b'<meta charset="cp1251">'
    assert decode_body(b" " * 4000 + meta + CYRILLIC).endswith("Доступ ограничен")
    assert decode_body(b" " * 5000 + meta + CYRILLIC).endswith("\ufffd" * 6 + " " + "\ufffd" * 9)


def test_a_header_charset_that_is_no_charset_leaves_the_meta_one_to_read() -> None:
    """``charset=bogus`` in the header is as if none were given: the page's own <meta> still says its charset."""
    body = b'<meta charset="cp1251">' + CYRILLIC
    assert decode_body(body, {"Content-Type": "text/html; charset=bogus"}).endswith("Доступ ограничен")
    assert decode_body(body, {"Content-Type": "text/html; charset=base64"}).endswith("Доступ ограничен")


def test_a_utf8_body_cut_inside_a_character_reads_as_utf8() -> None:
    """A capped body ends mid-character: it is still UTF-8, not a page in the declared charset."""
    cut = "Доступ".encode()[:-1]
    assert decode_body(cut, {"Content-Type": "text/html; charset=cp1251"}) == "Досту"
