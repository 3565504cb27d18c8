"""`lab up --switch`: a lab that is up takes another profile, and then answers as a fresh lab with it would."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tamperscope.lab import addresses as A
from tamperscope.lab import manager

from .conftest import Lab

pytestmark = pytest.mark.lab
TS = [sys.executable, "-m", "tamperscope"]
KEPT = ("helper", "obfs4", "gateway", "wireguard", "tornet")  # what does not read the profile


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TS, *args], capture_output=True, text=True, timeout=120)


def _conntrack_entries(ns: str) -> int:
    return int(subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/sys/net/netfilter/nf_conntrack_count"],
                              capture_output=True, text=True, check=True).stdout)


def test_switch_restarts_only_what_reads_the_profile_and_answers_as_the_new_one(lab_factory) -> None:  # type: ignore[no-untyped-def]
    lab: Lab = lab_factory("middlebox")
    before = manager.read_state()
    assert before is not None
    # middlebox: the border's transparent proxy rewrites a plain HTTP request (and the log says so)
    sent = "GET /x HTTP/1.1\r\nHost: example.com\r\nUser-Agent: Plain\r\n\r\n"
    assert "Via: 1.1 lab-proxy" in lab.one("raw_echo", A.ECHO, sent)["data"]
    assert lab.logged("proxy") and _conntrack_entries(A.NS_BORDER) > 0

    res = _cli("lab", "up", "--profile", "tm-like", "--switch")
    assert res.returncode == 0, res.stderr
    assert "profile tm-like" in res.stdout
    after = manager.read_state()
    assert after is not None and after["profile"] == "tm-like" and after["status"] == "up" and manager.is_up()
    for name in KEPT:
        assert after["pids"].get(name) == before["pids"].get(name), name  # still the same process
    for name in ("censor", "inet", "isp"):
        assert after["pids"][name] != before["pids"][name], name
    assert "border" not in after["pids"]  # tm-like has no proxy and no MITM: no border box
    gone = subprocess.run(["ip", "netns", "exec", A.NS_BORDER, "nft", "list", "tables"], capture_output=True,
                          text=True, check=True).stdout
    assert "ts_intercept" not in gone
    assert _conntrack_entries(A.NS_BORDER) == 0  # the old redirects are forgotten, not just the rules
    assert manager.PATHS.log.read_text() == ""  # the ground truth starts over

    lab = Lab("tm-like")
    assert lab.one("raw_echo", A.ECHO, sent)["data"] == sent  # no proxy in the path any more
    udp = lab.one("dns_udp", A.PUBLIC_RESOLVER, "www.facebook.com")
    assert [r["ips"] for r in udp["responses"]] == [["127.0.0.1"], [lab.addr("www.facebook.com")]], udp
    assert lab.logged("tm-dns", "www.facebook.com") and not lab.logged("proxy")
    status = json.loads(_cli("lab", "status", "--json").stdout)
    assert status["up"] and status["profile"] == "tm-like"

    # and back: the proxy is there again, for a new flow from any port
    res = _cli("lab", "up", "--profile", "middlebox", "--switch")
    assert res.returncode == 0, res.stderr
    assert "Via: 1.1 lab-proxy" in Lab("middlebox").one("raw_echo", A.ECHO, sent)["data"]


def test_switch_with_no_lab_up_brings_one_up_and_without_it_up_twice_is_refused(lab_factory) -> None:  # type: ignore[no-untyped-def]
    manager.down()
    res = _cli("lab", "up", "--profile", "none", "--switch")
    assert res.returncode == 0 and manager.is_up(), res.stderr
    again = _cli("lab", "up", "--profile", "tm-like")
    assert again.returncode == 2 and "--switch" in again.stderr and "already up" in again.stderr
    bad = _cli("lab", "up", "--profile", "no-such-profile", "--switch")
    assert bad.returncode == 2 and "no built-in profile" in bad.stderr
    st = manager.read_state()
    assert manager.is_up() and st is not None and st["profile"] == "none"  # a bad profile changes nothing


def test_a_switch_that_fails_leaves_no_half_lab(lab_factory) -> None:  # type: ignore[no-untyped-def]
    lab_factory("none")
    log = manager.PATHS.log
    log.unlink()
    log.mkdir()  # the ground-truth log cannot be emptied: the switch fails half-way through
    try:
        res = _cli("lab", "up", "--profile", "tm-like", "--switch")
    finally:
        if log.is_dir():
            shutil.rmtree(log)
    assert res.returncode == 1, res.stderr
    assert res.stderr.startswith("tamperscope: lab up --switch failed: IsADirectoryError"), res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert not manager.is_up() and manager.lab_namespaces() == []
    lab_factory("none")  # an up after it works
    assert manager.is_up()
