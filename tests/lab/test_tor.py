"""tor in the lab: the lab's stand-ins for Tor's ten directory authorities (198.19.3.1-10, given to the probe as
$TAMPERSCOPE_TOR_TARGETS) serve TLS on their OR ports and a consensus on their directory ports, and a real obfs4
bridge (Debian's obfs4proxy, with the lab's key) listens at 198.19.3.20:27015. A censor that drops the OR ports by
address and answers the directory ports with a blockpage, as Russia did from December 2021, is seen target by
target: no OR port connects, no directory serves a consensus, and the bridge it does not know still works."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tamperscope.lab import addresses as A
from tamperscope.lab import farm, manager

from .test_probe_cli import measure_once, probe

pytestmark = pytest.mark.lab
PROFILE = str(Path(__file__).parent / "profiles" / "tor.toml")
NAMES = [name for name, _ in A.TOR_DIRAUTHS]


def _by_protocol(tk: dict, protocol: str) -> list[dict]:  # type: ignore[type-arg]
    return [t for t in tk["targets"].values() if t["target_protocol"] == protocol]


def test_tor_reachable_without_a_censor(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab_factory("none")
    tk = measure_once("tor", tmp_path / "t.jsonl")
    assert list(tk["targets"]) == list(farm.tor_targets()), tk["targets"].keys()
    assert {k: t["failure"] for k, t in tk["targets"].items()} == {k: None for k in farm.tor_targets()}
    assert tk["targets"]["lab-obfs4"]["summary"] == {"connect": {"failure": None}, "handshake": {"failure": None}}
    assert (tk["obfs4_total"], tk["obfs4_accessible"]) == (1, 1)
    assert (tk["or_port_dirauth_total"], tk["or_port_dirauth_accessible"]) == (10, 10)
    assert (tk["dir_port_total"], tk["dir_port_accessible"]) == (10, 10)
    assert [t["target_name"] for t in _by_protocol(tk, "dir_port")] == NAMES
    assert all(t["x_consensus"] is True for t in _by_protocol(tk, "dir_port"))
    assert all(t["summary"]["handshake"] == {"failure": None} for t in _by_protocol(tk, "or_port_dirauth"))
    assert (tk["x_status"], tk["blocking"], tk["accessible"]) == ("ok", False, True)


def test_tor_blocked_as_russia_did(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab_factory(PROFILE)
    tk = measure_once("tor", tmp_path / "t.jsonl")
    ors, dirs = _by_protocol(tk, "or_port_dirauth"), _by_protocol(tk, "dir_port")
    assert [t["failure"] for t in ors] == ["generic_timeout_error"] * 10, [t["failure"] for t in ors]
    assert all(t["summary"] == {"connect": {"failure": "generic_timeout_error"}} and t["tls_handshakes"] is None
               for t in ors)
    # the directories answer, but with the DPI box's page: a 200 that is no consensus is no directory
    assert [(t["failure"], t["x_consensus"]) for t in dirs] == [("http_request_failed", False)] * 10
    bodies = [r["response"]["body"] for t in dirs for r in t["requests"]]
    assert len(bodies) == 10 and all("mts" in b.lower() for b in bodies), bodies[0][:300]
    assert (tk["or_port_dirauth_accessible"], tk["dir_port_accessible"], tk["obfs4_accessible"]) == (0, 0, 1)
    assert (tk["x_status"], tk["x_mechanism"], tk["blocking"], tk["accessible"]) == \
        ("anomaly", "tcp.drop", "tcp_ip", False)
    truth = [json.loads(line) for line in manager.PATHS.log.read_text().splitlines()]
    assert {t["rule"] for t in truth} == {"tor-or-ports", "tor-dir-ports"}
    assert {t["server"] for t in truth if t["rule"] == "tor-or-ports"} == {f"{ip}:443" for _, ip in A.TOR_DIRAUTHS}


def test_a_private_bridge_is_measured_and_published_nowhere(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A bridge of the user's own (any internet address of the lab serves TLS on 443) beside a public directory
    authority: both measured, and the bridge's address in neither the output nor what the probe printed."""
    lab_factory(PROFILE)
    bridge = "198.19.44.7"
    targets = tmp_path / "targets.json"
    targets.write_text(json.dumps({
        "mine": {"address": f"{bridge}:443", "protocol": "or_port", "private": True},
        "198.19.3.1:80": {"address": "198.19.3.1:80", "protocol": "dir_port", "name": "moria1"},
        "obfs4": {"address": f"{A.OBFS4_BRIDGE}:{A.OBFS4_PORT}", "protocol": "obfs4", "source": "bridgedb",
                  "params": {"cert": [farm.obfs4_cert()]}}}))
    out = tmp_path / "t.jsonl"
    res = probe("tor", "--tor-targets", str(targets), "--summary", "-o", str(out))
    assert res.returncode == 0, res.stderr
    text = out.read_text()
    assert bridge not in text and bridge not in res.stderr + res.stdout and A.OBFS4_BRIDGE not in text
    tk = json.loads(text)["test_keys"]
    (key, entry), (dirauth, directory), (_, obfs) = tk["targets"].items()
    assert len(key) == 64 and entry["target_address"] == "[scrubbed]:443" and entry["failure"] is None
    assert entry["summary"]["handshake"] == {"failure": None}  # the censor drops 198.19.3.0/28 only
    assert (dirauth, directory["failure"], directory["x_consensus"]) == ("198.19.3.1:80", "http_request_failed", False)
    assert (tk["or_port_accessible"], tk["dir_port_accessible"], tk["obfs4_accessible"]) == (1, 0, 1)
    assert obfs["target_address"] == f"[scrubbed]:{A.OBFS4_PORT}" and obfs["failure"] is None


def test_an_obfs4_bridge_given_a_wrong_cert_says_nothing(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """obfs4's probing resistance, from the real bridge: a client without the bridge's key gets silence (a timeout),
    which is what a censor's prober gets too; the right key gets the handshake."""
    lab_factory("none")
    node_id, _ = farm.obfs4_identity()
    wrong = base64.b64encode(node_id + bytes(range(32))).decode().rstrip("=")
    targets = tmp_path / "targets.json"
    targets.write_text(json.dumps({
        k: {"address": f"{A.OBFS4_BRIDGE}:{A.OBFS4_PORT}", "protocol": "obfs4", "params": {"cert": [cert]}}
        for k, cert in (("right", farm.obfs4_cert()), ("wrong", wrong))}))
    tk = measure_once("tor", tmp_path / "t.jsonl", "--tor-targets", str(targets))
    assert {k: t["failure"] for k, t in tk["targets"].items()} == {"right": None, "wrong": "generic_timeout_error"}
    assert tk["targets"]["wrong"]["summary"]["connect"] == {"failure": None}  # connected: the bridge just said nothing


def test_bridge_lines_as_tor_browser_takes_them(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A user's bridges pasted as lines: the lab's real obfs4 bridge and a plain one, both reached, both private."""
    lab_factory(PROFILE)
    lines = tmp_path / "bridges.txt"
    lines.write_text(f"Bridge obfs4 {A.OBFS4_BRIDGE}:{A.OBFS4_PORT} {'AB' * 20} cert={farm.obfs4_cert()} iat-mode=0\n"
                     "Bridge 198.19.44.9:443\n")
    out = tmp_path / "t.jsonl"
    res = probe("tor", "--tor-targets", str(lines), "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert A.OBFS4_BRIDGE not in out.read_text() and "198.19.44.9" not in out.read_text()
    tk = json.loads(out.read_text())["test_keys"]
    assert [(t["target_protocol"], t["failure"]) for t in tk["targets"].values()] == [
        ("obfs4", None), ("or_port", None)]
    assert (tk["x_status"], tk["obfs4_accessible"], tk["or_port_accessible"]) == ("ok", 1, 1)
