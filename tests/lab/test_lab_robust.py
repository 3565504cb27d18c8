"""Lab robustness: root check, no double lab, clean down after kill -9, stale labs cleared."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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
    files = [p for p in (str(manager.PATHS.root), *(f"/etc/netns/{ns}" for ns in A.NAMESPACES)) if os.path.exists(p)]
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


def test_a_directory_that_is_not_the_labs_is_never_removed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """TAMPERSCOPE_LAB_STATE names the lab's directory; one holding someone's files is refused by down and up, and
    kept (QA: `lab down` removed /tmp/v and everything in it; `lab up` called it a stale lab and did the same)."""
    manager.down()
    mine = tmp_path / "v"
    (mine / "sub").mkdir(parents=True)
    (mine / "p.txt").write_text("precious")
    env = {**os.environ, "TAMPERSCOPE_LAB_STATE": str(mine)}
    for args in (("lab", "down"), ("lab", "up", "--profile", "none")):
        res = subprocess.run([*TS, *args], capture_output=True, text=True, timeout=120, env=env)
        assert res.returncode == 2 and "not the lab's" in res.stderr and "nothing was removed" in res.stderr, res
        assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
        assert (mine / "p.txt").read_text() == "precious" and (mine / "sub").is_dir()
    assert manager.lab_namespaces() == []
    # an empty one is the lab's to use, and its own (marked) is removed by down
    empty = tmp_path / "empty"
    empty.mkdir()
    env["TAMPERSCOPE_LAB_STATE"] = str(empty)
    try:
        res = subprocess.run([*TS, "lab", "up", "--profile", "none"], capture_output=True, text=True, timeout=120,
                             env=env)
        assert res.returncode == 0, res.stderr
        assert (empty / manager.MARK).exists()
    finally:
        res = subprocess.run([*TS, "lab", "down"], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0 and not empty.exists(), res.stderr
    assert _leftovers()["namespaces"] == []


def test_two_ups_at_once_take_turns() -> None:
    """QA: two `lab up` at once often left no lab (each tore down the other's namespaces), once a traceback, once
    services in a nameless namespace that outlived every `lab down`. Now the second waits: the lab is then up,
    and it says so, exit 2."""
    manager.down()
    procs = [subprocess.Popen([*TS, "lab", "up", "--profile", profile], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for profile in ("none", "ru-like")]
    results = [(p.returncode, err) for p in procs for _, err in [p.communicate(timeout=180)]]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    second = next(err for code, err in results if code == 2)
    assert "already up" in second and "Traceback" not in second, second
    assert manager.is_up()
    manager.down()
    assert _leftovers() == {"namespaces": [], "links": [], "processes": [], "files": []}


def test_sigterm_during_up_takes_down_what_it_made() -> None:
    """`timeout 1.5 lab up` left six namespaces and 14 processes (QA); SIGTERM now does what Ctrl-C does."""
    manager.down()
    proc = subprocess.Popen([*TS, "lab", "up", "--profile", "none"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while A.NS_CLIENT not in manager.lab_namespaces() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the lab came up before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    code = proc.returncode
    assert code == 128 + signal.SIGTERM and "SIGTERM" in err and "Traceback" not in err, (code, err)
    assert _leftovers() == {"namespaces": [], "links": [], "processes": [], "files": []}


def test_debris_of_other_kinds_is_cleared_by_up() -> None:
    """What an earlier lab or a hand left: /etc/netns files (mounted over the new lab's /etc), and a directory in
    /run/netns under a lab name, which `ip netns del` cannot delete (QA: every later `lab up` failed, saying only
    'Command failed -:2')."""
    manager.down()
    Path("/etc/netns/ts-client").mkdir(parents=True, exist_ok=True)
    Path("/etc/netns/ts-client/hosts").write_text("6.6.6.6 example.org\n")
    Path("/etc/netns/ts-inet").mkdir(parents=True, exist_ok=True)
    Path("/etc/netns/ts-inet/resolv.conf").write_text("nameserver 8.8.8.8\n")
    Path(f"/run/netns/{A.NS_ACCESS}").mkdir(parents=True, exist_ok=True)
    try:
        res = _cli("lab", "up", "--profile", "none")
        assert res.returncode == 0 and "stale" in res.stderr, res.stderr
        hosts = _cli("lab", "exec", "--", "cat", "/etc/hosts")
        assert hosts.returncode == 0 and "6.6.6.6" not in hosts.stdout
        # every namespace's stub resolver is a lab address (QA: the lab's Tor relays asked the host's resolver);
        # read as `lab exec --ns` reads it, through `ip netns exec`, without a CLI start for each
        for ns in A.NAMESPACES:
            conf = subprocess.run(["ip", "netns", "exec", ns, "cat", "/etc/resolv.conf"], capture_output=True,
                                  text=True, timeout=30)
            servers = [line.split()[1] for line in conf.stdout.splitlines() if line.startswith("nameserver")]
            assert servers and all(s.startswith(("198.18.", "198.19.")) for s in servers), (ns, conf.stdout)
    finally:
        manager.down()
    assert _leftovers() == {"namespaces": [], "links": [], "processes": [], "files": []}
    assert not Path(f"/run/netns/{A.NS_ACCESS}").exists()
