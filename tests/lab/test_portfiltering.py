"""portfiltering in the lab: portquiz.net (198.19.3.50) answers HTTP on every TCP port, as the real one does; a
censor that drops, refuses or cuts some ports is found port by port, checked against the control helper's
connections from outside and against the censor's ground truth."""

from __future__ import annotations

from pathlib import Path

import pytest

from tamperscope.lab import addresses as A
from tamperscope.nettests.portfiltering import DEFAULT_PORTS

from .conftest import locate_json
from .test_probe_cli import probe, read

pytestmark = pytest.mark.lab
PROFILES = Path(__file__).parent / "profiles"


def _ports(tk: dict) -> dict[int, dict]:  # type: ignore[type-arg]
    return {p["port"]: p for p in tk["x_ports"]}


def test_every_port_is_open_without_a_censor(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab_factory("none")
    res = probe("portfiltering", "-o", str(tmp_path / "p.jsonl"))
    assert res.returncode == 0, res.stderr
    (m,) = read(tmp_path / "p.jsonl")
    assert (m["input"], m["test_name"]) == ("portquiz.net", "portfiltering")
    tk = m["test_keys"]
    assert tk["x_address"] == A.PORTQUIZ and tk["failure"] is None
    ports = _ports(tk)
    assert list(ports) == list(DEFAULT_PORTS)
    # each port connected and was answered by the farm's web server (its port 80, through the lab's nftables)
    assert {(p["connect"], p["reply"], p["status"]) for p in ports.values()} == {(None, None, 200)}
    # the helper connected to every one from outside
    assert {k: v["status"] for k, v in tk["control"]["tcp_connect"].items()} == {
        f"{A.PORTQUIZ}:{p}": True for p in DEFAULT_PORTS}
    assert (tk["x_status"], tk["blocking"], tk["x_mechanism"], tk["x_blocked_ports"]) == ("ok", False, "none", [])
    assert len([c for c in tk["tcp_connect"] if c["ip"] == A.PORTQUIZ]) == len(DEFAULT_PORTS)


def test_ports_dropped_refused_and_cut_are_found(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab = lab_factory(str(PROFILES / "ports.toml"))
    tk = measure_once_input(tmp_path, "tcp://portquiz.net:22,443,1723,3389,8080,9001")
    ports = _ports(tk)
    assert list(ports) == [22, 80, 443, 1723, 3389, 8080, 9001]  # 80 added: the baseline
    assert ports[22]["connect"] == ports[1723]["connect"] == "generic_timeout_error"
    assert ports[3389]["connect"] == "connection_refused"
    assert (ports[8080]["connect"], ports[8080]["reply"]) == (None, "connection_reset")
    assert all(ports[p]["status"] == 200 for p in (80, 443, 9001))
    # the helper, outside the censor, connected to the same ports: the filtering is this network's
    assert all(tk["control"]["tcp_connect"][f"{A.PORTQUIZ}:{p}"]["status"] for p in ports)
    assert tk["x_blocked_ports"] == [22, 1723, 3389, 8080]
    # two dropped, one refused, one cut: the measurement is named by the most ports' mechanism, as sure as the
    # controlled ports make it
    assert (tk["x_status"], tk["blocking"], tk["x_mechanism"], tk["x_confidence"]) == (
        "anomaly", "tcp_ip", "tcp.drop", 0.9)
    # the censor's ground truth: what it did, to which port
    truth = {(e["rule"], int(e["server"].rsplit(":", 1)[1])) for e in lab.log() if e["server"].startswith(A.PORTQUIZ)}
    assert truth == {("ports-drop", 22), ("ports-drop", 1723), ("ports-rst", 3389), ("ports-http", 8080)}
    # where: SYNs to port 22 go silent from the censor's hop on, while the control's to port 80 of the same
    # address reach the server (`locate --layer tcp`: the SYN is the trigger)
    out = locate_json("http://portquiz.net:22/", "--layer", "tcp")
    assert (out["layer"], out["hop"], out["router"], out["placement"], out["scope"]) == \
        ("tcp", A.CENSOR_AFTER_HOP + 1, A.ACCESS_LAN, "in-path", "port"), out


def measure_once_input(tmp_path: Path, target: str) -> dict:  # type: ignore[type-arg]
    res = probe("portfiltering", "-i", target, "-o", str(tmp_path / "p.jsonl"))
    assert res.returncode == 0, res.stderr
    (m,) = read(tmp_path / "p.jsonl")
    assert (m["input"], m["test_name"]) == (target, "portfiltering")
    return m["test_keys"]  # type: ignore[no-any-return]


def test_a_port_the_server_does_not_take_is_not_blocking(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The echo service's address (198.19.0.7) takes ports 7 and 80 (an echo on both: no HTTP) and refuses 22, from
    outside too: not filtering."""
    lab_factory("none")
    tk = measure_once_input(tmp_path, f"{A.ECHO}:7,22")
    ports = _ports(tk)
    for port in (7, 80):  # our request, echoed: answered, if not in HTTP
        assert (ports[port]["connect"], ports[port]["reply"], ports[port]["status"]) == (
            None, "unknown_failure: http protocol error", None), ports
    assert ports[22]["connect"] == "connection_refused"
    assert tk["control"]["tcp_connect"][f"{A.ECHO}:22"] == {"status": False, "failure": "connection_refused"}
    assert (tk["x_status"], tk["x_mechanism"], tk["x_blocked_ports"]) == ("ok", "none", [])
