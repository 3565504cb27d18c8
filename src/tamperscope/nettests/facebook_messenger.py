"""facebook_messenger: can this network reach Facebook Messenger's servers (ooni/spec ts-019)?

No input. For each of Messenger's endpoints (`SERVICES`), at once: the name is resolved by the system
resolver, as the app resolves it; the answer is *consistent* when every IPv4 address in it belongs to
Facebook's network (AS32934) by the run's prefix-to-ASN table (``--asn-table``); then, unless the answer
was inconsistent, a TCP connection to port 443, trying up to `MAX_ATTEMPTS` of its addresses until one
accepts. ``stun.fbsbx.com`` is a UDP service: its name alone is checked, as OONI does.

``test_keys`` are OONI's (version 0.4.0 and later, ``_`` in the keys): ``facebook_ENDPOINT_dns_consistent``
and ``facebook_ENDPOINT_reachable`` for each endpoint (null: not judged, or not tried), and
``facebook_dns_blocking`` / ``facebook_tcp_blocking`` (true when any endpoint's answer was inconsistent or
failed, or any connection failed), beside ``queries`` (each answer with its ``asn`` and ``as_org_name``,
the evidence for the consistency), ``tcp_connect`` and ``network_events``, tagged with the endpoint.

Without an ASN table nothing can say whose network an address is in: the ``_dns_consistent`` keys of the
names that resolved, and ``facebook_dns_blocking`` unless a lookup failed, are null, and the connections
are still tried. The verdict is the analysis's (`model.services.facebook_messenger_verdict`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from ..model.services import FACEBOOK_ENDPOINTS, facebook_messenger_verdict
from ..netx import NetxError, Trace, lookup_system, tcp_connect
from .base import Context, NettestError

NAME = "facebook_messenger"
VERSION = "0.1.0"
NEEDS_INPUT = False
SERVICES = FACEBOOK_ENDPOINTS  # (OONI's key for the endpoint, its name)
UDP_ONLY = frozenset({"stun"})  # resolved, never connected to
FACEBOOK_ASN = 32934
PORT = 443
MAX_ATTEMPTS = 3  # addresses tried per endpoint before it counts as unreachable
CONTACTS = ("Facebook Messenger's servers (b-api, b-graph, edge-mqtt and star.c10r.facebook.com, external and "
            "scontent.xx.fbcdn.net on port 443; stun.fbsbx.com by name only)")


class Config:
    """For tests only: facebook_services ((key, name) pairs replacing `SERVICES`) and facebook_port
    (replacing `PORT`)."""


def check_input(input: str) -> None:
    """No input: a list's lines would be measured as the same test again and again, each named wrongly."""
    raise NettestError("facebook_messenger takes no input (it measures Facebook Messenger's own servers)")


async def run(input: str | None, ctx: Context) -> dict[str, Any]:
    services: Sequence[tuple[str, str]] = tuple((str(k), str(h)) for k, h in
                                                ctx.options.get("facebook_services") or SERVICES)
    port = int(ctx.options.get("facebook_port") or PORT)
    t = ctx.timeouts
    judged = ctx.asn.size > 0
    trace = Trace(record_io=bool(ctx.options.get("network_events", True)))
    consistent: dict[str, bool | None] = {}
    reachable: dict[str, bool | None] = {}

    async def endpoint(key: str, host: str) -> None:
        consistent[key] = reachable[key] = None
        res = await lookup_system(host, trace=trace, timeout=t.dns, tags=(key,))
        if res.failure is not None or not res.addresses:
            consistent[key] = False  # no answer is no Messenger, whatever stopped it
            return
        v4 = [a for a in res.addresses if ":" not in a]  # the table is IPv4's; an IPv6 answer is not judged
        if judged and v4:
            consistent[key] = all(ctx.asn.lookup(a).asn == FACEBOOK_ASN for a in v4)
            if not consistent[key]:
                return  # an address outside Facebook's network is not Messenger's: not connected to
        if key in UDP_ONLY:
            return
        reachable[key] = False
        for ip in (v4 or list(res.addresses))[:MAX_ATTEMPTS]:
            try:
                stream = await tcp_connect(ip, port, trace=trace, timeout=t.connect, tags=(key,))
            except NetxError:
                continue  # in tcp_connect, with its failure
            await stream.aclose()
            reachable[key] = True
            return

    async with trace:
        async with asyncio.TaskGroup() as tg:
            for key, host in services:
                tg.create_task(endpoint(key, host))
    tk: dict[str, Any] = {}
    for key, _ in services:
        tk[f"facebook_{key}_dns_consistent"] = consistent[key]
        tk[f"facebook_{key}_reachable"] = reachable[key]
    inconsistent = any(v is False for v in consistent.values())
    tk["facebook_dns_blocking"] = True if inconsistent else (False if judged else None)
    tk["facebook_tcp_blocking"] = any(v is False for v in reachable.values())
    tk.update(trace.test_keys())
    if judged:
        _annotate(tk.get("queries") or [], ctx)
    return tk


def _annotate(queries: list[dict[str, Any]], ctx: Context) -> None:
    """Each IPv4 answer with its network, as OONI's probe writes it: the evidence others can check."""
    for q in queries:
        for answer in q.get("answers") or ():
            if isinstance(answer, dict) and answer.get("answer_type") == "A" and answer.get("ipv4"):
                info = ctx.asn.lookup(answer["ipv4"])
                answer["asn"], answer["as_org_name"] = info.asn, info.name


def finish(measurement: dict[str, Any], ctx: Context) -> None:
    measurement["test_keys"].update(facebook_messenger_verdict(measurement).to_test_keys())
