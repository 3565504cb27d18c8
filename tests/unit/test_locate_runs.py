"""The locator's runs against a fake network with a censor at hop 2 (no packets: `ttlprobe`'s triggers replaced):
residual blocking after a run that met the censor is not taken for an IP block, other addresses are tried before
the SYN becomes the trigger, and OpenVPN's first packet is told from random bytes (scope "protocol")."""

from __future__ import annotations

from typing import Any

import pytest

from tamperscope.netx import openvpn, ttlprobe
from tamperscope.probe import locate as L
from tamperscope.wire import packet as P

ROUTERS = ["198.18.1.1", "198.18.2.2"]
NAMED, SPREAD = "198.19.1.9", ["198.19.1.1", "198.19.1.2", "198.19.1.3"]


class _FakeCapture:
    ignored = 0
    dropped = 0

    def close(self) -> None:
        pass


class Network:
    """Two routers, then the server (TTL 3). The censor sits after router 1: it resets a trigger it knows (a Host
    naming blocked.example, or OpenVPN's hard reset) and then holds that client and server (residual blocking) for
    ``hold`` more connections; ``held`` servers start held, as after the probe's own measurement."""

    def __init__(self, hold: int = 100, held: tuple[str, ...] = ()) -> None:
        self.hold = hold
        self.held = {ip: hold for ip in held}
        self.syns: list[str] = []

    def _blocked(self, ip: str) -> bool:
        if self.held.get(ip, 0) > 0:
            self.held[ip] -= 1
            return True
        return False

    def trigger(self, cap: Any, ip: str, port: int, payload: bytes, ttl: int, *, wait: float = 1.0) -> ttlprobe.Step:
        if self._blocked(ip):
            return ttlprobe.Step(ttl, False, "generic_timeout_error")
        known = b"Host: blocked.example" in payload or (  # OpenVPN's first packet: its length, then its opcode
            payload[:2] == b"\x00\x0e" and payload[2] >> 3 == openvpn.HARD_RESET_CLIENT_V2)
        if ttl >= 2 and known:
            self.held[ip] = self.hold
            return ttlprobe.Step(ttl, True, None, [ttlprobe.Seen("tcp", ip, 60, 7, P.RST | P.ACK)])
        if ttl <= len(ROUTERS):
            return ttlprobe.Step(ttl, True, None, [ttlprobe.Seen("icmp-time-exceeded", ROUTERS[ttl - 1], 63, 0)])
        return ttlprobe.Step(ttl, True, None, [ttlprobe.Seen("tcp", ip, 61, 0, P.ACK | P.PSH, payload=b"x")])

    def syn(self, cap: Any, ip: str, port: int, ttl: int, *, wait: float = 1.0) -> ttlprobe.Step:
        self.syns.append(ip)
        if ttl >= 2 and self.held.get(ip, 0) > 0 and port != L.control_port(443):  # the censor drops the held
            # address's SYNs after router 1, not those to the control's port
            return ttlprobe.Step(ttl, True)
        if ttl > len(ROUTERS):
            return ttlprobe.Step(ttl, True, None, [ttlprobe.Seen("tcp", ip, 61, 0, P.SYN | P.ACK)])
        return ttlprobe.Step(ttl, True, None, [ttlprobe.Seen("icmp-time-exceeded", ROUTERS[ttl - 1], 63, 0)])


def _locate(monkeypatch: pytest.MonkeyPatch, net: Network, url: str, layer: str,
            spread: list[str] | None = None) -> tuple[Any, dict[str, Any]]:
    monkeypatch.setattr(ttlprobe, "Capture", _FakeCapture)
    monkeypatch.setattr(ttlprobe, "traceroute", lambda ip, max_ttl, wait: ([*ROUTERS, ip], 3))
    monkeypatch.setattr(ttlprobe, "tcp_trigger", net.trigger)
    monkeypatch.setattr(ttlprobe, "syn_trigger", net.syn)
    monkeypatch.setattr(L, "_real_address", lambda host, resolver, timeout: _done((NAMED, False)))
    return L.locate(url, layer=layer, control="www.example.com", runs=3, max_ttl=8, wait=0.1,
                    spread=spread or [], resolver="198.19.0.8")


async def _done(value: Any) -> Any:
    return value


def test_residual_blocking_after_a_run_that_met_the_censor_is_no_ip_block(monkeypatch: pytest.MonkeyPatch) -> None:
    loc, detail = _locate(monkeypatch, Network(), "http://blocked.example/", "http")
    assert (loc.hop, loc.router, loc.scope, detail["layer"]) == (2, ROUTERS[0], "name", "http"), loc.reason
    assert "switched" not in detail and list(loc.runs) == [2]
    held = [r for r in detail["runs"] if str(r.get("result", "")).startswith(L.RESIDUAL)]
    assert len(held) == 1  # the next run, to the one address: counted, not decided on, and the last (it is held)
    assert detail["ended"].startswith("every address was held by residual blocking")
    net = Network()
    _locate(monkeypatch, net, "http://blocked.example/", "http")
    assert net.held == {NAMED: 100 - 1}  # the held run's control could not connect: no target connect after it


def test_an_address_held_from_before_sends_the_runs_to_the_others_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """The name's own address is held (the probe just measured it): the spread addresses locate the censor with
    the trigger itself, where switching to the SYN would have placed a drop without its signature."""
    net = Network(held=(NAMED,))
    loc, detail = _locate(monkeypatch, net, "http://blocked.example/", "http", SPREAD)
    assert (loc.hop, loc.scope, detail["layer"]) == (2, "name", "http") and "switched" not in detail
    assert len(loc.runs) >= 3 and loc.signature.startswith("tcp/RA") and net.syns == []
    assert detail["runs"][0]["result"].startswith("could not connect (residual blocking, or this address blocked?)")


def test_an_address_nothing_connects_to_switches_to_the_syn(monkeypatch: pytest.MonkeyPatch) -> None:
    """An address given in the URL serves itself: no spread address can stand in for it, so the SYN is the trigger
    at once (Tor's OR ports blocked by address)."""
    net = Network(held=(NAMED,))
    loc, detail = _locate(monkeypatch, net, f"https://{NAMED}/", "tls", SPREAD)
    assert detail["layer"] == "tcp" and detail["switched"].startswith(f"could not connect to {NAMED}:443")
    assert (loc.hop, loc.scope) == (2, "port") and set(net.syns) == {NAMED}


def test_openvpn_s_first_packet_is_told_from_random_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[bytes] = []
    net = Network(hold=0)
    trigger = net.trigger

    def record(cap: Any, ip: str, port: int, payload: bytes, ttl: int, *, wait: float = 1.0) -> ttlprobe.Step:
        sent.append(payload)
        return trigger(cap, ip, port, payload, ttl, wait=wait)

    net.trigger = record  # type: ignore[method-assign]
    loc, detail = _locate(monkeypatch, net, "https://198.19.3.30:1194/", "openvpn")
    assert (loc.hop, loc.scope, detail["layer"]) == (2, "protocol", "openvpn") and len(loc.runs) == 3
    resets = [p for p in sent if p[:2] == b"\x00\x0e" and p[2] >> 3 == openvpn.HARD_RESET_CLIENT_V2]
    noise = [p for p in sent if p[:2] == b"\xff\xff"]
    assert resets and noise and len(resets) + len(noise) == len(sent)
    assert all(len(p) == 16 for p in sent) and len({p[3:11] for p in resets}) == len(loc.runs)  # one per run
    assert L._plan("198.19.3.30", "198.19.0.8", [], "www.example.com", None, "openvpn").startswith(
        "This run would contact: 198.19.3.30 and the routers on the path to it, with TTL-limited OpenVPN's first "
        "packet, and random bytes as the control")
