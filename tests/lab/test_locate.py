"""`tamperscope locate` in the lab: the hop is censor_after_hop + 1 for every profile, the placement
matches the profile, and the forged packets carry the profile's header values.

One scenario table drives it: profile, URL, expected layer, placement, scope, signature checks.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tamperscope.lab import addresses as A
from tamperscope.lab import manager

from .conftest import run_nettest

pytestmark = pytest.mark.lab
HOP = A.CENSOR_AFTER_HOP + 1
SPREAD = list(A.FARM[:4])

# profile, url, layer, placement, scope, expected signature fields (None: no interference)
SCENARIOS = [
    ("tm-like", "http://www.bbc.com/", "http", "in-path", "name", {"ip_id": 30000, "initial_ttl": 128, "window": 0, "flags": "RA"}),
    ("tm-like", "https://www.youtube.com/", "tls", "in-path", "name", {"ip_id": 30000, "initial_ttl": 128, "flags": "RA"}),
    ("tm-like", "http://www.facebook.com/", "dns", "on-path", "name", {"kind": "udp", "ip_id": 0}),
    ("tm-like", "http://nordvpn.com/", "http", "in-path", "address", None),  # an IP block: located by silence
    # Tor as ru-like blocks it: its directory authorities' OR ports dropped by address (no connection: the SYN is
    # the trigger, against port 80 of the same address), their directory ports answered with the MTS page
    ("ru-like", "https://198.19.3.1/", "tcp", "in-path", "port", None),
    # a page is keyed by its data with the FIN, as a measurement keys it (the lab's MTS page is three segments)
    ("ru-like", "http://198.19.3.1/", "http", "in-path", "name", {"ip_id": 12345, "window": 65535, "flags": "FPA"}),
    # what the censor sent is said where its hop is known: ru-sni sends with TTL 62, the blockpage with 61 (QA: both
    # were said to send 64, the class their TTLs fit under)
    ("ru-like", "https://www.linkedin.com/", "tls", "in-path", "name",
     {"ip_id": 0, "initial_ttl": 64, "window": 0, "sent_ttl": 62}),
    ("ru-like", "http://rutracker.org/", "http", "in-path", "name",
     {"ip_id": 12345, "window": 65535, "flags": "FPA", "sent_ttl": 61}),
    ("gfw-like", "http://www.falundafa.org/", "http", "on-path", "name", {"window": 2050, "initial_ttl": 64, "flags": "RA"}),
    ("gfw-like", "https://www.bbc.com/", "tls", "on-path", "name", {"window": 2050}),
    ("middlebox", "http://example.com/", "http", "in-path", "all", {}),
    ("none", "http://www.bbc.com/", "http", None, None, None),
    ("none", "https://www.youtube.com/", "tls", None, None, None),
]


@pytest.fixture(scope="module")
def labs(lab_factory):  # type: ignore[no-untyped-def]
    current: dict[str, str] = {}

    def ensure(profile: str) -> None:
        if current.get("p") != profile:
            lab_factory(profile)
            current["p"] = profile

    return ensure


@pytest.mark.parametrize("profile,url,layer,placement,scope,sig", SCENARIOS, ids=[f"{s[0]}:{s[1]}" for s in SCENARIOS])
def test_locate(labs, profile, url, layer, placement, scope, sig) -> None:  # type: ignore[no-untyped-def]
    labs(profile)
    res = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "locate", url, "--yes", "--json",
                                            "--wait", "0.25", "--spread", *SPREAD]), env=manager.client_env(),
                         capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["layer"] == layer
    if placement is None:
        assert out["hop"] is None, out["reason"]
        assert out["path"][: A.CENSOR_AFTER_HOP + 1] == [A.ACCESS_LAN, A.BORDER_DOWN]
        return
    assert out["hop"] == HOP, out
    assert out["router"] == A.ACCESS_LAN  # the last hop before the censor
    assert out["placement"] == placement and out["scope"] == scope
    assert len(out["runs"]) >= 3 and out["agreement"] > 0.5
    for k, v in (sig or {}).items():
        assert out["fingerprint"][k] == v, (k, out["fingerprint"])
    if url == "https://198.19.3.1/":
        assert out["switched"] == "could not connect to 198.19.3.1:443: the SYN itself is the trigger"
        assert out["address"] == "198.19.3.1" and "the SYN was dropped" in out["reason"]
    if url in ("http://rutracker.org/", "http://198.19.3.1/"):
        assert out["blockpage"], "the forged page must match a blockpage fingerprint"
        assert out["signature"].endswith("fp:" + "+".join(sorted(out["blockpage"])))  # a key sorts them


def test_locate_and_a_measurement_key_one_box_alike(labs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The same MTS box, seen by `locate` and by web_connectivity --capture, gets one key: a reader joins the two by
    it (they differed, "tcp/PA/..." against "tcp/FPA/...")."""
    labs("ru-like")
    for url in ("http://rutracker.org/", "https://www.linkedin.com/"):
        located = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "locate", url, "--yes",
                                                    "--json", "--runs", "1", "--wait", "0.25"]),
                                 env=manager.client_env(), capture_output=True, text=True, timeout=180)
        assert located.returncode == 0, located.stderr
        measured = run_nettest(tmp_path / "m.jsonl", "web_connectivity", (url,), ("--capture",))[url]
        key = measured["test_keys"]["x_signature"]["key"]
        assert json.loads(located.stdout)["signature"] == key, url
        assert key.startswith("tcp/FPA/" if url.startswith("http:") else "tcp/RA/"), key


def test_two_rules_with_different_headers_have_different_signatures(labs) -> None:  # type: ignore[no-untyped-def]
    labs("ru-like")
    sigs = set()
    for url in ("https://www.linkedin.com/", "http://rutracker.org/"):
        res = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "locate", url, "--yes", "--json", "--runs", "1",
                                                "--wait", "0.25", "--spread", *SPREAD]), env=manager.client_env(),
                             capture_output=True, text=True, timeout=180)
        sigs.add(json.loads(res.stdout)["signature"])
    assert len(sigs) == 2


ALL_ACTIONS = str(__import__("pathlib").Path(__file__).parent / "profiles" / "all-actions.toml")
QUIC = [("ru-like", "https://www.youtube.com/", "all"),  # UDP to the address's port 443 dropped: every name
        ("ru-like", "https://example.com/", None),
        (ALL_ACTIONS, "https://quic-sni.example/", "name")]  # the Initial's SNI read: this name only


@pytest.mark.parametrize("profile,url,scope", QUIC, ids=[f"{p.rsplit('/', 1)[-1]}:{u}" for p, u, _ in QUIC])
def test_locate_quic(labs, profile, url, scope) -> None:  # type: ignore[no-untyped-def]
    """--layer quic sends real QUIC Initials with limited TTLs: a dropped one is silent from the censor's hop on,
    and the control name tells a drop by address (scope all) from one by the SNI inside the Initial (name). Other
    addresses (--spread) are tried only for the name's: a drop by address shows at that address alone."""
    labs(profile)
    res = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "locate", url, "--layer", "quic",
                                            "--yes", "--json", "--wait", "0.25", "--spread", *SPREAD]),
                         env=manager.client_env(), capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["layer"] == "quic"
    if scope is None:
        assert out["hop"] is None, out["reason"]
        return
    assert (out["hop"], out["router"], out["placement"], out["scope"]) == (HOP, A.ACCESS_LAN, "in-path", scope), out
    assert len(out["runs"]) >= 3 and out["agreement"] > 0.5
    servers = {run["server"] for run in out["detail"]}
    if scope == "all":
        assert servers == {out["address"]} and out["spread_dropped"].startswith("the control name was dropped at")
    else:
        assert len(servers) > 1 and "spread_dropped" not in out


ECH = [("https://cloudflare-ech.com/", "ech", True),  # ru-ech: the ECH hello to this outer name is dropped
       ("https://crypto.cloudflare.com/", "ech", True),  # its published config's outer name is that name too
       ("https://cloudflare-ech.com/", "tls", False),  # the same name's plain hello passes: nothing to locate
       ("https://example.com/", "ech", False)]  # ECH to another name passes too (GREASE: no config published)


@pytest.mark.parametrize("url,layer,located", ECH, ids=[f"{u}:{la}" for u, la, _ in ECH])
def test_locate_ech(labs, url, layer, located) -> None:  # type: ignore[no-untyped-def]
    """--layer ech sends ClientHellos carrying encrypted_client_hello with limited TTLs, sealed with the site's
    published config (the lab's Cloudflare names), else GREASE: ru-like's censor drops those whose outer name is
    cloudflare-ech.com from its hop on (silence, located by the routers before it), while the plain hello for
    the same name, and the ECH hello for another, are never touched."""
    labs("ru-like")
    res = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "locate", url, "--layer", layer,
                                            "--yes", "--json", "--wait", "0.25", "--spread", *SPREAD]),
                         env=manager.client_env(), capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["layer"] == layer
    if layer == "ech":  # the trigger's outer name: the config's public name where one is published
        published = url != "https://example.com/"
        assert out["ech"] == {"config": "published" if published else "GREASE",
                              "outer_name": "cloudflare-ech.com" if published else "example.com"}
    if not located:
        assert out["hop"] is None, out["reason"]
        return
    assert (out["hop"], out["router"], out["placement"], out["scope"]) == (HOP, A.ACCESS_LAN, "in-path", "name"), out
    assert "dropped" in out["reason"] and len(out["runs"]) >= 3 and out["agreement"] > 0.5


LONG_PATH = str(__import__("pathlib").Path(__file__).parent / "profiles" / "long-path.toml")


def test_a_long_path_is_seen_whole_with_the_wait_it_is_given(labs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """2.4 s of round trip past the ISP (QA: every site was dns.drop, the ISP resolver waiting 2 s for its upstream;
    and locate saw no hop past the first, its traceroute waiting 0.5 s whatever --wait said)."""
    labs(LONG_PATH)
    from tests.lab.conftest import run_nettest

    plain = run_nettest(tmp_path / "m.jsonl", "web_connectivity", ("http://example.com/",))["http://example.com/"]
    assert plain["test_keys"]["x_mechanism"] == "none", plain["test_keys"].get("x_mechanism")
    assert not plain["test_keys"]["queries"][0].get("failure"), plain["test_keys"]["queries"][0]
    res = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "locate", "http://far.example/",
                                            "--yes", "--json", "--runs", "1", "--wait", "3"]),
                         env=manager.client_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["hop"] == HOP and out["router"] == A.ACCESS_LAN, out
    # the censor drops the request in-path: the routers' time-exceeded for the kernel's own ACKs (to the server's
    # SYN-ACK sent again, the path slower than its timer) are not the trigger's (QA: it said on-path)
    assert out["placement"] == "in-path", out
    assert out["path"][: A.CENSOR_AFTER_HOP + 1] == [A.ACCESS_LAN, A.BORDER_DOWN], out["path"]
    assert out["server_ttl"] is not None, out


def test_a_path_slower_than_the_wait_is_said_so_not_taken_for_a_censor(labs) -> None:  # type: ignore[no-untyped-def]
    """QA: on 2.4 s of round trip with the default --wait, an address no rule touches was located "at hop 1,
    on-path": the server's SYN-ACK, sent again before the client's ACK could reach it, came back after the
    trigger and was taken for a forged answer."""
    labs(LONG_PATH)
    farm = A.FARM[5]
    res = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "locate", f"http://{farm}/",
                                            "--yes", "--json", "--runs", "1", "--max-ttl", "3"]),
                         env=manager.client_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["hop"] is None, out
    assert "locate again with a longer --wait" in out["reason"], out["reason"]


def test_a_wireguard_server_silent_on_a_slow_path_is_no_drop(labs) -> None:  # type: ignore[no-untyped-def]
    """QA: on the long path, --layer wireguard "located" a drop where no rule was: a WireGuard server answers no
    initiation it cannot authenticate, so silence at full TTL says nothing of a drop."""
    labs(LONG_PATH)
    res = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "locate", "http://198.19.3.40:51820/",
                                            "--layer", "wireguard", "--yes", "--json", "--runs", "1", "--max-ttl", "3"]),
                         env=manager.client_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["hop"] is None and "no answer is expected" in out["reason"], out


def test_a_closed_port_is_no_block(labs) -> None:  # type: ignore[no-untyped-def]
    """QA: --layer tcp on a closed port, under the none profile, said "interference at hop 3 (the server's): RST
    that the control did not get". It is the server's own reset, with the TTL of its SYN-ACK to the control port."""
    labs("none")
    res = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "locate", f"http://{A.FARM[24]}:9999/",
                                            "--layer", "tcp", "--yes", "--json", "--runs", "1", "--wait", "0.25"]),
                         env=manager.client_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["hop"] is None and "the port is closed there" in out["reason"], out


@pytest.mark.parametrize("url,layer", [("https://198.19.3.1/", "tcp"), ("https://nordvpn.com/", "quic")])
def test_an_address_dropped_outright_is_located_by_a_bare_syn_or_datagram(labs, url, layer) -> None:  # type: ignore[no-untyped-def]
    """QA: tm-like drops Tor's directory authorities (198.19.3.0/28) and nordvpn.com's address outright, and the
    path goes silent past hop 1; --layer tcp and --layer quic said "no interference", where the default layer,
    whose connect fails, located it. No connection to fail: silence at every TTL, for the control too, and at full
    TTL when listened to longer, is the drop."""
    labs("tm-like")
    res = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "locate", url, "--layer", layer,
                                            "--yes", "--json", "--wait", "0.25", "--max-ttl", "4"]),
                         env=manager.client_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert (out["hop"], out["router"], out["placement"], out["scope"]) == (HOP, A.ACCESS_LAN, "in-path", "address"), out
    assert "nor in 4 s at full TTL" in out["reason"], out["reason"]


def test_an_injection_behind_a_long_path_is_heard_whole(labs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The injector at the border answers at once, the public resolver 2.4 s later: the probe hears both and says
    injection (QA: past 0.3 s of round trip the real answer went unheard, and it read as dns.poison)."""
    labs(LONG_PATH)
    from tests.lab.conftest import run_nettest

    m = run_nettest(tmp_path / "m.jsonl", "web_connectivity", ("http://far-inject.example/",))
    tk = m["http://far-inject.example/"]["test_keys"]
    assert tk["x_mechanism"] == "dns.injection", (tk.get("x_mechanism"), tk["x_dns_duplicate_responses"])
    late = [d for d in tk["x_dns_duplicate_responses"] if d["query_type"] == "A" and d.get("answers")]
    assert late and late[0]["t"] - late[0]["t0"] > 2.4, late
    assert {a["ipv4"] for a in late[0]["answers"]} != {"127.0.0.1"}, late
