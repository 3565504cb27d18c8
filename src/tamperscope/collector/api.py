"""The JSON API: OONI's measurement listing and raw measurements, aggregations, exports, admin.

* ``GET /api/v1/measurements``: OONI's parameters (probe_cc, probe_asn, test_name,
  input, domain, since, until, report_id, anomaly, confirmed, failure, limit,
  offset, order, category_code) plus ``mechanism`` and ``fingerprint``; OONI's shape ``{"metadata", "results"}``.
* ``GET /api/v1/measurement/{uid}``: the measurement's JSON, byte for byte as stored.
* ``GET /api/v1/aggregation``: OONI's aggregation (``axis_x``, ``axis_y``, ``time_grain``; its filters, several
  values each; its shape), counts by up to two axes.
* ``GET /api/v1/aggregation/{name}``: the store's aggregates (timeline, per_domain,
  per_network, per_mechanism, per_country, per_category, signatures, blockpages, domain_network,
  mechanism_country, blocking_rules) and ``hops``, as JSON or ``format=csv``.
* ``GET /api/v1/export/measurements.{csv,json,jsonl}`` and ``/api/v1/export/raw.jsonl``:
  everything matching the filters, streamed.
* ``GET /api/v1/export/report.html``: the HTML report of what matches (``tamperscope report
  --html``), one self-contained file sent as an attachment, gzip'd when the client takes it.
* ``GET /api/v1/health``: counts and the writer's state.
* ``GET /api/v1/findings``, ``GET /api/v1/findings/{id}``: researchers' findings (``serve --findings``), each
  with its evidence counted now.
* ``POST /api/v1/admin/delete/{uid}``, ``POST /api/v1/admin/reanalyse``: behind the
  admin token (`admin.check_token`).

CSV cells that a spreadsheet would run as a formula (starting with ``= + - @``
or a tab/CR) are prefixed with ``'``: measurement content is hostile input.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import logging
import math
import re
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from tamperscope.analysis import aggregates
from tamperscope.analysis.aggregates import Filters
from tamperscope.analysis.report import html_report
from tamperscope.analysis.sheets import csv_text
from tamperscope.analysis.verdicts import analysis_version
from tamperscope.collector import admin
from tamperscope.collector.config import Collector
from tamperscope.collector.queries import (
    MAX_LIMIT,
    MeasurementQuery,
    QueryError,
    hops,
    iter_measurements,
    iter_raw,
    list_measurements,
    ooni_row,
    ooni_slice,
)
from tamperscope.collector.ratelimit import Slot, Slots
from tamperscope.collector.schema import SubmissionError, parse_json
from tamperscope.collector.submissions import read_body

router = APIRouter(prefix="/api/v1", tags=["api"])

AGGREGATIONS = (*aggregates.AGGREGATES, "hops")
EXPORTS_PER_CLIENT = 1    # streamed exports one client address may run at once
EXPORTS_TOTAL = 4         # ... and all clients together (`app.create_app` makes the `Slots`)
UID_PATTERN = r"^[A-Za-z0-9_.-]{1,200}$"


def collector_of(request: Request) -> Collector:
    collector: Collector = request.app.state.collector
    return collector


def base_url(request: Request) -> str:
    """The origin absolute links are made with: ``serve --public-url``, else the request's own (its Host header,
    which any client sets: behind a shared cache, give --public-url)."""
    public: str | None = request.app.state.collector.settings.public_url
    return public if public else str(request.base_url).rstrip("/")


def measurement_query(
    probe_cc: Annotated[str | None, Query(description="country, ISO 3166-1 alpha-2", max_length=8)] = None,
    probe_asn: Annotated[str | None, Query(description="network, AS1234 or 1234", max_length=16)] = None,
    test_name: Annotated[str | None, Query(max_length=64)] = None,
    input: Annotated[str | None, Query(description="the exact input (URL)", max_length=8192)] = None,
    domain: Annotated[str | None, Query(description="the input's host name", max_length=300)] = None,
    since: Annotated[str | None, Query(description="from this date or UTC time, inclusive", max_length=40)] = None,
    until: Annotated[str | None, Query(description="until this date or UTC time, exclusive", max_length=40)] = None,
    report_id: Annotated[str | None, Query(max_length=200)] = None,
    anomaly: Annotated[bool | None, Query(description="anomalies (confirmed ones included) or not")] = None,
    confirmed: Annotated[bool | None, Query()] = None,
    failure: Annotated[bool | None, Query()] = None,
    mechanism: Annotated[str | None, Query(description="tamperscope's mechanism, e.g. dns.poison",
                                           max_length=40)] = None,
    fingerprint: Annotated[str | None, Query(description="a blockpage or DNS fingerprint the verdict matched, "
                                             "e.g. cp/a_prod_fortinet_1", max_length=200)] = None,
    category_code: Annotated[str | None, Query(description="the site's Citizen Lab category (NEWS, HUMR, ANON...), "
                                               "from the test lists the store was given", max_length=16)] = None,
    order: Annotated[str, Query(pattern="^(asc|desc)$", description="by measurement_start_time")] = "desc",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> MeasurementQuery:
    try:
        return MeasurementQuery(probe_cc=probe_cc, probe_asn=probe_asn, test_name=test_name, input=input,
                                domain=domain, since=since, until=until, report_id=report_id, anomaly=anomaly,
                                confirmed=confirmed, failure=failure, mechanism=mechanism, fingerprint=fingerprint,
                                category_code=category_code, order=order,
                                limit=limit, offset=offset).checked()
    except QueryError as exc:
        raise SubmissionError(400, "invalid_parameter", str(exc)) from None


QueryDep = Annotated[MeasurementQuery, Depends(measurement_query)]


def measurements_page(collector: Collector, query: MeasurementQuery, url_base: str, path: str) -> dict[str, Any]:
    """OONI's ``{"metadata", "results"}`` for one page (also the search page's JSON twin)."""
    started = time.perf_counter()
    rows, total = list_measurements(collector.reader, query)
    count = total or 0
    pages = max(1, math.ceil(count / query.limit))
    next_url = None
    if query.offset + query.limit < count:
        from urllib.parse import urlencode

        params = {**query.params(), "offset": query.offset + query.limit, "limit": query.limit}
        next_url = f"{url_base}{path}?{urlencode(params)}"
    return {
        "metadata": {"count": count, "current_page": query.offset // query.limit + 1, "limit": query.limit,
                     "offset": query.offset, "pages": pages, "next_url": next_url,
                     "query_time": round(time.perf_counter() - started, 4)},
        "results": [ooni_row(r, url_base) for r in rows],
    }


@router.get("/measurements", summary="List measurements (OONI's parameters and shape)")
def get_measurements(request: Request, query: QueryDep) -> Response:
    collector = collector_of(request)
    with collector.reader.bounded(snapshot=True):  # its count and its rows agree
        page = measurements_page(collector, query, base_url(request), "/api/v1/measurements")
    return JSONResponse(page)


@router.get("/measurement/{measurement_uid}", summary="One measurement's raw JSON, as stored",
            responses={200: {"content": {"application/json": {}}}, 404: {"description": "unknown"},
                       307: {"description": "the same measurement (content and start), stored under another uid"},
                       500: {"description": "in the store, but its raw bytes cannot be read"}})
def get_measurement(request: Request,
                    measurement_uid: Annotated[str, Path(pattern=UID_PATTERN)]) -> Response:
    collector = collector_of(request)
    data = collector.reader.raw(measurement_uid) or collector.ingestor.unsettled_raw(measurement_uid)
    if data is None and (why := collector.reader.unreadable(measurement_uid)) is not None:
        return JSONResponse({"error": "raw_unreadable", "detail": why}, status_code=500)
    if data is None and (other := collector.reader.stored_as(measurement_uid)) is not None:
        # the same measurement, stored under the uid of its first reading (another country: Store._known)
        return RedirectResponse(f"{request.url.path.rsplit('/', 1)[0]}/{quote(other, safe='')}", status_code=307)
    if data is None:
        return JSONResponse({"error": "not_found", "detail": "no measurement with this uid"}, status_code=404)
    return Response(data, media_type="application/json")


def _filters(query: MeasurementQuery) -> Filters:
    try:
        return query.filters()
    except QueryError as exc:
        raise SubmissionError(400, "invalid_parameter", str(exc)) from None


def aggregate(collector: Collector, name: str, filters: Filters, limit: int | None) -> list[dict[str, Any]]:
    reader: Any = collector.reader
    if name == "hops":
        found = hops(collector.reader, filters)
        return found[:limit] if limit is not None else found
    fn = aggregates.AGGREGATES[name]
    if name in ("per_domain", "per_network", "per_test", "signatures", "blockpages", "blocking_rules", "apps"):
        return fn(reader, filters, limit=limit)
    rows = fn(reader, filters)
    return rows[:limit] if limit is not None else rows


@router.get("/aggregation", summary="OONI's aggregation: measurements counted by up to two axes (axis_x, axis_y)")
def get_ooni_aggregation(
    request: Request,
    probe_cc: Annotated[str | None, Query(description="countries, comma-separated: IR,RU", max_length=800)] = None,
    probe_asn: Annotated[str | None, Query(description="networks, comma-separated: AS12389,AS8359",
                                           max_length=800)] = None,
    test_name: Annotated[str | None, Query(description="tests, comma-separated", max_length=800)] = None,
    domain: Annotated[str | None, Query(description="sites, comma-separated", max_length=4000)] = None,
    input: Annotated[str | None, Query(description="the exact input (URL)", max_length=8192)] = None,
    category_code: Annotated[str | None, Query(description="the site's Citizen Lab category (NEWS...), from the "
                                               "store's test lists", max_length=16)] = None,
    since: Annotated[str | None, Query(description="from this date or UTC time, inclusive", max_length=40)] = None,
    until: Annotated[str | None, Query(description="until this date or UTC time, exclusive", max_length=40)] = None,
    axis_x: Annotated[str | None, Query(description="measurement_start_day, probe_cc, probe_asn, test_name, domain, "
                                        "input, category_code, blocking_type, or (ours) mechanism",
                                        max_length=40)] = None,
    axis_y: Annotated[str | None, Query(description="a second axis, as axis_x", max_length=40)] = None,
    time_grain: Annotated[str, Query(description="hour (over 7 days at most), day, week, month, year, or auto "
                                     "(by the hour over 7 days at most, else by the day)", max_length=10)] = "auto",
    format: Annotated[str, Query(pattern="^(json|csv|JSON|CSV)$")] = "JSON",
    download: Annotated[bool, Query(description="sent as an attachment")] = False,
) -> Response:
    """OONI's ``/api/v1/aggregation``, with its parameters and shape (``{"v", "dimension_count", "result"}``: one
    row without an axis, a list of rows with one or two), so that what reads OONI's reads ours. Its counts split
    the measurements: ``anomaly_count`` does not hold the confirmed ones, as on OONI's (and unlike
    ``/aggregation/{name}``'s)."""
    try:
        selection = ooni_slice(probe_cc, probe_asn, test_name, domain, input, category_code, since, until)
        axes = [a.strip().lower() for a in (axis_x, axis_y) if a and a.strip()]
        grain = aggregates.time_grain(selection, time_grain.strip().lower())
        reader: Any = collector_of(request).reader
        with reader.bounded():
            rows = aggregates.counts_by(reader, selection, axes, grain)
    except (QueryError, aggregates.SliceError) as exc:
        raise SubmissionError(400, "invalid_parameter", str(exc)) from None
    headers = {}
    if format.lower() == "csv":
        if download:
            headers["Content-Disposition"] = 'attachment; filename="tamperscope-aggregation.csv"'
        return Response(csv_text(rows), media_type="text/csv; charset=utf-8", headers=headers)
    if download:
        headers["Content-Disposition"] = 'attachment; filename="tamperscope-aggregation.json"'
    return JSONResponse({"v": 0, "dimension_count": len(axes), "result": rows if axes else rows[0]},
                        headers=headers)


@router.get("/aggregation/{name}",
            summary="Counts by day, domain, network, mechanism, country, signature, blockpage or hop; blocking rules")
def get_aggregation(request: Request, query: QueryDep,
                    name: Annotated[str, Path(description="one of " + ", ".join(AGGREGATIONS))],
                    format: Annotated[str, Query(pattern="^(json|csv|JSON|CSV)$")] = "json",
                    rows: Annotated[int | None, Query(ge=1, le=100_000, description="at most this many rows")] = None,
                    ) -> Response:
    if name not in AGGREGATIONS:
        return JSONResponse({"error": "not_found", "detail": f"no aggregation {name!r}; known: "
                             f"{', '.join(AGGREGATIONS)}"}, status_code=404)
    filters = _filters(query)
    collector = collector_of(request)
    with collector.reader.bounded():
        result = aggregate(collector, name, filters, rows)
    if format.lower() == "csv":
        return Response(csv_text(result), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    return JSONResponse({"v": 0, "aggregation": name, "filters": _filter_dict(filters), "result": result},
                        headers={})


def _filter_dict(filters: Filters) -> dict[str, Any]:
    return {k: (str(v) if v is not None else None) for k, v in vars(filters).items() if v is not None}


# --------------------------------------------------------------------------- findings


@router.get("/findings", summary="Researchers' findings (serve --findings DIR), newest first")
def get_findings(request: Request) -> Response:
    return JSONResponse({"v": 0, "results": [f.public() for f in collector_of(request).findings.all()]})


@router.get("/findings/{finding_id}", summary="One finding: its text, and its evidence counted now",
            responses={404: {"description": "unknown"}})
def get_finding(request: Request, finding_id: Annotated[str, Path(max_length=80)]) -> Response:
    """A finding with ``text`` and ``counts``: its evidence's measurements counted by result now, as OONI's
    aggregation counts them (``anomaly_count`` without the confirmed ones)."""
    collector = collector_of(request)
    found = collector.findings.get(finding_id)
    if found is None:
        return JSONResponse({"error": "not_found", "detail": "no such finding"}, status_code=404)
    reader: Any = collector.reader
    with reader.bounded():
        counts = aggregates.counts_by(reader, found.selection)[0]
    return JSONResponse({"v": 0, **found.public(), "text": found.text, "counts": counts})


# --------------------------------------------------------------------------- CSV

EXPORT_FIELDS = ("measurement_uid", "report_id", "test_name", "input", "domain", "probe_cc", "probe_asn",
                 "probe_network_name", "measurement_start_time", "anomaly", "confirmed", "failure", "blocking",
                 "accessible", "mechanism", "confidence", "outcome", "fingerprints", "signature")


def _export_batches(collector: Collector, query: MeasurementQuery, url_base: str,
                    limited: bool) -> Iterator[list[dict[str, Any]]]:
    for batch in iter_measurements(collector.reader, query, limited=limited):
        yield [ooni_row(row, url_base) for row in batch]


def _exporting(request: Request) -> Slot | JSONResponse:
    """An export slot for this client, or the refusal: a stream holds a cursor and a thread's time for as
    long as the client reads, so only a few run at once (`EXPORTS_PER_CLIENT`, `EXPORTS_TOTAL`)."""
    slots: Slots = request.app.state.export_slots
    client = request.client.host if request.client else "unknown"
    slot = slots.acquire(client)
    if slot is not None:
        return slot
    mine = slots.in_use < slots.total
    status, error = (429, "rate_limited") if mine else (503, "busy")
    detail = ("this address is already running as many exports as allowed; retry when one ends" if mine
              else "the server is running as many exports as it allows; retry later")
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers={"Retry-After": "10"})


class _Held:
    """``chunks`` under an export slot, released at the stream's end, or as soon as the stream is closed (its
    client gone, or reading nothing: `_PacedStream`), not when the garbage collector gets to it: four clients
    that opened exports and hung up held every slot for minutes (QA).

    Chunks are made in a worker thread while the response is closed from the event loop: a close that finds
    a chunk being made releases the slot at once and leaves the chunks' own closing (their cursor) to the
    thread, when that chunk is done.
    """

    def __init__(self, slot: Slot, chunks: Iterator[bytes]) -> None:
        self._slot = slot
        self._chunks = chunks
        self._lock = threading.Lock()  # held while a chunk is made
        self._closing = False

    def __iter__(self) -> _Held:
        return self

    def __next__(self) -> bytes:
        with self._lock:
            if self._closing:
                raise StopIteration
            try:
                chunk = next(self._chunks)
            except BaseException:
                self._end()
                raise
            if self._closing:  # closed while it was made: no one reads it
                self._end()
            return chunk

    def close(self) -> None:
        self._closing = True
        self._slot.release()
        if self._lock.acquire(blocking=False):  # else the thread making a chunk ends the chunks after it
            try:
                self._end()
            finally:
                self._lock.release()

    def _end(self) -> None:
        self._slot.release()
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


HEAD_SCOPE_KEY = "tamperscope.head"  # set in a request's scope by `app.Head`: a HEAD, answered as the GET


def _head(request: Request) -> bool:
    return bool(request.scope.get(HEAD_SCOPE_KEY))


log = logging.getLogger("tamperscope.collector")
SEND_GRACE = 60.0   # s an export's piece may wait for its reader to make room for it, and...
SEND_PACE = 1024    # ...a second per this many bytes of a piece: a reader slower than 1 KiB/s, or none, loses it
SEND_PIECE = 64 << 10  # bytes sent at once: a chunk of an export can be many MB, written to the socket at once


class _Stalled(Exception):
    """An export's reader stopped reading (`_PacedStream`)."""


class _PacedStream(StreamingResponse):
    """An export's stream, ended when its reader stops reading: the body goes out in pieces of `SEND_PIECE`
    bytes, and each must be taken within `SEND_GRACE` seconds and one more per `SEND_PACE` bytes. Four clients
    that opened exports and then read nothing held every export slot for as long as they kept their sockets;
    now the stream is dropped, its slot released and the connection closed (the answer cut short, as a lost
    connection cuts it)."""

    def __init__(self, body: Iterator[bytes], **kwargs: Any) -> None:
        super().__init__(body, **kwargs)
        self._body = body

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def timed(message: Any) -> None:
            try:
                await asyncio.wait_for(send(message), SEND_GRACE + SEND_PIECE / SEND_PACE)
            except TimeoutError:
                raise _Stalled() from None

        async def paced(message: Any) -> None:
            body = message.get("body", b"") if message.get("type") == "http.response.body" else b""
            if len(body) <= SEND_PIECE:
                return await timed(message)
            view, more = memoryview(body), message.get("more_body", False)
            for start in range(0, len(body), SEND_PIECE):
                last = start + SEND_PIECE >= len(body)
                await timed({"type": "http.response.body", "body": bytes(view[start:start + SEND_PIECE]),
                             "more_body": more or not last})

        try:
            await super().__call__(scope, receive, paced)
        except _Stalled:
            client = scope.get("client")
            log.warning("an export to %s was dropped: its reader took nothing for %.0f s (uvicorn then says the "
                        "answer was not completed)", client[0] if client else "a client",
                        SEND_GRACE + SEND_PIECE / SEND_PACE)
        finally:  # the end, a reader that stopped reading, or one that hung up: the slot released now
            close = getattr(self._body, "close", None)
            if close is not None:
                close()


def _stream(slot: Slot, chunks: Iterator[bytes], media: str, filename: str, *, head: bool = False) -> StreamingResponse:
    """The export's answer; for a HEAD (``head``), its headers only: nothing is read from the store."""
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if head:
        slot.release()
        return StreamingResponse(iter(()), media_type=media, headers=headers)
    body = _Held(slot, chunks)
    weakref.finalize(body, slot.release)  # a response never sent is never closed
    return _PacedStream(body, media_type=media, headers=headers)


def _csv_chunks(batches: Iterator[list[dict[str, Any]]]) -> Iterator[bytes]:
    yield csv_text([], EXPORT_FIELDS).encode()
    for batch in batches:  # one chunk per batch: each chunk is a hop to a worker thread and back
        yield csv_text(batch, EXPORT_FIELDS).split("\r\n", 1)[1].encode()


def _jsonl_chunks(batches: Iterator[list[dict[str, Any]]]) -> Iterator[bytes]:
    for batch in batches:
        yield b"".join(orjson.dumps({k: row[k] for k in EXPORT_FIELDS}) + b"\n" for row in batch)


def _json_chunks(batches: Iterator[list[dict[str, Any]]]) -> Iterator[bytes]:
    yield b"["
    first = True
    for batch in batches:
        parts = [orjson.dumps({k: row[k] for k in EXPORT_FIELDS}) for row in batch]
        if parts:
            yield (b"" if first else b",\n") + b",\n".join(parts)
            first = False
    yield b"]\n"


_EXPORT_KINDS = {"csv": ("text/csv; charset=utf-8", _csv_chunks), "json": ("application/json", _json_chunks),
                 "jsonl": ("application/x-ndjson", _jsonl_chunks)}


@router.get("/export/measurements.{kind}", summary="Every matching measurement's verdict row, streamed "
            "(all of them unless limit is given)",
            responses={200: {"content": {"text/csv": {}, "application/json": {}, "application/x-ndjson": {}}},
                       429: {"description": "this address runs an export already"},
                       503: {"description": "the server runs as many exports as it allows"}})
def export_measurements(request: Request, query: QueryDep,
                        kind: Annotated[str, Path(pattern="^(csv|json|jsonl)$")]) -> Response:
    slot = _exporting(request)
    if isinstance(slot, JSONResponse):
        return slot
    batches = _export_batches(collector_of(request), query, base_url(request), "limit" in request.query_params)
    media, chunks = _EXPORT_KINDS[kind]
    return _stream(slot, chunks(batches), media, f"measurements.{kind}", head=_head(request))


def _raw_lines(collector: Collector, query: MeasurementQuery, limited: bool) -> Iterator[bytes]:
    for batch in iter_raw(collector.reader, query, limited=limited):
        if batch:
            yield b"".join(line + b"\n" for line in batch)


@router.get("/export/raw.jsonl", summary="Every matching measurement, verbatim, one per line, streamed "
            "(all of them unless limit is given)",
            responses={200: {"content": {"application/x-ndjson": {}}},
                       429: {"description": "this address runs an export already"},
                       503: {"description": "the server runs as many exports as it allows"}})
def export_raw(request: Request, query: QueryDep) -> Response:
    slot = _exporting(request)
    if isinstance(slot, JSONResponse):
        return slot
    lines = _raw_lines(collector_of(request), query, "limit" in request.query_params)
    return _stream(slot, lines, "application/x-ndjson", "measurements.jsonl", head=_head(request))


@functools.cache
def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())


def report_filename(filters: Filters) -> str:
    """"tamperscope-report-RU-AS12389.html": what the report is of, in the name it is saved under (only
    letters, digits, dots and hyphens: the values come from the query string)."""
    parts = [re.sub(r"[^A-Za-z0-9.-]+", "_", str(v))[:64] for v in (
        filters.probe_cc, filters.probe_asn, filters.domain, filters.test_name, filters.mechanism,
        filters.fingerprint, filters.category_code, filters.since, filters.until) if v]
    return "-".join(["tamperscope-report", *parts]) + ".html"


_REPORT_FILTERS = ("probe_cc", "probe_asn", "test_name", "input", "domain", "mechanism", "fingerprint",
                   "category_code", "since", "until")


@router.get("/export/report.html", summary="The HTML report of the matching measurements, as `tamperscope report "
            "--html` writes it: one self-contained file (plotly inside), to keep or send",
            responses={200: {"content": {"text/html": {}}},
                       429: {"description": "this address runs an export already"},
                       503: {"description": "the server runs as many exports as it allows, or the report's "
                                            "queries ran out of time"}})
def export_report(request: Request, query: QueryDep) -> Response:
    filters = _filters(query)  # the aggregates' narrowing: country, network, site, test, technique, days
    if unused := [name for name in request.query_params if name not in _REPORT_FILTERS]:
        # a report is not made of anomalies only, a page or one report_id: saying nothing would mislead
        raise SubmissionError(400, "invalid_parameter", f"a report cannot be narrowed by {', '.join(unused)}; only "
                              f"by {', '.join(_REPORT_FILTERS)}")
    slot = _exporting(request)
    if isinstance(slot, JSONResponse):
        return slot
    try:
        reader: Any = collector_of(request).reader
        with reader.bounded(snapshot=True):  # one moment of the store: its totals and tables agree
            page = html_report(reader, filters, plotly_js=_plotly_js()).encode()
    finally:
        slot.release()
    headers = {"Content-Disposition": f'attachment; filename="{report_filename(filters)}"',
               "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", "").lower():  # 4.9 MB of it is plotly: 1.5 MB gzip'd
        page = gzip.compress(page, 5)
        headers["Content-Encoding"] = "gzip"
    return Response(page, media_type="text/html; charset=utf-8", headers=headers)


@router.get("/health", summary="Is the collector up, and how much does it hold")
def health(request: Request) -> dict[str, Any]:
    c = collector_of(request)
    row = c.reader.cursor().execute("SELECT count(*) FROM measurements").fetchone()
    s = c.ingestor.stats
    return {
        "status": "ok" if c.ingestor.healthy else "degraded",
        "measurements": int(row[0]) if row else 0,
        "accepting_submissions": c.settings.accept_submissions,
        "queued_requests": c.ingestor.queued,
        "stored": s.stored, "duplicates": s.duplicates, "refused": s.rejected, "replayed": s.replayed,
        "unsettled": c.ingestor.unsettled, "commits": s.commits, "largest_commit": s.largest_commit,
        "transactions": s.transactions, "largest_transaction": s.largest_transaction,
        "raw_log_bytes": c.rawlog.size, "analysis_version": analysis_version(),
        "uptime_seconds": round(time.time() - c.started, 1),
    }


# --------------------------------------------------------------------------- admin

def _authorise(request: Request) -> Collector:
    collector = collector_of(request)
    status = admin.check_token(collector.settings.admin_token, request.headers.get("authorization"))
    if status == 401:
        raise SubmissionError(401, "unauthorised", "admin actions need Authorization: Bearer <token>")
    if status == 403:
        if not collector.settings.admin_token:
            raise SubmissionError(403, "admin_disabled",
                                  f"admin actions are disabled: start the server with {admin.TOKEN_ENV} set")
        raise SubmissionError(403, "forbidden", "wrong admin token")
    return collector


_ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {401: {"description": "no token"},
                                                  403: {"description": "wrong token, or admin disabled"},
                                                  413: {"description": "the body is too large"}}
ADMIN_DELETE_BODY = 64 * 1024       # bytes of an admin deletion's body (a reason)
ADMIN_REANALYSE_BODY = 1024 * 1024  # bytes of a re-analysis request (uids and filters)
_ADMIN = ("an admin request", "administrators' tools")  # in a refusal of one a browser page of another site sent


@router.post("/admin/delete/{measurement_uid}", summary="Delete a measurement (admin token)",
             responses=_ADMIN_ERRORS, tags=["admin"])
async def admin_delete(request: Request, measurement_uid: Annotated[str, Path(pattern=UID_PATTERN)]) -> Response:
    collector = _authorise(request)
    body = await read_body(request, ADMIN_DELETE_BODY, *_ADMIN)  # over it: 413 (cut, it would read as invalid JSON)
    reason = "deleted by an administrator"
    if body.strip():
        payload = parse_json(body)
        if isinstance(payload, dict) and isinstance(payload.get("reason"), str):
            reason = payload["reason"]
    result = await collector.ingestor.call(
        lambda: admin.delete(collector.store, collector.rawlog, measurement_uid, reason))
    if not result.existed and not result.tombstoned and not collector.rawlog.is_deleted(measurement_uid):
        return JSONResponse({"error": "not_found", "detail": "no measurement with this uid"}, status_code=404)
    return JSONResponse({"measurement_uid": measurement_uid, "deleted": True, "rows_removed": result.existed})


@router.post("/admin/reanalyse", summary="Re-derive verdicts from the raw measurements (admin token)",
             responses=_ADMIN_ERRORS, tags=["admin"],
             openapi_extra={"requestBody": {"content": {"application/json": {"schema": {
                 "type": "object", "properties": {
                     "measurement_uid": {"type": "array", "items": {"type": "string"}},
                     "stale": {"type": "boolean", "description": "those analysed by an older analysis version"},
                     "all": {"type": "boolean"},
                     "filters": {"type": "object", "description": "probe_cc, probe_asn, domain, input, "
                                 "test_name, mechanism, fingerprint, category_code, since, until"}}}}}}})
async def admin_reanalyse(request: Request) -> Response:
    collector = _authorise(request)
    body = await read_body(request, ADMIN_REANALYSE_BODY, *_ADMIN)
    payload = parse_json(body) if body.strip() else {}
    if not isinstance(payload, dict):
        raise SubmissionError(400, "invalid_json", "the body must be a JSON object")
    uids = payload.get("measurement_uid") or []
    if isinstance(uids, str):
        uids = [uids]
    if not isinstance(uids, list) or not all(isinstance(u, str) for u in uids):
        raise SubmissionError(400, "invalid_parameter", "measurement_uid must be a list of strings")
    raw_filters = payload.get("filters") or {}
    if not isinstance(raw_filters, dict):
        raise SubmissionError(400, "invalid_parameter", "filters must be an object")
    allowed = {"probe_cc", "probe_asn", "domain", "input", "test_name", "mechanism", "fingerprint", "category_code",
               "since", "until"}
    unknown = set(raw_filters) - allowed
    if unknown or not all(isinstance(v, str) for v in raw_filters.values()):
        raise SubmissionError(400, "invalid_parameter", f"filters take string values for {', '.join(sorted(allowed))}")
    try:
        filters = MeasurementQuery(**raw_filters).filters()
    except QueryError as exc:
        raise SubmissionError(400, "invalid_parameter", str(exc)) from None
    stale, everything = payload.get("stale") is True, payload.get("all") is True
    if not (uids or raw_filters or stale or everything):
        raise SubmissionError(400, "invalid_parameter", "say what to re-analyse: measurement_uid, filters, "
                              "stale or all")
    chosen = admin.selection(uids=uids, filters=filters, stale_only=stale, everything=everything)
    totals = {"selected": 0, "reanalysed": 0, "changed": 0, "missing": 0, "networks_named": 0, "fingerprinted": 0}
    if chosen is not None:
        # A page of uids per call on the writer thread (submissions are written in between), each page asked for
        # after the one before: memory stays a page's however many are selected.
        totals["selected"] = await collector.ingestor.call(lambda: admin.selected(collector.store, chosen))
        after: str | None = ""
        while after is not None:
            def step(after: str = after) -> tuple[str | None, dict[str, int]]:
                return admin.reanalyse_after(collector.store, collector.reader, chosen, after)

            after, done = await collector.ingestor.call(step)
            for key, count in done.items():
                totals[key] += count
    return JSONResponse({**totals, "analysis_version": analysis_version()})


__all__ = ["AGGREGATIONS", "EXPORTS_PER_CLIENT", "HEAD_SCOPE_KEY", "EXPORTS_TOTAL", "aggregate", "csv_text", "measurement_query",
           "measurements_page", "router"]
