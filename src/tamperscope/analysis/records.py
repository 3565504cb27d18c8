"""The records the reader yields, and what every part of it shares.

`Line` (one measurement's raw bytes and where they came from), `Rejection` (bad input,
with a reason from `REASONS`), `FileDone` (a file read in full), `Partition` (the
piece of input one worker reads), the size bounds, and the magic numbers that tell
compressed and archived input apart. reader.py re-exports the records: importers say
``from tamperscope.analysis.reader import Line``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

MAX_MEASUREMENT_BYTES = 16 * 1024 * 1024  # one measurement; OONI probes cap bodies far below
SPLIT_BYTES = 32 * 1024 * 1024  # uncompressed JSONL files are cut into partitions of about this size
CHUNK = 1024 * 1024  # read size when skipping an oversized line
BOM = b"\xef\xbb\xbf"  # the UTF-8 byte-order mark some Windows tools put at the start of a text file
JSON_WS = b" \t\r\n"  # JSON's whitespace
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
LZ4_MAGIC = b"\x04\x22\x4d\x18"
TAR_MAGIC = b"ustar"  # at offset 257 of a tar archive's first header (POSIX and GNU)
STDIN = "-"  # the path that names standard input
# orjson reads values nested up to 1,024 levels deep but writes only up to 254 (orjson.JSONEncodeError): a
# measurement nested deeper parses, yet cannot be re-serialised or hashed into its uid. No probe writes one.
TOO_DEEP = "the measurement is nested more than 254 levels deep"

# reason -> what it means; the report prints these, docs/analysis.md lists them.
REASONS: dict[str, str] = {
    "corrupt_json": "the record is not valid JSON (or not UTF-8)",
    "truncated": "the file ends early (a cut gzip, zstd or LZ4 stream, or a cut tar archive); every complete record "
                 "before the cut was kept",
    "damaged": "the compressed stream or archive is damaged (a bad header or checksum); the records before the damage "
               "were kept",
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
class Unread:
    """A file, or an archive's member, of a Censored Planet scan that holds no measurement (its resolvers, the
    answers before their comparison, a log, statistics: `scans.not_measurements`), left unread. Not bad input:
    counted, so that the summary says why a scan's other files were not read."""

    source: str   # file path (plus "!member" inside archives)


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
    lines_before: int = 0  # lines of the file before the range's first one: its lines are numbered on from there

    @property
    def label(self) -> str:
        return self.path if self.start == 0 and self.end is None else f"{self.path}@{self.start}"


class InputError(Exception):
    """A path given by the user does not exist (the CLI turns this into a usage error)."""
