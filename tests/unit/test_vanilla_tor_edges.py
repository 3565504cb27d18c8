"""vanilla_tor's edges: the bounds of the bridge and network files, what a bridge line may spell, the torrc it
writes, the scrubbing of a bridge's bare address, and what tor's log may hold at its end (a percentage no
bootstrap has, a last line without its newline). tor is a stand-in script, as in test_vanilla_tor.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tamperscope.nettests import vanilla_tor
from tamperscope.nettests.base import Context, NettestError, Timeouts
from tests.unit.test_vanilla_tor import install_tor

CERT = "UClU9hpNng1O3EHgqkNRHOF115KhuK+jyR8IYpj9nHjp7CV4jhbBKjh81RqNDdUfoDDaTg"
FPR = "AB12" * 10

# A stand-in for tor that says a scenario's lines and exits by itself (no timeout is waited for).
FAKE = r'''#!PYTHON
import os, sys
if "--version" in sys.argv:
    print("Tor version 0.4.9.11.")
    sys.exit(0)
scenario = os.environ["EDGE_TOR_SCENARIO"]
def say(line):
    sys.stdout.write("Dec 02 19:00:00.000 [notice] " + line + "\n")
    sys.stdout.flush()
say("Bootstrapped 5% (conn): Connecting to a relay")
if scenario == "beyond":
    say("Bootstrapped 250% (weird): Beyond")
if scenario == "unterminated":
    sys.stdout.write("Dec 02 19:00:01.000 [warn] the last words, without a newline")
    sys.stdout.flush()
if scenario == "overlong_unterminated":  # past the pipe's line limit, and no newline before tor exits
    sys.stdout.write("Dec 02 19:00:01.000 [warn] " + "x" * 10000)
    sys.stdout.flush()
sys.exit(1)
'''


@pytest.fixture
def edge_tor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    install_tor(FAKE, tmp_path, monkeypatch)
    return tmp_path


def _run(scenario: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("EDGE_TOR_SCENARIO", scenario)
    ctx = Context(timeouts=Timeouts(measurement=20.0))
    return asyncio.run(asyncio.wait_for(vanilla_tor.run(None, ctx), 20))


# -- tor's log at its end --------------------------------------------------------------------------------------


def test_a_percentage_beyond_100_as_the_last_bootstrap_line_leaves_the_last_real_one(
        edge_tor: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the `progress > 100` check, 250% would become tor_progress (and so the verdict's stage)."""
    tk = _run("beyond", monkeypatch)
    assert (tk["tor_progress"], tk["tor_progress_tag"], tk["tor_progress_summary"]) == (
        5, "conn", "Connecting to a relay")
    assert (tk["success"], tk["error"], tk["failure"]) == (None, "unknown-error",
                                                           "unknown_failure: tor exited with status 1")
    assert any("Bootstrapped 250%" in line for line in tk["tor_logs"])  # kept in the log, not counted


def test_the_last_log_line_without_its_newline_is_kept(edge_tor: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tor's last words before it exits often explain why: dropping a line cut at EOF loses them."""
    tk = _run("unterminated", monkeypatch)
    assert tk["tor_logs"][-1] == "Dec 02 19:00:01.000 [warn] the last words, without a newline"
    assert tk["tor_progress"] == 5 and tk["error"] == "unknown-error"


def test_an_overlong_last_line_without_its_newline_ends_the_log(edge_tor: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A line longer than the pipe's limit that the output ends inside (tor exited mid-line) is cut and kept, and
    the measurement records tor's exit: the end of output used to raise IncompleteReadError out of the nettest."""
    tk = _run("overlong_unterminated", monkeypatch)
    assert tk["tor_logs"][-1].startswith("Dec 02 19:00:01.000 [warn] xxx")
    assert len(tk["tor_logs"][-1]) <= vanilla_tor.MAX_LINE
    assert (tk["success"], tk["error"], tk["failure"]) == (None, "unknown-error",
                                                           "unknown_failure: tor exited with status 1")


# -- bridge lines ----------------------------------------------------------------------------------------------


def test_sixteen_bridges_are_taken_and_the_seventeenth_refused() -> None:
    """MAX_BRIDGES is the most taken, not one more than may be given."""
    sixteen = "".join(f"192.0.2.{n}:443\n" for n in range(1, 17))
    assert len(vanilla_tor.load_bridges(sixteen)) == vanilla_tor.MAX_BRIDGES == 16
    with pytest.raises(NettestError, match="more than 16 bridges"):
        vanilla_tor.load_bridges(sixteen + "192.0.2.17:443\n")


def test_a_bridge_port_is_1_to_65535() -> None:
    """65536 is no port: tor would refuse the line and exit, recorded as a failure to bootstrap."""
    assert vanilla_tor.load_bridges("192.0.2.1:65535")[0].address == "192.0.2.1:65535"
    assert vanilla_tor.load_bridges("192.0.2.1:1")[0].address == "192.0.2.1:1"
    for bad in ("192.0.2.1:65536", "192.0.2.1:", "192.0.2.1", "[2001:db8::1]:70000"):
        with pytest.raises(NettestError, match="a bridge's address is IP:PORT"):
            vanilla_tor.load_bridges(bad)


def test_a_bridge_line_in_capitals_is_read_as_tor_would() -> None:
    """Tor Browser users paste lines as given: OBFS4 is obfs4, a fingerprint's case is tor's (upper)."""
    (bridge,) = vanilla_tor.load_bridges(f"BRIDGE OBFS4 192.0.2.1:443 ${FPR.lower()} cert={CERT} iat-mode=0")
    assert (bridge.transport, bridge.address, bridge.fingerprint) == ("obfs4", "192.0.2.1:443", FPR)
    assert bridge.line == f"Bridge obfs4 192.0.2.1:443 {FPR} cert={CERT} iat-mode=0"


def test_the_bridges_bare_address_is_scrubbed_too() -> None:
    """tor names a bridge by its address without the port too ("... to 192.0.2.1"): that is the secret as well."""
    bridges = vanilla_tor.load_bridges(f"obfs4 192.0.2.1:443 {FPR} cert={CERT} iat-mode=0\n[2001:db8::7]:9001\n")
    line = "Connection to 192.0.2.1 failed; also 2001:db8::7 and 192.0.2.1:443 and $" + FPR.lower()
    got = vanilla_tor.scrub_bridges(line, bridges)
    assert got == "Connection to [scrubbed] failed; also [scrubbed] and [scrubbed] and [scrubbed]"
    assert "iat-mode" not in " ".join(bridges[0].secrets())  # only what identifies the bridge


# -- the torrc --------------------------------------------------------------------------------------------------


def test_plain_bridges_get_no_transport_plugin_and_obfs4_ones_do(tmp_path: Path) -> None:
    """A ClientTransportPlugin line naming no program (None) makes tor refuse the whole configuration."""
    plain = vanilla_tor.load_bridges("192.0.2.1:443\n")
    text = vanilla_tor.torrc(tmp_path, (), plain)
    assert "UseBridges 1\nBridge 192.0.2.1:443\n" in text and "ClientTransportPlugin" not in text
    obfs4 = vanilla_tor.load_bridges(f"obfs4 192.0.2.1:443 cert={CERT}\n192.0.2.2:443\n")
    text = vanilla_tor.torrc(tmp_path, (), obfs4, "/usr/bin/obfs4proxy")
    assert text.count("ClientTransportPlugin obfs4 exec /usr/bin/obfs4proxy\n") == 1
    assert "UseBridges" not in vanilla_tor.torrc(tmp_path, ("DirAuthority a 192.0.2.9:9030 CD",))


# -- the network file ------------------------------------------------------------------------------------------


def test_sixty_four_network_lines_are_taken() -> None:
    """MAX_NETWORK_LINES is the most taken: a network of exactly 64 lines must load."""
    text = "DirAuthority a 192.0.2.1:9030 AB\n" * vanilla_tor.MAX_NETWORK_LINES
    assert len(vanilla_tor.load_network(text)) == 64
    with pytest.raises(NettestError, match="more than 64 lines"):
        vanilla_tor.load_network(text + "FallbackDir 192.0.2.2:9030 id=EF\n")


def test_network_ports_are_1_to_65535() -> None:
    """65536 in a DirAuthority's or FallbackDir's ports would make tor exit: refused before running it."""
    assert vanilla_tor.load_network("FallbackDir 192.0.2.1:65535 orport=65535 id=EF\n") == (
        "FallbackDir 192.0.2.1:65535 orport=65535 id=EF",)
    for text, said in [("FallbackDir 192.0.2.1:65536 id=EF\n", "its port must be 1-65535"),
                       ("FallbackDir 192.0.2.1:9030 orport=65536 id=EF\n", "orport must be 1-65535"),
                       ("DirAuthority a dirport=65536 192.0.2.1:9030 AB\n", "dirport must be 1-65535")]:
        with pytest.raises(NettestError, match=said):
            vanilla_tor.load_network(text)


def test_fingerprint_options_are_checked_whatever_their_case() -> None:
    """tor reads ID= as id=: a non-hex ID= would pass the check and make tor exit."""
    for text in ("FallbackDir 192.0.2.1:9030 ID=ZZ\n", "DirAuthority a V3IDENT=XY 192.0.2.1:9030 AB\n"):
        with pytest.raises(NettestError, match="must be a fingerprint in hex"):
            vanilla_tor.load_network(text)
