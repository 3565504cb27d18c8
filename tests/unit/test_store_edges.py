"""The store's edges: a measurement repeated in one file, how a verdict's blocking is kept, a store one schema
version newer, and a reread of measurements stored without a network (AS0)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tamperscope.analysis import pipeline
from tamperscope.analysis import store as st
from tamperscope.analysis.command import summary
from tamperscope.analysis.schema import blocking_json
from tamperscope.analysis.store import Store, StoreError
from tests.unit.test_analysis_store import SAMPLES
from tests.unit.test_analysis_streams import _jsonl, _samples


def test_a_measurement_twice_in_one_file_stores_its_observations_once(tmp_path: Path) -> None:
    """The same measurement twice in a file is one measurement: its DNS, TCP, TLS and HTTP steps are stored once,
    not twice (a doubled step count would double every failure the reports and the explorer show)."""
    m = _samples(1)[0]
    once, twice = tmp_path / "once.jsonl", tmp_path / "twice.jsonl"
    once.write_bytes(_jsonl([m]))
    twice.write_bytes(_jsonl([m, m]))
    single, double = Store(tmp_path / "once.duckdb"), Store(tmp_path / "twice.duckdb")
    pipeline.run([str(once)], single)
    stats = pipeline.run([str(twice)], double)
    assert (stats.accepted, stats.new, stats.duplicates) == (2, 1, 1)
    assert single.count("observations") > 0
    assert double.count("observations") == single.count("observations")
    assert double.count("measurements") == double.count("verdicts") == 1
    single.close()
    double.close()


def test_a_verdicts_blocking_false_is_stored_as_ooni_writes_it(tmp_path: Path) -> None:
    """OONI's blocking is false (a boolean) or a string: the store keeps 'false', which blocking_json gives back
    as false to the collector's API and the explorer; 'False' would come back as the string "False"."""
    store = Store(tmp_path / "s.duckdb")
    stats = pipeline.run([str(SAMPLES / "successWithHTTP"), str(SAMPLES / "dnsBlockingNXDOMAIN")], store)
    assert stats.new == 2
    rows = dict(store.cursor().execute(
        "SELECT m.source LIKE '%successWithHTTP%', v.blocking FROM verdicts v JOIN measurements m "
        "USING (measurement_uid)").fetchall())
    assert rows[True] == "false"
    assert blocking_json(rows[True]) is False
    assert rows[False] not in ("False", "True", "true", "false", None)  # a mechanism: "dns"
    assert pipeline._blocking(True) == "true" and pipeline._blocking(False) == "false"
    store.close()


def test_a_store_one_schema_version_newer_is_refused(tmp_path: Path) -> None:
    """A store written by the next tamperscope may hold tables this one does not know: it must be refused in one
    line asking for an upgrade, not opened and written to."""
    path = tmp_path / "next.duckdb"
    Store(path).close()
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO migrations VALUES (?, 'the next version', now()::TIMESTAMP)", [st.SCHEMA_VERSION + 1])
    con.close()
    with pytest.raises(StoreError, match="newer than this tamperscope") as refused:
        Store(path)
    assert "\n" not in str(refused.value)
    assert f"schema version {st.SCHEMA_VERSION + 1}" in str(refused.value)


def test_rereading_measurements_stored_on_as0_does_not_say_they_now_have_a_network(tmp_path: Path) -> None:
    """A file of AS0 measurements read again (--reread) names no network either: the summary must not say that
    measurements already stored without a network were read now with one."""
    path = tmp_path / "as0.jsonl"
    path.write_bytes(_jsonl([dict(m, probe_asn="AS0") for m in _samples(3)]))
    store = Store(tmp_path / "s.duckdb")
    first = pipeline.run([str(path)], store)
    again = pipeline.run([str(path)], store, pipeline.Options(reread=True))
    assert (first.new, again.new, again.duplicates) == (3, 0, 3)
    assert again.networks_unused == 0
    assert "networks:" not in summary(again, 1.0, tmp_path / "s.duckdb")
    assert store.cursor().execute("SELECT DISTINCT probe_asn FROM measurements").fetchall() == [("AS0",)]
    store.close()
