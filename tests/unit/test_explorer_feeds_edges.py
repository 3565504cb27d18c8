"""Edges of the explorer's Atom feeds (`explorer/feeds.py`), built directly from entries: every place a value from
a measurement or a finding lands in the document is escaped (a strict XML parser reads it back as the same text),
and the entries' words and bounds."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from types import SimpleNamespace

from tamperscope.analysis.confidence import NO_NETWORK
from tamperscope.explorer import feeds

A = "{http://www.w3.org/2005/Atom}"
HOSTILE = 'a"b\'<c>&d</summary><entry>'


def _doc(*entries: feeds.Entry, title: str = "t") -> ET.Element:
    doc = feeds.atom(feeds.Feed(id="urn:f", title=title, self_url="http://x/f.atom", page_url="http://x/",
                                entries=entries))
    return ET.fromstring(doc)  # strict: an ill-formed document raises


def _entry(**kwargs: object) -> feeds.Entry:
    fields: dict[str, object] = {"id": "urn:e", "title": "e", "updated": "2026-05-01T00:00:00Z",
                                 "link": "http://x/e", "summary": "s"}
    return feeds.Entry(**{**fields, **kwargs})  # type: ignore[arg-type]


def test_an_entrys_author_is_escaped() -> None:
    """A finding's ``reported_by`` written raw made the feed ill-formed, or added markup to it."""
    root = _doc(_entry(author=HOSTILE))
    assert root.findtext(f"{A}entry/{A}author/{A}name") == HOSTILE


def test_an_entrys_categories_are_escaped() -> None:
    """A category term (a test's name, a finding's evidence) with a quote ended the attribute early."""
    root = _doc(_entry(categories=(HOSTILE, "probe_cc=RU")))
    assert [c.get("term") for c in root.findall(f"{A}entry/{A}category")] == [HOSTILE, "probe_cc=RU"]


def test_an_entrys_related_link_is_escaped() -> None:
    """The related link (the raw measurement) with a quote or an ampersand in its address."""
    href = 'http://x/api?a=1&b="2"<'
    root = _doc(_entry(related=((href, "application/json"),)))
    related = [e for e in root.findall(f"{A}entry/{A}link") if e.get("rel") == "related"]
    assert [(e.get("href"), e.get("type")) for e in related] == [(href, "application/json")]


def test_a_long_feed_title_is_clipped_and_says_how_much_more() -> None:
    """A title made of a search's value (8,192 characters of it) is shown cut, as the pages show it."""
    root = _doc(title="Anomalies of " + "x" * 10_000)
    title = root.findtext(f"{A}title") or ""
    assert len(title) < 5000 and "more characters" in title
    assert title.startswith("Anomalies of xxx")


def _group(sites: int) -> dict[str, object]:
    return {"key": "k1", "countries": [{"probe_cc": "RU"}], "measurements": 3,
            "domains": [{"domain": f"s{i}.example"} for i in range(sites)], "networks": [{"probe_asn": "AS1"}],
            "first_seen": "2026-05-01", "last_seen": "2026-05-02", "status_code": 200, "title": "Blocked"}


def test_a_template_entry_names_ten_sites_and_says_when_there_are_more() -> None:
    """The summary lists ten sites; "…" only when more than ten were seen."""
    ten = feeds.template_entries([_group(10)], "http://x", "http://x/new-blockpages")[0].summary
    assert "(s0.example, s1.example, s2.example, s3.example, s4.example, s5.example, s6.example, s7.example, " \
           "s8.example, s9.example) on" in ten
    eleven = feeds.template_entries([_group(11)], "http://x", "http://x/new-blockpages")[0].summary
    assert "of 11 sites (" in eleven and "s9.example, …) on" in eleven and "s10.example" not in eleven


def test_a_finding_without_a_summary_is_summarised_by_its_title() -> None:
    """An empty <summary> says nothing in a reader's list: the title stands in for it."""
    finding = SimpleNamespace(id="ru-1", title="Rostelecom poisons DNS", summary="", text="", published=dt.date(
        2026, 5, 20), updated=None, reported_by=None, evidence={"probe_cc": "RU"})
    entry = feeds.finding_entries([finding], "http://x")[0]
    assert entry.summary == "Rostelecom poisons DNS"
    assert entry.content is None and entry.author is None
    assert entry.updated == entry.published == "2026-05-20T00:00:00Z"


def test_a_measurement_from_no_known_network_says_so_not_as0() -> None:
    """AS0 is the store's word for "nobody said which network": a reader is told that, not "on AS0"."""
    row = {"measurement_uid": "u1", "test_name": "web_connectivity", "input": "https://a.example/",
           "domain": "a.example", "probe_cc": "RU", "probe_asn": NO_NETWORK, "outcome": "ok",
           "measurement_start_time": "2026-05-01 10:00:00"}
    entry = feeds.measurement_entries([row], "http://x")[0]
    assert entry.title == "a.example: no interference found in RU on a network not known"
    assert "on a network not known" in entry.summary and f"on {NO_NETWORK}" not in entry.summary
    assert feeds.measurement_entries([{**row, "probe_asn": "AS12389"}], "http://x")[0].title.endswith(
        "in RU on AS12389")


def test_a_year_before_1000_is_written_with_four_digits() -> None:
    """RFC 3339 wants four digits of year: strftime's %Y wrote 999 (a helper's remark); a strict reader refuses it."""
    assert feeds.atom_time(dt.datetime(999, 1, 2, 3, 4, 5)) == "0999-01-02T03:04:05Z"
    assert feeds.atom_time(dt.datetime(2026, 5, 1, 0, 0, 0, 999_999)) == "2026-05-01T00:00:00Z"
