"""Rules: what a censor's blocking rule matches, per layer, as the store keeps it.

A blocking_rules measurement (nettests/blocking_rules.py) shows the censor names made from
one blocked name and reads its rule back: ``exact``, ``domain_and_subdomains``,
``ends_with``, ``starts_with``, ``substring`` (with its keyword), ``not_blocked`` or
``undetermined`` (model/rules.py). ``tamperscope analyze`` judges every probe again from
the measurement's raw records (never from the rules it wrote) and keeps one row per layer
in the store's ``rules`` table; `tamperscope report` and the explorer read them back
(``aggregates.blocking_rules``).

Stores analysed before the table existed (schema v7) get their rows from the raw lines
they kept: `backfill` runs when such a store is opened.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from tamperscope.analysis.schema import RULE_SCHEMA, rows_to_table
from tamperscope.analysis.verdicts import blocking_rules_judged
from tamperscope.model.rules import LAYERS, RULES
from tamperscope.model.verdict import BlockpageMatcher

NAME_MAX = 253  # a keyword or a name longer than any host name is not one


def _name(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= NAME_MAX else None


def rule_rows(uid: str, measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> list[tuple[Any, ...]]:
    """The rows (RULE_SCHEMA order) of one blocking_rules measurement, one per layer it measured.

    Every probe is judged again from the records, as the registered verdict does; a measurement
    whose test keys are no mapping has no rows (its verdict says "failure")."""
    if not isinstance(measurement.get("test_keys"), Mapping):
        return []
    return rows_of(uid, blocking_rules_judged(measurement, matcher)[1])


def rows_of(uid: str, x_rules: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of a rule per layer as the verdict read it (``blocking_rules_judged``)."""
    rows = []
    for layer in LAYERS:
        r = x_rules.get(layer)
        if not isinstance(r, Mapping):
            continue
        rule = r.get("rule") if r.get("rule") in RULES else "undetermined"
        rows.append((uid, layer, rule, _name(r.get("keyword")), _name(r.get("overblocks"))))
    return rows


def rule_table(rows: list[tuple[Any, ...]]) -> pa.Table:
    return rows_to_table(rows, RULE_SCHEMA)


def backfill(con: duckdb.DuckDBPyConnection, raw: Callable[[str], bytes | None],
             matcher: Callable[[], BlockpageMatcher | None], batch: int = 256) -> int:
    """Judge the measurements listed in ``rules_backfill`` again from their raw lines and write their
    rows; returns how many were done. Each batch is one transaction that also removes its uids from
    the list, so a backfill cut short resumes where it stopped, and none is done twice. A raw line
    that is gone or unreadable gives no rows (the measurement keeps its verdict)."""
    done = 0
    match: BlockpageMatcher | None = None
    while True:
        # no sort, no DISTINCT: this runs at every open, under whatever memory limit the store has
        uids = list(dict.fromkeys(row[0] for row in con.execute(
            "SELECT measurement_uid FROM rules_backfill LIMIT ?", [batch]).fetchall()))
        if not uids:
            return done
        if match is None:
            match = matcher()
        rows: list[tuple[Any, ...]] = []
        for uid in uids:
            try:
                data = raw(uid)
                m = orjson.loads(data) if data is not None else None
            except (OSError, ValueError):
                m = None
            if isinstance(m, Mapping):
                try:
                    rows += rule_rows(uid, m, match)
                except Exception:  # noqa: BLE001 - hostile content: its verdict already said "analysis_error"
                    pass
        _u = pa.table({"measurement_uid": pa.array(uids, pa.string())})  # read by DuckDB
        _r = rule_table(rows)  # read by DuckDB
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute("DELETE FROM rules WHERE measurement_uid IN (SELECT measurement_uid FROM _u)")
            if rows:
                con.execute("INSERT INTO rules BY NAME SELECT * FROM _r")
            con.execute("DELETE FROM rules_backfill WHERE measurement_uid IN (SELECT measurement_uid FROM _u)")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        done += len(uids)


__all__ = ["backfill", "rows_of", "rule_rows", "rule_table"]
