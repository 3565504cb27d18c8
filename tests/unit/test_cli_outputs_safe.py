"""Outputs that would destroy what the user has (the store, an input, an earlier run's verdicts, a link), paths no
file can have, closed streams and overlong values: each is one line on stderr, and nothing is lost."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"
ONE = SAMPLES / "dnsBlockingNXDOMAIN" / "measurement.json"


def _run(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tamperscope", *args], capture_output=True, text=True, timeout=300,
                          check=False, **kwargs)  # type: ignore[call-overload]


def _one_line(p: subprocess.CompletedProcess[str], code: int) -> str:
    assert p.returncode == code, (p.returncode, p.stderr[-2000:])
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tamperscope"), p.stderr[-2000:]
    return lines[0]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    db = tmp_path / "s.duckdb"
    assert _run("analyze", str(ONE), "--db", str(db), "--quiet").returncode == 0
    return db


def _still_a_store(db: Path) -> None:
    p = _run("report", "--db", str(db))
    assert p.returncode == 0 and p.stdout.startswith("1 measurement on "), p.stderr


def test_a_report_or_verdicts_aimed_at_the_store_are_refused(store: Path, tmp_path: Path) -> None:
    before = store.read_bytes()
    other_spelling = str(tmp_path / ".." / tmp_path.name / store.name)
    for args in (["report", "--db", str(store), "--html", str(store)],
                 ["report", "--db", str(store), "--json", other_spelling],
                 ["report", "--db", str(store), "--json", str(store) + ".wal"],
                 ["analyze", str(ONE), "--db", str(store), "--jsonl", other_spelling]):
        assert "is the store" in _one_line(_run(*args), 2)
    assert store.read_bytes() == before and not Path(str(store) + ".wal").exists()
    _still_a_store(store)


def test_verdicts_aimed_at_an_input_are_refused(tmp_path: Path) -> None:
    data = tmp_path / "in.json"
    shutil.copyfile(ONE, data)
    before = data.read_bytes()
    line = _one_line(_run("analyze", str(data), "--db", str(tmp_path / "s.duckdb"), "--jsonl", str(data)), 2)
    assert "is also an input" in line and data.read_bytes() == before
    # inside a directory given as input, too
    line = _one_line(_run("analyze", str(tmp_path), "--db", str(tmp_path / "t.duckdb"), "--jsonl", str(data)), 2)
    assert "is also an input" in line and data.read_bytes() == before


def test_a_run_that_analyses_nothing_leaves_the_earlier_verdicts(store: Path, tmp_path: Path) -> None:
    verdicts = tmp_path / "v.jsonl"
    assert _run("analyze", str(ONE), "--db", str(store), "--jsonl", str(verdicts), "--reread").returncode == 0
    kept = verdicts.read_bytes()
    assert kept.count(b"\n") == 1
    garbage = tmp_path / "g.jsonl"
    garbage.write_bytes(b"not json\n")
    failed = _run("analyze", str(garbage), "--db", str(store), "--jsonl", str(verdicts))
    assert failed.returncode == 1 and "left as it was" in failed.stderr
    # one failure, one line (it was two: the --jsonl note, then why)
    assert failed.stderr.strip() == (f"tamperscope: no usable measurement in the input; --jsonl {verdicts} left as "
                                     "it was"), failed.stderr
    fresh = tmp_path / "fresh.jsonl"
    failed = _run("analyze", str(garbage), "--db", str(store), "--jsonl", str(fresh), "--reread")
    assert failed.stderr.strip() == f"tamperscope: no usable measurement in the input; --jsonl {fresh} not written"
    assert not fresh.exists()
    assert verdicts.read_bytes() == kept
    # the same file again: skipped as known, nothing analysed, the verdicts stay
    again = _run("analyze", str(ONE), "--db", str(store), "--jsonl", str(verdicts))
    assert again.returncode == 0 and "left as it was" in again.stderr
    assert verdicts.read_bytes() == kept


def test_a_report_through_a_link_keeps_the_link(store: Path, tmp_path: Path) -> None:
    real = tmp_path / "real.html"
    real.write_text("old")
    link = tmp_path / "link.html"
    link.symlink_to(real)
    assert _run("report", "--db", str(store), "--html", str(link)).returncode == 0
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text().startswith("<!doctype html>")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_store_cut_short_is_refused_before_anything_writes_to_it(store: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.duckdb"
    data = store.read_bytes()
    cut.write_bytes(data[:len(data) * 2 // 3])
    for args in (["report", "--db", str(cut)], ["analyze", str(ONE), "--db", str(cut), "--reread"],
                 ["export", "--db", str(cut), "--parquet", str(tmp_path / "pq")]):
        line = _one_line(_run(*args), 2)
        assert str(cut) in line and "is cut short" in line
    assert cut.read_bytes() == data[:len(data) * 2 // 3] and not Path(f"{cut}.wal").exists()


def test_a_store_whose_blocks_do_not_read_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "big.duckdb"
    assert _run("analyze", str(SAMPLES), "--db", str(db), "--quiet").returncode == 0
    data = bytearray(db.read_bytes())
    for block in range(12288 + 262144, len(data), 262144):  # past DuckDB's headers and first block: the tables'
        data[block + 100:block + 60000] = bytes(59900)
    db.write_bytes(bytes(data))
    for args in (["report", "--db", str(db)], ["analyze", str(ONE), "--db", str(db), "--reread"]):
        line = _one_line(_run(*args), 1)
        assert str(db) in line and "cannot be read" in line and "checksum" in line


def test_paths_no_file_can_have_are_one_line(store: Path, tmp_path: Path) -> None:
    long = str(tmp_path / ("x" * 300))
    for args in (["analyze", long, "--db", str(tmp_path / "a.duckdb")],
                 ["report", "--db", long],
                 ["report", "--db", str(store), "--html", long],
                 ["analyze", str(ONE), "--db", str(tmp_path / "b.duckdb"), "--jsonl", long],
                 ["export", "--db", str(store), "--parquet", long]):
        line = _one_line(_run(*args), 2)
        assert "too long" in line and len(line) < 400


def test_a_closed_stdout_an_unknown_option_and_an_overlong_value(store: Path) -> None:
    closed = subprocess.run([sys.executable, "-m", "tamperscope", "report", "--db", str(store)], stderr=subprocess.PIPE,
                            text=True, timeout=300, check=False, preexec_fn=lambda: os.close(1))
    assert closed.returncode == 0 and "Traceback" not in closed.stderr, closed.stderr[-2000:]
    assert "unknown option --bogus" in _one_line(_run("--bogus"), 2)
    line = _one_line(_run("report", "--db", str(store), "--domain", "a" * 70_000), 2)
    assert len(line) < 500 and "--domain" in line


def test_a_scheduler_address_is_checked_before_anything_is_sent(tmp_path: Path) -> None:
    for address, words in (("tcp://[::1", "not an address"), ("tcp://198.18.0.1:99999", "not an address"),
                           ("", "needs an address"), ("http://198.18.0.1:8786", "scheme"),
                           ("tcp://198.18.0.1", "a host and a port"),
                           # said to have answered 'but not as one' where nothing answered (QA)
                           ("inproc://x", "scheme"), ("tcp://198.18.0.1:0", "a host and a port"),
                           ("tcp://198.18.0.1:8786/path", "without a path")):
        t = time.monotonic()
        line = _one_line(_run("analyze", str(ONE), "--db", str(tmp_path / "s.duckdb"), "--engine", "dask",
                              "--scheduler", address), 2)
        assert words in line and time.monotonic() - t < 30
    assert not (tmp_path / "s.duckdb").exists()  # refused before the store was opened


def test_an_output_aimed_at_a_file_of_measurements_is_refused(store: Path, tmp_path: Path) -> None:
    """QA: `report --json FILE` overwrote a file of measurements that was not this run's input. A file whose
    first line (or whole text) is a measurement, or that is compressed as measurements are kept, is refused by
    every output; an earlier report or verdict file is overwritten as before."""
    lines = tmp_path / "measurements.jsonl"
    lines.write_bytes(ONE.read_bytes().replace(b"\n", b" ").strip() + b"\n")
    pretty = tmp_path / "one.json"
    shutil.copyfile(ONE, pretty)  # a measurement written over several lines
    packed = tmp_path / "m.jsonl.gz"
    packed.write_bytes(__import__("gzip").compress(lines.read_bytes()))
    # and, as the adversarial pass found the first cut missed them: measurements longer than what is read of the
    # file (a 100 KB body each), a BOM, an array, OONI's .post, bzip2 and xz
    import bz2
    import json
    import lzma

    one = json.loads(ONE.read_bytes())
    one["test_keys"]["requests"] = [{"response": {"body": "x" * 100_000}}]
    big = tmp_path / "big.jsonl"
    big.write_text((json.dumps(one) + "\n") * 2)
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + ONE.read_bytes())
    array = tmp_path / "array.json"
    array.write_text(json.dumps([json.loads(ONE.read_bytes())]))
    post = tmp_path / "m.post"
    post.write_text(json.dumps({"format": "json", "content": json.loads(ONE.read_bytes())}))
    bz = tmp_path / "m.jsonl.bz2"
    bz.write_bytes(bz2.compress(lines.read_bytes()))
    xz = tmp_path / "m.jsonl.xz"
    xz.write_bytes(lzma.compress(lines.read_bytes()))
    for target in (lines, pretty, packed, big, bom, array, post, bz, xz):
        before = target.read_bytes()
        for option in ("--json", "--html", "--propose-fingerprints"):
            line = _one_line(_run("report", "--db", str(store), option, str(target)), 2)
            assert "which writing there would replace" in line, line
        line = _one_line(_run("analyze", str(ONE), "--db", str(store), "--jsonl", str(target)), 2)
        assert "which writing there would replace" in line, line
        assert target.read_bytes() == before
    report = tmp_path / "report.json"
    for _ in range(2):  # the second run replaces the first's report: that is no measurement
        assert _run("report", "--db", str(store), "--json", str(report)).returncode == 0
    verdicts = tmp_path / "verdicts.jsonl"
    for _ in range(2):
        p = _run("analyze", str(ONE), "--db", str(tmp_path / "fresh.duckdb"), "--jsonl", str(verdicts))
        assert p.returncode == 0, p.stderr
        (tmp_path / "fresh.duckdb").unlink()
