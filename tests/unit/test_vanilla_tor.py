"""vanilla_tor against a stand-in for the tor program (a script on PATH that prints tor's bootstrap lines as a
scenario says): where the bootstrap stopped, the timeout, tor exiting by itself, hostile output, the network
file's checks, and that the data directory is removed and this probe's address scrubbed. The real tor, against
the lab's real Tor network, is tests/lab/test_vanilla_tor.py."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tamperscope.cli import build_parser
from tamperscope.model.measurement import ProbeInfo
from tamperscope.nettests import vanilla_tor
from tamperscope.nettests.base import Context, NettestError, Timeouts
from tamperscope.probe import command
from tamperscope.probe.engine import Engine
from tamperscope.probe.privacy import Scrubber
from tests.unit.test_probe_input_checks import Probe, probe  # noqa: F401 (a fixture)

ME = "203.0.113.77"  # this probe's address, as a log line might carry it

FAKE = r'''#!PYTHON
import os, signal, sys, time
if "--version" in sys.argv:
    print("Tor version 0.4.9.11.")
    sys.exit(0)
torrc = sys.argv[sys.argv.index("-f") + 1]
with open(os.environ["FAKE_TOR_SEEN"], "w") as f:
    f.write(open(torrc).read())
scenario = os.environ["FAKE_TOR_SCENARIO"]
if scenario == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
def say(line):
    sys.stdout.write("Dec 02 19:00:00.000 [notice] " + line + "\n")
    sys.stdout.flush()
say("Tor 0.4.9.11 running on Linux")
say("Bootstrapped 0% (starting): Starting")
if scenario == "exit":
    sys.exit(3)
if scenario == "garbage":
    sys.stdout.buffer.write(b"\xff\xfe\x00" * 100000 + b"\n" + b"x" * 300000)
    sys.stdout.write("\n")
    say("Bootstrapped 250% (weird): Beyond")
    say("Bootstrapped 5 % (conn): not a bootstrap line")
    say("Our IP address is " + os.environ["FAKE_TOR_ME"])
    say("Bootstrapped 10% (conn_done): Connected to a relay")
    time.sleep(60)
if scenario == "private":
    sys.stdout.write(time.strftime("%b %d %H:%M:%S.000") + " [notice] local time, as tor writes it\n")
    say("Read configuration file \"" + os.path.dirname(torrc) + "/defaults\".")
    say("You are running Tor as root. You don't need to, and you probably shouldn't.")
if scenario == "bridge":
    say("Bootstrapped 1% (conn_pt): Connecting to pluggable transport")
    say("Received http status code 404 from server 198.51.100.9:443 while fetching consensus directory.")
    cert = os.environ["FAKE_TOR_CERT"]
    say("Learned fingerprint $" + "ab12" * 10 + " for bridge 198.51.100.9:443 (cert " + cert + ")")
say("Bootstrapped 5% (conn): Connecting to a relay")
if scenario in ("stall", "stubborn"):
    for i in range(400):
        say(f"Problem bootstrapping. Stuck at 5% (conn): Connecting to a relay. (count {i})")
    time.sleep(60)
    sys.exit(0)
for n, tag in ((10, "conn_done"), (14, "handshake"), (50, "loading_descriptors"), (100, "done")):
    say(f"Bootstrapped {n}% ({tag}): {tag} words")
time.sleep(60)
'''


def install_tor(script: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``script`` (Python, its first line ``#!PYTHON``) as the ``tor`` first on PATH; tor's data directory (TMPDIR)
    in ``tmp_path``, to see it removed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tor = bin_dir / "tor"
    tor.write_text(script.replace("PYTHON", sys.executable))
    tor.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("TMPDIR", str(tmp_path))


@pytest.fixture
def fake_tor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    install_tor(FAKE, tmp_path, monkeypatch)
    monkeypatch.setenv("FAKE_TOR_SEEN", str(tmp_path / "torrc-seen"))
    monkeypatch.setenv("FAKE_TOR_ME", ME)
    return tmp_path


def _measure(scenario: str, monkeypatch: pytest.MonkeyPatch, timeout: float = 3.0,
             network: tuple[str, ...] | None = None, bridges: Any = None) -> dict[str, Any]:
    monkeypatch.setenv("FAKE_TOR_SCENARIO", scenario)
    ctx = Context(timeouts=Timeouts(measurement=timeout), options={"tor_network": network, "tor_bridges": bridges})

    async def main() -> dict[str, Any]:
        return await Engine(vanilla_tor, ctx, ProbeInfo(), Scrubber([ME], interfaces=False)).measure(None)

    return asyncio.run(asyncio.wait_for(main(), 60))


def test_a_bootstrap_to_100_is_ok_and_timed(fake_tor: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    network = ("TestingTorNetwork 1", "DirAuthority a orport=9001 no-v2 v3ident=AB 198.19.3.11:9030 CD")
    m = _measure("ok", monkeypatch, network=network)
    tk = m["test_keys"]
    assert (tk["success"], tk["error"], tk["failure"]) == (True, None, None)
    assert (tk["tor_progress"], tk["tor_progress_tag"], tk["tor_progress_summary"]) == (100, "done", "done words")
    assert 0 < tk["bootstrap_time"] < 3 and tk["timeout"] == 3.0
    assert (tk["tor_version"], tk["transport_name"], tk["x_tor_network"], tk["x_dirauths"]) == (
        "0.4.9.11", "vanilla", "custom", 1)
    assert any("Bootstrapped 100% (done)" in line for line in tk["tor_logs"])
    assert (tk["x_status"], tk["blocking"], tk["accessible"]) == ("ok", False, True)
    assert m["input"] is None and m["test_name"] == "vanilla_tor"
    seen = (fake_tor / "torrc-seen").read_text().splitlines()
    assert "SafeLogging 1" in seen and "ClientOnly 1" in seen and "SocksPort 127.0.0.1:auto" in seen
    assert seen[-2:] == list(network)
    assert not list(fake_tor.glob("tamperscope-tor-*")), "the data directory is left behind"


def test_a_bootstrap_stuck_connecting_is_tcp_drop_at_the_timeout(fake_tor: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    tk = _measure("stall", monkeypatch, timeout=2.0)["test_keys"]
    assert (tk["success"], tk["error"], tk["failure"]) == (False, "timeout-reached", "generic_timeout_error")
    assert (tk["tor_progress"], tk["tor_progress_tag"], tk["bootstrap_time"]) == (5, "conn", 0.0)
    assert (tk["x_status"], tk["x_mechanism"], tk["blocking"], tk["accessible"]) == (
        "anomaly", "tcp.drop", "tcp_ip", False)
    assert tk["x_tor_network"] == "tor" and tk["x_dirauths"] == 0  # no --tor-network: Tor's own
    # the log is capped, and keeps its end
    assert len(tk["tor_logs"]) == vanilla_tor.MAX_LOG_LINES and "(count 399)" in tk["tor_logs"][-1]
    assert not list(fake_tor.glob("tamperscope-tor-*"))


def test_tor_exiting_by_itself_is_a_failure_not_blocking(fake_tor: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tk = _measure("exit", monkeypatch)["test_keys"]
    assert (tk["success"], tk["error"], tk["failure"]) == (None, "unknown-error",
                                                           "unknown_failure: tor exited with status 3")
    assert (tk["x_status"], tk["blocking"]) == ("failure", None)


def test_a_tor_that_ignores_sigterm_is_killed(fake_tor: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vanilla_tor, "STOP_GRACE", 0.5)
    tk = _measure("stubborn", monkeypatch, timeout=1.0)["test_keys"]
    assert tk["error"] == "timeout-reached" and tk["tor_progress"] == 5


def test_hostile_output_is_cut_and_read_on_and_the_address_scrubbed(fake_tor: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    tk = _measure("garbage", monkeypatch, timeout=3.0)["test_keys"]
    assert all(len(line) <= vanilla_tor.MAX_LINE for line in tk["tor_logs"])
    # 250% is no percentage a bootstrap has; "5 %" no bootstrap line: the last good one counts
    assert (tk["tor_progress"], tk["tor_progress_tag"]) == (10, "conn_done")
    assert ME not in str(tk) and any("[scrubbed]" in line for line in tk["tor_logs"])
    assert tk["x_mechanism"] == "tls.drop"


CERT = "UClU9hpNng1O3EHgqkNRHOF115KhuK+jyR8IYpj9nHjp7CV4jhbBKjh81RqNDdUfoDDaTg"
BRIDGE = f"obfs4 198.51.100.9:443 {'AB12' * 10} cert={CERT} iat-mode=0"


def test_through_a_bridge_the_bridge_is_used_and_scrubbed_from_the_measurement(
        fake_tor: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_TOR_CERT", CERT)
    bridges = vanilla_tor.load_bridges(BRIDGE)
    m = _measure("bridge", monkeypatch, bridges=bridges)
    tk = m["test_keys"]
    assert (tk["success"], tk["transport_name"], tk["x_bridges"]) == (True, "obfs4", 1)
    seen = (fake_tor / "torrc-seen").read_text().splitlines()
    assert "UseBridges 1" in seen and f"Bridge {BRIDGE}" in seen
    assert f"ClientTransportPlugin obfs4 exec {shutil.which('obfs4proxy')}" in seen
    text = json.dumps(m)
    assert "198.51.100.9" not in text and "ab12ab12" not in text.lower() and CERT not in text
    assert any("server [scrubbed] while fetching" in line for line in tk["tor_logs"])
    assert any("fingerprint [scrubbed] for bridge [scrubbed] (cert [scrubbed])" in line for line in tk["tor_logs"])


def test_bridge_lines_as_tor_browser_takes_them() -> None:
    text = (f"# mine\nBridge {BRIDGE}\n{BRIDGE}\n192.0.2.1:9001\nBridge [2001:db8::1]:443 {'CD34' * 10}\n")
    got = vanilla_tor.load_bridges(text)
    assert [(b.transport, b.address, b.fingerprint) for b in got] == [
        ("obfs4", "198.51.100.9:443", "AB12" * 10), ("obfs4", "198.51.100.9:443", "AB12" * 10),
        (None, "192.0.2.1:9001", None), (None, "[2001:db8::1]:443", "CD34" * 10)]
    assert got[0].line == f"Bridge {BRIDGE}" and got[2].line == "Bridge 192.0.2.1:9001"
    for bad, said in [
        ("snowflake 192.0.2.3:80 " + "AB" * 20 + " url=https://x/", "'snowflake' bridges are not run here"),
        ("obfs4 bridge.example:443 cert=x", "a bridge's address is IP:PORT"),
        ("obfs4 192.0.2.1:0 cert=x", "a bridge's address is IP:PORT"),
        ("obfs4 192.0.2.1:443 " + "AB" * 20 + " iat-mode=0", "an obfs4 bridge needs its cert="),
        ("obfs4 192.0.2.1:443 cert=x ControlPort 9051", "only key=value parameters"),
        ("obfs4 192.0.2.1:443 cert=x\x00", "no bridge line"),
        ("obfs4 192.0.2.1:443 cert=x\\\nControlPort 9051", "no bridge line"),
        ("Bridge", "no bridge address"),
        ("# nothing\n", "no bridge line"),
        ("192.0.2.1:443\n" * 17, "more than 16 bridges"),
    ]:
        with pytest.raises(NettestError, match=re.escape(said)):
            vanilla_tor.load_bridges(bad)


def test_without_tor_the_nettest_says_so_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    ctx = Context(timeouts=Timeouts(measurement=1.0))
    with pytest.raises(NettestError, match="vanilla_tor needs the tor program"):
        asyncio.run(vanilla_tor.run(None, ctx))


def test_the_network_file_takes_only_a_networks_lines() -> None:
    good = ("# the lab's\n\nTestingTorNetwork 1\n"
            "DirAuthority labauth1 orport=9001 no-v2 v3ident=AB 198.19.3.11:9030 CD\n"
            "fallbackdir 198.19.3.12:9030 orport=9001 id=EF\n")
    assert vanilla_tor.load_network(good) == (
        "TestingTorNetwork 1", "DirAuthority labauth1 orport=9001 no-v2 v3ident=AB 198.19.3.11:9030 CD",
        "FallbackDir 198.19.3.12:9030 orport=9001 id=EF")
    for text, said in [
        ("DirAuthority a 1.2.3.4:80 AB\nControlPort 9051\n", "'ControlPort' is not one of"),
        ("DirAuthority a 1.2.3.4:80 AB\n%include /etc/passwd\n", "'%include' is not one of"),
        ("DirAuthority a 1.2.3.4:80 AB\nLog notice file /tmp/x\n", "'Log' is not one of"),
        ("TestingTorNetwork 1\n", "no DirAuthority or FallbackDir line"),
        ("TestingTorNetwork yes\nDirAuthority a 1.2.3.4:80 AB\n", "TestingTorNetwork is 0 or 1"),
        ("DirAuthority\n", "needs an address and a fingerprint"),
        ("DirAuthority a 1.2.3.4:80 AB\x00\n", "characters a torrc line cannot"),
        ("DirAuthority a 1.2.3.4:80 AB \\\nControlPort 9051\n", "characters a torrc line cannot"),
        ("DirAuthority a 1.2.3.4:80 " + "A" * 600 + "\n", "longer than 512"),
        ("DirAuthority a 1.2.3.4:80 AB\n" * 70, "more than 64 lines"),
        ("", "no DirAuthority or FallbackDir line"),
        # what tor itself refuses, exiting 1: it was recorded as a failure to bootstrap
        ("FallbackDir 1.2.3.4:99999 orport=9001 id=ZZ\n", "its port must be 1-65535, not '99999'"),
        ("FallbackDir 1.2.3.4:9030 orport=0 id=EF\n", "orport must be 1-65535, not '0'"),
        ("FallbackDir 1.2.3.4:9030 orport=\u00b2 id=EF\n", "characters a torrc line cannot"),  # not int("²")
        ("FallbackDir 1.2.3.4:\u0664\u0664\u0663 id=EF\n", "characters a torrc line cannot"),
        ("FallbackDir 1.2.3.4:9030 orport=9001 id=ZZ\n", "id= must be a fingerprint in hex, not 'ZZ'"),
        ("FallbackDir 1.2.3.4:9030 orport=9001\n", "FallbackDir needs id=FINGERPRINT"),
        ("FallbackDir 1.2.3.999:9030 id=EF\n", "'1.2.3.999' is not an IPv4 address"),
        ("DirAuthority a orport=9001 v3ident=AB example.org:9030 CD\n", "needs one IPv4 address and port"),
        ("DirAuthority a orport=9001 v3ident=AB 1.2.3.4:9030 1.2.3.5:9030 CD\n", "needs one IPv4 address and port"),
        ("DirAuthority a orport=9001 v3ident=XY 1.2.3.4:9030 CD\n", "v3ident= must be a fingerprint in hex"),
        ("DirAuthority a orport=9001 v3ident=AB 1.2.3.4:9030 nothex\n", "ends with the authority's fingerprint"),
        ("DirAuthority a orport=9001 v3ident=AB 1.2.3.4:9030\n", "ends with the authority's fingerprint"),
    ]:
        with pytest.raises(NettestError, match=said):
            vanilla_tor.load_network(text)


def test_no_input_is_taken() -> None:
    with pytest.raises(NettestError, match="takes no input"):
        vanilla_tor.check_input("https://torproject.org/")


# -- the CLI (offline: the nettest's run is recorded, not made) -------------------------------------------------


def test_the_cli_passes_the_networks_lines_and_says_what_it_would_contact(probe: Probe,  # noqa: F811
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    (probe.dir / "net.torrc").write_text("TestingTorNetwork 1\nDirAuthority a orport=9001 198.19.3.11:9030 CD\n")
    seen: list[Any] = []

    async def run(input: str | None, ctx: Context) -> dict[str, Any]:
        seen.append(ctx.options.get("tor_network"))
        return {}

    monkeypatch.setattr(vanilla_tor, "run", run)
    r = probe.main("run", "vanilla_tor", "--yes", "--no-progress", "--tor-network", "net.torrc", "-o", "out.jsonl")
    assert r.code == 0, r.err
    assert seen == [("TestingTorNetwork 1", "DirAuthority a orport=9001 198.19.3.11:9030 CD")]
    assert probe.inputs() == [None]
    s = command.settings(command_args("vanilla_tor", "--tor-network", str(probe.dir / "net.torrc")))
    assert "the Tor network of" in command.plan(s) and "through the tor program" in command.plan(s)
    s = command.settings(command_args("vanilla_tor"))
    assert "Tor's directory authorities and relays (through the tor program)" in command.plan(s)


def command_args(*argv: str) -> Any:
    return build_parser().parse_args(["run", *argv])


@pytest.mark.parametrize("args, message", [
    (("--tor-network", "missing.torrc"), "missing.torrc"),
    (("--tor-network", "bad.torrc"), "bad.torrc: line 1: 'ControlPort' is not one of DirAuthority"),
    (("--tor-network", "binary.torrc"), "not UTF-8 text"),
    (("--tor-network", "big.torrc"), "is larger than 64 KiB"),  # was "larger than 0 MiB"
    (("-i", "https://torproject.org/"), "vanilla_tor takes no input"),
])
def test_the_cli_refuses_in_one_line_before_running_tor(probe: Probe, args: tuple[str, ...],  # noqa: F811
                                                        message: str) -> None:
    (probe.dir / "bad.torrc").write_text("ControlPort 9051\n")
    (probe.dir / "binary.torrc").write_bytes(b"\x00\xff\n")
    (probe.dir / "big.torrc").write_bytes(b"# padding\n" * 7000)
    r = probe.main("run", "vanilla_tor", "--yes", "--no-progress", "-o", "out.jsonl", *args)
    assert r.code == 2 and message in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert probe.measured == [] and not (probe.dir / "out.jsonl").exists()


def test_without_tor_installed_the_cli_says_so_in_one_line(probe: Probe,  # noqa: F811
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(probe.dir))
    r = probe.main("run", "vanilla_tor", "--yes", "-o", "out.jsonl")
    assert (r.code, r.err.strip()) == (2, "tamperscope: vanilla_tor needs the tor program (Debian: apt install tor; "
                                          "`make setup` installs it)")
    assert probe.measured == [] and not (probe.dir / "out.jsonl").exists()


def test_the_cli_takes_bridges_and_says_it_would_use_them(probe: Probe,  # noqa: F811
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    (probe.dir / "bridges.txt").write_text(f"{BRIDGE}\n192.0.2.1:9001\n")
    seen: list[Any] = []

    async def run(input: str | None, ctx: Context) -> dict[str, Any]:
        seen.append(ctx.options.get("tor_bridges"))
        return {}

    monkeypatch.setattr(vanilla_tor, "run", run)
    r = probe.main("run", "vanilla_tor", "--yes", "--no-progress", "--tor-bridges", "bridges.txt", "-o", "out.jsonl")
    assert r.code == 0, r.err
    assert [b.address for b in seen[0]] == ["198.51.100.9:443", "192.0.2.1:9001"]
    s = command.settings(command_args("vanilla_tor", "--tor-bridges", str(probe.dir / "bridges.txt")))
    assert "through the 2 bridges of" in command.plan(s) and "(scrubbed from the measurement)" in command.plan(s)
    for args, said in [(("--tor-bridges", "missing.txt"), "missing.txt"),
                       (("--tor-bridges", "out.jsonl"), "no bridge line")]:
        r = probe.main("run", "vanilla_tor", "--yes", "--no-progress", "-o", "two.jsonl", *args)
        assert r.code == 2 and said in r.err and len(r.err.strip().splitlines()) == 1, r.err
    r = probe.main("run", "tor", "--yes", "--tor-bridges", "bridges.txt")
    assert (r.code, r.err.strip()) == (2, "tamperscope: --tor-bridges is for the vanilla_tor nettest")


def test_tor_network_is_for_vanilla_tor_only(probe: Probe) -> None:  # noqa: F811
    (probe.dir / "net.torrc").write_text("DirAuthority a 198.19.3.11:9030 CD\n")
    r = probe.main("run", "tor", "--yes", "--tor-network", "net.torrc")
    assert (r.code, r.err.strip()) == (2, "tamperscope: --tor-network is for the vanilla_tor nettest")


def test_the_log_says_nothing_of_the_users_time_zone_home_or_account(fake_tor: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tehran")  # UTC+3:30: its local time would give the user's zone away
    m = _measure("private", monkeypatch)
    logs = m["test_keys"]["tor_logs"]
    stamp = next(line for line in logs if "local time" in line).split(" [")[0]
    h, mi, sec = (int(float(x)) for x in stamp.split()[-1].split(":"))
    now = dt.datetime.now(dt.timezone.utc)
    apart = abs(h * 3600 + mi * 60 + sec - (now.hour * 3600 + now.minute * 60 + now.second))
    assert min(apart, 86400 - apart) < 300, stamp  # UTC's time of day, not Tehran's (3 h 30 min ahead)
    text = "\n".join(logs)
    assert str(fake_tor) not in text and 'Read configuration file "[tmp]/defaults".' in text
    assert "as root" not in text and m["test_keys"]["success"] is True
