"""Where tamperscope keeps its files on the user's machine: one answer for the store, the outbox and the residual
memory (each had its own spelling of it)."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """``$XDG_DATA_HOME/tamperscope``, else ``~/.local/share/tamperscope``."""
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "tamperscope"
