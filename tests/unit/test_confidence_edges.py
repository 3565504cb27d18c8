"""Confidence edges: a promotion noted before a deletion, and transports kept apart when a group is relabelled.

Each case runs what the store and the collector run on a real DuckDB file (`insert_verdicts` for a flush,
`touch` + DELETE + `relabel` for a deletion or a re-analysis, `promote` for the notes a streaming ingest
leaves), then reads the ``outcome`` column a user sees in the explorer, the reports and the exports.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pyarrow as pa

from tamperscope.analysis import store as st
from tamperscope.analysis.confidence import insert_verdicts, promote, relabel, touch

INPUT = "http://blocked.example/"
NETWORK = "AS30722"


def _verdicts(rows: list[tuple[str, str, str, str | None]]) -> pa.Table:
    """A flush's verdicts: (uid, status, mechanism, transport) on one input and network, each labelled by itself
    ("anomaly", "ok"), as the pipeline labels them before the store counts their groups."""
    n = len(rows)
    return pa.table({
        "measurement_uid": [r[0] for r in rows], "test_name": ["web_connectivity"] * n, "input": [INPUT] * n,
        "probe_cc": ["IT"] * n, "probe_asn": [NETWORK] * n, "day": [dt.date(2024, 1, 1)] * n,
        "measurement_start_time": [dt.datetime(2024, 1, 1)] * n, "mechanism": [r[2] for r in rows],
        "status": [r[1] for r in rows], "fingerprints": pa.array([[] for _ in rows], pa.list_(pa.string())),
        "outcome": [r[1] for r in rows], "transport": pa.array([r[3] for r in rows], pa.string())})


def _open(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(tmp_path / "s.duckdb"))
    st.migrate(con)
    return con


def _flush(con: duckdb.DuckDBPyConnection, table: pa.Table, *, defer: bool = False) -> None:
    con.execute("BEGIN TRANSACTION")
    insert_verdicts(con, table, defer=defer)
    con.execute("COMMIT")


def _delete(con: duckdb.DuckDBPyConnection, uids: list[str]) -> None:
    """What the collector's delete does: note the groups, remove the verdicts, recount and relabel them."""
    con.execute("BEGIN TRANSACTION")
    touch(con, uids)
    con.execute("DELETE FROM verdicts WHERE measurement_uid IN (SELECT unnest(?::VARCHAR[]))", [uids])
    relabel(con)
    con.execute("COMMIT")


def _labels(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return dict(con.execute("SELECT measurement_uid, outcome FROM verdicts ORDER BY measurement_uid").fetchall())


def test_a_promotion_noted_before_its_confirming_measurement_was_deleted_confirms_nothing(tmp_path: Path) -> None:
    """X is an anomaly; a streaming ingest adds Y (the same anomaly, input and network), which confirms both, but
    defers relabelling X to the end of the run and only notes it. Y is deleted before that note is acted on. X is
    alone again, so `promote` must leave it "anomaly": otherwise a user sees X "confirmed" by a measurement that no
    longer exists (the module's docstring: "a note outlived by a deletion does no harm")."""
    con = _open(tmp_path)
    _flush(con, _verdicts([("20240101T000000Z_x", "anomaly", "tcp.drop", None)]))
    _flush(con, _verdicts([("20240101T000001Z_y", "anomaly", "tcp.drop", None)]), defer=True)
    assert _labels(con) == {"20240101T000000Z_x": "anomaly", "20240101T000001Z_y": "confirmed"}
    assert con.execute("SELECT lone_uid FROM promotions").fetchall() == [("20240101T000000Z_x",)]

    _delete(con, ["20240101T000001Z_y"])
    assert _labels(con) == {"20240101T000000Z_x": "anomaly"}
    assert con.execute("SELECT anomalies FROM anomaly_groups").fetchall() == [(1,)]

    con.execute("BEGIN TRANSACTION")
    noted = promote(con)
    con.execute("COMMIT")
    labels = _labels(con)
    left = con.execute("SELECT count(*) FROM promotions").fetchone()
    con.close()
    assert noted == 1  # the note was there, and read
    assert labels == {"20240101T000000Z_x": "anomaly"}  # one anomaly in its group: not confirmed
    assert left == (0,)  # and the note is gone


def test_a_deferred_promotion_still_confirms_when_its_group_keeps_two_anomalies(tmp_path: Path) -> None:
    """The counterpart of the case above: with Y kept, the same note does confirm X (both are "confirmed")."""
    con = _open(tmp_path)
    _flush(con, _verdicts([("20240101T000000Z_x", "anomaly", "tcp.drop", None)]))
    _flush(con, _verdicts([("20240101T000001Z_y", "anomaly", "tcp.drop", None)]), defer=True)
    con.execute("BEGIN TRANSACTION")
    assert promote(con) == 1
    con.execute("COMMIT")
    labels = _labels(con)
    con.close()
    assert labels == {"20240101T000000Z_x": "confirmed", "20240101T000001Z_y": "confirmed"}


def test_a_direct_and_an_obfs4_anomaly_do_not_confirm_each_other_when_their_network_is_relabelled(
        tmp_path: Path) -> None:
    """Tor started directly and Tor started through an obfs4 bridge, both failing the same way on one network:
    one failure of each confirms neither. Deleting a third measurement of that input and network makes the store
    relabel every verdict there (`OUTCOME_SQL`); both must stay "anomaly". Counting them as one group, a user would
    see two "confirmed" failures, each confirmed only by a measurement made another way."""
    con = _open(tmp_path)
    _flush(con, _verdicts([("20240101T000000Z_direct", "anomaly", "tls.drop", None),
                           ("20240101T000001Z_obfs4", "anomaly", "tls.drop", "obfs4"),
                           ("20240101T000002Z_ok", "ok", "none", None)]))
    assert _labels(con) == {"20240101T000000Z_direct": "anomaly", "20240101T000001Z_obfs4": "anomaly",
                            "20240101T000002Z_ok": "ok"}
    _delete(con, ["20240101T000002Z_ok"])
    labels = _labels(con)
    groups = sorted(con.execute("SELECT coalesce(transport, '-'), anomalies FROM anomaly_groups").fetchall())
    con.close()
    assert labels == {"20240101T000000Z_direct": "anomaly", "20240101T000001Z_obfs4": "anomaly"}
    assert groups == [("-", 1), ("obfs4", 1)]


def test_two_obfs4_anomalies_still_confirm_each_other_when_relabelled_beside_a_direct_one(tmp_path: Path) -> None:
    """Relabelling keeps what the transport groups earn: two obfs4 failures confirm each other ("confirmed"), the
    direct one beside them stays "anomaly"."""
    con = _open(tmp_path)
    _flush(con, _verdicts([("20240101T000000Z_direct", "anomaly", "tls.drop", None),
                           ("20240101T000001Z_obfs4", "anomaly", "tls.drop", "obfs4"),
                           ("20240101T000002Z_obfs4", "anomaly", "tls.drop", "obfs4"),
                           ("20240101T000003Z_ok", "ok", "none", None)]))
    _delete(con, ["20240101T000003Z_ok"])
    labels = _labels(con)
    con.close()
    assert labels == {"20240101T000000Z_direct": "anomaly", "20240101T000001Z_obfs4": "confirmed",
                      "20240101T000002Z_obfs4": "confirmed"}
