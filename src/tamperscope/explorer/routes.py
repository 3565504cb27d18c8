"""The explorer's routes: server-rendered pages, their JSON twins, static files, the sandboxed body view.

Every page is ``GET <path>`` for HTML and ``GET <path>.json`` for the same data
as JSON (`pages.py` builds the data once): ``/`` (twin ``/index.json``),
``/country/{cc}``, ``/network/{asn}``, ``/domain/{domain}``, ``/m/{uid}``,
``/search?…``, ``/api`` (twin: the OpenAPI description). Atom feeds (`feeds.py`): ``/feed.atom?…`` (any
search), ``/changes.atom?…`` (sites blocked and unblocked), ``/findings.atom``.

Templates are Jinja2 with autoescaping on for everything; URLs built from data
go through `seg` (one path segment, percent-encoded, ``/`` included) or `qs`.
The only thing rendered as HTML from a measurement is a captured body, and only
at ``/m/{uid}/body/{n}``, served with a ``sandbox`` Content-Security-Policy into
an ``<iframe sandbox>`` (no scripts, unique origin, no network).

Static files (``/static/...``) are read once; ``plotly.min.js`` comes from the
plotly package itself (offline, no CDN), gzip'd once in memory, and
``plotly.css`` holds the rules plotly.js would otherwise inject inline, which
the CSP refuses (`plotlyjs.py`).
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from tamperscope import __version__
from tamperscope.analysis.confidence import NO_NETWORK
from tamperscope.analysis.report import APP_NAMES, MECHANISM_WORDS, TEST_WORDS, networks_shown, technique
from tamperscope.collector.config import Collector
from tamperscope.explorer import display, feeds, pages, plotlyjs
from tamperscope.explorer.headers import SANDBOX_CSP, not_modified
from tamperscope.model.location import signature_words

HERE = Path(__file__).parent
router = APIRouter(include_in_schema=False)

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(HERE / "templates")),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    finalize=display.finalize,  # every {{ value }}: no control character, right-to-left text marked to isolate
    # The templates go with the code that fills them: all read once, as the server starts, and never again. A
    # template upgraded under a running server (QA: a new field in measurement.html before the code that fills it)
    # made every such page a 500 until a restart.
    auto_reload=False,
    cache_size=-1,
)


def _seg(value: Any) -> str:
    return quote(str(value), safe="")


def _qs(params: dict[str, Any]) -> str:
    return urlencode({k: v for k, v in params.items() if v not in (None, "")})


def _plural(value: Any, one: str, many: str | None = None) -> str:
    """The noun for ``value`` things: "1 country", "2 countries" (``{{ n | num }} {{ n | plural("country",
    "countries") }}``); the lead lines said "1 countries and 1 networks"."""
    return one if value == 1 else many if many is not None else one + "s"


def _num(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}".replace(",", "\u202f")
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _networks(row: Any) -> str:
    """A row's networks (`report.networks_shown`), its count written as `_num` writes numbers."""
    shown = networks_shown(row) if isinstance(row, Mapping) else ""
    return _num(shown) if isinstance(shown, int) else shown.replace(",", "\u202f")


def _attrjson(value: Any) -> str:
    # A plain str (not Markup): autoescaping turns the quotes into entities inside the attribute.
    return orjson.dumps(value, default=str).decode()


def _pct(part: Any, whole: Any) -> str:
    try:
        return f"{100 * float(part) / float(whole):.0f}%" if whole else ""
    except (TypeError, ValueError):
        return ""


def _when(value: Any) -> str:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    return str(value or "").replace("T", " ").removesuffix("Z")


def _technique(value: Any, ech_only: Any = False) -> str:
    return str(technique(value, ech_only) or "")


def _meaning(value: Any) -> str:
    """What a mechanism means, in the report's words ("" for one it has no words for)."""
    return MECHANISM_WORDS.get(value, "") if isinstance(value, str) else ""


def _app_name(test_name: Any) -> str:
    """What a measurement with no input measured: its app or tool ("Signal"), else its test's name."""
    return APP_NAMES.get(test_name, str(test_name)) if isinstance(test_name, str) else ""


def _is_app(test_name: Any) -> bool:
    """An app's or a tool's test (its input, where it has one, is one of its servers: wireguard://198.19.3.40:51820)."""
    return isinstance(test_name, str) and test_name in APP_NAMES


def _test_words(test_name: Any) -> str:
    return TEST_WORDS.get(test_name, "") if isinstance(test_name, str) else ""


def _signature_words(value: Any) -> str:
    return signature_words(value) if isinstance(value, str) else ""


_env.filters.update(seg=_seg, qs=_qs, num=_num, networks=_networks, plural=_plural, attrjson=_attrjson, when=_when,
                    technique=_technique, meaning=_meaning, signature_words=_signature_words,
                    app_name=_app_name, test_words=_test_words, host=display.host)
_env.tests.update(app=_is_app)
_env.globals.update(pct=_pct, version=__version__, no_network=NO_NETWORK, plotly_style_ids=plotlyjs.style_ids,
                    plotly_css=lambda: plotlyjs.stylesheet() is not None)
for _name in _env.list_templates(extensions=["html", "xml"]):  # read now, with the code that fills them
    _env.get_template(_name)


def collector_of(request: Request) -> Collector:
    collector: Collector = request.app.state.collector
    return collector


def wants_html(request: Request) -> bool:
    path = request.url.path
    if path.endswith((".json", ".atom", ".csv")) or path.startswith(("/api/", "/report", "/openapi")):
        return False
    return True


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS), status_code=status,
                    media_type="application/json")


def render(request: Request, template: str, data: dict[str, Any], json_url: str, status: int = 200) -> HTMLResponse:
    """The page: its data's strings shown as `display.shown` shows them, its right-to-left text isolated."""
    context = {**display.shown(data), "json_url": json_url, "path": request.url.path}
    context.setdefault("charts", {})
    context.setdefault("feeds", [])
    return HTMLResponse(display.isolated(_env.get_template(template).render(**context)), status_code=status)


def error_page(request: Request, status: int, detail: str) -> Response:
    titles = {404: "Not found", 422: "Invalid request", 400: "Invalid request", 429: "Too many requests",
              503: "Not yet"}
    data = {"page": "error", "title": titles.get(status, "Error"), "status": status, "detail": detail}
    return render(request, "error.html", data, "/index.json", status)


def _twin(name: str) -> tuple[str, bool]:
    return (name[:-5], True) if name.endswith(".json") else (name, False)


def _page(request: Request, data: dict[str, Any] | None, template: str, path: str, as_json: bool,
          missing: str) -> Response:
    if data is None:
        if as_json:
            return _json({"error": "not_found", "detail": missing}, 404)
        return error_page(request, 404, missing)
    if as_json:
        return _json(data)
    query = request.url.query
    return render(request, template, data, f"{path}.json" + (f"?{query}" if query else ""))


# --------------------------------------------------------------------------- pages


FINDINGS_ON_HOME = 5


def _home(request: Request) -> dict[str, Any]:
    collector = collector_of(request)
    reader = collector.reader
    with reader.bounded(snapshot=True):  # its totals and tables from one moment of the store
        data = pages.home(reader)
    data["findings"] = [f.public() for f in collector.findings.all()[:FINDINGS_ON_HOME]]
    data["feeds"] = [_feed("anomalies", "/feed.atom", {"outcome": "anomaly"}),
                     _feed("confirmed blocking", "/feed.atom", {"outcome": "confirmed"}),
                     _feed("sites blocked and unblocked", "/changes.atom", {}),
                     _feed("findings", "/findings.atom", {})]
    return data


def _feed(label: str, path: str, params: dict[str, Any]) -> dict[str, str]:
    """A feed the page links (in its head, for readers to discover, and at its foot)."""
    if path == "/changes.atom":
        title = "Sites blocked and unblocked " + feeds.selection_words(params, outcome=False)
    elif path == "/findings.atom":
        title = "Findings"
    elif path == "/new-blockpages.atom":
        title = "Blockpages no fingerprint knows " + feeds.selection_words(params, outcome=False)
    else:
        title = feeds.selection_words(params)
    query = _qs(params)
    return {"label": label, "title": title.strip(), "href": path + (f"?{query}" if query else "")}


def _area(request: Request, kind: str, key: str) -> dict[str, Any] | None:
    collector = collector_of(request)
    reader = collector.reader
    with reader.bounded(snapshot=True):  # a country can be the whole store: interrupted past a bound; one moment
        data = pages.area(reader, kind, key)
    if data is not None:  # the findings about this country, network or site
        data["findings"] = [f.public() for f in collector.findings.about(pages.AREAS[kind], key)]
        data["feeds"] = [_feed("anomalies", "/feed.atom", {**data["filter"], "outcome": "anomaly"}),
                         _feed("sites blocked and unblocked", "/changes.atom", data["filter"]),
                         _feed("new blockpages", "/new-blockpages.atom", data["filter"])]
    return data


@router.get("/", response_class=HTMLResponse)
def home(request: Request) -> Response:
    return _page(request, _home(request), "home.html", "/index", False, "")


@router.get("/index.json")
def home_json(request: Request) -> Response:
    return _json(_home(request))


@router.get("/country/{cc}")
def country(request: Request, cc: str) -> Response:
    key, as_json = _twin(cc)
    key = key.upper() if key.isascii() else key  # "ır" upper-cased is "IR": a page of Iran at another address
    data = _area(request, "country", key)
    return _page(request, data, "area.html", f"/country/{_seg(key)}", as_json,
                 "no measurements from this country")


@router.get("/network/{asn}")
def network(request: Request, asn: str) -> Response:
    key, as_json = _twin(asn)
    key = key.upper() if key.isascii() else key
    if key.isdigit() and key.isascii():
        key = "AS" + key
    data = _area(request, "network", key)
    return _page(request, data, "area.html", f"/network/{_seg(key)}", as_json, "no measurements from this network")


@router.get("/domain/{domain}")
def domain(request: Request, domain: str) -> Response:
    key, as_json = _twin(domain)
    data = _area(request, "domain", key.lower())
    return _page(request, data, "area.html", f"/domain/{_seg(key.lower())}", as_json,
                 "no measurements of this domain")


@router.get("/m/{uid}")
def measurement(request: Request, uid: str) -> Response:
    key, as_json = _twin(uid)
    reader = collector_of(request).reader
    data = pages.measurement(reader, key) if len(key) <= 200 else None
    if data is None and len(key) <= 200 and (why := reader.unreadable(key)) is not None:
        # in the store, its raw bytes gone: say so, not "no such measurement"
        return _json({"error": "raw_unreadable", "detail": why}, 500) if as_json else error_page(request, 500, why)
    if data is None and len(key) <= 200 and (other := reader.stored_as(key)) is not None:
        # the same measurement, stored under the uid of its first reading (another country)
        return RedirectResponse(f"/m/{_seg(other)}{'.json' if as_json else ''}", status_code=307)
    if data is None and len(key) <= 200 and collector_of(request).ingestor.unsettled_raw(key) is not None:
        # acknowledged (its receipt names this page), its rows not yet in the tables: a moment, not "unknown"
        why = "this measurement was received and is being stored: it shows here in a moment"
        answer = _json({"error": "being_stored", "detail": why}, 503) if as_json else error_page(request, 503, why)
        answer.headers["Retry-After"] = "1"
        return answer
    return _page(request, data, "measurement.html", f"/m/{_seg(key)}", as_json, "no measurement with this uid")


@router.get("/m/{uid}/body/{index}")
def captured_body(request: Request, uid: str, index: int) -> Response:
    """One captured page, for the sandboxed frame: scripts cannot run, nothing can be fetched."""
    text = pages.body(collector_of(request).reader, uid, index)
    if text is None:
        return error_page(request, 404, "no such captured body")
    return Response(text.encode("utf-8"), media_type="text/html; charset=utf-8", headers={
        "Content-Security-Policy": SANDBOX_CSP, "X-Frame-Options": "SAMEORIGIN",
        "Cache-Control": "no-store"})


MAX_VALUE = 8192  # characters in one filter's value, as the API's (an input, a URL, is the longest)


class _TooLong(Exception):
    """A filter's value over `MAX_VALUE`: the page or feed answers 400, never the whole store unfiltered."""


def _given(request: Request, names: tuple[str, ...], *, strip: bool = True) -> dict[str, str]:
    """The query's values of ``names`` (stripped unless told not to); `_TooLong` for one over `MAX_VALUE`."""
    params = {}
    for k, v in request.query_params.items():
        if k in names:
            if len(v) > MAX_VALUE:
                raise _TooLong(f"{k}: at most {MAX_VALUE} characters")
            params[k] = v.strip() if strip else v
    return params


def _too_long(request: Request, exc: _TooLong, as_json: bool) -> Response:
    if as_json:
        return _json({"error": "invalid_parameter", "detail": str(exc)}, 400)
    return error_page(request, 400, str(exc))


SEARCH_FIELDS = ("probe_cc", "probe_asn", "test_name", "domain", "input", "mechanism", "fingerprint", "category_code",
                 "outcome", "since", "until", "report_id", "limit", "page")


def _search(request: Request, as_json: bool) -> Response:
    from tamperscope.collector.api import measurements_page
    from tamperscope.collector.queries import MeasurementQuery, QueryError

    collector = collector_of(request)
    try:
        params = _given(request, SEARCH_FIELDS)
    except _TooLong as exc:
        return _too_long(request, exc, as_json)
    query = MeasurementQuery(limit=pages.SEARCH_LIMIT[0])  # the empty page's, for a search refused
    try:
        query = pages.search_query(params)
        with collector.reader.bounded(snapshot=True):
            result = measurements_page(collector, query, "", "/api/v1/measurements")
        problem = None
    except QueryError as exc:
        problem = str(exc)
        result = {"metadata": {"count": 0, "current_page": 1, "limit": query.limit, "offset": query.offset,
                               "pages": 1, "next_url": None, "query_time": 0.0}, "results": []}
    if as_json:
        if problem:
            return _json({"error": "invalid_parameter", "detail": problem}, 400)
        return _json(result)
    page_no = query.offset // query.limit + 1
    data = {
        "page": "search", "title": "Search measurements", "params": params, "problem": problem,
        "choices": pages.search_choices(collector.reader), "outcomes": pages.OUTCOMES,
        "result": result, "page_no": page_no,
        # the exports take the API's parameters: the form's outcome as its flags, every page, not this one
        "export_params": {k: v for k, v in query.params().items() if k not in ("limit", "offset")},
        "prev_params": {**params, "page": page_no - 1} if page_no > 1 else None,
        "next_params": {**params, "page": page_no + 1} if result["metadata"].get("next_url") else None,
        "feeds": [] if problem else [_feed("this search", "/feed.atom",
                                           {k: v for k, v in params.items() if k not in ("page", "limit")})],
    }
    query_text = request.url.query
    return render(request, "search.html", data, "/search.json" + (f"?{query_text}" if query_text else ""),
                  400 if problem else 200)


@router.get("/search")
def search(request: Request) -> Response:
    return _search(request, False)


@router.get("/search.json")
def search_json(request: Request) -> Response:
    return _search(request, True)


def _chart(request: Request, as_json: bool) -> Response:
    try:
        params = _given(request, pages.CHART_FIELDS, strip=False)
    except _TooLong as exc:
        return _too_long(request, exc, as_json)
    reader = collector_of(request).reader
    with reader.bounded(snapshot=True):
        data = pages.chart(reader, params)
    if as_json:
        if data["problem"]:
            return _json({"error": "invalid_parameter", "detail": data["problem"]}, 400)
        return _json({k: v for k, v in data.items() if k not in ("choices", "axes", "grains")})
    query_text = request.url.query
    return render(request, "chart.html", data, "/chart.json" + (f"?{query_text}" if query_text else ""),
                  400 if data["problem"] else 200)


@router.get("/chart")
def chart(request: Request) -> Response:
    """OONI Explorer's MAT: a selection counted by one or two axes, as bars stacked by outcome, and tabled."""
    return _chart(request, False)


@router.get("/chart.json")
def chart_json(request: Request) -> Response:
    return _chart(request, True)


def _new_blockpages(request: Request, kind: str) -> Response:
    from tamperscope.analysis.sheets import csv_text
    from tamperscope.analysis.unrecognised import CSV_HEADER
    from tamperscope.collector.api import base_url

    try:
        params = _given(request, pages.NEW_BLOCKPAGE_FIELDS, strip=False)
    except _TooLong as exc:
        return _too_long(request, exc, kind != "html")
    reader = collector_of(request).reader
    with reader.bounded(snapshot=True):
        data = pages.new_blockpages(reader, params, base_url(request))
    if data["problem"] and kind != "html":
        return _json({"error": "invalid_parameter", "detail": data["problem"]}, 400)
    if kind == "json":
        return _json({k: v for k, v in data.items() if k != "choices"})
    if kind == "atom":
        base = base_url(request)
        query = _qs(data["data_params"])
        words = feeds.selection_words(data["data_params"], outcome=False)
        page_url = f"{base}/new-blockpages" + (f"?{query}" if query else "")
        groups = sorted(data["groups"], key=lambda g: (g["last_seen"] or "", g["key"]), reverse=True)
        return _atom(request, feeds.Feed(
            id=f"{base}/new-blockpages.atom" + (f"?{query}" if query else ""),
            title="Blockpages no fingerprint knows" + (f" {words}" if words else "") + " · tamperscope",
            subtitle="Pages served instead of sites that no fingerprint recognises, one entry per template, the "
                     "latest seen first, each with a proposed fingerprint.",
            self_url=f"{base}/new-blockpages.atom" + (f"?{query}" if query else ""), page_url=page_url,
            entries=feeds.template_entries(groups[:feeds.MAX_ENTRIES], base, page_url)))
    if kind == "csv":
        rows = [g["fingerprint"] for g in data["groups"] if g["fingerprint"]]
        return Response(csv_text(rows, CSV_HEADER), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="new-blockpages.csv"'})
    data["feeds"] = [] if data["problem"] else [_feed("new blockpages", "/new-blockpages.atom",
                                                      data["data_params"])]
    query_text = request.url.query
    return render(request, "new_blockpages.html", data,
                  "/new-blockpages.json" + (f"?{query_text}" if query_text else ""), 400 if data["problem"] else 200)


@router.get("/new-blockpages")
def new_blockpages(request: Request) -> Response:
    """Blockpages no fingerprint recognises, grouped by template, each with a proposed fingerprint."""
    return _new_blockpages(request, "html")


@router.get("/new-blockpages.json")
def new_blockpages_json(request: Request) -> Response:
    return _new_blockpages(request, "json")


@router.get("/new-blockpages.atom")
def new_blockpages_atom(request: Request) -> Response:
    """The templates, as an Atom feed: a new one is a new entry."""
    return _new_blockpages(request, "atom")


@router.get("/new-blockpages.csv")
def new_blockpages_csv(request: Request) -> Response:
    """The proposed fingerprints, as rows of Citizen Lab's http.csv."""
    return _new_blockpages(request, "csv")


@router.get("/findings")
def findings(request: Request) -> Response:
    """Researchers' findings (``serve --findings DIR``), newest first."""
    return _page(request, _finding_list(request), "findings.html", "/findings", False, "")


def _finding_list(request: Request) -> dict[str, Any]:
    data = pages.finding_list(collector_of(request).findings)
    data["feeds"] = [_feed("findings", "/findings.atom", {})]
    return data


@router.get("/findings.json")
def findings_json(request: Request) -> Response:
    return _json(_finding_list(request))


@router.get("/findings/{finding_id}")
def finding(request: Request, finding_id: str) -> Response:
    """One finding, its evidence counted now."""
    key, as_json = _twin(finding_id)
    collector = collector_of(request)
    found = collector.findings.get(key) if len(key) <= 80 else None
    data = None
    if found is not None:
        with collector.reader.bounded(snapshot=True):
            data = pages.finding(collector.reader, found)
    return _page(request, data, "finding.html", f"/findings/{_seg(key)}", as_json, "no such finding")


# --------------------------------------------------------------------------- feeds


FEED_FIELDS = tuple(f for f in SEARCH_FIELDS if f != "page")
CHANGE_FIELDS = ("probe_cc", "probe_asn", "domain", "test_name", "category_code", "limit")


def _feed_params(request: Request, names: tuple[str, ...]) -> dict[str, str]:
    """A feed's filters, in a fixed order (its id); `_TooLong` for a value over `MAX_VALUE`."""
    return {k: v for k, v in sorted(_given(request, names).items()) if v}


def _entries(params: dict[str, str]) -> int:
    """A feed's ``limit``: `feeds.DEFAULT_ENTRIES` when not given, at most `feeds.MAX_ENTRIES` (more is taken as
    that); QueryError for one that is no whole number from 1."""
    return min(pages.whole_number(params.get("limit"), "limit", feeds.DEFAULT_ENTRIES), feeds.MAX_ENTRIES)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _atom(request: Request, feed: feeds.Feed) -> Response:
    """The feed, with an ETag: a reader that polls gets 304 while nothing changed. An empty feed's ``updated`` is
    the time it is asked for, so its tag is that of the feed at a fixed time: else every second changed it."""
    body = feeds.atom(feed)
    tagged = body if feed.entries else feeds.atom(feed, now=_EPOCH)
    etag = '"' + hashlib.sha256(tagged).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": "public, max-age=300"}
    if not_modified(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=feeds.MEDIA_TYPE, headers=headers)


def _area_url(base: str, params: dict[str, str]) -> str:
    """The explorer's page of a selection: a country's, a network's or a site's when it names one alone."""
    named = [k for k in ("probe_cc", "probe_asn", "domain") if params.get(k)]
    rest = [k for k in params if k not in ("limit", "outcome") and k not in named]
    if len(named) == 1 and not rest:
        kind = {"probe_cc": "country", "probe_asn": "network", "domain": "domain"}[named[0]]
        return f"{base}/{kind}/{_seg(params[named[0]])}"
    query = _qs({k: v for k, v in params.items() if k != "limit"})
    return f"{base}/search" + (f"?{query}" if query else "")


@router.get("/feed.atom")
def measurement_feed(request: Request) -> Response:
    """Any search, to follow: its newest measurements (the search page's fields; ``limit`` entries, at most 200)."""
    from tamperscope.collector.api import base_url
    from tamperscope.collector.queries import QueryError, list_measurements

    reader = collector_of(request).reader
    try:
        params = _feed_params(request, FEED_FIELDS)
        query = replace(pages.search_query(params), limit=_entries(params), offset=0)
        with reader.bounded(snapshot=True):
            rows, _ = list_measurements(reader, query, count=False)
    except (QueryError, _TooLong) as exc:
        return _json({"error": "invalid_parameter", "detail": str(exc)}, 400)
    base = base_url(request)
    words = feeds.selection_words(params)
    feed = feeds.Feed(id=f"{base}/feed.atom?{_qs(params)}".rstrip("?"), title=f"{words} · tamperscope",
                      subtitle=f"{words}: the newest {query.limit}, newest first.",
                      self_url=f"{base}/feed.atom?{_qs(params)}".rstrip("?"),
                      page_url=f"{base}/search?{_qs({k: v for k, v in params.items() if k != 'limit'})}".rstrip("?"),
                      entries=feeds.measurement_entries(rows, base))
    return _atom(request, feed)


@router.get("/changes.atom")
def change_feed(request: Request) -> Response:
    """When a site became blocked, or unblocked, on a network: the latest first (``limit`` entries, at most 200)."""
    from tamperscope.analysis import aggregates
    from tamperscope.collector.api import base_url
    from tamperscope.collector.queries import MeasurementQuery, QueryError

    reader = collector_of(request).reader
    try:
        params = _feed_params(request, CHANGE_FIELDS)
        filters = MeasurementQuery(probe_cc=params.get("probe_cc"), probe_asn=params.get("probe_asn"),
                                   domain=params.get("domain"), test_name=params.get("test_name"),
                                   category_code=params.get("category_code")).filters()
        with reader.bounded(snapshot=True):
            rows = aggregates.changes(reader, filters, limit=_entries(params))  # type: ignore[arg-type]
    except (QueryError, _TooLong) as exc:
        return _json({"error": "invalid_parameter", "detail": str(exc)}, 400)
    base = base_url(request)
    words = feeds.selection_words(params, outcome=False)
    title = "Sites blocked and unblocked" + (f" {words}" if words else "")
    feed = feeds.Feed(id=f"{base}/changes.atom?{_qs(params)}".rstrip("?"), title=f"{title} · tamperscope",
                      subtitle=("When a site became blocked on a network (two anomalies or more in a row after a "
                                "measurement that was fine), or unblocked (two fine measurements or more after "
                                "such a run), the latest first."),
                      self_url=f"{base}/changes.atom?{_qs(params)}".rstrip("?"), page_url=_area_url(base, params),
                      entries=feeds.change_entries(rows, base))
    return _atom(request, feed)


@router.get("/findings.atom")
def finding_feed(request: Request) -> Response:
    """The researchers' findings, newest first."""
    from tamperscope.collector.api import base_url

    base = base_url(request)
    found = collector_of(request).findings.all()[:feeds.MAX_ENTRIES]
    feed = feeds.Feed(id=f"{base}/findings.atom", title="Findings · tamperscope",
                      subtitle="What researchers concluded from the measurements, newest first.",
                      self_url=f"{base}/findings.atom", page_url=f"{base}/findings",
                      entries=feeds.finding_entries(found, base))
    return _atom(request, feed)


@router.get("/api")
def api_page(request: Request) -> Response:
    spec = request.app.openapi()
    endpoints = []
    for path, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            endpoints.append({"method": method.upper(), "path": path, "summary": op.get("summary", ""),
                              "parameters": [p.get("name") for p in op.get("parameters", [])]})
    data = {"page": "api", "title": "API", "endpoints": endpoints}
    return render(request, "api.html", data, "/openapi.json")


@router.get("/api.json")
def api_json(request: Request) -> Response:
    return _json(request.app.openapi())


# --------------------------------------------------------------------------- static files


class _Static:
    """One static file in memory: bytes, gzip'd bytes, ETag."""

    def __init__(self, data: bytes, media_type: str, max_age: int) -> None:
        self.data = data
        self.gzipped = gzip.compress(data, 6) if len(data) > 1024 else None
        self.etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        self.media_type = media_type
        self.max_age = max_age

    def response(self, request: Request) -> Response:
        headers = {"ETag": self.etag, "Cache-Control": f"public, max-age={self.max_age}", "Vary": "Accept-Encoding"}
        if not_modified(request.headers.get("if-none-match"), self.etag):
            return Response(status_code=304, headers=headers)
        if self.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
            return Response(self.gzipped, media_type=self.media_type, headers={**headers, "Content-Encoding": "gzip"})
        return Response(self.data, media_type=self.media_type, headers=headers)


_STATIC: dict[str, _Static] = {}
_STATIC_LOCK = threading.Lock()
_MEDIA = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml",
          ".png": "image/png", ".ico": "image/x-icon"}


def plotly_js() -> bytes:
    return plotlyjs.bundle().encode("utf-8")


def _static_path(name: str) -> Path | None:
    """The file ``name`` names in ``static/``, or None: a name the file system refuses (a NUL byte,
    too long) is simply not there, whatever error the operating system would raise."""
    if not name or len(name) > 255 or any(ch in name for ch in "\x00/\\"):
        return None
    try:
        path = (HERE / "static" / name).resolve()
        if path.parent != (HERE / "static").resolve() or path.suffix not in _MEDIA or not path.is_file():
            return None
    except (OSError, ValueError):
        return None
    return path


def static_file(name: str) -> _Static | None:
    with _STATIC_LOCK:
        found = _STATIC.get(name)
        if found is not None:
            return found
        if name == "plotly.min.js":
            found = _Static(plotly_js(), _MEDIA[".js"], 86400)
        elif name == "plotly.css" and plotlyjs.stylesheet() is not None:
            found = _Static(str(plotlyjs.stylesheet()).encode("utf-8"), _MEDIA[".css"], 86400)
        else:
            path = _static_path(name)
            if path is None:
                return None
            found = _Static(path.read_bytes(), _MEDIA[path.suffix], 3600)
        _STATIC[name] = found
        return found


@router.get("/static/{name}")
def static(request: Request, name: str) -> Response:
    found = static_file(name)
    if found is None:
        return Response(b"not found", status_code=404, media_type="text/plain")
    return found.response(request)


@router.get("/favicon.ico")
def favicon() -> Response:
    return Response(status_code=204)


__all__ = ["error_page", "render", "router", "static_file", "wants_html"]
