"""The collector's append-only raw log: what was acknowledged is here, fsync'd, first.

Layout, beside the store (``<name>.duckdb`` → ``<name>.collector/``)::

    incoming/YYYY-MM-DD.jsonl   one measurement per line, as stored (re-encoded),
                                by UTC day of arrival; only ever appended to
    tombstones.jsonl            {"measurement_uid", "at", "reason"} per deleted
                                measurement; appended, fsync'd
    torn/                       bytes cut from the end of a segment at start-up
                                (a write interrupted by a crash: never acknowledged)

The contract with the HTTP layer: `RawLog.append()` returns only after the
lines are written with one ``write`` and made durable with ``fdatasync`` (and
the directory entry with ``fsync`` when the segment is new). The collector
answers 200 only after that, so a ``kill -9`` (or a power cut) loses nothing
that was acknowledged. Many submissions share one ``fdatasync`` (group commit).

Everything else (the DuckDB tables, the store's zstd frames) is derived and can
be rebuilt from these files: `RawLog.read()` yields ``(position, line)`` from a
position on, and the store remembers, in its own table, the position it has
ingested up to (`Position`), so a restart replays only the tail.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

SEGMENT_SUFFIX = ".jsonl"


@dataclass(frozen=True, order=True)
class Position:
    """A place in the raw log: a segment name and a byte offset in it (ordered like the log)."""

    segment: str = ""   # "YYYY-MM-DD.jsonl"; "" is before every segment
    offset: int = 0     # bytes


def collector_dir_for(db_path: Path) -> Path:
    """``<name>.duckdb`` → ``<name>.collector`` (next to the store's ``<name>.raw``)."""
    return db_path.with_name(db_path.name.removesuffix(".duckdb") + ".collector")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RawLog:
    """Append-only, fsync'd JSONL segments. One writer (the ingestor's thread); readers anywhere."""

    def __init__(self, root: Path, *, now: Callable[[], dt.datetime] | None = None) -> None:
        self.root = Path(root)
        self.incoming = self.root / "incoming"
        self.incoming.mkdir(parents=True, exist_ok=True)
        self._now = now or (lambda: dt.datetime.now(dt.timezone.utc))
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._segment = ""
        self.torn_bytes = self._repair()
        self._tombstones = self._load_tombstones()

    # ---- start-up

    def _repair(self) -> int:
        """Cut a torn last line (a crash mid-write; never acknowledged); returns the bytes cut."""
        cut_total = 0
        for path in self.segments_paths():
            size = path.stat().st_size
            if size == 0:
                continue
            with open(path, "rb") as f:
                f.seek(max(0, size - 1))
                if f.read(1) == b"\n":
                    continue
                # find the last newline, reading backwards in blocks
                end = size
                keep = 0
                while end > 0:
                    start = max(0, end - 65536)
                    f.seek(start)
                    block = f.read(end - start)
                    at = block.rfind(b"\n")
                    if at >= 0:
                        keep = start + at + 1
                        break
                    end = start
                f.seek(keep)
                torn = f.read()
            self._cut_torn(path, keep, torn)
            cut_total += len(torn)
        return cut_total

    def _cut_torn(self, path: Path, keep: int, torn: bytes) -> None:
        """Cut ``path`` to its first ``keep`` bytes, durably, keeping what is cut (``torn``) in ``torn/``."""
        torn_dir = self.root / "torn"
        torn_dir.mkdir(exist_ok=True)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        (torn_dir / f"{path.stem}-{stamp}.bin").write_bytes(torn)
        with open(path, "r+b") as f:
            f.truncate(keep)
            os.fsync(f.fileno())

    def segments_paths(self) -> list[Path]:
        return sorted(p for p in self.incoming.iterdir() if p.name.endswith(SEGMENT_SUFFIX) and p.is_file())

    # ---- writing

    def _open_for(self, now: dt.datetime) -> int:
        segment = f"{now:%Y-%m-%d}{SEGMENT_SUFFIX}"
        if self._fd is None or segment != self._segment:
            if self._fd is not None:
                os.close(self._fd)
            path = self.incoming / segment
            new = not path.exists()
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._segment = segment
            if new:
                _fsync_dir(self.incoming)
        return self._fd

    def append(self, lines: Iterable[bytes]) -> Position:
        """Write the lines (no newlines inside) and make them durable; returns the end position."""
        data = b"".join(line + b"\n" for line in lines)
        with self._lock:
            fd = self._open_for(self._now())
            if data:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fdatasync(fd)
            return Position(self._segment, os.fstat(fd).st_size)

    def end(self) -> Position:
        """The position after the last byte of the last segment."""
        paths = self.segments_paths()
        if not paths:
            return Position()
        return Position(paths[-1].name, paths[-1].stat().st_size)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    # ---- reading

    def read(self, since: Position = Position(), *, max_line: int = 64 * 1024 * 1024) -> Iterator[tuple[Position, bytes]]:
        """(position after the line, line) for every complete line after ``since``."""
        for path in self.segments_paths():
            if path.name < since.segment:
                continue
            start = since.offset if path.name == since.segment else 0
            with open(path, "rb") as f:
                f.seek(start)
                offset = start
                for raw in f:
                    if not raw.endswith(b"\n"):
                        break  # being written right now: not acknowledged yet
                    offset += len(raw)
                    line = raw.rstrip(b"\r\n")
                    if line and len(line) <= max_line:
                        yield Position(path.name, offset), line

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in self.segments_paths())

    # ---- tombstones

    @property
    def tombstone_path(self) -> Path:
        return self.root / "tombstones.jsonl"

    def _load_tombstones(self) -> set[str]:
        """The uids deleted. A torn last line (a crash mid-`bury`: never acknowledged) is cut off the file and kept
        in ``torn/``, as a segment's is: the next deletion appended to the fragment would share its line, unreadable,
        and be lost at the next start although `bury` acknowledged it."""
        found: set[str] = set()
        path = self.tombstone_path
        if not path.exists():
            return found
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            self._cut_torn(path, keep, data[keep:])
            data = data[:keep]
        for raw in data.splitlines():
            try:
                entry = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue  # a torn last line: that deletion was never acknowledged
            if isinstance(entry, dict) and isinstance(entry.get("measurement_uid"), str):
                found.add(entry["measurement_uid"])
        return found

    def is_deleted(self, uid: str) -> bool:
        return uid in self._tombstones

    @property
    def deleted(self) -> frozenset[str]:
        return frozenset(self._tombstones)

    def bury(self, uid: str, reason: str) -> bool:
        """Record a deletion durably; False if it was already deleted."""
        with self._lock:
            if uid in self._tombstones:
                return False
            entry = {"measurement_uid": uid, "at": dt.datetime.now(dt.timezone.utc).isoformat(),
                     "reason": reason[:500]}
            with open(self.tombstone_path, "ab") as f:
                f.write(orjson.dumps(entry) + b"\n")
                f.flush()
                os.fsync(f.fileno())
            self._tombstones.add(uid)
            return True


__all__ = ["Position", "RawLog", "SEGMENT_SUFFIX", "collector_dir_for"]
