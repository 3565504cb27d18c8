"""Censored Planet's Hyperquack lines read by `tamperscope analyze` as remote_web measurements: each probe's
records, the verdicts the remote_web rules reach from them, a tarball as Censored Planet publishes it, what the
store keeps, the report's blockpages no fingerprint knows, and the explorer's page of one. Real DuckDB stores,
`tamperscope` processes and the explorer app in-process."""

from __future__ import annotations

import io
import json
import os
import random
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tamperscope.analysis import censoredplanet, pipeline, scans
from tamperscope.analysis.reader import Line
from tamperscope.analysis.store import Store
from tamperscope.analysis.verdicts import default_matcher, verdict_for
from tamperscope.collector.config import Settings
from tamperscope.collector.testing import running_app
from tamperscope.model.failures import from_go

BLOCKPAGES = Path(__file__).resolve().parents[3] / "shared" / "data" / "blockpages" / "citizenlab"
BELTELECOM = (BLOCKPAGES / "blockpage_meta_isp_by_beltelecom_block.html").read_text(errors="replace")
RESET = "read tcp 10.0.0.1:40000->198.18.9.7:443: read: connection reset by peer"
UNKNOWN_PAGE = ("<html><head><title>Access restricted by order</title></head><body><h1>Access restricted</h1>"
                "<p>This resource is restricted by the decision of an authority of the Republic.</p></body></html>")


def _control(second: int) -> dict[str, Any]:
    return {"matches_template": True, "control_url": "control-a459b35b8d53c7eb.com",
            "start_time": f"2021-05-30T01:02:{second:02d}.620124638-04:00",
            "end_time": f"2021-05-30T01:02:{second:02d}.990201235-04:00"}


def _probe(second: int, **fields: Any) -> dict[str, Any]:
    return {"matches_template": False, "start_time": f"2021-05-30T01:02:{second:02d}.100000001-04:00",
            "end_time": f"2021-05-30T01:02:{second:02d}.900000001-04:00", **fields}


def _line(service: str, probes: list[dict[str, Any]], domain: str = "example.org", vp: str = "198.18.9.7",
          cc: str = "BY", **fields: Any) -> dict[str, Any]:
    return {"vp": vp, "location": {"country_name": "Belarus", "country_code": cc}, "service": service,
            "test_url": domain, "response": probes, "anomaly": True, "controls_failed": False,
            "stateful_block": False, "tag": "2021-05-30T01:01:01", **fields}


def _page(status: str, body: str) -> dict[str, Any]:
    return {"status_line": status, "headers": {"Content-Type": ["text/html"], "Server": ["nginx"]}, "body": body}


CASES: dict[str, tuple[dict[str, Any], tuple[str, str, float]]] = {
    "a known blockpage": (_line("http", [_control(1), _probe(2, response=_page("200 OK", BELTELECOM)), _control(3)]),
                          ("anomaly", "http.blockpage", 0.95)),
    "another page than the template": (
        _line("http", [_control(1), _probe(2, response=_page("403 Forbidden", UNKNOWN_PAGE)), _control(3)]),
        ("anomaly", "http.blockpage", 0.5)),
    "the template": (_line("https", [_control(1), {**_probe(2), "matches_template": True}, _control(3)]),
                     ("ok", "none", 0.85)),
    "a reset in the handshake": (_line("https", [_control(1), _probe(2, error=RESET), _probe(3, error=RESET),
                                                 _control(4)]), ("anomaly", "tls.rst", 0.9)),
    "silence after the request": (
        _line("http", [_control(1), _probe(2, error="net/http: request canceled (Client.Timeout exceeded while "
                                                    "awaiting headers)"), _control(4)]),
        ("anomaly", "http.drop", 0.75)),
    "the measurer's own failure at the connect": (
        _line("http", [_control(1), _probe(2, error="dial tcp 0.0.0.0:0->198.18.9.7:80: bind: address already in use"),
                       _control(4)]), ("failure", "none", 0.0)),
    "an echo altered on the way": (_line("echo", [_control(1), _probe(2, response="HTTP/1.1 403 Forbidden"),
                                                  _control(3)]), ("anomaly", "middlebox", 0.6)),
    "a discard reset": (_line("discard", [_control(1), _probe(2, response="", error=RESET.replace(":443", ":9")),
                                          _control(3)]), ("anomaly", "http.rst", 0.9)),
    "the controls failed": (_line("http", [{**_control(1), "matches_template": False, "error": "i/o timeout"},
                                           _probe(2, error="i/o timeout")], controls_failed=True),
                            ("failure", "none", 0.0)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_kind_of_probe_reaches_the_remote_web_verdict(case: str) -> None:
    line, (status, mechanism, confidence) = CASES[case]
    m = censoredplanet.convert(line)
    assert (m["test_name"], m["input"], m["probe_cc"], m["measurement_start_time"]) == (
        "remote_web", "example.org", "BY", "2021-05-30 05:02:01")  # UTC
    verdict = verdict_for(m, default_matcher())
    assert (verdict.status, verdict.mechanism, verdict.confidence) == (status, mechanism, confidence), verdict
    assert ("cl/isp_by_beltelecom_block" in verdict.fingerprints) == (case == "a known blockpage")


def test_the_records_of_one_line() -> None:
    line, _ = CASES["a reset in the handshake"]
    tk = censoredplanet.convert(line)["test_keys"]
    assert (tk["vantage"], tk["domain"], tk["control_domain"], tk["protocols"]) == (
        "198.18.9.7", "example.org", "control-a459b35b8d53c7eb.com", ["https"])
    assert [r["tags"] for r in tk["tcp_connect"]] == [
        ["https", "vantage_before"], ["https", "test"], ["https", "test"], ["https", "vantage_after"]]
    assert [r["transaction_id"] for r in tk["tcp_connect"]] == [1, 2, 3, 4]
    assert [(h["server_name"], h["failure"]) for h in tk["tls_handshakes"]] == [
        ("control-a459b35b8d53c7eb.com", None), ("example.org", "connection_reset"),
        ("example.org", "connection_reset"), ("control-a459b35b8d53c7eb.com", None)]
    assert tk["tls_handshakes"][1]["t0"] == pytest.approx(0.479876)  # seconds after the first probe
    assert tk["x_censoredplanet"] == {"format": "hyperquack-v2", "service": "https", "anomaly": True,
                                      "controls_failed": False, "stateful_block": False,
                                      "tag": "2021-05-30T01:01:01", "country_name": "Belarus"}


def test_a_status_line_in_other_digits_has_no_code() -> None:
    for status in ("²²² OK", "٣٠٠ Moved", "HTTP/1.1 ٢٠٠ OK"):
        line = _line("http", [_control(1), _probe(2, response=_page(status, UNKNOWN_PAGE)), _control(3)])
        (request,) = [r for r in censoredplanet.convert(line)["test_keys"]["requests"] if "test" in r["tags"]]
        assert request["response"]["code"] is None and request["response"]["x_status_line"] == status


def test_a_service_on_another_port_is_read_with_its_port() -> None:
    line, (status, mechanism, _) = CASES["an echo altered on the way"]
    m = censoredplanet.convert({**line, "service": "echo:8080"})
    tk = m["test_keys"]
    assert {r["port"] for r in tk["tcp_connect"]} == {8080} and tk["protocols"] == ["echo"]
    assert tk["x_censoredplanet"]["service"] == "echo:8080"  # as Censored Planet wrote it
    verdict = verdict_for(m, default_matcher())
    assert (verdict.status, verdict.mechanism) == (status, mechanism)
    line, _ = CASES["a reset in the handshake"]
    tk = censoredplanet.convert({**line, "service": "https:8443"})["test_keys"]
    assert {h["address"] for h in tk["tls_handshakes"]} == {"198.18.9.7:8443"}
    for odd in ("echo:", "echo:0", "echo:65536", "echo:123456", "echo:８０", "echo:-1", "gopher:70", ":80"):
        with pytest.raises(censoredplanet.Unreadable, match="is none of http, https, echo, discard"):
            censoredplanet.convert({**line, "service": odd})


def test_asn_table_usage_errors_are_one_line(tmp_path: Path) -> None:
    scan, _ = _corpus(tmp_path)
    junk = tmp_path / "junk.tsv"
    junk.write_text("not a table\n")
    empty = tmp_path / "empty.tsv"
    empty.write_text("# nothing\n")
    for table, said in ((tmp_path / "none.tsv", "none.tsv: cannot read it: No such file or directory"),
                        (junk, "junk.tsv: line 1: expected range_start, range_end, AS number, country, description"),
                        (empty, "empty.tsv: no IPv4 range in it")):
        res = _run("analyze", "--db", str(tmp_path / "x.duckdb"), "--asn-table", str(table), str(scan))
        assert res.returncode == 2 and said in res.stderr and len(res.stderr.splitlines()) == 1, res.stderr
    res = _run("analyze", "--db", str(tmp_path / "x.duckdb"), "--asn-table", str(empty), "--engine", "dask",
               "--scheduler", "tcp://198.18.0.1:8786", str(scan))
    assert res.returncode == 2 and "--asn-table and --scheduler" in res.stderr, res.stderr
    res = _run("analyze", "--db", str(tmp_path / "x.duckdb"), str(scan), env={"TAMPERSCOPE_ASN_TABLE": str(junk)})
    assert res.returncode == 2 and res.stderr.startswith("tamperscope: $TAMPERSCOPE_ASN_TABLE ("), res.stderr
    assert not (tmp_path / "x.duckdb").exists()


def test_go_errors_become_oonis_failure_strings() -> None:
    assert [from_go(t) for t in (RESET, "EOF", 'Get "http://example.org/": EOF', "i/o timeout",
                                 "dial tcp 198.18.9.7:80: connect: connection refused",
                                 "remote error: tls: handshake failure",
                                 "x509: certificate is valid for a.example, not example.org",
                                 "Incorrect echo response", "net/http: TLS handshake timeout")] == [
        "connection_reset", "eof_error", "eof_error", "generic_timeout_error", "connection_refused",
        "ssl_failed_handshake", "ssl_invalid_hostname", "unknown_failure: Incorrect echo response",
        "generic_timeout_error"]


def _archive(path: Path, members: dict[str, bytes]) -> Path:
    """A gzipped tar archive at ``path`` holding ``members`` (name: content) in that order, as Censored Planet
    publishes its scans."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tamperscope", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def _tarball(path: Path, lines: list[bytes]) -> Path:
    """A scan as Censored Planet publishes it: a tar.gz holding the scan's results.json, one line per measurement."""
    return _archive(path, {"CP_Quack-http-2021-05-30-01-01-01/results.json": b"\n".join(lines) + b"\n"})


def _corpus(tmp_path: Path) -> tuple[Path, list[bytes]]:
    good = [orjson.dumps(line) for line, _ in CASES.values()]
    # the same page from a second vantage and for another domain: one template, two measurements
    good.append(orjson.dumps(_line("http", [_control(1), _probe(2, response=_page("403 Forbidden", UNKNOWN_PAGE)),
                                            _control(3)], domain="news.example", vp="198.18.9.8")))
    bad = [orjson.dumps(_line("http", [_control(1)], vp="not-an-address")),  # no vantage
           orjson.dumps({"Server": "198.18.9.7", "Keyword": "example.org", "Retries": 0, "Results": [],
                         "Blocked": False, "FailSanity": False, "StatefulBlock": False}),  # Hyperquack v1
           orjson.dumps(_line("ftp", [_control(1)]))]
    return _tarball(tmp_path / "CP_Quack-http-2021-05-30-01-01-01.tar.gz", good[:4] + bad + good[4:]), good


def test_a_scan_read_without_an_asn_table_gets_its_networks_from_a_reanalysis_with_one(tmp_path: Path) -> None:
    scan, good = _corpus(tmp_path)
    db = tmp_path / "cp.duckdb"
    res = _run("analyze", "--db", str(db), str(scan), env={"TAMPERSCOPE_ASN_TABLE": ""})
    assert "analyzed 10 measurements" in res.stdout, res.stdout + res.stderr

    def networks() -> tuple[set[tuple[Any, ...]], ...]:
        with Store(db, create=False) as store:
            return tuple(set(store.con.execute(f"SELECT DISTINCT probe_asn, probe_network_name FROM {t}").fetchall())
                         for t in ("measurements", "verdicts")) + (
                set(store.con.execute("SELECT DISTINCT probe_asn FROM anomaly_groups").fetchall()),)

    assert networks() == ({("AS0", None)}, {("AS0", None)}, set())  # AS0 makes no group: it is no network
    before = json.loads(_run("report", "--db", str(db), "--json", "-").stdout)
    table = tmp_path / "asn.tsv"
    table.write_text("198.18.9.0\t198.18.9.255\t64500\tBY\tEXAMPLE-NET\n")
    # read again with the table: copies, said to name networks the store does not take
    again = _run("analyze", "--reread", "--db", str(db), "--asn-table", str(table), str(scan))
    assert "0 new, 10 already in the store" in again.stdout, again.stdout + again.stderr
    assert "networks: 10 measurements already stored without one (AS0), read now with one" in again.stdout
    assert networks() == ({("AS0", None)}, {("AS0", None)}, set())
    redo = _run("analyze", "--reanalyse", "all", "--db", str(db), "--asn-table", str(table))
    assert redo.returncode == 0 and "reanalysed 10 measurements" in redo.stdout, redo.stdout + redo.stderr
    assert ": 0 verdicts changed" in redo.stdout
    assert "networks: 10 measurements stored without one (AS0: read without an ASN table) now on the network the " \
           "ASN table names" in redo.stdout, redo.stdout
    # the measurement rows, the verdicts and the groups of repeats: AS0's left, the network's made
    assert networks() == ({("AS64500", "EXAMPLE-NET")}, {("AS64500", "EXAMPLE-NET")}, {("AS64500",)})
    after = json.loads(_run("report", "--db", str(db), "--json", "-").stdout)
    assert (before["totals"]["network_count"], before["totals"]["unknown_network_count"]) == (0, 10)
    assert (after["totals"]["network_count"], after["totals"]["unknown_network_count"]) == (1, 0)
    assert [n["probe_asn"] for n in after["networks"]] == ["AS64500"]
    # the same measurements, the same verdicts, now confirmable by a repeat on a network (AS0 confirms nothing):
    # the two blockpages on example.org; the store is the one a first reading with the table makes
    assert after["totals"]["measurement_count"] == before["totals"]["measurement_count"] == 10
    assert after["totals"]["anomaly_count"] == before["totals"]["anomaly_count"]
    assert (before["totals"]["confirmed_count"], after["totals"]["confirmed_count"]) == (1, 2)
    first = tmp_path / "first.duckdb"
    assert _run("analyze", "--db", str(first), "--asn-table", str(table), str(scan)).returncode == 0

    def rows(path: Path) -> tuple[list[tuple[Any, ...]], ...]:
        with Store(path, create=False) as store:
            return tuple(sorted(store.con.execute(q).fetchall()) for q in (
                "SELECT measurement_uid, probe_asn, probe_network_name, mechanism, outcome, confidence FROM verdicts",
                "SELECT measurement_uid, probe_cc, probe_asn, probe_network_name FROM measurements",
                "SELECT * FROM anomaly_groups"))

    assert rows(db) == rows(first)
    # a network named stays, with or without a table; another table does not rename it
    other = tmp_path / "other.tsv"
    other.write_text("198.18.9.0\t198.18.9.255\t64511\tBY\tOTHER-NET\n")
    for env in ({"TAMPERSCOPE_ASN_TABLE": ""}, {"TAMPERSCOPE_ASN_TABLE": str(other)}):
        redo = _run("analyze", "--reanalyse", "all", "--db", str(db), env=env)
        assert redo.returncode == 0 and "networks:" not in redo.stdout, redo.stdout + redo.stderr
        assert networks() == ({("AS64500", "EXAMPLE-NET")}, {("AS64500", "EXAMPLE-NET")}, {("AS64500",)})
    again = _run("analyze", "--reread", "--db", str(db), "--asn-table", str(other), str(scan))
    assert "10 already in the store" in again.stdout and "networks:" not in again.stdout, again.stdout


def test_a_satellite_v1_line_stored_as_zz_gets_its_country_and_network_from_a_reanalysis(tmp_path: Path) -> None:
    # Without its scan's tagged_resolvers.json or a table, a v1 line is ZZ and AS0, and its uid says ZZ. With a
    # table, the re-derived uid said RU: it matched no stored uid, and the re-analysis said the raw bytes were
    # missing (exit 1). Its rows keep the stored uid now, and take the table's country and network.
    lines = [orjson.dumps(censoredplanet.published(line)) for line, _ in SV1_CASES.values()]
    raw = tmp_path / V1_SCAN / "raw"
    raw.mkdir(parents=True)
    (raw / "interference.json").write_bytes(b"\n".join(lines) + b"\n")
    db, jsonl = tmp_path / "s.duckdb", tmp_path / "v.jsonl"
    res = _run("analyze", "--db", str(db), "--jsonl", str(jsonl), str(tmp_path / V1_SCAN),
               env={"TAMPERSCOPE_ASN_TABLE": ""})
    assert res.returncode == 0, res.stdout + res.stderr
    uids = sorted(json.loads(x)["measurement_uid"] for x in jsonl.read_text().splitlines())
    assert len(uids) == len(lines) and all("_ZZ_" in u for u in uids)
    table = tmp_path / "asn.tsv"
    table.write_text("198.18.8.0\t198.18.8.255\t64500\tRU\tEXAMPLE-NET\n")
    redo = _run("analyze", "--reanalyse", "all", "--db", str(db), "--asn-table", str(table))
    assert redo.returncode == 0 and redo.stderr == "", redo.stdout + redo.stderr
    assert f"reanalysed {len(lines)} measurements" in redo.stdout and ": 0 verdicts changed" in redo.stdout
    assert f"networks: {len(lines)} measurements stored without one" in redo.stdout, redo.stdout
    with Store(db, create=False) as store:
        for t in ("measurements", "verdicts"):
            assert sorted(store.con.execute(f"SELECT measurement_uid, probe_cc, probe_asn, probe_network_name "
                                            f"FROM {t}").fetchall()) == [
                (u, "RU", "AS64500", "EXAMPLE-NET") for u in uids], t
        obs = store.con.execute("SELECT count(DISTINCT measurement_uid), count(*) FILTER (WHERE measurement_uid "
                                "NOT IN (SELECT measurement_uid FROM measurements)) FROM observations").fetchone()
        assert obs == (len(lines), 0)
    # again without the table (the re-derived uid says ZZ once more): they keep what they were given
    redo = _run("analyze", "--reanalyse", "all", "--db", str(db), env={"TAMPERSCOPE_ASN_TABLE": ""})
    assert redo.returncode == 0 and "networks:" not in redo.stdout, redo.stdout + redo.stderr
    with Store(db, create=False) as store:
        for t in ("measurements", "verdicts"):
            assert set(store.con.execute(f"SELECT probe_cc, probe_asn FROM {t}").fetchall()) == {("RU", "AS64500")}
    # read again with the table: the same measurements, under the uids they were stored with
    again = _run("analyze", "--reread", "--db", str(db), "--jsonl", str(jsonl), "--asn-table", str(table),
                 str(tmp_path / V1_SCAN))
    assert f"0 new, {len(lines)} already in the store" in again.stdout, again.stdout + again.stderr
    assert f"{len(lines)} measurements already read under another uid" in again.stdout
    assert sorted((r["measurement_uid"], r["probe_cc"]) for r in map(json.loads, jsonl.read_text().splitlines())) \
        == [(u, "RU") for u in uids]


def test_analyze_reads_a_published_scan_keeps_its_lines_and_judges_them_again(tmp_path: Path) -> None:
    scan, good = _corpus(tmp_path)
    db, jsonl = tmp_path / "cp.duckdb", tmp_path / "v.jsonl"
    table = tmp_path / "asn.tsv"
    table.write_text("198.18.9.0\t198.18.9.255\t64500\tBY\tEXAMPLE-NET\n")
    res = _run("analyze", "--db", str(db), "--jsonl", str(jsonl), "--asn-table", str(table), str(scan))
    assert res.returncode == 0, res.stderr
    assert "analyzed 10 measurements" in res.stdout and "10 new" in res.stdout, res.stdout
    assert "3 records skipped as bad input" in res.stdout
    assert "results.json:5: censoredplanet: vp is not an IP address" in res.stdout
    assert "results.json:6: censoredplanet: no probe in Results" in res.stdout  # a Hyperquack v1 line, empty
    assert "results.json:7: censoredplanet: service 'ftp' is none of http, https, echo, discard" in res.stdout
    rows = [json.loads(x) for x in jsonl.read_text().splitlines()]
    by_input = {}
    for r in rows:
        by_input.setdefault(r["input"], []).append(r)
    assert {r["test_name"] for r in rows} == {"remote_web"} and len(rows) == 10
    assert {r["probe_asn"] for r in rows} == {"AS64500"}  # the vantage's network, from the table
    assert sorted(r["x_mechanism"] for r in by_input["example.org"]) == sorted(
        mechanism for _, (_, mechanism, _) in CASES.values())
    with Store(db, create=False) as store:
        uids = [r[0] for r in store.con.execute("SELECT measurement_uid FROM measurements ORDER BY 1").fetchall()]
        kept = {store.raw(u) for u in uids}
        assert kept == set(good)  # the lines as published, byte for byte
        network = store.con.execute("SELECT DISTINCT probe_network_name FROM verdicts").fetchall()
        assert network == [("EXAMPLE-NET",)]
    # read again: the same uids, nothing new; derived again from the kept lines: the same verdicts
    again = _run("analyze", "--reread", "--db", str(db), str(scan), env={"TAMPERSCOPE_ASN_TABLE": str(table)})
    assert "0 new" in again.stdout and "10 already in the store" in again.stdout, again.stdout
    redo = _run("analyze", "--reanalyse", "all", "--workers", "2", "--db", str(db),
                env={"TAMPERSCOPE_ASN_TABLE": str(table)})
    assert redo.returncode == 0 and "reanalysed 10 measurements" in redo.stdout, redo.stdout + redo.stderr
    assert ": 0 verdicts changed" in redo.stdout
    # and without the table: the networks the lines were stored with stay
    redo = _run("analyze", "--reanalyse", "all", "--db", str(db), env={"TAMPERSCOPE_ASN_TABLE": ""})
    assert redo.returncode == 0 and ": 0 verdicts changed" in redo.stdout, redo.stdout + redo.stderr
    with Store(db, create=False) as store:
        assert store.con.execute("SELECT DISTINCT probe_asn, probe_network_name FROM verdicts").fetchall() == [
            ("AS64500", "EXAMPLE-NET")]

    # the page no fingerprint knows, from two vantages: one template in the report, a fingerprint proposed
    report = json.loads(_run("report", "--db", str(db), "--json", "-").stdout)
    (group,) = report["new_blockpages"]
    assert group["title"] == "Access restricted by order" and group["measurement_count"] == 2
    assert group["domain_count"] == 2 and group["countries"] == "BY"

    # the explorer's page of one: the evidence read from the converted records, the line shown as published
    uid = next(r["measurement_uid"] for r in by_input["example.org"] if r["x_mechanism"] == "tls.rst")
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0)) as client:
        page = client.get(f"/m/{uid}")
        assert page.status_code == 200
        html = page.text
        assert "tls.rst" in html and "connection_reset" in html
        assert "AS64500" in html and "EXAMPLE-NET" in html  # the network analyze found, not the line's none
        said = html[html.index('<dd id="censoredplanet">'):]
        assert said.startswith('<dd id="censoredplanet">anomaly: yes; controls failed: no; stateful block: no ')
        assert "(its own judgement, in the line: hyperquack-v2;" in said
        assert "A line of Censored Planet's data, shown as it was published" in html
        assert "records of the <code>remote_web</code> measurement" in html
        assert "vp&#34;: &#34;198.18.9.7" in html  # the line itself, escaped
        twin = client.get(f"/m/{uid}.json").json()
        assert twin["envelope"]["test_name"] == "remote_web" and twin["converted"] is True
        assert twin["envelope"]["probe_asn"] == "AS64500"


# --------------------------------------------------------------------------- Satellite v2.2 (DNS)


def _trial(second: int, url: str, answers: dict[str, list[str]] | None = None, rcode: int = 0,
           error: str | None = None) -> dict[str, Any]:
    return {"url": url, "has_type_a": bool(answers), "rcode": rcode, "error": error,
            "response": {ip: {"http": "ab12", "cert": "", "asname": "EXAMPLE", "asnum": 64511, "matched": tags}
                         for ip, tags in (answers or {}).items()},
            "start_time": f"2022-03-01T10:00:{second:02d}.5-05:00",
            "end_time": f"2022-03-01T10:00:{second:02d}.6-05:00"}


CONTROL = "control-1e0a3d04a0f6.com"


def _satellite(trials: list[dict[str, Any]], in_control_group: bool = True, **fields: Any) -> dict[str, Any]:
    return {"vp": "198.18.8.53", "location": {"country_name": "Iran", "country_code": "IR"}, "test_url": "example.org",
            "response": trials, "passed_liveness": True, "connect_error": False, "in_control_group": in_control_group,
            "anomaly": False, "confidence": {"average": 0, "matches": [], "untagged_controls": False,
                                             "untagged_response": False},
            "start_time": "2022-03-01T10:00:01.5-05:00", "end_time": "2022-03-01T10:00:09.6-05:00",
            "excluded": False, "exclude_reason": [], **fields}


def _before(answer: bool = True) -> dict[str, Any]:
    return _trial(1, CONTROL, {"198.18.0.10": ["ip"]} if answer else None, rcode=0 if answer else -1,
                  error=None if answer else "read udp 10.0.0.1:5->198.18.8.53:53: i/o timeout")


TIMEOUT = "read udp 10.0.0.1:5->198.18.8.53:53: i/o timeout"
SATELLITE_CASES: dict[str, tuple[dict[str, Any], tuple[str, str, float]]] = {
    "an answer the controls give too": (
        _satellite([_before(), _trial(2, "example.org", {"198.18.0.20": ["ip", "http", "asnum"]}),
                    _trial(3, CONTROL, {"198.18.0.10": ["ip"]})], excluded=True,
                   exclude_reason=["<script>alert(1)</script>", "is_CDN"]), ("ok", "none", 0.9)),
    "an answer nothing of the controls' matches": (
        _satellite([_before(), _trial(2, "example.org", {"198.18.7.7": []}), _trial(3, CONTROL, {"198.18.0.10": []})],
                   anomaly=True), ("anomaly", "dns.poison", 0.8)),
    "no such domain, where the controls answer": (
        _satellite([_before(), _trial(2, "example.org", rcode=3), _trial(3, CONTROL, {"198.18.0.10": []})]),
        ("anomaly", "dns.nxdomain", 0.7)),
    "silence, where the controls answer": (
        _satellite([_before(), *(_trial(2 + k, "example.org", rcode=-1, error=TIMEOUT) for k in range(4)),
                    _trial(7, CONTROL, {"198.18.0.10": []})]), ("anomaly", "dns.drop", 0.6)),
    "the resolver did not answer the control domain": (
        _satellite([_before(answer=False)], passed_liveness=False, connect_error=True), ("failure", "none", 0.0)),
    "an odd answer no control resolver can judge": (
        _satellite([_before(), _trial(2, "example.org", {"198.18.7.7": []})], in_control_group=False),
        ("failure", "none", 0.0)),
}


def test_the_queries_of_a_satellite_line() -> None:
    line, _ = SATELLITE_CASES["silence, where the controls answer"]
    tk = censoredplanet.convert(line)["test_keys"]
    assert [(q["hostname"], q["tags"], q["failure"]) for q in tk["queries"]] == [
        (CONTROL, ["vantage_before"], None), *[("example.org", ["test"], "generic_timeout_error")] * 4,
        (CONTROL, ["vantage_after"], None)]
    assert tk["queries"][0]["answers"] == [{"answer_type": "A", "ipv4": "198.18.0.10"}]
    assert tk["queries"][0]["resolver_address"] == "198.18.8.53:53" and tk["control_domain"] == CONTROL
    line, _ = SATELLITE_CASES["an answer the controls give too"]
    tk = censoredplanet.convert(line)["test_keys"]
    assert tk["x_consistent"] == ["198.18.0.20"] and tk["x_control_answered"] is True
    assert tk["x_censoredplanet"]["format"] == "satellite-v2.2"
    with pytest.raises(censoredplanet.Unreadable, match="neither a list of trials .* nor an object of answers"):
        censoredplanet.convert(_satellite("198.18.0.20"))  # type: ignore[arg-type]


def test_analyze_reads_a_satellite_scan_beside_a_hyperquack_one(tmp_path: Path) -> None:
    scan, _ = _corpus(tmp_path)
    lines = [orjson.dumps(line) for line, _ in SATELLITE_CASES.values()]
    lines.append(orjson.dumps({"ip": "198.18.7.7", "keyword": "example.org", "http": "", "https": "",
                               "fetched": False, "start_time": "2022-03-01T10:00:01-05:00"}))
    satellite = _archive(tmp_path / "CP_Satellite-2022-03-01-10-00-00.tar.gz",
                         {"CP_Satellite-2022-03-01-10-00-00/results.json": b"\n".join(lines) + b"\n"})
    db, jsonl = tmp_path / "cp.duckdb", tmp_path / "v.jsonl"
    res = _run("analyze", "--db", str(db), "--jsonl", str(jsonl), str(scan), str(satellite))
    assert res.returncode == 0, res.stderr
    assert "analyzed 16 measurements" in res.stdout and "4 records skipped as bad input" in res.stdout, res.stdout
    # Censored Planet's own flag against our verdicts: Satellite flags only answers unlike its controls' (the
    # poisoned one), not the NXDOMAIN or the silence that our rules call interference
    assert ("Censored Planet's lines: 16 read as remote_web or remote_dns measurements; where it flagged an anomaly "
            "we found interference in 8 of 9, where it did not in 2 of 3") in res.stdout, res.stdout
    assert re.search(r"invalid_value +4 ", res.stdout), res.stdout  # the three of the Hyperquack scan, and:
    with pytest.raises(censoredplanet.Unreadable, match="a line of Satellite's blockpages.json"):
        censoredplanet.convert(orjson.loads(lines[-1]))
    rows = [json.loads(x) for x in jsonl.read_text().splitlines()]
    dns = sorted((r["x_mechanism"], r["probe_cc"]) for r in rows if r["test_name"] == "remote_dns")
    assert dns == sorted((mechanism, "IR") for _, (_, mechanism, _) in SATELLITE_CASES.values())
    report = json.loads(_run("report", "--db", str(db), "--json", "-").stdout)
    mechanisms = {m["mechanism"] for m in report["mechanisms"]}
    assert {"dns.poison", "dns.nxdomain", "dns.drop", "tls.rst", "http.blockpage"} <= mechanisms
    # Satellite's own judgement beside ours, its words as text
    uid = next(r["measurement_uid"] for r in rows if r["test_name"] == "remote_dns" and r["x_mechanism"] == "none"
               and r["x_confidence"] == "ok")
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0)) as client:
        html = client.get(f"/m/{uid}").text
    said = html[html.index('<dd id="censoredplanet">'):]
    assert said.startswith('<dd id="censoredplanet">anomaly: no; resolver answered the control domain: yes; a control '
                           'resolver answered: yes; excluded by its verification: yes; excluded because: '
                           '&lt;script&gt;alert(1)&lt;/script&gt;, is_CDN ')
    assert "<script>alert" not in html


def _mutations(value: Any, rng: random.Random) -> Iterator[Any]:
    """``value`` with one part, chosen at random, replaced by a value of another type (hostile lines)."""
    # (orjson reads an integer beyond 64 bits as a float)
    odd = [None, 0, -1, 2.0**70, 1.5, True, "", "x" * 5000, "not-a-time", [], {}, [1, "a"], {"a": [None]}, "²²²",
           "--3", "٣٠٠ OK", "echo:٨٠",
           "2021-13-45T99:99:99Z"]
    for _ in range(400):
        copy = orjson.loads(orjson.dumps(value))
        node, path = copy, []
        while isinstance(node, (dict, list)) and node and rng.random() < 0.75:
            key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
            path.append((node, key))
            node = node[key]
        if path:
            parent, key = path[-1]
            parent[key] = rng.choice(odd)
        yield copy


def test_hostile_lines_are_rejected_or_read_never_a_crash() -> None:
    rng = random.Random(7)
    read = rejected = 0
    v1 = [({**line, censoredplanet.SERVICE: service}, None) for service, line, _ in V1_CASES.values()]
    for line, _ in [*CASES.values(), *SATELLITE_CASES.values(), *V21_CASES.values(), *SV1_CASES.values(), *v1]:
        for hostile in _mutations(line, rng):
            try:
                m = censoredplanet.convert(hostile)
            except censoredplanet.Unreadable:
                rejected += 1
                continue
            read += 1
            verdict_for(m, default_matcher())  # whatever the records hold: a verdict, not an exception
            orjson.dumps(m)  # and a measurement that can be written
    assert read > 1000 and rejected > 100, (read, rejected)


def test_a_bug_in_the_conversion_is_a_counted_rejection(monkeypatch: pytest.MonkeyPatch) -> None:
    from tamperscope.analysis.pipeline import analyse_batch
    from tamperscope.analysis.reader import Line

    def broken(m: Any) -> dict[str, Any]:
        raise RuntimeError("a bug")

    good, _ = CASES["a known blockpage"]
    monkeypatch.setattr(censoredplanet, "convert", broken)
    result = analyse_batch([Line("scan", 1, orjson.dumps(good)), Line("scan", 2, orjson.dumps(good))])
    said = "censoredplanet: RuntimeError: a bug"
    assert [(r.line, r.reason, r.detail) for r in result.rejections] == [
        (1, "invalid_value", said), (2, "invalid_value", said)]
    assert result.verdicts.num_rows == 0


def test_a_line_without_a_location_takes_the_tables_country(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    line, _ = CASES["a reset in the handshake"]
    bare = {k: v for k, v in line.items() if k != "location"}
    assert censoredplanet.convert(bare)["probe_cc"] == "ZZ"
    table = tmp_path / "asn.tsv"
    table.write_text("198.18.9.0\t198.18.9.255\t64500\tTM\tEXAMPLE-NET\n")
    monkeypatch.setenv(censoredplanet.ASN_TABLE_ENV, str(table))
    m = censoredplanet.convert(bare)
    assert (m["probe_cc"], m["probe_asn"], m["probe_network_name"]) == ("TM", "AS64500", "EXAMPLE-NET")
    assert censoredplanet.convert(line)["probe_cc"] == "BY"  # the line's own country first


# --------------------------------------------------------------------------- Satellite v2.2 as published, and its pages

def _published(domain: str, trials: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """A line of Satellite v2.2's results.json in the shape of 2021's (censoredplanet-analysis's tests of it): Go's
    times, only on the line; trials without times; ``error`` the text "null"; a.root-servers.net as control."""
    return {"confidence": {"average": 0, "matches": None, "untagged_controls": False, "untagged_response": False},
            "passed_liveness": True, "connect_error": False, "in_control_group": True, "anomaly": False,
            "excluded": False, "vp": "198.18.8.54", "test_url": domain,
            "start_time": "2021-10-20 14:51:41.295287198 -0400 EDT",
            "end_time": "2021-10-20 14:51:41.397573385 -0400 EDT", "exclude_reason": [],
            "location": {"country_name": "Iran", "country_code": "IR"}, "response": trials, **fields}


def _go_trial(url: str, answers: dict[str, list[str]] | None = None, rcode: int = 0,
              error: str = "null") -> dict[str, Any]:
    return {"url": url, "has_type_a": bool(answers), "error": error, "rcode": rcode,
            "response": {ip: {"http": "db2f9c", "cert": "6908c7", "asnum": 64512, "asname": "EXAMPLE-AS",
                              "matched": tags} for ip, tags in (answers or {}).items()}}


ROOT = "a.root-servers.net"


def _poisoned(domain: str = "news.example", answer: str = "198.18.7.7") -> dict[str, Any]:
    return _published(domain, [_go_trial(ROOT, {"198.18.0.4": ["ip"]}), _go_trial(domain, {answer: []}),
                               _go_trial(ROOT, {"198.18.0.4": ["ip"]})], anomaly=True)


def _fetched(domain: str, ip: str, http: Any, https: Any, **fields: Any) -> dict[str, Any]:
    """A line of Satellite's blockpages.json (its shape in censoredplanet-analysis's tests)."""
    return {"ip": ip, "keyword": domain, "http": http, "https": https, "fetched": True,
            "start_time": "2021-10-20 21:07:55.814062725 -0400 EDT m=+8.070381531",
            "end_time": "2021-10-20 21:07:56.317107472 -0400 EDT m=+8.573426410", **fields}


OVERSIZED = 'Get "https://198.18.7.7:443/": tls: oversized record received with length 20527'


def test_satellite_lines_as_published_in_2021_are_read() -> None:
    ok = _published("shop.example", [_go_trial(ROOT, {"198.18.0.4": ["ip"]}),
                                      _go_trial("shop.example", {"198.18.0.30": ["ip", "http", "cert", "asnum"]})])
    refused = _published("wear.example", [_go_trial(ROOT, rcode=5), _go_trial("wear.example", rcode=5),
                                          _go_trial(ROOT, rcode=5)], passed_liveness=False)
    unreachable = _published("pay.example", [
        _go_trial(u, rcode=-1, error=f"read udp 198.18.0.2:{6280 + k}->198.18.8.54:53: read: connection refused")
        for k, u in enumerate([ROOT, *["pay.example"] * 4, ROOT])], passed_liveness=False, connect_error=True)
    m = censoredplanet.convert(ok)
    assert m["measurement_start_time"] == "2021-10-20 18:51:41"  # Go's time, in UTC
    assert [(q["hostname"], q["tags"], q["failure"]) for q in m["test_keys"]["queries"]] == [
        (ROOT, ["vantage_before"], None), ("shop.example", ["test"], None)]
    assert "t0" not in m["test_keys"]["queries"][0]  # a trial of 2021's has no time: none is made up
    verdicts = [verdict_for(censoredplanet.convert(x), default_matcher()) for x in (ok, refused, unreachable)]
    assert [(v.status, v.mechanism) for v in verdicts] == [("ok", "none"), ("failure", "none"), ("failure", "none")]
    q = censoredplanet.convert(unreachable)["test_keys"]["queries"]
    assert {x["failure"] for x in q} == {"connection_refused"}


def _v21(domain: str, answers: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A line of Satellite v2.1's results.json (March to June 2021; its shape in censoredplanet-analysis's tests and
    docs/satellitev2.rst): one object of the answered addresses and their tags, ``rcode`` (text) for each of the
    domain's trials and ``error`` for each failed one; ``passed_control`` for both control queries."""
    return {"vp": "198.18.8.55", "location": {"country_name": "China", "country_code": "CN"}, "test_url": domain,
            "response": answers, "passed_control": True, "connect_error": False, "in_control_group": True,
            "anomaly": False, "confidence": {"average": 0, "matches": [0], "untagged_controls": False,
                                             "untagged_response": False},
            "start_time": "2021-03-05 15:32:05.324807502 -0500 EST m=+6.810936646",
            "end_time": "2021-03-05 15:32:05.366104911 -0500 EST m=+6.852233636", **fields}


V21_TIMEOUT = "read udp 198.18.0.2:6280->198.18.8.55:53: i/o timeout"
V21_CASES: dict[str, tuple[dict[str, Any], tuple[str, str, float]]] = {
    "addresses none of whose tags match the controls'": (
        _v21("abs-cbn.example", {"198.18.7.35": [], "198.18.7.34": ["no_tags"], "rcode": ["0"]}, anomaly=True),
        ("anomaly", "dns.poison", 0.8)),
    "an address whose page and certificate match, answered at the second try": (
        _v21("shop.example", {"198.18.0.30": ["http", "cert"], "rcode": ["-1", "0"], "error": [V21_TIMEOUT]}),
        ("ok", "none", 0.9)),
    "four trials, no answer": (
        _v21("news.example", {"rcode": ["-1"] * 4, "error": [V21_TIMEOUT] * 4}, connect_error=True),
        ("anomaly", "dns.drop", 0.6)),
    "no such domain": (_v21("wear.example", {"rcode": ["3"]}, anomaly=True), ("anomaly", "dns.nxdomain", 0.7)),
    "the resolver failed a control query": (
        _v21("pay.example", {"198.18.7.35": [], "rcode": ["0"]}, passed_control=False, anomaly=True),
        ("failure", "none", 0.0)),
    "no control resolver answered the domain": (
        _v21("odd.example", {"198.18.7.35": [], "rcode": ["0"]}, in_control_group=False), ("failure", "none", 0.0)),
}


def test_the_queries_of_a_satellite_v21_line() -> None:
    line, _ = V21_CASES["an address whose page and certificate match, answered at the second try"]
    tk = censoredplanet.convert(line)["test_keys"]
    assert [(q["hostname"], q["tags"], q["failure"], q["answers"]) for q in tk["queries"]] == [
        ("shop.example", ["test"], "generic_timeout_error", None),
        ("shop.example", ["test"], None, [{"answer_type": "A", "ipv4": "198.18.0.30"}])]
    assert (tk["x_consistent"], tk["x_vantage_alive"], tk["x_control_answered"]) == (["198.18.0.30"], True, True)
    assert tk["x_censoredplanet"]["passed_control"] is True and "t0" not in tk["queries"][0]
    # errors whose -1 rcodes the line does not hold are trials too (censoredplanet-analysis met such lines)
    tk = censoredplanet.convert(_v21("x.example", {"rcode": ["5"], "error": ["read: connection refused"]}))["test_keys"]
    assert [q["failure"] for q in tk["queries"]] == ["dns_refused_error", "connection_refused"]
    # the errors go, in order, to the trials whose rcode is -1
    tk = censoredplanet.convert(_v21("x.example", {"rcode": ["2", "-1", "-1"], "error": [
        "read: connection refused", V21_TIMEOUT]}))["test_keys"]
    assert [q["failure"] for q in tk["queries"]] == ["dns_servfail_error", "connection_refused",
                                                     "generic_timeout_error"]
    # the first scans (interference.json, March 2021) wrote one rcode per trial, all answered: the addresses
    # are the last one's; the earlier ones were answered too, their answers not kept apart
    tk = censoredplanet.convert(_v21("x.example", {"198.18.7.35": [], "rcode": ["0", "0", "0"]}))["test_keys"]
    assert [(q["failure"], bool(q["answers"])) for q in tk["queries"]] == [(None, False), (None, False), (None, True)]
    # rcodes that are no decimal number (Unicode digits among them) are trials whose failure is unknown
    tk = censoredplanet.convert(_v21("x.example", {"rcode": ["²", "--3", "٣"]}))["test_keys"]
    assert [q["failure"] for q in tk["queries"]] == ["unknown_failure: no rcode"] * 3
    # addresses but no trial that got them: censoredplanet-analysis drops these lines; we say why
    with pytest.raises(censoredplanet.Unreadable, match="no rcode 0"):
        censoredplanet.convert(_v21("x.example", {"198.18.7.35": [], "rcode": ["-1"]}))
    # without its controls' proof, no verdict on the domain: x_vantage_alive is what stands for it
    line, _ = V21_CASES["addresses none of whose tags match the controls'"]
    m = censoredplanet.convert(line)
    del m["test_keys"]["x_vantage_alive"]
    assert verdict_for(m, default_matcher()).status == "failure"


def test_satellites_other_lines_are_rejected_with_their_reason() -> None:
    unjudged = {"resolver": "198.18.8.56", "query": "asana.example", "answers": ["198.18.0.40"]}
    responses = {"vp": "198.18.8.57", "test_url": "login.example", "passed_control": True, "connect_error": False,
                 "response": [{"url": "www.example.com", "has_type_a": True, "response": ["198.18.0.41"],
                               "error": "null", "rcode": 0, "start_time": "2021-03-15 20:02:06.996014164 -0400 EDT"}]}
    for line, reason in ((unjudged, "interference_err.json"), ({**unjudged, SCAN_KEY: V1_SCAN}, "answers_control"),
                         (responses, "Satellite's responses files")):
        assert censoredplanet.looks_like(line)
        with pytest.raises(censoredplanet.Unreadable, match=reason):
            censoredplanet.convert(line)


SCAN_KEY, V1_SCAN = censoredplanet.SCAN, "CP_Satellite-2020-09-02-12-00-01"


def _sv1(domain: str, answers: Any = None, **fields: Any) -> dict[str, Any]:
    """A line of Satellite v1's interference.json (its shape in censoredplanet-analysis's tests and
    docs/satellite.rst), as analyze keeps it: the scan's name added last."""
    line = {"resolver": "198.18.8.56", "query": domain, **({"answers": answers} if answers is not None else {}),
            **fields}
    return {**line, SCAN_KEY: V1_SCAN}


SV1_CASES: dict[str, tuple[dict[str, Any], tuple[str, str, float]]] = {
    "an answer the controls give too": (
        _sv1("asana.example", {"198.18.0.40": ["ip", "http", "cert", "asnum", "asname"],
                               "198.18.0.41": ["cert", "asnum"]}, passed=True), ("ok", "none", 0.9)),
    "an answer sharing no tag with the controls'": (
        _sv1("equality.example", {"198.18.7.36": []}, passed=False,
             confidence={"average": 0, "matches": [0], "untaggedControls": False, "untaggedAnswers": True}),
        ("anomaly", "dns.poison", 0.8)),
    "no answer": (_sv1("casino.example", error="no_answer"), ("failure", "none", 0.0)),
}


# each version of Satellite's lines: its cases, and the envelope they are read with (v1's time is its scan's start,
# which only the scan's name gives; its lines have no location)
SATELLITE_VERSIONS = {"satellite-v2.2": (SATELLITE_CASES, "2.2", "IR", "2022-03-01 15:00:01"),
                      "satellite-v2.1": (V21_CASES, "2.1", "CN", "2021-03-05 20:32:05"),
                      "satellite-v1": (SV1_CASES, "1", "ZZ", "2020-09-02 12:00:01")}


@pytest.mark.parametrize(("version", "case"), [(v, c) for v, (cases, *_) in SATELLITE_VERSIONS.items() for c in cases])
def test_each_kind_of_satellite_line_reaches_the_remote_dns_verdict(version: str, case: str) -> None:
    cases, software_version, cc, start = SATELLITE_VERSIONS[version]
    line, (status, mechanism, confidence) = cases[case]
    m = censoredplanet.convert(line)
    assert (m["test_name"], m["test_version"], m["software_version"], m["input"], m["probe_cc"],
            m["measurement_start_time"]) == ("remote_dns", version, software_version,
                                             line.get("test_url", line.get("query")), cc, start)
    verdict = verdict_for(m, default_matcher())
    assert (verdict.status, verdict.mechanism, verdict.confidence) == (status, mechanism, confidence), verdict


def test_the_records_of_a_satellite_v1_line() -> None:
    line, _ = SV1_CASES["an answer the controls give too"]
    tk = censoredplanet.convert(line)["test_keys"]
    assert [(q["hostname"], q["tags"], q["failure"], len(q["answers"])) for q in tk["queries"]] == [
        ("asana.example", ["test"], None, 2)]
    assert (tk["x_consistent"], tk["x_control_answered"], tk["x_vantage_vetted"]) == (
        ["198.18.0.40", "198.18.0.41"], True, True)
    assert tk["x_censoredplanet"]["anomaly"] is False and tk["x_censoredplanet"]["scan"] == V1_SCAN
    line, _ = SV1_CASES["no answer"]
    assert censoredplanet.convert(line)["test_keys"]["queries"][0]["failure"] == "unknown_failure: no_answer"
    # the resolver's choice at the scan's start is what stands for a control answer before: without it, nothing
    line, _ = SV1_CASES["an answer sharing no tag with the controls'"]
    m = censoredplanet.convert(line)
    del m["test_keys"]["x_vantage_vetted"]
    assert verdict_for(m, default_matcher()).status == "failure"
    # the line alone says no time: without its scan's name it is not read
    bare = censoredplanet.published(line)
    assert censoredplanet.looks_like(bare) and censoredplanet.is_satellite_v1(bare)
    with pytest.raises(censoredplanet.Unreadable, match="whose time only its scan's name says"):
        censoredplanet.convert(bare)
    for odd in ("CP_Satellite-2020-13-45-12-00-01", "CP_Quack-echo-2020-09-02-12-00-01", 7):
        with pytest.raises(censoredplanet.Unreadable):
            censoredplanet.convert({**bare, SCAN_KEY: odd})
    assert censoredplanet.scan_of("/data/CP-Satellite-2020-09-02/interference.json") == "CP-Satellite-2020-09-02"
    assert censoredplanet.convert({**bare, SCAN_KEY: "CP-Satellite-2020-09-02"})["measurement_start_time"] == (
        "2020-09-02 00:00:00")


def test_analyze_reads_satellite_v1_scans_and_keeps_each_lines_scan(tmp_path: Path) -> None:
    lines = [orjson.dumps(censoredplanet.published(line)) for line, _ in SV1_CASES.values()]
    unjudged = orjson.dumps({"resolver": "198.18.8.56", "query": "lost.example", "answers": ["198.18.0.42"]})
    scans = [tmp_path / V1_SCAN, tmp_path / "CP_Satellite-2020-09-09-12-00-01"]
    for scan in scans:  # the same lines, a week apart: two measurements each, not one
        scan.mkdir()
        (scan / "interference.json").write_bytes(b"\n".join(lines) + b"\n")
        (scan / "interference_err.json").write_bytes(unjudged + b"\n")
    db, jsonl = tmp_path / "sv1.duckdb", tmp_path / "v.jsonl"
    res = _run("analyze", "--db", str(db), "--jsonl", str(jsonl), *map(str, scans))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "analyzed 6 measurements" in res.stdout and "6 new" in res.stdout, res.stdout
    assert "2 records skipped as bad input" in res.stdout and "interference_err.json" in res.stdout, res.stdout
    rows = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert len({r["measurement_uid"] for r in rows}) == 6
    assert sorted(r["measurement_uid"][:8] for r in rows) == ["20200902"] * 3 + ["20200909"] * 3
    assert sorted((r["input"], r["x_mechanism"]) for r in rows) == sorted(
        [(line["query"], mechanism) for line, (_, mechanism, _) in SV1_CASES.values()] * 2)
    uid = next(r["measurement_uid"] for r in rows if r["input"] == "equality.example")
    with Store(db, create=False) as store:
        raw = store.raw(uid)
    assert raw is not None and raw.startswith(lines[1][:-1]) and orjson.loads(raw)[SCAN_KEY] == V1_SCAN
    redo = _run("analyze", "--reanalyse", "all", "--db", str(db))
    assert redo.returncode == 0 and "reanalysed 6 measurements" in redo.stdout, redo.stdout + redo.stderr
    assert ": 0 verdicts changed" in redo.stdout, redo.stdout
    again = _run("analyze", "--reread", "--db", str(db), str(scans[0]))
    assert again.returncode == 0 and "0 new, 3 already in the store" in again.stdout, again.stdout + again.stderr
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0)) as client:
        html = client.get(f"/m/{uid}").text
    assert f"with the scan whose name alone gave its time (<code>{V1_SCAN}</code>)" in html, html
    # a file whose name gives no scan: its lines say no time, and are rejected with that reason
    loose = tmp_path / "interference.json"
    loose.write_bytes(lines[0] + b"\n")
    res = _run("analyze", "--db", str(tmp_path / "loose.duckdb"), str(loose))
    assert res.returncode == 1 and "whose time only its scan's name says" in res.stdout, res.stdout + res.stderr


# the files a Satellite v1 scan holds beside its measurements (docs/satellitev1.rst), a line of each
SCAN_FILES_V1 = {
    "raw/answers.json": b'{"resolver": "198.18.8.56", "query": "b.example", "answers": ["198.18.0.40"]}',
    "raw/answers_raw.json": b'{"resolver": "198.18.8.56", "query": "c.example", "data": "AAAA"}',
    "raw/answers_ip.json": b'{"answer": "198.18.0.40"}',
    "raw/resolvers.json": b'{"resolver": "198.18.8.56", "name": "ns.example"}',
    "raw/resolvers_err.json": b'{"resolver": "198.18.8.56", "error": {"code": 1}}',
    "raw/resolvers_ip.json": b'{"resolver": "198.18.8.56", "answer": "198.18.0.9"}',
    "raw/resolvers_ptr.json": b'{"resolver": "198.18.8.56", "names": ["ns.example"]}',
    "raw/resolvers_raw.json": b'{"saddr": "198.18.8.56", "data": "AAAA"}',
    "raw/tagged_answers.json": b'{"ip": "198.18.0.40", "http": "ab", "cert": "cd", "asname": "X", "asnum": 1}',
    "raw/dns.pkt": b"\x00\x01\x02",
    "log.json": b'{"start": "2020-09-02"}',
    "stat/stat_interference_country.json": b'{"BY": 3}',
}


@pytest.mark.parametrize(("path", "skipped"), [
    *((f"/d/{V1_SCAN}/{name}", True) for name in SCAN_FILES_V1 if name.endswith(".json")),
    (f"/d/{V1_SCAN}.tar.gz!{V1_SCAN}/raw/dns.pkt", True),  # (in a directory, analyze reads no .pkt anyway)
    (f"/d/{V1_SCAN}/raw/tagged_resolvers.json.gz", True), (f"/d/{V1_SCAN}.tar.gz!{V1_SCAN}/servers.txt", True),
    ("/d/CP_Quack-echo-2021-04-01-12-00-01.tar.gz!domains.txt", True),
    ("/d/CP_Satellite-2021-10-20-12-00-01/responses_control.json.gz", True),
    (f"/d/{V1_SCAN}/raw/interference.json", False), (f"/d/{V1_SCAN}/raw/answers_err.json", False),
    (f"/d/{V1_SCAN}/raw/interference_err.json", False), (f"/d/{V1_SCAN}.tar.gz!{V1_SCAN}/raw/answers_control.json",
                                                          False),
    ("/d/CP_Satellite-2021-10-20-12-00-01/results.json.gz", False),
    ("/d/CP_Satellite-2021-10-20-12-00-01/blockpages.json", False),
    ("/d/CP_Quack-https-2020-11-06-15-15-31/results.json", False),
    ("/mirror/raw/20240101/00/IT/webconnectivity/resolvers.json", False),  # not a scan's: read as any file
    ("/mirror/log.json", False), ("CP_Satellite-notes.json", False),
    ("/d/CP_Quack-echo-2021-04-01-12-00-01/more.jsonl.zst", False)])  # a directory's files: as their suffix says
def test_a_scans_files_that_hold_no_measurement(path: str, skipped: bool) -> None:
    assert scans.not_measurements(path) is skipped


def test_where_a_satellite_v1_resolver_is_comes_from_its_scans_tags() -> None:
    index = censoredplanet.ResolverIndex()
    for line in (b'{"resolver": "198.18.8.56", "country": "Russia"}',  # v1: the country's name
                 b'{"vp": "2001:DB8::1", "location": {"country_name": "Iran", "country_code": "IR"}}',  # v2
                 rb'{"resolver": "198.18.8.57", "country": "C\u00f4te d\u2019Ivoire"}',
                 b'{"resolver": "198.18.8.58", "country": "Atlantis"}',  # a name no table holds: kept, no code
                 b'{"resolver": "198.18.8.59"}', b'{"resolver": "not an address", "country": "Russia"}',
                 b'{"resolver": "198.18.8.60", "country": ["Russia"]}', b"[1, 2]", b"{not json", b"7"):
        index.add(line)
    assert index.of("198.18.8.56") == {"country_name": "Russia", "country_code": "RU"}
    assert index.of("2001:db8:0::1") == {"country_name": "Iran", "country_code": "IR"}  # as Python writes it
    assert index.of("198.18.8.57") == {"country_name": "C\u00f4te d\u2019Ivoire", "country_code": "CI"}
    assert index.of("198.18.8.58") == {"country_name": "Atlantis", "country_code": None}
    assert [index.of(a) for a in ("198.18.8.59", "198.18.8.60", "198.18.8.61", None, 7)] == [None] * 5
    assert len(index.places) == 4
    # read as a v1 line's location: the code is the country; without one, the ASN table's, else ZZ
    line, _ = SV1_CASES["an answer sharing no tag with the controls'"]
    for place, cc in ((index.of("198.18.8.56"), "RU"), (index.of("198.18.8.58"), "ZZ")):
        m = censoredplanet.convert({**line, censoredplanet.LOCATION: place})
        assert m["probe_cc"] == cc and m["test_keys"]["x_censoredplanet"]["country_name"] == place["country_name"]
    assert censoredplanet.published({**line, censoredplanet.LOCATION: place}) == censoredplanet.published(line)


def test_analyze_gives_a_satellite_v1_line_its_resolvers_country(tmp_path: Path) -> None:
    lines = [orjson.dumps(censoredplanet.published(line)) for line, _ in SV1_CASES.values()]
    elsewhere = orjson.dumps({**censoredplanet.published(SV1_CASES["no answer"][0]), "resolver": "198.18.8.99"})
    tags = b"\n".join([b'{"resolver": "198.18.8.56", "country": "Turkmenistan"}', b"{damaged",
                        b'{"resolver": "198.18.8.99", "country": "<i>Atlantis</i>"}']) + b"\n"
    raw = tmp_path / V1_SCAN / "raw"  # as Censored Planet published v1 scans, with the files beside the measurements
    raw.mkdir(parents=True)
    (raw / "interference.json").write_bytes(b"\n".join([*lines, elsewhere]) + b"\n")
    (raw / "tagged_resolvers.json").write_bytes(tags)
    for name, line in SCAN_FILES_V1.items():  # read line by line, every one of them would be bad input
        (tmp_path / V1_SCAN / name).parent.mkdir(exist_ok=True)
        (tmp_path / V1_SCAN / name).write_bytes(line + b"\n")
    db, jsonl = tmp_path / "sv1.duckdb", tmp_path / "v.jsonl"
    res = _run("analyze", "--db", str(db), "--jsonl", str(jsonl), str(tmp_path / V1_SCAN))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "analyzed 4 measurements" in res.stdout and "0 records skipped as bad input" in res.stdout, res.stdout
    # the scan's other files are not read, and said: those a directory's reading would open (.json), and its tags
    unread = sum(name.endswith(".json") for name in SCAN_FILES_V1) + 1
    assert (f"{unread} files of Censored Planet's scans not read: they hold no measurement" in res.stdout
            ), res.stdout
    # named on the command line, a file is read whatever its name: the tags' lines are not measurements, said so
    named = _run("analyze", "--db", str(tmp_path / "named.duckdb"), str(raw / "tagged_resolvers.json"))
    assert named.returncode == 1 and "3 records skipped" in named.stdout, named.stdout + named.stderr
    assert "lists of resolvers" in named.stdout, named.stdout
    rows = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert sorted((r["input"], r["probe_cc"]) for r in rows) == [
        ("asana.example", "TM"), ("casino.example", "TM"), ("casino.example", "ZZ"), ("equality.example", "TM")]
    uid = next(r["measurement_uid"] for r in rows if r["input"] == "equality.example")
    assert "_TM_" in uid
    with Store(db, create=False) as store:
        kept = store.raw(uid)
    assert kept is not None and kept.startswith(lines[1][:-1])
    assert orjson.loads(kept)[censoredplanet.LOCATION] == {"country_name": "Turkmenistan", "country_code": "TM"}
    redo = _run("analyze", "--reanalyse", "all", "--db", str(db))
    assert redo.returncode == 0 and ": 0 verdicts changed" in redo.stdout, redo.stdout + redo.stderr
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0)) as client:
        html = client.get(f"/m/{uid}").text
        hostile = client.get(f"/m/{next(r['measurement_uid'] for r in rows if r['probe_cc'] == 'ZZ')}").text
    assert "with where its resolver is, as its scan's <code>tagged_resolvers.json</code> says (Turkmenistan)" in html
    assert "says (&lt;i&gt;Atlantis&lt;/i&gt;)" in hostile and "<i>Atlantis" not in hostile  # a name is text
    # the same scan as Censored Planet's tarball, its tags after the lines they place
    archive = _archive(tmp_path / f"{V1_SCAN}.tar.gz", {f"{V1_SCAN}/raw/interference.json": b"\n".join(lines) + b"\n",
                                                        f"{V1_SCAN}/raw/tagged_resolvers.json": tags,
                                                        **{f"{V1_SCAN}/{n}": x + b"\n" for n, x in SCAN_FILES_V1.items()}})
    jsonl = tmp_path / "t.jsonl"
    for workers in ("1", "2"):  # counted where the archive is read: here, or in the worker processes
        res = _run("analyze", "--db", str(tmp_path / f"t{workers}.duckdb"), "--jsonl", str(jsonl),
                   "--workers", workers, str(archive))
        assert res.returncode == 0 and "analyzed 3 measurements" in res.stdout, res.stdout + res.stderr
        assert "0 records skipped as bad input" in res.stdout, res.stdout
        assert f"{len(SCAN_FILES_V1) + 1} files of Censored Planet's scans not read" in res.stdout, res.stdout
        assert {json.loads(x)["probe_cc"] for x in jsonl.read_text().splitlines()} == {"TM"}
    # a scan of nothing but its other files holds no measurement: said, and the exit code says it too (a usage
    # error for a directory with no measurement file, as for any; 1 for an archive, as for a file of bad lines)
    bare = tmp_path / "bare" / V1_SCAN
    for name, line in SCAN_FILES_V1.items():
        (bare / name).parent.mkdir(parents=True, exist_ok=True)
        (bare / name).write_bytes(line + b"\n")
    res = _run("analyze", "--db", str(tmp_path / "bare.duckdb"), str(bare))
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stdout + res.stderr
    assert f"the {unread - 1} files of Censored Planet's scans under" in res.stderr, res.stderr
    bare_archive = _archive(tmp_path / "bare" / f"{V1_SCAN}.tar.gz",
                            {f"{V1_SCAN}/{n}": x + b"\n" for n, x in SCAN_FILES_V1.items()})
    res = _run("analyze", "--db", str(tmp_path / "bare.duckdb"), str(bare_archive))
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"{len(SCAN_FILES_V1)} files of Censored Planet's scans not read" in res.stdout, res.stdout
    assert "no measurement in the input, only the other files of Censored Planet's scans" in res.stderr, res.stderr


def test_analyze_reads_a_satellite_v21_scan_and_joins_its_pages(tmp_path: Path) -> None:
    poisoned, _ = V21_CASES["addresses none of whose tags match the controls'"]
    lines = [orjson.dumps(line) for line, _ in V21_CASES.values()]
    lines.append(orjson.dumps({"resolver": "198.18.8.56", "query": "asana.example", "answers": ["198.18.0.40"]}))
    page = orjson.dumps(_fetched("abs-cbn.example", "198.18.7.35", _page("200 OK", BELTELECOM), OVERSIZED))
    scan = tmp_path / "CP_Satellite-2021-03-05-12-00-01"
    scan.mkdir()
    (scan / "results.json").write_bytes(b"\n".join(lines) + b"\n")
    (scan / "blockpages.json").write_bytes(page + b"\n")
    db, jsonl = tmp_path / "v21.duckdb", tmp_path / "v.jsonl"
    res = _run("analyze", "--db", str(db), "--jsonl", str(jsonl), str(scan))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"analyzed {len(V21_CASES)} measurements" in res.stdout, res.stdout
    assert "1 record skipped as bad input" in res.stdout and "joined to 1 measurement" in res.stdout, res.stdout
    assert "censoredplanet: a line of Satellite v1's answers that were not judged" in res.stdout, res.stdout
    rows = {r["input"]: r for r in map(json.loads, jsonl.read_text().splitlines())}
    assert {d: (r["x_mechanism"], r["probe_cc"]) for d, r in rows.items()} == {
        line["test_url"]: (mechanism, "CN") for line, (_, mechanism, _) in V21_CASES.values()}
    assert rows["abs-cbn.example"]["fingerprints"] == ["cl/isp_by_beltelecom_block"]  # the page proves the poison
    # Satellite's own judgement, counted against ours: it flagged the poison and the NXDOMAIN, as we do; of the
    # two it did not flag, we call the silence (four timeouts) interference (the failures are in neither count)
    assert ("where it flagged an anomaly we found interference in 2 of 2, where it did not in 1 of 2"
            in res.stdout), res.stdout
    with Store(db, create=False) as store:
        raw = store.raw(rows["abs-cbn.example"]["measurement_uid"])
        assert raw is not None and censoredplanet.published(orjson.loads(raw)) == poisoned
    redo = _run("analyze", "--reanalyse", "all", "--db", str(db))
    assert redo.returncode == 0 and ": 0 verdicts changed" in redo.stdout, redo.stdout + redo.stderr
    uid = rows["shop.example"]["measurement_uid"]
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0)) as client:
        html = client.get(f"/m/{uid}").text
    assert "resolver answered the control domain before and after: yes" in html, html


def _index(*pages: dict[str, Any]) -> censoredplanet.PageIndex:
    index = censoredplanet.PageIndex()
    for page in pages:
        index.add(orjson.dumps(page))
    return index


def test_a_page_satellite_fetched_from_the_answer_confirms_or_clears_it() -> None:
    line = _poisoned()
    data = orjson.dumps(line)
    alone = verdict_for(censoredplanet.convert(line), default_matcher())
    assert (alone.mechanism, alone.confidence, alone.fingerprints) == ("dns.poison", 0.8, ())
    # the address served a blockpage the fingerprints know: the same verdict, now with its proof
    blockpage = _fetched("news.example", "198.18.7.7", _page("200 OK", BELTELECOM), OVERSIZED)
    others = [_fetched("other.example", "198.18.7.7", _page("200 OK", BELTELECOM), ""),  # another domain
              _fetched("news.example", "198.18.7.8", _page("200 OK", BELTELECOM), "")]  # an address not answered
    joined = censoredplanet.join(data, line, _index(blockpage, *others))
    assert joined is not None
    raw, m = joined
    assert raw.startswith(data[:-1]) and raw.endswith(b"]}") and orjson.loads(raw) == m
    assert censoredplanet.published(orjson.loads(raw)) == line  # the line as published, and its pages
    assert m[censoredplanet.PAGES] == [blockpage]
    tk = censoredplanet.convert(m)["test_keys"]
    assert [(r["tags"], r["request"]["url"], r["failure"]) for r in tk["requests"]] == [
        (["validate"], "http://news.example/", None)]
    assert [(h["address"], h["failure"], h["x_verified"]) for h in tk["tls_handshakes"]] == [
        ("198.18.7.7:443", "ssl_failed_handshake", False)]  # Go's words for a TLS failure
    assert [r["transaction_id"] for r in (*tk["requests"], *tk["tls_handshakes"])] == [4, 5]
    assert tk["x_censoredplanet"]["pages"] == 1
    confirmed = verdict_for(censoredplanet.convert(m), default_matcher())
    assert (confirmed.mechanism, confirmed.confidence) == ("dns.poison", 0.95)
    assert "cl/isp_by_beltelecom_block" in confirmed.fingerprints
    assert "test_keys.requests[0]" in confirmed.evidence
    # the address served the domain with a certificate trusted and naming it: the answer was the site's
    genuine = _fetched("news.example", "198.18.7.7", _page("200 OK", "<html>news</html>"),
                       {**_page("200 OK", "<html>news</html>"), "tls": {"cert": "MIIB"}}, trusted_cert=True,
                       cert_hostname_match=True)
    joined = censoredplanet.join(data, line, _index(genuine))
    assert joined is not None
    cleared = verdict_for(censoredplanet.convert(joined[1]), default_matcher())
    assert (cleared.status, cleared.mechanism) == ("ok", "none"), cleared
    # a certificate that names the domain but no trusted authority signed: no proof either way
    untrusted = {**genuine, "trusted_cert": False}
    joined = censoredplanet.join(data, line, _index(untrusted))
    assert joined is not None
    assert verdict_for(censoredplanet.convert(joined[1]), default_matcher()).mechanism == "dns.poison"
    # nothing to join: no page for its answers
    assert censoredplanet.join(data, line, _index(*others)) is None


def _scan_dir(tmp_path: Path, lines: list[bytes], pages: list[bytes]) -> Path:
    scan = tmp_path / "CP_Satellite-2021-10-20-12-00-01"
    scan.mkdir()
    (scan / "results.json").write_bytes(b"\n".join(lines) + b"\n")
    (scan / "blockpages.json").write_bytes(b"\n".join(pages) + b"\n")
    return scan


def test_analyze_joins_a_scans_pages_to_its_answers_and_keeps_them(tmp_path: Path) -> None:
    poisoned, clean = _poisoned(), _poisoned("shop.example", "198.18.7.9")
    lines = [orjson.dumps(poisoned), orjson.dumps(clean)]
    pages = [orjson.dumps(_fetched("news.example", "198.18.7.7", _page("200 OK", BELTELECOM), OVERSIZED)),
             orjson.dumps(_fetched("lost.example", "198.18.7.1", "", ""))]  # no measurement answered it
    scan = _scan_dir(tmp_path, lines, pages)
    db, jsonl = tmp_path / "cp.duckdb", tmp_path / "v.jsonl"
    res = _run("analyze", "--db", str(db), "--jsonl", str(jsonl), str(scan))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "analyzed 2 measurements" in res.stdout and "0 records skipped as bad input" in res.stdout, res.stdout
    assert ("Satellite's pages (blockpages.json, fetched from the answers): joined to 1 measurement and kept with "
            "them; 2 pages of the input read that way, not as measurements") in res.stdout, res.stdout
    rows = {r["input"]: r for r in map(json.loads, jsonl.read_text().splitlines())}
    assert rows["news.example"]["fingerprints"] == ["cl/isp_by_beltelecom_block"]
    assert rows["shop.example"]["fingerprints"] == [] and rows["shop.example"]["x_mechanism"] == "dns.poison"
    # the uid is the line's, pages or none: results.json read alone (no blockpages.json beside it) gives it too
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "results.json").write_bytes(lines[0] + b"\n")
    db2, jsonl2 = tmp_path / "alone.duckdb", tmp_path / "alone.jsonl"
    assert _run("analyze", "--db", str(db2), "--jsonl", str(jsonl2), str(alone / "results.json")).returncode == 0
    (bare,) = map(json.loads, jsonl2.read_text().splitlines())
    uid = rows["news.example"]["measurement_uid"]
    assert bare["measurement_uid"] == uid and bare["fingerprints"] == []
    with Store(db, create=False) as store:
        raw = store.raw(uid)
        assert raw is not None and raw.startswith(lines[0][:-1])  # the line as published, then its page
        assert orjson.loads(raw)[censoredplanet.PAGES] == [orjson.loads(pages[0])]
        outcome = store.con.execute("SELECT outcome, confidence FROM verdicts WHERE measurement_uid = ?",
                                    [uid]).fetchone()
        assert outcome == ("confirmed", 0.95)
    # derived again from what the store kept: the same verdicts, the page included
    redo = _run("analyze", "--reanalyse", "all", "--db", str(db))
    assert redo.returncode == 0 and "reanalysed 2 measurements" in redo.stdout, redo.stdout + redo.stderr
    assert ": 0 verdicts changed" in redo.stdout, redo.stdout
    # the explorer: the page is evidence; the line is shown with it, said so
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0)) as client:
        html = client.get(f"/m/{uid}").text
    assert "with the 1 page Satellite fetched from its answers" in html
    assert "cl/isp_by_beltelecom_block" in html and "x_satellite_pages" in html
    # a stream names no directory: nothing is joined to it, whatever the directory it was run in holds
    piped = subprocess.run([sys.executable, "-m", "tamperscope", "analyze", "--db", str(tmp_path / "p.duckdb"),
                            "--jsonl", str(tmp_path / "p.jsonl"), "-"], input=lines[0] + b"\n", cwd=scan,
                           capture_output=True, timeout=300)
    assert piped.returncode == 0, piped.stderr
    assert json.loads((tmp_path / "p.jsonl").read_text())["fingerprints"] == []
    # a blockpages.json with no results.json beside it: its lines are bad input, with their reason
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "blockpages.json").write_bytes(pages[0] + b"\n")
    res = _run("analyze", "--db", str(tmp_path / "lone.duckdb"), str(lone))
    assert res.returncode == 1 and "no results.json beside it" in res.stdout, res.stdout + res.stderr


def test_a_published_satellite_tarball_has_its_pages_joined(tmp_path: Path) -> None:
    poisoned = orjson.dumps(_poisoned())
    page = orjson.dumps(_fetched("news.example", "198.18.7.7", _page("200 OK", BELTELECOM), OVERSIZED))
    archive = _archive(tmp_path / "CP_Satellite-2021-10-20-12-00-01.tar.gz", {
        "CP_Satellite-2021-10-20-12-00-01/results.json": poisoned + b"\n",
        "CP_Satellite-2021-10-20-12-00-01/blockpages.json": page + b"\n"})
    jsonl = tmp_path / "v.jsonl"
    res = _run("analyze", "--db", str(tmp_path / "t.duckdb"), "--jsonl", str(jsonl), str(archive))
    assert res.returncode == 0 and "0 records skipped as bad input" in res.stdout, res.stdout + res.stderr
    (row,) = map(json.loads, jsonl.read_text().splitlines())  # the page came after its line, and was joined
    assert row["fingerprints"] == ["cl/isp_by_beltelecom_block"] and row["x_mechanism"] == "dns.poison"


def test_pages_beyond_what_a_scan_holds_are_counted_not_joined(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from tamperscope.analysis.pipeline import analyse_batch
    from tamperscope.analysis.reader import Line

    lines = [orjson.dumps(_poisoned()), orjson.dumps(_poisoned("shop.example", "198.18.7.9"))]
    pages = [orjson.dumps(_fetched("news.example", "198.18.7.7", _page("200 OK", BELTELECOM), "")),
             orjson.dumps(_fetched("shop.example", "198.18.7.9", _page("200 OK", BELTELECOM), ""))]
    scan = _scan_dir(tmp_path, lines, pages)
    monkeypatch.setattr(censoredplanet, "MAX_PAGES_BYTES", len(pages[0]) + 1)
    censoredplanet._index.cache_clear()
    try:
        items = [Line(str(scan / "results.json"), i + 1, x) for i, x in enumerate(lines)]
        items += [Line(str(scan / "blockpages.json"), i + 1, x) for i, x in enumerate(pages)]
        result = analyse_batch(items)
    finally:
        censoredplanet._index.cache_clear()
    assert result.censoredplanet[5:] == (1, 1)
    assert [(r.source.rsplit("/", 1)[-1], r.line, r.reason) for r in result.rejections] == [
        ("blockpages.json", 2, "invalid_value")]
    assert "beyond the 0 MB of pages held per scan" in result.rejections[0].detail
    fingerprints = dict(zip(result.verdicts.column("input").to_pylist(),
                            result.verdicts.column("fingerprints").to_pylist(), strict=True))
    assert fingerprints == {"news.example": ["cl/isp_by_beltelecom_block"], "shop.example": []}


def test_hostile_pages_are_left_out_or_read_never_a_crash() -> None:
    rng = random.Random(7)
    line = _poisoned()
    page = _fetched("news.example", "198.18.7.7", _page("200 OK", BELTELECOM), {**_page("200 OK", "x"),
                    "tls": {"cert": "MIIB"}}, trusted_cert=True, cert_hostname_match=True)
    read = 0
    for hostile in _mutations(page, rng):
        m = {**line, censoredplanet.PAGES: [hostile, "not a page", None]}
        converted = censoredplanet.convert(m)
        verdict = verdict_for(converted, default_matcher())
        assert verdict.status in ("ok", "anomaly", "failure")
        read += bool(converted["test_keys"].get("requests"))
        orjson.dumps(converted)
    assert read > 100, read


# --------------------------------------------------------------------------- Hyperquack v1 (2018-2021)

def _v1(keyword: str, results: list[dict[str, Any]], retries: int = 0, **fields: Any) -> dict[str, Any]:
    """A line of Hyperquack v1's results.json (docs/hyperquackv1.rst; censoredplanet-analysis's tests of it)."""
    return {"Server": "198.18.9.7", "Keyword": keyword, "Retries": retries, "Results": results,
            "Blocked": True, "FailSanity": False, "StatefulBlock": False, **fields}


def _v1_trial(second: int, sent: str, **fields: Any) -> dict[str, Any]:
    return {"Sent": sent, "Success": False, "StartTime": f"2020-11-06T15:24:{second:02d}.124508839-05:00",
            "EndTime": f"2020-11-06T15:24:{second:02d}.812075476-05:00", **fields}


MISMATCH = "Incorrect web response: status lines don't match"
HANDSHAKE_TIMEOUT = "net/http: TLS handshake timeout"
V1_CASES: dict[str, tuple[str, dict[str, Any], tuple[str, str, float]]] = {
    "a known blockpage": ("http", _v1("example.org", [_v1_trial(1, "example.org", Error=MISMATCH,
                                                                Received=_page("200 OK", BELTELECOM))]),
                          ("anomaly", "http.blockpage", 0.95)),
    "another page than the template": ("https", _v1("example.org", [_v1_trial(1, "example.org", Error=MISMATCH,
                                                    Received={**_page("403 Forbidden", UNKNOWN_PAGE),
                                                              "tls": {"version": 771, "cert": "MIIB"}})]),
                                       ("anomaly", "http.blockpage", 0.5)),
    "the template": ("http", _v1("example.org", [{**_v1_trial(1, "example.org"), "Success": True}], Blocked=False),
                     ("ok", "none", 0.85)),
    "silence in the handshake, the control served after": (
        "https", _v1("example.org", [_v1_trial(1, "", Error=HANDSHAKE_TIMEOUT),
                                     _v1_trial(2, "", Error=HANDSHAKE_TIMEOUT),
                                     {**_v1_trial(3, "example5718349450314.com"), "Success": True}], retries=1),
        ("anomaly", "tls.drop", 0.75)),
    "a reset, the control not served after either": (
        "https", _v1("example.org", [_v1_trial(1, "", Error=RESET), _v1_trial(2, "", Error=RESET)], retries=0,
                     FailSanity=True),
        ("failure", "none", 0.0)),
    "an echo altered, the controls too": (
        "echo", _v1("example.org", [
            _v1_trial(1, "GET / HTTP/1.1\r\nHost: example.org\r\n\r\n", Received="HTTP/1.1 503 Service Unavailable",
                      Error="Incorrect echo response"),
            _v1_trial(2, "", Error="i/o timeout"), _v1_trial(3, "", Error="i/o timeout"),
            _v1_trial(4, "GET / HTTP/1.1\r\nHost: example5718349450314.com\r\n\r\n",
                      Received="HTTP/1.1 403 Forbidden", Error="Incorrect echo response")], retries=1, FailSanity=True),
        ("failure", "none", 0.0)),
    "an echo altered, the control's intact after": (
        "echo", _v1("example.org", [
            _v1_trial(1, "GET / HTTP/1.1\r\nHost: example.org\r\n\r\n", Received="HTTP/1.1 403 Forbidden",
                      Error="Incorrect echo response"),
            {**_v1_trial(2, "GET / HTTP/1.1\r\nHost: example5718349450314.com\r\n\r\n"), "Success": True}]),
        ("anomaly", "middlebox", 0.6)),
}


@pytest.mark.parametrize("case", list(V1_CASES))
def test_each_kind_of_hyperquack_v1_probe_reaches_the_remote_web_verdict(case: str) -> None:
    service, line, (status, mechanism, confidence) = V1_CASES[case]
    with pytest.raises(censoredplanet.Unreadable, match="whose protocol only its scan's name says"):
        censoredplanet.convert(line)
    m = censoredplanet.convert({**line, censoredplanet.SERVICE: service})
    assert (m["test_name"], m["test_version"], m["software_version"], m["input"], m["measurement_start_time"]) == (
        "remote_web", "hyperquack-v1", "1", "example.org", "2020-11-06 20:24:01")
    assert m["test_keys"]["protocols"] == [service]
    verdict = verdict_for(m, default_matcher())
    assert (verdict.status, verdict.mechanism, verdict.confidence) == (status, mechanism, confidence), verdict
    # the same records without v1's mark need a control probe before the test, as v2's rules do
    tk = m["test_keys"]
    if status != "failure":
        bare = {**m, "test_keys": {k: v for k, v in tk.items() if k != "x_control_after_only"}}
        assert verdict_for(bare, default_matcher()).status == "failure"


def test_the_records_of_a_v1_line() -> None:
    service, line, _ = V1_CASES["silence in the handshake, the control served after"]
    tk = censoredplanet.convert({**line, censoredplanet.SERVICE: service})["test_keys"]
    assert [(h["server_name"], h["tags"], h["failure"]) for h in tk["tls_handshakes"]] == [
        ("example.org", ["https", "test"], "generic_timeout_error"),
        ("example.org", ["https", "test"], "generic_timeout_error"),
        ("example5718349450314.com", ["https", "vantage_after"], None)]
    assert tk["x_censoredplanet"]["format"] == "hyperquack-v1" and tk["x_censoredplanet"]["retries"] == 1
    assert tk["x_censoredplanet"]["anomaly"] is True and tk["x_censoredplanet"]["controls_failed"] is False
    assert censoredplanet.service_of("/d/CP_Quack-https-2020-11-06-15-15-31.tar.gz!CP_Quack-https-2020-11-06-"
                                     "15-15-31/results.json") == "https"
    assert censoredplanet.service_of("/d/results.json") is None


def test_analyze_reads_a_v1_scan_and_keeps_its_protocol_with_each_line(tmp_path: Path) -> None:
    lines = {case: orjson.dumps(line) for case, (service, line, _) in V1_CASES.items() if service == "https"}
    data = b"\n".join(lines.values()) + b"\n"
    name = "CP_Quack-https-2020-11-06-15-15-31"
    scan = _archive(tmp_path / f"{name}.tar.gz", {  # as published: the vantages and domains beside the results
        f"{name}/servers.txt": b"198.18.9.7\n", f"{name}/results.json": data, f"{name}/domains.txt": b"x.org\n"})
    db, jsonl = tmp_path / "v1.duckdb", tmp_path / "v.jsonl"
    res = _run("analyze", "--db", str(db), "--jsonl", str(jsonl), str(scan))
    assert res.returncode == 0 and "0 records skipped as bad input" in res.stdout, res.stdout + res.stderr
    # v1's Blocked is its anomaly flag (our failure, where its controls failed too, is in neither count)
    assert ("Censored Planet's lines: 3 read as remote_web or remote_dns measurements; where it flagged an anomaly "
            "we found interference in 2 of 2, where it did not in 0 of 0") in res.stdout, res.stdout
    rows = {r["x_mechanism"]: r for r in map(json.loads, jsonl.read_text().splitlines())}
    assert set(rows) == {"http.blockpage", "tls.drop", "none"}
    assert rows["tls.drop"]["x_confidence"] == "anomaly" and rows["tls.drop"]["test_name"] == "remote_web"
    assert rows["none"]["x_confidence"] == "failure"  # the controls failed too (FailSanity)
    with Store(db, create=False) as store:
        for case, line in lines.items():
            uid = next(r["measurement_uid"] for r in rows.values() if r["input"] == "example.org"
                       and store.raw(r["measurement_uid"]) is not None
                       and store.raw(r["measurement_uid"]).startswith(line[:-1]))  # type: ignore[union-attr]
            raw = store.raw(uid)
            assert raw == line[:-1] + b',"x_service":"https"}', case  # as published, its protocol added last
    redo = _run("analyze", "--reanalyse", "all", "--db", str(db))
    assert redo.returncode == 0 and ": 0 verdicts changed" in redo.stdout, redo.stdout + redo.stderr
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0)) as client:
        html = client.get(f"/m/{rows['tls.drop']['measurement_uid']}").text
    assert "with the protocol only its scan's name gave (<code>https</code>) added last" in html
    assert "tls.drop" in html and "generic_timeout_error" in html
    # read again from a copy whose name says no protocol: the same uids (nothing new), its lines not judged
    again = _run("analyze", "--reread", "--db", str(db), str(scan))
    assert "0 new" in again.stdout and "3 already in the store" in again.stdout, again.stdout
    plain = tmp_path / "results.json"
    plain.write_bytes(data)
    res = _run("analyze", "--db", str(tmp_path / "plain.duckdb"), str(plain))
    assert res.returncode == 1 and "whose protocol only its scan's name says" in res.stdout, res.stdout



def test_the_benchmarks_lines_of_censored_planet_are_read_whole(tmp_path: Path) -> None:
    """bench/analyze's section 1c times lines built as Censored Planet's scans write them: each must be read as a
    measurement, none rejected, or the rate it prints would be a rate of rejections."""
    from bench.analyze import build_cp_corpus

    corpus = tmp_path / "cp.jsonl"
    build_cp_corpus(corpus, 400)
    lines = corpus.read_bytes().splitlines()
    result = pipeline.analyse_batch([Line(str(corpus), i + 1, data) for i, data in enumerate(lines)])
    assert result.records == 400 and not result.rejections and not result.errors
    verdicts = result.verdicts.to_pylist()
    assert {v["test_name"] for v in verdicts} == {"remote_web", "remote_dns"} and len(verdicts) == 400
    mechanisms = {v["mechanism"] for v in verdicts}
    assert {"none", "dns.poison", "dns.nxdomain", "http.blockpage", "http.rst", "tls.rst"} <= mechanisms, mechanisms
    assert any(v["fingerprints"] for v in verdicts)  # Citizen Lab's real blockpages among the pages
    assert result.censoredplanet[0] == 400


def test_a_satellite_v1_line_read_with_and_without_its_scans_tags_is_one_measurement(tmp_path: Path) -> None:
    # Its country comes from the tagged_resolvers.json beside it, and the uid names the country: read once
    # without the tags (ZZ) and once with them (TM), the same line had two uids and two rows.
    lines = [orjson.dumps(censoredplanet.published(line)) for line, _ in SV1_CASES.values()]
    tags = b'{"resolver": "198.18.8.56", "country": "Turkmenistan"}\n'
    plain, tagged = tmp_path / "plain" / V1_SCAN / "raw", tmp_path / "tagged" / V1_SCAN / "raw"
    for raw in (plain, tagged):
        raw.mkdir(parents=True)
        (raw / "interference.json").write_bytes(b"\n".join(lines) + b"\n")
    (tagged / "tagged_resolvers.json").write_bytes(tags)

    said: list[str] = []

    def analyze(db: Path, jsonl: Path, *paths: Path) -> list[tuple[str, str]]:
        res = _run("analyze", "--db", str(db), "--jsonl", str(jsonl), *map(str, paths))
        assert res.returncode == 0, res.stdout + res.stderr
        said.append(res.stdout)
        return [(r["measurement_uid"], r["probe_cc"]) for r in map(json.loads, jsonl.read_text().splitlines())]

    n = len(lines)
    for first, then in ((plain, tagged), (tagged, plain)):
        db = tmp_path / f"{first.parent.parent.name}-first.duckdb"
        kept = analyze(db, tmp_path / "1.jsonl", first)
        again = analyze(db, tmp_path / "2.jsonl", then)
        assert len(kept) == n and again == kept  # the lines as the store holds them, from the first reading
        assert "already read under another uid" not in said[-2]
        assert f"0 new, {n} already in the store" in said[-1], said[-1]
        # the tags place every line's resolver (TM): each is a copy under another uid, and said so
        assert all(cc == "TM" for _, cc in kept) == (first is tagged) != all(cc == "ZZ" for _, cc in kept)
        assert f"\n{n} measurements already read under another uid" in said[-1], said[-1]
        with Store(db, create=False) as store:
            assert store.count("measurements") == store.count("verdicts") == n
            assert store.count("observations") > 0
            obs = store.con.execute("SELECT count(DISTINCT measurement_uid) FROM observations").fetchone()
            assert obs is not None and obs[0] == n
        # the uid of the other reading finds the measurement: the explorer and the API send it to the stored uid
        other = next(u for u, _ in analyze(tmp_path / f"{then.parent.parent.name}.duckdb", tmp_path / "o.jsonl", then))
        stored = next(u for u, _ in kept if u[-32:] == other[-32:])
        with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0)) as c:
            for path, to in ((f"/m/{other}", f"/m/{stored}"), (f"/m/{other}.json", f"/m/{stored}.json"),
                             (f"/api/v1/measurement/{other}", f"/api/v1/measurement/{stored}")):
                r = c.get(path, follow_redirects=False)
                assert (r.status_code, r.headers.get("location")) == (307, to), (path, r.status_code, r.text[:200])
                assert c.get(path, follow_redirects=True).status_code == 200
            assert c.get(f"/m/{stored}", follow_redirects=False).status_code == 200
            for unknown in (other[:-1] + ("0" if other[-1] != "0" else "1"), other.replace(other[:4], "1999", 1),
                            "20200902120001_TM_remotedns_" + "f" * 32, "not-a-uid"):
                assert c.get(f"/m/{unknown}", follow_redirects=False).status_code in (404,)
                assert c.get(f"/api/v1/measurement/{unknown}", follow_redirects=False).status_code == 404
    # both in one run, in one flush: the first copy is kept, the other names it
    both = analyze(tmp_path / "both.duckdb", tmp_path / "3.jsonl", tagged, plain)
    assert both[:n] == both[n:] and any(cc == "TM" for _, cc in both)
    assert f"{n} new, {n} already in the store" in said[-1] and f"\n{n} measurements already read under" in said[-1]
    with Store(tmp_path / "both.duckdb", create=False) as store:
        assert store.count("measurements") == n
