"""This machine out of file descriptors is not the network: such a measurement is not written (a failed lookup
read as dns.drop, a failed connect as tcp.drop: in the lab, ulimit -n 40 and --parallel 64 gave 75 'blocked'
verdicts over a network that blocks nothing), and --parallel is lowered to what the open-file limit allows."""

from __future__ import annotations

import asyncio
import errno
import resource
import types
from pathlib import Path
from typing import Any

import orjson
import pytest

from tamperscope.model import failures as F
from tamperscope.model.measurement import ProbeInfo
from tamperscope.nettests.base import Context
from tamperscope.netx.classify import classify
from tamperscope.probe.engine import Engine, Progress, RunStats, descriptor_room
from tamperscope.probe.privacy import Scrubber


def test_emfile_and_enfile_are_said_as_this_machine_s() -> None:
    for code in (errno.EMFILE, errno.ENFILE):
        assert classify(OSError(code, "Too many open files"), operation=F.CONNECT) == F.TOO_MANY_OPEN_FILES


def _nettest(run: Any) -> types.ModuleType:
    module = types.ModuleType("fake_nettest")
    module.NAME, module.VERSION = "web_connectivity", "0.0.1"  # type: ignore[attr-defined]
    module.run = run  # type: ignore[attr-defined]
    return module


async def _recorded(input: str | None, ctx: Context) -> dict[str, Any]:
    if input == "http://a.example/":
        return {"queries": [{"failure": F.TOO_MANY_OPEN_FILES}], "requests": []}
    if input == "http://b.example/":
        async with asyncio.TaskGroup() as tg:  # how the nettests run their steps
            tg.create_task(_raise_emfile())
    # a page that merely talks about the error is measured as usual
    return {"queries": [], "requests": [{"response": {"body": "unknown_failure: too many open files"}}]}


async def _raise_emfile() -> None:
    raise OSError(errno.EMFILE, "Too many open files")


def test_a_measurement_this_machine_could_not_make_is_not_written(tmp_path: Path) -> None:
    engine = Engine(_nettest(_recorded), Context(), ProbeInfo(), Scrubber([], interfaces=False), parallel=2)
    said: list[tuple[str | None, str]] = []
    stats = RunStats()
    inputs = ["http://a.example/", "http://b.example/", "http://c.example/"]
    with (tmp_path / "out.jsonl").open("wb") as out:
        asyncio.run(engine.run(inputs, out, stats, Progress(stats, enabled=False),
                               on_error=lambda item, why: said.append((item, why))))
    written = [orjson.loads(line)["input"] for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert written == ["http://c.example/"]
    assert sorted(item for item, _ in said) == ["http://a.example/", "http://b.example/"]
    assert all(why.startswith("this machine ran out of file descriptors (ulimit -n ") for _, why in said), said


def test_parallel_is_lowered_to_what_the_open_file_limit_allows(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = {"now": (100, 100)}
    monkeypatch.setattr(resource, "getrlimit", lambda _: limits["now"])
    monkeypatch.setattr(resource, "setrlimit", lambda _, value: limits.update(now=value))
    said: list[str] = []
    assert descriptor_room(64, said.append) == 2 and len(said) == 1 and "ulimit -n" in said[0]
    limits["now"] = (256, 4096)  # a soft limit below the hard one is raised first
    assert descriptor_room(64, said.append) == 64 and limits["now"] == (4096, 4096) and len(said) == 1
