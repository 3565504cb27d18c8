"""Write docs/cli.md from the CLI's own --help texts (a test keeps it current).

    .venv/bin/python scripts/gen_cli_docs.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tamperscope.cli import build_parser

OUT = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def render() -> str:
    parser = build_parser()
    parser.prog = "tamperscope"
    parts = ["# Command-line reference", "",
             "Generated from the commands' own `--help` by `scripts/gen_cli_docs.py`; a test fails when it is stale.", ""]

    def walk(p: argparse.ArgumentParser, name: str) -> None:
        parts.extend([f"## `{name}`", "", "```", p.format_help().rstrip(), "```", ""])
        for sub_name, sub in _subparsers(p).items():
            walk(sub, f"{name} {sub_name}")

    for name, sub in _subparsers(parser).items():
        walk(sub, f"tamperscope {name}")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    import os

    os.environ["COLUMNS"] = "100"
    OUT.write_text(render())
    print(f"wrote {OUT}", file=sys.stderr)
