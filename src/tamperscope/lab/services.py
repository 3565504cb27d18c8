"""The lab's server processes, one per namespace that needs one.

    python -m tamperscope.lab.services inet|isp|border|obfs4|gateway|wireguard --state DIR

- inet (ts-inet): authoritative DNS, public resolver (UDP/TCP/DoT/DoH), the
  web farm on 80/443 for every address of 198.19.0.0/16 (and QUIC/HTTP/3 on
  UDP 443, advertised by an Alt-Svc header on https), the echo service, STUN
  (UDP 3478 and 19302, Google's port) and TCP 5222 (WhatsApp's chat port, an echo)
  at every address.
- isp (ts-access): the ISP resolver, an in-country web server (HTTP, HTTPS and
  QUIC/HTTP/3), and the ISP's blockpage server (where poisoned names point).
- border (ts-border): the rewriting proxy and the MITM box, when the profile
  asks for them.
- obfs4 (ts-inet): a real obfs4 bridge, Debian's obfs4proxy run as Tor runs a
  pluggable transport, with the lab's identity key (`farm.obfs4_identity`), at
  198.19.3.20:27015; what follows its handshake goes to the echo service.
- gateway (ts-inet): a RiseupVPN gateway at 198.19.3.30, Debian's openvpn on TCP
  and UDP 1194 (its certificate the lab's RiseupVPN CA's) and obfs4proxy on 23042,
  as the inet farm's stand-in for RiseupVPN's API lists it.
- wireguard (ts-inet): a WireGuard server, Debian's wireguard-go (userspace), on
  UDP 51820 of every address (198.19.3.40 in the client's configuration), the
  lab's keys (`farm.wireguard_keys`) and its one client a peer.

Each reads the lab's state.json for the profile, writes a ready file when it
listens, and appends its censor actions to the ground-truth log.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import addresses as A
from . import farm

if TYPE_CHECKING:
    from ..model.profile import Profile
    from .farm import Response
    from .web import Request

# Every kind starts in its own process at each `lab up`, nine of them at once on a small machine: each imports
# only what it serves. The Debian servers' kinds (obfs4, gateway, wireguard, tornet) need none of the Python servers,
# whose imports (dnspython, aioquic, h2, the censor's packet code) made this module's 0.75 s of CPU (0.27 s now).

# What a client connecting without SNI (by address) is shown: the service addresses.
DEFAULT_NAMES = ",".join(["lab.test", A.PUBLIC_RESOLVER, A.AUTHORITATIVE, A.HELPER, A.ECHO])


def _profile(state: dict[str, Any]) -> Profile:
    from ..model.profile import load_profile
    from . import blockpages

    return load_profile(Path(state["profile_path"]), blockpages.names())


async def _inet(state_dir: Path, state: dict[str, Any]) -> None:
    from .ca import Issuer
    from .dnsd import DNSServer, static_answerer
    from .farm import Response
    from .quicd import QuicServer
    from .web import WebServer, echo

    profile = _profile(state)
    issuer = Issuer(state_dir / "ca", "lab-ca", state_dir / "certs" / "inet")
    riseup = Issuer(state_dir / "ca", "riseup-ca", state_dir / "certs" / "riseup")
    riseup_ca = (state_dir / "ca" / "riseup-ca.pem").read_bytes()
    auth = DNSServer(A.AUTHORITATIVE, static_answerer(profile, recursive=False))
    public = DNSServer(A.PUBLIC_RESOLVER, static_answerer(profile, recursive=True))
    keep: list[object] = []
    keep += await auth.start()
    keep += await public.start(tls=issuer.sni_context(A.PUBLIC_RESOLVER))

    async def handler(req: Request) -> Response:
        if req.local_ip == A.PUBLIC_RESOLVER and req.target.startswith("/dns-query"):
            return _doh(req, profile)
        if req.target.startswith("/whoami"):
            # like "what is my IP" pages and blockpages that print it: the probe must scrub it, also where the
            # page styles it in parts or lets it wrap (tags inside it, a zero-width space)
            parts = req.peer_ip.split(".") if "." in req.peer_ip else req.peer_ip.split(":")
            styled = ("." if "." in req.peer_ip else ":").join(f"<span>{p}</span>" for p in parts)
            wrapping = req.peer_ip.replace(".", ".<wbr>").replace(":", ":&#8203;")
            body = (f"<html><head><title>Your address</title></head><body>You are {req.peer_ip}"
                    f"<p>{styled}</p><p>{wrapping}</p></body></html>").encode()
            return Response(200, (("Content-Type", "text/html"), ("X-Client-IP", req.peer_ip)), body)
        riseup_api = _riseup(req, riseup_ca)
        if riseup_api is not None:
            return riseup_api
        resp = farm.respond(req.scheme, req.host, req.target)
        if req.method == "GET":  # one byte range, as a static file server answers it (tcp_freeze's split)
            resp = farm.ranged(resp, next((v for k, v in req.headers if k.lower() == "range"), None))
        if req.scheme == "https" and farm.speaks_h3(req.host, profile):  # it speaks HTTP/3, and says so
            resp = replace(resp, headers=(*resp.headers, ("Alt-Svc", farm.ALT_SVC)))
        return resp

    web = WebServer(handler, raw={A.ECHO: echo})
    keep.append(await web.start("0.0.0.0", 80, reuse_port=True))
    keep.append(await web.start("0.0.0.0", 443, tls=issuer.sni_context(DEFAULT_NAMES, {farm.RISEUP_API_HOST: riseup}),
                                reuse_port=True))
    quic = QuicServer(issuer.credentials, lambda host, path, _local: farm.respond("https", host, path))
    keep.append(quic.start("0.0.0.0", 443))
    keep.append(await asyncio.start_server(echo, A.ECHO, 7))
    keep.append(await asyncio.start_server(echo, "0.0.0.0", A.CHAT_PORT))  # WhatsApp's chat port, every address
    for port in A.STUN_PORTS:  # at every address, as the web farm: a STUN server's name resolves to any of them
        keep.append(_Stun(port))
    (state_dir / "ready-inet").write_text("ok")
    await asyncio.Event().wait()


def _riseup(req: Request, ca: bytes) -> Response | None:
    """RiseupVPN's API, over https: its CA, its provider document and its gateways' list (`farm.riseup_*`)."""
    from .farm import Response

    if req.scheme != "https":
        return None
    at = (req.host.lower().rstrip("."), req.target.split("?", 1)[0])
    if at == farm.RISEUP_CA:
        return Response(200, (("Content-Type", "application/x-x509-ca-cert"),), ca)
    if at == farm.RISEUP_PROVIDER:
        return Response(200, (("Content-Type", "application/json"),), farm.riseup_provider())
    if at == farm.RISEUP_EIP:
        return Response(200, (("Content-Type", "application/json"),), farm.riseup_eip_service())
    return None


class _Stun:
    """Answers each STUN binding request with the address it came from (XOR-MAPPED-ADDRESS), from the
    address it was sent to (IP_PKTINFO, as quicd: the socket listens on every address of 198.19.0.0/16);
    anything else gets no answer, as from a real server."""

    def __init__(self, port: int) -> None:
        from .quicd import IP_PKTINFO

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        self.sock.bind(("0.0.0.0", port))
        self.sock.setblocking(False)
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        from ..netx import stun
        from .quicd import received, send_from

        for data, peer, local in received(self.sock, 2048):
            if len(data) < 20 or data[:2] != b"\x00\x01" or data[4:8] != stun.MAGIC_COOKIE.to_bytes(4, "big"):
                continue
            with contextlib.suppress(OSError):
                send_from(self.sock, stun.binding_response(data[8:20], (peer[0], peer[1])), local, peer)


def _doh(req: Request, profile: Profile) -> Response:
    from urllib.parse import parse_qs, urlsplit

    import dns.message

    from .dnsd import authoritative_answer
    from .farm import Response

    try:
        if req.method == "POST":
            wire = req.body
        else:
            q = parse_qs(urlsplit(req.target).query).get("dns", [""])[0]
            wire = base64.urlsafe_b64decode(q + "=" * (-len(q) % 4))
        query = dns.message.from_wire(wire)
    except Exception:
        return Response(400, (("Content-Type", "text/plain"),), b"bad dns message\n")
    resp = authoritative_answer(query, profile, recursive=True)
    return Response(200, (("Content-Type", "application/dns-message"),), resp.to_wire())


async def _isp(state_dir: Path, state: dict[str, Any]) -> None:
    from . import blockpages
    from .ca import Issuer
    from .censor import GroundTruth
    from .dnsd import DNSServer, isp_answerer
    from .farm import Response
    from .quicd import QuicServer
    from .web import WebServer, echo

    profile = _profile(state)
    truth = GroundTruth(Path(state["log_path"]))
    issuer = Issuer(state_dir / "ca", "lab-ca", state_dir / "certs" / "isp")
    resolver = DNSServer(A.ISP_RESOLVER, isp_answerer(profile, A.AUTHORITATIVE, truth.write,
                                                      timeout=farm.upstream_wait(profile)))
    keep: list[object] = list(await resolver.start())
    poison = [r for r in profile.rules_for("dns") if r.action == "poison"]

    async def handler(req: Request) -> Response:
        if req.local_ip == A.ISP_BLOCKPAGE:
            rule = next((r for r in poison if r.matches_name(req.host) and r.blockpage), None)
            page = blockpages.load(rule.blockpage if rule and rule.blockpage else "generic")
            return Response(200, (("Content-Type", "text/html; charset=utf-8"),), page)
        return farm.respond(req.scheme, req.host, req.target)

    web = WebServer(handler)
    keep.append(await web.start("0.0.0.0", 80))
    keep.append(await web.start(A.ISP_WEB, 443, tls=issuer.sni_context(A.ISP_WEB)))
    quic = QuicServer(issuer.credentials, lambda host, path, _local: farm.respond("https", host, path))
    keep.append(quic.start(A.ISP_WEB, 443))  # the in-country server speaks HTTP/3 too: remote web --protocol quic
    keep.append(await asyncio.start_server(echo, A.ISP_WEB, 7))  # and echo, for Quack: remote web --protocol echo
    (state_dir / "ready-isp").write_text("ok")
    await asyncio.Event().wait()


def _border(state_dir: Path, state: dict[str, Any]) -> None:
    from .ca import Issuer
    from .censor import GroundTruth
    from .proxy import Interceptor

    profile = _profile(state)
    truth = GroundTruth(Path(state["log_path"]))
    issuer = Issuer(state_dir / "ca", "intercept-ca", state_dir / "certs" / "intercept", alpn=("http/1.1",))
    box = Interceptor(profile, issuer, str(state_dir / "ca" / "lab-ca.pem"), truth.write)
    if profile.proxy.enabled:
        box.serve(8080, box.http)
    if box.mitm_rules:
        box.serve(8443, box.tls)
    (state_dir / "ready-border").write_text("ok")
    threading.Event().wait()


def _obfs4(state_dir: Path, name: str = "obfs4", bind: str = f"{A.OBFS4_BRIDGE}:{A.OBFS4_PORT}") -> int:
    """obfs4proxy as a server transport (Tor's pluggable-transport protocol: the environment in, SMETHOD lines out),
    its state written first so that its key is the lab's; ready (``ready-NAME``) once it says it listens."""
    import os
    import subprocess

    node_id, key = farm.obfs4_identity()
    home = state_dir / name
    home.mkdir(mode=0o700, exist_ok=True)
    (home / "obfs4_state.json").write_text(json.dumps({
        "node-id": node_id.hex(), "private-key": key.private_bytes_raw().hex(),
        "public-key": key.public_key().public_bytes_raw().hex(),
        "drbg-seed": hashlib.sha256(b"tamperscope lab obfs4 drbg").digest()[:24].hex(), "iat-mode": 0}))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TOR_PT_MANAGED_TRANSPORT_VER": "1",
           "TOR_PT_SERVER_TRANSPORTS": "obfs4", "TOR_PT_STATE_LOCATION": str(home),
           "TOR_PT_SERVER_BINDADDR": f"obfs4-{bind}", "TOR_PT_ORPORT": f"{A.ECHO}:7"}
    proc = subprocess.Popen(["obfs4proxy"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        print(line.rstrip(), flush=True)
        if line.startswith(("ENV-ERROR", "VERSION-ERROR", "SMETHOD-ERROR")):
            proc.kill()
            return 1
        if line.startswith("SMETHODS DONE"):
            (state_dir / f"ready-{name}").write_text("ok")
    return proc.wait()


def _gateway(state_dir: Path) -> int:
    """A RiseupVPN gateway: Debian's openvpn as a server over TCP and another over UDP (the same port number, as
    RiseupVPN's gateways offer both), their certificate the provider's CA's (as RiseupVPN's gateways' are), each on
    a tap device with no address (nothing is tunnelled: the probe stops after the first exchange), and obfs4proxy
    beside them; ready (``ready-gateway``) once all three listen."""
    import subprocess

    from .ca import Issuer

    ca_dir = state_dir / "ca"
    issuer = Issuer(ca_dir, "riseup-ca", state_dir / "certs" / "riseup-gateway")
    chain = issuer.chain_file("gw1.lab.riseup.net")  # the leaf, the CA and the key, in one PEM file
    procs: list[subprocess.Popen[str]] = []
    try:
        for proto in ("tcp-server", "udp"):
            proc = subprocess.Popen(
                ["openvpn", "--mode", "server", "--tls-server", "--dev", "tap", "--proto", proto,
                 "--local", A.RISEUP_GATEWAY, "--lport", str(A.OPENVPN_PORT), "--ca", str(ca_dir / "riseup-ca.pem"),
                 "--cert", str(chain), "--key", str(chain), "--dh", "none", "--verb", "1"],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            procs.append(proc)
            assert proc.stdout is not None
            for line in proc.stdout:
                print(line.rstrip(), flush=True)
                if "Initialization Sequence Completed" in line:
                    break
            else:
                return proc.wait() or 1
            threading.Thread(target=_relay, args=(proc,), daemon=True).start()
        return _obfs4(state_dir, "gateway", f"{A.RISEUP_GATEWAY}:{A.RISEUP_OBFS4_PORT}")
    finally:
        for proc in procs:
            proc.terminate()


def _relay(proc: Any) -> None:
    """A server's further lines into this service's log, until it exits."""
    for line in proc.stdout:
        print(line.rstrip(), flush=True)


START_ATTEMPTS = 3


def _wireguard(state_dir: Path) -> int:
    """A WireGuard server: Debian's wireguard-go (userspace) on a TUN device with no address (nothing is tunnelled:
    the probe stops after the handshake), configured with ``wg`` (the lab's keys, its one client a peer); ready
    (``ready-wireguard``) once it listens."""
    import subprocess

    from ..wire.wireguard import public_key

    server, client, psk = farm.wireguard_keys()
    keys = state_dir / "wireguard"
    keys.mkdir(mode=0o700, exist_ok=True)
    (keys / "server.key").write_text(base64.b64encode(server).decode() + "\n")
    (keys / "psk").write_text(base64.b64encode(psk).decode() + "\n")
    # wireguard-go's control socket is /var/run/wireguard/DEVICE.sock, one path for every namespace: a device name
    # of this lab's own, so that a killed lab's server, still shutting down, cannot remove this one's socket. Even
    # so, one start in about forty ends at once with "Failed to listen on uapi socket: no such file or directory"
    # (seen in lab up/down cycles, cause not found): then it is started again, under a new name.
    said: list[str] = []
    for _attempt in range(START_ATTEMPTS):
        device = f"{A.WIREGUARD_DEVICE}{os.urandom(3).hex()}"
        output = open(keys / "wireguard-go.log", "wb")  # noqa: SIM115 - wireguard-go's, read back if it fails
        proc = subprocess.Popen(["wireguard-go", "-f", device], stdin=subprocess.DEVNULL, stdout=output,
                                stderr=output, env={**os.environ, "WG_PROCESS_FOREGROUND": "1"})
        try:
            for _ in range(100):  # its control socket, then the device, appear
                done = subprocess.run(
                    ["wg", "set", device, "private-key", str(keys / "server.key"), "listen-port",
                     str(A.WIREGUARD_PORT), "peer", base64.b64encode(public_key(client)).decode(), "preshared-key",
                     str(keys / "psk"), "allowed-ips", "10.66.0.2/32"], capture_output=True, text=True)
                if done.returncode == 0 or proc.poll() is not None:
                    break
                time.sleep(0.05)
            if done.returncode == 0:
                subprocess.run(["ip", "link", "set", "dev", device, "up"], check=True)
                (state_dir / "ready-wireguard").write_text("ok")
                return proc.wait()
            said = (keys / "wireguard-go.log").read_text(errors="replace").strip().splitlines()[-3:]
            said.insert(0, f"wg set failed: {done.stderr.strip()} (wireguard-go: "
                        f"{'running' if proc.poll() is None else f'exited {proc.returncode}'})")
        finally:
            proc.terminate()
            output.close()
    print(f"wireguard: {' | '.join(said)}", flush=True)
    return 1


def _tornet(state_dir: Path, tor_network: Path) -> int:
    """The lab's Tor network (`tornet`): its keys made, the client's lines written to ``tor_network``, then its
    three authorities, each a tor process bound to its own address, and (with obfs4proxy) its bridge, whose line
    goes to ``tor-bridges.txt`` beside ``tor_network``; ready (``ready-tornet``) once each OR port and the bridge's
    obfs4 port take connections. The first consensus comes about 20 s later."""
    import shutil
    import subprocess

    from . import tornet

    root = state_dir / tornet.DIRECTORY
    try:
        authorities = tornet.make_keys(root, tornet.KEY_CACHE)
    except tornet.TorNetError as e:
        print(f"tornet: {e}", flush=True)
        return 1
    tor_network.write_text(tornet.client_config(authorities))
    procs: list[subprocess.Popen[str]] = []
    try:
        def start(home: Path, config: str) -> None:
            """One tor with ``config`` as its torrc in ``home`` (no system defaults), its log into this service's."""
            (home / "torrc").write_text(config)
            proc = subprocess.Popen(["tor", "-f", str(home / "torrc"), "--ignore-missing-torrc", "--defaults-torrc",
                                     str(home / "none")], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
            procs.append(proc)
            threading.Thread(target=_relay, args=(proc,), daemon=True).start()

        unkept = []  # tors that make their keys now: kept once they listen
        waiting = [(ip, A.TOR_NETWORK_OR_PORT) for _, ip in (*A.TOR_NETWORK, *A.TOR_NETWORK_RELAYS)]
        obfs4proxy = shutil.which("obfs4proxy")
        bridge = root / tornet.BRIDGE
        bridges = tor_network.parent / "tor-bridges.txt"
        # the bridge first: its line (tor's fingerprint, obfs4proxy's cert) is the last thing ready waits for, and
        # the six tors' starts share two cores
        if obfs4proxy is not None:
            if not tornet.restore(bridge, tornet.KEY_CACHE / bridge.name):
                unkept.append(bridge.name)
            start(bridge, tornet.bridge_config(authorities, bridge, obfs4proxy))
            waiting.append((A.TOR_BRIDGE, A.TOR_BRIDGE_OBFS4_PORT))
        else:
            print("tornet: obfs4proxy is not installed: the network has no bridge", flush=True)
        for me in authorities:
            start(root / me.nickname, tornet.authority_config(me, authorities, root / me.nickname))
        for nickname, ip in A.TOR_NETWORK_RELAYS:
            if not tornet.restore(root / nickname, tornet.KEY_CACHE / nickname):
                unkept.append(nickname)
            start(root / nickname, tornet.relay_config(nickname, ip, authorities, root / nickname))
        deadline = time.monotonic() + 30
        while waiting:
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                print(f"tornet: a tor exited, or {waiting[0][0]}:{waiting[0][1]} never listened", flush=True)
                return 1
            try:
                socket.create_connection(waiting[0], timeout=1).close()
                waiting.pop(0)
            except OSError:
                time.sleep(0.1)
        while obfs4proxy is not None and (line := tornet.bridge_line(bridge)) is None:
            if time.monotonic() > deadline:
                print("tornet: the bridge wrote no fingerprint or obfs4 cert", flush=True)
                return 1
            time.sleep(0.1)
        for nickname in unkept:
            tornet.keep(root / nickname, tornet.KEY_CACHE / nickname)
        if obfs4proxy is not None:
            bridges.write_text(f"# the lab's Tor network's bridge (tamperscope lab), through obfs4\n{line}\n")
        (state_dir / "ready-tornet").write_text("ok")
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        return 1
    finally:
        for proc in procs:
            proc.terminate()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tamperscope-lab-services")
    ap.add_argument("kind", choices=("inet", "isp", "border", "obfs4", "gateway", "wireguard", "tornet"))
    ap.add_argument("--state", required=True, type=Path)
    ap.add_argument("--tor-network", type=Path, default=None, help="tornet: where to write the client's lines")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    state = json.loads((args.state / "state.json").read_text())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if args.kind == "obfs4":
        return _obfs4(args.state)
    if args.kind == "gateway":
        return _gateway(args.state)
    if args.kind == "wireguard":
        return _wireguard(args.state)
    if args.kind == "tornet":
        return _tornet(args.state, args.tor_network or args.state / "tor-network.torrc")
    if args.kind == "border":
        _border(args.state, state)
        return 0
    import uvloop

    uvloop.run(_inet(args.state, state) if args.kind == "inet" else _isp(args.state, state))
    return 0


if __name__ == "__main__":
    sys.exit(main())
