"""`tamperscope run --submit`: measurements reach a collector through the outbox, whatever happens on the way.

The collector (`tamperscope serve`) runs on the loopback of the lab's client namespace, so the probe
talks to it over real kernel sockets without leaving the lab.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tamperscope.lab import manager

from .conftest import in_client, wait_listening

pytestmark = pytest.mark.lab

PORT = 18181
URL = f"http://127.0.0.1:{PORT}"


def probe_argv(*args: str) -> list[str]:
    return manager.exec_argv([sys.executable, "-m", "tamperscope", "run", "web_connectivity", "--yes", "--no-progress",
                              "--submit", URL, *args])


def api(path: str) -> dict:
    code = (f"import urllib.request,sys; sys.stdout.write(urllib.request.urlopen({URL + path!r}, timeout=10)"
            ".read().decode())")
    return json.loads(in_client(code))


def collected(expected: int, deadline: float = 30) -> list[dict]:
    """The collector's measurements, once it lists ``expected`` of them (the store follows the acks)."""
    end = time.monotonic() + deadline
    while True:
        page = api("/api/v1/measurements?limit=1000")
        if page["metadata"]["count"] >= expected or time.monotonic() > end:
            return page["results"]
        time.sleep(0.3)


def start_collector(db: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(manager.exec_argv([sys.executable, "-m", "tamperscope", "serve", "--db", str(db),
                                               "--port", str(PORT), "--quiet"]),
                            env=manager.client_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    wait_listening(PORT)
    return proc


def when(t: str) -> str:
    """OONI writes "2024-01-02 03:04:05"; the API answers "2024-01-02T03:04:05Z"."""
    return t.replace(" ", "T").rstrip("Z")


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def test_submit_waits_for_the_collector_and_survives_kill_9(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab_factory("none")
    box = tmp_path / "outbox"
    first = tmp_path / "first.jsonl"
    # 1. No collector yet: the run measures, keeps everything in the outbox, says so, and does not fail.
    res = subprocess.run(probe_argv("-i", "https://site1.example.org/", "-i", "http://site2.example.org/",
                                    "--outbox", str(box), "--submit-timeout", "2", "-o", str(first)),
                         env=manager.client_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "2 still waiting" in res.stderr and "last error: http://127.0.0.1" in res.stderr
    assert len(list((box / "pending").glob("*.json"))) == 2
    collector = start_collector(tmp_path / "c.duckdb")
    try:
        # 2. A long run, killed -9 part way, with the collector up; then the same command again.
        urls = [f"https://site{i}.example.org/" for i in range(10, 50)]
        lst = tmp_path / "l.txt"
        lst.write_text("\n".join(urls) + "\n")
        second = tmp_path / "second.jsonl"
        argv = probe_argv("--list", str(lst), "--parallel", "2", "--outbox", str(box), "-o", str(second))
        proc = subprocess.Popen(argv, env=manager.client_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        end = time.monotonic() + 90
        while time.monotonic() < end and len(lines(second)) < 12:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at = len(lines(second))
        assert 12 <= killed_at < len(urls), "the run should have been killed part way"
        res = subprocess.run(argv, env=manager.client_env(), capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        assert "still waiting" not in res.stderr
        assert not list((box / "pending").glob("*.json")), "everything measured was acknowledged"
        measured = lines(first) + lines(second)
        assert sorted(m["input"] for m in lines(second)) == sorted(urls)
        results = collected(len(measured))
        have = {(r["input"], when(r["measurement_start_time"])) for r in results}
        missing = [(m["input"], m["measurement_start_time"]) for m in measured
                   if (m["input"], when(m["measurement_start_time"])) not in have]
        assert not missing, f"measured but not in the collector: {missing[:5]}"
        # at most the one in flight when killed (in the outbox, not yet in the output) is extra
        assert len(measured) <= len(results) <= len(measured) + 2
        # 3. Nothing left to send: a resubmission is idempotent and the counts stay.
        res = subprocess.run(probe_argv("--list", str(lst), "--outbox", str(box), "-o", str(second)),
                             env=manager.client_env(), capture_output=True, text=True, timeout=120)
        assert res.returncode == 0 and "submitted 0" in res.stderr, res.stderr
        assert api("/api/v1/measurements?limit=1")["metadata"]["count"] == len(results)
    finally:
        os.killpg(collector.pid, signal.SIGKILL)
        collector.wait()


def test_submit_refuses_bad_urls_in_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for bad in ("ftp://x/", "127.0.0.1:8080", "http://"):
        res = subprocess.run([sys.executable, "-m", "tamperscope", "run", "web_connectivity", "-i", "https://a.example/",
                              "--yes", "--submit", bad, "--outbox", str(tmp_path / "o"), "-o", str(tmp_path / "x.jsonl")],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 2 and "--submit" in res.stderr and "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
