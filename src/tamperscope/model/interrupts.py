"""Whether the user pressed Ctrl-C during this command.

DuckDB checks for signals while it runs a statement and turns the KeyboardInterrupt it meets into an error
of its own: ``RuntimeError('Query interrupted')``, or, met while it looks up a Python table by name, a
``CatalogException`` saying the table does not exist. Either would be reported as a broken store. `cli.main`
installs `handler` (Python's own behaviour, noted) for the commands that run DuckDB's statements, so that such
an error is said to be what it is, an interruption (exit 130). Not for the others: asyncio.run cancels its main
task on Ctrl-C only where Python's own handler is in place.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_seen = threading.Event()


def handler(signum: int, frame: FrameType | None) -> None:
    """SIGINT: noted, then KeyboardInterrupt, as Python's default handler raises it."""
    _seen.set()
    raise KeyboardInterrupt


def install() -> None:
    """Use `handler` for SIGINT, where Python's default one is in place (not where SIGINT is ignored: a
    background job, a worker process), from the main thread only (the only one that can)."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is \
            signal.default_int_handler:
        signal.signal(signal.SIGINT, handler)


def ignored_here() -> None:
    """In a worker process (an initializer): Ctrl-C is the parent's to handle. The terminal sends it to the
    whole process group, and each worker printed its own KeyboardInterrupt traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def seen() -> bool:
    """Whether SIGINT came since `install` (or the last `forget`)."""
    return _seen.is_set()


def forget() -> None:
    _seen.clear()


def interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is, or may be, the user's Ctrl-C in disguise (raised by DuckDB once SIGINT came)."""
    return isinstance(exc, KeyboardInterrupt) or seen() or (
        isinstance(exc, RuntimeError) and str(exc) == "Query interrupted")


__all__ = ["forget", "handler", "ignored_here", "install", "interrupted", "seen"]
