"""`tamperscope analyze`, `report` and `export` at the edges of their options: the bounds each option checks, the
outputs refused before anything is written, and what is said. In this process; no store is made unless named."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import tarfile
from pathlib import Path

import pytest

from tamperscope.analysis import command
from tamperscope.cli import UsageError, main


@pytest.fixture(autouse=True)
def _no_tamperscope_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for k in list(os.environ):
        if k.startswith("TAMPERSCOPE_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)


def _said(capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 2) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_a_country_code_is_exactly_two_letters() -> None:
    """One letter ('I') or three are no country; two are, upper-cased."""
    assert command._country(" ir ") == "IR"
    for bad in ("I", "", "IRN", "I1"):
        with pytest.raises(argparse.ArgumentTypeError, match="is not a two-letter country code"):
            command._country(bad)
    assert command._countries("ir,,tm, ") == ["IR", "TM"]  # empty parts of a list are passed over


def test_an_as_number_is_1_to_2_to_the_32_minus_1() -> None:
    """AS0 means 'unknown' and 2**32 does not fit in 32 bits: neither is a network one can ask for."""
    assert command._asn("as4294967295") == "AS4294967295"
    assert command._asn(" 007 ") == "AS7"
    assert command._asn("AS1") == "AS1"
    for bad in ("AS0", "0", "4294967296", "AS4294967296", "AS-1", "AS"):
        with pytest.raises(argparse.ArgumentTypeError, match="is not an AS number"):
            command._asn(bad)


def test_a_test_name_is_at_most_64_characters() -> None:
    """64 characters are a test name; 65 are refused (a bound off by one would take them)."""
    assert command._test_name("A" * 64) == "a" * 64
    assert command._test_name(" Web_Connectivity ") == "web_connectivity"
    for bad in ("a" * 65, "", "web-connectivity", "tor;"):
        with pytest.raises(argparse.ArgumentTypeError, match="is not a test name"):
            command._test_name(bad)


def test_a_domain_is_at_most_253_characters_without_its_final_dot() -> None:
    """A 253-character name is a domain (with its root dot, too); 254 are no domain name."""
    name = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(name) == 253
    assert command._domain(name) == name
    assert command._domain(name + ".") == name
    assert command._domain("Example.ORG.") == "example.org"
    for bad in (name + "b", ".", "", "exa mple.org", "http://x/"):
        with pytest.raises(argparse.ArgumentTypeError, match="is not a domain name"):
            command._domain(bad)


def test_since_the_same_day_as_until_is_one_day() -> None:
    """--since D --until D asks for the one day D; only --since after --until is refused."""
    day = dt.date(2024, 3, 1)
    command._check_days(argparse.Namespace(since=day, until=day))
    command._check_days(argparse.Namespace(since=None, until=day))
    with pytest.raises(UsageError, match="--since 2024-03-02 is after --until 2024-03-01"):
        command._check_days(argparse.Namespace(since=dt.date(2024, 3, 2), until=day))


def test_report_limit_takes_1_to_10000(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--limit 10000 passes the check (and meets the absent store); 10001 and 0 are refused first."""
    db = str(tmp_path / "absent.duckdb")
    assert "--limit must be between 1 and 10,000" in _said(capsys, ["report", "--db", db, "--limit", "10001"])
    assert "--limit must be between 1" in _said(capsys, ["report", "--db", db, "--limit", "0"])
    err = _said(capsys, ["report", "--db", db, "--limit", "10000"])
    assert "--limit" not in err and "no store at" in err, err


def test_analyze_takes_as_many_workers_as_four_per_cpu(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """4 workers per CPU is the most that helps: that many are allowed, one more is refused."""
    most = 4 * (os.cpu_count() or 1)
    db = str(tmp_path / "s.duckdb")
    assert f"at most {most} workers help" in _said(capsys, ["analyze", "--db", db, "--workers", str(most + 1)])
    err = _said(capsys, ["analyze", "--db", db, "--workers", str(most)])
    assert "give the measurement files or directories" in err, err
    assert not (tmp_path / "s.duckdb").exists()


def test_report_outputs_naming_one_file_are_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--propose-fingerprints and --json (or --html) naming one file would overwrite one with the other."""
    db = str(tmp_path / "absent.duckdb")
    same = str(tmp_path / "out.txt")
    for other in ("--json", "--html"):
        err = _said(capsys, ["report", "--db", db, "--propose-fingerprints", same, other, same])
        assert f"--propose-fingerprints and {other} both name {same}: give each its own file" in err, err
    err = _said(capsys, ["report", "--db", db, "--json", same, "--html", same])
    assert f"--json and --html both name {same}" in err
    assert not (tmp_path / "out.txt").exists()


def test_a_new_output_is_written_beside_itself_then_renamed(tmp_path: Path) -> None:
    """A file not there yet is a regular file to be: written to a temporary beside it, then renamed over."""
    target = tmp_path / "new.json"
    assert not command._special(target)
    assert command._temporary(target) == tmp_path / f".new.json.{os.getpid()}.tmp"
    assert command._special(Path(os.devnull)) and command._temporary(Path(os.devnull)) is None
    assert command._write_atomically(target, b"{}\n") is None
    assert target.read_bytes() == b"{}\n" and sorted(p.name for p in tmp_path.iterdir()) == ["new.json"]


def test_a_tar_archive_is_refused_as_an_output(tmp_path: Path) -> None:
    """A tar archive (as OONI's postcans are kept) is data a report must not overwrite: its 'ustar' at 257."""
    target = tmp_path / "m.tar"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("m.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    target.write_bytes(buf.getvalue())
    assert command._holds_data(target) == "a tar archive"
    for name, magic in (("gzip", b"\x1f\x8b"), ("zstd", b"\x28\xb5\x2f\xfd"), ("LZ4", b"\x04\x22\x4d\x18")):
        target.write_bytes(magic + b"\0" * 300)
        assert command._holds_data(target) == f"{name}-compressed data"
    target.write_bytes(b"\0" * 258 + b"ustar")  # 'ustar' one byte off is no tar archive
    assert command._holds_data(target) is None


def test_a_file_beside_the_raw_folder_is_not_inside_it(tmp_path: Path) -> None:
    """s.raw2.json starts with the raw folder's name (s.raw) but is not in it: a report may be written there."""
    db = tmp_path / "s.duckdb"
    (tmp_path / "s.raw").mkdir()
    command._not_the_store("--json", tmp_path / "s.raw2.json", db)
    command._not_the_store("--parquet", tmp_path / "s.rawx", db)
    with pytest.raises(UsageError, match="is the store's raw measurements"):
        command._not_the_store("--json", tmp_path / "s.raw" / "r.json", db)
    with pytest.raises(UsageError, match="is the store's write-ahead log"):
        command._not_the_store("--html", tmp_path / "s.duckdb.wal", db)


def test_export_refuses_a_file_where_its_directory_would_be(capsys: pytest.CaptureFixture[str],
                                                             tmp_path: Path) -> None:
    """--parquet naming a file of one's own: refused, and the file left as it was."""
    (tmp_path / "mine.txt").write_text("mine\n")
    err = _said(capsys, ["export", "--parquet", str(tmp_path / "mine.txt"), "--db", str(tmp_path / "absent.duckdb")])
    assert f"--parquet {tmp_path / 'mine.txt'} exists and is not a directory" in err
    assert (tmp_path / "mine.txt").read_text() == "mine\n"


def test_the_selection_is_said_in_words() -> None:
    """One country is 'country', two 'countries', each once, sorted; likewise tests."""
    words = command._selection_words(argparse.Namespace(cc=["TM"], test=["tor", "dnscheck", "tor"],
                                                        since=dt.date(2024, 1, 1), until=None))
    assert words == "country TM; tests dnscheck, tor; from 2024-01-01"
    words = command._selection_words(argparse.Namespace(cc=["TM", "IR", "TM"], test=["tor"], since=None,
                                                        until=dt.date(2024, 2, 1)))
    assert words == "countries IR, TM; test tor; until 2024-02-01"
    assert command._selection_words(argparse.Namespace(cc=None, test=None, since=None, until=None)) is None


def test_an_example_from_the_input_cannot_move_the_terminal() -> None:
    """A skipped record's file name comes from the input: an escape or a line break is shown as '?'."""
    assert command._example("a\x1b[2Jb.jsonl:3:\nbad\u202e") == "a?[2Jb.jsonl:3:?bad?"
    assert command._example("plain.jsonl:1: corrupt") == "plain.jsonl:1: corrupt"
