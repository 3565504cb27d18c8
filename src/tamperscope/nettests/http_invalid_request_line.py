"""http_invalid_request_line: do malformed request lines come back from an echo unchanged?

OONI's nettest (ts-007): request lines a real server would reject are sent to
a TCP echo backend. A transparent HTTP proxy on the path parses them and
either rewrites them or answers itself (typically 400), so what comes back
differs from what was sent: `tampering` is true. test_keys are OONI's
(`sent`, `received`, `tampering`, `failure`), plus `x_mechanism`.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from ..netx import Trace
from .base import Context
from .middlebox import ECHO_TIMEOUT, backend_endpoint, echo_exchange, verdict_keys

NAME = "http_invalid_request_line"
VERSION = "0.2.0"
NEEDS_INPUT = False


class Config:
    """Input: optional backend (host[:port]); otherwise --backend / TAMPERSCOPE_ECHO."""


def request_lines(rng: random.Random) -> list[bytes]:
    """OONI's four cases: an unknown method, a huge method, a bogus version, a random URL."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

    def word(n: int) -> str:
        return "".join(rng.choice(letters) for _ in range(n))

    return [
        f"{word(5)} / HTTP/1.1\n\r".encode(),
        f"{word(1024)} / HTTP/1.1\n\r".encode(),
        f"GET / HTTP/{word(3)}\n\r".encode(),
        f"GET {word(10)}://{word(8)}.example/ HTTP/1.1\n\r".encode(),
        b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Invalid\tHeader: \x01\r\n\r\n",
    ]


async def run(input: str | None, ctx: Context) -> dict[str, Any]:
    ip, port = backend_endpoint(ctx, input)
    trace = Trace()
    sent: list[str] = []
    received: list[str | None] = []
    failures: list[str | None] = []
    rng = random.Random()
    async with trace:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(echo_exchange(ip, port, p, trace=trace, timeout=ECHO_TIMEOUT))
                     for p in request_lines(rng)]
    for t in tasks:
        ex = t.result()
        sent.append(ex.sent)
        received.append(ex.received)
        failures.append(ex.failure)
    # A reply that is not the echo, or silence after connecting (swallowed), is tampering.
    tampering = any(r is not None and r != s for s, r in zip(sent, received))
    tk: dict[str, Any] = {"backend": f"{ip}:{port}", "sent": sent, "received": received,
                          "failure": next((f for f in failures if f), None), "tampering": tampering}
    tk.update({k: v for k, v in trace.test_keys().items() if k in ("tcp_connect", "network_events")})
    return tk


def finish(measurement: dict[str, Any], ctx: Context) -> None:
    tk = measurement["test_keys"]
    reached = any(r is not None for r in tk.get("received", []))
    tk.update(verdict_keys(bool(tk.get("tampering")), reached))
