"""`tamperscope analyze --reanalyse stale|all`: verdicts the store holds derived again from the raw measurements it
keeps, after an upgrade changed a rule or with fingerprints of one's own; and the note `analyze` and `report` print
while the store holds verdicts of an older release. Over real DuckDB stores and `tamperscope` processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from tamperscope.analysis import reanalysis
from tamperscope.analysis.store import Store
from tamperscope.analysis.verdicts import ANALYSIS_VERSION, FINGERPRINTS_ENV
from tests.unit.test_local_fingerprints import HEADER, _measurements

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != FINGERPRINTS_ENV}
    return subprocess.run([sys.executable, "-m", "tamperscope", *args], capture_output=True, text=True, timeout=300,
                          env=env)


def _verdicts(db: Path) -> dict[str, tuple]:
    with Store(db, create=False) as store:
        return {r[0]: r[1:] for r in store.con.execute(
            """SELECT measurement_uid, blocking, accessible, mechanism, outcome, fingerprints, analysis_version
               FROM verdicts""").fetchall()}


def _observations(db: Path) -> int:
    with Store(db, create=False) as store:
        return store.count("observations")


def test_an_upgrade_leaves_older_verdicts_until_reanalyse_stale_derives_them_again(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    res = _run("analyze", "--quiet", "--db", str(db), str(SAMPLES))
    assert res.returncode == 0, res.stderr
    assert "older analysis" not in res.stdout
    right = _verdicts(db)
    observed = _observations(db)
    assert len(right) == 50 and observed > 50
    # what an older release would have left: other verdicts, and no observations for them
    with Store(db) as store:
        older = [r[0] for r in store.con.execute(
            "SELECT measurement_uid FROM verdicts WHERE blocking = 'false' ORDER BY 1 LIMIT 7").fetchall()]
        assert len(older) == 7
        store.con.execute("""UPDATE verdicts SET analysis_version = '15', blocking = 'tcp_ip', mechanism = 'tcp.rst',
                             accessible = false WHERE measurement_uid IN (SELECT unnest(?::VARCHAR[]))""", [older])
        store.con.execute("UPDATE verdicts SET analysis_version = '16' WHERE measurement_uid = ?", [sorted(right)[-1]])
        store.con.execute("DELETE FROM observations WHERE measurement_uid IN (SELECT unnest(?::VARCHAR[]))", [older])
        # one frame read for many: the bytes are those `raw` gives one at a time
        assert store.raw_many(list(right)) == {u: store.raw(u) for u in right}
    assert _observations(db) < observed

    # told, by report and by a run of analyze
    report = _run("report", "--db", str(db))
    assert report.returncode == 0, report.stderr
    note = [line for line in report.stdout.splitlines() if line.startswith("note:")]
    assert note == ["note: the store holds 8 verdicts from an older analysis (version 15: 7, version 16: 1): "
                    "`tamperscope analyze --reanalyse stale` derives them again from the raw measurements"]
    assert json.loads(_run("report", "--db", str(db), "--json", "-").stdout)["older_verdicts"] == {"15": 7, "16": 1}
    again = _run("analyze", "--quiet", "--reread", "--db", str(db), str(SAMPLES))
    assert again.returncode == 0 and "50 already in the store" in again.stdout and note[0] in again.stdout
    assert _verdicts(db)[older[0]][0] == "tcp_ip"  # a measurement read again is not judged again

    res = _run("analyze", "--reanalyse", "stale", "--db", str(db))
    assert res.returncode == 0, res.stderr
    assert f"reanalysed 8 stale measurements with analysis {ANALYSIS_VERSION} in " in res.stdout
    assert ": 7 verdicts changed" in res.stdout  # the one of version 16 was right already
    assert _verdicts(db) == right
    assert _observations(db) == observed
    assert "note:" not in _run("report", "--db", str(db)).stdout
    assert json.loads(_run("report", "--db", str(db), "--json", "-").stdout)["older_verdicts"] == {}

    res = _run("analyze", "--reanalyse", "stale", "--db", str(db))
    assert res.returncode == 0 and res.stdout == (
        f"reanalyse: no stored verdict was derived by another analysis than {ANALYSIS_VERSION}: nothing to do\n")
    res = _run("analyze", "--reanalyze", "all", "--db", str(db))
    assert res.returncode == 0 and "reanalysed 50 measurements" in res.stdout and ": 0 verdicts changed" in res.stdout
    assert _verdicts(db) == right
    # in worker processes, the same
    with Store(db) as store:
        store.con.execute("UPDATE verdicts SET analysis_version = '15', mechanism = 'tcp.rst'")
    res = _run("analyze", "--reanalyse", "stale", "--workers", "2", "--db", str(db))
    assert res.returncode == 0 and "reanalysed 50 stale measurements" in res.stdout, res.stdout + res.stderr
    assert _verdicts(db) == right and _observations(db) == observed


def test_older_versions_come_in_the_order_of_releases_and_a_newer_release_is_told_apart(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    assert _run("analyze", "--quiet", "--db", str(db), str(SAMPLES)).returncode == 0
    current = int(ANALYSIS_VERSION)
    with Store(db) as store:
        uids = [r[0] for r in store.con.execute("SELECT measurement_uid FROM verdicts ORDER BY 1").fetchall()]
        for version, chosen in ((str(current - 1), uids[:3]), ("9", uids[3:5]), (f"{current + 1}", uids[5:6]),
                                (f"{current + 1}+local.ab12", uids[6:7]), (f"{current}+local.cd34", uids[7:8])):
            store.con.execute("UPDATE verdicts SET analysis_version = ? WHERE measurement_uid IN "
                              "(SELECT unnest(?::VARCHAR[]))", [version, chosen])
        # by release, not as text ("9" before "16"); fingerprints of one's own belong to their release
        assert list(reanalysis.older(store.con).items()) == [("9", 2), (str(current - 1), 3)]
        assert reanalysis.newer(store.con) == {str(current + 1): 1, f"{current + 1}+local.ab12": 1}
    report = _run("report", "--db", str(db))
    assert report.returncode == 0, report.stderr
    notes = [line for line in report.stdout.splitlines() if line.startswith("note:")]
    assert notes == [
        f"note: the store holds 5 verdicts from an older analysis (version 9: 2, version {current - 1}: 3): "
        "`tamperscope analyze --reanalyse stale` derives them again from the raw measurements",
        f"note: the store holds 2 verdicts from a newer analysis (version {current + 1}: 1, version "
        f"{current + 1}+local.ab12: 1), written by a later tamperscope than this one (version {current}); "
        "`--reanalyse stale` would derive them by these older rules"]
    document = json.loads(_run("report", "--db", str(db), "--json", "-").stdout)
    assert document["older_verdicts"] == {"9": 2, str(current - 1): 3}
    assert document["newer_verdicts"] == {str(current + 1): 1, f"{current + 1}+local.ab12": 1}


def _ru_store(tmp_path: Path) -> Path:
    data = tmp_path / "m.jsonl"
    data.write_bytes(b"\n".join(orjson.dumps(m) for m in _measurements()))
    db = tmp_path / "ru.duckdb"
    res = _run("analyze", "--quiet", "--db", str(db), str(data))
    assert res.returncode == 0, res.stderr
    return db


def test_fingerprints_of_ones_own_judge_what_was_stored_before(tmp_path: Path) -> None:
    db = _ru_store(tmp_path)
    assert sorted((v[2], v[4]) for v in _verdicts(db).values()) == [("http.blockpage", [])] + [("none", [])] * 3
    mine = tmp_path / "mine.csv"
    mine.write_text(HEADER + "isp_ru_example,Example Telecom,Example Telecom filtering service,body,,8,[],isp,"
                             "['RU'],ours\n")
    # the file reaches the worker processes too
    res = _run("analyze", "--fingerprints", str(mine), "--reanalyse", "stale", "--workers", "2", "--db", str(db))
    assert res.returncode == 0, res.stderr
    # three were judged accessible and are blockpages now; the fourth was a blockpage and gains its fingerprint
    assert "reanalysed 4 stale measurements" in res.stdout and ": 3 verdicts changed; 1 more kept its verdict " \
        "with other fingerprints" in res.stdout, res.stdout
    rows = _verdicts(db).values()
    assert {(v[2], v[3], tuple(v[4])) for v in rows} == {("http.blockpage", "confirmed", ("local/isp_ru_example",))}
    assert all(v[5].startswith(f"{ANALYSIS_VERSION}+local.") for v in rows)
    # fingerprints of one's own are not an older release: no note
    assert "note:" not in _run("report", "--db", str(db)).stdout
    # without the file, those verdicts are the stale ones
    res = _run("analyze", "--reanalyse", "stale", "--db", str(db))
    assert res.returncode == 0 and "reanalysed 4 stale measurements" in res.stdout
    assert sorted((v[2], v[4], v[5]) for v in _verdicts(db).values()) == (
        [("http.blockpage", [], ANALYSIS_VERSION)] + [("none", [], ANALYSIS_VERSION)] * 3)


def test_the_selection_options_narrow_it(tmp_path: Path) -> None:
    db = _ru_store(tmp_path)  # RU, AS1, web_connectivity, 2026-05-01 to 2026-05-04
    for args, count in ((["--since", "2026-05-03"], 2), (["--until", "2026-05-01"], 1),
                        (["--cc", "IT,RU", "--test", "web_connectivity"], 4), (["--cc", "IT"], 0),
                        (["--test", "telegram"], 0)):
        res = _run("analyze", "--reanalyse", "all", "--db", str(db), *args)
        assert res.returncode == 0, (args, res.stderr)
        if count:
            assert f"reanalysed {count} measurement" in res.stdout, (args, res.stdout)
        else:
            assert "nothing to do" in res.stdout and "store holds no verdict (" in res.stdout, (args, res.stdout)


def test_paths_and_reanalyse_together_and_jsonl_shows_what_the_store_now_says(tmp_path: Path) -> None:
    db = _ru_store(tmp_path)
    with Store(db) as store:
        store.con.execute("UPDATE verdicts SET analysis_version = '14', mechanism = 'dns.poison', blocking = 'dns'")
    out = tmp_path / "v.jsonl"
    res = _run("analyze", "--quiet", "--reread", "--reanalyse", "stale", "--jsonl", str(out), "--db", str(db),
               str(tmp_path / "m.jsonl"))
    assert res.returncode == 0, res.stderr
    assert "4 already in the store" in res.stdout and "reanalysed 4 stale measurements" in res.stdout
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(v["x_mechanism"] for v in lines) == ["http.blockpage", "none", "none", "none"]


def test_raw_bytes_damaged_in_place_are_said_to_be_so(tmp_path: Path) -> None:
    # A zstd frame holds no checksum: bytes changed in place can decompress to the size written and read as
    # another measurement. The summary said "their raw bytes are not in the store" (QA); it names the segment.
    db = _ru_store(tmp_path)
    with Store(db) as store:
        store.con.execute("UPDATE verdicts SET analysis_version = '14', mechanism = 'dns.poison'")
        frames = store.con.execute("SELECT DISTINCT raw_segment, raw_frame_offset, raw_frame_length, raw_frame_size "
                                   "FROM measurements").fetchall()
    assert len(frames) == 1 and frames[0][1] == 0  # one frame, the segment's whole
    segment, _, length, size = frames[0]
    path = tmp_path / "ru.raw" / segment
    assert path.stat().st_size == length
    data = bytes(pa.Codec("zstd").decompress(path.read_bytes(), decompressed_size=size, asbytes=True))
    assert data.count(b'"probe_cc":"RU"') == 4
    damaged = pa.Codec("zstd").compress(data.replace(b'"probe_cc":"RU"', b'"probe_cc":"UR"', 1), asbytes=True)
    path.write_bytes(damaged)  # what a damaged disk gives back, as the frame's pointers still say
    with Store(db) as store:
        store.con.execute("UPDATE measurements SET raw_frame_length = ?", [len(damaged)])
    before = _verdicts(db)
    res = _run("analyze", "--reanalyse", "stale", "--db", str(db))
    assert res.returncode == 1 and "reanalysed 3 stale measurements" in res.stdout, (res.stdout, res.stderr)
    assert res.stderr == (f"tamperscope: 1 measurement kept its older verdict: the raw segment {segment} of the "
                          "store is damaged: what it gives back no longer matches the measurements' uids\n")
    kept = [uid for uid, v in _verdicts(db).items() if v == before[uid]]
    assert len(kept) == 1


def test_raw_bytes_the_analysis_now_refuses_say_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tamperscope.analysis import pipeline
    db = _ru_store(tmp_path)

    def refuse(m: Any) -> Any:
        raise pipeline.Invalid("invalid_value", "a rule this version added")

    monkeypatch.setattr(pipeline, "envelope", refuse)
    with Store(db) as store:
        store.con.execute("UPDATE verdicts SET analysis_version = '14'")
        totals = reanalysis.reanalyse_all(store, reanalysis.pages(store.con, stale_only=True))
        assert totals.missing == 4 and totals.reanalysed == 0
        assert store.unreadable == {"refused": "the analysis now refuses what was stored (invalid_value: "
                                               "a rule this version added)"}


def test_raw_bytes_that_cannot_be_read_keep_their_verdicts_and_say_why(tmp_path: Path) -> None:
    db = _ru_store(tmp_path)
    with Store(db) as store:
        store.con.execute("UPDATE verdicts SET analysis_version = '14', mechanism = 'dns.poison'")
    before = _verdicts(db)
    shutil.move(tmp_path / "ru.raw", tmp_path / "elsewhere")
    res = _run("analyze", "--reanalyse", "stale", "--db", str(db))
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert res.stderr.startswith("tamperscope: 4 measurements kept their older verdict: the raw segment ")
    assert "cannot be read (No such file or directory)" in res.stderr
    assert _verdicts(db) == before
    shutil.move(tmp_path / "elsewhere", tmp_path / "ru.raw")
    res = _run("analyze", "--reanalyse", "stale", "--db", str(db))
    assert res.returncode == 0 and ": 4 verdicts changed" in res.stdout


def test_usage_errors_are_one_line(tmp_path: Path) -> None:
    db = _ru_store(tmp_path)
    for args, words in (
            (["--reanalyse", "stale", "--jsonl", str(tmp_path / "x.jsonl")], "--jsonl writes the verdicts"),
            (["--reanalyse", "often"], "invalid choice: 'often'"),
            (["--reanalyse", "all", "--since", "2026-05-04", "--until", "2026-05-01"], "is after --until"),
            ([], "--reanalyse stale"),
    ):
        res = _run("analyze", "--db", str(db), *args)
        assert res.returncode == 2, (args, res.stderr)
        assert words in res.stderr and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, args
    res = _run("analyze", "--reanalyse", "stale", "--db", str(tmp_path / "none.duckdb"))
    assert res.returncode == 2 and "no store at" in res.stderr
    assert not (tmp_path / "none.duckdb").exists()


def test_pages_visit_each_stale_uid_once_while_the_stale_set_shrinks(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    assert _run("analyze", "--quiet", "--db", str(db), str(SAMPLES)).returncode == 0
    with Store(db) as store:
        store.con.execute("UPDATE verdicts SET analysis_version = '9'")
        seen: list[str] = []

        def pages() -> Iterator[list[str]]:
            for page in reanalysis.pages(store.con, stale_only=True, size=7):
                assert len(page) <= 7
                seen.extend(page)
                yield page

        told: list[int] = []
        totals = reanalysis.reanalyse_all(store, pages(), progress=told.append)
        assert sorted(seen) == seen and len(set(seen)) == len(seen) == 50
        assert told == [*range(7, 50, 7), 50]
        assert totals.as_dict() == {"reanalysed": 50, "changed": 0, "missing": 0, "networks_named": 0,
                                    "fingerprinted": 0}
        assert reanalysis.count(store.con, stale_only=True) == 0 and reanalysis.older(store.con) == {}


def test_a_server_on_a_store_with_older_verdicts_says_so_at_start(tmp_path: Path) -> None:
    import signal
    import time
    import urllib.request

    from tamperscope.collector.testing import free_port
    from tests.unit.test_serve_interrupted_catch_up import said, start

    db = _ru_store(tmp_path)
    db.rename(tmp_path / "c.duckdb")
    (tmp_path / "ru.raw").rename(tmp_path / "c.raw")
    with Store(tmp_path / "c.duckdb") as store:
        store.con.execute("UPDATE verdicts SET analysis_version = '12'")
    port = free_port()
    proc = start(tmp_path, port)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=5) as r:
                assert r.status == 200
                break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    code, text = said(proc)
    assert code == 0, text
    assert ('tamperscope: note: the store holds 4 verdicts from an older analysis (version 12: 4): POST '
            '/api/v1/admin/reanalyse {"stale": true} (admin token) derives them again from the raw measurements'
            ) in text.splitlines()
