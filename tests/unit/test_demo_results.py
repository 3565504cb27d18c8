"""The demo reads what the probe wrote: a probe that measured some inputs and not others (exit 1) still gets a
summary of those it measured, and the demo ends with 1; a torn last line is not a traceback."""

from __future__ import annotations

import json
from pathlib import Path

from tamperscope.demo import probe_results


def _m(url: str) -> bytes:
    return json.dumps({"input": url, "test_keys": {"x_mechanism": "dns"}}).encode() + b"\n"


def test_some_inputs_unmeasured_still_gives_the_others(tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    out.write_bytes(_m("http://a.example/") + _m("http://b.example/") + b'{"input": "http://c.exa')
    said: list[str] = []
    measurements, status = probe_results(1, out, said.append)
    assert [m["input"] for m in measurements] == ["http://a.example/", "http://b.example/"]
    assert status == 1
    assert len(said) == 1 and "the 2 it measured" in said[0]


def test_a_clean_run_says_nothing(tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    out.write_bytes(_m("http://a.example/") + b"\n" + b"[1, 2]\n")
    said: list[str] = []
    measurements, status = probe_results(0, out, said.append)
    assert [m["input"] for m in measurements] == ["http://a.example/"] and status == 0 and said == []


def test_a_failed_probe_is_a_failure_whatever_it_wrote(tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    out.write_bytes(_m("http://a.example/"))
    for code in (2, 70, -9):
        said: list[str] = []
        assert probe_results(code, out, said.append) == ([], code)
        assert said == [f"demo: the probe failed (exit {code})"]
    said = []
    assert probe_results(1, tmp_path / "missing.jsonl", said.append) == ([], 1)
    assert said and said[0].startswith("demo: cannot read the probe's measurements") and "\n" not in said[0]
    (tmp_path / "empty.jsonl").write_bytes(b"")
    said = []
    assert probe_results(1, tmp_path / "empty.jsonl", said.append) == ([], 1)
    assert said == ["demo: the probe failed and measured nothing"]
