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
