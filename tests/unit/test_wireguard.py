"""WireGuard: the handshake's messages, the client configuration, the verdict, the exchange over a UDP socket
(against a responder on the loopback), the lab censor's rule on crafted frames, and the CLI's refusals.

The interoperability proof is the lab test (`tests/lab/test_wireguard.py`): Debian's wireguard-go answers our
initiation. Here the responder is `wire.wireguard.respond`, the same computations from the other side.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tamperscope.lab import blockpages, censor
from tamperscope.model.profile import ProfileError, parse_profile
from tamperscope.model.wgverdict import wireguard_verdict
from tamperscope.nettests import wireguard as nettest
from tamperscope.nettests.base import Context, NettestError, Timeouts
from tamperscope.netx import wireguard as netx
from tamperscope.netx.trace import Trace
from tamperscope.wire import packet
from tamperscope.wire import wireguard as W
from tests.unit.test_probe_input_checks import Probe, probe  # noqa: F401 (a fixture)

SERVER, CLIENT, PSK = (bytes([n]) * 32 for n in (7, 9, 11))


def _text(key: bytes) -> str:
    return base64.b64encode(key).decode()


def _config(endpoint: str = "198.19.3.40:51820", psk: bool = True) -> str:
    return (f"[Interface]\nPrivateKey = {_text(CLIENT)}  # a comment\nAddress = 10.66.0.2/32\nDNS = 10.66.0.1\n\n"
            f"[Peer]\nPublicKey = {_text(W.public_key(SERVER))}\n" + (f"PresharedKey = {_text(PSK)}\n" if psk else "")
            + f"Endpoint = {endpoint}\nAllowedIPs = 0.0.0.0/0\n")


# -- the messages -------------------------------------------------------------------------------------------------


def test_an_initiation_is_148_bytes_that_only_the_server_opens_and_its_response_only_we_open() -> None:
    init = W.initiation(CLIENT, W.public_key(SERVER), PSK)
    assert len(init.packet) == 148 and W.looks_like_initiation(init.packet)
    answered = W.respond(SERVER, init.packet, PSK)
    assert answered is not None
    their_static, response = answered
    assert their_static == W.public_key(CLIENT) and len(response) == 92
    assert W.answer_kind(response, init.sender) == "response" and W.opens(init, response)
    # another server's key: it cannot open the initiation (a real server stays silent)
    assert W.respond(bytes([8]) * 32, init.packet, PSK) is None
    # another pre-shared key: the server answers, but the answer does not open with ours
    other = W.initiation(CLIENT, W.public_key(SERVER), PSK)
    wrong_psk = W.respond(SERVER, other.packet, bytes(32))
    assert wrong_psk is not None and not W.opens(other, wrong_psk[1])
    # one bit changed anywhere in the response, or an answer to another initiation: not ours
    for at in (12, 50, 65, 70):
        bent = bytearray(response)
        bent[at] ^= 1
        assert not W.opens(init, bytes(bent)), at
    assert not W.opens(other, response)


def test_answers_are_told_apart_by_their_header() -> None:
    init = W.initiation(CLIENT, W.public_key(SERVER))
    cookie = bytes([3, 0, 0, 0]) + init.sender.to_bytes(4, "little") + bytes(56)
    assert W.answer_kind(cookie, init.sender) == "cookie"
    assert W.answer_kind(cookie, init.sender + 1) is None
    assert W.answer_kind(cookie[:-1], init.sender) is None
    assert W.answer_kind(b"", init.sender) is None and W.answer_kind(init.packet, init.sender) is None
    # DPI's view: a 148-byte datagram of type 1; one byte more or another type is not it
    assert not W.looks_like_initiation(init.packet + b"\x00")
    assert not W.looks_like_initiation(b"\x02" + init.packet[1:])


def test_a_timestamp_is_tai64n() -> None:
    stamp = W.tai64n(1_700_000_000.5)
    assert stamp == (0x400000000000000A + 1_700_000_000).to_bytes(8, "big") + (500_000_000).to_bytes(4, "big")


@pytest.mark.parametrize("text, message", [
    ("not base64!", "is not base64"),
    (_text(b"\x01" * 31), "is not a 32-byte key"),
])
def test_a_bad_key_is_named_not_shown(text: str, message: str) -> None:
    with pytest.raises(W.WireGuardError) as e:
        W.key_from_text(text, "PrivateKey")
    assert str(e.value) == f"PrivateKey {message}"


# -- the configuration --------------------------------------------------------------------------------------------


def test_a_wg_quick_configuration_gives_the_keys_and_each_peer_with_an_endpoint() -> None:
    text = _config() + f"\n[Peer]\nPublicKey = {_text(W.public_key(PSK))}\nAllowedIPs = 10.0.0.0/8\n" \
        + f"[peer]\npublickey={_text(W.public_key(CLIENT))}\nendpoint=[2001:db8::1]:4500\n"
    config = nettest.load_config(text)
    assert config.private == CLIENT
    assert [(p.endpoint, p.host, p.port, p.public, p.psk) for p in config.peers] == [
        ("198.19.3.40:51820", "198.19.3.40", 51820, W.public_key(SERVER), PSK),
        ("[2001:db8::1]:4500", "2001:db8::1", 4500, W.public_key(CLIENT), bytes(32))]  # no endpoint: skipped
    assert [config.input_of(p) for p in config.peers] == ["wireguard://198.19.3.40:51820",
                                                          "wireguard://[2001:db8::1]:4500"]
    assert config.peer("wireguard://198.19.3.40:51820") is config.peers[0]
    assert config.peer("198.19.3.40") is config.peers[0]  # the default port
    with pytest.raises(NettestError, match="no \\[Peer\\] of the WireGuard configuration has the endpoint"):
        config.peer("wireguard://198.19.3.41:51820")
    # a log line or a traceback that prints the configuration, its keys or a handshake's state shows no secret
    shown = repr(config) + repr(netx.Keys(CLIENT, W.public_key(SERVER), PSK)) + repr(W.initiation(CLIENT, SERVER, PSK))
    assert not any(repr(secret)[2:20] in shown or _text(secret) in shown for secret in (CLIENT, PSK))


@pytest.mark.parametrize("text, message", [
    ("", "no [Interface] PrivateKey"),
    (_config().replace("[Interface]\nPrivateKey", "[Interface]\nListenPort = 1\nX"), "no [Interface] PrivateKey"),
    (_config().split("[Peer]")[0], "no [Peer] with an Endpoint"),
    (_config().replace("[Peer]", "[Pear]"), "line 6: unknown section [Pear]"),
    ("PrivateKey = x\n", "line 1: not KEY = VALUE inside [Interface] or [Peer]"),
    (_config().replace(_text(CLIENT), "c2VjcmV0"), "line 2: PrivateKey is not a 32-byte key"),
    (_config().replace("Endpoint = 198.19.3.40:51820", "Endpoint = https://x/"), "line 9: Endpoint is not HOST:PORT"),
    (_config().replace(f"PublicKey = {_text(W.public_key(SERVER))}\n", ""), "a [Peer] with an Endpoint has no "),
])
def test_a_bad_configuration_is_refused_in_one_line_without_its_secrets(text: str, message: str) -> None:
    with pytest.raises(NettestError) as e:
        nettest.load_config(text)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert _text(CLIENT) not in str(e.value) and "c2VjcmV0" not in str(e.value)


def test_endpoints_are_wireguard_urls_or_host_port() -> None:
    assert nettest.endpoint_of("wireguard://vpn.example.org") == ("vpn.example.org", 51820)
    assert nettest.endpoint_of("vpn.example.org:443") == ("vpn.example.org", 443)
    for bad in ("stun://x:1", "wireguard://x:1/path", "wireguard://u@x", "wireguard://x:99999", "wireguard://",
                "x:0"):
        with pytest.raises(NettestError, match="not a WireGuard endpoint"):
            nettest.endpoint_of(bad)


# -- the verdict --------------------------------------------------------------------------------------------------


def _m(**tk: Any) -> dict[str, Any]:
    return {"test_name": "wireguard", "test_keys": tk}


@pytest.mark.parametrize("tk, expected", [
    ({"failure": None}, ("ok", "none", False, 0.8)),
    ({"failure": "dns_nxdomain_error"}, ("anomaly", "dns.nxdomain", "dns", 0.7)),
    ({"failure": "generic_timeout_error", "x_junk_first": {"failure": None}}, ("anomaly", "udp.drop", "tcp_ip", 0.9)),
    ({"failure": "generic_timeout_error", "x_junk_first": {"failure": "generic_timeout_error"}},
     ("anomaly", "udp.drop", "tcp_ip", 0.5)),
    ({"failure": "connection_refused", "x_junk_first": {"failure": "connection_refused"}},
     ("anomaly", "none", "tcp_ip", 0.5)),
    ({"failure": "generic_timeout_error", "x_junk_first": "yes"}, ("anomaly", "udp.drop", "tcp_ip", 0.5)),
    ({}, ("failure", "none", None, 0.0)),
    ({"failure": 42}, ("failure", "none", None, 0.0)),
])
def test_the_verdict_calls_dpi_only_when_junk_first_got_through(tk: dict[str, Any], expected: tuple[Any, ...]) -> None:
    v = wireguard_verdict(_m(**tk))
    assert (v.status, v.mechanism, v.blocking, v.confidence) == expected


# -- the exchange over UDP, against a responder on the loopback ----------------------------------------------------


class Responder(asyncio.DatagramProtocol):
    """A WireGuard server's handshake, with a DPI box's habit: ``judge_first`` drops a flow (a source port) whose
    first datagram is an initiation, as the lab censor's rule does."""

    def __init__(self, judge_first: bool = False, silent: bool = False) -> None:
        self.judge_first, self.silent = judge_first, silent
        self.flows: dict[Any, bool] = {}  # source -> dropped
        self.got: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.got.append(data)
        if addr not in self.flows:
            self.flows[addr] = self.judge_first and W.looks_like_initiation(data)
        if self.flows[addr] or self.silent:
            return
        answered = W.respond(SERVER, data, PSK)
        if answered is not None:
            self.transport.sendto(b"\x04junk", addr)  # a datagram that is no answer first: ignored, counted
            self.transport.sendto(answered[1], addr)  # type: ignore[attr-defined]


async def _serve(proto: Responder) -> tuple[asyncio.DatagramTransport, int]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: proto, local_addr=("127.0.0.1", 0))
    return transport, transport.get_extra_info("sockname")[1]


def test_the_handshake_opens_the_servers_answer_and_ignores_what_is_not_one() -> None:
    async def main() -> tuple[netx.Handshake, Trace]:
        transport, port = await _serve(Responder())
        trace = Trace()
        try:
            return await netx.handshake("127.0.0.1", port, netx.Keys(CLIENT, W.public_key(SERVER), PSK),
                                        trace=trace, timeout=3), trace
        finally:
            transport.close()

    h, trace = asyncio.run(main())
    assert (h.failure, h.answer, h.initiations, h.junk, h.ignored) == (None, "response", 1, 0, 1)
    assert h.t is not None and 0 <= h.t < 3
    events = [(e["operation"], e["num_bytes"], e.get("x_wireguard")) for e in trace.test_keys()["network_events"]]
    assert events == [("write_to", 148, "initiation"), ("read_from", 5, "ignored"), ("read_from", 92, "response")]


def test_dpi_that_judges_the_first_datagram_is_passed_by_junk_first() -> None:
    proto = Responder(judge_first=True)

    async def main() -> tuple[netx.Handshake, netx.Handshake]:
        transport, port = await _serve(proto)
        keys = netx.Keys(CLIENT, W.public_key(SERVER), PSK)
        try:
            plain = await netx.handshake("127.0.0.1", port, keys, trace=Trace(), timeout=2.5)
            junk = await netx.handshake("127.0.0.1", port, keys, trace=Trace(), timeout=2.5, junk=3)
            return plain, junk
        finally:
            transport.close()

    plain, junk = asyncio.run(main())
    assert (plain.failure, plain.answer) == ("generic_timeout_error", None)
    assert plain.initiations == 3  # one per second, each new (a fresh timestamp and ephemeral key)
    assert (junk.failure, junk.answer, junk.junk) == (None, "response", 3)
    firsts = [d for d in proto.got if not W.looks_like_initiation(d) and d != b"\x04junk"]
    assert len(firsts) == 3 and all(d[0] > 4 and 24 <= len(d) <= 160 for d in firsts)  # no WireGuard type


def test_a_measurement_records_no_key_and_names_the_dpi(tmp_path: Path) -> None:
    """The nettest end to end against the loopback responder behind "DPI": the keys are nowhere in the
    measurement, the plain handshake failed, the junk-first one got through, and the verdict says udp.drop."""
    proto = Responder(judge_first=True)

    async def main() -> dict[str, Any]:
        transport, port = await _serve(proto)
        config = nettest.load_config(_config(f"127.0.0.1:{port}"))
        ctx = Context(timeouts=Timeouts(connect=1.5), options={"wireguard": config})
        try:
            tk = await nettest.run(f"wireguard://127.0.0.1:{port}", ctx)
        finally:
            transport.close()
        m = {"test_name": "wireguard", "test_keys": tk}
        nettest.finish(m, ctx)
        return m

    m = asyncio.run(main())
    tk = m["test_keys"]
    assert tk["failure"] == "generic_timeout_error" and tk["x_junk_first"]["failure"] is None
    assert tk["x_junk_first"]["answer"] == "response" and tk["x_handshake"]["initiations"] >= 1
    assert (tk["x_mechanism"], tk["x_confidence"]) == ("udp.drop", 0.9)
    text = json.dumps(m)
    for secret in (CLIENT, PSK, W.public_key(CLIENT), SERVER):
        assert _text(secret) not in text and secret.hex() not in text
    assert any("junk" in (e.get("tags") or []) for e in tk["network_events"])


def test_a_server_that_never_answers_is_a_timeout_twice() -> None:
    async def main() -> dict[str, Any]:
        transport, port = await _serve(Responder(silent=True))
        ctx = Context(timeouts=Timeouts(connect=1.2), options={"wireguard": nettest.load_config(
            _config(f"127.0.0.1:{port}"))})
        try:
            return await nettest.run(f"127.0.0.1:{port}", ctx)
        finally:
            transport.close()

    tk = asyncio.run(main())
    assert tk["failure"] == tk["x_junk_first"]["failure"] == "generic_timeout_error"
    assert wireguard_verdict(_m(**tk)).confidence == 0.5


def test_nothing_listening_is_refused_by_icmp() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    h = asyncio.run(netx.handshake("127.0.0.1", port, netx.Keys(CLIENT, W.public_key(SERVER)), trace=Trace(),
                                   timeout=2))
    assert h.failure == "connection_refused" and h.answer is None


# -- the lab censor's rule ----------------------------------------------------------------------------------------

MACS = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
C_IP, S_IP = "198.18.1.2", "198.19.3.40"


@pytest.fixture
def box(tmp_path: Path) -> Iterator[censor.Censor]:
    text = 'name = "wg"\n[[rule]]\nid = "wg-dpi"\nlayer = "wireguard"\naction = "drop"\nports = [51820]\n'
    c = censor.Censor(parse_profile(text, source="wg.toml", base=tmp_path, builtin_pages=blockpages.names()),
                      censor.GroundTruth(tmp_path / "truth.jsonl"))
    yield c
    c.truth._f.close()


def _udp(payload: bytes, sport: int = 40000, dport: int = 51820, to_server: bool = True) -> bytes:
    src, dst = (C_IP, S_IP) if to_server else (S_IP, C_IP)
    ports = (sport, dport) if to_server else (dport, sport)
    return MACS + packet.udp_packet(src, dst, *ports, payload)


def test_the_censor_drops_a_flow_begun_by_an_initiation_and_passes_one_begun_by_junk(box: censor.Censor) -> None:
    def decide(frame: bytes, from_client: bool = True) -> bool:  # forwarded?
        return bool(box.decide(frame, from_client, time.monotonic(), time.time()))

    init = W.initiation(CLIENT, W.public_key(SERVER)).packet
    assert not decide(_udp(init))               # the flow's first datagram: dropped
    assert not decide(_udp(b"\x05" * 40))       # and the rest of that flow
    assert not decide(_udp(b"\x02" * 92, to_server=False), from_client=False)
    assert decide(_udp(b"\x05" * 40, sport=40001)) and decide(_udp(init, sport=40001))  # junk first: passed
    assert decide(_udp(init, sport=40002, dport=4500))  # a port the rule does not name
    assert decide(_udp(init[:-1], sport=40003))  # not 148 bytes: not an initiation
    # a flow begun from the internet's side, towards a server in the country: ingress, which the rule does not cover
    assert decide(MACS + packet.udp_packet(S_IP, C_IP, 40004, 51820, init), from_client=False)
    truth = [json.loads(line) for line in Path(box.truth._f.name).read_text().splitlines()]
    assert [(t["rule"], t["client"], t["server"], t["proto"]) for t in truth] == \
        [("wg-dpi", f"{C_IP}:40000", f"{S_IP}:51820", "udp")]


def test_a_wireguard_rule_takes_no_names_and_is_in_path_only(tmp_path: Path) -> None:
    base = 'name = "wg"\n[[rule]]\nid = "w"\nlayer = "wireguard"\naction = "drop"\n'
    with pytest.raises(ProfileError, match="no domains or regex"):
        parse_profile(base + 'domains = ["x.org"]\n', source="w.toml", base=tmp_path, builtin_pages=())
    with pytest.raises(ProfileError, match="for layer wireguard must be one of drop"):
        parse_profile(base.replace('"drop"', '"rst"'), source="w.toml", base=tmp_path, builtin_pages=())
    on_path = base.replace('[[rule]]', '[network]\nplacement = "on-path"\n[[rule]]')
    with pytest.raises(ProfileError, match="in-path"):
        parse_profile(on_path, source="w.toml", base=tmp_path, builtin_pages=())


# -- the CLI ------------------------------------------------------------------------------------------------------


def test_the_cli_measures_every_peer_of_the_file_or_the_ones_named(probe: Probe, tmp_path: Path) -> None:  # noqa: F811
    path = tmp_path / "wg.conf"
    path.write_text(_config() + f"[Peer]\nPublicKey = {_text(W.public_key(PSK))}\nEndpoint = vpn.example.org:443\n")
    r = probe.main("run", "wireguard", "--yes", "--no-progress", "--wg-config", str(path), "-o", "out.jsonl")
    assert r.code == 0, r.err
    assert probe.inputs() == ["wireguard://198.19.3.40:51820", "wireguard://vpn.example.org:443"]
    r = probe.main("run", "wireguard", "--yes", "--no-progress", "--wg-config", str(path), "-o", "two.jsonl",
                   "-i", "vpn.example.org:443")
    assert r.code == 0, r.err
    assert probe.inputs("two.jsonl") == ["vpn.example.org:443"]


@pytest.mark.parametrize("args, message", [
    ((), "tamperscope: wireguard needs --wg-config FILE, your WireGuard client configuration"),
    (("--wg-config", "missing.conf"), "missing.conf"),
    (("--wg-config", "binary.conf"), "cannot read --wg-config binary.conf: not UTF-8 text"),
    (("--wg-config", "garbage.conf"), "garbage.conf: line 1: not KEY = VALUE inside [Interface] or [Peer]"),
    (("--wg-config", "wg.conf", "-i", "wireguard://198.19.3.41"), "no [Peer] of the WireGuard configuration"),
    (("--wg-config", "wg.conf", "-i", "http://x/"), "not a WireGuard endpoint"),
])
def test_the_cli_refuses_in_one_line_before_contacting_anything(probe: Probe, args: tuple[str, ...],  # noqa: F811
                                                                message: str) -> None:
    (probe.dir / "wg.conf").write_text(_config())
    (probe.dir / "binary.conf").write_bytes(b"\x00\xff garbage\n")
    (probe.dir / "garbage.conf").write_text("garbage\n")
    r = probe.main("run", "wireguard", "--yes", "--no-progress", "-o", "out.jsonl", *args)
    assert r.code == 2 and message in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert probe.measured == [] and not (probe.dir / "out.jsonl").exists()


def test_wg_config_is_for_wireguard_only(probe: Probe) -> None:  # noqa: F811
    (probe.dir / "wg.conf").write_text(_config())
    r = probe.main("run", "stunreachability", "--yes", "--wg-config", "wg.conf")
    assert (r.code, r.err.strip()) == (2, "tamperscope: --wg-config is for the wireguard nettest")


# -- locate --layer wireguard ---------------------------------------------------------------------------------------


def test_locates_trigger_is_what_dpi_sees_and_its_control_is_not() -> None:
    from tamperscope.probe import locate as L

    triggers = {L.trigger_payload("wireguard", "ignored.example") for _ in range(8)}
    controls = {L.trigger_payload(L.WG_NOISE, "ignored.example") for _ in range(64)}
    assert len(triggers) == 8 and all(W.looks_like_initiation(t) for t in triggers)  # random past the header
    assert all(len(c) == W.INITIATION_SIZE and not W.looks_like_initiation(c) and c[0] > 4 for c in controls)
    assert L.SCOPE_OF_LAYER["wireguard"] == "protocol" and "wireguard" in L.UDP_OR_SYN
    plan = L._plan("198.19.3.40", "198.19.0.8", [], "www.example.com", layer="wireguard")
    assert "datagrams shaped as WireGuard's handshake, and random ones as the control" in plan
