"""The explorer's Atom feeds: any search to follow (`/feed.atom`), sites blocked and unblocked (`/changes.atom`) and
the findings (`/findings.atom`). Over a real collector and DuckDB store, fed through the submission endpoint; each
feed is read back with a strict XML parser, as a feed reader would, hostile measurement content included."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from tamperscope.analysis import aggregates
from tamperscope.collector import samples
from tamperscope.collector.app import AGGREGATE_COST, read_cost
from tamperscope.collector.config import Settings
from tamperscope.collector.queries import MeasurementQuery
from tamperscope.collector.testing import SyncClient, running_app
from tamperscope.explorer import feeds

A = "{http://www.w3.org/2005/Atom}"
ATOM_TAGS = {f"{A}{t}" for t in ("feed", "id", "title", "subtitle", "updated", "published", "link", "author",
                                 "name", "generator", "entry", "category", "summary", "content")}
# what XML 1.0 forbids, and markup: a feed reader must get neither as anything but text
HOSTILE_INPUT = 'http://evil.example/<script>alert(1)</script>]]>&amp;\x01\x0b\ufffe'
HOSTILE_NETWORK = '<img src=x onerror=alert(2)>\x02'

# (url, country, network, time, scenario): meduza.io becomes blocked on AS12389, then unblocked
MEASURED = [
    ("https://meduza.io/", "RU", "AS12389", "2026-05-01 10:00:00", "ok"),
    ("https://meduza.io/", "RU", "AS12389", "2026-05-02 10:00:00", "dns.poison"),
    ("https://meduza.io/", "RU", "AS12389", "2026-05-03 10:00:00", "dns.poison"),
    ("https://meduza.io/", "RU", "AS12389", "2026-05-08 10:00:00", "ok"),
    ("https://meduza.io/", "RU", "AS12389", "2026-05-09 10:00:00", "ok"),
    ("https://bbc.com/", "RU", "AS8359", "2026-05-04 10:00:00", "tcp.drop"),
    ("https://bbc.com/", "TM", "AS20661", "2026-05-05 10:00:00", "ok"),
    (HOSTILE_INPUT, "IR", "AS197207", "2026-05-06 10:00:00", "http.blockpage"),
]

FINDING = '''+++
title = "Rostelecom poisons <b>DNS</b> for meduza.io"
summary = "Every measurement from AS12389 in May got a forged address."
published = 2026-05-20
updated = 2026-05-22
reported_by = "A. Researcher"

[evidence]
probe_cc = "RU"
domain = "meduza.io"
+++
Since 2 May, <script>alert(3)</script> Rostelecom's resolvers answer with an address of their own.

Second paragraph.
'''

OLDER = '''+++
title = "An older finding"
summary = "Older."
published = 2026-04-01

[evidence]
probe_cc = "TM"
+++
Text.
'''


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncClient]:
    tmp = tmp_path_factory.mktemp("feeds")
    folder = tmp / "findings"
    folder.mkdir()
    (folder / "ru-meduza.md").write_text(FINDING)
    (folder / "older.md").write_text(OLDER)
    body = b"\n".join(orjson.dumps(samples.measurement(
        scenario, url=url, probe_cc=cc, probe_asn=asn, start=when, report_id=f"r{i}",
        **({"network_name": HOSTILE_NETWORK} if cc == "IR" else {})))
        for i, (url, cc, asn, when, scenario) in enumerate(MEASURED))
    with running_app(Settings(db_path=tmp / "a.duckdb", announce=False, submit_rate=0, read_rate=0,
                              findings_dir=folder)) as c:
        assert c.post("/api/v1/submit", content=body).json()["stored"] == len(MEASURED)
        c.run(c.collector.ingestor.settled)
        yield c


def _feed(client: SyncClient, path: str) -> ET.Element:
    res = client.get(path)
    assert res.status_code == 200, res.text
    assert res.headers["content-type"] == "application/atom+xml; charset=utf-8"
    root = ET.fromstring(res.content)  # strict: an ill-formed document raises
    assert root.tag == f"{A}feed"
    assert {e.tag for e in root.iter()} <= ATOM_TAGS, "an element the feed does not write: injected markup"
    for tag in ("id", "title", "updated"):
        assert root.find(f"{A}{tag}") is not None and root.findtext(f"{A}{tag}")
    return root


def _entries(root: ET.Element) -> list[ET.Element]:
    return root.findall(f"{A}entry")


def _link(entry: ET.Element, rel: str = "alternate") -> str:
    found = [e.get("href") for e in entry.findall(f"{A}link") if e.get("rel") == rel]
    assert len(found) == 1
    return str(found[0])


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def test_the_anomalies_feed_lists_what_the_search_finds_newest_first(client: SyncClient) -> None:
    root = _feed(client, "/feed.atom?outcome=anomaly")
    searched = client.get("/search.json", params={"outcome": "anomaly"}).json()["results"]
    entries = _entries(root)
    assert len(entries) == len(searched) == 4
    uids = [_link(e).rsplit("/", 1)[1] for e in entries]
    assert uids == [r["measurement_uid"] for r in searched]
    times = [e.findtext(f"{A}updated") for e in entries]
    assert times == sorted(times, reverse=True) and root.findtext(f"{A}updated") == times[0]
    for entry, row in zip(entries, searched):
        assert entry.findtext(f"{A}id") == _link(entry)  # the permalink is the id: stable across polls
        assert entry.findtext(f"{A}updated") == row["measurement_start_time"]
        title = str(entry.findtext(f"{A}title"))
        assert row["probe_cc"] in title and row["probe_asn"] in title and row["domain"] in title
        assert row["mechanism"] in title
        summary = str(entry.findtext(f"{A}summary"))
        assert f"Outcome: {row['outcome']}" in summary
        assert {c.get("term") for c in entry.findall(f"{A}category")} >= {row["outcome"], row["mechanism"]}
        # the entry's page and its raw JSON are there
        assert client.get(_path(_link(entry))).status_code == 200
        assert client.get(_path(_link(entry, "related"))).json()["measurement_start_time"]
    bbc = next(e for e in entries if "bbc.com" in str(e.findtext(f"{A}title")))
    assert "connections to the server's address timed out" in str(bbc.findtext(f"{A}summary"))
    assert _path(_link(root)) == "/search?outcome=anomaly"
    assert _path(str(root.find(f"{A}link[@rel='self']").get("href"))) == "/feed.atom?outcome=anomaly"
    assert root.findtext(f"{A}title") == "Anomalies · tamperscope"


def test_any_search_can_be_followed_with_its_own_fields(client: SyncClient) -> None:
    root = _feed(client, "/feed.atom?probe_cc=RU&domain=meduza.io&outcome=confirmed")
    entries = _entries(root)
    searched = client.get("/search.json", params={"probe_cc": "RU", "domain": "meduza.io",
                                                  "outcome": "confirmed"}).json()["results"]
    assert [_link(e).rsplit("/", 1)[1] for e in entries] == [r["measurement_uid"] for r in searched]
    assert len(entries) == 2 and all("meduza.io: blocked (confirmed)" in str(e.findtext(f"{A}title"))
                                     for e in entries)
    assert root.findtext(f"{A}title") == "Confirmed blocking of meduza.io in RU · tamperscope"
    # every measurement when the search names no outcome; limit caps the entries (a whole number from 1, at most
    # 200: more is taken as 200); limit=0 was taken as 1, and is refused as the search refuses it
    assert len(_entries(_feed(client, "/feed.atom"))) == len(MEASURED)
    assert len(_entries(_feed(client, "/feed.atom?limit=3"))) == 3
    refused = client.get("/feed.atom?limit=0")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_parameter"
    assert len(_entries(_feed(client, "/feed.atom?limit=99999"))) == len(MEASURED)
    assert len(_entries(_feed(client, "/feed.atom?probe_asn=12389"))) == 5  # "12389" is AS12389, as in the search
    empty = _feed(client, "/feed.atom?probe_cc=ZZ")
    assert _entries(empty) == [] and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
                                                  str(empty.findtext(f"{A}updated")))


def test_a_hostile_measurement_is_text_in_a_well_formed_feed(client: SyncClient) -> None:
    res = client.get("/feed.atom?probe_cc=IR")
    root = _feed(client, "/feed.atom?probe_cc=IR")
    (entry,) = _entries(root)
    summary = str(entry.findtext(f"{A}summary"))
    # the markup arrives as the characters typed; what XML cannot carry is U+FFFD, not a broken feed
    assert "http://evil.example/<script>alert(1)</script>]]>&amp;\ufffd\ufffd\ufffd" in summary
    assert "<img src=x onerror=alert(2)>\ufffd" in summary
    assert b"<script>" not in res.content and b"<img" not in res.content
    assert all(e.get("type") == "text" for e in root.iter() if e.tag in (f"{A}title", f"{A}summary",
                                                                          f"{A}subtitle", f"{A}content"))


def test_changes_say_when_a_site_became_blocked_and_when_unblocked(client: SyncClient) -> None:
    root = _feed(client, "/changes.atom?probe_cc=RU")
    rows = aggregates.changes(client.collector.reader, MeasurementQuery(probe_cc="RU").filters(),  # type: ignore
                              limit=50)
    entries = _entries(root)
    assert [r["change"] for r in rows] == ["unblocked", "blocked"]
    assert len(entries) == 2
    unblocked, blocked = entries
    assert unblocked.findtext(f"{A}title") == "meduza.io was unblocked in RU on AS12389"
    assert blocked.findtext(f"{A}title") == "meduza.io became blocked in RU on AS12389: dns.poison"
    assert blocked.findtext(f"{A}updated") == "2026-05-02T10:00:00Z"
    assert unblocked.findtext(f"{A}updated") == "2026-05-08T10:00:00Z"
    summary = str(blocked.findtext(f"{A}summary"))
    assert summary.startswith("2 anomalous measurements in a row from 2026-05-02T10:00:00Z to 2026-05-03T10:00:00Z;"
                              " later measurements show otherwise.")
    assert "at 2026-05-01T10:00:00Z, was fine" in summary
    assert str(unblocked.findtext(f"{A}summary")).startswith("2 fine measurements in a row") and \
        "still so" in str(unblocked.findtext(f"{A}summary"))
    # each entry links the search for its run's measurements, which finds them
    query = parse_qs(urlsplit(_link(blocked)).query)
    assert query == {"domain": ["meduza.io"], "probe_asn": ["AS12389"], "since": ["2026-05-02T10:00:00Z"]}
    found = client.get("/search.json", params={k: v[0] for k, v in query.items()}).json()["results"]
    assert len(found) == 4  # the run and what came after it
    assert _path(_link(root)) == "/country/RU"
    assert root.findtext(f"{A}title") == "Sites blocked and unblocked in RU · tamperscope"
    # the whole store has the same two; a network that never changed has none
    assert [e.findtext(f"{A}id") for e in _entries(_feed(client, "/changes.atom"))] == \
        [e.findtext(f"{A}id") for e in entries]
    assert _entries(_feed(client, "/changes.atom?probe_asn=AS8359")) == []


def test_a_change_keeps_its_id_while_its_run_goes_on(tmp_path: Path) -> None:
    def submit(c: SyncClient, when: str, scenario: str) -> None:
        m = samples.measurement(scenario, url="https://meduza.io/", probe_cc="RU", probe_asn="AS12389", start=when,
                                report_id=f"r{when}")
        assert c.post("/api/v1/submit", content=orjson.dumps(m)).json()["stored"] == 1
        c.run(c.collector.ingestor.settled)

    with running_app(Settings(db_path=tmp_path / "a.duckdb", announce=False, submit_rate=0, read_rate=0)) as c:
        submit(c, "2026-05-01 10:00:00", "ok")
        submit(c, "2026-05-02 10:00:00", "dns.poison")
        assert _entries(_feed(c, "/changes.atom")) == []  # one anomaly is not a change
        submit(c, "2026-05-03 10:00:00", "dns.poison")
        (first,) = _entries(_feed(c, "/changes.atom"))
        submit(c, "2026-05-04 10:00:00", "dns.poison")
        (later,) = _entries(_feed(c, "/changes.atom"))
        assert later.findtext(f"{A}id") == first.findtext(f"{A}id")
        assert later.findtext(f"{A}updated") == first.findtext(f"{A}updated") == "2026-05-02T10:00:00Z"
        assert str(later.findtext(f"{A}summary")).startswith("3 anomalous measurements in a row")


def test_the_findings_feed_carries_each_finding_whole(client: SyncClient) -> None:
    root = _feed(client, "/findings.atom")
    entries = _entries(root)
    assert [_path(_link(e)) for e in entries] == ["/findings/ru-meduza", "/findings/older"]
    first = entries[0]
    assert first.findtext(f"{A}title") == "Rostelecom poisons <b>DNS</b> for meduza.io"
    assert first.findtext(f"{A}published") == "2026-05-20T00:00:00Z"
    assert first.findtext(f"{A}updated") == "2026-05-22T00:00:00Z" == root.findtext(f"{A}updated")
    assert first.findtext(f"{A}author/{A}name") == "A. Researcher"
    content = str(first.findtext(f"{A}content"))
    assert content.startswith("Since 2 May, <script>alert(3)</script> Rostelecom") and "Second paragraph." in content
    assert {c.get("term") for c in first.findall(f"{A}category")} == {"domain=meduza.io", "probe_cc=RU"}
    assert client.get("/findings/ru-meduza").status_code == 200


def test_a_feed_not_changed_is_not_sent_again(client: SyncClient) -> None:
    res = client.get("/feed.atom?outcome=anomaly")
    etag = res.headers["etag"]
    again = client.get("/feed.atom?outcome=anomaly", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert client.get("/feed.atom?outcome=confirmed", headers={"If-None-Match": etag}).status_code == 200


@pytest.mark.parametrize("path, words", [
    ("/feed.atom?since=yesterday", "since must be a date"),
    ("/feed.atom?until=2026-13-01", "until must be a date"),
    ("/changes.atom?category_code=no%20such", "category_code"),
])
def test_a_bad_parameter_is_refused_in_words(client: SyncClient, path: str, words: str) -> None:
    res = client.get(path)
    assert res.status_code == 400
    body = res.json()
    assert body["error"] == "invalid_parameter" and words in body["detail"] and "\n" not in body["detail"]


def test_pages_name_their_feeds_and_each_one_answers(client: SyncClient) -> None:
    pages = {"/": ["/feed.atom?outcome=anomaly", "/feed.atom?outcome=confirmed", "/changes.atom",
                   "/findings.atom"],
             "/country/RU": ["/feed.atom?probe_cc=RU&outcome=anomaly", "/changes.atom?probe_cc=RU",
                             "/new-blockpages.atom?probe_cc=RU"],
             "/network/AS12389": ["/feed.atom?probe_asn=AS12389&outcome=anomaly",
                                  "/changes.atom?probe_asn=AS12389", "/new-blockpages.atom?probe_asn=AS12389"],
             "/domain/meduza.io": ["/feed.atom?domain=meduza.io&outcome=anomaly", "/changes.atom?domain=meduza.io",
                                   "/new-blockpages.atom?domain=meduza.io"],
             "/new-blockpages?probe_cc=RU": ["/new-blockpages.atom?probe_cc=RU"],
             "/search?probe_cc=RU&outcome=anomaly&page=1": ["/feed.atom?probe_cc=RU&outcome=anomaly"],
             "/findings": ["/findings.atom"]}
    for page, expected in pages.items():
        text = client.get(page).text
        head, _, rest = text.partition("</head>")
        found = [h.replace("&amp;", "&") for h in re.findall(
            r'<link rel="alternate" type="application/atom\+xml" title="[^"]*" href="([^"]+)">', head)]
        assert found == expected, page
        foot = rest.rpartition("<footer>")[2]
        assert [h.replace("&amp;", "&") for h in re.findall(r'<a href="([^"]+)" type="application/atom\+xml"',
                                                            foot)] == expected
        for href in found:
            _feed(client, href)
    # an area page says them in its lead too, where a reader looks first
    follow = client.get("/domain/meduza.io").text.split('<span id="follow">', 1)[1].split("</span>", 1)[0]
    assert [h.replace("&amp;", "&") for h in re.findall(r'href="([^"]+)"', follow)] == pages["/domain/meduza.io"]
    # a search the store refuses names no feed
    assert "application/atom+xml" not in client.get("/search?since=nonsense").text
    assert client.get("/country/RU.json").json()["feeds"][1]["href"] == "/changes.atom?probe_cc=RU"


def test_a_feed_costs_what_an_aggregation_costs() -> None:
    assert read_cost("/feed.atom") == read_cost("/changes.atom") == AGGREGATE_COST
    assert read_cost("/findings.atom") == 1.0


@pytest.mark.parametrize("raw", ["\x00", "\x08", "\x1f", "\ud800", "\udfff", "\ufffe", "\uffff"])
def test_what_xml_forbids_becomes_a_replacement_character(raw: str) -> None:
    text = feeds.xml_text(f"a{raw}<b>&\"")
    assert text == "a\ufffd&lt;b&gt;&amp;&quot;"
    doc = feeds.atom(feeds.Feed(id="urn:x", title=f"t{raw}", self_url="http://x/", page_url="http://x/",
                                entries=[feeds.Entry(id="urn:e", title=raw, updated="2026-01-01T00:00:00Z",
                                                     link=f"http://x/{raw}", summary=raw)]))
    root = ET.fromstring(doc)
    assert root.findtext(f"{A}title") == "t\ufffd"
    assert root.find(f"{A}entry/{A}link").get("href") == "http://x/\ufffd"


@pytest.mark.parametrize("value, expected", [
    ("2026-05-01 10:00:00", "2026-05-01T10:00:00Z"),
    ("2026-05-01T10:00:00+02:00", "2026-05-01T08:00:00Z"),
    ("not a time", "1970-01-01T00:00:00Z"),
    (None, "1970-01-01T00:00:00Z"),
])
def test_times_are_rfc3339_in_utc(value: object, expected: str) -> None:
    assert feeds.atom_time(value) == expected
