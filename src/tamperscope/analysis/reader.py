"""Streaming reader for OONI-format measurements, with bad input counted, never fatal.

What lives here: the discovery of input files (files, directories, OONI's raw
archive layout), their cutting into *partitions* (the unit a worker or a Dask
task reads), and the line reader that turns a partition into `Line` records
(one measurement's raw bytes each) and `Rejection` records (bad input, with a
reason from `REASONS`).

Formats, by file name (anything else is sniffed: gzip magic, else text):

* ``.jsonl``, ``.jsonl.gz``, ``.json.gz``, ``.jsonl.zst``: one measurement per line;
* ``.json.lz4``, ``.jsonl.lz4``: the same in LZ4 frames (OONI's historical archive,
  ``autoclaved/jsonl.tar.lz4/<YYYY-MM-DD>/*.json.lz4``, 2012-2020: mostly Web
  Connectivity v0.4 and older);
* ``.json``: one measurement (pretty-printed is fine; several one after another
  too), a JSON array of them (read item by item, so its size is not limited), or
  JSON lines (OONI's legacy cans name their JSONL files ``.json``). A first line
  that is only ``{`` means pretty-printed documents; so does a start none of whose
  first five lines is a JSON object on its own and only the first of which starts with
  ``{``; otherwise the file is JSON lines;
* ``.post``: an OONI collector submission ``{"format": "json", "content": {...}}``;
* ``.tar.gz`` / ``.tgz`` / ``.tar`` / ``.tar.lz4``: OONI "postcans"
  (``raw/YYYYMMDD/HH/CC/test/*.tar.gz`` holding ``.post`` files) and legacy cans
  holding ``.json`` (JSON lines) files (the historical ``*.tar.lz4``, one LZ4 frame
  per member); a ``.json`` member is read as a ``.json`` file, a ``.jsonl`` one as
  JSON lines;
* OONI's S3 layout (``raw/<day>/<hour>/<cc>/<test>/*.jsonl.gz``,
  ``jsonl/<test>/<cc>/<day>/<hour>/*.jsonl.gz``) is just directories of the above;
  ``index.json.gz`` files there are indexes, not measurements, and are skipped;
* ``-`` (standard input) and pipes (``<(zcat ...)``, a FIFO): a *stream*, read once,
  front to back. Its first bytes say what it is: gzip, zstd or LZ4 (decompressed on
  the fly), a tar archive inside (a postcan), a JSON array or pretty-printed
  measurements (read like a ``.json`` file), else JSON lines.

A UTF-8 byte-order mark at the start of a file, stream or archive member is
skipped. Inside directories only regular files are read (a FIFO or a socket there
would block the run); one named on the command line is read as a stream.

Memory stays flat: every measurement is read with a bound (`MAX_MEASUREMENT_BYTES`),
a line, a JSON array's item or a pretty-printed document alike; a longer one is
skipped in chunks without being held, and counted "too_large", and the records
around it are kept. JSON arrays and documents are cut by `_Scanner`, which follows
strings and brackets without parsing, so no file is ever held whole.

Only the framing is checked here (a line, its size, the gzip stream). Parsing
and the envelope checks happen in the worker (`pipeline`), which reports its
rejections with the same `Rejection` record and the same reasons.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import io
import os
import re
import stat
import sys
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

MAX_MEASUREMENT_BYTES = 16 * 1024 * 1024  # one measurement; OONI probes cap bodies far below
SPLIT_BYTES = 32 * 1024 * 1024  # uncompressed JSONL files are cut into partitions of about this size
_CHUNK = 1024 * 1024  # read size when skipping an oversized line
_BOM = b"\xef\xbb\xbf"  # the UTF-8 byte-order mark some Windows tools put at the start of a text file
_WS = b" \t\r\n"  # JSON's whitespace
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_LZ4_MAGIC = b"\x04\x22\x4d\x18"
_TAR_MAGIC = b"ustar"  # at offset 257 of a tar archive's first header (POSIX and GNU)
STDIN = "-"  # the path that names standard input

# reason -> what it means; the report prints these, docs/analysis.md lists them.
REASONS: dict[str, str] = {
    "corrupt_json": "the record is not valid JSON (or not UTF-8)",
    "truncated_gzip": "the compressed stream ends early; every complete line before the cut was kept",
    "corrupt_gzip": "the compressed stream is damaged (bad header or checksum); lines before the damage were kept",
    "too_large": f"a measurement larger than {MAX_MEASUREMENT_BYTES // (1024 * 1024)} MiB (skipped without loading it)",
    "missing_field": "a required envelope field is missing (test_name, measurement_start_time, probe_cc, probe_asn, "
                     "test_keys)",
    "wrong_type": "the record or one of its fields has the wrong JSON type (e.g. a list instead of an object)",
    "invalid_value": "a field has the right type but an unusable value (e.g. an unparsable measurement_start_time)",
    "unsupported_format": "a record format tamperscope does not read (YAML reports, an unknown archive member)",
    "unreadable": "the file could not be opened or read",
    "analysis_error": "the verdict function failed on this measurement (a bug: please report it)",
}


@dataclass(frozen=True)
class Line:
    """The raw bytes of one measurement and where they came from."""

    source: str   # file path (plus "!member" inside archives)
    line: int     # 1-based line number in the partition (absolute unless the partition starts mid-file)
    data: bytes   # the record, verbatim (no trailing newline)


@dataclass(frozen=True)
class Rejection:
    """One piece of bad input, skipped."""

    source: str
    line: int     # 0 when the problem is the file itself
    reason: str   # a key of REASONS
    detail: str   # one line, for people

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.line else self.source


@dataclass(frozen=True)
class FileDone:
    """Marks the end of an input file read in full, in the stream of records: the store records it
    (`Store.ingested`) in the transaction that commits the file's last measurements."""

    path: str      # absolute
    size: int
    mtime_ns: int

    @property
    def key(self) -> tuple[str, int, int]:
        return self.path, self.size, self.mtime_ns


def file_identity(path: str | os.PathLike[str]) -> FileDone | None:
    """What says a regular file is unchanged since it was read: its path with symbolic links resolved
    (so a file reached through a link, or by another relative path, is the same file), size and
    modification time."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return FileDone(os.path.realpath(path), info.st_size, info.st_mtime_ns)


@dataclass(frozen=True)
class Partition:
    """A piece of the input one worker reads on its own."""

    path: str
    kind: str            # "jsonl" | "gzip" | "zstd" | "lz4" | "json" | "post" | "tar" | "stream"
    start: int = 0       # byte range, only for "jsonl": lines that *start* in [start, end)
    end: int | None = None
    size: int = 0        # bytes on disk of the range (for scheduling and progress)

    @property
    def label(self) -> str:
        return self.path if self.start == 0 and self.end is None else f"{self.path}@{self.start}"


class InputError(Exception):
    """A path given by the user does not exist (the CLI turns this into a usage error)."""


# --------------------------------------------------------------------------- discovery


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name == "index.json.gz":
        return None
    if name.endswith((".tar.gz", ".tgz", ".tar", ".tar.lz4")):
        return "tar"
    if name.endswith((".jsonl.gz", ".json.gz")):
        return "gzip"
    if name.endswith((".jsonl.zst", ".json.zst")):
        return "zstd"
    if name.endswith((".jsonl.lz4", ".json.lz4")):
        return "lz4"
    if name.endswith(".jsonl"):
        return "jsonl"
    if name.endswith(".json"):
        return "json"
    if name.endswith(".post"):
        return "post"
    return None


def _sniff(path: Path) -> str:
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError:
        return "jsonl"  # the read itself will report "unreadable"
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head == _ZSTD_MAGIC:
        return "zstd"
    if head == _LZ4_MAGIC:
        return "lz4"
    return "json"


def is_stream(path: str | os.PathLike[str]) -> bool:
    """Standard input (``-``), or a path that is not a regular file: a pipe, ``/dev/stdin``, a socket."""
    if os.fspath(path) == STDIN:
        return True
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def discover(paths: Iterable[str | os.PathLike[str]]) -> Iterator[tuple[Path, str]]:
    """(file, kind) for every measurement file under ``paths``, in a stable order.

    Files named explicitly are read whatever their name (sniffed); inside
    directories only known suffixes count, so READMEs and indexes are ignored.
    ``-`` and pipes are streams (kind ``"stream"``), sniffed as they are read.
    Raises `InputError` for a path that does not exist.
    """
    for raw in paths:
        path = Path(raw)
        if is_stream(raw):
            yield path, "stream"
        elif path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    child = Path(root, name)
                    kind = _kind(child)
                    if kind is not None and _regular(child):
                        yield child, kind
        elif path.exists():
            yield path, _kind(path) or _sniff(path)
        else:
            raise InputError(_missing(raw))


def _regular(path: Path) -> bool:
    """Whether a file found inside a directory is read: a FIFO, a socket or a device there would block the run
    (opening a FIFO waits for a writer) or never end. Decided by `stat`, which opens nothing; a path that cannot
    be stat'ed (a broken link) is kept, so that reading it reports why."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return True


def _missing(raw: str | os.PathLike[str]) -> str:
    """Why a path named by the user cannot be found: `Path.exists` says False for a symbolic link loop too."""
    try:
        os.stat(raw)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"symbolic link loop (too many levels of symbolic links): {os.fspath(raw)}"
    except ValueError:
        pass
    return f"no such file or directory: {os.fspath(raw)}"


def partitions(paths: Iterable[str | os.PathLike[str]], split_bytes: int = SPLIT_BYTES) -> list[Partition]:
    """Cut the input into partitions: whole files, and byte ranges of large plain JSONL files."""
    out: list[Partition] = []
    for path, kind in discover(paths):
        try:
            size = path.stat().st_size
        except OSError:
            size = 0
        if kind == "jsonl" and size > split_bytes > 0:
            for start in range(0, size, split_bytes):
                end = min(size, start + split_bytes)
                out.append(Partition(str(path), kind, start, None if end >= size else end, end - start))
        else:
            out.append(Partition(str(path), kind, size=size))
    return out


_RAW_DAY, _HOUR, _CC = re.compile(r"\d{8}"), re.compile(r"\d{2}"), re.compile(r"[A-Z]{2}")
_TEST_DIR = re.compile(r"[a-z][a-z0-9_]{1,63}")
_FILE_NAMES = (
    re.compile(r"\d{10}_([A-Z]{2})_([a-z][a-z0-9_]{1,63})\."),  # 2024010100_IT_webconnectivity.n1.0.jsonl.gz
    re.compile(r"\d{8}T\d{6}Z-([A-Z]{2})-AS\d+-([a-z][a-z0-9_]{1,63})-"),  # 20170101T000010Z-IT-AS137-web_connectivity-
)


def archive_test_name(test_name: str) -> str:
    """A test name as OONI's archive paths spell it: ``web_connectivity`` -> ``webconnectivity``."""
    return test_name.lower().replace("_", "")


def layout(path: str | os.PathLike[str]) -> tuple[str | None, str | None]:
    """(country, `archive_test_name`) that a file's place in OONI's archive says it holds; (None, None)
    when its path does not say, or says two different things.

    Read from ``raw/<YYYYMMDD>/<HH>/<CC>/<test>/``, ``jsonl/<test>/<CC>/<YYYYMMDD>/<HH>/``, and from file
    names: ``<YYYYMMDDHH>_<CC>_<test>.…`` (postcans and JSONL cans) and the historical
    ``<YYYYMMDD>T<HHMMSS>Z-<CC>-AS<n>-<test>-…``. The archive files by the measurement's own
    ``probe_cc`` and ``test_name``; the day in these paths is the day the collector *received* the
    measurement, which is why only country and test are read.
    """
    parts = Path(path).parts
    said: set[tuple[str, str]] = set()
    dirs = parts[:-1]
    for i, part in enumerate(dirs):
        if part == "raw" and i + 4 < len(dirs) and _RAW_DAY.fullmatch(dirs[i + 1]) \
                and _HOUR.fullmatch(dirs[i + 2]) and _CC.fullmatch(dirs[i + 3]) and _TEST_DIR.fullmatch(dirs[i + 4]):
            said.add((dirs[i + 3], archive_test_name(dirs[i + 4])))
        if part == "jsonl" and i + 3 < len(dirs) and _TEST_DIR.fullmatch(dirs[i + 1]) \
                and _CC.fullmatch(dirs[i + 2]) and _RAW_DAY.fullmatch(dirs[i + 3]):
            said.add((dirs[i + 2], archive_test_name(dirs[i + 1])))
    if parts:
        for pattern in _FILE_NAMES:
            if (match := pattern.match(parts[-1])) is not None:
                said.add((match.group(1), archive_test_name(match.group(2))))
    if len(said) != 1:
        return None, None
    cc, test = said.pop()
    return cc, test


# --------------------------------------------------------------------------- lines


def read(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Line | Rejection]:
    """Every measurement record (and every rejection) under ``paths``, streamed."""
    for path, kind in discover(paths):
        yield from read_partition(Partition(str(path), kind))


def read_partition(part: Partition, max_bytes: int = MAX_MEASUREMENT_BYTES) -> Iterator[Line | Rejection]:
    """The records of one partition; I/O and compression problems become rejections."""
    try:
        if part.kind == "tar":
            yield from _read_tar(part.path, max_bytes)
        elif part.kind == "post":
            with open(part.path, "rb") as f:
                yield from _read_post(part.path, f, max_bytes)
        elif part.kind == "json":
            with open(part.path, "rb", buffering=_CHUNK) as f:
                yield from _read_json(part.path, f, max_bytes)
        elif part.kind == "gzip":
            with gzip.open(part.path, "rb") as f:
                yield from _lines(part.path, f, max_bytes)
        elif part.kind == "zstd":
            yield from _read_zstd(part.path, max_bytes)
        elif part.kind == "lz4":
            with _Lz4File(part.path) as f:
                yield from _lines(part.path, f, max_bytes)  # type: ignore[arg-type]
        elif part.kind == "stream":
            yield from _read_stream(part.path, max_bytes)
        else:
            with open(part.path, "rb", buffering=_CHUNK) as f:
                yield from _lines(part.path, f, max_bytes, part.start, part.end)
    except OSError as exc:
        yield Rejection(part.path, 0, "unreadable", _one_line(exc))


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _lines(source: str, f: IO[bytes], max_bytes: int, start: int = 0,
           end: int | None = None) -> Iterator[Line | Rejection]:
    """JSON lines from a binary stream: bounded, tolerant of damaged compression."""
    number = 0
    pos = start
    if start:
        f.seek(start - 1)
        pos = start - 1 + len(f.readline())  # the line straddling `start` belongs to the previous partition
    try:
        while end is None or pos < end:
            chunk = f.readline(max_bytes + 1)
            if not chunk:
                return
            number += 1
            pos += len(chunk)
            if number == 1 and not start and chunk.startswith(_BOM):
                chunk = chunk[len(_BOM):]  # a byte-order mark: not part of the first record
            if len(chunk) > max_bytes and not chunk.endswith(b"\n"):
                skipped = len(chunk)
                while chunk and not chunk.endswith(b"\n"):
                    chunk = f.readline(_CHUNK)
                    skipped += len(chunk)
                pos += skipped - (max_bytes + 1)
                yield Rejection(source, number, "too_large", f"{skipped} bytes on one line (limit {max_bytes})")
                continue
            data = chunk.strip()
            if data:
                yield Line(source, number, data)
    except EOFError:
        yield Rejection(source, number + 1, "truncated_gzip",
                        f"the compressed file ends early after {number} complete lines")
    except (gzip.BadGzipFile, zlib.error) as exc:
        yield Rejection(source, number + 1, "corrupt_gzip", _one_line(exc))
    except OSError as exc:
        text = str(exc)
        if "zstd" in text.lower() or "decompress" in text.lower():
            yield Rejection(source, number + 1, "corrupt_gzip", _one_line(exc))
        else:
            yield Rejection(source, number + 1, "unreadable", _one_line(exc))


def _read_zstd(path: str, max_bytes: int) -> Iterator[Line | Rejection]:
    import pyarrow as pa

    raw = pa.OSFile(path, "rb")
    stream = pa.CompressedInputStream(raw, "zstd")
    try:
        reader = _ArrowLines(stream)
        yield from _lines(path, reader, max_bytes)  # type: ignore[arg-type]
    finally:
        stream.close()


class _ArrowLines:
    """The bit of the binary file API the readers need, over a pyarrow input stream (zstd).

    A stream that ends early (a truncated ``.zst``) ends like a truncated gzip: every complete line that was
    decompressed, then EOFError (``truncated_gzip``). Arrow's ``read`` loses the bytes it decompressed in a
    call that fails, which can be a hundred lines; ``readinto`` writes them into our zeroed buffer before the
    error, and up to its last newline they are whole lines (a zero byte is never a newline).
    """

    def __init__(self, stream: object) -> None:
        self._stream = stream
        self._buffer = b""
        self._pos = 0  # what is before it in `_buffer` was returned
        self._eof = False
        self._error: BaseException | None = None  # raised once the data before the damage is returned

    def _fill(self) -> bool:
        """Append the next decompressed piece to the buffer; False at the end of the stream."""
        if self._eof:
            return False
        piece = bytearray(_CHUNK)
        try:
            n = self._stream.readinto(piece)  # type: ignore[attr-defined]
        except OSError as exc:
            n = piece.rfind(b"\n") + 1
            self._eof = True
            self._error = EOFError(_one_line(exc)) if "truncated" in str(exc).lower() else exc
        if not n:
            self._eof = True
            return False
        self._buffer = self._buffer[self._pos:] + bytes(memoryview(piece)[:n])
        self._pos = 0
        return True

    def _end(self) -> None:
        """At the end of the stream: raise what ended it early, if anything did."""
        if self._error is not None:
            raise self._error

    def readline(self, limit: int = -1) -> bytes:
        while True:
            cut = self._buffer.find(b"\n", self._pos)
            if cut >= 0 and (limit < 0 or cut - self._pos < limit):
                line, self._pos = self._buffer[self._pos:cut + 1], cut + 1
                return line
            if 0 <= limit <= len(self._buffer) - self._pos:
                line, self._pos = self._buffer[self._pos:self._pos + limit], self._pos + limit
                return line
            if not self._fill():
                self._end()  # a partial last line of a damaged stream is not returned
                line, self._pos = self._buffer[self._pos:], len(self._buffer)
                return line

    def read(self, size: int = -1) -> bytes:
        while (size < 0 or len(self._buffer) - self._pos < size) and self._fill():
            pass
        if self._pos == len(self._buffer):
            self._end()
        stop = len(self._buffer) if size < 0 else min(len(self._buffer), self._pos + size)
        data, self._pos = self._buffer[self._pos:stop], stop
        return data

    def close(self) -> None:
        self._stream.close()  # type: ignore[attr-defined]

    def seek(self, offset: int) -> None:  # pragma: no cover - zstd partitions always start at 0
        raise OSError("cannot seek in a compressed stream")


class _Lz4File:
    """An LZ4 frame file (frames concatenated, as OONI's archive writes them) whose damage reads
    as the OSError `_lines` and `_read_tar` report ("corrupt_gzip"); lz4 raises RuntimeError."""

    def __init__(self, path: str | IO[bytes]) -> None:
        import lz4.frame

        self._f = lz4.frame.open(path, "rb")

    def read(self, size: int = -1) -> bytes:
        try:
            return self._f.read(size)
        except RuntimeError as exc:
            raise OSError(f"lz4 decompress failed: {_one_line(exc)}") from exc

    def readline(self, limit: int = -1) -> bytes:
        try:
            return self._f.readline(limit)
        except RuntimeError as exc:
            raise OSError(f"lz4 decompress failed: {_one_line(exc)}") from exc

    def seek(self, offset: int) -> None:  # pragma: no cover - lz4 partitions always start at 0
        raise OSError("cannot seek in a compressed stream")

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> _Lz4File:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- JSON documents and arrays


def _read_json(source: str, f: IO[bytes], max_bytes: int, *, stream: bool = False) -> Iterator[Line | Rejection]:
    """A ``.json`` file, a ``.json`` archive member, or a stream that starts like JSON: an array (item by
    item), pretty-printed documents (one by one), JSON lines, or (files only) one other JSON value.

    ``stream``: read anything that is not an array or pretty-printed documents as JSON lines, as streams always
    were, rather than as one value.
    """
    shape, f = _start(f, max_bytes)
    if shape == "lines" or (shape == "other" and stream):
        yield from _lines(source, f, max_bytes)
    elif shape == "array":
        yield from _until_damage(source, _read_array(source, f, max_bytes))
    elif shape == "documents":
        yield from _until_damage(source, _read_documents(source, f, max_bytes))
    elif shape == "other":
        yield from _until_damage(source, _read_value(source, f, max_bytes))


def _start(f: IO[bytes], max_bytes: int) -> tuple[str, IO[bytes]]:
    """How to read a JSON input (a `_shape`), from its first bytes, and a stream that still starts with them
    (less a byte-order mark).

    Usually the bytes ``f`` has buffered are enough to say, and ``f`` itself is returned. Otherwise what is
    read ahead is bounded: up to the first `_DAMAGED_LINES` lines that are not blank, each cut at
    ``max_bytes``. Damage met while reading ahead (a truncated archive) is raised by the returned stream
    after the bytes before it, as it would have been without the look-ahead.
    """
    shape = _peeked_shape(f, max_bytes)
    if shape is not None:
        return shape, f
    read = getattr(f, "read1", None) or f.read
    head = b""
    error: BaseException | None = None
    try:
        while shape is None:
            chunk = read(_CHUNK)
            head += chunk
            if not chunk or len(head) >= len(_BOM) or not _BOM.startswith(head):
                shape = _shape(head.removeprefix(_BOM), not chunk, max_bytes)
    except (EOFError, OSError, tarfile.TarError, zlib.error) as exc:
        error = exc
        shape = _shape(head.removeprefix(_BOM), True, max_bytes)
    skip = len(_BOM) if head.startswith(_BOM) else 0
    if error is None and f.seekable():  # a file: cheaper to read again than to wrap
        f.seek(skip)
        return shape, f
    return shape, io.BufferedReader(_Replay(head[skip:], f, error), buffer_size=_CHUNK)


def _peeked_shape(f: IO[bytes], max_bytes: int) -> str | None:
    """The `_shape` of ``f`` from the bytes it has buffered (`peek`), if they are enough to say; then only a
    byte-order mark is consumed, and ``f`` is read with no look-ahead layer on top."""
    peek = getattr(f, "peek", None)
    if peek is None:
        return None
    try:
        head = peek(_CHUNK)
    except (EOFError, OSError, tarfile.TarError, zlib.error):
        return None  # the look-ahead reports it
    if len(head) < len(_BOM) and _BOM.startswith(head):
        return None
    shape = _shape(head.removeprefix(_BOM), False, max_bytes)
    if shape is not None and head.startswith(_BOM):
        f.read(len(_BOM))
    return shape


def _shape(head: bytes, complete: bool, max_bytes: int) -> str | None:
    """What a JSON input whose first bytes are ``head`` (all of it if ``complete``) holds; None: read on.

    "array" (``[``); "documents": pretty-printed, a first line that is only ``{`` (what ``json.dumps(indent=)``,
    ``jq`` and Go write), or a start none of whose first `_DAMAGED_LINES` lines is a JSON object on its own
    and only one starts with ``{`` (another indenting style); "lines": JSON lines, one of whose first lines is
    a whole object, or several of which start with ``{`` (the first ones can be damaged); "other" (a string,
    a number, not JSON); "empty".
    """
    text = head.lstrip(_WS)
    if not text:
        return "empty" if complete else None
    if text[:1] == b"[":
        return "array"
    if text[:1] != b"{":
        return "other"
    seen = opens = 0  # lines that are not blank; of those, lines that start with "{"
    pos = 0
    while True:
        cut = text.find(b"\n", pos)
        if cut < 0 and not complete and len(text) - pos <= max_bytes:
            return None
        line = (text[pos:] if cut < 0 else text[pos:cut]).strip(_WS)
        if len(line) > max_bytes:
            return "lines"  # an oversized line: "too_large", and the lines after it are read
        if line:
            if line == b"{" and not seen:
                return "documents"
            if _is_object(line):
                return "lines"
            seen += 1
            opens += text[pos:pos + 1] == b"{"
            if seen == _DAMAGED_LINES:
                # In a pretty-printed measurement only its first line starts with "{" (nested objects are
                # indented): several such lines are JSON lines, all of them damaged so far.
                return "lines" if opens >= 2 else "documents"
        if cut < 0:
            return "lines"  # a single line, not JSON: one record, which the parser rejects
        pos = cut + 1


# Lines looked at before a "{" start is taken for pretty-printed documents: JSON lines whose first few
# are damaged are still JSON lines (their good lines are kept), and no line of an indented document is an
# object on its own (an array's are, but an array starts with "[").
_DAMAGED_LINES = 5


def _is_json(data: bytes) -> bool:
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return True


def _is_object(data: bytes) -> bool:
    try:
        return isinstance(orjson.loads(data), dict)
    except orjson.JSONDecodeError:
        return False


def _chunks(f: IO[bytes]) -> Iterator[bytes]:
    """``f`` in pieces of up to `_CHUNK` bytes. ``read1`` where there is one: ``read(n)`` drops the bytes it
    had when damage ends the read (a truncated archive member), ``read1`` returns them first."""
    read = getattr(f, "read1", None) or f.read
    while chunk := read(_CHUNK):
        yield chunk


def _until_damage(source: str, records: Iterator[Line | Rejection]) -> Iterator[Line | Rejection]:
    """``records``, and the damage that ended them early (a truncated or corrupt compressed stream or archive)
    as one rejection, as `_lines` reports it: the records before it are kept."""
    count = 0
    try:
        for record in records:
            count += 1
            yield record
    except EOFError:
        yield Rejection(source, count + 1, "truncated_gzip", f"the input ends early after {count} complete records")
    except (gzip.BadGzipFile, zlib.error) as exc:
        yield Rejection(source, count + 1, "corrupt_gzip", _one_line(exc))
    except OSError as exc:
        if not _decompress_error(exc):
            raise  # a read error: "unreadable", for the whole file
        yield Rejection(source, count + 1, "corrupt_gzip", _one_line(exc))


# JSON framing without parsing: `_Scanner` needs to know only where strings and brackets are. One regular
# expression call skips a run of plain bytes, a whole string, or a whole bracketed value nested up to
# `_NESTING` deep, so a measurement costs a few calls, not one Python step per byte or per bracket.
_STRING = rb'"(?:[^"\\]++|\\[\s\S])*+"'
_PLAIN = rb'[^"\[\]{}]++'
_NESTING = 4


def _nested(depth: int) -> bytes:
    """A pattern for a whole bracketed value nested at most ``depth`` deep (brackets in strings are not counted;
    ``{`` closed by ``]`` is let through: the parser rejects it later)."""
    pattern = rb"[\[{](?:" + _PLAIN + b"|" + _STRING + rb")*+[\]}]"
    for _ in range(depth - 1):
        pattern = rb"[\[{](?:" + _PLAIN + b"|" + _STRING + b"|" + pattern + rb")*+[\]}]"
    return pattern


_INSIDE = re.compile(rb"(?:" + _PLAIN + b"|" + _STRING + b"|" + _nested(_NESTING) + rb")*+")
_ITEM = re.compile(rb'(?:[^"\[\]{},]++|' + _STRING + b"|" + _nested(_NESTING) + rb")*+")  # an array item's top level
_STRING_REST = re.compile(rb'(?:[^"\\]++|\\[\s\S])*+')
_SPACE = re.compile(rb"[ \t\r\n]*+")
_QUOTE, _BACKSLASH, _COMMA, _OPEN_BRACE = b'"'[0], b"\\"[0], b","[0], b"{"[0]


class _Scanner:
    """Where JSON values end, over a stream read in chunks, without parsing them: follows strings (a backslash
    can be a chunk's last byte) and bracket depth. Memory is the state below, whatever the value's size, so a
    value over the limit can be skipped without being held."""

    __slots__ = ("depth", "escaped", "in_string")

    def __init__(self) -> None:
        self.depth = 0
        self.in_string = False
        self.escaped = False  # in a string, the previous chunk ended with a backslash

    @property
    def closed(self) -> bool:
        """Not inside a string or a bracket: a document that was started is complete."""
        return not self.depth and not self.in_string

    def scan(self, chunk: bytes, pos: int, items: bool) -> int:
        """Scan ``chunk`` from ``pos``; return where the value being scanned ends, or ``len(chunk)``.

        ``items``: the value is an array item, and ends before a comma or a closing bracket that is not its own
        (the array's). Otherwise it is a document that starts with a bracket at ``pos`` and ends after the
        bracket that closes it.
        """
        n = len(chunk)
        while pos < n:
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                    pos += 1
                    continue
                pos = _STRING_REST.match(chunk, pos).end()  # type: ignore[union-attr] # (it matches "")
                if pos == n:
                    break
                if chunk[pos] == _BACKSLASH:  # the chunk's last byte: what it escapes is in the next chunk
                    self.escaped = True
                else:  # the closing quote
                    self.in_string = False
                pos += 1
                continue
            if self.depth or items:
                pos = (_INSIDE if self.depth else _ITEM).match(chunk, pos).end()  # type: ignore[union-attr]
                if pos == n:
                    break
            byte = chunk[pos]
            if byte == _QUOTE:
                self.in_string = True
            elif byte in b"[{":
                self.depth += 1
            elif byte in b"]}" and self.depth:
                self.depth -= 1
                if not self.depth and not items:
                    return pos + 1
            else:  # a comma or a closing bracket at the item's top level
                return pos
            pos += 1
        return n


class _Held:
    """The bytes of one array item or document: held while within the limit, only counted past it, so memory
    is bounded by the limit, not by the input. The whitespace around the value is not part of it."""

    __slots__ = ("limit", "parts", "size", "trimmed")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] | None = []  # None: over the limit
        self.size = 0  # bytes from the value's first one
        self.trimmed = False  # past the limit by trailing whitespace only (which was dropped)

    def add(self, piece: bytes) -> None:
        if not self.size:
            piece = piece.lstrip(_WS)
        if not piece:
            return
        self.size += len(piece)
        if self.parts is None:
            return
        if self.trimmed:
            if piece.strip(_WS):
                self.parts = None
            return
        self.parts.append(piece)
        if self.size > self.limit:
            data = b"".join(self.parts).rstrip(_WS)
            self.parts, self.trimmed = (None, False) if len(data) > self.limit else ([data], True)

    @property
    def data(self) -> bytes | None:
        """The value's bytes; None when it is over the limit."""
        return None if self.parts is None else b"".join(self.parts).rstrip(_WS)


def _read_array(source: str, f: IO[bytes], max_bytes: int) -> Iterator[Line | Rejection]:
    """A JSON array, item by item: each item is one record, with its number (from 1) as its line, and is bounded
    by ``max_bytes`` on its own, so an array of any size is read in the memory of one item.

    As the whole array was before: an object item is kept re-serialised (``orjson.dumps``); any other item is
    "wrong_type". An item that is not valid JSON is "corrupt_json" and the items around it are kept; an array
    cut short keeps its complete items.
    """
    scanner = _Scanner()
    held = _Held(max_bytes)
    number = 0
    state = "before"  # the "[", then "items", then "after" the "]"
    for chunk in _chunks(f):
        pos = 0
        if state == "before":
            pos = _SPACE.match(chunk).end()  # type: ignore[union-attr]
            if pos == len(chunk):
                continue
            pos, state = pos + 1, "items"  # the "[" (`_start` saw it)
        while state == "items":
            end = scanner.scan(chunk, pos, items=True)
            held.add(chunk[pos:end])
            if end == len(chunk):
                break
            closing = chunk[end] != _COMMA
            if not (closing and not number and not held.size):  # "[]" has no items
                number += 1
                yield _array_item(source, number, held)
            held, pos = _Held(max_bytes), end + 1
            if closing:
                state = "after"
        if state == "after" and _SPACE.match(chunk, pos).end() < len(chunk):  # type: ignore[union-attr]
            yield Rejection(source, 0, "corrupt_json", f"data after the end of the JSON array ({number} items)")
            return
    if state == "items":
        if held.size and scanner.closed and (held.data or b"").endswith(b"}"):
            number += 1  # an object complete before the cut
            yield _array_item(source, number, held)
        yield Rejection(source, number + 1, "corrupt_json", f"the JSON array ends early, after {number} items")


def _array_item(source: str, number: int, held: _Held) -> Line | Rejection:
    data = held.data
    if data is None:
        return Rejection(source, number, "too_large", f"{held.size} bytes in array item {number} (limit {held.limit})")
    try:
        item = orjson.loads(data)
    except orjson.JSONDecodeError:
        return Rejection(source, number, "corrupt_json", f"array item {number} is not valid JSON")
    if not isinstance(item, dict):
        return Rejection(source, number, "wrong_type", f"array item {number} is a {_json_type(item)}, not an object")
    return Line(source, number, orjson.dumps(item))


def _read_documents(source: str, f: IO[bytes], max_bytes: int) -> Iterator[Line | Rejection]:
    """Pretty-printed JSON documents, usually one, each on the line it starts on and bounded by ``max_bytes``
    on its own: one over the limit is one "too_large", however many lines it has, and is skipped unheld."""
    scanner = _Scanner()
    held: _Held | None = None
    line = first = 1  # the line the scan is on; the one the current document started on
    chunks = _chunks(f)
    chunk = next(chunks, b"")
    while chunk:
        following = next(chunks, b"")
        pos = 0
        while pos < len(chunk):
            if held is None:
                end = _SPACE.match(chunk, pos).end()  # type: ignore[union-attr]
                line += chunk.count(b"\n", pos, end)
                pos = end
                if pos == len(chunk):
                    break
                if chunk[pos] != _OPEN_BRACE:
                    yield Rejection(source, line, "corrupt_json", "data after the end of a JSON document")
                    return
                rest = chunk[pos:].rstrip(_WS)
                if not following and len(rest) <= max_bytes and _is_json(rest):
                    # The usual case, one document in one chunk: parsed whole (orjson is many times faster
                    # than the scanner), and read as the scanner would have.
                    yield Line(source, line, _one_line_json(rest))
                    return
                held, first = _Held(max_bytes), line
            end = scanner.scan(chunk, pos, items=False)
            held.add(chunk[pos:end])
            line += chunk.count(b"\n", pos, end)
            pos = end
            if scanner.closed:
                yield _document(source, first, held)
                held = None
        chunk = following
    if held is not None:  # the input ends inside a document
        too_large = held.parts is None
        yield _document(source, first, held) if too_large else \
            Rejection(source, first, "corrupt_json", "the JSON document ends early")


def _document(source: str, line: int, held: _Held) -> Line | Rejection:
    data = held.data
    if data is None:
        return Rejection(source, line, "too_large", f"{held.size} bytes in one JSON document (limit {held.limit})")
    if not _is_json(data):
        return Rejection(source, line, "corrupt_json", "not a JSON document")
    return Line(source, line, _one_line_json(data))


def _one_line_json(data: bytes) -> bytes:
    """JSON forbids raw line breaks inside strings: joining the lines changes only insignificant whitespace,
    and keeps the raw store one measurement per line."""
    return data.replace(b"\r\n", b" ").replace(b"\n", b" ").replace(b"\r", b" ")


def _read_value(source: str, f: IO[bytes], max_bytes: int) -> Iterator[Line | Rejection]:
    """A ``.json`` file that is neither an array nor an object: one record (the pipeline says "wrong_type"),
    or not JSON at all."""
    data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        yield Rejection(source, 0, "too_large", f"more than {max_bytes} bytes in one JSON document")
        return
    data = data.strip(_WS)
    if not data:
        return
    if not _is_json(data):
        yield Rejection(source, 1, "corrupt_json", "not a JSON document")
        return
    yield Line(source, 1, _one_line_json(data))


def _json_type(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def _read_post(source: str, f: IO[bytes], max_bytes: int) -> Iterator[Line | Rejection]:
    """An OONI collector submission: ``{"format": "json", "content": measurement}``."""
    data = f.read(max_bytes + 1).removeprefix(_BOM)
    if len(data) > max_bytes:
        yield Rejection(source, 0, "too_large", f"submission larger than {max_bytes} bytes")
        return
    try:
        post = orjson.loads(data)
    except orjson.JSONDecodeError:
        yield Rejection(source, 1, "corrupt_json", "the submission is not valid JSON")
        return
    if not isinstance(post, dict):
        yield Rejection(source, 1, "wrong_type", f"the submission is a {_json_type(post)}, not an object")
        return
    fmt = post.get("format")
    if fmt != "json":
        yield Rejection(source, 1, "unsupported_format", f"submission format {str(fmt)[:20]!r}")
        return
    content = post.get("content")
    if not isinstance(content, dict):
        yield Rejection(source, 1, "wrong_type", f"content is a {_json_type(content)}, not an object")
        return
    yield Line(source, 1, orjson.dumps(content))


_TRUNCATED_TAR = "the archive ends early; members before the cut were kept"
_DAMAGE = frozenset({"truncated_gzip", "corrupt_gzip", "unreadable"})  # what a member's reader says of a broken archive


class _Header(tarfile.TarInfo):
    """A tar header that tells its archive why reading headers stopped. In stream mode tarfile ends an archive
    cut inside (or right before) a header, or with a damaged one, as quietly as at its end-of-archive marker."""

    @classmethod
    def fromtarfile(cls, archive: tarfile.TarFile) -> _Header:
        try:
            return super().fromtarfile(archive)
        except tarfile.EOFHeaderError:
            raise  # the end-of-archive marker
        except tarfile.HeaderError as exc:
            if isinstance(archive, _Archive):
                archive.damage = exc
            raise


class _Archive(tarfile.TarFile):
    """Read once, front to back: it keeps no list of the members it has read (tarfile does, even streaming,
    about 1 kB a member: a postcan of 100,000 members would hold 100 MB of headers)."""

    tarinfo = _Header
    damage: tarfile.HeaderError | None = None

    def next(self) -> tarfile.TarInfo | None:
        member = super().next()
        self.members.clear()  # iteration asks next() for each member once the list is shorter than its count
        return member


class _Member(io.RawIOBase):
    """A tar member's data, read straight from the archive's stream. tarfile's own member file drops the bytes
    of a read that meets the end of a truncated archive; this one returns them, then raises EOFError, so the
    complete lines or items before the cut are kept."""

    def __init__(self, stream: IO[bytes], size: int) -> None:
        self._stream = stream
        self._left = size
        self._cut = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._cut:
            raise EOFError(_TRUNCATED_TAR)
        view = memoryview(buffer).cast("B")
        data = self._stream.read(min(len(view), self._left))
        if len(data) < min(len(view), self._left):
            self._cut = True
            if not data:
                raise EOFError(_TRUNCATED_TAR)
        view[:len(data)] = data
        self._left -= len(data)
        return len(data)


def _member_file(archive: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes] | None:
    stream = archive.fileobj
    if stream is None or member.sparse is not None or stream.tell() != member.offset_data:  # pragma: no cover
        return archive.extractfile(member)  # (a sparse member; never in OONI's archives)
    return io.BufferedReader(_Member(stream, member.size), buffer_size=_CHUNK)  # type: ignore[arg-type]


def _read_member(source: str, name: str, size: int, f: IO[bytes], max_bytes: int) -> Iterator[Line | Rejection]:
    """One archive member, read like a file of its name; a ``.jsonl`` member (or a ``.json`` one, which can be
    JSON lines) is bounded line by line or item by item, never as a whole."""
    if name.endswith(".post"):
        if size > max_bytes:
            yield Rejection(source, 0, "too_large", f"{size} bytes (limit {max_bytes})")
        else:
            yield from _read_post(source, f, max_bytes)
    elif name.endswith(".json"):
        yield from _read_json(source, f, max_bytes)
    elif name.endswith(".jsonl"):
        yield from _lines(source, f, max_bytes)
    else:
        yield Rejection(source, 0, "unsupported_format", "archive member is not .post, .json or .jsonl")


def _read_tar(path: str, max_bytes: int, fileobj: IO[bytes] | None = None) -> Iterator[Line | Rejection]:
    """A tar archive: a file (compressed as its name and magic say), or ``fileobj``, an already
    decompressed stream. Damage ends it with one rejection; what came before is kept."""
    lz4 = _Lz4File(path) if fileobj is None and path.lower().endswith(".lz4") else None
    damaged: tuple[type[BaseException], ...] = (tarfile.TarError, EOFError, zlib.error)
    try:
        if fileobj is not None:
            archive = _Archive.open(fileobj=fileobj, mode="r|")
        elif lz4 is None:
            archive = _Archive.open(path, "r|*")
        else:
            archive = _Archive.open(fileobj=lz4, mode="r|")  # type: ignore[call-overload]
    except damaged + ((OSError,) if lz4 is not None or fileobj is not None else ()) as exc:
        # (a file that cannot be opened stays "unreadable")
        if lz4 is not None:
            lz4.close()
        yield Rejection(path, 0, "corrupt_gzip", f"not a readable tar archive: {_one_line(exc)}")
        return
    with archive:
        try:
            for member in archive:
                if not member.isfile():
                    continue
                f = _member_file(archive, member)
                if f is None:  # pragma: no cover - a regular file always has one
                    continue
                for record in _read_member(f"{path}!{member.name}", member.name.lower(), member.size, f, max_bytes):
                    yield record
                    if isinstance(record, Rejection) and record.reason in _DAMAGE:
                        return  # the member's reader met the archive's damage: nothing after it can be read
            if isinstance(archive.damage, (tarfile.TruncatedHeaderError, tarfile.EmptyHeaderError)):
                yield Rejection(path, 0, "truncated_gzip", _TRUNCATED_TAR)
            elif archive.damage is not None:
                yield Rejection(path, 0, "corrupt_gzip", f"damaged tar header: {_one_line(archive.damage)}")
        except EOFError:
            yield Rejection(path, 0, "truncated_gzip", _TRUNCATED_TAR)
        except (tarfile.TarError, zlib.error, gzip.BadGzipFile) as exc:
            if "unexpected end of data" in str(exc):  # tarfile's words for an archive cut inside a member
                yield Rejection(path, 0, "truncated_gzip", _TRUNCATED_TAR)
            else:
                yield Rejection(path, 0, "corrupt_gzip", _one_line(exc))
        except OSError as exc:
            if (lz4 is None and fileobj is None) or not _decompress_error(exc):
                raise
            yield Rejection(path, 0, "corrupt_gzip", _one_line(exc))
        finally:
            if lz4 is not None:
                lz4.close()


# --------------------------------------------------------------------------- streams


class _Replay(io.RawIOBase):
    """A stream whose first bytes were already read: gives them back, then the rest; or, when reading them
    ended in ``error`` (a damaged stream), raises it where the rest would start."""

    def __init__(self, head: bytes, rest: IO[bytes], error: BaseException | None = None) -> None:
        self._head = memoryview(head)  # (a view: giving a long head back costs no copies of what is left)
        self._rest = rest
        self._error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), len(self._head))
        view[:n] = self._head[:n]
        self._head = self._head[n:]
        if n == len(view) or (n and self._error is not None):
            return n
        if self._error is not None:
            raise self._error
        # The rest in the same call, so that a buffered reader on top can `peek` past a short head.
        try:
            data = self._rest.read1(len(view) - n) if hasattr(self._rest, "read1") else self._rest.read(len(view) - n)
        except Exception as exc:
            if not n:
                raise
            self._error = exc  # raised by the next call: the head first
            return n
        view[n:n + len(data)] = data
        return n + len(data)


def _lookahead(f: IO[bytes], n: int) -> tuple[bytes, IO[bytes]]:
    """The first ``n`` bytes of ``f`` (fewer at its end), and a stream that still starts with them."""
    head = b""
    while len(head) < n:
        more = f.read1(n - len(head)) if hasattr(f, "read1") else f.read(n - len(head))
        if not more:
            break
        head += more
    return head, io.BufferedReader(_Replay(head, f), buffer_size=_CHUNK)


def _decompress_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "decompress" in text or "zstd" in text or "lz4" in text


def _read_stream(path: str, max_bytes: int) -> Iterator[Line | Rejection]:
    """Standard input or a pipe, read once: sniffed by its first bytes, decompressed on the fly."""
    source = "<stdin>" if path == STDIN else path
    owned = None if path == STDIN else open(path, "rb", buffering=_CHUNK)  # noqa: SIM115 - closed below
    raw: IO[bytes] | None = getattr(sys.stdin, "buffer", None) if owned is None else owned
    if raw is None:
        yield Rejection(source, 0, "unreadable", "standard input is closed")
        return
    closers: list[Any] = [] if owned is None else [owned]
    try:
        head, stream = _lookahead(raw, 4)
        if head.startswith(_GZIP_MAGIC):
            stream = gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[assignment]
        elif head == _ZSTD_MAGIC:
            import pyarrow as pa

            compressed = pa.CompressedInputStream(pa.PythonFile(stream, mode="r"), "zstd")
            closers.append(compressed)
            stream = _ArrowLines(compressed)  # type: ignore[assignment]
        elif head == _LZ4_MAGIC:
            stream = _Lz4File(stream)  # type: ignore[assignment]
        closers.append(stream)
        try:
            head, stream = _lookahead(stream, 512)
        except EOFError as exc:  # the compressed stream ends within its first 512 bytes
            yield Rejection(source, 1, "truncated_gzip", _one_line(exc))
            return
        except (gzip.BadGzipFile, zlib.error) as exc:
            yield Rejection(source, 1, "corrupt_gzip", _one_line(exc))
            return
        except OSError as exc:
            if not _decompress_error(exc):
                raise  # a read error: "unreadable", in read_partition
            yield Rejection(source, 1, "corrupt_gzip", _one_line(exc))
            return
        if head[257:262] == _TAR_MAGIC:
            yield from _read_tar(source, max_bytes, stream)
            return
        yield from _read_json(source, stream, max_bytes, stream=True)
    finally:
        for closer in reversed(closers):
            with contextlib.suppress(Exception):  # closing a damaged decompressor may complain again
                closer.close()


__all__ = [
    "MAX_MEASUREMENT_BYTES", "REASONS", "SPLIT_BYTES", "STDIN", "FileDone", "InputError", "Line", "Partition",
    "Rejection", "archive_test_name", "discover", "file_identity", "is_stream", "layout", "partitions", "read",
    "read_partition",
]
