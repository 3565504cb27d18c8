"""remote_web: a domain sent to an in-country web server from outside (Censored Planet's Hyperquack).

The vantage is a web server inside the censored network that need not host the
domain at all: what is measured is the path to it. For each protocol (``http``: a GET
with the domain as Host; ``https``: a TLS handshake with the domain as SNI; ``quic``,
on request: a QUIC handshake with the domain as the SNI of its Initial; ``echo``,
``echo_tls`` and ``echo_ech``, on request: Quack's method, a GET naming the domain, a TLS
ClientHello with the domain as its SNI, or the ClientHello with Encrypted Client Hello a
browser sends the domain (sealed with the config its HTTPS record publishes, the config's
public name in the clear; GREASE naming the domain when it publishes none), sent to the
vantage's echo service, port 7, which must send back exactly those bytes, kept in
``x_echo``), the
measurer first checks that the vantage serves an innocuous control domain, then sends
the domain (two attempts by default: remote paths lose packets), then the control
domain again. When the vantage does not serve the control domain, the measurement
waits (up to 35 s) for it to come back: after a blocked request, a censor with
residual blocking cuts the measurer off from the vantage for a while; that is why a
run measures one domain at a time through each web server (--per-vantage 1), so a
failure is never blamed on the domain measured beside it. A censor filtering traffic
that enters the country resets, drops or
answers the domain's request with a blockpage while the control passes. A
different page is not interference (the server hosts other sites); only a failure
after the domain was sent, or a known blockpage, is. The verdict is
model/remote.py's, re-derived from these records by `analyze` too.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..model.remote import AFTER, BEFORE, ECHO_MISMATCH, PROTOCOLS, TEST, remote_web_verdict
from ..model.verdict import failure_class, quic_completed
from ..netx import NetxError, Trace, classify, round_trip, tcp_connect, tls_handshake
from ..netx.trace import maybe_binary
from ..wire.ech import ECHConfig, seal_client_hello
from ..wire.tlshello import client_hello, client_hello_with_ech
from .base import Context, NettestError
from .echconfig import ech_config
from .vantage import control_domain_of, domain_name, finish_with, tries_of, vantage_of

NAME = "remote_web"
VERSION = "0.1.0"
NEEDS_INPUT = True
PORTS = {"http": 80, "https": 443, "quic": 443, "echo": 7, "echo_tls": 7, "echo_ech": 7}
ECHOES = ("echo", "echo_tls", "echo_ech")  # Quack's two payloads, and ECH's, to the same echo service
DEFAULT_PROTOCOLS = ("http", "https")  # quic and echo on request: most in-country web servers run neither
ECHO_KEEP = 64 << 10  # bytes of an echo's answer kept: the first ones decide, a hostile server may not stop
FORGED_IDLE = 1.0  # seconds the rest of a forged answer may take to come
DEFAULT_RESIDUAL_WAIT = 35.0  # seconds a measurement waits for the vantage to serve the control domain again
RETRY_EVERY = 5.0


class Config:
    """Options (from the run context): vantage (IP), control_domain, tries (default 2), protocols
    (default http and https), ports ({"http": 80, "https": 443}), residual_wait (seconds, default 35)."""


def check_input(input: str) -> None:
    domain_name(input, NAME)


def residual_wait_of(ctx: Context) -> float:
    value = ctx.options.get("residual_wait", DEFAULT_RESIDUAL_WAIT)
    return float(value) if isinstance(value, (int, float)) and 0 <= value <= 600 else DEFAULT_RESIDUAL_WAIT


def ports_of(ctx: Context) -> dict[str, int]:
    """The vantage's ports: 80 and 443 unless ctx.options["ports"] names others (a server on 8080). Both echo
    payloads go to the echo port (``echo``'s)."""
    given = ctx.options.get("ports")
    ports = dict(PORTS)
    if isinstance(given, dict):
        for protocol, port in given.items():
            if protocol in ports and type(port) is int and 0 < port < 65536:
                ports[protocol] = port
    ports["echo_tls"] = ports["echo_ech"] = ports["echo"]
    return ports


def protocols_of(ctx: Context) -> tuple[str, ...]:
    value = ctx.options.get("protocols") or DEFAULT_PROTOCOLS
    chosen = tuple(p for p in PROTOCOLS if p in value)
    if not chosen:
        raise NettestError(f"{NAME}: protocols must be among {', '.join(PROTOCOLS)}")
    return chosen


async def run(input: str | None, ctx: Context) -> dict[str, Any]:
    name = domain_name(input, NAME)
    vantage = vantage_of(ctx, NAME)
    control_domain = control_domain_of(ctx)
    tries = tries_of(ctx, 2)
    protocols = protocols_of(ctx)
    ports = ports_of(ctx)
    wait = residual_wait_of(ctx)
    waited: dict[str, float] = {}
    trace = Trace(record_io=bool(ctx.options.get("network_events", True)))
    tk: dict[str, Any] = {"vantage": vantage, "control_domain": control_domain, "domain": name,
                          "protocols": list(protocols)}
    echoes: list[dict[str, Any]] = []
    config: ECHConfig | None = None

    async def attempt(protocol: str, role: str, host: str) -> bool | None:
        """One connection carrying `host`: True when it completed, None when the censor answered it (a reset
        or a close after the name was sent: no need to try again), False for any other failure."""
        t = ctx.timeouts
        tags = (protocol, role)
        if protocol == "quic":
            from ..netx.quic import handshake as quic_handshake

            rec = await quic_handshake(vantage, ports[protocol], server_name=host, trace=trace, timeout=t.tls,
                                       tags=tags)
            return quic_completed(rec)  # the certificate need not be for either name
        try:
            stream = await tcp_connect(vantage, ports[protocol], trace=trace, timeout=t.connect, tags=tags)
        except NetxError:
            return False
        if protocol in ECHOES:
            try:
                payload = echo_payload(protocol, host, config if host == name else None)
                return await _echo(stream, payload, trace, t.http, tags, echoes)
            finally:
                await stream.aclose()
        if protocol == "https":
            try:
                # not verified: the vantage need not hold a certificate for either name; what counts is
                # whether the handshake carrying the name completes
                tls = await tls_handshake(stream, server_name=host, verify=False, alpn=("http/1.1",),
                                          timeout=t.tls, tags=tags)
            except NetxError as e:
                return _answered(e)
            await tls.aclose()
            return True
        try:
            authority = host if ports["http"] == 80 else f"{host}:{ports['http']}"
            await round_trip(stream, f"http://{authority}/", trace=trace, timeout=t.http, tags=tags)
            return True
        except NetxError as e:
            return _answered(e)
        finally:
            await stream.aclose()

    async def measure(protocol: str) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + wait
        while not await attempt(protocol, BEFORE, control_domain):
            # Residual censorship: after a blocked request a censor may cut the measurer off from the
            # vantage for a while (Turkmenistan's, 30 s or more). Wait for the control domain to pass again.
            left = deadline - loop.time()
            if left <= 0:
                return  # the vantage does not serve this protocol now: nothing to learn about the domain
            await asyncio.sleep(min(RETRY_EVERY, left))
            waited[protocol] = round(loop.time() - start, 3)
        for _ in range(tries):
            if await attempt(protocol, TEST, name) is not False:
                break
        await attempt(protocol, AFTER, control_domain)

    async with trace:
        if "echo_ech" in protocols:  # the domain's own ECH config, as a browser gets it (queries: ech_config)
            _, config, why, _ = await ech_config(name, trace, ctx)
            if why is not None:
                tk["x_ech_config_error"] = why
        async with asyncio.TaskGroup() as tg:
            for protocol in protocols:
                tg.create_task(measure(protocol))
    tk.update(trace.test_keys())
    if echoes:
        tk["x_echo"] = echoes
    tk["x_residual_wait"] = waited
    return tk


def echo_payload(protocol: str, host: str, config: ECHConfig | None = None) -> bytes:
    """What Quack sends an echo server: for ``echo`` a GET naming the domain, as a censor's HTTP filter reads
    it; for ``echo_tls`` a real ClientHello (OpenSSL's, fresh each time) with the domain as its SNI; for
    ``echo_ech`` the hello with Encrypted Client Hello a browser sends: sealed with ``config`` (its public name
    in the clear), else GREASE naming ``host`` (the control domain's always: an ECH hello a censor that reads
    ECH by name lets pass)."""
    if protocol == "echo_tls":
        return client_hello(host, ("http/1.1",))
    if protocol == "echo_ech":
        return seal_client_hello(config, host, ("http/1.1",)).record if config else client_hello_with_ech(
            host, ("http/1.1",))
    return f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode("ascii", errors="replace")  # names are IDNA


async def _echo(stream: Any, payload: bytes, trace: Trace, timeout: float, tags: tuple[str, ...],
                echoes: list[dict[str, Any]]) -> bool | None:
    """Send the payload and read until as many bytes came back (or the peer closed, or ``timeout``). The record
    (``x_echo``): what was sent and received, and the failure: None for the very bytes back, ``echo_mismatch``
    for others (a forged answer, an altered request), else the read's own. True: echoed; None: the censor
    answered (a reset, a close, other bytes): no need to try again; False: silence."""
    t0 = trace.now()
    received = bytearray()
    failure: str | None = None

    def other_bytes() -> bool:
        head = bytes(received[:len(payload)])
        return bool(head) and head != payload[:len(head)]

    try:
        async with asyncio.timeout(timeout):
            await stream.write(payload)
            while len(received) < len(payload) or (other_bytes() and len(received) < ECHO_KEEP):
                if len(received) >= len(payload):
                    # other bytes than ours: a forged answer; the rest of it, while it keeps coming (a
                    # blockpage's fingerprint may lie past the first bytes)
                    try:
                        async with asyncio.timeout(FORGED_IDLE):
                            chunk = await stream.read(ECHO_KEEP - len(received))
                    except TimeoutError:
                        break
                else:
                    chunk = await stream.read(ECHO_KEEP - len(received))
                if not chunk:
                    failure = "eof_error"
                    break
                received += chunk
    except (OSError, TimeoutError) as exc:
        failure = classify(exc, operation="read")
    if other_bytes():
        failure = ECHO_MISMATCH  # whatever ended it (a close, a reset, our patience): the answer was not ours
    echoes.append({"transaction_id": stream.transaction_id, "tags": list(tags), "sent": maybe_binary(payload),
                   "received": maybe_binary(bytes(received)), "failure": failure, "t0": t0, "t": trace.now()})
    if failure is None:
        return True
    return None if failure == ECHO_MISMATCH or failure_class(failure) in ("reset", "eof") else False


def _answered(e: NetxError) -> bool | None:
    return None if failure_class(e.failure) in ("reset", "eof") else False


def finish(measurement: dict[str, Any], ctx: Context) -> None:
    finish_with(remote_web_verdict, measurement, ctx)
