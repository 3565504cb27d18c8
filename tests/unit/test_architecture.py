"""Imports point one way: model -> wire -> netx -> nettests -> apps. Nothing but the lab, the CLI
and the demo imports the lab; analysis needs only model and wire."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "tamperscope"
RING = {"model": 0, "wire": 1, "netx": 2, "nettests": 3}
APPS = {"probe", "helper", "collector", "analysis", "explorer", "lab", "cli", "demo", "data", "__main__"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    pkg = path.relative_to(SRC.parent).with_suffix("").parts[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(pkg[: len(pkg) - node.level + 1])
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("tamperscope"):
                out.add(mod)
                for alias in node.names:  # `from .. import nettests`
                    out.add(f"{mod}.{alias.name}")
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("tamperscope")}
    return out


def _part(mod: str) -> str | None:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else None


def test_layers_import_inwards_only() -> None:
    bad = []
    for path in SRC.rglob("*.py"):
        here = _part(".".join(path.relative_to(SRC.parent).with_suffix("").parts))
        if here not in RING:
            continue
        for mod in _imports(path):
            there = _part(mod)
            if there in RING and RING[there] > RING[here]:
                bad.append(f"{path.relative_to(SRC)} imports {mod}")
            if there in APPS:
                bad.append(f"{path.relative_to(SRC)} imports app {mod}")
    assert not bad, bad


def test_only_lab_cli_demo_import_the_lab() -> None:
    bad = []
    for path in SRC.rglob("*.py"):
        here = _part(".".join(path.relative_to(SRC.parent).with_suffix("").parts))
        if here in ("lab", "cli", "demo"):
            continue
        bad += [f"{path.relative_to(SRC)} imports {m}" for m in _imports(path) if _part(m) == "lab"]
    assert not bad, bad


def test_analysis_depends_on_model_and_wire_only() -> None:
    bad = []
    for path in (SRC / "analysis").rglob("*.py"):
        for mod in _imports(path):
            there = _part(mod)
            if there not in (None, "model", "wire", "analysis", "cli", "nettests"):
                bad.append(f"{path.relative_to(SRC)} imports {mod}")
    assert not bad, bad


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    # the rule must be able to fail: a model module importing netx is caught
    fake = SRC / "model" / "_tmp_violation.py"
    fake.write_text("from ..netx import Trace\n")
    try:
        assert any(_part(m) == "netx" for m in _imports(fake))
    finally:
        fake.unlink()
