"""`tamperscope run --stun stun://HOST[:PORT]`: before measuring, the probe asks a STUN server which address
its traffic comes from (behind NAT, a public address on no interface, which a blockpage may echo) and scrubs
it from every measurement; it never records it. Also: stunreachability measures a built-in list of servers
when given no input.

In this process, through `cli.main`, with the nettests' `run` faked (test_probe_input_checks.Probe) and a real
STUN server on loopback, over real UDP sockets."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tamperscope.nettests import stunreachability, web_connectivity
from tamperscope.netx import stun
from tests.unit.test_probe_input_checks import Probe

PUBLIC = "203.0.113.7"  # what a NAT made of this probe's address: on no interface of this machine


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> Probe:
    return Probe(tmp_path, monkeypatch, capfd)


@contextlib.contextmanager
def stun_answerer(public: str = PUBLIC) -> Iterator[tuple[int, set[bytes]]]:
    """A STUN server on 127.0.0.1 that says every request came from ``public``: its port, and the transaction ids
    it was asked (a retransmission of one request counts once)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    done = threading.Event()
    asked: set[bytes] = set()

    def serve() -> None:
        while not done.is_set():
            try:
                data, peer = sock.recvfrom(2048)
            except TimeoutError:
                continue
            if len(data) >= 20:
                asked.add(data[8:20])
                sock.sendto(stun.binding_response(data[8:20], (public, 40000)), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1], asked
    finally:
        done.set()
        thread.join(5)
        sock.close()


@pytest.fixture
def stun_server() -> Iterator[int]:
    """A STUN server on 127.0.0.1 that says every request came from PUBLIC; yields its port."""
    with stun_answerer() as (port, _):
        yield port


def _echoing(cli: Probe, monkeypatch: pytest.MonkeyPatch) -> None:
    """web_connectivity's run replaced by one whose "page" prints the public address, as a blockpage may."""
    async def run(input: str | None, ctx: Any) -> dict[str, Any]:
        cli.measured.append(input)
        return {"requests": [{"response": {"body": f"Access denied. Your IP address is {PUBLIC}."}}]}

    monkeypatch.setattr(web_connectivity, "run", run)


def test_the_address_a_stun_server_saw_is_scrubbed(cli: Probe, monkeypatch: pytest.MonkeyPatch,
                                                   stun_server: int) -> None:
    _echoing(cli, monkeypatch)
    res = cli.main("run", "web_connectivity", "--yes", "--no-progress", "-i", "https://a.example/",
                     "-o", "out.jsonl", "--stun", f"stun://127.0.0.1:{stun_server}")
    assert res.code == 0, res.err
    text = (cli.dir / "out.jsonl").read_text()
    assert PUBLIC not in text and "Your IP address is [scrubbed]." in text


def test_without_stun_the_address_stays(cli: Probe, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test above fails for the reason it names: the same run without --stun."""
    _echoing(cli, monkeypatch)
    res = cli.main("run", "web_connectivity", "--yes", "--no-progress", "-i", "https://a.example/",
                     "-o", "out.jsonl")
    assert res.code == 0, res.err
    assert f"Your IP address is {PUBLIC}." in (cli.dir / "out.jsonl").read_text()


def test_the_variable_works_as_the_option(cli: Probe, monkeypatch: pytest.MonkeyPatch, stun_server: int) -> None:
    _echoing(cli, monkeypatch)
    monkeypatch.setenv("TAMPERSCOPE_STUN", f"127.0.0.1:{stun_server}")
    res = cli.main("run", "web_connectivity", "--yes", "--no-progress", "-i", "https://a.example/",
                     "-o", "out.jsonl")
    assert res.code == 0, res.err
    assert PUBLIC not in (cli.dir / "out.jsonl").read_text()


def test_a_silent_stun_server_is_said_and_the_run_goes_on(cli: Probe, monkeypatch: pytest.MonkeyPatch) -> None:
    _echoing(cli, monkeypatch)
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: ICMP port unreachable
    res = cli.main("run", "web_connectivity", "--yes", "--no-progress", "-i", "https://a.example/",
                     "-o", "out.jsonl", "--stun", f"stun://127.0.0.1:{port}")
    assert res.code == 0, res.err
    assert f"the STUN server stun://127.0.0.1:{port} did not say this probe's public address " \
           "(connection_refused)" in res.err
    assert cli.measured == ["https://a.example/"]


@pytest.mark.parametrize("value", ["http://a.example/", "stun://", "stun://a:0x", "stun://u@a", ""])
def test_a_bad_stun_server_is_a_usage_error(cli: Probe, value: str) -> None:
    res = cli.main("run", "web_connectivity", "--yes", "-i", "https://a.example/", "-o", "out.jsonl",
                     "--stun", value)
    assert res.code == 2 and res.line.startswith("tamperscope: --stun must be a STUN server"), res.err
    assert cli.measured == [] and not (cli.dir / "out.jsonl").exists()


def test_consent_names_the_stun_server(cli: Probe, monkeypatch: pytest.MonkeyPatch) -> None:
    from tamperscope.probe import consent

    asked: list[str] = []

    def ask(yes: bool, plan: str) -> None:  # what the prompt shows, then a refusal
        asked.append(plan)
        raise consent.ConsentRequired("no")

    monkeypatch.setattr(consent, "ensure_consent", ask)
    res = cli.main("run", "web_connectivity", "-i", "https://a.example/", "-o", "out.jsonl",
                     "--stun", "stun://stun.example.net:19302")
    assert res.code == 2 and cli.measured == []
    assert "the STUN server stun://stun.example.net:19302 (once: which address" in asked[0]


def test_stunreachability_without_input_measures_the_builtin_list(cli: Probe) -> None:
    res = cli.main("run", "stunreachability", "--yes", "--no-progress", "-o", "out.jsonl")
    assert res.code == 0, res.err
    assert cli.measured == list(stunreachability.DEFAULT_INPUTS) == cli.inputs()
    for spec in stunreachability.DEFAULT_INPUTS:
        stunreachability.endpoint_of(spec)


def test_the_network_is_looked_up_by_the_public_address(cli: Probe, monkeypatch: pytest.MonkeyPatch,
                                                         stun_server: int) -> None:
    """Behind NAT the probe's own address is private, in no AS table: the one the STUN server saw names the
    network (probe_asn, probe_cc), as OONI Probe looks up the address its STUN or IP-lookup service gives."""
    import orjson

    from tamperscope.probe import privacy

    _echoing(cli, monkeypatch)
    monkeypatch.setattr(privacy, "local_addresses", lambda peers: {"192.168.1.23"})  # the NAT's inside
    (cli.dir / "asn.tsv").write_text("203.0.113.0\t203.0.113.255\t64496\tAR\tNAT-ISP\n")
    res = cli.main("run", "web_connectivity", "--yes", "--no-progress", "-i", "https://a.example/",
                   "-o", "out.jsonl", "--asn-table", "asn.tsv", "--stun", f"stun://127.0.0.1:{stun_server}")
    assert res.code == 0, res.err
    m = orjson.loads((cli.dir / "out.jsonl").read_bytes())
    assert (m["probe_asn"], m["probe_cc"], m["probe_network_name"]) == ("AS64496", "AR", "NAT-ISP")
    assert m["probe_ip"] == "127.0.0.1"
