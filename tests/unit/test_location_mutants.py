"""model.location's decisions at the edges its other tests leave open: routers that never answer ICMP, the first
hop, resets written with other flags beside them, a forged reset at the server's own TTL, and the signature of a
censor with no hop."""

from __future__ import annotations

from typing import Any

from tamperscope.model.location import Location, Observation, decide_run, signature, signature_key, signature_words
from tamperscope.netx.ttlprobe import tcp_flags
from tamperscope.wire import packet as P

R1, R2 = "198.18.1.1", "198.18.2.2"


def _obs(ttl: int, icmp: str | None = None, *responses: dict[str, Any]) -> Observation:
    return Observation(ttl, True, icmp, tuple(responses))


def _tcp(flags: str, ttl: int, payload: int = 0) -> dict[str, Any]:
    return {"kind": "tcp", "src": "198.19.1.80", "flags": flags, "ttl": ttl, "payload_len": payload, "ip_id": 1}


def test_no_icmp_from_a_router_that_never_sends_any_is_no_drop() -> None:
    """A router that sent no time-exceeded on the plain path either (None there) being silent for the trigger is
    no drop, even when the control's sweep has no step at that TTL."""
    path, dist = [R1, None], 3
    ctl = {1: _obs(1, R1), 3: _obs(3, None, _tcp("SA", 61))}
    target = [_obs(1, R1), _obs(2), _obs(3, None, _tcp("SA", 61))]
    assert decide_run(path, dist, target, ctl).hop is None


def test_an_answer_at_a_mute_routers_hop_is_for_this_name_when_the_control_got_nothing_there() -> None:
    """A forged answer at TTL 2, where the router never answers ICMP: the control's silence there is that router's
    usual silence, not the censor answering it too, so the scope is this name."""
    path, dist = [R1, None], 3
    ctl = {1: _obs(1, R1), 2: _obs(2), 3: _obs(3, None, _tcp("SA", 61))}
    target = [_obs(1, R1), _obs(2, None, _tcp("RA", 254))]
    r = decide_run(path, dist, target, ctl)
    assert (r.hop, r.router, r.scope, r.placement) == (2, R1, "name", "in-path")


def test_a_censor_at_the_first_hop_has_no_router_before_it() -> None:
    """An answer at TTL 1 names no router (none lies before hop 1), not the path's last one."""
    path, dist = [R1, R2], 3
    ctl = {1: _obs(1, R1), 2: _obs(2, R2), 3: _obs(3, None, _tcp("SA", 61))}
    r = decide_run(path, dist, [_obs(1, None, _tcp("RA", 255))], ctl)
    assert (r.hop, r.router) == (1, None)


def test_a_reset_is_a_reset_whatever_flags_come_before_it() -> None:
    """A forged FIN+RST (flags written "FR..", the R not first) at the server's hop is a reset the control did not
    get."""
    path, dist = [R1], 2
    ctl = {1: _obs(1, R1), 2: _obs(2, None, _tcp("SA", 63))}
    flags = tcp_flags(P.FIN | P.RST | P.ACK)
    assert flags.index("R") > 0
    r = decide_run(path, dist, [_obs(1, R1), _obs(2, None, _tcp(flags, 63))], ctl)
    assert r.hop == 2 and "RST at TTL 2" in r.reason


def test_a_lone_forged_reset_at_the_servers_ttl_is_in_path() -> None:
    """At the server's own hop, a forged RST alone tells nothing of the trigger going on, even when its TTL is the
    one the server's packets arrive with: only a packet of the server's own (no RST) at that TTL makes it on-path."""
    path, dist = [R1], 2
    ctl = {1: _obs(1, R1), 2: _obs(2, None, _tcp("SA", 63))}
    r = decide_run(path, dist, [_obs(1, R1), _obs(2, None, _tcp("RA", 63))], ctl)
    assert (r.hop, r.placement) == (2, "in-path")


def test_no_hop_no_sent_ttl() -> None:
    """Only a censor's hop (1 or more) says what TTL it sent; hop 0 is no hop."""
    sig = signature([_tcp("RA", 60)], hop=0)
    assert sig is not None and "sent_ttl" not in sig
    assert signature([_tcp("RA", 60)], hop=1) == {**sig, "sent_ttl": 60}


def test_an_ip_id_of_zero_is_a_fixed_value() -> None:
    """Forged packets that all carry IP-ID 0 (common for such equipment) have the fixed IP-ID 0 in their key, not a
    varying one."""
    sig = signature([_tcp("RA", 60) | {"ip_id": 0}, _tcp("RA", 60) | {"ip_id": 0}])
    assert sig is not None and sig["ip_id"] == 0
    key = signature_key(sig)
    assert key.endswith("/ipid0") and signature_words(key).endswith("IP-ID 0")


def test_a_key_of_400_characters_is_read_and_a_longer_one_is_not() -> None:
    """signature_words reads keys of up to 400 characters, the limit included."""
    head = "tcp/RA/ttl64/ipid0/fp:"
    key = head + "x" * (400 - len(head))
    assert len(key) == 400
    assert signature_words(key) == f"TCP RST+ACK, sent with TTL ≤ 64, IP-ID 0, blockpage {'x' * (400 - len(head))}"
    assert signature_words(key + "x") == ""


def test_all_eight_flags_are_said() -> None:
    """A flags part with every one of the eight TCP flags is said in full."""
    assert signature_words("tcp/FSRPAUEC/ttl64") == "TCP FIN+SYN+RST+PSH+ACK+URG+ECE+CWR, sent with TTL ≤ 64"


def test_an_icmp_key_is_said() -> None:
    """A key of forged ICMP (kind "icmp", as signature_key writes it) is said like the others."""
    assert signature_words("icmp/ttl64/ipid0") == "ICMP, sent with TTL ≤ 64, IP-ID 0"


def test_a_locations_agreement_is_written_to_three_places() -> None:
    """Two runs of three agreeing is written as 0.667, not a float's every digit."""
    loc = Location(hop=2, router=R1, placement="in-path", scope="name", runs=(2, 2, None), agreement=2 / 3,
                   reason="r")
    assert loc.as_dict()["agreement"] == 0.667
