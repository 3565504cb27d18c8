"""Lists and ASN tables as they are downloaded: gzip (iptoasn.com's ``ip2asn-v4.tsv.gz``, a zone file) and a zip of
one file (Tranco's ``top-1m.csv.zip``) are read inflated, within the same caps as a plain file, a bomb included;
a damaged one is one line naming the file and what is wrong."""

from __future__ import annotations

import argparse
import gzip
import io
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import pytest

from tamperscope.analysis import censoredplanet
from tamperscope.cli import UsageError
from tamperscope.model.inputs import BadInput, read_bounded
from tamperscope.probe import command, remote

NAMES = [f"site{i}.example" for i in range(5_000)]
RANKED = "".join(f"{rank},{name}\r\n" for rank, name in enumerate(NAMES, 1)).encode()
TABLE = (Path(command.__file__).parents[1] / "lab" / "data" / "ip2asn.tsv").read_bytes()


def _domains(path: Path) -> list[str]:
    args = argparse.Namespace(input=[], list=[path], category=None)
    return remote._inputs(args, remote.KINDS["dns"], {})


def _zip(*members: tuple[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buf.getvalue()


def test_a_gzip_or_zip_list_reads_as_the_list_it_holds(tmp_path: Path) -> None:
    plain = tmp_path / "top-1m.csv"
    plain.write_bytes(RANKED)
    assert _domains(plain) == NAMES
    packed = gzip.compress(RANKED, mtime=0)
    for name, data in (("top-1m.csv.gz", packed), ("top-1m.csv.zip", _zip(("top-1m.csv", RANKED))),
                       ("whatever.txt", packed),  # told by its first bytes, not its name
                       ("two-members.gz", gzip.compress(RANKED[:50_000], mtime=0) + gzip.compress(RANKED[50_000:])),
                       ("padded.gz", packed + b"\0" * 512)):
        (tmp_path / name).write_bytes(data)
        assert _domains(tmp_path / name) == NAMES, name


DAMAGED = [
    ("cut.gz", gzip.compress(RANKED, mtime=0)[:-100], "cannot read list {}: truncated gzip"),
    ("junk-after.gz", gzip.compress(RANKED, mtime=0) + b"not gzip", "cannot read list {}: damaged gzip"),
    ("flipped.gz", (lambda d: d[:40] + bytes([d[40] ^ 0xFF]) + d[41:])(gzip.compress(RANKED, mtime=0)),
     "cannot read list {}: damaged gzip"),
    ("two.zip", _zip(("a.csv", RANKED), ("b.csv", RANKED)), "cannot read list {}: a zip archive of 2 files"),
    ("cut.zip", _zip(("a.csv", RANKED))[:-30], "cannot read list {}: damaged zip archive"),
    ("latin1.gz", gzip.compress(b"caf\xe9.example\n", mtime=0),
     "cannot read list {}: not UTF-8 text (byte 3 is 0xe9, line 1)"),
]


@pytest.mark.parametrize("name,data,said", DAMAGED, ids=[case[0] for case in DAMAGED])
def test_a_damaged_archive_is_one_line(tmp_path: Path, name: str, data: bytes, said: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(UsageError) as e:
        _domains(path)
    assert said.format(path) in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_a_bomb_is_refused_having_inflated_no_more_than_the_cap(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.gz"
    squeezer = zlib.compressobj(9, zlib.DEFLATED, 31)
    with bomb.open("wb") as f:
        for _ in range(64):  # 64 MiB of zeros: 64 kB on disk
            f.write(squeezer.compress(b"\0" * (1 << 20)))
        f.write(squeezer.flush())
    assert bomb.stat().st_size < 1 << 17
    zipped = tmp_path / "bomb.zip"
    zipped.write_bytes(_zip(("a.csv", b"\0" * (64 << 20))))
    for path in (bomb, zipped):
        tracemalloc.start()
        try:
            with pytest.raises(BadInput, match=f"list {path} is larger than 4 MiB uncompressed: is it the right file"):
                read_bounded(path, 4 << 20, "list")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 16 << 20, f"{peak >> 20} MiB held to refuse {path.name}"  # not the 64 MiB it holds


def test_an_asn_table_as_iptoasn_publishes_it(tmp_path: Path) -> None:
    table = tmp_path / "ip2asn-v4.tsv.gz"
    table.write_bytes(gzip.compress(TABLE))
    plain = tmp_path / "ip2asn-v4.tsv"
    plain.write_bytes(TABLE)
    # the probe's --asn-table and analyze's: the same ranges as the plain file
    assert command._asn_table(str(table)).lookup("198.18.1.2") == command._asn_table(str(plain)).lookup("198.18.1.2")
    assert command._asn_table(str(table)).size == command._asn_table(str(plain)).size > 0
    saved = censoredplanet.os.environ.get(censoredplanet.ASN_TABLE_ENV)
    try:
        assert censoredplanet.use_asn_table(table) == censoredplanet.use_asn_table(plain) > 0
        cut = tmp_path / "cut.tsv.gz"
        cut.write_bytes(table.read_bytes()[:-50])
        with pytest.raises(ValueError, match=f"^{cut}: cannot read it: truncated gzip"):
            censoredplanet.use_asn_table(cut)
        with pytest.raises(UsageError, match=f"cannot read ASN table {cut}: truncated gzip"):
            command._asn_table(str(cut))
    finally:
        if saved is None:
            censoredplanet.os.environ.pop(censoredplanet.ASN_TABLE_ENV, None)
        else:
            censoredplanet.os.environ[censoredplanet.ASN_TABLE_ENV] = saved
