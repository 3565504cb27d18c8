"""Probe-side commands with hostile input, from a second audit: inputs that named a user (and would have been
published), evasion's URL checked as web_connectivity's is, lists saved with a byte-order mark or quoted as CSV,
bracketed hosts that are no IPv6 address, and `locate`'s triggers for an IDN name.

Offline: the nettests' `run` is replaced by a fake (no socket), the probe's own addresses are not looked up and
no name is resolved.
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

import orjson
import pytest

from tamperscope import cli, nettests
from tamperscope.model.inputs import BadInput, categories_by_line, first_column, parse_url
from tamperscope.nettests import evasion, remote_dns
from tamperscope.nettests.base import NettestError
from tamperscope.probe import command, privacy
from tamperscope.probe.engine import check_input
from tamperscope.probe.locate import trigger_payload
from tests.unit.test_probe_hostile_input import Result


class Probe:
    """`tamperscope run` and `remote` in this process, offline: fake nettests record what they measure."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
        self.dir = tmp_path / "work"
        self.dir.mkdir()
        (tmp_path / "home").mkdir()
        self.capfd = capfd
        self.measured: list[str | None] = []
        for k in list(os.environ):
            if k.startswith("TAMPERSCOPE_") or k == "XDG_CONFIG_HOME":
                monkeypatch.delenv(k)
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        monkeypatch.chdir(self.dir)

        def offline(*args: Any, **kwargs: Any) -> Any:
            raise socket.gaierror(socket.EAI_NONAME, "offline test")

        monkeypatch.setattr(socket, "getaddrinfo", offline)
        monkeypatch.setattr(privacy, "local_addresses", lambda peers: set())
        monkeypatch.setattr(command, "_matcher", lambda: None)
        monkeypatch.setattr(command, "_tune_gc", lambda: None)
        monkeypatch.setattr(command, "_system_resolver", lambda: "192.0.2.53")
        for mod in [nettests.load(name) for name in nettests.names()] + [remote_dns]:
            monkeypatch.setattr(mod, "run", self._fake_run)
            monkeypatch.setattr(mod, "finish", lambda m, ctx: None)

    async def _fake_run(self, input: str | None, ctx: Any) -> dict[str, Any]:
        self.measured.append(input)
        await asyncio.sleep(0)
        return {"x_fake": True, "vantage": ctx.options.get("vantage")}

    def main(self, *argv: str) -> Result:
        self.capfd.readouterr()
        code = cli.main(list(argv))
        said = self.capfd.readouterr()
        return Result(code, said.out, said.err)

    def inputs(self, name: str = "out.jsonl") -> list[str]:
        return [orjson.loads(x)["input"] for x in (self.dir / name).read_bytes().splitlines()]


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> Probe:
    return Probe(tmp_path, monkeypatch, capfd)


# ---- 1. an input naming a user is refused by every nettest: it is published with the measurement


@pytest.mark.parametrize("nettest,value", [
    ("dnscheck", "http://alice:secret@a.example/"),
    ("blocking_rules", "https://alice:secret@a.example/"),
    ("tls_mitm", "https://alice:secret@a.example/"),
    ("tls_mitm", "alice@a.example:443"),
    ("echcheck", "https://alice:secret@a.example/"),
    ("evasion", "https://alice:secret@a.example/"),
    ("http_invalid_request_line", "alice:secret@198.18.1.7:7"),
])
def test_an_input_with_a_user_name_or_password_is_refused(probe: Probe, nettest: str, value: str) -> None:
    res = probe.main("run", nettest, "--yes", "-i", value, "-o", "out.jsonl")
    assert res.code == 2 and "holds a user name or password" in res.line
    assert probe.measured == [] and not (probe.dir / "out.jsonl").exists()


def test_a_backend_with_a_user_name_is_refused(probe: Probe) -> None:
    res = probe.main("run", "http_header_field_manipulation", "--yes", "--backend", "bob@198.18.1.7:7",
                     "-o", "out.jsonl")
    assert res.code == 2 and "--backend must be" in res.line and probe.measured == []


def test_a_user_name_in_a_list_names_its_line(probe: Probe) -> None:
    (probe.dir / "l.txt").write_text("a.example\nhttps://u:p@b.example/\n")
    res = probe.main("run", "dnscheck", "--yes", "-l", "l.txt", "-o", "out.jsonl")
    assert res.code == 2 and res.line.startswith("tamperscope: l.txt: line 2: 'https://u:p@b.example/' holds")
    assert probe.measured == []


# ---- 2. evasion's URL is checked as web_connectivity's


@pytest.mark.parametrize("url,needle", [
    ("http://a.example:0/", "port 0"),                 # was measured on port 80
    ("http://a b/", "control characters or spaces"),   # was measured (and failed) as a name with a space
    ("http://-a.example/", "bad host name"),
    ("http://a..example/", "bad host name"),
    ("http://[v1.x]/", "only an IPv6 address goes in brackets"),
    ("a.example", "evasion needs an http(s) URL"),
])
def test_evasion_refuses_a_malformed_url_before_anything_runs(probe: Probe, url: str, needle: str) -> None:
    with pytest.raises(NettestError, match="evasion"):
        evasion.check_input(url)
    res = probe.main("run", "evasion", "--yes", "-i", url, "-o", "out.jsonl")
    assert res.code == 2 and needle in res.line
    assert probe.measured == [] and not (probe.dir / "out.jsonl").exists()


def test_evasion_still_takes_idn_and_ipv6_urls(probe: Probe) -> None:
    assert evasion._parse("https://Яндекс.рф/") == ("https", "xn--d1acpjx3f.xn--p1ai", 443)
    assert evasion._parse("http://[::1]:8080/x") == ("http", "::1", 8080)
    res = probe.main("run", "evasion", "--yes", "--no-progress", "-i", "https://яндекс.рф/", "-o", "out.jsonl")
    assert res.code == 0, res.err
    assert probe.measured == ["https://яндекс.рф/"]


# ---- 3. lists saved with a byte-order mark, or quoted as CSV, for every nettest and for remote


BOM = "\ufeff"


@pytest.mark.parametrize("nettest", ["dnscheck", "blocking_rules"])
def test_a_byte_order_mark_is_not_part_of_the_first_name(probe: Probe, nettest: str) -> None:
    (probe.dir / "l.txt").write_text(f"{BOM}a.example\r\nb.example\r\n", encoding="utf-8")
    res = probe.main("run", nettest, "--yes", "--no-progress", "-l", "l.txt", "-o", "out.jsonl")
    assert res.code == 0, res.err
    assert sorted(probe.inputs()) == ["a.example", "b.example"]  # was "\ufeffa.example", measured so


@pytest.mark.parametrize("nettest", ["tls_mitm", "echcheck", "evasion", "throttling"])
def test_a_list_with_a_byte_order_mark_or_quotes_is_read(probe: Probe, nettest: str) -> None:
    (probe.dir / "bom.txt").write_text(f"{BOM}https://a.example/\n", encoding="utf-8")
    (probe.dir / "quoted.csv").write_text('"url","category_code"\r\n"https://b.example/","NEWS"\r\n')
    res = probe.main("run", nettest, "--yes", "--no-progress", "-l", "bom.txt", "-l", "quoted.csv", "-o", "out.jsonl")
    assert res.code == 0, res.err  # was: "bom.txt: line 1: not a URL or domain: '\ufeffhttps://a.example/'"
    assert sorted(probe.inputs()) == ["https://a.example/", "https://b.example/"]


def test_a_quote_never_closed_names_its_line(probe: Probe) -> None:
    (probe.dir / "l.csv").write_text('url,category_code\na.example,X\n"b.example,NEWS\n')
    res = probe.main("run", "dnscheck", "--yes", "-l", "l.csv", "-o", "out.jsonl")
    assert res.code == 2 and "l.csv: line 3: not valid CSV: a quote opened here is never closed" in res.line
    assert probe.measured == []


def test_remote_reads_vantage_and_domain_lists_with_a_byte_order_mark_or_quotes(probe: Probe) -> None:
    (probe.dir / "v.csv").write_text(f'{BOM}"ip","asn"\r\n"198.18.1.53","AS1"\r\n', encoding="utf-8")
    (probe.dir / "d.csv").write_text(f'{BOM}"url","category_code"\r\n"a.example","NEWS"\r\n', encoding="utf-8")
    res = probe.main("remote", "dns", "--yes", "--no-progress", "--vantages", "v.csv", "-l", "d.csv",
                     "-o", "out.jsonl")
    assert res.code == 0, res.err  # was: "v.csv: line 1: a vantage must be an IP address, not '\ufeff"ip"'"
    assert probe.measured == ["a.example"] and probe.inputs() == ["a.example"]


def test_remote_names_the_line_of_a_quote_never_closed(probe: Probe) -> None:
    (probe.dir / "v.txt").write_text('198.18.1.53\n"198.18.1.54\n')
    res = probe.main("remote", "dns", "--yes", "--vantages", "v.txt", "-i", "a.example", "-o", "out.jsonl")
    assert res.code == 2 and "v.txt: line 2: not valid CSV" in res.line and probe.measured == []


def test_first_column() -> None:
    text = f'{BOM}# a comment\n\nURL,category_code\n"a.com","X"\n b.com , Y\n,Z\n"c,d.com"\n'
    assert first_column(text, "l") == [(4, "a.com"), (5, "b.com"), (7, "c,d.com")]
    assert first_column("ip\n198.18.1.2\n", "v", ("ip",)) == [(2, "198.18.1.2")]
    with pytest.raises(BadInput, match=r"^l: line 1: not valid CSV: ',' expected after"):
        first_column('"a.com"x,N\n', "l")


# ---- 4. brackets hold an IPv6 address, nothing else


@pytest.mark.parametrize("url", ["http://[v1.x]/", "https://[v7.example]:443/"])
def test_a_bracketed_host_that_is_not_ipv6_is_refused(url: str) -> None:
    with pytest.raises(BadInput, match="only an IPv6 address goes in brackets"):
        parse_url(url)  # urlsplit takes RFC 3986's IPvFuture "[v1.x]" as the name "v1.x"
    for name in ("tls_mitm", "echcheck"):
        with pytest.raises(NettestError):
            check_input(nettests.load(name), url)
    assert parse_url("http://[::1]:8080/").host == "::1"


# ---- 5. locate: the trigger carries an IDN name as the probe sends it


@pytest.mark.parametrize("layer", ["http", "tls", "ech", "quic", "dns"])
@pytest.mark.parametrize("name", ["яндекс.рф", "Яндекс.РФ."])
def test_locate_triggers_an_idn_name_in_its_ascii_form(layer: str, name: str) -> None:
    """`locate --layer quic http://яндекс.рф/` (or `--control яндекс.рф`) raised UnicodeEncodeError, a traceback,
    after the traceroute; `--layer http` sent the Host in UTF-8, which no censor matching xn-- names sees."""
    payload = trigger_payload(layer, name, "/")
    if layer in ("http", "tls", "dns"):  # ech and quic seal or encrypt the name
        assert b"xn--d1acpjx3f" in payload and "яндекс".encode() not in payload
    if layer == "http":
        assert b"\r\nHost: xn--d1acpjx3f.xn--p1ai\r\n" in payload


# ---- --category: a test list's websites by their Citizen Lab category

_CL_LIST = ("url,category_code,category_description,date_added,source,notes\n"
            "http://news.example/,NEWS,News Media,2014-04-15,citizenlab,\n"
            "https://rights.example/,humr,Human Rights Issues,2014-04-15,citizenlab,\n"
            "https://chat.example/,COMM,,2014-04-15,citizenlab,\n"
            "http://more-news.example/,NEWS,News Media,2014-04-15,citizenlab,\n")


def test_category_keeps_the_entries_of_those_codes_and_every_input(probe: Probe) -> None:
    (probe.dir / "cl.csv").write_text(_CL_LIST)
    res = probe.main("run", "web_connectivity", "--yes", "-l", "cl.csv", "--category", "news", "--category", "HUMR",
                     "-i", "https://own.example/", "-o", "out.jsonl")
    assert res.code == 0, res.err
    assert sorted(probe.measured) == ["http://more-news.example/", "http://news.example/", "https://own.example/",
                                      "https://rights.example/"]
    assert sorted(probe.inputs()) == sorted(probe.measured)  # type: ignore[type-var]


@pytest.mark.parametrize("args,message", [
    (["--category", "NEWS,LGBT"], "tamperscope: --category LGBT: no entry of the list is of this category; the list "
                                  "holds: NEWS 2, COMM 1, HUMR 1"),
    (["--category", "XXX,YYY", "-l", "cl2.csv"], "tamperscope: --category XXX,YYY: no entry of the lists is of these "
                                                 "categories; the lists hold: NEWS 3, COMM 1, HUMR 1"),
    (["--category", "NEWS", "-l", "plain.txt"], "tamperscope: --category: plain.txt has no categories (a Citizen Lab "
                                                "test-list CSV has a category_code column)"),
])
def test_category_refuses_what_it_cannot_pick_from(probe: Probe, args: list[str], message: str) -> None:
    (probe.dir / "cl.csv").write_text(_CL_LIST)
    (probe.dir / "cl2.csv").write_text("url,category_code\nhttp://third.example/,NEWS\n")
    (probe.dir / "plain.txt").write_text("http://a.example/\n")
    res = probe.main("run", "web_connectivity", "--yes", "-l", "cl.csv", *args, "-o", "out.jsonl")
    assert res.code == 2 and res.line == message, res.err
    assert probe.measured == [] and not (probe.dir / "out.jsonl").exists()


def test_category_is_for_a_list_of_websites(probe: Probe) -> None:
    (probe.dir / "cl.csv").write_text(_CL_LIST)
    res = probe.main("run", "web_connectivity", "--yes", "-i", "https://a.example/", "--category", "NEWS")
    assert res.code == 2 and res.line == ("tamperscope: --category picks entries of a --list (a Citizen Lab test-list "
                                          "CSV, with a category_code column)")
    res = probe.main("run", "dnscheck", "--yes", "-l", "cl.csv", "--category", "NEWS")
    assert res.code == 2 and res.line == ("tamperscope: --category picks a test list's websites by their category: it "
                                          "is for web_connectivity")
    assert probe.measured == []


def test_category_codes_are_a_few_capitals(probe: Probe) -> None:
    with pytest.raises(SystemExit) as exited:
        probe.main("run", "web_connectivity", "--yes", "-l", "cl.csv", "--category", "NEWS!")
    assert exited.value.code == 2
    assert probe.capfd.readouterr().err.strip().splitlines()[-1] == (
        "tamperscope run: argument --category: 'NEWS!' is not a list of category codes (NEWS,HUMR,…) (see "
        "tamperscope run --help)")


def test_remote_category_keeps_the_domains_of_those_codes(probe: Probe) -> None:
    """Censored Planet's measurements from outside, narrowed as `run` is: by the test list's categories."""
    (probe.dir / "v.txt").write_text("198.18.1.53\n")
    (probe.dir / "cl.csv").write_text(f"{BOM}# a comment\n" + _CL_LIST.replace("https://rights.example/",
                                                                                 '"https://rights.example/"'),
                                      encoding="utf-8")
    res = probe.main("remote", "dns", "--yes", "--no-progress", "--vantages", "v.txt", "-l", "cl.csv",
                     "--category", "humr,NEWS", "-i", "own.example", "-o", "out.jsonl")
    assert res.code == 0, res.err
    assert sorted(probe.measured) == ["more-news.example", "news.example", "own.example",  # type: ignore[type-var]
                                      "rights.example"]
    res = probe.main("remote", "web", "--yes", "--vantages", "v.txt", "-l", "cl.csv", "--category", "LGBT",
                     "-o", "w.jsonl")
    assert res.code == 2 and res.line == ("tamperscope: --category LGBT: no entry of the list is of this category; "
                                          "the list holds: NEWS 2, COMM 1, HUMR 1")
    (probe.dir / "plain.txt").write_text("a.example\n")
    res = probe.main("remote", "dns", "--yes", "--vantages", "v.txt", "-l", "plain.txt", "--category", "NEWS",
                     "-o", "p.jsonl")
    assert res.code == 2 and res.line == ("tamperscope: --category: plain.txt has no categories (a Citizen Lab "
                                          "test-list CSV has a category_code column)")
    res = probe.main("remote", "dns", "--yes", "--vantages", "v.txt", "-i", "a.example", "--category", "NEWS")
    assert res.code == 2 and "--category picks entries of a --list" in res.line
    assert len(probe.measured) == 4


def test_categories_by_line() -> None:
    text = f'{BOM}# mine\nurl,category_code,notes\nhttp://a.example/,news,"two\nlines"\nhttp://b.example/,,x\nc.example,HUMR\n'
    assert categories_by_line(text) == {3: "NEWS", 6: "HUMR"}
    assert categories_by_line("a.example\nb.example\n") == {} and categories_by_line("url,notes\na.example,x\n") == {}


# ---- --max-runtime: OONI Probe's max runtime; what is left is made by the next run


def test_max_runtime_starts_nothing_after_it_and_the_next_run_makes_the_rest(probe: Probe,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from tamperscope.nettests import web_connectivity

    async def slow(input: str | None, ctx: Any) -> dict[str, Any]:
        probe.measured.append(input)
        await asyncio.sleep(0.2)  # one at a time (--parallel 1): five take a second, past the 0.3 s allowed
        return {"x_fake": True}

    monkeypatch.setattr(web_connectivity, "run", slow)
    urls = [arg for i in range(5) for arg in ("-i", f"https://s{i}.example/")]
    res = probe.main("run", "web_connectivity", "--yes", "--no-progress", "--parallel", "1", "--max-runtime", "0.3",
                     *urls, "-o", "out.jsonl")
    assert res.code == 0, res.err
    made = len(probe.inputs())
    assert made < 5 and made == len(probe.measured)  # what was started was finished and written
    assert res.err.splitlines()[-1] == (f"tamperscope: --max-runtime 0.3 s reached: {5 - made} measurement(s) not "
                                        "started; the same command makes them next (what is in out.jsonl is skipped)")
    assert made >= 1  # the time counts from the first measurement, not from loading the fingerprints
    res = probe.main("run", "web_connectivity", "--yes", "--no-progress", *urls, "-o", "out.jsonl")
    assert res.code == 0 and "max-runtime" not in res.err
    assert sorted(probe.inputs()) == [f"https://s{i}.example/" for i in range(5)]  # each once


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "604801"])
def test_max_runtime_is_a_time_a_run_can_take(probe: Probe, value: str) -> None:
    for argv in (["run", "web_connectivity", "-i", "https://a.example/"],
                 ["remote", "dns", "-V", "198.18.1.53", "-i", "a.example"]):
        res = probe.main(*argv, "--yes", "--max-runtime", value, "-o", "out.jsonl")
        assert res.code == 2 and res.line == ("tamperscope: --max-runtime must be more than 0 and at most 604800 "
                                              f"seconds (a week), not {float(value)}"), (argv, res.err)
    assert probe.measured == []


def test_remote_max_runtime_counts_over_every_vantage(probe: Probe, monkeypatch: pytest.MonkeyPatch) -> None:
    async def slow(input: str | None, ctx: Any) -> dict[str, Any]:
        probe.measured.append(input)
        await asyncio.sleep(0.2)
        return {"x_fake": True, "vantage": ctx.options.get("vantage")}

    monkeypatch.setattr(remote_dns, "run", slow)
    (probe.dir / "v.txt").write_text("198.18.1.53\n198.18.1.54\n")
    args = ["remote", "dns", "--yes", "--no-progress", "--vantages", "v.txt", "-i", "a.example", "-i", "b.example",
            "-i", "c.example", "--parallel", "1", "--per-vantage", "1", "-o", "out.jsonl"]
    res = probe.main(*args, "--max-runtime", "0.3")
    assert res.code == 0, res.err
    made = len(probe.inputs())
    assert 1 <= made < 6 and made == len(probe.measured)
    assert res.err.splitlines()[-1] == (f"tamperscope: --max-runtime 0.3 s reached: {6 - made} measurement(s) not "
                                        "started; the same command makes them next (what is in out.jsonl is skipped)")
    res = probe.main(*args)
    assert res.code == 0, res.err
    pairs = [(m["test_keys"]["vantage"], m["input"])
             for m in map(orjson.loads, (probe.dir / "out.jsonl").read_bytes().splitlines())]
    assert len(pairs) == 6 and len(set(pairs)) == 6
