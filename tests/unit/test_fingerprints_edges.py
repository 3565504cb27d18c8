"""Edges of the blockpage fingerprint matcher (``tamperscope.wire.fingerprints``): whole-word checks at the very
ends of the text, precedence, regions, caps and DNS keys, on small databases built here from entries."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tamperscope.wire import fingerprints as fpmod
from tamperscope.wire.fingerprints import Fingerprint, FingerprintDB


def _entry(fid: str, pattern: str, *, kind: str = "blockpage", label: str = "f_gen", where: str = "body",
           syntax: str = "regex", source: str = fpmod.CENSOREDPLANET, **extra: Any) -> dict[str, Any]:
    return {"id": fid, "name": fid.split("/")[-1], "source": source, "kind": kind, "syntax": syntax,
            "pattern": pattern, "where": where, "label": label, **extra}


def _db(*entries: dict[str, Any]) -> FingerprintDB:
    return FingerprintDB.from_entries(entries)


GENERIC = _entry("cp/f_gen_access_denied", "Access Denied")


def test_a_generic_match_glued_to_the_first_or_last_character_is_not_a_whole_word() -> None:
    """The whole-word check holds at index 1 (a letter at 0) and one before the end (a letter last)."""
    db = _db(GENERIC)
    assert db.match_response("xAccess Denied") == []
    assert db.match_response("Access Deniedx") == []
    assert db.match_response("x Access Denied") != [] and db.match_response("Access Denied x") != []
    [m] = db.match_response("Access Denied")
    assert (m.where, m.span) == ("body", (0, 13))


def test_only_censored_planet_blockpages_are_generic() -> None:
    """`generic` needs source CP, kind blockpage and a generic label: a false positive labelled f_gen is not."""
    def fp(**kw: Any) -> Fingerprint:
        return Fingerprint.from_json(_entry("cp/x", "x", **kw))
    assert fp().generic and fp(label="e_unk").generic
    assert not fp(kind="false_positive").generic and not fp(label="a_prod").generic
    assert not fp(source=fpmod.CITIZENLAB).generic


def test_a_body_of_exactly_the_scan_cap_is_not_truncated() -> None:
    """`truncated` says the body was longer than what was scanned: at exactly MAX_BODY_SCAN nothing was cut."""
    db = _db(GENERIC)
    exact = db.classify_response(b"a" * fpmod.MAX_BODY_SCAN)
    assert not exact.truncated and exact.scanned_chars == fpmod.MAX_BODY_SCAN
    over = db.classify_response(b"a" * (fpmod.MAX_BODY_SCAN + 1))
    assert over.truncated and over.scanned_chars == fpmod.MAX_BODY_SCAN
    assert not db.classify_response("a" * fpmod.MAX_BODY_SCAN).truncated  # str bodies: characters


def test_headers_past_the_header_cap_are_cut_and_not_matched() -> None:
    """Only MAX_HEADER_SCAN characters of status line + headers are scanned; what lies beyond never matches."""
    db = _db(_entry("cl/isp_xx_example", "Location: http://blocked.example", where="header", syntax="substring",
                    label="isp", source=fpmod.CITIZENLAB))
    near = {"X-Pad": "p" * 100, "Location": "http://blocked.example/"}
    assert [m.id for m in db.match_response(b"", near, 302)] == ["cl/isp_xx_example"]
    far = {"X-Pad": "p" * (fpmod.MAX_HEADER_SCAN + 10), "Location": "http://blocked.example/"}
    result = db.classify_response(b"", far, 302)
    assert result.truncated and result.scanned_chars == fpmod.MAX_HEADER_SCAN and result.blockpages == ()


def test_a_header_match_ending_at_the_blank_line_is_in_the_header() -> None:
    """A match that ends exactly where the body starts lies in the header, not across both ("response")."""
    db = _db(_entry("cl/isp_xx_last", "blocked.example/\r\n\r\n", where="header", syntax="substring",
                    label="isp", source=fpmod.CITIZENLAB))
    [m] = db.match_response(b"<html>hello</html>", {"Location": "http://blocked.example/"}, 302)
    head = fpmod.serialise_head(302, {"Location": "http://blocked.example/"})
    assert (m.where, m.span[1]) == ("header", len(head))


def test_a_literal_less_fingerprint_sees_only_the_first_always_run_scan_characters() -> None:
    """Fingerprints without a literal run on every response, so only over ALWAYS_RUN_SCAN characters."""
    db = _db(_entry("cl/prod_digits", r"[0-9]{3}[a-z]{2}[0-9]{3}", label="prod", source=fpmod.CITIZENLAB))
    assert db.always_run == ("cl/prod_digits",)
    early = "." * (fpmod.ALWAYS_RUN_SCAN - 8) + "123ab456"
    assert [m.span for m in db.match_response(early)] == [(fpmod.ALWAYS_RUN_SCAN - 8, fpmod.ALWAYS_RUN_SCAN)]
    assert db.match_response("." * fpmod.ALWAYS_RUN_SCAN + "123ab456") == []


def test_two_letter_owner_words_are_alike_only_when_the_same() -> None:
    """A word under three letters is no substring match: "ps" is not "psbank" (but "ps" is "ps")."""
    assert not fpmod.owner_of("d_corp_kz_ps").same_as(fpmod.owner_of("c_isp_kz_psbank"))
    assert fpmod.owner_of("d_corp_kz_ps").same_as(fpmod.owner_of("blockpage_meta_corp_kz_ps_block"))
    assert fpmod.owner_of("c_isp_ru_akado").same_as(fpmod.owner_of("isp_ru_akadotelecom"))


def test_a_dns_fingerprint_of_no_country_counts_in_every_country() -> None:
    """With a country, a product's block address (no expected countries) still counts; an ISP's only at home."""
    db = _db(_entry("cl/dns_prod_opendns", "146.112.61.104", kind="dns", syntax="ip", where="dns", label="prod",
                    source=fpmod.CITIZENLAB),
             _entry("cl/dns_isp_by_beltelecom", "82.209.230.21", kind="dns", syntax="ip", where="dns", label="isp",
                    source=fpmod.CITIZENLAB, expected_countries=["BY"]))
    answers = ["146.112.61.104", "82.209.230.21"]
    assert [m.id for m in db.match_dns(answers, country="RU")] == ["cl/dns_prod_opendns"]
    assert [m.id for m in db.match_dns(answers, country="by")] == ["cl/dns_prod_opendns", "cl/dns_isp_by_beltelecom"]
    assert len(db.match_dns(answers)) == 2


def test_a_fingerprint_hit_in_far_apart_windows_matches_once() -> None:
    """Hits more than a window apart make separate windows; the first match ends the search for that fingerprint."""
    db = _db(GENERIC)
    body = "Access Denied " + "." * (3 * fpmod.WINDOW) + " Access Denied"
    result = db.classify_response(body)
    assert [m.span for m in result.blockpages] == [(0, 13)] and result.regex_evaluations == 1


def test_a_whole_word_match_inside_a_glued_one_is_still_found() -> None:
    """After a glued match the search resumes one character on, not at its end: "Denied" in "xAccess Denied"."""
    regex = re.compile("(?:Access )?Denied")
    assert fpmod._search(regex, "xAccess Denied", 0, 14, (True, True)) == (8, 14)
    assert fpmod._search(regex, "xAccess Deniedx", 0, 15, (True, True)) is None
    db = _db(_entry("cp/f_gen_twice", "ab ab"))  # a phrase that overlaps itself
    assert [m.span for m in db.match_response("xab ab ab")] == [(4, 9)]


# --------------------------------------------------------------------------- fingerprints of one's own


def test_local_entries_take_the_bounds_themselves() -> None:
    """Confidence 10 and a pattern of exactly LOCAL_PATTERN_MAX characters are allowed; 11 and one more are not."""
    ok = "name,pattern,confidence_no_fp\nedge," + "p" * fpmod.LOCAL_PATTERN_MAX + ",10\n"
    [entry] = fpmod.local_entries(ok, "mine.csv")
    assert (entry["id"], entry["confidence"], len(entry["pattern"])) == ("local/edge", 10, fpmod.LOCAL_PATTERN_MAX)
    for bad, needle in (("name,pattern,confidence_no_fp\nedge,blocked,11\n", "confidence_no_fp must be 0 to 10"),
                        ("name,pattern\nedge," + "p" * (fpmod.LOCAL_PATTERN_MAX + 1) + "\n", "the pattern must be")):
        with pytest.raises(ValueError, match=needle):
            fpmod.local_entries(bad, "mine.csv")


def test_local_entries_hold_at_most_local_max_fingerprints(monkeypatch: pytest.MonkeyPatch) -> None:
    """LOCAL_MAX rows are accepted, one more is refused (the cap shrunk here to keep the test fast)."""
    monkeypatch.setattr(fpmod, "LOCAL_MAX", 3)
    rows = "".join(f"n{i},blocked page {i}\n" for i in range(3))
    assert len(fpmod.local_entries("name,pattern\n" + rows, "mine.csv")) == 3
    with pytest.raises(ValueError, match="more than 3 fingerprints"):
        fpmod.local_entries("name,pattern\n" + rows + "n3,blocked page 3\n", "mine.csv")


def test_a_compiled_database_is_loaded_only_from_a_file_no_one_else_can_write(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache is a pickle, and a pickle is code: one that others can write (a shared or world-writable cache
    directory) is compiled again, never loaded; our own is loaded."""
    import os
    import pickle

    from tamperscope.wire import fingerprints

    monkeypatch.setenv("TAMPERSCOPE_CACHE_DIR", str(tmp_path))
    doc = {"format": fingerprints.DATA_FORMAT, "entries": [_entry("mine", "blocked by the ministry")]}
    data = json.dumps(doc).encode()
    path = fingerprints._cache_path(data)
    assert path is not None
    planted = _db(_entry("planted", "planted page"))
    path.write_bytes(fingerprints._CACHE_MAGIC + pickle.dumps(planted))
    os.chmod(path, 0o600)
    assert [f.id for f in fingerprints._cached(data).fingerprints] == ["planted"]  # ours: loaded as it is
    os.chmod(path, 0o666)
    assert [f.id for f in fingerprints._cached(data).fingerprints] == ["mine"]  # anyone's: compiled again
    path.write_bytes(fingerprints._CACHE_MAGIC + pickle.dumps(planted))
    os.chmod(path, 0o620)
    assert [f.id for f in fingerprints._cached(data).fingerprints] == ["mine"]  # its group's too
