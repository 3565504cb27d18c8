"""Fingerprints against a site's own text, and against pages in the charset they declare (QA on real data).

- A page that is the control's (same status, a body as long, the same title) is the site's: a review of a
  filtering product, an article quoting a blockpage, a Danish news page saying "blokeret" matched product and
  company fingerprints and came out as confirmed blockpages with a vendor's name (19 of 21 ordinary pages).
- A real Russian ISP's blockpage in KOI8-R matched its fingerprints in the matcher alone: the verdicts decoded
  the body as UTF-8 with replacement characters, so it lost them (and matched one that knows only U+FFFD).
"""

from __future__ import annotations

import base64
import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tamperscope.analysis.verdicts import default_matcher, verdict_for
from tamperscope.wire.fingerprints import FingerprintDB

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
SAMPLE = SHARED / "ooni-samples" / "generated" / "successWithHTTP" / "measurement.json"
CITIZENLAB = SHARED / "blockpages" / "citizenlab"

# ordinary pages that quote what fingerprints look for (the QA pass's, cut down)
ORDINARY = {
    "review": "<html><head><title>Best antivirus 2026: our tests</title></head><body><h1>Best antivirus 2026</h1>"
              "<p>We tested Kaspersky Anti-Virus, Kaspersky Internet Security and twelve others.</p></body></html>",
    "danish news": "<html><head><title>Konto blokeret efter svindel</title></head><body><p>Kundens konto blev "
                   "blokeret i tre dage.</p></body></html>",
    "headline": "<html><head><title>Website Blocked in Turkey: what we know</title></head><body><h1>Website Blocked"
                "</h1><p>Courts ordered the block on Monday.</p></body></html>",
}


def _with_page(body: bytes, control_like: bool, content_type: str = "text/html; charset=utf-8",
               title: str | None = None) -> dict[str, Any]:
    """successWithHTTP with ``body`` as its page; the control's page the same (status, length, title) when
    ``control_like``, else the sample's own (1533 bytes, "Default Web Page")."""
    m: dict[str, Any] = copy.deepcopy(json.loads(SAMPLE.read_text()))
    tk = m["test_keys"]
    response = tk["requests"][0]["response"]
    response["body"] = {"format": "base64", "data": base64.b64encode(body).decode()}
    response["headers"] = {**response["headers"], "Content-Type": content_type, "Content-Length": str(len(body))}
    response["headers_list"] = [[k, v] for k, v in response["headers"].items()]
    if control_like:
        found = re.search(rb"<title>(.*?)</title>", body, re.S)
        control = tk["control"]["http_request"]
        control["body_length"] = len(body)
        control["title"] = title if title is not None else (found.group(1).decode() if found else "")
        control["status_code"] = response["code"]
    for key in ("blocking", "accessible"):
        tk.pop(key, None)
    return m


@pytest.mark.parametrize("name", sorted(ORDINARY))
def test_a_page_that_is_the_controls_is_the_sites_whatever_a_fingerprint_finds_in_it(name: str) -> None:
    page = ORDINARY[name].encode()
    matcher = default_matcher()
    assert FingerprintDB.load().classify_response(page).is_blockpage, name  # the matcher alone finds something
    v = verdict_for(_with_page(page, control_like=True), matcher)
    assert (v.blocking, v.accessible, v.mechanism, v.fingerprints) == (False, True, "none", ()), v
    # the same page where the control fetched another (the site's real one): a blockpage, by its fingerprints
    v = verdict_for(_with_page(page, control_like=False), matcher)
    assert v.mechanism == "http.blockpage" and v.fingerprints and v.confidence >= 0.9, v


def test_a_real_blockpage_equal_in_length_to_the_controls_page_but_not_its_title_is_still_one() -> None:
    """Only the whole likeness forgives: a censor's page as long as the site's, under its own title, is caught."""
    page = (CITIZENLAB / "blockpage_meta_isp_ru_westcall_forward_1.html").read_bytes()
    m = _with_page(page, control_like=True, content_type="text/html; charset=koi8-r", title="Новости дня")
    v = verdict_for(m, default_matcher())
    assert v.mechanism == "http.blockpage" and v.fingerprints, v


@pytest.mark.parametrize(("page", "charset", "expected"), [
    ("blockpage_meta_isp_ru_westcall_forward_1.html", "koi8-r", "cp/f_gen_ru_9"),
    ("blockpage_meta_isp_ru_dialog_block.html", "windows-1251", "cl/isp_ru_dialog_block"),
])
def test_a_blockpage_in_the_charset_it_declares_keeps_its_fingerprints(page: str, charset: str, expected: str) -> None:
    body = (CITIZENLAB / page).read_bytes()
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")  # what the page is: no UTF-8
    matcher = default_matcher()
    found = FingerprintDB.load().classify_response(body, {"Content-Type": f"text/html; charset={charset}"})
    alone = {str(f.id) for f in found.blockpages}
    assert expected in alone, alone
    v = verdict_for(_with_page(body, control_like=False, content_type=f"text/html; charset={charset}"), matcher)
    assert v.mechanism == "http.blockpage" and v.confidence >= 0.9, v
    assert set(v.fingerprints) == alone, (v.fingerprints, alone)  # what the matcher alone finds, no more, no less


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_a_blockpage_in_utf16_after_its_byte_order_mark_keeps_its_fingerprints(codec: str) -> None:
    """QA: UTF-16 copies of the recognised real blockpages matched nothing, and all matched the fingerprint that
    knows only U+FFFD. A browser reads UTF-16 after its byte-order mark, whatever the headers say."""
    text = (CITIZENLAB / "blockpage_meta_isp_ru_dialog_block.html").read_bytes().decode("cp1251")
    body = ("\ufeff" + text).encode(codec)
    found = FingerprintDB.load().classify_response(body, {"Content-Type": "text/html"})
    ids = {str(f.id) for f in found.blockpages}
    assert "cl/isp_ru_dialog_block" in ids and not any("fffd" in i for i in ids), ids
    v = verdict_for(_with_page(body, control_like=False, content_type="text/html"), default_matcher())
    assert v.mechanism == "http.blockpage" and set(v.fingerprints) == ids, v


def test_an_empty_page_that_is_the_controls_is_the_sites() -> None:
    """Neither page has a title: the same status and length are the whole likeness there is (QA: '<HTML></HTML>'
    equal to the control's page was a confirmed 'Blank or No-Render HTML' blockpage)."""
    page = b"<HTML></HTML>"
    v = verdict_for(_with_page(page, control_like=True), default_matcher())
    assert (v.mechanism, v.fingerprints) == ("none", ()), v
    v = verdict_for(_with_page(page, control_like=False), default_matcher())  # where the site has a page
    assert v.mechanism == "http.blockpage" and "cl/susp_blankhtml_1" in v.fingerprints, v


def _titled(page: bytes) -> str:
    found = re.search(rb"<title>(.*?)</title>", page, re.S | re.I)
    return found.group(1).decode("utf-8", "replace").strip() if found else ""


def _untitled_blockpages() -> list[Path]:
    return sorted(p for p in CITIZENLAB.glob("blockpage_*.html") if not _titled(p.read_bytes())
                  and FingerprintDB.load().classify_response(p.read_bytes()).is_blockpage)


def test_a_blockpage_whose_title_has_no_word_to_compare_is_no_sites_page() -> None:
    """QA: the MTS page's title is "MTC": OONI's title match, over words of five bytes or more, holds for none, and
    the page lost its fingerprint against a control titled "My Blog" of a like length."""
    page = (CITIZENLAB / "blockpage_meta_isp_ru_mts_block.html").read_bytes()
    m = _with_page(page, control_like=True, title="My Blog")
    v = verdict_for(m, default_matcher())
    assert v.mechanism == "http.blockpage" and v.fingerprints, v


def test_an_untitled_blockpage_against_an_untitled_control_page_is_still_one() -> None:
    """QA: every real blockpage without a title (16 of those the verdict recognises) was lost against a control page
    without one, of a like length. Only an empty page is forgiven that way."""
    pages = _untitled_blockpages()
    assert len(pages) >= 10, pages
    for path in pages:
        page = path.read_bytes()
        v = verdict_for(_with_page(page, control_like=True, title=""), default_matcher())
        assert v.mechanism == "http.blockpage" and v.fingerprints, (path.name, v)
