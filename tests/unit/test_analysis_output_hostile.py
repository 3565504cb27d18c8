"""What the analysis tools write, under hostile measurements: the proposed fingerprints (CSV, to a terminal too),
the JSON of ``report --json`` and ``analyze --jsonl``, the summary's examples; the memory ``report`` takes for
pages of many MiB; the country codes, networks and host names the store keeps; and what ``export --parquet``
may replace. Each test failed before its fix (QA's findings on the output side)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tracemalloc
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import duckdb
import orjson
import pytest

from tamperscope.analysis import command, hops, pipeline, unrecognised
from tamperscope.analysis.pipeline import Envelope, Selection, _asn, _cc, _uid_test, domain_of
from tamperscope.analysis.records import Rejection
from tamperscope.analysis.report import unknown_blockpages_in_words
from tamperscope.analysis.sheets import UNSEEN, cell, csv_text, escaped_json
from tamperscope.analysis.store import EXAMPLE_DETAIL, EXAMPLE_WHERE, Store, WriteStats
from tamperscope.analysis.transport import transport_of
from tamperscope.analysis.verdicts import FINGERPRINTS_ENV
from tamperscope.cli import main
from tamperscope.collector import samples
from tests.unit.test_new_blockpages import ISP_RU

_UNSEEN = re.compile(f"[{UNSEEN}]")
# ESC, BEL, NUL, BS, C1, bidi overrides and isolates, zero-width, line separator: in the title and in the text
EVIL_PAGE = ("<html><head><title>\x1b]52;c;ZXZpbA==\x07\x1b]0;PWNED\x07\x1b[2J\u202eBlocked\x85 \u200bpage\x08"
             "</title></head><body>\n<h1>Доступ к ресурсу {d} ограничен</h1>\n"
             "<p>\x1b[31mAccess to this site is restricted\u2028by order\u2066 of the court\x00 (case {i})</p>\n"
             "</body></html>")


def _run(*args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != FINGERPRINTS_ENV}
    return subprocess.run([sys.executable, "-m", "tamperscope", *args], capture_output=True, timeout=300, env=env)


def _anomaly(i: int, body: str, **kw: Any) -> dict[str, Any]:
    """A blockpage no fingerprint knows, judged an anomaly (an uncommon header: OONI's diff does not let it by)."""
    d = f"s{i}.example"
    m = samples.measurement("http.blockpage", url=kw.pop("url", f"http://{d}/"), probe_cc="RU", probe_asn="AS1",
                            start=f"2026-05-01 10:{i % 60:02d}:00", body=body.format(d=d, i=i), report_id=f"r{i}", **kw)
    m["test_keys"]["requests"][0]["response"]["headers"]["X-Filter"] = "on"
    m["test_keys"]["requests"][0]["response"]["headers_list"].append(["X-Filter", "on"])
    return m


def _store(tmp_path: Path, measurements: list[dict[str, Any]], name: str = "s") -> Path:
    (tmp_path / f"{name}.jsonl").write_bytes(b"\n".join(orjson.dumps(m) for m in measurements))
    db = tmp_path / f"{name}.duckdb"
    res = _run("analyze", "--quiet", "--db", str(db), str(tmp_path / f"{name}.jsonl"))
    assert res.returncode == 0, res.stderr
    return db


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


# --------------------------------------------------------------------------- 1. proposed fingerprints


def test_a_proposed_fingerprint_carries_no_terminal_escape_and_still_matches(tmp_path: Path) -> None:
    """The page's title (common_name) and text (pattern) went into the CSV with ESC, BEL, NUL, C1 and bidi
    controls as they were: with ``-``, to the terminal; and in the HTML report's data: link."""
    db = _store(tmp_path, [_anomaly(i, EVIL_PAGE) for i in range(3)])
    res = _run("report", "--db", str(db), "--propose-fingerprints", "-")
    assert res.returncode == 0, res.stderr
    text = res.stdout.decode()
    assert not _UNSEEN.search(text), ascii(text)
    (row,) = list(csv.DictReader(io.StringIO(text)))
    # the title as the terminal report shows it: controls folded into spaces
    assert row["common_name"] == "]52;c;ZXZpbA== ]0;PWNED [2J Blocked page"
    pattern = row["pattern"]
    assert pattern and all(pattern in EVIL_PAGE.format(d=f"s{i}.example", i=i) for i in range(3))
    # the HTML report's link saves the same file
    out = tmp_path / "r.html"
    assert _run("report", "--db", str(db), "--html", str(out)).returncode == 0
    link = out.read_text().split("href='data:text/csv;charset=utf-8,")[1].split("'")[0]
    assert unquote(link) == text.replace("\r\n", "\n").replace("\n", "\r\n") and not _UNSEEN.search(unquote(link))
    # and the pattern finds the pages as the matcher reads them
    mine = tmp_path / "mine.csv"
    mine.write_text(text)
    res = _run("analyze", "--fingerprints", str(mine), "--reanalyse", "stale", "--db", str(db))
    assert res.returncode == 0, res.stderr
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT outcome, fingerprints FROM verdicts").fetchall() == [
            ("confirmed", [f"local/{row['name']}"])] * 3
    finally:
        con.close()


def test_a_pattern_is_cut_where_a_character_no_one_sees_is() -> None:
    pages = [f"<p>Access to site {i} is \x1b[2Jblocked by the court\u202e order</p>" for i in range(3)]
    pattern = unrecognised.propose(pages)
    assert pattern == "Jblocked by the court" and all(pattern in p for p in pages)
    for bad in ("\x00", "\x07", "\x1b", "\x85", "\x9b", "\u200b", "\u2028", "\u2029", "\u202a", "\u2067", "\ufeff"):
        found = unrecognised.propose([f"<p>The access to this{bad}page is blocked</p>"] * 2)
        assert found is not None and bad not in found, ascii(bad)


def test_a_title_that_is_a_formula_behind_a_control_is_text_in_a_spreadsheet() -> None:
    g = unrecognised.Group(key="k" * 16, title='\x00\x1b=HYPERLINK("http://evil.example")', status=200, server="",
                           pattern="The access to this page is blocked")
    g.countries["RU"] += 1
    row = g.fingerprint(None)
    assert row["common_name"] == '=HYPERLINK("http://evil.example")'
    line = csv_text([row], unrecognised.CSV_HEADER).splitlines()[1]
    assert line.split(",")[1] == '"\'=HYPERLINK(""http://evil.example"")"'
    # a cell that starts so, written by any export, is text as well, and its controls are shown, not carried
    assert [cell(v) for v in ("\x00=1", "\x1b+1", " -1", "\u202e@a", "\x00x", "a=1")] == [
        "'\ufffd=1", "'\ufffd+1", "' -1", "'\\u202e@a", "\ufffdx", "a=1"]


# --------------------------------------------------------------------------- 2. memory for pages of many MiB


def _big_store(tmp_path: Path, name: str, count: int, mib: int) -> Store:
    pad = "<!-- " + "x" * (mib * 2**20) + " -->"
    path = tmp_path / f"{name}.jsonl"
    with open(path, "wb") as f:
        for i in range(count):
            f.write(orjson.dumps(_anomaly(i, ISP_RU + pad)) + b"\n")
    store = Store(tmp_path / f"{name}.duckdb")
    pipeline.run([str(path)], store)
    path.unlink()
    return store


def _peak(store: Store) -> tuple[int, int]:
    """The peak of Python's allocations while the report reads the raw measurements (the unrecognised
    blockpages and where on the path), and how many measurements its templates hold."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        rows = unknown_blockpages_in_words(store, None, 10)
        hops.located(store)
        return tracemalloc.get_traced_memory()[1], sum(r["measurement_count"] for r in rows)
    finally:
        tracemalloc.stop()
        store.close()


def test_the_report_holds_one_raw_measurement_at_a_time_whatever_their_size(tmp_path: Path) -> None:
    """`Store.raw_many` decompressed the newest 2,000 candidates whole into one dict before anything was cut to
    32 KiB: 300 pages of 14 MiB took `report` to 4.75 GB. Read one at a time, what it holds does not grow with
    their number; only the parse of the one being read grows with its size."""
    mib, few, many = 6, 4, 48
    small_few = _peak(_big_store(tmp_path, "a", few, mib))
    big_many = _peak(_big_store(tmp_path, "b", many, mib))
    small_many = _peak(_big_store(tmp_path, "c", many, 1))
    assert (small_few[1], big_many[1], small_many[1]) == (few, many, many)  # every page read
    # 44 measurements more: not 44 × 6 MiB more (their 32 KiB of text each is kept); before, 170 MiB more
    assert big_many[0] - small_few[0] < mib * 2**20, (small_few, big_many)
    # pages 5 MiB larger each: far below 48 × 5 MiB more (what grows is the parse of the one page being read:
    # orjson takes about 15 times a line's size while it parses it, some 80 MiB here)
    assert big_many[0] - small_many[0] < many * (mib - 1) * 2**20 / 2, (small_many, big_many)


def test_raw_each_gives_what_raw_many_gives(tmp_path: Path) -> None:
    store = _big_store(tmp_path, "s", 5, 1)
    try:
        uids = [r[0] for r in store.con.execute("SELECT measurement_uid FROM measurements").fetchall()]
        assert dict(store.raw_each([*uids, "nope"])) == store.raw_many(uids) and len(store.raw_many(uids)) == 5
        # and the explorer's reader, its frames through its cache, gives the same bytes, in the order stored
        from tamperscope.collector.queries import Reader

        reader = Reader(store)
        assert list(reader.raw_each([*uids[::-1], "nope"])) == list(store.raw_each(uids))
        assert reader.raw_many(uids) == store.raw_many(uids)
    finally:
        store.close()


# --------------------------------------------------------------------------- 3. country codes and networks


def test_a_country_code_is_checked_as_ascii_before_it_is_upper_cased() -> None:
    """'ır'.upper() is 'IR', 'ß' 'SS', 'ſe' 'SE', 'ﬆ' 'ST': they were stored as those countries."""
    assert [_cc(v) for v in ("ır", "ß", "ſe", "ﬆ", "ǈ", "Ǳ")] == ["ZZ"] * 6
    assert [_cc(v) for v in ("ir", " tr ", "IT", "I1")] == ["IR", "TR", "IT", "ZZ"]
    assert [_asn(v) for v in ("aſ12", "ﬆ12", "AS12", "as12", "12")] == ["AS0", "AS0", "AS12", "AS12", "AS12"]
    assert _uid_test("faceboo\u212a_messenger") == "faceboomessenger" and _uid_test("Web_Connectivity") == \
        "webconnectivity"
    assert transport_of({"transport_name": "\u212anowflake"}) is None
    assert transport_of({"transport_name": " OBFS4 "}) == "obfs4"
    # the options too: a country, a network, a test named so is refused
    import argparse
    for parse, value in ((command._country, "ır"), (command._asn, "aſ5"), (command._test_name, "\u212aeep")):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(value)
    import datetime as dt
    env = Envelope("faceboo\u212a_messenger", dt.datetime(2026, 1, 1), "IT", "AS1", None, None)
    assert not Selection(test_name=frozenset({"facebook_messenger"})).admits(env)


# --------------------------------------------------------------------------- 4. export --parquet


def test_a_re_export_carries_dot_names_over_and_refuses_what_it_did_not_write(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A dot-named entry in a table's folder (DIR/measurements/.notes, .git) was moved aside with the folder and
    deleted; so was a README inside a day=… folder."""
    db = _store(tmp_path, [_anomaly(i, ISP_RU) for i in range(2)])
    out = tmp_path / "export"
    assert main(["export", "--parquet", str(out), "--db", str(db)]) == 0
    (out / "measurements" / ".notes").write_text("mine")
    (out / "verdicts" / ".git").mkdir()
    (out / "verdicts" / ".git" / "HEAD").write_text("ref: refs/heads/main")
    assert main(["export", "--parquet", str(out), "--db", str(db)]) == 0
    assert (out / "measurements" / ".notes").read_text() == "mine"
    assert (out / "verdicts" / ".git" / "HEAD").read_text() == "ref: refs/heads/main"
    assert list((out / "measurements").rglob("*.parquet")) and not list(out.glob(".export-*"))
    capsys.readouterr()

    (day,) = (out / "verdicts").glob("day=*")
    for theirs in (day / "README", day / "probe_cc=RU" / "notes.txt", day / ".DS_Store"):
        theirs.write_text("mine")
        assert main(["export", "--parquet", str(out), "--db", str(db)]) == 2
        assert f"{theirs} is not an earlier export's own" in _one_line_error(capsys)
        assert theirs.read_text() == "mine"
        theirs.unlink()


def test_an_export_into_a_directory_of_ones_own_or_the_stores_raw_folder_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`export --parquet ~` (or /) wrote the tables among one's files; into the store's raw folder, among its
    segments (report and --jsonl refuse it)."""
    db = _store(tmp_path, [_anomaly(i, ISP_RU) for i in range(2)])
    home = tmp_path / "home"
    home.mkdir()
    (home / "letter.txt").write_text("mine")
    assert main(["export", "--parquet", str(home), "--db", str(db)]) == 2
    assert f"{home} is not empty (letter.txt is there) and holds no earlier export" in _one_line_error(capsys)
    assert sorted(p.name for p in home.iterdir()) == ["letter.txt"]
    raw = tmp_path / "s.raw"
    for target in (raw, raw / "pq"):
        before = sorted(str(p) for p in raw.rglob("*"))
        assert main(["export", "--parquet", str(target), "--db", str(db)]) == 2
        assert f"--parquet {target} is the store's raw measurements ({db}): give the output a directory of its own" \
            in _one_line_error(capsys)
        assert sorted(str(p) for p in raw.rglob("*")) == before
    # an empty directory, and one an export left, are fine
    (tmp_path / "empty").mkdir()
    assert main(["export", "--parquet", str(tmp_path / "empty"), "--db", str(db)]) == 0
    assert main(["export", "--parquet", str(tmp_path / "empty"), "--db", str(db)]) == 0


# --------------------------------------------------------------------------- 5. JSON written


CONTROLS_UTF8 = (b"\xc2\x85", b"\xc2\x9b", b"\xe2\x80\xae", b"\xe2\x81\xa6", b"\xe2\x80\xa8", b"\xe2\x80\x8b", b"\x7f")


def test_the_json_written_escapes_c1_and_bidi_controls(tmp_path: Path) -> None:
    """orjson escapes C0 only: ``report --json -`` and ``analyze --jsonl -`` sent C1 controls (CSI, NEL) and bidi
    overrides to the terminal as they were."""
    url = "http://s1.example/\u202eevil\u0085\u009b2J\u2066\u2028\u200b\x7f"
    network = "Evil\u202eNet\u0085\u2028"
    m = _anomaly(1, ISP_RU, url=url, network_name=network)
    (tmp_path / "m.jsonl").write_bytes(orjson.dumps(m))
    db = tmp_path / "s.duckdb"
    res = _run("analyze", "--quiet", "--db", str(db), "--jsonl", "-", str(tmp_path / "m.jsonl"))
    assert res.returncode == 0, res.stderr
    assert not any(c in res.stdout for c in CONTROLS_UTF8), res.stdout
    assert json.loads(res.stdout)["input"] == url  # the same value, read back
    res = _run("report", "--db", str(db), "--json", "-")
    assert res.returncode == 0, res.stderr
    assert not any(c in res.stdout for c in CONTROLS_UTF8)
    assert network in {n["probe_network_name"] for n in json.loads(res.stdout)["networks"]}


def test_escaped_json_escapes_exactly_what_is_unseen_beyond_c0() -> None:
    unseen = re.compile(f"[{UNSEEN}]")
    for cp in [*range(0x20, 0xD800), *range(0xE000, 0x10000), 0x1F600, 0x10FFFF]:
        ch = chr(cp)
        data = orjson.dumps(ch)
        escaped = escaped_json(data)
        assert orjson.loads(escaped) == ch
        assert (escaped == f'"\\u{cp:04x}"'.encode()) == bool(unseen.fullmatch(ch)), hex(cp)
    plain = orjson.dumps({"a": "яндекс.рф", "b": 1})
    assert escaped_json(plain) is plain


# --------------------------------------------------------------------------- 6. the summary's examples


def test_a_100_kb_member_name_is_cut_in_the_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = "d" * 100_000 + "/last.jsonl"
    data = b"not json\n"
    can = tmp_path / "can.tar.gz"
    with tarfile.open(can, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    good = tmp_path / "good.jsonl"
    good.write_bytes(orjson.dumps(_anomaly(1, ISP_RU)))
    main(["analyze", "--db", str(tmp_path / "s.duckdb"), str(can), str(good)])
    examples = [line for line in capsys.readouterr().out.splitlines() if "e.g." in line]
    assert examples and all(len(line) <= 11 + EXAMPLE_WHERE + 2 + EXAMPLE_DETAIL for line in examples), \
        [len(line) for line in examples]
    assert "…" in examples[0] and "last.jsonl:1: " in examples[0]

    stats = WriteStats()
    stats.add_rejections([Rejection("x" * 100_000 + ":7", 7, "invalid_json", "y" * 100_000)])
    (shown,) = stats.examples["invalid_json"]
    assert len(shown) == EXAMPLE_WHERE + 2 + EXAMPLE_DETAIL and shown.startswith("xxx") and ":7: " in shown


# --------------------------------------------------------------------------- 7. host names


def test_a_host_with_a_control_or_an_invisible_character_is_no_domain() -> None:
    """_host refused C0 controls only: C1 controls, bidi overrides, zero-width characters, U+2028 were stored in
    the domain, and shown everywhere."""
    for bad in ("\x85", "\x9b", "\u202e", "\u2066", "\u200b", "\u2028", "\u2029", "\ufeff", "\u00ad",
                "\u00a0", "\u3000", "\ue000"):
        assert domain_of("web_connectivity", f"http://exa{bad}mple.com/") is None, ascii(bad)
        assert domain_of("dnscheck", f"exa{bad}mple.com") is None, ascii(bad)
    assert domain_of("web_connectivity", "http://xn--d1acpjx3f.xn--p1ai/") == "яндекс.рф"
    assert domain_of("web_connectivity", "https://Example.COM./x") == "example.com"
    assert domain_of("web_connectivity", "http://a\x01b.example/") is None  # as before
    # the zero-width non-joiner and joiner are in names IDNA 2008 allows (Persian writes with the non-joiner)
    persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645.ir"
    assert domain_of("web_connectivity", f"http://{persian}/") == persian
