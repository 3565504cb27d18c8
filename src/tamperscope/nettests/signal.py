"""signal: can this network reach Signal's servers (ooni/spec ts-029)?

No input. At once: a GET of each of Signal's backends (`BACKENDS`), over TLS verified against the trust
store (``--ca-bundle``, else the system's) and Signal's own CA, which its apps pin (`signal_ca`: "Signal
Messenger, LLC", valid 2022-2032, shipped in ``tamperscope/data/signal-ca.pem``); any HTTP answer, an
error status included, means the backend was reached. And a lookup of ``uptime.signal.org``, recorded
and not judged, as OONI does.

``test_keys`` are OONI's: ``signal_backend_status`` (``"blocked"`` when any backend was not reached) and
``signal_backend_failure`` (the first such backend's failure, in `BACKENDS` order), beside the archival
``queries``, ``tcp_connect``, ``tls_handshakes``, ``requests`` and ``network_events`` (the backends'
tagged ``backend``, the lookup's ``uptime``); ours: ``x_backends`` (each backend's failure, null when
reached). The verdict is the analysis's (`model.services.signal_verdict`).
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from importlib import resources
from typing import Any

from ..model.services import signal_verdict
from ..netx import DirectConnector, Trace, fetch, lookup_system
from .base import Context, NettestError

NAME = "signal"
VERSION = "0.1.0"
NEEDS_INPUT = False
BACKENDS = (
    "https://textsecure-service.whispersystems.org/",
    "https://storage.signal.org/",
    "https://cdn.signal.org/",
    "https://cdn2.signal.org/",
    "https://sfu.voip.signal.org/",
)
UPTIME = "uptime.signal.org"
CONTACTS = ("Signal's servers (textsecure-service.whispersystems.org, storage, cdn, cdn2 and sfu.voip.signal.org "
            "on port 443; uptime.signal.org by name only)")


class Config:
    """For tests only: signal_backends (URLs replacing `BACKENDS`) and signal_ca (PEM text replacing Signal's
    CA, as OONI's ``SignalCA`` option)."""


def check_input(input: str) -> None:
    """No input: a list's lines would be measured as the same test again and again, each named wrongly."""
    raise NettestError("signal takes no input (it measures Signal's own servers)")


@lru_cache(maxsize=1)
def signal_ca() -> str:
    """Signal's own CA (PEM), which its apps pin for their servers."""
    return (resources.files("tamperscope.data") / "signal-ca.pem").read_text(encoding="ascii")


async def run(input: str | None, ctx: Context) -> dict[str, Any]:
    backends = tuple(str(u) for u in ctx.options.get("signal_backends") or BACKENDS)
    t = ctx.timeouts
    trace = Trace(record_io=bool(ctx.options.get("network_events", True)))
    connector = DirectConnector(ca_bundle=ctx.ca_bundle, extra_ca=str(ctx.options.get("signal_ca") or signal_ca()),
                                connect_timeout=t.connect)
    failures: dict[str, str | None] = {}

    async def get(url: str) -> None:
        res = await fetch(url, trace=trace, connector=connector, timeout=t.dns + t.connect + t.tls + t.http,
                          tags=("backend",))
        failures[url] = res.failure

    async with trace:
        async with asyncio.TaskGroup() as tg:
            for url in dict.fromkeys(backends):
                tg.create_task(get(url))
            tg.create_task(lookup_system(UPTIME, trace=trace, timeout=t.dns, tags=("uptime",)))
    first = next((failures[u] for u in backends if failures[u] is not None), None)
    tk: dict[str, Any] = {
        "signal_backend_status": "ok" if first is None else "blocked",
        "signal_backend_failure": first,
        "x_backends": {u: failures[u] for u in backends},
    }
    tk.update(trace.test_keys())
    return tk


def finish(measurement: dict[str, Any], ctx: Context) -> None:
    measurement["test_keys"].update(signal_verdict(measurement).to_test_keys())
