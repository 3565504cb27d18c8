"""Fixtures shared by the unit tests."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


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
