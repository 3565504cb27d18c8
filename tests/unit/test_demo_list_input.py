"""`tamperscope demo --list/--output` as a user may get them wrong: each is one line and exit 2 before the
lab comes up (the lab is never touched: bringing it up here fails the test), and no file is changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tamperscope.cli import main
from tamperscope.demo import demo_urls, write_list
from tamperscope.lab import manager
from tamperscope.model.inputs import read_url_list


@pytest.fixture(autouse=True)
def no_lab(monkeypatch: pytest.MonkeyPatch) -> None:
    """Anything that would start on the lab fails the test instead (these tests may run as root)."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the demo went on to the lab with bad input")

    for name in ("require_root", "resolve_profile", "up", "down", "exec_argv"):
        monkeypatch.setattr(manager, name, refuse)


def _one_line(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(["demo", *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("tamperscope: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


GOOD = "url,category_code\nhttps://a.example/,NEWS\n"


@pytest.mark.parametrize("content,needle", [
    (None, "cannot read list"),                                      # no such file
    ("dir", "cannot read list"),                                     # a directory
    (b"\x89PNG\r\n\x1a\n\xff\xfe", "not UTF-8 text"),                # binary
    ("name,category_code\nhttps://a.example/,NEWS\n", "not an http(s) URL"),  # no url column: KeyError 'url'
    ("", "no URLs in it"),
    ("# only a comment\n\n", "no URLs in it"),
    ("url,category_code\n", "no URLs in it"),
    ("url,category_code\n,NEWS\n", "line 2: no url"),
    ("https://a.example/\nhtp:/broken\n", "entry 2 (line 2): not an http(s) URL"),
    ("http://exa mple.com/\n", "malformed URL"),
    ("https://user:secret@a.example/\n", "user name or password"),
])
def test_a_bad_list_is_one_line_before_the_lab(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               content: str | bytes | None, needle: str) -> None:
    lst = tmp_path / "list.csv"
    if content == "dir":
        lst.mkdir()
    elif isinstance(content, bytes):
        lst.write_bytes(content)
    elif content is not None:
        lst.write_text(content)
    err = _one_line(capsys, "--list", str(lst), "--output", str(tmp_path / "out.jsonl"))
    assert needle in err and str(lst) in err, err
    assert not (tmp_path / "out.jsonl").exists()


def test_a_list_is_read_as_run_reads_it_and_written_for_the_probe_as_read(tmp_path: Path) -> None:
    lst = tmp_path / "l.csv"
    lst.write_text('\ufeff"URL","category_code"\r\n"https://a.example/q?x=1,2","NEWS"\r\nhttp://b.example,X\r\n'
                   '"https://a.example/q?x=1,2",NEWS\r\n')  # a BOM, quotes, a comma in a URL, a repeat
    urls = demo_urls(lst)
    assert urls == ["https://a.example/q?x=1,2", "http://b.example/"]
    write_list(tmp_path / "for-the-probe.csv", urls)  # what the probe in the lab reads: the same URLs
    assert [e.url for e in read_url_list((tmp_path / "for-the-probe.csv").read_text())] == urls
    assert len(demo_urls(None)) > 10  # the bundled list passes the same checks


@pytest.mark.parametrize("kind,needle", [
    ("dir", "is a directory"),
    ("notes", "line 1 is not a JSON measurement"),
    ("missing-dir", "no directory"),
    ("stdout", "--output must be a file"),
    ("devnull", "not a regular file"),
    ("the-list", "is also the --list"),
])
def test_a_bad_output_is_one_line_before_the_lab(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 kind: str, needle: str) -> None:
    lst = tmp_path / "list.csv"
    lst.write_text(GOOD)
    out = {"dir": tmp_path, "notes": tmp_path / "notes.txt", "missing-dir": tmp_path / "nowhere" / "o.jsonl",
           "stdout": Path("-"), "devnull": Path("/dev/null"), "the-list": lst}[kind]
    if kind == "notes":
        out.write_text("my notes, not measurements\n")
    err = _one_line(capsys, "--list", str(lst), "--output", str(out))
    assert needle in err, err
    assert lst.read_text() == GOOD
    if kind == "notes":
        assert out.read_text() == "my notes, not measurements\n"


@pytest.mark.parametrize("kind,needle", [
    ("text", "not a tamperscope store"),
    ("dir", "Is a directory"),
    ("cut", "store"),  # "is cut short", or "cannot open the store" where the cut reaches its metadata
    ("nowhere", "no such directory"),
])
def test_a_bad_db_for_serve_is_one_line_before_the_lab(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      kind: str, needle: str) -> None:
    from tamperscope.analysis.store import Store

    db = tmp_path / "s.duckdb"
    if kind == "text":
        db.write_text("my notes\n")
    elif kind == "dir":
        db.mkdir()
    elif kind == "cut":
        Store(db).close()
        whole = db.read_bytes()
        db.write_bytes(whole[:len(whole) // 2])
    else:
        db = tmp_path / "missing" / "s.duckdb"
    before = db.read_bytes() if db.is_file() else None
    port = "18098"
    assert needle in _one_line(capsys, "--serve", "--db", str(db), "--port", port)
    assert (db.read_bytes() if db.is_file() else None) == before
    assert not (tmp_path / "missing").exists()
