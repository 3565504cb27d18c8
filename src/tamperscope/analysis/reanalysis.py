"""Re-deriving stored verdicts from the raw measurements the store keeps.

A verdict rule changed (`verdicts.ANALYSIS_VERSION` went up with an upgrade), or one's own
fingerprints were added (``24+local.<digest>``): the verdicts already stored say what the
older analysis said. `reanalyse` reads the kept raw bytes of a chunk of measurements,
derives their verdicts, observations and rules again, and replaces the old rows in one
transaction, with the confidence labels of their groups recounted. The raw bytes and the
measurement rows are not touched: the uid is the hash of the content, so the re-derived
rows must come back under the same uid, and a measurement whose bytes cannot be read
keeps the rows it had. One exception: a measurement stored on AS0 (a line of Censored
Planet's read without an ASN table) takes the network this run's table names, in its
measurement row too (`Totals.networks_named`); any other keeps the network it was stored with.

Two callers: ``tamperscope analyze --reanalyse`` (`reanalyse_all`: this store, pages of
`CLI_CHUNK` derived in ``--workers`` processes) and the server's ``POST
/api/v1/admin/reanalyse`` (a page of `CHUNK` at a time on its writer thread, so
submissions keep flowing in between, its raw bytes read through its reader's frame cache).
Both take their selection a page at a time (`page_after`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from tamperscope.analysis.confidence import NO_NETWORK, relabel, touch
from tamperscope.analysis.pipeline import analyse_batch
from tamperscope.analysis.reader import Line
from tamperscope.analysis.store import BatchResult, Store, identity
from tamperscope.analysis.verdicts import ANALYSIS_VERSION, analysis_version, default_matcher
from tamperscope.model import interrupts

CHUNK = 512  # measurements per transaction, on a server (submissions wait for it)
CLI_CHUNK = 2048  # in `analyze`, where nothing else waits: fewer recounts of the groups

RawMany = Callable[[list[str]], dict[str, bytes]]

_BEFORE = """SELECT measurement_uid, blocking, accessible, mechanism, status, fingerprints FROM verdicts
             WHERE measurement_uid IN (SELECT unnest(?::VARCHAR[]))"""


@dataclass
class Totals:
    """What a re-analysis did: measurements re-derived, those whose verdict changed (blocking, accessible,
    mechanism or status), those whose verdict stayed but whose fingerprints changed (a blockpage a new
    fingerprint names, and confirms), and those left as they were because their raw bytes could not be read."""

    reanalysed: int = 0
    changed: int = 0
    missing: int = 0
    fingerprinted: int = 0  # the same verdict, other fingerprints
    networks_named: int = 0  # stored on AS0 (no network), now on the one this run's ASN table names

    def add(self, other: Totals) -> None:
        self.reanalysed += other.reanalysed
        self.changed += other.changed
        self.fingerprinted += other.fingerprinted
        self.missing += other.missing
        self.networks_named += other.networks_named

    def as_dict(self) -> dict[str, int]:
        return {"reanalysed": self.reanalysed, "changed": self.changed, "missing": self.missing,
                "networks_named": self.networks_named, "fingerprinted": self.fingerprinted}


def _condition(where: str, params: Sequence[Any], stale_only: bool) -> tuple[str, list[Any]]:
    values = list(params)
    if stale_only:
        where = f"({where}) AND analysis_version IS DISTINCT FROM ?"
        values.append(analysis_version())
    return where, values


def count(con: duckdb.DuckDBPyConnection, *, where: str = "TRUE", params: Sequence[Any] = (),
          stale_only: bool = False) -> int:
    """How many uids `page_after` will give, page after page."""
    condition, values = _condition(where, params, stale_only)
    row = con.execute(f"SELECT count(*) FROM verdicts WHERE {condition}", values).fetchone()
    return int(row[0]) if row else 0


def page_after(con: duckdb.DuckDBPyConnection, after: str, *, where: str = "TRUE", params: Sequence[Any] = (),
               stale_only: bool = False, size: int = CHUNK) -> list[str]:
    """The next ``size`` uids, in uid order, after ``after`` ("" for the first), of the verdicts ``where`` selects
    (an SQL condition on the verdicts table), only those another analysis derived with ``stale_only``. A re-analysis
    takes its selection a page at a time (keyset), so its memory is a page's however large the store, and a
    page re-derived meanwhile (no longer stale) cannot shift the next one."""
    condition, values = _condition(where, params, stale_only)
    return [r[0] for r in con.execute(
        f"SELECT measurement_uid FROM verdicts WHERE ({condition}) AND measurement_uid > ?"
        " ORDER BY measurement_uid LIMIT ?", [*values, after, size]).fetchall()]


def pages(con: duckdb.DuckDBPyConnection, *, where: str = "TRUE", params: Sequence[Any] = (),
          stale_only: bool = False, size: int = CHUNK) -> Iterator[list[str]]:
    """`page_after` from the first page to the last, each asked for when the one before was taken."""
    last = ""
    while page := page_after(con, last, where=where, params=params, stale_only=stale_only, size=size):
        yield page
        last = page[-1]


def _other_releases(con: duckdb.DuckDBPyConnection) -> list[tuple[str, int, int | None]]:
    """(analysis version, verdicts, its release as a number or None) of every version but this release's, in the
    order of the releases (versions that are no number first)."""
    rows = con.execute(
        """SELECT analysis_version, count(*) FROM verdicts
           WHERE coalesce(split_part(analysis_version, '+', 1), '') <> ?
           GROUP BY ALL""", [ANALYSIS_VERSION]).fetchall()
    found = [(str(r[0]), int(r[1]), _release(r[0])) for r in rows]
    return sorted(found, key=lambda f: (f[2] is not None, f[2] or 0, f[0]))


def _release(version: Any) -> int | None:
    base = str(version).split("+", 1)[0]
    return int(base) if base.isascii() and base.isdigit() and len(base) < 10 else None


def older(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Verdicts derived by an older release's rules, counted by their analysis version, oldest first (fingerprints
    of one's own aside: ``24+local.<digest>`` is this release's rules). A version that is no number counts as
    older: no release wrote it."""
    current = _release(ANALYSIS_VERSION) or 0
    return {v: n for v, n, release in _other_releases(con) if release is None or release < current}


def newer(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Verdicts a newer release derived (the store was analysed by a later tamperscope than this one), by
    version: ``--reanalyse stale`` would derive them by this release's older rules."""
    current = _release(ANALYSIS_VERSION) or 0
    return {v: n for v, n, release in _other_releases(con) if release is not None and release > current}


def older_words(counts: Mapping[str, int], which: str = "an older") -> str:
    """`older` (or `newer`, with ``which="a newer"``) in words: ``8 verdicts from an older analysis (version 15: 7,
    version 16: 1)``."""
    total = sum(counts.values())
    versions = ", ".join(f"version {version}: {count:,}" for version, count in counts.items())
    return f"{total:,} verdict{'' if total == 1 else 's'} from {which} analysis ({versions})"


def derive(raw: Mapping[str, bytes]) -> BatchResult:
    """The verdicts, observations and rules of raw measurements (uid → bytes), as an analysis derives them: the
    part of a re-analysis that may run in another process."""
    return analyse_batch([Line("reanalyse", i + 1, data) for i, data in enumerate(raw.values())], default_matcher())


def _lost(store: Store, result: BatchResult, raw: Mapping[str, bytes], got: set[str]) -> None:
    """Say why measurements read back did not come back as themselves (`derive` numbers its lines from 1 in
    ``raw``'s order): bytes that are no JSON, or give another uid, are a damaged segment (`Store.damaged`);
    bytes the analysis now refuses are its reason."""
    refused = {r.line: r for r in result.rejections}
    damaged = []
    for number, uid in enumerate(raw, 1):
        if uid in got:
            continue
        why = refused.get(number)
        if why is None or why.reason == "corrupt_json":
            damaged.append(uid)
        else:
            store.unreadable.setdefault("refused", f"the analysis now refuses what was stored ({why.reason}: "
                                                   f"{why.detail})")
    store.damaged(damaged)


def replace(store: Store, result: BatchResult | None, raw: Mapping[str, bytes], uids: Sequence[str]) -> Totals:
    """Put ``result`` (`derive` of ``raw``, the readable part of ``uids``) in the place of the rows it re-derives,
    in one transaction, and recount the confidence of their groups."""
    con = store.con
    store.flush()
    if result is None or not raw:
        return Totals(missing=len(uids))
    verdicts, observations, rules = result.verdicts, result.observations, result.rules
    new_uids = verdicts.column("measurement_uid").to_pylist()
    # The content hash gives the same uid back, but for its country where that came from outside the line: a
    # Satellite v1 line stored as ZZ, read now with an ASN table that places its resolver. Its rows take the
    # stored uid (the same start and hash: `Store._known`).
    stored = {identity(u): u for u in raw}
    names = {u: s for u in new_uids if u not in raw and (s := stored.get(identity(u))) is not None}
    if names:
        verdicts, observations, rules = (_named(t, names) for t in (verdicts, observations, rules))
        new_uids = [names.get(u, u) for u in new_uids]
    wanted = [u for u in new_uids if u in raw]
    before = {r[0]: r[1:] for r in con.execute(_BEFORE, [wanted]).fetchall()}
    verdicts = verdicts.filter(pa.array([u in raw for u in new_uids], type=pa.bool_()))  # ([] is no bool array)
    con.execute("BEGIN TRANSACTION")
    try:
        touch(con, wanted)  # their groups as they were
        for table in ("observations", "rules", "verdicts"):
            con.execute(f"DELETE FROM {table} WHERE measurement_uid IN (SELECT unnest(?::VARCHAR[]))", [wanted])
        con.register("_rv", verdicts)
        con.execute("INSERT INTO verdicts BY NAME SELECT * FROM _rv")
        con.unregister("_rv")
        # A line that names no network (Censored Planet's) got one from the ASN table of its first analysis,
        # which this run may not have: the network stays the one the measurement was stored with, unless that
        # was none (AS0: read without a table) and this run's table names one; with it, the country the table
        # gives where the measurement had none (ZZ).
        named = con.execute("""UPDATE measurements SET probe_asn = v.probe_asn,
                                      probe_network_name = v.probe_network_name,
                                      probe_cc = CASE WHEN measurements.probe_cc = 'ZZ' THEN v.probe_cc
                                                      ELSE measurements.probe_cc END
                               FROM verdicts v WHERE measurements.measurement_uid = v.measurement_uid
                               AND measurements.measurement_uid IN (SELECT unnest(?::VARCHAR[]))
                               AND measurements.probe_asn = ? AND v.probe_asn <> ?""",
                            [wanted, NO_NETWORK, NO_NETWORK]).fetchone()
        con.execute("""UPDATE verdicts SET probe_asn = m.probe_asn, probe_network_name = m.probe_network_name,
                                           probe_cc = m.probe_cc
                       FROM measurements m WHERE verdicts.measurement_uid = m.measurement_uid
                       AND verdicts.measurement_uid IN (SELECT unnest(?::VARCHAR[]))
                       AND (verdicts.probe_asn IS DISTINCT FROM m.probe_asn
                            OR verdicts.probe_network_name IS DISTINCT FROM m.probe_network_name
                            OR verdicts.probe_cc IS DISTINCT FROM m.probe_cc)""", [wanted])
        if observations.num_rows:
            con.register("_ro", observations)
            con.execute("""INSERT INTO observations BY NAME SELECT * FROM _ro
                           WHERE measurement_uid IN (SELECT unnest(?::VARCHAR[]))""", [wanted])
            con.unregister("_ro")
        if rules is not None:
            _rr = rules  # read by DuckDB
            con.execute("""INSERT INTO rules BY NAME SELECT * FROM _rr
                           WHERE measurement_uid IN (SELECT unnest(?::VARCHAR[]))""", [wanted])
        if named and named[0]:  # and the groups they joined (a network is part of a group)
            touch(con, wanted, also=True)
        relabel(con)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    if len(wanted) < len(raw):
        _lost(store, result, raw, set(wanted))
    after = {r[0]: r[1:] for r in con.execute(_BEFORE, [wanted]).fetchall()}
    changed = sum(1 for u in wanted if (before.get(u) or ())[:4] != (after.get(u) or ())[:4])
    fingerprinted = sum(1 for u in wanted if before.get(u) != after.get(u)) - changed
    return Totals(reanalysed=len(wanted), changed=changed, missing=len(uids) - len(wanted),
                  fingerprinted=fingerprinted,
                  networks_named=int(named[0]) if named else 0)


def _named(table: pa.Table | None, names: Mapping[str, str]) -> pa.Table | None:
    """``table`` with each ``measurement_uid`` in ``names`` replaced by the uid it maps to."""
    if table is None or not table.num_rows:
        return table
    i = table.schema.get_field_index("measurement_uid")
    uids = [names.get(u, u) for u in table.column(i).to_pylist()]
    return table.set_column(i, table.schema.field(i), pa.array(uids, pa.string()))


def reanalyse(store: Store, raw_many: RawMany, uids: Sequence[str]) -> Totals:
    """Re-derive the verdicts, observations and rules of ``uids`` (one chunk) from their raw bytes, here."""
    store.flush()
    raw = raw_many(list(uids))
    return replace(store, derive(raw) if raw else None, raw, uids)


def reanalyse_all(store: Store, pages: Iterable[list[str]], *, workers: int = 1,
                  progress: Callable[[int], None] | None = None) -> Totals:
    """Every page of uids re-derived from the store's raw bytes (`Store.raw_many`), in ``workers`` processes
    beside this one when more than one (each derives a page while this one writes the one before), the rows
    replaced a page per transaction, in page order. ``progress`` is told how many are done."""
    totals = Totals()
    done = 0

    def write(uids: list[str], raw: Mapping[str, bytes], result: BatchResult | None) -> None:
        nonlocal done
        totals.add(replace(store, result, raw, uids))
        done += len(uids)
        if progress is not None:
            progress(done)

    if workers <= 1:
        for uids in pages:
            raw = store.raw_many(uids)
            write(uids, raw, derive(raw) if raw else None)
        return totals
    import multiprocessing
    from collections import deque
    from concurrent.futures import Future, ProcessPoolExecutor

    # "spawn": this process holds a DuckDB connection and its threads; forking that is unsafe. The fingerprints
    # of one's own reach the workers in the environment (`verdicts.use_fingerprints_given`).
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=interrupts.ignored_here) as pool:
        try:
            pending: deque[tuple[list[str], Mapping[str, bytes], Future[BatchResult] | None]] = deque()
            for uids in pages:
                raw = store.raw_many(uids)
                pending.append((uids, raw, pool.submit(derive, raw) if raw else None))
                while len(pending) >= 2 * workers:
                    first, first_raw, future = pending.popleft()
                    write(first, first_raw, future.result() if future is not None else None)
            while pending:
                first, first_raw, future = pending.popleft()
                write(first, first_raw, future.result() if future is not None else None)
        except BaseException:  # Ctrl-C (the workers leave it to us): what is queued is not begun
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return totals


__all__ = ["CHUNK", "CLI_CHUNK", "RawMany", "Totals", "count", "derive", "newer", "older", "older_words", "page_after",
           "pages", "reanalyse", "reanalyse_all", "replace"]
