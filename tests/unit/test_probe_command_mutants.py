"""`tamperscope run`'s option checks, pinned where a mutation pass found them loose: the limits of each number
option (both ends), the empty environment variable that means "not set", resolver addresses no resolver answers
from, country and AS codes, --recheck's selection on a resumed output, and the consent plan's wording.

Offline: the nettests are fakes (`tests.unit.test_probe_input_checks.Probe`), nothing is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from tamperscope import cli
from tamperscope.cli import UsageError
from tamperscope.nettests.base import NettestError
from tamperscope.probe import command
from tamperscope.probe.engine import Progress, RunStats
from tests.unit.test_probe_input_checks import Probe, probe  # noqa: F401 (a fixture)
from tests.unit.test_recheck import line
from tests.unit.test_telegram import refuse_consent

URL = "http://198.18.1.1/"


def _settings(*argv: str) -> command.Settings:
    """`command.settings` of `tamperscope run ARGV -o out.jsonl` (in the probe's working directory)."""
    return command.settings(cli.build_parser().parse_args(["run", *argv, "-o", "out.jsonl"]))


def _refused(*argv: str) -> str:
    """The one line `command.settings` refuses `tamperscope run ARGV` with."""
    with pytest.raises(UsageError) as e:
        _settings(*argv)
    return str(e.value)


# ---- number options: the last value taken and the first refused


def test_parallel_takes_1024_and_refuses_1025(probe: Probe) -> None:  # noqa: F811
    """--parallel's upper limit is 1024 inclusive: 1024 runs, 1025 is one line, exit 2, nothing measured."""
    res = probe.main("run", "web_connectivity", "--yes", "--no-progress", "-i", URL, "--parallel", "1025",
                     "-o", "out.jsonl")
    assert (res.code, res.line) == (2, "tamperscope: --parallel must be between 1 and 1024")
    assert probe.measured == []
    res = probe.main("run", "web_connectivity", "--yes", "--no-progress", "-i", URL, "--parallel", "1024",
                     "-o", "out.jsonl")
    assert res.code == 0, res.err
    assert probe.measured == [URL]


def test_max_runtime_is_at_most_a_week() -> None:
    """--max-runtime takes 604800 s (a week) and refuses a second more, naming the limit."""
    command.check_max_runtime(argparse.Namespace(max_runtime=7 * 86400.0))
    with pytest.raises(UsageError, match=r"at most 604800 seconds \(a week\), not 604801"):
        command.check_max_runtime(argparse.Namespace(max_runtime=7 * 86400.0 + 1))


@pytest.mark.parametrize("after, taken", [(None, 120.0), ("0", 0.0), ("86400", 86400.0)])
def test_recheck_after_takes_zero_to_a_day_and_defaults_to_120(probe: Probe,  # noqa: F811
                                                               after: str | None, taken: float) -> None:
    """--recheck-after from 0 (at once) to 86400 s; without it a recheck waits 120 s."""
    extra = ("--recheck-after", after) if after is not None else ()
    assert _settings("web_connectivity", "-i", URL, "--recheck", *extra).recheck == taken


def test_recheck_after_past_a_day_is_refused(probe: Probe) -> None:  # noqa: F811
    """A second past a day is refused in one line naming the range."""
    assert _refused("web_connectivity", "-i", URL, "--recheck", "--recheck-after", "86401") == \
        "--recheck-after must be from 0 to 86400 seconds (a day), not 86401.0"


@pytest.mark.parametrize("wait", ["0", "3600"])
def test_residual_wait_takes_zero_and_an_hour(probe: Probe, wait: str) -> None:  # noqa: F811
    """--residual-wait 0 (never measure again) and 3600 (an hour) are both taken."""
    assert _settings("web_connectivity", "-i", URL, "--residual-wait", wait).inputs == [URL]


def test_residual_wait_past_an_hour_is_refused(probe: Probe) -> None:  # noqa: F811
    """--residual-wait 3601 is refused in one line naming the range."""
    assert _refused("web_connectivity", "-i", URL, "--residual-wait", "3601") == \
        "--residual-wait must be from 0 to 3600 seconds, not 3601.0"


# ---- country and network


@pytest.mark.parametrize("given, asn", [("1", 1), ("AS4294967295", 4294967295), ("as13335", 13335)])
def test_asn_takes_1_to_the_largest_32_bit_number_with_or_without_as(given: str, asn: int) -> None:
    """--asn: 1 … 2**32-1, bare or after AS in either case."""
    assert command._asn(given) == asn


@pytest.mark.parametrize("given", ["0", "AS0", "4294967296", "AS 1", "ASN1"])
def test_asn_refuses_zero_and_past_32_bits(given: str) -> None:
    """--asn 0 (unknown) and 2**32 are refused, naming the range."""
    with pytest.raises(UsageError, match=r"--asn must be an AS number from 1 to 4294967295"):
        command._asn(given)


def test_cc_is_recorded_in_capitals_and_is_two_letters() -> None:
    """--cc br is recorded BR; three letters are refused rather than cut."""
    assert command._cc("br") == "BR"
    with pytest.raises(UsageError, match="two-letter country code"):
        command._cc("bra")


# ---- resolvers


@pytest.mark.parametrize("value, why", [("0.0.0.0", "no host's (unspecified)"), ("::", "no host's (unspecified)"),
                                        ("224.0.0.1", "a multicast group's"),
                                        ("255.255.255.255", "the broadcast address")])
def test_a_resolver_no_host_answers_from_is_refused(probe: Probe, value: str, why: str) -> None:  # noqa: F811
    """--resolver 0.0.0.0 / :: / a multicast group / 255.255.255.255: one line saying which it is."""
    assert _refused("dnscheck", "-i", "a.example", "--resolver", value) == \
        f"--resolver must be a resolver's address, not {value!r}: it is {why}"


def test_a_zone_goes_only_with_a_link_local_address_on_an_interface_this_machine_has(
        probe: Probe) -> None:  # noqa: F811
    """fe80::1%lo is taken (lo is an interface); a zone on a global address, or naming no interface, is refused."""
    assert _settings("dnscheck", "-i", "a.example", "--resolver", "fe80::1%lo").public == "fe80::1%lo"
    index = socket.if_nametoindex("lo")
    assert _settings("dnscheck", "-i", "a.example", "--resolver", f"fe80::1%{index}").public == f"fe80::1%{index}"
    assert _refused("dnscheck", "-i", "a.example", "--resolver", "2001:db8::1%lo").startswith(
        "--resolver: a zone (%lo) goes only with a link-local address (fe80::/10)")
    assert _refused("dnscheck", "-i", "a.example", "--resolver", "fe80::1%nosuchif9") == \
        "--resolver: 'fe80::1%nosuchif9' names an interface this machine does not have ('nosuchif9')"


def test_an_empty_variable_is_not_set_but_an_empty_option_is_a_mistake(probe: Probe,  # noqa: F811
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """$TAMPERSCOPE_PUBLIC_RESOLVER= (empty) means the default 8.8.8.8 and $TAMPERSCOPE_RESOLVER= the system's;
    --resolver '' is refused."""
    monkeypatch.setenv("TAMPERSCOPE_PUBLIC_RESOLVER", "")
    monkeypatch.setenv("TAMPERSCOPE_RESOLVER", "")
    s = _settings("dnscheck", "-i", "a.example")
    assert (s.public, s.isp) == ("8.8.8.8", "192.0.2.53")
    assert _refused("dnscheck", "-i", "a.example", "--resolver", "") == "--resolver must be an IP address, not ''"


def test_the_helper_url_is_kept_without_surrounding_spaces_and_only_where_it_is_used(probe: Probe  # noqa: F811
                                                                                      ) -> None:
    """--helper ' http://h.example/ ' is kept stripped for web_connectivity, and dropped for a nettest that does
    not ask a helper (telegram)."""
    s = _settings("web_connectivity", "-i", URL, "--helper", " http://h.example/ ")
    assert s.helper == "http://h.example/"
    assert _settings("telegram", "--helper", "http://h.example/").helper is None


def test_the_system_resolver_is_the_first_nameserver_line_that_is_an_address(monkeypatch: pytest.MonkeyPatch,
                                                                              tmp_path: Path) -> None:
    """/etc/resolv.conf: a nameserver line whose value is no address is passed over, a bare `nameserver` too."""
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nnameserver\nnameserver dns.example\nnameserver 192.0.2.7 extra\n"
                    "nameserver 192.0.2.8\n")
    real_open = open

    def fake_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        return real_open(conf if path == "/etc/resolv.conf" else path, *args, **kwargs)

    monkeypatch.setattr(command, "open", fake_open, raising=False)
    assert command._system_resolver() == "192.0.2.7"
    conf.write_text("nameserver 192.0.2.9\n")
    assert command._system_resolver() == "192.0.2.9"


# ---- the collector and its outbox


def test_outbox_without_submit_is_refused(probe: Probe) -> None:  # noqa: F811
    """--outbox alone is one line: it goes with --submit."""
    assert _refused("dnscheck", "-i", "a.example", "--outbox", "box") == "--outbox goes with --submit URL"


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/?", "http://127.0.0.1:9/#", "http://127.0.0.1:9/?a=1"])
def test_a_collector_url_with_a_query_or_fragment_is_refused(probe: Probe, url: str) -> None:  # noqa: F811
    """Even an empty query or fragment (a trailing ? or #) is refused: the API's paths are appended."""
    assert _refused("dnscheck", "-i", "a.example", "--submit", url) == \
        f"--submit must be a collector's URL without a query or fragment, not {url!r}"


def test_the_collector_url_scheme_is_lowered(probe: Probe) -> None:  # noqa: F811
    """--submit HTTP://… is kept (and named in the consent plan) as http://…"""
    s = _settings("dnscheck", "-i", "a.example", "--submit", "HTTP://127.0.0.1:9/")
    assert s.submit == "http://127.0.0.1:9/"
    assert "the collector http://127.0.0.1:9/." in command.plan(s)


def test_sizes_are_said_in_binary_units_from_exactly_one_unit() -> None:
    """1024 bytes is 1.0 KiB, 1023 bytes is 1023 B; 2**30 is 1.0 GiB."""
    assert [command._size(n) for n in (1023, 1024, 1 << 20, 1 << 30, 1 << 40)] == \
        ["1023 B", "1.0 KiB", "1.0 MiB", "1.0 GiB", "1.0 TiB"]


# ---- evasion's strategies, inputs and lists


def test_strategies_named_twice_are_tried_once(probe: Probe) -> None:  # noqa: F811
    """--strategies a,b,a keeps the first order, each once."""
    from tamperscope.model.evasion import BY_NAME

    a, b = list(BY_NAME)[:2]
    s = _settings("evasion", "-i", "https://a.example/", "--strategies", f"{a}, {b},{a}")
    assert s.strategies == (a, b)


def test_an_input_given_twice_is_measured_once(probe: Probe) -> None:  # noqa: F811
    """-i X -i X (and the same URL in a list) is one measurement."""
    (probe.dir / "l.txt").write_text(f"{URL}\n")
    res = probe.main("run", "web_connectivity", "--yes", "--no-progress", "-i", URL, "-i", URL, "-l", "l.txt",
                     "-o", "out.jsonl")
    assert res.code == 0, res.err
    assert probe.measured == [URL]


def test_the_first_list_to_file_a_url_gives_its_category_in_capitals(probe: Probe) -> None:  # noqa: F811
    """A URL in two lists takes the first list's category, upper-cased whatever the list wrote."""
    (probe.dir / "a.csv").write_text(f"url,category_code\n{URL},news\n")
    (probe.dir / "b.csv").write_text(f"url,category_code\n{URL},HUMR\n")
    s = _settings("web_connectivity", "-l", "a.csv", "-l", "b.csv")
    assert s.inputs == [URL] and s.categories == {URL: "NEWS"}


def test_a_url_given_with_input_is_recorded_as_a_list_would_write_it(probe: Probe) -> None:  # noqa: F811
    """-i http://a.example (no path) is measured and recorded as http://a.example/, as its list entry would be."""
    res = probe.main("run", "web_connectivity", "--yes", "--no-progress", "-i", "http://a.example", "-o", "out.jsonl")
    assert res.code == 0, res.err
    assert probe.measured == ["http://a.example/"] and probe.inputs() == ["http://a.example/"]


# ---- the output


def test_an_output_that_is_also_a_list_is_refused(probe: Probe) -> None:  # noqa: F811
    """-o FILE -l FILE: one line, the list left as it was."""
    (probe.dir / "l.txt").write_text("a.example\n")
    res = probe.main("run", "dnscheck", "--yes", "-l", "l.txt", "-o", "l.txt")
    assert (res.code, res.line) == (2, "tamperscope: --output l.txt is also a --list: refusing to append "
                                       "measurements to it")
    assert (probe.dir / "l.txt").read_text() == "a.example\n" and probe.measured == []


def test_recheck_on_a_resumed_output_measures_again_what_it_holds_once_blocked(probe: Probe  # noqa: F811
                                                                                ) -> None:
    """An output holding one blocked measurement of an input: the same run with --recheck measures it again (at
    once with --recheck-after 0), and one holding an open one does not."""
    blocked, open_ = "http://198.18.1.1/", "http://198.18.1.2/"
    (probe.dir / "out.jsonl").write_text(line(blocked, "http.rst", "http-failure", False)
                                         + line(open_, "none", False, True))
    res = probe.main("run", "web_connectivity", "--yes", "--no-progress", "-i", blocked, "-i", open_,
                     "--recheck", "--recheck-after", "0", "-o", "out.jsonl")
    assert res.code == 0, res.err
    assert probe.measured == [blocked]
    assert "of 1 input(s) found blocked or failing" in res.err


# ---- what the consent notice says


def test_the_plan_names_three_inputs_without_an_ellipsis_and_the_default_resolver(
        probe: Probe, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Three inputs are all named; a fourth is an ellipsis; the public resolver is 8.8.8.8 by default."""
    asked = refuse_consent(monkeypatch)
    urls = [f"http://198.18.1.{n}/" for n in range(1, 5)]
    assert probe.main("run", "web_connectivity", "-i", urls[0], "-i", urls[1], "-i", urls[2], "-o", "o").code == 2
    assert probe.main("run", "web_connectivity", *[x for u in urls for x in ("-i", u)], "-o", "o").code == 2
    assert asked[0].startswith(f"This run would contact: the targets of 3 input(s) ({', '.join(urls[:3])}); ")
    assert asked[1].startswith(f"This run would contact: the targets of 4 input(s) ({', '.join(urls[:3])}, …); ")
    assert "; the public resolver 8.8.8.8" in asked[0]
    assert probe.measured == []


def test_an_unknown_nettest_is_named_whole_up_to_60_characters_and_a_near_name_is_suggested() -> None:
    """A name of 60 characters is said whole, one of 61 is cut with an ellipsis; 'tlgram' suggests telegram."""
    assert "'" + "x" * 60 + "'" in command.unknown_nettest("x" * 60)
    assert "'" + "x" * 60 + "…'" in command.unknown_nettest("x" * 61)
    assert "did you mean telegram? " in command.unknown_nettest("tlgram")
    assert "did you mean" not in command.unknown_nettest("zzzzzz")


# ---- files named by options


def test_a_ca_bundle_that_is_a_directory_is_said_to_be_no_file(probe: Probe) -> None:  # noqa: F811
    """--ca-bundle DIR: "is not a file", not an error from reading it; a missing one: "does not exist"."""
    (probe.dir / "certs").mkdir()
    assert _refused("web_connectivity", "-i", URL, "--ca-bundle", "certs") == "CA bundle certs is not a file"
    assert _refused("web_connectivity", "-i", URL, "--ca-bundle", "none.pem") == "CA bundle none.pem does not exist"


def test_a_tor_targets_file_of_exactly_the_cap_is_read_and_one_byte_more_is_refused(probe: Probe  # noqa: F811
                                                                                    ) -> None:
    """A --tor-targets file of exactly 4 MiB is read (and judged on what it holds); 4 MiB + 1 is too large."""
    path = probe.dir / "targets.json"
    path.write_bytes(b" " * command.MAX_TOR_TARGETS_FILE)
    said = _refused("tor", "--tor-targets", "targets.json")
    assert said.startswith("--tor-targets: targets.json: ") and "larger than" not in said
    path.write_bytes(b" " * (command.MAX_TOR_TARGETS_FILE + 1))
    assert _refused("tor", "--tor-targets", "targets.json") == "--tor-targets: targets.json is larger than 4 MiB"


# ---- the end of a run, and --recheck


def test_max_runtime_says_nothing_when_every_measurement_was_made(capsys: pytest.CaptureFixture[str]) -> None:
    """With --max-runtime and nothing left, no "reached" line; with one left, the line and how to resume."""
    assert command.conclude(RunStats(total=2, done=2), False, True, "out.jsonl", "x", max_runtime=5.0) == 0
    assert capsys.readouterr().err == ""
    assert command.conclude(RunStats(total=2, done=1), False, True, "out.jsonl", "x", max_runtime=5.0) == 0
    assert capsys.readouterr().err == ("tamperscope: --max-runtime 5 s reached: 1 measurement(s) not started; the "
                                       "same command makes them next (what is in out.jsonl is skipped)\n")


def test_inputs_not_measured_make_the_exit_status_1(capsys: pytest.CaptureFixture[str]) -> None:
    """A run with inputs it could not measure ends 1 (they are tried again next run); a recheck not made too."""
    assert command.conclude(RunStats(total=2, done=1, errors=1), False, True, "out.jsonl", "input(s) failed") == 1
    assert "1 input(s) failed (said above); they are not in out.jsonl" in capsys.readouterr().err
    again = RunStats(total=1, errors=1, found={})
    assert command.said_rechecks(again, {}, RunStats(found={})) == 1
    assert "1 recheck(s) could not be made" in capsys.readouterr().err
    assert command.said_rechecks(RunStats(found={}), {}, RunStats(found={})) == 0


def test_no_recheck_starts_while_the_first_measurements_are_unfinished(capsys: pytest.CaptureFixture[str]) -> None:
    """When --max-runtime left some first measurements unmade, the rechecks are not started either (even with no
    deadline to wait for): they are counted as left for the next run."""
    measured: list[list[str]] = []

    async def measure(inputs: list[str], counts: RunStats, shown: Progress) -> None:
        measured.append(inputs)

    stats, again = RunStats(total=2, done=1, found={}), RunStats(found={})
    due = {URL: ("http.rst", 0.0)}
    asyncio.run(command.recheck_stage(due, 0.0, stats, again, Progress(stats, enabled=False), None, False, measure))
    assert measured == [] and again.total == 1
    stats = RunStats(total=2, done=2, found={})
    asyncio.run(command.recheck_stage(due, 0.0, stats, again, Progress(stats, enabled=False), None, False, measure))
    assert measured == [[URL]]


def test_an_entry_the_nettest_refuses_is_named_by_its_number_in_the_whole_list(probe: Probe,  # noqa: F811
                                                                               monkeypatch: pytest.MonkeyPatch
                                                                               ) -> None:
    """web_connectivity: an entry the nettest's own check refuses (`check_input`, after the list was read) is
    named "entry 2" when second, counted over the whole list even when --category passed over the first.
    (Today the list reader refuses first whatever the check would: the check is stood in for here.)"""
    bad = "http://198.18.1.2/"
    real = command.check_input

    def refuse(nettest: Any, value: str | None, *, backend: str | None = None) -> None:
        if value == bad:
            raise NettestError("refused here")
        real(nettest, value, backend=backend)

    monkeypatch.setattr(command, "check_input", refuse)
    (probe.dir / "l.csv").write_text(f"url,category_code\nhttp://198.18.1.1/,NEWS\n{bad},HUMR\n")
    assert _refused("web_connectivity", "-l", "l.csv") == "l.csv: entry 2: refused here"
    assert _refused("web_connectivity", "-l", "l.csv", "--category", "HUMR") == "l.csv: entry 2: refused here"


def test_tor_targets_given_to_another_nettest_is_refused_in_this_process(probe: Probe,  # noqa: F811
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """--tor-targets with whatsapp is one line (not ignored); $TAMPERSCOPE_TOR_TARGETS (the lab's) is passed over
    by whatsapp and read by tor."""
    (probe.dir / "t.json").write_text('{"a": {"address": "198.18.1.9:443", "protocol": "or_port"}}')
    assert _refused("whatsapp", "--tor-targets", "t.json") == "--tor-targets is for the tor nettest"
    monkeypatch.setenv("TAMPERSCOPE_TOR_TARGETS", "t.json")
    assert _settings("whatsapp").tor_targets is None
    targets = _settings("tor").tor_targets
    assert targets is not None and targets.path == "t.json" and len(targets.targets) == 1


def test_a_file_named_dash_is_written_when_named_dot_slash_dash(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`-o -` is standard output; `-o ./-` names a file called "-" (the usual way to say so). It went to standard
    output: the option's Path drops the "./" (the pass's one bug). Any option of files reads it so."""
    from tamperscope import nettests

    monkeypatch.chdir(tmp_path)
    dash = cli.build_parser().parse_args(["run", "dnscheck", "-o", "./-"]).output
    assert str(dash) != "-" and dash == tmp_path / "-"
    out, resume = command._output(argparse.Namespace(output=dash, list=[], recheck=False), nettests.load("dnscheck"))
    assert out == tmp_path / "-" and resume.regular is True
    stdout, _ = command._output(argparse.Namespace(output=cli.path_arg("-"), list=[], recheck=False),
                                nettests.load("dnscheck"))
    assert stdout is None
    assert cli.path_arg("-") == Path("-") and cli.path_arg("a/-") == Path("a/-")
