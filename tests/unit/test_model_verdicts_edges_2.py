"""Edges of the equipment signature (model.signature.signature_from) and of locate's pure rules (model.location:
decide_run, signature, signature_key, signature_words, majority) that the existing tests leave open."""

from __future__ import annotations

from typing import Any

from tamperscope.model.location import (
    Observation,
    RunResult,
    decide_run,
    majority,
    signature,
    signature_key,
    signature_words,
)
from tamperscope.model.signature import signature_from
from tamperscope.model.throttle import MAX_ROUNDS, judge

# --------------------------------------------------------------------------- signature_from

TARGET = "198.19.0.5:443"
OTHER = "198.19.0.9:443"


def _pkt(remote: str, ip_id: int, flags: str = "RA", t: float | None = 0.1, proto: str = "tcp",
         initial_ttl: int = 64, window: int | None = 0, payload_len: int = 0, **more: Any) -> dict[str, Any]:
    p = {"proto": proto, "remote": remote, "flags": flags, "ip_id": ip_id, "ttl": initial_ttl - 2,
         "initial_ttl": initial_ttl, "window": window, "payload_len": payload_len, **more}
    if t is not None:
        p["t"] = t
    return p


def _m(mechanism: str, packets: list[dict[str, Any]], evidence: list[str], **tk: Any) -> dict[str, Any]:
    return {"test_keys": {"x_mechanism": mechanism, "x_evidence": evidence, "x_packets": packets, **tk}}


def test_a_reset_signature_takes_only_the_rsts_of_the_endpoint_the_evidence_names() -> None:
    """The evidence's tcp_connect entry (ip, port) picks the reset endpoint: another address's earlier RST is not
    the equipment's, and the signature says which endpoint it came from."""
    m = _m("tcp.rst", [_pkt(OTHER, 1, t=0.1), _pkt(TARGET, 2, t=0.2)], ["test_keys.tcp_connect[0]"],
           tcp_connect=[{"ip": "198.19.0.5", "port": 443}])
    sig = signature_from(m)
    assert sig is not None and (sig["ip_id"], sig["packets"], sig["remote"]) == (2, 1, TARGET), sig


def test_an_rst_without_a_time_is_not_taken_for_the_first() -> None:
    """A packet with no time sorts last: the timed RST decides who sent first (and so the key's initial TTL)."""
    m = _m("tls.rst", [_pkt(TARGET, 9, t=None, initial_ttl=128), _pkt(TARGET, 2, t=0.2)], [])
    sig = signature_from(m)
    assert sig is not None and sig["key"] == "tcp/RA/ttl64/win0/ipid2", sig


def test_a_later_rst_with_another_window_is_not_the_first_senders() -> None:
    """The first sender is its initial TTL and its window: the server's own RST with another window is left out."""
    m = _m("tls.rst", [_pkt(TARGET, 4242, t=0.1), _pkt(TARGET, 0, t=0.3, window=29200)], [])
    sig = signature_from(m)
    assert sig is not None and (sig["key"], sig["packets"]) == ("tcp/RA/ttl64/win0/ipid4242", 1), sig


def test_a_blockpage_signature_takes_data_with_a_fin_from_the_named_endpoint() -> None:
    """A FIN without data carries no page, and a page from another endpoint than the evidence's is not this one."""
    packets = [_pkt(TARGET, 5, "FA", t=0.1), _pkt(OTHER, 6, "FPA", t=0.1, payload_len=300),
               _pkt(TARGET, 7, "FPA", t=0.2, payload_len=512)]
    m = _m("http.blockpage", packets, ["test_keys.tcp_connect[1]"],
           tcp_connect=[{"ip": "198.19.0.9", "port": 443}, {"ip": "198.19.0.5", "port": 443}])
    sig = signature_from(m)
    assert sig is not None and (sig["flags"], sig["ip_id"], sig["packets"], sig["remote"]) == ("FPA", 7, 1, TARGET)


def test_a_dns_injection_signature_is_a_udp_answers() -> None:
    """Only a UDP packet is a DNS answer's carrier, even where another packet claims the same query earlier."""
    packets = [_pkt("198.18.1.53:53", 1, "PA", t=0.01, matches="test_keys.queries[0]"),
               _pkt("198.18.1.53:53", 2, "", t=0.2, proto="udp", window=None, matches="test_keys.queries[0]")]
    sig = signature_from(_m("dns.injection", packets, ["test_keys.queries[0]"]))
    assert sig is not None and (sig["kind"], sig["ip_id"]) == ("udp", 2), sig


# --------------------------------------------------------------------------- decide_run

PATH = ["198.18.1.1", "198.18.2.2"]


def _obs(ttl: int, icmp: str | None = None, responses: tuple[dict[str, Any], ...] = (),
         connected: bool = True) -> Observation:
    return Observation(ttl, connected, icmp, responses)


UDP = ({"kind": "udp", "src": "198.19.1.6", "ttl": 60},)
RST = ({"kind": "tcp", "src": "198.19.1.6", "flags": "RA", "ttl": 60},)


def test_without_the_servers_ttl_the_server_is_one_hop_past_the_path() -> None:
    """server_ttl unknown: the distance is len(path) + 1, so an answer at TTL len(path) came before the server."""
    control = {1: _obs(1, PATH[0]), 2: _obs(2, PATH[1])}
    r = decide_run(PATH, None, [_obs(1, PATH[0]), _obs(2, PATH[1], UDP)], control)
    assert (r.hop, r.router, r.placement) == (2, PATH[0], "on-path") and "before the server (TTL 3)" in r.reason


def test_an_answer_the_control_gets_before_the_server_too_is_for_every_name() -> None:
    """A transparent proxy answers every name at its hop: the control's own early answer makes the scope "all"."""
    control = {1: _obs(1, PATH[0]), 2: _obs(2, PATH[1], UDP)}
    r = decide_run(PATH, 3, [_obs(1, PATH[0]), _obs(2, PATH[1], UDP)], control)
    assert (r.hop, r.scope) == (2, "all")


def test_a_step_that_never_connected_says_nothing() -> None:
    r = decide_run(PATH, 3, [_obs(1, None, UDP, connected=False)], {1: _obs(1, PATH[0])})
    assert r.hop is None and r.reason == "no interference seen"


def test_silence_without_a_control_step_where_a_router_should_answer_is_a_drop() -> None:
    r = decide_run(PATH, 3, [_obs(1, PATH[0]), _obs(2)], {1: _obs(1, PATH[0])})
    assert (r.hop, r.scope) == (2, "name") and "the trigger was dropped" in r.reason


def test_silence_for_both_names_is_all_dropped_only_if_the_control_stays_silent_to_the_server() -> None:
    """The control lost TTL 2's ICMP but the server answered it at TTL 3: not a port dropped for every name; this
    name's missing answer at the server is."""
    control = {1: _obs(1, PATH[0]), 2: _obs(2), 3: _obs(3, None, UDP)}
    r = decide_run(PATH, 3, [_obs(1, PATH[0]), _obs(2), _obs(3)], control)
    assert (r.hop, r.scope) == (3, "name") and "where the control got one" in r.reason


def test_a_control_that_got_an_answer_at_that_ttl_was_not_silent_from_it() -> None:
    """"Everything to that port is dropped" needs the control silent from TTL k on, TTL k itself included."""
    control = {1: _obs(1, PATH[0]), 2: _obs(2, None, UDP), 3: _obs(3)}
    assert decide_run(PATH, 3, [_obs(1, PATH[0]), _obs(2), _obs(3)], control).hop is None


def test_a_reset_at_the_server_that_the_control_gets_too_is_the_servers() -> None:
    """A closed port resets every name: an RST at the server's hop is interference only where the control got none."""
    control = {1: _obs(1, PATH[0]), 2: _obs(2, PATH[1]), 3: _obs(3, None, RST)}
    assert decide_run(PATH, 3, [_obs(1, PATH[0]), _obs(2, PATH[1]), _obs(3, None, RST)], control).hop is None


def test_icmp_at_the_servers_distance_is_no_dropped_trigger() -> None:
    """Time-exceeded from beyond the expected distance: the trigger travelled on, nothing was dropped there."""
    control = {1: _obs(1, PATH[0]), 2: _obs(2, PATH[1]), 3: _obs(3, None, UDP)}
    assert decide_run(PATH, 3, [_obs(1, PATH[0]), _obs(2, PATH[1]), _obs(3, "198.18.3.3")], control).hop is None


# --------------------------------------------------------------------------- signature, keys and words


def _forged(ip_id: int, ttl: Any = 60) -> dict[str, Any]:
    return {"kind": "tcp", "flags": "RA", "ip_id": ip_id, "ttl": ttl, "initial_ttl": 64, "window": 0}


def test_a_signature_keeps_at_most_eight_ip_ids() -> None:
    sig = signature([_forged(i) for i in range(12)])
    assert sig is not None and sig["ip_ids"] == list(range(8)) and sig["ip_id"] is None and sig["packets"] == 12


def test_the_sent_ttl_is_capped_at_255_and_needs_a_numeric_ttl() -> None:
    assert (signature([_forged(1, ttl=250)], hop=10) or {})["sent_ttl"] == 255
    assert "sent_ttl" not in (signature([_forged(1, ttl=True)], hop=3) or {})


def test_fingerprints_are_keyed_in_one_order() -> None:
    sig = signature([_forged(7)])
    assert signature_key(sig, ["tr.btk", "ru.rkn"]) == signature_key(sig, ["ru.rkn", "tr.btk"])
    assert signature_key(sig, ["tr.btk", "ru.rkn"]).endswith("/fp:ru.rkn+tr.btk")


def test_words_leave_out_flags_that_are_too_long_or_not_right_after_the_kind() -> None:
    assert signature_words("tcp/RRRRRRRRR/ttl64") == "TCP, sent with TTL ≤ 64"  # nine letters: no flags of ours
    assert signature_words("tcp/ttl64/RA") == "TCP, sent with TTL ≤ 64"


def test_words_name_at_most_five_blockpages() -> None:
    words = signature_words("tcp/FA/ttl64/ipid*/fp:a1+a2+a3+a4+a5+a6")
    assert words.endswith("blockpage a1, a2, a3, a4, a5")


def test_a_key_that_is_not_ours_says_no_blockpage_either() -> None:
    """Fingerprints are said only after parts of a key of ours: hostile text before "/fp:" says nothing."""
    assert signature_words("evil/RA/fp:ru.rkn") == ""


def test_the_majority_is_the_hop_most_runs_agree_on_and_its_share() -> None:
    none = RunResult(None, None, None, None, "no interference seen")
    at3 = RunResult(3, "198.18.2.2", "in-path", "name", "RST at TTL 3")
    best, share = majority([none, at3, at3])
    assert best is at3 and share == 2 / 3
    assert majority([]) == (None, 0.0)


# --------------------------------------------------------------------------- throttle.judge


def _round(target: Any, control: Any, size: Any = 30000) -> dict[str, Any]:
    return {"target": {"kbps": target, "bytes": size}, "control": {"kbps": control, "bytes": size},
            "same_resource": True}


def test_the_resource_is_the_median_size_of_the_controls_that_gave_a_rate() -> None:
    """240 kbit at 100 kbit/s against 100,000: 2.3976 s more. A control fetch without a rate gives no size, and
    one odd size does not move the median."""
    rounds = [_round(100.0, 100_000.0), _round(100.0, 100_000.0), _round(100.0, 100_000.0, size=3_000_000),
              _round(100.0, None, size=10_000_000), _round(100.0, None, size=10_000_000)]
    th = judge(rounds)
    assert th is not None and th["delay_s"] == 2.3976 and th["throttled"] is True, th


def test_rounds_past_the_bound_are_not_read() -> None:
    """Only the first MAX_ROUNDS rounds count: a control rate in the round just past them is never read."""
    no_control = {"target": {"kbps": 100.0, "bytes": 30000}, "control": None, "same_resource": True}
    assert judge([no_control] * MAX_ROUNDS + [_round(100.0, 100_000.0)]) is None
    assert judge([no_control] * (MAX_ROUNDS - 1) + [_round(100.0, 100_000.0)]) is not None
