"""`tamperscope serve` under repeated and forced stops, and a disk that fills while it catches up: the store is
closed with its run finished, and nothing but one line is said. Found by a review of 70aa61f-69642a2:

* a third SIGTERM while catching up let a CancelledError out as a traceback (exit 1), the store never closed;
* a second Ctrl-C while uvicorn waited for a request in flight cut the collector's stop short (run left open)
  and logged tracebacks for the cancelled request and lifespan;
* a full disk while catching up was a StoreError traceback;
* `serve` in a thread failed once started, on uvloop (a signal handler removed that was never added).

Each server is a process of its own on a free port of 127.0.0.1. Where a race must go one way every time, the
process is slowed (each catch-up batch takes 1 s more) or its disk made full, by a patch applied before
`tamperscope.cli.main`: the signals, sockets, store and raw log are real."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson

from tamperscope.collector import samples
from tamperscope.collector.testing import free_port
from tests.unit.test_serve_interrupted_catch_up import SRC, said, start, stored

SLOW_CATCH_UP = """
import time
from tamperscope.collector import ingestor
_ingest = ingestor.Ingestor._ingest_replayed
def slow(self, lines, position):
    _ingest(self, lines, position)
    time.sleep(1.0)
ingestor.Ingestor._ingest_replayed = slow
"""

FULL_DISK = """
import errno
from tamperscope.analysis import store
def full(self, batches, written):
    raise OSError(errno.ENOSPC, "No space left on device")
store.Store._flush = full
"""


def raw_log(where: Path, n: int) -> None:
    incoming = where / "c.collector" / "incoming"
    incoming.mkdir(parents=True)
    (incoming / "2026-05-01.jsonl").write_bytes(
        b"".join(orjson.dumps(m) + b"\n" for m in samples.corpus(n, seed="signals")))


def test_three_sigterms_while_catching_up_stop_it_once_and_close_the_store(tmp_path: Path) -> None:
    raw_log(tmp_path, 6_000)  # three batches, each 1 s longer: the signals land while the first is in hand
    proc = start(tmp_path, free_port(), patch=SLOW_CATCH_UP)
    assert proc.stderr is not None
    assert proc.stderr.readline().startswith("tamperscope: catching up")
    # the first stops the catch-up after this batch; the second came while it waited for the batch, and the
    # third while the collector was being stopped: they cut the wait, then the stop
    for _ in range(3):
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
    code, rest = said(proc)
    assert code == -signal.SIGTERM, rest
    assert "Traceback" not in rest and "Error" not in rest, rest
    assert rest.startswith("tamperscope: interrupted: 2048 measurement(s) read from the raw log"), rest
    count, runs = stored(tmp_path / "c.duckdb")
    assert count == 2048 and len(runs) == 1 and runs[0] is not None  # closed, run finished


def test_ctrl_c_while_catching_up_works_where_sigint_was_ignored(tmp_path: Path) -> None:
    """A job a script put in the background starts with SIGINT ignored (as `make test` runs its parallel tests),
    so asyncio's runner leaves Ctrl-C alone: the catch-up went on to the end, then uvicorn (which takes SIGINT
    whatever it was) served. In CI the catch-up test waited 60 s for an exit that never came."""
    raw_log(tmp_path, 6_000)
    proc = start(tmp_path, free_port(), patch="import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                 + SLOW_CATCH_UP)
    assert proc.stderr is not None
    assert proc.stderr.readline().startswith("tamperscope: catching up")
    proc.send_signal(signal.SIGINT)
    code, rest = said(proc, 30)
    assert code == 0, rest
    assert rest.startswith("tamperscope: interrupted: 2048 measurement(s) read from the raw log"), rest
    assert "Traceback" not in rest and "explorer" not in rest, rest
    count, runs = stored(tmp_path / "c.duckdb")
    assert count == 2048 and len(runs) == 1 and runs[0] is not None


def test_a_second_ctrl_c_during_the_graceful_shutdown_still_closes_the_store_quietly(tmp_path: Path) -> None:
    """uvicorn waits for a request in flight (here a body that never ends); a second Ctrl-C forces it out."""
    port = free_port()
    proc = start(tmp_path, port)
    assert proc.stderr is not None
    assert "explorer, API and collector at" in proc.stderr.readline()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(b"POST /api/v1/submit HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
                       b"Content-Length: 100000\r\n\r\n{\"a\"")
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert proc.poll() is None  # still waiting for the request: the graceful shutdown
        proc.send_signal(signal.SIGINT)
        code, rest = said(proc, 30)
    assert code == 0, rest
    assert "Traceback" not in rest and "ERROR" not in rest, rest
    count, runs = stored(tmp_path / "c.duckdb")
    assert count == 0 and len(runs) == 1 and runs[0] is not None


def test_a_full_disk_while_catching_up_is_one_line_and_the_store_is_closed(tmp_path: Path) -> None:
    raw_log(tmp_path, 100)
    code, rest = said(start(tmp_path, free_port(), patch=FULL_DISK))
    assert code == 1, rest  # the machine's fault, not the operator's
    lines = rest.splitlines()
    assert lines[0].startswith("tamperscope: catching up"), rest
    assert lines[1:] == ["tamperscope: the store could not be written: No space left on device; what earlier "
                         "transactions committed stays"], rest
    count, _ = stored(tmp_path / "c.duckdb")  # opens: the server let go of it
    assert count == 0


def test_serve_in_a_thread_serves(tmp_path: Path) -> None:
    """No signal handler can be set outside the main thread; uvloop refused to remove the one never added."""
    port = free_port()
    script = f"""
import os, sys, threading, time, urllib.request
from pathlib import Path
from tamperscope.collector.config import Settings
from tamperscope.collector.server import serve
failed = []
def run():
    try:
        serve(Settings(db_path=Path({str(tmp_path / "t.duckdb")!r}), host="127.0.0.1", port={port}, announce=False))
    except BaseException as exc:
        failed.append(repr(exc))
threading.Thread(target=run, daemon=True).start()
deadline = time.monotonic() + 30
while not failed:
    try:
        with urllib.request.urlopen("http://127.0.0.1:{port}/api/v1/measurements?limit=1", timeout=5) as r:
            print("served", r.status, flush=True)
            os._exit(0)
    except OSError:
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
print("failed", failed, flush=True)
os._exit(3)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAMPERSCOPE_")}
    env["PYTHONPATH"] = str(SRC)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=90)
    assert res.returncode == 0 and res.stdout.strip() == "served 200", (res.stdout, res.stderr)
