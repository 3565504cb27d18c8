"""wireguard in the lab: a real WireGuard server (Debian's wireguard-go, userspace, at 198.19.3.40:51820 with the lab's
keys) answers our handshake; a censor that drops a UDP flow begun by WireGuard's initiation (the TSPU's way) is seen,
and a flow begun by junk gets through it to the same server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tamperscope.lab import addresses as A
from tamperscope.lab import farm, manager
from tamperscope.wire import wireguard as W

from .conftest import locate_json
from .test_probe_cli import probe, read

pytestmark = pytest.mark.lab
PROFILES = Path(__file__).parent / "profiles"
ENDPOINT = f"wireguard://{A.WIREGUARD_SERVER}:{A.WIREGUARD_PORT}"


def _locate() -> dict:  # type: ignore[type-arg]
    """`tamperscope locate --layer wireguard` towards the lab's WireGuard server, from the lab's client (--json)."""
    return locate_json(f"https://{A.WIREGUARD_SERVER}:{A.WIREGUARD_PORT}/", "--layer", "wireguard")


def _measure(out: Path, *args: str) -> dict:  # type: ignore[type-arg]
    res = probe("wireguard", "-o", str(out), *args)
    assert res.returncode == 0, res.stderr
    (m,) = read(out)
    assert (m["input"], m["test_name"]) == (ENDPOINT, "wireguard")
    text = out.read_text()
    server, client, psk = farm.wireguard_keys()
    for secret in (client, psk, W.public_key(client)):  # the lab's keys are public, a user's are not: never recorded
        assert W.key_text(secret) not in text
    return m["test_keys"]  # type: ignore[no-any-return]


def test_wireguard_go_answers_our_handshake(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab_factory("none")
    tk = _measure(tmp_path / "w.jsonl")  # the configuration is the lab's ($TAMPERSCOPE_WG_CONFIG)
    assert (tk["failure"], tk["x_status"], tk["x_mechanism"]) == (None, "ok", "none")
    assert tk["x_handshake"]["answer"] == "response" and tk["x_handshake"]["initiations"] == 1
    assert tk["x_junk_first"] is None and tk["x_address"] == f"{A.WIREGUARD_SERVER}:{A.WIREGUARD_PORT}"
    sizes = [(e["operation"], e["num_bytes"]) for e in tk["network_events"]]
    assert sizes == [("write_to", 148), ("read_from", 92)]
    # a client the server does not know (another private key): silence, from a server that is there
    stranger = tmp_path / "stranger.conf"
    stranger.write_text(manager.PATHS.wg_config.read_text().replace(
        W.key_text(farm.wireguard_keys()[1]), W.key_text(bytes([5]) * 32)))
    tk = _measure(tmp_path / "s.jsonl", "--wg-config", str(stranger))
    assert tk["failure"] == tk["x_junk_first"]["failure"] == "generic_timeout_error"
    assert (tk["x_status"], tk["x_mechanism"], tk["x_confidence"]) == ("anomaly", "udp.drop", 0.5)
    # nothing to locate: initiation-shaped datagrams and the control's random ones both reach the server's hop
    out = _locate()
    assert out["hop"] is None and out["path"][-1] == A.WIREGUARD_SERVER, out


def test_wireguard_dropped_by_its_first_datagram_and_passed_by_junk(  # type: ignore[no-untyped-def]
        lab_factory, tmp_path) -> None:
    lab_factory(str(PROFILES / "wireguard.toml"))
    tk = _measure(tmp_path / "w.jsonl")
    assert tk["failure"] == "generic_timeout_error" and tk["x_handshake"]["initiations"] >= 3
    junk = tk["x_junk_first"]
    assert (junk["failure"], junk["answer"], junk["junk"]) == (None, "response", 3)
    assert (tk["x_status"], tk["x_mechanism"], tk["blocking"], tk["x_confidence"]) == \
        ("anomaly", "udp.drop", "tcp_ip", 0.9)
    # the ground truth: the plain handshake's flow dropped once, by the rule, and nothing of the junk-first flow
    truth = [json.loads(line) for line in manager.PATHS.log.read_text().splitlines()]
    assert [(t["rule"], t["server"], t["proto"]) for t in truth] == \
        [("wireguard-dpi", f"{A.WIREGUARD_SERVER}:{A.WIREGUARD_PORT}", "udp")]
    # where: an initiation-shaped datagram, each from a new flow, goes silent from the censor's hop on, while the
    # control's random datagrams of the same size get the next router's time-exceeded: this protocol only
    out = _locate()
    assert (out["layer"], out["hop"], out["router"], out["placement"], out["scope"]) == \
        ("wireguard", A.CENSOR_AFTER_HOP + 1, A.ACCESS_LAN, "in-path", "protocol"), out
    assert len(out["runs"]) >= 3 and out["agreement"] > 0.5
    located = [json.loads(line) for line in manager.PATHS.log.read_text().splitlines()][1:]
    assert located and all(t["rule"] == "wireguard-dpi" for t in located)  # the triggers, dropped by the rule
