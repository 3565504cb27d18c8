"""Test lists in the store: which Citizen Lab category each measured site is in.

OONI's measurements do not carry their input's category; OONI's pipeline looks it up in Citizen Lab's
lists, and so does the store. `tamperscope analyze --test-list FILE` keeps each list's entries in
``test_lists`` (a list given again replaces its earlier entries) and derives ``categories``: one row
per (host name, country), with every spelling of the host a verdict may hold (with and without
``www.``, Unicode and IDNA), so that a verdict's category is an equality join.

A verdict's category (`category_sql`) is its domain's in the list of its own country when that list
names the domain (Citizen Lab's ``tm.csv`` for a measurement from TM), else in the global list
(``global.csv``, country ``ZZ``), else in any other list given; an entry for the whole site comes
before one for a page on it (`_resolved`). A host whose URLs are filed under several categories
takes the commonest (ties: the first in code order). The rows are resolved when the lists are
stored: a host's fallback row (country ``*``) and a row for each country whose answer differs.
A category is read when a page or report asks for it, never stored with the verdict: a list given
later categorises what was analysed before it.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pyarrow as pa

from tamperscope.model.categories import GLOBAL, list_country, normal_code
from tamperscope.model.countries import code_of
from tamperscope.model.inputs import (
    MAX_LIST,
    BadInput,
    ListEntry,
    check_utf8,
    host_forms,
    read_bounded,
    read_url_list,
)

if TYPE_CHECKING:
    import duckdb

ANY = "*"  # the country of the fallback rows: any list's category, for a host no country or global list names

# The tables (schema v11, analysis/schema.py). `categories`' columns are named apart from the verdicts' so that
# `category_sql`'s subqueries, written into a query over verdicts, read the outer row's domain and probe_cc.
TEST_LISTS_DDL = """CREATE TABLE test_lists (
    list VARCHAR NOT NULL, cc VARCHAR NOT NULL, url VARCHAR NOT NULL, category_code VARCHAR, imported_at TIMESTAMP)"""
CATEGORIES_DDL = "CREATE TABLE categories (c_domain VARCHAR NOT NULL, c_cc VARCHAR NOT NULL, c_code VARCHAR NOT NULL)"


def category_sql(domain: str = "domain", cc: str = "probe_cc") -> str:
    """A verdict's category code as an SQL expression (NULL: no list names its site), for a query whose
    row has the verdict's ``domain`` and ``cc`` columns."""
    return (f"coalesce((SELECT c_code FROM categories WHERE c_domain = {domain} AND c_cc = {cc}), "
            f"(SELECT c_code FROM categories WHERE c_domain = {domain} AND c_cc = '{ANY}'))")


@dataclass(frozen=True)
class TestList:
    """One list read from a file, before it reaches the store."""

    __test__ = False  # not a pytest class
    name: str          # the file's name: a list given again under the same name replaces it
    cc: str            # the country it is for (GLOBAL for global.csv and any list not named by a country code)
    entries: list[ListEntry]

    @property
    def categorised(self) -> int:
        return sum(1 for e in self.entries if e.category_code)


def read_test_list(path: str | Path) -> TestList:
    """A Citizen Lab test-list CSV (``url,category_code,...``) from a file; BadInput, one line naming the file
    and the line, for anything else: a list without a ``category_code`` column says nothing of categories."""
    path = Path(path)
    check_utf8(path, "test list", "give a path whose name is UTF-8 (the store keeps a list by its file name)")
    text = read_bounded(path, MAX_LIST, "test list")
    entries = read_url_list(text, str(path))
    if not any(e.category_code for e in entries):
        raise BadInput(f"{path}: no categories in it (a Citizen Lab test list is a CSV with url and category_code "
                       "columns)")
    for e in entries:  # codes are shown and searched for: a few capitals and digits, as Citizen Lab writes them
        try:
            if e.category_code:
                normal_code(e.category_code)
        except ValueError as exc:
            raise BadInput(f"{path}: the entry {e.url[:100]!r}: {exc}") from None
    return TestList(path.name, _country(path.stem), entries)


def _country(stem: str) -> str:
    """`list_country`, for a two-letter name that is a country's ISO 3166-1 code (``tm.csv``); any other name,
    ``ok.csv`` or ``xx.csv`` too, is a global list (GLOBAL), which no measurement's country could match."""
    cc = list_country(stem)
    return cc if cc != GLOBAL and code_of(cc) == cc else GLOBAL


def read_test_lists(paths: list[Path]) -> list[TestList]:
    """`read_test_list` of each path, refusing two of one file name (the store keeps lists by name)."""
    lists: dict[str, TestList] = {}
    for path in paths:
        tl = read_test_list(path)
        if tl.name in lists:
            raise BadInput(f"--test-list {path}: two lists named {tl.name}; the store keeps lists by file name")
        lists[tl.name] = tl
    return list(lists.values())


def _hosts(url: str) -> tuple[str, ...]:
    """The spellings of a list entry's host that a verdict's domain may be: as written, without or with
    ``www.``, in Unicode and in IDNA."""
    host = (urlsplit(url).hostname or "").rstrip(".")
    if not host:
        return ()
    bare = host[4:] if host.startswith("www.") else host
    forms: dict[str, None] = {}
    for name in (bare, "www." + bare):
        for form in host_forms(name):
            forms[form.lower()] = None
    return tuple(forms)


Votes = dict[str, dict[str, dict[bool, Counter[str]]]]  # host -> list country -> whole site or not -> codes


def _pick(counts: list[Counter[str]]) -> str | None:
    """The commonest code of the first non-empty tally (ties: the first in code order)."""
    for codes in counts:
        if codes:
            return min(codes, key=lambda c: (-codes[c], c))
    return None


def _resolved(votes: Votes) -> list[tuple[str, str, str]]:
    """(host, country, code) rows: for a host, the fallback row (ANY) and, for each country whose list names it,
    that country's row when it says otherwise. An entry for the whole site (``https://x.com/``) says more of
    the site than one for a page on it (``https://x.com/some-dissident``, filed as news on a social network):
    the whole site's entries of the country's list, of the global list, of any list; then pages, in that order."""
    rows: list[tuple[str, str, str]] = []
    for host, by_cc in votes.items():
        def tally(cc: str | None, whole: bool) -> Counter[str]:
            if cc is not None:
                return by_cc.get(cc, {}).get(whole, Counter())
            total: Counter[str] = Counter()
            for parts in by_cc.values():
                total.update(parts.get(whole, Counter()))
            return total

        order = [(GLOBAL, True), (None, True), (GLOBAL, False), (None, False)]
        fallback = _pick([tally(cc, whole) for cc, whole in order])
        assert fallback is not None
        rows.append((host, ANY, fallback))
        for cc in by_cc:
            if cc == GLOBAL:
                continue
            code = _pick([tally(c, w) for c, w in [(cc, True), *order[:2], (cc, False), *order[2:]]])
            if code is not None and code != fallback:
                rows.append((host, cc, code))
    return rows


def rebuild(con: duckdb.DuckDBPyConnection) -> int:
    """Derive ``categories`` from ``test_lists`` again (in the caller's transaction); returns its rows."""
    votes: Votes = {}
    for cc, url, code in con.execute("SELECT cc, url, category_code FROM test_lists "
                                     "WHERE category_code IS NOT NULL").fetchall():
        whole = urlsplit(url).path in ("", "/")
        for host in _hosts(url):
            votes.setdefault(host, {}).setdefault(cc, {}).setdefault(whole, Counter())[code] += 1
    rows = _resolved(votes)
    con.execute("DELETE FROM categories")
    if rows:
        table = pa.table({"c_domain": [r[0] for r in rows], "c_cc": [r[1] for r in rows],
                          "c_code": [r[2] for r in rows]})
        con.register("_categories", table)
        try:
            con.execute("INSERT INTO categories SELECT * FROM _categories")
        finally:
            con.unregister("_categories")
    return len(rows)


def store_lists(con: duckdb.DuckDBPyConnection, lists: list[TestList]) -> None:
    """Keep ``lists`` in the store, each replacing a list of the same name, and derive the categories again:
    one transaction."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    con.execute("BEGIN TRANSACTION")
    try:
        for tl in lists:
            con.execute("DELETE FROM test_lists WHERE list = ?", [tl.name])
            table = pa.table({
                "list": [tl.name] * len(tl.entries), "cc": [tl.cc] * len(tl.entries),
                "url": [e.url for e in tl.entries],
                "category_code": [normal_code(e.category_code) if e.category_code else None for e in tl.entries],
                "imported_at": pa.array([now] * len(tl.entries), pa.timestamp("us"))})
            con.register("_entries", table)
            try:
                con.execute("INSERT INTO test_lists SELECT * FROM _entries")
            finally:
                con.unregister("_entries")
        rebuild(con)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


__all__ = ["ANY", "CATEGORIES_DDL", "TEST_LISTS_DDL", "TestList", "category_sql", "read_test_list", "read_test_lists",
           "rebuild", "store_lists"]
