"""Consent is what the user said at the prompt, and nothing else: a record that merely looks true is not consent,
and `--yes` (automation, the lab, the demo) is consent for its run only, never kept for the next one, which may
be on a real network."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tamperscope.probe import consent

TS = [sys.executable, "-m", "tamperscope"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # so that a broken consent_path never reaches the real one
    return tmp_path / "config" / "tamperscope" / "consent.json"


@pytest.mark.parametrize("record", [
    {"informed_consent": "no"}, {"informed_consent": "false"}, {"informed_consent": [False]},
    {"informed_consent": 1}, {"informed_consent": True, "revoked": True}, [{"informed_consent": True}],
    "informed_consent", True,
], ids=["no", "false-string", "list", "one", "revoked", "in-a-list", "a-string", "true"])
def test_a_record_that_only_looks_true_is_not_consent(config: Path, record: object) -> None:
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps(record))
    assert consent.has_consent() is False
    with pytest.raises(consent.ConsentRequired):
        consent.ensure_consent(False, stdin=io.StringIO(""), stderr=io.StringIO())


def test_yes_is_consent_for_its_run_and_is_not_kept(config: Path) -> None:
    consent.ensure_consent(True, stdin=io.StringIO(""), stderr=io.StringIO())
    assert not config.exists() and consent.has_consent() is False


def test_yes_typed_at_the_prompt_is_kept(config: Path) -> None:
    err = io.StringIO()
    consent.ensure_consent(False, stdin=_Terminal("yes\n"), stderr=err)
    assert "never records your IP address" in err.getvalue()
    record = json.loads(config.read_text())
    assert record["informed_consent"] is True and record["how"] == "prompt" and consent.has_consent()


def test_consent_typed_in_an_unrecordable_home_is_said_once_and_good_for_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home-is-a-file"
    home.write_text("")
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(home))  # ~/.config cannot be made
    err = io.StringIO()
    consent.ensure_consent(False, stdin=_Terminal("y\n"), stderr=err)  # returns: consent was given
    warnings = [ln for ln in err.getvalue().splitlines() if "could not be recorded" in ln]
    assert len(warnings) == 1 and "consent given" in warnings[0] and not consent.has_consent()


def test_a_run_with_yes_leaves_the_next_run_asking(tmp_path: Path) -> None:
    """As `lab exec -- tamperscope run … --yes` would: the same home, then a run on the real network."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAMPERSCOPE_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    args = [*TS, "run", "web_connectivity", "-i", "http://127.0.0.1:9/", "--resolver", "127.0.0.1",
            "--no-progress", "-o"]
    first = subprocess.run([*args, "a.jsonl", "--yes"], capture_output=True, text=True, cwd=tmp_path, env=env,
                           stdin=subprocess.DEVNULL, timeout=120)
    assert first.returncode == 0, first.stderr
    assert json.loads((tmp_path / "a.jsonl").read_text())["input"] == "http://127.0.0.1:9/"
    second = subprocess.run([*args, "b.jsonl"], capture_output=True, text=True, cwd=tmp_path, env=env,
                            stdin=subprocess.DEVNULL, timeout=120)
    assert second.returncode == 2 and "informed consent" in second.stderr
    assert not (tmp_path / "b.jsonl").exists() and not (tmp_path / "config").exists()
