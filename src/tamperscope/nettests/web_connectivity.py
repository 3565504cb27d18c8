"""web_connectivity: is this URL reachable, and if not, how is it blocked?

Follows OONI's Web Connectivity v0.5:
1. DNS, in parallel: the system resolver and a UDP resolver (every response
   recorded, so injected answers racing the real one show up as duplicates).
2. In parallel: the control request to the helper (with our endpoints), and a
   TCP connect (+ TLS with the URL's SNI for https) to every resolved address.
3. The HTTP GET over the first connection that succeeded, then the redirect
   chain (up to 10 hops) with fresh connections.
4. For https, when the site advertises HTTP/3 (Alt-Svc, ours or the control's):
   a QUIC handshake to every address, which shows a censor dropping QUIC.
5. When the page came slowly, a throughput check: the same resource from the
   same address with an innocent SNI/Host, to tell throttling from a slow line.
The verdict is `model.verdict.web_connectivity_verdict` over the raw records,
the same function `tamperscope analyze` applies to anyone's measurements.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..model.altsvc import h3_port
from ..model.charset import decode_body
from ..model.consistency import observe
from ..model.failures import failure_class
from ..model.inputs import BadInput, parse_url
from ..model.interception import interception, issuer_name
from ..model.signature import signature_from
from ..model.summary import summary_keys
from ..model.verdict import INNOCENT_TAG, quic_completed, verdict_from
from ..netx import (
    SYSTEM,
    Connection,
    NetxError,
    Resolver,
    Trace,
    fetch,
    lookup_addresses,
    lookup_system,
    round_trip,
    tcp_connect,
    tls_handshake,
)
from ..netx.fetch import redirect_target
from ..netx.trace import endpoint
from .base import Context, NettestError
from .control import REQUEST_HEADERS, ask_helper, control_request
from .throughput import INNOCENT, swap_host, timed_fetch

NAME = "web_connectivity"
VERSION = "0.5.28"
NEEDS_INPUT = True
USES_HELPER = True
MAX_ENDPOINTS = 6
HEADERS = tuple((k, v[0]) for k, v in REQUEST_HEADERS.items())
# A fetch slower than this, for a body at least this big, gets the throughput check.
SLOW_KBPS = 2000.0
MIN_BODY = 8 * 1024
THROTTLE_RATIO = 0.3
SLOW_MIN_SECONDS = 0.3
SLOW_RTTS = 6


class Config:
    """web_connectivity has no options beyond the run context."""


async def run(input: str | None, ctx: Context) -> dict[str, Any]:
    if not input:
        raise NettestError("web_connectivity needs an input URL")
    try:
        url = parse_url(input)
    except BadInput as e:
        raise NettestError(str(e)) from None
    trace = Trace(record_io=ctx.options.get("network_events", True))
    tk: dict[str, Any] = {"agent": "redirect", "client_resolver": ctx.isp_resolver, "retries": None, "socksproxy": None}
    try:
        async with asyncio.timeout(ctx.timeouts.measurement):
            async with trace:
                await _measure(input, url.scheme, url.host, url.port, ctx, trace, tk)
                if url.scheme == "https" and ctx.options.get("quic", True) is not False:
                    await _quic(url.host, ctx, trace, tk)
    except TimeoutError:
        trace.cancel()
        tk["x_measurement_failure"] = "generic_timeout_error"
    tk.update(trace.test_keys())
    tk.setdefault("quic_handshakes", trace.quic_handshakes)
    tk.setdefault("control", None)
    tk.setdefault("control_failure", "generic_timeout_error")
    tk.setdefault("x_control_request", None)
    tk.setdefault("dns_experiment_failure", None)
    tk["http_experiment_failure"] = next((r.get("failure") for r in tk["requests"]), None)
    return tk


def finish(measurement: dict[str, Any], ctx: Context) -> None:
    """Fill the verdict keys in place, from the raw records only."""
    tk = measurement["test_keys"]
    obs = observe(measurement)
    tk.update(summary_keys(measurement, obs))
    tk.update(verdict_from(obs, measurement, ctx.matcher).to_test_keys())
    sig = signature_from(measurement)
    if sig is not None:
        tk["x_signature"] = sig
    if tk.get("x_mechanism") == "tls.mitm":
        x = interception(measurement)
        if x is not None:
            tk["x_interception"] = x
            tk["x_equipment"] = {"kind": "tls-interception", "issuer": x["issuer"], "name": issuer_name(x["issuer"])}


async def _measure(input: str, scheme: str, host: str, port: int, ctx: Context, trace: Trace, tk: dict[str, Any]) -> None:
    t = ctx.timeouts
    addrs: list[str] = []
    if _is_ip(host):
        addrs = [host]
    else:
        async with asyncio.TaskGroup() as tg:
            sys_task = tg.create_task(lookup_system(host, trace=trace, timeout=t.dns, tags=("depth=0",)))
            udp_task = tg.create_task(lookup_addresses(host, resolver=ctx.udp_resolver, trace=trace, timeout=t.dns,
                                                       tags=("depth=0",))) if ctx.udp_resolver else None
        sys_res = sys_task.result()
        tk["dns_experiment_failure"] = sys_res.failure
        addrs = list(sys_res.addresses)
        if udp_task is not None:
            addrs += [a for a in udp_task.result().addresses if a not in addrs]
    addrs = addrs[:MAX_ENDPOINTS]
    endpoints = [endpoint(a, port) for a in addrs]
    creq = control_request(input, endpoints)
    tk["x_control_request"] = creq

    async def control() -> None:
        resp, failure = await ask_helper(ctx, creq)
        tk["control"] = resp
        tk["control_failure"] = failure

    # The control runs beside our own steps but outside the per-address limit: it sends nothing from here to the
    # addresses, and holding them while the helper waits (a forged address it cannot reach costs it a timeout)
    # made every name injected to the same address wait in twos.
    async with asyncio.TaskGroup() as tg:
        tg.create_task(control())
        await _direct(input, scheme, host, port, addrs, ctx, trace, tk)


async def _direct(input: str, scheme: str, host: str, port: int, addrs: list[str], ctx: Context, trace: Trace,
                  tk: dict[str, Any]) -> None:
    """Our own steps: a connection (and TLS) to every address at once, the GET on the first that worked, its
    redirects, and the throughput check, with at most ``ctx.limiter.per_ip`` measurements at each address."""
    t = ctx.timeouts
    conns: dict[str, Connection | None] = {}
    began: dict[str, float] = {}  # when each address's connect began (monotonic)
    token = ctx.residual.token()
    held: list[dict[str, Any]] = []  # `x_residual`

    def failed(step: str, ip: str, failure: str | None) -> None:
        """A step at ``ip`` failed. A connect: did it meet residual blocking from another measurement there
        (`Residual.met`)? A handshake or a request after a connect that worked: no hold was on when the
        connection was made, so the failure is this URL's own (many sites blocked by name behind one CDN
        address each meet their own block, which must not be taken for another's residue), and the censor may
        now hold the endpoint: a trigger."""
        if step == "tcp_connect":
            seconds = ctx.residual.met(ip, port, token, began[ip], time.monotonic())
            if seconds is not None:
                held.append({"endpoint": endpoint(ip, port), "step": step, "seconds_after": round(seconds, 1)})
        elif failure_class(failure) in ("reset", "eof", "timeout"):
            ctx.residual.trigger(ip, port, token)

    async def connect(ip: str) -> None:
        began[ip] = time.monotonic()
        try:
            stream = await tcp_connect(ip, port, trace=trace, timeout=t.connect, tags=("depth=0",))
        except NetxError as e:
            conns[ip] = None
            failed("tcp_connect", ip, e.failure)
            return
        ctx.residual.connected(ip, port, token)
        if scheme != "https":
            conns[ip] = stream
            return
        try:
            conns[ip] = await tls_handshake(stream, server_name=host, ca_bundle=ctx.ca_bundle, timeout=t.tls,
                                            tags=("depth=0",))
        except NetxError as e:
            conns[ip] = None
            failed("tls_handshake", ip, e.failure)

    try:
        async with ctx.limiter.hold(addrs):
            async with asyncio.TaskGroup() as tg:
                for ip in addrs:
                    tg.create_task(connect(ip))
            chosen_ip = next((ip for ip in addrs if conns.get(ip) is not None), None)
            chosen = conns[chosen_ip] if chosen_ip is not None else None
            for ip in addrs:
                c = conns.get(ip)
                if c is not None and c is not chosen:
                    await c.aclose()
            if chosen is None or chosen_ip is None:
                return
            try:
                resp = await round_trip(chosen, input, headers=HEADERS, timeout=t.http,
                                        tags=("depth=0", "fetch_body=true"))
            except NetxError as e:
                failed("http_request", chosen_ip, e.failure)
                return
            finally:
                await chosen.aclose()
            if ctx.matcher is not None and resp.body:
                headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in resp.headers}  # as in its record
                if ctx.matcher(decode_body(resp.body, headers), headers):
                    ctx.residual.trigger(chosen_ip, port, token)  # a blockpage: the censor acted, and may go on
    finally:
        if held:
            tk["x_residual"] = held
    location = resp.header("Location") if resp.status in (301, 302, 303, 307, 308) else None
    if location is not None:
        following, failure = redirect_target(input, location)
        if following is None:  # as fetch does: the request whose Location cannot be followed fails
            if resp.record is not None:
                resp.record["failure"] = failure
            return
        result = await fetch(following, trace=trace, resolver=SYSTEM, ca_bundle=ctx.ca_bundle,
                             timeout=t.http * 2, max_redirects=9, headers=HEADERS, tags=("redirect",))
        final = result.final
        if result.failure is None and final is not None:
            try:
                p = parse_url(final.url)
            except BadInput:
                return
            await _throughput_check(final.url, p.scheme, p.host, p.port, final, trace, ctx, tk)
        return
    await _throughput_check(input, scheme, host, port, resp, trace, ctx, tk)


async def _quic(host: str, ctx: Context, trace: Trace, tk: dict[str, Any]) -> None:
    """HTTP/3's handshake to every address, when the site advertises HTTP/3 (``Alt-Svc: h3``) in our own
    answer or in the control's. A censor dropping QUIC, or reading the SNI of its Initial, leaves TCP and
    TLS alone: only this step shows it, and the control's handshake to the same endpoint says the server
    does speak QUIC (``quic.drop`` when ours timed out and the control's did not)."""
    port = _advertised_h3(host, trace, tk)
    if port is None:
        return
    from ..netx.quic import handshake as quic_handshake  # aioquic costs 50 ms to import: only for HTTP/3 sites

    ips = _quic_targets(trace, tk)
    async with asyncio.TaskGroup() as tg:
        tasks = {ip: tg.create_task(quic_handshake(ip, port, server_name=host, trace=trace, ca_bundle=ctx.ca_bundle,
                                                   timeout=ctx.timeouts.tls, tags=("depth=0",))) for ip in ips}
    timed_out = [ip for ip, t in tasks.items() if t.result()["failure"] == "generic_timeout_error"]
    if timed_out:
        await _quic_trigger(timed_out[0], port, ctx, trace, tk)


def _quic_targets(trace: Trace, tk: dict[str, Any]) -> list[str]:
    """The addresses worth a QUIC handshake: those of ours where TLS got through, and those where the control's
    QUIC did (a poisoned address serves neither, and its timeout would say nothing), but only addresses our own
    DNS gave: the control's answer is the helper's word, and the helper may be anyone's."""
    control = tk.get("control")
    quic = control.get("quic_handshake") if isinstance(control, dict) else None
    ips = [str(h.get("address", "")).rsplit(":", 1)[0].strip("[]") for h in trace.tls_handshakes
           if h.get("failure") is None and "depth=0" in h.get("tags", ())]
    if isinstance(quic, dict):
        ips += [ep.rsplit(":", 1)[0].strip("[]") for ep, q in quic.items()
                if isinstance(ep, str) and isinstance(q, dict) and q.get("status") is True]
    asked = (tk.get("x_control_request") or {}).get("tcp_connect") or ()
    ours = {ep.rsplit(":", 1)[0].strip("[]") for ep in asked if isinstance(ep, str)}
    return [ip for ip in dict.fromkeys(ips) if ip in ours]


async def _quic_trigger(ip: str, port: int, ctx: Context, trace: Trace, tk: dict[str, Any]) -> None:
    """What a dropped QUIC handshake was dropped for: the same handshake to the same address with an innocent SNI.
    If that one reaches the server, the censor read the name in the Initial ("sni"). If it is dropped too, the
    address may be blocked, or the name's drop may still hold the address for a while (the GFW's lasts 180 s per
    client, server and port): that is "undetermined", not an accusation of address blocking."""
    from ..netx.quic import handshake as quic_handshake

    rec = await quic_handshake(ip, port, server_name=INNOCENT, trace=trace, ca_bundle=ctx.ca_bundle,
                               timeout=ctx.timeouts.tls, tags=("depth=0", INNOCENT_TAG))
    reached = quic_completed(rec)  # the server answered in full (a certificate for another name is fine)
    tk["x_quic_trigger"] = {"address": endpoint(ip, port), "innocent_name": INNOCENT,
                            "innocent_failure": rec["failure"], "trigger": "sni" if reached else "undetermined"}


def _advertised_h3(host: str, trace: Trace, tk: dict[str, Any]) -> int | None:
    """The UDP port of HTTP/3 for ``host``: from our first answer's Alt-Svc, else from the control's."""
    for rec in trace.requests:
        if "depth=0" in (rec.get("tags") or ()) and rec.get("failure") is None:
            headers = (rec.get("response") or {}).get("headers") or {}
            port = h3_port(next((v for k, v in headers.items() if k.lower() == "alt-svc"), None))
            if port is not None:
                return port
    control = tk.get("control")
    req = control.get("http_request") if isinstance(control, dict) else None
    found = req.get("discovered_h3_endpoint") if isinstance(req, dict) else None
    if isinstance(found, str) and found:
        name, _, digits = found.rpartition(":")
        # the helper's text: five digits at most (int() raises past 4,300 of them)
        if (name.lower() == host.lower() and len(digits) <= 5 and digits.isascii() and digits.isdigit()
                and 0 < int(digits) < 65536):
            return int(digits)
    return None


async def _throughput_check(url: str, scheme: str, host: str, port: int, resp: Any, trace: Trace, ctx: Context,
                            tk: dict[str, Any]) -> None:
    """When a big-enough page came slowly, fetch it again, with its own and with an innocent SNI/Host
    at the same time (so both see the same load on this machine and line), and compare."""
    rec = resp.record
    if rec is None or len(resp.body) < MIN_BODY or resp.body_is_truncated:
        return
    seconds = max(1e-6, rec["t"] - rec["t0"])
    first_kbps = len(resp.body) * 8 / 1000 / seconds
    rtts = [c["t"] - c["t0"] for c in trace.tcp_connect if c["status"]["success"]]
    rtt = min(rtts) if rtts else 0.0
    # Slow for the size AND for the path: a page over a long path takes a few round trips.
    if first_kbps >= SLOW_KBPS or seconds < max(SLOW_MIN_SECONDS, SLOW_RTTS * rtt):
        return
    ip = resp.address.rsplit(":", 1)[0].strip("[]")
    innocent = INNOCENT
    other = swap_host(url, innocent) if scheme == "http" else url
    again, control = await asyncio.gather(timed_fetch(ip, port, scheme, url, host, ctx, HEADERS),
                                          timed_fetch(ip, port, scheme, other, innocent, ctx, HEADERS))
    control_kbps = control.kbps
    if control_kbps is None:
        return
    target_kbps = max(first_kbps, again.kbps or 0.0)
    ratio = target_kbps / control_kbps if control_kbps > 0 else None
    throttled = ratio is not None and ratio < THROTTLE_RATIO and target_kbps < SLOW_KBPS / 2
    tk["x_throttle"] = {"target_kbps": round(target_kbps, 1), "control_kbps": round(control_kbps, 1),
                        "ratio": None if ratio is None else round(ratio, 4),
                        "cap_kbps": round(target_kbps, 1) if throttled else None, "throttled": throttled,
                        "method": "same address, own vs innocent SNI/Host, fetched together", "innocent_name": innocent}


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


__all__ = ["NAME", "VERSION", "NEEDS_INPUT", "USES_HELPER", "Config", "run", "finish", "Resolver"]
