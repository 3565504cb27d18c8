"""`tamperscope serve` that cannot start: a store cut short, a file where the raw log's directory goes, an admin
token file that is empty or of several lines. Each is one line naming the file and why, exit 2, no traceback
from uvicorn's logger, and the file in the way untouched; nothing is announced before the collector has started.
And one that started stops cleanly on SIGINT and SIGTERM. The server runs in a process of its own, on a free
port of 127.0.0.1, under a timeout: one that started after all fails the test instead of hanging it."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

from tamperscope.collector import samples
from tamperscope.collector.command import _admin_token
from tamperscope.collector.server import startup_error
from tamperscope.collector.testing import free_port

SRC = Path(__file__).resolve().parents[2] / "src"


def tamperscope(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAMPERSCOPE_")}
    env["PYTHONPATH"] = str(SRC)
    return subprocess.run([sys.executable, "-m", "tamperscope", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, stdin=subprocess.DEVNULL, timeout=90)


def serve(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return tamperscope(cwd, "serve", "--host", "127.0.0.1", "--port", str(free_port()), *args)


def one_line(res: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert res.returncode == code, res.stderr
    assert res.stderr.startswith("tamperscope: ") and res.stderr.count("\n") == 1, res.stderr
    assert "Traceback" not in res.stderr and "ERROR" not in res.stderr
    return res.stderr


@pytest.fixture(scope="module")
def good_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of 200 measurements, made by `tamperscope analyze`."""
    where = tmp_path_factory.mktemp("store")
    with open(where / "m.jsonl", "w") as f:
        for m in samples.corpus(200):
            f.write(json.dumps(m) + "\n")
    res = tamperscope(where, "analyze", "--db", "good.duckdb", "m.jsonl", "--quiet")
    assert res.returncode == 0, res.stderr
    return where / "good.duckdb"


def test_a_store_cut_short_is_one_line_naming_it(tmp_path: Path, good_store: Path) -> None:
    data = good_store.read_bytes()
    assert len(data) > 600_000
    (tmp_path / "trunc.duckdb").write_bytes(data[:300_000])  # `head -c 300000 good.duckdb > trunc.duckdb`
    err = one_line(serve(tmp_path, "--db", "trunc.duckdb", "--quiet"))
    assert err.startswith("tamperscope: the store trunc.duckdb is cut short: 300,000 bytes"), err
    # refused before the collector wrote anything into it, or beside it
    assert (tmp_path / "trunc.duckdb").read_bytes() == data[:300_000]
    assert not (tmp_path / "trunc.duckdb.wal").exists() and not (tmp_path / "trunc.collector").exists()


def test_without_quiet_the_failure_is_still_said_once_without_a_traceback(tmp_path: Path, good_store: Path) -> None:
    (tmp_path / "trunc.duckdb").write_bytes(good_store.read_bytes()[:300_000])
    res = serve(tmp_path, "--db", "trunc.duckdb")
    assert res.returncode == 2 and "Traceback" not in res.stderr and "ERROR" not in res.stderr, res.stderr
    last = res.stderr.splitlines()[-1]
    assert last.startswith("tamperscope: the store trunc.duckdb is cut short: "), res.stderr
    assert "could not start" not in res.stderr


@pytest.mark.parametrize("in_the_way", ["s7.collector", "s7.collector/incoming"])
def test_a_file_where_the_raw_log_goes_is_one_line_and_untouched(tmp_path: Path, good_store: Path,
                                                                 in_the_way: str) -> None:
    (tmp_path / "s7.duckdb").write_bytes(good_store.read_bytes())
    blocker = tmp_path / in_the_way
    blocker.parent.mkdir(exist_ok=True)
    blocker.write_text("my notes\n")
    err = one_line(serve(tmp_path, "--db", "s7.duckdb", "--quiet"))
    assert err == f"tamperscope: cannot create s7.collector/incoming: {in_the_way} is not a directory\n", err
    assert blocker.read_text() == "my notes\n"


def test_without_quiet_nothing_is_announced_before_the_collector_has_started(tmp_path: Path,
                                                                           good_store: Path) -> None:
    """The raw log's directory is made after the store is open: the line saying where the explorer is must not come
    before the line saying that it cannot start."""
    (tmp_path / "s8.duckdb").write_bytes(good_store.read_bytes())
    (tmp_path / "s8.collector").write_text("my notes\n")
    err = one_line(serve(tmp_path, "--db", "s8.duckdb"))
    assert err == "tamperscope: cannot create s8.collector/incoming: s8.collector is not a directory\n", err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_started_collector_stops_cleanly_on_a_signal(tmp_path: Path, good_store: Path,
                                                       sig: signal.Signals) -> None:
    """The collector is started before uvicorn and stopped by the app's shutdown: the store records the run as
    finished, and the raw log was made and caught up with (the 200 measurements are there, none lost)."""
    (tmp_path / "s9.duckdb").write_bytes(good_store.read_bytes())
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAMPERSCOPE_")}
    env["PYTHONPATH"] = str(SRC)
    proc = subprocess.Popen([sys.executable, "-m", "tamperscope", "serve", "--db", "s9.duckdb", "--host", "127.0.0.1",
                             "--port", str(port)], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert first.startswith(f"tamperscope: explorer, API and collector at http://127.0.0.1:{port}/"), first
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/measurements?limit=1", timeout=5) as r:
                    assert json.loads(r.read())["metadata"]["count"] == 200
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not answer"
                time.sleep(0.1)
        proc.send_signal(sig)
        code = proc.wait(30)
        rest = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
    # SIGINT is Ctrl-C (exit 0); SIGTERM is re-raised once the shutdown is done, as uvicorn does (killed by it)
    assert code == (0 if sig == signal.SIGINT else -signal.SIGTERM), rest
    assert "Traceback" not in rest and "ERROR" not in rest, rest
    con = duckdb.connect(str(tmp_path / "s9.duckdb"), read_only=True)
    try:
        runs = con.execute("SELECT finished_at FROM runs WHERE engine = 'collector'").fetchall()
        assert len(runs) == 1 and runs[0][0] is not None, runs
        assert con.execute("SELECT count(*) FROM measurements").fetchone() == (200,)
    finally:
        con.close()
    assert (tmp_path / "s9.collector" / "incoming").is_dir()


@pytest.mark.parametrize("content,needle", [
    ("", "is empty"),
    ("  \n\r\n", "is empty"),
    ("first-admin-token-0123456789\nsecond-admin-token-0123456789\n", "holds 2 lines"),
])
def test_an_admin_token_file_that_cannot_be_matched_is_a_usage_error(tmp_path: Path, content: str,
                                                                      needle: str) -> None:
    (tmp_path / "token").write_bytes(content.encode())
    err = one_line(serve(tmp_path, "--db", "t.duckdb", "--admin-token-file", "token", "--quiet"))
    assert err.startswith("tamperscope: token ") and needle in err, err
    assert not (tmp_path / "t.duckdb").exists()  # refused before anything was opened


def test_an_admin_token_file_of_one_line_is_read_as_before(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_bytes(b"\xef\xbb\xbf  admin-token-0123456789 \r\n\r\n")
    assert _admin_token(path) == "admin-token-0123456789"


def test_the_machines_fault_is_exit_1_the_operators_exit_2(tmp_path: Path) -> None:
    full = startup_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "x.collector/incoming"), tmp_path / "x")
    assert full.exit_code == 1 and str(full) == "the collector cannot use x.collector/incoming: No space left on device"
    denied = startup_error(PermissionError(errno.EACCES, "Permission denied", "x.collector"), tmp_path / "x")
    assert denied.exit_code == 2 and "x.collector: Permission denied" in str(denied)
    disk = startup_error(duckdb.IOException(f"IO Error: Could not write file: {os.strerror(errno.ENOSPC)}"),
                         Path("s.duckdb"))
    assert disk.exit_code == 1 and str(disk).startswith("the store s.duckdb cannot be used: IO Error")
    corrupt = startup_error(duckdb.Error("Corrupt database file: computed checksum 5381\nmore"), Path("s.duckdb"))
    assert corrupt.exit_code == 2
    assert str(corrupt) == "the store s.duckdb cannot be read: Corrupt database file: computed checksum 5381"
