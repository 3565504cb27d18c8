"""telegram: can this network reach Telegram's access points and its web client (ooni/spec ts-020)?

No input. For each access point (the data centres' addresses Telegram's own clients ship with), a TCP
connection and an HTTP POST on ports 80 and 443, as Telegram's clients speak to them when nothing else
gets through; and a GET of ``https://web.telegram.org/``. All at once, each within its own timeout.

``test_keys`` are OONI's: ``telegram_tcp_blocking`` (no TCP connection to any access point succeeded),
``telegram_http_blocking`` (no POST got a response), ``telegram_web_status`` (``"ok"`` or ``"blocked"``)
and ``telegram_web_failure``, beside the archival ``queries``, ``tcp_connect``, ``tls_handshakes``,
``requests`` and ``network_events``. The verdict is the analysis's (`model.services.telegram_verdict`).

``--telegram-dcs`` (or ``$TAMPERSCOPE_TELEGRAM_DCS``) replaces the access points: the lab's stand-ins,
or addresses Telegram has moved to.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

from ..model.services import telegram_verdict
from ..netx import DirectConnector, NetxError, Trace, fetch, round_trip
from .base import Context, NettestError

NAME = "telegram"
VERSION = "0.1.0"
NEEDS_INPUT = False
# Telegram's data centres 1-5, as its desktop client's configuration lists them (and OONI's telegram).
ACCESS_POINTS = ("149.154.175.50", "149.154.167.51", "149.154.175.100", "149.154.167.91", "149.154.171.5")
PORTS = (80, 443)
WEB = "https://web.telegram.org/"
MAX_ACCESS_POINTS = 32
CONTACTS = "Telegram's access points (ports 80 and 443) and https://web.telegram.org/"


class Config:
    """Options (from the run context): telegram_dcs (addresses replacing `ACCESS_POINTS`); for tests,
    telegram_ports and telegram_web (replacing `PORTS` and `WEB`)."""


def check_input(input: str) -> None:
    """No input: a list's lines would be measured as the same test again and again, each named wrongly."""
    raise NettestError("telegram takes no input (it measures Telegram's own servers; --telegram-dcs replaces "
                       "its access points)")


def access_points(value: str) -> tuple[str, ...]:
    """``IP[,IP...]`` as ``--telegram-dcs`` takes it; NettestError (one line) for anything else."""
    out = []
    for part in value.split(","):
        part = part.strip()
        try:
            out.append(str(ipaddress.ip_address(part)))
        except ValueError:
            raise NettestError(f"not an IP address: {part!r} (expected IP[,IP...])") from None
    if not 0 < len(out) <= MAX_ACCESS_POINTS:
        raise NettestError(f"between 1 and {MAX_ACCESS_POINTS} access points, not {len(out)}")
    return tuple(dict.fromkeys(out))


def _url(ip: str, port: int) -> str:
    return f"http://[{ip}]:{port}/" if ":" in ip else f"http://{ip}:{port}/"


async def run(input: str | None, ctx: Context) -> dict[str, Any]:
    points = tuple(ctx.options.get("telegram_dcs") or ACCESS_POINTS)
    ports = tuple(ctx.options.get("telegram_ports") or PORTS)  # (other ports: tests on loopback only)
    web_url = str(ctx.options.get("telegram_web") or WEB)
    t = ctx.timeouts
    trace = Trace(record_io=bool(ctx.options.get("network_events", True)))
    connector = DirectConnector(ca_bundle=ctx.ca_bundle, connect_timeout=t.connect)
    answered: list[str] = []

    async def post(ip: str, port: int) -> None:
        url = _url(ip, port)
        try:
            conn = await connector(url, trace=trace, timeout=t.connect, tags=("access_point",))
        except NetxError:
            return  # in tcp_connect with its failure
        try:
            await round_trip(conn, url, trace=trace, method="POST", headers=(("Content-Length", "0"),),
                             timeout=t.http, tags=("access_point",))
            answered.append(url)
        except NetxError:
            pass  # in requests with its failure
        finally:
            await conn.aclose()

    web: dict[str, Any] = {}

    async def web_client() -> None:
        res = await fetch(web_url, trace=trace, ca_bundle=ctx.ca_bundle, timeout=t.connect + t.tls + t.http,
                          tags=("web",))
        web["failure"] = res.failure

    async with trace:
        async with asyncio.TaskGroup() as tg:
            for ip in points:
                for port in ports:
                    tg.create_task(post(ip, port))
            tg.create_task(web_client())
    connected = any(c["status"]["success"] for c in trace.tcp_connect if "access_point" in c.get("tags", ()))
    tk: dict[str, Any] = {
        "telegram_tcp_blocking": not connected,
        "telegram_http_blocking": not answered,
        "telegram_web_failure": web.get("failure"),
        "telegram_web_status": "ok" if web.get("failure") is None else "blocked",
        "x_access_points": list(points),
    }
    tk.update(trace.test_keys())
    return tk


def finish(measurement: dict[str, Any], ctx: Context) -> None:
    measurement["test_keys"].update(telegram_verdict(measurement).to_test_keys())
