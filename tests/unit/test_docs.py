"""Docs live beside the code: every command, option and nettest is documented."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tamperscope import nettests
from tamperscope.nettests.base import NettestError

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


def _named(text: str, start: str, end: str) -> set[str]:
    """The `names` a sentence of the docs lists between ``start`` and ``end``."""
    at = text.index(start) + len(start)
    return set(re.findall(r"`([a-z_]+)`", text[at:text.index(end, at)]))


def test_the_nettests_said_to_use_the_helper_or_refuse_an_input_are_those_that_do() -> None:
    # The lists are written by hand; portfiltering, vanilla_tor and riseupvpn were missing from them.
    text = " ".join((ROOT / "docs" / "nettests.md").read_text().split())
    helped = {n for n in nettests.names() if getattr(nettests.load(n), "USES_HELPER", False)}
    assert _named(text, "only by the nettests that ask it:", "(each says") == helped
    refusing = set()
    for name in nettests.names():
        mod = nettests.load(name)
        if mod.NEEDS_INPUT or not hasattr(mod, "check_input"):
            continue
        try:
            mod.check_input("x.example")
        except NettestError as exc:
            if "takes no input" in str(exc):
                refusing.add(name)
    assert len(refusing) >= 5
    assert _named(text, "given no input; none for", "which refuse one") == refusing


def test_the_analysis_version_the_docs_and_help_name_is_this_releases() -> None:
    from tamperscope.analysis.verdicts import ANALYSIS_VERSION

    said = {}
    for path in [*(ROOT / "docs").glob("*.md"), *(ROOT / "src" / "tamperscope").rglob("*.py")]:
        for version in re.findall(r"(\d+)\+local\.", path.read_text()):
            said.setdefault(version, path.name)
    assert said and set(said) == {ANALYSIS_VERSION}, said
