"""echcheck: is TLS with Encrypted Client Hello blocked? (OONI's echcheck)

For the input (a URL or a domain; port 443 unless the URL says otherwise): resolve the
name with the system resolver, then, to the first address, two handshakes one after the
other, each on its own connection:

- ``control``: a plain ClientHello with the name as SNI, the handshake completed (not
  verified: what counts is whether it goes through, as in remote_web);
- ``target``: OpenSSL's ClientHello for the same name with a GREASE
  ``encrypted_client_hello`` extension added (what browsers send a site without ECH keys;
  a censor cannot tell it from real ECH). A server without ECH keys ignores it and
  answers with its ServerHello; the target is read up to there and closed (the handshake
  cannot complete: the server's transcript holds the extension, OpenSSL's does not).

The control runs first, so a censor's residual blocking after the target cannot fail it.
Both records are in ``tls_handshakes`` (tagged ``control`` and ``target``) and, as in
OONI's echcheck, under ``control`` and ``target``; the target's has ``echconfig``
("GREASE") and ``x_server_hello``. The verdict is model/ech.py's; with ``--capture``, a reset
the censor forged gives ``x_signature``.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any
from urllib.parse import urlsplit

from ..model.ech import echcheck_verdict
from ..model.failures import SSL_FAILED_HANDSHAKE
from ..model.signature import signature_from
from ..netx import SYSTEM, NetxError, Trace, classify, lookup_addresses, tcp_connect, tls_handshake
from ..wire.tlshello import client_hello_with_ech
from .base import Context, NettestError

NAME = "echcheck"
VERSION = "0.1.0"
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


async def _target(ip: str, port: int, host: str, trace: Trace, ctx: Context) -> dict[str, Any]:
    """The target: a connection, the hello with ECH, the server's first record; its tls_handshakes record."""
    t = ctx.timeouts
    stream = await tcp_connect(ip, port, trace=trace, timeout=t.connect, tags=("target",))
    t0 = trace.now()
    failure: str | None = None
    hello_ok: bool | None = None
    suite: int | None = None
    data = b""
    try:
        await stream.write(client_hello_with_ech(host, ALPN))
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
        "transaction_id": stream.transaction_id, "echconfig": "GREASE", "x_server_hello": bool(hello_ok),
    }
    trace.tls_handshakes.append(record)
    return record


async def run(input: str | None, ctx: Context) -> dict[str, Any]:
    host, port = target_of(input)
    trace = Trace(record_io=bool(ctx.options.get("network_events", True)))
    tk: dict[str, Any] = {"control": None, "target": None}
    async with trace:
        try:
            res = await lookup_addresses(host, resolver=SYSTEM, trace=trace, timeout=ctx.timeouts.dns)
            ips = [a for a in res.addresses if ":" not in a] or list(res.addresses)
        except NetxError:
            ips = []
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
                    tk["target"] = await _target(ip, port, host, trace, ctx)
                except NetxError:
                    pass
    tk.update(trace.test_keys())
    return tk


def finish(measurement: dict[str, Any], ctx: Context) -> None:
    """The verdict's keys and, with --capture, the signature of the packets the censor forged (an RST)."""
    tk = measurement["test_keys"]
    tk.update(echcheck_verdict(measurement, ctx.matcher).to_test_keys())
    sig = signature_from(measurement)
    if sig is not None:
        tk["x_signature"] = sig
