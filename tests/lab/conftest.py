"""The lab fixture: bring a profile up, run plain clients inside, read the ground truth."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tamperscope.lab import addresses as A
from tamperscope.lab import farm, manager
from tamperscope.model.profile import Profile

HERE = Path(__file__).parent
CLIENT = HERE / "plainclient.py"


def in_client(code: str, timeout: float = 60) -> str:
    """Run Python ``code`` in the lab's client namespace (with the lab's environment); its stdout."""
    res = subprocess.run(manager.exec_argv([sys.executable, "-c", code]), env=manager.client_env(),
                         capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr[-1500:]
    return res.stdout


def run_client(out: Path, nettest: str, inputs: Sequence[str], extra: Sequence[str] = ()
               ) -> subprocess.CompletedProcess[str]:
    """`tamperscope run NETTEST -i ...` in the client namespace, appending to ``out``: the run, which must exit 0."""
    args = [sys.executable, "-m", "tamperscope", "run", nettest, "--yes", "--no-progress", "-o", str(out), *extra]
    for i in inputs:
        args += ["-i", i]
    run = subprocess.run(manager.exec_argv(args), env=manager.client_env(), capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    return run


def run_nettest(out: Path, nettest: str, inputs: tuple[str, ...], extra: tuple[str, ...] = ()) -> dict[str, dict]:
    """`tamperscope run NETTEST -i ...` in the client namespace, into ``out`` (replaced): measurements by input."""
    out.unlink(missing_ok=True)
    run_client(out, nettest, inputs, extra)
    return {m["input"]: m for m in map(json.loads, out.read_text().splitlines())}


def locate_json(url: str, *options: str, ns: str = A.NS_CLIENT) -> dict[str, Any]:
    """`tamperscope locate URL OPTIONS --json` from the lab's client, or namespace ``ns`` (listening 0.25 s after
    each trigger)."""
    res = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "locate", url, *options, "--yes",
                                            "--json", "--wait", "0.25"], ns),
                         env=manager.client_env(), capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def wait_listening(port: int, seconds: float = 30) -> None:
    """Until something accepts on 127.0.0.1:``port`` inside the client namespace."""
    in_client("import socket,time\n"
              f"for _ in range({int(seconds * 10)}):\n"
              "    try:\n"
              f"        socket.create_connection(('127.0.0.1', {port}), 0.5).close(); break\n"
              "    except OSError: time.sleep(0.1)\n"
              "else: raise SystemExit('nothing listens')\n", timeout=seconds + 30)


class Lab:
    """A running lab with one profile."""

    def __init__(self, profile_name: str) -> None:
        self.profile: Profile = manager.resolve_profile(profile_name)

    def run(self, ops: list[dict], ns: str = A.NS_CLIENT, parallel: int = 1, timeout: float = 120) -> list[dict]:
        env = manager.client_env()
        env["PLAIN_PARALLEL"] = str(parallel)
        res = subprocess.run(manager.exec_argv([sys.executable, str(CLIENT)], ns), input=json.dumps(ops),
                             capture_output=True, text=True, env=env, timeout=timeout)
        assert res.returncode == 0, res.stderr[-2000:]
        return json.loads(res.stdout)

    def one(self, op: str, *args: object, ns: str = A.NS_CLIENT, **kwargs: object) -> dict:
        return self.run([{"op": op, "args": list(args), "kwargs": kwargs}], ns=ns)[0]

    def addr(self, name: str) -> str:
        return farm.address_for(name, self.profile)

    def log(self) -> list[dict]:
        text = manager.PATHS.log.read_text()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def logged(self, rule: str, name: str | None = None) -> list[dict]:
        return [e for e in self.log() if e["rule"] == rule and (name is None or e["name"] == name)]


@pytest.fixture(scope="module")
def lab_factory() -> Iterator[object]:
    """Call with a profile name; the lab is brought up with it. One that is up already (from this module or the
    one before) switches profile (`lab up --switch`): about 0.7 s where a down and an up took about 4. It goes
    down after the last test of a run of modules that use it (`pytest_runtest_teardown`)."""

    def start(profile: str) -> Lab:
        if manager.is_up():
            manager.up(profile, switch=True)
        else:
            manager.down()
            manager.up(profile)
        return Lab(profile)

    yield start


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Down the lab after a test that used `lab_factory` when the next one is in another module that does not
    (the demo, the lab's own up/down tests, the rest of the suite) or there is none."""
    if "lab_factory" not in getattr(item, "fixturenames", ()):
        return
    if nextitem is not None and (nextitem.module is item.module or  # type: ignore[attr-defined]
                                 "lab_factory" in getattr(nextitem, "fixturenames", ())):
        return
    manager.down()
