"""The lab's own Tor network: real tor relays that vanilla_tor bootstraps against.

Three directory authorities (`addresses.TOR_NETWORK`), each also a relay with the Guard and Exit flags, and two
more relays (`addresses.TOR_NETWORK_RELAYS`), so that a client can fetch the consensus and build a three-hop
circuit even when one relay is missing from a consensus. Debian's tor in TestingTorNetwork mode, with votes every
12 s (a vote's and its distribution's delays must stay under half the interval); the first consensus appears
about 20 s after they start, and a client started before that waits for it. That first one may list only some
of the relays, and a relay may have no consensus for up to a minute more: `wait_for_consensus` waits until every
directory of the network serves them all. Their keys are made at the first `lab up` (``tor-gencert`` for the
authority keys, ``tor --list-fingerprint`` for the relay keys, whose fingerprints are read from the kept keys
after that) and kept in `KEY_CACHE` for the next ones
(making them took about 1.7 s of each `lab up`, which the tests bring up some 80 times); an authority
certificate that expires within `RENEW_BEFORE_DAYS`, or keys tor cannot read, are made anew.

An exit may connect only to lab addresses (198.18.0.0/15). A client takes `client_config`, the lines that point
it at these authorities instead of Tor's (the lab sets $TAMPERSCOPE_TOR_NETWORK to a file holding them).

A fourth tor is a bridge of this network (`bridge_config`, at `addresses.TOR_BRIDGE`), which clients reach through
obfs4 (Debian's obfs4proxy, its cert kept with its keys): its line (`bridge_line`) is in ``tor-bridges.txt``
in the lab's directory, for ``vanilla_tor --tor-bridges``.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from . import addresses as A

VOTING = ("TestingV3AuthInitialVotingInterval 12\nTestingV3AuthInitialVoteDelay 3\nTestingV3AuthInitialDistDelay 2\n"
          "V3AuthVotingInterval 12\nV3AuthVoteDelay 3\nV3AuthDistDelay 2\n")
LAB_NET = "198.18.0.0/15"
# No GeoIP database: the lab's tors count no client's country, and each of the six parsed Debian's two files at every
# start (about 2 s of the lab's 5 s up on two cores, before the bridge registered obfs4)
NO_GEOIP = "GeoIPFile /dev/null\nGeoIPv6File /dev/null\n"
KEYGEN_TIMEOUT = 60.0  # seconds for one authority's keys (RSA-3072: about a second here)
DIRECTORY = "tor"  # the network's directory (its tors' homes) in the lab's state directory
BRIDGE = "labbridge"  # the bridge's nickname, and its home under the network's directory
KEY_CACHE = Path("/var/cache/tamperscope-lab/tor")  # each tor's keys, by nickname, kept between lab ups
KEPT = ("keys", "pt_state")  # what of a tor's data directory is kept: its keys, and obfs4proxy's (the bridge's cert)
RENEW_BEFORE_DAYS = 30


class TorNetError(Exception):
    """The network could not be made (a tool missing or failing): one line."""


@dataclass(frozen=True)
class Authority:
    nickname: str
    ip: str
    v3ident: str  # the authority key's fingerprint
    fingerprint: str  # the relay identity's

    @property
    def line(self) -> str:
        return (f"DirAuthority {self.nickname} orport={A.TOR_NETWORK_OR_PORT} no-v2 v3ident={self.v3ident} "
                f"{self.ip}:{A.TOR_NETWORK_DIR_PORT} {self.fingerprint}")


def _run(args: list[str], stdin: str | None = None) -> str:
    try:
        done = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=KEYGEN_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise TorNetError(f"{args[0]}: {e}") from None
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise TorNetError(f"{args[0]} exited {done.returncode}: {said[0]}")
    return done.stdout


def restore(home: Path, cache: Path | None) -> bool:
    """A new data directory ``home`` for one tor, holding the keys kept in ``cache`` (if any); True if it got some."""
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True, mode=0o700, exist_ok=True)
    home.chmod(0o700)
    got = False
    for name in KEPT:
        if cache is not None and (cache / name).is_dir():
            shutil.copytree(cache / name, home / name)
            got = True
    return got


def keep(home: Path, cache: Path) -> None:
    """Keep ``home``'s keys in ``cache`` for the next lab up (replaced whole, so never half of two sets)."""
    tmp = cache.with_name(cache.name + ".new")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True, mode=0o700)
    for name in KEPT:
        if (home / name).is_dir():
            shutil.copytree(home / name, tmp / name)
    shutil.rmtree(cache, ignore_errors=True)
    tmp.rename(cache)


def make_keys(root: Path, cache: Path | None = None) -> list[Authority]:
    """Each authority's keys under ``root/NICKNAME``: the authority identity, signing key and certificate (valid
    12 months), and the relay's identity; the three at once (an RSA-3072 key takes a core about 1.5 s). With
    ``cache``, the keys kept there under each nickname are used, and new ones are kept there."""
    with ThreadPoolExecutor(len(A.TOR_NETWORK)) as pool:
        return list(pool.map(lambda named: _kept_keys(root, cache, *named), A.TOR_NETWORK))


def _kept_keys(root: Path, cache: Path | None, nickname: str, ip: str) -> Authority:
    home = root / nickname
    kept = None if cache is None else cache / nickname
    if restore(home, kept):
        try:
            return _keys(home, nickname, ip, fresh=False)
        except TorNetError:
            pass  # unreadable or expiring: made anew below
    restore(home, None)
    made = _keys(home, nickname, ip, fresh=True)
    if kept is not None:
        keep(home, kept)
    return made


def _expiring(cert: str) -> bool:
    found = re.search(r"^dir-key-expires (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)$", cert, re.MULTILINE)
    if found is None:
        return True
    expires = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
    return expires - datetime.now(timezone.utc) < timedelta(days=RENEW_BEFORE_DAYS)


def _keys(home: Path, nickname: str, ip: str, *, fresh: bool) -> Authority:
    keys = home / "keys"
    if fresh:
        _make_authority_keys(keys, ip)
    try:
        cert = (keys / "authority_certificate").read_text()
    except OSError as e:
        raise TorNetError(f"{nickname}: no authority certificate: {e.strerror}") from None
    if not fresh and _expiring(cert):
        raise TorNetError(f"{nickname}: the kept authority certificate expires soon")
    v3 = re.search(r"^fingerprint ([0-9A-F]{40})$", cert, re.MULTILINE)
    relay = relay_fingerprint(keys / "secret_id_key")
    listed = ""
    if relay is None:  # no relay identity yet: tor makes one, and says its fingerprint
        listed = _run(["tor", "--list-fingerprint", "--DataDirectory", str(home), "--ORPort",
                       f"{ip}:{A.TOR_NETWORK_OR_PORT}", "--Address", ip, "--ignore-missing-torrc",
                       "--defaults-torrc", str(home / "none"), "-f", str(home / "none"), "--quiet",
                       "--GeoIPFile", "/dev/null", "--GeoIPv6File", "/dev/null"])
        found = re.search(r"^\S+ ((?:[0-9A-F]{4} ){9}[0-9A-F]{4})$", listed, re.MULTILINE)
        relay = found.group(1).replace(" ", "") if found else None
    if v3 is None or not relay:
        raise TorNetError(f"{nickname}: no fingerprint in tor's output: {listed.strip()[:120]!r}")
    return Authority(nickname, ip, v3.group(1), relay)


def relay_fingerprint(secret_id_key: Path) -> str | None:
    """A relay's fingerprint from its identity key as tor keeps it (``keys/secret_id_key``): the SHA-1 of the
    public key's DER encoding (PKCS#1), in upper-case hex, as tor-spec defines it. None without a readable
    RSA key there. The same as `tor --list-fingerprint` says, without starting a tor (0.6-0.8 s of a core
    each, three at every lab up)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        key = serialization.load_pem_private_key(secret_id_key.read_bytes(), None)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, rsa.RSAPrivateKey):
        return None
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return hashlib.sha1(der).hexdigest().upper()


def _make_authority_keys(keys: Path, ip: str) -> None:
    keys.mkdir(parents=True, mode=0o700, exist_ok=True)
    _run(["tor-gencert", "--create-identity-key", "-m", "12", "-a", f"{ip}:{A.TOR_NETWORK_DIR_PORT}",
          "-i", str(keys / "authority_identity_key"), "-s", str(keys / "authority_signing_key"),
          "-c", str(keys / "authority_certificate"), "--passphrase-fd", "0"], stdin="\n")


def client_config(authorities: list[Authority]) -> str:
    """What a client adds to its torrc to use this network (vanilla_tor's ``--tor-network FILE``)."""
    return ("# the lab's Tor network (tamperscope lab): its directory authorities, in TestingTorNetwork mode\n"
            "TestingTorNetwork 1\n" + "".join(f"{a.line}\n" for a in authorities))


def relay_config(nickname: str, ip: str, authorities: list[Authority], home: Path) -> str:
    """One of the network's relays that are no authority (`addresses.TOR_NETWORK_RELAYS`): an exit to lab
    addresses only, as the authorities are."""
    return (f"TestingTorNetwork 1\n{VOTING}{NO_GEOIP}AssumeReachable 1\n"
            f"DataDirectory {home}\nNickname {nickname}\nAddress {ip}\nOutboundBindAddress {ip}\n"
            f"ORPort {ip}:{A.TOR_NETWORK_OR_PORT}\nSocksPort 0\n"
            f"ExitPolicy accept {LAB_NET}:*\nExitPolicy reject *:*\n"
            "Log notice stdout\nSafeLogging 1\nRunAsDaemon 0\n"
            + "".join(f"{a.line}\n" for a in authorities))


def bridge_config(authorities: list[Authority], home: Path, obfs4proxy: str) -> str:
    """A bridge of the network: a relay that publishes no descriptor (a client learns it from its bridge line),
    caches the directory for its clients, exits nowhere, and takes them over obfs4 only (its OR port is on the
    same address, for obfs4proxy to hand connections to)."""
    ip = A.TOR_BRIDGE
    return (f"TestingTorNetwork 1\n{VOTING}{NO_GEOIP}AssumeReachable 1\n"
            f"DataDirectory {home}\nNickname {BRIDGE}\nAddress {ip}\nOutboundBindAddress {ip}\n"
            f"ORPort {ip}:{A.TOR_NETWORK_OR_PORT}\nSocksPort 0\nBridgeRelay 1\nPublishServerDescriptor 0\n"
            "ExitPolicy reject *:*\n"
            f"ServerTransportPlugin obfs4 exec {obfs4proxy}\n"
            f"ServerTransportListenAddr obfs4 {ip}:{A.TOR_BRIDGE_OBFS4_PORT}\nExtORPort auto\n"
            "Log notice stdout\nSafeLogging 1\nRunAsDaemon 0\n"
            + "".join(f"{a.line}\n" for a in authorities))


def bridge_line(home: Path) -> str | None:
    """The bridge's line as Tor Browser takes it (``Bridge obfs4 ADDRESS FINGERPRINT cert=… iat-mode=…``), once
    tor wrote its fingerprint and obfs4proxy its cert; None before."""
    try:
        fingerprint = (home / "fingerprint").read_text().split()
        said = (home / "pt_state" / "obfs4_bridgeline.txt").read_text()
    except OSError:
        return None
    found = re.search(r"cert=(\S+) iat-mode=(\d)", said)
    if found is None or len(fingerprint) != 2 or not re.fullmatch(r"[0-9A-F]{40}", fingerprint[1]):
        return None
    return (f"Bridge obfs4 {A.TOR_BRIDGE}:{A.TOR_BRIDGE_OBFS4_PORT} {fingerprint[1]} cert={found.group(1)} "
            f"iat-mode={found.group(2)}")


def authority_config(me: Authority, authorities: list[Authority], home: Path) -> str:
    return (f"TestingTorNetwork 1\n{VOTING}{NO_GEOIP}"
            "AssumeReachable 1\nTestingDirAuthVoteGuard *\nTestingDirAuthVoteExit *\nTestingDirAuthVoteHSDir *\n"
            "TestingMinExitFlagThreshold 0\n"
            f"DataDirectory {home}\nNickname {me.nickname}\nAddress {me.ip}\nOutboundBindAddress {me.ip}\n"
            f"ORPort {me.ip}:{A.TOR_NETWORK_OR_PORT}\nDirPort {me.ip}:{A.TOR_NETWORK_DIR_PORT}\nSocksPort 0\n"
            "AuthoritativeDirectory 1\nV3AuthoritativeDirectory 1\nContactInfo tamperscope lab\n"
            f"ExitPolicy accept {LAB_NET}:*\nExitPolicy reject *:*\n"
            "Log notice stdout\nSafeLogging 1\nRunAsDaemon 0\n"
            + "".join(f"{a.line}\n" for a in authorities))


# --------------------------------------------------------------------------- the network's consensus

CONSENSUS = "cached-microdesc-consensus"  # the consensus a tor serves to clients (and a bridge to its own)
MICRODESCS = ("cached-microdescs", "cached-microdescs.new")  # the microdescriptors it serves (one onion-key each)
RELAY_COUNT = len(A.TOR_NETWORK) + len(A.TOR_NETWORK_RELAYS)  # the relays a full consensus lists


def consensus_relays(root: Path) -> int:
    """How many relays every directory cache of the network can serve a client: the fewest, over the authorities,
    the relays and the bridge (where there is one), of the relays its ``CONSENSUS`` lists as Running and Valid and
    of the microdescriptors it holds (``MICRODESCS``); 0 while one has no consensus.

    A new network's first consensus can be made before every relay has uploaded its descriptor. A client that
    gets one listing a single relay has no exit and waits at 75% ("enough_dirinfo") for the next one, 20 s and
    more. A client asks any relay of the consensus for the microdescriptors, and a relay that has no consensus
    yet (up to a minute after the authorities have one) answers 404: the client waits, and a first client took
    27.5 s to bootstrap. Once every cache serves them all, a new client gets to 100% in a few seconds. A bridge
    client reads the bridge's copy, so it counts too."""
    homes = [root / nickname for nickname, _ in (*A.TOR_NETWORK, *A.TOR_NETWORK_RELAYS)]
    if (root / BRIDGE).is_dir():
        homes.append(root / BRIDGE)
    fewest = RELAY_COUNT
    for home in homes:
        try:
            text = (home / CONSENSUS).read_text(encoding="ascii", errors="replace")
        except OSError:
            return 0
        listed = sum(1 for line in text.splitlines()
                     if line.startswith("s ") and {"Running", "Valid"} <= set(line.split()))
        held = 0
        for name in MICRODESCS:
            try:
                held += sum(1 for line in (home / name).read_text(encoding="ascii", errors="replace").splitlines()
                            if line.startswith("onion-key"))
            except OSError:
                pass
        fewest = min(fewest, listed, held)
    return fewest


def wait_for_consensus(root: Path, timeout: float) -> bool:
    """Wait, at most ``timeout`` seconds, until every directory cache of the network serves a consensus listing
    every relay, and their microdescriptors (`consensus_relays`); whether they do."""
    deadline = time.monotonic() + timeout
    while consensus_relays(root) < RELAY_COUNT:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.25)
    return True


__all__ = ["Authority", "TorNetError", "authority_config", "bridge_config", "bridge_line", "client_config",
           "consensus_relays", "make_keys", "relay_config", "relay_fingerprint", "wait_for_consensus"]
