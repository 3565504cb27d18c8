"""Measurement content cannot rewrite the page's own text: bidi controls (a right-to-left override in a network's
name reversed "(XS)" after it on /m/{uid}), NULs and other controls, and names that look like others (аррӏе.com, all
Cyrillic, shown as if it were apple.com). The explorer's pages, its feeds and the HTML report show bidi controls as
escapes, controls as U+FFFD, isolate right-to-left text in <bdi>, and a name beyond ASCII with its IDNA form."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tamperscope.analysis.report import host_shown, shown_text
from tamperscope.collector import samples
from tamperscope.collector.testing import SyncClient, unlimited_app
from tamperscope.explorer import display

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
RAW_BIDI = re.compile(f"[{BIDI}]")
RAW_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
ARABIC = "شبكة الاتصالات"
HOMOGRAPH = "xn--80ak6aa92e.com"  # аррӏе.com: Cyrillic letters only
SHOWN_HOMOGRAPH = "аррӏе.com (xn--80ak6aa92e.com)"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncClient]:
    with unlimited_app(tmp_path_factory.mktemp("explorer-bidi") / "b.duckdb") as c:
        yield c


def _submit(client: SyncClient, m: dict[str, Any]) -> str:
    return client.submit(m)


@pytest.fixture(scope="module")
def uids(client: SyncClient) -> dict[str, str]:
    return {
        "rlo": _submit(client, samples.measurement(
            "dns.poison", url="http://rlo.example/\u202e", probe_cc="XS", probe_asn="AS667",
            network_name="Evil ISP \u202e", start="2026-05-01 00:00:00")),
        "nul": _submit(client, samples.measurement(
            "dns.poison", url="http://nul.example/\u0000x", probe_cc="XN", probe_asn="AS668",
            network_name="Nul\u0000ISP\u0007", start="2026-05-02 00:00:00")),
        "arabic": _submit(client, samples.measurement(
            "dns.poison", url="http://arabic.example/", probe_cc="XA", probe_asn="AS669",
            network_name=ARABIC, start="2026-05-03 00:00:00")),
        "homograph": _submit(client, samples.measurement(
            "dns.poison", url=f"http://{HOMOGRAPH}/", probe_cc="XH", probe_asn="AS670",
            start="2026-05-04 00:00:00")),
    }


def _page(client: SyncClient, path: str, **params: str) -> str:
    r = client.get(path, params=params)
    assert r.status_code == 200, (path, r.text[:300])
    return str(r.text)


def _clean(text: str, where: str) -> None:
    assert not RAW_BIDI.search(text), (where, RAW_BIDI.findall(text))
    assert not RAW_CONTROL.search(text), (where, RAW_CONTROL.findall(text))


# --------------------------------------------------------------------------- the helpers


def test_shown_text_names_bidi_controls_and_replaces_other_controls() -> None:
    assert shown_text("Evil ISP \u202e") == "Evil ISP \\u202e"
    assert shown_text("a\u2066b\u200fc\u061c") == "a\\u2066b\\u200fc\\u061c"
    assert shown_text("x\x00y\x07z\x7f\x85") == "x\ufffdy\ufffdz\ufffd\ufffd"
    assert shown_text("tab\tline\nreturn\r") == "tab\tline\nreturn\r"  # kept: text, not controls
    assert shown_text(ARABIC) == ARABIC and shown_text(None) == ""


def test_host_shown_gives_the_ascii_form_of_a_name_beyond_ascii() -> None:
    assert host_shown("аррӏе.com") == SHOWN_HOMOGRAPH
    assert host_shown("яндекс.рф") == "яндекс.рф (xn--d1acpjx3f.xn--p1ai)"
    assert host_shown("www.example.com") == "www.example.com"
    assert host_shown(HOMOGRAPH) == SHOWN_HOMOGRAPH  # whichever spelling it is given in
    assert host_shown("xn--zz") == "xn--zz"  # no IDNA label: as it is
    assert host_shown("a\u202eb.example").startswith("a\\u202eb.example (xn--")


def test_marks_become_bdi_in_text_and_vanish_in_tags_and_titles() -> None:
    marked = display.finalize(ARABIC)
    assert marked == display.OPEN + ARABIC + display.CLOSE
    assert display.finalize("plain") == "plain" and display.finalize(3) == 3
    page = (f"<title>{marked} · x</title><p title=\"{marked}\">AS1 {marked} (XS)</p>"
            f"<select><option>{marked}</option></select><textarea>{marked}</textarea>")
    assert display.isolated(page) == (
        f"<title>{ARABIC} · x</title><p title=\"{ARABIC}\">AS1 <bdi>{ARABIC}</bdi> (XS)</p>"
        f"<select><option>{ARABIC}</option></select><textarea>{ARABIC}</textarea>")
    # an <option> left open (a datalist's) ends at the next tag: the text after it is isolated again
    assert display.isolated(f"<datalist><option value=\"{marked}\"></datalist><p>{marked}</p>") == (
        f"<datalist><option value=\"{ARABIC}\"></datalist><p><bdi>{ARABIC}</bdi></p>")
    # a noncharacter a measurement holds is no mark: shown_text replaced it before finalize saw it
    assert display.finalize("x\ufdd0y\ufdd1") == "x\ufffdy\ufffd"


# --------------------------------------------------------------------------- the pages


def test_a_right_to_left_override_reorders_nothing_on_any_page(client: SyncClient, uids: dict[str, str]) -> None:
    m = _page(client, f"/m/{uids['rlo']}")
    assert "<dd>AS667 Evil ISP \\u202e (XS)</dd>" in m
    assert "<title>web_connectivity · http://rlo.example/\\u202e · tamperscope</title>" in m
    _clean(m, "/m")
    for path, params in (("/network/AS667", {}), ("/country/XS", {}), ("/domain/rlo.example", {}),
                         ("/search", {"probe_asn": "AS667"}), ("/", {})):
        page = _page(client, path, **params)
        assert "Evil ISP \\u202e" in page or "rlo.example/\\u202e" in page, path
        _clean(page, path)


def test_nul_and_other_controls_are_replacement_characters(client: SyncClient, uids: dict[str, str]) -> None:
    m = _page(client, f"/m/{uids['nul']}")
    assert "Nul\ufffdISP\ufffd" in m and "http://nul.example/\ufffdx" in m
    _clean(m, "/m")
    for path, params in (("/network/AS668", {}), ("/country/XN", {}), ("/search", {"probe_cc": "XN"})):
        page = _page(client, path, **params)
        assert "Nul\ufffdISP\ufffd" in page, path
        _clean(page, path)


def test_right_to_left_text_is_isolated_from_the_page_around_it(client: SyncClient, uids: dict[str, str]) -> None:
    m = _page(client, f"/m/{uids['arabic']}")
    assert f"<dd>AS669 <bdi>{ARABIC}</bdi> (XA)</dd>" in m
    network = _page(client, "/network/AS669")
    assert f"<bdi>{ARABIC}</bdi>" in network
    assert "\ufdd0" not in network + m and "\ufdd1" not in network + m  # no mark left anywhere


def test_a_homograph_is_shown_with_its_punycode(client: SyncClient, uids: dict[str, str]) -> None:
    for path in ("/domain/" + HOMOGRAPH, "/", "/country/XH", "/network/AS670", f"/m/{uids['homograph']}"):
        assert SHOWN_HOMOGRAPH in _page(client, path), path
    assert SHOWN_HOMOGRAPH in _page(client, "/domain/аррӏе.com")
    # the JSON twin keeps the data as stored: whoever shows it decides
    assert client.get("/domain/" + HOMOGRAPH + ".json").json()["key"] == HOMOGRAPH


@pytest.mark.parametrize("domain", [HOMOGRAPH, "аррӏе.com", "XN--80AK6AA92E.COM."])
def test_the_domain_filter_takes_either_spelling(client: SyncClient, uids: dict[str, str], domain: str) -> None:
    listed = client.get("/api/v1/measurements", params={"domain": domain}).json()
    assert [r["measurement_uid"] for r in listed["results"]] == [uids["homograph"]]
    found = client.get("/search.json", params={"domain": domain}).json()
    assert [r["measurement_uid"] for r in found["results"]] == [uids["homograph"]]
    timeline = client.get("/api/v1/aggregation/timeline", params={"domain": domain}).json()["result"]
    assert sum(row["measurement_count"] for row in timeline) == 1


def test_the_feed_shows_controls_and_homographs_as_the_pages_do(client: SyncClient, uids: dict[str, str]) -> None:
    feed = client.get("/feed.atom").text
    _clean(feed, "/feed.atom")
    assert "Evil ISP \\u202e" in feed and SHOWN_HOMOGRAPH in feed


def test_the_html_report_shows_them_as_the_pages_do(client: SyncClient, uids: dict[str, str]) -> None:
    r = client.get("/api/v1/export/report.html")
    assert r.status_code == 200
    body = r.content
    text = (gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body).decode()
    main = text[text.index("<main>"):]  # plotly's bundle is not ours to judge
    main = re.sub(r"<script>.*?</script>", "", main, flags=re.S)
    _clean(main, "report.html")
    assert SHOWN_HOMOGRAPH in main and "Evil ISP \\u202e" in main
    narrowed = client.get("/api/v1/export/report.html", params={"domain": HOMOGRAPH}).text
    assert f"<p class='selection'>Only site {SHOWN_HOMOGRAPH}.</p>" in narrowed
    arabic = client.get("/api/v1/export/report.html", params={"input": f"http://arabic.example/{ARABIC}"}).text
    assert f"<p class='selection'>Only input <bdi>http://arabic.example/{ARABIC}</bdi>.</p>" in arabic
