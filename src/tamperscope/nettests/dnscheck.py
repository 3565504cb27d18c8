"""dnscheck: one name over every DNS transport, against the control, plus an injection trap.

The name is resolved with the system resolver, plain UDP and TCP, DoT and DoH,
and the answers compared with the control's. It is also sent to an address
where no DNS server runs (`--silent-resolver`, in the lab 198.19.0.9): any
answer from there is forged on the path, which is proof of injection (the
method of GFWatch and of the Turkmenistan measurement study).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..model.dnsverdict import dnscheck_verdict
from ..netx import Resolver, Trace, lookup_addresses, lookup_system, lookup_udp
from .base import Context, NettestError
from .control import ask_helper, control_request

NAME = "dnscheck"
VERSION = "0.1.0"
NEEDS_INPUT = True
USES_HELPER = True
TRAP_TAG = "silent"  # the tag of the trap's query (and of its late answers) in the trace


class Config:
    """Options (from the run context): resolver (IP), dot (IP), doh (URL), silent (IP)."""


def _domain(input: str) -> str:
    name = input.strip().lower()
    if "://" in name:
        from urllib.parse import urlsplit

        name = (urlsplit(name).hostname or "").lower()
    name = name.rstrip(".")
    if not name or len(name) > 253 or any(c.isspace() for c in name) or ".." in name:
        raise NettestError(f"not a domain name: {input!r}")
    return name


async def run(input: str | None, ctx: Context) -> dict[str, Any]:
    if not input:
        raise NettestError("dnscheck needs an input domain")
    name = _domain(input)
    opts = ctx.options
    resolver_ip = opts.get("resolver") or (ctx.udp_resolver.address if ctx.udp_resolver else None)
    transports: dict[str, Resolver] = {}
    if resolver_ip:
        transports[f"udp://{resolver_ip}:53"] = Resolver("udp", resolver_ip)
        transports[f"tcp://{resolver_ip}:53"] = Resolver("tcp", resolver_ip)
        dot = opts.get("dot") or resolver_ip
        transports[f"dot://{dot}:853"] = Resolver("dot", dot, ca_bundle=ctx.ca_bundle)
    if opts.get("doh"):
        transports[str(opts["doh"])] = Resolver("doh", str(opts["doh"]), ca_bundle=ctx.ca_bundle)
    trace = Trace()
    lookups: dict[str, Any] = {}
    tk: dict[str, Any] = {"domain": name}
    silent = opts.get("silent")
    t = ctx.timeouts

    async def one(key: str, resolver: Resolver | None) -> None:
        if resolver is None:
            res = await lookup_system(name, trace=trace, timeout=t.dns)
            engine = "system"
        else:
            res = await lookup_addresses(name, resolver=resolver, trace=trace, timeout=t.dns)
            engine = resolver.engine
        lookups[key] = {"engine": engine, "resolver_address": key, "addrs": list(res.addresses), "failure": res.failure}

    async def trap() -> None:
        res = await lookup_udp(name, "A", server=str(silent), trace=trace, timeout=min(t.dns, 2.0), tags=(TRAP_TAG,))
        tk["x_injection"] = {"silent_resolver": silent, "answers": list(res.addresses), "failure": res.failure}

    async def control() -> None:
        resp, failure = await ask_helper(ctx, control_request(f"http://{name}/", []))
        tk["control"] = {"dns": resp.get("dns"), "ip_info": resp.get("ip_info")} if resp else None
        tk["control_failure"] = failure

    async with trace:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(one("system", None))
            for key, r in transports.items():
                tg.create_task(one(key, r))
            if silent:
                tg.create_task(trap())
            tg.create_task(control())
    tk.update(trace.test_keys())
    tk["x_lookups"] = lookups
    if silent:
        answers = tk["x_injection"]["answers"]
        for a in _late_trap_answers(tk.get("x_dns_duplicate_responses", [])):
            if a not in answers:
                answers.append(a)
    return tk


def _late_trap_answers(duplicates: list[dict[str, Any]]) -> list[str]:
    """The trap's late answers (they are in x_dns_duplicate_responses too), known by the trap's tag.

    Not by the resolver address: "198.19.0.9" begins "198.19.0.90:53", and an IPv6 trap is "[addr]:53".
    """
    return [a["ipv4"] for d in duplicates if TRAP_TAG in (d.get("tags") or ())
            for a in (d.get("answers") or []) if isinstance(a.get("ipv4"), str)]


def finish(measurement: dict[str, Any], ctx: Context) -> None:
    measurement["test_keys"].update(dnscheck_verdict(measurement).to_test_keys())
