"""The single writer: the raw log first (then the answer), the analysis store right after, in batches.

Two threads, each the only one doing its job:

* the *journal* thread takes everything queued (up to `MAX_BATCH` measurements
  from many requests, group commit) and, for that group:

  1. analyses the lines (`pipeline.analyse_batch`: uid from the content, the
     verdict by test name, observations); a line the analysis cannot read is
     refused (422);
  2. sorts out what the collector already has (same uid: an idempotent
     resubmission, answered 200 ``duplicate``) and what an administrator deleted
     (410), with an in-memory set of 64-bit uid keys and an exact check on a hit;
  3. appends the new lines to the raw log and ``fdatasync``s it (`RawLog.append`);
  4. hands the analysed batch to the store thread, and only then answers every
     waiting request with its uid and verdict.

* the *store* thread writes what the journal handed over into the DuckDB store,
  as many batches per transaction as have accumulated (a transaction costs about
  the same for 1 or 1000 measurements), moves the store's checkpoint (how far
  into the raw log the tables go), and runs administrative jobs (delete,
  re-analyse) in order with the batches.

So a 200 means "on disk, fsync'd, analysed", and the tables follow within a
transaction's time (`Ingestor.settled()` waits for that; `unsettled_raw()`
serves acknowledged measurements that are not in the tables yet). A crash
between the two loses nothing: at start the store catches up with the raw log
from its checkpoint.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pyarrow as pa

from tamperscope.analysis.pipeline import analyse_batch
from tamperscope.analysis.reader import REASONS, Line
from tamperscope.analysis.schema import blocking_json
from tamperscope.analysis.store import BatchResult, Store
from tamperscope.analysis.verdicts import Matcher, default_matcher
from tamperscope.collector.rawlog import Position, RawLog

log = logging.getLogger("tamperscope.collector")
T = TypeVar("T")

MAX_BATCH = 1024          # measurements per journal commit
LINGER = 0.002            # seconds a journal commit waits for more submissions to join it
QUEUE_SIZE = 512          # requests waiting for the journal before new ones get 503
UNSETTLED_BYTES = 256 * 1024 * 1024  # acknowledged but not in the store yet; above this, submissions wait
REPLAY_BATCH = 2048       # raw log lines per transaction when catching up at start
CHECKPOINT_EVERY = 0.5    # seconds between updates of the store's checkpoint (replay is idempotent)
STORE_INTERVAL = 0.25     # seconds between store transactions while submissions keep coming
STORE_BATCH = 4096        # measurements that make a store transaction start at once

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
    commits: int = 0                     # journal group commits (fsyncs)
    largest_commit: int = 0
    transactions: int = 0                # store transactions
    largest_transaction: int = 0
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
class _Handover:
    """An acknowledged group, for the store thread."""

    results: list[BatchResult]
    position: Position                   # the raw log's end after this group
    fresh: dict[str, int]                # uid -> bytes, appended by this group


@dataclass
class _Analysed:
    """Analysis of a run of lines: the results, and per line its uid or why it was refused."""

    results: list[BatchResult] = field(default_factory=list)
    uids: list[str | None] = field(default_factory=list)
    keys: dict[str, int] = field(default_factory=dict)                 # uid -> 64-bit key
    refused: dict[int, tuple[str, str]] = field(default_factory=dict)  # line index -> (error, detail)


class Busy(Exception):
    """The writer's queue is full: the client should retry later (503)."""


async def to_the_end(work: asyncio.Future[T]) -> T:
    """``work``'s result, waited for even when the caller is cancelled meanwhile (a second Ctrl-C, another
    SIGTERM): what closes the store must not be cut in the middle. The caller's cancellation is raised after."""
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(work)
            break
        except asyncio.CancelledError:
            if work.done():  # the work itself was cancelled: the loop is being closed
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError()
    return result


def _verdict_of(table: pa.Table) -> dict[str, dict[str, Any]]:
    rows = table.select(["measurement_uid", "blocking", "accessible", "mechanism", "confidence", "status",
                         "outcome", "fingerprints"]).to_pylist()
    return {r.pop("measurement_uid"): {**r, "blocking": blocking_json(r["blocking"])} for r in rows}


class Ingestor:
    """Owns the store and the raw log for writing; everything that writes goes through here."""

    def __init__(self, store: Store, rawlog: RawLog, *, max_batch: int = MAX_BATCH,
                 queue_size: int = QUEUE_SIZE, matcher: Matcher | None = None, linger: float = LINGER,
                 announce: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.rawlog = rawlog
        self.max_batch = max_batch
        self.linger = linger
        self.stats = IngestStats()
        self.healthy = True                  # False after a store error: the checkpoint stops moving
        self._matcher = matcher
        self._announce = announce or (lambda text: print(f"tamperscope: {text}", file=sys.stderr, flush=True))
        self._queue_size = queue_size
        self._queue: asyncio.Queue[_Submission | None] | None = None
        self._store_queue: asyncio.Queue[_Handover | _Job | None] | None = None
        self._journal_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tamperscope-journal")
        self._store_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tamperscope-store")
        self._tasks: list[asyncio.Task[None]] = []
        self._keys: set[int] = set()         # uid keys of everything stored or acknowledged
        self._unsettled: dict[str, bytes] = {}  # acknowledged, not yet in the store
        self._unsettled_bytes = 0
        self._lock = threading.Lock()
        self._room = asyncio.Event()
        self._lookup: Any = None             # the journal thread's own DuckDB cursor
        self._position: Position | None = None
        self._checkpointed = 0.0
        self._last_transaction = 0.0
        self._halt = threading.Event()       # set: the catch-up at start stops after its current batch

    # ---- lifecycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(maxsize=self._queue_size)
        self._store_queue = asyncio.Queue()
        self._room.set()
        startup = self._store_thread.submit(self._startup)
        try:
            await asyncio.wrap_future(startup)
        except asyncio.CancelledError:  # Ctrl-C while catching up: stop after the batch in hand (checkpointed)
            self._halt.set()
            await to_the_end(asyncio.wrap_future(startup))
            raise
        self._lookup = await loop.run_in_executor(self._store_thread, self.store.con.cursor)
        self._tasks = [asyncio.create_task(self._journal_loop(), name="tamperscope-journal"),
                       asyncio.create_task(self._store_loop(), name="tamperscope-store")]

    async def stop(self) -> None:
        """Answer everything queued, write it to the store, then close the store and the raw log."""
        if self._tasks and self._queue is not None and self._store_queue is not None:
            await self._queue.put(None)
            await self._tasks[0]
            await self._store_queue.put(None)
            await self._tasks[1]
            self._tasks = []
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._store_thread, self._shutdown)
        self._journal_thread.shutdown(wait=True)
        self._store_thread.shutdown(wait=True)

    def _startup(self) -> None:
        if self._matcher is None:
            self._matcher = default_matcher()
        con = self.store.con
        con.execute(f"CREATE TABLE IF NOT EXISTS {CHECKPOINT_TABLE} (segment VARCHAR, off BIGINT)")
        if con.execute(f"SELECT count(*) FROM {CHECKPOINT_TABLE}").fetchone() == (0,):
            con.execute(f"INSERT INTO {CHECKPOINT_TABLE} VALUES ('', 0)")
        self.store.begin_run(engine="collector", paths=[str(self.rawlog.incoming)])
        self._replay()
        self._keys = {int(r[0]) for r in con.execute("SELECT uid_key FROM measurements").fetchall()}

    def _shutdown(self) -> None:
        try:
            if self.healthy and self._position is not None:
                self._set_checkpoint(self._position)
            self.store.finish_run()
        finally:
            if self._lookup is not None:
                self._lookup.close()
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
        if self.rawlog.end() <= since:
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
                if self._halt.is_set():
                    self._announce(f"interrupted: {self.stats.replayed} measurement(s) read from the raw log; "
                                   "the next start reads the rest")
                    return
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
        """Queue measurements (serialised JSON, one per element); their receipts once durable."""
        if self._queue is None or not self._tasks:
            raise RuntimeError("the ingestor is not running")
        future: asyncio.Future[list[Receipt]] = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(self._queue.put(_Submission(list(lines), future)), wait)
        except TimeoutError:
            raise Busy("the collector is busy; retry later") from None
        return await asyncio.shield(future)

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the store thread, after every batch acknowledged before this call."""
        if self._store_queue is None or not self._tasks:
            raise RuntimeError("the ingestor is not running")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._store_queue.put(_Job(fn, future))
        return await asyncio.shield(future)

    async def settled(self) -> None:
        """Return once everything acknowledged so far is in the store's tables."""
        await self.call(lambda: None)

    def unsettled_raw(self, uid: str) -> bytes | None:
        """An acknowledged measurement the store has not taken yet (read-your-writes for the raw API)."""
        with self._lock:
            return self._unsettled.get(uid)

    @property
    def queued(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    @property
    def unsettled(self) -> int:
        with self._lock:
            return len(self._unsettled)

    # ---- the journal

    async def _journal_loop(self) -> None:
        assert self._queue is not None and self._store_queue is not None
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            item = await self._queue.get()
            if item is None:
                return
            group = [item]
            count = len(item.lines)
            # Group commit: give requests already on their way a moment to join this fsync.
            linger_until = loop.time() + self.linger
            while count < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    if loop.time() >= linger_until:
                        break
                    await asyncio.sleep(0.0005)
                    continue
                if more is None:
                    stopping = True
                    break
                group.append(more)
                count += len(more.lines)
            await self._room.wait()  # the store thread is too far behind: let it catch up first
            try:
                receipts, handover = await loop.run_in_executor(
                    self._journal_thread, self._commit, [s.lines for s in group])
            except Exception as exc:  # the raw log could not be written: nothing was acknowledged
                log.exception("journal commit failed")
                for s in group:
                    if not s.future.done():
                        s.future.set_exception(exc)
                continue
            if handover is not None:
                if self._unsettled_bytes > UNSETTLED_BYTES:
                    self._room.clear()
                await self._store_queue.put(handover)
            for s, r in zip(group, receipts, strict=True):
                if not s.future.done():
                    s.future.set_result(r)

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
            out.keys.update(zip(result.measurements.column("measurement_uid").to_pylist(),
                                result.measurements.column("uid_key").to_pylist(), strict=True))
            out.results.append(result)

        run(list(range(len(lines))))
        return out

    def _stored(self, uids: Sequence[str]) -> set[str]:
        """Which of these uids the store's tables hold (exact; journal thread)."""
        if not uids:
            return set()
        marks = ", ".join("?" * len(uids))
        rows = self._lookup.execute(
            f"SELECT measurement_uid FROM measurements WHERE measurement_uid IN ({marks})", list(uids)).fetchall()
        return {r[0] for r in rows}

    def _commit(self, groups: list[list[bytes]]) -> tuple[list[list[Receipt]], _Handover | None]:
        lines = [line for g in groups for line in g]
        analysed = self._analyse(lines, "collector")
        verdicts: dict[str, dict[str, Any]] = {}
        for result in analysed.results:
            verdicts.update(_verdict_of(result.verdicts))
        deleted = self.rawlog.deleted
        # Known already? The key set answers "certainly new" for almost everything; a hit is checked
        # exactly: first among the acknowledged-but-unsettled, then in the tables (in that order, so a
        # batch the store thread commits meanwhile is seen in one place or the other).
        maybe = sorted({u for u in analysed.uids if u is not None and analysed.keys.get(u) in self._keys})
        with self._lock:
            known = {u for u in maybe if u in self._unsettled}
        known |= self._stored([u for u in maybe if u not in known])
        fresh: dict[str, int] = {}
        fresh_lines: list[bytes] = []
        per_line: list[Receipt] = []
        for i, uid in enumerate(analysed.uids):
            if uid is None:
                error, detail = analysed.refused.get(i, ("invalid_measurement", "not a measurement"))
                per_line.append(Receipt("rejected", error=error, detail=detail))
            elif uid in deleted:
                per_line.append(Receipt("deleted", uid))
            elif uid in known or uid in fresh:
                per_line.append(Receipt("duplicate", uid, verdicts.get(uid)))
            else:
                fresh[uid] = len(lines[i])
                fresh_lines.append(lines[i])
                per_line.append(Receipt("stored", uid, verdicts.get(uid)))
        handover = None
        if fresh_lines:
            position = self.rawlog.append(fresh_lines)  # durable from here on
            with self._lock:
                for i, uid in enumerate(analysed.uids):
                    if uid is not None and uid in fresh and uid not in self._unsettled:
                        self._unsettled[uid] = lines[i]
                        self._unsettled_bytes += len(lines[i])
            self._keys.update(analysed.keys[u] for u in fresh)
            handover = _Handover(analysed.results, position, fresh)
        # counted once the journal took the lines (QA: a failed append, a full disk, answered every request with
        # the error, and the counts said its lines stored)
        for receipt in per_line:
            if receipt.status == "duplicate":
                self.stats.duplicates += 1
            else:
                setattr(self.stats, receipt.status, getattr(self.stats, receipt.status) + 1)
        self.stats.commits += 1
        self.stats.largest_commit = max(self.stats.largest_commit, len(lines))
        out: list[list[Receipt]] = []
        at = 0
        for g in groups:
            out.append(per_line[at:at + len(g)])
            at += len(g)
        return out, handover

    # ---- the store

    async def _store_loop(self) -> None:
        assert self._store_queue is not None
        loop = asyncio.get_running_loop()
        held: _Handover | _Job | None = None
        item: _Handover | _Job | None
        stopping = False
        while True:
            if held is not None:
                item, held = held, None
            elif stopping:
                return
            else:
                item = await self._store_queue.get()
            if item is None:
                return
            if isinstance(item, _Job):
                try:
                    result = await loop.run_in_executor(self._store_thread, item.fn)
                except Exception as exc:
                    if not item.future.done():
                        item.future.set_exception(exc)
                else:
                    if not item.future.done():
                        item.future.set_result(result)
                continue
            batch = [item]
            # One transaction costs DuckDB about the same for 1 or 1000 rows: gather what arrives within
            # STORE_INTERVAL of the previous one, unless a job (a reader waiting to settle) is asking.
            until = max(loop.time(), self._last_transaction + STORE_INTERVAL)
            while sum(len(h.fresh) for h in batch) < STORE_BATCH:
                try:
                    more = await asyncio.wait_for(self._store_queue.get(), max(0.0, until - loop.time()))
                except TimeoutError:
                    break
                if more is None:
                    stopping = True
                    break
                if isinstance(more, _Job):
                    held = more
                    break
                batch.append(more)
            await loop.run_in_executor(self._store_thread, self._ingest, batch)
            self._last_transaction = loop.time()
            if self._unsettled_bytes <= UNSETTLED_BYTES:
                self._room.set()

    def _ingest(self, batch: list[_Handover]) -> None:
        try:
            for handover in batch:
                for result in handover.results:
                    self.store.write(result)
            self.store.flush()
            self._position = batch[-1].position
            now = time.monotonic()
            if self.healthy and now - self._checkpointed >= CHECKPOINT_EVERY:
                self._set_checkpoint(self._position)
                self._checkpointed = now
        except Exception:
            # Acknowledged anyway: the raw log has it, and the next start replays it.
            log.exception("the store could not take a batch; it will be replayed from the raw log at restart")
            self.healthy = False
            self.stats.store_errors += 1
        finally:
            with self._lock:
                for handover in batch:
                    for uid, size in handover.fresh.items():
                        if self._unsettled.pop(uid, None) is not None:
                            self._unsettled_bytes -= size
            self.stats.transactions += 1
            self.stats.largest_transaction = max(self.stats.largest_transaction,
                                                 sum(len(h.fresh) for h in batch))


__all__ = ["Busy", "CHECKPOINT_TABLE", "IngestStats", "Ingestor", "MAX_BATCH", "Receipt"]
