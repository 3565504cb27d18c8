"""whatsapp: can this network reach WhatsApp's chat servers, registration service and web client
(ooni/spec ts-018)?

No input. At once, each within its own timeouts, through the system resolver: a TCP connection to each
of WhatsApp's chat endpoints (``e1.whatsapp.net`` … ``e16.whatsapp.net``, port 5222, where its apps
connect); a GET of the registration service (``https://v.whatsapp.net/v2/register``, which answers a
request without parameters with an error page: any HTTP response means it was reached); and a GET of
``https://web.whatsapp.com/``.

``test_keys`` are OONI's: ``whatsapp_endpoints_status`` (``"blocked"`` when no endpoint accepted a
connection), ``whatsapp_endpoints_blocked`` (those that did not), ``registration_server_status`` and
``registration_server_failure``, ``whatsapp_web_status`` and ``whatsapp_web_failure``, beside the
archival records (tagged ``endpoint``, ``registration``, ``web``). The verdict is the analysis's
(`model.services.whatsapp_verdict`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..model.services import whatsapp_verdict
from ..netx import DirectConnector, NetxError, Trace, fetch
from .base import Context, NettestError

NAME = "whatsapp"
VERSION = "0.1.0"
NEEDS_INPUT = False
ENDPOINTS = tuple((f"e{i}.whatsapp.net", 5222) for i in range(1, 17))
REGISTRATION = "https://v.whatsapp.net/v2/register"
WEB = "https://web.whatsapp.com/"
CONTACTS = "WhatsApp's chat endpoints (e1-e16.whatsapp.net, port 5222), v.whatsapp.net and https://web.whatsapp.com/"


class Config:
    """For tests only: whatsapp_endpoints ((host, port) pairs), whatsapp_registration and whatsapp_web (URLs)
    replacing `ENDPOINTS`, `REGISTRATION` and `WEB`."""


def check_input(input: str) -> None:
    """No input: a list's lines would be measured as the same test again and again, each named wrongly."""
    raise NettestError("whatsapp takes no input (it measures WhatsApp's own servers)")


async def run(input: str | None, ctx: Context) -> dict[str, Any]:
    endpoints = tuple(dict.fromkeys(tuple(e) for e in ctx.options.get("whatsapp_endpoints") or ENDPOINTS))
    registration = str(ctx.options.get("whatsapp_registration") or REGISTRATION)
    web_url = str(ctx.options.get("whatsapp_web") or WEB)
    t = ctx.timeouts
    trace = Trace(record_io=bool(ctx.options.get("network_events", True)))
    connector = DirectConnector(ca_bundle=ctx.ca_bundle, connect_timeout=t.connect)
    blocked: list[str] = []
    failures: dict[str, str | None] = {}

    async def endpoint(host: str, port: int) -> None:
        try:
            conn = await connector(f"http://{host}:{port}/", trace=trace, timeout=t.dns + t.connect,
                                   tags=("endpoint",))
        except NetxError:
            blocked.append(f"{host}:{port}")  # in queries or tcp_connect, with its failure
            return
        await conn.aclose()

    async def get(key: str, url: str) -> None:
        res = await fetch(url, trace=trace, ca_bundle=ctx.ca_bundle, timeout=t.dns + t.connect + t.tls + t.http,
                          tags=(key,))
        failures[key] = res.failure

    async with trace:
        async with asyncio.TaskGroup() as tg:
            for host, port in endpoints:
                tg.create_task(endpoint(host, port))
            tg.create_task(get("registration", registration))
            tg.create_task(get("web", web_url))
    tk: dict[str, Any] = {
        "whatsapp_endpoints_status": "blocked" if len(blocked) == len(endpoints) else "ok",
        "whatsapp_endpoints_blocked": sorted(blocked),
        "registration_server_failure": failures.get("registration"),
        "registration_server_status": "ok" if failures.get("registration") is None else "blocked",
        "whatsapp_web_failure": failures.get("web"),
        "whatsapp_web_status": "ok" if failures.get("web") is None else "blocked",
    }
    tk.update(trace.test_keys())
    return tk


def finish(measurement: dict[str, Any], ctx: Context) -> None:
    measurement["test_keys"].update(whatsapp_verdict(measurement).to_test_keys())
