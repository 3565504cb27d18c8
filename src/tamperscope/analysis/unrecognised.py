"""Blockpages no fingerprint recognises: the pages censors served instead of sites, grouped by template, each
group with a fingerprint proposed for it.

Fingerprint databases (Censored Planet's, Citizen Lab's) grow by hand: someone notices a new page in the data,
writes a pattern for it and sends it upstream. Until then a new ISP's blockpage is an "anomaly" at best. This
module does the noticing. It takes the anomalies of web_connectivity whose technique says a page came back
instead of the site (`MECHANISMS`: the HTTP diff fired, or DNS pointed the probe somewhere else and that place
answered) and that no fingerprint matched, and the measurements judged accessible whose page failed OONI's
length and title checks both (OONI's HTTP diff calls a page accessible when its headers match the control's,
and a blockpage sent with only common headers does: `ACCESSIBLE`), reads the page each one got, and:

* drops a page that is the site's own (its title is the control's: a DNS answer that led to a mirror);
* groups the rest by **template** (`shape`, over a page's first `SHAPE_CHARS`): the page's text with what varies
  between deliveries of one blockpage masked, namely the blocked site's name, URLs, long hexadecimal tokens and
  digits, so that one ISP's page for a thousand sites is one group; the `MOST_GROUPS` largest are kept;
* proposes a **pattern** (`propose`) for each group: a line or tag-delimited piece of the page that every page
  of the group contains, with letters in it, without the sites' names or the control's title, preferring the
  words blockpages use ("blocked", "access denied", "запрещён", ...) and then the longest. Citizen Lab's
  fingerprints are such substrings of the body; `CSV_HEADER` is their file's header, so a group can be
  reviewed and sent upstream as it is. A group whose pages mostly hold a known false positive of Censored
  Planet's list in their text (Cloudflare's browser check) is shown with it, and gets no proposal.

`groups` is pure: rows and raw lines in, `Group` records out. `from_store` reads those rows and lines from a
store (an analysis `Store` or a collector's reader: anything with ``cursor()`` and ``raw_many()``, or
``raw_each()``), for the explorer's ``/new-blockpages`` and the HTML report, one measurement at a time: a page
can be 16 MiB, and only its first `MAX_TEXT` characters are kept. The pages are hostile: the caller shows their
text as text, a proposed pattern holds no character no one sees (`sheets.UNSEEN`: it is cut there, as at a line
end), and a fingerprint's ``common_name`` is the title as a reader sees it (`visible`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from tamperscope.analysis import censoredplanet
from tamperscope.analysis.confidence import NO_NETWORK
from tamperscope.analysis.sheets import UNSEEN
from tamperscope.analysis.store import raw_each
from tamperscope.model.charset import decode_body
from tamperscope.model.webparts import body_bytes, header_pairs, page_title
from tamperscope.wire.fingerprints import classify_response

MECHANISMS = ("http.blockpage", "dns.poison", "dns.injection")
ACCESSIBLE = "accessible by OONI's rules"  # what a page that passed the HTTP diff on its headers alone is labelled
SHORTER = 0.7                 # OONI's body length check: the smaller body over 70% of the larger matches
MAX_TEXT = 32 * 1024          # of a page's text, read and kept
PROPOSE_FROM = 20             # pages of a group a pattern is chosen over (the latest); then counted over all
PROPOSE_CHARS = 8192          # of each of those pages: a blockpage says what it is near its top
SHAPE_CHARS = 16 * 1024       # of a page its template is told by: two pages alike so far are one template
MOST_GROUPS = 100             # templates returned (and proposed for), the largest first
MAX_PIECES = 400              # candidate pieces of the first page
SAMPLE_CHARS = 1500           # of the text shown for a group
MIN_PATTERN, MAX_PATTERN = 10, 120
MIN_WORDS = 3  # words a reader sees in a proposed pattern: "Access denied" alone is every forum's login page too
CSV_HEADER = ("name", "common_name", "pattern", "location_found", "exp_url", "confidence_no_fp", "source",
              "scope", "expected_countries", "notes")  # Citizen Lab's filtering-annotations http.csv

# Words of blockpages, in the languages of the pages in the shared collection and the test lists' countries:
# a piece with one of them is preferred as the pattern.
_BLOCK_WORDS = re.compile(
    r"(?i)block|forbid|denied|restrict|filter|censor|prohibit|court|law|unavailable|not allowed|access|"
    r"запрещ|ограничен|заблокирован|доступ|роскомнадзор|"
    r"مسدود|فیلتر|دسترسی|محجوب|ممنوع|"
    r"engellen|erişim|yasak|"
    r"diblokir|internet positif|bloqueado|bloqué|interdit|gesperrt|zablokowan")
_URL = re.compile(r"(?i)\b(?:https?|ftp)://[^\s\"'<>]*")
_HEX = re.compile(r"(?i)\b[0-9a-f]{8,}\b")
_DIGITS = re.compile(r"\d+")
_DIGIT = re.compile(r"\d")
_SPACE = re.compile(r"\s+")
# what a proposal is cut at as it is at a site's name: a person's e-mail address, and what may be an IPv6 address
# (digits are cut already, so an IPv4 address never stays whole; "fe80::1" kept its "fe")
_NAMING = ("user", "username", "login", "account", "subscriber", "member", "host", "hostname", "computer", "device",
           "customer", "dear", "mr", "mrs", "ms")  # words a person's or a machine's name follows
_PERSONAL = (r"(?<![\w.+-])[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}"  # (bounded: linear on a long word)
             r"|\b[0-9a-fA-F]{0,4}(?::[0-9a-fA-F]{0,4}){2,8}"
             # the naming word, what separates it (spaces, "&nbsp;", ":", "=", quotes) and the name: one token, and
             # up to three more capitalised words ("Dear Mr John Smith", "user 'jdoe'", "host\tLAPTOP-JDOE")
             r"|\b(?:" + "|".join(_NAMING) + r")\b\.?(?:\s|&nbsp;|[:='\"])+[^\s<>\"'&]+(?-i:\s+[A-Z][\w.'-]*){0,3}")
_PERSONAL_SEEN = re.compile(_PERSONAL, re.IGNORECASE)
# markup every page has, which no fingerprint can be made of (a viewport meta tag matched most of the web)
_BOILERPLATE = re.compile(r"(?i)<(?:meta|link|script|style|!doctype|html|head|body|base|noscript|!--)\b")
_CUT_TAG = re.compile(r"<[^>]*$")  # a tag a part ends inside of ("Access denied</h")
_WORD = re.compile(r"[^\W\d_]{2,}")
_SURROGATE = re.compile("[\ud800-\udfff]")  # what a hostile charset (utf-7) can decode to; unencodable
# lines, and minified HTML at each opening tag; and a character no one sees ends a piece as a line end does, so
# that no pattern carries one into a CSV file or a terminal (and each piece is still a substring of the page)
_PIECES = re.compile(f"[\\r\\n{UNSEEN}]+|(?=<[^/])")
# an element whose content is no text, a comment, or a tag (a '>' in a quoted attribute does not end it); run over
# a group's sample (`SAMPLE_CHARS`) and title only, so an unclosed quote costs little
_MARKUP = re.compile(r"""(?is)<(script|style)\b.*?</\1\s*>|<!--.*?-->|<(?:[^>"']|"[^"]*"|'[^']*')*>""")


def visible(page: str) -> str:
    """A page's words as a reader sees them: no markup, entities decoded, control characters and white space
    folded into single spaces (`str.isprintable`: controls, bidi controls, zero-width characters, separators).
    The one rule for a page's title and excerpt wherever they are written as text: the report's tables, a
    proposed fingerprint's ``common_name``."""
    words = html.unescape(_MARKUP.sub(" ", page))
    return " ".join("".join(ch if ch.isprintable() else " " for ch in words).split())


@dataclass(frozen=True)
class Seen:
    """One measurement's page."""

    uid: str
    probe_cc: str
    probe_asn: str
    domain: str
    when: dt.datetime | None
    mechanism: str
    status: int | None
    server: str
    title: str
    control_title: str
    text: str
    false_positives: tuple[str, ...] = ()  # Censored Planet's false-positive signatures found in its text


def networks_named(asns: Sequence[str], most: int) -> str:
    """The networks a template's pages came from, commonest first (``asns``, one per (network, country) pair), in
    words: each network once, the first ``most`` of them, and AS0 (`NO_NETWORK`) not as one: ``AS1, AS2``, ``AS1,
    AS2, … and networks not known``, ``networks not known``."""
    named = list(dict.fromkeys(a for a in asns if a != NO_NETWORK))
    text = ", ".join(named[:most]) + (", …" if len(named) > most else "")
    if NO_NETWORK in asns:
        return f"{text} and networks not known" if text else "networks not known"
    return text


@dataclass
class Group:
    """The pages of one template."""

    key: str
    title: str
    status: int | None
    server: str
    measurements: int = 0
    domains: Counter[str] = field(default_factory=Counter)
    networks: Counter[tuple[str, str]] = field(default_factory=Counter)   # (probe_asn, probe_cc)
    countries: Counter[str] = field(default_factory=Counter)
    mechanisms: Counter[str] = field(default_factory=Counter)
    first: dt.datetime | None = None
    last: dt.datetime | None = None
    sample_uid: str = ""
    sample: str = ""
    pattern: str | None = None
    pattern_matches: int = 0      # pages of the group that contain it
    # Censored Planet's known false positives found in most of its pages (Cloudflare's browser check): likely no
    # blockpage, so nothing is proposed (QA: given back, such a proposal made OONI's sample of the check a
    # confirmed blockpage)
    false_positives: tuple[str, ...] = ()

    @property
    def network_count(self) -> int:
        """The networks its pages came from, AS0 (`NO_NETWORK`: measurements whose network nobody said) not one."""
        return len({asn for asn, _ in self.networks} - {NO_NETWORK})

    @property
    def unknown_network(self) -> bool:
        """Whether some of its pages came from AS0."""
        return any(asn == NO_NETWORK for asn, _ in self.networks)

    def public(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "status_code": self.status, "server": self.server,
                "measurements": self.measurements,
                "domains": [{"domain": d, "measurements": n} for d, n in self.domains.most_common()],
                "networks": [{"probe_asn": a, "probe_cc": c, "measurements": n}
                             for (a, c), n in self.networks.most_common()],
                "network_count": self.network_count, "unknown_network": self.unknown_network,
                "countries": [{"probe_cc": c, "measurements": n} for c, n in self.countries.most_common()],
                "mechanisms": dict(self.mechanisms.most_common()),
                "first_seen": self.first.strftime("%Y-%m-%dT%H:%M:%SZ") if self.first else None,
                "last_seen": self.last.strftime("%Y-%m-%dT%H:%M:%SZ") if self.last else None,
                "sample_uid": self.sample_uid, "sample": self.sample, "pattern": self.pattern,
                "pattern_matches": self.pattern_matches, "false_positives": list(self.false_positives)}

    def fingerprint(self, explorer: str | None = "") -> dict[str, str]:
        """The group as a row of Citizen Lab's http.csv (`CSV_HEADER`), to review and send upstream; its example
        (``exp_url``) the latest page's measurement under ``explorer``, or named in the notes without one (None)."""
        countries = ", ".join(f"'{c}'" for c in sorted(self.countries))
        asns = networks_named([asn for (asn, _), _n in self.networks.most_common()], 5)
        example = f"; example: measurement {self.sample_uid}" if explorer is None and self.sample_uid else ""
        return {"name": f"new_{'_'.join(sorted(self.countries)).lower() or 'zz'}_{self.key[:8]}",
                "common_name": visible(self.title), "pattern": self.pattern or "", "location_found": "body",
                "exp_url": f"{explorer}/m/{self.sample_uid}" if self.sample_uid and explorer is not None else "",
                "confidence_no_fp": "", "source": "[]", "scope": "", "expected_countries": f"[{countries}]",
                "notes": (f"proposed by tamperscope from {self.measurements} measurement"
                          f"{'s' if self.measurements != 1 else ''} of {len(self.domains)} site"
                          f"{'s' if len(self.domains) != 1 else ''} on {asns}; review before use{example}")}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _time(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else -1.0


def page_of(raw: bytes, row: Mapping[str, Any], parsed: Any = None) -> Seen | None:
    """The page a measurement got instead of its site (the final response with a body), or None: no such page,
    the site's own page (its title is the control's), or a line that is not a measurement. For a measurement
    judged accessible (``mechanism`` ``none``), only a page whose length and title both differ from the control's
    (OONI's diff let it through on its headers: a blockpage with only common headers does), labelled
    `ACCESSIBLE`. ``parsed``: the measurement already parsed, as `censoredplanet.as_measurement` gives it."""
    try:
        m = parsed if parsed is not None else censoredplanet.as_measurement(orjson.loads(raw))
    except orjson.JSONDecodeError:
        return None
    tk = m.get("test_keys") if isinstance(m, dict) else None
    requests = tk.get("requests") if isinstance(tk, dict) else None
    if not isinstance(requests, list):
        return None
    best: tuple[float, int, Mapping[str, Any]] | None = None
    for i, request in enumerate(requests):
        response = request.get("response") if isinstance(request, dict) else None
        if not isinstance(response, dict) or not body_bytes(response.get("body")):
            continue
        code = _int(response.get("code"))
        if code is not None and 300 <= code < 400:
            continue
        # the final page: the latest by time; else OONI's order, newest first
        candidate = (_time(request.get("t")), -i, response)
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    if best is None:
        return None
    response = best[2]
    headers = header_pairs(response)
    try:
        text = _SURROGATE.sub("\ufffd", decode_body(body_bytes(response.get("body"))[:MAX_TEXT], headers))
    except (LookupError, ValueError):  # a charset label Python knows but cannot use here
        text = body_bytes(response.get("body"))[:MAX_TEXT].decode("utf-8", "replace")
    control = tk.get("control") if isinstance(tk, dict) else None
    http = control.get("http_request") if isinstance(control, dict) else None
    control_title = str(http.get("title") or "") if isinstance(http, dict) else ""
    title = page_title(text).strip()
    if title and control_title and title.lower() == control_title.strip().lower():
        return None
    mechanism = str(row.get("mechanism") or "")
    if mechanism in ("", "none"):
        # judged accessible: a suspect only where OONI's length and title checks both failed, so that the
        # headers alone let the page through (a blockpage sent with only common headers does)
        size = len(body_bytes(response.get("body")))
        control_size = _int(http.get("body_length")) if isinstance(http, dict) else None
        if not control_title or not control_size or size > SHORTER * control_size:
            return None
        mechanism = ACCESSIBLE
    # what Censored Planet's list of known false positives recognises in the page's text (Cloudflare's browser
    # check, a host's parking page); its matches in the status line alone ("503 Service Unavailable") say nothing
    # of the page, and the list is broad ("Coming soon" is on EE's real blockpage): the page stays, unproposed
    false = tuple(m.id for m in classify_response(body_bytes(response.get("body")), headers,
                                                  _int(response.get("code"))).false_positives if m.where == "body")
    server = next((v for k, v in headers if k.lower() == "server"), "")
    when = row.get("measurement_start_time")
    return Seen(uid=str(row["measurement_uid"]), probe_cc=str(row.get("probe_cc") or ""),
                probe_asn=str(row.get("probe_asn") or ""), domain=str(row.get("domain") or ""),
                when=when if isinstance(when, dt.datetime) else None, mechanism=mechanism,
                status=_int(response.get("code")), server=server[:200], title=title[:300],
                control_title=control_title.strip(), text=text, false_positives=false)


def shape(text: str, domain: str = "") -> str:
    """The template a page was made from, as a key: its text with what varies between deliveries masked (the
    blocked site's name, URLs, long hex tokens, digits, spacing), lower case, hashed."""
    masked = text.lower()
    if domain:
        masked = masked.replace(domain.lower(), "\x00")
    masked = _SPACE.sub(" ", _HEX.sub("\x01", _DIGITS.sub("0", _URL.sub("\x02", masked)))).strip()
    return hashlib.sha256(masked.encode("utf-8", "replace")).hexdigest()[:16]


def _pieces(text: str) -> list[str]:
    return [p.strip() for p in _PIECES.split(text) if p.strip()]


def _parts(piece: str, cut: re.Pattern[str] | None) -> set[str]:
    """A piece, its parts between tags' ends, and those cut where a site's name or a number is (what varies)."""
    parts = {piece, *(p.strip() for p in piece.split(">"))}
    if cut is not None:
        parts |= {q.strip() for p in list(parts) for q in cut.split(p)}
    return {p[:MAX_PATTERN].lstrip("> ").strip() for p in parts if p}  # not from the end of a tag cut


def site_names(domain: str) -> list[str]:
    """How a page may name the site besides its domain: the domain percent-encoded (``www%2Efacebook%2Ecom``) and
    its labels of four characters or more but the last ("facebook" of www.facebook.com: "Facebook is blocked")."""
    if not domain:
        return []
    labels = domain.lower().rstrip(".").split(".")
    return [domain.replace(".", "%2e"), *(label for label in labels[:-1] if len(label) >= 4 and label != "www")]


def propose(texts: list[str], avoid: Iterable[str] = ()) -> str | None:
    """A substring every text contains (a line, or a tag-delimited piece of minified HTML, or a part of one
    between tags' ends or between what varies: the sites' names and numbers), `MIN_PATTERN`..`MAX_PATTERN`
    characters with letters in it, that holds none of ``avoid`` (the sites' names, the control's title), no
    e-mail address nor what may be an IPv6 address (cut there as at a site's name), no markup every page has
    (``<meta``, ``<script``…), at least `MIN_WORDS` words a reader sees, does not end inside a tag, and
    starts with no character a spreadsheet would run (``= + - @``). Blockpage words first, then a piece
    without digits, then the longest; None when no piece qualifies."""
    if not texts:
        return None
    avoided = sorted({a.lower() for a in avoid if a}, key=len, reverse=True)
    cut = re.compile("|".join([*(re.escape(a) for a in avoided), _PERSONAL, r"\d+"]), re.IGNORECASE)
    found: set[str] = set()
    for piece in _pieces(texts[0])[:MAX_PIECES]:
        for part in _parts(piece, cut):
            part = _CUT_TAG.sub("", part).rstrip()
            if len(part) < MIN_PATTERN or part[0] in "=+-@" or not any(c.isalpha() for c in part):
                continue
            low = part.lower()
            if any(a in low for a in avoided) or _PERSONAL_SEEN.search(part) or _BOILERPLATE.search(part):
                continue  # (the piece whole, beside its parts cut there)
            if len(_WORD.findall(visible(part))) < MIN_WORDS:
                continue  # markup, or a phrase too short to be one template's
            found.add(part)
    common = [p for p in found if all(p in t for t in texts[1:])]
    if not common:
        return None
    return max(common, key=lambda p: (bool(_BLOCK_WORDS.search(p)), not _DIGIT.search(p), len(p), p))


class PageMemo:
    """The page (`Seen`, or None) each measurement's raw bytes gave `page_of`, by uid and what it reads of the
    verdict (the raw bytes never change under a uid): a server answering ``/new-blockpages`` parses
    only the measurements it has not read before, where each request parsed its up to 2,000 (4.5 MB pages:
    seconds of CPU for 5 read tokens). The newest `size` are kept (each holds at most `MAX_TEXT` characters)."""

    def __init__(self, size: int = 2048) -> None:
        self.size = size
        self._pages: OrderedDict[tuple[str, ...], Seen | None] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(row: Mapping[str, Any]) -> tuple[str, ...]:
        """What `page_of` and the `Seen` it gives read of a verdict row: a re-analysis may change any of it."""
        return tuple(str(row.get(k) or "") for k in ("measurement_uid", "mechanism", "domain", "probe_cc",
                                                      "probe_asn", "measurement_start_time"))

    def known(self, rows: Sequence[Mapping[str, Any]]) -> dict[int, Seen | None]:
        with self._lock:
            return {i: self._pages[k] for i, row in enumerate(rows) if (k := self.key(row)) in self._pages}

    def remember(self, row: Mapping[str, Any], seen: Seen | None) -> None:
        with self._lock:
            self._pages[self.key(row)] = seen
            self._pages.move_to_end(self.key(row))
            while len(self._pages) > self.size:
                self._pages.popitem(last=False)


def groups(rows: Iterable[Mapping[str, Any]], raws: Mapping[str, bytes] | Iterable[tuple[str, bytes]],
           most: int = MOST_GROUPS, memo: PageMemo | None = None,
           known: Mapping[int, Seen | None] | None = None) -> tuple[list[Group], int, int]:
    """The templates of the pages of ``rows`` (verdict rows: ``measurement_uid``, ``probe_cc``, ``probe_asn``,
    ``domain``, ``measurement_start_time``, ``mechanism``), read from ``raws`` (uid → raw line, or (uid, raw
    line) pairs in any order, read one at a time: only each page's `Seen` is kept): the ``most`` groups with the
    most measurements, first, each with its proposed pattern; how many rows had a page (the others: no body, or
    the site's own page); and how many groups were left out. Proposing costs about 10 ms for a group of pages
    that share nothing, which a hostile store can make every page: ``most`` bounds it. With ``memo``, the rows
    it knows (``known``, as its `PageMemo.known` said when ``raws`` was chosen) are not read again (``raws``
    need not hold them), and those read are remembered."""
    rows = list(rows)
    if known is None:
        known = memo.known(rows) if memo is not None else {}
    at: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        at.setdefault(str(row["measurement_uid"]), []).append(i)
    pairs = ((uid, raws[uid]) for uid in at if uid in raws) if isinstance(raws, Mapping) else raws
    seen_at: dict[int, Seen] = {i: seen for i, seen in known.items() if seen is not None}
    for uid, raw in pairs:
        for i in at.get(uid, ()):
            if i in seen_at or i in known:
                continue
            seen = page_of(raw, rows[i])
            if memo is not None:
                memo.remember(rows[i], seen)
            if seen is not None:
                seen_at[i] = seen
    pages: dict[str, list[Seen]] = {}
    read = 0
    for i in range(len(rows)):  # in the rows' order, whatever order the pages were read in
        seen = seen_at.get(i)
        if seen is None:
            continue
        read += 1
        pages.setdefault(shape(seen.text[:SHAPE_CHARS], seen.domain), []).append(seen)
    ranked = sorted(pages.items(), key=lambda kv: (-len(kv[1]), -len({s.domain for s in kv[1]}), kv[0]))
    out = []
    for key, members in ranked[:most]:
        latest = max(members, key=lambda s: (s.when or dt.datetime.min, s.uid))
        g = Group(key=key, title=latest.title, status=latest.status, server=latest.server,
                  measurements=len(members), sample_uid=latest.uid, sample=latest.text[:SAMPLE_CHARS])
        for s in members:
            g.domains[s.domain] += 1
            g.networks[(s.probe_asn, s.probe_cc)] += 1
            g.countries[s.probe_cc] += 1
            g.mechanisms[s.mechanism] += 1
            if s.when is not None:
                g.first = s.when if g.first is None else min(g.first, s.when)
                g.last = s.when if g.last is None else max(g.last, s.when)
        avoid = {*(s.domain for s in members), *(s.domain.removeprefix("www.") for s in members),
                 *(s.control_title for s in members), *(name for s in members for name in site_names(s.domain))}
        newest = sorted(members, key=lambda s: (s.when or dt.datetime.min, s.uid), reverse=True)
        false = Counter(f for s in members for f in dict.fromkeys(s.false_positives))
        g.false_positives = tuple(f for f, n in false.most_common() if 2 * n > len(members))
        if g.false_positives:
            out.append(g)
            continue
        g.pattern = propose([s.text[:PROPOSE_CHARS] for s in newest[:PROPOSE_FROM]], avoid)
        g.pattern_matches = sum(g.pattern in s.text for s in members) if g.pattern else 0
        out.append(g)
    return out, read, max(0, len(ranked) - most)


@dataclass
class Found:
    """What `from_store` read: the anomalies that could be an unknown blockpage (``candidates``), how many of
    them were read (the newest ``read``) and how many judged accessible beside them, how many of those had a page
    of their own (``with_page``), the largest templates, and how many smaller ones were left out."""

    candidates: int
    read: int
    accessible_read: int
    with_page: int
    groups: list[Group]
    more_groups: int


def from_store(source: Any, narrowed: str = "TRUE", params: Sequence[Any] = (), *, read: int = 1000,
               most: int = MOST_GROUPS) -> Found:
    """The templates of the pages no fingerprint knows among the web_connectivity and remote_web verdicts
    ``narrowed`` selects (an SQL condition on ``verdicts v``, with ``params``): the newest ``read`` anomalies
    whose technique says a page came back (`MECHANISMS`), with no fingerprint and a body, and the newest ``read``
    web_connectivity measurements judged accessible.
    ``source`` has ``cursor()`` and ``raw_many(uids)`` or ``raw_each(uids)``, read a few at a time (`raw_each`)."""
    where = f"({narrowed}) AND v.test_name = 'web_connectivity'"
    # a page came back: a DNS answer that led nowhere fetched none, and reading it would spend the budget; and
    # the pages remote_web got instead of a vantage's own (Censored Planet's template mismatches)
    anomalies = (f"({narrowed}) AND v.test_name IN ('web_connectivity', 'remote_web')"
                 " AND v.outcome IN ('anomaly', 'confirmed')"
                 f" AND v.mechanism IN ({', '.join('?' * len(MECHANISMS))})"
                 " AND len(coalesce(v.fingerprints, []::VARCHAR[])) = 0"
                 " AND v.measurement_uid IN (SELECT measurement_uid FROM observations WHERE step = 'http'"
                 " AND body_length > 0)")
    anomaly_params = [*params, *MECHANISMS]
    cur = source.cursor()
    found = cur.execute(f"SELECT count(*) FROM verdicts v WHERE {anomalies}", anomaly_params).fetchone()
    columns = "v.measurement_uid, v.probe_cc, v.probe_asn, v.domain, v.measurement_start_time, v.mechanism"
    newest = f"ORDER BY v.measurement_start_time DESC, v.measurement_uid DESC LIMIT {int(read)}"

    def rows(condition: str, values: Sequence[Any]) -> list[dict[str, Any]]:
        result = cur.execute(f"SELECT {columns} FROM verdicts v WHERE {condition} {newest}", list(values))
        names = [d[0] for d in result.description or []]
        return [dict(zip(names, row, strict=True)) for row in result.fetchall()]

    candidates = rows(anomalies, anomaly_params)
    # and the newest judged accessible: OONI's diff lets a page through on its headers alone
    accessible = rows(f"{where} AND v.outcome = 'ok'", params)
    everything = candidates + accessible
    memo: PageMemo | None = getattr(source, "pages", None)
    known = memo.known(everything) if memo is not None else {}
    wanted = [r["measurement_uid"] for i, r in enumerate(everything) if i not in known]
    kept, with_page, more = groups(everything, raw_each(source, wanted), most=most, memo=memo, known=known)
    return Found(candidates=int(found[0]) if found else 0, read=len(candidates), accessible_read=len(accessible),
                 with_page=with_page, groups=kept, more_groups=more)


__all__ = ["CSV_HEADER", "MECHANISMS", "Found", "Group", "PageMemo", "Seen", "from_store", "groups", "networks_named",
           "page_of", "propose", "shape"]
