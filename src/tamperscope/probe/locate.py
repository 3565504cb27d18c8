"""`tamperscope locate URL`: find the hop where interference happens (CenTrace's method).

1. The plain path: ICMP traceroute to the server's real address (from DNS over
   TCP, which on-path DNS injectors do not touch), every TTL's probe at once.
2. A control sweep, then a target sweep: for TTL 1, 2, …, a fresh TCP
   connection, then the trigger (the HTTP request, or the ClientHello with
   the SNI) sent with that TTL; what comes back is captured on raw sockets.
   With `--layer quic` the trigger is a QUIC Initial (the ClientHello with the
   SNI inside, as HTTP/3 sends it) in one UDP datagram to port 443. With
   `--layer ech` it is a ClientHello carrying encrypted_client_hello, as echcheck
   sends it: sealed with the site's published ECH config (its HTTPS record), the
   config's public name as the outer SNI; else GREASE with the URL's name (the
   control sweep's is GREASE with the control name): where ECH is blocked
   (echcheck's finding), the hop that blocks it.
   For names whose DNS is tampered with, the trigger is a DNS query to the
   public resolver instead. With `--layer tcp` it is the SYN itself, to the
   URL's port (the control: the same address, port 80, or 443 when the URL's
   port is 80): for an address and port that cannot be connected to at all, as
   Tor's OR ports blocked by address; a run of another layer that cannot
   connect while the path reaches the server switches to it by itself. With
   `--layer openvpn` it is OpenVPN's first packet (a client's hard reset, as
   riseupvpn sends it) to the URL's address and port, and the control sweep
   sends the same number of random bytes there: DPI that knows the protocol,
   at any address. With `--layer wireguard` it is a datagram shaped as
   WireGuard's handshake initiation (148 bytes, type 1), each from a new UDP
   flow, to the URL's address and port, and the control sends 148 random bytes
   that no WireGuard message starts with: DPI that drops WireGuard by its first
   datagram, as the wireguard nettest finds.
3. model/location.py decides hop, router, placement and scope; the forged
   packets give the equipment's signature; a forged page is matched against
   the blockpage fingerprints.
Runs repeat until a majority agrees (at least `--runs`). Residual blocking
(the same client and server endpoint blocked for a while after a trigger) would
spoil later runs, so runs may be spread over other addresses that serve the
same names (`--spread`). Needs root; IPv4 only. Asks for informed consent
first, as `tamperscope run` does (`--yes` gives it without the prompt).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import ipaddress
import json
import math
import os
import secrets
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..cli import UsageError
from ..model.failures import failure_class
from ..model.inputs import BadInput, check_host, normal_url, parse_url
from ..model.location import Location, Observation, RunResult, carriers, decide_run, majority, signature, signature_key
from ..model.webparts import idna_host, is_ip
from ..nettests.echconfig import usable_config
from ..netx import Trace, lookup_udp, openvpn, ttlprobe
from ..netx.dns import build_query
from ..netx.quic import initial_datagram
from ..wire import wireguard
from ..wire.ech import ECHConfig, seal_client_hello
from ..wire.tlshello import client_hello, client_hello_with_ech

CONTROL_NAME = "www.example.com"
LAYERS = ("auto", "http", "tls", "ech", "quic", "dns", "tcp", "openvpn", "wireguard")
# The control sweep's trigger for a layer whose trigger carries no name: for OpenVPN's first packet, as many random
# bytes (a length that announces no frame of them, so no DPI reads them as OpenVPN's)
NOISE = "noise"
WG_NOISE = "wg-noise"  # wireguard's control: a datagram of an initiation's size that no WireGuard message starts like
RESIDUAL = "could not connect after an earlier run triggered the censor"
SCOPE_OF_LAYER = {"tcp": "port", "openvpn": "protocol", "wireguard": "protocol"}  # what "the control did not see it" means, by trigger
QUIC_PORT = 443  # HTTP/3's, whatever the URL's scheme
UDP_OR_SYN = ("tcp", "dns", "quic", "wireguard")  # triggers sent without a connection first
# of those, the ones a live server answers (a SYN-ACK or RST, a DNS or QUIC reply): silence at full TTL says
# something. A WireGuard server never answers an initiation it cannot authenticate (QA: a drop was "located" on a
# path slower than --wait, where no rule was)
ANSWERING = ("tcp", "dns", "quic")
THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")  # "this host on this network": never a destination


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("locate", help="find the hop where a URL is interfered with (CenTrace method; root)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", help="the URL to locate interference for")
    p.add_argument("--layer", choices=LAYERS, default="auto",
                   help="what to trigger with (auto: dns if its DNS is tampered with, else the URL's scheme; "
                        "quic: a QUIC Initial to UDP 443, for HTTP/3 that is dropped; ech: a ClientHello with "
                        "Encrypted Client Hello, for ECH that is blocked; tcp: the SYN, for an address and port "
                        "that cannot be connected to, as Tor's OR ports blocked by address; openvpn: OpenVPN's "
                        "first packet to the URL's address and port, for a VPN gateway whose connect succeeds and "
                        "whose OpenVPN does not, as riseupvpn finds; wireguard: WireGuard's handshake initiation to "
                        "the URL's address and UDP port, for a WireGuard server dropped by DPI, as the wireguard "
                        "nettest finds)")
    p.add_argument("--control", default=CONTROL_NAME,
                   help=f"innocent name for the control sweep (default {CONTROL_NAME})")
    p.add_argument("--runs", type=int, default=3, help="runs to make (more if they disagree; default 3)")
    p.add_argument("--max-ttl", type=int, default=12, help="highest TTL to try (default 12)")
    p.add_argument("--wait", type=float, default=0.6,
                   help="seconds to listen after each trigger, and for the traceroute's answers (default 0.6; a long "
                        "path needs more: its own DNS lookups then wait twice this plus 2 s, at least 4)")
    p.add_argument("--server", default=None, metavar="IP",
                   help="send the triggers to this address, not the name's: an in-country server measured from "
                        "outside (CenTrace's own setting; the URL's name still goes in the Host header or SNI)")
    p.add_argument("--spread", nargs="*", default=[], metavar="IP",
                   help="other addresses serving the same names, one per run (not tried when the name's own "
                        "address drops the control name too: a block of that address)")
    p.add_argument("--resolver", default=None,
                   help="public resolver IP; default $TAMPERSCOPE_PUBLIC_RESOLVER or 8.8.8.8")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--yes", "-y", action="store_true", help="consent for this run only, without the prompt (automation; not kept)")
    p.set_defaults(func=run)


def control_port(port: int) -> int:
    """The control sweep's port for `--layer tcp`: the same address, a port a censor has no reason to block."""
    return 443 if port == 80 else 80


def trigger_payload(layer: str, host: str, path: str = "/", ech_config: ECHConfig | None = None) -> bytes:
    # the name as the probe sends it: IDNA (a censor matches ``xn--`` in a Host or SNI, and QUIC's hello takes
    # ASCII only: an IDN URL or --control raised UnicodeEncodeError after the traceroute)
    host = idna_host(host)
    if layer == "http":
        return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Mozilla/5.0\r\nAccept: */*\r\n"
                "Connection: close\r\n\r\n").encode()
    if layer == "tls":
        return client_hello(host)
    if layer == "ech":
        return seal_client_hello(ech_config, host).record if ech_config else client_hello_with_ech(host)
    if layer == "quic":
        return initial_datagram(host)
    if layer == "tcp":
        return b""  # the SYN is the trigger
    if layer == "openvpn":
        return openvpn.client_reset(secrets.token_bytes(openvpn.SESSION_ID))
    if layer == NOISE:
        return b"\xff\xff" + secrets.token_bytes(14)
    if layer == "wireguard":  # its shape is what DPI sees: the rest is random to anyone without the server's key
        return b"\x01\x00\x00\x00" + secrets.token_bytes(wireguard.INITIATION_SIZE - 4)
    if layer == WG_NOISE:
        return bytes([5 + secrets.randbelow(251)]) + secrets.token_bytes(wireguard.INITIATION_SIZE - 1)
    _, wire = build_query(host, "A")
    return wire


def _observation(step: ttlprobe.Step) -> Observation:
    resp = step.responses()
    return Observation(step.ttl, step.connected, step.icmp_from, tuple(s.as_dict() for s in resp),
                       b"".join(s.payload for s in resp))


def _trigger(cap: ttlprobe.Capture, layer: str, ip: str, port: int, payload: bytes, ttl: int,
             wait: float) -> ttlprobe.Step:
    if layer == "dns":
        return ttlprobe.udp_trigger(cap, ip, 53, payload, ttl, wait=wait)
    if layer == "quic":
        return ttlprobe.udp_trigger(cap, ip, QUIC_PORT, payload, ttl, wait=wait)
    if layer in ("wireguard", WG_NOISE):  # each from a new socket: the first datagram of its own flow
        return ttlprobe.udp_trigger(cap, ip, port, payload, ttl, wait=wait)
    if layer == "tcp":
        return ttlprobe.syn_trigger(cap, ip, port, ttl, wait=wait)
    return ttlprobe.tcp_trigger(cap, ip, port, payload, ttl, wait=wait)


LATE_WAIT = 4.0  # seconds a last trigger, at full TTL, is listened to before silence is taken for a drop


def answers_late(cap: ttlprobe.Capture, layer: str, ip: str, port: int, payload: bytes, wait: float) -> bool:
    """Whether the trigger, sent once more at full TTL and listened to for longer than ``--wait`` (`LATE_WAIT`, or
    four times the wait), gets anything back: then silence at every TTL was the path's slowness, not a drop."""
    return bool(_trigger(cap, layer, ip, port, payload, 64, max(LATE_WAIT, 4 * wait)).seen)


def sweep(cap: ttlprobe.Capture, layer: str, ip: str, port: int, name: str, path: str, max_ttl: int, wait: float,
          stop: Callable[[list[Observation]], bool] | None = None, dist: int | None = None,
          ech_config: ECHConfig | None = None) -> list[Observation]:
    """Trigger with TTL 1, 2, …: until `max_ttl`, the server's distance, or `stop(observations so far)`."""
    out: list[Observation] = []
    payload = trigger_payload(layer, name, path, ech_config)
    for ttl in range(1, max_ttl + 1):
        step = _trigger(cap, layer, ip, port, payload, ttl, wait)
        out.append(_observation(step))
        if not step.connected and ttl == 1:
            break
        if dist is not None and ttl >= dist:
            break
        if stop is not None and stop(out):
            break
    return out


def located(path: Sequence[str | None], dist: int | None,
            control: dict[int, Observation]) -> Callable[[list[Observation]], bool]:
    """Stop a target sweep once the observations so far decide a hop. A TTL where the plain path had no
    router is silent either way (a router that never sends time-exceeded): it decides nothing."""
    return lambda target: decide_run(path, dist, target, control).hop is not None


def _servers_own_reset(r: RunResult, ctl: Observation | None) -> bool:
    """Whether every RST of ``r`` arrived with a TTL the control's answers at that TTL arrived with (the server's
    own packets, sent from as far as the control's)."""
    own = {x.get("ttl") for x in ctl.responses} if ctl is not None else set()
    rsts = [x for x in r.forged if "R" in str(x.get("flags") or "")]
    return bool(rsts) and bool(own) and all(x.get("ttl") in own for x in rsts)


def _silent_beyond(target: Sequence[Observation], control: Iterable[Observation], k: int) -> bool:
    """Whether no observation from TTL ``k`` on, of the target's or the control's, got anything back (no ICMP, no
    answer), and both went beyond ``k``."""
    control = list(control)
    return all(any(o.ttl >= k for o in side) and all(o.icmp_from is None and not o.responses
                                                    for o in side if o.ttl >= k) for side in (target, control))


def silent_after(path: Sequence[str | None]) -> int:
    """The hop after the last router that answered on the plain path (1 if none did)."""
    return max((i + 1 for i, h in enumerate(path) if h), default=0) + 1


def dns_timeout(wait: float) -> float:
    """Seconds a lookup of locate's own is given: 4, or more where ``--wait`` says the path is long (DNS over TCP
    takes two round trips: at 2.4 s of round trip, 4 s never resolved a name)."""
    return max(4.0, 2 * wait + 2)


async def _ech_config(host: str, resolver: str, timeout: float = 4) -> ECHConfig | None:
    """The ECH config ``host`` publishes in its HTTPS record (asked of ``resolver`` over UDP) that this client
    can use, as echcheck takes it; None without one."""
    trace = Trace(record_io=False)
    res = await lookup_udp(host, "HTTPS", server=resolver, trace=trace, timeout=timeout, duplicate_window=0)
    published = next((a["x_ech"] for a in (res.record or {}).get("answers") or () if a.get("x_ech")), "")
    return usable_config(published)[0] if published else None


async def _real_address(host: str, resolver: str, timeout: float = 4) -> tuple[str | None, bool]:
    """(address from DNS over TCP, whether UDP's answer shares none of its addresses: DNS tampering).

    The first usable address is the server; an answer with none (0.0.0.0, loopback: a resolver's lie) is a
    UsageError, since tracing it would place an "IP block" at hop 1."""
    from ..netx import lookup_tcp

    trace = Trace(record_io=False)
    tcp = await lookup_tcp(host, "A", server=resolver, trace=trace, timeout=timeout)
    udp = await lookup_udp(host, "A", server=resolver, trace=trace, timeout=timeout, duplicate_window=0)
    if tcp.failure is not None and not tcp.addresses and failure_class(tcp.failure) == "timeout":
        raise UsageError(f"cannot resolve {host}: DNS over TCP to {resolver} timed out after {timeout:g} s (a slow "
                         "path: a longer --wait gives locate's lookups more time; or give --server IP)")
    usable = [a for a in tcp.addresses if _unusable(a, dns_answer=True) is None]
    if tcp.addresses and not usable:
        raise UsageError(f"{host} resolves to {tcp.addresses[0]} (DNS over TCP to {resolver}): "
                         f"{_unusable(tcp.addresses[0], dns_answer=True)}, not a server to locate")
    real = usable[0] if usable else None
    # Round-robin DNS orders the same addresses differently each time: only an answer sharing none is tampered.
    tampered = bool(real) and not set(udp.addresses) & set(tcp.addresses)
    return real, tampered


def locate(url: str, *, layer: str, control: str, runs: int, max_ttl: int, wait: float, spread: list[str],
           resolver: str, matcher: Any = None, server: str | None = None) -> tuple[Location, dict[str, Any]]:
    u = parse_url(url)
    real: str | None
    if server is not None:  # the triggers go there, whatever the name resolves to
        real, tampered = server, False
    elif is_ip(u.host):  # an address needs no DNS: it is the server
        real, tampered = u.host, False
    else:
        real, tampered = asyncio.run(_real_address(u.host, resolver, dns_timeout(wait)))
    if layer == "auto":
        layer = "dns" if tampered else ("tls" if u.scheme == "https" else "http")
    if layer == "dns":
        servers = [resolver]
    else:
        if real is None:
            raise UsageError(f"cannot resolve {u.host} (DNS over TCP to {resolver})")
        servers = [real, *spread]
    config = asyncio.run(_ech_config(u.host, resolver, dns_timeout(wait))) if layer == "ech" else None
    cap = ttlprobe.Capture()
    results: list[RunResult] = []
    detail: dict[str, Any] = {"layer": layer, "address": servers[0], "runs": []}
    if layer == "ech":  # what the target hello's outer name is, and why
        detail["ech"] = {"config": "published" if config else "GREASE",
                         "outer_name": config.public_name if config else u.host}
    ignored = dropped = 0
    triggered: set[str] = set()  # servers whose run met the censor after connecting (residual blocking may follow)
    unreachable: set[str] = set()  # servers that could not be connected to, while others were still to try
    dropped_at: set[str] = set()  # servers silent at every TTL and to a last, longer listened trigger
    by_name = not is_ip(u.host) and server is None  # other addresses serve the same name (an address serves itself)
    path: list[str | None] = []
    dist: int | None = None
    try:
        i = 0
        while i < max(runs, 1) * 2:
            server = servers[i % len(servers)]
            path, dist = ttlprobe.traceroute(server, max_ttl=max_ttl, wait=wait)  # --wait: a long path needs more
            top = (dist or max_ttl)
            ctl_port = control_port(u.port) if layer == "tcp" else u.port
            ctl_layer = {"openvpn": NOISE, "wireguard": WG_NOISE}.get(layer, layer)
            ctl = {o.ttl: o for o in sweep(cap, ctl_layer, server, ctl_port, control, "/", top, wait, dist=dist)}
            if ctl_port == u.port and ctl and not ctl[min(ctl)].connected:
                tgt = []  # the control could not connect to this very address and port: nor would the target
            else:
                tgt = sweep(cap, layer, server, u.port, u.host, u.path, top, wait, stop=located(path, dist, ctl),
                            dist=dist, ech_config=config)
            packets = {"ignored": cap.ignored - ignored, "dropped": cap.dropped - dropped}
            ignored, dropped = cap.ignored, cap.dropped
            if not tgt or not tgt[0].connected:
                r = RunResult(None, None, None, None, "could not connect, or reset before the trigger "
                              "(residual blocking or an IP block?)")
                if path and dist is None:  # the path goes silent: an IP block
                    k = silent_after(path)
                    r = RunResult(k, path[k - 2] if k >= 2 else None, "in-path", "address",
                                  f"the path goes silent after hop {k - 1}: packets to {server} are dropped")
                    servers = [server]  # the address is the target: other addresses would not tell
                elif server in triggered and layer not in UDP_OR_SYN:
                    # an earlier run to this server connected and triggered the censor: it now blocks this client and
                    # server for a while (residual blocking), which says nothing about the address; --spread avoids it
                    detail["runs"].append({"server": server, "packets": packets, "result": (
                        f"{RESIDUAL}: residual blocking (it blocks this client and server for a while after a "
                        "trigger)")})
                    i += 1
                    if triggered.issuperset(servers):  # every address is held: more runs now would only wait
                        detail["ended"] = ("every address was held by residual blocking after a run met the censor; "
                                           "--spread gives others, or locate again later")
                        break
                    continue
                elif by_name and dist is not None and layer not in UDP_OR_SYN and \
                        not (unreachable | {server}).issuperset(servers):
                    # no connection here, but other addresses (--spread) are still to try: this one may be held by
                    # the censor after an earlier trigger (the probe's own measurement), which says nothing of them
                    unreachable.add(server)
                    detail["runs"].append({"server": server, "packets": packets, "result": (
                        "could not connect (residual blocking, or this address blocked?): the other addresses first")})
                    i += 1
                    continue
                elif dist is not None and layer not in UDP_OR_SYN:
                    # the path reaches the server, but no connection, at any of the addresses: a block of this
                    # address's port. Its SYN is the trigger (the run is made again with it)
                    layer = detail["layer"] = "tcp"
                    detail["switched"] = f"could not connect to {server}:{u.port}: the SYN itself is the trigger"
                    servers = [server]  # the address is the target: other addresses would not tell
                    continue
                else:
                    detail["runs"].append({"server": server, "result": r.reason, "packets": packets})
                    i += 1
                    continue
            else:
                r = decide_run(path, dist, tgt, ctl)
                if r.hop is None and path and dist is None and _silent_beyond(tgt, ctl.values(), silent_after(path)):
                    k = silent_after(path)
                    if layer in ANSWERING and (server in dropped_at or not answers_late(
                            cap, layer, server, u.port, trigger_payload(layer, u.host, u.path, config), wait)):
                        # a bare SYN or a datagram (no connection to fail) into a path that goes silent, for the
                        # control too, and still nothing when listened to for longer: packets to the address are
                        # dropped past the last router that answered (QA: --layer tcp and quic said "no
                        # interference" of an address dropped outright, where the default layer located it)
                        dropped_at.add(server)
                        r = RunResult(k, path[k - 2] if k >= 2 else None, "in-path", "address",
                                      f"the path goes silent after hop {k - 1}, and nothing sent to {server} came back "
                                      f"at any TTL, for the control too, nor in {max(LATE_WAIT, 4 * wait):g} s at full "
                                      "TTL: packets to it are dropped")
                        servers = [server]  # the address is the target: other addresses would not tell
                    else:
                        # nothing at any TTL past hop k - 1, though the address answers (a connection was made, or
                        # a late answer came): the path is slower than --wait (QA: on 2.4 s of round trip, the
                        # server's SYN-ACK sent again was taken for a censor's answer at hop 1)
                        why = ("a connection to it was made" if layer not in UDP_OR_SYN else
                               "it answered when listened to longer" if layer in ANSWERING else
                               "no answer is expected: a WireGuard server answers no initiation it cannot "
                               "authenticate, so silence says nothing here")
                        r = dataclasses.replace(r, reason=f"nothing came back past hop {k - 1} within --wait "
                                                f"{wait:g} s, for the control too ({why}): the path may be slower "
                                                "than that; locate again with a longer --wait")
                if layer == "tcp" and r.hop is not None and dist is not None and r.hop >= dist and \
                        _servers_own_reset(r, ctl.get(r.hop)):
                    # a SYN's RST at the server's own distance, with the TTL the server's SYN-ACK to the control
                    # port arrives with: the server's answer for a closed port, not a censor's (QA: a closed port
                    # of the none profile was "located" at the server's hop)
                    r = RunResult(None, None, None, None, f"{server} answers the SYN to port {u.port} with a reset "
                                  "itself (its TTL is the server's): the port is closed there, not blocked on the "
                                  "way")
                if layer in SCOPE_OF_LAYER and r.scope == "name":  # no name in the trigger: what differed is the
                    # port (a SYN to another one) or the protocol (random bytes to the same one)
                    r = dataclasses.replace(r, scope=SCOPE_OF_LAYER[layer],
                                            reason=r.reason.replace("the trigger", "the SYN") if layer == "tcp"
                                            else r.reason)
                if r.hop is not None:
                    triggered.add(server)
                if r.scope == "all" and not r.forged and server == servers[0] and len(servers) > 1:
                    # the control name was dropped at this address as the target was: the address (its port) is
                    # blocked whatever the name, which the other addresses (--spread) cannot show: runs stay here
                    servers = [server]
                    detail["spread_dropped"] = (f"the control name was dropped at {server} too: the block is the "
                                                "address's, so the other addresses were not tried")
            results.append(r)
            detail["runs"].append({"server": server, "hop": r.hop, "placement": r.placement, "reason": r.reason,
                                   "target": [_obs_dict(o) for o in tgt],
                                   "control": [_obs_dict(o) for o in ctl.values()], "packets": packets})
            i += 1
            best, share = majority(results)
            if len(results) >= runs and share > 0.5:
                break
    finally:
        cap.close()
    best, share = majority(results)
    if best is None:
        return Location(None, None, None, None, (), 0.0, "no run completed", path=tuple(path), server_ttl=dist), detail
    # the forged packets of every run that placed the censor where the best did: one run's IP-ID alone looked fixed
    sig = signature(carriers([f for r in results if r.hop == best.hop for f in r.forged] or best.forged), best.hop)
    fps: tuple[str, ...] = ()
    if best.payload and matcher is not None:
        head_bytes, _, rest_bytes = best.payload.partition(b"\r\n\r\n")
        head = head_bytes.decode("latin-1")
        # the page in UTF-8 where it is (as a measurement keeps a body): read as latin-1, the MTS page's Russian
        # matched no fingerprint written in Cyrillic, and locate named fewer blockpages than web_connectivity
        body = rest_bytes or best.payload
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = body.decode("latin-1")
        fps = tuple(matcher(text, dict(h.split(": ", 1) for h in head.split("\r\n")[1:] if ": " in h)))
    loc = Location(best.hop, best.router, best.placement, best.scope, tuple(r.hop for r in results), share,
                   best.reason, sig, fps, signature_key(sig, fps), tuple(path), dist)
    return loc, detail


def _obs_dict(o: Observation) -> dict[str, Any]:
    return {"ttl": o.ttl, "connected": o.connected, "icmp_from": o.icmp_from, "responses": list(o.responses)}


def _unusable(value: str, *, dns_answer: bool = False) -> str | None:
    """Why packets to the IPv4 address `value` cannot locate anything, or None. Loopback is refused
    only as a DNS answer (where it is a resolver's lie); as a literal it is a local test server."""
    ip = ipaddress.IPv4Address(value)
    if ip in THIS_NETWORK:
        return "an unspecified address"
    if ip.is_multicast or ip.is_reserved:  # 224/4 and 240/4, broadcast included
        return "a multicast or broadcast address"
    if dns_answer and ip.is_loopback:
        return "a loopback address"
    return None


def _ipv4(value: str, what: str) -> str:
    try:
        ip = str(ipaddress.IPv4Address(value))
    except ValueError:
        raise UsageError(f"{what} must be an IPv4 address (locate works over IPv4 only), not {value!r}") from None
    if (why := _unusable(ip)) is not None:
        raise UsageError(f"{what} {ip} is {why}: no server has that address")
    return ip


def _check(args: argparse.Namespace) -> tuple[str, str, list[str], str | None]:
    """(URL, resolver, spread addresses, server) once every option is known to be usable; else UsageError."""
    try:
        url = normal_url(args.url)
        u = parse_url(url)
    except BadInput as e:
        raise UsageError(str(e)) from None
    if ":" in u.host:
        raise UsageError(f"{u.host} is an IPv6 address: locate works over IPv4 only")
    if args.layer == "dns" and is_ip(u.host):
        raise UsageError(f"--layer dns needs a host name to query, and {url} names an address")
    if is_ip(u.host):
        _ipv4(u.host, "the URL's host")
    if not 1 <= args.max_ttl <= 64 or not 1 <= args.runs <= 20:
        raise UsageError("--max-ttl must be 1-64 and --runs 1-20")
    if not (math.isfinite(args.wait) and 0 < args.wait <= 30):
        raise UsageError("--wait must be more than 0 and at most 30 seconds")
    try:
        check_host(args.control)
    except BadInput as e:
        raise UsageError(f"--control: {e}") from None
    if args.server is not None and args.layer == "dns":
        raise UsageError("--server goes with every layer but dns: a DNS trigger goes to the resolver")
    server = _ipv4(args.server, "--server") if args.server is not None else None
    # given empty, a mistake (as run and remote take it), not "the default": that would ask a public resolver
    env = os.environ.get("TAMPERSCOPE_PUBLIC_RESOLVER") or None
    resolver = (_ipv4(args.resolver, "--resolver") if args.resolver is not None
                else _ipv4(env, "$TAMPERSCOPE_PUBLIC_RESOLVER") if env is not None else "8.8.8.8")
    return url, resolver, [_ipv4(a, "--spread") for a in args.spread], server


def _plan(host: str, resolver: str, spread: list[str], control: str, server: str | None = None,
          layer: str = "auto") -> str:
    """What this run would contact, said before consent (nothing is looked up to say it)."""
    target = server or host
    asking = ("OpenVPN's first packet, and random bytes as the control" if layer == "openvpn" else
              "datagrams shaped as WireGuard's handshake, and random ones as the control" if layer == "wireguard"
              else f"packets asking for {host} and for the control name {control}")
    parts = [f"{target}{' and ' + ', '.join(spread) if spread else ''} and the routers on the path to it, with "
             f"TTL-limited {asking}"]
    if not is_ip(host) and server is None:
        parts.append(f"the public resolver {resolver} (DNS over TCP and UDP)")
    return "This run would contact: " + "; ".join(parts) + "."


def run(args: argparse.Namespace) -> int:
    from .consent import ConsentRequired, ensure_consent

    if os.geteuid() != 0:
        raise UsageError("locate needs root: it sends TTL-limited packets and listens on raw sockets")
    url, resolver, spread, server = _check(args)
    plan = _plan(parse_url(url).host, resolver, spread, args.control, server, args.layer)
    try:
        ensure_consent(args.yes, plan=plan)
    except ConsentRequired as e:
        raise UsageError(str(e)) from None
    from ..nettests.blockpages import matcher

    args.url = url
    try:
        loc, detail = locate(url, layer=args.layer, control=args.control, runs=args.runs, max_ttl=args.max_ttl,
                             wait=args.wait, spread=spread, resolver=resolver, matcher=matcher(), server=server)
    except PermissionError as e:
        raise UsageError(f"locate needs raw and packet sockets (root with CAP_NET_RAW): {e.strerror or e}") from None
    except OSError as e:
        if e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
            print(f"tamperscope: locate {url}: {e.strerror} (no route from here)", file=sys.stderr)
        else:
            print(f"tamperscope: locate {url}: {e.strerror or e}", file=sys.stderr)
        return 1
    said: dict[str, Any] = {key: detail[key] for key in ("ech", "switched", "spread_dropped", "ended") if key in detail}
    out = {"url": args.url, **loc.as_dict(), "layer": detail["layer"], "address": detail["address"], **said}
    if args.json:
        print(json.dumps({**out, "detail": detail["runs"]}, indent=1, default=str))
        return 0
    trigger = ""
    if "ech" in detail:
        how = "the site's published ECH config" if detail["ech"]["config"] == "published" else "GREASE ECH"
        trigger = f"  the trigger: a ClientHello with {how}, outer name {detail['ech']['outer_name']}"
    if loc.hop is None:
        print(f"{args.url}: no interference located ({loc.reason}); path {' > '.join(h or '*' for h in loc.path)}")
        if trigger:
            print(trigger)
        return 0
    fp = loc.fingerprint or {}
    scope = {"name": "this name only", "port": "this port only", "address": "this address only",
             "protocol": "this protocol only"}.get(str(loc.scope), "every name")
    print(f"{args.url}: interference at hop {loc.hop}, after router {loc.router or '-'} ({loc.placement}, "
          f"{scope}); runs {list(loc.runs)}")
    for key in ("switched", "spread_dropped"):
        if key in detail:
            print(f"  {detail[key]}")
    print(f"  layer {detail['layer']}; {loc.reason}")
    held = sum(1 for r in detail["runs"] if str(r.get("result", "")).startswith(RESIDUAL))
    if held:
        print(f"  {held} later run{'s' * (held != 1)} could not connect: residual blocking (the censor holds this "
              "client and server for a while after a trigger); --spread gives other addresses to repeat on")
    if "ended" in detail:
        print(f"  runs ended: {detail['ended']}")
    if trigger:
        print(trigger)
    if fp:
        ids = fp.get("ip_ids") or []
        ip_id = fp.get("ip_id") if fp.get("ip_id") is not None else (
            f"varies ({', '.join(map(str, ids))})" if ids else "-")
        sent = (f"sent with {fp['sent_ttl']}" if fp.get("sent_ttl") is not None
                else f"sent with {fp.get('initial_ttl')} or less")
        window = f", window {fp.get('window')}" if fp.get("window") is not None else ""
        print(f"  signature {loc.signature}: {fp.get('kind')} {fp.get('flags') or ''} IP-ID {ip_id}, "
              f"TTL {fp.get('ttl')} on arrival ({sent}){window}")
    if loc.blockpage:
        print(f"  blockpage fingerprint: {', '.join(loc.blockpage)}")
    return 0



