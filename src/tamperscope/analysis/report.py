"""Reports from the store: tables for the terminal, one self-contained HTML file, and JSON.

`terminal_report()` renders the top blocked domains, networks and mechanisms as
plain-text tables. `json_report()` gives the same aggregates (and the timeline and
the tables behind the charts) as one JSON document, for scripts and notebooks.
`html_report()` writes a single HTML file a journalist can open anywhere, offline:
plotly.js is embedded (no CDN, no network), and it shows a summary in words, what
the labels mean, a timeline, a domain × network heatmap, the mechanisms by country,
the equipment signatures and the blockpages recognised, what the censors' rules match (from blocking_rules
measurements) and the tables behind them.

Measurement content is hostile (inputs, network names and signatures come from
the field): every text is HTML-escaped, and chart data is embedded as JSON in
``<script type="application/json">`` with ``<``, ``>`` and ``&`` escaped, so no
captured string can close the script element or run anything.
"""

from __future__ import annotations

import datetime as dt
import html
import itertools
import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from tamperscope.analysis import aggregates, hops, unrecognised
from tamperscope.analysis.aggregates import Filters
from tamperscope.analysis.confidence import CONFIRM_MIN, NO_NETWORK
from tamperscope.analysis.sheets import shown
from tamperscope.analysis.store import Store
from tamperscope.model.categories import category_label
from tamperscope.model.inputs import unicode_host
from tamperscope.model.location import signature_words
from tamperscope.model.rules import describe as describe_rule
from tamperscope.model.services import APPS, TOOLS

# the messaging apps' and circumvention tools' names
APP_NAMES: dict[str, str] = {**{test: app for test, (app, _) in APPS.items()}, **TOOLS}
# What each nettest checks, in plain words, for the report's table of tests.
TEST_WORDS: dict[str, str] = {
    "web_connectivity": "websites from the test lists",
    "dnscheck": "DNS resolvers, plain and encrypted",
    "http_invalid_request_line": "a middlebox on the path that rewrites HTTP",
    "http_header_field_manipulation": "a middlebox on the path that rewrites HTTP headers",
    "throttling": "whether traffic to a site is slowed down",
    "tls_mitm": "whether TLS connections are intercepted",
    "echcheck": "whether TLS with Encrypted Client Hello (ECH) is blocked",
    "blocking_rules": "what the censor's rule matches: the name, its subdomains, or a keyword",
    "evasion": "which re-framings of a blocked request get past the censor",
    "remote_dns": "a resolver inside the country, asked about a site from outside (Satellite)",
    "remote_web": "a server inside the country, sent a site's name from outside (Hyperquack)",
    "telegram": "the Telegram app and Telegram Web",
    "whatsapp": "the WhatsApp app, its registration and WhatsApp Web",
    "facebook_messenger": "the Facebook Messenger app",
    "signal": "the Signal app",
    "tor": "Tor's directory authorities and bridges",
    "vanilla_tor": "whether Tor starts",
    "torsf": "whether Tor starts over Snowflake",
    "psiphon": "whether the Psiphon circumvention tool starts",
    "riseupvpn": "the RiseupVPN service",
    "wireguard": "WireGuard VPN servers",
    "stunreachability": "STUN servers (used by voice and video calls)",
    "portfiltering": "which TCP ports reach a server that listens on all of them",
    "tcp_connect": "TCP connections to given addresses",
    "http_requests": "websites, fetched directly and over Tor (older probes)",
    "dns_consistency": "DNS answers against a control resolver (older probes)",
    "bridge_reachability": "Tor bridges (older probes)",
    "meek_fronted_requests_test": "Tor's domain-fronted meek servers (older probes)",
    "http_host": "filtering on the HTTP Host header (older probes)",
}

# Plain words for each mechanism (model.verdict.MECHANISMS), for the report's readers.
MECHANISM_WORDS: dict[str, str] = {
    "dns.injection": "forged DNS answers injected on the network path",
    "dns.poison": "the resolver answered with addresses that are not the site's",
    "dns.nxdomain": "the resolver answered with an error (no such site, refused, failed) where the control resolved it",
    "dns.drop": "DNS questions about the site went unanswered",
    "tcp.drop": "connections to the server's address timed out",
    "tcp.rst": "connections to the server's address were refused or reset",
    "tcp.freeze": "connections to the server froze after a few kilobytes (no byte more, no reset), as Russia's "
                  "16-20 KB block does",
    "tls.rst": "the encrypted connection was cut during the handshake (typically filtering on the name, SNI)",
    "tls.drop": "the encrypted handshake stalled",
    "tls.mitm": "a certificate that is not the site's was presented (interception)",
    "http.rst": "the web request was cut (reset)",
    "http.drop": "the web request went unanswered",
    "http.blockpage": "another page came back instead of the site (a blockpage)",
    "throttle": "the site was slowed down",
    "quic.drop": "HTTP/3 (QUIC) connections were blocked",
    "middlebox": "a device on the path altered the traffic",
    "udp.drop": "UDP traffic to the server was dropped (a VPN's handshake, picked out by DPI or its address)",
    "none": "something differed from the uncensored control, but no single technique explains it",
}

# One colour per mechanism, the same in every report, in families by layer (DNS purples, TCP
# browns, TLS greens, HTTP blues): plotly's default cycle has ten colours and repeated them
# in the chart of mechanisms by country, where eleven were seen.
MECHANISM_COLOURS: dict[str, str] = {
    "dns.injection": "#3f007d", "dns.poison": "#6a51a3", "dns.nxdomain": "#9e9ac8", "dns.drop": "#d4b9da",
    "tcp.drop": "#8c510a", "tcp.rst": "#dfc27d", "tcp.freeze": "#bf812d",
    "tls.rst": "#1b7837", "tls.drop": "#a6dba0", "tls.mitm": "#00441b",
    "http.rst": "#08519c", "http.drop": "#6baed6", "http.blockpage": "#c51b7d",
    "throttle": "#fdae61", "quic.drop": "#35978f", "middlebox": "#d73027", "udp.drop": "#54278f",
    "none": "#bdbdbd",
}
_SPARE_COLOURS = ("#000000", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#1f78b4", "#b15928", "#ffff99")

OUTCOME_WORDS: dict[str, str] = {
    "confirmed": f"interference shown by a known blockpage, or the same anomaly on at least {CONFIRM_MIN} "
                 "measurements of the same site from the same network (for an app or tool, reached the same way: "
                 "Tor through a bridge counts apart from Tor; a network not known, AS0, is none)",
    "anomaly": "this measurement differs from the uncensored control in a way that suggests interference; "
               "one anomaly alone can be a glitch",
    "failure": "the measurement itself failed (for example the control could not be reached): no conclusion",
    "ok": "the site was reachable as expected",
}
OUTCOME_COLOURS = {"confirmed": "#b2182b", "anomaly": "#ef8a62", "failure": "#999999", "ok": "#67a9cf"}


# --------------------------------------------------------------------------- terminal


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]], *, limit: int | None = None) -> str:
    """A plain-text table: ``columns`` are (key, heading) pairs; numbers right-aligned."""
    shown = list(rows)[:limit] if limit is not None else list(rows)
    cells = [[_cell(r.get(key)) for key, _ in columns] for r in shown]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (_, h) in enumerate(columns)]
    numeric = [all(isinstance(r.get(k), (int, float)) for r in shown) and bool(shown) for k, _ in columns]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    out = [line([h for _, h in columns]), line(["-" * w for w in widths])]
    out += [line(c) for c in cells]
    return "\n".join(out)


def _where(network: Mapping[str, Any]) -> str:
    """A network's country (`aggregates.per_network`'s ``probe_cc``) and how many others its measurements name
    (``TM +2``), so that AS0 (a network not known) is not shown as one country's."""
    others = (network.get("country_count") or 1) - 1
    return f"{network['probe_cc']} +{others}" if others > 0 else str(network["probe_cc"])


def networks_in_words(totals: Mapping[str, Any]) -> str:
    """`aggregates.totals`' networks in words, AS0 not counted as one: ``3 networks``, ``networks not known`` (every
    measurement's network is AS0, as Censored Planet's lines read without an ASN table), or ``3 networks (and
    networks not known for 120 measurements)``."""
    unknown = int(totals.get("unknown_network_count") or 0)
    known = int(totals.get("network_count") or 0)
    if not unknown:
        return counted(known, "network")
    if not known:
        return "networks not known"
    return f"{counted(known, 'network')} (and networks not known for {counted(unknown, 'measurement')})"


def networks_shown(row: Mapping[str, Any]) -> int | str:
    """A row's networks as the reports show them: its ``network_count`` (the networks named), and "not known" where
    some of its measurements are on AS0 (``unknown_network``: their network nobody said, which is not one network):
    ``3``, ``not known``, ``3 + not known``."""
    named = int(row.get("network_count") or 0)
    if not row.get("unknown_network"):
        return named
    return f"{named:,} + not known" if named else "not known"


def _shown(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with ``networks`` (`networks_shown`), the column the reports' tables print."""
    for r in rows:
        r["networks"] = networks_shown(r)
    return rows


def _placed(networks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`aggregates.per_network`'s rows with ``where`` (`_where`), and AS0 named for what it is: no network, but the
    measurements whose network nobody said (a probe that could not find its own, Censored Planet's lines read
    without an ASN table)."""
    for n in networks:
        n["where"] = _where(n)
    return _named(networks)


def _named(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with a ``probe_asn`` and ``probe_network_name``, AS0's name "(network not known)" where none is given."""
    for r in rows:
        if r["probe_asn"] == NO_NETWORK and not r.get("probe_network_name"):
            r["probe_network_name"] = "(network not known)"
    return rows


def _any(rows: Sequence[Mapping[str, Any]], key: str) -> bool:
    """Whether some row has a value under ``key``: a column empty in every row is left out of a wide table."""
    return any(r.get(key) for r in rows)


def _network_in_words(row: Mapping[str, Any]) -> str:
    """A row's network in one cell (`_named` first): ``AS20661 Turkmentelecom (TM)``, ``AS0 (network not known)
    (TM)``, ``AS9 (TM)``."""
    name = row.get("probe_network_name")
    return f"{row['probe_asn']} {name} ({row['probe_cc']})" if name else f"{row['probe_asn']} ({row['probe_cc']})"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool):  # the tables' numbers are counts: 13,334
        return f"{value:,}"
    text = str(value)
    text = "".join(ch if ch.isprintable() else "?" for ch in text)  # no terminal escapes from the field
    return text if len(text) <= 60 else text[:59] + "…"


def counted(count: Any, one: str, many: str | None = None) -> str:
    """"1 country", "2 countries": a count with its noun."""
    n = int(count or 0)
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def confirmed_split(t: Mapping[str, Any]) -> str:
    """``3 by a blockpage fingerprint, 47 by a repeat`` for the totals' confirmed measurements; "" for none."""
    confirmed = int(t.get("confirmed_count") or 0)
    if not confirmed:
        return ""
    by_page = int(t.get("fingerprint_confirmed_count") or 0)
    return f"{by_page:,} by a blockpage fingerprint, {confirmed - by_page:,} by a repeat"


def confirmed_how(t: Mapping[str, Any]) -> str:
    """`` (3 by a blockpage fingerprint, 47 by a repeat: …)``, what a repeat is said, for the reports' headlines;
    "" when nothing is confirmed."""
    split = confirmed_split(t)
    return f" ({split}: the same anomaly again from the same network)" if split else ""


def _mechanisms(store: Store, filters: Filters | None) -> list[dict[str, Any]]:
    """`aggregates.per_mechanism`, each row with what it means in words (``meaning``)."""
    rows = aggregates.per_mechanism(store, filters)
    for m in rows:
        m["meaning"] = MECHANISM_WORDS.get(str(m["mechanism"]), "")
    return rows


SCAN_WORDS = f"{hops.SCAN:,}"


def hops_in_words(store: Store, filters: Filters | None, limit: int) -> list[dict[str, Any]]:
    """`analysis.hops.located`, at most ``limit`` rows, the sites cut to the first three (then "…"), and the apps
    and tools by name (``app_names``)."""
    rows = hops.located(store, filters)[:limit]
    for r in rows:
        sites = r["domains"].split(", ") if r["domains"] else []
        r["domains"] = ", ".join(sites[:3]) + (", …" if len(sites) > 3 else "")
        r["domain_count"] = len(sites)
        r["app_names"] = ", ".join(sorted(app_name(t) for t in r["apps"].split(", ") if t)) or None
    return rows


def _hop_columns(rows: Sequence[Mapping[str, Any]], techniques: str) -> list[tuple[str, str]]:
    """Where on the path's columns; the apps and tools only where some row has one."""
    return [("label", "hop"), ("placement", "placement"), ("measurement_count", "measurements"),
            ("mechanisms", techniques), ("networks", "measured from"), ("domains", "sites"),
            *_column_if_any(rows, "app_names", "apps and tools")]


def _column_if_any(rows: Sequence[Mapping[str, Any]], key: str, heading: str) -> list[tuple[str, str]]:
    """The column ``key`` of a table, where some row has a value under it; no column of blanks where none does
    (the equipment a measurement named; the apps and tools a technique was seen against, whose measurements name
    no site, so that a technique seen only against apps does not read "0 sites" alone)."""
    return [(key, heading)] if _any(rows, key) else []


def _tests(store: Store, filters: Filters | None, limit: int, *, anomalous: bool) -> list[dict[str, Any]]:
    """`aggregates.per_test`, each row with what the test checks (``checks``); with ``anomalous``, only
    the tests that showed some anomaly."""
    rows = [x for x in aggregates.per_test(store, filters, limit) if x["anomaly_count"] or not anomalous]
    for x in rows:
        x["checks"] = TEST_WORDS.get(str(x["test_name"]), "")
    return rows


def app_name(test_name: str, transport: str | None = None) -> str:
    """The app's or tool's name, and the way it went when not directly: "Tor (its own bootstrap) through a bridge
    (obfs4)", "Psiphon over meek_lite"; "Tor with Snowflake" already says it."""
    name = APP_NAMES.get(test_name, test_name)
    if not transport or transport.lower() in name.lower():
        return name
    if transport == "bridge":
        return f"{name} through a bridge"
    if test_name in ("vanilla_tor", "tor", "bridge_reachability"):
        return f"{name} through a bridge ({transport})"
    return f"{name} over {transport}"


def apps_in_words(store: Any, filters: Filters | None, limit: int) -> list[dict[str, Any]]:
    """`aggregates.apps`, each row with the app's name and the way it went (``app``, `app_name`), the days of its
    latest measurement and of the latest that reached the app (``last_day``, ``last_ok_day``), and what the latest
    said (``now``: "blocked", "reachable", or "failed": a failed measurement says nothing either way)."""
    rows = aggregates.apps(store, filters, limit)
    for r in rows:
        r["app"] = app_name(str(r["test_name"]), r["transport"])
        r["last_day"], r["last_ok_day"] = str(r["last_measured"])[:10], str(r["last_ok"] or "")[:10] or "never"
        r["now"] = {"anomaly": "blocked", "confirmed": "blocked", "ok": "reachable"}.get(str(r["last_outcome"]),
                                                                                       "failed")
        r["how"] = r["last_mechanism"] if r["now"] == "blocked" else ""
    return _named(rows)


def _changes(store: Store, filters: Filters | None, limit: int) -> list[dict[str, Any]]:
    """`aggregates.changes`, each row also with ``still`` ("yes"/"no") for a table."""
    rows = aggregates.changes(store, filters, limit)
    for c in rows:
        c["still"] = "yes" if c["ongoing"] else "no"
    return rows


def rules_in_words(store: Any, filters: Filters | None, limit: int | None) -> list[dict[str, Any]]:
    """`aggregates.blocking_rules` (layers whose latest rule blocks), each with a sentence in our words (``says``) and
    the other rules its measurements read (``readings``, empty when they all agree): the report's and the
    explorer's."""
    rows = aggregates.blocking_rules(store, filters, limit)
    for r in rows:
        r["says"] = describe_rule(r["domain"] or "the name", r["layer"], r)
        r["readings"] = r["rules_seen"] if r["rules_seen"] != r["rule"] else ""
    return _named(rows)


def categories_in_words(store: Any, filters: Filters | None) -> list[dict[str, Any]]:
    """`aggregates.per_category`, each row with its category in words (``category``: "News Media (NEWS)") and the
    share of its sites with anomalies (``share``); empty when the store holds no test list."""
    rows = aggregates.per_category(store, filters)
    for row in rows:
        row["category"] = category_label(row["category_code"])
        row["share"] = _share(row["blocked_domain_count"], row["domain_count"])
    return rows


def category_countries_in_words(store: Any, filters: Filters | None) -> list[dict[str, Any]]:
    """`aggregates.category_countries` (a site's categories, each with the countries whose lists file it so), each
    row with its category in words (``category``)."""
    rows = aggregates.category_countries(store, filters)
    for row in rows:
        row["category"] = category_label(row["category_code"])
    return rows


CATEGORY_NOTE = ("A site's category is Citizen Lab's, from the test lists the store was given (tamperscope analyze "
                 "--test-list): the list of the measurement's country first, then the global list.")


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


_SELECTION_WORDS = (("probe_cc", "country"), ("probe_asn", "network"), ("test_name", "test"), ("domain", "site"),
                    ("input", "input"), ("mechanism", "technique"), ("fingerprint", "fingerprint"),
                    ("category_code", "category"), ("since", "from"), ("until", "until"))


def _chosen_values(filters: Filters | None) -> list[tuple[str, str]]:
    """The filters given, each as (our word, its value as shown: a site's name `host_shown`)."""
    return [(word, host_shown(value) if key == "domain" else str(value)) for key, word in _SELECTION_WORDS
            if filters is not None and (value := getattr(filters, key)) is not None]


def _chosen(filters: Filters | None) -> list[str]:
    return [f"{word} {value}" for word, value in _chosen_values(filters)]


def _selection(filters: Filters | None) -> str | None:
    """The filters in words ("Only country IR, test telegram, from 2024-01-01."), or None for everything."""
    chosen = _chosen(filters)
    return f"Only {', '.join(chosen)}." if chosen else None


def _nothing(store: Store, filters: Filters | None) -> tuple[str, str]:
    """Why a report is empty (an empty store, or filters that match none of it), and what to know next."""
    chosen = _chosen(filters)
    if filters is not None and filters.category_code is not None and not aggregates.categorised(store):
        return (f"No measurements match {', '.join(chosen)}",
                "the store holds no test list to say what a site's category is: give it one with "
                "`tamperscope analyze --test-list FILE`.")
    if chosen and (everything := int(aggregates.totals(store).get("measurement_count") or 0)):
        return (f"No measurements match {', '.join(chosen)}",
                f"the store has {everything:,}, from other places, times or tests.")
    return "The store has no measurements yet", "run `tamperscope analyze PATH…` first."


# Who made the measurements, by their software_name (others are shown as they are named)
SOURCE_WORDS = {
    "ooniprobe": "OONI Probe", "ooniprobe-cli": "OONI Probe (command line)", "ooniprobe-android": "OONI Probe (Android)",
    "ooniprobe-ios": "OONI Probe (iOS)", "ooniprobe-desktop-unattended": "OONI Probe (desktop)",
    "ooniprobe-desktop": "OONI Probe (desktop)", "miniooni": "OONI's miniooni", "tamperscope": "tamperscope",
    "censoredplanet-hyperquack": "Censored Planet, Hyperquack (read from its published data)",
    "censoredplanet-satellite": "Censored Planet, Satellite (read from its published data)",
}


def sources_in_words(store: Any, filters: Filters | None) -> list[dict[str, Any]]:
    """`aggregates.sources` with each software's name in words and its versions as one line."""
    rows = aggregates.sources(store, filters)
    for r in rows:
        name = str(r["software"] or "")
        r["source"] = SOURCE_WORDS.get(name, name or "(not named)")
        shown = ", ".join(str(v) for v in r["versions"] or () if v)
        more = int(r["version_count"] or 0) - len([v for v in r["versions"] or () if v])
        r["versions_text"] = shown + (f" and {more} more" if more > 0 else "")
        r["span"] = r["first_day"] if r["first_day"] == r["last_day"] else f"{r['first_day']} to {r['last_day']}"
    return rows


def days_in_words(first: object, last: object) -> str:
    """"on 2026-12-08" for one day, "from 2026-12-01 to 2026-12-08" for several."""
    return f"on {first}" if first == last else f"from {first} to {last}"


def terminal_report(store: Store, filters: Filters | None = None, limit: int = 15) -> str:
    """The top blocked domains, networks and mechanisms, as text."""
    t = aggregates.totals(store, filters)
    n = int(t.get("measurement_count") or 0)
    if not n:
        return ": ".join(_nothing(store, filters))
    lines = [
        f"{counted(n, 'measurement')} {days_in_words(t['first_day'], t['last_day'])}: "
        f"{counted(t['country_count'], 'country', 'countries')}, {networks_in_words(t)}, "
        f"{counted(t['domain_count'], 'domain')}.",
        f"Outcomes: {t['confirmed_count']:,} confirmed{confirmed_how(t)}, "
        f"{t['anomaly_count'] - t['confirmed_count']:,} anomaly "
        f"(unconfirmed), {t['failure_count']:,} failure, {t['ok_count']:,} ok "
        f"({_share(t['anomaly_count'], n)} anomalous).",
        "",
    ]
    if (selection := _selection(filters)) is not None:
        lines.insert(0, selection)
    domains = _shown([d for d in aggregates.per_domain(store, filters, limit) if d["anomaly_count"]])
    for d in domains:
        d["domain"] = host_shown(d["domain"])  # "аррӏе.com (xn--80ak6aa92e.com)": not apple.com
        d["share"] = _share(d["anomaly_count"], d["measurement_count"])
        if d.get("top_mechanism_ech_only"):  # echcheck alone: ECH to the site was blocked, not the site
            d["top_mechanism"] = f"{d['top_mechanism']}, {ECH_ONLY}"
    lines += ["Top blocked domains", table(domains, [
        ("domain", "domain"), ("measurement_count", "measured"), ("anomaly_count", "anomalies"),
        ("confirmed_count", "confirmed"), ("share", "share"), ("networks", "networks"),
        ("top_mechanism", "mechanism")]) if domains else "  (none)", ""]
    tests = _shown(_tests(store, filters, limit, anomalous=True))
    for x in tests:
        x["share"] = _share(x["anomaly_count"], x["measurement_count"])
    categories = categories_in_words(store, filters)
    if categories:
        lines += ["Sites by category (Citizen Lab's categories, from the store's test lists)", table(categories, [
            ("category", "category"), ("domain_count", "sites"), ("blocked_domain_count", "with anomalies"),
            ("share", "share"), ("measurement_count", "measured"), ("anomaly_count", "anomalies"),
            ("confirmed_count", "confirmed")]), ""]
    lines += ["Tests with interference (apps and tools as well as sites)", table(tests, [
        ("test_name", "test"), ("measurement_count", "measured"), ("anomaly_count", "anomalies"),
        ("confirmed_count", "confirmed"), ("share", "share"), ("networks", "networks with anomalies"),
        ("top_mechanism", "mechanism"), ("checks", "what it checks")]) if tests else "  (none)", ""]
    apps = apps_in_words(store, filters, limit)
    if apps:
        lines += ["Messaging apps and circumvention tools, network by network (what the latest measurement said; "
                  "blocked there first)",
                  table(apps, [("app", "app"), ("probe_asn", "network"), ("probe_cc", "cc"),
                               ("now", "latest"), ("how", "how"), ("last_day", "on"), ("last_ok_day", "last reached"),
                               ("measurement_count", "measured"), ("anomaly_count", "anomalies")]), ""]
    networks = _placed([x for x in aggregates.per_network(store, filters, limit) if x["anomaly_count"]])
    lines += ["Top networks with interference", table(networks, [
        ("probe_asn", "network"), ("where", "cc"), ("probe_network_name", "name"),
        ("measurement_count", "measured"), ("anomaly_count", "anomalies"), ("confirmed_count", "confirmed"),
        ("blocked_domain_count", "domains")]) if networks else "  (none)", ""]
    moves = _changes(store, filters, limit)
    for c in moves:
        c["since_day"], c["before_day"] = str(c["since"])[:10], str(c["before"])[:10]
        c["domain"] = host_shown(c["domain"])
    lines += [f"Changes, latest first (blocked: {CONFIRM_MIN}+ anomalies after an ok measurement; unblocked: "
              f"{CONFIRM_MIN}+ ok after {CONFIRM_MIN}+ anomalies)", table(moves, [
        ("change", "change"), ("since_day", "since"), ("before_day", "last before"), ("domain", "domain"),
        ("probe_asn", "network"), ("probe_cc", "cc"), ("measurements", "measurements"),
        ("mechanism", "mechanism"), ("still", "still so")]) if moves else "  (none)", ""]
    mechanisms = _shown(_mechanisms(store, filters))
    lines += ["Mechanisms", table(mechanisms, [
        ("mechanism", "mechanism"), ("measurement_count", "anomalies"), ("confirmed_count", "confirmed"),
        ("domain_count", "domains"), *_column_if_any(mechanisms, "app_count", "apps and tools"),
        ("networks", "networks"),
        ("meaning", "what it means")])
        if mechanisms else "  (none)"]
    rules = [{**r, "domain": host_shown(r["domain"])} for r in rules_in_words(store, filters, limit)]
    if rules:
        lines += ["", "Blocking rules (what the censor's rule matches, read back by blocking_rules; latest first)",
                  table(rules, [("domain", "domain"), ("probe_asn", "network"), ("probe_cc", "cc"),
                                ("layer", "layer"), ("rule", "rule"), ("keyword", "keyword"),
                                ("overblocks", "also caught"), ("measurement_count", "measured"),
                                ("readings", "other readings"), ("last_day", "last")])]
    sigs = _shown(signatures_in_words(store, filters, limit))
    if sigs:
        lines += ["", "Equipment signatures", table(sigs, [
            ("signature", "signature"), ("in_words", "the packet"), *_column_if_any(sigs, "equipment", "equipment"),
            ("measurement_count", "measurements"), ("mechanisms", "mechanisms"), ("countries", "countries"),
            ("networks", "networks")])]
    located = hops_in_words(store, filters, limit)
    if located:
        lines += ["", f"Where on the path (located with tamperscope locate; the router the device sits just after, "
                      f"from the latest {SCAN_WORDS} anomalies)", table(located, _hop_columns(located, "mechanisms"))]
    pages = _shown(blockpages_in_words(store, filters, limit))
    if pages:
        lines += ["", "Blockpages recognised (pages and DNS answers matching a known fingerprint)", table(pages, [
            ("fingerprint", "fingerprint"), ("name", "name"), ("names", "whose"), ("expected", "known from"),
            *_own_column(pages),
            ("measurement_count", "measurements"), ("confirmed_count", "confirmed"), ("mechanisms", "mechanisms"),
            ("countries", "countries"), ("networks", "networks"), ("domain_count", "domains")])]
    unknown = _shown(unknown_blockpages_in_words(store, filters, min(limit, UNKNOWN_SHOWN)))
    if unknown:
        lines += ["", "Blockpages no fingerprint knows (pages served instead of sites, by template; the pattern "
                      "proposed for each is a fingerprint to review: report --propose-fingerprints FILE writes them)",
                  table(unknown, [("title", "title"), ("measurement_count", "measurements"),
                                  ("domain_count", "domains"), ("countries", "countries"),
                                  ("networks", "networks"), ("pattern", "pattern proposed"),
                                  ("pattern_found", "found")])]
    lines += ["", "Where the measurements come from (the software that made them)", table(
        sources_in_words(store, filters), [("source", "source"), ("measurement_count", "measurements"),
                                           ("span", "days"), ("versions_text", "versions")])]
    return "\n".join(lines)


def signatures_in_words(store: Store, filters: Filters | None, limit: int | None) -> list[dict[str, Any]]:
    """`aggregates.signatures`, each row with its key in words (``in_words``: how many IP-IDs a row folds, when
    more than one) and the days it was seen as one value (``seen``)."""
    rows = aggregates.signatures(store, filters, limit)
    for r in rows:
        r["in_words"] = signature_words(str(r["signature"])) + (
            f" ({r['variants']} IP-IDs)" if (r["variants"] or 0) > 1 else "")
        first, last = r["first_seen"], r["last_seen"]
        r["seen"] = str(first) if first == last else f"{first} to {last}"
    return rows


# Who a fingerprint's label says put the page up: Censored Planet's prefixes (a_prod_fortinet_1) and Citizen
# Lab's scopes (OONI's blocking-fingerprints uses the same). A label not listed here is shown as it is.
FINGERPRINT_SCOPES: dict[str, str] = {
    "a_prod": "a filtering product", "prod": "a filtering product",
    "b_nat": "a national blocking system", "nat": "a national blocking system",
    "c_isp": "an ISP", "isp": "an ISP",
    "d_corp": "a company or institution", "inst": "an institution (a school, an office)",
    "e_unk": "someone not identified", "f_gen": "no one (generic wording)", "vbw": "no one (vague wording)",
    "injb": "a benign injection (a router's or ISP's notice)",
}
SUSPECTED = "no one (a suspected block: an empty page)"
FINGERPRINT_SOURCES = {"censoredplanet": "Censored Planet", "citizenlab": "Citizen Lab",
                       "local": "this collector's own (--fingerprints)"}


def not_certainly(also_on: Sequence[str]) -> str:
    """What a fingerprint named for someone is worth when its words are on others' real pages too
    (`Fingerprint.also_on_words`)."""
    return ("not certainly the one its name says: the same words are on real pages of " + ", ".join(also_on)
            + " (Citizen Lab's captures)")


def blockpages_in_words(store: Any, filters: Filters | None, limit: int | None) -> list[dict[str, Any]]:
    """`aggregates.blockpages`, each row with what the shipped database says of its fingerprint: ``name`` (Citizen
    Lab's common name, else the source's own), ``names`` (who the page belongs to, in words), ``source``,
    ``kind`` (blockpage or dns), ``expected`` (the countries the page is known from), ``same_pattern_as`` (the
    ids of fingerprints with its very pattern under other names: then ``name`` gives them all, "A or B"),
    ``also_on`` (whose real pages, captured by Citizen Lab, the fingerprint matches too, when it is named for
    someone else: then ``names`` says its name is not certainly the page's maker), and ``seen`` (the days). A fingerprint this version does not ship keeps its id, with the rest empty."""
    rows = aggregates.blockpages(store, filters, limit)
    if not rows:
        return rows
    from tamperscope.analysis.verdicts import default_matcher
    from tamperscope.wire.fingerprints import FingerprintDB

    try:  # the shipped database, and the fingerprints of one's own if any (their ids are local/...)
        db: FingerprintDB | None = default_matcher().db
    except Exception:  # an unreadable package: the ids are still worth showing
        db = None
    for r in rows:
        fp = None
        if db is not None:
            try:
                fp = db.get(str(r["fingerprint"]))
            except KeyError:
                fp = None
        r["name"] = (fp.title or fp.name) if fp is not None else ""
        twins = db.same_pattern(fp.id) if fp is not None and db is not None else ()
        r["same_pattern_as"] = [t.id for t in twins]
        if twins:  # the same pattern shipped under other names: the page is one of theirs, not this one's for sure
            r["name"] = " or ".join(dict.fromkeys([r["name"], *((t.title or t.name) for t in twins)]))
        r["names"] = FINGERPRINT_SCOPES.get(fp.label, fp.label) if fp is not None else ""
        if fp is not None and fp.source == "citizenlab" and fp.name.startswith("susp_"):
            r["names"] = SUSPECTED  # Citizen Lab files its empty pages under "isp": they name no one
        r["also_on"] = fp.also_on_words() if fp is not None else []
        if r["also_on"]:  # its words are on someone else's real page: its name is not certainly the page's maker
            r["names"] += f", {not_certainly(r['also_on'])}"
        source = fp.source if fp is not None else str(r["fingerprint"]).partition("/")[0]
        # a fingerprint of one's own is named as such by its id, whether or not this process was given the file
        r["source"] = FINGERPRINT_SOURCES.get(source, source) if fp is not None or source == "local" else ""
        r["kind"] = ("DNS answer" if fp.kind == "dns" else "page") if fp is not None else ""
        r["expected"] = ", ".join(fp.expected_countries) if fp is not None else ""
        first, last = r["first_seen"], r["last_seen"]
        r["seen"] = str(first) if first == last else f"{first} to {last}"
    return rows


UNKNOWN_READ = 1000   # the newest candidate pages a report reads for `unknown_blockpages_in_words`
UNKNOWN_SHOWN = 10    # templates a report shows (its JSON: up to its limit)
EXCERPT_CHARS = 240   # of a template's latest page, shown beside it

_visible = unrecognised.visible  # a page's words as a reader sees them: one rule for the tables and the CSV


def _csv_link(rows: Sequence[Mapping[str, Any]]) -> str:
    """A link that saves the proposed fingerprints as a CSV file, from inside the report (a data: URL: the report
    stays one file that works offline)."""
    from urllib.parse import quote

    if not any(r.get("fingerprint") for r in rows):
        return ""
    data = quote(proposed_fingerprints_csv(rows), safe="")
    return (f"<p><a download='proposed-fingerprints.csv' href='data:text/csv;charset=utf-8,{data}'>Save the "
            "proposed fingerprints as a CSV file</a> (Citizen Lab's http.csv columns), to review and then give to "
            "<code>tamperscope analyze --fingerprints FILE --reanalyse stale</code>.</p>")


def proposed_fingerprints_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """The fingerprints proposed in `unknown_blockpages_in_words` rows, as a CSV in Citizen Lab's http.csv
    columns: what ``--fingerprints FILE`` reads back once reviewed."""
    from tamperscope.analysis.sheets import csv_text
    from tamperscope.analysis.unrecognised import CSV_HEADER

    return csv_text([r["fingerprint"] for r in rows if r.get("fingerprint")], CSV_HEADER)


def unknown_blockpages_in_words(store: Any, filters: Filters | None, limit: int) -> list[dict[str, Any]]:
    """Blockpages no fingerprint knows (`unrecognised.from_store`, the explorer's /new-blockpages): the
    ``limit`` largest templates among the newest `UNKNOWN_READ` candidate pages, each with who saw it and the
    fingerprint proposed for it (``pattern``, ``pattern_found``, and ``fingerprint``, a row of Citizen Lab's
    http.csv). ``store`` has ``cursor()`` and ``raw_many()``. The pages' words are the censor's: hostile."""
    where, params = (filters or Filters()).where()
    found = unrecognised.from_store(store, where, params, read=UNKNOWN_READ, most=limit)
    rows = []
    for g in found.groups:
        domains = [d for d, _ in g.domains.most_common(3)]
        first, last = (g.first.date().isoformat() if g.first else ""), (g.last.date().isoformat() if g.last else "")
        rows.append({
            "title": _visible(g.title) or "(no title)", "status_code": g.status, "server": g.server,
            "measurement_count": g.measurements, "domain_count": len(g.domains),
            "domains": ", ".join(domains) + (", …" if len(g.domains) > len(domains) else ""),
            "countries": ", ".join(sorted(g.countries)),
            "network_count": g.network_count, "unknown_network": g.unknown_network,
            "mechanisms": ", ".join(m for m, _ in g.mechanisms.most_common()),
            "seen": first if first == last else f"{first} to {last}",
            "excerpt": _visible(g.sample)[:EXCERPT_CHARS],
            "pattern": g.pattern or "", "sample_uid": g.sample_uid,
            "pattern_found": f"in {g.pattern_matches:,} of {g.measurements:,} pages" if g.pattern else (
                f"none: a known false positive ({', '.join(g.false_positives)}), likely no blockpage"
                if g.false_positives else "none found"),
            "false_positives": list(g.false_positives),
            "fingerprint": g.fingerprint(None) if g.pattern else None,
        })
    return rows


def _own_column(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """The source of each fingerprint, where one is of one's own (``local/``): the shipped ones' prefixes (cp/,
    cl/) say theirs."""
    return [("source", "from")] if any(r["source"] == FINGERPRINT_SOURCES["local"] for r in rows) else []


def _fingerprint_columns(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Whose page each fingerprint is; and its name, kind and home countries only where a row has them (a
    Censored Planet fingerprint's name is its id, and most match pages, not DNS answers)."""
    columns = [("names", "whose page"), *_own_column(rows)]
    if any(r["name"] and not str(r["fingerprint"]).endswith(f"/{r['name']}") for r in rows):
        columns.insert(0, ("name", "name"))
    if any(r["kind"] == "DNS answer" for r in rows):
        columns.append(("kind", "in a"))
    if any(r["expected"] for r in rows):
        columns.append(("expected", "known from"))
    return columns


# --------------------------------------------------------------------------- HTML


def _json_for_script(value: Any) -> str:
    """JSON that is safe inside a <script> element whatever strings it carries."""
    data = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    return data.replace(b"<", b"\\u003c").replace(b">", b"\\u003e").replace(b"&", b"\\u0026").decode()


def shown_text(value: Any) -> str:
    """``value`` as text a page can show as it is, whatever a measurement put in it: a control character (but tab,
    newline and carriage return) is U+FFFD, a bidi control the escape that names it (``\\u202e``), so measurement
    content can neither hide in a page nor reorder the page's own text around it. One helper for the HTML report,
    the explorer's templates (`explorer.display`) and its feeds."""
    return shown("" if value is None else str(value))


MAX_SHOWN = 4096  # characters of one value a page shows as text (a 1 MB network name made pages of megabytes)
MAX_PLOTTED = 1000  # characters of one label or hover text in a chart


def more_said(n: int) -> str:
    """What is said in place of the ``n`` characters cut from a long value: "… (1,044,480 more characters)"."""
    return f"… ({n:,} more character{'s' if n != 1 else ''})"


def clipped(value: Any, limit: int = MAX_SHOWN) -> str:
    """``value`` as text, cut after ``limit`` characters with how many more there were said: "… (1,044,480 more
    characters)". For what a page shows as text; links, form fields and data keep the whole value."""
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[:limit] + more_said(len(text) - limit)


def host_shown(host: Any) -> str:
    """A host name as a page shows it: a name with a label beyond ASCII also in its ASCII (IDNA) form, as browsers
    show names that could be confused with others (``аррӏе.com (xn--80ak6aa92e.com)``, all Cyrillic, is not
    ``apple.com``), whichever spelling it is given in (``xn--80ak6aa92e.com`` too); any other name as it is.
    `shown_text` either way."""
    text = unicode_host("" if host is None else str(host))
    if text.isascii():
        return shown_text(text)
    labels = []
    for label in text.split("."):
        if label.isascii():
            labels.append(label)
            continue
        try:
            ascii_label = label.encode("idna").decode("ascii")
            # IDNA 2003 maps some characters away (a zero-width joiner, a soft hyphen: "paypa\u200dl" would be
            # shown beside "paypal"): a label that does not read back as it was written gets its raw Punycode
            if ascii_label.encode("ascii").decode("idna") != label.lower():
                raise ValueError(label)
            labels.append(ascii_label)
        except (UnicodeError, ValueError):  # no IDNA label (too long, a forbidden character): its Punycode still
            try:
                labels.append("xn--" + label.encode("punycode").decode("ascii"))
            except (UnicodeError, ValueError):
                labels.append("?")
    return shown_text(f"{text} ({'.'.join(labels)})")


def _e(value: Any) -> str:
    return html.escape(shown_text(clipped(value)), quote=True)


# Right-to-left scripts (Hebrew, Arabic, Syriac, Thaana, N'Ko..., their presentation forms, and the historic ones of
# the supplementary planes): text that holds none of them cannot reorder the text around it.
RIGHT_TO_LEFT = re.compile(
    "[\u0590-\u08ff\ufb1d-\ufdcf\ufdf0-\ufdff\ufe70-\ufefe\U00010800-\U00010fff\U0001e800-\U0001efff]")


def _bdi(value: Any) -> str:
    """Measurement content inside a sentence of ours, escaped, and isolated (``<bdi>``) when it holds right-to-left
    text, which would otherwise move the words and numbers around it."""
    text = _e(value)
    return f"<bdi>{text}</bdi>" if RIGHT_TO_LEFT.search(text) else text


def plot_text(value: Any) -> str:
    """Text for a chart: plotly draws a subset of HTML in labels (<a href>, <b>, <br>...) and decodes
    entities, so markup a measurement carried would become a live link; escaped, it is drawn as typed
    (`shown_text`: no control character)."""
    return shown_text(clipped(value, MAX_PLOTTED)).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def day_axis(days: Sequence[Any]) -> dict[str, Any]:
    """A plotly date axis for bars of whole days (ISO strings or dates). Over one to three days, one tick a day,
    as a date: plotly's own ticks show hours ("00:00:00 Mar 1"); more ticks than three of these would turn and
    overlap on a phone, so longer spans keep plotly's ticks."""
    axis: dict[str, Any] = {"type": "date"}
    if days:
        dates = [d if isinstance(d, dt.date) else dt.date.fromisoformat(str(d)[:10]) for d in days]
        if (max(dates) - min(dates)).days < 3:
            axis.update(dtick=86_400_000, tickformat="%b %d\n%Y")
    return axis


def count_axis(largest: float) -> dict[str, Any]:
    """A plotly axis of counts: whole numbers only. Up to a count of 6 plotly ticks halves and fifths
    ("0.2, 0.4 ... 1" for one measurement); one tick per unit there. Above, its ticks are whole already."""
    axis: dict[str, Any] = {"rangemode": "tozero"}
    if largest <= 6:
        axis.update(tick0=0, dtick=1)
    return axis


def stack_axis(series: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """`count_axis` for bars stacked from ``series`` (name -> one count per bar): its scale is the tallest stack."""
    return count_axis(max((sum(column) for column in zip(*series.values())), default=0))


def _timeline_figure(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    days = [r["day"] for r in rows]
    series = {
        "confirmed": [r["confirmed_count"] for r in rows],
        "anomaly": [r["anomaly_count"] - r["confirmed_count"] for r in rows],
        "failure": [r["failure_count"] for r in rows],
        "ok": [r["ok_count"] for r in rows],
    }
    data = [{"type": "bar", "name": name, "x": days, "y": ys, "marker": {"color": OUTCOME_COLOURS[name]}}
            for name, ys in series.items()]
    xaxis: dict[str, Any] = {"title": {"text": "day (UTC)"}, **day_axis(days)}
    layout = {"barmode": "stack", "title": {"text": "Measurements per day, by outcome"},
              "xaxis": xaxis,
              "yaxis": {"title": {"text": "measurements"}, **stack_axis(series)},
              # above the bars: below them it hid the year under the first month's tick
              "legend": {"orientation": "h", "x": 0, "xanchor": "left", "y": 1.0, "yanchor": "bottom"},
              "margin": {"t": 100, "r": 10, "l": 60, "b": 50}}  # room for a legend wrapped on a phone
    return {"data": data, "layout": layout}


def _heatmap_figure(cells: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    if not cells:
        return None
    def ranked(key: str) -> list[str]:  # most anomalous first
        totals: dict[str, int] = {}
        for c in cells:
            totals[c[key]] = totals.get(c[key], 0) + int(c["anomaly_count"])
        return sorted(totals, key=lambda k: (-totals[k], k))

    domains, networks = ranked("domain"), ranked("probe_asn")
    label = {c["probe_asn"]: plot_text(f"{c['probe_asn']} ({_where(c)})") for c in cells}
    index = {(c["domain"], c["probe_asn"]): c for c in cells}
    z, text = [], []
    for d in domains:
        zr: list[float | None] = []
        tr: list[str] = []
        for n in networks:
            c = index.get((d, n))
            if c is None:
                zr.append(None)
                tr.append("not measured")
            else:
                zr.append(round(100 * c["anomaly_count"] / c["measurement_count"], 1))
                tr.append(f"{c['measurement_count']} measured, {c['anomaly_count']} anomalous, "
                          f"{c['confirmed_count']} confirmed")
        z.append(zr)
        text.append(tr)
    data = [{"type": "heatmap", "z": z, "x": [label[n] for n in networks], "y": [plot_text(host_shown(d)) for d in domains],
             "text": text,
             "hovertemplate": "%{y} on %{x}<br>%{z}% anomalous<br>%{text}<extra></extra>",
             "colorscale": "Reds", "zmin": 0, "zmax": 100, "colorbar": {"title": {"text": "% anomalous"}}}]
    layout = {"title": {"text": "Where each site is interfered with (share of measurements anomalous)"},
              "xaxis": {"title": {"text": "network"}, "automargin": True},
              "yaxis": {"automargin": True, "autorange": "reversed"}, "height": max(320, 90 + 22 * len(domains)),
              "margin": {"t": 50, "r": 10, "b": 80}}
    return {"data": data, "layout": layout}


def _mechanisms_figure(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    if not rows:
        return None
    countries = sorted({r["probe_cc"] for r in rows})
    mechanisms = sorted({r["mechanism"] for r in rows})
    counts = {(r["probe_cc"], r["mechanism"]): r["measurement_count"] for r in rows}
    series = {m: [counts.get((c, m), 0) for c in countries] for m in mechanisms}
    spare = itertools.cycle(_SPARE_COLOURS)  # for mechanisms of a newer analysis version
    colour = {m: MECHANISM_COLOURS.get(m) or next(spare) for m in mechanisms}
    data = [{"type": "bar", "name": plot_text(technique(m)), "x": [plot_text(c) for c in countries],
             "y": series[m], "marker": {"color": colour[m]},
             "hovertemplate": f"{plot_text(technique(m))}: %{{y}} anomalies in %{{x}}<extra></extra>"}
            for m in mechanisms]
    layout = {"barmode": "stack", "title": {"text": "How sites are blocked, by country"},
              # no x-axis title: the ticks are country codes, and a title sat under the legend
              "yaxis": {"title": {"text": "anomalous measurements"}, **stack_axis(series)},
              "legend": {"orientation": "h"}, "margin": {"t": 50, "r": 10, "l": 60, "b": 50}}
    return {"data": data, "layout": layout}


def _when(value: Any) -> str:
    """An ISO timestamp as "2024-03-01 14:05 UTC"."""
    text = str(value or "")
    return f"{text[:10]} {text[11:16]} UTC" if len(text) >= 16 else text


# The HTML report's name for mechanism "none" on an anomalous measurement: "none" under "main technique"
# of a blocked site reads as "not blocked" to someone who has not read the verdict rules.
UNEXPLAINED = "unexplained"
_TECHNIQUE_KEYS = frozenset({"mechanism", "top_mechanism", "how"})  # "how": an app blocked now


ECH_ONLY = "with ECH only"  # after a site's technique when echcheck alone saw it: ECH to the site was blocked


def technique(mechanism: Any, ech_only: Any = False) -> Any:
    """A mechanism as the HTML report and the explorer show it (`UNEXPLAINED` for "none"), said to concern only
    hellos carrying Encrypted Client Hello when echcheck alone saw it on the site."""
    shown = UNEXPLAINED if mechanism == "none" else mechanism
    return f"{shown}, {ECH_ONLY}" if ech_only is True and isinstance(shown, str) else shown


def _prose(value: object) -> bool:
    """A sentence (a rule or a technique in words): its cell keeps a reading width, where a table of many
    columns squeezed it to a word per line."""
    return isinstance(value, str) and len(value) > 40 and value.count(" ") >= 4


# Columns of names, never sentences however long: "Tor (its own bootstrap) through a bridge (obfs4)", a network's
# "Turkmentelecom State Joint Stock Company of Communications". They wrap as they need to; held at a reading
# width, they pushed the apps' table 139 px past its box.
_NAME_KEYS = frozenset({"app", "probe_network_name", "network", "name", "domain", "equipment"})


def _html_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    if not rows:
        return "<p class='none'>None.</p>"
    body = []
    # a column of numbers (and blanks) gets its heading over them, on the right
    numbers = [0] * len(columns)
    others = [0] * len(columns)
    # each cell names its column (our words, escaped): where the table is too wide for its box a row is a card,
    # its cells led by these labels
    labels = [f" data-label='{_e(heading)}'" for _, heading in columns]
    for r in rows:
        cells = []
        for i, (key, _) in enumerate(columns):
            value = technique(r.get(key), r.get(f"{key}_ech_only")) if key in _TECHNIQUE_KEYS else r.get(key)
            if key == "domain" and isinstance(value, str):
                value = host_shown(value)
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            numbers[i] += number
            others[i] += not number and value is not None
            cls = (" class='num'" if number else " class='name'" if key in _NAME_KEYS and value is not None
                   else " class='prose'" if _prose(value)
                   else " class='date'" if isinstance(value, str) and _DATE.fullmatch(value) else "")
            text = _breakable(_cell(value) if not isinstance(value, str) else value)
            cells.append(f"<td{cls}{labels[i]}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    right = " class='num'"
    head = "".join(f"<th{right if numbers[i] and not others[i] else ''}>{_e(heading)}</th>"
                   for i, (_, heading) in enumerate(columns))
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


_DATE = re.compile(r"\d{4}-\d\d-\d\d(?:[ T]\d\d:\d\d(?::\d\d)?(?:Z| UTC)?)?")  # kept on one line (td.date)


_WORD = re.compile(r"[\w./:+-]{13,}", re.ASCII)  # one long word of names and identifiers, nothing to escape


def _breakable(text: str) -> str:
    """``text`` escaped; when it is one long word such as ``domain_and_subdomains`` or a signature
    ``tcp/RA/ttl128/win0/ipid30000``, with a line-break opportunity after each underscore and slash (and after each
    dot of a name longer than most), which would otherwise hold its column as wide as the whole word (copied, the
    text is the same). Anything else, markup a measurement carried included, is only escaped."""
    if len(text) > MAX_SHOWN or not _WORD.fullmatch(text):
        return _e(text)  # (cut where it is longer than a page shows)
    broken = text.replace("_", "_<wbr>").replace("/", "/<wbr>")
    return broken.replace(".", ".<wbr>") if len(text) > 20 else broken


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
main{max-width:1100px;margin:0 auto;padding:1rem 1.25rem 3rem}
h1{font-size:1.6rem;margin:.5rem 0}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}
.selection{font-weight:600;color:#333}
.summary{font-size:1.1rem;line-height:1.5;background:#fff;border-left:4px solid #b2182b;padding:.75rem 1rem}
.chart{background:#fff;margin:1rem 0;min-height:320px}
table{border-collapse:collapse;width:100%;background:#fff;font-size:.92rem}
th,td{padding:.35rem .5rem;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
td.num,th.num{text-align:right}td.num{font-variant-numeric:tabular-nums}th{background:#f0f0f0}td.prose{min-width:14rem}td.date{white-space:nowrap}
.scroll{overflow-x:auto}.none{color:#777}dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem}
dt{font-weight:600}dd{margin:0}.tag{display:inline-block;padding:0 .4rem;border-radius:3px;color:#fff}
footer{color:#777;font-size:.85rem;margin-top:2rem}
nav.contents{line-height:1.8;margin:.75rem 0}nav.contents a{color:#2166ac}nav.contents span{display:inline-block;max-width:100%}
"""

# Tables too wide for their box as cards: each row a card (side by side where more than one fits), each cell a line
# led by its column's heading (data-label, our words). Alone, for phones (media max-width 40rem); with `_FIT`, on any
# screen for each table that overflows.
_CARDS = """
.scroll:not(.fits) :is(table,tbody,tr,td){display:block}.scroll:not(.fits) thead{display:none}
.scroll:not(.fits) tbody{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,20rem),1fr));gap:.4rem}
.scroll:not(.fits) tr{border:1px solid #ddd;border-radius:.4rem;padding:.2rem 0;background:#fff}
.scroll:not(.fits) td{display:flow-root;border:0;padding:.1rem .5rem .1rem 8rem;min-width:0;text-align:left;
overflow-wrap:anywhere}.scroll:not(.fits) :is(td.num,td.date){white-space:normal}.scroll:not(.fits) td.prose{min-width:0}
.scroll:not(.fits) td::before{content:attr(data-label);float:left;width:7rem;margin-left:-7.5rem;color:#666}
.scroll:not(.fits) td:empty{display:none}
"""

# Marks every box as fitting, applies `_CARDS` everywhere, then unmarks the boxes whose table overflows; again when
# the window's width changes.
_FIT = """
(function () {
  var boxes = document.querySelectorAll('.scroll'), cards = document.getElementById('cards'), width = 0;
  function fit() {
    width = window.innerWidth;
    boxes.forEach(function (b) { b.classList.add('fits'); });
    cards.media = 'all';
    // read every width first, then unmark: one layout, not one per box
    Array.prototype.filter.call(boxes, function (b) { return b.scrollWidth > b.clientWidth + 1; })
      .forEach(function (b) { b.classList.remove('fits'); });
  }
  fit();
  window.addEventListener('resize', function () { if (window.innerWidth !== width) fit(); });
})();
"""

_DRAW = """
document.querySelectorAll('script[type="application/json"][data-chart]').forEach(function (node) {
  var fig = JSON.parse(node.textContent);
  var target = document.getElementById(node.getAttribute('data-chart'));
  Plotly.newPlot(target, fig.data, fig.layout, {responsive: true, displaylogo: false});
});
"""


def html_report(store: Store, filters: Filters | None = None, *, title: str = "Network interference report",
                limit: int = 30, plotly_js: str | None = None) -> str:
    """The whole report as one HTML document (about 5 MB: plotly.js is inside)."""
    if plotly_js is None:
        from plotly.offline import get_plotlyjs

        plotly_js = get_plotlyjs()
    script = plotly_js.replace("</script", "<\\/script")
    t = aggregates.totals(store, filters)
    n = int(t.get("measurement_count") or 0)
    charts: list[tuple[str, str, dict[str, Any] | None, str]] = [
        ("timeline", "Over time", _timeline_figure(aggregates.timeline(store, filters)) if n else None,
         "Each bar is one day; the red parts are measurements showing interference."),
        ("heatmap", "Sites × networks", _heatmap_figure(aggregates.domain_network(store, filters, limit, 20)),
         "Darker cells: a larger share of that site's measurements on that network were anomalous. "
         "Hover a cell for the counts."),
        ("mechanisms", "How, by country", _mechanisms_figure(aggregates.mechanism_country(store, filters)),
         "Which technique was used against the anomalous measurements, country by country."),
    ]
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
             f"<title>{_e(title)}</title><style>{_CSS}</style>"
             f"<style id='cards' media='(max-width:40rem)'>{_CARDS}</style>"
             f"<script>{script}</script></head><body><main>",
             f"<h1>{_e(title)}</h1>"]
    if chosen := _chosen_values(filters):  # "Only country IR, site …": each value isolated from our words
        parts.append(f"<p class='selection'>Only {', '.join(f'{_e(word)} {_bdi(value)}' for word, value in chosen)}.</p>")
    if not n:
        parts.append(f"<p class='summary'>{_e(_nothing(store, filters)[0])}.</p>")
    else:
        anomalous = int(t["anomaly_count"])
        parts.append(
            f"<p class='summary'>{_e(days_in_words(t['first_day'], t['last_day']).capitalize())}, "
            f"{counted(n, 'measurement')} "
            f"from {networks_in_words(t)} in {counted(t['country_count'], 'country', 'countries')} "
            f"tested {counted(t['domain_count'], 'site')} and {counted(t['test_count'], 'test')}. "
            f"{anomalous:,} ({_share(anomalous, n)}) showed signs of interference; "
            f"<strong>{t['confirmed_count']:,} are confirmed</strong>{_e(confirmed_how(t))}. "
            f"{counted(t['failure_count'], 'measurement')} "
            f"failed (a failed measurement says nothing either way).</p>")
    contents_at = len(parts)  # the contents line goes under the summary
    parts.append("<h2 id='how-to-read'>How to read this</h2><dl>")
    for name in ("confirmed", "anomaly", "failure", "ok"):
        parts.append(f"<dt><span class='tag' style='background:{OUTCOME_COLOURS[name]}'>{name}</span></dt>"
                     f"<dd>{_e(OUTCOME_WORDS[name])}</dd>")
    parts.append("</dl>")
    # The answers first (what is blocked, where), then the charts, then how and by what, and the long list of
    # changes last; the contents line at the top links each section.
    sections: list[tuple[str, str, str]] = []  # (id, heading, the section's body)
    domains = _shown([d for d in aggregates.per_domain(store, filters, limit) if d["anomaly_count"]])
    ech_note = ("<p>A technique “" + _e(ECH_ONLY) + "” was seen by the test that checks Encrypted Client Hello "
                "(echcheck) alone: hellos that hide the site's name were blocked, not the site itself.</p>"
                if any(d.get("top_mechanism_ech_only") for d in domains) else "")
    sections.append(("sites", "Most blocked sites", ech_note + _html_table(domains, [
        ("domain", "site"), ("measurement_count", "measured"), ("anomaly_count", "anomalous"),
        ("confirmed_count", "confirmed"), ("networks", "networks"), ("country_count", "countries"),
        ("top_mechanism", "main technique")])))
    categories = categories_in_words(store, filters)
    if categories:
        sections.append(("categories", "Sites by category",
                         f"<p>What kind of sites are blocked. {_e(CATEGORY_NOTE)} A site no list names is counted "
                         "as not in a test list.</p>" + _html_table(categories, [
                             ("category", "category"), ("domain_count", "sites measured"),
                             ("blocked_domain_count", "sites with anomalies"), ("share", "share"),
                             ("measurement_count", "measured"), ("anomaly_count", "anomalous"),
                             ("confirmed_count", "confirmed")])))
    networks = _placed([x for x in aggregates.per_network(store, filters, limit) if x["anomaly_count"]])
    sections.append(("networks", "Networks with the most interference", _html_table(networks, [
        ("probe_asn", "network"), ("probe_network_name", "name"), ("where", "country"),
        ("measurement_count", "measured"), ("anomaly_count", "anomalous"), ("confirmed_count", "confirmed"),
        ("blocked_domain_count", "sites affected")])))
    tests = _shown(_tests(store, filters, limit, anomalous=True))
    sections.append(("tests", "Apps, tools and sites, by test",
                     "<p>Each test checks one thing: websites, a messaging app, a circumvention tool. Apps and "
                     "tools have no website of their own, so they show here rather than under the sites. A "
                     "test's networks and countries are those where it showed interference.</p>"
                     + _html_table(tests, [
                         ("test_name", "test"), ("checks", "what it checks"), ("measurement_count", "measured"),
                         ("anomaly_count", "anomalous"), ("confirmed_count", "confirmed"),
                         ("networks", "networks"), ("country_count", "countries"),
                         ("top_mechanism", "main technique")])))
    apps = apps_in_words(store, filters, limit)
    if apps:
        sections.append(("apps", "Messaging apps and circumvention tools, network by network",
                         "<p>What the latest measurement of each app or tool on each network said (OONI's "
                         "instant-messaging tests: Telegram, WhatsApp, Facebook Messenger, Signal; its circumvention "
                         "tests: Tor, Tor with Snowflake, Psiphon, RiseupVPN), where it is blocked first; and when "
                         "it was last reached there. Tor started through a bridge has a row of its own: where Tor "
                         "is blocked, a bridge the censor does not know may still get through.</p>"
                         + _html_table(apps, [
                             ("app", "app"), ("probe_asn", "network"), ("probe_network_name", "name"),
                             ("probe_cc", "country"), ("now", "latest"), ("how", "technique"), ("last_day", "on"),
                             ("last_ok_day", "last reached"), ("measurement_count", "measured"),
                             ("anomaly_count", "anomalous")])))
    for key, heading, figure, caption in charts:
        body = f"<p>{_e(caption)}</p>"
        if figure is None:
            body += "<p class='none'>Nothing to show.</p>"
        else:
            body += (f"<div class='chart' id='chart-{key}'></div><script type='application/json' "
                     f"data-chart='chart-{key}'>{_json_for_script(figure)}</script>")
        sections.append((key, heading, body))
    mechanisms = _shown(_mechanisms(store, filters))
    sections.append(("techniques", "Techniques seen", _html_table(mechanisms, [
        ("mechanism", "technique"), ("meaning", "what it means"), ("measurement_count", "anomalies"),
        ("confirmed_count", "confirmed"), ("domain_count", "sites"),
        *_column_if_any(mechanisms, "app_count", "apps and tools"),
        ("networks", "networks")])))
    signatures = _shown(signatures_in_words(store, filters, limit))
    sections.append(("equipment", "Equipment signatures seen",
                     "<p>Packet signatures of the devices doing the interfering, where the probe could capture "
                     "them: the forged packet's kind and flags, its initial TTL, TCP window and IP-ID (the "
                     "blockpages recognised are in the next section). A fixed IP-ID is part of a device's "
                     "signature; <code>ipid*</code> stands for packets whose IP-ID changed from one to the next "
                     "(a counter, or random), folded into one row (the words say how many IP-IDs).</p>" +
                     _html_table(signatures, [
                         ("signature", "signature"), ("in_words", "the packet, in words"),
                         *_column_if_any(signatures, "equipment", "equipment"),
                         ("measurement_count", "measurements"), ("mechanisms", "techniques"),
                         ("countries", "countries"), ("networks", "networks"), ("domain_count", "sites"),
                         ("seen", "seen")])))
    located = hops_in_words(store, filters, limit)
    if located:
        sections.append(("where", "Where on the path",
                         "<p>Where the interference sits, for the measurements that were located (<code>tamperscope "
                         "locate</code>, Censored Planet's CenTrace method: the request that triggers the censor sent "
                         "again with a time-to-live of 1, 2, 3… hops, and the hop at which the censor answers or the "
                         "path goes silent). The router named is the last one that answered before it: the device "
                         "sits just after it. <em>In-path</em>: it is in the traffic's way and can drop it; "
                         f"<em>on-path</em>: it sees a copy and injects its answer. Read from the latest {SCAN_WORDS} "
                         "anomalies.</p>" + _html_table(located, _hop_columns(located, "techniques"))))
    pages = _shown(blockpages_in_words(store, filters, limit))
    sections.append(("blockpages", "Blockpages recognised",
                     "<p>Pages and DNS answers that match a known blockpage fingerprint, from Censored Planet's and "
                     "Citizen Lab's lists: whose page it is (a filtering product, a national system, an ISP, an "
                     "institution) and where it was seen. Many blockpages name their maker, so this is equipment "
                     "seen without any packet capture. A generic fingerprint names no one: it only shows that the "
                     "page is a blockpage. <code>cp/</code> fingerprints are Censored Planet's, <code>cl/</code> "
                     "ones Citizen Lab's, <code>local/</code> ones this collector's own.</p>" + _html_table(pages, [
                         ("fingerprint", "fingerprint"), *_fingerprint_columns(pages),
                         ("measurement_count", "measurements"), ("confirmed_count", "confirmed"),
                         ("mechanisms", "techniques"), ("countries", "countries"), ("networks", "networks"),
                         ("domain_count", "sites"), ("seen", "seen")])))
    unknown = _shown(unknown_blockpages_in_words(store, filters, UNKNOWN_SHOWN))
    if unknown:
        sections.append(("new-blockpages", "Blockpages no fingerprint knows",
                         "<p>Pages that came back instead of the sites, or that OONI's rules let through on their "
                         "headers alone while their length and title are not the site's, and that no fingerprint "
                         "above recognises: a new ISP's blockpage, a new filtering product, or a site that changed. "
                         "They are grouped by template (the blocked site's name, numbers and links masked), the "
                         f"largest first, from the newest {UNKNOWN_READ:,} such measurements. The pattern is a "
                         "piece of text the pages share, proposed as a fingerprint: review it before use (with "
                         "<code>--fingerprints FILE</code>, a match confirms the blockpage). The words quoted are "
                         "the censor's.</p>" + _csv_link(unknown) + _html_table(unknown, [
                             ("title", "page title"), ("excerpt", "its text begins"),
                             ("measurement_count", "measurements"), ("domain_count", "sites"),
                             ("countries", "countries"), ("seen", "seen"), ("pattern", "pattern proposed"),
                             ("pattern_found", "found")])))
    rules = rules_in_words(store, filters, limit)
    if rules:
        sections.append(("rules", "What the censors' rules match",
                         "<p>A <code>blocking_rules</code> measurement shows the censor names made from a blocked "
                         "one (the name, a subdomain, the name with text before or after it, parts of it) on each "
                         "layer: the DNS lookup, the TLS handshake's server name and the HTTP Host. Which of them "
                         "are blocked tells what the rule matches. A rule that catches names nobody listed blocks "
                         "unrelated sites too; one such name is shown. Where a layer's measurements read "
                         "different rules, the latest is shown, and the others under other readings.</p>"
                         + _html_table([{**r, "network": _network_in_words(r)} for r in rules], [
                             (key, heading) for key, heading in (
                                 ("domain", "site"), ("network", "network"), ("layer", "layer"), ("rule", "rule"),
                                 ("says", "what it means"), ("overblocks", "also caught (not listed)"),
                                 ("measurement_count", "measured"), ("readings", "other readings"),
                                 ("last_day", "last measured"))
                             if key not in ("overblocks", "readings") or _any(rules, key)])))
    sections.append(("sources", "Where the measurements come from",
                     "<p>The software that made the measurements, as each one names it: OONI Probe's, ours, and "
                     "Censored Planet's published data, each verdict re-derived here from its records.</p>"
                     + _html_table(sources_in_words(store, filters), [
                         ("source", "source"), ("measurement_count", "measurements"), ("span", "days"),
                         ("versions_text", "versions")])))
    moves = _changes(store, filters, limit)
    for c in moves:
        c["since_text"], c["before_text"] = _when(c["since"]), _when(c["before"])
    sections.append(("changes", "What changed",
                     f"<p>When a site became blocked on a network ({CONFIRM_MIN} anomalies or more in a row after "
                     f"a measurement that was fine), or was unblocked ({CONFIRM_MIN} fine measurements or more "
                     "after such a run), the latest first. Failed measurements are left out: they say nothing "
                     "either way.</p>" + _html_table(moves, [
                         ("change", "change"), ("since_text", "since"), ("before_text", "last measured otherwise"),
                         ("domain", "site"), ("probe_asn", "network"), ("probe_cc", "country"),
                         ("measurements", "measurements since"), ("mechanism", "technique"),
                         ("still", "still so")])))
    last = len(sections) - 1  # each link and its separator on one line
    contents = " ".join(f"<span><a href='#{key}'>{html.escape(heading, quote=False)}</a>{'' if i == last else ' ·'}</span>"
                        for i, (key, heading, _) in enumerate(sections))
    parts.insert(contents_at, f"<nav class='contents' aria-label='Contents'>{contents}</nav>")
    parts.extend(f"<section id='{key}'><h2>{html.escape(heading, quote=False)}</h2>{body}</section>" for key, heading, body in sections)
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<footer>Generated by tamperscope on {generated}. Verdicts are re-derived from the raw "
                 "measurements; every number here can be rebuilt from them.</footer>")
    parts.append(f"</main><script>{_FIT}{_DRAW}</script></body></html>")
    return "".join(parts)


# --------------------------------------------------------------------------- JSON

JSON_FORMAT = "tamperscope-report/2"  # /1 counted AS0 as a network in network_count (docs/analysis.md)


def json_report(store: Store, filters: Filters | None = None, limit: int = 15) -> dict[str, Any]:
    """The report's numbers as one JSON-ready document (docs/analysis.md, "Report").

    Every list is ordered as the report orders it; the ranked ones (domains, tests,
    networks, signatures, blockpages) hold at most ``limit`` rows, *including* rows without
    anomalies, so that a script sees what was measured as well as what was blocked.
    Field values are the store's, unescaped: whoever displays them must escape them.
    """
    from tamperscope.analysis.reanalysis import newer, older
    from tamperscope.analysis.verdicts import ANALYSIS_VERSION

    chosen = {key: str(getattr(filters, key)) for key, _ in _SELECTION_WORDS
              if filters is not None and getattr(filters, key) is not None}
    return {
        "format": JSON_FORMAT,
        "analysis_version": ANALYSIS_VERSION,
        "older_verdicts": older(store.cursor()),
        "newer_verdicts": newer(store.cursor()),
        "selection": chosen,
        "limit": limit,
        "totals": aggregates.totals(store, filters),
        "outcomes": OUTCOME_WORDS,
        "domains": aggregates.per_domain(store, filters, limit),
        "categories": aggregates.per_category(store, filters),
        "tests": _tests(store, filters, limit, anomalous=False),
        "apps": aggregates.apps(store, filters, limit),
        "networks": aggregates.per_network(store, filters, limit),
        "mechanisms": _mechanisms(store, filters),
        "countries": aggregates.per_country(store, filters),
        "mechanisms_by_country": aggregates.mechanism_country(store, filters),
        "signatures": aggregates.signatures(store, filters, limit),
        "hops": hops_in_words(store, filters, limit),
        "blockpages": blockpages_in_words(store, filters, limit),  # each with what the database says of it
        "new_blockpages": unknown_blockpages_in_words(store, filters, limit),
        "rules": aggregates.blocking_rules(store, filters, limit, blocked_only=False),
        "changes": aggregates.changes(store, filters, limit),
        "timeline": aggregates.timeline(store, filters),
        "sources": aggregates.sources(store, filters),
    }


__all__ = ["APP_NAMES", "FINGERPRINT_SCOPES", "FINGERPRINT_SOURCES", "JSON_FORMAT", "MECHANISM_WORDS", "OUTCOME_WORDS",
           "SOURCE_WORDS", "TEST_WORDS", "app_name", "apps_in_words", "blockpages_in_words", "categories_in_words",
           "category_countries_in_words", "count_axis", "counted", "day_axis", "html_report", "json_report",
           "networks_in_words", "networks_shown", "not_certainly", "plot_text", "proposed_fingerprints_csv", "rules_in_words",
           "stack_axis", "table", "terminal_report", "unknown_blockpages_in_words"]
