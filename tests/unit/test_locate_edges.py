"""`tamperscope locate`'s judgement at its edges, without packets: the pure helpers that turn hops, answers and forged
packets into a location, and `locate` itself over a fake network (`ttlprobe`'s triggers and traceroute replaced)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tamperscope.model.location import Observation, RunResult
from tamperscope.netx import ttlprobe
from tamperscope.probe import locate as L
from tamperscope.wire import packet as P

R1, R2, R3 = "198.18.1.1", "198.18.2.2", "198.18.3.3"
SERVER, SPREAD = "198.19.1.9", ["198.19.1.1", "198.19.1.2"]


def _obs(ttl: int, icmp: str | None = None, *responses: dict[str, Any], connected: bool = True) -> Observation:
    return Observation(ttl, connected, icmp, tuple(responses))


# -- the pure helpers --------------------------------------------------------------------------------------------------

def test_the_control_port_of_a_syn_is_another_port_a_censor_has_no_reason_to_block() -> None:
    assert (L.control_port(80), L.control_port(443), L.control_port(9001)) == (443, 80, 80)


def test_the_hop_after_the_last_router_that_answered() -> None:
    """Would break off by one: an IP block behind the last router is placed at the hop after it."""
    assert L.silent_after([]) == 1
    assert L.silent_after([None, None]) == 1
    assert L.silent_after([R1, None, R3, None, None]) == 4


def test_silence_beyond_a_hop_needs_both_sweeps_to_go_past_it_and_nothing_from_it_on() -> None:
    target = [_obs(1, R1), _obs(2), _obs(3)]
    control = [_obs(1, R1), _obs(2), _obs(3)]
    assert L._silent_beyond(target, control, 2)
    # an ICMP at exactly TTL k is not silence from k on (would break on `>`)
    assert not L._silent_beyond([_obs(1, R1), _obs(2, R2), _obs(3)], control, 2)
    assert not L._silent_beyond(target, [_obs(1, R1), _obs(2, R2), _obs(3)], 2)
    # an answer is not silence either
    assert not L._silent_beyond(target, [*control[:2], _obs(3, None, {"kind": "tcp", "ttl": 60})], 2)
    # a sweep that stopped before k says nothing of what is beyond it (would break if that were not required)
    assert not L._silent_beyond([_obs(1, R1)], control, 2)
    assert not L._silent_beyond(target, [_obs(1, R1)], 2)


def test_a_reset_is_the_servers_own_only_when_every_reset_has_the_ttl_of_the_servers_packets() -> None:
    """Would break if one reset with the server's TTL cleared a forged one beside it."""
    def run(*ttls: int) -> RunResult:
        return RunResult(3, R2, "in-path", "name", "RST", tuple({"flags": "RA", "ttl": t} for t in ttls))

    ctl = _obs(3, None, {"kind": "tcp", "flags": "SA", "ttl": 62})
    assert L._servers_own_reset(run(62), ctl)
    assert L._servers_own_reset(run(62, 62), ctl)
    assert not L._servers_own_reset(run(62, 50), ctl)
    assert not L._servers_own_reset(run(50), ctl)
    assert not L._servers_own_reset(run(62), None)
    assert not L._servers_own_reset(run(), ctl)  # no reset at all


def test_locates_own_lookups_get_at_least_four_seconds_and_more_on_a_long_path() -> None:
    assert L.dns_timeout(0.1) == 4.0
    assert L.dns_timeout(3.0) == 8.0


def test_the_last_trigger_at_full_ttl_is_listened_to_longer_than_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Would break if the late listen were only --wait long: a slow path's answer was then taken for a drop."""
    waits: list[tuple[int, float]] = []

    def trigger(cap: Any, layer: str, ip: str, port: int, payload: bytes, ttl: int, wait: float) -> ttlprobe.Step:
        waits.append((ttl, wait))
        return ttlprobe.Step(ttl, True, None, [ttlprobe.Seen("udp", ip, 60, 0)] if wait > 5 else [])

    monkeypatch.setattr(L, "_trigger", trigger)
    assert not L.answers_late(None, "quic", SERVER, 443, b"", 0.1)  # type: ignore[arg-type]
    assert L.answers_late(None, "quic", SERVER, 443, b"", 2.0)  # type: ignore[arg-type]
    assert waits == [(64, L.LATE_WAIT), (64, 8.0)]


def _steps(monkeypatch: pytest.MonkeyPatch, make: Callable[[int], ttlprobe.Step]) -> list[int]:
    sent: list[int] = []

    def trigger(cap: Any, layer: str, ip: str, port: int, payload: bytes, ttl: int, wait: float) -> ttlprobe.Step:
        sent.append(ttl)
        return make(ttl)

    monkeypatch.setattr(L, "_trigger", trigger)
    return sent


def test_a_sweep_ends_at_ttl_1_without_a_connection_but_not_later(monkeypatch: pytest.MonkeyPatch) -> None:
    """Would break if a later TTL's failed connection (residual blocking after the censor met a trigger) ended the
    sweep: the TTLs after it were never tried."""
    sent = _steps(monkeypatch, lambda ttl: ttlprobe.Step(ttl, ttl != 2, None if ttl != 2 else "connection_reset"))
    out = L.sweep(None, "http", SERVER, 80, "a.example", "/", 4, 0.1)  # type: ignore[arg-type]
    assert sent == [1, 2, 3, 4] and [o.connected for o in out] == [True, False, True, True]
    sent = _steps(monkeypatch, lambda ttl: ttlprobe.Step(ttl, False, "generic_timeout_error"))
    out = L.sweep(None, "http", SERVER, 80, "a.example", "/", 4, 0.1)  # type: ignore[arg-type]
    assert sent == [1] and not out[0].connected


def test_a_sweep_ends_at_the_servers_distance(monkeypatch: pytest.MonkeyPatch) -> None:
    """Would break if the sweep went a TTL past the server (a TTL that says nothing more)."""
    sent = _steps(monkeypatch, lambda ttl: ttlprobe.Step(ttl, True))
    L.sweep(None, "http", SERVER, 80, "a.example", "/", 8, 0.1, dist=3)  # type: ignore[arg-type]
    assert sent == [1, 2, 3]
    sent = _steps(monkeypatch, lambda ttl: ttlprobe.Step(ttl, True))
    L.sweep(None, "http", SERVER, 80, "a.example", "/", 8, 0.1,  # type: ignore[arg-type]
            stop=lambda out: len(out) == 2)
    assert sent == [1, 2]


def test_an_observation_holds_the_answers_not_the_icmp() -> None:
    step = ttlprobe.Step(2, True, None, [ttlprobe.Seen("icmp-time-exceeded", R2, 63, 0),
                                         ttlprobe.Seen("tcp", SERVER, 60, 7, P.RST | P.ACK, payload=b"ab"),
                                         ttlprobe.Seen("tcp", SERVER, 60, 8, P.FIN | P.ACK, payload=b"cd")])
    o = L._observation(step)
    assert (o.ttl, o.connected, o.icmp_from, o.payload) == (2, True, R2, b"abcd")
    assert [r["flags"] for r in o.responses] == ["RA", "FA"] and [r["ip_id"] for r in o.responses] == [7, 8]


# -- locate over a fake network ----------------------------------------------------------------------------------------

class _FakeCapture:
    ignored = 0
    dropped = 0

    def close(self) -> None:
        pass


class Net:
    """Routers ``routers``, then the server. ``censor(ttl, payload, run)`` says what a trigger that reached past the
    routers up to ``ttl`` gets instead of the path's own answer (a list of Seen), or None for the path's own; runs are
    counted by their first control trigger."""

    def __init__(self, routers: list[str | None], censor: Callable[[int, bytes, int], list[ttlprobe.Seen] | None],
                 silent_from: int | None = None) -> None:
        self.routers = routers
        self.censor = censor
        self.silent_from = silent_from  # from this TTL on nothing comes back, for any trigger
        self.run = 0
        self.sent: list[tuple[str, int, int]] = []  # (ip, port, ttl)

    def _answer(self, ip: str, port: int, payload: bytes, ttl: int) -> ttlprobe.Step:
        self.sent.append((ip, port, ttl))
        if ttl == 1 and b"www.example.com" in payload:
            self.run += 1
        if self.silent_from is not None and self.silent_from <= ttl:
            return ttlprobe.Step(ttl, True)
        forged = self.censor(ttl, payload, self.run)
        if forged is not None:
            return ttlprobe.Step(ttl, True, None, forged)
        if ttl <= len(self.routers):
            router = self.routers[ttl - 1]
            icmp = [ttlprobe.Seen("icmp-time-exceeded", router, 63, 0)] if router else []
            return ttlprobe.Step(ttl, True, None, icmp)
        return ttlprobe.Step(ttl, True, None, [ttlprobe.Seen("tcp", ip, 61, 0, P.PSH | P.ACK, payload=b"ok")])

    def tcp(self, cap: Any, ip: str, port: int, payload: bytes, ttl: int, *, wait: float = 1.0) -> ttlprobe.Step:
        return self._answer(ip, port, payload, ttl)

    def syn(self, cap: Any, ip: str, port: int, ttl: int, *, wait: float = 1.0) -> ttlprobe.Step:
        return self._answer(ip, port, f"SYN to {port}".encode(), ttl)

    def udp(self, cap: Any, ip: str, port: int, payload: bytes, ttl: int, *, wait: float = 1.0) -> ttlprobe.Step:
        return self._answer(ip, port, payload, ttl)


def _locate(monkeypatch: pytest.MonkeyPatch, net: Net, url: str = "http://blocked.example/", *, layer: str = "http",
            runs: int = 1, spread: list[str] | None = None, dist: int | None = None, matcher: Any = None
            ) -> tuple[Any, dict[str, Any]]:
    async def real(host: str, resolver: str, timeout: float) -> tuple[str, bool]:
        return SERVER, False

    monkeypatch.setattr(ttlprobe, "Capture", _FakeCapture)
    far = len(net.routers) + 1 if dist is None else dist
    monkeypatch.setattr(ttlprobe, "traceroute", lambda ip, max_ttl, wait: (
        ([*net.routers, ip], far) if net.silent_from is None else (net.routers[:net.silent_from - 1], None)))
    monkeypatch.setattr(ttlprobe, "tcp_trigger", net.tcp)
    monkeypatch.setattr(ttlprobe, "udp_trigger", net.udp)
    monkeypatch.setattr(ttlprobe, "syn_trigger", net.syn)
    monkeypatch.setattr(L, "_real_address", real)
    return L.locate(url, layer=layer, control="www.example.com", runs=runs, max_ttl=8, wait=0.1,
                    spread=spread or [], resolver="198.19.0.8", matcher=matcher)


def _reset_at(hop: int, ip_id: Callable[[int], int] = lambda run: 7) -> Callable[[int, bytes, int], Any]:
    return lambda ttl, payload, run: ([ttlprobe.Seen("tcp", SERVER, 60, ip_id(run), P.RST | P.ACK)]
                                      if ttl >= hop and b"Host: blocked.example" in payload else None)


def test_the_target_sweep_stops_once_a_hop_is_decided(monkeypatch: pytest.MonkeyPatch) -> None:
    """Would break if the target sweep went on to the server after the censor answered (more triggers, each one
    more chance of residual blocking)."""
    net = Net([R1, R2, R3, "198.18.4.4", "198.18.5.5"], _reset_at(2))
    loc, detail = _locate(monkeypatch, net)
    assert (loc.hop, loc.router, loc.placement, loc.scope) == (2, R1, "in-path", "name"), loc.reason
    assert [o["ttl"] for o in detail["runs"][0]["target"]] == [1, 2]
    assert [o["ttl"] for o in detail["runs"][0]["control"]] == [1, 2, 3, 4, 5, 6]


def test_the_signature_joins_the_forged_packets_of_every_run_at_that_hop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Would break if one run's IP-ID alone were the signature's: an IP-ID that differs from run to run is none."""
    net = Net([R1, R2], _reset_at(2, ip_id=lambda run: 100 + run))
    loc, _ = _locate(monkeypatch, net, runs=3)
    assert loc.runs == (2, 2, 2) and loc.fingerprint is not None
    assert (loc.fingerprint["ip_id"], loc.fingerprint["ip_ids"], loc.fingerprint["packets"]) == (None, [101, 102, 103],
                                                                                                  3)
    assert loc.signature.endswith("/ipid*"), loc.signature


def test_runs_go_on_while_only_half_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs, one placing the censor and one not: a tie is no majority, so a third run decides (would break on
    `share >= 0.5`)."""
    net = Net([R1, R2], lambda ttl, payload, run: (
        [ttlprobe.Seen("tcp", SERVER, 60, 7, P.RST | P.ACK)]
        if run != 2 and ttl >= 2 and b"Host: blocked.example" in payload else None))
    loc, _ = _locate(monkeypatch, net, runs=2)
    assert loc.runs == (2, None, 2) and loc.hop == 2 and round(loc.agreement, 3) == 0.667


PAGE = ("HTTP/1.1 403 Forbidden\r\nContent-Type: text/html; charset=utf-8\r\nX-Box: dpi\r\n\r\n"
        "<html><p>Доступ к ресурсу ограничен</p></html>")


def _page_at(hop: int, page: bytes) -> Callable[[int, bytes, int], Any]:
    return lambda ttl, payload, run: ([ttlprobe.Seen("tcp", SERVER, 60, 7, P.PSH | P.ACK, payload=page),
                                       ttlprobe.Seen("tcp", SERVER, 60, 7, P.FIN | P.ACK | P.RST)]
                                      if ttl >= hop and b"Host: blocked.example" in payload else None)


def test_a_forged_page_is_matched_as_its_body_in_utf8_with_its_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Would break if the page were matched with its headers in the body, or read as latin-1 (a fingerprint written
    in Cyrillic then never matched)."""
    asked: list[tuple[str, dict[str, str]]] = []

    def matcher(text: str, headers: dict[str, str]) -> list[str]:
        asked.append((text, headers))
        return ["ru_mts"] if text.startswith("<html>") and "Доступ" in text else []

    loc, _ = _locate(monkeypatch, Net([R1, R2], _page_at(2, PAGE.encode())), matcher=matcher)
    assert loc.hop == 2 and loc.blockpage == ("ru_mts",), asked
    assert asked == [("<html><p>Доступ к ресурсу ограничен</p></html>",
                      {"Content-Type": "text/html; charset=utf-8", "X-Box": "dpi"})]
    assert loc.signature.endswith("fp:ru_mts")


def test_a_forged_page_not_in_utf8_is_read_as_latin1(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def matcher(text: str, headers: dict[str, str]) -> list[str]:
        asked.append(text)
        return []

    page = b"HTTP/1.1 200 OK\r\n\r\n<p>acc\xe8s bloqu\xe9</p>"
    loc, _ = _locate(monkeypatch, Net([R1, R2], _page_at(2, page)), matcher=matcher)
    assert loc.hop == 2 and loc.blockpage == () and asked == ["<p>accès bloqué</p>"]


def test_a_control_dropped_at_the_names_address_keeps_the_runs_there(monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything to the address is dropped after hop 1 (the control name too, scope "all"): the spread addresses
    cannot show an address's block, so the runs stay on it and say why (would break if they went on to the
    others)."""
    def drop(ttl: int, payload: bytes, run: int) -> list[ttlprobe.Seen] | None:
        return [] if ttl >= 2 else None

    net = Net([R1, R2, R3], drop)
    loc, detail = _locate(monkeypatch, net, runs=3, spread=SPREAD)
    assert (loc.hop, loc.scope) == (2, "all"), loc.reason
    assert detail["spread_dropped"].startswith(f"the control name was dropped at {SERVER} too")
    assert {r["server"] for r in detail["runs"]} == {SERVER} and {ip for ip, _, _ in net.sent} == {SERVER}


def test_a_drop_of_the_address_is_listened_for_at_full_ttl_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A path that goes silent past hop 1 for the QUIC Initial and the control alike, and nothing at full TTL either:
    a drop, and later runs to that address do not listen again (would break if the address were not remembered)."""
    net = Net([R1, None, None], lambda ttl, payload, run: None, silent_from=2)
    loc, detail = _locate(monkeypatch, net, url=f"https://{SERVER}/", layer="quic", runs=3)
    assert (loc.hop, loc.router, loc.scope) == (2, R1, "address") and loc.runs == (2, 2, 2), loc.reason
    assert [ttl for _, _, ttl in net.sent].count(64) == 1
    assert "nor in 4 s at full TTL" in loc.reason


def test_a_silent_path_that_answers_at_full_ttl_is_only_slow(monkeypatch: pytest.MonkeyPatch) -> None:
    net = Net([R1, None, None], lambda ttl, payload, run: None, silent_from=2)
    monkeypatch.setattr(L, "answers_late", lambda *a: True)
    loc, _ = _locate(monkeypatch, net, url=f"https://{SERVER}/", layer="quic")
    assert loc.hop is None and "the path may be slower than that" in loc.reason
    assert "it answered when listened to longer" in loc.reason


def test_a_name_the_resolver_answers_with_other_addresses_is_located_by_its_dns_query(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def tampered(host: str, resolver: str, timeout: float) -> tuple[str, bool]:
        return SERVER, True

    net = Net([R1, R2], lambda ttl, payload, run: (
        [ttlprobe.Seen("udp", "198.19.0.8", 60, 7, payload=b"\x00" * 12)] if ttl >= 2 and b"blocked" in payload
        else None))
    monkeypatch.setattr(ttlprobe, "Capture", _FakeCapture)
    monkeypatch.setattr(ttlprobe, "traceroute", lambda ip, max_ttl, wait: ([R1, R2, ip], 3))
    monkeypatch.setattr(ttlprobe, "udp_trigger", net.udp)
    monkeypatch.setattr(L, "_real_address", tampered)
    loc, detail = L.locate("http://blocked.example/", layer="auto", control="www.example.com", runs=1, max_ttl=8,
                           wait=0.1, spread=[], resolver="198.19.0.8")
    assert detail["layer"] == "dns" and detail["address"] == "198.19.0.8"
    assert (loc.hop, loc.scope) == (2, "name") and {(ip, port) for ip, port, _ in net.sent} == {("198.19.0.8", 53)}


def test_an_idn_trigger_and_a_dns_query_carry_the_name_in_ascii() -> None:
    assert b"Host: xn--e1afmkfd.xn--p1ai\r\n" in L.trigger_payload("http", "пример.рф")
    wire = L.trigger_payload("dns", "blocked.example")
    assert b"\x07blocked\x07example\x00\x00\x01\x00\x01" in wire


def test_an_address_in_the_url_needs_no_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    async def never(*a: Any) -> Any:
        raise AssertionError("an address was looked up")

    monkeypatch.setattr(L, "_real_address", never)
    net = Net([R1, R2], lambda ttl, payload, run: None)
    monkeypatch.setattr(ttlprobe, "Capture", _FakeCapture)
    monkeypatch.setattr(ttlprobe, "traceroute", lambda ip, max_ttl, wait: ([R1, R2, ip], 3))
    monkeypatch.setattr(ttlprobe, "tcp_trigger", net.tcp)
    loc, detail = L.locate(f"http://{SERVER}/", layer="auto", control="www.example.com", runs=1, max_ttl=8,
                           wait=0.1, spread=[], resolver="198.19.0.8")
    assert loc.hop is None and detail["layer"] == "http" and detail["address"] == SERVER


def test_a_syn_dropped_on_the_way_is_told_by_the_port_and_said_as_the_syn(monkeypatch: pytest.MonkeyPatch) -> None:
    """--layer tcp: SYNs to port 9001 die after router 1, those to the control port (80) do not: scope "port", and
    the reason names the SYN, not a trigger (would break if decide_run's words were kept)."""
    net = Net([R1, R2], lambda ttl, payload, run: [] if ttl >= 2 and payload == b"SYN to 9001" else None)
    loc, detail = _locate(monkeypatch, net, url=f"http://{SERVER}:9001/", layer="tcp")
    assert (loc.hop, loc.router, loc.scope, detail["layer"]) == (2, R1, "port", "tcp"), loc.reason
    assert loc.reason == f"no ICMP time-exceeded from {R2} at TTL 2: the SYN was dropped"
    assert {port for _, port, _ in net.sent} == {80, 9001}
