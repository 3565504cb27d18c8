"""HTTP semantics a feed reader, a cache or a link checker relies on: ``If-None-Match`` compared as RFC 9110 says
(weakly, a list of tags, ``*``), where only the exact tag matched; and ``HEAD`` wherever ``GET`` works, where it was
405 (``HEAD /``, ``HEAD /feed.atom``)."""

from __future__ import annotations

import pytest

from tamperscope.collector.testing import SyncClient
from tamperscope.explorer.headers import not_modified


@pytest.fixture(scope="module")
def client(three_sites: SyncClient) -> SyncClient:
    return three_sites


@pytest.mark.parametrize(("header", "matches"), [
    ('"abc"', True), ('W/"abc"', True), ('"x", "abc"', True), ('"x",W/"abc"', True), ("*", True),
    (' , "x", , "abc" ', True), ('"a,b", "abc"', True),
    (None, False), ("", False), ('"x"', False), ('"x", "y"', False), ("abc", False), ('"abc', False),
    ('"x" junk, "abc"', False),
])
def test_if_none_match_is_compared_weakly_over_a_list(header: str | None, matches: bool) -> None:
    assert not_modified(header, '"abc"') is matches
    assert not_modified(header, 'W/"abc"') is matches  # weak comparison: either side may be weak


@pytest.mark.parametrize("path", ["/feed.atom", "/changes.atom", "/findings.atom", "/static/explorer.css"])
def test_a_poller_gets_304_for_any_form_of_the_tag(client: SyncClient, path: str) -> None:
    first = client.get(path)
    assert first.status_code == 200
    etag = first.headers["etag"]
    for header in (etag, f"W/{etag}", f'"other", {etag}', f'W/"other", W/{etag}', "*"):
        again = client.get(path, headers={"If-None-Match": header})
        assert again.status_code == 304, (path, header)
        assert again.headers["etag"] == etag and again.content == b""
    assert client.get(path, headers={"If-None-Match": '"other"'}).status_code == 200


@pytest.mark.parametrize("path", ["/", "/index.json", "/feed.atom", "/changes.atom", "/search?outcome=anomaly",
                                  "/country/IT", "/api/v1/measurements", "/api/v1/health", "/static/explorer.css",
                                  "/api/v1/aggregation/timeline?format=csv", "/nowhere", "/search.json?limit=-1"])
def test_head_answers_as_get_does_without_a_body(client: SyncClient, path: str) -> None:
    got = client.get(path)
    head = client.request("HEAD", path)
    assert head.status_code == got.status_code, path
    assert head.content == b""
    for name in ("content-type", "etag", "content-security-policy", "cache-control", "content-disposition"):
        assert head.headers.get(name) == got.headers.get(name), (path, name)
    if path not in ("/api/v1/measurements", "/api/v1/health"):  # their bodies say how long they took
        assert head.headers.get("content-length") == got.headers.get("content-length"), path


def test_head_of_a_streamed_export_sends_its_headers_and_frees_its_slot(client: SyncClient) -> None:
    for _ in range(3):  # one export per client address at once: a HEAD that kept its slot would make the next 429
        head = client.request("HEAD", "/api/v1/export/measurements.csv")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-disposition"] == 'attachment; filename="measurements.csv"'
    assert client.get("/api/v1/export/measurements.csv").status_code == 200


def test_head_is_no_way_around_a_post_only_route(client: SyncClient) -> None:
    head = client.request("HEAD", "/report")
    assert head.status_code == client.get("/report").status_code == 405


def test_an_empty_feed_keeps_its_tag_as_time_passes(client: SyncClient) -> None:
    """An empty feed's <updated> is the time it is asked for: its tag changed every second, so a poller never got
    a 304 (and the test above failed when its requests spanned a second)."""
    import time

    first = client.get("/changes.atom?domain=nothing-here.example")
    assert first.status_code == 200 and b"<entry>" not in first.content
    time.sleep(1.1)
    again = client.get("/changes.atom?domain=nothing-here.example", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
