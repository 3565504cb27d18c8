"""`tamperscope run --recheck`: which inputs are measured again, when, and what is said of them."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tamperscope.probe import command
from tamperscope.probe.engine import Progress, Resume, RunStats, ended_at, needs_recheck, scan_output

from .test_probe_cli import cli


def line(input: str, mechanism: str | None, blocking: object, accessible: object, start: str = "2026-12-05 10:00:00",
         runtime: float = 2.5, test_name: str = "web_connectivity") -> str:
    return json.dumps({"test_name": test_name, "input": input, "measurement_start_time": start,
                       "test_runtime": runtime, "test_keys": {"x_mechanism": mechanism, "blocking": blocking,
                                                              "accessible": accessible}}) + "\n"


EPOCH_10H = dt.datetime(2026, 12, 5, 10, tzinfo=dt.timezone.utc).timestamp()


def test_a_resume_with_recheck_finds_the_inputs_measured_once_with_an_anomaly_or_a_failure(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text(
        line("http://a.org/", "http.rst", "http-failure", False)  # blocked, once: rechecked
        + line("http://b.org/", "none", False, True)  # accessible: not
        + line("http://c.org/", "dns.injection", "dns", False)  # blocked, and measured again already: not
        + line("http://d.org/", None, None, None, runtime=7.0)  # a failure (nothing could be told), once: rechecked
        + line("http://c.org/", "dns.injection", "dns", False, start="2026-12-05 10:01:10")
        + line("http://e.org/", "tcp.drop", "tcp_ip", False, test_name="dnscheck")  # another nettest's: not
        + '{"test_name": "web_connectivity", "input": "http://f.org/", "test_ke')  # a torn last line: not
    resume = scan_output(out, "web_connectivity", recheck=True)
    held = ["http://a.org/", "http://b.org/", "http://c.org/", "http://d.org/"]
    assert len(resume.seen) == 4 and resume.seen.holds(held) == b"\x01" * 4  # these four, and nothing else
    assert "http://e.org/" not in resume.seen and "http://f.org/" not in resume.seen
    # each with its mechanism and when its measurement ended: the start (cut to the second, so 1 s more) + runtime
    assert dict(resume.lone) == {"http://a.org/": ("http.rst", EPOCH_10H + 3.5),
                                 "http://d.org/": ("none", EPOCH_10H + 8.0)}
    assert resume.cut is not None  # the torn line is still cut off before appending
    # without --recheck nothing of the kind is kept
    assert scan_output(out, "web_connectivity").lone == {}
    # a third line of c does not bring it back
    with out.open("a") as f:
        f.write("\n" + line("http://c.org/", "dns.injection", "dns", False))
    assert "http://c.org/" not in scan_output(out, "web_connectivity", recheck=True).lone


def test_needs_recheck_and_ended_at_read_hostile_lines() -> None:
    assert needs_recheck({"test_keys": {"blocking": "tcp_ip", "accessible": False}})
    assert needs_recheck({"test_keys": {"x_status": "failure", "blocking": False}})
    assert not needs_recheck({"test_keys": {"blocking": False, "accessible": True}})
    assert not needs_recheck({"test_keys": "nonsense"}) and not needs_recheck({})
    assert ended_at({"measurement_start_time": "not a time"}) == 0.0
    assert ended_at({"measurement_start_time": "2026-12-05 10:00:00", "test_runtime": 1e300}) == EPOCH_10H + 1.0
    assert ended_at({"measurement_start_time": "2026-12-05 10:00:00", "test_runtime": "3"}) == EPOCH_10H + 1.0


@pytest.mark.parametrize("args,needle", [
    (["web_connectivity", "-i", "http://x.org/", "--recheck-after", "5"], "--recheck-after goes with --recheck"),
    (["web_connectivity", "-i", "http://x.org/", "--recheck", "--recheck-after", "-1"], "--recheck-after must be"),
    (["web_connectivity", "-i", "http://x.org/", "--recheck", "--recheck-after", "nan"], "--recheck-after must be"),
    (["web_connectivity", "-i", "http://x.org/", "--recheck", "--recheck-after", "1e9"], "--recheck-after must be"),
    (["telegram", "--recheck"], "telegram takes no input"),
    (["im", "--recheck"], "takes no input"),
])
def test_recheck_options_are_checked_first(tmp_path: Path, args: list[str], needle: str) -> None:
    res = cli("run", *args, "-o", "out.jsonl", "--yes", cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr and res.stderr.strip().count("\n") == 0, res.stderr
    assert not (tmp_path / "out.jsonl").exists()


class FakeEngine:
    """Stands in for `Engine` (a unit test's fake): each input's measurement is given, written and counted."""

    def __init__(self, results: dict[str, list[tuple[str | None, object, object]]]) -> None:
        self.results = results
        self.annotations: dict[str, str] = {}
        self.calls: list[tuple[list[str | None], dict[str, str], float]] = []

    async def run(self, inputs: list[str | None], out: Any, stats: RunStats, progress: Progress, *,
                  deadline: float | None = None) -> None:
        self.calls.append((list(inputs), dict(self.annotations), time.time()))
        for i in inputs:
            assert i is not None
            mech, blocking, accessible = self.results[i].pop(0)
            start = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            m = json.loads(line(i, mech, blocking, accessible, start=start, runtime=0.0))
            m["annotations"] = dict(self.annotations)
            out.append(m)
            stats.done += 1
            stats.add(m)


def settings(inputs: list[str | None], after: float, lone: dict[str, tuple[str, float]] | None = None) -> Any:
    class S:
        pass

    s = S()
    s.inputs, s.recheck, s.resume = inputs, after, Resume(lone=lone or {})  # type: ignore[attr-defined]
    return s


def test_the_blocked_and_the_failed_are_measured_again_after_the_wait_and_said(capsys: pytest.CaptureFixture[str]
                                                                                 ) -> None:
    urls = ["http://a.org/", "http://b.org/", "http://c.org/", "http://d.org/", "http://e.org/"]
    engine = FakeEngine({
        urls[0]: [("http.rst", "http-failure", False), ("http.rst", "http-failure", False)],  # the same again
        urls[1]: [("none", False, True)],  # open: not measured again
        urls[2]: [(None, None, None), ("none", False, True)],  # a failure, then fine: a transient failure
        urls[3]: [("tls.rst", "http-failure", False), ("tcp.drop", "tcp_ip", False)],  # another way the 2nd time
        # e was measured once before, with an anomaly (the output held it): measured again, not measured first
        urls[4]: [("dns.injection", "dns", False)],
    })
    s = settings(urls, after=1.5, lone={urls[4]: ("dns.injection", time.time() - 100)})
    stats = RunStats(total=4, skipped=1, found={})
    again = RunStats(found={})
    out: list[dict[str, Any]] = []
    t0 = time.time()
    asyncio.run(command._and_recheck(engine, s, urls[:4], out, stats, again,  # type: ignore[arg-type]
                                     Progress(stats, enabled=False), None, False))
    (first, plain, _), (second, marked, when) = engine.calls
    assert first == urls[:4] and plain == {}
    assert second == [urls[0], urls[2], urls[3], urls[4]]  # in the inputs' order
    assert marked == {"recheck": "true"} and all(m["annotations"] == {"recheck": "true"} for m in out[4:])
    # not before the wait: 1.5 s after the last of them ended (1 s more: a start time is cut to the second)
    assert when - t0 >= 1.4, when - t0
    said = command.rechecked_line(again, s.resume.lone, stats)
    assert "of 4 input(s) found blocked or failing, 2 the same again" in said, said
    assert "2 different: http://c.org/ (failure, then not blocked), http://d.org/ (tls.rst, then tcp.drop)" in said
    assert "not measured again" not in said
    assert "measured again in" in capsys.readouterr().err


@pytest.mark.parametrize("start", ["9999-12-31 23:59:59", "future"])
def test_a_measurement_from_the_future_is_measured_again_now(tmp_path: Path, start: str) -> None:
    # a probe's clock a day ahead, or a year 9999: --recheck slept until then (251,605,760,676 s)
    if start == "future":
        start = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
    before = time.time()
    assert before <= ended_at({"measurement_start_time": start, "test_runtime": 3}) <= time.time()
    # a measurement that started this second is not clamped: its end may lie a little ahead (the start is cut to
    # the second), and the lab's test reads the start back from it
    this_second = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    assert ended_at({"measurement_start_time": this_second.strftime("%Y-%m-%d %H:%M:%S"), "test_runtime": 3}) \
        == this_second.timestamp() + 4
    out = tmp_path / "o.jsonl"
    out.write_text(line("http://a.org/", "http.rst", "http-failure", False, start=start))
    lone = scan_output(out, "web_connectivity", recheck=True).lone
    engine = FakeEngine({"http://a.org/": [("http.rst", "http-failure", False)]})
    s = settings(["http://a.org/"], after=0.5, lone=lone)
    stats, again = RunStats(total=1, skipped=1, found={}), RunStats(found={})
    asyncio.run(asyncio.wait_for(command._and_recheck(engine, s, [], [], stats, again,  # type: ignore[arg-type]
                                                      Progress(stats, enabled=False), None, False), 20))
    assert [call[0] for call in engine.calls][-1] == ["http://a.org/"]
    assert time.time() - before < 15


def test_nothing_is_measured_again_past_max_runtime_and_the_next_run_is_told() -> None:
    engine = FakeEngine({"http://a.org/": [("http.rst", "http-failure", False)]})
    s = settings(["http://a.org/"], after=30)
    stats, again = RunStats(total=1, found={}), RunStats(found={})
    # the deadline comes before the wait ends: the recheck is not started
    asyncio.run(command._and_recheck(engine, s, ["http://a.org/"], [], stats, again,  # type: ignore[arg-type]
                                     Progress(stats, enabled=False), time.monotonic() + 5, False))
    assert len(engine.calls) == 1 and again.total == 1
    said = command.rechecked_line(again, {}, stats)
    assert "1 not measured again (--max-runtime stopped the run first): the same command with --recheck does them" \
        in said
    # a recheck that could not be made is not put on --max-runtime (it was said as it failed, and is counted next)
    failed = RunStats(total=3, errors=1, found={"http://b.org/": ("none", 0.9, False)})
    said = command.rechecked_line(failed, {}, stats)
    assert "2 not measured again (--max-runtime stopped 1): " in said and "said above" not in said
    failed = RunStats(total=1, errors=1, found={})
    assert "1 not measured again (they could not be made): " in command.rechecked_line(failed, {}, stats)
    assert "--max-runtime" not in command.rechecked_line(failed, {}, stats)
    # with nothing blocked there is nothing to do, and that is said
    stats = RunStats(total=1, found={})
    engine = FakeEngine({"http://a.org/": [("none", False, True)]})
    asyncio.run(command._and_recheck(engine, s, ["http://a.org/"], [],  # type: ignore[arg-type]
                                     stats, RunStats(found={}), Progress(stats, enabled=False), None, False))
    assert len(engine.calls) == 1
    assert "no input found blocked or failing is left" in command.rechecked_line(RunStats(found={}), {}, stats)


def test_remote_takes_recheck_and_checks_it_first(tmp_path: Path) -> None:
    res = cli("remote", "dns", "-V", "198.18.1.53", "-i", "x.org", "--recheck-after", "5", "-o", "out.jsonl", "--yes",
              cwd=tmp_path)
    assert res.returncode == 2 and "--recheck-after goes with --recheck" in res.stderr, res.stderr
    res = cli("remote", "dns", "-V", "198.18.1.53", "-i", "x.org", "--recheck", "--recheck-after", "inf", "-o",
              "out.jsonl", "--yes", cwd=tmp_path)
    assert res.returncode == 2 and "--recheck-after must be from 0 to 86400 seconds" in res.stderr, res.stderr
    assert not (tmp_path / "out.jsonl").exists()
    help_text = cli("remote", "--help", cwd=tmp_path).stdout
    assert "--recheck" in help_text and "each vantage and domain pair found blocked or failing" in " ".join(help_text.split())
