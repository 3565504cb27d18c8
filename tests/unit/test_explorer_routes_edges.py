"""Edges of the explorer's routes (`explorer/routes.py`): the filters pages use to build links and words, the
search's paging links, the feeds' links to the page of their selection, static files' content coding, and what
an error on a feed's path answers in."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tamperscope.collector.config import Settings
from tamperscope.collector.testing import SyncClient, running_app
from tamperscope.explorer import routes

A = "{http://www.w3.org/2005/Atom}"


@pytest.fixture(scope="module")
def client(three_sites: SyncClient) -> SyncClient:
    return three_sites


def _alternate(client: SyncClient, path: str) -> str:
    res = client.get(path)
    assert res.status_code == 200, res.text
    root = ET.fromstring(res.content)
    found = [e.get("href") for e in root.findall(f"{A}link") if e.get("rel") == "alternate"]
    assert len(found) == 1
    return str(found[0])


def test_seg_encodes_a_slash_so_a_value_stays_one_path_segment() -> None:
    """A value with "/" left as is would link another page: /domain/a/b instead of the page of "a/b"."""
    assert routes._seg("a/b") == "a%2Fb"
    assert routes._seg("x?y#z &") == "x%3Fy%23z%20%26"


def test_plural_is_one_only_for_exactly_one() -> None:
    """ "0 country" and "1 countries" are both wrong: the noun is singular for 1 alone."""
    assert routes._plural(0, "country", "countries") == "countries"
    assert routes._plural(1, "country", "countries") == "country"
    assert routes._plural(2, "network") == "networks"
    assert routes._plural(0, "network") == "networks"


def test_a_feed_names_its_area_page_only_for_one_place_alone() -> None:
    """A feed of a country and a test (or a country and a network) is no country's page: its link is the search."""
    base = "http://x"
    assert routes._area_url(base, {"probe_cc": "RU"}) == "http://x/country/RU"
    assert routes._area_url(base, {"probe_asn": "AS1", "limit": "5"}) == "http://x/network/AS1"
    assert routes._area_url(base, {"domain": "a.example", "outcome": "anomaly"}) == "http://x/domain/a.example"
    assert routes._area_url(base, {"probe_cc": "RU", "test_name": "web_connectivity"}) == \
        "http://x/search?probe_cc=RU&test_name=web_connectivity"
    assert routes._area_url(base, {"probe_asn": "AS1", "probe_cc": "RU"}) == "http://x/search?probe_asn=AS1&probe_cc=RU"
    assert routes._area_url(base, {"limit": "5"}) == "http://x/search"


def test_an_empty_feed_filter_is_no_filter(client: SyncClient) -> None:
    """``probe_cc=`` (a form's empty field) selects nothing more: the changes of a site link the site's page."""
    alone = _alternate(client, "/changes.atom?domain=site0.example")
    assert alone.endswith("/domain/site0.example")
    assert _alternate(client, "/changes.atom?domain=site0.example&probe_cc=&test_name=") == alone


def test_the_first_page_of_a_search_links_no_newer_page(client: SyncClient) -> None:
    """Page 1 linked a "newer" page 0, which the search refuses (page must be a whole number from 1)."""
    first = client.get("/search?limit=1")
    assert first.status_code == 200
    assert 'rel="prev"' not in first.text
    assert re.search(r'<a rel="next" href="/search\?[^"]*page=2"', first.text)
    second = client.get("/search?limit=1&page=2")
    assert re.search(r'<a rel="prev" href="/search\?[^"]*page=1"', second.text)


def test_a_static_file_is_gzipped_only_for_a_client_that_takes_gzip(client: SyncClient) -> None:
    """A client that did not ask for gzip got compressed bytes it cannot read."""
    plain = client.get("/static/explorer.css", headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200 and "content-encoding" not in plain.headers
    assert plain.content == routes.static_file("explorer.css").data  # type: ignore[union-attr]
    zipped = client.get("/static/explorer.css", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"


def test_a_feed_or_a_csv_is_never_answered_with_an_html_error_page(client: SyncClient) -> None:
    """A feed reader (or a script) given an HTML error page for /feed.atom cannot read why it was refused."""
    for path in ("/feed.atom?domain=%FF", "/changes.atom?domain=%FF", "/new-blockpages.csv?domain=%FF"):
        res = client.get(path)
        assert res.status_code == 400, path
        assert res.headers["content-type"].startswith("application/json"), path
        assert res.json()["error"] == "invalid_parameter"
    assert client.get("/search?domain=%FF").headers["content-type"].startswith("text/html")


def test_pct_of_nothing_is_said_as_nothing() -> None:
    """A share of zero measurements divided by zero: the page failed with a 500 where it shows no share."""
    assert routes._pct(0, 0) == ""
    assert routes._pct(3, None) == ""
    assert routes._pct(1, 4) == "25%"
    assert routes._pct("x", 4) == ""


def test_home_shows_the_five_newest_findings_and_the_list_has_them_all(tmp_path: Path) -> None:
    """Home shows `FINDINGS_ON_HOME` findings, the newest; /findings has them all."""
    folder = tmp_path / "findings"
    folder.mkdir()
    for day in range(1, 8):
        (folder / f"day-{day}.md").write_text(
            f'+++\ntitle = "Finding {day}"\npublished = 2026-05-0{day}\n\n[evidence]\nprobe_cc = "RU"\n+++\nText.\n')
    with running_app(Settings(db_path=tmp_path / "s.duckdb", announce=False, submit_rate=0, read_rate=0,
                              findings_dir=folder)) as c:
        home = c.get("/index.json").json()
        listed = c.get("/findings.json").json()
    assert [f["id"] for f in home["findings"]] == [f"day-{d}" for d in (7, 6, 5, 4, 3)]
    assert len(listed["findings"]) == 7
