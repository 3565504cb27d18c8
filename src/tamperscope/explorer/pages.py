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
* `search`: filters in, one page of OONI-shaped results out.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson

from tamperscope.analysis import aggregates
from tamperscope.analysis.aggregates import Filters
from tamperscope.analysis.report import (
    TEST_WORDS,
    apps_in_words,
    blockpages_in_words,
    categories_in_words,
    category_countries_in_words,
    rules_in_words,
)
from tamperscope.collector.queries import MeasurementQuery, Reader, hops, known_values, list_measurements, ooni_row
from tamperscope.explorer import charts
from tamperscope.explorer.evidence import captured_body, evidence

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
    return {
        "page": "home",
        "title": "Network interference, measured",
        "totals": aggregates.totals(reader, f),  # type: ignore[arg-type]
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
    names = {"country": f"Country {key}", "network": f"Network {key}", "domain": key}
    page: dict[str, Any] = {
        "page": kind,
        "key": key,
        "title": names[kind],
        "filter": {column: key},
        "totals": totals,
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
    if kind == "network":
        first = page["recent"][0] if page["recent"] else {}
        page["network_name"] = first.get("probe_network_name")
        page["probe_cc"] = first.get("probe_cc")
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


def _stored(reader: Reader, uid: str) -> tuple[bytes, dict[str, Any]] | None:
    """A stored measurement's raw bytes and its parsed object; None if there is none (or it is no object)."""
    raw = reader.raw(uid)
    if raw is None:
        return None
    try:
        m = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return (raw, m) if isinstance(m, dict) else None


def measurement(reader: Reader, uid: str) -> dict[str, Any] | None:
    stored = _stored(reader, uid)
    if stored is None:
        return None
    raw, m = stored
    rows = reader.rows(
        """SELECT v.*, m.report_id FROM verdicts v JOIN measurements m USING (measurement_uid)
           WHERE v.measurement_uid = ?""", [uid])
    verdict = rows[0] if rows else {}
    pretty = orjson.dumps(m, option=orjson.OPT_INDENT_2)
    env_keys = ("test_name", "test_version", "input", "probe_cc", "probe_asn", "probe_network_name",
                "measurement_start_time", "report_id", "software_name", "software_version", "resolver_ip",
                "test_runtime")
    envelope = {k: m.get(k) for k in env_keys}
    return {
        "page": "measurement",
        "title": f"{m.get('test_name')} · {m.get('input') or m.get('probe_asn')}",
        "measurement_uid": uid,
        "envelope": envelope,
        "domain": verdict.get("domain"),
        "evidence": evidence(m, {k: verdict.get(k) for k in ("blocking", "accessible", "mechanism", "confidence",
                                                             "status", "outcome", "evidence", "fingerprints")}
                             if verdict else None),
        "raw_size": len(raw),
        "raw_pretty": pretty[:MAX_RAW_SHOWN].decode("utf-8", "replace"),
        "raw_cut": len(pretty) > MAX_RAW_SHOWN,
    }


def body(reader: Reader, uid: str, index: int) -> str | None:
    """The text of one captured response body (for the sandboxed view): that body alone is decoded,
    not the whole page's evidence."""
    stored = _stored(reader, uid)
    return None if stored is None else captured_body(stored[1], index)


OUTCOMES = ("", "anomaly", "confirmed", "failure", "ok")


def search_query(params: dict[str, str]) -> MeasurementQuery:
    """The search form's fields → a query (``outcome`` is the form's one choice among the flags)."""
    outcome = params.get("outcome", "")
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
    limit = _int(params.get("limit"), 50, 1, 1000)
    page = _int(params.get("page"), 1, 1, 100_000)
    return MeasurementQuery(**fields, **flags, limit=limit, offset=(page - 1) * limit)


def _int(text: str | None, default: int, low: int, high: int) -> int:
    try:
        value = int(text) if text not in (None, "") else default
    except ValueError:
        return default
    return min(max(value, low), high)


def search_choices(reader: Reader) -> dict[str, list[str]]:
    """The search form's choices: the values the store holds (categories: those of its test lists)."""
    choices = {name: known_values(reader, name, 300) for name in ("probe_cc", "probe_asn", "test_name", "mechanism")}
    choices["category_code"] = [r[0] for r in reader.cursor().execute(
        "SELECT DISTINCT c_code FROM categories ORDER BY 1 LIMIT 300").fetchall()]
    return choices


__all__ = ["AREAS", "OUTCOMES", "area", "body", "home", "measurement", "search_choices", "search_query"]
