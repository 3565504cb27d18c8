"""A TCP connection frozen after a few kilobytes (Russia's TSPU, "the 16-20 KB block"): the lab's ip ``freeze``
rule, `lab expect`'s prediction of it, and how the verdict tells it from throttling."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tamperscope.lab import blockpages, censor, expect, farm
from tamperscope.model import freeze
from tamperscope.model.profile import ProfileError, parse_profile
from tamperscope.model.verdict import Verdict, _overlays
from tamperscope.wire import packet

PROFILE = """
name = "freeze"
[network]
placement = "in-path"
[[rule]]
id = "hosting-freeze"
layer = "ip"
action = "freeze"
cidrs = ["198.19.8.0/24"]
after_kb = 4
[[rule]]
id = "sni-rst"
layer = "tls"
action = "rst"
domains = ["sni.org"]
"""
MACS = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
CLIENT, SERVER, OTHER = "198.18.1.2", "198.19.8.9", "198.19.0.5"
ISN = 0xFFFFF000  # near the wrap: offsets are counted modulo 2**32


def _profile(text: str, tmp_path: Path) -> Any:
    return parse_profile(text, source="freeze.toml", base=tmp_path, builtin_pages=blockpages.names())


@pytest.fixture
def box(tmp_path: Path) -> Iterator[censor.Censor]:
    c = censor.Censor(_profile(PROFILE, tmp_path), censor.GroundTruth(tmp_path / "truth.jsonl"))
    yield c
    c.truth._f.close()


def _truth(c: censor.Censor) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(c.truth._f.name).read_text().splitlines()]


def _from_client(c: censor.Censor, flags: int, server: str = SERVER, sport: int = 40000, seq: int = 1,
                 payload: bytes = b"") -> list[Any]:
    frame = MACS + packet.tcp_packet(CLIENT, server, sport, 443, seq=seq, ack=0 if flags & packet.SYN else 1,
                                     flags=flags, payload=payload)
    return c.decide(frame, True, time.monotonic(), time.time())


def _from_server(c: censor.Censor, flags: int, seq: int, payload: bytes = b"", server: str = SERVER,
                 sport: int = 40000) -> list[Any]:
    frame = MACS + packet.tcp_packet(server, CLIENT, 443, sport, seq=seq, ack=2, flags=flags, payload=payload)
    return c.decide(frame, False, time.monotonic(), time.time())


def _open(c: censor.Censor, server: str = SERVER, sport: int = 40000) -> None:
    assert _from_client(c, packet.SYN, server, sport)
    assert _from_server(c, packet.SYN | packet.ACK, ISN, server=server, sport=sport)
    assert _from_client(c, packet.ACK, server, sport, seq=2)


def test_server_data_passes_up_to_the_cap_then_nothing_more_of_that_connection(box: censor.Censor) -> None:
    _open(box)
    chunk = b"x" * 1000
    for k in range(4):  # 4,000 bytes: under 4 KiB
        assert _from_server(box, packet.ACK | packet.PSH, ISN + 1 + 1000 * k, chunk), k
    assert _from_server(box, packet.ACK, ISN + 1 + 1000, chunk)  # a retransmission is not counted twice
    assert _from_server(box, packet.ACK | packet.PSH, ISN + 1 + 4000, b"y" * 96)  # exactly 4,096 bytes
    assert _truth(box) == []
    assert _from_server(box, packet.ACK | packet.PSH, ISN + 1 + 4096, b"z") == []  # the 4,097th byte
    # Frozen: even what was let through before, a FIN, an RST; the client's own packets still pass.
    assert _from_server(box, packet.ACK, ISN + 1, chunk) == []
    assert _from_server(box, packet.ACK | packet.FIN, ISN + 1 + 4097) == []
    assert _from_client(box, packet.ACK, seq=2, payload=b"GET / HTTP/1.1\r\n\r\n")
    truth = _truth(box)
    assert [(t["rule"], t["action"], t["client"], t["server"], t["after_kb"]) for t in truth] == \
        [("hosting-freeze", "freeze", f"{CLIENT}:40000", f"{SERVER}:443", 4)]


def test_each_connection_gets_its_own_kilobytes_and_other_addresses_none_of_this(box: censor.Censor) -> None:
    _open(box, sport=40000)
    assert _from_server(box, packet.ACK, ISN + 1, b"a" * 5000, sport=40000) == []
    _open(box, sport=40001)  # a second connection to the same server: its own count
    assert _from_server(box, packet.ACK, ISN + 1, b"b" * 4000, sport=40001)
    _open(box, server=OTHER)  # an address no rule names: never frozen
    assert _from_server(box, packet.ACK, ISN + 1, b"c" * 60000, server=OTHER)
    assert len(_truth(box)) == 1


def test_a_flow_the_censor_did_not_see_open_is_not_followed(box: censor.Censor) -> None:
    assert _from_server(box, packet.ACK, 5000, b"d" * 9000)
    assert box.freezes == {}


def test_the_freeze_leaves_the_flows_other_rules_alone(box: censor.Censor) -> None:
    """An SNI the tls rule names, to a frozen address: the RST still comes (the ip rule does not end the checks)."""
    ctx = ssl.create_default_context()
    out = ssl.MemoryBIO()
    tls = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname="sni.org")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    _open(box)
    sent = _from_client(box, packet.ACK | packet.PSH, seq=2, payload=out.read())
    assert len(sent) == 2 and all(f[0][14 + 20 + 13] & packet.RST for f in sent)
    assert [t["rule"] for t in _truth(box)] == ["sni-rst"]


def test_forgotten_after_gc_and_bounded(box: censor.Censor, monkeypatch: pytest.MonkeyPatch) -> None:
    _open(box)
    box.gc(time.time() + censor.FLOW_TTL + 1)
    assert box.freezes == {}
    monkeypatch.setattr(censor, "MAX_FREEZE_FLOWS", 10)
    for port in range(30000, 30025):
        _from_client(box, packet.SYN, sport=port)
    assert len(box.freezes) <= 10


@pytest.mark.parametrize("rule, message", [
    ('after_kb = 0', "between 1 and 1024"),
    ('after_kb = "16"', r"an integer \(KiB\)"),
    ('after_kb = true', r"an integer \(KiB\)"),
])
def test_profile_refuses_a_bad_cap(tmp_path: Path, rule: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        _profile(PROFILE.replace("after_kb = 4", rule), tmp_path)


def test_profile_defaults_and_placement(tmp_path: Path) -> None:
    p = _profile(PROFILE.replace("after_kb = 4\n", ""), tmp_path)
    assert p.rules_for("ip")[0].after_kb == 16
    with pytest.raises(ProfileError, match="needs an in-path censor"):
        _profile(PROFILE.replace('placement = "in-path"', 'placement = "on-path"'), tmp_path)
    with pytest.raises(ProfileError, match="only ip freeze rules take after_kb"):
        _profile(PROFILE + 'after_kb = 8\n', tmp_path)


def test_expect_says_freeze_for_pages_past_the_cap_only(tmp_path: Path) -> None:
    text = """
name = "x"
[[rule]]
id = "f"
layer = "ip"
action = "freeze"
domains = ["big.org", "small.org", "large.big.org"]
after_kb = 20
"""
    p = _profile(text, tmp_path)
    sizes = {h: len(farm.page(h)) for h in ("big.org", "small.org")}
    rule = p.rules_for("ip")[0]
    for host, size in sizes.items():
        said = expect.expect_url(p, f"https://{host}/")
        frozen = size + expect.FREEZE_OVERHEAD["https"] > 20 * 1024
        assert (said.mechanism, said.blocking) == (("tcp.freeze", "http-failure") if frozen else ("none", "false"))
        assert expect.freezes(rule, "https", host, "/") is frozen
    assert expect.expect_url(p, "https://large.big.org/").mechanism == "tcp.freeze"  # 4 MiB


# --------------------------------------------------------------------------- the verdict


def _tk(reads: list[tuple[float, int]], end: float = 10.0, body: int = 12000, control: int | None = 30000,
        failure: str = "generic_timeout_error") -> dict[str, Any]:
    return {"requests": [{"failure": failure, "transaction_id": 3, "t0": 0.5, "t": end,
                          "response": {"code": 200, "body": "x" * body}}],
            "network_events": [{"operation": "read", "transaction_id": 3, "num_bytes": n, "t": t, "failure": None}
                               for t, n in reads]
            + [{"operation": "read", "transaction_id": 4, "num_bytes": 50000, "t": 9.9, "failure": None}],
            "control": {"http_request": {"body_length": control}}}


STALLED = Verdict("http-failure", False, "throttle", 0.5, "anomaly", ("test_keys.requests[0]",))


def test_a_connection_silent_after_16_kb_is_frozen_not_throttled() -> None:
    v = _overlays(STALLED, _tk([(1.0, 3000), (1.1, 8000), (1.2, 5384)]))
    assert (v.mechanism, v.confidence, v.blocking, v.status) == ("tcp.freeze", 0.8, "http-failure", "anomaly")
    assert v.evidence[-1] == "test_keys.network_events"
    assert _overlays(STALLED, _tk([(1.0, 16384)], control=None)).confidence == 0.7  # no control length
    assert _overlays(STALLED, _tk([(1.0, 16384)], control=100)).confidence == 0.7   # the control got less


@pytest.mark.parametrize("reads", [
    [(0.5 * k, 1500) for k in range(20)],  # a byte stream until the timeout: slowed down, not frozen
    [(1.0, 2000)],                         # too little for a TLS handshake and a response's start
    [(1.0, 200000)],                       # 195 KiB before it stopped: no 16-20 KB cap
    [],                                    # no reads recorded (network_events off)
])
def test_other_stalls_stay_throttle(reads: list[tuple[float, int]]) -> None:
    assert _overlays(STALLED, _tk(reads)).mechanism == "throttle"


def test_reads_that_do_not_cover_the_response_say_nothing() -> None:
    """OONI's probe records a connection's reads during its TLS handshake only: 5 KB by 0.4 s, then a body that
    arrived unrecorded and a timeout at 10 s. The silence after the handshake is no freeze."""
    handshake_only = _tk([(0.2, 3000), (0.4, 2500)], body=12000)
    assert freeze.stalls(handshake_only) == [] and _overlays(STALLED, handshake_only).mechanism == "throttle"
    fewer_than_body = _tk([(0.6, 8000)], body=12000)  # after the request, but fewer bytes than its body
    assert freeze.stalls(fewer_than_body) == []
    no_t0 = _tk([(1.0, 16384)])
    del no_t0["requests"][0]["t0"]
    assert freeze.stalls(no_t0) == []


def test_only_a_started_timed_out_response_is_read() -> None:
    tk = _tk([(1.0, 16384)], failure="connection_reset")
    assert freeze.stalls(tk) == []
    tk = _tk([(1.0, 16384)], body=0)
    tk["requests"][0]["response"]["code"] = 0
    assert freeze.stalls(tk) == []
    other = Verdict("http-failure", False, "http.drop", 0.8, "anomaly", ())
    assert _overlays(other, _tk([(1.0, 16384)])) == other  # no response started: not a freeze


@pytest.mark.parametrize("hostile", [
    {"requests": "x", "network_events": None},
    {"requests": [None, 1, {"failure": ["timeout"]}, {"failure": "generic_timeout_error", "transaction_id": True,
                                                      "t": 1, "response": {}}]},
    {"requests": [{"failure": "generic_timeout_error", "transaction_id": 1, "t0": 0, "t": "9",
                   "response": {"code": 200}}]},
    {"requests": [{"failure": "generic_timeout_error", "transaction_id": 1, "t0": 0, "t": 9, "response": {"code": 200}}],
     "network_events": [None, {"operation": "read", "transaction_id": 1, "num_bytes": "5000", "t": 1},
                        {"operation": "read", "transaction_id": 1, "num_bytes": 5000, "t": None},
                        {"operation": "read", "transaction_id": [1], "num_bytes": 5000, "t": 1}]},
])
def test_hostile_records_are_no_freeze(hostile: dict[str, Any]) -> None:
    assert freeze.frozen(hostile) is None


# --------------------------------------------------------------------------- the tcp_freeze nettest's verdict


def _freeze_m(single: dict[str, Any] | None, split: dict[str, Any] | None = None,
              failure: str | None = None, control: dict[str, Any] | None = None) -> dict[str, Any]:
    x = None if single is None else {"target_bytes": 65536, "single": single, "split": split}
    return {"test_name": "tcp_freeze", "test_keys": {"failure": failure, "x_freeze": x, "x_address": EP,
                                                     "control": control}}


EP = "198.19.200.1:443"


def _control(dns: bool = True, connect: bool = True, tls: bool = True, http: bool = True) -> dict[str, Any]:
    """The helper's answer (OONI's format) for the measured address: each stage worked or failed."""
    timeout = "generic_timeout_error"
    return {"dns": {"failure": None, "addrs": ["198.19.200.1"]} if dns else {"failure": "dns_nxdomain_error",
                                                                              "addrs": []},
            "tcp_connect": {EP: {"status": connect, "failure": None if connect else timeout}},
            "tls_handshake": {EP: {"status": tls, "failure": None if tls else timeout}} if connect else {},
            "http_request": {"body_length": 70211, "failure": None, "status_code": 200} if http else
            {"body_length": -1, "failure": timeout, "status_code": -1}}


SINGLE = {"stage": "http", "requests": 0, "received": 15070, "failure": "generic_timeout_error", "closed": False,
          "silence_s": 10.0, "frozen": True}
WHOLE = {"mode": "range", "connections": 4, "completed": 4, "received": 24170, "failure": None,
         "range_ignored": False}


@pytest.mark.parametrize("m, expected", [
    (_freeze_m(SINGLE, WHOLE), ("anomaly", "tcp.freeze", 0.9, "http-failure")),
    (_freeze_m(SINGLE, {**WHOLE, "completed": 3, "failure": "generic_timeout_error"}),
     ("anomaly", "tcp.freeze", 0.6, "http-failure")),
    (_freeze_m(SINGLE, None), ("anomaly", "tcp.freeze", 0.6, "http-failure")),
    (_freeze_m(SINGLE, {**WHOLE, "connections": 0, "completed": 0}), ("anomaly", "tcp.freeze", 0.6, "http-failure")),
    (_freeze_m({**SINGLE, "frozen": False, "silence_s": 0.2}), ("anomaly", "throttle", 0.5, "http-failure")),
    # QA (after_kb 2): stopped dead under MIN_BYTES, nothing for 10 s, was "throttle" ("bytes still coming")
    (_freeze_m({**SINGLE, "frozen": False, "received": 1579, "silence_s": 9.993}),
     ("anomaly", "tcp.freeze", 0.6, "http-failure")),
    (_freeze_m({**SINGLE, "frozen": False, "received": 1579, "silence_s": 9.993}, control=_control()),
     ("anomaly", "tcp.freeze", 0.75, "http-failure")),
    # and over TLS, the handshake's 1,857 bytes and no read after the request: unanswered, not slowed down
    (_freeze_m({**SINGLE, "frozen": False, "received": 1857, "silence_s": None}),
     ("anomaly", "http.drop", 0.5, "http-failure")),
    (_freeze_m({**SINGLE, "frozen": False, "failure": None, "received": 81811}), ("ok", "none", 0.8, None)),
    (_freeze_m({**SINGLE, "frozen": False, "failure": None, "received": 9000, "closed": True}),
     ("failure", "none", 0.0, None)),
    (_freeze_m({**SINGLE, "frozen": False, "stage": "tls", "failure": "connection_reset", "received": 0}),
     ("anomaly", "tls.rst", 0.5, "http-failure")),
    (_freeze_m({**SINGLE, "frozen": False, "stage": "connect", "failure": "generic_timeout_error", "received": 0}),
     ("anomaly", "tcp.drop", 0.5, "tcp_ip")),
    (_freeze_m({**SINGLE, "frozen": False, "stage": "tls", "failure": "ssl_unknown_authority", "received": 0}),
     ("anomaly", "tls.mitm", 0.5, "http-failure")),
    (_freeze_m(None, failure="dns_nxdomain_error"), ("anomaly", "dns.nxdomain", 0.5, "dns")),
    (_freeze_m(None), ("failure", "none", 0.0, None)),
    ({"test_name": "tcp_freeze", "test_keys": {"x_freeze": {"single": "frozen"}}}, ("failure", "none", 0.0, None)),
    ({"test_name": "tcp_freeze", "test_keys": {"x_freeze": {"single": {"frozen": "true", "failure": 5}}}},
     ("failure", "none", 0.0, None)),
    ({"test_name": "tcp_freeze", "test_keys": []}, ("failure", "none", 0.0, None)),
    # the control: a freeze the split did not confirm, or a stall, where the helper fetched the page
    (_freeze_m(SINGLE, None, control=_control()), ("anomaly", "tcp.freeze", 0.75, "http-failure")),
    (_freeze_m(SINGLE, WHOLE, control=_control()), ("anomaly", "tcp.freeze", 0.9, "http-failure")),
    (_freeze_m(SINGLE, None, control=_control(http=False)), ("anomaly", "tcp.freeze", 0.6, "http-failure")),
    (_freeze_m({**SINGLE, "frozen": False, "silence_s": 0.2}, control=_control()),
     ("anomaly", "throttle", 0.65, "http-failure")),
    # a failure where the helper got past the same stage: an anomaly at 0.7 (the helper connected: whatever
    # came after), where it failed there too: down for everyone
    (_freeze_m({**SINGLE, "frozen": False, "stage": "connect", "failure": "generic_timeout_error", "received": 0},
               control=_control(http=False, tls=False)), ("anomaly", "tcp.drop", 0.7, "tcp_ip")),
    (_freeze_m({**SINGLE, "frozen": False, "stage": "connect", "failure": "generic_timeout_error", "received": 0},
               control=_control()), ("anomaly", "tcp.drop", 0.7, "tcp_ip")),
    (_freeze_m({**SINGLE, "frozen": False, "stage": "connect", "failure": "connection_refused", "received": 0},
               control=_control(connect=False, http=False)), ("failure", "none", 0.0, None)),
    (_freeze_m({**SINGLE, "frozen": False, "stage": "tls", "failure": "connection_reset", "received": 0},
               control=_control()), ("anomaly", "tls.rst", 0.7, "http-failure")),
    (_freeze_m({**SINGLE, "frozen": False, "stage": "tls", "failure": "generic_timeout_error", "received": 0},
               control=_control(tls=False, http=False)), ("failure", "none", 0.0, None)),
    (_freeze_m({**SINGLE, "frozen": False, "failure": "connection_reset", "received": 0}, control=_control()),
     ("anomaly", "http.rst", 0.7, "http-failure")),
    (_freeze_m({**SINGLE, "frozen": False, "failure": "connection_reset", "received": 0},
               control=_control(http=False)), ("failure", "none", 0.0, None)),
    (_freeze_m(None, failure="dns_nxdomain_error", control=_control()), ("anomaly", "dns.nxdomain", 0.7, "dns")),
    (_freeze_m(None, failure="dns_nxdomain_error", control=_control(dns=False)), ("failure", "none", 0.0, None)),
    # a control for another address says nothing of this one's connect; a hostile one, nothing at all
    (_freeze_m({**SINGLE, "frozen": False, "stage": "connect", "failure": "generic_timeout_error", "received": 0},
               control={"tcp_connect": {"198.19.200.2:443": {"status": True, "failure": None}}}),
     ("anomaly", "tcp.drop", 0.5, "tcp_ip")),
    (_freeze_m({**SINGLE, "frozen": False, "stage": "connect", "failure": "generic_timeout_error", "received": 0},
               control={"tcp_connect": {EP: {"status": "true"}}, "http_request": {"status_code": True}}),
     ("anomaly", "tcp.drop", 0.5, "tcp_ip")),
    (_freeze_m(SINGLE, None, control={"http_request": [], "dns": 5}), ("anomaly", "tcp.freeze", 0.6, "http-failure")),
])
def test_tcp_freeze_verdict(m: dict[str, Any], expected: tuple[Any, ...]) -> None:
    from tamperscope.analysis.verdicts import verdict_for
    from tamperscope.model.freezeverdict import tcp_freeze_verdict

    v = tcp_freeze_verdict(m)
    blocking = v.blocking if isinstance(v.blocking, str) else None
    assert (v.status, v.mechanism, v.confidence, blocking) == expected
    assert verdict_for(m, None) == v  # the analysis re-derives it with the same function


def test_the_farm_answers_one_byte_range_as_a_static_file_server() -> None:
    whole = farm.respond("https", "hetzner.com", "/")
    part = farm.ranged(whole, "bytes=4096-8191")
    assert (part.status, part.body) == (206, whole.body[4096:8192])
    assert ("Content-Range", f"bytes 4096-8191/{len(whole.body)}") in part.headers
    tail = farm.ranged(whole, f"bytes={len(whole.body) - 10}-")
    assert (tail.status, len(tail.body)) == (206, 10)
    assert farm.ranged(whole, f"bytes={len(whole.body)}-").status == 416
    for ignored in (None, "bytes=0-1,5-9", "bytes=-500", "items=0-1", "bytes=9-3", "bytes=x"):
        assert farm.ranged(whole, ignored) is whole, ignored


def test_tcp_freeze_refuses_what_is_no_url() -> None:
    from tamperscope.nettests import base, tcp_freeze

    for bad in ("", "ftp://x.org/", "http://[::1"):
        with pytest.raises(base.NettestError):
            tcp_freeze.check_input(bad)
    tcp_freeze.check_input("https://hetzner.com/")


def test_the_built_in_profiles_freeze_no_page_near_the_cap() -> None:
    """`lab expect` cannot tell a page within FREEZE_MARGIN of the cap (beside its overhead): no built-in profile's
    freeze rule names one, over http or https, so its predictions (and the lab tests built on them) are exact."""
    from tamperscope.lab import manager

    rules = [r for name in manager.builtin_profiles() for r in manager.resolve_profile(name).rules_for("ip")
             if r.action == "freeze"]
    assert rules  # ru-like's, at least
    for rule in rules:
        for host in rule.domains:
            for scheme in ("http", "https"):
                size = len(farm.respond(scheme, host, "/").body) + expect.FREEZE_OVERHEAD[scheme]
                assert abs(size - rule.after_kb * 1024) > expect.FREEZE_MARGIN[scheme], (rule.id, host, scheme, size)
