"""stunreachability in the lab: the lab's STUN servers answer at every 198.19 address (UDP 3478 and 19302);
a censor that drops a server's address or forges NXDOMAIN for its name is seen, and the address the server
saw (the client's) is never recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tamperscope.lab import addresses as A
from tamperscope.lab import manager

from .test_probe_cli import probe

pytestmark = pytest.mark.lab
PROFILE = str(Path(__file__).parent / "profiles" / "stun.toml")


def _run(out: Path, *inputs: str) -> dict[str, dict]:  # type: ignore[type-arg]
    args = [a for i in inputs for a in ("-i", i)]
    res = probe("stunreachability", *args, "-o", str(out), "--summary")
    assert res.returncode == 0, res.stderr
    text = out.read_text()
    assert A.CLIENT not in text  # the mapped address the servers sent back is the client's
    return {m["input"]: m["test_keys"] for m in map(json.loads, text.splitlines())}


def test_stun_reachable_without_a_censor(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab_factory("none")
    by = _run(tmp_path / "s.jsonl", f"stun://{A.STUN}:{A.STUN_PORT}", "stun://stun.l.google.com:19302")
    for tk in by.values():
        assert (tk["failure"], tk["x_status"], tk["accessible"], tk["x_requests"]) == (None, "ok", True, 1), tk
        ops = [e["operation"] for e in tk["network_events"] if e["address"] == tk["x_address"]]
        assert ops == ["write_to", "read_from"], ops  # (the lookup's events are there too, for a name)
    google = by["stun://stun.l.google.com:19302"]
    assert google["queries"] and google["x_address"].endswith(":19302") and google["x_address"].startswith("198.19.")


def test_stun_blocked_by_address_and_by_name(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab_factory(PROFILE)
    by = _run(tmp_path / "b.jsonl", f"stun://{A.STUN}:{A.STUN_PORT}", "stun://stun.l.google.com:19302",
              "stun://stun.example.org")
    dropped = by[f"stun://{A.STUN}:{A.STUN_PORT}"]
    assert (dropped["failure"], dropped["x_status"], dropped["x_mechanism"], dropped["blocking"]) == \
        ("generic_timeout_error", "anomaly", "udp.drop", "tcp_ip")
    assert dropped["x_requests"] >= 3  # retransmitted, never answered
    named = by["stun://stun.l.google.com:19302"]
    assert (named["failure"], named["x_mechanism"], named["blocking"]) == ("dns_nxdomain_error", "dns.nxdomain", "dns")
    assert named["x_requests"] == 0  # no address to ask
    other = by["stun://stun.example.org"]  # another server, at another address: not blocked
    assert (other["failure"], other["x_status"]) == (None, "ok"), other
    # the ground truth names both actions: the datagrams dropped (once per flow) and the forged NXDOMAIN
    truth = [json.loads(line) for line in manager.PATHS.log.read_text().splitlines()]
    udp = [t for t in truth if t["rule"] == "stun-ip"]
    assert udp and all(t["proto"] == "udp" and t["server"] == f"{A.STUN}:{A.STUN_PORT}" for t in udp)
    assert len({t["client"] for t in udp}) == len(udp)  # one line per flow, not per retransmission
    assert any(t["rule"] == "stun-dns" and t["name"] == "stun.l.google.com" for t in truth)


def test_stunreachability_without_input_measures_the_builtin_list(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The built-in servers' names resolve in the lab to the web farm, where every address answers STUN."""
    from tamperscope.nettests.stunreachability import DEFAULT_INPUTS

    lab_factory("none")
    by = _run(tmp_path / "d.jsonl")
    assert sorted(by) == sorted(DEFAULT_INPUTS)
    assert all(tk["failure"] is None and tk["x_status"] == "ok" for tk in by.values()), by
