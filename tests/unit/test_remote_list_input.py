"""`tamperscope remote --list` with a list that holds no domain, or a header it does not know: one line naming
the list, exit 2, as `run` refuses the same files; never "needs --input or --list" when a list was given.

Run without --yes and without consent on record: a list let through would stop at the consent, never measure."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tamperscope.nettests import remote_dns
from tamperscope.probe import remote as remote_cmd


def remote(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAMPERSCOPE_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")  # no consent on record
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "src")
    return subprocess.run([sys.executable, "-m", "tamperscope", "remote", *args, "-V", "198.18.0.53",
                           "-o", "out.jsonl"], capture_output=True, text=True, cwd=tmp_path, env=env, input="",
                          timeout=60)


@pytest.mark.parametrize("kind", ["dns", "web"])
@pytest.mark.parametrize("content,needle", [
    ("", "list.csv: no domains in it"),
    ("# nothing yet\n\n", "list.csv: no domains in it"),
    ("url,category_code\n", "list.csv: no domains in it"),
    ("url,category_code\n,NEWS\n", "list.csv: line 2: no domain (its first column is empty)"),
    ('"url","category_code"\r\n"",NEWS\r\n', "list.csv: line 2: no domain"),
    ("urls,category_code\na.example,NEWS\n", "list.csv: line 1: 'urls' is not a domain"),
    ("# a list\ncategory_code,urls\nNEWS,a.example\n", "list.csv: line 2: 'category_code' is not a domain"),
])
def test_a_list_without_domains_is_named_in_one_line(tmp_path: Path, kind: str, content: str, needle: str) -> None:
    (tmp_path / "list.csv").write_bytes(content.encode())
    res = remote(tmp_path, kind, "-l", "list.csv")
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("tamperscope: ") and res.stderr.count("\n") == 1, res.stderr
    assert needle in res.stderr and "needs --input or --list" not in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "config").exists()
    assert (tmp_path / "list.csv").read_bytes() == content.encode()


def test_an_empty_list_beside_good_input_is_still_refused(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("a.example\n")
    (tmp_path / "empty.txt").write_text("")
    res = remote(tmp_path, "dns", "-i", "b.example", "-l", "good.txt", "-l", "empty.txt")
    assert res.returncode == 2 and "empty.txt: no domains in it" in res.stderr, res.stderr
    assert res.stderr.count("\n") == 1


def test_good_lists_still_pass_to_the_consent(tmp_path: Path) -> None:
    # a header it knows, rows with an empty first cell among good ones (skipped, as before), a plain list
    (tmp_path / "l.csv").write_text("# mine\nURL,category_code\nhttps://a.example/,NEWS\n,X\nb.example,Y\n")
    (tmp_path / "d.txt").write_text("domain\nc.example\n")
    res = remote(tmp_path, "dns", "-l", "l.csv", "-l", "d.txt")
    assert res.returncode == 2 and "needs your informed consent" in res.stderr, res.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_a_record_whose_notes_hold_a_line_break_is_one_entry(tmp_path: Path) -> None:
    """Citizen Lab's `notes` is free text, quoted when it holds a comma or a line break: the record is one entry,
    numbered by the line it starts on, and --category picks it by that record's code (the continuation line was read
    as a domain of its own, "second line", and refused)."""
    (tmp_path / "l.csv").write_text(
        "url,category_code,category_description,date_added,source,notes\n"
        'https://a.example/,NEWS,News Media,2017-04-12,citizenlab,"first line\nsecond line, with a comma"\n'
        "https://b.example/,HUMR,Human Rights Issues,2017-04-12,citizenlab,\n")
    def inputs(*category: str) -> tuple[list[str], dict[str, str]]:
        categories: dict[str, str] = {}
        args = argparse.Namespace(input=[], list=[tmp_path / "l.csv"], category=list(category))
        return remote_cmd._inputs(args, remote_dns, categories), categories

    assert inputs() == (["a.example", "b.example"], {"a.example": "NEWS", "b.example": "HUMR"})
    assert inputs("HUMR") == (["b.example"], {"b.example": "HUMR"})
    res = remote(tmp_path, "dns", "-l", "l.csv")
    assert res.returncode == 2 and "needs your informed consent" in res.stderr, res.stderr
    (tmp_path / "bad.csv").write_text('url,notes\nhttps://a.example/,"never closed\nb.example,\n')
    res = remote(tmp_path, "dns", "-l", "bad.csv")
    assert res.returncode == 2 and "bad.csv: line 2: not valid CSV: a quote opened here is never closed" \
        in res.stderr and res.stderr.count("\n") == 1, res.stderr
