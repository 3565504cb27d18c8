"""How a circumvention tool got through (analysis/transport.py): Tor started through a bridge is its own row in the
apps' tables of the reports and the explorer, not the latest word on Tor; older stores get it from their raw lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from tamperscope.analysis import aggregates, pipeline
from tamperscope.analysis import schema as st
from tamperscope.analysis.confidence import GROUP_KEY_SQL
from tamperscope.analysis.report import app_name, html_report, terminal_report
from tamperscope.analysis.store import Store
from tamperscope.analysis.transport import transport_of
from tamperscope.collector import samples
from tamperscope.collector.config import Settings
from tamperscope.collector.testing import running_app


@pytest.mark.parametrize(("test_keys", "expected"), [
    ({"transport_name": "obfs4", "x_bridges": 1}, "obfs4"),
    ({"transport_name": "Snowflake"}, "snowflake"),
    ({"transport_name": "meek_lite"}, "meek_lite"),
    ({"transport_name": "vanilla", "x_bridges": 0}, None),
    ({"transport_name": "vanilla"}, None),
    ({"transport_name": "vanilla", "x_bridges": 2}, "bridge"),   # tor through plain bridges
    ({}, None),
    ({"x_bridges": True}, None),                                  # a boolean is no count
    ({"x_bridges": "3"}, None),
    ({"transport_name": "<img src=x onerror=alert(1)>"}, None),   # shown on every page: a token or nothing
    ({"transport_name": "a" * 41}, None),
    ({"transport_name": 7, "x_bridges": -1}, None),
    ({"transport_name": ""}, None),
])
def test_the_transport_of_a_measurement(test_keys: dict[str, Any], expected: str | None) -> None:
    assert transport_of(test_keys) == expected


def test_app_names_say_the_way_in() -> None:
    assert app_name("vanilla_tor") == "Tor (its own bootstrap)"
    assert app_name("vanilla_tor", "obfs4") == "Tor (its own bootstrap) through a bridge (obfs4)"
    assert app_name("vanilla_tor", "bridge") == "Tor (its own bootstrap) through a bridge"
    assert app_name("torsf", "snowflake") == "Tor with Snowflake"  # its name says it already
    assert app_name("psiphon", "meek_lite").endswith(" over meek_lite")


def _tor(start: str, *, bridged: bool, blocked: bool, asn: str = "AS20661") -> dict[str, Any]:
    base = next(samples.corpus(1, seed="transport"))
    tk: dict[str, Any] = {
        "bootstrap_time": 0.0 if blocked else 2.5, "error": "timeout-reached" if blocked else None,
        "failure": "generic_timeout_error" if blocked else None, "success": not blocked, "timeout": 20.0,
        "tor_logs": [], "tor_progress": 5 if blocked else 100, "tor_progress_tag": "conn" if blocked else "done",
        "tor_progress_summary": "Connecting to a relay" if blocked else "Done", "tor_version": "0.4.9.11",
        "transport_name": "obfs4" if bridged else "vanilla", "x_tor_network": "custom",
        "x_bridges": 1 if bridged else 0}
    return {**base, "test_name": "vanilla_tor", "input": None, "probe_cc": "TM", "probe_asn": asn,
            "measurement_start_time": start, "report_id": f"{base['report_id']}{start[-2:]}{int(bridged)}",
            "test_keys": tk}


# Tor blocked on AS20661 (its relays null-routed), then started through an obfs4 bridge a minute later; and
# Tor started directly on another network
MEASUREMENTS = [_tor("2026-12-03 10:00:00", bridged=False, blocked=True),
                _tor("2026-12-03 10:01:00", bridged=True, blocked=False),
                _tor("2026-12-03 10:02:00", bridged=False, blocked=False, asn="AS51495")]


def _store(tmp_path: Path) -> Store:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(m) for m in MEASUREMENTS) + b"\n")
    store = Store(tmp_path / "s.duckdb")
    stats = pipeline.run([str(path)], store)
    assert stats.new == 3, stats
    return store


def _apps(store: Any) -> list[tuple[Any, ...]]:
    return [(r["test_name"], r["transport"], r["probe_asn"], r["last_outcome"], r["measurement_count"])
            for r in aggregates.apps(store)]


EXPECTED = [("vanilla_tor", None, "AS20661", "anomaly", 1), ("vanilla_tor", None, "AS51495", "ok", 1),
            ("vanilla_tor", "obfs4", "AS20661", "ok", 1)]


def test_tor_through_a_bridge_is_not_the_latest_word_on_tor(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert sorted(store.cursor().execute("SELECT probe_asn, transport FROM verdicts").fetchall(),
                  key=str) == sorted([("AS20661", None), ("AS20661", "obfs4"), ("AS51495", None)], key=str)
    assert _apps(store) == EXPECTED  # blocked first; the bridge's success no longer hides the block
    text = terminal_report(store)
    apps = text.split("Messaging apps and circumvention tools", 1)[1]
    blocked = next(line for line in apps.splitlines() if "AS20661" in line and "bridge" not in line)
    assert "Tor (its own bootstrap)" in blocked and "blocked" in blocked and "tcp.drop" in blocked
    bridged = next(line for line in apps.splitlines() if "through a bridge (obfs4)" in line)
    assert "AS20661" in bridged and "reachable" in bridged
    html = html_report(store, plotly_js="")
    section = html.split("<section id='apps'>", 1)[1].split("</section>", 1)[0]
    assert section.count("<tr") - 1 == 3 and "Tor (its own bootstrap) through a bridge (obfs4)" in section
    legend = html.split("How to read this", 1)[1].split("</dl>", 1)[0]
    assert "Tor through a bridge counts apart from Tor" in legend  # what "confirmed" means for a tool
    store.close()


def test_the_explorer_lists_tor_and_tor_through_a_bridge_apart(tmp_path: Path) -> None:
    with running_app(Settings(db_path=tmp_path / "e.duckdb", announce=False, submit_rate=0, read_rate=0)) as c:
        out = c.post("/api/v1/submit", content=b"\n".join(orjson.dumps(m) for m in MEASUREMENTS)).json()
        assert out["stored"] == 3, out
        page = c.get("/network/AS20661.json").json()
        assert [(r["app"], r["now"], r["how"]) for r in page["apps"]] == [
            ("Tor (its own bootstrap)", "blocked", "tcp.drop"),
            ("Tor (its own bootstrap) through a bridge (obfs4)", "reachable", "")]
        html = c.get("/network/AS20661").text
        section = " ".join(html.split('id="apps"', 1)[1].split("</section>", 1)[0].split())
        assert "Tor (its own bootstrap) through a bridge (obfs4)" in section


def test_a_store_from_before_the_column_gets_it_from_its_raw_lines(tmp_path: Path) -> None:
    store = _store(tmp_path)
    path, con = store.path, store.con
    con.execute("DROP TABLE transport_backfill")  # the store as schema v7 left it
    con.execute("ALTER TABLE verdicts DROP COLUMN transport")
    con.execute("DROP TABLE test_lists")  # and without v11's tables
    con.execute("DROP TABLE categories")
    con.execute("DELETE FROM migrations WHERE version >= 8")
    store.close()
    old = duckdb.connect(str(path))
    assert st.schema_version(old) == 7
    old.close()

    again = Store(path)
    assert again.migrated == [8, 9, 10, 11, 12] and again.backfilled_transports == 3
    assert _apps(again) == EXPECTED
    assert again.cursor().execute("SELECT count(*) FROM transport_backfill").fetchone() == (0,)
    again.close()
    last = Store(path)
    assert last.migrated == [] and last.backfilled_transports == 0 and _apps(last) == EXPECTED
    last.close()


def test_a_backfill_whose_raw_line_is_gone_leaves_the_measurement_direct(tmp_path: Path) -> None:
    store = _store(tmp_path)
    path, con = store.path, store.con
    con.execute("UPDATE verdicts SET transport = NULL")
    con.execute("INSERT INTO transport_backfill SELECT measurement_uid FROM verdicts")
    con.execute("INSERT INTO transport_backfill VALUES ('no-such-uid')")
    bridged = con.execute("SELECT measurement_uid FROM verdicts WHERE probe_asn = 'AS20661' "
                          "ORDER BY measurement_start_time DESC LIMIT 1").fetchone()
    assert bridged is not None
    con.execute("UPDATE measurements SET raw_segment = NULL WHERE measurement_uid = ?", [bridged[0]])
    store.close()
    again = Store(path)
    assert again.backfilled_transports == 4
    assert again.cursor().execute("SELECT count(*) FROM verdicts WHERE transport IS NOT NULL").fetchone() == (0,)
    assert again.cursor().execute("SELECT count(*) FROM transport_backfill").fetchone() == (0,)
    again.close()


# --------------------------------------------------------------------------- confidence (schema v9)

# Tor failing directly and through an obfs4 bridge on one network: two anomalies, of two different things
BOTH_FAIL = [_tor("2026-12-03 11:00:00", bridged=False, blocked=True),
             _tor("2026-12-03 11:01:00", bridged=True, blocked=True)]


def _outcomes(store: Any) -> list[tuple[Any, ...]]:
    return store.cursor().execute("SELECT transport, mechanism, outcome FROM verdicts "
                                  "ORDER BY measurement_start_time").fetchall()


def _ingest(store: Store, tmp_path: Path, name: str, measurements: list[dict[str, Any]]) -> None:
    path = tmp_path / name
    path.write_bytes(b"\n".join(orjson.dumps(m) for m in measurements) + b"\n")
    assert pipeline.run([str(path)], store).new == len(measurements)


def test_a_failure_through_a_bridge_does_not_confirm_a_failure_without_one(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    _ingest(store, tmp_path, "one.jsonl", BOTH_FAIL)
    assert _outcomes(store) == [(None, "tcp.drop", "anomaly"), ("obfs4", "tcp.drop", "anomaly")]
    # Tor failing directly once more on that network confirms Tor's block, not the bridge's
    _ingest(store, tmp_path, "two.jsonl", [_tor("2026-12-03 11:02:00", bridged=False, blocked=True)])
    assert _outcomes(store) == [(None, "tcp.drop", "confirmed"), ("obfs4", "tcp.drop", "anomaly"),
                                (None, "tcp.drop", "confirmed")]
    groups = store.cursor().execute("SELECT transport, anomalies FROM anomaly_groups ORDER BY ALL").fetchall()
    assert groups == [("obfs4", 1), (None, 2)]
    store.close()


def _as_before_v9(store: Store) -> None:
    """The store as schema v8 left it: groups of four fields, which counted both failures as one anomaly twice."""
    con = store.con
    con.execute("DROP TABLE anomaly_groups")
    con.execute(st._V5_GROUPS_DDL)
    con.execute(st._V5_COUNT_ALL_SQL)
    con.execute("UPDATE verdicts SET outcome = 'confirmed' WHERE status = 'anomaly'")
    con.execute("DROP TABLE test_lists")  # and without v11's tables
    con.execute("DROP TABLE categories")
    con.execute("DELETE FROM migrations WHERE version >= 9")


def test_version_9_splits_the_groups_of_a_store_that_confirmed_them_together(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    _ingest(store, tmp_path, "one.jsonl", BOTH_FAIL)
    path = store.path
    _as_before_v9(store)
    store.close()
    old = duckdb.connect(str(path))
    assert st.schema_version(old) == 8
    assert old.execute("SELECT count(*) FROM anomaly_groups").fetchone() == (1,)
    old.close()
    again = Store(path)
    assert again.migrated == [9, 10, 11, 12]
    assert _outcomes(again) == [(None, "tcp.drop", "anomaly"), ("obfs4", "tcp.drop", "anomaly")]
    keys = again.cursor().execute(f"SELECT count(*) FILTER (gkey = {GROUP_KEY_SQL}), count(*) "
                                  "FROM anomaly_groups").fetchone()
    assert keys == (2, 2)
    again.close()


def test_a_store_from_before_the_column_regroups_as_its_backfill_fills_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    _ingest(store, tmp_path, "one.jsonl", BOTH_FAIL)
    path, con = store.path, store.con
    _as_before_v9(store)
    con.execute("DROP TABLE transport_backfill")  # and as v7 left it: no transport at all
    con.execute("ALTER TABLE verdicts DROP COLUMN transport")
    con.execute("DELETE FROM migrations WHERE version = 8")
    store.close()
    again = Store(path)
    assert again.migrated == [8, 9, 10, 11, 12] and again.backfilled_transports == 2
    assert _outcomes(again) == [(None, "tcp.drop", "anomaly"), ("obfs4", "tcp.drop", "anomaly")]
    groups = again.cursor().execute("SELECT transport, anomalies FROM anomaly_groups ORDER BY ALL").fetchall()
    assert groups == [("obfs4", 1), (None, 1)]
    again.close()


def test_version_9_applies_the_notes_a_stopped_run_left_before_it_regroups(tmp_path: Path) -> None:
    """A streaming run that stopped before its end leaves the older anomaly of a group it confirmed noted, not
    relabelled (confidence.promote). v9 applies the note by the four-field key it holds before it regroups: here on
    a network where no measurement had a transport, whose verdicts v9 does not relabel."""
    store = Store(tmp_path / "s.duckdb")
    other = "AS51495"
    elsewhere = [_tor(f"2026-12-03 12:0{i}:00", bridged=False, blocked=True, asn=other) for i in range(2)]
    _ingest(store, tmp_path, "one.jsonl", [*BOTH_FAIL, *elsewhere])
    path, con = store.path, store.con
    _as_before_v9(store)
    first = con.execute("SELECT measurement_uid FROM verdicts WHERE probe_asn = ? ORDER BY measurement_start_time "
                        "LIMIT 1", [other]).fetchone()
    assert first is not None
    con.execute("UPDATE verdicts SET outcome = 'anomaly' WHERE measurement_uid = ?", [first[0]])
    con.execute("INSERT INTO promotions SELECT gkey, ? FROM anomaly_groups WHERE probe_asn = ?", [first[0], other])
    store.close()
    again = Store(path)
    assert again.migrated == [9, 10, 11, 12]
    assert _outcomes(again) == [(None, "tcp.drop", "anomaly"), ("obfs4", "tcp.drop", "anomaly"),
                                (None, "tcp.drop", "confirmed"), (None, "tcp.drop", "confirmed")]
    assert again.cursor().execute("SELECT count(*) FROM promotions").fetchone() == (0,)
    again.close()
