"""Loaded by each worker process of the dask engine's LocalCluster as it starts (Dask's ``preload``).

The terminal sends Ctrl-C to the whole process group: each worker printed its own KeyboardInterrupt traceback
and Dask's errors under the parent's one line. The parent is the one that stops the run (it closes the cluster,
whose workers then end), so the workers leave SIGINT to it.
"""

from __future__ import annotations

from typing import Any

from tamperscope.model import interrupts


def dask_setup(worker: Any) -> None:
    """Dask calls this in the worker process as it starts; signals can be set from its main thread only."""
    try:
        interrupts.ignored_here()
    except ValueError:  # a worker whose event loop runs in another thread: its traceback is Dask's to print
        pass
