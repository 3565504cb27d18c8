"""Lab robustness: root check, no double lab, clean down after kill -9, stale labs cleared."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tamperscope.lab import addresses as A
from tamperscope.lab import manager

pytestmark = pytest.mark.lab
TS = [sys.executable, "-m", "tamperscope"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TS, *args], capture_output=True, text=True, timeout=120)


def _leftovers() -> dict[str, list[str]]:
    ns = manager.lab_namespaces()
    links = [ln for ln in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.splitlines()
             if " ts-" in ln]
    procs = subprocess.run(["pgrep", "-f", "tamperscope.lab.(censor|services)"], capture_output=True, text=True).stdout.split()
    files = [p for p in (str(manager.PATHS.root), "/etc/netns/ts-client") if os.path.exists(p)]
    return {"namespaces": ns, "links": links, "processes": procs, "files": files}


def test_without_root_one_line_exit_2(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    # The interpreter lives under /root, which an unprivileged user cannot execute here,
    # so the euid is faked in-process; everything after it is the real CLI path.
    from tamperscope import cli

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    for argv in (["lab", "up", "--profile", "none"], ["lab", "down"], ["lab", "exec", "--", "true"]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.strip().count("\n") == 0 and "needs root" in err, err
    assert manager.lab_namespaces() == [] or manager.is_up()


def test_bad_profile_names_file_and_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "typo.toml"
    p.write_text('[[rule]]\nid = "r1"\nlayer = "dns"\naction = "inject"\ndomains = ["a.org"]\nanswer = "8.8.8.8"\n')
    res = _cli("lab", "up", "--profile", str(p))
    assert res.returncode == 2 and str(p) in res.stderr and "answer" in res.stderr and "refused" in res.stderr
    assert _leftovers()["namespaces"] == []  # nothing was started


def test_up_twice_is_an_error_and_kill9_then_down_is_clean() -> None:
    manager.down()
    assert _cli("lab", "up", "--profile", "tm-like").returncode == 0
    again = _cli("lab", "up", "--profile", "none")
    assert again.returncode == 2 and "already up" in again.stderr and "lab down" in again.stderr
    st = json.loads(_cli("lab", "status", "--json").stdout)
    assert st["up"] and st["profile"] == "tm-like"  # the running lab was not disturbed
    for pid in st["processes"].values():
        os.killpg(pid["pid"], signal.SIGKILL)
    time.sleep(0.3)
    assert not manager.is_up()
    res = _cli("lab", "down")
    assert res.returncode == 0
    assert _leftovers() == {"namespaces": [], "links": [], "processes": [], "files": []}


def test_stale_namespaces_are_cleared_by_up() -> None:
    manager.down()
    # what a killed session leaves: namespaces and links, no processes, no state
    subprocess.run(["ip", "netns", "add", A.NS_CLIENT], check=True)
    subprocess.run(["ip", "netns", "add", A.NS_CENSOR], check=True)
    res = _cli("lab", "up", "--profile", "none")
    assert res.returncode == 0, res.stderr
    assert "stale" in res.stderr
    assert manager.is_up()
    manager.down()
    assert _leftovers()["namespaces"] == []


def test_a_file_where_the_labs_directory_goes_is_cleared_by_down_and_by_up() -> None:
    # `lab down` said it removed it and left it (rmtree ignores a file); every `lab up` then said it cleared a
    # stale lab and stopped in a traceback, until the file was removed by hand (QA)
    manager.down()
    root = manager.PATHS.root
    root.write_text("x")
    res = _cli("lab", "down")
    assert res.returncode == 0 and not os.path.lexists(root), res.stderr
    root.symlink_to("/nonexistent-ts-lab")  # a dangling link: exists() says no
    res = _cli("lab", "up", "--profile", "none")
    assert res.returncode == 0 and "stale" in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert manager.is_up() and root.is_dir() and not root.is_symlink()
    manager.down()
    assert _leftovers() == {"namespaces": [], "links": [], "processes": [], "files": []}


def test_exec_sets_the_client_environment() -> None:
    manager.down()
    assert _cli("lab", "up", "--profile", "none").returncode == 0
    try:
        res = _cli("lab", "exec", "--", "sh", "-c",
                   "echo $TAMPERSCOPE_LAB $TAMPERSCOPE_RESOLVER $TAMPERSCOPE_PUBLIC_RESOLVER $TAMPERSCOPE_HELPER "
                   "$TAMPERSCOPE_ECHO $SSL_CERT_FILE $TAMPERSCOPE_STUN; grep nameserver /etc/resolv.conf; "
                   "ip -o -4 addr show dev ts-c0")
        out = res.stdout
        assert res.returncode == 0, res.stderr
        assert f"1 {A.ISP_RESOLVER} {A.PUBLIC_RESOLVER} http://{A.HELPER}:{A.HELPER_PORT}/ {A.ECHO} " in out
        assert f"nameserver {A.ISP_RESOLVER}" in out and A.CLIENT in out
        ca = out.split()[5]
        assert ca.endswith("lab-ca.pem") and os.path.exists(ca)
        assert out.split()[6] == f"stun://{A.STUN}:{A.STUN_PORT}"
        log = _cli("lab", "log")
        assert log.returncode == 0
    finally:
        manager.down()
    res = _cli("lab", "exec", "--", "true")
    assert res.returncode == 2 and "not up" in res.stderr
