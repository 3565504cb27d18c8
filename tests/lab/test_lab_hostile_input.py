"""Hostile input to `tamperscope lab` that only a root lab can show: a FIFO given to `lab up`, a stale
state whose pids now name someone else's processes, a program `lab exec` cannot run."""

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

pytestmark = pytest.mark.lab
TS = [sys.executable, "-m", "tamperscope"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TS, *args], capture_output=True, text=True, timeout=120)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_up_refuses_a_fifo_profile_before_it_starts_anything(tmp_path: Path) -> None:
    """It read the FIFO once; the censor and the servers then waited for ever to read it again."""
    manager.down()
    fifo = tmp_path / "p.toml"
    os.mkfifo(fifo)
    res = _cli("lab", "up", "--profile", str(fifo))
    assert res.returncode == 2 and res.stderr == f"tamperscope: {fifo}: is not a regular file (a FIFO, a device?): " \
        "give the profile as a file\n"
    assert manager.lab_namespaces() == [] and not manager.PATHS.root.exists()


def test_a_reused_pid_neither_blocks_up_nor_dies_with_down() -> None:
    """A lab killed long ago leaves pids that may since name another session's leader: `lab up` said the lab
    was "already up", and `lab down` killed that whole session."""
    manager.down()
    assert _cli("lab", "up", "--profile", "none").returncode == 0
    st = json.loads(manager.PATHS.state.read_text())
    for pid in st["pids"].values():  # the lab's processes die, its namespaces stay
        os.killpg(pid, signal.SIGKILL)
    with subprocess.Popen(["sleep", "60"], start_new_session=True) as other:
        try:
            st["pids"] = {name: other.pid for name in st["pids"]}
            manager.PATHS.state.write_text(json.dumps(st))
            assert _cli("lab", "status").returncode == 1  # down: the pids are not the lab's
            res = _cli("lab", "up", "--profile", "none")
            assert res.returncode == 0 and "stale" in res.stderr, res.stderr
            assert _alive(other.pid)
            assert _cli("lab", "down").returncode == 0
            time.sleep(0.2)
            assert _alive(other.pid)
        finally:
            other.kill()
            manager.down()
    assert manager.lab_namespaces() == []


def test_exec_of_a_program_it_cannot_run_is_one_line() -> None:
    manager.down()
    assert _cli("lab", "up", "--profile", "none").returncode == 0
    try:
        res = _cli("lab", "exec", "--", "no-such-program-ts", "-x")
        assert res.returncode == 127
        assert res.stderr == "tamperscope: lab exec: no program 'no-such-program-ts' on the PATH\n"
        res = _cli("lab", "exec", "--", "/etc/passwd")
        assert res.returncode == 126
        assert res.stderr == "tamperscope: lab exec: /etc/passwd is not an executable program\n"
        res = _cli("lab", "exec", "--", "sh", "-c", "exit 7")  # the program's own code still comes through
        assert res.returncode == 7
    finally:
        manager.down()
