"""The lab's own Tor network: real tor relays that vanilla_tor bootstraps against.

Three directory authorities (`addresses.TOR_NETWORK`), each also a relay with the Guard and Exit flags, and two
more relays (`addresses.TOR_NETWORK_RELAYS`), so that a client can fetch the consensus and build a three-hop
circuit even when one relay is missing from a consensus. Debian's tor in TestingTorNetwork mode, with votes every 10 s (its least: a vote's and its
distribution's delays must stay under half the interval); the first consensus appears about 20 s after they
start, and a client started before that waits for it. Their keys are made at each `lab up` (``tor-gencert``
for the authority keys, ``tor --list-fingerprint`` for the relay keys), in the lab's state directory.

An exit may connect only to lab addresses (198.18.0.0/15). A client takes `client_config`, the lines that point
it at these authorities instead of Tor's (the lab sets $TAMPERSCOPE_TOR_NETWORK to a file holding them).

A fourth tor is a bridge of this network (`bridge_config`, at `addresses.TOR_BRIDGE`), which clients reach through
obfs4 (Debian's obfs4proxy, its cert made at each `lab up`): its line (`bridge_line`) is in ``tor-bridges.txt``
in the lab's directory, for ``vanilla_tor --tor-bridges``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import addresses as A

VOTING = ("TestingV3AuthInitialVotingInterval 12\nTestingV3AuthInitialVoteDelay 3\nTestingV3AuthInitialDistDelay 2\n"
          "V3AuthVotingInterval 12\nV3AuthVoteDelay 3\nV3AuthDistDelay 2\n")
LAB_NET = "198.18.0.0/15"
KEYGEN_TIMEOUT = 60.0  # seconds for one authority's keys (RSA-3072: about a second here)


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


def make_keys(root: Path) -> list[Authority]:
    """Each authority's keys under ``root/NICKNAME``: the authority identity, signing key and certificate (valid
    12 months), and the relay's identity; the three at once (an RSA-3072 key takes a core about 1.5 s)."""
    with ThreadPoolExecutor(len(A.TOR_NETWORK)) as pool:
        return list(pool.map(lambda named: _keys(root, *named), A.TOR_NETWORK))


def _keys(root: Path, nickname: str, ip: str) -> Authority:
    home = root / nickname
    shutil.rmtree(home, ignore_errors=True)  # tor-gencert makes new keys only where none are
    keys = home / "keys"
    keys.mkdir(parents=True, mode=0o700, exist_ok=True)
    home.chmod(0o700)
    _run(["tor-gencert", "--create-identity-key", "-m", "12", "-a", f"{ip}:{A.TOR_NETWORK_DIR_PORT}",
          "-i", str(keys / "authority_identity_key"), "-s", str(keys / "authority_signing_key"),
          "-c", str(keys / "authority_certificate"), "--passphrase-fd", "0"], stdin="\n")
    cert = (keys / "authority_certificate").read_text()
    v3 = re.search(r"^fingerprint ([0-9A-F]{40})$", cert, re.MULTILINE)
    listed = _run(["tor", "--list-fingerprint", "--DataDirectory", str(home), "--ORPort",
                   f"{ip}:{A.TOR_NETWORK_OR_PORT}", "--Address", ip, "--ignore-missing-torrc",
                   "--defaults-torrc", str(home / "none"), "-f", str(home / "none"), "--quiet"])
    found = re.search(r"^\S+ ((?:[0-9A-F]{4} ){9}[0-9A-F]{4})$", listed, re.MULTILINE)
    relay = found.group(1).replace(" ", "") if found else ""
    if v3 is None or not relay:
        raise TorNetError(f"{nickname}: no fingerprint in tor's output: {listed.strip()[:120]!r}")
    return Authority(nickname, ip, v3.group(1), relay)


def client_config(authorities: list[Authority]) -> str:
    """What a client adds to its torrc to use this network (vanilla_tor's ``--tor-network FILE``)."""
    return ("# the lab's Tor network (tamperscope lab): its directory authorities, in TestingTorNetwork mode\n"
            "TestingTorNetwork 1\n" + "".join(f"{a.line}\n" for a in authorities))


def relay_config(nickname: str, ip: str, authorities: list[Authority], home: Path) -> str:
    """One of the network's relays that are no authority (`addresses.TOR_NETWORK_RELAYS`): an exit to lab
    addresses only, as the authorities are."""
    return (f"TestingTorNetwork 1\n{VOTING}AssumeReachable 1\n"
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
    return (f"TestingTorNetwork 1\n{VOTING}AssumeReachable 1\n"
            f"DataDirectory {home}\nNickname labbridge\nAddress {ip}\nOutboundBindAddress {ip}\n"
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
    return (f"TestingTorNetwork 1\n{VOTING}"
            "AssumeReachable 1\nTestingDirAuthVoteGuard *\nTestingDirAuthVoteExit *\nTestingDirAuthVoteHSDir *\n"
            "TestingMinExitFlagThreshold 0\n"
            f"DataDirectory {home}\nNickname {me.nickname}\nAddress {me.ip}\nOutboundBindAddress {me.ip}\n"
            f"ORPort {me.ip}:{A.TOR_NETWORK_OR_PORT}\nDirPort {me.ip}:{A.TOR_NETWORK_DIR_PORT}\nSocksPort 0\n"
            "AuthoritativeDirectory 1\nV3AuthoritativeDirectory 1\nContactInfo tamperscope lab\n"
            f"ExitPolicy accept {LAB_NET}:*\nExitPolicy reject *:*\n"
            "Log notice stdout\nSafeLogging 1\nRunAsDaemon 0\n"
            + "".join(f"{a.line}\n" for a in authorities))


__all__ = ["Authority", "TorNetError", "authority_config", "bridge_config", "bridge_line", "client_config",
           "make_keys", "relay_config"]
