"""Explorer pages in-process: every page renders and has a JSON twin, everything is escaped, the CSP
forbids inline script, captured pages are sandboxed, and evidence is three clicks from home."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest

from tamperscope.collector import samples
from tamperscope.collector.config import Settings
from tamperscope.collector.testing import SyncClient, running_app
from tamperscope.explorer.headers import CSP

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncClient]:
    db = tmp_path_factory.mktemp("explorer") / "e.duckdb"
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0)) as c:
        ms = [*samples.corpus(80, seed="explorer"), *samples.hostile()]
        out = c.post("/api/v1/submit", content=b"\n".join(orjson.dumps(m) for m in ms)).json()
        assert out["stored"] == len(ms), out
        c.hostile_uids = [r["measurement_uid"] for r in out["results"][-2:]]  # type: ignore[attr-defined]
        yield c


class Links(HTMLParser):
    """Collects hrefs, script tags, event-handler attributes and the JSON twin link."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.scripts: list[dict[str, str | None]] = []
        self.handlers: list[tuple[str, str]] = []
        self.twin: str | None = None
        self.iframes: list[dict[str, str | None]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "a" and a.get("href"):
            self.hrefs.append(str(a["href"]))
        if tag == "script":
            self.scripts.append(a)
        if tag == "iframe":
            self.iframes.append(a)
        if tag == "link" and a.get("rel") == "alternate" and a.get("type") == "application/json":
            self.twin = a.get("href")
        for name, _ in attrs:
            if name.startswith("on"):
                self.handlers.append((tag, name))


def parse(html: str) -> Links:
    p = Links()
    p.feed(html)
    return p


def pages(client: SyncClient) -> list[str]:
    uid = client.hostile_uids[0]  # type: ignore[attr-defined]
    return ["/", "/country/RU", "/network/AS12389", "/domain/evil.example", "/domain/www.example.com",
            f"/m/{uid}", f"/m/{client.hostile_uids[1]}", "/search", "/search?probe_cc=RU&outcome=anomaly",  # type: ignore[attr-defined]
            "/api"]


def test_a_host_that_cannot_be_one_gets_no_domain_page(client: SyncClient) -> None:
    """The hostile sample's URL is https://<svg onload=...>.example/: no domain is derived from it (its
    measurement page shows the URL, escaped), and asking for that domain is an escaped 404."""
    r = client.get("/domain/%3Csvg%20onload%3Dwindow.__pwned%3D1%3E.example")
    assert r.status_code == 404 and "<svg" not in r.text
    assert "&lt;svg onload" in client.get(f"/m/{client.hostile_uids[1]}").text  # type: ignore[attr-defined]


def test_every_page_renders_with_its_json_twin(client: SyncClient) -> None:
    for path in pages(client):
        r = client.get(path)
        assert r.status_code == 200, (path, r.text[:300])
        assert r.headers["content-type"].startswith("text/html")
        html = parse(r.text)
        assert html.twin, path
        twin = client.get(html.twin)
        assert twin.status_code == 200, (path, html.twin)
        assert twin.headers["content-type"].startswith("application/json")
        data = twin.json()
        assert isinstance(data, dict) and data


def test_twins_carry_what_the_page_shows(client: SyncClient) -> None:
    home = client.get("/index.json").json()
    assert home["page"] == "home" and home["totals"]["measurement_count"] == 82
    assert {"recent_anomalies", "countries", "networks", "domains", "mechanisms", "charts"} <= set(home)
    html = client.get("/").text
    for d in home["domains"][:5]:
        assert f'href="/domain/{d["domain"]}"' in html
    assert home["tests"] and all(t["search"].startswith("/search?test_name=") for t in home["tests"])
    for t in home["tests"]:
        assert f'href="{t["search"].replace("&", "&amp;")}"' in html and t["checks"] in html
    ru = client.get("/country/RU.json").json()
    assert ru["tests"] and all("probe_cc=RU" in t["search"] for t in ru["tests"])
    ru_html = client.get("/country/RU").text
    assert 'id="tests"' in ru_html and ru["tests"][0]["test_name"] in ru_html
    found = client.get(ru["tests"][0]["search"].replace("/search?", "/search.json?")).json()["results"]
    assert found and {(r["test_name"], r["probe_cc"]) for r in found} == {(ru["tests"][0]["test_name"], "RU")}
    assert ru["page"] == "country" and {"networks", "domains", "signatures", "hops", "mechanisms"} <= set(ru)
    assert ru["charts"]["timeline"]["data"] and ru["signatures"] and ru["hops"]
    net = client.get("/network/12389.json").json()
    assert net["page"] == "network" and net["key"] == "AS12389" and net["network_name"]
    dom = client.get("/domain/www.example.com.json").json()
    assert dom["page"] == "domain" and dom["networks"]
    search = client.get("/search.json?probe_cc=RU&outcome=anomaly").json()
    assert set(search) == {"metadata", "results"} and all(r["anomaly"] for r in search["results"])
    m = client.get(f"/m/{client.hostile_uids[0]}.json").json()  # type: ignore[attr-defined]
    assert m["page"] == "measurement" and m["evidence"]["verdict"]["mechanism"] == "http.blockpage"
    # OONI's own words for its two fields, as the JSON twin has them (the page said "False", Python's)
    verdict = m["evidence"]["verdict"]
    page = client.get(f"/m/{client.hostile_uids[0]}").text  # type: ignore[attr-defined]
    assert verdict["accessible"] is False and "<dt>Accessible</dt><dd>false</dd>" in page
    assert f"<dt>Blocking</dt><dd>{verdict['blocking']}</dd>" in page


def test_unknown_things_are_404_in_both_forms(client: SyncClient) -> None:
    for path in ("/country/XX", "/network/AS1", "/domain/nowhere.example", "/m/nope", "/no/such/page"):
        r = client.get(path)
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html"), path
        if not path.startswith("/no/"):
            j = client.get(path + ".json")
            assert j.status_code == 404 and j.json()["error"] == "not_found"


RAW_MARKERS = ("<script>window.__pwned", "<img src=x onerror", "<svg onload", '<iframe src="javascript:',
               "<body onload")


def test_hostile_content_is_escaped_everywhere(client: SyncClient) -> None:
    for path in pages(client):
        text = client.get(path).text
        for marker in RAW_MARKERS:
            assert marker not in text, (path, marker)
        html = parse(text)
        assert html.handlers == [], (path, html.handlers)
        assert all(s.get("src", "").startswith("/static/") for s in html.scripts), path  # type: ignore[union-attr]
        assert all(not href.lower().startswith("javascript:") for href in html.hrefs), path
    page = client.get(f"/m/{client.hostile_uids[0]}").text  # type: ignore[attr-defined]
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page  # shown, as text


def test_csp_and_security_headers_on_everything(client: SyncClient) -> None:
    uid = client.hostile_uids[0]  # type: ignore[attr-defined]
    for path in [*pages(client), "/index.json", "/api/v1/measurements", f"/api/v1/measurement/{uid}",
                 "/static/explorer.js", "/openapi.json", "/nope"]:
        r = client.get(path)
        csp = r.headers["content-security-policy"]
        assert csp == CSP, path
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
    directives = dict(d.strip().split(" ", 1) for d in CSP.split(";"))
    assert directives["script-src"] == "'self'" and directives["default-src"] == "'none'"
    assert "unsafe" not in CSP and "http" not in CSP  # no inline, no eval, no CDN


def test_captured_pages_render_only_in_a_sandbox(client: SyncClient) -> None:
    uid = client.hostile_uids[0]  # type: ignore[attr-defined]
    page = parse(client.get(f"/m/{uid}").text)
    assert page.iframes and all(f.get("sandbox") == "" for f in page.iframes)
    src = page.iframes[0]["data-src"]
    assert src == f"/m/{uid}/body/0"
    r = client.get(src)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert csp.startswith("sandbox;") and "script-src" not in csp and "default-src 'none'" in csp
    assert r.headers["x-frame-options"] == "SAMEORIGIN"
    assert "<script>window.__pwned" in r.text  # served as captured, inert under the sandbox
    assert client.get(f"/m/{uid}/body/9").status_code == 404


def test_plotly_is_served_offline_and_cached(client: SyncClient) -> None:
    home = parse(client.get("/").text)
    assert [s["src"] for s in home.scripts] == ["/static/plotly.min.js", "/static/explorer.js"]
    r = client.get("/static/plotly.min.js", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and len(r.content) > 1_000_000 and b"plotly" in r.content[:2000].lower()
    again = client.get("/static/plotly.min.js", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304
    assert client.get("/static/../pages.py").status_code == 404
    assert client.get("/static/nothing.js").status_code == 404


def test_pages_are_built_for_small_screens(client: SyncClient) -> None:
    html = client.get("/").text
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    css = client.get("/static/explorer.css").text
    assert ".scroll { overflow-x: auto" in css and "@media" in css
    # tables as cards: on a phone by the sheet's media query (explorer.js widens it to the tables that overflow)
    assert '<link rel="stylesheet" href="/static/cards.css" media="(max-width: 40rem)" id="cards">' in html
    cards = client.get("/static/cards.css")
    assert cards.status_code == 200 and cards.headers["content-type"].startswith("text/css")
    assert ".scroll:not(.fits) thead { display: none; }" in cards.text


def test_search_filters(client: SyncClient) -> None:
    html = client.get("/search?probe_cc=RU&mechanism=tcp.drop").text
    assert 'option value="RU" selected' in html and 'option value="tcp.drop" selected' in html
    data = client.get("/search.json?probe_cc=RU&mechanism=tcp.drop").json()
    assert data["results"] and all(r["probe_cc"] == "RU" and r["mechanism"] == "tcp.drop" for r in data["results"])
    bad = client.get("/search?since=yesterday")
    assert bad.status_code == 400 and "since" in bad.text
    paged = client.get("/search.json?limit=10&page=2").json()
    assert paged["metadata"]["offset"] == 10


def test_evidence_is_three_clicks_from_home(client: SyncClient) -> None:
    """Home → a blocked site → one of its anomalous measurements → the evidence (two clicks here)."""
    home = parse(client.get("/").text)
    domains = [h for h in home.hrefs if h.startswith("/domain/")]
    assert domains
    first = domains[0]
    domain_page = parse(client.get(first).text)
    evidence = [h for h in domain_page.hrefs if h.startswith("/m/")]
    assert evidence
    page = client.get(evidence[0]).text
    assert "Verdict" in page and 'id="mechanism"' in page
    mech = re.search(r'id="mechanism">([^<]+)<', page)
    assert mech and mech.group(1) != "none"
    assert urlsplit(first).path.startswith("/domain/")


def test_home_and_each_area_link_a_report_of_what_they_show(client: SyncClient) -> None:
    """The HTML report, narrowed as the page is: the same measurement count as the page's lead line."""
    home = parse(client.get("/").text)
    assert "/api/v1/export/report.html" in home.hrefs
    for kind, word in (("country", "country"), ("network", "network"), ("domain", "site")):
        page_path = next(p for p in pages(client) if p.startswith(f"/{kind}/"))
        page = parse(client.get(page_path).text)
        links = [h for h in page.hrefs if h.startswith("/api/v1/export/report.html?")]
        assert len(links) == 1, (page_path, links)
        count = client.get(page_path + ".json").json()["totals"]["measurement_count"]
        report = client.get(links[0])
        assert report.status_code == 200 and report.headers["content-disposition"].startswith("attachment")
        assert re.search(rf"<p class='selection'>Only {word} ", report.text), links[0]
        summary = report.text.split("<p class='summary'>", 1)[1][:300]
        assert f" {count:,} measurement" in summary, (page_path, summary)


def _one_page(tmp_path_factory: pytest.TempPathFactory, m: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``m`` submitted to a collector of its own: its measurement page, and the page's JSON twin."""
    db = tmp_path_factory.mktemp("one") / "s.duckdb"
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0)) as c:
        out = c.post("/api/v1/submit", content=orjson.dumps(m)).json()
        assert out["stored"] == 1, out
        uid = out["results"][0]["measurement_uid"]
        return c.get(f"/m/{uid}").text, c.get(f"/m/{uid}.json").json()


def test_a_tor_measurement_shows_its_targets(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tor's records sit under ``targets``: the page lists them, their results, and escapes their names."""
    evil = "<img src=x onerror=window.__pwned=1>"
    m = {"test_name": "tor", "test_version": "0.4.0", "measurement_start_time": "2024-03-01 10:00:00",
         "probe_cc": "TM", "probe_asn": "AS20661", "input": None, "report_id": "20240301T100000Z_tor_TM_AS20661_x",
         "software_name": "ooniprobe", "software_version": "3.20.0",
         "test_keys": {"targets": {
             "128.31.0.39:9101": {"target_protocol": "or_port_dirauth", "target_address": "128.31.0.39:9101",
                                  "failure": "connection_reset"},
             evil: {"target_protocol": "obfs4", "target_address": "192.95.36.142:443", "failure": "connection_reset"},
             "128.31.0.39:9131": {"target_protocol": "dir_port", "target_address": "128.31.0.39:9131",
                                  "target_name": "moria" + evil, "failure": "http_request_failed",
                                  "x_consensus": False}}}}
    page, twin = _one_page(tmp_path_factory, m)
    assert 'id="targets"' in page and "or_port_dirauth" in page and "connection_reset" in page
    assert evil not in page and "&lt;img src=x" in page
    assert "128.31.0.39:9131 (moria&lt;img src=x" in page  # its name beside its id, as text
    assert "http_request_failed: it answered, with something other than a consensus" in page
    assert [t["state"] for t in twin["evidence"]["targets"]] == ["failed", "failed", "failed"]
    assert twin["evidence"]["verdict"]["mechanism"] == "tls.rst"  # no connect record: the reset is put at TLS


def test_a_riseupvpn_measurement_shows_its_api_and_gateways(tmp_path_factory: pytest.TempPathFactory) -> None:
    """riseupvpn's gateways: each one's connect and first exchange, a handshake reset after a good connect said in
    words, the hostile host name escaped."""
    evil = "<img src=x onerror=window.__pwned=1>"
    gateway = {"ip": "198.18.9.1", "port": 1194, "transport_type": "openvpn", "host": evil, "location": "lab",
               "failure": "connection_reset", "split": {"connect": None, "handshake": None},
               "summary": {"connect": {"failure": None}, "handshake": {"failure": "connection_reset"}}}
    m = {"test_name": "riseupvpn", "test_version": "0.1.0", "measurement_start_time": "2024-03-01 10:00:00",
         "probe_cc": "RU", "probe_asn": "AS12389", "input": None,
         "report_id": "20240301T100000Z_riseupvpn_RU_AS12389_x",
         "software_name": "tamperscope", "software_version": "0.1.0",
         "test_keys": {"api_status": "ok", "api_failure": None, "ca_cert_status": True,
                       "transport_status": {"openvpn": "blocked", "obfs4": "ok"},
                       "failing_gateways": [{"ip": "198.18.9.1", "port": 1194, "transport_type": "openvpn"}],
                       "x_gateways": [gateway, {**gateway, "transport_type": "obfs4", "port": 23042, "host": None,
                                                "split": None,
                                                "failure": None, "summary": {"connect": {"failure": None},
                                                                             "handshake": {"failure": None}}},
                                      {"ip": "198.18.9.1", "port": 1194, "transport_type": "openvpn",
                                       "protocol": "udp", "host": None, "failure": "generic_timeout_error",
                                       "summary": {"handshake": {"failure": "generic_timeout_error"}}}]}}
    page, twin = _one_page(tmp_path_factory, m)
    assert 'id="vpn"' in page and "openvpn: <span class=\"fail\">blocked</span>" in page
    assert "connection_reset: the connect succeeded, and what followed failed; split in two TCP segments: " \
           "<strong>it got through</strong>" in page
    assert evil not in page and "(&lt;img src=x" in page
    # over UDP: no connect to speak of, and a timeout is not "the connect succeeded"
    assert "openvpn over UDP</td>" in page and '<td class="muted" data-label="TCP connect">none (UDP)</td>' in page
    assert "generic_timeout_error: the connect succeeded" not in page
    vpn = twin["evidence"]["vpn"]
    assert [(g["address"], g["transport"], g["connect"], g["handshake"], g["split"]) for g in vpn["gateways"]] == [
        ("198.18.9.1:1194", "openvpn", None, "connection_reset", {"connect": None, "handshake": None}),
        ("198.18.9.1:23042", "obfs4", None, None, None),
        ("198.18.9.1:1194", "openvpn", None, "generic_timeout_error", None)]
    assert twin["evidence"]["verdict"]["mechanism"] == "tcp.rst"


def test_area_pages_say_what_changed(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A site fine twice then poisoned twice on one network shows as 'blocked since' on its country's,
    network's and domain's pages, with links; a site with one anomaly among fine ones does not."""
    db = tmp_path_factory.mktemp("changes") / "e.duckdb"
    series = [("ok", "00"), ("ok", "01"), ("dns.poison", "02"), ("dns.poison", "03")]
    ms = [samples.measurement(s, url="https://changes.example/", probe_cc="IR", probe_asn="AS197207",
                              start=f"2026-05-03 10:{m}:00", report_id=f"c{m}") for s, m in series]
    ms += [samples.measurement(s, url="https://steady.example/", probe_cc="IR", probe_asn="AS197207",
                               start=f"2026-05-03 11:{m}:00", report_id=f"s{m}")
           for s, m in (("ok", "00"), ("dns.poison", "01"), ("ok", "02"))]
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0)) as c:
        out = c.post("/api/v1/submit", content=b"\n".join(orjson.dumps(m) for m in ms)).json()
        assert out["stored"] == len(ms), out
        for path in ("/country/IR", "/network/AS197207", "/domain/changes.example"):
            page = c.get(path + ".json").json()
            assert [(x["change"], x["domain"], x["since"], x["before"], x["measurements"], x["mechanism"],
                     x["ongoing"]) for x in page["changes"]] == [
                ("blocked", "changes.example", "2026-05-03T10:02:00", "2026-05-03T10:01:00", 2, "dns.poison", True)]
            html = c.get(path).text
            section = html.split('id="changes"', 1)[1].split("</section>", 1)[0]
            assert "2026-05-03 10:02" in section and 'href="/domain/changes.example"' in section
            assert "steady.example" not in section
            found = c.get(page["changes"][0]["search"].replace("/search?", "/search.json?")).json()["results"]
            assert {r["input"] for r in found} == {"https://changes.example/"} and len(found) == 4
        assert "changes" not in c.get("/index.json").json()  # the whole store's is the report's job
        assert c.get("/domain/steady.example.json").json()["changes"] == []


def test_an_anomaly_no_technique_explains_is_shown_as_unexplained(tmp_path_factory: pytest.TempPathFactory) -> None:
    """OONI's broken-redirect sample is an anomaly (http-failure) that no censorship technique explains:
    mechanism "none" in the data, which the pages show as "unexplained" (a blocked domain whose mechanism
    read "none" looked unblocked). The JSON twins keep the data's word."""
    sample = SAMPLES / "redirectWithBrokenLocationForHTTP" / "measurement.json"
    m = orjson.loads(sample.read_bytes())
    ms = [dict(m, report_id=f"r{i}", measurement_start_time=f"2024-02-12 10:0{i}:00") for i in range(2)]
    db = tmp_path_factory.mktemp("unexplained") / "e.duckdb"
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0)) as c:
        out = c.post("/api/v1/submit", content=b"\n".join(orjson.dumps(x) for x in ms)).json()
        assert out["stored"] == 2, out
        home = c.get("/index.json").json()
        assert [(x["mechanism"], x["measurement_count"]) for x in home["mechanisms"]] == [("none", 2)]
        domain = home["domains"][0]["domain"]
        assert home["domains"][0]["top_mechanism"] == "none"
        for path in ("/", f"/domain/{domain}", f"/country/{m['probe_cc']}"):
            html = c.get(path).text
            cells = re.findall(r'<td(?: data-label="[^"]*")?>([^<]*)</td>', html)
            assert "unexplained" in cells and "none" not in cells, path
        chart = orjson.loads(re.search(r'id="chart-mechanisms" data-chart="([^"]*)"', c.get("/").text)
                             .group(1).replace("&#34;", '"').replace("&quot;", '"'))  # type: ignore[union-attr]
        assert chart["data"][0]["y"] == ["unexplained"]


def test_a_remote_measurement_says_it_was_made_from_outside(tmp_path: Path) -> None:
    """tamperscope remote's measurements: the page says the network is the vantage's, and what each connection
    was for; a hostile vantage string is shown as text."""
    base = next(samples.corpus(1, seed="remote"))
    tk = {"vantage": "198.18.1.80", "x_mechanism": "http.rst", "blocking": "http-failure", "accessible": False,
          "tcp_connect": [{"ip": "198.18.1.80", "port": 80, "status": {"failure": None, "success": True},
                           "t0": 0.1, "t": 0.2, "tags": ["http", "vantage_before"], "transaction_id": 1},
                          {"ip": "198.18.1.80", "port": 80, "status": {"failure": None, "success": True},
                           "t0": 0.3, "t": 0.4, "tags": ["http", "test"], "transaction_id": 2}],
          "requests": [{"failure": "connection_reset", "request": {"url": "http://rst.example/"},
                        "response": {"body": "", "code": 0, "headers": {}}, "t0": 0.4, "t": 0.5,
                        "tags": ["http", "test"], "transaction_id": 2}]}
    good = {**base, "test_name": "remote_web", "input": "rst.example", "test_keys": tk}
    bad = {**base, "test_name": "remote_dns", "input": "x.example", "report_id": base["report_id"] + "x",
           "test_keys": {"vantage": "<script>window.__pwned=1</script>", "tcp_connect": [
               {"ip": "198.18.1.53", "port": 443, "status": {"success": True}, "tags": ["<b>", 7, "test"]}]}}
    with running_app(Settings(db_path=tmp_path / "r.duckdb", announce=False, submit_rate=0, read_rate=0)) as c:
        out = c.post("/api/v1/submit", content=b"\n".join(orjson.dumps(m) for m in (good, bad))).json()
        assert out["stored"] == 2, out
        uid_good, uid_bad = (r["measurement_uid"] for r in out["results"])
        page = c.get(f"/m/{uid_good}").text
        assert "from outside the country, through a web server in this network" in page and "198.18.1.80" in page
        assert "<th>Role</th>" in page and "http vantage_before" in page and "http test" in page
        hostile = c.get(f"/m/{uid_bad}").text
        assert "through a resolver" in hostile and "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in hostile
        assert "<script>window.__pwned" not in hostile and "<b>" not in hostile.split('id="remote"', 1)[1]


def test_an_evasion_measurement_shows_its_attempts(tmp_path: Path) -> None:
    """The evasion nettest's attempts, each judged again from its records (the probe's claims are shown only
    where they differ): each strategy's outcome, with what it does and what its getting through says from our
    catalogue; a hostile strategy name is text, and says nothing; an attempt without records says so."""
    from tests.unit.test_evasion import _records

    base = next(samples.corpus(1, seed="evasion"))
    evil = "<script>window.__pwned=1</script>"
    page_body = "<title>Example</title>" + "x" * 978
    attempts = [{"strategy": "tls-segments", "outcome": "blocked", "status_code": None, "failure": None,
                 "step": None, "transaction_id": 1},
                {"strategy": evil, "outcome": "ok", "status_code": "<b>", "failure": evil, "step": "tls",
                 "transaction_id": 9},
                {"strategy": "plain", "outcome": "blocked", "status_code": None, "failure": "connection_reset",
                 "step": "tls", "transaction_id": 3}]
    records = _records((1, None, None, 200, page_body), (3, None, "connection_reset", 0, ""))
    m = {**base, "test_name": "evasion", "input": "https://www.evade-me.example/",
         "test_keys": {"x_evasion": {"address": "198.19.0.5:443", "address_source": "dns", "attempts": attempts,
                                     "residual_waits": [4.1, evil]},
                       "control": {"http_request": {"status_code": 200, "failure": None, "body_length": 1000,
                                                    "title": "Example"}},
                       **records}}
    with running_app(Settings(db_path=tmp_path / "e.duckdb", announce=False, submit_rate=0, read_rate=0)) as c:
        out = c.post("/api/v1/submit", content=orjson.dumps(m)).json()
        assert out["stored"] == 1, out
        uid = out["results"][0]["measurement_uid"]
        page = c.get(f"/m/{uid}").text
        twin = c.get(f"/m/{uid}.json").json()
    section = page.split('id="evasion"', 1)[1].split("</section>", 1)[0]
    assert "the ClientHello in two TCP segments, cut inside the SNI" in section
    assert "does not reassemble TCP segments before reading the SNI" in section  # its records: the page came
    assert "connection_reset" in section and "4.1 s" in section
    assert evil not in page and "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in section
    rows = twin["evidence"]["evasion"]["attempts"]
    assert [(r["outcome"], r["written"]) for r in rows] == [("ok", "blocked"), ("no records", "ok"),
                                                            ("blocked", None)]
    assert section.count("(the probe wrote") == 2
    assert [r["says"] for r in rows][1:] == ["", ""] and rows[1]["status_code"] is None
    # the analysis judges the same way: tls-segments got the page the plain request did not
    assert twin["evidence"]["verdict"]["mechanism"] == "tls.rst"


def test_a_blocking_rules_measurement_says_each_layers_rule(tmp_path: Path) -> None:
    """The blocking_rules nettest's layers, each probe judged again from its records (the probe claimed every
    layer not_blocked; the page says what the records show, and that the probe wrote otherwise): each rule in
    our words, each probe's name and outcome; hostile names, keywords and hosts are text, a layer we do not
    know is not shown."""
    from tests.unit.test_blocking_rules import HOST, LIE, SALT, SITE, measurement_with_path, query

    base = next(samples.corpus(1, seed="rules"))
    evil = "<script>window.__pwned=1</script>"
    named = f"{SALT}{evil}{HOST}"
    rules_m = measurement_with_path()
    tk = rules_m["test_keys"]
    tk["x_blocking_rules"]["layers"]["dns"]["probes"][3]["name"] = named  # the prefixed probe, caught too
    tk["queries"][3] = query(4, LIE, name=named)
    tk["x_blocking_rules"]["layers"]["http"]["rule"] = evil
    tk["x_blocking_rules"]["layers"][evil] = {"rule": "exact"}
    tk["x_blocking_rules"]["layers"]["dns_path"]["rule"] = "domain_and_subdomains"  # as the records say
    m = {**base, **rules_m, "test_version": "0.1.0"}
    with running_app(Settings(db_path=tmp_path / "r.duckdb", announce=False, submit_rate=0, read_rate=0)) as c:
        out = c.post("/api/v1/submit", content=orjson.dumps(m)).json()
        assert out["stored"] == 1, out
        uid = out["results"][0]["measurement_uid"]
        page = c.get(f"/m/{uid}").text
    section = page.split('id="rules"', 1)[1].split("</section>", 1)[0]
    assert "HTTP: substring" in section and "containing &#39;ock&#39; are blocked" in section
    assert "TLS: ends_with" in section and f"{SALT}{HOST}" in section and "connection_reset" in section
    assert "DNS: ends_with" in section  # the made-up name caught too: no left anchor
    assert SITE in section
    # what the probe wrote, where its records say otherwise (and only there)
    assert section.count("The probe wrote") == 3 and "The probe wrote <code>undetermined</code>" in section
    assert "DNS on the path: domain_and_subdomains" in section
    assert f"a device on the path forges DNS answers for {HOST} and any of its subdomains" in section
    assert evil not in page and f"{SALT}&lt;script&gt;window.__pwned=1&lt;/script&gt;{HOST}" in section
    assert section.index("DNS on the path") < section.index("TLS: ends_with")  # in LAYERS order
    assert section.count("<h3>") == 4  # a layer we do not know is not shown


def test_a_listed_measurement_of_another_test_than_web_connectivity_names_its_test(tmp_path: Path) -> None:
    """A site's row in a list (recent anomalies, search) reads as a web_connectivity measurement of it; one made by
    another test (blocking_rules here: "tiktok.com, dns.injection" in the demo) names that test after its input."""
    from tests.unit.test_blocking_rules import HOST, measurement_with_path

    base, web = samples.corpus(2, seed="named")
    rules = {**base, **measurement_with_path(), "test_version": "0.1.0"}
    with running_app(Settings(db_path=tmp_path / "n.duckdb", announce=False, submit_rate=0, read_rate=0)) as c:
        out = c.post("/api/v1/submit", content=orjson.dumps(rules) + b"\n" + orjson.dumps(web)).json()
        assert out["stored"] == 2, out
        listed = c.get("/search").text
    rows = re.findall(r"<tr>.*?</tr>", listed, re.S)
    rules_row = next(r for r in rows if f">{HOST}</a>" in r and "blocking_rules" in r)
    assert re.search(rf'<span class="muted">[^<]*{re.escape(HOST)}[^<]* · blocking_rules</span>', rules_row)
    web_rows = [r for r in rows if "evidence-link" in r and "blocking_rules" not in r]
    assert len(web_rows) == 1 and "web_connectivity" not in web_rows[0]  # the default goes unsaid


def test_echo_exchanges_and_ech_handshakes_are_shown_in_our_words(tmp_path: Path) -> None:
    """remote_web's echo exchanges (Quack) list what was sent, read from the bytes (a GET or a ClientHello and
    the name it carried) and what came back; hostile bytes back are escaped text, binary ones a length.
    echcheck's handshakes say which is the control and which carried ECH, and that a ServerHello came."""
    import base64

    from tamperscope.wire.tlshello import client_hello, client_hello_with_ech

    base = next(samples.corpus(1, seed="echo"))
    evil = "<script>window.__pwned=1</script>"
    get = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
    hello = {"format": "base64", "data": base64.b64encode(client_hello("page.example")).decode()}
    x_echo = [
        {"transaction_id": 1, "tags": ["echo", "vantage_before"], "sent": get, "received": get, "failure": None},
        {"transaction_id": 2, "tags": ["echo", "test"], "sent": f"GET / HTTP/1.1\r\nHost: {evil}\r\n\r\n",
         "received": f"HTTP/1.1 200 OK\r\n\r\n{evil}", "failure": "echo_mismatch"},
        {"transaction_id": 3, "tags": ["echo_tls", "test"], "sent": hello,
         "received": {"format": "base64", "data": base64.b64encode(b"\x15\x03\x03\x00\x02\x02\x28").decode()},
         "failure": "echo_mismatch"},
        {"transaction_id": 4, "tags": "junk", "sent": 5, "received": [1], "failure": {"x": 1}},
        {"transaction_id": 5, "tags": ["echo_ech", "test"], "failure": "connection_reset", "received": "",
         "sent": {"format": "base64", "data": base64.b64encode(client_hello_with_ech("ech.example")).decode()}},
    ]
    remote = {**base, "test_name": "remote_web", "input": "page.example",
              "test_keys": {"vantage": "198.18.1.80", "protocols": ["echo", "echo_tls"], "x_echo": x_echo}}
    hs = {"address": "198.19.0.5:443", "server_name": "cloudflare-ech.com", "tls_version": "", "cipher_suite": "0x1301",
          "negotiated_protocol": "", "peer_certificates": None, "t0": 0.1, "t": 0.2}
    ech = {**base, "test_name": "echcheck", "input": "https://cloudflare-ech.com/",
           "test_keys": {"control": {**hs, "failure": None, "tags": ["control"], "tls_version": "TLSv1.3"},
                         "target": {**hs, "failure": None, "tags": ["target"], "echconfig": "GREASE",
                                    "x_server_hello": True}}}
    ech["test_keys"]["tls_handshakes"] = [ech["test_keys"]["control"], ech["test_keys"]["target"]]
    with running_app(Settings(db_path=tmp_path / "e.duckdb", announce=False, submit_rate=0, read_rate=0)) as c:
        out = c.post("/api/v1/submit", content=orjson.dumps(remote) + b"\n" + orjson.dumps(ech)).json()
        assert out["stored"] == 2, out
        uid, ech_uid = (r["measurement_uid"] for r in out["results"])
        page, twin = c.get(f"/m/{uid}").text, c.get(f"/m/{uid}.json").json()
        ech_page, ech_twin = c.get(f"/m/{ech_uid}").text, c.get(f"/m/{ech_uid}.json").json()
    section = page.split('id="echo"', 1)[1].split("</section>", 1)[0]
    assert evil not in page and "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in section
    rows = twin["evidence"]["echo"]
    assert [(r["role"], r["sent"], r["name"], r["intact"]) for r in rows] == [
        ("control domain, before", "an HTTP request", "example.com", True),
        ("the domain", "an HTTP request", evil, False),
        ("the domain", "a TLS ClientHello", "page.example", False),
        (None, "an HTTP request", None, False),
        ("the domain", "a TLS ClientHello with Encrypted Client Hello", "ech.example", False)]
    assert rows[1]["received"].endswith(evil) and rows[2]["received"] is None and rows[2]["received_length"] == 7
    assert "the same bytes" in section and "7 bytes, binary" in section
    tls = ech_twin["evidence"]["tls"]
    assert [(h["role"], h["ech"], h["server_hello"]) for h in tls] == [("control", None, False),
                                                                      ("target", "GREASE", True)]
    card = ech_page.split('id="tls"', 1)[1].split("</section>", 1)[0]
    assert "with Encrypted Client Hello (GREASE)" in card and "the server answered with its ServerHello 0x1301" in card
    assert ech_twin["evidence"]["verdict"]["status"] == "ok"


def test_an_ech_target_sealed_with_the_sites_config_shows_its_outer_name_and_the_site_inside(tmp_path: Path) -> None:
    """echcheck 0.2 sends a site's published ECH config: the page says the outer name a censor reads and the
    site sealed inside, both escaped; the config's base64 stays in the raw record."""
    base = next(samples.corpus(1, seed="ech-config"))
    evil = "<img src=x onerror=window.__pwned=1>.example"
    config = "AEX+DQBBKgAgACA" + "A" * 40
    hs = {"address": "198.19.0.5:443", "tls_version": "", "cipher_suite": "0x1301", "negotiated_protocol": "",
          "peer_certificates": None, "t0": 0.1, "t": 0.2}
    m = {**base, "test_name": "echcheck", "input": "https://crypto.cloudflare.com/",
         "test_keys": {"control": {**hs, "server_name": "crypto.cloudflare.com", "failure": None, "tags": ["control"],
                                   "tls_version": "TLSv1.3"},
                       "target": {**hs, "server_name": evil, "outer_server_name": "cloudflare-ech.com",
                                  "failure": "generic_timeout_error", "tags": ["target"], "echconfig": config,
                                  "x_server_hello": False}}}
    m["test_keys"]["tls_handshakes"] = [m["test_keys"]["control"], m["test_keys"]["target"]]
    m["test_keys"]["queries"] = [
        {"query_type": "HTTPS", "tags": ["ech_config"], "engine": "doh", "resolver_address": "https://d.example/q",
         "failure": None, "answers": [{"answer_type": "HTTPS", "hostname": ".", "ttl": 60, "x_ech": config}]},
        {"query_type": "HTTPS", "tags": ["ech_config_plain"], "engine": "udp", "resolver_address": "8.8.8.8:53",
         "failure": "dns_no_answer", "answers": None}]
    m["test_keys"]["x_ech_config_stripped"] = {"resolver": "<b>8.8.8.8:53</b>", "failure": "dns_no_answer"}
    with running_app(Settings(db_path=tmp_path / "e.duckdb", announce=False, submit_rate=0, read_rate=0)) as c:
        (uid,) = (r["measurement_uid"] for r in c.post("/api/v1/submit", content=orjson.dumps(m)).json()["results"])
        page, twin = c.get(f"/m/{uid}").text, c.get(f"/m/{uid}.json").json()
        home = c.get("/").text
    # the site's row: echcheck alone saw it, so what was blocked is ECH to it, not the site
    assert "tls.drop, with ECH only" in home
    target = twin["evidence"]["tls"][1]
    assert (target["ech"], target["outer_name"]) == ("the site's published config", "cloudflare-ech.com")
    card = page.split('id="tls"', 1)[1].split("</section>", 1)[0]
    assert "SNI <code>cloudflare-ech.com</code> (the site, <code>&lt;img src=x" in card
    assert "with Encrypted Client Hello (the site&#39;s published config)" in card and config not in card
    assert evil not in page and twin["evidence"]["verdict"]["mechanism"] == "tls.drop"
    assert twin["evidence"]["ech_config"] == {
        "asked": "over DNS-over-HTTPS", "published": True, "outer_name": "cloudflare-ech.com", "failure": None,
        "error": None, "stripped": {"resolver": "<b>8.8.8.8:53</b>", "failure": "dns_no_answer"}}
    section = page.split('id="ech-config"', 1)[1].split("</section>", 1)[0]
    assert "the target's hello was sealed with it" in section and "<b>" not in section
    assert "to <code>&lt;b&gt;8.8.8.8:53&lt;/b&gt;</code>, the record came without its" in section


def _pages(tmp_path: Path, measurements: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """``measurements`` submitted to a collector of their own: each one's page and its JSON twin, in order."""
    with running_app(Settings(db_path=tmp_path / "e.duckdb", announce=False, submit_rate=0, read_rate=0)) as c:
        out = c.post("/api/v1/submit", content=b"\n".join(orjson.dumps(m) for m in measurements)).json()
        uids = [r["measurement_uid"] for r in out["results"]]
        return [(c.get(f"/m/{u}").text, c.get(f"/m/{u}.json").json()) for u in uids]


def _words(page: str, section: str) -> str:
    """The text of a page's ``<section id=SECTION>``, its white space made single spaces."""
    return " ".join(page.split(f'id="{section}"', 1)[1].split("</section>", 1)[0].split())


def test_a_stun_measurement_says_whether_the_server_answered(tmp_path: Path) -> None:
    """stunreachability: the server, the answer or the failure, each datagram; hostile values escaped, and the
    lookup's datagrams (another address) left out."""
    base = next(samples.corpus(1, seed="stun"))
    evil = "<img src=x onerror=window.__pwned=1>"
    events = [{"operation": "write_to", "address": "198.19.0.19:3478", "num_bytes": 20, "t": 0.01, "proto": "udp"},
              {"operation": "read_from", "address": "198.19.0.19:3478", "num_bytes": 9, "t": 0.02,
               "x_stun_ignored": True},
              {"operation": "write_to", "address": "8.8.8.8:53", "num_bytes": 40, "t": 0.0},
              {"operation": "write_to", "address": "198.19.0.19:3478", "num_bytes": 20, "t": 0.51}]
    answered = {**base, "test_name": "stunreachability", "input": "stun://stun.example.net:3478",
                "test_keys": {"endpoint": "stun.example.net:3478", "failure": None, "x_address": "198.19.0.19:3478",
                              "x_requests": 2, "x_ignored": 1, "network_events": events, "queries": []}}
    silent = {**base, "test_name": "stunreachability", "input": "stun://198.19.0.19:3478",
              "report_id": base["report_id"] + "x",
              "test_keys": {"endpoint": evil, "failure": f"unknown_failure: {evil}", "x_address": "198.19.0.19:3478",
                            "x_requests": 1, "x_ignored": 0, "network_events": events[:1], "queries": []}}
    (page, twin), (bad_page, bad_twin) = _pages(tmp_path, [answered, silent])
    section = _words(page, "stun")
    assert "(at <code>198.19.0.19:3478</code>) answered: calls and WebRTC can find their way" in section
    assert "2 requests sent; 1 datagram came back that answered none of them." in section
    assert twin["evidence"]["stun"]["events"] == [
        {"operation": "sent", "t": 0.01, "bytes": 20, "ignored": False, "failure": None},
        {"operation": "received", "t": 0.02, "bytes": 9, "ignored": True, "failure": None},
        {"operation": "sent", "t": 0.51, "bytes": 20, "ignored": False, "failure": None}]
    assert twin["evidence"]["verdict"]["status"] == "ok"
    bad = _words(bad_page, "stun")
    assert "was not reached" in bad and "1 request sent" in bad and evil not in bad_page
    assert "&lt;img src=x" in bad and bad_twin["evidence"]["stun"]["answered"] is False
    assert bad_twin["evidence"]["verdict"]["status"] == "anomaly"


def test_a_wireguard_measurement_says_what_the_handshakes_found(tmp_path: Path) -> None:
    """wireguard: the endpoint, the plain handshake's answer, the junk-first retry's (DPI dropped the flow by its
    first datagram when only it got through), both failed, each datagram; hostile values escaped."""
    base = next(samples.corpus(1, seed="wireguard"))
    evil = "<script>window.__pwned=1</script>"
    wg = "198.19.3.40:51820"

    def ev(op: str, n: int, t: float, kind: str, junk: bool = False) -> dict[str, Any]:
        return {"operation": op, "address": wg, "proto": "udp", "num_bytes": n, "t": t, "x_wireguard": kind,
                **({"tags": ["junk"]} if junk else {})}

    timeout = {"failure": "generic_timeout_error", "answer": None, "initiations": 5, "junk": 0, "ignored": 0,
               "t": None}
    answered = {"failure": None, "answer": "response", "initiations": 1, "junk": 0, "ignored": 0, "t": 0.004}
    ok = {"endpoint": wg, "failure": None, "x_address": wg, "x_handshake": answered, "x_junk_first": None,
          "queries": [], "network_events": [ev("write_to", 148, 0.01, "initiation"),
                                            ev("read_from", 92, 0.014, "response")]}
    dpi = {"endpoint": wg, "failure": "generic_timeout_error", "x_address": wg, "x_handshake": timeout,
           "x_junk_first": {**answered, "junk": 3}, "queries": [],
           "network_events": [ev("write_to", 148, 0.0, "initiation"), ev("write_to", 40, 5.0, "junk", True),
                              ev("write_to", 148, 5.001, "initiation", True),
                              ev("read_from", 92, 5.005, "response", True)]}
    down = {"endpoint": evil, "failure": "generic_timeout_error", "x_address": wg,
            "x_handshake": {**timeout, "failure": f"unknown_failure: {evil}", "answer": evil},
            "x_junk_first": {**timeout, "junk": 3}, "queries": [],
            "network_events": [{**ev("write_to", 148, 0.0, "initiation"), "x_wireguard": evil, "tags": [evil]}] * 100}
    ms = [{**base, "test_name": "wireguard", "test_version": "0.1.0", "input": f"wireguard://{wg}",
           "report_id": base["report_id"] + str(i), "test_keys": tk} for i, tk in enumerate((ok, dpi, down))]
    got = _pages(tmp_path, ms)
    sections = [_words(page, "wireguard") for page, _ in got]
    twins = [twin["evidence"] for _, twin in got]
    assert "WireGuard: the handshake" in sections[0] and "No key is recorded" in sections[0]
    assert f"<code class=\"input\">{wg}</code> (at <code>{wg}</code>)." in sections[0]
    assert "The server answered the plain handshake: WireGuard reaches it from this network." in sections[0]
    assert "1 initiation sent; the server&#39;s handshake response came after 0.004 s" in sections[0]
    assert ('<td data-label="Datagram">sent</td> <td data-label="Bytes">148</td> '
            '<td data-label="What it was">handshake initiation</td> <td data-label="Flow">plain</td>') in sections[0]
    assert twins[0]["verdict"]["status"] == "ok" and twins[0]["wireguard"]["dpi"] is False
    assert "DPI dropped the flow by its first datagram" in sections[1]
    assert "a flow begun by junk datagrams got through to the same server with the same keys" in sections[1]
    assert "5 initiations sent; no answer (generic_timeout_error)." in sections[1]
    assert "3 junk datagrams (random bytes no WireGuard message starts with) first, then 1 initiation" in sections[1]
    assert ('<td data-label="What it was">junk (no WireGuard message)</td> <td data-label="Flow">junk-first</td>'
            in sections[1])
    assert twins[1]["wireguard"]["dpi"] is True and twins[1]["verdict"]["mechanism"] == "udp.drop"
    assert "Neither handshake got an answer, the junk-first one included" in sections[2]
    assert "may be down, or blocked by its address" in sections[2]
    assert evil not in got[2][0] and "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in sections[2]
    assert sections[2].count("<tr>") == 1 + 32 and "68 more datagrams in the raw JSON." in sections[2]
    assert twins[2]["wireguard"]["handshake"]["answer"] is None and twins[2]["verdict"]["status"] == "anomaly"
    # Listed, a tool's measurement says which tool above its input (a server, not a site): the input alone,
    # grey, was all a WireGuard row said among RiseupVPN's and Tor's
    with running_app(Settings(db_path=tmp_path / "w.duckdb", announce=False, submit_rate=0, read_rate=0)) as c:
        assert c.post("/api/v1/submit", content=b"\n".join(orjson.dumps(m) for m in ms)).status_code == 200
        pages = [c.get(f"/network/{base['probe_asn']}").text, c.get("/search?test_name=wireguard").text]
    row = f'<span class="app-name">WireGuard</span><br><span class="muted">wireguard://{wg}</span>'
    assert all(row in page for page in pages), pages[0]


def test_an_instant_messaging_measurement_lists_the_apps_services(tmp_path: Path) -> None:
    """telegram, whatsapp, facebook_messenger (ours, or OONI's with "-" keys up to 0.3.0): each service reached
    or blocked with its failure; Messenger's endpoints with their answers' networks. Hostile values escaped."""
    base = next(samples.corpus(1, seed="apps"))
    evil = "<img src=x onerror=window.__pwned=1>"
    fb = {**base, "test_name": "facebook_messenger", "input": None, "test_keys": {
        "facebook_dns_blocking": True, "facebook_tcp_blocking": "yes",
        "facebook_b_api_dns_consistent": False, "facebook_b_api_reachable": None,
        "facebook_star_dns_consistent": True, "facebook_star_reachable": True,
        "queries": [{"hostname": "b-api.facebook.com", "answers": [
                        {"answer_type": "A", "ipv4": "127.0.0.1", "asn": 0, "as_org_name": evil}]},
                    {"hostname": "STAR.c10r.facebook.com.", "answers": [
                        {"answer_type": "A", "ipv4": "157.240.1.35", "asn": 32934, "as_org_name": "FACEBOOK"}]},
                    {"hostname": evil, "answers": [7, {"ipv4": ["x"]}]}, "junk"]}}
    old = {**base, "test_name": "facebook_messenger", "input": None, "report_id": base["report_id"] + "o",
           "test_keys": {"facebook-dns-blocking": False, "facebook-tcp-blocking": True,
                         "facebook-edge-reachable": False}}
    wa = {**base, "test_name": "whatsapp", "input": None, "report_id": base["report_id"] + "w", "test_keys": {
        "whatsapp_endpoints_status": "ok", "registration_server_status": "ok", "whatsapp_web_status": "blocked",
        "whatsapp_web_failure": evil}}
    sig = {**base, "test_name": "signal", "input": None, "report_id": base["report_id"] + "s", "test_keys": {
        "signal_backend_status": "blocked", "signal_backend_failure": "connection_reset",
        "x_backends": {"https://storage.signal.org/": "connection_reset", "https://cdn.signal.org/": None,
                       evil: 7, "https://cdn2.signal.org/": evil}}}
    with running_app(Settings(db_path=tmp_path / "e.duckdb", announce=False, submit_rate=0, read_rate=0)) as c:
        out = c.post("/api/v1/submit", content=b"\n".join(orjson.dumps(m) for m in (fb, old, wa, sig))).json()
        pages = [(c.get(f"/m/{r['measurement_uid']}").text, c.get(f"/m/{r['measurement_uid']}.json").json())
                 for r in out["results"]]
    (fb_page, fb_twin), (_, old_twin), (wa_page, wa_twin), (sig_page, sig_twin) = pages
    ap = fb_twin["evidence"]["apps"]
    assert ap["app"] == "Facebook Messenger"
    assert [r["blocked"] for r in ap["services"]] == [True, None]  # "yes" is no flag
    by = {e["name"]: e for e in ap["endpoints"]}
    assert by["b-api.facebook.com"] == {"name": "b-api.facebook.com", "consistent": False, "reachable": None,
                                        "answers": [{"ip": "127.0.0.1", "asn": 0, "network": evil}]}
    assert by["star.c10r.facebook.com"]["answers"] == [{"ip": "157.240.1.35", "asn": 32934, "network": "FACEBOOK"}]
    assert by["stun.fbsbx.com"] == {"name": "stun.fbsbx.com", "consistent": None, "reachable": None, "answers": []}
    section = " ".join(fb_page.split('id="apps"', 1)[1].split("</section>", 1)[0].split())
    assert "<h2>Facebook Messenger: its services</h2>" in section and evil not in fb_page
    assert "<code>127.0.0.1</code> (AS0 &lt;img src=x" in section
    assert ('<code>157.240.1.35</code> (AS32934 FACEBOOK)</td> <td data-label="Consistent">yes</td> '
            '<td data-label="TCP 443">connected</td>') in section
    old_ap = old_twin["evidence"]["apps"]
    assert [r["blocked"] for r in old_ap["services"]] == [False, True]
    assert {e["name"]: e["reachable"] for e in old_ap["endpoints"]}["edge-mqtt.facebook.com"] is False
    assert [(r["blocked"], r["failure"]) for r in wa_twin["evidence"]["apps"]["services"]] == \
        [(False, None), (False, None), (True, evil)]
    assert evil not in wa_page and "WhatsApp: its services" in wa_page
    assert [(r["service"], r["blocked"], r["failure"]) for r in sig_twin["evidence"]["apps"]["services"]] == [
        ("its servers", True, "connection_reset"), ("https://storage.signal.org/", True, "connection_reset"),
        ("https://cdn.signal.org/", False, None), ("https://cdn2.signal.org/", True, evil)]  # 7 is no failure
    assert evil not in sig_page and ('<td data-label="Service">https://cdn.signal.org/</td><td data-label="Result">'
                                     'reached</td>') in " ".join(sig_page.split())


def test_a_frozen_connection_is_told_from_a_slowed_one(tmp_path: Path) -> None:
    """web_connectivity: a response that started and then stopped dead (16 KB, then 9.5 s of nothing) is named
    tcp.freeze and the request says so in words; one that kept trickling until the timeout stays throttle."""
    base = next(samples.corpus(1, seed="freeze"))
    tk = base["test_keys"]
    request = {**tk["requests"][0], "failure": "generic_timeout_error", "t0": 0.1, "t": 10.1}
    request["response"] = {**request["response"], "code": 200, "body": "<html>" + "x" * 14000}
    tid = request["transaction_id"]

    def reads(times: list[float], size: int) -> list[dict[str, Any]]:
        return [{"operation": "read", "address": request["address"], "proto": "tcp", "num_bytes": size, "t": t,
                 "transaction_id": tid, "failure": None} for t in times]

    def measurement(events: list[dict[str, Any]], report: str) -> dict[str, Any]:
        control = {**tk["control"], "http_request": {**tk["control"]["http_request"], "body_length": 30000}}
        return {**base, "report_id": base["report_id"] + report,
                "test_keys": {**tk, "requests": [request], "network_events": events, "control": control,
                              "http_experiment_failure": "generic_timeout_error"}}

    frozen = measurement(reads([0.3, 0.4, 0.6], 5461), "f")
    slowed = measurement(reads([0.3 + 0.5 * k for k in range(20)], 1400), "s")
    (page, twin), (slow_page, slow_twin) = _pages(tmp_path, [frozen, slowed])
    said = " ".join(page.split())
    assert "The connection carried 16 383 bytes (TLS included) in 3 reads, then not one more for 9.5 s before the " \
           "timeout: <strong>frozen</strong>" in said, said[said.find("The connection"):][:400]
    assert (twin["evidence"]["verdict"]["mechanism"], twin["evidence"]["verdict"]["confidence"]) == ("tcp.freeze", 0.8)
    assert twin["evidence"]["http"]["requests"][0]["stall"] == {"received": 16383, "reads": 3, "silence_s": 9.5,
                                                                "frozen": True}
    assert "froze after a few kilobytes" in said
    slow = " ".join(slow_page.split())
    assert "the last came 0.3 s before the timeout: slowed down, not frozen" in slow
    assert slow_twin["evidence"]["verdict"]["mechanism"] == "throttle"


def test_a_tcp_freeze_measurement_says_both_steps_in_words(tmp_path: Path) -> None:
    """tcp_freeze: the one connection (frozen after 15,070 bytes) and the split (every range came), in words; a
    hostile split's values are escaped and its bad counts left out."""
    base = next(samples.corpus(1, seed="tcp_freeze"))
    evil = "<img src=x onerror=window.__pwned=1>"
    single = {"stage": "http", "requests": 0, "received": 15070, "failure": "generic_timeout_error",
              "closed": False, "silence_s": 9.99, "frozen": True}
    split = {"mode": "range", "connections": 4, "completed": 4, "received": 24170, "failure": None,
             "range_ignored": False}
    good = {**base, "test_name": "tcp_freeze", "input": "https://hetzner.com/",
            "test_keys": {"failure": "generic_timeout_error", "x_address": "198.19.200.1:443",
                          "x_freeze": {"target_bytes": 65536, "single": single, "split": split},
                          "control": {"http_request": {"status_code": 200, "body_length": 15730, "failure": None}},
                          "control_failure": None}}
    bad = {**good, "report_id": base["report_id"] + "x",
           "test_keys": {"failure": evil, "x_freeze": {"single": {**single, "received": "lots", "silence_s": True},
                                                       "split": {**split, "completed": -3, "failure": evil,
                                                                 "range_ignored": True}},
                         "x_address": "198.19.200.1:443",
                         "control": {"tcp_connect": {"198.19.200.1:443": {"status": False, "failure": evil}},
                                     "http_request": {"status_code": "200", "failure": None}}}}
    down = {**good, "report_id": base["report_id"] + "y",
            "test_keys": {**good["test_keys"], "control": None, "control_failure": "connection_refused"}}
    fine = {"stage": "http", "requests": 4, "received": 70211, "failure": None, "closed": False, "silence_s": None,
            "frozen": False}
    unlike = {**good, "report_id": base["report_id"] + "z",
              "test_keys": {**good["test_keys"], "failure": None, "x_freeze": {"single": fine, "split": None},
                            "control": {"http_request": {"status_code": -1, "failure": "generic_timeout_error"}}}}
    (page, twin), (bad_page, _), (down_page, _), (unlike_page, _) = _pages(tmp_path, [good, bad, down, unlike])
    assert ("From outside, the control helper could not fetch it (generic_timeout_error), where this connection "
            "did.") in _words(unlike_page, "freeze")
    section = _words(page, "freeze")
    assert "One connection carried 15,070 bytes (TLS included), then not one more for 10.0 s: it froze" in section
    assert ("Split over 4 new connections (4 KiB ranges, one connection each): every one came whole: the limit is "
            "per connection, and splitting gets past it.") in section
    assert (twin["evidence"]["verdict"]["mechanism"], twin["evidence"]["verdict"]["confidence"]) == ("tcp.freeze", 0.9)
    assert "From outside, the control helper fetched the page (200, 15,730 bytes): the site works there." in section
    assert "The control helper could not be asked (connection_refused): nothing to compare with." in \
        _words(down_page, "freeze")
    bad_section = _words(bad_page, "freeze")
    assert "the control helper could not fetch it either (&lt;img src=x" in bad_section
    assert "carried 0 bytes (TLS included), then not one more before the timeout: it froze" in bad_section
    assert "0 came whole, then &lt;img src=x" in bad_section and evil not in bad_page
    assert "(the server answered a range with the whole page)" in bad_section


def test_the_middlebox_tests_show_what_reached_the_echo_backend(tmp_path: Path) -> None:
    """http_header_field_manipulation: the request sent and as it reached the backend, and what changed in words;
    http_invalid_request_line: each line and what came back. What came back is hostile: escaped, cut."""
    base = next(samples.corpus(1, seed="middlebox"))
    evil = "<img src=x onerror=window.__pwned=1>"
    sent = "geT / HTTP/1.1\r\nHOsT: 198.19.0.7\r\nConNecTIOn: close\r\n\r\n"
    received = "geT / HTTP/1.1\r\nhost: 198.19.0.7\r\nconnection: close\r\nVia: 1.1 lab-proxy\r\nX-Evil: " + evil
    hhfm = {**base, "test_name": "http_header_field_manipulation", "input": None,
            "test_keys": {"backend": "198.19.0.7:80", "sent": sent, "received": received, "failure": None,
                          "tampering": {"total": True, "header_field_name": True, "header_field_number": True,
                                        "header_field_value": False, "header_name_capitalization": True,
                                        "request_line_capitalization": False,
                                        "header_name_diff": ["via", evil, 7]}}}
    hirl = {**base, "test_name": "http_invalid_request_line", "input": None, "report_id": base["report_id"] + "x",
            "test_keys": {"backend": "198.19.0.7:80", "tampering": True,
                          "sent": ["GET / HTTP/WFF\n\r", "XXXX / HTTP/1.1\n\r", "Y" * 1000 + " / HTTP/1.1\n\r"],
                          "received": ["GET / HTTP/WFF\n\r", "", "HTTP/1.1 400 Bad Request\r\nServer: " + evil]}}
    (page, _), (lines_page, _) = _pages(tmp_path, [hhfm, hirl])
    section = _words(page, "rewritten")
    assert ("Changed on the way: a header&#39;s name changed; headers were added or removed; header names were "
            "re-cased. Headers only on one side: <code class=\"input\">via, &lt;img src=x") in section
    assert "Via: 1.1 lab-proxy" in section and "HOsT: 198.19.0.7" in section and evil not in page
    rows = _words(lines_page, "rewritten")
    assert "Some of these invalid request lines did not come back as sent" in rows
    assert rows.count("the same bytes") == 1 and rows.count(">nothing<") == 1
    assert "Server: &lt;img src=x" in rows and "Y" * 301 not in rows and evil not in lines_page


def test_a_portfiltering_measurement_shows_each_port_here_and_from_outside(tmp_path: Path) -> None:
    """portfiltering: each port as the verdict judged it, from here and from the helper's side, in words; a
    hostile failure string is escaped and cut, and entries that are not ports are left out."""
    base = next(samples.corpus(1, seed="ports"))
    evil = "<img src=x onerror=window.__pwned=1>"
    ip = "198.19.3.50"
    ports = [{"port": 22, "connect": "generic_timeout_error", "reply": None, "status": None},
             {"port": 80, "connect": None, "reply": None, "status": 200},
             {"port": 8080, "connect": None, "reply": "connection_reset", "status": None},
             {"port": 9030, "connect": "connection_refused", "reply": None, "status": None}]
    control = {"tcp_connect": {f"{ip}:22": {"status": True, "failure": None},
                               f"{ip}:80": {"status": True, "failure": None},
                               f"{ip}:8080": {"status": True, "failure": None},
                               f"{ip}:9030": {"status": False, "failure": "connection_refused"}}}
    good = {**base, "test_name": "portfiltering", "input": "portquiz.net",
            "test_keys": {"host": "portquiz.net", "failure": None, "x_address": ip, "x_ports": ports,
                          "control": control, "control_failure": None}}
    bad = {**good, "report_id": base["report_id"] + "x",
           "test_keys": {"host": evil, "failure": None, "x_address": evil,
                         "x_ports": [{"port": 22, "connect": f"unknown_failure: {evil}" + "x" * 500},
                                     {"port": 80, "connect": None, "reply": None, "status": 200},
                                     {"port": "443", "connect": None}, "junk", {"port": 23, "connect": 7}],
                         "control": {"tcp_connect": {evil: {"status": True}}}}}
    (page, twin), (bad_page, _) = _pages(tmp_path, [good, bad])
    section = _words(page, "ports")
    assert "2 of 4 ports blocked from this network: 22, 8080; 1 reached." in section
    assert ('<td data-label="Port">22</td><td data-label="From here">generic_timeout_error</td> '
            '<td data-label="The request"></td> <td data-label="From outside">connected</td> <td data-label="Judged">'
            'blocked here: the helper reached it from outside (tcp.drop)</td>') in section
    assert ('<td data-label="Port">8080</td><td data-label="From here">connected</td> '
            '<td data-label="The request">connection_reset</td>') in section
    assert "then the request was cut while other ports answered (http.rst)" in section
    assert ('<td data-label="Port">9030</td><td data-label="From here">connection_refused</td> '
            '<td data-label="The request"></td> <td data-label="From outside">connection_refused</td> '
            '<td data-label="Judged">not the network') in section
    assert (twin["evidence"]["verdict"]["mechanism"], twin["evidence"]["verdict"]["confidence"]) == ("tcp.drop", 0.9)
    assert [r["port"] for r in twin["evidence"]["ports"]["rows"]] == [22, 80, 8080, 9030]
    bad_section = _words(bad_page, "ports")
    assert evil not in bad_page and "&lt;img src=x" in bad_section
    assert "unknown_failure: &lt;img src=x onerror=window.__pwned=1&gt;" + "x" * 27 + "…" in bad_section
    assert '<td data-label="Port">443</td>' not in bad_section and '<td data-label="Port">23</td>' not in bad_section
    assert "not asked" in bad_section  # the control's key is no ip:port of ours


def test_a_vanilla_tor_measurement_says_how_far_tor_got_and_shows_its_log(tmp_path: Path) -> None:
    """vanilla_tor: where the bootstrap stopped, what that step means, within what timeout, and the end of tor's
    log (escaped, cut); a bootstrap that finished says how long it took; hostile values are left out or cut."""
    base = next(samples.corpus(1, seed="vanilla"))
    evil = "<img src=x onerror=window.__pwned=1>"
    logs = [f"Dec 02 19:00:{i:02}.000 [notice] line {i}" for i in range(40)] + [
        "Dec 02 19:00:41.000 [notice] Bootstrapped 5% (conn): Connecting to a relay", evil + "y" * 400]
    stuck = {**base, "test_name": "vanilla_tor", "input": None,
             "test_keys": {"bootstrap_time": 0.0, "error": "timeout-reached", "failure": "generic_timeout_error",
                           "success": False, "timeout": 20.0, "tor_logs": logs, "tor_progress": 5,
                           "tor_progress_tag": "conn", "tor_progress_summary": "Connecting to a relay",
                           "tor_version": "0.4.9.11", "transport_name": "vanilla", "x_tor_network": "custom"}}
    done = {**stuck, "report_id": base["report_id"] + "x",
            "test_keys": {**stuck["test_keys"], "success": True, "error": None, "failure": None,
                          "bootstrap_time": 2.345, "tor_progress": 100, "tor_progress_tag": "done",
                          "tor_progress_summary": "Done", "tor_logs": ["Bootstrapped 100% (done): Done"],
                          "tor_version": evil, "timeout": -1}}
    (page, twin), (done_page, _) = _pages(tmp_path, [stuck, done])
    section = _words(page, "bootstrap")
    assert "pointed at another Tor network than Tor's own" in section
    assert ('It stopped at 5%</span> (<code class="input">conn</code>: <span class="input">Connecting to a relay'
            '</span>) when its 20.0 s ran out') in section
    assert "That step is connecting to a relay: its address is not reached." in section
    assert "line 29" not in section and "line 30" in section  # the last twelve lines
    assert evil not in page and "&lt;img src=x" in section and "y" * 300 not in section
    assert (twin["evidence"]["verdict"]["mechanism"], twin["evidence"]["bootstrap"]["progress"]) == ("tcp.drop", 5)
    done_section = _words(done_page, "bootstrap")
    assert "It bootstrapped to 100% in 2.3 s: Tor can be used from this network." in done_section
    assert "bridge" not in section and "bridge" not in done_section
    bridged = {**done, "report_id": base["report_id"] + "b",
               "test_keys": {**done["test_keys"], "transport_name": "obfs4", "x_bridges": 1}}
    ((bridged_page, _),) = _pages(tmp_path / "b", [bridged])
    assert ("through 1 obfs4 bridge (which ones is not recorded: a bridge published is a bridge blocked)."
            in _words(bridged_page, "bootstrap"))
    assert evil not in done_page and "ran out" not in done_section
    # tor's warning says the relay refused the connection: the page says so, and the verdict is a reset
    refused = {**stuck, "report_id": base["report_id"] + "r",
               "test_keys": {**stuck["test_keys"], "tor_logs": [*logs[:-1], (
                   "Dec 02 19:00:42.000 [warn] Problem bootstrapping. Stuck at 5% (conn): Connecting to a relay. "
                   "(Connection refused; CONNECTREFUSED; count 1; recommendation warn; host 0123 at [scrubbed])")]}}
    ((refused_page, refused_twin),) = _pages(tmp_path / "r", [refused])
    assert ("That step is connecting to a relay: tor says the relay refused the connection."
            in _words(refused_page, "bootstrap"))
    assert refused_twin["evidence"]["verdict"]["mechanism"] == "tcp.rst"


def test_oonis_portfiltering_measurement_shows_its_connects_and_says_there_is_no_control(tmp_path: Path) -> None:
    """OONI's own portfiltering (ts-038): only tcp_connect entries to its helper; the page says that no request was
    sent and that no control tells a port the helper did not take from one blocked; the helper's address is
    hostile input."""
    base = next(samples.corpus(1, seed="ooni-ports"))
    evil = "<img src=x onerror=window.__pwned=1>"

    def entry(port: int, failure: str | None, ip: str = "192.0.2.7") -> dict[str, Any]:
        return {"ip": ip, "port": port, "status": {"success": failure is None, "failure": failure}, "t": 0.1}

    good = {**base, "test_name": "portfiltering", "input": None,
            "test_keys": {"tcp_connect": [entry(23, None), entry(22, "generic_timeout_error"), entry(80, None),
                                          entry(3389, "connection_refused")]}}
    bad = {**good, "report_id": base["report_id"] + "x",
           "test_keys": {"tcp_connect": [entry(22, None, ip=evil), entry(25, "connection_refused", ip=evil)]}}
    (page, twin), (bad_page, _) = _pages(tmp_path, [good, bad])
    section = _words(page, "ports")
    assert "OONI's port-filtering helper (at <code class=\"input\">192.0.2.7</code>)" in section
    assert "No control from outside is recorded" in section
    assert "2 of 4 ports blocked from this network: 22, 3389; 2 reached." in section
    assert ('<td data-label="Port">3389</td><td data-label="From here">connection_refused</td> '
            '<td data-label="The request"><span class="muted">none sent</span></td> '
            '<td data-label="From outside"><span class="muted">not asked</span></td> '
            '<td data-label="Judged">blocked here, it seems') in section
    assert "answered" not in section
    assert (twin["evidence"]["verdict"]["mechanism"], twin["evidence"]["verdict"]["confidence"]) == ("tcp.drop", 0.6)
    assert evil not in bad_page and "&lt;img src=x" in _words(bad_page, "ports")


def test_most_blocked_sites_lists_only_sites_found_blocked(tmp_path: Path) -> None:
    """The home page's "Most blocked sites" listed every site measured, the ones never found blocked too ("0 0%"
    under that heading); they stay in the country's and network's lists of domains."""
    blocked = orjson.loads((SAMPLES / "dnsBlockingNXDOMAIN" / "measurement.json").read_bytes())
    fine = orjson.loads((SAMPLES / "badSSLWithExpiredCertificate" / "measurement.json").read_bytes())  # ok
    fine.update(probe_cc=blocked["probe_cc"], probe_asn=blocked["probe_asn"])
    with running_app(Settings(db_path=tmp_path / "e.duckdb", announce=False, submit_rate=0, read_rate=0)) as c:
        out = c.post("/api/v1/submit", content=b"\n".join(orjson.dumps(m) for m in (blocked, fine))).json()
        assert out["stored"] == 2, out
        country = c.get(f"/country/{blocked['probe_cc']}.json").json()
        listed = {d["domain"]: d["anomaly_count"] for d in country["domains"]}
        assert len(listed) == 2 and sorted(listed.values()) == [0, 1], listed
        blocked_domain = next(d for d, n in listed.items() if n)
        fine_domain = next(d for d, n in listed.items() if not n)
        home = c.get("/index.json").json()
        assert [d["domain"] for d in home["domains"]] == [blocked_domain]
        section = re.search(r'<section id="blocked-domains">(.*?)</section>', c.get("/").text, re.S)
        assert section and blocked_domain in section.group(1) and fine_domain not in section.group(1)
        assert fine_domain in c.get(f"/country/{blocked['probe_cc']}").text
    with running_app(Settings(db_path=tmp_path / "f.duckdb", announce=False, submit_rate=0, read_rate=0)) as c:
        assert c.post("/api/v1/submit", content=orjson.dumps(fine)).json()["stored"] == 1
        section = re.search(r'<section id="blocked-domains">(.*?)</section>', c.get("/").text, re.S)
        assert section and "No site measured here shows signs of interference." in section.group(1)


def test_the_http_comparison_says_none_where_no_header_is_on_one_side_only(tmp_path: Path) -> None:
    base = next(m for m in samples.corpus(50, seed="headers") if m["test_keys"]["requests"]
                and m["test_keys"]["requests"][0]["response"].get("code") == 200
                and m["test_keys"]["control"]["http_request"].get("status_code") == 200
                and m["test_keys"]["requests"][0]["response"]["headers"] == m["test_keys"]["control"]["http_request"]["headers"])
    tk = base["test_keys"]
    response = tk["requests"][0]["response"]
    same = {**base, "report_id": base["report_id"] + "s"}
    extra = {**base, "report_id": base["report_id"] + "x",
             "test_keys": {**tk, "requests": [{**tk["requests"][0], "response": {
                 **response, "headers": {**response["headers"], "Via": "1.1 <b>dpi</b>"},
                 "headers_list": [*response.get("headers_list", []), ["Via", "1.1 <b>dpi</b>"]]}}]}}
    (page, twin), (extra_page, extra_twin) = _pages(tmp_path, [same, extra])
    assert twin["evidence"]["http"]["diff"]["headers"]["only_measured"] == []
    rows = re.findall(r"<tr><th>Headers only (here|in control)</th><td colspan=\"3\" class=\"input\">(.*?)</td></tr>",
                      page)
    assert rows == [("here", '<span class="muted">none</span>'), ("in control", '<span class="muted">none</span>')]
    assert extra_twin["evidence"]["http"]["diff"]["headers"]["only_measured"] == ["via"]
    rows = re.findall(r"<tr><th>Headers only (here|in control)</th><td colspan=\"3\" class=\"input\">(.*?)</td></tr>",
                      extra_page)
    assert rows == [("here", "via"), ("in control", '<span class="muted">none</span>')]


def test_the_techniques_table_says_what_each_one_means(client: SyncClient) -> None:
    from tamperscope.analysis.report import MECHANISM_WORDS

    page = client.get("/").text
    section = page[page.index("How sites are blocked"):]
    section = section[:section.index("</table>")]
    assert "<th>What it means</th>" in section
    rows = re.findall(r'<tr><td data-label="Mechanism">([^<]*)</td>'
                      r'<td class="prose" data-label="What it means">([^<]*)</td>', section)
    assert rows, section
    for shown, words in rows:  # each in the report's words ("unexplained" is mechanism none)
        mechanism = "none" if shown == "unexplained" else shown
        assert words == MECHANISM_WORDS[mechanism].replace("'", "&#39;"), (shown, words)


def test_a_signature_is_said_in_words_on_its_countrys_page(tmp_path: Path) -> None:
    m = orjson.loads((SAMPLES / "httpBlockingConnectionReset" / "measurement.json").read_bytes())
    ours = dict(m, test_keys={**m["test_keys"], "x_signature": {"key": "tcp/RA/ttl128/win0/ipid30000"}})
    theirs = dict(m, report_id="other", test_keys={**m["test_keys"], "x_signature": {"id": "<b>box-7</b>"}})
    with running_app(Settings(db_path=tmp_path / "e.duckdb", announce=False, submit_rate=0, read_rate=0)) as c:
        assert c.post("/api/v1/submit", content=b"\n".join(orjson.dumps(x) for x in (ours, theirs))).json()["stored"] == 2
        section = re.search(r'<section id="signatures">(.*?)</section>', c.get(f"/country/{m['probe_cc']}").text, re.S)
    assert section is not None
    rows = re.findall(r'<tr><td class="input" data-label="Signature">(.*?)</td>', section.group(1), re.S)
    said = {r.split("<br>")[0]: r for r in rows}
    assert ('<span class="muted sig-words">TCP RST+ACK, sent with TTL ≤ 128, window 0, IP-ID 30000</span>'
            in said["tcp/RA/ttl128/win0/ipid30000"])
    assert "<br>" not in said["&lt;b&gt;box-7&lt;/b&gt;"]  # another probe's id: no words made up for it
    assert "<th>Equipment</th>" not in section.group(1)  # none named: no column of blanks
    named = dict(m, report_id="named", test_keys={**m["test_keys"], "x_signature": {"key": "tcp/R/ttl64/ipid2"},
                                                  "x_equipment": {"kind": "dpi", "name": "Evil <i>DPI</i>"}})
    with running_app(Settings(db_path=tmp_path / "f.duckdb", announce=False, submit_rate=0, read_rate=0)) as c:
        assert c.post("/api/v1/submit", content=b"\n".join(orjson.dumps(x) for x in (ours, named))).json()["stored"] == 2
        section = re.search(r'<section id="signatures">(.*?)</section>', c.get(f"/country/{m['probe_cc']}").text, re.S)
    assert section is not None and "<th>Equipment</th>" in section.group(1)
    assert ('<td data-label="Equipment">Evil &lt;i&gt;DPI&lt;/i&gt;</td>' in section.group(1)
            and section.group(1).count('<td data-label="Equipment"></td>') == 1)


def test_a_measurement_with_no_input_is_listed_by_its_app_or_test(tmp_path: Path) -> None:
    base = next(samples.corpus(1, seed="apps"))
    sig = {**base, "test_name": "signal", "input": None, "report_id": base["report_id"] + "s", "test_keys": {
        "signal_backend_status": "blocked", "signal_backend_failure": "connection_reset"}}
    hhfm = {**base, "test_name": "http_header_field_manipulation", "input": None, "report_id": base["report_id"] + "h",
            "test_keys": {"tampering": {"total": True, "header_field_name": True}}}
    odd = {**base, "test_name": "some_new_test", "input": None, "report_id": base["report_id"] + "x", "test_keys": {}}
    with running_app(Settings(db_path=tmp_path / "e.duckdb", announce=False, submit_rate=0, read_rate=0)) as c:
        assert c.post("/api/v1/submit", content=b"\n".join(orjson.dumps(x) for x in (sig, hhfm, odd))).json()["stored"] == 3
        page = c.get(f"/search?probe_cc={base['probe_cc']}").text
    cells = re.findall(r'<td class="input" data-label="Input">(.*?)</td>', page, re.S)
    assert '<span class="app-name">Signal</span><br><span class="muted">the Signal app</span>' in cells
    assert ('<span class="app-name">http_header_field_manipulation</span><br><span class="muted">a middlebox on the '
            'path that rewrites HTTP headers</span>') in cells
    assert '<span class="app-name">some_new_test</span>' in cells  # a test we have no words for: its name
    assert not [c for c in cells if not c.strip()]  # no blank cell where the input would be
