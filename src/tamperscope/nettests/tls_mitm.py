"""tls_mitm: is TLS to these sites intercepted, and by whom?

For each input (URL or domain), resolve it, complete a TLS handshake with the
name as SNI against the trust store, record the chain even when it does not
verify, and ask the control helper what certificate it sees for the same
endpoints. `x_interception` names the issuer of the certificate we were shown
when it is not the site's (see model/interception.py).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from ..model.interception import interception, issuer_name
from ..netx import SYSTEM, NetxError, Trace, lookup_addresses, tcp_connect, tls_handshake
from ..netx.trace import endpoint
from .base import Context, NettestError
from .control import ask_helper, control_request

NAME = "tls_mitm"
VERSION = "0.1.0"
NEEDS_INPUT = True
USES_HELPER = True


class Config:
    """Input: a URL or a domain (port 443 unless the URL says otherwise)."""


async def run(input: str | None, ctx: Context) -> dict[str, Any]:
    if not input:
        raise NettestError("tls_mitm needs an input (URL or domain)")
    spec = input if "://" in input else f"https://{input}/"
    parts = urlsplit(spec)
    host = (parts.hostname or "").lower()
    if not host:
        raise NettestError(f"not a URL or domain: {input!r}")
    try:
        port = parts.port or 443
    except ValueError:
        raise NettestError(f"bad port in {input!r}") from None
    trace = Trace()
    tk: dict[str, Any] = {}
    async with trace:
        res = await lookup_addresses(host, resolver=SYSTEM, trace=trace, timeout=ctx.timeouts.dns)
        eps = [endpoint(a, port) for a in res.addresses[:4]]

        async def handshake(ip: str) -> None:
            try:
                stream = await tcp_connect(ip, port, trace=trace, timeout=ctx.timeouts.connect)
            except NetxError:
                return
            try:
                tls = await tls_handshake(stream, server_name=host, ca_bundle=ctx.ca_bundle, timeout=ctx.timeouts.tls)
                await tls.aclose()
            except NetxError:
                pass

        async def control() -> None:
            resp, failure = await ask_helper(ctx, control_request(f"https://{host}:{port}/", eps))
            tk["control"] = resp
            tk["control_failure"] = failure

        async with asyncio.TaskGroup() as tg:
            tg.create_task(control())
            for a in res.addresses[:4]:
                tg.create_task(handshake(a))
    tk.update(trace.test_keys())
    return tk


def finish(measurement: dict[str, Any], ctx: Context) -> None:
    tk = measurement["test_keys"]
    x = interception(measurement)
    tk["x_interception"] = x
    ok = any(h.get("failure") is None for h in tk.get("tls_handshakes", []))
    if x is not None and x["intercepted"]:
        tk.update(blocking="http-failure", accessible=False, x_mechanism="tls.mitm", x_confidence=0.95,
                  x_equipment={"kind": "tls-interception", "issuer": x["issuer"], "name": issuer_name(x["issuer"])},
                  x_evidence=x["evidence"])
    elif ok:
        tk.update(blocking=False, accessible=True, x_mechanism="none", x_confidence=0.9)
    else:
        tk.update(blocking=None, accessible=None, x_mechanism="none", x_confidence=0.0)
