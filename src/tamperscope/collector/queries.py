"""Read-side queries over the analysis store, for the API and the explorer.

The analysis store (`tamperscope.analysis.store`) owns the tables and the
aggregates; this module adds what a web server needs on top, without touching
the store's schema:

* `Reader`: one DuckDB cursor per thread (DuckDB connections are not shared
  between threads), all closed together, plus raw measurement bytes read from
  the store's zstd frames through a small LRU of decompressed frames;
* `MeasurementQuery` and `list_measurements()`: OONI's ``/api/v1/measurements``
  (same parameters, same row shape, plus our verdict columns);
* `hops()`: the located hops (``test_keys.x_hop``) of recent anomalies, read from
  the raw measurements since no table carries them.

A `Reader` has a ``cursor()`` method, which is all the store's aggregate
functions use, so ``aggregates.timeline(reader, filters)`` works with it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, cast

import duckdb
import orjson

from tamperscope.analysis import hops as hop_scan
from tamperscope.analysis.aggregates import Filters, Slice
from tamperscope.analysis.categories import category_sql
from tamperscope.analysis.pipeline import gives_uid
from tamperscope.analysis.schema import blocking_json
from tamperscope.analysis.store import RawUnreadable, Store, damaged, raw_each, raw_pointers, read_frame, stored_as
from tamperscope.analysis.unrecognised import PageMemo
from tamperscope.model.categories import normal_code
from tamperscope.model.inputs import host_forms

MAX_LIMIT = 1000          # rows per page of /api/v1/measurements
QUERY_SECONDS = 10.0      # a request's queries are interrupted past this (`Reader.bounded`); 1M rows take < 1 s
FRAME_CACHE_BYTES = 64 * 1024 * 1024


class QueryError(ValueError):
    """A parameter that cannot be used as given (the API answers 400 with this text)."""


log = logging.getLogger("tamperscope.collector")


class QueryTimeout(Exception):
    """A request's queries ran past their time (`Reader.bounded`); the server answers 503."""


class _Deadline:
    """Interrupts one cursor's running statement after ``seconds``, unless disarmed first."""

    def __init__(self, cursor: duckdb.DuckDBPyConnection, seconds: float) -> None:
        self.cursor = cursor
        self.fired = False
        self._armed = True
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:  # never after `disarm`: the cursor may be running the next request's query then
            if self._armed:
                self.fired = True
                self.cursor.interrupt()

    def disarm(self) -> None:
        with self._lock:
            self._armed = False
        self._timer.cancel()


class Reader:
    """Thread-local read cursors on a store, and its raw measurements."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.raw_root: Path = store.raw_root
        self._base = store.con.cursor()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._frames: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._frame_bytes = 0
        self._frame_lock = threading.Lock()
        # uid -> its located hop (or None): raw measurements never change under their uid, so a country
        # page parses each anomaly's JSON once per process, not on every view (`hops`)
        self._hops: OrderedDict[str, dict[str, Any] | None] = OrderedDict()
        self._hops_lock = threading.Lock()
        # uid (and its verdict's fields) -> the page no fingerprint knows: /new-blockpages reads only the new ones
        self.pages = PageMemo()
        self._unreadable: dict[str, str] = {}  # segment -> why (each said once in the log)
        self.closed = False

    def hops_of(self, uids: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        """The located hop of each measurement (None: it has none), parsing only what is not known yet."""
        with self._hops_lock:
            known = {uid: self._hops[uid] for uid in uids if uid in self._hops}
        # a few raw measurements at a time (`store.raw_each`): one can be 16 MiB, and only its hop is kept
        fresh = {uid: hop_scan.hop_in(data) for uid, data in raw_each(self, [u for u in uids if u not in known])}
        with self._hops_lock:
            for uid, hop in fresh.items():
                self._hops[uid] = hop
                self._hops.move_to_end(uid)
            while len(self._hops) > HOP_MEMO:
                self._hops.popitem(last=False)
        return {**known, **fresh}

    def cursor(self) -> duckdb.DuckDBPyConnection:
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            with self._lock:
                if self.closed:
                    raise RuntimeError("the reader is closed")
                cur = self._base.cursor()
                self._cursors.append(cur)
            self._local.cursor = cur
        return cast(duckdb.DuckDBPyConnection, cur)

    @contextmanager
    def bounded(self, seconds: float | None = None, *, snapshot: bool = False) -> Iterator[None]:
        """Run a request's queries on this thread's cursor, interrupted past ``seconds`` (`QUERY_SECONDS`):
        DuckDB has no statement timeout, so a timer interrupts the statement then running. With ``snapshot``,
        in one read transaction: every query sees the store as it was at the first, so a page's or a report's
        totals and tables agree while submissions are written (each query would otherwise see its own moment)."""
        cursor = self.cursor()
        if snapshot:  # before the timer is armed: a BEGIN that fails leaves no timer to interrupt a later request
            try:
                cursor.execute("BEGIN TRANSACTION")
            except duckdb.TransactionException:  # one left open on this thread's cursor: never read from it
                cursor.execute("ROLLBACK")
                cursor.execute("BEGIN TRANSACTION")
        deadline = _Deadline(cursor, QUERY_SECONDS if seconds is None else seconds)
        try:
            yield
        except duckdb.InterruptException:
            if not deadline.fired:
                raise
            raise QueryTimeout(f"the query ran over {deadline_text(seconds)}; narrow it "
                               "(probe_cc, probe_asn, domain, since, until)") from None
        finally:
            deadline.disarm()
            if snapshot:
                try:
                    cursor.execute("ROLLBACK")  # it wrote nothing; an interrupted one is over already
                except duckdb.Error:
                    pass

    def private_cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor of one's own, for a result read over time (a streamed export); close it after."""
        with self._lock:
            if self.closed:
                raise RuntimeError("the reader is closed")
            cur = self._base.cursor()
            self._cursors.append(cur)
            return cur

    def release(self, cur: duckdb.DuckDBPyConnection) -> None:
        with self._lock:
            if cur in self._cursors:
                self._cursors.remove(cur)
        try:
            cur.close()
        except duckdb.Error:
            pass

    def close(self) -> None:
        with self._lock:
            self.closed = True
            for cur in self._cursors:
                try:
                    cur.close()
                except duckdb.Error:
                    pass
            self._cursors.clear()
            self._base.close()

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        result = self.cursor().execute(sql, list(params))
        names = [d[0] for d in result.description or []]
        return [dict(zip(names, row, strict=True)) for row in result.fetchall()]

    # ---- raw bytes

    def stored_as(self, uid: str) -> str | None:
        """The uid the store holds the measurement ``uid`` names under, where that is another (`store.stored_as`)."""
        return stored_as(self.cursor(), uid)

    def raw(self, uid: str) -> bytes | None:
        """The measurement exactly as stored (None if unknown, or if its bytes no longer give its uid: `unreadable`
        says why). One measurement is shown as evidence, so its bytes are checked against the content hash its
        uid ends with (`pipeline.gives_uid`); a page of many (`raw_each`) is not."""
        found = self.raw_many([uid]).get(uid)
        return found if found is None or gives_uid(found, uid) else None

    def raw_many(self, uids: Sequence[str]) -> dict[str, bytes]:
        return dict(self.raw_each(uids))

    def raw_each(self, uids: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        """(uid, raw bytes) of each of ``uids`` that can be read, in the order they are stored, one at a time
        (`store.raw_each`): where they are is asked once for all of them (asked 16 at a time, the thousand pages
        /new-blockpages reads took 1.7 s over a million measurements, each ask a scan), the bytes read one
        measurement at a time, frames through the reader's cache."""
        if not uids:
            return
        pointers = raw_pointers(self.cursor(), uids)
        in_file_order = sorted((r for r in pointers if r[1] is not None), key=lambda r: (r[1], r[2], r[5]))
        for uid, segment, offset, length, size, line_offset, line_length in in_file_order:
            try:
                frame = self._frame(segment, offset, length, size)
            except RawUnreadable:  # a page of many measurements still shows what can be read
                continue
            yield uid, bytes(frame[line_offset:line_offset + line_length])

    def unreadable(self, uid: str) -> str | None:
        """Why a measurement the store holds has no raw bytes to show (None: it reads, or it is unknown)."""
        row = self.cursor().execute(
            """SELECT raw_segment, raw_frame_offset, raw_frame_length, raw_frame_size, raw_line_offset,
               raw_line_length FROM measurements WHERE measurement_uid = ?""", [uid]).fetchone()
        if row is None or row[0] is None:
            return None
        try:
            data = self.raw_line(*row)
        except RawUnreadable as exc:
            return str(exc)
        if not gives_uid(data, uid):
            return damaged(row[0])
        return None

    def _frame(self, segment: str, offset: int, length: int, size: int) -> bytes:
        key = (segment, offset)
        with self._frame_lock:
            cached = self._frames.get(key)
            if cached is not None:
                self._frames.move_to_end(key)
                return cached
        try:
            data = read_frame(self.raw_root, segment, offset, length, size)
        except RawUnreadable as exc:
            why = str(exc)
            if self._unreadable.setdefault(segment, why) is why:
                log.warning("%s; its measurements are listed, but their raw bytes cannot be shown", why)
            raise
        with self._frame_lock:
            if key not in self._frames and len(data) <= FRAME_CACHE_BYTES // 4:
                self._frames[key] = data
                self._frame_bytes += len(data)
                while self._frame_bytes > FRAME_CACHE_BYTES and self._frames:
                    _, old = self._frames.popitem(last=False)
                    self._frame_bytes -= len(old)
        return data

    def raw_line(self, segment: str, offset: int, length: int, size: int, line_offset: int,
                 line_length: int) -> bytes:
        """One measurement's bytes from its pointers (as the measurements table holds them)."""
        return bytes(self._frame(segment, offset, length, size)[line_offset:line_offset + line_length])

    def measurement(self, uid: str) -> dict[str, Any] | None:
        data = self.raw(uid)
        if data is None:
            return None
        value = orjson.loads(data)
        return value if isinstance(value, dict) else None


def deadline_text(seconds: float | None) -> str:
    return f"{QUERY_SECONDS if seconds is None else seconds:g} s"


# --------------------------------------------------------------------------- /api/v1/measurements


def _time(value: str, name: str) -> dt.datetime:
    text = value.strip()
    try:
        if len(text) == 10:
            return dt.datetime.combine(dt.date.fromisoformat(text), dt.time())
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(f"{name} must be a date (2024-01-31) or a time (2024-01-31T12:00:00Z)") from None
    if when.tzinfo is not None:
        try:
            when = when.astimezone(dt.timezone.utc).replace(tzinfo=None)
        except OverflowError:  # year 1 minus an offset, or year 9999 plus one, is no datetime
            raise QueryError(f"{name} is out of range (years 1 to 9999 in UTC)") from None
    return when


def _category(value: str) -> str:
    """A category code as the lists write it (NEWS), or QueryError."""
    try:
        return normal_code(value)
    except ValueError:
        raise QueryError("category_code must be a Citizen Lab category code (NEWS, HUMR, ANON...)") from None


def _several(value: str | None, name: str, check: Any) -> tuple[str, ...]:
    """A comma-separated parameter (OONI's ``probe_cc=IR,RU``), each value normalised by ``check`` (None: refused,
    QueryError naming it and saying what it should be)."""
    out = []
    for part in (value or "").split(","):
        if not part.strip():
            continue
        out.append(_one(part.strip(), name, check))
    return tuple(dict.fromkeys(out))


# What each checked field should be, in the words of a refusal ("probe_cc: 'Italy' is not one of ...")
_SHOULD_BE = {"probe_cc": "the two-letter country codes (IR, RU...)",
              "probe_asn": "the network numbers (AS12389, or 12389)",
              "test_name": "the test names (lowercase letters, digits and _: web_connectivity)",
              "domain": "the host names a site can have (example.com, яндекс.рф, xn--d1acpjx3f.xn--p1ai)"}


def _one(value: str, name: str, check: Any) -> str:
    normal: str | None = check(value)
    if normal is None:
        raise QueryError(f"{name}: {value[:64]!r} is not one of {_SHOULD_BE[name]}")
    return normal


def _cc(value: str) -> str | None:
    return value.upper() if len(value) == 2 and value.isascii() and value.isalpha() else None


def _asn(value: str) -> str | None:
    asn = normal_asn(value)
    return asn if asn and asn.startswith("AS") and asn[2:].isdigit() and asn[2:].isascii() and len(asn) <= 12 \
        else None


def _test(value: str) -> str | None:
    return value.lower() if len(value) <= 64 and all(c.isascii() and (c.isalnum() or c == "_") for c in value) \
        else None


# What a site's name the store keeps cannot hold (`analysis.pipeline._host`, which made it from the input's URL):
# markup, spaces, controls (a comma it can hold separates several in OONI's aggregation's parameters).
_NOT_IN_HOSTS = frozenset('<>"\'`{}|\\^%/?#@ ')


def _host(value: str) -> str | None:
    host = value.lower().rstrip(".")
    if not host or len(host) > 253 or any(ch in _NOT_IN_HOSTS or ch < "!" or "\x7f" <= ch <= "\x9f" for ch in host):
        return None
    return host


def ooni_slice(probe_cc: str | None = None, probe_asn: str | None = None, test_name: str | None = None,
               domain: str | None = None, input: str | None = None, category_code: str | None = None,
               since: str | None = None, until: str | None = None) -> Slice:
    """OONI's ``/api/v1/aggregation`` parameters as a `Slice`: countries, networks, tests and domains
    comma-separated; QueryError, in words, for a value that is none of them."""
    return Slice(probe_cc=_several(probe_cc, "probe_cc", _cc), probe_asn=_several(probe_asn, "probe_asn", _asn),
                 test_name=_several(test_name, "test_name", _test), domain=_several(domain, "domain", _host),
                 input=input or None, category_code=_category(category_code) if category_code else None,
                 since=_time(since, "since") if since else None, until=_time(until, "until") if until else None)


def normal_asn(value: str | None) -> str | None:
    """"AS1234", "as1234" or "1234" → "AS1234"."""
    if value is None or value == "":
        return None
    text = value.strip().upper()
    if text.isdigit():
        text = "AS" + text
    return text


@dataclass(frozen=True)
class MeasurementQuery:
    """OONI's ``/api/v1/measurements`` parameters (and ``mechanism`` and ``fingerprint``, ours). None = any.
    ``category_code`` is OONI's too: the site's Citizen Lab category, from the test lists the store holds."""

    probe_cc: str | None = None
    probe_asn: str | None = None
    test_name: str | None = None
    input: str | None = None
    domain: str | None = None
    since: str | None = None          # inclusive; a date or an ISO time (UTC)
    until: str | None = None          # exclusive, as in OONI's API
    report_id: str | None = None
    anomaly: bool | None = None       # True: anomaly or confirmed
    confirmed: bool | None = None
    failure: bool | None = None
    mechanism: str | None = None
    fingerprint: str | None = None    # a blockpage or DNS fingerprint id the verdict matched (ours)
    category_code: str | None = None  # NEWS, HUMR...: the site's category in the store's test lists
    measurement_uid: str | None = None
    order: str = "desc"               # by measurement_start_time
    limit: int = 100
    offset: int = 0

    def checked_values(self) -> dict[str, str | None]:
        """``probe_cc``, ``probe_asn``, ``test_name`` and ``domain`` as the store writes them (``it`` is ``IT``,
        ``12389`` is ``AS12389``), None where not given; QueryError, saying what it should be, for a value none of
        them can be (``probe_cc=<x>``, ``domain=%00``): every listing, export, aggregate, search and feed refuses
        it alike, rather than answering that nothing matches."""
        checks = {"probe_cc": _cc, "probe_asn": _asn, "test_name": _test, "domain": _host}
        out: dict[str, str | None] = {}
        for name, check in checks.items():
            value = getattr(self, name)
            out[name] = _one(value.strip(), name, check) if value is not None and value.strip() != "" else None
        return out

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        given = self.checked_values()
        for name, column in (("probe_cc", "v.probe_cc"), ("probe_asn", "v.probe_asn"), ("test_name", "v.test_name"),
                             ("input", "v.input"), ("report_id", "m.report_id"), ("mechanism", "v.mechanism"),
                             ("measurement_uid", "v.measurement_uid")):
            value = given.get(name, getattr(self, name))
            if value is not None and value != "":
                clauses.append(f"{column} = ?")
                params.append(value)
        if given["domain"] is not None:  # either spelling finds the site: яндекс.рф or xn--d1acpjx3f.xn--p1ai
            forms = host_forms(given["domain"])
            clauses.append(f"v.domain IN ({', '.join('?' * len(forms))})")
            params.extend(forms)
        if self.fingerprint:
            clauses.append("list_contains(v.fingerprints, ?)")
            params.append(self.fingerprint)
        if self.category_code:
            clauses.append(f"{category_sql('v.domain', 'v.probe_cc')} = ?")
            params.append(_category(self.category_code))
        if self.since:
            clauses.append("v.measurement_start_time >= ?")
            params.append(_time(self.since, "since"))
        if self.until:
            clauses.append("v.measurement_start_time < ?")
            params.append(_time(self.until, "until"))
        for flag, expr in ((self.anomaly, "v.outcome IN ('anomaly', 'confirmed')"),
                           (self.confirmed, "v.outcome = 'confirmed'"), (self.failure, "v.outcome = 'failure'")):
            if flag is True:
                clauses.append(expr)
            elif flag is False:
                clauses.append(f"NOT coalesce({expr}, false)")
        return " AND ".join(clauses) or "TRUE", params

    def checked(self) -> MeasurementQuery:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise QueryError(f"limit must be between 1 and {MAX_LIMIT}")
        if self.offset < 0:
            raise QueryError("offset must not be negative")
        if self.order not in ("asc", "desc"):
            raise QueryError("order must be asc or desc")
        self.where()  # parses since/until
        return self

    def params(self) -> dict[str, Any]:
        """The non-default parameters, for building next_url."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and value != f.default:
                out[f.name] = str(value).lower() if isinstance(value, bool) else value
        return out

    def filters(self) -> Filters:
        """The same narrowing for the store's aggregates (by day, not by time)."""
        given = self.checked_values()
        return Filters(probe_cc=given["probe_cc"], probe_asn=given["probe_asn"],
                       domain=given["domain"], input=self.input or None, test_name=given["test_name"],
                       mechanism=self.mechanism or None, fingerprint=self.fingerprint or None,
                       category_code=_category(self.category_code) if self.category_code else None,
                       since=_time(self.since, "since").date() if self.since else None,
                       until=_time(self.until, "until").date() if self.until else None)


LIST_COLUMNS = """v.measurement_uid, m.report_id, v.test_name, v.input, v.domain, v.probe_cc, v.probe_asn,
    v.probe_network_name, v.measurement_start_time, v.blocking, v.accessible, v.mechanism, v.confidence,
    v.status, v.outcome, v.fingerprints, v.signature, v.equipment"""


def _iso(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def ooni_row(row: dict[str, Any], base_url: str = "") -> dict[str, Any]:
    """One result of /api/v1/measurements: OONI's fields first, then ours."""
    outcome = row.get("outcome")
    uid = row["measurement_uid"]
    return {
        "measurement_uid": uid,
        "report_id": row.get("report_id"),
        "test_name": row.get("test_name"),
        "input": row.get("input"),
        "probe_cc": row.get("probe_cc"),
        "probe_asn": row.get("probe_asn"),
        "measurement_start_time": _iso(row.get("measurement_start_time")),
        "anomaly": outcome in ("anomaly", "confirmed"),
        "confirmed": outcome == "confirmed",
        "failure": outcome == "failure",
        "scores": {"blocking": blocking_json(row.get("blocking")), "accessible": row.get("accessible"),
                   "mechanism": row.get("mechanism"), "confidence": row.get("confidence")},
        "measurement_url": f"{base_url}/api/v1/measurement/{uid}",
        "domain": row.get("domain"),
        "probe_network_name": row.get("probe_network_name"),
        "blocking": blocking_json(row.get("blocking")),
        "accessible": row.get("accessible"),
        "mechanism": row.get("mechanism"),
        "confidence": row.get("confidence"),
        "outcome": outcome,
        "fingerprints": list(row.get("fingerprints") or []),
        "signature": row.get("signature"),
        "explorer_url": f"{base_url}/m/{uid}",
    }


def _matching(query: MeasurementQuery) -> tuple[str, list[Any]]:
    """The query's WHERE over ``verdicts v`` alone: ``report_id`` (the one column from ``measurements``)
    becomes a semi-join on the few measurements of that report, so counting and sorting never join
    the whole store (verdicts and measurements are written and deleted together, one row each)."""
    where, params = replace(query, report_id=None).where()
    if query.report_id:
        where += " AND v.measurement_uid IN (SELECT measurement_uid FROM measurements WHERE report_id = ?)"
        params.append(query.report_id)
    return where, params


def _page_keys(reader: Reader, q: MeasurementQuery, where: str, params: list[Any]) -> list[tuple[str, Any]]:
    """One page's (uid, start time), in order: the sort and the OFFSET carry two columns of one table."""
    order = "DESC" if q.order == "desc" else "ASC"
    return [(r[0], r[1]) for r in reader.cursor().execute(
        f"""SELECT v.measurement_uid, v.measurement_start_time FROM verdicts v WHERE {where}
            ORDER BY v.measurement_start_time {order}, v.measurement_uid {order}
            LIMIT {int(q.limit)} OFFSET {int(q.offset)}""", params).fetchall()]


def list_measurements(reader: Reader, query: MeasurementQuery, *,
                      count: bool = True) -> tuple[list[dict[str, Any]], int | None]:
    """(rows, total matching) for one page; rows are plain store rows (see `ooni_row`).

    The page is found on the verdicts alone (a top-N of keys), and only its rows are then read in full
    and joined to their measurements: a deep offset sorts keys, never the store's every column."""
    q = query.checked()
    where, params = _matching(q)
    total = None
    if count:
        found = reader.cursor().execute(f"SELECT count(*) FROM verdicts v WHERE {where}", params).fetchone()
        total = int(found[0]) if found else 0
        if q.offset >= total:
            return [], total
    keys = _page_keys(reader, q, where, params)
    if not keys:
        return [], total
    times = [t for _, t in keys if t is not None]
    span, span_params = "TRUE", []
    if len(times) == len(keys):  # the page's time span lets DuckDB skip the row groups of other times
        span = "v.measurement_start_time BETWEEN ? AND ? AND m.measurement_start_time BETWEEN ? AND ?"
        span_params = [min(times), max(times)] * 2
    order = "DESC" if q.order == "desc" else "ASC"
    rows = reader.rows(
        f"""SELECT {LIST_COLUMNS} FROM verdicts v JOIN measurements m USING (measurement_uid)
            WHERE v.measurement_uid IN (SELECT unnest(?::VARCHAR[])) AND {span}
            ORDER BY v.measurement_start_time {order}, v.measurement_uid {order}""",
        [[uid for uid, _ in keys], *span_params])
    return rows, total


def _raw_pointers(query: MeasurementQuery, limited: bool) -> tuple[str, list[Any]]:
    where, params = _matching(query)
    order = "DESC" if query.order == "desc" else "ASC"
    page = f" LIMIT {int(query.limit)} OFFSET {int(query.offset)}" if limited else ""
    return (f"""SELECT m.raw_segment, m.raw_frame_offset, m.raw_frame_length, m.raw_frame_size, m.raw_line_offset,
                       m.raw_line_length
                FROM verdicts v JOIN measurements m USING (measurement_uid) WHERE {where}
                ORDER BY v.measurement_start_time {order}, v.measurement_uid {order}{page}""", params)


def iter_raw(reader: Reader, query: MeasurementQuery, batch: int = 256, *,
             limited: bool = False) -> Iterator[list[bytes]]:
    """Every matching measurement as stored, in the listing's order, in batches (the raw export): the raw
    pointers come with the sorted rows, not from a lookup of each batch's uids in the whole table."""
    sql, params = _raw_pointers(query, limited)
    cur = reader.private_cursor()
    try:
        result = cur.execute(sql, params)
        while chunk := result.fetchmany(batch):
            lines = []
            for pointer in chunk:
                if pointer[0] is not None:
                    try:
                        lines.append(reader.raw_line(*pointer))
                    except RawUnreadable:  # said in the log once per segment: the rest is exported
                        continue
            yield lines
    finally:
        reader.release(cur)


def iter_measurements(reader: Reader, query: MeasurementQuery, batch: int = 2048, *,
                      limited: bool = False) -> Iterator[list[dict[str, Any]]]:
    """Every matching row (or, with ``limited``, the query's limit and offset), in batches, for exports."""
    where, params = query.where()
    order = "DESC" if query.order == "desc" else "ASC"
    page = f" LIMIT {int(query.limit)} OFFSET {int(query.offset)}" if limited else ""
    cur = reader.private_cursor()
    try:
        result = cur.execute(
            f"""SELECT {LIST_COLUMNS} FROM verdicts v JOIN measurements m USING (measurement_uid)
                WHERE {where} ORDER BY v.measurement_start_time {order}, v.measurement_uid {order}{page}""", params)
        names = [d[0] for d in result.description or []]
        while True:
            chunk = result.fetchmany(batch)
            if not chunk:
                return
            yield [dict(zip(names, row, strict=True)) for row in chunk]
    finally:
        reader.release(cur)


def known_values(reader: Reader, column: str, limit: int = 500) -> list[str]:
    """Distinct values of a verdict column, commonest first (for the search form's choices)."""
    if column not in ("probe_cc", "probe_asn", "test_name", "mechanism"):
        raise ValueError(column)
    return [r[0] for r in reader.cursor().execute(
        f"SELECT {column} FROM verdicts WHERE {column} IS NOT NULL GROUP BY 1 "
        f"ORDER BY count(*) DESC, 1 LIMIT {int(limit)}").fetchall()]


# --------------------------------------------------------------------------- located hops


HOP_MEMO = 100_000  # hops remembered per reader (a few hundred bytes each at most)


def hops(reader: Reader, filters: Filters | None = None, *, scan: int = hop_scan.SCAN) -> list[dict[str, Any]]:
    """Located hops among the ``scan`` most recent anomalies matching ``filters``, commonest first
    (`analysis.hops.located`, each anomaly's hop parsed once per process: `Reader.hops_of`)."""
    return hop_scan.located(reader, filters, scan=scan, hops_of=reader.hops_of)


__all__ = [
    "LIST_COLUMNS", "MAX_LIMIT", "QUERY_SECONDS", "MeasurementQuery", "QueryError", "QueryTimeout", "RawUnreadable",
    "Reader",
    "hops", "iter_raw",
    "iter_measurements", "known_values", "list_measurements", "normal_asn", "ooni_row", "ooni_slice",
]
