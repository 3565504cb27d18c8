"""Streaming reader for OONI-format measurements, with bad input counted, never fatal.

What lives here: the discovery of input files (files, directories, OONI's raw
archive layout), their cutting into *partitions* (the unit a worker or a Dask
task reads), and the choice of the reader that turns a partition into `Line`
records (one measurement's raw bytes each) and `Rejection` records (bad input,
with a reason from `REASONS`). The records are in `records.py`; the line reader
and the decompressors in `framing.py`; JSON documents, arrays, ``.post`` files
and tar archives in `documents.py`; streams (standard input, pipes) here.

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
  JSON lines, a ``.json.gz`` or ``.jsonl.gz`` one the same once decompressed (a
  damaged one is rejected alone: the members after it are read);
* OONI's S3 layout (``raw/<day>/<hour>/<cc>/<test>/*.jsonl.gz``,
  ``jsonl/<test>/<cc>/<day>/<hour>/*.jsonl.gz``) is just directories of the above;
  ``index.json.gz`` files there are indexes, not measurements, and are skipped; so are the
  files of a Censored Planet scan that hold no measurement (`scans.not_measurements`:
  its resolvers, the answers before their comparison, logs), in its directory or tarball,
  and counted (`discover`'s ``unread``, and an `Unread` record for an archive's member);
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
around it are kept. JSON arrays and documents are cut by documents.py's `_Scanner`,
which follows strings and brackets without parsing, so no file is ever held whole.

Only the framing is checked here (a line, its size, the gzip stream). Parsing
and the envelope checks happen in the worker (`pipeline`), which reports its
rejections with the same `Rejection` record and the same reasons.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import os
import re
import stat
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, cast

from tamperscope.analysis.documents import read_json, read_post, read_tar
from tamperscope.analysis.framing import (
    ArrowLines,
    Lz4File,
    decompress_error,
    lookahead,
    one_line,
    read_lines,
    read_zstd,
)
from tamperscope.analysis.records import (  # the records, re-exported: importers read them from here
    CHUNK,
    GZIP_MAGIC,
    LZ4_MAGIC,
    MAX_MEASUREMENT_BYTES,
    REASONS,
    SPLIT_BYTES,
    STDIN,
    TAR_MAGIC,
    ZSTD_MAGIC,
    FileDone,
    InputError,
    Line,
    Partition,
    Rejection,
    Unread,
    file_identity,
)
from tamperscope.analysis.scans import not_measurements

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
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head == ZSTD_MAGIC:
        return "zstd"
    if head == LZ4_MAGIC:
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


def discover(paths: Iterable[str | os.PathLike[str]],
             unread: Callable[[Path], None] | None = None) -> Iterator[tuple[Path, str]]:
    """(file, kind) for every measurement file under ``paths``, in a stable order.

    Files named explicitly are read whatever their name (sniffed); inside
    directories only known suffixes count, so READMEs and indexes are ignored, and
    so are the files of a Censored Planet scan that hold no measurement, each given
    to ``unread`` (to be counted).
    ``-`` and pipes are streams (kind ``"stream"``), sniffed as they are read.
    Raises `InputError` for a path that does not exist.
    """
    for raw in paths:
        path = Path(raw)
        if is_stream(raw):
            if _device(raw):
                raise InputError(f"{os.fspath(raw)} is a device, not measurements: give files, a directory, a pipe "
                                 "or - (standard input)")
            yield path, "stream"
        elif path.is_dir():
            # Links to directories are followed, as a user who linked a dataset in expects (they were passed over
            # without a word); each directory is read once however many links reach it, so a loop ends.
            walked = {_identity(path)}
            for root, dirs, files in os.walk(path, followlinks=True):
                dirs[:] = [d for d in sorted(dirs) if _first_visit(Path(root, d), walked)]
                for name in sorted(files):
                    child = Path(root, name)
                    kind = _kind(child)
                    if kind is None or not _regular(child):
                        continue
                    if not_measurements(str(child)):
                        if unread is not None:
                            unread(child)
                        continue
                    yield child, kind
        elif path.exists():
            yield path, _kind(path) or _sniff(path)
        else:
            raise InputError(_missing(raw))


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _first_visit(path: Path, walked: set[tuple[int, int] | None]) -> bool:
    """Whether a directory found while walking is entered: not one already walked (reached by another link, or
    a link back up the tree)."""
    key = _identity(path)
    if key is None or key in walked:
        return False
    walked.add(key)
    return True


def _device(path: str | os.PathLike[str]) -> bool:
    """A disk, or a character device other than a terminal: /dev/zero and /dev/urandom never end, and a line
    reader would skip their "lines" forever. A terminal (``/dev/stdin`` at a shell) is read as a stream."""
    if os.fspath(path) == STDIN:
        return False
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISBLK(mode):
            return True
        if not stat.S_ISCHR(mode):
            return False
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)  # opening reads nothing
    except (OSError, ValueError):
        return False  # reading it says why
    try:
        return not os.isatty(fd)
    finally:
        os.close(fd)


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
            starts = range(0, size, split_bytes)
            for start, before in zip(starts, _lines_before(path, starts), strict=True):
                end = min(size, start + split_bytes)
                out.append(Partition(str(path), kind, start, None if end >= size else end, end - start, before))
        else:
            out.append(Partition(str(path), kind, size=size))
    return out


def _lines_before(path: Path, starts: Sequence[int]) -> list[int]:
    """For each byte offset of ``starts`` (ascending), the lines of the file before the first line a range starting
    there reads (`framing.read_lines` leaves the line through ``start - 1`` to the range before): the newlines in
    ``[0, start - 1)``, plus that one. One pass at C speed (1.6 GB/s here), so that the rejections of a file cut
    into ranges name their lines as one that is read whole does (each range counted from 1)."""
    out: list[int] = []
    counted = seen = 0
    try:
        with open(path, "rb") as f:
            for start in starts:
                if start == 0:
                    out.append(0)
                    continue
                while seen < start - 1:
                    block = f.read(min(CHUNK, start - 1 - seen))
                    if not block:
                        break
                    counted += block.count(b"\n")
                    seen += len(block)
                out.append(counted + 1)
    except OSError:  # unreadable: the range's reader says so, its lines numbered from 1
        out += [0] * (len(starts) - len(out))
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


def read(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Line | Rejection | Unread]:
    """Every measurement record (and every rejection, and every archive member left `Unread`) under ``paths``,
    streamed."""
    for path, kind in discover(paths):
        yield from read_partition(Partition(str(path), kind))


def read_partition(part: Partition, max_bytes: int = MAX_MEASUREMENT_BYTES) -> Iterator[Line | Rejection | Unread]:
    """The records of one partition; I/O and compression problems become rejections."""
    try:
        if part.kind == "tar":
            yield from read_tar(part.path, max_bytes)
        elif part.kind == "post":
            with open(part.path, "rb") as f:
                yield from read_post(part.path, f, max_bytes)
        elif part.kind == "json":
            with open(part.path, "rb", buffering=CHUNK) as f:
                yield from read_json(part.path, f, max_bytes)
        elif part.kind == "gzip":
            with gzip.open(part.path, "rb") as gz:
                yield from read_lines(part.path, cast(IO[bytes], gz), max_bytes)  # a GzipFile reads as one
        elif part.kind == "zstd":
            yield from read_zstd(part.path, max_bytes)
        elif part.kind == "lz4":
            with Lz4File(part.path) as f:
                yield from read_lines(part.path, f, max_bytes)  # type: ignore[arg-type]
        elif part.kind == "stream":
            yield from _read_stream(part.path, max_bytes)
        else:
            with open(part.path, "rb", buffering=CHUNK) as f:
                yield from read_lines(part.path, f, max_bytes, part.start, part.end, part.lines_before)
    except OSError as exc:
        yield Rejection(part.path, 0, "unreadable", one_line(exc))


# --------------------------------------------------------------------------- streams


def _read_stream(path: str, max_bytes: int) -> Iterator[Line | Rejection | Unread]:
    """Standard input or a pipe, read once: sniffed by its first bytes, decompressed on the fly."""
    source = "<stdin>" if path == STDIN else path
    owned = None if path == STDIN else open(path, "rb", buffering=CHUNK)  # noqa: SIM115 - closed below
    raw: IO[bytes] | None = getattr(sys.stdin, "buffer", None) if owned is None else owned
    if raw is None:
        yield Rejection(source, 0, "unreadable", "standard input is closed")
        return
    closers: list[Any] = [] if owned is None else [owned]
    try:
        head, stream = lookahead(raw, 4)
        if head.startswith(GZIP_MAGIC):
            stream = gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[assignment]
        elif head == ZSTD_MAGIC:
            import pyarrow as pa

            compressed = pa.CompressedInputStream(pa.PythonFile(stream, mode="r"), "zstd")
            closers.append(compressed)
            stream = ArrowLines(compressed)  # type: ignore[assignment]
        elif head == LZ4_MAGIC:
            stream = Lz4File(stream)  # type: ignore[assignment]
        closers.append(stream)
        try:
            head, stream = lookahead(stream, 512)
        except EOFError as exc:  # the compressed stream ends within its first 512 bytes
            yield Rejection(source, 1, "truncated", one_line(exc))
            return
        except (gzip.BadGzipFile, zlib.error) as exc:
            yield Rejection(source, 1, "damaged", one_line(exc))
            return
        except OSError as exc:
            if not decompress_error(exc):
                raise  # a read error: "unreadable", in read_partition
            yield Rejection(source, 1, "damaged", one_line(exc))
            return
        if head[257:262] == TAR_MAGIC:
            yield from read_tar(source, max_bytes, stream)
            return
        yield from read_json(source, stream, max_bytes, stream=True)
    finally:
        for closer in reversed(closers):
            with contextlib.suppress(Exception):  # closing a damaged decompressor may complain again
                closer.close()


__all__ = [
    "MAX_MEASUREMENT_BYTES", "REASONS", "SPLIT_BYTES", "STDIN", "FileDone", "InputError", "Line", "Partition",
    "Rejection", "Unread", "archive_test_name", "discover", "file_identity", "is_stream", "layout", "partitions",
    "read", "read_partition",
]
