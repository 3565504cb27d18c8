"""`tamperscope run --recheck` in the lab: the blocked inputs are measured again, and the analysis confirms them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tamperscope.probe.engine import ended_at
from tests.lab.conftest import run_client

pytestmark = pytest.mark.lab

# gfw-like: facebook.com's DNS answers are forged, bbc.com's HTTP is reset; x.com is left alone
URLS = ("https://facebook.com/", "http://www.bbc.com/", "https://x.com/")
BLOCKED = {"https://facebook.com/": "dns.injection", "http://www.bbc.com/": "http.rst"}


def run(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_client(out, "web_connectivity", URLS, extra)


def lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines()]


def confidence(out: Path, tmp_path: Path, name: str) -> list[tuple[str, str, str]]:
    """`tamperscope analyze` of ``out`` into a store of its own (``name``): each line's input, mechanism, confidence."""
    verdicts = tmp_path / f"{name}-verdicts.jsonl"
    res = subprocess.run([sys.executable, "-m", "tamperscope", "analyze", str(out), "--db", str(tmp_path / f"{name}.duckdb"),
                          "--jsonl", str(verdicts), "--quiet"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return [(r["input"], r["x_mechanism"], r["x_confidence"]) for r in map(json.loads, verdicts.read_text().splitlines())]


def test_recheck_measures_the_blocked_again_and_the_analysis_confirms_them(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab_factory("gfw-like")
    out = tmp_path / "wc.jsonl"
    res = run(out, "--recheck", "--recheck-after", "2")
    got = lines(out)
    assert [m["input"] for m in got[:3]].count("https://x.com/") == 1 and len(got) == 5, got
    again = got[3:]
    assert {m["input"]: m["test_keys"]["x_mechanism"] for m in again} == BLOCKED
    assert all(m["annotations"]["recheck"] == "true" for m in again)
    assert not any("recheck" in m["annotations"] for m in got[:3])
    # each second measurement started 2 s or more after its first ended (start times are cut to the second, and
    # `ended_at` adds that second: a start of 1 s or more after it)
    first = {m["input"]: m for m in got[:3]}
    for m in again:
        started = ended_at(m) - 1 - m["test_runtime"]
        assert started >= ended_at(first[m["input"]]) + 1, (m["measurement_start_time"], first[m["input"]])
    assert "of 2 input(s) found blocked or failing, 2 the same again" in res.stderr, res.stderr
    # without the second measurement the analysis could only call them anomalies; with it they are confirmed
    judged = confidence(out, tmp_path, "rechecked")
    assert sorted(judged) == sorted([
        ("https://facebook.com/", "dns.injection", "confirmed"), ("https://facebook.com/", "dns.injection", "confirmed"),
        ("http://www.bbc.com/", "http.rst", "confirmed"), ("http://www.bbc.com/", "http.rst", "confirmed"),
        ("https://x.com/", "none", "ok")]), judged
    # the same command again: every input is in the output, and the blocked ones twice: nothing more is measured
    res = run(out, "--recheck", "--recheck-after", "2")
    assert len(lines(out)) == 5 and "no input found blocked or failing is left to measure again" in res.stderr


def test_a_resume_with_recheck_measures_only_the_blocked_again(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab_factory("gfw-like")
    out = tmp_path / "plain.jsonl"
    run(out)
    once = lines(out)
    assert len(once) == 3
    # one measurement each: the analysis calls the blocked ones anomalies, not confirmed
    assert sorted(confidence(out, tmp_path, "once")) == sorted([
        ("https://facebook.com/", "dns.injection", "anomaly"), ("http://www.bbc.com/", "http.rst", "anomaly"),
        ("https://x.com/", "none", "ok")])
    # the same command with --recheck: nothing is measured a first time; the two blocked ones a second time
    res = run(out, "--recheck", "--recheck-after", "0")
    assert "on 0 input(s) (3 already in" in res.stderr, res.stderr
    got = lines(out)
    assert got[:3] == once and {m["input"]: m["test_keys"]["x_mechanism"] for m in got[3:]} == BLOCKED, got
    assert "of 2 input(s) found blocked or failing, 2 the same again" in res.stderr, res.stderr
    assert {c for _, m, c in confidence(out, tmp_path, "resumed") if m != "none"} == {"confirmed"}
