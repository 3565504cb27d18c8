"""Write docs/cli.md from the CLI's own --help texts (a test keeps it current).

    .venv/bin/python scripts/gen_cli_docs.py
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tamperscope.cli import build_parser

_DATA = "/XDG_DATA_HOME"  # as many characters as ~/.local/share
OUT = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def render() -> str:
    # The store's default path is the user's (`store.default_db_path`): written as ~/ whoever generates the docs.
    saved = {k: os.environ.pop(k, None) for k in ("XDG_DATA_HOME", "TAMPERSCOPE_DB")}
    os.environ["XDG_DATA_HOME"] = _DATA  # the lines wrap as they will with ~/.local/share
    try:
        parser = build_parser()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    parser.prog = "tamperscope"
    parts = ["# Command-line reference", "",
             "Generated from the commands' own `--help` by `scripts/gen_cli_docs.py`; a test fails when it is stale.", ""]

    def walk(p: argparse.ArgumentParser, name: str) -> None:
        parts.extend([f"## `{name}`", "", "```", p.format_help().rstrip(), "```", ""])
        for sub_name, sub in _subparsers(p).items():
            walk(sub, f"{name} {sub_name}")

    walk(parser, "tamperscope")
    return ("\n".join(parts) + "\n").replace(_DATA, "~/.local/share")


if __name__ == "__main__":
    os.environ["COLUMNS"] = "100"
    OUT.write_text(render())
    print(f"wrote {OUT}", file=sys.stderr)
