"""The analysis store: ingest of the 50 shared OONI samples, idempotence, raw data, migrations, export, aggregates."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tamperscope.analysis import aggregates, pipeline, reader
from tamperscope.analysis import store as st
from tamperscope.analysis.aggregates import Filters
from tamperscope.analysis.confidence import GROUP_KEY_SQL, insert_verdicts
from tamperscope.analysis.schema import rows_to_table
from tamperscope.analysis.store import Store, StoreError

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"


def _sample_paths() -> list[Path]:
    return sorted(p / "measurement.json" for p in SAMPLES.iterdir() if (p / "measurement.json").is_file())


@pytest.fixture()
def ingested(tmp_path: Path) -> Store:
    store = Store(tmp_path / "s.duckdb")
    stats = pipeline.run([str(SAMPLES)], store)
    assert (stats.accepted, stats.new, stats.rejected) == (50, 50, 0)
    return store


def test_ingest_of_the_fifty_samples(ingested: Store) -> None:
    store = ingested
    assert store.count("measurements") == store.count("verdicts") == 50
    steps = store.cursor().execute("SELECT step, count(*) FROM observations GROUP BY step").fetchall()
    assert {s for s, _ in steps} == {"dns", "tcp", "tls", "http"}
    # one observation per archival record
    expected = 0
    for path in _sample_paths():
        tk = json.loads(path.read_text())["test_keys"]
        expected += sum(len(tk.get(k) or []) for k in
                        ("queries", "x_dns_duplicate_responses", "tcp_connect", "tls_handshakes", "requests"))
    assert store.count("observations") == expected
    row = store.cursor().execute(
        "SELECT test_name, probe_cc, probe_asn, day FROM measurements LIMIT 1").fetchone()
    assert row == ("web_connectivity", "IT", "AS137", dt.date(2024, 2, 12))
    store.close()


def test_verdict_evidence_points_at_observations(ingested: Store) -> None:
    cur = ingested.cursor()
    missing = cur.execute("""
        SELECT v.measurement_uid, e FROM verdicts v, unnest(v.evidence) AS t(e)
        WHERE e LIKE 'test_keys.queries[%' OR e LIKE 'test_keys.tcp_connect[%'
           OR e LIKE 'test_keys.tls_handshakes[%' OR e LIKE 'test_keys.requests[%'
        EXCEPT SELECT measurement_uid, pointer FROM observations""").fetchall()
    assert missing == []
    ingested.close()


def test_ingesting_twice_leaves_one_row(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    first = pipeline.run([str(SAMPLES)], store)
    again = pipeline.run([str(SAMPLES)], store, pipeline.Options(reread=True))  # read again, on purpose
    assert (first.new, again.new, again.duplicates) == (50, 0, 50)
    skipped = pipeline.run([str(SAMPLES)], store)  # by default the unchanged files are not even opened
    assert (skipped.records, skipped.files_known) == (0, 50)
    # the same measurements re-serialised (compact JSONL, keys reordered) are still the same ones
    compact = tmp_path / "compact.jsonl"
    compact.write_bytes(b"\n".join(orjson.dumps(dict(reversed(json.loads(p.read_text()).items())))
                                   for p in _sample_paths()))
    third = pipeline.run([str(compact), str(compact)], store)
    assert (third.new, third.duplicates) == (0, 100)
    for table in ("measurements", "verdicts"):
        assert store.count(table) == 50
    raw_files = sorted(store.raw_root.rglob("*.jsonl.zst"))
    assert len(raw_files) == 1  # runs that added nothing wrote no raw bytes
    store.close()


@pytest.mark.parametrize("flush_rows", [7, st.FLUSH_ROWS])
def test_duplicates_across_batches_and_flushes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               flush_rows: int) -> None:
    monkeypatch.setattr(st, "FLUSH_ROWS", flush_rows)
    store = Store(tmp_path / "s.duckdb")
    stats = pipeline.run([str(SAMPLES), str(SAMPLES / "dnsBlockingNXDOMAIN")], store, pipeline.Options(batch_size=5))
    assert (stats.new, stats.duplicates) == (50, 1)
    assert store.count("measurements") == 50
    assert store.cursor().execute("SELECT count(DISTINCT measurement_uid) FROM observations").fetchone() == (50,)
    once = Store(tmp_path / "once.duckdb")
    pipeline.run([str(SAMPLES)], once)
    assert store.count("observations") == once.count("observations")  # the repeat added no steps
    store.close()
    once.close()


def test_dedup_reads_only_the_row_groups_of_the_flushs_times(tmp_path: Path) -> None:
    # 600,000 stored measurements in time order (OONI's archive comes a day at a time), keys random.
    store = Store(tmp_path / "s.duckdb")
    store.con.execute("""
        INSERT INTO measurements (measurement_uid, uid_key, test_name, probe_cc, probe_asn,
                                  measurement_start_time, day)
        SELECT 'u' || i, (hash(i) >> 1)::BIGINT, 'web_connectivity', 'IT', 'AS137',
               TIMESTAMP '2024-01-01' + to_seconds(i * 10), (TIMESTAMP '2024-01-01' + to_seconds(i * 10))::DATE
        FROM range(600000) r(i)""")
    old_key, old_start = store.con.execute(
        "SELECT uid_key, measurement_start_time FROM measurements WHERE measurement_uid = 'u300000'").fetchone()
    fields = {name: None for name in st.MEASUREMENT_SCHEMA.names}
    flush = rows_to_table([
        tuple({**fields, "measurement_uid": "u300000", "uid_key": old_key, "measurement_start_time": old_start,
               "test_name": "web_connectivity"}.values()),                       # stored already
        tuple({**fields, "measurement_uid": "new", "uid_key": 12345, "test_name": "web_connectivity",
               "measurement_start_time": old_start + dt.timedelta(minutes=5)}.values()),  # same day, new
    ], st.MEASUREMENT_SCHEMA)
    profile = tmp_path / "profile.json"
    store.con.execute("SET enable_profiling = 'json'")
    store.con.execute(f"SET profiling_output = '{profile}'")
    known = store._known(flush)
    store.con.execute("SET enable_profiling = 'no_output'")
    assert list(known.values()) == [("u300000", "AS137")]

    def scans(node: dict) -> list[dict]:
        here = [node] if node.get("extra_info", {}).get("Table", "").endswith(".measurements") else []
        return here + [s for child in node.get("children", ()) for s in scans(child)]

    (scan,) = [s for op in json.loads(profile.read_text())["operator"] for s in scans(op)]
    assert scan["total_row_groups_to_scan"] >= 4
    assert scan["row_groups_scanned"] == 1  # the one that holds the flush's times
    store.close()


def test_raw_is_kept_verbatim(tmp_path: Path) -> None:
    lines = [orjson.dumps(json.loads(p.read_text())) for p in _sample_paths()[:10]]
    lines[3] = lines[3].replace(b'"test_keys":{', b'"test_keys" : {', 1)  # odd whitespace is kept as is
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    store = Store(tmp_path / "s.duckdb")
    pipeline.run([str(path)], store)
    uids = [r[0] for r in store.cursor().execute(
        "SELECT measurement_uid FROM measurements ORDER BY source, raw_frame_offset, raw_line_offset").fetchall()]
    got = sorted(store.raw(u) or b"" for u in uids)
    assert got == sorted(lines)
    assert store.raw("nope") is None
    # the raw directory is itself valid input: the store can be rebuilt from it alone
    rebuilt = Store(tmp_path / "rebuilt.duckdb")
    stats = pipeline.run([str(store.raw_root)], rebuilt)
    assert stats.new == 10
    assert sorted(r[0] for r in rebuilt.cursor().execute("SELECT measurement_uid FROM verdicts").fetchall()) == \
        sorted(uids)
    store.close()
    rebuilt.close()


def test_raw_frames_and_segments_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames hold about FRAME_BYTES of lines, a run rolls to a new segment past SEGMENT_BYTES, and every
    measurement still reads back verbatim from its frame."""
    monkeypatch.setattr(st, "FRAME_BYTES", 20_000)
    monkeypatch.setattr(st, "SEGMENT_BYTES", 30_000)
    monkeypatch.setattr(st, "FLUSH_ROWS", 9)
    lines = [orjson.dumps(json.loads(p.read_text())) for p in _sample_paths()]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    store = Store(tmp_path / "s.duckdb")
    pipeline.run([str(path)], store, pipeline.Options(batch_size=5))
    rows = store.cursor().execute(
        """SELECT measurement_uid, raw_segment, raw_frame_offset, raw_frame_size, count(*) OVER w
           FROM measurements WINDOW w AS (PARTITION BY raw_segment, raw_frame_offset)""").fetchall()
    assert len(rows) == 50
    for _, _, _, size, members in rows:
        # a frame closes before the line that would take it past FRAME_BYTES (one line alone may exceed it)
        assert members == 1 or size <= 20_000
    assert max(r[4] for r in rows) > 1  # and frames do group lines
    segments = sorted(store.raw_root.rglob("*.jsonl.zst"))
    assert len(segments) >= 2 and len({r[1] for r in rows}) == len(segments)
    assert all(s.parent.name == store.cursor().execute("SELECT max(run_id) FROM runs").fetchone()[0]
               for s in segments)
    assert sorted(store.raw(r[0]) or b"" for r in rows) == sorted(lines)
    store.close()


def test_uid_is_content_derived() -> None:
    m = json.loads(_sample_paths()[0].read_text())
    env = pipeline.envelope(m)
    uid, key = pipeline.content_uid(m, env)
    assert uid.startswith("20240212203347_IT_webconnectivity_") and len(uid.rsplit("_", 1)[1]) == 32
    assert pipeline.content_uid(dict(reversed(m.items())), env) == (uid, key)
    changed = dict(m, report_id="other")
    assert pipeline.content_uid(changed, pipeline.envelope(changed))[0] != uid


def test_the_envelope_keeps_codes_and_names_the_store_can_show_and_partition_by() -> None:
    m = json.loads(_sample_paths()[0].read_text())

    def env(**fields: object) -> pipeline.Envelope:
        return pipeline.envelope(dict(m, **fields))

    assert env(probe_cc=" it ").probe_cc == "IT"
    for hostile in ("<" * 100, "..", "a/b", "ITA", ""):  # a Parquet partition name, markup: unknown, as OONI says
        assert env(probe_cc=hostile).probe_cc == "ZZ"
    assert [env(probe_asn=a).probe_asn for a in ("AS30722", "as0042", "13335", 137)] == ["AS30722", "AS42", "AS13335",
                                                                                         "AS137"]
    for hostile in ('AS1<a href="https://evil.example/">x</a>', "AS99999999999", "ASN", "-1"):
        assert env(probe_asn=hostile).probe_asn == "AS0"
    assert pipeline.domain_of("web_connectivity", "http://<script>alert(1)</script>/") is None
    assert pipeline.domain_of("web_connectivity", "http://a b.example/") is None
    assert pipeline.domain_of("web_connectivity", "https://WWW.Example.com./x") == "www.example.com"
    assert pipeline.domain_of("web_connectivity", "https://яндекс.рф/") == "яндекс.рф"
    assert pipeline.domain_of("web_connectivity", "https://xn--d1acpjx3f.xn--p1ai/") == "яндекс.рф"
    assert pipeline.domain_of("dnscheck", "dns.google") == "dns.google"


def test_the_uid_has_fourteen_digits_of_time_whatever_the_year() -> None:
    m = dict(json.loads(_sample_paths()[0].read_text()), measurement_start_time="0001-02-03 04:05:06")
    uid, _ = pipeline.content_uid(m, pipeline.envelope(m))
    assert uid.startswith("00010203040506_IT_webconnectivity_")


# --------------------------------------------------------------------------- migrations


def test_migrations_from_version_one(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    assert st.migrate(con, target=1) == [1]
    cols = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns "
                                      "WHERE table_name = 'verdicts'").fetchall()}
    assert "outcome" not in cols
    rows = [("u1", "dns.poison", "anomaly", []), ("u2", "dns.poison", "anomaly", []),
            ("u3", "tcp.rst", "anomaly", []), ("u4", "http.blockpage", "anomaly", ["cp/x"]),
            ("u5", "none", "ok", []), ("u6", "none", "failure", [])]
    for uid, mechanism, status, fps in rows:
        asn = "AS2" if uid == "u3" else "AS1"
        con.execute("""INSERT INTO verdicts (measurement_uid, test_name, input, probe_cc, probe_asn, day,
                       measurement_start_time, mechanism, status, fingerprints)
                       VALUES (?, 'web_connectivity', 'http://x/', 'IT', ?, DATE '2024-01-01',
                       TIMESTAMP '2024-01-01', ?, ?, ?)""", [uid, asn, mechanism, status, fps])
    con.close()
    store = Store(path)
    assert store.migrated == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12] and store.version == st.SCHEMA_VERSION
    got = dict(store.cursor().execute("SELECT measurement_uid, outcome FROM verdicts").fetchall())
    assert got == {"u1": "confirmed", "u2": "confirmed", "u3": "anomaly", "u4": "confirmed", "u5": "ok",
                   "u6": "failure"}
    history = store.cursor().execute("SELECT version FROM migrations ORDER BY version").fetchall()
    assert history == [(1,), (2,), (3,), (4,), (5,), (6,), (7,), (8,), (9,), (10,), (11,), (12,)]
    # version 3 counted the anomalies per group, so the next ingest labels from the counts;
    # version 5 keyed each group (the ingest below finds AS2's by that key)
    groups = store.cursor().execute("SELECT probe_asn, mechanism, anomalies FROM anomaly_groups ORDER BY ALL")
    assert groups.fetchall() == [("AS1", "dns.poison", 2), ("AS1", "http.blockpage", 1), ("AS2", "tcp.rst", 1)]
    keys = store.cursor().execute(f"SELECT count(DISTINCT gkey), count(*) FILTER (gkey = {GROUP_KEY_SQL}) "
                                  "FROM anomaly_groups").fetchone()
    assert keys == (3, 3)
    lone = store.cursor().execute("SELECT probe_asn, mechanism, lone_uid FROM anomaly_groups ORDER BY ALL")
    assert lone.fetchall() == [("AS1", "dns.poison", None), ("AS1", "http.blockpage", "u4"), ("AS2", "tcp.rst", "u3")]
    new = pa.table({"measurement_uid": ["u7"], "test_name": ["web_connectivity"], "input": ["http://x/"],
                    "probe_cc": ["IT"], "probe_asn": ["AS2"], "day": [dt.date(2024, 1, 2)],
                    "measurement_start_time": [dt.datetime(2024, 1, 2)], "mechanism": ["tcp.rst"],
                    "status": ["anomaly"], "outcome": ["anomaly"]})
    con = store.con
    con.execute("BEGIN TRANSACTION")
    insert_verdicts(con, new)
    con.execute("COMMIT")
    got = dict(store.cursor().execute("SELECT measurement_uid, outcome FROM verdicts").fetchall())
    assert got["u3"] == got["u7"] == "confirmed"
    store.close()
    assert Store(path).migrated == []  # nothing left to do


def test_a_version_4_store_keeps_its_counts_and_notes_through_version_5(tmp_path: Path) -> None:
    """v5 keys the groups: counts and a streaming run's leftover notes still work after it."""
    path = tmp_path / "v4.duckdb"
    con = duckdb.connect(str(path))
    assert st.migrate(con, target=4) == [1, 2, 3, 4]
    for uid, outcome in (("u1", "anomaly"), ("u2", "confirmed")):
        con.execute("""INSERT INTO verdicts (measurement_uid, test_name, input, probe_cc, probe_asn, day,
                       measurement_start_time, mechanism, status, fingerprints, outcome)
                       VALUES (?, 'web_connectivity', NULL, 'IT', 'AS1', DATE '2024-01-01',
                       TIMESTAMP '2024-01-01', 'tcp.rst', 'anomaly', [], ?)""", [uid, outcome])
    con.execute("INSERT INTO anomaly_groups VALUES ('web_connectivity', '', 'AS1', 'tcp.rst', 2)")
    con.execute("INSERT INTO promotions VALUES ('web_connectivity', '', 'AS1', 'tcp.rst')")  # a run stopped
    con.close()
    store = Store(path)
    assert store.migrated == [5, 6, 7, 8, 9, 10, 11, 12]
    got = dict(store.cursor().execute("SELECT measurement_uid, outcome FROM verdicts").fetchall())
    assert got == {"u1": "confirmed", "u2": "confirmed"}  # the note a stopped run left, applied by v5
    assert store.cursor().execute("SELECT count(*) FROM promotions").fetchone() == (0,)
    new = pa.table({"measurement_uid": ["u3"], "test_name": ["web_connectivity"],
                    "input": pa.array([None], pa.string()), "probe_cc": ["IT"], "probe_asn": ["AS1"],
                    "day": [dt.date(2024, 1, 2)],
                    "measurement_start_time": [dt.datetime(2024, 1, 2)], "mechanism": ["tcp.rst"],
                    "status": ["anomaly"], "outcome": ["anomaly"]})
    store.con.execute("BEGIN TRANSACTION")
    insert_verdicts(store.con, new)
    store.con.execute("COMMIT")
    rows = store.cursor().execute("SELECT anomalies, gkey = " + GROUP_KEY_SQL + " FROM anomaly_groups").fetchall()
    assert rows == [(3, True)]  # the migrated group was found, not added again
    assert store.cursor().execute("SELECT outcome FROM verdicts WHERE measurement_uid = 'u3'").fetchone() == (
        "confirmed",)


def test_version_10_renames_the_reasons_that_named_gzip_for_every_format(tmp_path: Path) -> None:
    """Before v10 a cut .zst or tar archive was stored as `truncated_gzip`, a damaged one as `corrupt_gzip`."""
    path = tmp_path / "v9.duckdb"
    con = duckdb.connect(str(path))
    assert st.migrate(con, target=9)[-1] == 9
    old = [("r1", "a.jsonl.zst", 7, "truncated_gzip", "ends early"), ("r1", "b.tar", 0, "corrupt_gzip", "bad header"),
           ("r1", "c.jsonl", 3, "corrupt_json", "unexpected character")]
    con.executemany("INSERT INTO rejections VALUES (?, ?, ?, ?, ?)", old)
    con.close()
    store = Store(path)
    assert store.migrated == [10, 11, 12]
    rows = store.cursor().execute("SELECT source, line, reason, detail FROM rejections ORDER BY source").fetchall()
    assert rows == [("a.jsonl.zst", 7, "truncated", "ends early"), ("b.tar", 0, "damaged", "bad header"),
                    ("c.jsonl", 3, "corrupt_json", "unexpected character")]
    assert {"truncated", "damaged"} <= set(reader.REASONS) and not {"truncated_gzip", "corrupt_gzip"} & set(
        reader.REASONS)
    store.close()


def test_promotions_a_run_left_are_made_when_the_store_opens(tmp_path: Path) -> None:
    """A streaming ingest confirms older anomalies at its end; one that stopped before leaves notes."""
    path = tmp_path / "s.duckdb"
    store = Store(path)
    common = {"test_name": ["web_connectivity"], "input": ["http://x/"], "probe_cc": ["IT"], "probe_asn": ["AS1"],
              "day": [dt.date(2024, 1, 1)], "mechanism": ["tcp.rst"], "status": ["anomaly"], "outcome": ["anomaly"]}
    for uid, minute in (("u1", 0), ("u2", 1)):
        store.con.execute("BEGIN TRANSACTION")
        insert_verdicts(store.con, pa.table({"measurement_uid": [uid], **common,
                                             "measurement_start_time": [dt.datetime(2024, 1, 1, 0, minute)]}),
                        defer=True)
        store.con.execute("COMMIT")
    labels = "SELECT measurement_uid, outcome FROM verdicts ORDER BY 1"
    assert store.con.execute(labels).fetchall() == [("u1", "anomaly"), ("u2", "confirmed")]  # u1 waits
    store.close()  # the run stops here
    store = Store(path)
    assert store.con.execute(labels).fetchall() == [("u1", "confirmed"), ("u2", "confirmed")]
    assert store.con.execute("SELECT count(*) FROM promotions").fetchone() == (0,)
    store.close()


def test_a_streaming_ingest_confirms_older_anomalies_at_its_end(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    pipeline.run([str(SAMPLES / "dnsBlockingNXDOMAIN")], store)
    (before,) = store.con.execute("SELECT outcome FROM verdicts").fetchone()
    # the same measurement from another report is a second anomaly of its group
    other = json.loads((SAMPLES / "dnsBlockingNXDOMAIN" / "measurement.json").read_text())
    other["report_id"] = "20240212T203347Z_webconnectivity_IT_137_n1_another"
    again = tmp_path / "again.jsonl"
    again.write_bytes(orjson.dumps(other))
    pipeline.run([str(again)], store)
    after = store.con.execute("SELECT outcome FROM verdicts").fetchall()
    assert before == "anomaly" and after == [("confirmed",), ("confirmed",)]
    assert store.con.execute("SELECT count(*) FROM promotions").fetchone() == (0,)
    store.close()


def test_a_newer_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.duckdb"
    Store(path).close()
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO migrations VALUES (99, 'from the future', now()::TIMESTAMP)")
    con.close()
    with pytest.raises(StoreError, match="newer than this tamperscope"):
        Store(path)


def test_a_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no store at"):
        Store(tmp_path / "absent.duckdb", create=False)


# --------------------------------------------------------------------------- export


def test_parquet_export_partitioned_by_day_and_country(ingested: Store, tmp_path: Path) -> None:
    out = tmp_path / "export"
    counts = ingested.export_parquet(out)
    assert counts["verdicts"] == 50 and counts["measurements"] == 50 and counts["observations"] > 50
    for table in ("measurements", "verdicts", "observations"):
        files = list((out / table).rglob("*.parquet"))
        assert files and all("day=2024-02-12" in str(f) and "probe_cc=IT" in str(f) for f in files)
    table = pq.read_table(out / "verdicts")
    assert table.num_rows == 50
    again = ingested.export_parquet(out)  # re-export over an existing directory
    assert again == counts
    ingested.close()


def test_a_re_export_replaces_the_old_one_and_keeps_other_files(tmp_path: Path) -> None:
    out = tmp_path / "export"
    big = Store(tmp_path / "big.duckdb")
    pipeline.run([str(SAMPLES)], big)
    big.export_parquet(out)
    big.close()
    (out / "notes.txt").write_text("mine")
    # another store: ten of the measurements, another day and country
    lines = []
    for p in _sample_paths()[:10]:
        m = json.loads(p.read_text())
        m.update(measurement_start_time="2024-03-01 10:00:00", probe_cc="DE")
        lines.append(orjson.dumps(m))
    (tmp_path / "ten.jsonl").write_bytes(b"\n".join(lines))
    small = Store(tmp_path / "small.duckdb")
    pipeline.run([str(tmp_path / "ten.jsonl")], small)
    assert small.export_parquet(out)["verdicts"] == 10
    small.close()
    con = duckdb.connect()
    for table in ("measurements", "verdicts"):
        rows = con.execute(f"SELECT day::VARCHAR, probe_cc, count(*) FROM read_parquet('{out}/{table}/**/*.parquet', "
                           "hive_partitioning = true) GROUP BY ALL").fetchall()
        assert rows == [("2024-03-01", "DE", 10)], (table, rows)  # nothing left of the first export
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["measurements", "notes.txt", "observations",
                                                     "rejections.parquet", "rules", "runs.parquet", "test_lists.parquet",
                                                     "verdicts"]


# --------------------------------------------------------------------------- aggregates


def test_aggregates_return_plain_rows(ingested: Store) -> None:
    for name, fn in aggregates.AGGREGATES.items():
        rows = fn(ingested)
        assert isinstance(rows, list), name
        for row in rows:
            assert isinstance(row, dict)
            assert all(isinstance(v, (str, int, float, type(None))) for v in row.values()), (name, row)
    timeline = aggregates.timeline(ingested)
    assert timeline == [{"day": "2024-02-12", "measurement_count": 50, "anomaly_count": 29, "confirmed_count": 13,
                         "failure_count": 1, "ok_count": 20}]
    mechanisms = {r["mechanism"]: r["measurement_count"] for r in aggregates.per_mechanism(ingested)}
    assert mechanisms["dns.nxdomain"] == 3 and "http.blockpage" in mechanisms
    assert aggregates.per_country(ingested)[0]["probe_cc"] == "IT"
    domains = aggregates.per_domain(ingested, Filters(domain="bit.ly"))
    assert [d["domain"] for d in domains] == ["bit.ly"]
    assert aggregates.timeline(ingested, Filters(since="2024-02-13")) == []
    assert aggregates.timeline(ingested, Filters(until=dt.date(2024, 2, 12)))[0]["measurement_count"] == 50
    assert aggregates.per_network(ingested, Filters(probe_asn="AS137"))[0]["probe_network_name"] == "Consortium GARR"
    ingested.close()


def test_signatures_and_equipment_from_test_keys(tmp_path: Path) -> None:
    m = json.loads(_sample_paths()[0].read_text())
    lines = []
    for i, sig in enumerate([{"id": "ipid=0,ttl=64,win=0", "vendor": "x"}, "ipid=0,ttl=64,win=0", None]):
        tk = dict(m["test_keys"], x_signature=sig, x_equipment="Fortinet FortiGate" if sig else None)
        lines.append(orjson.dumps(dict(m, report_id=f"r{i}", test_keys=tk)))
    path = tmp_path / "sig.jsonl"
    path.write_bytes(b"\n".join(lines))
    store = Store(tmp_path / "s.duckdb")
    pipeline.run([str(path)], store)
    rows = aggregates.signatures(store)
    assert [(r["signature"], r["equipment"], r["measurement_count"]) for r in rows] == \
        [("ipid=0,ttl=64,win=0", "Fortinet FortiGate", 2)]
    store.close()


def test_our_signatures_group_by_their_key_and_equipment_by_name_or_kind(tmp_path: Path) -> None:
    """What our probe writes (model/signature.py: the box's packet traits, its ``key``, and where the packet
    was going) is one signature however many addresses it was forged for; tls_mitm's equipment is named by
    its ``name``, evasion's by its ``kind``."""
    m = json.loads(_sample_paths()[0].read_text())

    def sig(kind: str, key: str, remote: str) -> dict[str, Any]:
        return {"kind": kind, "flags": "RA" if kind == "tcp" else None, "ttl": 127, "initial_ttl": 128,
                "packets": 1, "key": key, "remote": remote}
    rst = "tcp/RA/ttl128/win0/ipid30000"
    marks = [(sig("tcp", rst, "198.19.1.1:443"), {"kind": "dpi", "traits": {"tcp-segments": False}}),
             (sig("tcp", rst, "198.19.2.2:80"), {"kind": "dpi", "traits": {"tcp-segments": True}}),
             (sig("udp", "udp/ttl64/ipid0", "198.19.0.8:53"), None),
             (None, {"kind": "tls-interception", "issuer": "CN=x", "name": "Kazakhtelecom"})]
    lines = [orjson.dumps(dict(m, report_id=f"r{i}", test_keys=dict(m["test_keys"], x_signature=s, x_equipment=e)))
             for i, (s, e) in enumerate(marks)]
    path = tmp_path / "ours.jsonl"
    path.write_bytes(b"\n".join(lines))
    store = Store(tmp_path / "s.duckdb")
    pipeline.run([str(path)], store)
    assert [(r["signature"], r["equipment"], r["measurement_count"]) for r in aggregates.signatures(store)] == [
        (rst, "dpi", 2), ("", "Kazakhtelecom", 1), ("udp/ttl64/ipid0", "", 1)]
    store.close()


def test_signatures_whose_ip_id_changes_per_packet_are_one_row(tmp_path: Path) -> None:
    """A resolver's own answers (or an injector with a random IP-ID) give a key per measurement, alike but for
    the IP-ID: they are one row, ``ipid*``, with how many keys it folds. A key seen twice keeps its row (a fixed
    IP-ID is the box's own), a lone key with no look-alike too, and the fold never crosses equipment."""
    m = json.loads(_sample_paths()[0].read_text())

    def sig(key: str) -> dict[str, Any]:
        return {"kind": key.split("/")[0], "key": key, "remote": "198.19.0.8:53"}
    keys = [("udp/ttl64/ipid11045", None), ("udp/ttl64/ipid11199/fp:cp/x", None), ("udp/ttl64/ipid11201/fp:cp/x", None),
            ("udp/ttl64/ipid11205/fp:cp/x", None), ("tcp/RA/ttl64/win0/ipid0", None), ("tcp/RA/ttl64/win0/ipid0", None),
            ("tcp/RA/ttl64/win0/ipid7", None), ("udp/ttl64/ipid9/fp:cp/x", {"kind": "dpi"})]
    lines = [orjson.dumps(dict(m, report_id=f"r{i}", test_keys=dict(m["test_keys"], x_signature=sig(k), x_equipment=e)))
             for i, (k, e) in enumerate(keys)]
    path = tmp_path / "fold.jsonl"
    path.write_bytes(b"\n".join(lines))
    store = Store(tmp_path / "s.duckdb")
    pipeline.run([str(path)], store)
    rows = {(r["signature"], r["equipment"]): (r["measurement_count"], r["variants"]) for r in aggregates.signatures(store)}
    assert rows == {("udp/ttl64/ipid*/fp:cp/x", ""): (3, 3), ("tcp/RA/ttl64/win0/ipid0", ""): (2, 1),
                    ("tcp/RA/ttl64/win0/ipid7", ""): (1, 1), ("udp/ttl64/ipid11045", ""): (1, 1),
                    ("udp/ttl64/ipid9/fp:cp/x", "dpi"): (1, 1)}
    assert [r["signature"] for r in aggregates.signatures(store, limit=1)] == ["udp/ttl64/ipid*/fp:cp/x"]
    store.close()


def test_default_db_path_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TAMPERSCOPE_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert st.default_db_path() == tmp_path / "tamperscope" / "tamperscope.duckdb"
    monkeypatch.setenv("TAMPERSCOPE_DB", str(tmp_path / "x.duckdb"))
    assert st.default_db_path() == tmp_path / "x.duckdb"


def test_ingest_for_single_submissions(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    data = _sample_paths()[0].read_bytes()
    uids = pipeline.ingest(store, [data, b"{broken", data])
    assert uids[0] is not None and uids[1] is None and uids[2] == uids[0]
    assert store.count("measurements") == 1
    store.close()


def test_an_ingest_caps_duckdb_buffers_and_restores_the_store_limit(tmp_path: Path) -> None:
    """DuckDB's cache fills as the store grows: while `run` streams, it is capped at INGEST_MEMORY_LIMIT."""
    import pyarrow as pa

    def mib(setting: str) -> float:
        number, unit = setting.split()
        return float(number) * {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}[unit]

    store = Store(tmp_path / "s.duckdb", memory_limit="200MB")
    setting = "SELECT current_setting('memory_limit')"
    before = mib(store.cursor().execute(setting).fetchone()[0])
    during: list[float] = []
    pipeline.run([str(SAMPLES)], store, pipeline.Options(batch_size=10),
                 progress=lambda _: during.append(mib(store.cursor().execute(setting).fetchone()[0])))
    after = mib(store.cursor().execute(setting).fetchone()[0])
    assert 180 < before == after < 200
    assert during and all(abs(d - mib("30.5 MiB")) < 1 for d in during)
    assert pa.default_memory_pool().backend_name == "system"  # Arrow's freed pages go back to malloc
    store.close()


def test_a_flush_that_runs_out_of_memory_is_redone_with_more(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The streaming cap is a start, not a wall: out of memory, the flush is rolled back, the cap doubled
    and the flush redone; nothing is counted twice and every raw line is written once."""
    monkeypatch.setattr(st, "INGEST_MEMORY_LIMIT", "1MB")
    store = Store(tmp_path / "s.duckdb", memory_limit="512MB")
    stats = pipeline.run([str(SAMPLES)], store)
    assert store.streaming_limit_raised >= 1  # 1 MB is not enough for the first flush
    assert (stats.records, stats.accepted, stats.new, stats.duplicates) == (50, 50, 50, 0)
    assert store.count("measurements") == store.count("verdicts") == 50
    segments = sorted(store.raw_root.rglob("*.jsonl.zst"))
    lines = b"".join(pa.CompressedInputStream(pa.OSFile(str(f)), "zstd").read() for f in segments).splitlines()
    assert len(lines) == 50  # the retried flush reused the frames it had written
    uids = [r[0] for r in store.cursor().execute("SELECT measurement_uid FROM measurements").fetchall()]
    assert all(store.raw(u) for u in uids)
    assert store.cursor().execute("SELECT current_setting('memory_limit')").fetchone()[0].startswith("488")
    store.close()


def test_the_cap_does_not_grow_past_the_store_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(st, "INGEST_MEMORY_LIMIT", "1MB")
    store = Store(tmp_path / "s.duckdb", memory_limit="2MB")
    with pytest.raises(StoreError, match=r"ran out of memory at its limit \(2MB\)"):
        pipeline.run([str(SAMPLES)], store)
    assert store.streaming_limit_raised == 1  # 1 MB, 2 MB, then it gives up with one clear line
    assert store.count("measurements") == 0  # rolled back, nothing half-written
    store.close()


def test_an_ingest_checkpoints_before_it_lifts_the_cap(tmp_path: Path) -> None:
    """The WAL is folded into the database under the ingest cap, not left to close() under the store's limit."""
    path = tmp_path / "s.duckdb"
    store = Store(path, memory_limit="200MB")
    pipeline.run([str(SAMPLES)], store)
    wal = path.with_name(path.name + ".wal")
    assert not wal.exists() or wal.stat().st_size == 0
    assert store.count("verdicts") == 50
    store.close()


_MAPPED_AFTER_A_FREE = r"""
import ctypes, json, sys
from tamperscope.analysis import pipeline
fixed = pipeline._fixed_mmap_threshold() if sys.argv[1] == "fixed" else None
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def mapped_after_a_free(size):
    libc.free(libc.malloc(size))  # would lift a dynamic threshold above `size`
    block = libc.malloc(size)
    # glibc's chunk header, just before the block: IS_MMAPPED (0x2) in its size word
    mapped = bool(ctypes.c_size_t.from_address(block - ctypes.sizeof(ctypes.c_size_t)).value & 0x2)
    libc.free(block)
    return mapped
print(json.dumps([fixed, mapped_after_a_free(1 << 20), mapped_after_a_free(3 << 20), mapped_after_a_free(4096)]))
"""


def test_big_blocks_are_mapped_even_after_big_frees() -> None:
    """glibc raises its mmap threshold to the size of each mapped block freed (then later big blocks come
    from the heap and fragment it); the pipeline fixes the threshold, so they stay mapped. In fresh
    processes: a long-lived heap with big free chunks serves big blocks from them whatever the threshold."""
    import subprocess
    import sys

    # glibc's defaults: any MALLOC_*_ variable turns the dynamic threshold off (Dask's LocalCluster leaves
    # MALLOC_TRIM_THRESHOLD_ in its parent's environment, so earlier tests set it in this one)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}

    def run(mode: str) -> list[bool | None]:
        out = subprocess.run([sys.executable, "-c", _MAPPED_AFTER_A_FREE, mode], capture_output=True, text=True,
                             check=True, timeout=60, env=env)
        result: list[bool | None] = json.loads(out.stdout)
        return result

    assert run("fixed") == [True, True, True, False]
    assert run("default") == [None, False, False, False]  # what glibc does without it: the test can tell


def test_a_flush_lets_go_of_the_raw_bytes_once_they_are_on_disk(tmp_path: Path) -> None:
    """The raw lines are the bulk of a flush; they are dropped before the inserts and the commit."""
    from tamperscope.analysis.reader import Line

    lines = [orjson.dumps(json.loads(p.read_text())) for p in _sample_paths()[:5]]
    result = pipeline.analyse_batch([Line("t", i + 1, line) for i, line in enumerate(lines)])
    assert len(result.raw) == 5
    store = Store(tmp_path / "s.duckdb", background=False)
    store.run_id  # noqa: B018
    batches = [result]
    store._transaction(batches)
    assert batches[0].raw == () and batches[0].measurements.num_rows == 5
    assert sorted(store.raw(u) or b"" for u in result.order) == sorted(lines)
    store.close()


def test_a_site_seen_blocked_by_echcheck_alone_says_with_ech_only(tmp_path: Path) -> None:
    """echcheck's tls.drop on crypto.cloudflare.com means ECH to it is blocked, not the site: per_domain says so
    (top_mechanism_ech_only), and the HTML report and the terminal report print "tls.drop, with ECH only";
    a site web_connectivity saw blocked keeps its plain technique."""
    from tamperscope.analysis import report

    hs = {"address": "198.19.1.19:443", "server_name": "crypto.cloudflare.com", "t0": 0.1, "t": 0.2}
    ech = {"measurement_uid": "e1", "report_id": "r-ech", "test_name": "echcheck", "test_version": "0.2.0",
           "input": "https://crypto.cloudflare.com/", "probe_cc": "RU", "probe_asn": "AS12389",
           "measurement_start_time": "2026-12-01 10:00:00",
           "test_keys": {"control": {**hs, "failure": None, "tags": ["control"]},
                         "target": {**hs, "failure": "generic_timeout_error", "tags": ["target"],
                                    "outer_server_name": "cloudflare-ech.com", "echconfig": "AEn+DQ=="}}}
    blocked = next(m for m in (json.loads(p.read_text()) for p in _sample_paths())
                   if m["test_keys"].get("blocking") not in (False, None))
    path = tmp_path / "ech.jsonl"
    path.write_bytes(orjson.dumps(ech) + b"\n" + orjson.dumps(blocked) + b"\n")
    store = Store(tmp_path / "s.duckdb")
    try:
        pipeline.run([str(path)], store)
        by = {d["domain"]: d for d in aggregates.per_domain(store)}
        assert (by["crypto.cloudflare.com"]["top_mechanism"], by["crypto.cloudflare.com"]["top_mechanism_ech_only"]) \
            == ("tls.drop", True)
        other = next(d for name, d in by.items() if name != "crypto.cloudflare.com")
        assert other["anomaly_count"] and other["top_mechanism_ech_only"] is False
        html = report.html_report(store)
        assert "tls.drop, with ECH only" in html and "hellos that hide the site" in html
        assert f"{report.technique(other['top_mechanism'])}, with ECH only" not in html
        assert "tls.drop, with ECH only" in report.terminal_report(store)
    finally:
        store.close()


@pytest.mark.parametrize("landed", [True, False])
def test_a_commit_interrupted_keeps_the_raw_bytes_its_rows_point_at(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     landed: bool) -> None:
    # Ctrl-C met inside DuckDB's COMMIT is 'Query interrupted', raised once the commit has gone through: the raw
    # bytes were cut as for a failed transaction, the rows pointed past the end of the segment, and the file was
    # recorded as read, so no re-run read it again (QA: 4,000 measurements lost). One that did not go through
    # still has its bytes cut (nothing points at them).
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(orjson.dumps(json.loads(p.read_text())) + b"\n" for p in _sample_paths()))
    real = Store._commit_now

    def interrupted(self: Store, con: duckdb.DuckDBPyConnection) -> None:
        if landed:
            real(self, con)
        raise RuntimeError("Query interrupted")

    monkeypatch.setattr(Store, "_commit_now", interrupted)
    store = Store(tmp_path / "s.duckdb")
    with pytest.raises(RuntimeError, match="Query interrupted"):
        pipeline.run([str(path)], store)
    store.close()
    monkeypatch.setattr(Store, "_commit_now", real)
    segments = sorted((tmp_path / "s.raw").rglob("*.jsonl.zst"))
    with Store(tmp_path / "s.duckdb") as again:
        uids = [r[0] for r in again.con.execute("SELECT measurement_uid FROM measurements").fetchall()]
        assert len(uids) == (50 if landed else 0)
        assert len(again.raw_many(uids)) == len(uids)  # every one of them readable
        assert all(pipeline.gives_uid(data, uid) for uid, data in again.raw_many(uids).items())
        assert sum(s.stat().st_size for s in segments) > 0 if landed else all(s.stat().st_size == 0 for s in segments)
        stats = pipeline.run([str(path)], again)  # a file that did not land is read again; one that did is known
        assert (stats.new, stats.files_known) == ((0, 1) if landed else (50, 0)), stats
        assert again.count("measurements") == 50
