"""The JSON API in-process: OONI's listing parameters and shape, raw JSON, aggregations, exports,
OpenAPI, and the admin token."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tamperscope.collector import samples
from tamperscope.collector.config import Settings
from tamperscope.collector.testing import SyncClient, running_app

TOKEN = "s3cret-admin-token-for-tests"
N = 120


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncClient]:
    db = tmp_path_factory.mktemp("api") / "a.duckdb"
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0, admin_token=TOKEN)) as c:
        body = b"\n".join(orjson.dumps(m) for m in samples.corpus(N, seed="api"))
        formula = samples.measurement("http.blockpage", url="http://=cmd.example/", probe_cc="RU",
                                      probe_asn="AS12389", network_name="=HYPERLINK(\"http://evil\")",
                                      start="2026-05-20 00:00:00")
        body += b"\n" + orjson.dumps(formula)
        out = c.post("/api/v1/submit", content=body).json()
        assert out["stored"] == N + 1
        # acknowledged means durable in the journal; the store's tables fill after. A test that reads them
        # directly (test_admin_reanalyse) and runs first in its worker found no verdict yet (CI, 2026-12-03)
        c.run(c.collector.ingestor.settled)
        yield c


def test_measurements_shape_and_metadata(client: SyncClient) -> None:
    r = client.get("/api/v1/measurements", params={"limit": 10})
    assert r.status_code == 200
    page = r.json()
    assert set(page) == {"metadata", "results"}
    meta = page["metadata"]
    assert meta["count"] == N + 1 and meta["limit"] == 10 and meta["offset"] == 0 and meta["pages"] == 13
    assert meta["next_url"].startswith("http://testserver/api/v1/measurements?") and "offset=10" in meta["next_url"]
    row = page["results"][0]
    for key in ("measurement_uid", "report_id", "test_name", "input", "probe_cc", "probe_asn",
                "measurement_start_time", "anomaly", "confirmed", "failure", "scores", "measurement_url"):
        assert key in row
    assert row["measurement_start_time"].endswith("Z")
    times = [r["measurement_start_time"] for r in page["results"]]
    assert times == sorted(times, reverse=True)
    nxt = client.get(meta["next_url"].removeprefix("http://testserver")).json()
    assert not {r["measurement_uid"] for r in nxt["results"]} & {r["measurement_uid"] for r in page["results"]}


def test_blocking_is_written_as_ooni_writes_it(client: SyncClient) -> None:
    # OONI's blocking is the boolean false or a string ("dns", "tcp_ip", ...); the API wrote the string "false"
    # (QA), in the listing, its export and the submission's receipt
    rows = client.get("/api/v1/measurements", params={"limit": 1000}).json()["results"]
    values = {r["blocking"] for r in rows} | {r["scores"]["blocking"] for r in rows}
    assert False in values and "false" not in values and values - {False, None} <= {
        "dns", "tcp_ip", "http-failure", "http-diff"}, values
    exported = [orjson.loads(line) for line in client.get("/api/v1/export/measurements.jsonl").content.splitlines()]
    assert {e["blocking"] for e in exported} == {r["blocking"] for r in rows}



def test_a_receipt_writes_blocking_as_ooni_writes_it(tmp_path: Path) -> None:
    m = samples.measurement("ok", url="https://fine.example/", start="2026-05-21 00:00:00")
    with running_app(Settings(db_path=tmp_path / "r.duckdb", announce=False, submit_rate=0, read_rate=0)) as c:
        receipt = c.post("/api/v1/submit", content=orjson.dumps(m)).json()["results"][0]
    assert receipt["verdict"]["blocking"] is False, receipt


@pytest.mark.parametrize("params", [
    {"probe_cc": "RU"}, {"probe_asn": "AS8359"}, {"probe_asn": "8359"}, {"test_name": "web_connectivity"},
    {"domain": "news.example.org"}, {"input": "https://chat.example.io/"}, {"anomaly": "true"},
    {"anomaly": "false"}, {"confirmed": "true"}, {"failure": "false"}, {"mechanism": "tcp.drop"},
    {"since": "2026-05-05", "until": "2026-05-08"}, {"since": "2026-05-05T12:00:00Z"},
])
def test_filters_narrow_the_results(client: SyncClient, params: dict[str, str]) -> None:
    page = client.get("/api/v1/measurements", params={**params, "limit": 1000}).json()
    rows = page["results"]
    assert rows and len(rows) == page["metadata"]["count"] <= N + 1
    for r in rows:
        if "probe_cc" in params:
            assert r["probe_cc"] == params["probe_cc"]
        if "probe_asn" in params:
            assert r["probe_asn"] == "AS8359"
        if "domain" in params:
            assert r["domain"] == params["domain"]
        if "input" in params:
            assert r["input"] == params["input"]
        if params.get("anomaly") == "true":
            assert r["anomaly"]
        if params.get("anomaly") == "false":
            assert not r["anomaly"]
        if "confirmed" in params:
            assert r["confirmed"]
        if "mechanism" in params:
            assert r["mechanism"] == "tcp.drop"
        if "until" in params:
            assert "2026-05-05" <= r["measurement_start_time"][:10] < "2026-05-08"
    if "report_id" not in params:
        rid = rows[0]["report_id"]
        by_report = client.get("/api/v1/measurements", params={"report_id": rid}).json()
        assert all(x["report_id"] == rid for x in by_report["results"])


@pytest.mark.parametrize("params", [{"limit": "0"}, {"limit": "5000"}, {"offset": "-1"}, {"since": "last week"},
                                    {"anomaly": "maybe"}, {"order": "sideways"}])
def test_bad_parameters_are_4xx(client: SyncClient, params: dict[str, str]) -> None:
    r = client.get("/api/v1/measurements", params=params)
    assert 400 <= r.status_code < 500
    assert r.json()["error"] in ("invalid_parameter",)


def test_raw_measurement_is_byte_for_byte(client: SyncClient) -> None:
    m = samples.measurement("http.rst", url="https://bytes.example/", start="2026-05-21 00:00:00")
    sent = orjson.dumps(m)
    uid = client.post("/api/v1/submit", content=sent).json()["results"][0]["measurement_uid"]
    r = client.get(f"/api/v1/measurement/{uid}")
    assert r.status_code == 200 and r.content == sent and r.headers["content-type"] == "application/json"
    assert client.get("/api/v1/measurement/nope").status_code == 404


@pytest.mark.parametrize("name", ["timeline", "per_domain", "per_network", "per_mechanism", "per_country",
                                  "signatures", "blockpages", "hops", "domain_network", "mechanism_country"])
def test_aggregations_json_and_csv(client: SyncClient, name: str) -> None:
    r = client.get(f"/api/v1/aggregation/{name}", params={"probe_cc": "RU"})
    assert r.status_code == 200
    body = r.json()
    assert body["aggregation"] == name and body["filters"] == {"probe_cc": "RU"}
    assert body["result"], name
    c = client.get(f"/api/v1/aggregation/{name}", params={"probe_cc": "RU", "format": "csv"})
    assert c.status_code == 200 and c.headers["content-type"].startswith("text/csv")
    assert len(list(csv.reader(io.StringIO(c.text)))) == len(body["result"]) + 1
    assert client.get("/api/v1/aggregation/nonsense").status_code == 404


def test_timeline_and_mechanisms_add_up(client: SyncClient) -> None:
    timeline = client.get("/api/v1/aggregation/timeline").json()["result"]
    assert sum(d["measurement_count"] for d in timeline) >= N + 1
    mech = {r["mechanism"] for r in client.get("/api/v1/aggregation/per_mechanism").json()["result"]}
    assert {"dns.poison", "tcp.drop", "tls.rst", "http.rst", "http.blockpage"} <= mech
    hops = client.get("/api/v1/aggregation/hops").json()["result"]
    assert hops and all(h["label"].startswith("hop ") for h in hops)


def test_exports_csv_json_jsonl_raw(client: SyncClient) -> None:
    params = {"probe_cc": "RU"}
    count = client.get("/api/v1/measurements", params=params).json()["metadata"]["count"]
    c = client.get("/api/v1/export/measurements.csv", params=params)
    rows = list(csv.DictReader(io.StringIO(c.text)))
    assert len(rows) == count and c.headers["content-disposition"].startswith("attachment")
    # a spreadsheet must not run what a measurement says
    evil = [r for r in rows if "HYPERLINK" in r["probe_network_name"]]
    assert evil and all(r["probe_network_name"].startswith("'=") for r in evil)
    j = client.get("/api/v1/export/measurements.json", params=params).json()
    assert len(j) == count and {r["measurement_uid"] for r in j} == {r["measurement_uid"] for r in rows}
    lines = client.get("/api/v1/export/measurements.jsonl", params=params).content.splitlines()
    assert len(lines) == count
    raw = client.get("/api/v1/export/raw.jsonl", params=params).content.splitlines()
    assert len(raw) == count and all(orjson.loads(x)["probe_cc"] == "RU" for x in raw)
    assert len(client.get("/api/v1/export/raw.jsonl", params={"limit": 3}).content.splitlines()) == 3


def test_the_html_report_of_a_selection_downloads_as_one_file(client: SyncClient) -> None:
    """`report --html` from a running server (whose store no other process can open while it runs)."""
    ru = client.get("/api/v1/measurements", params={"probe_cc": "RU"}).json()["metadata"]["count"]
    everything = client.get("/api/v1/measurements").json()["metadata"]["count"]
    assert 0 < ru < everything
    r = client.get("/api/v1/export/report.html", params={"probe_cc": "RU", "probe_asn": "12389"},
                   headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["content-disposition"] == 'attachment; filename="tamperscope-report-RU-AS12389.html"'
    assert "content-encoding" not in r.headers
    assert "script-src 'self'" in r.headers["content-security-policy"]  # shown in place, its inline scripts won't run
    page = r.text
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert "<p class='selection'>Only country RU, network AS12389.</p>" in page
    assert "<script src" not in page and "Plotly.newPlot" in page  # self-contained: plotly inside, no link
    rows = client.get("/api/v1/measurements", params={"probe_cc": "RU", "probe_asn": "AS12389"}).json()
    assert f" {rows['metadata']['count']:,} measurement" in page.split("<p class='summary'>", 1)[1][:200]
    whole = client.get("/api/v1/export/report.html", headers={"Accept-Encoding": "gzip"})
    assert whole.headers["content-encoding"] == "gzip" and whole.headers["vary"] == "Accept-Encoding"
    assert int(whole.headers["content-length"]) < len(whole.content) / 2  # sent compressed, read whole
    assert "class='selection'" not in whole.text and f" {everything:,} measurements" in whole.text
    assert 'filename="tamperscope-report.html"' in whole.headers["content-disposition"]
    bad = client.get("/api/v1/export/report.html", params={"since": "yesterday"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_parameter"
    for unused in ({"anomaly": "true"}, {"limit": "10"}, {"probe_cc": "RU", "report_id": "r1", "order": "asc"}):
        refused = client.get("/api/v1/export/report.html", params=unused)  # it would not be what it says
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_parameter", unused
    assert refused.json()["detail"].startswith("a report cannot be narrowed by report_id, order; only by probe_cc, ")
    fingerprint = client.get("/api/v1/export/report.html", params={"fingerprint": "cp/none_such"}).text
    assert "<p class='selection'>Only fingerprint cp/none_such.</p>" in fingerprint


def test_openapi_describes_every_endpoint(client: SyncClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    for path in ("/report", "/report/{report_id}", "/report/{report_id}/close", "/api/v1/submit",
                 "/api/v1/measurements", "/api/v1/measurement/{measurement_uid}", "/api/v1/aggregation/{name}",
                 "/api/v1/export/measurements.{kind}", "/api/v1/export/raw.jsonl", "/api/v1/export/report.html",
                 "/api/v1/health",
                 "/api/v1/admin/delete/{measurement_uid}", "/api/v1/admin/reanalyse"):
        assert path in paths, path
    names = {p["name"] for p in paths["/api/v1/measurements"]["get"]["parameters"]}
    assert {"probe_cc", "probe_asn", "test_name", "input", "domain", "since", "until", "report_id", "anomaly",
            "confirmed", "limit", "offset"} <= names
    body = paths["/report/{report_id}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["content"]["required"] == ["test_name", "measurement_start_time", "probe_cc",
                                                         "probe_asn", "test_keys"]


def test_admin_needs_the_token(client: SyncClient) -> None:
    uid = client.get("/api/v1/measurements", params={"limit": 1}).json()["results"][0]["measurement_uid"]
    assert client.post(f"/api/v1/admin/delete/{uid}").status_code == 401
    assert client.post(f"/api/v1/admin/delete/{uid}", headers={"Authorization": "Basic abc"}).status_code == 401
    r = client.post(f"/api/v1/admin/delete/{uid}", headers={"Authorization": "Bearer wrong-token-123456"})
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    assert client.post("/api/v1/admin/reanalyse", json={"all": True}).status_code == 401
    assert client.get(f"/api/v1/measurement/{uid}").status_code == 200  # untouched


def test_admin_delete_removes_everywhere_and_tombstones(client: SyncClient) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    row = client.get("/api/v1/measurements", params={"limit": 1, "anomaly": "true"}).json()["results"][0]
    uid = row["measurement_uid"]
    before = client.get("/api/v1/measurements").json()["metadata"]["count"]
    r = client.post(f"/api/v1/admin/delete/{uid}", headers=auth, json={"reason": "contains the user's IP"})
    assert r.status_code == 200 and r.json() == {"measurement_uid": uid, "deleted": True, "rows_removed": True}
    assert client.get(f"/api/v1/measurement/{uid}").status_code == 404
    assert client.get(f"/m/{uid}").status_code == 404
    assert client.get("/api/v1/measurements").json()["metadata"]["count"] == before - 1
    assert client.collector.rawlog.is_deleted(uid)
    assert client.post("/api/v1/admin/delete/unknown-uid", headers=auth).status_code == 404


def test_admin_reanalyse(client: SyncClient) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    con = client.collector.reader.cursor()
    uid = con.execute("SELECT measurement_uid FROM verdicts WHERE mechanism = 'tcp.drop' LIMIT 1").fetchone()[0]

    def corrupt() -> None:  # a stale verdict, as after a rule change
        client.collector.store.con.execute(
            "UPDATE verdicts SET mechanism = 'none', status = 'ok', analysis_version = '0' WHERE measurement_uid = ?",
            [uid])

    client.run(lambda: client.collector.ingestor.call(corrupt))
    assert con.execute("SELECT mechanism FROM verdicts WHERE measurement_uid = ?", [uid]).fetchone()[0] == "none"
    r = client.post("/api/v1/admin/reanalyse", headers=auth, json={"stale": True})
    assert r.status_code == 200 and r.json()["reanalysed"] == 1 and r.json()["changed"] == 1
    assert con.execute("SELECT mechanism FROM verdicts WHERE measurement_uid = ?", [uid]).fetchone()[0] == "tcp.drop"
    r = client.post("/api/v1/admin/reanalyse", headers=auth, json={"filters": {"probe_cc": "IR"}})
    assert r.status_code == 200 and r.json()["reanalysed"] > 0 and r.json()["changed"] == 0
    assert client.post("/api/v1/admin/reanalyse", headers=auth, json={}).status_code == 400
    assert client.post("/api/v1/admin/reanalyse", headers=auth, json={"filters": {"bogus": "x"}}).status_code == 400


def test_admin_reanalyse_takes_its_selection_a_page_at_a_time(client: SyncClient,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A page of uids per transaction, each asked for after the one before: a server's memory does not hold the
    whole selection (a store of millions)."""
    from tamperscope.analysis import reanalysis
    from tamperscope.collector import admin

    monkeypatch.setattr(admin, "REANALYSE_CHUNK", 7)
    pages: list[int] = []
    real = reanalysis.reanalyse

    def counting(store: object, raw_many: object, uids: list[str]) -> reanalysis.Totals:
        pages.append(len(uids))
        return real(store, raw_many, uids)  # type: ignore[arg-type]

    monkeypatch.setattr(reanalysis, "reanalyse", counting)
    stored = client.collector.reader.cursor().execute("SELECT count(*) FROM verdicts").fetchone()[0]
    r = client.post("/api/v1/admin/reanalyse", headers={"Authorization": f"Bearer {TOKEN}"}, json={"all": True})
    assert r.status_code == 200
    assert r.json()["selected"] == r.json()["reanalysed"] == stored and r.json()["changed"] == 0
    assert pages == [7] * (stored // 7) + ([stored % 7] if stored % 7 else [])


def test_admin_disabled_without_a_token(tmp_path_factory: pytest.TempPathFactory) -> None:
    db = tmp_path_factory.mktemp("noadmin") / "n.duckdb"
    with running_app(Settings(db_path=db, announce=False)) as c:
        r = c.post("/api/v1/admin/delete/x", headers={"Authorization": "Bearer anything-at-all-here"})
        assert r.status_code == 403 and r.json()["error"] == "admin_disabled"


def test_health(client: SyncClient) -> None:
    h = client.get("/api/v1/health").json()
    assert h["status"] == "ok" and h["measurements"] >= N and h["raw_log_bytes"] > 0
