"""riseupvpn: can this network use RiseupVPN, its provider's API and its gateways (ooni/spec ts-026)?

No input. In order:

1. The provider's CA: a GET of ``https://black.riseup.net/ca.crt``, verified against the trust store
   (``--ca-bundle``, else the system's). The answer must be a 200 holding an X.509 certificate in PEM;
   anything else is ``ca_cert_status: false`` and the rest is skipped, as in OONI's test: a network
   failure's string, or ``invalid_ca`` when the answer came and held no certificate.
2. The API, at once: ``https://riseup.net/provider.json`` and
   ``https://api.black.riseup.net/3/config/eip-service.json`` (the gateways and their transports), both
   verified against the trust store and the CA just fetched (the API's certificate is the provider's own
   CA's, which no trust store holds). A failure, or an answer other than a 200 (the eip-service's: a JSON
   document with ``gateways``), makes ``api_status`` "blocked" with the first failure in this order.
   OONI's test also GETs ``https://api.black.riseup.net:9001/json``, a service that answers with the
   client's IP address and location: we do not (the probe never records its user's address).
3. The gateways the eip-service lists (at most `MAX_GATEWAYS`, each transport at most `MAX_PORTS` ports, over
   TCP; `IN_FLIGHT` at a time): a TCP connect to each port of each ``openvpn`` and ``obfs4`` transport, then
   the transport's own first exchange: OpenVPN's hard reset (`netx.openvpn`), obfs4's handshake with the
   gateway's ``cert`` (`netx.obfs4`). A gateway counts only when that exchange succeeds, so a censor that
   lets the connect through and kills OpenVPN's first packet (the DPI of Russia's TSPU, Iran's, China's) is
   seen; OONI's test only connects, and counts such a gateway as reached. An OpenVPN port that connected and
   then failed is tried once more with its first packet in two TCP segments (`_split`): whether what failed it
   reads one segment at a time. An ``openvpn`` transport that lists ``udp`` is also tried over UDP, port by
   port: the hard reset as a datagram, a new one each second until the connect timeout, and the server's
   reset to ours back (OONI's test does not measure UDP; OpenVPN's default is UDP 1194).

``test_keys`` are OONI's: ``api_failure`` (null, or the failure string), ``api_status`` ("ok"/"blocked"),
``ca_cert_status``, ``transport_status`` (per transport the eip-service offers: "ok" if any of its gateways
worked, over TCP or UDP), ``failing_gateways`` (``{ip, port, transport_type}`` each, or null: TCP ports
only, as OONI's test measures), beside the archival
``queries``, ``tcp_connect``, ``tls_handshakes``, ``requests`` and ``network_events`` (the API's tagged
``api``, each gateway's tagged with its transport); ours: ``x_gateways``, one entry per gateway port tried
(``ip``, ``port``, ``transport_type``, ``protocol`` ("tcp", "udp"), ``host``, ``location``, ``failure``,
``summary``: ``connect`` (TCP only) and ``handshake``, and ``split`` after such a retry: its ``connect`` and
``handshake`` failures), and
``x_gateways_skipped``: how many listed gateway ports were not tried and why (no IP address, a port out of
range, an obfs4 transport without a valid ``cert``...). The verdict is `model.vpnverdict.riseupvpn_verdict`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from ..model import failures as F
from ..model.vpnverdict import TRANSPORTS, riseupvpn_verdict
from ..netx import DirectConnector, Limits, NetxError, TCPStream, Trace, fetch, obfs4, openvpn, shape, tcp_connect
from .base import Context, NettestError

NAME = "riseupvpn"
VERSION = "0.1.0"
NEEDS_INPUT = False
CA_URL = "https://black.riseup.net/ca.crt"
PROVIDER_URL = "https://riseup.net/provider.json"
EIP_URL = "https://api.black.riseup.net/3/config/eip-service.json"
CA_BODY = 64 * 1024
API_BODY = 1024 * 1024
MAX_GATEWAYS = 64
MAX_PORTS = 8
IN_FLIGHT = 8
CONTACTS = "RiseupVPN's API (black.riseup.net, riseup.net, api.black.riseup.net) and the gateways it lists"


class Config:
    """For tests only: riseupvpn_urls ((CA, provider, eip-service) replacing `CA_URL`, `PROVIDER_URL` and
    `EIP_URL`)."""


@dataclass(frozen=True)
class Gateway:
    """One port of one transport of one gateway, as the eip-service lists it."""

    ip: str
    port: int
    transport: str
    host: str | None = None
    location: str | None = None
    cert: tuple[bytes, bytes] | None = None  # obfs4: the gateway's node id and public key
    protocol: str = "tcp"  # "udp": OpenVPN over UDP (obfs4 is TCP only)


def check_input(input: str) -> None:
    """No input: a list's lines would be measured as the same test again and again, each named wrongly."""
    raise NettestError("riseupvpn takes no input (it measures RiseupVPN's API and gateways)")


def read_ca(body: bytes) -> str | None:
    """The PEM text of the certificates in the CA's answer, or None when it holds none."""
    try:
        certs = x509.load_pem_x509_certificates(body)
    except ValueError:
        return None
    return body.decode("ascii") if certs else None


def _text(value: Any, limit: int = 253) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def read_gateways(document: Any) -> tuple[list[Gateway], Counter[str]]:
    """The gateway ports to try from an eip-service document (v3), and why the others were not tried. Hostile
    input: anything out of shape is skipped and counted, never raised."""
    skipped: Counter[str] = Counter()
    out: list[Gateway] = []
    gateways = document.get("gateways") if isinstance(document, Mapping) else None
    if not isinstance(gateways, list):
        return out, skipped
    if len(gateways) > MAX_GATEWAYS:
        skipped["more than 64 gateways"] += len(gateways) - MAX_GATEWAYS
    for gateway in gateways[:MAX_GATEWAYS]:
        if not isinstance(gateway, Mapping):
            skipped["not an object"] += 1
            continue
        address = gateway.get("ip_address")
        try:
            parsed = ipaddress.ip_address(address if isinstance(address, str) else "")  # not an int: one is an address
        except ValueError:
            skipped["no ip address"] += 1
            continue
        if parsed.is_unspecified or parsed.is_multicast:
            skipped["an address no server has"] += 1
            continue
        ip = str(parsed)
        capabilities = gateway.get("capabilities")
        transports = capabilities.get("transport") if isinstance(capabilities, Mapping) else None
        for transport in transports[:MAX_PORTS] if isinstance(transports, list) else ():
            kind = transport.get("type") if isinstance(transport, Mapping) else None
            if kind not in TRANSPORTS:
                continue  # another transport (kcp, hopping...): not what this test measures
            protocols = transport.get("protocols")
            offered = [p for p in ("tcp", "udp") if isinstance(protocols, list) and p in protocols
                       and (p == "tcp" or kind == "openvpn")]  # obfs4 runs over TCP only
            if not offered:
                continue
            cert = None
            if kind == "obfs4":
                options = transport.get("options")
                given = options.get("cert") if isinstance(options, Mapping) else None
                try:
                    cert = obfs4.parse_cert(given if isinstance(given, str) else "")
                except ValueError:
                    skipped["obfs4 without a valid cert"] += 1
                    continue
            ports = transport.get("ports")
            for port in ports[:MAX_PORTS] if isinstance(ports, list) else ():
                text = port if isinstance(port, str) and port.isascii() and len(port) <= 5 else ""
                number = int(text) if text.isdigit() else \
                    port if isinstance(port, int) and not isinstance(port, bool) else 0
                if not 1 <= number <= 65535:
                    skipped["a port out of range"] += 1
                    continue
                for protocol in offered:
                    out.append(Gateway(ip, number, kind, _text(gateway.get("host")),
                                       _text(gateway.get("location"), 64), cert, protocol))
    return list(dict.fromkeys(out)), skipped


async def run(input: str | None, ctx: Context) -> dict[str, Any]:
    ca_url, provider_url, eip_url = ctx.options.get("riseupvpn_urls") or (CA_URL, PROVIDER_URL, EIP_URL)
    t = ctx.timeouts
    trace = Trace(record_io=bool(ctx.options.get("network_events", True)))
    budget = t.dns + t.connect + t.tls + t.http
    tk: dict[str, Any] = {"api_failure": None, "api_status": "ok", "ca_cert_status": True,
                          "failing_gateways": None, "transport_status": {}}
    gateways: list[Gateway] = []
    skipped: Counter[str] = Counter()
    results: list[dict[str, Any]] = []
    async with trace:
        connector = DirectConnector(ca_bundle=ctx.ca_bundle, connect_timeout=t.connect)
        res = await fetch(ca_url, trace=trace, connector=connector, timeout=budget, max_redirects=0,
                          limits=Limits(body=CA_BODY), tags=("api",))
        final = res.final
        ca = read_ca(final.body) if res.failure is None and final is not None and final.status == 200 else None
        if ca is None:
            tk.update(api_failure=res.failure or F.INVALID_CA, api_status="blocked", ca_cert_status=False)
        else:
            gateways, skipped = await _api(tk, trace, ctx, ca, provider_url, eip_url)
            results = await _gateways(gateways, trace, ctx)
    records = trace.test_keys()
    failing = [{"ip": r["ip"], "port": r["port"], "transport_type": r["transport_type"]}
               for r in results if r["failure"] is not None and r["protocol"] == "tcp"]  # OONI's: TCP only
    tk["failing_gateways"] = failing or None
    for transport in TRANSPORTS:
        tried = [r for r in results if r["transport_type"] == transport]
        if tried:
            tk["transport_status"][transport] = "ok" if any(r["failure"] is None for r in tried) else "blocked"
    tk["x_gateways"] = results
    tk["x_gateways_skipped"] = dict(sorted(skipped.items()))
    tk.update(records)
    return tk


async def _api(tk: dict[str, Any], trace: Trace, ctx: Context, ca: str, provider_url: str,
               eip_url: str) -> tuple[list[Gateway], Counter[str]]:
    """The provider's API, through its CA: fills ``api_*``; the gateways to try when it worked."""
    t = ctx.timeouts
    connector = DirectConnector(ca_bundle=ctx.ca_bundle, extra_ca=ca, connect_timeout=t.connect)
    budget = t.dns + t.connect + t.tls + t.http
    async with asyncio.TaskGroup() as tg:
        provider = tg.create_task(fetch(provider_url, trace=trace, connector=connector, timeout=budget,
                                        max_redirects=0, limits=Limits(body=API_BODY), tags=("api",)))
        eip = tg.create_task(fetch(eip_url, trace=trace, connector=connector, timeout=budget, max_redirects=0,
                                   limits=Limits(body=API_BODY), tags=("api",)))
    document: Any = None
    failures: list[str] = []
    for task, parse in ((provider, False), (eip, True)):
        res = task.result()
        final = res.final
        if res.failure is not None or final is None:
            failures.append(res.failure or F.HTTP_REQUEST_FAILED)
            continue
        if final.status != 200:
            failures.append(F.HTTP_REQUEST_FAILED)
            continue
        if parse:
            try:
                document = json.loads(final.body)
            except (ValueError, RecursionError):
                document = None
            if not isinstance(document, Mapping) or not isinstance(document.get("gateways"), list):
                failures.append(F.HTTP_REQUEST_FAILED)  # a 200 that is not the gateways' list: a censor's page
    if failures:
        tk.update(api_failure=failures[0], api_status="blocked")
        return [], Counter()
    return read_gateways(document)


async def _gateways(gateways: list[Gateway], trace: Trace, ctx: Context) -> list[dict[str, Any]]:
    gate = asyncio.Semaphore(IN_FLIGHT)
    results: dict[int, dict[str, Any]] = {}

    async def one(n: int, gateway: Gateway) -> None:
        async with gate:
            results[n] = await _gateway(gateway, trace, ctx)

    async with asyncio.TaskGroup() as tg:
        for n, gateway in enumerate(gateways):
            tg.create_task(one(n, gateway))
    return [results[n] for n in range(len(gateways))]


async def _gateway(gateway: Gateway, trace: Trace, ctx: Context) -> dict[str, Any]:
    """A TCP connect to one gateway port, then its transport's first exchange; over UDP, OpenVPN's exchange."""
    t = ctx.timeouts
    summary: dict[str, dict[str, str | None]] = {}
    failure: str | None = None
    if gateway.protocol == "udp":
        failure = await openvpn.udp_handshake(gateway.ip, gateway.port, trace=trace, timeout=t.connect,
                                              tags=(gateway.transport, "udp"))
        return {"ip": gateway.ip, "port": gateway.port, "transport_type": gateway.transport, "protocol": "udp",
                "host": gateway.host, "location": gateway.location, "failure": failure,
                "summary": {"handshake": {"failure": failure}}}
    try:
        stream: TCPStream = await tcp_connect(gateway.ip, gateway.port, trace=trace, timeout=t.connect,
                                              tags=(gateway.transport,))
    except NetxError as e:
        failure = e.failure
        summary["connect"] = {"failure": failure}
    else:
        summary["connect"] = {"failure": None}
        try:
            if gateway.cert is not None:
                await obfs4.handshake(stream, *gateway.cert, timeout=t.tls)
            else:
                await openvpn.handshake(stream, timeout=t.tls)
        except NetxError as e:
            failure = e.failure
        summary["handshake"] = {"failure": failure}
        await stream.aclose()
    entry = {"ip": gateway.ip, "port": gateway.port, "transport_type": gateway.transport, "protocol": "tcp",
             "host": gateway.host, "location": gateway.location, "failure": failure, "summary": summary}
    if gateway.cert is None and failure is not None and summary["connect"]["failure"] is None:
        entry["split"] = await _split(gateway, trace, ctx)
    return entry


async def _split(gateway: Gateway, trace: Trace, ctx: Context) -> dict[str, str | None]:
    """OpenVPN's first exchange again, on a new connection, its first packet in two TCP segments (`shape.
    openvpn_segments`): when the plain one connected and then failed, whether DPI that reads one segment at a
    time was what failed it (Geneva's segmentation, by the client alone). ``connect`` fails when the censor holds
    the gateway for a while after the first reset (residual blocking): then nothing is learnt."""
    t = ctx.timeouts
    try:
        stream: TCPStream = await tcp_connect(gateway.ip, gateway.port, trace=trace, timeout=t.connect,
                                              tags=(gateway.transport, "split"))
    except NetxError as e:
        return {"connect": e.failure, "handshake": None}
    stream.shape = shape.openvpn_segments
    failure: str | None = None
    try:
        await openvpn.handshake(stream, timeout=t.tls)
    except NetxError as e:
        failure = e.failure
    await stream.aclose()
    return {"connect": None, "handshake": failure}


def finish(measurement: dict[str, Any], ctx: Context) -> None:
    measurement["test_keys"].update(riseupvpn_verdict(measurement).to_test_keys())
