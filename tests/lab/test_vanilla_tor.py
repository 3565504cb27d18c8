"""vanilla_tor in the lab: Debian's tor bootstraps against the lab's own Tor network (three real directory
authorities that are also its relays, 198.19.3.11-13, given to the probe as $TAMPERSCOPE_TOR_NETWORK). Without
a censor it gets to 100%; behind tm-like, which null-routes Tor's directory authorities (198.19.3.0/28), it stays
at 5%, connecting to a relay, which the verdict reads as tcp.drop, and the censor's ground truth says the same;
through the network's obfs4 bridge (198.19.3.21, outside that /28) it gets to 100% there, and the bridge is in no
line of the measurement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tamperscope.lab import addresses as A
from tamperscope.lab import manager, tornet

from .test_probe_cli import measure_once

pytestmark = pytest.mark.lab
RELAYS = {f"{ip}:{A.TOR_NETWORK_OR_PORT}" for _, ip in (*A.TOR_NETWORK, *A.TOR_NETWORK_RELAYS)}


def test_tor_bootstraps_on_the_labs_tor_network_without_a_censor(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab_factory("none")
    # every directory of a new network serves every relay 30-65 s after lab up (what `tamperscope demo` waits
    # for); from then on a new client gets to 100% in a few seconds (before, a first one took 27.5 s)
    assert tornet.wait_for_consensus(manager.PATHS.tornet, 120), tornet.consensus_relays(manager.PATHS.tornet)
    tk = measure_once("vanilla_tor", tmp_path / "v.jsonl", "--timeout", "20")
    assert (tk["success"], tk["error"], tk["failure"]) == (True, None, None), tk["tor_logs"][-5:]
    assert (tk["tor_progress"], tk["tor_progress_tag"]) == (100, "done")
    assert 0 < tk["bootstrap_time"] < 20
    assert (tk["x_tor_network"], tk["x_dirauths"], tk["transport_name"]) == ("custom", 3, "vanilla")
    assert tk["tor_version"] and tk["tor_version"][0].isdigit()
    assert any("Bootstrapped 100% (done)" in line for line in tk["tor_logs"])
    assert (tk["x_status"], tk["blocking"], tk["accessible"]) == ("ok", False, True)
    # the probe's own address is in no log line (tor's SafeLogging, then the run's scrubber)
    assert A.CLIENT not in (tmp_path / "v.jsonl").read_text()


def test_tor_stays_at_5_percent_behind_a_censor_that_null_routes_its_authorities(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab_factory("tm-like")
    tk = measure_once("vanilla_tor", tmp_path / "v.jsonl", "--timeout", "20")
    assert (tk["success"], tk["error"], tk["failure"]) == (False, "timeout-reached", "generic_timeout_error")
    assert (tk["tor_progress"], tk["tor_progress_tag"], tk["bootstrap_time"]) == (5, "conn", 0.0)
    assert (tk["x_status"], tk["x_mechanism"], tk["blocking"], tk["accessible"]) == (
        "anomaly", "tcp.drop", "tcp_ip", False)
    truth = [json.loads(line) for line in manager.PATHS.log.read_text().splitlines()]
    dropped = {t["server"] for t in truth if t["rule"] == "tm-tor"}
    assert dropped and dropped <= RELAYS, dropped


def test_a_relay_that_refuses_is_a_reset_as_tor_says_not_a_drop(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The same 5%, but every connect to a relay answered with a RST: tor's warning names the refusal
    (CONNECTREFUSED), and the verdict reads it (tcp.rst at 0.8; a timeout alone reads tcp.drop at 0.6)."""
    lab_factory(str(Path(__file__).parent / "profiles" / "tor-refused.toml"))
    # tor's first connection fails within a second of 5%, and its reason is kept from the first (at info level)
    tk = measure_once("vanilla_tor", tmp_path / "v.jsonl", "--timeout", "8")
    assert (tk["success"], tk["tor_progress"], tk["tor_progress_tag"]) == (False, 5, "conn"), tk["tor_logs"][-5:]
    assert any("CONNECTREFUSED" in line for line in tk["tor_logs"]), tk["tor_logs"][-5:]
    assert (tk["x_status"], tk["x_mechanism"], tk["blocking"], tk["accessible"], tk["x_confidence"]) == (
        "anomaly", "tcp.rst", "tcp_ip", False, 0.8)
    truth = [json.loads(line) for line in manager.PATHS.log.read_text().splitlines()]
    refused = {t["server"] for t in truth if t["rule"] == "tor-refused"}
    assert refused and refused <= RELAYS, refused


def test_through_the_labs_obfs4_bridge_tor_gets_past_that_censor(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab_factory("tm-like")
    line = manager.PATHS.tor_bridges.read_text().splitlines()[-1]
    assert line.startswith(f"Bridge obfs4 {A.TOR_BRIDGE}:{A.TOR_BRIDGE_OBFS4_PORT} ") and " cert=" in line
    before = len(manager.PATHS.log.read_text().splitlines())
    out = tmp_path / "b.jsonl"
    assert tornet.wait_for_consensus(manager.PATHS.tornet, 120), tornet.consensus_relays(manager.PATHS.tornet)
    tk = measure_once("vanilla_tor", out, "--timeout", "20", "--tor-bridges", str(manager.PATHS.tor_bridges))
    assert (tk["success"], tk["tor_progress"], tk["transport_name"], tk["x_bridges"]) == (True, 100, "obfs4", 1), \
        tk["tor_logs"][-5:]
    assert any("(conn_pt)" in line for line in tk["tor_logs"])  # through the pluggable transport
    assert (tk["x_status"], tk["blocking"]) == ("ok", False)
    # the bridge, its fingerprint and its cert are in no line of the measurement
    written = out.read_text()
    fingerprint, cert = line.split()[3], line.split("cert=")[1].split()[0]
    assert A.TOR_BRIDGE not in written and fingerprint not in written and cert not in written
    truth = [json.loads(x) for x in manager.PATHS.log.read_text().splitlines()[before:]]
    assert not [t for t in truth if A.TOR_BRIDGE in str(t.get("server"))], truth
