"""Edges of `analysis.framing`: the line reader's limit and partitions (``start``/``end``, which together read every
line of a file once wherever the cut falls), the zstd line reader's bounds and damage, the replay buffer's damage,
and how read errors are told from damaged compression."""

from __future__ import annotations

import io
from typing import Any

import pytest

from tamperscope.analysis import framing
from tamperscope.analysis.records import BOM, Line, Rejection


def _read(data: bytes, max_bytes: int, start: int = 0, end: int | None = None) -> list[Line | Rejection]:
    return list(framing.read_lines("x.jsonl", io.BufferedReader(io.BytesIO(data)), max_bytes, start, end))


def _what(records: list[Line | Rejection]) -> list[bytes | str]:
    return [r.data if isinstance(r, Line) else r.reason for r in records]


def test_a_line_of_exactly_the_limit_is_kept_and_one_byte_more_is_too_large() -> None:
    """The limit is on a line's bytes, its newline not counted: max_bytes bytes are a record, max_bytes + 1 not."""
    line = b"x" * 20
    assert _what(_read(line + b"\nok\n", 20)) == [line, b"ok"]
    assert _what(_read(line + b"y\nok\n", 20)) == ["too_large", b"ok"]


def test_partitions_cut_anywhere_read_every_line_once() -> None:
    """Two partitions split at any byte read the lines the whole file does, each once: a line that straddles the
    cut or starts at it belongs to one of them, also after a line over the limit (skipped in chunks) and a
    byte-order mark inside the file (not at its start: data, kept as it is)."""
    data = b"aa\n" + b"z" * 30 + b"\nbb\n\n\n" + BOM + b"cc\ndd\n"
    whole = _what(_read(data, 10))
    assert whole == [b"aa", "too_large", b"bb", BOM + b"cc", b"dd"]
    for cut in range(1, len(data)):
        parts = _what(_read(data, 10, 0, cut)) + _what(_read(data, 10, cut))
        assert parts == whole, cut


class _Pieces:
    """A decompressing stream, as pyarrow's: ``readinto`` gives ``pieces`` one a call, then raises ``error``."""

    def __init__(self, pieces: list[bytes], error: BaseException | None = None) -> None:
        self._pieces = pieces
        self._error = error

    def readinto(self, buffer: Any) -> int:
        if not self._pieces:
            if self._error is not None:
                raise self._error
            return 0
        piece = self._pieces.pop(0)
        buffer[:len(piece)] = piece
        return len(piece)

    def close(self) -> None:
        pass


def test_a_zstd_line_one_byte_over_the_limit_is_too_large() -> None:
    """`ArrowLines.readline` bounds a line as a file's readline does: with max_bytes = 20, a line of 20 bytes is a
    record and one of 21 is "too_large" (returned whole, its newline included, it would be a record)."""
    for pieces in ([b"x" * 20 + b"\nok\n"], [b"x" * 10, b"x" * 10 + b"\nok\n"]):
        lines = framing.ArrowLines(_Pieces(list(pieces)))
        assert _what(list(framing.read_lines("x.zst", lines, 20))) == [b"x" * 20, b"ok"]  # type: ignore[arg-type]
    lines = framing.ArrowLines(_Pieces([b"x" * 21 + b"\nok\n"]))
    assert _what(list(framing.read_lines("x.zst", lines, 20))) == ["too_large", b"ok"]  # type: ignore[arg-type]


def test_a_truncated_zstd_stream_drops_its_partial_last_line_and_says_truncated() -> None:
    """A zstd stream that ends early keeps its complete lines; the partial one at the cut is no record (it would
    be a measurement cut short) and the damage is one "truncated"."""
    lines = framing.ArrowLines(_Pieces([b'{"a":1}\n{"b":'], OSError("ZSTD decompression failed: truncated input")))
    records = list(framing.read_lines("x.zst", lines, 100))  # type: ignore[arg-type]
    assert _what(records) == [b'{"a":1}', "truncated"]
    assert records[-1].line == 2


def test_replay_gives_back_its_head_before_the_damage_that_ended_reading_it() -> None:
    """The bytes read ahead before the damage are returned first, and the damage is raised by the next read (raised
    at once, the records in those bytes would be lost)."""
    replay = framing.Replay(b"abc", io.BytesIO(b"never read"), EOFError("cut"))
    buffer = bytearray(10)
    assert replay.readinto(buffer) == 3 and bytes(buffer[:3]) == b"abc"
    with pytest.raises(EOFError):
        replay.readinto(buffer)


class _Failing(io.RawIOBase):
    def __init__(self, error: OSError) -> None:
        self._error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise self._error


def test_a_read_error_is_unreadable_and_a_decompression_error_damaged() -> None:
    """A disk's read error says nothing of the data ("unreadable"); a decompressor's is damage ("damaged"). The
    detail is the error's first line, at most 200 characters."""
    records = list(framing.read_lines("x", io.BufferedReader(_Failing(OSError(5, "Input/output error"))), 100))
    assert [(r.line, r.reason) for r in records if isinstance(r, Rejection)] == [(1, "unreadable")]
    records = list(framing.read_lines("x", io.BufferedReader(_Failing(OSError("zstd decompress failed"))), 100))
    assert [(r.line, r.reason) for r in records if isinstance(r, Rejection)] == [(1, "damaged")]
    assert framing.one_line(ValueError("x" * 500 + "\nsecond")) == "x" * 200
    assert framing.one_line(ValueError()) == "ValueError"


def test_an_lz4_error_is_a_decompression_error() -> None:
    """`Lz4File` reports lz4's damage as "lz4 decompress failed"; zstd's and any decompressor's are damage too, a disk's
    read error is not."""
    assert framing.decompress_error(OSError("LZ4F_getFrameInfo: ERROR_frameType_unknown"))
    assert framing.decompress_error(OSError("zstd: bad frame"))
    assert not framing.decompress_error(OSError(5, "Input/output error"))


def test_an_error_message_beginning_with_blank_lines_is_said_by_its_first_words() -> None:
    """A message that began with a line feed came out empty (or as spaces): a rejection that says nothing."""
    assert framing.one_line(ValueError("\nreal message\nmore")) == "real message"
    assert framing.one_line(OSError("  \n")) == "OSError"
    assert framing.one_line(ValueError("x" * 300)) == "x" * 200
