"""wireguard: can this network reach a WireGuard server, and does DPI pick out WireGuard's handshake?

WireGuard is what many commercial and self-hosted VPNs speak. Censors block it by the first datagram of a flow:
a handshake initiation is 148 bytes and starts with ``01 00 00 00``, which DPI spots without any key (Russia's
TSPU from 2023, Iran's and China's filters). OONI's probe has no stable test of it.

A WireGuard server answers only peers it knows, so the nettest needs a client configuration, the file a VPN
provider or ``wg-quick`` gives (``--wg-config FILE``: ``[Interface] PrivateKey``, and per ``[Peer]`` its
``PublicKey``, ``Endpoint`` and optional ``PresharedKey``). Its keys stay in memory: neither they nor the
client's public key are recorded. The inputs are the peers' endpoints, ``wireguard://HOST:PORT``; without
``-i``, every peer of the file is measured once.

For each endpoint (a name is resolved first, its ``queries`` recorded):
1. The handshake, as a WireGuard client starts it: initiations over UDP until the server's response opens
   with our keys (a cookie reply also counts: the server is under load, and was reached).
2. Only if that failed without a DNS failure: the same handshake from a new UDP flow whose first datagrams are
   junk (random bytes no WireGuard message starts with, which the server drops unread), as AmneziaWG's clients
   send. If this gets through, DPI judged the flow by its first datagram: the measurement says so, and the
   verdict is ``udp.drop`` with high confidence. If neither did, the server may be down or the path blocks it
   by address: an anomaly that names no mechanism for sure.

``test_keys``: ``endpoint`` (as given), ``failure`` (the plain handshake's, null when it succeeded; a DNS
failure when the name did not resolve), ``x_address`` (``ip:port``), ``x_handshake`` and ``x_junk_first``
(null when not tried), each ``{failure, answer, initiations, junk, ignored, t}``, ``queries`` and
``network_events`` (sizes and times only), then the verdict's keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..model.wgverdict import wireguard_verdict
from ..netx import Trace
from ..netx.wireguard import Handshake, Keys, handshake
from ..wire.wireguard import WireGuardError, key_from_text
from .base import Context, NettestError, first_address

NAME = "wireguard"
VERSION = "0.1.0"
NEEDS_INPUT = True
DEFAULT_PORT = 51820
JUNK = 3  # junk datagrams before the retry's first initiation (AmneziaWG's default Jc is 4; any number does)
MAX_PEERS = 64
_SECTION = re.compile(r"\[([A-Za-z]+)\]")


class Config:
    """``--wg-config FILE`` (``options["wireguard"]``, a `WgConfig`): the client's keys and its peers."""


@dataclass(frozen=True)
class Peer:
    endpoint: str  # HOST:PORT ([v6]:PORT), as the file gives it
    host: str
    port: int
    public: bytes
    psk: bytes = field(repr=False)  # secret: never printed, never recorded


@dataclass(frozen=True)
class WgConfig:
    private: bytes = field(repr=False)  # secret: never printed, never recorded
    peers: tuple[Peer, ...] = ()

    def input_of(self, peer: Peer) -> str:
        return f"wireguard://{peer.endpoint}"

    def peer(self, input: str) -> Peer:
        host, port = endpoint_of(input)
        for p in self.peers:
            if (p.host.lower(), p.port) == (host.lower(), port):
                return p
        raise NettestError(f"no [Peer] of the WireGuard configuration has the endpoint {input!r}")


def endpoint_of(input: str) -> tuple[str, int]:
    """(host, port) of ``wireguard://HOST[:PORT]`` or ``HOST[:PORT]``; NettestError when it is neither."""
    spec = input.strip()
    wrong = f"not a WireGuard endpoint (wireguard://HOST[:PORT]): {input!r}"
    if "://" in spec and not spec.lower().startswith("wireguard://"):
        raise NettestError(wrong)
    try:
        parts = urlsplit(spec if "://" in spec else f"wireguard://{spec}")
        port = DEFAULT_PORT if parts.port is None else parts.port
        host = (parts.hostname or "").rstrip(".")
    except ValueError:
        raise NettestError(wrong) from None
    if not host or not port or parts.path not in ("", "/") or parts.query or parts.fragment or parts.username \
            or any(c.isspace() for c in host) or len(host) > 253 or ".." in host:
        raise NettestError(wrong)
    return host, port


def check_input(input: str) -> None:
    endpoint_of(input)


def load_config(text: str) -> WgConfig:
    """A wg-quick configuration: one ``[Interface]`` with its ``PrivateKey``, and ``[Peer]`` sections with a
    ``PublicKey`` and an ``Endpoint`` each (a peer without an endpoint cannot be reached first: skipped).
    Other keys (Address, DNS, AllowedIPs, …) are not needed and not read. NettestError names the line, never a
    key's value."""
    private: bytes | None = None
    peers: list[Peer] = []
    section: str | None = None
    current: dict[str, tuple[int, str]] = {}

    def close() -> None:
        if section == "peer" and "endpoint" in current:
            n, public = current.get("publickey", (0, ""))
            if not public:
                raise NettestError(f"line {current['endpoint'][0]}: a [Peer] with an Endpoint has no PublicKey")
            line, endpoint = current["endpoint"]
            try:
                host, port = endpoint_of(endpoint)
            except NettestError:
                raise NettestError(f"line {line}: Endpoint is not HOST:PORT") from None
            psk_line, psk = current.get("presharedkey", (0, ""))
            peers.append(Peer(endpoint.strip(), host, port, _key(public, n, "PublicKey"),
                              _key(psk, psk_line, "PresharedKey") if psk else bytes(32)))

    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = _SECTION.fullmatch(line)
        if m:
            close()
            section, current = m.group(1).lower(), {}
            if section not in ("interface", "peer"):
                raise NettestError(f"line {n}: unknown section [{m.group(1)}]")
            continue
        key, eq, value = line.partition("=")
        if not eq or section is None:
            raise NettestError(f"line {n}: not KEY = VALUE inside [Interface] or [Peer]")
        key = key.strip().lower()
        current[key] = (n, value.strip())
        if section == "interface" and key == "privatekey":
            private = _key(value, n, "PrivateKey")
        if len(peers) > MAX_PEERS:
            raise NettestError(f"more than {MAX_PEERS} peers")
    close()
    if private is None:
        raise NettestError("no [Interface] PrivateKey: the server answers only a client it knows")
    if not peers:
        raise NettestError("no [Peer] with an Endpoint")
    return WgConfig(private, tuple(peers[:MAX_PEERS]))


def _key(text: str, line: int, what: str) -> bytes:
    try:
        return key_from_text(text, what)
    except WireGuardError as e:
        raise NettestError(f"line {line}: {e}") from None


def _record(h: Handshake) -> dict[str, Any]:
    return {"failure": h.failure, "answer": h.answer, "initiations": h.initiations, "junk": h.junk,
            "ignored": h.ignored, "t": h.t}


async def run(input: str | None, ctx: Context) -> dict[str, Any]:
    config = ctx.options.get("wireguard")
    if not isinstance(config, WgConfig):
        raise NettestError("wireguard needs --wg-config FILE (a WireGuard client configuration)")
    if not input:
        raise NettestError("wireguard needs an input: wireguard://HOST[:PORT] of a peer of --wg-config")
    peer = config.peer(input)
    keys = Keys(config.private, peer.public, peer.psk)
    trace = Trace(record_io=bool(ctx.options.get("network_events", True)))
    t = ctx.timeouts
    tk: dict[str, Any] = {"endpoint": peer.endpoint, "failure": None, "x_address": None, "x_handshake": None,
                          "x_junk_first": None}
    async with trace:
        ip, tk["failure"] = await first_address(peer.host, ctx, trace)
        if ip is not None:
            async with ctx.limiter.hold([ip]):
                plain = await handshake(ip, peer.port, keys, trace=trace, timeout=t.connect)
                tk.update(failure=plain.failure, x_address=plain.address, x_handshake=_record(plain))
                if plain.failure is not None:
                    junk = await handshake(ip, peer.port, keys, trace=trace, timeout=t.connect, junk=JUNK,
                                           tags=("junk",))
                    tk["x_junk_first"] = _record(junk)
    keys_out = trace.test_keys()
    tk["queries"] = keys_out["queries"]
    tk["network_events"] = keys_out["network_events"]
    return tk


def finish(measurement: dict[str, Any], ctx: Context) -> None:
    measurement["test_keys"].update(wireguard_verdict(measurement).to_test_keys())
