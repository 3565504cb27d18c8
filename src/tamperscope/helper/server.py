"""The control test helper: OONI's web-connectivity test-helper protocol, served by us.

The helper is the uncensored vantage. A probe POSTs
`{"http_request": URL, "http_request_headers": {...}, "tcp_connect": ["ip:port", ...]}`
and gets back what the helper saw for the same target:
`{"dns": {failure, addrs}, "tcp_connect": {ep: {status, failure}},
"tls_handshake": {ep: {server_name, status, failure}}, "http_request": {body_length,
failure, title, headers, status_code}, "ip_info": {ip: {asn, flags}}}` — so our
probe can use OONI's helpers and OONI's probe can use ours.

It refuses with 503 above `max_inflight` requests in flight, 413 above 1 MiB,
400 for a body that is not the protocol's JSON. Requests are bounded in time.
The HTTP server is a small asyncio HTTP/1.1 loop (keep-alive), because the
helper sits in the probe's hot path.

The front end is public, so each client costs bounded time, memory and file
descriptors (`Limits`): a request must arrive within 10 s of its first byte
(else 408), a connection waits 30 s for its next request, an answer the client
does not take within 30 s drops the connection; at most `--max-connections`
are open (the longest idle one makes room if it has waited a second, else 503) and 64 MiB of bodies are
held at once (else 503). A head above 16 KiB or 100 fields is refused with 431;
Transfer-Encoding with 411 (chunked) or 501 (Content-Length is required);
anything two servers could read differently (two Content-Lengths, one with
Transfer-Encoding, a folded or malformed field) with 400.

What a client makes the helper do is bounded too: it connects to no address of
its own machine or network unless allowed (`ControlHelper.reachable`), to at
most 32 of the client's endpoints and 32 of the name's addresses, and it sends
only the client's User-Agent, Accept and Accept-Language (`CLIENT_HEADERS`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import itertools
import logging
import math
import re
import socket
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from ..cli import path_text_arg
from ..model.altsvc import h3_port
from ..model.asn import EMPTY, MAX_TABLE, AsnTable
from ..model.inputs import BadInput, listen_host, read_bounded
from ..netx import Resolver, Trace, fetch, lookup_addresses, tcp_connect, tls_handshake
from ..netx.classify import NetxError
from ..netx.listening import EVERY_INTERFACE, bind_failure, open_files, shown
from ..netx.trace import endpoint

log = logging.getLogger("tamperscope.helper")
MAX_REQUEST = 1 << 20
MAX_HEAD = 16384  # bytes of request line and header fields
MAX_HEADERS = 100
MAX_ENDPOINTS = 32
# OONI's ip_info flags
FLAG_RESOLVED_BY_PROBE = 1
FLAG_RESOLVED_BY_TH = 2
FLAG_BOGON = 4
FLAG_VALID_FOR_DOMAIN = 8
BOGONS = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4", "::/128", "::1/128", "fc00::/7",
    "fe80::/10", "ff00::/8")]


class BadRequest(ValueError):
    pass


class BadOption(ValueError):
    """The helper cannot run with an option as given (or cannot listen where it was told); one line."""


def is_bogon(ip: str) -> bool:
    """ip_info's bogon flag: an address the helper refuses to connect to as `internal` (OONI's bogons, and the
    others no internet host has, however written); False for what is no address."""
    try:
        ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    return internal(ip)


# Internal to a network though `ipaddress` calls them global: IPv6 site-local (deprecated by RFC 3879, still
# routed inside some networks), and Azure's WireServer (168.63.129.16: every Azure VM's platform endpoint, which
# serves its configuration, as 169.254.169.254 does on other clouds).
INTERNAL = [ipaddress.ip_network(n) for n in ("fec0::/10", "168.63.129.16/32")]
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052's well-known prefix: the last 32 bits are IPv4


def embedded_v4(a: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The IPv4 address an IPv6 one reaches, when it is only a way to write one: IPv4-mapped (::ffff:a.b.c.d),
    NAT64 (64:ff9b::a.b.c.d, which a translator on this network turns into a.b.c.d), 6to4 (2002:AABB:CCDD::,
    sent inside IPv4 to a.b.c.d); else `a` itself."""
    if a.version == 4:
        return a
    assert isinstance(a, ipaddress.IPv6Address)
    if a.ipv4_mapped is not None:
        return a.ipv4_mapped
    if a in NAT64:
        return ipaddress.IPv4Address(int(a) & 0xFFFFFFFF)
    return a.sixtofour or a


def internal(ip: str) -> bool:
    """Whether `ip` is this machine's or its network's rather than the internet's: loopback, private,
    link-local, site-local, CGNAT, multicast, reserved, unspecified (which Linux takes for loopback), any of
    OONI's bogons, or one of those written as IPv6 (`embedded_v4`). Not an address at all: True."""
    try:
        a = embedded_v4(ipaddress.ip_address(ip.split("%", 1)[0]))
    except ValueError:
        return True
    return (not a.is_global or a.is_multicast or a.is_unspecified or a.is_reserved
            or any(a in n for n in (*BOGONS, *INTERNAL) if n.version == a.version))


def local(ip: str) -> bool:
    """Whether `ip` is one of this machine's own addresses (its public one too, which reaches the services
    it serves on every interface, and through firewalls that trust the loopback interface). Asked of the
    kernel without sending anything: a UDP socket "connected" to an address of this machine is given that
    very address as its source (a local route's; RFC 6724's first rule)."""
    try:
        a = ipaddress.ip_address(ip)
        with socket.socket(socket.AF_INET6 if a.version == 6 else socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((ip, 9))
            return ipaddress.ip_address(s.getsockname()[0].split("%", 1)[0]) == a
    except (ValueError, OSError):  # no route to it (then no connection either), or no IPv6 here
        return False


def parse_networks(values: Sequence[str], option: str = "--allow-net"
                   ) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``--allow-net`` (or ``--only-net``) values as networks; ValueError naming the one that is not a CIDR."""
    out = []
    for v in values:
        try:
            out.append(ipaddress.ip_network(v, strict=False))
        except ValueError:
            raise ValueError(f"{option} takes a network like 198.18.0.0/15, not {v[:64]!r}") from None
    return tuple(out)


def title_of(body: bytes) -> str:
    """The first ``<title>``'s text, in time linear in the body. The page comes from whatever server a
    client named: the regex this replaces (``<title[^>]*>(.*?)</title>``) took 7 s on 64 KiB of
    ``<title>`` repeated, which anyone could have asked of this helper again and again."""
    head = body[:65536]
    lower = head.lower()
    at = lower.find(b"<title")
    if at < 0:
        return ""
    # The first "<title" decides: with no ">" or no "</title>" after it, no later one has either.
    start = head.find(b">", at + 6)
    end = lower.find(b"</title>", start + 1) if start >= 0 else -1
    return head[start + 1:end].decode("utf-8", "replace").strip()[:256] if end >= 0 else ""


def _split_endpoint(ep: str) -> tuple[str, int]:
    if ep.startswith("["):
        host, _, port = ep[1:].partition("]:")
    else:
        host, _, port = ep.rpartition(":")
        if ":" in host:  # an IPv6 address goes in brackets, as Go's net.SplitHostPort wants ("too many colons"):
            raise ValueError(ep)  # "2001:db8::1:443" is an address itself, or ::1 on port 443 (a helper's remark)
    ipaddress.ip_address(host)
    if not (port.isascii() and port.isdigit() and len(port) <= 5):  # int() would take " 80", "8_0", "+80"
        raise ValueError(ep)
    p = int(port)
    if not 0 < p < 65536:
        raise ValueError(ep)
    return host, p


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError for a port beyond 65535
    except ValueError:  # e.g. "http://[::1/"
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and port != 0  # 0 would become 80 or 443


HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}")
HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")  # no control character: no CR, LF or NUL


# The fields of a client's request the helper sends in its own, as OONI's helper does: those that choose
# which page a site serves. Any other (Cookie, Authorization, X-Forwarded-For, thousands of made-up ones) would
# make the helper send what a client wants in its own name, and 1 MiB of them went out again on every redirect.
CLIENT_HEADERS = ("user-agent", "accept", "accept-language")
MAX_HEADER_VALUES = 4  # values of one of those passed on, however many spellings of its name are given
MAX_HEADER_VALUE = 1024  # characters of one value passed on


def _sendable_header(name: str, value: str) -> bool:
    """Whether the helper passes a client's header on in its own request: one of `CLIENT_HEADERS`, with a
    value it may send as is (one a client cannot use to add fields or break the request line)."""
    return (bool(HEADER_NAME.fullmatch(name)) and bool(HEADER_VALUE.fullmatch(value))
            and name.lower() in CLIENT_HEADERS)


def parse_control_request(body: bytes) -> tuple[str, list[tuple[str, str]], list[str]]:
    try:
        req = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("body is not JSON") from None
    if not isinstance(req, dict):
        raise BadRequest("body is not a JSON object")
    url = req.get("http_request")
    if not isinstance(url, str) or not _is_http_url(url):
        raise BadRequest("http_request must be an http(s) URL")
    headers: list[tuple[str, str]] = []
    raw_headers = req.get("http_request_headers") or {}
    if not isinstance(raw_headers, dict):
        raise BadRequest("http_request_headers must be an object")
    taken: dict[str, int] = {}  # values passed on, by lowercase name
    for k, v in raw_headers.items():
        vals = v if isinstance(v, list) else [v]
        for val in vals[:MAX_HEADER_VALUES]:
            if (isinstance(val, str) and _sendable_header(k, val[:MAX_HEADER_VALUE])
                    and taken.get(k.lower(), 0) < MAX_HEADER_VALUES):
                taken[k.lower()] = taken.get(k.lower(), 0) + 1
                headers.append((k, val[:MAX_HEADER_VALUE]))
    eps = req.get("tcp_connect") or []
    if not isinstance(eps, list) or not all(isinstance(e, str) for e in eps):
        raise BadRequest("tcp_connect must be a list of ip:port strings")
    good = []
    for e in eps[:MAX_ENDPOINTS]:
        try:
            _split_endpoint(e)
            good.append(e)
        except ValueError:
            raise BadRequest(f"bad endpoint {e[:64]!r}") from None
    return url, headers, good


def _chain_info(trace: Trace, ep: str) -> dict[str, Any]:
    """Our extension of the TH protocol: who issued the certificate the helper saw, and its key."""
    rec = next((r for r in reversed(trace.tls_handshakes) if r.get("address") == ep), None)
    if rec is None:
        return {}
    return {"x_issuer": rec.get("x_issuer"), "x_spki_sha256": rec.get("x_spki_sha256")}


class ControlHelper:
    """Measures a target from the uncensored side."""

    def __init__(self, *, resolver: Resolver, ca_bundle: str | None, asn: AsnTable = EMPTY,
                 timeout: float = 10.0, max_inflight: int = 64,
                 allow_networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
                 only_networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = ()) -> None:
        self.resolver = resolver
        self.ca_bundle = ca_bundle
        self.asn = asn
        self.timeout = timeout
        self.max_inflight = max_inflight
        self.inflight = 0
        self.allow_networks = tuple(allow_networks)
        self.only_networks = tuple(only_networks)

    def reachable(self, ip: str) -> bool:
        """Whether the helper connects to `ip` on a client's behalf. Anyone may ask it to measure anything:
        an internal address (its own machine's services, on any of its addresses, its network's, a cloud's
        metadata service at 169.254.169.254) is not connected to unless its network was allowed
        (`--allow-net`; the lab's 198.18.0.0/15). With `--only-net`, nothing outside those networks either (the
        lab's helper: nothing it measures leaves the lab, whatever a client names). A client asking for one
        learns nothing from the answer: the endpoint is left out of ``tcp_connect``, and a fetch that would
        reach one fails with dns_bogon_error."""
        try:
            a = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return False
        if self.only_networks and not any(a in n for n in self.only_networks if n.version == a.version):
            return False
        if any(a in n for n in self.allow_networks if n.version == a.version):
            return True
        return not internal(ip) and not local(str(a))

    async def measure(self, url: str, headers: Sequence[tuple[str, str]], endpoints: Sequence[str]) -> dict[str, Any]:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
        trace = Trace(record_io=False)
        out: dict[str, Any] = {"tcp_connect": {}, "tls_handshake": {}, "quic_handshake": {}, "http3_request": None}
        probe_ips = {_split_endpoint(e)[0] for e in endpoints}
        try:
            ipaddress.ip_address(host)
            addrs: list[str] = [host]
            dns_failure = None
        except ValueError:
            res = await lookup_addresses(host, resolver=self.resolver, trace=trace, timeout=self.timeout / 2)
            addrs, dns_failure = list(res.addresses), res.failure
        out["dns"] = {"failure": dns_failure, "addrs": addrs}
        # At most MAX_ENDPOINTS of the name's addresses are connected to, as of the client's endpoints: a name
        # is the client's to choose, and an answer can hold hundreds, each a connection (and a descriptor) here.
        ours = list(itertools.islice((a for a in dict.fromkeys(addrs) if self.reachable(a)), MAX_ENDPOINTS))
        eps = list(dict.fromkeys([*(ep for ep in endpoints if self.reachable(_split_endpoint(ep)[0])),
                                  *(f"[{a}]:{port}" if ":" in a else f"{a}:{port}" for a in ours)]))

        async def one(ep: str) -> None:
            ip, p = _split_endpoint(ep)
            try:
                stream = await tcp_connect(ip, p, trace=trace, timeout=self.timeout / 2)
            except NetxError as e:
                out["tcp_connect"][ep] = {"status": False, "failure": e.failure}
                return
            out["tcp_connect"][ep] = {"status": True, "failure": None}
            try:
                if p == 443 or parts.scheme == "https" and p == port:
                    try:
                        tls = await tls_handshake(stream, server_name=host, trace=trace, ca_bundle=self.ca_bundle,
                                                  alpn=("h2", "http/1.1"), timeout=self.timeout / 2)
                        await tls.aclose()
                        out["tls_handshake"][ep] = {"server_name": host, "status": True, "failure": None,
                                                    **_chain_info(trace, ep)}
                    except NetxError as e:
                        out["tls_handshake"][ep] = {"server_name": host, "status": False, "failure": e.failure,
                                                    **_chain_info(trace, ep)}
            finally:
                await stream.aclose()

        async def http() -> None:
            result = await fetch(url, trace=trace, resolver=self.resolver, ca_bundle=self.ca_bundle,
                                 timeout=self.timeout, headers=list(headers) or (("Accept", "*/*"),),
                                 allow=self.reachable)
            final = result.final
            if final is None or result.failure is not None and (final.status in (301, 302, 303, 307, 308)):
                out["http_request"] = {"body_length": -1, "failure": result.failure, "title": "", "headers": {},
                                       "status_code": -1, "discovered_h3_endpoint": ""}
                return
            hdrs: dict[str, str] = {}
            for k, v in final.headers:
                name = k.decode("latin-1")
                if final.http_version == "HTTP/2":
                    name = "-".join(w[:1].upper() + w[1:] for w in name.split("-"))
                hdrs.setdefault(name, v.decode("latin-1"))
            out["http_request"] = {"body_length": len(final.body), "failure": result.failure,
                                   "title": title_of(final.body), "headers": hdrs, "status_code": final.status,
                                   "discovered_h3_endpoint": ""}
            final_host = (urlsplit(final.url).hostname or "").lower() if final.url else ""
            if final_host == host:  # which site's Alt-Svc it is (read by measure, not sent)
                out["http_request"]["x_final_host"] = host

        async with asyncio.timeout(self.timeout * 2):
            async with asyncio.TaskGroup() as tg:
                for ep in eps:
                    tg.create_task(one(ep))
                tg.create_task(http())
        final_host = (out.get("http_request") or {}).pop("x_final_host", None)
        if parts.scheme == "https" and final_host == host:
            await self._quic(host, eps, out)
        ip_info = {}
        for ip in dict.fromkeys([*probe_ips, *addrs]):
            flags = (FLAG_RESOLVED_BY_PROBE if ip in probe_ips else 0) | (FLAG_RESOLVED_BY_TH if ip in addrs else 0)
            if is_bogon(ip):
                flags |= FLAG_BOGON
            for ep, tls in out["tls_handshake"].items():
                if tls["status"] and _split_endpoint(ep)[0] == ip:
                    flags |= FLAG_VALID_FOR_DOMAIN
            ip_info[ip] = {"asn": self.asn.lookup(ip).asn, "flags": flags}
        out["ip_info"] = ip_info
        return out

    async def _quic(self, host: str, eps: Sequence[str], out: dict[str, Any]) -> None:
        """HTTP/3, when the site's own answer advertised it (``Alt-Svc: h3``): as OONI's helper does, name the
        endpoint in ``discovered_h3_endpoint`` and fill ``quic_handshake`` with a QUIC handshake to every
        address measured, so that a probe whose QUIC times out can tell a blocked QUIC from a server without."""
        req = out.get("http_request") or {}
        headers = req.get("headers") or {}
        altsvc = next((v for k, v in headers.items() if k.lower() == "alt-svc"), None)
        port = h3_port(altsvc) if req.get("failure") is None else None
        if port is None:
            return
        req["discovered_h3_endpoint"] = f"{host}:{port}"
        from ..netx.quic import handshake as quic_handshake  # aioquic costs 50 ms to import: only when needed

        ips = list(dict.fromkeys(_split_endpoint(ep)[0] for ep in eps))
        trace = Trace(record_io=False)

        async def one(ip: str) -> None:
            rec = await quic_handshake(ip, port, server_name=host, trace=trace, ca_bundle=self.ca_bundle,
                                       timeout=self.timeout / 2)
            out["quic_handshake"][endpoint(ip, port)] = {"server_name": host, "status": rec["failure"] is None,
                                                         "failure": rec["failure"]}

        async with asyncio.TaskGroup() as tg:
            for ip in ips:
                tg.create_task(one(ip))


@dataclass(frozen=True)
class Limits:
    """How far the HTTP front end lets one client go. A public helper meets clients that connect and send
    nothing, send their head a byte at a time, never read their answers, or open thousands of connections;
    each of them must cost bounded time, memory and file descriptors, and never stop the others."""

    connections: int = 1024  # client connections open at once; beyond, the longest idle one is closed, else 503
    # (idle: waiting for a request for `evict_after` at least)
    idle: float = 30.0  # s a connection may wait for the first byte of its next request (keep-alive)
    request: float = 10.0  # s from a request's first byte to the end of its body, else 408
    write: float = 30.0  # s a client gets to take in an answer, else the connection is dropped
    linger: float = 1.0  # s spent reading what a refused client still sends, so that it gets to read the refusal
    # s a connection must have waited for a request before a new one may close it to make room: one just
    # accepted, whose request is in flight or already in its buffer, is answered (at worst 503), not dropped
    evict_after: float = 1.0
    bodies: int = 64 << 20  # bytes of request bodies held at once over all connections; beyond, 503


class Refusal(Exception):
    """A request answered with an error `status` and `message`, and the connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Head:
    """A request's line and header section, checked."""

    method: str
    path: str  # the target's path, without query; an absolute-form target's too
    keep: bool  # whether the client keeps the connection open for another request
    length: int  # Content-Length, bytes; 0 when absent
    expect_continue: bool  # the client waits for "100 Continue" before sending its body


TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
TARGET = re.compile(r"[!-~]+")  # visible ASCII
BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # a field value holds visible characters, spaces and tabs
VERSION = re.compile(r"HTTP/[0-9]\.[0-9]")
DIGITS = re.compile(r"[0-9]{1,16}")


def parse_head(head: bytes) -> Head:
    """The request line and header fields of ``head`` (which ends with an empty line), or `Refusal`. Refused
    rather than guessed at: anything two servers could read differently (request smuggling), such as two
    different Content-Lengths, Content-Length with Transfer-Encoding, whitespace before a colon, a folded line."""
    lines = head.decode("latin-1").split("\r\n")[:-2]
    parts = lines[0].split(" ") if lines else []
    if len(parts) != 3 or not TOKEN.fullmatch(parts[0]) or not TARGET.fullmatch(parts[1]):
        raise Refusal(400, "bad request line")
    method, target, version = parts
    if not VERSION.fullmatch(version):
        raise Refusal(400, "bad HTTP version")
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise Refusal(505, f"{version} is not supported: HTTP/1.1 is")
    if len(lines) - 1 > MAX_HEADERS:
        raise Refusal(431, f"more than {MAX_HEADERS} header fields")
    fields: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not TOKEN.fullmatch(name):
            raise Refusal(400, "bad header field")
        if BAD_VALUE.search(value):  # a bare CR, a NUL, a control: RFC 9112 says refuse, and others may not
            raise Refusal(400, "bad header field value")
        fields.setdefault(name.lower(), []).append(value.strip(" \t"))
    if "transfer-encoding" in fields:
        if "content-length" in fields:
            raise Refusal(400, "both Transfer-Encoding and Content-Length")
        codings = ",".join(fields["transfer-encoding"]).lower().replace(" ", "").split(",")
        if codings[-1] == "chunked":
            raise Refusal(411, "a chunked body is not accepted: send Content-Length")
        raise Refusal(501, "Transfer-Encoding is not supported: send Content-Length")
    lengths = {v.strip(" \t") for f in fields.get("content-length", ["0"]) for v in f.split(",")}
    if len(lengths) != 1 or not DIGITS.fullmatch(next(iter(lengths))):
        raise Refusal(400, "bad Content-Length")
    length = int(lengths.pop())
    if length > MAX_REQUEST:
        raise Refusal(413, "request too large")
    tokens = {t.strip(" \t").lower() for f in fields.get("connection", []) for t in f.split(",")}
    keep = "close" not in tokens if version == "HTTP/1.1" else "keep-alive" in tokens
    expect = version == "HTTP/1.1" and "100-continue" in ",".join(fields.get("expect", [])).lower()
    return Head(method, _path(target), keep, length, expect)


def _path(target: str) -> str:
    if not target.startswith(("http://", "https://")):
        return target.partition("?")[0]
    try:  # absolute form, as a proxy would send
        return urlsplit(target).path or "/"
    except ValueError:  # e.g. "http://[::1/"
        raise Refusal(400, "bad request target") from None


MAX_REFUSING = 64  # connections refused for the cap that may linger at once
ROUTES: dict[str, tuple[str, ...]] = {"/": ("GET", "POST"), "/health": ("GET",), "/api/v1/ctrl": ("POST",)}


class HelperServer:
    """HTTP/1.1 front: POST / (and /api/v1/ctrl) with the control request; GET / (and /health) for status."""

    def __init__(self, helper: ControlHelper, limits: Limits = Limits()) -> None:
        self.helper = helper
        self.limits = limits
        self.conns: set[asyncio.StreamWriter] = set()  # open client connections
        self.idle: dict[asyncio.StreamWriter, float] = {}  # those waiting for a request, and since when (loop time)
        self.body_bytes = 0  # request bodies being read or held, bytes
        self.refusing = 0  # connections beyond the cap, answered 503 and lingering

    async def serve(self, host: str, port: int, *, share_port: bool = False) -> asyncio.base_events.Server:
        """Listen. Without ``share_port`` (SO_REUSEPORT) a second helper on the same port fails to start rather
        than silently taking half the clients; the lab shares port 80 of the helper's address with its web
        farm's wildcard socket, and so asks for it."""
        return await asyncio.start_server(self._conn, host, port, backlog=1024, limit=MAX_HEAD, reuse_port=share_port)

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if len(self.conns) >= self.limits.connections and not self._close_longest_idle():
                await self._refuse_connection(reader, writer)
                return
            self.conns.add(writer)
            while await self._one(reader, writer):
                pass
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError, OSError):
            pass  # the client went away, or would not take its answer in time
        except asyncio.CancelledError:
            # The helper is stopping. The task ends here, not cancelled: Python 3.11's stream callback logs a
            # traceback for a cancelled connection task. Nothing waits on it, so no cancellation is lost.
            writer.transport.abort()
        except Exception:
            log.exception("helper connection failed")
        finally:
            self.conns.discard(writer)
            self.idle.pop(writer, None)
            try:
                await self._close(writer)  # after an abort, at once
            except asyncio.CancelledError:  # stopped while it closes: as above
                writer.transport.abort()

    async def _close(self, writer: asyncio.StreamWriter) -> None:
        """Close, leaving the client `Limits.write` seconds to take the answer still buffered, if any: a plain
        close keeps the connection until it does, which a client that never reads never does."""
        writer.close()
        try:
            async with asyncio.timeout(self.limits.write):
                await writer.wait_closed()
        except TimeoutError:
            writer.transport.abort()
        except (ConnectionError, OSError):
            pass
        except BaseException:  # the server shutting down
            writer.transport.abort()
            raise

    async def _refuse_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """503 to a connection beyond the cap. It lingers, so that the client reads the answer rather than a
        reset, only while few others do: a flood must not hold descriptors that way either."""
        await self._reply(writer, 503, {"error": "busy: too many connections"}, False)
        if self.refusing < MAX_REFUSING:
            self.refusing += 1
            try:
                await self._linger(reader, writer)
            finally:
                self.refusing -= 1

    def _close_longest_idle(self) -> bool:
        """Make room for a new connection by closing the one that has waited longest for a request, if it has
        waited `Limits.evict_after` at least."""
        if not self.idle:
            return False
        oldest = min(self.idle, key=self.idle.__getitem__)
        if asyncio.get_running_loop().time() - self.idle[oldest] < self.limits.evict_after:
            return False
        del self.idle[oldest]
        self.conns.discard(oldest)
        oldest.close()  # its reader sees the end of the stream
        return True

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read and answer one request; whether the connection stays open for another."""
        self.idle[writer] = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(self.limits.idle):
                first = await reader.read(1)
        finally:
            self.idle.pop(writer, None)
        if not first or writer.is_closing():
            return False
        held = 0
        try:
            try:
                async with asyncio.timeout(self.limits.request):
                    head = parse_head(first + await self._read_head(reader))
                    held = self._hold(head.length)
                    if head.expect_continue and head.length:
                        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    body = await reader.readexactly(head.length)
            except Refusal as e:
                await self._reply(writer, e.status, {"error": e.message}, False)
                await self._linger(reader, writer)
                return False
            except TimeoutError:
                await self._reply(writer, 408, {"error": "the request did not arrive in time"}, False)
                await self._linger(reader, writer)  # a client still sending would get a reset, not the 408
                return False
            await self._route(writer, head, body)
            return head.keep
        finally:
            self.body_bytes -= held

    async def _read_head(self, reader: asyncio.StreamReader) -> bytes:
        try:
            return await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise Refusal(431, f"header section larger than {MAX_HEAD} bytes") from None

    def _hold(self, length: int) -> int:
        """Count `length` bytes of body against `Limits.bodies`, or refuse with 503."""
        if self.body_bytes + length > self.limits.bodies:
            raise Refusal(503, "busy: too many request bodies at once")
        self.body_bytes += length
        return length

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Say we are done and drop what the client still sends for a moment: closing with unread data
        resets the connection, and a client still sending its body would lose the answer it was given."""
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            if writer.can_write_eof():
                writer.write_eof()
            async with asyncio.timeout(self.limits.linger):
                while await reader.read(65536):
                    pass

    async def _route(self, writer: asyncio.StreamWriter, head: Head, body: bytes) -> None:
        methods = ROUTES.get(head.path)
        if methods is None:
            await self._reply(writer, 404, {"error": "not found"}, head.keep)
        elif head.method not in methods:
            await self._reply(writer, 405, {"error": f"{head.method} is not allowed here"}, head.keep,
                              allow=", ".join(methods))
        elif head.method == "GET":
            await self._reply(writer, 200, {"service": "tamperscope control helper",
                                            "protocol": "ooni-webconnectivity-th", "inflight": self.helper.inflight},
                              head.keep)
        else:
            await self._control(writer, body, head.keep)

    async def _control(self, writer: asyncio.StreamWriter, body: bytes, keep: bool) -> None:
        h = self.helper
        if h.inflight >= h.max_inflight:
            await self._reply(writer, 503, {"error": "busy: too many requests in flight"}, keep)
            return
        try:
            url, headers, eps = parse_control_request(body)
        except BadRequest as e:
            await self._reply(writer, 400, {"error": str(e)}, keep)
            return
        h.inflight += 1
        try:
            resp = await h.measure(url, headers, eps)
        except TimeoutError:
            await self._reply(writer, 504, {"error": "control measurement timed out"}, keep)
            return
        except Exception:  # our bug, not the client's: said in the log, and answered
            log.exception("control measurement of %.200s failed", url)
            await self._reply(writer, 500, {"error": "control measurement failed"}, False)
            return
        finally:
            h.inflight -= 1
        # The address the request came from, told to that client alone and logged nowhere: a probe behind NAT
        # learns its public address, which it then scrubs from its measurements (OONI's probe asks a STUN or
        # IP-lookup service for it; this answer needs no contact of its own).
        peer = writer.get_extra_info("peername")
        if isinstance(peer, tuple) and peer and isinstance(peer[0], str):
            resp["x_client_address"] = peer[0].split("%", 1)[0]
        await self._reply(writer, 200, resp, keep)

    async def _reply(self, writer: asyncio.StreamWriter, status: int, obj: object, keep: bool, allow: str = "") -> None:
        data = orjson.dumps(obj)
        extra = f"Allow: {allow}\r\n" if allow else ""
        writer.write(f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\nConnection: {'keep-alive' if keep else 'close'}\r\n{extra}\r\n"
                     .encode() + data)
        try:
            async with asyncio.timeout(self.limits.write):  # a client that never reads holds nothing for long
                await writer.drain()
        except TimeoutError:
            writer.transport.abort()  # close() would wait for the client to read what is buffered: forever
            raise


def load_asn_table(path: str | None) -> AsnTable:
    if not path:
        return EMPTY
    try:
        return AsnTable.from_text(read_bounded(path, MAX_TABLE, "ASN table"), path)
    except ValueError as e:  # BadInput: unreadable, not UTF-8, or larger than any real table (/dev/zero)
        raise BadOption(str(e)) from None


MAX_INFLIGHT = 100_000
MAX_TIMEOUT = 600.0


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--host", default="127.0.0.1",
                    help="address or name to listen on (default 127.0.0.1; 0.0.0.0 for every IPv4 interface, "
                         ":: for every IPv6 one)")
    ap.add_argument("--port", type=int, default=8080, help="port to listen on, 1-65535 (default 8080)")
    ap.add_argument("--resolver", default=None,
                    help="IP of a DNS server to resolve with over UDP (default: the system resolver)")
    ap.add_argument("--ca-bundle", type=path_text_arg, default=None,
                    help="CA bundle (PEM) to verify TLS with (default: the system's)")
    ap.add_argument("--asn-table", type=path_text_arg, default=None,
                    help="prefix-to-ASN table in iptoasn.com TSV format (or its .tsv.gz), for ip_info")
    ap.add_argument("--max-inflight", type=int, default=64,
                    help=f"answer 503 above this many requests in flight, 1-{MAX_INFLIGHT:,} (default 64)")
    ap.add_argument("--max-connections", type=int, default=1024,
                    help=f"client connections open at once, 1-{MAX_INFLIGHT:,} and at most half the open-file limit; "
                         "beyond, the longest idle one (waiting a second at least) is closed, else the new one is answered "
                         "503 (default 1024)")
    ap.add_argument("--timeout", type=float, default=10.0,
                    help=f"seconds per measurement step, at most {MAX_TIMEOUT:g} (default 10)")
    ap.add_argument("--allow-net", action="append", default=[], metavar="CIDR",
                    help="an internal network the helper may connect to for its clients (repeatable). By default "
                         "it connects to no loopback, private, link-local or other bogon address, so that no client "
                         "can use it to reach this machine's services or its network's; a lab or a test bed on "
                         "private addresses names its network here (the lab: 198.18.0.0/15)")
    ap.add_argument("--only-net", action="append", default=[], metavar="CIDR",
                    help="connect for clients to no address outside this network (repeatable; with --allow-net for "
                         "an internal one). The lab's helper runs with 198.18.0.0/15, so that nothing it measures "
                         "leaves the lab")
    ap.add_argument("--ready", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--share-port", action="store_true", help=argparse.SUPPRESS)  # the lab's: see HelperServer.serve


def check_options(args: argparse.Namespace) -> None:
    """Refuse, with one line (BadOption), what would break every answer or fail when listening;
    normalises ``args.host``."""
    try:
        args.host = listen_host(args.host)
    except BadInput as e:
        raise BadOption(f"--host: {e}") from None
    if not 0 < args.port < 65536:
        raise BadOption(f"--port must be between 1 and 65535, not {args.port}")
    if args.resolver is not None:  # empty too: an empty --resolver is a mistake, not "the system's"
        try:
            args.resolver = str(ipaddress.ip_address(args.resolver))
        except ValueError:
            raise BadOption(f"--resolver must be an IP address, not {args.resolver!r}") from None
    try:
        args.allow_net = [str(n) for n in parse_networks(args.allow_net)]
        args.only_net = [str(n) for n in parse_networks(getattr(args, "only_net", []), "--only-net")]
    except ValueError as e:
        raise BadOption(str(e)) from None
    if not 1 <= args.max_inflight <= MAX_INFLIGHT:
        raise BadOption(f"--max-inflight must be between 1 and {MAX_INFLIGHT}, not {args.max_inflight}")
    if not 1 <= args.max_connections <= MAX_INFLIGHT:
        raise BadOption(f"--max-connections must be between 1 and {MAX_INFLIGHT}, not {args.max_connections}")
    if not (math.isfinite(args.timeout) and 0 < args.timeout <= MAX_TIMEOUT):
        raise BadOption(f"--timeout must be more than 0 and at most {MAX_TIMEOUT:g} seconds, not {args.timeout}")
    if args.ca_bundle is not None:
        try:
            ssl.create_default_context(cafile=args.ca_bundle)
        except ssl.SSLError:  # an OSError too: first
            raise BadOption(f"CA bundle {args.ca_bundle} holds no certificate (PEM) that could be read") from None
        except OSError as e:
            raise BadOption(f"cannot read CA bundle {args.ca_bundle}: {e.strerror or e}") from None


def connection_room(wanted: int) -> int:
    """`wanted` client connections, or fewer if the open-file limit (raised to its hard limit first) leaves no
    room: half of it goes to the measurements' own sockets. A helper out of descriptors serves no one."""
    soft = open_files()
    room = max(1, soft // 2) if soft is not None else wanted
    if room < wanted:
        print(f"tamperscope helper: at most {room} connections at once, half the open-file limit of {soft} "
              "(ulimit -n)", file=sys.stderr, flush=True)
    return min(wanted, room)


async def serve_forever(args: argparse.Namespace) -> None:
    check_options(args)
    resolver = Resolver("udp", args.resolver, duplicate_window=0.0) if args.resolver else Resolver()
    helper = ControlHelper(resolver=resolver, ca_bundle=args.ca_bundle, asn=load_asn_table(args.asn_table),
                           timeout=args.timeout, max_inflight=args.max_inflight,
                           allow_networks=parse_networks(args.allow_net),
                           only_networks=parse_networks(args.only_net, "--only-net"))
    where = shown((args.host, args.port))
    try:
        server = await HelperServer(helper, Limits(connections=connection_room(args.max_connections))).serve(
            args.host, args.port, share_port=args.share_port)
    except socket.gaierror as e:
        raise BadOption(f"cannot listen on {where}: {args.host} does not resolve ({e.strerror})") from None
    except OSError as e:
        raise BadOption(f"cannot listen on {where}: {bind_failure(e, args.host)}") from None
    if args.ready:
        args.ready.write_text("ok")
    else:
        bound = ", ".join(f"http://{shown(s.getsockname())}/" for s in server.sockets)
        every = EVERY_INTERFACE.get(args.host, "")
        print(f"tamperscope helper: listening on {bound}{every}", file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tamperscope helper", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import uvloop

    try:
        check_options(args)
        uvloop.run(serve_forever(args))
    except BadOption as e:
        ap.exit(2, f"{ap.prog}: {e}\n")
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
