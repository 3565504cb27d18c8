"""evasion: is this URL blocked by a DPI box, and which re-framings of the request get past it?

For an http or https URL: resolve it, ask the control helper, pick one address the site really has (ours
when the control agrees, else the control's: DNS tampering is web_connectivity's business), then fetch the
URL from that address once per strategy (model/evasion.py: the ClientHello or the request cut into TCP
segments or TLS records, names in mixed case...) and once plainly. Each attempt is a fresh connection with
its own transaction_id, whose tcp_connect, tls_handshakes and requests records carry the tag
``evasion=NAME``. The strategies go first and the plain request last, and before the first attempt and
after each blocked one the nettest waits out any residual blocking of the address (a censor that keeps
blocking a server for a while after a trigger), so no attempt is blamed for another's trigger. An attempt
gets through (``ok``) when it gets the site's answer: no failure, no blockpage fingerprint, and the
control's status code with a similar page (``model.evasion.judge``, which the analysis applies again to
the attempt's records).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..model.evasion import PLAIN, Strategy, evasion_verdict, judge, strategies_for
from ..model.inputs import BadInput, parse_url
from ..model.webparts import endpoint, idna_host, is_ip
from ..netx import SYSTEM, NetxError, Trace, lookup_addresses, round_trip, tcp_connect, tls_handshake
from ..netx import shape as S
from ..netx.http import Limits
from .base import Context, NettestError
from .control import ask_helper, control_request

NAME = "evasion"
VERSION = "0.1.0"
NEEDS_INPUT = True
USES_HELPER = True

BODY_LIMIT = 1 << 20
RESERVE = 5.0  # seconds of the measurement's time kept for the last attempt's own deadlines
RESIDUAL_PROBE = 2.0  # seconds a connect may take while checking for residual blocking
RESIDUAL_POLL = 2.0  # seconds between two such checks


class Config:
    """Input: an http(s) URL. Options: ``strategies`` (names, default all that apply to the URL's scheme)."""


@dataclass(frozen=True)
class Target:
    """What every attempt of one input fetches, and from where."""

    url: str
    scheme: str
    host: str
    ip: str
    port: int


def _mixed(name: str) -> str:
    return S.mixed_case(name.encode("ascii", "replace")).decode("ascii")


def _shape(strategy: str, host: str) -> S.Shape | None:
    return {
        "tls-segments": lambda: S.tls_segments(host),
        "tls-records": lambda: S.tls_records(host),
        "tls-records-segments": lambda: S.tls_records_segments(host),
        "http-segments": lambda: S.http_segments,
        "host-name-case": lambda: S.host_name_case,
        "host-value-case": lambda: S.host_value_case,
        "host-trailing-dot": lambda: S.host_trailing_dot,
    }.get(strategy, lambda: None)()


def _parse(url: str) -> tuple[str, str, int]:
    """(scheme, host in IDNA form, port), checked as web_connectivity checks its URL: a port of 0 was taken
    for the default, a host like ``a b`` or ``-a.com`` measured, and a user name and password published."""
    try:
        u = parse_url(url)
    except BadInput as e:
        if str(e).startswith("not an http(s) URL"):
            raise NettestError(f"evasion needs an http(s) URL: {url!r}") from None
        raise NettestError(f"evasion: {e}") from None
    return u.scheme, idna_host(u.host), u.port


def check_input(input: str) -> None:
    _parse(input)


def choose_address(ours: Sequence[str], control: Mapping[str, Any] | None) -> tuple[str | None, str]:
    """(address, where it came from): ours when the control resolved it too, else the control's first
    (our resolver's answer is not the site's), else ours when there is no control to ask."""
    dns = control.get("dns") if isinstance(control, Mapping) else None
    addrs = dns.get("addrs") if isinstance(dns, Mapping) else None
    theirs = [a for a in addrs[:16] if isinstance(a, str) and is_ip(a)] if isinstance(addrs, list) else []
    both = [a for a in ours if a in theirs]
    if both:
        return both[0], "dns"
    if theirs:
        return theirs[0], "control"
    return (ours[0], "dns") if ours else (None, "none")


async def _attempt(t: Target, name: str, trace: Trace, ctx: Context,
                   control: Mapping[str, Any] | None) -> dict[str, Any]:
    """One fetch of the URL from the address, its first write shaped by the strategy ``name``."""
    url, scheme, host, ip, port = t.url, t.scheme, t.host, t.ip, t.port
    tags = (f"evasion={name}",)
    record: dict[str, Any] = {"strategy": name, "layer": "tls" if scheme == "https" else "http",
                              "transaction_id": None, "shaped": None, "failure": None, "step": None,
                              "status_code": None, "fingerprints": [], "matches_control": None, "outcome": None}
    step = "tcp"
    conn: Any = None
    try:
        record["transaction_id"] = tid = trace.next_transaction_id()  # its records' id, even if connect fails
        conn = tcp = await tcp_connect(ip, port, trace=trace, timeout=ctx.timeouts.connect, tags=tags,
                                       transaction_id=tid)
        tcp.shape = _shape(name, host)
        if scheme == "https":
            step = "tls"
            sni = _mixed(host) if name == "sni-case" else host
            conn = await tls_handshake(tcp, server_name=sni, ca_bundle=ctx.ca_bundle, alpn=("http/1.1",),
                                       timeout=ctx.timeouts.tls, tags=tags)
        step = "http"
        resp = await round_trip(conn, url, trace=trace, timeout=ctx.timeouts.http,
                                limits=Limits(body=BODY_LIMIT), tags=tags)
    except NetxError as e:
        record.update(failure=e.failure, step=step)
        resp = None
    finally:
        if conn is not None:
            await conn.aclose()
    if conn is not None:
        shaped = tcp.shaped
        record["shaped"] = shaped
        if isinstance(shaped, str):
            record["outcome"] = "unshaped"
            return record
    if resp is None:
        return {**record, **judge(record["failure"], step, None, b"", {}, control, ctx.matcher)}
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in resp.headers}  # text, as in its record
    return {**record, **judge(None, step, resp.status, resp.body, headers, control, ctx.matcher)}


def _not_tried(name: str, scheme: str) -> dict[str, Any]:
    return {"strategy": name, "layer": "tls" if scheme == "https" else "http", "transaction_id": None,
            "shaped": None, "failure": None, "step": None, "status_code": None, "fingerprints": [],
            "matches_control": None, "outcome": "residual"}


async def wait_residual(ip: str, port: int, trace: Trace, ctx: Context, deadline: float,
                        tag: str = "evasion=residual-check") -> float | None:
    """Before the first attempt and after a blocked one: seconds waited for the censor's residual blocking of
    the address to end (0.0: there was none), or None when it outlasted ``deadline``. A bare TCP connect
    triggers no name rule, so one that fails is the censor still holding the address (or an address that
    takes no connections at all, which the plain attempt then records)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    held = False
    while True:
        left = deadline - loop.time()
        try:  # one check at least, however little time is left
            stream = await tcp_connect(ip, port, trace=trace, timeout=min(RESIDUAL_PROBE, max(left, 0.5)),
                                       tags=(tag,))
        except NetxError:
            held = True
            if deadline - loop.time() <= 0:
                return None
            await asyncio.sleep(max(0.0, min(RESIDUAL_POLL, deadline - loop.time())))
            continue
        await stream.aclose()
        return loop.time() - start if held else 0.0


async def _try_all(t: Target, strategies: Sequence[Strategy], trace: Trace, ctx: Context,
                   control: Mapping[str, Any] | None, deadline: float) -> tuple[list[dict[str, Any]], list[float]]:
    """Every strategy, then the plain request, one after the other: (attempts, residual waits)."""
    attempts: list[dict[str, Any]] = []
    residual: list[float] = []
    # An earlier measurement of the URL (web_connectivity, a run a minute ago) may have left the address held:
    # wait that out first, or the first strategy would be blamed for it.
    waited = await wait_residual(t.ip, t.port, trace, ctx, deadline - RESIDUAL_PROBE - RESIDUAL_POLL)
    if waited is None:
        # held all along, or an address that takes no connection: the plain attempt records which
        plain = await _attempt(t, PLAIN, trace, ctx, control)
        if plain["step"] != "tcp":  # it connected: the strategies lost their time to a residual hold
            attempts += [_not_tried(s.name, t.scheme) for s in strategies]
        return [*attempts, plain], residual
    if waited:
        residual.append(round(waited, 1))
    for name in [s.name for s in strategies] + [PLAIN]:
        last = attempts[-1] if attempts else None
        if last is not None and last["step"] == "tcp" and name != PLAIN:
            continue  # the address takes no connections: no framing matters, only the plain try
        if last is not None and last["outcome"] == "residual":  # the time ran out while the address was held
            attempts.append(_not_tried(name, t.scheme))
            continue
        if last is not None and last["outcome"] == "blocked" and last["step"] != "tcp":
            waited = await wait_residual(t.ip, t.port, trace, ctx, deadline)
            if waited is None:
                attempts.append(_not_tried(name, t.scheme))
                continue
            if waited:
                residual.append(round(waited, 1))
        attempts.append(await _attempt(t, name, trace, ctx, control))
    return attempts, residual


async def run(input: str | None, ctx: Context) -> dict[str, Any]:
    if not input:
        raise NettestError("evasion needs an input (an http or https URL)")
    scheme, host, port = _parse(input)
    wanted = ctx.options.get("strategies")
    strategies: list[Strategy] = strategies_for(scheme, wanted)
    trace = Trace()
    tk: dict[str, Any] = {}
    loop = asyncio.get_running_loop()
    async with trace:
        res = await lookup_addresses(host, resolver=SYSTEM, trace=trace, timeout=ctx.timeouts.dns)
        ours = list(res.addresses[:8])
        control, failure = await ask_helper(ctx, control_request(input, [endpoint(a, port) for a in ours]))
        tk["control"] = control
        tk["control_failure"] = failure
        ip, source = choose_address(ours, control)
        attempts: list[dict[str, Any]] = []
        residual: list[float] = []
        if ip is not None:
            deadline = loop.time() + max(0.0, ctx.timeouts.measurement - RESERVE)
            async with ctx.limiter.hold([ip]):  # one attempt at a time, as one of the run's flows to that address
                attempts, residual = await _try_all(Target(input, scheme, host, ip, port), strategies, trace, ctx,
                                                    control, deadline)
    tk.update(trace.test_keys())
    tk["x_evasion"] = {"address": None if ip is None else endpoint(ip, port), "address_source": source,
                       "attempts": attempts, "residual_waits": residual}
    return tk


def finish(measurement: dict[str, Any], ctx: Context) -> None:
    measurement["test_keys"].update(evasion_verdict(measurement["test_keys"]))
