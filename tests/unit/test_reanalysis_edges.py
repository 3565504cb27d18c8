"""`analysis.reanalysis` at its edges, in process: what counts as stale, older or newer, how the selection is paged,
and what a re-analysis of a chunk counts (changed, fingerprinted, missing) when some raw bytes are damaged or absent.
One small store (four measurements from RU) is analysed once per module and copied for each test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tamperscope.analysis import reanalysis
from tamperscope.analysis.pipeline import analyse_batch
from tamperscope.analysis.reader import Line
from tamperscope.analysis.store import Store, damaged
from tamperscope.analysis.verdicts import ANALYSIS_VERSION, default_matcher
from tests.unit.test_local_fingerprints import _measurements

CURRENT = int(ANALYSIS_VERSION.split("+", 1)[0])


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reanalysis-template")
    with Store(root / "s.duckdb") as store:
        lines = [Line("m.jsonl", i + 1, orjson.dumps(m)) for i, m in enumerate(_measurements())]
        store.write(analyse_batch(lines, default_matcher()))
        store.finish_run()
    return root


@pytest.fixture
def store(template: Path, tmp_path: Path) -> Iterator[Store]:
    shutil.copytree(template, tmp_path / "copy")
    with Store(tmp_path / "copy" / "s.duckdb") as s:
        yield s


def _uids(store: Store) -> list[str]:
    return [r[0] for r in store.con.execute("SELECT measurement_uid FROM verdicts ORDER BY 1").fetchall()]


def _set(store: Store, uids: list[str], assignment: str, *params: object) -> None:
    store.con.execute(f"UPDATE verdicts SET {assignment} WHERE measurement_uid IN (SELECT unnest(?::VARCHAR[]))",
                      [*params, uids])


# -- versions ---------------------------------------------------------------------------------------------------------

def test_a_release_is_a_short_ascii_number_before_any_local_part() -> None:
    """Would break if digits of another script (int() reads them) or a number too long for a release counted."""
    assert reanalysis._release("23") == 23
    assert reanalysis._release("23+local.ab12") == 23
    assert reanalysis._release("٢٣") is None  # Arabic-Indic digits: str.isdigit() says yes, no release wrote it
    assert reanalysis._release("1234567890") is None
    assert reanalysis._release("dev") is None and reanalysis._release("") is None and reanalysis._release(None) is None


def test_a_verdict_with_no_analysis_version_is_stale(store: Store) -> None:
    """Would break if the stale condition were `<>`, which a NULL version never satisfies."""
    uids = _uids(store)
    assert reanalysis.count(store.con, stale_only=True) == 0 and reanalysis.count(store.con) == 4
    _set(store, uids[:1], "analysis_version = NULL")
    assert reanalysis.count(store.con, stale_only=True) == 1
    assert reanalysis.page_after(store.con, "", stale_only=True) == uids[:1]


def test_stale_means_another_analysis_whatever_the_condition(store: Store) -> None:
    uids = _uids(store)
    _set(store, uids[1:3], "analysis_version = '9'")
    assert reanalysis.count(store.con, stale_only=True) == 2
    assert reanalysis.count(store.con, where="measurement_uid <> ?", params=[uids[1]], stale_only=True) == 1
    assert list(reanalysis.pages(store.con, stale_only=True)) == [uids[1:3]]


def test_a_version_no_release_wrote_is_older_and_comes_first(store: Store) -> None:
    """Would break if a version that is no number were not counted older, or were put after the releases."""
    uids = _uids(store)
    _set(store, uids[:1], "analysis_version = ?", f"{CURRENT - 1}")
    _set(store, uids[1:2], "analysis_version = 'dev'")
    _set(store, uids[2:3], "analysis_version = '9'")
    _set(store, uids[3:4], "analysis_version = ?", f"{CURRENT + 1}")
    assert list(reanalysis.older(store.con).items()) == [("dev", 1), ("9", 1), (f"{CURRENT - 1}", 1)]
    assert reanalysis.newer(store.con) == {f"{CURRENT + 1}": 1}


def test_older_in_words_counts_with_the_right_plural() -> None:
    assert reanalysis.older_words({"15": 1}) == "1 verdict from an older analysis (version 15: 1)"
    assert reanalysis.older_words({"9": 1200, "15": 34}, "a newer") == (
        "1,234 verdicts from a newer analysis (version 9: 1,200, version 15: 34)")


# -- paging ------------------------------------------------------------------------------------------------------------

def test_pages_are_of_the_size_asked_in_uid_order(store: Store) -> None:
    """Would break if a page held one uid more than asked (a server's transaction grows past `CHUNK`)."""
    uids = _uids(store)
    assert list(reanalysis.pages(store.con, size=3)) == [uids[:3], uids[3:]]
    assert reanalysis.page_after(store.con, uids[1], size=1) == [uids[2]]
    assert reanalysis.page_after(store.con, uids[-1]) == []


# -- what a re-analysis counts ----------------------------------------------------------------------------------------

def test_totals_add_every_count() -> None:
    """Would break if a count were left out of the sum over pages (networks named by a run's ASN table)."""
    total = reanalysis.Totals(1, 2, 3, 4, 5)
    total.add(reanalysis.Totals(10, 20, 30, 40, 50))
    assert total.as_dict() == {"reanalysed": 11, "changed": 22, "missing": 33, "fingerprinted": 44,
                               "networks_named": 55}


def test_a_verdict_that_changed_is_told_from_one_whose_fingerprints_alone_did(store: Store) -> None:
    """Would break if other fingerprints under the same verdict counted as a changed verdict."""
    uids = _uids(store)
    before = {r[0]: r[1:] for r in store.con.execute("SELECT measurement_uid, mechanism, fingerprints FROM verdicts")
              .fetchall()}
    _set(store, uids[:1], "mechanism = 'dns.poison', blocking = 'dns'")
    _set(store, uids[1:2], "fingerprints = ['local/made_up']")
    totals = reanalysis.reanalyse(store, store.raw_many, uids)
    assert totals.as_dict() == {"reanalysed": 4, "changed": 1, "missing": 0, "fingerprinted": 1,
                                "networks_named": 0}
    after = {r[0]: r[1:] for r in store.con.execute("SELECT measurement_uid, mechanism, fingerprints FROM verdicts")
             .fetchall()}
    assert after == before


def test_bytes_that_are_no_json_count_missing_and_name_a_damaged_segment(store: Store) -> None:
    """Would break if unreadable bytes were counted as re-derived, or said to be refused by the analysis."""
    uids = _uids(store)
    _set(store, uids[:2], "mechanism = 'dns.poison'")
    good = store.raw_many(uids[:1])
    totals = reanalysis.reanalyse(store, lambda wanted: {**good, uids[1]: b"{not json"}, uids[:3])
    assert (totals.reanalysed, totals.changed, totals.missing) == (1, 1, 2)
    segment = store.con.execute("SELECT raw_segment FROM measurements WHERE measurement_uid = ?",
                                [uids[1]]).fetchone()[0]
    assert store.unreadable == {segment: damaged(segment)}
    mechanisms = dict(store.con.execute("SELECT measurement_uid, mechanism FROM verdicts").fetchall())
    assert mechanisms[uids[1]] == "dns.poison"  # kept as it was


def test_a_chunk_with_no_readable_bytes_is_all_missing(store: Store) -> None:
    uids = _uids(store)
    assert reanalysis.reanalyse(store, lambda wanted: {}, uids[:3]).as_dict() == {
        "reanalysed": 0, "changed": 0, "missing": 3, "fingerprinted": 0, "networks_named": 0}


def test_progress_counts_the_uids_of_each_page_read_or_not(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Would break if progress counted only the measurements whose bytes could be read (it never reached the
    selection's size)."""
    uids = _uids(store)
    readable = store.raw_many
    monkeypatch.setattr(store, "raw_many", lambda wanted: {u: b for u, b in readable(wanted).items() if u != uids[1]})
    told: list[int] = []
    totals = reanalysis.reanalyse_all(store, iter([uids[:2], uids[2:]]), progress=told.append)
    assert told == [2, 4]
    assert (totals.reanalysed, totals.missing) == (3, 1)
