"""The lab's Tor network's keys and configurations (`lab.tornet`), made with the real tor-gencert and tor (`make
setup` installs tor); the network itself bootstrapping a client is tests/lab/test_vanilla_tor.py."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tamperscope.lab import addresses as A
from tamperscope.lab import tornet
from tamperscope.nettests.vanilla_tor import load_network


def test_each_authority_gets_its_own_keys_and_a_line_a_client_takes(tmp_path: Path) -> None:
    authorities = tornet.make_keys(tmp_path)
    assert [(a.nickname, a.ip) for a in authorities] == list(A.TOR_NETWORK)
    for a in authorities:
        assert re.fullmatch(r"[0-9A-F]{40}", a.v3ident) and re.fullmatch(r"[0-9A-F]{40}", a.fingerprint)
        keys = tmp_path / a.nickname / "keys"
        assert {"authority_identity_key", "authority_signing_key", "authority_certificate",
                "secret_id_key"} <= {p.name for p in keys.iterdir()}
        assert (tmp_path / a.nickname).stat().st_mode & 0o077 == 0  # its keys' directory is root's alone
    assert len({a.v3ident for a in authorities} | {a.fingerprint for a in authorities}) == 6
    client = tornet.client_config(authorities)
    # what the lab hands vanilla_tor passes its own check of a --tor-network file
    lines = load_network(client)
    assert lines[0] == "TestingTorNetwork 1" and len(lines) == 4
    assert lines[1] == (f"DirAuthority labauth1 orport={A.TOR_NETWORK_OR_PORT} no-v2 v3ident={authorities[0].v3ident} "
                        f"{A.TOR_NETWORK[0][1]}:{A.TOR_NETWORK_DIR_PORT} {authorities[0].fingerprint}")
    # made again at the next lab up: new keys where the old ones were
    again = tornet.make_keys(tmp_path)
    assert {a.v3ident for a in again}.isdisjoint({a.v3ident for a in authorities})


def test_a_kept_relay_key_gives_the_fingerprint_tor_itself_says(tmp_path: Path) -> None:
    # fresh keys: their relay fingerprints are what `tor --list-fingerprint` printed
    authorities = tornet.make_keys(tmp_path)
    for a in authorities:
        assert tornet.relay_fingerprint(tmp_path / a.nickname / "keys" / "secret_id_key") == a.fingerprint
    # no key, a damaged one, one of another kind: none (tor is asked instead)
    assert tornet.relay_fingerprint(tmp_path / "missing") is None
    (tmp_path / "garbage").write_text("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n")
    assert tornet.relay_fingerprint(tmp_path / "garbage") is None
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    other = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "ed25519").write_bytes(other)
    assert tornet.relay_fingerprint(tmp_path / "ed25519") is None
    # a key tor keeps is read without a tor: a kept authority's line is the same at the next lab up
    again = tornet._keys(tmp_path / "labauth1", "labauth1", A.TOR_NETWORK[0][1], fresh=False)
    assert again == authorities[0]


def test_no_tor_of_the_network_reads_a_geoip_database(tmp_path: Path) -> None:
    # the six tors count no client's country; parsing Debian's two files took them about 2 s at every lab up
    me = tornet.Authority("labauth1", "198.19.3.11", "A" * 40, "B" * 40)
    for text in (tornet.authority_config(me, [me], tmp_path), tornet.relay_config("labrelay1", "198.19.3.14", [me], tmp_path),
                 tornet.bridge_config([me], tmp_path, "/usr/bin/obfs4proxy")):
        lines = text.splitlines()
        assert "GeoIPFile /dev/null" in lines and "GeoIPv6File /dev/null" in lines


def test_an_authority_listens_on_its_own_address_and_exits_only_to_the_lab(tmp_path: Path) -> None:
    me = tornet.Authority("labauth2", "198.19.3.12", "A" * 40, "B" * 40)
    others = [tornet.Authority("labauth1", "198.19.3.11", "C" * 40, "D" * 40), me]
    text = tornet.authority_config(me, others, tmp_path / "labauth2")
    lines = text.splitlines()
    assert "ORPort 198.19.3.12:9001" in lines and "DirPort 198.19.3.12:9030" in lines
    assert "OutboundBindAddress 198.19.3.12" in lines and "SocksPort 0" in lines
    assert lines.index("ExitPolicy accept 198.18.0.0/15:*") < lines.index("ExitPolicy reject *:*")
    assert [line for line in lines if line.startswith("DirAuthority ")] == [a.line for a in others]
    assert "TestingTorNetwork 1" in lines and "SafeLogging 1" in lines
    # tor refuses votes whose two delays are not under half the interval
    interval = int(re.search(r"^V3AuthVotingInterval (\d+)$", text, re.M).group(1))  # type: ignore[union-attr]
    vote = int(re.search(r"^V3AuthVoteDelay (\d+)$", text, re.M).group(1))  # type: ignore[union-attr]
    dist = int(re.search(r"^V3AuthDistDelay (\d+)$", text, re.M).group(1))  # type: ignore[union-attr]
    assert vote + dist < interval / 2


def test_a_relay_that_is_no_authority_listens_on_its_own_address_and_knows_the_authorities(tmp_path: Path) -> None:
    others = [tornet.Authority("labauth1", "198.19.3.11", "C" * 40, "D" * 40)]
    lines = tornet.relay_config("labrelay1", "198.19.3.14", others, tmp_path).splitlines()
    assert "ORPort 198.19.3.14:9001" in lines and "Nickname labrelay1" in lines and "SocksPort 0" in lines
    assert not [line for line in lines if line.startswith(("AuthoritativeDirectory", "DirPort", "BridgeRelay"))]
    assert lines.index("ExitPolicy accept 198.18.0.0/15:*") < lines.index("ExitPolicy reject *:*")
    assert [line for line in lines if line.startswith("DirAuthority ")] == [others[0].line]
    # inside the /28 the profiles block Tor's directory authorities by, as the authorities are
    assert all(ip.startswith("198.19.3.") and int(ip.rsplit(".", 1)[1]) < 16 for _, ip in A.TOR_NETWORK_RELAYS)


def test_without_tor_gencert_the_error_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(tornet.TorNetError, match=r"^tor-gencert: .*No such file") as e:
        tornet.make_keys(tmp_path / "net")
    assert "\n" not in str(e.value)


def test_kept_keys_are_used_at_the_next_lab_up_and_made_anew_when_unreadable_or_expiring(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = tornet.make_keys(tmp_path / "up1", cache)
    assert {p.name for p in cache.iterdir()} == {nickname for nickname, _ in A.TOR_NETWORK}
    # the next lab up: the same authorities, from the kept keys, in a new state directory
    assert tornet.make_keys(tmp_path / "up2", cache) == first
    assert (tmp_path / "up2" / "labauth1" / "keys" / "authority_certificate").is_file()
    # one authority's kept certificate lost, another's about to expire: those two are made anew, and kept
    (cache / "labauth1" / "keys" / "authority_certificate").unlink()
    cert = cache / "labauth2" / "keys" / "authority_certificate"
    cert.write_text(re.sub(r"^dir-key-expires .*$", "dir-key-expires 2026-01-01 00:00:00", cert.read_text(),
                           flags=re.MULTILINE))
    third = tornet.make_keys(tmp_path / "up3", cache)
    assert third[2] == first[2]
    assert third[0].v3ident != first[0].v3ident and third[1].v3ident != first[1].v3ident
    assert tornet.make_keys(tmp_path / "up4", cache) == third


def test_restore_gives_a_fresh_directory_with_only_the_kept_keys(tmp_path: Path) -> None:
    home, cache = tmp_path / "home", tmp_path / "cache"
    assert tornet.restore(home, cache) is False and list(home.iterdir()) == []
    (home / "keys").mkdir()
    (home / "keys" / "secret_id_key").write_text("k")
    (home / "pt_state").mkdir()
    (home / "pt_state" / "obfs4_state.json").write_text("{}")
    (home / "cached-consensus").write_text("old")  # state of the last run: not kept
    tornet.keep(home, cache)
    assert tornet.restore(home, cache) is True
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*")) == [
        "keys", "keys/secret_id_key", "pt_state", "pt_state/obfs4_state.json"]
    assert home.stat().st_mode & 0o077 == 0


FLAGS = "Exit Fast Guard HSDir Running Stable V2Dir Valid"


def _consensus(flags: list[str]) -> str:
    """A microdescriptor consensus as tor caches it, one relay per entry of ``flags`` (its "s" line)."""
    lines = ["network-status-version 3 microdesc", "vote-status consensus", "valid-after 2026-12-03 11:12:36"]
    for i, f in enumerate(flags):
        lines += [f"r lab{i} AAAAAAAAAAAAAAAAAAAAAAAAAAA 2026-12-03 11:12:30 198.19.3.{11 + i} 9001 0",
                  "m sha256digest", f"s {f}", "v Tor 0.4.9.11", "pr Cons=1-2", "w Bandwidth=0 Unmeasured=1"]
    return "\n".join([*lines, "directory-footer", "directory-signature sha256 X Y", ""])


def _microdescs(count: int) -> str:
    """Microdescriptors as tor caches them, ``count`` of them (each begins with its onion-key)."""
    return "".join(f"@last-listed 2026-12-03 11:12:36\nonion-key\nntor-onion-key k{i}=\nid ed25519 e{i}\n"
                   for i in range(count))


def test_the_network_is_ready_when_every_directory_cache_serves_every_relay_and_its_microdescriptor(
        tmp_path: Path) -> None:
    """A client that got the network's first consensus, made before every relay had uploaded its descriptor (one
    relay, no exit), waited at 75% for the next one: the demo read that as Tor blocked without a censor. And one
    that asked a relay with no consensus yet for the microdescriptors got 404, and took 27.5 s."""
    authorities = [tmp_path / nickname for nickname, _ in A.TOR_NETWORK]
    relays = [tmp_path / nickname for nickname, _ in A.TOR_NETWORK_RELAYS]
    for home in (*authorities, *relays):
        home.mkdir()
        (home / tornet.MICRODESCS[1]).write_text(_microdescs(tornet.RELAY_COUNT))
    for home in relays:
        (home / tornet.CONSENSUS).write_text(_consensus([FLAGS] * tornet.RELAY_COUNT))
    assert tornet.consensus_relays(tmp_path) == 0  # no consensus yet
    for home in authorities[:2]:
        (home / tornet.CONSENSUS).write_text(_consensus([FLAGS] * tornet.RELAY_COUNT))
    assert tornet.consensus_relays(tmp_path) == 0  # one authority has none: a client may ask that one
    (authorities[2] / tornet.CONSENSUS).write_text(_consensus([FLAGS]))
    assert tornet.consensus_relays(tmp_path) == 1  # the first consensus, made too early: the fewest count
    (authorities[2] / tornet.CONSENSUS).write_text(_consensus([FLAGS] * (tornet.RELAY_COUNT - 1) + ["Fast Valid"]))
    assert tornet.consensus_relays(tmp_path) == tornet.RELAY_COUNT - 1  # a relay not Running does not count
    (authorities[2] / tornet.CONSENSUS).write_text(_consensus([FLAGS] * (tornet.RELAY_COUNT - 1) + ["Running"]))
    assert tornet.consensus_relays(tmp_path) == tornet.RELAY_COUNT - 1  # nor one not Valid
    (authorities[2] / tornet.CONSENSUS).write_text(_consensus([FLAGS] * tornet.RELAY_COUNT))
    assert tornet.consensus_relays(tmp_path) == tornet.RELAY_COUNT
    assert tornet.wait_for_consensus(tmp_path, 0.01)
    # a relay is a directory cache too: one with no consensus yet, or without every microdescriptor, answers 404
    (relays[1] / tornet.CONSENSUS).unlink()
    assert tornet.consensus_relays(tmp_path) == 0
    (relays[1] / tornet.CONSENSUS).write_text(_consensus([FLAGS] * tornet.RELAY_COUNT))
    (relays[1] / tornet.MICRODESCS[1]).write_text(_microdescs(2))
    assert tornet.consensus_relays(tmp_path) == 2
    (relays[1] / tornet.MICRODESCS[1]).unlink()
    assert tornet.consensus_relays(tmp_path) == 0
    # tor compacts the journal (.new) into the cache file: both count
    (relays[1] / tornet.MICRODESCS[0]).write_text(_microdescs(3))
    (relays[1] / tornet.MICRODESCS[1]).write_text(_microdescs(tornet.RELAY_COUNT - 3))
    assert tornet.consensus_relays(tmp_path) == tornet.RELAY_COUNT
    # a bridge client reads the bridge's copy: once the bridge is there, its consensus counts too
    (tmp_path / tornet.BRIDGE).mkdir()
    assert tornet.consensus_relays(tmp_path) == 0
    t = time.monotonic()
    assert not tornet.wait_for_consensus(tmp_path, 0.5)
    assert 0.5 <= time.monotonic() - t < 5
    (tmp_path / tornet.BRIDGE / tornet.CONSENSUS).write_bytes(_consensus([FLAGS] * tornet.RELAY_COUNT).encode()
                                                                 + b"\xff garbage \x00\n")
    (tmp_path / tornet.BRIDGE / tornet.MICRODESCS[1]).write_text(_microdescs(tornet.RELAY_COUNT))
    assert tornet.consensus_relays(tmp_path) == tornet.RELAY_COUNT


def test_the_labs_helper_connects_to_nothing_outside_the_lab() -> None:
    from tamperscope.lab import manager

    argv = manager._helper_command()
    assert argv is not None
    assert argv[argv.index("--only-net") + 1] == A.LAB_NET == "198.18.0.0/15"


def test_a_failed_command_says_why_before_command_failed() -> None:
    from tamperscope.lab import manager

    said = manager._why('Cannot create namespace file "/run/netns/ts-access": File exists\nCommand failed -:2\n')
    assert said == 'Cannot create namespace file "/run/netns/ts-access": File exists / Command failed -:2'
    assert manager._why("x" * 1000).startswith("…") and len(manager._why("x" * 1000)) == 401


def test_a_large_profile_gives_the_services_longer_to_start(tmp_path: Path) -> None:
    """Each service parses the profile: a 4 MiB one took 23 s to come up, past the 20 s every lab had (QA)."""
    from types import SimpleNamespace

    from tamperscope.lab import manager

    small, large = tmp_path / "small.toml", tmp_path / "large.toml"
    small.write_text('name = "x"\n')
    large.write_bytes(b"#" * (4 << 20))
    assert manager.ready_timeout(SimpleNamespace(source=str(small))) == pytest.approx(20.0, abs=0.01)  # type: ignore[arg-type]
    assert manager.ready_timeout(SimpleNamespace(source=str(large))) == pytest.approx(80.0)  # type: ignore[arg-type]
    assert manager.ready_timeout(SimpleNamespace(source="")) == 20.0  # type: ignore[arg-type]
