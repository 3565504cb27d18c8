"""The single writer: raw log first, then the analysis store, in batches, on one thread.

Every submission goes through `Ingestor.submit()`. A background task takes
everything queued (up to `MAX_BATCH` measurements from many requests) and runs
one *commit* on the writer thread:

1. analyse the lines (`pipeline.analyse_batch`: uid from the content, verdict by
   test name, observations); a line the analysis cannot read is refused (422);
2. drop what the store already has (same uid: idempotent resubmission) and what
   an administrator deleted (410);
3. append the new lines to the raw log and ``fdatasync`` it (`RawLog.append`);
4. write the batch to the store (one transaction) and move the store's
   checkpoint (how far into the raw log it has ingested);
5. answer every waiting request: uid, duplicate or not, the verdict.

A request is answered only after step 3 (and, unless the store failed, step 4),
so a 200 means "on disk, fsync'd", and the verdict comes back with it.

At start the store catches up with the raw log from its checkpoint (what was
acknowledged before a crash but not yet in the tables). Administrative jobs
(delete, re-analyse) run on the same thread, between batches, in queue order.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pyarrow as pa

from tamperscope.analysis.pipeline import analyse_batch
from tamperscope.analysis.reader import REASONS, Line
from tamperscope.analysis.store import BatchResult, Store
from tamperscope.analysis.verdicts import Matcher, default_matcher
from tamperscope.collector.rawlog import Position, RawLog

log = logging.getLogger("tamperscope.collector")
T = TypeVar("T")

MAX_BATCH = 1024          # measurements per commit
QUEUE_SIZE = 512          # requests waiting for the writer before new ones get 503
REPLAY_BATCH = 512        # raw log lines per transaction when catching up at start

CHECKPOINT_TABLE = "collector_checkpoint"


@dataclass(frozen=True)
class Receipt:
    """What happened to one submitted measurement."""

    status: str                          # "stored" | "duplicate" | "deleted" | "rejected"
    measurement_uid: str | None = None
    verdict: dict[str, Any] | None = None
    error: str | None = None             # for "rejected": a stable code
    detail: str | None = None            # for "rejected": one line


@dataclass
class IngestStats:
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    deleted: int = 0
    commits: int = 0
    largest_commit: int = 0
    replayed: int = 0
    store_errors: int = 0


@dataclass
class _Submission:
    lines: list[bytes]
    future: asyncio.Future[list[Receipt]]


@dataclass
class _Job:
    fn: Callable[[], Any]
    future: asyncio.Future[Any]


@dataclass
class _Analysed:
    """Analysis of a run of lines: which result covers which line, and per-line outcome."""

    results: list[BatchResult] = field(default_factory=list)
    uids: list[str | None] = field(default_factory=list)          # per line
    refused: dict[int, tuple[str, str]] = field(default_factory=dict)  # line index -> (error, detail)


class Busy(Exception):
    """The writer's queue is full: the client should retry later (503)."""


def _verdict_of(table: pa.Table) -> dict[str, dict[str, Any]]:
    rows = table.select(["measurement_uid", "blocking", "accessible", "mechanism", "confidence", "status",
                         "outcome", "fingerprints"]).to_pylist()
    return {r.pop("measurement_uid"): r for r in rows}


class Ingestor:
    """Owns the store and the raw log for writing; everything that writes goes through here."""

    def __init__(self, store: Store, rawlog: RawLog, *, max_batch: int = MAX_BATCH,
                 queue_size: int = QUEUE_SIZE, matcher: Matcher | None = None,
                 announce: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.rawlog = rawlog
        self.max_batch = max_batch
        self.stats = IngestStats()
        self.healthy = True                  # False after a store error: the checkpoint stops moving
        self._matcher = matcher
        self._queue: asyncio.Queue[_Submission | _Job | None] | None = None
        self._queue_size = queue_size
        self._held: _Submission | _Job | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tamperscope-writer")
        self._task: asyncio.Task[None] | None = None
        self._announce = announce or (lambda text: print(f"tamperscope: {text}", file=sys.stderr))

    # ---- lifecycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(maxsize=self._queue_size)
        await loop.run_in_executor(self._executor, self._startup)
        self._task = asyncio.create_task(self._run(), name="tamperscope-ingestor")

    async def stop(self) -> None:
        """Answer everything queued, then close the store (flushes) and the raw log."""
        if self._task is not None and self._queue is not None:
            await self._queue.put(None)
            await self._task
            self._task = None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._shutdown)
        self._executor.shutdown(wait=True)

    def _startup(self) -> None:
        if self._matcher is None:
            self._matcher = default_matcher()
        con = self.store.con
        con.execute(f"CREATE TABLE IF NOT EXISTS {CHECKPOINT_TABLE} (segment VARCHAR, off BIGINT)")
        if con.execute(f"SELECT count(*) FROM {CHECKPOINT_TABLE}").fetchone() == (0,):
            con.execute(f"INSERT INTO {CHECKPOINT_TABLE} VALUES ('', 0)")
        self.store.begin_run(engine="collector", paths=[str(self.rawlog.incoming)])
        self._replay()

    def _shutdown(self) -> None:
        try:
            self.store.finish_run()
        finally:
            self.store.close()
            self.rawlog.close()

    def checkpoint(self) -> Position:
        row = self.store.con.execute(f"SELECT segment, off FROM {CHECKPOINT_TABLE}").fetchone()
        return Position(row[0], int(row[1])) if row else Position()

    def _set_checkpoint(self, position: Position) -> None:
        self.store.con.execute(f"UPDATE {CHECKPOINT_TABLE} SET segment = ?, off = ?",
                               [position.segment, position.offset])

    def _replay(self) -> None:
        """Ingest what the raw log holds beyond the store's checkpoint (after a crash, or a rebuild)."""
        since = self.checkpoint()
        end = self.rawlog.end()
        if end <= since:
            return
        self._announce(f"catching up: ingesting the raw log from {since.segment or 'the start'}"
                       f"{f' @ {since.offset}' if since.offset else ''} into {self.store.path}")
        batch: list[bytes] = []
        last = since
        for position, line in self.rawlog.read(since):
            batch.append(line)
            last = position
            if len(batch) >= REPLAY_BATCH:
                self._ingest_replayed(batch, last)
                batch = []
        if batch:
            self._ingest_replayed(batch, last)
        self._announce(f"caught up: {self.stats.replayed} measurement(s) read from the raw log")

    def _ingest_replayed(self, lines: list[bytes], position: Position) -> None:
        analysed = self._analyse(lines, "replay")
        for result in analysed.results:
            self.store.write(result)
        self.store.flush()
        self._set_checkpoint(position)
        self.stats.replayed += len(lines)

    # ---- the API

    async def submit(self, lines: Sequence[bytes], *, wait: float = 30.0) -> list[Receipt]:
        """Queue measurements (serialised JSON, one per element); their receipts once committed."""
        if self._queue is None or self._task is None:
            raise RuntimeError("the ingestor is not running")
        future: asyncio.Future[list[Receipt]] = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(self._queue.put(_Submission(list(lines), future)), wait)
        except TimeoutError:
            raise Busy("the collector is busy; retry later") from None
        return await asyncio.shield(future)

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the writer thread, after everything queued before it."""
        if self._queue is None or self._task is None:
            raise RuntimeError("the ingestor is not running")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(fn, future))
        return await asyncio.shield(future)  # type: ignore[no-any-return]

    @property
    def queued(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    # ---- the loop

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            item = self._held if self._held is not None else await self._queue.get()
            self._held = None
            if item is None:
                return
            if isinstance(item, _Job):
                try:
                    result = await loop.run_in_executor(self._executor, item.fn)
                except Exception as exc:
                    if not item.future.done():
                        item.future.set_exception(exc)
                else:
                    if not item.future.done():
                        item.future.set_result(result)
                continue
            group = [item]
            count = len(item.lines)
            while count < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if not isinstance(more, _Submission):
                    self._held = more
                    break
                group.append(more)
                count += len(more.lines)
            try:
                receipts = await loop.run_in_executor(self._executor, self._commit, [s.lines for s in group])
            except Exception as exc:  # the raw log could not be written: nothing was acknowledged
                log.exception("commit failed")
                for s in group:
                    if not s.future.done():
                        s.future.set_exception(exc)
                continue
            for s, r in zip(group, receipts, strict=True):
                if not s.future.done():
                    s.future.set_result(r)

    # ---- on the writer thread

    def _analyse(self, lines: Sequence[bytes], source: str) -> _Analysed:
        """Analyse lines; a line that breaks the analysis is refused on its own, not with its batch."""
        out = _Analysed(uids=[None] * len(lines))
        deleted = self.rawlog.deleted

        def run(indices: list[int]) -> None:
            items = [Line(source, i + 1, lines[i]) for i in indices]
            try:
                result = analyse_batch(items, self._matcher)
            except Exception as exc:
                if len(indices) == 1:
                    out.refused[indices[0]] = ("invalid_measurement",
                                               f"the measurement's records cannot be read: {type(exc).__name__}: "
                                               f"{str(exc)[:160]}")
                    return
                for i in indices:
                    run([i])
                return
            rejected = {r.line - 1: r for r in (*result.rejections, *result.errors) if r.reason != "analysis_error"}
            order = iter(result.order)
            dead = []
            for i in indices:
                if i in rejected:
                    r = rejected[i]
                    out.refused[i] = ("invalid_measurement", f"{REASONS.get(r.reason, r.reason)}: {r.detail}")
                else:
                    uid = next(order)
                    out.uids[i] = uid
                    if uid in deleted:
                        dead.append(i)
            if dead:
                keep = [i for i in indices if i not in dead and i not in rejected]
                if keep:
                    run(keep)  # analyse again without the deleted ones, so not a byte of them is stored
                return
            out.results.append(result)

        run(list(range(len(lines))))
        return out

    def _known(self, uids: Sequence[str]) -> set[str]:
        if not uids:
            return set()
        rows = self.store.con.execute(
            "SELECT measurement_uid FROM measurements WHERE measurement_uid IN (SELECT unnest(?::VARCHAR[]))",
            [list(uids)]).fetchall()
        return {r[0] for r in rows}

    def _commit(self, groups: list[list[bytes]]) -> list[list[Receipt]]:
        lines = [line for g in groups for line in g]
        analysed = self._analyse(lines, "collector")
        verdicts: dict[str, dict[str, Any]] = {}
        for result in analysed.results:
            verdicts.update(_verdict_of(result.verdicts))
        candidates = [u for u in analysed.uids if u is not None]
        known = self._known(sorted(set(candidates)))
        deleted = self.rawlog.deleted
        fresh_lines: list[bytes] = []
        seen: set[str] = set()
        per_line: list[Receipt] = []
        for i, uid in enumerate(analysed.uids):
            if uid is None:
                error, detail = analysed.refused.get(i, ("invalid_measurement", "not a measurement"))
                per_line.append(Receipt("rejected", error=error, detail=detail))
                self.stats.rejected += 1
            elif uid in deleted:
                per_line.append(Receipt("deleted", uid))
                self.stats.deleted += 1
            elif uid in known or uid in seen:
                per_line.append(Receipt("duplicate", uid, verdicts.get(uid)))
                self.stats.duplicates += 1
            else:
                seen.add(uid)
                fresh_lines.append(lines[i])
                per_line.append(Receipt("stored", uid, verdicts.get(uid)))
                self.stats.stored += 1
        if fresh_lines:
            position = self.rawlog.append(fresh_lines)  # durable from here on
            try:
                for result in analysed.results:
                    self.store.write(result)
                self.store.flush()
                if self.healthy:
                    self._set_checkpoint(position)
            except Exception:
                # Acknowledged anyway: the raw log has it, and the next start replays it.
                log.exception("the store could not take a batch; it will be replayed from the raw log at restart")
                self.healthy = False
                self.stats.store_errors += 1
        self.stats.commits += 1
        self.stats.largest_commit = max(self.stats.largest_commit, len(lines))
        out: list[list[Receipt]] = []
        at = 0
        for g in groups:
            out.append(per_line[at:at + len(g)])
            at += len(g)
        return out


__all__ = ["Busy", "CHECKPOINT_TABLE", "IngestStats", "Ingestor", "MAX_BATCH", "Receipt"]
