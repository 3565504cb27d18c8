"""Backfills: what a newer schema keeps, written for the measurements stored before it, from their raw lines.

A migration that adds a table or a column the verdict pipeline fills lists the measurements stored
before it in a table of uids (``rules_backfill``: schema v7, `rules.backfill`; ``transport_backfill``:
v8, `transport.backfill`). Opening the store runs `run` over each list: a batch of uids at a time, each
measurement read back from its raw line and judged again, and each batch written in one transaction
that also takes its uids off the list, so a backfill cut short resumes where it stopped and writes
nothing twice. A raw line that is gone or unreadable, and a measurement the judge cannot read
(hostile content: its verdict already said "analysis_error"), give nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import duckdb
import orjson
import pyarrow as pa

Row = tuple[Any, ...]
Judge = Callable[[str, Mapping[str, Any]], Sequence[Row]]          # (uid, measurement) -> rows
Write = Callable[[duckdb.DuckDBPyConnection, pa.Table, list[Row]], None]  # (con, the batch's uids, rows)


def _measurement(raw: Callable[[str], bytes | None], uid: str) -> Mapping[str, Any] | None:
    try:
        data = raw(uid)
        m = orjson.loads(data) if data is not None else None
    except (OSError, ValueError):
        return None
    return m if isinstance(m, Mapping) else None


def run(con: duckdb.DuckDBPyConnection, listed: str, raw: Callable[[str], bytes | None], judge: Judge,
        write: Write, batch: int = 256) -> int:
    """Judge the measurements the table ``listed`` names again from their raw lines, and ``write`` the rows of
    each batch (its uids as an Arrow table of ``measurement_uid``) inside the batch's transaction; returns
    how many uids were taken off the list."""
    done = 0
    while True:
        # no sort, no DISTINCT: this runs at every open, under whatever memory limit the store has
        uids = list(dict.fromkeys(row[0] for row in con.execute(
            f"SELECT measurement_uid FROM {listed} LIMIT ?", [batch]).fetchall()))
        if not uids:
            return done
        rows: list[Row] = []
        for uid in uids:
            m = _measurement(raw, uid)
            if m is not None:
                try:
                    rows += judge(uid, m)
                except Exception:  # noqa: BLE001 - hostile content: its verdict already said "analysis_error"
                    pass
        _u = pa.table({"measurement_uid": pa.array(uids, pa.string())})  # read by DuckDB
        con.execute("BEGIN TRANSACTION")
        try:
            write(con, _u, rows)
            con.execute(f"DELETE FROM {listed} WHERE measurement_uid IN (SELECT measurement_uid FROM _u)")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        done += len(uids)


__all__ = ["Judge", "Row", "Write", "run"]
