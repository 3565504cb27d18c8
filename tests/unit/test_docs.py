"""Docs live beside the code: every command, option and nettest is documented."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tamperscope import nettests

ROOT = Path(__file__).resolve().parents[2]


def test_cli_reference_is_current() -> None:
    env = {**os.environ, "COLUMNS": "100"}
    code = ("import os, sys; sys.path.insert(0, 'scripts'); os.environ['COLUMNS']='100'; "
            "import gen_cli_docs; sys.stdout.write(gen_cli_docs.render())")
    fresh = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    assert (ROOT / "docs" / "cli.md").read_text() == fresh, "docs/cli.md is stale: run scripts/gen_cli_docs.py"


def test_every_nettest_is_documented() -> None:
    text = (ROOT / "docs" / "nettests.md").read_text()
    for name in nettests.names():
        assert f"## `{name}`" in text, name
        mod = nettests.load(name)
        assert mod.NAME == name and mod.VERSION and isinstance(mod.NEEDS_INPUT, bool)
    from tamperscope.probe.remote import KINDS

    for mod in KINDS.values():  # run by `tamperscope remote`, not `run`
        assert f"## `{mod.NAME}`" in text, mod.NAME


def test_every_x_key_the_probe_writes_is_documented() -> None:
    text = (ROOT / "docs" / "measurement-format.md").read_text()
    for key in ("x_mechanism", "x_confidence", "x_evidence", "x_fingerprints", "x_throttle", "x_packets", "x_signature",
                "x_interception", "x_equipment", "x_dns_duplicate_responses", "x_control_request", "x_lookups",
                "x_injection", "x_status", "x_asn", "x_residual_wait"):
        assert f"`{key}`" in text, key
