"""What a run leaves the next about residual blocking (`Residual.kept`/`restore`, `command.keep_residual` and
`restore_residual`): a run started inside the censor's hold after an earlier one met it at its connects and read
an IP block (QA). The lab test is tests/lab/test_residual.py."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from tamperscope.nettests.base import Residual, residual_state_path
from tamperscope.probe.command import keep_residual, restore_residual


@pytest.fixture(autouse=True)
def _data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def test_a_trigger_is_handed_to_the_next_run_within_the_hold() -> None:
    first = Residual(window=60)
    first.trigger("198.18.9.1", 80, token=3, at=time.monotonic() - 5)
    first.trigger("198.18.9.2", 443, token=4, at=time.monotonic() - 100)  # past the hold: not handed on
    keep_residual(first)
    path = residual_state_path()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [e[:2] for e in json.loads(path.read_text())["endpoints"]] == [["198.18.9.1", 80]]
    second = Residual(window=60)
    restore_residual(second)
    last = second.last("198.18.9.1", 80)
    assert last is not None and 4 <= time.monotonic() - last <= 10
    # a connect of this run failing there now is residual blocking; the earlier run's token is none of this one's
    now = time.monotonic()
    assert second.met("198.18.9.1", 80, token=1, began=now - 1, failed=now) is not None
    assert second.last("198.18.9.2", 443) is None


def test_what_is_older_than_the_hold_or_not_ours_is_passed_over() -> None:
    path = residual_state_path()
    path.parent.mkdir(parents=True)
    for content in (b"garbage", b"[]", b'{"written": "x", "endpoints": []}', b"\xff" * 10,
                    json.dumps({"written": time.time() - 7200, "endpoints": [["198.18.9.1", 80, 1]]}).encode(),
                    json.dumps({"written": time.time() + 600, "endpoints": [["198.18.9.1", 80, 1]]}).encode(),
                    json.dumps({"written": time.time(), "endpoints": [["x" * 100, 80, 1], ["198.18.9.1", 0, 1],
                                                                   ["198.18.9.1", True, 1], ["198.18.9.1", 80, "1"],
                                                                   ["198.18.9.1", 80, -5], "198.18.9.1:80"]}).encode()):
        path.write_bytes(content)
        r = Residual(window=60)
        restore_residual(r)
        assert r.kept() == [], content


def test_a_run_that_met_no_censor_leaves_nothing_behind() -> None:
    keep_residual(Residual(window=60))
    assert not residual_state_path().exists()
    r = Residual(window=60)
    r.trigger("198.18.9.1", 80, token=1)
    keep_residual(r)
    assert residual_state_path().exists()
    keep_residual(Residual(window=60))  # the next, later, met none: the file goes
    assert not residual_state_path().exists()
