"""The telegram nettest on loopback (real TCP and HTTP; its ports and web URL replaced, as only tests may),
its access-point option, and its verdict, which is the analysis's."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tamperscope.analysis.verdicts import verdict_for
from tamperscope.collector import testing
from tamperscope.model.measurement import ProbeInfo
from tamperscope.nettests import telegram
from tamperscope.nettests.base import Context, NettestError, Timeouts
from tamperscope.probe.engine import Engine
from tamperscope.probe.privacy import Scrubber
from tests.unit.test_probe_input_checks import Probe

LO = "127.0.0.1"
FAST = Timeouts(dns=1, connect=1, tls=1, http=1, control=1, measurement=8)


async def _http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    body = b"<html><title>Telegram Web</title></html>" if head.startswith(b"GET") else b""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    await writer.drain()
    writer.close()


async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    # an RST, as a DPI box sends (a close with linger 0)
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def measure_on_loopback(nettest: ModuleType, answer: Handler,
                        options: Callable[[int, int, int], dict[str, Any]]) -> dict[str, Any]:
    """One measurement by ``nettest`` through the engine, with three ports on loopback: a server that answers
    with ``answer``, one that resets every request, and one where nothing listens (connection refused).
    ``options(up, reset, closed)`` makes the nettest's options from their port numbers."""
    async def main() -> dict[str, Any]:
        up = await asyncio.start_server(answer, LO, 0)
        rst = await asyncio.start_server(reset, LO, 0)
        closed_port = testing.closed_port()  # held, never listening: no other test's server can take it
        ctx = Context(timeouts=FAST, options=options(up.sockets[0].getsockname()[1], rst.sockets[0].getsockname()[1],
                                                     closed_port))
        async with up, rst:
            return await Engine(nettest, ctx, ProbeInfo(), Scrubber([], interfaces=False)).measure(None)

    return asyncio.run(asyncio.wait_for(main(), 20))


def _measure(answering: bool, web_ok: bool) -> dict[str, Any]:
    return measure_on_loopback(telegram, _http, lambda up, rst, closed: {
        "telegram_dcs": (LO,), "telegram_ports": (up, rst) if answering else (closed,),
        "telegram_web": f"http://{LO}:{up if web_ok else rst}/"})


def test_reachable_access_points_and_web_client() -> None:
    m = _measure(answering=True, web_ok=True)
    tk = m["test_keys"]
    assert (tk["telegram_tcp_blocking"], tk["telegram_http_blocking"], tk["telegram_web_status"]) == \
        (False, False, "ok")
    assert (tk["x_status"], tk["x_mechanism"], tk["blocking"], tk["accessible"]) == ("ok", "none", False, True)
    posts = [r for r in tk["requests"] if r["request"]["method"] == "POST"]
    assert sorted(r["failure"] or "ok" for r in posts) == ["connection_reset", "ok"]
    assert verdict_for(m).to_test_keys() == {k: tk[k] for k in verdict_for(m).to_test_keys()}


def test_refused_access_points_are_tcp_blocking() -> None:
    m = _measure(answering=False, web_ok=True)
    tk = m["test_keys"]
    assert (tk["telegram_tcp_blocking"], tk["telegram_http_blocking"], tk["telegram_web_status"]) == (True, True, "ok")
    assert (tk["x_status"], tk["x_mechanism"], tk["blocking"]) == ("anomaly", "tcp.rst", "tcp_ip")
    assert [c["status"]["failure"] for c in tk["tcp_connect"]] == ["connection_refused", None]  # the web one connects


def test_a_reset_web_client_is_blocked() -> None:
    m = _measure(answering=True, web_ok=False)
    tk = m["test_keys"]
    assert (tk["telegram_web_status"], tk["telegram_web_failure"]) == ("blocked", "connection_reset")
    assert (tk["x_status"], tk["x_mechanism"], tk["x_evidence"]) == \
        ("anomaly", "tls.rst", ["test_keys.telegram_web_status"])


@pytest.mark.parametrize("value, ok", [
    ("198.19.2.1", ("198.19.2.1",)),
    (" 198.19.2.1 ,2001:db8::1", ("198.19.2.1", "2001:db8::1")),
    ("198.19.2.1,198.19.2.1", ("198.19.2.1",)),
])
def test_access_points_option(value: str, ok: tuple[str, ...]) -> None:
    assert telegram.access_points(value) == ok


@pytest.mark.parametrize("value", ["", "telegram.org", "198.19.2.1,", "1.2.3.4:80", "198.19.2.1,x198.19.2.1",
                                   ",".join(f"198.19.2.{i}" for i in range(1, 34))],
                         ids=["empty", "name", "trailing-comma", "port", "junk", "33-addresses"])
def test_bad_access_points_are_refused(value: str) -> None:
    with pytest.raises(NettestError):
        telegram.access_points(value)


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> Probe:
    return Probe(tmp_path, monkeypatch, capfd)


def test_a_bad_access_point_is_a_usage_error(cli: Probe) -> None:
    res = cli.main("run", "telegram", "--yes", "-o", "out.jsonl", "--telegram-dcs", "149.154.175.50,nope")
    assert res.code == 2 and res.line == "tamperscope: --telegram-dcs: not an IP address: 'nope' (expected IP[,IP...])"
    assert cli.measured == [] and not (cli.dir / "out.jsonl").exists()


def refuse_consent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every consent notice is refused, and what it said is kept (in the list returned)."""
    from tamperscope.probe import consent

    asked: list[str] = []

    def ask(yes: bool, plan: str) -> None:
        asked.append(plan)
        raise consent.ConsentRequired("no")

    monkeypatch.setattr(consent, "ensure_consent", ask)
    return asked


def test_consent_names_the_access_points(cli: Probe, monkeypatch: pytest.MonkeyPatch) -> None:
    asked = refuse_consent(monkeypatch)
    assert cli.main("run", "telegram", "-o", "out.jsonl").code == 2
    monkeypatch.setenv("TAMPERSCOPE_TELEGRAM_DCS", "198.19.2.1,198.19.2.2")
    assert cli.main("run", "telegram", "-o", "out.jsonl").code == 2
    assert asked[0].startswith("This run would contact: Telegram's access points (ports 80 and 443) and https://web")
    assert asked[1].startswith("This run would contact: the access points 198.19.2.1, 198.19.2.2 (ports 80 and 443)")
    assert cli.main("run", "facebook_messenger", "-o", "out.jsonl").code == 2
    assert asked[2].startswith("This run would contact: Facebook Messenger's servers (b-api, b-graph, edge-mqtt")


@pytest.mark.parametrize("nettest", ["telegram", "whatsapp", "facebook_messenger"])
def test_an_input_is_refused(cli: Probe, nettest: str) -> None:
    res = cli.main("run", nettest, "--yes", "-i", "https://web.telegram.org/", "-o", "out.jsonl")
    assert res.code == 2 and res.line.startswith(f"tamperscope: {nettest} takes no input (it measures ")
    assert cli.measured == [] and not (cli.dir / "out.jsonl").exists()


def test_a_web_client_failing_after_a_bogon_answer_is_dns() -> None:
    m = {"test_name": "telegram", "test_keys": {
        "telegram_tcp_blocking": False, "telegram_http_blocking": False, "telegram_web_status": "blocked",
        "telegram_web_failure": "connection_refused",
        "queries": [{"hostname": "web.telegram.org", "answers": [{"answer_type": "A", "ipv4": "127.0.0.1"}]}]}}
    assert (verdict_for(m).mechanism, verdict_for(m).blocking) == ("dns.poison", "dns")
    m["test_keys"]["queries"][0]["answers"][0]["ipv4"] = "149.154.167.99"
    assert verdict_for(m).mechanism == "tls.rst"
