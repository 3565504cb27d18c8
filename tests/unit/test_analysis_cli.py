"""`tamperscope analyze`, `report` and `export`: exit codes, one-line messages, the --jsonl line shape."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest

from tamperscope.analysis import pipeline
from tamperscope.analysis.store import Store
from tamperscope.cli import main

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"
JSONL_KEYS = ["measurement_uid", "report_id", "input", "test_name", "probe_cc", "probe_asn", "blocking",
              "accessible", "x_mechanism", "x_confidence", "fingerprints"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tamperscope", *args], capture_output=True, text=True, timeout=300,
                          check=False)


def test_jsonl_line_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "v.jsonl"
    assert main(["analyze", str(SAMPLES), "--db", str(tmp_path / "s.duckdb"), "--jsonl", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 50
    for line in lines:
        assert list(line) == JSONL_KEYS
        assert isinstance(line["measurement_uid"], str) and line["test_name"] == "web_connectivity"
        assert line["blocking"] in (False, None, "dns", "tcp_ip", "http-failure", "http-diff")
        assert line["accessible"] in (True, False, None)
        assert line["x_confidence"] in ("confirmed", "anomaly", "failure", "ok")
        assert isinstance(line["fingerprints"], list)
        assert (line["x_confidence"] in ("confirmed", "anomaly")) == isinstance(line["blocking"], str)
    assert any(line["fingerprints"] == ["cp/f_gen_access_denied"] for line in lines)
    printed = capsys.readouterr().out
    assert "analyzed 50 measurements" in printed and "0 records skipped" in printed


def test_a_jsonl_that_cannot_be_written_is_one_line_and_the_store_keeps_the_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    from tamperscope.analysis import command
    from tamperscope.analysis.store import Store

    def full(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(command.os, "replace", full)
    db = tmp_path / "s.duckdb"
    out = tmp_path / "v.jsonl"
    assert main(["analyze", str(SAMPLES / "successWithHTTP"), "--db", str(db), "--jsonl", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"cannot write {tmp_path / 'v.jsonl'}: No space left on device; the verdicts are in the store" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tmp") == []  # no half-written file left
    store = Store(db, create=False)
    assert store.count("verdicts") == 1
    store.close()


def test_jsonl_to_a_pipe_closed_early_is_quiet(tmp_path: Path) -> None:
    """`analyze --jsonl - | head -1`: the reader closing the pipe is not an error."""
    sample = json.loads((SAMPLES / "successWithHTTP" / "measurement.json").read_text())
    # ~1,000 lines of output: more than a pipe holds, so the writer does meet the closed end
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(orjson.dumps(dict(sample, report_id=f"r{i}"))
                                                   for i in range(1000)))
    with subprocess.Popen([sys.executable, "-m", "tamperscope", "analyze", str(tmp_path / "in.jsonl"), "--db",
                           str(tmp_path / "s.duckdb"), "--jsonl", "-"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()  # as head does
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=300) == 0, err
    assert json.loads(first)["test_name"] == "web_connectivity"
    assert "Traceback" not in err and "Broken pipe" not in err and "analyzed 1,000 measurements" in err


def test_jsonl_follows_input_order_and_repeats(tmp_path: Path) -> None:
    names = ["successWithHTTP", "dnsBlockingNXDOMAIN", "successWithHTTP"]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(json.loads((SAMPLES / n / "measurement.json").read_text()))
                                for n in names))
    out = tmp_path / "v.jsonl"
    assert main(["analyze", str(path), "--db", str(tmp_path / "s.duckdb"), "--jsonl", str(out), "--quiet"]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["x_mechanism"] for line in lines] == ["none", "dns.nxdomain", "none"]
    assert lines[0]["measurement_uid"] == lines[2]["measurement_uid"]


def test_jsonl_to_stdout_keeps_the_summary_on_stderr(tmp_path: Path) -> None:
    r = _run("analyze", str(SAMPLES / "dnsBlockingNXDOMAIN"), "--db", str(tmp_path / "s.duckdb"), "--jsonl", "-")
    assert r.returncode == 0, r.stderr
    assert [list(json.loads(line)) for line in r.stdout.splitlines()] == [JSONL_KEYS]
    assert "analyzed 1 measurement in" in r.stderr


def test_bad_input_is_reported_with_reasons(tmp_path: Path) -> None:
    good = orjson.dumps(json.loads((SAMPLES / "successWithHTTP" / "measurement.json").read_text()))
    (tmp_path / "in.jsonl").write_bytes(b"\n".join([good, b"{oops", b"[1]", b'{"test_name": "x"}']))
    r = _run("analyze", str(tmp_path / "in.jsonl"), "--db", str(tmp_path / "s.duckdb"))
    assert r.returncode == 0, r.stderr
    assert "3 records skipped as bad input" in r.stdout
    for reason in ("corrupt_json", "wrong_type", "missing_field"):
        assert reason in r.stdout
    assert f"{tmp_path / 'in.jsonl'}:2:" in r.stdout  # where, for people to look


@pytest.mark.parametrize("args,message", [
    (["analyze", "{tmp}/nope"], "no such file or directory"),
    (["analyze", "{tmp}/empty"], "no measurement files"),
    (["analyze", "{samples}", "--workers", "0"], "--workers must be at least 1"),
    (["analyze", "{samples}", "--scheduler", "tcp://127.0.0.1:1"], "--scheduler needs --engine dask"),
    (["analyze", "{samples}", "--jsonl", "{tmp}/no/such/dir/out.jsonl"], "no such directory"),
    (["analyze", "{samples}", "--jsonl", "{tmp}/empty"], "is a directory"),
    (["report", "--db", "{tmp}/absent.duckdb"], "no store at"),
    (["report", "--db", "{tmp}/absent.duckdb", "--cc", "ZZZ"], "'ZZZ' is not a two-letter country code"),
    (["report", "--db", "{tmp}/absent.duckdb", "--asn", "ASX"], "'ASX' is not an AS number"),
    (["report", "--db", "{tmp}/absent.duckdb", "--limit", "99999999999999999999"], "--limit must be between 1"),
    (["report", "--db", "{tmp}/absent.duckdb", "--html", "{tmp}"], "is a directory"),
    (["report", "--db", "{tmp}/absent.duckdb", "--since", "2024-13-01"], "'2024-13-01' is not a date (YYYY-MM-DD)"),
    (["report", "--db", "{tmp}/absent.duckdb", "--since", "2024-03-02", "--until", "2024-03-01"],
     "--since 2024-03-02 is after --until 2024-03-01"),
    (["report", "--db", "{tmp}/absent.duckdb", "--test", "tor; DROP TABLE verdicts"], "is not a test name"),
    (["report", "--db", "{tmp}/absent.duckdb", "--domain", "http://x/"], "is not a domain name"),
    (["analyze", "{samples}", "--engine", "foo"], "invalid choice: 'foo'"),
    (["export", "--parquet", "{tmp}/out", "--db", "{tmp}/absent.duckdb"], "no store at"),
    (["export", "--parquet", "", "--db", "{tmp}/absent.duckdb"], "--parquet needs the name of a directory"),
    (["export", "--parquet", ".", "--db", "{tmp}/absent.duckdb"], "not the current one"),
    (["export", "--parquet", "{tmp}/no/such/dir", "--db", "{tmp}/absent.duckdb"], "no such directory"),
    (["analyze", "{samples}", "--workers", "100000"], "at most"),
    (["report", "--db", "{tmp}/absent.duckdb", "--json", "-", "--html", "-"], "both name standard output"),
])
def test_usage_errors_exit_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "empty").mkdir()
    argv = [a.format(tmp=tmp_path, samples=SAMPLES) for a in args]
    if argv[0] == "analyze" and "--db" not in argv:
        argv += ["--db", str(tmp_path / "s.duckdb")]
    r = _run(*argv)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "no").exists()


def test_unreachable_scheduler_exit_2(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    assert _run("analyze", str(SAMPLES / "successWithHTTP"), "--db", str(db)).returncode == 0
    for _ in range(2):
        r = _run("analyze", str(SAMPLES / "successWithHTTP"), "--db", str(db), "--engine", "dask",
                 "--scheduler", "tcp://127.0.0.1:9")
        assert r.returncode == 2, r.stderr
        assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in r.stderr
        assert "Traceback" not in r.stderr
    # a run that could not start leaves no row saying it began and never ended (QA: one a refused attempt)
    with Store(db, create=False) as store:
        assert store.con.execute("SELECT count(*), count(finished_at) FROM runs").fetchone() == (1, 1)


def test_a_scheduler_without_workers_is_one_line_not_a_silent_wait(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Every task waited for a worker that never came, and the run printed nothing (QA: killed after 60 s).
    from distributed import LocalCluster

    monkeypatch.setattr(pipeline, "WORKER_WAIT", 1.0)
    with LocalCluster(n_workers=0, processes=False, dashboard_address="127.0.0.1:0",
                      scheduler_kwargs={"dashboard": False}) as cluster, Store(tmp_path / "s.duckdb") as store:
        options = pipeline.Options(engine="dask", scheduler=cluster.scheduler_address)
        with pytest.raises(pipeline.EngineError, match="has no workers \\(waited 1 s\\): start one with `dask worker"):
            pipeline.run([str(SAMPLES / "successWithHTTP")], store, options)


def test_a_scheduler_address_that_is_not_dask_exits_2(tmp_path: Path) -> None:
    """Something else answers there (a web server): one line, exit 2, not Dask's MemoryError traceback."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer() -> None:
        server.settimeout(30)
        try:
            while True:
                conn, _ = server.accept()
                with conn:
                    conn.settimeout(5)
                    try:
                        conn.recv(65536)
                        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" + b"\xff" * 64)
                    except OSError:
                        pass
        except OSError:
            return

    threading.Thread(target=answer, daemon=True).start()
    try:
        r = _run("analyze", str(SAMPLES / "successWithHTTP"), "--db", str(tmp_path / "s.duckdb"), "--engine", "dask",
                 "--scheduler", f"tcp://127.0.0.1:{port}")
    finally:
        server.close()
    assert r.returncode == 2, r.stderr
    assert f"cannot use tcp://127.0.0.1:{port} as a Dask scheduler" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_report_filters_are_normalised_and_an_empty_match_says_so(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "s.duckdb")
    assert main(["analyze", str(SAMPLES), "--db", db]) == 0
    capsys.readouterr()
    for args, only in ((["--cc", "it"], "country IT"), (["--asn", "137"], "network AS137"),
                       (["--asn", "as137"], "network AS137")):
        assert main(["report", "--db", db, *args]) == 0
        assert capsys.readouterr().out.startswith(f"Only {only}.\n50 measurements on 2024-02-12"), args
    example = sum(urlsplit(json.loads(p.read_text()).get("input") or "").hostname == "www.example.com"
                  for p in SAMPLES.glob("*/measurement.json"))  # any scheme or port
    assert 0 < example < 50
    for args, first in ((["--test", "Web_Connectivity", "--since", "2024-02-12", "--until", "2024-02-12"],
                         "Only test web_connectivity, from 2024-02-12, until 2024-02-12.\n50 "),
                        (["--domain", "WWW.Example.com."], f"Only site www.example.com.\n{example} measurements "
                                                           "on 2024-02-12: 1 country, 1 network, "
                                                           "1 domain."),
                        (["--since", "2024-02-13"], "No ")):
        assert main(["report", "--db", db, *args]) == 0
        assert capsys.readouterr().out.startswith(first), args
    assert main(["report", "--db", db, "--test", "telegram", "--cc", "IT"]) == 0
    assert capsys.readouterr().out.startswith("No measurements match country IT, test telegram: the store has 50")
    assert main(["report", "--db", db, "--cc", "de", "--html", str(tmp_path / "r.html")]) == 0
    out = capsys.readouterr().out
    assert "No measurements match country DE: the store has 50" in out and "no measurements yet" not in out
    page = (tmp_path / "r.html").read_text()
    assert "<p class='summary'>No measurements match country DE.</p>" in page
    assert "<p class='selection'>Only country DE.</p>" in page


def test_an_idn_is_one_site_however_it_was_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Test lists write yandex's Russian site as https://яндекс.рф/ or https://xn--d1acpjx3f.xn--p1ai/:
    the store keeps one spelling, and --domain finds it under either (in an older store too)."""
    import duckdb

    m = json.loads((SAMPLES / "successWithHTTP" / "measurement.json").read_text())
    lines = [orjson.dumps(dict(m, input=url, report_id=url)) for url in
             ("https://яндекс.рф/", "https://xn--d1acpjx3f.xn--p1ai/", "https://XN--D1ACPJX3F.xn--p1ai./")]
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(lines))
    db = str(tmp_path / "s.duckdb")
    assert main(["analyze", str(tmp_path / "in.jsonl"), "--db", db]) == 0
    con = duckdb.connect(db)
    assert con.execute("SELECT DISTINCT domain FROM verdicts").fetchall() == [("яндекс.рф",)]
    con.execute("UPDATE verdicts SET domain = 'xn--d1acpjx3f.xn--p1ai' WHERE input = 'https://яндекс.рф/'")
    con.close()  # as an older tamperscope stored it
    capsys.readouterr()
    for spelling in ("xn--d1acpjx3f.xn--p1ai", "ЯНДЕКС.рф"):
        assert main(["report", "--db", db, "--domain", spelling]) == 0
        assert capsys.readouterr().out.startswith("Only site яндекс.рф (xn--d1acpjx3f.xn--p1ai).\n3 measurements"), spelling


def test_nothing_usable_exits_1(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "junk.jsonl.gz", "wb") as f:
        f.write(b"not json\n{}\n")
    r = _run("analyze", str(tmp_path), "--db", str(tmp_path / "s.duckdb"))
    assert r.returncode == 1
    assert "no usable measurement" in r.stderr and "Traceback" not in r.stderr


def test_newer_store_is_a_usage_error(tmp_path: Path) -> None:
    import duckdb

    db = tmp_path / "s.duckdb"
    assert main(["analyze", str(SAMPLES / "successWithHTTP"), "--db", str(db), "--quiet"]) == 0
    con = duckdb.connect(str(db))
    con.execute("INSERT INTO migrations VALUES (99, 'future', now()::TIMESTAMP)")
    con.close()
    r = _run("report", "--db", str(db))
    assert r.returncode == 2 and "newer than this tamperscope" in r.stderr


def test_report_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "s.duckdb"
    assert main(["analyze", str(SAMPLES), "--db", str(db), "--quiet"]) == 0
    capsys.readouterr()
    html = tmp_path / "report.html"
    assert main(["report", "--db", str(db), "--html", str(html)]) == 0
    text = capsys.readouterr().out
    for heading in ("Top blocked domains", "Top networks with interference", "Mechanisms"):
        assert heading in text
    assert "www.example.com" in text and "dns.nxdomain" in text
    assert html.stat().st_size > 1_000_000 and "Plotly.newPlot" in html.read_text()
    assert main(["export", "--parquet", str(tmp_path / "pq"), "--db", str(db)]) == 0
    assert "verdicts 50" in capsys.readouterr().out
    assert list((tmp_path / "pq" / "verdicts").glob("day=2024-02-12/probe_cc=IT/*.parquet"))


def test_default_store_is_under_the_data_dir(tmp_path: Path) -> None:
    env_home = tmp_path / "data"
    r = subprocess.run([sys.executable, "-m", "tamperscope", "analyze", str(SAMPLES / "successWithHTTP")],
                       capture_output=True, text=True, timeout=300, check=False,
                       env={"XDG_DATA_HOME": str(env_home), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert (env_home / "tamperscope" / "tamperscope.duckdb").is_file()
    assert str(env_home / "tamperscope" / "tamperscope.duckdb") in r.stdout


def test_help_says_what_each_command_writes() -> None:
    for command in ("analyze", "report", "export"):
        r = _run(command, "--help")
        assert r.returncode == 0
        assert "--db" in r.stdout
    assert "--engine" in _run("analyze", "--help").stdout and "--html" in _run("report", "--help").stdout


def test_a_store_out_of_memory_is_one_line_and_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from tamperscope.analysis import store as st

    monkeypatch.setattr(st, "INGEST_MEMORY_LIMIT", "1MB")
    opened = st.Store.__init__
    monkeypatch.setattr(st.Store, "__init__",  # a store whose own limit is the ingest cap: nothing to grow into
                        lambda self, *a, **k: opened(self, *a, **{**k, "memory_limit": "1MB"}))
    code = main(["analyze", str(SAMPLES), "--db", str(tmp_path / "s.duckdb"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("tamperscope: the store ran out of memory") and err.count("\n") == 1
    assert "Traceback" not in err


def test_devices_and_pipes_are_written_in_place_not_replaced(tmp_path: Path) -> None:
    """Renaming a temporary file over /dev/null (as root) or over a pipe another program reads would
    replace it for everyone and write nowhere: such targets are written in place."""
    import os
    import stat
    import threading

    db = tmp_path / "s.duckdb"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    r = _run("analyze", str(SAMPLES), "--db", str(db), "--jsonl", str(fifo))
    reader.join(60)
    assert r.returncode == 0, r.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and len(got[0].splitlines()) == 50
    r = _run("report", "--db", str(db), "--html", "/dev/null", "--json", "/dev/null")
    assert r.returncode == 0, r.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert not list(Path("/dev").glob(".null.*.tmp"))
    r = _run("report", "--db", str(db), "--html", "/dev/full")
    assert r.returncode == 1 and "cannot write /dev/full: No space left on device" in r.stderr
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_html_to_standard_output(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    assert _run("analyze", str(SAMPLES), "--db", str(db)).returncode == 0
    r = _run("report", "--db", str(db), "--html", "-")
    assert r.returncode == 0, r.stderr
    assert r.stdout.lower().startswith("<!doctype html>") and r.stdout.rstrip().endswith("</html>")
    assert "Top blocked domains" not in r.stdout and not (tmp_path / "-").exists() and not Path("-").exists()


@pytest.mark.parametrize("args", [["analyze", "{samples}"], ["report"], ["report", "--json", "-"],
                                  ["export", "--parquet", "{tmp}/pq"]])
def test_a_full_disk_under_standard_output_is_one_line(tmp_path: Path, args: list[str]) -> None:
    db = tmp_path / "s.duckdb"
    assert _run("analyze", str(SAMPLES / "successWithHTTP"), "--db", str(db)).returncode == 0
    argv = [a.format(tmp=tmp_path, samples=SAMPLES) for a in args] + ["--db", str(db)]
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "tamperscope", *argv], stdout=full, stderr=subprocess.PIPE,
                           text=True, timeout=300, check=False)
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip() == "tamperscope: No space left on device"


def test_a_jsonl_cut_by_a_full_disk_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import errno
    import io
    import os

    from tamperscope.analysis import command

    class Full(io.BytesIO):  # the disk fills on the first write, and closing (which flushes) fails as well
        def write(self, data: bytes) -> int:  # type: ignore[override]
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def close(self) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    real_open = open

    def fake_open(path: object, mode: str = "r", *args: object) -> object:
        if "w" in mode and str(path).endswith(".tmp"):
            real_open(path, mode).close()  # the temporary file exists, as on a real disk
            return Full()
        return real_open(path, mode, *args)  # type: ignore[call-overload]

    monkeypatch.setattr(command, "open", fake_open, raising=False)
    out = tmp_path / "v.jsonl"
    assert main(["analyze", str(SAMPLES / "successWithHTTP"), "--db", str(tmp_path / "s.duckdb"),
                 "--jsonl", str(out)]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == [] and not out.exists()


def test_names_from_the_input_are_printed_without_terminal_escapes(tmp_path: Path) -> None:
    bad = tmp_path / "x\x1b]0;PWNED\x07\x1b[2J\nevil.jsonl"
    bad.write_bytes(b"not json\n")
    r = _run("analyze", str(tmp_path), "--db", str(tmp_path / "s.duckdb"))
    assert r.returncode == 1
    example = next(line for line in r.stdout.splitlines() if "e.g." in line)
    assert "\x1b" not in r.stdout + r.stderr and "evil.jsonl:1" in example and "PWNED" in example


def test_a_file_name_that_is_not_utf8_is_analysed_and_remembered(tmp_path: Path) -> None:
    import os

    names = tmp_path / "names"
    names.mkdir()
    odd = os.path.join(os.fsencode(names), b"c\xff\xfe.json")
    with open(odd, "wb") as f:
        f.write((SAMPLES / "successWithHTTP" / "measurement.json").read_bytes())
    (names / "bad.jsonl").write_bytes(b"{}\n")
    db = str(tmp_path / "s.duckdb")
    first = _run("analyze", str(names), "--db", db)
    assert first.returncode == 0 and "analyzed 1 measurement" in first.stdout, first.stderr
    again = _run("analyze", str(names), "--db", db)
    assert again.returncode == 0 and "2 files skipped" in again.stdout, again.stderr
    named = subprocess.run([sys.executable, "-m", "tamperscope", "analyze", odd, "--db", db, "--reread"],
                           capture_output=True, text=True, timeout=300, check=False)
    assert named.returncode == 0 and "1 already in the store" in named.stdout, named.stderr


def test_a_full_disk_under_the_store_is_one_line_and_leaves_no_stray_raw_bytes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second transaction fails after its raw lines reached the segment (as a commit on a full disk
    does): one line, exit 1; the first transaction stays; the failed one's raw bytes are cut off again,
    so a run after space was freed leaves every raw byte pointed at."""
    import errno
    import os

    import duckdb

    from tamperscope.analysis import pipeline
    from tamperscope.analysis import store as st

    lines = [orjson.dumps(dict(json.loads(p.read_text()), report_id=f"r{i}"))
             for i, p in enumerate(sorted(SAMPLES.glob("*/measurement.json")) * 4)]
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    monkeypatch.setattr(st, "FLUSH_ROWS", 60)
    flush, calls = st.Store._flush, [0]

    def full_on_second(self: st.Store, *args: object, **kwargs: object) -> None:
        flush(self, *args, **kwargs)
        calls[0] += 1
        if calls[0] == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(st.Store, "_flush", full_on_second)
    db = tmp_path / "s.duckdb"
    small = pipeline.Options(batch_size=50)
    with st.Store(db) as store, pytest.raises(st.StoreError) as failed:
        store.begin_run()
        pipeline.run([str(tmp_path / "in.jsonl")], store, small)
    assert str(failed.value) == ("the store could not be written: No space left on device; what earlier "
                                 "transactions committed stays")

    def raw_is_all_pointed_at() -> int:
        con = duckdb.connect(str(db), read_only=True)
        rows = con.execute("SELECT raw_segment, max(raw_frame_offset + raw_frame_length), count(*) "
                           "FROM measurements GROUP BY 1").fetchall()
        con.close()
        for segment, end, _ in rows:
            assert (tmp_path / "s.raw" / segment).stat().st_size == end, segment
        return sum(n for *_, n in rows)

    assert raw_is_all_pointed_at() == 100  # the first transaction (two batches of 50), whole
    monkeypatch.setattr(st.Store, "_flush", flush)
    with st.Store(db) as store:
        store.begin_run()
        again = pipeline.run([str(tmp_path / "in.jsonl")], store, small)
    # the file was not marked as read: the lines of the failed transaction come back
    assert (again.files_known, again.new, again.duplicates) == (0, 100, 100), again
    assert raw_is_all_pointed_at() == 200


def test_a_store_held_by_another_process_names_it_and_what_to_do(tmp_path: Path) -> None:
    """DuckDB lets one process open a store; the message names the holder (PID and command, as `ps` would)
    so the user knows which to stop: a `tamperscope serve` left running is the usual one. (A short directory: the
    CLI shortens a message past 300 characters, and pytest's paths under xdist are long.)"""
    short = Path(tempfile.mkdtemp(prefix="ts-held-"))
    db = short / "s.duckdb"
    assert _run("analyze", str(SAMPLES), "--db", str(db)).returncode == 0
    holder = tmp_path / "bin" / "tamperscope"  # a program of that name, as the console script is
    holder.parent.mkdir()
    holder.write_text("import sys, duckdb\ncon = duckdb.connect(sys.argv[2])\nprint('open', flush=True)\n"
                      "sys.stdin.read()\n")
    with subprocess.Popen([sys.executable, str(holder), "serve", str(db), "--host", "0.0.0.0", "--port", "18555"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "open\n"
            done = _run("analyze", str(SAMPLES), "--db", str(db))
            assert done.returncode == 2
            assert done.stderr == (f"tamperscope: the store {db} is in use by another process (PID {proc.pid}: "
                                   f"tamperscope serve {db} --host 0.0.0.0 --port 18555); a store opens in one "
                                   "process at a time: stop that one, or use another --db\n")
            # a report is what the server gives too: where, narrowed as asked (a wildcard host is this machine)
            done = _run("report", "--db", str(db), "--cc", "ru", "--since", "2024-01-01")
            assert done.returncode == 2
            assert done.stderr == (f"tamperscope: the store {db} is in use by `tamperscope serve`, which gives this "
                                   "report at http://127.0.0.1:18555/api/v1/export/report.html?probe_cc=RU&since="
                                   "2024-01-01 (or stop it and run report again)\n")
        finally:
            proc.kill()
    with subprocess.Popen([sys.executable, str(holder), "export", str(db)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as proc:  # not a server: no address to give
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "open\n"
            done = _run("report", "--db", str(db))
            assert done.returncode == 2 and f"(PID {proc.pid}: tamperscope export {db})" in done.stderr
        finally:
            proc.kill()
    assert _run("report", "--db", str(db)).returncode == 0  # and once it stops, the store is whole
    shutil.rmtree(short)


def test_paths_sent_to_a_scheduler_are_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A worker started in another directory read a relative path from there (QA: 'No such file or directory:
    # in/a.jsonl', exit 0, 4 of 9 files stored). Here the worker is a thread of this process, in its directory;
    # what the store names is what the workers were sent.
    from distributed import LocalCluster

    (tmp_path / "in").mkdir()
    shutil.copy(SAMPLES / "successWithHTTP" / "measurement.json", tmp_path / "in" / "m.json")
    monkeypatch.chdir(tmp_path)
    with LocalCluster(n_workers=1, processes=False, protocol="tcp", dashboard_address="127.0.0.1:0",
                      scheduler_kwargs={"dashboard": False}) as cluster:
        assert cluster.scheduler_address.startswith("tcp://")
        code = main(["analyze", "in", "--db", "s.duckdb", "--engine", "dask", "--scheduler", cluster.scheduler_address,
                     "--quiet"])
    assert code == 0
    with Store(tmp_path / "s.duckdb", create=False) as store:
        sources = {r[0] for r in store.con.execute("SELECT DISTINCT source FROM measurements").fetchall()}
        paths = store.con.execute("SELECT paths FROM runs").fetchone()
    assert sources == {str(tmp_path / "in" / "m.json")}, sources
    assert paths == ([str(tmp_path / "in")],)
