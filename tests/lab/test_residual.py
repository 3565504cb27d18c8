"""Residual blocking in the lab: the censor resets one name's HTTP and then drops every packet between the client
and that address:port for a while. A second URL at the same address (its own IP, which no rule names) measured right
after meets the hold: the probe records it (``x_residual``), the verdict says it could not tell instead of calling it
blocked by address, and the run measures it again once the hold is over, when it is reached."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tamperscope.lab import farm
from tamperscope.model.profile import load_profile
from tests.lab.conftest import run_client

pytestmark = pytest.mark.lab

PROFILE = Path(__file__).parent / "profiles" / "residual-shared.toml"


def run(out: Path, urls: list[str], *extra: str) -> subprocess.CompletedProcess[str]:
    # one at a time, so that the second URL is measured after the censor acted on the first
    return run_client(out, "web_connectivity", urls, ("--parallel", "1", *extra))


def test_a_url_meeting_another_ones_residual_blocking_is_no_block_and_is_measured_again(lab_factory, tmp_path
                                                                                         ) -> None:  # type: ignore[no-untyped-def]
    lab_factory(str(PROFILE))
    held = farm.address_for("held.example", load_profile(PROFILE, set()))
    urls = ["http://held.example/", f"http://{held}/"]
    out = tmp_path / "wc.jsonl"
    res = run(out, urls, "--residual-wait", "10")
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [m["input"] for m in got] == [*urls, urls[1]], [m["input"] for m in got]
    first, second, again = got
    assert first["test_keys"]["x_mechanism"] == "http.rst"
    tk = second["test_keys"]
    # the censor's own log: only the first URL's request was acted on; the second's connect met the hold
    assert tk["x_status"] == "failure" and tk["blocking"] is None, (tk["x_mechanism"], tk.get("x_residual"))
    assert [(h["endpoint"], h["step"]) for h in tk["x_residual"]] == [(f"{held}:80", "tcp_connect")]
    assert 0 <= tk["x_residual"][0]["seconds_after"] < 8
    assert tk["x_evidence"][-1] == "test_keys.x_residual"
    assert again["annotations"].get("residual_retry") == "true"
    assert again["test_keys"]["x_mechanism"] == "none" and again["test_keys"]["accessible"] is True, again["test_keys"]
    assert "1 input(s) met residual blocking" in res.stderr, res.stderr[-2000:]
    # without the probe's record, the same failure reads as the address blocked: what the record prevents
    bare = dict(second, test_keys={k: v for k, v in tk.items() if k != "x_residual"})
    from tamperscope.model.verdict import web_connectivity_verdict

    assert web_connectivity_verdict(bare).mechanism == "tcp.drop"


def test_sites_blocked_by_their_own_name_at_one_address_are_each_blocked(lab_factory, tmp_path
                                                                        ) -> None:  # type: ignore[no-untyped-def]
    """Many sites blocked by name behind one CDN address: each one's reset is its own block. A handshake reset
    after a connect that worked is never taken for another measurement's residue (the first cut of this feature
    made the second URL a failure, measured again and a failure again: a block hidden)."""
    lab_factory(str(Path(__file__).parent / "profiles" / "sni-no-residual.toml"))
    urls = ["https://named.example/", "https://named.example/other"]
    out = tmp_path / "wc.jsonl"
    res = run(out, urls, "--residual-wait", "5")
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [m["input"] for m in got] == urls, [m["input"] for m in got]
    assert [m["test_keys"]["x_mechanism"] for m in got] == ["tls.rst", "tls.rst"], [
        (m["test_keys"]["x_mechanism"], m["test_keys"].get("x_residual")) for m in got]
    assert not any("x_residual" in m["test_keys"] for m in got)
    assert "met residual blocking" not in res.stderr


def test_a_run_started_inside_an_earlier_runs_hold_is_told_of_it(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """QA: a volunteer who measured again right after a run (tm-like's hold is 30 s) published "IP blocking": the
    residual record knew only its own run. A run leaves the next where the censor acted (residual.json), so the
    second run's connect into the hold is residual blocking, written as a failure, and measured again after it."""
    lab_factory(str(PROFILE))
    held = farm.address_for("held.example", load_profile(PROFILE, set()))
    first = tmp_path / "first.jsonl"
    run(first, ["http://held.example/"], "--residual-wait", "10")
    assert json.loads(first.read_text())["test_keys"]["x_mechanism"] == "http.rst"
    second = tmp_path / "second.jsonl"
    res = run(second, [f"http://{held}/"], "--residual-wait", "10")
    got = [json.loads(line) for line in second.read_text().splitlines()]
    assert len(got) == 2, [(m["test_keys"]["x_mechanism"], m["test_keys"].get("x_residual")) for m in got]
    met, again = got
    assert met["test_keys"]["x_status"] == "failure", (met["test_keys"]["x_mechanism"], met["test_keys"].get("x_residual"))
    assert [(h["endpoint"], h["step"]) for h in met["test_keys"]["x_residual"]] == [(f"{held}:80", "tcp_connect")]
    assert again["annotations"].get("residual_retry") == "true" and again["test_keys"]["x_mechanism"] == "none"
    assert "1 input(s) met residual blocking" in res.stderr, res.stderr[-2000:]
