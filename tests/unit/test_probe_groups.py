"""`tamperscope run im`: OONI's instant-messaging nettests one after another, as OONI Probe's card runs them;
every setting of every one checked before the first runs, one consent naming what all of them contact."""

from __future__ import annotations

import orjson
import pytest

from tamperscope import nettests
from tests.unit.test_probe_input_checks import Probe, probe  # noqa: F401 (a fixture)
from tests.unit.test_telegram import refuse_consent


def test_the_im_group_runs_its_nettests_in_order_into_one_output(probe: Probe) -> None:  # noqa: F811
    res = probe.main("run", "im", "--yes", "--no-progress", "-o", "out.jsonl")
    assert res.code == 0, res.err
    lines = [orjson.loads(x) for x in (probe.dir / "out.jsonl").read_bytes().splitlines()]
    assert [m["test_name"] for m in lines] == ["telegram", "whatsapp", "facebook_messenger", "signal"]
    assert probe.measured == [None, None, None, None]
    assert [line.split(" on ")[0] for line in res.err.splitlines() if line.startswith("tamperscope: ")] == \
        ["tamperscope: telegram", "tamperscope: whatsapp", "tamperscope: facebook_messenger",
         "tamperscope: signal"]
    assert probe.main("run", "im", "--yes", "--no-progress", "-o", "out.jsonl").code == 0  # no input: run again
    assert len((probe.dir / "out.jsonl").read_bytes().splitlines()) == 8


def test_without_an_output_each_nettest_writes_its_own_file(probe: Probe) -> None:  # noqa: F811
    assert probe.main("run", "im", "--yes", "--no-progress").code == 0
    for name in nettests.GROUPS["im"]:
        (m,) = [orjson.loads(x) for x in (probe.dir / f"tamperscope-{name}.jsonl").read_bytes().splitlines()]
        assert m["test_name"] == name


@pytest.mark.parametrize("argv, said", [
    (("-i", "https://web.whatsapp.com/"), "tamperscope: the im group takes no input (its nettests measure their own "
                                          "servers)"),
    (("--tor-targets", "targets.json"), "tamperscope: --tor-targets is for the tor nettest"),
    (("--telegram-dcs", "nope"), "tamperscope: --telegram-dcs: not an IP address: 'nope' (expected IP[,IP...])"),
    (("--timeout", "0"), "tamperscope: --timeout must be more than 0 and at most 86400 seconds, not 0.0"),
])
def test_a_mistake_stops_the_group_before_anything_runs(probe: Probe,  # noqa: F811
                                                         argv: tuple[str, ...], said: str) -> None:
    res = probe.main("run", "im", "--yes", "-o", "out.jsonl", *argv)
    assert (res.code, res.err.strip()) == (2, said)
    assert probe.measured == [] and not (probe.dir / "out.jsonl").exists()


def test_one_consent_names_every_apps_servers(probe: Probe, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    asked = refuse_consent(monkeypatch)
    assert probe.main("run", "im", "-o", "out.jsonl").code == 2
    (plan,) = asked
    assert plan.startswith("This run would contact: Telegram's access points (ports 80 and 443) and "
                           "https://web.telegram.org/; WhatsApp's chat endpoints")
    assert "; Facebook Messenger's servers (b-api, b-graph, edge-mqtt" in plan and "; Signal's servers (" in plan
    assert plan.count("the system resolver") == 1
    assert probe.measured == []


def test_the_circumvention_group_gives_tor_its_targets_and_names_both(probe: Probe,  # noqa: F811
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """--tor-targets goes to tor alone (riseupvpn does not refuse it); one consent names both nettests' servers."""
    (probe.dir / "bridges.txt").write_text("Bridge 192.0.2.7:443 4352E58420E68F5E40BF7C74FADDCCD9D1349413\n")
    assert probe.main("run", "circumvention", "--yes", "--no-progress", "-o", "out.jsonl",
                      "--tor-targets", "bridges.txt").code == 0
    assert [orjson.loads(x)["test_name"] for x in (probe.dir / "out.jsonl").read_bytes().splitlines()] == \
        ["tor", "riseupvpn"]
    asked = refuse_consent(monkeypatch)
    assert probe.main("run", "circumvention", "-o", "out.jsonl", "--tor-targets", "bridges.txt").code == 2
    (plan,) = asked
    assert "the 1 Tor targets of bridges.txt (1 of them private bridges, scrubbed from the measurement)" in plan
    assert "RiseupVPN's API (black.riseup.net, riseup.net, api.black.riseup.net) and the gateways it lists" in plan
    assert "192.0.2.7" not in plan


def test_help_names_the_groups(probe: Probe) -> None:  # noqa: F811
    with pytest.raises(SystemExit):
        probe.main("run", "--help")
    out = probe.capfd.readouterr().out
    assert "im (telegram, whatsapp, facebook_messenger, signal)" in " ".join(out.split())
    assert "circumvention (tor, riseupvpn)" in " ".join(out.split())


def test_the_summary_names_a_nettest_without_input_and_what_it_found() -> None:
    from tamperscope.probe.engine import RunStats

    stats = RunStats()
    stats.add({"test_name": "signal", "input": None, "test_keys": {
        "x_mechanism": "tls.rst", "x_evidence": ["test_keys.signal_backend_status"], "blocking": "http-failure"}})
    stats.add({"test_name": "telegram", "input": None, "test_keys": {"x_mechanism": "none", "blocking": False}})
    stats.add({"test_name": "web_connectivity", "input": "https://x.example/",
               "test_keys": {"x_mechanism": "none", "blocking": False, "accessible": True}})
    # a measurement that said neither blocking nor accessible could not tell: its own row, not "none"
    stats.add({"test_name": "web_connectivity", "input": "https://y.example/", "test_keys": {"x_mechanism": "none"}})
    assert stats.examples == {"tls.rst": ["signal (signal_backend_status)"],
                              "none": ["telegram", "https://x.example/"], "could not tell": ["https://y.example/"]}
    assert stats.blocked == 1


def test_the_group_asks_the_stun_server_once(probe: Probe) -> None:  # noqa: F811
    """The notice says the STUN server is asked once: so it is, for the four nettests (a real server on
    loopback, over UDP), and all four measure."""
    from tests.unit.test_probe_stun_option import stun_answerer

    with stun_answerer() as (port, asked):
        res = probe.main("run", "im", "--yes", "--no-progress", "-o", "out.jsonl", "--stun", f"stun://127.0.0.1:{port}")
    assert res.code == 0, res.err
    assert len(asked) == 1
    lines = [orjson.loads(x) for x in (probe.dir / "out.jsonl").read_bytes().splitlines()]
    assert [m["test_name"] for m in lines] == list(nettests.GROUPS["im"])
