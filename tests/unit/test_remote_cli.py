"""Bad input to `tamperscope remote`: one line, exit 2, nothing written, nothing contacted; the resume key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tamperscope.model.asn import AsnTable
from tamperscope.nettests import remote_dns, remote_web
from tamperscope.nettests.base import Context, NettestError
from tamperscope.nettests.vantage import contactable, domain_name
from tamperscope.probe.engine import scan_output
from tamperscope.probe.remote import _key, resume_key, vantage_probe

from .test_probe_cli import cli  # the CLI in a process of its own, without the lab's TAMPERSCOPE_* variables


@pytest.mark.parametrize("args,needle", [
    (["remote", "dns", "-i", "x.org"], "needs at least one --vantage"),
    (["remote", "dns", "-V", "1.2.3", "-i", "x.org"], "a vantage must be an IP address, not '1.2.3'"),
    (["remote", "dns", "-V", "127.0.0.1", "-i", "x.org"], "cannot be a vantage"),
    # QA: the broadcast address was taken (each record then failed with permission_denied), and a URL's port out
    # of range was dropped in silence
    (["remote", "web", "-V", "255.255.255.255", "-i", "x.org"], "cannot be a vantage"),
    (["remote", "dns", "-V", "240.0.0.1", "-i", "x.org"], "cannot be a vantage"),
    (["remote", "web", "-V", "169.254.1.1", "-i", "x.org"], "cannot be a vantage"),
    (["remote", "web", "-V", "192.0.2.1", "-i", "http://example.org:99999/"], "not a domain name"),
    (["remote", "dns", "-V", "192.0.2.1"], "needs --input or --list"),
    (["remote", "web", "-V", "192.0.2.1", "-i", "exa mple.org"], "not a domain name"),
    (["remote", "web", "-V", "192.0.2.1", "-i", "192.0.2.7"], "not a domain name"),
    (["remote", "dns", "-V", "192.0.2.1", "-i", "x.org", "--per-vantage", "0"], "--per-vantage"),
    (["remote", "dns", "-V", "192.0.2.1", "-i", "x.org", "--tries", "11"], "--tries"),
    (["remote", "web", "-V", "192.0.2.1", "-i", "x.org", "--residual-wait", "nan"], "--residual-wait"),
    (["remote", "dns", "-V", "192.0.2.1", "-i", "x.org", "--allow-net", "10.0.0.0/33"], "--allow-net"),
    (["remote", "dns", "-V", "192.0.2.1", "-i", "x.org", "--control-domain", "a..b"], "--control-domain"),
    (["remote", "dns", "-V", "192.0.2.1", "-i", "x.org", "--resolver", "nope"], "--resolver must be an IP"),
    (["remote", "dns", "--vantages", "missing.txt", "-i", "x.org"], "cannot read vantage list missing.txt"),
    (["remote", "ftp", "-V", "192.0.2.1", "-i", "x.org"], "invalid choice"),
    (["remote", "web", "-V", "192.0.2.1", "-i", "x.org", "--https-port", "0"], "--https-port must be between"),
    (["remote", "web", "-V", "192.0.2.1", "-i", "x.org", "--http-port", "70000"], "--http-port must be between"),
    # options of the other kind were accepted and did nothing
    (["remote", "dns", "-V", "192.0.2.1", "-i", "x.org", "--residual-wait", "5"],
     "--residual-wait is for `remote web`"),
    (["remote", "dns", "-V", "192.0.2.1", "-i", "x.org", "--protocol", "echo"], "--protocol is for `remote web`"),
    (["remote", "dns", "-V", "192.0.2.1", "-i", "x.org", "--http-port", "80"], "--http-port is for `remote web`"),
    (["remote", "dns", "-V", "192.0.2.1", "-i", "x.org", "--echo-port", "7"], "--echo-port is for `remote web`"),
    (["remote", "web", "-V", "192.0.2.1", "-i", "x.org", "--resolver", "9.9.9.9"], "--resolver is for `remote dns`"),
    (["remote", "web", "-V", "192.0.2.1", "-i", "x.org", "--allow-net", "10.0.0.0/8"],
     "--allow-net is for `remote dns`"),
    # the help says loopback never
    (["remote", "dns", "-V", "192.0.2.1", "-i", "x.org", "--allow-net", "127.0.0.0/8"], "loopback is never allowed"),
    (["remote", "dns", "-V", "192.0.2.1", "-i", "x.org", "--allow-net", "0.0.0.0/0"], "loopback is never allowed"),
    (["remote", "dns", "-V", "192.0.2.1", "-i", "x.org", "--allow-net", "::1/128"], "loopback is never allowed"),
    (["remote", "dns", "-V", "192.0.2.1", "-i", "x.org", "--allow-net", "::ffff:127.0.0.0/104"],
     "loopback is never allowed"),
    (["remote", "dns", "-V", "192.0.2.1", "-i", "x.org", "--allow-net", "::ffff:0:0/96"], "loopback is never allowed"),
])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path: Path, args: list[str], needle: str) -> None:
    res = cli(*args, "-o", "out.jsonl", "--yes", cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr and res.stderr.strip().count("\n") == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "out.jsonl").exists()
    assert not (tmp_path / "config").exists()  # no consent recorded: nothing ran


def test_a_bad_vantage_list_line_is_named(tmp_path: Path) -> None:
    (tmp_path / "v.txt").write_text("# resolvers\n192.0.2.1\n192.0.2.300\n")
    res = cli("remote", "dns", "--vantages", "v.txt", "-i", "x.org", "-o", "out.jsonl", "--yes", cwd=tmp_path)
    assert res.returncode == 2 and "v.txt: line 3: a vantage must be an IP address" in res.stderr, res.stderr
    (tmp_path / "v.txt").write_text("# resolvers\n192.0.2.1\n")
    res = cli("remote", "dns", "--vantages", "v.txt", "-i", "x.org", "-o", "v.txt", "--yes", cwd=tmp_path)
    assert res.returncode == 2 and "is also a list" in res.stderr
    assert (tmp_path / "v.txt").read_text() == "# resolvers\n192.0.2.1\n"


def test_resume_counts_a_domain_once_per_vantage(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    lines = [{"test_name": "remote_dns", "input": "x.org", "test_keys": {"vantage": "192.0.2.1"}},
             {"test_name": "remote_dns", "input": "x.org", "test_keys": {"vantage": "192.0.2.2"}},
             {"test_name": "remote_dns", "input": "y.org", "test_keys": "hostile"},
             {"test_name": "remote_web", "input": "z.org", "test_keys": {"vantage": "192.0.2.1"}}]
    out.write_text("".join(json.dumps(m) + "\n" for m in lines))
    seen = scan_output(out, "remote_dns", key=_key).seen
    assert len(seen) == 2  # these two, and nothing else
    assert resume_key("192.0.2.1", "x.org") in seen and resume_key("192.0.2.2", "x.org") in seen
    assert resume_key("192.0.2.1", "z.org") not in seen and "y.org" not in seen


def test_the_envelope_names_the_vantages_network() -> None:
    table = AsnTable.from_text("192.0.2.0\t192.0.2.255\t64501\tTM\tTURKMENTELECOM\n", "t")
    p = vantage_probe("192.0.2.53", table, None, remote_dns)
    assert (p.cc, p.asn, p.network_name, p.resolver_ip) == ("TM", 64501, "TURKMENTELECOM", "192.0.2.53")
    p = vantage_probe("198.51.100.1", table, "tm", remote_web)
    assert (p.cc, p.asn, p.resolver_ip) == ("tm", 0, "")


def test_answers_outside_public_space_are_never_contacted() -> None:
    import ipaddress

    lab = (ipaddress.ip_network("198.18.0.0/15"),)
    assert not contactable("127.0.0.1", lab) and not contactable("0.0.0.0", lab)
    assert not contactable("10.0.0.1", ()) and not contactable("169.254.169.254", lab)
    assert not contactable("::ffff:127.0.0.1", lab) and not contactable("ff02::1", lab)
    assert not contactable("198.18.1.81", ()) and contactable("198.18.1.81", lab)
    assert contactable("8.8.8.8", ()) and not contactable("not-an-ip", lab)


def test_domains_are_checked_as_the_nettests_read_them() -> None:
    assert domain_name("HTTPS://Www.Example.ORG/path", "t") == "www.example.org"
    assert domain_name("bücher.de.", "t") == "xn--bcher-kva.de"
    for bad in ("", "a..b", "exa mple.org", "10.0.0.1", "[::1]", "x" * 300 + ".org"):
        with pytest.raises(NettestError):
            domain_name(bad, "t")


def test_a_remote_nettest_without_a_vantage_refuses_to_run() -> None:
    import asyncio

    for mod in (remote_dns, remote_web):
        with pytest.raises(NettestError, match="needs a vantage"):
            asyncio.run(mod.run("x.org", Context()))


def test_already_counts_only_this_runs_pairs() -> None:
    from tamperscope.probe.remote import _held, _todo
    from tamperscope.probe.seen import Seen

    seen = Seen([resume_key("192.0.2.1", "x.org"), resume_key("192.0.2.1", "y.org"),
                 resume_key("192.0.2.9", "x.org"), resume_key("192.0.2.2", "z.org")])
    vantages, domains = ["192.0.2.1", "192.0.2.2", "192.0.2.3"], ["x.org", "z.org"]
    held = _held(seen, vantages, domains)
    assert held == {"192.0.2.1": b"\x01\x00", "192.0.2.2": b"\x00\x01"}  # 2 of this run's pairs; 192.0.2.3 none
    assert sum(mask.count(1) for mask in held.values()) == 2
    assert list(_todo(vantages, domains, held)) == [("192.0.2.1", ["z.org"]), ("192.0.2.2", ["x.org"]),
                                                    ("192.0.2.3", ["x.org", "z.org"])]
    assert _held(seen, ["192.0.2.3"], ["x.org"]) == {} and _held(Seen(), ["192.0.2.1"], ["x.org"]) == {}
    everything = Seen(resume_key(v, d) for v in vantages for d in domains)
    assert list(_todo(vantages, domains, _held(everything, vantages, domains))) == []  # all measured: none left


def test_a_large_output_is_said_before_it_is_read(tmp_path: Path) -> None:
    """At TMC's scale a resume reads tens of gigabytes first: the run says so, rather than print nothing for
    minutes. Here the output holds the one pair asked for, then 256 MiB of blank lines (kept, as any blank line):
    nothing is left to measure, so nothing is contacted."""
    from tamperscope.probe import engine

    out = tmp_path / "big.jsonl"
    m = {"annotations": {"engine_name": "tamperscope"}, "test_name": "remote_dns", "input": "x.org",
         "test_keys": {"vantage": "198.18.2.7"}}
    with out.open("w") as f:
        f.write(json.dumps(m) + "\n")
        for _ in range(engine.SAID_READING >> 20):
            f.write(" " * ((1 << 20) - 1) + "\n")
    size = out.stat().st_size
    res = cli("remote", "dns", "-V", "198.18.2.7", "-i", "x.org", "-o", "big.jsonl", "--yes", "--no-progress",
              cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert lines[0] == ("tamperscope: reading big.jsonl (256 MiB) to resume: the measurements it holds are not "
                        "made again"), res.stderr
    assert "on 1 domain(s) through 1 vantage(s) (1 measurement(s) already in big.jsonl)" in lines[1]
    assert out.stat().st_size == size  # nothing measured, nothing appended
    said: list[str] = []
    engine.scan_output(tmp_path / "big.jsonl", "remote_dns", key=_key, say=said.append)
    assert len(said) == 1
    out.write_text(json.dumps(m) + "\n")  # a small output is read without a word
    engine.scan_output(out, "remote_dns", key=_key, say=said.append)
    assert len(said) == 1
