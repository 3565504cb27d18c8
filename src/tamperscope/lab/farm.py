"""The lab internet's deterministic behaviour, as pure functions.

The authoritative DNS, the web farm and `lab expect` all ask this module, so
what a server does and what the ground truth predicts can never drift apart.

- Every name resolves, except names under `.invalid` and names whose first
  label is `nx` (NXDOMAIN). A names only; AAAA is empty (the lab is IPv4).
- A name that any rule of the active profile names gets an address of its own
  in 198.19.128.0/17, so blocking it (and residual blocking after it) never
  hits another site. Other names share 32 web-farm addresses by hash. Facebook's
  names (`is_facebook`) each get their own address in Facebook's network,
  198.19.96.0/19, AS32934 in the lab's ASN table, named in a rule or not.
- Each host serves a stable page: its own title and body length (12-40 KB).
- One host in three (and every host a quic rule names) speaks HTTP/3 and says
  so with an Alt-Svc header on https: `speaks_h3`.
- Names on Cloudflare (`cloudflare.com` and its subdomains, `cloudflare-ech.com`) publish an ECH config in
  an HTTPS record, with Cloudflare's public name `cloudflare-ech.com`: `ech_config_list`. Its key is the
  lab's, derived from a fixed string (a lab key, public by design: `ech_key`).
- `redirect.X` answers 302 to `https://X/` (cross-host); one host in four
  (by hash) redirects http to https; `large.X` serves a 4 MiB body; any host
  serves `/blob?size=N` (N random-looking bytes, at most 64 MiB) for throughput tests, and
  `/tor/status-vote/current/consensus.z` (a Tor consensus, zlib-compressed: any host may stand in for a
  directory authority's directory port).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import zlib
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..model.profile import Profile
from ..model.torverdict import CONSENSUS_PATH
from ..wire import ech
from ..wire.wireguard import public_key
from . import addresses as A

LARGE_BODY = 4 * 1024 * 1024
ALT_SVC = 'h3=":443"; ma=86400'  # what the https answers of a host that speaks HTTP/3 carry
MAX_BLOB = 64 * 1024 * 1024
MAX_REDIRECT_HOPS = 10


def _h(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")


def upstream_wait(profile: Profile) -> float:
    """Seconds the ISP resolver waits for the answers it asks the internet for: 2, plus three times the profile's
    ``delay_ms``, which the censor adds to each frame each way (at 1,200 ms every lookup failed at 2 s)."""
    return 2.0 + 3 * profile.network.delay_ms / 1000


def is_nxdomain(name: str) -> bool:
    name = name.lower().rstrip(".")
    return name.endswith(".invalid") or name == "invalid" or name.split(".", 1)[0] == "nx"


def address_for(name: str, profile: Profile | None) -> str:
    """The lab address of `name` (deterministic for a given profile)."""
    name = name.lower().rstrip(".")
    if name == A.PORTQUIZ_NAME:  # the server on every port (`manager._nft_inet`), named in a rule or not
        return A.PORTQUIZ
    if is_facebook(name):  # in Facebook's network even when a rule names it: its own address there
        net = A.FACEBOOK_NET
        return str(net.network_address + 1 + _h("facebook:" + name) % (net.num_addresses - 2))
    if profile is not None and profile.named_in_rules(name):
        net = A.DEDICATED_NET
        offset = 1 + _h("dedicated:" + name) % (net.num_addresses - 2)
        return str(net.network_address + offset)
    return A.FARM[_h(name) % len(A.FARM)]


def is_facebook(name: str) -> bool:
    """Whether `name` is one of Facebook's (`addresses.FACEBOOK_DOMAINS` or under one)."""
    name = name.lower().rstrip(".")
    return any(name == d or name.endswith("." + d) for d in A.FACEBOOK_DOMAINS)


def speaks_h3(host: str, profile: Profile | None) -> bool:
    """Whether `host` advertises HTTP/3 (Alt-Svc on its https answers): one host in three, as about a third of
    the web's sites do (W3Techs, 2025), and every host a quic rule of the profile names (the sites censors
    block over QUIC are the big ones, which all speak it)."""
    host = host.lower().rstrip(".")
    if profile is not None and any(r.matches_name(host) for r in profile.rules_for("quic")):
        return True
    return _h("h3:" + host) % 3 == 0


ECH_PUBLIC_NAME = "cloudflare-ech.com"  # the outer name of every lab site with ECH, as on Cloudflare
ECH_CONFIG_ID = 0x4C  # the lab config's id


def publishes_ech(host: str) -> bool:
    """Whether `host` publishes an ECH config (an HTTPS record with ``ech=``): Cloudflare's names."""
    host = host.lower().rstrip(".")
    return host in (ECH_PUBLIC_NAME, "cloudflare.com") or host.endswith(".cloudflare.com")


@lru_cache(maxsize=1)
def ech_key() -> X25519PrivateKey:
    """The lab's ECH private key: derived from a fixed string, so the DNS, the servers and the tests agree
    without sharing a file (a lab key, public by design)."""
    return X25519PrivateKey.from_private_bytes(hashlib.sha256(b"tamperscope lab ECH key").digest())


@lru_cache(maxsize=1)
def obfs4_identity() -> tuple[bytes, X25519PrivateKey]:
    """The lab obfs4 bridge's node id and identity key, derived from fixed strings (a lab key, public by design):
    the bridge's state file and the targets file the probe reads are made from them."""
    node_id = hashlib.sha256(b"tamperscope lab obfs4 node id").digest()[:20]
    return node_id, X25519PrivateKey.from_private_bytes(hashlib.sha256(b"tamperscope lab obfs4 key").digest())


def obfs4_cert() -> str:
    """The ``cert=`` of the lab bridge's line: node id and public key, base64 without padding."""
    node_id, key = obfs4_identity()
    return base64.b64encode(node_id + key.public_key().public_bytes_raw()).decode().rstrip("=")


def wireguard_keys() -> tuple[bytes, bytes, bytes]:
    """The lab WireGuard server's private key, its one client's private key and their pre-shared key, derived
    from fixed strings (lab keys, public by design)."""
    server, client, psk = (hashlib.sha256(f"tamperscope lab wireguard {what}".encode()).digest()
                           for what in ("server", "client", "psk"))
    return server, client, psk


def wireguard_client_config() -> str:
    """The lab client's WireGuard configuration, in wg-quick's format (``--wg-config``; the lab sets
    $TAMPERSCOPE_WG_CONFIG to a file holding it)."""
    server, client, psk = wireguard_keys()
    text = base64.b64encode
    return (f"# the lab's WireGuard client (lab keys, public by design)\n[Interface]\n"
            f"PrivateKey = {text(client).decode()}\nAddress = 10.66.0.2/32\n\n"
            f"[Peer]\nPublicKey = {text(public_key(server)).decode()}\nPresharedKey = {text(psk).decode()}\n"
            f"Endpoint = {A.WIREGUARD_SERVER}:{A.WIREGUARD_PORT}\nAllowedIPs = 10.66.0.0/24\n")


def tor_targets(bridge: bool = True) -> dict[str, dict[str, object]]:
    """The lab's Tor targets, in the form OONI's API serves them (``--tor-targets``): each stand-in directory
    authority's OR port and directory port, and (``bridge``) the obfs4 bridge."""
    out: dict[str, dict[str, object]] = {}
    for name, ip in A.TOR_DIRAUTHS:
        for port, protocol in ((A.TOR_OR_PORT, "or_port_dirauth"), (A.TOR_DIR_PORT, "dir_port")):
            out[f"{ip}:{port}"] = {"address": f"{ip}:{port}", "protocol": protocol, "name": name, "source": "lab"}
    if bridge:
        out["lab-obfs4"] = {"address": f"{A.OBFS4_BRIDGE}:{A.OBFS4_PORT}", "protocol": "obfs4", "source": "lab",
                            "params": {"cert": [obfs4_cert()], "iat-mode": ["0"]}}
    return out


# RiseupVPN's API (the riseupvpn nettest's): where its CA, its provider document and its gateways' list are served
RISEUP_CA = ("black.riseup.net", "/ca.crt")
RISEUP_PROVIDER = ("riseup.net", "/provider.json")
RISEUP_EIP = ("api.black.riseup.net", "/3/config/eip-service.json")
RISEUP_API_HOST = RISEUP_EIP[0]  # whose certificate is the provider's own CA's


def riseup_provider() -> bytes:
    """The stand-in's provider.json: what a LEAP client bootstraps from (the fields RiseupVPN's has)."""
    doc = {"api_uri": f"https://{RISEUP_API_HOST}:443", "api_version": "3",
           "ca_cert_uri": f"https://{RISEUP_CA[0]}{RISEUP_CA[1]}", "domain": RISEUP_PROVIDER[0], "name": {"en": "Riseup Networks (lab stand-in)"}, "services": ["openvpn"],
           "languages": ["en"], "default_language": "en"}
    return json.dumps(doc, indent=1).encode()


def riseup_eip_service() -> bytes:
    """The stand-in's eip-service.json (v3): one gateway, OpenVPN over TCP and UDP and obfs4, with the lab's
    obfs4 key, in the layout RiseupVPN's API serves."""
    transports = [
        {"type": "openvpn", "protocols": ["tcp", "udp"], "ports": [str(A.OPENVPN_PORT)]},
        {"type": "obfs4", "protocols": ["tcp"], "ports": [str(A.RISEUP_OBFS4_PORT)],
         "options": {"cert": obfs4_cert(), "iatMode": "0"}},
    ]
    doc = {"version": 3, "serial": 3,
           "gateways": [{"host": "gw1.lab.riseup.net", "ip_address": A.RISEUP_GATEWAY, "location": "lab",
                         "capabilities": {"adblock": False, "filter_dns": False, "limited": False,
                                          "transport": transports}}],
           "locations": {"lab": {"country_code": "XX", "hemisphere": "N", "name": "Lab", "timezone": "0"}},
           "openvpn_configuration": {"auth": "SHA512", "cipher": "AES-256-GCM", "dev": "tun", "keepalive": "10 30",
                                     "tls-version-min": "1.2"}}
    return json.dumps(doc, indent=1).encode()


@lru_cache(maxsize=1)
def ech_config_list() -> bytes:
    """The ECHConfigList the lab's ECH sites publish: X25519, HKDF-SHA256 with AES-128-GCM or
    ChaCha20-Poly1305, names padded to 64 bytes, the public name `ECH_PUBLIC_NAME`."""
    public = ech_key().public_key().public_bytes_raw()
    return ech.encode_config_list(ech.encode_config(ECH_CONFIG_ID, public, ECH_PUBLIC_NAME, ((1, 1), (1, 3)), 64))


def is_service_address(ip: str) -> bool:
    return ip in (A.AUTHORITATIVE, A.PUBLIC_RESOLVER, A.ECHO, A.HELPER, A.SILENT)


@dataclass(frozen=True)
class Response:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def page(host: str) -> bytes:
    """The stable page of `host`: its own title and a body length of 12-40 KB.

    Pages are large enough that throttling to a few hundred kbit/s is visible
    in one fetch (~0.5 s at 150 kbit/s), as it is on real sites.
    """
    h = _h("page:" + host)
    title = f"{host} | lab site {h % 9973}"
    para = (f"<p>This is {host}, a page of the tamperscope lab internet. "
            "Its content is stable, so a probe and a control helper see the same bytes.</p>\n")
    n = 12000 + h % 28000
    head = f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n<body>\n<h1>{host}</h1>\n"
    body = head + para * max(1, (n - len(head)) // len(para)) + "</body></html>\n"
    return body.encode()


def title_of(host: str) -> str:
    return f"{host} | lab site {_h('page:' + host) % 9973}"


def redirect_for(scheme: str, host: str, path: str) -> str | None:
    """Where a request is redirected to, or None."""
    if host.startswith("redirect.") and host.count(".") >= 2:
        return f"https://{host[len('redirect.'):]}/"
    if scheme == "http" and not host.startswith("large.") and _h("https:" + host) % 4 == 0:
        return f"https://{host}{path or '/'}"
    return None


def blob(size: int) -> bytes:
    size = max(0, min(size, MAX_BLOB))
    chunk = hashlib.sha256(b"blob").digest() * 2048  # 64 KiB
    out = chunk * (size // len(chunk) + 1)
    return out[:size]


@lru_cache(maxsize=1)
def tor_consensus() -> bytes:
    """What the lab's directory authorities serve: a consensus's opening lines, zlib-compressed as a ``.z``
    document is (the probe checks that it got one, not that it is valid)."""
    text = ("network-status-version 3\nvote-status consensus\nconsensus-method 33\n"
            "valid-after 2026-01-01 00:00:00\nfresh-until 2026-01-01 01:00:00\nvalid-until 2026-01-01 03:00:00\n"
            "known-flags Authority Exit Fast Guard HSDir Running Stable V2Dir Valid\n")
    return zlib.compress(text.encode())


def respond(scheme: str, host: str, target: str) -> Response:
    """The web farm's answer to `GET target` for `host` over `scheme`."""
    host = host.lower().rstrip(".")
    try:
        parts = urlsplit(target if target.startswith("/") else "/" + target)
    except ValueError:  # "//[x": a network location that is no URL's
        return Response(400, (("Content-Type", "text/plain"),), b"bad request target\n")
    if parts.path == "/blob":
        try:
            size = int(parse_qs(parts.query).get("size", ["0"])[0])
        except ValueError:
            size = 0
        data = blob(size)
        return Response(200, (("Content-Type", "application/octet-stream"),), data)
    if parts.path == CONSENSUS_PATH:
        return Response(200, (("Content-Type", "application/octet-stream"),), tor_consensus())
    loc = redirect_for(scheme, host, target)
    if loc is not None:
        body = f"<html><body>Moved to <a href=\"{loc}\">{loc}</a></body></html>".encode()
        return Response(302 if host.startswith("redirect.") else 301, (("Location", loc), ("Content-Type", "text/html")), body)
    if host.startswith("large."):
        return Response(200, (("Content-Type", "application/octet-stream"),), blob(LARGE_BODY))
    return Response(200, (("Content-Type", "text/html; charset=utf-8"),), page(host))


_RANGE = re.compile(r"bytes=(\d{1,12})-(\d{0,12})")


def ranged(resp: Response, header: str | None) -> Response:
    """``resp`` cut to a single byte range (``Range: bytes=A-B`` or ``bytes=A-``), as a static file server answers:
    206 with ``Content-Range``; 416 for a range that starts past the end; the whole 200 for anything else (several
    ranges, a suffix range, no header), which a server may do."""
    m = _RANGE.fullmatch(header.strip()) if header and resp.status == 200 else None
    if m is None:
        return resp
    size = len(resp.body)
    first = int(m.group(1))
    last = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
    if first >= size:
        return Response(416, (("Content-Range", f"bytes */{size}"),), b"")
    if last < first:
        return resp
    return Response(206, (*resp.headers, ("Content-Range", f"bytes {first}-{last}/{size}")),
                    resp.body[first:last + 1])


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False
