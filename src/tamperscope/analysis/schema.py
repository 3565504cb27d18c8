"""The store's schema: the Arrow shape of analysed batches, the tables, and their migrations.

`MEASUREMENT_SCHEMA` and `VERDICT_SCHEMA` are what `pipeline.analyse_batch`
produces and the store inserts (`observations.SCHEMA` is the third). The DuckDB
tables are created and changed only by `MIGRATIONS`: an ordered list, applied by
`migrate()` one transaction each and recorded in the ``migrations`` table. To
change the schema, append a migration (and bump `SCHEMA_VERSION`); never edit an
old one, stores in the field have already run it. docs/analysis.md describes
every column.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import duckdb
import pyarrow as pa

from tamperscope.analysis.categories import CATEGORIES_DDL, TEST_LISTS_DDL
from tamperscope.analysis.confidence import (
    COUNT_ALL_SQL,
    GROUPS_DDL,
    NO_NETWORK,
    OUTCOME_SQL,
    PROMOTE_SQL,
    PROMOTIONS_DDL,
)

SCHEMA_VERSION = 12


class StoreError(Exception):
    """The store cannot be used as asked (missing, locked, newer than this code). ``serving``: when another
    process holds it and that process is `tamperscope serve`, the address it serves on (its report is there)."""

    def __init__(self, message: str, serving: str | None = None) -> None:
        super().__init__(message)
        self.serving = serving


MEASUREMENT_SCHEMA = pa.schema([
    ("measurement_uid", pa.string()),
    ("uid_key", pa.int64()),                     # first 64 bits of the content hash, for fast dedup
    ("report_id", pa.string()),
    ("input", pa.string()),                      # NULL for nettests without input
    ("domain", pa.string()),                     # host of the input URL (or the input domain)
    ("test_name", pa.string()),
    ("test_version", pa.string()),
    ("probe_cc", pa.string()),
    ("probe_asn", pa.string()),                  # "AS1234"
    ("probe_network_name", pa.string()),
    ("measurement_start_time", pa.timestamp("us")),  # UTC
    ("day", pa.date32()),                        # UTC day of measurement_start_time
    ("software_name", pa.string()),
    ("software_version", pa.string()),
    ("source", pa.string()),                     # file:line it was read from
])

VERDICT_SCHEMA = pa.schema([
    ("measurement_uid", pa.string()),
    ("test_name", pa.string()),
    ("input", pa.string()),
    ("domain", pa.string()),
    ("probe_cc", pa.string()),
    ("probe_asn", pa.string()),
    ("probe_network_name", pa.string()),
    ("day", pa.date32()),
    ("measurement_start_time", pa.timestamp("us")),
    ("blocking", pa.string()),                   # OONI's blocking as text: "false", "dns", ...; NULL = null
    ("accessible", pa.bool_()),
    ("mechanism", pa.string()),                  # x_mechanism
    ("confidence", pa.float64()),                # the verdict's own confidence, 0..1
    ("status", pa.string()),                     # ok | anomaly | failure (this measurement alone)
    ("evidence", pa.list_(pa.string())),
    ("fingerprints", pa.list_(pa.string())),
    ("signature", pa.string()),                  # test_keys.x_signature, when the probe saw equipment
    ("equipment", pa.string()),                  # test_keys.x_equipment
    ("analysis_version", pa.string()),
    ("outcome", pa.string()),                    # ok | anomaly | confirmed | failure (confidence.py)
    ("transport", pa.string()),                  # obfs4, snowflake, bridge: how a tool got through; NULL: directly
])

RULE_SCHEMA = pa.schema([  # one row per layer of a blocking_rules measurement, judged again from its records
    ("measurement_uid", pa.string()),
    ("layer", pa.string()),                      # model.rules.LAYERS: dns | dns_path | tls | http
    ("rule", pa.string()),                       # model.rules.RULES: exact ... not_blocked, undetermined
    ("keyword", pa.string()),                    # substring rules: the shortest part of the name still caught
    ("overblocks", pa.string()),                 # a name nobody listed that the rule catches too
])


def rows_to_table(rows: list[tuple[Any, ...]], schema: pa.Schema) -> pa.Table:
    """Tuples in ``schema`` order to a table: Arrow reads each tuple as one struct value, in C
    (a third faster than transposing the rows in Python first)."""
    if not rows:
        return schema.empty_table()
    structs = pa.array(rows, type=pa.struct(list(schema)))
    return pa.Table.from_batches([pa.RecordBatch.from_struct_array(structs)]).cast(schema)


def blocking_json(value: str | None) -> str | bool | None:
    """A verdict's ``blocking`` as OONI writes it in JSON: ``false`` (and ``true``) a boolean, the others a
    string (``"dns"``, ``"tcp_ip"``, ...). The store keeps them all as text."""
    if value == "false":
        return False
    if value == "true":
        return True
    return value


@lru_cache(maxsize=4096)  # a few sources per run, named once per measurement
def path_text(path: str) -> str:
    """A file name as text the store can hold. DuckDB and Arrow take UTF-8 only, and a name that is not
    UTF-8 reaches Python with lone surrogates (os.fsdecode): its odd bytes are written as ``\\xNN``."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        try:
            return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # a surrogate that is no escaped byte
            return path.encode("utf-8", "backslashreplace").decode("utf-8")


# --------------------------------------------------------------------------- migrations

_V1 = [
    """CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)""",
    """CREATE TABLE runs (
        run_id VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP, engine VARCHAR, workers INTEGER,
        paths VARCHAR[], records BIGINT, accepted BIGINT, new BIGINT, duplicates BIGINT, rejected BIGINT)""",
    """CREATE TABLE measurements (
        measurement_uid VARCHAR NOT NULL, uid_key BIGINT NOT NULL, report_id VARCHAR, input VARCHAR,
        domain VARCHAR, test_name VARCHAR NOT NULL, test_version VARCHAR, probe_cc VARCHAR NOT NULL,
        probe_asn VARCHAR NOT NULL, probe_network_name VARCHAR, measurement_start_time TIMESTAMP NOT NULL,
        day DATE NOT NULL, software_name VARCHAR, software_version VARCHAR, source VARCHAR, run_id VARCHAR,
        raw_segment VARCHAR, raw_frame_offset BIGINT, raw_frame_length BIGINT, raw_frame_size BIGINT,
        raw_line_offset BIGINT, raw_line_length BIGINT)""",
    """CREATE TABLE verdicts (
        measurement_uid VARCHAR NOT NULL, test_name VARCHAR NOT NULL, input VARCHAR, domain VARCHAR,
        probe_cc VARCHAR NOT NULL, probe_asn VARCHAR NOT NULL, probe_network_name VARCHAR, day DATE NOT NULL,
        measurement_start_time TIMESTAMP NOT NULL, blocking VARCHAR, accessible BOOLEAN, mechanism VARCHAR,
        confidence DOUBLE, status VARCHAR, evidence VARCHAR[], fingerprints VARCHAR[], signature VARCHAR,
        equipment VARCHAR, analysis_version VARCHAR)""",
    """CREATE TABLE observations (
        measurement_uid VARCHAR NOT NULL, idx INTEGER, step VARCHAR, pointer VARCHAR, t0 DOUBLE, t DOUBLE,
        transaction_id BIGINT, hostname VARCHAR, engine VARCHAR, resolver VARCHAR, query_type VARCHAR,
        answers VARCHAR[], ip VARCHAR, port INTEGER, server_name VARCHAR, url VARCHAR, status_code INTEGER,
        body_length BIGINT, body_truncated BOOLEAN, failure VARCHAR)""",
    """CREATE TABLE rejections (run_id VARCHAR, source VARCHAR, line BIGINT, reason VARCHAR, detail VARCHAR)""",
]


# Migrations are history: each creates the tables as they were at its version, and a later one
# changes them, so a store of any age takes the same path. The SQL of confidence.py is today's
# (groups of five fields, since v9); v2 and v5 keep the four-field SQL of their time, written
# out below, because the column v9 groups by too (transport) came with v8. A migration that changes
# the groups again must write out v9's SQL the same way.
_V2_OUTCOME_SQL = """
UPDATE verdicts AS v SET outcome = g.new_outcome
FROM (
    SELECT x.measurement_uid, x.outcome AS old_outcome, CASE
        WHEN x.status = 'failure' THEN 'failure'
        WHEN x.status <> 'anomaly' THEN 'ok'
        WHEN len(x.fingerprints) > 0 THEN 'confirmed'
        WHEN sum(CASE WHEN x.status = 'anomaly' THEN 1 ELSE 0 END) OVER (
            PARTITION BY x.test_name, coalesce(x.input, ''), x.probe_asn, x.mechanism) >= 2 THEN 'confirmed'
        ELSE 'anomaly' END AS new_outcome
    FROM verdicts x
) AS g
WHERE v.measurement_uid = g.measurement_uid AND g.old_outcome IS DISTINCT FROM g.new_outcome
"""
_V5_GROUPS_DDL = """CREATE TABLE anomaly_groups (
    test_name VARCHAR NOT NULL, input_key VARCHAR NOT NULL, probe_asn VARCHAR NOT NULL, mechanism VARCHAR,
    anomalies BIGINT NOT NULL, gkey UHUGEINT NOT NULL, lone_uid VARCHAR)"""
_V5_COUNT_ALL_SQL = """INSERT INTO anomaly_groups
    SELECT test_name, input_key, probe_asn, mechanism, anomalies,
           md5_number(concat_ws('|', length(test_name), test_name, length(input_key), input_key,
                                length(probe_asn), probe_asn, coalesce(length(mechanism) || '|' || mechanism, '-'))),
           lone_uid FROM (
        SELECT test_name, coalesce(input, '') AS input_key, probe_asn, mechanism, count(*) AS anomalies,
               CASE WHEN count(*) = 1 THEN any_value(measurement_uid) END AS lone_uid
        FROM verdicts WHERE status = 'anomaly' GROUP BY ALL)"""


def _v2(con: duckdb.DuckDBPyConnection) -> None:
    """Cross-measurement confidence: the ``outcome`` column, back-filled for every verdict."""
    con.execute("ALTER TABLE verdicts ADD COLUMN outcome VARCHAR")
    con.execute(_V2_OUTCOME_SQL)

_V3 = [
    """CREATE TABLE anomaly_groups (
        test_name VARCHAR NOT NULL, input_key VARCHAR NOT NULL, probe_asn VARCHAR NOT NULL, mechanism VARCHAR,
        anomalies BIGINT NOT NULL)""",
    """INSERT INTO anomaly_groups
        SELECT test_name, coalesce(input, ''), probe_asn, mechanism, count(*) FROM verdicts
        WHERE status = 'anomaly' GROUP BY ALL""",
]
_V4 = ["""CREATE TABLE promotions (
    test_name VARCHAR NOT NULL, input_key VARCHAR NOT NULL, probe_asn VARCHAR NOT NULL, mechanism VARCHAR)"""]


def _v5(con: duckdb.DuckDBPyConnection) -> None:
    """Anomaly groups keyed by 128 bits (`confidence.group_key_sql`), and each lone anomaly's uid,
    so a flush finds its groups by one column and a promotion its verdict by its uid. The notes
    a stopped run left are applied first, the old way; the groups are counted again from the
    verdicts they summarise."""
    con.execute("""UPDATE verdicts AS v SET outcome = 'confirmed'
        FROM (SELECT DISTINCT p.* FROM promotions p SEMI JOIN anomaly_groups g
              ON p.test_name = g.test_name AND p.input_key = g.input_key AND p.probe_asn = g.probe_asn
                 AND p.mechanism IS NOT DISTINCT FROM g.mechanism AND g.anomalies >= 2) AS x
        WHERE v.outcome = 'anomaly' AND v.status = 'anomaly' AND v.test_name = x.test_name
          AND coalesce(v.input, '') = x.input_key AND v.probe_asn = x.probe_asn
          AND v.mechanism IS NOT DISTINCT FROM x.mechanism""")
    for table, ddl in (("anomaly_groups", _V5_GROUPS_DDL), ("promotions", PROMOTIONS_DDL)):
        con.execute(f"DROP TABLE {table}")
        con.execute(ddl)
    con.execute(_V5_COUNT_ALL_SQL)


_V6 = ["""CREATE TABLE ingested_files (
    path VARCHAR NOT NULL, size BIGINT NOT NULL, mtime_ns BIGINT NOT NULL, run_id VARCHAR, finished_at TIMESTAMP)"""]


# v7: the rules blocking_rules measurements read back. Stores analysed before it hold such
# measurements without rows: `rules_backfill` lists them, and the store judges them again from their
# raw lines when it opens (analysis/rules.py), removing each from the list as its rows land.
_V7 = [
    """CREATE TABLE rules (
        measurement_uid VARCHAR NOT NULL, layer VARCHAR NOT NULL, rule VARCHAR NOT NULL, keyword VARCHAR,
        overblocks VARCHAR)""",
    "CREATE TABLE rules_backfill (measurement_uid VARCHAR NOT NULL)",
    "INSERT INTO rules_backfill SELECT measurement_uid FROM measurements WHERE test_name = 'blocking_rules'",
]


# v8: how a circumvention tool's measurement got through (analysis/transport.py): Tor started through a bridge
# is its own row in the apps' tables. Older verdicts of the tests that say so are listed in
# `transport_backfill`, and the store fills them from their raw lines when it opens.
_V8 = [
    "ALTER TABLE verdicts ADD COLUMN transport VARCHAR",
    "CREATE TABLE transport_backfill (measurement_uid VARCHAR NOT NULL)",
    """INSERT INTO transport_backfill SELECT measurement_uid FROM verdicts
       WHERE test_name IN ('vanilla_tor', 'torsf', 'bridge_reachability')""",
]


def _v9(con: duckdb.DuckDBPyConnection) -> None:
    """Anomaly groups split by transport: one failure of Tor started directly and one of Tor started
    through a bridge, on the same network, no longer confirm each other. The notes a stopped run left are
    applied first (by the four-field keys they hold); the groups are counted again from the verdicts, and
    the verdicts of every (test, input, network) that has a transport relabelled. Verdicts whose transport
    v8's backfill fills later are regrouped by that backfill (transport.backfill)."""
    con.execute(PROMOTE_SQL)
    con.execute("DROP TABLE anomaly_groups")
    con.execute(GROUPS_DDL)
    con.execute(COUNT_ALL_SQL)
    con.execute("""CREATE OR REPLACE TEMP TABLE touched AS
                   SELECT DISTINCT test_name, coalesce(input, '') AS input_key, probe_asn FROM verdicts
                   WHERE transport IS NOT NULL""")
    con.execute(OUTCOME_SQL)
    con.execute("DROP TABLE touched")


# v10: the reasons for a cut or damaged file say so whatever its format (they named gzip for zstd, LZ4 and tar too)
_V10 = [
    "UPDATE rejections SET reason = 'truncated' WHERE reason = 'truncated_gzip'",
    "UPDATE rejections SET reason = 'damaged' WHERE reason = 'corrupt_gzip'",
]


# v11: the test lists a store was given, and the categories of the sites they name (analysis/categories.py)
_V11 = [TEST_LISTS_DDL, CATEGORIES_DDL]


def _v12(con: duckdb.DuckDBPyConnection) -> None:
    """AS0 names no network: anomalies of measurements whose network is unknown (a probe that could not find
    its own; Censored Planet's lines read without an ASN table, from vantages anywhere) confirm none another.
    The notes a stopped run left are applied first; the groups are counted again without AS0, and the verdicts
    of AS0 relabelled (those confirmed by a repeat alone go back to anomaly; a fingerprint still confirms)."""
    con.execute(PROMOTE_SQL)
    con.execute("DELETE FROM anomaly_groups")
    con.execute(COUNT_ALL_SQL)
    con.execute(f"""CREATE OR REPLACE TEMP TABLE touched AS
                    SELECT DISTINCT test_name, coalesce(input, '') AS input_key, probe_asn FROM verdicts
                    WHERE probe_asn = '{NO_NETWORK}' AND status = 'anomaly'""")
    con.execute(OUTCOME_SQL)
    con.execute("DROP TABLE touched")


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[duckdb.DuckDBPyConnection], None]


def _statements(sql: Sequence[str]) -> Callable[[duckdb.DuckDBPyConnection], None]:
    def run(con: duckdb.DuckDBPyConnection) -> None:
        for statement in sql:
            con.execute(statement)
    return run


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "measurements, verdicts, observations, rejections, runs", _statements(_V1)),
    Migration(2, "verdicts.outcome: confirmed / anomaly / failure / ok across measurements", _v2),
    Migration(3, "anomaly_groups: anomalies per test name, input, network and mechanism", _statements(_V3)),
    Migration(4, "promotions: groups whose older anomaly a streaming ingest confirms at its end",
              _statements(_V4)),
    Migration(5, "anomaly groups keyed by 128 bits, with the uid of a lone anomaly", _v5),
    Migration(6, "ingested_files: input files analysed in full, which later runs skip", _statements(_V6)),
    Migration(7, "rules: what the censor's rule matches, per layer of each blocking_rules measurement",
              _statements(_V7)),
    Migration(8, "verdicts.transport: how a circumvention tool got through (obfs4, snowflake, a bridge)",
              _statements(_V8)),
    Migration(9, "anomaly groups split by transport: Tor through a bridge confirms only Tor through a bridge", _v9),
    Migration(10, "rejection reasons truncated_gzip and corrupt_gzip renamed truncated and damaged: they name any "
                  "format", _statements(_V10)),
    Migration(11, "test_lists and categories: Citizen Lab's category of each measured site", _statements(_V11)),
    Migration(12, "AS0 names no network: its anomalies are in no group and confirm none another", _v12),
)


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    tables = {row[0] for row in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()}
    if "migrations" not in tables:
        return 0
    row = con.execute("SELECT max(version) FROM migrations").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def migrate(con: duckdb.DuckDBPyConnection, target: int = SCHEMA_VERSION) -> list[int]:
    """Apply the missing migrations up to ``target``; returns the versions applied."""
    current = schema_version(con)
    if current > SCHEMA_VERSION:
        raise StoreError(f"the store has schema version {current}, newer than this tamperscope "
                         f"({SCHEMA_VERSION}): upgrade tamperscope to use it")
    con.execute("""CREATE TABLE IF NOT EXISTS migrations
                   (version INTEGER, description VARCHAR, applied_at TIMESTAMP)""")
    applied = []
    for m in MIGRATIONS:
        if current < m.version <= target:
            con.execute("BEGIN TRANSACTION")
            try:
                m.apply(con)
                con.execute("INSERT INTO migrations VALUES (?, ?, now()::TIMESTAMP)", [m.version, m.description])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            applied.append(m.version)
    return applied


__all__ = [
    "MEASUREMENT_SCHEMA", "MIGRATIONS", "Migration", "RULE_SCHEMA", "SCHEMA_VERSION", "StoreError", "VERDICT_SCHEMA",
    "migrate", "rows_to_table", "schema_version",
]
