"""The Dask engine on a LocalCluster of 2 workers gives the same store as the local engine.

The input mixes everything the reader handles (plain JSONL cut into several
byte-range partitions, gzip, a pretty-printed .json, duplicates and bad lines,
blocking_rules measurements), so the partitions really are spread over both
workers. Compared: every row of measurements, verdicts, observations and rules
(without the columns that name the run or where the raw bytes landed), the raw
bytes themselves, and the rejections.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from tamperscope.analysis import pipeline
from tamperscope.analysis.store import Store
from tests.unit.test_blocking_rules import measurement as rules_measurement

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"
RUN_COLUMNS = {"run_id", "raw_segment", "raw_frame_offset", "raw_frame_length", "raw_frame_size",
               "raw_line_offset", "raw_line_length", "source"}


def _corpus(directory: Path) -> None:
    samples = [json.loads((p / "measurement.json").read_text()) for p in sorted(SAMPLES.iterdir())
               if (p / "measurement.json").is_file()]
    lines = []
    for i in range(400):
        m = dict(samples[i % len(samples)])
        m["report_id"] = f"r{i}"
        m["probe_asn"] = f"AS{100 + i % 7}"
        m["probe_cc"] = ["IT", "RU", "TR"][i % 3]
        m["measurement_start_time"] = f"2024-03-{1 + i % 5:02d} 12:00:{i % 60:02d}"
        lines.append(orjson.dumps(m))
    lines.insert(17, b"{corrupt")
    lines.insert(230, b"[1, 2]")
    lines.append(lines[5])  # a duplicate
    (directory / "big.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    with gzip.open(directory / "more.jsonl.gz", "wb") as f:
        f.write(b"\n".join(orjson.dumps(dict(s, report_id=f"gz{i}")) for i, s in enumerate(samples)) + b"\n")
    (directory / "one.json").write_text(json.dumps(dict(samples[3], report_id="pretty"), indent=2))
    rules = [dict(rules_measurement(), probe_cc=cc, probe_asn="AS20661",
                  measurement_start_time=f"2024-03-0{i} 10:00:00") for i, cc in enumerate(("TM", "TM", "RU"), start=1)]
    (directory / "rules.jsonl").write_bytes(b"".join(orjson.dumps(m) + b"\n" for m in [*rules, rules[1]]))


def _table(store: Store, name: str, key: str) -> list[tuple[Any, ...]]:
    cur = store.cursor()
    columns = [r[0] for r in cur.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
        [name]).fetchall() if r[0] not in RUN_COLUMNS]
    select = ", ".join(f'"{c}"' for c in columns)
    return cur.execute(f"SELECT {select} FROM {name} ORDER BY {key}").fetchall()


@pytest.mark.timeout(600)
def test_dask_local_cluster_matches_local_engine(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _corpus(data)

    local = Store(tmp_path / "local.duckdb")
    local_stats = pipeline.run([str(data)], local, pipeline.Options(engine="local", workers=1))
    dask = Store(tmp_path / "dask.duckdb")
    dask_stats = pipeline.run([str(data)], dask, pipeline.Options(engine="dask", workers=2, split_bytes=200_000,
                                                                  batch_size=64))
    from tamperscope.analysis import reader

    assert len(reader.partitions([data], 200_000)) >= 6  # work for both workers

    for field in ("records", "accepted", "new", "duplicates", "rejected", "by_reason"):
        assert getattr(local_stats, field) == getattr(dask_stats, field), field
    assert local_stats.new == 400 + 50 + 1 + 3  # "pretty" is a copy of a sample with a new report_id: new too
    assert local_stats.by_reason == {"corrupt_json": 1, "wrong_type": 1}
    for name, key in (("measurements", "measurement_uid"), ("verdicts", "measurement_uid"),
                      ("observations", "measurement_uid, idx"), ("rules", "measurement_uid, layer")):
        ours, theirs = _table(local, name, key), _table(dask, name, key)
        assert len(ours) == len(theirs) > 0
        assert ours == theirs, name
    uids = [r[0] for r in local.cursor().execute("SELECT measurement_uid FROM measurements").fetchall()]
    assert all(local.raw(u) == dask.raw(u) for u in uids)
    reasons = "SELECT reason, count(*) FROM rejections GROUP BY ALL ORDER BY ALL"
    assert local.cursor().execute(reasons).fetchall() == dask.cursor().execute(reasons).fetchall()
    local.close()
    dask.close()


@pytest.mark.timeout(600)
def test_local_engine_with_two_processes_matches_one(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _corpus(data)
    one = Store(tmp_path / "one.duckdb")
    pipeline.run([str(data)], one, pipeline.Options(workers=1))
    two = Store(tmp_path / "two.duckdb")
    pipeline.run([str(data)], two, pipeline.Options(workers=2, batch_size=50))
    for name, key in (("measurements", "measurement_uid"), ("verdicts", "measurement_uid"),
                      ("observations", "measurement_uid, idx"), ("rules", "measurement_uid, layer")):
        assert _table(one, name, key) == _table(two, name, key), name
    one.close()
    two.close()
