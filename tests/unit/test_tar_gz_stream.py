"""A .tar.gz is inflated as it is read, a block at a time: tarfile's own gzip stream inflated each 10 KiB whole (up to
10 MB of zeros) and copied what was left at every read, so skipping a 300 MiB member of zeros, 300 KB compressed,
took a minute of system time. The members after it are read; an archive of gzip members one after another too."""

from __future__ import annotations

import gzip
import io
import tarfile
import time
from pathlib import Path

import orjson
import pytest

from tamperscope.analysis import reader
from tamperscope.analysis.records import Line, Rejection
from tamperscope.collector import samples


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, b: object) -> int:
        n = min(len(b), self.left)  # type: ignore[arg-type]
        b[:n] = bytes(n)  # type: ignore[index]
        self.left -= n
        return n


def _members(path: Path, big: int) -> list[bytes]:
    ms = [orjson.dumps(m) for m in samples.corpus(3, seed="tgz")]
    with tarfile.open(path, "w:gz", format=tarfile.USTAR_FORMAT) as tar:
        for i, (name, size, data) in enumerate([("a.json", len(ms[0]), io.BytesIO(ms[0])),
                                                ("zeros.json", big, io.BufferedReader(_Zeros(big), 1 << 20)),
                                                ("b.json", len(ms[1]), io.BytesIO(ms[1])),
                                                ("c.jsonl", len(ms[2]) + 1, io.BytesIO(ms[2] + b"\n"))]):
            info = tarfile.TarInfo(f"2024010100/IR/web_connectivity/{i}-{name}")
            info.size = size
            tar.addfile(info, data)
    return ms


@pytest.mark.wallclock
def test_a_member_of_300_mib_of_zeros_is_passed_over_in_seconds(tmp_path: Path) -> None:
    path = tmp_path / "bomb.tar.gz"
    ms = _members(path, 300 << 20)
    assert path.stat().st_size < 1_000_000
    t = time.perf_counter()
    items = list(reader.read([path]))
    # idle, 1.8 s; tarfile's stream took 15 s here (66 s through analyze, 57 of them in the kernel)
    assert time.perf_counter() - t < 10
    assert [i.data for i in items if isinstance(i, Line)] == ms
    assert [r.reason for r in items if isinstance(r, Rejection)] == ["too_large"]


def test_gzip_members_one_after_another_are_one_archive(tmp_path: Path) -> None:
    whole = tmp_path / "whole.tar.gz"
    ms = _members(whole, 10)
    plain = gzip.decompress(whole.read_bytes())
    split = tmp_path / "split.tar.gz"
    split.write_bytes(gzip.compress(plain[:7000]) + gzip.compress(plain[7000:]) + b"\0" * 300)
    items = list(reader.read([split]))
    assert [i.data for i in items if isinstance(i, Line)] == ms
    assert [r.reason for r in items if isinstance(r, Rejection)] == ["corrupt_json"]  # the 10 zeros' member
