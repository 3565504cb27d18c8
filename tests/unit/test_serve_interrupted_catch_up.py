"""Ctrl-C (or SIGTERM) while `tamperscope serve` catches the store up with a long raw log stops after the batch in
hand: the batches read stay (each is checkpointed), the store is closed with its run finished, the raw log is untouched,
and the next start reads the rest. Before, Ctrl-C waited for the whole catch-up (minutes, for millions of
measurements) and left the run open.

The server runs in a process of its own on a free port of 127.0.0.1; the raw log is written as the collector
writes it (one measurement per line in ``<name>.collector/incoming/<day>.jsonl``)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import orjson
import pytest

from tamperscope.collector import samples
from tamperscope.collector.ingestor import REPLAY_BATCH
from tamperscope.collector.testing import free_port

SRC = Path(__file__).resolve().parents[2] / "src"
MEASUREMENTS = 16_000  # several seconds of catching up: far longer than Ctrl-C takes to arrive


def start(cwd: Path, port: int, *options: str, patch: str = "") -> subprocess.Popen[str]:
    """`tamperscope serve` on ``c.duckdb`` in ``cwd``; ``patch``: Python run in that process first (a slower disk,
    a full one), for the tests that need a race to go one way every time."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAMPERSCOPE_")}
    env["PYTHONPATH"] = str(SRC)
    main = ["-m", "tamperscope"] if not patch else \
        ["-c", f"import sys\n{patch}\nfrom tamperscope.cli import main\nsys.exit(main(sys.argv[1:]))"]
    return subprocess.Popen([sys.executable, *main, "serve", "--db", "c.duckdb", "--host", "127.0.0.1",
                             "--port", str(port), *options], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def said(proc: subprocess.Popen[str], wait: float = 60) -> tuple[int, str]:
    """The exit code, once the server has ended (killed after ``wait`` s), and what it said last."""
    assert proc.stderr is not None
    try:
        code = proc.wait(wait)
        return code, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()


def stopped(proc: subprocess.Popen[str], sig: signal.Signals = signal.SIGINT) -> tuple[int, str]:
    """Ctrl-C (or ``sig``), then the exit code and what the server said after that."""
    proc.send_signal(sig)
    return said(proc)


def stored(db: Path) -> tuple[int, list[object]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        row = con.execute("SELECT count(*) FROM measurements").fetchone()
        assert row is not None
        return int(row[0]), [r[0] for r in con.execute("SELECT finished_at FROM runs ORDER BY started_at").fetchall()]
    finally:
        con.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_while_catching_up_stops_after_a_batch_and_the_next_start_reads_the_rest(tmp_path: Path,
                                                                                       sig: signal.Signals) -> None:
    incoming = tmp_path / "c.collector" / "incoming"
    incoming.mkdir(parents=True)
    segment = incoming / "2026-05-01.jsonl"
    segment.write_bytes(b"".join(orjson.dumps(m) + b"\n" for m in samples.corpus(MEASUREMENTS, seed="catch-up")))
    before = segment.read_bytes()

    proc = start(tmp_path, free_port())
    assert proc.stderr is not None
    first = proc.stderr.readline()
    assert first.startswith("tamperscope: catching up: ingesting the raw log from the start"), first
    code, rest = stopped(proc, sig)
    # Ctrl-C is exit 0; SIGTERM ends the process by that signal once all is closed, as uvicorn does when serving
    assert code == (0 if sig == signal.SIGINT else -signal.SIGTERM), rest
    assert "Traceback" not in rest and "ERROR" not in rest, rest
    said = re.search(r"tamperscope: interrupted: (\d+) measurement\(s\) read from the raw log; the next start "
                     r"reads the rest", rest)
    assert said is not None, rest
    read = int(said.group(1))
    assert 0 < read < MEASUREMENTS and read % REPLAY_BATCH == 0, read  # whole batches, not the whole log
    count, runs = stored(tmp_path / "c.duckdb")
    assert count == read
    assert len(runs) == 1 and runs[0] is not None  # the run was finished: the store was closed, not abandoned
    assert "explorer" not in rest  # it never announced a server that was not going to run
    assert segment.read_bytes() == before

    port = free_port()
    proc = start(tmp_path, port, "--quiet")
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/measurements?limit=1", timeout=5) as r:
                    total = json.loads(r.read())["metadata"]["count"]
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "the second start did not serve"
                time.sleep(0.2)
    finally:
        code, rest = stopped(proc)
    assert total == MEASUREMENTS, total  # the server answers once it has caught up with all of it
    assert code == 0 and rest == "", rest
    count, runs = stored(tmp_path / "c.duckdb")
    assert count == MEASUREMENTS and len(runs) == 2 and all(r is not None for r in runs)
    assert segment.read_bytes() == before
