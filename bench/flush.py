"""Benchmark: what one flush costs as the store grows (deduplication and confidence).

    .venv/bin/python -m bench.flush [--sizes 1000000,5000000,20000000] [--flush 4096] [--repeats 7]

The store is filled here with synthetic rows straight through SQL (the analysis
would take hours to write 20 million), in time order, as OONI's archive is laid
out (a day at a time), with random 64-bit keys; one verdict in ten is an
anomaly with an input of its own, so the store holds many lone anomalies, each
of which a later measurement can confirm.

1. Deduplication (`Store._known`): which of a flush's measurements, a few of
   them stored already, the store holds:
   * "one day": the flush's measurements come from one day, as when the input is
     a day of OONI's archive;
   * "any time": their times are spread over the whole store (shuffled input):
     no row group can be skipped;
   * "key only": the lookup before 2026-11-30, a semi-join on the key alone, for
     the same one-day flush.
2. Confidence (`confidence.insert_verdicts`) for a flush of verdicts, one in ten
   an anomaly, half of those confirming a stored lone anomaly: with the
   promotions made at once (a single submission; every flush before 2026-11-30)
   and deferred to the end of the run (a streaming ingest, now), and the deferred
   flush as it was before the groups had a 128-bit key (schema v5): joined and
   merged on the groups' four strings. Rolled back after each timing.
3. One submission (the collector's case) whose one anomaly confirms a stored lone
   anomaly, promoted at once: the older verdict found by its uid (`lone_uid`, now)
   and by its group's four strings (before schema v5).

Stored uids start with their time and inputs are host names in no order, as in
real data: ordered names would let DuckDB's zone maps prune joins on them.

DuckDB runs with the ingest's memory cap (32 MB); times are the median and the
worst of ``--repeats``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from tamperscope.analysis import store as st  # noqa: E402
from tamperscope.analysis.confidence import COUNT_ALL_SQL, group_key_sql, insert_verdicts, promote  # noqa: E402
from tamperscope.analysis.schema import VERDICT_SCHEMA, rows_to_table  # noqa: E402

BASE = dt.datetime(2024, 1, 1)
STEP_S = 2  # seconds between stored measurements: 43,200 a day


# Stored row i: its uid starts with its time, as real ones do, and its input is a host name in no
# particular order, as real inputs are (a zone map of ordered names would prune a join on them).
_UID_SQL = f"strftime(TIMESTAMP '{BASE:%Y-%m-%d}' + to_seconds(i * {STEP_S}), '%Y%m%d%H%M%S') || '_IT_' || i"
_INPUT_SQL = "'https://' || md5(i::VARCHAR)[:12] || '.example/'"


def _uid(i: int) -> str:
    return f"{BASE + dt.timedelta(seconds=i * STEP_S):%Y%m%d%H%M%S}_IT_{i}"


def _input(i: int) -> str:
    return f"https://{hashlib.md5(str(i).encode()).hexdigest()[:12]}.example/"


def _fill(store: st.Store, start: int, stop: int) -> None:
    store.con.execute(f"""
        INSERT INTO measurements (measurement_uid, uid_key, test_name, probe_cc, probe_asn,
                                  measurement_start_time, day)
        SELECT {_UID_SQL}, (hash(i) >> 1)::BIGINT, 'web_connectivity', 'IT', 'AS137',
               TIMESTAMP '{BASE:%Y-%m-%d}' + to_seconds(i * {STEP_S}),
               (TIMESTAMP '{BASE:%Y-%m-%d}' + to_seconds(i * {STEP_S}))::DATE
        FROM range({start}, {stop}) r(i)""")
    store.con.execute(f"""
        INSERT INTO verdicts (measurement_uid, test_name, input, probe_cc, probe_asn, day, measurement_start_time,
                              status, mechanism, outcome, fingerprints, evidence)
        SELECT {_UID_SQL}, 'web_connectivity', {_INPUT_SQL}, 'IT', 'AS137', DATE '{BASE:%Y-%m-%d}',
               TIMESTAMP '{BASE:%Y-%m-%d}' + to_seconds(i * {STEP_S}),
               CASE WHEN i % 10 = 0 THEN 'anomaly' ELSE 'ok' END, CASE WHEN i % 10 = 0 THEN 'dns.poison' END,
               CASE WHEN i % 10 = 0 THEN 'anomaly' ELSE 'ok' END, [], []
        FROM range({start}, {stop}) r(i)""")
    store.con.execute("DELETE FROM anomaly_groups")
    store.con.execute(COUNT_ALL_SQL)
    store.con.execute("CHECKPOINT")


def _verdicts(stored: int, size: int, rng: random.Random) -> object:
    """A flush of verdicts: one in ten an anomaly, half of those of a stored lone anomaly's group."""
    fields = dict.fromkeys(VERDICT_SCHEMA.names)
    rows = []
    for j in range(size):
        anomalous = j % 10 == 0
        group = rng.randrange(stored // 10) * 10 if j % 20 == 0 else stored + j  # stored lone anomaly, or new
        rows.append(tuple({**fields, "measurement_uid": f"new{j}", "test_name": "web_connectivity",
                           "input": _input(group), "probe_cc": "IT", "probe_asn": "AS137",
                           "day": BASE.date(), "measurement_start_time": BASE,
                           "status": "anomaly" if anomalous else "ok", "mechanism": "dns.poison" if anomalous else None,
                           "outcome": "anomaly" if anomalous else "ok", "fingerprints": [], "evidence": []}.values()))
    return rows_to_table(rows, VERDICT_SCHEMA)


def _time_insert(store: st.Store, verdicts: object, defer: bool, repeats: int) -> tuple[float, float, float]:
    """(median, worst) ms of insert_verdicts, and the median ms of the promote() that a deferred one leaves."""
    times, promotes = [], []
    for _ in range(repeats):
        store.con.execute("BEGIN TRANSACTION")
        t = time.perf_counter()
        insert_verdicts(store.con, verdicts, defer=defer)  # type: ignore[arg-type]
        times.append(time.perf_counter() - t)
        t = time.perf_counter()
        promote(store.con)
        promotes.append(time.perf_counter() - t)
        store.con.execute("ROLLBACK")
    return statistics.median(times) * 1e3, max(times) * 1e3, statistics.median(promotes) * 1e3


_SAME = """{a}.test_name = {b}.test_name AND {a}.input_key = {b}.input_key AND {a}.probe_asn = {b}.probe_asn
    AND {a}.mechanism IS NOT DISTINCT FROM {b}.mechanism"""
# The deferred flush as it was before the groups had a key (schema v4): the store's groups joined
# and merged on their four strings. Restated here as the baseline; same tables, same results.
_STRINGS_SQL = f"""
CREATE OR REPLACE TEMP TABLE _flush_verdicts AS SELECT *, coalesce(input, '') AS input_key FROM _new;
CREATE OR REPLACE TEMP TABLE _flush_groups AS
    SELECT f.*, coalesce(g.anomalies, 0) AS before
    FROM (SELECT test_name, input_key, probe_asn, mechanism, count(*) AS n
          FROM _flush_verdicts WHERE status = 'anomaly' GROUP BY ALL) f
    LEFT JOIN anomaly_groups g ON {_SAME.format(a='f', b='g')};
CREATE OR REPLACE TEMP TABLE _notes AS SELECT test_name, input_key, probe_asn, mechanism FROM _flush_groups
    WHERE before = 1;
MERGE INTO anomaly_groups AS g USING _flush_groups AS x ON {_SAME.format(a='x', b='g')}
    WHEN MATCHED THEN UPDATE SET anomalies = g.anomalies + x.n
    WHEN NOT MATCHED THEN INSERT (test_name, input_key, probe_asn, mechanism, anomalies, gkey, lone_uid)
        VALUES (x.test_name, x.input_key, x.probe_asn, x.mechanism, x.n, {group_key_sql(transport="NULL")}, NULL);
INSERT INTO verdicts BY NAME
    SELECT v.* EXCLUDE (input_key) REPLACE (CASE WHEN v.outcome = 'anomaly' AND x.before + x.n >= 2
                                                 THEN 'confirmed' ELSE v.outcome END AS outcome)
    FROM _flush_verdicts v LEFT JOIN _flush_groups x ON v.status = 'anomaly' AND {_SAME.format(a='v', b='x')};
"""


# ... and its promotion: the verdicts of the noted groups, found by their four strings.
_STRINGS_PROMOTE_SQL = f"""
UPDATE verdicts AS v SET outcome = 'confirmed'
    FROM (SELECT DISTINCT n.* FROM _notes n SEMI JOIN anomaly_groups g ON {_SAME.format(a='n', b='g')}
          AND g.anomalies >= 2) AS x
    WHERE v.outcome = 'anomaly' AND v.status = 'anomaly' AND v.test_name = x.test_name
      AND coalesce(v.input, '') = x.input_key AND v.probe_asn = x.probe_asn
      AND v.mechanism IS NOT DISTINCT FROM x.mechanism;
"""


def _time_strings(store: st.Store, verdicts: object, repeats: int, at_once: bool = False) -> tuple[float, float]:
    """(median, worst) ms of the flush joined on the groups' strings (before schema v5), deferred or
    promoting at once."""
    _new = verdicts  # noqa: F841 - read by DuckDB
    times = []
    for _ in range(repeats):
        store.con.execute("BEGIN TRANSACTION")
        t = time.perf_counter()
        store.con.execute(_STRINGS_SQL + (_STRINGS_PROMOTE_SQL if at_once else ""))
        times.append(time.perf_counter() - t)
        store.con.execute("ROLLBACK")
    return statistics.median(times) * 1e3, max(times) * 1e3


def _flush(store: st.Store, stored: int, size: int, spread: bool, rng: random.Random) -> tuple[object, set[str]]:
    """A flush table: ``size`` measurements, 1% of them stored already; one day of times unless ``spread``."""
    day0 = rng.randrange(max(1, stored * STEP_S // 86400 - 1))
    fields = dict.fromkeys(st.MEASUREMENT_SCHEMA.names)
    rows, expected = [], set()
    for j in range(size):
        if j % 100 == 0:  # a copy of a stored measurement
            i = rng.randrange(stored) if spread else min(stored - 1, (day0 * 86400 + rng.randrange(86400)) // STEP_S)
            uid, key, start = store.con.execute(
                "SELECT measurement_uid, uid_key, measurement_start_time FROM measurements "
                "WHERE measurement_uid = ?", [_uid(i)]).fetchone()
            expected.add(uid)
        else:
            seconds = rng.randrange(stored * STEP_S) if spread else day0 * 86400 + rng.randrange(86400)
            uid, key, start = f"new{j}", rng.getrandbits(63), BASE + dt.timedelta(seconds=seconds, microseconds=1)
        rows.append(tuple({**fields, "measurement_uid": uid, "uid_key": key, "measurement_start_time": start,
                           "test_name": "web_connectivity"}.values()))
    return rows_to_table(rows, st.MEASUREMENT_SCHEMA), expected


def _key_only(store: st.Store, measurements: object) -> set[str]:
    _keys = measurements.select(["uid_key"])  # type: ignore[attr-defined]  # noqa: F841 - read by DuckDB
    return {row[0] for row in store.con.execute(
        "SELECT m.measurement_uid FROM measurements m SEMI JOIN _keys k ON m.uid_key = k.uid_key").fetchall()}


def _uids(known: Mapping[tuple[int, str], tuple[str, str]]) -> set[str]:
    """The stored uids `Store._known` found (it maps each measurement's identity to its uid and network)."""
    return {uid for uid, _ in known.values()}


def _time(lookup: Callable[[], set[str]], expected: set[str], repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        found = lookup()
        times.append(time.perf_counter() - t)
        if found != expected:
            raise SystemExit(f"the lookup found {len(found)} stored measurements, expected {len(expected)}")
    return statistics.median(times) * 1e3, max(times) * 1e3


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000,5000000,20000000", help="stored rows, comma-separated, increasing")
    ap.add_argument("--flush", type=int, default=st.FLUSH_ROWS, help="measurements per flush")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    try:
        sizes = sorted(int(x) for x in args.sizes.split(","))
    except ValueError:
        ap.error("--sizes takes integers separated by commas")
    work = Path(tempfile.mkdtemp(prefix="ts-bench-dedup-"))
    rng = random.Random(3)
    rows: list[list[str]] = []
    conf: list[list[str]] = []
    single_rows: list[list[str]] = []
    try:
        store = st.Store(work / "dedup.duckdb")
        with store.streaming():
            filled = 0
            for n in sizes:
                store.con.execute("SET memory_limit = '2GB'")  # the filling only, then the ingest's cap
                _fill(store, filled, n)
                store.con.execute(f"SET memory_limit = '{st.INGEST_MEMORY_LIMIT}'")
                filled = n
                day, day_expected = _flush(store, n, args.flush, False, rng)
                anytime, any_expected = _flush(store, n, args.flush, True, rng)
                one = _time(lambda: _uids(store._known(day)), day_expected, args.repeats)
                spread = _time(lambda: _uids(store._known(anytime)), any_expected, args.repeats)
                before = _time(lambda: _key_only(store, day), day_expected, args.repeats)
                verdicts = _verdicts(n, args.flush, rng)
                now = _time_insert(store, verdicts, False, args.repeats)
                later = _time_insert(store, verdicts, True, args.repeats)
                strings = _time_strings(store, verdicts, args.repeats)
                single = _verdicts(n, 1, rng)  # one submission (an anomaly) that confirms a lone anomaly
                one_now = _time_insert(store, single, False, args.repeats)
                one_before = _time_strings(store, single, args.repeats, at_once=True)
                rows.append([f"{n:,}", f"{one[0]:.1f} ({one[1]:.1f})", f"{spread[0]:.1f} ({spread[1]:.1f})",
                             f"{before[0]:.1f} ({before[1]:.1f})", f"{before[0] / one[0]:.0f}x"])
                conf.append([f"{n:,}", f"{n // 10:,}", f"{now[0]:.1f} ({now[1]:.1f})",
                             f"{later[0]:.1f} ({later[1]:.1f})", f"{later[2]:.1f}",
                             f"{strings[0]:.1f} ({strings[1]:.1f})", f"{strings[0] / later[0]:.1f}x"])
                single_rows.append([f"{n:,}", f"{one_now[0]:.1f} ({one_now[1]:.1f})",
                                    f"{one_before[0]:.1f} ({one_before[1]:.1f})", f"{one_before[0] / one_now[0]:.0f}x"])
        store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _table(f"1. dedup of one flush of {args.flush:,} measurements (1% already stored): median (worst) "
           f"of {args.repeats}, ms",
           ["stored rows", "one day", "any time", "key only (before)", "one day vs before"], rows)
    _table(f"2. confidence for one flush of {args.flush:,} verdicts ({args.flush // 20:,} confirm a stored lone "
           f"anomaly): median (worst) of {args.repeats}, ms",
           ["stored verdicts", "groups", "promoted at once", "deferred to the run's end",
            "promote() at the end, once a run", "deferred, joined on strings (before)", "keyed vs before"], conf)
    _table(f"3. one submission that confirms a stored lone anomaly, promoted at once (the collector): median "
           f"(worst) of {args.repeats}, ms",
           ["stored verdicts", "keyed, lone anomaly found by its uid", "joined on strings (before)", "now vs before"],
           single_rows)
    return 0


def _table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(title)
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    print()


if __name__ == "__main__":
    sys.exit(main())
