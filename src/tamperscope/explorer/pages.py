"""What each explorer page shows, as data: one function per page, one dict per call.

The HTML page renders the dict through a template; the JSON twin (the same
path with ``.json``) returns the same dict, so what a person sees and what a
script reads never differ. Each function returns None when there is nothing
to show (an unknown country, network, domain or measurement: 404).

Pages:

* `home`: totals, recent anomalies, countries, networks, most blocked domains, sites by category (from
  the store's test lists), tests (apps and circumvention tools too), the messaging apps network by network,
  mechanisms, the timeline;
* `area` (country, network, domain): the same, narrowed, plus what changed
  (sites blocked or unblocked on a network), equipment signatures and located hops;
* `measurement`: the envelope, the verdict and the evidence (`evidence.py`);
* `search`: filters in, one page of OONI-shaped results out;
* `chart`: OONI Explorer's Measurement Aggregation Toolkit (MAT): the measurements of a selection counted by one
  or two axes (`aggregates.counts_by`, as ``/api/v1/aggregation``), drawn as bars stacked by outcome, one row of
  bars per value of the second axis, and tabled, each row linking its measurements.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from tamperscope.analysis import aggregates, censoredplanet, unrecognised
from tamperscope.analysis.aggregates import Filters
from tamperscope.analysis.confidence import CONFIRM_MIN, NO_NETWORK, group_key_sql
from tamperscope.analysis.report import (
    TEST_WORDS,
    apps_in_words,
    blockpages_in_words,
    categories_in_words,
    category_countries_in_words,
    confirmed_split,
    host_shown,
    networks_in_words,
    rules_in_words,
)
from tamperscope.collector.findings import EVIDENCE_KEYS, Finding, Findings
from tamperscope.collector.queries import (
    MeasurementQuery,
    QueryError,
    Reader,
    hops,
    known_values,
    list_measurements,
    ooni_row,
    ooni_slice,
)
from tamperscope.explorer import charts
from tamperscope.explorer.display import Whole
from tamperscope.explorer.evidence import captured_body, evidence
from tamperscope.model.categories import category_label

RECENT = 15
TOP = 25
MAX_RAW_SHOWN = 256 * 1024      # bytes of raw JSON printed on the measurement page


def _agg(reader: Reader, name: str, filters: Filters, **kwargs: Any) -> list[dict[str, Any]]:
    fn = aggregates.AGGREGATES[name]
    return fn(reader, filters, **kwargs)


def _recent(reader: Reader, query: MeasurementQuery) -> list[dict[str, Any]]:
    rows, _ = list_measurements(reader, query, count=False)
    return [ooni_row(r) for r in rows]


def _tests(reader: Reader, filters: Filters, where: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Per nettest, most anomalous first, with what it checks and a link to its anomalies: apps and
    circumvention tools (telegram, tor, psiphon) have no domain, so this is where they show."""
    rows = _agg(reader, "per_test", filters, limit=TOP)
    for row in rows:
        row["checks"] = TEST_WORDS.get(str(row["test_name"]), "")
        row["search"] = "/search?" + urlencode({**(where or {}), "test_name": row["test_name"], "outcome": "anomaly"})
    return rows


def _categories(reader: Reader, filters: Filters, where: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Per Citizen Lab category of the sites measured (`report.categories_in_words`; empty when the store holds no
    test list), each category with a link to its anomalies."""
    rows = categories_in_words(reader, filters)
    for row in rows:  # the sites no list names cannot be searched for
        row["search"] = None if row["category_code"] is None else "/search?" + urlencode(
            {**(where or {}), "category_code": row["category_code"], "outcome": "anomaly"})
    return rows


def _apps(reader: Reader, filters: Filters) -> list[dict[str, Any]]:
    """Per messaging app or circumvention tool and network: what the latest measurement said, and when it was last
    reached (`report.apps_in_words`), each with a link to its measurements there."""
    rows = apps_in_words(reader, filters, TOP)
    for row in rows:
        row["search"] = "/search?" + urlencode({"test_name": row["test_name"], "probe_asn": row["probe_asn"]})
    return rows


def _changes(reader: Reader, filters: Filters) -> list[dict[str, Any]]:
    """When sites became blocked or unblocked on a network, latest first (`aggregates.changes`). Only on
    the pages of one country, network or domain: over the whole store it is the report's job."""
    rows = aggregates.changes(reader, filters, limit=TOP)  # type: ignore[arg-type]
    for row in rows:
        row["search"] = "/search?" + urlencode({"domain": row["domain"], "probe_asn": row["probe_asn"],
                                                "since": str(row["since"])[:10]})
    return rows


def home(reader: Reader) -> dict[str, Any]:
    f = Filters()
    timeline = _agg(reader, "timeline", f)
    mechanisms = _agg(reader, "per_mechanism", f)
    totals = aggregates.totals(reader, f)  # type: ignore[arg-type]
    return {
        "page": "home",
        "title": "Network interference, measured",
        "totals": totals,
        "confirmed_split": confirmed_split(totals),
        "networks_words": networks_in_words(totals),
        "recent_anomalies": _recent(reader, MeasurementQuery(anomaly=True, limit=RECENT)),
        "countries": _agg(reader, "per_country", f),
        "networks": _agg(reader, "per_network", f, limit=TOP),
        # "Most blocked sites": a site measured and never found blocked is no such site (its own page says so)
        "domains": [d for d in _agg(reader, "per_domain", f, limit=TOP) if d["anomaly_count"]],
        "categories": _categories(reader, f),
        "tests": _tests(reader, f),
        "apps": _apps(reader, f),
        "mechanisms": mechanisms,
        "charts": {"timeline": charts.timeline(timeline), "mechanisms": charts.mechanisms(mechanisms)},
    }


AREAS = {"country": "probe_cc", "network": "probe_asn", "domain": "domain"}


def area(reader: Reader, kind: str, key: str) -> dict[str, Any] | None:
    """A country (``probe_cc``), network (``probe_asn``) or domain page."""
    column = AREAS[kind]
    f = Filters(**{column: key})
    totals = aggregates.totals(reader, f)  # type: ignore[arg-type]
    if not totals or not totals.get("measurement_count"):
        return None
    timeline = _agg(reader, "timeline", f)
    mechanisms = _agg(reader, "per_mechanism", f)
    area: dict[str, Any] = {column: key}  # a column named at run time
    query = MeasurementQuery(**area, limit=RECENT)
    # a site's name beyond ASCII also in IDNA: аррӏе.com (xn--80ak6aa92e.com) is not apple.com
    names = {"country": f"Country {key}", "network": f"Network {key}", "domain": host_shown(key)}
    page: dict[str, Any] = {
        "page": kind,
        "key": key,
        "title": names[kind],
        "filter": {column: key},
        "totals": totals,
        "confirmed_split": confirmed_split(totals),
        "mechanisms": mechanisms,
        "signatures": _agg(reader, "signatures", f, limit=TOP),
        "blockpages": blockpages_in_words(reader, f, TOP),
        "rules": rules_in_words(reader, f, TOP),
        "hops": hops(reader, f),
        "recent_anomalies": _recent(reader, MeasurementQuery(**area, anomaly=True, limit=RECENT)),
        "recent": _recent(reader, query),
        "changes": _changes(reader, f),
        "charts": {"timeline": charts.timeline(timeline), "mechanisms": charts.mechanisms(mechanisms)},
    }
    if kind == "network":  # its name as the latest measurement gives it; its country as the networks' tables do
        first = page["recent"][0] if page["recent"] else {}
        row = next(iter(_agg(reader, "per_network", f, limit=1)), {})
        page["network_name"] = first.get("probe_network_name") or row.get("probe_network_name")
        page["probe_cc"] = row.get("probe_cc") or first.get("probe_cc")
    if kind == "domain":  # the site's category, as each country's list has it (most often one for all)
        page["categories"] = category_countries_in_words(reader, f)
    else:
        page["domains"] = _agg(reader, "per_domain", f, limit=TOP)
        page["categories"] = _categories(reader, f, {column: key})
        page["tests"] = _tests(reader, f, {column: key})
        page["apps"] = _apps(reader, f)
    if kind != "network":
        page["networks"] = _agg(reader, "per_network", f, limit=TOP)
    return page


def _stored(reader: Reader, uid: str) -> tuple[bytes, Any, dict[str, Any]] | None:
    """A stored measurement's raw bytes, as it was published (parsed), and as the analysis judged it (a line of
    Censored Planet's read as a measurement: analysis/censoredplanet.py, the published line itself otherwise);
    None if there is none (or it is no object). Parsed once but for those lines: 5 MiB of small objects take
    a third of a second to parse, and a page view parsed them three times."""
    raw = reader.raw(uid)
    if raw is None:
        return None
    try:
        published = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    m = censoredplanet.as_measurement(orjson.loads(raw)) if censoredplanet.looks_like(published) else published
    return (raw, published, m) if isinstance(m, dict) else None


def measurement(reader: Reader, uid: str) -> dict[str, Any] | None:
    stored = _stored(reader, uid)
    if stored is None:
        return None
    raw, published, m = stored
    rows = reader.rows(
        """SELECT v.*, m.report_id FROM verdicts v JOIN measurements m USING (measurement_uid)
           WHERE v.measurement_uid = ?""", [uid])
    verdict = rows[0] if rows else {}
    converted = published is not m  # shown as it came, not as the analysis read it
    pretty = orjson.dumps(published, option=orjson.OPT_INDENT_2)
    env_keys = ("test_name", "test_version", "input", "probe_cc", "probe_asn", "probe_network_name",
                "measurement_start_time", "report_id", "software_name", "software_version", "resolver_ip",
                "test_runtime")
    envelope = {k: m.get(k) for k in env_keys}
    if converted:  # the line names no network: the one the analysis found for its vantage (analyze --asn-table)
        envelope.update({k: verdict[k] for k in ("probe_asn", "probe_network_name") if verdict.get(k)})
    # the country and network as the store has them (and the uid, the listings and the links): a value the
    # measurement wrote that is none ("<s", "AS<script>") was stored as ZZ or AS0; what it wrote is kept beside
    written = {k: envelope[k] for k in ("probe_cc", "probe_asn")
               if isinstance(verdict.get(k), str) and verdict[k] and envelope.get(k) != verdict[k]}
    if written:
        envelope.update({k: verdict[k] for k in written}, as_written=written)
    annotations = m.get("annotations")
    return {
        "page": "measurement",
        "title": f"{m.get('test_name')} · {m.get('input') or m.get('probe_asn')}",
        "measurement_uid": uid,
        "envelope": envelope,
        # made by `tamperscope run --recheck`: a second measurement of an input the first found blocked or failing
        "recheck": isinstance(annotations, dict) and annotations.get("recheck") == "true",
        "support": support(reader, uid, verdict),
        "domain": verdict.get("domain"),
        "evidence": evidence(m, {k: verdict.get(k) for k in ("blocking", "accessible", "mechanism", "confidence",
                                                             "status", "outcome", "evidence", "fingerprints")}
                             if verdict else None),
        "raw_size": len(raw),
        "converted": converted,
        # the pages Satellite fetched from the line's answers (its blockpages.json), joined to the line by analyze
        "joined_pages": len(published[censoredplanet.PAGES]) if converted and isinstance(
            published, dict) and isinstance(published.get(censoredplanet.PAGES), list) else 0,
        # a Hyperquack v1 line's protocol, which only its scan's name gave (added by analyze)
        "added_service": published.get(censoredplanet.SERVICE) if converted and isinstance(published, dict)
        and isinstance(published.get(censoredplanet.SERVICE), str) else None,
        # a Satellite v1 line's scan, whose name alone gave its time (added by analyze)
        "added_scan": published.get(censoredplanet.SCAN) if converted and isinstance(published, dict)
        and isinstance(published.get(censoredplanet.SCAN), str) else None,
        # where a Satellite v1 line's resolver is, from its scan's tagged_resolvers.json (added by analyze)
        "added_place": _added_place(published) if converted else None,
        "raw_pretty": Whole(pretty[:MAX_RAW_SHOWN].decode("utf-8", "replace")),
        "raw_cut": len(pretty) > MAX_RAW_SHOWN,
        "unknown_page": _unknown_page(raw, verdict, m),
    }


def support(reader: Reader, uid: str, verdict: dict[str, Any]) -> dict[str, Any] | None:
    """Why an anomaly is, or is not yet, confirmed (`analysis.confidence`): a blockpage fingerprint, and the
    anomalies of its group (the same test, input, network, transport and mechanism) with the search that lists
    them. None for a verdict that is no anomaly."""
    if verdict.get("outcome") not in ("anomaly", "confirmed"):
        return None
    asn = verdict.get("probe_asn")
    key = group_key_sql("v.test_name", "coalesce(v.input, '')", "v.probe_asn", "v.transport", "v.mechanism")
    rows = [] if asn == NO_NETWORK else reader.rows(
        f"SELECT g.anomalies FROM verdicts v JOIN anomaly_groups g ON g.gkey = {key} WHERE v.measurement_uid = ?",
        [uid])
    count = int(rows[0]["anomalies"]) if rows else None
    query = {k: verdict.get(k) for k in ("test_name", "input", "probe_asn", "mechanism") if verdict.get(k)}
    return {"fingerprint": bool(verdict.get("fingerprints")), "count": count, "min": CONFIRM_MIN,
            "no_network": asn == NO_NETWORK, "network": asn, "mechanism": verdict.get("mechanism"),
            "href": "/search?" + urlencode({**query, "outcome": "anomaly"}) if count and count > 1 else None}


def _added_place(line: Any) -> str | None:
    """The country name (else code) analyze added to a Satellite v1 line (`censoredplanet.LOCATION`), or None."""
    place = line.get(censoredplanet.LOCATION) if isinstance(line, dict) else None
    if not isinstance(place, dict):
        return None
    named = place.get("country_name") or place.get("country_code")
    return named[:100] if isinstance(named, str) else None  # as analyze keeps it (countries.MAX_NAME): a line may lie


def _unknown_page(raw: bytes, verdict: dict[str, Any], m: dict[str, Any]) -> dict[str, Any] | None:
    """The page a web_connectivity measurement got instead of its site when no fingerprint knows it (as
    ``/new-blockpages`` reads it): its template's key, for the link to its group and proposed fingerprint."""
    if verdict.get("test_name") not in ("web_connectivity", "remote_web") or verdict.get("fingerprints") or not (
            verdict.get("mechanism") in unrecognised.MECHANISMS and verdict.get("outcome") in ("anomaly", "confirmed")
            or verdict.get("outcome") == "ok"):
        return None
    seen = unrecognised.page_of(raw, verdict, m)
    if seen is None:
        return None
    return {"key": unrecognised.shape(seen.text, seen.domain), "title": seen.title,
            "accessible": seen.mechanism == unrecognised.ACCESSIBLE,
            "href": "/new-blockpages?" + urlencode({"domain": seen.domain}) if seen.domain else "/new-blockpages"}


def body(reader: Reader, uid: str, index: int) -> str | None:
    """The text of one captured response body (for the sandboxed view): that body alone is decoded,
    not the whole page's evidence."""
    stored = _stored(reader, uid)
    return None if stored is None else captured_body(stored[2], index)


OUTCOMES = ("", "anomaly", "confirmed", "failure", "ok")


SEARCH_LIMIT = (50, 1000)   # the search's rows per page: by default, at most (more is taken as the most)
SEARCH_PAGES = 100_000      # pages at most


def search_query(params: dict[str, str]) -> MeasurementQuery:
    """The search form's fields → a query (``outcome`` is the form's one choice among the flags). QueryError, in
    words, for an outcome that is none of `OUTCOMES`, a ``limit`` or ``page`` that is no whole number from 1 (a
    ``limit`` over the most is taken as the most, as the docs say)."""
    outcome = params.get("outcome", "")
    if outcome not in OUTCOMES:
        raise QueryError(f"outcome must be one of {', '.join(o for o in OUTCOMES if o)} (or none: every outcome)")
    flags: dict[str, Any] = {}
    if outcome == "anomaly":
        flags["anomaly"] = True
    elif outcome == "confirmed":
        flags["confirmed"] = True
    elif outcome == "failure":
        flags["failure"] = True
    elif outcome == "ok":
        flags.update(anomaly=False, failure=False)
    names = ("probe_cc", "probe_asn", "test_name", "domain", "input", "mechanism", "fingerprint", "category_code",
             "since", "until", "report_id")
    fields: dict[str, Any] = {k: (params.get(k) or None) for k in names}
    limit = min(whole_number(params.get("limit"), "limit", SEARCH_LIMIT[0]), SEARCH_LIMIT[1])
    page = whole_number(params.get("page"), "page", 1)
    if page > SEARCH_PAGES:
        raise QueryError(f"page must be at most {SEARCH_PAGES:,}")
    return MeasurementQuery(**fields, **flags, limit=limit, offset=(page - 1) * limit)


def whole_number(text: str | None, name: str, default: int) -> int:
    """A parameter that counts something (``limit``, ``page``): ``default`` when not given, else a whole number from
    1, or QueryError saying so (``limit=-1``, ``limit=abc`` were taken as 1 and as the default)."""
    if text is None or text.strip() == "":
        return default
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or not text.strip("0"):  # a sign, a fraction, a word, or 0
        raise QueryError(f"{name} must be a whole number from 1, not {text[:20]!r}")
    text = text.lstrip("0")
    return int(text) if len(text) <= 18 else 10**18  # more than any maximum, without reading 8,000 digits


def search_choices(reader: Reader) -> dict[str, list[str]]:
    """The search form's choices: the values the store holds (categories: those of its test lists)."""
    choices = {name: known_values(reader, name, 300) for name in ("probe_cc", "probe_asn", "test_name", "mechanism")}
    choices["category_code"] = [r[0] for r in reader.cursor().execute(
        "SELECT DISTINCT c_code FROM categories ORDER BY 1 LIMIT 300").fetchall()]
    return choices


# --------------------------------------------------------------------------- the chart (OONI's MAT)

CHART_AXES = {  # an axis of OONI's aggregation -> its name on the page
    aggregates.TIME_AXIS: "Day", "probe_cc": "Country", "probe_asn": "Network", "test_name": "Test",
    "domain": "Site", "input": "Input", "category_code": "Category", "blocking_type": "Blocking type",
    "mechanism": "Mechanism",
}
GRAIN_WORDS = {"hour": "Hour", "day": "Day", "week": "Week", "month": "Month", "year": "Year"}
CHART_GRAINS = ("auto", *aggregates.TIME_GRAINS)
CHART_FIELDS = ("probe_cc", "probe_asn", "test_name", "domain", "input", "category_code", "since", "until",
                "axis_x", "axis_y", "time_grain")
CHART_MOST = 20_000  # rows a chart counts at most: more is refused in words (narrow the selection)
CHART_X = 100        # values of an axis other than time drawn on the x axis at most (the most anomalous)
CHART_Y = 30         # rows of bars at most (the values of axis_y with the most anomalies)
CHART_TABLE = 500    # rows of the table at most; the data links have them all
_SEARCHABLE = ("probe_cc", "probe_asn", "test_name", "domain", "input", "category_code", "mechanism")
_STEP = {"hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1), "week": dt.timedelta(weeks=1)}


def _most(rows: list[dict[str, Any]], axis: str, most: int) -> list[Any]:
    """The ``most`` values of ``axis`` with the most anomalies, then measurements, over ``rows``, in that order."""
    totals: dict[Any, list[int]] = {}
    for row in rows:
        t = totals.setdefault(row[axis], [0, 0])
        t[0] += int(row["anomaly_count"]) + int(row["confirmed_count"])
        t[1] += int(row["measurement_count"])
    return sorted(totals, key=lambda v: (-totals[v][0], -totals[v][1], str(v)))[:most]


def _ranked(rows: list[dict[str, Any]], axis: str, most: int, word: str, notes: list[str]) -> dict[Any, int]:
    """The rank of each of the ``most`` values of ``axis`` the chart draws (`_most`); a note when there are more."""
    keep = _most(rows, axis, most)
    total = len({r[axis] for r in rows})
    if len(keep) < total:
        notes.append(f"The chart draws the {most} {word.lower()} values with the most anomalies of {total:,}; the "
                     "table and the data have them all.")
    return {v: i for i, v in enumerate(keep)}


def _bucket_end(start: dt.datetime, grain: str) -> dt.datetime:
    if grain in _STEP:
        return start + _STEP[grain]
    if grain == "month":
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return start.replace(year=start.year + 1)


def _chart_search(row: dict[str, Any], base: dict[str, str], axes: list[str], grain: str,
                  since: dt.datetime | None, until: dt.datetime | None) -> str | None:
    """The search for one row's measurements: the selection's single values and the row's axis values; None when
    the search cannot say it (several values of a field, a row without a value, the blocking type)."""
    params = dict(base)
    for axis in axes:
        value = row[axis]
        if value is None or value == "":
            return None
        if axis == aggregates.TIME_AXIS:
            start = dt.datetime.fromisoformat(str(value).removesuffix("Z"))
            try:
                end = _bucket_end(start, grain)
            except (OverflowError, ValueError):  # the last bucket of year 9999 ends past any date the search takes
                return None
            start, end = max(start, since) if since else start, min(end, until) if until else end
            short = grain != "hour" and start.time() == end.time() == dt.time()
            params["since"] = start.date().isoformat() if short else start.isoformat() + "Z"
            params["until"] = end.date().isoformat() if short else end.isoformat() + "Z"
        elif axis in _SEARCHABLE:
            params[axis] = str(value)
        else:
            return None
    return "/search?" + urlencode(params)


def chart(reader: Reader, params: dict[str, str]) -> dict[str, Any]:
    """OONI's MAT: the measurements of a selection (the aggregation's filters, several countries, networks, tests
    or sites comma-separated) counted by ``axis_x`` (by default the day) and ``axis_y`` (none by default), by
    ``time_grain``. A selection the aggregation refuses is ``problem``, in its words, with nothing counted."""
    wanted = {k: params.get(k, "").strip() for k in CHART_FIELDS}
    axis_x = wanted["axis_x"].lower() or aggregates.TIME_AXIS
    axis_y = wanted["axis_y"].lower()
    axes = [axis_x, *([axis_y] if axis_y else [])]
    form = {**wanted, "axis_x": axis_x, "axis_y": axis_y, "time_grain": wanted["time_grain"].lower() or "auto"}
    page: dict[str, Any] = {
        "page": "chart", "title": "Charts", "params": form, "problem": None, "axes": CHART_AXES,
        "grains": CHART_GRAINS, "choices": search_choices(reader), "rows": [], "row_count": 0, "notes": [],
        "charts": {"counts": None},
        "data_params": {k: v for k, v in form.items() if v and not (k == "time_grain" and v == "auto")},
    }
    page["csv_params"] = {**page["data_params"], "format": "CSV", "download": "true"}
    try:
        selection = ooni_slice(*(wanted[k] or None for k in CHART_FIELDS[:8]))
        grain = aggregates.time_grain(selection, form["time_grain"])
        store: Any = reader  # the aggregates take anything with a cursor()
        rows = aggregates.counts_by(store, selection, axes, grain, most=CHART_MOST)
    except (QueryError, aggregates.SliceError) as exc:
        page["problem"] = str(exc)
        return page
    words = {**CHART_AXES, aggregates.TIME_AXIS: GRAIN_WORDS[grain]}
    x_title, y_title = words[axis_x], (words[axis_y] if axis_y else "")
    page.update(grain=grain, x_label=x_title, y_label=y_title or None, row_count=len(rows),
                measurement_count=sum(int(r["measurement_count"]) for r in rows))
    y_rank = _ranked(rows, axis_y, CHART_Y, y_title, page["notes"]) if axis_y else {}
    drawn = [r for r in rows if not axis_y or r[axis_y] in y_rank]
    x_rank = _ranked(drawn, axis_x, CHART_X, x_title, page["notes"]) if axis_x != aggregates.TIME_AXIS else {}
    drawn = [r for r in drawn if not x_rank or r[axis_x] in x_rank]
    # a row of bars per value of axis_y, the most anomalous first; in each, the x values' rank (time: in order)
    drawn.sort(key=lambda r: (y_rank[r[axis_y]] if axis_y else 0, x_rank[r[axis_x]] if x_rank else 0))
    page["charts"]["counts"] = charts.counts(drawn, axis_x, axis_y or None, dated=axis_x == aggregates.TIME_AXIS,
                                             x_title=f"Measurements by {x_title.lower()}", y_title=y_title or None,
                                             x_order=sorted(x_rank, key=x_rank.__getitem__) if x_rank else None)
    # the search takes one value of each field: no link rather than one to more measurements than the row counts
    several = any("," in wanted[k] for k in ("probe_cc", "probe_asn", "test_name", "domain"))
    base = {k: wanted[k] for k in ("probe_cc", "probe_asn", "test_name", "domain", "input", "category_code",
                                   "since", "until") if wanted[k]}
    tabled = rows
    if axis_y:  # grouped as the chart's rows are: the values of axis_y with the most anomalies first
        order = {v: i for i, v in enumerate(_most(rows, axis_y, len(rows)))}
        tabled = sorted(rows, key=lambda r: order[r[axis_y]])
    for row in tabled[:CHART_TABLE]:
        search = None if several else _chart_search(row, base, axes, grain, selection.since, selection.until)
        page["rows"].append({**row, "search": search, "anomalies_search": search and search + "&outcome=anomaly"})
    if len(rows) > CHART_TABLE:
        page["notes"].append(f"The table shows the first {CHART_TABLE} rows of {len(rows):,}; the data have them "
                             "all.")
    return page


# --------------------------------------------------------------------------- new blockpages

NEW_BLOCKPAGE_FIELDS = ("probe_cc", "probe_asn", "domain", "since", "until")
NEW_BLOCKPAGES_READ = 1000      # the newest candidates whose pages are read
NEW_BLOCKPAGES_SHOWN = unrecognised.MOST_GROUPS  # templates shown (and proposed for), the largest first


def new_blockpages(reader: Reader, params: dict[str, str], explorer: str = "") -> dict[str, Any]:
    """Blockpages no fingerprint recognises (`analysis.unrecognised`): the newest `NEW_BLOCKPAGES_READ`
    anomalies of web_connectivity where a page came back instead of the site and no fingerprint matched, and
    the newest as many judged accessible whose page failed OONI's length and title checks, their pages grouped
    by template, each group with a proposed fingerprint (a row of Citizen Lab's http.csv, its
    example the measurement's page under ``explorer``). A bad parameter is ``problem``."""
    wanted = {k: params.get(k, "").strip() for k in NEW_BLOCKPAGE_FIELDS}
    page: dict[str, Any] = {"page": "new-blockpages", "title": "Blockpages no fingerprint knows", "params": wanted,
                            "problem": None, "groups": [], "candidates": 0, "read": 0, "accessible_read": 0,
                            "with_page": 0, "more_groups": 0,
                            "limit": NEW_BLOCKPAGES_READ, "choices": search_choices(reader),
                            "data_params": {k: v for k, v in wanted.items() if v}}
    try:
        where, args = MeasurementQuery(probe_cc=wanted["probe_cc"] or None, probe_asn=wanted["probe_asn"] or None,
                                       domain=wanted["domain"] or None, since=wanted["since"] or None,
                                       until=wanted["until"] or None).where()
    except QueryError as exc:
        page["problem"] = str(exc)
        return page
    found = unrecognised.from_store(reader, where, args, read=NEW_BLOCKPAGES_READ, most=NEW_BLOCKPAGES_SHOWN)
    page.update(candidates=found.candidates, read=found.read, accessible_read=found.accessible_read,
                with_page=found.with_page, more_groups=found.more_groups,
                groups=[{**g.public(), "sample": Whole(g.sample),
                         "fingerprint": g.fingerprint(explorer) if g.pattern else None} for g in found.groups])
    return page


# --------------------------------------------------------------------------- findings

_ABOUT_WORDS = (("probe_cc", "Country", "/country/"), ("probe_asn", "Network", "/network/"),
                ("domain", "Site", "/domain/"), ("test_name", "Test", None), ("input", "Input", None),
                ("category_code", "Category", None), ("since", "From", None), ("until", "Until", None))
RECENT_EVIDENCE = 10


def finding_list(findings: Findings) -> dict[str, Any]:
    """The findings, newest first (no counts: each finding's page counts its evidence)."""
    return {"page": "findings", "title": "Findings", "configured": findings.folder is not None,
            "findings": [f.public() for f in findings.all()]}


def _about(f: Finding) -> list[dict[str, Any]]:
    """The evidence in words: each field with its values, those with a page of their own linked."""
    rows = []
    for key, word, link in _ABOUT_WORDS:
        given = f.evidence.get(key)
        if given is None:
            continue
        values = [v.strip() for v in given.split(",")] if key in ("probe_cc", "probe_asn", "test_name", "domain") \
            else [given]
        if key == "category_code":
            values = [category_label(v.upper()) for v in values]
        rows.append({"field": key, "word": word,
                     "values": [{"text": v, "href": link + quote(v.upper() if key != "domain" else v.lower(), safe="")
                                 if link else None} for v in values]})
    return rows


def finding(reader: Reader, f: Finding) -> dict[str, Any]:
    """One finding with its evidence counted now: the measurements it points at by result, by day (the chart),
    and, when it names one value of each field, the latest anomalies among them."""
    store: Any = reader
    total = aggregates.counts_by(store, f.selection)[0]
    grain = aggregates.time_grain(f.selection, "auto")
    by_time = aggregates.counts_by(store, f.selection, [aggregates.TIME_AXIS], grain)
    single = not any("," in f.evidence.get(k, "") for k in ("probe_cc", "probe_asn", "test_name", "domain"))
    techniques = []  # how: the anomalies by technique, most first, each linking its measurements
    for row in aggregates.counts_by(store, f.selection, ["mechanism"]):
        n = int(row["anomaly_count"] or 0) + int(row["confirmed_count"] or 0)
        if n and row["mechanism"] not in (None, "", "none"):
            techniques.append({"mechanism": row["mechanism"], "count": n, "search": "/search?" + urlencode(
                {**f.evidence, "mechanism": row["mechanism"], "outcome": "anomaly"}) if single else None})
    techniques.sort(key=lambda t: (-t["count"], t["mechanism"]))
    recent: list[dict[str, Any]] = []
    if single:
        fields: dict[str, Any] = {k: f.evidence.get(k) for k in EVIDENCE_KEYS}
        recent = _recent(reader, MeasurementQuery(**fields, anomaly=True, limit=RECENT_EVIDENCE))
    return {
        "page": "finding", "title": f.title, "finding": f.public(), "paragraphs": [Whole(p) for p in f.paragraphs()],
        "about": _about(f), "counts": total, "grain": grain,
        "anomalies": int(total["anomaly_count"] or 0) + int(total["confirmed_count"] or 0),
        "recent_anomalies": recent, "techniques": techniques,
        "links": {"chart": "/chart?" + urlencode(f.evidence),
                  "search": "/search?" + urlencode({**f.evidence, "outcome": "anomaly"}) if single else None,
                  "data": "/api/v1/aggregation?" + urlencode({**f.evidence, "axis_x": aggregates.TIME_AXIS})},
        "charts": {"evidence": charts.counts(by_time, aggregates.TIME_AXIS, None, dated=True,
                                             x_title=f"Its measurements by {GRAIN_WORDS[grain].lower()}")},
    }


__all__ = ["AREAS", "CHART_AXES", "OUTCOMES", "area", "body", "chart", "finding", "finding_list", "home",
           "measurement", "new_blockpages", "search_choices", "search_query", "whole_number"]
