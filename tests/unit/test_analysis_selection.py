"""`tamperscope analyze --cc/--test/--since/--until`: only the selected measurements are analysed and
stored, the others are counted (not as bad input), and files whose place in OONI's archive names
another country or test are not opened at all, on every engine."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import orjson
import pytest

from tamperscope.analysis import pipeline, reader
from tamperscope.analysis.pipeline import Options, Selection
from tamperscope.analysis.store import Store

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"
COUNTRIES = ("IR", "RU", "TM")
DAYS = ("2024-01-30", "2024-02-01", "2024-02-03")


def _measurements() -> list[dict[str, Any]]:
    """Nine web_connectivity measurements per (country, day) and three telegram ones per country."""
    paths = sorted(p / "measurement.json" for p in SAMPLES.iterdir() if (p / "measurement.json").is_file())
    base = [json.loads(p.read_text(encoding="utf-8")) for p in paths[:9]]
    out = []
    for cc in COUNTRIES:
        for day in DAYS:
            for i, m in enumerate(base):
                out.append(dict(m, probe_cc=cc, report_id=f"{cc}{day}{i}", measurement_start_time=f"{day} 10:00:0{i}"))
        for i in range(3):
            out.append(dict(base[0], probe_cc=cc, test_name="telegram", input=None, report_id=f"tg{cc}{i}",
                            measurement_start_time=f"2024-02-01 11:00:0{i}",
                            test_keys={"telegram_http_blocking": False, "telegram_tcp_blocking": False,
                                       "telegram_web_status": "ok", "telegram_web_failure": None}))
    return out


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A corner of OONI's archive: raw/<day>/<hour>/<cc>/<test>/ with JSONL cans and postcans."""
    root = tmp_path_factory.mktemp("mirror")
    for m in _measurements():
        cc, test = m["probe_cc"], m["test_name"].replace("_", "")
        hour = root / "raw" / "20240203" / "12" / cc / test
        hour.mkdir(parents=True, exist_ok=True)
        with gzip.open(hour / f"2024020312_{cc}_{test}.n1.0.jsonl.gz", "ab") as f:
            f.write(orjson.dumps(m) + b"\n")
    # a postcan, and a file outside any layout that holds every country (read, then filtered by record)
    post = orjson.dumps({"format": "json", "content": dict(_measurements()[0], report_id="post")})
    can = root / "raw" / "20240203" / "13" / "IR" / "webconnectivity"
    can.mkdir(parents=True)
    with tarfile.open(can / "2024020313_IR_webconnectivity.n1.0.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("2024020313_IR_webconnectivity/0.post")
        info.size = len(post)
        tar.addfile(info, io.BytesIO(post))
    (root / "loose.jsonl").write_bytes(b"".join(orjson.dumps(dict(m, report_id="loose" + m["report_id"])) + b"\n"
                                                for m in _measurements()))
    return root


def _expected(selection: Selection) -> int:
    """How many of the mirror's measurements the selection admits, counted from the measurements themselves."""
    admitted = 0
    for m in [*_measurements(), *_measurements(), _measurements()[0]]:  # the cans, loose.jsonl, the postcan
        day = dt.date.fromisoformat(m["measurement_start_time"][:10])
        admitted += ((selection.probe_cc is None or m["probe_cc"] in selection.probe_cc)
                     and (selection.test_name is None or m["test_name"] in selection.test_name)
                     and (selection.since is None or day >= selection.since)
                     and (selection.until is None or day <= selection.until))
    return admitted


SELECTIONS = {
    "one country": Selection(probe_cc=frozenset({"IR"})),
    "two countries, one test": Selection(probe_cc=frozenset({"RU", "TM"}), test_name=frozenset({"telegram"})),
    "days": Selection(since=dt.date(2024, 2, 1), until=dt.date(2024, 2, 2)),
    "everything at once": Selection(probe_cc=frozenset({"IR"}), test_name=frozenset({"web_connectivity"}),
                                    since=dt.date(2024, 2, 1)),
}


@pytest.mark.parametrize("name", sorted(SELECTIONS))
def test_only_the_selection_is_stored_and_the_rest_counted(mirror: Path, tmp_path: Path, name: str) -> None:
    selection = SELECTIONS[name]
    with Store(tmp_path / "s.duckdb") as store:
        stats = pipeline.run([str(mirror)], store, Options(selection=selection))
        rows = store.con.execute("SELECT probe_cc, test_name, day FROM verdicts").fetchall()
    total = 2 * len(_measurements()) + 1
    assert stats.accepted == len(rows) == _expected(selection) > 0
    assert all(selection.admits(pipeline.Envelope(test, dt.datetime.combine(day, dt.time()), cc, "AS1", None, None))
               for cc, test, day in rows)
    assert stats.rejected == 0 and not stats.by_reason  # left out is not bad input
    # Kept, read and left out, and in files never opened: everything, each counted once.
    cans = [(m["probe_cc"], m["test_name"].replace("_", "")) for m in _measurements()] + [("IR", "webconnectivity")]
    unopened = sum(not selection.opens(f"raw/20240203/12/{cc}/{test}/x.jsonl.gz") for cc, test in cans)
    assert stats.records == total - unopened
    assert stats.accepted + stats.outside == stats.records


def test_files_of_other_countries_and_tests_are_not_opened(mirror: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    read_partition = reader.read_partition

    def spy(part: reader.Partition, *args: Any) -> Any:
        opened.append(part.path)
        return read_partition(part, *args)

    monkeypatch.setattr(reader, "read_partition", spy)
    with Store(tmp_path / "s.duckdb") as store:
        stats = pipeline.run([str(mirror)], store, Options(selection=SELECTIONS["two countries, one test"]))
    names = sorted(Path(p).name for p in opened)
    assert names == ["2024020312_RU_telegram.n1.0.jsonl.gz", "2024020312_TM_telegram.n1.0.jsonl.gz", "loose.jsonl"]
    assert stats.files_skipped == 5  # IR's two web_connectivity files and telegram, RU's and TM's web_connectivity


@pytest.mark.parametrize("engine,workers", [("local", 2), ("dask", 2)])
def test_every_engine_applies_the_selection_alike(mirror: Path, tmp_path: Path, engine: str, workers: int) -> None:
    selection = SELECTIONS["everything at once"]

    def uids(options: Options, db: str) -> tuple[list[str], int, int]:
        with Store(tmp_path / db) as store:
            stats = pipeline.run([str(mirror)], store, options)
            rows = store.con.execute("SELECT measurement_uid FROM verdicts ORDER BY 1").fetchall()
        return [r[0] for r in rows], stats.outside, stats.files_skipped

    local = uids(Options(selection=selection), "one.duckdb")
    other = uids(Options(engine=engine, workers=workers, selection=selection), f"{engine}.duckdb")
    assert other == local and len(local[0]) == _expected(selection)


def test_layout_reads_country_and_test_only_where_the_path_is_unambiguous() -> None:
    assert reader.layout("m/raw/20240203/12/IR/webconnectivity/2024020312_IR_webconnectivity.n1.0.tar.gz") == \
        ("IR", "webconnectivity")
    assert reader.layout("jsonl/web_connectivity/RU/20240203/12/x.jsonl.gz") == ("RU", "webconnectivity")
    assert reader.layout("2017-01-01/20170101T000010Z-TM-AS20661-tor-20170101T000007Z_AS20661_x-0.2.0-probe.json") \
        == ("TM", "tor")
    # a directory and a file name that disagree, no layout at all, a layout cut short: never pruned
    assert reader.layout("raw/20240203/12/IR/webconnectivity/2024020312_RU_webconnectivity.n1.0.tar.gz") == \
        (None, None)
    assert reader.layout("downloads/ir-measurements.jsonl") == (None, None)
    assert reader.layout("raw/20240203/12/IR") == (None, None)
    selection = Selection(probe_cc=frozenset({"IR"}), test_name=frozenset({"web_connectivity"}))
    assert selection.opens("raw/20240203/12/IR/webconnectivity/a.jsonl.gz")
    assert not selection.opens("raw/20240203/12/RU/webconnectivity/a.jsonl.gz")
    assert not selection.opens("raw/20240203/12/IR/telegram/a.jsonl.gz")
    assert selection.opens("anything/else.jsonl")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tamperscope", "analyze", *args], capture_output=True, text=True,
                          timeout=300, check=False)


def test_the_command_says_what_it_left_out(mirror: Path, tmp_path: Path) -> None:
    r = _cli(str(mirror / "raw"), "--db", str(tmp_path / "s.duckdb"), "--cc", "ir", "--cc", "ru,TM,IR", "--test",
             "telegram", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "analyzed 9 measurements" in r.stdout
    assert "selection: countries IR, RU, TM; test telegram: 0 other measurements read and left out; " \
           "4 files of OONI's archive not opened" in r.stdout

    r = _cli(str(mirror / "raw"), "--db", str(tmp_path / "u.duckdb"), "--test", "telegram", "--test", "telegram",
             "--quiet")
    assert r.returncode == 0 and "selection: test telegram:" in r.stdout  # once, in the singular

    r = _cli(str(mirror / "raw"), "--db", str(tmp_path / "t.duckdb"), "--test", "tor", "--quiet")
    assert r.returncode == 1 and "no measurement in the input matches the selection" in r.stderr


@pytest.mark.parametrize("args,message", [
    (["--cc", "Iran"], "is not a two-letter country code"),
    (["--test", "web connectivity"], "is not a test name"),
    (["--since", "2024-02-31"], "is not a date"),
    (["--since", "2024-02-03", "--until", "2024-02-01"], "is after --until"),
])
def test_a_bad_selection_is_a_usage_error(mirror: Path, tmp_path: Path, args: list[str], message: str) -> None:
    r = _cli(str(mirror), "--db", str(tmp_path / "s.duckdb"), *args)
    assert r.returncode == 2 and message in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "s.duckdb").exists()
