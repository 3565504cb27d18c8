"""Ctrl-C met inside DuckDB: DuckDB turns the KeyboardInterrupt into an error of its own ('Query interrupted', or a
table of ours it could no longer look up). Each printed a traceback, or 'the store … cannot be read', and exit 1
(QA); it is one line, 'tamperscope: interrupted', and exit 130, as a Ctrl-C anywhere else. A real SIGINT to a real
process."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tamperscope.analysis import command
from tamperscope.analysis.store import Store
from tamperscope.model import interrupts

# `tamperscope export` whose work takes a real SIGINT, which DuckDB took in its stead: what DuckDB does with the
# KeyboardInterrupt it meets inside a statement is played here (a real statement interrupted by a real SIGINT is
# not reliably interrupted: DuckDB misses one that comes as a statement starts, and the test would hang)
SCRIPT = """
import signal, sys
import duckdb
from tamperscope import cli
from tamperscope.analysis import command

def slow(args):
    con = duckdb.connect()
    try:
        signal.raise_signal(signal.SIGINT)
    except KeyboardInterrupt:
        {work}
    return 0

command.export_command = slow
sys.exit(cli.main(["export", "--parquet", sys.argv[1]]))
"""

WORK = {
    # what DuckDB raises in place of the KeyboardInterrupt: RuntimeError('Query interrupted')
    "query": "raise RuntimeError('Query interrupted')",
    # where it was looking a table of ours up: the table 'does not exist' (a real DuckDB error, after the signal)
    "table": "con.execute('SELECT * FROM _m')",
    # and the handler of ours is what the user's Ctrl-C meets anywhere else: KeyboardInterrupt, as before
    "python": "raise",
}


def _as_from_a_terminal() -> None:
    """SIGINT as a shell at a terminal leaves it to a command: a CI job run in the background (nohup, &) ignores
    it, and its commands inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("case", sorted(WORK))
def test_ctrl_c_inside_a_duckdb_statement_is_one_line_and_130(tmp_path: Path, case: str) -> None:
    script = tmp_path / "slow.py"
    script.write_text(SCRIPT.format(work=WORK[case]))
    res = subprocess.run([sys.executable, str(script), str(tmp_path / "out")], capture_output=True, text=True,
                         timeout=120, preexec_fn=_as_from_a_terminal)
    assert (res.returncode, res.stderr) == (130, "tamperscope: interrupted\n"), res.stderr


def test_a_store_error_after_ctrl_c_is_the_interrupt_and_one_without_is_the_store(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        exc = duckdb.CatalogException("Catalog Error: Table with name _m does not exist!")
        assert command._unreadable(store, exc) == 1  # no Ctrl-C: the store is said to be unreadable
        try:
            interrupts.handler(2, None)
        except KeyboardInterrupt:
            pass  # as DuckDB takes it
        try:
            with pytest.raises(KeyboardInterrupt):
                command._unreadable(store, exc)
        finally:
            interrupts.forget()


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        out += [int(c) for c in children]
    return out


def test_ctrl_c_with_worker_processes_is_one_line_from_the_parent_alone(tmp_path: Path) -> None:
    # The terminal sends SIGINT to the whole process group: each `--workers` process printed its own
    # KeyboardInterrupt traceback under the parent's 'interrupted' (QA). The input is a pipe, so the run is
    # still going when the signal comes, whatever the machine's speed.
    import os
    import time

    import orjson

    samples = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"
    line = orjson.dumps(orjson.loads((samples / "successWithHTTP" / "measurement.json").read_bytes()))
    fifo = tmp_path / "in.jsonl"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-m", "tamperscope", "analyze", "--workers", "2", "--db",
                             str(tmp_path / "s.duckdb"), str(fifo)], stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                            start_new_session=True, preexec_fn=_as_from_a_terminal)
    try:
        with open(fifo, "wb") as w:
            w.write(line + b"\n")
            w.flush()
            deadline = time.monotonic() + 120
            while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert len(_children(proc.pid)) >= 2, "the worker processes did not start"
            time.sleep(3)  # past their start (an initializer runs first): a run under way, waiting for input
            os.killpg(proc.pid, signal.SIGINT)
            out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert (proc.returncode, err.decode()) == (130, "tamperscope: interrupted\n"), err.decode()[-3000:]
