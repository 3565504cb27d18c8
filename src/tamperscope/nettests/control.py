"""The control request: ask the test helper how the target looks from outside.

Speaks OONI's web-connectivity test-helper protocol, over netx with its own
trace (the control exchange is not part of the target's evidence).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson

from ..netx import DirectConnector, NetxError, Trace, round_trip
from .base import Context

USER_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
REQUEST_HEADERS = {"Accept": ["text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"],
                   "Accept-Language": ["en-US;q=0.8,en;q=0.5"], "User-Agent": [USER_AGENT]}


def control_request(url: str, endpoints: Sequence[str]) -> dict[str, Any]:
    return {"http_request": url, "http_request_headers": REQUEST_HEADERS, "tcp_connect": list(endpoints),
            "x_quic_enabled": False}


async def ask_helper(ctx: Context, request: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(control response, failure). Retries once on 503 (busy)."""
    if not ctx.helper_url:
        return None, "control_disabled"
    body = orjson.dumps(request)
    connector = DirectConnector(ca_bundle=ctx.ca_bundle, alpn=("http/1.1",))
    trace = Trace(record_io=False)
    for attempt in range(3):
        try:
            conn = await connector(ctx.helper_url, trace=trace, timeout=ctx.timeouts.control)
            try:
                resp = await round_trip(conn, ctx.helper_url, method="POST", body=body, record=False,
                                        headers=(("Content-Type", "application/json"), ("Accept", "application/json")),
                                        timeout=ctx.timeouts.control)
            finally:
                await conn.aclose()
        except NetxError as e:
            return None, e.failure
        if resp.status == 503 and attempt < 2:
            await asyncio.sleep(0.2 * (attempt + 1))
            continue
        if resp.status != 200:
            return None, f"http_request_failed: control helper answered {resp.status}"
        try:
            data = orjson.loads(resp.body)
        except orjson.JSONDecodeError:
            return None, "unknown_failure: control helper answered garbage"
        if not isinstance(data, dict):
            return None, "unknown_failure: control helper answered garbage"
        return data, None
    return None, "http_request_failed: control helper busy"
