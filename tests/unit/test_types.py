"""STYLE: mypy strict on src/. The whole package is type-checked here, with the settings in pyproject.toml
([tool.mypy]: strict), so a change that breaks a type fails the suite like any other test."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "tamperscope"


def test_the_package_type_checks_under_mypy_strict(tmp_path: Path) -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert config["strict"] is True and config["files"] == ["src/tamperscope"]
    done = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    checked = re.search(r"Success: no issues found in (\d+) source files", done.stdout)
    assert checked is not None, done.stdout
    assert int(checked.group(1)) == len(list(SRC.rglob("*.py")))  # every module, none left out


def test_every_silenced_line_names_its_error_code() -> None:
    # a bare "type: ignore" would silence whatever error comes to that line later
    bare = [f"{p.relative_to(ROOT)}:{n}" for p in SRC.rglob("*.py")
            for n, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"type:\s*ignore(?!\[)", line)]
    assert not bare, bare
