"""Bad user input refused in one line with exit code 2, from a QA pass: paths and URLs whose bytes are not UTF-8
(which reach Python as lone surrogates, and which DuckDB, a measurement and a request cannot hold), options given
empty (which read as "not given" or as the current directory), a STUN port 0, --submit-timeout without --submit,
the message naming an unknown nettest, a listening address with a port, and a test list named like no country.

Offline: the probe's nettests are fakes (`tests/unit/test_probe_input_checks.Probe`), no server is started (the
serve and helper options are refused while parsing, or by the helper's own check), locate is checked, not run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tamperscope import cli
from tamperscope.analysis import store as store_module
from tamperscope.analysis.categories import read_test_list
from tamperscope.analysis.store import Store, StoreError
from tamperscope.cli import UsageError
from tamperscope.helper.server import BadOption, check_options
from tamperscope.model.inputs import BadInput, check_utf8, listen_host, not_utf8, parse_url
from tamperscope.nettests.base import NettestError
from tamperscope.nettests.stunreachability import endpoint_of
from tamperscope.probe import locate as L
from tests.unit.test_probe_hostile_input import Result
from tests.unit.test_probe_input_checks import Probe

SAMPLE = (Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"
          / "successWithHTTP" / "measurement.json")
NOT_UTF8 = os.fsdecode(b"\xff")  # what a byte that is not UTF-8 in argv or the environment becomes: '\udcff'
LIST = "url,category_code\nhttps://a.example/,NEWS\n"


def _main(argv: list[str]) -> int:
    """`cli.main`, with the exit code of a refusal by the parser (which exits) returned as the script's is."""
    try:
        return cli.main(argv)
    except SystemExit as e:
        return int(e.code or 0)


class _Probe(Probe):
    """`Probe`, whose consent is never given unless asked with --yes (no terminal, nothing typed)."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
        super().__init__(tmp_path, monkeypatch, capfd)
        monkeypatch.setattr(sys, "stdin", io.StringIO(""))
        self.consent_file = tmp_path / "home" / ".config" / "tamperscope" / "consent.json"

    def main(self, *argv: str) -> Result:
        self.capfd.readouterr()
        code = _main(list(argv))
        said = self.capfd.readouterr()
        return Result(code, said.out, said.err)


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> _Probe:
    return _Probe(tmp_path, monkeypatch, capfd)


def _one_line(capfd: pytest.CaptureFixture[str]) -> str:
    err = capfd.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for k in list(os.environ):
        if k.startswith("TAMPERSCOPE_") or k.startswith("XDG_"):
            monkeypatch.delenv(k)
    (tmp_path / "home").mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _measurements(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(json.loads(SAMPLE.read_text(encoding="utf-8"))) + "\n", encoding="utf-8")
    return path


def _refused_while_parsing(capfd: pytest.CaptureFixture[str], *argv: str) -> str:
    """argv refused by the parser (nothing run, no server started): exit 2, one line."""
    with pytest.raises(SystemExit) as e:
        cli.build_parser(argv[0]).parse_args(list(argv))
    assert e.value.code == 2
    return _one_line(capfd)


# --------------------------------------------------------------------------- 1. paths that are not UTF-8


def test_the_shared_check_names_the_byte_and_lets_utf8_through() -> None:
    assert not_utf8("/tmp/ü/ok.duckdb") is None and not_utf8(Path("plain")) is None
    assert not_utf8(f"/tmp/x/{NOT_UTF8}.duckdb") == "byte 0xff"
    with pytest.raises(BadInput, match=r"^--db /tmp/x/\\xff\.duckdb: not UTF-8 \(byte 0xff\)"):
        check_utf8(f"/tmp/x/{NOT_UTF8}.duckdb", "--db")


@pytest.mark.parametrize("command", [["analyze", "{input}"], ["report"], ["export", "--parquet", "{tmp}/pq"]])
def test_a_db_path_not_utf8_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capfd: pytest.CaptureFixture[str], command: list[str]) -> None:
    _clean_env(monkeypatch, tmp_path)
    argv = [a.format(input=_measurements(tmp_path), tmp=tmp_path) for a in command]
    bad = str(tmp_path / f"{NOT_UTF8}.duckdb")
    capfd.readouterr()
    assert _main([*argv, "--db", bad]) == 2  # was RuntimeError: std::bad_cast from duckdb.connect
    assert r"\xff.duckdb: not UTF-8 (byte 0xff)" in _one_line(capfd)
    monkeypatch.setenv("TAMPERSCOPE_DB", bad)
    assert _main(argv) == 2
    assert _one_line(capfd).startswith(r"tamperscope: $TAMPERSCOPE_DB ") and not os.listdir(tmp_path / "home")
    assert sorted(os.listdir(tmp_path)) == ["home", "in.jsonl"]  # no store, no export made


def test_serve_refuses_a_db_path_not_utf8_before_it_opens_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capfd: pytest.CaptureFixture[str]) -> None:
    _clean_env(monkeypatch, tmp_path)
    bad = str(tmp_path / f"{NOT_UTF8}.duckdb")
    assert "argument --db: " in _refused_while_parsing(capfd, "serve", "--db", bad, "--port", "1")
    monkeypatch.setenv("TAMPERSCOPE_DB", bad)  # checked before the server starts: never listening on port 1
    assert _main(["serve", "--port", "1", "--quiet"]) == 2
    assert r"$TAMPERSCOPE_DB " in _one_line(capfd) and os.listdir(tmp_path) == ["home"]


def test_the_store_itself_refuses_a_name_duckdb_cannot_open(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"not UTF-8 \(byte 0xff\)"):
        Store(tmp_path / f"{NOT_UTF8}.duckdb")
    assert os.listdir(tmp_path) == []


def test_a_test_list_path_not_utf8_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capfd: pytest.CaptureFixture[str]) -> None:
    _clean_env(monkeypatch, tmp_path)
    listed = tmp_path / f"tl{NOT_UTF8}.csv"
    listed.write_text(LIST, encoding="utf-8")
    db = str(tmp_path / "s.duckdb")
    capfd.readouterr()
    # was _duckdb.InvalidInputException (surrogate '\udcff') from categories.store_lists
    assert _main(["analyze", "--test-list", str(listed), "--db", db]) == 2
    assert "argument --test-list: " in _one_line(capfd) and not os.path.exists(db)
    assert "argument --test-list: " in _refused_while_parsing(capfd, "serve", "--test-list", str(listed), "--db", db)
    with pytest.raises(BadInput, match=r"not UTF-8"):  # and wherever else a list is read for the store
        read_test_list(listed)


def test_an_export_to_a_directory_not_utf8_is_exit_2_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                        capfd: pytest.CaptureFixture[str]) -> None:
    _clean_env(monkeypatch, tmp_path)
    db = str(tmp_path / "s.duckdb")
    assert _main(["analyze", str(_measurements(tmp_path)), "--db", db, "--quiet"]) == 0
    before = sorted(os.listdir(tmp_path))
    capfd.readouterr()
    assert _main(["export", "--parquet", str(tmp_path / f"{NOT_UTF8}pq"), "--db", db]) == 2  # was 1
    assert r"--parquet " in _one_line(capfd) and sorted(os.listdir(tmp_path)) == before  # no empty directory


def test_an_export_that_fails_removes_the_directory_it_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "s.duckdb")
    try:
        with pytest.raises(StoreError, match="not UTF-8"):
            store.export_parquet(tmp_path / f"{NOT_UTF8}pq")

        def full(self: Store, out: Path) -> dict[str, int]:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(store_module.Store, "_export_into", full)
        with pytest.raises(OSError):
            store.export_parquet(tmp_path / "new" / "pq")
        assert not (tmp_path / "new" / "pq").exists()
        (tmp_path / "mine").mkdir()
        with pytest.raises(OSError):  # a directory that was there before stays
            store.export_parquet(tmp_path / "mine")
        assert (tmp_path / "mine").is_dir()
    finally:
        store.close()


# --------------------------------------------------------------------------- 3. URLs and inputs not UTF-8


def test_parse_url_refuses_bytes_that_are_not_utf8() -> None:
    with pytest.raises(BadInput, match=r"not UTF-8 \(byte 0xff\): write such a byte percent-encoded \(%FF\)"):
        parse_url(f"http://198.18.1.1/{NOT_UTF8}")
    assert parse_url("http://198.18.1.1/%FF").path == "/%FF"


@pytest.mark.parametrize("nettest,value", [
    ("web_connectivity", f"http://198.18.1.1/{NOT_UTF8}"),
    ("throttling", f"http://198.18.1.1/{NOT_UTF8}"),
    ("evasion", f"http://198.18.1.1/{NOT_UTF8}"),
    ("dnscheck", f"a{NOT_UTF8}.example"),
    ("blocking_rules", f"https://198.18.1.1/{NOT_UTF8}"),
    ("tls_mitm", f"https://198.18.1.1/{NOT_UTF8}"),
    ("echcheck", f"https://198.18.1.1/{NOT_UTF8}"),
    ("stunreachability", f"stun://a{NOT_UTF8}.example"),
    ("http_invalid_request_line", f"198.18.1.7:7{NOT_UTF8}"),
])
def test_every_nettest_refuses_an_input_not_utf8_before_consent(probe: _Probe, nettest: str, value: str) -> None:
    res = probe.main("run", nettest, "-i", value, "-o", "out.jsonl")  # without --yes: consent never reached
    assert res.code == 2 and "not UTF-8 (byte 0xff)" in res.line, res.err
    assert probe.measured == [] and not (probe.dir / "out.jsonl").exists() and not probe.consent_file.exists()


@pytest.mark.parametrize("option", ["--helper", "--doh", "--submit"])
def test_a_helper_doh_or_collector_url_not_utf8_is_refused(probe: _Probe, option: str) -> None:
    res = probe.main("run", "web_connectivity", "--yes", "-i", "http://198.18.1.1/", option,
                     f"http://198.18.1.1/{NOT_UTF8}", "-o", "out.jsonl")
    assert res.code == 2 and res.line.startswith(f"tamperscope: {option}: malformed URL http://198.18.1.1/\\xff: "
                                                 "not UTF-8"), res.err
    assert probe.measured == [] and not (probe.dir / "out.jsonl").exists()


def test_remote_refuses_a_domain_not_utf8(probe: _Probe) -> None:
    res = probe.main("remote", "dns", "--yes", "-V", "198.18.1.53", "-i", f"a{NOT_UTF8}.example", "-o", "out.jsonl")
    assert res.code == 2 and "not UTF-8 (byte 0xff)" in res.line and probe.measured == []


def _locate_args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    L.add_parser(p.add_subparsers())
    return p.parse_args(["locate", *argv])


def test_locate_refuses_a_url_not_utf8() -> None:
    with pytest.raises(UsageError, match=r"not UTF-8 \(byte 0xff\)"):
        L._check(_locate_args(f"http://198.18.1.1/{NOT_UTF8}"))


# --------------------------------------------------------------------------- 4-6. options given empty


def test_an_empty_outbox_is_refused_not_the_current_directory(probe: _Probe) -> None:
    res = probe.main("run", "web_connectivity", "--yes", "-i", "http://198.18.1.1/", "--submit", "http://127.0.0.1:9/",
                     "--outbox", "", "-o", "out.jsonl")
    assert res.code == 2 and "argument --outbox: expected a path, not ''" in res.line
    assert probe.measured == [] and os.listdir(probe.dir) == []


def test_locate_refuses_an_empty_resolver_as_run_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAMPERSCOPE_PUBLIC_RESOLVER", raising=False)
    with pytest.raises(UsageError, match=r"^--resolver must be an IPv4 address .*, not ''$"):
        L._check(_locate_args("http://a.example/", "--resolver", ""))  # was: 8.8.8.8, silently
    monkeypatch.setenv("TAMPERSCOPE_PUBLIC_RESOLVER", "nope")
    with pytest.raises(UsageError, match=r"^\$TAMPERSCOPE_PUBLIC_RESOLVER must be"):
        L._check(_locate_args("http://a.example/"))
    monkeypatch.setenv("TAMPERSCOPE_PUBLIC_RESOLVER", "")  # an empty variable is an unset one, as run takes it
    assert L._check(_locate_args("http://a.example/"))[1] == "8.8.8.8"
    assert L._check(_locate_args("http://a.example/", "--resolver", "198.18.0.53"))[1] == "198.18.0.53"


@pytest.mark.parametrize("argv", [
    ["run", "web_connectivity", "--asn-table", ""],
    ["run", "web_connectivity", "--ca-bundle", ""],
    ["run", "web_connectivity", "--list", ""],
    ["run", "web_connectivity", "--output", ""],
    ["run", "web_connectivity", "--fingerprints", ""],
    ["run", "tor", "--tor-targets", ""],
    ["run", "vanilla_tor", "--tor-network", ""],
    ["run", "vanilla_tor", "--tor-bridges", ""],
    ["run", "wireguard", "--wg-config", ""],
    ["remote", "dns", "--asn-table", ""],
    ["remote", "dns", "--ca-bundle", ""],
    ["remote", "dns", "--vantages", ""],
    ["analyze", "x", "--jsonl", ""],
    ["analyze", "x", "--fingerprints", ""],
    ["analyze", "x", "--asn-table", ""],
    ["analyze", "x", "--db", ""],
    ["report", "--html", ""],
    ["report", "--json", ""],
    ["report", "--propose-fingerprints", ""],
    ["serve", "--findings", ""],
    ["serve", "--fingerprints", ""],
    ["serve", "--admin-token-file", ""],
    ["serve", "--test-list", ""],
    ["helper", "--ca-bundle", ""],
    ["helper", "--asn-table", ""],
    ["lab", "expect", "--profile", "none", "--list", ""],
])
def test_an_empty_path_option_is_refused_not_taken_as_unset_or_the_cwd(capfd: pytest.CaptureFixture[str],
                                                                       argv: list[str]) -> None:
    line = _refused_while_parsing(capfd, *argv)
    assert f"argument {argv[-2]}" in line and "expected a path, not ''" in line


def test_analyze_with_an_empty_jsonl_writes_nothing_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capfd: pytest.CaptureFixture[str]) -> None:
    _clean_env(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    assert _main(["analyze", str(_measurements(tmp_path)), "--db", "s.duckdb", "--jsonl", ""]) == 2  # was 0
    assert "--jsonl" in _one_line(capfd) and sorted(os.listdir(tmp_path)) == ["home", "in.jsonl"]


def test_the_helper_refuses_an_empty_resolver() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    from tamperscope.helper import command

    command.add_parser(sub)
    args = p.parse_args(["helper", "--resolver", ""])
    with pytest.raises(BadOption, match=r"^--resolver must be an IP address, not ''$"):  # was: the system's
        check_options(args)
    args = p.parse_args(["helper"])
    check_options(args)
    assert args.resolver is None  # not given: the system resolver
    args = p.parse_args(["helper", "--resolver", "198.18.0.53"])
    check_options(args)
    assert args.resolver == "198.18.0.53"


# --------------------------------------------------------------------------- 7. STUN port 0


def test_a_stun_port_0_is_refused_not_taken_as_3478(probe: _Probe) -> None:
    with pytest.raises(NettestError, match="port 0"):
        endpoint_of("stun://198.18.0.1:0")
    assert endpoint_of("stun://198.18.0.1") == ("198.18.0.1", 3478)
    assert endpoint_of("198.18.0.1:19302") == ("198.18.0.1", 19302)
    res = probe.main("run", "web_connectivity", "--yes", "-i", "http://198.18.1.1/", "--stun",
                     "stun://198.18.0.1:0", "-o", "out.jsonl")
    assert res.code == 2 and "--stun must be a STUN server" in res.line and probe.measured == []
    res = probe.main("run", "stunreachability", "--yes", "-i", "stun://198.18.0.1:0", "-o", "out.jsonl")
    assert res.code == 2 and "port 0" in res.line and probe.measured == []


# --------------------------------------------------------------------------- 8. --submit-timeout


@pytest.mark.parametrize("value", ["5", "nan", "-1", "inf"])
def test_submit_timeout_without_submit_is_refused(probe: _Probe, value: str) -> None:
    res = probe.main("run", "web_connectivity", "--yes", "-i", "http://198.18.1.1/", "--submit-timeout", value,
                     "-o", "out.jsonl")
    assert res.code == 2 and res.line == "tamperscope: --submit-timeout goes with --submit URL"
    assert probe.measured == [] and not (probe.dir / "out.jsonl").exists()


@pytest.mark.parametrize("value", ["nan", "-1", "inf", "0", "86401"])
def test_submit_timeout_out_of_range_is_refused(probe: _Probe, value: str) -> None:
    res = probe.main("run", "web_connectivity", "--yes", "-i", "http://198.18.1.1/", "--submit",
                     "http://127.0.0.1:9/", "--submit-timeout", value, "-o", "out.jsonl")
    assert res.code == 2 and "--submit-timeout must be more than 0 and at most 86400 seconds" in res.line
    assert probe.measured == []


# --------------------------------------------------------------------------- 9. messages and country codes


def test_an_unknown_nettest_is_said_whole(probe: _Probe) -> None:
    res = probe.main("run", "nope", "-i", "http://198.18.1.1/")
    assert res.code == 2 and len(res.line) < 300, res.line  # whole: not cut to 300 characters in the middle
    assert res.line.startswith("tamperscope: unknown nettest 'nope': ") and "`tamperscope run --help`" in res.line
    assert res.line.endswith("(im, circumvention)")
    res = probe.main("run", "web_conectivity", "-i", "http://198.18.1.1/")
    assert res.code == 2 and "did you mean web_connectivity?" in res.line


@pytest.mark.parametrize("value", ["localhost:80", "127.0.0.1:8080", "[::1]:8080"])
def test_a_listening_address_with_a_port_says_so(capfd: pytest.CaptureFixture[str], value: str) -> None:
    with pytest.raises(BadInput, match="is not an address: give the host alone, and the port with --port"):
        listen_host(value)
    capfd.readouterr()
    assert _main(["serve", "--host", value, "--port", "1"]) == 2
    line = _one_line(capfd)
    assert "IPv6" not in line and "the port with --port" in line
    assert listen_host("::1") == "::1" and listen_host("[::1]") == "::1" and listen_host("localhost") == "localhost"


@pytest.mark.parametrize("value, words", [("224.0.0.1", "is a multicast group"), ("ff02::1", "is a multicast group"),
                                          ("255.255.255.255", "is the broadcast address")])
@pytest.mark.parametrize("command", ["serve", "helper"])
def test_a_server_is_not_told_to_listen_on_a_group(capfd: pytest.CaptureFixture[str], value: str, words: str,
                                                   command: str) -> None:
    # `helper --host 224.0.0.1` said it was "listening on http://224.0.0.1:18080/"
    with pytest.raises(BadInput, match=words):
        listen_host(value)
    capfd.readouterr()
    assert _main([command, "--host", value, "--port", "1"]) == 2
    assert words in _one_line(capfd)
    assert listen_host("0.0.0.0") == "0.0.0.0" and listen_host("::") == "::"


@pytest.mark.parametrize("name,cc", [("tm.csv", "TM"), ("RU.csv", "RU"), ("xk.csv", "XK"), ("ok.csv", "ZZ"),
                                     ("xx.csv", "ZZ"), ("uk.csv", "ZZ"), ("global.csv", "ZZ")])
def test_a_test_list_is_for_a_country_only_when_its_name_is_a_country_code(tmp_path: Path, name: str,
                                                                           cc: str) -> None:
    (tmp_path / name).write_text(LIST, encoding="utf-8")
    assert read_test_list(tmp_path / name).cc == cc


def test_analyze_says_a_list_not_named_after_a_country_is_for_every_country(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    _clean_env(monkeypatch, tmp_path)
    (tmp_path / "ok.csv").write_text(LIST, encoding="utf-8")
    capfd.readouterr()
    assert _main(["analyze", "--test-list", str(tmp_path / "ok.csv"), "--db", str(tmp_path / "s.duckdb")]) == 0
    out: Any = capfd.readouterr().out
    assert "test list ok.csv: 1 entry, 1 with a category, for every country" in out
