"""Confidence across measurements: "confirmed", "anomaly", "failure" or "ok".

One measurement's verdict says what *it* saw. Whether that is evidence of
censorship depends on the others, as in OONI's explorer:

* ``failure``: the measurement itself failed (verdict status "failure"; no
  usable control, nothing to compare with);
* ``confirmed``: an anomaly with a blockpage fingerprint match, or the same
  anomaly (same mechanism) seen on at least `CONFIRM_MIN` measurements of the
  same input from the same network (test name, input, probe_asn), made the same
  way (``transport``: Tor started through an obfs4 bridge is not Tor started
  directly, so one failure of each does not confirm either). ``AS0`` names no
  network (a probe that could not find its own, a line of Censored Planet's read
  without an ASN table): its anomalies are in no group and confirm nothing;
* ``anomaly``: any other anomaly;
* ``ok``: nothing suspicious.

The rule is a function of a group's count of anomalies, which the store keeps
in the table ``anomaly_groups`` (one row per test name, input, network, transport
and mechanism with at least one anomaly). An ingest inserts its new verdicts with
`insert_verdicts`: it reads the counts of the groups it adds to, labels its
rows from them, and adds to the counts. Its memory and its joins are the size
of one flush, never of the store: the previous way, recomputing every touched
group over the whole verdicts table in one window query, ran out of a 32 MB cap
at ~120,000 verdicts and took longer with every flush.

A group that a flush brings to `CONFIRM_MIN` also has one older anomaly, stored
as "anomaly", that is now confirmed: the group's ``lone_uid``. Relabelling it means
reading the verdicts table (pruned to the row groups of the uids' times, which is
all of them when a long run has noted many), so a flush only notes the group and
that uid in ``promotions`` (in the same transaction as the counts) and
`PROMOTE_SQL` relabels every noted one in one statement: after each flush for a
single submission, once at the end of a streaming ingest (`insert_verdicts(...,
defer=True)`; with 5,000,000 stored verdicts this was ~100 ms of every flush), and
when a store is opened with notes left by a run that did not finish. It promotes
only groups whose count is still at least `CONFIRM_MIN`, so a note outlived by a
deletion does no harm.

Groups are found by ``gkey``, a 128-bit key of their five fields (`group_key_sql`):
one join on one column per flush, instead of joins on five strings.

Deleting or re-deriving verdicts can lower a count, so those paths recount
their groups from the verdicts (`REGROUP_SQL`) and relabel them whole
(`OUTCOME_SQL`). `outcome()` states the rule for one row given its group's
count; `outcomes()` applies it to plain rows, which tests use to cross-check
both SQL paths.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

OUTCOMES = ("ok", "anomaly", "confirmed", "failure")
CONFIRM_MIN = 2  # measurements of the same input and network showing the same anomaly
NO_NETWORK = "AS0"  # the probe_asn of a measurement whose network is unknown: it shares a network with none
# A group's count reaches CONFIRM_MIN from one anomaly, its `lone_uid` (the SQL below relies on it).
assert CONFIRM_MIN == 2


def outcome(status: str, fingerprints: Sequence[str], same_anomaly: int) -> str:
    """The label of one verdict; ``same_anomaly`` counts its group (itself included)."""
    if status == "failure":
        return "failure"
    if status != "anomaly":
        return "ok"
    if fingerprints or same_anomaly >= CONFIRM_MIN:
        return "confirmed"
    return "anomaly"


def group_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """What "the same input and network, measured the same way, the same anomaly" means."""
    return (row.get("test_name"), row.get("input") or "", row.get("probe_asn"), row.get("transport"),
            row.get("mechanism"))


def outcomes(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """`outcome()` for every row, counting groups among ``rows`` themselves."""
    materialised = list(rows)
    counts = Counter(group_key(r) for r in materialised if r.get("status") == "anomaly"
                     and r.get("probe_asn") != NO_NETWORK)
    return [outcome(str(r.get("status")), r.get("fingerprints") or (),
                    counts[group_key(r)] if r.get("probe_asn") != NO_NETWORK else 1) for r in materialised]


# The same rule in SQL, for every verdict whose (test_name, input, probe_asn) is in
# the temporary table `touched` (columns test_name, input_key, probe_asn). Only
# rows whose label changes are written.
OUTCOME_SQL = f"""
UPDATE verdicts AS v SET outcome = g.new_outcome
FROM (
    SELECT x.measurement_uid, x.outcome AS old_outcome, CASE
        WHEN x.status = 'failure' THEN 'failure'
        WHEN x.status <> 'anomaly' THEN 'ok'
        WHEN len(x.fingerprints) > 0 THEN 'confirmed'
        WHEN x.probe_asn = '{NO_NETWORK}' THEN 'anomaly'
        WHEN sum(CASE WHEN x.status = 'anomaly' THEN 1 ELSE 0 END) OVER (
            PARTITION BY x.test_name, coalesce(x.input, ''), x.probe_asn, x.transport, x.mechanism) >= {CONFIRM_MIN}
            THEN 'confirmed'
        ELSE 'anomaly' END AS new_outcome
    FROM verdicts x
    SEMI JOIN touched t ON x.test_name = t.test_name AND coalesce(x.input, '') = t.input_key
        AND x.probe_asn = t.probe_asn
) AS g
WHERE v.measurement_uid = g.measurement_uid AND g.old_outcome IS DISTINCT FROM g.new_outcome
"""


def group_key_sql(test_name: str = "test_name", input_key: str = "input_key", probe_asn: str = "probe_asn",
                  transport: str = "transport", mechanism: str = "mechanism") -> str:
    """SQL for a group's key: a 128-bit MD5 of its five fields, each prefixed by its length (and a
    NULL transport or mechanism written as "-", which no length starts with), so no two groups share
    an encoding.

    Flushes find their groups by this key alone: a join on one 16-byte column instead of four
    strings (bench/flush.py, 2,000,000 groups: 61 ms a deferred flush instead of 115). MD5,
    not DuckDB's ``hash()``, because the keys are stored and ``hash()`` may change between
    versions; 128 bits, because two groups sharing a key would share a count (a chance of about
    n^2 / 2^129 for n groups).
    """
    return (f"md5_number(concat_ws('|', length({test_name}), {test_name}, length({input_key}), {input_key}, "
            f"length({probe_asn}), {probe_asn}, coalesce(length({transport}) || '|' || {transport}, '-'), "
            f"coalesce(length({mechanism}) || '|' || {mechanism}, '-')))")


GROUP_KEY_SQL = group_key_sql()

GROUPS_DDL = """CREATE TABLE anomaly_groups (
    test_name VARCHAR NOT NULL, input_key VARCHAR NOT NULL, probe_asn VARCHAR NOT NULL, transport VARCHAR,
    mechanism VARCHAR, anomalies BIGINT NOT NULL, gkey UHUGEINT NOT NULL, lone_uid VARCHAR)"""
# lone_uid: while a group has one anomaly, that verdict's measurement_uid (else NULL), so that
# confirming it later is an update of one row found by its uid (see PROMOTE_SQL).

_GROUP_COLUMNS = "test_name, input_key, probe_asn, transport, mechanism, anomalies, gkey, lone_uid"
_LONE = "CASE WHEN count(*) = 1 THEN any_value(measurement_uid) END"

# Recount, from the verdicts, every group of the temporary table `touched` (as for OUTCOME_SQL).
REGROUP_SQL = (
    """DELETE FROM anomaly_groups g USING touched t
       WHERE g.test_name = t.test_name AND g.input_key = t.input_key AND g.probe_asn = t.probe_asn""",
    f"""INSERT INTO anomaly_groups ({_GROUP_COLUMNS})
       SELECT test_name, input_key, probe_asn, transport, mechanism, anomalies, {GROUP_KEY_SQL}, lone_uid FROM (
           SELECT x.test_name, coalesce(x.input, '') AS input_key, x.probe_asn, x.transport, x.mechanism,
                  count(*) AS anomalies,
                  {_LONE} AS lone_uid
           FROM verdicts x SEMI JOIN touched t ON x.test_name = t.test_name
               AND coalesce(x.input, '') = t.input_key AND x.probe_asn = t.probe_asn
           WHERE x.status = 'anomaly' AND x.probe_asn <> '{NO_NETWORK}' GROUP BY ALL)""",
)

# Every group, from scratch (a migration, or a store whose counts are suspect).
COUNT_ALL_SQL = f"""INSERT INTO anomaly_groups ({_GROUP_COLUMNS})
    SELECT test_name, input_key, probe_asn, transport, mechanism, anomalies, {GROUP_KEY_SQL}, lone_uid FROM (
        SELECT test_name, coalesce(input, '') AS input_key, probe_asn, transport, mechanism, count(*) AS anomalies,
               {_LONE} AS lone_uid
        FROM verdicts WHERE status = 'anomaly' AND probe_asn <> '{NO_NETWORK}' GROUP BY ALL)"""


PROMOTIONS_DDL = "CREATE TABLE promotions (gkey UHUGEINT NOT NULL, lone_uid VARCHAR NOT NULL)"

# A noted group had one anomaly, `lone_uid`, labelled "anomaly" unless a fingerprint confirmed it:
# promote it, if its group still has CONFIRM_MIN anomalies. The verdicts are joined on their uid,
# which starts with the measurement's time: DuckDB prunes the scan to the row groups of the
# noted uids' times (the few of a single submission's; all of them at the end of a long run).
PROMOTE_SQL = f"""
UPDATE verdicts AS v SET outcome = 'confirmed'
    FROM (SELECT DISTINCT p.lone_uid FROM promotions p
          SEMI JOIN anomaly_groups g ON p.gkey = g.gkey AND g.anomalies >= {CONFIRM_MIN}) AS x
    WHERE v.measurement_uid = x.lone_uid AND v.outcome = 'anomaly' AND v.status = 'anomaly';
DELETE FROM promotions;
"""

# Seven statements, each a round trip into DuckDB, and one scan of the Arrow table (see
# `insert_verdicts`); the temporary tables are replaced by the next flush, not dropped. The
# store's groups are read once, in the join on `gkey` that finds this flush's groups (and their
# row ids, by which they are updated); the flush's rows are matched to their groups by key too.
_INSERT_SQL = f"""
CREATE OR REPLACE TEMP TABLE _flush_verdicts AS
    SELECT *, CASE WHEN status = 'anomaly' AND probe_asn <> '{NO_NETWORK}'
                   THEN {group_key_sql(input_key="coalesce(input, '')")} END AS _gkey
    FROM _new;
CREATE OR REPLACE TEMP TABLE _flush_groups AS
    SELECT f.*, coalesce(g.anomalies, 0) AS before, g.rowid AS _row
    FROM (SELECT _gkey AS gkey, any_value(test_name) AS test_name, any_value(coalesce(input, '')) AS input_key,
                 any_value(probe_asn) AS probe_asn, any_value(transport) AS transport,
                 any_value(mechanism) AS mechanism, count(*) AS n,
                 {_LONE} AS lone
          FROM _flush_verdicts WHERE _gkey IS NOT NULL GROUP BY _gkey) f
    LEFT JOIN anomaly_groups g ON f.gkey = g.gkey;
-- The groups these rows bring to CONFIRM_MIN have an older anomaly to promote (PROMOTE_SQL).
-- (Their lone uids are read by row id: in the join above, that column would be read for every group.)
INSERT INTO promotions SELECT x.gkey, g.lone_uid FROM _flush_groups x JOIN anomaly_groups g ON g.rowid = x._row
    WHERE x.before = 1 AND x.before + x.n >= {CONFIRM_MIN} AND g.lone_uid IS NOT NULL;
UPDATE anomaly_groups AS g SET anomalies = g.anomalies + x.n, lone_uid = NULL
    FROM _flush_groups x WHERE g.rowid = x._row;
INSERT INTO anomaly_groups ({_GROUP_COLUMNS})
    SELECT test_name, input_key, probe_asn, transport, mechanism, n, gkey, lone FROM _flush_groups WHERE _row IS NULL;
INSERT INTO verdicts BY NAME
    SELECT v.* EXCLUDE (_gkey) REPLACE (
        CASE WHEN v.outcome = 'anomaly' AND x.before + x.n >= {CONFIRM_MIN} THEN 'confirmed'
             ELSE v.outcome END AS outcome)
    FROM _flush_verdicts v LEFT JOIN _flush_groups x ON v._gkey = x.gkey;
"""


def touch(con: duckdb.DuckDBPyConnection, uids: Sequence[str], *, also: bool = False) -> None:
    """Make the temporary table ``touched``: the (test name, input, network) of these verdicts, whose
    groups `relabel` recounts once they were removed, re-derived or given another transport. With ``also``,
    add them to the groups ``touched`` holds already (a re-analysis that moved a verdict to another network:
    the group it left and the one it joined)."""
    select = """SELECT DISTINCT test_name, coalesce(input, '') AS input_key, probe_asn FROM verdicts
                WHERE measurement_uid IN (SELECT unnest(?::VARCHAR[]))"""
    if also:
        con.execute(f"INSERT INTO touched {select}", [list(uids)])
    else:
        con.execute(f"CREATE OR REPLACE TEMP TABLE touched AS {select}", [list(uids)])


def relabel(con: duckdb.DuckDBPyConnection) -> None:
    """Recount the groups of ``touched`` from the verdicts (`REGROUP_SQL`) and relabel their verdicts
    (`OUTCOME_SQL`). Runs inside the caller's transaction."""
    for statement in REGROUP_SQL:
        con.execute(statement)
    con.execute(OUTCOME_SQL)


def insert_verdicts(con: duckdb.DuckDBPyConnection, verdicts: pa.Table, *, defer: bool = False) -> None:
    """Insert a flush's new verdicts with the label the whole store gives each, and bring the group
    counts up to date. Runs inside the caller's transaction.

    ``verdicts`` is in `schema.VERDICT_SCHEMA`, its ``outcome`` the measurement's own
    ("confirmed" for a fingerprint match, "anomaly", "ok", "failure"). Every join is built on
    this flush's groups and streams over ``anomaly_groups``, so memory does not grow with the
    store. The older anomalies the flush confirms are relabelled now (`PROMOTE_SQL`, by their
    uids), or, with ``defer``, when the caller runs `promote` (a streaming ingest:
    once at its end instead of once per flush).

    As few statements as it can: the store's writer thread runs this beside the analysis,
    and each statement (DuckDB's client lets go of the GIL for each) and each scan of a
    Python object costs that thread up to the interpreter's switch interval (5 ms) to get
    the GIL back. Beside a busy thread a bare ``SELECT 1`` takes ~11 ms instead of 0.2, and
    inserting 4,096 verdicts from Arrow ~50 ms instead of 6: the table is read once.
    """
    if "transport" not in verdicts.column_names:  # a table from before schema v9 (or a test's): all direct
        verdicts = verdicts.append_column("transport", pa.nulls(verdicts.num_rows, pa.string()))
    _new = verdicts  # read by DuckDB (replacement scan of this frame's locals)
    if pc.index(verdicts.column("status"), "anomaly").as_py() < 0:
        con.execute("INSERT INTO verdicts BY NAME SELECT * FROM _new")
        return
    con.execute(_INSERT_SQL if defer else _INSERT_SQL + PROMOTE_SQL)


def promote(con: duckdb.DuckDBPyConnection) -> int:
    """Relabel the older anomalies of the groups flushes noted in ``promotions``; returns how many
    groups were noted (0: nothing to do, and no scan of the verdicts)."""
    row = con.execute("SELECT count(*) FROM promotions").fetchone()
    noted = int(row[0]) if row else 0
    if noted:
        con.execute(PROMOTE_SQL)
    return noted


__all__ = [
    "CONFIRM_MIN", "COUNT_ALL_SQL", "GROUPS_DDL", "GROUP_KEY_SQL", "NO_NETWORK", "OUTCOMES", "OUTCOME_SQL",
    "PROMOTE_SQL", "PROMOTIONS_DDL", "REGROUP_SQL", "group_key", "group_key_sql", "insert_verdicts", "outcome",
    "outcomes", "promote", "relabel", "touch",
]
