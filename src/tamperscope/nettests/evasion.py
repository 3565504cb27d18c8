"""evasion: is this URL blocked by a DPI box, and which re-framings of the request get past it?

For an http or https URL: resolve it, ask the control helper, pick one address the site really has (ours
when the control agrees, else the control's: DNS tampering is web_connectivity's business), then fetch the
URL from that address once per strategy (model/evasion.py: the ClientHello or the request cut into TCP
segments or TLS records, names in mixed case...) and once plainly. Each attempt is a fresh connection with
its own transaction_id, whose tcp_connect, tls_handshakes and requests records carry the tag
``evasion=NAME``. The strategies go first and the plain request last, so that a censor that keeps blocking a
server for a while after a trigger (residual censorship) spoils no strategy with the plain request's
trigger; a strategy it blocked can still spoil the ones after it (a false "blocked", never a false
"evaded"). An attempt gets through (``ok``) when it gets the site's answer: no failure, no blockpage
fingerprint, and the control's status code with a similar page.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from ..model.consistency import endpoint, idna_host, is_ip, page_title
from ..model.evasion import PLAIN, Strategy, evasion_verdict, strategies_for
from ..netx import SYSTEM, NetxError, Trace, lookup_addresses, round_trip, tcp_connect, tls_handshake
from ..netx import shape as S
from ..netx.http import Limits
from .base import Context, NettestError
from .control import ask_helper, control_request

NAME = "evasion"
VERSION = "0.1.0"
NEEDS_INPUT = True

BODY_LIMIT = 1 << 20
RESERVE = 5.0  # seconds of the measurement's time kept for the last attempt's own deadlines
RESIDUAL_PROBE = 2.0  # seconds a connect may take while checking for residual blocking
RESIDUAL_POLL = 2.0  # seconds between two such checks


class Config:
    """Input: an http(s) URL. Options: ``strategies`` (names, default all that apply to the URL's scheme)."""


def _mixed(name: str) -> str:
    return S._mixed(name.encode("ascii", "replace")).decode("ascii")


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
    parts = urlsplit(url)
    host = idna_host(parts.hostname or "")
    if parts.scheme not in ("http", "https") or not host:
        raise NettestError(f"evasion needs an http(s) URL: {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise NettestError(f"bad port in {url!r}") from None
    return parts.scheme, host, port


def check_input(input: str) -> None:
    _parse(input)


def _choose(ours: Sequence[str], control: Mapping[str, Any] | None) -> tuple[str | None, str]:
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


def _matches_control(status: int, body: bytes, control: Mapping[str, Any] | None) -> bool | None:
    http = control.get("http_request") if isinstance(control, Mapping) else None
    if not isinstance(http, Mapping) or http.get("failure") is not None:
        return None
    want = http.get("status_code")
    if not isinstance(want, int) or status != want:
        return False
    length = http.get("body_length")
    if isinstance(length, int) and length > 0 and body:
        small, big = sorted((len(body), length))
        if small / big >= 0.7:
            return True
    title = http.get("title")
    return isinstance(title, str) and bool(title) and page_title(body.decode("utf-8", "replace")) == title


async def _attempt(url: str, scheme: str, host: str, ip: str, port: int, name: str, trace: Trace,
                   ctx: Context, control: Mapping[str, Any] | None) -> dict[str, Any]:
    tags = (f"evasion={name}",)
    record: dict[str, Any] = {"strategy": name, "layer": "tls" if scheme == "https" else "http",
                              "transaction_id": None, "shaped": None, "failure": None, "step": None,
                              "status_code": None, "fingerprints": [], "matches_control": None, "outcome": None}
    step = "tcp"
    conn: Any = None
    try:
        conn = tcp = await tcp_connect(ip, port, trace=trace, timeout=ctx.timeouts.connect, tags=tags)
        record["transaction_id"] = tcp.transaction_id
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
        record["outcome"] = "blocked"
        return record
    record["status_code"] = resp.status
    if ctx.matcher is not None:
        headers = {k: v for k, v in resp.headers}
        record["fingerprints"] = list(ctx.matcher(resp.body.decode("utf-8", "replace"), headers))
    matches = _matches_control(resp.status, resp.body, control)
    record["matches_control"] = matches
    if record["fingerprints"]:
        record["outcome"] = "blocked"
    elif matches is False:
        record["outcome"] = "different"
    else:
        record["outcome"] = "ok"
    return record


def _not_tried(name: str, scheme: str) -> dict[str, Any]:
    return {"strategy": name, "layer": "tls" if scheme == "https" else "http", "transaction_id": None,
            "shaped": None, "failure": None, "step": None, "status_code": None, "fingerprints": [],
            "matches_control": None, "outcome": "residual"}


async def _residual(ip: str, port: int, trace: Trace, ctx: Context, deadline: float) -> float | None:
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
                                       tags=("evasion=residual-check",))
        except NetxError:
            held = True
            if deadline - loop.time() <= 0:
                return None
            await asyncio.sleep(max(0.0, min(RESIDUAL_POLL, deadline - loop.time())))
            continue
        await stream.aclose()
        return loop.time() - start if held else 0.0


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
        ip, source = _choose(ours, control)
        attempts: list[dict[str, Any]] = []
        residual: list[float] = []
        if ip is not None:
            deadline = loop.time() + max(0.0, ctx.timeouts.measurement - RESERVE)
            async with ctx.limiter.hold([ip]):  # one attempt at a time, as one of the run's flows to that address
                # An earlier measurement of the URL (web_connectivity, a run a minute ago) may have left the
                # address held: wait that out first, or the first strategy would be blamed for it. An address
                # that never takes a connection gets the plain attempt only, which records how it fails.
                waited = await _residual(ip, port, trace, ctx, deadline - RESIDUAL_PROBE - RESIDUAL_POLL)
                names = [PLAIN] if waited is None else [s.name for s in strategies] + [PLAIN]
                if waited:
                    residual.append(round(waited, 1))
                if waited is None:
                    plain = await _attempt(input, scheme, host, ip, port, PLAIN, trace, ctx, control)
                    if plain["step"] != "tcp":  # it connected: the strategies lost their time to a residual hold
                        attempts += [_not_tried(s.name, scheme) for s in strategies]
                    attempts.append(plain)
                    names = []
                for name in names:
                    if attempts and attempts[-1]["step"] == "tcp" and name != PLAIN:
                        continue  # the address takes no connections: no framing matters, only the plain try
                    if attempts and attempts[-1]["outcome"] == "residual":  # the time ran out holding it
                        attempts.append(_not_tried(name, scheme))
                        continue
                    if attempts and attempts[-1]["outcome"] == "blocked" and attempts[-1]["step"] != "tcp":
                        waited = await _residual(ip, port, trace, ctx, deadline)
                        if waited is None:
                            attempts.append(_not_tried(name, scheme))
                            continue
                        if waited:
                            residual.append(round(waited, 1))
                    attempts.append(await _attempt(input, scheme, host, ip, port, name, trace, ctx, control))
    tk.update(trace.test_keys())
    tk["x_evasion"] = {"address": None if ip is None else endpoint(ip, port), "address_source": source,
                       "attempts": attempts, "residual_waits": residual}
    return tk


def finish(measurement: dict[str, Any], ctx: Context) -> None:
    measurement["test_keys"].update(evasion_verdict(measurement["test_keys"]))
