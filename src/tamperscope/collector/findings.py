"""Findings: what a researcher concludes from the measurements, in words, pointing at the measurements that show it.

OONI Explorer publishes "censorship findings": a title, a summary, a text, and the countries, networks, sites and
dates it is about, each with the measurements behind it. Here a finding is a text file in the directory given to
``tamperscope serve --findings DIR`` (``NAME.md``: the file name is its id), so findings are written, reviewed and
kept in version control like any text, and survive any rebuild of the store. A file begins with TOML between
``+++`` lines, the text follows::

    +++
    title = "Russia's Rostelecom poisons DNS for meduza.io"
    summary = "Every measurement from AS12389 since 1 May got a forged address."
    published = 2026-05-04
    reported_by = "A. Researcher"

    [evidence]                  # the measurements it is about: as /api/v1/aggregation selects them
    probe_cc = "RU"             # several: "RU,BY" or ["RU", "BY"]
    probe_asn = "AS12389"
    domain = "meduza.io"
    test_name = "web_connectivity"
    since = 2026-05-01          # inclusive
    until = 2026-06-01          # exclusive
    +++
    The text: paragraphs separated by blank lines, shown as written (never as HTML).

The evidence is counted live, from the store, whenever a finding is shown: the numbers and the chart follow the
measurements that arrive. The directory is read at start (a bad file stops the server, in one line naming it) and
again when a file in it changes (a bad file is then skipped, said on stderr, and the others shown).
"""

from __future__ import annotations

import datetime as dt
import re
import sys
import threading
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tamperscope.analysis.aggregates import Slice
from tamperscope.collector.queries import QueryError, ooni_slice
from tamperscope.model.inputs import BadInput, read_bounded

SUFFIX = ".md"
MAX_FILES = 1000
MAX_BYTES = 1 << 20
NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,79}")
EVIDENCE_KEYS = ("probe_cc", "probe_asn", "test_name", "domain", "input", "category_code", "since", "until")
TOP_KEYS = ("title", "summary", "published", "updated", "reported_by", "evidence")
_SEVERAL = ("probe_cc", "probe_asn", "test_name", "domain")  # comma-separated, or a TOML list
_LIMITS = {"title": 200, "summary": 1000, "reported_by": 200}
MAX_TEXT = 100_000


class FindingError(ValueError):
    """A finding file that cannot be read, in one line naming it."""


@dataclass(frozen=True)
class Finding:
    id: str
    title: str
    summary: str
    text: str
    published: dt.date
    updated: dt.date | None
    reported_by: str | None
    evidence: dict[str, str]   # the aggregation's parameters, as /api/v1/aggregation and /chart take them
    selection: Slice

    def paragraphs(self) -> list[str]:
        return [p.strip() for p in re.split(r"\n\s*\n", self.text) if p.strip()]

    def about(self, field: str, value: str) -> bool:
        """Whether the finding's evidence names ``value`` for ``field`` (probe_cc, probe_asn, domain)."""
        given = self.evidence.get(field)
        return given is not None and value.lower() in (v.strip().lower() for v in given.split(","))

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "summary": self.summary, "published": self.published.isoformat(),
                "updated": self.updated.isoformat() if self.updated else None, "reported_by": self.reported_by,
                "evidence": self.evidence}


def _text(value: Any, key: str, where: str) -> str:
    if not isinstance(value, str):
        raise FindingError(f"{where}: {key} must be text, not {type(value).__name__}")
    text = value.strip()
    if key in _LIMITS and len(text) > _LIMITS[key]:
        raise FindingError(f"{where}: {key} is longer than {_LIMITS[key]} characters")
    if key in _LIMITS and any(not ch.isprintable() for ch in text):
        raise FindingError(f"{where}: {key} holds a control character")
    return text


def _date(value: Any, key: str, where: str) -> dt.date:
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        raise FindingError(f"{where}: {key} must be a date (2026-05-04, unquoted), not {value!r:.60}")
    return value


def _evidence_value(value: Any, key: str, where: str) -> str:
    if key in ("since", "until"):
        if isinstance(value, dt.datetime):
            try:
                when = value.astimezone(dt.timezone.utc).replace(tzinfo=None) if value.tzinfo is not None else value
            except (OverflowError, ValueError):  # 9999-12-31T23:59:59-23:59 is in the year 10000 in UTC
                raise FindingError(f"{where}: evidence.{key} {value.isoformat()} is out of range: in UTC it is "
                                   "before year 1 or after year 9999") from None
            return when.isoformat() + "Z"
        return _date(value, f"evidence.{key}", where).isoformat()
    if isinstance(value, list) and key in _SEVERAL:
        if not value or not all(isinstance(v, str) and v.strip() and "," not in v for v in value):
            raise FindingError(f"{where}: evidence.{key} must be a list of values, none empty")
        return ",".join(v.strip() for v in value)
    text = _text(value, f"evidence.{key}", where)
    if not text:
        raise FindingError(f"{where}: evidence.{key} is empty")
    return text


def _toml_line(lines: list[str], exc: tomllib.TOMLDecodeError) -> int:
    """The line of ``lines`` (from 1) where TOML went wrong: tomllib says it for most errors, not for a key given
    twice; then the first line whose prefix fails the same way."""
    found = re.search(r"\(at line (\d+), column \d+\)", str(exc))
    if found:
        return int(found.group(1))
    why = str(exc)
    for n in range(1, min(len(lines), 500) + 1):
        try:
            tomllib.loads("\n".join(lines[:n]))
        except tomllib.TOMLDecodeError as again:
            if str(again) == why:
                return n
    return len(lines)


def parse(name: str, content: str, where: str) -> Finding:
    """One finding file's content; FindingError naming ``where`` and what is wrong."""
    if not NAME.fullmatch(name):
        raise FindingError(f"{where}: a finding's file name is its id: lower-case letters, digits and hyphens "
                           f"(at most 80), then {SUFFIX}")
    lines = content.removeprefix("\ufeff").split("\n")
    if not lines or lines[0].strip() != "+++":
        raise FindingError(f"{where}: line 1: a finding begins with a line '+++', its TOML header, then '+++'")
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == "+++"), None)
    if end is None:
        raise FindingError(f"{where}: the header opened on line 1 is never closed by a line '+++'")
    try:
        head = tomllib.loads("\n".join(lines[1:end]))
    except tomllib.TOMLDecodeError as exc:
        why = str(exc).split(" (at ")[0]
        raise FindingError(f"{where}: line {_toml_line(lines[1:end], exc) + 1}: not TOML: {why}") from None
    except RecursionError:  # tomllib recurses into nested arrays and inline tables
        raise FindingError(f"{where}: not TOML: arrays or tables nested too deeply") from None
    unknown = sorted(set(head) - set(TOP_KEYS))
    if unknown:
        raise FindingError(f"{where}: unknown key {unknown[0]!r}; a finding has {', '.join(TOP_KEYS)}")
    if "title" not in head or not _text(head["title"], "title", where):
        raise FindingError(f"{where}: a finding needs a title")
    if "published" not in head:
        raise FindingError(f"{where}: a finding needs the date it was published (published = 2026-05-04)")
    evidence = head.get("evidence")
    if not isinstance(evidence, dict):
        raise FindingError(f"{where}: a finding needs its [evidence]: the countries, networks, sites or tests it is "
                           "about, as the chart selects them")
    unknown = sorted(set(evidence) - set(EVIDENCE_KEYS))
    if unknown:
        raise FindingError(f"{where}: unknown key evidence.{unknown[0]}; the evidence has {', '.join(EVIDENCE_KEYS)}")
    params = {key: _evidence_value(evidence[key], key, where) for key in EVIDENCE_KEYS if key in evidence}
    if not set(params) - {"since", "until"}:
        raise FindingError(f"{where}: the evidence must name a country, network, site, input, test or category, "
                           "not only dates")
    try:
        selection = ooni_slice(*(params.get(key) for key in EVIDENCE_KEYS))
    except QueryError as exc:
        raise FindingError(f"{where}: evidence: {exc}") from None
    if selection.since and selection.until and selection.since >= selection.until:
        raise FindingError(f"{where}: evidence: since must come before until")
    for key in _SEVERAL:  # as the selection reads them (RU, AS12389): the links and the search take these
        if key in params:
            params[key] = ",".join(getattr(selection, key))
    if selection.category_code is not None:
        params["category_code"] = selection.category_code
    text = "\n".join(lines[end + 1:]).strip()
    if len(text) > MAX_TEXT:
        raise FindingError(f"{where}: the text is longer than {MAX_TEXT:,} characters")
    return Finding(id=name, title=_text(head["title"], "title", where),
                   summary=_text(head.get("summary", ""), "summary", where), text=text,
                   published=_date(head["published"], "published", where),
                   updated=_date(head["updated"], "updated", where) if "updated" in head else None,
                   reported_by=_text(head["reported_by"], "reported_by", where) or None
                   if "reported_by" in head else None,
                   evidence=params, selection=selection)


def read(path: Path) -> Finding:
    """One finding file; FindingError naming it."""
    try:
        content = read_bounded(path, MAX_BYTES, "finding")
    except BadInput as exc:
        raise FindingError(str(exc)) from None
    try:
        return parse(path.name.removesuffix(SUFFIX), content, str(path))
    except FindingError:
        raise
    except (ValueError, OverflowError, TypeError) as exc:  # what no check foresaw: still a bad file, skipped
        raise FindingError(f"{path}: cannot be read: {exc}") from None


def _files(folder: Path) -> list[Path]:
    try:
        files = sorted(p for p in folder.iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith("."))
    except OSError as exc:
        raise FindingError(f"{folder}: cannot be read: {exc.strerror or exc}") from None
    if len(files) > MAX_FILES:
        raise FindingError(f"{folder}: more than {MAX_FILES} findings")
    return files


def _stamp(path: Path) -> tuple[str, int, int]:
    try:
        st = path.stat()
    except OSError:
        return (path.name, -1, -1)
    return (path.name, st.st_size, st.st_mtime_ns)


class Findings:
    """The findings of a directory, read again when a file in it changes (by name, size and modification time):
    a file that became bad is skipped and said once (``warn``), the others kept."""

    def __init__(self, folder: Path | None, warn: Callable[[str], None] | None = None) -> None:
        self.folder = folder
        self.warn = warn or (lambda line: print(f"tamperscope: {line}", file=sys.stderr, flush=True))
        self._lock = threading.Lock()
        self._seen: tuple[tuple[str, int, int], ...] | None = None
        self._all: list[Finding] = []
        self._said: set[str] = set()

    def check(self) -> int:
        """Read every file now, raising FindingError for the first bad one (at start: a typo stops the server)."""
        if self.folder is None:
            return 0
        if not self.folder.is_dir():
            raise FindingError(f"{self.folder}: not a directory")
        found = [read(p) for p in _files(self.folder)]
        return len(found)

    def all(self) -> list[Finding]:
        """Newest first (published, then id)."""
        if self.folder is None:
            return []
        with self._lock:
            try:
                files = _files(self.folder)
            except FindingError as exc:  # the directory itself gone or unreadable: the last findings stay
                self._say(str(exc))
                return list(self._all)
            seen = tuple(_stamp(p) for p in files)  # a file removed meanwhile is read (and skipped) below
            if seen != self._seen:
                found = []
                for path in files:
                    try:
                        found.append(read(path))
                    except FindingError as exc:
                        self._say(f"finding skipped: {exc}")
                self._all = sorted(found, key=lambda f: (f.published, f.id), reverse=True)
                self._seen = seen
            return list(self._all)

    def get(self, finding_id: str) -> Finding | None:
        return next((f for f in self.all() if f.id == finding_id), None)

    def about(self, field: str, value: str) -> list[Finding]:
        return [f for f in self.all() if f.about(field, value)]

    def _say(self, line: str) -> None:
        if line not in self._said:
            self._said.add(line)
            self.warn(line)


__all__ = ["EVIDENCE_KEYS", "Finding", "FindingError", "Findings", "parse", "read"]
