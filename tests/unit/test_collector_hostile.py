"""The collector against hostile or careless clients: out-of-range times, a probe that sends its address,
numbers that re-encoding would change, bodies that are not UTF-8, and the bulk endpoint's Retry-After."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tamperscope.collector import samples
from tamperscope.collector.config import Settings
from tamperscope.collector.testing import SyncClient, running_app

TOKEN = "hostile-admin-token-for-tests"
ADDRESS = "203.0.113.77"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncClient]:
    db = tmp_path_factory.mktemp("hostile") / "h.duckdb"
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0, admin_token=TOKEN)) as c:
        out = c.post("/api/v1/submit", content=b"\n".join(orjson.dumps(m) for m in samples.corpus(10, seed="h")))
        assert out.json()["stored"] == 10
        yield c


def _submit(client: SyncClient, m: dict[str, object]) -> str:
    r = client.post("/report/r1", json={"format": "json", "content": m})
    assert r.status_code == 200, r.text
    return str(r.json()["measurement_uid"])


# --------------------------------------------------------------------------- since / until out of range

OUT_OF_RANGE = [{"since": "0001-01-01T00:00:00+01:00"}, {"until": "9999-12-31T23:59:59-01:00"}]


@pytest.mark.parametrize("params", OUT_OF_RANGE)
@pytest.mark.parametrize("path", ["/api/v1/measurements", "/api/v1/aggregation/timeline",
                                  "/api/v1/aggregation/hops", "/api/v1/export/measurements.csv",
                                  "/api/v1/export/raw.jsonl", "/search.json"])
def test_times_beyond_the_calendar_are_400_in_the_api(client: SyncClient, path: str, params: dict[str, str]) -> None:
    r = client.get(path, params=params)
    assert r.status_code == 400, (path, r.status_code, r.text[:200])
    body = r.json()
    assert body["error"] == "invalid_parameter" and "out of range" in body["detail"]
    assert "\n" not in body["detail"]


@pytest.mark.parametrize("params", OUT_OF_RANGE)
def test_times_beyond_the_calendar_are_400_on_the_search_page(client: SyncClient, params: dict[str, str]) -> None:
    r = client.get("/search", params=params)
    assert r.status_code == 400 and r.headers["content-type"].startswith("text/html")
    assert "out of range" in r.text


@pytest.mark.parametrize("filters", [{"since": "0001-01-01T00:00:00+01:00"}, {"until": "9999-12-31T23:59:59-01:00"}])
def test_times_beyond_the_calendar_are_400_in_reanalyse_filters(client: SyncClient, filters: dict[str, str]) -> None:
    r = client.post("/api/v1/admin/reanalyse", json={"filters": filters},
                    headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_parameter", r.text


def test_the_calendar_s_own_ends_still_work(client: SyncClient) -> None:
    r = client.get("/api/v1/measurements", params={"since": "0001-01-01T00:00:00Z", "until": "9999-12-31T23:59:59Z"})
    assert r.status_code == 200 and r.json()["metadata"]["count"] >= 10


# --------------------------------------------------------------------------- the probe's address


def test_a_probe_address_is_replaced_before_anything_keeps_it(client: SyncClient) -> None:
    sent = samples.measurement("http.blockpage", url="http://address.example/", start="2026-05-22 00:00:00")
    sent["probe_ip"] = ADDRESS
    uid = _submit(client, sent)
    bulk_one = samples.measurement("tcp.drop", url="https://address-bulk.example/", start="2026-05-22 00:00:01")
    bulk_one["probe_ip"] = ADDRESS
    wrapped = samples.measurement("ok", url="https://address-wrapped.example/", start="2026-05-22 00:00:02")
    wrapped["probe_ip"] = ADDRESS
    body = orjson.dumps(bulk_one) + b"\n" + orjson.dumps({"format": "json", "content": wrapped})
    out = client.post("/api/v1/submit", content=body).json()
    assert out["stored"] == 2, out
    uids = [uid, *(r["measurement_uid"] for r in out["results"])]

    stored = client.get(f"/api/v1/measurement/{uid}")
    assert orjson.loads(stored.content)["probe_ip"] == "127.0.0.1"
    # The same measurement without the address is the same measurement: the uid is derived after the change.
    clean = {**sent, "probe_ip": "127.0.0.1"}
    again = client.post("/report/r2", json={"format": "json", "content": clean}).json()
    assert again["measurement_uid"] == uid and again["duplicate"] is True

    pages = [*(f"/m/{u}" for u in uids), *(f"/m/{u}.json" for u in uids), *(f"/api/v1/measurement/{u}" for u in uids),
             "/api/v1/export/raw.jsonl", "/api/v1/export/measurements.jsonl", "/search?input=http://address.example/"]
    for path in pages:
        r = client.get(path)
        assert r.status_code == 200 and ADDRESS.encode() not in r.content, path
    # Nowhere on disk either: the raw log (plain JSONL), the store and everything beside it.
    store_dir = Path(client.collector.settings.db_path).parent
    files = [p for p in store_dir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".jsonl" for p in files)
    for p in files:
        assert ADDRESS.encode() not in p.read_bytes(), p


# --------------------------------------------------------------------------- numbers kept exactly


@pytest.mark.parametrize("number", [b"18446744073709551616", b"-9223372036854775809",
                                    b"123456789012345678901234567890"])
def test_integers_beyond_64_bits_are_refused_not_changed(client: SyncClient, number: bytes) -> None:
    m = orjson.dumps(samples.measurement("ok", url="https://big.example/", start="2026-05-23 00:00:00"))
    line = m[:-1] + b',"x_big":' + number + b"}"
    r = client.post("/report/r1", content=b'{"format":"json","content":' + line + b"}")
    assert r.status_code == 422 and r.json()["error"] == "invalid_measurement", r.text
    detail = r.json()["detail"]
    assert number.decode() in detail and "64 bits" in detail and "\n" not in detail
    bulk = client.post("/api/v1/submit", content=line)
    assert bulk.status_code == 422 and bulk.json()["results"][0]["error"] == "invalid_measurement"


def test_integers_within_64_bits_and_digits_in_strings_are_kept_exactly(client: SyncClient) -> None:
    m = samples.measurement("ok", url="https://exact.example/", start="2026-05-23 00:00:01")
    m["test_keys"].update(x_max=2**64 - 1, x_min=-2**63, x_text="18446744073709551617 in a string",
                          x_float=1.5e300)
    sent = orjson.dumps(m)
    out = client.post("/api/v1/submit", content=sent).json()
    assert out["stored"] == 1, out
    got = client.get(f"/api/v1/measurement/{out['results'][0]['measurement_uid']}").content
    assert got == sent  # already canonical, so stored as sent
    assert b'"x_max":18446744073709551615' in got and b'"x_min":-9223372036854775808' in got


# --------------------------------------------------------------------------- bodies that are not UTF-8


@pytest.mark.parametrize("encode", [
    lambda b: gzip.compress(b), lambda b: b.decode().encode("utf-16"), lambda b: b.replace(b"Vodafone", b"Vodaf\xf6ne"),
], ids=["gzip", "utf-16", "latin-1"])
def test_a_body_that_is_not_utf8_is_told_so(client: SyncClient, encode: object) -> None:
    body = orjson.dumps({"format": "json", "content": samples.measurement("ok", start="2026-05-24 00:00:00")})
    sent = encode(body)  # type: ignore[operator]
    r = client.post("/report/r1", content=sent)
    assert r.status_code == 400 and r.json()["error"] == "invalid_json"
    assert "not UTF-8" in r.json()["detail"] and "surrogates" not in r.json()["detail"]
    line = client.post("/api/v1/submit", content=sent).json()["results"][0]
    assert line["error"] == "invalid_json" and line["detail"].startswith("the line is not UTF-8")


def test_gzip_is_named(client: SyncClient) -> None:
    r = client.post("/report/r1", content=gzip.compress(b'{"format": "json"}'))
    assert "gzip" in r.json()["detail"]


# --------------------------------------------------------------------------- Retry-After of the bulk endpoint


def test_bulk_retry_after_is_the_real_wait(tmp_path: Path) -> None:
    settings = Settings(db_path=tmp_path / "r.duckdb", announce=False, submit_rate=1, submit_burst=10, read_rate=0)
    with running_app(settings) as c:
        clock = [1000.0]
        c.collector.submit_limiter.now = lambda: clock[0]
        lines = [orjson.dumps(samples.measurement("ok", url=f"https://rate{i}.example/", start="2026-05-25 00:00:00"))
                 for i in range(10)]
        body = b"\n".join(lines)
        assert c.post("/api/v1/submit", content=body).status_code == 200  # the burst: 10 tokens
        clock[0] += 2.0  # two tokens back: the request takes one, its nine other lines need eight more
        r = c.post("/api/v1/submit", content=body)
        assert r.status_code == 429 and r.json()["error"] == "rate_limited"
        assert "retry in 8 s" in r.json()["detail"] and r.headers["retry-after"] == "8"
        clock[0] += 0.5  # half a token more, and this request takes one again: 8.5 s, rounded up
        r = c.post("/api/v1/submit", content=body)
        # the detail says what the header says (QA: "retry in 0.0 s" beside Retry-After: 1)
        assert "retry in 9 s" in r.json()["detail"] and r.headers["retry-after"] == "9"
        clock[0] += 9.5  # exactly what the bucket needs for the whole request
        assert c.post("/api/v1/submit", content=body).status_code == 200



def test_bulk_bigger_than_the_burst_passes_once_the_bucket_is_full(tmp_path: Path) -> None:
    """The middleware takes a request's first token; the bulk endpoint asked the whole burst on top, which a
    bucket holding burst - 1 never had: any bulk of more lines than the burst was 429 forever (the
    default burst is 400, and the outbox retries a 429 until it gives up)."""
    settings = Settings(db_path=tmp_path / "r.duckdb", announce=False, submit_rate=1, submit_burst=3, read_rate=0)
    with running_app(settings) as c:
        clock = [1000.0]
        c.collector.submit_limiter.now = lambda: clock[0]
        body = b"\n".join(orjson.dumps(samples.measurement("ok", url=f"https://big{i}.example/",
                                                           start="2026-05-25 00:00:00")) for i in range(10))
        r = c.post("/api/v1/submit", content=body)
        assert r.status_code == 200 and r.json()["stored"] == 10
        clock[0] += 1.0  # one token back, but the 7 lines beyond the burst are owed: 7 s more before one is there
        r = c.post("/api/v1/submit", content=body)
        assert r.status_code == 429 and "retry in 7 s" in r.json()["detail"]
        clock[0] += 9.0  # paid back, and full again
        r = c.post("/api/v1/submit", content=body)
        assert r.status_code == 200 and r.json()["duplicates"] == 10
    settings = Settings(db_path=tmp_path / "one.duckdb", announce=False, submit_rate=1, submit_burst=1, read_rate=0)
    with running_app(settings) as c:
        assert c.post("/api/v1/submit", content=body).status_code == 200  # a burst of one: one request at a time

def test_bulks_bigger_than_the_burst_send_no_more_than_the_rate_over_time(tmp_path: Path) -> None:
    """A bulk bigger than the burst cost the burst at most: 5,000-line bulks every 20 s stored ~256 measurements/s
    against --rate 20. What it costs beyond the burst is owed, so over a minute a client sending such bulks as
    fast as it is let gets the rate's worth through, and a burst."""
    settings = Settings(db_path=tmp_path / "r.duckdb", announce=False, submit_rate=2, submit_burst=5, read_rate=0)
    with running_app(settings) as c:
        clock = [1000.0]
        c.collector.submit_limiter.now = lambda: clock[0]
        sent = 0
        for n in range(60):  # a bulk of 20 lines each second, for a minute
            body = b"\n".join(orjson.dumps(samples.measurement("ok", url=f"https://rate{n}-{i}.example/",
                                                               start="2026-05-25 00:00:00")) for i in range(20))
            r = c.post("/api/v1/submit", content=body)
            assert r.status_code in (200, 429), r.text
            sent += r.json()["stored"] if r.status_code == 200 else 0
            clock[0] += 1.0
        assert 0 < sent <= 2 * 60 + 5 + 20, sent  # the rate's 120, the burst, one bulk owed; was 600


def test_area_pages_parse_each_anomaly_once_for_its_hop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Country, network and domain pages list the hops of up to 300 recent anomalies; each view used to
    parse every one of their raw measurements again (5 MiB each, at worst). A measurement with no
    ``x_hop`` is not parsed at all, and a known one is not read again."""
    from tamperscope.analysis import pipeline
    from tamperscope.analysis.aggregates import Filters
    from tamperscope.analysis.store import Store
    from tamperscope.collector import queries

    hop = {"ttl": 4, "ip": "198.18.7.1", "asn": "AS12389", "name": "DPI"}
    ms = [samples.measurement("dns.poison", url=f"https://h{i}.example/", probe_cc="RU", probe_asn="AS12389",
                              start=f"2026-05-2{i} 00:00:00", hop=hop if i % 2 else None) for i in range(6)]
    with Store(tmp_path / "s.duckdb") as store:
        pipeline.ingest(store, [orjson.dumps(m) for m in ms])
        store.flush()
        reader = queries.Reader(store)
        parsed: list[bytes] = []
        loads = queries.orjson.loads

        def counting(data: bytes) -> object:
            parsed.append(data)
            return loads(data)

        monkeypatch.setattr(queries.orjson, "loads", counting)
        first = queries.hops(reader, Filters(probe_cc="RU"))
        assert [h["measurement_count"] for h in first] == [3] and len(parsed) == 3  # the three with a hop
        assert first[0]["example_uid"] == reader.cursor().execute(
            "SELECT measurement_uid FROM measurements WHERE input = 'https://h5.example/'").fetchone()[0]

        def no_raw(uids: object) -> Iterator[tuple[str, bytes]]:
            assert list(uids) == []  # type: ignore[call-overload]
            return iter(())

        monkeypatch.setattr(reader, "raw_each", no_raw)
        assert queries.hops(reader, Filters(probe_cc="RU")) == first and len(parsed) == 3


def test_a_snapshot_sees_one_moment_while_submissions_are_written(tmp_path: Path) -> None:
    """A page's or the report's queries in `bounded(snapshot=True)` read the store as it was at their first: a
    flush committed between them (the collector writes while pages are read) shows only after, so a total and
    the table under it cannot disagree. Without the snapshot each query saw its own moment."""
    import threading

    from tamperscope.analysis import aggregates, pipeline
    from tamperscope.analysis.store import Store
    from tamperscope.collector import queries

    def batch(start: int) -> list[bytes]:
        return [orjson.dumps(samples.measurement("dns.poison", url=f"https://s{i}.example/", probe_cc="RU",
                                                 probe_asn="AS12389", start="2026-05-20 00:00:00"))
                for i in range(start, start + 3)]

    with Store(tmp_path / "s.duckdb") as store:
        pipeline.ingest(store, batch(0))
        store.flush()
        reader = queries.Reader(store)

        def write_more() -> None:  # from another thread, as the collector's writer does
            pipeline.ingest(store, batch(3))
            store.flush()

        with reader.bounded(snapshot=True):
            before = aggregates.totals(reader)["measurement_count"]  # type: ignore[arg-type]
            writer = threading.Thread(target=write_more)
            writer.start()
            writer.join()
            assert store.con.cursor().execute("SELECT count(*) FROM verdicts").fetchone() == (6,)  # committed
            during = aggregates.totals(reader)["measurement_count"]  # type: ignore[arg-type]
            listed = sum(d["measurement_count"] for d in aggregates.per_domain(reader))  # type: ignore[arg-type]
        after = aggregates.totals(reader)["measurement_count"]  # type: ignore[arg-type]
        assert (before, during, listed, after) == (3, 3, 3, 6)
        with reader.bounded():  # the cursor is out of its transaction: a plain read sees the latest
            assert aggregates.totals(reader)["measurement_count"] == 6  # type: ignore[arg-type]
        # a snapshot whose query ran out of time leaves the cursor fit for the next request on its thread
        with pytest.raises(queries.QueryTimeout), reader.bounded(0.2, snapshot=True):
            reader.cursor().execute("SELECT count(*) FROM range(100000000000) a, range(10) b").fetchall()
        reader.cursor().execute("BEGIN TRANSACTION")  # and one left open (never, but) is closed, not fatal
        with reader.bounded(snapshot=True):
            assert aggregates.totals(reader)["measurement_count"] == 6  # type: ignore[arg-type]
        reader.close()


# --------------------------------------------------------------------------- what a careless probe sends


def _measurement(url: str, start: str = "2026-05-25 00:00:00") -> dict[str, object]:
    return samples.measurement("ok", url=url, start=start)


def _utc(hours: float) -> str:
    import datetime as dt
    now = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=hours)
    return now.strftime("%Y-%m-%d %H:%M:%S")


@pytest.mark.parametrize("start", ["2024-02-12 20:33:47\n", " 2024-02-12 20:33:47", "2099-01-01 00:00:00", "+25 h"])
def test_a_start_time_with_spaces_around_or_in_the_future_is_refused(client: SyncClient, start: str) -> None:
    """A start a day after the collector's clock sat first in every listing and feed until its time came; one
    with a newline was stored as sent."""
    start = _utc(25) if start == "+25 h" else start
    r = client.post("/report/r1", json={"format": "json", "content": _measurement("https://when.example/", start)})
    assert r.status_code == 422 and r.json()["error"] == "invalid_measurement", r.text
    assert "measurement_start_time" in r.json()["detail"]


@pytest.mark.parametrize("start", ["+2 h", "2024-02-12T20:33:47Z", "2024-02-12T20:33:47.5+05:00"])
def test_a_start_time_a_wrong_clock_or_iso_8601_gives_is_taken(client: SyncClient, start: str) -> None:
    start = _utc(2) if start == "+2 h" else start
    _submit(client, _measurement(f"https://when{''.join(ch for ch in start if ch.isalnum())}.example/", start))


@pytest.mark.parametrize("headers", [{"Content-Encoding": "gzip"}, {"Content-Encoding": "br"},
                                     {"Content-Type": "application/json; charset=iso-8859-1"},
                                     {"Content-Type": "application/json; charset=\"UTF-16\""}])
def test_a_body_declared_compressed_or_in_another_charset_is_refused(client: SyncClient,
                                                                     headers: dict[str, str]) -> None:
    """Such a body was stored as if it were plain UTF-8 whenever its bytes happened to parse."""
    body = orjson.dumps({"format": "json", "content": _measurement("https://caf\u00e9.example/")})
    for path in ("/report/r1", "/api/v1/submit"):
        r = client.post(path, content=body, headers=headers)
        assert r.status_code == 400 and r.json()["error"] == "invalid_json", (path, r.text)
        assert ("Content-Encoding" in r.json()["detail"]) == ("Content-Encoding" in headers)
    ok = client.post("/report/r1", content=body, headers={"Content-Type": "application/json; charset=utf-8",
                                                          "Content-Encoding": "identity"})
    assert ok.status_code == 200, ok.text


def test_an_integer_of_hundreds_of_digits_is_refused_as_the_docs_say(client: SyncClient) -> None:
    m = orjson.dumps(_measurement("https://digits.example/"))[:-1] + b',"x_big":1' + b"0" * 400 + b"}"
    r = client.post("/report/r1", content=b'{"format":"json","content":' + m + b"}")
    assert r.status_code == 422 and r.json()["error"] == "invalid_measurement"
    assert "send it as a string" in r.json()["detail"]


def test_nesting_too_deep_to_store_says_so(client: SyncClient) -> None:
    m = _measurement("https://deep.example/")
    m["test_keys"] = {"x": orjson.loads(b"[" * 300 + b"]" * 300)}
    r = client.post("/report/r1", json={"format": "json", "content": m})
    assert r.status_code == 422 and r.json()["detail"].endswith("nested more than 254 levels deep"), r.text


def test_wrong_types_are_named_with_their_article(client: SyncClient) -> None:
    m = _measurement("https://types.example/")
    m["input"] = ["https://types.example/"]
    r = client.post("/report/r1", json={"format": "json", "content": m})
    assert r.status_code == 422 and "input is an array, not a string" in r.json()["detail"]


def test_a_bulk_line_without_content_is_refused_as_the_report_endpoint_refuses_it(client: SyncClient) -> None:
    r = client.post("/api/v1/submit", content=b'{"format": "json"}')
    assert r.json()["results"][0]["error"] == "missing_content"
    assert client.post("/report/r1", content=b'{"format": "json"}').json()["error"] == "missing_content"


def test_an_as_number_beyond_32_bits_is_refused_and_a_country_only_in_ascii(client: SyncClient) -> None:
    """AS9999999999 matched the pattern, was stored under AS0 and titled a page no link reached; "ır" upper-cased
    is "IR": Iran's page at an address the API refuses."""
    m = samples.measurement("ok", url="https://asn.example/", start="2026-05-26 00:00:00", probe_asn="AS9999999999")
    r = client.post("/report/r1", json={"format": "json", "content": m})
    assert r.status_code == 422 and "at most AS4294967295" in r.text, r.text
    r = client.post("/report", json={"format": "json", "test_name": "web_connectivity", "probe_cc": "IR",
                                     "probe_asn": "AS4294967296", "software_name": "t", "software_version": "1"})
    assert r.status_code == 400 and "probe_asn is missing or malformed" in r.text, r.text
    m["probe_asn"], m["probe_cc"] = "AS4294967295", "IR"  # the last AS number there is
    assert _submit(client, m)
    client.run(client.collector.ingestor.settled)
    assert client.get("/country/IR").status_code == client.get("/country/ir").status_code == 200
    for odd in ("%C4%B1r", "%C4%B1r.json", "\u0131r"):  # ı: a dotless i, upper-cased to I
        assert client.get(f"/country/{odd}").status_code == 404, odd
    assert client.get("/network/%D9%A1%D9%A2").status_code == 404  # Arabic-Indic digits are no AS number


def test_a_csv_export_carries_no_control_or_bidi_character_as_it_is(client: SyncClient) -> None:
    """NUL, ESC and bidi controls went raw into the CSV exports (a terminal ran the ESC, a sheet reordered the
    row around the RLO); they are shown as the HTML pages show them: U+FFFD, and the escape that names a bidi
    control. The raw JSONL export keeps the measurement as it came."""
    m = samples.measurement("ok", url="https://csv-\u202etxt.exe.example/", start="2026-05-26 00:00:01",
                            probe_cc="BY")
    m["probe_network_name"] = "Net\x00work \x1b[31mred\u2066"
    _submit(client, m)
    client.run(client.collector.ingestor.settled)
    text = client.get("/api/v1/export/measurements.csv", params={"probe_cc": "BY"}).text
    assert "csv-\\u202etxt.exe.example" in text and "Net\ufffdwork \ufffd[31mred\\u2066" in text, text
    assert not any(c in text for c in "\x00\x1b\u202e\u2066")
    raw = client.get("/api/v1/export/raw.jsonl", params={"probe_cc": "BY"}).content
    assert orjson.loads(raw.splitlines()[0])["probe_network_name"] == "Net\x00work \x1b[31mred\u2066"


def test_submissions_are_parsed_checked_and_scrubbed_off_the_event_loop(client: SyncClient,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """10 submissions of 4.8 MB full of the submitter's address's first octets took 1.2 s each to scrub, on the
    event loop: every other request waited 6 s. The work runs on worker threads, where no event loop runs."""
    import asyncio

    from tamperscope.collector import submissions

    where: list[bool] = []
    real = submissions.serialise

    def serialise(*args: object) -> bytes:
        try:
            asyncio.get_running_loop()
            where.append(True)  # on the event loop
        except RuntimeError:
            where.append(False)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(submissions, "serialise", serialise)
    _submit(client, samples.measurement("ok", url="https://loop1.example/", start="2026-05-26 00:00:02"))
    bulk = b"\n".join(orjson.dumps(samples.measurement("ok", url=f"https://loop{i}.example/",
                                                       start="2026-05-26 00:00:03")) for i in (2, 3))
    assert client.post("/api/v1/submit", content=bulk).json()["stored"] == 2
    assert where == [False, False, False]


# --------------------------------------------------------------------------- submissions a web page forges

CROSS_SITE = [{"Origin": "http://evil.example", "Content-Type": "text/plain"},  # a form posted as text/plain
              {"Origin": "null"},  # a sandboxed page, a data: URL
              {"Origin": "http://testserver.evil.example"},
              {"Sec-Fetch-Site": "cross-site"},
              {"Sec-Fetch-Site": "same-site", "Origin": "http://testserver"}]


@pytest.mark.parametrize("headers", CROSS_SITE)
@pytest.mark.parametrize("path", ["/report/r1", "/api/v1/submit", "/report"])
def test_a_submission_a_web_page_of_another_site_makes_is_refused(client: SyncClient, headers: dict[str, str],
                                                                 path: str) -> None:
    # Any web page could have its visitors' browsers submit forged measurements, from as many addresses as it
    # has visitors: a text/plain form or a no-cors fetch needs no preflight (QA). Browsers say where from.
    m = _measurement("https://forged.example/")
    body = orjson.dumps(m if path == "/api/v1/submit" else {"format": "json", "content": m})
    before = client.get("/api/v1/measurements", params={"domain": "forged.example"}).json()["metadata"]["count"]
    r = client.post(path, content=body, headers=headers)
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "cross_origin" and "another site" in r.json()["detail"]
    assert client.get("/api/v1/measurements", params={"domain": "forged.example"}).json()["metadata"]["count"] == before


@pytest.mark.parametrize("headers", [{}, {"Content-Type": "application/json"}, {"Origin": "http://testserver"},
                                     {"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"}])
def test_probes_and_pages_of_this_site_still_submit(client: SyncClient, headers: dict[str, str]) -> None:
    n = len(headers) + 7 * sum(map(len, headers.values()))
    r = client.post("/report/r1", content=orjson.dumps({"format": "json", "content": _measurement(
        f"https://same{n}.example/")}), headers=headers)
    assert r.status_code == 200, r.text
