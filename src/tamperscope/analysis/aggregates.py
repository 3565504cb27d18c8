"""Aggregates over the store's verdicts: what the explorer, the report and the collector's API show.

Each function (`timeline`, `per_domain`, `per_network`, `per_test`, `apps`, `per_mechanism`,
`per_country`, `per_category`, and the report's `domain_network`, `mechanism_country`, `signatures`,
`blockpages`, `blocking_rules`, `changes`, `totals`) returns plain rows (lists of dicts of str, int,
float; dates as ISO strings) from one SQL query over the store's tables, narrowed by one
set of filters (`Filters`). They take anything with a ``cursor()`` (a `Store`, or the
collector's read-only reader). Over 1,000,000 verdict rows (``bench/analyze.py``, section
4) their worst p95 is about 50 ms on a shared 2-core machine (docs/analysis.md,
Benchmarks); `changes` and `blocking_rules` over a whole store are the report's, and the
explorer asks them for one country, network or domain.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tamperscope.analysis.categories import category_sql
from tamperscope.analysis.confidence import CONFIRM_MIN, NO_NETWORK
from tamperscope.analysis.store import query_rows
from tamperscope.model.inputs import host_forms
from tamperscope.model.services import APPS, TOOLS

if TYPE_CHECKING:
    from tamperscope.analysis.store import Store


@dataclass(frozen=True)
class Filters:
    """What every aggregate can be narrowed to; None means "any"."""

    probe_cc: str | None = None
    probe_asn: str | None = None
    domain: str | None = None
    input: str | None = None
    test_name: str | None = None
    mechanism: str | None = None
    fingerprint: str | None = None        # a blockpage or DNS fingerprint id the verdict matched
    category_code: str | None = None      # the site's Citizen Lab category (NEWS, HUMR...), from the store's lists
    since: dt.date | str | None = None    # inclusive, by measurement day
    until: dt.date | str | None = None    # inclusive

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column in ("probe_cc", "probe_asn", "domain", "input", "test_name", "mechanism"):
            value = getattr(self, column)
            if value is None:
                continue
            if column == "domain" and len(forms := host_forms(value)) > 1:  # a store may hold either spelling
                clauses.append(f"domain IN ({', '.join('?' * len(forms))})")
                params.extend(forms)
            else:
                clauses.append(f"{column} = ?")
                params.append(value)
        if self.fingerprint is not None:
            clauses.append("list_contains(fingerprints, ?)")
            params.append(self.fingerprint)
        if self.category_code is not None:
            clauses.append(f"{category_sql()} = ?")
            params.append(self.category_code)
        if self.since is not None:
            clauses.append("day >= ?::DATE")
            params.append(str(self.since))
        if self.until is not None:
            clauses.append("day <= ?::DATE")
            params.append(str(self.until))
        return (" AND ".join(clauses) or "TRUE"), params


_COUNTS = """count(*) AS measurement_count,
    count(*) FILTER (WHERE outcome IN ('anomaly', 'confirmed')) AS anomaly_count,
    count(*) FILTER (WHERE outcome = 'confirmed') AS confirmed_count,
    count(*) FILTER (WHERE outcome = 'failure') AS failure_count,
    count(*) FILTER (WHERE outcome = 'ok') AS ok_count"""

# The networks a group's measurements name, not counting AS0 (`NO_NETWORK`: measurements whose network nobody said,
# from anywhere: not one network), and whether some of them are on AS0 (the reports and the explorer say "not known")
_NETWORKS = f"""count(DISTINCT probe_asn) FILTER (WHERE probe_asn <> '{NO_NETWORK}') AS network_count,
    coalesce(bool_or(probe_asn = '{NO_NETWORK}'), false) AS unknown_network"""


def _plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        for key, value in row.items():
            if isinstance(value, (dt.date, dt.datetime)):
                row[key] = value.isoformat()
    return rows


def _aggregate(store: Store, select: str, group: str, order: str, filters: Filters | None,
               limit: int | None, extra_where: str = "") -> list[dict[str, Any]]:
    where, params = (filters or Filters()).where()
    if extra_where:
        where = f"({where}) AND {extra_where}"
    sql = f"SELECT {select} FROM verdicts WHERE {where} GROUP BY {group} ORDER BY {order}"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return _plain(query_rows(store.cursor(), sql, params))


def timeline(store: Store, filters: Filters | None = None) -> list[dict[str, Any]]:
    """Per day: measurement, anomaly, confirmed, failure and ok counts."""
    return _aggregate(store, f"day, {_COUNTS}", "day", "day", filters, None)


_ANOMALOUS = "outcome IN ('anomaly', 'confirmed')"


def per_domain(store: Store, filters: Filters | None = None, limit: int | None = 100) -> list[dict[str, Any]]:
    """Per domain, most anomalous first: counts, networks and countries seen, the commonest mechanism, and
    whether echcheck alone saw it (``top_mechanism_ech_only``: the site's hellos carrying Encrypted Client Hello
    were blocked, which is not the site being blocked).

    The counts come from one pass; the distinct counts and the commonest
    mechanism only for the domains that make the cut (DISTINCT is what costs).
    """
    where, params = (filters or Filters()).where()
    top = f"LIMIT {int(limit)}" if limit is not None else ""
    sql = f"""
        WITH f AS NOT MATERIALIZED (SELECT domain, probe_asn, probe_cc, mechanism, outcome, test_name FROM verdicts
                   WHERE ({where}) AND domain IS NOT NULL),
        top AS (SELECT domain, {_COUNTS} FROM f GROUP BY domain
                ORDER BY anomaly_count DESC, confirmed_count DESC, measurement_count DESC, domain {top}),
        seen AS (SELECT domain, {_NETWORKS}, count(DISTINCT probe_cc) AS country_count
                 FROM f SEMI JOIN top USING (domain) GROUP BY domain),
        mech AS (SELECT domain, mechanism, count(*) AS n, bool_and(test_name = 'echcheck') AS ech_only
                 FROM f SEMI JOIN top USING (domain) WHERE {_ANOMALOUS} GROUP BY domain, mechanism),
        best AS (SELECT domain, first(mechanism ORDER BY n DESC, mechanism) AS top_mechanism,
                        first(ech_only ORDER BY n DESC, mechanism) AS top_mechanism_ech_only FROM mech GROUP BY domain)
        SELECT top.*, seen.network_count, seen.unknown_network, seen.country_count, best.top_mechanism,
               coalesce(best.top_mechanism_ech_only, false) AS top_mechanism_ech_only
        FROM top JOIN seen USING (domain) LEFT JOIN best USING (domain)
        ORDER BY anomaly_count DESC, confirmed_count DESC, measurement_count DESC, domain"""
    return _plain(query_rows(store.cursor(), sql, params))


def _place(networks: str) -> str:
    """Two CTEs over ``f``: ``countries`` (each network of the CTE ``networks`` by country) and ``place``: its
    ``probe_cc``, the country most of its measurements name (the first alphabetically on a tie), and
    ``country_count``, how many they name."""
    return f"""countries AS (SELECT probe_asn, probe_cc, count(*) AS n FROM f SEMI JOIN {networks} USING (probe_asn)
                      GROUP BY probe_asn, probe_cc),
        place AS (SELECT probe_asn, first(probe_cc ORDER BY n DESC, probe_cc) AS probe_cc,
                         count(*) AS country_count FROM countries GROUP BY probe_asn)"""


def per_network(store: Store, filters: Filters | None = None, limit: int | None = 100) -> list[dict[str, Any]]:
    """Per network (probe_asn, with its name and country), most anomalous first.

    A network's ``probe_cc`` is the country most of its measurements name (the first in
    alphabetical order on a tie), and ``country_count`` how many countries they name: a network
    is seldom in two, but AS0 (a network not known, as Censored Planet's lines are without an
    ASN table) gathers every country's, and one country standing for all of them must be told.
    """
    where, params = (filters or Filters()).where()
    top = f"LIMIT {int(limit)}" if limit is not None else ""
    sql = f"""
        WITH f AS NOT MATERIALIZED (SELECT probe_asn, probe_cc, probe_network_name, domain, outcome FROM verdicts WHERE {where}),
        top AS (SELECT probe_asn, max(probe_network_name) AS probe_network_name, {_COUNTS} FROM f GROUP BY probe_asn
                ORDER BY anomaly_count DESC, confirmed_count DESC, measurement_count DESC, probe_asn {top}),
        blocked AS (SELECT probe_asn, count(DISTINCT domain) AS blocked_domain_count
                    FROM f SEMI JOIN top USING (probe_asn) WHERE {_ANOMALOUS} GROUP BY probe_asn),
        {_place('top')}
        SELECT top.probe_asn, place.probe_cc, top.probe_network_name, top.* EXCLUDE (probe_asn, probe_network_name),
               coalesce(blocked.blocked_domain_count, 0) AS blocked_domain_count, place.country_count
        FROM top LEFT JOIN blocked USING (probe_asn) LEFT JOIN place USING (probe_asn)
        ORDER BY anomaly_count DESC, confirmed_count DESC, measurement_count DESC, probe_asn"""
    return _plain(query_rows(store.cursor(), sql, params))


def per_test(store: Store, filters: Filters | None = None, limit: int | None = 100) -> list[dict[str, Any]]:
    """Per nettest (``test_name``), most anomalous first: counts, the networks and countries where it
    showed anomalies, and the commonest mechanism. Apps and circumvention tools (telegram, tor,
    psiphon...) have no input site, so this is where they show."""
    where, params = (filters or Filters()).where()
    top = f"LIMIT {int(limit)}" if limit is not None else ""
    sql = f"""
        WITH f AS NOT MATERIALIZED (SELECT test_name, probe_asn, probe_cc, mechanism, outcome FROM verdicts
                   WHERE {where}),
        top AS (SELECT test_name, {_COUNTS} FROM f GROUP BY test_name
                ORDER BY anomaly_count DESC, confirmed_count DESC, measurement_count DESC, test_name {top}),
        seen AS (SELECT test_name, {_NETWORKS}, count(DISTINCT probe_cc) AS country_count
                 FROM f SEMI JOIN top USING (test_name) WHERE {_ANOMALOUS} GROUP BY test_name),
        mech AS (SELECT test_name, mechanism, count(*) AS n FROM f SEMI JOIN top USING (test_name)
                 WHERE {_ANOMALOUS} GROUP BY test_name, mechanism),
        best AS (SELECT test_name, first(mechanism ORDER BY n DESC, mechanism) AS top_mechanism FROM mech
                 GROUP BY test_name)
        SELECT top.*, coalesce(seen.network_count, 0) AS network_count,
               coalesce(seen.unknown_network, false) AS unknown_network,
               coalesce(seen.country_count, 0) AS country_count, best.top_mechanism
        FROM top LEFT JOIN seen USING (test_name) LEFT JOIN best USING (test_name)
        ORDER BY anomaly_count DESC, confirmed_count DESC, measurement_count DESC, test_name"""
    return _plain(query_rows(store.cursor(), sql, params))


# OONI's instant-messaging and circumvention tests: each measures whether one app or tool can be used, from one network
APP_TESTS = (*APPS, *TOOLS)


def apps(store: Store, filters: Filters | None = None, limit: int | None = 100) -> list[dict[str, Any]]:
    """Per messaging app or circumvention tool (its test), the way it went (``transport``: NULL for directly, or
    obfs4, snowflake, a bridge: Tor through a bridge is not Tor) and network: counts, and what the latest
    measurement said (``last_outcome``, ``last_mechanism``, ``last_measured``; ``last_ok``: the latest time it was
    reachable; ``probe_cc``, the country the latest measurement names). Where an app is blocked now first, then the
    most anomalous."""
    where, params = (filters or Filters()).where()
    top = f"LIMIT {int(limit)}" if limit is not None else ""
    sql = f"""
        SELECT test_name, transport, probe_asn, arg_max(probe_cc, measurement_start_time) AS probe_cc,
               max(probe_network_name) AS probe_network_name,
               {_COUNTS}, max(measurement_start_time) AS last_measured,
               arg_max(outcome, measurement_start_time) AS last_outcome,
               arg_max(mechanism, measurement_start_time) AS last_mechanism,
               max(measurement_start_time) FILTER (WHERE outcome = 'ok') AS last_ok
        FROM verdicts WHERE ({where}) AND test_name IN ({', '.join('?' * len(APP_TESTS))})
        GROUP BY test_name, transport, probe_asn
        ORDER BY last_outcome IN ('anomaly', 'confirmed') DESC, anomaly_count DESC, measurement_count DESC,
                 test_name, transport NULLS FIRST, probe_asn {top}"""
    return _plain(query_rows(store.cursor(), sql, [*params, *APP_TESTS]))


# APP_TESTS as SQL: the names are this module's constants, never input
_APP_TESTS_SQL = ", ".join(f"'{t}'" for t in APP_TESTS)


def per_mechanism(store: Store, filters: Filters | None = None) -> list[dict[str, Any]]:
    """Per mechanism among anomalies: how often, how many confirmed, where: the sites (``domain_count``) and
    the messaging apps and circumvention tools (``app_count``, their tests: an app's measurement names no
    site, so a mechanism seen only against apps would otherwise read "0 sites")."""
    return _aggregate(
        store,
        f"""mechanism, {_COUNTS}, count(DISTINCT domain) AS domain_count,
            count(DISTINCT test_name) FILTER (WHERE test_name IN ({_APP_TESTS_SQL})) AS app_count,
            {_NETWORKS}, count(DISTINCT probe_cc) AS country_count""",
        "mechanism", "measurement_count DESC, mechanism", filters, None,
        "outcome IN ('anomaly', 'confirmed')")


def per_country(store: Store, filters: Filters | None = None) -> list[dict[str, Any]]:
    """Per country: counts and networks."""
    return _aggregate(
        store, f"probe_cc, {_COUNTS}, {_NETWORKS}",
        "probe_cc", "anomaly_count DESC, measurement_count DESC, probe_cc", filters, None)


def domain_network(store: Store, filters: Filters | None = None, domains: int = 30,
                   networks: int = 20) -> list[dict[str, Any]]:
    """The heatmap's cells: the most anomalous domains × networks, with counts, and each network's country as
    `per_network` gives it (``probe_cc``, the one most of the network's measurements name, and ``country_count``)."""
    where, params = (filters or Filters()).where()
    sql = f"""
        WITH f AS NOT MATERIALIZED (SELECT * FROM verdicts WHERE {where} AND domain IS NOT NULL),
        d AS (SELECT domain FROM f GROUP BY domain
              ORDER BY count(*) FILTER (WHERE outcome IN ('anomaly', 'confirmed')) DESC, count(*) DESC, domain
              LIMIT {int(domains)}),
        n AS (SELECT probe_asn FROM f GROUP BY probe_asn
              ORDER BY count(*) FILTER (WHERE outcome IN ('anomaly', 'confirmed')) DESC, count(*) DESC, probe_asn
              LIMIT {int(networks)}),
        {_place('n')},
        cells AS (SELECT domain, probe_asn, {_COUNTS}
                  FROM f SEMI JOIN d USING (domain) SEMI JOIN n USING (probe_asn) GROUP BY domain, probe_asn)
        SELECT cells.domain, cells.probe_asn, place.probe_cc, cells.* EXCLUDE (domain, probe_asn), place.country_count
        FROM cells JOIN place USING (probe_asn) ORDER BY domain, probe_asn"""
    return _plain(query_rows(store.cursor(), sql, params))


def mechanism_country(store: Store, filters: Filters | None = None) -> list[dict[str, Any]]:
    """Anomalies per (country, mechanism)."""
    return _aggregate(
        store, f"probe_cc, mechanism, {_COUNTS}", "probe_cc, mechanism", "probe_cc, measurement_count DESC",
        filters, None, "outcome IN ('anomaly', 'confirmed')")


def signatures(store: Store, filters: Filters | None = None, limit: int | None = 100) -> list[dict[str, Any]]:
    """Equipment signatures seen (``x_signature``/``x_equipment``), with where and when.

    A signature's key names the forged packet's IP-ID (``ipid0``). A device whose IP-ID changes from packet
    to packet (a counter, or random: a resolver's own answers, most injectors) gives a key per measurement,
    each seen once; such keys, alike but for the IP-ID, are one row here, keyed ``ipid*``, with
    ``variants`` the number of keys folded into it. A key seen twice or more keeps its own row: a fixed
    IP-ID is part of the equipment's signature."""
    where, params = (filters or Filters()).where()
    top = f"LIMIT {int(limit)}" if limit is not None else ""
    sql = f"""
        WITH f AS (SELECT signature, equipment, mechanism, probe_cc, probe_asn, domain, day FROM verdicts
                   WHERE ({where}) AND (signature IS NOT NULL OR equipment IS NOT NULL)),
        k AS (SELECT *, count(*) OVER (PARTITION BY signature, equipment) AS seen,
                     regexp_replace(signature, '/ipid[0-9]+', '/ipid*') AS base FROM f),
        n AS (SELECT *, count(*) FILTER (WHERE seen = 1) OVER (PARTITION BY base, equipment) AS singles FROM k)
        SELECT coalesce(CASE WHEN seen = 1 AND singles > 1 AND base <> signature THEN base ELSE signature END, '')
                   AS signature,
               coalesce(equipment, '') AS equipment,
               count(*) AS measurement_count, string_agg(DISTINCT mechanism, ', ' ORDER BY mechanism) AS mechanisms,
               string_agg(DISTINCT probe_cc, ', ' ORDER BY probe_cc) AS countries,
               {_NETWORKS}, count(DISTINCT domain) AS domain_count,
               min(day) AS first_seen, max(day) AS last_seen, count(DISTINCT signature) AS variants
        FROM n GROUP BY ALL ORDER BY measurement_count DESC, signature {top}"""
    return _plain(query_rows(store.cursor(), sql, params))


def blockpages(store: Store, filters: Filters | None = None, limit: int | None = 100) -> list[dict[str, Any]]:
    """The blockpage and DNS fingerprints the verdicts matched (``fingerprints``), with where and when.

    The other half of the equipment seen: a packet signature needs the probe's capture, a fingerprint only the
    page or the answer, so it is what OONI's and Censored Planet's data show. One row per fingerprint id:
    ``measurement_count`` (measurements that matched it), ``confirmed_count``, ``mechanisms``, ``countries``,
    ``network_count``, ``domain_count``, ``first_seen``, ``last_seen``. The ids are the store's (a submission's
    may name a fingerprint this version does not ship): the report looks them up (`report.blockpages_in_words`)."""
    where, params = (filters or Filters()).where()
    top = f"LIMIT {int(limit)}" if limit is not None else ""
    sql = f"""
        WITH f AS (SELECT unnest(list_distinct(fingerprints)) AS fingerprint, outcome, mechanism, probe_cc,
                          probe_asn, domain, day
                   FROM verdicts WHERE ({where}) AND len(fingerprints) > 0)
        SELECT fingerprint, count(*) AS measurement_count,
               count(*) FILTER (WHERE outcome = 'confirmed') AS confirmed_count,
               string_agg(DISTINCT mechanism, ', ' ORDER BY mechanism) AS mechanisms,
               string_agg(DISTINCT probe_cc, ', ' ORDER BY probe_cc) AS countries,
               {_NETWORKS}, count(DISTINCT domain) AS domain_count,
               min(day) AS first_seen, max(day) AS last_seen
        FROM f WHERE fingerprint IS NOT NULL GROUP BY fingerprint
        ORDER BY measurement_count DESC, fingerprint {top}"""
    return _plain(query_rows(store.cursor(), sql, params))


_DETERMINED = "FILTER (WHERE rule <> 'undetermined')"


def blocking_rules(store: Store, filters: Filters | None = None, limit: int | None = 100, *,
                   blocked_only: bool = True) -> list[dict[str, Any]]:
    """What the censor's rule matches, per domain, network and layer (dns, dns_path, tls, http), read back by
    blocking_rules measurements, the latest first.

    Each row: ``domain``, ``probe_asn``, ``probe_cc``, ``probe_network_name``, ``layer``; the latest
    determined ``rule`` with its ``keyword`` and ``overblocks`` (a name nobody listed that it catches);
    ``measurement_count``, ``determined_count`` (those that read a rule), ``rules_seen`` (every rule
    they read: more than one means the rule changed or the readings disagree), ``first_day`` and
    ``last_day``. With ``blocked_only`` (the default) only layers whose latest rule blocks something.
    """
    where, params = (filters or Filters()).where()
    joined = f"""SELECT v.domain, v.probe_asn, v.probe_cc, v.probe_network_name, v.day, v.measurement_start_time,
                        r.layer, r.rule, r.keyword, r.overblocks
                 FROM rules r JOIN verdicts v USING (measurement_uid) WHERE {where}"""
    keys = "domain, probe_asn, probe_cc, layer"
    order = "last_day DESC, domain, probe_asn, probe_cc, list_position(['dns', 'dns_path', 'tls', 'http'], layer)"
    blocks = "{0} IS NOT NULL AND {0} <> 'not_blocked'" if blocked_only else "TRUE"
    if limit is not None:
        # the groups that make the cut first, on two aggregates; then the whole row for those only: 200,000
        # rules in as many groups take half the time (bench/analyze, section 4)
        source = f"""j SEMI JOIN (SELECT {keys}, arg_max(rule, measurement_start_time) {_DETERMINED} AS latest,
                                         max(day) AS last_day
                                  FROM j GROUP BY {keys} HAVING {blocks.format("latest")} ORDER BY {order}
                                  LIMIT {int(limit)}) g
                     ON j.domain IS NOT DISTINCT FROM g.domain AND j.probe_asn = g.probe_asn
                        AND j.probe_cc = g.probe_cc AND j.layer = g.layer"""
    else:
        source = "j"
    sql = f"""
        WITH j AS MATERIALIZED ({joined})
        SELECT domain, probe_asn, probe_cc, probe_network_name, layer, latest.rule AS rule,
               latest.keyword AS keyword, latest.overblocks AS overblocks, measurement_count, determined_count,
               rules_seen, first_day, last_day
        FROM (SELECT {keys}, max(probe_network_name) AS probe_network_name,  -- as per_network names it
                     arg_max({{'rule': rule, 'keyword': keyword, 'overblocks': overblocks}},
                             measurement_start_time) {_DETERMINED} AS latest,
                     count(*) AS measurement_count, count(*) {_DETERMINED} AS determined_count,
                     nullif(array_to_string(list_sort(list_distinct(list(rule) {_DETERMINED})), ', '), '')
                         AS rules_seen,
                     min(day) AS first_day, max(day) AS last_day
              FROM {source} GROUP BY {keys})
        WHERE {blocks.format("latest.rule")}
        ORDER BY {order}"""
    return _plain(query_rows(store.cursor(), sql, params))


def changes(store: Store, filters: Filters | None = None, limit: int | None = 100) -> list[dict[str, Any]]:
    """When a site became blocked, or unblocked, on a network: the latest first.

    Each (domain, network) series of measurements, in time order and without failures
    (they say nothing either way), is cut into runs of anomalous and of ok measurements.
    ``blocked``: a run of at least `CONFIRM_MIN` anomalies right after an ok measurement;
    ``unblocked``: a run of at least `CONFIRM_MIN` ok measurements right after a run of at
    least `CONFIRM_MIN` anomalies (one anomaly, or one ok, is not a change). Each row:
    ``change``, ``domain``, ``probe_asn``, ``probe_cc``, ``before`` (the last measurement
    of the previous run), ``since`` and ``latest`` (the first and last of this run),
    ``measurements`` (in this run), ``mechanism`` (of a blocked run's first anomaly) and
    ``ongoing`` (no later run: it is still so). Measurements of no known network (``AS0``) are in no series:
    they may come from anywhere (confidence.NO_NETWORK).

    Two sorts: the series of the (domain, network) pairs that can hold a change (two
    anomalies and an ok at least) by time, then the first measurement of each run. Over
    1,000,000 verdict rows whose outcomes flip at random (bench/analyze, section 4; real
    series flip far less) it takes ~0.4 s, which is why it is not among the explorer's
    `AGGREGATES` (held to 200 ms): the report runs it over the whole store, the explorer
    for one country, network or domain (~75 ms for a country of that benchmark).
    """
    where, params = (filters or Filters()).where()
    top = f"LIMIT {int(limit)}" if limit is not None else ""
    sql = f"""
        WITH f AS NOT MATERIALIZED (
            SELECT domain, probe_asn, probe_cc, measurement_start_time AS t, measurement_uid AS uid, mechanism,
                   outcome <> 'ok' AS bad
            FROM verdicts WHERE ({where}) AND domain IS NOT NULL AND outcome IN ('ok', 'anomaly', 'confirmed')
                AND probe_asn <> '{NO_NETWORK}'),
        pairs AS (SELECT domain, probe_asn FROM f GROUP BY domain, probe_asn
                  HAVING count(*) FILTER (WHERE bad) >= {CONFIRM_MIN} AND count(*) FILTER (WHERE NOT bad) >= 1),
        marked AS (
            SELECT domain, probe_asn, probe_cc, t, mechanism, bad, row_number() OVER w AS rn,
                   lag(bad) OVER w AS before_bad, lag(t) OVER w AS before,
                   count(*) OVER (PARTITION BY domain, probe_asn) AS total,
                   max(t) OVER (PARTITION BY domain, probe_asn) AS last_t
            FROM f SEMI JOIN pairs USING (domain, probe_asn)
            WINDOW w AS (PARTITION BY domain, probe_asn ORDER BY t, uid)),
        starts AS (SELECT * FROM marked WHERE before_bad IS DISTINCT FROM bad),
        runs AS (
            SELECT *, coalesce(lead(rn) OVER p, total + 1) - rn AS measurements, rn - lag(rn) OVER p AS before_n,
                   coalesce(lead(before) OVER p, last_t) AS latest, lead(rn) OVER p IS NULL AS ongoing
            FROM starts WINDOW p AS (PARTITION BY domain, probe_asn ORDER BY rn))
        SELECT CASE WHEN bad THEN 'blocked' ELSE 'unblocked' END AS change, domain, probe_asn, probe_cc, before,
               t AS since, latest, measurements, CASE WHEN bad THEN mechanism END AS mechanism, ongoing
        FROM runs
        WHERE before_bad IS NOT NULL AND measurements >= {CONFIRM_MIN} AND (bad OR before_n >= {CONFIRM_MIN})
        ORDER BY since DESC, domain, probe_asn {top}"""
    return _plain(query_rows(store.cursor(), sql, params))


def categorised(store: Store) -> bool:
    """Whether the store holds a test list that files a site under a category."""
    return bool(query_rows(store.cursor(), "SELECT 1 AS one FROM categories LIMIT 1"))


def per_category(store: Store, filters: Filters | None = None) -> list[dict[str, Any]]:
    """Per Citizen Lab category of the sites measured (``category_code``; None, last, for the sites no list of
    the store names), most blocked sites first: the sites measured and those with anomalies, and the
    measurement counts. Empty when the store holds no test list (`analysis.categories`)."""
    if not categorised(store):
        return []
    where, params = (filters or Filters()).where()
    sql = f"""
        WITH f AS (SELECT domain, outcome, {category_sql()} AS category_code FROM verdicts
                   WHERE ({where}) AND domain IS NOT NULL)
        SELECT category_code, count(DISTINCT domain) AS domain_count,
               count(DISTINCT domain) FILTER (WHERE {_ANOMALOUS}) AS blocked_domain_count, {_COUNTS}
        FROM f GROUP BY category_code
        ORDER BY category_code IS NULL, blocked_domain_count DESC, anomaly_count DESC, category_code"""
    return _plain(query_rows(store.cursor(), sql, params))


def category_countries(store: Store, filters: Filters | None = None) -> list[dict[str, Any]]:
    """The Citizen Lab categories the measurements selected are filed under (a site's page: most often one), each
    with the countries whose measurements it files (``countries``, sorted) and their count, most measurements
    first. A country's own list may file a site otherwise than the global list does (`analysis.categories`).
    Empty when the store holds no test list; the measurements no list files are left out."""
    if not categorised(store):
        return []
    where, params = (filters or Filters()).where()
    sql = f"""
        WITH f AS (SELECT probe_cc, {category_sql()} AS category_code FROM verdicts
                   WHERE ({where}) AND domain IS NOT NULL)
        SELECT category_code, list(DISTINCT probe_cc ORDER BY probe_cc) AS countries,
               count(*) AS measurement_count
        FROM f WHERE category_code IS NOT NULL GROUP BY category_code
        ORDER BY measurement_count DESC, category_code"""
    return _plain(query_rows(store.cursor(), sql, params))


# --------------------------------------------------------------------------- OONI's aggregation

AXES: dict[str, str] = {  # an axis of OONI's /api/v1/aggregation -> its value, as SQL over verdicts
    "probe_cc": "probe_cc", "probe_asn": "probe_asn", "test_name": "test_name", "domain": "domain", "input": "input",
    "category_code": category_sql(), "blocking_type": "blocking",
    "mechanism": "mechanism",  # ours: the technique, where OONI's blocking_type says only the layer
}
TIME_AXIS = "measurement_start_day"
TIME_GRAINS = ("hour", "day", "week", "month", "year")
HOUR_SPAN = dt.timedelta(days=7)  # the longest span counted by the hour, as OONI allows


class SliceError(ValueError):
    """A selection or axis that OONI's aggregation does not take, in words."""


@dataclass(frozen=True)
class Slice:
    """OONI's ``/api/v1/aggregation`` selection: each field any of its values (empty: any), ``since`` inclusive and
    ``until`` exclusive, by ``measurement_start_time`` (UTC)."""

    probe_cc: tuple[str, ...] = ()
    probe_asn: tuple[str, ...] = ()
    test_name: tuple[str, ...] = ()
    domain: tuple[str, ...] = ()
    input: str | None = None
    category_code: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        domains = [form for name in self.domain for form in host_forms(name)]
        for column, values in (("probe_cc", self.probe_cc), ("probe_asn", self.probe_asn),
                               ("test_name", self.test_name), ("domain", domains)):
            if values:
                clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
                params.extend(values)
        for expr, value in (("input = ?", self.input), (f"{category_sql()} = ?", self.category_code),
                            ("measurement_start_time >= ?", self.since), ("measurement_start_time < ?", self.until)):
            if value is not None:
                clauses.append(expr)
                params.append(value)
        return (" AND ".join(clauses) or "TRUE"), params


def time_grain(selection: Slice, asked: str) -> str:
    """The time grain of a count by day: ``auto`` is by the hour over at most 7 days, else by the day, as OONI's;
    by the hour only over at most 7 days (SliceError), which OONI refuses too."""
    short = (selection.since is not None and selection.until is not None
             and dt.timedelta(0) < selection.until - selection.since <= HOUR_SPAN)
    if asked == "auto":
        return "hour" if short else "day"
    if asked not in TIME_GRAINS:
        raise SliceError(f"time_grain must be one of {', '.join(TIME_GRAINS)} or auto")
    if asked == "hour" and not short:
        raise SliceError("time_grain hour needs since and until at most 7 days apart")
    return asked


def counts_by(store: Store, selection: Slice, axes: Sequence[str] = (), grain: str = "day",
              most: int = 100_000) -> list[dict[str, Any]]:
    """OONI's aggregation: the measurements of ``selection`` counted by up to two ``axes`` (keys of AXES, or
    ``measurement_start_day`` by ``grain``), in axis order. The counts are OONI's, which split the measurements
    (unlike the explorer's, whose ``anomaly_count`` holds the confirmed ones): ``anomaly_count`` (not confirmed),
    ``confirmed_count``, ``failure_count``, ``ok_count``, ``measurement_count``. SliceError for an unknown axis,
    the same axis twice, or more than ``most`` rows."""
    if len(axes) > 2 or len(set(axes)) < len(axes):
        raise SliceError("axis_x and axis_y must be two different axes")
    if grain not in TIME_GRAINS:  # it is written into the SQL
        raise SliceError(f"time_grain must be one of {', '.join(TIME_GRAINS)}")
    columns = []
    for axis in axes:
        if axis == TIME_AXIS:
            shape = "%Y-%m-%dT%H:00:00Z" if grain == "hour" else "%Y-%m-%d"
            columns.append(f"strftime(date_trunc('{grain}', measurement_start_time), '{shape}') AS {axis}")
        elif axis in AXES:
            columns.append(f"{AXES[axis]} AS {axis}")
        else:
            raise SliceError(f"no axis {axis[:40]!r}; the axes are {', '.join([TIME_AXIS, *AXES])}")
    where, params = selection.where()
    counts = """count(*) FILTER (WHERE outcome = 'anomaly') AS anomaly_count,
        count(*) FILTER (WHERE outcome = 'confirmed') AS confirmed_count,
        count(*) FILTER (WHERE outcome = 'failure') AS failure_count,
        count(*) FILTER (WHERE outcome = 'ok') AS ok_count, count(*) AS measurement_count"""
    sql = f"SELECT {', '.join([*columns, counts])} FROM verdicts WHERE {where}"
    if axes:
        order = ", ".join(f"{axis} NULLS LAST" for axis in axes)
        sql += f" GROUP BY ALL ORDER BY {order} LIMIT {int(most) + 1}"
    rows = _plain(query_rows(store.cursor(), sql, params))
    if len(rows) > most:
        raise SliceError(f"more than {most:,} rows: narrow the selection (fewer days, a coarser time_grain, a "
                         "country or a test)")
    return rows


def totals(store: Store, filters: Filters | None = None) -> dict[str, Any]:
    """Whole-store counts, and the span of days. ``network_count`` counts the networks named, not AS0
    (`NO_NETWORK`: measurements whose network nobody said); ``unknown_network_count`` is how many measurements
    are on AS0. ``fingerprint_confirmed_count``: the confirmed whose own page a blockpage fingerprint matched (the
    others are confirmed by a repeat: the same anomaly again from the same network)."""
    where, params = (filters or Filters()).where()
    rows = _plain(query_rows(store.cursor(), f"""
        SELECT {_COUNTS},
               count(*) FILTER (WHERE outcome = 'confirmed' AND len(fingerprints) > 0) AS fingerprint_confirmed_count,
               min(day) AS first_day, max(day) AS last_day,
               count(DISTINCT probe_cc) AS country_count, {_NETWORKS},
               count(*) FILTER (WHERE probe_asn = '{NO_NETWORK}') AS unknown_network_count,
               count(DISTINCT domain) AS domain_count, count(DISTINCT test_name) AS test_count
        FROM verdicts WHERE {where}""", params))
    return rows[0] if rows else {}


SOURCE_VERSIONS = 5  # software versions named per source


def sources(store: Store, filters: Filters | None = None, limit: int | None = 20) -> list[dict[str, Any]]:
    """Where the measurements come from, by the software that made them (``software_name``: ooniprobe-cli,
    tamperscope, censoredplanet-hyperquack...), most measurements first: how many, the span of days, and the
    versions (the newest `SOURCE_VERSIONS`, ordered as text). Read from the measurements table, whose columns the
    filters name, unless a filter is a verdict's alone (technique, fingerprint): a join of the two costs ~110 ms
    over 1,000,000 rows, the table alone ~4 ms (bench/analyze, section 4)."""
    f = filters or Filters()
    where, params = f.where()
    if f.mechanism is None and f.fingerprint is None:
        rows = f"SELECT software_name, software_version, day FROM measurements WHERE {where}"
    else:
        rows = (f"SELECT software_name, software_version, day FROM measurements SEMI JOIN "
                f"(SELECT measurement_uid FROM verdicts WHERE {where}) v USING (measurement_uid)")
    top = f"LIMIT {int(limit)}" if limit is not None else ""
    sql = f"""
        WITH f AS NOT MATERIALIZED ({rows})
        SELECT coalesce(software_name, '') AS software, count(*) AS measurement_count, min(day) AS first_day,
               max(day) AS last_day, count(DISTINCT software_version) AS version_count,
               list_sort(list(DISTINCT software_version), 'DESC')[1:{SOURCE_VERSIONS}] AS versions
        FROM f GROUP BY ALL ORDER BY measurement_count DESC, software {top}"""
    return _plain(query_rows(store.cursor(), sql, params))


AGGREGATES: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "timeline": timeline, "per_domain": per_domain, "per_network": per_network, "per_test": per_test,
    "per_mechanism": per_mechanism, "per_country": per_country, "domain_network": domain_network,
    "mechanism_country": mechanism_country, "signatures": signatures, "blockpages": blockpages,
    "blocking_rules": blocking_rules,
    "apps": apps, "per_category": per_category,
}


__all__ = [
    "AGGREGATES", "AXES", "TIME_AXIS", "TIME_GRAINS", "Filters", "Slice", "SliceError", "blocking_rules", "blockpages",
    "categorised", "category_countries", "changes", "counts_by", "domain_network", "mechanism_country",
    "per_category", "per_country", "per_domain", "per_mechanism", "per_network", "per_test", "signatures",
    "sources", "time_grain", "timeline", "totals",
]
