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
* ``.json``: one measurement (pretty-printed is fine), a JSON array of them, or
  JSON lines (OONI's legacy cans name their JSONL files ``.json``);
* ``.post``: an OONI collector submission ``{"format": "json", "content": {...}}``;
* ``.tar.gz`` / ``.tgz`` / ``.tar`` / ``.tar.lz4``: OONI "postcans"
  (``raw/YYYYMMDD/HH/CC/test/*.tar.gz`` holding ``.post`` files) and legacy cans
  holding ``.json`` (JSON lines) files (the historical ``*.tar.lz4``, one LZ4 frame
  per member);
* OONI's S3 layout (``raw/<day>/<hour>/<cc>/<test>/*.jsonl.gz``,
  ``jsonl/<test>/<cc>/<day>/<hour>/*.jsonl.gz``) is just directories of the above;
  ``index.json.gz`` files there are indexes, not measurements, and are skipped;
* ``-`` (standard input) and pipes (``<(zcat ...)``, a FIFO): a *stream*, read once,
  front to back. Its first bytes say what it is: gzip, zstd or LZ4 (decompressed on
  the fly), a tar archive inside (a postcan), a JSON array or one pretty-printed
  measurement (bounded, like a ``.json`` file), else JSON lines.

Memory stays flat: lines are read with a bound (`MAX_MEASUREMENT_BYTES`); a
longer line is skipped in chunks without being held, and counted "too_large".
A pretty-printed ``.json`` file larger than the bound is rejected the same way.

Only the framing is checked here (a line, its size, the gzip stream). Parsing
and the envelope checks happen in the worker (`pipeline`), which reports its
rejections with the same `Rejection` record and the same reasons.
"""

from __future__ import annotations

import contextlib
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
                    if kind is not None:
                        yield child, kind
        elif path.exists():
            yield path, _kind(path) or _sniff(path)
        else:
            raise InputError(f"no such file or directory: {raw}")


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
            yield from _read_json_file(part.path, max_bytes)
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
    """The bit of the binary file API `_lines` needs, over a pyarrow input stream."""

    def __init__(self, stream: object) -> None:
        self._stream = stream
        self._buffer = b""
        self._eof = False

    def readline(self, limit: int = -1) -> bytes:
        while True:
            cut = self._buffer.find(b"\n")
            if cut >= 0 and (limit < 0 or cut < limit):
                line, self._buffer = self._buffer[:cut + 1], self._buffer[cut + 1:]
                return line
            if 0 <= limit <= len(self._buffer) or self._eof:
                size = len(self._buffer) if limit < 0 else min(limit, len(self._buffer))
                line, self._buffer = self._buffer[:size], self._buffer[size:]
                return line
            try:
                more = self._stream.read(_CHUNK)  # type: ignore[attr-defined]
            except OSError:
                raise
            if not more:
                self._eof = True
            self._buffer += bytes(more)

    def read(self, size: int = -1) -> bytes:
        while not self._eof and (size < 0 or len(self._buffer) < size):
            more = self._stream.read(_CHUNK)  # type: ignore[attr-defined]
            if not more:
                self._eof = True
            self._buffer += bytes(more)
        size = len(self._buffer) if size < 0 else size
        data, self._buffer = self._buffer[:size], self._buffer[size:]
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


def _read_json_file(path: str, max_bytes: int) -> Iterator[Line | Rejection]:
    """One measurement, an array of them, or (legacy cans) JSON lines."""
    size = os.path.getsize(path)
    with open(path, "rb", buffering=_CHUNK) as f:
        head = f.read(1)
        while head.isspace():
            head = f.read(1)
        f.seek(0)
        if size > max_bytes:
            if head == b"{":
                # Either JSON lines (each line bounded) or one oversized document.
                yield from _lines(path, f, max_bytes)
            else:
                yield Rejection(path, 0, "too_large", f"{size} bytes in one JSON document (limit {max_bytes})")
            return
        data = f.read()
    yield from _json_document(path, data, max_bytes)


def _json_document(source: str, data: bytes, max_bytes: int) -> Iterator[Line | Rejection]:
    stripped = data.strip()
    if not stripped:
        return
    try:
        value = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        if b"\n" in stripped and stripped.startswith(b"{"):
            yield from _lines(source, _BytesLines(stripped), max_bytes)
            return
        yield Rejection(source, 1, "corrupt_json", "not a JSON document")
        return
    if isinstance(value, list):
        for i, item in enumerate(value, 1):
            if isinstance(item, dict):
                yield Line(source, i, orjson.dumps(item))
            else:
                yield Rejection(source, i, "wrong_type", f"array item {i} is a {_json_type(item)}, not an object")
        return
    # JSON forbids raw line breaks inside strings: joining the lines changes only
    # insignificant whitespace, and keeps the raw store one measurement per line.
    yield Line(source, 1, stripped.replace(b"\r\n", b" ").replace(b"\n", b" ").replace(b"\r", b" "))


class _BytesLines:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def readline(self, limit: int = -1) -> bytes:
        end = self._data.find(b"\n", self._pos)
        end = len(self._data) if end < 0 else end + 1
        if limit >= 0:
            end = min(end, self._pos + limit)
        line = self._data[self._pos:end]
        self._pos = end
        return line

    def seek(self, offset: int) -> None:
        self._pos = offset


def _json_type(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def _read_post(source: str, f: IO[bytes], max_bytes: int) -> Iterator[Line | Rejection]:
    """An OONI collector submission: ``{"format": "json", "content": measurement}``."""
    data = f.read(max_bytes + 1)
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


def _read_tar(path: str, max_bytes: int, fileobj: IO[bytes] | None = None) -> Iterator[Line | Rejection]:
    """A tar archive: a file (compressed as its name and magic say), or ``fileobj``, an already
    decompressed stream."""
    lz4 = _Lz4File(path) if fileobj is None and path.lower().endswith(".lz4") else None
    damaged: tuple[type[BaseException], ...] = (tarfile.TarError, EOFError, zlib.error)
    try:
        if fileobj is not None:
            archive = tarfile.open(fileobj=fileobj, mode="r|")
        elif lz4 is None:
            archive = tarfile.open(path, "r|*")
        else:
            archive = tarfile.open(fileobj=lz4, mode="r|")  # type: ignore[call-overload]
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
                source = f"{path}!{member.name}"
                name = member.name.lower()
                if member.size > max_bytes and not name.endswith(".json"):
                    yield Rejection(source, 0, "too_large", f"{member.size} bytes (limit {max_bytes})")
                    continue
                f = archive.extractfile(member)
                if f is None:
                    continue
                if name.endswith(".post"):
                    yield from _read_post(source, f, max_bytes)
                elif name.endswith(".json") or name.endswith(".jsonl"):
                    yield from _lines(source, f, max_bytes)
                else:
                    yield Rejection(source, 0, "unsupported_format", "archive member is not .post, .json or .jsonl")
        except EOFError:
            yield Rejection(path, 0, "truncated_gzip", "the archive ends early; members before the cut were kept")
        except (tarfile.TarError, zlib.error, gzip.BadGzipFile) as exc:
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
    """A stream whose first bytes were already read: gives them back, then the rest."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read1(len(view)) if hasattr(self._rest, "read1") else self._rest.read(len(view))
        view[:len(data)] = data
        return len(data)


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
        first = head.lstrip()[:1]
        if first == b"[" or (first == b"{" and head.lstrip().split(b"\n", 1)[0].strip() == b"{"):
            # a JSON array, or one pretty-printed measurement: a whole document, bounded like a .json file
            data = stream.read(max_bytes + 1)
            if len(data) > max_bytes:
                yield Rejection(source, 0, "too_large", f"more than {max_bytes} bytes in one JSON document")
                return
            yield from _json_document(source, data, max_bytes)
            return
        yield from _lines(source, stream, max_bytes)
    finally:
        for closer in reversed(closers):
            with contextlib.suppress(Exception):  # closing a damaged decompressor may complain again
                closer.close()


__all__ = [
    "MAX_MEASUREMENT_BYTES", "REASONS", "SPLIT_BYTES", "STDIN", "FileDone", "InputError", "Line", "Partition",
    "Rejection", "archive_test_name", "discover", "file_identity", "is_stream", "layout", "partitions", "read",
    "read_partition",
]
