"""Fixtures shared by the unit tests."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _own_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each unit test's data directory (outbox, residual.json, the default store), for it and the CLIs it starts, is
    its own, never the user's ``~/.local/share/tamperscope``, which the lab tests running beside them use (QA: a CLI
    run here that ends holding no endpoint deletes residual.json, which a lab test reads between its two runs). A
    test that means another sets its own (or sets HOME with XDG_DATA_HOME removed)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg-data")))


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Any]:
    """A named pipe and a function that feeds it bytes from a thread, as ``tamperscope analyze - < file``
    or ``<(zcat ...)`` would; the test fails if the pipe was never read to its end."""
    path = tmp_path / "pipe"
    os.mkfifo(path)
    threads: list[threading.Thread] = []

    def feed(data: bytes) -> Path:
        def write() -> None:
            # BrokenPipeError: the reader stopped early, which is what a real pipe sees
            with open(path, "wb") as f, contextlib.suppress(BrokenPipeError):
                f.write(data)

        thread = threading.Thread(target=write, daemon=True)
        thread.start()
        threads.append(thread)
        return path

    yield feed
    for thread in threads:
        thread.join(timeout=10)
        assert not thread.is_alive(), "the pipe was never read to its end"


@pytest.fixture(scope="module")
def three_sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A collector without rate limits (in-process, a real store) holding three dns.poison measurements, of
    https://site0.example/ to site2, on 2026-05-01 to 05-03; one per test module that asks for it."""
    from tamperscope.collector import samples
    from tamperscope.collector.testing import unlimited_app

    sites = [samples.measurement("dns.poison", url=f"https://site{i}.example/", start=f"2026-05-0{i + 1} 00:00:00")
             for i in range(3)]
    with unlimited_app(tmp_path_factory.mktemp("three-sites") / "s.duckdb", sites) as client:
        yield client
