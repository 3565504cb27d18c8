"""Framing: raw input cut into one measurement's bytes at a time, in bounded memory.

The line reader (`read_lines`: JSON lines, a bounded line at a time, an oversized one
skipped in chunks and counted), the decompressors it reads through (zstd by Arrow,
LZ4 frames), and the replay buffer that lets a stream be sniffed and then read from
its start (`lookahead`). reader.py, documents.py and the tar reader build on these.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Callable, Iterator
from typing import IO, Any

from tamperscope.analysis.records import BOM, CHUNK, Line, Rejection


def one_line(exc: BaseException) -> str:
    """An error's first non-blank line (at most 200 characters), else its type's name (a message that began with a
    line feed said nothing: a helper's remark)."""
    line = next((t.strip() for t in str(exc).splitlines() if t.strip()), "")
    return line[:200] or type(exc).__name__


def read_lines(source: str, f: IO[bytes], max_bytes: int, start: int = 0,
               end: int | None = None, lines_before: int = 0) -> Iterator[Line | Rejection]:
    """JSON lines from a binary stream: bounded, tolerant of damaged compression; numbered on from
    ``lines_before``."""
    number = lines_before
    pos = start
    peek = getattr(f, "peek", None)
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
            if number == 1 and not start and chunk.startswith(BOM):
                chunk = chunk[len(BOM):]  # a byte-order mark: not part of the first record
            if len(chunk) > max_bytes and not chunk.endswith(b"\n"):
                skipped = len(chunk)
                while chunk and not chunk.endswith(b"\n"):
                    chunk = f.readline(CHUNK)
                    skipped += len(chunk)
                pos += skipped - (max_bytes + 1)
                yield Rejection(source, number, "too_large", f"{skipped} bytes on one line (limit {max_bytes})")
                continue
            data = chunk.strip()
            if data:
                yield Line(source, number, data)
            elif peek is not None:  # a run of blank lines, passed over at C speed (a small gzip held 200 MiB of them)
                skipped, lines = _blank_run(f, peek, end - pos if end is not None else None)
                number += lines
                pos += skipped
    except EOFError:
        yield Rejection(source, number + 1, "truncated",
                        f"the compressed file ends early after {number} complete lines")
    except (gzip.BadGzipFile, zlib.error) as exc:
        yield Rejection(source, number + 1, "damaged", one_line(exc))
    except OSError as exc:
        text = str(exc)
        if "zstd" in text.lower() or "decompress" in text.lower():
            yield Rejection(source, number + 1, "damaged", one_line(exc))
        else:
            yield Rejection(source, number + 1, "unreadable", one_line(exc))


_BLANK = b" \t\r\n\x0b\x0c"  # what bytes.strip() takes away


def _blank_run(f: IO[bytes], peek: Callable[[int], bytes], room: int | None) -> tuple[int, int]:
    """Read the blank lines that come next in ``f`` (whole lines only, and at most ``room`` bytes): the bytes
    read and the lines they ended."""
    read = lines = 0
    while room is None or read < room:
        ahead = peek(CHUNK)[:CHUNK]
        if room is not None:
            ahead = ahead[:room - read]
        blank = len(ahead) - len(ahead.lstrip(_BLANK))
        k = ahead.rfind(b"\n", 0, blank) + 1  # up to the end of the last whole blank line
        if k == 0:
            break
        f.read(k)
        read += k
        lines += ahead.count(b"\n", 0, k)
        if k < len(ahead):
            break
    return read, lines


def read_zstd(path: str, max_bytes: int) -> Iterator[Line | Rejection]:
    import pyarrow as pa

    raw = pa.OSFile(path, "rb")
    stream = pa.CompressedInputStream(raw, "zstd")
    try:
        reader = ArrowLines(stream)
        yield from read_lines(path, reader, max_bytes)  # type: ignore[arg-type]
    finally:
        stream.close()


class ArrowLines:
    """The bit of the binary file API the readers need, over a pyarrow input stream (zstd).

    A stream that ends early (a truncated ``.zst``) ends like a truncated gzip: every complete line that was
    decompressed, then EOFError (``truncated``). Arrow's ``read`` loses the bytes it decompressed in a
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
        piece = bytearray(CHUNK)
        try:
            n = self._stream.readinto(piece)  # type: ignore[attr-defined]
        except OSError as exc:
            n = piece.rfind(b"\n") + 1
            self._eof = True
            self._error = EOFError(one_line(exc)) if "truncated" in str(exc).lower() else exc
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


class Lz4File:
    """An LZ4 frame file (frames concatenated, as OONI's archive writes them) whose damage reads
    as the OSError `read_lines` and `read_tar` report ("damaged"); lz4 raises RuntimeError."""

    def __init__(self, path: str | IO[bytes]) -> None:
        import lz4.frame

        self._f = lz4.frame.open(path, "rb")

    def read(self, size: int = -1) -> bytes:
        return self._bytes(self._f.read, size)

    def readline(self, limit: int = -1) -> bytes:
        return self._bytes(self._f.readline, limit)

    @staticmethod
    def _bytes(method: Callable[[int], bytes], n: int) -> bytes:
        try:
            return method(n)
        except RuntimeError as exc:
            raise OSError(f"lz4 decompress failed: {one_line(exc)}") from exc

    def seek(self, offset: int) -> None:  # pragma: no cover - lz4 partitions always start at 0
        raise OSError("cannot seek in a compressed stream")

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> Lz4File:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Replay(io.RawIOBase):
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


def lookahead(f: IO[bytes], n: int) -> tuple[bytes, IO[bytes]]:
    """The first ``n`` bytes of ``f`` (fewer at its end), and a stream that still starts with them."""
    head = b""
    while len(head) < n:
        more = f.read1(n - len(head)) if hasattr(f, "read1") else f.read(n - len(head))
        if not more:
            break
        head += more
    return head, io.BufferedReader(Replay(head, f), buffer_size=CHUNK)


def decompress_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "decompress" in text or "zstd" in text or "lz4" in text
