"""A finding whose evidence.since or until is a time at the edge of the calendar with an offset that moves it out
of it in UTC (``9999-12-31T23:59:59-23:59`` is in the year 10000): `serve --findings` raised OverflowError at
start, and every page 500 while serving. Now the one-line error naming the file at start (exit 2), and a bad file
skipped while serving, as docs/findings.md promises; the edges themselves, in UTC, are still findings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tamperscope.collector.config import Settings
from tamperscope.collector.findings import FindingError, Findings, parse
from tamperscope.collector.testing import running_app

OUT_OF_RANGE = ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "9999-12-31T23:00:00-01:00",
                "0001-01-01T00:59:59+01:00"]
AT_THE_EDGE = ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59+23:59",
               "0001-01-01T00:00:00-23:59", "9999-12-31", "0001-01-01"]


def _finding(key: str, value: str) -> str:
    return f'+++\ntitle = "T"\npublished = 2026-05-20\n[evidence]\nprobe_cc = "RU"\n{key} = {value}\n+++\nText.\n'


@pytest.mark.parametrize("key", ["since", "until"])
@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_a_time_out_of_range_in_utc_is_a_bad_finding_named_in_one_line(key: str, value: str) -> None:
    with pytest.raises(FindingError) as e:
        parse("x", _finding(key, value), "findings/x.md")
    assert str(e.value) == (f"findings/x.md: evidence.{key} {value} is out of range: in UTC it is before year 1 "
                            "or after year 9999")


@pytest.mark.parametrize("key", ["since", "until"])
@pytest.mark.parametrize("value", AT_THE_EDGE)
def test_the_edges_of_the_calendar_in_utc_are_findings(key: str, value: str) -> None:
    assert parse("x", _finding(key, value), "x.md").evidence[key]


def _serve(tmp_path: Path, folder: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    return subprocess.run([sys.executable, "-m", "tamperscope", "serve", "--db", str(tmp_path / "s.duckdb"),
                           "--port", "1", "--findings", str(folder)], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.mark.parametrize("key,value", [("since", OUT_OF_RANGE[0]), ("until", OUT_OF_RANGE[1])])
def test_serve_refuses_it_at_start_in_one_line_exit_2(tmp_path: Path, key: str, value: str) -> None:
    folder = tmp_path / "findings"
    folder.mkdir()
    (folder / "x.md").write_text(_finding(key, value), encoding="utf-8")
    res = _serve(tmp_path, folder)
    assert res.returncode == 2 and "Traceback" not in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith(f"tamperscope: {folder / 'x.md'}: evidence.{key} {value} is out of range"), res.stderr
    assert not (tmp_path / "s.duckdb").exists()


def test_while_serving_it_is_skipped_and_the_pages_still_answer(tmp_path: Path) -> None:
    folder = tmp_path / "findings"
    folder.mkdir()
    (folder / "good.md").write_text(_finding("since", "2026-05-01"), encoding="utf-8")
    warned: list[str] = []
    with running_app(Settings(db_path=tmp_path / "a.duckdb", announce=False, submit_rate=0, read_rate=0,
                              findings_dir=folder)) as client:
        client.collector.findings.warn = warned.append
        assert [f["id"] for f in client.get("/findings.json").json()["findings"]] == ["good"]
        # a file that became bad while serving (re-read from the directory): was OverflowError, every page 500
        for name, value in (("late", OUT_OF_RANGE[0]), ("early", OUT_OF_RANGE[1])):
            (folder / f"{name}.md").write_text(_finding("until", value), encoding="utf-8")
        for path in ("/findings", "/findings.json", "/", "/index.json", "/api/v1/findings", "/findings/good"):
            assert client.get(path).status_code == 200, path
        assert [f["id"] for f in client.get("/findings.json").json()["findings"]] == ["good"]
        assert client.get("/findings/late").status_code == 404
        assert client.get("/api/v1/findings/early").status_code == 404
        assert sorted(w.split(": evidence")[0] for w in warned) == [
            f"finding skipped: {folder / 'early.md'}", f"finding skipped: {folder / 'late.md'}"], warned


def test_a_finding_that_fails_in_a_way_no_check_foresaw_is_skipped_too(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from tamperscope.collector import findings as module

    folder = tmp_path / "findings"
    folder.mkdir()
    (folder / "good.md").write_text(_finding("since", "2026-05-01"), encoding="utf-8")
    (folder / "odd.md").write_text(_finding("since", "2026-05-02"), encoding="utf-8")
    real = module.parse

    def parse_or_overflow(name: str, content: str, where: str) -> module.Finding:
        if name == "odd":
            raise OverflowError("date value out of range")
        return real(name, content, where)

    monkeypatch.setattr(module, "parse", parse_or_overflow)
    warned: list[str] = []
    found = Findings(folder, warn=warned.append)
    assert [f.id for f in found.all()] == ["good"]
    assert warned == [f"finding skipped: {folder / 'odd.md'}: cannot be read: date value out of range"]
    with pytest.raises(FindingError, match="odd.md: cannot be read"):
        found.check()


DEEP = "+++\ntitle = \"T\"\npublished = 2026-05-20\nx = " + "[" * 1500 + "]" * 1500 + "\n+++\nText.\n"


def test_a_header_nested_too_deeply_is_a_bad_finding_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(FindingError) as e:  # was tomllib's RecursionError
        parse("deep", DEEP, "deep.md")
    assert str(e.value) == "deep.md: not TOML: arrays or tables nested too deeply"
    folder = tmp_path / "findings"
    folder.mkdir()
    (folder / "deep.md").write_text(DEEP, encoding="utf-8")
    res = _serve(tmp_path, folder)
    assert res.returncode == 2 and "Traceback" not in res.stderr and res.stderr.count("\n") == 1, res.stderr[-500:]
    warned: list[str] = []
    (folder / "deep.md").unlink()
    (folder / "good.md").write_text(_finding("since", "2026-05-01"), encoding="utf-8")
    with running_app(Settings(db_path=tmp_path / "a.duckdb", announce=False, submit_rate=0, read_rate=0,
                              findings_dir=folder)) as client:
        client.collector.findings.warn = warned.append
        (folder / "deep.md").write_text(DEEP, encoding="utf-8")  # while serving: every page was a 500
        for path in ("/findings", "/", "/api/v1/findings", "/findings/good"):
            assert client.get(path).status_code == 200, path
    assert any("deep.md" in w for w in warned), warned
