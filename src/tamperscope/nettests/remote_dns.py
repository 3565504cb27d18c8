"""remote_dns: a domain through an in-country resolver, asked from outside (Censored Planet's Satellite).

The measurer asks the vantage, an open resolver inside the censored network, for an
innocuous control domain (is it a working resolver?), then for the domain (several
attempts, keeping every late answer: an on-path injector answers first and the real
resolver after), then for the control domain again. The same domain is resolved
through a trusted resolver outside (the run's public resolver) for comparison, and
every address the vantage gave that the control did not is validated the way
Satellite does it: a TLS handshake with the domain as SNI, verified against the trust
store, and, when that fails, the page served from that address (for a blockpage
fingerprint). Addresses outside public space (127.0.0.1, 10/8, ...) are never
contacted. The verdict is model/remote.py's, re-derived from these records by
`analyze` too.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..model.remote import (
    AFTER,
    BEFORE,
    CONTROL,
    CONTROL_DOMAIN,
    TEST,
    VALIDATE,
    remote_dns_verdict,
    truncated,
    vantage_lies,
)
from ..model.verdict import failure_class
from ..netx import NetxError, Trace, lookup_udp, round_trip, tcp_connect, tls_handshake
from .base import Context, NettestError
from .vantage import allowed_networks, contactable, control_domain_of, domain_name, finish_with, tries_of, vantage_of

NAME = "remote_dns"
VERSION = "0.1.0"
NEEDS_INPUT = True
MAX_VALIDATED = 3  # addresses validated per measurement: a resolver answering 50 addresses gets 3 checked


class Config:
    """Options (from the run context): vantage (IP), control_domain, tries (default 3), allow (networks),
    port (the vantage's DNS port, default 53)."""


def check_input(input: str) -> None:
    domain_name(input, NAME)


async def run(input: str | None, ctx: Context) -> dict[str, Any]:
    name = domain_name(input, NAME)
    vantage = vantage_of(ctx, NAME)
    control_domain = control_domain_of(ctx)
    tries = tries_of(ctx, 3)
    port = ctx.options.get("port")
    port = port if type(port) is int and 0 < port < 65536 else 53
    t = ctx.timeouts
    trace = Trace(record_io=bool(ctx.options.get("network_events", True)))
    tk: dict[str, Any] = {"vantage": vantage, "control_domain": control_domain, "domain": name}
    trusted = ctx.udp_resolver.address if ctx.udp_resolver is not None else None
    if trusted is None:
        raise NettestError(f"{NAME} needs a trusted resolver to compare with (--resolver)")
    trusted_port = ctx.udp_resolver.port or 53 if ctx.udp_resolver is not None else 53
    async with trace:
        before = await lookup_udp(control_domain, "A", server=vantage, port=port, trace=trace, timeout=t.dns,
                                  duplicate_window=0, tags=(BEFORE,))
        if not before.addresses:  # no working resolver there: nothing about the domain can be learnt
            tk.update(trace.test_keys())
            return tk

        async def control() -> list[str]:
            res = await lookup_udp(name, "A", server=trusted, port=trusted_port, trace=trace, timeout=t.dns,
                                   tags=(CONTROL,))
            return list(res.addresses)

        async def control_domain_control() -> None:
            # what the trusted resolver says of the control domain: a vantage that lies about it too is no
            # resolver to learn from (it hijacks every name), and the verdict says failure
            await lookup_udp(control_domain, "A", server=trusted, port=trusted_port, trace=trace, timeout=t.dns,
                             duplicate_window=0, tags=(CONTROL_DOMAIN,))

        async def test() -> None:
            for _ in range(tries):
                res = await lookup_udp(name, "A", server=vantage, port=port, trace=trace, timeout=t.dns,
                                       tags=(TEST,))
                mine = next((q for q in reversed(trace.queries) if TEST in q.get("tags", ())), None)
                if failure_class(res.failure) != "timeout" and not (mine is not None and truncated(mine)):
                    return  # an answer; a truncated one (a rate-limiting resolver's) is asked again

        async with asyncio.TaskGroup() as tg:
            control_task = tg.create_task(control())
            tg.create_task(control_domain_control())
            tg.create_task(test())
        good = set(control_task.result())
        await lookup_udp(control_domain, "A", server=vantage, port=port, trace=trace, timeout=t.dns,
                         duplicate_window=0, tags=(AFTER,))
        await trace.drain()  # the late answers to the test's queries
        answered = _addresses(trace.test_keys(), TEST)  # what the vantage gave for the domain
        suspects = [ip for ip in answered if ip not in good and contactable(ip, allowed_networks(ctx))]
        if suspects and vantage_lies({**trace.test_keys(), "x_asn": _asns(ctx, trace.test_keys())}):
            suspects = []  # it hijacks every name: the verdict is a failure, and its addresses are not visited
        async with asyncio.TaskGroup() as tg:
            for ip in suspects[:MAX_VALIDATED]:
                tg.create_task(_validate(ip, name, ctx, trace))
    tk.update(trace.test_keys())
    tk["x_asn"] = _asns(ctx, tk)
    return tk


def _asns(ctx: Context, tk: dict[str, Any]) -> dict[str, int]:
    """The AS number of every address in the answers, from the ASN table (those it knows)."""
    return {ip: n for ip in _addresses(tk) if (n := ctx.asn.lookup(ip).asn)}


def _addresses(tk: dict[str, Any], tag: str | None = None) -> list[str]:
    """Every address in the answers, first answers and late ones, in order: of the lookups tagged `tag`,
    or of all of them."""
    out: list[str] = []
    for q in [*tk.get("queries", ()), *tk.get("x_dns_duplicate_responses", ())]:
        if tag is None or tag in q.get("tags", ()):
            for a in q.get("answers") or ():
                ip = a.get("ipv4") or a.get("ipv6")
                if isinstance(ip, str) and ip not in out:
                    out.append(ip)
    return out


async def _validate(ip: str, name: str, ctx: Context, trace: Trace) -> None:
    """A verified TLS handshake for `name` at `ip`; if there is none, the page `ip` serves for `name`."""
    t = ctx.timeouts
    try:
        stream = await tcp_connect(ip, 443, trace=trace, timeout=t.connect, tags=(VALIDATE,))
        tls = await tls_handshake(stream, server_name=name, ca_bundle=ctx.ca_bundle, timeout=t.tls,
                                  alpn=("http/1.1",), tags=(VALIDATE,))
        await tls.aclose()
        return
    except NetxError:
        pass
    try:
        conn = await tcp_connect(ip, 80, trace=trace, timeout=t.connect, tags=(VALIDATE,))
    except NetxError:
        return
    try:
        await round_trip(conn, f"http://{name}/", trace=trace, timeout=t.http, tags=(VALIDATE,))
    except NetxError:
        pass
    finally:
        await conn.aclose()


def finish(measurement: dict[str, Any], ctx: Context) -> None:
    finish_with(remote_dns_verdict, measurement, ctx)
