"""`tamperscope remote`'s settings at their edges: the bounds of each option, the vantages and domains kept once,
the envelope's country, the plan shown before consent. In this process, offline: `settings` only checks and reads."""

from __future__ import annotations

import argparse
import ipaddress
import os
from pathlib import Path

import pytest

from tamperscope.cli import UsageError, build_parser
from tamperscope.model.asn import EMPTY, AsnTable
from tamperscope.nettests import remote_dns, remote_web
from tamperscope.probe import remote
from tamperscope.probe.remote import LAB_NET, plan, settings, vantage_probe


@pytest.fixture(autouse=True)
def _no_tamperscope_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for k in list(os.environ):
        if k.startswith("TAMPERSCOPE_"):
            monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)


def _args(kind: str, *argv: str) -> argparse.Namespace:
    return build_parser("remote").parse_args(["remote", kind, "-V", "192.0.2.1", "-i", "x.org", "-o", "out.jsonl",
                                              *argv])


def _refused(kind: str, *argv: str) -> str:
    with pytest.raises(UsageError) as exc:
        settings(_args(kind, *argv))
    assert "\n" not in str(exc.value)
    return str(exc.value)


def test_parallel_takes_1_to_1024() -> None:
    """A bound off by one would refuse --parallel 1024 (or take 1025)."""
    assert settings(_args("dns", "--parallel", "1024")).timeout == 120.0
    settings(_args("dns", "--parallel", "1"))
    assert "--parallel must be between 1 and 1024" in _refused("dns", "--parallel", "1025")
    assert "--parallel" in _refused("dns", "--parallel", "0")


def test_per_vantage_takes_1_to_64() -> None:
    """More than 64 at once through one vantage loads someone's server: 65 must be refused, 64 taken."""
    settings(_args("web", "--per-vantage", "64"))
    settings(_args("web", "--per-vantage", "1"))
    assert "--per-vantage must be between 1 and 64" in _refused("web", "--per-vantage", "65")


def test_residual_wait_takes_0_to_600_seconds() -> None:
    """0 (do not wait) and 600 are allowed; just over 600, or below 0, is not."""
    assert settings(_args("web", "--residual-wait", "0")).options["residual_wait"] == 0
    assert settings(_args("web", "--residual-wait", "600")).options["residual_wait"] == 600
    assert "not 600.5" in _refused("web", "--residual-wait", "600.5")
    assert "--residual-wait" in _refused("web", "--residual-wait", "-1")


def test_tries_takes_1_to_10() -> None:
    """--tries 1 (one attempt, no retry) is allowed; 0 is not."""
    assert settings(_args("dns", "--tries", "1")).options["tries"] == 1
    assert settings(_args("dns", "--tries", "10")).options["tries"] == 10
    assert "--tries must be between 1 and 10" in _refused("dns", "--tries", "0")
    assert "tries" not in settings(_args("dns")).options  # the nettest's own default then


def test_timeout_must_be_more_than_zero() -> None:
    """A timeout of 0 would fail every measurement at once; a day is the most."""
    assert "--timeout must be more than 0" in _refused("dns", "--timeout", "0")
    assert "--timeout" in _refused("dns", "--timeout", "nan")
    assert settings(_args("dns", "--timeout", "86400")).timeout == 86400


def test_ports_take_1_to_65535() -> None:
    """65535 is a port; 65536 is not (one past the bound was taken and failed later, at connect)."""
    s = settings(_args("web", "--http-port", "65535", "--https-port", "1", "--echo-port", "65535"))
    assert s.options["ports"] == {"http": 65535, "https": 1, "echo": 65535}
    assert "--echo-port must be between 1 and 65535, not 65536" in _refused("web", "--echo-port", "65536")
    assert "--https-port must be between 1 and 65535, not 65536" in _refused("web", "--https-port", "65536")
    assert settings(_args("web")).options["ports"] == {"http": 80, "https": 443, "echo": 7}


@pytest.mark.parametrize("vantage", ["224.0.0.1", "239.255.255.250", "ff02::1", "0.0.0.0", "::", "::1",
                                     "fe80::1"])
def test_a_multicast_unspecified_or_link_local_address_is_no_vantage(vantage: str) -> None:
    """A multicast group is no organisation's server: sending each domain to it reaches whoever listens."""
    message = _refused("dns", "-V", vantage)
    assert "cannot be a vantage" in message


def test_a_vantage_given_twice_is_measured_once(tmp_path: Path) -> None:
    """The same address spelled twice (or in another spelling of IPv6) is one vantage: one measurement per domain."""
    (tmp_path / "v.txt").write_text("192.0.2.1\n 2001:DB8:0::1 \n192.0.2.2\n")
    s = settings(_args("dns", "-V", "192.0.2.1", "-V", "2001:db8::1", "--vantages", "v.txt"))
    assert s.vantages == ["192.0.2.1", "2001:db8::1", "192.0.2.2"]


def test_the_number_of_vantages_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exactly MAX_VANTAGES is allowed; one more is refused, saying how many were given."""
    monkeypatch.setattr(remote, "MAX_VANTAGES", 2)
    assert settings(_args("dns", "-V", "192.0.2.2")).vantages == ["192.0.2.1", "192.0.2.2"]
    assert "at most 2 vantages in one run, not 3" in _refused("dns", "-V", "192.0.2.2", "-V", "192.0.2.3")


def test_a_country_without_a_network_in_the_table_is_not_the_envelopes() -> None:
    """An ASN table line without a network (AS0: not routed) says nothing of where the vantage is: ZZ, as OONI."""
    table = AsnTable.from_text("192.0.2.0\t192.0.2.255\t0\tTM\tNot routed\n"
                               "198.51.100.0\t198.51.100.255\t64501\tT1\tODD\n", "t")
    assert vantage_probe("192.0.2.53", table, None, remote_web).cc == "ZZ"
    assert vantage_probe("198.51.100.1", table, None, remote_web).cc == "ZZ"  # not two letters
    assert vantage_probe("203.0.113.1", EMPTY, None, remote_dns).cc == "ZZ"
    assert vantage_probe("203.0.113.1", EMPTY, "TM", remote_dns).cc == "TM"  # --cc, where the table says nothing


def test_a_protocol_given_twice_is_measured_once() -> None:
    """--protocol https --protocol https is one protocol: no domain is sent twice over it."""
    s = settings(_args("web", "--protocol", "https", "--protocol", "http", "--protocol", "https"))
    assert s.options["protocols"] == ("https", "http")
    assert "protocols" not in settings(_args("web")).options  # the nettest's default: http and https


def test_a_domain_in_two_lists_keeps_the_first_lists_category(tmp_path: Path) -> None:
    """--summary counts a domain under the category of the first list entry that names it."""
    (tmp_path / "a.csv").write_text("url,category_code\nhttps://a.example/,NEWS\nhttps://b.example/,HUMR\n")
    (tmp_path / "b.csv").write_text("url,category_code\nhttps://a.example/,LGBT\nhttps://c.example/,POLR\n")
    s = settings(build_parser("remote").parse_args(["remote", "dns", "-V", "192.0.2.1", "-l", "a.csv", "-l", "b.csv",
                                                    "-o", "out.jsonl"]))
    assert s.inputs == ["a.example", "b.example", "c.example"]
    assert s.categories == {"a.example": "NEWS", "b.example": "HUMR", "c.example": "POLR"}


def test_the_lab_network_is_allowed_only_in_the_lab(monkeypatch: pytest.MonkeyPatch) -> None:
    """Answers in 198.18.0.0/15 are validated in the lab only (TAMPERSCOPE_LAB=1), never outside it."""
    assert LAB_NET not in settings(_args("dns")).options["allow"]
    monkeypatch.setenv("TAMPERSCOPE_LAB", "1")
    assert settings(_args("dns", "--allow-net", "10.0.0.0/8")).options["allow"] == (
        ipaddress.ip_network("10.0.0.0/8"), LAB_NET)


def test_no_network_events_reaches_the_nettest() -> None:
    """--no-network-events must reach the nettest's options, or the output stays as large."""
    assert settings(_args("dns", "--no-network-events")).options["network_events"] is False
    assert settings(_args("dns")).options["network_events"] is True


def test_the_plan_names_three_vantages_and_elides_the_rest() -> None:
    """The consent's plan: three vantages shown whole (no '…'), a fourth elided; dns names its trusted resolver."""
    three = settings(_args("dns", "-V", "192.0.2.2", "-V", "192.0.2.3"))
    assert "3 in-country vantage(s) (192.0.2.1, 192.0.2.2, 192.0.2.3) about 1 domain(s)" in plan(three)
    assert "…" not in plan(three) and "the trusted resolver 8.8.8.8" in plan(three)
    four = settings(_args("web", "-V", "192.0.2.2", "-V", "192.0.2.3", "-V", "192.0.2.4"))
    assert "4 in-country vantage(s) (192.0.2.1, 192.0.2.2, 192.0.2.3, …)" in plan(four)
    assert "trusted resolver" not in plan(four)
