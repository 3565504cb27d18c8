"""pipeline.run shortens the interpreter's switch interval while it runs (so the store's writer thread gets the
GIL back promptly after each DuckDB, zstd or file call), and gives the caller's interval back afterwards, also when
the run fails."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pytest

from tamperscope.analysis import pipeline
from tamperscope.analysis.store import Store
from tamperscope.collector import samples


def corpus(path: Path, n: int) -> Path:
    path.write_bytes(b"".join(orjson.dumps(m) + b"\n" for m in samples.corpus(n)))
    return path


def test_the_interval_is_short_during_the_run_and_restored_after(tmp_path: Path) -> None:
    before = sys.getswitchinterval()
    seen: list[float] = []
    store = Store(tmp_path / "s.duckdb")
    try:
        stats = pipeline.run([corpus(tmp_path / "m.jsonl", 300)], store,
                             pipeline.Options(batch_size=64, fingerprints=False),
                             progress=lambda p: seen.append(sys.getswitchinterval()))
    finally:
        store.close()
    assert stats.new == 300
    assert seen and max(seen) <= pipeline.SWITCH_INTERVAL < before
    assert sys.getswitchinterval() == before


def test_the_interval_is_restored_when_the_run_fails(tmp_path: Path) -> None:
    before = sys.getswitchinterval()
    store = Store(tmp_path / "s.duckdb")

    def stop(progress: pipeline.Progress) -> None:
        raise RuntimeError("stopped by the caller")

    try:
        with pytest.raises(RuntimeError, match="stopped by the caller"):
            pipeline.run([corpus(tmp_path / "m.jsonl", 100)], store, pipeline.Options(batch_size=16), progress=stop)
    finally:
        store.close()
    assert sys.getswitchinterval() == before


def test_a_caller_with_a_shorter_interval_keeps_it(tmp_path: Path) -> None:
    before = sys.getswitchinterval()
    sys.setswitchinterval(pipeline.SWITCH_INTERVAL / 2)
    shorter = sys.getswitchinterval()  # as the interpreter keeps it (whole microseconds)
    try:
        seen: list[float] = []
        store = Store(tmp_path / "s.duckdb")
        try:
            pipeline.run([corpus(tmp_path / "m.jsonl", 50)], store, pipeline.Options(fingerprints=False),
                         progress=lambda p: seen.append(sys.getswitchinterval()))
        finally:
            store.close()
        assert seen and set(seen) == {shorter}
    finally:
        sys.setswitchinterval(before)
