"""Absolute links (the API's next_url and measurement_url, the feeds' ids and links) are made from the request's
Host header, which any client sets: through a shared cache, one client's Host would be every reader's links.
``serve --public-url`` names the server's own address, and then no request changes them."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from xml.etree import ElementTree

from tamperscope.collector import samples
from tamperscope.collector.config import Settings
from tamperscope.collector.testing import SyncClient, running_app

PUBLIC = "https://explorer.example.org"
EVIL = {"Host": "evil.example"}
A = "{http://www.w3.org/2005/Atom}"


def _links(client: SyncClient) -> list[str]:
    """Every absolute URL one listing page and the feed give a client that says it is evil.example."""
    listing = client.get("/api/v1/measurements", params={"limit": 1}, headers=EVIL).json()
    urls = [listing["metadata"]["next_url"]]
    urls += [r[k] for r in listing["results"] for k in ("measurement_url", "explorer_url")]
    feed = ElementTree.fromstring(client.get("/feed.atom", headers=EVIL).content)
    urls += [str(e.text) for e in feed.iter(f"{A}id")]
    urls += [str(e.get("href")) for e in feed.iter(f"{A}link")]
    assert len(urls) >= 8, urls
    return urls


def _app(tmp_path: Path, public_url: str | None = None) -> AbstractContextManager[SyncClient]:
    return running_app(Settings(db_path=tmp_path / "p.duckdb", announce=False, submit_rate=0, read_rate=0,
                                public_url=public_url))


def test_links_follow_the_host_header_without_public_url(tmp_path: Path) -> None:
    with _app(tmp_path) as c:
        for i in range(2):
            c.submit(samples.measurement("dns.poison", url=f"https://p{i}.example/", start="2026-05-01 00:00:00"))
        links = _links(c)
    assert all(u.startswith("http://evil.example/") for u in links if u.startswith("http")), links


def test_public_url_makes_every_absolute_link(tmp_path: Path) -> None:
    with _app(tmp_path, PUBLIC) as c:
        for i in range(2):
            c.submit(samples.measurement("dns.poison", url=f"https://p{i}.example/", start="2026-05-01 00:00:00"))
        links = _links(c)
    absolute = [u for u in links if "://" in u]
    assert absolute and all(u.startswith(PUBLIC + "/") for u in absolute), links
    assert not any("evil.example" in u for u in links)
