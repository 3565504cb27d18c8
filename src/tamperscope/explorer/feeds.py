"""Atom feeds (RFC 4287): follow a search, the changes on a country, network or site, and the findings.

OONI Explorer publishes RSS feeds of anomalous measurements: one global, one per country, one per input.
Here any search of the explorer can be followed (``/feed.atom`` takes the search page's fields), and so can
what the measurements *mean* over time: ``/changes.atom`` says when a site became blocked, or unblocked, on a
network (`aggregates.changes`), which is the news a journalist waits for, where a stream of single anomalies
is mostly noise. ``/findings.atom`` carries the researchers' findings.

Everything in an entry comes from measurements and is hostile: it is written as XML text only (escaped; the
characters XML 1.0 forbids, which a hostile input can hold, become U+FFFD), in ``type="text"`` elements, so a
feed reader renders no markup from it. The feed is built in one pass over plain data: `atom` takes `Entry`
records and returns the document's bytes; the routes (`routes.py`) fetch the rows and build the entries with
the functions below.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from tamperscope.analysis.confidence import NO_NETWORK
from tamperscope.analysis.report import APP_NAMES, MECHANISM_WORDS, clipped, host_shown, shown_text, technique
from tamperscope.analysis.unrecognised import networks_named

MEDIA_TYPE = "application/atom+xml; charset=utf-8"
DEFAULT_ENTRIES = 50
MAX_ENTRIES = 200

# XML 1.0's Char production: anything else (C0 controls but tab and newlines, lone surrogates, U+FFFE/U+FFFF)
# makes the document ill-formed, and a strict reader drops the whole feed.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})


def xml_text(value: Any) -> str:
    """``value`` as XML character data or attribute value: escaped, and never ill-formed; its controls shown as the
    explorer's pages show them (`report.shown_text`: a bidi control as ``\\u202e``, which a feed reader cannot
    isolate from the text around it)."""
    return _NOT_XML.sub("\ufffd", shown_text(value)).translate(_ESCAPES)


def atom_time(value: Any) -> str:
    """An RFC 3339 time in UTC (the store's times are naive UTC); a date is its midnight."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return f"{value.replace(microsecond=0).isoformat()}Z"  # (strftime's %Y writes the year 999 as "999")
    if isinstance(value, dt.date):
        return f"{value.isoformat()}T00:00:00Z"
    text = str(value or "")
    try:
        return atom_time(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return "1970-01-01T00:00:00Z"


@dataclass(frozen=True)
class Entry:
    id: str
    title: str
    updated: str                 # RFC 3339 (`atom_time`)
    link: str                    # the page that shows it
    summary: str
    published: str | None = None
    content: str | None = None   # the whole text, where it is more than the summary (a finding)
    author: str | None = None
    categories: tuple[str, ...] = ()
    related: tuple[tuple[str, str], ...] = ()  # (href, type): the raw measurement as JSON


@dataclass(frozen=True)
class Feed:
    id: str
    title: str
    self_url: str                # this feed
    page_url: str                # the explorer's page of the same selection
    subtitle: str = ""
    entries: Sequence[Entry] = field(default_factory=tuple)


def atom(feed: Feed, now: dt.datetime | None = None) -> bytes:
    """The feed as an Atom document. Its ``updated`` is its newest entry's, or ``now`` when it has none."""
    updated = max((e.updated for e in feed.entries), default=None) or atom_time(
        now or dt.datetime.now(dt.timezone.utc))
    out = ['<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">',
           f"<id>{xml_text(feed.id)}</id>", f'<title type="text">{xml_text(clipped(feed.title))}</title>']
    if feed.subtitle:
        out.append(f'<subtitle type="text">{xml_text(clipped(feed.subtitle))}</subtitle>')
    out += [f"<updated>{updated}</updated>",
            f'<link rel="self" type="application/atom+xml" href="{xml_text(feed.self_url)}"/>',
            f'<link rel="alternate" type="text/html" href="{xml_text(feed.page_url)}"/>',
            "<author><name>tamperscope</name></author>", '<generator uri="https://tamperscope.invalid/">tamperscope'
            "</generator>"]
    for e in feed.entries:
        out.append("<entry>")
        out += [f"<id>{xml_text(e.id)}</id>", f'<title type="text">{xml_text(clipped(e.title))}</title>',
                f"<updated>{e.updated}</updated>"]
        if e.published:
            out.append(f"<published>{e.published}</published>")
        if e.author:
            out.append(f"<author><name>{xml_text(clipped(e.author))}</name></author>")
        out.append(f'<link rel="alternate" type="text/html" href="{xml_text(e.link)}"/>')
        for href, kind in e.related:
            out.append(f'<link rel="related" type="{xml_text(kind)}" href="{xml_text(href)}"/>')
        for term in e.categories:
            out.append(f'<category term="{xml_text(term)}"/>')
        out.append(f'<summary type="text">{xml_text(clipped(e.summary))}</summary>')
        if e.content:
            out.append(f'<content type="text">{xml_text(e.content)}</content>')
        out.append("</entry>")
    out.append("</feed>\n")
    return "\n".join(out).encode("utf-8")


# --------------------------------------------------------------------------- titles


_OUTCOME_WORDS = {"anomaly": "Anomalies", "confirmed": "Confirmed blocking", "failure": "Failed measurements",
                  "ok": "Measurements that found nothing wrong"}
_SELECTION = (("domain", "of {}"), ("input", "of {}"), ("category_code", "of sites in category {}"),
              ("test_name", "by {}"), ("mechanism", "by {}"), ("fingerprint", "matching {}"),
              ("probe_cc", "in {}"), ("probe_asn", "on {}"), ("since", "since {}"), ("until", "before {}"),
              ("report_id", "in report {}"))


def selection_words(params: Mapping[str, str], outcome: bool = True) -> str:
    """A search in words: "Anomalies of meduza.io in RU on AS12389"."""
    head = _OUTCOME_WORDS.get(params.get("outcome") or "", "Measurements") if outcome else ""
    parts = [head] if head else []
    parts += [form.format(host_shown(params[key]) if key == "domain" else params[key]) for key, form in _SELECTION
              if params.get(key)]
    return " ".join(parts)


def _outcome_words(outcome: Any) -> str:
    if outcome == "confirmed":
        return "blocked (confirmed)"
    if outcome == "anomaly":
        return "anomaly"
    if outcome == "failure":
        return "measurement failed"
    if outcome == "ok":
        return "no interference found"
    return str(outcome or "not analysed")


def _subject(row: Mapping[str, Any]) -> str:
    """What was measured: the site, the input, or the app."""
    test = row.get("test_name")
    if row.get("domain"):  # a name beyond ASCII also in IDNA: аррӏе.com (xn--80ak6aa92e.com) is not apple.com
        return host_shown(row["domain"])
    return str(row.get("input") or APP_NAMES.get(str(test), str(test or "")))


def _where(cc: Any, asn: Any) -> str:
    """``in RU on AS12389``; AS0 (`NO_NETWORK`: nobody said which network) is ``on a network not known``."""
    on = "on a network not known" if asn == NO_NETWORK else f"on {asn}" if asn else ""
    return " ".join(str(x) for x in (f"in {cc}" if cc else "", on) if x)


# --------------------------------------------------------------------------- entries


def measurement_entries(rows: Iterable[Mapping[str, Any]], base: str) -> list[Entry]:
    """One entry per measurement (the store's rows, as `queries.list_measurements` gives them)."""
    entries = []
    for row in rows:
        uid = str(row["measurement_uid"])
        mechanism = row.get("mechanism")
        how = technique(mechanism) if mechanism else None
        title = f"{_subject(row)}: {_outcome_words(row.get('outcome'))}"
        if how and row.get("outcome") in ("anomaly", "confirmed"):
            title += f", {how}"
        title += f" {_where(row.get('probe_cc'), row.get('probe_asn'))}".rstrip()
        when = atom_time(row.get("measurement_start_time"))
        lines = [f"{row.get('test_name')} measured {row.get('input') or _subject(row)} at {when}"
                 f" {_where(row.get('probe_cc'), row.get('probe_asn'))}"
                 + (f" ({row['probe_network_name']})" if row.get("probe_network_name") else "") + "."]
        lines.append(f"Outcome: {row.get('outcome')}" + (f", confidence {row['confidence']}"
                                                          if row.get("confidence") else "") + ".")
        if mechanism:
            words = MECHANISM_WORDS.get(str(mechanism))
            lines.append(f"How: {how}" + (f" ({words})" if words else "") + ".")
        if row.get("fingerprints"):
            lines.append("Fingerprints matched: " + ", ".join(str(f) for f in row["fingerprints"]) + ".")
        if row.get("signature"):
            lines.append(f"Equipment signature: {row['signature']}.")
        terms = tuple(str(t) for t in (row.get("outcome"), mechanism, row.get("test_name"), row.get("probe_cc"),
                                       row.get("probe_asn")) if t)
        entries.append(Entry(
            id=f"{base}/m/{quote(uid, safe='')}", title=title, updated=when, published=when,
            link=f"{base}/m/{quote(uid, safe='')}", summary=" ".join(lines), categories=terms,
            related=((f"{base}/api/v1/measurement/{quote(uid, safe='')}", "application/json"),)))
    return entries


def change_entries(rows: Iterable[Mapping[str, Any]], base: str) -> list[Entry]:
    """One entry per change (`aggregates.changes`): a site became blocked, or unblocked, on a network. Its id is
    the search for the run's measurements, from the run's first one: it stays the same as the run goes on."""
    entries = []
    for row in rows:
        since = atom_time(row.get("since"))
        latest = atom_time(row.get("latest"))
        blocked = row.get("change") == "blocked"
        how = technique(row.get("mechanism")) if blocked and row.get("mechanism") else None
        where = _where(row.get("probe_cc"), row.get("probe_asn"))
        title = f"{host_shown(row.get('domain'))} {'became blocked' if blocked else 'was unblocked'} {where}"
        if how:
            title += f": {how}"
        n = int(row.get("measurements") or 0)
        kind = "anomalous" if blocked else "fine"
        summary = (f"{n} {kind} measurement{'s' if n != 1 else ''} in a row from {since} to {latest}"
                   + ("; still so at the latest measurement." if row.get("ongoing") else
                      "; later measurements show otherwise.")
                   + (f" The last measurement before them, at {atom_time(row['before'])}, was "
                      f"{'fine' if blocked else 'anomalous'}." if row.get("before") else ""))
        if how:
            words = MECHANISM_WORDS.get(str(row.get("mechanism")))
            summary += f" How: {how}" + (f" ({words})." if words else ".")
        search = f"{base}/search?" + urlencode({"domain": row.get("domain") or "", "probe_asn": row.get("probe_asn")
                                                or "", "since": since})
        entries.append(Entry(
            id=f"{search}#{row.get('change')}", title=title, updated=since, published=since, link=search,
            summary=summary, categories=tuple(str(t) for t in (row.get("change"), row.get("mechanism"),
                                                               row.get("probe_cc"), row.get("probe_asn")) if t)))
    return entries


def finding_entries(findings: Iterable[Any], base: str) -> list[Entry]:
    """One entry per finding (`collector.findings.Finding`): its summary, and its whole text as content."""
    entries = []
    for f in findings:
        link = f"{base}/findings/{quote(f.id, safe='')}"
        published = atom_time(f.published)
        entries.append(Entry(id=link, title=f.title, updated=atom_time(f.updated or f.published),
                             published=published, link=link, summary=f.summary or f.title,
                             content=f.text or None, author=f.reported_by or None,
                             categories=tuple(f"{k}={v}" for k, v in sorted(f.evidence.items()))))
    return entries


def template_entries(groups: Iterable[Mapping[str, Any]], base: str, page: str) -> list[Entry]:
    """One entry per template of blockpage no fingerprint knows (``/new-blockpages``' groups): its id is its
    template key, so a template is one entry however many pages it gathers; updated when it was last seen."""
    entries = []
    for g in groups:
        link = f"{page}#template-{g['key']}"
        countries = ", ".join(c["probe_cc"] for c in g.get("countries") or [] if c.get("probe_cc"))
        n = int(g.get("measurements") or 0)
        sites = [d["domain"] for d in g.get("domains") or []]
        on = networks_named([str(n_.get("probe_asn")) for n_ in g.get("networks") or []], 10)
        summary = (f"{n} measurement{'s' if n != 1 else ''} of {len(sites)} site{'s' if len(sites) != 1 else ''} "
                   f"({', '.join(sites[:10])}{', …' if len(sites) > 10 else ''}) on {on}, "
                   f"from {g.get('first_seen')} to {g.get('last_seen')}; "
                   f"status {g.get('status_code')}" + (f", Server: {g['server']}" if g.get("server") else "") + ". "
                   + (f"Proposed fingerprint: {g['pattern']}" if g.get("pattern") else "No fingerprint proposed."))
        title = f"A blockpage no fingerprint knows, in {countries or 'an unknown country'}: " + (
            g.get("title") or "(no title)")
        entries.append(Entry(
            id=f"{base}/new-blockpages#template-{g['key']}", title=title,
            updated=atom_time(g.get("last_seen")), published=atom_time(g.get("first_seen")), link=link,
            summary=summary, content=g.get("sample") or None,
            categories=tuple(c["probe_cc"] for c in g.get("countries") or [] if c.get("probe_cc")),
            related=((f"{base}/m/{quote(str(g['sample_uid']), safe='')}", "text/html"),) if g.get("sample_uid")
            else ()))
    return entries


__all__ = ["DEFAULT_ENTRIES", "MAX_ENTRIES", "MEDIA_TYPE", "Entry", "Feed", "atom", "atom_time", "change_entries",
           "finding_entries", "measurement_entries", "selection_words", "template_entries", "xml_text"]
