"""model.location's rules for silence: a trigger dropped on a path whose routers answer ICMP, for this name only
or for every name sent to that port, and a dropped trigger at the server's own distance."""

from __future__ import annotations

from tamperscope.model.location import Observation, decide_run

PATH = ["198.18.1.1", "198.18.2.2"]  # the plain path; the server answers at TTL 3
DIST = 3


def obs(ttl: int, icmp: str | None = None, answered: bool = False) -> Observation:
    return Observation(ttl, True, icmp, ({"kind": "udp", "src": "198.19.1.6"},) if answered else ())


def normal() -> dict[int, Observation]:
    return {1: obs(1, PATH[0]), 2: obs(2, PATH[1]), 3: obs(3, answered=True)}


def test_silence_for_this_name_where_the_control_got_icmp_is_a_drop_of_this_name() -> None:
    r = decide_run(PATH, DIST, [obs(1, PATH[0]), obs(2), obs(3)], normal())
    assert (r.hop, r.router, r.scope, r.placement) == (2, PATH[0], "name", "in-path")


def test_silence_for_every_name_all_the_way_to_the_server_is_a_port_dropped_for_all() -> None:
    silent = {1: obs(1, PATH[0]), 2: obs(2), 3: obs(3)}
    r = decide_run(PATH, DIST, [obs(1, PATH[0]), obs(2), obs(3)], silent)
    assert (r.hop, r.router, r.scope) == (2, PATH[0], "all")
    assert "everything sent there on this port is dropped" in r.reason


def test_one_lost_icmp_for_both_names_is_not_a_block() -> None:
    """Both names lose the ICMP at TTL 2 but the server answers at TTL 3: a lost packet, not a censor."""
    lossy = {1: obs(1, PATH[0]), 2: obs(2), 3: obs(3, answered=True)}
    r = decide_run(PATH, DIST, [obs(1, PATH[0]), obs(2), obs(3, answered=True)], lossy)
    assert r.hop is None


def test_a_sweep_cut_before_the_server_decides_nothing_about_every_name() -> None:
    """The early stop of a target sweep asks decide_run with a prefix: silence that may still end is no verdict."""
    silent = {1: obs(1, PATH[0]), 2: obs(2), 3: obs(3)}
    assert decide_run(PATH, DIST, [obs(1, PATH[0]), obs(2)], silent).hop is None


def test_no_answer_at_the_server_where_the_control_got_one_is_a_drop() -> None:
    """Routers that never answer ICMP: only the server's answer to the control tells the trigger was dropped."""
    mute = [None, None]
    ctl = {1: obs(1), 2: obs(2), 3: obs(3, answered=True)}
    r = decide_run(mute, DIST, [obs(1), obs(2), obs(3)], ctl)
    assert r.hop == 3 and "where the control got one" in r.reason
    assert decide_run(mute, DIST, [obs(1), obs(2), obs(3, answered=True)], ctl).hop is None


def _tcp(flags: str, ttl: int, payload: int = 0) -> dict[str, object]:
    return {"kind": "tcp", "src": "198.18.1.80", "flags": flags, "ttl": ttl, "payload_len": payload}


def test_at_the_servers_own_hop_a_reset_beside_the_servers_ack_is_on_path() -> None:
    """From outside, towards a server next to the censor (dist 2): no ICMP at the server's hop. A forged RST with the
    server's own ACK of the trigger (at the TTL its packets come with) is an on-path tap; the RST alone, the trigger
    dropped, is in-path; a forged packet at another TTL says nothing of the server."""
    path, dist = ["198.18.4.1"], 2
    ctl = {1: Observation(1, True, "198.18.4.1", ()),
           2: Observation(2, True, None, (_tcp("A", 63), _tcp("PA", 63, 126)))}
    tap = [Observation(1, True, "198.18.4.1", ()), Observation(2, True, None, (_tcp("RA", 48), _tcp("A", 63)))]
    r = decide_run(path, dist, tap, ctl)
    assert (r.hop, r.router, r.placement) == (2, "198.18.4.1", "on-path") and "RST at TTL 2" in r.reason
    inline = [tap[0], Observation(2, True, None, (_tcp("RA", 127),))]
    assert decide_run(path, dist, inline, ctl).placement == "in-path"
    forged = [tap[0], Observation(2, True, None, (_tcp("RA", 127), _tcp("FPA", 127, 512)))]
    assert decide_run(path, dist, forged, ctl).placement == "in-path"
