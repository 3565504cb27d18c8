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
import pyarrow as pa

from tamperscope.analysis import backfill as backfills
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
    """Write the rows of the measurements listed in ``rules_backfill`` from their raw lines (`backfill.run`);
    returns how many were done. A measurement whose raw line is gone gets no rows (it keeps its verdict). The
    fingerprint database is loaded only if some measurement needs it."""
    match: list[BlockpageMatcher | None] = []

    def judge(uid: str, measurement: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        if not match:
            match.append(matcher())
        return rule_rows(uid, measurement, match[0])

    def write(con: duckdb.DuckDBPyConnection, _u: pa.Table, rows: list[tuple[Any, ...]]) -> None:
        _r = rule_table(rows)  # read by DuckDB, as _u
        con.execute("DELETE FROM rules WHERE measurement_uid IN (SELECT measurement_uid FROM _u)")
        if rows:
            con.execute("INSERT INTO rules BY NAME SELECT * FROM _r")

    return backfills.run(con, "rules_backfill", raw, judge, write, batch)


__all__ = ["backfill", "rows_of", "rule_rows", "rule_table"]
