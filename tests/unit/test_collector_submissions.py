"""Collector endpoints in-process: OONI's report protocol, bulk JSONL, idempotence, clear 4xx, limits."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tamperscope.collector import samples
from tamperscope.collector.config import Settings
from tamperscope.collector.schema import Limits
from tamperscope.collector.testing import SyncClient, running_app

REPORT = {"test_name": "web_connectivity", "probe_cc": "IT", "probe_asn": "AS30722", "software_name": "t",
          "software_version": "1", "test_version": "0.5.28", "data_format_version": "0.2.0", "format": "json"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncClient]:
    db = tmp_path_factory.mktemp("collector") / "t.duckdb"
    settings = Settings(db_path=db, announce=False, submit_rate=0, read_rate=0,
                        limits=Limits(measurement=64 * 1024, bulk=256 * 1024, bulk_lines=50))
    with running_app(settings) as c:
        yield c


def open_report(client: SyncClient) -> str:
    r = client.post("/report", json=REPORT)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["supported_formats"] == ["json"]
    return str(body["report_id"])


def test_report_protocol_stores_and_answers_the_uid_and_verdict(client: SyncClient) -> None:
    rid = open_report(client)
    assert rid.split("_")[1:4] == ["webconnectivity", "IT", "30722"]
    m = samples.measurement("dns.poison", start="2026-05-02 10:00:00", url="https://blocked.example/")
    r = client.post(f"/report/{rid}", json={"format": "json", "content": m})
    assert r.status_code == 200, r.text
    body = r.json()
    uid = body["measurement_uid"]
    assert uid.startswith("20260502100000_IT_webconnectivity_")
    assert body["duplicate"] is False
    assert body["verdict"]["mechanism"] == "dns.poison" and body["verdict"]["status"] == "anomaly"
    # on disk, in the raw log, verbatim
    raw = client.get(f"/api/v1/measurement/{uid}")
    assert raw.status_code == 200 and orjson.loads(raw.content) == m
    log = b"".join(p.read_bytes() for p in client.collector.rawlog.segments_paths())
    assert orjson.dumps(m) in log
    assert client.post(f"/report/{rid}/close", json={}).json() == {}


def test_resubmission_is_idempotent(client: SyncClient) -> None:
    rid = open_report(client)
    m = samples.measurement("tcp.drop", start="2026-05-03 10:00:00", url="https://twice.example/")
    first = client.post(f"/report/{rid}", json={"format": "json", "content": m}).json()
    log_size = client.collector.rawlog.size
    # the same content, formatted differently, through another report and the bulk endpoint
    again = client.post(f"/report/{open_report(client)}",
                        content=orjson.dumps({"content": m, "format": "json"}, option=orjson.OPT_INDENT_2)).json()
    bulk = client.post("/api/v1/submit", content=orjson.dumps(m) + b"\n").json()
    assert again["measurement_uid"] == first["measurement_uid"] == bulk["results"][0]["measurement_uid"]
    assert again["duplicate"] is True and bulk["duplicates"] == 1 and bulk["stored"] == 0
    assert client.collector.rawlog.size == log_size  # nothing appended for a duplicate
    listed = client.get("/api/v1/measurements", params={"input": "https://twice.example/"}).json()
    assert listed["metadata"]["count"] == 1


def test_report_ids_are_stateless_so_uploads_resume_after_a_restart(client: SyncClient) -> None:
    m = samples.measurement("ok", start="2026-05-04 10:00:00", url="https://later.example/")
    r = client.post("/report/20260101T000000Z_webconnectivity_IT_30722_n1_abcdef", json={"format": "json", "content": m})
    assert r.status_code == 200


def test_bulk_jsonl_answers_per_line(client: SyncClient) -> None:
    good = list(samples.corpus(3, seed="bulk"))
    wrapped = {"format": "json", "content": samples.measurement("ok", start="2026-05-05 01:02:03")}
    bad = dict(good[0], probe_cc="italy")
    body = b"\n".join([orjson.dumps(good[0]), b"not json", orjson.dumps(bad), b"", orjson.dumps(good[1]),
                       orjson.dumps(wrapped), orjson.dumps(good[2])]) + b"\n"
    r = client.post("/api/v1/submit", content=body, headers={"Content-Type": "application/x-ndjson"})
    assert r.status_code == 200
    out = r.json()
    assert out["stored"] == 4 and out["refused"] == 2
    by_line = {x["line"]: x for x in out["results"]}
    assert by_line[2]["error"] == "invalid_json"
    assert by_line[3]["error"] == "invalid_measurement" and "probe_cc" in by_line[3]["detail"]
    assert all(by_line[n]["measurement_uid"] for n in (1, 5, 6, 7))


@pytest.mark.parametrize(("body", "status", "error"), [
    (b"", 400, "invalid_json"),
    (b"{not json", 400, "invalid_json"),
    (b"\xff\xfe{}", 400, "invalid_json"),
    (b"[]", 400, "invalid_json"),
    (b'{"format": "yaml", "content": "---"}', 400, "unsupported_format"),
    (b'{"format": "json"}', 400, "missing_content"),
    (b'{"format": "json", "content": []}', 422, "invalid_measurement"),
    (b'{"format": "json", "content": {"test_name": "x"}}', 422, "invalid_measurement"),
])
def test_bad_bodies_get_a_clear_4xx(client: SyncClient, body: bytes, status: int, error: str) -> None:
    r = client.post(f"/report/{open_report(client)}", content=body)
    assert r.status_code == status, r.text
    assert r.json()["error"] == error and r.json()["detail"]


def _with(**changes: object) -> dict[str, object]:
    m = copy.deepcopy(samples.measurement("ok", start="2026-05-06 10:00:00"))
    for key, value in changes.items():
        if value is None:
            m.pop(key, None)
        else:
            m[key] = value
    return m


@pytest.mark.parametrize(("measurement", "words"), [
    (_with(probe_cc="it"), "probe_cc"),
    (_with(probe_asn=30722), "probe_asn"),
    (_with(probe_asn="30722"), "probe_asn"),
    (_with(test_name="Web Connectivity"), "test_name"),
    (_with(measurement_start_time="yesterday"), "measurement_start_time"),
    (_with(measurement_start_time="1970-01-01 00:00:00"), "measurement_start_time"),
    (_with(test_keys=None), "test_keys"),
    (_with(test_keys=[1, 2]), "test_keys"),
    (_with(input=["a"]), "input"),
    (_with(input="x" * 9000), "input"),
    (_with(annotations="a"), "annotations"),
    (_with(test_runtime="slow"), "test_runtime"),
])
def test_schema_violations_are_422_naming_the_field(client: SyncClient, measurement: dict[str, object],
                                                    words: str) -> None:
    r = client.post(f"/report/{open_report(client)}", json={"format": "json", "content": measurement})
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid_measurement"
    assert words in r.json()["detail"]


def test_unreadable_records_are_refused_not_500(client: SyncClient) -> None:
    m = _with()
    m["test_keys"] = {"queries": "not a list", "requests": [1, "x", None], "tcp_connect": {"a": 1},
                      "control": [], "tls_handshakes": [{"peer_certificates": 7}]}
    r = client.post(f"/report/{open_report(client)}", json={"format": "json", "content": m})
    assert r.status_code in (200, 422), r.text


def test_size_limit_413_by_header_and_by_body(client: SyncClient) -> None:
    rid = open_report(client)
    big = _with(test_keys={"blob": "x" * (70 * 1024)})
    r = client.post(f"/report/{rid}", json={"format": "json", "content": big})
    assert r.status_code == 413 and r.json()["error"] == "too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit still holds while reading
        yield b'{"format": "json", "content": {"test_keys": {"blob": "'
        for _ in range(80):
            yield b"x" * 1024
        yield b'"}}}'

    async def stream() -> object:
        async def agen():  # type: ignore[no-untyped-def]
            for c in chunks():
                yield c
        return await client.client.post(f"/report/{rid}", content=agen())

    r = client.run(stream)
    assert r.status_code == 413  # type: ignore[attr-defined]
    r = client.post("/api/v1/submit", content=b"\n".join(orjson.dumps(_with(input=f"https://{i}.example/"))
                                                            for i in range(51)))
    assert r.status_code == 413 and r.json()["error"] == "too_many"


def test_malformed_report_id_is_400(client: SyncClient) -> None:
    m = _with()
    r = client.post("/report/bad%20id%3Cscript%3E", json={"format": "json", "content": m})
    assert r.status_code == 400 and r.json()["error"] == "invalid_report_id"
    for rid in ("%2E%2E", "%2E", "_x", "-x", "x" * 201):  # the outbox refuses them too: they were 200
        r = client.post(f"/report/{rid}", json={"format": "json", "content": m})
        assert r.status_code == 400 and r.json()["error"] == "invalid_report_id", rid
    assert client.post("/report/x.y_z-1", json={"format": "json", "content": m}).status_code == 200
    r = client.post("/report", json={"probe_cc": "IT"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_report"


def test_rate_limit_per_client_is_429_with_retry_after(tmp_path: Path) -> None:
    settings = Settings(db_path=tmp_path / "r.duckdb", announce=False, submit_rate=1, submit_burst=3,
                        read_rate=0)
    with running_app(settings) as c:
        codes = [c.post("/report", json=REPORT).status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
        r = c.post("/report", json=REPORT)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and r.json()["error"] == "rate_limited"
        assert c.get("/api/v1/health").status_code == 200  # reads have their own bucket


def test_read_only_server_refuses_submissions(tmp_path: Path) -> None:
    settings = Settings(db_path=tmp_path / "ro.duckdb", announce=False, accept_submissions=False)
    with running_app(settings) as c:
        r = c.post("/report", json=REPORT)
        assert r.status_code == 403 and r.json()["error"] == "read_only"
        assert c.get("/").status_code == 200
