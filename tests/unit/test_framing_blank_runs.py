"""Runs of blank lines are passed over at C speed, with the same line numbers: a 200 KB gzip holding 200 MiB of
newlines kept `analyze` busy for minutes (1.5 us a blank line, read one at a time), and partitions of a file still
split it into the same lines."""

from __future__ import annotations

import gzip
import io
import random
import time
from pathlib import Path

import pytest

from tamperscope.analysis.framing import read_lines
from tamperscope.analysis.records import Line


def _naive(data: bytes) -> list[tuple[int, bytes]]:
    return [(n, line.strip()) for n, line in enumerate(data.split(b"\n"), 1) if line.strip()]


def _lines(items: object) -> list[tuple[int, bytes]]:
    return [(i.line, i.data) for i in items if isinstance(i, Line)]  # type: ignore[attr-defined]


def test_blank_runs_keep_the_line_numbers() -> None:
    rng = random.Random(7)
    parts = []
    for i in range(300):
        parts.append(b"\n" * rng.choice([0, 1, 2, 5, 100, 3000]))
        parts.append(rng.choice([b"", b" ", b"\t", b"\r", b" \r", b"\x0b"]))
        parts.append(b'{"n": %d}\n' % i)
    data = b"".join(parts) + b"\n \n\t"
    want = _naive(data)
    assert _lines(read_lines("x", io.BufferedReader(io.BytesIO(data), 64), 1 << 20)) == want
    assert _lines(read_lines("x", gzip.GzipFile(fileobj=io.BytesIO(gzip.compress(data))), 1 << 20)) == want


def test_partitions_split_the_same_lines(tmp_path: Path) -> None:
    data = (b"\n" * 5000 + b'{"a": 1}\n' + b"\n" * 70000 + b'{"b": 2}\n' + b" \n" * 9000 + b'{"c": 3}' + b"\n" * 10)
    path = tmp_path / "p.jsonl"
    path.write_bytes(data)
    for cuts in ([0, 4000, 5003, 5009, 40000, 75009, 80000, len(data)], [0, 1, len(data) // 2, len(data)]):
        got = []
        for start, end in zip(cuts, cuts[1:]):
            with open(path, "rb") as f:
                got += [line.data for line in read_lines("p", f, 1 << 20, start, end) if isinstance(line, Line)]
        assert got == [b'{"a": 1}', b'{"b": 2}', b'{"c": 3}'], cuts


@pytest.mark.wallclock
def test_a_gzip_of_200_mib_of_newlines_is_read_in_seconds(tmp_path: Path) -> None:
    path = tmp_path / "bomb.jsonl.gz"
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(b'{"first": 1}\n')
        for _ in range(200):
            f.write(b"\n" * (1 << 20))
        f.write(b'{"last": 2}\n')
    assert path.stat().st_size < 300_000
    t = time.perf_counter()
    with gzip.open(path, "rb") as f:
        got = _lines(read_lines(str(path), f, 16 << 20))  # type: ignore[arg-type]
    # idle, 1-2 s (inflating it); read a blank line at a time it took about 5 minutes
    assert time.perf_counter() - t < 60
    assert got == [(1, b'{"first": 1}'), (2 + 200 * (1 << 20), b'{"last": 2}')]
