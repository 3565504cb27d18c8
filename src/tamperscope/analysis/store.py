"""The analysis store: one DuckDB file, and the raw measurements beside it.

Layout (docs/analysis.md has the column-by-column schema):

* ``<name>.duckdb``: tables ``measurements`` (the envelope of each measurement,
  and where its raw bytes are), ``verdicts`` (one per measurement, denormalised
  with the envelope fields the aggregates filter on), ``observations`` (one row
  per DNS/TCP/TLS/QUIC/HTTP step), ``rejections`` (bad input, with its reason),
  ``runs``, ``meta`` and ``migrations``.
* ``<name>.raw/<run_id>/<n>.jsonl.zst``: the raw measurements, verbatim, one
  per line, append-only, in zstd frames of about 4 MiB of lines (a new segment
  file every 256 MiB; ``zstdcat`` reads them, and so does ``tamperscope analyze``,
  so the derived tables can always be rebuilt from this directory alone).

Identity: ``measurement_uid`` is derived from the content (a SHA-256 of the
measurement's canonical JSON, keys sorted) prefixed with its time, country and
test name, OONI-style. Ingesting the same measurement twice, from any file,
in any formatting, leaves one row. Deduplication happens per flush (thousands of
measurements at once) with one semi-join on a 64-bit ``uid_key`` column and the
start time (a copy has the same start, and time-ordered input lets DuckDB skip
the row groups of other days); no per-row DB calls. Content and start, not the
whole uid, say that two are one: the uid's country can come from beside the line
(a Satellite v1 line's, from its scan's tagged_resolvers.json), and a copy read
without it is still the measurement stored, under the stored uid (--jsonl too).

Schema versions (`schema.py`, re-exported here): `MIGRATIONS` is an ordered
list; opening a store applies the missing ones in one transaction each and
records them in ``migrations``. A store newer than this code is refused
(`StoreError`), never silently used.

The aggregates the explorer and the report read (`timeline`, `per_domain`, ...) are in
`aggregates.py`; they read this store's tables.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import os
import re
import secrets
import shutil
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from tamperscope.analysis.categories import category_sql
from tamperscope.analysis.confidence import NO_NETWORK, insert_verdicts, promote
from tamperscope.analysis.observations import SCHEMA as OBSERVATION_SCHEMA
from tamperscope.analysis.reader import FileDone, Rejection
from tamperscope.analysis.rules import backfill as backfill_rules
from tamperscope.analysis.schema import (
    MEASUREMENT_SCHEMA,
    MIGRATIONS,
    SCHEMA_VERSION,
    VERDICT_SCHEMA,
    Migration,
    StoreError,
    migrate,
    path_text,
    schema_version,
)
from tamperscope.analysis.transport import backfill as backfill_transports
from tamperscope.analysis.verdicts import default_matcher
from tamperscope.model.inputs import BadInput, check_utf8
from tamperscope.model.paths import data_dir

FLUSH_ROWS = 4096  # measurements buffered before one transaction writes them ...
FLUSH_BYTES = 48 * 1024 * 1024  # ... or this many bytes of raw measurements, whichever comes first
INGEST_MEMORY_LIMIT = "32MB"  # DuckDB's buffers while `analyze` streams into the store (Store.streaming)
FRAME_BYTES = 4 * 1024 * 1024  # raw lines per zstd frame: reading one measurement decompresses at most this
SEGMENT_BYTES = 256 * 1024 * 1024  # a run's raw segment file is closed and a new one begun past this size
ZSTD_LEVEL = 3  # raw frames: fast, and several times smaller than the JSON
_ZSTD = pa.Codec("zstd", compression_level=ZSTD_LEVEL)
DEFAULT_DB_NAME = "tamperscope.duckdb"


def error_line(exc: BaseException) -> str:
    """An error as one short line: an OS error's own words ("No space left on device"), else its first line."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


# --------------------------------------------------------------------------- paths


class RawUnreadable(Exception):
    """A measurement's raw bytes cannot be read: its segment is missing (a store copied without its ``.raw``
    directory) or damaged. Its rows are still in the tables; only the bytes are gone."""


def raw_pointers(cur: duckdb.DuckDBPyConnection, uids: Sequence[str]) -> list[tuple[Any, ...]]:
    """Where the raw bytes of ``uids`` are: (uid, segment, frame offset, frame length, frame size, line offset,
    line length) for each the store holds (segment None: no raw bytes kept)."""
    return cur.execute(
        """SELECT measurement_uid, raw_segment, raw_frame_offset, raw_frame_length, raw_frame_size,
                  raw_line_offset, raw_line_length
           FROM measurements WHERE measurement_uid IN (SELECT unnest(?::VARCHAR[]))""", [list(uids)]).fetchall()


def identity(uid: str) -> tuple[str, str]:
    """What makes two rows one measurement (`Store._known`): the start the uid writes (its first 14 characters)
    and the content's 128-bit hash (its last 32), not the country between them, which can come from outside
    the line (a Satellite v1 scan's tagged_resolvers.json, an ASN table)."""
    return uid[:14], uid[-32:]


_UID = re.compile(r"(\d{14})_[^_]*_[a-z0-9]*_([0-9a-f]{32})", re.ASCII)


def stored_as(cur: duckdb.DuckDBPyConnection, uid: str) -> str | None:
    """The uid under which the store holds the measurement ``uid`` names, where it holds it under another: the
    same content hash and start with another country (`Store._known`: a Satellite v1 line read with its scan's
    tagged_resolvers.json and without it). None when ``uid`` is stored itself, is no uid, or nothing matches."""
    found = _UID.fullmatch(uid)
    if found is None:
        return None
    try:
        start = dt.datetime.strptime(found[1], "%Y%m%d%H%M%S")
    except ValueError:
        return None
    key = int.from_bytes(bytes.fromhex(found[2][:16]), "big", signed=True)
    rows = cur.execute(
        """SELECT measurement_uid FROM measurements WHERE uid_key = ? AND measurement_start_time >= ?
           AND measurement_start_time < ? AND left(measurement_uid, 14) = ? AND right(measurement_uid, 32) = ?
           LIMIT 2""",
        [key, start, start + dt.timedelta(seconds=1), found[1], found[2]]).fetchall()
    return str(rows[0][0]) if len(rows) == 1 and rows[0][0] != uid else None


def read_frame(raw_root: Path, segment: str, offset: int, length: int, size: int) -> bytes:
    """One zstd frame of a raw segment, decompressed and checked against the size written."""
    try:
        with open(raw_root / segment, "rb") as f:
            f.seek(offset)
            compressed = f.read(length)
        data = bytes(pa.Codec("zstd").decompress(compressed, decompressed_size=size, asbytes=True))
        if len(data) != size:
            raise ValueError(f"{len(data)} bytes where {size} were written")
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise RawUnreadable(f"the raw segment {segment} of the store cannot be read "
                            f"({exc.strerror if isinstance(exc, OSError) and exc.strerror else exc})") from None
    return data


def damaged(segment: str) -> str:
    """What is said of a raw segment whose bytes no longer give the uids of the measurements they are read for
    (`pipeline.gives_uid`)."""
    return (f"the raw segment {segment} of the store is damaged: what it gives back no longer matches the "
            "measurements' uids")


RAW_CHUNK = 16  # measurements a source without `Store.raw_each` is asked for at once (`raw_each`)


def raw_each(source: Any, uids: Sequence[str]) -> Iterator[tuple[str, bytes]]:
    """(uid, raw bytes) of the ``uids`` ``source`` can read, a few at a time whatever their size: its own
    ``raw_each`` (a `Store`, the explorer's reader: one at a time), else its ``raw_many`` asked for `RAW_CHUNK`
    uids at once. For a reader of many measurements (the unrecognised blockpages, the hops): what it holds is
    bounded by their number, never by their size."""
    each = getattr(source, "raw_each", None)
    if each is not None:
        yield from each(uids)
        return
    for start in range(0, len(uids), RAW_CHUNK):
        yield from source.raw_many(uids[start:start + RAW_CHUNK]).items()


def _make_parent(path: Path) -> None:
    """The store's directory, made if missing; a `StoreError` when it cannot be (a file in the way, a place
    this user cannot write), rather than an OSError from deep inside opening the store."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:  # one of the parents is a file: "File exists" would not say which
        raise StoreError(f"cannot create the store {path}: {exc.filename} is not a directory") from None
    except OSError as exc:
        raise StoreError(f"cannot create the store {path}: {error_line(exc)}") from None


def _ours(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Refuse another program's DuckDB database before migrating writes our tables into it: a store with no
    migration recorded holds no table of its own (an interrupted first migration can leave ``migrations``)."""
    try:
        version = schema_version(con)
    except duckdb.Error:  # a table named migrations without our columns
        raise StoreError(f"{path} is not a tamperscope store: it is a DuckDB database whose table migrations is "
                         "another program's") from None
    if version:
        return
    tables = sorted((schema, name) for schema, name in con.execute(  # in any schema, not only main
        "SELECT table_schema, table_name FROM information_schema.tables").fetchall())
    others = ["".join(ch if ch.isprintable() else "?" for ch in (name if schema == "main" else f"{schema}.{name}"))
              for schema, name in tables if (schema, name) != ("main", "migrations")]
    if others:
        shown = ", ".join(others[:3]) + (", …" if len(others) > 3 else "")
        raise StoreError(f"{path} is not a tamperscope store: it is a DuckDB database with other tables ({shown})")


# The tables every store holds once migrated (backfill lists come and go): one missing is a damaged store, which
# would fail half-way through a command
_TABLES = frozenset({"measurements", "verdicts", "observations", "rejections", "runs", "meta", "anomaly_groups",
                     "ingested_files", "categories", "test_lists", "rules", "promotions", "migrations"})


def _complete(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    have = {row[0] for row in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()}
    missing = sorted(_TABLES - have)
    if missing:
        raise StoreError(f"the store {path} is damaged: its table{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(missing)} {'are' if len(missing) > 1 else 'is'} missing; analyse the "
                         "measurements into a new --db")


def _whole(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Refuse a store cut short (a copy that stopped, a full disk) before anything is written to it: DuckDB opens
    it, and fails only on the first read of a block past the end, by when a command may have written into the
    damaged file. Its header counts the blocks in use; the file must hold them. With a write-ahead log beside it
    the blocks it will add are counted already, so the check waits for the next clean open."""
    if Path(f"{path}.wal").exists():
        return
    try:
        blocks, block_size = con.execute("SELECT used_blocks, block_size FROM pragma_database_size()").fetchone() \
            or (0, 0)
        size = path.stat().st_size
    except (duckdb.Error, OSError):
        return  # not a question this DuckDB or this file can answer: the reads will tell
    # used blocks only: the free ones at the end (total_blocks counts them) need not be in the file
    if blocks and size < blocks * block_size:
        raise StoreError(f"the store {path} is cut short: {size:,} bytes, where its header counts {blocks:,} "
                         f"blocks in use of {block_size:,}; it cannot be read (restore it from a copy)")


_DUCKDB_MAGIC = b"DUCK"  # a DuckDB file's main header: an 8-byte checksum, then these four bytes


def _argv(pid: str) -> list[str] | None:
    """A process's command line, from /proc; None when it cannot be read."""
    try:
        return [a for a in Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace").split("\0") if a]
    except OSError:
        return None


def _as_ours(argv: list[str]) -> list[str]:
    """``python -m tamperscope …`` and ``.venv/bin/tamperscope …`` both as ``tamperscope …`` (else as given)."""
    for i, arg in enumerate(argv):
        if os.path.basename(arg) == "tamperscope" or (arg == "tamperscope" and i and argv[i - 1] == "-m"):
            return ["tamperscope", *argv[i + 1:]]
    return argv


def _serving(message: str) -> str | None:
    """"http://127.0.0.1:8080" when the process DuckDB's lock error names is `tamperscope serve` (from its
    --host and --port, or their defaults; a wildcard host read as this machine); else None."""
    match = re.search(r"\(PID (\d+)\)", message)
    argv = _as_ours(_argv(match.group(1)) or []) if match else []
    if argv[:2] != ["tamperscope", "serve"]:
        return None
    given = {"--host": "127.0.0.1", "--port": "8080"}
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if name in given:
            given[name] = value if eq else (argv[i + 1] if i + 1 < len(argv) else given[name])
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(given["--host"], given["--host"])
    if not given["--port"].isdigit() or not all(c.isalnum() or c in ".:-" for c in host):
        return None
    return f"http://{f'[{host}]' if ':' in host else host}:{given['--port']}"


def _holder(message: str) -> str:
    """" (PID 123: tamperscope serve --db x.duckdb)" from DuckDB's lock error, which names the holding
    process's PID; its command line from /proc when it can be read (else the PID alone, or nothing)."""
    match = re.search(r"\(PID (\d+)\)", message)
    if not match:
        return ""
    pid = match.group(1)
    argv = _argv(pid)
    if argv is None:
        return f" (PID {pid})"
    named = _as_ours(argv)
    if named is argv and argv:  # not ours: the program's name without its directory
        named = [os.path.basename(argv[0]), *argv[1:]]
    command = " ".join(named)
    command = command if len(command) <= 200 else command[:199] + "…"
    command = "".join(c if c.isprintable() else "?" for c in command)
    return f" (PID {pid}: {command})" if command else f" (PID {pid})"


def _a_database_or_nothing(path: Path) -> None:
    """Refuse an existing file that is not a DuckDB database before DuckDB opens it. DuckDB opens a ``.jsonl``,
    ``.csv`` or ``.parquet`` file as an in-memory database with a view over it, so ``--db measurements.jsonl``
    (input given as the store) was called "a DuckDB database with other tables"; and it waits forever on a
    named pipe."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return  # a new store
    except OSError as exc:
        raise StoreError(f"cannot open the store {path}: {error_line(exc)}") from None
    if stat.S_ISDIR(mode):
        return  # DuckDB's own error says it is a directory
    if not stat.S_ISREG(mode):
        raise StoreError(f"{path} is not a tamperscope store: it is not a regular file (a pipe or a device)")
    try:
        with path.open("rb") as f:
            head = f.read(12)
    except OSError as exc:
        raise StoreError(f"cannot open the store {path}: {error_line(exc)}") from None
    if head[8:12] != _DUCKDB_MAGIC:
        what = "an empty file" if not head else "not a DuckDB database"
        raise StoreError(f"{path} is not a tamperscope store: it is {what}, and --db names the DuckDB file "
                         "that `tamperscope analyze` writes")


def default_db_path() -> Path:
    """``$TAMPERSCOPE_DB``, else ``$XDG_DATA_HOME/tamperscope/tamperscope.duckdb``
    (``~/.local/share/tamperscope/...`` when XDG_DATA_HOME is unset)."""
    explicit = os.environ.get("TAMPERSCOPE_DB")
    if explicit:
        return Path(explicit)
    return data_dir() / DEFAULT_DB_NAME


def raw_root_for(db_path: Path) -> Path:
    return db_path.with_name(db_path.name.removesuffix(".duckdb") + ".raw")


# --------------------------------------------------------------------------- batches

@dataclass(frozen=True)
class BatchResult:
    """What analysing one batch of input lines produced; the store writes it."""

    measurements: pa.Table             # MEASUREMENT_SCHEMA, unique uids within the batch
    verdicts: pa.Table                 # VERDICT_SCHEMA, same rows, same order
    observations: pa.Table             # observations.SCHEMA
    raw: tuple[bytes, ...]             # the input bytes of each measurement row, verbatim
    rejections: tuple[Rejection, ...]
    records: int                       # input records seen (accepted + rejected + duplicates in the batch)
    order: tuple[str, ...] = ()        # uid of every accepted record, in input order (repeats included)
    errors: tuple[Rejection, ...] = ()  # "analysis_error": stored with a failure verdict, and reported
    matcher_calls: int = 0
    matcher_hits: int = 0
    outside: int = 0                   # good records outside the run's selection (--cc, --test...): not stored
    unread: int = 0                    # archive members of Censored Planet's scans that hold no measurement
    files_done: tuple[FileDone, ...] = ()  # input files whose last record is in this batch (or before)
    rules: pa.Table | None = None      # RULE_SCHEMA: the blocking_rules measurements' rules, if any
    # Censored Planet's lines read (analysis/censoredplanet.py): how many, and its anomaly flag against our verdict:
    # (read, it flagged and we found interference, it flagged and we did not, it did not and we did, neither,
    # pages of Satellite's blockpages.json read with their measurements, Satellite lines those pages were joined to)
    censoredplanet: tuple[int, int, int, int, int, int, int] = (0, 0, 0, 0, 0, 0, 0)


EXAMPLE_WHERE = 200   # characters of a skipped record's place (file!member:line) in the summary's examples ...
EXAMPLE_DETAIL = 400  # ... and of what was wrong with it: a name in an archive can be 100 KB long


def _cut(text: str, most: int) -> str:
    """``text`` in at most ``most`` characters, cut in the middle (``…``): a file's start and, at its end, the
    member and the line number are both kept."""
    if len(text) <= most:
        return text
    half = (most - 1) // 2
    return text[:half] + "…" + text[-(most - 1 - half):]


@dataclass
class WriteStats:
    """Running totals for one run."""

    records: int = 0
    accepted: int = 0
    new: int = 0
    duplicates: int = 0
    rejected: int = 0
    analysis_errors: int = 0            # stored, but the verdict function failed on them
    by_reason: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)  # reason -> first few "file:line: detail"
    matcher_calls: int = 0
    matcher_hits: int = 0
    outside: int = 0                    # records outside the selection, skipped (not bad input)
    files_skipped: int = 0              # files not opened: their OONI path names another country or test
    files_known: int = 0                # files not opened: an earlier run analysed them, unchanged, in full
    files_unread: int = 0               # files and archive members of Censored Planet's scans that hold no measurement
    censoredplanet: list[int] = field(default_factory=lambda: [0] * 7)  # BatchResult.censoredplanet, summed
    renamed: int = 0                    # duplicates read under another uid than the copy stored (`Store._known`)
    networks_unused: int = 0            # duplicates naming a network, of measurements stored on AS0 (none)

    def add_rejections(self, rejections: Sequence[Rejection]) -> None:
        for r in rejections:
            if r.reason == "analysis_error":
                self.analysis_errors += 1
            else:
                self.rejected += 1
            self.by_reason[r.reason] = self.by_reason.get(r.reason, 0) + 1
            shown = self.examples.setdefault(r.reason, [])
            if len(shown) < 3:
                shown.append(f"{_cut(r.where, EXAMPLE_WHERE)}: {_cut(r.detail, EXAMPLE_DETAIL)}")


# --------------------------------------------------------------------------- the store

_UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
          "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4}


def _bytes(limit: str) -> int:
    """'32MB' / '1.5 GiB' -> bytes (DuckDB's spelling of memory sizes)."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", limit)
    if not match or match.group(2).upper() not in _UNITS:
        raise ValueError(f"not a memory size: {limit!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


class Store:
    """One analysis store. Not thread-safe for writing; readers use `cursor()`."""

    def __init__(self, path: str | os.PathLike[str], *, raw_root: str | os.PathLike[str] | None = None,
                 create: bool = True, memory_limit: str | None = "256MB", sync: bool = False,
                 background: bool = True) -> None:
        self.path = Path(path)
        try:  # DuckDB cannot open such a name: `RuntimeError: std::bad_cast`
            check_utf8(self.path, "the store")
        except BadInput as exc:
            raise StoreError(str(exc)) from None
        if not create and not self.path.exists():
            raise StoreError(f"no store at {self.path}: run `tamperscope analyze` first")
        _make_parent(self.path)
        _a_database_or_nothing(self.path)
        try:
            self.con = duckdb.connect(str(self.path))
        except duckdb.IOException as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if "lock" in first.lower():
                raise StoreError(f"the store {self.path} is in use by another process{_holder(first)}; a store opens"
                                 " in one process at a time: stop that one, or use another --db",
                                 serving=_serving(first)) from exc
            raise StoreError(f"cannot open the store {self.path}: {first}") from exc
        except duckdb.Error as exc:
            raise StoreError(f"cannot open the store {self.path}: {str(exc).splitlines()[0]}") from exc
        try:
            _whole(self.con, self.path)
        except BaseException:
            self.con.close()
            raise
        # DuckDB's buffer cache counts towards our memory: capped, it stays flat as the store grows
        # (queries spill to disk beyond it). No progress bars on our stdout.
        self.memory_limit = memory_limit
        if memory_limit:
            self.con.execute(f"SET memory_limit = '{memory_limit}'")
        self.con.execute("SET enable_progress_bar = false")
        self.raw_root = Path(raw_root) if raw_root is not None else raw_root_for(self.path)
        try:
            _ours(self.con, self.path)
            self.migrated = migrate(self.con)
            _complete(self.con, self.path)
            promote(self.con)  # what a streaming ingest that did not finish left to confirm
        except (duckdb.Error, ValueError) as exc:  # tables of our names but not our shape
            self.con.close()
            raise StoreError(f"cannot use {self.path} as a store: {error_line(exc)}") from exc
        except BaseException:
            self.con.close()
            raise
        self._pending: list[BatchResult] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self._run_id: str | None = None
        self._order_seq = 0
        self._track_order = False
        self._lock = threading.Lock()
        self._streaming_limit: int | None = None  # bytes, while `streaming()` is on
        self.streaming_limit_raised = 0  # how often a flush had to double it
        self._segment_file: Any = None  # the raw segment being appended to, and its name
        self._segment_name = ""
        self.sync = sync  # fsync raw segments before the database commits their pointers
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="tamperscope-store") if background else None
        self._inflight: Future[None] | None = None
        # A transaction failed (a full disk, no memory left, ^C): what is still buffered must not be
        # committed after it, or a file's marker could say "read in full" over the lines that were lost.
        self._failed = False
        self.stats = WriteStats()
        self.unreadable: dict[str, str] = {}  # raw segment -> why `raw_many` could not read it
        try:  # the rules of blocking_rules measurements analysed before the store kept them (schema v7), and
            # the transports of circumvention tools' measurements (schema v8)
            self.backfilled = backfill_rules(self.con, self.raw, default_matcher)
            self.backfilled_transports = backfill_transports(self.con, self.raw)
        except BaseException:
            self._shutdown()
            raise

    # ---- lifecycle

    def close(self) -> None:
        try:
            self.flush()
        except StoreError:
            if not self._failed:
                raise
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)
        self._inflight = None
        self._close_segment()
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._pending.clear()
            try:
                self._wait()
            except BaseException:  # the original error matters more
                pass
            self._shutdown()

    @contextmanager
    def streaming(self, memory_limit: str | None = None) -> Iterator[Store]:
        """Run a long ingest with DuckDB's buffers capped lower (then everything is flushed and the
        store's own limit restored).

        An ingest reads the database only to deduplicate and to look up its groups' counts, so a
        small cache costs it nothing measurable, while a large one fills as the store grows and
        makes the process's memory depend on how much it has ingested (bench/analyze, section 2).

        The cap is a starting point, not a wall. No statement of a flush needs memory that grows
        with the store (a 300,000-measurement ingest never raised it; before schema version 3
        the confidence update ran out of 32 MB at ~120,000 verdicts), but when DuckDB does run
        out of memory in a flush, the transaction is rolled back, the cap doubled (up to the
        store's own limit) and the flush done again. Before the store's limit comes back, the
        WAL is checkpointed under the cap.

        The older anomalies that the ingest's verdicts confirm are relabelled once, at the end
        (`confidence.promote`: one scan of the verdicts, instead of one per flush). Until then
        a reader sees them as "anomaly"; a run that stops early leaves them noted, and the
        next `Store` to open the file relabels them.
        """
        self.flush()
        memory_limit = memory_limit or INGEST_MEMORY_LIMIT
        self.con.execute(f"SET memory_limit = '{memory_limit}'")
        self._streaming_limit = _bytes(memory_limit)
        try:
            yield self
            self._wait()
            self._under_cap(lambda: promote(self.con))
            self._under_cap(lambda: self.con.execute("CHECKPOINT"))
        finally:
            self._wait()
            self._streaming_limit = None
            if self.memory_limit:
                self.con.execute(f"SET memory_limit = '{self.memory_limit}'")
            else:
                self.con.execute("RESET memory_limit")

    def ingested(self, files: Sequence[FileDone]) -> set[tuple[str, int, int]]:
        """Which of ``files`` (path, size, modification time) an earlier run analysed in full and committed."""
        if not files:
            return set()
        cur = self.cursor()
        named = {path_text(f.path): f.path for f in files}
        try:
            cur.register("_asked", pa.table({"path": [path_text(f.path) for f in files],
                                             "size": [f.size for f in files], "mtime_ns": [f.mtime_ns for f in files]}))
            rows = cur.execute("SELECT DISTINCT a.path, a.size, a.mtime_ns FROM _asked a "
                               "SEMI JOIN ingested_files i USING (path, size, mtime_ns)").fetchall()
        finally:
            cur.close()
        return {(named[path], size, mtime) for path, size, mtime in rows}

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection for one reader thread (DuckDB connections are not shared across threads)."""
        with self._lock:
            return self.con.cursor()

    @property
    def version(self) -> int:
        return schema_version(self.con)

    # ---- runs

    def begin_run(self, *, engine: str = "local", workers: int = 1, paths: Sequence[str] = (),
                  track_order: bool = False) -> str:
        """Start a run; with ``track_order`` the store remembers every accepted uid in input order."""
        self.flush()
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        self._run_id = f"{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
        self.stats = WriteStats()
        self._track_order = track_order
        self._order_seq = 0
        self.con.execute("INSERT INTO runs (run_id, started_at, engine, workers, paths) VALUES (?, ?, ?, ?, ?)",
                         [self._run_id, now, engine, workers, [path_text(p) for p in paths]])
        if track_order:
            self.con.execute("CREATE OR REPLACE TEMP TABLE run_order (seq BIGINT, measurement_uid VARCHAR)")
        return self._run_id

    def abandon_run(self) -> None:
        """Forget a run that could not start (its engine refused), where it wrote nothing: no row is left in
        ``runs`` that says it began and never ended."""
        if not self._pending and not self.stats.records and self._run_id is not None:
            self.con.execute("DELETE FROM runs WHERE run_id = ?", [self._run_id])

    def finish_run(self) -> WriteStats:
        self.flush()
        self._close_segment()
        s = self.stats
        if self._run_id is not None:
            self.con.execute(
                """UPDATE runs SET finished_at = ?, records = ?, accepted = ?, new = ?, duplicates = ?,
                   rejected = ? WHERE run_id = ?""",
                [dt.datetime.now(dt.timezone.utc).replace(tzinfo=None), s.records, s.accepted, s.new,
                 s.duplicates, s.rejected, self._run_id])
        self._run_id = None
        return s

    @property
    def run_id(self) -> str:
        if self._run_id is None:
            self.begin_run()
        assert self._run_id is not None
        return self._run_id

    # ---- writing

    def write(self, batch: BatchResult) -> None:
        """Buffer one batch; every `FLUSH_ROWS` measurements go to disk in one transaction.

        With ``background`` (the default) that transaction runs on the store's
        writer thread while the caller analyses the next batches: DuckDB, zstd
        and file writes release the GIL, so on two cores they overlap the
        analysis. At most one flush is in flight; its errors surface here or in
        `flush()`.
        """
        self.run_id  # noqa: B018 - make sure a run exists
        self._pending.append(batch)
        self._pending_rows += batch.measurements.num_rows + len(batch.rejections)
        self._pending_bytes += sum(len(line) for line in batch.raw)
        if self._pending_rows >= FLUSH_ROWS or self._pending_bytes >= FLUSH_BYTES:
            batches = self._take()
            self._wait()
            if self._writer is None:
                self._transaction(batches)
            else:
                self._inflight = self._writer.submit(self._transaction, batches)

    def flush(self) -> None:
        """Write everything buffered, and wait until it is committed."""
        self._wait()
        if self._pending:
            self._transaction(self._take())

    def _refuse_after_failure(self) -> None:
        if self._failed:
            self._pending.clear()
            raise StoreError("an earlier transaction of this run failed: nothing more is written")

    def _take(self) -> list[BatchResult]:
        batches, self._pending, self._pending_rows, self._pending_bytes = self._pending, [], 0, 0
        return batches

    def _wait(self) -> None:
        if self._inflight is not None:
            inflight, self._inflight = self._inflight, None
            inflight.result()

    def _transaction(self, batches: list[BatchResult]) -> None:
        self._refuse_after_failure()
        try:
            self._commit(batches)
        except BaseException:
            self._failed = True
            raise

    def _commit(self, batches: list[BatchResult]) -> None:
        con = self.con
        written: dict[str, Any] = {}  # raw pointers survive a retry: the bytes are on disk once
        while True:
            stats, order_seq = copy.deepcopy(self.stats), self._order_seq
            con.execute("BEGIN TRANSACTION")
            committing = False
            try:
                self._flush(batches, written)
                committing = True
                self._commit_now(con)
                return
            except duckdb.OutOfMemoryException as exc:
                con.execute("ROLLBACK")
                self.stats, self._order_seq = stats, order_seq
                self._grow_or_give_up(exc)
            except BaseException as exc:
                with contextlib.suppress(duckdb.Error):  # a failed write may have ended it already
                    con.execute("ROLLBACK")
                if committing and self._landed(written):
                    # Ctrl-C met inside the COMMIT, which DuckDB reports as 'Query interrupted' once the commit
                    # has gone through: the rows point at the raw bytes, which stay (cut, they were lost for good,
                    # and the file counted as read)
                    raise
                self._unwrite_raw(written)
                if isinstance(exc, (OSError, duckdb.IOException, duckdb.TransactionException)):  # a full disk
                    raise StoreError(f"the store could not be written: {error_line(exc)}; what earlier "
                                     "transactions committed stays") from exc
                raise

    def _commit_now(self, con: duckdb.DuckDBPyConnection) -> None:
        """COMMIT (a method of its own: a test interrupts it once it went through, as Ctrl-C can)."""
        con.execute("COMMIT")

    def _landed(self, written: dict[str, Any]) -> bool:
        """Whether the transaction that wrote ``written`` committed after all (asked after its ROLLBACK): its first
        measurement is in the table. True where that cannot be told: raw bytes no row points at cost room,
        bytes cut from under committed rows lose their measurements."""
        uid = written.get("uid")
        if uid is None:
            return False  # no raw lines written: nothing to keep or cut
        try:
            row = self.con.execute("SELECT count(*) FROM measurements WHERE measurement_uid = ?", [uid]).fetchone()
        except BaseException:
            return True
        return row is not None and row[0] > 0

    def _unwrite_raw(self, written: dict[str, Any]) -> None:
        """Cut this transaction's raw lines off the segment again: nothing will point at them."""
        where = written.get("start")
        f = self._segment_file
        if where is not None and f is not None and where[0] == self._segment_name:
            with contextlib.suppress(OSError):
                os.ftruncate(f.fileno(), where[1])

    def _under_cap(self, step: Callable[[], object]) -> None:
        """Run the end of an ingest (its promotions, then the checkpoint of its WAL) while the cap
        still holds, growing the cap as a flush does if it must.

        Left to `close()`, the checkpoint ran under the store's own limit and took what it was
        given: ~83 MB more at the end of a 100,000-measurement run than of a 20,000 one
        (bench/analyze, section 2). Under the cap it spills instead.
        """
        while True:
            try:
                step()
                return
            except duckdb.OutOfMemoryException as exc:
                self._grow_or_give_up(exc)

    def _grow_or_give_up(self, exc: duckdb.OutOfMemoryException) -> None:
        """Double the streaming cap (not past the store's own limit), or raise one clear StoreError."""
        ceiling = _bytes(self.memory_limit) if self.memory_limit else None
        if self._streaming_limit is None or (ceiling is not None and self._streaming_limit >= ceiling):
            raise StoreError(f"the store ran out of memory at its limit ({self.memory_limit}): "
                             f"{str(exc).splitlines()[0]}") from exc
        grown = self._streaming_limit * 2 if ceiling is None else min(self._streaming_limit * 2, ceiling)
        self.con.execute(f"SET memory_limit = '{grown // 1024}KB'")
        self._streaming_limit = grown
        self.streaming_limit_raised += 1

    def _flush(self, batches: list[BatchResult], written: dict[str, Any] | None = None) -> None:
        con, stats, run_id = self.con, self.stats, self.run_id
        rejections = [r for b in batches for r in (*b.rejections, *b.errors)]
        stats.add_rejections(rejections)
        for b in batches:
            stats.records += b.records
            stats.outside += b.outside
            stats.files_unread += b.unread
            stats.matcher_calls += b.matcher_calls
            stats.matcher_hits += b.matcher_hits
            if any(b.censoredplanet):
                stats.censoredplanet = [a + c for a, c in zip(stats.censoredplanet, b.censoredplanet, strict=True)]
        done = [d for b in batches for d in b.files_done]
        if done:
            con.executemany("INSERT INTO ingested_files VALUES (?, ?, ?, ?, now()::TIMESTAMP)",
                            [[path_text(d.path), d.size, d.mtime_ns, run_id] for d in done])
        if rejections:
            con.register("_rej", pa.table({
                "run_id": [run_id] * len(rejections), "source": [path_text(r.source) for r in rejections],
                "line": [r.line for r in rejections], "reason": [r.reason for r in rejections],
                "detail": [path_text(r.detail) for r in rejections]}))
            con.execute("INSERT INTO rejections SELECT * FROM _rej")
            con.unregister("_rej")
        order = [uid for b in batches for uid in b.order]
        stats.accepted += len(order)
        if self._track_order and order:
            con.register("_ord", pa.table({
                "seq": pa.array(range(self._order_seq, self._order_seq + len(order)), pa.int64()),
                "measurement_uid": order}))
            con.execute("INSERT INTO run_order SELECT * FROM _ord")
            con.unregister("_ord")
            self._order_seq += len(order)

        measurements = pa.concat_tables([b.measurements for b in batches])
        if measurements.num_rows == 0:
            stats.duplicates += len(order)
            return
        # The Arrow tables below reach DuckDB as local variables (its replacement scan finds `_m`, `_o`
        # in this frame, and _known and confidence.insert_verdicts their own): no register/unregister round trips.
        known = self._known(measurements)
        uids = measurements.column("measurement_uid").to_pylist()
        asns = measurements.column("probe_asn").to_pylist() if known else []
        fresh: dict[tuple[str, str], int] = {}  # a measurement's identity: its start and its content
        renamed: dict[str, str] = {}             # a copy's uid -> the uid of the copy stored
        for i, uid in enumerate(uids):
            same = identity(uid)
            found = known.get(same)
            if found is None:
                earlier = fresh.setdefault(same, i)
                if earlier == i:
                    continue
                stored = uids[earlier]
            else:
                stored = found[0]
                if found[1] == NO_NETWORK and asns[i] != NO_NETWORK:  # stored without the network this copy names
                    stats.networks_unused += 1
            if stored != uid:
                renamed[uid] = stored
        stats.renamed += len(renamed)
        if renamed and self._track_order:  # --jsonl: a copy is the measurement the store holds
            _renamed = pa.table({"copy": list(renamed), "stored": list(renamed.values())})  # read by DuckDB
            con.execute("UPDATE run_order SET measurement_uid = r.stored FROM _renamed r"
                        " WHERE run_order.measurement_uid = r.copy")
        stats.new += len(fresh)
        stats.duplicates += len(order) - len(fresh)
        if not fresh:
            return
        keep = sorted(fresh.values())
        everything = len(keep) == measurements.num_rows  # the usual case: nothing to filter out
        # (Each pyarrow or DuckDB call lets go of the GIL and costs this thread up to 5 ms to get
        # it back while the analysis runs: the usual case makes as few as it can.)
        rows = measurements if everything else measurements.take(pa.array(keep, pa.int64()))
        raw = [line for b in batches for line in b.raw]
        if written is not None and "pointers" in written:
            pointers = written["pointers"]
        else:
            if written is not None:
                written["start"] = (self._current_segment(), self._segment_file.tell())
            pointers = self._write_raw(rows, [raw[i] for i in keep])
            if written is not None:
                written["pointers"] = pointers
            # The raw bytes are on disk: let them go before the inserts and the commit, where this
            # transaction's memory peaks (the list is the one the caller handed over, so this drops
            # the last reference to them; a retry reuses the pointers, not the bytes).
            raw.clear()
            batches[:] = [replace(b, raw=()) for b in batches]
        rows = rows.append_column("run_id", pa.array([run_id] * rows.num_rows, pa.string()))
        for name, values in pointers.items():
            rows = rows.append_column(name, values)
        _m = rows  # read by DuckDB
        con.execute("INSERT INTO measurements BY NAME SELECT * FROM _m")
        if written is not None:
            written["uid"] = rows.column("measurement_uid")[0].as_py()  # to tell whether an interrupted COMMIT landed

        verdicts = pa.concat_tables([b.verdicts for b in batches])
        if not everything:
            verdicts = verdicts.take(pa.array(keep, pa.int64()))
        # Confidence: labels from the groups' counts; older labels promoted now, or at the end of a
        # streaming ingest (confidence.py).
        insert_verdicts(con, verdicts, defer=self._streaming_limit is not None)
        # Observations and rules of each new measurement, from the batch that holds its first copy only.
        owned: list[pa.Table] = []
        owned_rules: list[pa.Table] = []
        first = 0
        kept = iter(keep)
        next_keep = next(kept, None)
        for b in batches:
            last = first + b.measurements.num_rows
            mine = []
            while next_keep is not None and next_keep < last:
                mine.append(next_keep - first)
                next_keep = next(kept, None)
            if len(mine) == b.measurements.num_rows:
                owned.append(b.observations)
                if b.rules is not None:
                    owned_rules.append(b.rules)
            elif mine:
                uids_here = b.measurements.column("measurement_uid").take(pa.array(mine, pa.int64()))
                for table, into in ((b.observations, owned), (b.rules, owned_rules)):
                    if table is not None and table.num_rows:
                        into.append(table.filter(pc.is_in(table.column("measurement_uid"), value_set=uids_here)))
            first = last
        observations = pa.concat_tables(owned) if owned else None
        if observations is not None and observations.num_rows:
            _o = observations  # read by DuckDB
            con.execute("INSERT INTO observations BY NAME SELECT * FROM _o")
        if owned_rules:
            _r = pa.concat_tables(owned_rules)  # read by DuckDB
            con.execute("INSERT INTO rules BY NAME SELECT * FROM _r")

    def _known(self, measurements: pa.Table) -> dict[tuple[str, str], tuple[str, str]]:
        """The measurements of ``measurements`` (in MEASUREMENT_SCHEMA) that the store already holds:
        {`identity` of the stored uid: (the stored uid, its probe_asn)}.

        A measurement is its content (the hash, of which ``uid_key`` is 64 bits) and its start
        (also part of that content, and the uid's first 14 characters); not its uid, whose
        country may come from outside the line: a Satellite v1 line's, from the
        tagged_resolvers.json beside it, is ZZ when read without one. A copy has the same start,
        so the join matches on it as well as on the key: DuckDB pushes the flush's earliest
        and latest start into its scan of ``measurements``, and zone maps skip every row group
        outside them. OONI's archive comes a day at a time, so a flush reads the rows of its
        own days, not the whole store (bench/flush.py).
        """
        _keys = measurements.select(["uid_key", "measurement_start_time"])  # read by DuckDB
        return {identity(uid): (uid, asn) for uid, asn in self.con.execute(
            "SELECT m.measurement_uid, m.probe_asn FROM measurements m SEMI JOIN _keys k"
            " ON m.uid_key = k.uid_key AND m.measurement_start_time = k.measurement_start_time").fetchall()}

    def _write_raw(self, rows: pa.Table, lines: Sequence[bytes]) -> dict[str, pa.Array]:
        """Append the new measurements' raw lines to the run's current segment; returns the pointer columns.

        The lines go in input order into zstd frames of about `FRAME_BYTES` each, and all
        of a flush's frames reach the file in one write. This runs on the writer thread
        while the main thread analyses: every call that releases the GIL (a compression,
        a write, an open) makes this thread wait up to the interpreter's switch interval
        (5 ms) to get it back, so the number of such calls per flush, not their CPU, is
        what bounds the writer. A few large frames keep it at about ten per flush.
        """
        n = len(lines)
        segment = self._current_segment()
        f = self._segment_file
        assert f is not None
        start = f.tell()
        offset, length, size, line_offset, line_length = ([0] * n for _ in range(5))
        frames: list[bytes] = []
        position = start
        first = 0
        while first < n:
            last, held = first, 0
            while last < n and (last == first or held + len(lines[last]) < FRAME_BYTES):
                held += len(lines[last]) + 1
                last += 1
            blob = b"\n".join(lines[first:last]) + b"\n"
            frame = _ZSTD.compress(blob, asbytes=True)
            pos = 0
            for i in range(first, last):
                offset[i], length[i], size[i] = position, len(frame), len(blob)
                line_offset[i], line_length[i] = pos, len(lines[i])
                pos += len(lines[i]) + 1
            frames.append(frame)
            position += len(frame)
            first = last
        data = memoryview(b"".join(frames))
        while data:  # unbuffered: what failed to reach the file is not written later, after a truncate
            data = data[f.write(data):]
        if self.sync:
            os.fsync(f.fileno())
        return {"raw_segment": pa.array([segment] * n, pa.string()), "raw_frame_offset": pa.array(offset, pa.int64()),
                "raw_frame_length": pa.array(length, pa.int64()), "raw_frame_size": pa.array(size, pa.int64()),
                "raw_line_offset": pa.array(line_offset, pa.int64()),
                "raw_line_length": pa.array(line_length, pa.int64())}

    def _current_segment(self) -> str:
        """The run's segment being appended to (``<run_id>/<n>.jsonl.zst``); a new one past `SEGMENT_BYTES`."""
        f = self._segment_file
        if f is not None and self._segment_name.startswith(f"{self.run_id}/") and f.tell() < SEGMENT_BYTES:
            return self._segment_name
        self._close_segment()
        directory = self.raw_root / self.run_id
        directory.mkdir(parents=True, exist_ok=True)
        seq = len(list(directory.glob("*.jsonl.zst")))
        self._segment_name = f"{self.run_id}/{seq:05d}.jsonl.zst"
        self._segment_file = open(self.raw_root / self._segment_name, "ab", buffering=0)  # noqa: SIM115 - kept open
        return self._segment_name

    def _close_segment(self) -> None:
        if self._segment_file is not None:
            self._segment_file.close()
            self._segment_file = None

    # ---- reading one measurement

    def raw(self, uid: str) -> bytes | None:
        """The measurement's bytes exactly as they were read (None if unknown; `RawUnreadable` if its
        segment is missing or damaged)."""
        row = self.cursor().execute(
            """SELECT raw_segment, raw_frame_offset, raw_frame_length, raw_frame_size, raw_line_offset,
               raw_line_length FROM measurements WHERE measurement_uid = ?""", [uid]).fetchone()
        if row is None or row[0] is None:
            return None
        segment, offset, length, size, line_offset, line_length = row
        data = read_frame(self.raw_root, segment, offset, length, size)
        return bytes(data[line_offset:line_offset + line_length])

    def raw_many(self, uids: Sequence[str]) -> dict[str, bytes]:
        """The raw bytes of ``uids`` that can be read, each zstd frame read and decompressed once.

        A uid the store does not hold, or whose segment is missing or damaged, is left out: the
        caller counts it (`unreadable` says why). All of them at once: a caller that reads many, of
        any size, reads them one at a time (`raw_each`)."""
        return dict(self.raw_each(uids))

    def raw_each(self, uids: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        """(uid, raw bytes) of each of ``uids`` that can be read, in the order they are stored, each zstd frame
        read and decompressed once, and one frame held at a time: reading a thousand measurements of 16 MiB
        (pages that compress to almost nothing) holds one of them, not 16 GB. Left out as by `raw_many`."""
        if not uids:
            return
        pointers = raw_pointers(self.cursor(), uids)
        frame_key: tuple[str, int] | None = None
        frame = b""
        for uid, segment, offset, length, size, line_offset, line_length in sorted(
                (r for r in pointers if r[1] is not None), key=lambda r: (r[1], r[2], r[5])):
            if frame_key != (segment, offset):
                frame_key, frame = (segment, offset), b""  # the previous frame let go before the next is read
                try:
                    frame = read_frame(self.raw_root, segment, offset, length, size)
                except RawUnreadable as exc:
                    self.unreadable.setdefault(segment, str(exc))
            if frame:
                yield uid, bytes(frame[line_offset:line_offset + line_length])

    def damaged(self, uids: Sequence[str]) -> None:
        """Note, in `unreadable`, the segments of ``uids``: measurements whose raw bytes were read back (their
        frame decompressed to the size written) but no longer give their uid, a segment damaged in place. A
        zstd frame carries no checksum of its content, so the content hash in the uid is what tells."""
        for _uid, segment, *_ in raw_pointers(self.cursor(), uids):
            if segment is not None:
                self.unreadable.setdefault(segment, damaged(segment))

    def verdict(self, uid: str) -> dict[str, Any] | None:
        rows = query_rows(self.cursor(), "SELECT * FROM verdicts WHERE measurement_uid = ?", [uid])
        return rows[0] if rows else None

    def observations(self, uid: str) -> list[dict[str, Any]]:
        return query_rows(self.cursor(), "SELECT * FROM observations WHERE measurement_uid = ? ORDER BY idx", [uid])

    def count(self, table: str) -> int:
        if table not in ("measurements", "verdicts", "observations", "rules", "rejections", "runs"):
            raise ValueError(table)
        row = self.cursor().execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(row[0]) if row else 0

    # ---- the run's verdicts, in input order (for --jsonl)

    def run_lines(self, batch_size: int = 4096) -> Iterator[dict[str, Any]]:
        """One dict per accepted input record of the current run, in input order."""
        self.flush()
        if not self._track_order:
            raise StoreError("the run did not track its order (begin_run(track_order=True))")
        # run_order is a temp table: visible on this connection only.
        reader = self.con.sql("""
            SELECT v.measurement_uid, m.report_id, v.input, v.test_name, v.probe_cc, v.probe_asn,
                   v.blocking, v.accessible, v.mechanism, v.outcome, v.fingerprints
            FROM run_order o JOIN verdicts v USING (measurement_uid)
            JOIN measurements m USING (measurement_uid) ORDER BY o.seq""").to_arrow_reader(batch_size)
        for record_batch in reader:
            yield from record_batch.to_pylist()

    # ---- export

    def export_parquet(self, directory: str | os.PathLike[str]) -> dict[str, int]:
        """Every table as Parquet, partitioned by day and country (hive style); rows per table.

        The export is written beside the old one (``DIR/.export-*``), then each table's
        directory and file is swapped in whole: a re-export never mixes with what an
        earlier one left (a day or a country the store no longer has, a partition that
        had more files), and the files of ``DIR`` that are not the export's are left alone.
        An export that fails while writing (a full disk) leaves the previous one as it was.
        It loses nothing of one's own, and refuses (`StoreError`, before anything is written):
        a ``DIR/<table>`` or ``DIR/<name>.parquet`` that is not an earlier export (a folder of
        one's own called ``rules``), anything inside an earlier export's table that the export
        did not write (a README in a ``day=…`` folder), and a ``DIR`` that is not empty and holds
        no earlier export (``/``, one's home: the export would mix with what is there). A name
        starting with a dot right inside a table's folder (a file manager's ``.DS_Store``, a
        ``.git``) is carried over into the new one as it is.
        """
        self.flush()
        out = Path(directory)
        try:  # DuckDB's COPY cannot write under such a name
            check_utf8(out, "the export's directory")
        except BadInput as exc:
            raise StoreError(str(exc)) from None
        if (theirs := _not_an_export(out)) is not None:
            raise StoreError(f"{theirs} is not an earlier export's own, and the export would delete it: "
                             "move it away or export to another directory")
        if (first := _not_empty(out)) is not None:
            raise StoreError(f"{out} is not empty ({first} is there) and holds no earlier export: "
                             "export to a new or empty directory")
        made_dir = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        try:
            return self._export_into(out)
        except BaseException:
            if made_dir:  # an export that failed leaves nothing behind, not an empty directory
                with contextlib.suppress(OSError):
                    out.rmdir()
            raise

    def _export_into(self, out: Path) -> dict[str, int]:
        queries = {
            "measurements": "SELECT * FROM measurements",
            # each verdict with its site's category as the store's test lists file it (NULL: in no list)
            "verdicts": f"SELECT *, {category_sql()} AS category_code FROM verdicts",
            "observations": """SELECT o.*, m.day, m.probe_cc FROM observations o
                               JOIN measurements m USING (measurement_uid)""",
            "rules": """SELECT r.*, m.day, m.probe_cc FROM rules r JOIN measurements m USING (measurement_uid)""",
        }
        counts = {}
        cur = self.cursor()
        staging = out / f"{STAGING_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        staging.mkdir()
        waiting: list[Path] = []  # dot-names of one's own moved aside with an old table, not yet carried over
        try:
            made = []
            for name, query in queries.items():
                row = cur.execute(f"SELECT count(*) FROM ({query})").fetchone()
                counts[name] = int(row[0]) if row else 0
                if counts[name]:
                    cur.execute(f"COPY ({query}) TO '{_sql_path(staging / name)}' "
                                "(FORMAT parquet, PARTITION_BY (day, probe_cc))")
                else:
                    (staging / name).mkdir()  # an empty table replaces an old export's rows too
                made.append(name)
            for name in ("rejections", "runs", "test_lists"):  # no day or country of their own
                row = cur.execute(f"SELECT count(*) FROM {name}").fetchone()
                counts[name] = int(row[0]) if row else 0
                cur.execute(f"COPY {name} TO '{_sql_path(staging / (name + '.parquet'))}' (FORMAT parquet)")
                made.append(name + ".parquet")
            old = staging / ".old"
            old.mkdir()
            for name in made:
                if (out / name).exists():
                    # one's own dot-names in the old table's folder (`_not_an_export` allowed nothing else)
                    waiting = [old / name / e for e in _dot_names(out / name)] if (out / name).is_dir() else []
                    os.replace(out / name, old / name)
                os.replace(staging / name, out / name)
                while waiting:
                    os.replace(waiting[0], out / name / waiting[0].name)
                    waiting.pop(0)
        finally:
            if not waiting:  # else one's own entry is still in DIR/.export-*/.old: kept, not deleted
                shutil.rmtree(staging, ignore_errors=True)
        return counts


EXPORT_TABLES = ("measurements", "verdicts", "observations", "rules")  # DIR/<table>/day=.../probe_cc=.../
EXPORT_FILES = ("rejections.parquet", "runs.parquet", "test_lists.parquet")


STAGING_PREFIX = ".export-"  # DIR/.export-*: where an export is written before it is swapped in
_EXPORT_FILE = re.compile(r"data_[0-9a-f_-]+\.parquet")  # what DuckDB's COPY writes in a partition


def _not_an_export(out: Path) -> Path | None:
    """The first entry of ``out`` an export would replace that an export did not write, or None.

    An export's table is a directory of ``day=…`` directories of ``probe_cc=…`` directories of DuckDB's
    ``data_N.parquet`` files (or nothing, for an empty table), and its other files are Parquet (``PAR1``);
    names starting with a dot right inside a table's directory (a file manager's ``.DS_Store``) are
    allowed: `Store._export_into` carries them over. Anything else there is someone's own, which replacing
    it would delete."""
    for name in EXPORT_TABLES:
        path = out / name
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            return path
        if path.is_dir() and (theirs := _not_a_table(path)) is not None:
            return theirs
    for name in EXPORT_FILES:
        path = out / name
        if path.is_symlink() or path.is_dir():
            return path
        if path.exists():
            try:
                with open(path, "rb") as f:
                    if f.read(4) != b"PAR1":
                        return path
            except OSError:
                return path
    return None


def _not_a_table(table: Path) -> Path | None:
    """The first entry under an exported table's directory that the export did not write, or None: the
    directory itself when it holds something else than ``day=…`` folders (a folder of one's own by that name)."""
    with os.scandir(table) as days:
        for day in days:
            if day.name.startswith("."):
                continue  # carried over
            if not (day.name.startswith("day=") and day.is_dir(follow_symlinks=False)):
                return table
            with os.scandir(day.path) as countries:
                for country in countries:
                    if not (country.name.startswith("probe_cc=") and country.is_dir(follow_symlinks=False)):
                        return Path(country.path)
                    with os.scandir(country.path) as files:
                        for f in files:
                            if not (_EXPORT_FILE.fullmatch(f.name) and f.is_file(follow_symlinks=False)):
                                return Path(f.path)
    return None


def _dot_names(table: Path) -> list[str]:
    with os.scandir(table) as entries:
        return sorted(e.name for e in entries if e.name.startswith("."))


def _not_empty(out: Path) -> str | None:
    """An entry of ``out`` when it holds something and no earlier export (no table or file of one), else None:
    an export into ``/`` or one's home would mix with what is there. An export's leftover staging directory
    (`STAGING_PREFIX`, from an export killed while writing) is not something."""
    if not out.is_dir() or any(os.path.lexists(out / name) for name in (*EXPORT_TABLES, *EXPORT_FILES)):
        return None
    with os.scandir(out) as entries:
        return next((e.name for e in entries if not e.name.startswith(STAGING_PREFIX)), None)


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def query_rows(cur: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    result = cur.execute(sql, list(params))
    names = [d[0] for d in result.description or []]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


__all__ = [
    "BatchResult",
    "RawUnreadable",
    "damaged",
    "RAW_CHUNK",
    "raw_each",
    "raw_pointers",
    "read_frame",
    "identity",
    "stored_as",
    "default_db_path",
    "error_line",
    "FLUSH_ROWS",
    "MEASUREMENT_SCHEMA",
    "migrate",
    "Migration",
    "MIGRATIONS",
    "OBSERVATION_SCHEMA",
    "query_rows",
    "raw_root_for",
    "SCHEMA_VERSION",
    "schema_version",
    "Store",
    "StoreError",
    "VERDICT_SCHEMA",
    "WriteStats",
]
