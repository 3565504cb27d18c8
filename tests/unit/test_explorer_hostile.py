"""The explorer against hostile measurements and requests: bodies built to make the title search
quadratic, keys of the wrong shape, certificates without data, file names the OS refuses, and an
unhandled error, which must still be a plain 500 with the security headers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest

from tamperscope.collector import samples
from tamperscope.collector.app import create_app
from tamperscope.collector.config import Settings
from tamperscope.collector.testing import SyncClient, running_app
from tamperscope.explorer import pages
from tamperscope.explorer.evidence import (
    MAX_BODIES,
    MAX_HEADERS,
    MAX_QUERY_ANSWERS,
    MAX_RECORDS,
    MAX_REQUESTS,
    title_of,
)
from tamperscope.explorer.headers import CSP

QUADRATIC = "<title>" * 9362  # 64 KiB; a lazy <title>(.*?)</title retried from each <title: ~7 s


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncClient]:
    db = tmp_path_factory.mktemp("explorer-hostile") / "x.duckdb"
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0)) as c:
        yield c


def _submit(client: SyncClient, m: dict[str, Any]) -> str:
    r = client.post("/report/r1", json={"format": "json", "content": m})
    assert r.status_code == 200, r.text
    return str(r.json()["measurement_uid"])


_counter = iter(range(10**6))


def _measurement(**test_keys: Any) -> dict[str, Any]:
    """A distinct measurement (its own input, so its own uid) with ``test_keys`` merged in."""
    m = samples.measurement("ok", url=f"https://hostile{next(_counter)}.example/", start="2026-05-26 00:00:00")
    m["test_keys"].update(test_keys)
    return m


# --------------------------------------------------------------------------- titles and bodies


@pytest.mark.wallclock  # bounds wall-clock time: not among the low-priority tests (scripts/test.sh)
def test_title_search_is_linear() -> None:
    normal = "<html><head><title>Site</title></head><body>" + "x" * 65000 + "</body></html>"
    started = time.perf_counter()
    assert title_of(normal) == "Site"
    baseline = time.perf_counter() - started
    for hostile in (QUADRATIC, QUADRATIC.upper(), "<title" * 10922, "<title>" + "<" * 65000):
        started = time.perf_counter()
        assert title_of(hostile) is None
        assert time.perf_counter() - started < max(0.2, 50 * baseline)


@pytest.mark.parametrize(("text", "title"), [
    ("<TITLE lang=en>\n  Access   denied\t</Title>", "Access denied"),
    ("<title></title><title>second</title>", None),
    ("<titlex>odd</title>", "odd"),
    ("<title>never closed", None),
    ("no title at all", None),
    ("<title>" + "a" * 400 + "</title>", "a" * 300),
])
def test_title_search_finds_what_it_found_before(text: str, title: str | None) -> None:
    assert title_of(text) == title


@pytest.mark.wallclock  # bounds wall-clock time: not among the low-priority tests (scripts/test.sh)
def test_a_page_of_quadratic_bodies_renders_at_once(client: SyncClient) -> None:
    m = _measurement()
    request = m["test_keys"]["requests"][0]
    m["test_keys"]["requests"] = [{**request, "response": {**request["response"], "body": QUADRATIC}}
                                  for _ in range(6)]
    uid = _submit(client, m)
    client.get("/api/v1/health")  # settle first, so the timing is the page's alone
    started = time.perf_counter()
    r = client.get(f"/m/{uid}")
    assert r.status_code == 200 and time.perf_counter() - started < 3.0  # was ~7 s per body
    assert client.get(f"/m/{uid}/body/5").status_code == 200


def test_the_bodies_a_page_decodes_are_bounded(client: SyncClient) -> None:
    m = _measurement()
    request = m["test_keys"]["requests"][0]
    m["test_keys"]["requests"] = [{**request, "response": {**request["response"], "body": f"<title>page {i}</title>"}}
                                  for i in range(MAX_REQUESTS + 50)]
    uid = _submit(client, m)
    http = client.get(f"/m/{uid}.json").json()["evidence"]["http"]
    requests = http["requests"]
    assert len(requests) == MAX_REQUESTS and http["requests_not_listed"] == 50
    assert [r["title"] for r in requests[:MAX_BODIES]] == [f"page {i}" for i in range(MAX_BODIES)]
    assert all(r["body_skipped"] and r["body_text"] == "" for r in requests[MAX_BODIES:])
    page = client.get(f"/m/{uid}")
    assert page.status_code == 200 and "Body not shown" in page.text and "50 more requests" in page.text
    # The sandboxed view decodes the one body it is asked for, listed or not.
    assert client.get(f"/m/{uid}/body/{MAX_REQUESTS + 10}").text == f"<title>page {MAX_REQUESTS + 10}</title>"
    assert client.get(f"/m/{uid}/body/{MAX_REQUESTS + 50}").status_code == 404


@pytest.mark.wallclock  # bounds wall-clock time: not among the low-priority tests (scripts/test.sh)
def test_a_long_content_type_does_not_stall_the_page(client: SyncClient) -> None:
    # The charset regex backtracks quadratically over spaces; a non-UTF-8 body makes the page consult it.
    m = _measurement()
    response = m["test_keys"]["requests"][0]["response"]
    response["headers_list"] = [["Content-Type", "text/html; charset=" + " " * 40000 + "!"]]
    response["body"] = {"format": "base64", "data": "/////w=="}
    uid = _submit(client, m)
    client.get("/api/v1/health")
    started = time.perf_counter()
    assert client.get(f"/m/{uid}").status_code == 200
    assert time.perf_counter() - started < 3.0  # was ~20 s


# --------------------------------------------------------------------------- keys of the wrong shape


@pytest.mark.parametrize("certificates", [[None], [{}], [[]], [1, 2], [{"format": "base64", "data": ""}],
                                          [{"format": "base64"}], [None, {"format": "base64", "data": "AAAA"}]],
                         ids=["null", "object", "list", "numbers", "empty-data", "no-data", "null-and-junk"])
def test_certificates_without_data_are_said_to_be_missing(client: SyncClient, certificates: list[Any]) -> None:
    m = _measurement()
    m["test_keys"]["tls_handshakes"][0]["peer_certificates"] = certificates
    uid = _submit(client, m)
    r = client.get(f"/m/{uid}")
    assert r.status_code == 200, r.text[:300]
    assert "no certificate data" in r.text
    shown = client.get(f"/m/{uid}.json").json()["evidence"]["tls"][0]["certificates"]
    assert shown[0] == {"error": "no certificate data"}
    assert client.get(f"/m/{uid}/body/0").status_code == 200


@pytest.mark.parametrize("key", ["x_fingerprints", "x_evidence"])
@pytest.mark.parametrize("value", [7, True, 1.5, {"a": 1}, "one-id"], ids=["int", "true", "float", "object", "str"])
def test_probe_keys_of_any_shape_render(client: SyncClient, key: str, value: Any) -> None:
    # Alone in test_keys, so the verdict has no evidence or fingerprints of its own and the page reads the probe's.
    m = _measurement()
    m["test_keys"] = {key: value}
    uid = _submit(client, m)
    for path in (f"/m/{uid}", f"/m/{uid}.json"):
        r = client.get(path)
        assert r.status_code == 200, (path, r.text[:300])
    verdict = client.get(f"/m/{uid}.json").json()["evidence"]
    shown = verdict["verdict"]["evidence"] if key == "x_evidence" else [f["id"] for f in verdict["fingerprints"]]
    assert shown == (["one-id"] if value == "one-id" else [])
    assert client.get(f"/m/{uid}/body/0").status_code == 404  # no requests: nothing to show, not an error


# --------------------------------------------------------------------------- static files


@pytest.mark.parametrize("name", ["%00", "a%00.js", "x" * 300 + ".js", "%5C..%5Croutes.py"])
def test_static_names_the_os_refuses_are_404(client: SyncClient, name: str) -> None:
    r = client.get(f"/static/{name}")
    assert r.status_code == 404 and r.headers["content-security-policy"] == CSP


# --------------------------------------------------------------------------- unhandled errors


def _get_unhandled(settings: Settings, paths: list[str]) -> list[httpx.Response]:
    """GETs through a transport that answers like a server (a 500) instead of raising the app's error."""
    async def run() -> list[httpx.Response]:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000), raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                return [await http.get(p) for p in paths]
    return anyio.run(run)


def test_an_unhandled_error_is_a_plain_500_with_the_security_headers(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals /etc/tamperscope")

    monkeypatch.setattr(pages, "home", broken)
    monkeypatch.setattr("tamperscope.collector.api.list_measurements", broken)
    settings = Settings(db_path=tmp_path / "e.duckdb", announce=False, submit_rate=0, read_rate=0)
    page, twin, api = _get_unhandled(settings, ["/", "/index.json", "/api/v1/measurements"])
    for r in (page, twin, api):
        assert r.status_code == 500
        assert r.headers["content-security-policy"] == CSP
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert b"secret internals" not in r.content and b"Traceback" not in r.content
    assert page.headers["content-type"].startswith("text/html") and "Server error" in page.text
    for r in (twin, api):
        assert r.headers["content-type"] == "application/json" and r.json()["error"] == "internal_error"
    assert orjson.loads(api.content)["detail"].count("\n") == 0


def test_the_records_a_page_lists_are_bounded(client: SyncClient) -> None:
    """A measurement of 5 MiB can carry tens of thousands of lookups, connections, handshakes and headers: a page
    listing them all cost a second of CPU per view (1 read token) and weighed more than the measurement. The page
    lists the first `MAX_RECORDS` of each, `MAX_HEADERS` headers a response, and says how many more there are."""
    n = MAX_RECORDS + 800
    answers = [{"answer_type": "A", "ipv4": f"198.18.{i // 250}.{i % 250}"} for i in range(MAX_QUERY_ANSWERS + 8)]
    m = _measurement(
        queries=[{"engine": "system", "resolver_address": "", "hostname": f"q{i}.example", "query_type": "A",
                  "answers": answers, "failure": None} for i in range(n)],
        x_dns_duplicate_responses=[{"hostname": "late.example", "answers": answers[:1]}] * n,
        tcp_connect=[{"ip": "198.18.0.1", "port": 443, "status": {"success": True}}] * n,
        tls_handshakes=[{"address": "198.18.0.1:443", "server_name": "a.example"}] * n,
        quic_handshakes=[{"address": "198.18.0.1:443", "server_name": "a.example"}] * 10)
    m["test_keys"]["requests"][0]["response"]["headers_list"] = [[f"X-H{i}", "v"] for i in range(5000)]
    uid = _submit(client, m)
    e = client.get(f"/m/{uid}.json").json()["evidence"]
    assert len(e["dns"]["queries"]) == len(e["dns"]["late_answers"]) == MAX_RECORDS
    assert e["dns"]["not_listed"] == e["dns"]["late_not_listed"] == 800
    assert {len(q["answers"]) for q in e["dns"]["queries"]} == {MAX_QUERY_ANSWERS}
    assert len(e["tcp"]) == MAX_RECORDS and e["tcp_not_listed"] == 800
    assert len(e["tls"]) == MAX_RECORDS + 10 and e["tls_not_listed"] == 800  # QUIC's 10 are all listed
    assert len(e["http"]["requests"][0]["headers"]) == MAX_HEADERS
    page = client.get(f"/m/{uid}")
    assert page.status_code == 200
    for said in ("800 more DNS lookups", "800 more late answers", "800 more connections", "800 more handshakes"):
        assert said in page.text, said
    assert len(page.content) < 2_000_000  # the measurement submitted is ~2.6 MB; unbounded, the page was ~5 MB


# --------------------------------------------------------------------------- what the store holds, as the store holds it


def test_a_measurement_page_names_the_country_and_network_as_stored_and_blocking_as_ooni_writes_it(
        tmp_path: Path) -> None:
    """QA: a line saying probe_cc "<s" and probe_asn "AS<script>" is stored as ZZ and AS0 (its uid says ZZ), but its
    page linked /country/%3Cs and /network/AS%3Cscript%3E (both 404), and its JSON said "<s". And ``blocking`` came
    out as the string "false" (the store's text) and "False" (Python's), where OONI writes the boolean."""
    from tamperscope.analysis import pipeline
    from tamperscope.analysis.store import Store

    samples_dir = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"
    m = orjson.loads((samples_dir / "successWithHTTPS" / "measurement.json").read_bytes())
    m.update(probe_cc="<s", probe_asn="AS<script>")
    (tmp_path / "in.jsonl").write_bytes(orjson.dumps(m))
    db = tmp_path / "x.duckdb"
    store = Store(db)
    pipeline.run([str(tmp_path / "in.jsonl")], store)
    uid, cc, asn = store.con.execute("SELECT measurement_uid, probe_cc, probe_asn FROM verdicts").fetchone()
    store.close()
    assert (cc, asn) == ("ZZ", "AS0")
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0)) as c:
        page = c.get(f"/m/{uid}").text
        doc = c.get(f"/m/{uid}.json").json()
    assert 'href="/country/ZZ"' in page and 'href="/network/AS0"' in page
    assert "/country/%3Cs" not in page and "%3Cscript" not in page and "<script>" not in page
    assert "as stored; the measurement wrote probe_cc “&lt;s”, probe_asn “AS&lt;script&gt;”" in page
    assert (doc["envelope"]["probe_cc"], doc["envelope"]["probe_asn"]) == ("ZZ", "AS0")
    assert doc["envelope"]["as_written"] == {"probe_cc": "<s", "probe_asn": "AS<script>"}
    verdict = doc["evidence"]["verdict"]
    assert verdict["blocking"] is False and verdict["probe_said"]["blocking"] is False, verdict


def test_templates_are_read_once_as_the_server_starts() -> None:
    """QA: a template upgraded under a running server (a new field, before the code that fills it) made every such
    page a 500 until a restart: the templates are the running code's, all read at start and never again."""
    from tamperscope.explorer import routes

    env = routes._env
    assert env.auto_reload is False
    names = env.list_templates(extensions=["html", "xml"])
    assert "measurement.html" in names
    assert env.cache is not None and {key[1] for key in env.cache.keys()} >= set(names)
