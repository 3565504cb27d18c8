"""`tamperscope run NETTEST --list` for nettests that take names or addresses (not web_connectivity's URL lists):
a list holding no entry, a row without its first cell, or a header naming its first column otherwise is refused in
one line naming the list, rather than read as no list (which ran the nettest's default inputs) or measured.

Run without --yes and without consent on record: a list let through stops at the consent, never measures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAMPERSCOPE_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")  # no consent on record
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "src")
    return subprocess.run([sys.executable, "-m", "tamperscope", "run", *args, "-o", "out.jsonl"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, input="", timeout=60)


@pytest.mark.parametrize("nettest", ["dnscheck", "stunreachability"])
@pytest.mark.parametrize("content,needle", [
    ("", "list.csv: no inputs in it"),
    ("# nothing yet\n\n", "list.csv: no inputs in it"),
    ("url,category_code\n", "list.csv: no inputs in it"),
    ("url,category_code\n,NEWS\n", "list.csv: line 2: no input (its first column is empty)"),
    ("urls,category_code\nexample.org,NEWS\n", "list.csv: line 1: 'urls' is not an input"),
])
def test_a_list_without_inputs_is_named_in_one_line(tmp_path: Path, nettest: str, content: str, needle: str) -> None:
    (tmp_path / "list.csv").write_bytes(content.encode())
    res = run(tmp_path, nettest, "-l", "list.csv")
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("tamperscope: ") and res.stderr.count("\n") == 1, res.stderr
    assert needle in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_a_good_list_still_reaches_the_consent(tmp_path: Path) -> None:
    (tmp_path / "list.csv").write_text("# mine\nurl,category_code\nexample.org,NEWS\n")
    res = run(tmp_path, "dnscheck", "-l", "list.csv")
    assert res.returncode == 2 and "informed consent" in res.stderr, res.stderr
    assert not (tmp_path / "out.jsonl").exists()
