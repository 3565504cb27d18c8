"""Transports: how a circumvention tool's measurement reached its network, as the store keeps it.

Tor started directly and Tor started through a bridge are two different findings on one network:
where the censor null-routes Tor's relays, the first is blocked and the second may work. OONI's
``vanilla_tor`` and ``torsf`` write the way in as ``test_keys.transport_name`` ("vanilla",
"snowflake"); ours writes "obfs4" when it ran through obfs4 bridges, and counts its bridges in
``x_bridges``. The verdicts table keeps it in ``transport`` (`transport_of`), so the reports and
the explorer list "Tor through an obfs4 bridge" beside "Tor" instead of letting the latest of
the two speak for both.

Stores analysed before the column existed (schema v8) get it from the raw lines they kept: migration 8
lists their verdicts of vanilla_tor, torsf and bridge_reachability, and `backfill` runs over that list
when such a store is opened, as `rules.backfill` does for schema v7.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import duckdb
import pyarrow as pa

from tamperscope.analysis import backfill as backfills
from tamperscope.analysis import confidence

DIRECT = frozenset(("", "vanilla", "none", "direct"))
_TOKEN = re.compile(r"[a-z0-9][a-z0-9_.+-]{0,39}")


def transport_of(test_keys: Mapping[str, Any]) -> str | None:
    """The transport a measurement went through, as one short lower-case token, or None for a direct one.

    ``transport_name`` when it names one ("obfs4", "snowflake", "meek_lite"); "bridge" for Tor started
    through plain bridges (``transport_name`` "vanilla", ``x_bridges`` above 0); None otherwise, and for
    anything that is no such token (markup, a long string, another type): it is shown on every page."""
    name = test_keys.get("transport_name")
    if isinstance(name, str):
        token = name.strip()
        if not token.isascii():  # no token; checked before lower(), which makes a Kelvin sign (U+212A) "k"
            return None
        token = token.lower()
        if token not in DIRECT:
            return token if _TOKEN.fullmatch(token) else None
    bridges = test_keys.get("x_bridges")
    if isinstance(bridges, int) and not isinstance(bridges, bool) and bridges > 0:
        return "bridge"
    return None


def backfill(con: duckdb.DuckDBPyConnection, raw: Callable[[str], bytes | None], batch: int = 512) -> int:
    """Fill ``verdicts.transport`` for the measurements listed in ``transport_backfill`` from their raw lines
    (`backfill.run`), and regroup their anomalies by it (`confidence.relabel`); returns how many were read.
    A raw line that is gone leaves NULL (direct)."""

    def judge(uid: str, measurement: Mapping[str, Any]) -> list[tuple[str, str]]:
        tk = measurement.get("test_keys")
        transport = transport_of(tk) if isinstance(tk, Mapping) else None
        return [(uid, transport)] if transport is not None else []

    def write(con: duckdb.DuckDBPyConnection, _u: pa.Table, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            _t = pa.table({"measurement_uid": pa.array([r[0] for r in rows], pa.string()),  # read by DuckDB
                           "transport": pa.array([r[1] for r in rows], pa.string())})
            con.execute("""UPDATE verdicts AS v SET transport = t.transport FROM _t AS t
                           WHERE v.measurement_uid = t.measurement_uid""")
            # their anomalies now count in the groups of their transport (confidence.py)
            confidence.touch(con, [r[0] for r in rows])
            confidence.relabel(con)

    return backfills.run(con, "transport_backfill", raw, judge, write, batch)


__all__ = ["DIRECT", "backfill", "transport_of"]
