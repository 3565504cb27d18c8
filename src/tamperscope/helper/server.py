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
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import math
import socket
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from ..model.asn import EMPTY, AsnTable
from ..model.inputs import BadInput, listen_host
from ..netx import Resolver, Trace, fetch, lookup_addresses, tcp_connect, tls_handshake
from ..netx.classify import NetxError
from ..netx.listening import EVERY_INTERFACE, bind_failure, shown

log = logging.getLogger("tamperscope.helper")
MAX_REQUEST = 1 << 20
MAX_HEAD = 65536
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
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if a.version == 6 and a.ipv4_mapped is not None:  # ::ffff:127.0.0.1 is 127.0.0.1
        a = a.ipv4_mapped
    return any(a in n for n in BOGONS if n.version == a.version)


def internal(ip: str) -> bool:
    """Whether `ip` is this machine's or its network's rather than the internet's: loopback, private,
    link-local, CGNAT, multicast, reserved, unspecified (which Linux takes for loopback), any of OONI's
    bogons, or one of those behind an IPv4-mapped IPv6 address. Not an address at all: True."""
    try:
        a = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return True
    if a.version == 6 and a.ipv4_mapped is not None:
        a = a.ipv4_mapped
    return (not a.is_global or a.is_multicast or a.is_unspecified or a.is_reserved
            or any(a in n for n in BOGONS if n.version == a.version))


def parse_networks(values: Sequence[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``--allow-net`` values as networks; ValueError naming the one that is not a CIDR."""
    out = []
    for v in values:
        try:
            out.append(ipaddress.ip_network(v, strict=False))
        except ValueError:
            raise ValueError(f"--allow-net takes a network like 198.18.0.0/15, not {v[:64]!r}") from None
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
    ipaddress.ip_address(host)
    p = int(port)
    if not 0 < p < 65536:
        raise ValueError(ep)
    return host, p


def parse_control_request(body: bytes) -> tuple[str, list[tuple[str, str]], list[str]]:
    try:
        req = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("body is not JSON") from None
    if not isinstance(req, dict):
        raise BadRequest("body is not a JSON object")
    url = req.get("http_request")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        raise BadRequest("http_request must be an http(s) URL")
    headers: list[tuple[str, str]] = []
    raw_headers = req.get("http_request_headers") or {}
    if not isinstance(raw_headers, dict):
        raise BadRequest("http_request_headers must be an object")
    for k, v in raw_headers.items():
        vals = v if isinstance(v, list) else [v]
        for val in vals[:4]:
            if isinstance(val, str) and k.lower() not in ("host", "content-length", "connection") and "\n" not in val:
                headers.append((str(k)[:128], val[:1024]))
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
                 allow_networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = ()) -> None:
        self.resolver = resolver
        self.ca_bundle = ca_bundle
        self.asn = asn
        self.timeout = timeout
        self.max_inflight = max_inflight
        self.inflight = 0
        self.allow_networks = tuple(allow_networks)

    def reachable(self, ip: str) -> bool:
        """Whether the helper connects to `ip` on a client's behalf. Anyone may ask it to measure anything:
        an internal address (its own machine's services, its network's, a cloud's metadata service at
        169.254.169.254) is not connected to unless its network was allowed (`--allow-net`; the lab's
        198.18.0.0/15). A client asking for one learns nothing from the answer: the endpoint is left out of
        ``tcp_connect``, and a fetch that would reach one fails with dns_bogon_error."""
        if not internal(ip):
            return True
        try:
            a = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return False
        return any(a in n for n in self.allow_networks if n.version == a.version)

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
        eps = list(dict.fromkeys([*endpoints, *(f"[{a}]:{port}" if ":" in a else f"{a}:{port}" for a in addrs)]))
        eps = [ep for ep in eps if self.reachable(_split_endpoint(ep)[0])]

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
                name = "-".join(w[:1].upper() + w[1:] for w in name.split("-")) if final.http_version == "HTTP/2" else name
                hdrs.setdefault(name, v.decode("latin-1"))
            out["http_request"] = {"body_length": len(final.body), "failure": result.failure,
                                   "title": title_of(final.body), "headers": hdrs, "status_code": final.status,
                                   "discovered_h3_endpoint": ""}

        async with asyncio.timeout(self.timeout * 2):
            async with asyncio.TaskGroup() as tg:
                for ep in eps:
                    tg.create_task(one(ep))
                tg.create_task(http())
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


class HelperServer:
    """HTTP/1.1 front: POST / (and /api/v1/ctrl) with the control request."""

    def __init__(self, helper: ControlHelper) -> None:
        self.helper = helper

    async def serve(self, host: str, port: int) -> asyncio.base_events.Server:
        return await asyncio.start_server(self._conn, host, port, backlog=1024, limit=MAX_HEAD, reuse_port=True)

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                async with asyncio.timeout(30):
                    head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                if len(parts) != 3:
                    await self._reply(writer, 400, {"error": "bad request line"}, False)
                    return
                hdrs = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        hdrs[k.strip().lower()] = v.strip()
                keep = hdrs.get("connection", "").lower() != "close"
                try:
                    n = int(hdrs.get("content-length", "0"))
                except ValueError:
                    n = -1
                if n < 0 or n > MAX_REQUEST:
                    await self._reply(writer, 413, {"error": "request too large"}, False)
                    return
                async with asyncio.timeout(30):
                    body = await reader.readexactly(n)
                method, target = parts[0], parts[1]
                if method == "GET" and target in ("/", "/health"):
                    await self._reply(writer, 200, {"service": "tamperscope control helper", "protocol": "ooni-webconnectivity-th",
                                                    "inflight": self.helper.inflight}, keep)
                elif method == "POST" and target in ("/", "/api/v1/ctrl"):
                    await self._control(writer, body, keep)
                else:
                    await self._reply(writer, 404, {"error": "not found"}, keep)
                if not keep:
                    return
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError, OSError):
            pass
        except Exception:
            log.exception("helper connection failed")
        finally:
            writer.close()

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
        finally:
            h.inflight -= 1
        await self._reply(writer, 200, resp, keep)

    async def _reply(self, writer: asyncio.StreamWriter, status: int, obj: object, keep: bool) -> None:
        data = orjson.dumps(obj)
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 413: "Payload Too Large", 503: "Service Unavailable",
                  504: "Gateway Timeout"}.get(status, "OK")
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                     f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n".encode() + data)
        await writer.drain()


def load_asn_table(path: str | None) -> AsnTable:
    if not path:
        return EMPTY
    try:
        return AsnTable.from_text(Path(path).read_text(encoding="utf-8"), path)
    except (OSError, UnicodeDecodeError) as e:
        why = getattr(e, "strerror", None) or e.__class__.__name__
        raise BadOption(f"cannot read ASN table {path}: {why}") from None
    except ValueError as e:
        raise BadOption(str(e)) from None


MAX_INFLIGHT = 100_000
MAX_TIMEOUT = 600.0


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--host", default="127.0.0.1",
                    help="address or name to listen on (default 127.0.0.1; 0.0.0.0 for every IPv4 interface, "
                         ":: for every IPv6 one)")
    ap.add_argument("--port", type=int, default=8080, help="port to listen on, 1-65535 (default 8080)")
    ap.add_argument("--resolver", default="", help="IP of a DNS server to resolve with over UDP (default: the system resolver)")
    ap.add_argument("--ca-bundle", default=None, help="CA bundle (PEM) to verify TLS with (default: the system's)")
    ap.add_argument("--asn-table", default=None, help="prefix-to-ASN table in iptoasn.com TSV format, for ip_info")
    ap.add_argument("--max-inflight", type=int, default=64,
                    help=f"answer 503 above this many requests in flight, 1-{MAX_INFLIGHT:,} (default 64)")
    ap.add_argument("--timeout", type=float, default=10.0,
                    help=f"seconds per measurement step, at most {MAX_TIMEOUT:g} (default 10)")
    ap.add_argument("--allow-net", action="append", default=[], metavar="CIDR",
                    help="an internal network the helper may connect to for its clients (repeatable). By default "
                         "it connects to no loopback, private, link-local or other bogon address, so that no client "
                         "can use it to reach this machine's services or its network's; a lab or a test bed on "
                         "private addresses names its network here (the lab: 198.18.0.0/15)")
    ap.add_argument("--ready", type=Path, default=None, help=argparse.SUPPRESS)


def check_options(args: argparse.Namespace) -> None:
    """Refuse, with one line (BadOption), what would break every answer or fail when listening;
    normalises ``args.host``."""
    try:
        args.host = listen_host(args.host)
    except BadInput as e:
        raise BadOption(f"--host: {e}") from None
    if not 0 < args.port < 65536:
        raise BadOption(f"--port must be between 1 and 65535, not {args.port}")
    if args.resolver:
        try:
            args.resolver = str(ipaddress.ip_address(args.resolver))
        except ValueError:
            raise BadOption(f"--resolver must be an IP address, not {args.resolver!r}") from None
    try:
        args.allow_net = [str(n) for n in parse_networks(args.allow_net)]
    except ValueError as e:
        raise BadOption(str(e)) from None
    if not 1 <= args.max_inflight <= MAX_INFLIGHT:
        raise BadOption(f"--max-inflight must be between 1 and {MAX_INFLIGHT}, not {args.max_inflight}")
    if not (math.isfinite(args.timeout) and 0 < args.timeout <= MAX_TIMEOUT):
        raise BadOption(f"--timeout must be more than 0 and at most {MAX_TIMEOUT:g} seconds, not {args.timeout}")
    if args.ca_bundle is not None:
        try:
            ssl.create_default_context(cafile=args.ca_bundle)
        except ssl.SSLError:  # an OSError too: first
            raise BadOption(f"CA bundle {args.ca_bundle} holds no certificate (PEM) that could be read") from None
        except OSError as e:
            raise BadOption(f"cannot read CA bundle {args.ca_bundle}: {e.strerror or e}") from None


async def serve_forever(args: argparse.Namespace) -> None:
    check_options(args)
    resolver = Resolver("udp", args.resolver, duplicate_window=0.0) if args.resolver else Resolver()
    helper = ControlHelper(resolver=resolver, ca_bundle=args.ca_bundle, asn=load_asn_table(args.asn_table),
                           timeout=args.timeout, max_inflight=args.max_inflight,
                           allow_networks=parse_networks(args.allow_net))
    where = shown((args.host, args.port))
    try:
        server = await HelperServer(helper).serve(args.host, args.port)
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
