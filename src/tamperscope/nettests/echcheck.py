"""echcheck: is TLS with Encrypted Client Hello blocked? (OONI's echcheck)

For the input (a URL or a domain; port 443 unless the URL says otherwise): resolve the
name with the system resolver and, at the same time, ask for its HTTPS record (RFC 9460),
where a site that offers ECH publishes its ECH configs: over DNS-over-HTTPS when the run
has a DoH server (``--doh``; as OONI's echcheck does, so that an on-path censor cannot strip
the record), else of the public resolver over UDP. Then, to the
first address, two handshakes one after the other, each on its own connection:

- ``control``: a plain ClientHello with the name as SNI, the handshake completed (not
  verified: what counts is whether it goes through, as in remote_web);
- ``target``: what a browser with ECH sends. When the site publishes a config this client
  can use: OpenSSL's ClientHello for the site, HPKE-sealed inside OpenSSL's ClientHello for
  the config's public name (``cloudflare-ech.com`` for every site on Cloudflare), which is
  all a censor sees (wire/ech.py). Otherwise: the hello for the site with a GREASE
  ``encrypted_client_hello`` extension (what browsers send a site without ECH keys). The
  server answers with its ServerHello (accepting ECH or not); the target is read up to there
  and closed (this client does not finish a TLS 1.3 handshake it did not write).

The outer name matters: a censor that blocks ECH by its public name (Russia's TSPU, since
November 2024, ``cloudflare-ech.com``) passes a GREASE hello naming the site itself, though
it blocks what a browser sends that site.

The control runs first, so a censor's residual blocking after the target cannot fail it.
Both records are in ``tls_handshakes`` (tagged ``control`` and ``target``) and, as in
OONI's echcheck, under ``control`` and ``target``; the target's has ``echconfig`` (the
published ECHConfigList in base64, or "GREASE"), ``outer_server_name`` and
``x_server_hello``. The HTTPS lookup is in ``queries`` (tagged ``ech_config``), and a
published config that cannot be used is said in ``x_ech_config_error``. With a DoH server
and a public resolver both, the record is asked of both (the second lookup tagged
``ech_config_plain``): a config that comes over DoH but not over plain DNS was stripped on
its way, which ``x_ech_config_stripped`` says (the resolver, the plain lookup's failure).
The verdict is model/ech.py's; with ``--capture``, a reset the censor forged gives
``x_signature``.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any
from urllib.parse import urlsplit

from ..model.ech import echcheck_verdict
from ..model.failures import SSL_FAILED_HANDSHAKE
from ..model.signature import signature_from
from ..netx import (
    SYSTEM,
    NetxError,
    Trace,
    classify,
    lookup_addresses,
    tcp_connect,
    tls_handshake,
)
from ..wire.ech import ECHConfig, seal_client_hello
from ..wire.tlshello import client_hello_with_ech
from .base import Context, NettestError
from .echconfig import ech_config

NAME = "echcheck"
VERSION = "0.2.0"  # 0.2: the site's own ECH config, from its HTTPS record, when it publishes one
NEEDS_INPUT = True
ALPN = ("http/1.1",)
MAX_FIRST_FLIGHT = 64 << 10  # bytes read for the server's first record: a ServerHello is a few hundred
SERVER_HELLO_MIN = 4 + 2 + 32 + 1 + 2  # handshake header, version, random, session id length, cipher suite


class Config:
    """Input: a URL or a domain (port 443 unless the URL says otherwise)."""


def target_of(input: str | None) -> tuple[str, int]:
    """(host, port) of the input; NettestError for anything else."""
    if not input:
        raise NettestError(f"{NAME} needs an input (URL or domain)")
    spec = input if "://" in input else f"https://{input}/"
    try:
        parts = urlsplit(spec)
        port = parts.port or 443
    except ValueError:
        raise NettestError(f"{NAME}: not a URL or domain: {input!r}") from None
    host = (parts.hostname or "").lower()
    if not host or parts.scheme not in ("http", "https"):
        raise NettestError(f"{NAME}: not an https URL or a domain: {input!r}")
    return host, port


def server_answer(data: bytes) -> tuple[bool | None, int | None]:
    """What the server's first bytes say: (True, cipher suite) for a ServerHello; (False, None) for anything
    else complete (an alert, not TLS); (None, None) while a record is still incomplete."""
    if len(data) < 5:
        return None, None
    if data[0] != 22:
        return False, None
    length = struct.unpack_from("!H", data, 3)[0]
    body = data[5:5 + length]
    if body[:1] not in (b"", b"\x02") or length < SERVER_HELLO_MIN:
        return False, None  # not a ServerHello, or one too short to hold its version, random and suite
    if len(body) < SERVER_HELLO_MIN:
        return None, None
    sid = body[4 + 2 + 32]
    if len(body) < SERVER_HELLO_MIN + sid:
        return (None, None) if len(body) < length else (False, None)
    return True, struct.unpack_from("!H", body, 4 + 2 + 32 + 1 + sid)[0]


async def _target(ip: str, port: int, host: str, trace: Trace, ctx: Context, published: str,
                  config: ECHConfig | None) -> dict[str, Any]:
    """The target: a connection, the hello with ECH, the server's first record; its tls_handshakes record."""
    t = ctx.timeouts
    if config is not None:
        outer_name, hello = config.public_name, seal_client_hello(config, host, ALPN).record
    else:
        outer_name, hello = host, client_hello_with_ech(host, ALPN)
    stream = await tcp_connect(ip, port, trace=trace, timeout=t.connect, tags=("target",))
    t0 = trace.now()
    failure: str | None = None
    hello_ok: bool | None = None
    suite: int | None = None
    data = b""
    try:
        await stream.write(hello)
        async with asyncio.timeout(t.tls):
            while hello_ok is None and len(data) < MAX_FIRST_FLIGHT:
                chunk = await stream.read(MAX_FIRST_FLIGHT - len(data))
                if not chunk:
                    failure = "eof_error"
                    break
                data += chunk
                hello_ok, suite = server_answer(data)
    except (OSError, TimeoutError) as exc:
        failure = classify(exc, operation="tls_handshake")
    finally:
        await stream.aclose()
    if hello_ok is False:
        failure = SSL_FAILED_HANDSHAKE  # an alert, or not TLS: the hello was answered, not with a ServerHello
    elif hello_ok is None and failure is None:
        failure = SSL_FAILED_HANDSHAKE  # a first record longer than anyone sends
    record: dict[str, Any] = {
        "network": "tcp", "address": stream.address, "cipher_suite": f"0x{suite:04X}" if suite is not None else "",
        "failure": failure, "negotiated_protocol": "", "no_tls_verify": True, "peer_certificates": None,
        "server_name": host, "t0": t0, "t": trace.now(), "tags": ["target"], "tls_version": "",
        "transaction_id": stream.transaction_id, "echconfig": published if config is not None else "GREASE",
        "outer_server_name": outer_name, "x_server_hello": bool(hello_ok),
    }
    trace.tls_handshakes.append(record)
    return record


async def run(input: str | None, ctx: Context) -> dict[str, Any]:
    host, port = target_of(input)
    trace = Trace(record_io=bool(ctx.options.get("network_events", True)))
    tk: dict[str, Any] = {"control": None, "target": None}
    async with trace:
        async with asyncio.TaskGroup() as tg:
            addresses = tg.create_task(_addresses(host, trace, ctx))
            configs = tg.create_task(ech_config(host, trace, ctx))
        ips, (published, config, why, stripped) = addresses.result(), configs.result()
        if why is not None:
            tk["x_ech_config_error"] = why
        if stripped is not None:
            tk["x_ech_config_stripped"] = stripped
        if ips:
            ip = ips[0]
            try:  # a failed step closes its connection; the trace keeps its record
                stream = await tcp_connect(ip, port, trace=trace, timeout=ctx.timeouts.connect, tags=("control",))
                tls = await tls_handshake(stream, server_name=host, verify=False, alpn=ALPN,
                                          timeout=ctx.timeouts.tls, tags=("control",))
                await tls.aclose()
            except NetxError:
                pass
            tk["control"] = next((h for h in trace.tls_handshakes if "control" in h["tags"]), None)
            if tk["control"] is not None:
                try:
                    tk["target"] = await _target(ip, port, host, trace, ctx, published, config)
                except NetxError:
                    pass
    tk.update(trace.test_keys())
    return tk


async def _addresses(host: str, trace: Trace, ctx: Context) -> list[str]:
    try:
        res = await lookup_addresses(host, resolver=SYSTEM, trace=trace, timeout=ctx.timeouts.dns)
    except NetxError:
        return []
    return [a for a in res.addresses if ":" not in a] or list(res.addresses)


def finish(measurement: dict[str, Any], ctx: Context) -> None:
    """The verdict's keys and, with --capture, the signature of the packets the censor forged (an RST)."""
    tk = measurement["test_keys"]
    tk.update(echcheck_verdict(measurement, ctx.matcher).to_test_keys())
    sig = signature_from(measurement)
    if sig is not None:
        tk["x_signature"] = sig
